//! The configuration model: the typed view of `gateway.toml` after validation,
//! and the error types that point back into the file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use super::firewall::FirewallConfig;
use super::keys::Key;
use super::lan::{DnsConfig, LanConfig};
use super::metrics::MetricsConfig;
use crate::ike::proposal::Proposal;
use crate::wire::Identity;

/// Default `gateway.control_socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ipiece/control.sock";
/// Default `gateway.tun_name`.
pub const DEFAULT_TUN_NAME: &str = "ipiece0";
/// Default `wireguard.listen_port`.
pub const DEFAULT_LISTEN_PORT: u16 = 51821;
/// Default `wireguard.mtu`.
pub const DEFAULT_MTU: u16 = 1420;
/// Smallest accepted `wireguard.mtu` (the IPv4 minimum datagram size).
pub const MIN_MTU: u16 = 576;
/// Smallest accepted `wireguard.mtu` when the WireGuard subnet is IPv6 (RFC 8200, section 5).
pub const MIN_MTU_IPV6: u16 = 1280;
/// Largest accepted `wireguard.mtu`.
pub const MAX_MTU: u16 = 9000;
/// Default `peers[].keepalive`, in seconds.
pub const DEFAULT_KEEPALIVE: u16 = 25;

/// Default `ipsec.replay_window` (AWS's `ReplayWindowSize` default), in packets.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;
/// Smallest accepted replay window (AWS's lower bound).
pub const MIN_REPLAY_WINDOW: u32 = 64;
/// Largest accepted replay window (AWS's upper bound).
pub const MAX_REPLAY_WINDOW: u32 = 2048;
/// Default `ipsec.nat_keepalive` (RFC 3948 keepalives from the side behind a NAT).
pub const DEFAULT_NAT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Largest accepted `ipsec.nat_keepalive`.
pub const MAX_NAT_KEEPALIVE: Duration = Duration::from_secs(3600);

/// Default `ipsec.tcp_mss`: AWS's recommended TCP MSS for tunnels with NAT-T.
pub const DEFAULT_TCP_MSS: u16 = 1379;
/// Smallest accepted `ipsec.tcp_mss` (RFC 9293 3.7.1: the IPv4 default MSS).
pub const MIN_TCP_MSS: u16 = 536;
/// Largest accepted `ipsec.tcp_mss` (an Ethernet MTU of 1500 minus 40).
pub const MAX_TCP_MSS: u16 = 1460;
/// Smallest accepted `ipsec.tunnel_mtu` (the IPv4 minimum datagram size).
pub const MIN_TUNNEL_MTU: u16 = 576;
/// Largest accepted `ipsec.tunnel_mtu` (AWS's tunnel maximum, AES-GCM
/// without NAT-T).
pub const MAX_TUNNEL_MTU: u16 = 1446;

/// Default `ipsec.tunnels[].ike_proposals`: AEAD first, then CBC with SHA-256,
/// every one inside AWS's default phase 1 set (AES128/256 and their GCM-16
/// variants, SHA1/SHA2, DH groups 2 and 14-24). No SHA1: AWS picks the lowest
/// value among what we offer, so offering SHA1 would make it the one in use.
/// The first group (ecp256, 19) is the one IKE_SA_INIT's KE payload uses.
pub const DEFAULT_IKE_PROPOSALS: &str = "aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha384-ecp384,aes128-sha256-modp2048,aes256-sha256-modp2048";
/// Default `ipsec.tunnels[].esp_proposals`: the same ciphers, each with a PFS
/// group AWS's default phase 2 set accepts (2, 5, 14-24); AWS always uses PFS.
/// AES-GCM first: it is the cheapest to run in userspace.
pub const DEFAULT_ESP_PROPOSALS: &str =
    "aes128gcm16-ecp256,aes256gcm16-ecp384,aes128-sha256-modp2048,aes256-sha256-modp2048";
