//! The daemon's event loop: one task owns the [`Gateway`]; UDP, TUN, ticks,
//! control requests and signals are multiplexed with `select!`. Socket
//! reads are drained in batches; writes never block (a router drops what
//! it cannot send, and counts it).

use crate::aws::sync::{Monitor, SyncReport};
use crate::config::{ClientKeys, Config, ConfigErrors};
use crate::control::proto::{Request, Response, MAX_LINE};
use crate::control::uapi;
use crate::dataplane::firewall::{fill_kernel_counters, FirewallError, FirewallShell};
use crate::dataplane::kernel::{self, Routes};
use crate::dataplane::lan::{LanError, LanShell};
use crate::dataplane::metrics::{ListenError, MetricsShell, Scrape};
use crate::dataplane::tun::{TunIn, TunOut};
use crate::dataplane::udp;
use crate::gateway::{Gateway, GatewayStatus, Settings, TICK};
use crate::output::{Io, SendQueue, UdpPort, GSO_MAX_SEGMENTS};
use crate::wire::natt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UdpSocket, UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tun_rs::AsyncDevice;

/// Largest datagram or TUN packet handled.
const BUF: usize = 65536;
/// Packets drained from one socket before the loop looks at the others.
const BATCH: usize = 64;
/// How long a control client may take to send its request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A key file could not be used.
    #[error("{0}")]
    Settings(#[from] crate::gateway::SettingsError),
    /// The TUN device could not be created.
    #[error("cannot create TUN {name}: {source} (ipieced needs CAP_NET_ADMIN)")]
    Tun {
        /// Interface name.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// The WireGuard UDP port could not be bound.
    #[error("cannot bind UDP port {port}: {source}")]
    Udp {
        /// The port.
        port: u16,
        /// The error.
        source: io::Error,
    },
    /// A Unix socket could not be set up.
    #[error("{path}: {message}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// Signal handlers could not be installed.
    #[error("signals: {0}")]
    Signals(io::Error),
    /// The firewall could not be put in place (nothing is forwarded).
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallError),
    /// The metrics listener could not be bound.
    #[error("{0}")]
    Metrics(#[from] ListenError),
    /// The LAN services (dnsmasq) could not be started.
    #[error("LAN services: {0}")]
    Lan(#[from] LanError),
}

enum Ctl {
    Control(Request, oneshot::Sender<Response>),
    UapiGet(oneshot::Sender<String>),
}

/// The cores' output on the sockets and the TUN. Datagrams are queued
/// during one wake-up of the loop and sent at its end ([`ShellIo::flush`]),
/// runs of them in one system call each (UDP GSO, [`udp::send_run`]); so
/// are TUN packets, coalesced by the TUN's offload ([`tun::TunOut`]).
struct ShellIo<'a> {
    udp: &'a UdpSocket,
    ike: Option<&'a UdpSocket>,
    natt: Option<&'a UdpSocket>,
    tun: &'a AsyncDevice,
    queue: SendQueue,
    tun_out: TunOut,
    /// Datagrams per send: [`GSO_MAX_SEGMENTS`], or 1 once the kernel
    /// refused segmentation offload.
    gso_segments: usize,
    /// Datagrams and packets dropped on full buffers.
    drops: u64,
}

/// Queued datagrams (or TUN packets) that make the loop send before the
/// wake-up ends.
const QUEUE_DATAGRAMS: usize = 256;

impl ShellIo<'_> {
    /// Writes the queued TUN packets and sends the queued datagrams.
    fn flush(&mut self) {
        self.tun_out.flush(self.tun, &mut self.drops);
        if self.queue.is_empty() {
            return;
        }
        for run in self.queue.runs(self.gso_segments) {
            let sock = match run.port {
                UdpPort::WireGuard => Some(self.udp),
                UdpPort::Ike => self.ike,
                UdpPort::NatT => self.natt,
            };
            match sock {
                Some(s) => {
                    udp::send_run(s, &run, &mut self.gso_segments, &mut self.drops);
                }
                None => self.drops += run.count as u64,
            }
        }
        self.queue.clear();
    }
}

