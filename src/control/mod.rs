//! Control plane: the JSON request/response protocol between `wgctl` and
//! `ipieced` over a Unix socket (mode 0600), and the WireGuard
//! cross-platform userspace API (`get`), so that the stock `wg show` works.

pub mod client;
pub mod proto;
pub mod uapi;

pub use proto::{Request, Response};
