//! The `[metrics]` table of `gateway.toml`: where ipieced serves its
//! Prometheus metrics, and the warning for a listener that is reachable
//! from more than the gateway itself.

use std::net::SocketAddr;
use std::path::Path;

use super::firewall::{FirewallAction, FirewallConfig, FirewallProto, FirewallTarget, Zone};
use super::model::ConfigError;

/// The seed config's `metrics.listen`: the port the WireGuard exporters use.
pub const SEED_METRICS_LISTEN: &str = "127.0.0.1:9586";

/// The `[metrics]` table (off when the file has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The TCP address of the HTTP listener serving `GET /metrics`; `None`:
    /// no listener.
    pub listen: Option<SocketAddr>,
    /// 1-based line and column of `listen`'s value (0 when unknown), for
    /// the warning.
    pub listen_at: (usize, usize),
}

impl MetricsConfig {
    /// The warning for `listen`, located in `file`: a listener on an
    /// address other than loopback is reachable by whoever the firewall
    /// lets reach the gateway (the LAN and the laptops by default), and by
    /// the WAN only through a `[[firewall.rules]]` accepting it; `None`
    /// for loopback, no listener, or an address a rule explicitly accepts.
    pub fn warning(&self, file: &Path, firewall: &FirewallConfig) -> Option<ConfigError> {
        let addr = self.listen?;
        if addr.ip().is_loopback() {
            return None;
        }
        let message = if !firewall.enabled {
            format!(
                "{addr} is not a loopback address and firewall.enabled = false: \
                 anyone who reaches the gateway, the WAN included, can read the metrics"
            )
        } else if opens_port(firewall, addr.port()) {
            // A rule accepting the port is the operator's explicit word on
            // who may scrape it.
            return None;
        } else {
            format!(
                "{addr} is not a loopback address and no [[firewall.rules]] accepts TCP {} \
                 to the gateway: the LAN and the laptops reach it (the default policy lets \
                 them reach the gateway), the WAN does not; add a rule (to = \"gateway\", \
                 proto = \"tcp\", ports = [{}]) naming who may scrape it, or listen on 127.0.0.1",
                addr.port(),
                addr.port()
            )
        };
        Some(ConfigError {
            file: file.to_path_buf(),
            line: self.listen_at.0,
            column: self.listen_at.1,
            field: "metrics.listen".to_owned(),
            message,
        })
    }
}

/// Whether a rule accepts TCP `port` to the gateway.
fn opens_port(firewall: &FirewallConfig, port: u16) -> bool {
    firewall.rules.iter().any(|r| {
        r.action == FirewallAction::Accept
            && r.to == FirewallTarget::Zone(Zone::Gateway)
            && matches!(r.proto, FirewallProto::Tcp | FirewallProto::Any)
            && (r.ports.is_empty() || r.ports.iter().any(|&(a, b)| a <= port && port <= b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::firewall::FirewallRule;

    fn cfg(listen: &str) -> MetricsConfig {
        MetricsConfig {
            listen: Some(listen.parse().unwrap()),
            listen_at: (40, 10),
        }
    }

    fn rule(to: FirewallTarget, proto: FirewallProto, ports: Vec<(u16, u16)>) -> FirewallRule {
        FirewallRule {
            name: "scrape".into(),
            from: FirewallTarget::Prefix("192.0.2.0/24".parse().unwrap()),
            to,
            proto,
            ports,
            action: FirewallAction::Accept,
            log: false,
        }
    }

    #[test]
    fn loopback_and_off_need_no_warning() {
        let fw = FirewallConfig::default();
        let f = Path::new("/etc/ipiece/gateway.toml");
        assert!(cfg("127.0.0.1:9586").warning(f, &fw).is_none());
        assert!(cfg("[::1]:9586").warning(f, &fw).is_none());
        assert!(MetricsConfig::default().warning(f, &fw).is_none());
    }

    #[test]
    fn a_non_local_address_without_a_rule_is_located_and_explained() {
        let fw = FirewallConfig::default();
        let w = cfg("0.0.0.0:9586")
            .warning(Path::new("/etc/ipiece/gateway.toml"), &fw)
            .expect("warning");
        let text = w.to_string();
        assert!(
            text.starts_with("/etc/ipiece/gateway.toml:40:10: metrics.listen: 0.0.0.0:9586"),
            "{text}"
        );
        assert!(text.contains("the WAN does not"), "{text}");
        let off = FirewallConfig {
            enabled: false,
            ..Default::default()
        };
        let w = cfg("172.16.4.1:9586")
            .warning(Path::new("g.toml"), &off)
            .unwrap();
        assert!(w.message.contains("the WAN included"), "{}", w.message);
    }

    #[test]
    fn a_rule_accepting_the_port_to_the_gateway_silences_it() {
        let f = Path::new("g.toml");
        let gw = FirewallTarget::Zone(Zone::Gateway);
        let mut fw = FirewallConfig::default();
        for (r, silent) in [
            (
                rule(gw.clone(), FirewallProto::Tcp, vec![(9586, 9586)]),
                true,
            ),
            (rule(gw.clone(), FirewallProto::Any, vec![]), true),
            (
                rule(gw.clone(), FirewallProto::Tcp, vec![(9000, 9600)]),
                true,
            ),
            (
                rule(gw.clone(), FirewallProto::Udp, vec![(9586, 9586)]),
                false,
            ),
            (rule(gw.clone(), FirewallProto::Tcp, vec![(22, 22)]), false),
            (
                rule(FirewallTarget::Zone(Zone::Lan), FirewallProto::Tcp, vec![]),
                false,
            ),
        ] {
            fw.rules = vec![r.clone()];
            assert_eq!(
                cfg("0.0.0.0:9586").warning(f, &fw).is_none(),
                silent,
                "{r:?}"
            );
        }
        fw.rules = vec![FirewallRule {
            action: FirewallAction::Drop,
            ..rule(gw, FirewallProto::Tcp, vec![])
        }];
        assert!(cfg("0.0.0.0:9586").warning(f, &fw).is_some());
    }
}
