//! The renderer against a status built the way `wgctl status --json` has it,
//! and the shipped dashboard and alert rules against the families.

use super::*;
use serde_json::json;
use std::collections::BTreeSet;

/// A status with one laptop, two tunnels (one up and carrying), the AWS
/// sync with a disagreement, firewall counters and dnsmasq running.
fn sample() -> GatewayStatus {
    let counters = json!({"packets_out": 10, "bytes_out": 1000, "packets_in": 7,
        "bytes_in": 700, "replayed": 2, "integrity_failed": 3, "bad_trailer": 1});
    let tunnel = |name: &str, ip: &str, state: &str, carrying: bool, prio: u32| {
        json!({"name": name, "state": state, "carrying": carrying, "priority": prio,
            "local": null, "remote": format!("{ip}:4500"), "ike_spis": null, "ike_suite": null,
            "nat_t": true, "local_behind_nat": true, "established_secs": 120,
            "last_rekey_secs": null, "last_dpd_answer_secs": 3, "last_error": null,
            "children": [], "totals": counters, "inner_mtu": 1438,
            "events": {"ike_established": 2, "ike_rekeys": 1, "child_rekeys": 4,
                "dpd_answers": 9, "peer_unresponsive": 1}})
    };
    // aws-1 is probed (healthy) and took part in a switch
    let mut aws1 = tunnel("aws-1", "203.0.113.10", "up", true, 100);
    aws1["probe"] = json!({
        "health": "healthy", "local": "169.254.10.2", "remote": "169.254.10.1",
        "interval_ms": 1000, "rtt_last_ms": 21.5, "rtt_avg_ms": 20.25,
        "loss_percent": 12.5, "window": 40, "sent": 100, "answered": 80, "lost": 19,
        "lost_in_a_row": 0, "answered_in_a_row": 6, "unanswered": false, "excused": 2,
        "last_esp_in_secs": 1, "hold_down_left_secs": null, "degraded_count": 3,
        "skipped": null});
    aws1["switches_away"] = json!(3);
    aws1["switches_to"] = json!(4);
    aws1["last_switch"] = json!({"secs_ago": 100, "at_unix": 1_764_900_000u64,
        "from": "aws-2", "to": "aws-1", "reason": "aws-1: probes answered again"});
    let v = json!({
        "name": "gw-office",
        "public_key": "GWKEY=",
        "listen_port": 51821,
        "tun_name": "ipiece0",
        "address": "172.16.60.1/24",
        "uptime_secs": 3600,
        "peers": [{
            "name": "alice", "public_key": "QUxJQ0U=", "has_psk": false,
            "endpoint": "198.51.100.10:40000", "allowed_ips": ["172.16.60.2/32"],
            "gateway_keepalive": 0, "last_handshake_unix": [1764900000, 500000000],
            "last_handshake_age_secs": 12.0, "session": true, "rx_bytes": 123456,
            "tx_bytes": 654321, "rx_payload_bytes": 100000, "tx_payload_bytes": 600000,
            "loss": 0.0, "rtt_ms": 4,
            "counters": {"rx_not_allowed": 5, "rx_invalid": 6, "tx_no_endpoint": 7,
                "handshakes": 3, "rx_wire_bytes": 123456, "tx_wire_bytes": 654321}
        }, {
            "name": "bob", "public_key": "Qk9C", "has_psk": true, "endpoint": null,
            "allowed_ips": ["172.16.60.3/32"], "gateway_keepalive": 0,
            "last_handshake_unix": null, "last_handshake_age_secs": null, "session": false,
            "rx_bytes": 0, "tx_bytes": 0, "rx_payload_bytes": 0, "tx_payload_bytes": 0,
            "loss": 0.0, "rtt_ms": null,
            "counters": {"rx_not_allowed": 0, "rx_invalid": 0, "tx_no_endpoint": 0,
                "handshakes": 0, "rx_wire_bytes": 0, "tx_wire_bytes": 0}
        }, {
            "name": "office2", "public_key": "T0ZGSUNF", "has_psk": false,
            "endpoint": "198.51.100.7:51820", "configured_endpoint": "198.51.100.7:51820",
            "site": true, "allowed_ips": ["172.16.60.50/32"], "gateway_keepalive": 25,
            "last_handshake_unix": [1764900000, 0], "last_handshake_age_secs": 30.0,
            "session": true, "rx_bytes": 1000, "tx_bytes": 2000, "rx_payload_bytes": 0,
            "tx_payload_bytes": 0, "loss": 0.0, "rtt_ms": 2,
            "counters": {"rx_not_allowed": 0, "rx_invalid": 0, "tx_no_endpoint": 0,
                "handshakes": 1, "rx_wire_bytes": 1000, "tx_wire_bytes": 2000}
        }],
        "wireguard": {"rx_malformed": 11, "rx_unknown_peer": 12, "rx_handshake_refused": 13,
            "cookies_sent": 14, "rx_handshake_limited": 15, "rx_handshake_processed": 16},
        "counters": {"udp_rx": 21, "tun_rx": 22, "tun_tx": 23, "remote_unrouted": 24,
            "esp_tx": 25, "esp_rx": 26, "tun_no_route": 27, "mss_clamped": 28,
            "fragmented": 29, "frag_needed_sent": 30, "too_big_dropped": 31},
        "tunnels": [aws1,
                    tunnel("aws-2", "203.0.113.11", "connecting", false, 200)],
        "aws": {"vpn_connection_id": "vpn-0a3c5e7f9b1d2e4f6", "region": "eu-central-1",
            "sync_interval_secs": 300, "last_sync_secs": 12, "last_result": "failed",
            "last_applied": [], "last_error": "throttled", "consecutive_failures": 2,
            "next_sync_secs": 60, "conflicts": ["x"], "stale": ["a", "b"],
            "telemetry_age_secs": 12,
            "tunnels": [{"outside_ip": "203.0.113.10", "tunnel": "aws-1", "aws_status": "UP",
                    "aws_message": "", "aws_last_change": null, "ipiece_state": "up",
                    "disagree_secs": null, "warning": null},
                {"outside_ip": "203.0.113.11", "tunnel": "aws-2", "aws_status": "UP",
                    "aws_message": "", "aws_last_change": null, "ipiece_state": "connecting",
                    "disagree_secs": 700, "warning": "AWS reports ..."}],
            "changes_applied_total": 4, "failed_rounds_total": 5},
        "firewall": {"enabled": true, "interfaces": null,
            "kernel": [{"name": "rule web", "packets": 41, "bytes": 4100},
                       {"name": "wan -> gateway", "packets": 42, "bytes": 4200}],
            "core": [{"name": "wg -> aws", "packets": 43, "bytes": 4300}],
            "last_error": "nft refused", "warnings": []},
        "lan": {"state": "running", "pid": 4242, "restarts": 0, "listen": ["172.16.4.1"],
            "dhcp": true, "dns": true, "leases": []}
    });
    serde_json::from_value(v).expect("sample status")
}

