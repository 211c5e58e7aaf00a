//! `wgctl import pfsense config.xml`: a pfSense configuration (2.5 to 2.7,
//! with pfSense-pkg-WireGuard) read into an [`ImportPlan`] for
//! `gateway.toml`, and written in one atomic edit ([`apply()`]).
//!
//! The reading is pure: [`parse`] takes the XML text and returns the plan
//! (what maps onto ipiece) and its [`Report`] (everything that does not,
//! each with its line in the XML and the reason: nothing is dropped
//! silently). Element names follow pfSense's own code:
//!
//! - WireGuard (`wireguard.rs`): pfSense-pkg-WireGuard 0.1 and later
//!   (pfSense 2.5.2 to 2.7) keep `installedpackages/wireguard/tunnels/item`
//!   (`name`, `enabled`, `listenport`, `privatekey`, `mtu`,
//!   `addresses/row/{address,mask}`) and `.../peers/item` (`tun`, `descr`,
//!   `enabled`, `publickey`, `presharedkey`, `persistentkeepalive`,
//!   `allowedips/row/{address,mask}`); pfSense 2.5.0's built-in WireGuard and
//!   the package's first releases kept `wireguard/tunnel` (top level or
//!   under `installedpackages`) with `interface/{address,listenport,privatekey}`
//!   and `peers/wgpeer` (`allowedips` a comma-separated list). Keys are
//!   `wg`'s base64; a key wrapped in base64 once more (as pfSense stores
//!   `private-key` of IPsec phase 1 and package fields with base64
//!   encoding) is recognised by its length and unwrapped.
//! - IPsec (`ipsec.rs`): `ipsec/phase1` (`ikeid`, `iketype`, `mobile`,
//!   `disabled`, `remote-gateway`, `authentication_method`,
//!   `pre-shared-key`, `myid_type/data`, `peerid_type/data`,
//!   `encryption/item/{encryption-algorithm/{name,keylen}, hash-algorithm,
//!   prf-algorithm, dhgroup}`, `prfselect_enable`, `lifetime`,
//!   `rekey_time`, `dpd_delay`, `dpd_maxfail`, `startaction`) and
//!   `ipsec/phase2` (`ikeid`, `mode`, `disabled`, `localid`, `remoteid`,
//!   `encryption-algorithm-option/{name,keylen}`, `hash-algorithm-option`,
//!   `pfsgroup`, `lifetime`), proposals built the way pfSense's
//!   `ipsec_setup_proposal_algo()` builds strongSwan's, then checked
//!   against ipiece's proposal parser.
//! - Firewall (`firewall.rs`): `aliases/alias`, `filter/rule`, `nat/rule`
//!   (port forwards) and `nat/outbound`.
//! - LAN (`lan.rs`): `interfaces/lan` and `dhcpd/lan` (`range/{from,to}`,
//!   `defaultleasetime`, `gateway`, `dnsserver`, `staticmap/{mac,ipaddr,hostname}`).

mod firewall;
mod ipsec;
mod lan;
mod wireguard;

pub mod apply;
pub mod diff;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use roxmltree::{Document, Node, ParsingOptions};

use crate::config::firewall::{FirewallAction, FirewallProto};
use crate::config::{Key, StartAction};
use crate::ike::crypto::SecretBytes;

pub use apply::{apply, full_report, Applied, ApplyError, ImportOptions};

/// Largest config.xml read (with RRD data and certificates a few MB).
const MAX_XML_LEN: u64 = 32 << 20;

/// Why a config.xml cannot be imported. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum PfError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The XML file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Not a well-formed XML document.
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
    /// Well-formed XML, but not a pfSense configuration.
    #[error("{}:{line}:{column}: the root element is <{root}>, not <pfsense>: {hint}", path.display())]
    Foreign {
        /// The XML file.
        path: PathBuf,
        /// 1-based line of the root element.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The root element's name.
        root: String,
        /// What the file seems to be.
        hint: String,
    },
    /// A value ipiece would import is malformed (a key, an address).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The XML file.
        path: PathBuf,
        /// 1-based line of the element.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong (never the value of a secret).
        message: String,
    },
    /// The plan cannot be written into the configuration file.
    #[error(transparent)]
    Apply(apply::ApplyError),
}

