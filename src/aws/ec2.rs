//! The EC2 side of `wgctl aws plan` / `sync`: reads the state the planner
//! needs with aws-sdk-ec2 and applies a plan's operations.
//!
//! - Reading: DescribeVpnConnections (the connection's VGW and static
//!   routes), DescribeVpnGateways (the VPC the VGW is attached to),
//!   DescribeRouteTables (paginated: the managed tables, their routes with
//!   targets and origins, and the VGWs propagating into them).
//! - Applying: CreateVpnConnectionRoute, EnableVgwRoutePropagation,
//!   CreateRoute (to the VGW), DeleteRoute, DeleteVpnConnectionRoute, in
//!   the plan's order, stopping at the first error.
//!
//! Credentials come from the standard chain (environment, shared profile,
//! SSO, instance role); they are resolved once up front so that their
//! absence gives one clear message. Timeouts: connect 3 s, each attempt
//! 10 s, the whole operation 20 s, so an unreachable endpoint fails fast.
//! Retries: AWS's standard mode (3 attempts, exponential backoff with
//! jitter, throttling included), off when `IPIECE_AWS_NO_RETRY=1` (tests).

use std::time::Duration;

#[cfg(feature = "aws")]
use aws_config::retry::RetryConfig;
#[cfg(feature = "aws")]
use aws_config::timeout::TimeoutConfig;
#[cfg(feature = "aws")]
use aws_config::{BehaviorVersion, Region};
#[cfg(feature = "aws")]
use aws_sdk_ec2::config::ProvideCredentials;
#[cfg(feature = "aws")]
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
#[cfg(feature = "aws")]
use aws_sdk_ec2::types::{Filter, VpnConnection};
#[cfg(feature = "aws")]
use aws_sdk_ec2::Client;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use super::options::TunnelOptions;
use super::plan::{Operation, PlanInput, RouteTable, VpnRoute};
use crate::config::{AwsConfig, Config};
// What only the EC2 client (the `aws` feature) needs.
#[cfg(feature = "aws")]
use super::options::PhaseOptions;
#[cfg(feature = "aws")]
use super::plan::{RouteOrigin, RouteTarget, TableRoute, VpnRouteState};
#[cfg(feature = "aws")]
use crate::config::{AwsRouting, RouteTables};
#[cfg(feature = "aws")]
use crate::ike::crypto::SecretBytes;

/// TCP (and TLS) connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout of one attempt of an operation.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of an operation, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long resolving credentials may take (IMDS included).
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that turns the SDK's retries off (tests).
pub const NO_RETRY_ENV: &str = "IPIECE_AWS_NO_RETRY";

/// An AWS failure, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// The credential chain found nothing.
    #[error(
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
         AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE with ~/.aws/credentials, or \
         run on an instance with a role ({0})"
    )]
    NoCredentials(String),
    /// The credentials were refused (unknown key, bad signature, expired token).
    #[error("AWS refused the credentials ({code}): {message}")]
    BadCredentials {
        /// The error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The credentials lack an IAM permission.
    #[error(
        "access denied: the AWS credentials are not allowed to call {action}; add `{action}` \
         to the IAM policy (README: AWS)"
    )]
    AccessDenied {
        /// The IAM action, `ec2:CreateRoute`.
        action: String,
    },
    /// The VPN connection does not exist in the region.
    #[error(
        "VPN connection {id} not found in region {region}: check aws.vpn_connection_id, and \
         aws.region (a connection is only visible in its own region)"
    )]
    UnknownVpnConnection {
        /// `vpn-...`.
        id: String,
        /// The region asked.
        region: String,
    },
    /// A managed route table does not exist.
    #[error("{0}")]
    BadRouteTables(String),
    /// EC2 throttled us (after the retries).
    #[error("AWS throttled {operation} (RequestLimitExceeded): try again later or raise aws.sync_interval")]
    Throttled {
        /// The EC2 operation.
        operation: String,
    },
    /// The endpoint did not answer.
    #[error(
        "the EC2 endpoint {endpoint} is unreachable ({detail}): check the network, aws.region \
         and aws.endpoint_url"
    )]
    Unreachable {
        /// The endpoint (URL or `the endpoint of region R`).
        endpoint: String,
        /// What happened (timeout, connection refused, DNS).
        detail: String,
    },
    /// Anything else.
    #[error("{operation} failed: {message}")]
    Other {
        /// The EC2 operation.
        operation: String,
        /// The error, with its causes.
        message: String,
    },
}

