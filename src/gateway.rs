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
//! - anything for the remote prefixes (the AWS VPC) is counted as unrouted
//!   until an IPsec tunnel carries it, instead of bouncing through the kernel.

use crate::config::firewall::Zone;
use crate::config::{read_key_file, read_psk_file, Config, Key, StartAction};
use crate::firewall::{Evaluator, Policy, RuleCounter};
use crate::ike::IkeConfig;
use crate::ipsec::{SealOutcome, TunnelSettings, TunnelStatus, Tunnels};
use crate::wg::peers::ApplyReport;
use crate::wg::{AllowedIps, PeerSettings, PeerStatus, PeerTable, WgCounters};
use crate::wire::natt;
use boringtun::noise::Tunn;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// How often [`Gateway::tick`] wants to be called (STYLE.md: 100-250 ms).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// The gateway's UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPort {
    /// WireGuard (`wireguard.listen_port`, 51821 by default).
    WireGuard,
    /// IKE (500).
    Ike,
    /// NAT-T: IKE behind the non-ESP marker, and ESP in UDP (4500).
    NatT,
}

/// Where the core's output goes. Implementations must not block: a router
/// drops what it cannot send.
pub trait Io {
    /// Sends a UDP datagram from one of the gateway's ports.
    fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, datagram: &[u8]);
    /// Writes an IP packet to the TUN (towards the kernel and the LAN).
    fn write_tun(&mut self, packet: &[u8]);
}

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
            peers.push(PeerSettings {
                name: p.name.clone(),
                public_key: p.public_key,
                psk,
                allowed_ips: vec![IpNet::from(p.address)],
                // The laptop keeps its NAT mapping open (PersistentKeepalive
                // in its client config); the gateway answers, like a wg-quick
                // server, and sends no keepalives to endpoints that may be gone.
                keepalive: 0,
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
                source: format!("{t:?}"),
                name: t.name.clone(),
                ike: Arc::new(ike),
                remote: t.remote_address,
                local: t.local_address.or_else(|| route_source(t.remote_address)),
                priority: t.priority,
                initiate: t.start_action == StartAction::Initiate,
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
        })
    }
}

/// Gateway-level counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
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

    /// A UDP datagram arrived on the WireGuard port. `buf` is scratch space
    /// of at least 64 KiB + 32 bytes.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        buf: &mut [u8],
        io: &mut impl Io,
    ) {
        self.counters.udp_rx += 1;
        let Some(len) = self.peers.handle_datagram(from, data, buf, io) else {
            return;
        };
        let packet = &buf[..len];
        if let Some(dst) = Tunn::dst_address(packet) {
            if self.remote.lookup(dst).is_some() {
                // laptop -> VPC: straight into the tunnel, never via the kernel.
                if !self.firewall.allow(Zone::Wg, Zone::Aws, packet) {
                    return;
                }
                self.seal_into_tunnel(packet, io);
                return;
            }
        }
        self.counters.tun_tx += 1;
        io.write_tun(packet);
    }

    fn seal_into_tunnel(&mut self, packet: &[u8], io: &mut impl Io) {
        match self.ipsec.seal(packet, io) {
            SealOutcome::Sent => self.counters.esp_tx += 1,
            SealOutcome::NoTunnel | SealOutcome::Dropped => self.counters.remote_unrouted += 1,
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
                let packet = &data[inner];
                if self.firewall_blocks_vpc_to_laptop(packet) {
                    return;
                }
                if self.peers.handle_packet(packet, buf, io) {
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

    /// An IP packet was read from the TUN (the kernel routed it to us).
    pub fn handle_tun_packet(&mut self, packet: &[u8], buf: &mut [u8], io: &mut impl Io) {
        self.counters.tun_rx += 1;
        if self.peers.handle_packet(packet, buf, io) {
            return;
        }
        match Tunn::dst_address(packet) {
            Some(dst) if self.remote.lookup(dst).is_some() => self.seal_into_tunnel(packet, io),
            _ => self.counters.tun_no_route += 1,
        }
    }

    /// Runs timers; call every [`TICK`].
    pub fn tick(&mut self, now: Instant, wall: SystemTime, buf: &mut [u8], io: &mut impl Io) {
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
            tunnels: self.ipsec.status(now),
            aws: None,
            firewall: None,
        }
    }

    /// The IPsec tunnels' status alone.
    pub fn tunnel_status(&self, now: Instant) -> Vec<TunnelStatus> {
        self.ipsec.status(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{generate_private_key, public_key};
    use boringtun::noise::TunnResult;
    use boringtun::x25519::{PublicKey, StaticSecret};
    use pnet_packet::ipv4::{checksum, MutableIpv4Packet};

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
        }
    }

    fn peer(name: &str, key: &Key, ip: &str) -> PeerSettings {
        PeerSettings {
            name: name.into(),
            public_key: public_key(key),
            psk: None,
            allowed_ips: vec![format!("{ip}/32").parse().unwrap()],
            keepalive: 0,
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
                    self.gw
                        .handle_datagram(self.laptop.addr, &d, &mut self.buf, &mut wire);
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
        p.gw.handle_tun_packet(&reply, &mut p.buf, &mut wire);
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
            &ipv4("172.16.4.10", "172.16.60.77", b"?"),
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
            p.gw.handle_datagram(attacker, &d, &mut p.buf, &mut wire);
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
            p.gw.handle_datagram(p.laptop.addr, d, &mut p.buf, &mut wire);
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
            p.gw.handle_datagram(p.laptop.addr, d, &mut p.buf, &mut wire);
        }
        assert!(wire.tun.is_empty());
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
}
