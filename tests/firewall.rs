//! The firewall and NAT of issue 9 on real kernel nftables, in the
//! network-namespace topology of tests/common: ipieced in the gateway
//! namespace (WAN `eth0` 192.168.1.2 behind the home router, LAN `lan0`
//! 172.16.4.1), the LAN host 172.16.4.10, wireguard-go laptops on the
//! internet, the strongSwan VGW and the VPC host 10.0.1.10 behind it.
//!
//! The WAN-side probe is the home router's namespace (192.168.1.1, on the
//! gateway's WAN link) with routes to the LAN and the WireGuard subnet via
//! the gateway's WAN address: what any host on a shared office network can
//! do. Servers and the port scanner are tests/fixtures/firewall/netprobe.py.
//!
//! The acceptance points shown here:
//! - the WAN probe reaches no LAN host and no laptop; the LAN host reaches
//!   the WAN through masquerade and the VPC without NAT (no [firewall]
//!   table: the interfaces come from the routes); the kernel path clamps
//!   the MSS of SYNs to and from the VPC (1379) and the laptops (MTU - 40);
//! - a scan of the WAN address finds only UDP 51821/500/4500 (accepted, by
//!   their counter) and TCP 22 from an `ssh_from` source; a port forward
//!   works from its allowed source only;
//! - one packet matrix (LAN host, two laptops, VPC host) through the kernel
//!   and the core gives the evaluator's verdicts; a `peer:NAME` rule stops
//!   that laptop's TCP 5432 to the VPC (core counter) and to the LAN
//!   (kernel counter), not the other laptop's nor the LAN host's;
//! - every zone pair (wan, lan, wg, aws) with rules of every kind, through
//!   a router namespace holding the rendered ruleset and through the
//!   evaluator: the same verdict in every cell;
//! - reloads refused by validation and by nft keep the old ruleset (the
//!   probe still fails) and status names the error; after SIGTERM and
//!   SIGKILL the probe still gets nothing in;
//! - without interfaces or without nft, ipieced refuses to start and says
//!   what to do.

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use ipiece::config::firewall::Zone;
use ipiece::config::Config;
use ipiece::firewall::{PacketInfo, Policy};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PSK: &str = "ipiece.firewall.tun1.0123456789";
const TUN1: &str = "aws-1";
const VGW_CONN: &str = "aws-vgw-tun1";
const UP_TIMEOUT: Duration = Duration::from_secs(20);
/// The gateway's WAN address (what the WAN side sees).
const GW_WAN: &str = GW_ETH0;
/// The WAN probe's address (the home router, on the gateway's WAN link).
const PROBE: &str = "192.168.1.1";
/// A second address of the WAN probe, outside `ssh_from` and the forward's `from`.
const PROBE2: &str = "192.168.1.3";

fn netprobe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/firewall/netprobe.py")
}

/// Starts netprobe.py's servers in `ns` and waits until they listen.
fn serve(ns: &Netns, dir: &Path, tag: &str, tcp: &str, udp: &str) {
    let log = dir.join(format!("netprobe-{tag}.log"));
    let script = netprobe();
    ns.spawn(
        "netprobe",
        "python3",
        &[
            script.to_str().unwrap(),
            "serve",
            "--tcp",
            tcp,
            "--udp",
            udp,
        ],
        &[],
        &log,
    );
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("ready"))
    });
    assert!(
        ok,
        "netprobe servers in {} did not start:\n{}",
        ns.name,
        tail(&log, 20)
    );
}

/// A TCP (or UDP) exchange with a netprobe server: `Ok(the source address
/// the server saw)` or `Err(why not)`.
fn connect(
    ns: &Netns,
    host: &str,
    port: u16,
    udp: bool,
    bind: Option<&str>,
) -> Result<String, String> {
    let script = netprobe();
    let port = port.to_string();
    let mut args = vec![
        script.to_str().unwrap(),
        "connect",
        host,
        port.as_str(),
        "--timeout",
        "1.5",
    ];
    if udp {
        args.push("--udp");
    }
    if let Some(b) = bind {
        args.extend(["--bind", b]);
    }
    let out = ns.exec_t("python3", &args, Duration::from_secs(10));
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("netprobe connect: {e}: {out}"));
    if v["ok"].as_bool() == Some(true) {
        let r = v["reply"].as_str().unwrap_or_default();
        Ok(r.trim_start_matches("from ").to_owned())
    } else {
        Err(v["error"].as_str().unwrap_or("?").to_owned())
    }
}

fn tcp(ns: &Netns, host: &str, port: u16) -> Result<String, String> {
    connect(ns, host, port, false, None)
}

