//! The WireGuard side of the sans-IO `Gateway` (whitepaper sections 2.1
//! roaming and 5.3 cookies) against a boringtun laptop and attackers, over a
//! virtual clock. Steps: arbitrary datagrams from attacker addresses (typed
//! as WireGuard messages and given a valid mac1 or not, aimed at the
//! laptop's receiver index or not), the laptop's genuine datagrams delivered
//! from its own address (or dropped, duplicated, bit-flipped), LAN packets
//! for the laptop, clock jumps and ticks. After every step:
//! - nothing panics;
//! - the laptop's endpoint is unknown or the laptop's own address: no
//!   attacker datagram ever moves it (only the laptop holds the keys);
//! - the gateway sends attacker addresses nothing but cookie replies;
//! - the handshake messages that reached X25519 never exceed what the
//!   per-source budgets allow (burst 5 plus 20 a second for each source).
//!
//! The laptop's ephemeral keys come from the OS RNG inside boringtun, so a
//! crash input reproduces the path, not necessarily the same bytes.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipiece::config::{public_key, Key};
use ipiece::gateway::{Gateway, Settings};
use ipiece::output::{Io, UdpPort};
use ipiece::wg::PeerSettings;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

const GW_KEY: [u8; 32] = [0x48; 32];
const LAPTOP_KEY: [u8; 32] = [0x50; 32];

/// The attackers: two IPv4 hosts and two hosts in one IPv6 /64 (one budget).
fn attacker(i: u8) -> SocketAddr {
    match i % 4 {
        0 => "203.0.113.66:4444",
        1 => "203.0.113.67:5555",
        2 => "[2001:db8:66::1]:4444",
        _ => "[2001:db8:66::2]:6666",
    }
    .parse()
    .unwrap()
}
/// Distinct budgets: 203.0.113.66, 203.0.113.67, 2001:db8:66::/64, laptop.
const SOURCES: u64 = 4;

