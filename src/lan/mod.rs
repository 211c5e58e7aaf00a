//! LAN services: DHCP for the LAN and DNS for the LAN and the laptops, served
//! by dnsmasq (a child of ipieced, see `dataplane/lan.rs`). This module is
//! the pure part:
//!
//! - [`render`]: dnsmasq's configuration file and the hosts file (the
//!   laptops' `<peer>.<vpn_subdomain>.<domain>` names and `[[dns.hosts]]`)
//!   from the TOML, and what a configuration change requires of the running
//!   dnsmasq ([`Change`]: nothing, a new hosts file and SIGHUP, a restart);
//! - [`leases`]: dnsmasq's lease file, parsed for `wgctl leases`;
//! - [`supervise`]: the restart schedule after dnsmasq exits (backoff) and
//!   the status `wgctl status` shows.

pub mod leases;
pub mod render;
pub mod supervise;

pub use leases::{parse_leases, Lease};
pub use render::{plan_change, render, Change, Paths, Rendered};
pub use supervise::{LanStatus, Supervisor};

use std::net::IpAddr;

use crate::config::{Config, PeerConfig};

/// The DNS servers of a laptop's client config: its own `dns` when set
/// (`wgctl add-peer --dns`), else the gateway's WireGuard address when the
/// gateway serves DNS (`[dns]`), else none.
pub fn client_dns(cfg: &Config, peer: &PeerConfig) -> Vec<IpAddr> {
    if !peer.dns.is_empty() {
        peer.dns.clone()
    } else if cfg.dns.is_some() {
        vec![cfg.wireguard.address.addr()]
    } else {
        Vec::new()
    }
}
