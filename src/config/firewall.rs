//! The `[firewall]` table of `gateway.toml`, as validated: interfaces, the
//! SSH sources, aliases, pfSense-style rules and port forwards. The policy
//! built from it lives in [`crate::firewall`].

use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;

/// The zones of the policy, named for what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zone {
    /// The WAN interface.
    Wan,
    /// `gateway.lan_prefixes` on the LAN interface.
    Lan,
    /// The WireGuard subnet (the laptops), via the TUN.
    Wg,
    /// `wireguard.remote_prefixes` (the VPC), via the IPsec tunnels.
    Aws,
    /// Traffic addressed to the gateway itself.
    Gateway,
}

impl Zone {
    /// Every zone, in the order the README lists them.
    pub const ALL: [Zone; 5] = [Zone::Wan, Zone::Lan, Zone::Wg, Zone::Aws, Zone::Gateway];

    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Wan => "wan",
            Zone::Lan => "lan",
            Zone::Wg => "wg",
            Zone::Aws => "aws",
            Zone::Gateway => "gateway",
        }
    }

    /// The zone named `s`, if any.
    pub fn from_name(s: &str) -> Option<Zone> {
        Zone::ALL.into_iter().find(|z| z.as_str() == s)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule's `from` or `to` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallTarget {
    /// A zone.
    Zone(Zone),
    /// A CIDR prefix or a single address (as a /32 or /128).
    Prefix(IpNet),
    /// A `[firewall.aliases]` entry, by name (known to exist).
    Alias(String),
    /// `peer:NAME`: one laptop (known to exist).
    Peer(String),
}

impl fmt::Display for FirewallTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirewallTarget::Zone(z) => write!(f, "{z}"),
            FirewallTarget::Prefix(p) => write!(f, "{p}"),
            FirewallTarget::Alias(a) => write!(f, "{a}"),
            FirewallTarget::Peer(p) => write!(f, "peer:{p}"),
        }
    }
}

/// A rule's `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (ICMPv6 for IPv6 addresses).
    Icmp,
    /// Any protocol (the default).
    Any,
}

impl FirewallProto {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallProto::Tcp => "tcp",
            FirewallProto::Udp => "udp",
            FirewallProto::Icmp => "icmp",
            FirewallProto::Any => "any",
        }
    }
}

/// A rule's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Let the packet through.
    Accept,
    /// Drop it silently.
    Drop,
    /// Drop it and tell the sender (TCP reset, ICMP unreachable).
    Reject,
}

impl FirewallAction {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallAction::Accept => "accept",
            FirewallAction::Drop => "drop",
            FirewallAction::Reject => "reject",
        }
    }
}

/// One `[[firewall.rules]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    /// Unique name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// Where the packet comes from.
    pub from: FirewallTarget,
    /// Where it goes.
    pub to: FirewallTarget,
    /// Its protocol.
    pub proto: FirewallProto,
    /// Destination port ranges (inclusive; tcp and udp only); empty: any.
    pub ports: Vec<(u16, u16)>,
    /// What to do with a match.
    pub action: FirewallAction,
    /// Log matches (kernel log, prefix `ipiece NAME: `).
    pub log: bool,
}

/// One `[[firewall.port_forwards]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// Unique name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// `tcp` or `udp`.
    pub proto: FirewallProto,
    /// The port on the WAN address.
    pub port: u16,
    /// The inside address and port (inside `gateway.lan_prefixes`).
    pub to: SocketAddr,
    /// Allowed sources (prefixes and alias names); empty: any.
    pub from: Vec<FirewallTarget>,
}

/// The `[firewall]` table (the defaults when the file has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// False: the explicit opt-out (nothing filtered, a warning).
    pub enabled: bool,
    /// The WAN interface; `None`: the interface of the default route.
    pub wan_interface: Option<String>,
    /// The LAN interface; `None`: the interface of the route to the LAN.
    pub lan_interface: Option<String>,
    /// Prefixes allowed to reach TCP 22 on the gateway from the WAN.
    pub ssh_from: Vec<IpNet>,
    /// `[firewall.aliases]`, sorted by name.
    pub aliases: Vec<(String, Vec<IpNet>)>,
    /// The rules, in file order (first match wins).
    pub rules: Vec<FirewallRule>,
    /// The port forwards, in file order.
    pub port_forwards: Vec<PortForward>,
}

impl Default for FirewallConfig {
    /// What a file without `[firewall]` means: the default policy, the
    /// interfaces found from the routes.
    fn default() -> Self {
        FirewallConfig {
            enabled: true,
            wan_interface: None,
            lan_interface: None,
            ssh_from: Vec::new(),
            aliases: Vec::new(),
            rules: Vec::new(),
            port_forwards: Vec::new(),
        }
    }
}

impl FirewallConfig {
    /// The prefixes of alias `name`, if it exists.
    pub fn alias(&self, name: &str) -> Option<&[IpNet]> {
        self.aliases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}
