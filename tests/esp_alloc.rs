//! The ESP data path allocates nothing per packet once warm (issue 13,
//! item 2): sealing reuses the caller's buffer, opening works in place.
//!
//! A counting global allocator (in this test binary only; the library and
//! the daemon keep the system allocator) counts the calling thread's
//! allocations while packets are sealed and opened, and so do memory
//! functions installed into aws-lc (`CRYPTO_set_mem_functions`), whose C
//! code allocates with its own `OPENSSL_malloc`, not through Rust:
//! - through [`ChildSa::seal`] / [`ChildSa::open`] for every ESP suite, with
//!   and without extended sequence numbers;
//! - through [`Tunnels::seal`] / [`Tunnels::handle_esp`] of two gateways
//!   that negotiated their CHILD SA over IKEv2 in memory (no sockets), both
//!   directions, AES-GCM and AES-CBC with HMAC-SHA2.
//!
//! Each case warms up first (the scratch buffer grows to the largest packet,
//! the crypto library initialises itself), then counts over many packets of
//! mixed lengths, and also checks that every packet opened to the bytes
//! sealed.

use ipiece::esp::ChildSa;
use ipiece::ike::crypto::{Encr, EspCipher, Integ, SecretBytes};
use ipiece::ike::proposal::{Proposal, Protocol};
use ipiece::ike::IkeConfig;
use ipiece::ipsec::{SealOutcome, TunnelSettings, TunnelState, Tunnels};
use ipiece::output::{Io, UdpPort};
use ipiece::wire::{natt, Identity};
use rand_core::OsRng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

/// The system allocator, counting this thread's allocations (tests run on
/// several threads; each counts only its own).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static C_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn count_one_in_c() {
    let _ = C_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe extern "C" fn lc_malloc(size: usize, _: *const c_char, _: c_int) -> *mut c_void {
    count_one_in_c();
    // SAFETY: plain malloc; aws-lc frees it with `lc_free` below.
    unsafe { libc::malloc(size) }
}

unsafe extern "C" fn lc_realloc(
    ptr: *mut c_void,
    size: usize,
    _: *const c_char,
    _: c_int,
) -> *mut c_void {
    count_one_in_c();
    // SAFETY: `ptr` came from `lc_malloc`/`lc_realloc` (installed before
    // aws-lc allocated anything) or is null.
    unsafe { libc::realloc(ptr, size) }
}

unsafe extern "C" fn lc_free(ptr: *mut c_void, _: *const c_char, _: c_int) {
    // SAFETY: as for `lc_realloc`.
    unsafe { libc::free(ptr) }
}

/// Routes aws-lc's allocations through the counting functions above. Must
/// run before aws-lc allocates anything in this process (aws-lc accepts
/// it only once): every test calls it first.
fn count_aws_lc_allocations() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three functions have the signatures aws-lc expects and
        // pair with each other; nothing in this process has called aws-lc
        // yet (every test calls this first, `Once` orders them).
        let ok = unsafe {
            aws_lc_sys::CRYPTO_set_mem_functions(Some(lc_malloc), Some(lc_realloc), Some(lc_free))
        };
        assert_eq!(ok, 1, "aws-lc refused the counting memory functions");
    });
}

// SAFETY: every call forwards to `System` with the caller's arguments
// unchanged; counting touches only a const-initialised thread-local `Cell`,
// which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations by this thread so far: through Rust's allocator, and by
/// aws-lc's C code.
fn allocations() -> (u64, u64) {
    (ALLOCATIONS.with(Cell::get), C_ALLOCATIONS.with(Cell::get))
}

/// Allocations between `before` and now.
fn since(before: (u64, u64)) -> (u64, u64) {
    let now = allocations();
    (now.0 - before.0, now.1 - before.1)
}

/// Inner packet lengths of the counted runs (all at most [`WARM_LEN`]).
const LENGTHS: [usize; 8] = [28, 40, 64, 100, 576, 1000, 1379, 1400];
/// The length the warm-up seals, the largest of the run.
const WARM_LEN: usize = 1400;
/// Packets per counted run.
const PACKETS: usize = 2000;

/// An IPv4/UDP packet of `len` bytes (at least 28) from `src` to `dst`
/// whose payload bytes depend on `tag`.
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, len: usize, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5001u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = tag.wrapping_add(i as u8);
    }
    p
}

fn suites() -> [(Encr, Option<Integ>); 6] {
    [
        (Encr::AesGcm16_128, None),
        (Encr::AesGcm16_256, None),
        (Encr::AesCbc128, Some(Integ::HmacSha1_96)),
        (Encr::AesCbc128, Some(Integ::HmacSha256_128)),
        (Encr::AesCbc256, Some(Integ::HmacSha384_192)),
        (Encr::AesCbc256, Some(Integ::HmacSha512_256)),
    ]
}