fn rendered(format: Format) -> String {
    let st = sample();
    render(
        &Snapshot {
            status: &st,
            socket_full_drops: 99,
            now_unix: 1_764_900_100.0,
        },
        format,
    )
}

/// The value of the sample line starting with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> f64 {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(lines.len(), 1, "{prefix}: {lines:?}\n{text}");
    lines[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", lines[0]))
}

#[test]
fn every_family_has_help_and_type_and_counters_end_in_total() {
    let text = rendered(Format::Prometheus);
    let mut helps = BTreeSet::new();
    let mut types = BTreeSet::new();
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("# HELP ") {
            helps.insert(r.split(' ').next().unwrap().to_owned());
        } else if let Some(r) = l.strip_prefix("# TYPE ") {
            let mut it = r.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                kind != "counter" || name.ends_with("_total"),
                "counter without _total: {l}"
            );
            assert!(matches!(kind, "counter" | "gauge"), "{l}");
            types.insert(name.to_owned());
        } else {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(types.contains(name), "sample before its TYPE: {l}");
        }
    }
    assert_eq!(helps, types);
    assert_eq!(
        types,
        family_names().into_iter().collect::<BTreeSet<_>>(),
        "family_names lists every family"
    );
    // Units in the names.
    for n in ["wireguard_sent_bytes_total", "ipiece_uptime_seconds"] {
        assert!(types.contains(n), "{n}");
    }
}

