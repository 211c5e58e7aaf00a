//! When to start dnsmasq again after it exited, and what `wgctl status`
//! shows about it. Pure: the driver passes `now` in and asks
//! [`Supervisor::restart_due`].
//!
//! Backoff: the first restart after 1 s, doubling up to 60 s; a run that
//! lasted [`STABLE_RUN`] resets it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::leases::Lease;

/// First restart delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Largest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(30);

/// dnsmasq's state as `wgctl status` shows it (`.lan` in `--json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanStatus {
    /// `running`, `restarting` (waiting for its backoff) or `failed` (could
    /// not be started at all, e.g. dnsmasq missing).
    pub state: String,
    /// Its process ID while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Times it was restarted after exiting (crash or start failure).
    pub restarts: u32,
    /// Seconds until the next start attempt, while restarting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_secs: Option<u64>,
    /// How it last exited or why it last failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The addresses it listens on.
    #[serde(default)]
    pub listen: Vec<IpAddr>,
    /// Whether it serves DHCP and DNS.
    pub dhcp: bool,
    /// Whether it serves DNS.
    pub dns: bool,
    /// The DHCP leases (from its lease file).
    #[serde(default)]
    pub leases: Vec<Lease>,
    /// Enabled peers without a DNS name (their names are no DNS names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unnamed_peers: Vec<String>,
}

/// Where the supervised process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Running since the instant.
    Running(Instant),
    /// Waiting to be started again at the instant.
    Waiting(Instant),
}

/// The restart schedule of one child process.
#[derive(Debug, Clone)]
pub struct Supervisor {
    state: State,
    backoff: Duration,
    restarts: u32,
    last_error: Option<String>,
}

impl Supervisor {
    /// A process to be started now.
    pub fn new(now: Instant) -> Supervisor {
        Supervisor {
            state: State::Waiting(now),
            backoff: BACKOFF_MIN,
            restarts: 0,
            last_error: None,
        }
    }

    /// It was started.
    pub fn on_started(&mut self, now: Instant) {
        self.state = State::Running(now);
    }

    /// It could not be started (`why`); try again after the backoff.
    pub fn on_start_failed(&mut self, now: Instant, why: String) {
        self.last_error = Some(why);
        self.schedule(now);
    }

    /// It exited (`how`); start it again after the backoff (reset first
    /// when it ran for [`STABLE_RUN`]).
    pub fn on_exit(&mut self, now: Instant, how: String) {
        if let State::Running(since) = self.state {
            if now.saturating_duration_since(since) >= STABLE_RUN {
                self.backoff = BACKOFF_MIN;
            }
        }
        self.last_error = Some(how);
        self.schedule(now);
    }

    /// It is to be restarted at once (a configuration change); this is no
    /// failure and not counted.
    pub fn on_restart_requested(&mut self, now: Instant) {
        self.state = State::Waiting(now);
        self.backoff = BACKOFF_MIN;
    }

    fn schedule(&mut self, now: Instant) {
        self.state = State::Waiting(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.restarts += 1;
    }

    /// When the next start is due, if the process is not running.
    pub fn restart_at(&self) -> Option<Instant> {
        match self.state {
            State::Waiting(at) => Some(at),
            State::Running(_) => None,
        }
    }

    /// Whether a start is due at `now`.
    pub fn restart_due(&self, now: Instant) -> bool {
        self.restart_at().is_some_and(|at| at <= now)
    }

    /// Times the process was restarted after a failure.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The status fields this schedule knows (the driver adds the rest).
    pub fn status(&self, now: Instant, pid: Option<u32>) -> LanStatus {
        let (state, restart_in_secs) = match self.state {
            State::Running(_) => ("running", None),
            State::Waiting(at) => (
                "restarting",
                Some(at.saturating_duration_since(now).as_secs()),
            ),
        };
        LanStatus {
            state: state.to_owned(),
            pid: pid.filter(|_| restart_in_secs.is_none()),
            restarts: self.restarts,
            restart_in_secs,
            last_error: self.last_error.clone(),
            ..LanStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets_after_a_stable_run() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(t0);
        assert!(s.restart_due(t0));
        s.on_started(t0);
        assert!(!s.restart_due(t0 + Duration::from_secs(1000)));
        assert_eq!(s.status(t0, Some(42)).state, "running");
        assert_eq!(s.status(t0, Some(42)).pid, Some(42));

        // Crashes right after start: 1, 2, 4, ... 60, 60 s.
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            s.on_exit(now, "killed by signal 9".into());
            let at = s.restart_at().unwrap();
            delays.push(at.duration_since(now).as_secs());
            assert!(!s.restart_due(at - Duration::from_millis(1)));
            assert!(s.restart_due(at));
            now = at;
            s.on_started(now);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(s.restarts(), 8);
        let st = s.status(now, Some(7));
        assert_eq!(st.restarts, 8);
        assert_eq!(st.last_error.as_deref(), Some("killed by signal 9"));

        // Then a long run: the next delay is 1 s again.
        now += STABLE_RUN;
        s.on_exit(now, "exit status 1".into());
        assert_eq!(s.restart_at().unwrap().duration_since(now), BACKOFF_MIN);
        let st = s.status(now, Some(7));
        assert_eq!(st.state, "restarting");
        assert_eq!(st.pid, None);
        assert_eq!(st.restart_in_secs, Some(1));
    }

    #[test]
    fn start_failures_back_off_and_requested_restarts_do_not_count() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(t0);
        s.on_start_failed(t0, "dnsmasq not found".into());
        assert_eq!(s.restart_at(), Some(t0 + Duration::from_secs(1)));
        s.on_start_failed(t0, "dnsmasq not found".into());
        assert_eq!(s.restart_at(), Some(t0 + Duration::from_secs(2)));
        s.on_started(t0);
        s.on_restart_requested(t0);
        assert!(s.restart_due(t0));
        assert_eq!(s.restarts(), 2);
    }
}