/// Default `ipsec.tunnels[].ike_lifetime` (AWS's phase 1 lifetime default and maximum).
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(28_800);
/// Largest accepted `ike_lifetime` (AWS's maximum).
pub const MAX_IKE_LIFETIME: Duration = Duration::from_secs(28_800);
/// Default `ipsec.tunnels[].child_lifetime` (AWS's phase 2 lifetime default and maximum).
pub const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(3_600);
/// Largest accepted `child_lifetime` (AWS's maximum).
pub const MAX_CHILD_LIFETIME: Duration = Duration::from_secs(3_600);
/// Smallest accepted `ike_lifetime` and `child_lifetime`. AWS's own lower
/// bound is 900 s, but lifetimes are not negotiated in IKEv2 (each side
/// rekeys on its own clock), so shorter ones work against AWS too; the
/// rekey tests run with 30 s CHILD and 90 s IKE lifetimes.
pub const MIN_LIFETIME: Duration = Duration::from_secs(30);
/// Default `ipsec.tunnels[].rekey_margin` (AWS's `RekeyMarginTimeSeconds` default).
pub const DEFAULT_REKEY_MARGIN: Duration = Duration::from_secs(270);
/// Default `ipsec.tunnels[].rekey_fuzz`, in percent (AWS's `RekeyFuzzPercentage` default).
pub const DEFAULT_REKEY_FUZZ: u32 = 100;
/// Largest accepted `rekey_fuzz`, in percent.
pub const MAX_REKEY_FUZZ: u32 = 200;
/// Default `ipsec.tunnels[].dpd_interval` (AWS's DPD interval).
pub const DEFAULT_DPD_INTERVAL: Duration = Duration::from_secs(10);
/// Largest accepted `dpd_interval`.
pub const MAX_DPD_INTERVAL: Duration = Duration::from_secs(3600);
/// Default `ipsec.tunnels[].dpd_timeout` (AWS's DPD timeout).
pub const DEFAULT_DPD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted `dpd_timeout`.
pub const MAX_DPD_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Default `ipsec.tunnels[].probe_interval` (a probe a second, as AWS
/// and Netgate suggest for the inside addresses).
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Largest accepted `probe_interval`.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// Default `ipsec.tunnels[].probe_loss`: lost probes in a row that make a
/// tunnel degraded.
pub const DEFAULT_PROBE_LOSS: u32 = 3;
/// Default `ipsec.tunnels[].probe_recover`: answers in a row before the
/// hold-down of a degraded tunnel starts.
pub const DEFAULT_PROBE_RECOVER: u32 = 5;
/// Largest accepted `probe_loss` and `probe_recover`.
pub const MAX_PROBE_COUNT: u32 = 100;
/// Default `ipsec.tunnels[].probe_hold_down`.
pub const DEFAULT_PROBE_HOLD_DOWN: Duration = Duration::from_secs(10);
/// Largest accepted `probe_hold_down`.
pub const MAX_PROBE_HOLD_DOWN: Duration = Duration::from_secs(3600);
/// Default `ipsec.tunnels[].priority` (lower is preferred).
pub const DEFAULT_TUNNEL_PRIORITY: u32 = 100;
/// Default `local_ts` and `remote_ts`: everything (route-based, as AWS).
pub const DEFAULT_TRAFFIC_SELECTOR: &str = "0.0.0.0/0";
/// The range every `inside_cidr` must be in (AWS's tunnel inside CIDRs).
pub const INSIDE_CIDR_RANGE: &str = "169.254.0.0/16";

/// A validated gateway configuration (the whole `gateway.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file the configuration was read from (as given, not canonicalized).
    pub path: PathBuf,
    /// The `[gateway]` table.
    pub gateway: GatewayConfig,
    /// The `[wireguard]` table.
    pub wireguard: WireGuardConfig,
    /// The `[[peers]]` tables, in file order.
    pub peers: Vec<PeerConfig>,
    /// The `[ipsec]` table and its `[[ipsec.tunnels]]` (the defaults and no
    /// tunnels when the file has no `[ipsec]`).
    pub ipsec: IpsecConfig,
    /// The `[aws]` table, when the file has one.
    pub aws: Option<AwsConfig>,
    /// The `[firewall]` table (the default policy when the file has none).
    pub firewall: FirewallConfig,
    /// The `[metrics]` table (no listener when the file has none).
    pub metrics: MetricsConfig,
    /// The `[lan]` table (with `[lan.dhcp]`), when the file has one.
    pub lan: Option<LanConfig>,
    /// The `[dns]` table, when the file has one.
    pub dns: Option<DnsConfig>,
}

