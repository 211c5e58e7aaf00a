//! `aliases`, `filter/rule` and `nat/rule` -> `[firewall.aliases]`,
//! `[[firewall.rules]]` and `[[firewall.port_forwards]]`.
//!
//! pfSense filters per interface, on the way in: a rule on `lan` sees
//! packets from the LAN, so its "any" source is the `lan` zone. Interfaces
//! map to zones: `lan` -> `lan`, `wan` -> `wan`, `enc0` (the IPsec tab) ->
//! `aws`, the `WireGuard` group -> `wg`; rules of other interfaces and
//! floating rules are reported. Destinations: `(self)` and the
//! interfaces' addresses -> `gateway`, `lan` -> the `lan` zone, addresses,
//! networks and host/network aliases as they are; "any" becomes one rule
//! per other zone, except that a pass from the WAN to anything (which
//! ipiece's default-deny WAN policy keeps closed) is reported instead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use roxmltree::Node;

use super::{
    child, children, flag, line_of, sanitize_name, text, text_of, unique_name, ImportPlan,
    PortForward, Rule,
};
use crate::config::firewall::{FirewallAction, FirewallProto, Zone};

/// Aliases read: host/network ones (imported) and port ones (expanded
/// into rules' ports).
#[derive(Default)]
struct Aliases {
    nets: Vec<(String, Vec<IpNet>)>,
    ports: Vec<(String, Vec<(u16, u16)>)>,
}

