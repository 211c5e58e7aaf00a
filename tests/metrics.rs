//! Prometheus metrics (issue 11, points 2 and 3) against software nobody
//! here wrote: Debian's `promtool` and the `prometheus` server.
//!
//! - `promtool check metrics` passes on a real scrape of ipieced (both the
//!   Prometheus text and the OpenMetrics answer);
//! - a real Prometheus server, started by the test in the LAN host's
//!   namespace, scrapes ipieced across the firewall (the LAN reaches the
//!   gateway) while a wireguard-go laptop pings the VPC host through a
//!   strongSwan VGW; PromQL over its HTTP API returns the laptop's received
//!   bytes and the tunnel's state; every expression of the shipped dashboard
//!   parses and evaluates there;
//! - the same listener, on 0.0.0.0, is not reachable from the WAN (the
//!   firewall's input chain is default-deny), and `wgctl check` and the log
//!   carry the warning naming file:line:column;
//! - `promtool check rules` and `promtool test rules` pass on the shipped
//!   alert rules;
//! - a taken port stops the start (naming `metrics.listen`); a reload
//!   moves the listener and turns it off; `--log-format json`
//!   keeps its field names (timestamp, level, target, fields.message and the
//!   events' own fields) for Loki.
//!
//! Needs root, strongSwan with kernel-libipsec, wireguard-go and the
//! `prometheus` package (scripts/test.sh installs them).

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PSK: &str = "ipiece.metrics.tun1.0123456789";
const TUN: &str = "aws-1";
const VGW_CONN: &str = "aws-vgw-tun1";
const METRICS_PORT: u16 = 9586;
const PROM_LISTEN: &str = "127.0.0.1:9090";
const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/monitoring");

fn have(tool: &str) -> bool {
    run("sh", &["-c", &format!("command -v {tool}")]).ok()
}

fn need_prometheus(test: &str) {
    for tool in ["promtool", "prometheus"] {
        assert!(
            have(tool),
            "{test}: {tool} is not installed (Debian package prometheus; scripts/test.sh installs it)"
        );
    }
}

// -------------------------------------------------------------------- http --

/// `GET path` on `addr` from inside `ns` (HTTP/1.0: no chunked answers);
/// the status code and the body.
fn http_get(
    ns: &Netns,
    addr: &str,
    path: &str,
    accept: Option<&str>,
) -> Result<(u16, String), String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n");
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| format!("read {addr}: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP head: {text:?}"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status: {head}"))?;
        Ok((code, body.to_owned()))
    })
}

/// Percent-encodes a query parameter.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A scrape of ipieced's `/metrics` from `ns`; panics unless it is a 200.
fn scrape(ns: &Netns, addr: &str, accept: Option<&str>) -> String {
    match http_get(ns, addr, "/metrics", accept) {
        Ok((200, body)) => body,
        other => panic!("GET http://{addr}/metrics: {other:?}"),
    }
}

/// `promtool check metrics` on `text`; panics with its output unless it
/// passes.
fn promtool_check_metrics(text: &str, what: &str) {
    let out = run_cmd(
        Command::new("promtool").args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(30),
    );
    assert!(
        out.ok(),
        "promtool check metrics refuses {what}: {out}\n--- scrape ---\n{text}"
    );
}

// -------------------------------------------------------------- prometheus --

/// A Prometheus server in `ns`, its files in `dir`, scraping `target` every
/// second as job `ipiece`; stopped by PID with the namespace.
fn start_prometheus(ns: &Netns, dir: &Path, target: &str) -> u32 {
    fs::create_dir_all(dir.join("data")).unwrap();
    let conf = dir.join("prometheus.yml");
    fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {MONITORING}/ipiece-alerts.yml\n\
             scrape_configs:\n  - job_name: ipiece\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let pid = ns.spawn(
        "prometheus",
        "prometheus",
        &[
            &format!("--config.file={}", conf.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address={PROM_LISTEN}"),
            "--storage.tsdb.retention.time=1h",
        ],
        &[],
        &dir.join("prometheus.log"),
    );
    let ready = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        ns.running(pid) && matches!(http_get(ns, PROM_LISTEN, "/-/ready", None), Ok((200, _)))
    });
    assert!(
        ready,
        "prometheus did not become ready (running: {}):\n{}",
        ns.running(pid),
        tail(&dir.join("prometheus.log"), 60)
    );
    pid
}

