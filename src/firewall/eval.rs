//! The in-core evaluator: the [`Policy`] on the path that never enters the
//! kernel (WireGuard <-> ESP). The same first-match semantics as the nft
//! ruleset: packets of a connection already accepted pass (the kernel's
//! `ct state established,related accept`), a new one goes through the
//! rules in order, then the default policy. Per-rule counters as in nft.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pnet_packet::ip::IpNextHeaderProtocols as P;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::Packet;
use serde::{Deserialize, Serialize};

use super::policy::{default_allows, Policy, Side};
use crate::config::firewall::{FirewallAction, FirewallProto, Zone};

/// The fields of an IP packet the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    /// Source port (the echo identifier for ICMP echo), 0 when none.
    pub sport: u16,
    /// Destination port (the echo identifier for ICMP echo), 0 when none.
    pub dport: u16,
    /// Whether the packet is an ICMP error (unreachable, time exceeded...),
    /// which the kernel treats as related to the connection it quotes.
    pub icmp_error: bool,
}

impl PacketInfo {
    /// Reads the IPv4 or IPv6 header and the ports; `None` for anything
    /// else or a truncated header.
    pub fn parse(packet: &[u8]) -> Option<PacketInfo> {
        let (src, dst, proto, payload, first_fragment) = match packet.first()? >> 4 {
            4 => {
                let ip = Ipv4Packet::new(packet)?;
                let hl = usize::from(ip.get_header_length()) * 4;
                let payload = packet.get(hl..)?;
                (
                    IpAddr::V4(ip.get_source()),
                    IpAddr::V4(ip.get_destination()),
                    ip.get_next_level_protocol().0,
                    payload,
                    ip.get_fragment_offset() == 0,
                )
            }
            6 => {
                let ip = Ipv6Packet::new(packet)?;
                let payload = packet.get(40..)?;
                let _ = ip.payload();
                (
                    IpAddr::V6(ip.get_source()),
                    IpAddr::V6(ip.get_destination()),
                    ip.get_next_header().0,
                    payload,
                    true,
                )
            }
            _ => return None,
        };
        let mut info = PacketInfo {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            icmp_error: false,
        };
        if !first_fragment {
            return Some(info);
        }
        let be = |i: usize| {
            payload
                .get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        if proto == P::Tcp.0 || proto == P::Udp.0 {
            info.sport = be(0)?;
            info.dport = be(2)?;
        } else if proto == P::Icmp.0 || proto == P::Icmpv6.0 {
            let ty = *payload.first()?;
            let echo = if proto == P::Icmp.0 {
                [8, 0]
            } else {
                [128, 129]
            };
            if echo.contains(&ty) {
                info.sport = be(4)?;
                info.dport = info.sport;
            } else {
                info.icmp_error = if proto == P::Icmp.0 {
                    matches!(ty, 3 | 11 | 12)
                } else {
                    matches!(ty, 1..=4)
                };
            }
        }
        Some(info)
    }
}

/// What the policy decided for one new packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The index of the rule that matched; `None`: the default policy.
    pub rule: Option<usize>,
    /// Whether the packet passes.
    pub accept: bool,
}

impl Policy {
    fn side_matches(&self, side: &Side, zone: Zone, addr: IpAddr) -> bool {
        match side {
            Side::Zone(z) => {
                *z == zone
                    && (self.zone_nets(*z).iter().any(|n| n.contains(&addr))
                        || matches!(z, Zone::Wan))
            }
            Side::Nets(n) => n.iter().any(|n| n.contains(&addr)),
        }
    }

    /// The verdict for a new packet from zone `from` to zone `to`: the
    /// first rule that matches, else the default policy.
    pub fn decide(&self, from: Zone, to: Zone, p: &PacketInfo) -> Decision {
        for (i, r) in self.rules.iter().enumerate() {
            if !self.side_matches(&r.from, from, p.src) || !self.side_matches(&r.to, to, p.dst) {
                continue;
            }
            let proto_ok = match r.proto {
                FirewallProto::Tcp => p.proto == P::Tcp.0,
                FirewallProto::Udp => p.proto == P::Udp.0,
                FirewallProto::Icmp => p.proto == P::Icmp.0 || p.proto == P::Icmpv6.0,
                FirewallProto::Any => true,
            };
            if !proto_ok {
                continue;
            }
            if !r.ports.is_empty() && !r.ports.iter().any(|&(a, b)| (a..=b).contains(&p.dport)) {
                continue;
            }
            return Decision {
                rule: Some(i),
                accept: r.action == FirewallAction::Accept,
            };
        }
        Decision {
            rule: None,
            accept: default_allows(from, to),
        }
    }
}

