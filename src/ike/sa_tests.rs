//! Two IKE SAs of ours back to back in memory, with a virtual clock
//! (quinn-proto's `Pair`): setup for the proposal matrix, refusals,
//! NAT-T, loss and retransmission, rekeys and their collisions, DPD,
//! Delete, lifetimes, a real strongSwan request, and hostile input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::child::ChildSaParams;
use super::config::IkeConfig;
use super::cookie::{CookieCheck, CookieJar};
use super::crypto::{EspCipher, SecretBytes};
use super::proposal::{Proposal, Protocol};
use super::sa::{AuthFailure, ChildDownReason, CloseReason, Event, IkeSa, IkeState, Transmit};
use crate::wire::{
    natt, ExchangeType, Flags, HeaderRepr, Identity, Message, NotifyPayload, NotifyType, Payload,
    PayloadType, RawPayload,
};

/// A deterministic RNG for tests: SHA-256 in counter mode over a seed.
struct TestRng {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    pos: usize,
}

impl TestRng {
    fn new(seed: u64) -> TestRng {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_be_bytes());
        TestRng {
            seed: s,
            counter: 0,
            buf: [0; 32],
            pos: 32,
        }
    }
}

impl RngCore for TestRng {
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

impl CryptoRng for TestRng {}

/// Log lines in test output (`cargo test -- --nocapture` shows them).
fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_test_writer()
        .try_init();
}

const I_ADDR: &str = "198.51.100.10:500";
const R_ADDR: &str = "203.0.113.1:500";
const I_PRIVATE: &str = "10.0.0.2:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(local: &str, ike: &str, esp: &str, psk: &[u8]) -> IkeConfig {
    let mut c = IkeConfig::new(
        Identity::Ipv4(local.parse().unwrap()),
        SecretBytes::from_slice(psk),
    );
    c.ike_proposals = Proposal::parse_list(Protocol::Ike, ike).unwrap();
    c.esp_proposals = Proposal::parse_list(Protocol::Esp, esp).unwrap();
    c
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    I,
    R,
}

/// Two endpoints and the network between them.
struct Pair {
    now: Instant,
    cfg_r: Arc<IkeConfig>,
    i: IkeSa,
    r: Option<IkeSa>,
    /// The initiator's own address (its private one behind the NAT).
    i_local: SocketAddr,
    r_local: SocketAddr,
    /// The NAT in front of the initiator: its public IP and the port offset
    /// it maps source ports with.
    nat: Option<(std::net::IpAddr, u16)>,
    events_i: Vec<Event>,
    events_r: Vec<Event>,
    /// Datagrams (as sent) by side, with the time.
    sent: Vec<(Side, Instant, Transmit)>,
    /// Drop this many next datagrams from each side.
    drop_i: usize,
    drop_r: usize,
    /// Drop everything from a side.
    mute_i: bool,
    mute_r: bool,
    keepalives_at_r: usize,
    cookies: Option<CookieJar>,
    rejected: Vec<super::sa::Rejected>,
    accepts: usize,
}

impl Pair {
    fn new(cfg_i: IkeConfig, cfg_r: IkeConfig) -> Pair {
        Pair::with_nat(cfg_i, cfg_r, None)
    }

    fn with_nat(cfg_i: IkeConfig, cfg_r: IkeConfig, nat: Option<(&str, u16)>) -> Pair {
        trace();
        let now = Instant::now();
        let i_local = if nat.is_some() {
            addr(I_PRIVATE)
        } else {
            addr(I_ADDR)
        };
        let r_local = addr(R_ADDR);
        let i = IkeSa::initiate(Arc::new(cfg_i), i_local, r_local, now, TestRng::new(1));
        Pair {
            now,
            cfg_r: Arc::new(cfg_r),
            i,
            r: None,
            i_local,
            r_local,
            nat: nat.map(|(ip, off)| (ip.parse().unwrap(), off)),
            events_i: Vec::new(),
            events_r: Vec::new(),
            sent: Vec::new(),
            drop_i: 0,
            drop_r: 0,
            mute_i: false,
            mute_r: false,
            keepalives_at_r: 0,
            cookies: None,
            rejected: Vec::new(),
            accepts: 0,
        }
    }

    fn standard() -> Pair {
        Pair::new(
            config(
                "198.51.100.10",
                "aes128-sha1-modp2048",
                "aes128-sha1-modp2048",
                b"psk-0123456789",
            ),
            config(
                "203.0.113.1",
                "aes128-sha1-modp2048",
                "aes128-sha1-modp2048",
                b"psk-0123456789",
            ),
        )
    }

    /// How the responder sees an initiator address.
    fn translate(&self, a: SocketAddr) -> SocketAddr {
        match self.nat {
            Some((ip, off)) => SocketAddr::new(ip, a.port() + off),
            None => a,
        }
    }

    fn untranslate(&self, a: SocketAddr) -> Option<SocketAddr> {
        match self.nat {
            Some((ip, off)) if a.ip() == ip => {
                Some(SocketAddr::new(self.i_local.ip(), a.port() - off))
            }
            Some(_) => None,
            None => Some(a),
        }
    }

    /// Strips the port-4500 framing as the shell does.
    fn unframe(local: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        if local.port() == natt::NATT_PORT {
            match natt::classify(datagram) {
                Ok(natt::Demux::Ike(m)) => Some(m.to_vec()),
                _ => None,
            }
        } else {
            Some(datagram.to_vec())
        }
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.i.poll_event() {
            self.events_i.push(e);
        }
        if let Some(r) = self.r.as_mut() {
            while let Some(e) = r.poll_event() {
                self.events_r.push(e);
            }
        }
    }

