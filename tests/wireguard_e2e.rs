//! End-to-end WireGuard tests: `ipieced` in a gateway namespace behind a home
//! router that NATs and forwards UDP 51821, wireguard-go laptops on the
//! "internet", each configured from the exact client file `wgctl add-peer`
//! wrote. The gateway side is observed through `wg show <tun> dump` (the
//! daemon's UAPI socket) and `wgctl status --json`.
//!
//! These tests need root (network namespaces, TUN, nftables); with
//! `IPIECE_SKIP_NETNS=1` they print a skip line instead when not root.

mod common;

use common::*;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A topology with `ipieced` running in its gateway namespace.
struct Lab {
    t: Topology,
    cfg: GwConfig,
    daemon: Daemon,
}

impl Lab {
    fn new(hosts: usize) -> Lab {
        let t = Topology::new(hosts);
        let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
        let daemon = start_ipieced(&t.gw, &cfg);
        Lab { t, cfg, daemon }
    }

    fn lap(&self, k: usize) -> &Netns {
        &self.t.laptops[k]
    }

    /// `wgctl add-peer <name>`, then wireguard-go on host `k` from the file
    /// it wrote; waits until the gateway's tunnel address answers.
    fn connect(&self, k: usize, name: &str) -> WgClient {
        let conf = self.cfg.add_peer(&self.t.gw, name, &[]);
        let c = start_wg_client(self.lap(k), &conf, &self.t.dir.path);
        assert!(
            self.lap(k).ping_until(GW_WG_ADDR, Duration::from_secs(10)),
            "laptop {k} ({name}) configured from {} never reached {GW_WG_ADDR} through the tunnel",
            conf.display()
        );
        // The gateway may publish the handshake time a tick after the first
        // packets flow; tests that compare it later need the settled value.
        assert!(
            wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                self.gw_peer(&c).latest_handshake != 0
            }),
            "data flows for {name} but wg show reports no handshake"
        );
        c
    }

    fn dump(&self) -> WgDump {
        self.t.gw.wg_dump(&self.cfg.tun)
    }

    /// The gateway's view of a laptop, from `wg show <tun> dump`.
    fn gw_peer(&self, c: &WgClient) -> WgPeer {
        let d = self.dump();
        d.peer(&c.public_key).cloned().unwrap_or_else(|| {
            panic!(
                "wg show {} dump lists no peer {}: {d:#?}",
                self.cfg.tun, c.public_key
            )
        })
    }

    fn status(&self) -> serde_json::Value {
        self.cfg.status_json(&self.t.gw)
    }

    fn wgctl(&self, args: &[&str]) -> Out {
        self.cfg.wgctl(&self.t.gw, args)
    }
}

/// Parses the summary of a finished background `ping` from its log.
fn ping_log(log: &Path) -> Ping {
    let text = fs::read_to_string(log).unwrap();
    Ping::parse(&text, &text)
}

/// Waits (bounded) until a background ping has received `n` replies.
fn wait_replies(log: &Path, n: usize) -> bool {
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        fs::read_to_string(log)
            .map(|s| s.matches("bytes from").count() >= n)
            .unwrap_or(false)
    })
}

fn endpoint_of(status_peer: &serde_json::Value) -> Option<String> {
    status_peer["endpoint"].as_str().map(str::to_string)
}

// ------------------------------------------------------------------------ a --

