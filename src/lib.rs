//! ipiece: a site-to-site VPN gateway appliance.
//!
//! Layers (see the README's architecture section):
//! - [`aws`]: the AWS side: the VPN connection's configuration XML imported
//!   into the TOML, and the route planner.
//! - [`config`]: the TOML model, validation with file:line:column, atomic edits.
//! - [`wg`]: WireGuard peers around boringtun's `Tunn` (index and key lookup,
//!   allowed IPs both ways, roaming), client-config rendering.
//! - [`wire`]: packet formats (IKEv2 payloads, ESP, NAT-T, IPv4 fragments,
//!   TCP MSS); [`ike`]: the IKEv2 state machine; [`esp`]: ESP CHILD SAs and
//!   the replay window; [`ipsec`]: the tunnels to the VGWs (routing,
//!   failover, probes).
//! - [`output`]: the cores' output port ([`output::Io`]), below [`wg`],
//!   [`ipsec`] and [`gateway`].
//! - [`gateway`]: the sans-IO core joining peers and routes: datagrams, TUN
//!   packets, ticks and config changes in; datagrams, TUN packets, events out.
//! - [`firewall`]: the firewall and NAT policy, its nftables rendering and
//!   its in-core evaluator for the WireGuard <-> ESP path.
//! - [`metrics`]: the Prometheus exposition rendered from the status.
//! - [`pfsense`]: `wgctl import pfsense`: a pfSense config.xml into the TOML.
//! - [`lan`]: the LAN services (DHCP and DNS by dnsmasq): its rendered
//!   configuration, the restart schedule, the lease file.
//! - [`dataplane`]: the thin tokio shell (UDP, TUN, timers, signals, the
//!   metrics listener, the dnsmasq child).
//! - [`control`]: the JSON control protocol over a Unix socket, and the
//!   WireGuard cross-platform userspace API (`wg show`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod esp;
pub mod firewall;
pub mod gateway;
pub mod ike;
pub mod ipsec;
pub mod lan;
pub mod metrics;
pub mod output;
pub mod pfsense;
pub mod wg;
pub mod wire;
