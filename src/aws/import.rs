//! AWS's `CustomerGatewayConfiguration` XML, read into a model of the VPN
//! connection's two tunnels, and written into `gateway.toml`.
//!
//! The XML (the `CustomerGatewayConfiguration` field of CreateVpnConnection
//! and DescribeVpnConnections, e.g. saved with `aws ec2
//! describe-vpn-connections --vpn-connection-ids vpn-... --query
//! 'VpnConnections[0].CustomerGatewayConfiguration' --output text`) looks
//! like this (see `shared/reference/aws-vpn.md`):
//!
//! ```text
//! vpn_connection[@id]
//!   customer_gateway_id, vpn_gateway_id, vpn_connection_type (ipsec.1),
//!   vpn_connection_attributes (NoBGPVPNConnection; absent with BGP)
//!   ipsec_tunnel (x2)
//!     customer_gateway / vpn_gateway
//!       tunnel_outside_address/ip_address
//!       tunnel_inside_address/{ip_address, network_mask, network_cidr}
//!       bgp/{asn, hold_time}            (BGP connections only)
//!     ike/{authentication_protocol, encryption_protocol, lifetime,
//!          perfect_forward_secrecy, mode, pre_shared_key}
//!     ipsec/{protocol, authentication_protocol, encryption_protocol, lifetime,
//!            perfect_forward_secrecy, mode, clear_df_bit,
//!            fragmentation_before_encryption, tcp_mss_adjustment,
//!            dead_peer_detection/{interval, retries}}
//! ```
//!
//! [`VpnConfiguration::parse`] accepts the `ipsec_tunnel` blocks in either
//! order and the elements inside them in any order, trims whitespace around
//! every value, and orders the tunnels by ascending AWS (VGW) outside address,
//! Terraform's `tunnel1`/`tunnel2` convention. Required: both outside
//! addresses, the customer gateway's inside address with its prefix length,
//! and the pre-shared key; everything else is optional (our defaults apply).
//! A tunnel whose key is kept in AWS Secrets Manager (a `PreSharedKeyArn`,
//! or `pre_shared_key_arn`, instead of the key) is refused with a message
//! naming the ARN. Errors name the file, line and column; they never contain
//! a key.
//!
//! # Proposals and lifetimes
//!
//! The algorithms in this XML are AWS's *sample* values (AES-128-CBC,
//! SHA-1, DH group 2, 28800 s / 3600 s), the same for every connection
//! whatever its tunnel options say (those are in DescribeVpnConnections'
//! `Options.TunnelOptions`). Copying them would hurt: AWS picks the lowest
//! values among the proposals it accepts, whatever our order, so offering
//! `aes128-sha1-modp1024`, even after our defaults, makes SHA-1 with the
//! 1024-bit group the suite in use. So, per direction (IKE, ESP):
//!
//! - the XML's algorithms are AWS's sample set: no proposal is written; the
//!   tunnel uses ipiece's defaults, which lie inside AWS's default tunnel
//!   options (and a value already in the file is kept);
//! - the XML names other algorithms (it was generated or edited for narrowed
//!   tunnel options): that proposal is written first, followed by our
//!   defaults, so that the first KE payload matches what the tunnel wants
//!   and a later widening of the tunnel options still negotiates;
//! - an algorithm ipiece cannot map: a warning, and no proposal is written.
//!
//! Lifetimes are written only when they differ from AWS's (and our) defaults
//! of 28800 s and 3600 s, and then both. DPD is always written from the XML
//! (`dpd_interval` = interval, `dpd_timeout` = interval x retries).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use roxmltree::{Document, Node, ParsingOptions};

use crate::config::edit::{ConfigEditor, EditError, NewTunnel, SecretChange, Upsert};
use crate::config::{
    parse_identity, Config, PskParseError, StartAction, DEFAULT_CHILD_LIFETIME,
    DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_LIFETIME, DEFAULT_IKE_PROPOSALS, MAX_PSK_LEN, MIN_PSK_LEN,
};
use crate::ike::crypto::{DhGroup, SecretBytes};
use crate::ike::proposal::{Proposal, Protocol};

use super::options::TunnelOptions;

/// The proposal AWS's sample configuration describes, for IKE and ESP alike
/// (AES-128-CBC, SHA-1, DH group 2).
pub const AWS_SAMPLE_PROPOSAL: &str = "aes128-sha1-modp1024";
/// Priority of the first imported tunnel (the lower AWS outside address).
pub const FIRST_TUNNEL_PRIORITY: u32 = 100;
/// Priority of the second imported tunnel.
pub const SECOND_TUNNEL_PRIORITY: u32 = 200;
/// Largest XML file read (AWS's are a few kilobytes).
const MAX_XML_LEN: u64 = 1 << 20;

/// A VPN connection as described by its `CustomerGatewayConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnConfiguration {
    /// `vpn_connection/@id` (`vpn-...`).
    pub vpn_connection_id: Option<String>,
    /// `customer_gateway_id` (`cgw-...`).
    pub customer_gateway_id: Option<String>,
    /// `vpn_gateway_id` (`vgw-...`).
    pub vpn_gateway_id: Option<String>,
    /// `vpn_connection_type` (`ipsec.1`).
    pub connection_type: Option<String>,
    /// `vpn_connection_attributes` (`NoBGPVPNConnection` for static routing;
    /// absent for BGP).
    pub attributes: Option<String>,
    /// The two tunnels, by ascending AWS outside address.
    pub tunnels: [AwsTunnel; 2],
}

/// One `ipsec_tunnel` of the XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTunnel {
    /// Our outside address as AWS knows it: the customer gateway's IP
    /// address, which AWS expects as our IKE identity.
    pub customer_outside_address: IpAddr,
    /// AWS's (the VGW's) outside address of this tunnel.
    pub vgw_outside_address: IpAddr,
    /// The tunnel inside CIDR, a /30: AWS at network + 1, us at network + 2.
    pub inside_cidr: Ipv4Net,
    /// The pre-shared key (whitespace around it removed). `Debug` hides it.
    pub psk: SecretBytes,
    /// Phase 1 (`ike`) parameters.
    pub ike: PhaseParams,
    /// Phase 2 (`ipsec`) parameters.
    pub ipsec: PhaseParams,
    /// `ipsec/dead_peer_detection`.
    pub dpd: Option<Dpd>,
    /// `ipsec/tcp_mss_adjustment` (informational: ipiece does not clamp MSS).
    pub tcp_mss_adjustment: Option<u16>,
    /// The BGP part of the tunnel, for BGP connections.
    pub bgp: Option<TunnelBgp>,
    /// The tunnel's `Options.TunnelOptions` entry, when the import read the
    /// connection from AWS ([`VpnConfiguration::merge_tunnel_options`]):
    /// its proposals, lifetimes, DPD timeout and startup action win over
    /// the XML's sample values.
    pub options: Option<TunnelOptions>,
}

/// The algorithms and lifetime of one phase, as the XML spells them
/// (trimmed); `None` when the element is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseParams {
    /// `encryption_protocol`: `aes-128-cbc`, `aes-256-cbc`, `aes-128-gcm-16`, ...
    pub encryption: Option<String>,
    /// `authentication_protocol`: `sha1`, `sha2-256` (IKE), `hmac-sha1-96`,
    /// `hmac-sha2-256-128` (ESP), ...
    pub authentication: Option<String>,
    /// `perfect_forward_secrecy`: `group2`, `group14`, ... (the DH group).
    pub pfs: Option<String>,
    /// `lifetime`, in seconds.
    pub lifetime: Option<Duration>,
}

/// Dead peer detection as AWS runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpd {
    /// `interval`, in seconds.
    pub interval: u32,
    /// `retries`.
    pub retries: u32,
}