#[test]
fn laptop_behind_nat_reaches_gateway_and_lan_from_exact_add_peer_file_and_both_views_agree() {
    if !need_root("laptop_behind_nat_reaches_gateway_and_lan") {
        return;
    }
    let lab = Lab::new(1);
    let conf_path = lab.cfg.add_peer(&lab.t.gw, "alice", &[]);
    let mode = fs::metadata(&conf_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode,
        0o600,
        "client file {} has mode {mode:o}",
        conf_path.display()
    );
    let conf = ClientConf::load(&conf_path);
    assert_eq!(
        conf.peer("Endpoint"),
        vec![format!("{NAT_WAN}:{WG_PORT}")],
        "client file:\n{}",
        conf.text
    );
    let allowed = conf.peer("AllowedIPs");
    for p in ["172.16.60.0/24", "172.16.4.0/24", "10.0.0.0/16"] {
        assert!(allowed.contains(&p), "AllowedIPs lacks {p}:\n{}", conf.text);
    }

    let lap = lab.lap(0);
    let c = start_wg_client(lap, &conf_path, &lab.t.dir.path);
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(10)),
        "no answer from {GW_WG_ADDR} through the tunnel"
    );
    let p = lap.ping(GW_WG_ADDR, 5, 200, 2);
    assert_eq!(p.received, 5, "laptop -> gateway tunnel address: {p:?}");
    let p = lap.ping(LAN_HOST, 5, 200, 2);
    assert_eq!(
        p.received, 5,
        "laptop -> LAN host through the gateway: {p:?}"
    );
    let p = lab.t.lan.ping(&c.address(), 3, 200, 2);
    assert_eq!(
        p.received, 3,
        "LAN host -> laptop through the gateway: {p:?}"
    );

    let now = unix_now();
    let peer = lab.gw_peer(&c);
    assert!(
        peer.latest_handshake > 0
            && peer.latest_handshake <= now + 1
            && now - peer.latest_handshake <= 30,
        "latest handshake {} is not within the last 30 s (now {now}): {peer:?}",
        peer.latest_handshake
    );
    assert!(peer.rx > 0 && peer.tx > 0, "counters not moving: {peer:?}");
    let ep = peer
        .endpoint
        .expect("gateway knows no endpoint for the laptop");
    assert_eq!(
        ep.ip().to_string(),
        Topology::laptop_addr(0),
        "the gateway should see the laptop's public address: {peer:?}"
    );
    assert_eq!(peer.allowed_ips, vec![format!("{}/32", c.address())]);

    let st = lab.status();
    let sp = status_peer(&st, "alice").unwrap_or_else(|| panic!("status lists no alice: {st:#}"));
    assert_eq!(
        sp["public_key"].as_str(),
        Some(c.public_key.as_str()),
        "{sp:#}"
    );
    assert_eq!(
        endpoint_of(sp),
        Some(ep.to_string()),
        "status and wg show disagree: {sp:#}"
    );
    assert_eq!(sp["session"].as_bool(), Some(true), "{sp:#}");
    assert!(
        json_u64(sp, "rx_bytes") > 0 && json_u64(sp, "tx_bytes") > 0,
        "{sp:#}"
    );
    assert_eq!(
        sp["last_handshake_unix"][0].as_u64(),
        Some(peer.latest_handshake),
        "status and wg show disagree on the handshake time: {sp:#}"
    );
}

// ------------------------------------------------------------------------ b --

