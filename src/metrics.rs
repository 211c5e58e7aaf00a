//! Prometheus metrics, the part without I/O: a [`Snapshot`] of the status
//! `wgctl status --json` serves (peers, tunnels, AWS sync, firewall
//! counters, gateway counters) rendered into the Prometheus text format
//! (0.0.4) or OpenMetrics text by `prometheus-client`.
//!
//! The HTTP listener that serves it is `dataplane::metrics`; the event loop
//! takes the snapshot (as for `wgctl status`) and this module renders it.
//!
//! Conventions: HELP and TYPE on every family (`prometheus-client` writes
//! them, also for a family without series), units in the names
//! (`_bytes`, `_seconds`, `_packets`), counters end in `_total`. Per-peer
//! families keep the names and labels of the common WireGuard exporter
//! (MindFlavor's `prometheus_wireguard_exporter`: `interface`,
//! `public_key`, `allowed_ips`, `friendly_name`), plus `peer` (the name in
//! `gateway.toml`). Per-tunnel families carry the label `tunnel`; state
//! families are one series per state, value 1 for the current one, over
//! every [`TunnelState`] variant, so a state added to the core appears here
//! without a change.

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;
use strum::IntoEnumIterator;

use crate::gateway::GatewayStatus;
use crate::ipsec::probe::Health;
use crate::ipsec::TunnelState;
use crate::wg::PeerStatus;

/// `Content-Type` of the Prometheus text format (0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text (1.0.0).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The text formats a scrape may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (what `promtool check metrics`
    /// reads; the default).
    Prometheus,
    /// OpenMetrics text 1.0.0, when the scraper's `Accept` header asks for
    /// `application/openmetrics-text` (Prometheus does).
    OpenMetrics,
}

impl Format {
    /// The format an HTTP `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// What one scrape shows: the gateway's status (with the AWS and firewall
/// parts the shell fills in) and what only the shell counts.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// The status, as `wgctl status --json` serves it.
    pub status: &'a GatewayStatus,
    /// Datagrams and TUN packets dropped because a socket or the TUN had
    /// no room (the shell's count).
    pub socket_full_drops: u64,
    /// The wall clock, Unix seconds (for the timestamps of events the
    /// status gives as ages).
    pub now_unix: f64,
}

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Every family, registered once per scrape and filled from a snapshot.
struct Families {
    registry: Registry,
    names: Vec<String>,
    // build and process
    build_info: Gauges,
    uptime: Gauges,
    // per peer
    peer_sent: Counters,
    peer_received: Counters,
    peer_handshake: FloatGauges,
    peer_up: Gauges,
    peer_payload_sent: Counters,
    peer_payload_received: Counters,
    peer_handshakes: Counters,
    peer_dropped: Counters,
    peer_site_info: Gauges,
    // per tunnel
    tunnel_info: Gauges,
    tunnel_state: Gauges,
    tunnel_carrying: Gauges,
    tunnel_priority: Gauges,
    tunnel_ike_age: Gauges,
    tunnel_child_sas: Gauges,
    tunnel_inner_mtu: Gauges,
    tunnel_esp_packets: Counters,
    tunnel_esp_bytes: Counters,
    tunnel_esp_dropped: Counters,
    tunnel_ike_established: Counters,
    tunnel_rekeys: Counters,
    tunnel_dpd_answers: Counters,
    tunnel_peer_unresponsive: Counters,
    // per tunnel: the health probes
    tunnel_probe_rtt: FloatGauges,
    tunnel_probe_rtt_avg: FloatGauges,
    tunnel_probe_loss: FloatGauges,
    tunnel_probe_health: Gauges,
    tunnel_probe_unanswered: Gauges,
    tunnel_probes: Counters,
    tunnel_degradations: Counters,
    tunnel_switches: Counters,
    tunnel_last_switch: FloatGauges,
    // AWS sync and telemetry
    aws_sync_info: Gauges,
    aws_sync_last_result: Gauges,
    aws_sync_last: FloatGauges,
    aws_sync_failures_in_row: Gauges,
    aws_sync_failed_rounds: Counters,
    aws_sync_changes: Counters,
    aws_sync_conflicts: Gauges,
    aws_sync_stale: Gauges,
    aws_tunnel_up: Gauges,
    aws_tunnel_disagreement: Gauges,
    aws_tunnel_disagree_seconds: Gauges,
    // firewall
    fw_enabled: Gauges,
    fw_reload_refused: Gauges,
    fw_rule_packets: Counters,
    fw_rule_bytes: Counters,
    // gateway and WireGuard counters
    gw_packets: Counters,
    gw_dropped: Counters,
    gw_mss_clamped: Counters,
    gw_fragmented: Counters,
    gw_frag_needed: Counters,
    wg_dropped: Counters,
    wg_cookies: Counters,
    wg_handshakes_processed: Counters,
    // LAN services (dnsmasq)
    lan_dnsmasq_up: Gauges,
    lan_dnsmasq_restarts: Counters,
    lan_dhcp_leases: Gauges,
}

