//! WireGuard: peers around boringtun's `Tunn` (the noise layer), the
//! allowed-IPs table, the per-source handshake limit, and the laptop's
//! client configuration.

pub mod allowed_ips;
pub mod client_config;
pub mod peers;
pub mod ratelimit;

pub use allowed_ips::AllowedIps;
pub use peers::{PeerSettings, PeerStatus, PeerTable, WgCounters};
