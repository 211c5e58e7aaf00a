//! ipieced against strongSwan: what the IPsec interop tests add to the
//! topology of [`super::Topology`] and the charons of [`super::strongswan`].
//!
//! - [`add_second_vgw`]: a second "AWS VGW" namespace on the internet
//!   (outside address [`VGW2_WAN`]) that reaches the same VPC host as the
//!   first one through a link of its own; the VPC host answers a request
//!   through the VGW it came from (the request's firewall mark is reflected
//!   into the reply and routed back to that VGW), so an echo reply follows
//!   whichever tunnel carried the echo request;
//! - [`TunnelSpec`] and [`write_tunnels`]: the gateway's `[[ipsec.tunnels]]`
//!   written into its config with `toml_edit` (the rest of the file kept),
//!   each PSK in its own 0600 file;
//! - `wgctl status --json` accessors for the tunnels ([`tunnel`],
//!   [`wait_tunnel`]);
//! - [`Capture`]: tcpdump in a namespace and a pcap reader, to replay real
//!   datagrams.

use super::strongswan::{Charon, CharonConf};
use super::*;
use std::os::unix::fs::OpenOptionsExt;

/// The WireGuard subnet of the seed config (laptops' tunnel addresses).
pub const WG_CIDR: &str = "172.16.60.0/24";
/// The second VGW's outside address (its own prefix on the internet router).
pub const VGW2_WAN: &str = "192.0.2.130";
/// The internet router's address towards the second VGW.
pub const VGW2_INET: &str = "192.0.2.129";
/// The second VGW's address on its link to the VPC host.
pub const VGW2_VPC_SIDE: &str = "10.0.255.1";
/// The VPC host's address on its link to the second VGW.
pub const VPC_HOST_VGW2_SIDE: &str = "10.0.255.2";
/// The firewall mark of requests that came from the second VGW.
const VGW2_MARK: u32 = 2;
/// The VPC host's routing table towards the second VGW.
const VGW2_TABLE: u32 = 102;

/// Adds a second VGW namespace: `wan` [`VGW2_WAN`]/25 on the internet router
/// (`i-vgw2` [`VGW2_INET`]/25), forwarding on, and a link to the VPC host of
/// [`Topology::add_vgw`] (`vpc0` 10.0.255.1/30 here, `eth1` 10.0.255.2/30 on
/// the VPC host) with the VPC prefix routed over it. On the VPC host,
/// packets arriving on `eth1` are marked and `net.ipv4.fwmark_reflect` puts
/// the mark on the kernel's replies (echo replies), which a rule routes back
/// to this VGW; everything else keeps the VPC host's default route (the
/// first VGW). Whatever runs in the namespace (charon) routes the LAN.
pub fn add_second_vgw(t: &Topology) -> Netns {
    let vpc = t.vpc();
    let vgw2 = Netns::new("vgw2");
    vgw2.sysctl("net.ipv4.ip_forward", "1");
    vgw2.veth("wan", &t.inet, "i-vgw2");
    t.inet.ip(&format!("addr add {VGW2_INET}/25 dev i-vgw2"));
    vgw2.ip(&format!("addr add {VGW2_WAN}/25 dev wan"));
    vgw2.ip(&format!("route add default via {VGW2_INET}"));
    vgw2.veth("vpc0", vpc, "eth1");
    vgw2.ip(&format!("addr add {VGW2_VPC_SIDE}/30 dev vpc0"));
    vpc.ip(&format!("addr add {VPC_HOST_VGW2_SIDE}/30 dev eth1"));
    vgw2.ip(&format!("route add {VPC_CIDR} via {VPC_HOST_VGW2_SIDE}"));
    vpc.sysctl("net.ipv4.fwmark_reflect", "1");
    let nft = format!(
        "table ip iptvpc {{\n\
         chain pre {{ type filter hook prerouting priority mangle; policy accept;\n\
           iifname \"eth1\" meta mark set {VGW2_MARK}; }}\n\
         }}\n"
    );
    vpc.exec_input("nft", &["-f", "-"], nft.as_bytes())
        .expect_ok();
    vpc.ip(&format!(
        "rule add fwmark {VGW2_MARK} lookup {VGW2_TABLE} pref 100"
    ));
    vpc.ip(&format!(
        "route add default via {VGW2_VPC_SIDE} dev eth1 table {VGW2_TABLE}"
    ));
    vgw2
}