#[test]
fn peers_carry_the_wireguard_exporter_names_and_labels() {
    let text = rendered(Format::Prometheus);
    let alice = r#"{interface="ipiece0",peer="alice",friendly_name="alice",public_key="QUxJQ0U=",allowed_ips="172.16.60.2/32"}"#;
    assert_eq!(
        value(&text, &format!("wireguard_sent_bytes_total{alice}")),
        654321.0
    );
    assert_eq!(
        value(&text, &format!("wireguard_received_bytes_total{alice}")),
        123456.0
    );
    assert_eq!(
        value(&text, &format!("wireguard_latest_handshake_seconds{alice}")),
        1_764_900_000.5
    );
    assert_eq!(value(&text, &format!("ipiece_peer_up{alice}")), 1.0);
    assert_eq!(
        value(
            &text,
            &format!("ipiece_peer_payload_received_bytes_total{alice}")
        ),
        100000.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_peer_handshakes_total{alice}")),
        3.0
    );
    let dropped = alice.replace('}', r#",reason="invalid"}"#);
    assert_eq!(
        value(
            &text,
            &format!("ipiece_peer_dropped_packets_total{dropped}")
        ),
        6.0
    );
    // A laptop that never connected: handshake time 0, down.
    let bob = r#"{interface="ipiece0",peer="bob",friendly_name="bob",public_key="Qk9C",allowed_ips="172.16.60.3/32"}"#;
    assert_eq!(
        value(&text, &format!("wireguard_latest_handshake_seconds{bob}")),
        0.0
    );
    assert_eq!(value(&text, &format!("ipiece_peer_up{bob}")), 0.0);
    // A site peer says so, with its configured endpoint; laptops do not.
    let office = r#"{interface="ipiece0",peer="office2",friendly_name="office2",public_key="T0ZGSUNF",allowed_ips="172.16.60.50/32",endpoint="198.51.100.7:51820"}"#;
    assert_eq!(value(&text, &format!("ipiece_peer_site_info{office}")), 1.0);
    assert!(
        !text.contains("ipiece_peer_site_info{interface=\"ipiece0\",peer=\"alice\""),
        "{text}"
    );
}

#[test]
fn tunnel_state_is_one_series_per_state_with_one_set() {
    let text = rendered(Format::Prometheus);
    let states: Vec<&'static str> = TunnelState::iter().map(<&str>::from).collect();
    assert!(
        states.contains(&"admin_down") && states.contains(&"up"),
        "{states:?}"
    );
    for (tunnel, current) in [("aws-1", "up"), ("aws-2", "connecting")] {
        for s in &states {
            let v = value(
                &text,
                &format!("ipiece_tunnel_state{{tunnel=\"{tunnel}\",state=\"{s}\"}}"),
            );
            assert_eq!(v, f64::from(u8::from(*s == current)), "{tunnel} {s}");
        }
        // The label values are the status's (serde) names.
        let serde_name = serde_json::to_value(TunnelState::AdminDown).unwrap();
        assert_eq!(serde_name, "admin_down");
    }
    assert_eq!(
        value(&text, "ipiece_tunnel_carrying{tunnel=\"aws-1\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "ipiece_tunnel_carrying{tunnel=\"aws-2\"}"),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_tunnel_info{tunnel=\"aws-1\",remote=\"203.0.113.10\"}"
        ),
        1.0
    );
    let t = "{tunnel=\"aws-1\"";
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_esp_packets_total{t},direction=\"in\"}}")
        ),
        7.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_esp_bytes_total{t},direction=\"out\"}}")
        ),
        1000.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_esp_dropped_packets_total{t},reason=\"replay\"}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_esp_dropped_packets_total{t},reason=\"icv\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_rekeys_total{t},sa=\"child\"}}")
        ),
        4.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_dpd_answers_total{t}}}")),
        9.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_peer_unresponsive_total{t}}}")
        ),
        1.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_inner_mtu_bytes{t}}}")),
        1438.0
    );
}

