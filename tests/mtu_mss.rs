//! MSS clamping and MTU on the userspace paths (issue 9, point 4), against
//! real peers: strongSwan (kernel-libipsec) as the AWS VGW with the VPC host
//! behind it, a wireguard-go laptop, the LAN host behind the gateway, in the
//! network-namespace topology of tests/common.
//!
//! - A TCP SYN captured on the VPC side of the VGW announces an MSS of at
//!   most `ipsec.tcp_mss` (1379) whether it came from the LAN host (MSS 1460)
//!   or from the laptop (MSS 1380).
//! - On the laptop's WireGuard interface, a SYN-ACK from the VPC host and a
//!   SYN from the LAN host announce at most the WireGuard MTU - 40 (1380).
//! - A 1472-byte ping (a 1500-byte packet) from the LAN host, MTU 1500, to
//!   the VPC host is answered, and so is one from the laptop; a 10 MiB TCP
//!   transfer from the LAN host to the VPC host completes (python3 sockets:
//!   the receiver counts every byte), and so does one from the laptop to
//!   the LAN host (the TUN's offload coalesces its segments).
//! - With `ipsec.tunnel_mtu = 1400` (below the TUN's 1420, so that the core
//!   and not the kernel must act), no packet from the LAN or the laptop
//!   leaves the VGW towards the VPC larger than 1400 bytes: the core
//!   fragmented the pings and sent ICMP "fragmentation needed" for the TCP
//!   segments with DF (the gateway's counters say so).
//!
//! Needs root, strongSwan with kernel-libipsec, wireguard-go, tcpdump and
//! python3 (scripts/test.sh installs them); with `IPIECE_SKIP_NETNS=1` it
//! prints a skip line instead when not root.

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use serde_json::Value;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const PSK: &str = "ipiece.mtu.tun1.0123456789";
const TUN: &str = "aws-1";
const VGW_CONN: &str = "aws-vgw-tun1";
/// `ipsec.tcp_mss` (the default).
const TCP_MSS: u16 = 1379;
/// WireGuard MTU (the default) - 40.
const LAPTOP_MSS: u16 = 1380;
/// `ipsec.tunnel_mtu` set by the test.
const TUNNEL_MTU: usize = 1400;
const SINK_PORT: &str = "5201";

fn ready(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    for tool in ["tcpdump", "python3"] {
        assert!(
            run("sh", &["-c", &format!("command -v {tool}")]).ok(),
            "{test}: {tool} is not installed (scripts/test.sh installs it)"
        );
    }
    true
}

// ----------------------------------------------------------------- capture --

/// Starts tcpdump writing the first 200 bytes of every packet matching
/// `filter` on one interface (`Capture` of tests/common).
fn tcpdump(ns: &Netns, ifname: &str, dir: &Path, tag: &str, filter: &str) -> Capture {
    Capture::start_filtered(ns, ifname, dir, tag, filter, 200)
}

/// Stops a capture and returns the IPv4 packets it wrote.
fn stop_ipv4(cap: Capture, ns: &Netns) -> Vec<Ip4> {
    let file = cap.file.clone();
    parse_pcap_ipv4(&cap.stop_raw(ns)).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// One captured IPv4 packet (its first bytes).
#[derive(Debug, Clone)]
struct Ip4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// The IP header's total length: the packet's size on the wire.
    total_len: usize,
    /// The captured bytes from the IP header on.
    bytes: Vec<u8>,
}

impl Ip4 {
    /// TCP flags and the MSS option, for the first fragment of a TCP
    /// segment whose header was captured.
    fn tcp_syn_mss(&self) -> Option<(u8, Option<u16>)> {
        let b = &self.bytes;
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let frag = u16::from_be_bytes([b[6], b[7]]) & 0x1fff;
        if b[9] != 6 || frag != 0 {
            return None;
        }
        let tcp = b.get(ihl..)?;
        let flags = *tcp.get(13)?;
        if flags & 0x02 == 0 {
            return None;
        }
        let doff = usize::from(tcp[12] >> 4) * 4;
        let opts = tcp.get(20..doff)?;
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                2 if opts.get(i + 1) == Some(&4) && i + 4 <= opts.len() => {
                    return Some((flags, Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]))));
                }
                _ => match opts.get(i + 1) {
                    Some(&l) if l >= 2 => i += usize::from(l),
                    _ => break,
                },
            }
        }
        Some((flags, None))
    }
}