/// charon as an AWS VGW in `ns` (files in `<topology dir>/charon-<label>`):
/// AWS-like liveness, the LAN and the WireGuard subnet routed into ipsec0.
pub fn start_vgw_charon(t: &Topology, ns: &Netns, label: &str) -> Charon {
    start_vgw_charon_with(t, ns, label, CharonConf::aws_vgw(&[LAN_CIDR, WG_CIDR]))
}

/// [`start_vgw_charon`] with another daemon config (e.g. a log level).
pub fn start_vgw_charon_with(t: &Topology, ns: &Netns, label: &str, conf: CharonConf) -> Charon {
    Charon::start(ns, &t.dir.join(&format!("charon-{label}")), label, &conf)
}

// -------------------------------------------------------- [[ipsec.tunnels]] --

/// One `[[ipsec.tunnels]]` table. `None` leaves ipieced's default.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    /// `name`.
    pub name: String,
    /// `remote_address`.
    pub remote_address: String,
    /// The PSK, written to `<config dir>/ipsec/<name>.psk` (0600) and named
    /// by `psk_file`.
    pub psk: String,
    /// `ike_proposals`.
    pub ike_proposals: Option<String>,
    /// `esp_proposals`.
    pub esp_proposals: Option<String>,
    /// `start_action` (`initiate` or `wait`).
    pub start_action: Option<String>,
    /// `priority`.
    pub priority: Option<u32>,
    /// Other integer keys (`dpd_interval`, `child_lifetime`, ...).
    pub ints: Vec<(String, i64)>,
    /// Other string keys (`local_id`, `remote_id`, ...).
    pub strs: Vec<(String, String)>,
}

impl TunnelSpec {
    /// A tunnel to `remote_address` with this PSK, everything else default.
    pub fn new(name: &str, remote_address: &str, psk: &str) -> TunnelSpec {
        TunnelSpec {
            name: name.into(),
            remote_address: remote_address.into(),
            psk: psk.into(),
            ike_proposals: None,
            esp_proposals: None,
            start_action: None,
            priority: None,
            ints: Vec::new(),
            strs: Vec::new(),
        }
    }
    /// Sets `ike_proposals` and `esp_proposals`.
    pub fn proposals(mut self, ike: &str, esp: &str) -> TunnelSpec {
        self.ike_proposals = Some(ike.into());
        self.esp_proposals = Some(esp.into());
        self
    }
    /// Sets `start_action`.
    pub fn start_action(mut self, a: &str) -> TunnelSpec {
        self.start_action = Some(a.into());
        self
    }
    /// Sets `priority`.
    pub fn priority(mut self, p: u32) -> TunnelSpec {
        self.priority = Some(p);
        self
    }
    /// Sets another integer key.
    pub fn int(mut self, key: &str, v: i64) -> TunnelSpec {
        self.ints.push((key.into(), v));
        self
    }
    /// Sets another string key.
    pub fn str(mut self, key: &str, v: &str) -> TunnelSpec {
        self.strs.push((key.into(), v.into()));
        self
    }
}

/// The PSK file of tunnel `name` in `cfg`'s directory.
pub fn psk_path(cfg: &GwConfig, name: &str) -> PathBuf {
    cfg.dir.join("ipsec").join(format!("{name}.psk"))
}

