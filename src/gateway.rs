//! The gateway core, sans-IO: it joins the WireGuard peers with the route
//! table. Inputs are UDP datagrams, packets read from the TUN, ticks and new
//! settings; outputs go through [`Io`] (datagrams to send, packets to write
//! to the TUN). It never reads a socket; `Tunn` alone reads the monotonic
//! clock inside boringtun.
//!
//! Packet paths (DESIGN.md):
//! - laptop -> LAN: datagram -> decapsulate -> allowed-IPs source check ->
//!   TUN (the kernel forwards to the LAN).
//! - LAN -> laptop: TUN -> destination lookup in allowed IPs -> encapsulate ->
//!   datagram to the peer's current endpoint.
//! - anything for the remote prefixes (the AWS VPC), from a laptop or from
//!   the TUN, goes to the IPsec tunnel that carries it ([`crate::ipsec`]),
//!   never back through the kernel; with no tunnel up it is counted as
//!   unrouted and dropped (answered with ICMP unreachable where allowed);
//! - ESP opened from a tunnel goes to the laptop that owns the destination,
//!   or to the TUN for the LAN.
//!
//! MSS and MTU on these paths (the kernel path has nft for it):
//! - a TCP SYN or SYN-ACK entering or leaving an IPsec tunnel announces at
//!   most `ipsec.tcp_mss`, one to or from a laptop at most the WireGuard MTU
//!   minus 40 ([`crate::wire::tcp_mss`]);
//! - an IPv4 packet too big for the tunnel (its inner MTU, derived from the
//!   negotiated ESP algorithm and [`OUTER_MTU`], capped by
//!   `ipsec.tunnel_mtu`) or for a laptop's tunnel (the WireGuard MTU) is
//!   fragmented before it is sealed (RFC 791), or, with Don't Fragment set,
//!   answered with ICMP "fragmentation needed" carrying that MTU back along
//!   the path it came (RFC 1191), at most [`ICMP_ERRORS_PER_TICK`] per tick
//!   (`Gateway::icmp_source` chooses its source address).

use crate::config::firewall::Zone;
use crate::config::{read_key_file, read_psk_file, Config, Key, StartAction};
use crate::firewall::{Evaluator, Policy, RuleCounter};
use crate::ike::IkeConfig;
use crate::ipsec::{SealOutcome, TunnelSettings, TunnelStatus, Tunnels};
use crate::output::{Io, OUTER_MTU};
use crate::wg::peers::ApplyReport;
use crate::wg::{AllowedIps, PeerSettings, PeerStatus, PeerTable, WgCounters};
use crate::wire::ipv4_frag::{self, Fit};
use crate::wire::natt;
use crate::wire::tcp_mss::{clamp_mss, Clamp};
use boringtun::noise::Tunn;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// How often [`Gateway::tick`] wants to be called (STYLE.md: 100-250 ms).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// ICMP errors the core sends per [`TICK`] at most (RFC 1812 4.3.2.8: a
/// router limits the rate of ICMP errors it sends).
pub const ICMP_ERRORS_PER_TICK: u32 = 10;

/// The IPv4 and TCP headers' bytes between an MTU and the MSS it allows.
const TCP_IPV4_HEADERS: u16 = 40;

