//! The IKE SA as a responder facing hostile and broken input: it must never
//! panic, whatever arrives and in whatever order.
//!
//! The input picks a configuration, then the first datagram of the
//! responder ([`IkeSa::accept`]): arbitrary bytes, or a genuine
//! IKE_SA_INIT from an initiator of ours with bytes flipped. Then a
//! sequence of steps drives both sides over a virtual clock (or the setup
//! runs untouched first, and the steps start from an established pair):
//! arbitrary datagrams to the responder (optionally carrying its current
//! SPIs, to reach the decryption path), delivery of either side's next
//! datagram (possibly mutated, duplicated or dropped), replays of earlier
//! datagrams, clock advances (retransmissions, DPD, rekeys, lifetimes),
//! operator rekeys and deletes. Genuine traffic reaches IKE_AUTH,
//! CREATE_CHILD_SA and INFORMATIONAL on both sides, so the fuzzer can
//! break every exchange at every point.
//!
//! A new IKE_SA_INIT request that belongs to no SA replaces the responder
//! with a fresh `accept`. (The daemon, src/ipsec.rs, keeps up to four such
//! SAs half-open beside the tunnel's own, behind cookies and a
//! Diffie-Hellman budget, and promotes one only once authenticated: that
//! table is exercised by the property test `ipsec::tests::forged_ike`.)
#![no_main]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipiece::ike::crypto::SecretBytes;
use ipiece::ike::proposal::{Proposal, Protocol};
use ipiece::ike::{IkeConfig, IkeSa, Transmit};
use ipiece::wire::{ExchangeType, HeaderRepr, Identity, IkePacket};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

const I_ADDR: &str = "198.51.100.10:500";
const R_ADDR: &str = "203.0.113.1:500";
const MAX_STEPS: usize = 48;
const MAX_QUEUE: usize = 32;

#[derive(Arbitrary, Debug)]
struct Mutation {
    at: u16,
    xor: u8,
}

#[derive(Arbitrary, Debug)]
enum First {
    /// Arbitrary bytes to `accept`.
    Arbitrary(Vec<u8>),
    /// The initiator's IKE_SA_INIT, these bytes flipped.
    Genuine(Vec<Mutation>),
    /// The whole setup delivered untouched: the steps start from an
    /// established pair (so that rekeys, DPD, collisions and deletes are
    /// reached at once).
    Established,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Arbitrary bytes to the responder; with `own_spis` the header's SPIs
    /// are overwritten with the responder's current ones.
    Raw {
        bytes: Vec<u8>,
        own_spis: bool,
        natt_port: bool,
    },
    /// The initiator's next datagram to the responder.
    DeliverToResponder {
        mutations: Vec<Mutation>,
        duplicate: bool,
    },
    /// The responder's next datagram to the initiator.
    DeliverToInitiator {
        mutations: Vec<Mutation>,
        duplicate: bool,
    },
    DropFromInitiator,
    DropFromResponder,
    /// Deliver everything in flight both ways, untouched, for up to this
    /// many rounds (at most 8).
    Pump(u8),
    /// An earlier datagram (any side, as sent) to the responder again.
    ReplayToResponder(u8),
    /// Move the clock on by this many milliseconds (up to 65 s).
    Advance(u16),
    RekeyChild {
        responder: bool,
    },
    RekeyIke {
        responder: bool,
    },
    Delete {
        responder: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: u8,
    first: First,
    steps: Vec<Step>,
}

/// Deterministic RNG (SHA-256 in counter mode), so crashes reproduce.
struct Rng {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    pos: usize,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_be_bytes());
        Rng {
            seed: s,
            counter: 0,
            buf: [0; 32],
            pos: 32,
        }
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_be_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_be_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            if self.pos == 32 {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.buf = h.finalize().into();
                self.counter += 1;
                self.pos = 0;
            }
            *d = self.buf[self.pos];
            self.pos += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Rng {}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// (initiator, responder) configurations. Only ECP groups: MODP
/// exponentiations would make each run too slow to explore much.
fn configs(sel: u8) -> (IkeConfig, IkeConfig) {
    let (ike_i, esp_i, ike_r, esp_r) = match sel % 4 {
        // AEAD everywhere.
        0 => (
            "aes128gcm16-prfsha256-ecp256",
            "aes128gcm16-ecp256",
            "aes128gcm16-prfsha256-ecp256",
            "aes128gcm16-ecp256",
        ),
        // CBC + HMAC for IKE and ESP.
        1 => (
            "aes256-sha384-ecp384",
            "aes128-sha1-ecp256",
            "aes128-sha256-ecp256,aes256-sha384-ecp384",
            "aes128-sha1-ecp256",
        ),
        // INVALID_KE_PAYLOAD: the initiator guesses P-384, the responder
        // wants P-256.
        2 => (
            "aes128gcm16-prfsha256-ecp384-ecp256",
            "aes128gcm16-ecp256",
            "aes128gcm16-prfsha256-ecp256",
            "aes128gcm16-ecp256",
        ),
        // NO_PROPOSAL_CHOSEN for ESP (IKE agrees).
        _ => (
            "aes128gcm16-prfsha256-ecp256",
            "aes256gcm16-ecp384",
            "aes128gcm16-prfsha256-ecp256",
            "aes128-sha256-ecp256",
        ),
    };
    let mk = |local: &str, ike: &str, esp: &str, psk: &[u8]| {
        let ip = addr(local).ip();
        let std::net::IpAddr::V4(v4) = ip else {
            unreachable!()
        };
        let mut c = IkeConfig::new(Identity::Ipv4(v4), SecretBytes::from_slice(psk));
        c.ike_proposals = Proposal::parse_list(Protocol::Ike, ike).unwrap();
        c.esp_proposals = Proposal::parse_list(Protocol::Esp, esp).unwrap();
        c.ike_lifetime = Duration::from_secs(90);
        c.child_lifetime = Duration::from_secs(30);
        c.rekey_margin = Duration::from_secs(10);
        c.dpd_interval = Duration::from_secs(2);
        c.dpd_timeout = Duration::from_secs(10);
        c.force_encap = sel & 0x04 != 0;
        c
    };
    let psk_r: &[u8] = if sel & 0x08 != 0 {
        b"not the initiator's key"
    } else {
        b"fuzzing.psk.0123456789"
    };
    (
        mk(I_ADDR, ike_i, esp_i, b"fuzzing.psk.0123456789"),
        mk(R_ADDR, ike_r, esp_r, psk_r),
    )
}

fn mutate(bytes: &mut [u8], mutations: &[Mutation]) {
    if bytes.is_empty() {
        return;
    }
    for m in mutations.iter().take(8) {
        let at = usize::from(m.at) % bytes.len();
        bytes[at] ^= m.xor;
    }
}

struct World {
    now: Instant,
    cfg_r: Arc<IkeConfig>,
    i: IkeSa,
    r: Option<IkeSa>,
    /// Datagrams in flight: (local, remote, IKE message without marker).
    to_r: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    to_i: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    seen: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    seed: u64,
}

fn push(q: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>, t: Transmit) {
    if let Transmit::Ike {
        local,
        remote,
        message,
    } = t
    {
        if q.len() == MAX_QUEUE {
            q.pop_front();
        }
        q.push_back((local, remote, message));
    }
}

impl World {
    fn drain(&mut self) {
        while let Some(t) = self.i.poll_transmit() {
            push(&mut self.to_r, t);
        }
        while self.i.poll_event().is_some() {}
        if let Some(r) = self.r.as_mut() {
            while let Some(t) = r.poll_transmit() {
                push(&mut self.to_i, t);
            }
            while r.poll_event().is_some() {}
        }
    }