impl Aliases {
    fn net(&self, name: &str) -> Option<&[IpNet]> {
        self.nets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    fn port(&self, name: &str) -> Option<&[(u16, u16)]> {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A port or range: `80`, `1000-2000` (rules) or `1000:2000` (aliases).
fn port_range(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    match s.split_once(['-', ':']) {
        Some((a, b)) => {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b && a > 0).then_some((a, b))
        }
        None => s.parse().ok().filter(|p| *p > 0).map(|p| (p, p)),
    }
}

/// Reads aliases, filter rules and port forwards.
pub(super) fn read(root: Node<'_, '_>, plan: &mut ImportPlan) {
    let aliases = read_aliases(root, plan);
    plan.aliases = aliases.nets.clone();
    let mut names: Vec<String> = Vec::new();
    if let Some(nat) = child(root, "nat") {
        read_nat(nat, &aliases, &mut names, plan);
    }
    if let Some(filter) = child(root, "filter") {
        for r in children(filter, "rule") {
            read_rule(r, &aliases, &mut names, plan);
        }
    }
}

fn read_aliases(root: Node<'_, '_>, plan: &mut ImportPlan) -> Aliases {
    let mut out = Aliases::default();
    let Some(list) = child(root, "aliases") else {
        return out;
    };
    for a in children(list, "alias") {
        let name = text(a, "name").unwrap_or_default();
        let kind = text(a, "type").unwrap_or_default();
        let what = format!("alias {name} ({kind})");
        let items: Vec<String> = text(a, "address")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        match kind.as_str() {
            "host" | "network" => {
                if Zone::from_name(&name).is_some()
                    || sanitize_name(&name, 64).as_deref() != Some(name.as_str())
                    || name.starts_with("peer:")
                {
                    plan.report.skip(
                        a,
                        &what,
                        "its name is a zone's or not of A-Za-z0-9_.-: rename it in pfSense first",
                    );
                    continue;
                }
                let mut nets = Vec::new();
                let mut bad = Vec::new();
                for item in &items {
                    match item.parse::<IpNet>() {
                        Ok(n) => nets.push(n.trunc()),
                        Err(_) => match item.parse::<IpAddr>() {
                            Ok(ip) => nets.push(IpNet::from(ip)),
                            Err(_) => bad.push(item.clone()),
                        },
                    }
                }
                if !bad.is_empty() {
                    plan.report.skip(
                        a,
                        &what,
                        format!(
                            "{} are host names, ranges or nested aliases: ipiece's aliases hold prefixes and addresses only",
                            bad.join(", ")
                        ),
                    );
                    continue;
                }
                out.nets.push((name, nets));
            }
            "port" => {
                let ports: Option<Vec<(u16, u16)>> = items.iter().map(|p| port_range(p)).collect();
                match ports {
                    Some(p) if !p.is_empty() => {
                        plan.report.note(
                            a,
                            &what,
                            "ipiece has no port aliases: its ports are written into the rules that use it",
                        );
                        out.ports.push((name, p));
                    }
                    _ => plan.report.skip(a, &what, "not a list of ports"),
                }
            }
            other => plan.report.skip(
                a,
                &what,
                format!(
                    "alias type `{other}`: ipiece's aliases are lists of prefixes and addresses"
                ),
            ),
        }
    }
    out
}

/// What a source or destination element names.
enum Target {
    Any,
    Named(String),
}

/// A rule's `source` / `destination` as a zone, prefix or alias.
fn target(
    node: Option<Node<'_, '_>>,
    side: &str,
    iface_zone: Zone,
    aliases: &Aliases,
) -> Result<Target, String> {
    let Some(n) = node else {
        return Err(format!("no <{side}>"));
    };
    if flag(n, "not") {
        return Err(format!(
            "{side} inverted (\"not\"): ipiece's rules do not invert"
        ));
    }
    if side == "source" && text(n, "port").is_some() {
        return Err("a source port: ipiece's rules match destination ports only".into());
    }
    if flag(n, "any") {
        return Ok(if side == "source" {
            Target::Named(iface_zone.as_str().to_owned())
        } else {
            Target::Any
        });
    }
    if let Some(net) = text(n, "network") {
        return match net.as_str() {
            "lan" => Ok(Target::Named("lan".into())),
            "(self)" | "lanip" | "wanip" => Ok(Target::Named("gateway".into())),
            other => Err(format!(
                "{side} network `{other}`: only the LAN subnet and the firewall's own addresses map onto ipiece's zones"
            )),
        };
    }
    if let Some(addr) = text(n, "address") {
        if let Ok(p) = addr.parse::<IpNet>() {
            return Ok(Target::Named(p.trunc().to_string()));
        }
        if let Ok(a) = addr.parse::<IpAddr>() {
            return Ok(Target::Named(a.to_string()));
        }
        if aliases.net(&addr).is_some() {
            return Ok(Target::Named(addr));
        }
        return Err(format!(
            "{side} `{addr}`: an alias ipiece could not import, or a host name"
        ));
    }
    Err(format!("{side}: nothing ipiece understands"))
}

/// The zone of a rule's interface.
fn iface_zone(iface: &str) -> Option<Zone> {
    match iface.to_ascii_lowercase().as_str() {
        "lan" => Some(Zone::Lan),
        "wan" => Some(Zone::Wan),
        "enc0" => Some(Zone::Aws),
        "wireguard" => Some(Zone::Wg),
        _ => None,
    }
}

/// Destination ports of a rule: a port, a range or a port alias.
fn dest_ports(n: Option<Node<'_, '_>>, aliases: &Aliases) -> Result<Vec<(u16, u16)>, String> {
    let Some(p) = n.and_then(|d| text(d, "port")) else {
        return Ok(Vec::new());
    };
    if let Some(r) = port_range(&p) {
        return Ok(vec![r]);
    }
    aliases
        .port(&p)
        .map(<[_]>::to_vec)
        .ok_or_else(|| format!("destination port `{p}`: not a port, a range or a port alias"))
}

/// The protocols a rule's `protocol` stands for.
fn protos(r: Node<'_, '_>) -> Result<Vec<FirewallProto>, String> {
    match text(r, "protocol").as_deref() {
        None | Some("any") => Ok(vec![FirewallProto::Any]),
        Some("tcp") => Ok(vec![FirewallProto::Tcp]),
        Some("udp") => Ok(vec![FirewallProto::Udp]),
        Some("tcp/udp") => Ok(vec![FirewallProto::Tcp, FirewallProto::Udp]),
        Some("icmp") => match text(r, "icmptype").as_deref() {
            None | Some("any") => Ok(vec![FirewallProto::Icmp]),
            Some(t) => Err(format!("ICMP type `{t}`: ipiece's rules match all of ICMP")),
        },
        Some(other) => Err(format!(
            "protocol `{other}`: ipiece's rules match tcp, udp, icmp or any"
        )),
    }
}

fn label(r: Node<'_, '_>, kind: &str) -> String {
    match text(r, "descr") {
        Some(d) => format!("{kind} {d:?}"),
        None => format!(
            "{kind} (tracker {})",
            text(r, "tracker").unwrap_or_default()
        ),
    }
}

/// What an "any" destination becomes.
enum AnyTo {
    /// One rule per zone.
    Zones(Vec<String>),
    /// Nothing: ipiece's default policy does the same (why).
    Covered(String),
    /// Nothing: ipiece will not open this (why).
    Refused(String),
}

/// A rule to "any": the default policy already does it, ipiece refuses to
/// open it (a pass from the WAN), or one rule per other zone.
fn any_destination(
    from: &str,
    action: FirewallAction,
    ports: &[(u16, u16)],
    protos: &[FirewallProto],
) -> AnyTo {
    let from_zone = Zone::from_name(from);
    let default_like = ports.is_empty()
        && protos == [FirewallProto::Any]
        && matches!(from_zone, Some(Zone::Lan | Zone::Wg | Zone::Aws));
    if action == FirewallAction::Accept && default_like {
        return AnyTo::Covered(format!(
            "covered by ipiece's default policy ({from} reaches the other zones)"
        ));
    }
    if action == FirewallAction::Accept && from_zone == Some(Zone::Wan) {
        return AnyTo::Refused(
            "a pass from the WAN to anything: ipiece keeps the WAN default-deny; use port forwards or rules to specific destinations".into(),
        );
    }
    if action != FirewallAction::Accept && from_zone == Some(Zone::Wan) && ports.is_empty() {
        return AnyTo::Covered("covered by ipiece's default-deny WAN policy".into());
    }
    AnyTo::Zones(
        Zone::ALL
            .iter()
            .filter(|z| Some(**z) != from_zone)
            .map(|z| z.as_str().to_owned())
            .collect(),
    )
}

fn read_rule(r: Node<'_, '_>, aliases: &Aliases, names: &mut Vec<String>, plan: &mut ImportPlan) {
    let iface = text(r, "interface").unwrap_or_default();
    let what = format!("{} on {iface}", label(r, "filter rule"));
    if flag(r, "disabled") {
        plan.report.skip(r, &what, "disabled in pfSense");
        return;
    }
    if let Some(id) = text(r, "associated-rule-id") {
        plan.report.note(
            r,
            &what,
            format!(
                "the filter rule of a port forward ({id}): implied by the imported port forward"
            ),
        );
        return;
    }
    if flag(r, "floating") || text(r, "floating").as_deref() == Some("yes") {
        plan.report.skip(
            r,
            &what,
            "floating rules are not supported: write a rule per zone",
        );
        return;
    }
    let Some(zone) = iface_zone(&iface) else {
        plan.report.skip(
            r,
            &what,
            format!("interface `{iface}`: ipiece's zones are wan, lan, wg (WireGuard group), aws (IPsec, enc0)"),
        );
        return;
    };
    if text(r, "ipprotocol").as_deref() == Some("inet6") {
        plan.report.skip(r, &what, "IPv6 rules are not imported");
        return;
    }
    if let Some(sched) = text(r, "sched") {
        plan.report.skip(
            r,
            &what,
            format!("it follows the schedule `{sched}`: ipiece's rules have no schedules (imported, it would hold at all times)"),
        );
        return;
    }
    if let Some(gw) = text(r, "gateway") {
        plan.report.note(
            r,
            &what,
            format!("its policy route via `{gw}` is not imported: ipiece routes by destination"),
        );
    }
    let action = match text(r, "type").as_deref() {
        Some("pass") => FirewallAction::Accept,
        Some("block") => FirewallAction::Drop,
        Some("reject") => FirewallAction::Reject,
        other => {
            plan.report
                .skip(r, &what, format!("action `{}`", other.unwrap_or("none")));
            return;
        }
    };
    let result = (|| {
        let from = target(child(r, "source"), "source", zone, aliases)?;
        let to = target(child(r, "destination"), "destination", zone, aliases)?;
        let ports = dest_ports(child(r, "destination"), aliases)?;
        let protos = protos(r)?;
        Ok::<_, String>((from, to, ports, protos))
    })();
    let (from, to, ports, protos) = match result {
        Ok(v) => v,
        Err(e) => {
            plan.report.skip(r, &what, e);
            return;
        }
    };
    let Target::Named(mut from) = from else {
        unreachable!("a source is never Any")
    };
    // A laptop's address is that laptop.
    if let Some(p) = plan
        .peers
        .iter()
        .find(|p| from.parse::<IpAddr>().ok() == Some(p.address))
    {
        from = format!("peer:{}", p.name);
    }
    let tos: Vec<String> = match to {
        Target::Named(t) => vec![t],
        Target::Any => match any_destination(&from, action, &ports, &protos) {
            AnyTo::Zones(z) => z,
            AnyTo::Covered(why) => {
                plan.report.note(r, &what, why);
                return;
            }
            AnyTo::Refused(why) => {
                plan.report.skip(r, &what, why);
                return;
            }
        },
    };
    if !ports.is_empty()
        && protos
            .iter()
            .any(|p| !matches!(p, FirewallProto::Tcp | FirewallProto::Udp))
    {
        plan.report.skip(
            r,
            &what,
            "destination ports with a protocol other than tcp or udp",
        );
        return;
    }
    let base = text(r, "descr")
        .and_then(|d| sanitize_name(&d, 52))
        .unwrap_or_else(|| {
            format!(
                "pfsense-rule-{}",
                text(r, "tracker").unwrap_or_else(|| line_of(r).to_string())
            )
        });
    let split = tos.len() > 1 || protos.len() > 1;
    if split {
        plan.report.note(
            r,
            &what,
            format!(
                "written as {} rules (one per destination zone and protocol)",
                tos.len() * protos.len()
            ),
        );
    }
    for to in &tos {
        if Zone::from_name(to).is_some() && *to == from {
            continue;
        }
        for proto in &protos {
            let mut n = base.clone();
            if tos.len() > 1 {
                n = format!("{n}-{to}");
            }
            if protos.len() > 1 {
                n = format!("{n}-{}", proto.as_str());
            }
            let name = unique_name(&n, names, 64);
            names.push(name.clone());
            plan.rules.push(Rule {
                name,
                from: from.clone(),
                to: to.clone(),
                proto: *proto,
                ports: ports.clone(),
                action,
                log: flag(r, "log"),
                line: line_of(r),
            });
        }
    }
}

fn read_nat(nat: Node<'_, '_>, aliases: &Aliases, names: &mut Vec<String>, plan: &mut ImportPlan) {
    for n in nat.children().filter(|n| n.is_element()) {
        match n.tag_name().name() {
            "rule" => read_port_forward(n, aliases, names, plan),
            "outbound" => {
                let mode = text(n, "mode").unwrap_or_else(|| "automatic".into());
                if mode == "automatic" {
                    plan.report.note(
                        n,
                        "nat/outbound (automatic)",
                        "covered by ipiece's default: the LAN is masqueraded behind the WAN address, the tunnels are not NATed",
                    );
                } else {
                    plan.report.skip(
                        n,
                        format!("nat/outbound ({mode})"),
                        "manual outbound NAT rules are not imported: ipiece masquerades the LAN behind the WAN address",
                    );
                }
                if mode != "automatic" {
                    for r in children(n, "rule") {
                        plan.report.skip(
                            r,
                            label(r, "outbound NAT rule"),
                            "not imported (see nat/outbound)",
                        );
                    }
                }
            }
            other => plan.report.skip(
                n,
                format!("nat/{other}"),
                "1:1 NAT, NPt and other NAT kinds are not supported",
            ),
        }
    }
}

fn read_port_forward(
    r: Node<'_, '_>,
    aliases: &Aliases,
    names: &mut Vec<String>,
    plan: &mut ImportPlan,
) {
    let iface = text(r, "interface").unwrap_or_default();
    let what = format!("{} on {iface}", label(r, "port forward"));
    if flag(r, "disabled") {
        plan.report.skip(r, &what, "disabled in pfSense");
        return;
    }
    if flag(r, "nordr") {
        plan.report
            .skip(r, &what, "a \"no RDR\" exception: not supported");
        return;
    }
    if iface != "wan" {
        plan.report
            .skip(r, &what, "port forwards are imported from the WAN only");
        return;
    }
    let result = (|| {
        let dst = child(r, "destination").ok_or("no <destination>")?;
        if flag(dst, "not") {
            return Err("destination inverted".to_owned());
        }
        match text(dst, "network").as_deref() {
            None if flag(dst, "any") => {}
            Some("wanip") => {}
            None if text(dst, "address").is_some() => {
                return Err("a destination other than the WAN address".to_owned())
            }
            Some(other) => return Err(format!("destination `{other}`: only the WAN address")),
            None => {}
        }
        let port = text(dst, "port").ok_or("no destination port")?;
        let (lo, hi) = port_range(&port)
            .or_else(|| match aliases.port(&port) {
                Some([one]) => Some(*one),
                _ => None,
            })
            .ok_or_else(|| format!("destination port `{port}`"))?;
        if lo != hi {
            return Err(format!(
                "a port range ({lo}-{hi}): ipiece forwards single ports"
            ));
        }
        let target = text(r, "target").ok_or("no target")?;
        let addr: Ipv4Addr = match target.parse() {
            Ok(a) => a,
            Err(_) => match aliases.net(&target) {
                Some([IpNet::V4(n)]) if n.prefix_len() == 32 => n.addr(),
                _ => return Err(format!("target `{target}` is not an IPv4 address")),
            },
        };
        let local = match text(r, "local-port") {
            Some(p) => p.parse::<u16>().map_err(|_| format!("local port `{p}`"))?,
            None => lo,
        };
        let from = match child(r, "source") {
            None => Vec::new(),
            Some(s) if flag(s, "any") => Vec::new(),
            Some(s) => match target_of_source(s, aliases) {
                Ok(v) => vec![v],
                Err(e) => return Err(e),
            },
        };
        let protos = match text(r, "protocol").as_deref() {
            Some("tcp") => vec![FirewallProto::Tcp],
            Some("udp") => vec![FirewallProto::Udp],
            Some("tcp/udp") => vec![FirewallProto::Tcp, FirewallProto::Udp],
            other => {
                return Err(format!(
                    "protocol `{}`: tcp or udp only",
                    other.unwrap_or("any")
                ))
            }
        };
        Ok((lo, SocketAddr::new(IpAddr::V4(addr), local), from, protos))
    })();
    let (port, to, from, protos) = match result {
        Ok(v) => v,
        Err(e) => {
            plan.report.skip(r, &what, e);
            return;
        }
    };
    if text(r, "natreflection").is_some_and(|v| v != "disable") {
        plan.report.note(
            r,
            &what,
            "NAT reflection is not supported: LAN hosts reach the target directly",
        );
    }
    let base = text(r, "descr")
        .and_then(|d| sanitize_name(&d, 56))
        .unwrap_or_else(|| format!("pfsense-forward-{port}"));
    for proto in &protos {
        let n = if protos.len() > 1 {
            format!("{base}-{}", proto.as_str())
        } else {
            base.clone()
        };
        let name = unique_name(&n, names, 64);
        names.push(name.clone());
        plan.port_forwards.push(PortForward {
            name,
            proto: *proto,
            port,
            to,
            from: from.clone(),
            line: line_of(r),
        });
    }
}

/// A port forward's source: an address, a network or a host/network alias.
fn target_of_source(s: Node<'_, '_>, aliases: &Aliases) -> Result<String, String> {
    if flag(s, "not") {
        return Err("source inverted".into());
    }
    if let Some(addr) = text(s, "address") {
        if let Ok(p) = addr.parse::<IpNet>() {
            return Ok(p.trunc().to_string());
        }
        if let Ok(a) = addr.parse::<IpAddr>() {
            return Ok(a.to_string());
        }
        if aliases.net(&addr).is_some() {
            return Ok(addr);
        }
        return Err(format!("source `{addr}`"));
    }
    Err(format!(
        "source {}",
        text(s, "network").unwrap_or_else(|| text_of(s))
    ))
}