/// The WAN probe: routes to the LAN and the WireGuard subnet via the
/// gateway's WAN address, as on a shared office network.
fn route_probe_inside(t: &Topology) {
    for p in [LAN_CIDR, WG_CIDR] {
        t.nat.ip(&format!("route replace {p} via {GW_WAN} dev lan"));
    }
}

/// What the WAN probe gets in: each of ping, TCP and UDP to the LAN host
/// and to a laptop's address that was answered (empty: nothing). (A laptop
/// drops what comes from outside its AllowedIPs and answers the WAN through
/// its own link: the tests look at what the gateway sent it.)
fn probe_gets_in(t: &Topology, laptop: Option<&str>) -> Vec<String> {
    let mut got = Vec::new();
    let mut targets = vec![LAN_HOST];
    targets.extend(laptop);
    for dst in targets {
        if t.nat.ping(dst, 2, 200, 1).received > 0 {
            got.push(format!("ping {dst}"));
        }
        if let Ok(src) = tcp(&t.nat, dst, 5432) {
            got.push(format!("tcp {dst}:5432 (seen from {src})"));
        }
        if let Ok(src) = connect(&t.nat, dst, 5432, true, None) {
            got.push(format!("udp {dst}:5432 (seen from {src})"));
        }
    }
    got
}

/// The payload bytes the gateway sent to peer `name` through WireGuard.
fn sent_to_peer(cfg: &GwConfig, ns: &Netns, name: &str) -> u64 {
    let st = cfg.status_json(ns);
    json_u64(
        status_peer(&st, name).expect("peer in status"),
        "tx_payload_bytes",
    )
}

/// At most 20 of `ports` and how many there are.
fn some(ports: &Value) -> String {
    let v: Vec<String> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.to_string())
        .collect();
    format!(
        "{} ports: {}{}",
        v.len(),
        v.iter().take(20).cloned().collect::<Vec<_>>().join(","),
        if v.len() > 20 { ",..." } else { "" }
    )
}

/// The MSS of the first TCP SYN from `src` that `ns` sees on `ifname` while
/// `src_ns` connects to `dst:port` (tcpdump, bounded).
fn syn_mss(
    ns: &Netns,
    ifname: &str,
    src_ns: &Netns,
    src: &str,
    dst: &str,
    port: u16,
    dir: &Path,
) -> Option<u32> {
    let log = dir.join(format!("syn-{}-{ifname}-{src}.log", ns.name));
    let filter = format!("src host {src} and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn");
    let pid = ns.spawn(
        "tcpdump syn",
        "tcpdump",
        &["-i", ifname, "-n", "-l", "-v", "-c", "1", &filter],
        &[],
        &log,
    );
    let listening = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"))
    });
    assert!(
        listening,
        "tcpdump did not start in {}:\n{}",
        ns.name,
        tail(&log, 10)
    );
    let _ = tcp(src_ns, dst, port);
    let _ = ns.wait_exit(pid, Duration::from_secs(5));
    let text = fs::read_to_string(&log).unwrap_or_default();
    let at = text.find("mss ")? + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn remove_firewall_table(cfg: &GwConfig) {
    let text = fs::read_to_string(&cfg.path).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc.remove("firewall");
    fs::write(&cfg.path, doc.to_string()).unwrap();
}

/// Appends TOML to the config file and checks it with `wgctl check`.
fn append(cfg: &GwConfig, text: &str) {
    let mut t = fs::read_to_string(&cfg.path).unwrap();
    t.push_str(text);
    fs::write(&cfg.path, t).unwrap();
    let out = wgctl_at(&cfg.path, &["check"]);
    assert!(out.ok(), "wgctl check: {out}");
}

fn firewall_status(cfg: &GwConfig, ns: &Netns) -> Value {
    cfg.status_json(ns)["firewall"].clone()
}

/// A counter of `wgctl status --json` (`kernel` or `core`) by name; 0 when absent.
fn counter(fw: &Value, side: &str, name: &str) -> u64 {
    fw[side]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str() == Some(name))
        .and_then(|c| c["packets"].as_u64())
        .unwrap_or(0)
}

fn nft_table(ns: &Netns) -> Out {
    ns.exec("nft", &["list", "table", "inet", "ipiece"])
}

/// The topology with the VGW, charon, ipieced with tunnel 1 up, and the
/// laptops `names` connected.
struct Lab {
    charon: Option<Charon>,
    daemon: Option<Daemon>,
    laptops: Vec<WgClient>,
    cfg: GwConfig,
    t: Topology,
}