/// Largest accepted `aws.sync_interval` (one day).
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(86_400);
/// Smallest accepted non-zero `aws.sync_interval`: a round is three to four
/// Describe calls, far below EC2's request limits even at this rate.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Which VPC route tables `wgctl aws sync` manages (`aws.route_tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTables {
    /// `"all"`: every route table of the VPC the VGW is attached to.
    All,
    /// These tables (`rtb-...`), in file order; empty: none (only the VPN
    /// connection's static routes are managed).
    Ids(Vec<String>),
}

/// How the VPC route tables reach the VGW (`aws.routing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsRouting {
    /// `"static"`: a route per on-prem prefix to the VGW in each managed table.
    Static,
    /// `"propagation"`: VGW route propagation enabled on each managed table.
    Propagation,
}

impl AwsRouting {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsRouting::Static => "static",
            AwsRouting::Propagation => "propagation",
        }
    }
}

/// The `[aws]` table: the VPN connection whose routes ipiece keeps in step.
/// Credentials are never here: they come from the standard AWS chain
/// (environment, shared profile, instance role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region of the VPN connection (`us-east-1`).
    pub region: String,
    /// The VPN connection (`vpn-...`).
    pub vpn_connection_id: String,
    /// The VPC route tables to manage (default: none).
    pub route_tables: RouteTables,
    /// Static routes or route propagation in the tables (default: static).
    pub routing: AwsRouting,
    /// How often the daemon syncs; `None` (0 or absent): never.
    pub sync_interval: Option<Duration>,
    /// The EC2 endpoint to use instead of the region's (tests, VPC
    /// endpoints), `http://` or `https://`.
    pub endpoint_url: Option<String>,
}

/// The `[gateway]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// A name for this gateway, shown in logs and status output.
    pub name: String,
    /// Host name or address (optionally `host:port`) that laptops dial.
    pub public_endpoint: String,
    /// On-prem LAN prefixes that laptops may reach.
    pub lan_prefixes: Vec<IpNet>,
    /// Path of the control socket, resolved against the config file's directory.
    pub control_socket: PathBuf,
    /// Name of the TUN interface (1 to 15 characters of `[A-Za-z0-9_.-]`).
    pub tun_name: String,
    /// The gateway's public IP address (the customer gateway's `IpAddress` at
    /// AWS): `gateway.public_address`, else the address in `public_endpoint`
    /// when that is an IP address (with or without a port), else `None`.
    pub public_address: Option<IpAddr>,
}

/// The `[wireguard]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireGuardConfig {
    /// UDP port the gateway listens on (never 0).
    pub listen_port: u16,
    /// The gateway's own address with the subnet's prefix length, e.g. `172.16.60.1/24`.
    pub address: IpNet,
    /// Path of the gateway's private key file, resolved against the config file's directory.
    pub private_key_file: PathBuf,
    /// MTU of the TUN interface and of the clients' tunnels.
    pub mtu: u16,
    /// Prefixes behind the gateway other than the LAN (e.g. the AWS VPC).
    pub remote_prefixes: Vec<IpNet>,
}

/// One `[[peers]]` table: a WireGuard client (laptop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Unique name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// The peer's public key.
    pub public_key: Key,
    /// The peer's address inside the WireGuard subnet.
    pub address: IpAddr,
    /// Optional preshared key file, resolved against the config file's directory.
    pub psk_file: Option<PathBuf>,
    /// Optional client private key file (kept for `wgctl export`), resolved.
    pub private_key_file: Option<PathBuf>,
    /// Persistent keepalive in seconds, 0 = off.
    pub keepalive: u16,
    /// Where the gateway reaches a site peer (`endpoint`); `None` for a
    /// laptop, which the gateway only answers.
    pub endpoint: Option<PeerEndpoint>,
    /// DNS servers written into the client configuration.
    pub dns: Vec<IpAddr>,
    /// Whether the gateway accepts this peer.
    pub enabled: bool,
}

/// A site peer's `endpoint`: as written in the file and the address it
/// resolved to when the file was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEndpoint {
    /// The value as written, `host:port` or `address:port`.
    pub text: String,
    /// The IPv4 address and port it resolved to; `None` only for a disabled
    /// peer (whose host name is not looked up).
    pub addr: Option<SocketAddr>,
}