/// One thing of the pfSense configuration that was not imported, or
/// imported with a remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportItem {
    /// 1-based line of its element in the XML.
    pub line: u32,
    /// What it is, e.g. `ipsec/phase1 "AWS tunnel 3" (ikeid 3)`.
    pub what: String,
    /// Why it was not imported (or what was done instead).
    pub why: String,
}

impl fmt::Display for ReportItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.what, self.why)
    }
}

/// What did not map, and remarks on what did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Not imported: ipiece has no equivalent (yet), or the value is of a
    /// kind ipiece lacks.
    pub not_mapped: Vec<ReportItem>,
    /// Imported, with a remark (a default that applies instead, a value
    /// translated).
    pub notes: Vec<ReportItem>,
}

impl Report {
    fn skip(&mut self, node: Node<'_, '_>, what: impl Into<String>, why: impl Into<String>) {
        self.not_mapped.push(ReportItem {
            line: line_of(node),
            what: what.into(),
            why: why.into(),
        });
    }

    fn note(&mut self, node: Node<'_, '_>, what: impl Into<String>, why: impl Into<String>) {
        self.notes.push(ReportItem {
            line: line_of(node),
            what: what.into(),
            why: why.into(),
        });
    }
}

/// The WireGuard tunnel that becomes `[wireguard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgTunnel {
    /// pfSense's name (`tun_wg0`).
    pub name: String,
    /// `listenport`.
    pub listen_port: Option<u16>,
    /// The tunnel's first IPv4 address with its mask: `wireguard.address`.
    pub address: IpNet,
    /// The tunnel's private key (`Debug` hides it).
    pub private_key: Key,
    /// `mtu`, when set.
    pub mtu: Option<u16>,
}

/// A WireGuard peer that becomes a `[[peers]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// From `descr`, made a valid peer name.
    pub name: String,
    /// `publickey`.
    pub public_key: Key,
    /// The allowed IP that is one address inside the tunnel's subnet.
    pub address: IpAddr,
    /// `presharedkey` (`Debug` hides it).
    pub psk: Option<Key>,
    /// `persistentkeepalive`.
    pub keepalive: Option<u16>,
    /// False for a disabled pfSense peer: imported disabled.
    pub enabled: bool,
    /// 1-based line of the peer's element.
    pub line: u32,
}

/// An IPsec phase 1 (with its phase 2 entries) that becomes an
/// `[[ipsec.tunnels]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecTunnel {
    /// From `descr` (or `pfsense-<ikeid>`), made a valid tunnel name.
    pub name: String,
    /// `ikeid`.
    pub ikeid: String,
    /// `remote-gateway`.
    pub remote_address: Ipv4Addr,
    /// `pre-shared-key` (`Debug` hides it).
    pub psk: SecretBytes,
    /// `local_id`, `None` for pfSense's "My IP address".
    pub local_id: Option<String>,
    /// `remote_id`, `None` for "Peer IP address".
    pub remote_id: Option<String>,
    /// IKE proposals in swanctl syntax (`None`: ipiece's defaults).
    pub ike_proposals: Option<String>,
    /// ESP proposals (`None`: ipiece's defaults).
    pub esp_proposals: Option<String>,
    /// IKE SA lifetime in seconds (`None`: the default).
    pub ike_lifetime: Option<u64>,
    /// CHILD SA lifetime in seconds (`None`: the default).
    pub child_lifetime: Option<u64>,
    /// `dpd_delay`.
    pub dpd_interval: Option<u64>,
    /// `dpd_delay x (dpd_maxfail + 1)`.
    pub dpd_timeout: Option<u64>,
    /// The phase 2 local networks (tunnel mode); `None`: route-based.
    pub local_ts: Option<Vec<IpNet>>,
    /// The phase 2 remote networks (tunnel mode); `None`: route-based.
    pub remote_ts: Option<Vec<IpNet>>,
    /// A VTI phase 2's inside /30.
    pub inside_cidr: Option<Ipv4Net>,
    /// `startaction` `none`: wait for the peer.
    pub start_action: StartAction,
    /// False for a disabled phase 1.
    pub enabled: bool,
    /// 1-based line of the phase 1 element.
    pub line: u32,
}

/// A `[[firewall.rules]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// From `descr`, made a valid, unique name.
    pub name: String,
    /// A zone, prefix or alias name.
    pub from: String,
    /// A zone, prefix or alias name.
    pub to: String,
    /// Its protocol.
    pub proto: FirewallProto,
    /// Destination port ranges.
    pub ports: Vec<(u16, u16)>,
    /// What to do.
    pub action: FirewallAction,
    /// `log`.
    pub log: bool,
    /// 1-based line of the rule element.
    pub line: u32,
}