    /// Moves datagrams until both sides are quiet.
    fn drive(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(t) = self.i.poll_transmit() {
                moved = true;
                self.sent.push((Side::I, self.now, t.clone()));
                if self.mute_i {
                    continue;
                }
                if self.drop_i > 0 {
                    self.drop_i -= 1;
                    continue;
                }
                self.deliver_to_r(t);
            }
            if let Some(r) = self.r.as_mut() {
                let mut out = Vec::new();
                while let Some(t) = r.poll_transmit() {
                    out.push(t);
                }
                for t in out {
                    moved = true;
                    self.sent.push((Side::R, self.now, t.clone()));
                    if self.mute_r {
                        continue;
                    }
                    if self.drop_r > 0 {
                        self.drop_r -= 1;
                        continue;
                    }
                    self.deliver_to_i(t);
                }
            }
            self.collect_events();
            if !moved {
                return;
            }
        }
        panic!("drive() does not settle");
    }

    fn deliver_to_r(&mut self, t: Transmit) {
        assert_eq!(
            t.local().ip(),
            self.i_local.ip(),
            "initiator sends from its own address"
        );
        let from = self.translate(t.local());
        let to = t.remote();
        assert_eq!(to.ip(), self.r_local.ip());
        let local = SocketAddr::new(self.r_local.ip(), to.port());
        let datagram = t.datagram();
        if let Transmit::NatKeepalive { .. } = t {
            assert_eq!(natt::classify(&datagram).unwrap(), natt::Demux::Keepalive);
            self.keepalives_at_r += 1;
            return;
        }
        let Some(ike) = Self::unframe(local, &datagram) else {
            panic!("undecodable datagram on {local}");
        };
        let now = self.now;
        match self.r.as_mut() {
            Some(r) if !r.is_closed() => r.handle_datagram(now, local, from, &ike),
            _ => {
                if let Some(jar) = &self.cookies {
                    match jar.check(0, local, from, &ike) {
                        CookieCheck::Accept => {}
                        CookieCheck::Demand(reply) => {
                            self.deliver_to_i(reply);
                            return;
                        }
                        CookieCheck::Drop => return,
                    }
                }
                match IkeSa::accept(self.cfg_r.clone(), local, from, &ike, now, TestRng::new(2)) {
                    Ok(sa) => {
                        self.accepts += 1;
                        self.r = Some(sa)
                    }
                    Err(rej) => {
                        if let Some(reply) = rej.reply.clone() {
                            self.sent.push((Side::R, self.now, reply.clone()));
                            self.deliver_to_i(reply);
                        }
                        self.rejected.push(rej);
                    }
                }
            }
        }
    }

    fn deliver_to_i(&mut self, t: Transmit) {
        assert_eq!(t.local().ip(), self.r_local.ip());
        let Some(to) = self.untranslate(t.remote()) else {
            return;
        };
        let from = t.local();
        let datagram = t.datagram();
        if let Transmit::NatKeepalive { .. } = t {
            return;
        }
        let ike = Self::unframe(to, &datagram).expect("decodable");
        self.i.handle_datagram(self.now, to, from, &ike);
    }

    /// Advances the clock to `until`, firing timers and moving datagrams.
    fn run_until(&mut self, until: Instant) {
        self.drive();
        loop {
            let next = [
                self.i.poll_timeout(),
                self.r.as_ref().and_then(|r| r.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.i.handle_timeout(now);
                    if let Some(r) = self.r.as_mut() {
                        r.handle_timeout(now);
                    }
                    self.drive();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn r(&self) -> &IkeSa {
        self.r.as_ref().expect("responder exists")
    }

    fn established(&self) -> bool {
        self.i.status().state == IkeState::Established
            && self
                .r
                .as_ref()
                .is_some_and(|r| r.status().state == IkeState::Established)
    }

    fn count_sent(&self, side: Side, exchange: crate::wire::ExchangeType, response: bool) -> usize {
        self.sent
            .iter()
            .filter(|(s, _, t)| {
                *s == side
                    && matches!(t, Transmit::Ike { message, .. }
                        if Message::parse(message).is_ok_and(|m| m.header.exchange_type == exchange && m.header.flags.response == response))
            })
            .count()
    }
}

/// Proves that two CHILD_SA views hold matching keys: a packet sealed
/// outbound on one side opens inbound on the other, both ways.
fn check_child_keys(a: &ChildSaParams, b: &ChildSaParams) {
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.suite, b.suite);
    for (x, y) in [(a, b), (b, a)] {
        let out = x.outbound_cipher().unwrap();
        let inn = y.inbound_cipher().unwrap();
        let payload = b"\x45\x00\x00\x1c ping through the tunnel";
        let mut p = esp_packet(&out, x.spi_out, 7, payload);
        out.seal_in_place(&mut TestRng::new(9), &mut p, None)
            .unwrap();
        let range = inn.open_in_place(&mut p, None).unwrap();
        assert_eq!(&p[range.start..range.start + payload.len()], payload);
    }
}

fn esp_packet(c: &EspCipher, spi: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&spi.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.resize(p.len() + c.iv_len(), 0);
    p.extend_from_slice(payload);
    let pad = c.pad_len(payload.len());
    p.extend((1..=pad).map(|i| i as u8));
    p.push(pad as u8);
    p.push(4);
    p.resize(p.len() + c.icv_len(), 0);
    assert_eq!(p.len(), c.packet_len(payload.len()));
    p
}

/// The CHILD_SA view each side outbound-sends on, with matching keys.
fn check_active(p: &Pair) -> (u32, u32) {
    let a = p.i.active_child().expect("initiator child");
    let b = p.r().active_child().expect("responder child");
    check_child_keys(a, b);
    (a.spi_in, a.spi_out)
}

fn live_children(sa: &IkeSa) -> Vec<(u32, u32)> {
    sa.status()
        .children
        .iter()
        .map(|c| (c.spi_in, c.spi_out))
        .collect()
}

fn closed_reason(events: &[Event]) -> Option<&CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closed { reason } => Some(reason),
        _ => None,
    })
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

#[test]
fn setup_proposal_matrix() {
    for proposal in [
        "aes128-sha1-modp2048",
        "aes256-sha256-modp2048",
        "aes128-sha256-ecp256",
        "aes128gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha384-ecp384",
        "aes256-sha512-modp4096",
    ] {
        // The ESP proposal: the same without the PRF, with PFS in the group.
        let esp: String = proposal
            .split('-')
            .filter(|t| !t.starts_with("prf"))
            .collect::<Vec<_>>()
            .join("-");
        let mut p = Pair::new(
            config("198.51.100.10", proposal, &esp, b"matrix-psk"),
            config("203.0.113.1", proposal, &esp, b"matrix-psk"),
        );
        p.drive();
        assert!(p.established(), "{proposal}");
        let suite_i = p.i.status().suite.unwrap();
        assert_eq!(suite_i.to_string(), proposal, "{proposal}");
        assert_eq!(p.r().status().suite, Some(suite_i));
        assert_eq!(p.i.spi_i(), p.r().spi_i());
        assert_eq!(p.i.spi_r(), p.r().spi_r());
        let up_i = p
            .events_i
            .iter()
            .filter(|e| matches!(e, Event::ChildUp(_)))
            .count();
        let up_r = p
            .events_r
            .iter()
            .filter(|e| matches!(e, Event::ChildUp(_)))
            .count();
        assert_eq!((up_i, up_r), (1, 1), "{proposal}");
        check_active(&p);
        // IKE_SA_INIT and IKE_AUTH: one request and one response each.
        assert_eq!(p.sent.len(), 4, "{proposal}");
        let esp_suite = p.i.active_child().unwrap().suite;
        assert_eq!(
            esp_suite.to_string(),
            esp.rsplit_once('-').unwrap().0,
            "{proposal}"
        );
        // A CHILD_SA rekey with PFS in the proposal's group.
        p.r.as_mut().unwrap().rekey_child(p.now);
        p.drive();
        check_active(&p);
        assert_eq!(
            p.i.active_child().unwrap().suite.to_string(),
            esp,
            "{proposal}"
        );
        let Event::Established { remote_id, .. } = &p.events_i[0] else {
            panic!("{:?}", p.events_i[0]);
        };
        assert_eq!(remote_id, &Identity::Ipv4("203.0.113.1".parse().unwrap()));
    }
}

