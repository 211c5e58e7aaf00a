//! A VPN connection's `Options.TunnelOptions` (DescribeVpnConnections), the
//! tunnels' configured parameters, and what they change in an import.
//!
//! The CustomerGatewayConfiguration XML lists AWS's sample algorithms
//! whatever the tunnel options say; `TunnelOptions` holds the real ones
//! (`Phase1EncryptionAlgorithms`, `Phase1IntegrityAlgorithms`,
//! `Phase1DHGroupNumbers`, the same for phase 2, lifetimes, DPD timeout,
//! startup action, and the pre-shared key and inside CIDR). `wgctl aws
//! import VPN_ID` reads both and lets the options win where present:
//!
//! - matched to the XML's tunnels by outside IP address, never by index;
//! - pre-shared key and inside CIDR replace the XML's;
//! - proposals: an empty list means AWS's default (every value allowed). When
//!   every proposal of ipiece's defaults is allowed, nothing is written (the
//!   defaults apply, as they lie within AWS's default options); otherwise the
//!   proposals are built from the allowed values (AES-GCM in one proposal,
//!   AES-CBC with its integrity algorithms in another, DH groups strongest
//!   first among the cheap ones), so that what ipiece offers is what the
//!   tunnel accepts;
//! - lifetimes: written when they differ from the defaults (28800 s / 3600 s);
//! - DPD: `DpdTimeoutSeconds` becomes `dpd_timeout` (the interval stays the
//!   XML's, AWS's 10 s);
//! - startup action `start` (AWS initiates) becomes `start_action = "wait"`
//!   for a new tunnel table; `add` (the default) `initiate`.
//!
//! Pure: `src/aws/ec2.rs` turns the SDK's types into [`TunnelOptions`].

use std::net::IpAddr;

use ipnet::Ipv4Net;

use crate::config::{DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS};
use crate::ike::crypto::{DhGroup, SecretBytes};

/// One entry of `Options.TunnelOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelOptions {
    /// `OutsideIpAddress`: AWS's outside address of the tunnel.
    pub outside_ip: Option<IpAddr>,
    /// `PreSharedKey` (`Debug` hides it).
    pub psk: Option<SecretBytes>,
    /// `TunnelInsideCidr`.
    pub inside_cidr: Option<Ipv4Net>,
    /// Phase 1 (IKE SA).
    pub phase1: PhaseOptions,
    /// Phase 2 (CHILD SA).
    pub phase2: PhaseOptions,
    /// `DpdTimeoutSeconds`.
    pub dpd_timeout: Option<u64>,
    /// `StartupAction`: `add` (the customer gateway initiates) or `start`.
    pub startup_action: Option<String>,
}

/// The allowed values of one phase; an empty list means AWS's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseOptions {
    /// `AES128`, `AES256`, `AES128-GCM-16`, `AES256-GCM-16`.
    pub encryption: Vec<String>,
    /// `SHA1`, `SHA2-256`, `SHA2-384`, `SHA2-512`.
    pub integrity: Vec<String>,
    /// DH group numbers (2, 5, 14-24).
    pub dh_groups: Vec<u16>,
    /// `Phase1LifetimeSeconds` / `Phase2LifetimeSeconds`.
    pub lifetime: Option<u64>,
}

/// Our cipher keywords, preferred first, with AWS's names.
const CIPHERS: [(&str, &str, bool); 4] = [
    ("aes128gcm16", "AES128-GCM-16", true),
    ("aes256gcm16", "AES256-GCM-16", true),
    ("aes128", "AES128", false),
    ("aes256", "AES256", false),
];

/// Our integrity keywords, preferred first, with AWS's names.
const INTEGRITY: [(&str, &str); 4] = [
    ("sha256", "SHA2-256"),
    ("sha384", "SHA2-384"),
    ("sha512", "SHA2-512"),
    ("sha1", "SHA1"),
];

/// DH groups, preferred first: the cheap elliptic curves, then MODP by
/// size, the weak ones last (AWS picks the lowest number it accepts anyway).
const GROUPS: [u16; 13] = [19, 20, 21, 14, 15, 16, 17, 18, 24, 23, 22, 5, 2];

