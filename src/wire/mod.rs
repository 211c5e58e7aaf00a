//! Wire formats: IKEv2 (RFC 7296), ESP (RFC 4303), the UDP 4500 demux (RFC 3948),
//! and the IPv4/TCP rewrites a router does on forwarded packets.
//!
//! Codecs only: no crypto, no state, no I/O. Each format comes as a zero-copy
//! view over a byte buffer (`*Packet<T: AsRef<[u8]>>`, checked once by
//! `new_checked`, smoltcp style) and, for IKE, as owned representations
//! (`Message`, `Payload`, ...) with `parse` and `emit` that round-trip.
//!
//! - [`ike_enums`]: the IANA registries of IKEv2 (exchange, payload, transform,
//!   notify, ID, TS and auth-method numbers), as `#[non_exhaustive]` enums
//!   with an `Unknown(n)` variant.
//! - [`ike`]: the IKE header (RFC 7296 3.1) and [`ike::Message`].
//! - [`ike_payloads`]: the generic payload header and the payloads
//!   (RFC 7296 3.2-3.14).
//! - [`esp`]: the ESP header and trailer (RFC 4303 2).
//! - [`natt`]: the port-4500 demux (RFC 3948 2.2, 2.3; RFC 7296 2.23).
//! - [`tcp_mss`]: TCP MSS clamping of forwarded SYNs (RFC 9293 3.7.1, RFC 6691,
//!   checksum by RFC 1624).
//! - [`ipv4_frag`]: IPv4 fragmentation (RFC 791 3.2) and the ICMP
//!   "fragmentation needed" error (RFC 792, RFC 1191 4) for packets too big
//!   for a tunnel.
//!
//! Parsing never panics on any input: every length is checked against the
//! buffer, and a length field that disagrees with it is an error
//! ([`WireError`]). Where an IKE error has a notify type to answer with
//! (RFC 7296 3.10.1), [`WireError::notify_type`] gives it.

pub mod esp;
pub mod ike;
pub mod ike_enums;
pub mod ike_payloads;
pub mod ipv4_frag;
pub mod natt;
pub mod tcp_mss;

#[cfg(test)]
mod strongswan_tests;

pub use esp::{EspHeader, EspPacket, EspTrailer};
pub use ike::{encrypted_span, EncryptedSpan, Flags, HeaderRepr, IkePacket, Message};
pub use ike_enums::*;
pub use ike_payloads::*;
pub use natt::Demux;

use core::ops::{Range, RangeFrom};

/// A fixed field: a byte range inside a header.
pub(crate) type Field = Range<usize>;
/// The open-ended rest of a buffer after a header.
pub(crate) type Rest = RangeFrom<usize>;

/// Everything that can go wrong parsing or emitting the formats of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before a structure does.
    #[error("{what}: truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// A length field disagrees with the buffer or with the structure's minimum.
    #[error("{what}: length field says {len}, but {have} bytes are there")]
    BadLength {
        /// The structure whose length field is wrong.
        what: &'static str,
        /// The value of the length field (or the count it implies).
        len: usize,
        /// The bytes actually available (or the minimum required).
        have: usize,
    },
    /// Bytes left over after a structure that must fill its container.
    #[error("{what}: {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The structure followed by the extra bytes.
        what: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
    /// The IKE major version is not 2 (RFC 7296 3.1).
    #[error("IKE version {major}.{minor} is not supported (need major version 2)")]
    BadVersion {
        /// The major version received.
        major: u8,
        /// The minor version received.
        minor: u8,
    },
    /// A payload of a type this implementation does not understand had its
    /// critical bit set (RFC 7296 2.5, 3.2): the whole message is rejected.
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCritical(PayloadType),
    /// A field holds a value its structure does not allow.
    #[error("{what}: {why}")]
    Malformed {
        /// The structure or field.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The ESP padding is not the default 1, 2, 3, ... sequence (RFC 4303 2.4),
    /// or its pad length runs past the plaintext.
    #[error("ESP padding is invalid")]
    BadPadding,
    /// SPI 0 in an ESP header: reserved, never sent on the wire (RFC 4303 2.1).
    #[error("ESP SPI 0 is reserved")]
    ZeroSpi,
    /// On emit: a value does not fit its length field.
    #[error("{what}: {len} bytes do not fit (at most {max})")]
    TooLong {
        /// The structure being emitted.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The largest size its length field can carry.
        max: usize,
    },
}

impl WireError {
    /// The IKE Notify type to answer with, for an error found parsing an IKE
    /// message (RFC 7296 3.10.1): `UNSUPPORTED_CRITICAL_PAYLOAD`,
    /// `INVALID_MAJOR_VERSION` or `INVALID_SYNTAX`. `None` for errors that have
    /// no IKE meaning (ESP padding, emit errors).
    ///
    /// Whether to answer at all is the state machine's decision: RFC 7296 2.21
    /// has most errors in unauthenticated messages dropped silently.
    pub fn notify_type(&self) -> Option<NotifyType> {
        match self {
            WireError::UnsupportedCritical(_) => Some(NotifyType::UnsupportedCriticalPayload),
            WireError::BadVersion { .. } => Some(NotifyType::InvalidMajorVersion),
            WireError::Truncated { .. }
            | WireError::BadLength { .. }
            | WireError::TrailingBytes { .. }
            | WireError::Malformed { .. } => Some(NotifyType::InvalidSyntax),
            WireError::BadPadding | WireError::ZeroSpi | WireError::TooLong { .. } => None,
        }
    }

