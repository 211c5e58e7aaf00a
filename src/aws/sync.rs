//! The daemon's AWS sync, the parts without I/O: when to sync next
//! ([`Schedule`]: the interval with jitter, exponential backoff after
//! errors), and what `wgctl status` shows of it ([`Monitor`]: the last
//! sync's outcome, AWS's view of each tunnel (`VgwTelemetry`) beside
//! ipiece's, and a warning when the two disagree for longer than two sync
//! intervals).
//!
//! The shell (`src/dataplane/aws.rs`) runs the EC2 calls and feeds a
//! [`SyncReport`] per round; the main loop keeps the [`Monitor`] and
//! checks it against the tunnels' states once a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ec2::TunnelTelemetry;
use crate::ipsec::{TunnelState, TunnelStatus};

/// The first retry after a failed sync comes this long after it (or after
/// the interval, when that is shorter).
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// Retries back off up to this long (or up to the interval, when longer).
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Every delay is the nominal one times a factor in `1 +- JITTER`.
pub const JITTER: f64 = 0.1;

/// When the next sync runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    interval: Duration,
    failures: u32,
}

impl Schedule {
    /// A schedule for `interval`, with no failure yet.
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            failures: 0,
        }
    }

    /// The interval between successful rounds.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Consecutive failed rounds.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay until the next round after one that succeeded (`ok`) or
    /// failed. `unit` is a random number in `[0, 1)` for the jitter. After
    /// success: the interval. After the n-th failure in a row:
    /// `min(FIRST_RETRY, interval) x 2^(n-1)`, at most `max(MAX_RETRY,
    /// interval)`. Both times `1 +- JITTER`.
    pub fn next_delay(&mut self, ok: bool, unit: f64) -> Duration {
        let nominal = if ok {
            self.failures = 0;
            self.interval
        } else {
            self.failures = self.failures.saturating_add(1);
            let first = FIRST_RETRY.min(self.interval);
            let cap = MAX_RETRY.max(self.interval);
            let shift = (self.failures - 1).min(20);
            first.saturating_mul(1 << shift).min(cap)
        };
        let unit = unit.clamp(0.0, 1.0);
        nominal.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
    }
}

/// What one sync round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// `Ok`: the changes applied (one line each; empty when AWS was in
    /// step) and what the plan leaves alone; `Err`: the error, worded for
    /// the operator.
    pub result: Result<SyncDone, String>,
    /// AWS's view of the tunnels, when the connection could be read.
    pub telemetry: Option<Vec<TunnelTelemetry>>,
    /// The delay until the next round.
    pub next_in: Duration,
}

/// A successful round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncDone {
    /// The operations applied, one line each.
    pub applied: Vec<String>,
    /// Desired prefixes routed to another target (left alone).
    pub conflicts: Vec<String>,
    /// Routes to our VGW no longer desired (kept: the daemon never prunes).
    pub stale: Vec<String>,
}

/// The AWS part of `wgctl status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AwsStatus {
    /// The VPN connection synced.
    pub vpn_connection_id: String,
    /// Its region.
    pub region: String,
    /// Seconds between syncs.
    pub sync_interval_secs: u64,
    /// Seconds since the last round ended, if one did.
    pub last_sync_secs: Option<u64>,
    /// `in step`, `applied N change(s)`, or `failed`.
    pub last_result: Option<String>,
    /// The operations the last round applied.
    #[serde(default)]
    pub last_applied: Vec<String>,
    /// The last round's error.
    pub last_error: Option<String>,
    /// Failed rounds in a row.
    pub consecutive_failures: u32,
    /// Seconds until the next round.
    pub next_sync_secs: Option<u64>,
    /// Desired prefixes routed elsewhere at AWS (reported, not replaced).
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Routes to our VGW no longer in the file (`wgctl aws sync --prune`).
    #[serde(default)]
    pub stale: Vec<String>,
    /// Seconds since AWS's telemetry was read.
    pub telemetry_age_secs: Option<u64>,
    /// Per AWS tunnel: AWS's view beside ipiece's.
    pub tunnels: Vec<AwsTunnelView>,
    /// Changes applied at AWS since the daemon started (metrics).
    #[serde(default)]
    pub changes_applied_total: u64,
    /// Rounds that failed since the daemon started (metrics).
    #[serde(default)]
    pub failed_rounds_total: u64,
}

