//! Active probing of one tunnel's far end, sans-IO (dpinger-style, as
//! pfSense does for gateway groups, and as AWS and Netgate recommend for
//! Site-to-Site VPN tunnels): an ICMP echo request (RFC 792) from this
//! gateway's inside address (the tunnel inside CIDR's network + 2) to the
//! VGW's (network + 1) every `interval`, sent through the tunnel's own CHILD
//! SA; RTT and loss over the last [`WINDOW`] probes; a verdict that decides
//! whether the tunnel may carry outbound traffic.
//!
//! - A probe unanswered after [`Prober::timeout`] is lost. After `loss`
//!   lost probes in a row the tunnel is [`Health::Degraded`]: it stops
//!   carrying outbound traffic (its IKE SA stays; DPD still decides when the
//!   peer is dead).
//! - It carries again only after `recover` answers in a row
//!   ([`Health::Recovering`]) followed by `hold_down` without a loss: a
//!   tunnel that flaps never makes traffic flap.
//! - Passive evidence: authenticated ESP arriving on the tunnel (other than
//!   probe answers) proves the peer alive. It excuses a lost probe only
//!   while the peer answers no probe at all (none answered in the window):
//!   a peer that is not AWS may not answer, and is then judged by its ESP
//!   alone ("probing unanswered"). A peer that does answer probes is judged
//!   by them alone, so that a path that fails one way (our ESP lost, the
//!   peer's still arriving) is still noticed.
//!
//! The caller (`ipsec.rs`) seals [`Prober::poll_probe`]'s packets with the
//! tunnel's CHILD SA and hands back the echo replies it opens
//! ([`Prober::handle_reply`]); replies are matched by ICMP identifier and
//! sequence number and never forwarded.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Probe results kept for the RTT average and the loss ratio.
pub const WINDOW: usize = 60;
/// The longest a probe is waited for (shorter intervals wait one interval).
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Probes waited for at once, at most (older ones are counted lost).
const MAX_PENDING: usize = 8;
/// The echo payload: recognisable in a capture.
const PAYLOAD: &[u8] = b"ipiece tunnel probe";
const PROTO_ICMP: u8 = 1;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

/// How a tunnel is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between probes (never zero: no settings means no probing).
    pub interval: Duration,
    /// Lost probes in a row that make the tunnel degraded.
    pub loss: u32,
    /// Answers in a row that start its recovery.
    pub recover: u32,
    /// How long a recovering tunnel must stay without a loss before it
    /// carries again.
    pub hold_down: Duration,
    /// This gateway's inside address (the source of the probes).
    pub local: Ipv4Addr,
    /// The peer's inside address (their destination).
    pub remote: Ipv4Addr,
}

/// The verdict of the probes. The metrics export one series per variant
/// (the names are serde's).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::EnumIter, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Health {
    /// May carry outbound traffic.
    Healthy,
    /// `loss` probes in a row were lost: carries nothing outbound.
    Degraded,
    /// Answers again, waiting out `recover` and the hold-down: still
    /// carries nothing outbound.
    Recovering,
}

/// A change of [`Health`], for logs and the reason of a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new health.
    pub to: Health,
    /// Why, in words.
    pub reason: String,
}

/// The probes of one tunnel, for `wgctl status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeStatus {
    /// The verdict.
    pub health: Health,
    /// Source and destination of the probes.
    pub local: Ipv4Addr,
    /// The peer's inside address.
    pub remote: Ipv4Addr,
    /// Milliseconds between probes.
    pub interval_ms: u64,
    /// RTT of the last answered probe, milliseconds.
    pub rtt_last_ms: Option<f64>,
    /// Average RTT of the answered probes in the window, milliseconds.
    pub rtt_avg_ms: Option<f64>,
    /// Lost probes in the window, percent of the probes decided there.
    pub loss_percent: f64,
    /// Probes decided (answered or lost) in the window.
    pub window: u32,
    /// Probes sent, answered and lost since the tunnel was configured.
    pub sent: u64,
    /// Answered probes.
    pub answered: u64,
    /// Lost probes (including those excused by passive evidence).
    pub lost: u64,
    /// Lost probes in a row now.
    pub lost_in_a_row: u32,
    /// Answers in a row now.
    pub answered_in_a_row: u32,
    /// The peer answers no probe (none in the window, some sent): the
    /// tunnel is judged by the ESP it receives instead.
    pub unanswered: bool,
    /// Lost probes excused because ESP arrived meanwhile.
    pub excused: u64,
    /// Seconds since authenticated ESP (other than probe answers) last
    /// arrived on the tunnel.
    pub last_esp_in_secs: Option<u64>,
    /// Seconds left of the hold-down while recovering.
    pub hold_down_left_secs: Option<u64>,
    /// Times the tunnel was declared degraded.
    pub degraded_count: u64,
    /// Why no probe is sent, if none is (e.g. the CHILD SA's traffic
    /// selectors do not cover the inside addresses).
    pub skipped: Option<String>,
}