fn laptop_addr() -> SocketAddr {
    "198.51.100.10:40000".parse().unwrap()
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Bytes from attacker `src`; `kind` 1..=4 sets the message type (and
    /// the length a valid message of that type has), `at_laptop` puts the
    /// laptop's receiver index (peer 1) in, `mac1` makes mac1 valid.
    Forge {
        src: u8,
        kind: u8,
        at_laptop: bool,
        mac1: bool,
        bytes: Vec<u8>,
    },
    /// The laptop sends an IP packet of `len` payload bytes (it starts a
    /// handshake when it has no session).
    LaptopSends { len: u8 },
    /// The laptop forces a new handshake initiation.
    LaptopRehandshakes,
    /// Delivers the oldest datagram in flight (laptop -> gateway or back):
    /// `how` 0 drop, 1 duplicate, 2 flip bit `bit`, else as sent.
    Deliver { to_gateway: bool, how: u8, bit: u16 },
    /// A LAN host sends to the laptop.
    LanSends,
    /// The clock moves.
    Advance { ms: u16 },
    /// The gateway's timers run.
    Tick,
}

#[derive(Default)]
struct Wire {
    udp: Vec<(SocketAddr, Vec<u8>)>,
}

impl Io for Wire {
    fn send_udp(&mut self, _from: UdpPort, dst: SocketAddr, d: &[u8]) {
        self.udp.push((dst, d.to_vec()));
    }
    fn write_tun(&mut self, _p: &[u8]) {}
}

fn mac1(gw_public: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    use blake2::digest::{Digest, FixedOutput, KeyInit, Update};
    let key: [u8; 32] = blake2::Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(gw_public)
        .finalize()
        .into();
    let mut m = blake2::Blake2sMac::<blake2::digest::consts::U16>::new_from_slice(&key).unwrap();
    Update::update(&mut m, msg);
    m.finalize_fixed().into()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let len = 20 + payload;
    let mut b = vec![0u8; len];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b
}

/// The datagram a `Tunn` call wrote, if any.
fn written(r: TunnResult<'_>) -> Option<Vec<u8>> {
    match r {
        TunnResult::WriteToNetwork(d) => Some(d.to_vec()),
        _ => None,
    }
}

struct World {
    gw: Gateway,
    gw_public: [u8; 32],
    laptop: Tunn,
    now: Instant,
    start: Instant,
    buf: Vec<u8>,
    lbuf: Vec<u8>,
    to_gw: Vec<Vec<u8>>,
    to_laptop: Vec<Vec<u8>>,
}

impl World {
    fn new() -> World {
        let gw_key = Key(GW_KEY);
        let lap_key = Key(LAPTOP_KEY);
        let now = Instant::now();
        let settings = Settings {
            name: "fuzz".into(),
            private_key: gw_key,
            listen_port: 51821,
            tun_name: "fuzz0".into(),
            address: "172.16.60.1/24".parse().unwrap(),
            mtu: 1420,
            lan_prefixes: vec!["172.16.4.0/24".parse().unwrap()],
            remote_prefixes: vec!["10.0.0.0/16".parse().unwrap()],
            peers: vec![PeerSettings {
                name: "alice".into(),
                public_key: public_key(&lap_key),
                psk: None,
                allowed_ips: vec!["172.16.60.2/32".parse().unwrap()],
                keepalive: 0,
                endpoint: None,
            }],
            control_socket: "/nonexistent/fuzz.sock".into(),
            tunnels: Vec::new(),
            tcp_mss: 1379,
            tunnel_mtu: None,
        };
        let gw_public = public_key(&gw_key).0;
        World {
            gw: Gateway::new(settings, now),
            gw_public,
            laptop: Tunn::new(
                StaticSecret::from(LAPTOP_KEY),
                PublicKey::from(gw_public),
                None,
                None,
                7,
                None,
            ),
            now,
            start: now,
            buf: vec![0u8; 70000],
            lbuf: vec![0u8; 70000],
            to_gw: Vec::new(),
            to_laptop: Vec::new(),
        }
    }

    /// Feeds one datagram to the gateway and sorts what it sends.
    fn gateway_gets(&mut self, from: SocketAddr, d: &[u8]) {
        let mut wire = Wire::default();
        self.gw.handle_datagram(self.now, from, d, &mut self.buf, &mut wire);
        self.sort(wire);
    }

    fn sort(&mut self, wire: Wire) {
        for (dst, d) in wire.udp {
            if dst == laptop_addr() {
                self.to_laptop.push(d);
            } else {
                assert!(
                    d.len() == 64 && d[0] == 3,
                    "the gateway sent {dst} (not the laptop) a type-{} datagram of {} bytes",
                    d[0],
                    d.len()
                );
            }
        }
    }

    fn step(&mut self, s: Step) {
        match s {
            Step::Forge {
                src,
                kind,
                at_laptop,
                mac1: fix,
                mut bytes,
            } => {
                let want = match kind % 5 {
                    1 => Some((1u8, 148usize)),
                    2 => Some((2, 92)),
                    3 => Some((3, 64)),
                    4 => Some((4, bytes.len().max(32))),
                    _ => None,
                };
                if let Some((t, len)) = want {
                    bytes.resize(len, 0);
                    bytes[0] = t;
                    bytes[1..4].fill(0);
                    if at_laptop && t != 1 {
                        let idx = (1u32 << 8) | u32::from(bytes[5]);
                        bytes[4..8].copy_from_slice(&idx.to_le_bytes());
                    }
                    if at_laptop && t == 2 {
                        let idx = (1u32 << 8) | u32::from(bytes[9]);
                        bytes[8..12].copy_from_slice(&idx.to_le_bytes());
                    }
                    if fix && (t == 1 || t == 2) {
                        let n = len - 32;
                        let m = mac1(&self.gw_public, &bytes[..n]);
                        bytes[n..n + 16].copy_from_slice(&m);
                    }
                }
                self.gateway_gets(attacker(src), &bytes);
            }
            Step::LaptopSends { len } => {
                let p = ipv4([172, 16, 60, 2], [172, 16, 4, 10], len as usize);
                let r = self.laptop.encapsulate(&p, &mut self.lbuf);
                if let Some(d) = written(r) {
                    self.to_gw.push(d);
                }
            }
            Step::LaptopRehandshakes => {
                let r = self.laptop.format_handshake_initiation(&mut self.lbuf, true);
                if let Some(d) = written(r) {
                    self.to_gw.push(d);
                }
            }
            Step::Deliver {
                to_gateway,
                how,
                bit,
            } => {
                let q = if to_gateway {
                    &mut self.to_gw
                } else {
                    &mut self.to_laptop
                };
                if q.is_empty() {
                    return;
                }
                let mut d = q.remove(0);
                match how % 4 {
                    0 => return,
                    1 => q.insert(0, d.clone()),
                    2 => {
                        let i = bit as usize / 8 % d.len();
                        d[i] ^= 1 << (bit % 8);
                    }
                    _ => {}
                }
                if to_gateway {
                    self.gateway_gets(laptop_addr(), &d);
                } else {
                    let mut r = self
                        .laptop
                        .decapsulate(Some(laptop_addr().ip()), &d, &mut self.lbuf);
                    while let TunnResult::WriteToNetwork(x) = r {
                        self.to_gw.push(x.to_vec());
                        r = self.laptop.decapsulate(None, &[], &mut self.lbuf);
                    }
                }
            }
            Step::LanSends => {
                let mut p = ipv4([172, 16, 4, 10], [172, 16, 60, 2], 8);
                let mut wire = Wire::default();
                self.gw.handle_tun_packet(&mut p, &mut self.buf, &mut wire);
                self.sort(wire);
            }
            Step::Advance { ms } => self.now += Duration::from_millis(u64::from(ms)),
            Step::Tick => {
                let mut wire = Wire::default();
                self.gw
                    .tick(self.now, SystemTime::now(), &mut self.buf, &mut wire);
                self.sort(wire);
            }
        }
        // Bounded queues: the fuzzer cannot grow memory without end.
        self.to_gw.truncate(64);
        self.to_laptop.truncate(64);
    }

    fn check(&self) {
        let st = self.gw.status(self.now, SystemTime::now());
        let ep = st.peers[0].endpoint;
        assert!(
            ep.is_none() || ep == Some(laptop_addr()),
            "the laptop's endpoint moved to {ep:?}"
        );
        let secs = self.now.duration_since(self.start).as_secs_f64();
        let bound = SOURCES * (5 + (20.0 * secs).floor() as u64 + 1);
        let processed = st.wireguard.rx_handshake_processed;
        assert!(
            processed <= bound,
            "{processed} handshake messages reached X25519 in {secs} s (bound {bound})"
        );
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut w = World::new();
    for s in steps.into_iter().take(256) {
        w.step(s);
        w.check();
    }
});
