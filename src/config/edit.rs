//! Atomic, comment-preserving edits of `gateway.toml` (used by `wgctl`).
//!
//! The file is edited as a `toml_edit::DocumentMut`, so comments, blank lines,
//! key order and formatting outside the edited tables stay byte-for-byte the
//! same. Edits are serialized by an exclusive `flock(2)` on the sibling
//! `<file>.lock`, held from [`ConfigEditor::open`] until the editor is committed
//! or dropped. [`ConfigEditor::commit`] validates the new text with
//! [`Config::parse`] and refuses to write an invalid file; it keeps the previous
//! version as `<file>.bak` and replaces the file by an fsynced rename, so a crash
//! at any instant leaves either the old or the new file.
//!
//! Besides peers, the editor adds or updates IPsec tunnels in place
//! ([`ConfigEditor::upsert_tunnel`], keyed by `remote_address`), edits
//! `wireguard.remote_prefixes`, and stages secret files (PSKs) that the
//! commit writes before the TOML and rolls back when the TOML is not written
//! ([`ConfigEditor::stage_secret_file`]).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table, TableLike, Value};

use super::fsutil;
use super::keys::{write_secret_file, Key};
use super::model::{Config, ConfigErrors, StartAction};
use super::validate::{syntax_error, ClientKeys};
use crate::ike::crypto::SecretBytes;

/// A peer to append with [`ConfigEditor::add_peer`].
///
/// Paths are written as given: pass them relative to the configuration file's
/// directory when they are inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeer {
    /// Unique peer name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// The peer's public key.
    pub public_key: Key,
    /// The peer's address inside the WireGuard subnet.
    pub address: IpAddr,
    /// Optional preshared key file.
    pub psk_file: Option<PathBuf>,
    /// Optional file holding the client's private key (for `wgctl export`).
    pub private_key_file: Option<PathBuf>,
    /// Persistent keepalive in seconds; `None` leaves the default (25) implicit.
    pub keepalive: Option<u16>,
    /// DNS servers for the client configuration; omitted from the file when empty.
    pub dns: Vec<IpAddr>,
    /// A site peer's `endpoint` (`host:port`), written as given; `None`
    /// for a laptop. Checked with the rest of the document on commit.
    pub endpoint: Option<String>,
}

/// An `[[ipsec.tunnels]]` table to add or update with
/// [`ConfigEditor::upsert_tunnel`]; a table is identified by its
/// `remote_address`.
///
/// Every `Option` is "written when `Some`": a `Some` value replaces the key's
/// value in place (keeping its comment), a `None` leaves the key as it is (a
/// new table then has no such key, so the default applies). `start_action`
/// and `priority` are written only when the table is created: they are the
/// operator's choices, which a re-import must not undo. Keys that
/// `NewTunnel` does not know (`local_address`, `remote_id`, `rekey_margin`,
/// `replay_window`, `enabled`, ...) are never touched.
///
/// Paths are written as given: pass them relative to the configuration file's
/// directory when they are inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTunnel {
    /// Unique tunnel name, `[A-Za-z0-9_.-]{1,32}` (an existing table matched
    /// by `remote_address` is renamed to it).
    pub name: String,
    /// The peer's outside address: the key that identifies the table.
    pub remote_address: IpAddr,
    /// The file holding the pre-shared key.
    pub psk_file: PathBuf,
    /// Our IKE identity, in strongSwan's syntax.
    pub local_id: Option<String>,
    /// The tunnel inside CIDR (a /30 in 169.254.0.0/16).
    pub inside_cidr: Option<Ipv4Net>,
    /// IKE proposals, swanctl syntax.
    pub ike_proposals: Option<String>,
    /// ESP proposals, swanctl syntax.
    pub esp_proposals: Option<String>,
    /// IKE SA lifetime in seconds.
    pub ike_lifetime: Option<u64>,
    /// CHILD SA lifetime in seconds.
    pub child_lifetime: Option<u64>,
    /// DPD interval in seconds.
    pub dpd_interval: Option<u64>,
    /// DPD timeout in seconds.
    pub dpd_timeout: Option<u64>,
    /// Who starts the tunnel; written only into a new table.
    pub start_action: Option<StartAction>,
    /// Outbound preference (lower is preferred); written only into a new table.
    pub priority: Option<u32>,
    /// The identity the peer must present, in strongSwan's syntax.
    pub remote_id: Option<String>,
    /// Our traffic selectors.
    pub local_ts: Option<Vec<IpNet>>,
    /// The peer's traffic selectors.
    pub remote_ts: Option<Vec<IpNet>>,
    /// Whether the tunnel is brought up.
    pub enabled: Option<bool>,
}

impl NewTunnel {
    /// A tunnel with only the required keys; every optional one `None`.
    pub fn new(name: impl Into<String>, remote_address: IpAddr, psk_file: PathBuf) -> NewTunnel {
        NewTunnel {
            name: name.into(),
            remote_address,
            psk_file,
            local_id: None,
            inside_cidr: None,
            ike_proposals: None,
            esp_proposals: None,
            ike_lifetime: None,
            child_lifetime: None,
            dpd_interval: None,
            dpd_timeout: None,
            start_action: None,
            priority: None,
            remote_id: None,
            local_ts: None,
            remote_ts: None,
            enabled: None,
        }
    }
}

/// What [`ConfigEditor::upsert_tunnel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upsert {
    /// A new `[[ipsec.tunnels]]` table was appended.
    Added,
    /// The table with the same `remote_address` was updated in place.
    Updated {
        /// The keys whose values changed (or that were added), in table order.
        keys: Vec<String>,
        /// The table's previous name, when `name` was among them.
        renamed_from: Option<String>,
    },
    /// The table with the same `remote_address` already had every value.
    Unchanged,
}

/// What [`ConfigEditor::stage_secret_file`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretChange {
    /// The file does not exist yet; the commit creates it.
    Created,
    /// The file exists with other content (or a mode other than 0600); the
    /// commit replaces it.
    Replaced,
    /// The file already holds exactly this secret with a private mode; nothing
    /// is written.
    Unchanged,
}

/// A secret file to write on commit.
struct StagedSecret {
    path: PathBuf,
    contents: SecretBytes,
}

