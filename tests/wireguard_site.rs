//! WireGuard site peers against wireguard-go: the remote office is a
//! wireguard-go + `wg` interface on the internet that has the gateway as its
//! peer but no `Endpoint` for it, so it can only answer. ipieced, behind the
//! home router's NAT, has it as a `[[peers]]` entry with `endpoint` and must
//! bring the session up by itself, keep it, and bring it back after the
//! remote end restarts and loses the session, without any traffic from it.
//! Then two ipieced gateways, each the other's site peer (two offices).
//!
//! These tests need root (network namespaces, TUN, nftables); with
//! `IPIECE_SKIP_NETNS=1` they print a skip line instead when not root.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The site's tunnel address (its allowed IP at the gateway).
const SITE_ADDR: &str = "172.16.60.50";
/// The UDP port wireguard-go listens on at the site.
const SITE_PORT: u16 = 51820;
/// The gateway's keepalive towards the site in this test: the silence
/// after which it initiates again is 2 * 5 + 5 = 15 s.
const KEEPALIVE: u16 = 5;

fn wg_genkey() -> String {
    run("wg", &["genkey"]).expect_ok().stdout.trim().to_string()
}

/// The gateway's public key, from the key file `wgctl init` wrote.
fn gateway_public_key(cfg: &GwConfig) -> String {
    let text = fs::read_to_string(&cfg.path).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let rel = doc["wireguard"]["private_key_file"].as_str().unwrap();
    let key = fs::read_to_string(cfg.dir.join(rel)).unwrap();
    wg_pubkey(key.trim())
}

/// The site's wg-quick style file: its key and port, the gateway as its
/// only peer, no Endpoint.
fn write_site_conf(dir: &Path, private: &str, gw_public: &str) -> PathBuf {
    let path = dir.join("site.conf");
    fs::write(
        &path,
        format!(
            "[Interface]\nPrivateKey = {private}\nListenPort = {SITE_PORT}\nAddress = {SITE_ADDR}/32\n\n\
             [Peer]\nPublicKey = {gw_public}\nAllowedIPs = 172.16.60.0/24, {LAN_CIDR}\n"
        ),
    )
    .unwrap();
    path
}

/// Appends the site peer `office2` to the gateway's file.
fn add_site_peer(cfg: &GwConfig, site_public: &str, endpoint: &str) {
    append_site_peer(cfg, "office2", site_public, SITE_ADDR, endpoint);
}

/// Appends a site peer to a gateway's file.
fn append_site_peer(cfg: &GwConfig, name: &str, public: &str, address: &str, endpoint: &str) {
    let mut text = fs::read_to_string(&cfg.path).unwrap();
    text.push_str(&format!(
        "\n[[peers]]\nname = \"{name}\"\npublic_key = \"{public}\"\naddress = \"{address}\"\n\
         endpoint = \"{endpoint}\"\nkeepalive = {KEEPALIVE}\n"
    ));
    fs::write(&cfg.path, text).unwrap();
}

/// Waits (bounded) until `wgctl status --json` shows a session with `peer`.
fn wait_session(cfg: &GwConfig, ns: &Netns, peer: &str, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(100), || {
        let st = cfg.status_json(ns);
        status_peer(&st, peer).is_some_and(|p| p["session"].as_bool() == Some(true))
    })
}

/// The site's view of the gateway from `wg show <if> dump`.
fn site_view(site: &Netns, c: &WgClient, gw_public: &str) -> WgPeer {
    let d = site.wg_dump(&c.ifname);
    d.peer(gw_public)
        .cloned()
        .unwrap_or_else(|| panic!("the site's wg lists no gateway peer: {d:#?}"))
}

/// Waits (bounded) until the site's wireguard-go reports a handshake with
/// the gateway; returns how long it took.
fn wait_site_handshake(
    site: &Netns,
    c: &WgClient,
    gw_public: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    wait_until(limit, Duration::from_millis(100), || {
        site_view(site, c, gw_public).latest_handshake != 0
    })
    .then(|| start.elapsed())
}

/// Pings both ways through the site tunnel; panics naming the direction.
fn pings_both_ways(t: &Topology, site: &Netns, when: &str) {
    let p = site.ping(GW_WG_ADDR, 3, 200, 2);
    assert_eq!(
        p.received, 3,
        "{when}: site -> gateway's WireGuard address: {p:?}"
    );
    let p = site.ping(LAN_HOST, 3, 200, 2);
    assert_eq!(p.received, 3, "{when}: site -> LAN host: {p:?}");
    let p = t.lan.ping(SITE_ADDR, 3, 200, 2);
    assert_eq!(p.received, 3, "{when}: LAN host -> site: {p:?}");
    let p = t.gw.ping(SITE_ADDR, 3, 200, 2);
    assert_eq!(p.received, 3, "{when}: gateway -> site: {p:?}");
}