/// One tunnel as AWS and ipiece see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AwsTunnelView {
    /// AWS's outside address.
    pub outside_ip: IpAddr,
    /// Our tunnel to it, if the file has one.
    pub tunnel: Option<String>,
    /// `UP` or `DOWN`, as AWS reports it.
    pub aws_status: String,
    /// AWS's status message.
    pub aws_message: String,
    /// AWS's last status change (RFC 3339).
    pub aws_last_change: Option<String>,
    /// Our tunnel's state (`up`, `down`, `connecting`, `admin_down`), or
    /// `none` without a tunnel.
    pub ipiece_state: String,
    /// Seconds AWS and ipiece have disagreed (one up, the other not).
    pub disagree_secs: Option<u64>,
    /// Set once they have disagreed longer than two sync intervals.
    pub warning: Option<String>,
}

/// The daemon's record of the sync and of AWS's view of the tunnels.
#[derive(Debug, Clone)]
pub struct Monitor {
    vpn_connection_id: String,
    region: String,
    interval: Duration,
    last: Option<(Instant, SyncReport)>,
    failures: u32,
    telemetry: Option<(Instant, Vec<TunnelTelemetry>)>,
    disagree_since: HashMap<IpAddr, Instant>,
    warned: HashMap<IpAddr, bool>,
    changes_applied: u64,
    failed_rounds: u64,
}

fn state_name(s: TunnelState) -> &'static str {
    match s {
        TunnelState::Down => "down",
        TunnelState::Connecting => "connecting",
        TunnelState::Up => "up",
        TunnelState::Degraded => "degraded",
        TunnelState::AdminDown => "admin_down",
    }
}

impl Monitor {
    /// A monitor for a connection synced every `interval`.
    pub fn new(vpn_connection_id: &str, region: &str, interval: Duration) -> Monitor {
        Monitor {
            vpn_connection_id: vpn_connection_id.to_owned(),
            region: region.to_owned(),
            interval,
            last: None,
            failures: 0,
            telemetry: None,
            disagree_since: HashMap::new(),
            warned: HashMap::new(),
            changes_applied: 0,
            failed_rounds: 0,
        }
    }

    /// True when this monitor is for that connection and interval (a
    /// reload that changes neither keeps the monitor and its history).
    pub fn is_for(&self, vpn_connection_id: &str, region: &str, interval: Duration) -> bool {
        self.vpn_connection_id == vpn_connection_id
            && self.region == region
            && self.interval == interval
    }

    /// Two sync intervals: how long AWS and ipiece may disagree before
    /// the warning (AWS's telemetry lags by minutes).
    pub fn grace(&self) -> Duration {
        self.interval * 2
    }

    /// Records a round's report.
    pub fn on_report(&mut self, now: Instant, report: SyncReport) {
        match &report.result {
            Ok(done) => {
                self.failures = 0;
                self.changes_applied += done.applied.len() as u64;
            }
            Err(_) => {
                self.failures += 1;
                self.failed_rounds += 1;
            }
        }
        if let Some(t) = &report.telemetry {
            self.telemetry = Some((now, t.clone()));
        }
        self.last = Some((now, report));
    }

    /// Compares AWS's view with the tunnels' states at `now`, updating how
    /// long each tunnel has been in disagreement. Returns the warnings that
    /// are new (to be logged once).
    pub fn observe(&mut self, now: Instant, tunnels: &[TunnelStatus]) -> Vec<String> {
        let Some((_, telemetry)) = &self.telemetry else {
            return Vec::new();
        };
        let mut new = Vec::new();
        let mut seen = Vec::new();
        for t in telemetry {
            seen.push(t.outside_ip);
            let ours = tunnels.iter().find(|x| x.remote.ip() == t.outside_ip);
            // degraded: the IKE SA is up, only our probes go unanswered
            let ipiece_up =
                ours.is_some_and(|x| matches!(x.state, TunnelState::Up | TunnelState::Degraded));
            if ipiece_up == t.up {
                self.disagree_since.remove(&t.outside_ip);
                self.warned.remove(&t.outside_ip);
                continue;
            }
            let since = *self.disagree_since.entry(t.outside_ip).or_insert(now);
            if now.saturating_duration_since(since) > self.grace()
                && !self.warned.get(&t.outside_ip).copied().unwrap_or(false)
            {
                self.warned.insert(t.outside_ip, true);
                new.push(disagreement(t, ours, now.saturating_duration_since(since)));
            }
        }
        self.disagree_since.retain(|ip, _| seen.contains(ip));
        self.warned.retain(|ip, _| seen.contains(ip));
        new
    }

