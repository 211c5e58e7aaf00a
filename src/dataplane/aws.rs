//! The daemon's AWS sync task: with `aws.sync_interval` set, it brings
//! AWS's routes in step with the running configuration (the same plan as
//! `wgctl aws sync`, never pruning: deleting stays an operator's decision),
//! reads `VgwTelemetry` on every round, and reports each round to the main
//! loop, which keeps the [`crate::aws::sync::Monitor`] for `wgctl status`.
//!
//! Timing is [`Schedule`]'s: the interval +-10 %, exponential backoff after
//! errors. A reload that changes the `[aws]` section or the prefixes AWS
//! must route starts a round at once. Every EC2 call has the timeouts of
//! [`crate::aws::ec2`], so a round never hangs.

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::aws::ec2::{describe_operation, desired_prefixes, Ec2, TunnelTelemetry};
use crate::aws::plan::{self, Stale};
use crate::aws::sync::{Schedule, SyncDone, SyncReport};
use crate::config::{AwsConfig, Config};

/// A random number in `[0, 1)` for the jitter.
fn unit() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0)
}

/// What of the configuration the sync depends on.
fn relevant(cfg: &Config) -> Option<(AwsConfig, Vec<ipnet::IpNet>)> {
    let aws = cfg.aws.clone()?;
    aws.sync_interval?;
    Some((aws, desired_prefixes(cfg)))
}

/// One round: read, plan (without pruning), apply, and AWS's telemetry.
async fn round(
    cfg: &Config,
    aws: &AwsConfig,
) -> (Result<SyncDone, String>, Option<Vec<TunnelTelemetry>>) {
    let ec2 = match Ec2::connect(aws).await {
        Ok(e) => e,
        Err(e) => return (Err(e.to_string()), None),
    };
    let state = match ec2.read_state().await {
        Ok(s) => s,
        Err(e) => return (Err(e.to_string()), None),
    };
    let telemetry = Some(state.telemetry.clone());
    let p = plan::plan(&ec2.plan_input(cfg, &state, false));
    let mut done = SyncDone {
        applied: Vec::new(),
        conflicts: p
            .conflicts
            .iter()
            .map(|c| format!("{} {} -> {} (left alone)", c.table, c.prefix, c.target))
            .collect(),
        stale: p
            .stale
            .iter()
            .map(|s| match s {
                Stale::VpnRoute { prefix } => format!("{} {prefix}", aws.vpn_connection_id),
                Stale::TableRoute { table, prefix } => format!("{table} {prefix}"),
            })
            .collect(),
    };
    let total = p.operations.len();
    let applied = ec2
        .apply(&state.vgw_id, &p.operations, |op| {
            done.applied.push(describe_operation(
                op,
                &aws.vpn_connection_id,
                &state.vgw_id,
            ))
        })
        .await;
    match applied {
        Ok(()) => (Ok(done), telemetry),
        Err((n, e)) => (
            Err(format!("{e} ({n} of {total} changes were applied)")),
            telemetry,
        ),
    }
}

/// Runs the sync until `config` is closed, sending a report per round.
pub async fn run(mut config: watch::Receiver<Config>, reports: mpsc::Sender<SyncReport>) {
    let mut schedule: Option<Schedule> = None;
    loop {
        let cfg = config.borrow_and_update().clone();
        let Some((aws, prefixes)) = relevant(&cfg) else {
            schedule = None;
            if config.changed().await.is_err() {
                return;
            }
            continue;
        };
        let interval = aws.sync_interval.unwrap_or(Duration::MAX);
        let s = schedule.get_or_insert_with(|| Schedule::new(interval));
        if s.interval() != interval {
            *s = Schedule::new(interval);
        }
        let (result, telemetry) = round(&cfg, &aws).await;
        let ok = result.is_ok();
        let next_in = s.next_delay(ok, unit());
        match &result {
            Ok(d) if d.applied.is_empty() => {
                tracing::debug!(vpn = %aws.vpn_connection_id, "AWS sync: in step")
            }
            Ok(d) => tracing::info!(
                vpn = %aws.vpn_connection_id, applied = ?d.applied,
                "AWS sync: applied {} change(s)", d.applied.len()
            ),
            Err(e) => tracing::warn!(
                vpn = %aws.vpn_connection_id, failures = s.failures(),
                next_in_secs = next_in.as_secs(), "AWS sync failed: {e}"
            ),
        }
        if let Ok(d) = &result {
            for c in &d.conflicts {
                tracing::warn!("AWS sync: conflicting route {c}");
            }
        }
        let report = SyncReport {
            result,
            telemetry,
            next_in,
        };
        if reports.send(report).await.is_err() {
            return;
        }
        // Wait for the next round, or for a reload that changes what is synced.
        let deadline = Instant::now() + next_in;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                r = config.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let now = relevant(&config.borrow_and_update());
                    if now.as_ref() != Some(&(aws.clone(), prefixes.clone())) {
                        tracing::info!("AWS sync: configuration changed, syncing now");
                        break;
                    }
                }
            }
        }
    }
}
