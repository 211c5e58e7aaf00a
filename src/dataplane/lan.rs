//! The thin shell around dnsmasq: writes the files [`crate::lan::render`]
//! makes into the state directory, runs dnsmasq as a child of ipieced (in
//! its network namespace, in the foreground, `--conf-file` ours), restarts
//! it with backoff after it exits ([`Supervisor`]), sends it SIGHUP when only
//! the hosts file changed, and stops it (by PID) when ipieced stops. dnsmasq
//! also gets SIGTERM from the kernel if ipieced dies (`PR_SET_PDEATHSIG`).

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::lan::{
    parse_leases, plan_change, render, Change, LanStatus, Paths, Rendered, Supervisor,
};

/// How long dnsmasq gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the LAN services could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanError {
    /// dnsmasq is not installed.
    #[error("{program} not found: [lan.dhcp] and [dns] are served by dnsmasq; install the Debian package `dnsmasq-base` (apt install dnsmasq-base; the `dnsmasq` package also brings it)")]
    DnsmasqMissing {
        /// The program looked for.
        program: String,
    },
    /// The state directory or a file in it could not be written.
    #[error("{path}: {message}")]
    Files {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The dnsmasq program (`IPIECE_DNSMASQ` overrides it, for tests).
fn dnsmasq_program() -> String {
    std::env::var("IPIECE_DNSMASQ").unwrap_or_else(|_| "dnsmasq".to_owned())
}

/// Whether `program` can be found (a path, or a name in `PATH`).
fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| d.join(program).is_file())
}

/// The account dnsmasq drops to: `dnsmasq` (made by Debian's
/// `dnsmasq-base`) when ipieced runs as root and it exists, else `root`
/// (dnsmasq then keeps ipieced's identity).
fn dnsmasq_user() -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if is_root() && passwd_uid_gid(&passwd, "dnsmasq").is_some() {
        "dnsmasq".to_owned()
    } else {
        "root".to_owned()
    }
}