    /// The status at `now`, beside the tunnels' current states.
    pub fn status(&self, now: Instant, tunnels: &[TunnelStatus]) -> AwsStatus {
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let mut st = AwsStatus {
            vpn_connection_id: self.vpn_connection_id.clone(),
            region: self.region.clone(),
            sync_interval_secs: self.interval.as_secs(),
            last_sync_secs: None,
            last_result: None,
            last_applied: Vec::new(),
            last_error: None,
            consecutive_failures: self.failures,
            next_sync_secs: None,
            conflicts: Vec::new(),
            stale: Vec::new(),
            telemetry_age_secs: self.telemetry.as_ref().map(|(t, _)| secs(*t)),
            tunnels: Vec::new(),
            changes_applied_total: self.changes_applied,
            failed_rounds_total: self.failed_rounds,
        };
        if let Some((at, r)) = &self.last {
            st.last_sync_secs = Some(secs(*at));
            st.next_sync_secs = Some((*at + r.next_in).saturating_duration_since(now).as_secs());
            match &r.result {
                Ok(done) => {
                    st.last_result = Some(if done.applied.is_empty() {
                        "in step".to_owned()
                    } else {
                        format!("applied {} change(s)", done.applied.len())
                    });
                    st.last_applied = done.applied.clone();
                    st.conflicts = done.conflicts.clone();
                    st.stale = done.stale.clone();
                }
                Err(e) => {
                    st.last_result = Some("failed".to_owned());
                    st.last_error = Some(e.clone());
                }
            }
        }
        if let Some((_, telemetry)) = &self.telemetry {
            for t in telemetry {
                let ours = tunnels.iter().find(|x| x.remote.ip() == t.outside_ip);
                let since = self.disagree_since.get(&t.outside_ip).copied();
                let age = since.map(|s| now.saturating_duration_since(s));
                st.tunnels.push(AwsTunnelView {
                    outside_ip: t.outside_ip,
                    tunnel: ours.map(|x| x.name.clone()),
                    aws_status: if t.up { "UP" } else { "DOWN" }.to_owned(),
                    aws_message: t.message.clone(),
                    aws_last_change: t.last_change.clone(),
                    ipiece_state: ours
                        .map(|x| state_name(x.state))
                        .unwrap_or("none")
                        .to_owned(),
                    disagree_secs: age.map(|a| a.as_secs()),
                    warning: age
                        .filter(|a| *a > self.grace())
                        .map(|a| disagreement(t, ours, a)),
                });
            }
        }
        st
    }
}