impl Dpd {
    /// `dpd_timeout` for this DPD: `interval x retries` (AWS declares the
    /// peer dead after that many unanswered intervals), at least
    /// `interval + 1` (our `dpd_timeout` must exceed `dpd_interval`).
    pub fn timeout_secs(&self) -> u64 {
        let interval = u64::from(self.interval);
        (interval * u64::from(self.retries)).max(interval + 1)
    }
}

/// The `bgp` elements of a tunnel (BGP connections only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelBgp {
    /// `customer_gateway/bgp/asn`.
    pub customer_asn: Option<u32>,
    /// `vpn_gateway/bgp/asn` (AWS's side).
    pub aws_asn: Option<u32>,
    /// `hold_time`, in seconds.
    pub hold_time: Option<u32>,
}

/// Why an import failed. Never contains a key.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The XML file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The XML file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a well-formed XML document.
    #[error("{}:{line}:{column}: not a well-formed XML document: {message}", path.display())]
    Malformed {
        /// The XML file.
        path: PathBuf,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The parser's message.
        message: String,
    },
    /// The document is XML but not a usable VPN connection configuration.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The XML file.
        path: PathBuf,
        /// 1-based line of the element concerned.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong.
        message: String,
    },
    /// A tunnel's pre-shared key is kept in AWS Secrets Manager.
    #[error(
        "{}:{line}:{column}: the pre-shared key of the tunnel to {vgw} is stored in AWS Secrets Manager ({arn}), not in this file: \
         fetch the secret's value (e.g. `aws secretsmanager get-secret-value --secret-id {arn}`), \
         put the key into that tunnel's <ike><pre_shared_key> element of a copy of this file, and import the copy",
        path.display()
    )]
    PskInSecretsManager {
        /// The XML file.
        path: PathBuf,
        /// 1-based line of the ARN's element.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The tunnel's AWS outside address.
        vgw: IpAddr,
        /// The secret's ARN.
        arn: String,
    },
    /// The name prefix does not make valid tunnel names.
    #[error("name prefix `{0}`: tunnel names are `<prefix>-1` and `<prefix>-2`, 1 to 32 of A-Z a-z 0-9 _ . -, so use 1 to 30 of those")]
    NamePrefix(String),
    /// A tunnel of the file has an imported tunnel's name but another peer.
    #[error(
        "{}: tunnel `{name}` has remote_address {existing}, which is neither AWS outside address of this VPN connection ({a}, {b}); \
         remove that tunnel (or rename it), or import with another --name-prefix",
        file.display()
    )]
    NameTaken {
        /// The configuration file.
        file: PathBuf,
        /// The tunnel name.
        name: String,
        /// Its `remote_address` in the file.
        existing: IpAddr,
        /// The first imported tunnel's AWS outside address.
        a: IpAddr,
        /// The second one's.
        b: IpAddr,
    },
    /// Editing the configuration failed.
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// Text position of `node` in its document.
fn pos(node: Node<'_, '_>) -> (u32, u32) {
    let p = node.document().text_pos_at(node.range().start);
    (p.row, p.col)
}

/// The first child element named `name` (namespaces ignored).
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The text of `node` (its text children, CDATA included), trimmed.
fn text_of(node: Node<'_, '_>) -> String {
    node.children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Reads the document's pieces, locating errors in `path`.
struct Reader<'p> {
    path: &'p Path,
}