impl Io for ShellIo<'_> {
    fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, datagram: &[u8]) {
        self.queue.push(from, dst, datagram);
        if self.queue.len() >= QUEUE_DATAGRAMS {
            self.flush();
        }
    }
    fn write_tun(&mut self, packet: &[u8]) {
        self.tun_out.push(packet);
        if self.tun_out.len() >= QUEUE_DATAGRAMS {
            self.tun_out.flush(self.tun, &mut self.drops);
        }
    }
}

/// A Unix socket file we created and remove on exit.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds a Unix socket at `path` with mode 0600, refusing when another
/// process answers there and replacing a stale file otherwise. The socket
/// is never reachable by another user, not even for an instant (the UAPI
/// `get` returns key material): see [`bind_private`].
fn bind_unix(path: &Path) -> Result<(UnixListener, SocketFile), DaemonError> {
    let (l, guard) = bind_private(path)?;
    let err = |message: String| DaemonError::Socket {
        path: path.to_path_buf(),
        message,
    };
    l.set_nonblocking(true)
        .map_err(|e| err(format!("cannot make non-blocking: {e}")))?;
    let l = UnixListener::from_std(l).map_err(|e| err(format!("cannot register: {e}")))?;
    Ok((l, guard))
}

/// Binds the socket inside a fresh directory of mode 0700 next to `path`,
/// sets it to 0600 there, and renames it into place: whatever the umask,
/// the name `path` only ever designates a socket of mode 0600, and before
/// the rename nobody but root can traverse to it. (`chmod` after `bind`
/// would leave a window in which the socket has the umask's mode.)
fn bind_private(
    path: &Path,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), DaemonError> {
    let err = |message: String| DaemonError::Socket {
        path: path.to_path_buf(),
        message,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| err(format!("cannot create directory: {e}")))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(
                "another daemon is listening on this socket (is ipieced already running with this config?)".into(),
            ));
        }
        std::fs::remove_file(path).map_err(|e| err(format!("cannot remove stale socket: {e}")))?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| err("not a file name".into()))?;
    let staging = dir.join(format!(
        ".{}.{}.bind",
        name.to_string_lossy(),
        std::process::id()
    ));
    if staging.symlink_metadata().is_ok() {
        // Left over by a daemon that died with our PID.
        std::fs::remove_dir_all(&staging)
            .map_err(|e| err(format!("cannot remove {}: {e}", staging.display())))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| err(format!("cannot create {}: {e}", staging.display())))?;
    let result = bind_in(&staging, path);
    let _ = std::fs::remove_dir_all(&staging);
    result.map_err(err)
}

/// [`bind_private`]'s steps inside the private directory `staging`.
fn bind_in(
    staging: &Path,
    path: &Path,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), String> {
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set mode 0700 on {}: {e}", staging.display()))?;
    let tmp = staging.join("socket");
    let l =
        std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| format!("cannot bind: {e}"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set mode 0600: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot move the socket into place: {e}"))?;
    Ok((l, SocketFile(path.to_path_buf())))
}

async fn serve_control(mut stream: UnixStream, tx: mpsc::Sender<Ctl>) {
    let (r, mut w) = stream.split();
    let mut reader = BufReader::new(r.take(MAX_LINE as u64));
    let mut line = String::new();
    let resp = match tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let (otx, orx) = oneshot::channel();
                if tx.send(Ctl::Control(req, otx)).await.is_err() {
                    return;
                }
                match orx.await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
            },
        },
        _ => return,
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_default();
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}

