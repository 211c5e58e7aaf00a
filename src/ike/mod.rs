//! IKEv2 (RFC 7296): algorithms, key derivation, proposals, and the IKE SA
//! state machine.
//!
//! - [`crypto`]: the negotiable transforms (encryption, integrity, PRF, Diffie-Hellman) and the
//!   protection of SK payloads and ESP packets.
//! - [`keys`]: prf+, SKEYSEED and the IKE SA keys, CHILD_SA keying material, PSK authentication
//!   (RFC 7296 sections 2.13 to 2.18, 2.15).
//! - [`proposal`]: swanctl proposal strings, and the responder's proposal selection
//!   (RFC 7296 section 2.7).
//! - [`sa`]: the sans-IO IKE SA ([`IkeSa`]), initiator and responder, with its
//!   exchanges in [`exchange`]; [`config`] is what it needs to know about the
//!   tunnel, [`child`] what it hands to the ESP layer.
//! - [`natd`] (NAT detection, RFC 7296 2.23), [`cookie`] (2.6), [`ts`]
//!   (traffic selector narrowing, 2.9), [`message`] (SK payloads and
//!   proposals between the codecs and the algorithms).

pub mod child;
pub mod config;
pub mod cookie;
pub mod crypto;
mod dh_params;
pub mod exchange;
pub mod keys;
pub mod message;
pub mod natd;
pub mod proposal;
pub mod sa;
pub mod ts;

#[cfg(test)]
mod sa_tests;

pub use child::{ChildSaParams, EspKeys};
pub use config::{IkeConfig, RetransmitPolicy};
pub use cookie::{CookieCheck, CookieJar};
pub use natd::NatState;
pub use sa::{
    AuthFailure, ChildDownReason, ChildStatus, CloseReason, Event, IkeSa, IkeSaStatus, IkeState,
    ProtocolError, Rejected, Transmit,
};
