//! Validation of `[aws]`: the VPN connection whose routes `wgctl aws sync`
//! keeps in step, located and named like the rest of the file.

use std::collections::HashMap;
use std::time::Duration;

use toml_edit::{TableLike, Value};

use super::{Checker, Field, Span};
use crate::config::model::{
    AwsConfig, AwsRouting, RouteTables, MAX_SYNC_INTERVAL, MIN_SYNC_INTERVAL,
};

/// Keys allowed in `[aws]`.
pub(crate) const AWS_KEYS: &[&str] = &[
    "region",
    "vpn_connection_id",
    "route_tables",
    "routing",
    "sync_interval",
    "endpoint_url",
];

/// Keys that look like credentials: refused with a pointer to the AWS chain.
const CREDENTIAL_KEYS: &[&str] = &[
    "access_key_id",
    "aws_access_key_id",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "access_key",
    "secret_key",
    "profile",
    "credentials",
];

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-2`.
pub(crate) fn check_region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not an AWS region name such as \"us-east-1\" or \"eu-central-1\""
        ))
    }
}

/// `{prefix}-` and 8 or 17 lowercase hex digits (AWS's short and long IDs;
/// anything from 8 to 17 is accepted).
pub(crate) fn check_resource_id(s: &str, prefix: &str, what: &str) -> Result<(), String> {
    let ok = s
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            (8..=17).contains(&hex.len())
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not {what} ID such as \"{prefix}-0123456789abcdef0\""
        ))
    }
}

/// `http://host[:port][/path]` or `https://...`.
fn check_endpoint_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains(char::is_whitespace) || authority.contains('@') {
        return Err(format!(
            "`{s}` has no valid host (write e.g. \"https://ec2.us-east-1.amazonaws.com\")"
        ));
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        if !host.ends_with(']') || authority.starts_with('[') {
            let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
            if !host.is_empty() && !host.ends_with(']') && !port_ok {
                return Err(format!("`{s}` has an invalid port `{port}`"));
            }
        }
    }
    Ok(())
}