#[test]
fn gateway_initiates_a_site_peer_that_only_answers_and_brings_it_back_after_a_restart() {
    if !need_root("gateway_initiates_a_site_peer") {
        return;
    }
    let t = Topology::new(1);
    let site = &t.laptops[0];
    let site_endpoint = format!("{}:{SITE_PORT}", Topology::laptop_addr(0));
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    let gw_public = gateway_public_key(&cfg);
    let site_private = wg_genkey();
    let site_public = wg_pubkey(&site_private);
    add_site_peer(&cfg, &site_public, &site_endpoint);
    let conf = write_site_conf(&t.dir.path, &site_private, &gw_public);

    // The site is up first and waits; it cannot send: it has no endpoint.
    let c = start_wg_client(site, &conf, &t.dir.path);
    assert_eq!(site_view(site, &c, &gw_public).endpoint, None);
    let daemon = start_ipieced(&t.gw, &cfg);

    let took = wait_site_handshake(site, &c, &gw_public, Duration::from_secs(30));
    assert!(
        took.is_some(),
        "ipieced never brought the site up:\n{}\nwireguard-go:\n{}",
        tail(&daemon.log, 40),
        site.logs()
    );
    let view = site_view(site, &c, &gw_public);
    assert_eq!(
        view.endpoint.map(|e| e.ip().to_string()),
        Some(NAT_WAN.to_string()),
        "the site learned the gateway's (NATed) address from its initiation: {view:?}"
    );
    assert!(view.rx > 0, "{view:?}");

    // The gateway's view: a site peer with its configured endpoint and a
    // session, before the site sent any traffic of its own.
    let st = cfg.status_json(&t.gw);
    let sp = status_peer(&st, "office2").unwrap_or_else(|| panic!("no office2: {st:#}"));
    assert_eq!(sp["site"].as_bool(), Some(true), "{sp:#}");
    assert_eq!(
        sp["configured_endpoint"].as_str(),
        Some(site_endpoint.as_str()),
        "{sp:#}"
    );
    assert_eq!(
        sp["endpoint"].as_str(),
        Some(site_endpoint.as_str()),
        "{sp:#}"
    );
    assert_eq!(sp["gateway_keepalive"].as_u64(), Some(u64::from(KEEPALIVE)));
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let st = cfg.status_json(&t.gw);
            let sp = status_peer(&st, "office2").unwrap().clone();
            sp["session"].as_bool() == Some(true) && sp["last_handshake_unix"][0].as_u64().is_some()
        }),
        "status shows no session and handshake for office2: {:#}",
        cfg.status_json(&t.gw)
    );
    let human = cfg.wgctl(&t.gw, &["status"]).expect_ok().stdout;
    assert!(
        human.contains(&format!(
            "site peer office2: the gateway initiates to {site_endpoint}, keepalive {KEEPALIVE} s"
        )),
        "{human}"
    );

    pings_both_ways(&t, site, "first session");

    // The site restarts: a new wireguard-go process with the same key and
    // no session, which again cannot send anything.
    assert!(signal(c.pid, libc::SIGTERM));
    assert!(
        site.wait_exit(c.pid, Duration::from_secs(10)).is_some(),
        "wireguard-go did not exit"
    );
    let c2 = start_wg_client(site, &conf, &t.dir.path);
    assert_eq!(site_view(site, &c2, &gw_public).latest_handshake, 0);
    // The gateway notices the silence after 2 * KEEPALIVE + 5 s and
    // initiates; 60 s bounds it on a loaded machine.
    let took = wait_site_handshake(site, &c2, &gw_public, Duration::from_secs(60));
    assert!(
        took.is_some(),
        "ipieced did not bring the restarted site back within 60 s:\n{}",
        tail(&daemon.log, 40)
    );
    eprintln!("site re-established {:?} after the restart", took.unwrap());
    pings_both_ways(&t, site, "after the site restarted");
}