/// An instant PromQL query over Prometheus's HTTP API; the `data.result`
/// array, or the error.
fn promql(ns: &Netns, query: &str) -> Result<Vec<Value>, String> {
    let (code, body) = http_get(
        ns,
        PROM_LISTEN,
        &format!("/api/v1/query?query={}", urlencode(query)),
        None,
    )?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{code}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{code}: {body}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The value of a single-series vector result.
fn single_value(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// Polls `query` until its single series satisfies `pred` (at most
/// `timeout`); returns the value. Panics with the last answer and the
/// scrape target's state otherwise.
fn wait_promql(ns: &Netns, query: &str, timeout: Duration, pred: impl Fn(f64) -> bool) -> f64 {
    let mut last = Err(String::from("never asked"));
    let ok = wait_until(timeout, Duration::from_millis(500), || {
        last = promql(ns, query);
        matches!(&last, Ok(r) if single_value(r).is_some_and(&pred))
    });
    if !ok {
        let targets = http_get(ns, PROM_LISTEN, "/api/v1/targets", None);
        panic!("PromQL `{query}`: last answer {last:?}\ntargets: {targets:?}");
    }
    single_value(&last.unwrap()).unwrap()
}

/// Every `expr` of the shipped dashboard with Grafana's variables filled in.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text = fs::read_to_string(format!("{MONITORING}/ipiece-dashboard.json")).unwrap();
    let v: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    walk(&v, &mut out);
    out.into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
        })
        .collect()
}

// ------------------------------------------------------------------- files --

/// Sets `[metrics] listen` (replacing the seed's).
fn set_metrics_listen(cfg: &GwConfig, listen: Option<&str>) {
    let text = fs::read_to_string(&cfg.path).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    match listen {
        Some(l) => doc["metrics"]["listen"] = toml_edit::value(l),
        None => {
            doc.remove("metrics");
        }
    }
    fs::write(&cfg.path, doc.to_string()).unwrap();
}

// ------------------------------------------------------------------- tests --

#[test]
fn shipped_alert_rules_pass_promtool() {
    let test = "shipped_alert_rules_pass_promtool";
    need_prometheus(test);
    let check = run_cmd(
        Command::new("promtool")
            .args(["check", "rules", "ipiece-alerts.yml"])
            .current_dir(MONITORING),
        None,
        Duration::from_secs(30),
    );
    assert!(check.ok(), "promtool check rules: {check}");
    assert!(check.stdout.contains("SUCCESS: 9 rules found"), "{check}");
    let unit = run_cmd(
        Command::new("promtool")
            .args(["test", "rules", "ipiece-alerts.test.yml"])
            .current_dir(MONITORING),
        None,
        Duration::from_secs(60),
    );
    assert!(unit.ok(), "promtool test rules: {unit}");
    assert!(unit.stdout.contains("SUCCESS"), "{unit}");
}