impl Lab {
    fn new(test: &str, names: &[&str], firewall: Option<&str>) -> Option<Lab> {
        if !need_root(test) {
            return None;
        }
        if let Err(e) = available() {
            panic!("{test}: {e}");
        }
        let t = Topology::with_vgw(names.len());
        let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
        let charon = start_vgw_charon(&t, t.vgw(), "vgw1");
        charon.load(&SwanctlConf::one(ConnConf::aws_vgw(
            VGW_CONN, VGW_WAN, NAT_WAN, PSK,
        )));
        let mut lab = Lab {
            charon: Some(charon),
            daemon: None,
            laptops: Vec::new(),
            cfg,
            t,
        };
        // Peers first: the rules may name them.
        let confs: Vec<PathBuf> = names
            .iter()
            .map(|n| lab.cfg.dir.join(format!("{n}.conf")))
            .collect();
        for (n, c) in names.iter().zip(&confs) {
            let out = wgctl_at(
                &lab.cfg.path,
                &["add-peer", n, "--output", c.to_str().unwrap()],
            );
            assert!(out.ok(), "add-peer {n}: {out}");
        }
        match firewall {
            None => remove_firewall_table(&lab.cfg),
            Some(extra) => append(&lab.cfg, extra),
        }
        write_tunnels(&lab.cfg, &[TunnelSpec::new(TUN1, VGW_WAN, PSK)]);
        lab.daemon = Some(start_ipieced(&lab.t.gw, &lab.cfg));
        wait_up(
            &lab.cfg,
            &lab.t.gw,
            lab.daemon.as_ref().unwrap(),
            TUN1,
            UP_TIMEOUT,
        );
        for (k, c) in confs.iter().enumerate() {
            let wg = start_wg_client(&lab.t.laptops[k], c, &lab.t.dir.path);
            assert!(
                lab.t.laptops[k].ping_until(GW_WG_ADDR, Duration::from_secs(10)),
                "laptop {k} never reached the gateway"
            );
            lab.laptops.push(wg);
        }
        Some(lab)
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }
}

// ------------------------------------------------------------------ probe --

#[test]
fn wan_probe_gets_nothing_in_while_the_lan_is_masqueraded_to_the_wan_and_not_to_the_vpc() {
    // No [firewall] table: the default policy, interfaces from the routes.
    let Some(lab) = Lab::new("wan_probe_gets_nothing_in", &["alice"], None) else {
        return;
    };
    let t = &lab.t;
    let fw = firewall_status(&lab.cfg, &t.gw);
    assert_eq!(fw["enabled"].as_bool(), Some(true), "{fw:#}");
    assert_eq!(fw["interfaces"]["wan"].as_str(), Some("eth0"), "{fw:#}");
    assert_eq!(fw["interfaces"]["lan"].as_str(), Some("lan0"), "{fw:#}");
    serve(&t.lan, &t.dir.path, "lan", "5432", "5432");
    serve(&t.laptops[0], &t.dir.path, "alice", "5432", "5432");
    serve(&t.nat, &t.dir.path, "wan", "8080", "");
    serve(t.vpc(), &t.dir.path, "vpc", "5432", "");
    route_probe_inside(t);
    let alice = lab.laptops[0].address();
    let sent = sent_to_peer(&lab.cfg, &t.gw, "alice");
    let got = probe_gets_in(t, Some(&alice));
    let sent_after = sent_to_peer(&lab.cfg, &t.gw, "alice");
    assert_eq!(
        sent, sent_after,
        "the WAN probe's packets went through the tunnel to alice"
    );
    assert!(got.is_empty(), "the WAN probe got in: {got:?}");
    let fw = firewall_status(&lab.cfg, &t.gw);
    assert!(counter(&fw, "kernel", "forward default drop") > 0, "{fw:#}");

    // LAN -> WAN: masqueraded to the gateway's WAN address.
    assert_eq!(
        tcp(&t.lan, PROBE, 8080),
        Ok(GW_WAN.to_owned()),
        "LAN host -> WAN host"
    );
    // LAN -> VPC: never NATed.
    assert_eq!(
        tcp(&t.lan, VPC_HOST, 5432),
        Ok(LAN_HOST.to_owned()),
        "LAN host -> VPC host"
    );
    // The laptop reaches the LAN and the VPC with its own address.
    assert_eq!(tcp(&t.laptops[0], LAN_HOST, 5432), Ok(alice.clone()));
    assert_eq!(tcp(&t.laptops[0], VPC_HOST, 5432), Ok(alice.clone()));

    // The kernel path clamps the MSS of SYNs to and from the tunnels: at
    // most 1379 for the VPC, the WireGuard MTU - 40 for the laptops (the
    // hosts' own MSS is 1460).
    serve(&t.lan, &t.dir.path, "lan-mss", "5433", "");
    serve(&t.laptops[0], &t.dir.path, "alice-mss", "5433", "");
    let d = &t.dir.path;
    let cases = [
        (
            "LAN -> VPC",
            syn_mss(t.vpc(), "eth0", &t.lan, LAN_HOST, VPC_HOST, 5432, d),
            1379,
        ),
        (
            "VPC -> LAN",
            syn_mss(&t.lan, "eth0", t.vpc(), VPC_HOST, LAN_HOST, 5433, d),
            1379,
        ),
        (
            "LAN -> laptop",
            syn_mss(
                &t.laptops[0],
                &lab.laptops[0].ifname,
                &t.lan,
                LAN_HOST,
                &alice,
                5433,
                d,
            ),
            1380,
        ),
    ];
    for (what, mss, max) in cases {
        let mss = mss.unwrap_or_else(|| panic!("{what}: no SYN with an MSS captured"));
        assert!(mss <= max, "{what}: SYN with MSS {mss} > {max}");
    }
    let _ = &lab.charon;
}

