//! WireGuard hardening against a real wireguard-go laptop (issue 10,
//! defect 1): an attacker on the internet who knows only the gateway's
//! public key (every client file holds it) floods the gateway with
//! mac1-valid initiations until it answers with cookie replies, and forges
//! handshake responses naming the laptop's receiver index from another
//! address. The laptop's endpoint, as `wg show <tun> dump` reports it
//! through ipieced's UAPI socket, must not move, and traffic keeps flowing
//! both ways.
//!
//! Needs root (network namespaces, TUN, nftables); with
//! `IPIECE_SKIP_NETNS=1` it prints a skip line instead when not root.

mod common;

use base64::Engine;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// WireGuard's mac1 (whitepaper 5.4.4): keyed BLAKE2s-128 over the message,
/// keyed with BLAKE2s-256("mac1----" || the receiver's public key).
fn mac1(gw_public: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    use blake2::digest::{Digest, FixedOutput, KeyInit, Update};
    let key: [u8; 32] = blake2::Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(gw_public)
        .finalize()
        .into();
    let mut m = blake2::Blake2sMac::<blake2::digest::consts::U16>::new_from_slice(&key)
        .expect("32-byte key");
    Update::update(&mut m, msg);
    m.finalize_fixed().into()
}

/// A 148-byte initiation, mac1-valid, garbage inside.
fn forged_initiation(gw_public: &[u8; 32], rng: &mut Rng) -> Vec<u8> {
    let mut m = vec![0u8; 148];
    m[0] = 1;
    rng.fill(&mut m[4..116]);
    let mac = mac1(gw_public, &m[..116]);
    m[116..132].copy_from_slice(&mac);
    m
}

/// A 92-byte response naming `receiver_idx`, mac1-valid, garbage inside.
fn forged_response(gw_public: &[u8; 32], receiver_idx: u32, rng: &mut Rng) -> Vec<u8> {
    let mut m = vec![0u8; 92];
    m[0] = 2;
    rng.fill(&mut m[4..8]);
    m[8..12].copy_from_slice(&receiver_idx.to_le_bytes());
    rng.fill(&mut m[12..60]);
    let mac = mac1(gw_public, &m[..60]);
    m[60..76].copy_from_slice(&mac);
    m
}

/// What the forger's socket received back, by WireGuard message type.
#[derive(Debug, Default)]
struct Received {
    cookie_replies: usize,
    other: Vec<(u8, usize)>,
}

/// Floods `target` from `flood_ip` with `rounds` bursts of `burst` forged
/// initiations, each burst followed by forged responses from `forger_ip`
/// naming every low byte of the receiver indices of gateway peer index 1
/// (the first peer: the laptop). Returns what came back to the forger.
fn attack(
    ns: &Netns,
    gw_public: [u8; 32],
    target: SocketAddr,
    flood_ip: &str,
    forger_ip: &str,
    rounds: usize,
    burst: usize,
) -> Received {
    let (flood_ip, forger_ip) = (flood_ip.to_string(), forger_ip.to_string());
    in_netns(ns, move || {
        let mut rng = Rng::new("forgeries");
        let flood = UdpSocket::bind((flood_ip.as_str(), 0)).unwrap();
        let forger = UdpSocket::bind((forger_ip.as_str(), 0)).unwrap();
        let mut received = Received::default();
        let mut buf = [0u8; 2048];
        let mut drain = |forger: &UdpSocket, wait: Duration, received: &mut Received| {
            forger.set_read_timeout(Some(wait)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match forger.recv_from(&mut buf) {
                    Ok((n, _)) if n == 64 && buf[0] == 3 => received.cookie_replies += 1,
                    Ok((n, _)) => received.other.push((buf[0], n)),
                    Err(_) => break,
                }
            }
        };
        for _ in 0..rounds {
            for _ in 0..burst {
                let _ = flood.send_to(&forged_initiation(&gw_public, &mut rng), target);
            }
            for low in 0..=255u32 {
                let r = forged_response(&gw_public, (1 << 8) | low, &mut rng);
                let _ = forger.send_to(&r, target);
            }
            drain(&forger, Duration::from_millis(20), &mut received);
        }
        drain(&forger, Duration::from_millis(300), &mut received);
        received
    })
}

#[test]
fn forged_responses_under_handshake_flood_leave_the_wireguard_go_laptop_where_it_is() {
    if !need_root("forged_responses_under_handshake_flood") {
        return;
    }
    let mut t = Topology::new(1);
    let atk = t.add_host("atk");
    let forger_ip = "198.51.100.111";
    t.laptops[atk].ip(&format!("addr add {forger_ip}/24 dev eth0"));
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    let daemon = start_ipieced(&t.gw, &cfg);
    let conf = cfg.add_peer(&t.gw, "alice", &[]);
    let lap = &t.laptops[0];
    let c = start_wg_client(lap, &conf, &t.dir.path);
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(10)),
        "the laptop never reached {GW_WG_ADDR} through the tunnel"
    );
    let st = cfg.status_json(&t.gw);
    let gw_public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(st["public_key"].as_str().expect("public_key in status"))
        .expect("base64 public key")
        .try_into()
        .expect("32-byte key");
    let before =
        t.gw.wg_dump(&cfg.tun)
            .peer(&c.public_key)
            .and_then(|p| p.endpoint)
            .expect("the gateway knows the laptop's endpoint");
    assert_eq!(before.ip().to_string(), Topology::laptop_addr(0));

    let target: SocketAddr = format!("{NAT_WAN}:{WG_PORT}").parse().unwrap();
    let flood_ip = Topology::laptop_addr(atk);
    let got = attack(
        &t.laptops[atk],
        gw_public,
        target,
        &flood_ip,
        forger_ip,
        8,
        400,
    );

    let st = cfg.status_json(&t.gw);
    let w = &st["wireguard"];
    assert!(
        json_u64(w, "cookies_sent") > 0,
        "the flood never put the gateway under load (no cookie replies): {w}"
    );
    let after =
        t.gw.wg_dump(&cfg.tun)
            .peer(&c.public_key)
            .and_then(|p| p.endpoint);
    assert_eq!(
        after,
        Some(before),
        "a forged response moved the laptop's endpoint (forger {forger_ip}); gateway counters {w}\n{}",
        tail(&daemon.log, 30)
    );
    assert!(
        got.other.is_empty(),
        "the gateway sent the forger something other than cookie replies: {got:?}"
    );
    eprintln!(
        "[test] forger got {} cookie replies; counters {w}",
        got.cookie_replies
    );

    // LAN -> laptop first (the laptop has sent nothing since the attack: a
    // moved endpoint would black-hole these), then laptop -> LAN.
    let p = t.lan.ping(&c.address(), 3, 200, 2);
    assert_eq!(p.received, 3, "LAN host -> laptop after the attack: {p:?}");
    let p = lap.ping(LAN_HOST, 3, 200, 2);
    assert_eq!(p.received, 3, "laptop -> LAN host after the attack: {p:?}");
    let after =
        t.gw.wg_dump(&cfg.tun)
            .peer(&c.public_key)
            .and_then(|p| p.endpoint);
    assert_eq!(after, Some(before));
    assert!(
        json_u64(w, "rx_handshake_limited") > 0,
        "the single flooding source was never limited: {w}"
    );
}
