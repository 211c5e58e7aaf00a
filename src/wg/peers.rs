//! The table of WireGuard peers, each a boringtun `Tunn`, and every duty the
//! embedder of `Tunn` owns (see STYLE.md "what an embedder owns"):
//!
//! 1. `update_timers` for every peer on each tick (100-250 ms) ([`PeerTable::tick`]);
//! 2. one shared `RateLimiter`, `reset_count` every second;
//! 3. a unique 24-bit index per peer: responses and data are routed by
//!    `receiver_idx >> 8`, initiations by the initiator's static key
//!    (`parse_handshake_anon`);
//! 4. allowed IPs in both directions: outbound the destination selects the
//!    peer, inbound the source must belong to the peer that decrypted it
//!    (WireGuard whitepaper, section 2, "cryptokey routing");
//! 5. queued packets flushed after a handshake (`decapsulate(None, &[])`
//!    until `Done`);
//! 6. the endpoint follows authenticated datagrams only (roaming, whitepaper
//!    section 2.1): data that decrypted (an IP packet or a keepalive), an
//!    initiation that passed authentication and got our response, a response
//!    that completed our handshake. A cookie reply (message type 3), whether
//!    boringtun's rate limiter wrote it for any mac1-valid message under load
//!    or a peer sent it, proves nothing: mac1 needs only our public key. No
//!    roaming and no flushing of queued packets towards such a source
//!    ([`Proof`]);
//! 7. buffers of at least `len + 32` and 148 bytes.
//!
//! A site peer (one with a configured endpoint) is also the table's to
//! bring up and keep up ([`PeerTable::tick`]): `Tunn` retransmits an
//! initiation and rekeys a session on its own, but the first initiation and
//! a new one after the session expired (REJECT_AFTER_TIME, a handshake given
//! up after REKEY_ATTEMPT_TIME) or after [`silence_limit`] without an
//! authenticated datagram (the remote end restarted and lost the session)
//! are started here; so are persistent keepalives, on the caller's clock.
//! A laptop (no endpoint configured) is only answered.
//!
//! Before any X25519 work a handshake message must pass boringtun's MAC and
//! load check (mac1, and mac2 under load, else a cookie reply) and the
//! per-source budget of [`HandshakeLimiter`] (whitepaper section 5.3).
//!
//! Scale (10,000 laptops): a laptop's `Tunn` (about 12 KB, and an X25519
//! static-static computation in `Tunn::new`) is made only when the laptop
//! first sends a handshake initiation, or when a packet is routed to a peer
//! with an endpoint; a peer the gateway keeps alive itself (`keepalive` > 0)
//! gets it at once. Until then the peer costs its settings and map entries,
//! and the timers only run for peers with a `Tunn`. As the kernel does, a
//! packet for a peer without a known endpoint is dropped
//! (`tx_no_endpoint`), not queued. Lookups are hash maps: the receiver index
//! and the static key in O(1), allowed IPs in one probe per prefix length
//! present ([`AllowedIps`]); a reload touches only the peers that differ.

use crate::config::Key;
use crate::output::{Io, UdpPort};
use crate::wg::ratelimit::{HandshakeLimiter, Verdict};
use crate::wg::AllowedIps;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Handshake messages per second before the gateway demands cookies
/// (boringtun's device uses the same order of magnitude). A message that
/// reaches a `Tunn` is counted twice (once in `admit_handshake`, once inside
/// `Tunn`), so this is about 100 initiations a second.
pub(crate) const HANDSHAKE_RATE_LIMIT: u64 = 200;

/// Up to this many peers added or removed by one [`PeerTable::apply`] are
/// logged one by one at info; more (a start with 10,000 laptops) are
/// logged one by one at debug, with one info line for the count.
const LOG_EACH_UP_TO: usize = 32;

/// Smallest buffer `Tunn` accepts for handshake messages.
pub const MIN_BUF: usize = 148;

/// What the gateway needs to run one peer; built from the config and the
/// key files it names.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// The peer's name from the config.
    pub name: String,
    /// The peer's static public key (its identity).
    pub public_key: Key,
    /// The preshared key, if any.
    pub psk: Option<Key>,
    /// Prefixes the peer may send from and that are routed to it.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive in seconds, 0 = off.
    pub keepalive: u16,
    /// A site peer's configured endpoint: the gateway initiates the
    /// handshake to it and keeps the session up. `None` for a laptop, which
    /// the gateway only answers.
    pub endpoint: Option<SocketAddr>,
}

impl std::fmt::Debug for PeerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSettings")
            .field("name", &self.name)
            .field("public_key", &self.public_key.to_string())
            .field("psk", &self.psk.as_ref().map(|_| "(hidden)"))
            .field("allowed_ips", &self.allowed_ips)
            .field("keepalive", &self.keepalive)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Per-peer counters beyond `Tunn`'s own.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerCounters {
    /// Decrypted packets whose source was outside the peer's allowed IPs.
    pub rx_not_allowed: u64,
    /// Datagrams addressed to this peer's session that failed to decrypt or
    /// replayed (wrong key, bad tag, duplicate counter...).
    pub rx_invalid: u64,
    /// Outbound packets dropped because the peer has no known endpoint yet.
    pub tx_no_endpoint: u64,
    /// Number of completed handshakes observed.
    pub handshakes: u64,
    /// Bytes of authenticated datagrams received from the peer (handshakes,
    /// keepalives and data with WireGuard's overhead), as `wg show` counts.
    pub rx_wire_bytes: u64,
    /// Bytes of datagrams sent to the peer, likewise.
    pub tx_wire_bytes: u64,
}