/// The one-hot values of the AWS sync's last result.
const AWS_RESULTS: [&str; 3] = ["in_step", "applied", "failed"];

/// The registry and the names registered in it (as exposed: counters with
/// `_total`).
#[derive(Default)]
struct Reg {
    registry: Registry,
    names: Vec<String>,
}

/// Registers `metric` under `name` with `help` and returns it.
fn reg<M: Metric + Clone>(r: &mut Reg, name: &str, help: &str, metric: M) -> M {
    r.names.push(match metric.metric_type() {
        MetricType::Counter => format!("{name}_total"),
        _ => name.to_owned(),
    });
    r.registry.register(name, help, metric.clone());
    metric
}

impl Families {
    fn new() -> Families {
        let mut registered = Reg::default();
        let r = &mut registered;
        let mut f = Families {
            registry: Registry::default(),
            names: Vec::new(),
            build_info: reg(r, "ipiece_build_info", "ipiece's version and the gateway's name; always 1", Gauges::default()),
            uptime: reg(r, "ipiece_uptime_seconds", "Seconds since ipieced started", Gauges::default()),

            peer_sent: reg(r, "wireguard_sent_bytes", "Bytes sent to the peer (authenticated WireGuard datagrams with overhead and handshakes, as wg show counts)", Counters::default()),
            peer_received: reg(r, "wireguard_received_bytes", "Bytes received from the peer (authenticated WireGuard datagrams with overhead and handshakes, as wg show counts)", Counters::default()),
            peer_handshake: reg(r, "wireguard_latest_handshake_seconds", "Unix time of the peer's last completed handshake; 0 when none since ipieced started", FloatGauges::default()),
            peer_up: reg(r, "ipiece_peer_up", "1 when the peer has an established WireGuard session", Gauges::default()),
            peer_payload_sent: reg(r, "ipiece_peer_payload_sent_bytes", "Inner IP bytes sent to the peer, before encryption", Counters::default()),
            peer_payload_received: reg(r, "ipiece_peer_payload_received_bytes", "Inner IP bytes received from the peer, after decryption", Counters::default()),
            peer_handshakes: reg(r, "ipiece_peer_handshakes", "Handshakes completed with the peer", Counters::default()),
            peer_dropped: reg(r, "ipiece_peer_dropped_packets", "Packets of the peer dropped, by reason (not_allowed: inner source outside its allowed IPs; invalid: failed to decrypt or replayed; no_endpoint: outbound with no known endpoint)", Counters::default()),
            peer_site_info: reg(r, "ipiece_peer_site_info", "A site peer (the gateway initiates its handshakes and keeps its session up) and its configured endpoint; always 1, absent for laptops", Gauges::default()),

            tunnel_info: reg(r, "ipiece_tunnel_info", "An IPsec tunnel and its peer's outside address; always 1", Gauges::default()),
            tunnel_state: reg(r, "ipiece_tunnel_state", "1 for the tunnel's current state, 0 for the others", Gauges::default()),
            tunnel_carrying: reg(r, "ipiece_tunnel_carrying", "1 when the tunnel carries outbound traffic", Gauges::default()),
            tunnel_priority: reg(r, "ipiece_tunnel_priority", "The tunnel's priority (the healthy tunnel with the lowest carries outbound traffic)", Gauges::default()),
            tunnel_ike_age: reg(r, "ipiece_tunnel_ike_sa_age_seconds", "Seconds since the tunnel's IKE SA came up (absent without one)", Gauges::default()),
            tunnel_child_sas: reg(r, "ipiece_tunnel_child_sas", "CHILD SAs installed on the tunnel (2 for a while after a rekey)", Gauges::default()),
            tunnel_inner_mtu: reg(r, "ipiece_tunnel_inner_mtu_bytes", "Largest inner packet the tunnel's active CHILD SA seals (absent without one)", Gauges::default()),
            tunnel_esp_packets: reg(r, "ipiece_tunnel_esp_packets", "ESP packets through the tunnel, by direction (in: opened, out: sealed)", Counters::default()),
            tunnel_esp_bytes: reg(r, "ipiece_tunnel_esp_bytes", "Inner bytes through the tunnel, by direction (in: opened, out: sealed)", Counters::default()),
            tunnel_esp_dropped: reg(r, "ipiece_tunnel_esp_dropped_packets", "Inbound ESP packets refused, by reason (replay: outside the anti-replay window or seen; icv: integrity check failed; trailer: bad padding after a valid ICV)", Counters::default()),
            tunnel_ike_established: reg(r, "ipiece_tunnel_ike_established", "IKE SAs established on the tunnel (the first and every reconnection)", Counters::default()),
            tunnel_rekeys: reg(r, "ipiece_tunnel_rekeys", "Rekeys of the tunnel's SAs, by SA (ike, child)", Counters::default()),
            tunnel_dpd_answers: reg(r, "ipiece_tunnel_dpd_answers", "Liveness checks (DPD) the tunnel's peer answered", Counters::default()),
            tunnel_peer_unresponsive: reg(r, "ipiece_tunnel_peer_unresponsive", "IKE SAs of the tunnel closed because the peer stopped answering (DPD timeout)", Counters::default()),
            tunnel_probe_rtt: reg(r, "ipiece_tunnel_probe_rtt_seconds", "Round-trip time of the tunnel's last answered probe (ICMP echo to the peer's inside address through the tunnel); absent before the first answer", FloatGauges::default()),
            tunnel_probe_rtt_avg: reg(r, "ipiece_tunnel_probe_rtt_average_seconds", "Average round-trip time of the answered probes among the tunnel's last 60", FloatGauges::default()),
            tunnel_probe_loss: reg(r, "ipiece_tunnel_probe_loss_ratio", "Share of the tunnel's last 60 probes that went unanswered (0 to 1)", FloatGauges::default()),
            tunnel_probe_health: reg(r, "ipiece_tunnel_probe_health", "1 for the probes' current verdict (healthy; degraded: lost probes in a row; recovering: answered again, in its hold-down), 0 for the others", Gauges::default()),
            tunnel_probe_unanswered: reg(r, "ipiece_tunnel_probe_unanswered", "1 when the tunnel's peer answers none of its probes (not AWS, or ICMP dropped): the tunnel is judged by the ESP it receives", Gauges::default()),
            tunnel_probes: reg(r, "ipiece_tunnel_probes", "The tunnel's probes, by result (sent; answered; lost; excused: lost while the peer's ESP proved it alive)", Counters::default()),
            tunnel_degradations: reg(r, "ipiece_tunnel_degradations", "Times the tunnel was declared degraded by its probes", Counters::default()),
            tunnel_switches: reg(r, "ipiece_tunnel_switches", "Changes of the tunnel that carries outbound traffic, by direction (away: this tunnel stopped carrying; to: it started)", Counters::default()),
            tunnel_last_switch: reg(r, "ipiece_tunnel_last_switch_timestamp_seconds", "Unix time of the last change of the carrying tunnel this tunnel took part in", FloatGauges::default()),

            aws_sync_info: reg(r, "ipiece_aws_sync_info", "The VPN connection the daemon syncs, its region and interval; always 1", Gauges::default()),
            aws_sync_last_result: reg(r, "ipiece_aws_sync_last_result", "1 for the result of the last sync round (in_step, applied, failed), 0 for the others", Gauges::default()),
            aws_sync_last: reg(r, "ipiece_aws_sync_last_timestamp_seconds", "Unix time the last sync round ended", FloatGauges::default()),
            aws_sync_failures_in_row: reg(r, "ipiece_aws_sync_consecutive_failures", "Sync rounds failed in a row", Gauges::default()),
            aws_sync_failed_rounds: reg(r, "ipiece_aws_sync_failed_rounds", "Sync rounds that failed", Counters::default()),
            aws_sync_changes: reg(r, "ipiece_aws_sync_changes_applied", "Changes the sync applied at AWS (routes created, propagation enabled)", Counters::default()),
            aws_sync_conflicts: reg(r, "ipiece_aws_sync_conflicts", "Desired prefixes routed to another target at AWS (left alone)", Gauges::default()),
            aws_sync_stale: reg(r, "ipiece_aws_sync_stale_routes", "Routes to the VGW no longer in the file (wgctl aws sync --prune)", Gauges::default()),
            aws_tunnel_up: reg(r, "ipiece_aws_tunnel_up", "AWS's view of the tunnel (VgwTelemetry): 1 UP, 0 DOWN", Gauges::default()),
            aws_tunnel_disagreement: reg(r, "ipiece_aws_tunnel_disagreement", "1 when AWS and ipiece have disagreed on the tunnel (one up, the other not) for longer than two sync intervals", Gauges::default()),
            aws_tunnel_disagree_seconds: reg(r, "ipiece_aws_tunnel_disagree_seconds", "Seconds AWS and ipiece have disagreed on the tunnel; 0 when they agree", Gauges::default()),

            fw_enabled: reg(r, "ipiece_firewall_enabled", "1 unless firewall.enabled = false", Gauges::default()),
            fw_reload_refused: reg(r, "ipiece_firewall_reload_refused", "1 while the last reload's firewall was refused (the previous ruleset is in force)", Gauges::default()),
            fw_rule_packets: reg(r, "ipiece_firewall_rule_packets", "Packets a firewall rule or default matched, by path (kernel: nftables; core: the laptop <-> VPC path)", Counters::default()),
            fw_rule_bytes: reg(r, "ipiece_firewall_rule_bytes", "Bytes a firewall rule or default matched, by path", Counters::default()),

            gw_packets: reg(r, "ipiece_packets", "Packets through the gateway, by interface (udp: datagrams on the WireGuard port; tun; esp) and direction", Counters::default()),
            gw_dropped: reg(r, "ipiece_dropped_packets", "Packets the gateway dropped, by reason (remote_unrouted: no tunnel up; tun_no_route; too_big: too big and no ICMP error sent; socket_full: no room in a socket or the TUN)", Counters::default()),
            gw_mss_clamped: reg(r, "ipiece_mss_clamped_packets", "TCP SYNs whose MSS option was lowered", Counters::default()),
            gw_fragmented: reg(r, "ipiece_fragmented_packets", "IPv4 packets fragmented before sealing", Counters::default()),
            gw_frag_needed: reg(r, "ipiece_frag_needed_sent_packets", "ICMP fragmentation-needed errors sent", Counters::default()),
            wg_dropped: reg(r, "ipiece_wireguard_dropped_datagrams", "WireGuard datagrams refused, by reason (malformed, unknown_peer, handshake_refused, handshake_limited)", Counters::default()),
            wg_cookies: reg(r, "ipiece_wireguard_cookies_sent", "Cookie replies sent under load", Counters::default()),
            wg_handshakes_processed: reg(r, "ipiece_wireguard_handshakes_processed", "Handshake messages that passed the MAC, load and per-source checks (each costs X25519 work)", Counters::default()),

            lan_dnsmasq_up: reg(r, "ipiece_lan_dnsmasq_up", "1 while dnsmasq (DHCP and DNS for [lan] and [dns]) runs; absent when neither is configured", Gauges::default()),
            lan_dnsmasq_restarts: reg(r, "ipiece_lan_dnsmasq_restarts", "Times dnsmasq was started again after it exited or failed to start", Counters::default()),
            lan_dhcp_leases: reg(r, "ipiece_lan_dhcp_leases", "DHCP leases in dnsmasq's lease file", Gauges::default()),
        };
        (f.registry, f.names) = (registered.registry, registered.names);
        f
    }

