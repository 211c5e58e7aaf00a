//! The nft renderer: the [`Policy`] as the text of one nftables transaction
//! on ipieced's own table `inet ipiece` (nft(8), "TABLES", "CHAINS",
//! "STATEMENTS"). The transaction creates the table if it is missing,
//! deletes it and writes it again, so `nft -f` swaps the whole ruleset
//! atomically and never touches another table. Pure text: the `nft` calls
//! live in `dataplane::firewall`.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::policy::{default_allows, Hook, Interfaces, Policy, Rule, Side};
use crate::config::firewall::{FirewallAction, FirewallProto, Zone};

/// The nftables family and name of ipieced's table.
pub const TABLE: &str = "inet ipiece";

/// The comment (and counter name) of the WAN's anti-spoofing drop.
pub const ANTI_SPOOF: &str = "anti-spoofing";
/// The counter of what the input chain's default drops.
pub const INPUT_DROP: &str = "input default drop";
/// The counter of what the forward chain's default drops.
pub const FORWARD_DROP: &str = "forward default drop";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn kw(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }
}

/// `a` or `{ a, b }`, overlapping prefixes merged (nft refuses overlapping
/// intervals in one set).
fn set(nets: &[IpNet], fam: Fam) -> String {
    let of_family: Vec<IpNet> = nets
        .iter()
        .filter(|n| matches!((fam, n), (Fam::V4, IpNet::V4(_)) | (Fam::V6, IpNet::V6(_))))
        .copied()
        .collect();
    let items: Vec<String> = IpNet::aggregate(&of_family)
        .into_iter()
        .map(host_or_net)
        .collect();
    braces(&items)
}

fn host_or_net(n: IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

fn braces(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn of_fam(nets: &[IpNet], fam: Fam) -> bool {
    nets.iter()
        .any(|n| matches!((n, fam), (IpNet::V4(_), Fam::V4) | (IpNet::V6(_), Fam::V6)))
}

/// The address matches of a rule, one per family it can match in:
/// `(None, "")` when neither side names addresses.
fn addr_variants(src: Option<&[IpNet]>, dst: Option<&[IpNet]>) -> Vec<(Option<Fam>, String)> {
    if src.is_none() && dst.is_none() {
        return vec![(None, String::new())];
    }
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        if src.is_some_and(|n| !of_fam(n, fam)) || dst.is_some_and(|n| !of_fam(n, fam)) {
            continue;
        }
        let mut s = String::new();
        if let Some(n) = src {
            let _ = write!(s, "{} saddr {} ", fam.kw(), set(n, fam));
        }
        if let Some(n) = dst {
            let _ = write!(s, "{} daddr {} ", fam.kw(), set(n, fam));
        }
        out.push((Some(fam), s));
    }
    out
}

/// `tcp dport { 22, 6000-6010 } ` or `meta l4proto udp `, for `proto` in `fam`.
fn proto_match(proto: FirewallProto, ports: &[(u16, u16)], fam: Option<Fam>) -> String {
    let name = match proto {
        FirewallProto::Tcp => "tcp",
        FirewallProto::Udp => "udp",
        FirewallProto::Icmp => {
            return match fam {
                Some(Fam::V4) => "meta l4proto icmp ".into(),
                Some(Fam::V6) => "meta l4proto ipv6-icmp ".into(),
                None => "meta l4proto { icmp, ipv6-icmp } ".into(),
            }
        }
        FirewallProto::Any => return String::new(),
    };
    if ports.is_empty() {
        return format!("meta l4proto {name} ");
    }
    let items: Vec<String> = ports
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    format!("{name} dport {} ", braces(&items))
}

fn action(a: FirewallAction, proto: FirewallProto) -> &'static str {
    match (a, proto) {
        (FirewallAction::Accept, _) => "accept",
        (FirewallAction::Drop, _) => "drop",
        (FirewallAction::Reject, FirewallProto::Tcp) => "reject with tcp reset",
        (FirewallAction::Reject, _) => "reject",
    }
}

/// The chain text being built.
struct Chain {
    out: String,
}