#[test]
fn roaming_laptop_changes_source_port_then_address_and_traffic_follows_without_config_change() {
    if !need_root("roaming_laptop") {
        return;
    }
    let lab = Lab::new(1);
    let c = lab.connect(0, "alice");
    let lap = lab.lap(0);
    let file_before = fs::read(&lab.cfg.path).unwrap();
    let e0 = lab.gw_peer(&c).endpoint.expect("no endpoint");
    let h0 = lab.gw_peer(&c).latest_handshake;

    let plog = lab.t.dir.join("roam-ping.log");
    let ppid = lap.spawn(
        "ping",
        "ping",
        &["-n", "-i", "0.2", "-c", "40", "-W", "1", GW_WG_ADDR],
        &[],
        &plog,
    );
    assert!(
        wait_replies(&plog, 3),
        "background ping got no replies:\n{}",
        tail(&plog, 20)
    );

    // 1. New source port (what a NAT rebinding looks like).
    let port1: u16 = if e0.port() == 40001 { 40002 } else { 40001 };
    lap.exec("wg", &["set", &c.ifname, "listen-port", &port1.to_string()])
        .expect_ok();
    let want1 = SocketAddr::new(e0.ip(), port1);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            last = lab.gw_peer(&c).endpoint;
            last == Some(want1)
        }),
        "after the laptop moved to port {port1} the gateway still sends to {last:?} (want {want1})"
    );
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(3)),
        "no traffic after the port change"
    );

    // 2. New source address. wireguard-go sends from the address it last
    // received on ("sticky sockets") until it rebinds, so the move is made
    // with the new default-route source plus another port change.
    let new_ip = "198.51.100.110";
    lap.ip(&format!("addr add {new_ip}/24 dev eth0"));
    lap.ip(&format!(
        "route replace default via 198.51.100.1 src {new_ip}"
    ));
    let port2: u16 = port1 + 10;
    lap.exec("wg", &["set", &c.ifname, "listen-port", &port2.to_string()])
        .expect_ok();
    let want2 = SocketAddr::new(new_ip.parse::<IpAddr>().unwrap(), port2);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            last = lab.gw_peer(&c).endpoint;
            last == Some(want2)
        }),
        "after the laptop moved to {want2} the gateway still sends to {last:?}"
    );
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(3)),
        "no traffic after the address change"
    );
    assert!(
        lap.running(ppid),
        "the background ping ended before the roaming steps finished: nothing was tested"
    );

    let st = lap.wait_exit(ppid, Duration::from_secs(20));
    assert!(st.is_some(), "background ping did not finish");
    let p = ping_log(&plog);
    assert_eq!(p.transmitted, 40, "{p:?}");
    assert!(
        p.received >= 36,
        "traffic did not continue across the roaming steps: {p:?}\n{}",
        tail(&plog, 50)
    );
    let sp = lab.status();
    let sp = status_peer(&sp, "alice").expect("status lists no alice");
    assert_eq!(
        endpoint_of(sp),
        Some(want2.to_string()),
        "status endpoint: {sp:#}"
    );
    assert_eq!(
        lab.gw_peer(&c).latest_handshake,
        h0,
        "roaming should not need a new handshake"
    );
    assert_eq!(
        fs::read(&lab.cfg.path).unwrap(),
        file_before,
        "roaming changed the config file"
    );
}

// ------------------------------------------------------------------------ c --

#[test]
fn adding_peer_b_live_loses_no_ping_of_peer_a_nor_its_session_then_b_connects() {
    if !need_root("adding_peer_b_live") {
        return;
    }
    let lab = Lab::new(2);
    let a = lab.connect(0, "alice");
    let h0 = lab.gw_peer(&a).latest_handshake;

    let plog = lab.t.dir.join("a-ping.log");
    let ppid = lab.lap(0).spawn(
        "ping A",
        "ping",
        &["-n", "-i", "0.2", "-c", "40", "-W", "2", GW_WG_ADDR],
        &[],
        &plog,
    );
    assert!(
        wait_replies(&plog, 5),
        "A's ping got no replies:\n{}",
        tail(&plog, 20)
    );
    let b_conf = lab.cfg.add_peer(&lab.t.gw, "bob", &[]);
    let st = lab.status();
    assert!(
        status_peer(&st, "bob").is_some(),
        "add-peer did not reload the running daemon (no bob in status): {st:#}"
    );
    assert!(
        lab.lap(0).running(ppid),
        "A's ping ended before add-peer finished: nothing was tested"
    );
    assert!(
        lab.lap(0)
            .wait_exit(ppid, Duration::from_secs(20))
            .is_some(),
        "A's ping hangs"
    );
    let p = ping_log(&plog);
    assert_eq!(
        (p.transmitted, p.received),
        (40, 40),
        "A lost pings while bob was added:\n{}",
        tail(&plog, 50)
    );
    assert_eq!(
        lab.gw_peer(&a).latest_handshake,
        h0,
        "A's session was rebuilt by the live add (new handshake)"
    );

    let b = start_wg_client(lab.lap(1), &b_conf, &lab.t.dir.path);
    assert!(
        lab.lap(1).ping_until(GW_WG_ADDR, Duration::from_secs(10)),
        "B never reached the gateway from its file"
    );
    let p = lab.lap(1).ping(LAN_HOST, 3, 200, 2);
    assert_eq!(p.received, 3, "B -> LAN: {p:?}");
    let d = lab.dump();
    assert!(
        d.peer(&a.public_key).is_some() && d.peer(&b.public_key).is_some(),
        "{d:#?}"
    );
    let p = lab.lap(0).ping(GW_WG_ADDR, 3, 200, 2);
    assert_eq!(p.received, 3, "A after B joined: {p:?}");
}

