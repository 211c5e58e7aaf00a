//! IPsec phase 1 / phase 2 entries -> `[[ipsec.tunnels]]`.
//!
//! Proposals are built as pfSense's `ipsec_setup_proposal_algo()` builds
//! them for strongSwan (`<encryption><keylen>-<hash>[-prf<prf>]-<dh>`, the
//! `hmac_` of phase 2 hashes dropped, DH groups by
//! `ipsec_convert_to_modp()`), spelled the way ipiece's swanctl parser
//! wants them (`aes128gcm16` for pfSense's `aes128gcm` with a 128-bit ICV;
//! the hash of an AEAD IKE proposal is its PRF), and each is checked by
//! that parser: a suite ipiece lacks is reported, never written.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use roxmltree::Node;

use super::{
    child, children, flag, line_of, sanitize_name, text, unique_name, v4net, ImportPlan,
    IpsecTunnel,
};
use crate::config::{
    parse_identity, StartAction, DEFAULT_CHILD_LIFETIME, DEFAULT_IKE_LIFETIME, MAX_CHILD_LIFETIME,
    MAX_DPD_INTERVAL, MAX_IKE_LIFETIME, MAX_PSK_LEN, MIN_LIFETIME, MIN_PSK_LEN,
};
use crate::ike::crypto::SecretBytes;
use crate::ike::proposal::{Proposal, Protocol};

/// strongSwan's keyword for a DH group number (pfSense's
/// `ipsec_convert_to_modp()`); `None` for 0 (no PFS).
fn dh_keyword(n: &str) -> Result<Option<&'static str>, String> {
    Ok(Some(match n.trim() {
        "" | "0" => return Ok(None),
        "1" => "modp768",
        "2" => "modp1024",
        "5" => "modp1536",
        "14" => "modp2048",
        "15" => "modp3072",
        "16" => "modp4096",
        "17" => "modp6144",
        "18" => "modp8192",
        "19" => "ecp256",
        "20" => "ecp384",
        "21" => "ecp521",
        "22" => "modp1024s160",
        "23" => "modp2048s224",
        "24" => "modp2048s256",
        "25" => "ecp192",
        "26" => "ecp224",
        "27" => "ecp224bp",
        "28" => "ecp256bp",
        "29" => "ecp384bp",
        "30" => "ecp512bp",
        "31" => "curve25519",
        "32" => "curve448",
        other => return Err(format!("unknown DH group {other}")),
    }))
}

/// The cipher keywords for an encryption algorithm and key length
/// (`keylen` `auto` or empty: every length pfSense would offer).
/// Returns (keyword, aead) per length, or why that one does not fit.
fn ciphers(name: &str, keylen: &str) -> Vec<Result<(String, bool), String>> {
    let lens = |all: &[&str]| -> Vec<String> {
        match keylen.trim() {
            "" | "auto" => all.iter().map(|s| s.to_string()).collect(),
            k => vec![k.to_owned()],
        }
    };
    match name.trim() {
        "aes" => lens(&["256", "192", "128"])
            .into_iter()
            .map(|k| match k.as_str() {
                "128" | "256" => Ok((format!("aes{k}"), false)),
                _ => Err(format!("AES-{k} (ipiece has AES-128 and AES-256)")),
            })
            .collect(),
        g @ ("aes128gcm" | "aes256gcm") => lens(&["128", "96", "64"])
            .into_iter()
            .map(|icv| match icv.as_str() {
                "128" => Ok((format!("{g}16"), true)),
                _ => Err(format!(
                    "{g} with a {icv}-bit ICV (ipiece has the 128-bit ICV, aes128gcm16/aes256gcm16)"
                )),
            })
            .collect(),
        other => vec![Err(format!(
            "{other} (ipiece has aes, aes128gcm and aes256gcm)"
        ))],
    }
}