impl Checker<'_> {
    /// `[aws]`, optional. `Some(None)`: absent; `None`: errors.
    pub(super) fn aws(&mut self, root: &dyn TableLike) -> Option<Option<AwsConfig>> {
        let Some(t) = self.optional_section(root, "aws").ok()? else {
            return Some(None);
        };
        // Unknown keys; credentials get their own message (never their value).
        for (k, item) in t.table.iter() {
            if AWS_KEYS.contains(&k) {
                continue;
            }
            let kspan: Span = t
                .table
                .key(k)
                .and_then(|k| k.span())
                .or_else(|| item.span());
            let message = if CREDENTIAL_KEYS.contains(&k) {
                "credentials never go into gateway.toml: ipiece uses the standard AWS chain \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, AWS_PROFILE \
                 and ~/.aws/credentials, or the instance role)"
                    .to_owned()
            } else {
                format!(
                    "unknown key `{k}` in [aws]; allowed keys: {}",
                    AWS_KEYS.join(", ")
                )
            };
            self.error(&kspan, &t.field_path(k), message);
        }

        let region = self.required(&t, "region").and_then(|f| {
            let s = self.string(&f, "a string (an AWS region such as \"us-east-1\")")?;
            self.checked(&f, check_region(s)).map(|()| s.to_owned())
        });
        let vpn_connection_id = self.required(&t, "vpn_connection_id").and_then(|f| {
            let s = self.string(
                &f,
                "a string (a VPN connection ID such as \"vpn-0123456789abcdef0\")",
            )?;
            self.checked(&f, check_resource_id(s, "vpn", "a VPN connection"))
                .map(|()| s.to_owned())
        });
        let route_tables = match self.get(&t, "route_tables") {
            None => Some(RouteTables::Ids(Vec::new())),
            Some(f) => self.route_tables(&f),
        };
        let routing = match self.get(&t, "routing") {
            None => Some(AwsRouting::Static),
            Some(f) => {
                let s = self.string(&f, "a string (\"static\" or \"propagation\")");
                match s {
                    Some("static") => Some(AwsRouting::Static),
                    Some("propagation") => Some(AwsRouting::Propagation),
                    Some(other) => {
                        self.error(
                            &f.span,
                            &f.path,
                            format!(
                                "`{other}` is not a routing mode; expected \"static\" \
                                 (a route per prefix to the VGW) or \"propagation\" \
                                 (VGW route propagation)"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let sync_interval = match self.get(&t, "sync_interval") {
            None => Some(None),
            Some(f) => {
                let max = MAX_SYNC_INTERVAL.as_secs() as i64;
                match self.integer(&f, 0, max, "the sync interval in seconds (0 = off)") {
                    Some(0) => Some(None),
                    Some(n) if (n as u64) < MIN_SYNC_INTERVAL.as_secs() => {
                        self.error(
                            &f.span,
                            &f.path,
                            format!(
                                "the sync interval must be 0 (off) or at least {} s, found {n}",
                                MIN_SYNC_INTERVAL.as_secs()
                            ),
                        );
                        None
                    }
                    Some(n) => Some(Some(Duration::from_secs(n as u64))),
                    None => None,
                }
            }
        };
        let endpoint_url = match self.get(&t, "endpoint_url") {
            None => Some(None),
            Some(f) => self
                .string(
                    &f,
                    "a string (a URL such as \"https://ec2.us-east-1.amazonaws.com\")",
                )
                .and_then(|s| {
                    self.checked(&f, check_endpoint_url(s))
                        .map(|()| Some(s.trim_end_matches('/').to_owned()))
                }),
        };
        Some(Some(AwsConfig {
            region: region?,
            vpn_connection_id: vpn_connection_id?,
            route_tables: route_tables?,
            routing: routing?,
            sync_interval: sync_interval?,
            endpoint_url: endpoint_url?,
        }))
    }

    /// `"all"` or an array of distinct `rtb-...` IDs.
    fn route_tables(&mut self, f: &Field<'_>) -> Option<RouteTables> {
        const EXPECTED: &str = "an array of route table IDs ([\"rtb-...\"]) or the string \"all\"";
        match f.node.as_value() {
            Some(Value::String(s)) => {
                if s.value() == "all" {
                    Some(RouteTables::All)
                } else {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("`{}` is not allowed here; expected {EXPECTED}", s.value()),
                    );
                    None
                }
            }
            Some(Value::Array(_)) => {
                let elems = self.array(f, "route table ID strings")?;
                let mut ids = Vec::new();
                let mut seen: HashMap<String, String> = HashMap::new();
                let mut ok = true;
                for e in elems {
                    let Some(s) = self.string(
                        &e,
                        "a string (a route table ID such as \"rtb-0123456789abcdef0\")",
                    ) else {
                        ok = false;
                        continue;
                    };
                    if self
                        .checked(&e, check_resource_id(s, "rtb", "a route table"))
                        .is_none()
                    {
                        ok = false;
                        continue;
                    }
                    if let Some(first) = seen.get(s) {
                        self.error(
                            &e.span,
                            &e.path,
                            format!("`{s}` is listed twice (first as {first})"),
                        );
                        ok = false;
                        continue;
                    }
                    seen.insert(s.to_owned(), e.path.clone());
                    ids.push(s.to_owned());
                }
                ok.then_some(RouteTables::Ids(ids))
            }
            _ => {
                self.type_error(f, EXPECTED);
                None
            }
        }
    }

    /// Reports `Err(message)` at the field.
    fn checked(&mut self, f: &Field<'_>, r: Result<(), String>) -> Option<()> {
        match r {
            Ok(()) => Some(()),
            Err(m) => {
                self.error(&f.span, &f.path, m);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::*;
    use crate::config::keys::{generate_private_key, write_secret_file};
    use crate::config::model::Config;
    use crate::config::testutil::TempDir;
    use crate::config::{ConfigError, ConfigErrors};

    /// The base configuration; `[aws]` starts on line 9.
    const BASE: &str = r#"[gateway]
name = "gw"
public_endpoint = "198.51.100.10"
lan_prefixes = ["172.16.4.0/24"]

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"
[aws]
region = "eu-central-1"
vpn_connection_id = "vpn-0123456789abcdef0"
route_tables = ["rtb-11111111", "rtb-0123456789abcdef0"]
routing = "static"
sync_interval = 300
endpoint_url = "http://127.0.0.1:5000/"
"#;

    struct Fx {
        dir: TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let dir = TempDir::new();
            write_secret_file(
                &dir.path().join("wg.key"),
                format!("{}\n", generate_private_key()).as_bytes(),
            )
            .unwrap();
            Fx { dir }
        }

        fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
            Config::parse(&self.dir.path().join("gateway.toml"), text)
        }

        fn errors_with(&self, from: &str, to: &str) -> Vec<ConfigError> {
            assert_eq!(BASE.matches(from).count(), 1, "{from}");
            match self.parse(&BASE.replacen(from, to, 1)) {
                Ok(c) => panic!("expected errors after replacing {from:?} with {to:?}: {c:?}"),
                Err(e) => e.0,
            }
        }
    }

    #[test]
    fn full_section_parses() {
        let fx = Fx::new();
        let c = fx.parse(BASE).unwrap();
        let aws = c.aws.unwrap();
        assert_eq!(aws.region, "eu-central-1");
        assert_eq!(aws.vpn_connection_id, "vpn-0123456789abcdef0");
        assert_eq!(
            aws.route_tables,
            RouteTables::Ids(vec!["rtb-11111111".into(), "rtb-0123456789abcdef0".into()])
        );
        assert_eq!(aws.routing, AwsRouting::Static);
        assert_eq!(aws.sync_interval, Some(Duration::from_secs(300)));
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn defaults_and_all() {
        let fx = Fx::new();
        let text = "[gateway]\nname = \"gw\"\npublic_endpoint = \"198.51.100.10\"\n\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n";
        assert!(fx.parse(text).unwrap().aws.is_none());
        let minimal =
            format!("{text}[aws]\nregion = \"us-east-1\"\nvpn_connection_id = \"vpn-12345678\"\n");
        let aws = fx.parse(&minimal).unwrap().aws.unwrap();
        assert_eq!(aws.route_tables, RouteTables::Ids(vec![]));
        assert_eq!(aws.routing, AwsRouting::Static);
        assert_eq!(aws.sync_interval, None);
        assert_eq!(aws.endpoint_url, None);
        let all = format!(
            "{minimal}route_tables = \"all\"\nrouting = \"propagation\"\nsync_interval = 0\n"
        );
        let aws = fx.parse(&all).unwrap().aws.unwrap();
        assert_eq!(aws.route_tables, RouteTables::All);
        assert_eq!(aws.routing, AwsRouting::Propagation);
        assert_eq!(aws.sync_interval, None);
        assert_eq!(AwsRouting::Propagation.as_str(), "propagation");
    }

    #[test]
    fn errors_are_located() {
        let fx = Fx::new();
        one(
            &fx.errors_with("\"eu-central-1\"", "\"Frankfurt\""),
            10,
            10,
            "aws.region",
            "`Frankfurt` is not an AWS region name",
        );
        one(
            &fx.errors_with("region = \"eu-central-1\"\n", ""),
            9,
            1,
            "aws.region",
            "missing required key `region` in [aws]",
        );
        one(
            &fx.errors_with("\"vpn-0123456789abcdef0\"", "\"cgw-12345678\""),
            11,
            21,
            "aws.vpn_connection_id",
            "is not a VPN connection ID such as \"vpn-0123456789abcdef0\"",
        );
        one(
            &fx.errors_with("\"rtb-11111111\",", "\"rtb-0123456789abcdef0\","),
            12,
            42,
            "aws.route_tables[1]",
            "`rtb-0123456789abcdef0` is listed twice (first as aws.route_tables[0])",
        );
        one(
            &fx.errors_with("\"rtb-11111111\",", "\"igw-11111111\","),
            12,
            17,
            "aws.route_tables[0]",
            "is not a route table ID",
        );
        one(
            &fx.errors_with(
                "route_tables = [\"rtb-11111111\", \"rtb-0123456789abcdef0\"]",
                "route_tables = \"some\"",
            ),
            12,
            16,
            "aws.route_tables",
            "expected an array of route table IDs",
        );
        one(
            &fx.errors_with(
                "route_tables = [\"rtb-11111111\", \"rtb-0123456789abcdef0\"]",
                "route_tables = 3",
            ),
            12,
            16,
            "aws.route_tables",
            "expected an array of route table IDs ([\"rtb-...\"]) or the string \"all\", found integer",
        );
        one(
            &fx.errors_with("\"static\"", "\"bgp\""),
            13,
            11,
            "aws.routing",
            "`bgp` is not a routing mode",
        );
        one(
            &fx.errors_with("= 300", "= 5"),
            14,
            17,
            "aws.sync_interval",
            "must be 0 (off) or at least 10 s, found 5",
        );
        one(
            &fx.errors_with("= 300", "= -1"),
            14,
            17,
            "aws.sync_interval",
            "between 0 and 86400",
        );
        one(
            &fx.errors_with("\"http://127.0.0.1:5000/\"", "\"127.0.0.1:5000\""),
            15,
            16,
            "aws.endpoint_url",
            "must start with http:// or https://",
        );
        one(
            &fx.errors_with("\"http://127.0.0.1:5000/\"", "\"http://h:x/\""),
            15,
            16,
            "aws.endpoint_url",
            "invalid port",
        );
        one(
            &fx.errors_with("routing = \"static\"\n", "regoin = \"x\"\n"),
            13,
            1,
            "aws.regoin",
            "unknown key `regoin` in [aws]; allowed keys: region, vpn_connection_id, route_tables, routing, sync_interval, endpoint_url",
        );
        let text = format!("aws = 1\n{}", &BASE[..BASE.find("[aws]").unwrap()]);
        let errs = fx.parse(&text).unwrap_err().0;
        one(
            &errs,
            1,
            7,
            "aws",
            "expected a table ([aws]), found integer",
        );
    }

    #[test]
    fn credentials_are_refused() {
        let fx = Fx::new();
        let errs = fx.errors_with(
            "routing = \"static\"\n",
            "aws_secret_access_key = \"abc\"\n",
        );
        one(
            &errs,
            13,
            1,
            "aws.aws_secret_access_key",
            "credentials never go into gateway.toml",
        );
        // The secret itself is never echoed.
        assert!(!errs[0].message.contains("abc"));
    }

    #[test]
    fn id_and_region_checks() {
        assert!(check_region("us-gov-west-1").is_ok());
        assert!(check_region("ap-southeast-2").is_ok());
        assert!(check_region("us-east").is_err());
        assert!(check_region("US-EAST-1").is_err());
        assert!(check_resource_id("vpn-12345678", "vpn", "a").is_ok());
        assert!(check_resource_id("vpn-1234567", "vpn", "a").is_err());
        assert!(check_resource_id("vpn-0123456789ABCDEF0", "vpn", "a").is_err());
        assert!(check_endpoint_url("https://ec2.eu-central-1.amazonaws.com").is_ok());
        assert!(check_endpoint_url("http://[::1]:5000").is_ok());
        assert!(check_endpoint_url("http://").is_err());
        assert!(check_endpoint_url("http://h:0").is_err());
    }
}