impl Chain {
    fn new(name: &str, header: &str) -> Chain {
        let mut out = String::new();
        let _ = writeln!(out, "\tchain {name} {{");
        let _ = writeln!(out, "\t\t{header}");
        Chain { out }
    }

    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "\t\t{}", s.trim_end());
    }

    fn finish(mut self) -> String {
        self.out.push_str("\t}\n");
        self.out
    }
}

/// The renderer's view of one side: the interface match and the prefixes.
struct SideMatch {
    iface: Option<String>,
    nets: Option<Vec<IpNet>>,
}

impl Policy {
    fn side(&self, side: &Side, ifs: &Interfaces) -> SideMatch {
        match side {
            Side::Nets(n) => SideMatch {
                iface: None,
                nets: Some(n.clone()),
            },
            Side::Zone(z) => self.zone_side(*z, ifs),
        }
    }

    fn zone_side(&self, z: Zone, ifs: &Interfaces) -> SideMatch {
        match z {
            Zone::Wan => SideMatch {
                iface: Some(ifs.wan.clone()),
                nets: None,
            },
            Zone::Lan => SideMatch {
                iface: Some(ifs.lan.clone()),
                nets: Some(self.lan.clone()),
            },
            Zone::Wg | Zone::Aws => SideMatch {
                iface: Some(self.tun.clone()),
                nets: Some(self.zone_nets(z)),
            },
            Zone::Gateway => SideMatch {
                iface: None,
                nets: None,
            },
        }
    }

    /// The nft lines of `from -> to` with `tail` (counter, action, comment).
    fn lines(
        &self,
        from: SideMatch,
        to: SideMatch,
        proto: FirewallProto,
        ports: &[(u16, u16)],
        tail: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut ifs = String::new();
        if let Some(i) = &from.iface {
            let _ = write!(ifs, "iifname \"{i}\" ");
        }
        if let Some(o) = &to.iface {
            let _ = write!(ifs, "oifname \"{o}\" ");
        }
        for (fam, addrs) in addr_variants(from.nets.as_deref(), to.nets.as_deref()) {
            out.push(format!(
                "{ifs}{addrs}{}{tail}",
                proto_match(proto, ports, fam)
            ));
        }
        out
    }

    fn rule_lines(&self, r: &Rule, ifs: &Interfaces) -> Vec<String> {
        let mut from = self.side(&r.from, ifs);
        let mut to = self.side(&r.to, ifs);
        match r.hook() {
            Hook::Input => to.iface = None,
            Hook::Output => from.iface = None,
            Hook::Forward => {}
        }
        let log = if r.log {
            format!("log prefix \"ipiece {}: \" ", r.name)
        } else {
            String::new()
        };
        let tail = format!(
            "counter {log}{} comment \"rule {}\"",
            action(r.action, r.proto),
            r.name
        );
        self.lines(from, to, r.proto, &r.ports, &tail)
    }