/// The running configuration with its key material loaded.
#[derive(Clone)]
pub struct Settings {
    /// Gateway name.
    pub name: String,
    /// The interface's private key.
    pub private_key: Key,
    /// UDP port for WireGuard.
    pub listen_port: u16,
    /// TUN interface name.
    pub tun_name: String,
    /// Gateway address with the WireGuard subnet's length.
    pub address: IpNet,
    /// TUN MTU.
    pub mtu: u16,
    /// On-prem LAN prefixes (reached through the kernel).
    pub lan_prefixes: Vec<IpNet>,
    /// Remote prefixes (the VPC), reached through IPsec.
    pub remote_prefixes: Vec<IpNet>,
    /// Enabled peers.
    pub peers: Vec<PeerSettings>,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Enabled IPsec tunnels.
    pub tunnels: Vec<TunnelSettings>,
    /// The largest MSS a TCP SYN entering or leaving a tunnel announces
    /// (`ipsec.tcp_mss`).
    pub tcp_mss: u16,
    /// The cap on the tunnels' inner MTU (`ipsec.tunnel_mtu`); `None`: the
    /// MTU derived from the ESP algorithm alone.
    pub tunnel_mtu: Option<u16>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("private_key", &"(hidden)")
            .field("listen_port", &self.listen_port)
            .field("tun_name", &self.tun_name)
            .field("address", &self.address)
            .field("mtu", &self.mtu)
            .field("lan_prefixes", &self.lan_prefixes)
            .field("remote_prefixes", &self.remote_prefixes)
            .field("peers", &self.peers)
            .field("tcp_mss", &self.tcp_mss)
            .field("tunnel_mtu", &self.tunnel_mtu)
            .field(
                "tunnels",
                &self.tunnels.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A key file named by the config could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {source}")]
pub struct SettingsError {
    /// The config field naming the file, e.g. `peers[alice].psk_file`.
    pub field: String,
    /// What went wrong with it (names the file, never its content).
    #[source]
    pub source: crate::config::KeyFileError,
}

/// The source address the kernel would use towards `remote` (a connected
/// UDP socket sends nothing). IKE's NAT detection hashes our real address;
/// an unspecified one would look like a NAT.
fn route_source(remote: std::net::IpAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((remote, natt::IKE_PORT)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

impl Settings {
    /// Builds the running settings from a validated config, reading the
    /// key files it names. Disabled peers are left out.
    pub fn load(cfg: &Config) -> Result<Settings, SettingsError> {
        let private_key =
            read_key_file(&cfg.wireguard.private_key_file).map_err(|source| SettingsError {
                field: "wireguard.private_key_file".into(),
                source,
            })?;
        let mut peers = Vec::new();
        for p in cfg.peers.iter().filter(|p| p.enabled) {
            let psk = match &p.psk_file {
                Some(f) => Some(read_key_file(f).map_err(|source| SettingsError {
                    field: format!("peers[{}].psk_file", p.name),
                    source,
                })?),
                None => None,
            };
            let site = p.endpoint.is_some();
            peers.push(PeerSettings {
                name: p.name.clone(),
                public_key: p.public_key,
                psk,
                allowed_ips: vec![IpNet::from(p.address)],
                // A laptop keeps its NAT mapping open (PersistentKeepalive
                // in its client config); the gateway answers, like a wg-quick
                // server, and sends no keepalives to endpoints that may be
                // gone. A site peer is the gateway's to keep alive.
                keepalive: if site { p.keepalive } else { 0 },
                endpoint: p.endpoint.as_ref().and_then(|e| e.addr),
            });
        }
        let mut tunnels = Vec::new();
        for t in cfg.ipsec.tunnels.iter().filter(|t| t.enabled) {
            let psk = read_psk_file(&t.psk_file).map_err(|source| SettingsError {
                field: format!("ipsec.tunnels[{}].psk_file", t.name),
                source,
            })?;
            let mut ike = IkeConfig::new(t.local_id.clone(), psk);
            ike.remote_id = Some(t.remote_id.clone());
            ike.ike_proposals = t.ike_proposals.clone();
            ike.esp_proposals = t.esp_proposals.clone();
            ike.local_ts = t.local_ts.clone();
            ike.remote_ts = t.remote_ts.clone();
            ike.ike_lifetime = t.ike_lifetime;
            ike.child_lifetime = t.child_lifetime;
            ike.rekey_margin = t.rekey_margin;
            ike.rekey_fuzz_percent = t.rekey_fuzz;
            ike.dpd_interval = t.dpd_interval;
            ike.dpd_timeout = t.dpd_timeout;
            // The userspace data plane sends ESP in UDP only (no raw
            // socket for IP protocol 50), so encapsulation is always asked
            // for (RFC 7296 2.23 allows either side to force it).
            ike.force_encap = true;
            ike.keepalive_interval = cfg.ipsec.nat_keepalive;
            ike.replay_window = t.replay_window;
            ike.child_lifetime_bytes = t.child_lifetime_bytes;
            tunnels.push(TunnelSettings {
                // the probe keys apply without restarting the tunnel
                source: format!(
                    "{:?}",
                    crate::config::TunnelConfig {
                        probe_interval: std::time::Duration::ZERO,
                        probe_loss: 0,
                        probe_recover: 0,
                        probe_hold_down: std::time::Duration::ZERO,
                        ..t.clone()
                    }
                ),
                name: t.name.clone(),
                ike: Arc::new(ike),
                remote: t.remote_address,
                local: t.local_address.or_else(|| route_source(t.remote_address)),
                priority: t.priority,
                initiate: t.start_action == StartAction::Initiate,
                probe: match (t.local_inside(), t.remote_inside()) {
                    (Some(local), Some(remote)) if !t.probe_interval.is_zero() => {
                        Some(crate::ipsec::probe::ProbeSettings {
                            interval: t.probe_interval,
                            loss: t.probe_loss,
                            recover: t.probe_recover,
                            hold_down: t.probe_hold_down,
                            local,
                            remote,
                        })
                    }
                    _ => None,
                },
            });
        }
        Ok(Settings {
            tunnels,
            name: cfg.gateway.name.clone(),
            private_key,
            listen_port: cfg.wireguard.listen_port,
            tun_name: cfg.gateway.tun_name.clone(),
            address: cfg.wireguard.address,
            mtu: cfg.wireguard.mtu,
            lan_prefixes: cfg.gateway.lan_prefixes.clone(),
            remote_prefixes: cfg.wireguard.remote_prefixes.clone(),
            peers,
            control_socket: cfg.gateway.control_socket.clone(),
            tcp_mss: cfg.ipsec.tcp_mss,
            tunnel_mtu: cfg.ipsec.tunnel_mtu,
        })
    }
}

/// Gateway-level counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GatewayCounters {
    /// UDP datagrams received on the WireGuard port.
    pub udp_rx: u64,
    /// IP packets read from the TUN.
    pub tun_rx: u64,
    /// IP packets written to the TUN.
    pub tun_tx: u64,
    /// Packets for the remote prefixes with no IPsec tunnel to carry them.
    pub remote_unrouted: u64,
    /// Packets sealed into an IPsec tunnel.
    pub esp_tx: u64,
    /// Packets opened from an IPsec tunnel.
    pub esp_rx: u64,
    /// Packets read from the TUN that no route claims.
    pub tun_no_route: u64,
    /// TCP SYNs whose MSS option was lowered.
    pub mss_clamped: u64,
    /// IPv4 packets too big for a tunnel or a laptop's tunnel, fragmented
    /// before sealing.
    pub fragmented: u64,
    /// ICMP "fragmentation needed" sent for packets too big with Don't
    /// Fragment set.
    pub frag_needed_sent: u64,
    /// Packets too big and dropped without an ICMP error (rate limit, an
    /// ICMP error or a later fragment, or a packet that cannot be
    /// fragmented).
    pub too_big_dropped: u64,
}

/// Everything `wgctl status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    /// Gateway name.
    pub name: String,
    /// The WireGuard interface's public key.
    pub public_key: String,
    /// UDP port.
    pub listen_port: u16,
    /// TUN interface.
    pub tun_name: String,
    /// Gateway address.
    pub address: IpNet,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Peers, by name.
    pub peers: Vec<PeerStatus>,
    /// WireGuard counters.
    pub wireguard: WgCounters,
    /// Gateway counters.
    pub counters: GatewayCounters,
    /// IPsec tunnels.
    #[serde(default)]
    pub tunnels: Vec<TunnelStatus>,
    /// The daemon's AWS sync and AWS's view of the tunnels, when
    /// `aws.sync_interval` is set (filled in by the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<crate::aws::sync::AwsStatus>,
    /// The firewall: interfaces, counters of the kernel ruleset and of the
    /// core, the last refusal (filled in by the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::firewall::FirewallStatus>,
    /// The LAN services (dnsmasq): state, restarts, listen addresses, DHCP
    /// leases, when `[lan.dhcp]` or `[dns]` is on (filled in by the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<crate::lan::LanStatus>,
}

/// The result of applying new settings.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// What changed among the peers.
    pub peers: ApplyReport,
    /// Changes that only a restart applies.
    pub restart_required: Vec<String>,
    /// IPsec tunnels started or restarted because their settings changed.
    #[serde(default)]
    pub tunnels_started: Vec<String>,
    /// IPsec tunnels removed.
    #[serde(default)]
    pub tunnels_removed: Vec<String>,
}

/// The sans-IO gateway.
pub struct Gateway {
    settings: Settings,
    peers: PeerTable,
    ipsec: Tunnels,
    remote: AllowedIps<()>,
    counters: GatewayCounters,
    started: Instant,
    /// ICMP errors left to send in this tick.
    icmp_budget: u32,
    firewall: Evaluator,
}

fn remote_table(prefixes: &[IpNet]) -> AllowedIps<()> {
    let mut t = AllowedIps::new();
    for p in prefixes {
        t.insert(*p, ());
    }
    t
}

impl Gateway {
    /// A gateway running `settings`, started at `now`.
    pub fn new(settings: Settings, now: Instant) -> Gateway {
        let mut peers = PeerTable::new(&settings.private_key);
        peers.apply(settings.peers.clone());
        Gateway {
            ipsec: Tunnels::new(settings.tunnels.clone(), now),
            remote: remote_table(&settings.remote_prefixes),
            peers,
            settings,
            counters: GatewayCounters::default(),
            started: now,
            icmp_budget: ICMP_ERRORS_PER_TICK,
            firewall: Evaluator::new(),
        }
    }

    /// Puts the firewall policy in force on the WireGuard <-> ESP path
    /// (until the first call, that path is not filtered).
    pub fn set_firewall(&mut self, policy: Arc<Policy>) {
        self.firewall.set_policy(policy);
    }