/// A `[[firewall.port_forwards]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// From `descr`, made a valid, unique name.
    pub name: String,
    /// `tcp` or `udp`.
    pub proto: FirewallProto,
    /// The WAN port.
    pub port: u16,
    /// `target:local-port`.
    pub to: SocketAddr,
    /// Allowed sources (prefixes, alias names); empty: any.
    pub from: Vec<String>,
    /// 1-based line of the NAT rule element.
    pub line: u32,
}

/// The LAN interface and its DHCP server (`[lan]`, `[lan.dhcp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    /// pfSense's interface (FreeBSD name, e.g. `vmx1`).
    pub pf_interface: Option<String>,
    /// The LAN address with its prefix length.
    pub address: Ipv4Net,
    /// The DHCP server, when enabled.
    pub dhcp: Option<Dhcp>,
    /// 1-based line of `interfaces/lan`.
    pub line: u32,
}

/// `dhcpd/lan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    /// `range/from`, `range/to`.
    pub range: (Ipv4Addr, Ipv4Addr),
    /// `defaultleasetime`, seconds (within ipiece's range).
    pub lease_time: Option<u32>,
    /// `gateway`: the router handed out, when set.
    pub router: Option<Ipv4Addr>,
    /// `dnsserver` entries: the DNS servers handed out.
    pub dns_servers: Vec<Ipv4Addr>,
    /// `staticmap` entries: (mac, address, hostname).
    pub statics: Vec<StaticMap>,
    /// 1-based line of `dhcpd/lan`.
    pub line: u32,
}

/// One `dhcpd/lan/staticmap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMap {
    /// `mac`, lower case.
    pub mac: String,
    /// `ipaddr`.
    pub address: Ipv4Addr,
    /// `hostname`, when set.
    pub hostname: Option<String>,
}

/// Everything of a config.xml that maps onto `gateway.toml`, and the report
/// of what does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    /// `<version>` (the config format: 21.x is pfSense 2.5, 22.2 2.6,
    /// 22.9 to 23.3 2.7).
    pub version: Option<String>,
    /// The WireGuard tunnel.
    pub wireguard: Option<WgTunnel>,
    /// Its peers.
    pub peers: Vec<WgPeer>,
    /// The IPsec tunnels.
    pub tunnels: Vec<IpsecTunnel>,
    /// The phase 2 remote networks: `wireguard.remote_prefixes`.
    pub remote_prefixes: Vec<IpNet>,
    /// The LAN network: `gateway.lan_prefixes`.
    pub lan_prefixes: Vec<IpNet>,
    /// The WAN interface's static IPv4 address (the IKE identity of
    /// "My IP address" when the file has no `gateway.public_address`).
    pub wan_address: Option<Ipv4Addr>,
    /// `[firewall.aliases]`.
    pub aliases: Vec<(String, Vec<IpNet>)>,
    /// `[[firewall.rules]]`, in pfSense's order.
    pub rules: Vec<Rule>,
    /// `[[firewall.port_forwards]]`.
    pub port_forwards: Vec<PortForward>,
    /// The LAN interface and DHCP server.
    pub lan: Option<Lan>,
    /// What did not map.
    pub report: Report,
}

/// Options of the reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// The WireGuard tunnel to import (pfSense's name, `tun_wg0`); default:
    /// the first enabled tunnel with peers.
    pub wg_tunnel: Option<String>,
}

// ------------------------------------------------------------ XML helpers --

/// 1-based line of `node`.
fn line_of(node: Node<'_, '_>) -> u32 {
    node.document().text_pos_at(node.range().start).row
}

/// (line, column) of `node`.
fn pos(node: Node<'_, '_>) -> (u32, u32) {
    let p = node.document().text_pos_at(node.range().start);
    (p.row, p.col)
}

/// The first child element named `name`.
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// Every child element named `name`.
fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// The element at `path` below `node`.
fn at<'a, 'i>(node: Node<'a, 'i>, path: &[&str]) -> Option<Node<'a, 'i>> {
    let mut n = node;
    for p in path {
        n = child(n, p)?;
    }
    Some(n)
}

/// The trimmed text of `node` (CDATA included).
fn text_of(node: Node<'_, '_>) -> String {
    node.children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The trimmed text of the child `name`, `None` when absent or empty.
fn text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(text_of).filter(|t| !t.is_empty())
}

