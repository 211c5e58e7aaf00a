//! Parsing and validation of `gateway.toml`.
//!
//! The file is parsed with `toml_edit`, which keeps the byte span of every key
//! and value, and then walked by hand so that every problem is reported (not
//! only the first) with `file:line:column`, the field path and a message.
//! Syntactic errors from the TOML parser are mapped the same way.
//!
//! The `[ipsec]` section is checked in the child module `ipsec`, `[aws]` in `aws`.

pub(crate) mod aws;
mod firewall;
mod ipsec;
mod lan;
mod metrics;

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml_edit::{Document, Item, TableLike, Value};

use super::keys::{self, Key};
use super::model::{
    Config, ConfigError, ConfigErrors, GatewayConfig, PeerConfig, PeerEndpoint, WireGuardConfig,
    DEFAULT_CONTROL_SOCKET, DEFAULT_KEEPALIVE, DEFAULT_LISTEN_PORT, DEFAULT_MTU, DEFAULT_TUN_NAME,
    MAX_MTU, MIN_MTU, MIN_MTU_IPV6,
};

/// Keys allowed at the top level.
pub(crate) const ROOT_KEYS: &[&str] = &[
    "gateway",
    "wireguard",
    "peers",
    "ipsec",
    "aws",
    "firewall",
    "metrics",
    "lan",
    "dns",
];
/// Keys allowed in `[gateway]`.
pub(crate) const GATEWAY_KEYS: &[&str] = &[
    "name",
    "public_endpoint",
    "lan_prefixes",
    "control_socket",
    "tun_name",
    "public_address",
];
/// Keys allowed in `[wireguard]`.
pub(crate) const WIREGUARD_KEYS: &[&str] = &[
    "listen_port",
    "address",
    "private_key_file",
    "mtu",
    "remote_prefixes",
];
/// Keys allowed in each `[[peers]]` table.
pub(crate) const PEER_KEYS: &[&str] = &[
    "name",
    "public_key",
    "address",
    "psk_file",
    "private_key_file",
    "keepalive",
    "endpoint",
    "dns",
    "enabled",
];

/// A byte range in the source text, when known.
type Span = Option<Range<usize>>;

/// Maps byte offsets to 1-based line and column (columns count characters).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based (line, column) of a byte offset.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1) - 1;
        let start = self.starts[line];
        let column = match self.text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset - start,
        };
        (line + 1, column + 1)
    }
}

/// Converts a TOML syntax error into a located [`ConfigError`].
pub(crate) fn syntax_error(file: &Path, text: &str, err: &toml_edit::TomlError) -> ConfigError {
    let (line, column) = match err.span() {
        Some(span) => LineIndex::new(text).locate(span.start),
        None => (0, 0),
    };
    let message = err.message().trim().lines().collect::<Vec<_>>().join("; ");
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        field: "syntax".to_owned(),
        message: format!("invalid TOML: {message}"),
    }
}

/// Whether validation reads the laptops' stored private keys
/// (`[[peers]] private_key_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKeys {
    /// Read each one (it must exist, be a key, have mode 0600 or stricter)
    /// and check that it belongs to the peer's `public_key`: one X25519
    /// multiplication per peer. `wgctl check` and `wgctl export`.
    Check,
    /// Check the path only. The daemon never uses a laptop's private key,
    /// and with 10,000 laptops reading and checking them would dominate
    /// every start, reload and edit.
    Skip,
}

impl Config {
    /// Reads, parses and validates a configuration file (including the key files
    /// it names: they must exist, hold a valid key and have mode 0600 or stricter).
    ///
    /// A read error is reported as a single [`ConfigError`] naming the file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with(path, ClientKeys::Check)
    }

    /// [`Config::load`], reading the laptops' private key files or not.
    pub fn load_with(path: &Path, client_keys: ClientKeys) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the configuration file: {e}"),
            }])
        })?;
        Self::parse_with(path, &text, client_keys)
    }

    /// Parses and validates configuration text that was read from `path`
    /// (`path` locates errors and is the base of relative paths).
    ///
    /// All problems are collected and returned sorted by line and column.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        Self::parse_with(path, text, ClientKeys::Check)
    }

    /// [`Config::parse`], reading the laptops' private key files or not.
    pub fn parse_with(
        path: &Path,
        text: &str,
        client_keys: ClientKeys,
    ) -> Result<Config, ConfigErrors> {
        let doc =
            Document::parse(text).map_err(|e| ConfigErrors(vec![syntax_error(path, text, &e)]))?;
        Self::check(path, text, &doc, client_keys)
    }

    /// Validates `doc`, the parse of `text` read from `path` (so that an
    /// editor parses a file once to validate it and to edit it).
    pub(crate) fn check<S>(
        path: &Path,
        text: &str,
        doc: &Document<S>,
        client_keys: ClientKeys,
    ) -> Result<Config, ConfigErrors> {
        let mut checker = Checker {
            client_keys,
            file: path,
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            index: LineIndex::new(text),
            errors: Vec::new(),
        };
        let config = checker.document(doc.as_table());
        let mut errors = checker.errors;
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => {
                if errors.is_empty() {
                    errors.push(ConfigError {
                        file: path.to_path_buf(),
                        line: 0,
                        column: 0,
                        field: String::new(),
                        message: "invalid configuration".to_owned(),
                    });
                }
                errors.sort_by_key(|e| (e.line, e.column));
                Err(ConfigErrors(errors))
            }
        }
    }
}

/// A TOML item or an array element, with the accessors validation needs.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Value(&'d Value),
}

impl<'d> Node<'d> {
    fn as_value(self) -> Option<&'d Value> {
        match self {
            Node::Item(i) => i.as_value(),
            Node::Value(v) => Some(v),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Node::Item(i) => i.type_name(),
            Node::Value(v) => v.type_name(),
        }
    }
}

/// A located field: the node, where it is, and its path.
struct Field<'d> {
    node: Node<'d>,
    span: Span,
    path: String,
}

/// A table-like node being checked.
struct Table<'d> {
    table: &'d dyn TableLike,
    /// Field path prefix (`gateway`, `peers[2]`), empty for the root.
    path: String,
    /// How messages name the table (`[gateway]`, `[[peers]] table peers[2]`).
    label: String,
    /// Where the table is (its header, or its key).
    span: Span,
}

impl<'d> Table<'d> {
    fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A `[[peers]]` entry as far as it could be parsed, with the spans needed by
/// the checks across peers.
#[derive(Default)]
struct PeerDraft {
    name: Option<String>,
    name_span: Span,
    public_key: Option<Key>,
    public_key_span: Span,
    address: Option<IpAddr>,
    address_span: Span,
    psk_file: Option<Option<PathBuf>>,
    private_key_file: Option<Option<PathBuf>>,
    private_key_span: Span,
    client_private_key: Option<Key>,
    keepalive: Option<u16>,
    endpoint: Option<Option<PeerEndpoint>>,
    dns: Option<Vec<IpAddr>>,
    enabled: Option<bool>,
}

struct Checker<'a> {
    client_keys: ClientKeys,
    file: &'a Path,
    base_dir: PathBuf,
    index: LineIndex<'a>,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    fn error(&mut self, span: &Span, field: &str, message: impl Into<String>) {
        let (line, column) = match span {
            Some(r) => self.index.locate(r.start),
            None => (0, 0),
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    // ---- structure -------------------------------------------------------

    fn unknown_keys(&mut self, t: &Table<'_>, allowed: &[&str]) {
        for (key, item) in t.table.iter() {
            if allowed.contains(&key) {
                continue;
            }
            let span = t
                .table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| item.span());
            self.error(
                &span,
                &t.field_path(key),
                format!(
                    "unknown key `{key}` in {}; allowed keys: {}",
                    t.label,
                    allowed.join(", ")
                ),
            );
        }
    }

