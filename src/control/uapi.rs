//! The WireGuard cross-platform userspace API ("Cross-platform Userspace
//! Implementation", wireguard.com/xplatform): a Unix socket at
//! `/var/run/wireguard/<ifname>.sock` that answers `get=1` with `key=value`
//! lines, so that the stock `wg show` and `wg showconf` read ipieced.
//!
//! Only `get` is served: the TOML file is the single source of truth, so a
//! `set` is refused with `errno=1` (EPERM); use `wgctl` instead.
//!
//! The socket is mode 0600 (root only) and, as with wireguard-go, its `get`
//! answer includes the private and preshared keys, which root can read from
//! the key files anyway.

use crate::gateway::Gateway;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// The directory every userspace WireGuard implementation uses.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The UAPI socket path for an interface.
pub fn socket_path(ifname: &str) -> PathBuf {
    PathBuf::from(SOCKET_DIR).join(format!("{ifname}.sock"))
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation {
    /// `get=1`
    Get,
    /// `set=1` (refused)
    Set,
    /// Anything else.
    Invalid,
}

/// Classifies the first line of a request.
pub fn operation(first_line: &str) -> Operation {
    match first_line.trim_end() {
        "get=1" => Operation::Get,
        "set=1" => Operation::Set,
        _ => Operation::Invalid,
    }
}

/// The answer to `get=1`, ending with `errno=0` and a blank line.
pub fn render_get(gw: &Gateway, now: Instant, wall: SystemTime) -> String {
    let s = gw.settings();
    let st = gw.status(now, wall);
    let mut out = String::new();
    let _ = writeln!(out, "private_key={}", hex::encode(s.private_key.0));
    let _ = writeln!(out, "listen_port={}", s.listen_port);
    for p in &st.peers {
        let Some(cfg) = s.peers.iter().find(|c| c.name == p.name) else {
            continue;
        };
        let _ = writeln!(out, "public_key={}", hex::encode(cfg.public_key.0));
        if let Some(psk) = &cfg.psk {
            let _ = writeln!(out, "preshared_key={}", hex::encode(psk.0));
        }
        let _ = writeln!(out, "protocol_version=1");
        if let Some(ep) = p.endpoint {
            let _ = writeln!(out, "endpoint={ep}");
        }
        let (sec, nsec) = p.last_handshake_unix.unwrap_or((0, 0));
        let _ = writeln!(out, "last_handshake_time_sec={sec}");
        let _ = writeln!(out, "last_handshake_time_nsec={nsec}");
        let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(out, "persistent_keepalive_interval={}", p.gateway_keepalive);
        for a in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={a}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        assert_eq!(operation("get=1\n"), Operation::Get);
        assert_eq!(operation("set=1"), Operation::Set);
        assert_eq!(operation("get=2"), Operation::Invalid);
    }

    #[test]
    fn socket_in_the_shared_directory() {
        assert_eq!(
            socket_path("ipiece0"),
            PathBuf::from("/var/run/wireguard/ipiece0.sock")
        );
    }
}
