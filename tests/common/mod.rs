//! Harness for the integration tests: network namespaces, the processes the
//! tests start in them, a laptop / internet / home-NAT / gateway / LAN
//! topology, `ipieced` and `wgctl` helpers, wireguard-go laptops configured
//! from the client files `wgctl` writes, and `wg show dump` parsing.
//! [`strongswan`] runs charon daemons (the AWS VGW stand-in and a
//! customer-gateway peer) in those namespaces.
//! [`ipsec`] adds what the ipieced-versus-strongSwan tests need: a second
//! VGW reaching the same VPC host, `[[ipsec.tunnels]]` with 0600 PSK files,
//! the tunnels of `wgctl status --json`, and tcpdump captures to replay.
//!
//! Safety rules (the tests run as root on a shared machine):
//! - every namespace is called `ipt-<pid>-<n>-<role>` and is deleted by its
//!   guard's `Drop`, also when the test panics;
//! - veth pairs are created inside namespaces (`ip -n A link add X type veth
//!   peer name Y netns B`); nothing is ever configured in the root namespace;
//! - processes are killed by PID (the ones we started, then whatever is left
//!   inside our own namespace), TERM first and KILL after a bounded wait;
//! - WireGuard userspace interface names are unique host-wide (the UAPI socket
//!   `/var/run/wireguard/<if>.sock` is shared by every namespace) and their
//!   sockets are removed at teardown.
#![allow(dead_code)]

pub mod ipsec;
pub mod strongswan;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of the `ipieced` binary built for this test run.
pub const IPIECED: &str = env!("CARGO_BIN_EXE_ipieced");
/// Path of the `wgctl` binary built for this test run.
pub const WGCTL: &str = env!("CARGO_BIN_EXE_wgctl");

/// Set to 1 to skip (instead of fail) the tests that need root.
pub const SKIP_ENV: &str = "IPIECE_SKIP_NETNS";

/// Public address of the home router in front of the gateway.
pub const NAT_WAN: &str = "203.0.113.2";
/// The gateway's address on the home LAN (the DNAT target).
pub const GW_ETH0: &str = "192.168.1.2";
/// The on-prem LAN host behind the gateway.
pub const LAN_HOST: &str = "172.16.4.10";
/// The gateway's WireGuard address in the seed config.
pub const GW_WG_ADDR: &str = "172.16.60.1";
/// The WireGuard port the home router forwards.
pub const WG_PORT: u16 = 51821;
/// The on-prem LAN prefix behind the gateway.
pub const LAN_CIDR: &str = "172.16.4.0/24";
/// The "AWS VGW" tunnel outside address ([`Topology::add_vgw`]).
pub const VGW_WAN: &str = "203.0.113.130";
/// The VPC prefix behind the VGW.
pub const VPC_CIDR: &str = "10.0.0.0/16";
/// The VPC host behind the VGW.
pub const VPC_HOST: &str = "10.0.1.10";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static STALE_CLEANUP: Once = Once::new();

fn next_n() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

// ------------------------------------------------------------------ waiting --

/// Polls `cond` every `interval` until it returns true or `timeout` passes.
/// Returns whether it became true; it is evaluated at least once and once more
/// at the deadline.
pub fn wait_until(timeout: Duration, interval: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ----------------------------------------------------------------- root check --

/// Whether this process runs with effective uid 0 (read from /proc).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(|euid| euid == "0")
        .unwrap_or(false)
}

/// Call first in every test that needs namespaces. Returns false (after
/// printing a skip line) when not root and `IPIECE_SKIP_NETNS=1`; panics with
/// a clear message when not root otherwise.
pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("SKIP {test}: needs root for network namespaces ({SKIP_ENV}=1)");
        return false;
    }
    panic!(
        "{test} needs root (network namespaces, TUN, nftables); run the tests as root, \
         or set {SKIP_ENV}=1 to skip them"
    );
}

// ----------------------------------------------------------------- commands --