/// Why an edit failed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Reading, locking or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned (the config, its `.lock`, `.bak` or temporary file).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file does not parse, or the edited configuration does not validate
    /// (nothing was written).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// No peer has this name.
    #[error("no peer named `{0}`")]
    PeerNotFound(String),
    /// A peer with this name already exists.
    #[error("a peer named `{0}` already exists")]
    PeerExists(String),
    /// The document's structure does not allow the edit (e.g. `peers` is not an array of tables).
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file changed on disk since it was opened (by an editor that does not
    /// take the lock); nothing was written.
    #[error("{} was changed by another program since it was opened; nothing was written, retry", path.display())]
    Conflict {
        /// The configuration file.
        path: PathBuf,
    },
    /// A path in [`NewPeer`] is not valid UTF-8 and cannot be written to TOML.
    #[error("path {} is not valid UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> EditError + '_ {
    move |source| EditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open, locked configuration file being edited.
pub struct ConfigEditor {
    path: PathBuf,
    original: String,
    doc: DocumentMut,
    /// Secret files written by [`ConfigEditor::commit`] before the TOML.
    secrets: Vec<StagedSecret>,
    /// Holds the `flock` on `<file>.lock`; closing it releases the lock.
    _lock: File,
    /// Whether validating the edit reads the laptops' private key files.
    client_keys: ClientKeys,
}

impl fmt::Debug for ConfigEditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigEditor")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Takes an exclusive `flock(2)` on `file`, waiting for other holders.
#[allow(unsafe_code)]
fn flock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock(2) only reads the integer descriptor, which `file` keeps
        // open for the duration of the call; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl ConfigEditor {
    /// Locks `<path>.lock` exclusively (waiting for any other editor), then reads
    /// and parses the file. Only TOML syntax is checked here; the full validation
    /// happens in [`ConfigEditor::commit`] and [`ConfigEditor::config`].
    pub fn open(path: &Path) -> Result<ConfigEditor, EditError> {
        let lock = Self::lock(path)?;
        let original = fs::read_to_string(path).map_err(io_error(path))?;
        let doc: DocumentMut = original.parse().map_err(|e| {
            EditError::Invalid(ConfigErrors(vec![syntax_error(path, &original, &e)]))
        })?;
        Ok(ConfigEditor {
            path: path.to_path_buf(),
            original,
            doc,
            secrets: Vec::new(),
            _lock: lock,
            client_keys: ClientKeys::Check,
        })
    }

    /// Takes `<path>.lock` exclusively, waiting for any other editor.
    fn lock(path: &Path) -> Result<File, EditError> {
        let lock_path = fsutil::with_suffix(path, ".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        flock_exclusive(&lock).map_err(io_error(&lock_path))?;
        Ok(lock)
    }

    /// [`ConfigEditor::open`], and the file as read validated from the same
    /// parse (a file of 10,000 peers is parsed once, not twice);
    /// `client_keys` also applies to the validation of the commit.
    pub fn open_checked(
        path: &Path,
        client_keys: ClientKeys,
    ) -> Result<(ConfigEditor, Result<Config, ConfigErrors>), EditError> {
        let lock = Self::lock(path)?;
        let original = fs::read_to_string(path).map_err(io_error(path))?;
        let doc = toml_edit::Document::parse(original.as_str()).map_err(|e| {
            EditError::Invalid(ConfigErrors(vec![syntax_error(path, &original, &e)]))
        })?;
        let checked = Config::check(path, &original, &doc, client_keys);
        let doc = doc.into_mut();
        let editor = ConfigEditor {
            path: path.to_path_buf(),
            original,
            doc,
            secrets: Vec::new(),
            _lock: lock,
            client_keys,
        };
        Ok((editor, checked))
    }

    /// The configuration file being edited.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The document as it stands, as TOML text.
    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    fn malformed(&self, message: impl Into<String>) -> EditError {
        EditError::Malformed {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Index of the peer named `name` in the `peers` array.
    fn find_peer(&self, name: &str) -> Result<Option<usize>, EditError> {
        match self.doc.get("peers") {
            None => Ok(None),
            Some(Item::ArrayOfTables(aot)) => Ok(aot
                .iter()
                .position(|t| t.get("name").and_then(Item::as_str) == Some(name))),
            Some(Item::Value(Value::Array(arr))) => Ok(arr.iter().position(|v| {
                v.as_inline_table()
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                    == Some(name)
            })),
            Some(_) => Err(self.malformed("`peers` is not an array of tables")),
        }
    }

    /// The peer table named `name`, for in-place edits.
    fn peer_table_mut(&mut self, name: &str) -> Result<&mut dyn TableLike, EditError> {
        let idx = self
            .find_peer(name)?
            .ok_or_else(|| EditError::PeerNotFound(name.to_owned()))?;
        let table: Option<&mut dyn TableLike> = match self.doc.get_mut("peers") {
            Some(Item::ArrayOfTables(aot)) => aot.get_mut(idx).map(|t| t as &mut dyn TableLike),
            Some(Item::Value(Value::Array(arr))) => arr
                .get_mut(idx)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
            _ => None,
        };
        table.ok_or_else(|| EditError::PeerNotFound(name.to_owned()))
    }

    /// Appends a `[[peers]]` table at the end of the document, with the keys
    /// `name, public_key, address, psk_file, private_key_file, keepalive,
    /// endpoint, dns, enabled` (optional ones omitted when `None` or empty; `enabled = true`
    /// is always written). Comments that ended the file stay above the new table,
    /// so the old text is a prefix of the new one.
    pub fn add_peer(&mut self, p: &NewPeer) -> Result<(), EditError> {
        if self.find_peer(&p.name)?.is_some() {
            return Err(EditError::PeerExists(p.name.clone()));
        }
        let mut t = Table::new();
        t.insert("name", value(p.name.as_str()));
        t.insert("public_key", value(p.public_key.to_string()));
        t.insert("address", value(p.address.to_string()));
        for (key, path) in [
            ("psk_file", &p.psk_file),
            ("private_key_file", &p.private_key_file),
        ] {
            if let Some(path) = path {
                let s = path
                    .to_str()
                    .ok_or_else(|| EditError::NonUtf8Path(path.clone()))?;
                t.insert(key, value(s));
            }
        }
        if let Some(k) = p.keepalive {
            t.insert("keepalive", value(i64::from(k)));
        }
        if let Some(e) = &p.endpoint {
            t.insert("endpoint", value(e.as_str()));
        }
        if !p.dns.is_empty() {
            let dns: Array = p.dns.iter().map(|a| a.to_string()).collect();
            t.insert("dns", value(dns));
        }
        t.insert("enabled", value(true));

        match self.doc.get_mut("peers") {
            None | Some(Item::ArrayOfTables(_)) => {}
            Some(Item::Value(Value::Array(arr))) => {
                // `peers = [ {...}, ... ]`: keep the inline style.
                let mut inline = t.into_inline_table();
                inline.fmt();
                arr.push(inline);
                return Ok(());
            }
            Some(_) => return Err(self.malformed("`peers` is not an array of tables")),
        }

        // Put the table after every other one, and move the comments that ended
        // the file (the document's trailing text) above it.
        let position = max_position(self.doc.as_table()).map_or(0, |p| p + 1);
        t.set_position(Some(position));
        let trailing = self.doc.trailing().as_str().unwrap_or("").to_owned();
        let prefix = if trailing.trim().is_empty() {
            "\n".to_owned()
        } else {
            format!("{}\n\n", trailing.trim_end())
        };
        t.decor_mut().set_prefix(prefix);
        self.doc.set_trailing("");
        match self.doc.get_mut("peers") {
            Some(Item::ArrayOfTables(aot)) => aot.push(t),
            _ => {
                let mut aot = ArrayOfTables::new();
                aot.push(t);
                self.doc.insert("peers", Item::ArrayOfTables(aot));
            }
        }
        Ok(())
    }

    /// Removes the peer named `name`.
    ///
    /// Comments directly above its `[[peers]]` header (not separated by a blank
    /// line) go with it; comment paragraphs further up are kept, moved above the
    /// next table or to the end of the file.
    pub fn remove_peer(&mut self, name: &str) -> Result<(), EditError> {
        let idx = self
            .find_peer(name)?
            .ok_or_else(|| EditError::PeerNotFound(name.to_owned()))?;
        let removed = match self.doc.get_mut("peers") {
            Some(Item::Value(Value::Array(arr))) => {
                arr.remove(idx);
                return Ok(());
            }
            Some(Item::ArrayOfTables(aot)) => {
                let removed = aot.remove(idx);
                if aot.is_empty() {
                    self.doc.remove("peers");
                }
                removed
            }
            _ => return Err(EditError::PeerNotFound(name.to_owned())),
        };
        self.keep_general_comments(&removed);
        Ok(())
    }

    fn keep_general_comments(&mut self, removed: &Table) {
        let prefix = removed
            .decor()
            .prefix()
            .and_then(|r| r.as_str())
            .unwrap_or("");
        let kept = general_comments(prefix);
        if kept.trim().is_empty() {
            return;
        }
        let next = removed
            .position()
            .and_then(|p| next_position(self.doc.as_table(), p));
        if let Some(t) = next.and_then(|p| table_at_mut(self.doc.as_table_mut(), p)) {
            let old = t
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_owned();
            let joined = if starts_with_blank_line(&old) {
                format!("{}\n{old}", kept.trim_end())
            } else {
                format!("{kept}{old}")
            };
            t.decor_mut().set_prefix(joined);
        } else {
            let old = self.doc.trailing().as_str().unwrap_or("").to_owned();
            let joined = format!("{}\n{old}", kept.trim_end());
            self.doc.set_trailing(joined);
        }
    }

    /// Sets `enabled` of the peer named `name`, keeping the value's comment.
    /// Enabling a peer without an `enabled` key changes nothing (the default is true).
    pub fn set_peer_enabled(&mut self, name: &str, enabled: bool) -> Result<(), EditError> {
        let t = self.peer_table_mut(name)?;
        match t.get_mut("enabled") {
            Some(item) => match item.as_value_mut() {
                Some(v) => {
                    let decor = v.decor().clone();
                    *v = Value::from(enabled);
                    *v.decor_mut() = decor;
                }
                None => *item = value(enabled),
            },
            None => {
                if !enabled {
                    t.insert("enabled", value(false));
                }
            }
        }
        Ok(())
    }

    // ---- [[ipsec.tunnels]] ----

    /// The tunnel tables' container: `Some` array of `ipsec.tunnels` (either
    /// form), `None` when there is none yet.
    fn tunnels_item(&self) -> Result<Option<&Item>, EditError> {
        let Some(ipsec) = self.doc.get("ipsec") else {
            return Ok(None);
        };
        let Some(ipsec) = ipsec.as_table_like() else {
            return Err(self.malformed("`ipsec` is not a table"));
        };
        match ipsec.get("tunnels") {
            None => Ok(None),
            Some(item @ Item::ArrayOfTables(_)) | Some(item @ Item::Value(Value::Array(_))) => {
                Ok(Some(item))
            }
            Some(_) => Err(self.malformed("`ipsec.tunnels` is not an array of tables")),
        }
    }

    /// Index of the tunnel whose `remote_address` is `remote` (compared as
    /// addresses, so the spelling does not matter).
    fn find_tunnel(&self, remote: IpAddr) -> Result<Option<usize>, EditError> {
        let matches = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                == Some(remote)
        };
        Ok(match self.tunnels_item()? {
            None => None,
            Some(Item::ArrayOfTables(aot)) => aot
                .iter()
                .position(|t| matches(t.get("remote_address").and_then(Item::as_value))),
            Some(Item::Value(Value::Array(arr))) => arr
                .iter()
                .position(|v| matches(v.as_inline_table().and_then(|t| t.get("remote_address")))),
            Some(_) => None,
        })
    }

    /// The tunnel table at `idx`, for in-place edits.
    fn tunnel_table_mut(&mut self, idx: usize) -> Option<&mut dyn TableLike> {
        let tunnels = self
            .doc
            .get_mut("ipsec")?
            .as_table_like_mut()?
            .get_mut("tunnels")?;
        match tunnels {
            Item::ArrayOfTables(aot) => aot.get_mut(idx).map(|t| t as &mut dyn TableLike),
            Item::Value(Value::Array(arr)) => arr
                .get_mut(idx)
                .and_then(Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
            _ => None,
        }
    }

    /// Adds the `[[ipsec.tunnels]]` table `t`, or updates the one with the
    /// same `remote_address` in place (never a second table for the same
    /// peer), keeping comments, key order and every key `t` does not set
    /// (see [`NewTunnel`] for which keys are written when).
    ///
    /// A new table goes right after the last tunnel table, else right after
    /// an `[ipsec]` header, else at the end of the file (like
    /// [`ConfigEditor::add_peer`]); an `ipsec.tunnels = [...]` array of inline
    /// tables keeps its style. Nothing is checked here beyond the document's
    /// structure: [`ConfigEditor::commit`] validates the whole file (a name
    /// used by another tunnel, for instance).
    pub fn upsert_tunnel(&mut self, t: &NewTunnel) -> Result<Upsert, EditError> {
        let psk_file = t
            .psk_file
            .to_str()
            .ok_or_else(|| EditError::NonUtf8Path(t.psk_file.clone()))?
            .to_owned();
        // The keys written on every upsert, in the order a new table gets them.
        let mut keys: Vec<(&'static str, Value)> = vec![
            ("name", Value::from(t.name.as_str())),
            ("remote_address", Value::from(t.remote_address.to_string())),
        ];
        if let Some(id) = &t.local_id {
            keys.push(("local_id", Value::from(id.as_str())));
        }
        if let Some(id) = &t.remote_id {
            keys.push(("remote_id", Value::from(id.as_str())));
        }
        keys.push(("psk_file", Value::from(psk_file)));
        if let Some(c) = t.inside_cidr {
            keys.push(("inside_cidr", Value::from(c.to_string())));
        }
        for (key, v) in [
            ("ike_proposals", &t.ike_proposals),
            ("esp_proposals", &t.esp_proposals),
        ] {
            if let Some(v) = v {
                keys.push((key, Value::from(v.as_str())));
            }
        }
        for (key, v) in [
            ("ike_lifetime", t.ike_lifetime),
            ("child_lifetime", t.child_lifetime),
            ("dpd_interval", t.dpd_interval),
            ("dpd_timeout", t.dpd_timeout),
        ] {
            if let Some(v) = v {
                keys.push((key, Value::from(toml_int(v))));
            }
        }
        for (key, v) in [("local_ts", &t.local_ts), ("remote_ts", &t.remote_ts)] {
            if let Some(v) = v {
                let arr: Array = v.iter().map(|p| p.to_string()).collect();
                keys.push((key, Value::Array(arr)));
            }
        }
        if let Some(e) = t.enabled {
            keys.push(("enabled", Value::from(e)));
        }

        if let Some(idx) = self.find_tunnel(t.remote_address)? {
            let path = self.path.clone();
            let table = self
                .tunnel_table_mut(idx)
                .ok_or_else(|| EditError::Malformed {
                    path,
                    message: "`ipsec.tunnels` is not an array of tables".into(),
                })?;
            let old_name = table.get("name").and_then(Item::as_str).map(str::to_owned);
            let mut changed = Vec::new();
            for (key, v) in keys {
                if set_value(table, key, v) {
                    changed.push(key.to_owned());
                }
            }
            if changed.is_empty() {
                return Ok(Upsert::Unchanged);
            }
            let renamed_from = old_name.filter(|n| *n != t.name);
            return Ok(Upsert::Updated {
                keys: changed,
                renamed_from,
            });
        }

        let mut table = Table::new();
        for (key, v) in keys {
            table.insert(key, Item::Value(v));
        }
        if let Some(a) = t.start_action {
            table.insert("start_action", value(a.as_str()));
        }
        if let Some(p) = t.priority {
            table.insert("priority", value(i64::from(p)));
        }
        self.append_tunnel_table(table)?;
        Ok(Upsert::Added)
    }

    /// Places a new tunnel table (see [`ConfigEditor::upsert_tunnel`]).
    fn append_tunnel_table(&mut self, mut table: Table) -> Result<(), EditError> {
        if !self.doc.contains_key("ipsec") {
            let mut ipsec = Table::new();
            ipsec.set_implicit(true);
            self.doc.insert("ipsec", Item::Table(ipsec));
        }
        // Where the new table goes: after the last tunnel, else after [ipsec].
        let anchor = {
            let ipsec = match self.doc.get("ipsec") {
                Some(Item::Table(t)) => t,
                Some(Item::Value(Value::InlineTable(_))) => {
                    return Err(self.malformed(
                        "`ipsec` is an inline table; write it as an [ipsec] table so that wgctl can add tunnels",
                    ))
                }
                _ => return Err(self.malformed("`ipsec` is not a table")),
            };
            match ipsec.get("tunnels") {
                Some(Item::Value(Value::Array(_))) => None,
                Some(Item::ArrayOfTables(aot)) => aot
                    .iter()
                    .filter_map(|t| {
                        let mut max = t.position();
                        visit_tables(t, &mut |s| max = max.max(s.position()));
                        max
                    })
                    .max(),
                Some(_) => return Err(self.malformed("`ipsec.tunnels` is not an array of tables")),
                None => None,
            }
            .or_else(|| {
                if ipsec.is_implicit() {
                    None
                } else {
                    ipsec.position()
                }
            })
        };
        let ipsec = self
            .doc
            .get_mut("ipsec")
            .and_then(Item::as_table_mut)
            .ok_or_else(|| EditError::Malformed {
                path: self.path.clone(),
                message: "`ipsec` is not a table".into(),
            })?;
        if let Some(Item::Value(Value::Array(arr))) = ipsec.get_mut("tunnels") {
            // `tunnels = [ {...}, ... ]`: keep the inline style.
            let mut inline = table.into_inline_table();
            inline.fmt();
            arr.push(inline);
            return Ok(());
        }
        match anchor {
            Some(pos) => {
                shift_positions(self.doc.as_table_mut(), pos + 1);
                table.set_position(Some(pos + 1));
                table.decor_mut().set_prefix("\n");
            }
            None => {
                let position = max_position(self.doc.as_table()).map_or(0, |p| p + 1);
                table.set_position(Some(position));
                let trailing = self.doc.trailing().as_str().unwrap_or("").to_owned();
                let prefix = if trailing.trim().is_empty() {
                    "\n".to_owned()
                } else {
                    format!("{}\n\n", trailing.trim_end())
                };
                table.decor_mut().set_prefix(prefix);
                self.doc.set_trailing("");
            }
        }
        let ipsec = self
            .doc
            .get_mut("ipsec")
            .and_then(Item::as_table_mut)
            .expect("checked above");
        match ipsec.get_mut("tunnels") {
            Some(Item::ArrayOfTables(aot)) => aot.push(table),
            _ => {
                let mut aot = ArrayOfTables::new();
                aot.push(table);
                ipsec.insert("tunnels", Item::ArrayOfTables(aot));
            }
        }
        Ok(())
    }

    // ---- [aws] ----

    /// Points `[aws]` at a VPN connection: `region`, `vpn_connection_id`
    /// and, when given, `endpoint_url` are set (in place, keeping comments
    /// and every other key); the table is appended when the file has none.
    /// Returns the keys that changed.
    pub fn set_aws_connection(
        &mut self,
        region: &str,
        vpn_connection_id: &str,
        endpoint_url: Option<&str>,
    ) -> Result<Vec<String>, EditError> {
        if !self.doc.contains_key("aws") {
            let mut t = Table::new();
            t.decor_mut().set_prefix("\n");
            let last = {
                let mut max = self.doc.as_table().position().unwrap_or(0);
                visit_tables(self.doc.as_table(), &mut |s| {
                    max = max.max(s.position().unwrap_or(0))
                });
                max
            };
            t.set_position(Some(last + 1));
            self.doc.insert("aws", Item::Table(t));
        }
        let path = self.path.clone();
        let table = self
            .doc
            .get_mut("aws")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| EditError::Malformed {
                path,
                message: "`aws` is not a table".into(),
            })?;
        let mut changed = Vec::new();
        let mut keys = vec![
            ("region", Value::from(region)),
            ("vpn_connection_id", Value::from(vpn_connection_id)),
        ];
        if let Some(u) = endpoint_url {
            keys.push(("endpoint_url", Value::from(u)));
        }
        for (key, v) in keys {
            if set_value(table, key, v) {
                changed.push(key.to_owned());
            }
        }
        Ok(changed)
    }

    // ---- wireguard.remote_prefixes ----

    /// `wireguard.remote_prefixes` for editing, created (empty) when absent.
    fn remote_prefixes_mut(&mut self) -> Result<&mut Array, EditError> {
        let path = self.path.clone();
        let malformed = |message: &str| EditError::Malformed {
            path: path.clone(),
            message: message.to_owned(),
        };
        let wg = self
            .doc
            .get_mut("wireguard")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| malformed("there is no [wireguard] table"))?;
        if wg.get("remote_prefixes").is_none() {
            wg.insert("remote_prefixes", value(Array::new()));
        }
        wg.get_mut("remote_prefixes")
            .and_then(Item::as_array_mut)
            .ok_or_else(|| malformed("`wireguard.remote_prefixes` is not an array"))
    }

    /// Replaces `wireguard.remote_prefixes` with `prefixes` (host bits
    /// cleared, duplicates dropped, order kept), keeping the key's comment and
    /// the array's layout (one line or one prefix per line). Returns whether
    /// anything changed; prefixes already there in the same order change nothing.
    pub fn set_remote_prefixes(&mut self, prefixes: &[IpNet]) -> Result<bool, EditError> {
        let mut want: Vec<IpNet> = Vec::new();
        for p in prefixes {
            if !want.contains(&p.trunc()) {
                want.push(p.trunc());
            }
        }
        let arr = self.remote_prefixes_mut()?;
        let current: Vec<Option<IpNet>> = arr.iter().map(parse_prefix).collect();
        if current.len() == want.len() && current.iter().zip(&want).all(|(c, w)| *c == Some(*w)) {
            return Ok(false);
        }
        let multiline = arr.iter().any(|v| {
            v.decor()
                .prefix()
                .and_then(|p| p.as_str())
                .is_some_and(|p| p.contains('\n'))
        });
        let indent = arr
            .iter()
            .last()
            .and_then(|v| v.decor().prefix().and_then(|p| p.as_str()))
            .map(str::to_owned);
        arr.clear();
        for p in &want {
            let mut v = Value::from(p.to_string());
            let prefix = match (&indent, multiline) {
                (Some(i), true) => i.clone(),
                _ if arr.is_empty() => String::new(),
                _ => " ".to_owned(),
            };
            v.decor_mut().set_prefix(prefix);
            v.decor_mut().set_suffix("");
            arr.push_formatted(v);
        }
        if !multiline {
            arr.set_trailing("");
            arr.set_trailing_comma(false);
        }
        Ok(true)
    }

    /// Appends to `wireguard.remote_prefixes` the prefixes (host bits
    /// cleared) it does not hold yet, in the array's layout. Returns the ones
    /// appended. A prefix that overlaps an existing one without being equal
    /// is appended all the same: [`ConfigEditor::commit`] then refuses the
    /// file with the validator's message.
    pub fn add_remote_prefixes(&mut self, prefixes: &[IpNet]) -> Result<Vec<IpNet>, EditError> {
        let arr = self.remote_prefixes_mut()?;
        let mut have: Vec<IpNet> = arr.iter().filter_map(parse_prefix).collect();
        let mut added = Vec::new();
        for p in prefixes.iter().map(IpNet::trunc) {
            if have.contains(&p) {
                continue;
            }
            push_like_last(arr, &p.to_string());
            have.push(p);
            added.push(p);
        }
        Ok(added)
    }

    // ---- generic tables (wgctl import pfsense) ----

    /// The table at `path` (dotted keys from the root), created when absent:
    /// a missing table is appended after every other one (like
    /// [`ConfigEditor::add_peer`]), a missing sub-table right after its
    /// parent's last sub-table.
    fn table_at_mut(&mut self, path: &[&str]) -> Result<&mut dyn TableLike, EditError> {
        let file = self.path.clone();
        let pos0 = max_position(self.doc.as_table()).map_or(0, |p| p + 1);
        let trailing = self.doc.trailing().as_str().unwrap_or("").to_owned();
        let mut moved_trailing = false;
        let mut at: &mut dyn TableLike = self.doc.as_table_mut();
        for (depth, name) in path.iter().enumerate() {
            if at.get(name).is_none() {
                let mut t = Table::new();
                t.set_position(Some(pos0 + depth as isize));
                if !moved_trailing {
                    let prefix = if trailing.trim().is_empty() {
                        "\n".to_owned()
                    } else {
                        format!("{}\n\n", trailing.trim_end())
                    };
                    t.decor_mut().set_prefix(prefix);
                    moved_trailing = true;
                }
                at.insert(name, Item::Table(t));
            }
            at = at
                .get_mut(name)
                .and_then(Item::as_table_like_mut)
                .ok_or_else(|| EditError::Malformed {
                    path: file.clone(),
                    message: format!("`{}` is not a table", path[..=depth].join(".")),
                })?;
        }
        if moved_trailing {
            self.doc.set_trailing("");
        }
        // Re-borrow: the loop above proved every step exists.
        let mut at: &mut dyn TableLike = self.doc.as_table_mut();
        for name in path {
            at = at
                .get_mut(name)
                .and_then(Item::as_table_like_mut)
                .expect("walked above");
        }
        Ok(at)
    }

    /// Sets `keys` in the table at `path` (created when absent), each value
    /// in place keeping its comment; returns the keys that changed.
    pub fn set_table_keys(
        &mut self,
        path: &[&str],
        keys: Vec<(String, Value)>,
    ) -> Result<Vec<String>, EditError> {
        let table = self.table_at_mut(path)?;
        let mut changed = Vec::new();
        for (key, v) in keys {
            if set_value(table, &key, v) {
                changed.push(key);
            }
        }
        Ok(changed)
    }

    /// Appends to the string array `key` of the table at `path` (created
    /// when absent) the values it does not hold yet, in the array's layout;
    /// returns the ones appended.
    pub fn add_to_string_array(
        &mut self,
        path: &[&str],
        key: &str,
        values: &[String],
    ) -> Result<Vec<String>, EditError> {
        let file = self.path.clone();
        let table = self.table_at_mut(path)?;
        if table.get(key).is_none() {
            table.insert(key, value(Array::new()));
        }
        let arr = table
            .get_mut(key)
            .and_then(Item::as_array_mut)
            .ok_or_else(|| EditError::Malformed {
                path: file,
                message: format!("`{}.{key}` is not an array", path.join(".")),
            })?;
        let mut added = Vec::new();
        for v in values {
            if arr.iter().any(|x| same_value(x, &Value::from(v.as_str()))) {
                continue;
            }
            push_like_last(arr, v);
            added.push(v.clone());
        }
        Ok(added)
    }

    /// The names (`name` keys) of the tables in the array of tables `key`
    /// below `path`, in file order (empty when there is none).
    pub fn array_table_names(&self, path: &[&str], key: &str) -> Vec<String> {
        let mut at: &dyn TableLike = self.doc.as_table();
        for name in path {
            match at.get(name).and_then(Item::as_table_like) {
                Some(t) => at = t,
                None => return Vec::new(),
            }
        }
        match at.get(key) {
            Some(Item::ArrayOfTables(aot)) => aot
                .iter()
                .filter_map(|t| t.get("name").and_then(Item::as_str).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Removes the table named `name` from the array of tables `key` below
    /// `path`; returns whether there was one.
    pub fn remove_array_table(&mut self, path: &[&str], key: &str, name: &str) -> bool {
        self.remove_array_table_by(path, key, "name", |v| v == name)
    }

    /// Removes the first table whose string `field` satisfies `matches`
    /// from the array of tables `key` below `path` (the array goes when it
    /// is left empty); returns whether there was one.
    pub fn remove_array_table_by(
        &mut self,
        path: &[&str],
        key: &str,
        field: &str,
        matches: impl Fn(&str) -> bool,
    ) -> bool {
        let mut at: &mut dyn TableLike = self.doc.as_table_mut();
        for p in path {
            match at.get_mut(p).and_then(Item::as_table_like_mut) {
                Some(t) => at = t,
                None => return false,
            }
        }
        let Some(Item::ArrayOfTables(aot)) = at.get_mut(key) else {
            return false;
        };
        let Some(idx) = aot
            .iter()
            .position(|t| t.get(field).and_then(Item::as_str).is_some_and(&matches))
        else {
            return false;
        };
        aot.remove(idx);
        if aot.is_empty() {
            at.remove(key);
        }
        true
    }

    /// Appends `table` to the array of tables `key` below `path` (the
    /// parent table created when absent), after every other table of the
    /// file.
    pub fn append_array_table(
        &mut self,
        path: &[&str],
        key: &str,
        mut table: Table,
    ) -> Result<(), EditError> {
        let file = self.path.clone();
        let position = max_position(self.doc.as_table()).map_or(0, |p| p + 1);
        table.set_position(Some(position + path.len() as isize));
        table.decor_mut().set_prefix("\n");
        let parent = self.table_at_mut(path)?;
        match parent.get_mut(key) {
            None => {
                let mut aot = ArrayOfTables::new();
                aot.push(table);
                parent.insert(key, Item::ArrayOfTables(aot));
            }
            Some(Item::ArrayOfTables(aot)) => aot.push(table),
            Some(_) => {
                return Err(EditError::Malformed {
                    path: file,
                    message: format!("`{}.{key}` is not an array of tables", path.join(".")),
                })
            }
        }
        Ok(())
    }

    // ---- secret files ----

    /// Stages a secret file (an IPsec PSK) to be written with mode 0600 by
    /// [`ConfigEditor::commit`], before the TOML and before validation (which
    /// reads it). A relative `path` is taken relative to the configuration
    /// file's directory. A file that already holds exactly `contents` with a
    /// private mode is left alone ([`SecretChange::Unchanged`], not staged).
    ///
    /// If the commit fails, every staged file it created is removed again and
    /// every one it replaced gets its previous content back.
    pub fn stage_secret_file(
        &mut self,
        path: &Path,
        contents: SecretBytes,
    ) -> Result<SecretChange, EditError> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            fsutil::parent_dir(&self.path).join(path)
        };
        let change = match fs::metadata(&abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => SecretChange::Created,
            Err(e) => return Err(io_error(&abs)(e)),
            Ok(meta) => {
                let old = SecretBytes::new(fs::read(&abs).map_err(io_error(&abs))?);
                if old == contents && meta.mode() & 0o077 == 0 {
                    SecretChange::Unchanged
                } else {
                    SecretChange::Replaced
                }
            }
        };
        self.secrets.retain(|s| s.path != abs);
        if change != SecretChange::Unchanged {
            self.secrets.push(StagedSecret {
                path: abs,
                contents,
            });
        }
        Ok(change)
    }

    /// The configuration as it stands in the edited document, validated.
    /// (Secret files staged with [`ConfigEditor::stage_secret_file`] are not
    /// written yet, so a tunnel whose PSK file is only staged does not
    /// validate here; [`ConfigEditor::commit`] writes them first.)
    pub fn config(&self) -> Result<Config, ConfigErrors> {
        Config::parse_with(&self.path, &self.doc.to_string(), self.client_keys)
    }

    /// Validates and writes the edited document, then releases the lock.
    ///
    /// Nothing is written when the document does not validate
    /// ([`EditError::Invalid`]), when it is unchanged, or when the file was
    /// changed behind the lock ([`EditError::Conflict`]). Otherwise the previous
    /// text is written to `<file>.bak` and the new text to `<dir>/.<name>.tmp`
    /// (each created with the original file's mode and owner, fsynced, renamed
    /// into place, directory fsynced).
    ///
    /// Staged secret files ([`ConfigEditor::stage_secret_file`]) are written
    /// first (mode 0600, atomically), because validation reads them; when
    /// anything after that fails, they are rolled back (created files and
    /// directories removed, replaced files restored), so a failed commit
    /// leaves the TOML and its secrets as they were.
    pub fn commit(self) -> Result<(), EditError> {
        self.commit_config().map(|_| ())
    }

    /// [`ConfigEditor::commit`], returning the configuration it validated
    /// and wrote (so that the caller need not read the file again).
    pub fn commit_config(mut self) -> Result<Config, EditError> {
        let text = self.doc.to_string();
        let secrets = std::mem::take(&mut self.secrets);
        let mut checked = None;
        if secrets.is_empty() {
            let cfg = Config::parse_with(&self.path, &text, self.client_keys)
                .map_err(EditError::Invalid)?;
            if text == self.original {
                return Ok(cfg);
            }
            checked = Some(cfg);
        }
        // Also with secrets alone: they were staged against this version.
        if text != self.original || !secrets.is_empty() {
            let current = fs::read_to_string(&self.path).map_err(io_error(&self.path))?;
            if current != self.original {
                return Err(EditError::Conflict { path: self.path });
            }
        }
        let mut undo = SecretUndo::default();
        let result = (|| {
            for s in &secrets {
                undo.write(&s.path, &s.contents)?;
            }
            let cfg = match checked.take() {
                Some(cfg) => cfg,
                None => Config::parse_with(&self.path, &text, self.client_keys)
                    .map_err(EditError::Invalid)?,
            };
            if text != self.original {
                self.write_text(&text)?;
            }
            Ok(cfg)
        })();
        if result.is_err() {
            // A failure after the rename (fsync of the directory) leaves the
            // new file in place: its secrets must stay then.
            let written = fs::read_to_string(&self.path).is_ok_and(|t| t == text);
            if !written || text == self.original {
                undo.rollback();
            }
        }
        result
    }

    /// Writes `<file>.bak` and then the new text, both atomically.
    fn write_text(&self, text: &str) -> Result<(), EditError> {
        let meta = fs::metadata(&self.path).map_err(io_error(&self.path))?;
        let mode = meta.mode() & 0o7777;
        let owner = Some((meta.uid(), meta.gid()));
        let bak = fsutil::with_suffix(&self.path, ".bak");
        fsutil::atomic_write(&bak, self.original.as_bytes(), mode, owner)
            .map_err(io_error(&bak))?;
        fsutil::atomic_write(&self.path, text.as_bytes(), mode, owner)
            .map_err(io_error(&self.path))?;
        Ok(())
    }
}

/// The secret files a commit wrote, and how to undo each.
#[derive(Default)]
struct SecretUndo {
    /// (file, its previous content or `None` when it was created), in order.
    files: Vec<(PathBuf, Option<SecretBytes>)>,
    /// Directories created for them, outermost first.
    dirs: Vec<PathBuf>,
}

impl SecretUndo {
    fn write(&mut self, path: &Path, contents: &SecretBytes) -> Result<(), EditError> {
        let previous = match fs::read(path) {
            Ok(b) => Some(SecretBytes::new(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(path)(e)),
        };
        let mut missing = Vec::new();
        let mut dir = fsutil::parent_dir(path);
        while !dir.exists() {
            missing.push(dir.to_path_buf());
            match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => dir = p,
                _ => break,
            }
        }
        self.dirs.extend(missing.into_iter().rev());
        self.files.push((path.to_path_buf(), previous));
        write_secret_file(path, contents.expose()).map_err(io_error(path))
    }

    /// Best effort: puts every file back as it was, newest first.
    fn rollback(self) {
        for (path, previous) in self.files.into_iter().rev() {
            match previous {
                Some(old) => {
                    let _ = write_secret_file(&path, old.expose());
                }
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        for dir in self.dirs.iter().rev() {
            // Fails (and is left) when something else is in it.
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Writes `new` into `t[key]`, keeping the old value's comment and spacing.
/// Returns false (and changes nothing) when the value is already equal:
/// the same string (or the same address or prefix, however written), or the
/// same integer.
fn set_value(t: &mut dyn TableLike, key: &str, new: Value) -> bool {
    match t.get_mut(key) {
        Some(item) => match item.as_value_mut() {
            Some(v) => {
                if same_value(v, &new) {
                    return false;
                }
                let decor = v.decor().clone();
                *v = new;
                *v.decor_mut() = decor;
                true
            }
            None => {
                *item = Item::Value(new);
                true
            }
        },
        None => {
            t.insert(key, Item::Value(new));
            true
        }
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let (x, y) = (x.value().trim(), y.value().trim());
            x == y
                || matches!((x.parse::<IpAddr>(), y.parse::<IpAddr>()), (Ok(p), Ok(q)) if p == q)
                || matches!((x.parse::<IpNet>(), y.parse::<IpNet>()), (Ok(p), Ok(q)) if p == q)
        }
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q))
        }
        _ => false,
    }
}

/// A configuration integer (seconds); values beyond `i64` are clamped (and
/// then refused by validation).
fn toml_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse_prefix(v: &Value) -> Option<IpNet> {
    v.as_str()?.trim().parse::<IpNet>().ok().map(|p| p.trunc())
}

/// Appends the string `s` to `arr` in the layout of its last element: on a
/// line of its own with the same indentation in a multi-line array (a comment
/// after the last element stays with that element), else after `, `.
fn push_like_last(arr: &mut Array, s: &str) {
    let mut v = Value::from(s);
    let last_prefix = arr.iter().last().and_then(|l| {
        l.decor()
            .prefix()
            .and_then(|p| p.as_str())
            .map(str::to_owned)
    });
    let prefix = match last_prefix {
        None => String::new(),
        Some(p) if p.contains('\n') => {
            let indent = &p[p.rfind('\n').map_or(0, |i| i + 1)..];
            let trailing = arr.trailing().as_str().unwrap_or("").to_owned();
            match trailing.rfind('\n') {
                // `"a",  # comment\n]`: the comment belongs to "a".
                Some(nl) if trailing[..nl].contains('#') => {
                    arr.set_trailing(format!("\n{}", &trailing[nl + 1..]));
                    format!("{}{indent}", &trailing[..=nl])
                }
                _ => p,
            }
        }
        Some(_) => " ".to_owned(),
    };
    v.decor_mut().set_prefix(prefix);
    v.decor_mut().set_suffix("");
    arr.push_formatted(v);
}

/// Adds one to the position of every table at `from` or later, to make room
/// for a table at `from`.
fn shift_positions(t: &mut Table, from: isize) {
    if let Some(p) = t.position() {
        if p >= from {
            t.set_position(Some(p + 1));
        }
    }
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => shift_positions(sub, from),
            Item::ArrayOfTables(aot) => {
                for sub in aot.iter_mut() {
                    shift_positions(sub, from);
                }
            }
            _ => {}
        }
    }
}

/// The comment paragraphs of a table prefix that are separated from the header
/// by a blank line: everything up to and including the last blank line.
fn general_comments(prefix: &str) -> &str {
    let mut end = 0;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.ends_with('\n') && line.trim().is_empty() {
            end = offset;
        }
    }
    &prefix[..end]
}

