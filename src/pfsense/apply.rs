//! An [`ImportPlan`] written into `gateway.toml` through the
//! [`ConfigEditor`]: nothing reaches the disk until the caller commits (one
//! atomic, comment-keeping write with its secret files), and a dry run
//! simply drops the editor.
//!
//! Secrets: the gateway's private key goes into the file
//! `wireguard.private_key_file` names, each peer's preshared key into
//! `peers/<name>.psk`, each tunnel's pre-shared key into
//! `ipsec/<name>.psk` (all mode 0600, the layout `wgctl add-peer` and
//! `wgctl aws import` use).
//!
//! What is already in the file is never overwritten silently: a peer with
//! an imported peer's name or public key, a tunnel with an imported
//! tunnel's name or remote address, a rule, port forward or alias of the
//! same name, and a gateway key other than the imported one while the file
//! has peers (their client configs hold the old public key) make the import
//! fail, listing every conflict, unless `replace` is set.

use std::net::IpAddr;
use std::path::PathBuf;

use toml_edit::{value, Array, Table, Value};

use super::{ImportPlan, IpsecTunnel, PfError, Report, ReportItem};
use crate::config::edit::{ConfigEditor, EditError, NewPeer, NewTunnel, Upsert};
use crate::config::lan::MacAddr;
use crate::config::{public_key, read_key_file, Config, DEFAULT_MTU};
use crate::ike::crypto::SecretBytes;

/// How to write the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Replace peers, tunnels, rules, port forwards and aliases of the same
    /// name (or key, or remote address), and the gateway's key.
    pub replace: bool,
}

/// Why the plan cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file already has what the import would add (and no `replace`).
    #[error(
        "{} already has what this import would write (nothing was written; import with --replace to replace them):\n  {}",
        file.display(),
        conflicts.join("\n  ")
    )]
    Conflict {
        /// The configuration file.
        file: PathBuf,
        /// One line per conflict.
        conflicts: Vec<String>,
    },
    /// Editing the document failed.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The gateway's current key cannot be read.
    #[error("{0}")]
    Key(String),
}

impl From<ApplyError> for PfError {
    fn from(e: ApplyError) -> PfError {
        PfError::Apply(e)
    }
}

/// What the edit does, one line per item, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// `wireguard: ...`, `peer alice: added`, ...
    pub lines: Vec<String>,
    /// Remarks the writing added to the plan's report.
    pub notes: Vec<ReportItem>,
}

/// Writes `plan` into `editor` (`cfg`: the file as opened, valid).
pub fn apply(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    opts: &ImportOptions,
) -> Result<Applied, ApplyError> {
    let conflicts = conflicts(cfg, plan)?;
    if !conflicts.is_empty() && !opts.replace {
        return Err(ApplyError::Conflict {
            file: cfg.path.clone(),
            conflicts,
        });
    }
    let mut out = Applied::default();
    write_wireguard(editor, cfg, plan, &mut out)?;
    write_peers(editor, cfg, plan, &mut out)?;
    write_tunnels(editor, cfg, plan, &mut out)?;
    write_firewall(editor, cfg, plan, &mut out)?;
    write_lan(editor, cfg, plan, &mut out)?;
    Ok(out)
}

