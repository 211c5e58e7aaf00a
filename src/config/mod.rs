//! The gateway configuration (`gateway.toml`): the typed model, validation with
//! `file:line:column` errors, WireGuard key files, and atomic edits that keep
//! comments.
//!
//! - [`Config::load`] / [`Config::parse`] read and validate a file, reporting
//!   every problem as a [`ConfigError`] (file, line, column, field path, message).
//! - [`read_key_file`], [`write_secret_file`], [`generate_private_key`] and
//!   [`public_key`] handle the keys the file refers to; [`read_psk_file`] the
//!   pre-shared keys of the IPsec tunnels.
//! - [`lan`] holds the `[lan]`, `[lan.dhcp]` and `[dns]` tables (LAN
//!   services), [`firewall`] the `[firewall]` table.
//! - [`parse_identity`] and [`format_identity`] read and write IKE identities
//!   in strongSwan's syntax (`local_id`, `remote_id`).
//! - [`ConfigEditor`] adds, removes, enables and disables peers, adds or
//!   updates IPsec tunnels and remote prefixes under a lock, and writes the
//!   result (and the secret files it needs) atomically; [`next_free_address`]
//!   picks a peer address.

pub mod edit;
pub mod firewall;
mod fsutil;
pub mod ike_id;
pub mod keys;
pub mod lan;
pub mod metrics;
mod model;
mod validate;

pub use edit::{
    next_free_address, ConfigEditor, EditError, NewPeer, NewTunnel, SecretChange, Upsert,
};
pub(crate) use fsutil::read_text_bounded;
pub use ike_id::{format_identity, parse_identity};
pub use keys::{
    generate_private_key, public_key, read_key_file, read_psk_file, write_secret_file, Key,
    KeyFileError, KeyParseError, PskParseError, MAX_PSK_LEN, MIN_PSK_LEN,
};
pub use model::{
    AwsConfig, AwsRouting, Config, ConfigError, ConfigErrors, GatewayConfig, IpsecConfig,
    PeerConfig, PeerEndpoint, RouteTables, StartAction, TunnelConfig, WireGuardConfig,
    DEFAULT_CHILD_LIFETIME, DEFAULT_CONTROL_SOCKET, DEFAULT_DPD_INTERVAL, DEFAULT_DPD_TIMEOUT,
    DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_LIFETIME, DEFAULT_IKE_PROPOSALS, DEFAULT_KEEPALIVE,
    DEFAULT_LISTEN_PORT, DEFAULT_MTU, DEFAULT_NAT_KEEPALIVE, DEFAULT_REKEY_FUZZ,
    DEFAULT_REKEY_MARGIN, DEFAULT_REPLAY_WINDOW, DEFAULT_TRAFFIC_SELECTOR, DEFAULT_TUNNEL_PRIORITY,
    DEFAULT_TUN_NAME, INSIDE_CIDR_RANGE, MAX_CHILD_LIFETIME, MAX_DPD_INTERVAL, MAX_DPD_TIMEOUT,
    MAX_IKE_LIFETIME, MAX_MTU, MAX_NAT_KEEPALIVE, MAX_REKEY_FUZZ, MAX_REPLAY_WINDOW,
    MAX_SYNC_INTERVAL, MIN_LIFETIME, MIN_MTU, MIN_MTU_IPV6, MIN_REPLAY_WINDOW, MIN_SYNC_INTERVAL,
};
pub use validate::ClientKeys;

/// Checks an AWS region name and a VPN connection ID by the validator's
/// rules (`wgctl aws import VPN_ID --region R`): the message says what is
/// wrong.
pub fn check_aws_connection(region: &str, vpn_connection_id: &str) -> Result<(), String> {
    validate::aws::check_region(region).map_err(|e| format!("region {region:?}: {e}"))?;
    validate::aws::check_resource_id(vpn_connection_id, "vpn", "a VPN connection")
        .map_err(|e| format!("{vpn_connection_id:?}: {e}"))
}

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
