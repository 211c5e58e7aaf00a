//! Validation of `[lan]`, `[lan.dhcp]` (with `[[lan.dhcp.static]]`) and
//! `[dns]` (with `[[dns.forward]]` and `[[dns.hosts]]`), located and named
//! like the rest of the file: a DHCP range outside the LAN or overlapping a
//! static mapping, a duplicate MAC, address or host name, a forward without
//! a server, and names that are no DNS names are refused.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use toml_edit::{Item, TableLike};

use super::{check_tun_name, reserved_host, Checker, Field, Node, Table};
use crate::config::lan::{
    check_dns_label, check_dns_name, DhcpConfig, DhcpStatic, DnsConfig, DnsForward, DnsHost,
    LanConfig, MacAddr, DEFAULT_LEASE_TIME, DEFAULT_VPN_SUBDOMAIN, MAX_LEASE_TIME, MIN_LEASE_TIME,
};

/// Keys allowed in `[lan]`.
pub(crate) const LAN_KEYS: &[&str] = &["interface", "address", "dhcp"];
/// Keys allowed in `[lan.dhcp]`.
pub(crate) const DHCP_KEYS: &[&str] = &["range", "lease_time", "router", "dns_servers", "static"];
/// Keys allowed in each `[[lan.dhcp.static]]` table.
pub(crate) const STATIC_KEYS: &[&str] = &["mac", "address", "hostname"];
/// Keys allowed in `[dns]`.
pub(crate) const DNS_KEYS: &[&str] = &["domain", "upstream", "vpn_subdomain", "forward", "hosts"];
/// Keys allowed in each `[[dns.forward]]` table.
pub(crate) const FORWARD_KEYS: &[&str] = &["domain", "servers"];
/// Keys allowed in each `[[dns.hosts]]` table.
pub(crate) const HOST_KEYS: &[&str] = &["name", "address"];

/// What the rest of the file says that `[lan]` refers to.
pub(super) struct LanContext<'c> {
    /// `gateway.lan_prefixes` (`None`: `[gateway]` is broken).
    pub lan_prefixes: Option<&'c [IpNet]>,
    /// `firewall.lan_interface`, when set.
    pub firewall_lan_interface: Option<&'c str>,
    /// Whether the file has a `[dns]` table (the DHCP DNS option's default).
    pub dns_on: bool,
}