impl Reader<'_> {
    fn invalid(&self, at: Node<'_, '_>, message: impl Into<String>) -> ImportError {
        let (line, column) = pos(at);
        ImportError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// The element at `names` below `node`, or an error naming the missing
    /// path at the deepest element found.
    fn require<'a, 'i>(
        &self,
        node: Node<'a, 'i>,
        names: &[&str],
        what: &str,
    ) -> Result<Node<'a, 'i>, ImportError> {
        let mut at = node;
        for (i, name) in names.iter().enumerate() {
            match child(at, name) {
                Some(n) => at = n,
                None => {
                    return Err(self.invalid(
                        at,
                        format!(
                            "{what}: <{}> has no <{}>",
                            at.tag_name().name(),
                            names[i..].join("><")
                        ),
                    ))
                }
            }
        }
        Ok(at)
    }

    /// The trimmed text at `names` below `node`, `None` when absent or empty.
    fn optional_text(&self, node: Node<'_, '_>, names: &[&str]) -> Option<(String, (u32, u32))> {
        let mut at = node;
        for name in names {
            at = child(at, name)?;
        }
        let t = text_of(at);
        (!t.is_empty()).then(|| (t, pos(at)))
    }

    fn parse_value<T: std::str::FromStr>(
        &self,
        node: Node<'_, '_>,
        names: &[&str],
        what: &str,
    ) -> Result<Option<T>, ImportError> {
        let Some((text, (line, column))) = self.optional_text(node, names) else {
            return Ok(None);
        };
        text.parse::<T>()
            .map(Some)
            .map_err(|_| ImportError::Invalid {
                path: self.path.to_path_buf(),
                line,
                column,
                message: format!(
                    "<{}> `{}` is not {what}",
                    names.join("><"),
                    text.escape_debug()
                ),
            })
    }

    fn address(&self, tunnel: Node<'_, '_>, side: &str, what: &str) -> Result<IpAddr, ImportError> {
        let node = self.require(
            tunnel,
            &[side, "tunnel_outside_address", "ip_address"],
            what,
        )?;
        let t = text_of(node);
        t.parse::<IpAddr>().map_err(|_| {
            self.invalid(
                node,
                format!("{what}: `{}` is not an IP address", t.escape_debug()),
            )
        })
    }

    fn phase(&self, tunnel: Node<'_, '_>, name: &str) -> Result<PhaseParams, ImportError> {
        let Some(node) = child(tunnel, name) else {
            return Ok(PhaseParams::default());
        };
        let text = |key: &str| self.optional_text(node, &[key]).map(|(t, _)| t);
        Ok(PhaseParams {
            encryption: text("encryption_protocol"),
            authentication: text("authentication_protocol"),
            pfs: text("perfect_forward_secrecy"),
            lifetime: self
                .parse_value::<u64>(node, &["lifetime"], "a lifetime in seconds")?
                .map(Duration::from_secs),
        })
    }

    /// The tunnel's inside CIDR, from the customer gateway's inside address
    /// and prefix length, checked against AWS's +1 / +2 convention.
    fn inside(&self, tunnel: Node<'_, '_>, what: &str) -> Result<Ipv4Net, ImportError> {
        let inside = self.require(tunnel, &["customer_gateway", "tunnel_inside_address"], what)?;
        let ip_node = self.require(inside, &["ip_address"], what)?;
        let ip_text = text_of(ip_node);
        let ip: IpAddr = ip_text.parse().map_err(|_| {
            self.invalid(
                ip_node,
                format!(
                    "{what}: inside address `{}` is not an IP address",
                    ip_text.escape_debug()
                ),
            )
        })?;
        let IpAddr::V4(ip) = ip else {
            return Err(self.invalid(
                ip_node,
                format!("{what}: inside address {ip} is IPv6; ipiece's inside_cidr is an IPv4 /30"),
            ));
        };
        let len = match self.parse_value::<u8>(inside, &["network_cidr"], "a prefix length")? {
            Some(l) => l,
            None => match self.parse_value::<Ipv4Addr>(inside, &["network_mask"], "a network mask")? {
                Some(mask) => {
                    let bits = u32::from(mask);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return Err(self.invalid(inside, format!("{what}: network_mask {mask} is not contiguous")));
                    }
                    bits.leading_ones() as u8
                }
                None => {
                    return Err(self.invalid(
                        inside,
                        format!("{what}: <tunnel_inside_address> has neither <network_cidr> nor <network_mask>"),
                    ))
                }
            },
        };
        if len != 30 {
            return Err(self.invalid(
                inside,
                format!("{what}: the inside network is a /{len}; AWS's (and ipiece's) is a /30"),
            ));
        }
        let net = Ipv4Net::new(ip, 30)
            .expect("30 is a valid IPv4 prefix length")
            .trunc();
        let range: Ipv4Net = crate::config::INSIDE_CIDR_RANGE
            .parse()
            .expect("constant parses");
        if !range.contains(&net) {
            return Err(self.invalid(
                ip_node,
                format!("{what}: inside network {net} is not inside {range}"),
            ));
        }
        let base = u32::from(net.network());
        if u32::from(ip) != base + 2 {
            return Err(self.invalid(
                ip_node,
                format!("{what}: our inside address {ip} is not {net}'s second address; ipiece places AWS at network + 1 and itself at network + 2, as AWS does"),
            ));
        }
        if let Some((aws, (line, column))) = self.optional_text(
            tunnel,
            &["vpn_gateway", "tunnel_inside_address", "ip_address"],
        ) {
            if aws.parse::<Ipv4Addr>().ok().map(u32::from) != Some(base + 1) {
                return Err(ImportError::Invalid {
                    path: self.path.to_path_buf(),
                    line,
                    column,
                    message: format!(
                        "{what}: AWS's inside address `{}` is not {net}'s first address",
                        aws.escape_debug()
                    ),
                });
            }
        }
        Ok(net)
    }

    /// The pre-shared key, or the Secrets Manager error when only an ARN is there.
    fn psk(
        &self,
        tunnel: Node<'_, '_>,
        vgw: IpAddr,
        what: &str,
    ) -> Result<SecretBytes, ImportError> {
        let key_node = child(tunnel, "ike").and_then(|ike| child(ike, "pre_shared_key"));
        let key = key_node.map(text_of).unwrap_or_default();
        let arn_error = |node: Node<'_, '_>, arn: String| {
            let (line, column) = pos(node);
            ImportError::PskInSecretsManager {
                path: self.path.to_path_buf(),
                line,
                column,
                vgw,
                arn,
            }
        };
        if key.starts_with("arn:") {
            return Err(arn_error(key_node.expect("a key was read"), key));
        }
        if key.is_empty() {
            // `PreSharedKeyArn` (the API's name) or `pre_shared_key_arn`
            // (the XML's style), wherever it is in the tunnel.
            let arn = tunnel.descendants().find(|n| {
                n.is_element()
                    && n.tag_name()
                        .name()
                        .replace(['_', '-'], "")
                        .eq_ignore_ascii_case("presharedkeyarn")
            });
            if let Some(node) = arn {
                return Err(arn_error(node, text_of(node)));
            }
            return Err(match key_node {
                Some(n) => self.invalid(n, format!("{what}: <pre_shared_key> is empty")),
                None => self
                    .require(tunnel, &["ike", "pre_shared_key"], what)
                    .err()
                    .unwrap_or_else(|| self.invalid(tunnel, format!("{what}: no pre-shared key"))),
            });
        }
        let reason = if !key.bytes().all(|b| matches!(b, b' '..=b'~')) {
            Some(PskParseError::NotPrintable)
        } else if !(MIN_PSK_LEN..=MAX_PSK_LEN).contains(&key.len()) {
            Some(PskParseError::Length(key.len()))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(self.invalid(
                key_node.expect("a key was read"),
                format!("{what}: the pre-shared key is not usable: {reason}"),
            ));
        }
        Ok(SecretBytes::new(key.into_bytes()))
    }

    fn bgp(&self, tunnel: Node<'_, '_>) -> Result<Option<TunnelBgp>, ImportError> {
        let cgw = child(tunnel, "customer_gateway").and_then(|n| child(n, "bgp"));
        let vgw = child(tunnel, "vpn_gateway").and_then(|n| child(n, "bgp"));
        if cgw.is_none() && vgw.is_none() {
            return Ok(None);
        }
        let asn = |n: Option<Node<'_, '_>>| -> Result<Option<u32>, ImportError> {
            match n {
                Some(n) => self.parse_value::<u32>(n, &["asn"], "an AS number"),
                None => Ok(None),
            }
        };
        let hold = |n: Option<Node<'_, '_>>| -> Result<Option<u32>, ImportError> {
            match n {
                Some(n) => self.parse_value::<u32>(n, &["hold_time"], "a hold time in seconds"),
                None => Ok(None),
            }
        };
        Ok(Some(TunnelBgp {
            customer_asn: asn(cgw)?,
            aws_asn: asn(vgw)?,
            hold_time: hold(cgw)?.or(hold(vgw)?),
        }))
    }

    fn tunnel(&self, node: Node<'_, '_>) -> Result<AwsTunnel, ImportError> {
        let (line, _) = pos(node);
        let what = format!("the <ipsec_tunnel> at line {line}");
        let customer_outside_address = self.address(node, "customer_gateway", &what)?;
        let vgw_outside_address = self.address(node, "vpn_gateway", &what)?;
        let what = format!("the tunnel to {vgw_outside_address}");
        let inside_cidr = self.inside(node, &what)?;
        let psk = self.psk(node, vgw_outside_address, &what)?;
        let ike = self.phase(node, "ike")?;
        let ipsec = self.phase(node, "ipsec")?;
        let dpd_node = child(node, "ipsec").and_then(|n| child(n, "dead_peer_detection"));
        let dpd = match dpd_node {
            None => None,
            Some(n) => {
                let interval =
                    self.parse_value::<u32>(n, &["interval"], "an interval in seconds")?;
                let retries = self.parse_value::<u32>(n, &["retries"], "a number of retries")?;
                match interval {
                    Some(0) => {
                        return Err(self.invalid(n, format!("{what}: the DPD interval is 0")))
                    }
                    Some(interval) => Some(Dpd {
                        interval,
                        retries: retries.unwrap_or(3),
                    }),
                    None => None,
                }
            }
        };
        let tcp_mss_adjustment = match child(node, "ipsec") {
            Some(n) => self.parse_value::<u16>(n, &["tcp_mss_adjustment"], "a TCP MSS")?,
            None => None,
        };
        Ok(AwsTunnel {
            customer_outside_address,
            vgw_outside_address,
            inside_cidr,
            psk,
            ike,
            ipsec,
            dpd,
            tcp_mss_adjustment,
            bgp: self.bgp(node)?,
            options: None,
        })
    }
}

impl VpnConfiguration {
    /// Reads and parses the XML file at `path`.
    pub fn load(path: &Path) -> Result<VpnConfiguration, ImportError> {
        let text = crate::config::read_text_bounded(
            path,
            MAX_XML_LEN,
            "; a VPN connection's configuration is a few kilobytes",
        )
        .map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        VpnConfiguration::parse(path, &text)
    }

