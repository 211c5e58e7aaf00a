//! AWS Site-to-Site VPN (virtual private gateway):
//!
//! - [`import`]: a VPN connection's `CustomerGatewayConfiguration` XML (a
//!   field of DescribeVpnConnections, saved to a file) read into [`import::VpnConfiguration`], two tunnels ordered by their
//!   AWS outside address, and written into `gateway.toml` as two
//!   `[[ipsec.tunnels]]` plus the VPC's prefixes ([`import::apply`]), the way
//!   `wgctl aws import --from-xml` does.
//! - [`options`]: a connection's `Options.TunnelOptions`, which win over the
//!   XML's sample values in an online import (`wgctl aws import VPN_ID`).
//! - [`ec2`]: the aws-sdk-ec2 side: reads the state for the planner (with
//!   AWS's tunnel telemetry) and applies a plan (`wgctl aws plan` / `sync`,
//!   the daemon's sync), reads a connection for the online import, with
//!   errors worded for the operator.
//! - [`sync`]: the daemon's sync schedule (interval with jitter, backoff)
//!   and the monitor comparing AWS's view of the tunnels with ipiece's.
//! - [`plan`]: the route planner: what must be created or deleted at AWS so
//!   that every on-prem prefix is a static route of the VPN connection and
//!   is routed to the VGW in each managed route table, Terraform-style
//!   rendering and exit codes. Pure: the caller reads the state from AWS and
//!   applies the operations.

pub mod ec2;
pub mod import;
pub mod options;
pub mod plan;
pub mod sync;
