//! What one IKE SA needs to know about its tunnel: identities, the PSK,
//! proposals, traffic selectors, lifetimes, liveness and retransmission
//! policy (RFC 7296 sections 2.1, 2.4, 2.8, 2.9, 2.15).
//!
//! Defaults follow AWS Site-to-Site VPN's tunnel options (phase 1 lifetime
//! 28800 s, phase 2 3600 s, rekey margin 270 s with 100 % fuzz, DPD every 10 s
//! with a 30 s timeout, replay window 1024) and the retransmission schedule of
//! the strongSwan VGW emulation (2 s, x1.4, 5 retransmissions: about 32.7 s).

use std::time::Duration;

use ipnet::IpNet;

use super::crypto::SecretBytes;
use super::proposal::{Proposal, Protocol};
use crate::wire::Identity;

/// Retransmission of requests (RFC 7296 section 2.1): "the initiator MUST
/// retransmit the request until it has either received a response or deemed
/// the IKE SA to have failed", with the timeout growing exponentially.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitPolicy {
    /// The wait after the first transmission.
    pub initial: Duration,
    /// Each wait is the previous one times this factor (at least 1).
    pub factor: f64,
    /// How many retransmissions after the first transmission; the request
    /// fails when the wait after the last one runs out.
    pub tries: u32,
}

impl Default for RetransmitPolicy {
    fn default() -> Self {
        RetransmitPolicy {
            initial: Duration::from_secs(2),
            factor: 1.4,
            tries: 5,
        }
    }
}

impl RetransmitPolicy {
    /// The wait after transmission number `n` (0 for the first).
    pub fn timeout(&self, n: u32) -> Duration {
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let secs = self.initial.as_secs_f64() * factor.powi(n.min(64) as i32);
        Duration::try_from_secs_f64(secs.min(86_400.0)).unwrap_or(Duration::from_secs(86_400))
    }

    /// Time from the first transmission until the request is given up.
    pub fn total(&self) -> Duration {
        (0..=self.tries).map(|n| self.timeout(n)).sum()
    }
}

/// The configuration of one IKE SA (one tunnel), shared by the SAs that
/// replace each other over the tunnel's life.
#[derive(Debug, Clone)]
pub struct IkeConfig {
    /// Our identity (IDi or IDr). AWS identifies the customer gateway by its
    /// public IPv4 address (ID_IPV4_ADDR).
    pub local_id: Identity,
    /// The identity the peer must present; `None` means its IP address as an
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    pub remote_id: Option<Identity>,
    /// The pre-shared key (RFC 7296 section 2.15). Redacted in `Debug`.
    pub psk: SecretBytes,
    /// IKE proposals in order of preference; the KE payload of IKE_SA_INIT
    /// uses the first group of the first proposal.
    pub ike_proposals: Vec<Proposal>,
    /// ESP proposals; a DH group asks for PFS on CHILD_SA rekeys.
    pub esp_proposals: Vec<Proposal>,
    /// Our side's traffic selectors (TSi as initiator, TSr as responder).
    pub local_ts: Vec<IpNet>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<IpNet>,
    /// Hard lifetime of an IKE SA; it is rekeyed `rekey_margin` (minus
    /// jitter) before.
    pub ike_lifetime: Duration,
    /// Hard lifetime of a CHILD_SA.
    pub child_lifetime: Duration,
    /// How long before the hard lifetime a rekey starts.
    pub rekey_margin: Duration,
    /// Random extra margin, in percent of `rekey_margin` (AWS's fuzz): the
    /// rekey starts between `margin` and `margin * (1 + fuzz/100)` before
    /// the hard lifetime.
    pub rekey_fuzz_percent: u32,
    /// Byte lifetime of a CHILD_SA, for the ESP layer to enforce (it calls
    /// [`super::IkeSa::rekey_child`] when the soft limit is reached).
    pub child_lifetime_bytes: Option<u64>,
    /// Silence after which an empty INFORMATIONAL checks the peer (DPD);
    /// zero disables DPD.
    pub dpd_interval: Duration,
    /// How long a request may stay unanswered before the peer is declared
    /// dead (the retransmission schedule may end it earlier).
    pub dpd_timeout: Duration,
    /// Retransmission of our requests.
    pub retransmit: RetransmitPolicy,
    /// Use UDP encapsulation even without NAT (strongSwan `encap = yes`):
    /// the NAT_DETECTION_SOURCE_IP hash we send cannot match.
    pub force_encap: bool,
    /// Interval of NAT-keepalives from the side behind a NAT (RFC 3948 2.3).
    pub keepalive_interval: Duration,
    /// ESP anti-replay window, passed to the ESP layer.
    pub replay_window: u32,
    /// Send INITIAL_CONTACT in IKE_AUTH (RFC 7296 2.4): the peer drops the
    /// SAs it still has with us.
    pub initial_contact: bool,
}