/// Gateway-wide WireGuard counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct WgCounters {
    /// Datagrams that did not parse as WireGuard messages.
    pub rx_malformed: u64,
    /// Datagrams with a valid shape but for no known peer or session.
    pub rx_unknown_peer: u64,
    /// Handshake initiations refused (bad MAC, under load, unknown key).
    pub rx_handshake_refused: u64,
    /// Cookie replies sent because the gateway was under load.
    pub cookies_sent: u64,
    /// Handshake messages dropped because their source (an IPv4 address or
    /// an IPv6 /64) exceeded its budget of 20 a second with a burst of 5.
    pub rx_handshake_limited: u64,
    /// Handshake messages that passed the MAC, load and per-source checks
    /// and were handed to the noise layer (each costs X25519 work).
    pub rx_handshake_processed: u64,
}

/// One peer's state for `wgctl status` and the WireGuard UAPI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Peer name.
    pub name: String,
    /// Base64 public key.
    pub public_key: String,
    /// Whether a preshared key is in use (never the key itself).
    pub has_psk: bool,
    /// Current endpoint (where the last authenticated datagram came from,
    /// else a site peer's configured endpoint).
    pub endpoint: Option<SocketAddr>,
    /// A site peer's configured endpoint (as resolved when the file was
    /// loaded); `None` for a laptop.
    #[serde(default)]
    pub configured_endpoint: Option<SocketAddr>,
    /// Whether the peer is a site peer: the gateway initiates its handshakes
    /// and keeps its session up.
    #[serde(default)]
    pub site: bool,
    /// Allowed IPs.
    pub allowed_ips: Vec<IpNet>,
    /// The gateway's own persistent keepalive towards the peer, seconds
    /// (0 = off: the laptop keeps the path open with its PersistentKeepalive).
    pub gateway_keepalive: u16,
    /// Unix time of the last completed handshake, seconds and nanoseconds.
    pub last_handshake_unix: Option<(u64, u32)>,
    /// Seconds since the last completed handshake.
    pub last_handshake_age_secs: Option<f64>,
    /// Whether a session is currently established.
    pub session: bool,
    /// Bytes received: authenticated datagrams including WireGuard's
    /// overhead and handshakes (what kernel WireGuard and `wg show` count).
    pub rx_bytes: u64,
    /// Bytes sent, likewise.
    pub tx_bytes: u64,
    /// Decrypted payload bytes received (inner IP packets).
    pub rx_payload_bytes: u64,
    /// Payload bytes sent before encryption.
    pub tx_payload_bytes: u64,
    /// Estimated packet loss (0..1) reported by `Tunn`.
    pub loss: f32,
    /// Round-trip time of the last handshake, in milliseconds.
    pub rtt_ms: Option<u32>,
    /// Further counters.
    pub counters: PeerCounters,
}

struct Peer {
    settings: PeerSettings,
    index: u32,
    /// The noise session, made on first use (see the module docs); boxed so
    /// that a peer without one stays small.
    tunn: Option<Box<Tunn>>,
    endpoint: Option<SocketAddr>,
    counters: PeerCounters,
    /// `time_since_last_handshake` seen at the previous tick, to notice new
    /// handshakes and pin their wall-clock time once (so that it does not
    /// jitter between queries).
    prev_since: Option<Duration>,
    last_handshake_at: Option<SystemTime>,
    /// When an authenticated datagram last came from the peer, or when the
    /// table first ticked this session (the start of the silence).
    heard: Option<Instant>,
    /// When the table last sent a persistent keepalive.
    last_keepalive: Option<Instant>,
}

/// The peers of one WireGuard interface.
pub struct PeerTable {
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    limiter: HandshakeLimiter,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<[u8; 32], u32>,
    allowed: AllowedIps<u32>,
    next_index: u32,
    last_rate_reset: Option<Instant>,
    counters: WgCounters,
    cookie_buf: Vec<u8>,
}

/// What [`PeerTable::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Peers added.
    pub added: Vec<String>,
    /// Peers removed (their sessions are cut).
    pub removed: Vec<String>,
    /// Peers whose session had to be restarted (PSK or keepalive changed).
    pub restarted: Vec<String>,
    /// Peers updated in place (name or allowed IPs), session kept.
    pub updated: Vec<String>,
    /// Peers left untouched.
    pub unchanged: usize,
}

fn wg_err(e: &WireGuardError) -> String {
    format!("{e:?}")
}

impl PeerTable {
    /// An empty table for the interface with `private_key`.
    pub fn new(private_key: &Key) -> PeerTable {
        let private = StaticSecret::from(private_key.0);
        let public = PublicKey::from(&private);
        PeerTable {
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            limiter: HandshakeLimiter::new(),
            private,
            public,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            allowed: AllowedIps::new(),
            next_index: 1,
            last_rate_reset: None,
            counters: WgCounters::default(),
            cookie_buf: vec![0u8; 64],
        }
    }

    /// The interface's public key.
    pub fn public_key(&self) -> Key {
        Key(*self.public.as_bytes())
    }