    /// The core's firewall counters.
    pub fn firewall_counters(&self) -> Vec<RuleCounter> {
        self.firewall.counters()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies new settings, changing only what differs. Sessions of
    /// unchanged peers are untouched. A new private key restarts every
    /// session. Fields bound at start (port, TUN, address, MTU, socket) are
    /// reported in `restart_required` and keep their running values.
    pub fn apply(&mut self, new: Settings, now: Instant, io: &mut impl Io) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        let old = &self.settings;
        let mut restart = |field: &str, changed: bool| {
            if changed {
                out.restart_required.push(field.to_string());
            }
        };
        restart("wireguard.listen_port", old.listen_port != new.listen_port);
        restart("gateway.tun_name", old.tun_name != new.tun_name);
        restart("wireguard.address", old.address != new.address);
        restart("wireguard.mtu", old.mtu != new.mtu);
        restart(
            "gateway.control_socket",
            old.control_socket != new.control_socket,
        );
        if old.private_key != new.private_key {
            tracing::warn!("gateway private key changed: every peer must handshake again");
            self.peers = PeerTable::new(&new.private_key);
        }
        out.peers = self.peers.apply(new.peers.clone());
        let (started, removed) = self.ipsec.apply(new.tunnels.clone(), now, io);
        out.tunnels_started = started;
        out.tunnels_removed = removed;
        self.remote = remote_table(&new.remote_prefixes);
        let keep = self.settings.clone();
        self.settings = Settings {
            listen_port: keep.listen_port,
            tun_name: keep.tun_name,
            address: keep.address,
            mtu: keep.mtu,
            control_socket: keep.control_socket,
            ..new
        };
        out
    }

    /// A UDP datagram arrived on the WireGuard port at `now`. `buf` is
    /// scratch space of at least 64 KiB + 32 bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        buf: &mut [u8],
        io: &mut impl Io,
    ) {
        self.counters.udp_rx += 1;
        let Some(len) = self.peers.handle_datagram(now, from, data, buf, io) else {
            return;
        };
        let packet = &mut buf[..len];
        self.clamp(packet, self.laptop_mss());
        if let Some(dst) = Tunn::dst_address(packet) {
            if self.remote.lookup(dst).is_some() {
                // laptop -> VPC: straight into the tunnel, never via the kernel.
                if !self.firewall.allow(Zone::Wg, Zone::Aws, packet) {
                    return;
                }
                self.clamp(packet, self.settings.tcp_mss);
                if let Some(icmp) = self.seal_into_tunnel(packet, io) {
                    self.send_back(&icmp, buf, io);
                }
                return;
            }
        }
        self.counters.tun_tx += 1;
        io.write_tun(packet);
    }

    /// The MSS a SYN to or from a laptop may announce: the WireGuard MTU
    /// minus the IPv4 and TCP headers.
    fn laptop_mss(&self) -> u16 {
        self.settings.mtu.saturating_sub(TCP_IPV4_HEADERS)
    }

    /// Lowers the MSS of a TCP SYN in `packet` to at most `mss` (for IPv4;
    /// 20 less for IPv6's longer header).
    fn clamp(&mut self, packet: &mut [u8], mss: u16) {
        let mss = if packet.first().map(|b| b >> 4) == Some(6) {
            mss.saturating_sub(20)
        } else {
            mss
        };
        if let Clamp::Lowered { .. } = clamp_mss(packet, mss) {
            self.counters.mss_clamped += 1;
        }
    }

    /// Seals `packet` into the carrying tunnel, fragmenting an IPv4 packet
    /// too big for it first. Returns the ICMP error to send back to the
    /// packet's source when it is too big and may not be fragmented.
    fn seal_into_tunnel(&mut self, packet: &[u8], io: &mut impl Io) -> Option<Vec<u8>> {
        let cap = self.settings.tunnel_mtu.map_or(usize::MAX, usize::from);
        if packet.len() <= cap && self.ipsec.sealed_fits(packet, OUTER_MTU) {
            self.seal(packet, io);
            return None;
        }
        let Some(mtu) = self.ipsec.inner_mtu(packet, OUTER_MTU).map(|m| m.min(cap)) else {
            self.seal(packet, io);
            return None;
        };
        match ipv4_frag::fit(packet, mtu) {
            Fit::Fits => {
                self.seal(packet, io);
                None
            }
            Fit::Fragment => {
                for f in self.fragments(packet, mtu) {
                    self.seal(&f, io);
                }
                None
            }
            Fit::DontFragment => self.frag_needed(packet, mtu),
        }
    }

    fn seal(&mut self, packet: &[u8], io: &mut impl Io) {
        match self.ipsec.seal(packet, io) {
            SealOutcome::Sent => self.counters.esp_tx += 1,
            SealOutcome::NoTunnel | SealOutcome::Dropped => self.counters.remote_unrouted += 1,
        }
    }

    /// Encapsulates `packet` for the laptop owning its destination,
    /// fragmenting an IPv4 packet bigger than the WireGuard MTU first.
    /// Returns the ICMP error for the source when it is too big and may not
    /// be fragmented.
    fn send_to_laptop(
        &mut self,
        packet: &[u8],
        buf: &mut [u8],
        io: &mut impl Io,
    ) -> Option<Vec<u8>> {
        let mtu = usize::from(self.settings.mtu);
        match ipv4_frag::fit(packet, mtu) {
            Fit::Fits => {
                self.peers.handle_packet(packet, buf, io);
                None
            }
            Fit::Fragment => {
                for f in self.fragments(packet, mtu) {
                    self.peers.handle_packet(&f, buf, io);
                }
                None
            }
            Fit::DontFragment => self.frag_needed(packet, mtu),
        }
    }

    /// `packet` cut into fragments of at most `mtu` bytes (none, counted as
    /// dropped, when it cannot be).
    fn fragments(&mut self, packet: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        match ipv4_frag::fragment(packet, mtu) {
            Ok(f) => {
                self.counters.fragmented += 1;
                f
            }
            Err(e) => {
                tracing::debug!(error = %e, len = packet.len(), mtu, "cannot fragment");
                self.counters.too_big_dropped += 1;
                Vec::new()
            }
        }
    }

    /// The ICMP "fragmentation needed" for `packet` with the next-hop `mtu`,
    /// unless the rate limit or RFC 1812's rules forbid it. Its source is
    /// [`Gateway::icmp_source`].
    fn frag_needed(&mut self, packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
        let icmp = self
            .icmp_source(packet)
            .filter(|_| self.icmp_budget > 0)
            .and_then(|src| {
                ipv4_frag::frag_needed(packet, u16::try_from(mtu).unwrap_or(u16::MAX), src)
            });
        match icmp {
            Some(icmp) => {
                self.icmp_budget -= 1;
                self.counters.frag_needed_sent += 1;
                Some(icmp)
            }
            None => {
                self.counters.too_big_dropped += 1;
                None
            }
        }
    }

    /// The source of an ICMP error about an IPv4 `packet`: the gateway's
    /// WireGuard address when the error goes to a laptop or into a tunnel.
    /// Towards the TUN (the LAN), the kernel would drop a packet carrying
    /// its own address as the source (a martian), so the error comes from
    /// the packet's destination instead, the far end of the path that is
    /// too small: the kernel routes that address to the TUN, so reverse-path
    /// filtering accepts it, and the LAN host's TCP matches the error by the
    /// quoted header, not by its source.
    fn icmp_source(&self, packet: &[u8]) -> Option<std::net::Ipv4Addr> {
        let addr = |at: std::ops::Range<usize>| {
            <[u8; 4]>::try_from(packet.get(at)?)
                .ok()
                .map(std::net::Ipv4Addr::from)
        };
        let (src, dst) = (addr(12..16)?, addr(16..20)?);
        let back_via_core =
            self.peers.routes(src.into()) || self.remote.lookup(src.into()).is_some();
        match self.settings.address.addr() {
            std::net::IpAddr::V4(gw) if back_via_core => Some(gw),
            _ if back_via_core => None,
            _ => Some(dst),
        }
    }