/// One phase 1 `encryption/item` as an IKE proposal.
fn ike_item(item: Node<'_, '_>, prf_enabled: bool) -> Result<(Vec<String>, Vec<String>), String> {
    let ename = super::at(item, &["encryption-algorithm", "name"])
        .map(super::text_of)
        .unwrap_or_default();
    let keylen = super::at(item, &["encryption-algorithm", "keylen"])
        .map(super::text_of)
        .unwrap_or_default();
    let hash = text(item, "hash-algorithm").unwrap_or_default();
    let prf = if prf_enabled {
        text(item, "prf-algorithm")
    } else {
        None
    };
    let dh = dh_keyword(&text(item, "dhgroup").unwrap_or_default())?
        .ok_or("no DH group (IKE needs one)")?;
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for c in ciphers(&ename, &keylen) {
        let (cipher, aead) = match c {
            Ok(c) => c,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        let s = if aead {
            format!("{cipher}-prf{}-{dh}", prf.as_deref().unwrap_or(&hash))
        } else {
            match &prf {
                Some(p) => format!("{cipher}-{hash}-prf{p}-{dh}"),
                None => format!("{cipher}-{hash}-{dh}"),
            }
        };
        Proposal::parse(Protocol::Ike, &s).map_err(|e| e.to_string())?;
        out.push(s);
    }
    if out.is_empty() && !errs.is_empty() {
        return Err(errs.join("; "));
    }
    Ok((out, errs))
}

/// A phase 2's ESP proposals (every cipher x hash, pfSense's order), with
/// what could not be mapped.
fn esp_proposals(p2: Node<'_, '_>) -> (Vec<String>, Vec<String>) {
    let pfs = match dh_keyword(&text(p2, "pfsgroup").unwrap_or_default()) {
        Ok(g) => g,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let hashes: Vec<String> = children(p2, "hash-algorithm-option")
        .map(super::text_of)
        .map(|h| h.trim_start_matches("hmac_").to_owned())
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in children(p2, "encryption-algorithm-option") {
        let name = text(e, "name").unwrap_or_default();
        let keylen = text(e, "keylen").unwrap_or_default();
        for c in ciphers(&name, &keylen) {
            let (cipher, aead) = match c {
                Ok(c) => c,
                Err(m) => {
                    bad.push(m);
                    continue;
                }
            };
            let integs: Vec<Option<&str>> = if aead || hashes.is_empty() {
                vec![None]
            } else {
                hashes.iter().map(|h| Some(h.as_str())).collect()
            };
            for h in integs {
                let mut s = cipher.clone();
                if let Some(h) = h {
                    s = format!("{s}-{h}");
                }
                if let Some(g) = pfs {
                    s = format!("{s}-{g}");
                }
                match Proposal::parse(Protocol::Esp, &s) {
                    Ok(_) if !ok.contains(&s) => ok.push(s),
                    Ok(_) => {}
                    Err(e) => bad.push(e.to_string()),
                }
            }
        }
    }
    (ok, bad)
}

/// An identity from pfSense's id type and data, in strongSwan's syntax.
fn identity(kind: &str, data: &str) -> Result<String, String> {
    let s = match kind {
        "address" => data.to_owned(),
        "fqdn" | "dyn_dns" => format!("fqdn:{data}"),
        "user_fqdn" => format!("email:{data}"),
        "keyid tag" => format!("keyid:{data}"),
        "auto" => data.to_owned(),
        "asn1dn" => {
            return Err(
                "distinguished names need certificates; ipiece authenticates with PSKs".into(),
            )
        }
        "any" => return Err("`any` accepts every identity; ipiece checks the peer's".into()),
        other => return Err(format!("identity type `{other}`")),
    };
    parse_identity(&s).map(|_| s)
}

/// A lifetime in seconds from `lifetime`, else `rekey_time` / 0.9 (as
/// pfSense's `ipsec_get_life_time()`), bounded to ipiece's range; `None`
/// when neither is set or it is ipiece's default.
fn lifetime(
    node: Node<'_, '_>,
    max: u64,
    default: u64,
    what: &str,
    plan: &mut ImportPlan,
) -> Option<u64> {
    let num = |k: &str| {
        text(node, k)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
    };
    let raw = num("lifetime").or_else(|| num("rekey_time").map(|r| r * 10 / 9))?;
    let v = raw.clamp(MIN_LIFETIME.as_secs(), max);
    if v != raw {
        plan.report.note(
            node,
            what,
            format!(
                "lifetime {raw} s is outside ipiece's {}-{max} s: {v} s",
                MIN_LIFETIME.as_secs()
            ),
        );
    }
    (v != default).then_some(v)
}

/// Reads the IPsec tunnels and the routes through them.
pub(super) fn read(root: Node<'_, '_>, plan: &mut ImportPlan) {
    read_tunnels(root, plan);
    read_static_routes(root, plan);
}

/// Static routes (`staticroutes/route`) through a VTI tunnel's gateway
/// (pfSense names a VTI interface's dynamic gateway `<DESCR>_VTIV4`) become
/// remote prefixes; every other route is reported.
fn read_static_routes(root: Node<'_, '_>, plan: &mut ImportPlan) {
    let Some(routes) = child(root, "staticroutes") else {
        return;
    };
    let vti_gateways: Vec<String> = child(root, "interfaces")
        .map(|ifs| {
            ifs.children()
                .filter(|n| n.is_element())
                .filter(|n| text(*n, "if").is_some_and(|i| i.starts_with("ipsec")))
                .map(|n| {
                    let descr = text(n, "descr").unwrap_or_else(|| n.tag_name().name().to_owned());
                    format!("{}_VTIV4", descr.to_ascii_uppercase())
                })
                .collect()
        })
        .unwrap_or_default();
    let any_vti = plan.tunnels.iter().any(|t| t.inside_cidr.is_some());
    for r in children(routes, "route") {
        let network = text(r, "network").unwrap_or_default();
        let gw = text(r, "gateway").unwrap_or_default();
        let what = format!("static route {network} via {gw}");
        if flag(r, "disabled") {
            plan.report.skip(r, &what, "disabled in pfSense");
            continue;
        }
        let via_vti = any_vti && vti_gateways.iter().any(|g| g.eq_ignore_ascii_case(&gw));
        match network.parse::<IpNet>() {
            Ok(IpNet::V4(n)) if via_vti => {
                let n = IpNet::V4(n.trunc());
                if !plan.remote_prefixes.contains(&n) {
                    plan.remote_prefixes.push(n);
                }
                plan.report.note(
                    r,
                    &what,
                    "through an IPsec VTI: a remote prefix (wireguard.remote_prefixes), carried by the tunnels",
                );
            }
            _ => plan.report.skip(
                r,
                &what,
                "not through an imported IPsec tunnel: ipiece routes the LAN, the laptops and the remote prefixes itself",
            ),
        }
    }
}

/// Reads every phase 1 and its phase 2 entries.
fn read_tunnels(root: Node<'_, '_>, plan: &mut ImportPlan) {
    let Some(ipsec) = child(root, "ipsec") else {
        return;
    };
    let phase2: Vec<Node<'_, '_>> = children(ipsec, "phase2").collect();
    let mut used_p2 = vec![false; phase2.len()];
    for p1 in children(ipsec, "phase1") {
        let ikeid = text(p1, "ikeid").unwrap_or_default();
        let mine: Vec<usize> = phase2
            .iter()
            .enumerate()
            .filter(|(_, p2)| text(**p2, "ikeid").as_deref() == Some(ikeid.as_str()))
            .map(|(i, _)| i)
            .collect();
        for i in &mine {
            used_p2[*i] = true;
        }
        let p2s: Vec<Node<'_, '_>> = mine.iter().map(|i| phase2[*i]).collect();
        read_phase1(p1, &ikeid, &p2s, plan);
    }
    for (i, p2) in phase2.iter().enumerate() {
        if !used_p2[i] {
            plan.report.skip(
                *p2,
                format!("ipsec/phase2 {}", p2_label(*p2)),
                "belongs to no phase 1",
            );
        }
    }
    for n in ipsec.children().filter(|n| n.is_element()) {
        let name = n.tag_name().name();
        match name {
            "phase1" | "phase2" => {}
            "client" => plan.report.skip(
                n,
                "ipsec/client (mobile clients)",
                "ignored: ipiece serves remote users over WireGuard, not IKEv2/L2TP mobile IPsec",
            ),
            "mobilekey" => plan.report.skip(
                n,
                format!("ipsec/mobilekey {}", text(n, "ident").unwrap_or_default()),
                "ignored with the mobile clients (its key is not printed)",
            ),
            _ if n.children().any(|c| c.is_element()) || !super::text_of(n).is_empty() => {
                plan.report.skip(
                    n,
                    format!("ipsec/{name}"),
                    "IPsec global setting, not imported",
                )
            }
            _ => {}
        }
    }
}

fn p1_label(p1: Node<'_, '_>, ikeid: &str) -> String {
    match text(p1, "descr") {
        Some(d) => format!("{d:?} (ikeid {ikeid})"),
        None => format!("ikeid {ikeid}"),
    }
}

fn p2_label(p2: Node<'_, '_>) -> String {
    match text(p2, "descr") {
        Some(d) => format!("{d:?} (ikeid {})", text(p2, "ikeid").unwrap_or_default()),
        None => format!("ikeid {}", text(p2, "ikeid").unwrap_or_default()),
    }
}

/// One phase 1: a tunnel, or a report entry saying why not.
fn read_phase1(p1: Node<'_, '_>, ikeid: &str, p2s: &[Node<'_, '_>], plan: &mut ImportPlan) {
    let what = format!("ipsec/phase1 {}", p1_label(p1, ikeid));
    let b = match phase1_basics(p1, &what, plan) {
        Ok(b) => b,
        Err(why) => {
            plan.report.skip(p1, &what, why);
            for p2 in p2s {
                plan.report.skip(
                    *p2,
                    format!("ipsec/phase2 {}", p2_label(*p2)),
                    "its phase 1 is not imported",
                );
            }
            return;
        }
    };
    let ike_proposals = phase1_proposals(p1, &what, plan);
    let Timers {
        ike_lifetime,
        dpd_interval,
        dpd_timeout,
        start_action,
    } = phase1_timers(p1, &what, plan);
    let Children {
        local_ts,
        remote_ts,
        inside_cidr,
        esp_proposals,
        child_lifetime,
    } = read_phase2s(p1, &what, p2s, plan);
    let taken: Vec<String> = plan.tunnels.iter().map(|t| t.name.clone()).collect();
    let base = text(p1, "descr")
        .and_then(|d| sanitize_name(&d, 32))
        .unwrap_or_else(|| format!("pfsense-{ikeid}"));
    let name = unique_name(&base, &taken, 32);
    let enabled = !flag(p1, "disabled");
    if !enabled {
        plan.report
            .note(p1, &what, "disabled in pfSense: imported disabled");
    }
    plan.tunnels.push(IpsecTunnel {
        name,
        ikeid: ikeid.to_owned(),
        remote_address: b.remote_address,
        psk: b.psk,
        local_id: b.local_id,
        remote_id: b.remote_id,
        ike_proposals,
        esp_proposals,
        ike_lifetime,
        child_lifetime,
        dpd_interval,
        dpd_timeout,
        local_ts: (!local_ts.is_empty()).then_some(local_ts),
        remote_ts: (!remote_ts.is_empty()).then(|| {
            plan.remote_prefixes
                .iter()
                .copied()
                .filter(|p| remote_ts.contains(p))
                .collect()
        }),
        inside_cidr,
        start_action,
        enabled,
        line: line_of(p1),
    });
}

/// What a phase 1 must have for a tunnel: IKEv2, a PSK, the peer's
/// address, identities ipiece can use; `Err` says why it cannot be one.
fn phase1_basics(p1: Node<'_, '_>, what: &str, plan: &mut ImportPlan) -> Result<Basics, String> {
    if flag(p1, "mobile") {
        return Err(
            "the mobile-client phase 1 is ignored: ipiece serves remote users over WireGuard"
                .into(),
        );
    }
    match text(p1, "iketype").as_deref() {
        Some("ikev2") => {}
        Some("auto") => plan
            .report
            .note(p1, what, "IKE version auto: imported as IKEv2"),
        other => {
            return Err(format!(
                "IKEv1 ({}) is not supported by ipiece (IKEv2 only): move the peer to IKEv2",
                other.unwrap_or("iketype absent, pfSense's default v1")
            ));
        }
    }
    let auth = text(p1, "authentication_method").unwrap_or_default();
    if auth != "pre_shared_key" {
        return Err(format!(
            "authentication `{auth}`: ipiece authenticates with pre-shared keys only"
        ));
    }
    let gw = text(p1, "remote-gateway").unwrap_or_default();
    let Ok(remote_address) = gw.parse::<Ipv4Addr>() else {
        return Err(format!(
            "remote gateway `{gw}` is not an IPv4 address (ipiece needs the peer's address)"
        ));
    };
    let psk_node = child(p1, "pre-shared-key");
    let psk_text = psk_node.map(super::text_of).unwrap_or_default();
    if psk_text.len() < MIN_PSK_LEN
        || psk_text.len() > MAX_PSK_LEN
        || !psk_text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(format!(
            "its pre-shared key is not {MIN_PSK_LEN}-{MAX_PSK_LEN} printable ASCII characters, which ipiece requires (the key is not printed)"
        ));
    }
    let local_id = match text(p1, "myid_type").as_deref() {
        None | Some("myaddress") => None,
        Some(kind) => match identity(kind, &text(p1, "myid_data").unwrap_or_default()) {
            Ok(id) => Some(id),
            Err(e) => return Err(format!("local identifier: {e}")),
        },
    };
    let remote_id = match text(p1, "peerid_type").as_deref() {
        None | Some("peeraddress") => None,
        Some(kind) => match identity(kind, &text(p1, "peerid_data").unwrap_or_default()) {
            Ok(id) => Some(id),
            Err(e) => {
                plan.report.note(
                    p1,
                    what,
                    format!("peer identifier not imported ({e}): the peer must present its address {remote_address}"),
                );
                None
            }
        },
    };

    Ok(Basics {
        remote_address,
        psk: SecretBytes::new(psk_text.into_bytes()),
        local_id,
        remote_id,
    })
}

/// A usable phase 1's peer, key and identities.
struct Basics {
    remote_address: Ipv4Addr,
    psk: SecretBytes,
    local_id: Option<String>,
    remote_id: Option<String>,
}

/// The phase 1's IKE proposals (`None`: ipiece's defaults), every
/// algorithm ipiece lacks reported.
fn phase1_proposals(p1: Node<'_, '_>, what: &str, plan: &mut ImportPlan) -> Option<String> {
    let prf = text(p1, "prfselect_enable").as_deref() == Some("yes");
    let mut ike = Vec::new();
    if let Some(enc) = child(p1, "encryption") {
        for item in children(enc, "item") {
            match ike_item(item, prf) {
                Ok((v, errs)) => {
                    ike.extend(v);
                    for e in errs {
                        plan.report.skip(
                            item,
                            format!("{what}: encryption algorithm"),
                            format!("not supported by ipiece: {e}"),
                        );
                    }
                }
                Err(e) => plan.report.skip(
                    item,
                    format!("{what}: encryption algorithm"),
                    format!("not supported by ipiece: {e}"),
                ),
            }
        }
    }
    if ike.is_empty() {
        plan.report.note(
            p1,
            what,
            "no phase 1 algorithm ipiece supports: ipiece's default IKE proposals are used",
        );
        None
    } else {
        Some(ike.join(","))
    }
}

/// The phase 1's IKE lifetime, DPD and start action.
fn phase1_timers(p1: Node<'_, '_>, what: &str, plan: &mut ImportPlan) -> Timers {
    let ike_lifetime = lifetime(
        p1,
        MAX_IKE_LIFETIME.as_secs(),
        DEFAULT_IKE_LIFETIME.as_secs(),
        what,
        plan,
    );
    if text(p1, "reauth_time").is_some_and(|v| v != "0") {
        plan.report.note(
            p1,
            what,
            "reauthentication is not done: ipiece rekeys the IKE SA (RFC 7296 2.8) at its lifetime",
        );
    }
    let (dpd_interval, dpd_timeout) = match (
        text(p1, "dpd_delay").and_then(|v| v.parse::<u64>().ok()),
        text(p1, "dpd_maxfail").and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(d), Some(m)) if d > 0 => {
            let d = d.min(MAX_DPD_INTERVAL.as_secs());
            (Some(d), Some(d * (m + 1)))
        }
        _ => {
            plan.report.note(
                p1,
                what,
                "DPD is off in pfSense; ipiece always checks its peers (dpd_interval 10 s, dpd_timeout 30 s)",
            );
            (None, None)
        }
    };
    for (k, default) in [("ikeport", "500"), ("nattport", "4500")] {
        if let Some(port) = text(p1, k).filter(|p| p != default) {
            plan.report.note(
                p1,
                what,
                format!("{k} {port} is not imported: ipiece speaks IKE on UDP 500 and 4500"),
            );
        }
    }
    if text(p1, "mobike").as_deref() == Some("on") {
        plan.report.note(
            p1,
            what,
            "MOBIKE is not supported (AWS does not use it either): off",
        );
    }
    let start_action = match text(p1, "startaction").as_deref() {
        Some("none") => StartAction::Wait,
        _ => StartAction::Initiate,
    };

    Timers {
        ike_lifetime,
        dpd_interval,
        dpd_timeout,
        start_action,
    }
}