fn norm(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

impl PhaseOptions {
    fn cipher_allowed(&self, aws: &str) -> bool {
        self.encryption.is_empty() || self.encryption.iter().any(|e| norm(e) == aws)
    }

    fn integrity_allowed(&self, aws: &str) -> bool {
        self.integrity.is_empty() || self.integrity.iter().any(|e| norm(e) == aws)
    }

    fn group_allowed(&self, n: u16) -> bool {
        self.dh_groups.is_empty() || self.dh_groups.contains(&n)
    }

    /// Whether one swanctl proposal (`aes128gcm16-prfsha256-ecp256`) uses
    /// only allowed values. Unknown keywords make it not allowed.
    fn allows(&self, proposal: &str) -> bool {
        proposal.split('-').all(|kw| {
            let kw = kw.strip_prefix("prf").unwrap_or(kw);
            if let Some((_, aws, _)) = CIPHERS.iter().find(|(k, _, _)| *k == kw) {
                return self.cipher_allowed(aws);
            }
            if let Some((_, aws)) = INTEGRITY.iter().find(|(k, _)| *k == kw) {
                return self.integrity_allowed(aws);
            }
            if let Some(g) = DhGroup::ALL.iter().find(|g| g.name() == kw) {
                return self.group_allowed(g.transform_id());
            }
            false
        })
    }

    /// Values the options name that ipiece does not know, for a warning.
    pub fn unknown_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.encryption {
            if !CIPHERS.iter().any(|(_, a, _)| *a == norm(e)) {
                out.push(format!("encryption {}", e.trim()));
            }
        }
        for i in &self.integrity {
            if !INTEGRITY.iter().any(|(_, a)| *a == norm(i)) {
                out.push(format!("integrity {}", i.trim()));
            }
        }
        for g in &self.dh_groups {
            if DhGroup::from_transform(*g).is_none() {
                out.push(format!("DH group {g}"));
            }
        }
        out
    }

    /// The swanctl proposals for this phase: `None` when every proposal of
    /// `defaults` is allowed (the defaults apply), else proposals built from
    /// the allowed values (`Err` when none of them is usable). `ike`: IKE
    /// proposals name PRFs with AES-GCM; ESP proposals carry the DH groups
    /// for PFS, as AWS always uses it.
    pub fn proposals(&self, defaults: &str, ike: bool) -> Result<Option<String>, String> {
        if defaults.split(',').all(|p| self.allows(p)) {
            return Ok(None);
        }
        let groups: Vec<&str> = GROUPS
            .iter()
            .filter(|n| self.group_allowed(**n))
            .filter_map(|n| DhGroup::from_transform(*n).map(DhGroup::name))
            .collect();
        let integ: Vec<&str> = INTEGRITY
            .iter()
            .filter(|(_, a)| self.integrity_allowed(a))
            .map(|(k, _)| *k)
            .collect();
        let ciphers = |aead: bool| -> Vec<&str> {
            CIPHERS
                .iter()
                .filter(|(_, a, g)| *g == aead && self.cipher_allowed(a))
                .map(|(k, _, _)| *k)
                .collect()
        };
        if groups.is_empty() {
            return Err("none of the allowed DH groups is supported by ipiece".into());
        }
        let mut out = Vec::new();
        let gcm = ciphers(true);
        // An AEAD IKE proposal needs a PRF: from the integrity list.
        if !gcm.is_empty() && (!ike || !integ.is_empty()) {
            let mut parts: Vec<String> = gcm.iter().map(|s| s.to_string()).collect();
            if ike {
                parts.extend(integ.iter().map(|i| format!("prf{i}")));
            }
            parts.extend(groups.iter().map(|s| s.to_string()));
            out.push(parts.join("-"));
        }
        let cbc = ciphers(false);
        if !cbc.is_empty() && !integ.is_empty() {
            let parts: Vec<&str> = cbc
                .iter()
                .chain(integ.iter())
                .chain(groups.iter())
                .copied()
                .collect();
            out.push(parts.join("-"));
        }
        if out.is_empty() {
            return Err(
                "no usable combination of the allowed encryption, integrity and DH values".into(),
            );
        }
        Ok(Some(out.join(",")))
    }
}

/// What the tunnel options decide for one tunnel's proposals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionsChoice {
    /// IKE proposals to write (`None`: the defaults).
    pub ike_proposals: Option<String>,
    /// ESP proposals to write (`None`: the defaults).
    pub esp_proposals: Option<String>,
    /// Problems, for warnings.
    pub warnings: Vec<String>,
}