    fn get<'d>(&self, t: &Table<'d>, key: &str) -> Option<Field<'d>> {
        let (k, item) = t.table.get_key_value(key)?;
        Some(Field {
            node: Node::Item(item),
            span: item.span().or_else(|| k.span()),
            path: t.field_path(key),
        })
    }

    fn required<'d>(&mut self, t: &Table<'d>, key: &str) -> Option<Field<'d>> {
        let f = self.get(t, key);
        if f.is_none() {
            let span = t.span.clone();
            self.error(
                &span,
                &t.field_path(key),
                format!("missing required key `{key}` in {}", t.label),
            );
        }
        f
    }

    /// A nested table at `key` of the root, required.
    fn section<'d>(&mut self, root: &'d dyn TableLike, key: &str) -> Option<Table<'d>> {
        match self.optional_section(root, key) {
            Ok(Some(t)) => Some(t),
            Ok(None) => {
                self.error(&None, key, format!("missing required table [{key}]"));
                None
            }
            Err(()) => None,
        }
    }

    /// An optional top-level table `key`: `Ok(None)` when absent, `Err(())`
    /// (reported) when not a table.
    fn optional_section<'d>(
        &mut self,
        root: &'d dyn TableLike,
        key: &str,
    ) -> Result<Option<Table<'d>>, ()> {
        let Some((k, item)) = root.get_key_value(key) else {
            return Ok(None);
        };
        let span = item.span().or_else(|| k.span());
        match item.as_table_like() {
            Some(table) => Ok(Some(Table {
                table,
                path: key.to_owned(),
                label: format!("[{key}]"),
                span,
            })),
            None => {
                self.error(
                    &span,
                    key,
                    format!("expected a table ([{key}]), found {}", item.type_name()),
                );
                Err(())
            }
        }
    }

    // ---- scalar types ----------------------------------------------------

    fn type_error(&mut self, f: &Field<'_>, expected: &str) {
        let found = f.node.type_name();
        self.error(
            &f.span,
            &f.path,
            format!("expected {expected}, found {found}"),
        );
    }

    fn string<'d>(&mut self, f: &Field<'d>, expected: &str) -> Option<&'d str> {
        match f.node.as_value().and_then(Value::as_str) {
            Some(s) => Some(s),
            None => {
                self.type_error(f, expected);
                None
            }
        }
    }

    fn integer(&mut self, f: &Field<'_>, min: i64, max: i64, what: &str) -> Option<i64> {
        let Some(n) = f.node.as_value().and_then(Value::as_integer) else {
            self.type_error(f, &format!("an integer ({what})"));
            return None;
        };
        if n < min || n > max {
            self.error(
                &f.span,
                &f.path,
                format!("{what} must be between {min} and {max}, found {n}"),
            );
            return None;
        }
        Some(n)
    }

    fn u16_in(&mut self, f: &Field<'_>, min: u16, max: u16, what: &str) -> Option<u16> {
        self.integer(f, i64::from(min), i64::from(max), what)
            .and_then(|n| u16::try_from(n).ok())
    }

    fn u32_in(&mut self, f: &Field<'_>, min: u32, max: u32, what: &str) -> Option<u32> {
        self.integer(f, i64::from(min), i64::from(max), what)
            .and_then(|n| u32::try_from(n).ok())
    }

    fn boolean(&mut self, f: &Field<'_>) -> Option<bool> {
        match f.node.as_value().and_then(Value::as_bool) {
            Some(b) => Some(b),
            None => {
                self.type_error(f, "a boolean (true or false)");
                None
            }
        }
    }

    /// The elements of an array, each as a located field (`path[i]`).
    fn array<'d>(&mut self, f: &Field<'d>, expected: &str) -> Option<Vec<Field<'d>>> {
        let Some(arr) = f.node.as_value().and_then(Value::as_array) else {
            self.type_error(f, &format!("an array of {expected}"));
            return None;
        };
        Some(
            arr.iter()
                .enumerate()
                .map(|(i, v)| Field {
                    node: Node::Value(v),
                    span: v.span().or_else(|| f.span.clone()),
                    path: format!("{}[{i}]", f.path),
                })
                .collect(),
        )
    }

    /// A path string, resolved against the configuration file's directory.
    fn path(&mut self, f: &Field<'_>) -> Option<PathBuf> {
        let s = self.string(f, "a string (a file path)")?;
        if s.is_empty() {
            self.error(&f.span, &f.path, "the path must not be empty");
            return None;
        }
        let p = Path::new(s);
        Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        })
    }

    /// A CIDR prefix with no host bits set (`10.0.0.0/16`).
    fn prefix(&mut self, f: &Field<'_>) -> Option<IpNet> {
        let s = self.string(f, "a string (a CIDR prefix such as \"10.0.0.0/16\")")?;
        let Ok(net) = s.parse::<IpNet>() else {
            let hint = if s.parse::<IpAddr>().is_ok() {
                " (the prefix length is missing, e.g. \"/24\")"
            } else {
                ""
            };
            self.error(
                &f.span,
                &f.path,
                format!("`{s}` is not a CIDR prefix such as \"10.0.0.0/16\"{hint}"),
            );
            return None;
        };
        if net.trunc() != net {
            self.error(
                &f.span,
                &f.path,
                format!("`{s}` has host bits set; did you mean \"{}\"?", net.trunc()),
            );
            return None;
        }
        Some(net)
    }

    fn prefix_list(&mut self, t: &Table<'_>, key: &str, out: &mut Vec<(IpNet, Span, String)>) {
        let Some(f) = self.get(t, key) else { return };
        let Some(elems) = self.array(&f, "CIDR prefix strings") else {
            return;
        };
        for e in elems {
            if let Some(net) = self.prefix(&e) {
                out.push((net, e.span, e.path));
            }
        }
    }

    fn ip(&mut self, f: &Field<'_>) -> Option<IpAddr> {
        let s = self.string(f, "a string (an IP address)")?;
        match s.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if s.contains('/') {
                    " (write the address without a prefix length)"
                } else {
                    ""
                };
                self.error(
                    &f.span,
                    &f.path,
                    format!("`{s}` is not an IP address{hint}"),
                );
                None
            }
        }
    }

    fn key_file(&mut self, span: &Span, field: &str, path: &Path) -> Option<Key> {
        let check = keys::inspect_key_file(path);
        for problem in &check.problems {
            self.error(span, field, problem.to_string());
        }
        check.key
    }

    // ---- tables ----------------------------------------------------------

    fn document(&mut self, root: &dyn TableLike) -> Option<Config> {
        let root_table = Table {
            table: root,
            path: String::new(),
            label: "the top level".to_owned(),
            span: None,
        };
        self.unknown_keys(&root_table, ROOT_KEYS);
        let mut prefixes = Vec::new();
        // The gateway's public address: unknown (None) when [gateway] is broken.
        let mut public_address = None;
        let gateway = self
            .section(root, "gateway")
            .and_then(|t| self.gateway(&t, &mut prefixes, &mut public_address));
        let wireguard = match self.section(root, "wireguard") {
            Some(t) => self.wireguard(&t, &mut prefixes),
            None => WireGuardChecked::default(),
        };
        self.overlaps(&prefixes);
        let peers = self.peers(root, &wireguard);
        let ipsec = self.ipsec(root, &prefixes, public_address);
        let aws = self.aws(root);
        let metrics = self.metrics(root);
        let firewall = self.firewall(
            root,
            &firewall::FirewallContext {
                lan_prefixes: gateway.as_ref().map(|g| g.lan_prefixes.as_slice()),
                peers: peers
                    .as_ref()
                    .map(|v| v.iter().map(|p| p.name.as_str()).collect()),
                own_udp_ports: vec![
                    wireguard
                        .config
                        .as_ref()
                        .map_or(DEFAULT_LISTEN_PORT, |w| w.listen_port),
                    500,
                    4500,
                ],
            },
        );
        let lan = self.lan(
            root,
            &lan::LanContext {
                lan_prefixes: gateway.as_ref().map(|g| g.lan_prefixes.as_slice()),
                firewall_lan_interface: firewall.as_ref().and_then(|f| f.lan_interface.as_deref()),
                dns_on: root.contains_key("dns"),
            },
        );
        // The addresses the gateway's DNS listens on.
        let mut own_dns = Vec::new();
        if let Some(Some(l)) = &lan {
            own_dns.push(IpAddr::V4(l.address.addr()));
        }
        if let Some(a) = wireguard.address {
            own_dns.push(a.addr());
        }
        let dns = self.dns(root, &own_dns);
        Some(Config {
            path: self.file.to_path_buf(),
            gateway: gateway?,
            wireguard: wireguard.config?,
            peers: peers?,
            ipsec: ipsec?,
            aws: aws?,
            firewall: firewall?,
            metrics: metrics?,
            lan: lan?,
            dns: dns?,
        })
    }

    /// `[gateway]`. `public_address` receives the gateway's public address
    /// (`Some(None)`: there is none) when it could be determined.
    fn gateway(
        &mut self,
        t: &Table<'_>,
        prefixes: &mut Vec<(IpNet, Span, String)>,
        public_address: &mut Option<Option<IpAddr>>,
    ) -> Option<GatewayConfig> {
        self.unknown_keys(t, GATEWAY_KEYS);
        let name = self.required(t, "name").and_then(|f| {
            let s = self.string(&f, "a string")?;
            if s.trim().is_empty() || s.chars().any(char::is_control) {
                self.error(
                    &f.span,
                    &f.path,
                    "the gateway name must be non-empty and printable",
                );
                return None;
            }
            Some(s.to_owned())
        });
        let public_endpoint = self.required(t, "public_endpoint").and_then(|f| {
            let s = self.string(&f, "a string (host or host:port)")?;
            if let Err(why) = check_endpoint(s) {
                self.error(&f.span, &f.path, why);
                return None;
            }
            Some(s.to_owned())
        });
        *public_address = match self.get(t, "public_address") {
            Some(f) => self.ip(&f).and_then(|a| {
                if let Err(why) = check_unicast(a) {
                    self.error(
                        &f.span,
                        &f.path,
                        format!("{a} is {why}, not the gateway's public address"),
                    );
                    return None;
                }
                Some(Some(a))
            }),
            None => public_endpoint.as_deref().map(endpoint_ip),
        };
        let first = prefixes.len();
        let lan_ok = {
            let before = self.errors.len();
            self.prefix_list(t, "lan_prefixes", prefixes);
            self.errors.len() == before
        };
        let lan_prefixes: Vec<IpNet> = prefixes[first..].iter().map(|p| p.0).collect();
        let control_socket = match self.get(t, "control_socket") {
            Some(f) => self.path(&f),
            None => Some(PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        };
        let tun_name = match self.get(t, "tun_name") {
            Some(f) => self.string(&f, "a string").and_then(|s| {
                if let Err(why) = check_tun_name(s) {
                    self.error(&f.span, &f.path, why);
                    return None;
                }
                Some(s.to_owned())
            }),
            None => Some(DEFAULT_TUN_NAME.to_owned()),
        };
        Some(GatewayConfig {
            name: name?,
            public_endpoint: public_endpoint?,
            lan_prefixes: if lan_ok { lan_prefixes } else { return None },
            control_socket: control_socket?,
            tun_name: tun_name?,
            public_address: (*public_address)?,
        })
    }

    fn wireguard(
        &mut self,
        t: &Table<'_>,
        prefixes: &mut Vec<(IpNet, Span, String)>,
    ) -> WireGuardChecked {
        self.unknown_keys(t, WIREGUARD_KEYS);
        let listen_port = match self.get(t, "listen_port") {
            Some(f) => self.u16_in(&f, 1, u16::MAX, "the UDP port"),
            None => Some(DEFAULT_LISTEN_PORT),
        };
        let mut address_span = None;
        let address = self.required(t, "address").and_then(|f| {
            address_span = f.span.clone();
            self.gateway_address(&f)
        });
        if let Some(addr) = address {
            prefixes.insert(
                0,
                (
                    addr.trunc(),
                    address_span.clone(),
                    "wireguard.address".into(),
                ),
            );
        }
        let mut gateway_public_key = None;
        let private_key_file = self.required(t, "private_key_file").and_then(|f| {
            let p = self.path(&f)?;
            gateway_public_key = self
                .key_file(&f.span, &f.path, &p)
                .map(|k| keys::public_key(&k));
            Some(p)
        });
        let min_mtu = match address {
            Some(IpNet::V6(_)) => MIN_MTU_IPV6,
            _ => MIN_MTU,
        };
        let mtu = match self.get(t, "mtu") {
            Some(f) => self.u16_in(&f, min_mtu, MAX_MTU, "the MTU"),
            None => Some(DEFAULT_MTU),
        };
        let before = self.errors.len();
        let mut remote = Vec::new();
        self.prefix_list(t, "remote_prefixes", &mut remote);
        let remote_ok = self.errors.len() == before;
        let remote_prefixes = remote.iter().map(|p| p.0).collect();
        prefixes.extend(remote);
        let config = match (listen_port, address, private_key_file, mtu, remote_ok) {
            (Some(listen_port), Some(address), Some(private_key_file), Some(mtu), true) => {
                Some(WireGuardConfig {
                    listen_port,
                    address,
                    private_key_file,
                    mtu,
                    remote_prefixes,
                })
            }
            _ => None,
        };
        WireGuardChecked {
            config,
            address,
            public_key: gateway_public_key,
        }
    }

    /// `wireguard.address`: a host address with the subnet's prefix length.
    fn gateway_address(&mut self, f: &Field<'_>) -> Option<IpNet> {
        let s = self.string(
            f,
            "a string (address/prefix-length, e.g. \"172.16.60.1/24\")",
        )?;
        let Ok(net) = s.parse::<IpNet>() else {
            self.error(
                &f.span,
                &f.path,
                format!("`{s}` is not an address with a prefix length such as \"172.16.60.1/24\""),
            );
            return None;
        };
        if let Some(why) = reserved_host(net.addr(), &net) {
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
        Some(net)
    }

    /// Reports every pair of overlapping prefixes, at the later of the two.
    fn overlaps(&mut self, prefixes: &[(IpNet, Span, String)]) {
        for (j, (b, b_span, b_path)) in prefixes.iter().enumerate() {
            for (a, _, a_path) in &prefixes[..j] {
                if a.contains(b) || b.contains(a) {
                    let what = if a == b { "duplicates" } else { "overlaps" };
                    self.error(
                        b_span,
                        b_path,
                        format!("{b} {what} {a} ({a_path}); prefixes must not overlap"),
                    );
                }
            }
        }
    }

    /// The tables of an array of tables (`[[peers]]`) or of an array of inline
    /// tables, each with its span; `path` names the array (`peers`,
    /// `ipsec.tunnels`). `None` when the item is neither.
    fn table_array<'d>(
        &mut self,
        item: &'d Item,
        span: Span,
        path: &str,
    ) -> Option<Vec<(&'d dyn TableLike, Span)>> {
        match item {
            Item::ArrayOfTables(aot) => Some(
                aot.iter()
                    .map(|t| (t as &dyn TableLike, t.span().or_else(|| span.clone())))
                    .collect(),
            ),
            Item::Value(Value::Array(arr)) => {
                let mut v = Vec::new();
                for (i, elem) in arr.iter().enumerate() {
                    match elem.as_inline_table() {
                        Some(t) => v.push((t as &dyn TableLike, elem.span())),
                        None => self.error(
                            &elem.span(),
                            &format!("{path}[{i}]"),
                            format!("expected a table, found {}", elem.type_name()),
                        ),
                    }
                }
                Some(v)
            }
            other => {
                self.error(
                    &span,
                    path,
                    format!(
                        "expected an array of tables ([[{path}]]), found {}",
                        other.type_name()
                    ),
                );
                None
            }
        }
    }

    fn peers(&mut self, root: &dyn TableLike, wg: &WireGuardChecked) -> Option<Vec<PeerConfig>> {
        let Some((key, item)) = root.get_key_value("peers") else {
            return Some(Vec::new());
        };
        let span = item.span().or_else(|| key.span());
        let tables = self.table_array(item, span, "peers")?;
        let drafts: Vec<PeerDraft> = tables
            .into_iter()
            .enumerate()
            .map(|(i, (table, span))| {
                self.peer(&Table {
                    table,
                    path: format!("peers[{i}]"),
                    label: format!("[[peers]] table peers[{i}]"),
                    span,
                })
            })
            .collect();
        self.cross_check_peers(&drafts, wg);
        drafts
            .into_iter()
            .map(|d| {
                Some(PeerConfig {
                    name: d.name?,
                    public_key: d.public_key?,
                    address: d.address?,
                    psk_file: d.psk_file?,
                    private_key_file: d.private_key_file?,
                    keepalive: d.keepalive?,
                    endpoint: d.endpoint?,
                    dns: d.dns?,
                    enabled: d.enabled?,
                })
            })
            .collect()
    }

    fn peer(&mut self, t: &Table<'_>) -> PeerDraft {
        self.unknown_keys(t, PEER_KEYS);
        let mut d = PeerDraft::default();
        if let Some(f) = self.required(t, "name") {
            d.name_span = f.span.clone();
            if let Some(s) = self.string(&f, "a string") {
                match check_peer_name(s) {
                    Ok(()) => d.name = Some(s.to_owned()),
                    Err(why) => self.error(&f.span, &f.path, why),
                }
            }
        }
        if let Some(f) = self.required(t, "public_key") {
            d.public_key_span = f.span.clone();
            if let Some(s) = self.string(&f, "a string (a base64 key)") {
                match s.parse::<Key>() {
                    Ok(k) => d.public_key = Some(k),
                    Err(why) => self.error(&f.span, &f.path, format!("invalid public key: {why}")),
                }
            }
        }
        if let Some(f) = self.required(t, "address") {
            d.address_span = f.span.clone();
            d.address = self.ip(&f);
        }
        d.psk_file = match self.get(t, "psk_file") {
            Some(f) => self.path(&f).map(|p| {
                self.key_file(&f.span, &f.path, &p);
                Some(p)
            }),
            None => Some(None),
        };
        d.private_key_file = match self.get(t, "private_key_file") {
            Some(f) => self.path(&f).map(|p| {
                d.private_key_span = f.span.clone();
                if self.client_keys == ClientKeys::Check {
                    d.client_private_key = self.key_file(&f.span, &f.path, &p);
                }
                Some(p)
            }),
            None => Some(None),
        };
        d.keepalive = match self.get(t, "keepalive") {
            Some(f) => self.u16_in(&f, 0, u16::MAX, "the keepalive interval in seconds"),
            None => Some(DEFAULT_KEEPALIVE),
        };
        d.dns = match self.get(t, "dns") {
            Some(f) => self.array(&f, "IP address strings").and_then(|elems| {
                let addrs: Vec<Option<IpAddr>> = elems.iter().map(|e| self.ip(e)).collect();
                addrs.into_iter().collect()
            }),
            None => Some(Vec::new()),
        };
        d.enabled = match self.get(t, "enabled") {
            Some(f) => self.boolean(&f),
            None => Some(true),
        };
        d.endpoint = match self.get(t, "endpoint") {
            // A disabled peer's host name is not looked up: it is inert.
            Some(f) => self.peer_endpoint(&f, d.enabled.unwrap_or(true)).map(Some),
            None => Some(None),
        };
        d
    }

    /// A site peer's `endpoint`: `host:port` or `address:port` (IPv4),
    /// resolved now when `resolve` (the peer is enabled).
    fn peer_endpoint(&mut self, f: &Field<'_>, resolve: bool) -> Option<PeerEndpoint> {
        let s = self.string(f, "a string (\"host:port\", e.g. \"198.51.100.7:51820\")")?;
        let (host, port) = match parse_endpoint(s) {
            Ok(hp) => hp,
            Err(why) => {
                self.error(&f.span, &f.path, why);
                return None;
            }
        };
        let addr = if resolve {
            match resolve_endpoint(host, port) {
                Ok(a) => Some(a),
                Err(why) => {
                    self.error(&f.span, &f.path, why);
                    return None;
                }
            }
        } else {
            None
        };
        Some(PeerEndpoint {
            text: s.to_owned(),
            addr,
        })
    }

    fn cross_check_peers(&mut self, drafts: &[PeerDraft], wg: &WireGuardChecked) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut pubkeys: HashMap<Key, usize> = HashMap::new();
        let mut addrs: HashMap<IpAddr, usize> = HashMap::new();
        let gw_addr = wg.address;
        let gw_pub = wg.public_key;
        for (i, d) in drafts.iter().enumerate() {
            let path = |k: &str| format!("peers[{i}].{k}");
            if let Some(name) = &d.name {
                if let Some(&first) = names.get(name.as_str()) {
                    self.error(
                        &d.name_span,
                        &path("name"),
                        format!("duplicate peer name `{name}` (also peers[{first}])"),
                    );
                } else {
                    names.insert(name, i);
                }
            }
            if let Some(pk) = d.public_key {
                if Some(pk) == gw_pub {
                    self.error(
                        &d.public_key_span,
                        &path("public_key"),
                        "this is the gateway's own public key (from wireguard.private_key_file)",
                    );
                }
                if let Some(&first) = pubkeys.get(&pk) {
                    self.error(
                        &d.public_key_span,
                        &path("public_key"),
                        format!(
                            "duplicate public key (also used by {})",
                            peer_label(drafts, first)
                        ),
                    );
                } else {
                    pubkeys.insert(pk, i);
                }
                if let Some(private) = d.client_private_key {
                    if keys::public_key(&private) != pk {
                        self.error(
                            &d.private_key_span,
                            &path("private_key_file"),
                            "the key in this file does not belong to this peer's public_key",
                        );
                    }
                }
            }
            if let Some(addr) = d.address {
                if let Some(gw) = gw_addr {
                    let subnet = gw.trunc();
                    if !subnet.contains(&addr) {
                        self.error(
                            &d.address_span,
                            &path("address"),
                            format!("{addr} is outside the WireGuard subnet {subnet}"),
                        );
                    } else if addr == gw.addr() {
                        self.error(
                            &d.address_span,
                            &path("address"),
                            format!("{addr} is the gateway's own address (wireguard.address)"),
                        );
                    } else if let Some(why) = reserved_host(addr, &subnet) {
                        self.error(
                            &d.address_span,
                            &path("address"),
                            format!("{addr} is the {why} of {subnet}"),
                        );
                    }
                }
                if let Some(&first) = addrs.get(&addr) {
                    self.error(
                        &d.address_span,
                        &path("address"),
                        format!(
                            "address {addr} is also used by {}",
                            peer_label(drafts, first)
                        ),
                    );
                } else {
                    addrs.insert(addr, i);
                }
            }
        }
    }
}