/// The uid and gid of `user` in the text of `/etc/passwd`.
fn passwd_uid_gid(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `sig` to the process `pid` (one we started).
#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory preconditions; pid is our child's.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The first directory on the way to `dir` (itself included) that the
/// account `uid`/`gid` may not search, by the mode bits that apply to it
/// (owner, group, then others; supplementary groups are not looked at).
fn blocked_ancestor(dir: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::canonicalize(dir).ok()?;
    dir.ancestors().find_map(|a| {
        let m = std::fs::metadata(a).ok()?;
        let bit = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        (m.mode() & bit == 0).then(|| a.to_path_buf())
    })
}

/// Writes `text` to `path` through a temporary file and a rename, mode 0644
/// (dnsmasq re-reads the hosts file after dropping root).
fn write_file(path: &Path, text: &str) -> Result<(), LanError> {
    let err = |e: io::Error| LanError::Files {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Fails when `cfg` asks for DHCP or DNS and dnsmasq cannot be found: the
/// daemon checks this before it creates anything.
pub fn preflight(cfg: &Config) -> Result<(), LanError> {
    let wanted = cfg.dns.is_some() || cfg.lan.as_ref().is_some_and(|l| l.dhcp.is_some());
    let program = dnsmasq_program();
    if wanted && !program_exists(&program) {
        return Err(LanError::DnsmasqMissing { program });
    }
    Ok(())
}

/// What happened to dnsmasq, for [`LanShell::on_event`].
#[derive(Debug)]
pub enum LanEvent {
    /// The child exited.
    Exited(io::Result<ExitStatus>),
    /// A (re)start is due.
    StartDue,
}

/// The running dnsmasq and its schedule.
pub struct LanShell {
    state_dir: PathBuf,
    program: String,
    user: String,
    wan_interface: Option<String>,
    /// What dnsmasq runs with; `None`: it is not wanted.
    rendered: Option<Rendered>,
    dhcp: bool,
    dns: bool,
    child: Option<Child>,
    sup: Supervisor,
    /// We stopped it for a restart: start it again at once when it exits.
    restarting: bool,
    /// dnsmasq's last line on stderr (it logs there), for the status.
    last_line: Arc<Mutex<Option<String>>>,
    /// The task copying dnsmasq's stderr into the log (ends at its EOF).
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

impl LanShell {
    /// Renders dnsmasq's files for `cfg` and starts it when the file asks
    /// for DHCP or DNS. Fails when dnsmasq is missing or the state directory
    /// cannot be written; a dnsmasq that exits is restarted with backoff.
    pub fn start(
        cfg: &Config,
        state_dir: &Path,
        wan_interface: Option<String>,
    ) -> Result<LanShell, LanError> {
        let mut shell = LanShell {
            state_dir: state_dir.to_path_buf(),
            program: dnsmasq_program(),
            user: dnsmasq_user(),
            wan_interface,
            rendered: None,
            dhcp: false,
            dns: false,
            child: None,
            sup: Supervisor::new(Instant::now()),
            restarting: false,
            last_line: Arc::new(Mutex::new(None)),
            stderr_task: None,
        };
        shell.rendered = shell.render(cfg);
        shell.note_services(cfg);
        if shell.rendered.is_some() {
            if !program_exists(&shell.program) {
                return Err(LanError::DnsmasqMissing {
                    program: shell.program.clone(),
                });
            }
            shell.write_all()?;
            shell.spawn();
        }
        Ok(shell)
    }

    fn paths(&self) -> Paths {
        Paths {
            pid_file: self.state_dir.join("dnsmasq.pid"),
            lease_file: self.state_dir.join("dnsmasq.leases"),
            hosts_file: self.state_dir.join("dnsmasq.hosts"),
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.state_dir.join("dnsmasq.conf")
    }

    fn render(&self, cfg: &Config) -> Option<Rendered> {
        render(
            cfg,
            &self.paths(),
            &self.user,
            self.wan_interface.as_deref(),
        )
    }

    fn note_services(&mut self, cfg: &Config) {
        self.dhcp = cfg.lan.as_ref().is_some_and(|l| l.dhcp.is_some());
        self.dns = cfg.dns.is_some();
    }

    /// Creates the state directory (0755: dnsmasq re-reads the hosts file
    /// as its own user) and writes the configuration and hosts files; the
    /// lease file is made dnsmasq's.
    fn write_all(&self) -> Result<(), LanError> {
        let Some(r) = &self.rendered else {
            return Ok(());
        };
        let dir_err = |e: io::Error| LanError::Files {
            path: self.state_dir.clone(),
            message: format!("cannot create the state directory: {e}"),
        };
        std::fs::create_dir_all(&self.state_dir).map_err(dir_err)?;
        std::fs::set_permissions(&self.state_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(dir_err)?;
        self.check_reachable()?;
        write_file(&self.conf_path(), &r.conf)?;
        write_file(&self.paths().hosts_file, &r.hosts)?;
        self.own_lease_file()
    }

    /// Fails when dnsmasq, once it has dropped to its own account, could
    /// not pass through a directory on the way to the state directory: it
    /// would start (as root), then fail to reread its hosts file on every
    /// peer change, and the laptops' names would never resolve.
    fn check_reachable(&self) -> Result<(), LanError> {
        if self.user == "root" {
            return Ok(());
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let Some((uid, gid)) = passwd_uid_gid(&passwd, &self.user) else {
            return Ok(());
        };
        match blocked_ancestor(&self.state_dir, uid, gid) {
            None => Ok(()),
            Some(dir) => Err(LanError::Files {
                path: self.state_dir.clone(),
                message: format!(
                    "dnsmasq runs as user {} and cannot pass through {} (no search \
                     permission): make it traversable (chmod o+x) or choose another \
                     --state-dir",
                    self.user,
                    dir.display()
                ),
            }),
        }
    }

    /// dnsmasq rewrites its lease file after dropping root: create it
    /// owned by its user.
    fn own_lease_file(&self) -> Result<(), LanError> {
        let lease = self.paths().lease_file;
        let err = |e: io::Error| LanError::Files {
            path: lease.clone(),
            message: format!("cannot prepare the lease file: {e}"),
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lease)
            .map_err(err)?;
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if let Some((uid, gid)) = passwd_uid_gid(&passwd, &self.user) {
            std::os::unix::fs::chown(&lease, Some(uid), Some(gid)).map_err(err)?;
        }
        Ok(())
    }

    /// Starts dnsmasq now; a failure is scheduled for a retry.
    fn spawn(&mut self) {
        let now = Instant::now();
        let mut cmd = Command::new(&self.program);
        cmd.arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", self.conf_path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(pid = child.id(), "dnsmasq started");
                if let Some(err) = child.stderr.take() {
                    let last = self.last_line.clone();
                    self.stderr_task = Some(tokio::spawn(async move {
                        let mut lines = BufReader::new(err).lines();
                        while let Ok(Some(l)) = lines.next_line().await {
                            tracing::info!(target: "dnsmasq", "{l}");
                            if let Ok(mut g) = last.lock() {
                                *g = Some(l);
                            }
                        }
                    }));
                }
                self.child = Some(child);
                self.sup.on_started(now);
            }
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    LanError::DnsmasqMissing {
                        program: self.program.clone(),
                    }
                    .to_string()
                } else {
                    format!("cannot start {}: {e}", self.program)
                };
                tracing::error!("{why}");
                self.sup.on_start_failed(now, why);
            }
        }
    }

    /// Waits for the next thing to handle: dnsmasq's exit, or a due start.
    /// Never returns while dnsmasq is not wanted.
    pub async fn next_event(&mut self) -> LanEvent {
        if let Some(child) = self.child.as_mut() {
            let status = child.wait().await;
            // Its last words (why it gave up) are still in the pipe.
            if let Some(task) = self.stderr_task.take() {
                let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
            }
            return LanEvent::Exited(status);
        }
        match (self.rendered.is_some(), self.sup.restart_at()) {
            (true, Some(at)) => {
                tokio::time::sleep_until(at.into()).await;
                LanEvent::StartDue
            }
            _ => std::future::pending().await,
        }
    }

    /// Handles what [`LanShell::next_event`] returned.
    pub fn on_event(&mut self, ev: LanEvent) {
        match ev {
            LanEvent::Exited(status) => {
                self.child = None;
                let now = Instant::now();
                if self.rendered.is_none() {
                    tracing::info!("dnsmasq stopped (no [lan.dhcp] or [dns] any more)");
                    return;
                }
                if std::mem::take(&mut self.restarting) {
                    self.sup.on_restart_requested(now);
                    self.spawn();
                    return;
                }
                let last = self.last_line.lock().ok().and_then(|mut g| g.take());
                let how = match status {
                    // dnsmasq says why it gave up in its last line.
                    Ok(s) if s.code().is_some_and(|c| c != 0) => format!(
                        "dnsmasq exited: {s}{}",
                        last.map(|l| format!(" ({l})")).unwrap_or_default()
                    ),
                    Ok(s) => format!("dnsmasq exited: {s}"),
                    Err(e) => format!("dnsmasq: cannot wait for it: {e}"),
                };
                self.sup.on_exit(now, how.clone());
                tracing::warn!(
                    restarts = self.sup.restarts(),
                    "{how}; restarting with backoff"
                );
            }
            LanEvent::StartDue => {
                if self.rendered.is_some() && self.child.is_none() {
                    if let Err(e) = self.write_all() {
                        self.sup.on_start_failed(Instant::now(), e.to_string());
                        return;
                    }
                    self.spawn();
                }
            }
        }
    }

    /// Applies a reloaded configuration: a new hosts file and SIGHUP when
    /// only names changed, a restart when options did, a start or stop.
    pub fn reload(&mut self, cfg: &Config) {
        let new = self.render(cfg);
        let change = plan_change(self.rendered.as_ref(), new.as_ref());
        self.rendered = new;
        self.note_services(cfg);
        let result = match change {
            Change::None => Ok(()),
            Change::Hosts => self.reload_hosts(),
            Change::Restart => self.restart(),
            Change::Start => {
                self.sup.on_restart_requested(Instant::now());
                if self.child.is_none() {
                    self.write_all().map(|()| self.spawn())
                } else {
                    // The old one is still on its way out.
                    self.restarting = true;
                    self.write_all()
                }
            }
            Change::Stop => {
                self.request_stop();
                Ok(())
            }
        };
        match result {
            Ok(()) if change != Change::None => {
                tracing::info!(?change, "LAN services reconfigured")
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!("LAN services: {e}");
                self.sup.on_start_failed(Instant::now(), e.to_string());
            }
        }
    }

    /// Only the hosts file changed: write it and SIGHUP dnsmasq.
    fn reload_hosts(&mut self) -> Result<(), LanError> {
        if let Some(r) = &self.rendered {
            write_file(&self.paths().hosts_file, &r.hosts)?;
        }
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            signal(pid, libc::SIGHUP);
        }
        Ok(())
    }

    /// The options changed: new files, then stop dnsmasq and start it again
    /// when it has exited (at once when it is not running).
    fn restart(&mut self) -> Result<(), LanError> {
        self.write_all()?;
        match self.child.as_ref().and_then(Child::id) {
            Some(pid) => {
                self.restarting = true;
                signal(pid, libc::SIGTERM);
            }
            None => {
                self.sup.on_restart_requested(Instant::now());
                self.spawn();
            }
        }
        Ok(())
    }

    /// dnsmasq is no longer wanted: SIGTERM (its exit is then not a crash).
    fn request_stop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            signal(pid, libc::SIGTERM);
        }
        self.restarting = false;
        // Reaped by next_event's wait; rendered is None so no restart.
    }

    /// Stops dnsmasq (SIGTERM, SIGKILL after 3 s) and waits for it.
    pub async fn stop(&mut self) {
        self.rendered = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            signal(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        tracing::info!("dnsmasq stopped");
    }

    /// The status for `wgctl status` (with the leases), or `None` when
    /// dnsmasq is not wanted.
    pub fn status(&self) -> Option<LanStatus> {
        let r = self.rendered.as_ref()?;
        let mut st = self
            .sup
            .status(Instant::now(), self.child.as_ref().and_then(Child::id));
        st.listen = r.listen.clone();
        st.dhcp = self.dhcp;
        st.dns = self.dns;
        st.unnamed_peers = r.unnamed_peers.clone();
        if self.dhcp {
            st.leases = std::fs::read_to_string(self.paths().lease_file)
                .map(|t| parse_leases(&t))
                .unwrap_or_default();
        }
        Some(st)
    }
}

/// dnsmasq gets SIGTERM when ipieced dies, even by SIGKILL, so that a new
/// ipieced never finds the LAN addresses' ports taken by an orphan.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      dnsmasq:x:999:65534:dnsmasq:/var/lib/misc:/usr/sbin/nologin\n\
                      broken:x:abc\n";
        assert_eq!(passwd_uid_gid(passwd, "dnsmasq"), Some((999, 65534)));
        assert_eq!(passwd_uid_gid(passwd, "root"), Some((0, 0)));
        assert_eq!(passwd_uid_gid(passwd, "broken"), None);
        assert_eq!(passwd_uid_gid(passwd, "nobody"), None);
    }

    #[test]
    fn a_directory_dnsmasq_cannot_search_is_found_on_the_way() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("ipiece-lan-reach-{}", std::process::id()));
        let state = base.join("private").join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let private = base.join("private");
        // an account that owns none of it and is in none of its groups
        let (uid, gid) = (4_000_000, 4_000_000);
        let meta = std::fs::metadata(&private).unwrap();
        assert_ne!(meta.uid(), uid);
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            blocked_ancestor(&state, uid, gid),
            Some(std::fs::canonicalize(&private).unwrap())
        );
        // 0711: traversable, not listable, as scripts/demo.sh leaves its dir
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(blocked_ancestor(&state, uid, gid), None);
        // the owner's bits count for the owner
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(blocked_ancestor(&state, meta.uid(), meta.gid()), None);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn missing_dnsmasq_names_the_package() {
        let e = LanError::DnsmasqMissing {
            program: "dnsmasq".into(),
        };
        assert!(e.to_string().contains("dnsmasq-base"), "{e}");
        assert!(!program_exists("/nonexistent/dnsmasq"));
        assert!(program_exists("sh"));
    }
}
