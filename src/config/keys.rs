//! WireGuard keys (Curve25519, RFC 7748) as they appear in the configuration:
//! the [`Key`] newtype in standard base64, key files (checked for mode 0600),
//! secret-file writes, and key generation; and the pre-shared key files of the
//! IPsec tunnels ([`read_psk_file`]).
//!
//! Key material never appears in an error message or in `Debug` output.

use std::fmt;
use std::fs::{DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use boringtun::x25519::{PublicKey, StaticSecret};

use super::fsutil;
use crate::ike::crypto::SecretBytes;

/// A 32-byte WireGuard key: a public key, a private key or a preshared key.
///
/// `Display` and `FromStr` use standard base64 with padding (44 characters),
/// the format of `wg genkey`. `Debug` is redacted, because the same type holds
/// private and preshared keys; use `Display` to show a public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a string is not a key. The messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The string is empty.
    #[error("the key is empty")]
    Empty,
    /// The string is not standard base64 with padding.
    #[error("the key is not valid base64 (standard alphabet, with `=` padding)")]
    InvalidBase64,
    /// The base64 decodes to the wrong number of bytes.
    #[error("the key decodes to {0} bytes, a WireGuard key has 32")]
    WrongLength(usize),
}

impl FromStr for Key {
    type Err = KeyParseError;

    /// Parses standard base64 of exactly 32 bytes; surrounding whitespace is not accepted.
    fn from_str(s: &str) -> Result<Key, KeyParseError> {
        if s.is_empty() {
            return Err(KeyParseError::Empty);
        }
        // 32 bytes are 44 base64 characters; anything much longer is not a key and
        // is not worth decoding.
        if s.len() > 64 {
            return Err(KeyParseError::WrongLength(s.len() / 4 * 3));
        }
        let bytes = STANDARD
            .decode(s)
            .map_err(|_| KeyParseError::InvalidBase64)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyParseError::WrongLength(bytes.len()))?;
        Ok(Key(arr))
    }
}

/// Why a key file could not be used. The messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("key file {} does not exist", path.display())]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Group or others have some access to the file (`mode & 0o077 != 0`).
    #[error(
        "key file {} has mode {mode:04o}, so group or others can access it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The content is not a base64 key of 32 bytes.
    #[error("key file {} does not contain a valid key: {reason}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with the content.
        reason: KeyParseError,
    },
    /// The content of an IPsec PSK file is not a usable pre-shared key.
    #[error("PSK file {} does not contain a usable pre-shared key: {reason}", path.display())]
    InvalidPsk {
        /// The PSK file.
        path: PathBuf,
        /// What is wrong with the content.
        reason: PskParseError,
    },
}

/// Key files are tiny; reading stops here so a wrong path cannot eat memory.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Shortest pre-shared key accepted in an IPsec PSK file, in bytes (AWS's minimum).
pub const MIN_PSK_LEN: usize = 8;
/// Longest pre-shared key accepted in an IPsec PSK file, in bytes.
pub const MAX_PSK_LEN: usize = 128;

/// Why the content of an IPsec PSK file is refused. The messages never quote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskParseError {
    /// Nothing but line ends.
    #[error("the file is empty")]
    Empty,
    /// Too short or too long.
    #[error(
        "the key is {0} bytes long; use {MIN_PSK_LEN} to {MAX_PSK_LEN} printable ASCII characters"
    )]
    Length(usize),
    /// A byte outside printable ASCII (space to `~`).
    #[error("the key contains a character that is not printable ASCII (space to ~)")]
    NotPrintable,
    /// The file is larger than any key file should be.
    #[error("the file is larger than {MAX_KEY_FILE_LEN} bytes")]
    FileTooLarge,
}

/// What could be learned from a key file: the key when the content is valid
/// (even if the mode is wrong), and every problem found.
pub(crate) struct KeyFileCheck {
    pub(crate) key: Option<Key>,
    pub(crate) problems: Vec<KeyFileError>,
}