/// Whether the flag element `name` is present (pfSense's `isset()`).
fn flag(node: Node<'_, '_>, name: &str) -> bool {
    child(node, name).is_some()
}

/// Reads values from the document, locating errors in `path`.
struct Ctx<'p> {
    path: &'p Path,
}

impl Ctx<'_> {
    fn invalid(&self, at: Node<'_, '_>, message: impl Into<String>) -> PfError {
        let (line, column) = pos(at);
        PfError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A WireGuard key from `node`'s text: `wg`'s base64, or that text
    /// wrapped in base64 once more. The error names the element, never the
    /// value.
    fn key(&self, node: Node<'_, '_>, what: &str) -> Result<(Key, bool), PfError> {
        let t = text_of(node);
        if let Ok(k) = t.parse::<Key>() {
            return Ok((k, false));
        }
        use base64::Engine;
        if let Ok(inner) = base64::engine::general_purpose::STANDARD.decode(t.as_bytes()) {
            if let Ok(s) = std::str::from_utf8(&inner) {
                if let Ok(k) = s.trim().parse::<Key>() {
                    return Ok((k, true));
                }
            }
        }
        Err(self.invalid(
            node,
            format!(
                "{what}: <{}> is not a WireGuard key (44 characters of base64 for 32 bytes, as `wg genkey` prints)",
                node.tag_name().name()
            ),
        ))
    }
}

/// Makes `raw` a name of at most `max` of `[A-Za-z0-9_.-]`: other
/// characters become `-`, runs of them one, none at either end. `None`
/// when nothing is left.
fn sanitize_name(raw: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(max).collect();
    let out = out.trim_end_matches('-').to_owned();
    (!out.is_empty() && out != "." && out != "..").then_some(out)
}

/// `base`, or `base-2`, `base-3`, ... when taken (within `max` characters).
fn unique_name(base: &str, taken: &[String], max: usize) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    for n in 2.. {
        let suffix = format!("-{n}");
        let stem: String = base.chars().take(max - suffix.len()).collect();
        let cand = format!("{stem}{suffix}");
        if !taken.contains(&cand) {
            return cand;
        }
    }
    unreachable!("an unbounded counter finds a free name")
}

/// An IPv4 network from an address and a mask length (host bits kept).
fn v4net(addr: &str, bits: &str) -> Option<Ipv4Net> {
    let a: Ipv4Addr = addr.trim().parse().ok()?;
    let b: u8 = bits.trim().parse().ok()?;
    Ipv4Net::new(a, b).ok()
}

// ---------------------------------------------------------------- parsing --

/// Reads the config.xml at `path` and builds the plan.
pub fn load(path: &Path, opts: &ParseOptions) -> Result<ImportPlan, PfError> {
    let text =
        crate::config::read_text_bounded(path, MAX_XML_LEN, "").map_err(|source| PfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    parse(path, &text, opts)
}

/// The sections of `<pfsense>` this import reads; every other non-empty
/// one is listed in the report.
const HANDLED: &[&str] = &[
    "version",
    "installedpackages",
    "wireguard",
    "ipsec",
    "aliases",
    "filter",
    "nat",
    "interfaces",
    "dhcpd",
    "staticroutes",
];

/// Sections that never carry configuration worth reporting (bookkeeping,
/// GUI state, graphs).
const BOOKKEEPING: &[&str] = &[
    "lastchange",
    "revision",
    "theme",
    "widgets",
    "rrd",
    "diag",
    "notifications",
];

/// Parses the config.xml `text` into the plan; `path` only names the file
/// in errors.
pub fn parse(path: &Path, text: &str, opts: &ParseOptions) -> Result<ImportPlan, PfError> {
    let popts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 4_000_000,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, popts).map_err(|e| {
        let p = e.pos();
        let message = e.to_string();
        let message = message
            .strip_suffix(&format!(" at {p}"))
            .unwrap_or(&message)
            .to_owned();
        PfError::Malformed {
            path: path.to_path_buf(),
            line: p.row,
            column: p.col,
            message,
        }
    })?;
    let root = doc.root_element();
    let name = root.tag_name().name();
    if name != "pfsense" {
        let (line, column) = pos(root);
        let hint = match name {
            "opnsense" => "this is an OPNsense configuration; ipiece reads pfSense's".to_owned(),
            "vpn_connection" => {
                "this is an AWS VPN connection's configuration: import it with `wgctl aws import --from-xml`".to_owned()
            }
            _ => "is this a pfSense config.xml (Diagnostics > Backup & Restore)?".to_owned(),
        };
        return Err(PfError::Foreign {
            path: path.to_path_buf(),
            line,
            column,
            root: name.to_owned(),
            hint,
        });
    }
    let ctx = Ctx { path };
    let mut plan = ImportPlan {
        version: text_opt(child(root, "version")),
        ..ImportPlan::default()
    };
    check_version(root, &mut plan);
    lan::read(&ctx, root, &mut plan)?;
    wireguard::read(&ctx, root, opts, &mut plan)?;
    ipsec::read(root, &mut plan);
    firewall::read(root, &mut plan);
    report_other_sections(root, &mut plan.report);
    report_packages(root, &mut plan.report);
    Ok(plan)
}