    /// Sends a packet the gateway made (an ICMP error) towards its
    /// destination: a laptop, the tunnel, or the TUN.
    fn send_back(&mut self, packet: &[u8], buf: &mut [u8], io: &mut impl Io) {
        match Tunn::dst_address(packet) {
            Some(dst) if self.peers.routes(dst) => {
                self.peers.handle_packet(packet, buf, io);
            }
            Some(dst) if self.remote.lookup(dst).is_some() => self.seal(packet, io),
            _ => {
                self.counters.tun_tx += 1;
                io.write_tun(packet);
            }
        }
    }

    /// An IKE datagram on UDP 500 (`local` is the address it arrived on).
    pub fn handle_ike(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        io: &mut impl Io,
    ) {
        self.ipsec.handle_ike(now, local, from, data, io);
    }

    /// A datagram on UDP 4500: NAT keepalive, IKE behind the non-ESP marker,
    /// or ESP (RFC 3948 2.2). ESP is opened in place in `data`; its inner
    /// packet goes to the WireGuard peer that owns the destination, or to
    /// the TUN (the LAN). `buf` is scratch space as for datagrams.
    pub fn handle_natt(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &mut [u8],
        buf: &mut [u8],
        io: &mut impl Io,
    ) {
        match natt::classify(data) {
            Ok(natt::Demux::Keepalive) => {}
            Ok(natt::Demux::Ike(msg)) => {
                let msg = msg.to_vec();
                self.ipsec.handle_ike(now, local, from, &msg, io);
            }
            Ok(natt::Demux::Esp(_)) => {
                let Some(inner) = self.ipsec.handle_esp(now, from, data) else {
                    return;
                };
                self.counters.esp_rx += 1;
                let packet = &mut data[inner];
                if self.firewall_blocks_vpc_to_laptop(packet) {
                    return;
                }
                self.clamp(packet, self.settings.tcp_mss);
                if Tunn::dst_address(packet).is_some_and(|d| self.peers.routes(d)) {
                    self.clamp(packet, self.laptop_mss());
                    if let Some(icmp) = self.send_to_laptop(packet, buf, io) {
                        self.send_back(&icmp, buf, io);
                    }
                    return;
                }
                self.counters.tun_tx += 1;
                io.write_tun(packet);
            }
            Err(_) => {}
        }
    }

    /// VPC -> laptop never enters the kernel: the core applies the policy.
    fn firewall_blocks_vpc_to_laptop(&mut self, packet: &[u8]) -> bool {
        let subnet = self.settings.address.trunc();
        match Tunn::dst_address(packet) {
            Some(dst) if subnet.contains(&dst) && dst != self.settings.address.addr() => {
                !self.firewall.allow(Zone::Aws, Zone::Wg, packet)
            }
            _ => false,
        }
    }

    /// An IP packet was read from the TUN (the kernel routed it to us). Its
    /// TCP MSS may be lowered in place.
    pub fn handle_tun_packet(&mut self, packet: &mut [u8], buf: &mut [u8], io: &mut impl Io) {
        self.counters.tun_rx += 1;
        match Tunn::dst_address(packet) {
            Some(dst) if self.peers.routes(dst) => {
                self.clamp(packet, self.laptop_mss());
                if let Some(icmp) = self.send_to_laptop(packet, buf, io) {
                    self.send_back(&icmp, buf, io);
                }
            }
            Some(dst) if self.remote.lookup(dst).is_some() => {
                self.clamp(packet, self.settings.tcp_mss);
                if let Some(icmp) = self.seal_into_tunnel(packet, io) {
                    self.send_back(&icmp, buf, io);
                }
            }
            _ => self.counters.tun_no_route += 1,
        }
    }

    /// Runs timers; call every [`TICK`].
    pub fn tick(&mut self, now: Instant, wall: SystemTime, buf: &mut [u8], io: &mut impl Io) {
        self.icmp_budget = ICMP_ERRORS_PER_TICK;
        self.peers.tick(now, wall, buf, io);
        self.ipsec.tick(now, io);
        self.firewall.tick(now);
    }

    /// Operator commands on a tunnel: `up`, `down`, `rekey`.
    pub fn tunnel_command(
        &mut self,
        name: &str,
        action: &str,
        now: Instant,
        io: &mut impl Io,
    ) -> Result<(), String> {
        match action {
            "up" => self.ipsec.up(name, now),
            "down" => self.ipsec.down(name, now, io),
            "rekey" => self.ipsec.rekey(name, now, io),
            other => Err(format!("unknown tunnel action {other:?} (up, down, rekey)")),
        }
    }

    /// Deletes the IPsec SAs (on shutdown).
    pub fn shutdown(&mut self, now: Instant, io: &mut impl Io) {
        self.ipsec.shutdown(now, io);
    }

    /// The status for `wgctl status` and the UAPI.
    pub fn status(&self, now: Instant, wall: SystemTime) -> GatewayStatus {
        GatewayStatus {
            name: self.settings.name.clone(),
            public_key: self.peers.public_key().to_string(),
            listen_port: self.settings.listen_port,
            tun_name: self.settings.tun_name.clone(),
            address: self.settings.address,
            uptime_secs: now.duration_since(self.started).as_secs(),
            peers: self.peers.status(wall),
            wireguard: self.peers.counters(),
            counters: self.counters,
            tunnels: self.tunnel_status_at(now, wall),
            aws: None,
            firewall: None,
            lan: None,
        }
    }

    /// [`Gateway::tunnel_status`] with the wall-clock time of each tunnel's
    /// last switch.
    pub fn tunnel_status_at(&self, now: Instant, wall: SystemTime) -> Vec<TunnelStatus> {
        let mut st = self.tunnel_status(now);
        let wall = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for t in &mut st {
            if let Some(s) = t.last_switch.as_mut() {
                s.at_unix = Some(wall.saturating_sub(s.secs_ago));
            }
        }
        st
    }