impl Checker<'_> {
    /// A sub-table `key` of `t` (`[lan.dhcp]`), optional.
    fn sub_table<'d>(&mut self, t: &Table<'d>, key: &str) -> Result<Option<Table<'d>>, ()> {
        let Some(f) = self.get(t, key) else {
            return Ok(None);
        };
        let Node::Item(item) = f.node else {
            return Err(());
        };
        match item.as_table_like() {
            Some(table) => Ok(Some(Table {
                table,
                label: format!("[{}]", f.path),
                path: f.path,
                span: f.span,
            })),
            None => {
                self.type_error(&f, &format!("a table ([{}])", f.path));
                Err(())
            }
        }
    }

    /// The tables of the array of tables `key` of `t` (`[[lan.dhcp.static]]`).
    fn sub_tables<'d>(&mut self, t: &Table<'d>, key: &str) -> Vec<Table<'d>> {
        let Some((k, item)) = t.table.get_key_value(key) else {
            return Vec::new();
        };
        let path = t.field_path(key);
        let span = item.span().or_else(|| k.span());
        let item: &'d Item = item;
        let Some(tables) = self.table_array(item, span, &path) else {
            return Vec::new();
        };
        tables
            .into_iter()
            .enumerate()
            .map(|(i, (table, span))| Table {
                table,
                path: format!("{path}[{i}]"),
                label: format!("[[{path}]] table {path}[{i}]"),
                span,
            })
            .collect()
    }

    fn ipv4(&mut self, f: &Field<'_>) -> Option<Ipv4Addr> {
        match self.ip(f)? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => {
                self.error(
                    &f.span,
                    &f.path,
                    format!("{a} is an IPv6 address; DHCP here is IPv4 only"),
                );
                None
            }
        }
    }

    /// A DNS server to ask: an address, not one this gateway's dnsmasq
    /// listens on (`own`), which would make queries loop.
    fn dns_server(&mut self, f: &Field<'_>, own: &[IpAddr]) -> Option<IpAddr> {
        let a = self.ip(f)?;
        if own.contains(&a) {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "{a} is this gateway's own DNS server (lan.address or wireguard.address): \
                     queries would loop; name another server"
                ),
            );
            return None;
        }
        Some(a)
    }

    fn server_list(&mut self, t: &Table<'_>, key: &str, own: &[IpAddr]) -> Option<Vec<IpAddr>> {
        let Some(f) = self.get(t, key) else {
            return Some(Vec::new());
        };
        let elems = self.array(&f, "IP address strings")?;
        let before = self.errors.len();
        let out: Vec<_> = elems
            .iter()
            .filter_map(|e| self.dns_server(e, own))
            .collect();
        (self.errors.len() == before).then_some(out)
    }

    fn dns_name(&mut self, f: &Field<'_>, label_only: bool) -> Option<String> {
        let s = self.string(f, "a string (a DNS name)")?;
        let s = s.strip_suffix('.').unwrap_or(s);
        let checked = if label_only {
            check_dns_label(s)
        } else {
            check_dns_name(s)
        };
        match checked {
            Ok(()) => Some(s.to_ascii_lowercase()),
            Err(why) => {
                self.error(&f.span, &f.path, why);
                None
            }
        }
    }

    // ---- [lan] -----------------------------------------------------------

    /// `[lan]`, optional: `Some(None)` when absent, `None` on errors.
    pub(super) fn lan(
        &mut self,
        root: &dyn TableLike,
        cx: &LanContext<'_>,
    ) -> Option<Option<LanConfig>> {
        let t = match self.optional_section(root, "lan") {
            Ok(Some(t)) => t,
            Ok(None) => return Some(None),
            Err(()) => return None,
        };
        let before = self.errors.len();
        self.unknown_keys(&t, LAN_KEYS);
        let interface = self.get(&t, "interface").and_then(|f| {
            let s = self.string(&f, "a string (an interface name such as \"eth1\")")?;
            if let Err(why) = check_tun_name(s) {
                self.error(&f.span, &f.path, why.replace("TUN", "interface"));
                return None;
            }
            if let Some(fw) = cx.firewall_lan_interface {
                if fw != s {
                    self.error(
                        &f.span,
                        &f.path,
                        format!(
                            "the LAN interface `{s}` differs from firewall.lan_interface `{fw}`; \
                             set one or make them equal"
                        ),
                    );
                }
            }
            Some(s.to_owned())
        });
        let address = self
            .required(&t, "address")
            .and_then(|f| self.lan_address(&f, cx.lan_prefixes));
        let dhcp = match self.sub_table(&t, "dhcp") {
            Ok(Some(dt)) => address.and_then(|a| self.dhcp(&dt, a, cx.dns_on)),
            Ok(None) | Err(()) => None,
        };
        if self.errors.len() != before {
            return None;
        }
        Some(Some(LanConfig {
            interface,
            address: address?,
            dhcp,
        }))
    }

    /// `lan.address`: an IPv4 host address with the LAN's prefix length,
    /// inside `gateway.lan_prefixes`.
    fn lan_address(&mut self, f: &Field<'_>, lan_prefixes: Option<&[IpNet]>) -> Option<Ipv4Net> {
        let s = self.string(
            f,
            "a string (address/prefix-length, e.g. \"172.16.4.1/24\")",
        )?;
        let Ok(net) = s.parse::<Ipv4Net>() else {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "`{s}` is not an IPv4 address with a prefix length such as \"172.16.4.1/24\""
                ),
            );
            return None;
        };
        if let Some(why) = reserved_host(IpAddr::V4(net.addr()), &IpNet::V4(net)) {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "the gateway address {} is the {why} of {}",
                    net.addr(),
                    net.trunc()
                ),
            );
            return None;
        }
        if let Some(prefixes) = lan_prefixes {
            let lan = IpNet::V4(net.trunc());
            if !prefixes.iter().any(|p| p.contains(&lan)) {
                self.error(
                    &f.span,
                    &f.path,
                    format!(
                        "the LAN {} is not inside gateway.lan_prefixes ({}); add it there",
                        net.trunc(),
                        if prefixes.is_empty() {
                            "empty".to_owned()
                        } else {
                            prefixes
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                );
                return None;
            }
        }
        Some(net)
    }

    /// An address that must be a host of the LAN other than the gateway.
    fn lan_host(&mut self, f: &Field<'_>, lan: Ipv4Net, what: &str) -> Option<Ipv4Addr> {
        let a = self.ipv4(f)?;
        let net = lan.trunc();
        let problem = if !net.contains(&a) {
            Some(format!("{what} {a} is outside the LAN {net} (lan.address)"))
        } else if a == lan.addr() {
            Some(format!(
                "{what} {a} is the gateway's own LAN address (lan.address)"
            ))
        } else {
            reserved_host(IpAddr::V4(a), &IpNet::V4(net))
                .map(|why| format!("{what} {a} is the {why} of {net}"))
        };
        match problem {
            Some(msg) => {
                self.error(&f.span, &f.path, msg);
                None
            }
            None => Some(a),
        }
    }

    /// `[lan.dhcp]` for the LAN `lan`. `None` on errors.
    fn dhcp(&mut self, t: &Table<'_>, lan: Ipv4Net, dns_on: bool) -> Option<DhcpConfig> {
        let before = self.errors.len();
        self.unknown_keys(t, DHCP_KEYS);
        let range = self
            .required(t, "range")
            .and_then(|f| self.dhcp_range(&f, lan));
        let lease_time = match self.get(t, "lease_time") {
            Some(f) => self
                .integer(
                    &f,
                    MIN_LEASE_TIME.as_secs() as i64,
                    MAX_LEASE_TIME.as_secs() as i64,
                    "the lease time in seconds",
                )
                .map(|n| Duration::from_secs(n as u64)),
            None => Some(DEFAULT_LEASE_TIME),
        };
        let router = match self.get(t, "router") {
            Some(f) => self.ipv4(&f).and_then(|a| {
                if !lan.trunc().contains(&a) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("the router {a} is outside the LAN {}", lan.trunc()),
                    );
                    return None;
                }
                Some(a)
            }),
            None => Some(lan.addr()),
        };
        let dns_servers = match self.get(t, "dns_servers") {
            Some(f) => self.array(&f, "IPv4 address strings").map(|elems| {
                elems
                    .iter()
                    .filter_map(|e| self.ipv4(e))
                    .collect::<Vec<_>>()
            }),
            None if dns_on => Some(vec![lan.addr()]),
            None => Some(Vec::new()),
        };
        let statics = self.dhcp_statics(t, lan, range);
        if self.errors.len() != before {
            return None;
        }
        Some(DhcpConfig {
            range: range?,
            lease_time: lease_time?,
            router: router?,
            dns_servers: dns_servers?,
            statics,
        })
    }

    /// `lan.dhcp.range`: `[first, last]` inside the LAN, first <= last, not
    /// covering the gateway's address.
    fn dhcp_range(&mut self, f: &Field<'_>, lan: Ipv4Net) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let elems = self.array(f, "two IPv4 address strings (first and last)")?;
        if elems.len() != 2 {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "expected two addresses, the first and the last of the range (e.g. \
                     [\"172.16.4.100\", \"172.16.4.150\"]), found {}",
                    elems.len()
                ),
            );
            return None;
        }
        let first = self.range_end(&elems[0], lan);
        let last = self.range_end(&elems[1], lan);
        let (first, last) = (first?, last?);
        if first > last {
            self.error(
                &elems[1].span,
                &elems[1].path,
                format!("the range is empty: its last address {last} is below its first {first}"),
            );
            return None;
        }
        if (first..=last).contains(&lan.addr()) {
            self.error(
                &f.span,
                &f.path,
                format!(
                    "the range {first}-{last} contains the gateway's own LAN address {}",
                    lan.addr()
                ),
            );
            return None;
        }
        Some((first, last))
    }

    /// One end of the range: a host of the LAN (may not be the gateway's
    /// address, checked on the whole range).
    fn range_end(&mut self, f: &Field<'_>, lan: Ipv4Net) -> Option<Ipv4Addr> {
        let a = self.ipv4(f)?;
        let net = lan.trunc();
        let problem = if !net.contains(&a) {
            Some(format!(
                "the DHCP range's address {a} is outside the LAN {net} (lan.address)"
            ))
        } else {
            reserved_host(IpAddr::V4(a), &IpNet::V4(net))
                .map(|why| format!("the DHCP range's address {a} is the {why} of {net}"))
        };
        match problem {
            Some(msg) => {
                self.error(&f.span, &f.path, msg);
                None
            }
            None => Some(a),
        }
    }

    /// `[[lan.dhcp.static]]`: every MAC, address and host name unique, every
    /// address a LAN host outside the dynamic range.
    fn dhcp_statics(
        &mut self,
        t: &Table<'_>,
        lan: Ipv4Net,
        range: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Vec<DhcpStatic> {
        let mut out = Vec::new();
        let mut macs: HashMap<MacAddr, String> = HashMap::new();
        let mut addrs: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for st in self.sub_tables(t, "static") {
            self.unknown_keys(&st, STATIC_KEYS);
            let mac = self.required(&st, "mac").and_then(|f| {
                let s = self.string(&f, "a string (a MAC address)")?;
                match s.parse::<MacAddr>() {
                    Ok(m) => {
                        if let Some(first) = macs.get(&m) {
                            self.error(
                                &f.span,
                                &f.path,
                                format!("duplicate MAC address {m} (also {first})"),
                            );
                            return None;
                        }
                        macs.insert(m, st.path.clone());
                        Some(m)
                    }
                    Err(why) => {
                        self.error(&f.span, &f.path, why);
                        None
                    }
                }
            });
            let address = self.required(&st, "address").and_then(|f| {
                let a = self.lan_host(&f, lan, "the static address")?;
                if let Some((first, last)) = range {
                    if (first..=last).contains(&a) {
                        self.error(
                            &f.span,
                            &f.path,
                            format!(
                                "the static address {a} lies inside the dynamic range \
                                 {first}-{last} (lan.dhcp.range); choose one outside it"
                            ),
                        );
                        return None;
                    }
                }
                if let Some(first) = addrs.get(&a) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("duplicate static address {a} (also {first})"),
                    );
                    return None;
                }
                addrs.insert(a, st.path.clone());
                Some(a)
            });
            let hostname = self.get(&st, "hostname").and_then(|f| {
                let n = self.dns_name(&f, true)?;
                if let Some(first) = names.get(&n) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("duplicate host name `{n}` (also {first})"),
                    );
                    return None;
                }
                names.insert(n.clone(), st.path.clone());
                Some(n)
            });
            if let (Some(mac), Some(address)) = (mac, address) {
                out.push(DhcpStatic {
                    mac,
                    address,
                    hostname,
                });
            }
        }
        out
    }

    // ---- [dns] -----------------------------------------------------------

    /// `[dns]`, optional: `Some(None)` when absent, `None` on errors.
    /// `own`: the addresses the gateway's DNS listens on (never a server to
    /// ask).
    pub(super) fn dns(
        &mut self,
        root: &dyn TableLike,
        own: &[IpAddr],
    ) -> Option<Option<DnsConfig>> {
        let t = match self.optional_section(root, "dns") {
            Ok(Some(t)) => t,
            Ok(None) => return Some(None),
            Err(()) => return None,
        };
        let before = self.errors.len();
        self.unknown_keys(&t, DNS_KEYS);
        let domain = self
            .required(&t, "domain")
            .and_then(|f| self.dns_name(&f, false));
        let upstream = self.server_list(&t, "upstream", own);
        let vpn_subdomain = match self.get(&t, "vpn_subdomain") {
            Some(f) => self.dns_name(&f, false),
            None => Some(DEFAULT_VPN_SUBDOMAIN.to_owned()),
        };
        let forwards = self.dns_forwards(&t, own);
        let hosts = self.dns_hosts(&t);
        if self.errors.len() != before {
            return None;
        }
        Some(Some(DnsConfig {
            domain: domain?,
            upstream: upstream?,
            vpn_subdomain: vpn_subdomain?,
            forwards,
            hosts,
        }))
    }

    fn dns_forwards(&mut self, t: &Table<'_>, own: &[IpAddr]) -> Vec<DnsForward> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for ft in self.sub_tables(t, "forward") {
            self.unknown_keys(&ft, FORWARD_KEYS);
            let domain = self.required(&ft, "domain").and_then(|f| {
                let d = self.dns_name(&f, false)?;
                if let Some(first) = seen.get(&d) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("duplicate forwarded domain `{d}` (also {first})"),
                    );
                    return None;
                }
                seen.insert(d.clone(), ft.path.clone());
                Some(d)
            });
            let servers = self.required(&ft, "servers").and_then(|f| {
                let elems = self.array(&f, "IP address strings")?;
                if elems.is_empty() {
                    self.error(
                        &f.span,
                        &f.path,
                        "a forwarded domain needs at least one server (e.g. a Route 53 \
                         Resolver inbound endpoint such as \"10.0.0.2\")",
                    );
                    return None;
                }
                let before = self.errors.len();
                let v: Vec<IpAddr> = elems
                    .iter()
                    .filter_map(|e| self.dns_server(e, own))
                    .collect();
                (self.errors.len() == before).then_some(v)
            });
            if let (Some(domain), Some(servers)) = (domain, servers) {
                out.push(DnsForward { domain, servers });
            }
        }
        out
    }

    fn dns_hosts(&mut self, t: &Table<'_>) -> Vec<DnsHost> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for ht in self.sub_tables(t, "hosts") {
            self.unknown_keys(&ht, HOST_KEYS);
            let name = self.required(&ht, "name").and_then(|f| {
                let n = self.dns_name(&f, false)?;
                if let Some(first) = seen.get(&n) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("duplicate host name `{n}` (also {first})"),
                    );
                    return None;
                }
                seen.insert(n.clone(), ht.path.clone());
                Some(n)
            });
            let address = self.required(&ht, "address").and_then(|f| self.ip(&f));
            if let (Some(name), Some(address)) = (name, address) {
                out.push(DnsHost { name, address });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use crate::config::keys::{generate_private_key, write_secret_file};
    use crate::config::testutil::TempDir;
    use crate::config::{Config, ConfigError};

    /// A valid file with `[lan]`, `[lan.dhcp]` and `[dns]`; tests replace
    /// single values and know their line numbers.
    const BASE: &str = r#"[gateway]
name = "gw"
public_endpoint = "vpn.example.com"
lan_prefixes = ["172.16.4.0/24"]

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"

[lan]
interface = "eth1"
address = "172.16.4.1/24"

[lan.dhcp]
range = ["172.16.4.100", "172.16.4.150"]
lease_time = 3600

[[lan.dhcp.static]]
mac = "52:54:00:00:00:0a"
address = "172.16.4.10"
hostname = "build-vm"

[[lan.dhcp.static]]
mac = "52:54:00:00:00:0b"
address = "172.16.4.11"

[dns]
domain = "lab.internal"
upstream = ["192.0.2.53"]

[[dns.forward]]
domain = "ec2.internal"
servers = ["10.0.0.2"]

[[dns.hosts]]
name = "nas"
address = "172.16.4.5"
"#;

    struct Fixture {
        _dir: TempDir,
        path: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = TempDir::new();
            write_secret_file(
                &dir.path().join("wg.key"),
                generate_private_key().to_string().as_bytes(),
            )
            .unwrap();
            let path = dir.path().join("gateway.toml");
            Fixture { _dir: dir, path }
        }

        fn parse(&self, text: &str) -> Result<Config, Vec<ConfigError>> {
            fs::write(&self.path, text).unwrap();
            Config::parse(&self.path, text).map_err(|e| e.0)
        }

        /// The errors after replacing `from` (found exactly once) by `to`.
        fn errors_with(&self, from: &str, to: &str) -> Vec<ConfigError> {
            assert_eq!(BASE.matches(from).count(), 1, "{from}");
            match self.parse(&BASE.replacen(from, to, 1)) {
                Ok(_) => panic!("expected errors after replacing {from:?} with {to:?}"),
                Err(e) => e,
            }
        }
    }

    #[track_caller]
    fn one(errors: &[ConfigError], line: usize, column: usize, field: &str, needle: &str) {
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{e}"
        );
        assert!(e.message.contains(needle), "{e} lacks {needle:?}");
        assert!(e
            .to_string()
            .contains(&format!("gateway.toml:{line}:{column}: {field}: ")));
    }

    #[test]
    fn base_parses_with_defaults() {
        let fx = Fixture::new();
        let c = fx.parse(BASE).unwrap();
        let lan = c.lan.unwrap();
        assert_eq!(lan.interface.as_deref(), Some("eth1"));
        assert_eq!(lan.address.to_string(), "172.16.4.1/24");
        let dhcp = lan.dhcp.unwrap();
        assert_eq!(dhcp.range.0.to_string(), "172.16.4.100");
        assert_eq!(dhcp.range.1.to_string(), "172.16.4.150");
        assert_eq!(dhcp.lease_time.as_secs(), 3600);
        // Router and DNS default to the gateway's LAN address ([dns] is on).
        assert_eq!(dhcp.router.to_string(), "172.16.4.1");
        assert_eq!(dhcp.dns_servers, vec![lan.address.addr()]);
        assert_eq!(dhcp.statics.len(), 2);
        assert_eq!(dhcp.statics[0].mac.to_string(), "52:54:00:00:00:0a");
        assert_eq!(dhcp.statics[0].hostname.as_deref(), Some("build-vm"));
        assert_eq!(dhcp.statics[1].hostname, None);
        let dns = c.dns.unwrap();
        assert_eq!(dns.domain, "lab.internal");
        assert_eq!(dns.vpn_subdomain, "vpn");
        assert_eq!(dns.vpn_zone(), "vpn.lab.internal");
        assert_eq!(dns.forwards[0].domain, "ec2.internal");
        assert_eq!(dns.hosts[0].name, "nas");
    }

    #[test]
    fn without_dns_the_dhcp_sends_no_dns_server_and_lease_time_defaults() {
        let fx = Fixture::new();
        let text = BASE[..BASE.find("[dns]").unwrap()].replace("lease_time = 3600\n", "");
        let c = fx.parse(&text).unwrap();
        assert!(c.dns.is_none());
        let dhcp = c.lan.unwrap().dhcp.unwrap();
        assert!(dhcp.dns_servers.is_empty());
        assert_eq!(dhcp.lease_time.as_secs(), 7200);
        // No [lan] at all: neither table.
        let c = fx.parse(&BASE[..BASE.find("[lan]").unwrap()]).unwrap();
        assert!(c.lan.is_none() && c.dns.is_none());
    }

    #[test]
    fn range_outside_the_lan() {
        let fx = Fixture::new();
        let e = fx.errors_with("\"172.16.4.150\"]", "\"172.16.5.150\"]");
        one(
            &e,
            15,
            26,
            "lan.dhcp.range[1]",
            "outside the LAN 172.16.4.0/24",
        );
        let e = fx.errors_with("[\"172.16.4.100\"", "[\"172.16.4.0\"");
        one(&e, 15, 10, "lan.dhcp.range[0]", "network address");
        let e = fx.errors_with("[\"172.16.4.100\"", "[\"172.16.4.160\"");
        one(&e, 15, 26, "lan.dhcp.range[1]", "below its first");
        let e = fx.errors_with("[\"172.16.4.100\"", "[\"172.16.4.1\"");
        one(&e, 15, 9, "lan.dhcp.range", "gateway's own LAN address");
        let e = fx.errors_with("[\"172.16.4.100\", ", "[");
        one(&e, 15, 9, "lan.dhcp.range", "expected two addresses");
    }

    #[test]
    fn static_mapping_inside_the_range_or_duplicated() {
        let fx = Fixture::new();
        let e = fx.errors_with("\"172.16.4.10\"", "\"172.16.4.120\"");
        one(
            &e,
            20,
            11,
            "lan.dhcp.static[0].address",
            "inside the dynamic range",
        );
        let e = fx.errors_with("\"172.16.4.11\"", "\"172.16.4.10\"");
        one(
            &e,
            25,
            11,
            "lan.dhcp.static[1].address",
            "duplicate static address",
        );
        let e = fx.errors_with("\"172.16.4.11\"", "\"172.16.9.11\"");
        one(&e, 25, 11, "lan.dhcp.static[1].address", "outside the LAN");
        let e = fx.errors_with("\"172.16.4.11\"", "\"172.16.4.1\"");
        one(&e, 25, 11, "lan.dhcp.static[1].address", "gateway's own");
    }

    #[test]
    fn duplicate_mac() {
        let fx = Fixture::new();
        let e = fx.errors_with("\"52:54:00:00:00:0b\"", "\"52:54:00:00:00:0A\"");
        one(
            &e,
            24,
            7,
            "lan.dhcp.static[1].mac",
            "duplicate MAC address 52:54:00:00:00:0a",
        );
        let e = fx.errors_with("\"52:54:00:00:00:0b\"", "\"52:54:00:00:0b\"");
        one(&e, 24, 7, "lan.dhcp.static[1].mac", "not a MAC address");
    }

    #[test]
    fn hostnames_are_dns_labels() {
        let fx = Fixture::new();
        let e = fx.errors_with("\"build-vm\"", "\"build_vm\"");
        one(&e, 21, 12, "lan.dhcp.static[0].hostname", "not a DNS label");
        let e = fx.errors_with("\"build-vm\"", "\"build.vm\"");
        one(&e, 21, 12, "lan.dhcp.static[0].hostname", "not a DNS label");
    }

    #[test]
    fn forward_without_server() {
        let fx = Fixture::new();
        let e = fx.errors_with("servers = [\"10.0.0.2\"]", "servers = []");
        one(&e, 33, 11, "dns.forward[0].servers", "at least one server");
        let e = fx.errors_with("servers = [\"10.0.0.2\"]\n", "");
        one(
            &e,
            31,
            1,
            "dns.forward[0].servers",
            "missing required key `servers`",
        );
        let e = fx.errors_with("\"ec2.internal\"", "\"ec2..internal\"");
        one(&e, 32, 10, "dns.forward[0].domain", "not a DNS label");
    }

    #[test]
    fn lan_address_and_interface() {
        let fx = Fixture::new();
        let e = fx.errors_with("\"172.16.4.1/24\"", "\"172.16.5.1/24\"");
        // The DHCP table is not checked against a broken LAN address.
        one(&e, 12, 11, "lan.address", "not inside gateway.lan_prefixes");
        let e = fx.errors_with("\"172.16.4.1/24\"", "\"172.16.4.0/24\"");
        one(&e, 12, 11, "lan.address", "network address");
        let e = fx.errors_with("\"172.16.4.1/24\"", "\"fd00::1/64\"");
        one(&e, 12, 11, "lan.address", "not an IPv4 address");
        let e = fx.errors_with("interface = \"eth1\"", "interface = \"eth1\"\nmtu = 1");
        one(&e, 12, 1, "lan.mtu", "unknown key `mtu` in [lan]");
        let e = fx.errors_with("[lan]\n", "[firewall]\nlan_interface = \"eth2\"\n\n[lan]\n");
        one(
            &e,
            14,
            13,
            "lan.interface",
            "differs from firewall.lan_interface",
        );
    }

    #[test]
    fn dns_values() {
        let fx = Fixture::new();
        let e = fx.errors_with("domain = \"lab.internal\"", "domain = \"lab internal\"");
        one(&e, 28, 10, "dns.domain", "not a DNS label");
        let e = fx.errors_with("[\"192.0.2.53\"]", "[\"192.0.2.x\"]");
        one(&e, 29, 13, "dns.upstream[0]", "not an IP address");
        let e = fx.errors_with("[\"192.0.2.53\"]", "[\"192.0.2.53\", \"172.16.4.1\"]");
        one(&e, 29, 27, "dns.upstream[1]", "queries would loop");
        let e = fx.errors_with("[\"10.0.0.2\"]", "[\"172.16.60.1\"]");
        one(
            &e,
            33,
            12,
            "dns.forward[0].servers[0]",
            "queries would loop",
        );
        let e = fx.errors_with(
            "address = \"172.16.4.5\"\n",
            "address = \"172.16.4.5\"\n\n[[dns.hosts]]\nname = \"NAS\"\naddress = \"172.16.4.6\"\n",
        );
        one(&e, 40, 8, "dns.hosts[1].name", "duplicate host name `nas`");
        let e = fx.errors_with("[dns]\n", "[dns]\nvpn_subdomain = \"\"\n");
        one(&e, 28, 17, "dns.vpn_subdomain", "not a DNS name");
    }
}
