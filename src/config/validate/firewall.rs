//! Validation of `[firewall]`: interfaces, `ssh_from`, `[firewall.aliases]`,
//! `[[firewall.rules]]` and `[[firewall.port_forwards]]`, located and named
//! like the rest of the file. Every name a rule uses (zone, alias, peer) must
//! exist, so the policy built from a valid file never has a dangling name.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use toml_edit::TableLike;

use super::{check_peer_name, check_tun_name, Checker, Field, Node, Table};
use crate::config::firewall::{
    FirewallAction, FirewallConfig, FirewallProto, FirewallRule, FirewallTarget, PortForward, Zone,
};

/// Keys allowed in `[firewall]`.
pub(crate) const FIREWALL_KEYS: &[&str] = &[
    "enabled",
    "wan_interface",
    "lan_interface",
    "ssh_from",
    "aliases",
    "rules",
    "port_forwards",
];
/// Keys allowed in each `[[firewall.rules]]` table.
pub(crate) const RULE_KEYS: &[&str] = &["name", "from", "to", "proto", "ports", "action", "log"];
/// Keys allowed in each `[[firewall.port_forwards]]` table.
pub(crate) const FORWARD_KEYS: &[&str] = &["name", "proto", "port", "to", "from"];

/// What the rest of the file says that `[firewall]` refers to.
pub(super) struct FirewallContext<'c> {
    /// `gateway.lan_prefixes` (`None`: `[gateway]` is broken).
    pub lan_prefixes: Option<&'c [IpNet]>,
    /// The peers' names (`None`: `[[peers]]` is broken).
    pub peers: Option<Vec<&'c str>>,
    /// The gateway's own UDP ports (WireGuard, IKE, NAT-T).
    pub own_udp_ports: Vec<u16>,
}

/// A port or a range `"a-b"`, as written.
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not a port or a range such as \"6000-6010\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b == 0 {
        return Err(format!("`{s}`: ports run from 1 to 65535"));
    }
    if a > b {
        return Err(format!(
            "`{s}`: the range is empty (its start is above its end)"
        ));
    }
    Ok((a, b))
}