#[test]
fn invalid_ke_round_then_pfs_invalid_ke() {
    // The initiator sends its KE in ECP-256 first; the responder only takes
    // MODP 2048 and asks for it (RFC 7296 1.3).
    let mut p = Pair::new(
        config(
            "198.51.100.10",
            "aes128-sha256-ecp256-modp2048",
            "aes128-sha256-ecp256-modp2048",
            b"k",
        ),
        config(
            "203.0.113.1",
            "aes128-sha256-modp2048",
            "aes128-sha256-modp2048",
            b"k",
        ),
    );
    p.drive();
    assert!(p.established());
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].error.notify, NotifyType::InvalidKePayload);
    assert_eq!(
        p.count_sent(Side::I, crate::wire::ExchangeType::IkeSaInit, false),
        2
    );
    assert_eq!(
        p.i.status().suite.unwrap().dh,
        super::crypto::DhGroup::Modp2048
    );
    // A CHILD_SA rekey with PFS: the initiator's KE is ECP-256 again, the
    // responder asks for MODP 2048 in CREATE_CHILD_SA too.
    let before = check_active(&p);
    p.i.rekey_child(p.now);
    p.drive();
    let after = check_active(&p);
    assert_ne!(before, after);
    assert_eq!(
        p.i.active_child().unwrap().suite.dh,
        Some(super::crypto::DhGroup::Modp2048)
    );
    assert_eq!(
        p.count_sent(Side::I, crate::wire::ExchangeType::CreateChildSa, false),
        2
    );
    assert_eq!(live_children(&p.i).len(), 1);
}

#[test]
fn no_proposal_chosen() {
    let mut p = Pair::new(
        config(
            "198.51.100.10",
            "aes256-sha512-ecp384",
            "aes256-sha512",
            b"k",
        ),
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
    );
    p.drive();
    assert!(p.r.is_none());
    assert_eq!(p.rejected[0].error.notify, NotifyType::NoProposalChosen);
    assert!(p.rejected[0].error.reason.contains("aes256-sha512-ecp384"));
    assert!(p.rejected[0].error.reason.contains("aes128-sha1-modp2048"));
    // The refusal is not authenticated: the initiator keeps trying until
    // its retransmissions run out (RFC 7296 2.21.1), then gives up.
    assert!(!p.i.is_closed());
    p.advance(Duration::from_secs(60));
    assert_eq!(
        p.count_sent(Side::I, crate::wire::ExchangeType::IkeSaInit, false),
        6
    );
    assert!(p.events_i.iter().any(|e| matches!(e, Event::NoProposalChosen { offered, .. } if offered == "aes256-sha512-ecp384")));
    assert_eq!(
        closed_reason(&p.events_i),
        Some(&CloseReason::NoProposalChosen)
    );
    assert!(p.i.is_closed());
}

/// A refusal of IKE_SA_INIT from someone else than the responder (it is
/// not authenticated) does not end the attempt: the genuine answer that
/// follows still sets the SA up (RFC 7296 2.21.1).
#[test]
fn forged_error_notify_in_ike_sa_init_does_not_end_the_attempt() {
    for notify in [
        NotifyPayload::new(NotifyType::NoProposalChosen, Vec::new()),
        NotifyPayload::new(NotifyType::InvalidSyntax, Vec::new()),
        // A group we did not offer.
        NotifyPayload::invalid_ke(crate::wire::DhGroup::from(31)),
    ] {
        let mut p = Pair::standard();
        let request = p.i.poll_transmit().expect("IKE_SA_INIT");
        let Transmit::Ike { message, .. } = &request else {
            panic!()
        };
        let h = Message::parse(message).unwrap().header;
        let forged = Message {
            header: HeaderRepr {
                spi_i: h.spi_i,
                spi_r: 0,
                exchange_type: ExchangeType::IkeSaInit,
                flags: Flags {
                    initiator: false,
                    response: true,
                    version: false,
                },
                message_id: 0,
            },
            payloads: vec![Payload::Notify(notify.clone())],
        }
        .to_bytes()
        .unwrap();
        p.i.handle_datagram(p.now, p.i_local, p.r_local, &forged);
        p.collect_events();
        assert!(!p.i.is_closed(), "{notify:?}: {:?}", p.events_i);
        p.deliver_to_r(request);
        p.drive();
        assert!(p.established(), "{notify:?}");
        check_active(&p);
    }
}

#[test]
fn esp_no_proposal_chosen_in_ike_auth() {
    let mut p = Pair::new(
        config("198.51.100.10", "aes128-sha1-modp2048", "aes256gcm16", b"k"),
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
    );
    p.drive();
    assert!(p
        .events_r
        .iter()
        .any(|e| matches!(e, Event::ChildFailed(e) if e.notify == NotifyType::NoProposalChosen)));
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::NoProposalChosen {
            protocol: Protocol::Esp,
            ..
        }
    )));
    assert_eq!(
        closed_reason(&p.events_i),
        Some(&CloseReason::NoProposalChosen)
    );
    assert_eq!(
        closed_reason(&p.events_r),
        Some(&CloseReason::DeletedByPeer)
    );
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let mut p = Pair::new(
        config(
            "198.51.100.10",
            "aes128-sha1-modp2048",
            "aes128-sha1",
            b"right",
        ),
        config(
            "203.0.113.1",
            "aes128-sha1-modp2048",
            "aes128-sha1",
            b"wrong",
        ),
    );
    p.drive();
    assert!(p.events_r.iter().any(|e| matches!(
        e,
        Event::AuthFailed {
            reason: AuthFailure::BadPsk {
                peer: Some(Identity::Ipv4(_))
            }
        }
    )));
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::AuthFailed {
            reason: AuthFailure::RejectedByPeer
        }
    )));
    assert_eq!(closed_reason(&p.events_i), Some(&CloseReason::AuthFailed));
    assert_eq!(closed_reason(&p.events_r), Some(&CloseReason::AuthFailed));
    assert!(!p.events_i.iter().any(|e| matches!(e, Event::ChildUp(_))));
}