/// The state at AWS the planner needs (and the VPC it was read from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsState {
    /// The VPN connection's VGW (`vgw-...`).
    pub vgw_id: String,
    /// The VPC the VGW is attached to, if it is.
    pub vpc_id: Option<String>,
    /// The VPN connection's static routes.
    pub vpn_routes: Vec<VpnRoute>,
    /// The managed route tables.
    pub route_tables: Vec<RouteTable>,
    /// AWS's view of the tunnels (`VgwTelemetry`).
    pub telemetry: Vec<TunnelTelemetry>,
}

/// One tunnel as AWS sees it (`VgwTelemetry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelTelemetry {
    /// AWS's outside address of the tunnel.
    pub outside_ip: IpAddr,
    /// True when AWS reports the tunnel `UP`.
    pub up: bool,
    /// AWS's status message (`IPSEC IS DOWN`, ...).
    pub message: String,
    /// When AWS last saw the status change (RFC 3339), if it says.
    pub last_change: Option<String>,
    /// Routes AWS accepted over the tunnel (BGP).
    pub accepted_routes: i32,
}

/// A VPN connection as `wgctl aws import VPN_ID` reads it.
#[derive(Debug, Clone)]
pub struct OnlineVpn {
    /// The CustomerGatewayConfiguration XML.
    pub xml: String,
    /// `Options.TunnelOptions`, possibly empty.
    pub tunnel_options: Vec<TunnelOptions>,
    /// `Options.StaticRoutesOnly`.
    pub static_routes_only: Option<bool>,
    /// The VGW.
    pub vgw_id: String,
    /// The VPC the VGW is attached to.
    pub vpc_id: Option<String>,
    /// The VPC's associated IPv4 CIDR blocks.
    pub vpc_cidrs: Vec<IpNet>,
}

/// The prefixes AWS must route to this gateway: the WireGuard subnet and the
/// LAN prefixes, IPv4 only (a VPN connection's static routes are IPv4).
pub fn desired_prefixes(cfg: &Config) -> Vec<IpNet> {
    let mut out = vec![cfg.wg_subnet()];
    out.extend(cfg.gateway.lan_prefixes.iter().copied());
    out.retain(|p| matches!(p, IpNet::V4(_)));
    out
}

/// A connected EC2 client for one `[aws]` section.
#[cfg(feature = "aws")]
pub struct Ec2 {
    client: Client,
    cfg: AwsConfig,
}