#[test]
fn state_label_values_are_the_status_names_of_every_state() {
    // `wgctl status --json` and the metrics name each state the same way,
    // whatever variants TunnelState has (a state added later included).
    let mut n = 0;
    for s in TunnelState::iter() {
        let label: &'static str = s.into();
        assert_eq!(serde_json::to_value(s).unwrap(), label, "{s:?}");
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn aws_firewall_and_gateway_counters() {
    let text = rendered(Format::Prometheus);
    let v = "{vpn_connection_id=\"vpn-0a3c5e7f9b1d2e4f6\"";
    for (r, want) in [("in_step", 0.0), ("applied", 0.0), ("failed", 1.0)] {
        assert_eq!(
            value(
                &text,
                &format!("ipiece_aws_sync_last_result{v},result=\"{r}\"}}")
            ),
            want
        );
    }
    assert_eq!(
        value(&text, &format!("ipiece_aws_sync_consecutive_failures{v}}}")),
        2.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_aws_sync_failed_rounds_total{v}}}")),
        5.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_aws_sync_changes_applied_total{v}}}")
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_aws_sync_last_timestamp_seconds{v}}}")
        ),
        1_764_900_088.0
    );
    let t2 = format!("{v},outside_ip=\"203.0.113.11\",tunnel=\"aws-2\"}}");
    assert_eq!(value(&text, &format!("ipiece_aws_tunnel_up{t2}")), 1.0);
    assert_eq!(
        value(&text, &format!("ipiece_aws_tunnel_disagreement{t2}")),
        1.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_aws_tunnel_disagree_seconds{t2}")),
        700.0
    );
    let t1 = format!("{v},outside_ip=\"203.0.113.10\",tunnel=\"aws-1\"}}");
    assert_eq!(
        value(&text, &format!("ipiece_aws_tunnel_disagreement{t1}")),
        0.0
    );

    assert_eq!(
        value(
            &text,
            "ipiece_firewall_rule_packets_total{path=\"kernel\",rule=\"rule web\"}"
        ),
        41.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_firewall_rule_bytes_total{path=\"core\",rule=\"wg -> aws\"}"
        ),
        4300.0
    );
    assert_eq!(value(&text, "ipiece_firewall_reload_refused "), 1.0);
    assert_eq!(
        value(
            &text,
            "ipiece_dropped_packets_total{reason=\"socket_full\"}"
        ),
        99.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_dropped_packets_total{reason=\"remote_unrouted\"}"
        ),
        24.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_wireguard_dropped_datagrams_total{reason=\"handshake_limited\"}"
        ),
        15.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_packets_total{interface=\"esp\",direction=\"out\"}"
        ),
        25.0
    );
    assert_eq!(
        value(
            &text,
            "ipiece_build_info{version=\"0.1.0\",gateway=\"gw-office\"}"
        )
        .to_string(),
        "1"
    );
}

#[test]
fn without_aws_or_tunnels_their_families_have_no_series() {
    let mut st = sample();
    st.aws = None;
    st.tunnels.clear();
    let text = render(
        &Snapshot {
            status: &st,
            socket_full_drops: 0,
            now_unix: 0.0,
        },
        Format::Prometheus,
    );
    // Families without series are left out of the scrape (and still
    // listed as ipieced's).
    assert!(!text.contains("ipiece_aws_tunnel_up"), "{text}");
    assert!(!text.contains("ipiece_tunnel_state"), "{text}");
    assert!(text.contains("# TYPE wireguard_sent_bytes_total counter"));
    let names = family_names();
    assert!(names.iter().any(|n| n == "ipiece_aws_tunnel_up"));
    assert!(names.iter().any(|n| n == "ipiece_tunnel_state"));
}