/// Result of a command run to completion (or killed at its deadline).
#[derive(Debug)]
pub struct Out {
    /// Exit status; `None` if it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Out {
    /// Exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
    /// The exit code, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    /// Panics with the full output unless it exited with 0.
    pub fn expect_ok(self) -> Out {
        assert!(self.ok(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Some(s) => format!("{s}"),
            None => "killed at its deadline".to_string(),
        };
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, status, self.stdout, self.stderr
        )
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with piped output (and `input` on stdin), killing it if it has
/// not exited after `timeout`.
pub fn run_cmd(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    let line = cmdline(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for `{line}`: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    Out {
        status,
        stdout,
        stderr,
        cmdline: line,
    }
}

/// Runs a program (root namespace, no network changes) with a 20 s bound.
pub fn run(prog: &str, args: &[&str]) -> Out {
    run_cmd(Command::new(prog).args(args), None, Duration::from_secs(20))
}

/// Sends `sig` to `pid` (a process this test started).
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// ------------------------------------------------------------ temp directory --

/// A private directory under /tmp, removed on drop unless the test failed
/// (then it is kept for inspection and its path printed).
pub struct TempDir {
    /// The directory.
    pub path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/ipt-<pid>-<n>-<tag>` with mode 0700.
    pub fn new(tag: &str) -> TempDir {
        let path = PathBuf::from(format!(
            "/tmp/ipt-{}-{}-{}",
            std::process::id(),
            next_n(),
            tag
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        TempDir { path }
    }
    /// `path/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[harness] test failed: keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ----------------------------------------------------------------- namespace --

struct Proc {
    label: String,
    child: Child,
    log: Option<PathBuf>,
}

/// A network namespace owned by one test. Dropping it kills the processes
/// started in it (TERM, then KILL after 3 s), removes the files registered
/// with [`Netns::remove_at_teardown`] and deletes the namespace.
pub struct Netns {
    /// `ipt-<pid>-<n>-<role>`.
    pub name: String,
    procs: Mutex<Vec<Proc>>,
    files: Mutex<Vec<PathBuf>>,
}

/// Returns a WireGuard interface name unique on this host: `ipt<pid%10000><n>`.
pub fn unique_ifname() -> String {
    loop {
        let name = format!("ipt{}{}", std::process::id() % 10000, next_n());
        assert!(name.len() <= 15, "interface name {name} too long");
        if !Path::new(&format!("/var/run/wireguard/{name}.sock")).exists() {
            return name;
        }
    }
}

/// Deletes namespaces (and their processes) left by earlier test processes
/// that died without running their destructors (`ipt-<pid>-...` whose pid is
/// gone), and dead `ipt*` UAPI sockets. Only ever touches `ipt-` names.
fn cleanup_stale() {
    let list = run("ip", &["netns", "list"]);
    for line in list.stdout.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("ipt-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        eprintln!("[harness] removing stale namespace {name}");
        kill_ns_pids(name);
        let _ = run("ip", &["netns", "del", name]);
    }
    if let Ok(rd) = fs::read_dir("/var/run/wireguard") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("ipt")
                && n.ends_with(".sock")
                && UnixStream::connect(e.path()).is_err()
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn kill_pid_bounded(pid: u32) {
    if !pid_alive(pid) {
        return;
    }
    signal(pid, libc::SIGTERM);
    if !wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        !pid_alive(pid)
    }) {
        signal(pid, libc::SIGKILL);
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            !pid_alive(pid)
        });
    }
}

fn kill_ns_pids(name: &str) {
    let pids = run("ip", &["netns", "pids", name]);
    for p in pids.stdout.split_whitespace() {
        if let Ok(pid) = p.parse::<u32>() {
            kill_pid_bounded(pid);
        }
    }
}

impl Netns {
    /// Creates `ipt-<pid>-<n>-<role>`, brings `lo` up and turns rp_filter off.
    pub fn new(role: &str) -> Netns {
        STALE_CLEANUP.call_once(cleanup_stale);
        let name = format!("ipt-{}-{}-{}", std::process::id(), next_n(), role);
        run("ip", &["netns", "add", &name]).expect_ok();
        let ns = Netns {
            name,
            procs: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
        };
        ns.ip("link set lo up");
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0");
        ns.sysctl("net.ipv4.conf.default.rp_filter", "0");
        ns
    }

