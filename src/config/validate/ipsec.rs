//! Validation of `[ipsec]` and its `[[ipsec.tunnels]]`: every key located and
//! named like the rest of the file, defaults applied, and the checks across
//! keys, across tunnels and against the prefixes the gateway serves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use toml_edit::TableLike;

use super::{check_unicast, is_name_char, Checker, Field, Span, Table};
use crate::config::ike_id::parse_identity;
use crate::config::keys;
use crate::config::model::{
    IpsecConfig, StartAction, TunnelConfig, DEFAULT_CHILD_LIFETIME, DEFAULT_DPD_INTERVAL,
    DEFAULT_DPD_TIMEOUT, DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_LIFETIME, DEFAULT_IKE_PROPOSALS,
    DEFAULT_NAT_KEEPALIVE, DEFAULT_PROBE_HOLD_DOWN, DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_LOSS,
    DEFAULT_PROBE_RECOVER, DEFAULT_REKEY_FUZZ, DEFAULT_REKEY_MARGIN, DEFAULT_REPLAY_WINDOW,
    DEFAULT_TCP_MSS, DEFAULT_TRAFFIC_SELECTOR, DEFAULT_TUNNEL_PRIORITY, INSIDE_CIDR_RANGE,
    MAX_CHILD_LIFETIME, MAX_DPD_INTERVAL, MAX_DPD_TIMEOUT, MAX_IKE_LIFETIME, MAX_NAT_KEEPALIVE,
    MAX_PROBE_COUNT, MAX_PROBE_HOLD_DOWN, MAX_PROBE_INTERVAL, MAX_REKEY_FUZZ, MAX_REPLAY_WINDOW,
    MAX_TCP_MSS, MAX_TUNNEL_MTU, MIN_LIFETIME, MIN_REPLAY_WINDOW, MIN_TCP_MSS, MIN_TUNNEL_MTU,
};
use crate::ike::proposal::{Proposal, Protocol};
use crate::wire::Identity;

/// Keys allowed in `[ipsec]`.
pub(crate) const IPSEC_KEYS: &[&str] = &[
    "replay_window",
    "nat_keepalive",
    "tcp_mss",
    "tunnel_mtu",
    "tunnels",
];
/// Keys allowed in each `[[ipsec.tunnels]]` table.
pub(crate) const TUNNEL_KEYS: &[&str] = &[
    "name",
    "remote_address",
    "local_address",
    "local_id",
    "remote_id",
    "psk_file",
    "ike_proposals",
    "esp_proposals",
    "ike_lifetime",
    "child_lifetime",
    "rekey_margin",
    "rekey_fuzz",
    "dpd_interval",
    "dpd_timeout",
    "local_ts",
    "remote_ts",
    "inside_cidr",
    "start_action",
    "priority",
    "replay_window",
    "child_lifetime_bytes",
    "force_encap",
    "probe_interval",
    "probe_loss",
    "probe_recover",
    "probe_hold_down",
    "enabled",
];

/// A tunnel setting and, when the file sets it, where (span, field path);
/// `None` when it is the default.
struct Setting<T> {
    value: T,
    at: Option<(Span, String)>,
}

impl Setting<Duration> {
    /// `child_lifetime (3600 s, the default)` / `child_lifetime (300 s)`.
    fn describe(&self, key: &str) -> String {
        let secs = self.value.as_secs();
        match self.at {
            Some(_) => format!("{key} ({secs} s)"),
            None => format!("{key} ({secs} s, the default)"),
        }
    }
}

/// The probe keys of one tunnel, validated.
#[derive(Clone, Copy)]
struct ProbeKeys {
    interval: Duration,
    loss: u32,
    recover: u32,
    hold_down: Duration,
}

/// What the checks across tunnels need from one tunnel, with locations.
#[derive(Default)]
struct TunnelDraft {
    name: Option<String>,
    name_span: Span,
    remote_address: Option<IpAddr>,
    remote_span: Span,
    inside_cidr: Option<Ipv4Net>,
    inside_span: Span,
    /// The whole tunnel, when every key of it is valid.
    config: Option<TunnelConfig>,
}