// ------------------------------------------------------------------------ d --

#[test]
fn reload_of_invalid_file_is_refused_with_file_line_and_daemon_keeps_serving() {
    if !need_root("reload_of_invalid_file") {
        return;
    }
    let lab = Lab::new(1);
    let a = lab.connect(0, "alice");
    let h0 = lab.gw_peer(&a).latest_handshake;
    let path = lab.cfg.path.clone();
    let good = fs::read_to_string(&path).unwrap();
    let bad = format!(
        "{good}\n[[peers]]\nname = \"mallory\"\npublic_key = \"not-a-valid-key\"\naddress = \"172.16.60.200\"\n"
    );
    fs::write(&path, &bad).unwrap();
    let loc = format!("{}:{}:", path.display(), line_of(&bad, "not-a-valid-key"));

    let out = lab.wgctl(&["reload"]);
    assert_eq!(out.code(), Some(1), "wgctl reload of a bad file: {out}");
    assert!(
        out.stderr.contains(&loc) && out.stderr.contains("public_key"),
        "wgctl reload should print {loc}... public_key: {out}"
    );

    // The daemon itself refuses the file on a reload request...
    let r = control_request(&lab.cfg.control_socket, r#"{"cmd":"reload"}"#);
    assert_eq!(
        r["result"].as_str(),
        Some("error"),
        "daemon accepted a bad file: {r}"
    );
    assert!(
        r.to_string().contains(&loc),
        "daemon's refusal does not name {loc}: {r}"
    );

    // ...and on SIGHUP, logging where the error is.
    let seen = lab.daemon.log_text().len();
    assert!(signal(lab.daemon.pid, libc::SIGHUP));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            lab.daemon
                .log_text()
                .get(seen..)
                .unwrap_or("")
                .contains(&loc)
        }),
        "no log line naming {loc} after SIGHUP:\n{}",
        tail(&lab.daemon.log, 30)
    );
    assert!(
        lab.t.gw.running(lab.daemon.pid),
        "ipieced died on SIGHUP with a bad file"
    );

    // Still serving the old config.
    let p = lab.lap(0).ping(GW_WG_ADDR, 5, 200, 2);
    assert_eq!(p.received, 5, "A after the refused reloads: {p:?}");
    let p = lab.lap(0).ping(LAN_HOST, 3, 200, 2);
    assert_eq!(p.received, 3, "A -> LAN after the refused reloads: {p:?}");
    let r = control_request(&lab.cfg.control_socket, r#"{"cmd":"status"}"#);
    let peers = r["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("raw status: {r}"));
    assert!(
        peers
            .iter()
            .any(|p| p["name"] == "alice" && p["session"] == true),
        "status no longer shows alice's session: {r:#}"
    );
    assert!(
        !peers.iter().any(|p| p["name"] == "mallory"),
        "bad peer applied: {r:#}"
    );
    assert_eq!(
        lab.gw_peer(&a).latest_handshake,
        h0,
        "refused reloads touched A's session"
    );

    // Fixing the file and reloading works again.
    fs::write(&path, &good).unwrap();
    let out = lab.wgctl(&["reload"]);
    assert!(out.ok(), "reload of the repaired file: {out}");
    assert_eq!(lab.lap(0).ping(GW_WG_ADDR, 3, 200, 2).received, 3);
}

#[test]
fn wgctl_status_still_answers_while_config_file_is_invalid() {
    if !need_root("wgctl_status_still_answers_while_config_file_is_invalid") {
        return;
    }
    let dir = TempDir::new("badstatus");
    let ns = Netns::new("gw");
    let cfg = GwConfig::init(&dir.join("etc"), NAT_WAN);
    let _d = start_ipieced(&ns, &cfg);
    let good = fs::read_to_string(&cfg.path).unwrap();
    fs::write(
        &cfg.path,
        good.replace("mtu = 1420", "mtu = 1420\ncolour = \"blue\""),
    )
    .unwrap();
    // The operator broke the file; the daemon still runs the old config and
    // `wgctl status` is how they look at it.
    let out = cfg.wgctl(&ns, &["status", "--json"]);
    assert!(
        out.ok(),
        "wgctl status needs a valid file to talk to the running daemon: {out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    assert_eq!(v["tun_name"].as_str(), Some(cfg.tun.as_str()), "{v:#}");
}

#[test]
fn disable_cuts_peer_at_once_and_enable_brings_it_back() {
    if !need_root("disable_cuts_peer_at_once") {
        return;
    }
    let lab = Lab::new(1);
    let _a = lab.connect(0, "alice");
    let lap = lab.lap(0);

    let out = lab.wgctl(&["disable", "alice"]);
    assert!(out.ok(), "wgctl disable: {out}");
    let p = lap.ping(GW_WG_ADDR, 3, 200, 1);
    assert_eq!(
        p.received, 0,
        "pings still answered right after disable: {p:?}"
    );
    let p = lap.ping(LAN_HOST, 2, 200, 1);
    assert_eq!(
        p.received, 0,
        "LAN still reachable right after disable: {p:?}"
    );
    let st = lab.status();
    if let Some(sp) = status_peer(&st, "alice") {
        assert_ne!(
            sp["session"].as_bool(),
            Some(true),
            "disabled peer still has a session: {sp:#}"
        );
    }
    let text = fs::read_to_string(&lab.cfg.path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        doc["peers"][0]["enabled"].as_bool(),
        Some(false),
        "the file should keep alice, disabled:\n{text}"
    );

    let out = lab.wgctl(&["enable", "alice"]);
    assert!(out.ok(), "wgctl enable: {out}");
    // wireguard-go retries its handshake every 5 s (after 15 s without
    // answers), so allow for a full retry cycle.
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(30)),
        "alice never came back after enable"
    );
    assert_eq!(
        lap.ping(LAN_HOST, 3, 200, 2).received,
        3,
        "LAN after enable"
    );
    let st = lab.status();
    let sp = status_peer(&st, "alice").unwrap_or_else(|| panic!("no alice after enable: {st:#}"));
    assert_eq!(sp["session"].as_bool(), Some(true), "{sp:#}");
}

#[test]
fn remove_peer_cuts_only_that_peer_and_forgets_it() {
    if !need_root("remove_peer_cuts_only_that_peer") {
        return;
    }
    let lab = Lab::new(2);
    let a = lab.connect(0, "alice");
    let _b = lab.connect(1, "bob");

    let out = lab.wgctl(&["remove-peer", "alice"]);
    assert!(out.ok(), "wgctl remove-peer: {out}");
    let p = lab.lap(0).ping(GW_WG_ADDR, 3, 200, 1);
    assert_eq!(p.received, 0, "removed peer still answered: {p:?}");
    let p = lab.lap(1).ping(GW_WG_ADDR, 3, 200, 2);
    assert_eq!(
        p.received, 3,
        "bob lost connectivity when alice was removed: {p:?}"
    );
    let st = lab.status();
    assert!(
        status_peer(&st, "alice").is_none(),
        "status still lists alice: {st:#}"
    );
    assert!(
        lab.dump().peer(&a.public_key).is_none(),
        "wg show still lists alice"
    );
    let text = fs::read_to_string(&lab.cfg.path).unwrap();
    assert!(
        !text.contains("\"alice\""),
        "alice still in the file:\n{text}"
    );
    assert!(
        !lab.cfg.dir.join("peers/alice.key").exists(),
        "alice's key file left behind"
    );
    lab.wgctl(&["check"]).expect_ok();
}

// ------------------------------------------------------------------------ e --

/// 5000 hostile datagrams: random ones, truncated messages of every type and
/// length 1..=148, and well-sized messages of each type with random bodies.
fn hostile_datagrams(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let random = |rng: &mut Rng, len: usize| {
        let mut b = vec![0u8; len];
        rng.fill(&mut b);
        b
    };
    // Random bytes, random lengths.
    for _ in 0..1000 {
        let len = 1 + rng.below(1500) as usize;
        v.push(random(rng, len));
    }
    // Truncated messages: valid type and reserved zeros, every length 1..=148.
    for ty in 1u8..=4 {
        for len in 1..=148usize {
            let mut b = random(rng, len);
            b[0] = ty;
            for x in b.iter_mut().take(4).skip(1) {
                *x = 0;
            }
            v.push(b);
        }
    }
    // Exact sizes: initiation 148, response 92, cookie reply 64, data 32+.
    while v.len() < 5000 {
        let ty = 1 + (v.len() % 4) as u8;
        let len = match ty {
            1 => 148,
            2 => 92,
            3 => 64,
            _ => 32 + rng.below(1400) as usize,
        };
        let mut b = random(rng, len);
        b[0] = ty;
        if rng.below(8) != 0 {
            b[1..4].fill(0);
        }
        v.push(b);
    }
    v
}

#[test]
fn hostile_datagrams_leave_daemon_alive_and_existing_session_untouched() {
    if !need_root("hostile_datagrams") {
        return;
    }
    let lab = Lab::new(2);
    let a = lab.connect(0, "alice");
    let before = lab.gw_peer(&a);
    let udp0 = json_u64(&lab.status()["counters"], "udp_rx");

    let mut rng = Rng::new("hostile datagrams");
    let datagrams = hostile_datagrams(&mut rng);
    assert_eq!(datagrams.len(), 5000);
    let sock = lab.lap(1).udp_socket("0.0.0.0:0");
    let target: SocketAddr = format!("{NAT_WAN}:{WG_PORT}").parse().unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        sock.send_to(d, target).unwrap();
        if i % 50 == 49 {
            // pace a little so that the kernel does not drop most of them
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut got = 0;
    let arrived = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        got = json_u64(&lab.status()["counters"], "udp_rx") - udp0;
        got >= 4000
    });
    assert!(
        arrived,
        "only {got} of 5000 datagrams reached the daemon: the test proved little"
    );
    eprintln!("{got} of 5000 hostile datagrams reached ipieced");
    assert!(
        lab.t.gw.running(lab.daemon.pid),
        "ipieced died:\n{}",
        tail(&lab.daemon.log, 40)
    );

    let p = lab.lap(0).ping(GW_WG_ADDR, 5, 200, 2);
    assert_eq!(p.received, 5, "A after the hostile datagrams: {p:?}");
    let after = lab.gw_peer(&a);
    assert_eq!(
        after.latest_handshake, before.latest_handshake,
        "A's session was replaced"
    );
    assert_eq!(
        after.endpoint, before.endpoint,
        "a forged datagram moved A's endpoint"
    );
    let st = lab.status();
    let sp = status_peer(&st, "alice").expect("no alice");
    assert_eq!(sp["session"].as_bool(), Some(true), "{sp:#}");
    assert_eq!(st["peers"].as_array().unwrap().len(), 1, "{st:#}");
}