#[test]
fn prometheus_scrapes_a_laptops_bytes_and_the_tunnel_state() {
    let test = "prometheus_scrapes_a_laptops_bytes_and_the_tunnel_state";
    if !need_root(test) {
        return;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    need_prometheus(test);
    let t = Topology::with_vgw(1);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    let vgw = start_vgw_charon(&t, t.vgw(), "vgw1");
    vgw.load(&SwanctlConf::one(ConnConf::aws_vgw(
        VGW_CONN, VGW_WAN, NAT_WAN, PSK,
    )));
    // Probed: the VGW answers on its inside address through the tunnel.
    t.vgw()
        .ip(&format!("addr add 169.254.10.1/30 dev {IPSEC_TUN}"));
    write_tunnels(
        &cfg,
        &[TunnelSpec::new(TUN, VGW_WAN, PSK).str("inside_cidr", "169.254.10.0/30")],
    );
    // Every address of the gateway: the LAN's Prometheus scrapes it, the
    // WAN must not reach it. `wgctl check` says so, located.
    set_metrics_listen(&cfg, Some(&format!("0.0.0.0:{METRICS_PORT}")));
    let check = wgctl_at(&cfg.path, &["check"]);
    assert!(check.ok(), "{check}");
    let text = fs::read_to_string(&cfg.path).unwrap();
    let line = line_of(&text, "listen = \"0.0.0.0:9586\"");
    let located = format!("warning: {}:{line}:10: metrics.listen:", cfg.path.display());
    assert!(
        check.stdout.contains(&located) && check.stdout.contains("the WAN does not"),
        "wgctl check gives no located warning `{located}`: {check}"
    );
    let daemon = start_ipieced_logging(&t.gw, &cfg, "info");
    wait_up(&cfg, &t.gw, &daemon, TUN, Duration::from_secs(30));
    assert!(
        daemon.log_text().contains(&located["warning: ".len()..]),
        "the daemon's log has no located warning:\n{}",
        daemon.log_text()
    );

    let conf = cfg.add_peer(&t.gw, "alice", &[]);
    let wg = start_wg_client(&t.laptops[0], &conf, &t.dir.path);
    let lap = &t.laptops[0];
    assert!(
        lap.ping_until(VPC_HOST, Duration::from_secs(20)),
        "the laptop never reached the VPC host through the tunnel"
    );
    let ping = lap.ping(VPC_HOST, 20, 50, 10);
    assert!(ping.received > 0, "{ping:?}");

    // promtool on real scrapes: from the gateway itself (loopback) in both
    // formats, and from the LAN host.
    let local = format!("127.0.0.1:{METRICS_PORT}");
    let text = scrape(&t.gw, &local, None);
    promtool_check_metrics(&text, "the Prometheus text scrape");
    for family in [
        // (the RTT only once a probe was answered: below, in Prometheus)
        "ipiece_tunnel_probe_health",
        "ipiece_tunnel_probe_loss_ratio",
        "ipiece_tunnel_switches_total",
    ] {
        assert!(
            text.contains(&format!("{family}{{tunnel=\"{TUN}\"")),
            "no {family} for the probed tunnel: {text}"
        );
    }
    assert!(
        text.contains(&format!(
            "peer=\"alice\",friendly_name=\"alice\",public_key=\"{}\"",
            wg.public_key
        )),
        "{text}"
    );
    let om = scrape(
        &t.gw,
        &local,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(om.ends_with("# EOF\n"), "not OpenMetrics: {om}");
    let lan_addr = format!("172.16.4.1:{METRICS_PORT}");
    promtool_check_metrics(&scrape(&t.lan, &lan_addr, None), "the LAN's scrape");

    // The WAN side (the home router's inside address, on the gateway's WAN
    // interface) cannot connect: the input chain drops it.
    let wan = http_get(
        &t.nat,
        &format!("{GW_ETH0}:{METRICS_PORT}"),
        "/metrics",
        None,
    );
    assert!(wan.is_err(), "the WAN reached the metrics: {wan:?}");

    // A real Prometheus on the LAN host scrapes it.
    let prom_dir = t.dir.join("prometheus");
    start_prometheus(&t.lan, &prom_dir, &lan_addr);
    wait_promql(&t.lan, "up{job=\"ipiece\"}", Duration::from_secs(60), |v| {
        v == 1.0
    });
    let rx = wait_promql(
        &t.lan,
        "wireguard_received_bytes_total{job=\"ipiece\",peer=\"alice\"}",
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    let st = cfg.status_json(&t.gw);
    let alice = status_peer(&st, "alice").expect("alice in status");
    let status_rx = json_u64(alice, "rx_bytes") as f64;
    assert!(
        rx <= status_rx && rx >= 20.0 * 84.0,
        "Prometheus has {rx} bytes from alice, status {status_rx} (20 pings of 84 bytes at least)"
    );
    let up = wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_state{{tunnel=\"{TUN}\",state=\"up\"}}"),
        Duration::from_secs(30),
        |v| v == 1.0,
    );
    assert_eq!(up, 1.0);
    let down = promql(
        &t.lan,
        &format!("ipiece_tunnel_state{{tunnel=\"{TUN}\",state=\"down\"}}"),
    )
    .unwrap();
    assert_eq!(single_value(&down), Some(0.0), "{down:?}");
    wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_carrying{{tunnel=\"{TUN}\"}}"),
        Duration::from_secs(10),
        |v| v == 1.0,
    );
    // The tunnel's probes: answered, an RTT in seconds, healthy.
    let rtt = wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_probe_rtt_seconds{{tunnel=\"{TUN}\"}}"),
        Duration::from_secs(10),
        |v| v > 0.0,
    );
    assert!(rtt < 1.0, "probe RTT {rtt} s");
    wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_probe_health{{tunnel=\"{TUN}\",health=\"healthy\"}}"),
        Duration::from_secs(10),
        |v| v == 1.0,
    );
    wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_probes_total{{tunnel=\"{TUN}\",result=\"answered\"}}"),
        Duration::from_secs(10),
        |v| v >= 1.0,
    );
    wait_promql(
        &t.lan,
        &format!("ipiece_tunnel_esp_packets_total{{tunnel=\"{TUN}\",direction=\"in\"}}"),
        Duration::from_secs(10),
        |v| v >= 20.0,
    );

    // Every dashboard expression parses and evaluates in this Prometheus.
    for e in dashboard_exprs() {
        if let Err(err) = promql(&t.lan, &e) {
            panic!("the dashboard's `{e}` fails in Prometheus: {err}");
        }
    }
    // The shipped rules loaded into this Prometheus, none firing.
    let (code, rules) = http_get(&t.lan, PROM_LISTEN, "/api/v1/rules", None).unwrap();
    assert_eq!(code, 200, "{rules}");
    assert!(rules.contains("IpieceAllTunnelsDown"), "{rules}");
    let firing = promql(&t.lan, "ALERTS{alertstate=\"firing\"}").unwrap();
    assert!(firing.is_empty(), "alerts firing: {firing:?}");
}

#[test]
fn the_listener_follows_reloads_and_json_logs_keep_their_fields() {
    let test = "the_listener_follows_reloads_and_json_logs_keep_their_fields";
    if !need_root(test) {
        return;
    }
    let t = Topology::new(0);
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    t.gw.remove_at_teardown(&cfg.uapi_socket());
    t.gw.remove_at_teardown(&cfg.control_socket);
    // A taken port stops the start, before the TUN exists, naming the key.
    let squatter = in_netns(&t.gw, || {
        std::net::TcpListener::bind(("127.0.0.1", METRICS_PORT)).unwrap()
    });
    let refused_log = t.dir.join("ipieced.refused.log");
    let refused = t.gw.spawn(
        "ipieced",
        IPIECED,
        &["--config", cfg.path.to_str().unwrap()],
        &[("IPIECE_LOG", "info"), ("NO_COLOR", "1")],
        &refused_log,
    );
    let st = t.gw.wait_exit(refused, Duration::from_secs(15));
    let text = fs::read_to_string(&refused_log).unwrap_or_default();
    assert!(
        st.is_some_and(|s| !s.success())
            && text.contains(&format!(
                "metrics.listen 127.0.0.1:{METRICS_PORT}: cannot listen"
            )),
        "{st:?}:\n{text}"
    );
    assert!(
        !t.gw.try_ip(&format!("link show {}", cfg.tun)).ok(),
        "the refused daemon left its TUN"
    );
    drop(squatter);

    let log = t.dir.join("ipieced.json.log");
    let pid = t.gw.spawn(
        "ipieced",
        IPIECED,
        &[
            "--config",
            cfg.path.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[("IPIECE_LOG", "info"), ("NO_COLOR", "1")],
        &log,
    );
    let first = format!("127.0.0.1:{METRICS_PORT}");
    let answers = |addr: &str| matches!(http_get(&t.gw, addr, "/metrics", None), Ok((200, _)));
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            t.gw.running(pid) && answers(&first)
        }),
        "the seed's listener {first} never answered:\n{}",
        tail(&log, 50)
    );
    // Only GET /metrics.
    assert!(matches!(http_get(&t.gw, &first, "/", None), Ok((404, _))));

    let second = format!("127.0.0.1:{}", METRICS_PORT + 1);
    set_metrics_listen(&cfg, Some(&second));
    reload(&cfg, &t.gw);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            answers(&second) && http_get(&t.gw, &first, "/metrics", None).is_err()
        }),
        "the reload did not move the listener to {second}:\n{}",
        tail(&log, 50)
    );
    set_metrics_listen(&cfg, None);
    reload(&cfg, &t.gw);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            http_get(&t.gw, &second, "/metrics", None).is_err()
        }),
        "the listener stayed after [metrics] was removed"
    );
    assert!(t.gw.running(pid));

    // JSON lines with the field names Loki queries rely on.
    let text = fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        for key in ["timestamp", "level", "target"] {
            assert!(e[key].is_string(), "no `{key}` in {e}");
        }
        assert!(
            e["fields"]["message"].is_string(),
            "no fields.message in {e}"
        );
    }
    let find = |msg: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == msg)
            .unwrap_or_else(|| panic!("no event `{msg}` in:\n{text}"))
    };
    let running = find("ipieced running");
    assert_eq!(running["level"], "INFO");
    assert_eq!(running["fields"]["tun"], cfg.tun.as_str());
    assert_eq!(running["fields"]["port"], 51821);
    for key in ["gateway", "address", "public_key", "peers"] {
        assert!(
            !running["fields"][key].is_null(),
            "no fields.{key}: {running}"
        );
    }
    let serving = find("metrics: serving GET /metrics");
    assert_eq!(serving["fields"]["addr"], first.as_str());
    let changed = find("metrics: listener changed");
    assert!(changed["fields"]["to"].is_string(), "{changed}");
    let reloaded = find("configuration reloaded");
    assert!(reloaded["fields"]["unchanged"].is_number(), "{reloaded}");
}