#[cfg(feature = "aws")]
impl Ec2 {
    /// Loads the credential chain and builds the client. Fails with
    /// [`AwsError::NoCredentials`] when the chain finds nothing.
    pub async fn connect(cfg: &AwsConfig) -> Result<Ec2, AwsError> {
        let retry = if std::env::var(NO_RETRY_ENV).is_ok_and(|v| v == "1") {
            RetryConfig::disabled()
        } else {
            RetryConfig::standard().with_max_attempts(3)
        };
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        let Some(provider) = sdk.credentials_provider() else {
            return Err(AwsError::NoCredentials("no credential provider".into()));
        };
        match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(AwsError::NoCredentials(error_chain(&e))),
            Err(_) => {
                return Err(AwsError::NoCredentials(format!(
                    "the credential chain did not answer within {} s",
                    CREDENTIALS_TIMEOUT.as_secs()
                )))
            }
        }
        let mut b = aws_sdk_ec2::config::Builder::from(&sdk);
        if let Some(url) = &cfg.endpoint_url {
            b = b.endpoint_url(url);
        }
        Ok(Ec2 {
            client: Client::from_conf(b.build()),
            cfg: cfg.clone(),
        })
    }

    fn endpoint(&self) -> String {
        match &self.cfg.endpoint_url {
            Some(u) => u.clone(),
            None => format!("of region {}", self.cfg.region),
        }
    }

    fn map<E>(
        &self,
        operation: &str,
        e: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        map_error(operation, &self.endpoint(), &self.cfg, e)
    }

    /// Reads the VPN connection, its VGW's VPC and the managed route tables.
    pub async fn read_state(&self) -> Result<AwsState, AwsError> {
        let vpn = self.describe_vpn().await?;
        let vgw_id = self.vgw_of(&vpn)?;
        let mut vpn_routes = Vec::new();
        for r in vpn.routes() {
            let Some(prefix) = r.destination_cidr_block().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let state = VpnRouteState::from_aws(r.state().map(|s| s.as_str()).unwrap_or(""));
            vpn_routes.push(VpnRoute { prefix, state });
        }

        let vpc_id = self.vpc_of(&vgw_id).await?;

        let route_tables = match &self.cfg.route_tables {
            RouteTables::Ids(ids) if ids.is_empty() => Vec::new(),
            RouteTables::Ids(ids) => {
                let tables = self
                    .route_tables(None, Some(ids.clone()))
                    .await
                    .map_err(|e| match e {
                        AwsError::Other { message, .. }
                            if message.contains("InvalidRouteTableID") =>
                        {
                            AwsError::BadRouteTables(format!(
                                "a route table of aws.route_tables does not exist in region {}: {message}",
                                self.cfg.region
                            ))
                        }
                        e => e,
                    })?;
                if let Some(vpc) = &vpc_id {
                    let foreign: Vec<&str> = tables
                        .iter()
                        .filter(|(_, v)| v.as_deref().is_some_and(|v| v != vpc))
                        .map(|(t, _)| t.id.as_str())
                        .collect();
                    if !foreign.is_empty() {
                        return Err(AwsError::BadRouteTables(format!(
                            "route table(s) {} of aws.route_tables are not in {vpc}, the VPC \
                             of {vgw_id}",
                            foreign.join(", ")
                        )));
                    }
                }
                let mut out = Vec::new();
                for id in ids {
                    match tables.iter().find(|(t, _)| &t.id == id) {
                        Some((t, _)) => out.push(t.clone()),
                        None => {
                            return Err(AwsError::BadRouteTables(format!(
                                "route table {id} of aws.route_tables does not exist in region {}",
                                self.cfg.region
                            )))
                        }
                    }
                }
                out
            }
            RouteTables::All => {
                let Some(vpc) = &vpc_id else {
                    return Err(AwsError::BadRouteTables(format!(
                        "aws.route_tables = \"all\", but {vgw_id} is not attached to a VPC"
                    )));
                };
                self.route_tables(Some(vpc.clone()), None)
                    .await?
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect()
            }
        };
        Ok(AwsState {
            vgw_id,
            vpc_id,
            vpn_routes,
            route_tables,
            telemetry: vpn.vgw_telemetry().iter().filter_map(telemetry).collect(),
        })
    }

    /// DescribeVpnConnections for `aws.vpn_connection_id`: the connection,
    /// or [`AwsError::UnknownVpnConnection`] (also when it was deleted).
    async fn describe_vpn(&self) -> Result<VpnConnection, AwsError> {
        let id = &self.cfg.vpn_connection_id;
        let out = self
            .client
            .describe_vpn_connections()
            .vpn_connection_ids(id)
            .send()
            .await
            .map_err(|e| self.map("DescribeVpnConnections", e))?;
        let unknown = || AwsError::UnknownVpnConnection {
            id: id.clone(),
            region: self.cfg.region.clone(),
        };
        let vpn = out
            .vpn_connections
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.vpn_connection_id() == Some(id.as_str()))
            .ok_or_else(unknown)?;
        if vpn.state().is_some_and(|s| s.as_str() == "deleted") {
            return Err(unknown());
        }
        Ok(vpn)
    }

    /// The connection's VGW; a transit gateway connection is refused.
    fn vgw_of(&self, vpn: &VpnConnection) -> Result<String, AwsError> {
        vpn.vpn_gateway_id()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::Other {
                operation: "DescribeVpnConnections".into(),
                message: format!(
                    "VPN connection {} is not on a virtual private gateway (a transit \
                 gateway connection?): ipiece manages VGW routes only",
                    self.cfg.vpn_connection_id
                ),
            })
    }

    /// DescribeVpnGateways: the VPC the VGW is attached to, if any.
    async fn vpc_of(&self, vgw_id: &str) -> Result<Option<String>, AwsError> {
        let gws = self
            .client
            .describe_vpn_gateways()
            .vpn_gateway_ids(vgw_id)
            .send()
            .await
            .map_err(|e| self.map("DescribeVpnGateways", e))?;
        Ok(gws
            .vpn_gateways()
            .iter()
            .flat_map(|g| g.vpc_attachments())
            .find(|a| a.state().is_some_and(|s| s.as_str() == "attached"))
            .and_then(|a| a.vpc_id().map(str::to_owned)))
    }

    /// What `wgctl aws import VPN_ID` needs: DescribeVpnConnections (the
    /// CustomerGatewayConfiguration XML, Options.TunnelOptions, the routing
    /// type), DescribeVpnGateways (the VGW's VPC) and DescribeVpcs (its
    /// associated IPv4 CIDR blocks).
    pub async fn read_import(&self) -> Result<OnlineVpn, AwsError> {
        let vpn = self.describe_vpn().await?;
        let vgw_id = self.vgw_of(&vpn)?;
        let id = &self.cfg.vpn_connection_id;
        let xml = vpn
            .customer_gateway_configuration()
            .filter(|x| !x.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| AwsError::Other {
                operation: "DescribeVpnConnections".into(),
                message: format!(
                    "VPN connection {id} carries no CustomerGatewayConfiguration (state {}): \
                     AWS adds it once the connection is available",
                    vpn.state().map(|s| s.as_str()).unwrap_or("unknown")
                ),
            })?;
        let opts = vpn.options();
        let tunnel_options = opts
            .map(|o| o.tunnel_options().iter().map(tunnel_options).collect())
            .unwrap_or_default();
        let static_routes_only = opts.and_then(|o| o.static_routes_only());
        let vpc_id = self.vpc_of(&vgw_id).await?;
        let mut vpc_cidrs = Vec::new();
        if let Some(vpc) = &vpc_id {
            let out = self
                .client
                .describe_vpcs()
                .vpc_ids(vpc)
                .send()
                .await
                .map_err(|e| self.map("DescribeVpcs", e))?;
            for v in out.vpcs() {
                let assoc = v.cidr_block_association_set();
                let mut blocks: Vec<&str> = assoc
                    .iter()
                    .filter(|a| {
                        a.cidr_block_state()
                            .and_then(|s| s.state())
                            .is_none_or(|s| s.as_str() == "associated")
                    })
                    .filter_map(|a| a.cidr_block())
                    .collect();
                if blocks.is_empty() {
                    blocks.extend(v.cidr_block());
                }
                for b in blocks {
                    if let Ok(n) = b.trim().parse::<IpNet>() {
                        if !vpc_cidrs.contains(&n) {
                            vpc_cidrs.push(n);
                        }
                    }
                }
            }
        }
        Ok(OnlineVpn {
            xml,
            tunnel_options,
            static_routes_only,
            vgw_id,
            vpc_id,
            vpc_cidrs,
        })
    }

    /// DescribeRouteTables, all pages: the tables with their VPC.
    async fn route_tables(
        &self,
        vpc: Option<String>,
        ids: Option<Vec<String>>,
    ) -> Result<Vec<(RouteTable, Option<String>)>, AwsError> {
        let mut req = self.client.describe_route_tables().set_route_table_ids(ids);
        if let Some(vpc) = vpc {
            req = req.filters(Filter::builder().name("vpc-id").values(vpc).build());
        }
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("DescribeRouteTables", e))?;
            for t in page.route_tables() {
                let Some(id) = t.route_table_id() else {
                    continue;
                };
                let routes = t.routes().iter().filter_map(table_route).collect();
                let propagating_vgws = t
                    .propagating_vgws()
                    .iter()
                    .filter_map(|p| p.gateway_id().map(str::to_owned))
                    .collect();
                out.push((
                    RouteTable {
                        id: id.to_owned(),
                        routes,
                        propagating_vgws,
                    },
                    t.vpc_id().map(str::to_owned),
                ));
            }
        }
        Ok(out)
    }

    /// The planner's input for this state.
    pub fn plan_input(&self, cfg: &Config, state: &AwsState, prune: bool) -> PlanInput {
        PlanInput {
            desired: desired_prefixes(cfg),
            vgw_id: state.vgw_id.clone(),
            vpn_connection_id: self.cfg.vpn_connection_id.clone(),
            vpn_routes: state.vpn_routes.clone(),
            route_tables: state.route_tables.clone(),
            propagation: self.cfg.routing == AwsRouting::Propagation,
            prune,
        }
    }

    /// Applies the operations in order; stops at the first failure, which
    /// comes with the number of operations applied before it.
    pub async fn apply(
        &self,
        vgw_id: &str,
        ops: &[Operation],
        mut on_done: impl FnMut(&Operation),
    ) -> Result<(), (usize, AwsError)> {
        let vpn = &self.cfg.vpn_connection_id;
        for (i, op) in ops.iter().enumerate() {
            let r = match op {
                Operation::CreateVpnConnectionRoute { prefix } => self
                    .client
                    .create_vpn_connection_route()
                    .vpn_connection_id(vpn)
                    .destination_cidr_block(prefix.to_string())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| self.map("CreateVpnConnectionRoute", e)),
                Operation::DeleteVpnConnectionRoute { prefix } => self
                    .client
                    .delete_vpn_connection_route()
                    .vpn_connection_id(vpn)
                    .destination_cidr_block(prefix.to_string())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| self.map("DeleteVpnConnectionRoute", e)),
                Operation::EnableVgwRoutePropagation { table } => self
                    .client
                    .enable_vgw_route_propagation()
                    .route_table_id(table)
                    .gateway_id(vgw_id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| self.map("EnableVgwRoutePropagation", e)),
                Operation::CreateRoute { table, prefix } => {
                    let mut req = self
                        .client
                        .create_route()
                        .route_table_id(table)
                        .gateway_id(vgw_id);
                    req = match prefix {
                        IpNet::V4(_) => req.destination_cidr_block(prefix.to_string()),
                        IpNet::V6(_) => req.destination_ipv6_cidr_block(prefix.to_string()),
                    };
                    req.send()
                        .await
                        .map(drop)
                        .map_err(|e| self.map("CreateRoute", e))
                }
                Operation::DeleteRoute { table, prefix } => {
                    let mut req = self.client.delete_route().route_table_id(table);
                    req = match prefix {
                        IpNet::V4(_) => req.destination_cidr_block(prefix.to_string()),
                        IpNet::V6(_) => req.destination_ipv6_cidr_block(prefix.to_string()),
                    };
                    req.send()
                        .await
                        .map(drop)
                        .map_err(|e| self.map("DeleteRoute", e))
                }
            };
            r.map_err(|e| (i, e))?;
            on_done(op);
        }
        Ok(())
    }
}

