//! pfSense-pkg-WireGuard's tunnels and peers -> `[wireguard]`, `[[peers]]`.

use std::net::IpAddr;

use ipnet::IpNet;
use roxmltree::Node;

use super::{
    at, child, children, line_of, sanitize_name, text, text_of, unique_name, Ctx, ImportPlan,
    ParseOptions, PfError, WgPeer, WgTunnel,
};

/// A tunnel as found in either schema, before it is chosen.
struct TunnelNode<'a, 'i> {
    node: Node<'a, 'i>,
    name: String,
    enabled: bool,
    /// (address, mask) rows.
    addresses: Vec<(String, String, Node<'a, 'i>)>,
    listen_port: Option<Node<'a, 'i>>,
    private_key: Option<Node<'a, 'i>>,
    mtu: Option<Node<'a, 'i>>,
    /// Peers (both schemas).
    peers: Vec<Node<'a, 'i>>,
    /// The 2.5.0 schema (allowed IPs as a comma-separated list).
    legacy: bool,
}

/// Splits `a/b, c/d` rows of the 2.5.0 schema.
fn split_cidrs<'a, 'i>(s: &str, node: Node<'a, 'i>) -> Vec<(String, String, Node<'a, 'i>)> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| match x.split_once('/') {
            Some((a, m)) => (a.to_owned(), m.to_owned(), node),
            None => (x.to_owned(), String::new(), node),
        })
        .collect()
}

fn rows<'a, 'i>(node: Option<Node<'a, 'i>>) -> Vec<(String, String, Node<'a, 'i>)> {
    let Some(node) = node else {
        return Vec::new();
    };
    children(node, "row")
        .map(|r| {
            (
                text(r, "address").unwrap_or_default(),
                text(r, "mask").unwrap_or_default(),
                r,
            )
        })
        .collect()
}

/// The tunnels of both schemas.
fn tunnels<'a, 'i>(root: Node<'a, 'i>) -> Vec<TunnelNode<'a, 'i>> {
    let mut out = Vec::new();
    let bases: Vec<Node<'a, 'i>> = [
        at(root, &["installedpackages", "wireguard"]),
        child(root, "wireguard"),
    ]
    .into_iter()
    .flatten()
    .collect();
    for wg in bases {
        // pfSense-pkg-WireGuard 0.1+: tunnels/item, peers/item (peer.tun = tunnel name).
        if let Some(tuns) = child(wg, "tunnels") {
            let peers: Vec<Node<'a, 'i>> = child(wg, "peers")
                .map(|p| children(p, "item").collect())
                .unwrap_or_default();
            for t in children(tuns, "item") {
                let name = text(t, "name").unwrap_or_default();
                out.push(TunnelNode {
                    node: t,
                    enabled: text(t, "enabled").as_deref() == Some("yes"),
                    addresses: rows(at(t, &["addresses"])),
                    listen_port: child(t, "listenport"),
                    private_key: child(t, "privatekey"),
                    mtu: child(t, "mtu"),
                    peers: peers
                        .iter()
                        .copied()
                        .filter(|p| text(*p, "tun").as_deref() == Some(name.as_str()))
                        .collect(),
                    name,
                    legacy: false,
                });
            }
        }
        // pfSense 2.5.0 / early package: tunnel[] with interface/ and peers/wgpeer.
        for t in children(wg, "tunnel") {
            let iface = child(t, "interface");
            out.push(TunnelNode {
                node: t,
                name: text(t, "name").unwrap_or_default(),
                enabled: text(t, "enabled").as_deref() == Some("yes"),
                addresses: iface
                    .and_then(|i| child(i, "address"))
                    .map(|a| split_cidrs(&text_of(a), a))
                    .unwrap_or_default(),
                listen_port: iface.and_then(|i| child(i, "listenport")),
                private_key: iface.and_then(|i| child(i, "privatekey")),
                mtu: iface.and_then(|i| child(i, "mtu")),
                peers: child(t, "peers")
                    .map(|p| children(p, "wgpeer").collect())
                    .unwrap_or_default(),
                legacy: true,
            });
        }
    }
    out
}