// ------------------------------------------------------------------------ f --

#[test]
fn sigterm_exits_zero_and_removes_tun_routes_and_sockets() {
    if !need_root("sigterm_exits_zero") {
        return;
    }
    let dir = TempDir::new("term");
    let ns = Netns::new("gw");
    let cfg = GwConfig::init(&dir.join("etc"), NAT_WAN);
    let d = start_ipieced(&ns, &cfg);
    let routes = routes_via(&ns, &cfg.tun);
    for p in ["172.16.60.0/24", "10.0.0.0/16"] {
        assert!(
            routes.iter().any(|r| r.starts_with(p)),
            "no route {p} via {} while running: {routes:?}",
            cfg.tun
        );
    }
    assert_eq!(
        ns.exec("sysctl", &["-n", "net.ipv4.ip_forward"])
            .stdout
            .trim(),
        "1",
        "ipieced did not enable forwarding"
    );
    assert!(cfg.control_socket.exists() && cfg.uapi_socket().exists());

    assert!(signal(d.pid, libc::SIGTERM));
    let st = ns.wait_exit(d.pid, Duration::from_secs(5));
    let st = st.unwrap_or_else(|| {
        panic!(
            "ipieced still runs 5 s after SIGTERM:\n{}",
            tail(&d.log, 30)
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "exit status {st}:\n{}",
        tail(&d.log, 30)
    );
    assert!(
        !ns.try_ip(&format!("link show {}", cfg.tun)).ok(),
        "TUN {} still exists after exit",
        cfg.tun
    );
    assert_eq!(
        routes_via(&ns, &cfg.tun),
        Vec::<String>::new(),
        "routes left behind"
    );
    let addrs = ns.ip("-4 addr show").stdout;
    assert!(
        !addrs.contains("172.16.60.1"),
        "gateway address left behind:\n{addrs}"
    );
    assert!(!cfg.control_socket.exists(), "control socket left behind");
    assert!(!cfg.uapi_socket().exists(), "UAPI socket left behind");
}

// ------------------------------------------------------------------------ g --

#[test]
fn two_daemons_with_different_configs_run_side_by_side_in_two_namespaces() {
    if !need_root("two_daemons") {
        return;
    }
    let dir = TempDir::new("two");
    let ns1 = Netns::new("gw1");
    let ns2 = Netns::new("gw2");
    let c1 = GwConfig::init(&dir.join("one"), NAT_WAN);
    let c2 = GwConfig::init(&dir.join("two"), "203.0.113.3");
    toml_set_str(&c1.path, "gateway", "name", "gw-one");
    toml_set_str(&c2.path, "gateway", "name", "gw-two");
    toml_set_str(&c2.path, "wireguard", "address", "172.16.61.1/24");
    let _d1 = start_ipieced(&ns1, &c1);
    let d2 = start_ipieced(&ns2, &c2);

    let s1 = c1.status_json(&ns1);
    let s2 = c2.status_json(&ns2);
    assert_eq!(s1["name"].as_str(), Some("gw-one"), "{s1:#}");
    assert_eq!(s2["name"].as_str(), Some("gw-two"), "{s2:#}");
    assert_eq!(s1["tun_name"].as_str(), Some(c1.tun.as_str()));
    assert_eq!(s2["tun_name"].as_str(), Some(c2.tun.as_str()));
    assert_eq!(s2["address"].as_str(), Some("172.16.61.1/24"));
    assert_ne!(s1["public_key"], s2["public_key"]);
    assert_eq!(
        ns1.wg_dump(&c1.tun).public_key,
        s1["public_key"].as_str().unwrap()
    );
    assert_eq!(
        ns2.wg_dump(&c2.tun).public_key,
        s2["public_key"].as_str().unwrap()
    );

    c1.add_peer(&ns1, "alice", &[]);
    assert!(
        status_peer(&c1.status_json(&ns1), "alice").is_some(),
        "gw-one did not apply alice"
    );
    assert!(
        status_peer(&c2.status_json(&ns2), "alice").is_none(),
        "gw-two got gw-one's peer"
    );

    // SIGINT stops one cleanly; the other keeps answering.
    assert!(signal(d2.pid, libc::SIGINT));
    let st = ns2
        .wait_exit(d2.pid, Duration::from_secs(5))
        .expect("gw-two ignores SIGINT");
    assert_eq!(st.code(), Some(0), "gw-two exit status {st}");
    assert!(
        !ns2.try_ip(&format!("link show {}", c2.tun)).ok(),
        "gw-two left its TUN"
    );
    assert_eq!(c1.status_json(&ns1)["name"].as_str(), Some("gw-one"));
}