    /// The whole transaction for `nft -f`: ipieced's table replaced, or
    /// removed when the firewall is disabled.
    pub fn render(&self, ifs: &Interfaces) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# ipieced: the [firewall] policy; generated, do not edit"
        );
        let _ = writeln!(out, "table {TABLE} {{}}");
        let _ = writeln!(out, "delete table {TABLE}");
        if !self.enabled {
            return out;
        }
        let _ = writeln!(out, "table {TABLE} {{");
        out.push_str(&self.render_raw(ifs));
        out.push_str(&self.render_input(ifs));
        out.push_str(&self.render_forward(ifs));
        out.push_str(&self.render_output(ifs));
        out.push_str(&self.render_nat(ifs));
        out.push_str("}\n");
        out
    }

    fn render_raw(&self, ifs: &Interfaces) -> String {
        let mut c = Chain::new(
            "prerouting_raw",
            "type filter hook prerouting priority raw; policy accept;",
        );
        let from = SideMatch {
            iface: Some(ifs.wan.clone()),
            nets: Some(self.spoofed_sources()),
        };
        let any = SideMatch {
            iface: None,
            nets: None,
        };
        for l in self.lines(
            from,
            any,
            FirewallProto::Any,
            &[],
            &format!("counter drop comment \"{ANTI_SPOOF}\""),
        ) {
            c.line(&l);
        }
        c.finish()
    }

    fn render_input(&self, ifs: &Interfaces) -> String {
        let wan = &ifs.wan;
        let mut c = Chain::new(
            "input",
            "type filter hook input priority filter; policy drop;",
        );
        c.line("iifname \"lo\" accept");
        c.line("ct state established,related accept");
        c.line("ct state invalid drop");
        for r in self.rules.iter().filter(|r| r.hook() == Hook::Input) {
            for l in self.rule_lines(r, ifs) {
                c.line(&l);
            }
        }
        c.line(&format!(
            "iifname \"{wan}\" udp dport {{ {}, 500, 4500 }} counter accept comment \"wan: wireguard, ike, nat-t\"",
            self.wg_port
        ));
        if !self.ssh_from.is_empty() {
            let from = SideMatch {
                iface: Some(wan.clone()),
                nets: Some(self.ssh_from.clone()),
            };
            let any = SideMatch {
                iface: None,
                nets: None,
            };
            for l in self.lines(
                from,
                any,
                FirewallProto::Tcp,
                &[(22, 22)],
                "counter accept comment \"wan: ssh_from\"",
            ) {
                c.line(&l);
            }
        }
        c.line(&format!(
            "iifname \"{wan}\" icmp type echo-request limit rate 10/second burst 20 packets counter accept comment \"wan: ping\""
        ));
        c.line(&format!(
            "iifname \"{wan}\" icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} counter accept comment \"wan: icmp errors\""
        ));
        c.line(&format!(
            "iifname \"{wan}\" icmpv6 type echo-request limit rate 10/second burst 20 packets counter accept comment \"wan: ping6\""
        ));
        c.line("icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept");
        self.service_lines(&mut c, ifs);
        for z in [Zone::Lan, Zone::Wg, Zone::Aws] {
            if default_allows(z, Zone::Gateway) {
                let any = SideMatch {
                    iface: None,
                    nets: None,
                };
                let tail = format!("counter accept comment \"{z} -> gateway\"");
                for l in self.lines(self.zone_side(z, ifs), any, FirewallProto::Any, &[], &tail) {
                    c.line(&l);
                }
            }
        }
        c.line(&format!("counter drop comment \"{INPUT_DROP}\""));
        c.finish()
    }

    /// The LAN services on the gateway (dnsmasq): DHCP (UDP 67, from any
    /// source address: a client without a lease sends from 0.0.0.0) on the
    /// LAN interface with `[lan.dhcp]`; DNS (UDP and TCP 53) from the lan and
    /// wg zones with `[dns]`. Never from the WAN.
    fn service_lines(&self, c: &mut Chain, ifs: &Interfaces) {
        if self.dhcp {
            c.line(&format!(
                "iifname \"{}\" udp dport 67 counter accept comment \"lan: dhcp\"",
                ifs.lan
            ));
        }
        if !self.dns {
            return;
        }
        for z in [Zone::Lan, Zone::Wg] {
            let tail = format!("counter accept comment \"{z}: dns\"");
            for proto in [FirewallProto::Udp, FirewallProto::Tcp] {
                let any = SideMatch {
                    iface: None,
                    nets: None,
                };
                for l in self.lines(self.zone_side(z, ifs), any, proto, &[(53, 53)], &tail) {
                    c.line(&l);
                }
            }
        }
    }

    fn mss_lines(&self, c: &mut Chain) {
        let syn = "tcp flags & (syn | rst) == syn";
        for (z, mss) in [(Zone::Aws, self.aws_mss), (Zone::Wg, self.wg_mss)] {
            let nets = self.zone_nets(z);
            for (dir, iface) in [("daddr", "oifname"), ("saddr", "iifname")] {
                for fam in [Fam::V4, Fam::V6] {
                    if !of_fam(&nets, fam) {
                        continue;
                    }
                    // IPv6 headers are 20 bytes longer.
                    let m = if fam == Fam::V6 {
                        mss.saturating_sub(20)
                    } else {
                        mss
                    };
                    c.line(&format!(
                        "{iface} \"{}\" {} {dir} {} {syn} tcp option maxseg size > {m} tcp option maxseg size set {m} comment \"mss {z}\"",
                        self.tun,
                        fam.kw(),
                        set(&nets, fam)
                    ));
                }
            }
        }
    }

    fn render_forward(&self, ifs: &Interfaces) -> String {
        let mut c = Chain::new(
            "forward",
            "type filter hook forward priority filter; policy drop;",
        );
        self.mss_lines(&mut c);
        c.line("ct state established,related accept");
        c.line("ct state invalid drop");
        for r in self.rules.iter().filter(|r| r.hook() == Hook::Forward) {
            for l in self.rule_lines(r, ifs) {
                c.line(&l);
            }
        }
        for f in &self.forwards {
            let from = SideMatch {
                iface: Some(ifs.wan.clone()),
                nets: (!f.from.is_empty()).then(|| f.from.clone()),
            };
            let to = SideMatch {
                iface: None,
                nets: Some(vec![IpNet::from(f.to.ip())]),
            };
            let tail = format!(
                "ct status dnat counter accept comment \"forward {}\"",
                f.name
            );
            for l in self.lines(from, to, f.proto, &[(f.to.port(), f.to.port())], &tail) {
                c.line(&l);
            }
        }
        for from in [Zone::Lan, Zone::Wg, Zone::Aws] {
            for to in [Zone::Lan, Zone::Wg, Zone::Aws, Zone::Wan] {
                if !default_allows(from, to) {
                    continue;
                }
                let tail = format!("counter accept comment \"{from} -> {to}\"");
                for l in self.lines(
                    self.zone_side(from, ifs),
                    self.zone_side(to, ifs),
                    FirewallProto::Any,
                    &[],
                    &tail,
                ) {
                    c.line(&l);
                }
            }
        }
        c.line(&format!("counter drop comment \"{FORWARD_DROP}\""));
        c.finish()
    }

    fn render_output(&self, ifs: &Interfaces) -> String {
        let mut c = Chain::new(
            "output",
            "type filter hook output priority filter; policy accept;",
        );
        for r in self.rules.iter().filter(|r| r.hook() == Hook::Output) {
            for l in self.rule_lines(r, ifs) {
                c.line(&l);
            }
        }
        c.finish()
    }

    fn render_nat(&self, ifs: &Interfaces) -> String {
        let mut pre = Chain::new(
            "dstnat",
            "type nat hook prerouting priority dstnat; policy accept;",
        );
        for f in &self.forwards {
            let (fam, nfproto) = if f.to.is_ipv4() {
                (Fam::V4, "ipv4")
            } else {
                (Fam::V6, "ipv6")
            };
            let mut l = format!("iifname \"{}\" ", ifs.wan);
            if f.from.is_empty() {
                // Without an address match, the family comes from nfproto.
                l = format!("meta nfproto {nfproto} {l}");
            } else if of_fam(&f.from, fam) {
                let _ = write!(l, "{} saddr {} ", fam.kw(), set(&f.from, fam));
            } else {
                // No allowed source of the inside host's family: never matches.
                continue;
            }
            let to = match f.to {
                std::net::SocketAddr::V4(a) => a.to_string(),
                std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            };
            l.push_str(&proto_match(f.proto, &[(f.port, f.port)], Some(fam)));
            let _ = write!(
                l,
                "counter dnat {} to {to} comment \"forward {}\"",
                fam.kw(),
                f.name
            );
            pre.line(&l);
        }
        let mut post = Chain::new(
            "srcnat",
            "type nat hook postrouting priority srcnat; policy accept;",
        );
        let lan = self.zone_side(Zone::Lan, ifs);
        let lan = SideMatch {
            iface: None,
            nets: lan.nets,
        };
        let wan = SideMatch {
            iface: Some(ifs.wan.clone()),
            nets: None,
        };
        for l in self.lines(
            lan,
            wan,
            FirewallProto::Any,
            &[],
            "counter masquerade comment \"lan -> wan masquerade\"",
        ) {
            post.line(&l);
        }
        let mut s = pre.finish();
        s.push_str(&post.finish());
        s
    }
}

/// The name of the rule on line `line` (1-based) of a rendered ruleset, read
/// from its comment: what a refusal by nft is reported with.
pub fn rule_at_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let start = l.find("comment \"")? + "comment \"".len();
    let end = l[start..].find('"')? + start;
    Some(l[start..end].to_owned())
}
