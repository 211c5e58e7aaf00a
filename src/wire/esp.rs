//! ESP packet format (RFC 4303 2): the header view, and the trailer
//! (padding, Pad Length, Next Header) inside the plaintext. No crypto here.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
//! |               Security Parameters Index (SPI)                 | ^Int.
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |                      Sequence Number                          | |ered
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ | ----
//! |                    Payload Data* (variable)                   | |   ^
//! ~                                                               ~ |   |
//! +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Conf.
//! |               |     Padding (0-255 bytes)                     | |Cov-
//! +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |ered*
//! |                               |  Pad Length   | Next Header   | v   v
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ------
//! |         Integrity Check Value-ICV   (variable)                |
//! ```
//!
//! The payload data starts with the IV (RFC 4303 2.3); the seal path pads
//! the inner packet with [`push_trailer`] (or [`emit_trailer`] in place) and
//! the open path strips it with [`EspTrailer::parse`].

use super::{Field, Rest, WireError};

/// Length of the ESP header: SPI and Sequence Number.
pub const HEADER_LEN: usize = 8;

/// Length of Pad Length and Next Header.
pub const TRAILER_FIXED_LEN: usize = 2;

/// Next Header for an IPv4 packet in tunnel mode (IP-in-IP).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next Header for an IPv6 packet in tunnel mode.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next Header 59: a dummy packet to be dropped (RFC 4303 2.6, TFC).
pub const NEXT_HEADER_NO_NEXT: u8 = 59;

/// The largest Pad Length.
pub const MAX_PAD_LEN: usize = 255;