    /// Gateway-wide counters.
    pub fn counters(&self) -> WgCounters {
        self.counters
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table has no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn alloc_index(&mut self) -> u32 {
        // 24-bit indices, never 0, never one in use.
        loop {
            let i = self.next_index & 0x00ff_ffff;
            self.next_index = self.next_index.wrapping_add(1);
            if i != 0 && !self.peers.contains_key(&i) {
                return i;
            }
        }
    }

    /// The `Tunn` a peer starts with: made at once only when the gateway
    /// keeps the session up itself (a site peer, or persistent keepalives:
    /// its timers must run from the start); a laptop's on first use.
    fn initial_tunn(&self, s: &PeerSettings, index: u32) -> Option<Box<Tunn>> {
        (s.keepalive > 0 || s.endpoint.is_some())
            .then(|| new_tunn(&self.private, &self.rate_limiter, s, index))
    }

    fn insert(&mut self, s: PeerSettings) {
        let index = self.alloc_index();
        let tunn = self.initial_tunn(&s, index);
        for net in &s.allowed_ips {
            self.allowed.insert(*net, index);
        }
        self.by_key.insert(s.public_key.0, index);
        self.peers.insert(
            index,
            Peer {
                index,
                tunn,
                endpoint: s.endpoint,
                settings: s,
                counters: PeerCounters::default(),
                prev_since: None,
                last_handshake_at: None,
                heard: None,
                last_keepalive: None,
            },
        );
    }

    /// Removes `index`'s prefixes from the allowed IPs, those still mapped
    /// to it (another peer may have taken one over in the same reload):
    /// one removal per prefix, not a pass over the whole table.
    fn unroute(&mut self, index: u32, prefixes: &[IpNet]) {
        for net in prefixes {
            self.allowed.remove_if(*net, |i| *i == index);
        }
    }

    fn remove_index(&mut self, index: u32) -> Option<Peer> {
        let p = self.peers.remove(&index)?;
        self.by_key.remove(&p.settings.public_key.0);
        self.unroute(index, &p.settings.allowed_ips);
        Some(p)
    }

    /// Makes the table match `wanted`, touching only what differs: a peer is
    /// identified by its public key; unchanged peers keep their session,
    /// endpoint and counters; a changed PSK, keepalive or configured
    /// endpoint restarts the session (a site peer's is initiated again at
    /// the next tick); removed peers are cut at once.
    pub fn apply(&mut self, wanted: Vec<PeerSettings>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let wanted_keys: std::collections::HashSet<[u8; 32]> =
            wanted.iter().map(|p| p.public_key.0).collect();
        let gone: Vec<u32> = self
            .peers
            .values()
            .filter(|p| !wanted_keys.contains(&p.settings.public_key.0))
            .map(|p| p.index)
            .collect();
        let each = gone.len() <= LOG_EACH_UP_TO;
        for index in gone {
            if let Some(p) = self.remove_index(index) {
                if each {
                    tracing::info!(peer = %p.settings.name, "peer removed, session cut");
                } else {
                    tracing::debug!(peer = %p.settings.name, "peer removed, session cut");
                }
                report.removed.push(p.settings.name);
            }
        }
        let adding = wanted
            .iter()
            .filter(|s| !self.by_key.contains_key(&s.public_key.0))
            .count();
        let each = adding <= LOG_EACH_UP_TO;
        for s in wanted {
            let Some(&index) = self.by_key.get(&s.public_key.0) else {
                if each {
                    tracing::info!(peer = %s.name, allowed_ips = ?s.allowed_ips, "peer added");
                } else {
                    tracing::debug!(peer = %s.name, allowed_ips = ?s.allowed_ips, "peer added");
                }
                report.added.push(s.name.clone());
                self.insert(s);
                continue;
            };
            let cur = &self.peers[&index].settings;
            if *cur == s {
                report.unchanged += 1;
                continue;
            }
            let old_prefixes = cur.allowed_ips.clone();
            if cur.psk != s.psk || cur.keepalive != s.keepalive || cur.endpoint != s.endpoint {
                let tunn = self.initial_tunn(&s, index);
                let p = self.peers.get_mut(&index).expect("indexed peer");
                p.tunn = tunn;
                p.prev_since = None;
                p.heard = None;
                p.last_keepalive = None;
                if s.endpoint.is_some() {
                    p.endpoint = s.endpoint;
                }
                tracing::info!(peer = %s.name, "peer's PSK, keepalive or endpoint changed, session restarted");
                report.restarted.push(s.name.clone());
            } else {
                tracing::info!(peer = %s.name, "peer updated in place");
                report.updated.push(s.name.clone());
            }
            self.unroute(index, &old_prefixes);
            for net in &s.allowed_ips {
                self.allowed.insert(*net, index);
            }
            self.peers.get_mut(&index).expect("indexed peer").settings = s;
        }
        if report.removed.len() > LOG_EACH_UP_TO || report.added.len() > LOG_EACH_UP_TO {
            tracing::info!(
                added = report.added.len(),
                removed = report.removed.len(),
                "peers added and removed (one by one at debug level)"
            );
        }
        report
    }

    /// Handles one UDP datagram from `from` at `now`. Handshake replies and
    /// flushed packets go out through `io`; a decrypted IP packet is left at
    /// the start of `buf` and its length returned, once its source has been
    /// checked against the sender's allowed IPs.
    ///
    /// `buf` must hold at least `data.len() + 32` and [`MIN_BUF`] bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        buf: &mut [u8],
        io: &mut impl Io,
    ) -> Option<usize> {
        let packet = match Tunn::parse_incoming_packet(data) {
            Ok(p) => p,
            Err(_) => {
                self.counters.rx_malformed += 1;
                return None;
            }
        };
        let kind = Kind::of(&packet);
        let index = match packet {
            Packet::HandshakeInit(ref init) => {
                if !self.admit_handshake(now, from, data, io) {
                    return None;
                }
                // The DH that tells who is calling; an unknown key is
                // dropped silently.
                match parse_handshake_anon(&self.private, &self.public, init) {
                    Ok(half) => match self.by_key.get(&half.peer_static_public) {
                        Some(i) => *i,
                        None => {
                            self.counters.rx_handshake_refused += 1;
                            tracing::debug!(%from, "handshake from an unknown public key");
                            return None;
                        }
                    },
                    Err(_) => {
                        self.counters.rx_handshake_refused += 1;
                        return None;
                    }
                }
            }
            Packet::HandshakeResponse(ref r) => {
                if !self.admit_handshake(now, from, data, io) {
                    return None;
                }
                r.receiver_idx >> 8
            }
            Packet::PacketCookieReply(ref c) => c.receiver_idx >> 8,
            Packet::PacketData(ref d) => d.receiver_idx >> 8,
        };
        let Some(peer) = self.peers.get_mut(&index) else {
            self.counters.rx_unknown_peer += 1;
            return None;
        };
        let tunn = match (&mut peer.tunn, kind) {
            (Some(t), _) => t,
            (t @ None, Kind::Initiation) => t.insert(new_tunn(
                &self.private,
                &self.rate_limiter,
                &peer.settings,
                index,
            )),
            (None, _) => {
                // No session was ever made with this peer: nothing but an
                // initiation can be for it (a fresh `Tunn` would refuse it
                // the same way, after allocating one).
                peer.counters.rx_invalid += 1;
                tracing::debug!(peer = %peer.settings.name, %from, ?kind, "datagram for a peer without a session, dropped");
                return None;
            }
        };
        let result = tunn.decapsulate(Some(from.ip()), data, buf);
        let proof = Proof::of(kind, &result);
        if proof == Proof::Authenticated {
            peer.counters.rx_wire_bytes += data.len() as u64;
            peer.heard = Some(now);
            peer.roam(from);
        }
        match result {
            TunnResult::Done => None,
            TunnResult::Err(e) => {
                peer.counters.rx_invalid += 1;
                tracing::debug!(peer = %peer.settings.name, %from, error = %wg_err(&e), "datagram refused");
                None
            }
            TunnResult::WriteToNetwork(reply) if proof == Proof::Unauthenticated => {
                // A cookie reply from the noise layer's own load check: it
                // goes to the source (that is its purpose), which proved
                // nothing: no roaming, no flush. Nothing else is ever sent
                // to an unauthenticated source.
                if Kind::of_wire(reply) == Some(Kind::CookieReply) {
                    self.counters.cookies_sent += 1;
                    io.send_udp(UdpPort::WireGuard, from, reply);
                } else {
                    tracing::debug!(peer = %peer.settings.name, %from, "reply to an unauthenticated datagram withheld");
                }
                None
            }
            TunnResult::WriteToNetwork(reply) => {
                peer.counters.tx_wire_bytes += reply.len() as u64;
                io.send_udp(UdpPort::WireGuard, from, reply);
                peer.flush_queue(from, buf, io);
                None
            }
            TunnResult::WriteToTunnelV4(p, src) => {
                let len = p.len();
                if self.allowed.lookup(IpAddr::V4(src)) == Some(&index) {
                    Some(len)
                } else {
                    peer.counters.rx_not_allowed += 1;
                    tracing::debug!(peer = %peer.settings.name, %src, "source outside the peer's allowed IPs, dropped");
                    None
                }
            }
            TunnResult::WriteToTunnelV6(p, src) => {
                let len = p.len();
                if self.allowed.lookup(IpAddr::V6(src)) == Some(&index) {
                    Some(len)
                } else {
                    peer.counters.rx_not_allowed += 1;
                    None
                }
            }
        }
    }

