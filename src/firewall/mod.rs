//! The firewall and NAT in place of pfSense (DESIGN.md, "Router duties"):
//! one [`Policy`] compiled from the `[firewall]` table, rendered to an
//! nftables ruleset for the kernel path ([`nft`]) and evaluated by the core
//! on the path that never enters the kernel ([`Evaluator`]).
//!
//! Pure: the `nft` and `ip` calls live in `dataplane::firewall`.

pub mod eval;
pub mod nft;
pub mod policy;

pub use eval::{Decision, Evaluator, PacketInfo, RuleCounter};
pub use policy::{aws_tcp_mss, default_allows, Interfaces, Policy};

use serde::{Deserialize, Serialize};

/// The firewall part of `wgctl status` and `wgctl firewall show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirewallStatus {
    /// False when `firewall.enabled = false` (nothing filtered).
    pub enabled: bool,
    /// The interfaces in use.
    pub interfaces: Option<Interfaces>,
    /// The kernel ruleset's counters (nft), by comment, in ruleset order.
    #[serde(default)]
    pub kernel: Vec<RuleCounter>,
    /// The core's counters (the WireGuard <-> ESP path).
    #[serde(default)]
    pub core: Vec<RuleCounter>,
    /// Why the last reload's firewall was refused (kept until one succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Warnings for the operator (the opt-out).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The warning shown while `firewall.enabled = false`.
pub const DISABLED_WARNING: &str =
    "firewall.enabled = false: ipieced filters nothing and the gateway forwards everything";

/// The interfaces of the default route and of the route to `lan`, read from
/// `ip -j route show` (JSON). Only routes of the main table count.
pub fn interfaces_from_routes(
    json: &str,
    lan: &[ipnet::IpNet],
) -> (Option<String>, Option<String>) {
    let Ok(routes) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return (None, None);
    };
    let dev = |r: &serde_json::Value| r["dev"].as_str().map(str::to_owned);
    let wan = routes
        .iter()
        .find(|r| r["dst"].as_str() == Some("default"))
        .and_then(dev);
    let lan_if = lan.iter().find_map(|p| {
        routes.iter().find_map(|r| {
            let dst = r["dst"].as_str()?;
            let net: ipnet::IpNet = dst
                .parse()
                .or_else(|_| dst.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .ok()?;
            (net.contains(p) || p.contains(&net.network())).then(|| dev(r))?
        })
    });
    (wan, lan_if)
}

#[cfg(test)]
mod tests;