/// Lists the packages and package settings other than WireGuard's.
fn report_packages(root: Node<'_, '_>, report: &mut Report) {
    let Some(pkgs) = child(root, "installedpackages") else {
        return;
    };
    for n in pkgs.children().filter(Node::is_element) {
        match n.tag_name().name() {
            "wireguard" => {}
            // The package manager's GUI entries (menus, services).
            "menu" | "service" => {}
            "package" => {
                let name = text(n, "name").unwrap_or_default();
                if !name.eq_ignore_ascii_case("wireguard") {
                    report.skip(
                        n,
                        format!("package {name} {}", text(n, "version").unwrap_or_default()),
                        "packages are not imported",
                    );
                }
            }
            other => report.skip(
                n,
                format!("installedpackages/{other}"),
                "settings of a package ipiece does not replace: not imported",
            ),
        }
    }
}

fn text_opt(node: Option<Node<'_, '_>>) -> Option<String> {
    node.map(text_of).filter(|t| !t.is_empty())
}

/// Notes a config version outside pfSense 2.5 to 2.7 (imported all the same).
fn check_version(root: Node<'_, '_>, plan: &mut ImportPlan) {
    let Some(v) = plan.version.clone() else {
        plan.report.note(
            root,
            "<version>",
            "absent: read as a pfSense 2.5 to 2.7 configuration",
        );
        return;
    };
    let known = matches!(
        v.split('.').next().and_then(|m| m.parse::<u32>().ok()),
        Some(21..=23)
    );
    if !known {
        let node = child(root, "version").unwrap_or(root);
        plan.report.note(
            node,
            format!("<version> {v}"),
            "outside pfSense 2.5 to 2.7 (config versions 21.x to 23.x): read with their element names, check the result",
        );
    }
}

/// Lists every other non-empty top-level section.
fn report_other_sections(root: Node<'_, '_>, report: &mut Report) {
    for n in root.children().filter(Node::is_element) {
        let name = n.tag_name().name();
        if HANDLED.contains(&name) || BOOKKEEPING.contains(&name) {
            continue;
        }
        if !n.children().any(|c| c.is_element()) && text_of(n).is_empty() {
            continue;
        }
        let why = match name {
            "system" => "system settings (host name, DNS servers, users, NTP) are not imported; set gateway.name and the host's own settings",
            "openvpn" => "OpenVPN is not supported by ipiece",
            "unbound" | "dnsmasq" => "the DNS resolver/forwarder settings are not imported",
            "gateways" => "routes and gateways are not imported: ipiece routes the LAN, the laptops and the tunnels' prefixes itself",
            "cert" | "ca" | "crl" => "certificates are not imported (ipiece authenticates IPsec with PSKs)",
            "vlans" | "laggs" | "bridges" | "gifs" | "gres" | "ppps" | "wireless" => "interface definitions are the host's (systemd-networkd), not ipiece's",
            "shaper" | "dnshaper" | "captiveportal" | "snmpd" | "syslog" | "ntpd" | "dhcpdv6" | "dhcrelay" | "dyndnses" | "load_balancer" | "virtualip" | "cron" | "sysctl" | "hasync" | "ppp" | "schedules" | "ifgroups" | "voucher" | "proxyarp" | "upnp" | "igmpproxy" => "no ipiece equivalent",
            "packages" => "packages are not imported (pfSense-pkg-WireGuard's settings are)",
            _ => "not imported",
        };
        report.skip(n, format!("<{name}>"), why);
    }
}

#[cfg(test)]
mod tests;
