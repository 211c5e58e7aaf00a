//! AWS Site-to-Site VPN (virtual private gateway), the parts that need no
//! AWS SDK:
//!
//! - [`import`]: a VPN connection's `CustomerGatewayConfiguration` XML (a
//!   field of DescribeVpnConnections, saved to a file) read into [`import::VpnConfiguration`], two tunnels ordered by their
//!   AWS outside address, and written into `gateway.toml` as two
//!   `[[ipsec.tunnels]]` plus the VPC's prefixes ([`import::apply`]), the way
//!   `wgctl aws import --from-xml` does.
//! - [`ec2`]: the aws-sdk-ec2 side: reads the state for the planner and
//!   applies a plan (`wgctl aws plan` / `sync`), with errors worded for the
//!   operator.
//! - [`plan`]: the route planner: what must be created or deleted at AWS so
//!   that every on-prem prefix is a static route of the VPN connection and
//!   is routed to the VGW in each managed route table, Terraform-style
//!   rendering and exit codes. Pure: the caller reads the state from AWS and
//!   applies the operations.

pub mod ec2;
pub mod import;
pub mod plan;
