//! The thin shell around the firewall policy: `nft -c -f -` then `nft -f -`
//! with the rendered transaction (ipieced's own table only), counters read
//! back with `nft -j list table`, and the interfaces found from the routes
//! (`ip -j route show`) when the file does not name them.

use std::io::Write;
use std::process::{Command, Stdio};

use std::sync::Arc;

use crate::config::Config;
use crate::firewall::nft;
use crate::firewall::{interfaces_from_routes, Interfaces, Policy, RuleCounter};
use crate::firewall::{FirewallStatus, DISABLED_WARNING};

/// Why the firewall could not be put in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// `nft` is not installed.
    #[error("nft not found: install the Debian package `nftables` (ipieced applies its firewall with nft)")]
    NftMissing,
    /// nft refused the ruleset (check or apply).
    #[error("nft refused the firewall ruleset{}: {message}", rule.as_ref().map(|r| format!(" at `{r}`")).unwrap_or_default())]
    Refused {
        /// The rule on the line nft complained about (its comment).
        rule: Option<String>,
        /// nft's error.
        message: String,
    },
    /// An interface could not be found from the routes.
    #[error("cannot find the {what} interface from the routes ({why}); set firewall.{key} in the configuration file")]
    NoInterface {
        /// `WAN` or `LAN`.
        what: &'static str,
        /// The key to set.
        key: &'static str,
        /// What was looked for.
        why: String,
    },
    /// Running a program failed.
    #[error("{0}")]
    Io(String),
}

fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, (Option<i32>, String)> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        let code = (e.kind() == std::io::ErrorKind::NotFound).then_some(127);
        (code, format!("{prog}: {e}"))
    })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| (None, format!("{prog}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// The `nft` program (`IPIECE_NFT` overrides the name, for tests).
fn nft_prog() -> String {
    std::env::var("IPIECE_NFT").unwrap_or_else(|_| "nft".to_owned())
}

/// Fails with [`FirewallError::NftMissing`] when `nft` cannot be run.
pub fn check_nft() -> Result<(), FirewallError> {
    match run(&nft_prog(), &["--version"], None) {
        Ok(_) => Ok(()),
        Err((Some(127), _)) => Err(FirewallError::NftMissing),
        Err((_, m)) => Err(FirewallError::Io(m)),
    }
}

fn refused(text: &str, message: String) -> FirewallError {
    // nft names the place as "/dev/stdin:LINE:COLUMNS: Error: ...".
    let rule = message.lines().find_map(|l| {
        let rest = l.split_once("stdin:")?.1;
        let line: usize = rest.split(':').next()?.parse().ok()?;
        nft::rule_at_line(text, line)
    });
    FirewallError::Refused { rule, message }
}

/// `nft -c -f -`: whether the kernel would take `text` (changes nothing).
pub fn check(text: &str) -> Result<(), FirewallError> {
    match run(&nft_prog(), &["-c", "-f", "-"], Some(text)) {
        Ok(_) => Ok(()),
        Err((Some(127), _)) => Err(FirewallError::NftMissing),
        Err((_, m)) => Err(refused(text, m)),
    }
}

/// Checks `text`, then applies it as one transaction: on any refusal the
/// ruleset in force stays as it was.
pub fn apply(text: &str) -> Result<(), FirewallError> {
    check(text)?;
    match run(&nft_prog(), &["-f", "-"], Some(text)) {
        Ok(_) => Ok(()),
        Err((Some(127), _)) => Err(FirewallError::NftMissing),
        Err((_, m)) => Err(refused(text, m)),
    }
}

/// The counters of ipieced's table, by rule comment (variants of one rule
/// summed), in ruleset order; empty when the table is absent.
pub fn counters() -> Vec<RuleCounter> {
    let Ok(json) = run(
        &nft_prog(),
        &["-j", "list", "table", "inet", "ipiece"],
        None,
    ) else {
        return Vec::new();
    };
    parse_counters(&json)
}

/// The counters in `nft -j list table` output.
pub fn parse_counters(json: &str) -> Vec<RuleCounter> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out: Vec<RuleCounter> = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(name) = rule["comment"].as_str() else {
            continue;
        };
        let Some(c) = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter"))
        else {
            continue;
        };
        let (p, b) = (
            c["packets"].as_u64().unwrap_or(0),
            c["bytes"].as_u64().unwrap_or(0),
        );
        match out.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                r.packets += p;
                r.bytes += b;
            }
            None => out.push(RuleCounter {
                name: name.to_owned(),
                packets: p,
                bytes: b,
            }),
        }
    }
    out
}

/// The interfaces the policy names: the file's, else those of the default
/// route and of the route to the LAN in this network namespace.
pub fn interfaces(policy: &Policy) -> Result<Interfaces, FirewallError> {
    let (mut wan, mut lan) = (policy.wan_interface.clone(), policy.lan_interface.clone());
    if wan.is_none() || lan.is_none() {
        let json = run("ip", &["-j", "route", "show"], None).unwrap_or_default();
        let (w, l) = interfaces_from_routes(&json, &policy.lan);
        wan = wan.or(w);
        lan = lan.or(l);
    }
    let wan = wan.ok_or_else(|| FirewallError::NoInterface {
        what: "WAN",
        key: "wan_interface",
        why: "no default route".into(),
    })?;
    let lan_list: Vec<String> = policy.lan.iter().map(ToString::to_string).collect();
    let lan = lan.ok_or_else(|| FirewallError::NoInterface {
        what: "LAN",
        key: "lan_interface",
        why: format!("no route to gateway.lan_prefixes ({})", lan_list.join(", ")),
    })?;
    if wan == lan {
        return Err(FirewallError::NoInterface {
            what: "LAN",
            key: "lan_interface",
            why: format!("the LAN is routed through the WAN interface {wan}"),
        });
    }
    Ok(Interfaces { wan, lan })
}