/// Packets and bytes one rule matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounter {
    /// The counter's name (`rule NAME`, `wg -> aws`, ...), as the nft comment.
    pub name: String,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// A connection as the evaluator tracks it: protocol, then both ends.
type FlowKey = (u8, IpAddr, u16, IpAddr, u16);

/// Most connections tracked; beyond, new ones are evaluated packet by packet.
const MAX_FLOWS: usize = 65_536;
/// How long an idle TCP connection stays tracked.
const TCP_IDLE: Duration = Duration::from_secs(600);
/// How long an idle UDP or ICMP flow stays tracked.
const OTHER_IDLE: Duration = Duration::from_secs(120);
/// How often idle flows are swept.
const SWEEP: Duration = Duration::from_secs(10);

/// The policy with its counters and its connection table, owned by the core.
#[derive(Debug, Default)]
pub struct Evaluator {
    policy: Option<Arc<Policy>>,
    rules: Vec<RuleCounter>,
    defaults: HashMap<(Zone, Zone), RuleCounter>,
    flows: HashMap<FlowKey, Instant>,
    now: Option<Instant>,
    last_sweep: Option<Instant>,
}

impl Evaluator {
    /// An evaluator with no policy: everything passes until
    /// [`Evaluator::set_policy`].
    pub fn new() -> Evaluator {
        Evaluator::default()
    }

    /// Puts `policy` in force. Counters of rules that keep their name are
    /// kept; tracked connections stay (as the kernel's conntrack does).
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        let old = std::mem::take(&mut self.rules);
        self.rules = policy
            .rules
            .iter()
            .map(|r| {
                let name = format!("rule {}", r.name);
                old.iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .unwrap_or(RuleCounter {
                        name,
                        packets: 0,
                        bytes: 0,
                    })
            })
            .collect();
        if !policy.enabled {
            self.flows.clear();
        }
        self.policy = Some(policy);
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// Whether `packet`, travelling from zone `from` to zone `to` inside the
    /// core, may pass; counts it.
    pub fn allow(&mut self, from: Zone, to: Zone, packet: &[u8]) -> bool {
        let Some(policy) = self.policy.clone() else {
            return true;
        };
        if !policy.enabled {
            return true;
        }
        let Some(p) = PacketInfo::parse(packet) else {
            return false;
        };
        let now = self.now.unwrap_or_else(Instant::now);
        let key: FlowKey = (p.proto, p.src, p.sport, p.dst, p.dport);
        let reverse: FlowKey = (p.proto, p.dst, p.dport, p.src, p.sport);
        for k in [key, reverse] {
            if let Some(seen) = self.flows.get_mut(&k) {
                *seen = now;
                return true;
            }
        }
        if p.icmp_error && self.related(packet) {
            return true;
        }
        let d = policy.decide(from, to, &p);
        let len = packet.len() as u64;
        let c = match d.rule {
            Some(i) => &mut self.rules[i],
            None => self
                .defaults
                .entry((from, to))
                .or_insert_with(|| RuleCounter {
                    name: format!("{from} -> {to}"),
                    packets: 0,
                    bytes: 0,
                }),
        };
        c.packets += 1;
        c.bytes += len;
        if d.accept && self.flows.len() < MAX_FLOWS {
            self.flows.insert(key, now);
        }
        d.accept
    }

    /// An ICMP error quoting a tracked connection (PMTU, unreachable).
    fn related(&self, packet: &[u8]) -> bool {
        let inner_at = match packet.first().map(|b| b >> 4) {
            Some(4) => usize::from(packet[0] & 0x0f) * 4 + 8,
            Some(6) => 40 + 8,
            _ => return false,
        };
        let Some(q) = packet.get(inner_at..).and_then(PacketInfo::parse) else {
            return false;
        };
        self.flows
            .contains_key(&(q.proto, q.src, q.sport, q.dst, q.dport))
    }

    /// Advances the clock; sweeps idle connections now and then.
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < SWEEP)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.flows.retain(|k, seen| {
            let idle = if k.0 == P::Tcp.0 {
                TCP_IDLE
            } else {
                OTHER_IDLE
            };
            now.duration_since(*seen) < idle
        });
    }

    /// The counters: each rule's, then the defaults that matched.
    pub fn counters(&self) -> Vec<RuleCounter> {
        let mut v = self.rules.clone();
        let mut d: Vec<_> = self.defaults.values().cloned().collect();
        d.sort_by(|a, b| a.name.cmp(&b.name));
        v.extend(d);
        v
    }
}