/// A phase 1's timers.
struct Timers {
    ike_lifetime: Option<u64>,
    dpd_interval: Option<u64>,
    dpd_timeout: Option<u64>,
    start_action: StartAction,
}

/// The phase 2 entries of a phase 1 as one CHILD SA: the union of their
/// networks, the first one's algorithms and lifetime, a VTI's inside /30.
fn read_phase2s(
    p1: Node<'_, '_>,
    what: &str,
    p2s: &[Node<'_, '_>],
    plan: &mut ImportPlan,
) -> Children {
    let mut local_ts: Vec<IpNet> = Vec::new();
    let mut remote_ts: Vec<IpNet> = Vec::new();
    let mut inside_cidr: Option<Ipv4Net> = None;
    let mut esp: Option<(Vec<String>, Node<'_, '_>)> = None;
    let mut child_lifetime = None;
    for p2 in p2s {
        let p2what = format!("ipsec/phase2 {}", p2_label(*p2));
        match phase2_selectors(*p2, plan) {
            Ok(Selectors::Tunnel(l, r)) => {
                if !local_ts.contains(&l) {
                    local_ts.push(l);
                }
                if !remote_ts.contains(&r) {
                    remote_ts.push(r);
                }
            }
            Ok(Selectors::Vti(c)) if inside_cidr.is_none() => inside_cidr = Some(c),
            Ok(Selectors::Vti(_)) => {
                plan.report.skip(
                    *p2,
                    &p2what,
                    "a second VTI phase 2: ipiece's tunnel has one inside /30",
                );
                continue;
            }
            Err(why) => {
                plan.report.skip(*p2, &p2what, why);
                continue;
            }
        }
        let (ok, bad) = esp_proposals(*p2);
        for b in &bad {
            plan.report.skip(
                *p2,
                format!("{p2what}: algorithm"),
                format!("not supported by ipiece: {b}"),
            );
        }
        match &esp {
            None => {
                esp = Some((ok, *p2));
                child_lifetime = lifetime(
                    *p2,
                    MAX_CHILD_LIFETIME.as_secs(),
                    DEFAULT_CHILD_LIFETIME.as_secs(),
                    &p2what,
                    plan,
                );
            }
            Some((first, _)) if *first != ok => plan.report.note(
                *p2,
                &p2what,
                "its algorithms differ from the first phase 2's: ipiece negotiates one CHILD SA per tunnel, with the first phase 2's algorithms",
            ),
            Some(_) => {}
        }
    }
    if !local_ts.is_empty() && inside_cidr.is_some() {
        plan.report.note(
            p1,
            what,
            "tunnel-mode and VTI phase 2 entries together: the tunnel-mode networks are its traffic selectors",
        );
    }
    if p2s.len() > 1 && !local_ts.is_empty() {
        plan.report.note(
            p1,
            what,
            format!(
                "{} phase 2 entries: one CHILD SA whose traffic selectors are their networks",
                p2s.len()
            ),
        );
    }
    let esp_proposals = match esp {
        Some((ok, _)) if !ok.is_empty() => Some(ok.join(",")),
        Some((_, p2)) => {
            plan.report.note(
                p2,
                format!("ipsec/phase2 {}", p2_label(p2)),
                "no algorithm ipiece supports: ipiece's default ESP proposals are used",
            );
            None
        }
        None => {
            plan.report.note(
                p1,
                what,
                "no phase 2 imported: route-based selectors (0.0.0.0/0) and ipiece's default ESP proposals",
            );
            None
        }
    };
    if inside_cidr.is_some() && local_ts.is_empty() {
        plan.report.note(
            p1,
            what,
            "VTI: route-based (0.0.0.0/0 selectors); the networks of pfSense's static routes through it become remote prefixes",
        );
    }
    for r in &remote_ts {
        if !plan.remote_prefixes.contains(r) {
            plan.remote_prefixes.push(*r);
        }
    }
    Children {
        local_ts,
        remote_ts,
        inside_cidr,
        esp_proposals,
        child_lifetime,
    }
}