    /// Parses the XML `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<VpnConfiguration, ImportError> {
        let opts = ParsingOptions {
            allow_dtd: false,
            nodes_limit: 100_000,
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, opts).map_err(|e| {
            let p = e.pos();
            let message = e.to_string();
            let message = message
                .strip_suffix(&format!(" at {p}"))
                .unwrap_or(&message)
                .to_owned();
            ImportError::Malformed {
                path: path.to_path_buf(),
                line: p.row,
                column: p.col,
                message,
            }
        })?;
        let r = Reader { path };
        let root = doc.root_element();
        if root.tag_name().name() != "vpn_connection" {
            return Err(r.invalid(
                root,
                format!(
                    "the root element is <{}>, not <vpn_connection>: is this a VPN connection's CustomerGatewayConfiguration XML?",
                    root.tag_name().name()
                ),
            ));
        }
        let tunnel_nodes: Vec<Node<'_, '_>> = root
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "ipsec_tunnel")
            .collect();
        if tunnel_nodes.len() != 2 {
            return Err(r.invalid(
                root,
                format!(
                    "<vpn_connection> has {} <ipsec_tunnel> elements; an AWS VPN connection has 2",
                    tunnel_nodes.len()
                ),
            ));
        }
        let mut tunnels = Vec::with_capacity(2);
        for n in &tunnel_nodes {
            tunnels.push(r.tunnel(*n)?);
        }
        if tunnels[0].vgw_outside_address == tunnels[1].vgw_outside_address {
            return Err(r.invalid(
                tunnel_nodes[1],
                format!(
                    "both tunnels have the AWS outside address {}",
                    tunnels[0].vgw_outside_address
                ),
            ));
        }
        if tunnels[0].inside_cidr == tunnels[1].inside_cidr {
            return Err(r.invalid(
                tunnel_nodes[1],
                format!(
                    "both tunnels have the inside CIDR {}",
                    tunnels[0].inside_cidr
                ),
            ));
        }
        tunnels.sort_by_key(|t| t.vgw_outside_address);
        let text = |name: &str| r.optional_text(root, &[name]).map(|(t, _)| t);
        let second = tunnels.pop().expect("two tunnels");
        let first = tunnels.pop().expect("two tunnels");
        Ok(VpnConfiguration {
            vpn_connection_id: root
                .attribute("id")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            customer_gateway_id: text("customer_gateway_id"),
            vpn_gateway_id: text("vpn_gateway_id"),
            connection_type: text("vpn_connection_type"),
            attributes: text("vpn_connection_attributes"),
            tunnels: [first, second],
        })
    }

    /// True when the connection routes with BGP: a tunnel has `bgp`
    /// elements, or `vpn_connection_attributes` says something other than
    /// `NoBGPVPNConnection`.
    pub fn uses_bgp(&self) -> bool {
        self.tunnels.iter().any(|t| t.bgp.is_some())
            || self
                .attributes
                .as_deref()
                .is_some_and(|a| !a.to_ascii_lowercase().contains("nobgp"))
    }

    /// A name for messages: the connection ID, else "the VPN connection".
    pub fn display_name(&self) -> String {
        match &self.vpn_connection_id {
            Some(id) => format!("VPN connection {id}"),
            None => "the VPN connection".to_owned(),
        }
    }

    /// Attaches `Options.TunnelOptions` to the XML's tunnels, matched by
    /// AWS outside address (never by index): the options' pre-shared key and
    /// inside CIDR replace the XML's, and [`AwsTunnel::proposal_choice`] and
    /// [`apply`] use their algorithms, lifetimes, DPD timeout and startup
    /// action. Returns warnings (an entry matching no tunnel, a tunnel
    /// without an entry).
    pub fn merge_tunnel_options(&mut self, options: &[TunnelOptions]) -> Vec<String> {
        let mut warnings = Vec::new();
        for o in options {
            let Some(ip) = o.outside_ip else {
                warnings.push("a TunnelOptions entry has no OutsideIpAddress; ignored".to_owned());
                continue;
            };
            let Some(t) = self
                .tunnels
                .iter_mut()
                .find(|t| t.vgw_outside_address == ip)
            else {
                warnings.push(format!(
                    "TunnelOptions for {ip} match no tunnel of the configuration XML; ignored"
                ));
                continue;
            };
            if let Some(psk) = &o.psk {
                t.psk = psk.clone();
            }
            if let Some(c) = o.inside_cidr {
                t.inside_cidr = c;
            }
            t.options = Some(o.clone());
        }
        if !options.is_empty() {
            for t in &self.tunnels {
                if t.options.is_none() {
                    warnings.push(format!(
                        "no TunnelOptions for the tunnel to {}: the XML's values are used",
                        t.vgw_outside_address
                    ));
                }
            }
        }
        warnings
    }
}

/// `s` lowercased without `-`, `_` and spaces: `AES-128-CBC` -> `aes128cbc`.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The swanctl cipher keyword for the XML's `encryption_protocol`.
pub fn map_encryption(xml: &str) -> Option<&'static str> {
    Some(match squash(xml).as_str() {
        "aes128cbc" | "aes128" | "aes" => "aes128",
        "aes256cbc" | "aes256" => "aes256",
        "aes128gcm16" | "aes128gcm" => "aes128gcm16",
        "aes256gcm16" | "aes256gcm" => "aes256gcm16",
        _ => return None,
    })
}

/// The swanctl integrity keyword (`sha1`, `sha256`, ...) for the XML's
/// `authentication_protocol` (`sha1`, `sha2-256`, `hmac-sha1-96`,
/// `hmac-sha2-256-128`, ...).
pub fn map_integrity(xml: &str) -> Option<&'static str> {
    let s = squash(xml);
    let s = s.strip_prefix("hmac").unwrap_or(&s);
    Some(match s {
        "sha1" | "sha196" | "sha" => "sha1",
        "sha2256" | "sha2256128" | "sha256" | "sha256128" => "sha256",
        "sha2384" | "sha2384192" | "sha384" | "sha384192" => "sha384",
        "sha2512" | "sha2512256" | "sha512" | "sha512256" => "sha512",
        _ => return None,
    })
}

/// The swanctl DH keyword for the XML's `perfect_forward_secrecy` (`group2`
/// is `modp1024`, `group14` `modp2048`, `group19` `ecp256`, ...).
pub fn map_dh_group(xml: &str) -> Option<&'static str> {
    let s = squash(xml);
    let n: u16 = s.strip_prefix("group").unwrap_or(&s).parse().ok()?;
    DhGroup::from_transform(n).map(DhGroup::name)
}

impl AwsTunnel {
    /// `dpd_timeout` to write: the tunnel options' `DpdTimeoutSeconds` when
    /// present (above the interval), else the XML's interval x retries.
    pub fn dpd_timeout_secs(&self) -> Option<u64> {
        let interval = self.dpd.map(|d| u64::from(d.interval));
        match self.options.as_ref().and_then(|o| o.dpd_timeout) {
            Some(t) => {
                Some(t.max(interval.unwrap_or(crate::config::DEFAULT_DPD_INTERVAL.as_secs()) + 1))
            }
            None => self.dpd.map(|d| d.timeout_secs()),
        }
    }

    /// Our inside address (network + 2).
    pub fn local_inside(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.inside_cidr.network()) + 2)
    }

    /// AWS's inside address (network + 1).
    pub fn remote_inside(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.inside_cidr.network()) + 1)
    }

    /// The XML's phase 1 algorithms as one swanctl IKE proposal
    /// (`aes128-sha1-modp1024`; with an AEAD cipher the integrity algorithm
    /// becomes the PRF: `aes128gcm16-prfsha256-ecp256`), or why not.
    pub fn ike_proposal(&self) -> Result<String, String> {
        proposal(&self.ike, Protocol::Ike)
    }

    /// The XML's phase 2 algorithms as one swanctl ESP proposal
    /// (`aes128-sha1-modp1024`, `aes256gcm16-ecp384`), or why not.
    pub fn esp_proposal(&self) -> Result<String, String> {
        proposal(&self.ipsec, Protocol::Esp)
    }
}

