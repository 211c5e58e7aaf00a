//! The WireGuard data path through the sans-IO core allocates nothing per
//! packet once warm (issue 13: "zero allocations per packet through the
//! core after warm-up, for WireGuard in/out"): a boringtun laptop and the
//! `Gateway` in memory, a counting global allocator around the calls that
//! carry data packets (`handle_datagram` laptop -> LAN, `handle_tun_packet`
//! LAN -> laptop). The laptop's own encryption and decryption happen outside
//! the counted calls. Allocations are counted per thread, so the test
//! harness's other threads do not disturb the count.

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipiece::config::{public_key, Key};
use ipiece::gateway::{Gateway, Settings};
use ipiece::output::{Io, UdpPort};
use ipiece::wg::PeerSettings;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

struct Counting;

thread_local! {
    /// Allocations made by this thread while counting is on.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches const-initialised thread-locals only (no allocation).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

const GW_KEY: [u8; 32] = [0x48; 32];
const LAPTOP_KEY: [u8; 32] = [0x50; 32];
const LAPTOP_IP: [u8; 4] = [172, 16, 60, 2];
const LAN_HOST: [u8; 4] = [172, 16, 4, 10];

fn laptop_addr() -> SocketAddr {
    "198.51.100.10:40000".parse().unwrap()
}

/// The output: copies into buffers kept from the last call (grown during
/// warm-up, never during the counted calls).
#[derive(Default)]
struct Out {
    udp: Vec<(SocketAddr, Vec<u8>)>,
    udp_used: usize,
    tun: Vec<Vec<u8>>,
    tun_used: usize,
}

impl Out {
    fn clear(&mut self) {
        self.udp_used = 0;
        self.tun_used = 0;
    }
    fn datagrams(&self) -> impl Iterator<Item = &(SocketAddr, Vec<u8>)> {
        self.udp[..self.udp_used].iter()
    }
    fn packets(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.tun[..self.tun_used].iter()
    }
}

impl Io for Out {
    fn send_udp(&mut self, _from: UdpPort, dst: SocketAddr, d: &[u8]) {
        if self.udp_used == self.udp.len() {
            self.udp.push((dst, Vec::with_capacity(2048)));
        }
        let slot = &mut self.udp[self.udp_used];
        slot.0 = dst;
        slot.1.clear();
        slot.1.extend_from_slice(d);
        self.udp_used += 1;
    }
    fn write_tun(&mut self, p: &[u8]) {
        if self.tun_used == self.tun.len() {
            self.tun.push(Vec::with_capacity(2048));
        }
        let slot = &mut self.tun[self.tun_used];
        slot.clear();
        slot.extend_from_slice(p);
        self.tun_used += 1;
    }
}

/// An IPv4/UDP packet of `payload` bytes (checksums zero: the core does not
/// check them).
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let len = 20 + 8 + payload;
    let mut b = vec![0u8; len];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&src);
    b[16..20].copy_from_slice(&dst);
    b[20..22].copy_from_slice(&5000u16.to_be_bytes());
    b[22..24].copy_from_slice(&6000u16.to_be_bytes());
    b[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    b
}

struct World {
    gw: Gateway,
    laptop: Tunn,
    now: Instant,
    work: Vec<u8>,
    lbuf: Vec<u8>,
    out: Out,
}

impl World {
    fn new() -> World {
        let gw_key = Key(GW_KEY);
        let now = Instant::now();
        let settings = Settings {
            name: "alloc".into(),
            private_key: gw_key,
            listen_port: 51821,
            tun_name: "alloc0".into(),
            address: "172.16.60.1/24".parse().unwrap(),
            mtu: 1420,
            lan_prefixes: vec!["172.16.4.0/24".parse().unwrap()],
            remote_prefixes: vec!["10.0.0.0/16".parse().unwrap()],
            peers: vec![PeerSettings {
                name: "alice".into(),
                public_key: public_key(&Key(LAPTOP_KEY)),
                psk: None,
                allowed_ips: vec!["172.16.60.2/32".parse().unwrap()],
                keepalive: 0,
                endpoint: None,
            }],
            control_socket: "/nonexistent/alloc.sock".into(),
            tunnels: Vec::new(),
            tcp_mss: 1379,
            tunnel_mtu: None,
        };
        World {
            gw: Gateway::new(settings, now),
            laptop: Tunn::new(
                StaticSecret::from(LAPTOP_KEY),
                PublicKey::from(public_key(&gw_key).0),
                None,
                None,
                7,
                None,
            ),
            now,
            work: vec![0u8; 70000],
            lbuf: vec![0u8; 70000],
            out: Out::default(),
        }
    }