/// Everything the import would overwrite.
fn conflicts(cfg: &Config, plan: &ImportPlan) -> Result<Vec<String>, ApplyError> {
    let mut out = Vec::new();
    if let Some(wg) = &plan.wireguard {
        let current = read_key_file(&cfg.wireguard.private_key_file).ok();
        let differs = current.as_ref() != Some(&wg.private_key);
        if differs && !cfg.peers.is_empty() {
            out.push(format!(
                "the gateway's WireGuard key ({}) is not tunnel {}'s ({}), and the file has {} peer(s) whose client configs name the current one",
                current.map(|k| public_key(&k).to_string()).unwrap_or_else(|| "unreadable".into()),
                wg.name,
                public_key(&wg.private_key),
                cfg.peers.len()
            ));
        }
    }
    for p in &plan.peers {
        for e in &cfg.peers {
            if e.name == p.name {
                out.push(format!("peer `{}` exists", p.name));
            } else if e.public_key == p.public_key {
                out.push(format!(
                    "peer `{}` has the public key of imported peer `{}`",
                    e.name, p.name
                ));
            }
        }
    }
    for t in &plan.tunnels {
        for e in &cfg.ipsec.tunnels {
            if e.name == t.name {
                out.push(format!("tunnel `{}` exists", t.name));
            } else if e.remote_address == IpAddr::V4(t.remote_address) {
                out.push(format!(
                    "tunnel `{}` has remote_address {}, as imported tunnel `{}`",
                    e.name, t.remote_address, t.name
                ));
            }
        }
    }
    let fw = &cfg.firewall;
    for r in &plan.rules {
        if fw.rules.iter().any(|e| e.name == r.name)
            || fw.port_forwards.iter().any(|e| e.name == r.name)
        {
            out.push(format!("firewall rule or port forward `{}` exists", r.name));
        }
    }
    for f in &plan.port_forwards {
        if fw.rules.iter().any(|e| e.name == f.name)
            || fw.port_forwards.iter().any(|e| e.name == f.name)
        {
            out.push(format!("firewall rule or port forward `{}` exists", f.name));
        }
    }
    if let (Some(lan), Some(have)) = (&plan.lan, &cfg.lan) {
        if have.address != lan.address {
            out.push(format!(
                "lan.address is {}, not pfSense's {}",
                have.address, lan.address
            ));
        }
        if let (Some(d), Some(hd)) = (&lan.dhcp, &have.dhcp) {
            if hd.range != d.range {
                out.push(format!(
                    "lan.dhcp.range is {}-{}, not pfSense's {}-{}",
                    hd.range.0, hd.range.1, d.range.0, d.range.1
                ));
            }
            for s in &d.statics {
                let mac = s.mac.parse::<MacAddr>().ok();
                if let Some(e) = hd
                    .statics
                    .iter()
                    .find(|e| Some(e.mac) == mac || e.address == s.address)
                {
                    out.push(format!(
                        "lan.dhcp.static {} ({}) is there already (pfSense: {} {})",
                        e.mac, e.address, s.mac, s.address
                    ));
                }
            }
        }
    }
    for (name, nets) in &plan.aliases {
        if let Some(have) = fw.alias(name) {
            if have != nets.as_slice() {
                out.push(format!("alias `{name}` exists with other prefixes"));
            }
        }
    }
    Ok(out)
}

fn write_wireguard(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    if let Some(wg) = &plan.wireguard {
        let mut keys = vec![("address".to_owned(), Value::from(wg.address.to_string()))];
        if let Some(p) = wg.listen_port {
            keys.push(("listen_port".into(), Value::from(i64::from(p))));
        }
        if let Some(m) = wg
            .mtu
            .filter(|m| *m != DEFAULT_MTU || cfg.wireguard.mtu != DEFAULT_MTU)
        {
            keys.push(("mtu".into(), Value::from(i64::from(m))));
        }
        let changed = editor.set_table_keys(&["wireguard"], keys)?;
        let secret = SecretBytes::new(format!("{}\n", wg.private_key).into_bytes());
        // The model's path is relative to the working directory (or
        // absolute); the editor takes relative ones from the file's.
        let key_path = std::path::absolute(&cfg.wireguard.private_key_file).map_err(|e| {
            ApplyError::Key(format!("{}: {e}", cfg.wireguard.private_key_file.display()))
        })?;
        let key_change = editor.stage_secret_file(&key_path, secret)?;
        out.lines.push(format!(
            "wireguard (from {}): {}; private key {} ({:?}, public key {})",
            wg.name,
            if changed.is_empty() {
                "unchanged".to_owned()
            } else {
                format!("set {}", changed.join(", "))
            },
            cfg.wireguard.private_key_file.display(),
            key_change,
            public_key(&wg.private_key)
        ));
    }
    let lan: Vec<String> = plan
        .lan_prefixes
        .iter()
        .filter(|p| !cfg.gateway.lan_prefixes.iter().any(|l| l.contains(*p)))
        .map(|p| p.to_string())
        .collect();
    for p in editor.add_to_string_array(&["gateway"], "lan_prefixes", &lan)? {
        out.lines.push(format!("gateway.lan_prefixes: added {p}"));
    }
    let remote: Vec<ipnet::IpNet> = plan
        .remote_prefixes
        .iter()
        .copied()
        .filter(|p| !cfg.wireguard.remote_prefixes.iter().any(|r| r.contains(p)))
        .collect();
    for p in editor.add_remote_prefixes(&remote)? {
        out.lines
            .push(format!("wireguard.remote_prefixes: added {p}"));
    }
    Ok(())
}