    /// A `Command` running `prog args` inside this namespace.
    pub fn command(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]).args(args);
        c
    }

    /// Runs `prog args` in the namespace to completion (bounded by `timeout`).
    pub fn exec_t(&self, prog: &str, args: &[&str], timeout: Duration) -> Out {
        run_cmd(&mut self.command(prog, args), None, timeout)
    }

    /// Runs `prog args` in the namespace to completion (bounded by 20 s).
    pub fn exec(&self, prog: &str, args: &[&str]) -> Out {
        self.exec_t(prog, args, Duration::from_secs(20))
    }

    /// Like [`Netns::exec`] with `input` on stdin.
    pub fn exec_input(&self, prog: &str, args: &[&str], input: &[u8]) -> Out {
        run_cmd(
            &mut self.command(prog, args),
            Some(input),
            Duration::from_secs(20),
        )
    }

    /// `ip -n <ns> <args>` (split on whitespace); panics if it fails.
    pub fn ip(&self, args: &str) -> Out {
        self.try_ip(args).expect_ok()
    }

    /// `ip -n <ns> <args>` (split on whitespace).
    pub fn try_ip(&self, args: &str) -> Out {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend(args.split_whitespace());
        run("ip", &v)
    }

    /// Sets a sysctl inside the namespace; panics if it fails.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])
            .expect_ok();
    }

    /// Starts `prog args` in the namespace in the background, stdout and
    /// stderr appended to `log`. Returns its PID (`ip netns exec` execs the
    /// program, so it is the program's own PID).
    pub fn spawn(
        &self,
        label: &str,
        prog: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> u32 {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)
            .unwrap();
        let mut c = self.command(prog, args);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let line = cmdline(&c);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let pid = child.id();
        self.procs.lock().unwrap().push(Proc {
            label: label.to_string(),
            child,
            log: Some(log.to_path_buf()),
        });
        pid
    }

    /// Whether the process `pid` (started with [`Netns::spawn`]) still runs.
    pub fn running(&self, pid: u32) -> bool {
        let mut procs = self.procs.lock().unwrap();
        match procs.iter_mut().find(|p| p.child.id() == pid) {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits (bounded) for `pid` (started with [`Netns::spawn`]) to exit and
    /// returns its status, or `None` if it still runs at the deadline.
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut procs = self.procs.lock().unwrap();
                let p = procs
                    .iter_mut()
                    .find(|p| p.child.id() == pid)
                    .unwrap_or_else(|| panic!("pid {pid} was not started in {}", self.name));
                if let Ok(Some(s)) = p.child.try_wait() {
                    return Some(s);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Registers a file to delete at teardown (after the processes are gone).
    pub fn remove_at_teardown(&self, path: &Path) {
        self.files.lock().unwrap().push(path.to_path_buf());
    }

    /// Creates a veth pair from inside this namespace: `a` here, `b` in `other`,
    /// both up.
    pub fn veth(&self, a: &str, other: &Netns, b: &str) {
        self.ip(&format!(
            "link add {a} type veth peer name {b} netns {}",
            other.name
        ));
        self.ip(&format!("link set {a} up"));
        other.ip(&format!("link set {b} up"));
    }

    /// A UDP socket bound to `bind` inside this namespace (created on a thread
    /// that joined the namespace; the socket stays in it).
    pub fn udp_socket(&self, bind: &str) -> UdpSocket {
        let path = format!("/var/run/netns/{}", self.name);
        let bind = bind.to_string();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a valid namespace fd only changes this
            // short-lived thread's network namespace.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            UdpSocket::bind(&bind).unwrap()
        })
        .join()
        .unwrap()
    }

    /// Pings `dst` from this namespace: `count` echo requests every
    /// `interval_ms`, waiting `wait_s` seconds for the last reply.
    pub fn ping(&self, dst: &str, count: u32, interval_ms: u32, wait_s: u32) -> Ping {
        let interval = format!("{}", interval_ms as f64 / 1000.0);
        let out = self.exec_t(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                &interval,
                "-W",
                &wait_s.to_string(),
                dst,
            ],
            Duration::from_millis((count * interval_ms) as u64 + wait_s as u64 * 1000 + 5000),
        );
        Ping::parse(&out.stdout, &format!("{out}"))
    }

    /// One ping with a 1 s wait: whether it was answered.
    pub fn ping1(&self, dst: &str) -> bool {
        self.ping(dst, 1, 200, 1).received == 1
    }

    /// Pings `dst` until one answer arrives, for at most `timeout`.
    pub fn ping_until(&self, dst: &str, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(100), || self.ping1(dst))
    }

    /// `wg show <ifname> dump` inside this namespace, parsed.
    pub fn wg_dump(&self, ifname: &str) -> WgDump {
        let out = self.exec("wg", &["show", ifname, "dump"]).expect_ok();
        WgDump::parse(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The tail of every process log, for failure messages.
    pub fn logs(&self) -> String {
        let procs = self.procs.lock().unwrap();
        let mut s = String::new();
        for p in procs.iter() {
            if let Some(log) = &p.log {
                s.push_str(&format!(
                    "----- {} [{}] {} -----\n{}\n",
                    p.label,
                    self.name,
                    log.display(),
                    tail(log, 150)
                ));
            }
        }
        s
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read: {e}>"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut procs = std::mem::take(&mut *self.procs.lock().unwrap_or_else(|e| e.into_inner()));
        for p in procs.iter_mut() {
            if let Ok(None) = p.child.try_wait() {
                signal(p.child.id(), libc::SIGTERM);
                let gone = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
                    matches!(p.child.try_wait(), Ok(Some(_)))
                });
                if !gone {
                    eprintln!(
                        "[harness] {} (pid {}) ignored SIGTERM for 3 s: SIGKILL",
                        p.label,
                        p.child.id()
                    );
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                }
            }
        }
        if panicking {
            for p in procs.iter() {
                if let Some(log) = &p.log {
                    let st = p.child.id();
                    eprintln!(
                        "----- log of {} (pid {st}) in {}: {} -----\n{}\n----- end -----",
                        p.label,
                        self.name,
                        log.display(),
                        tail(log, 200)
                    );
                }
            }
        }
        // Anything else still inside our namespace was started by us.
        kill_ns_pids(&self.name);
        for f in self.files.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = fs::remove_file(f);
        }
        let out = run("ip", &["netns", "del", &self.name]);
        if !out.ok() {
            if !Path::new("/var/run/netns").join(&self.name).exists() {
                eprintln!(
                    "[harness] namespace {} was already gone: something outside this test deleted it",
                    self.name
                );
            } else {
                eprintln!("[harness] cannot delete namespace {}: {out}", self.name);
            }
        }
    }
}