/// The IPv4 packets of a pcap file with Ethernet (1) or raw IP (101, 12, 14)
/// framing.
fn parse_pcap_ipv4(b: &[u8]) -> Result<Vec<Ip4>, String> {
    Ok(pcap_ipv4_packets(b)?
        .into_iter()
        .map(|ip| Ip4 {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            total_len: usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            bytes: ip.to_vec(),
        })
        .collect())
}

/// (flags, MSS) of the SYNs (with `ack`: SYN-ACKs) from `src` in `pkts`.
fn syns(pkts: &[Ip4], src: &str, ack: bool) -> Vec<(u8, Option<u16>)> {
    let src: Ipv4Addr = src.parse().unwrap();
    pkts.iter()
        .filter(|p| p.src == src)
        .filter_map(Ip4::tcp_syn_mss)
        .filter(|(flags, _)| (flags & 0x10 != 0) == ack)
        .collect()
}

/// Every SYN (or SYN-ACK) from `src` announces an MSS of at most `max`,
/// and there is at least one.
fn assert_mss_at_most(pkts: &[Ip4], src: &str, ack: bool, max: u16, what: &str) {
    let s = syns(pkts, src, ack);
    assert!(!s.is_empty(), "{what}: no SYN captured from {src}");
    for (flags, mss) in &s {
        let mss = mss.unwrap_or_else(|| panic!("{what}: a SYN from {src} without MSS: {s:?}"));
        assert!(
            mss <= max,
            "{what}: a SYN (flags {flags:#04x}) from {src} announces MSS {mss} > {max} (all: {s:?})"
        );
    }
    eprintln!("{what}: {} SYNs from {src}, MSS {:?}", s.len(), s);
}

// ------------------------------------------------------------------ traffic --

/// `ping -s 1472` from `ns` to `dst`: the first answer may need a round of
/// path MTU discovery (the first echo request is then lost), so pings are
/// repeated until one is answered (10 s), then 3 of 3 must be, each reply the
/// full 1480 bytes of ICMP.
fn big_ping(ns: &Netns, dst: &str, what: &str) {
    let once = || {
        ns.exec_t(
            "ping",
            &["-n", "-c", "1", "-s", "1472", "-W", "1", dst],
            Duration::from_secs(5),
        )
        .stdout
        .contains("1480 bytes from")
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), once),
        "{what}: a 1472-byte ping to {dst} was never answered"
    );
    let out = ns.exec_t(
        "ping",
        &["-n", "-c", "3", "-i", "0.2", "-s", "1472", "-w", "10", dst],
        Duration::from_secs(15),
    );
    let replies = out.stdout.matches("1480 bytes from").count();
    assert_eq!(replies, 3, "{what}: 1472-byte pings to {dst}: {out}");
}

/// A TCP sink (python3): accepts connections one after the other, reads
/// each to its end and answers with the number of bytes it read.
const SINK: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 5201))
s.listen(8)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    c.sendall(str(n).encode())
    c.close()
";

/// The sender: connects to argv[1], sends argv[2] bytes, half-closes and
/// prints the sink's count.
const SEND: &str = "import socket, sys
c = socket.create_connection((sys.argv[1], 5201), timeout=30)
left = int(sys.argv[2])
buf = bytes(65536)
while left > 0:
    k = min(left, len(buf))
    c.sendall(buf[:k])
    left -= k
c.shutdown(socket.SHUT_WR)
r = b''
while True:
    d = c.recv(100)
    if not d:
        break
    r += d
print(r.decode())
";

