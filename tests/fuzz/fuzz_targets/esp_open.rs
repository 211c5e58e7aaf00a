//! The ESP open path (RFC 4303 3.4) of a CHILD SA with fixed keys.
//!
//! The first input byte picks the suite (AES-CBC-128/256 with each HMAC,
//! AES-GCM-16-128/256), ESN on or off, and whether the input's first four
//! bytes are replaced by the SA's SPI (so that arbitrary bytes get past the
//! SPI check into the replay window and the ICV). Then:
//! - `open` of the arbitrary bytes must not panic (and a forgery must not
//!   verify);
//! - seal-then-open round trip: the rest of the input, sealed by the peer's
//!   SA, opens to the same bytes and next header;
//! - the same sealed packet opened twice is a replay;
//! - a sealed packet with one bit flipped (position from the input) never
//!   opens.
#![no_main]

use ipiece::esp::{ChildSa, EspError};
use ipiece::ike::crypto::{Encr, EspCipher, Integ};
use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};

const SPI_A: u32 = 0xc0ffee01;
const SPI_B: u32 = 0xc0ffee02;

/// A fixed-output RNG: the CBC IVs do not matter for the properties here,
/// and the run stays reproducible.
struct CounterRng(u64);
impl RngCore for CounterRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for c in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for CounterRng {}

fn suite(sel: u8) -> (Encr, Option<Integ>) {
    match sel % 10 {
        0..=3 => (Encr::AesCbc128, Some(Integ::ALL[(sel % 10) as usize])),
        4..=7 => (Encr::AesCbc256, Some(Integ::ALL[(sel % 10 - 4) as usize])),
        8 => (Encr::AesGcm16_128, None),
        _ => (Encr::AesGcm16_256, None),
    }
}

fn cipher(encr: Encr, integ: Option<Integ>, fill: u8) -> EspCipher {
    let ek = vec![fill; encr.keymat_len()];
    let ik = vec![fill ^ 0x5a; integ.map_or(0, Integ::key_len)];
    EspCipher::new(encr, integ, &ek, &ik).expect("valid fixed keys")
}

/// Our SA (inbound SPI_A) and the peer's (inbound SPI_B), keys mirrored.
fn pair(encr: Encr, integ: Option<Integ>, esn: bool) -> (ChildSa, ChildSa) {
    let ours = ChildSa::new(
        SPI_A,
        SPI_B,
        cipher(encr, integ, 0x11),
        cipher(encr, integ, 0x22),
        esn,
        64,
    );
    let peer = ChildSa::new(
        SPI_B,
        SPI_A,
        cipher(encr, integ, 0x22),
        cipher(encr, integ, 0x11),
        esn,
        64,
    );
    (ours, peer)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (encr, integ) = suite(sel);
    let esn = sel & 0x10 != 0;
    let (mut ours, mut peer) = pair(encr, integ, esn);

    // 1. Arbitrary bytes into open.
    let mut pkt = rest.to_vec();
    if sel & 0x20 != 0 && pkt.len() >= 4 {
        pkt[..4].copy_from_slice(&SPI_A.to_be_bytes());
    }
    match ours.open(&mut pkt) {
        Ok((inner, _)) => panic!(
            "arbitrary bytes opened under fixed keys ({encr:?} {integ:?}): inner {inner:?} of {} bytes",
            pkt.len()
        ),
        Err(EspError::SequenceExhausted) => panic!("open reported SequenceExhausted"),
        Err(_) => {}
    }

    // 2. Seal the input as the inner packet, open it on the other side.
    let mut rng = CounterRng(u64::from(sel));
    let next_header = if sel & 0x40 != 0 { 41 } else { 4 };
    let mut sealed = Vec::new();
    peer.seal(&mut rng, rest, next_header, &mut sealed)
        .unwrap_or_else(|e| panic!("seal of {} bytes failed: {e}", rest.len()));
    assert_eq!(sealed.len(), peer.sealed_len(rest.len()), "sealed_len");
    let mut copy = sealed.clone();
    let mut flipped = sealed.clone();
    let (inner, nh) = ours
        .open(&mut copy)
        .unwrap_or_else(|e| panic!("round trip failed ({encr:?} {integ:?} esn {esn}): {e}"));
    assert_eq!(&copy[inner], rest, "round trip changed the inner packet");
    assert_eq!(nh, next_header, "round trip changed the next header");

    // 3. The same packet again is a replay.
    let mut again = sealed.clone();
    assert!(
        matches!(ours.open(&mut again), Err(EspError::Replay(_))),
        "a replayed packet was not refused as a replay"
    );

    // 4. One flipped bit anywhere: never opens (a fresh SA, so it is not
    //    refused merely as a replay of the packet opened above).
    let (mut fresh, _) = pair(encr, integ, esn);
    let pos = rest.get(..2).map_or(0, |b| {
        usize::from(u16::from_le_bytes([b[0], *b.get(1).unwrap_or(&0)]))
    }) % (flipped.len() * 8);
    flipped[pos / 8] ^= 1 << (pos % 8);
    if let Ok((inner, nh)) = fresh.open(&mut flipped) {
        panic!("a packet with bit {pos} flipped opened ({encr:?} {integ:?} esn {esn}): {inner:?} nh {nh}");
    }
});