// --------------------------------------------------------------------- ping --

/// Summary of one `ping -q` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
}

impl Ping {
    /// Parses the "N packets transmitted, M received" line; panics with
    /// `context` if it is missing.
    pub fn parse(stdout: &str, context: &str) -> Ping {
        for line in stdout.lines() {
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().next()?.parse().ok())
                    .collect();
                if nums.len() >= 2 {
                    return Ping {
                        transmitted: nums[0],
                        received: nums[1],
                    };
                }
            }
        }
        panic!("no ping summary in output: {context}");
    }
}

// ----------------------------------------------------------------- wg dump --

/// `wg show <if> dump`: the interface line and one line per peer.
#[derive(Debug, Clone)]
pub struct WgDump {
    /// Interface private key (base64) as printed.
    pub private_key: String,
    /// Interface public key.
    pub public_key: String,
    /// Listen port.
    pub listen_port: u16,
    /// Peers.
    pub peers: Vec<WgPeer>,
}

/// One peer line of `wg show <if> dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// Public key (base64).
    pub public_key: String,
    /// Preshared key or "(none)".
    pub preshared_key: String,
    /// Current endpoint, `None` if "(none)".
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Unix time of the latest handshake, 0 if none.
    pub latest_handshake: u64,
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Persistent keepalive seconds, `None` if off.
    pub keepalive: Option<u16>,
}

impl WgDump {
    /// Parses the dump format (tab-separated).
    pub fn parse(text: &str) -> Result<WgDump, String> {
        let mut lines = text.lines();
        let first = lines.next().ok_or("empty wg dump")?;
        let f: Vec<&str> = first.split('\t').collect();
        if f.len() != 4 {
            return Err(format!("bad interface line {first:?}"));
        }
        let mut dump = WgDump {
            private_key: f[0].to_string(),
            public_key: f[1].to_string(),
            listen_port: f[2].parse().map_err(|_| format!("bad port {first:?}"))?,
            peers: Vec::new(),
        };
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 8 {
                return Err(format!("bad peer line {line:?}"));
            }
            let num = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| format!("bad number in {line:?}"))
            };
            dump.peers.push(WgPeer {
                public_key: f[0].to_string(),
                preshared_key: f[1].to_string(),
                endpoint: if f[2] == "(none)" {
                    None
                } else {
                    Some(
                        f[2].parse()
                            .map_err(|_| format!("bad endpoint in {line:?}"))?,
                    )
                },
                allowed_ips: if f[3] == "(none)" {
                    Vec::new()
                } else {
                    f[3].split(',').map(str::to_string).collect()
                },
                latest_handshake: num(f[4])?,
                rx: num(f[5])?,
                tx: num(f[6])?,
                keepalive: if f[7] == "off" {
                    None
                } else {
                    Some(num(f[7])? as u16)
                },
            });
        }
        Ok(dump)
    }

    /// The peer with this public key.
    pub fn peer(&self, public_key: &str) -> Option<&WgPeer> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

// ------------------------------------------------------------ client config --

/// A WireGuard client file as `wgctl add-peer` writes it (wg-quick format).
#[derive(Debug, Clone)]
pub struct ClientConf {
    /// The exact text of the file.
    pub text: String,
    /// `[Interface]` keys in order (names as written).
    pub interface: Vec<(String, String)>,
    /// One key list per `[Peer]`.
    pub peers: Vec<Vec<(String, String)>>,
}

/// Keys only wg-quick understands; `wg setconf` rejects them.
const WG_QUICK_ONLY: &[&str] = &[
    "address",
    "dns",
    "mtu",
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
];

impl ClientConf {
    /// Reads and parses a client file.
    pub fn load(path: &Path) -> ClientConf {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read client file {}: {e}", path.display()));
        ClientConf::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
    }

    /// Parses wg-quick INI text.
    pub fn parse(text: &str) -> Result<ClientConf, String> {
        let mut c = ClientConf {
            text: text.to_string(),
            interface: Vec::new(),
            peers: Vec::new(),
        };
        enum Sec {
            None,
            Iface,
            Peer,
        }
        let mut sec = Sec::None;
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            if line.eq_ignore_ascii_case("[interface]") {
                sec = Sec::Iface;
                continue;
            }
            if line.eq_ignore_ascii_case("[peer]") {
                c.peers.push(Vec::new());
                sec = Sec::Peer;
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {raw:?} is not key = value"))?;
            let kv = (k.trim().to_string(), v.trim().to_string());
            match sec {
                Sec::Iface => c.interface.push(kv),
                Sec::Peer => c.peers.last_mut().unwrap().push(kv),
                Sec::None => return Err(format!("{raw:?} outside a section")),
            }
        }
        if c.peers.is_empty() {
            return Err("no [Peer] section".into());
        }
        Ok(c)
    }