fn starts_with_blank_line(s: &str) -> bool {
    s.split_inclusive('\n')
        .next()
        .is_some_and(|l| l.ends_with('\n') && l.trim().is_empty())
}

/// Calls `f` on every table (with a header) below `t`, depth first.
fn visit_tables<'a>(t: &'a Table, f: &mut dyn FnMut(&'a Table)) {
    for (_, item) in t.iter() {
        match item {
            Item::Table(sub) => {
                if !sub.is_implicit() {
                    f(sub);
                }
                visit_tables(sub, f);
            }
            Item::ArrayOfTables(aot) => {
                for sub in aot.iter() {
                    f(sub);
                    visit_tables(sub, f);
                }
            }
            _ => {}
        }
    }
}

/// The largest document position of any table.
fn max_position(root: &Table) -> Option<isize> {
    let mut max = root.position();
    visit_tables(root, &mut |t| max = max.max(t.position()));
    max
}

/// The smallest table position after `pos` (the next table in document order).
fn next_position(root: &Table, pos: isize) -> Option<isize> {
    let mut next: Option<isize> = None;
    visit_tables(root, &mut |t| {
        if let Some(p) = t.position() {
            if p > pos && !matches!(next, Some(n) if n <= p) {
                next = Some(p);
            }
        }
    });
    next
}

