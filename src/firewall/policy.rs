//! The policy model, compiled once from a validated [`Config`]: zones with
//! their prefixes, the rules with aliases and `peer:NAME` resolved to
//! prefixes, the port forwards, and the default policy. Both the nft
//! renderer and the in-core evaluator read this one model, so that the
//! kernel path and the userspace path cannot disagree.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::firewall::{FirewallAction, FirewallProto, FirewallTarget, PortForward, Zone};
use crate::config::Config;

/// The largest TCP MSS towards and from the AWS tunnels: `ipsec.tcp_mss`
/// (default 1379, AWS's value with NAT-T), the same value the core clamps to.
pub fn aws_tcp_mss(cfg: &Config) -> u16 {
    cfg.ipsec.tcp_mss
}

/// The WAN and LAN interfaces the kernel ruleset names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interfaces {
    /// The WAN interface.
    pub wan: String,
    /// The LAN interface.
    pub lan: String,
}

/// One side of a rule after compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// A zone (its interface and prefixes).
    Zone(Zone),
    /// These prefixes (a CIDR, an alias, or a peer's address), on any interface.
    Nets(Vec<IpNet>),
}

/// A compiled `[[firewall.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name (its counter and its nft comment).
    pub name: String,
    /// `from`, resolved.
    pub from: Side,
    /// `to`, resolved.
    pub to: Side,
    /// `from` as written.
    pub from_text: String,
    /// `to` as written.
    pub to_text: String,
    /// The protocol.
    pub proto: FirewallProto,
    /// Destination port ranges; empty: any.
    pub ports: Vec<(u16, u16)>,
    /// The action.
    pub action: FirewallAction,
    /// Log matches.
    pub log: bool,
}

/// Which base chain a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Addressed to the gateway.
    Input,
    /// Sent by the gateway.
    Output,
    /// Routed through it.
    Forward,
}

impl Rule {
    /// The chain the rule is rendered into.
    pub fn hook(&self) -> Hook {
        match (&self.from, &self.to) {
            (_, Side::Zone(Zone::Gateway)) => Hook::Input,
            (Side::Zone(Zone::Gateway), _) => Hook::Output,
            _ => Hook::Forward,
        }
    }
}

/// A compiled port forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Its name.
    pub name: String,
    /// tcp or udp.
    pub proto: FirewallProto,
    /// The WAN port.
    pub port: u16,
    /// The inside address and port.
    pub to: SocketAddr,
    /// Allowed sources; empty: any.
    pub from: Vec<IpNet>,
}

/// The policy both paths enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// False: the operator opted out (no table, nothing filtered).
    pub enabled: bool,
    /// The TUN (`gateway.tun_name`): wg and aws arrive and leave there.
    pub tun: String,
    /// `firewall.wan_interface` as written (`None`: from the routes).
    pub wan_interface: Option<String>,
    /// `firewall.lan_interface` as written, else `lan.interface` (`None`:
    /// from the routes).
    pub lan_interface: Option<String>,
    /// The lan zone's prefixes.
    pub lan: Vec<IpNet>,
    /// The wg zone (the WireGuard subnet).
    pub wg: IpNet,
    /// The gateway's own address in the WireGuard subnet.
    pub gateway_wg: IpAddr,
    /// The aws zone's prefixes.
    pub aws: Vec<IpNet>,
    /// The WireGuard UDP port.
    pub wg_port: u16,
    /// Sources allowed to reach TCP 22 from the WAN.
    pub ssh_from: Vec<IpNet>,
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// The port forwards.
    pub forwards: Vec<Forward>,
    /// Largest TCP MSS towards and from the aws zone.
    pub aws_mss: u16,
    /// Largest TCP MSS towards and from the wg zone (WireGuard MTU - 40).
    pub wg_mss: u16,
    /// `[lan.dhcp]` is on: the LAN reaches the gateway's DHCP server (UDP 67).
    pub dhcp: bool,
    /// `[dns]` is on: lan and wg reach the gateway's DNS server (UDP and TCP 53).
    pub dns: bool,
}

