//! Per-source limit on WireGuard handshake messages (WireGuard whitepaper,
//! section 5.3 "Denial of Service Mitigation & Cookies"; the token bucket of
//! kernel WireGuard's `ratelimiter.c` and wireguard-go's `ratelimiter`).
//!
//! boringtun's `RateLimiter` is global: past its limit it answers with
//! cookie replies, but a host that holds a valid cookie for its own address
//! (mac2) passes it as often as it likes, and each such message costs the
//! single event loop X25519 work. This table gives every source address a
//! token bucket of [`PACKETS_PER_SECOND`] messages a second with a burst of
//! [`PACKETS_BURSTABLE`]; what exceeds it is dropped before any
//! Diffie-Hellman. IPv6 sources share one bucket per /64 (a host usually
//! owns a whole /64), as the kernel does.
//!
//! Where it applies: to every handshake initiation and response that passed
//! boringtun's mac1 and load check, whether or not the gateway is under
//! load. wireguard-go and the kernel consult their limiter only under load
//! (and then only for messages with a valid mac2); here boringtun's load
//! state is global and cannot be read from outside, and one thread does all
//! the work, so the budget always applies. The price: a host that spoofs a
//! laptop's address at more than 20 mac1-valid handshakes a second delays
//! that laptop's handshakes (README, "Security model").
//!
//! Sans-IO: the caller passes `now`. Memory is bounded: at most
//! [`MAX_ENTRIES`] sources are tracked; entries idle for longer than
//! [`GC_AFTER`] are garbage-collected by [`HandshakeLimiter::gc`] (call it
//! about once a second) and on demand when the table is full. A new source
//! arriving while the table is still full is refused, as the kernel does
//! (`wg_ratelimiter_allow` fails when `total_entries` reaches its maximum).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sustained handshake messages per second and source.
pub const PACKETS_PER_SECOND: u64 = 20;
/// Messages a quiet source may send at once.
pub const PACKETS_BURSTABLE: u64 = 5;
/// Sources tracked at most (each entry is a few dozen bytes).
pub const MAX_ENTRIES: usize = 4096;
/// An entry idle this long carries a full bucket and is dropped.
pub const GC_AFTER: Duration = Duration::from_secs(1);

/// Nanoseconds of credit one message costs.
const PACKET_COST: u64 = 1_000_000_000 / PACKETS_PER_SECOND;
/// A full bucket.
const MAX_TOKENS: u64 = PACKET_COST * PACKETS_BURSTABLE;

/// The unit a budget belongs to: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// One IPv4 address (IPv4-mapped IPv6 addresses included).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl SourceKey {
    /// The budget `ip` draws from.
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(a) => SourceKey::V4(a.octets()),
            IpAddr::V6(a) => {
                let mut k = [0u8; 8];
                k.copy_from_slice(&a.octets()[..8]);
                SourceKey::V6(k)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    last: Instant,
    /// Credit in nanoseconds, at most [`MAX_TOKENS`].
    tokens: u64,
}

/// What [`HandshakeLimiter::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the source's budget: process the message.
    Allow,
    /// The source spent its budget: drop the message.
    Limited,
    /// The table is full of active sources: drop the message.
    TableFull,
}

/// Token buckets per source (see the module documentation).
#[derive(Debug, Default)]
pub struct HandshakeLimiter {
    table: HashMap<SourceKey, Bucket>,
}

impl HandshakeLimiter {
    /// An empty table.
    pub fn new() -> HandshakeLimiter {
        HandshakeLimiter::default()
    }

    /// Sources currently tracked.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Charges one handshake message from `ip` at `now`. A `now` earlier
    /// than the entry's last charge adds no credit (the clock never runs
    /// backwards for the bucket).
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> Verdict {
        let key = SourceKey::of(ip);
        if let Some(b) = self.table.get_mut(&key) {
            let elapsed = now.saturating_duration_since(b.last);
            let credit = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            b.tokens = b.tokens.saturating_add(credit).min(MAX_TOKENS);
            b.last = b.last.max(now);
            return if b.tokens >= PACKET_COST {
                b.tokens -= PACKET_COST;
                Verdict::Allow
            } else {
                Verdict::Limited
            };
        }
        if self.table.len() >= MAX_ENTRIES {
            self.gc(now);
            if self.table.len() >= MAX_ENTRIES {
                return Verdict::TableFull;
            }
        }
        self.table.insert(
            key,
            Bucket {
                last: now,
                tokens: MAX_TOKENS - PACKET_COST,
            },
        );
        Verdict::Allow
    }