/// What one phase 2 contributes to the CHILD SA.
enum Selectors {
    /// Tunnel mode: a local and a remote network.
    Tunnel(IpNet, IpNet),
    /// VTI: the inside /30.
    Vti(Ipv4Net),
}

/// One enabled ESP phase 2's selectors, or why it is not imported.
fn phase2_selectors(p2: Node<'_, '_>, plan: &ImportPlan) -> Result<Selectors, String> {
    if flag(p2, "disabled") {
        return Err("disabled in pfSense".into());
    }
    if text(p2, "protocol").as_deref() == Some("ah") {
        return Err("AH is not supported (ESP only)".into());
    }
    if child(p2, "natlocalid").is_some_and(|n| text(n, "type").is_some()) {
        return Err("NAT/BINAT translation of the local network is not supported".into());
    }
    match text(p2, "mode").unwrap_or_default().as_str() {
        "tunnel" => Ok(Selectors::Tunnel(
            p2_network(p2, "localid", plan)?,
            p2_network(p2, "remoteid", plan)?,
        )),
        "vti" => vti_inside(p2).map(Selectors::Vti),
        other => Err(format!(
            "mode `{other}`: ipiece does IPv4 tunnel mode (and VTI as route-based)"
        )),
    }
}

/// The CHILD SA a phase 1's phase 2 entries make.
struct Children {
    local_ts: Vec<IpNet>,
    remote_ts: Vec<IpNet>,
    inside_cidr: Option<Ipv4Net>,
    esp_proposals: Option<String>,
    child_lifetime: Option<u64>,
}

