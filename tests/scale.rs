//! 10,000 laptops in one file (issue 13, item 6): the file validates and
//! loads; `wgctl check`, `add-peer`, `status` (text and JSON) and `reload`
//! work on it against a running ipieced; a reload that changes one peer
//! leaves a connected wireguard-go laptop's session alone (same handshake,
//! endpoint, counters still growing, no new handshake). No timings are
//! asserted: `scripts/scale.sh` measures them.
//!
//! The daemon test needs root (network namespaces, TUN, nftables); with
//! `IPIECE_SKIP_NETNS=1` it prints a skip line instead when not root.

mod common;

use base64::Engine;
use common::*;
use ipiece::config::Config;
use ipiece::gateway::{Gateway, Settings};
use ipiece::output::{Io, UdpPort};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const N: u32 = 10_000;
/// The WireGuard subnet of these tests: room for 16,000 laptops.
const WG_ADDRESS: &str = "172.16.64.1/18";

/// Laptop `i`'s name, a distinct public key (any 32 bytes are a valid
/// X25519 public key; no key pair is needed for a peer that never
/// connects) and address 172.16.64.1 + i.
fn laptop(i: u32) -> (String, String, Ipv4Addr) {
    let mut key = [0x5au8; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 64, 1)) + i);
    (format!("laptop-{i:05}"), key, addr)
}

/// `[[peers]]` tables for laptops 1..=n.
fn peer_tables(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 120);
    for i in 1..=n {
        let (name, key, addr) = laptop(i);
        s.push_str(&format!(
            "\n[[peers]]\nname = \"{name}\"\npublic_key = \"{key}\"\naddress = \"{addr}\"\n"
        ));
    }
    s
}

fn gateway_config(dir: &Path) -> String {
    let key = ipiece::config::generate_private_key();
    let keyfile = dir.join("wg.key");
    fs::write(&keyfile, format!("{key}\n")).unwrap();
    fs::set_permissions(&keyfile, fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[gateway]\nname = \"scale\"\npublic_endpoint = \"203.0.113.2\"\n\
         lan_prefixes = [\"172.16.4.0/24\"]\ncontrol_socket = \"control.sock\"\n\
         tun_name = \"iptscale0\"\n\n[wireguard]\naddress = \"{WG_ADDRESS}\"\n\
         private_key_file = \"wg.key\"\nremote_prefixes = [\"10.0.0.0/16\"]\n{}",
        peer_tables(N)
    )
}

struct NoIo;
impl Io for NoIo {
    fn send_udp(&mut self, _: UdpPort, _: SocketAddr, _: &[u8]) {}
    fn write_tun(&mut self, _: &[u8]) {}
}

/// The file validates (duplicates and overlaps found among 10,000 peers),
/// loads into the core, and a reload that changes one peer reports exactly
/// that one.
#[test]
fn ten_thousand_peers_validate_and_load() {
    let dir = TempDir::new("scale-load");
    let path = dir.join("gateway.toml");
    let text = gateway_config(&dir.path);
    let cfg = Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.peers.len(), N as usize);
    let settings = Settings::load(&cfg).unwrap();
    let mut gw = Gateway::new(settings, Instant::now());
    let st = gw.status(Instant::now(), SystemTime::now());
    assert_eq!(st.peers.len(), N as usize);
    assert!(st.peers.iter().all(|p| !p.session && p.endpoint.is_none()));

    // One peer's address changes: one peer updated, the rest unchanged.
    let (name, _, old) = laptop(7_000);
    let edited = text.replacen(
        &format!("address = \"{old}\"\n"),
        "address = \"172.16.127.200\"\n",
        1,
    );
    let cfg = Config::parse(&path, &edited).unwrap_or_else(|e| panic!("{e}"));
    let out = gw.apply(Settings::load(&cfg).unwrap(), Instant::now(), &mut NoIo);
    assert_eq!(out.peers.updated, vec![name]);
    assert_eq!(out.peers.unchanged, N as usize - 1);
    assert!(out.peers.added.is_empty() && out.peers.removed.is_empty());

    // Duplicates at both ends of the file are found and named.
    let (_, key17, _) = laptop(17);
    let (_, _, addr9000) = laptop(9_000);
    let dup = format!(
        "{text}\n[[peers]]\nname = \"laptop-00017\"\npublic_key = \"{key17}\"\naddress = \"{addr9000}\"\n"
    );
    let errs = Config::parse(&path, &dup).unwrap_err().to_string();
    let last = format!("peers[{N}]");
    for want in [
        format!("{last}.name: duplicate peer name `laptop-00017` (also peers[16])"),
        format!(
            "{last}.public_key: duplicate public key (also used by peers[16] (`laptop-00017`))"
        ),
        format!("{last}.address: address {addr9000} is also used by peers[8999] (`laptop-09000`)"),
    ] {
        assert!(errs.contains(&want), "missing {want:?} in:\n{errs}");
    }
}