/// The `[ipsec]` table: settings shared by the tunnels, and the tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecConfig {
    /// ESP anti-replay window in packets, for tunnels that set none
    /// (64 to 2048).
    pub replay_window: u32,
    /// Interval of NAT keepalives (RFC 3948) sent when we are behind a NAT;
    /// zero turns them off.
    pub nat_keepalive: Duration,
    /// The largest TCP MSS a SYN entering or leaving a tunnel may announce
    /// (536 to 1460).
    pub tcp_mss: u16,
    /// The largest inner packet sealed into a tunnel; `None`: derived from
    /// the tunnel's ESP algorithm (576 to 1446).
    pub tunnel_mtu: Option<u16>,
    /// The `[[ipsec.tunnels]]` tables, in file order (disabled ones included).
    pub tunnels: Vec<TunnelConfig>,
}

impl Default for IpsecConfig {
    /// What a file without `[ipsec]` means: the defaults, no tunnels.
    fn default() -> Self {
        IpsecConfig {
            replay_window: DEFAULT_REPLAY_WINDOW,
            nat_keepalive: DEFAULT_NAT_KEEPALIVE,
            tcp_mss: DEFAULT_TCP_MSS,
            tunnel_mtu: None,
            tunnels: Vec::new(),
        }
    }
}

/// Who starts a tunnel's IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartAction {
    /// We initiate, and initiate again after a failure (`"initiate"`; AWS's
    /// startup action "add", its default, waits for us).
    Initiate,
    /// We wait for the peer to initiate (`"wait"`; AWS's startup action "start").
    Wait,
}

impl StartAction {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            StartAction::Initiate => "initiate",
            StartAction::Wait => "wait",
        }
    }
}