    /// The checks a handshake message (initiation or response) passes
    /// before any X25519 work: mac1, under load mac2 or else a cookie reply
    /// to the source (boringtun's `RateLimiter`), then the source's budget
    /// (whitepaper 5.3; [`HandshakeLimiter`]). Returns whether to go on.
    fn admit_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        io: &mut impl Io,
    ) -> bool {
        match self
            .rate_limiter
            .verify_packet(Some(from.ip()), data, &mut self.cookie_buf)
        {
            Ok(_) => {}
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.counters.cookies_sent += 1;
                io.send_udp(UdpPort::WireGuard, from, cookie);
                return false;
            }
            Err(_) => {
                self.counters.rx_handshake_refused += 1;
                return false;
            }
        }
        match self.limiter.allow(now, from.ip()) {
            Verdict::Allow => {
                self.counters.rx_handshake_processed += 1;
                true
            }
            Verdict::Limited | Verdict::TableFull => {
                self.counters.rx_handshake_limited += 1;
                tracing::trace!(%from, "handshake over the source's budget, dropped");
                false
            }
        }
    }

    /// Whether `dst` is routed to one of the peers.
    pub fn routes(&self, dst: IpAddr) -> bool {
        self.allowed.lookup(dst).is_some()
    }

    /// Encrypts an IP packet for the peer owning its destination and sends
    /// it (or a handshake initiation, while the packet waits in `Tunn`'s
    /// queue). Returns false when no peer owns the destination.
    pub fn handle_packet(&mut self, packet: &[u8], buf: &mut [u8], io: &mut impl Io) -> bool {
        let Some(dst) = Tunn::dst_address(packet) else {
            return false;
        };
        let Some(&index) = self.allowed.lookup(dst) else {
            // Not a laptop's: the caller routes it elsewhere (and counts a
            // packet nothing claims).
            return false;
        };
        let peer = self
            .peers
            .get_mut(&index)
            .expect("allowed IPs point at live peers");
        let Some(ep) = peer.endpoint else {
            // Never heard from (the endpoint follows authenticated datagrams
            // only): nowhere to send a handshake; dropped, as the kernel does.
            peer.counters.tx_no_endpoint += 1;
            return true;
        };
        let tunn = peer.tunn.get_or_insert_with(|| {
            new_tunn(&self.private, &self.rate_limiter, &peer.settings, index)
        });
        match tunn.encapsulate(packet, buf) {
            TunnResult::WriteToNetwork(out) => {
                peer.counters.tx_wire_bytes += out.len() as u64;
                io.send_udp(UdpPort::WireGuard, ep, out)
            }
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer.settings.name, error = %wg_err(&e), "encapsulate failed");
            }
            _ => {}
        }
        true
    }

    /// Runs the timers of every peer (call every 100-250 ms), brings site
    /// peers up and keeps them up, sends persistent keepalives, resets the
    /// rate limiter and collects the per-source table once a second.
    pub fn tick(&mut self, now: Instant, wall: SystemTime, buf: &mut [u8], io: &mut impl Io) {
        if self
            .last_rate_reset
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.rate_limiter.reset_count();
            self.limiter.gc(now);
            self.last_rate_reset = Some(now);
        }
        for peer in self.peers.values_mut() {
            let Some(tunn) = peer.tunn.as_mut() else {
                continue;
            };
            match tunn.update_timers(buf) {
                TunnResult::WriteToNetwork(out) => {
                    if let Some(ep) = peer.endpoint {
                        peer.counters.tx_wire_bytes += out.len() as u64;
                        io.send_udp(UdpPort::WireGuard, ep, out);
                    }
                    peer.observe_handshake(wall);
                    continue;
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    tracing::debug!(peer = %peer.settings.name, "session expired");
                }
                TunnResult::Err(e) => {
                    tracing::debug!(peer = %peer.settings.name, error = %wg_err(&e), "timer error");
                }
                _ => {}
            }
            if !peer.keep_site_up(now, buf, io) {
                peer.keep_alive(now, buf, io);
            }
            peer.observe_handshake(wall);
        }
    }

    /// Status of every peer, sorted by name.
    pub fn status(&self, wall: SystemTime) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self.peers.values().map(|p| p.status(wall)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// A peer's noise session with the interface's key and the shared rate
/// limiter (`Tunn::new` computes the static-static X25519 secret).
fn new_tunn(
    private: &StaticSecret,
    rate_limiter: &Arc<RateLimiter>,
    s: &PeerSettings,
    index: u32,
) -> Box<Tunn> {
    Box::new(Tunn::new(
        private.clone(),
        PublicKey::from(s.public_key.0),
        s.psk.as_ref().map(|k| k.0),
        // Persistent keepalives are sent by the table on the caller's
        // clock ([`Peer::keep_alive`]), not by `Tunn`'s own.
        None,
        index,
        Some(rate_limiter.clone()),
    ))
}

/// The WireGuard message types (whitepaper section 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Type 1, handshake initiation.
    Initiation,
    /// Type 2, handshake response.
    Response,
    /// Type 3, cookie reply.
    CookieReply,
    /// Type 4, transport data (a keepalive when empty).
    Data,
}