#[test]
fn initiator_id_mismatch() {
    let mut r = config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    r.remote_id = Some(Identity::Fqdn("cgw.example.net".into()));
    let mut p = Pair::new(
        config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        r,
    );
    p.drive();
    let expected = Identity::Fqdn("cgw.example.net".into());
    let received = Some(Identity::Ipv4("198.51.100.10".parse().unwrap()));
    assert!(p.events_r.iter().any(|e| *e
        == Event::AuthFailed {
            reason: AuthFailure::IdMismatch {
                expected: expected.clone(),
                received: received.clone()
            }
        }));
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::AuthFailed {
            reason: AuthFailure::RejectedByPeer
        }
    )));
    assert!(p.i.is_closed() && p.r().is_closed());
}

#[test]
fn responder_id_mismatch_and_key_id() {
    // The initiator expects a KEY_ID the responder does not present; the
    // responder learns of it from an INFORMATIONAL AUTHENTICATION_FAILED.
    let mut i = config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    i.remote_id = Some(Identity::KeyId(b"vgw-1".to_vec()));
    let mut p = Pair::new(
        i,
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
    );
    p.drive();
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::AuthFailed {
            reason: AuthFailure::IdMismatch {
                expected: Identity::KeyId(_),
                received: Some(Identity::Ipv4(_))
            }
        }
    )));
    assert!(p.events_r.iter().any(|e| matches!(
        e,
        Event::AuthFailed {
            reason: AuthFailure::RejectedByPeer
        }
    )));
    assert!(p.i.is_closed() && p.r().is_closed());

    // With matching FQDN and KEY_ID identities it works.
    let mut i = config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    i.local_id = Identity::Fqdn("cgw.example.net".into());
    i.remote_id = Some(Identity::KeyId(b"vgw-1".to_vec()));
    let mut r = config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    r.local_id = Identity::KeyId(b"vgw-1".to_vec());
    r.remote_id = Some(Identity::Fqdn("cgw.example.net".into()));
    let mut p = Pair::new(i, r);
    p.drive();
    assert!(p.established());
    assert_eq!(
        p.r().status().remote_id,
        Some(Identity::Fqdn("cgw.example.net".into()))
    );
}

#[test]
fn traffic_selectors_are_narrowed() {
    let mut r = config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    r.local_ts = vec!["10.0.0.0/16".parse().unwrap()];
    r.remote_ts = vec![
        "172.16.4.0/24".parse().unwrap(),
        "172.16.60.0/24".parse().unwrap(),
    ];
    let mut p = Pair::new(
        config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        r,
    );
    p.drive();
    let c = p.i.active_child().unwrap();
    let nets = super::ts::from_nets;
    assert_eq!(
        c.local_ts,
        nets(&[
            "172.16.4.0/24".parse().unwrap(),
            "172.16.60.0/24".parse().unwrap()
        ])
    );
    assert_eq!(c.remote_ts, nets(&["10.0.0.0/16".parse().unwrap()]));
    let rc = p.r().active_child().unwrap();
    assert_eq!(rc.local_ts, c.remote_ts);
    assert_eq!(rc.remote_ts, c.local_ts);

    // Disjoint selectors: TS_UNACCEPTABLE, and the initiator gives up.
    let mut r = config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    r.remote_ts = vec!["192.168.0.0/16".parse().unwrap()];
    let mut i = config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    i.local_ts = vec!["172.16.4.0/24".parse().unwrap()];
    let mut p = Pair::new(i, r);
    p.drive();
    assert!(p
        .events_i
        .iter()
        .any(|e| matches!(e, Event::ChildFailed(e) if e.notify == NotifyType::TsUnacceptable)));
    assert!(p.i.is_closed());
}

#[test]
fn cookie_round() {
    let mut p = Pair::standard();
    p.cookies = Some(CookieJar::new(&mut TestRng::new(5), 0));
    p.drive();
    assert!(p.established());
    assert_eq!(
        p.count_sent(Side::I, crate::wire::ExchangeType::IkeSaInit, false),
        2
    );
    let (_, _, Transmit::Ike { message, .. }) = p
        .sent
        .iter()
        .filter(|(s, _, _)| *s == Side::I)
        .nth(1)
        .unwrap()
    else {
        panic!()
    };
    let m = Message::parse(message).unwrap();
    assert!(matches!(&m.payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::Cookie));
    check_active(&p);
}

// ---------------------------------------------------------------------------
// NAT traversal
// ---------------------------------------------------------------------------

#[test]
fn nat_detected_moves_to_4500_with_keepalives() {
    let mut p = Pair::with_nat(
        config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        Some(("198.51.100.10", 10000)),
    );
    p.drive();
    assert!(p.established());
    let si = p.i.status();
    let sr = p.r().status();
    assert!(si.nat.local_behind_nat && !si.nat.remote_behind_nat && si.nat.encap);
    assert!(!sr.nat.local_behind_nat && sr.nat.remote_behind_nat && sr.nat.encap);
    assert_eq!(si.local.port(), 4500);
    assert_eq!(si.remote.port(), 4500);
    assert_eq!(sr.local.port(), 4500);
    assert_eq!(sr.remote, addr("198.51.100.10:14500"));
    // IKE_AUTH went over 4500 with the marker.
    let (_, _, auth) = &p.sent[2];
    assert_eq!(auth.local().port(), 4500);
    assert_eq!(&auth.datagram()[..4], &[0, 0, 0, 0]);
    let ci = p.i.active_child().unwrap();
    assert!(ci.encap && p.r().active_child().unwrap().encap);
    assert_eq!(
        p.r().active_child().unwrap().remote,
        addr("198.51.100.10:14500")
    );
    check_active(&p);
    // Keepalives every 20 s from the NATed side only.
    let t0 = p.now;
    p.advance(Duration::from_secs(61));
    assert_eq!(p.keepalives_at_r, 3);
    let ka: Vec<_> = p
        .sent
        .iter()
        .filter(|(_, _, t)| matches!(t, Transmit::NatKeepalive { .. }))
        .collect();
    assert!(ka
        .iter()
        .all(|(s, _, t)| *s == Side::I && t.local().port() == 4500 && t.datagram() == [0xff]));
    assert_eq!(ka[0].1 - t0, Duration::from_secs(20));
    // The NAT rebinds: the responder follows the new port on the next
    // authenticated message.
    p.nat = Some(("198.51.100.10".parse().unwrap(), 20000));
    p.i.rekey_child(p.now);
    p.drive();
    assert_eq!(p.r().status().remote, addr("198.51.100.10:24500"));
    assert!(p.events_r.iter().any(|e| matches!(e, Event::PeerAddressChanged { new, .. } if *new == addr("198.51.100.10:24500"))));
    assert_eq!(
        p.r().active_child().unwrap().remote,
        addr("198.51.100.10:24500")
    );
    check_active(&p);
}