impl fmt::Display for StartAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[ipsec.tunnels]]` table: an IKEv2/ESP tunnel to one peer (one AWS
/// tunnel). Every default is applied; paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Unique name, `[A-Za-z0-9_.-]{1,32}`.
    pub name: String,
    /// The peer's outside address (the VGW's tunnel outside address); unique.
    pub remote_address: IpAddr,
    /// The local address to send from; `None` lets the kernel choose.
    pub local_address: Option<IpAddr>,
    /// Our IKE identity (`local_id`, default: the gateway's public address).
    pub local_id: Identity,
    /// The identity the peer must present (`remote_id`, default: `remote_address`).
    pub remote_id: Identity,
    /// The file holding the pre-shared key (mode 0600), resolved. Read it with
    /// [`super::read_psk_file`].
    pub psk_file: PathBuf,
    /// IKE proposals, in order of preference.
    pub ike_proposals: Vec<Proposal>,
    /// `ike_proposals` as written in the file (or the default).
    pub ike_proposals_text: String,
    /// ESP proposals, in order of preference; a DH group asks for PFS.
    pub esp_proposals: Vec<Proposal>,
    /// `esp_proposals` as written in the file (or the default).
    pub esp_proposals_text: String,
    /// Hard lifetime of an IKE SA.
    pub ike_lifetime: Duration,
    /// Hard lifetime of a CHILD SA (less than `ike_lifetime`).
    pub child_lifetime: Duration,
    /// How long before a hard lifetime the rekey starts (less than half of
    /// `child_lifetime`).
    pub rekey_margin: Duration,
    /// Random extra margin in percent of `rekey_margin` (0 to 200).
    pub rekey_fuzz: u32,
    /// Silence after which the peer is checked (DPD).
    pub dpd_interval: Duration,
    /// How long an unanswered check may take before the peer is declared
    /// dead (more than `dpd_interval`).
    pub dpd_timeout: Duration,
    /// Our traffic selectors (TSi as initiator).
    pub local_ts: Vec<IpNet>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<IpNet>,
    /// The tunnel inside CIDR, a /30 inside 169.254.0.0/16.
    pub inside_cidr: Option<Ipv4Net>,
    /// Whether we initiate or wait for the peer.
    pub start_action: StartAction,
    /// Lower is preferred for outbound traffic.
    pub priority: u32,
    /// ESP anti-replay window in packets (the tunnel's own, or `ipsec.replay_window`).
    pub replay_window: u32,
    /// Bytes (in and out) after which a CHILD SA is rekeyed; none by default
    /// (AWS rekeys by time only).
    pub child_lifetime_bytes: Option<u64>,
    /// UDP-encapsulate ESP even without a NAT.
    pub force_encap: bool,
    /// Time between probes of the peer's inside address; zero = off (and
    /// off without `inside_cidr`).
    pub probe_interval: Duration,
    /// Lost probes in a row that make the tunnel degraded.
    pub probe_loss: u32,
    /// Answers in a row that start a degraded tunnel's recovery.
    pub probe_recover: u32,
    /// How long a recovering tunnel must answer every probe before it
    /// carries again.
    pub probe_hold_down: Duration,
    /// Whether the tunnel is brought up.
    pub enabled: bool,
}

impl TunnelConfig {
    /// The peer's (AWS's) inside address: the network address of
    /// `inside_cidr` plus one.
    pub fn remote_inside(&self) -> Option<Ipv4Addr> {
        self.inside_cidr
            .map(|n| Ipv4Addr::from(u32::from(n.network()).wrapping_add(1)))
    }

    /// Our (the customer gateway's) inside address: the network address of
    /// `inside_cidr` plus two.
    pub fn local_inside(&self) -> Option<Ipv4Addr> {
        self.inside_cidr
            .map(|n| Ipv4Addr::from(u32::from(n.network()).wrapping_add(2)))
    }
}

impl Config {
    /// The WireGuard subnet: `wireguard.address` with the host bits cleared.
    pub fn wg_subnet(&self) -> IpNet {
        self.wireguard.address.trunc()
    }

    /// The prefixes a client routes into the tunnel: the WireGuard subnet, then
    /// `gateway.lan_prefixes`, then `wireguard.remote_prefixes`, in that order.
    pub fn client_allowed_ips(&self) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(
            1 + self.gateway.lan_prefixes.len() + self.wireguard.remote_prefixes.len(),
        );
        out.push(self.wg_subnet());
        out.extend(self.gateway.lan_prefixes.iter().copied());
        out.extend(self.wireguard.remote_prefixes.iter().copied());
        out
    }

    /// The peer named `name`, if any.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// Warnings about a configuration that is valid but may not be what
    /// the operator meant (`wgctl check` prints them, ipieced logs them),
    /// located like errors.
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.metrics
            .warning(&self.path, &self.firewall)
            .into_iter()
            .collect()
    }

    /// The IPsec tunnel named `name`, if any.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelConfig> {
        self.ipsec.tunnels.iter().find(|t| t.name == name)
    }
}

/// One problem in a configuration file, located by file, line, column and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending key or value; 0 when unknown (e.g. a read error).
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
    /// The field path, e.g. `peers[2].address`, `wireguard.mtu`, `gateway.lan_prefixes[1]`
    /// (peer indices are 0-based, in file order). Empty when the error is about the whole file.
    pub field: String,
    /// What is wrong, in words. Never contains key material.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `{file}:{line}:{column}: {field}: {message}`; the location parts that are
    /// unknown (0) and an empty field are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in a configuration file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line (no trailing newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn err(line: usize, column: usize, field: &str) -> ConfigError {
        ConfigError {
            file: PathBuf::from("/etc/ipiece/gateway.toml"),
            line,
            column,
            field: field.to_owned(),
            message: "bad".to_owned(),
        }
    }

    #[test]
    fn error_display_format() {
        assert_eq!(
            err(3, 7, "wireguard.mtu").to_string(),
            "/etc/ipiece/gateway.toml:3:7: wireguard.mtu: bad"
        );
        assert_eq!(err(0, 0, "").to_string(), "/etc/ipiece/gateway.toml: bad");
        assert_eq!(
            err(0, 0, "gateway").to_string(),
            "/etc/ipiece/gateway.toml: gateway: bad"
        );
        assert_eq!(
            err(4, 0, "x").to_string(),
            "/etc/ipiece/gateway.toml:4: x: bad"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let errs = ConfigErrors(vec![err(1, 1, "a"), err(2, 3, "b")]);
        assert_eq!(
            errs.to_string(),
            "/etc/ipiece/gateway.toml:1:1: a: bad\n/etc/ipiece/gateway.toml:2:3: b: bad"
        );
        assert_eq!(errs.len(), 2);
        let e: &dyn std::error::Error = &errs;
        assert!(e.source().is_none());
    }

    fn sample() -> Config {
        Config {
            path: Path::new("/x/gateway.toml").to_path_buf(),
            gateway: GatewayConfig {
                name: "gw".into(),
                public_endpoint: "vpn.example.com".into(),
                lan_prefixes: vec!["172.16.4.0/24".parse().unwrap()],
                control_socket: DEFAULT_CONTROL_SOCKET.into(),
                tun_name: DEFAULT_TUN_NAME.into(),
                public_address: None,
            },
            wireguard: WireGuardConfig {
                listen_port: DEFAULT_LISTEN_PORT,
                address: "172.16.60.1/24".parse().unwrap(),
                private_key_file: "/x/wg.key".into(),
                mtu: DEFAULT_MTU,
                remote_prefixes: vec!["10.0.0.0/16".parse().unwrap()],
            },
            peers: vec![PeerConfig {
                name: "alice".into(),
                public_key: Key([7; 32]),
                address: "172.16.60.2".parse().unwrap(),
                psk_file: None,
                private_key_file: None,
                keepalive: DEFAULT_KEEPALIVE,
                endpoint: None,
                dns: vec![],
                enabled: true,
            }],
            ipsec: IpsecConfig::default(),
            aws: None,
            firewall: FirewallConfig::default(),
            metrics: MetricsConfig::default(),
            lan: None,
            dns: None,
        }
    }

    #[test]
    fn subnet_allowed_ips_and_peer_lookup() {
        let c = sample();
        assert_eq!(c.wg_subnet(), "172.16.60.0/24".parse::<IpNet>().unwrap());
        let want: Vec<IpNet> = ["172.16.60.0/24", "172.16.4.0/24", "10.0.0.0/16"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.client_allowed_ips(), want);
        assert_eq!(
            c.peer("alice").map(|p| p.address),
            "172.16.60.2".parse().ok()
        );
        assert!(c.peer("bob").is_none());
    }

    #[test]
    fn inside_addresses() {
        let mut c = sample();
        assert!(c.tunnel("aws-1").is_none());
        c.ipsec.tunnels.push(TunnelConfig {
            name: "aws-1".into(),
            remote_address: "203.0.113.1".parse().unwrap(),
            local_address: None,
            local_id: Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10)),
            remote_id: Identity::Ipv4(Ipv4Addr::new(203, 0, 113, 1)),
            psk_file: "/x/aws-1.psk".into(),
            ike_proposals: vec![],
            ike_proposals_text: String::new(),
            esp_proposals: vec![],
            esp_proposals_text: String::new(),
            ike_lifetime: DEFAULT_IKE_LIFETIME,
            child_lifetime: DEFAULT_CHILD_LIFETIME,
            rekey_margin: DEFAULT_REKEY_MARGIN,
            rekey_fuzz: DEFAULT_REKEY_FUZZ,
            dpd_interval: DEFAULT_DPD_INTERVAL,
            dpd_timeout: DEFAULT_DPD_TIMEOUT,
            local_ts: vec![],
            remote_ts: vec![],
            inside_cidr: Some("169.254.255.252/30".parse().unwrap()),
            start_action: StartAction::Initiate,
            priority: DEFAULT_TUNNEL_PRIORITY,
            replay_window: DEFAULT_REPLAY_WINDOW,
            child_lifetime_bytes: None,
            force_encap: true,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_loss: DEFAULT_PROBE_LOSS,
            probe_recover: DEFAULT_PROBE_RECOVER,
            probe_hold_down: DEFAULT_PROBE_HOLD_DOWN,
            enabled: true,
        });
        let t = c.tunnel("aws-1").unwrap();
        assert_eq!(t.remote_inside(), Some(Ipv4Addr::new(169, 254, 255, 253)));
        assert_eq!(t.local_inside(), Some(Ipv4Addr::new(169, 254, 255, 254)));
        assert_eq!(StartAction::Wait.to_string(), "wait");
        assert_eq!(StartAction::Initiate.as_str(), "initiate");
    }
}