    /// A datagram for the responder, sent from `from` to `to`: to the SA it
    /// belongs to, or a fresh `accept` for a new IKE_SA_INIT request.
    fn deliver_to_responder(&mut self, from: SocketAddr, to: SocketAddr, msg: &[u8]) {
        if self.seen.len() < 64 {
            self.seen.push((from, to, msg.to_vec()));
        }
        let header = IkePacket::new_checked(msg)
            .ok()
            .and_then(|p| HeaderRepr::parse(&p).ok());
        let known = match (&self.r, &header) {
            (Some(r), Some(h)) => {
                !r.is_closed()
                    && (r.matches(h.spi_i, h.spi_r) || (h.spi_r == 0 && r.spi_i() == h.spi_i))
            }
            _ => false,
        };
        let new_init = header.as_ref().is_some_and(|h| {
            h.exchange_type == ExchangeType::IkeSaInit
                && h.flags.initiator
                && !h.flags.response
                && h.spi_r == 0
        });
        if known {
            if let Some(r) = self.r.as_mut() {
                r.handle_datagram(self.now, to, from, msg);
            }
        } else if new_init || self.r.is_none() {
            self.accept(from, to, msg);
        } else if let Some(r) = self.r.as_mut() {
            // Unknown SPIs: the daemon drops these; the SA must cope too.
            r.handle_datagram(self.now, to, from, msg);
        }
    }

    fn accept(&mut self, from: SocketAddr, to: SocketAddr, msg: &[u8]) {
        self.seed += 1;
        match IkeSa::accept(
            self.cfg_r.clone(),
            to,
            from,
            msg,
            self.now,
            Rng::new(self.seed),
        ) {
            Ok(sa) => {
                if let Some(mut old) = self.r.replace(sa) {
                    old.delete(self.now);
                }
            }
            Err(rej) => {
                if let Some(reply) = rej.reply {
                    push(&mut self.to_i, reply);
                }
            }
        }
    }

