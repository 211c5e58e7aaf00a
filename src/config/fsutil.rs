//! Crash-safe file replacement: write a temporary sibling, fsync it, rename it
//! over the target and fsync the directory, so that a crash at any instant
//! leaves either the old or the new file, never a partial one.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads the UTF-8 text file at `path`, at most `max` bytes: a larger one
/// is an error that says so (with `why`, what such a file usually holds),
/// as is one that is not UTF-8. For the files operators hand to an import
/// (XML of AWS or pfSense), read whole before they are parsed.
pub(crate) fn read_text_bounded(path: &Path, max: u64, why: &str) -> io::Result<String> {
    use std::io::Read;
    let mut raw = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut raw)?;
    if raw.len() as u64 > max {
        return Err(io::Error::other(format!("larger than {max} bytes{why}")));
    }
    String::from_utf8(raw)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name (`gateway.toml` -> `gateway.toml.lock`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The temporary sibling used while replacing `path`: `<dir>/.<name>.tmp`.
pub(crate) fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    Ok(parent_dir(path).join(tmp))
}

/// Fsyncs a directory so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `contents`.
///
/// The temporary file is created with `mode` (never wider: it is created with
/// that mode and then `fchmod`ed to exactly that mode, whatever the umask), and
/// when `owner` is given it is `fchown`ed to it (best effort: only root can give
/// a file away). A stale temporary file from an earlier crash is removed first.
pub(crate) fn atomic_write(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let tmp = temp_path(path)?;
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = write_then_rename(&tmp, path, contents, mode, owner);
    if result.is_err() {
        // Best effort: after a successful rename the temp file no longer exists.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        // Not permitted unless we are root or already the owner; the file then
        // simply belongs to us, like any newly written file.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    sync_dir(parent_dir(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::TempDir;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names() {
        assert_eq!(parent_dir(Path::new("a.toml")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/etc/a.toml")), Path::new("/etc"));
        assert_eq!(
            with_suffix(Path::new("/etc/a.toml"), ".lock"),
            Path::new("/etc/a.toml.lock")
        );
        assert_eq!(
            temp_path(Path::new("/etc/a.toml")).unwrap(),
            Path::new("/etc/.a.toml.tmp")
        );
        assert_eq!(
            temp_path(Path::new("a.toml")).unwrap(),
            Path::new("./.a.toml.tmp")
        );
        assert!(temp_path(Path::new("/")).is_err());
    }

    #[test]
    fn atomic_write_replaces_with_exact_mode_and_removes_stale_temp() {
        let dir = TempDir::new();
        let path = dir.path().join("f.txt");
        fs::write(&path, "old").unwrap();
        // A stale temp file with a wide mode must not be reused.
        let tmp = temp_path(&path).unwrap();
        fs::write(&tmp, "stale").unwrap();
        fs::set_permissions(&tmp, Permissions::from_mode(0o666)).unwrap();

        atomic_write(&path, b"new", 0o640, None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        assert!(!tmp.exists());
    }

    #[test]
    fn atomic_write_failure_leaves_old_file() {
        let dir = TempDir::new();
        // The target is a non-empty directory: rename fails, the temp file is cleaned up.
        let path = dir.path().join("d");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "x").unwrap();
        assert!(atomic_write(&path, b"new", 0o600, None).is_err());
        assert!(path.is_dir());
        assert!(!temp_path(&path).unwrap().exists());
    }
}