impl Kind {
    /// The kind of a parsed datagram.
    pub fn of(p: &Packet<'_>) -> Kind {
        match p {
            Packet::HandshakeInit(_) => Kind::Initiation,
            Packet::HandshakeResponse(_) => Kind::Response,
            Packet::PacketCookieReply(_) => Kind::CookieReply,
            Packet::PacketData(_) => Kind::Data,
        }
    }

    /// The kind of a datagram `Tunn` wrote, by its type field.
    pub fn of_wire(d: &[u8]) -> Option<Kind> {
        match d.first() {
            Some(1) => Some(Kind::Initiation),
            Some(2) => Some(Kind::Response),
            Some(3) => Some(Kind::CookieReply),
            Some(4) => Some(Kind::Data),
            _ => None,
        }
    }
}

/// What the result of `Tunn::decapsulate` on a datagram of a given kind
/// proves about its source (STYLE.md, embedder duty 6; wireguard-go calls
/// `SetEndpointFromPacket` at the same three places).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The sender holds the session keys or the peer's static key: the
    /// endpoint follows it and queued packets may be flushed to it.
    Authenticated,
    /// Nothing was proved (refused, a cookie reply either way): the
    /// endpoint stays.
    Unauthenticated,
}

impl Proof {
    /// Classifies `result`, the outcome of decapsulating a `kind` datagram:
    /// - data: an IP packet or a keepalive (`Done`) decrypted and passed
    ///   the replay window;
    /// - initiation: `Tunn` answered with a handshake response (type 2), so
    ///   the static key, the timestamp and the MACs checked out; a cookie
    ///   reply (type 3) means boringtun's limiter answered before anything
    ///   was authenticated;
    /// - response: `Tunn` completed our handshake and wrote its keepalive
    ///   (type 4); a cookie reply again proves nothing;
    /// - cookie reply: never (it only carries a cookie for the next try).
    pub fn of(kind: Kind, result: &TunnResult<'_>) -> Proof {
        let ok = match (kind, result) {
            (_, TunnResult::Err(_)) => false,
            (Kind::Data, TunnResult::Done)
            | (Kind::Data, TunnResult::WriteToTunnelV4(..))
            | (Kind::Data, TunnResult::WriteToTunnelV6(..)) => true,
            (Kind::Initiation, TunnResult::WriteToNetwork(r)) => {
                Kind::of_wire(r) == Some(Kind::Response)
            }
            (Kind::Response, TunnResult::WriteToNetwork(r)) => Kind::of_wire(r) == Some(Kind::Data),
            _ => false,
        };
        if ok {
            Proof::Authenticated
        } else {
            Proof::Unauthenticated
        }
    }
}

/// How long a site peer's session may go without an authenticated datagram
/// from the peer before the gateway starts a new handshake: two keepalive
/// intervals and REKEY_TIMEOUT (5 s). A peer that sends keepalives of its own
/// never reaches it; one that only answers gets a handshake per interval of
/// silence, which also proves it is there. `None` with keepalives off (then
/// only the session's expiry, REJECT_AFTER_TIME, starts a new one).
pub fn silence_limit(keepalive: u16) -> Option<Duration> {
    (keepalive > 0).then(|| Duration::from_secs(2 * u64::from(keepalive) + 5))
}