    fn get<'a>(list: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        list.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Values of an `[Interface]` key (comma-separated values split).
    pub fn iface(&self, key: &str) -> Vec<&str> {
        Self::get(&self.interface, key)
    }

    /// Values of a key of the first `[Peer]`.
    pub fn peer(&self, key: &str) -> Vec<&str> {
        Self::get(&self.peers[0], key)
    }

    /// The config for `wg setconf`: the same keys minus the wg-quick-only ones.
    pub fn setconf_text(&self) -> String {
        let keep = |list: &[(String, String)], out: &mut String| {
            for (k, v) in list {
                if !WG_QUICK_ONLY.contains(&k.to_ascii_lowercase().as_str()) {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        };
        let mut s = String::from("[Interface]\n");
        keep(&self.interface, &mut s);
        for p in &self.peers {
            s.push_str("\n[Peer]\n");
            keep(p, &mut s);
        }
        s
    }
}

/// A wireguard-go interface in a laptop namespace.
pub struct WgClient {
    /// Interface name (unique host-wide).
    pub ifname: String,
    /// PID of its wireguard-go.
    pub pid: u32,
    /// The client file it was configured from.
    pub conf: ClientConf,
    /// The client's public key (from the file's PrivateKey).
    pub public_key: String,
}

impl WgClient {
    /// The tunnel address (without prefix length).
    pub fn address(&self) -> String {
        self.conf.iface("Address")[0]
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }
}

/// The public key of a base64 private key (`wg pubkey`).
pub fn wg_pubkey(private: &str) -> String {
    let out = run_cmd(
        Command::new("wg").arg("pubkey"),
        Some(format!("{private}\n").as_bytes()),
        Duration::from_secs(5),
    )
    .expect_ok();
    out.stdout.trim().to_string()
}

/// Starts wireguard-go in `ns` (log in `logdir`) and configures it from the
/// client file at `conf_path` exactly as written: `wg setconf` with the
/// wg-quick-only keys removed, then Address, MTU and one route per AllowedIPs
/// prefix with `ip`.
pub fn start_wg_client(ns: &Netns, conf_path: &Path, logdir: &Path) -> WgClient {
    let conf = ClientConf::load(conf_path);
    let ifname = unique_ifname();
    let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    ns.remove_at_teardown(&sock);
    let log = logdir.join(format!("wireguard-go-{ifname}.log"));
    let pid = ns.spawn(
        &format!("wireguard-go {ifname}"),
        "wireguard-go",
        &["-f", &ifname],
        &[("LOG_LEVEL", "verbose")],
        &log,
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            sock.exists() && ns.try_ip(&format!("link show {ifname}")).ok()
        }),
        "wireguard-go {ifname} did not come up in {}:\n{}",
        ns.name,
        tail(&log, 50)
    );
    let setconf = conf.setconf_text();
    let out = ns.exec_input(
        "wg",
        &["setconf", &ifname, "/dev/stdin"],
        setconf.as_bytes(),
    );
    assert!(
        out.ok(),
        "wg setconf from {}: {out}\n{setconf}",
        conf_path.display()
    );
    for a in conf.iface("Address") {
        let a = if a.contains('/') {
            a.to_string()
        } else if a.contains(':') {
            format!("{a}/128")
        } else {
            format!("{a}/32")
        };
        ns.ip(&format!("addr add {a} dev {ifname}"));
    }
    if let Some(mtu) = conf.iface("MTU").first() {
        ns.ip(&format!("link set {ifname} mtu {mtu}"));
    }
    ns.ip(&format!("link set {ifname} up"));
    for p in &conf.peers {
        for prefix in ClientConf::get(p, "AllowedIPs") {
            ns.ip(&format!("route replace {prefix} dev {ifname}"));
        }
    }
    let public_key = wg_pubkey(conf.iface("PrivateKey")[0]);
    WgClient {
        ifname,
        pid,
        conf,
        public_key,
    }
}

// ---------------------------------------------------------------- topology --