/// The firewall as the daemon runs it: the text in force.
#[derive(Debug, Default)]
pub struct Applied {
    /// The transaction last applied (empty: none yet).
    pub text: String,
    /// The interfaces it names.
    pub interfaces: Option<Interfaces>,
    /// Why the last reload's ruleset was refused.
    pub last_error: Option<String>,
}

impl Applied {
    /// Renders `policy` and applies it when the text differs from the one
    /// in force. On refusal nothing changes (and the error is returned).
    pub fn update(&mut self, policy: &Policy) -> Result<bool, FirewallError> {
        let ifs = interfaces(policy)?;
        let text = policy.render(&ifs);
        if text == self.text {
            return Ok(false);
        }
        apply(&text)?;
        self.text = text;
        self.interfaces = Some(ifs);
        Ok(true)
    }
}

/// The daemon's firewall: the policy in force and what nft holds.
#[derive(Debug)]
pub struct FirewallShell {
    /// The policy in force (also in the core).
    pub policy: Arc<Policy>,
    /// The ruleset in the kernel.
    pub applied: Applied,
}

impl FirewallShell {
    /// Puts the policy of `cfg` in the kernel at start: a missing `nft`,
    /// an interface that cannot be found or a refusal stops the start.
    pub fn start(cfg: &Config) -> Result<FirewallShell, FirewallError> {
        let policy = Arc::new(Policy::compile(cfg));
        let mut applied = Applied::default();
        match check_nft() {
            Ok(()) => {
                applied.update(&policy)?;
            }
            // Opted out and no nft: there is nothing to apply or remove.
            Err(FirewallError::NftMissing) if !policy.enabled => {}
            Err(e) => return Err(e),
        }
        if policy.enabled {
            tracing::info!(
                table = nft::TABLE,
                interfaces = ?applied.interfaces,
                rules = policy.rules.len(),
                port_forwards = policy.forwards.len(),
                "firewall applied"
            );
        } else {
            tracing::warn!("{DISABLED_WARNING}");
        }
        Ok(FirewallShell { policy, applied })
    }

    /// The policy of a reloaded `cfg`, applied to the kernel when its text
    /// changed. On refusal the ruleset in force stays and the error is
    /// remembered for the status.
    pub fn reload(&mut self, cfg: &Config) -> Result<Arc<Policy>, FirewallError> {
        let policy = Policy::compile(cfg);
        match self.applied.update(&policy) {
            Ok(changed) => {
                if changed {
                    tracing::info!(interfaces = ?self.applied.interfaces, "firewall ruleset replaced");
                }
                if !policy.enabled {
                    tracing::warn!("{DISABLED_WARNING}");
                }
                self.applied.last_error = None;
                self.policy = Arc::new(policy);
                Ok(self.policy.clone())
            }
            Err(e) => {
                self.applied.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Remembers why a reload was refused before the firewall was reached
    /// (the file did not validate).
    pub fn reload_refused(&mut self, why: &str) {
        self.applied.last_error = Some(why.to_owned());
    }

    /// The status: the kernel's counters read now, the core's given.
    pub fn status(&self, core: Vec<RuleCounter>) -> FirewallStatus {
        FirewallStatus {
            enabled: self.policy.enabled,
            interfaces: self.applied.interfaces.clone(),
            kernel: if self.policy.enabled {
                counters()
            } else {
                Vec::new()
            },
            core,
            last_error: self.applied.last_error.clone(),
            warnings: if self.policy.enabled {
                Vec::new()
            } else {
                vec![DISABLED_WARNING.to_owned()]
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_comment_and_summed() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
          {"table":{"family":"inet","name":"ipiece","handle":1}},
          {"rule":{"family":"inet","table":"ipiece","chain":"forward","handle":5,"comment":"rule x",
            "expr":[{"match":{}},{"counter":{"packets":3,"bytes":180}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"ipiece","chain":"forward","handle":6,"comment":"rule x",
            "expr":[{"counter":{"packets":1,"bytes":60}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"ipiece","chain":"forward","handle":7,
            "expr":[{"accept":null}]}}]}"#;
        assert_eq!(
            parse_counters(json),
            vec![RuleCounter {
                name: "rule x".into(),
                packets: 4,
                bytes: 240
            }]
        );
        assert!(parse_counters("garbage").is_empty());
    }

    #[test]
    fn a_refusal_names_the_rule_on_nft_s_line() {
        let text = "table inet ipiece {}\n\t\tdrop comment \"rule bad\"\n";
        let e = refused(
            text,
            "/dev/stdin:2:3-6: Error: Could not process rule: No such file or directory".into(),
        );
        assert_eq!(
            e,
            FirewallError::Refused {
                rule: Some("rule bad".into()),
                message:
                    "/dev/stdin:2:3-6: Error: Could not process rule: No such file or directory"
                        .into()
            }
        );
        assert!(e.to_string().contains("at `rule bad`"), "{e}");
    }
}
