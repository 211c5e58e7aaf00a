//! `interfaces/lan`, `interfaces/wan` and `dhcpd/lan`: the LAN prefix
//! (`gateway.lan_prefixes`), the LAN address and DHCP server (`[lan]`
//! `address`, `[lan.dhcp]` `range`, `lease_time`, `router`, `dns_servers`,
//! `[[lan.dhcp.static]]`), the WAN's static address.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use roxmltree::Node;

use super::{
    at, child, children, flag, line_of, text, v4net, Ctx, Dhcp, ImportPlan, Lan, PfError, StaticMap,
};

/// Reads the interfaces and the LAN's DHCP server.
pub(super) fn read(
    ctx: &Ctx<'_>,
    root: Node<'_, '_>,
    plan: &mut ImportPlan,
) -> Result<(), PfError> {
    let Some(ifaces) = child(root, "interfaces") else {
        return Ok(());
    };
    for iface in ifaces.children().filter(|n| n.is_element()) {
        let name = iface.tag_name().name();
        let pf_if = text(iface, "if");
        match name {
            "lan" => read_lan(ctx, root, iface, plan)?,
            "wan" => {
                let addr = text(iface, "ipaddr").unwrap_or_default();
                match addr.parse::<Ipv4Addr>() {
                    Ok(a) => plan.wan_address = Some(a),
                    Err(_) => plan.report.note(
                        iface,
                        "interfaces/wan",
                        format!(
                            "address `{addr}` (not static): set gateway.public_address if the IPsec peers identify this gateway by its address"
                        ),
                    ),
                }
                plan.report.skip(
                    iface,
                    format!("interfaces/wan ({})", pf_if.unwrap_or_default()),
                    "FreeBSD interface names differ from Linux ones: set firewall.wan_interface to the WAN NIC",
                );
            }
            other => plan.report.skip(
                iface,
                format!(
                    "interfaces/{other} ({}{})",
                    pf_if.unwrap_or_default(),
                    text(iface, "descr")
                        .map(|d| format!(", {d}"))
                        .unwrap_or_default()
                ),
                "ipiece has a WAN and a LAN interface; other interfaces are not imported",
            ),
        }
    }
    Ok(())
}

fn read_lan(
    ctx: &Ctx<'_>,
    root: Node<'_, '_>,
    iface: Node<'_, '_>,
    plan: &mut ImportPlan,
) -> Result<(), PfError> {
    let ipaddr = text(iface, "ipaddr").unwrap_or_default();
    let subnet = text(iface, "subnet").unwrap_or_default();
    let Some(address) = v4net(&ipaddr, &subnet) else {
        plan.report.skip(
            iface,
            "interfaces/lan",
            format!("address `{ipaddr}/{subnet}` is not a static IPv4 address"),
        );
        return Ok(());
    };
    plan.lan_prefixes.push(IpNet::V4(address.trunc()));
    let dhcp = match at(root, &["dhcpd", "lan"]) {
        Some(d) if flag(d, "enable") => Some(read_dhcp(ctx, d, plan)?),
        Some(d) => {
            plan.report.note(
                d,
                "dhcpd/lan",
                "the DHCP server is off in pfSense: not imported",
            );
            None
        }
        None => None,
    };
    if let Some(i) = text(iface, "if") {
        plan.report.note(
            iface,
            format!("interfaces/lan ({i})"),
            "FreeBSD interface names differ from Linux ones: lan.interface is left to firewall.lan_interface or the routes",
        );
    }
    plan.lan = Some(Lan {
        pf_interface: text(iface, "if"),
        address,
        dhcp,
        line: line_of(iface),
    });
    if let Some(d) = child(root, "dhcpd") {
        for other in d
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() != "lan")
        {
            plan.report.skip(
                other,
                format!("dhcpd/{}", other.tag_name().name()),
                "DHCP on interfaces other than the LAN is not imported",
            );
        }
    }
    Ok(())
}

fn read_dhcp(ctx: &Ctx<'_>, d: Node<'_, '_>, plan: &mut ImportPlan) -> Result<Dhcp, PfError> {
    let addr = |n: Option<Node<'_, '_>>, what: &str| -> Result<Ipv4Addr, PfError> {
        let n = n.ok_or_else(|| ctx.invalid(d, format!("dhcpd/lan: no {what}")))?;
        super::text_of(n)
            .parse()
            .map_err(|_| ctx.invalid(n, format!("dhcpd/lan: {what} is not an IPv4 address")))
    };
    let range = (
        addr(at(d, &["range", "from"]), "range/from")?,
        addr(at(d, &["range", "to"]), "range/to")?,
    );
    let lease_time = match text(d, "defaultleasetime").map(|v| v.parse::<u32>()) {
        Some(Ok(t)) if (120..=31_536_000).contains(&t) => Some(t),
        Some(_) => {
            plan.report.note(
                d,
                "dhcpd/lan/defaultleasetime",
                "outside ipiece's 120 s to one year: ipiece's default (7200 s) applies",
            );
            None
        }
        None => None,
    };
    let mut statics = Vec::new();
    for m in children(d, "staticmap") {
        let mac = text(m, "mac").unwrap_or_default().to_ascii_lowercase();
        let ip = text(m, "ipaddr").unwrap_or_default();
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !mac.is_empty() => {
                let hostname = text(m, "hostname");
                let label = hostname.clone().filter(|h| dns_label(h));
                if hostname.is_some() && label.is_none() {
                    plan.report.note(
                        m,
                        format!("dhcpd/lan/staticmap {mac}"),
                        format!(
                            "host name {:?} is not one DNS label: imported without it",
                            hostname.unwrap_or_default()
                        ),
                    );
                }
                statics.push(StaticMap {
                    mac,
                    address: a,
                    hostname: label,
                })
            }
            _ => plan.report.skip(
                m,
                format!("dhcpd/lan/staticmap {mac}"),
                "a static mapping needs a MAC and an IPv4 address",
            ),
        }
    }
    for (k, why) in [
        ("numberoptions", "custom DHCP options are not imported"),
        ("failover_peerip", "DHCP failover is not supported"),
        (
            "ddnsdomain",
            "dynamic DNS updates are not imported (leases are in ipiece's DNS with [dns])",
        ),
    ] {
        if let Some(n) = child(d, k).filter(|n| n.has_children()) {
            plan.report.skip(n, format!("dhcpd/lan/{k}"), why);
        }
    }
    let router = match text(d, "gateway") {
        Some(g) => match g.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                plan.report.note(
                    d,
                    "dhcpd/lan/gateway",
                    format!("`{g}` is not an address: the gateway's LAN address is handed out"),
                );
                None
            }
        },
        None => None,
    };
    let mut dns_servers = Vec::new();
    for n in children(d, "dnsserver") {
        let t = super::text_of(n);
        match t.parse::<Ipv4Addr>() {
            Ok(a) => dns_servers.push(a),
            Err(_) if t.is_empty() => {}
            Err(_) => {
                plan.report
                    .skip(n, format!("dhcpd/lan/dnsserver {t}"), "not an IPv4 address")
            }
        }
    }
    if let Some(n) = child(d, "domain").filter(|n| !super::text_of(*n).is_empty()) {
        plan.report.skip(
            n,
            "dhcpd/lan/domain",
            "the DHCP domain comes from dns.domain in ipiece: set [dns]",
        );
    }
    Ok(Dhcp {
        range,
        lease_time,
        router,
        dns_servers,
        statics,
        line: line_of(d),
    })
}

/// One DNS label: 1-63 of letters, digits and `-`, not at either end.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
