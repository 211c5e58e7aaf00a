//! The configuration model: the typed view of `gateway.toml` after validation,
//! and the error types that point back into the file.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::keys::Key;

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
    /// DNS servers written into the client configuration.
    pub dns: Vec<IpAddr>,
    /// Whether the gateway accepts this peer.
    pub enabled: bool,
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
                dns: vec![],
                enabled: true,
            }],
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
}