fn write_peers(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    for p in &plan.peers {
        for e in &cfg.peers {
            if e.name == p.name || e.public_key == p.public_key {
                match editor.remove_peer(&e.name) {
                    Ok(()) | Err(EditError::PeerNotFound(_)) => {}
                    Err(err) => return Err(err.into()),
                }
                out.lines.push(format!("peer {}: replaced", e.name));
            }
        }
        let psk_file = match &p.psk {
            Some(k) => {
                let rel = PathBuf::from(format!("peers/{}.psk", p.name));
                editor.stage_secret_file(&rel, SecretBytes::new(format!("{k}\n").into_bytes()))?;
                Some(rel)
            }
            None => None,
        };
        editor.add_peer(&NewPeer {
            name: p.name.clone(),
            public_key: p.public_key,
            address: p.address,
            psk_file: psk_file.clone(),
            private_key_file: None,
            keepalive: p.keepalive,
            dns: Vec::new(),
            endpoint: None,
        })?;
        if !p.enabled {
            editor.set_peer_enabled(&p.name, false)?;
        }
        out.lines.push(format!(
            "peer {}: added, address {}{}{}",
            p.name,
            p.address,
            psk_file
                .map(|f| format!(", preshared key {}", f.display()))
                .unwrap_or_default(),
            if p.enabled { "" } else { ", disabled" }
        ));
    }
    Ok(())
}

fn new_tunnel(cfg: &Config, plan: &ImportPlan, t: &IpsecTunnel, out: &mut Applied) -> NewTunnel {
    let psk_file = PathBuf::from(format!("ipsec/{}.psk", t.name));
    let mut local_id = t.local_id.clone();
    if local_id.is_none() && cfg.gateway.public_address.is_none() {
        if let Some(w) = plan.wan_address {
            local_id = Some(w.to_string());
            out.notes.push(ReportItem {
                line: t.line,
                what: format!("tunnel {}", t.name),
                why: format!(
                    "\"My IP address\" as identity and no gateway.public_address: local_id = pfSense's WAN address {w}"
                ),
            });
        }
    }
    NewTunnel {
        local_id,
        remote_id: t.remote_id.clone(),
        inside_cidr: t.inside_cidr,
        ike_proposals: t.ike_proposals.clone(),
        esp_proposals: t.esp_proposals.clone(),
        ike_lifetime: t.ike_lifetime,
        child_lifetime: t.child_lifetime,
        dpd_interval: t.dpd_interval,
        dpd_timeout: t.dpd_timeout,
        start_action: Some(t.start_action),
        local_ts: t.local_ts.clone(),
        remote_ts: t.remote_ts.clone(),
        enabled: (!t.enabled).then_some(false),
        ..NewTunnel::new(t.name.clone(), IpAddr::V4(t.remote_address), psk_file)
    }
}

fn write_tunnels(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    for t in &plan.tunnels {
        // A same-named tunnel to another peer goes (the one to the same
        // peer is updated in place by the upsert).
        if cfg
            .ipsec
            .tunnels
            .iter()
            .any(|e| e.name == t.name && e.remote_address != IpAddr::V4(t.remote_address))
        {
            editor.remove_array_table(&["ipsec"], "tunnels", &t.name);
        }
        let new = new_tunnel(cfg, plan, t, out);
        editor.stage_secret_file(&new.psk_file, t.psk.clone())?;
        let what = match editor.upsert_tunnel(&new)? {
            Upsert::Added => "added".to_owned(),
            Upsert::Updated { keys, .. } => format!("replaced ({} changed)", keys.join(", ")),
            Upsert::Unchanged => "unchanged".to_owned(),
        };
        out.lines.push(format!(
            "tunnel {} to {}: {what}, pre-shared key {}{}",
            t.name,
            t.remote_address,
            new.psk_file.display(),
            if t.enabled { "" } else { ", disabled" }
        ));
    }
    Ok(())
}

fn string_array<I: IntoIterator<Item = String>>(items: I) -> Value {
    let arr: Array = items.into_iter().collect();
    Value::Array(arr)
}