fn disagreement(t: &TunnelTelemetry, ours: Option<&TunnelStatus>, age: Duration) -> String {
    let name = ours.map_or("no tunnel of this gateway".to_owned(), |x| {
        format!("tunnel {}", x.name)
    });
    let ipiece = ours.map_or("has no such tunnel", |x| match x.state {
        TunnelState::Up | TunnelState::Degraded => "has it up",
        _ => "has it down",
    });
    let message = if t.message.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.message)
    };
    format!(
        "AWS reports {} {}{message} but ipiece {ipiece} ({name}), for {} s: check the tunnel at both ends",
        t.outside_ip,
        if t.up { "UP" } else { "DOWN" },
        age.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::ChildCounters;
    use std::net::SocketAddr;

    #[test]
    fn success_keeps_the_interval_with_jitter() {
        let mut s = Schedule::new(Duration::from_secs(300));
        assert_eq!(s.next_delay(true, 0.5), Duration::from_secs(300));
        assert_eq!(s.next_delay(true, 0.0), Duration::from_secs(270));
        let d = s.next_delay(true, 0.999_999);
        assert!(d > Duration::from_secs(329) && d <= Duration::from_secs(330));
    }

    #[test]
    fn failures_back_off_exponentially_and_success_resets() {
        let mut s = Schedule::new(Duration::from_secs(300));
        let d: Vec<u64> = (0..9).map(|_| s.next_delay(false, 0.5).as_secs()).collect();
        assert_eq!(d, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(s.failures(), 9);
        assert_eq!(s.next_delay(true, 0.5), Duration::from_secs(300));
        assert_eq!(s.failures(), 0);
        assert_eq!(s.next_delay(false, 0.5), Duration::from_secs(30));
        // A short interval retries at the interval first; a long one backs
        // off up to itself.
        let mut s = Schedule::new(Duration::from_secs(10));
        assert_eq!(s.next_delay(false, 0.5), Duration::from_secs(10));
        assert_eq!(s.next_delay(false, 0.5), Duration::from_secs(20));
        let mut s = Schedule::new(Duration::from_secs(7200));
        for _ in 0..30 {
            s.next_delay(false, 0.5);
        }
        assert_eq!(s.next_delay(false, 0.5), Duration::from_secs(7200));
    }

    fn tunnel(name: &str, ip: [u8; 4], state: TunnelState) -> TunnelStatus {
        TunnelStatus {
            name: name.into(),
            state,
            carrying: false,
            priority: 100,
            local: None,
            remote: SocketAddr::from((ip, 4500)),
            ike_spis: None,
            ike_suite: None,
            nat_t: false,
            local_behind_nat: false,
            established_secs: None,
            last_rekey_secs: None,
            last_dpd_answer_secs: None,
            last_error: None,
            children: Vec::new(),
            totals: ChildCounters::default(),
            inner_mtu: None,
            probe: None,
            carrying_reason: String::new(),
            switches_away: 0,
            switches_to: 0,
            last_switch: None,
            events: Default::default(),
        }
    }

    fn telemetry(ip: [u8; 4], up: bool) -> TunnelTelemetry {
        TunnelTelemetry {
            outside_ip: IpAddr::from(ip),
            up,
            message: if up { "" } else { "IPSEC IS DOWN" }.into(),
            last_change: None,
            accepted_routes: 0,
        }
    }

    fn report(telemetry: Vec<TunnelTelemetry>) -> SyncReport {
        SyncReport {
            result: Ok(SyncDone::default()),
            telemetry: Some(telemetry),
            next_in: Duration::from_secs(60),
        }
    }

    #[test]
    fn disagreement_warns_after_two_intervals_once_and_clears() {
        let t0 = Instant::now();
        let mut m = Monitor::new("vpn-1", "us-east-1", Duration::from_secs(60));
        let a = [203, 0, 113, 1];
        let b = [203, 0, 113, 2];
        m.on_report(t0, report(vec![telemetry(a, true), telemetry(b, false)]));
        let ours = vec![
            tunnel("aws-1", a, TunnelState::Connecting),
            tunnel("aws-2", b, TunnelState::Down),
        ];
        assert!(m.observe(t0, &ours).is_empty());
        let st = m.status(t0 + Duration::from_secs(1), &ours);
        assert_eq!(st.tunnels[0].disagree_secs, Some(1));
        assert_eq!(st.tunnels[0].warning, None);
        assert_eq!(st.tunnels[1].disagree_secs, None, "both down agree");
        assert!(m.observe(t0 + Duration::from_secs(120), &ours).is_empty());
        let w = m.observe(t0 + Duration::from_secs(121), &ours);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("203.0.113.1 UP") && w[0].contains("aws-1"),
            "{w:?}"
        );
        assert!(
            m.observe(t0 + Duration::from_secs(150), &ours).is_empty(),
            "once"
        );
        let st = m.status(t0 + Duration::from_secs(150), &ours);
        assert!(st.tunnels[0].warning.is_some());
        assert_eq!(st.tunnels[0].ipiece_state, "connecting");
        // Our tunnel comes up: they agree, the warning is gone.
        let ours = vec![
            tunnel("aws-1", a, TunnelState::Up),
            tunnel("aws-2", b, TunnelState::Down),
        ];
        assert!(m.observe(t0 + Duration::from_secs(151), &ours).is_empty());
        let st = m.status(t0 + Duration::from_secs(151), &ours);
        assert_eq!(st.tunnels[0].disagree_secs, None);
        assert_eq!(st.tunnels[0].warning, None);
    }

    #[test]
    fn status_reports_the_last_round() {
        let t0 = Instant::now();
        let mut m = Monitor::new("vpn-1", "us-east-1", Duration::from_secs(60));
        m.on_report(
            t0,
            SyncReport {
                result: Err("access denied".into()),
                telemetry: None,
                next_in: Duration::from_secs(30),
            },
        );
        let st = m.status(t0 + Duration::from_secs(10), &[]);
        assert_eq!(st.last_result.as_deref(), Some("failed"));
        assert_eq!(st.last_error.as_deref(), Some("access denied"));
        assert_eq!(st.consecutive_failures, 1);
        assert_eq!(st.next_sync_secs, Some(20));
        assert_eq!(st.last_sync_secs, Some(10));
        m.on_report(
            t0 + Duration::from_secs(30),
            SyncReport {
                result: Ok(SyncDone {
                    applied: vec!["CreateVpnConnectionRoute vpn-1 172.16.4.0/24".into()],
                    ..SyncDone::default()
                }),
                telemetry: Some(vec![telemetry([203, 0, 113, 1], false)]),
                next_in: Duration::from_secs(60),
            },
        );
        let st = m.status(t0 + Duration::from_secs(30), &[]);
        assert_eq!(st.last_result.as_deref(), Some("applied 1 change(s)"));
        assert_eq!(st.consecutive_failures, 0);
        assert_eq!(st.tunnels[0].ipiece_state, "none");
        assert_eq!(st.tunnels[0].aws_status, "DOWN");
    }
}