async fn serve_uapi(mut stream: UnixStream, tx: mpsc::Sender<Ctl>) {
    let (r, mut w) = stream.split();
    let mut reader = BufReader::new(r.take(MAX_LINE as u64));
    loop {
        let mut first = String::new();
        match tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        // Read the rest of the request up to its blank line.
        loop {
            let mut l = String::new();
            match tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut l)).await {
                Ok(Ok(n)) if n > 0 && l.trim_end() != "" => continue,
                Ok(Ok(_)) => break,
                _ => return,
            }
        }
        let answer = match uapi::operation(&first) {
            uapi::Operation::Get => {
                let (otx, orx) = oneshot::channel();
                if tx.send(Ctl::UapiGet(otx)).await.is_err() {
                    return;
                }
                match orx.await {
                    Ok(s) => s,
                    Err(_) => return,
                }
            }
            uapi::Operation::Set => {
                tracing::warn!("UAPI set refused: edit the TOML file with wgctl and reload");
                "errno=1\n\n".to_string()
            }
            uapi::Operation::Invalid => "errno=22\n\n".to_string(),
        };
        if w.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    tx: mpsc::Sender<Ctl>,
    uapi: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    let tx = tx.clone();
                    if uapi {
                        tokio::spawn(serve_uapi(s, tx));
                    } else {
                        tokio::spawn(serve_control(s, tx));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept on a control socket failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Receives from `sock`, or waits forever when the port is not bound.
async fn recv_opt(sock: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Socket buffer size for the WireGuard port: bursts from many laptops must
/// not overflow the receive queue while the loop is busy (wireguard-go uses
/// 7 MiB). The `*FORCE` variants pass `net.core.rmem_max` with
/// CAP_NET_ADMIN; without it the plain option is capped by the kernel.
const SOCKET_BUFFER: usize = 7 << 20;

fn size_socket_buffers(udp: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(udp, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(udp, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(udp, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(udp, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// The shells beside the core that a reload reconfigures.
struct Services<'a> {
    aws: &'a mut AwsShell,
    fw: &'a mut FirewallShell,
    metrics: &'a mut MetricsShell,
    lan: &'a mut LanShell,
}

/// Re-reads the config and applies the difference; on any error the running
/// configuration stays and the error is returned for the caller. On success
/// the new configuration goes to the AWS sync task.
fn reload(
    path: &Path,
    gw: &mut Gateway,
    routes: &mut Routes,
    services: Services<'_>,
    io: &mut ShellIo<'_>,
) -> Response {
    let Services {
        aws,
        fw,
        metrics,
        lan,
    } = services;
    let cfg = match Config::load_with(path, ClientKeys::Skip) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload rejected, running configuration kept:\n{e}");
            fw.reload_refused(&format!(
                "reload rejected, running configuration kept:\n{e}"
            ));
            return Response::Error {
                message: format!("reload rejected, running configuration kept:\n{e}"),
            };
        }
    };
    let settings = match Settings::load(&cfg) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("reload rejected, running configuration kept: {e}");
            tracing::error!("{message}");
            fw.reload_refused(&message);
            return Response::Error { message };
        }
    };
    let policy = match fw.reload(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let message = format!("reload rejected, running configuration and firewall kept: {e}");
            tracing::error!("{message}");
            return Response::Error { message };
        }
    };
    gw.set_firewall(policy);
    aws.configure(&cfg);
    metrics.configure(cfg.metrics.listen);
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    lan.reload(&cfg);
    let remote = settings.remote_prefixes.clone();
    let outcome = gw.apply(settings, Instant::now(), io);
    for e in routes.sync(&remote) {
        tracing::warn!(error = %e, "route update");
    }
    for f in &outcome.restart_required {
        tracing::warn!(field = %f, "changed in the file; restart ipieced to apply it");
    }
    let p = &outcome.peers;
    tracing::info!(
        added = ?p.added, removed = ?p.removed, restarted = ?p.restarted,
        updated = ?p.updated, unchanged = p.unchanged,
        tunnels_started = ?outcome.tunnels_started, tunnels_removed = ?outcome.tunnels_removed,
        "configuration reloaded"
    );
    Response::Reloaded(outcome)
}

/// The main loop's side of the AWS sync: the running configuration for the
/// sync task, and the [`Monitor`] of its reports.
struct AwsShell {
    config: watch::Sender<Config>,
    monitor: Option<Monitor>,
}

impl AwsShell {
    /// Hands `cfg` to the sync task; keeps the monitor while the synced
    /// connection and interval stay the same.
    fn configure(&mut self, cfg: &Config) {
        let want = cfg
            .aws
            .as_ref()
            .and_then(|a| a.sync_interval.map(|i| (a, i)));
        self.monitor = match (want, self.monitor.take()) {
            (Some((a, i)), Some(m)) if m.is_for(&a.vpn_connection_id, &a.region, i) => Some(m),
            (Some((a, i)), _) => Some(Monitor::new(&a.vpn_connection_id, &a.region, i)),
            (None, _) => None,
        };
        self.config.send_replace(cfg.clone());
    }

    /// The status with the AWS and firewall parts filled in.
    fn status(&self, gw: &Gateway, fw: &FirewallShell, lan: &LanShell) -> GatewayStatus {
        let now = Instant::now();
        let mut st = gw.status(now, SystemTime::now());
        st.aws = self.monitor.as_ref().map(|m| m.status(now, &st.tunnels));
        st.firewall = Some(fw.status(gw.firewall_counters()));
        st.lan = lan.status();
        st
    }
}

/// Runs the daemon with the validated `cfg` read from `path` until SIGTERM
/// or SIGINT; the TUN, its routes, the sockets and dnsmasq are gone on
/// return. `state_dir` holds dnsmasq's files (configuration, hosts, leases).
pub async fn run(path: PathBuf, cfg: Config, state_dir: PathBuf) -> Result<(), DaemonError> {
    let settings = Settings::load(&cfg)?;
    // The firewall is in the kernel before anything is forwarded, and stays
    // there when ipieced stops or dies: the box never forwards unfiltered.
    crate::dataplane::lan::preflight(&cfg)?;
    let mut fw = FirewallShell::start(&cfg)?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let udp = UdpSocket::bind(("0.0.0.0", settings.listen_port))
        .await
        .map_err(|source| DaemonError::Udp {
            port: settings.listen_port,
            source,
        })?;
    size_socket_buffers(&udp);
    // IKE and NAT-T. Without tunnels a failure to bind is only a warning
    // (another IKE daemon may own the ports on a WireGuard-only gateway).
    let need_ipsec = !settings.tunnels.is_empty();
    let bind_ike = |port: u16| async move {
        match UdpSocket::bind(("0.0.0.0", port)).await {
            Ok(s) => {
                size_socket_buffers(&s);
                Ok(Some(s))
            }
            Err(source) if need_ipsec => Err(DaemonError::Udp { port, source }),
            Err(e) => {
                tracing::warn!(port, error = %e, "cannot bind the IKE port; IPsec tunnels added later need a restart");
                Ok(None)
            }
        }
    };
    let ike_sock = bind_ike(natt::IKE_PORT).await?;
    let natt_sock = bind_ike(natt::NATT_PORT).await?;
    let (control, _control_file) = bind_unix(&settings.control_socket)?;
    let (uapi_l, _uapi_file) = bind_unix(&uapi::socket_path(&settings.tun_name))?;
    let (scrape_tx, mut scrapes) = mpsc::channel::<Scrape>(8);
    let mut metrics = MetricsShell::start(cfg.metrics.listen, scrape_tx)?;
    let tun = kernel::create_tun(&settings.tun_name, settings.address, settings.mtu).map_err(
        |source| DaemonError::Tun {
            name: settings.tun_name.clone(),
            source,
        },
    )?;
    let mut tun_in = TunIn::new(settings.mtu);
    let mut routes = Routes::new(&settings.tun_name);
    for e in routes.sync(&settings.remote_prefixes) {
        tracing::warn!(error = %e, "route install");
    }
    // dnsmasq listens on the LAN and WireGuard addresses: the TUN is up.
    let wan = fw.applied.interfaces.as_ref().map(|i| i.wan.clone());
    let mut lan = LanShell::start(&cfg, &state_dir, wan)?;
    match kernel::enable_ipv4_forwarding() {
        Ok(true) => tracing::info!("IPv4 forwarding enabled"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot enable IPv4 forwarding"),
    }

    let (tx, mut rx) = mpsc::channel::<Ctl>(64);
    let control_task = accept_loop(control, tx.clone(), false);
    let uapi_task = accept_loop(uapi_l, tx, true);

    let (aws_config, aws_config_rx) = watch::channel(cfg.clone());
    let (aws_tx, mut aws_reports) = mpsc::channel::<SyncReport>(4);
    let aws_task = tokio::spawn(crate::dataplane::aws::run(aws_config_rx, aws_tx));
    let mut aws = AwsShell {
        config: aws_config,
        monitor: None,
    };
    aws.configure(&cfg);
    let mut aws_check = tokio::time::interval(Duration::from_secs(1));
    aws_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut gw = Gateway::new(settings, Instant::now());
    gw.set_firewall(fw.policy.clone());
    let st = gw.status(Instant::now(), SystemTime::now());
    tracing::info!(
        gateway = %st.name, tun = %st.tun_name, address = %st.address,
        port = st.listen_port, public_key = %st.public_key, peers = st.peers.len(),
        "ipieced running"
    );

    let mut udp_buf = vec![0u8; BUF];
    let mut ike_buf = vec![0u8; BUF];
    let mut natt_buf = vec![0u8; BUF];
    let mut work = vec![0u8; BUF + 256];
    // The cores' output, for the whole run: the sockets, the TUN, and the
    // count of what full buffers dropped.
    let mut io = ShellIo {
        udp: &udp,
        ike: ike_sock.as_ref(),
        natt: natt_sock.as_ref(),
        tun: &tun,
        queue: SendQueue::default(),
        tun_out: TunOut::default(),
        gso_segments: if udp::gso_supported(&udp) {
            GSO_MAX_SEGMENTS
        } else {
            1
        },
        drops: 0,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            r = udp.recv_from(&mut udp_buf) => {
                let mut next = Some(r);
                let mut n = 0;
                while let Some(r) = next.take() {
                    match r {
                        Ok((len, from)) => {
                            gw.handle_datagram(Instant::now(), from, &udp_buf[..len], &mut work, &mut io);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => { tracing::debug!(error = %e, "udp recv"); break; }
                    }
                    n += 1;
                    if n < BATCH { next = Some(udp.try_recv_from(&mut udp_buf)); }
                }
            }
            r = tun_in.recv(&tun) => {
                let mut next = Some(r);
                let mut n = 0;
                while let Some(r) = next.take() {
                    match r {
                        Ok(count) => {
                            for i in 0..count {
                                gw.handle_tun_packet(tun_in.packet(i), &mut work, &mut io);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => { tracing::warn!(error = %e, "tun recv"); break; }
                    }
                    n += 1;
                    if n < BATCH { next = Some(tun_in.try_recv(&tun)); }
                }
            }
            r = recv_opt(ike_sock.as_ref(), &mut ike_buf) => {
                if let Ok((len, from)) = r {
                    let local = ike_sock.as_ref().and_then(|s| s.local_addr().ok()).unwrap_or(SocketAddr::from(([0, 0, 0, 0], natt::IKE_PORT)));
                    gw.handle_ike(Instant::now(), local, from, &ike_buf[..len], &mut io);
                }
            }
            r = recv_opt(natt_sock.as_ref(), &mut natt_buf) => {
                let mut next = Some(r);
                let mut n = 0;
                let now = Instant::now();
                let local = natt_sock.as_ref().and_then(|s| s.local_addr().ok()).unwrap_or(SocketAddr::from(([0, 0, 0, 0], natt::NATT_PORT)));
                while let Some(r) = next.take() {
                    match r {
                        Ok((len, from)) => {
                            gw.handle_natt(now, local, from, &mut natt_buf[..len], &mut work, &mut io);
                        }
                        Err(_) => break,
                    }
                    n += 1;
                    if n < BATCH {
                        if let Some(s) = natt_sock.as_ref() { next = Some(s.try_recv_from(&mut natt_buf)); }
                    }
                }
            }
            _ = tick.tick() => {
                gw.tick(Instant::now(), SystemTime::now(), &mut work, &mut io);
            }
            Some(msg) = rx.recv() => match msg {
                Ctl::Control(Request::Status, reply) => {
                    // The kernel's counters come from `nft`: read them off
                    // the event loop, which keeps forwarding meanwhile.
                    let mut st = aws.status(&gw, &fw, &lan);
                    tokio::task::spawn_blocking(move || {
                        if let Some(f) = st.firewall.as_mut() {
                            fill_kernel_counters(f);
                        }
                        let _ = reply.send(Response::Status(Box::new(st)));
                    });
                }
                Ctl::Control(Request::Firewall, reply) => {
                    let ruleset = fw.applied.text.clone();
                    let mut status = fw.status(gw.firewall_counters());
                    tokio::task::spawn_blocking(move || {
                        fill_kernel_counters(&mut status);
                        let _ = reply.send(Response::Firewall { ruleset, status: Box::new(status) });
                    });
                }
                Ctl::Control(Request::Reload, reply) => {
                    let _ = reply.send(reload(&path, &mut gw, &mut routes, Services { aws: &mut aws, fw: &mut fw, metrics: &mut metrics, lan: &mut lan }, &mut io));
                }
                Ctl::Control(Request::Tunnel { name, action }, reply) => {
                    let r = gw.tunnel_command(&name, &action, Instant::now(), &mut io);
                    tracing::info!(tunnel = %name, %action, result = ?r, "operator tunnel command");
                    let _ = reply.send(match r {
                        Ok(()) => Response::Done { message: format!("tunnel {name}: {action} requested") },
                        Err(message) => Response::Error { message },
                    });
                }
                Ctl::UapiGet(reply) => {
                    let _ = reply.send(uapi::render_get(&gw, Instant::now(), SystemTime::now()));
                }
            },
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading {}", path.display());
                let _ = reload(&path, &mut gw, &mut routes, Services { aws: &mut aws, fw: &mut fw, metrics: &mut metrics, lan: &mut lan }, &mut io);
            }
            Some(scrape) = scrapes.recv() => {
                // The status path's snapshot; nft's counters and the
                // rendering off the event loop.
                let mut st = aws.status(&gw, &fw, &lan);
                let socket_full_drops = io.drops;
                tokio::task::spawn_blocking(move || {
                    if let Some(f) = st.firewall.as_mut() {
                        fill_kernel_counters(f);
                    }
                    let now_unix = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let snapshot = crate::metrics::Snapshot { status: &st, socket_full_drops, now_unix };
                    let _ = scrape.reply.send(crate::metrics::render(&snapshot, scrape.format));
                });
            }
            Some(report) = aws_reports.recv() => {
                if let Some(m) = aws.monitor.as_mut() {
                    m.on_report(Instant::now(), report);
                }
            }
            _ = aws_check.tick(), if aws.monitor.is_some() => {
                let now = Instant::now();
                let tunnels = gw.tunnel_status(now);
                if let Some(m) = aws.monitor.as_mut() {
                    for w in m.observe(now, &tunnels) {
                        tracing::warn!("{w}");
                    }
                }
            }
            ev = lan.next_event() => lan.on_event(ev),
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
        io.flush();
    }
    gw.shutdown(Instant::now(), &mut io);
    io.flush();
    let drops = io.drops;
    drop(metrics);
    lan.stop().await;
    control_task.abort();
    uapi_task.abort();
    aws_task.abort();
    for e in routes.clear() {
        tracing::warn!(error = %e, "route cleanup");
    }
    drop(tun);
    if drops > 0 {
        tracing::info!(
            drops,
            "packets dropped on full socket buffers during the run"
        );
    }
    tracing::info!("ipieced stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::unix::fs::MetadataExt;

    /// Set by [`sockets_appear_only_with_mode_0600_whatever_the_umask`] for
    /// the child run of [`bind_child`].
    const CHILD_ENV: &str = "IPIECE_TEST_BIND_CHILD";

    /// Runs only as the child of the test below (under umask 000): binds
    /// the socket named in the environment and leaves it in place.
    #[test]
    fn bind_child() {
        let Ok(path) = std::env::var(CHILD_ENV) else {
            return;
        };
        let path = PathBuf::from(path);
        // ... and one in a directory that does not exist yet.
        let other = path
            .parent()
            .unwrap()
            .with_file_name("new")
            .join("uapi.sock");
        for p in [&path, &other] {
            let (l, guard) = bind_private(p).expect("bind");
            std::mem::forget(guard);
            drop(l);
        }
    }

    #[test]
    fn sockets_appear_only_with_mode_0600_whatever_the_umask() {
        let base = std::env::temp_dir().join(format!("ipiece-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.join("run");
        let path = dir.join("control.sock");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        ino.add_watch(
            &dir,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ATTRIB,
        )
        .unwrap();

        // A child test process under umask 000 (umask is per process: the
        // other tests of this binary keep theirs).
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000 && exec \"$0\" --exact dataplane::run::tests::bind_child --nocapture")
            .arg(&exe)
            .env(CHILD_ENV, &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let meta = std::fs::symlink_metadata(&path).expect("socket in place");
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        assert_eq!(meta.mode() & 0o7777, 0o600, "final mode");
        let dmode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
        assert_eq!(
            dmode & 0o022,
            0,
            "parent {} is writable by others: {dmode:o}",
            dir.display()
        );

        let events = ino.read_events().unwrap_or_default();
        let name = std::ffi::OsStr::new("control.sock");
        let about: Vec<_> = events
            .iter()
            .filter(|e| e.name.as_deref() == Some(name))
            .map(|e| e.mask)
            .collect();
        assert!(
            about.iter().all(|m| !m.contains(AddWatchFlags::IN_CREATE)),
            "the socket was created in place (with the umask's mode until a chmod): {about:?}"
        );
        assert!(
            about.iter().all(|m| !m.contains(AddWatchFlags::IN_ATTRIB)),
            "the socket's mode was changed after it appeared: {about:?}"
        );
        assert!(
            about.iter().any(|m| m.contains(AddWatchFlags::IN_MOVED_TO)),
            "the socket never appeared: {events:?}"
        );
        // What else appeared in the directory meanwhile: only the private
        // staging directory, gone again.
        for e in &events {
            if e.name.as_deref() != Some(name) {
                assert!(e.mask.contains(AddWatchFlags::IN_ISDIR), "{e:?}");
            }
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // The directory the child had to create is not writable by others
        // either, and its socket is 0600 too.
        let other = base.join("new").join("uapi.sock");
        assert_eq!(std::fs::metadata(&other).unwrap().mode() & 0o7777, 0o600);
        let omode = std::fs::metadata(base.join("new")).unwrap().mode() & 0o7777;
        assert_eq!(omode & 0o022, 0, "created parent has mode {omode:o}");

        // Nobody listens on the child's socket any more: a new bind replaces
        // it, again 0600, and the guard removes it.
        let (_l, guard) = bind_private(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        drop(guard);
        assert!(!path.exists(), "the guard removes the socket");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