/// ipieced with 10,000 peers: `wgctl check`, `add-peer`, `status` and
/// `status --json` (about 6 MB, more than a request line may hold) work; a
/// wireguard-go laptop added to it connects; a reload changing another peer
/// touches only that peer, and the laptop's session goes on.
#[test]
fn ten_thousand_peers_daemon() {
    if !need_root("ten_thousand_peers_daemon") {
        return;
    }
    let t = Topology::new(1);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    toml_set_str(&cfg.path, "wireguard", "address", WG_ADDRESS);
    let mut text = fs::read_to_string(&cfg.path).unwrap();
    text.push_str(&peer_tables(N));
    fs::write(&cfg.path, &text).unwrap();
    let slow = Duration::from_secs(120);
    let wgctl = |args: &[&str]| {
        let mut v = vec!["--config", cfg.path.to_str().unwrap()];
        v.extend_from_slice(args);
        t.gw.exec_t(WGCTL, &v, slow)
    };
    wgctl(&["check"]).expect_ok();

    ipieced_with_many_peers(&t.gw, &cfg);
    let conf = cfg.dir.join("extra.conf");
    let out = wgctl(&["add-peer", "extra", "--output", conf.to_str().unwrap()]);
    assert!(out.ok() && out.stderr.contains("1 added"), "{out}");
    let c = start_wg_client(&t.laptops[0], &conf, &t.dir.path);
    assert!(
        t.laptops[0].ping_until(LAN_HOST, Duration::from_secs(20)),
        "the added laptop never reached {LAN_HOST}"
    );
    let extra = |st: &serde_json::Value| status_peer(st, "extra").cloned().expect("peer extra");
    let status = || {
        let out = wgctl(&["status", "--json"]);
        assert!(out.ok(), "wgctl status --json: {out}");
        serde_json::from_str::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    // the handshake time is pinned at the tick after the handshake
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(100),
        || json_u64(&extra(&status())["counters"], "handshakes") == 1
    ));
    let before = status();
    assert_eq!(before["peers"].as_array().unwrap().len(), N as usize + 1);
    let b = extra(&before);
    assert!(b["session"].as_bool().unwrap());

    // Another laptop's address changes in the file; reload.
    let (_, _, old) = laptop(5_000);
    let text = fs::read_to_string(&cfg.path).unwrap();
    let edited = text.replacen(
        &format!("address = \"{old}\"\n"),
        "address = \"172.16.127.200\"\n",
        1,
    );
    assert_ne!(edited, text);
    fs::write(&cfg.path, edited).unwrap();
    let out = wgctl(&["reload"]);
    assert!(out.ok(), "wgctl reload: {out}");
    assert!(
        out.stdout.contains(&format!(
            "0 added, 0 removed, 0 restarted, 1 updated, {N} unchanged"
        )),
        "{out}"
    );

    assert!(
        t.laptops[0].ping_until(LAN_HOST, Duration::from_secs(5)),
        "the laptop lost {LAN_HOST} after the reload"
    );
    let after = status();
    let a = extra(&after);
    for k in [
        "endpoint",
        "last_handshake_unix",
        "public_key",
        "allowed_ips",
    ] {
        assert_eq!(
            a[k], b[k],
            "{k} changed by a reload that did not touch the peer"
        );
    }
    assert_eq!(
        json_u64(&a["counters"], "handshakes"),
        1,
        "a new handshake: {a}"
    );
    assert!(json_u64(&a, "rx_bytes") > json_u64(&b, "rx_bytes"));
    let moved = status_peer(&after, "laptop-05000").expect("laptop-05000");
    assert_eq!(
        moved["allowed_ips"],
        serde_json::json!(["172.16.127.200/32"])
    );

    // The text status lists every peer.
    let out = wgctl(&["status"]);
    assert!(out.ok(), "wgctl status: {out}");
    assert_eq!(out.stdout.matches("laptop-").count(), N as usize);
    assert!(out.stdout.contains("  extra "), "{}", &out.stdout[..500]);
    drop(c);
}

/// Starts ipieced in `ns` and waits (bounded, generously: a debug build on
/// a loaded machine) until it logs that it runs and its socket exists.
fn ipieced_with_many_peers(ns: &Netns, cfg: &GwConfig) -> u32 {
    ns.remove_at_teardown(&cfg.uapi_socket());
    ns.remove_at_teardown(&cfg.control_socket);
    let log = cfg.dir.join("ipieced.log");
    let pid = ns.spawn(
        "ipieced",
        IPIECED,
        &["--config", cfg.path.to_str().unwrap()],
        &[("IPIECE_LOG", "info"), ("NO_COLOR", "1")],
        &log,
    );
    let up = wait_until(Duration::from_secs(120), Duration::from_millis(100), || {
        ns.running(pid)
            && cfg.control_socket.exists()
            && fs::read_to_string(&log).is_ok_and(|l| l.contains("ipieced running"))
    });
    assert!(up, "ipieced did not come up:\n{}", tail(&log, 50));
    pid
}