mod field {
    use super::{Field, Rest};
    pub const SPI: Field = 0..4;
    pub const SEQUENCE_NUMBER: Field = 4..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A zero-copy view of an ESP packet (RFC 4303 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer without checking: the getters panic when it is shorter
    /// than the header. Prefer [`Self::new_checked`].
    pub fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`]; no getter panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header.
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "ESP header",
                need: HEADER_LEN,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Sequence Number (the low 32 bits when ESN is on).
    pub fn sequence_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQUENCE_NUMBER];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The bytes after the header: IV, ciphertext, ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The header bytes (SPI and Sequence Number): what the ICV covers in
    /// front of the payload, and the AEAD associated data (RFC 4106 5).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Splits the payload into `(iv, ciphertext, icv)` for the SA's IV and
    /// ICV lengths.
    pub fn split(
        &self,
        iv_len: usize,
        icv_len: usize,
    ) -> Result<super::CipherParts<'_>, WireError> {
        super::split_iv_ct_icv(self.payload(), iv_len, icv_len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, v: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the Sequence Number.
    pub fn set_sequence_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQUENCE_NUMBER].copy_from_slice(&v.to_be_bytes());
    }

    /// The payload, mutable (for encryption and decryption in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The ESP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspHeader {
    /// Security Parameters Index (never 0 on the wire).
    pub spi: u32,
    /// Sequence Number.
    pub sequence_number: u32,
}

impl EspHeader {
    /// Reads the header of a checked packet; SPI 0 is an error ("The SPI
    /// value of zero (0) is reserved for local, implementation-specific use
    /// and MUST NOT be sent on the wire", RFC 4303 2.1).
    pub fn parse<T: AsRef<[u8]>>(p: &EspPacket<T>) -> Result<Self, WireError> {
        if p.spi() == 0 {
            return Err(WireError::ZeroSpi);
        }
        Ok(EspHeader {
            spi: p.spi(),
            sequence_number: p.sequence_number(),
        })
    }

    /// Length on the wire.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut EspPacket<T>) {
        p.set_spi(self.spi);
        p.set_sequence_number(self.sequence_number);
    }
}

/// The trailer at the end of a decrypted ESP payload (RFC 4303 2.4, 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspTrailer {
    /// Length of the payload data before the padding (the inner packet).
    pub payload_len: usize,
    /// Pad Length.
    pub pad_len: u8,
    /// Next Header: 4 for IPv4, 41 for IPv6, 59 for a dummy packet.
    pub next_header: u8,
}

impl EspTrailer {
    /// Reads the trailer at the end of a decrypted plaintext (payload data,
    /// padding, Pad Length, Next Header) and checks the default padding
    /// sequence 1, 2, 3, ... (RFC 4303 2.4: "the receiver SHOULD inspect the
    /// Padding field"). The inner packet is `&plaintext[..payload_len]`.
    pub fn parse(plaintext: &[u8]) -> Result<Self, WireError> {
        let [body @ .., pad_len, next_header] = plaintext else {
            return Err(WireError::Truncated {
                what: "ESP trailer",
                need: TRAILER_FIXED_LEN,
                have: plaintext.len(),
            });
        };
        let pad = usize::from(*pad_len);
        let payload_len = body.len().checked_sub(pad).ok_or(WireError::BadPadding)?;
        let padding = body.get(payload_len..).ok_or(WireError::BadPadding)?;
        if !padding.iter().zip(1u8..).all(|(b, want)| *b == want) {
            return Err(WireError::BadPadding);
        }
        Ok(EspTrailer {
            payload_len,
            pad_len: *pad_len,
            next_header: *next_header,
        })
    }

    /// Length of padding, Pad Length and Next Header.
    pub fn buffer_len(&self) -> usize {
        usize::from(self.pad_len) + TRAILER_FIXED_LEN
    }
}

/// Splits a decrypted ESP plaintext into the inner packet and its Next
/// Header, checking the padding ([`EspTrailer::parse`]).
pub fn open_plaintext(plaintext: &[u8]) -> Result<(&[u8], u8), WireError> {
    let t = EspTrailer::parse(plaintext)?;
    let inner = plaintext
        .get(..t.payload_len)
        .ok_or(WireError::BadPadding)?;
    Ok((inner, t.next_header))
}

/// The Pad Length for a payload: the fewest padding bytes such that
/// `payload_len + padding + 2` is a multiple of the cipher's block size and
/// of 4, so that the ICV starts 4-byte aligned (RFC 4303 2.4). `block_size`
/// 0 or 1 (GCM, counter modes) means only the 4-byte alignment. `None` when
/// it would need more than 255 bytes (a block size above 256, or one that is
/// not a power of two with a large alignment).
pub fn pad_len(payload_len: usize, block_size: usize) -> Option<u8> {
    let align = lcm(block_size.max(1), 4)?;
    let used = payload_len.checked_add(TRAILER_FIXED_LEN)? % align;
    let pad = (align - used) % align;
    u8::try_from(pad).ok()
}

/// Length of the whole trailer (padding, Pad Length, Next Header) for a
/// payload; see [`pad_len`].
pub fn trailer_len(payload_len: usize, block_size: usize) -> Option<usize> {
    pad_len(payload_len, block_size).map(|p| usize::from(p) + TRAILER_FIXED_LEN)
}

/// Writes a trailer into `dst` (its whole length: padding 1, 2, 3, ...,
/// Pad Length, Next Header), for sealing in place. `dst` must be 2 to 257
/// bytes long.
pub fn emit_trailer(dst: &mut [u8], next_header: u8) -> Result<(), WireError> {
    let Some(pad) = dst.len().checked_sub(TRAILER_FIXED_LEN) else {
        return Err(WireError::Truncated {
            what: "ESP trailer",
            need: TRAILER_FIXED_LEN,
            have: dst.len(),
        });
    };
    let pad_u8 = u8::try_from(pad).map_err(|_| WireError::TooLong {
        what: "ESP padding",
        len: pad,
        max: MAX_PAD_LEN,
    })?;
    for (b, v) in dst.iter_mut().zip(1u8..=pad_u8) {
        *b = v;
    }
    if let [.., pl, nh] = dst {
        *pl = pad_u8;
        *nh = next_header;
    }
    Ok(())
}

/// Appends the trailer for a payload already in `buf` (the payload being
/// everything in `buf` from `payload_start`), for a cipher block size.
/// Returns what was appended.
pub fn push_trailer(
    buf: &mut Vec<u8>,
    payload_start: usize,
    block_size: usize,
    next_header: u8,
) -> Result<EspTrailer, WireError> {
    let payload_len = buf.len().saturating_sub(payload_start);
    let pad = pad_len(payload_len, block_size).ok_or(WireError::TooLong {
        what: "ESP padding for this block size",
        len: block_size,
        max: MAX_PAD_LEN,
    })?;
    let start = buf.len();
    buf.resize(start + usize::from(pad) + TRAILER_FIXED_LEN, 0);
    emit_trailer(buf.get_mut(start..).unwrap_or_default(), next_header)?;
    Ok(EspTrailer {
        payload_len,
        pad_len: pad,
        next_header,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> Option<usize> {
    (a / gcd(a, b)).checked_mul(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SPI 0x12345678, sequence 1, 8-byte IV, 16 bytes ciphertext, 12-byte ICV.
    static PACKET_BYTES: [u8; 44] = [
        0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x01, //
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, //
        0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, //
        0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, //
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    ];

    #[test]
    fn test_parse() {
        let p = EspPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.spi(), 0x1234_5678);
        assert_eq!(p.sequence_number(), 1);
        assert_eq!(p.payload().len(), 36);
        assert_eq!(p.header(), &PACKET_BYTES[..8]);
        let crate::wire::CipherParts {
            iv,
            ciphertext: ct,
            icv,
        } = p.split(8, 12).unwrap();
        assert_eq!((iv.len(), ct.len(), icv.len()), (8, 16, 12));
        assert!(ct.iter().all(|b| *b == 0xcc));
        assert!(p.split(16, 32).is_err());
        let h = EspHeader::parse(&p).unwrap();
        assert_eq!(
            h,
            EspHeader {
                spi: 0x1234_5678,
                sequence_number: 1
            }
        );
    }

    #[test]
    fn test_emit() {
        let mut buf = PACKET_BYTES;
        buf[..8].fill(0);
        let mut p = EspPacket::new_unchecked(&mut buf[..]);
        let h = EspHeader {
            spi: 0x1234_5678,
            sequence_number: 1,
        };
        h.emit(&mut p);
        assert_eq!(h.buffer_len(), 8);
        p.payload_mut()[0] = 0xaa;
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..HEADER_LEN {
            assert!(matches!(
                EspPacket::new_checked(&PACKET_BYTES[..n]),
                Err(WireError::Truncated { .. })
            ));
        }
        let p = EspPacket::new_checked(&PACKET_BYTES[..8]).unwrap();
        assert!(p.payload().is_empty());
        let zero = [0u8; 8];
        assert_eq!(
            EspHeader::parse(&EspPacket::new_checked(&zero[..]).unwrap()),
            Err(WireError::ZeroSpi)
        );
    }

    #[test]
    fn test_trailer_parse() {
        // 5 bytes of payload, 3 bytes padding, pad length 3, next header 4.
        let plain = [9, 9, 9, 9, 9, 1, 2, 3, 3, 4];
        let t = EspTrailer::parse(&plain).unwrap();
        assert_eq!(
            t,
            EspTrailer {
                payload_len: 5,
                pad_len: 3,
                next_header: NEXT_HEADER_IPV4
            }
        );
        assert_eq!(t.buffer_len(), 5);
        assert_eq!(open_plaintext(&plain).unwrap(), (&plain[..5], 4));
        // No padding.
        assert_eq!(open_plaintext(&[7, 0, 41]).unwrap(), (&[7u8][..], 41));
        // Only the trailer.
        assert_eq!(open_plaintext(&[0, 59]).unwrap(), (&[][..], 59));
        // Padding not monotonic.
        assert_eq!(
            EspTrailer::parse(&[9, 1, 3, 2, 4]),
            Err(WireError::BadPadding)
        );
        // Pad length past the plaintext.
        assert_eq!(EspTrailer::parse(&[1, 2, 3, 4]), Err(WireError::BadPadding));
        assert_eq!(EspTrailer::parse(&[255, 4]), Err(WireError::BadPadding));
        assert!(matches!(
            EspTrailer::parse(&[4]),
            Err(WireError::Truncated { .. })
        ));
        assert!(EspTrailer::parse(&[]).is_err());
    }

    #[test]
    fn test_pad_len() {
        // AES-CBC: 16-byte blocks.
        assert_eq!(pad_len(0, 16), Some(14));
        assert_eq!(pad_len(14, 16), Some(0));
        assert_eq!(pad_len(15, 16), Some(15));
        assert_eq!(pad_len(84, 16), Some(10));
        // GCM: only the 4-byte alignment.
        assert_eq!(pad_len(84, 1), Some(2));
        assert_eq!(pad_len(82, 1), Some(0));
        assert_eq!(pad_len(83, 0), Some(3));
        // 3DES: 8-byte blocks.
        assert_eq!(pad_len(1, 8), Some(5));
        // Odd block size: lcm(3, 4) = 12.
        assert_eq!(pad_len(0, 3), Some(10));
        assert_eq!(pad_len(0, 256), Some(254));
        assert_eq!(pad_len(0, 1024), None);
        assert_eq!(pad_len(usize::MAX, 16), None);
        assert_eq!(pad_len(0, usize::MAX), None);
        assert_eq!(trailer_len(84, 16), Some(12));
    }

    #[test]
    fn test_trailer_emit() {
        let mut buf = vec![0xee; 84];
        let t = push_trailer(&mut buf, 0, 16, NEXT_HEADER_IPV4).unwrap();
        assert_eq!(buf.len(), 96);
        assert_eq!(&buf[84..], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 4]);
        assert_eq!(EspTrailer::parse(&buf).unwrap(), t);
        // With a header in front that is not part of the payload.
        let mut buf = vec![0u8; 8];
        buf.extend_from_slice(&[0xee; 3]);
        push_trailer(&mut buf, 8, 1, NEXT_HEADER_IPV6).unwrap();
        assert_eq!(&buf[8..], &[0xee, 0xee, 0xee, 1, 2, 3, 3, 41]);
        assert!(push_trailer(&mut buf, 0, 1024, 4).is_err());

        let mut t = [0u8; 2];
        emit_trailer(&mut t, 59).unwrap();
        assert_eq!(t, [0, 59]);
        assert!(emit_trailer(&mut [0u8; 1], 4).is_err());
        assert!(emit_trailer(&mut [0u8; 258], 4).is_err());
        let mut t = [0u8; 257];
        emit_trailer(&mut t, 4).unwrap();
        assert_eq!((t[254], t[255], t[256]), (255, 255, 4));
    }

    proptest! {
        #[test]
        fn trailer_round_trips(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            bs in prop_oneof![Just(1usize), Just(4), Just(8), Just(16), Just(32)],
            nh: u8,
        ) {
            let mut buf = payload.clone();
            let t = push_trailer(&mut buf, 0, bs, nh).unwrap();
            prop_assert_eq!(buf.len() % bs.max(4), 0);
            prop_assert_eq!(EspTrailer::parse(&buf).unwrap(), t);
            prop_assert_eq!(open_plaintext(&buf).unwrap(), (&payload[..], nh));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = EspTrailer::parse(&bytes);
            let _ = open_plaintext(&bytes);
            if let Ok(p) = EspPacket::new_checked(&bytes[..]) {
                let _ = (p.spi(), p.sequence_number(), p.payload(), EspHeader::parse(&p));
                let _ = p.split(16, 16);
            }
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..PACKET_BYTES.len()) {
            prop_assert_eq!(EspPacket::new_checked(&PACKET_BYTES[..cut]).is_ok(), cut >= HEADER_LEN);
            if let Ok(p) = EspPacket::new_checked(&PACKET_BYTES[..cut]) {
                let _ = p.split(8, 12);
            }
        }
    }
}