fn proposal(p: &PhaseParams, protocol: Protocol) -> Result<String, String> {
    let phase = match protocol {
        Protocol::Ike => "ike",
        Protocol::Esp => "ipsec",
    };
    let get = |v: &Option<String>, key: &str| {
        v.clone()
            .ok_or_else(|| format!("<{phase}><{key}> is missing"))
    };
    let encr_xml = get(&p.encryption, "encryption_protocol")?;
    let encr = map_encryption(&encr_xml).ok_or_else(|| {
        format!(
            "<{phase}><encryption_protocol> `{}` is not supported",
            encr_xml.escape_debug()
        )
    })?;
    let aead = encr.contains("gcm");
    let integ = match &p.authentication {
        Some(a) => Some(map_integrity(a).ok_or_else(|| {
            format!(
                "<{phase}><authentication_protocol> `{}` is not supported",
                a.escape_debug()
            )
        })?),
        None if aead && protocol == Protocol::Esp => None,
        None => return Err(format!("<{phase}><authentication_protocol> is missing")),
    };
    let dh_xml = get(&p.pfs, "perfect_forward_secrecy")?;
    let dh = map_dh_group(&dh_xml).ok_or_else(|| {
        format!(
            "<{phase}><perfect_forward_secrecy> `{}` is not a supported DH group",
            dh_xml.escape_debug()
        )
    })?;
    let text = match (aead, integ, protocol) {
        (false, Some(i), _) => format!("{encr}-{i}-{dh}"),
        (true, Some(i), Protocol::Ike) => format!("{encr}-prf{i}-{dh}"),
        (true, None, Protocol::Ike) => format!("{encr}-prfsha256-{dh}"),
        (true, _, Protocol::Esp) => format!("{encr}-{dh}"),
        (false, None, _) => {
            unreachable!("a classic cipher needs an integrity algorithm (checked above)")
        }
    };
    Proposal::parse(protocol, &text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// What an imported tunnel gets for proposals and lifetimes (see the module
/// documentation for the reasons).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalChoice {
    /// `ike_proposals` to write, `None`: keep the file's (the default).
    pub ike_proposals: Option<String>,
    /// `esp_proposals` to write, `None`: keep the file's (the default).
    pub esp_proposals: Option<String>,
    /// `ike_lifetime` to write, in seconds.
    pub ike_lifetime: Option<u64>,
    /// `child_lifetime` to write, in seconds.
    pub child_lifetime: Option<u64>,
    /// Algorithms that could not be mapped, for warnings.
    pub unmapped: Vec<String>,
    /// Problems with the tunnel options' algorithms, for warnings.
    pub warnings: Vec<String>,
    /// True when both directions are AWS's sample set.
    pub sample: bool,
}

/// `first` followed by the proposals of `defaults` that differ from it.
fn first_then_defaults(first: &str, defaults: &str) -> String {
    std::iter::once(first)
        .chain(defaults.split(',').filter(|d| *d != first))
        .collect::<Vec<_>>()
        .join(",")
}

impl AwsTunnel {
    /// The proposals and lifetimes to write for this tunnel.
    pub fn proposal_choice(&self) -> ProposalChoice {
        if let Some(o) = &self.options {
            let oc = o.choice();
            let mut c = ProposalChoice {
                ike_proposals: oc.ike_proposals,
                esp_proposals: oc.esp_proposals,
                warnings: oc.warnings,
                ..ProposalChoice::default()
            };
            let ike = o
                .phase1
                .lifetime
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_IKE_LIFETIME);
            let child = o
                .phase2
                .lifetime
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_CHILD_LIFETIME);
            if (ike, child) != (DEFAULT_IKE_LIFETIME, DEFAULT_CHILD_LIFETIME) {
                c.ike_lifetime = Some(ike.as_secs());
                c.child_lifetime = Some(child.as_secs());
            }
            return c;
        }
        let mut c = ProposalChoice::default();
        let mut sample = true;
        match self.ike_proposal() {
            Ok(p) if p == AWS_SAMPLE_PROPOSAL => {}
            Ok(p) => {
                sample = false;
                c.ike_proposals = Some(first_then_defaults(&p, DEFAULT_IKE_PROPOSALS));
            }
            Err(e) => {
                sample = false;
                c.unmapped.push(e);
            }
        }
        match self.esp_proposal() {
            Ok(p) if p == AWS_SAMPLE_PROPOSAL => {}
            Ok(p) => {
                sample = false;
                c.esp_proposals = Some(first_then_defaults(&p, DEFAULT_ESP_PROPOSALS));
            }
            Err(e) => {
                sample = false;
                c.unmapped.push(e);
            }
        }
        let ike = self.ike.lifetime.unwrap_or(DEFAULT_IKE_LIFETIME);
        let child = self.ipsec.lifetime.unwrap_or(DEFAULT_CHILD_LIFETIME);
        if (ike, child) != (DEFAULT_IKE_LIFETIME, DEFAULT_CHILD_LIFETIME) {
            c.ike_lifetime = Some(ike.as_secs());
            c.child_lifetime = Some(child.as_secs());
        }
        c.sample = sample;
        c
    }
}

/// How `wgctl aws import` names and routes the imported tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Tunnel names are `<prefix>-1` and `<prefix>-2` (default `aws`).
    pub name_prefix: String,
    /// The VPC's CIDR blocks, added to `wireguard.remote_prefixes`.
    pub vpc_cidrs: Vec<IpNet>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            name_prefix: "aws".to_owned(),
            vpc_cidrs: Vec::new(),
        }
    }
}

/// What happened to one imported tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelChange {
    /// The tunnel's name in the file.
    pub name: String,
    /// AWS's outside address (`remote_address`).
    pub remote_address: IpAddr,
    /// The inside CIDR.
    pub inside_cidr: Ipv4Net,
    /// Its PSK file, as written in the TOML (relative to the config's directory).
    pub psk_file: PathBuf,
    /// Added, updated or unchanged in the TOML.
    pub outcome: Upsert,
    /// What happens to the PSK file on commit.
    pub psk: SecretChange,
}

/// What [`apply`] changed in the editor, and what the user should know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// One per tunnel, by ascending AWS outside address.
    pub tunnels: Vec<TunnelChange>,
    /// VPC prefixes appended to `wireguard.remote_prefixes`.
    pub remote_prefixes_added: Vec<IpNet>,
    /// VPC prefixes already there (or inside one that is there).
    pub remote_prefixes_kept: Vec<IpNet>,
    /// Things the user should read (BGP, identities, algorithms).
    pub warnings: Vec<String>,
    /// Informational notes.
    pub notes: Vec<String>,
}

impl ImportReport {
    /// True when the commit writes anything (TOML or PSK files).
    pub fn changed(&self) -> bool {
        !self.remote_prefixes_added.is_empty()
            || self
                .tunnels
                .iter()
                .any(|t| t.outcome != Upsert::Unchanged || t.psk != SecretChange::Unchanged)
    }
}

impl fmt::Display for TunnelChange {
    /// `tunnel aws-1 (203.0.113.10, inside 169.254.10.0/30): added`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tunnel {} ({}, inside {}): ",
            self.name, self.remote_address, self.inside_cidr
        )?;
        match &self.outcome {
            Upsert::Added => write!(f, "added")?,
            Upsert::Unchanged => write!(f, "unchanged")?,
            Upsert::Updated { keys, renamed_from } => {
                write!(f, "updated ({})", keys.join(", "))?;
                if let Some(old) = renamed_from {
                    write!(f, ", renamed from {old}")?;
                }
            }
        }
        match self.psk {
            SecretChange::Created => write!(
                f,
                "; pre-shared key written to {} (mode 0600)",
                self.psk_file.display()
            ),
            SecretChange::Replaced => write!(
                f,
                "; pre-shared key in {} replaced (mode 0600)",
                self.psk_file.display()
            ),
            SecretChange::Unchanged => Ok(()),
        }
    }
}

/// Checks that `<prefix>-1` and `<prefix>-2` are valid tunnel names.
pub fn check_name_prefix(prefix: &str) -> Result<(), ImportError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 30
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ImportError::NamePrefix(prefix.to_owned()))
    }
}