    fn fill(&self, s: &Snapshot<'_>) {
        let st = s.status;
        self.build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("gateway", st.name.clone()),
            ])
            .set(1);
        self.uptime
            .get_or_create(&Vec::new())
            .set(clamp(st.uptime_secs));
        for p in &st.peers {
            self.fill_peer(&st.tun_name, p);
        }
        self.fill_tunnels(st);
        for t in &st.tunnels {
            self.fill_probe(t, s.now_unix);
        }
        self.fill_aws(s);
        self.fill_firewall(st);
        self.fill_gateway(s);
        self.fill_lan(st);
    }

    fn fill_lan(&self, st: &GatewayStatus) {
        let Some(lan) = &st.lan else {
            return;
        };
        let none = Vec::new();
        self.lan_dnsmasq_up
            .get_or_create(&none)
            .set(i64::from(lan.state == "running"));
        self.lan_dnsmasq_restarts
            .get_or_create(&none)
            .inc_by(u64::from(lan.restarts));
        if lan.dhcp {
            self.lan_dhcp_leases
                .get_or_create(&none)
                .set(clamp(lan.leases.len() as u64));
        }
    }

    fn fill_peer(&self, interface: &str, p: &PeerStatus) {
        let allowed = p
            .allowed_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let l: Labels = vec![
            ("interface", interface.to_owned()),
            ("peer", p.name.clone()),
            ("friendly_name", p.name.clone()),
            ("public_key", p.public_key.clone()),
            ("allowed_ips", allowed),
        ];
        if let Some(ep) = p.configured_endpoint.filter(|_| p.site) {
            self.peer_site_info
                .get_or_create(&with(&l, "endpoint", &ep.to_string()))
                .set(1);
        }
        self.peer_sent.get_or_create(&l).inc_by(p.tx_bytes);
        self.peer_received.get_or_create(&l).inc_by(p.rx_bytes);
        let hs = p
            .last_handshake_unix
            .map_or(0.0, |(s, n)| s as f64 + f64::from(n) / 1e9);
        self.peer_handshake.get_or_create(&l).set(hs);
        self.peer_up.get_or_create(&l).set(i64::from(p.session));
        self.peer_payload_sent
            .get_or_create(&l)
            .inc_by(p.tx_payload_bytes);
        self.peer_payload_received
            .get_or_create(&l)
            .inc_by(p.rx_payload_bytes);
        self.peer_handshakes
            .get_or_create(&l)
            .inc_by(p.counters.handshakes);
        for (reason, v) in [
            ("not_allowed", p.counters.rx_not_allowed),
            ("invalid", p.counters.rx_invalid),
            ("no_endpoint", p.counters.tx_no_endpoint),
        ] {
            self.peer_dropped
                .get_or_create(&with(&l, "reason", reason))
                .inc_by(v);
        }
    }

    /// Per tunnel, label `tunnel` (the probes: [`Families::fill_probe`]); a
    /// new [`TunnelState`] variant needs nothing.
    fn fill_tunnels(&self, st: &GatewayStatus) {
        for t in &st.tunnels {
            let l: Labels = vec![("tunnel", t.name.clone())];
            self.tunnel_info
                .get_or_create(&with(&l, "remote", &t.remote.ip().to_string()))
                .set(1);
            for state in TunnelState::iter() {
                let name: &'static str = state.into();
                self.tunnel_state
                    .get_or_create(&with(&l, "state", name))
                    .set(i64::from(state == t.state));
            }
            self.tunnel_carrying
                .get_or_create(&l)
                .set(i64::from(t.carrying));
            self.tunnel_priority
                .get_or_create(&l)
                .set(i64::from(t.priority));
            if let Some(age) = t.established_secs {
                self.tunnel_ike_age.get_or_create(&l).set(clamp(age));
            }
            self.tunnel_child_sas
                .get_or_create(&l)
                .set(clamp(t.children.len() as u64));
            if let Some(mtu) = t.inner_mtu {
                self.tunnel_inner_mtu
                    .get_or_create(&l)
                    .set(clamp(mtu as u64));
            }
            let c = &t.totals;
            for (dir, packets, bytes) in [
                ("in", c.packets_in, c.bytes_in),
                ("out", c.packets_out, c.bytes_out),
            ] {
                let d = with(&l, "direction", dir);
                self.tunnel_esp_packets.get_or_create(&d).inc_by(packets);
                self.tunnel_esp_bytes.get_or_create(&d).inc_by(bytes);
            }
            for (reason, v) in [
                ("replay", c.replayed),
                ("icv", c.integrity_failed),
                ("trailer", c.bad_trailer),
            ] {
                self.tunnel_esp_dropped
                    .get_or_create(&with(&l, "reason", reason))
                    .inc_by(v);
            }
            let e = &t.events;
            self.tunnel_ike_established
                .get_or_create(&l)
                .inc_by(e.ike_established);
            for (sa, v) in [("ike", e.ike_rekeys), ("child", e.child_rekeys)] {
                self.tunnel_rekeys
                    .get_or_create(&with(&l, "sa", sa))
                    .inc_by(v);
            }
            self.tunnel_dpd_answers
                .get_or_create(&l)
                .inc_by(e.dpd_answers);
            self.tunnel_peer_unresponsive
                .get_or_create(&l)
                .inc_by(e.peer_unresponsive);
        }
    }

    /// A tunnel's probes and the switches it took part in (label `tunnel`);
    /// the probe families only for a probed tunnel, the RTT only once a
    /// probe was answered.
    fn fill_probe(&self, t: &crate::ipsec::TunnelStatus, now_unix: f64) {
        let l: Labels = vec![("tunnel", t.name.clone())];
        for (direction, v) in [("away", t.switches_away), ("to", t.switches_to)] {
            self.tunnel_switches
                .get_or_create(&with(&l, "direction", direction))
                .inc_by(v);
        }
        if let Some(s) = &t.last_switch {
            let at = s
                .at_unix
                .map_or(now_unix - s.secs_ago as f64, |at| at as f64);
            self.tunnel_last_switch.get_or_create(&l).set(at.floor());
        }
        let Some(p) = &t.probe else {
            return;
        };
        if let Some(ms) = p.rtt_last_ms {
            self.tunnel_probe_rtt.get_or_create(&l).set(ms / 1e3);
        }
        if let Some(ms) = p.rtt_avg_ms {
            self.tunnel_probe_rtt_avg.get_or_create(&l).set(ms / 1e3);
        }
        self.tunnel_probe_loss
            .get_or_create(&l)
            .set(p.loss_percent / 100.0);
        for health in Health::iter() {
            let name: &'static str = health.into();
            self.tunnel_probe_health
                .get_or_create(&with(&l, "health", name))
                .set(i64::from(health == p.health));
        }
        self.tunnel_probe_unanswered
            .get_or_create(&l)
            .set(i64::from(p.unanswered));
        for (result, v) in [
            ("sent", p.sent),
            ("answered", p.answered),
            ("lost", p.lost),
            ("excused", p.excused),
        ] {
            self.tunnel_probes
                .get_or_create(&with(&l, "result", result))
                .inc_by(v);
        }
        self.tunnel_degradations
            .get_or_create(&l)
            .inc_by(p.degraded_count);
    }

    fn fill_aws(&self, s: &Snapshot<'_>) {
        let Some(a) = &s.status.aws else {
            return;
        };
        let l: Labels = vec![("vpn_connection_id", a.vpn_connection_id.clone())];
        self.aws_sync_info
            .get_or_create(&vec![
                ("vpn_connection_id", a.vpn_connection_id.clone()),
                ("region", a.region.clone()),
                ("interval_seconds", a.sync_interval_secs.to_string()),
            ])
            .set(1);
        if let Some(result) = &a.last_result {
            let current = if result == "failed" {
                "failed"
            } else if result == "in step" {
                "in_step"
            } else {
                "applied"
            };
            for r in AWS_RESULTS {
                self.aws_sync_last_result
                    .get_or_create(&with(&l, "result", r))
                    .set(i64::from(r == current));
            }
        }
        if let Some(ago) = a.last_sync_secs {
            self.aws_sync_last
                .get_or_create(&l)
                .set((s.now_unix - ago as f64).floor());
        }
        self.aws_sync_failures_in_row
            .get_or_create(&l)
            .set(i64::from(a.consecutive_failures));
        self.aws_sync_failed_rounds
            .get_or_create(&l)
            .inc_by(a.failed_rounds_total);
        self.aws_sync_changes
            .get_or_create(&l)
            .inc_by(a.changes_applied_total);
        self.aws_sync_conflicts
            .get_or_create(&l)
            .set(clamp(a.conflicts.len() as u64));
        self.aws_sync_stale
            .get_or_create(&l)
            .set(clamp(a.stale.len() as u64));
        for t in &a.tunnels {
            let tl: Labels = vec![
                ("vpn_connection_id", a.vpn_connection_id.clone()),
                ("outside_ip", t.outside_ip.to_string()),
                ("tunnel", t.tunnel.clone().unwrap_or_default()),
            ];
            self.aws_tunnel_up
                .get_or_create(&tl)
                .set(i64::from(t.aws_status == "UP"));
            self.aws_tunnel_disagreement
                .get_or_create(&tl)
                .set(i64::from(t.warning.is_some()));
            self.aws_tunnel_disagree_seconds
                .get_or_create(&tl)
                .set(clamp(t.disagree_secs.unwrap_or(0)));
        }
    }

    fn fill_firewall(&self, st: &GatewayStatus) {
        let Some(fw) = &st.firewall else {
            return;
        };
        let none = Vec::new();
        self.fw_enabled
            .get_or_create(&none)
            .set(i64::from(fw.enabled));
        self.fw_reload_refused
            .get_or_create(&none)
            .set(i64::from(fw.last_error.is_some()));
        for (path, counters) in [("kernel", &fw.kernel), ("core", &fw.core)] {
            for c in counters {
                let l: Labels = vec![("path", path.to_owned()), ("rule", c.name.clone())];
                self.fw_rule_packets.get_or_create(&l).inc_by(c.packets);
                self.fw_rule_bytes.get_or_create(&l).inc_by(c.bytes);
            }
        }
    }

    fn fill_gateway(&self, s: &Snapshot<'_>) {
        let c = &s.status.counters;
        for (interface, direction, v) in [
            ("udp", "in", c.udp_rx),
            ("tun", "in", c.tun_rx),
            ("tun", "out", c.tun_tx),
            ("esp", "in", c.esp_rx),
            ("esp", "out", c.esp_tx),
        ] {
            self.gw_packets
                .get_or_create(&vec![
                    ("interface", interface.to_owned()),
                    ("direction", direction.to_owned()),
                ])
                .inc_by(v);
        }
        for (reason, v) in [
            ("remote_unrouted", c.remote_unrouted),
            ("tun_no_route", c.tun_no_route),
            ("too_big", c.too_big_dropped),
            ("socket_full", s.socket_full_drops),
        ] {
            self.gw_dropped
                .get_or_create(&vec![("reason", reason.to_owned())])
                .inc_by(v);
        }
        let none = Vec::new();
        self.gw_mss_clamped
            .get_or_create(&none)
            .inc_by(c.mss_clamped);
        self.gw_fragmented.get_or_create(&none).inc_by(c.fragmented);
        self.gw_frag_needed
            .get_or_create(&none)
            .inc_by(c.frag_needed_sent);
        let w = &s.status.wireguard;
        for (reason, v) in [
            ("malformed", w.rx_malformed),
            ("unknown_peer", w.rx_unknown_peer),
            ("handshake_refused", w.rx_handshake_refused),
            ("handshake_limited", w.rx_handshake_limited),
        ] {
            self.wg_dropped
                .get_or_create(&vec![("reason", reason.to_owned())])
                .inc_by(v);
        }
        self.wg_cookies.get_or_create(&none).inc_by(w.cookies_sent);
        self.wg_handshakes_processed
            .get_or_create(&none)
            .inc_by(w.rx_handshake_processed);
    }

    fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String does not fail.
        let _ = match format {
            Format::Prometheus => prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
        };
        out
    }
}

/// `l` plus one label.
fn with(l: &Labels, key: &'static str, value: &str) -> Labels {
    let mut v = l.clone();
    v.push((key, value.to_owned()));
    v
}

/// A u64 as a gauge value.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Renders `snapshot` in `format`.
pub fn render(snapshot: &Snapshot<'_>, format: Format) -> String {
    let f = Families::new();
    f.fill(snapshot);
    f.encode(format)
}

/// The name of every family ipieced exports (counters with their
/// `_total`, as their samples are named), whatever the status holds: a
/// family appears in a scrape once it has a series (the AWS families need
/// `aws.sync_interval`, the tunnel families a tunnel). For checking
/// dashboards and rules against the exporter.
pub fn family_names() -> Vec<String> {
    Families::new().names
}

#[cfg(test)]
mod tests;
