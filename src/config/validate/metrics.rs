//! Validation of `[metrics]`: the Prometheus listener's address.

use std::net::SocketAddr;

use toml_edit::TableLike;

use super::Checker;
use crate::config::metrics::MetricsConfig;

/// Keys allowed in `[metrics]`.
pub(crate) const METRICS_KEYS: &[&str] = &["listen"];

impl Checker<'_> {
    /// `[metrics]`: absent means no listener.
    pub(super) fn metrics(&mut self, root: &dyn TableLike) -> Option<MetricsConfig> {
        let Some(t) = self.optional_section(root, "metrics").ok()? else {
            return Some(MetricsConfig::default());
        };
        self.unknown_keys(&t, METRICS_KEYS);
        let Some(f) = self.get(&t, "listen") else {
            return Some(MetricsConfig::default());
        };
        let at = f
            .span
            .as_ref()
            .map_or((0, 0), |r| self.index.locate(r.start));
        let s = self.string(&f, "a string (\"address:port\", e.g. \"127.0.0.1:9586\")")?;
        let listen = match s.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.error(&f.span, &f.path, format!("`{s}`: the port must not be 0"));
                return None;
            }
            Ok(a) => a,
            Err(_) => {
                let hint = if s.parse::<std::net::IpAddr>().is_ok() {
                    " (add the port, e.g. \":9586\"; an IPv6 address goes in brackets: \"[::1]:9586\")"
                } else {
                    " (an IP address and a port such as \"127.0.0.1:9586\"; host names are not resolved)"
                };
                self.error(
                    &f.span,
                    &f.path,
                    format!("`{s}` is not an address:port{hint}"),
                );
                return None;
            }
        };
        Some(MetricsConfig {
            listen: Some(listen),
            listen_at: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use crate::config::keys::{generate_private_key, write_secret_file};
    use crate::config::model::Config;
    use crate::config::testutil::TempDir;
    use crate::config::ConfigErrors;

    /// The base configuration; `[metrics]` starts on line 9.
    const BASE: &str = r#"[gateway]
name = "gw"
public_endpoint = "198.51.100.10"
lan_prefixes = ["172.16.4.0/24"]

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"
[metrics]
listen = "127.0.0.1:9586"
"#;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let dir = TempDir::new();
        write_secret_file(
            &dir.path().join("wg.key"),
            format!("{}\n", generate_private_key()).as_bytes(),
        )
        .unwrap();
        Config::parse(&dir.path().join("gateway.toml"), text)
    }

    #[test]
    fn listen_parses_and_defaults_to_off() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9586".parse().unwrap()));
        assert_eq!(c.metrics.listen_at, (10, 10));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let without = BASE.replace("[metrics]\nlisten = \"127.0.0.1:9586\"\n", "");
        assert_eq!(parse(&without).unwrap().metrics.listen, None);
        let empty = BASE.replace("listen = \"127.0.0.1:9586\"\n", "");
        assert_eq!(parse(&empty).unwrap().metrics.listen, None);
        let v6 = BASE.replace("127.0.0.1:9586", "[::1]:9586");
        assert_eq!(
            parse(&v6).unwrap().metrics.listen,
            Some("[::1]:9586".parse().unwrap())
        );
    }

    #[test]
    fn bad_values_are_located() {
        for (to, needle) in [
            ("\"127.0.0.1\"", "add the port"),
            ("\"localhost:9586\"", "host names are not resolved"),
            ("\"127.0.0.1:0\"", "must not be 0"),
            ("\"127.0.0.1:70000\"", "not an address:port"),
            ("9586", "expected a string"),
        ] {
            let text = BASE.replace("\"127.0.0.1:9586\"", to);
            let e = parse(&text).unwrap_err().0;
            one(&e, 10, 10, "metrics.listen", needle);
        }
        let e = parse(&BASE.replace("listen =", "port = 1\nlisten ="))
            .unwrap_err()
            .0;
        one(&e, 10, 1, "metrics.port", "unknown key `port` in [metrics]");
        let e = parse(&format!(
            "metrics = 1\n{}",
            BASE.replace("[metrics]\nlisten = \"127.0.0.1:9586\"\n", "")
        ))
        .unwrap_err()
        .0;
        one(&e, 1, 11, "metrics", "expected a table");
    }

    #[test]
    fn a_wildcard_listener_warns_with_its_position() {
        let c = parse(&BASE.replace("127.0.0.1:9586", "0.0.0.0:9586")).unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].line, w[0].column), (10, 10));
        assert_eq!(w[0].field, "metrics.listen");
        // A rule accepting TCP 9586 to the gateway is the explicit statement.
        let opened = format!(
            "{}\n[[firewall.rules]]\nname = \"scrape\"\nfrom = \"192.0.2.0/24\"\nto = \"gateway\"\nproto = \"tcp\"\nports = [9586]\naction = \"accept\"\n",
            BASE.replace("127.0.0.1:9586", "0.0.0.0:9586")
        );
        assert!(parse(&opened).unwrap().warnings().is_empty());
    }
}