/// Splits a site peer's `endpoint` into host and port, refusing what the
/// gateway cannot dial: no port, IPv6 (the WireGuard socket is IPv4 only),
/// a host that is neither an IPv4 address nor a DNS name, an address that
/// is no unicast host.
pub(crate) fn parse_endpoint(s: &str) -> Result<(&str, u16), String> {
    const FORM: &str = "write it as \"host:port\", e.g. \"198.51.100.7:51820\"";
    if s.starts_with('[') || s.matches(':').count() > 1 {
        return Err(format!(
            "`{s}`: IPv6 endpoints are refused (ipieced's WireGuard socket listens on 0.0.0.0 only)"
        ));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` has no port; {FORM}"));
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(format!("`{port}` is not a UDP port (1-65535); {FORM}")),
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host; {FORM}"));
    }
    if let Ok(a) = host.parse::<std::net::Ipv4Addr>() {
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
            return Err(format!("{a} is no address a peer can be reached at"));
        }
        return Ok((host, port));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253
        || !name.split('.').all(label_ok)
        || name.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return Err(format!(
            "`{host}` is neither an IPv4 address nor a host name; {FORM}"
        ));
    }
    Ok((host, port))
}

/// Resolves a site peer's host to its first IPv4 address (the gateway's
/// WireGuard socket is IPv4 only).
fn resolve_endpoint(host: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
    let mut v4 = addrs.filter(std::net::SocketAddr::is_ipv4);
    v4.next().ok_or_else(|| {
        format!("`{host}` has no IPv4 address (ipieced's WireGuard socket is IPv4 only)")
    })
}

/// What was learned from `[wireguard]`: the whole table when valid, and the
/// parts the peer checks need even when other fields are wrong.
#[derive(Default)]
struct WireGuardChecked {
    config: Option<WireGuardConfig>,
    /// `wireguard.address`, when valid.
    address: Option<IpNet>,
    /// The gateway's public key, when its key file was readable.
    public_key: Option<Key>,
}

/// `peers[i]` with its name when known: "peers[0] (`alice`)".
fn peer_label(drafts: &[PeerDraft], i: usize) -> String {
    match drafts.get(i).and_then(|d| d.name.as_deref()) {
        Some(n) => format!("peers[{i}] (`{n}`)"),
        None => format!("peers[{i}]"),
    }
}

/// `Some("network address")` / `Some("broadcast address")` when `addr` cannot be a
/// host of the IPv4 subnet `net` (prefixes up to /30; /31 and /32 have no such
/// addresses, RFC 3021).
pub(crate) fn reserved_host(addr: IpAddr, net: &IpNet) -> Option<&'static str> {
    match (addr, net) {
        (IpAddr::V4(a), IpNet::V4(n)) if n.prefix_len() <= 30 => {
            if a == n.network() {
                Some("network address")
            } else if a == n.broadcast() {
                Some("broadcast address")
            } else {
                None
            }
        }
        _ => None,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// A peer name: `[A-Za-z0-9_.-]{1,64}`.
pub(crate) fn check_peer_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(is_name_char) {
        return Err(format!(
            "invalid peer name `{}`: use 1 to 64 characters of A-Z a-z 0-9 _ . -",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// A Linux interface name: 1 to 15 characters of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub(crate) fn check_tun_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 || !s.chars().all(is_name_char) || s == "." || s == ".." {
        return Err(format!(
            "invalid interface name `{}`: use 1 to 15 characters of A-Z a-z 0-9 _ . -",
            s.escape_debug()
        ));
    }
    Ok(())
}

/// Why `addr` cannot be a unicast host address (the unspecified address,
/// multicast, the IPv4 broadcast address), if it cannot.
pub(crate) fn check_unicast(addr: IpAddr) -> Result<(), &'static str> {
    if addr.is_unspecified() {
        Err("the unspecified address")
    } else if addr.is_multicast() {
        Err("a multicast address")
    } else if addr == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Err("the broadcast address")
    } else {
        Ok(())
    }
}

/// The IP address in a valid endpoint (`203.0.113.7`, `203.0.113.7:443`,
/// `[2001:db8::1]:51821`), or `None` when its host is a name.
pub(crate) fn endpoint_ip(endpoint: &str) -> Option<IpAddr> {
    if let Ok(a) = endpoint.parse::<IpAddr>() {
        return Some(a);
    }
    if let Some(rest) = endpoint.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, _port) = endpoint.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IP address.
pub(crate) fn check_endpoint(s: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid endpoint `{}`: {why}; expected a host name or address, optionally with :port",
            s.escape_debug()
        ))
    };
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("missing `]`");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address inside [ ]");
        }
        match after {
            "" => return Ok(()),
            _ => match after.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad("unexpected text after `]`"),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n != 0 => {}
            _ => return bad("the port must be a number from 1 to 65535"),
        }
    }
    if let Some(h) = host {
        if h.parse::<std::net::Ipv4Addr>().is_ok() {
            return Ok(());
        }
        let h = h.strip_suffix('.').unwrap_or(h);
        let valid = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return bad("not a valid host name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::{generate_private_key, public_key, write_secret_file};
    use crate::config::testutil::TempDir;
    use base64::Engine;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// The base test configuration; tests edit single lines and know their numbers.
    const BASE: &str = r#"# ipiece test configuration
[gateway]
name = "gw"
public_endpoint = "vpn.example.com"
lan_prefixes = ["172.16.4.0/24"]
control_socket = "ctl.sock"
tun_name = "ipiece0"

[wireguard]
listen_port = 51821
address = "172.16.60.1/24"
private_key_file = "wg.key"
mtu = 1420
remote_prefixes = ["10.0.0.0/16"]

# alice's laptop
[[peers]]
name = "alice"
public_key = "ALICE_PUB"
address = "172.16.60.2"

[[peers]]
name = "bob"
public_key = "BOB_PUB"
address = "172.16.60.3"
psk_file = "bob.psk"
private_key_file = "bob.key"
keepalive = 0
dns = ["172.16.4.1", "fd00::53"]
enabled = false
"#;

    struct Fixture {
        dir: TempDir,
        path: PathBuf,
        text: String,
        gw_pub: Key,
        alice_pub: Key,
        bob_pub: Key,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = TempDir::new();
            let gw = generate_private_key();
            let bob = generate_private_key();
            let alice_pub = public_key(&generate_private_key());
            write_secret_file(&dir.path().join("wg.key"), format!("{gw}\n").as_bytes()).unwrap();
            write_secret_file(&dir.path().join("bob.key"), format!("{bob}\n").as_bytes()).unwrap();
            write_secret_file(
                &dir.path().join("bob.psk"),
                format!("{}\n", generate_private_key()).as_bytes(),
            )
            .unwrap();
            let text = BASE
                .replace("ALICE_PUB", &alice_pub.to_string())
                .replace("BOB_PUB", &public_key(&bob).to_string());
            let path = dir.path().join("gateway.toml");
            fs::write(&path, &text).unwrap();
            Fixture {
                path,
                text,
                gw_pub: public_key(&gw),
                alice_pub,
                bob_pub: public_key(&bob),
                dir,
            }
        }

        fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
            Config::parse(&self.path, text)
        }

        /// The errors for the base text with `from` replaced by `to` (exactly once).
        fn errors_with(&self, from: &str, to: &str) -> Vec<ConfigError> {
            assert_eq!(self.text.matches(from).count(), 1, "{from}");
            let text = self.text.replacen(from, to, 1);
            match self.parse(&text) {
                Ok(_) => panic!("expected errors after replacing {from:?} with {to:?}"),
                Err(e) => e.0,
            }
        }
    }

    /// Asserts there is exactly one error, at line:column, for `field`, whose
    /// message contains `needle`.
    #[track_caller]
    pub(super) fn one(
        errors: &[ConfigError],
        line: usize,
        column: usize,
        field: &str,
        needle: &str,
    ) {
        assert_eq!(errors.len(), 1, "{errors:#?}");
        has(errors, line, column, field, needle);
    }

    #[track_caller]
    fn has(errors: &[ConfigError], line: usize, column: usize, field: &str, needle: &str) {
        assert!(
            errors.iter().any(|e| e.line == line
                && e.column == column
                && e.field == field
                && e.message.contains(needle)),
            "no error {line}:{column} {field} ~ {needle:?} in {:#?}",
            errors
        );
    }

    #[test]
    fn base_config_parses_with_resolved_paths() {
        let fx = Fixture::new();
        let c = fx.parse(&fx.text).unwrap();
        let d = fx.dir.path();
        assert_eq!(c.path, fx.path);
        assert_eq!(c.gateway.name, "gw");
        assert_eq!(c.gateway.public_endpoint, "vpn.example.com");
        assert_eq!(
            c.gateway.lan_prefixes,
            vec!["172.16.4.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(c.gateway.control_socket, d.join("ctl.sock"));
        assert_eq!(c.gateway.tun_name, "ipiece0");
        assert_eq!(c.wireguard.listen_port, 51821);
        assert_eq!(
            c.wireguard.address,
            "172.16.60.1/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(c.wireguard.private_key_file, d.join("wg.key"));
        assert_eq!(c.wireguard.mtu, 1420);
        assert_eq!(c.peers.len(), 2);
        let alice = &c.peers[0];
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.public_key, fx.alice_pub);
        assert_eq!(alice.address, "172.16.60.2".parse::<IpAddr>().unwrap());
        assert_eq!(alice.psk_file, None);
        assert_eq!(alice.private_key_file, None);
        assert_eq!(alice.keepalive, DEFAULT_KEEPALIVE);
        assert!(alice.dns.is_empty());
        assert!(alice.enabled);
        let bob = c.peer("bob").unwrap();
        assert_eq!(bob.public_key, fx.bob_pub);
        assert_eq!(bob.psk_file, Some(d.join("bob.psk")));
        assert_eq!(bob.private_key_file, Some(d.join("bob.key")));
        assert_eq!(bob.keepalive, 0);
        assert_eq!(
            bob.dns,
            vec![
                "172.16.4.1".parse::<IpAddr>().unwrap(),
                "fd00::53".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(!bob.enabled);
        // load() agrees with parse().
        assert_eq!(Config::load(&fx.path).unwrap(), c);
    }

    #[test]
    fn defaults_apply_and_absolute_paths_stay() {
        let fx = Fixture::new();
        let key = fx.dir.path().join("wg.key");
        let text = format!(
            "[gateway]\nname = \"g\"\npublic_endpoint = \"1.2.3.4:51821\"\n\
             [wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"{}\"\n",
            key.display()
        );
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.gateway.lan_prefixes, vec![]);
        assert_eq!(
            c.gateway.control_socket,
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        assert_eq!(c.gateway.tun_name, DEFAULT_TUN_NAME);
        assert_eq!(c.wireguard.listen_port, DEFAULT_LISTEN_PORT);
        assert_eq!(c.wireguard.mtu, DEFAULT_MTU);
        assert_eq!(c.wireguard.private_key_file, key);
        assert!(c.wireguard.remote_prefixes.is_empty());
        assert!(c.peers.is_empty());
    }

    #[test]
    fn seed_config_parses() {
        let dir = TempDir::new();
        let seed = include_str!("../../configs/gateway.toml");
        let path = dir.path().join("gateway.toml");
        fs::write(&path, seed).unwrap();
        write_secret_file(
            &dir.path().join("wg.key"),
            generate_private_key().to_string().as_bytes(),
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.gateway.name, "ipiece");
        assert_eq!(c.gateway.tun_name, "ipiece0");
        assert_eq!(c.wireguard.listen_port, 51821);
        assert_eq!(c.wireguard.private_key_file, dir.path().join("wg.key"));
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9586".parse().unwrap()));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let allowed: Vec<String> = c
            .client_allowed_ips()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(allowed, ["172.16.60.0/24", "172.16.4.0/24", "10.0.0.0/16"]);
        assert!(c.peers.is_empty());
        // The IPsec example is commented out; the endpoint is a host name.
        assert!(c.ipsec.tunnels.is_empty());
        assert_eq!(c.gateway.public_address, None);
        // Without the key file the seed is rejected at the private_key_file value.
        fs::remove_file(dir.path().join("wg.key")).unwrap();
        let errs = Config::load(&path).unwrap_err().0;
        one(
            &errs,
            34,
            20,
            "wireguard.private_key_file",
            "does not exist",
        );
    }

    #[test]
    fn load_read_error_names_the_file() {
        let dir = TempDir::new();
        let path = dir.path().join("missing.toml");
        let errs = Config::load(&path).unwrap_err();
        assert_eq!(errs.len(), 1);
        let e = &errs.0[0];
        assert_eq!(e.file, path);
        assert_eq!((e.line, e.column), (0, 0));
        assert!(errs
            .to_string()
            .starts_with(&format!("{}: cannot read", path.display())));
    }

    #[test]
    fn syntax_errors_are_located() {
        let fx = Fixture::new();
        let errs = fx.errors_with("mtu = 1420", "mtu = = 1420");
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(e.field, "syntax");
        assert_eq!(e.line, 13);
        assert!(e.column >= 7, "{e}");
        assert!(e.message.starts_with("invalid TOML"), "{e}");
        // A duplicate key is a syntax error too.
        let errs = fx.errors_with(
            "tun_name = \"ipiece0\"\n",
            "tun_name = \"a\"\ntun_name = \"b\"\n",
        );
        assert_eq!(errs[0].line, 8, "{errs:?}");
        assert_eq!(errs[0].field, "syntax");
        // Columns count characters, not bytes.
        let errs = fx.errors_with("name = \"gw\"", "name = \"ĝŵ\" x");
        assert_eq!((errs[0].line, errs[0].column), (3, 13), "{errs:?}");
    }

    #[test]
    fn unknown_keys_everywhere() {
        let fx = Fixture::new();
        let errs = fx.errors_with("# ipiece test configuration\n", "debug = true\n");
        one(
            &errs,
            1,
            1,
            "debug",
            "unknown key `debug` in the top level; allowed keys: gateway, wireguard, peers",
        );

        let errs = fx.errors_with("tun_name = \"ipiece0\"", "tun_nmae = \"ipiece0\"");
        one(
            &errs,
            7,
            1,
            "gateway.tun_nmae",
            "unknown key `tun_nmae` in [gateway]; allowed keys: name, public_endpoint, lan_prefixes, control_socket, tun_name, public_address",
        );

        let errs = fx.errors_with("mtu = 1420", "mtu = 1420\nfwmark = 1");
        one(
            &errs,
            14,
            1,
            "wireguard.fwmark",
            "allowed keys: listen_port, address",
        );

        let errs = fx.errors_with(
            "address = \"172.16.60.2\"",
            "address = \"172.16.60.2\"\n  allowed_ips = []",
        );
        one(
            &errs,
            21,
            3,
            "peers[0].allowed_ips",
            "unknown key `allowed_ips` in [[peers]] table peers[0]; allowed keys: name, public_key, address, psk_file, private_key_file, keepalive, endpoint, dns, enabled",
        );

        let errs = fx.errors_with("# alice's laptop\n", "[ipsec]\nmode = 1\n");
        one(
            &errs,
            17,
            1,
            "ipsec.mode",
            "unknown key `mode` in [ipsec]; allowed keys: replay_window, nat_keepalive, tcp_mss, \
             tunnel_mtu, tunnels",
        );
        let errs = fx.errors_with("# alice's laptop\n", "[cloud]\nregion = 1\n");
        one(
            &errs,
            16,
            2,
            "cloud",
            "unknown key `cloud` in the top level; allowed keys: gateway, wireguard, peers, ipsec, aws",
        );
    }

    #[test]
    fn missing_required_keys_name_the_table() {
        let fx = Fixture::new();
        let errs = fx.errors_with("name = \"gw\"\n", "");
        one(
            &errs,
            2,
            1,
            "gateway.name",
            "missing required key `name` in [gateway]",
        );
        let errs = fx.errors_with("public_endpoint = \"vpn.example.com\"\n", "");
        one(
            &errs,
            2,
            1,
            "gateway.public_endpoint",
            "missing required key `public_endpoint` in [gateway]",
        );
        let errs = fx.errors_with("address = \"172.16.60.1/24\"\n", "");
        // Without a subnet the peers cannot be placed, but nothing else is reported.
        one(
            &errs,
            9,
            1,
            "wireguard.address",
            "missing required key `address` in [wireguard]",
        );
        let errs = fx.errors_with("private_key_file = \"wg.key\"\n", "");
        one(&errs, 9, 1, "wireguard.private_key_file", "in [wireguard]");
        let errs = fx.errors_with("address = \"172.16.60.3\"\n", "");
        one(
            &errs,
            22,
            1,
            "peers[1].address",
            "missing required key `address` in [[peers]] table peers[1]",
        );
        let errs = fx.errors_with("name = \"alice\"\n", "");
        one(&errs, 17, 1, "peers[0].name", "missing required key `name`");
        let alice_line = format!("public_key = \"{}\"\n", fx.alice_pub);
        let errs = fx.errors_with(&alice_line, "");
        one(
            &errs,
            17,
            1,
            "peers[0].public_key",
            "missing required key `public_key`",
        );
    }

    #[test]
    fn missing_tables() {
        let fx = Fixture::new();
        let errs = fx.errors_with("[gateway]\n", "[gw]\n");
        has(&errs, 0, 0, "gateway", "missing required table [gateway]");
        has(&errs, 2, 2, "gw", "unknown key `gw`");
        let errs = fx.parse("").unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        has(&errs, 0, 0, "gateway", "missing required table [gateway]");
        has(
            &errs,
            0,
            0,
            "wireguard",
            "missing required table [wireguard]",
        );
        let text = "wireguard = 5\n[gateway]\nname = \"g\"\npublic_endpoint = \"h\"\n";
        let errs = fx.parse(text).unwrap_err().0;
        one(
            &errs,
            1,
            13,
            "wireguard",
            "expected a table ([wireguard]), found integer",
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let fx = Fixture::new();
        let errs = fx.errors_with("mtu = 1420", "mtu = \"1420\"");
        one(
            &errs,
            13,
            7,
            "wireguard.mtu",
            "expected an integer (the MTU), found string",
        );
        let errs = fx.errors_with(
            "lan_prefixes = [\"172.16.4.0/24\"]",
            "lan_prefixes = \"172.16.4.0/24\"",
        );
        one(
            &errs,
            5,
            16,
            "gateway.lan_prefixes",
            "expected an array of CIDR prefix strings, found string",
        );
        let errs = fx.errors_with(
            "lan_prefixes = [\"172.16.4.0/24\"]",
            "lan_prefixes = [\"172.16.4.0/24\", 7]",
        );
        one(
            &errs,
            5,
            34,
            "gateway.lan_prefixes[1]",
            "expected a string (a CIDR prefix",
        );
        let errs = fx.errors_with("enabled = false", "enabled = \"no\"");
        one(
            &errs,
            30,
            11,
            "peers[1].enabled",
            "expected a boolean (true or false), found string",
        );
        let errs = fx.errors_with("name = \"gw\"", "name = 1");
        one(
            &errs,
            3,
            8,
            "gateway.name",
            "expected a string, found integer",
        );
        let errs = fx.errors_with("keepalive = 0", "keepalive = 2.5");
        one(
            &errs,
            28,
            13,
            "peers[1].keepalive",
            "expected an integer (the keepalive interval in seconds), found float",
        );
        let errs = fx.errors_with(
            "dns = [\"172.16.4.1\", \"fd00::53\"]",
            "dns = [\"172.16.4.1\", \"fd00::5g\"]",
        );
        one(
            &errs,
            29,
            22,
            "peers[1].dns[1]",
            "`fd00::5g` is not an IP address",
        );
        let errs = fx.errors_with("keepalive = 0", "keepalive = 70000");
        one(
            &errs,
            28,
            13,
            "peers[1].keepalive",
            "between 0 and 65535, found 70000",
        );
        let errs = fx.errors_with("psk_file = \"bob.psk\"", "psk_file = [\"bob.psk\"]");
        one(
            &errs,
            26,
            12,
            "peers[1].psk_file",
            "expected a string (a file path), found array",
        );
    }

    #[test]
    fn peers_must_be_tables() {
        let fx = Fixture::new();
        let end = fx.text.find("# alice's laptop").unwrap();
        let text = format!("peers = 3\n{}", &fx.text[..end]);
        let errs = fx.parse(&text).unwrap_err().0;
        one(
            &errs,
            1,
            9,
            "peers",
            "expected an array of tables ([[peers]]), found integer",
        );
    }

    #[test]
    fn inline_peer_tables_are_accepted() {
        let fx = Fixture::new();
        let base_end = fx.text.find("# alice's laptop").unwrap();
        let text = format!(
            "peers = [{{ name = \"carol\", public_key = \"{}\", address = \"172.16.60.9\" }}, 5]\n{}",
            fx.alice_pub,
            &fx.text[..base_end]
        );
        let errs = fx.parse(&text).unwrap_err().0;
        one(&errs, 1, 116, "peers[1]", "expected a table, found integer");
        let text = text.replace(", 5]", "]");
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.peers[0].name, "carol");
        assert_eq!(c.peers[0].public_key, fx.alice_pub);
    }

    #[test]
    fn ranges_and_names() {
        let fx = Fixture::new();
        let errs = fx.errors_with("mtu = 1420", "mtu = 100");
        one(
            &errs,
            13,
            7,
            "wireguard.mtu",
            "the MTU must be between 576 and 9000, found 100",
        );
        let errs = fx.errors_with("mtu = 1420", "mtu = 9001");
        one(&errs, 13, 7, "wireguard.mtu", "found 9001");
        let errs = fx.errors_with("listen_port = 51821", "listen_port = 0");
        one(
            &errs,
            10,
            15,
            "wireguard.listen_port",
            "between 1 and 65535, found 0",
        );
        let errs = fx.errors_with("listen_port = 51821", "listen_port = 65536");
        one(&errs, 10, 15, "wireguard.listen_port", "found 65536");
        for bad in ["", "ipiece0-is-too-long", "ipi/ce", "ip ce", "..", "é"] {
            let errs = fx.errors_with("tun_name = \"ipiece0\"", &format!("tun_name = \"{bad}\""));
            one(&errs, 7, 12, "gateway.tun_name", "invalid interface name");
        }
        for good in ["a", "wg.0-x_y", "abcdefghijklmno"] {
            let text = fx
                .text
                .replace("tun_name = \"ipiece0\"", &format!("tun_name = \"{good}\""));
            assert_eq!(fx.parse(&text).unwrap().gateway.tun_name, good);
        }
        for bad in ["", "bob smith", "bob/laptop", &"x".repeat(65)] {
            let errs = fx.errors_with("name = \"bob\"", &format!("name = \"{bad}\""));
            one(&errs, 23, 8, "peers[1].name", "invalid peer name");
        }
        let errs = fx.errors_with("name = \"gw\"", "name = \"  \"");
        one(&errs, 3, 8, "gateway.name", "non-empty");
    }

    #[test]
    fn endpoints() {
        for good in [
            "vpn.example.com",
            "vpn.example.com:51821",
            "vpn.example.com.",
            "203.0.113.7",
            "203.0.113.7:443",
            "2001:db8::1",
            "[2001:db8::1]",
            "[2001:db8::1]:51821",
            "localhost",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "vpn.example.com:0",
            "vpn.example.com:99999",
            "vpn..example.com",
            "-vpn.example.com",
            "vpn example.com",
            "[2001:db8::1",
            "[nothex]:1",
            "[2001:db8::1]x",
            "host:port",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        let fx = Fixture::new();
        let errs = fx.errors_with("\"vpn.example.com\"", "\"vpn.example.com:0\"");
        one(
            &errs,
            4,
            19,
            "gateway.public_endpoint",
            "invalid endpoint `vpn.example.com:0`",
        );
    }

    #[test]
    fn malformed_public_key() {
        let fx = Fixture::new();
        let alice = fx.alice_pub.to_string();
        let errs = fx.errors_with(&alice, "not-a-key");
        one(
            &errs,
            19,
            14,
            "peers[0].public_key",
            "invalid public key: the key is not valid base64",
        );
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let errs = fx.errors_with(&alice, &short);
        one(&errs, 19, 14, "peers[0].public_key", "decodes to 16 bytes");
    }

    #[test]
    fn malformed_prefixes() {
        let fx = Fixture::new();
        let errs = fx.errors_with("[\"10.0.0.0/16\"]", "[\"10.0.0.0/33\"]");
        one(
            &errs,
            14,
            20,
            "wireguard.remote_prefixes[0]",
            "`10.0.0.0/33` is not a CIDR prefix",
        );
        let errs = fx.errors_with("[\"10.0.0.0/16\"]", "[\"10.0.0.0\"]");
        one(
            &errs,
            14,
            20,
            "wireguard.remote_prefixes[0]",
            "the prefix length is missing",
        );
        let errs = fx.errors_with("[\"10.0.0.0/16\"]", "[\"10.0.0.1/16\"]");
        one(
            &errs,
            14,
            20,
            "wireguard.remote_prefixes[0]",
            "host bits set; did you mean \"10.0.0.0/16\"",
        );
        let errs = fx.errors_with("\"172.16.60.1/24\"", "\"172.16.60.1\"");
        // The peers are not checked against a subnet that could not be read.
        one(
            &errs,
            11,
            11,
            "wireguard.address",
            "not an address with a prefix length",
        );
        let errs = fx.errors_with("\"172.16.60.1/24\"", "\"172.16.60.0/24\"");
        one(
            &errs,
            11,
            11,
            "wireguard.address",
            "the gateway address 172.16.60.0 is the network address of 172.16.60.0/24",
        );
        let errs = fx.errors_with("\"172.16.60.1/24\"", "\"172.16.60.255/24\"");
        one(&errs, 11, 11, "wireguard.address", "broadcast address");
    }

    #[test]
    fn overlapping_prefixes() {
        let fx = Fixture::new();
        // LAN vs remote.
        let errs = fx.errors_with("[\"10.0.0.0/16\"]", "[\"172.16.0.0/16\"]");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        has(
            &errs,
            14,
            20,
            "wireguard.remote_prefixes[0]",
            "172.16.0.0/16 overlaps 172.16.60.0/24 (wireguard.address)",
        );
        has(
            &errs,
            14,
            20,
            "wireguard.remote_prefixes[0]",
            "overlaps 172.16.4.0/24 (gateway.lan_prefixes[0])",
        );
        // Within one list, including exact duplicates.
        let errs = fx.errors_with(
            "[\"10.0.0.0/16\"]",
            "[\"10.0.0.0/16\", \"10.0.5.0/24\", \"10.0.0.0/16\"]",
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        has(
            &errs,
            14,
            35,
            "wireguard.remote_prefixes[1]",
            "10.0.5.0/24 overlaps 10.0.0.0/16 (wireguard.remote_prefixes[0])",
        );
        has(
            &errs,
            14,
            50,
            "wireguard.remote_prefixes[2]",
            "10.0.0.0/16 duplicates 10.0.0.0/16 (wireguard.remote_prefixes[0])",
        );
        // The WireGuard subnet vs the LAN.
        let errs = fx.errors_with("[\"172.16.4.0/24\"]", "[\"172.16.60.128/25\"]");
        one(
            &errs,
            5,
            17,
            "gateway.lan_prefixes[0]",
            "172.16.60.128/25 overlaps 172.16.60.0/24 (wireguard.address)",
        );
        // Different families never overlap.
        let text = fx
            .text
            .replace("[\"10.0.0.0/16\"]", "[\"10.0.0.0/16\", \"::/0\"]");
        assert!(fx.parse(&text).is_ok());
    }

    #[test]
    fn peer_addresses() {
        let fx = Fixture::new();
        let errs = fx.errors_with("\"172.16.60.2\"", "\"172.16.61.2\"");
        one(
            &errs,
            20,
            11,
            "peers[0].address",
            "172.16.61.2 is outside the WireGuard subnet 172.16.60.0/24",
        );
        let errs = fx.errors_with("\"172.16.60.2\"", "\"fd00::2\"");
        one(
            &errs,
            20,
            11,
            "peers[0].address",
            "outside the WireGuard subnet",
        );
        let errs = fx.errors_with("\"172.16.60.2\"", "\"172.16.60.1\"");
        one(
            &errs,
            20,
            11,
            "peers[0].address",
            "172.16.60.1 is the gateway's own address",
        );
        let errs = fx.errors_with("\"172.16.60.2\"", "\"172.16.60.0\"");
        one(
            &errs,
            20,
            11,
            "peers[0].address",
            "172.16.60.0 is the network address of 172.16.60.0/24",
        );
        let errs = fx.errors_with("\"172.16.60.2\"", "\"172.16.60.255\"");
        one(&errs, 20, 11, "peers[0].address", "broadcast address");
        let errs = fx.errors_with("\"172.16.60.3\"", "\"172.16.60.2\"");
        one(
            &errs,
            25,
            11,
            "peers[1].address",
            "address 172.16.60.2 is also used by peers[0] (`alice`)",
        );
        let errs = fx.errors_with("\"172.16.60.2\"", "\"172.16.60.2/32\"");
        one(&errs, 20, 11, "peers[0].address", "without a prefix length");
    }

    #[test]
    fn small_subnets_have_no_reserved_hosts() {
        let net: IpNet = "10.9.0.0/31".parse().unwrap();
        assert_eq!(reserved_host("10.9.0.0".parse().unwrap(), &net), None);
        assert_eq!(reserved_host("10.9.0.1".parse().unwrap(), &net), None);
        let net: IpNet = "10.9.0.0/30".parse().unwrap();
        assert_eq!(
            reserved_host("10.9.0.0".parse().unwrap(), &net),
            Some("network address")
        );
        assert_eq!(
            reserved_host("10.9.0.3".parse().unwrap(), &net),
            Some("broadcast address")
        );
        let net: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(reserved_host("fd00::".parse().unwrap(), &net), None);

        let fx = Fixture::new();
        let text = fx
            .text
            .replace("\"172.16.60.1/24\"", "\"172.16.60.1/31\"")
            .replace("\"172.16.60.2\"", "\"172.16.60.0\"");
        let text = &text[..text.find("\n[[peers]]\nname = \"bob\"").unwrap()];
        let c = fx.parse(text).unwrap();
        assert_eq!(c.peers[0].address, "172.16.60.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn duplicate_names_and_public_keys() {
        let fx = Fixture::new();
        let errs = fx.errors_with("name = \"bob\"", "name = \"alice\"");
        one(
            &errs,
            23,
            8,
            "peers[1].name",
            "duplicate peer name `alice` (also peers[0])",
        );
        let bob = fx.bob_pub.to_string();
        let text = fx.text.replacen(&bob, &fx.alice_pub.to_string(), 1);
        let errs = fx.parse(&text).unwrap_err().0;
        // Bob's private key no longer matches the (now duplicate) public key either.
        assert_eq!(errs.len(), 2, "{errs:#?}");
        has(
            &errs,
            24,
            14,
            "peers[1].public_key",
            "duplicate public key (also used by peers[0] (`alice`))",
        );
        has(
            &errs,
            27,
            20,
            "peers[1].private_key_file",
            "does not belong to this peer's public_key",
        );
        for e in &errs {
            assert!(!e.message.contains(&fx.alice_pub.to_string()));
        }
        let errs = fx.errors_with(&fx.alice_pub.to_string(), &fx.gw_pub.to_string());
        one(
            &errs,
            19,
            14,
            "peers[0].public_key",
            "the gateway's own public key",
        );
    }

    #[test]
    fn missing_key_files() {
        let fx = Fixture::new();
        let d = fx.dir.path();
        let errs = fx.errors_with("\"wg.key\"", "\"nope/wg.key\"");
        one(
            &errs,
            12,
            20,
            "wireguard.private_key_file",
            &format!(
                "key file {} does not exist",
                d.join("nope/wg.key").display()
            ),
        );
        let errs = fx.errors_with("\"bob.psk\"", "\"gone.psk\"");
        one(
            &errs,
            26,
            12,
            "peers[1].psk_file",
            "gone.psk does not exist",
        );
        let errs = fx.errors_with("\"bob.key\"", "\"gone.key\"");
        one(
            &errs,
            27,
            20,
            "peers[1].private_key_file",
            "gone.key does not exist",
        );
        let errs = fx.errors_with("\"bob.key\"", "\"\"");
        one(
            &errs,
            27,
            20,
            "peers[1].private_key_file",
            "must not be empty",
        );
    }

    /// `ClientKeys::Skip` (the daemon, wgctl's edits) leaves the laptops'
    /// private key files unread: a mismatched, unreadable or missing one is
    /// an error for `wgctl check` only.
    #[test]
    fn client_key_files_are_read_only_when_asked() {
        let fx = Fixture::new();
        let d = fx.dir.path();
        // bob's stored key becomes another key: it no longer belongs to him
        write_secret_file(
            &d.join("bob.key"),
            format!("{}\n", generate_private_key()).as_bytes(),
        )
        .unwrap();
        let errs = fx.parse(&fx.text).unwrap_err().0;
        one(
            &errs,
            27,
            20,
            "peers[1].private_key_file",
            "does not belong to this peer's public_key",
        );
        let c = Config::parse_with(&fx.path, &fx.text, ClientKeys::Skip).unwrap();
        assert_eq!(c.peers[1].private_key_file, Some(d.join("bob.key")));
        // a missing one likewise; every other key file is still read
        fs::remove_file(d.join("bob.key")).unwrap();
        assert!(fx.parse(&fx.text).is_err());
        Config::parse_with(&fx.path, &fx.text, ClientKeys::Skip).unwrap();
        fs::remove_file(d.join("bob.psk")).unwrap();
        let errs = Config::parse_with(&fx.path, &fx.text, ClientKeys::Skip)
            .unwrap_err()
            .0;
        has(&errs, 26, 12, "peers[1].psk_file", "");
    }

    #[test]
    fn key_file_modes() {
        let fx = Fixture::new();
        let d = fx.dir.path();
        for (file, line, col, field) in [
            ("wg.key", 12, 20, "wireguard.private_key_file"),
            ("bob.psk", 26, 12, "peers[1].psk_file"),
            ("bob.key", 27, 20, "peers[1].private_key_file"),
        ] {
            let p = d.join(file);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            let errs = fx.parse(&fx.text).unwrap_err().0;
            one(
                &errs,
                line,
                col,
                field,
                &format!(
                    "has mode 0644, so group or others can access it; run `chmod 600 {}`",
                    p.display()
                ),
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        // The gateway's public key is still derived from a readable key with a bad mode.
        fs::set_permissions(d.join("wg.key"), fs::Permissions::from_mode(0o640)).unwrap();
        let text = fx
            .text
            .replace(&fx.alice_pub.to_string(), &fx.gw_pub.to_string());
        let errs = fx.parse(&text).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:#?}");
        has(&errs, 12, 20, "wireguard.private_key_file", "chmod 600");
        has(
            &errs,
            19,
            14,
            "peers[0].public_key",
            "gateway's own public key",
        );
    }

    #[test]
    fn key_file_contents_are_checked_but_never_printed() {
        let fx = Fixture::new();
        let d = fx.dir.path();
        let secret = base64::engine::general_purpose::STANDARD.encode([0x33u8; 31]);
        for (file, line, col, field) in [
            ("wg.key", 12, 20, "wireguard.private_key_file"),
            ("bob.psk", 26, 12, "peers[1].psk_file"),
            ("bob.key", 27, 20, "peers[1].private_key_file"),
        ] {
            let p = d.join(file);
            let old = fs::read(&p).unwrap();
            write_secret_file(&p, secret.as_bytes()).unwrap();
            let errs = fx.parse(&fx.text).unwrap_err();
            one(
                &errs.0,
                line,
                col,
                field,
                "does not contain a valid key: the key decodes to 31 bytes",
            );
            assert!(!errs.to_string().contains(&secret));
            assert!(!format!("{errs:?}").contains(&secret));
            write_secret_file(&p, &old).unwrap();
        }
        // No error output ever contains a secret that is valid either.
        let wg = fs::read_to_string(d.join("wg.key")).unwrap();
        fs::set_permissions(d.join("wg.key"), fs::Permissions::from_mode(0o666)).unwrap();
        let errs = fx.parse(&fx.text).unwrap_err();
        assert!(!errs.to_string().contains(wg.trim()));
        assert!(!format!("{errs:?}").contains(wg.trim()));
    }

    #[test]
    fn all_errors_are_collected_and_sorted() {
        let fx = Fixture::new();
        let text = fx
            .text
            .replace("mtu = 1420", "mtu = 1")
            .replace("tun_name = \"ipiece0\"", "tun_name = \"\"")
            .replace("\"172.16.60.3\"", "\"10.1.1.1\"")
            .replace("enabled = false", "enabled = false\ncolour = \"red\"");
        let errs = fx.parse(&text).unwrap_err();
        let located: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect();
        assert_eq!(
            located,
            vec![
                (7, 12, "gateway.tun_name"),
                (13, 7, "wireguard.mtu"),
                (25, 11, "peers[1].address"),
                (31, 1, "peers[1].colour"),
            ]
        );
        let shown = errs.to_string();
        assert_eq!(shown.lines().count(), 4);
        assert!(shown
            .lines()
            .next()
            .unwrap()
            .starts_with(&format!("{}:7:12: gateway.tun_name: ", fx.path.display())));
    }

    #[test]
    fn ipv6_subnet() {
        let fx = Fixture::new();
        let text = fx
            .text
            .replace("\"172.16.60.1/24\"", "\"fd00:60::1/64\"")
            .replace("\"172.16.60.2\"", "\"fd00:60::2\"")
            .replace("\"172.16.60.3\"", "\"fd00:60::\"");
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.wg_subnet().to_string(), "fd00:60::/64");
        let errs = fx
            .parse(&text.replace("mtu = 1420", "mtu = 1000"))
            .unwrap_err()
            .0;
        one(&errs, 13, 7, "wireguard.mtu", "between 1280 and 9000");
    }

    #[test]
    fn line_index() {
        let idx = LineIndex::new("ab\ncdé\n\nx");
        assert_eq!(idx.locate(0), (1, 1));
        assert_eq!(idx.locate(2), (1, 3));
        assert_eq!(idx.locate(3), (2, 1));
        assert_eq!(idx.locate(7), (2, 4)); // after the two-byte é
        assert_eq!(idx.locate(8), (3, 1));
        assert_eq!(idx.locate(9), (4, 1));
        assert_eq!(idx.locate(99), (4, 2));
    }

    /// alice's table with `endpoint = <value>` (a TOML value) added, the
    /// text and the line of the new key.
    fn with_alice_endpoint(fx: &Fixture, value: &str) -> (String, usize) {
        let from = "address = \"172.16.60.2\"\n";
        let text = fx
            .text
            .replacen(from, &format!("{from}endpoint = {value}\n"), 1);
        let line = text
            .lines()
            .position(|l| l.starts_with("endpoint = "))
            .unwrap()
            + 1;
        (text, line)
    }

    #[test]
    fn site_peer_endpoint_is_resolved_at_load() {
        let fx = Fixture::new();
        let (text, _) = with_alice_endpoint(&fx, "\"198.51.100.7:51820\"");
        let cfg = fx.parse(&text).unwrap();
        assert_eq!(
            cfg.peers[0].endpoint,
            Some(PeerEndpoint {
                text: "198.51.100.7:51820".into(),
                addr: Some("198.51.100.7:51820".parse().unwrap()),
            })
        );
        assert_eq!(cfg.peers[1].endpoint, None, "bob is a laptop");
        // A host name is looked up when the file is loaded.
        let (text, _) = with_alice_endpoint(&fx, "\"localhost:51820\"");
        let cfg = fx.parse(&text).unwrap();
        let ep = cfg.peers[0].endpoint.clone().unwrap();
        assert_eq!(ep.text, "localhost:51820");
        assert_eq!(ep.addr, Some("127.0.0.1:51820".parse().unwrap()));
    }

    #[test]
    fn malformed_site_peer_endpoints_are_refused_with_their_position() {
        let fx = Fixture::new();
        for (value, needle) in [
            ("\"198.51.100.7\"", "has no port"),
            ("\"198.51.100.7:0\"", "`0` is not a UDP port"),
            ("\"198.51.100.7:70000\"", "`70000` is not a UDP port"),
            ("\"198.51.100.7:\"", "is not a UDP port"),
            ("\":51820\"", "has no host"),
            ("\"[2001:db8::1]:51820\"", "IPv6 endpoints are refused"),
            ("\"2001:db8::1\"", "IPv6 endpoints are refused"),
            (
                "\"bad host!:51820\"",
                "neither an IPv4 address nor a host name",
            ),
            (
                "\"-x.example:51820\"",
                "neither an IPv4 address nor a host name",
            ),
            ("\"1.2.3:51820\"", "neither an IPv4 address nor a host name"),
            ("\"0.0.0.0:51820\"", "no address a peer can be reached at"),
            ("\"224.0.0.1:51820\"", "no address a peer can be reached at"),
            ("\"host.invalid:51820\"", "cannot resolve `host.invalid`"),
            ("51820", "expected a string"),
        ] {
            let (text, line) = with_alice_endpoint(&fx, value);
            let errs = match fx.parse(&text) {
                Ok(_) => panic!("endpoint = {value} accepted"),
                Err(e) => e.0,
            };
            assert_eq!(errs.len(), 1, "endpoint = {value}: {errs:?}");
            let e = &errs[0];
            assert_eq!(
                (e.line, e.column, e.field.as_str()),
                (line, 12, "peers[0].endpoint"),
                "endpoint = {value}: {e}"
            );
            assert!(e.message.contains(needle), "endpoint = {value}: {e}");
            assert!(
                e.to_string().contains(&format!("gateway.toml:{line}:12")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_disabled_site_peer_is_accepted_unresolved_and_inert() {
        let fx = Fixture::new();
        // bob is disabled: his host name is not looked up ...
        let text = fx.text.replacen(
            "enabled = false",
            "enabled = false\nendpoint = \"office.invalid:51820\"",
            1,
        );
        let cfg = fx.parse(&text).unwrap();
        assert_eq!(
            cfg.peers[1].endpoint,
            Some(PeerEndpoint {
                text: "office.invalid:51820".into(),
                addr: None
            })
        );
        // ... and the running settings have no such peer.
        let settings = crate::gateway::Settings::load(&cfg).unwrap();
        assert!(settings.peers.iter().all(|p| p.name != "bob"));
        assert!(settings.peers.iter().all(|p| p.endpoint.is_none()));
        // A malformed one is still an error.
        let text = fx.text.replacen(
            "enabled = false",
            "enabled = false\nendpoint = \"office\"",
            1,
        );
        let errs = fx.parse(&text).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "peers[1].endpoint");
        assert!(errs[0].message.contains("has no port"), "{}", errs[0]);
    }

    #[test]
    fn site_peers_get_their_keepalive_and_laptops_none() {
        let fx = Fixture::new();
        let (text, _) = with_alice_endpoint(&fx, "\"198.51.100.7:51820\"");
        let text = text.replacen("enabled = false", "enabled = true", 1);
        let cfg = fx.parse(&text).unwrap();
        let settings = crate::gateway::Settings::load(&cfg).unwrap();
        let alice = settings.peers.iter().find(|p| p.name == "alice").unwrap();
        assert_eq!(alice.endpoint, Some("198.51.100.7:51820".parse().unwrap()));
        assert_eq!(
            alice.keepalive, DEFAULT_KEEPALIVE,
            "site peers default to 25 s"
        );
        let bob = settings.peers.iter().find(|p| p.name == "bob").unwrap();
        assert_eq!(bob.endpoint, None);
        assert_eq!(bob.keepalive, 0, "the gateway only answers laptops");
    }
}