/// Writes the VPN connection into the editor: the two tunnels upserted
/// (matched by AWS outside address, named `<prefix>-1` and `<prefix>-2`),
/// their PSKs staged for `ipsec/<name>.psk`, the VPC prefixes appended to
/// `wireguard.remote_prefixes`. `cfg` is the file as it was opened (valid).
/// Nothing is written until the caller commits the editor.
///
/// Per tunnel: `remote_address` = AWS's outside address, `inside_cidr`
/// from the XML, `local_id` = the customer gateway's address (AWS identifies
/// us by it) unless the default, `gateway.public_address`, is that address
/// already, proposals and lifetimes per [`AwsTunnel::proposal_choice`], DPD
/// from the XML, and for a new table `start_action = "initiate"` and
/// `priority` 100 / 200.
pub fn apply(
    editor: &mut ConfigEditor,
    cfg: &Config,
    vpn: &VpnConfiguration,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    check_name_prefix(&opts.name_prefix)?;
    let [a, b] = [
        vpn.tunnels[0].vgw_outside_address,
        vpn.tunnels[1].vgw_outside_address,
    ];
    let names: Vec<String> = (1..=2)
        .map(|i| format!("{}-{i}", opts.name_prefix))
        .collect();
    for name in &names {
        if let Some(t) = cfg.tunnel(name) {
            if t.remote_address != a && t.remote_address != b {
                return Err(ImportError::NameTaken {
                    file: cfg.path.clone(),
                    name: name.clone(),
                    existing: t.remote_address,
                    a,
                    b,
                });
            }
        }
    }

    let mut report = ImportReport::default();
    if vpn.uses_bgp() {
        let asns = vpn
            .tunnels
            .iter()
            .find_map(|t| t.bgp)
            .map(|b| {
                format!(
                    " (customer ASN {}, AWS ASN {})",
                    b.customer_asn.map_or("?".into(), |n| n.to_string()),
                    b.aws_asn.map_or("?".into(), |n| n.to_string())
                )
            })
            .unwrap_or_default();
        report.warnings.push(format!(
            "{} uses BGP routing{asns}; ipiece only does static routing: the tunnels are imported and come up, \
             but AWS learns no on-prem prefix through them (a BGP connection takes no static routes). \
             Recreate the VPN connection with static routing (StaticRoutesOnly) to route through ipiece",
            vpn.display_name()
        ));
    }
    if let Some(kind) = vpn.connection_type.as_deref().filter(|k| *k != "ipsec.1") {
        report.warnings.push(format!(
            "vpn_connection_type is `{}`, not ipsec.1",
            kind.escape_debug()
        ));
    }

    let public = cfg.gateway.public_address;
    let mut sample_note = false;
    for (i, (t, name)) in vpn.tunnels.iter().zip(&names).enumerate() {
        let cgw = t.customer_outside_address;
        let cgw_id = parse_identity(&cgw.to_string()).ok();
        let existing = cfg
            .ipsec
            .tunnels
            .iter()
            .find(|x| x.remote_address == t.vgw_outside_address);
        let default_fits =
            public == Some(cgw) && existing.is_none_or(|x| Some(&x.local_id) == cgw_id.as_ref());
        match public {
            Some(p) if p != cgw && i == 0 => report.warnings.push(format!(
                "gateway.public_address is {p}, but AWS knows this customer gateway as {cgw}: \
                 the imported tunnels present {cgw} as their IKE identity (local_id); \
                 if the gateway's public address changed, update the customer gateway at AWS"
            )),
            None if i == 0 => report.notes.push(format!(
                "gateway.public_address is not set: the imported tunnels present the customer gateway's address {cgw} \
                 as their IKE identity (local_id)"
            )),
            _ => {}
        }
        let choice = t.proposal_choice();
        for u in &choice.unmapped {
            report.warnings.push(format!(
                "tunnel {name}: {u}; ipiece's default proposals are used"
            ));
        }
        for w in &choice.warnings {
            report.warnings.push(format!("tunnel {name}: {w}"));
        }
        sample_note |= choice.sample;

        let psk_file = PathBuf::from(format!("ipsec/{name}.psk"));
        let new = NewTunnel {
            local_id: (!default_fits).then(|| cgw.to_string()),
            inside_cidr: Some(t.inside_cidr),
            ike_proposals: choice.ike_proposals.clone(),
            esp_proposals: choice.esp_proposals.clone(),
            ike_lifetime: choice.ike_lifetime,
            child_lifetime: choice.child_lifetime,
            dpd_interval: t.dpd.map(|d| u64::from(d.interval)),
            dpd_timeout: t.dpd_timeout_secs(),
            start_action: Some(match &t.options {
                Some(o) if o.aws_initiates() => StartAction::Wait,
                _ => StartAction::Initiate,
            }),
            priority: Some(if i == 0 {
                FIRST_TUNNEL_PRIORITY
            } else {
                SECOND_TUNNEL_PRIORITY
            }),
            ..NewTunnel::new(name.clone(), t.vgw_outside_address, psk_file.clone())
        };
        let psk = editor.stage_secret_file(&psk_file, t.psk.clone())?;
        let outcome = editor.upsert_tunnel(&new)?;
        report.tunnels.push(TunnelChange {
            name: name.clone(),
            remote_address: t.vgw_outside_address,
            inside_cidr: t.inside_cidr,
            psk_file,
            outcome,
            psk,
        });
    }
    if sample_note {
        report.notes.push(format!(
            "the XML lists AWS's sample algorithms ({AWS_SAMPLE_PROPOSAL}, 28800 s / 3600 s), not the tunnels' options: \
             the tunnels use ipiece's default proposals, which lie within AWS's default tunnel options; \
             if the tunnel options were narrowed at AWS, set ike_proposals / esp_proposals to match"
        ));
    }

    let mut to_add = Vec::new();
    for p in opts.vpc_cidrs.iter().map(IpNet::trunc) {
        if cfg.wireguard.remote_prefixes.iter().any(|r| r.contains(&p)) {
            report.remote_prefixes_kept.push(p);
        } else {
            to_add.push(p);
        }
    }
    report.remote_prefixes_added = editor.add_remote_prefixes(&to_add)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/x/vpn.xml";

    fn tunnel_xml(cgw: &str, vgw: &str, inside: u8, psk: &str, extra: &str) -> String {
        format!(
            r#"<ipsec_tunnel>
    <customer_gateway>
      <tunnel_outside_address><ip_address>{cgw}</ip_address></tunnel_outside_address>
      <tunnel_inside_address>
        <ip_address>169.254.{inside}.2</ip_address>
        <network_mask>255.255.255.252</network_mask>
        <network_cidr>30</network_cidr>
      </tunnel_inside_address>
    </customer_gateway>
    <vpn_gateway>
      <tunnel_outside_address><ip_address>{vgw}</ip_address></tunnel_outside_address>
      <tunnel_inside_address>
        <ip_address>169.254.{inside}.1</ip_address>
        <network_mask>255.255.255.252</network_mask>
        <network_cidr>30</network_cidr>
      </tunnel_inside_address>
    </vpn_gateway>
    <ike>
      <authentication_protocol>sha1</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>28800</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>main</mode>
      {psk}
    </ike>
    <ipsec>
      <protocol>esp</protocol>
      <authentication_protocol>hmac-sha1-96</authentication_protocol>
      <encryption_protocol>aes-128-cbc</encryption_protocol>
      <lifetime>3600</lifetime>
      <perfect_forward_secrecy>group2</perfect_forward_secrecy>
      <mode>tunnel</mode>
      <clear_df_bit>true</clear_df_bit>
      <fragmentation_before_encryption>true</fragmentation_before_encryption>
      <tcp_mss_adjustment>1379</tcp_mss_adjustment>
      <dead_peer_detection><interval>10</interval><retries>3</retries></dead_peer_detection>
    </ipsec>
    {extra}
  </ipsec_tunnel>"#
        )
    }

    fn doc(t1: &str, t2: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<vpn_connection id=\"vpn-0a1b2c3d\">\n  <customer_gateway_id>cgw-1</customer_gateway_id>\n  <vpn_gateway_id>vgw-1</vpn_gateway_id>\n  <vpn_connection_type>ipsec.1</vpn_connection_type>\n  <vpn_connection_attributes>NoBGPVPNConnection</vpn_connection_attributes>\n  {t1}\n  {t2}\n</vpn_connection>\n"
        )
    }

    fn key(k: &str) -> String {
        format!("<pre_shared_key>{k}</pre_shared_key>")
    }

    fn sample() -> String {
        doc(
            &tunnel_xml(
                "198.51.100.10",
                "203.0.113.20",
                10,
                &key("key_one.abcdefgh"),
                "",
            ),
            &tunnel_xml(
                "198.51.100.10",
                "203.0.113.9",
                11,
                &key("key_two.abcdefgh"),
                "",
            ),
        )
    }

    fn parse(text: &str) -> Result<VpnConfiguration, ImportError> {
        VpnConfiguration::parse(Path::new(PATH), text)
    }

    #[test]
    fn tunnel_options_are_matched_by_address_and_win() {
        use crate::aws::options::{PhaseOptions, TunnelOptions};
        let mut vpn = parse(&sample()).unwrap();
        // vgw 203.0.113.9 sorts first; the options come in the other order.
        let narrowed = TunnelOptions {
            outside_ip: Some("203.0.113.9".parse().unwrap()),
            psk: Some(SecretBytes::new(b"rotated.key.12345".to_vec())),
            inside_cidr: Some("169.254.50.0/30".parse().unwrap()),
            phase1: PhaseOptions {
                encryption: vec!["AES256-GCM-16".into()],
                integrity: vec!["SHA2-384".into()],
                dh_groups: vec![20],
                lifetime: Some(14400),
            },
            dpd_timeout: Some(45),
            startup_action: Some("start".into()),
            ..TunnelOptions::default()
        };
        let stranger = TunnelOptions {
            outside_ip: Some("192.0.2.1".parse().unwrap()),
            ..TunnelOptions::default()
        };
        let warnings = vpn.merge_tunnel_options(&[stranger, narrowed]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("192.0.2.1"), "{warnings:?}");
        assert!(warnings[1].contains("203.0.113.20"), "{warnings:?}");
        let [t1, t2] = &vpn.tunnels;
        assert_eq!(t1.psk.expose(), b"rotated.key.12345");
        assert_eq!(t1.inside_cidr, "169.254.50.0/30".parse().unwrap());
        assert_eq!(t1.dpd_timeout_secs(), Some(45));
        let c = t1.proposal_choice();
        assert_eq!(
            c.ike_proposals.as_deref(),
            Some("aes256gcm16-prfsha384-ecp384")
        );
        assert_eq!(c.esp_proposals, None);
        assert_eq!(
            (c.ike_lifetime, c.child_lifetime),
            (Some(14400), Some(3600))
        );
        assert!(!c.sample);
        // The other tunnel keeps the XML's values.
        assert_eq!(t2.psk.expose(), b"key_one.abcdefgh");
        assert_eq!(t2.dpd_timeout_secs(), Some(30));
        assert!(t2.options.is_none());
        assert!(t2.proposal_choice().sample);
    }

    #[test]
    fn parses_and_orders_by_vgw_address() {
        let v = parse(&sample()).unwrap();
        assert_eq!(v.vpn_connection_id.as_deref(), Some("vpn-0a1b2c3d"));
        assert_eq!(v.vpn_gateway_id.as_deref(), Some("vgw-1"));
        assert!(!v.uses_bgp());
        // 203.0.113.9 < 203.0.113.20 as addresses (not as strings).
        let [t1, t2] = &v.tunnels;
        assert_eq!(t1.vgw_outside_address.to_string(), "203.0.113.9");
        assert_eq!(t2.vgw_outside_address.to_string(), "203.0.113.20");
        assert_eq!(t1.inside_cidr.to_string(), "169.254.11.0/30");
        assert_eq!(t1.local_inside().to_string(), "169.254.11.2");
        assert_eq!(t1.remote_inside().to_string(), "169.254.11.1");
        assert_eq!(t1.psk.expose(), b"key_two.abcdefgh");
        assert_eq!(
            t1.dpd,
            Some(Dpd {
                interval: 10,
                retries: 3
            })
        );
        assert_eq!(t1.dpd.unwrap().timeout_secs(), 30);
        assert_eq!(t1.tcp_mss_adjustment, Some(1379));
        assert_eq!(t1.ike.lifetime, Some(Duration::from_secs(28800)));
        assert_eq!(t1.ike_proposal().unwrap(), "aes128-sha1-modp1024");
        assert_eq!(t1.esp_proposal().unwrap(), "aes128-sha1-modp1024");
        let c = t1.proposal_choice();
        assert!(c.sample);
        assert_eq!(
            c,
            ProposalChoice {
                sample: true,
                ..Default::default()
            }
        );
        // The PSK never shows in Debug output.
        assert!(!format!("{v:?}").contains("key_two"));
    }

    #[test]
    fn algorithm_mapping() {
        assert_eq!(map_encryption(" AES-256-CBC "), Some("aes256"));
        assert_eq!(map_encryption("aes-128-gcm-16"), Some("aes128gcm16"));
        assert_eq!(map_encryption("aes-256-gcm-16"), Some("aes256gcm16"));
        assert_eq!(map_encryption("3des"), None);
        assert_eq!(map_integrity("hmac-sha1-96"), Some("sha1"));
        assert_eq!(map_integrity("sha2-256"), Some("sha256"));
        assert_eq!(map_integrity("hmac-sha2-256-128"), Some("sha256"));
        assert_eq!(map_integrity("hmac-sha2-384-192"), Some("sha384"));
        assert_eq!(map_integrity("SHA2-512"), Some("sha512"));
        assert_eq!(map_integrity("md5"), None);
        assert_eq!(map_dh_group("group2"), Some("modp1024"));
        assert_eq!(map_dh_group("group5"), Some("modp1536"));
        assert_eq!(map_dh_group("Group 14"), Some("modp2048"));
        assert_eq!(map_dh_group("group19"), Some("ecp256"));
        assert_eq!(map_dh_group("group20"), Some("ecp384"));
        assert_eq!(map_dh_group("group24"), Some("modp2048s256"));
        assert_eq!(map_dh_group("group1"), None);
        assert_eq!(map_dh_group("none"), None);

        let mut t = parse(&sample()).unwrap().tunnels[0].clone();
        t.ike = PhaseParams {
            encryption: Some("aes-256-gcm-16".into()),
            authentication: Some("sha2-384".into()),
            pfs: Some("group20".into()),
            lifetime: Some(Duration::from_secs(14400)),
        };
        t.ipsec = PhaseParams {
            encryption: Some("aes-256-gcm-16".into()),
            authentication: None,
            pfs: Some("group20".into()),
            lifetime: Some(Duration::from_secs(1800)),
        };
        assert_eq!(t.ike_proposal().unwrap(), "aes256gcm16-prfsha384-ecp384");
        assert_eq!(t.esp_proposal().unwrap(), "aes256gcm16-ecp384");
        let c = t.proposal_choice();
        assert!(!c.sample);
        // The XML's proposal first, then the defaults without repeating it.
        assert_eq!(
            c.ike_proposals.as_deref(),
            Some("aes256gcm16-prfsha384-ecp384,aes128gcm16-prfsha256-ecp256,aes128-sha256-modp2048,aes256-sha256-modp2048")
        );
        assert_eq!(
            c.esp_proposals.as_deref(),
            Some("aes256gcm16-ecp384,aes128gcm16-ecp256,aes128-sha256-modp2048,aes256-sha256-modp2048")
        );
        assert_eq!(
            (c.ike_lifetime, c.child_lifetime),
            (Some(14400), Some(1800))
        );
        Proposal::parse_list(Protocol::Ike, &c.ike_proposals.unwrap()).unwrap();
        Proposal::parse_list(Protocol::Esp, &c.esp_proposals.unwrap()).unwrap();

        t.ipsec.encryption = Some("aes-256-cbc".into());
        t.ipsec.authentication = Some("hmac-sha2-256-128".into());
        t.ipsec.pfs = Some("group14".into());
        assert_eq!(t.esp_proposal().unwrap(), "aes256-sha256-modp2048");

        t.ike.encryption = Some("chacha20".into());
        let c = t.proposal_choice();
        assert_eq!(c.ike_proposals, None);
        assert!(c.unmapped[0].contains("chacha20"), "{:?}", c.unmapped);
    }

    #[test]
    fn whitespace_and_order_inside_blocks() {
        // Elements reordered, values padded with spaces and newlines.
        let t1 = r#"<ipsec_tunnel>
    <ike><pre_shared_key>
        spaced.key_123
    </pre_shared_key><perfect_forward_secrecy> group2 </perfect_forward_secrecy></ike>
    <vpn_gateway><tunnel_outside_address><ip_address>  203.0.113.1
    </ip_address></tunnel_outside_address></vpn_gateway>
    <customer_gateway><tunnel_inside_address><network_cidr> 30 </network_cidr><ip_address> 169.254.44.6 </ip_address></tunnel_inside_address>
      <tunnel_outside_address><ip_address>	198.51.100.7	</ip_address></tunnel_outside_address></customer_gateway>
  </ipsec_tunnel>"#;
        let t2 = tunnel_xml("198.51.100.7", "203.0.113.2", 45, &key("other.key.123"), "");
        let v = parse(&doc(t1, &t2)).unwrap();
        let t = &v.tunnels[0];
        assert_eq!(t.vgw_outside_address.to_string(), "203.0.113.1");
        assert_eq!(t.customer_outside_address.to_string(), "198.51.100.7");
        assert_eq!(t.inside_cidr.to_string(), "169.254.44.4/30");
        assert_eq!(t.psk.expose(), b"spaced.key_123");
        assert_eq!(t.ike.pfs.as_deref(), Some("group2"));
        assert_eq!(t.dpd, None);
        // Missing algorithms: no proposal, a warning.
        let c = t.proposal_choice();
        assert_eq!(c.ike_proposals, None);
        assert!(!c.sample);
        assert_eq!(c.unmapped.len(), 2);
    }

    #[test]
    fn bgp_is_detected() {
        let bgp = "<bgp><asn>65000</asn><hold_time>30</hold_time></bgp>";
        let t = |vgw: &str, n: u8| {
            tunnel_xml("198.51.100.10", vgw, n, &key("abcdefgh12"), "")
                .replace("</customer_gateway>", &format!("{bgp}</customer_gateway>"))
                .replace(
                    "</vpn_gateway>",
                    "<bgp><asn>64512</asn><hold_time>30</hold_time></bgp></vpn_gateway>",
                )
        };
        let text = doc(&t("203.0.113.1", 1), &t("203.0.113.2", 2)).replace(
            "<vpn_connection_attributes>NoBGPVPNConnection</vpn_connection_attributes>",
            "",
        );
        let v = parse(&text).unwrap();
        assert!(v.uses_bgp());
        assert_eq!(
            v.tunnels[0].bgp,
            Some(TunnelBgp {
                customer_asn: Some(65000),
                aws_asn: Some(64512),
                hold_time: Some(30)
            })
        );
    }

    #[test]
    fn content_errors_are_located_and_clear() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        // One tunnel only.
        let one = doc(
            &tunnel_xml("198.51.100.10", "203.0.113.1", 1, &key("abcdefgh12"), ""),
            "",
        );
        let e = err(&one);
        assert!(e.starts_with("/x/vpn.xml:2:1: "), "{e}");
        assert!(e.contains("has 1 <ipsec_tunnel> elements"), "{e}");
        // Not a VPN connection.
        let e = err("<html><body/></html>");
        assert!(e.contains("root element is <html>"), "{e}");
        // A missing VGW address names the path.
        let t2 = tunnel_xml("198.51.100.10", "203.0.113.2", 2, &key("abcdefgh12"), "")
            .replace("<vpn_gateway>\n      <tunnel_outside_address><ip_address>203.0.113.2</ip_address></tunnel_outside_address>", "<vpn_gateway>");
        let t1 = tunnel_xml("198.51.100.10", "203.0.113.1", 1, &key("abcdefgh12"), "");
        let e = err(&doc(&t1, &t2));
        assert!(
            e.contains("<vpn_gateway> has no <tunnel_outside_address><ip_address>"),
            "{e}"
        );
        // A bad address.
        let e = err(&sample().replace("203.0.113.9", "203.0.113.999"));
        assert!(e.contains("`203.0.113.999` is not an IP address"), "{e}");
        // Same VGW twice.
        let e = err(&sample().replace("203.0.113.9", "203.0.113.20"));
        assert!(
            e.contains("both tunnels have the AWS outside address 203.0.113.20"),
            "{e}"
        );
        // Inside address not at +2.
        let e = err(&sample().replace("169.254.10.2", "169.254.10.1"));
        assert!(e.contains("not 169.254.10.0/30's second address"), "{e}");
        // Not a /30.
        let e = err(&sample().replacen(
            "<network_cidr>30</network_cidr>",
            "<network_cidr>29</network_cidr>",
            1,
        ));
        assert!(e.contains("is a /29"), "{e}");
        // Outside 169.254.0.0/16.
        let e = err(&sample().replace("169.254.10.", "10.1.10."));
        assert!(e.contains("is not inside 169.254.0.0/16"), "{e}");
        // A key that is too short: the error never quotes it.
        let e = err(&sample().replace("key_one.abcdefgh", "short"));
        assert!(e.contains("the pre-shared key is not usable"), "{e}");
        assert!(!e.contains("short"), "{e}");
        // No key at all.
        let e = err(&sample().replace(&key("key_one.abcdefgh"), ""));
        assert!(e.contains("<ike> has no <pre_shared_key>"), "{e}");
        // A bad lifetime.
        let e = err(&sample().replacen("<lifetime>28800</lifetime>", "<lifetime>8h</lifetime>", 1));
        assert!(
            e.contains("<lifetime> `8h` is not a lifetime in seconds"),
            "{e}"
        );
    }

    #[test]
    fn secrets_manager_arn_is_named() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vpn-psk-AbCdEf";
        for element in [
            format!("<pre_shared_key_arn>{arn}</pre_shared_key_arn>"),
            format!("<PreSharedKeyArn> {arn} </PreSharedKeyArn>"),
            key(arn),
        ] {
            let text = sample().replace(&key("key_one.abcdefgh"), &element);
            match parse(&text) {
                Err(e @ ImportError::PskInSecretsManager { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(arn), "{msg}");
                    assert!(msg.contains("tunnel to 203.0.113.20"), "{msg}");
                    assert!(msg.contains("fetch the secret"), "{msg}");
                    assert!(msg.starts_with("/x/vpn.xml:"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_xml_names_the_position() {
        let text = sample().replacen("</ike>", "</ikx>", 1);
        match parse(&text) {
            Err(ImportError::Malformed {
                line,
                column,
                message,
                ..
            }) => {
                assert!(line > 1 && column > 1);
                assert!(!message.contains(" at "), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = parse("<vpn_connection>").unwrap_err().to_string();
        assert!(e.starts_with("/x/vpn.xml:1:"), "{e}");
        assert!(e.contains("not a well-formed XML document"), "{e}");
        // DTDs (entity expansion) are refused.
        let e = parse("<!DOCTYPE x [<!ENTITY a \"b\">]><vpn_connection/>").unwrap_err();
        assert!(matches!(e, ImportError::Malformed { .. }), "{e}");
    }

    #[test]
    fn name_prefixes() {
        assert!(check_name_prefix("aws").is_ok());
        assert!(check_name_prefix("a.b_c-d").is_ok());
        assert!(check_name_prefix(&"x".repeat(30)).is_ok());
        assert!(check_name_prefix(&"x".repeat(31)).is_err());
        assert!(check_name_prefix("").is_err());
        assert!(check_name_prefix("a b").is_err());
    }

    #[test]
    fn dpd_timeout_exceeds_the_interval() {
        assert_eq!(
            Dpd {
                interval: 10,
                retries: 3
            }
            .timeout_secs(),
            30
        );
        assert_eq!(
            Dpd {
                interval: 10,
                retries: 1
            }
            .timeout_secs(),
            11
        );
        assert_eq!(
            Dpd {
                interval: 5,
                retries: 0
            }
            .timeout_secs(),
            6
        );
    }
}
