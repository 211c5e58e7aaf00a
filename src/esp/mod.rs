//! ESP (RFC 4303) in userspace: the anti-replay window and the CHILD SA
//! that seals and opens tunnel-mode packets.

pub mod replay;
pub mod sa;

pub use replay::{Replay, ReplayWindow};
pub use sa::{ChildCounters, ChildSa, EspError};
