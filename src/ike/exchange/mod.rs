//! The exchanges of an IKE SA, one file each (strongSwan's task map): each
//! adds to [`super::IkeSa`] the building of its requests and the processing
//! of its requests and responses.
//!
//! - [`init`]: IKE_SA_INIT, NAT detection, cookies, INVALID_KE_PAYLOAD
//!   (RFC 7296 1.2, 2.6, 2.23).
//! - [`auth`]: IKE_AUTH with PSK and the first CHILD_SA (1.2, 2.9, 2.15).
//! - [`child`]: CREATE_CHILD_SA for CHILD_SAs and their rekey collisions
//!   (1.3, 2.8, 2.8.1), Delete of CHILD_SAs.
//! - [`ike_rekey`]: rekeying the IKE SA and its collisions (2.18, 2.8.2).
//! - [`info`]: INFORMATIONAL requests: DPD, Delete, notifications (1.4).

pub mod auth;
pub mod child;
pub mod ike_rekey;
pub mod info;
pub mod init;