/// laptop(s) 198.51.100.(10+k)/24 -- inet (bridge 198.51.100.1/24, 203.0.113.1/25)
/// -- home router nat (wan 203.0.113.2/25, lan 192.168.1.1/24, masquerade,
/// DNAT udp 51821, 500, 4500 -> 192.168.1.2) -- gw (eth0 192.168.1.2/24, lan0
/// 172.16.4.1/24) -- lan host 172.16.4.10/24 via 172.16.4.1.
///
/// With [`Topology::add_vgw`] also, as in shared/lab/lab.sh: inet (i-vgw
/// 203.0.113.129/25) -- vgw (wan 203.0.113.130/25, vpc0 10.0.0.1/16,
/// ip_forward on) -- vpc host 10.0.1.10/16 via 10.0.0.1.
///
/// Fields drop in declaration order: laptops first, the directory last.
pub struct Topology {
    /// Laptops (and other hosts on the internet bridge), in creation order.
    pub laptops: Vec<Netns>,
    /// The VPC host behind the VGW ([`Topology::add_vgw`]).
    pub vpc: Option<Netns>,
    /// The "AWS VGW" namespace ([`Topology::add_vgw`]).
    pub vgw: Option<Netns>,
    /// The LAN host behind the gateway.
    pub lan: Netns,
    /// The gateway namespace (where `ipieced` runs).
    pub gw: Netns,
    /// The home router with NAT.
    pub nat: Netns,
    /// The "internet" router.
    pub inet: Netns,
    /// Config files, client files and logs.
    pub dir: TempDir,
}

impl Topology {
    /// Builds the topology with `n_laptops` laptops. The gateway namespace
    /// gets no ip_forward: `ipieced` turns it on.
    pub fn new(n_laptops: usize) -> Topology {
        let dir = TempDir::new("topo");
        let inet = Netns::new("inet");
        let nat = Netns::new("nat");
        let gw = Netns::new("gw");
        let lan = Netns::new("lan");
        let mut t = Topology {
            laptops: Vec::new(),
            vpc: None,
            vgw: None,
            lan,
            gw,
            nat,
            inet,
            dir,
        };
        t.inet.sysctl("net.ipv4.ip_forward", "1");
        t.nat.sysctl("net.ipv4.ip_forward", "1");
        t.inet.ip("link add br0 type bridge");
        t.inet.ip("link set br0 up");
        t.inet.ip("addr add 198.51.100.1/24 dev br0");

        t.nat.veth("wan", &t.inet, "i-nat");
        t.inet.ip("addr add 203.0.113.1/25 dev i-nat");
        t.nat.ip("addr add 203.0.113.2/25 dev wan");
        t.nat.ip("route add default via 203.0.113.1");
        t.nat.veth("lan", &t.gw, "eth0");
        t.nat.ip("addr add 192.168.1.1/24 dev lan");
        t.gw.ip("addr add 192.168.1.2/24 dev eth0");
        t.gw.ip("route add default via 192.168.1.1");
        let nft = format!(
            "table ip iptnat {{\n\
             chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n\
               iifname \"wan\" udp dport {{ {WG_PORT}, 500, 4500 }} dnat to {GW_ETH0}; }}\n\
             chain post {{ type nat hook postrouting priority srcnat; policy accept;\n\
               oifname \"wan\" ip saddr 192.168.1.0/24 masquerade; }}\n\
             }}\n"
        );
        t.nat
            .exec_input("nft", &["-f", "-"], nft.as_bytes())
            .expect_ok();

        t.gw.veth("lan0", &t.lan, "eth0");
        t.gw.ip("addr add 172.16.4.1/24 dev lan0");
        t.lan.ip("addr add 172.16.4.10/24 dev eth0");
        t.lan.ip("route add default via 172.16.4.1");
        for _ in 0..n_laptops {
            t.add_host("lap");
        }
        t
    }

    /// Adds a host on the internet bridge (198.51.100.(10+k)/24, default via
    /// 198.51.100.1); returns its index in `laptops`.
    pub fn add_host(&mut self, role: &str) -> usize {
        let k = self.laptops.len();
        let ns = Netns::new(&format!("{role}{k}"));
        let port = format!("l{k}");
        ns.veth("eth0", &self.inet, &port);
        self.inet.ip(&format!("link set {port} master br0"));
        ns.ip(&format!("addr add 198.51.100.{}/24 dev eth0", 10 + k));
        ns.ip("route add default via 198.51.100.1");
        self.laptops.push(ns);
        k
    }

    /// The address of laptop `k` on the internet.
    pub fn laptop_addr(k: usize) -> String {
        format!("198.51.100.{}", 10 + k)
    }