impl Peer {
    /// A site peer's duties at a tick: with no session (the first one, or
    /// the last expired or was given up), or after [`silence_limit`], start
    /// a handshake to the configured endpoint unless one is under way
    /// (`Tunn` then retransmits it every REKEY_TIMEOUT). Returns whether a
    /// datagram went out (then no keepalive is due).
    fn keep_site_up(&mut self, now: Instant, buf: &mut [u8], io: &mut impl Io) -> bool {
        let Some(configured) = self.settings.endpoint else {
            return false;
        };
        // A site peer's Tunn is made at insert ([`PeerTable::initial_tunn`]).
        let Some(tunn) = self.tunn.as_mut() else {
            return false;
        };
        let heard = *self.heard.get_or_insert(now);
        let why = if tunn.time_since_last_handshake().is_none() {
            "no session"
        } else if silence_limit(self.settings.keepalive)
            .is_some_and(|limit| now.saturating_duration_since(heard) >= limit)
        {
            "no answer from the peer"
        } else {
            return false;
        };
        match tunn.format_handshake_initiation(buf, false) {
            TunnResult::WriteToNetwork(out) => {
                // A session that is gone falls back to the address the
                // operator configured; roaming moves it again once the
                // peer answers from elsewhere.
                self.endpoint = Some(configured);
                self.counters.tx_wire_bytes += out.len() as u64;
                io.send_udp(UdpPort::WireGuard, configured, out);
                tracing::debug!(peer = %self.settings.name, endpoint = %configured, why, "handshake initiated");
                true
            }
            TunnResult::Err(e) => {
                tracing::debug!(peer = %self.settings.name, error = %wg_err(&e), "cannot initiate a handshake");
                false
            }
            // One is under way.
            _ => false,
        }
    }

    /// Sends a persistent keepalive when the peer has a session, an
    /// endpoint and a keepalive interval, and neither side sent the other
    /// anything authenticated for that long (by the table's count: what it
    /// heard, and its own keepalives).
    fn keep_alive(&mut self, now: Instant, buf: &mut [u8], io: &mut impl Io) {
        let (Some(ep), true) = (self.endpoint, self.settings.keepalive > 0) else {
            return;
        };
        let Some(tunn) = self.tunn.as_mut() else {
            return;
        };
        if tunn.time_since_last_handshake().is_none() {
            return;
        }
        let interval = Duration::from_secs(u64::from(self.settings.keepalive));
        let last = self.heard.into_iter().chain(self.last_keepalive).max();
        if last.is_none_or(|t| now.saturating_duration_since(t) < interval) {
            return;
        }
        if let TunnResult::WriteToNetwork(out) = tunn.encapsulate(&[], buf) {
            self.counters.tx_wire_bytes += out.len() as u64;
            io.send_udp(UdpPort::WireGuard, ep, out);
            self.last_keepalive = Some(now);
        }
    }

    /// Sends what `Tunn` queued while the handshake was pending, to the
    /// endpoint that just authenticated.
    fn flush_queue(&mut self, to: SocketAddr, buf: &mut [u8], io: &mut impl Io) {
        let Some(tunn) = self.tunn.as_mut() else {
            return;
        };
        for _ in 0..1024 {
            match tunn.decapsulate(None, &[], buf) {
                TunnResult::WriteToNetwork(p) => {
                    self.counters.tx_wire_bytes += p.len() as u64;
                    io.send_udp(UdpPort::WireGuard, to, p)
                }
                _ => break,
            }
        }
    }

    fn roam(&mut self, from: SocketAddr) {
        if self.endpoint != Some(from) {
            if let Some(old) = self.endpoint {
                tracing::info!(peer = %self.settings.name, %old, new = %from, "peer roamed");
            } else {
                tracing::info!(peer = %self.settings.name, endpoint = %from, "peer endpoint learned");
            }
            self.endpoint = Some(from);
        }
    }

    fn observe_handshake(&mut self, wall: SystemTime) {
        let since = self
            .tunn
            .as_ref()
            .and_then(|t| t.time_since_last_handshake());
        if let Some(s) = since {
            if self.prev_since.is_none_or(|p| s < p) {
                self.last_handshake_at = wall.checked_sub(s);
                self.counters.handshakes += 1;
                tracing::info!(peer = %self.settings.name, endpoint = ?self.endpoint, "handshake completed");
            }
        }
        self.prev_since = since;
    }

    fn status(&self, wall: SystemTime) -> PeerStatus {
        let (since, tx, rx, loss, rtt) = match &self.tunn {
            Some(t) => t.stats(),
            None => (None, 0, 0, 0.0, None),
        };
        // A handshake completed since the last tick is not pinned yet: read
        // it from `Tunn` now so that status never lags behind the traffic.
        let last_handshake_at = match since {
            Some(s) if self.prev_since.is_none_or(|p| s < p) => wall.checked_sub(s),
            _ => self.last_handshake_at,
        };
        let unix = last_handshake_at.and_then(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| (d.as_secs(), d.subsec_nanos()))
        });
        let age = last_handshake_at
            .and_then(|t| wall.duration_since(t).ok())
            .map(|d| d.as_secs_f64());
        PeerStatus {
            name: self.settings.name.clone(),
            public_key: self.settings.public_key.to_string(),
            has_psk: self.settings.psk.is_some(),
            endpoint: self.endpoint,
            configured_endpoint: self.settings.endpoint,
            site: self.settings.endpoint.is_some(),
            allowed_ips: self.settings.allowed_ips.clone(),
            gateway_keepalive: self.settings.keepalive,
            last_handshake_unix: unix,
            last_handshake_age_secs: age,
            session: since.is_some(),
            rx_bytes: self.counters.rx_wire_bytes,
            tx_bytes: self.counters.tx_wire_bytes,
            rx_payload_bytes: rx as u64,
            tx_payload_bytes: tx as u64,
            loss,
            rtt_ms: rtt,
            counters: self.counters,
        }
    }
}

#[cfg(test)]
mod site_tests;