impl TunnelOptions {
    /// The proposals for this tunnel.
    pub fn choice(&self) -> OptionsChoice {
        let mut c = OptionsChoice::default();
        for (phase, what) in [(&self.phase1, "phase 1"), (&self.phase2, "phase 2")] {
            let unknown = phase.unknown_values();
            if !unknown.is_empty() {
                c.warnings.push(format!(
                    "{what} allows values ipiece does not implement ({}); they are not offered",
                    unknown.join(", ")
                ));
            }
        }
        match self.phase1.proposals(DEFAULT_IKE_PROPOSALS, true) {
            Ok(p) => c.ike_proposals = p,
            Err(e) => c.warnings.push(format!(
                "phase 1 options: {e}; ipiece's default IKE proposals are used"
            )),
        }
        match self.phase2.proposals(DEFAULT_ESP_PROPOSALS, false) {
            Ok(p) => c.esp_proposals = p,
            Err(e) => c.warnings.push(format!(
                "phase 2 options: {e}; ipiece's default ESP proposals are used"
            )),
        }
        c
    }

    /// True when AWS starts the tunnel (`StartupAction` `start`).
    pub fn aws_initiates(&self) -> bool {
        self.startup_action
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("start"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::proposal::{Proposal, Protocol};

    fn phase(enc: &[&str], integ: &[&str], groups: &[u16]) -> PhaseOptions {
        PhaseOptions {
            encryption: enc.iter().map(|s| s.to_string()).collect(),
            integrity: integ.iter().map(|s| s.to_string()).collect(),
            dh_groups: groups.to_vec(),
            lifetime: None,
        }
    }

    #[test]
    fn aws_defaults_keep_our_defaults() {
        let all = phase(
            &["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"],
            &["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"],
            &[2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
        );
        assert_eq!(all.proposals(DEFAULT_IKE_PROPOSALS, true), Ok(None));
        assert_eq!(all.proposals(DEFAULT_ESP_PROPOSALS, false), Ok(None));
        // Empty lists are AWS's defaults too.
        let empty = PhaseOptions::default();
        assert_eq!(empty.proposals(DEFAULT_IKE_PROPOSALS, true), Ok(None));
    }

    #[test]
    fn narrowed_options_give_exactly_the_allowed_values() {
        let p1 = phase(&[" aes256 "], &["SHA2-256"], &[14]);
        let ike = p1.proposals(DEFAULT_IKE_PROPOSALS, true).unwrap().unwrap();
        assert_eq!(ike, "aes256-sha256-modp2048");
        let p2 = phase(&["AES256-GCM-16", "AES128"], &["SHA2-384"], &[20, 14]);
        let esp = p2.proposals(DEFAULT_ESP_PROPOSALS, false).unwrap().unwrap();
        assert_eq!(
            esp,
            "aes256gcm16-ecp384-modp2048,aes128-sha384-ecp384-modp2048"
        );
        let ike = p2.proposals(DEFAULT_IKE_PROPOSALS, true).unwrap().unwrap();
        assert_eq!(
            ike,
            "aes256gcm16-prfsha384-ecp384-modp2048,aes128-sha384-ecp384-modp2048"
        );
        // Every generated string is a valid proposal list for its protocol.
        for (s, proto) in [(&esp, Protocol::Esp), (&ike, Protocol::Ike)] {
            Proposal::parse_list(proto, s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn unusable_options_are_errors_with_warnings() {
        let p = phase(&["CHACHA20"], &["SHA2-256"], &[14]);
        assert!(p.proposals(DEFAULT_IKE_PROPOSALS, true).is_err());
        assert_eq!(p.unknown_values(), vec!["encryption CHACHA20".to_owned()]);
        let t = TunnelOptions {
            phase1: p,
            ..TunnelOptions::default()
        };
        let c = t.choice();
        assert_eq!(c.ike_proposals, None);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn startup_action() {
        let mut t = TunnelOptions::default();
        assert!(!t.aws_initiates());
        t.startup_action = Some("start".into());
        assert!(t.aws_initiates());
        t.startup_action = Some("add".into());
        assert!(!t.aws_initiates());
    }
}
