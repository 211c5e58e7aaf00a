//! One CHILD SA's data path (RFC 4303, tunnel mode): seal an inner IP packet
//! into ESP and open ESP back into the inner packet, with sequence numbers,
//! the anti-replay window, counters and the limits that call for a rekey.
//!
//! Sealing (RFC 4303 3.3): SPI | sequence number | IV | inner packet,
//! padding 1, 2, 3..., Pad Length, Next Header | ICV. Opening (3.4): look up
//! by SPI (the caller), infer the full sequence number, reject replays
//! cheaply, verify the ICV, then commit the sequence number to the window,
//! then check the trailer. Nothing is decrypted before the ICV verified.

use super::replay::{Replay, ReplayWindow};
use crate::ike::crypto::{CryptoError, EspCipher, ESP_HEADER_LEN};
use crate::wire::esp as wire;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Without ESN the 32-bit counter must never wrap (RFC 4303 3.3.3): the
/// SA asks for a rekey this many packets before the end and refuses to send
/// past it.
pub const SEQ_SOFT_MARGIN: u64 = 1 << 24;

/// Why a packet was not sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The datagram is too short to be ESP for this SA.
    #[error("ESP packet too short ({0} bytes)")]
    Truncated(usize),
    /// The SPI is not this SA's.
    #[error("SPI {0:#010x} is not this SA's")]
    WrongSpi(u32),
    /// Replayed or too old.
    #[error("replay: {0:?}")]
    Replay(Replay),
    /// ICV verification or decryption failed.
    #[error("integrity check failed")]
    Integrity,
    /// The trailer's padding or lengths are wrong (after a valid ICV: a
    /// misbehaving peer).
    #[error("malformed ESP trailer")]
    BadTrailer,
    /// The sequence number space is exhausted: the SA must be rekeyed.
    #[error("sequence numbers exhausted; the CHILD SA must be rekeyed")]
    SequenceExhausted,
    /// The cipher refused the layout.
    #[error("cipher: {0}")]
    Cipher(String),
}

impl From<CryptoError> for EspError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Malformed(_) => EspError::Cipher(e.to_string()),
            _ => EspError::Integrity,
        }
    }
}

/// Packet and byte counters of one CHILD SA.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildCounters {
    /// Packets sealed.
    pub packets_out: u64,
    /// Inner bytes sealed.
    pub bytes_out: u64,
    /// Packets opened.
    pub packets_in: u64,
    /// Inner bytes opened.
    pub bytes_in: u64,
    /// Packets refused by the replay window.
    pub replayed: u64,
    /// Packets whose ICV did not verify.
    pub integrity_failed: u64,
    /// Packets with a bad trailer after a valid ICV.
    pub bad_trailer: u64,
}

/// The keyed data path of one CHILD SA (both directions).
pub struct ChildSa {
    /// SPI of inbound packets (ours).
    pub spi_in: u32,
    /// SPI of outbound packets (the peer's).
    pub spi_out: u32,
    inbound: EspCipher,
    outbound: EspCipher,
    esn: bool,
    /// Last sequence number sent.
    seq_out: u64,
    replay: ReplayWindow,
    counters: ChildCounters,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("spi_in", &format_args!("{:#010x}", self.spi_in))
            .field("spi_out", &format_args!("{:#010x}", self.spi_out))
            .field("esn", &self.esn)
            .field("seq_out", &self.seq_out)
            .finish_non_exhaustive()
    }
}