/// One probe sent and waited for.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u16,
    sent: Instant,
}

/// The prober of one tunnel.
#[derive(Debug)]
pub struct Prober {
    s: ProbeSettings,
    ident: u16,
    next_seq: u16,
    /// When the next probe is due; `None` while paused (no CHILD SA).
    next_at: Option<Instant>,
    pending: VecDeque<Pending>,
    /// Decided probes, oldest first: `Some(rtt)` answered, `None` lost.
    window: VecDeque<Option<Duration>>,
    rtt_last: Option<Duration>,
    lost_in_a_row: u32,
    answered_in_a_row: u32,
    health: Health,
    recovering_since: Option<Instant>,
    last_esp_in: Option<Instant>,
    sent: u64,
    answered: u64,
    lost: u64,
    excused: u64,
    degraded_count: u64,
    skipped: Option<String>,
}

impl Prober {
    /// A prober using ICMP identifier `ident`, healthy, paused until
    /// [`Prober::resume`].
    pub fn new(s: ProbeSettings, ident: u16) -> Prober {
        Prober {
            s,
            ident,
            next_seq: 1,
            next_at: None,
            pending: VecDeque::new(),
            window: VecDeque::with_capacity(WINDOW),
            rtt_last: None,
            lost_in_a_row: 0,
            answered_in_a_row: 0,
            health: Health::Healthy,
            recovering_since: None,
            last_esp_in: None,
            sent: 0,
            answered: 0,
            lost: 0,
            excused: 0,
            degraded_count: 0,
            skipped: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ProbeSettings {
        &self.s
    }

    /// The verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Whether the tunnel may carry outbound traffic.
    pub fn carries(&self) -> bool {
        self.health == Health::Healthy
    }

    /// How long a probe is waited for: one interval, at most [`MAX_WAIT`].
    pub fn timeout(&self) -> Duration {
        self.s.interval.min(MAX_WAIT)
    }

    /// The tunnel has a CHILD SA (again): probing starts now unless it runs.
    pub fn resume(&mut self, now: Instant) {
        if self.next_at.is_none() {
            self.next_at = Some(now);
        }
    }

    /// The tunnel lost its CHILD SA: probing stops, probes in flight are
    /// forgotten (neither answered nor lost), and a recovery starts over.
    /// The verdict stays: a tunnel that went down degraded comes back
    /// degraded and must recover, one that was healthy carries at once.
    pub fn pause(&mut self) {
        self.next_at = None;
        self.pending.clear();
        self.lost_in_a_row = 0;
        self.answered_in_a_row = 0;
        if self.health == Health::Recovering {
            self.health = Health::Degraded;
            self.recovering_since = None;
        }
    }

    /// Whether probing is paused.
    pub fn paused(&self) -> bool {
        self.next_at.is_none()
    }

    /// Whether a probe is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_at.is_some_and(|at| at <= now)
    }

    /// A probe is due but cannot be sent (`why`); the next try is one
    /// interval later.
    pub fn skip(&mut self, now: Instant, why: String) {
        self.skipped = Some(why);
        self.next_at = Some(now + self.s.interval);
    }

    /// The next probe when one is due: an IPv4 ICMP echo request to seal
    /// into the tunnel. Call [`Prober::handle_timeouts`] first.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !self.due(now) {
            return None;
        }
        // Keep the cadence, but never send a burst after a stall.
        let next = self.next_at.map_or(now, |at| at + self.s.interval);
        self.next_at = Some(if next <= now {
            now + self.s.interval
        } else {
            next
        });
        self.skipped = None;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.pending.len() >= MAX_PENDING {
            // cannot happen with a timeout of at most one interval; bounded anyway
            self.pending.pop_front();
        }
        self.pending.push_back(Pending { seq, sent: now });
        self.sent += 1;
        Some(echo_request(self.s.local, self.s.remote, self.ident, seq))
    }

    /// Counts the probes unanswered after [`Prober::timeout`] as lost (or
    /// excused by passive evidence), and ends a hold-down that ran out.
    /// Returns the health transitions, in order.
    pub fn handle_timeouts(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let timeout = self.timeout();
        while let Some(p) = self.pending.front().copied() {
            if now.saturating_duration_since(p.sent) < timeout {
                break;
            }
            self.pending.pop_front();
            let excused = self.unanswered() && self.last_esp_in.is_some_and(|at| at >= p.sent);
            self.lost += 1;
            self.push_window(None);
            if excused {
                self.excused += 1;
                out.extend(self.decide(now, true));
            } else {
                out.extend(self.decide(now, false));
            }
        }
        out.extend(self.end_hold_down(now));
        out
    }

    /// Whether `inner` (an opened ESP payload) is an echo reply from the
    /// peer's inside address to ours: such packets belong to the prober and
    /// are never forwarded.
    pub fn is_reply(&self, inner: &[u8]) -> bool {
        parse_echo_reply(inner, self.s.remote, self.s.local).is_some()
    }

    /// An echo reply opened from the tunnel (see [`Prober::is_reply`]):
    /// answers the probe with its identifier and sequence number, if one
    /// waits. Returns the health transitions.
    pub fn handle_reply(&mut self, now: Instant, inner: &[u8]) -> Vec<Transition> {
        let Some((ident, seq)) = parse_echo_reply(inner, self.s.remote, self.s.local) else {
            return Vec::new();
        };
        if ident != self.ident {
            return Vec::new();
        }
        let Some(pos) = self.pending.iter().position(|p| p.seq == seq) else {
            // late (already counted lost) or never sent
            return Vec::new();
        };
        let p = self.pending.remove(pos).expect("found above");
        let rtt = now.saturating_duration_since(p.sent);
        self.rtt_last = Some(rtt);
        self.answered += 1;
        self.push_window(Some(rtt));
        let mut out: Vec<Transition> = self.decide(now, true).into_iter().collect();
        out.extend(self.end_hold_down(now));
        out
    }

    /// Authenticated ESP other than a probe answer arrived on the tunnel.
    pub fn handle_passive(&mut self, now: Instant) {
        self.last_esp_in = Some(now);
    }

    /// The peer answers no probe: some were decided, none answered in the
    /// window.
    pub fn unanswered(&self) -> bool {
        !self.window.is_empty() && self.window.iter().all(Option::is_none)
    }

    fn push_window(&mut self, r: Option<Duration>) {
        if self.window.len() >= WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(r);
    }

    /// One probe decided: `alive` (answered, or excused) or lost.
    fn decide(&mut self, now: Instant, alive: bool) -> Option<Transition> {
        if alive {
            self.lost_in_a_row = 0;
            self.answered_in_a_row = self.answered_in_a_row.saturating_add(1);
            if self.health == Health::Degraded && self.answered_in_a_row >= self.s.recover {
                self.health = Health::Recovering;
                self.recovering_since = Some(now);
                return Some(Transition {
                    to: Health::Recovering,
                    reason: format!(
                        "{} probes answered in a row; hold-down {} s",
                        self.answered_in_a_row,
                        self.s.hold_down.as_secs()
                    ),
                });
            }
            return None;
        }
        self.answered_in_a_row = 0;
        self.lost_in_a_row = self.lost_in_a_row.saturating_add(1);
        match self.health {
            Health::Healthy if self.lost_in_a_row >= self.s.loss => {
                self.health = Health::Degraded;
                self.degraded_count += 1;
                Some(Transition {
                    to: Health::Degraded,
                    reason: format!(
                        "{} probes to {} unanswered in a row",
                        self.lost_in_a_row, self.s.remote
                    ),
                })
            }
            Health::Recovering => {
                self.health = Health::Degraded;
                self.recovering_since = None;
                Some(Transition {
                    to: Health::Degraded,
                    reason: format!("a probe to {} lost during the hold-down", self.s.remote),
                })
            }
            _ => None,
        }
    }

    fn end_hold_down(&mut self, now: Instant) -> Option<Transition> {
        let since = self.recovering_since?;
        if self.health != Health::Recovering
            || now.saturating_duration_since(since) < self.s.hold_down
        {
            return None;
        }
        self.health = Health::Healthy;
        self.recovering_since = None;
        Some(Transition {
            to: Health::Healthy,
            reason: format!(
                "probes to {} answered again for the {} s hold-down",
                self.s.remote,
                self.s.hold_down.as_secs()
            ),
        })
    }

    /// The status at `now`.
    pub fn status(&self, now: Instant) -> ProbeStatus {
        let rtts: Vec<Duration> = self.window.iter().flatten().copied().collect();
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let avg = (!rtts.is_empty())
            .then(|| rtts.iter().sum::<Duration>() / u32::try_from(rtts.len()).unwrap_or(1));
        let decided = self.window.len();
        let lost = decided - rtts.len();
        ProbeStatus {
            health: self.health,
            local: self.s.local,
            remote: self.s.remote,
            interval_ms: u64::try_from(self.s.interval.as_millis()).unwrap_or(u64::MAX),
            rtt_last_ms: self.rtt_last.map(ms),
            rtt_avg_ms: avg.map(ms),
            loss_percent: if decided == 0 {
                0.0
            } else {
                (lost as f64 * 1000.0 / decided as f64).round() / 10.0
            },
            window: decided as u32,
            sent: self.sent,
            answered: self.answered,
            lost: self.lost,
            lost_in_a_row: self.lost_in_a_row,
            answered_in_a_row: self.answered_in_a_row,
            unanswered: self.unanswered(),
            excused: self.excused,
            last_esp_in_secs: self
                .last_esp_in
                .map(|at| now.saturating_duration_since(at).as_secs()),
            hold_down_left_secs: self.recovering_since.map(|since| {
                (since + self.s.hold_down)
                    .saturating_duration_since(now)
                    .as_secs()
            }),
            degraded_count: self.degraded_count,
            skipped: self.skipped.clone(),
        }
    }
}