#[cfg(test)]
impl PeerTable {
    /// The address of `name`'s `Tunn`, if it has one (to tell the same
    /// session object from a new one).
    fn tunn_addr(&self, name: &str) -> Option<*const Tunn> {
        self.peers
            .values()
            .find(|p| p.settings.name == name)
            .and_then(|p| p.tunn.as_deref().map(|t| t as *const Tunn))
    }

    /// How many peers have a `Tunn`.
    fn tunns(&self) -> usize {
        self.peers.values().filter(|p| p.tunn.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{generate_private_key, public_key};

    fn wire(kind: u8) -> Vec<u8> {
        let mut d = vec![0u8; 64];
        d[0] = kind;
        d
    }

    #[test]
    fn only_authenticating_results_prove_the_source() {
        use Proof::*;
        let mut buf = [0u8; 40];
        let cases: Vec<(Kind, u8, Proof)> = vec![
            // Tunn's answer to an initiation: a response (authenticated) or
            // its rate limiter's cookie reply (not).
            (Kind::Initiation, 2, Authenticated),
            (Kind::Initiation, 3, Unauthenticated),
            // ... to a response: its keepalive, or a cookie reply.
            (Kind::Response, 4, Authenticated),
            (Kind::Response, 3, Unauthenticated),
            // Nothing else writes to the network legitimately.
            (Kind::Data, 4, Unauthenticated),
            (Kind::CookieReply, 4, Unauthenticated),
        ];
        for (kind, t, want) in cases {
            let mut d = wire(t);
            assert_eq!(
                Proof::of(kind, &TunnResult::WriteToNetwork(&mut d)),
                want,
                "{kind:?} -> type {t}"
            );
        }
        assert_eq!(Proof::of(Kind::Data, &TunnResult::Done), Authenticated);
        assert_eq!(
            Proof::of(Kind::CookieReply, &TunnResult::Done),
            Unauthenticated
        );
        assert_eq!(
            Proof::of(Kind::Initiation, &TunnResult::Done),
            Unauthenticated
        );
        let v4 = TunnResult::WriteToTunnelV4(&mut buf[..20], [10, 0, 0, 1].into());
        assert_eq!(Proof::of(Kind::Data, &v4), Authenticated);
        for kind in [
            Kind::Initiation,
            Kind::Response,
            Kind::CookieReply,
            Kind::Data,
        ] {
            let e = TunnResult::Err(WireGuardError::InvalidMac);
            assert_eq!(Proof::of(kind, &e), Unauthenticated);
        }
    }

    #[derive(Default)]
    struct Out {
        udp: Vec<(SocketAddr, Vec<u8>)>,
    }
    impl Io for Out {
        fn send_udp(&mut self, port: UdpPort, dst: SocketAddr, d: &[u8]) {
            assert_eq!(port, UdpPort::WireGuard);
            self.udp.push((dst, d.to_vec()));
        }
        fn write_tun(&mut self, _: &[u8]) {
            panic!("the peer table never writes to the TUN");
        }
    }

    /// Peer `i` of many: a distinct public key (any 32 bytes are one; no
    /// X25519 work for peers that never handshake) and 10.64.0.0/16 + i.
    fn many(i: u32) -> PeerSettings {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        key[31] = 0x55;
        PeerSettings {
            name: format!("peer-{i:05}"),
            public_key: Key(key),
            psk: None,
            allowed_ips: vec![host(i)],
            keepalive: 0,
            endpoint: None,
        }
    }

    fn host(i: u32) -> IpNet {
        let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 64, 0, 0)) + i);
        IpNet::from(IpAddr::V4(a))
    }

    fn ipv4_from(src: IpNet) -> Vec<u8> {
        let IpAddr::V4(src) = src.addr() else {
            unreachable!()
        };
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&[172, 16, 4, 10]);
        p
    }

    /// A laptop (a boringtun `Tunn` of its own) that is peer `i` of the table.
    struct Laptop {
        i: u32,
        tunn: Tunn,
        addr: SocketAddr,
    }

    impl Laptop {
        fn new(i: u32, gw: &Key, wanted: &mut [PeerSettings]) -> Laptop {
            let key = generate_private_key();
            wanted[i as usize - 1].public_key = public_key(&key);
            Laptop {
                i,
                tunn: Tunn::new(
                    StaticSecret::from(key.0),
                    PublicKey::from(public_key(gw).0),
                    None,
                    None,
                    i,
                    None,
                ),
                addr: SocketAddr::from(([198, 51, 100, (i % 250) as u8], 40000)),
            }
        }

        /// Sends one packet from its address; exchanges datagrams with the
        /// table until quiet. Returns how many datagrams the table answered
        /// and whether the packet came out of the table.
        fn send(&mut self, t: &mut PeerTable, now: Instant) -> (usize, bool) {
            let mut lbuf = vec![0u8; 2048];
            let mut gbuf = vec![0u8; 2048];
            let mut to_gw = Vec::new();
            if let TunnResult::WriteToNetwork(d) =
                self.tunn.encapsulate(&ipv4_from(host(self.i)), &mut lbuf)
            {
                to_gw.push(d.to_vec());
            }
            let (mut answers, mut delivered) = (0, false);
            for _ in 0..10 {
                let mut out = Out::default();
                for d in to_gw.drain(..) {
                    delivered |= t
                        .handle_datagram(now, self.addr, &d, &mut gbuf, &mut out)
                        .is_some();
                }
                answers += out.udp.len();
                for (dst, d) in out.udp {
                    assert_eq!(dst, self.addr);
                    let mut r = self.tunn.decapsulate(Some(dst.ip()), &d, &mut lbuf);
                    while let TunnResult::WriteToNetwork(x) = r {
                        to_gw.push(x.to_vec());
                        r = self.tunn.decapsulate(None, &[], &mut lbuf);
                    }
                }
                if to_gw.is_empty() {
                    break;
                }
            }
            (answers, delivered)
        }
    }

    const N: u32 = 10_000;

    /// A table of 10,000 peers of which three have sessions.
    fn ten_thousand() -> (PeerTable, Vec<PeerSettings>, Vec<Laptop>, Instant) {
        let gw = generate_private_key();
        let mut wanted: Vec<PeerSettings> = (1..=N).map(many).collect();
        let mut laptops: Vec<Laptop> = [1, 5_000, N]
            .into_iter()
            .map(|i| Laptop::new(i, &gw, &mut wanted))
            .collect();
        let mut t = PeerTable::new(&gw);
        let report = t.apply(wanted.clone());
        assert_eq!(report.added.len(), N as usize);
        let now = Instant::now();
        for l in &mut laptops {
            let (answers, delivered) = l.send(&mut t, now);
            assert!(delivered && answers > 0, "peer {} handshakes", l.i);
        }
        // pins the handshakes' wall-clock times (status reads them)
        let mut buf = vec![0u8; 2048];
        t.tick(now, SystemTime::now(), &mut buf, &mut Out::default());
        (t, wanted, laptops, now)
    }

    /// A reload that changes one peer of 10,000 (and restarts another)
    /// touches only those: every other peer keeps its `Tunn` (the same
    /// object), its session, endpoint and counters, and the laptops' next
    /// packets decrypt without a new handshake.
    #[test]
    fn reload_of_one_peer_among_ten_thousand_keeps_every_other_session() {
        let (mut t, mut wanted, mut laptops, now) = ten_thousand();
        let wall = SystemTime::now();
        let before = t.status(wall);
        assert_eq!(before.iter().filter(|p| p.session).count(), 3);
        let tunns: Vec<_> = laptops
            .iter()
            .map(|l| t.tunn_addr(&format!("peer-{:05}", l.i)).expect("a session"))
            .collect();

        wanted[6_999].allowed_ips = vec!["10.65.0.7/32".parse().unwrap()];
        wanted[41].psk = Some(Key([7; 32]));
        let report = t.apply(wanted);
        assert_eq!(report.updated, vec!["peer-07000".to_string()]);
        assert_eq!(report.restarted, vec!["peer-00042".to_string()]);
        assert!(report.added.is_empty() && report.removed.is_empty());
        assert_eq!(report.unchanged, N as usize - 2);

        let after = t.status(wall);
        assert_eq!(after.len(), before.len());
        for (b, a) in before.iter().zip(&after) {
            if a.name == "peer-07000" {
                assert_eq!(
                    a.allowed_ips,
                    vec!["10.65.0.7/32".parse::<IpNet>().unwrap()]
                );
                assert_eq!(
                    PeerStatus {
                        allowed_ips: b.allowed_ips.clone(),
                        ..a.clone()
                    },
                    *b
                );
            } else if a.name != "peer-00042" {
                assert_eq!(a, b, "{} untouched", a.name);
            }
        }
        for (l, tunn) in laptops.iter().zip(&tunns) {
            let name = format!("peer-{:05}", l.i);
            assert_eq!(t.tunn_addr(&name), Some(*tunn), "{name}: the same Tunn");
        }
        // the allowed IPs moved with the changed peer
        assert!(t.routes("10.65.0.7".parse().unwrap()));
        assert!(!t.routes(host(7_000).addr()));
        assert!(t.routes(host(6_999).addr()));
        for l in &mut laptops {
            assert_eq!(
                l.send(&mut t, now),
                (0, true),
                "peer {}: no new handshake",
                l.i
            );
        }
    }

    /// Peers that never sent a handshake have no `Tunn` (no X25519 work at
    /// load, about 12 KB less each); data for them is refused without
    /// making one, and packets for them are dropped as having no endpoint.
    #[test]
    fn peers_without_a_session_have_no_tunn() {
        let (mut t, _, _, now) = ten_thousand();
        assert_eq!(t.len(), N as usize);
        assert_eq!(t.tunns(), 3);

        // a data datagram for peer 77's index (indices are 1..=N here)
        let mut data = vec![0u8; 32];
        data[0] = 4;
        data[4..8].copy_from_slice(&(77u32 << 8).to_le_bytes());
        let mut out = Out::default();
        let mut buf = vec![0u8; 2048];
        let from = SocketAddr::from(([203, 0, 113, 9], 1234));
        assert_eq!(
            t.handle_datagram(now, from, &data, &mut buf, &mut out),
            None
        );
        assert!(out.udp.is_empty());
        assert_eq!(t.tunns(), 3);
        let p77 = t.status(SystemTime::now());
        let p77 = p77.iter().find(|p| p.name == "peer-00077").unwrap();
        assert_eq!(
            (p77.counters.rx_invalid, p77.endpoint, p77.session),
            (1, None, false)
        );

        // the LAN sends to peer 78, which was never heard from
        assert!(t.handle_packet(&ipv4_to(host(78)), &mut buf, &mut out));
        assert!(out.udp.is_empty());
        assert_eq!(t.tunns(), 3);
        let st = t.status(SystemTime::now());
        assert_eq!(
            st.iter()
                .find(|p| p.name == "peer-00078")
                .unwrap()
                .counters
                .tx_no_endpoint,
            1
        );

        // the timers run for the three sessions only, without failing
        t.tick(
            now + Duration::from_millis(250),
            SystemTime::now(),
            &mut buf,
            &mut out,
        );
        assert_eq!(t.tunns(), 3);
    }

    fn ipv4_to(dst: IpNet) -> Vec<u8> {
        let mut p = ipv4_from(host(0));
        let IpAddr::V4(d) = dst.addr() else {
            unreachable!()
        };
        p[16..20].copy_from_slice(&d.octets());
        p
    }
}