impl Checker<'_> {
    /// `[ipsec]`, optional: without it there are no tunnels. `served` are the
    /// prefixes the gateway routes (WireGuard subnet, LAN, remote prefixes);
    /// `public_address` is the gateway's public address (`None`: unknown,
    /// because `[gateway]` has errors).
    pub(super) fn ipsec(
        &mut self,
        root: &dyn TableLike,
        served: &[(IpNet, Span, String)],
        public_address: Option<Option<IpAddr>>,
    ) -> Option<IpsecConfig> {
        let Some(t) = self.optional_section(root, "ipsec").ok()? else {
            return Some(IpsecConfig::default());
        };
        self.unknown_keys(&t, IPSEC_KEYS);
        let replay_window = match self.get(&t, "replay_window") {
            Some(f) => self.u32_in(
                &f,
                MIN_REPLAY_WINDOW,
                MAX_REPLAY_WINDOW,
                "the replay window in packets",
            ),
            None => Some(DEFAULT_REPLAY_WINDOW),
        };
        let nat_keepalive = match self.get(&t, "nat_keepalive") {
            Some(f) => self
                .integer(
                    &f,
                    0,
                    secs_i64(MAX_NAT_KEEPALIVE),
                    "the NAT keepalive interval in seconds (0 = off)",
                )
                .map(|n| Duration::from_secs(n.unsigned_abs())),
            None => Some(DEFAULT_NAT_KEEPALIVE),
        };
        let tcp_mss = match self.get(&t, "tcp_mss") {
            Some(f) => self.u16_in(
                &f,
                MIN_TCP_MSS,
                MAX_TCP_MSS,
                "the TCP MSS of SYNs through the tunnels, in bytes",
            ),
            None => Some(DEFAULT_TCP_MSS),
        };
        let tunnel_mtu = match self.get(&t, "tunnel_mtu") {
            Some(f) => self
                .u16_in(
                    &f,
                    MIN_TUNNEL_MTU,
                    MAX_TUNNEL_MTU,
                    "the largest inner packet of a tunnel, in bytes",
                )
                .map(Some),
            None => Some(None),
        };
        let tunnels = match t.table.get_key_value("tunnels") {
            None => Some(Vec::new()),
            Some((k, item)) => {
                let span = item.span().or_else(|| k.span());
                self.table_array(item, span, "ipsec.tunnels")
                    .and_then(|tables| {
                        let drafts: Vec<TunnelDraft> = tables
                            .into_iter()
                            .enumerate()
                            .map(|(i, (table, span))| {
                                let t = Table {
                                    table,
                                    path: format!("ipsec.tunnels[{i}]"),
                                    label: format!("[[ipsec.tunnels]] table ipsec.tunnels[{i}]"),
                                    span,
                                };
                                self.tunnel(&t, replay_window, public_address)
                            })
                            .collect();
                        self.cross_check_tunnels(&drafts, served);
                        drafts.into_iter().map(|d| d.config).collect()
                    })
            }
        };
        Some(IpsecConfig {
            replay_window: replay_window?,
            nat_keepalive: nat_keepalive?,
            tcp_mss: tcp_mss?,
            tunnel_mtu: tunnel_mtu?,
            tunnels: tunnels?,
        })
    }

    /// One `[[ipsec.tunnels]]` table. `replay_window` is `[ipsec]`'s (`None`
    /// when invalid).
    fn tunnel(
        &mut self,
        t: &Table<'_>,
        replay_window: Option<u32>,
        public_address: Option<Option<IpAddr>>,
    ) -> TunnelDraft {
        self.unknown_keys(t, TUNNEL_KEYS);
        let mut d = TunnelDraft::default();
        if let Some(f) = self.required(t, "name") {
            d.name_span = f.span.clone();
            if let Some(s) = self.string(&f, "a string") {
                match check_tunnel_name(s) {
                    Ok(()) => d.name = Some(s.to_owned()),
                    Err(why) => self.error(&f.span, &f.path, why),
                }
            }
        }
        if let Some(f) = self.required(t, "remote_address") {
            d.remote_span = f.span.clone();
            d.remote_address = self.outside_address(&f, "the peer's outside address");
        }
        let local_address = match self.get(t, "local_address") {
            None => Some(None),
            Some(f) => self
                .outside_address(&f, "a local address to send from")
                .and_then(|local| {
                    if let Some(remote) = d.remote_address {
                        if local.is_ipv4() != remote.is_ipv4() {
                            self.error(
                                &f.span,
                                &f.path,
                                format!(
                                    "local_address {local} and remote_address {remote} are of different IP versions"
                                ),
                            );
                            return None;
                        }
                    }
                    Some(Some(local))
                }),
        };
        let local_id = match self.get(t, "local_id") {
            Some(f) => self.identity(&f),
            None => match public_address {
                Some(Some(addr)) => Some(ip_identity(addr)),
                Some(None) => {
                    self.error(
                        &t.span,
                        &t.field_path("local_id"),
                        format!(
                            "no IKE identity: neither {} nor gateway.public_address is set, and \
                             gateway.public_endpoint is not an IP address; set one of them \
                             (AWS expects the customer gateway's public IP address)",
                            t.field_path("local_id")
                        ),
                    );
                    None
                }
                None => None,
            },
        };
        let remote_id = match self.get(t, "remote_id") {
            Some(f) => self.identity(&f),
            None => d.remote_address.map(ip_identity),
        };
        let psk_file = self.required(t, "psk_file").and_then(|f| {
            let p = self.path(&f)?;
            self.psk_file(&f, &p);
            Some(p)
        });
        let ike = self.proposals(t, "ike_proposals", Protocol::Ike, DEFAULT_IKE_PROPOSALS);
        let esp = self.proposals(t, "esp_proposals", Protocol::Esp, DEFAULT_ESP_PROPOSALS);
        let ike_lifetime = self.seconds(
            t,
            "ike_lifetime",
            (MIN_LIFETIME, MAX_IKE_LIFETIME),
            DEFAULT_IKE_LIFETIME,
            "the IKE SA lifetime in seconds",
        );
        let child_lifetime = self.seconds(
            t,
            "child_lifetime",
            (MIN_LIFETIME, MAX_CHILD_LIFETIME),
            DEFAULT_CHILD_LIFETIME,
            "the CHILD SA lifetime in seconds",
        );
        if let (Some(child), Some(ike)) = (&child_lifetime, &ike_lifetime) {
            if child.value >= ike.value {
                let message = format!(
                    "{} must be less than {}",
                    child.describe("child_lifetime"),
                    ike.describe("ike_lifetime")
                );
                self.conflict(child, ike, message);
            }
        }
        let rekey_margin = self.seconds(
            t,
            "rekey_margin",
            (Duration::from_secs(1), MAX_CHILD_LIFETIME),
            DEFAULT_REKEY_MARGIN,
            "the rekey margin in seconds",
        );
        if let (Some(margin), Some(child)) = (&rekey_margin, &child_lifetime) {
            if margin.value * 2 >= child.value {
                let message = format!(
                    "{} must be less than half of {}",
                    margin.describe("rekey_margin"),
                    child.describe("child_lifetime")
                );
                self.conflict(margin, child, message);
            }
        }
        let rekey_fuzz = match self.get(t, "rekey_fuzz") {
            Some(f) => self.u32_in(&f, 0, MAX_REKEY_FUZZ, "the rekey fuzz in percent"),
            None => Some(DEFAULT_REKEY_FUZZ),
        };
        let dpd_interval = self.seconds(
            t,
            "dpd_interval",
            (Duration::from_secs(1), MAX_DPD_INTERVAL),
            DEFAULT_DPD_INTERVAL,
            "the DPD interval in seconds",
        );
        let dpd_timeout = self.seconds(
            t,
            "dpd_timeout",
            (Duration::from_secs(2), MAX_DPD_TIMEOUT),
            DEFAULT_DPD_TIMEOUT,
            "the DPD timeout in seconds",
        );
        if let (Some(timeout), Some(interval)) = (&dpd_timeout, &dpd_interval) {
            if timeout.value <= interval.value {
                let message = format!(
                    "{} must be more than {}",
                    timeout.describe("dpd_timeout"),
                    interval.describe("dpd_interval")
                );
                self.conflict(timeout, interval, message);
            }
        }
        let local_ts = self.selectors(t, "local_ts");
        let remote_ts = self.selectors(t, "remote_ts");
        let inside_cidr = match self.get(t, "inside_cidr") {
            None => Some(None),
            Some(f) => {
                d.inside_span = f.span.clone();
                self.inside_cidr(&f).map(|net| {
                    d.inside_cidr = Some(net);
                    Some(net)
                })
            }
        };
        let start_action = match self.get(t, "start_action") {
            None => Some(StartAction::Initiate),
            Some(f) => self.start_action(&f),
        };
        let priority = match self.get(t, "priority") {
            Some(f) => self.u32_in(&f, 0, u32::MAX, "the priority"),
            None => Some(DEFAULT_TUNNEL_PRIORITY),
        };
        let tunnel_replay_window = match self.get(t, "replay_window") {
            Some(f) => self.u32_in(
                &f,
                MIN_REPLAY_WINDOW,
                MAX_REPLAY_WINDOW,
                "the replay window in packets",
            ),
            None => replay_window,
        };
        let child_lifetime_bytes = match self.get(t, "child_lifetime_bytes") {
            // At least 1 MiB: a smaller volume would rekey all the time.
            Some(f) => self
                .integer(&f, 1 << 20, i64::MAX, "bytes, at least 1048576")
                .map(|n| Some(n as u64)),
            None => Some(None),
        };
        let force_encap = match self.get(t, "force_encap") {
            Some(f) => match self.boolean(&f) {
                Some(false) => {
                    self.error(
                        &f.span,
                        &f.path,
                        "ipieced's userspace data plane sends ESP in UDP (port 4500) only: raw ESP \
                         (IP protocol 50) would need a raw socket; remove this key or set it to true",
                    );
                    None
                }
                other => other,
            },
            None => Some(true),
        };
        let enabled = match self.get(t, "enabled") {
            Some(f) => self.boolean(&f),
            None => Some(true),
        };
        let probe = self.probe(t, inside_cidr.is_some_and(|c| c.is_some()), &dpd_interval);
        let config = (|| {
            let (ike_proposals, ike_proposals_text) = ike?;
            let (esp_proposals, esp_proposals_text) = esp?;
            Some(TunnelConfig {
                name: d.name.clone()?,
                remote_address: d.remote_address?,
                local_address: local_address?,
                local_id: local_id?,
                remote_id: remote_id?,
                psk_file: psk_file?,
                ike_proposals,
                ike_proposals_text,
                esp_proposals,
                esp_proposals_text,
                ike_lifetime: ike_lifetime?.value,
                child_lifetime: child_lifetime?.value,
                rekey_margin: rekey_margin?.value,
                rekey_fuzz: rekey_fuzz?,
                dpd_interval: dpd_interval?.value,
                dpd_timeout: dpd_timeout?.value,
                local_ts: local_ts?,
                remote_ts: remote_ts?,
                inside_cidr: inside_cidr?,
                start_action: start_action?,
                priority: priority?,
                replay_window: tunnel_replay_window?,
                child_lifetime_bytes: child_lifetime_bytes?,
                force_encap: force_encap?,
                probe_interval: probe?.interval,
                probe_loss: probe?.loss,
                probe_recover: probe?.recover,
                probe_hold_down: probe?.hold_down,
                enabled: enabled?,
            })
        })();
        d.config = config;
        d
    }

    /// `probe_interval`, `probe_loss`, `probe_recover`, `probe_hold_down`:
    /// each needs `inside_cidr` (the probes go to its first address), and
    /// probing more seldom than DPD checks would notice nothing DPD does not.
    fn probe(
        &mut self,
        t: &Table<'_>,
        has_inside_cidr: bool,
        dpd_interval: &Option<Setting<Duration>>,
    ) -> Option<ProbeKeys> {
        let interval = match self.get(t, "probe_interval") {
            Some(f) => {
                let n = self.integer(
                    &f,
                    0,
                    secs_i64(MAX_PROBE_INTERVAL),
                    "the probe interval in seconds (0 = off)",
                )?;
                Setting {
                    value: Duration::from_secs(n.unsigned_abs()),
                    at: Some((f.span, f.path)),
                }
            }
            None => Setting {
                value: DEFAULT_PROBE_INTERVAL,
                at: None,
            },
        };
        let count = |c: &mut Self, key: &str, default: u32, what: &str| match c.get(t, key) {
            Some(f) => c.u32_in(&f, 1, MAX_PROBE_COUNT, what).map(|v| (v, Some(f))),
            None => Some((default, None)),
        };
        let loss = count(
            self,
            "probe_loss",
            DEFAULT_PROBE_LOSS,
            "lost probes in a row (1-100)",
        );
        let recover = count(
            self,
            "probe_recover",
            DEFAULT_PROBE_RECOVER,
            "answered probes in a row (1-100)",
        );
        let hold_down = self.seconds(
            t,
            "probe_hold_down",
            (Duration::ZERO, MAX_PROBE_HOLD_DOWN),
            DEFAULT_PROBE_HOLD_DOWN,
            "the hold-down in seconds",
        );
        if !has_inside_cidr {
            let set: Vec<String> = [
                "probe_interval",
                "probe_loss",
                "probe_recover",
                "probe_hold_down",
            ]
            .into_iter()
            .filter(|k| t.table.contains_key(k))
            .map(str::to_owned)
            .collect();
            for key in &set {
                if let Some(f) = self.get(t, key) {
                    let off = key == "probe_interval" && interval.value.is_zero();
                    if !off {
                        self.error(
                            &f.span,
                            &f.path,
                            format!(
                                "{key} needs inside_cidr: the probes go to the peer's inside \
                                 address (its first address); set {} or remove {key}",
                                t.field_path("inside_cidr")
                            ),
                        );
                    }
                }
            }
            if set
                .iter()
                .any(|k| k != "probe_interval" || !interval.value.is_zero())
            {
                return None;
            }
        }
        if let Some(dpd) = dpd_interval {
            if interval.value > dpd.value {
                let message = format!(
                    "{} must not exceed {}: DPD would notice a dead peer before the probes",
                    interval.describe("probe_interval"),
                    dpd.describe("dpd_interval")
                );
                self.conflict(&interval, dpd, message);
                return None;
            }
        }
        Some(ProbeKeys {
            interval: interval.value,
            loss: loss?.0,
            recover: recover?.0,
            hold_down: hold_down?.value,
        })
    }

    /// An outside (unicast) IPv4 address: `remote_address`, `local_address`.
    /// IPv6 is refused: the IKE and ESP sockets (UDP 500 and 4500) listen
    /// on 0.0.0.0 only.
    fn outside_address(&mut self, f: &Field<'_>, what: &str) -> Option<IpAddr> {
        let addr = self.ip(f)?;
        if let Err(why) = check_unicast(addr) {
            self.error(&f.span, &f.path, format!("{addr} is {why}, not {what}"));
            return None;
        }
        if addr.is_ipv6() {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "{addr} is an IPv6 address: IPsec tunnels run over IPv4 only \
                     (the IKE and ESP sockets, UDP 500 and 4500, listen on 0.0.0.0)"
                ),
            );
            return None;
        }
        Some(addr)
    }

    fn identity(&mut self, f: &Field<'_>) -> Option<Identity> {
        let s = self.string(
            f,
            "a string (an IKE identity such as \"198.51.100.10\" or \"@vpn.example.com\")",
        )?;
        match parse_identity(s) {
            Ok(id) => Some(id),
            Err(why) => {
                self.error(
                    &f.span,
                    &f.path,
                    format!("`{}` is not a usable IKE identity: {why}", s.escape_debug()),
                );
                None
            }
        }
    }

    /// Checks a PSK file (mode, content); never reports the content.
    fn psk_file(&mut self, f: &Field<'_>, path: &std::path::Path) {
        for problem in &keys::inspect_psk_file(path) {
            self.error(&f.span, &f.path, problem.to_string());
        }
    }

    /// A proposal list in swanctl syntax, parsed; with the text it came from.
    fn proposals(
        &mut self,
        t: &Table<'_>,
        key: &str,
        protocol: Protocol,
        default: &str,
    ) -> Option<(Vec<Proposal>, String)> {
        let Some(f) = self.get(t, key) else {
            let list =
                Proposal::parse_list(protocol, default).expect("the default proposals parse");
            return Some((list, default.to_owned()));
        };
        let s = self.string(
            &f,
            "a string (proposals in swanctl syntax, e.g. \"aes128-sha256-modp2048,aes256gcm16-prfsha384-ecp384\")",
        )?;
        match Proposal::parse_list(protocol, s) {
            Ok(list) => Some((list, s.to_owned())),
            Err(e) => {
                self.error(&f.span, &f.path, e.to_string());
                None
            }
        }
    }

    /// A duration in whole seconds within `range`, or `default`.
    fn seconds(
        &mut self,
        t: &Table<'_>,
        key: &str,
        (min, max): (Duration, Duration),
        default: Duration,
        what: &str,
    ) -> Option<Setting<Duration>> {
        match self.get(t, key) {
            Some(f) => {
                let n = self.integer(&f, secs_i64(min), secs_i64(max), what)?;
                Some(Setting {
                    value: Duration::from_secs(n.unsigned_abs()),
                    at: Some((f.span, f.path)),
                })
            }
            None => Some(Setting {
                value: default,
                at: None,
            }),
        }
    }

    /// Reports a disagreement between two settings at `first` when the file
    /// sets it, else at `second` (two defaults always agree).
    fn conflict<A, B>(&mut self, first: &Setting<A>, second: &Setting<B>, message: String) {
        if let Some((span, path)) = first.at.as_ref().or(second.at.as_ref()) {
            let (span, path) = (span.clone(), path.clone());
            self.error(&span, &path, message);
        }
    }

    /// `local_ts` / `remote_ts`: a non-empty list of canonical prefixes.
    fn selectors(&mut self, t: &Table<'_>, key: &str) -> Option<Vec<IpNet>> {
        let Some(f) = self.get(t, key) else {
            let any: IpNet = DEFAULT_TRAFFIC_SELECTOR.parse().expect("a valid prefix");
            return Some(vec![any]);
        };
        let elems = self.array(&f, "CIDR prefix strings")?;
        if elems.is_empty() {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "the list of traffic selectors must not be empty (leave the key out for [\"{DEFAULT_TRAFFIC_SELECTOR}\"])"
                ),
            );
            return None;
        }
        let nets: Vec<Option<IpNet>> = elems.iter().map(|e| self.prefix(e)).collect();
        nets.into_iter().collect()
    }

    /// `inside_cidr`: a /30 inside 169.254.0.0/16.
    fn inside_cidr(&mut self, f: &Field<'_>) -> Option<Ipv4Net> {
        let net = self.prefix(f)?;
        let range: Ipv4Net = INSIDE_CIDR_RANGE.parse().expect("a valid prefix");
        match net {
            IpNet::V4(v4) if v4.prefix_len() == 30 && range.contains(&v4) => Some(v4),
            _ => {
                self.error(
                    &f.span,
                    &f.path,
                    format!(
                        "{net} is not a /30 inside {INSIDE_CIDR_RANGE} (a tunnel inside CIDR: \
                         the peer has the first address, this gateway the second)"
                    ),
                );
                None
            }
        }
    }

    fn start_action(&mut self, f: &Field<'_>) -> Option<StartAction> {
        let s = self.string(f, "a string (\"initiate\" or \"wait\")")?;
        match s {
            "initiate" => Some(StartAction::Initiate),
            "wait" => Some(StartAction::Wait),
            other => {
                self.error(
                    &f.span,
                    &f.path,
                    format!(
                        "unknown start action `{}`: use \"initiate\" (this gateway starts the tunnel) \
                         or \"wait\" (the peer does, AWS's startup action \"start\")",
                        other.escape_debug()
                    ),
                );
                None
            }
        }
    }

    /// Unique names, remote addresses and inside CIDRs; remote addresses and
    /// inside CIDRs outside the prefixes the gateway serves.
    fn cross_check_tunnels(&mut self, drafts: &[TunnelDraft], served: &[(IpNet, Span, String)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut remotes: HashMap<IpAddr, usize> = HashMap::new();
        let mut insides: Vec<(Ipv4Net, String)> = Vec::new();
        for (i, d) in drafts.iter().enumerate() {
            let path = |k: &str| format!("ipsec.tunnels[{i}].{k}");
            if let Some(name) = &d.name {
                if let Some(&first) = names.get(name.as_str()) {
                    self.error(
                        &d.name_span,
                        &path("name"),
                        format!("duplicate tunnel name `{name}` (also ipsec.tunnels[{first}])"),
                    );
                } else {
                    names.insert(name, i);
                }
            }
            if let Some(addr) = d.remote_address {
                if let Some(&first) = remotes.get(&addr) {
                    self.error(
                        &d.remote_span,
                        &path("remote_address"),
                        format!(
                            "remote address {addr} is also used by {}",
                            tunnel_label(drafts, first)
                        ),
                    );
                } else {
                    remotes.insert(addr, i);
                }
                for (net, _, net_path) in served {
                    if net.contains(&addr) {
                        self.error(
                            &d.remote_span,
                            &path("remote_address"),
                            format!(
                                "{addr} is inside {net} ({net_path}), a prefix this gateway \
                                 routes itself; a tunnel's outside address must be reached \
                                 outside the tunnels"
                            ),
                        );
                    }
                }
            }
            if let Some(inside) = d.inside_cidr {
                let net = IpNet::V4(inside);
                for (other, other_path) in &insides {
                    if other.contains(&inside) || inside.contains(other) {
                        let what = if *other == inside {
                            "duplicates"
                        } else {
                            "overlaps"
                        };
                        self.error(
                            &d.inside_span,
                            &path("inside_cidr"),
                            format!(
                                "{inside} {what} {other} ({other_path}); each tunnel needs its own inside CIDR"
                            ),
                        );
                    }
                }
                for (served_net, _, served_path) in served {
                    if served_net.contains(&net) || net.contains(served_net) {
                        self.error(
                            &d.inside_span,
                            &path("inside_cidr"),
                            format!("{inside} overlaps {served_net} ({served_path})"),
                        );
                    }
                }
                insides.push((inside, path("inside_cidr")));
            }
        }
    }
}

