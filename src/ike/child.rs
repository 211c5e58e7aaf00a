//! CHILD_SA parameters handed to the ESP layer (RFC 7296 sections 1.3, 2.17).
//!
//! A CHILD_SA is a pair of ESP SAs: inbound (the SPI we chose, keyed with
//! the keys for the peer's direction) and outbound (the peer's SPI). "All
//! keys for SAs carrying data from the initiator to the responder are taken
//! before SAs going from the responder to the initiator" (2.17), where the
//! initiator is the initiator of the exchange that created the CHILD_SA.

use std::net::SocketAddr;
use std::time::Duration;

use super::crypto::{CryptoError, EspCipher, SecretBytes};
use super::keys::ChildSaKeys;
use super::proposal::EspSuite;
use crate::wire::TrafficSelector;

/// The keys of one direction of an ESP SA. Redacted in `Debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspKeys {
    /// Encryption key, with the 4-octet salt for GCM.
    pub encr: SecretBytes,
    /// Integrity key (empty for GCM).
    pub integ: SecretBytes,
}

/// Everything the ESP layer needs to install one CHILD_SA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSaParams {
    /// SPI of the inbound ESP SA (chosen by us).
    pub spi_in: u32,
    /// SPI of the outbound ESP SA (chosen by the peer).
    pub spi_out: u32,
    /// The negotiated algorithms.
    pub suite: EspSuite,
    /// Keys for packets we receive.
    pub inbound: EspKeys,
    /// Keys for packets we send.
    pub outbound: EspKeys,
    /// Our traffic selectors (after narrowing).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors (after narrowing).
    pub remote_ts: Vec<TrafficSelector>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// ESP in UDP on port 4500 (RFC 3948).
    pub encap: bool,
    /// Our outer address (port 4500 when encapsulated).
    pub local: SocketAddr,
    /// The peer's outer address.
    pub remote: SocketAddr,
    /// Hard time lifetime.
    pub lifetime: Duration,
    /// Byte lifetime for the ESP layer, if configured.
    pub lifetime_bytes: Option<u64>,
    /// Anti-replay window size.
    pub replay_window: u32,
}

impl ChildSaParams {
    /// The cipher for inbound packets.
    pub fn inbound_cipher(&self) -> Result<EspCipher, CryptoError> {
        EspCipher::new(
            self.suite.encr,
            self.suite.integ,
            self.inbound.encr.expose(),
            self.inbound.integ.expose(),
        )
    }

    /// The cipher for outbound packets.
    pub fn outbound_cipher(&self) -> Result<EspCipher, CryptoError> {
        EspCipher::new(
            self.suite.encr,
            self.suite.integ,
            self.outbound.encr.expose(),
            self.outbound.integ.expose(),
        )
    }
}

/// Splits CHILD_SA keying material by direction: `exchange_initiator` is
/// whether we initiated the exchange that created the SA.
pub(crate) fn split_keys(keys: ChildSaKeys, exchange_initiator: bool) -> (EspKeys, EspKeys) {
    let i = EspKeys {
        encr: keys.encr_i.clone(),
        integ: keys.integ_i.clone(),
    };
    let r = EspKeys {
        encr: keys.encr_r.clone(),
        integ: keys.integ_r.clone(),
    };
    if exchange_initiator {
        (r, i)
    } else {
        (i, r)
    }
}