/// The Internet checksum (RFC 1071).
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request (RFC 792) from `src` to `dst`.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let total = 20 + 8 + PAYLOAD.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes()); // identification
    p.extend_from_slice(&[0x40, 0, 64, PROTO_ICMP, 0, 0]); // DF, TTL 64
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// `(identifier, sequence)` of an IPv4 ICMP echo reply from `from` to `to`
/// with a valid ICMP checksum; `None` for anything else.
fn parse_echo_reply(p: &[u8], from: Ipv4Addr, to: Ipv4Addr) -> Option<(u16, u16)> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != PROTO_ICMP {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    // a fragment is not ours (ours are small, sent with DF)
    if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 || ihl < 20 || total > p.len() {
        return None;
    }
    if p[12..16] != from.octets() || p[16..20] != to.octets() {
        return None;
    }
    let icmp = p.get(ihl..total)?;
    if icmp.len() < 8 || icmp[0] != ECHO_REPLY || icmp[1] != 0 || checksum(icmp) != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 2);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 1);
    const SEC: Duration = Duration::from_secs(1);

    fn settings() -> ProbeSettings {
        ProbeSettings {
            interval: SEC,
            loss: 3,
            recover: 5,
            hold_down: Duration::from_secs(10),
            local: LOCAL,
            remote: REMOTE,
        }
    }

    /// What the VGW's kernel answers: source and destination swapped, type
    /// 0, checksums fixed.
    fn answer(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[12..16].copy_from_slice(&request[16..20]);
        r[16..20].copy_from_slice(&request[12..16]);
        r[10..12].fill(0);
        let c = checksum(&r[..20]);
        r[10..12].copy_from_slice(&c.to_be_bytes());
        r[20] = ECHO_REPLY;
        r[22..24].fill(0);
        let c = checksum(&r[20..]);
        r[22..24].copy_from_slice(&c.to_be_bytes());
        r
    }

    /// A fake clock and the probe traffic: every 100 ms (the gateway's
    /// tick) timeouts, then a probe if due, answered after `rtt` unless
    /// `answer` says no.
    struct Sim {
        p: Prober,
        now: Instant,
        in_flight: Vec<(Instant, Vec<u8>)>,
        transitions: Vec<(Instant, Transition)>,
    }

    impl Sim {
        fn new() -> Sim {
            let now = Instant::now();
            let mut p = Prober::new(settings(), 0x4242);
            p.resume(now);
            Sim {
                p,
                now,
                in_flight: Vec::new(),
                transitions: Vec::new(),
            }
        }

        /// Runs for `d` in 100 ms ticks; `answered(probe number)` decides
        /// whether the peer answers, after 30 ms.
        fn run(&mut self, d: Duration, answered: &mut impl FnMut(u64) -> bool) {
            let end = self.now + d;
            while self.now < end {
                let now = self.now;
                let mut due: Vec<Vec<u8>> = Vec::new();
                self.in_flight.retain(|(at, r)| {
                    if *at <= now {
                        due.push(r.clone());
                        false
                    } else {
                        true
                    }
                });
                for r in due {
                    assert!(self.p.is_reply(&r));
                    for t in self.p.handle_reply(now, &r) {
                        self.transitions.push((now, t));
                    }
                }
                for t in self.p.handle_timeouts(now) {
                    self.transitions.push((now, t));
                }
                if let Some(req) = self.p.poll_probe(now) {
                    if answered(self.p.sent) {
                        self.in_flight
                            .push((now + Duration::from_millis(30), answer(&req)));
                    }
                }
                self.now += Duration::from_millis(100);
            }
        }
    }

    #[test]
    fn echo_request_is_well_formed_and_its_answer_is_recognised() {
        let req = echo_request(LOCAL, REMOTE, 7, 9);
        assert_eq!(checksum(&req[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&req[20..]), 0, "ICMP checksum");
        assert_eq!(req[20], ECHO_REQUEST);
        assert_eq!(parse_echo_reply(&answer(&req), REMOTE, LOCAL), Some((7, 9)));
        // not a reply: the request itself, another source, a bad checksum
        assert_eq!(parse_echo_reply(&req, LOCAL, REMOTE), None);
        assert_eq!(
            parse_echo_reply(&answer(&req), Ipv4Addr::new(10, 0, 1, 10), LOCAL),
            None
        );
        let mut bad = answer(&req);
        bad[30] ^= 1;
        assert_eq!(parse_echo_reply(&bad, REMOTE, LOCAL), None);
    }

    #[test]
    fn answered_probes_keep_it_healthy_and_measure_rtt() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(20), &mut |_| true);
        let st = s.p.status(s.now);
        assert_eq!(st.health, Health::Healthy);
        assert_eq!(st.sent, 20);
        assert!(st.answered >= 19, "{st:?}");
        assert_eq!(st.lost, 0);
        // answered at the first tick after 30 ms: 100 ms
        assert_eq!(st.rtt_last_ms, Some(100.0));
        assert_eq!(st.rtt_avg_ms, Some(100.0));
        assert_eq!(st.loss_percent, 0.0);
        assert!(s.transitions.is_empty());
    }

    #[test]
    fn degrades_after_loss_misses_in_a_row_and_not_before() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(5), &mut |_| true);
        // two misses, an answer, two misses: never three in a row
        let pattern = [false, false, true, false, false, true];
        let mut k = 0;
        s.run(Duration::from_secs(6), &mut |_| {
            k += 1;
            pattern[(k - 1) % pattern.len()]
        });
        assert_eq!(s.p.health(), Health::Healthy, "{:?}", s.p.status(s.now));
        let black_hole = s.now;
        s.run(Duration::from_secs(6), &mut |_| false);
        let (at, t) = s.transitions.first().expect("degraded");
        assert_eq!(t.to, Health::Degraded);
        assert!(t.reason.contains("3 probes"), "{}", t.reason);
        let after = at.duration_since(black_hole);
        // 3 probes, each waited for one interval: 3 to 4 s after the loss
        assert!(
            after >= Duration::from_secs(3) && after <= Duration::from_millis(4100),
            "{after:?}"
        );
        assert!(!s.p.carries());
        let st = s.p.status(s.now);
        assert_eq!(st.health, Health::Degraded);
        assert_eq!(st.degraded_count, 1);
        assert!(st.loss_percent > 0.0);
    }

    #[test]
    fn recovers_only_after_recover_answers_and_the_hold_down() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(5), &mut |_| false);
        assert_eq!(s.p.health(), Health::Degraded);
        let back = s.now;
        s.run(Duration::from_secs(30), &mut |_| true);
        let rec = s
            .transitions
            .iter()
            .find(|(_, t)| t.to == Health::Recovering)
            .expect("recovering");
        let healthy = s
            .transitions
            .iter()
            .find(|(_, t)| t.to == Health::Healthy)
            .expect("healthy again");
        // 5 answers (the first one at once), then 10 s
        let r = rec.0.duration_since(back);
        assert!(
            r >= Duration::from_secs(4) && r < Duration::from_secs(6),
            "{r:?}"
        );
        assert_eq!(healthy.0.duration_since(rec.0), Duration::from_secs(10));
        assert!(s.p.carries());
    }

    #[test]
    fn a_loss_during_the_hold_down_starts_the_recovery_over() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(5), &mut |_| false);
        // answers, but one lost probe every 8: recover (5) fits, the
        // hold-down (10 s) never does
        let mut k = 0;
        s.run(Duration::from_secs(60), &mut |_| {
            k += 1;
            k % 8 != 0
        });
        assert_ne!(s.p.health(), Health::Healthy, "{:?}", s.transitions);
        assert!(s
            .transitions
            .iter()
            .any(|(_, t)| t.to == Health::Recovering));
        assert!(!s.transitions.iter().any(|(_, t)| t.to == Health::Healthy));
    }

    #[test]
    fn passive_esp_keeps_a_peer_that_never_answers_healthy() {
        let mut s = Sim::new();
        for _ in 0..30 {
            s.p.handle_passive(s.now);
            s.run(Duration::from_millis(500), &mut |_| false);
        }
        let st = s.p.status(s.now);
        assert_eq!(st.health, Health::Healthy, "{st:?}");
        assert!(st.unanswered, "status says probing is unanswered");
        assert_eq!(st.answered, 0);
        assert!(st.excused >= 12, "{st:?}");
        // ESP stops: degraded after `loss` probes
        s.run(Duration::from_secs(5), &mut |_| false);
        assert_eq!(s.p.health(), Health::Degraded);
        // and ESP again: it recovers by passive evidence, after the hold-down
        for _ in 0..40 {
            s.p.handle_passive(s.now);
            s.run(Duration::from_millis(500), &mut |_| false);
        }
        assert_eq!(s.p.health(), Health::Healthy, "{:?}", s.transitions);
    }

    #[test]
    fn passive_esp_does_not_excuse_a_peer_that_answers_probes() {
        // AWS answers probes: a path broken towards it (probes lost) while
        // its ESP still arrives must be noticed.
        let mut s = Sim::new();
        s.run(Duration::from_secs(5), &mut |_| true);
        for _ in 0..10 {
            s.p.handle_passive(s.now);
            s.run(Duration::from_millis(500), &mut |_| false);
        }
        assert_eq!(s.p.health(), Health::Degraded, "{:?}", s.p.status(s.now));
        assert!(!s.p.status(s.now).unanswered);
    }

    #[test]
    fn replies_are_matched_by_identifier_and_sequence() {
        let mut p = Prober::new(settings(), 0x4242);
        let now = Instant::now();
        p.resume(now);
        let req = p.poll_probe(now).expect("due at once");
        // another identifier, an unknown sequence number: not answers
        let mut other = answer(&echo_request(LOCAL, REMOTE, 0x4243, 1));
        assert!(p.is_reply(&other), "still ours to consume");
        p.handle_reply(now, &other);
        other = answer(&echo_request(LOCAL, REMOTE, 0x4242, 2));
        p.handle_reply(now, &other);
        assert_eq!(p.status(now).answered, 0);
        p.handle_reply(now + Duration::from_millis(20), &answer(&req));
        let st = p.status(now);
        assert_eq!(st.answered, 1);
        assert_eq!(st.rtt_last_ms, Some(20.0));
        // the same answer again counts nothing
        p.handle_reply(now + Duration::from_millis(30), &answer(&req));
        assert_eq!(p.status(now).answered, 1);
        // a late answer (after the timeout) is a loss, not an answer
        let req2 = p.poll_probe(now + SEC).expect("due");
        p.handle_timeouts(now + SEC * 2);
        p.handle_reply(now + SEC * 2, &answer(&req2));
        let st = p.status(now);
        assert_eq!((st.answered, st.lost), (1, 1));
    }

    #[test]
    fn a_tunnel_that_went_down_degraded_comes_back_degraded() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(5), &mut |_| false);
        assert_eq!(s.p.health(), Health::Degraded);
        s.p.pause();
        assert!(s.p.poll_probe(s.now + SEC * 10).is_none(), "paused");
        s.now += SEC * 10;
        s.p.resume(s.now);
        assert_eq!(s.p.health(), Health::Degraded);
        s.run(Duration::from_secs(20), &mut |_| true);
        assert_eq!(s.p.health(), Health::Healthy);
    }
}