/// Reads the WireGuard tunnel to import and its peers.
pub(super) fn read(
    ctx: &Ctx<'_>,
    root: Node<'_, '_>,
    opts: &ParseOptions,
    plan: &mut ImportPlan,
) -> Result<(), PfError> {
    let all = tunnels(root);
    if all.is_empty() {
        return Ok(());
    }
    let chosen = match &opts.wg_tunnel {
        Some(want) => all.iter().position(|t| &t.name == want).ok_or_else(|| {
            ctx.invalid(
                all[0].node,
                format!(
                    "no WireGuard tunnel named `{want}` (the file has {})",
                    all.iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?,
        None => all
            .iter()
            .position(|t| t.enabled && !t.peers.is_empty())
            .or_else(|| all.iter().position(|t| t.enabled))
            .unwrap_or(0),
    };
    for (i, t) in all.iter().enumerate() {
        if i != chosen {
            plan.report.skip(
                t.node,
                format!("WireGuard tunnel {} ({} peers)", t.name, t.peers.len()),
                format!(
                    "ipiece has one WireGuard interface; {} was imported (choose another with --wg-tunnel)",
                    all[chosen].name
                ),
            );
        }
    }
    let t = &all[chosen];
    let what = format!("WireGuard tunnel {}", t.name);
    if !t.enabled {
        plan.report.note(
            t.node,
            &what,
            "disabled in pfSense; imported, and ipiece's WireGuard is always on",
        );
    }
    let key_node = t
        .private_key
        .ok_or_else(|| ctx.invalid(t.node, format!("{what}: no <privatekey>")))?;
    let (private_key, wrapped) = ctx.key(key_node, &what)?;
    if wrapped {
        plan.report.note(
            key_node,
            format!("{what}: private key"),
            "stored base64-encoded; decoded",
        );
    }
    let mut address: Option<IpNet> = None;
    for (a, m, node) in &t.addresses {
        let net = match (a.parse::<IpAddr>(), m.parse::<u8>()) {
            (Ok(ip), Ok(bits)) => IpNet::new(ip, bits).ok(),
            _ => None,
        };
        match net {
            Some(n @ IpNet::V4(_)) if address.is_none() => address = Some(n),
            Some(n) => plan.report.skip(
                *node,
                format!("{what}: address {n}"),
                "ipiece's WireGuard interface has one address (the first IPv4 one was imported)",
            ),
            None => {
                return Err(ctx.invalid(
                    *node,
                    format!("{what}: address `{a}/{m}` is not an address with a prefix length"),
                ))
            }
        }
    }
    let address =
        address.ok_or_else(|| ctx.invalid(t.node, format!("{what}: no IPv4 tunnel address")))?;
    let listen_port = match t.listen_port {
        Some(n) if !text_of(n).is_empty() => Some(
            text_of(n)
                .parse::<u16>()
                .map_err(|_| ctx.invalid(n, format!("{what}: listenport is not a port")))?,
        ),
        _ => None,
    };
    let mtu = match t.mtu {
        Some(n) if !text_of(n).is_empty() => Some(
            text_of(n)
                .parse::<u16>()
                .map_err(|_| ctx.invalid(n, format!("{what}: mtu is not a number")))?,
        ),
        _ => None,
    };
    let mut names: Vec<String> = Vec::new();
    for (i, p) in t.peers.iter().enumerate() {
        if let Some(peer) = read_peer(ctx, *p, i, t.legacy, address, &names, plan)? {
            names.push(peer.name.clone());
            plan.peers.push(peer);
        }
    }
    // Peers of no tunnel at all (package: tun = "unassigned").
    for wg in [
        at(root, &["installedpackages", "wireguard"]),
        child(root, "wireguard"),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(peers) = child(wg, "peers") {
            for p in children(peers, "item") {
                let tun = text(p, "tun").unwrap_or_default();
                if !all.iter().any(|t| t.name == tun) {
                    plan.report.skip(
                        p,
                        format!(
                            "WireGuard peer {}",
                            text(p, "descr").unwrap_or_else(|| "(no description)".into())
                        ),
                        format!("assigned to no tunnel (`{tun}`)"),
                    );
                }
            }
        }
    }
    plan.wireguard = Some(WgTunnel {
        name: t.name.clone(),
        listen_port,
        address,
        private_key,
        mtu,
    });
    Ok(())
}

/// One peer: its name from `descr`, its address from the allowed IPs.
fn read_peer(
    ctx: &Ctx<'_>,
    p: Node<'_, '_>,
    index: usize,
    legacy: bool,
    subnet: IpNet,
    taken: &[String],
    plan: &mut ImportPlan,
) -> Result<Option<WgPeer>, PfError> {
    let descr = text(p, "descr").unwrap_or_default();
    let base = sanitize_name(&descr, 64).unwrap_or_else(|| format!("pfsense-peer-{}", index + 1));
    let name = unique_name(&base, taken, 64);
    let what = format!("WireGuard peer {name}");
    if !descr.is_empty() && descr != name {
        plan.report
            .note(p, &what, format!("named from the description {descr:?}"));
    }
    let key_node =
        child(p, "publickey").ok_or_else(|| ctx.invalid(p, format!("{what}: no <publickey>")))?;
    let (public_key, wrapped) = ctx.key(key_node, &what)?;
    if wrapped {
        plan.report.note(
            key_node,
            format!("{what}: public key"),
            "stored base64-encoded; decoded",
        );
    }
    let psk = match child(p, "presharedkey").filter(|n| !text_of(*n).is_empty()) {
        Some(n) => {
            let (k, wrapped) = ctx.key(n, &what)?;
            if wrapped {
                plan.report.note(
                    n,
                    format!("{what}: preshared key"),
                    "stored base64-encoded; decoded",
                );
            }
            Some(k)
        }
        None => None,
    };
    // 2.5.0 schema: no per-peer switch (enabled unless "no"); package: "yes".
    let enabled = match text(p, "enabled") {
        Some(v) => v == "yes",
        None => legacy,
    };
    if !enabled {
        plan.report
            .note(p, &what, "disabled in pfSense: imported disabled");
    }
    let keepalive = match text(p, "persistentkeepalive") {
        Some(v) => Some(v.parse::<u16>().map_err(|_| {
            ctx.invalid(
                p,
                format!("{what}: persistentkeepalive is not a number of seconds"),
            )
        })?),
        None => None,
    };
    let allowed: Vec<(String, String, Node<'_, '_>)> = if legacy {
        match child(p, "allowedips") {
            Some(a) => split_cidrs(&text_of(a), a),
            None => Vec::new(),
        }
    } else {
        rows(child(p, "allowedips"))
    };
    let mut address: Option<IpAddr> = None;
    for (a, m, node) in &allowed {
        let ip: IpAddr = a.parse().map_err(|_| {
            ctx.invalid(*node, format!("{what}: allowed IP `{a}` is not an address"))
        })?;
        let host_bits = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 = if m.is_empty() {
            host_bits
        } else {
            m.parse().map_err(|_| {
                ctx.invalid(
                    *node,
                    format!("{what}: allowed IP mask `{m}` is not a length"),
                )
            })?
        };
        if bits == host_bits && subnet.contains(&ip) && address.is_none() {
            address = Some(ip);
        } else {
            plan.report.skip(
                *node,
                format!("{what}: allowed IP {ip}/{bits}"),
                "a laptop has one address inside the WireGuard subnet in ipiece; networks behind a peer (site-to-site WireGuard) are not supported",
            );
        }
    }
    if let Some(ep) = text(p, "endpoint") {
        plan.report.note(
            p,
            format!("{what}: endpoint {ep}"),
            "not imported: the gateway never dials laptops, it answers them wherever they are; for a site peer the gateway should dial, add `endpoint = \"host:port\"` to its [[peers]] table",
        );
    }
    let Some(address) = address else {
        plan.report.skip(
            p,
            &what,
            format!(
                "no allowed IP is a single address inside the tunnel's subnet {}",
                subnet.trunc()
            ),
        );
        return Ok(None);
    };
    Ok(Some(WgPeer {
        name,
        public_key,
        address,
        psk,
        keepalive,
        enabled,
        line: line_of(p),
    }))
}