/// Without the `aws` feature (builds that cannot afford aws-sdk-ec2, such as
/// the fuzz targets under sanitizers) there is no EC2 client: [`Ec2::connect`]
/// says so, and no value of this type exists.
#[cfg(not(feature = "aws"))]
pub struct Ec2 {
    never: std::convert::Infallible,
}

#[cfg(not(feature = "aws"))]
impl Ec2 {
    /// Always fails: this build has no EC2 client.
    pub async fn connect(_cfg: &AwsConfig) -> Result<Ec2, AwsError> {
        Err(AwsError::Other {
            operation: "connecting to EC2".into(),
            message: "this ipiece was built without the `aws` feature (no aws-sdk-ec2)".into(),
        })
    }

    /// Unreachable: no [`Ec2`] exists in this build.
    pub async fn read_state(&self) -> Result<AwsState, AwsError> {
        match self.never {}
    }

    /// Unreachable: no [`Ec2`] exists in this build.
    pub async fn read_import(&self) -> Result<OnlineVpn, AwsError> {
        match self.never {}
    }

    /// Unreachable: no [`Ec2`] exists in this build.
    pub fn plan_input(&self, _cfg: &Config, _state: &AwsState, _prune: bool) -> PlanInput {
        match self.never {}
    }

    /// Unreachable: no [`Ec2`] exists in this build.
    pub async fn apply(
        &self,
        _vgw_id: &str,
        _ops: &[Operation],
        _on_done: impl FnMut(&Operation),
    ) -> Result<(), (usize, AwsError)> {
        match self.never {}
    }
}