/// A CIDR prefix or a single address (as a host prefix).
fn parse_prefix_or_address(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return (n.trunc() == n).then_some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

impl Checker<'_> {
    /// `[firewall]`, optional (the defaults when absent). `None`: errors.
    pub(super) fn firewall(
        &mut self,
        root: &dyn TableLike,
        cx: &FirewallContext<'_>,
    ) -> Option<FirewallConfig> {
        let Some(t) = self.optional_section(root, "firewall").ok()? else {
            return Some(FirewallConfig::default());
        };
        let before = self.errors.len();
        self.unknown_keys(&t, FIREWALL_KEYS);
        let mut fw = FirewallConfig::default();
        if let Some(f) = self.get(&t, "enabled") {
            fw.enabled = self.boolean(&f).unwrap_or(true);
        }
        fw.wan_interface = self.interface(&t, "wan_interface");
        fw.lan_interface = self.interface(&t, "lan_interface");
        if let (Some(w), Some(l)) = (&fw.wan_interface, &fw.lan_interface) {
            if w == l {
                if let Some(f) = self.get(&t, "lan_interface") {
                    self.error(
                        &f.span,
                        &f.path,
                        format!(
                            "the LAN interface must differ from wan_interface (both are `{w}`)"
                        ),
                    );
                }
            }
        }
        if let Some(f) = self.get(&t, "ssh_from") {
            if let Some(elems) = self.array(&f, "prefixes or addresses") {
                for e in elems {
                    if let Some(n) = self.prefix_or_address(&e) {
                        fw.ssh_from.push(n);
                    }
                }
            }
        }
        fw.aliases = self.aliases(&t);
        let mut names = HashSet::new();
        if let Some((k, item)) = t.table.get_key_value("rules") {
            let span = item.span().or_else(|| k.span());
            if let Some(tables) = self.table_array(item, span, "firewall.rules") {
                for (i, (table, span)) in tables.into_iter().enumerate() {
                    let rt = Table {
                        table,
                        path: format!("firewall.rules[{i}]"),
                        label: format!("[[firewall.rules]] table firewall.rules[{i}]"),
                        span,
                    };
                    if let Some(r) = self.rule(&rt, &fw, cx, &mut names) {
                        fw.rules.push(r);
                    }
                }
            }
        }
        if let Some((k, item)) = t.table.get_key_value("port_forwards") {
            let span = item.span().or_else(|| k.span());
            if let Some(tables) = self.table_array(item, span, "firewall.port_forwards") {
                let mut seen_ports = HashSet::new();
                for (i, (table, span)) in tables.into_iter().enumerate() {
                    let ft = Table {
                        table,
                        path: format!("firewall.port_forwards[{i}]"),
                        label: format!(
                            "[[firewall.port_forwards]] table firewall.port_forwards[{i}]"
                        ),
                        span,
                    };
                    if let Some(p) = self.port_forward(&ft, &fw, cx, &mut names, &mut seen_ports) {
                        fw.port_forwards.push(p);
                    }
                }
            }
        }
        (self.errors.len() == before).then_some(fw)
    }

    fn interface(&mut self, t: &Table<'_>, key: &str) -> Option<String> {
        let f = self.get(t, key)?;
        let s = self.string(&f, "a string (an interface name such as \"eth0\")")?;
        if let Err(why) = check_tun_name(s) {
            self.error(&f.span, &f.path, why.replace("TUN", "interface"));
            return None;
        }
        Some(s.to_owned())
    }

    fn prefix_or_address(&mut self, f: &Field<'_>) -> Option<IpNet> {
        let s = self.string(f, "a string (a CIDR prefix or an address)")?;
        match parse_prefix_or_address(s) {
            Some(n) => Some(n),
            None => {
                let msg = match s.parse::<IpNet>() {
                    Ok(n) => format!("`{s}` has host bits set; did you mean \"{}\"?", n.trunc()),
                    Err(_) => format!(
                        "`{s}` is not a CIDR prefix or an address such as \"192.168.0.0/24\" or \"198.51.100.7\""
                    ),
                };
                self.error(&f.span, &f.path, msg);
                None
            }
        }
    }

    fn aliases(&mut self, t: &Table<'_>) -> Vec<(String, Vec<IpNet>)> {
        let Some(f) = self.get(t, "aliases") else {
            return Vec::new();
        };
        let Node::Item(item) = f.node else {
            return Vec::new();
        };
        let Some(table) = item.as_table_like() else {
            self.type_error(&f, "a table ([firewall.aliases])");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in table.iter() {
            let span = table
                .key(name)
                .and_then(|k| k.span())
                .or_else(|| item.span());
            let path = format!("firewall.aliases.{name}");
            if let Err(why) = check_alias_name(name) {
                self.error(&span, &path, why);
                continue;
            }
            let field = Field {
                node: Node::Item(item),
                span: item.span().or(span),
                path,
            };
            let Some(elems) = self.array(&field, "prefixes or addresses") else {
                continue;
            };
            let nets: Vec<IpNet> = elems
                .iter()
                .filter_map(|e| self.prefix_or_address(e))
                .collect();
            out.push((name.to_owned(), nets));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A rule's `from` or `to`.
    fn target(
        &mut self,
        f: &Field<'_>,
        fw: &FirewallConfig,
        cx: &FirewallContext<'_>,
    ) -> Option<FirewallTarget> {
        let s = self.string(
            f,
            "a string (a zone, a CIDR prefix, an address, an alias or peer:NAME)",
        )?;
        if let Some(z) = Zone::from_name(s) {
            return Some(FirewallTarget::Zone(z));
        }
        if let Some(name) = s.strip_prefix("peer:") {
            return match &cx.peers {
                Some(peers) if peers.contains(&name) => Some(FirewallTarget::Peer(name.to_owned())),
                Some(peers) => {
                    self.error(
                        &f.span,
                        &f.path,
                        format!(
                            "no peer named `{name}` in [[peers]] (peers: {})",
                            if peers.is_empty() {
                                "none".to_owned()
                            } else {
                                peers.join(", ")
                            }
                        ),
                    );
                    None
                }
                None => None,
            };
        }
        if fw.alias(s).is_some() {
            return Some(FirewallTarget::Alias(s.to_owned()));
        }
        if s.chars().any(|c| c.is_ascii_digit()) && (s.contains('.') || s.contains(':')) {
            return self.prefix_or_address(f).map(FirewallTarget::Prefix);
        }
        let aliases: Vec<&str> = fw.aliases.iter().map(|(n, _)| n.as_str()).collect();
        self.error(
            &f.span,
            &f.path,
            format!(
                "`{s}` is not a zone (wan, lan, wg, aws, gateway), a CIDR prefix, an address, \
                 peer:NAME or an alias in [firewall.aliases] (aliases: {})",
                if aliases.is_empty() {
                    "none".to_owned()
                } else {
                    aliases.join(", ")
                }
            ),
        );
        None
    }

    fn proto(&mut self, f: &Field<'_>, allowed: &[FirewallProto]) -> Option<FirewallProto> {
        let s = self.string(f, "a string (the protocol)")?;
        let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
        match allowed.iter().find(|p| p.as_str() == s) {
            Some(p) => Some(*p),
            None => {
                self.error(
                    &f.span,
                    &f.path,
                    format!(
                        "`{s}` is not a protocol here; expected {}",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn unique_name(&mut self, t: &Table<'_>, names: &mut HashSet<String>) -> Option<String> {
        let f = self.required(t, "name")?;
        let s = self.string(&f, "a string")?;
        if let Err(why) = check_peer_name(s) {
            self.error(&f.span, &f.path, why.replace("peer", "rule"));
            return None;
        }
        if !names.insert(s.to_owned()) {
            self.error(
                &f.span,
                &f.path,
                format!("the name `{s}` is used by another rule or port forward"),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn rule(
        &mut self,
        t: &Table<'_>,
        fw: &FirewallConfig,
        cx: &FirewallContext<'_>,
        names: &mut HashSet<String>,
    ) -> Option<FirewallRule> {
        self.unknown_keys(t, RULE_KEYS);
        let name = self.unique_name(t, names);
        let from = self
            .required(t, "from")
            .and_then(|f| self.target(&f, fw, cx));
        let to = self.required(t, "to").and_then(|f| self.target(&f, fw, cx));
        use FirewallProto::*;
        let proto = match self.get(t, "proto") {
            Some(f) => self.proto(&f, &[Tcp, Udp, Icmp, Any]),
            None => Some(Any),
        };
        let mut ports = Some(Vec::new());
        if let Some(f) = self.get(t, "ports") {
            if !matches!(proto, Some(Tcp | Udp)) {
                if proto.is_some() {
                    self.error(&f.span, &f.path, "ports need proto = \"tcp\" or \"udp\"");
                }
                ports = None;
            } else {
                ports = self.ports(&f);
            }
        }
        let action = self.required(t, "action").and_then(|f| {
            let s = self.string(&f, "a string (accept, drop or reject)")?;
            let a = match s {
                "accept" => FirewallAction::Accept,
                "drop" => FirewallAction::Drop,
                "reject" => FirewallAction::Reject,
                other => {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("`{other}` is not an action; expected accept, drop or reject"),
                    );
                    return None;
                }
            };
            Some(a)
        });
        let log = match self.get(t, "log") {
            Some(f) => self.boolean(&f),
            None => Some(false),
        };
        Some(FirewallRule {
            name: name?,
            from: from?,
            to: to?,
            proto: proto?,
            ports: ports?,
            action: action?,
            log: log?,
        })
    }

    fn ports(&mut self, f: &Field<'_>) -> Option<Vec<(u16, u16)>> {
        let elems = self.array(f, "ports (numbers or \"a-b\" ranges)")?;
        let mut out = Vec::new();
        let mut ok = true;
        for e in elems {
            let v = e.node.as_value();
            if let Some(n) = v.and_then(|v| v.as_integer()) {
                match u16::try_from(n) {
                    Ok(p) if p > 0 => out.push((p, p)),
                    _ => {
                        self.error(
                            &e.span,
                            &e.path,
                            format!("port must be between 1 and 65535, found {n}"),
                        );
                        ok = false;
                    }
                }
            } else if let Some(s) = v.and_then(|v| v.as_str()) {
                match parse_range(s) {
                    Ok(r) => out.push(r),
                    Err(m) => {
                        self.error(&e.span, &e.path, m);
                        ok = false;
                    }
                }
            } else {
                self.type_error(&e, "a port number or a \"a-b\" range");
                ok = false;
            }
        }
        if ok && out.is_empty() {
            self.error(
                &f.span,
                &f.path,
                "the list is empty (leave `ports` out for any port)",
            );
            ok = false;
        }
        ok.then_some(out)
    }

    fn port_forward(
        &mut self,
        t: &Table<'_>,
        fw: &FirewallConfig,
        cx: &FirewallContext<'_>,
        names: &mut HashSet<String>,
        seen: &mut HashSet<(&'static str, u16)>,
    ) -> Option<PortForward> {
        self.unknown_keys(t, FORWARD_KEYS);
        let name = self.unique_name(t, names);
        use FirewallProto::*;
        let proto = self
            .required(t, "proto")
            .and_then(|f| self.proto(&f, &[Tcp, Udp]));
        let port = self.required(t, "port").and_then(|f| {
            let p = self.u16_in(&f, 1, u16::MAX, "the WAN port")?;
            if let Some(pr) = proto {
                if pr == Udp && cx.own_udp_ports.contains(&p) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("UDP {p} is one of ipieced's own ports (WireGuard, IKE, NAT-T)"),
                    );
                    return None;
                }
                if !seen.insert((pr.as_str(), p)) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("{} {p} is forwarded by another port forward", pr.as_str()),
                    );
                    return None;
                }
            }
            Some(p)
        });
        let to = self.required(t, "to").and_then(|f| {
            let s = self.string(&f, "a string (inside address:port such as \"172.16.4.10:443\")")?;
            let Ok(sa) = s.parse::<SocketAddr>() else {
                self.error(
                    &f.span,
                    &f.path,
                    format!("`{s}` is not an address:port such as \"172.16.4.10:443\""),
                );
                return None;
            };
            if sa.port() == 0 {
                self.error(&f.span, &f.path, "the inside port must be between 1 and 65535");
                return None;
            }
            if let Some(lan) = cx.lan_prefixes {
                if !lan.iter().any(|n| n.contains(&sa.ip())) {
                    let list: Vec<String> = lan.iter().map(ToString::to_string).collect();
                    self.error(
                        &f.span,
                        &f.path,
                        format!(
                            "{} is outside gateway.lan_prefixes ({}): a port forward goes to a LAN host",
                            sa.ip(),
                            if list.is_empty() { "none".to_owned() } else { list.join(", ") }
                        ),
                    );
                    return None;
                }
            }
            Some(sa)
        });
        let mut from = Some(Vec::new());
        if let Some(f) = self.get(t, "from") {
            from = self
                .array(&f, "prefixes, addresses or alias names")
                .and_then(|elems| {
                    let mut v = Vec::new();
                    let mut ok = true;
                    for e in elems {
                        let s = e.node.as_value().and_then(|v| v.as_str());
                        match s {
                            Some(s) if fw.alias(s).is_some() => {
                                v.push(FirewallTarget::Alias(s.to_owned()))
                            }
                            _ => match self.prefix_or_address(&e) {
                                Some(n) => v.push(FirewallTarget::Prefix(n)),
                                None => ok = false,
                            },
                        }
                    }
                    ok.then_some(v)
                });
        }
        Some(PortForward {
            name: name?,
            proto: proto?,
            port: port?,
            to: to?,
            from: from?,
        })
    }
}

/// Alias names: like peer names, and never a zone's name or `peer:...`.
fn check_alias_name(s: &str) -> Result<(), String> {
    check_peer_name(s).map_err(|e| e.replace("peer", "alias"))?;
    if Zone::from_name(s).is_some() {
        return Err(format!(
            "`{s}` is a zone's name; give the alias another name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("6000-6010"), Ok((6000, 6010)));
        assert!(parse_range("6010-6000").is_err());
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("1-70000").is_err());
        assert!(parse_range("abc").is_err());
    }
}