/// The initiator is behind the NAT: an authenticated message from another
/// address of the responder does not move it (RFC 7296 2.23: "A host behind
/// a NAT SHOULD NOT do this type of dynamic address update").
#[test]
fn the_side_behind_the_nat_does_not_follow_the_peer() {
    let mut p = Pair::with_nat(
        config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
        Some(("198.51.100.10", 10000)),
    );
    p.drive();
    assert!(p.established());
    assert!(p.i.status().nat.local_behind_nat);
    let before = p.i.status().remote;
    // The responder's next request (a CHILD rekey) arrives from elsewhere.
    let now = p.now;
    let r = p.r.as_mut().unwrap();
    r.rekey_child(now);
    let Some(Transmit::Ike { message, .. }) = r.poll_transmit() else {
        panic!("CREATE_CHILD_SA request")
    };
    let local = SocketAddr::new(p.i_local.ip(), natt::NATT_PORT);
    p.i.handle_datagram(now, local, addr("192.0.2.66:4500"), &message);
    p.collect_events();
    // It was authentic and is answered (where it came from), but the SA
    // stays with the peer's address.
    let answer = p.i.poll_transmit().expect("CREATE_CHILD_SA response");
    assert_eq!(answer.remote(), addr("192.0.2.66:4500"));
    assert_eq!(p.i.status().remote, before);
    assert!(!p
        .events_i
        .iter()
        .any(|e| matches!(e, Event::PeerAddressChanged { .. })));
    assert_eq!(p.i.active_child().unwrap().remote, before);
}

#[test]
fn force_encap_without_nat() {
    let mut i = config("198.51.100.10", "aes128-sha1-modp2048", "aes128-sha1", b"k");
    i.force_encap = true;
    let mut p = Pair::new(
        i,
        config("203.0.113.1", "aes128-sha1-modp2048", "aes128-sha1", b"k"),
    );
    p.drive();
    assert!(p.established());
    assert!(p.r().status().nat.remote_behind_nat);
    assert!(!p.i.status().nat.local_behind_nat);
    assert!(p.i.active_child().unwrap().encap);
    assert!(p.r().active_child().unwrap().encap);
    assert_eq!(p.i.status().local.port(), 4500);
}

#[test]
fn no_nat_stays_on_500() {
    let mut p = Pair::standard();
    p.drive();
    let s = p.i.status();
    assert!(!s.nat.encap && s.local.port() == 500);
    assert!(!p.i.active_child().unwrap().encap);
    p.advance(Duration::from_secs(60));
    assert_eq!(p.keepalives_at_r, 0);
}

// ---------------------------------------------------------------------------
// Loss and retransmission
// ---------------------------------------------------------------------------

#[test]
fn lost_datagrams_retransmitted_with_backoff_and_cached_response() {
    let mut p = Pair::standard();
    // Lose the IKE_SA_INIT request once and the IKE_AUTH response once.
    p.drop_i = 1;
    p.drive();
    assert!(p.r.is_none());
    p.advance(Duration::from_millis(1999));
    assert!(p.r.is_none());
    p.advance(Duration::from_millis(1));
    assert!(p.r.is_some());
    assert!(p.established());
    // Now lose an IKE_AUTH-like response: rekey a CHILD_SA with its
    // response lost; the retransmitted request gets the cached response.
    let before = p.sent.len();
    p.drop_r = 1;
    p.i.rekey_child(p.now);
    p.drive();
    let resp = p.count_sent(Side::R, crate::wire::ExchangeType::CreateChildSa, true);
    assert_eq!(resp, 1);
    p.advance(Duration::from_secs(2));
    let responses: Vec<&Vec<u8>> = p.sent[before..]
        .iter()
        .filter_map(|(s, _, t)| match t {
            Transmit::Ike { message, .. } if *s == Side::R => Some(message),
            _ => None,
        })
        .collect();
    assert!(responses.len() >= 2);
    assert_eq!(
        responses[0], responses[1],
        "the same response, byte for byte"
    );
    // The responder did not create a second CHILD_SA.
    assert_eq!(
        p.events_r
            .iter()
            .filter(|e| matches!(e, Event::ChildRekeyed { .. }))
            .count(),
        1
    );
    check_active(&p);
    assert_eq!(live_children(&p.i).len(), 1);
    assert_eq!(live_children(p.r()).len(), 1);

    // Backoff: the peer falls silent; our DPD request goes out at +10 s,
    // then 2, 2.8, 3.92, ... seconds apart.
    p.mute_r = true;
    let start = p.sent.len();
    p.advance(Duration::from_secs(60));
    let times: Vec<Instant> = p.sent[start..]
        .iter()
        .filter(|(s, _, t)| *s == Side::I && matches!(t, Transmit::Ike { .. }))
        .map(|(_, t, _)| *t)
        .collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!(gaps.len() >= 4, "{gaps:?}");
    for w in gaps.windows(2) {
        assert!((w[1] / w[0] - 1.4).abs() < 0.01, "{gaps:?}");
    }
}

#[test]
fn dpd_declares_silent_peer_dead() {
    let mut p = Pair::standard();
    p.drive();
    // A live peer answers DPD.
    p.advance(Duration::from_secs(11));
    assert!(p.events_i.contains(&Event::DpdAnswered));
    assert_eq!(
        p.count_sent(Side::I, crate::wire::ExchangeType::Informational, false),
        1
    );
    // Then it goes silent: a DPD check after 10 s of silence, and dead 30 s
    // after the last message heard from it (AWS's DPD timeout).
    p.mute_r = true;
    let silent = p.now;
    while !p.i.is_closed() {
        p.advance(Duration::from_millis(100));
        assert!(p.now - silent < Duration::from_secs(60));
    }
    let dead_after = p.now - silent;
    assert!(
        dead_after >= Duration::from_secs(20)
            && dead_after <= Duration::from_secs(30) + Duration::from_millis(100),
        "{dead_after:?}"
    );
    assert_eq!(
        closed_reason(&p.events_i),
        Some(&CloseReason::PeerUnresponsive)
    );
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::ChildDown {
            reason: ChildDownReason::IkeClosed,
            ..
        }
    )));
    assert!(p.i.poll_timeout().is_none());
}