/// A route of DescribeRouteTables for the planner; routes to prefix lists
/// (never ours) are left out.
#[cfg(feature = "aws")]
fn telemetry(t: &aws_sdk_ec2::types::VgwTelemetry) -> Option<TunnelTelemetry> {
    Some(TunnelTelemetry {
        outside_ip: t.outside_ip_address()?.trim().parse().ok()?,
        up: t
            .status()
            .is_some_and(|s| s.as_str().eq_ignore_ascii_case("up")),
        message: t.status_message().unwrap_or_default().to_owned(),
        last_change: t.last_status_change().and_then(|d| {
            d.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        accepted_routes: t.accepted_route_count().unwrap_or(0),
    })
}

#[cfg(feature = "aws")]
fn tunnel_options(t: &aws_sdk_ec2::types::TunnelOption) -> TunnelOptions {
    fn names<'a>(v: impl Iterator<Item = Option<&'a str>>) -> Vec<String> {
        v.flatten().map(|s| s.trim().to_owned()).collect()
    }
    fn groups(v: impl Iterator<Item = Option<i32>>) -> Vec<u16> {
        v.flatten().filter_map(|n| u16::try_from(n).ok()).collect()
    }
    let secs = |n: Option<i32>| n.and_then(|n| u64::try_from(n).ok());
    TunnelOptions {
        outside_ip: t.outside_ip_address().and_then(|s| s.trim().parse().ok()),
        psk: t
            .pre_shared_key()
            .map(|k| SecretBytes::new(k.trim().as_bytes().to_vec())),
        inside_cidr: t.tunnel_inside_cidr().and_then(|s| s.trim().parse().ok()),
        phase1: PhaseOptions {
            encryption: names(t.phase1_encryption_algorithms().iter().map(|a| a.value())),
            integrity: names(t.phase1_integrity_algorithms().iter().map(|a| a.value())),
            dh_groups: groups(t.phase1_dh_group_numbers().iter().map(|g| g.value())),
            lifetime: secs(t.phase1_lifetime_seconds()),
        },
        phase2: PhaseOptions {
            encryption: names(t.phase2_encryption_algorithms().iter().map(|a| a.value())),
            integrity: names(t.phase2_integrity_algorithms().iter().map(|a| a.value())),
            dh_groups: groups(t.phase2_dh_group_numbers().iter().map(|g| g.value())),
            lifetime: secs(t.phase2_lifetime_seconds()),
        },
        dpd_timeout: secs(t.dpd_timeout_seconds()),
        startup_action: t.startup_action().map(str::to_owned),
    }
}

#[cfg(feature = "aws")]
fn table_route(r: &aws_sdk_ec2::types::Route) -> Option<TableRoute> {
    let destination: IpNet = r
        .destination_cidr_block()
        .or(r.destination_ipv6_cidr_block())?
        .parse()
        .ok()?;
    let target = if let Some(g) = r.gateway_id() {
        RouteTarget::Gateway(g.to_owned())
    } else {
        let other = [
            r.nat_gateway_id(),
            r.transit_gateway_id(),
            r.vpc_peering_connection_id(),
            r.network_interface_id(),
            r.instance_id(),
            r.egress_only_internet_gateway_id(),
            r.local_gateway_id(),
            r.carrier_gateway_id(),
            r.core_network_arn(),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or("unknown");
        RouteTarget::Other(other.to_owned())
    };
    let origin = match r.origin().map(|o| o.as_str()) {
        Some("CreateRouteTable") => RouteOrigin::CreateRouteTable,
        Some("EnableVgwRoutePropagation") => RouteOrigin::EnableVgwRoutePropagation,
        _ => RouteOrigin::CreateRoute,
    };
    Some(TableRoute {
        destination,
        target,
        origin,
    })
}

/// Maps an SDK error to what the operator can act on.
#[cfg(feature = "aws")]
fn map_error<E>(
    operation: &str,
    endpoint: &str,
    cfg: &AwsConfig,
    e: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let unreachable = |detail: String| AwsError::Unreachable {
        endpoint: endpoint.to_owned(),
        detail,
    };
    match &e {
        SdkError::TimeoutError(_) => {
            return unreachable(format!(
                "no answer to {operation} within {} s",
                OPERATION_TIMEOUT.as_secs()
            ))
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            return unreachable(format!("timed out: {}", error_chain(&e)))
        }
        SdkError::DispatchFailure(d) if d.is_io() => return unreachable(error_chain(&e)),
        _ => {}
    }
    let code = e.code().unwrap_or_default().to_owned();
    let message = e.message().unwrap_or_default().to_owned();
    match code.as_str() {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            AwsError::AccessDenied {
                action: format!("ec2:{operation}"),
            }
        }
        "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "RequestExpired" => AwsError::BadCredentials { code, message },
        "InvalidVpnConnectionID.NotFound" | "InvalidVpnConnectionID.Malformed" => {
            AwsError::UnknownVpnConnection {
                id: cfg.vpn_connection_id.clone(),
                region: cfg.region.clone(),
            }
        }
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => AwsError::Throttled {
            operation: operation.to_owned(),
        },
        "" => AwsError::Other {
            operation: operation.to_owned(),
            message: match e.raw_response() {
                Some(r) => format!(
                    "HTTP {} from {endpoint} without an EC2 error (is it an EC2 endpoint?): {}",
                    r.status().as_u16(),
                    error_chain(&e)
                ),
                None => error_chain(&e),
            },
        },
        _ => AwsError::Other {
            operation: operation.to_owned(),
            message: format!("{code}: {message}"),
        },
    }
}

/// One line for an applied operation: `CreateRoute rtb-1 172.16.4.0/24 -> vgw-1`.
pub fn describe_operation(op: &Operation, vpn_connection_id: &str, vgw_id: &str) -> String {
    match op {
        Operation::CreateVpnConnectionRoute { prefix } => {
            format!("CreateVpnConnectionRoute {vpn_connection_id} {prefix}")
        }
        Operation::DeleteVpnConnectionRoute { prefix } => {
            format!("DeleteVpnConnectionRoute {vpn_connection_id} {prefix}")
        }
        Operation::EnableVgwRoutePropagation { table } => {
            format!("EnableVgwRoutePropagation {table} from {vgw_id}")
        }
        Operation::CreateRoute { table, prefix } => {
            format!("CreateRoute {table} {prefix} -> {vgw_id}")
        }
        Operation::DeleteRoute { table, prefix } => {
            format!("DeleteRoute {table} {prefix} -> {vgw_id}")
        }
    }
}

/// An error and its causes, `a: b: c`, without repeats (the SDK's errors
/// often repeat their source in their own message).
#[cfg(any(feature = "aws", test))]
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let m = err.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner detail")]
    struct Inner;

    #[test]
    fn error_chain_joins_causes() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner detail");
    }

    #[test]
    fn operations_are_described() {
        let p: IpNet = "172.16.4.0/24".parse().unwrap();
        assert_eq!(
            describe_operation(
                &Operation::CreateRoute {
                    table: "rtb-1".into(),
                    prefix: p
                },
                "vpn-1",
                "vgw-1"
            ),
            "CreateRoute rtb-1 172.16.4.0/24 -> vgw-1"
        );
        assert_eq!(
            describe_operation(
                &Operation::CreateVpnConnectionRoute { prefix: p },
                "vpn-1",
                "vgw-1"
            ),
            "CreateVpnConnectionRoute vpn-1 172.16.4.0/24"
        );
    }
}