/// `ipsec.tunnels[i]` with its name when known: "ipsec.tunnels[0] (`aws-1`)".
fn tunnel_label(drafts: &[TunnelDraft], i: usize) -> String {
    match drafts.get(i).and_then(|d| d.name.as_deref()) {
        Some(n) => format!("ipsec.tunnels[{i}] (`{n}`)"),
        None => format!("ipsec.tunnels[{i}]"),
    }
}

/// The ID_IPV4_ADDR / ID_IPV6_ADDR identity of an address.
fn ip_identity(addr: IpAddr) -> Identity {
    match addr {
        IpAddr::V4(a) => Identity::Ipv4(a),
        IpAddr::V6(a) => Identity::Ipv6(a),
    }
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A tunnel name: `[A-Za-z0-9_.-]{1,32}`.
pub(crate) fn check_tunnel_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 32 || !s.chars().all(is_name_char) {
        return Err(format!(
            "invalid tunnel name `{}`: use 1 to 32 characters of A-Z a-z 0-9 _ . -",
            s.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::*;
    use crate::config::keys::{generate_private_key, write_secret_file};
    use crate::config::model::Config;
    use crate::config::testutil::TempDir;
    use crate::config::{format_identity, ConfigError, ConfigErrors};
    use std::fs;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// The base configuration; tests edit single lines and know their numbers.
    const BASE: &str = r#"[gateway]
name = "gw"
public_endpoint = "198.51.100.10"
lan_prefixes = ["172.16.4.0/24"]

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"
remote_prefixes = ["10.0.0.0/16"]

[ipsec]
replay_window = 512
nat_keepalive = 15

[[ipsec.tunnels]]
name = "aws-1"
remote_address = "203.0.113.1"
psk_file = "aws-1.psk"
inside_cidr = "169.254.10.0/30"

[[ipsec.tunnels]]
name = "aws-2"
remote_address = "203.0.113.2"
local_address = "192.168.1.10"
local_id = "@cgw.example.com"
remote_id = "keyid:#0a0b"
psk_file = "aws-2.psk"
ike_proposals = "aes256-sha256-modp2048"
esp_proposals = "aes256gcm16-ecp384"
ike_lifetime = 7200
child_lifetime = 1800
rekey_margin = 60
rekey_fuzz = 50
dpd_interval = 5
dpd_timeout = 20
local_ts = ["172.16.0.0/16"]
remote_ts = ["10.0.0.0/16"]
inside_cidr = "169.254.11.0/30"
start_action = "wait"
priority = 200
replay_window = 2048
force_encap = true
enabled = false
"#;

    /// A PSK in AWS's alphabet.
    const PSK: &str = "abc_def.12345678";

    struct Fx {
        dir: TempDir,
        path: PathBuf,
    }

    impl Fx {
        fn new() -> Fx {
            let dir = TempDir::new();
            let d = dir.path();
            write_secret_file(
                &d.join("wg.key"),
                generate_private_key().to_string().as_bytes(),
            )
            .unwrap();
            write_secret_file(&d.join("aws-1.psk"), format!("{PSK}\n").as_bytes()).unwrap();
            write_secret_file(&d.join("aws-2.psk"), b"another.secret_42").unwrap();
            let path = d.join("gateway.toml");
            Fx { path, dir }
        }

        fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
            Config::parse(&self.path, text)
        }

        /// The errors for BASE with `from` replaced by `to` (exactly once).
        #[track_caller]
        fn errors_with(&self, from: &str, to: &str) -> Vec<ConfigError> {
            assert_eq!(BASE.matches(from).count(), 1, "{from}");
            match self.parse(&BASE.replacen(from, to, 1)) {
                Ok(_) => panic!("expected errors after replacing {from:?} with {to:?}"),
                Err(e) => e.0,
            }
        }

        #[track_caller]
        fn parses_with(&self, from: &str, to: &str) -> Config {
            assert_eq!(BASE.matches(from).count(), 1, "{from}");
            self.parse(&BASE.replacen(from, to, 1))
                .unwrap_or_else(|e| panic!("{e}"))
        }

        fn write_psk(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
            let p = self.dir.path().join(name);
            write_secret_file(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn tunnels_parse_with_defaults_and_overrides() {
        let fx = Fx::new();
        let c = fx.parse(BASE).unwrap();
        let d = fx.dir.path();
        assert_eq!(
            c.gateway.public_address,
            Some("198.51.100.10".parse().unwrap())
        );
        assert_eq!(c.ipsec.replay_window, 512);
        assert_eq!(c.ipsec.nat_keepalive, secs(15));
        assert_eq!(c.ipsec.tunnels.len(), 2);

        // Tunnel 1: only the required keys and an inside CIDR.
        let t = c.tunnel("aws-1").unwrap();
        assert_eq!(t.name, "aws-1");
        assert_eq!(t.remote_address, "203.0.113.1".parse::<IpAddr>().unwrap());
        assert_eq!(t.local_address, None);
        // Our identity defaults to the public address taken from public_endpoint.
        assert_eq!(t.local_id, Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10)));
        assert_eq!(t.remote_id, Identity::Ipv4(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(t.psk_file, d.join("aws-1.psk"));
        assert_eq!(t.ike_proposals_text, DEFAULT_IKE_PROPOSALS);
        assert_eq!(
            t.ike_proposals,
            Proposal::parse_list(Protocol::Ike, DEFAULT_IKE_PROPOSALS).unwrap()
        );
        assert_eq!(t.esp_proposals_text, DEFAULT_ESP_PROPOSALS);
        assert_eq!(
            t.esp_proposals,
            Proposal::parse_list(Protocol::Esp, DEFAULT_ESP_PROPOSALS).unwrap()
        );
        assert_eq!(t.ike_lifetime, secs(28_800));
        assert_eq!(t.child_lifetime, secs(3_600));
        assert_eq!(t.rekey_margin, secs(270));
        assert_eq!(t.rekey_fuzz, 100);
        assert_eq!(t.dpd_interval, secs(10));
        assert_eq!(t.dpd_timeout, secs(30));
        assert_eq!(t.local_ts, vec![net("0.0.0.0/0")]);
        assert_eq!(t.remote_ts, vec![net("0.0.0.0/0")]);
        assert_eq!(t.inside_cidr, Some("169.254.10.0/30".parse().unwrap()));
        assert_eq!(t.remote_inside(), Some(Ipv4Addr::new(169, 254, 10, 1)));
        assert_eq!(t.local_inside(), Some(Ipv4Addr::new(169, 254, 10, 2)));
        assert_eq!(t.start_action, StartAction::Initiate);
        assert_eq!(t.priority, 100);
        // Inherited from [ipsec].
        assert_eq!(t.replay_window, 512);
        assert!(t.force_encap, "ESP is always UDP-encapsulated");
        assert!(t.enabled);

        // Tunnel 2: every key set.
        let t = &c.ipsec.tunnels[1];
        assert_eq!(t.name, "aws-2");
        assert_eq!(t.local_address, Some("192.168.1.10".parse().unwrap()));
        assert_eq!(t.local_id, Identity::Fqdn("cgw.example.com".into()));
        assert_eq!(t.remote_id, Identity::KeyId(vec![0x0a, 0x0b]));
        assert_eq!(format_identity(&t.remote_id), "@#0a0b");
        assert_eq!(t.psk_file, d.join("aws-2.psk"));
        assert_eq!(t.ike_proposals_text, "aes256-sha256-modp2048");
        assert_eq!(t.ike_proposals.len(), 1);
        assert_eq!(t.ike_proposals[0].to_string(), "aes256-sha256-modp2048");
        assert_eq!(t.esp_proposals[0].to_string(), "aes256gcm16-ecp384");
        assert_eq!(t.ike_lifetime, secs(7200));
        assert_eq!(t.child_lifetime, secs(1800));
        assert_eq!(t.rekey_margin, secs(60));
        assert_eq!(t.rekey_fuzz, 50);
        assert_eq!(t.dpd_interval, secs(5));
        assert_eq!(t.dpd_timeout, secs(20));
        assert_eq!(t.local_ts, vec![net("172.16.0.0/16")]);
        assert_eq!(t.remote_ts, vec![net("10.0.0.0/16")]);
        assert_eq!(t.local_inside(), Some(Ipv4Addr::new(169, 254, 11, 2)));
        assert_eq!(t.start_action, StartAction::Wait);
        assert_eq!(t.priority, 200);
        assert_eq!(t.replay_window, 2048);
        assert!(t.force_encap);
        assert!(!t.enabled);
        assert!(c.tunnel("aws-3").is_none());

        // load() agrees with parse().
        fs::write(&fx.path, BASE).unwrap();
        assert_eq!(Config::load(&fx.path).unwrap(), c);
    }

    #[test]
    fn without_ipsec_the_defaults_apply() {
        let fx = Fx::new();
        let end = BASE.find("[ipsec]").unwrap();
        let c = fx.parse(&BASE[..end]).unwrap();
        assert_eq!(c.ipsec, IpsecConfig::default());
        assert_eq!(c.ipsec.replay_window, 1024);
        assert_eq!(c.ipsec.nat_keepalive, secs(20));
        assert_eq!(c.ipsec.tcp_mss, 1379);
        assert_eq!(c.ipsec.tunnel_mtu, None);
        assert!(c.ipsec.tunnels.is_empty());
        // An [ipsec] table without tunnels.
        let c = fx.parse(&format!("{}[ipsec]\n", &BASE[..end])).unwrap();
        assert_eq!(c.ipsec, IpsecConfig::default());
        // [[ipsec.tunnels]] alone (an implicit [ipsec]).
        let text = BASE.replace("[ipsec]\nreplay_window = 512\nnat_keepalive = 15\n", "");
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.ipsec.replay_window, 1024);
        assert_eq!(c.ipsec.tunnels[0].replay_window, 1024);
        assert_eq!(c.ipsec.tunnels[1].replay_window, 2048);
        // nat_keepalive = 0 turns keepalives off.
        let c = fx.parses_with("nat_keepalive = 15", "nat_keepalive = 0");
        assert_eq!(c.ipsec.nat_keepalive, Duration::ZERO);
    }

    #[test]
    fn public_address_and_its_default() {
        let fx = Fx::new();
        let c = fx.parses_with(
            "public_endpoint = \"198.51.100.10\"",
            "public_endpoint = \"vpn.example.com\"\npublic_address = \"198.51.100.20\"",
        );
        assert_eq!(
            c.gateway.public_address,
            Some("198.51.100.20".parse().unwrap())
        );
        assert_eq!(
            c.ipsec.tunnels[0].local_id,
            Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 20))
        );
        // An explicit public_address wins over an address in the endpoint.
        let c = fx.parses_with(
            "lan_prefixes",
            "public_address = \"2001:db8::10\"\nlan_prefixes",
        );
        assert_eq!(
            c.ipsec.tunnels[0].local_id,
            Identity::Ipv6("2001:db8::10".parse().unwrap())
        );
        // The endpoint's address, with or without a port.
        for (endpoint, want) in [
            ("203.0.113.7:443", Some("203.0.113.7")),
            ("[2001:db8::1]:51821", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("vpn.example.com:51821", None),
        ] {
            let text = BASE.replace("\"198.51.100.10\"", &format!("\"{endpoint}\""));
            // Without a public address tunnel 1 needs its own local_id.
            let text = match want {
                None => text.replace(
                    "psk_file = \"aws-1.psk\"",
                    "psk_file = \"aws-1.psk\"\nlocal_id = \"203.0.113.99\"",
                ),
                Some(_) => text,
            };
            let c = fx
                .parse(&text)
                .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
            assert_eq!(
                c.gateway.public_address,
                want.map(|w| w.parse().unwrap()),
                "{endpoint}"
            );
        }
        let errs = fx.errors_with("lan_prefixes", "public_address = \"vpn\"\nlan_prefixes");
        one(
            &errs,
            4,
            18,
            "gateway.public_address",
            "`vpn` is not an IP address",
        );
        for (bad, why) in [
            ("0.0.0.0", "the unspecified address"),
            ("224.0.0.5", "a multicast address"),
            ("255.255.255.255", "the broadcast address"),
        ] {
            let errs = fx.errors_with(
                "lan_prefixes",
                &format!("public_address = \"{bad}\"\nlan_prefixes"),
            );
            one(
                &errs,
                4,
                18,
                "gateway.public_address",
                &format!("{bad} is {why}, not the gateway's public address"),
            );
        }
    }

    #[test]
    fn local_id_needs_a_public_address() {
        let fx = Fx::new();
        let errs = fx.errors_with("\"198.51.100.10\"", "\"vpn.example.com\"");
        // Tunnel 2 has its own local_id; tunnel 1 is reported at its header.
        one(
            &errs,
            15,
            1,
            "ipsec.tunnels[0].local_id",
            "no IKE identity: neither ipsec.tunnels[0].local_id nor gateway.public_address is set, \
             and gateway.public_endpoint is not an IP address",
        );
        // A broken [gateway] reports its own error, not a missing identity.
        let errs = fx.errors_with("\"198.51.100.10\"", "\"vpn.example.com:0\"");
        one(&errs, 3, 19, "gateway.public_endpoint", "invalid endpoint");
        let errs = fx.errors_with(
            "lan_prefixes",
            "public_address = \"vpn.example.com\"\nlan_prefixes",
        );
        one(&errs, 4, 18, "gateway.public_address", "not an IP address");
    }

    #[test]
    fn identities() {
        let fx = Fx::new();
        let errs = fx.errors_with("\"@cgw.example.com\"", "\"%any\"");
        one(
            &errs,
            25,
            12,
            "ipsec.tunnels[1].local_id",
            "`%any` is not a usable IKE identity: this matches any identity",
        );
        let errs = fx.errors_with("\"keyid:#0a0b\"", "\"C=CH, O=AWS\"");
        one(
            &errs,
            26,
            13,
            "ipsec.tunnels[1].remote_id",
            "distinguished names",
        );
        let errs = fx.errors_with("\"keyid:#0a0b\"", "\"@#0a0\"");
        one(
            &errs,
            26,
            13,
            "ipsec.tunnels[1].remote_id",
            "even number of hexadecimal digits",
        );
        let errs = fx.errors_with("\"@cgw.example.com\"", "7");
        one(
            &errs,
            25,
            12,
            "ipsec.tunnels[1].local_id",
            "expected a string (an IKE identity",
        );
        for (written, id) in [
            (
                "198.51.100.10",
                Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10)),
            ),
            (
                "2001:db8::5",
                Identity::Ipv6("2001:db8::5".parse().unwrap()),
            ),
            ("cgw.example.com", Identity::Fqdn("cgw.example.com".into())),
            ("@#c0ffee", Identity::KeyId(vec![0xc0, 0xff, 0xee])),
            ("keyid:cgw", Identity::KeyId(b"cgw".to_vec())),
            (
                "ops@example.com",
                Identity::Rfc822("ops@example.com".into()),
            ),
        ] {
            let c = fx.parses_with("\"@cgw.example.com\"", &format!("\"{written}\""));
            assert_eq!(c.ipsec.tunnels[1].local_id, id, "{written}");
        }
    }

    #[test]
    fn psk_files() {
        let fx = Fx::new();
        let d = fx.dir.path();
        let errs = fx.errors_with("\"aws-1.psk\"", "\"gone.psk\"");
        one(
            &errs,
            18,
            12,
            "ipsec.tunnels[0].psk_file",
            &format!("key file {} does not exist", d.join("gone.psk").display()),
        );
        let errs = fx.errors_with("psk_file = \"aws-1.psk\"\n", "");
        one(
            &errs,
            15,
            1,
            "ipsec.tunnels[0].psk_file",
            "missing required key `psk_file` in [[ipsec.tunnels]] table ipsec.tunnels[0]",
        );
        let errs = fx.errors_with("\"aws-1.psk\"", "\"\"");
        one(
            &errs,
            18,
            12,
            "ipsec.tunnels[0].psk_file",
            "must not be empty",
        );
        let p = d.join("aws-1.psk");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let errs = fx.parse(BASE).unwrap_err();
        one(
            &errs.0,
            18,
            12,
            "ipsec.tunnels[0].psk_file",
            &format!(
                "has mode 0640, so group or others can access it; run `chmod 600 {}`",
                p.display()
            ),
        );
        // Neither the mode error nor anything else shows a valid key.
        assert!(!errs.to_string().contains(PSK));
        assert!(!format!("{errs:?}").contains(PSK));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();

        for (content, needle) in [
            (&b"\n"[..], "the file is empty"),
            (b"", "the file is empty"),
            (b"short.1\n", "the key is 7 bytes long; use 8 to 128"),
            (&[b'k'; 129][..], "the key is 129 bytes long"),
            (
                b"tab\there.secret",
                "the key contains a character that is not printable",
            ),
            (
                b"secret-one\nsecret-two\n",
                "the key contains a character that is not printable",
            ),
            (
                "s\u{e9}cret-key".as_bytes(),
                "the key contains a character that is not printable",
            ),
        ] {
            fx.write_psk("aws-1.psk", content, 0o600);
            let errs = fx.parse(BASE).unwrap_err();
            one(
                &errs.0,
                18,
                12,
                "ipsec.tunnels[0].psk_file",
                &format!(
                    "PSK file {} does not contain a usable pre-shared key: {needle}",
                    p.display()
                ),
            );
            let shown = format!("{errs}{errs:?}");
            if content.len() > 4 {
                let text = String::from_utf8_lossy(content);
                assert!(!shown.contains(text.trim_end()), "{shown}");
            }
        }
        // Exactly 8 and 128 bytes, with CRLF, and with spaces inside, are fine.
        for content in [
            &b"12345678"[..],
            &[b'k'; 128][..],
            b"abc.def_9\r\n",
            b"two words here\n",
        ] {
            fx.write_psk("aws-1.psk", content, 0o600);
            fx.parse(BASE).unwrap();
        }
    }

    #[test]
    fn proposals() {
        let fx = Fx::new();
        let errs = fx.errors_with("\"aes256-sha256-modp2048\"", "\"aes128-sha1-foo\"");
        one(
            &errs,
            28,
            17,
            "ipsec.tunnels[1].ike_proposals",
            "unknown algorithm 'foo' in IKE proposal 'aes128-sha1-foo'",
        );
        let errs = fx.errors_with(
            "\"aes256-sha256-modp2048\"",
            "\"aes256-sha256-modp2048,aes192-sha1-modp2048\"",
        );
        one(
            &errs,
            28,
            17,
            "ipsec.tunnels[1].ike_proposals",
            "algorithm 'aes192' in IKE proposal 'aes192-sha1-modp2048' is not supported",
        );
        let errs = fx.errors_with("\"aes256-sha256-modp2048\"", "\"aes256-sha256\"");
        one(
            &errs,
            28,
            17,
            "ipsec.tunnels[1].ike_proposals",
            "IKE proposal 'aes256-sha256' has no Diffie-Hellman group",
        );
        let errs = fx.errors_with("\"aes256gcm16-ecp384\"", "\"aes256gcm16-prfsha384-ecp384\"");
        one(
            &errs,
            29,
            17,
            "ipsec.tunnels[1].esp_proposals",
            "'prfsha384' is not valid in an ESP proposal",
        );
        let errs = fx.errors_with("\"aes256gcm16-ecp384\"", "\"\"");
        one(
            &errs,
            29,
            17,
            "ipsec.tunnels[1].esp_proposals",
            "empty ESP proposal",
        );
        let errs = fx.errors_with("\"aes256gcm16-ecp384\"", "[\"aes256gcm16-ecp384\"]");
        one(
            &errs,
            29,
            17,
            "ipsec.tunnels[1].esp_proposals",
            "expected a string (proposals in swanctl syntax",
        );
        // The text is kept as written; the list is parsed.
        let c = fx.parses_with(
            "\"aes256-sha256-modp2048\"",
            "\"aes128-sha1-modp2048, AES256GCM16-prfsha384-ecp384\"",
        );
        let t = &c.ipsec.tunnels[1];
        assert_eq!(
            t.ike_proposals_text,
            "aes128-sha1-modp2048, AES256GCM16-prfsha384-ecp384"
        );
        assert_eq!(t.ike_proposals.len(), 2);
        assert_eq!(
            t.ike_proposals[1].to_string(),
            "aes256gcm16-prfsha384-ecp384"
        );
    }

    /// BASE with `line` added to tunnel 1 (`aws-1`), where it is line 19.
    fn in_tunnel_1(line: &str) -> (&'static str, String) {
        (
            "psk_file = \"aws-1.psk\"\n",
            format!("psk_file = \"aws-1.psk\"\n{line}\n"),
        )
    }

    #[test]
    fn lifetimes() {
        let fx = Fx::new();
        let errs = fx.errors_with("ike_lifetime = 7200", "ike_lifetime = 29");
        // child_lifetime is not compared with an invalid ike_lifetime.
        one(
            &errs,
            30,
            16,
            "ipsec.tunnels[1].ike_lifetime",
            "the IKE SA lifetime in seconds must be between 30 and 28800, found 29",
        );
        let errs = fx.errors_with("ike_lifetime = 7200", "ike_lifetime = 28801");
        one(
            &errs,
            30,
            16,
            "ipsec.tunnels[1].ike_lifetime",
            "found 28801",
        );
        let errs = fx.errors_with("ike_lifetime = 7200", "ike_lifetime = \"2h\"");
        one(
            &errs,
            30,
            16,
            "ipsec.tunnels[1].ike_lifetime",
            "expected an integer (the IKE SA lifetime in seconds), found string",
        );
        let errs = fx.errors_with("child_lifetime = 1800", "child_lifetime = 3601");
        one(
            &errs,
            31,
            18,
            "ipsec.tunnels[1].child_lifetime",
            "the CHILD SA lifetime in seconds must be between 30 and 3600, found 3601",
        );
        // child_lifetime < ike_lifetime, reported at child_lifetime when it is set...
        let errs = fx.errors_with("ike_lifetime = 7200", "ike_lifetime = 1800");
        one(
            &errs,
            31,
            18,
            "ipsec.tunnels[1].child_lifetime",
            "child_lifetime (1800 s) must be less than ike_lifetime (1800 s)",
        );
        // ... and at ike_lifetime when child_lifetime is the default.
        let (from, to) = in_tunnel_1("ike_lifetime = 3000");
        let errs = fx.errors_with(from, &to);
        one(
            &errs,
            19,
            16,
            "ipsec.tunnels[0].ike_lifetime",
            "child_lifetime (3600 s, the default) must be less than ike_lifetime (3000 s)",
        );
        // The rekey test's short lifetimes are accepted.
        let c = fx.parses_with(
            "ike_lifetime = 7200\nchild_lifetime = 1800\nrekey_margin = 60",
            "ike_lifetime = 90\nchild_lifetime = 30\nrekey_margin = 10",
        );
        assert_eq!(c.ipsec.tunnels[1].ike_lifetime, secs(90));
        assert_eq!(c.ipsec.tunnels[1].child_lifetime, secs(30));
    }

    #[test]
    fn rekey_margin_and_fuzz() {
        let fx = Fx::new();
        let errs = fx.errors_with("rekey_margin = 60", "rekey_margin = 900");
        one(
            &errs,
            32,
            16,
            "ipsec.tunnels[1].rekey_margin",
            "rekey_margin (900 s) must be less than half of child_lifetime (1800 s)",
        );
        let errs = fx.errors_with("rekey_margin = 60", "rekey_margin = 0");
        one(
            &errs,
            32,
            16,
            "ipsec.tunnels[1].rekey_margin",
            "the rekey margin in seconds must be between 1 and 3600, found 0",
        );
        // The default margin against a short child_lifetime: at child_lifetime.
        let (from, to) = in_tunnel_1("child_lifetime = 540");
        let errs = fx.errors_with(from, &to);
        one(
            &errs,
            19,
            18,
            "ipsec.tunnels[0].child_lifetime",
            "rekey_margin (270 s, the default) must be less than half of child_lifetime (540 s)",
        );
        let (from, to) = in_tunnel_1("child_lifetime = 541");
        fx.parses_with(from, &to);
        let errs = fx.errors_with("rekey_fuzz = 50", "rekey_fuzz = 201");
        one(
            &errs,
            33,
            14,
            "ipsec.tunnels[1].rekey_fuzz",
            "the rekey fuzz in percent must be between 0 and 200, found 201",
        );
        let errs = fx.errors_with("rekey_fuzz = 50", "rekey_fuzz = -1");
        one(&errs, 33, 14, "ipsec.tunnels[1].rekey_fuzz", "found -1");
        let c = fx.parses_with("rekey_fuzz = 50", "rekey_fuzz = 0");
        assert_eq!(c.ipsec.tunnels[1].rekey_fuzz, 0);
    }

    #[test]
    fn dead_peer_detection() {
        let fx = Fx::new();
        let errs = fx.errors_with("dpd_timeout = 20", "dpd_timeout = 5");
        one(
            &errs,
            35,
            15,
            "ipsec.tunnels[1].dpd_timeout",
            "dpd_timeout (5 s) must be more than dpd_interval (5 s)",
        );
        let errs = fx.errors_with("dpd_interval = 5", "dpd_interval = 0");
        one(
            &errs,
            34,
            16,
            "ipsec.tunnels[1].dpd_interval",
            "the DPD interval in seconds must be between 1 and 3600, found 0",
        );
        let errs = fx.errors_with("dpd_interval = 5", "dpd_interval = 3601");
        one(&errs, 34, 16, "ipsec.tunnels[1].dpd_interval", "found 3601");
        let errs = fx.errors_with("dpd_timeout = 20", "dpd_timeout = 86401");
        one(
            &errs,
            35,
            15,
            "ipsec.tunnels[1].dpd_timeout",
            "between 2 and 86400",
        );
        // The default timeout against a longer interval: at dpd_interval.
        let (from, to) = in_tunnel_1("dpd_interval = 30");
        let errs = fx.errors_with(from, &to);
        one(
            &errs,
            19,
            16,
            "ipsec.tunnels[0].dpd_interval",
            "dpd_timeout (30 s, the default) must be more than dpd_interval (30 s)",
        );
    }

    #[test]
    fn probe_keys() {
        let fx = Fx::new();
        // Defaults: probing on with an inside CIDR.
        let c = fx.parse(BASE).unwrap();
        let t = c.tunnel("aws-1").unwrap();
        assert_eq!(
            (
                t.probe_interval,
                t.probe_loss,
                t.probe_recover,
                t.probe_hold_down
            ),
            (secs(1), 3, 5, secs(10))
        );
        let c = fx.parses_with(
            "enabled = false",
            "enabled = false\nprobe_interval = 2\nprobe_loss = 4\nprobe_recover = 6\nprobe_hold_down = 0",
        );
        let t = &c.ipsec.tunnels[1];
        assert_eq!(
            (
                t.probe_interval,
                t.probe_loss,
                t.probe_recover,
                t.probe_hold_down
            ),
            (secs(2), 4, 6, secs(0))
        );
        // Above dpd_interval (5 s in tunnel 2): an error at probe_interval.
        let errs = fx.errors_with("enabled = false", "enabled = false\nprobe_interval = 7");
        one(
            &errs,
            44,
            18,
            "ipsec.tunnels[1].probe_interval",
            "probe_interval (7 s) must not exceed dpd_interval (5 s)",
        );
        // Without inside_cidr: nothing to probe.
        let errs = fx.errors_with("inside_cidr = \"169.254.11.0/30\"", "probe_interval = 2");
        one(
            &errs,
            38,
            18,
            "ipsec.tunnels[1].probe_interval",
            "probe_interval needs inside_cidr",
        );
        let errs = fx.errors_with("inside_cidr = \"169.254.11.0/30\"", "probe_loss = 2");
        one(
            &errs,
            38,
            14,
            "ipsec.tunnels[1].probe_loss",
            "probe_loss needs inside_cidr",
        );
        // ... but turning it off is fine.
        let c = fx.parses_with("inside_cidr = \"169.254.11.0/30\"", "probe_interval = 0");
        assert_eq!(c.ipsec.tunnels[1].probe_interval, secs(0));
        let errs = fx.errors_with("enabled = false", "enabled = false\nprobe_loss = 0");
        one(
            &errs,
            44,
            14,
            "ipsec.tunnels[1].probe_loss",
            "between 1 and 100, found 0",
        );
        let errs = fx.errors_with("enabled = false", "enabled = false\nprobe_interval = 61");
        one(&errs, 44, 18, "ipsec.tunnels[1].probe_interval", "found 61");
    }

    #[test]
    fn traffic_selectors() {
        let fx = Fx::new();
        let errs = fx.errors_with("local_ts = [\"172.16.0.0/16\"]", "local_ts = []");
        one(
            &errs,
            36,
            12,
            "ipsec.tunnels[1].local_ts",
            "the list of traffic selectors must not be empty",
        );
        let errs = fx.errors_with("[\"172.16.0.0/16\"]", "[\"172.16.0.1/16\"]");
        one(
            &errs,
            36,
            13,
            "ipsec.tunnels[1].local_ts[0]",
            "`172.16.0.1/16` has host bits set; did you mean \"172.16.0.0/16\"?",
        );
        let errs = fx.errors_with(
            "remote_ts = [\"10.0.0.0/16\"]",
            "remote_ts = [\"10.0.0.0/16\", \"vpc\"]",
        );
        one(
            &errs,
            37,
            29,
            "ipsec.tunnels[1].remote_ts[1]",
            "`vpc` is not a CIDR prefix",
        );
        let errs = fx.errors_with(
            "remote_ts = [\"10.0.0.0/16\"]",
            "remote_ts = \"10.0.0.0/16\"",
        );
        one(
            &errs,
            37,
            13,
            "ipsec.tunnels[1].remote_ts",
            "expected an array of CIDR prefix strings, found string",
        );
        let c = fx.parses_with(
            "remote_ts = [\"10.0.0.0/16\"]",
            "remote_ts = [\"10.0.0.0/16\", \"10.1.0.0/16\", \"fd00::/8\"]",
        );
        assert_eq!(c.ipsec.tunnels[1].remote_ts.len(), 3);
    }

    #[test]
    fn inside_cidrs() {
        let fx = Fx::new();
        let errs = fx.errors_with("\"169.254.11.0/30\"", "\"169.254.11.0/29\"");
        one(
            &errs,
            38,
            15,
            "ipsec.tunnels[1].inside_cidr",
            "169.254.11.0/29 is not a /30 inside 169.254.0.0/16",
        );
        let errs = fx.errors_with("\"169.254.11.0/30\"", "\"169.254.11.1/30\"");
        one(
            &errs,
            38,
            15,
            "ipsec.tunnels[1].inside_cidr",
            "host bits set; did you mean \"169.254.11.0/30\"?",
        );
        let errs = fx.errors_with("\"169.254.11.0/30\"", "\"fd00::/126\"");
        one(
            &errs,
            38,
            15,
            "ipsec.tunnels[1].inside_cidr",
            "fd00::/126 is not a /30 inside",
        );
        let errs = fx.errors_with("\"169.254.11.0/30\"", "\"169.254.10.0/30\"");
        one(
            &errs,
            38,
            15,
            "ipsec.tunnels[1].inside_cidr",
            "169.254.10.0/30 duplicates 169.254.10.0/30 (ipsec.tunnels[0].inside_cidr); \
             each tunnel needs its own inside CIDR",
        );
        // A LAN in link-local space clashes with an inside CIDR.
        let errs = fx.errors_with("[\"172.16.4.0/24\"]", "[\"169.254.11.0/24\"]");
        one(
            &errs,
            38,
            15,
            "ipsec.tunnels[1].inside_cidr",
            "169.254.11.0/30 overlaps 169.254.11.0/24 (gateway.lan_prefixes[0])",
        );
        // Optional.
        let c = fx.parses_with("inside_cidr = \"169.254.11.0/30\"\n", "");
        assert_eq!(c.ipsec.tunnels[1].inside_cidr, None);
        assert_eq!(c.ipsec.tunnels[1].local_inside(), None);
        assert_eq!(c.ipsec.tunnels[1].remote_inside(), None);
    }

    #[test]
    fn remote_and_local_addresses() {
        let fx = Fx::new();
        let errs = fx.errors_with("\"203.0.113.2\"", "\"203.0.113.1\"");
        one(
            &errs,
            23,
            18,
            "ipsec.tunnels[1].remote_address",
            "remote address 203.0.113.1 is also used by ipsec.tunnels[0] (`aws-1`)",
        );
        for (addr, served) in [
            ("10.0.5.5", "10.0.0.0/16 (wireguard.remote_prefixes[0])"),
            ("172.16.60.9", "172.16.60.0/24 (wireguard.address)"),
            ("172.16.4.1", "172.16.4.0/24 (gateway.lan_prefixes[0])"),
        ] {
            let errs = fx.errors_with("\"203.0.113.2\"", &format!("\"{addr}\""));
            one(
                &errs,
                23,
                18,
                "ipsec.tunnels[1].remote_address",
                &format!("{addr} is inside {served}, a prefix this gateway routes itself"),
            );
        }
        let errs = fx.errors_with("\"203.0.113.2\"", "\"vgw.amazonaws.com\"");
        one(
            &errs,
            23,
            18,
            "ipsec.tunnels[1].remote_address",
            "`vgw.amazonaws.com` is not an IP address",
        );
        let errs = fx.errors_with("\"203.0.113.2\"", "\"239.1.1.1\"");
        one(
            &errs,
            23,
            18,
            "ipsec.tunnels[1].remote_address",
            "239.1.1.1 is a multicast address, not the peer's outside address",
        );
        let errs = fx.errors_with("remote_address = \"203.0.113.2\"\n", "");
        one(
            &errs,
            21,
            1,
            "ipsec.tunnels[1].remote_address",
            "missing required key `remote_address` in [[ipsec.tunnels]] table ipsec.tunnels[1]",
        );
        let errs = fx.errors_with("\"192.168.1.10\"", "\"2001:db8::10\"");
        one(
            &errs,
            24,
            17,
            "ipsec.tunnels[1].local_address",
            "2001:db8::10 is an IPv6 address: IPsec tunnels run over IPv4 only (the IKE and ESP \
             sockets, UDP 500 and 4500, listen on 0.0.0.0)",
        );
        let errs = fx.errors_with("\"192.168.1.10\"", "\"0.0.0.0\"");
        one(
            &errs,
            24,
            17,
            "ipsec.tunnels[1].local_address",
            "0.0.0.0 is the unspecified address, not a local address to send from",
        );
        // IPv6 outside addresses are refused: the IKE and ESP sockets bind
        // 0.0.0.0 only.
        let errs = fx.errors_with("\"203.0.113.1\"", "\"2001:db8:a::1\"");
        assert!(
            errs.iter()
                .any(|e| e.field == "ipsec.tunnels[0].remote_address"
                    && e.message.starts_with(
                        "2001:db8:a::1 is an IPv6 address: IPsec tunnels run over IPv4 only"
                    )),
            "{errs:#?}"
        );
    }

    #[test]
    fn names_start_action_priority_replay_and_booleans() {
        let fx = Fx::new();
        let errs = fx.errors_with("name = \"aws-2\"", "name = \"aws-1\"");
        one(
            &errs,
            22,
            8,
            "ipsec.tunnels[1].name",
            "duplicate tunnel name `aws-1` (also ipsec.tunnels[0])",
        );
        for bad in ["", "aws 2", "aws/2", &"t".repeat(33)] {
            let errs = fx.errors_with("name = \"aws-2\"", &format!("name = \"{bad}\""));
            one(&errs, 22, 8, "ipsec.tunnels[1].name", "invalid tunnel name");
        }
        let c = fx.parses_with(
            "name = \"aws-2\"",
            &format!("name = \"{}\"", "t".repeat(32)),
        );
        assert_eq!(c.ipsec.tunnels[1].name.len(), 32);
        let errs = fx.errors_with("name = \"aws-1\"\n", "");
        one(
            &errs,
            15,
            1,
            "ipsec.tunnels[0].name",
            "missing required key `name`",
        );

        let errs = fx.errors_with("start_action = \"wait\"", "start_action = \"start\"");
        one(
            &errs,
            39,
            16,
            "ipsec.tunnels[1].start_action",
            "unknown start action `start`: use \"initiate\"",
        );
        let errs = fx.errors_with("priority = 200", "priority = -1");
        one(
            &errs,
            40,
            12,
            "ipsec.tunnels[1].priority",
            "the priority must be between 0 and 4294967295, found -1",
        );
        let c = fx.parses_with("priority = 200", "priority = 0");
        assert_eq!(c.ipsec.tunnels[1].priority, 0);

        let errs = fx.errors_with("replay_window = 2048", "replay_window = 4096");
        one(
            &errs,
            41,
            17,
            "ipsec.tunnels[1].replay_window",
            "the replay window in packets must be between 64 and 2048, found 4096",
        );
        let errs = fx.errors_with(
            "replay_window = 2048",
            "replay_window = 2048\nchild_lifetime_bytes = 4096",
        );
        one(
            &errs,
            42,
            24,
            "ipsec.tunnels[1].child_lifetime_bytes",
            "bytes, at least 1048576",
        );
        let ok = fx.parses_with(
            "replay_window = 2048",
            "replay_window = 2048\nchild_lifetime_bytes = 1073741824",
        );
        assert_eq!(ok.ipsec.tunnels[1].child_lifetime_bytes, Some(1 << 30));
        assert_eq!(ok.ipsec.tunnels[0].child_lifetime_bytes, None);
        let errs = fx.errors_with("replay_window = 512", "replay_window = 32");
        one(
            &errs,
            12,
            17,
            "ipsec.replay_window",
            "the replay window in packets must be between 64 and 2048, found 32",
        );
        let errs = fx.errors_with("nat_keepalive = 15", "nat_keepalive = 3601");
        one(
            &errs,
            13,
            17,
            "ipsec.nat_keepalive",
            "the NAT keepalive interval in seconds (0 = off) must be between 0 and 3600",
        );
        let errs = fx.errors_with("nat_keepalive = 15", "nat_keepalive = 15\ntcp_mss = 1500");
        one(
            &errs,
            14,
            11,
            "ipsec.tcp_mss",
            "the TCP MSS of SYNs through the tunnels, in bytes must be between 536 and 1460, \
             found 1500",
        );
        let errs = fx.errors_with(
            "nat_keepalive = 15",
            "nat_keepalive = 15\ntcp_mss = \"1379\"",
        );
        one(&errs, 14, 11, "ipsec.tcp_mss", "expected an integer");
        let errs = fx.errors_with("nat_keepalive = 15", "nat_keepalive = 15\ntunnel_mtu = 500");
        one(
            &errs,
            14,
            14,
            "ipsec.tunnel_mtu",
            "the largest inner packet of a tunnel, in bytes must be between 576 and 1446, found 500",
        );
        let c = fx.parses_with(
            "nat_keepalive = 15",
            "nat_keepalive = 15\ntcp_mss = 1359\ntunnel_mtu = 1399",
        );
        assert_eq!((c.ipsec.tcp_mss, c.ipsec.tunnel_mtu), (1359, Some(1399)));
        let errs = fx.errors_with("force_encap = true", "force_encap = \"yes\"");
        one(
            &errs,
            42,
            15,
            "ipsec.tunnels[1].force_encap",
            "expected a boolean (true or false), found string",
        );
        let errs = fx.errors_with("enabled = false", "enabled = 0");
        one(
            &errs,
            43,
            11,
            "ipsec.tunnels[1].enabled",
            "expected a boolean (true or false), found integer",
        );
    }

    #[test]
    fn structure_and_unknown_keys() {
        let fx = Fx::new();
        let errs = fx.errors_with("enabled = false", "enabled = false\nmtu = 1400");
        one(
            &errs,
            44,
            1,
            "ipsec.tunnels[1].mtu",
            "unknown key `mtu` in [[ipsec.tunnels]] table ipsec.tunnels[1]; allowed keys: name, \
             remote_address, local_address, local_id, remote_id, psk_file, ike_proposals, \
             esp_proposals, ike_lifetime, child_lifetime, rekey_margin, rekey_fuzz, dpd_interval, \
             dpd_timeout, local_ts, remote_ts, inside_cidr, start_action, priority, \
             replay_window, child_lifetime_bytes, force_encap, probe_interval, probe_loss, \
             probe_recover, probe_hold_down, enabled",
        );
        let errs = fx.errors_with(
            "nat_keepalive = 15",
            "nat_keepalive = 15\nmode = \"tunnel\"",
        );
        one(
            &errs,
            14,
            1,
            "ipsec.mode",
            "unknown key `mode` in [ipsec]; allowed keys: replay_window, nat_keepalive, tcp_mss, \
             tunnel_mtu, tunnels",
        );
        let end = BASE.find("[ipsec]").unwrap();
        let errs = fx
            .parse(&format!("ipsec = 5\n{}", &BASE[..end]))
            .unwrap_err()
            .0;
        one(
            &errs,
            1,
            9,
            "ipsec",
            "expected a table ([ipsec]), found integer",
        );
        let errs = fx
            .parse(&format!("{}[ipsec]\ntunnels = 3\n", &BASE[..end]))
            .unwrap_err()
            .0;
        one(
            &errs,
            12,
            11,
            "ipsec.tunnels",
            "expected an array of tables ([[ipsec.tunnels]]), found integer",
        );
        // Inline tables work too; other elements are refused.
        let inline = "[ipsec]\ntunnels = [{ name = \"t\", remote_address = \"203.0.113.9\", psk_file = \"aws-1.psk\" }, 5]\n";
        let errs = fx
            .parse(&format!("{}{inline}", &BASE[..end]))
            .unwrap_err()
            .0;
        one(
            &errs,
            12,
            84,
            "ipsec.tunnels[1]",
            "expected a table, found integer",
        );
        let c = fx
            .parse(&format!("{}{}", &BASE[..end], inline.replace(", 5]", "]")))
            .unwrap();
        assert_eq!(c.ipsec.tunnels[0].name, "t");
        assert_eq!(c.ipsec.tunnels[0].replay_window, 1024);
    }

    #[test]
    fn all_errors_are_collected_and_sorted() {
        let fx = Fx::new();
        let text = BASE
            .replace("name = \"gw\"", "name = \"\"")
            .replace("replay_window = 512", "replay_window = 1")
            .replace("\"203.0.113.2\"", "\"203.0.113.1\"")
            .replace("start_action = \"wait\"", "start_action = \"later\"");
        let errs = fx.parse(&text).unwrap_err();
        let located: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect();
        assert_eq!(
            located,
            vec![
                (2, 8, "gateway.name"),
                (12, 17, "ipsec.replay_window"),
                (23, 18, "ipsec.tunnels[1].remote_address"),
                (39, 16, "ipsec.tunnels[1].start_action"),
            ]
        );
    }

    /// `configs/gateway.toml` with its `[ipsec]` example and
    /// `gateway.public_address` uncommented: the lines from `# [ipsec]` up to
    /// the blank line before the peers' example lose one `# `.
    fn seed_with_example_tunnels() -> String {
        let seed = include_str!("../../../configs/gateway.toml");
        let seed = seed.replace(
            "# public_address = \"198.51.100.10\"",
            "public_address = \"198.51.100.10\"",
        );
        let start = seed.find("\n# [ipsec]\n").expect("the [ipsec] example") + 1;
        let end = seed[start..]
            .find("\n\n")
            .map(|i| start + i)
            .expect("a blank line after the example");
        let example: Vec<&str> = seed[start..end]
            .lines()
            .map(|l| match l {
                "#" => "",
                _ => l.strip_prefix("# ").expect("a commented line"),
            })
            .collect();
        format!("{}{}{}", &seed[..start], example.join("\n"), &seed[end..])
    }

    #[test]
    fn seed_example_tunnels_parse() {
        let dir = TempDir::new();
        let d = dir.path();
        let path = d.join("gateway.toml");
        write_secret_file(
            &d.join("wg.key"),
            generate_private_key().to_string().as_bytes(),
        )
        .unwrap();
        for name in ["aws-1", "aws-2"] {
            write_secret_file(
                &d.join(format!("ipsec/{name}.psk")),
                format!("{PSK}\n").as_bytes(),
            )
            .unwrap();
        }
        let text = seed_with_example_tunnels();
        assert!(
            text.contains("\n[[ipsec.tunnels]]\nname = \"aws-1\""),
            "{text}"
        );
        fs::write(&path, &text).unwrap();
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            c.gateway.public_address,
            Some("198.51.100.10".parse().unwrap())
        );
        assert_eq!(
            c.ipsec,
            IpsecConfig {
                tunnels: c.ipsec.tunnels.clone(),
                ..IpsecConfig::default()
            }
        );
        assert_eq!(c.ipsec.tunnels.len(), 2);
        let [one, two] = &c.ipsec.tunnels[..] else {
            unreachable!()
        };
        // The first example spells out every default: it equals the second
        // (which relies on them) but for its own name, addresses and priority.
        assert_eq!(one.name, "aws-1");
        assert_eq!(one.psk_file, d.join("ipsec/aws-1.psk"));
        assert_eq!(
            one.local_id,
            Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10))
        );
        assert_eq!(one.local_inside(), Some(Ipv4Addr::new(169, 254, 10, 2)));
        assert_eq!(one.priority, 100);
        assert_eq!(two.priority, 200);
        assert_eq!(two.remote_inside(), Some(Ipv4Addr::new(169, 254, 11, 1)));
        let two_like_one = TunnelConfig {
            name: one.name.clone(),
            remote_address: one.remote_address,
            remote_id: one.remote_id.clone(),
            psk_file: one.psk_file.clone(),
            inside_cidr: one.inside_cidr,
            priority: one.priority,
            ..two.clone()
        };
        assert_eq!(&two_like_one, one);
        // The example without its tunnels' PSK files names them.
        fs::remove_file(d.join("ipsec/aws-2.psk")).unwrap();
        let errs = Config::load(&path).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "ipsec.tunnels[1].psk_file");
        assert!(errs[0].message.contains("aws-2.psk does not exist"));
    }

    #[test]
    fn default_proposals_fit_aws_defaults() {
        use crate::ike::crypto::Integ;
        use crate::ike::proposal::display_list;
        let ike = Proposal::parse_list(Protocol::Ike, DEFAULT_IKE_PROPOSALS).unwrap();
        let esp = Proposal::parse_list(Protocol::Esp, DEFAULT_ESP_PROPOSALS).unwrap();
        assert_eq!(display_list(&ike), DEFAULT_IKE_PROPOSALS);
        assert_eq!(display_list(&esp), DEFAULT_ESP_PROPOSALS);
        // AWS's default DH groups: phase 1 2 and 14-24, phase 2 (PFS, which
        // AWS always uses) 2, 5 and 14-24. No SHA1: AWS picks the lowest.
        for (list, extra) in [(&ike, 2), (&esp, 5)] {
            for p in list.iter() {
                assert!(!p.dh.is_empty(), "{p}");
                for g in &p.dh {
                    let n = g.transform_id();
                    assert!(n == 2 || n == extra || (14..=24).contains(&n), "{p}");
                }
                assert!(!p.integ.contains(&Integ::HmacSha1_96), "{p}");
            }
        }
    }
}