    /// The Notification Data to send with [`WireError::notify_type`]: for
    /// `UNSUPPORTED_CRITICAL_PAYLOAD`, the one-octet payload type (RFC 7296
    /// 3.10.1); empty otherwise.
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            WireError::UnsupportedCritical(t) => vec![u8::from(*t)],
            _ => Vec::new(),
        }
    }
}

/// A bounds-checked cursor over a byte slice (rustls's `Reader`): every read
/// returns `Truncated` instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.left() == 0
    }

    /// How far the cursor is from the start.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let have = self.left();
        let end = self
            .pos
            .checked_add(n)
            .filter(|_| n <= have)
            .ok_or(WireError::Truncated {
                what,
                need: n,
                have,
            })?;
        let out = self.buf.get(self.pos..end).ok_or(WireError::Truncated {
            what,
            need: n,
            have,
        })?;
        self.pos = end;
        Ok(out)
    }

    /// The next `n` bytes as a cursor of their own.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, WireError> {
        self.take(n, what).map(Reader::new)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    /// Fixed-size array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], WireError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.array::<1>(what).map(|[b]| b)
    }

    /// A big-endian u16.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// Fails with `TrailingBytes` unless everything has been read.
    pub(crate) fn expect_empty(&self, what: &'static str) -> Result<(), WireError> {
        match self.left() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { what, extra }),
        }
    }
}

/// Writes `len` big-endian into the two bytes at `at`, failing with `TooLong`
/// when it does not fit in a u16 (emit side of a length prefix).
pub(crate) fn patch_u16(
    out: &mut [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<(), WireError> {
    let v = u16::try_from(len).map_err(|_| WireError::TooLong {
        what,
        len,
        max: u16::MAX as usize,
    })?;
    match out.get_mut(at..at + 2) {
        Some(dst) => {
            dst.copy_from_slice(&v.to_be_bytes());
            Ok(())
        }
        None => Err(WireError::Malformed {
            what,
            why: "length field outside the output buffer",
        }),
    }
}

/// A length that must fit in a u8 field (SPI sizes).
pub(crate) fn len_u8(len: usize, what: &'static str) -> Result<u8, WireError> {
    u8::try_from(len).map_err(|_| WireError::TooLong {
        what,
        len,
        max: u8::MAX as usize,
    })
}

/// An encrypted body split for the negotiated algorithm: the SK payload of
/// RFC 7296 3.14 or the ESP payload of RFC 4303 2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherParts<'a> {
    /// Initialization Vector.
    pub iv: &'a [u8],
    /// Ciphertext (for SK and ESP, the padded plaintext encrypted).
    pub ciphertext: &'a [u8],
    /// Integrity Check Value.
    pub icv: &'a [u8],
}

/// Splits an encrypted body into IV, ciphertext and ICV given the IV and ICV
/// lengths of the negotiated algorithm. Fails with `Truncated` when the body
/// is shorter than `iv_len + icv_len`.
pub fn split_iv_ct_icv(
    body: &[u8],
    iv_len: usize,
    icv_len: usize,
) -> Result<CipherParts<'_>, WireError> {
    let need = iv_len.saturating_add(icv_len);
    if body.len() < need {
        return Err(WireError::Truncated {
            what: "encrypted body (IV + ICV)",
            need,
            have: body.len(),
        });
    }
    let (iv, rest) = body.split_at(iv_len);
    let (ciphertext, icv) = rest.split_at(rest.len() - icv_len);
    Ok(CipherParts {
        iv,
        ciphertext,
        icv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_overreads() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x").unwrap(), 0x0102);
        assert_eq!(
            r.u16("x"),
            Err(WireError::Truncated {
                what: "x",
                need: 2,
                have: 1
            })
        );
        assert_eq!(
            r.take(usize::MAX, "x").unwrap_err().notify_type(),
            Some(NotifyType::InvalidSyntax)
        );
        assert_eq!(r.u8("x").unwrap(), 3);
        assert!(r.is_empty());
        assert_eq!(r.rest(), &[] as &[u8]);
    }

    #[test]
    fn split_body() {
        let body = [1u8, 2, 3, 4, 5, 6, 7];
        let p = split_iv_ct_icv(&body, 2, 3).unwrap();
        assert_eq!(
            (p.iv, p.ciphertext, p.icv),
            (&[1u8, 2][..], &[3u8, 4][..], &[5u8, 6, 7][..])
        );
        assert!(split_iv_ct_icv(&body, 4, 4).is_err());
        assert!(split_iv_ct_icv(&body, usize::MAX, 4).is_err());
        let p = split_iv_ct_icv(&body, 3, 4).unwrap();
        assert_eq!((p.iv.len(), p.ciphertext.len(), p.icv.len()), (3, 0, 4));
    }

    #[test]
    fn notify_mapping() {
        let e = WireError::UnsupportedCritical(PayloadType::Unknown(200));
        assert_eq!(
            e.notify_type(),
            Some(NotifyType::UnsupportedCriticalPayload)
        );
        assert_eq!(e.notify_data(), vec![200]);
        let e = WireError::BadVersion { major: 3, minor: 0 };
        assert_eq!(e.notify_type(), Some(NotifyType::InvalidMajorVersion));
        assert_eq!(WireError::BadPadding.notify_type(), None);
    }
}