// ------------------------------------------------------------------- scan --

#[test]
fn scan_of_the_wan_address_finds_only_the_gateway_ports_ssh_from_and_the_port_forward() {
    if !need_root("scan_of_the_wan_address") {
        return;
    }
    let t = Topology::new(0);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    append(
        &cfg,
        &format!(
            "ssh_from = [\"{PROBE}/32\"]\n\n\
             [[firewall.port_forwards]]\nname = \"web\"\nproto = \"tcp\"\nport = 8443\n\
             to = \"{LAN_HOST}:8080\"\nfrom = [\"{PROBE}\"]\n"
        ),
    );
    let _d = start_ipieced(&t.gw, &cfg);
    // Listeners inside the gateway: an unfiltered port would answer.
    serve(
        &t.gw,
        &t.dir.path,
        "gw",
        "22,80,443,5432,8080,9000",
        "53,67,123,161,5353,9999",
    );
    serve(&t.lan, &t.dir.path, "lan", "8080", "");
    t.nat.ip(&format!("addr add {PROBE2}/24 dev lan"));
    // From inside (loopback is never filtered) the listeners answer.
    assert_eq!(tcp(&t.gw, "127.0.0.1", 22), Ok("127.0.0.1".into()));

    let wan_ports = "wan: wireguard, ike, nat-t";
    let before = counter(&firewall_status(&cfg, &t.gw), "kernel", wan_ports);
    let script = netprobe();
    let scan = |bind: &str, udp: &str| -> Value {
        let out = t.nat.exec_t(
            "python3",
            &[
                script.to_str().unwrap(),
                "scan",
                GW_WAN,
                "--tcp",
                "1-1024,4500,5000-10000,51821",
                "--udp",
                udp,
                "--bind",
                bind,
            ],
            Duration::from_secs(120),
        );
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("scan: {e}: {out}"))
    };
    let all = "1-1024,4500,5000-10000,51821";
    let outside = scan(PROBE2, all);
    assert_eq!(
        outside["tcp"],
        serde_json::json!([]),
        "TCP ports answering {PROBE2}"
    );
    assert_eq!(
        outside["udp"],
        serde_json::json!([]),
        "UDP ports answering {PROBE2}"
    );
    // The gateway's UDP ports took the scan's datagrams (they answer no junk).
    let after = counter(&firewall_status(&cfg, &t.gw), "kernel", wan_ports);
    assert!(after >= before + 3, "{wan_ports}: {before} -> {after}");
    let inside = scan(PROBE, "");
    assert_eq!(
        inside["tcp"],
        serde_json::json!([22, 8443]),
        "TCP ports answering the ssh_from source {PROBE}: {}",
        some(&inside["tcp"])
    );

    // The port forward reaches the LAN server from its allowed source only.
    assert_eq!(
        connect(&t.nat, GW_WAN, 8443, false, Some(PROBE)),
        Ok(PROBE.to_owned())
    );
    assert!(connect(&t.nat, GW_WAN, 8443, false, Some(PROBE2)).is_err());
    let fw = firewall_status(&cfg, &t.gw);
    assert!(counter(&fw, "kernel", "forward web") >= 1, "{fw:#}");
}

// ----------------------------------------------------------------- matrix --

const RULES: &str = r#"
[[firewall.rules]]
name = "no-db-for-alice"
from = "peer:alice"
to = "aws"
proto = "tcp"
ports = [5432]
action = "drop"

[[firewall.rules]]
name = "no-lan-db-for-alice"
from = "peer:alice"
to = "lan"
proto = "tcp"
ports = ["5430-5439"]
action = "reject"

[[firewall.rules]]
name = "no-web-from-vpc-to-laptops"
from = "aws"
to = "wg"
proto = "tcp"
ports = [80]
action = "drop"

[[firewall.rules]]
name = "no-web-from-lan-to-bob"
from = "lan"
to = "peer:bob"
proto = "tcp"
ports = [80]
action = "drop"
"#;