/// Writes `psk` (plus a line end) to tunnel `name`'s PSK file, mode 0600
/// from creation on.
pub fn write_psk(cfg: &GwConfig, name: &str, psk: &str) {
    let path = psk_path(cfg, name);
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(format!("{psk}\n").as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Replaces the `[[ipsec.tunnels]]` of `cfg` with `tunnels` (PSK files
/// written first), keeping the rest of the file, and checks the result with
/// `wgctl check`.
pub fn write_tunnels(cfg: &GwConfig, tunnels: &[TunnelSpec]) {
    for t in tunnels {
        write_psk(cfg, &t.name, &t.psk);
    }
    let text = fs::read_to_string(&cfg.path).unwrap();
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{text}", cfg.path.display()));
    if doc.get("ipsec").is_none() {
        doc["ipsec"] = toml_edit::table();
    }
    let mut arr = toml_edit::ArrayOfTables::new();
    for t in tunnels {
        let mut tab = toml_edit::Table::new();
        tab["name"] = toml_edit::value(t.name.as_str());
        tab["remote_address"] = toml_edit::value(t.remote_address.as_str());
        tab["psk_file"] = toml_edit::value(format!("ipsec/{}.psk", t.name));
        if let Some(p) = &t.ike_proposals {
            tab["ike_proposals"] = toml_edit::value(p.as_str());
        }
        if let Some(p) = &t.esp_proposals {
            tab["esp_proposals"] = toml_edit::value(p.as_str());
        }
        if let Some(a) = &t.start_action {
            tab["start_action"] = toml_edit::value(a.as_str());
        }
        if let Some(p) = t.priority {
            tab["priority"] = toml_edit::value(p as i64);
        }
        for (k, v) in &t.ints {
            tab[k.as_str()] = toml_edit::value(*v);
        }
        for (k, v) in &t.strs {
            tab[k.as_str()] = toml_edit::value(v.as_str());
        }
        arr.push(tab);
    }
    doc["ipsec"]["tunnels"] = toml_edit::Item::ArrayOfTables(arr);
    fs::write(&cfg.path, doc.to_string()).unwrap();
    let out = wgctl_at(&cfg.path, &["check"]);
    assert!(
        out.ok(),
        "wgctl check refuses the tunnels written into {}: {out}\n{}",
        cfg.path.display(),
        fs::read_to_string(&cfg.path).unwrap_or_default()
    );
}

/// `wgctl reload` in `ns`; panics unless it succeeds. Returns its output.
pub fn reload(cfg: &GwConfig, ns: &Netns) -> Out {
    let out = cfg.wgctl(ns, &["reload"]);
    assert!(out.ok(), "wgctl reload: {out}");
    out
}

// ------------------------------------------------------------ status json --

/// The `tunnels[]` entry named `name` of a `wgctl status --json` answer.
pub fn tunnel<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["tunnels"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json has no tunnels array: {status:#}"))
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("status --json lists no tunnel {name:?}: {status:#}"))
}

/// A tunnel's `state` (up, down, connecting, admin_down).
pub fn state(t: &serde_json::Value) -> &str {
    t["state"]
        .as_str()
        .unwrap_or_else(|| panic!("tunnel without state: {t:#}"))
}

/// The active CHILD SA of a tunnel entry (`children[]` with `active`).
pub fn active_child(t: &serde_json::Value) -> Option<&serde_json::Value> {
    t["children"]
        .as_array()?
        .iter()
        .find(|c| c["active"].as_bool() == Some(true))
}

/// A counter of a tunnel's active CHILD SA (0 without one).
pub fn child_counter(t: &serde_json::Value, key: &str) -> u64 {
    active_child(t)
        .map(|c| json_u64(&c["counters"], key))
        .unwrap_or(0)
}

/// A counter summed over a tunnel's `totals` (removed and current SAs).
pub fn total_counter(t: &serde_json::Value, key: &str) -> u64 {
    json_u64(&t["totals"], key)
}

/// Polls `wgctl status --json` until tunnel `name` satisfies `pred`, at
/// most `timeout`; returns the tunnel entry. Panics with the last status and
/// the daemon's log otherwise (also when the daemon died).
pub fn wait_tunnel(
    cfg: &GwConfig,
    ns: &Netns,
    daemon: &Daemon,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    let mut last = serde_json::Value::Null;
    let mut last_err = String::new();
    let ok = wait_until(timeout, Duration::from_millis(100), || {
        if !ns.running(daemon.pid) {
            last_err = "ipieced exited".into();
            return true;
        }
        let out = cfg.wgctl(ns, &["status", "--json"]);
        if !out.ok() {
            last_err = format!("{out}");
            return false;
        }
        match serde_json::from_str::<serde_json::Value>(&out.stdout) {
            Ok(v) => {
                last = tunnel(&v, name).clone();
                last_err.clear();
                pred(&last)
            }
            Err(e) => {
                last_err = format!("status --json is not JSON ({e}): {out}");
                false
            }
        }
    });
    assert!(
        ok && ns.running(daemon.pid),
        "tunnel {name}: not {what} after {:?} (ipieced running: {}); {last_err}\nlast status of the tunnel: {last:#}\n--- ipieced log ---\n{}",
        start.elapsed(),
        ns.running(daemon.pid),
        tail(&daemon.log, 60)
    );
    last
}

/// Waits for tunnel `name` to be `up` with an active CHILD SA.
pub fn wait_up(
    cfg: &GwConfig,
    ns: &Netns,
    daemon: &Daemon,
    name: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_tunnel(cfg, ns, daemon, name, timeout, "up", |t| {
        state(t) == "up" && active_child(t).is_some()
    })
}

// -------------------------------------------------------------- log watch --

/// Lines of `text` after byte `from` (a length taken earlier).
pub fn since(text: &str, from: usize) -> &str {
    text.get(from.min(text.len())..).unwrap_or("")
}

// ---------------------------------------------------------------- capture --

/// One UDP datagram read back from a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// tcpdump writing UDP 500 and 4500 on one interface of a namespace to a
/// pcap file.
pub struct Capture {
    pid: u32,
    /// The pcap file.
    pub file: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i <ifname> -U --immediate-mode -w <dir>/<tag>.pcap udp port 500 or
    /// udp port 4500` in `ns` (as root: `-Z root`), waiting (10 s) until it
    /// listens.
    pub fn start(ns: &Netns, ifname: &str, dir: &Path, tag: &str) -> Capture {
        Capture::start_filtered(ns, ifname, dir, tag, "udp port 500 or udp port 4500", 0)
    }

    /// Starts tcpdump on `ifname` in `ns` writing what matches `filter`
    /// (the first `snaplen` bytes of each packet; 0 = whole packets) to
    /// `<dir>/<tag>.pcap`, waiting (10 s) until it listens.
    pub fn start_filtered(
        ns: &Netns,
        ifname: &str,
        dir: &Path,
        tag: &str,
        filter: &str,
        snaplen: u32,
    ) -> Capture {
        let file = dir.join(format!("{tag}.pcap"));
        let log = dir.join(format!("{tag}.tcpdump.log"));
        let snaplen = snaplen.to_string();
        let pid = ns.spawn(
            &format!("tcpdump {tag}"),
            "tcpdump",
            &[
                "-i",
                ifname,
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-s",
                &snaplen,
                "-w",
                file.to_str().unwrap(),
                filter,
            ],
            &[],
            &log,
        );
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                fs::read_to_string(&log)
                    .map(|s| s.contains("listening on"))
                    .unwrap_or(false)
                    || !ns.running(pid)
            }) && ns.running(pid),
            "tcpdump did not start on {ifname} in {}:\n{}",
            ns.name,
            tail(&log, 20)
        );
        Capture { pid, file, log }
    }

    /// Stops tcpdump (SIGINT, bounded wait) and returns the UDP datagrams
    /// it wrote, in order.
    pub fn stop(self, ns: &Netns) -> Vec<Datagram> {
        let file = self.file.clone();
        let bytes = self.stop_raw(ns);
        parse_pcap(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    /// Stops tcpdump (SIGINT, bounded wait) and returns the pcap file's bytes.
    pub fn stop_raw(self, ns: &Netns) -> Vec<u8> {
        signal(self.pid, libc::SIGINT);
        assert!(
            ns.wait_exit(self.pid, Duration::from_secs(5)).is_some(),
            "tcpdump ignored SIGINT for 5 s"
        );
        fs::read(&self.file).unwrap_or_else(|e| {
            panic!(
                "no capture {}: {e}\n{}",
                self.file.display(),
                tail(&self.log, 20)
            )
        })
    }
}

/// The IPv4 packets of a pcap file (Ethernet or raw-IP link type), in
/// order, each from its IP header to the end of what was captured.
pub fn pcap_ipv4_packets(b: &[u8]) -> Result<Vec<&[u8]>, String> {
    if b.len() < 24 {
        return Err("shorter than a pcap header".into());
    }
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => return Err(format!("not a pcap file (magic {m:08x})")),
    };
    let u32_at = |o: usize| -> u32 {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let skip = match u32_at(20) {
        1 => 14,
        101 | 12 | 14 => 0,
        t => return Err(format!("link type {t}: expected Ethernet or raw IP")),
    };
    let mut out = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let incl = u32_at(o + 8) as usize;
        let frame = b
            .get(o + 16..o + 16 + incl)
            .ok_or("truncated pcap record")?;
        o += 16 + incl;
        if skip == 14 && frame.get(12..14) != Some(&[0x08, 0x00][..]) {
            continue;
        }
        match frame.get(skip..) {
            Some(ip) if ip.len() >= 20 && ip[0] >> 4 == 4 => out.push(ip),
            _ => {}
        }
    }
    Ok(out)
}

/// The UDP-over-IPv4 datagrams of a pcap file.
pub fn parse_pcap(b: &[u8]) -> Result<Vec<Datagram>, String> {
    let mut out = Vec::new();
    for ip in pcap_ipv4_packets(b)? {
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let ip = &ip[..total.min(ip.len())];
        let src_ip = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let ulen = (u16::from_be_bytes([udp[4], udp[5]]) as usize).clamp(8, udp.len());
        out.push(Datagram {
            src: SocketAddr::from((src_ip, sport)),
            dst: SocketAddr::from((dst_ip, dport)),
            payload: udp[8..ulen].to_vec(),
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------ ipieced --

/// [`start_ipieced`] with ipieced's own log filter: ipieced reads
/// `IPIECE_LOG` (src/bin/ipieced.rs), not the `RUST_LOG` that
/// [`start_ipieced`] sets, so this passes `filter` (or `IPIECE_TEST_LOG` if
/// set) as `IPIECE_LOG`. Waits (10 s) for the control socket to answer, the
/// UAPI socket and the TUN.
pub fn start_ipieced_logging(ns: &Netns, cfg: &GwConfig, filter: &str) -> Daemon {
    ns.remove_at_teardown(&cfg.uapi_socket());
    ns.remove_at_teardown(&cfg.control_socket);
    let log = cfg.dir.join(format!("ipieced-{}.log", cfg.tun));
    let filter = std::env::var("IPIECE_TEST_LOG").unwrap_or_else(|_| filter.to_string());
    let pid = ns.spawn(
        "ipieced",
        IPIECED,
        &["--config", cfg.path.to_str().unwrap()],
        &[
            ("IPIECE_LOG", filter.as_str()),
            ("RUST_BACKTRACE", "1"),
            ("NO_COLOR", "1"),
        ],
        &log,
    );
    let d = Daemon { pid, log };
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        if !ns.running(pid) {
            return false;
        }
        if !cfg.control_socket.exists() {
            last = "no control socket yet".into();
            return false;
        }
        let out = cfg.wgctl(ns, &["status"]);
        if !out.ok() {
            last = format!("{out}");
            return false;
        }
        if !cfg.uapi_socket().exists() {
            last = "no UAPI socket yet".into();
            return false;
        }
        ns.try_ip(&format!("link show {}", cfg.tun)).ok()
    });
    assert!(
        up,
        "ipieced did not come up in {} (running: {}, last: {last}):\n{}",
        ns.name,
        ns.running(pid),
        tail(&d.log, 100)
    );
    d
}

// --------------------------------------------------------------------- ping --

/// A ping run read reply by reply: which `icmp_seq`s were answered.
///
/// iputils' ping, once its count is sent, waits only max(2 x the largest
/// RTT, the interval) for the last replies, so under load a reply that is
/// merely late counts as lost in its summary. Runs here use `-w` (a
/// deadline: ping waits until `count` replies or the deadline) and are
/// judged by the sequence numbers that got an answer.
#[derive(Debug, Clone)]
pub struct PingSeqs {
    /// Echo requests sent (the summary line).
    pub transmitted: u32,
    /// The sequence numbers answered.
    pub answered: std::collections::BTreeSet<u32>,
}

impl PingSeqs {
    /// Parses ping's non-quiet output (`... bytes from ...: icmp_seq=K ...`
    /// lines and the summary); panics with `context` without a summary.
    pub fn parse(text: &str, context: &str) -> PingSeqs {
        let summary = Ping::parse(text, context);
        let answered = text
            .lines()
            .filter(|l| l.contains("bytes from") && !l.contains("DUP!"))
            .filter_map(|l| {
                let rest = &l[l.find("icmp_seq=")? + "icmp_seq=".len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect();
        PingSeqs {
            transmitted: summary.transmitted,
            answered,
        }
    }

    /// The sequence numbers in `1..=upto` that got no answer.
    pub fn missing(&self, upto: u32) -> Vec<u32> {
        (1..=upto).filter(|s| !self.answered.contains(s)).collect()
    }
}

/// `ping -n -c <count> -i <interval> -w <deadline_s> <dst>` in `ns`: ping
/// stops once `count` replies came or at the deadline.
pub fn ping_seqs(ns: &Netns, dst: &str, count: u32, interval_ms: u32, deadline_s: u32) -> PingSeqs {
    let out = ns.exec_t(
        "ping",
        &[
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            &format!("{}", interval_ms as f64 / 1000.0),
            "-w",
            &deadline_s.to_string(),
            dst,
        ],
        Duration::from_secs(deadline_s as u64 + 5),
    );
    PingSeqs::parse(&out.stdout, &format!("{out}"))
}