/// Reads a secret file and reports all its problems instead of stopping at the
/// first (mode and content both), so validation can both complain about the
/// mode and use the content. `parse` gets the raw bytes, which are wiped after.
fn inspect_secret_file<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, KeyFileError>,
) -> (Option<T>, Vec<KeyFileError>) {
    let mut problems = Vec::new();
    let io_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            KeyFileError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            KeyFileError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return (None, vec![io_err(e)]),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return (None, vec![io_err(e)]),
    };
    if !meta.is_file() {
        return (None, vec![io_err(io::Error::other("not a regular file"))]);
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        problems.push(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut raw = Vec::new();
    if let Err(e) = file.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut raw) {
        problems.push(io_err(e));
        return (None, problems);
    }
    let parsed = parse(&raw);
    // Wipe the copy of the secret we no longer need (best effort).
    raw.iter_mut().for_each(|b| *b = 0);
    match parsed {
        Ok(v) => (Some(v), problems),
        Err(e) => {
            problems.push(e);
            (None, problems)
        }
    }
}

/// Reads a key file and reports all its problems instead of stopping at the
/// first, so validation can both complain about the mode and use the key.
pub(crate) fn inspect_key_file(path: &Path) -> KeyFileCheck {
    let (key, problems) = inspect_secret_file(path, |raw| {
        let parsed = if raw.len() as u64 > MAX_KEY_FILE_LEN {
            Err(KeyParseError::WrongLength(raw.len()))
        } else {
            std::str::from_utf8(raw)
                .map_err(|_| KeyParseError::InvalidBase64)
                .and_then(|s| s.trim().parse::<Key>())
        };
        parsed.map_err(|reason| KeyFileError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    });
    KeyFileCheck { key, problems }
}

/// The pre-shared key in the content of a PSK file: the bytes without the
/// line ends (CR, LF) that end them, 8 to 128 of printable ASCII.
fn parse_psk(raw: &[u8]) -> Result<SecretBytes, PskParseError> {
    if raw.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(PskParseError::FileTooLarge);
    }
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let psk = &raw[..end];
    if psk.is_empty() {
        return Err(PskParseError::Empty);
    }
    if !psk.iter().all(|b| matches!(b, b' '..=b'~')) {
        return Err(PskParseError::NotPrintable);
    }
    if !(MIN_PSK_LEN..=MAX_PSK_LEN).contains(&psk.len()) {
        return Err(PskParseError::Length(psk.len()));
    }
    Ok(SecretBytes::from_slice(psk))
}

/// Reads an IPsec PSK file and reports all its problems (see
/// [`read_psk_file`]); the key itself is wiped at once.
pub(crate) fn inspect_psk_file(path: &Path) -> Vec<KeyFileError> {
    inspect_secret_file(path, |raw| {
        parse_psk(raw).map_err(|reason| KeyFileError::InvalidPsk {
            path: path.to_path_buf(),
            reason,
        })
    })
    .1
}

/// Reads the pre-shared key of an IPsec tunnel from a file whose mode gives
/// group and others no access: the file's content without its trailing line
/// end, 8 to 128 printable ASCII characters (spaces inside are part of the key).
///
/// Errors name the file, never its content; a file with a wrong mode is
/// refused even when its content is valid.
pub fn read_psk_file(path: &Path) -> Result<SecretBytes, KeyFileError> {
    let (psk, mut problems) = inspect_secret_file(path, |raw| {
        parse_psk(raw).map_err(|reason| KeyFileError::InvalidPsk {
            path: path.to_path_buf(),
            reason,
        })
    });
    if !problems.is_empty() {
        return Err(problems.swap_remove(0));
    }
    psk.ok_or_else(|| KeyFileError::Io {
        path: path.to_path_buf(),
        source: io::Error::other("no key read"),
    })
}

/// Reads a key (base64, surrounding whitespace trimmed) from a file whose mode
/// gives group and others no access (`mode & 0o077 == 0`).
///
/// Errors name the file, never its content. A file with a wrong mode is
/// refused even when its content is valid.
pub fn read_key_file(path: &Path) -> Result<Key, KeyFileError> {
    let mut check = inspect_key_file(path);
    if !check.problems.is_empty() {
        return Err(check.problems.swap_remove(0));
    }
    check.key.ok_or_else(|| KeyFileError::Io {
        path: path.to_path_buf(),
        source: io::Error::other("no key read"),
    })
}

/// Writes a secret (a key file, a client configuration) atomically with mode 0600.
///
/// The temporary sibling `.<name>.tmp` is created with mode 0600 (so the secret is
/// never readable by others, not even briefly), written, fsynced and renamed over
/// `path`; then the directory is fsynced. A missing parent directory is created
/// with mode 0700.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = fsutil::parent_dir(path);
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    fsutil::atomic_write(path, contents, 0o600, None)
}