impl ChildSa {
    /// A CHILD SA with keyed ciphers for each direction.
    pub fn new(
        spi_in: u32,
        spi_out: u32,
        inbound: EspCipher,
        outbound: EspCipher,
        esn: bool,
        replay_window: u32,
    ) -> ChildSa {
        ChildSa {
            spi_in,
            spi_out,
            inbound,
            outbound,
            esn,
            seq_out: 0,
            replay: ReplayWindow::new(replay_window, esn),
            counters: ChildCounters::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> ChildCounters {
        self.counters
    }

    /// The last sequence number sent.
    pub fn seq_out(&self) -> u64 {
        self.seq_out
    }

    fn seq_limit(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Whether the sequence space is close enough to its end that the SA
    /// should be rekeyed now.
    pub fn seq_soft_expired(&self) -> bool {
        self.seq_out >= self.seq_limit() - SEQ_SOFT_MARGIN
    }

    /// Bytes of an ESP packet carrying `inner_len` bytes.
    pub fn sealed_len(&self, inner_len: usize) -> usize {
        self.outbound.packet_len(inner_len)
    }

    /// Seals `inner` (an IP packet, `next_header` 4 or 41) into `out`
    /// (cleared first), ready to send in UDP 4500 or as IP protocol 50.
    ///
    /// The per-packet path: `inner` is copied once, into `out`, and
    /// encrypted there in place; `out` is meant to be one buffer reused for
    /// every packet, which then never reallocates once it has held the
    /// largest packet.
    pub fn seal<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        inner: &[u8],
        next_header: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), EspError> {
        if self.seq_out >= self.seq_limit() {
            return Err(EspError::SequenceExhausted);
        }
        let seq = self.seq_out + 1;
        let len = self.outbound.packet_len(inner.len());
        let data = self.outbound.data_range(len);
        let pad = data.len() - inner.len() - 2;
        // Built front to back: header, IV placeholder, the inner packet,
        // padding 1, 2, 3, ..., Pad Length, Next Header (RFC 4303 2.4-2.6),
        // ICV placeholder. No pass over the payload but the copy.
        out.clear();
        out.reserve(len);
        out.extend_from_slice(&self.spi_out.to_be_bytes());
        out.extend_from_slice(&(seq as u32).to_be_bytes());
        out.resize(data.start, 0);
        out.extend_from_slice(inner);
        out.extend((1..=pad).map(|i| i as u8));
        out.extend_from_slice(&[pad as u8, next_header]);
        out.resize(len, 0);
        let hi = self.esn.then_some((seq >> 32) as u32);
        self.outbound.seal_in_place(rng, out, hi)?;
        self.seq_out = seq;
        self.counters.packets_out += 1;
        self.counters.bytes_out += inner.len() as u64;
        Ok(())
    }

    /// Opens `packet` (an ESP packet for this SA) in place; returns the
    /// range of the inner packet and its Next Header.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<(Range<usize>, u8), EspError> {
        if packet.len() < ESP_HEADER_LEN + self.inbound.iv_len() + self.inbound.icv_len() + 4 {
            return Err(EspError::Truncated(packet.len()));
        }
        let spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        if spi != self.spi_in {
            return Err(EspError::WrongSpi(spi));
        }
        let low = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let seq = self.replay.infer(low);
        if let Err(r) = self.replay.check(seq) {
            self.counters.replayed += 1;
            return Err(EspError::Replay(r));
        }
        let hi = self.esn.then_some((seq >> 32) as u32);
        let data = match self.inbound.open_in_place(packet, hi) {
            Ok(d) => d,
            Err(e) => {
                self.counters.integrity_failed += 1;
                return Err(e.into());
            }
        };
        // Authentic: commit to the window (RFC 4303 3.4.3).
        if let Err(r) = self.replay.accept(seq) {
            self.counters.replayed += 1;
            return Err(EspError::Replay(r));
        }
        let trailer = match wire::EspTrailer::parse(&packet[data.clone()]) {
            Ok(t) => t,
            Err(_) => {
                self.counters.bad_trailer += 1;
                return Err(EspError::BadTrailer);
            }
        };
        let inner = data.start..data.start + trailer.payload_len;
        self.counters.packets_in += 1;
        self.counters.bytes_in += trailer.payload_len as u64;
        Ok((inner, trailer.next_header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::{Encr, Integ};
    use rand_core::OsRng;

    fn pair(encr: Encr, integ: Option<Integ>, esn: bool) -> (ChildSa, ChildSa) {
        let ek1 = vec![0x11u8; encr.keymat_len()];
        let ek2 = vec![0x22u8; encr.keymat_len()];
        let ik1 = vec![0x33u8; integ.map_or(0, Integ::key_len)];
        let ik2 = vec![0x44u8; integ.map_or(0, Integ::key_len)];
        let c = |e: &[u8], i: &[u8]| EspCipher::new(encr, integ, e, i).unwrap();
        // a -> b uses (ek1, ik1); b -> a uses (ek2, ik2).
        let a = ChildSa::new(
            0xa000_0001,
            0xb000_0002,
            c(&ek2, &ik2),
            c(&ek1, &ik1),
            esn,
            64,
        );
        let b = ChildSa::new(
            0xb000_0002,
            0xa000_0001,
            c(&ek1, &ik1),
            c(&ek2, &ik2),
            esn,
            64,
        );
        (a, b)
    }

    fn suites() -> Vec<(Encr, Option<Integ>)> {
        vec![
            (Encr::AesCbc128, Some(Integ::HmacSha1_96)),
            (Encr::AesCbc256, Some(Integ::HmacSha256_128)),
            (Encr::AesCbc128, Some(Integ::HmacSha384_192)),
            (Encr::AesCbc256, Some(Integ::HmacSha512_256)),
            (Encr::AesGcm16_128, None),
            (Encr::AesGcm16_256, None),
        ]
    }

    #[test]
    fn seal_open_round_trip_every_suite_and_length() {
        for (encr, integ) in suites() {
            for esn in [false, true] {
                let (mut a, mut b) = pair(encr, integ, esn);
                let mut out = Vec::new();
                for len in [0usize, 1, 15, 16, 17, 20, 84, 1400] {
                    let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    a.seal(&mut OsRng, &inner, 4, &mut out).unwrap();
                    assert_eq!(out.len(), a.sealed_len(len));
                    assert_eq!(&out[..4], &0xb000_0002u32.to_be_bytes());
                    let (r, nh) = b.open(&mut out).unwrap();
                    assert_eq!(
                        &out[r],
                        &inner[..],
                        "{encr:?} {integ:?} esn={esn} len={len}"
                    );
                    assert_eq!(nh, 4);
                }
                assert_eq!(b.counters().packets_in, 8);
                assert_eq!(a.counters().packets_out, 8);
            }
        }
    }

    #[test]
    fn replay_and_tamper_are_refused_without_moving_the_window() {
        for (encr, integ) in suites() {
            let (mut a, mut b) = pair(encr, integ, false);
            let mut p1 = Vec::new();
            a.seal(&mut OsRng, b"first", 4, &mut p1).unwrap();
            let copy = p1.clone();
            b.open(&mut p1).unwrap();
            let mut again = copy.clone();
            assert_eq!(b.open(&mut again), Err(EspError::Replay(Replay::Duplicate)));
            // A forged packet far ahead must not move the window.
            let mut p2 = Vec::new();
            a.seal(&mut OsRng, b"second", 4, &mut p2).unwrap();
            let mut forged = p2.clone();
            forged[4..8].copy_from_slice(&1000u32.to_be_bytes());
            assert_eq!(b.open(&mut forged), Err(EspError::Integrity));
            let mut flipped = p2.clone();
            let n = flipped.len();
            flipped[n - 1] ^= 1;
            assert_eq!(b.open(&mut flipped), Err(EspError::Integrity));
            b.open(&mut p2).expect("the genuine packet still opens");
            let c = b.counters();
            assert_eq!((c.replayed, c.integrity_failed, c.packets_in), (1, 2, 2));
        }
    }

    #[test]
    fn wrong_spi_and_truncation() {
        let (mut a, mut b) = pair(Encr::AesGcm16_128, None, false);
        let mut p = Vec::new();
        a.seal(&mut OsRng, b"x", 4, &mut p).unwrap();
        for cut in 0..p.len() {
            let mut t = p[..cut].to_vec();
            assert!(b.open(&mut t).is_err(), "truncated to {cut}");
        }
        let mut other = p.clone();
        other[0] ^= 0xff;
        assert!(matches!(b.open(&mut other), Err(EspError::WrongSpi(_))));
        b.open(&mut p).unwrap();
    }

    #[test]
    fn sequence_space_is_never_wrapped_without_esn() {
        let (mut a, _) = pair(Encr::AesGcm16_128, None, false);
        a.seq_out = u64::from(u32::MAX) - 1;
        assert!(a.seq_soft_expired());
        let mut out = Vec::new();
        a.seal(&mut OsRng, b"last", 4, &mut out).unwrap();
        assert_eq!(
            a.seal(&mut OsRng, b"one too many", 4, &mut out),
            Err(EspError::SequenceExhausted)
        );
    }

    /// Per-packet cost of seal + open, 1400-byte inner packets, each suite;
    /// a measurement, not a check (`cargo test --release --lib esp:: --
    /// --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement: run it in release with --ignored --nocapture"]
    fn seal_open_cost_per_packet() {
        let inner = vec![0x5au8; 1400];
        for (encr, integ) in suites() {
            let (mut a, mut b) = pair(encr, integ, false);
            let mut out = Vec::new();
            let n = 200_000u32;
            let mut sealed = std::time::Duration::ZERO;
            let mut opened = std::time::Duration::ZERO;
            for _ in 0..n {
                let t0 = std::time::Instant::now();
                a.seal(&mut OsRng, &inner, 4, &mut out).unwrap();
                let t1 = std::time::Instant::now();
                b.open(&mut out).unwrap();
                opened += t1.elapsed();
                sealed += t1 - t0;
            }
            let gbit = |d: std::time::Duration| f64::from(n) * 1400.0 * 8.0 / d.as_secs_f64() / 1e9;
            println!(
                "{encr:?} {integ:?}: seal {:?}/packet ({:.2} Gbit/s), open {:?}/packet ({:.2} Gbit/s)",
                sealed / n,
                gbit(sealed),
                opened / n,
                gbit(opened)
            );
        }
    }

    #[test]
    fn esn_crosses_the_32_bit_boundary() {
        let (mut a, mut b) = pair(Encr::AesCbc128, Some(Integ::HmacSha256_128), true);
        a.seq_out = u64::from(u32::MAX) - 2;
        b.replay.accept(u64::from(u32::MAX) - 2).unwrap();
        let mut out = Vec::new();
        for _ in 0..5 {
            a.seal(&mut OsRng, b"over the edge", 4, &mut out).unwrap();
            let (r, _) = b.open(&mut out).unwrap();
            assert_eq!(&out[r], b"over the edge");
        }
        assert_eq!(a.seq_out(), u64::from(u32::MAX) + 3);
    }
}