#[test]
fn add_peer_with_endpoint_writes_a_site_peer_and_a_client_file_that_dials_the_gateway() {
    // Files only: no daemon runs (add-peer says so and succeeds).
    let dir = TempDir::new("site-add");
    let cfg = GwConfig::init(&dir.join("etc"), NAT_WAN);
    let conf = cfg.dir.join("office2.conf");
    let out = wgctl_at(
        &cfg.path,
        &[
            "add-peer",
            "office2",
            "--endpoint",
            "198.51.100.7:51820",
            "--output",
            conf.to_str().unwrap(),
        ],
    );
    assert!(out.ok(), "wgctl add-peer --endpoint: {out}");
    let text = fs::read_to_string(&cfg.path).unwrap();
    assert!(
        text.contains("name = \"office2\"") && text.contains("endpoint = \"198.51.100.7:51820\""),
        "{text}"
    );
    assert!(wgctl_at(&cfg.path, &["check"]).ok());
    let list = wgctl_at(&cfg.path, &["list-peers"]).expect_ok().stdout;
    let row = list
        .lines()
        .find(|l| l.starts_with("office2 "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.trim_end().ends_with(" 198.51.100.7:51820"), "{list}");
    // The printed config dials this gateway, as for a laptop, and so does
    // `wgctl export`.
    let client = ClientConf::load(&conf);
    assert_eq!(
        client.peer("Endpoint"),
        vec![format!("{NAT_WAN}:{WG_PORT}")],
        "{}",
        client.text
    );
    let out = wgctl_at(&cfg.path, &["export", "office2"]);
    assert!(out.ok(), "{out}");
    let exported = ClientConf::parse(&out.stdout).unwrap();
    assert_eq!(exported.peer("Endpoint"), client.peer("Endpoint"));

    // A malformed endpoint is refused with its position, nothing written.
    let before = fs::read_to_string(&cfg.path).unwrap();
    let other = wg_pubkey(&wg_genkey());
    let out = wgctl_at(
        &cfg.path,
        &[
            "add-peer",
            "office3",
            "--public-key",
            &other,
            "--endpoint",
            "198.51.100.8",
        ],
    );
    assert!(!out.ok(), "accepted an endpoint without a port: {out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("endpoint") && all.contains("has no port") && all.contains("gateway.toml:"),
        "{out}"
    );
    assert_eq!(fs::read_to_string(&cfg.path).unwrap(), before);
}

#[test]
fn two_ipieced_gateways_configured_as_site_peers_of_each_other_join_and_rejoin_after_a_restart() {
    if !need_root("two_ipieced_gateways_as_site_peers") {
        return;
    }
    // Office A: the topology's gateway behind the home router's NAT (UDP
    // 51821 forwarded). Office B: a second ipieced on the internet. Each
    // has the other as a site peer, so both initiate.
    let t = Topology::new(1);
    let b_ns = &t.laptops[0];
    let a = GwConfig::init(&t.dir.join("a"), NAT_WAN);
    let b = GwConfig::init(&t.dir.join("b"), &Topology::laptop_addr(0));
    toml_set_str(&b.path, "gateway", "name", "office-b");
    toml_set_str(&b.path, "wireguard", "address", "172.16.60.2/24");
    let (a_pub, b_pub) = (gateway_public_key(&a), gateway_public_key(&b));
    let b_endpoint = format!("{}:{WG_PORT}", Topology::laptop_addr(0));
    append_site_peer(&a, "office-b", &b_pub, "172.16.60.2", &b_endpoint);
    append_site_peer(
        &b,
        "office-a",
        &a_pub,
        GW_WG_ADDR,
        &format!("{NAT_WAN}:{WG_PORT}"),
    );

    let da = start_ipieced(&t.gw, &a);
    let db = start_ipieced(b_ns, &b);
    assert!(
        wait_session(&a, &t.gw, "office-b", Duration::from_secs(30))
            && wait_session(&b, b_ns, "office-a", Duration::from_secs(30)),
        "the two gateways did not join:\nA:\n{}\nB:\n{}",
        tail(&da.log, 30),
        tail(&db.log, 30)
    );
    let p = t.gw.ping("172.16.60.2", 3, 200, 2);
    assert_eq!(
        p.received, 3,
        "office A -> office B's tunnel address: {p:?}"
    );
    let p = b_ns.ping(GW_WG_ADDR, 3, 200, 2);
    assert_eq!(
        p.received, 3,
        "office B -> office A's tunnel address: {p:?}"
    );

    // Office B's daemon restarts: it initiates again at start.
    assert!(signal(db.pid, libc::SIGTERM));
    assert!(b_ns.wait_exit(db.pid, Duration::from_secs(10)).is_some());
    let db = start_ipieced(b_ns, &b);
    assert!(
        wait_session(&b, b_ns, "office-a", Duration::from_secs(30)),
        "office B did not rejoin after its restart:\n{}",
        tail(&db.log, 30)
    );
    let p = b_ns.ping(GW_WG_ADDR, 3, 200, 2);
    assert_eq!(p.received, 3, "after B restarted, B -> A: {p:?}");
    let p = t.gw.ping("172.16.60.2", 3, 200, 2);
    assert_eq!(p.received, 3, "after B restarted, A -> B: {p:?}");
}
