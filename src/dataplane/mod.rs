//! The tokio shell around the sans-IO [`crate::gateway::Gateway`]: UDP, the
//! TUN device, kernel routes, timers, signals, the control and UAPI sockets,
//! the metrics listener, dnsmasq for the LAN services (`lan.rs`).
//! It only moves bytes and calls the core.

pub mod aws;
pub mod firewall;
pub mod kernel;
pub mod lan;
pub mod metrics;
pub mod run;
pub mod tun;
pub mod udp;

pub use run::{run, DaemonError};