// ---------------------------------------------------------------------------
// Rekeying
// ---------------------------------------------------------------------------

fn rekey_child_from(side: Side) {
    let mut p = Pair::standard();
    p.drive();
    let old = check_active(&p);
    match side {
        Side::I => p.i.rekey_child(p.now),
        Side::R => p.r.as_mut().unwrap().rekey_child(p.now),
    }
    p.drive();
    let new = check_active(&p);
    assert_ne!(old, new);
    for events in [&p.events_i, &p.events_r] {
        let rekeyed = events
            .iter()
            .position(
                |e| matches!(e, Event::ChildRekeyed { old: o, .. } if o.0 == old.0 || o.1 == old.0),
            )
            .expect("rekeyed");
        let down = events
            .iter()
            .position(|e| {
                matches!(
                    e,
                    Event::ChildDown {
                        reason: ChildDownReason::Rekeyed,
                        ..
                    }
                )
            })
            .expect("old down");
        assert!(rekeyed < down, "make-before-break");
    }
    // PFS: the ESP proposal has MODP 2048.
    assert_eq!(
        p.i.active_child().unwrap().suite.dh,
        Some(super::crypto::DhGroup::Modp2048)
    );
    assert_eq!(live_children(&p.i), vec![new]);
    assert_eq!(live_children(p.r()).len(), 1);
}

#[test]
fn child_rekey_from_initiator() {
    rekey_child_from(Side::I);
}

#[test]
fn child_rekey_from_responder() {
    rekey_child_from(Side::R);
}

fn rekey_ike_from(side: Side) {
    let mut p = Pair::standard();
    p.drive();
    let (spi_i, spi_r) = (p.i.spi_i(), p.i.spi_r());
    let child = check_active(&p);
    match side {
        Side::I => p.i.rekey_ike(p.now),
        Side::R => p.r.as_mut().unwrap().rekey_ike(p.now),
    }
    p.drive();
    assert_ne!((p.i.spi_i(), p.i.spi_r()), (spi_i, spi_r));
    assert_eq!((p.i.spi_i(), p.i.spi_r()), (p.r().spi_i(), p.r().spi_r()));
    assert!(p
        .events_i
        .iter()
        .any(|e| matches!(e, Event::IkeRekeyed { .. })));
    assert!(p
        .events_r
        .iter()
        .any(|e| matches!(e, Event::IkeRekeyed { .. })));
    // The new IKE SA's initiator is the rekey's initiator.
    assert_eq!(p.i.status().initiator, side == Side::I);
    // CHILD_SAs moved over unchanged.
    assert_eq!(check_active(&p), child);
    // The old SA is gone on both sides.
    assert!(!p.i.matches(spi_i, spi_r) && !p.r().matches(spi_i, spi_r));
    // The new SA works: CHILD rekey and DPD through it.
    p.r.as_mut().unwrap().rekey_child(p.now);
    p.drive();
    assert_ne!(check_active(&p), child);
    p.advance(Duration::from_secs(11));
    assert!(p.established());
    assert!(p
        .events_i
        .iter()
        .chain(&p.events_r)
        .any(|e| *e == Event::DpdAnswered));
}

#[test]
fn ike_rekey_from_initiator() {
    rekey_ike_from(Side::I);
}

#[test]
fn ike_rekey_from_responder() {
    rekey_ike_from(Side::R);
}