#[test]
fn openmetrics_when_asked() {
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    let text = rendered(Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{}", &text[text.len() - 40..]);
    assert!(text.contains("# TYPE wireguard_sent_bytes counter"));
    assert!(text.contains("wireguard_sent_bytes_total{"));
    assert!(!rendered(Format::Prometheus).contains("# EOF"));
}

// ------------------------------------------------ dashboard and alert rules --

/// Metric names a PromQL expression refers to: identifiers that are not
/// functions, keywords, label names (inside `{}` or a `by`/`without`/`on`/
/// `ignoring`/`group_*` list), strings, durations or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    /// Aggregation operators (`sum by (l) (...)`: not always followed by
    /// a parenthesis).
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
    ];
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut brace = 0usize;
    let mut label_list = false;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < b.len() && b[i] as char != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => {
                brace += 1;
                i += 1;
            }
            '}' => {
                brace = brace.saturating_sub(1);
                i += 1;
            }
            '[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            ')' => {
                label_list = false;
                i += 1;
            }
            '$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                let call = j < b.len() && b[j] == b'(';
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    label_list = call && lower != "bool";
                } else if AGGREGATIONS.contains(&lower.as_str()) {
                    // Not a metric, whatever follows.
                } else if brace == 0 && !label_list && !call {
                    names.insert(word.to_owned());
                }
            }
            c if c.is_ascii_digit() => {
                // Numbers and durations (5m, 1e9, 0x1f).
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_promql_scanner_finds_metrics_only() {
    let e = r#"sum by (tunnel) (rate(ipiece_tunnel_esp_bytes_total{direction="in",tunnel=~"$tunnel"}[$__rate_interval])) * 8 > on(tunnel) group_left(state) ipiece_tunnel_state{state="up"} == bool 1 and time() - wireguard_latest_handshake_seconds > 3600"#;
    let got: Vec<String> = promql_metric_names(e).into_iter().collect();
    assert_eq!(
        got,
        [
            "ipiece_tunnel_esp_bytes_total",
            "ipiece_tunnel_state",
            "wireguard_latest_handshake_seconds"
        ]
    );
    assert!(promql_metric_names("up{job=\"x\"} unless absent(foo_total)").contains("foo_total"));
}

/// Every `expr` of a Grafana dashboard (panels, nested rows, templating).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => {
                        // Templating: label_values(metric, label).
                        if let Some(args) = s.strip_prefix("label_values(") {
                            out.push(args.split(',').next().unwrap_or("").to_owned());
                        }
                    }
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// Checks that every metric `exprs` name is one ipieced exports (or one of
/// `extra`, Prometheus's own series).
fn check_names(what: &str, exprs: &[String], extra: &[&str]) {
    let mut known: BTreeSet<String> = family_names().into_iter().collect();
    known.extend(extra.iter().map(|s| s.to_string()));
    assert!(!exprs.is_empty(), "{what}: no expressions found");
    for e in exprs {
        let names = promql_metric_names(e);
        assert!(!names.is_empty(), "{what}: no metric in {e}");
        for n in names {
            assert!(
                known.contains(&n),
                "{what}: `{n}` in `{e}` is not a family ipieced exports"
            );
        }
    }
}

#[test]
fn the_dashboard_names_only_exported_families() {
    let text = include_str!("../../configs/monitoring/ipiece-dashboard.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("the dashboard is JSON");
    assert!(
        v["panels"].as_array().is_some_and(|p| p.len() >= 4),
        "panels"
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&v, &mut exprs);
    check_names("ipiece-dashboard.json", &exprs, &[]);
    // It covers tunnels, throughput, laptops and AWS's telemetry.
    let all = exprs.join("\n");
    for family in [
        "ipiece_tunnel_state",
        "ipiece_tunnel_esp_bytes_total",
        "wireguard_received_bytes_total",
        "wireguard_latest_handshake_seconds",
        "ipiece_aws_tunnel_up",
    ] {
        assert!(all.contains(family), "the dashboard shows no {family}");
    }
}

#[test]
fn the_alert_rules_name_only_exported_families() {
    let text = include_str!("../../configs/monitoring/ipiece-alerts.yml");
    // `expr: ...` on one line, or `expr: |` followed by an indented block.
    let mut exprs = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if let Some(rest) = l.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" {
                let indent = lines[i].len() - l.len();
                let mut block = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push_str(lines[i].trim());
                    block.push(' ');
                    i += 1;
                }
                exprs.push(block);
                continue;
            }
            exprs.push(rest.trim_matches('\'').to_owned());
        }
        i += 1;
    }
    // `up` is the scrape's own series (the job being down).
    check_names("ipiece-alerts.yml", &exprs, &["up"]);
    assert!(exprs.len() >= 6, "{exprs:?}");
}