/// Sender and receiver SAs of one direction with mirrored keys.
fn child_pair(encr: Encr, integ: Option<Integ>, esn: bool) -> (ChildSa, ChildSa) {
    let cipher = |fill: u8| {
        EspCipher::new(
            encr,
            integ,
            &vec![fill; encr.keymat_len()],
            &vec![fill ^ 0x5a; integ.map_or(0, Integ::key_len)],
        )
        .expect("valid keys")
    };
    let sender = ChildSa::new(0x1000_0001, 0x2000_0002, cipher(1), cipher(2), esn, 1024);
    let receiver = ChildSa::new(0x2000_0002, 0x1000_0001, cipher(2), cipher(1), esn, 1024);
    (sender, receiver)
}

#[test]
fn child_sa_seals_and_opens_without_allocating() {
    count_aws_lc_allocations();
    let src = Ipv4Addr::new(172, 16, 4, 10);
    let dst = Ipv4Addr::new(10, 0, 1, 10);
    let inners: Vec<Vec<u8>> = LENGTHS
        .iter()
        .enumerate()
        .map(|(i, &len)| ipv4_udp(src, dst, len, i as u8))
        .collect();
    let warm = ipv4_udp(src, dst, WARM_LEN, 0xee);
    for (encr, integ) in suites() {
        for esn in [false, true] {
            let what = format!("{encr:?} {integ:?} esn={esn}");
            let keying = allocations();
            let (mut tx, mut rx) = child_pair(encr, integ, esn);
            // The counters see aws-lc's own allocations (its key contexts).
            if encr.is_aead() {
                assert!(
                    since(keying).1 > 0,
                    "{what}: aws-lc allocations not counted"
                );
            }
            let mut buf = Vec::new();
            for _ in 0..3 {
                tx.seal(&mut OsRng, &warm, 4, &mut buf).unwrap();
                rx.open(&mut buf).unwrap();
            }
            let mut opened_ok = 0usize;
            let before = allocations();
            for i in 0..PACKETS {
                let inner = &inners[i % inners.len()];
                tx.seal(&mut OsRng, inner, 4, &mut buf).unwrap();
                let (range, next_header) = rx.open(&mut buf).unwrap();
                if &buf[range] == inner.as_slice() && next_header == 4 {
                    opened_ok += 1;
                }
            }
            let (rust, c) = since(before);
            assert_eq!(opened_ok, PACKETS, "{what}: packets opened intact");
            assert_eq!(
                (rust, c),
                (0, 0),
                "{what}: allocations (Rust, aws-lc) for {PACKETS} packets sealed and opened"
            );
        }
    }
}

const GW_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const GW_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Datagrams sent by one gateway: during the handshake a list, during the
/// counted run only the last one, copied into a buffer allocated once.
struct Wire {
    out: Vec<(UdpPort, SocketAddr, Vec<u8>)>,
    last: Vec<u8>,
    keep_all: bool,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            out: Vec::new(),
            last: Vec::with_capacity(2048),
            keep_all: true,
        }
    }
}

impl Io for Wire {
    fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, datagram: &[u8]) {
        if self.keep_all {
            self.out.push((from, dst, datagram.to_vec()));
        } else {
            self.last.clear();
            self.last.extend_from_slice(datagram);
        }
    }
    fn write_tun(&mut self, _: &[u8]) {
        panic!("the tunnel table never writes to the TUN");
    }
}

fn tunnel(name: &str, me: Ipv4Addr, peer: Ipv4Addr, esp: &str, initiate: bool) -> TunnelSettings {
    let mut ike = IkeConfig::new(
        Identity::Ipv4(me),
        SecretBytes::from_slice(b"alloc-test-psk-0123456789"),
    );
    ike.remote_id = Some(Identity::Ipv4(peer));
    ike.force_encap = true;
    ike.ike_proposals =
        Proposal::parse_list(Protocol::Ike, "aes128gcm16-prfsha256-ecp256").expect("IKE proposal");
    ike.esp_proposals = Proposal::parse_list(Protocol::Esp, esp).expect("ESP proposal");
    TunnelSettings {
        source: name.into(),
        name: name.into(),
        ike: Arc::new(ike),
        remote: IpAddr::V4(peer),
        local: Some(IpAddr::V4(me)),
        priority: 100,
        initiate,
        probe: None,
    }
}

