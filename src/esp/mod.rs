//! ESP (RFC 4303) in userspace: the anti-replay window, and (next) the
//! CHILD SA that seals and opens tunnel-mode packets.

pub mod replay;

pub use replay::{Replay, ReplayWindow};