impl IkeConfig {
    /// A configuration with AWS's defaults: `aes128-sha1-modp2048` for IKE
    /// and ESP (PFS with MODP 2048), 0.0.0.0/0 selectors on both sides.
    pub fn new(local_id: Identity, psk: SecretBytes) -> IkeConfig {
        let any: IpNet = "0.0.0.0/0".parse().expect("valid prefix");
        IkeConfig {
            local_id,
            remote_id: None,
            psk,
            ike_proposals: Proposal::parse_list(Protocol::Ike, "aes128-sha1-modp2048")
                .expect("valid proposal"),
            esp_proposals: Proposal::parse_list(Protocol::Esp, "aes128-sha1-modp2048")
                .expect("valid proposal"),
            local_ts: vec![any],
            remote_ts: vec![any],
            ike_lifetime: Duration::from_secs(28_800),
            child_lifetime: Duration::from_secs(3_600),
            rekey_margin: Duration::from_secs(270),
            rekey_fuzz_percent: 100,
            child_lifetime_bytes: None,
            dpd_interval: Duration::from_secs(10),
            dpd_timeout: Duration::from_secs(30),
            retransmit: RetransmitPolicy::default(),
            force_encap: false,
            keepalive_interval: Duration::from_secs(20),
            replay_window: 1024,
            initial_contact: true,
        }
    }

    /// The latest jitter a rekey may get: `rekey_margin * fuzz / 100`.
    pub fn max_jitter(&self) -> Duration {
        self.rekey_margin
            .saturating_mul(self.rekey_fuzz_percent)
            .checked_div(100)
            .unwrap_or_default()
    }

    /// The soft lifetime for a hard lifetime and a random value: `hard -
    /// margin - jitter`, with `jitter` uniform in `[0, max_jitter]`
    /// (RFC 7296 2.8: "the timing of rekeying requests SHOULD be jittered").
    pub(crate) fn soft_lifetime(&self, hard: Duration, random: u64) -> Duration {
        let max = self.max_jitter().as_millis() as u64;
        let jitter = Duration::from_millis(if max == 0 { 0 } else { random % (max + 1) });
        hard.saturating_sub(self.rekey_margin)
            .saturating_sub(jitter)
            .max(hard / 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_schedule_matches_strongswan_vgw() {
        let p = RetransmitPolicy::default();
        let total = p.total().as_secs_f64();
        assert!((total - 32.7).abs() < 0.2, "{total}");
        assert_eq!(p.timeout(0), Duration::from_secs(2));
    }

    #[test]
    fn soft_lifetime_in_range() {
        let cfg = IkeConfig::new(Identity::Fqdn("a".into()), SecretBytes::from_slice(b"k"));
        let hard = Duration::from_secs(3600);
        for r in [0u64, 1, 12345, u64::MAX] {
            let soft = cfg.soft_lifetime(hard, r);
            assert!(soft <= hard - cfg.rekey_margin);
            assert!(soft >= hard - cfg.rekey_margin - cfg.max_jitter());
        }
    }
}
