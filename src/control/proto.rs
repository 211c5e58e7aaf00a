//! The control protocol: one JSON object per line. The client writes one
//! [`Request`] line, the daemon answers with one [`Response`] line and
//! closes the connection.

use crate::gateway::{ApplyOutcome, GatewayStatus};
use serde::{Deserialize, Serialize};

/// Largest request line the daemon accepts, in bytes (and the bound of a
/// UAPI request).
pub const MAX_LINE: usize = 1 << 20;

/// Largest response line `wgctl` accepts, in bytes: the status of 10,000
/// peers is about 6 MB of JSON; this leaves room for well over 100,000.
pub const MAX_RESPONSE: usize = 256 << 20;

/// A request from `wgctl` to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The gateway's and every peer's state.
    Status,
    /// Re-read the config file and apply the difference.
    Reload,
    /// `wgctl tunnel up|down|rekey NAME`.
    Tunnel {
        /// Tunnel name.
        name: String,
        /// `up`, `down` or `rekey`.
        action: String,
    },
    /// `wgctl firewall show`: the ruleset in force and the counters.
    Firewall,
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(Box<GatewayStatus>),
    /// Answer to [`Request::Reload`]: what changed.
    Reloaded(ApplyOutcome),
    /// Answer to [`Request::Firewall`].
    Firewall {
        /// The nft transaction in force.
        ruleset: String,
        /// Interfaces, counters, last refusal.
        status: Box<crate::firewall::FirewallStatus>,
    },
    /// The request was carried out.
    Done {
        /// What was done.
        message: String,
    },
    /// The request failed; the text is for the operator.
    Error {
        /// What went wrong (for a rejected config: every error, one per line).
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reload"}"#).unwrap(),
            Request::Reload
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"shutdown"}"#).is_err());
    }

    #[test]
    fn error_round_trip() {
        let r = Response::Error {
            message: "x:1:2: peers[0].address: bad".into(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), r);
    }
}