    /// Adds the "AWS VGW" namespace (wan [`VGW_WAN`]/25 on the internet
    /// router, vpc0 10.0.0.1/16, ip_forward on) and the VPC host
    /// ([`VPC_HOST`]/16 via 10.0.0.1) behind it. No tunnel and no route to
    /// the LAN: whatever runs in `vgw` (charon, see [`strongswan`]) adds them.
    pub fn add_vgw(&mut self) {
        assert!(self.vgw.is_none(), "add_vgw called twice");
        let vgw = Netns::new("vgw");
        let vpc = Netns::new("vpc");
        vgw.sysctl("net.ipv4.ip_forward", "1");
        vgw.veth("wan", &self.inet, "i-vgw");
        self.inet.ip("addr add 203.0.113.129/25 dev i-vgw");
        vgw.ip(&format!("addr add {VGW_WAN}/25 dev wan"));
        vgw.ip("route add default via 203.0.113.129");
        vgw.veth("vpc0", &vpc, "eth0");
        vgw.ip("addr add 10.0.0.1/16 dev vpc0");
        vpc.ip(&format!("addr add {VPC_HOST}/16 dev eth0"));
        vpc.ip("route add default via 10.0.0.1");
        self.vgw = Some(vgw);
        self.vpc = Some(vpc);
    }

    /// [`Topology::new`] plus [`Topology::add_vgw`].
    pub fn with_vgw(n_laptops: usize) -> Topology {
        let mut t = Topology::new(n_laptops);
        t.add_vgw();
        t
    }

    /// The VGW namespace; panics without [`Topology::add_vgw`].
    pub fn vgw(&self) -> &Netns {
        self.vgw.as_ref().expect("topology built without add_vgw")
    }

    /// The VPC host namespace; panics without [`Topology::add_vgw`].
    pub fn vpc(&self) -> &Netns {
        self.vpc.as_ref().expect("topology built without add_vgw")
    }
}

// ------------------------------------------------------------ gateway files --

/// A gateway config directory made by `wgctl init`, with a unique control
/// socket and TUN name.
#[derive(Debug, Clone)]
pub struct GwConfig {
    /// The config directory.
    pub dir: PathBuf,
    /// `<dir>/gateway.toml`.
    pub path: PathBuf,
    /// gateway.control_socket.
    pub control_socket: PathBuf,
    /// gateway.tun_name (unique host-wide).
    pub tun: String,
}

/// Runs `wgctl --config <path> <args>` in the root namespace (for commands
/// that only touch files).
pub fn wgctl_at(path: &Path, args: &[&str]) -> Out {
    let mut v = vec!["--config", path.to_str().unwrap()];
    v.extend_from_slice(args);
    run_cmd(Command::new(WGCTL).args(&v), None, Duration::from_secs(20))
}

/// Sets `table.key` to a string value in a TOML file, keeping the rest.
pub fn toml_set_str(path: &Path, table: &str, key: &str, value: &str) {
    let text = fs::read_to_string(path).unwrap();
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{text}", path.display()));
    doc[table][key] = toml_edit::value(value);
    fs::write(path, doc.to_string()).unwrap();
}

impl GwConfig {
    /// `wgctl init --endpoint <endpoint>` into `dir`, then a unique
    /// control_socket (`<dir>/control.sock`) and tun_name.
    pub fn init(dir: &Path, endpoint: &str) -> GwConfig {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("gateway.toml");
        let out = wgctl_at(&path, &["init", "--endpoint", endpoint]);
        assert!(out.ok(), "wgctl init: {out}");
        assert!(
            path.exists(),
            "wgctl init wrote no {}: {out}",
            path.display()
        );
        let control_socket = dir.join("control.sock");
        let tun = unique_ifname();
        toml_set_str(
            &path,
            "gateway",
            "control_socket",
            control_socket.to_str().unwrap(),
        );
        toml_set_str(&path, "gateway", "tun_name", &tun);
        // The interfaces of [`Topology`]'s gateway, so that a daemon in a
        // namespace without routes (or with others) starts too; the
        // firewall tests remove the table to find them from the routes.
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("\n[firewall]\nwan_interface = \"eth0\"\nlan_interface = \"lan0\"\n");
        fs::write(&path, text).unwrap();
        GwConfig {
            dir: dir.to_path_buf(),
            path,
            control_socket,
            tun,
        }
    }

    /// The UAPI socket path of the gateway's TUN.
    pub fn uapi_socket(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/wireguard/{}.sock", self.tun))
    }

    /// `wgctl --config <path> <args>` inside `ns` (where the daemon runs).
    pub fn wgctl(&self, ns: &Netns, args: &[&str]) -> Out {
        let mut v = vec!["--config", self.path.to_str().unwrap()];
        v.extend_from_slice(args);
        ns.exec(WGCTL, &v)
    }

    /// `wgctl status --json`, parsed; panics if it fails.
    pub fn status_json(&self, ns: &Netns) -> serde_json::Value {
        let out = self.wgctl(ns, &["status", "--json"]);
        assert!(out.ok(), "wgctl status --json: {out}");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("wgctl status --json is not JSON ({e}): {out}"))
    }

    /// `wgctl add-peer <name> --output <dir>/<name>.conf [extra]`; returns the
    /// client file path. Panics if it fails.
    pub fn add_peer(&self, ns: &Netns, name: &str, extra: &[&str]) -> PathBuf {
        let conf = self.dir.join(format!("{name}.conf"));
        let mut args = vec!["add-peer", name, "--output", conf.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.wgctl(ns, &args);
        assert!(out.ok(), "wgctl add-peer {name}: {out}");
        assert!(conf.exists(), "add-peer wrote no {}: {out}", conf.display());
        conf
    }
}