    /// Drops the entries idle for longer than [`GC_AFTER`] (their bucket
    /// would be full again: forgetting them changes no verdict).
    pub fn gc(&mut self, now: Instant) {
        self.table
            .retain(|_, b| now.saturating_duration_since(b.last) <= GC_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_twenty_a_second() {
        let mut l = HandshakeLimiter::new();
        let t0 = Instant::now();
        let a = ip("198.51.100.7");
        let burst = (0..100)
            .filter(|_| l.allow(t0, a) == Verdict::Allow)
            .count();
        assert_eq!(burst as u64, PACKETS_BURSTABLE);
        // 5,000 evenly over the next second: 20 more.
        let mut n = 0;
        for i in 1..=5000u64 {
            let t = t0 + Duration::from_nanos(i * 200_000);
            if l.allow(t, a) == Verdict::Allow {
                n += 1;
            }
        }
        assert_eq!(n, PACKETS_PER_SECOND);
        // Another source is not affected.
        assert_eq!(l.allow(t0, ip("198.51.100.8")), Verdict::Allow);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64_and_mapped_v4_is_v4() {
        let mut l = HandshakeLimiter::new();
        let t = Instant::now();
        for i in 0..PACKETS_BURSTABLE {
            let a = ip(&format!("2001:db8:1:2::{:x}", i + 1));
            assert_eq!(l.allow(t, a), Verdict::Allow);
        }
        assert_eq!(l.allow(t, ip("2001:db8:1:2:ffff::9")), Verdict::Limited);
        assert_eq!(l.allow(t, ip("2001:db8:1:3::1")), Verdict::Allow);
        for _ in 0..PACKETS_BURSTABLE {
            l.allow(t, ip("192.0.2.1"));
        }
        assert_eq!(l.allow(t, ip("::ffff:192.0.2.1")), Verdict::Limited);
    }

    #[test]
    fn table_is_bounded_and_collected() {
        let mut l = HandshakeLimiter::new();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES as u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            assert_eq!(l.allow(t0, a), Verdict::Allow);
        }
        assert_eq!(l.len(), MAX_ENTRIES);
        assert_eq!(l.allow(t0, ip("192.0.2.200")), Verdict::TableFull);
        assert_eq!(l.len(), MAX_ENTRIES);
        // Known sources still get their budget while the table is full.
        assert_eq!(l.allow(t0, ip("10.0.0.1")), Verdict::Allow);
        // Once they have been idle, a newcomer evicts them by collection.
        let later = t0 + GC_AFTER + Duration::from_millis(1);
        assert_eq!(l.allow(later, ip("192.0.2.200")), Verdict::Allow);
        assert_eq!(l.len(), 1);
        l.gc(later + GC_AFTER + Duration::from_millis(1));
        assert!(l.is_empty());
    }

    proptest! {
        /// Whatever the arrival pattern (sources, time steps, clock going
        /// backwards, GC calls), one source never gets more than
        /// burst + rate * elapsed messages, and the table never exceeds its
        /// bound.
        #[test]
        fn never_more_than_the_budget(
            events in prop::collection::vec((0u8..6, 0u64..120_000_000, any::<bool>(), any::<bool>()), 1..600)
        ) {
            let mut l = HandshakeLimiter::new();
            let t0 = Instant::now() + Duration::from_secs(10);
            let mut t = t0;
            let (mut tmin, mut tmax) = (t0, t0);
            let mut allowed = [0u64; 6];
            for (src, step, back, gc) in events {
                t = if back { t.checked_sub(Duration::from_nanos(step / 8)).unwrap_or(t) } else { t + Duration::from_nanos(step) };
                tmin = tmin.min(t);
                tmax = tmax.max(t);
                if gc {
                    l.gc(t);
                }
                let a = IpAddr::from([203, 0, 113, src]);
                if l.allow(t, a) == Verdict::Allow {
                    allowed[src as usize] += 1;
                }
                prop_assert!(l.len() <= MAX_ENTRIES);
            }
            // Credit accrues only while the clock moves past its previous maximum.
            let span = tmax.duration_since(tmin);
            let bound = PACKETS_BURSTABLE + (span.as_nanos() as u64) / PACKET_COST;
            for n in allowed {
                prop_assert!(n <= bound, "{n} allowed, bound {bound}");
            }
        }
    }
}