    /// Delivers what is in flight both ways, untouched, `rounds` times.
    fn pump(&mut self, rounds: u8) {
        for _ in 0..rounds.min(8) {
            if self.to_r.is_empty() && self.to_i.is_empty() {
                break;
            }
            while let Some((from, to, msg)) = self.to_r.pop_front() {
                self.deliver_to_responder(from, to, &msg);
            }
            self.drain();
            while let Some((from, to, msg)) = self.to_i.pop_front() {
                self.i.handle_datagram(self.now, to, from, &msg);
            }
            self.drain();
        }
    }

    /// Runs both SAs' timers up to `until`, deadline by deadline.
    fn advance(&mut self, until: Instant) {
        for _ in 0..256 {
            let next = [
                self.i.poll_timeout(),
                self.r.as_ref().and_then(IkeSa::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    if self.i.poll_timeout().is_some_and(|d| d <= self.now) {
                        self.i.handle_timeout(self.now);
                    }
                    if let Some(r) = self.r.as_mut() {
                        if r.poll_timeout().is_some_and(|d| d <= self.now) {
                            r.handle_timeout(self.now);
                        }
                    }
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }
}

fuzz_target!(|input: Input| {
    let (cfg_i, cfg_r) = configs(input.config);
    let now = Instant::now();
    let i = IkeSa::initiate(
        Arc::new(cfg_i),
        addr(I_ADDR),
        addr(R_ADDR),
        now,
        Rng::new(u64::from(input.config) << 32),
    );
    let mut w = World {
        now,
        cfg_r: Arc::new(cfg_r),
        i,
        r: None,
        to_r: VecDeque::new(),
        to_i: VecDeque::new(),
        seen: Vec::new(),
        seed: 1,
    };
    w.drain();

    match &input.first {
        First::Arbitrary(bytes) => {
            w.seed += 1;
            let _ = IkeSa::accept(
                w.cfg_r.clone(),
                addr(R_ADDR),
                addr(I_ADDR),
                bytes,
                w.now,
                Rng::new(w.seed),
            )
            .map(|sa| w.r = Some(sa));
        }
        First::Genuine(mutations) => {
            if let Some((from, to, mut msg)) = w.to_r.pop_front() {
                mutate(&mut msg, mutations);
                w.deliver_to_responder(from, to, &msg);
            }
        }
        First::Established => w.pump(8),
    }
    w.drain();

    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            Step::Raw {
                bytes,
                own_spis,
                natt_port,
            } => {
                let mut b = bytes.clone();
                if *own_spis && b.len() >= 16 {
                    if let Some(r) = &w.r {
                        b[..8].copy_from_slice(&r.spi_i().to_be_bytes());
                        b[8..16].copy_from_slice(&r.spi_r().to_be_bytes());
                    }
                }
                let port = if *natt_port { 4500 } else { 500 };
                let mut from = addr(I_ADDR);
                let mut to = addr(R_ADDR);
                from.set_port(port);
                to.set_port(port);
                w.deliver_to_responder(from, to, &b);
            }
            Step::DeliverToResponder {
                mutations,
                duplicate,
            } => {
                if let Some((from, to, mut msg)) = w.to_r.pop_front() {
                    if *duplicate {
                        w.to_r.push_front((from, to, msg.clone()));
                    }
                    mutate(&mut msg, mutations);
                    w.deliver_to_responder(from, to, &msg);
                }
            }
            Step::DeliverToInitiator {
                mutations,
                duplicate,
            } => {
                if let Some((from, to, mut msg)) = w.to_i.pop_front() {
                    if *duplicate {
                        w.to_i.push_front((from, to, msg.clone()));
                    }
                    mutate(&mut msg, mutations);
                    w.i.handle_datagram(w.now, to, from, &msg);
                }
            }
            Step::DropFromInitiator => {
                w.to_r.pop_front();
            }
            Step::DropFromResponder => {
                w.to_i.pop_front();
            }
            Step::Pump(n) => w.pump(*n % 8 + 1),
            Step::ReplayToResponder(n) => {
                if !w.seen.is_empty() {
                    let (from, to, msg) = w.seen[usize::from(*n) % w.seen.len()].clone();
                    w.deliver_to_responder(from, to, &msg);
                }
            }
            Step::Advance(t) => {
                let until = w.now + Duration::from_millis(u64::from(*t));
                w.advance(until);
            }
            Step::RekeyChild { responder } => {
                if *responder {
                    if let Some(r) = w.r.as_mut() {
                        r.rekey_child(w.now);
                    }
                } else {
                    w.i.rekey_child(w.now);
                }
            }
            Step::RekeyIke { responder } => {
                if *responder {
                    if let Some(r) = w.r.as_mut() {
                        r.rekey_ike(w.now);
                    }
                } else {
                    w.i.rekey_ike(w.now);
                }
            }
            Step::Delete { responder } => {
                if *responder {
                    if let Some(r) = w.r.as_mut() {
                        r.delete(w.now);
                    }
                } else {
                    w.i.delete(w.now);
                }
            }
        }
        w.drain();
        // Status snapshots must be consistent at any point.
        let _ = w.i.status();
        if let Some(r) = &w.r {
            let _ = r.status();
            let _ = r.active_child();
        }
    }
});