/// A running `ipieced`.
pub struct Daemon {
    /// PID of ipieced.
    pub pid: u32,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `ipieced --config <cfg>` in `ns`, waits (10 s) for its control
/// socket to answer `wgctl status`, its UAPI socket and its TUN.
pub fn start_ipieced(ns: &Netns, cfg: &GwConfig) -> Daemon {
    start_ipieced_env(ns, cfg, &[])
}

/// [`start_ipieced`] with extra environment variables (AWS credentials).
pub fn start_ipieced_env(ns: &Netns, cfg: &GwConfig, envs: &[(&str, &str)]) -> Daemon {
    ns.remove_at_teardown(&cfg.uapi_socket());
    ns.remove_at_teardown(&cfg.control_socket);
    let log = cfg.dir.join(format!("ipieced-{}.log", cfg.tun));
    let rust_log = std::env::var("IPIECE_TEST_LOG").unwrap_or_else(|_| "info".into());
    let mut all = vec![
        ("IPIECE_LOG", rust_log.as_str()),
        ("RUST_BACKTRACE", "1"),
        ("NO_COLOR", "1"),
    ];
    all.extend_from_slice(envs);
    let pid = ns.spawn(
        "ipieced",
        IPIECED,
        &["--config", cfg.path.to_str().unwrap()],
        &all,
        &log,
    );
    let d = Daemon { pid, log };
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        if !ns.running(pid) {
            return false;
        }
        if !cfg.control_socket.exists() {
            last = "no control socket yet".into();
            return false;
        }
        let out = cfg.wgctl(ns, &["status"]);
        if !out.ok() {
            last = format!("{out}");
            return false;
        }
        if !cfg.uapi_socket().exists() {
            last = "no UAPI socket yet".into();
            return false;
        }
        ns.try_ip(&format!("link show {}", cfg.tun)).ok()
    });
    assert!(
        up,
        "ipieced did not come up in {} (running: {}, last: {last}):\n{}",
        ns.name,
        ns.running(pid),
        tail(&d.log, 100)
    );
    d
}

// ---------------------------------------------------------------------- moto --

/// The python of the moto venv: `IPIECE_MOTO_PYTHON`, else
/// `<target>/moto-venv/bin/python` (scripts/test.sh creates it).
pub fn moto_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("IPIECE_MOTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target = match std::env::var("CARGO_TARGET_DIR") {
        Ok(t) => PathBuf::from(t),
        // <target>/debug/deps/<test>-<hash>
        Err(_) => std::env::current_exe()
            .ok()?
            .parent()?
            .parent()?
            .parent()?
            .to_path_buf(),
    };
    let p = target.join("moto-venv/bin/python");
    p.exists().then_some(p)
}

/// Runs `f` on a thread that has entered the network namespace `ns` (its
/// sockets are the namespace's), and returns its result.
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::unix::io::AsRawFd;
            // SAFETY: setns on a valid descriptor affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

// ------------------------------------------------------------- status json --

/// The entry of `wgctl status --json` for peer `name` (`peers[]` by name).
pub fn status_peer<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json has no peers array: {status}"))
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
}

/// A u64 field of a status entry; panics naming the field if it is missing.
pub fn json_u64(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}

// ---------------------------------------------------------------- randomness --

/// A small xorshift PRNG; seeded from the OS and printed so that a failing run
/// can be repeated with `IPIECE_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    /// Seeds from `IPIECE_TEST_SEED` or the OS, printing the seed.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("IPIECE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                use rand_core::RngCore;
                rand_core::OsRng.next_u64() | 1
            });
        eprintln!("[harness] {what}: IPIECE_TEST_SEED={seed}");
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// Counts lines of `ip route` output in `ns` that mention `dev <ifname>`.
pub fn routes_via(ns: &Netns, ifname: &str) -> Vec<String> {
    let out = ns
        .exec("ip", &["route", "show", "table", "all"])
        .expect_ok();
    out.stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["dev", ifname])
        })
        .map(str::to_string)
        .collect()
}

/// Sends one raw request line to a control socket and returns the parsed
/// response line (5 s bound).
pub fn control_request(socket: &Path, request: &str) -> serde_json::Value {
    use std::io::BufRead;
    let mut s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut line)
        .unwrap_or_else(|e| {
            panic!(
                "reading the answer to {request} on {}: {e}",
                socket.display()
            )
        });
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("answer to {request} is not JSON ({e}): {line:?}"))
}

/// 1-based number of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
        + 1
}