#[test]
fn simultaneous_child_rekey_leaves_one() {
    for seed in 0..4u64 {
        let mut p = Pair::standard();
        // Vary the nonces between runs.
        p.i.rekey_ike(p.now);
        for _ in 0..seed {
            p.drive();
            p.i.rekey_ike(p.now);
        }
        p.drive();
        let old = check_active(&p);
        let now = p.now;
        p.i.rekey_child(now);
        p.r.as_mut().unwrap().rekey_child(now);
        p.drive();
        p.advance(Duration::from_secs(1));
        let ci = live_children(&p.i);
        let cr = live_children(p.r());
        assert_eq!(ci.len(), 1, "seed {seed}: {ci:?}");
        assert_eq!(cr.len(), 1, "seed {seed}: {cr:?}");
        assert_eq!(ci[0], (cr[0].1, cr[0].0));
        assert_ne!(ci[0], old);
        check_active(&p);
        let redundant = p
            .events_i
            .iter()
            .chain(&p.events_r)
            .filter(|e| {
                matches!(
                    e,
                    Event::ChildDown {
                        reason: ChildDownReason::Redundant,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(
            redundant, 1,
            "seed {seed}: the creator deletes the redundant SA"
        );
    }
}

#[test]
fn simultaneous_ike_rekey_leaves_one() {
    for round in 0..4 {
        let mut p = Pair::standard();
        for _ in 0..round {
            p.drive();
            if let Some(r) = p.r.as_mut() {
                r.rekey_child(p.now);
            }
        }
        p.drive();
        let child = check_active(&p);
        let old = (p.i.spi_i(), p.i.spi_r());
        let now = p.now;
        p.i.rekey_ike(now);
        p.r.as_mut().unwrap().rekey_ike(now);
        p.drive();
        p.advance(Duration::from_secs(1));
        let new = (p.i.spi_i(), p.i.spi_r());
        assert_ne!(new, old);
        assert_eq!(new, (p.r().spi_i(), p.r().spi_r()), "round {round}");
        assert!(!p.i.matches(old.0, old.1) && !p.r().matches(old.0, old.1));
        assert_eq!(p.i.cores.len(), 1, "round {round}");
        assert_eq!(p.r().cores.len(), 1, "round {round}");
        assert_eq!(check_active(&p), child);
        // The survivor carries on.
        p.i.rekey_child(p.now);
        p.drive();
        check_active(&p);
        p.advance(Duration::from_secs(11));
        assert!(p.established());
    }
}

#[test]
fn lifetimes_trigger_rekeys_with_jitter() {
    let mk = |local: &str| {
        let mut c = config(local, "aes128-sha1-modp2048", "aes128-sha1-modp2048", b"k");
        c.child_lifetime = Duration::from_secs(60);
        c.ike_lifetime = Duration::from_secs(200);
        c.rekey_margin = Duration::from_secs(10);
        c.rekey_fuzz_percent = 100;
        c
    };
    let mut p = Pair::new(mk("198.51.100.10"), mk("203.0.113.1"));
    p.drive();
    let t0 = p.now;
    let mut last = check_active(&p);
    let mut child_rekeys = Vec::new();
    let mut seen = 0;
    let mut ike_rekeys = 0;
    while p.now < t0 + Duration::from_secs(600) {
        p.advance(Duration::from_secs(1));
        assert!(p.established(), "at {:?}", p.now - t0);
        let cur = check_active(&p);
        if cur != last {
            child_rekeys.push(p.now);
            last = cur;
        }
        let n = p
            .events_i
            .iter()
            .filter(|e| matches!(e, Event::IkeRekeyed { .. }))
            .count();
        if n > seen {
            ike_rekeys += n - seen;
            seen = n;
        }
        assert!(live_children(&p.i).len() <= 2);
    }
    // The first CHILD rekey comes between lifetime - margin - jitter and
    // lifetime - margin: 40 s to 50 s.
    let first = child_rekeys[0] - t0;
    assert!(
        first >= Duration::from_secs(40) && first <= Duration::from_secs(51),
        "{first:?}"
    );
    // Every CHILD_SA was rekeyed before its hard lifetime: no expiry.
    assert!(!p.events_i.iter().chain(&p.events_r).any(|e| matches!(
        e,
        Event::ChildDown {
            reason: ChildDownReason::Expired,
            ..
        }
    )));
    assert!(child_rekeys.len() >= 10, "{}", child_rekeys.len());
    assert!(ike_rekeys >= 3, "{ike_rekeys}");
    assert!(p
        .events_i
        .iter()
        .chain(&p.events_r)
        .all(|e| !matches!(e, Event::Closed { .. })));
}

// ---------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------

#[test]
fn delete_from_each_side() {
    for side in [Side::I, Side::R] {
        let mut p = Pair::standard();
        p.drive();
        match side {
            Side::I => p.i.delete(p.now),
            Side::R => p.r.as_mut().unwrap().delete(p.now),
        }
        p.drive();
        let (us, them) = match side {
            Side::I => (&p.events_i, &p.events_r),
            Side::R => (&p.events_r, &p.events_i),
        };
        assert_eq!(closed_reason(us), Some(&CloseReason::DeletedLocally));
        assert_eq!(closed_reason(them), Some(&CloseReason::DeletedByPeer));
        for ev in [us, them] {
            assert!(ev.iter().any(|e| matches!(
                e,
                Event::ChildDown {
                    reason: ChildDownReason::IkeClosed,
                    ..
                }
            )));
        }
        assert!(p.i.is_closed() && p.r().is_closed());
    }
}

#[test]
fn delete_child_both_directions() {
    let mut p = Pair::standard();
    p.drive();
    let (spi_in, _) = check_active(&p);
    // Expire the CHILD_SA on the initiator's side only: it deletes it, the
    // responder answers with its own SPI (RFC 7296 1.4.1).
    p.i.tasks.push_back(super::sa::Task::DeleteChild(
        vec![spi_in],
        ChildDownReason::DeletedLocally,
    ));
    p.i.handle_timeout(p.now);
    p.drive();
    assert!(live_children(&p.i).is_empty());
    assert!(live_children(p.r()).is_empty());
    assert!(p.events_r.iter().any(|e| matches!(
        e,
        Event::ChildDown {
            reason: ChildDownReason::DeletedByPeer,
            ..
        }
    )));
    assert!(p.events_i.iter().any(|e| matches!(
        e,
        Event::ChildDown {
            reason: ChildDownReason::DeletedLocally,
            ..
        }
    )));
    assert!(p.established());
}

// ---------------------------------------------------------------------------
// Interop: a real strongSwan request
// ---------------------------------------------------------------------------

#[test]
fn responds_to_strongswan_ike_sa_init() {
    let request = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ike/strongswan-5.9.8/01-ike_sa_init-request.udp500.bin"
    ));
    let mut cfg = config(
        "192.0.2.2",
        "aes128-sha1-modp2048,aes256gcm16-prfsha384-ecp384",
        "aes128-sha1-modp2048",
        b"capture-only-psk-0123456789",
    );
    cfg.remote_id = Some(Identity::Ipv4("192.0.2.1".parse().unwrap()));
    let now = Instant::now();
    let mut sa = IkeSa::accept(
        Arc::new(cfg),
        addr("192.0.2.2:500"),
        addr("192.0.2.1:500"),
        request,
        now,
        TestRng::new(3),
    )
    .unwrap();
    let t = sa.poll_transmit().unwrap();
    assert_eq!(t.remote(), addr("192.0.2.1:500"));
    let Transmit::Ike { message, .. } = t else {
        panic!()
    };
    let m = Message::parse(&message).unwrap();
    let req = Message::parse(request).unwrap();
    assert_eq!(m.header.spi_i, req.header.spi_i);
    assert_ne!(m.header.spi_r, 0);
    assert!(m.header.flags.response && !m.header.flags.initiator);
    let sa_p = m
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(sa_p.proposals.len(), 1);
    let chosen = super::message::from_wire(&sa_p.proposals[0], Protocol::Ike).unwrap();
    assert_eq!(chosen.to_string(), "aes128-sha1-modp2048");
    let ke = m
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
        .unwrap();
    assert_eq!(u16::from(ke.group), 14);
    assert_eq!(ke.data.len(), 256);
    assert!(m.notify(NotifyType::NatDetectionSourceIp).is_some());
    assert!(m.notify(NotifyType::NatDetectionDestinationIp).is_some());
    // strongSwan ran with encap = yes: its faked source hash reads as a NAT.
    assert!(sa.status().nat.remote_behind_nat);
    assert_eq!(sa.status().state, IkeState::Authenticating);
    // A retransmitted request gets the same response.
    sa.handle_datagram(now, addr("192.0.2.2:500"), addr("192.0.2.1:500"), request);
    let Transmit::Ike { message: again, .. } = sa.poll_transmit().unwrap() else {
        panic!()
    };
    assert_eq!(again, message);
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

fn snapshot(sa: &IkeSa) -> super::sa::IkeSaStatus {
    sa.status()
}

#[test]
fn hostile_input_never_panics_nor_changes_state() {
    let mut p = Pair::standard();
    p.drive();
    p.i.rekey_child(p.now);
    p.drive();
    p.r.as_mut().unwrap().rekey_ike(p.now);
    p.drive();
    let si = snapshot(&p.i);
    let sr = snapshot(p.r());
    let ev_i = p.events_i.len();
    let ev_r = p.events_r.len();
    let captured: Vec<Vec<u8>> = p
        .sent
        .iter()
        .filter_map(|(_, _, t)| match t {
            Transmit::Ike { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    let mut rng = TestRng::new(77);
    let now = p.now;
    let (il, rl) = (p.i_local, p.r_local);
    let feed = |p: &mut Pair, d: &[u8]| {
        p.i.handle_datagram(now, il, rl, d);
        p.r.as_mut().unwrap().handle_datagram(now, rl, il, d);
        let _ = natt::classify(d);
    };
    // Replays of everything seen, truncations and bit flips of it.
    for m in &captured {
        feed(&mut p, m);
        for cut in [0, 1, 27, 28, 29, m.len() / 2, m.len().saturating_sub(1)] {
            feed(&mut p, &m[..cut.min(m.len())]);
        }
        for _ in 0..20 {
            let mut x = m.clone();
            let i = (rng.next_u32() as usize) % x.len();
            x[i] ^= 1 << (rng.next_u32() % 8);
            feed(&mut p, &x);
        }
    }
    // Random datagrams, some with the current SPIs in front.
    for n in 0..3000usize {
        let len = (rng.next_u32() % 600) as usize;
        let mut d = vec![0u8; len];
        rng.fill_bytes(&mut d);
        if n % 2 == 0 && len >= 28 {
            d[..8].copy_from_slice(&si.spi_i.to_be_bytes());
            d[8..16].copy_from_slice(&si.spi_r.to_be_bytes());
            d[17] = 0x20;
            d[18] = 34 + (n % 4) as u8;
            d[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        }
        feed(&mut p, &d);
    }
    // Only retransmitted responses may have gone out; nothing changed.
    while p.i.poll_transmit().is_some() {}
    while p.r.as_mut().unwrap().poll_transmit().is_some() {}
    p.collect_events();
    assert_eq!(snapshot(&p.i), si);
    assert_eq!(snapshot(p.r()), sr);
    assert_eq!(p.events_i.len(), ev_i, "{:?}", &p.events_i[ev_i..]);
    assert_eq!(p.events_r.len(), ev_r, "{:?}", &p.events_r[ev_r..]);
    // And the tunnel still works.
    p.i.rekey_child(p.now);
    p.drive();
    check_active(&p);
}

// ---------------------------------------------------------------------------
// Authenticated requests that do not parse (RFC 7296 2.5, 2.21.3)
// ---------------------------------------------------------------------------

/// Seals `payloads` as the initiator's next INFORMATIONAL request (the
/// initiator counts it as sent), returning the message and its ID.
fn sealed_request_from_i(p: &mut Pair, payloads: &[Payload]) -> (Vec<u8>, u32) {
    let idx = p.i.current_index();
    let core = &mut p.i.cores[idx];
    let msg_id = core.next_msg_id;
    let header = core.header(ExchangeType::Informational, false, msg_id);
    let keys = core.keys.as_mut().unwrap();
    let bytes =
        super::message::seal(&mut keys.out, &mut TestRng::new(77), header, payloads).unwrap();
    core.next_msg_id = msg_id.wrapping_add(1);
    (bytes, msg_id)
}

/// Hands `request` to the responder and opens its answer with the
/// initiator's keys.
fn responder_answer(p: &mut Pair, request: &[u8]) -> Vec<Vec<Payload>> {
    let (now, local, from) = (p.now, p.r_local, p.i_local);
    let r = p.r.as_mut().unwrap();
    r.handle_datagram(now, local, from, request);
    let mut answers = Vec::new();
    while let Some(t) = r.poll_transmit() {
        let Transmit::Ike { message, .. } = t else {
            continue;
        };
        let m = Message::parse(&message).unwrap();
        assert!(m.header.flags.response);
        let keys = p.i.current().keys.as_ref().unwrap();
        answers.push(super::message::open(&keys.inn, &message).unwrap());
    }
    answers
}

fn notified(answer: &[Payload]) -> Vec<(NotifyType, Vec<u8>)> {
    answer
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some((n.notify_type, n.data.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn authenticated_request_with_an_unknown_critical_payload_is_answered() {
    let mut p = Pair::standard();
    p.drive();
    assert!(p.established());
    let critical = Payload::Raw(RawPayload {
        payload_type: PayloadType::from(99),
        critical: true,
        body: vec![1, 2, 3],
    });
    let (request, _) = sealed_request_from_i(&mut p, &[critical]);
    let answers = responder_answer(&mut p, &request);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        notified(&answers[0]),
        vec![(NotifyType::UnsupportedCriticalPayload, vec![99])]
    );
    // A retransmission gets the same answer, not a second processing.
    let again = responder_answer(&mut p, &request);
    assert_eq!(notified(&again[0]), notified(&answers[0]));
    // The message ID was consumed: the initiator's next request (DPD)
    // is answered and the SA lives on.
    assert!(p.r().status().state == IkeState::Established);
    p.advance(Duration::from_secs(11));
    assert!(p.events_i.contains(&Event::DpdAnswered));
    assert!(p.established());
    check_active(&p);
}

#[test]
fn authenticated_request_that_does_not_parse_gets_invalid_syntax() {
    let mut p = Pair::standard();
    p.drive();
    // A Notify payload of one octet: too short for its fixed fields.
    let broken = Payload::Raw(RawPayload {
        payload_type: PayloadType::Notify,
        critical: false,
        body: vec![0],
    });
    let (request, _) = sealed_request_from_i(&mut p, &[broken]);
    let answers = responder_answer(&mut p, &request);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        notified(&answers[0]),
        vec![(NotifyType::InvalidSyntax, Vec::new())]
    );
    p.advance(Duration::from_secs(11));
    assert!(p.events_i.contains(&Event::DpdAnswered));
    assert!(p.established());
}

mod unparsable_requests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever an authenticated request holds, the responder answers
        /// it exactly once, consumes its message ID and stays up.
        #[test]
        fn any_authenticated_request_is_answered_once(
            payload_type in any::<u8>(),
            critical in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut p = Pair::new(
                config("198.51.100.10", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", b"k"),
                config("203.0.113.1", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", b"k"),
            );
            p.drive();
            prop_assert!(p.established());
            let raw = Payload::Raw(RawPayload {
                payload_type: PayloadType::from(payload_type),
                critical,
                body,
            });
            let mut emitted = Vec::new();
            if crate::wire::emit_payload_chain(std::slice::from_ref(&raw), &mut emitted).is_err() {
                return Ok(());
            }
            let (request, msg_id) = sealed_request_from_i(&mut p, &[raw]);
            let answers = responder_answer(&mut p, &request);
            prop_assert_eq!(answers.len(), 1);
            let idx = p.r().current_index();
            prop_assert_eq!(p.r().cores[idx].peer_next_id, msg_id + 1);
            // A Delete inside closes the SA; anything else leaves it up.
            if p.r().status().state == IkeState::Established {
                p.advance(Duration::from_secs(11));
                prop_assert!(p.events_i.contains(&Event::DpdAnswered));
            }
        }
    }
}
