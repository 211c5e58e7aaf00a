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

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table, TableLike, Value};

use super::fsutil;
use super::keys::Key;
use super::model::{Config, ConfigErrors};
use super::validate::syntax_error;

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
    /// Holds the `flock` on `<file>.lock`; closing it releases the lock.
    _lock: File,
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
        let original = fs::read_to_string(path).map_err(io_error(path))?;
        let doc: DocumentMut = original.parse().map_err(|e| {
            EditError::Invalid(ConfigErrors(vec![syntax_error(path, &original, &e)]))
        })?;
        Ok(ConfigEditor {
            path: path.to_path_buf(),
            original,
            doc,
            _lock: lock,
        })
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
    /// `name, public_key, address, psk_file, private_key_file, keepalive, dns,
    /// enabled` (optional ones omitted when `None` or empty; `enabled = true`
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

    /// The configuration as it stands in the edited document, validated.
    pub fn config(&self) -> Result<Config, ConfigErrors> {
        Config::parse(&self.path, &self.doc.to_string())
    }

    /// Validates and writes the edited document, then releases the lock.
    ///
    /// Nothing is written when the document does not validate
    /// ([`EditError::Invalid`]), when it is unchanged, or when the file was
    /// changed behind the lock ([`EditError::Conflict`]). Otherwise the previous
    /// text is written to `<file>.bak` and the new text to `<dir>/.<name>.tmp`
    /// (each created with the original file's mode and owner, fsynced, renamed
    /// into place, directory fsynced).
    pub fn commit(self) -> Result<(), EditError> {
        let text = self.doc.to_string();
        Config::parse(&self.path, &text).map_err(EditError::Invalid)?;
        if text == self.original {
            return Ok(());
        }
        let current = fs::read_to_string(&self.path).map_err(io_error(&self.path))?;
        if current != self.original {
            return Err(EditError::Conflict { path: self.path });
        }
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
        }
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
                    dns: vec![],
                    // Disabled peers still own their address.
                    enabled: i % 2 == 0,
                })
                .collect(),
            ipsec: Default::default(),
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