/// The TCP sink on `ns`, waiting (10 s) until it listens.
fn tcp_sink(ns: &Netns, dir: &Path, tag: &str) {
    let log = dir.join(format!("tcp-sink-{tag}.log"));
    let pid = ns.spawn(
        &format!("tcp sink {tag}"),
        "python3",
        &["-c", SINK],
        &[],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !ns.running(pid)
                || ns
                    .exec("ss", &["-Hltn", &format!("sport = :{SINK_PORT}")])
                    .stdout
                    .contains(SINK_PORT)
        }) && ns.running(pid),
        "the TCP sink in {} did not start:\n{}",
        ns.name,
        tail(&log, 20)
    );
}

/// Sends `bytes` over TCP from `ns` to the sink on `dst`; panics unless
/// the sink read every byte within 60 s.
fn tcp_send(ns: &Netns, dst: &str, bytes: u64, what: &str) {
    let n = bytes.to_string();
    let t0 = Instant::now();
    let out = ns.exec_t("python3", &["-c", SEND, dst, &n], Duration::from_secs(60));
    assert!(out.ok(), "{what}: sending {n} bytes to {dst} failed: {out}");
    assert_eq!(
        out.stdout.trim(),
        n,
        "{what}: the sink on {dst} did not read all {n} bytes: {out}"
    );
    eprintln!("{what}: {n} bytes in {:?}", t0.elapsed());
}

/// Sets an integer key of `[ipsec]` (creating the table).
fn set_ipsec_int(cfg: &GwConfig, key: &str, v: i64) {
    let text = fs::read_to_string(&cfg.path).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    if doc.get("ipsec").is_none() {
        doc["ipsec"] = toml_edit::table();
    }
    doc["ipsec"][key] = toml_edit::value(v);
    fs::write(&cfg.path, doc.to_string()).unwrap();
}