/// Whether the default policy lets traffic from zone `from` reach zone `to`
/// (after the rules, for new connections): lan, wg and aws reach each
/// other (and themselves); lan reaches wan (masqueraded); lan and wg reach
/// the gateway. Everything else is dropped; the WAN's own exceptions (the
/// gateway's ports, SSH, ICMP, port forwards) are rendered apart.
pub fn default_allows(from: Zone, to: Zone) -> bool {
    use Zone::*;
    matches!(
        (from, to),
        (Lan | Wg | Aws, Lan | Wg | Aws) | (Lan, Wan) | (Lan | Wg, Gateway)
    )
}

impl Policy {
    /// Compiles the policy of a validated configuration.
    pub fn compile(cfg: &Config) -> Policy {
        let fw = &cfg.firewall;
        let resolve = |t: &FirewallTarget| -> Side {
            match t {
                FirewallTarget::Zone(z) => Side::Zone(*z),
                FirewallTarget::Prefix(p) => Side::Nets(vec![*p]),
                FirewallTarget::Alias(a) => Side::Nets(fw.alias(a).unwrap_or(&[]).to_vec()),
                FirewallTarget::Peer(p) => Side::Nets(
                    cfg.peer(p)
                        .map(|p| vec![IpNet::from(p.address)])
                        .unwrap_or_default(),
                ),
            }
        };
        let rules = fw
            .rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                from: resolve(&r.from),
                to: resolve(&r.to),
                from_text: r.from.to_string(),
                to_text: r.to.to_string(),
                proto: r.proto,
                ports: r.ports.clone(),
                action: r.action,
                log: r.log,
            })
            .collect();
        let forwards = fw
            .port_forwards
            .iter()
            .map(|f: &PortForward| Forward {
                name: f.name.clone(),
                proto: f.proto,
                port: f.port,
                to: f.to,
                from: f
                    .from
                    .iter()
                    .flat_map(|t| match resolve(t) {
                        Side::Nets(n) => n,
                        Side::Zone(_) => Vec::new(),
                    })
                    .collect(),
            })
            .collect();
        Policy {
            enabled: fw.enabled,
            tun: cfg.gateway.tun_name.clone(),
            wan_interface: fw.wan_interface.clone(),
            lan_interface: fw
                .lan_interface
                .clone()
                .or_else(|| cfg.lan.as_ref().and_then(|l| l.interface.clone())),
            lan: cfg.gateway.lan_prefixes.clone(),
            wg: cfg.wg_subnet(),
            gateway_wg: cfg.wireguard.address.addr(),
            aws: cfg.wireguard.remote_prefixes.clone(),
            wg_port: cfg.wireguard.listen_port,
            ssh_from: fw.ssh_from.clone(),
            rules,
            forwards,
            aws_mss: aws_tcp_mss(cfg),
            wg_mss: cfg.wireguard.mtu.saturating_sub(40),
            dhcp: cfg.lan.as_ref().is_some_and(|l| l.dhcp.is_some()),
            dns: cfg.dns.is_some(),
        }
    }

    /// The prefixes of an address zone (lan, wg, aws); empty for the others.
    pub fn zone_nets(&self, z: Zone) -> Vec<IpNet> {
        match z {
            Zone::Lan => self.lan.clone(),
            Zone::Wg => vec![self.wg],
            Zone::Aws => self.aws.clone(),
            Zone::Wan | Zone::Gateway => Vec::new(),
        }
    }

    /// The inside prefixes a packet from the WAN can never come from
    /// (anti-spoofing): lan, wg and aws.
    pub fn spoofed_sources(&self) -> Vec<IpNet> {
        let mut v = self.lan.clone();
        v.push(self.wg);
        v.extend(self.aws.iter().copied());
        v
    }
}