/// The table (with a header) at document position `pos`.
fn table_at_mut(t: &mut Table, pos: isize) -> Option<&mut Table> {
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => {
                if !sub.is_implicit() && sub.position() == Some(pos) {
                    return Some(sub);
                }
                if let Some(found) = table_at_mut(sub, pos) {
                    return Some(found);
                }
            }
            Item::ArrayOfTables(aot) => {
                for sub in aot.iter_mut() {
                    if sub.position() == Some(pos) {
                        return Some(sub);
                    }
                    if let Some(found) = table_at_mut(sub, pos) {
                        return Some(found);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The lowest host address of the WireGuard subnet that neither the gateway nor
/// any peer (enabled or not) uses, or `None` when the subnet is full.
///
/// IPv4 prefixes up to /30 skip the network and broadcast addresses (/31 and /32
/// use every address, RFC 3021). IPv6 prefixes up to /126 skip the
/// Subnet-Router anycast address (the all-zero host, RFC 4291 section 2.6.1).
/// The scan stops at the first free address and never looks at more than
/// (number of used addresses + 1) candidates, so a /64 costs nothing.
pub fn next_free_address(cfg: &Config) -> Option<IpAddr> {
    let mut used: HashSet<IpAddr> = cfg.peers.iter().map(|p| p.address).collect();
    used.insert(cfg.wireguard.address.addr());
    // Each used address can block at most one candidate.
    let budget = used.len() + 1;
    match cfg.wg_subnet() {
        IpNet::V4(net) => {
            let first = u32::from(net.network());
            let last = u32::from(net.broadcast());
            let (lo, hi) = if net.prefix_len() <= 30 {
                (first + 1, last - 1)
            } else {
                (first, last)
            };
            (lo..=hi)
                .take(budget)
                .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
                .find(|a| !used.contains(a))
        }
        IpNet::V6(net) => {
            let first = u128::from(net.network());
            let last = u128::from(net.broadcast());
            let lo = if net.prefix_len() <= 126 {
                first + 1
            } else {
                first
            };
            (lo..=last)
                .take(budget)
                .map(|n| IpAddr::V6(Ipv6Addr::from(n)))
                .find(|a| !used.contains(a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::{generate_private_key, public_key, write_secret_file};
    use crate::config::model::{GatewayConfig, PeerConfig, WireGuardConfig};
    use crate::config::testutil::TempDir;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    const SEED: &str = include_str!("../../configs/gateway.toml");

    /// A configuration with comments in every place an edit could disturb.
    const COMMENTED: &str = r#"# top comment
[gateway]
name = "gw"   # inline comment
public_endpoint = "vpn.example.com"
lan_prefixes = [ "172.16.4.0/24" ]   # odd spacing kept

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"

# general peers comment

# alice's laptop
[[peers]]
name = "alice"
public_key = "ALICE"
address = "172.16.60.2"
enabled = true  # keep me

[[peers]]
name = "bob"
public_key = "BOB"
address = "172.16.60.3"

# trailing comment
"#;

    struct Fx {
        dir: TempDir,
        path: PathBuf,
        alice: Key,
        bob: Key,
    }

    /// Writes `text` (with ALICE/BOB replaced by keys) as gateway.toml, mode 0640,
    /// next to a gateway key file.
    fn fixture(text: &str) -> Fx {
        let dir = TempDir::new();
        write_secret_file(
            &dir.path().join("wg.key"),
            generate_private_key().to_string().as_bytes(),
        )
        .unwrap();
        let alice = public_key(&generate_private_key());
        let bob = public_key(&generate_private_key());
        let text = text
            .replace("\"ALICE\"", &format!("\"{alice}\""))
            .replace("\"BOB\"", &format!("\"{bob}\""));
        let path = dir.path().join("gateway.toml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        Fx {
            dir,
            path,
            alice,
            bob,
        }
    }

    impl Fx {
        fn text(&self) -> String {
            fs::read_to_string(&self.path).unwrap()
        }

        fn dir_names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    fn carol(key: Key) -> NewPeer {
        NewPeer {
            name: "carol".into(),
            public_key: key,
            address: "172.16.60.4".parse().unwrap(),
            psk_file: None,
            private_key_file: None,
            keepalive: None,
            dns: vec![],
            endpoint: None,
        }
    }

    #[test]
    fn generic_table_edits_keep_comments_and_validate() {
        let fx = fixture(COMMENTED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        // A new table path: created at the end, the trailing comment above it.
        let changed = ed
            .set_table_keys(
                &["firewall", "aliases"],
                vec![(
                    "office".to_owned(),
                    Value::Array(["192.0.2.0/24"].into_iter().collect()),
                )],
            )
            .unwrap();
        assert_eq!(changed, ["office"]);
        // Setting the same value again changes nothing.
        let again = ed
            .set_table_keys(
                &["firewall", "aliases"],
                vec![(
                    "office".to_owned(),
                    Value::Array(["192.0.2.0/24"].into_iter().collect()),
                )],
            )
            .unwrap();
        assert!(again.is_empty());
        let mut rule = Table::new();
        rule.insert("name", value("r1"));
        rule.insert("from", value("lan"));
        rule.insert("to", value("office"));
        rule.insert("action", value("drop"));
        ed.append_array_table(&["firewall"], "rules", rule.clone())
            .unwrap();
        rule.insert("name", value("r2"));
        ed.append_array_table(&["firewall"], "rules", rule).unwrap();
        assert_eq!(ed.array_table_names(&["firewall"], "rules"), ["r1", "r2"]);
        assert!(ed.remove_array_table(&["firewall"], "rules", "r1"));
        assert!(!ed.remove_array_table(&["firewall"], "rules", "r1"));
        let added = ed
            .add_to_string_array(
                &["gateway"],
                "lan_prefixes",
                &["172.16.4.0/24".to_owned(), "172.16.5.0/24".to_owned()],
            )
            .unwrap();
        assert_eq!(added, ["172.16.5.0/24"], "the existing prefix is kept once");
        ed.commit().unwrap();
        let text = fx.text();
        for kept in [
            "# top comment",
            "name = \"gw\"   # inline comment",
            "enabled = true  # keep me",
            "# trailing comment",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
        let cfg = Config::parse(&fx.path, &text).unwrap();
        assert_eq!(
            cfg.gateway.lan_prefixes,
            [
                "172.16.4.0/24".parse::<IpNet>().unwrap(),
                "172.16.5.0/24".parse().unwrap()
            ]
        );
        assert!(text.contains("# odd spacing kept"), "{text}");
        assert_eq!(cfg.firewall.rules.len(), 1);
        assert_eq!(cfg.firewall.rules[0].name, "r2");
        assert_eq!(
            cfg.firewall.alias("office"),
            Some(&["192.0.2.0/24".parse::<IpNet>().unwrap()][..])
        );
    }

    #[test]
    fn unedited_document_round_trips_byte_for_byte() {
        for text in [SEED, COMMENTED] {
            let fx = fixture(text);
            let before = fx.text();
            let ed = ConfigEditor::open(&fx.path).unwrap();
            assert_eq!(ed.to_text(), before);
            ed.commit().unwrap();
            assert_eq!(fx.text(), before);
            // Nothing changed: no backup, no temp file.
            assert!(!fx.dir.path().join("gateway.toml.bak").exists());
            assert!(fx.dir_names().iter().all(|n| !n.ends_with(".tmp")));
        }
    }

    #[test]
    fn add_peer_to_seed_appends_after_the_comments() {
        let fx = fixture(SEED);
        write_secret_file(
            &fx.dir.path().join("peers/carol.psk"),
            generate_private_key().to_string().as_bytes(),
        )
        .unwrap();
        let carol_priv = generate_private_key();
        write_secret_file(
            &fx.dir.path().join("peers/carol.key"),
            carol_priv.to_string().as_bytes(),
        )
        .unwrap();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&NewPeer {
            psk_file: Some("peers/carol.psk".into()),
            private_key_file: Some("peers/carol.key".into()),
            keepalive: Some(25),
            dns: vec!["172.16.4.1".parse().unwrap(), "fd00::53".parse().unwrap()],
            address: "172.16.60.2".parse().unwrap(),
            ..carol(public_key(&carol_priv))
        })
        .unwrap();
        let cfg = ed.config().unwrap();
        assert_eq!(cfg.peers.len(), 1);
        ed.commit().unwrap();
        let expected = format!(
            "{SEED}\n[[peers]]\nname = \"carol\"\npublic_key = \"{}\"\naddress = \"172.16.60.2\"\n\
             psk_file = \"peers/carol.psk\"\nprivate_key_file = \"peers/carol.key\"\nkeepalive = 25\n\
             dns = [\"172.16.4.1\", \"fd00::53\"]\nenabled = true\n",
            public_key(&carol_priv)
        );
        assert_eq!(fx.text(), expected);
        assert_eq!(
            fs::read_to_string(fx.dir.path().join("gateway.toml.bak")).unwrap(),
            SEED
        );
        let c = Config::load(&fx.path).unwrap();
        let p = c.peer("carol").unwrap();
        assert_eq!(p.psk_file, Some(fx.dir.path().join("peers/carol.psk")));
        assert_eq!(p.dns.len(), 2);
        assert!(p.enabled);
    }

    #[test]
    fn add_peer_minimal_keeps_everything_else() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let key = public_key(&generate_private_key());
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(key)).unwrap();
        ed.commit().unwrap();
        let after = fx.text();
        assert_eq!(
            after,
            format!("{before}\n[[peers]]\nname = \"carol\"\npublic_key = \"{key}\"\naddress = \"172.16.60.4\"\nenabled = true\n")
        );
        assert_eq!(Config::load(&fx.path).unwrap().peers.len(), 3);
    }

    #[test]
    fn add_peer_without_existing_peers_or_trailing_comments() {
        let text = "[gateway]\nname = \"g\"\npublic_endpoint = \"h\"\n\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n";
        let fx = fixture(text);
        let key = public_key(&generate_private_key());
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(key)).unwrap();
        ed.commit().unwrap();
        assert_eq!(
            fx.text(),
            format!("{text}\n[[peers]]\nname = \"carol\"\npublic_key = \"{key}\"\naddress = \"172.16.60.4\"\nenabled = true\n")
        );
    }

    #[test]
    fn add_then_remove_restores_the_seed() {
        let fx = fixture(SEED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(public_key(&generate_private_key())))
            .unwrap();
        ed.commit().unwrap();
        assert_ne!(fx.text(), SEED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("carol").unwrap();
        ed.commit().unwrap();
        assert_eq!(fx.text(), SEED);
    }

    #[test]
    fn add_peer_refuses_duplicate_names() {
        let fx = fixture(COMMENTED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let mut p = carol(public_key(&generate_private_key()));
        p.name = "alice".into();
        assert!(matches!(ed.add_peer(&p), Err(EditError::PeerExists(n)) if n == "alice"));
    }

    #[test]
    fn remove_first_peer_keeps_general_comments() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("alice").unwrap();
        ed.commit().unwrap();
        let alice_block = format!(
            "# alice's laptop\n[[peers]]\nname = \"alice\"\npublic_key = \"{}\"\naddress = \"172.16.60.2\"\nenabled = true  # keep me\n\n",
            fx.alice
        );
        assert!(before.contains(&alice_block));
        assert_eq!(fx.text(), before.replace(&alice_block, ""));
        let c = Config::load(&fx.path).unwrap();
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].public_key, fx.bob);
    }

    #[test]
    fn remove_last_peer_keeps_trailing_comment() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("bob").unwrap();
        ed.commit().unwrap();
        let bob_block = format!(
            "\n[[peers]]\nname = \"bob\"\npublic_key = \"{}\"\naddress = \"172.16.60.3\"\n",
            fx.bob
        );
        assert_eq!(fx.text(), before.replace(&bob_block, ""));
    }

    #[test]
    fn remove_every_peer() {
        let fx = fixture(COMMENTED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("alice").unwrap();
        ed.remove_peer("bob").unwrap();
        assert!(matches!(
            ed.remove_peer("bob"),
            Err(EditError::PeerNotFound(_))
        ));
        ed.commit().unwrap();
        let text = fx.text();
        assert!(text.contains("# general peers comment\n"), "{text}");
        assert!(text.ends_with("# trailing comment\n"), "{text}");
        assert!(!text.contains("[[peers]]"));
        assert!(Config::load(&fx.path).unwrap().peers.is_empty());
    }

    #[test]
    fn remove_moves_general_comments_to_the_next_table() {
        let text = "[gateway]\nname = \"g\"\npublic_endpoint = \"h\"\n\n# peers come first here\n\n[[peers]]\nname = \"alice\"\npublic_key = \"ALICE\"\naddress = \"172.16.60.2\"\n\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n";
        let fx = fixture(text);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("alice").unwrap();
        ed.commit().unwrap();
        assert_eq!(
            fx.text(),
            "[gateway]\nname = \"g\"\npublic_endpoint = \"h\"\n\n# peers come first here\n\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n"
        );
    }

    #[test]
    fn enable_and_disable_keep_comments() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.set_peer_enabled("alice", false).unwrap();
        ed.set_peer_enabled("bob", false).unwrap();
        let cfg = ed.config().unwrap();
        assert!(!cfg.peer("alice").unwrap().enabled);
        assert!(!cfg.peer("bob").unwrap().enabled);
        ed.commit().unwrap();
        let bob_addr = "address = \"172.16.60.3\"\n";
        let expected = before
            .replace("enabled = true  # keep me", "enabled = false  # keep me")
            .replace(bob_addr, &format!("{bob_addr}enabled = false\n"));
        assert_eq!(fx.text(), expected);

        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.set_peer_enabled("alice", true).unwrap();
        ed.set_peer_enabled("bob", true).unwrap();
        ed.commit().unwrap();
        assert_eq!(
            fx.text(),
            before.replace(bob_addr, &format!("{bob_addr}enabled = true\n"))
        );

        // Enabling a peer that has no `enabled` key changes nothing.
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("bob").unwrap();
        ed.add_peer(&carol(fx.bob)).unwrap();
        let t = ed.to_text();
        ed.set_peer_enabled("alice", true).unwrap();
        assert_eq!(ed.to_text(), t);
        assert!(matches!(
            ed.set_peer_enabled("zed", false),
            Err(EditError::PeerNotFound(n)) if n == "zed"
        ));
    }

    #[test]
    fn enabling_a_peer_without_the_key_is_a_no_op() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.set_peer_enabled("bob", true).unwrap();
        assert_eq!(ed.to_text(), before);
    }

    #[test]
    fn inline_peer_arrays_are_edited_in_place() {
        let text = "peers = [{ name = \"alice\", public_key = \"ALICE\", address = \"172.16.60.2\" }]\n[gateway]\nname = \"g\"\npublic_endpoint = \"h\"\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n";
        let fx = fixture(text);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(fx.bob)).unwrap();
        ed.set_peer_enabled("alice", false).unwrap();
        let cfg = ed.config().unwrap();
        assert_eq!(cfg.peers.len(), 2);
        assert!(!cfg.peers[0].enabled);
        ed.remove_peer("alice").unwrap();
        ed.commit().unwrap();
        let c = Config::load(&fx.path).unwrap();
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].name, "carol");
        assert!(fx.text().starts_with("peers = ["));
    }

    #[test]
    fn commit_refuses_an_invalid_document() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let mut p = carol(public_key(&generate_private_key()));
        p.address = "10.9.9.9".parse().unwrap();
        ed.add_peer(&p).unwrap();
        let err = ed.config().unwrap_err();
        assert_eq!(err.0[0].field, "peers[2].address");
        match ed.commit() {
            Err(EditError::Invalid(errs)) => {
                assert_eq!(errs.len(), 1);
                assert!(
                    errs.0[0].message.contains("outside the WireGuard subnet"),
                    "{errs}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fx.text(), before);
        assert!(!fx.dir.path().join("gateway.toml.bak").exists());

        // A duplicate public key is refused too.
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(fx.alice)).unwrap();
        assert!(matches!(ed.commit(), Err(EditError::Invalid(_))));
        assert_eq!(fx.text(), before);
    }

    #[test]
    fn commit_keeps_mode_writes_backup_and_leaves_no_temp_files() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_peer(&carol(public_key(&generate_private_key())))
            .unwrap();
        ed.commit().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&fx.path), 0o640);
        let bak = fx.dir.path().join("gateway.toml.bak");
        assert_eq!(fs::read_to_string(&bak).unwrap(), before);
        assert_eq!(mode(&bak), 0o640);
        assert_eq!(
            fx.dir_names(),
            vec![
                "gateway.toml",
                "gateway.toml.bak",
                "gateway.toml.lock",
                "wg.key"
            ]
        );
        assert_eq!(mode(&fx.dir.path().join("gateway.toml.lock")), 0o600);
    }

    #[test]
    fn a_crash_mid_commit_leaves_a_usable_file() {
        // A kill -9 between creating the temp file and the rename leaves the old
        // file in place plus a partial temp file; the next commit recovers.
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let tmp = fx.dir.path().join(".gateway.toml.tmp");
        fs::write(&tmp, "[gateway\npartial").unwrap();
        fs::write(fx.dir.path().join(".gateway.toml.bak.tmp"), "x").unwrap();
        assert_eq!(Config::load(&fx.path).unwrap().peers.len(), 2);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("bob").unwrap();
        ed.commit().unwrap();
        assert_eq!(Config::load(&fx.path).unwrap().peers.len(), 1);
        assert_eq!(
            fs::read_to_string(fx.dir.path().join("gateway.toml.bak")).unwrap(),
            before
        );
        assert!(fx.dir_names().iter().all(|n| !n.ends_with(".tmp")));
    }

    #[test]
    fn commit_detects_changes_behind_the_lock() {
        let fx = fixture(COMMENTED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.remove_peer("bob").unwrap();
        let changed = fx.text().replace("# top comment", "# edited by hand");
        fs::write(&fx.path, &changed).unwrap();
        assert!(matches!(ed.commit(), Err(EditError::Conflict { .. })));
        assert_eq!(fx.text(), changed);
    }

    #[test]
    fn open_reports_syntax_errors_and_missing_files() {
        let fx = fixture("[gateway]\nname = = 1\n");
        match ConfigEditor::open(&fx.path) {
            Err(EditError::Invalid(errs)) => {
                assert_eq!(errs.0[0].line, 2);
                assert_eq!(errs.0[0].field, "syntax");
            }
            other => panic!("{other:?}"),
        }
        let missing = fx.dir.path().join("nope.toml");
        match ConfigEditor::open(&missing) {
            Err(EditError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_lock_serializes_editors() {
        let fx = fixture(COMMENTED);
        let first = ConfigEditor::open(&fx.path).unwrap();
        let (tx, rx) = mpsc::channel();
        let path = fx.path.clone();
        let waiter = std::thread::spawn(move || {
            let second = ConfigEditor::open(&path).map(|_| ());
            tx.send(second.is_ok()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "second editor got the lock while the first held it"
        );
        drop(first);
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
    }

    #[test]
    fn comment_helpers() {
        assert_eq!(general_comments(""), "");
        assert_eq!(general_comments("\n"), "\n");
        assert_eq!(general_comments("# own\n"), "");
        assert_eq!(general_comments("# a\n\n# own\n"), "# a\n\n");
        assert_eq!(general_comments("# a\n  \n# own\n  "), "# a\n  \n");
        assert!(starts_with_blank_line("\n# x\n"));
        assert!(starts_with_blank_line("  \n"));
        assert!(!starts_with_blank_line("# x\n"));
        assert!(!starts_with_blank_line(""));
    }

    // ---- [[ipsec.tunnels]], remote prefixes, staged secrets ----

    fn tunnel(name: &str, remote: &str, inside: &str) -> NewTunnel {
        NewTunnel {
            local_id: Some("198.51.100.10".into()),
            inside_cidr: Some(inside.parse().unwrap()),
            dpd_interval: Some(10),
            dpd_timeout: Some(30),
            start_action: Some(StartAction::Initiate),
            priority: Some(100),
            ..NewTunnel::new(
                name,
                remote.parse().unwrap(),
                PathBuf::from(format!("ipsec/{name}.psk")),
            )
        }
    }

    fn psk(s: &str) -> SecretBytes {
        SecretBytes::from_slice(s.as_bytes())
    }

    #[test]
    fn upsert_adds_tunnels_and_writes_psks_with_the_commit() {
        let fx = fixture(COMMENTED);
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        for (name, remote, inside, key) in [
            ("aws-1", "203.0.113.1", "169.254.10.0/30", "first.key.123"),
            ("aws-2", "203.0.113.2", "169.254.11.0/30", "second.key.123"),
        ] {
            let change = ed
                .stage_secret_file(Path::new(&format!("ipsec/{name}.psk")), psk(key))
                .unwrap();
            assert_eq!(change, SecretChange::Created);
            assert_eq!(
                ed.upsert_tunnel(&tunnel(name, remote, inside)).unwrap(),
                Upsert::Added
            );
        }
        // Nothing on disk before the commit.
        assert!(!fx.dir.path().join("ipsec").exists());
        ed.commit().unwrap();
        let text = fx.text();
        let added = "# trailing comment\n\n[[ipsec.tunnels]]\nname = \"aws-1\"\nremote_address = \"203.0.113.1\"\nlocal_id = \"198.51.100.10\"\npsk_file = \"ipsec/aws-1.psk\"\ninside_cidr = \"169.254.10.0/30\"\ndpd_interval = 10\ndpd_timeout = 30\nstart_action = \"initiate\"\npriority = 100\n\n[[ipsec.tunnels]]\nname = \"aws-2\"\n";
        assert!(
            text.starts_with(&before.replace("# trailing comment\n", "")),
            "{text}"
        );
        assert!(text.contains(added), "{text}");
        let cfg = Config::load(&fx.path).unwrap();
        assert_eq!(cfg.ipsec.tunnels.len(), 2);
        assert_eq!(cfg.tunnel("aws-2").unwrap().priority, 100);
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        let key1 = fx.dir.path().join("ipsec/aws-1.psk");
        assert_eq!(fs::read(&key1).unwrap(), b"first.key.123");
        assert_eq!(mode(&key1), 0o600);
        assert_eq!(mode(&fx.dir.path().join("ipsec")), 0o700);

        // The same again: nothing changes, nothing is written.
        let bak = fs::read_to_string(fx.dir.path().join("gateway.toml.bak")).unwrap();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        assert_eq!(
            ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("first.key.123"))
                .unwrap(),
            SecretChange::Unchanged
        );
        assert_eq!(
            ed.upsert_tunnel(&tunnel("aws-1", "203.0.113.1", "169.254.10.0/30"))
                .unwrap(),
            Upsert::Unchanged
        );
        ed.commit().unwrap();
        assert_eq!(fx.text(), text);
        assert_eq!(
            fs::read_to_string(fx.dir.path().join("gateway.toml.bak")).unwrap(),
            bak
        );
    }

    const WITH_TUNNEL: &str = r#"[gateway]
name = "gw"
public_endpoint = "198.51.100.10"

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"
remote_prefixes = ["10.0.0.0/16"]  # the VPC

[ipsec]
replay_window = 512

# the first AWS tunnel
[[ipsec.tunnels]]
name = "aws-1"
remote_address = "203.0.113.1"   # AWS outside address
psk_file = "ipsec/aws-1.psk"
inside_cidr = "169.254.10.0/30"  # from the console
local_address = "192.168.1.10"
priority = 50  # preferred here
enabled = false

# laptops
[[peers]]
name = "alice"
public_key = "ALICE"
address = "172.16.60.2"
"#;

    fn with_tunnel() -> Fx {
        let fx = fixture(WITH_TUNNEL);
        write_secret_file(&fx.dir.path().join("ipsec/aws-1.psk"), b"old.key.1234").unwrap();
        assert_eq!(Config::load(&fx.path).unwrap().ipsec.tunnels.len(), 1);
        fx
    }

    #[test]
    fn upsert_updates_in_place_keeping_comments_and_other_keys() {
        let fx = with_tunnel();
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let mut t = tunnel("aws-1", "203.0.113.1", "169.254.12.0/30");
        t.local_id = None;
        t.priority = Some(100); // only for new tables: the file's 50 stays
        t.start_action = Some(StartAction::Wait); // likewise
        match ed.upsert_tunnel(&t).unwrap() {
            Upsert::Updated { keys, renamed_from } => {
                assert_eq!(keys, ["inside_cidr", "dpd_interval", "dpd_timeout"]);
                assert_eq!(renamed_from, None);
            }
            other => panic!("{other:?}"),
        }
        ed.commit().unwrap();
        let expected = before
            .replace(
                "inside_cidr = \"169.254.10.0/30\"  # from the console",
                "inside_cidr = \"169.254.12.0/30\"  # from the console",
            )
            .replace(
                "enabled = false\n",
                "enabled = false\ndpd_interval = 10\ndpd_timeout = 30\n",
            );
        assert_eq!(fx.text(), expected);

        // Matched by address however it is spelled; renamed in place.
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let mut t = tunnel("vpn-a", "203.0.113.1", "169.254.12.0/30");
        t.local_id = None;
        t.psk_file = "ipsec/aws-1.psk".into();
        match ed.upsert_tunnel(&t).unwrap() {
            Upsert::Updated { keys, renamed_from } => {
                assert_eq!(keys, ["name"]);
                assert_eq!(renamed_from.as_deref(), Some("aws-1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ed.config().unwrap().ipsec.tunnels[0].name, "vpn-a");
    }

    #[test]
    fn a_new_tunnel_goes_after_the_last_one() {
        let fx = with_tunnel();
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.stage_secret_file(Path::new("ipsec/aws-2.psk"), psk("new.key.5678"))
            .unwrap();
        let mut t = tunnel("aws-2", "203.0.113.2", "169.254.11.0/30");
        t.local_id = None;
        t.dpd_interval = None;
        t.dpd_timeout = None;
        t.priority = Some(200);
        assert_eq!(ed.upsert_tunnel(&t).unwrap(), Upsert::Added);
        ed.commit().unwrap();
        let new_table = "\n[[ipsec.tunnels]]\nname = \"aws-2\"\nremote_address = \"203.0.113.2\"\npsk_file = \"ipsec/aws-2.psk\"\ninside_cidr = \"169.254.11.0/30\"\nstart_action = \"initiate\"\npriority = 200\n";
        let expected = before.replace(
            "enabled = false\n",
            &format!("enabled = false\n{new_table}"),
        );
        assert_eq!(fx.text(), expected);
        let cfg = Config::load(&fx.path).unwrap();
        assert_eq!(cfg.ipsec.replay_window, 512);
        assert_eq!(cfg.peers.len(), 1);
    }

    #[test]
    fn a_first_tunnel_goes_after_an_ipsec_header() {
        let text = WITH_TUNNEL.replace(
            "\n# the first AWS tunnel\n[[ipsec.tunnels]]\nname = \"aws-1\"\nremote_address = \"203.0.113.1\"   # AWS outside address\npsk_file = \"ipsec/aws-1.psk\"\ninside_cidr = \"169.254.10.0/30\"  # from the console\nlocal_address = \"192.168.1.10\"\npriority = 50  # preferred here\nenabled = false\n",
            "",
        );
        let fx = fixture(&text);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("new.key.5678"))
            .unwrap();
        let mut t = tunnel("aws-1", "203.0.113.1", "169.254.10.0/30");
        t.local_id = None;
        t.dpd_interval = None;
        t.dpd_timeout = None;
        ed.upsert_tunnel(&t).unwrap();
        ed.commit().unwrap();
        assert!(
            fx.text()
                .contains("[ipsec]\nreplay_window = 512\n\n[[ipsec.tunnels]]\nname = \"aws-1\"\n"),
            "{}",
            fx.text()
        );
        let text = fx.text();
        assert!(
            text.find("[[ipsec.tunnels]]") < text.find("# laptops\n[[peers]]"),
            "{text}"
        );
    }

    #[test]
    fn inline_tunnel_arrays_keep_their_style() {
        let text = "[gateway]\nname = \"g\"\npublic_endpoint = \"198.51.100.10\"\n[wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"wg.key\"\n[ipsec]\ntunnels = [{ name = \"aws-1\", remote_address = \"203.0.113.1\", psk_file = \"ipsec/aws-1.psk\" }]\n";
        let fx = fixture(text);
        write_secret_file(&fx.dir.path().join("ipsec/aws-1.psk"), b"old.key.1234").unwrap();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let mut t = tunnel("aws-1", "203.0.113.1", "169.254.10.0/30");
        t.local_id = None;
        assert!(matches!(
            ed.upsert_tunnel(&t).unwrap(),
            Upsert::Updated { .. }
        ));
        ed.stage_secret_file(Path::new("ipsec/aws-2.psk"), psk("new.key.5678"))
            .unwrap();
        let mut t2 = tunnel("aws-2", "203.0.113.2", "169.254.11.0/30");
        t2.local_id = None;
        assert_eq!(ed.upsert_tunnel(&t2).unwrap(), Upsert::Added);
        ed.commit().unwrap();
        let cfg = Config::load(&fx.path).unwrap();
        assert_eq!(cfg.ipsec.tunnels.len(), 2);
        assert_eq!(
            cfg.tunnel("aws-1").unwrap().inside_cidr,
            "169.254.10.0/30".parse().ok()
        );
        assert!(fx.text().contains("tunnels = [{ name = \"aws-1\""));
        assert!(!fx.text().contains("[[ipsec.tunnels]]"));
    }

    #[test]
    fn a_failed_commit_rolls_the_secrets_back() {
        let fx = with_tunnel();
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        // Replaces aws-1's key, creates aws-2's in a new directory...
        assert_eq!(
            ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("rotated.key.1"))
                .unwrap(),
            SecretChange::Replaced
        );
        assert_eq!(
            ed.stage_secret_file(Path::new("keys/aws/aws-2.psk"), psk("new.key.5678"))
                .unwrap(),
            SecretChange::Created
        );
        // ...but aws-2's inside CIDR is not in 169.254.0.0/16.
        let mut t = tunnel("aws-2", "203.0.113.2", "10.9.9.0/30");
        t.psk_file = "keys/aws/aws-2.psk".into();
        ed.upsert_tunnel(&t).unwrap();
        match ed.commit() {
            Err(EditError::Invalid(errs)) => {
                assert!(errs.to_string().contains("inside_cidr"), "{errs}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fx.text(), before);
        assert!(!fx.dir.path().join("gateway.toml.bak").exists());
        assert_eq!(
            fs::read(fx.dir.path().join("ipsec/aws-1.psk")).unwrap(),
            b"old.key.1234"
        );
        assert!(!fx.dir.path().join("keys").exists());
    }

    #[test]
    fn a_secret_alone_is_written_and_validated() {
        let fx = with_tunnel();
        let before = fx.text();
        // A key that validation refuses (too short) is rolled back.
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("short"))
            .unwrap();
        assert!(matches!(ed.commit(), Err(EditError::Invalid(_))));
        assert_eq!(
            fs::read(fx.dir.path().join("ipsec/aws-1.psk")).unwrap(),
            b"old.key.1234"
        );
        // A good one is written; the TOML is untouched.
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("rotated.key.1"))
            .unwrap();
        ed.commit().unwrap();
        assert_eq!(
            fs::read(fx.dir.path().join("ipsec/aws-1.psk")).unwrap(),
            b"rotated.key.1"
        );
        assert_eq!(fx.text(), before);
        // A key with a loose mode is rewritten even with the same content.
        let key = fx.dir.path().join("ipsec/aws-1.psk");
        fs::set_permissions(&key, Permissions::from_mode(0o644)).unwrap();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        assert_eq!(
            ed.stage_secret_file(Path::new("ipsec/aws-1.psk"), psk("rotated.key.1"))
                .unwrap(),
            SecretChange::Replaced
        );
        ed.commit().unwrap();
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn remote_prefixes_single_line() {
        let fx = with_tunnel();
        let before = fx.text();
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            ed.add_remote_prefixes(&[n("10.0.0.0/16"), n("10.1.0.7/16"), n("10.1.0.0/16")])
                .unwrap(),
            vec![n("10.1.0.0/16")]
        );
        assert_eq!(
            ed.to_text(),
            before.replace(
                "remote_prefixes = [\"10.0.0.0/16\"]  # the VPC",
                "remote_prefixes = [\"10.0.0.0/16\", \"10.1.0.0/16\"]  # the VPC"
            )
        );
        assert!(!ed
            .set_remote_prefixes(&[n("10.0.0.0/16"), n("10.1.0.0/16")])
            .unwrap());
        assert!(ed.set_remote_prefixes(&[n("10.2.0.0/16")]).unwrap());
        assert_eq!(
            ed.to_text(),
            before.replace(
                "remote_prefixes = [\"10.0.0.0/16\"]  # the VPC",
                "remote_prefixes = [\"10.2.0.0/16\"]  # the VPC"
            )
        );
        assert!(ed.set_remote_prefixes(&[]).unwrap());
        assert!(ed.to_text().contains("remote_prefixes = []  # the VPC\n"));
        assert_eq!(
            ed.add_remote_prefixes(&[n("10.3.0.0/16")]).unwrap().len(),
            1
        );
        assert!(ed
            .to_text()
            .contains("remote_prefixes = [\"10.3.0.0/16\"]  # the VPC\n"));
        ed.commit().unwrap();
        assert_eq!(
            Config::load(&fx.path).unwrap().wireguard.remote_prefixes,
            vec![n("10.3.0.0/16")]
        );
    }

    #[test]
    fn remote_prefixes_multi_line_and_absent() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let text = COMMENTED.replace(
            "private_key_file = \"wg.key\"\n",
            "private_key_file = \"wg.key\"\nremote_prefixes = [\n    \"10.0.0.0/16\",  # VPC A\n]\n",
        );
        let fx = fixture(&text);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_remote_prefixes(&[n("10.1.0.0/16")]).unwrap();
        assert!(
            ed.to_text().contains(
                "remote_prefixes = [\n    \"10.0.0.0/16\",  # VPC A\n    \"10.1.0.0/16\",\n]\n"
            ),
            "{}",
            ed.to_text()
        );
        ed.commit().unwrap();
        assert_eq!(
            Config::load(&fx.path)
                .unwrap()
                .wireguard
                .remote_prefixes
                .len(),
            2
        );

        // No key yet: it is added to [wireguard].
        let fx = fixture(COMMENTED);
        let mut ed = ConfigEditor::open(&fx.path).unwrap();
        ed.add_remote_prefixes(&[n("10.0.0.0/16")]).unwrap();
        assert!(ed
            .to_text()
            .contains("private_key_file = \"wg.key\"\nremote_prefixes = [\"10.0.0.0/16\"]\n"));
        ed.commit().unwrap();
    }

    // ---- next_free_address ----

    fn cfg(address: &str, peers: &[&str]) -> Config {
        Config {
            path: PathBuf::from("/x/gateway.toml"),
            gateway: GatewayConfig {
                name: "g".into(),
                public_endpoint: "h".into(),
                lan_prefixes: vec![],
                control_socket: "/x/s".into(),
                tun_name: "ipiece0".into(),
                public_address: None,
            },
            wireguard: WireGuardConfig {
                listen_port: 51821,
                address: address.parse().unwrap(),
                private_key_file: "/x/wg.key".into(),
                mtu: 1420,
                remote_prefixes: vec![],
            },
            peers: peers
                .iter()
                .enumerate()
                .map(|(i, a)| PeerConfig {
                    name: format!("p{i}"),
                    public_key: Key([i as u8; 32]),
                    address: a.parse().unwrap(),
                    psk_file: None,
                    private_key_file: None,
                    keepalive: 25,
                    endpoint: None,
                    dns: vec![],
                    // Disabled peers still own their address.
                    enabled: i % 2 == 0,
                })
                .collect(),
            ipsec: Default::default(),
            aws: None,
            firewall: crate::config::firewall::FirewallConfig::default(),
            metrics: crate::config::metrics::MetricsConfig::default(),
            lan: None,
            dns: None,
        }
    }

    fn free(address: &str, peers: &[&str]) -> Option<String> {
        next_free_address(&cfg(address, peers)).map(|a| a.to_string())
    }

    #[test]
    fn next_free_slash_24() {
        assert_eq!(free("172.16.60.1/24", &[]).as_deref(), Some("172.16.60.2"));
        assert_eq!(
            free("172.16.60.1/24", &["172.16.60.2", "172.16.60.3"]).as_deref(),
            Some("172.16.60.4")
        );
        // A hole left by a removed peer is reused; disabled peers keep theirs.
        assert_eq!(
            free(
                "172.16.60.1/24",
                &["172.16.60.2", "172.16.60.4", "172.16.60.3"]
            )
            .as_deref(),
            Some("172.16.60.5")
        );
        assert_eq!(
            free("172.16.60.1/24", &["172.16.60.2", "172.16.60.4"]).as_deref(),
            Some("172.16.60.3")
        );
        // The gateway need not be .1.
        assert_eq!(
            free("172.16.60.254/24", &[]).as_deref(),
            Some("172.16.60.1")
        );
        // Full: .1 is the gateway, .2-.254 are peers, .255 is the broadcast address.
        let all: Vec<String> = (2..=254).map(|i| format!("172.16.60.{i}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(free("172.16.60.1/24", &refs), None);
        assert_eq!(
            free("172.16.60.1/24", &refs[1..]).as_deref(),
            Some("172.16.60.2")
        );
    }

    #[test]
    fn next_free_slash_29() {
        assert_eq!(
            free(
                "10.0.0.1/29",
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
            )
            .as_deref(),
            Some("10.0.0.6")
        );
        assert_eq!(
            free(
                "10.0.0.1/29",
                &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
            ),
            None
        );
        assert_eq!(free("10.0.0.9/29", &[]).as_deref(), Some("10.0.0.10"));
    }

    #[test]
    fn next_free_slash_30_31_32() {
        assert_eq!(free("10.0.0.1/30", &[]).as_deref(), Some("10.0.0.2"));
        assert_eq!(free("10.0.0.1/30", &["10.0.0.2"]), None);
        assert_eq!(free("10.0.0.2/30", &[]).as_deref(), Some("10.0.0.1"));
        assert_eq!(free("10.0.0.0/31", &[]).as_deref(), Some("10.0.0.1"));
        assert_eq!(free("10.0.0.1/31", &[]).as_deref(), Some("10.0.0.0"));
        assert_eq!(free("10.0.0.0/31", &["10.0.0.1"]), None);
        assert_eq!(free("10.0.0.7/32", &[]), None);
    }

    #[test]
    fn next_free_slash_16_with_holes() {
        let mut used: Vec<String> = (2..=255).map(|i| format!("10.1.0.{i}")).collect();
        used.extend((0..=9).map(|i| format!("10.1.1.{i}")));
        used.extend((11..=20).map(|i| format!("10.1.1.{i}")));
        let refs: Vec<&str> = used.iter().map(String::as_str).collect();
        // 10.1.0.255 and 10.1.1.0 are ordinary hosts in a /16.
        assert_eq!(free("10.1.0.1/16", &refs).as_deref(), Some("10.1.1.10"));
        assert_eq!(free("10.1.200.7/16", &[]).as_deref(), Some("10.1.0.1"));
        assert_eq!(
            free("10.1.0.1/16", &refs[..254]).as_deref(),
            Some("10.1.1.0")
        );
    }

    #[test]
    fn next_free_ipv6() {
        assert_eq!(free("fd00:60::1/64", &[]).as_deref(), Some("fd00:60::2"));
        assert_eq!(
            free("fd00:60::1/64", &["fd00:60::2", "fd00:60::4"]).as_deref(),
            Some("fd00:60::3")
        );
        // The subnet-router anycast address is skipped, and a /64 is not scanned.
        assert_eq!(free("fd00:60::5/64", &[]).as_deref(), Some("fd00:60::1"));
        assert_eq!(free("::1/0", &[]).as_deref(), Some("::2"));
        assert_eq!(free("fd00::/127", &[]).as_deref(), Some("fd00::1"));
        assert_eq!(free("fd00::1/127", &["fd00::"]), None);
        assert_eq!(free("fd00::1/128", &[]), None);
    }
}