    /// The IPsec tunnels' status alone; each tunnel's inner MTU is capped
    /// by `ipsec.tunnel_mtu`, as the data path does.
    pub fn tunnel_status(&self, now: Instant) -> Vec<TunnelStatus> {
        let mut st = self.ipsec.status(now);
        if let Some(cap) = self.settings.tunnel_mtu {
            for t in &mut st {
                t.inner_mtu = t.inner_mtu.map(|m| m.min(usize::from(cap)));
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{generate_private_key, public_key};
    use crate::output::UdpPort;
    use boringtun::noise::TunnResult;
    use boringtun::x25519::{PublicKey, StaticSecret};
    use pnet_packet::ipv4::{checksum, MutableIpv4Packet};
    use std::time::Duration;

    #[derive(Default)]
    struct Wire {
        udp: Vec<(SocketAddr, Vec<u8>)>,
        tun: Vec<Vec<u8>>,
    }
    impl Io for Wire {
        fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, d: &[u8]) {
            assert_eq!(from, UdpPort::WireGuard);
            self.udp.push((dst, d.to_vec()));
        }
        fn write_tun(&mut self, p: &[u8]) {
            self.tun.push(p.to_vec());
        }
    }

    fn ipv4(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 20 + payload.len()];
        {
            let mut p = MutableIpv4Packet::new(&mut b).unwrap();
            p.set_version(4);
            p.set_header_length(5);
            p.set_total_length((20 + payload.len()) as u16);
            p.set_ttl(64);
            p.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocols::Udp);
            p.set_source(src.parse().unwrap());
            p.set_destination(dst.parse().unwrap());
            p.set_payload(payload);
            let c = checksum(&p.to_immutable());
            p.set_checksum(c);
        }
        b
    }

    struct Laptop {
        tunn: Tunn,
        addr: SocketAddr,
    }

    struct Pair {
        gw: Gateway,
        laptop: Laptop,
        buf: Vec<u8>,
        lbuf: Vec<u8>,
        /// Bytes of every datagram the laptop sent and the gateway sent back.
        up_bytes: u64,
        down_bytes: u64,
        /// The clock the gateway is given.
        now: Instant,
    }

    fn settings(gw_key: &Key, peers: Vec<PeerSettings>) -> Settings {
        Settings {
            name: "t".into(),
            private_key: *gw_key,
            listen_port: 51821,
            tun_name: "ipt0".into(),
            address: "172.16.60.1/24".parse().unwrap(),
            mtu: 1420,
            lan_prefixes: vec!["172.16.4.0/24".parse().unwrap()],
            remote_prefixes: vec!["10.0.0.0/16".parse().unwrap()],
            peers,
            control_socket: "/tmp/x.sock".into(),
            tunnels: Vec::new(),
            tcp_mss: 1379,
            tunnel_mtu: None,
        }
    }

    fn peer(name: &str, key: &Key, ip: &str) -> PeerSettings {
        PeerSettings {
            name: name.into(),
            public_key: public_key(key),
            psk: None,
            allowed_ips: vec![format!("{ip}/32").parse().unwrap()],
            keepalive: 0,
            endpoint: None,
        }
    }

    fn pair() -> (Pair, Key, Key) {
        let gw_key = generate_private_key();
        let lap_key = generate_private_key();
        let gw = Gateway::new(
            settings(&gw_key, vec![peer("alice", &lap_key, "172.16.60.2")]),
            Instant::now(),
        );
        let tunn = Tunn::new(
            StaticSecret::from(lap_key.0),
            PublicKey::from(public_key(&gw_key).0),
            None,
            None,
            7,
            None,
        );
        (
            Pair {
                gw,
                laptop: Laptop {
                    tunn,
                    addr: "198.51.100.10:40000".parse().unwrap(),
                },
                buf: vec![0u8; 70000],
                lbuf: vec![0u8; 70000],
                up_bytes: 0,
                down_bytes: 0,
                now: Instant::now(),
            },
            gw_key,
            lap_key,
        )
    }

    impl Pair {
        /// The laptop sends `packet`; everything is exchanged until quiet.
        /// Returns what the gateway wrote to its TUN.
        fn laptop_sends(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
            let mut to_gw = Vec::new();
            if let TunnResult::WriteToNetwork(d) =
                self.laptop.tunn.encapsulate(packet, &mut self.lbuf)
            {
                to_gw.push(d.to_vec());
            }
            let mut tun_out = Vec::new();
            for _ in 0..10 {
                if to_gw.is_empty() {
                    break;
                }
                let mut wire = Wire::default();
                for d in to_gw.drain(..) {
                    self.up_bytes += d.len() as u64;
                    self.gw.handle_datagram(
                        self.now,
                        self.laptop.addr,
                        &d,
                        &mut self.buf,
                        &mut wire,
                    );
                }
                tun_out.extend(wire.tun);
                for (dst, d) in wire.udp {
                    self.down_bytes += d.len() as u64;
                    assert_eq!(
                        dst, self.laptop.addr,
                        "gateway answers the laptop's endpoint"
                    );
                    let mut r = self
                        .laptop
                        .tunn
                        .decapsulate(Some(dst.ip()), &d, &mut self.lbuf);
                    while let TunnResult::WriteToNetwork(x) = r {
                        to_gw.push(x.to_vec());
                        r = self.laptop.tunn.decapsulate(None, &[], &mut self.lbuf);
                    }
                    if d[0] == 3 {
                        // A cookie reply: retry at once with mac2 rather
                        // than after the 5 s REKEY_TIMEOUT.
                        if let TunnResult::WriteToNetwork(x) = self
                            .laptop
                            .tunn
                            .format_handshake_initiation(&mut self.lbuf, true)
                        {
                            to_gw.push(x.to_vec());
                        }
                    }
                }
            }
            tun_out
        }
    }

    #[test]
    fn laptop_packet_reaches_the_tun_after_handshake() {
        let (mut p, _, _) = pair();
        let pkt = ipv4("172.16.60.2", "172.16.4.10", b"hello");
        let out = p.laptop_sends(&pkt);
        assert_eq!(
            out,
            vec![pkt],
            "queued packet delivered once the handshake completes"
        );
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(st.peers[0].endpoint, Some(p.laptop.addr));
        assert_eq!(st.peers[0].rx_payload_bytes, out[0].len() as u64);
        // every authenticated datagram, handshakes included
        assert_eq!(st.peers[0].rx_bytes, p.up_bytes);
        assert!(p.up_bytes > 148 + out[0].len() as u64);
        assert_eq!(st.peers[0].tx_bytes, p.down_bytes);
        assert!(p.down_bytes >= 92, "at least the handshake response");
        assert_eq!(st.counters.tun_tx, 1);
    }