#[test]
fn one_packet_matrix_gives_the_evaluators_verdicts_on_the_kernel_and_the_core_path() {
    let Some(lab) = Lab::new("one_packet_matrix", &["alice", "bob"], Some(RULES)) else {
        return;
    };
    let t = &lab.t;
    let policy = Policy::compile(&Config::load(&lab.cfg.path).expect("config"));
    let (alice, bob) = (lab.laptops[0].address(), lab.laptops[1].address());
    let hosts: Vec<(&str, &Netns, String, Zone)> = vec![
        ("lan", &t.lan, LAN_HOST.to_owned(), Zone::Lan),
        ("alice", &t.laptops[0], alice.clone(), Zone::Wg),
        ("bob", &t.laptops[1], bob.clone(), Zone::Wg),
        ("vpc", t.vpc(), VPC_HOST.to_owned(), Zone::Aws),
    ];
    for (name, ns, _, _) in &hosts {
        serve(ns, &t.dir.path, name, "80,5432", "");
    }
    let before = firewall_status(&lab.cfg, &t.gw);
    let mut wrong = Vec::new();
    let mut cells = 0;
    let mut reached = std::collections::HashMap::new();
    for (sname, sns, saddr, szone) in &hosts {
        for (dname, _, daddr, dzone) in &hosts {
            // Laptop to laptop is one zone through the kernel; skip self.
            if sname == dname {
                continue;
            }
            for port in [80u16, 5432] {
                let mut pkt = vec![0u8; 40];
                pkt[0] = 0x45;
                pkt[9] = 6;
                pkt[12..16].copy_from_slice(&saddr.parse::<std::net::Ipv4Addr>().unwrap().octets());
                pkt[16..20].copy_from_slice(&daddr.parse::<std::net::Ipv4Addr>().unwrap().octets());
                pkt[22..24].copy_from_slice(&port.to_be_bytes());
                let info = PacketInfo::parse(&pkt).unwrap();
                let want = policy.decide(*szone, *dzone, &info).accept;
                let got = tcp(sns, daddr, port);
                let path = if matches!(
                    (szone, dzone),
                    (Zone::Wg, Zone::Aws) | (Zone::Aws, Zone::Wg)
                ) {
                    "core"
                } else {
                    "kernel"
                };
                cells += 1;
                reached.insert((*sname, *dname, port), got.is_ok());
                if got.is_ok() != want || got.as_ref().is_ok_and(|s| s != saddr) {
                    wrong.push(format!(
                        "{sname} -> {dname}:{port} ({path}): evaluator says {}, got {got:?}",
                        if want { "accept" } else { "drop" }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // The issue's cells, stated outright (not only through the evaluator):
    // alice's TCP 5432 to the VPC (core) and to the LAN (kernel) is stopped,
    // bob and the LAN host still reach the VPC's 5432.
    for (cell, want) in [
        (("alice", "vpc", 5432), false),
        (("alice", "lan", 5432), false),
        (("bob", "vpc", 5432), true),
        (("lan", "vpc", 5432), true),
        (("alice", "vpc", 80), true),
    ] {
        assert_eq!(reached.get(&cell), Some(&want), "{cell:?}");
    }

    // The rule counters rose: in the core for the VPC, in nft for the LAN.
    let after = firewall_status(&lab.cfg, &t.gw);
    for (side, name) in [
        ("core", "rule no-db-for-alice"),
        ("core", "rule no-web-from-vpc-to-laptops"),
        ("kernel", "rule no-lan-db-for-alice"),
        ("kernel", "rule no-web-from-lan-to-bob"),
    ] {
        assert!(
            counter(&after, side, name) > counter(&before, side, name),
            "{side} counter {name:?} did not rise: {after:#}"
        );
    }
    let shown = lab.cfg.wgctl(&t.gw, &["firewall", "show"]);
    assert!(
        shown.ok() && shown.stdout.contains("rule no-db-for-alice"),
        "{shown}"
    );
    let _ = (&lab.charon, lab.daemon());
}

// ---------------------------------------------------------------- refusals --

#[test]
fn refused_reloads_and_a_stopped_or_killed_daemon_keep_the_ruleset() {
    if !need_root("refused_reloads_keep_the_ruleset") {
        return;
    }
    let t = Topology::new(0);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    append(
        &cfg,
        "\n[[firewall.rules]]\nname = \"lan-db\"\nfrom = \"lan\"\nto = \"wg\"\nproto = \"tcp\"\nports = [5432]\naction = \"drop\"\n",
    );
    // nft through a wrapper that, once `refuse` exists, rewrites the port of
    // the rule into one nft refuses: the real nft reports it at its line.
    let wrapper = t.dir.join("nft-wrapper");
    let flag = t.dir.join("refuse");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {} ] && [ \"$1\" = -c ]; then\n  sed 's/tcp dport 5432/tcp dport 99999/' | nft \"$@\"\n  exit $?\nfi\nexec nft \"$@\"\n",
            flag.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let d = start_ipieced_env(&t.gw, &cfg, &[("IPIECE_NFT", wrapper.to_str().unwrap())]);
    serve(&t.lan, &t.dir.path, "lan", "5432", "5432");
    route_probe_inside(&t);
    assert!(probe_gets_in(&t, None).is_empty());
    let table = nft_table(&t.gw).expect_ok().stdout;

    let out = cfg.wgctl(&t.gw, &["firewall", "check"]);
    assert!(
        out.ok() && out.stdout.contains("firewall OK (1 rules"),
        "{out}"
    );

    // A file that fails validation: refused, named in status.
    let good = fs::read_to_string(&cfg.path).unwrap();
    fs::write(&cfg.path, good.replace("to = \"wg\"", "to = \"dmz\"")).unwrap();
    let out = cfg.wgctl(&t.gw, &["firewall", "check"]);
    assert!(
        !out.ok() && out.stderr.contains("firewall.rules[0].to"),
        "{out}"
    );
    let out = cfg.wgctl(&t.gw, &["reload"]);
    assert!(
        !out.ok() && out.stderr.contains("`dmz` is not a zone"),
        "{out}"
    );
    let fw = firewall_status(&cfg, &t.gw);
    assert!(
        fw["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("firewall.rules[0].to")),
        "{fw:#}"
    );
    assert!(
        probe_gets_in(&t, None).is_empty(),
        "probe got in after a refused reload"
    );

    // A ruleset nft refuses: the reload names the rule, nothing changes.
    fs::write(
        &cfg.path,
        good.replace("name = \"lan-db\"", "name = \"lan-db2\""),
    )
    .unwrap();
    fs::write(&flag, "").unwrap();
    let out = cfg.wgctl(&t.gw, &["reload"]);
    assert!(!out.ok() && out.stderr.contains("rule lan-db2"), "{out}");
    let fw = firewall_status(&cfg, &t.gw);
    assert!(
        fw["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("rule lan-db2") && e.contains("nft")),
        "{fw:#}"
    );
    assert_eq!(
        nft_table(&t.gw)
            .expect_ok()
            .stdout
            .replace(char::is_numeric, ""),
        table.replace(char::is_numeric, "")
    );
    assert!(
        probe_gets_in(&t, None).is_empty(),
        "probe got in after a refused ruleset"
    );
    // Repaired, the reload applies and clears the error.
    fs::remove_file(&flag).unwrap();
    let out = cfg.wgctl(&t.gw, &["reload"]);
    assert!(out.ok(), "{out}");
    assert!(nft_table(&t.gw).expect_ok().stdout.contains("rule lan-db2"));
    assert!(firewall_status(&cfg, &t.gw)["last_error"].is_null());

    // SIGTERM: ipieced is gone, the ruleset stays, forwarding stays filtered.
    assert!(signal(d.pid, libc::SIGTERM));
    assert!(
        t.gw.wait_exit(d.pid, Duration::from_secs(5)).is_some(),
        "SIGTERM ignored"
    );
    assert!(nft_table(&t.gw).ok(), "the table left with the daemon");
    let got = probe_gets_in(&t, None);
    assert!(got.is_empty(), "after SIGTERM the probe got in: {got:?}");
    // SIGKILL of a new daemon: the same.
    let d = start_ipieced(&t.gw, &cfg);
    assert!(signal(d.pid, libc::SIGKILL));
    assert!(
        t.gw.wait_exit(d.pid, Duration::from_secs(5)).is_some(),
        "SIGKILL ignored"
    );
    let got = probe_gets_in(&t, None);
    assert!(got.is_empty(), "after SIGKILL the probe got in: {got:?}");
}

// ----------------------------------------------------------------- starting --

#[test]
fn ipieced_refuses_to_start_without_interfaces_or_nft_and_says_what_to_set() {
    if !need_root("ipieced_refuses_to_start") {
        return;
    }
    let dir = TempDir::new("fwstart");
    let ns = Netns::new("gw");
    let cfg = GwConfig::init(&dir.join("etc"), NAT_WAN);
    let run = |envs: &[(&str, &str)]| -> (Option<i32>, String) {
        let log = dir.join("ipieced.log");
        let _ = fs::remove_file(&log);
        let pid = ns.spawn(
            "ipieced",
            IPIECED,
            &["--config", cfg.path.to_str().unwrap()],
            envs,
            &log,
        );
        let st = ns.wait_exit(pid, Duration::from_secs(10));
        (
            st.and_then(|s| s.code()),
            fs::read_to_string(&log).unwrap_or_default(),
        )
    };
    let (code, log) = run(&[("IPIECE_NFT", "/nonexistent/nft")]);
    assert!(
        code.is_some_and(|c| c != 0) && log.contains("nftables"),
        "{code:?}:\n{log}"
    );
    remove_firewall_table(&cfg);
    let (code, log) = run(&[]);
    assert!(
        code.is_some_and(|c| c != 0) && log.contains("firewall.wan_interface"),
        "{code:?}:\n{log}"
    );
    // No forwarding was turned on and no table was left.
    assert_eq!(
        ns.exec("sysctl", &["-n", "net.ipv4.ip_forward"])
            .stdout
            .trim(),
        "0"
    );
    assert!(!nft_table(&ns).ok(), "a refused start left a table");

    // The explicit opt-out needs no interfaces, and says so.
    append(&cfg, "\n[firewall]\nenabled = false\n");
    let out = wgctl_at(&cfg.path, &["check"]);
    assert!(
        out.stdout.contains("warning: firewall.enabled = false"),
        "{out}"
    );
    let _d = start_ipieced(&ns, &cfg);
    let fw = firewall_status(&cfg, &ns);
    assert_eq!(fw["enabled"].as_bool(), Some(false), "{fw:#}");
    assert!(
        fw["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("filters nothing")),
        "{fw:#}"
    );
    let out = cfg.wgctl(&ns, &["status"]);
    assert!(
        out.stdout.contains("firewall: DISABLED")
            && out.stdout.contains("warning: firewall.enabled = false"),
        "{out}"
    );
    assert!(!nft_table(&ns).ok(), "opted out, yet a table");
}

// ------------------------------------------------- renderer vs evaluator --

/// Rules for the full matrix: every kind of `from`/`to` (zone, CIDR, alias,
/// peer), every action, on zone pairs the core and the kernel both see.
const MATRIX_RULES: &str = r#"
[firewall.aliases]
office = ["192.168.1.1"]

[[firewall.rules]]
name = "office-ssh-to-lan"
from = "office"
to = "lan"
proto = "tcp"
ports = [22]
action = "accept"

[[firewall.rules]]
name = "bob-web-out"
from = "peer:bob"
to = "wan"
proto = "tcp"
ports = [80]
action = "accept"

[[firewall.rules]]
name = "no-vpc-ssh-from-lan"
from = "lan"
to = "10.0.1.10/32"
proto = "tcp"
ports = ["20-22"]
action = "drop"

[[firewall.rules]]
name = "no-db-for-alice"
from = "peer:alice"
to = "aws"
proto = "tcp"
ports = [5432]
action = "reject"

[[firewall.rules]]
name = "vpc-to-laptops-only-ssh"
from = "aws"
to = "wg"
proto = "tcp"
ports = [80, 5432]
action = "drop"
"#;

/// One policy, every zone pair through the real kernel nftables and through
/// the core's evaluator: the same verdict in every cell. The kernel side is
/// a router namespace with the rendered ruleset, its WAN, LAN and a veth
/// named like the TUN behind which the laptops' and the VPC's addresses
/// live, so that even laptop <-> VPC (which in ipieced never enters the
/// kernel) crosses the forward chain here.
#[test]
fn every_cell_of_the_matrix_gets_the_same_verdict_from_nftables_and_the_evaluator() {
    if !need_root("every_cell_of_the_matrix") {
        return;
    }
    let dir = TempDir::new("fwmatrix");
    let cfg = GwConfig::init(&dir.join("etc"), NAT_WAN);
    for (name, ip) in [("alice", "172.16.60.2"), ("bob", "172.16.60.3")] {
        let conf = dir.join(&format!("{name}.conf"));
        let out = wgctl_at(
            &cfg.path,
            &[
                "add-peer",
                name,
                "--ip",
                ip,
                "--output",
                conf.to_str().unwrap(),
            ],
        );
        assert!(out.ok(), "add-peer {name}: {out}");
    }
    append(&cfg, MATRIX_RULES);
    let policy = std::sync::Arc::new(Policy::compile(&Config::load(&cfg.path).expect("config")));

    let r = Netns::new("r");
    let wan = Netns::new("wan");
    let lan = Netns::new("lan");
    let side = Netns::new("tside");
    let wg = Netns::new("wg");
    let vpc = Netns::new("vpc");
    r.sysctl("net.ipv4.ip_forward", "1");
    for k in ["all", "default"] {
        r.sysctl(&format!("net.ipv4.conf.{k}.send_redirects"), "0");
        r.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
    }
    r.veth("eth0", &wan, "eth0");
    r.ip("addr add 192.168.1.2/24 dev eth0");
    wan.ip("addr add 192.168.1.1/24 dev eth0");
    wan.ip("route add default via 192.168.1.2");
    r.veth("lan0", &lan, "eth0");
    r.ip("addr add 172.16.4.1/24 dev lan0");
    lan.ip(&format!("addr add {LAN_HOST}/24 dev eth0"));
    lan.ip("route add default via 172.16.4.1");
    side.ip("link add br0 type bridge");
    side.ip("link set br0 up");
    r.veth(&cfg.tun, &side, "r");
    wg.veth("eth0", &side, "w");
    vpc.veth("eth0", &side, "v");
    for p in ["r", "w", "v"] {
        side.ip(&format!("link set {p} master br0"));
    }
    r.ip(&format!("addr add 172.16.60.1/24 dev {}", cfg.tun));
    r.ip(&format!("route add {VPC_CIDR} dev {}", cfg.tun));
    for a in ["172.16.60.2/24", "172.16.60.3/24"] {
        wg.ip(&format!("addr add {a} dev eth0"));
    }
    wg.ip("route add default via 172.16.60.1");
    vpc.ip(&format!("addr add {VPC_HOST}/16 dev eth0"));
    vpc.ip("route add default via 172.16.60.1 dev eth0 onlink");
    for ns in [&wg, &vpc] {
        ns.sysctl("net.ipv4.conf.all.accept_redirects", "0");
        ns.sysctl("net.ipv4.conf.eth0.accept_redirects", "0");
    }
    let text = policy.render(&ipiece::firewall::Interfaces {
        wan: "eth0".into(),
        lan: "lan0".into(),
    });
    r.exec_input("nft", &["-f", "-"], text.as_bytes())
        .expect_ok();
    for (ns, tag) in [(&wan, "wan"), (&lan, "lan"), (&wg, "wg"), (&vpc, "vpc")] {
        serve(ns, &dir.path, tag, "22,80,5432", "");
    }

    let hosts: [(&str, &Netns, &str, Zone); 5] = [
        ("wan", &wan, "192.168.1.1", Zone::Wan),
        ("lan", &lan, LAN_HOST, Zone::Lan),
        ("alice", &wg, "172.16.60.2", Zone::Wg),
        ("bob", &wg, "172.16.60.3", Zone::Wg),
        ("vpc", &vpc, VPC_HOST, Zone::Aws),
    ];
    let mut eval = ipiece::firewall::Evaluator::new();
    eval.set_policy(policy.clone());
    let script = netprobe();
    let (mut cells, mut accepted, mut wrong) = (0, 0, Vec::new());
    for (sname, sns, saddr, szone) in &hosts {
        let dsts: Vec<_> = hosts.iter().filter(|d| d.1.name != sns.name).collect();
        let targets: Vec<String> = dsts
            .iter()
            .flat_map(|d| [22u16, 80, 5432].map(|p| format!("{}:{p}", d.2)))
            .collect();
        let mut args = vec![script.to_str().unwrap(), "connect-many", "--bind", saddr];
        args.extend(targets.iter().map(String::as_str));
        let out = sns.exec_t("python3", &args, Duration::from_secs(20));
        let got: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("connect-many: {e}: {out}"));
        for (dname, _, daddr, dzone) in dsts {
            for port in [22u16, 80, 5432] {
                let mut pkt = vec![0u8; 40];
                pkt[0] = 0x45;
                pkt[9] = 6;
                pkt[12..16].copy_from_slice(&saddr.parse::<std::net::Ipv4Addr>().unwrap().octets());
                pkt[16..20].copy_from_slice(&daddr.parse::<std::net::Ipv4Addr>().unwrap().octets());
                pkt[20..22].copy_from_slice(&40000u16.to_be_bytes());
                pkt[22..24].copy_from_slice(&port.to_be_bytes());
                let want = eval.allow(*szone, *dzone, &pkt);
                let kernel = got[format!("{daddr}:{port}")].as_bool() == Some(true);
                cells += 1;
                accepted += usize::from(kernel);
                if want != kernel {
                    wrong.push(format!(
                        "{sname} ({szone}) -> {dname} ({dzone}):{port}: evaluator {}, nftables {}",
                        if want { "accept" } else { "drop" },
                        if kernel { "accept" } else { "drop" }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ:\n{}\nruleset:\n{text}",
        wrong.len(),
        wrong.join("\n")
    );
    // Both verdicts occur: the matrix is not all-accept or all-drop.
    assert!(
        accepted > 10 && accepted < cells - 10,
        "{accepted} of {cells} accepted"
    );
    let counters = eval.counters();
    assert!(
        counters
            .iter()
            .all(|c| !c.name.starts_with("rule ") || c.packets > 0),
        "a rule never matched: {counters:?}"
    );
}
