//! WireGuard: peers around boringtun's `Tunn` (the noise layer), the
//! allowed-IPs table, and the laptop's client configuration.

pub mod allowed_ips;
pub mod client_config;
pub mod peers;

pub use allowed_ips::AllowedIps;
pub use peers::{PeerSettings, PeerStatus, PeerTable, WgCounters};