    #[test]
    fn spoofed_source_is_dropped() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let out = p.laptop_sends(&ipv4("172.16.60.9", "172.16.4.10", b"spoof"));
        assert!(out.is_empty());
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(st.peers[0].counters.rx_not_allowed, 1);
    }

    #[test]
    fn tun_packet_goes_to_the_peer_owning_the_destination() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let reply = ipv4("172.16.4.10", "172.16.60.2", b"pong");
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(&mut reply.clone(), &mut p.buf, &mut wire);
        assert_eq!(wire.udp.len(), 1);
        assert_eq!(wire.udp[0].0, p.laptop.addr);
        match p.laptop.tunn.decapsulate(None, &wire.udp[0].1, &mut p.lbuf) {
            TunnResult::WriteToTunnelV4(d, src) => {
                assert_eq!(d, &reply[..]);
                assert_eq!(src.to_string(), "172.16.4.10");
            }
            other => panic!("laptop could not decrypt: {other:?}"),
        }
        // Nobody owns 172.16.60.77: no datagram.
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(
            &mut ipv4("172.16.4.10", "172.16.60.77", b"?"),
            &mut p.buf,
            &mut wire,
        );
        assert!(wire.udp.is_empty());
    }

    #[test]
    fn remote_prefixes_are_not_bounced_to_the_tun() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let out = p.laptop_sends(&ipv4("172.16.60.2", "10.0.1.10", b"vpc"));
        assert!(out.is_empty());
        assert_eq!(
            p.gw.status(Instant::now(), SystemTime::now())
                .counters
                .remote_unrouted,
            1
        );
    }

    #[test]
    fn roaming_follows_the_authenticated_source() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        p.laptop.addr = "198.51.100.99:50000".parse().unwrap();
        let out = p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"y"));
        assert_eq!(out.len(), 1);
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(st.peers[0].endpoint, Some(p.laptop.addr));
    }

    #[test]
    fn garbage_does_not_move_the_endpoint_or_break_the_session() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let attacker: SocketAddr = "203.0.113.66:1234".parse().unwrap();
        let mut wire = Wire::default();
        let mut seed = 0x1234_5678u64;
        for len in 0..300usize {
            let mut d = vec![0u8; len];
            for b in d.iter_mut() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (seed >> 33) as u8;
            }
            if len >= 4 {
                d[0] = (len % 5) as u8; // types 0..4, including valid ones
                d[1..4].fill(0);
            }
            if len >= 8 && len % 2 == 0 {
                // aim at the live session's receiver index
                d[4..8].copy_from_slice(&((1u32 << 8) | 0x42).to_le_bytes());
            }
            p.gw.handle_datagram(Instant::now(), attacker, &d, &mut p.buf, &mut wire);
        }
        assert!(wire.tun.is_empty());
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(
            st.peers[0].endpoint,
            Some(p.laptop.addr),
            "endpoint unchanged"
        );
        let out = p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"still"));
        assert_eq!(out.len(), 1, "session still carries traffic");
    }

    #[test]
    fn reload_keeps_unchanged_sessions_and_cuts_removed_ones() {
        let (mut p, gw_key, lap_key) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let bob = generate_private_key();
        let before = p.gw.status(Instant::now(), SystemTime::now()).peers[0].clone();
        let out = p.gw.apply(
            settings(
                &gw_key,
                vec![
                    peer("alice", &lap_key, "172.16.60.2"),
                    peer("bob", &bob, "172.16.60.3"),
                ],
            ),
            Instant::now(),
            &mut Wire::default(),
        );
        assert_eq!(out.peers.added, vec!["bob".to_string()]);
        assert_eq!(out.peers.unchanged, 1);
        assert!(out.restart_required.is_empty());
        let after = p.gw.status(Instant::now(), SystemTime::now());
        let a = after.peers.iter().find(|x| x.name == "alice").unwrap();
        assert_eq!(a.rx_bytes, before.rx_bytes, "counters kept");
        assert!(a.session);
        // alice's session still decrypts without a new handshake
        let mut wire = Wire::default();
        let mut lb = vec![0u8; 2000];
        if let TunnResult::WriteToNetwork(d) = p
            .laptop
            .tunn
            .encapsulate(&ipv4("172.16.60.2", "172.16.4.10", b"z"), &mut lb)
        {
            p.gw.handle_datagram(Instant::now(), p.laptop.addr, d, &mut p.buf, &mut wire);
        }
        assert_eq!(wire.tun.len(), 1);
        assert!(wire.udp.is_empty(), "no handshake traffic");
        // removing alice cuts her at once
        let out = p.gw.apply(
            settings(&gw_key, vec![peer("bob", &bob, "172.16.60.3")]),
            Instant::now(),
            &mut Wire::default(),
        );
        assert_eq!(out.peers.removed, vec!["alice".to_string()]);
        let mut wire = Wire::default();
        if let TunnResult::WriteToNetwork(d) = p
            .laptop
            .tunn
            .encapsulate(&ipv4("172.16.60.2", "172.16.4.10", b"z"), &mut lb)
        {
            p.gw.handle_datagram(Instant::now(), p.laptop.addr, d, &mut p.buf, &mut wire);
        }
        assert!(wire.tun.is_empty());
    }

    /// An IPv4 TCP SYN from `src` to `dst` announcing `mss`, checksums right.
    fn syn(src: &str, dst: &str, mss: u16) -> Vec<u8> {
        use pnet_packet::tcp::{ipv4_checksum, MutableTcpPacket};
        let mut b = ipv4(src, dst, &[0u8; 24]);
        b[9] = 6;
        b[10..12].fill(0);
        let c = checksum(&pnet_packet::ipv4::Ipv4Packet::new(&b).unwrap());
        b[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = MutableTcpPacket::new(&mut b[20..]).unwrap();
        t.set_source(40000);
        t.set_destination(22);
        t.set_data_offset(6);
        t.set_flags(0x02);
        t.set_options(&[pnet_packet::tcp::TcpOption::mss(mss)]);
        let c = ipv4_checksum(
            &t.to_immutable(),
            &src.parse().unwrap(),
            &dst.parse().unwrap(),
        );
        t.set_checksum(c);
        b
    }

    /// The MSS a SYN announces, with its checksum verified.
    fn mss_of(b: &[u8]) -> u16 {
        use pnet_packet::tcp::{ipv4_checksum, TcpPacket};
        let ip = pnet_packet::ipv4::Ipv4Packet::new(b).unwrap();
        let t = TcpPacket::new(&b[20..]).unwrap();
        assert_eq!(
            ipv4_checksum(&t, &ip.get_source(), &ip.get_destination()),
            t.get_checksum(),
            "TCP checksum after clamping"
        );
        u16::from_be_bytes([b[42], b[43]])
    }

    #[test]
    fn syns_to_and_from_laptops_are_clamped_to_the_wireguard_mtu() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        // laptop -> LAN
        let out = p.laptop_sends(&syn("172.16.60.2", "172.16.4.10", 1460));
        assert_eq!(out.len(), 1);
        assert_eq!(mss_of(&out[0]), 1380, "WireGuard MTU 1420 - 40");
        // LAN -> laptop
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(
            &mut syn("172.16.4.10", "172.16.60.2", 1460),
            &mut p.buf,
            &mut wire,
        );
        match p.laptop.tunn.decapsulate(None, &wire.udp[0].1, &mut p.lbuf) {
            TunnResult::WriteToTunnelV4(d, _) => assert_eq!(mss_of(d), 1380),
            other => panic!("laptop could not decrypt: {other:?}"),
        }
        // a smaller MSS stays
        let out = p.laptop_sends(&syn("172.16.60.2", "172.16.4.10", 1200));
        assert_eq!(mss_of(&out[0]), 1200);
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(st.counters.mss_clamped, 2);
    }

    /// A 1500-byte IPv4 packet from the LAN for the laptop, with or without DF.
    fn big(df: bool) -> Vec<u8> {
        let mut b = ipv4("172.16.4.10", "172.16.60.2", &[7u8; 1480]);
        b[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        if df {
            b[6] = 0x40;
        }
        b[10..12].fill(0);
        let c = checksum(&pnet_packet::ipv4::Ipv4Packet::new(&b).unwrap());
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn packets_too_big_for_a_laptop_are_fragmented_or_answered_with_frag_needed() {
        let (mut p, _, _) = pair();
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        // without DF: two fragments, each within the WireGuard MTU
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(&mut big(false), &mut p.buf, &mut wire);
        assert_eq!(wire.udp.len(), 2);
        let mut data = Vec::new();
        for (_, d) in &wire.udp {
            match p.laptop.tunn.decapsulate(None, d, &mut p.lbuf) {
                TunnResult::WriteToTunnelV4(f, _) => {
                    assert!(f.len() <= 1420, "fragment of {} bytes", f.len());
                    data.extend_from_slice(&f[20..]);
                }
                other => panic!("laptop could not decrypt: {other:?}"),
            }
        }
        assert_eq!(data, vec![7u8; 1480]);
        // with DF: nothing for the laptop, an ICMP error back to the LAN host
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(&mut big(true), &mut p.buf, &mut wire);
        assert!(wire.udp.is_empty());
        assert_eq!(wire.tun.len(), 1);
        let icmp = &wire.tun[0];
        assert_eq!(
            &icmp[12..16],
            &[172, 16, 60, 2],
            "from the destination: the kernel drops its own address from the TUN"
        );
        assert_eq!(&icmp[16..20], &[172, 16, 4, 10], "to the sender");
        assert_eq!((icmp[20], icmp[21]), (3, 4), "fragmentation needed");
        assert_eq!(
            u16::from_be_bytes([icmp[26], icmp[27]]),
            1420,
            "next-hop MTU"
        );
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(
            (st.counters.fragmented, st.counters.frag_needed_sent),
            (1, 1)
        );
        // rate limit: at most ICMP_ERRORS_PER_TICK until the next tick
        let mut wire = Wire::default();
        for _ in 0..ICMP_ERRORS_PER_TICK + 5 {
            p.gw.handle_tun_packet(&mut big(true), &mut p.buf, &mut wire);
        }
        assert_eq!(wire.tun.len(), ICMP_ERRORS_PER_TICK as usize - 1);
        let st = p.gw.status(Instant::now(), SystemTime::now());
        assert_eq!(st.counters.too_big_dropped, 6);
        p.gw.tick(
            Instant::now(),
            SystemTime::now(),
            &mut p.buf,
            &mut Wire::default(),
        );
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(&mut big(true), &mut p.buf, &mut wire);
        assert_eq!(wire.tun.len(), 1, "budget restored by the tick");
    }

    #[test]
    fn mss_and_tunnel_mtu_apply_on_reload() {
        let (mut p, gw_key, lap_key) = pair();
        let mut s = settings(&gw_key, vec![peer("alice", &lap_key, "172.16.60.2")]);
        s.tcp_mss = 1300;
        s.tunnel_mtu = Some(1399);
        let out = p.gw.apply(s, Instant::now(), &mut Wire::default());
        assert!(out.restart_required.is_empty(), "{out:?}");
        assert_eq!(
            (p.gw.settings().tcp_mss, p.gw.settings().tunnel_mtu),
            (1300, Some(1399))
        );
    }

    #[test]
    fn bound_fields_need_a_restart() {
        let (mut p, gw_key, lap_key) = pair();
        let mut s = settings(&gw_key, vec![peer("alice", &lap_key, "172.16.60.2")]);
        s.listen_port = 4000;
        s.mtu = 1300;
        let out = p.gw.apply(s, Instant::now(), &mut Wire::default());
        assert_eq!(
            out.restart_required,
            vec!["wireguard.listen_port", "wireguard.mtu"]
        );
        assert_eq!(p.gw.settings().listen_port, 51821);
    }

    // ------------------------------------------------ hardening (issue 10) --

    /// WireGuard's mac1 (whitepaper 5.4.4): keyed BLAKE2s-128 over the
    /// message, the key a hash of the receiver's public key. Anyone with the
    /// gateway's public key (every client file holds it) can compute it.
    fn mac1(gw_public: &Key, msg: &[u8]) -> [u8; 16] {
        use blake2::digest::{Digest, FixedOutput, KeyInit, Update};
        let key: [u8; 32] = blake2::Blake2s256::new()
            .chain_update(b"mac1----")
            .chain_update(gw_public.0)
            .finalize()
            .into();
        let mut m = blake2::Blake2sMac::<blake2::digest::consts::U16>::new_from_slice(&key)
            .expect("32-byte key");
        Update::update(&mut m, msg);
        m.finalize_fixed().into()
    }

    /// A 148-byte initiation with a valid mac1 and garbage inside: it costs
    /// the gateway a DH before it fails, and counts towards its load.
    fn forged_initiation(gw_public: &Key, seed: u64) -> Vec<u8> {
        let mut m = vec![0u8; 148];
        m[0] = 1;
        let mut x = seed | 1;
        for b in m[4..116].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mac = mac1(gw_public, &m[..116]);
        m[116..132].copy_from_slice(&mac);
        m
    }

    /// A 92-byte response naming `receiver_idx`, mac1-valid, from nobody.
    fn forged_response(gw_public: &Key, receiver_idx: u32) -> Vec<u8> {
        let mut m = vec![0u8; 92];
        m[0] = 2;
        m[4..8].copy_from_slice(&0x5eed_u32.to_le_bytes());
        m[8..12].copy_from_slice(&receiver_idx.to_le_bytes());
        for (i, b) in m[12..60].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let mac = mac1(gw_public, &m[..60]);
        m[60..76].copy_from_slice(&mac);
        m
    }

    /// Sends forged initiations from `n` sources until the gateway answers
    /// with cookie replies (boringtun's global load check); returns how many
    /// cookie replies went out.
    fn load_gateway(gw: &mut Gateway, gw_public: &Key, now: Instant, buf: &mut [u8]) -> u64 {
        let mut wire = Wire::default();
        for i in 0..400u32 {
            let from = SocketAddr::from(([203, 0, 113, 100 + (i % 50) as u8], 30000));
            gw.handle_datagram(
                now,
                from,
                &forged_initiation(gw_public, i as u64),
                buf,
                &mut wire,
            );
        }
        wire.udp
            .iter()
            .filter(|(_, d)| d.len() == 64 && d[0] == 3)
            .count() as u64
    }

    #[test]
    fn forged_response_under_cookie_load_does_not_move_the_endpoint() {
        let (mut p, gw_key, lap_key) = pair();
        let gw_pub = public_key(&gw_key);
        // bob is configured but has no session: his packets wait in `Tunn`.
        let bob = generate_private_key();
        p.gw.apply(
            settings(
                &gw_key,
                vec![
                    peer("alice", &lap_key, "172.16.60.2"),
                    peer("bob", &bob, "172.16.60.3"),
                ],
            ),
            p.now,
            &mut Wire::default(),
        );
        assert_eq!(
            p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"))
                .len(),
            1
        );
        let mut queued = Wire::default();
        p.gw.handle_tun_packet(
            &mut ipv4("172.16.4.10", "172.16.60.3", b"for bob"),
            &mut p.buf,
            &mut queued,
        );
        assert!(queued.udp.is_empty(), "bob has no endpoint yet");

        let cookies = load_gateway(&mut p.gw, &gw_pub, p.now, &mut p.buf);
        assert!(
            cookies > 0,
            "the flood did not put the gateway under load (no cookie replies)"
        );

        // Forged responses naming alice's and bob's indices (1 and 2 in the
        // gateway's 24-bit index space), from an address that is neither's.
        let forger: SocketAddr = "203.0.113.66:4444".parse().unwrap();
        let mut wire = Wire::default();
        for idx in [1u32, 2] {
            for low in 0..4u32 {
                let r = forged_response(&gw_pub, (idx << 8) | low);
                p.gw.handle_datagram(p.now, forger, &r, &mut p.buf, &mut wire);
            }
        }
        let st = p.gw.status(p.now, SystemTime::now());
        let alice = st.peers.iter().find(|x| x.name == "alice").unwrap();
        let bobst = st.peers.iter().find(|x| x.name == "bob").unwrap();
        assert_eq!(
            alice.endpoint,
            Some(p.laptop.addr),
            "alice's endpoint moved"
        );
        assert_eq!(
            bobst.endpoint, None,
            "bob's endpoint was learned from a forgery"
        );
        for (dst, d) in &wire.udp {
            assert_eq!(*dst, forger);
            assert_eq!(
                (d.len(), d[0]),
                (64, 3),
                "only cookie replies may go to an unauthenticated source"
            );
        }

        // LAN -> alice still reaches alice; LAN -> bob goes nowhere.
        let mut wire = Wire::default();
        p.gw.handle_tun_packet(
            &mut ipv4("172.16.4.10", "172.16.60.2", b"pong"),
            &mut p.buf,
            &mut wire,
        );
        p.gw.handle_tun_packet(
            &mut ipv4("172.16.4.10", "172.16.60.3", b"bob?"),
            &mut p.buf,
            &mut wire,
        );
        assert_eq!(wire.udp.len(), 1, "{:?}", wire.udp);
        assert_eq!(wire.udp[0].0, p.laptop.addr);
        assert!(matches!(
            p.laptop.tunn.decapsulate(None, &wire.udp[0].1, &mut p.lbuf),
            TunnResult::WriteToTunnelV4(..)
        ));
        // ... and alice -> LAN flows.
        let out = p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"still"));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn cookie_reply_written_by_tunn_itself_proves_nothing() {
        // The gateway checks a handshake's MACs and load once before `Tunn`
        // does it again; when the load threshold is crossed between the
        // two, `Tunn` answers the forged response with a cookie reply
        // (`WriteToNetwork`), which must not count as authentication.
        let (mut p, gw_key, _) = pair();
        let gw_pub = public_key(&gw_key);
        p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"x"));
        let mut wire = Wire::default();
        // Each forged initiation is counted once (it dies in the DH that
        // looks for its key); the laptop's handshake was counted twice.
        let counted = 2;
        for i in 0..(crate::wg::peers::HANDSHAKE_RATE_LIMIT - counted - 1) {
            let from = SocketAddr::from(([203, 0, 113, 1 + (i % 200) as u8], 30000));
            p.gw.handle_datagram(
                p.now,
                from,
                &forged_initiation(&gw_pub, i),
                &mut p.buf,
                &mut wire,
            );
        }
        assert_eq!(
            p.gw.status(p.now, SystemTime::now()).wireguard.cookies_sent,
            0
        );
        let forger: SocketAddr = "203.0.113.250:4444".parse().unwrap();
        let mut wire = Wire::default();
        p.gw.handle_datagram(
            p.now,
            forger,
            &forged_response(&gw_pub, 1 << 8),
            &mut p.buf,
            &mut wire,
        );
        assert_eq!(
            wire.udp.iter().map(|(a, d)| (*a, d[0])).collect::<Vec<_>>(),
            vec![(forger, 3)],
            "Tunn's own cookie reply"
        );
        let st = p.gw.status(p.now, SystemTime::now());
        assert_eq!(st.peers[0].endpoint, Some(p.laptop.addr), "endpoint moved");
    }

    #[test]
    fn five_thousand_initiations_from_one_source_in_a_second_cost_at_most_25_dh() {
        let (mut p, gw_key, _) = pair();
        let gw_pub = public_key(&gw_key);
        let t0 = p.now;
        let flooder: SocketAddr = "192.0.2.77:5000".parse().unwrap();
        // 1. Without a cookie: boringtun's global check soon answers with
        //    cookie replies, and the per-source budget bounds the rest.
        let mut wire = Wire::default();
        let init = forged_initiation(&gw_pub, 42);
        for i in 0..5000u64 {
            let t = t0 + Duration::from_micros(i * 200);
            p.gw.handle_datagram(t, flooder, &init, &mut p.buf, &mut wire);
        }
        let c = p.gw.status(t0, SystemTime::now()).wireguard;
        assert!(
            c.rx_handshake_processed <= 25,
            "{} initiations reached X25519: {c:?}",
            c.rx_handshake_processed
        );
        assert_eq!(
            c.rx_handshake_processed + c.rx_handshake_limited + c.cookies_sent,
            5000,
            "{c:?}"
        );
        assert!(c.rx_handshake_limited > 0, "{c:?}");

        // 2. With a valid cookie (mac2) for its own address, which passes
        //    boringtun's global check every time: the per-source budget
        //    alone bounds the DH work.
        let attacker_key = generate_private_key();
        let mut a = Tunn::new(
            StaticSecret::from(attacker_key.0),
            PublicKey::from(gw_pub.0),
            None,
            None,
            99,
            None,
        );
        let mut abuf = vec![0u8; 2048];
        let first = match a.format_handshake_initiation(&mut abuf, false) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("{other:?}"),
        };
        let second = t0 + Duration::from_secs(2);
        let mut wire = Wire::default();
        p.gw.handle_datagram(second, flooder, &first, &mut p.buf, &mut wire);
        let cookie = wire
            .udp
            .iter()
            .find(|(_, d)| d[0] == 3)
            .map(|(_, d)| d.clone())
            .expect("still under load: a cookie reply");
        assert!(matches!(
            a.decapsulate(None, &cookie, &mut abuf),
            TunnResult::Done
        ));
        let with_mac2 = match a.format_handshake_initiation(&mut abuf, true) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("{other:?}"),
        };
        let before = p.gw.status(t0, SystemTime::now()).wireguard;
        let mut wire = Wire::default();
        for i in 0..5000u64 {
            let t = second + Duration::from_micros(i * 200);
            p.gw.handle_datagram(t, flooder, &with_mac2, &mut p.buf, &mut wire);
        }
        let c = p.gw.status(t0, SystemTime::now()).wireguard;
        let processed = c.rx_handshake_processed - before.rx_handshake_processed;
        assert_eq!(
            c.cookies_sent, before.cookies_sent,
            "mac2 is valid: no cookies"
        );
        assert!(
            (5..=26).contains(&processed),
            "{processed} of 5000 cookie-bearing initiations reached X25519: {c:?}"
        );
        assert_eq!(
            c.rx_handshake_limited - before.rx_handshake_limited,
            5000 - processed
        );

        // 3. Another source (alice) still completes a handshake meanwhile,
        //    under load, after one cookie round trip.
        p.now = second + Duration::from_millis(500);
        let out = p.laptop_sends(&ipv4("172.16.60.2", "172.16.4.10", b"in"));
        assert_eq!(out.len(), 1, "alice could not get through");
        let st = p.gw.status(p.now, SystemTime::now());
        assert_eq!(st.peers[0].endpoint, Some(p.laptop.addr));
    }
}
