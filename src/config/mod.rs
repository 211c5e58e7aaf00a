//! The gateway configuration (`gateway.toml`): the typed model, validation with
//! `file:line:column` errors, WireGuard key files, and atomic edits that keep
//! comments.
//!
//! - [`Config::load`] / [`Config::parse`] read and validate a file, reporting
//!   every problem as a [`ConfigError`] (file, line, column, field path, message).
//! - [`read_key_file`], [`write_secret_file`], [`generate_private_key`] and
//!   [`public_key`] handle the keys the file refers to.
//! - [`ConfigEditor`] adds, removes, enables and disables peers under a lock and
//!   writes the result atomically; [`next_free_address`] picks a peer address.

pub mod edit;
mod fsutil;
pub mod keys;
mod model;
mod validate;

pub use edit::{next_free_address, ConfigEditor, EditError, NewPeer};
pub use keys::{
    generate_private_key, public_key, read_key_file, write_secret_file, Key, KeyFileError,
    KeyParseError,
};
pub use model::{
    Config, ConfigError, ConfigErrors, GatewayConfig, PeerConfig, WireGuardConfig,
    DEFAULT_CONTROL_SOCKET, DEFAULT_KEEPALIVE, DEFAULT_LISTEN_PORT, DEFAULT_MTU, DEFAULT_TUN_NAME,
    MAX_MTU, MIN_MTU, MIN_MTU_IPV6,
};

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the configuration tests.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("ipiece-config-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