fn write_firewall(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    if !plan.aliases.is_empty() {
        let keys: Vec<(String, Value)> = plan
            .aliases
            .iter()
            .map(|(n, nets)| (n.clone(), string_array(nets.iter().map(|p| p.to_string()))))
            .collect();
        for k in editor.set_table_keys(&["firewall", "aliases"], keys)? {
            out.lines.push(format!("firewall.aliases.{k}: set"));
        }
    }
    let fw = &cfg.firewall;
    let remove = |editor: &mut ConfigEditor, name: &str| {
        if fw.rules.iter().any(|e| e.name == name) {
            editor.remove_array_table(&["firewall"], "rules", name);
        }
        if fw.port_forwards.iter().any(|e| e.name == name) {
            editor.remove_array_table(&["firewall"], "port_forwards", name);
        }
    };
    for f in &plan.port_forwards {
        remove(editor, &f.name);
        let mut t = Table::new();
        t.insert("name", value(f.name.as_str()));
        t.insert("proto", value(f.proto.as_str()));
        t.insert("port", value(i64::from(f.port)));
        t.insert("to", value(f.to.to_string()));
        if !f.from.is_empty() {
            t.insert("from", value(string_array(f.from.iter().cloned())));
        }
        editor.append_array_table(&["firewall"], "port_forwards", t)?;
        out.lines.push(format!(
            "port forward {}: {} {} -> {}",
            f.name,
            f.proto.as_str(),
            f.port,
            f.to
        ));
    }
    for r in &plan.rules {
        remove(editor, &r.name);
        let mut t = Table::new();
        t.insert("name", value(r.name.as_str()));
        t.insert("from", value(r.from.as_str()));
        t.insert("to", value(r.to.as_str()));
        if r.proto != crate::config::firewall::FirewallProto::Any {
            t.insert("proto", value(r.proto.as_str()));
        }
        if !r.ports.is_empty() {
            let mut arr = Array::new();
            for (a, b) in &r.ports {
                if a == b {
                    arr.push(i64::from(*a));
                } else {
                    arr.push(format!("{a}-{b}"));
                }
            }
            t.insert("ports", value(arr));
        }
        t.insert("action", value(r.action.as_str()));
        if r.log {
            t.insert("log", value(true));
        }
        editor.append_array_table(&["firewall"], "rules", t)?;
        out.lines.push(format!(
            "rule {}: {} -> {} {} {}",
            r.name,
            r.from,
            r.to,
            r.proto.as_str(),
            r.action.as_str()
        ));
    }
    Ok(())
}

fn write_lan(
    editor: &mut ConfigEditor,
    cfg: &Config,
    plan: &ImportPlan,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    let Some(lan) = &plan.lan else {
        return Ok(());
    };
    let changed = editor.set_table_keys(
        &["lan"],
        vec![("address".into(), Value::from(lan.address.to_string()))],
    )?;
    if !changed.is_empty() {
        out.lines.push(format!("lan.address: {}", lan.address));
    }
    let Some(d) = &lan.dhcp else {
        return Ok(());
    };
    let mut keys = vec![(
        "range".to_owned(),
        string_array([d.range.0.to_string(), d.range.1.to_string()]),
    )];
    if let Some(t) = d.lease_time {
        keys.push(("lease_time".into(), Value::from(i64::from(t))));
    }
    if let Some(r) = d.router.filter(|r| *r != lan.address.addr()) {
        keys.push(("router".into(), Value::from(r.to_string())));
    }
    if !d.dns_servers.is_empty() {
        keys.push((
            "dns_servers".into(),
            string_array(d.dns_servers.iter().map(|a| a.to_string())),
        ));
    }
    let changed = editor.set_table_keys(&["lan", "dhcp"], keys)?;
    if !changed.is_empty() {
        out.lines.push(format!(
            "lan.dhcp: {}-{} ({})",
            d.range.0,
            d.range.1,
            changed.join(", ")
        ));
    }
    let existing = cfg.lan.as_ref().and_then(|l| l.dhcp.as_ref());
    for s in &d.statics {
        let mac = s.mac.parse::<MacAddr>().ok();
        if let Some(hd) = existing {
            for e in hd
                .statics
                .iter()
                .filter(|e| Some(e.mac) == mac || e.address == s.address)
            {
                let spelled = e.mac;
                editor.remove_array_table_by(&["lan", "dhcp"], "static", "mac", |v| {
                    v.parse::<MacAddr>().ok() == Some(spelled)
                });
            }
        }
        let mut t = Table::new();
        t.insert("mac", value(s.mac.as_str()));
        t.insert("address", value(s.address.to_string()));
        if let Some(h) = &s.hostname {
            t.insert("hostname", value(h.as_str()));
        }
        editor.append_array_table(&["lan", "dhcp"], "static", t)?;
        out.lines.push(format!(
            "lan.dhcp.static {} -> {}{}",
            s.mac,
            s.address,
            s.hostname
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}

/// The report with the writing's own remarks.
pub fn full_report(plan: &ImportPlan, applied: &Applied) -> Report {
    let mut r = plan.report.clone();
    r.notes.extend(applied.notes.iter().cloned());
    r.notes.sort_by_key(|i| i.line);
    r.not_mapped.sort_by_key(|i| i.line);
    r
}