/// Hands `datagram` from `from` to gateway `t` at its address `me`.
fn deliver(
    t: &mut Tunnels,
    now: Instant,
    me: Ipv4Addr,
    from: Ipv4Addr,
    (port, dst, mut datagram): (UdpPort, SocketAddr, Vec<u8>),
    io: &mut Wire,
) {
    assert_eq!(dst.ip(), IpAddr::V4(me));
    let from = SocketAddr::new(IpAddr::V4(from), dst.port());
    match port {
        UdpPort::Ike => t.handle_ike(now, dst, from, &datagram, io),
        UdpPort::NatT => match natt::classify(&datagram) {
            Ok(natt::Demux::Ike(m)) => {
                let m = m.to_vec();
                t.handle_ike(now, dst, from, &m, io);
            }
            Ok(natt::Demux::Esp(_)) => {
                t.handle_esp(now, from, &mut datagram);
            }
            _ => {}
        },
        UdpPort::WireGuard => panic!("no WireGuard here"),
    }
}

/// Gateways A (initiator) and B with one tunnel each, run until both have
/// their CHILD SA (bounded in rounds).
fn negotiated(esp: &str) -> (Tunnels, Tunnels, Instant) {
    let mut now = Instant::now();
    let mut a = Tunnels::new(vec![tunnel("t1", GW_A, GW_B, esp, true)], now);
    let mut b = Tunnels::new(vec![tunnel("cgw", GW_B, GW_A, esp, false)], now);
    let up = |t: &Tunnels, now| t.status(now).iter().all(|s| s.state == TunnelState::Up);
    for _ in 0..50 {
        if up(&a, now) && up(&b, now) {
            return (a, b, now);
        }
        let mut wa = Wire::new();
        a.tick(now, &mut wa);
        let mut wb = Wire::new();
        b.tick(now, &mut wb);
        for d in std::mem::take(&mut wa.out) {
            deliver(&mut b, now, GW_B, GW_A, d, &mut wb);
        }
        for d in std::mem::take(&mut wb.out) {
            deliver(&mut a, now, GW_A, GW_B, d, &mut wa);
        }
        for d in std::mem::take(&mut wa.out) {
            deliver(&mut b, now, GW_B, GW_A, d, &mut wb);
        }
        for d in std::mem::take(&mut wb.out) {
            deliver(&mut a, now, GW_A, GW_B, d, &mut wa);
        }
        now += Duration::from_millis(100);
    }
    panic!(
        "no CHILD SA after 50 rounds ({esp}): A {:?}, B {:?}",
        a.status(now),
        b.status(now)
    );
}

/// Seals `inner` on `tx`, opens what it sent on `rx`; whether it arrived
/// intact.
fn one_packet(
    tx: &mut Tunnels,
    tx_addr: Ipv4Addr,
    rx: &mut Tunnels,
    now: Instant,
    inner: &[u8],
    wire: &mut Wire,
) -> bool {
    if tx.seal(inner, wire) != SealOutcome::Sent {
        return false;
    }
    let from = SocketAddr::new(IpAddr::V4(tx_addr), natt::NATT_PORT);
    match rx.handle_esp(now, from, &mut wire.last) {
        Some(r) => wire.last[r] == *inner,
        None => false,
    }
}

#[test]
fn tunnels_seal_and_handle_esp_without_allocating() {
    count_aws_lc_allocations();
    for esp in ["aes128gcm16", "aes256gcm16", "aes128-sha256", "aes256-sha1"] {
        let (mut a, mut b, now) = negotiated(esp);
        let mut wire = Wire::new();
        wire.keep_all = false;
        let lan = Ipv4Addr::new(172, 16, 4, 10);
        let vpc = Ipv4Addr::new(10, 0, 1, 10);
        let out: Vec<Vec<u8>> = LENGTHS
            .iter()
            .enumerate()
            .map(|(i, &len)| ipv4_udp(lan, vpc, len, i as u8))
            .collect();
        let back: Vec<Vec<u8>> = LENGTHS
            .iter()
            .enumerate()
            .map(|(i, &len)| ipv4_udp(vpc, lan, len, !(i as u8)))
            .collect();
        let warm_out = ipv4_udp(lan, vpc, WARM_LEN, 1);
        let warm_back = ipv4_udp(vpc, lan, WARM_LEN, 2);
        for _ in 0..3 {
            assert!(one_packet(&mut a, GW_A, &mut b, now, &warm_out, &mut wire));
            assert!(one_packet(&mut b, GW_B, &mut a, now, &warm_back, &mut wire));
        }
        let mut intact = 0usize;
        let before = allocations();
        for i in 0..PACKETS {
            let k = i % LENGTHS.len();
            intact += usize::from(one_packet(&mut a, GW_A, &mut b, now, &out[k], &mut wire));
            intact += usize::from(one_packet(&mut b, GW_B, &mut a, now, &back[k], &mut wire));
        }
        let (rust, c) = since(before);
        assert_eq!(intact, 2 * PACKETS, "{esp}: packets through intact");
        assert_eq!(
            (rust, c),
            (0, 0),
            "{esp}: allocations (Rust, aws-lc) for {} packets sealed and opened through the tunnels",
            2 * PACKETS
        );
    }
}