/// Generates a new X25519 private key from the operating system's RNG, clamped
/// like `wg genkey` does (RFC 7748, section 5).
pub fn generate_private_key() -> Key {
    let secret = StaticSecret::random_from_rng(rand_core::OsRng);
    let mut bytes = secret.to_bytes();
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    Key(bytes)
}

/// The X25519 public key of a private key.
pub fn public_key(private: &Key) -> Key {
    let secret = StaticSecret::from(private.0);
    Key(PublicKey::from(&secret).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::TempDir;
    use std::fs::{self, Permissions};
    use std::os::unix::fs::PermissionsExt;

    // RFC 7748, section 6.1 (Alice's key pair).
    const RFC7748_PRIVATE: &str =
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const RFC7748_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    fn hex32(s: &str) -> Key {
        Key(hex::decode(s).unwrap().try_into().unwrap())
    }

    #[test]
    fn display_and_parse_round_trip() {
        let k = Key([0xab; 32]);
        let s = k.to_string();
        assert_eq!(s.len(), 44);
        assert!(s.ends_with('='));
        assert_eq!(s.parse::<Key>().unwrap(), k);
        assert_eq!(
            Key([0; 32]).to_string(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!("".parse::<Key>(), Err(KeyParseError::Empty));
        assert_eq!(
            "not base64!".parse::<Key>(),
            Err(KeyParseError::InvalidBase64)
        );
        // Missing padding.
        assert_eq!(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".parse::<Key>(),
            Err(KeyParseError::InvalidBase64)
        );
        // URL-safe alphabet is not the standard one.
        let urlsafe = format!("{}-_8=", "A".repeat(40));
        assert_eq!(urlsafe.parse::<Key>(), Err(KeyParseError::InvalidBase64));
        // Surrounding whitespace is the caller's business.
        let good = Key([1; 32]).to_string();
        assert_eq!(
            format!(" {good}").parse::<Key>(),
            Err(KeyParseError::InvalidBase64)
        );
        // 31 and 33 bytes.
        assert_eq!(
            STANDARD.encode([1u8; 31]).parse::<Key>(),
            Err(KeyParseError::WrongLength(31))
        );
        assert_eq!(
            STANDARD.encode([1u8; 33]).parse::<Key>(),
            Err(KeyParseError::WrongLength(33))
        );
        assert!(matches!(
            "A".repeat(200).parse::<Key>(),
            Err(KeyParseError::WrongLength(_))
        ));
        // Non-canonical trailing bits ("AAB=" style) are rejected.
        let noncanon = format!("{}B=", "A".repeat(42));
        assert_eq!(noncanon.parse::<Key>(), Err(KeyParseError::InvalidBase64));
    }

    #[test]
    fn debug_is_redacted() {
        let k = Key([0x42; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&k.to_string()));
        assert_eq!(dbg, "Key(<redacted>)");
    }

    #[test]
    fn public_key_rfc7748_vector() {
        assert_eq!(public_key(&hex32(RFC7748_PRIVATE)), hex32(RFC7748_PUBLIC));
    }

    #[test]
    fn generated_keys_are_clamped_and_distinct() {
        let a = generate_private_key();
        let b = generate_private_key();
        assert_ne!(a, b);
        for k in [a, b] {
            assert_eq!(k.0[0] & 7, 0);
            assert_eq!(k.0[31] & 0x80, 0);
            assert_eq!(k.0[31] & 0x40, 0x40);
        }
        assert_ne!(public_key(&a), public_key(&b));
    }

    #[test]
    fn read_key_file_trims_whitespace() {
        let dir = TempDir::new();
        let path = dir.path().join("k");
        let k = generate_private_key();
        write_secret_file(&path, format!("  {k}\n\n").as_bytes()).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), k);
    }

    #[test]
    fn read_key_file_refuses_group_or_other_access() {
        let dir = TempDir::new();
        let path = dir.path().join("wide.key");
        let k = generate_private_key();
        fs::write(&path, format!("{k}\n")).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            let err = read_key_file(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, KeyFileError::Permissions { mode: m, .. } if m == mode),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(!msg.contains(&k.to_string()));
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_key_file(&path).unwrap(), k);
        }
    }

    #[test]
    fn read_key_file_missing_and_directory() {
        let dir = TempDir::new();
        let path = dir.path().join("nope.key");
        let err = read_key_file(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Missing { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(err.to_string().contains("does not exist"));

        let sub = dir.path().join("d");
        DirBuilder::new().mode(0o700).create(&sub).unwrap();
        let err = read_key_file(&sub).unwrap_err();
        assert!(matches!(err, KeyFileError::Io { .. }), "{err}");
    }

    #[test]
    fn read_key_file_invalid_content_is_not_echoed() {
        let dir = TempDir::new();
        let path = dir.path().join("bad.key");
        // Looks like a secret, but 31 bytes long.
        let secret = STANDARD.encode([0x5a; 31]);
        write_secret_file(&path, secret.as_bytes()).unwrap();
        let err = read_key_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            KeyFileError::Invalid {
                reason: KeyParseError::WrongLength(31),
                ..
            }
        ));
        assert!(!msg.contains(&secret), "{msg}");
        assert!(!format!("{err:?}").contains(&secret));
        assert!(msg.contains(&path.display().to_string()));

        write_secret_file(&path, &[0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid {
                reason: KeyParseError::InvalidBase64,
                ..
            })
        ));
        write_secret_file(&path, &vec![b'A'; 5000]).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Invalid {
                reason: KeyParseError::WrongLength(_),
                ..
            })
        ));
    }

    #[test]
    fn inspect_reports_mode_and_still_returns_key() {
        let dir = TempDir::new();
        let path = dir.path().join("k");
        let k = generate_private_key();
        fs::write(&path, k.to_string()).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let check = inspect_key_file(&path);
        assert_eq!(check.key, Some(k));
        assert_eq!(check.problems.len(), 1);
    }

    #[test]
    fn write_secret_file_is_0600_and_creates_parent_0700() {
        let dir = TempDir::new();
        let path = dir.path().join("peers").join("deep").join("alice.key");
        write_secret_file(&path, b"secret\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let parent = path.parent().unwrap();
        assert_eq!(fs::metadata(parent).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(parent.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("alice.key")]);
    }

    #[test]
    fn write_secret_file_replaces_a_wide_file_with_0600() {
        let dir = TempDir::new();
        let path = dir.path().join("x.psk");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn read_psk_file_trims_only_the_line_end() {
        let dir = TempDir::new();
        let path = dir.path().join("tun.psk");
        for (content, psk) in [
            (&b"abc_def.12345678\n"[..], &b"abc_def.12345678"[..]),
            (b"abc_def.12345678\r\n", b"abc_def.12345678"),
            (b"abc_def.12345678", b"abc_def.12345678"),
            (b" spaces count \n\n", b" spaces count "),
            (b"12345678", b"12345678"),
        ] {
            write_secret_file(&path, content).unwrap();
            assert_eq!(read_psk_file(&path).unwrap().expose(), psk);
        }
        let long = [b'~'; MAX_PSK_LEN];
        write_secret_file(&path, &long).unwrap();
        assert_eq!(read_psk_file(&path).unwrap().len(), MAX_PSK_LEN);
        // Debug never shows the key.
        write_secret_file(&path, b"abc_def.12345678").unwrap();
        let psk = read_psk_file(&path).unwrap();
        assert!(!format!("{psk:?}").contains("abc_def"));
    }

    #[test]
    fn read_psk_file_refusals_never_show_the_content() {
        let dir = TempDir::new();
        let path = dir.path().join("tun.psk");
        for (content, reason) in [
            (&b""[..], PskParseError::Empty),
            (b"\r\n", PskParseError::Empty),
            (b"1234567\n", PskParseError::Length(7)),
            (
                &[b'x'; MAX_PSK_LEN + 1][..],
                PskParseError::Length(MAX_PSK_LEN + 1),
            ),
            (&[b'x'; 2000][..], PskParseError::FileTooLarge),
            (b"secret\x00padding", PskParseError::NotPrintable),
            (b"line-one\nline-two", PskParseError::NotPrintable),
        ] {
            write_secret_file(&path, content).unwrap();
            let err = read_psk_file(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(&err, KeyFileError::InvalidPsk { reason: r, .. } if *r == reason),
                "{msg}"
            );
            assert!(
                msg.starts_with(&format!("PSK file {}", path.display())),
                "{msg}"
            );
            for word in ["1234567", "secret", "line-one", "xxxxxxxx"] {
                assert!(!msg.contains(word), "{msg}");
                assert!(!format!("{err:?}").contains(word), "{err:?}");
            }
        }
        write_secret_file(&path, b"abc_def.12345678").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let err = read_psk_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("abc_def"));
        let err = read_psk_file(&dir.path().join("nope.psk")).unwrap_err();
        assert!(matches!(err, KeyFileError::Missing { .. }), "{err}");
    }
}