#[test]
fn lan_services_show_dnsmasq_up_its_restarts_and_the_leases() {
    let mut st = sample();
    st.lan = None;
    let text = render(
        &Snapshot {
            status: &st,
            socket_full_drops: 0,
            now_unix: 0.0,
        },
        Format::Prometheus,
    );
    assert!(!text.contains("ipiece_lan_dnsmasq_up"), "no [lan]: {text}");
    st.lan = Some(
        serde_json::from_value(json!({"state": "restarting", "restarts": 3,
            "restart_in_secs": 4, "last_error": "killed by SIGKILL",
            "listen": ["172.16.4.1"], "dhcp": true, "dns": true,
            "leases": [{"expires": 1764903600, "mac": "52:54:00:00:00:0a",
                "address": "172.16.4.20", "hostname": "build-vm", "client_id": null}]}))
        .expect("lan status"),
    );
    let text = render(
        &Snapshot {
            status: &st,
            socket_full_drops: 0,
            now_unix: 0.0,
        },
        Format::Prometheus,
    );
    assert_eq!(value(&text, "ipiece_lan_dnsmasq_up "), 0.0);
    assert_eq!(value(&text, "ipiece_lan_dnsmasq_restarts_total "), 3.0);
    assert_eq!(value(&text, "ipiece_lan_dhcp_leases "), 1.0);
    st.lan.as_mut().unwrap().state = "running".into();
    let text = render(
        &Snapshot {
            status: &st,
            socket_full_drops: 0,
            now_unix: 0.0,
        },
        Format::Prometheus,
    );
    assert_eq!(value(&text, "ipiece_lan_dnsmasq_up "), 1.0);
}

#[test]
fn probe_families_per_tunnel() {
    let mut st = sample();
    st.tunnels[0].state = TunnelState::Degraded;
    if let Some(p) = st.tunnels[0].probe.as_mut() {
        p.health = crate::ipsec::probe::Health::Recovering;
    }
    let text = render(
        &Snapshot {
            status: &st,
            socket_full_drops: 0,
            now_unix: 1_764_900_100.0,
        },
        Format::Prometheus,
    );
    let t = "{tunnel=\"aws-1\"";
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_probe_rtt_seconds{t}}}")),
        0.0215
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_probe_rtt_average_seconds{t}}}")
        ),
        0.02025
    );
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_probe_loss_ratio{t}}}")),
        0.125
    );
    for (health, v) in [("healthy", 0.0), ("degraded", 0.0), ("recovering", 1.0)] {
        assert_eq!(
            value(
                &text,
                &format!("ipiece_tunnel_probe_health{t},health=\"{health}\"}}")
            ),
            v
        );
    }
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_state{t},state=\"degraded\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_probe_unanswered{t}}}")),
        0.0
    );
    for (result, v) in [
        ("sent", 100.0),
        ("answered", 80.0),
        ("lost", 19.0),
        ("excused", 2.0),
    ] {
        assert_eq!(
            value(
                &text,
                &format!("ipiece_tunnel_probes_total{t},result=\"{result}\"}}")
            ),
            v
        );
    }
    assert_eq!(
        value(&text, &format!("ipiece_tunnel_degradations_total{t}}}")),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_switches_total{t},direction=\"away\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_switches_total{t},direction=\"to\"}}")
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            &format!("ipiece_tunnel_last_switch_timestamp_seconds{t}}}")
        ),
        1_764_900_000.0
    );
    // aws-2 is not probed: no probe series, but its switches (none)
    assert!(
        !text.contains("ipiece_tunnel_probe_rtt_seconds{tunnel=\"aws-2\"")
            && !text.contains("ipiece_tunnel_probe_loss_ratio{tunnel=\"aws-2\""),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "ipiece_tunnel_switches_total{tunnel=\"aws-2\",direction=\"away\"}"
        ),
        0.0
    );
}
