//! IKEv2 (RFC 7296): algorithms, key derivation, proposals, and (next) the IKE SA state machine.
//!
//! - [`crypto`]: the negotiable transforms (encryption, integrity, PRF, Diffie-Hellman) and the
//!   protection of SK payloads and ESP packets.
//! - [`keys`]: prf+, SKEYSEED and the IKE SA keys, CHILD_SA keying material, PSK authentication
//!   (RFC 7296 sections 2.13 to 2.18, 2.15).
//! - [`proposal`]: swanctl proposal strings, and the responder's proposal selection
//!   (RFC 7296 section 2.7).

pub mod crypto;
mod dh_params;
pub mod keys;
pub mod proposal;

#[cfg(test)]
mod interop_tests;