/// A phase 2 `localid` / `remoteid` as a network.
fn p2_network(p2: Node<'_, '_>, side: &str, plan: &ImportPlan) -> Result<IpNet, String> {
    let id = child(p2, side).ok_or_else(|| format!("no <{side}>"))?;
    let kind = text(id, "type").unwrap_or_default();
    let addr = text(id, "address").unwrap_or_default();
    match kind.as_str() {
        "network" => v4net(&addr, &text(id, "netbits").unwrap_or_default())
            .map(|n| IpNet::V4(n.trunc()))
            .ok_or_else(|| format!("{side}: `{addr}` is not an IPv4 network")),
        "address" => addr
            .parse::<Ipv4Addr>()
            .map(|a| IpNet::V4(Ipv4Net::from(a)))
            .map_err(|_| format!("{side}: `{addr}` is not an IPv4 address")),
        "lan" => plan
            .lan
            .as_ref()
            .map(|l| IpNet::V4(l.address.trunc()))
            .ok_or_else(|| format!("{side}: LAN subnet, but the LAN interface has no static IPv4 address")),
        other => Err(format!(
            "{side}: the subnet of interface `{other}` (only the LAN's, networks and addresses are imported)"
        )),
    }
}

/// A VTI phase 2's addresses as an inside /30 in ipiece's (AWS's)
/// convention: the peer network + 1, this gateway network + 2.
fn vti_inside(p2: Node<'_, '_>) -> Result<Ipv4Net, String> {
    let addr = |side: &str| -> Option<Ipv4Addr> {
        child(p2, side)
            .and_then(|n| text(n, "address"))
            .and_then(|a| a.parse().ok())
    };
    let (Some(l), Some(r)) = (addr("localid"), addr("remoteid")) else {
        return Err("VTI without IPv4 local and remote addresses".into());
    };
    let net = Ipv4Net::new(l, 30).map_err(|e| e.to_string())?.trunc();
    let base = u32::from(net.network());
    let link_local: Ipv4Net = "169.254.0.0/16".parse().expect("constant");
    if link_local.contains(&l) && u32::from(r) == base + 1 && u32::from(l) == base + 2 {
        Ok(net)
    } else {
        Err(format!(
            "VTI addresses {l} (local) / {r} (remote): ipiece's inside /30 must be in 169.254.0.0/16 with the peer at network + 1 and this gateway at network + 2 (AWS's convention)"
        ))
    }
}