fn counter(st: &Value, key: &str) -> u64 {
    st["counters"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counters.{key} in status: {}", st["counters"]))
}

// --------------------------------------------------------------------- test --

#[test]
fn syns_are_clamped_and_big_packets_cross_the_tunnel_from_lan_and_laptop() {
    let test = "syns_are_clamped_and_big_packets_cross_the_tunnel_from_lan_and_laptop";
    if !ready(test) {
        return;
    }
    let t0 = Instant::now();
    let t = Topology::with_vgw(1);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    let vgw = start_vgw_charon(&t, t.vgw(), "vgw1");
    vgw.load(&SwanctlConf::one(ConnConf::aws_vgw(
        VGW_CONN, VGW_WAN, NAT_WAN, PSK,
    )));
    set_ipsec_int(&cfg, "tunnel_mtu", TUNNEL_MTU as i64);
    write_tunnels(&cfg, &[TunnelSpec::new(TUN, VGW_WAN, PSK)]);
    let daemon = start_ipieced_logging(&t.gw, &cfg, "info,ipiece=debug");
    wait_up(&cfg, &t.gw, &daemon, TUN, Duration::from_secs(20));

    let conf = cfg.add_peer(&t.gw, "alice", &[]);
    let wg = start_wg_client(&t.laptops[0], &conf, &t.dir.path);
    let lap = &t.laptops[0];
    let lap_addr = wg.address();
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(10)),
        "the laptop never reached the gateway through WireGuard"
    );
    for (ns, what) in [(&t.lan, "LAN host"), (lap, "laptop")] {
        assert!(
            ns.ping_until(VPC_HOST, Duration::from_secs(10)),
            "{what} never reached the VPC host"
        );
    }
    assert!(
        t.lan.ping_until(&lap_addr, Duration::from_secs(10)),
        "the LAN host never reached the laptop"
    );
    tcp_sink(t.vpc(), &t.dir.path, "vpc");
    tcp_sink(lap, &t.dir.path, "laptop");

    let vpc_cap = tcpdump(t.vgw(), "vpc0", &t.dir.path, "vgw-vpc0", "ip");
    let lap_cap = tcpdump(lap, &wg.ifname, &t.dir.path, "laptop-wg", "tcp");

    big_ping(&t.lan, VPC_HOST, "LAN host (MTU 1500) -> VPC host");
    big_ping(lap, VPC_HOST, "laptop -> VPC host");
    // The pings taught the LAN host a path MTU of 1420 towards the VPC
    // host (the gateway's kernel, from the TUN's MTU), and its SYN would
    // announce 1380: forget it, so that the SYN carries the LAN's 1460.
    t.lan.ip("route flush cache");
    let route = t.lan.ip(&format!("route get {VPC_HOST}")).stdout;
    assert!(!route.contains(" mtu "), "path MTU still cached: {route}");
    tcp_send(&t.lan, VPC_HOST, 10 << 20, "LAN host -> VPC host, 10 MiB");
    tcp_send(lap, VPC_HOST, 1 << 20, "laptop -> VPC host, 1 MiB");
    tcp_send(&t.lan, &lap_addr, 1 << 20, "LAN host -> laptop, 1 MiB");

    let at_vpc = stop_ipv4(vpc_cap, t.vgw());
    let at_lap = stop_ipv4(lap_cap, lap);
    // Bulk TCP from the laptop into the LAN: the decrypted segments of one
    // flow reach the TUN in batches, which its offload coalesces (GRO);
    // every byte must arrive (after the captures, whose SYNs are counted).
    tcp_sink(&t.lan, &t.dir.path, "lan");
    tcp_send(lap, LAN_HOST, 10 << 20, "laptop -> LAN host, 10 MiB");

    // SYNs towards the VPC, from the LAN (MSS 1460) and the laptop (1380).
    assert_mss_at_most(&at_vpc, LAN_HOST, false, TCP_MSS, "VPC side of the VGW");
    assert_mss_at_most(&at_vpc, &lap_addr, false, TCP_MSS, "VPC side of the VGW");
    // At the laptop: the VPC host's SYN-ACK (1460) and the LAN host's SYN (1460).
    assert_mss_at_most(
        &at_lap,
        VPC_HOST,
        true,
        LAPTOP_MSS,
        "laptop's WireGuard interface",
    );
    assert_mss_at_most(
        &at_lap,
        LAN_HOST,
        false,
        LAPTOP_MSS,
        "laptop's WireGuard interface",
    );

    // Nothing from the LAN or the laptop crossed the tunnel above its MTU,
    // and big packets did cross it.
    let inside =
        |p: &&Ip4| p.src == LAN_HOST.parse::<Ipv4Addr>().unwrap() || p.src.to_string() == lap_addr;
    let biggest = at_vpc.iter().filter(inside).map(|p| p.total_len).max();
    let too_big: Vec<_> = at_vpc
        .iter()
        .filter(inside)
        .filter(|p| p.total_len > TUNNEL_MTU)
        .map(|p| (p.src, p.dst, p.total_len))
        .collect();
    assert!(
        too_big.is_empty(),
        "{} packets above the tunnel MTU {TUNNEL_MTU} reached the VPC side, e.g. {:?}",
        too_big.len(),
        &too_big[..too_big.len().min(5)]
    );
    assert!(
        biggest.is_some_and(|b| b > 1300),
        "no big packet from the LAN or the laptop reached the VPC (largest {biggest:?})"
    );

    let st = cfg.status_json(&t.gw);
    eprintln!("gateway counters: {}", st["counters"]);
    assert_eq!(
        tunnel(&st, TUN)["inner_mtu"].as_u64(),
        Some(TUNNEL_MTU as u64),
        "status shows the tunnel MTU in force: {}",
        tunnel(&st, TUN)
    );
    // The laptop <-> VPC SYNs never enter the kernel: the core clamps them
    // (the laptop's SYN towards the VPC, the VPC host's SYN towards the
    // laptop). The LAN's SYNs cross the kernel's forward path, where the
    // firewall's nft rules may already have clamped them.
    assert!(counter(&st, "mss_clamped") >= 2, "{}", st["counters"]);
    assert!(
        counter(&st, "fragmented") >= 1,
        "the core fragmented no ping: {}",
        st["counters"]
    );
    assert!(
        counter(&st, "frag_needed_sent") >= 1,
        "the core sent no ICMP fragmentation needed: {}",
        st["counters"]
    );
    assert!(
        t.gw.running(daemon.pid),
        "ipieced exited during the test:\n{}",
        tail(&daemon.log, 80)
    );
    drop(vgw);
    eprintln!("[{test}] passed in {:?}", t0.elapsed());
}