    /// Hands the gateway's datagrams for the laptop to it; returns the IP
    /// packets it decrypted. Answers it writes go back to the gateway.
    fn laptop_receives(&mut self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut to_gw = Vec::new();
        let datagrams: Vec<Vec<u8>> = self
            .out
            .datagrams()
            .filter(|(dst, _)| *dst == laptop_addr())
            .map(|(_, d)| d.clone())
            .collect();
        for d in datagrams {
            let mut r = self.laptop.decapsulate(None, &d, &mut self.lbuf);
            loop {
                match r {
                    TunnResult::WriteToNetwork(x) => {
                        to_gw.push(x.to_vec());
                        r = self.laptop.decapsulate(None, &[], &mut self.lbuf);
                    }
                    TunnResult::WriteToTunnelV4(p, _) => {
                        got.push(p.to_vec());
                        break;
                    }
                    _ => break,
                }
            }
        }
        for d in to_gw {
            self.gateway_gets(&d);
        }
        got
    }

    fn gateway_gets(&mut self, d: &[u8]) {
        self.out.clear();
        self.gw
            .handle_datagram(self.now, laptop_addr(), d, &mut self.work, &mut self.out);
    }

    /// The laptop seals an IP packet (outside any count).
    fn laptop_seals(&mut self, p: &[u8]) -> Vec<u8> {
        match self.laptop.encapsulate(p, &mut self.lbuf) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("the laptop has no session: {other:?}"),
        }
    }

    /// The handshake, and traffic both ways until every buffer has grown.
    fn connect_and_warm_up(&mut self) {
        let init = match self
            .laptop
            .format_handshake_initiation(&mut self.lbuf, false)
        {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("no initiation: {other:?}"),
        };
        self.gateway_gets(&init);
        self.laptop_receives();
        for _ in 0..200 {
            self.laptop_to_lan(1200);
            self.lan_to_laptop(1200);
        }
    }

    /// One laptop -> LAN packet through the gateway; returns the
    /// allocations of the gateway's call.
    fn laptop_to_lan(&mut self, payload: usize) -> u64 {
        let p = ipv4(LAPTOP_IP, LAN_HOST, payload);
        let d = self.laptop_seals(&p);
        let n = allocations(|| self.gateway_gets(&d));
        let written: Vec<&Vec<u8>> = self.out.packets().collect();
        assert_eq!(written, vec![&p], "the packet reached the TUN unchanged");
        n
    }

    /// One LAN -> laptop packet through the gateway; returns the
    /// allocations of the gateway's call.
    fn lan_to_laptop(&mut self, payload: usize) -> u64 {
        let mut p = ipv4(LAN_HOST, LAPTOP_IP, payload);
        let sent = p.clone();
        self.out.clear();
        let (gw, work, out) = (&mut self.gw, &mut self.work, &mut self.out);
        let n = allocations(|| gw.handle_tun_packet(&mut p, work, out));
        assert_eq!(self.laptop_receives(), vec![sent], "the laptop got it");
        n
    }
}

#[test]
fn wireguard_packets_through_the_core_allocate_nothing_after_warm_up() {
    let mut w = World::new();
    w.connect_and_warm_up();
    let mut inbound = 0;
    let mut outbound = 0;
    for i in 0..1000 {
        // sizes from tiny to the MTU
        let payload = 16 + (i * 37) % 1350;
        inbound += w.laptop_to_lan(payload);
        outbound += w.lan_to_laptop(payload);
    }
    assert_eq!(
        (inbound, outbound),
        (0, 0),
        "allocations in 1000 packets laptop -> LAN and 1000 LAN -> laptop"
    );
}

/// The counter sees allocations at all (the test above cannot pass for
/// want of counting).
#[test]
fn the_counting_allocator_counts() {
    let n = allocations(|| {
        let v: Vec<u8> = Vec::with_capacity(100);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}
