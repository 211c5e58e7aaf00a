//! The IKEv2 message: header (RFC 7296 3.1) and payload chain (3.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`IkePacket`] is a zero-copy view (for a quick look at SPIs and the
//! message ID before anything else); [`Message`] is the owned form, with
//! [`Message::parse`] and [`Message::emit`] filling Length and the Next
//! Payload chain. [`encrypted_span`] locates the SK payload in a raw message
//! for the crypto layer (the ICV and AEAD associated data cover the bytes
//! before it, RFC 7296 3.14 and RFC 5282 5.1).

use core::ops::Range;

use super::ike_enums::{ExchangeType, NotifyType, PayloadType};
use super::ike_payloads::{
    emit_payload_chain, find_notify, parse_payload_chain, payload_chain_len, EncryptedPayload,
    NotifyPayload, Payload, GENERIC_HEADER_LEN,
};
use super::{Field, Reader, Rest, WireError};

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;

/// The major version this implementation speaks (RFC 7296 3.1).
pub const MAJOR_VERSION: u8 = 2;

/// The version octet we send: major 2, minor 0.
const VERSION_OCTET: u8 = MAJOR_VERSION << 4;

/// Flags octet bits (RFC 7296 3.1: `|X|X|R|V|I|X|X|X|`, most significant first).
const FLAG_I: u8 = 0x08;
const FLAG_V: u8 = 0x10;
const FLAG_R: u8 = 0x20;

mod field {
    use super::{Field, Rest};
    pub const SPI_I: Field = 0..8;
    pub const SPI_R: Field = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE_TYPE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Field = 20..24;
    pub const LENGTH: Field = 24..28;
    pub const PAYLOADS: Rest = 28..;
}

/// The header flags (RFC 7296 3.1). The other bits are sent as zero and
/// ignored on receipt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// I (Initiator): set by the original initiator of the IKE SA.
    pub initiator: bool,
    /// R (Response): set in responses.
    pub response: bool,
    /// V (Version): the sender can speak a higher major version.
    pub version: bool,
}

impl Flags {
    /// From the flags octet.
    pub fn from_octet(b: u8) -> Self {
        Flags {
            initiator: b & FLAG_I != 0,
            response: b & FLAG_R != 0,
            version: b & FLAG_V != 0,
        }
    }

    /// To the flags octet.
    pub fn to_octet(self) -> u8 {
        (if self.initiator { FLAG_I } else { 0 })
            | (if self.response { FLAG_R } else { 0 })
            | (if self.version { FLAG_V } else { 0 })
    }
}

/// A zero-copy view of an IKE message (RFC 7296 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IkePacket<T> {
    /// Wraps a buffer without checking: the getters panic when it is shorter
    /// than the header. Prefer [`Self::new_checked`].
    pub fn new_unchecked(buffer: T) -> Self {
        IkePacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`]; no getter panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header and that Length is at least
    /// the header and at most the buffer. (A longer buffer is allowed here,
    /// for stream framing; [`Message::parse`] wants them equal.)
    pub fn check_len(&self) -> Result<(), WireError> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IKE header",
                need: HEADER_LEN,
                have,
            });
        }
        let len = self.length() as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadLength {
                what: "IKE Length below the header",
                len,
                have: HEADER_LEN,
            });
        }
        if len > have {
            return Err(WireError::BadLength {
                what: "IKE Length past the end of the datagram",
                len,
                have,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read<const N: usize>(&self, f: Field) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buffer.as_ref()[f]);
        a
    }

    /// IKE SA Initiator's SPI.
    pub fn spi_i(&self) -> u64 {
        u64::from_be_bytes(self.read(field::SPI_I))
    }

    /// IKE SA Responder's SPI (zero in the first message).
    pub fn spi_r(&self) -> u64 {
        u64::from_be_bytes(self.read(field::SPI_R))
    }

    /// Next Payload: the type of the first payload.
    pub fn next_payload(&self) -> PayloadType {
        self.buffer.as_ref()[field::NEXT_PAYLOAD].into()
    }

    /// Major version (MjVer).
    pub fn major_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    /// Minor version (MnVer), to be ignored (RFC 7296 3.1).
    pub fn minor_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] & 0x0f
    }

    /// Exchange Type.
    pub fn exchange_type(&self) -> ExchangeType {
        self.buffer.as_ref()[field::EXCHANGE_TYPE].into()
    }

    /// Flags.
    pub fn flags(&self) -> Flags {
        Flags::from_octet(self.buffer.as_ref()[field::FLAGS])
    }

    /// Message ID.
    pub fn message_id(&self) -> u32 {
        u32::from_be_bytes(self.read(field::MESSAGE_ID))
    }

    /// Length of the whole message, header included.
    pub fn length(&self) -> u32 {
        u32::from_be_bytes(self.read(field::LENGTH))
    }

    /// The payload bytes: after the header, up to Length.
    pub fn payloads(&self) -> &[u8] {
        let end = self.length() as usize;
        &self.buffer.as_ref()[field::PAYLOADS.start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IkePacket<T> {
    /// Sets the initiator's SPI.
    pub fn set_spi_i(&mut self, v: u64) {
        self.buffer.as_mut()[field::SPI_I].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the responder's SPI.
    pub fn set_spi_r(&mut self, v: u64) {
        self.buffer.as_mut()[field::SPI_R].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets Next Payload.
    pub fn set_next_payload(&mut self, t: PayloadType) {
        self.buffer.as_mut()[field::NEXT_PAYLOAD] = t.into();
    }

    /// Sets the version octet to 2.0.
    pub fn set_version(&mut self) {
        self.buffer.as_mut()[field::VERSION] = VERSION_OCTET;
    }

    /// Sets Exchange Type.
    pub fn set_exchange_type(&mut self, t: ExchangeType) {
        self.buffer.as_mut()[field::EXCHANGE_TYPE] = t.into();
    }

    /// Sets Flags (other bits cleared).
    pub fn set_flags(&mut self, f: Flags) {
        self.buffer.as_mut()[field::FLAGS] = f.to_octet();
    }

    /// Sets Message ID.
    pub fn set_message_id(&mut self, v: u32) {
        self.buffer.as_mut()[field::MESSAGE_ID].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets Length.
    pub fn set_length(&mut self, v: u32) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
}

/// The header fields a sender chooses: everything but Next Payload and
/// Length, which [`Message::emit`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderRepr {
    /// IKE SA Initiator's SPI (never zero, RFC 7296 3.1).
    pub spi_i: u64,
    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Exchange Type.
    pub exchange_type: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
}

impl HeaderRepr {
    /// Reads the header of a checked packet. A major version other than 2 is
    /// an error (RFC 7296 3.1: "If the major version number is larger than 2,
    /// the recipient MUST drop the message or respond with
    /// INVALID_MAJOR_VERSION"; version 1 is IKEv1); the minor version is
    /// ignored.
    pub fn parse<T: AsRef<[u8]>>(p: &IkePacket<T>) -> Result<Self, WireError> {
        if p.major_version() != MAJOR_VERSION {
            return Err(WireError::BadVersion {
                major: p.major_version(),
                minor: p.minor_version(),
            });
        }
        Ok(HeaderRepr {
            spi_i: p.spi_i(),
            spi_r: p.spi_r(),
            exchange_type: p.exchange_type(),
            flags: p.flags(),
            message_id: p.message_id(),
        })
    }

    /// Length on the wire.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, with the Next Payload and Length given.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut IkePacket<T>,
        next_payload: PayloadType,
        length: u32,
    ) {
        p.set_spi_i(self.spi_i);
        p.set_spi_r(self.spi_r);
        p.set_next_payload(next_payload);
        p.set_version();
        p.set_exchange_type(self.exchange_type);
        p.set_flags(self.flags);
        p.set_message_id(self.message_id);
        p.set_length(length);
    }
}

/// A whole IKE message: header and payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: HeaderRepr,
    /// The payloads in order; an SK payload, if any, is last and still
    /// encrypted.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (without the port-4500 non-ESP marker) into a
    /// message. Length must equal the datagram's size, the version must be
    /// 2, and the payload chain must fill the message exactly.
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        let p = IkePacket::new_checked(bytes)?;
        if p.length() as usize != bytes.len() {
            return Err(WireError::BadLength {
                what: "IKE Length disagrees with the datagram",
                len: p.length() as usize,
                have: bytes.len(),
            });
        }
        let header = HeaderRepr::parse(&p)?;
        let payloads = parse_payload_chain(p.next_payload(), p.payloads())?;
        Ok(Message { header, payloads })
    }

    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + payload_chain_len(&self.payloads)
    }

    /// Appends the message to `out`, filling Length and every Next Payload.
    /// On error (a field too long for its length, SK not last) `out` is left
    /// as it was.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        let res = emit_payload_chain(&self.payloads, out).and_then(|first| {
            let total = out.len() - start;
            let len = u32::try_from(total).map_err(|_| WireError::TooLong {
                what: "IKE message",
                len: total,
                max: u32::MAX as usize,
            })?;
            let hdr = out
                .get_mut(start..start + HEADER_LEN)
                .ok_or(WireError::Malformed {
                    what: "IKE header",
                    why: "outside the output buffer",
                })?;
            self.header
                .emit(&mut IkePacket::new_unchecked(hdr), first, len);
            Ok(())
        });
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    /// The message as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::with_capacity(self.buffer_len());
        self.emit(&mut v)?;
        Ok(v)
    }

    /// The first Notify of a type among the (unencrypted) payloads.
    pub fn notify(&self, t: NotifyType) -> Option<&NotifyPayload> {
        find_notify(&self.payloads, t)
    }

    /// The SK payload, if the message has one.
    pub fn encrypted(&self) -> Option<&EncryptedPayload> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Encrypted(e) => Some(e),
            _ => None,
        })
    }
}

/// Where the SK (or SKF) payload sits in a raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedSpan {
    /// SK or SKF.
    pub payload_type: PayloadType,
    /// The type of the first inner payload (the SK's Next Payload).
    pub inner_next_payload: PayloadType,
    /// Offset of the SK generic payload header.
    pub header_start: usize,
    /// The encrypted body: IV, ciphertext and ICV. Everything before
    /// `body.start` is the AEAD associated data (RFC 5282 5.1) and, with the
    /// ciphertext, what the ICV covers (RFC 7296 3.14).
    pub body: Range<usize>,
}

/// Locates the SK or SKF payload in a raw IKE message by walking the
/// generic payload headers, without decoding the payloads. `None` when the
/// message has none. Errors as [`Message::parse`] would on the header and the
/// chain's lengths.
pub fn encrypted_span(msg: &[u8]) -> Result<Option<EncryptedSpan>, WireError> {
    let p = IkePacket::new_checked(msg)?;
    if p.length() as usize != msg.len() {
        return Err(WireError::BadLength {
            what: "IKE Length disagrees with the datagram",
            len: p.length() as usize,
            have: msg.len(),
        });
    }
    let mut r = Reader::new(p.payloads());
    let mut this = p.next_payload();
    while this != PayloadType::NoNext {
        let header_start = HEADER_LEN + r.pos();
        let [np, _flags, l0, l1] = r.array::<4>("generic payload header")?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < GENERIC_HEADER_LEN || len - GENERIC_HEADER_LEN > r.left() {
            return Err(WireError::BadLength {
                what: "payload length",
                len,
                have: GENERIC_HEADER_LEN + r.left(),
            });
        }
        let body = r.take(len - GENERIC_HEADER_LEN, "payload body")?;
        let body_start = header_start + GENERIC_HEADER_LEN;
        match this {
            PayloadType::Sk | PayloadType::Skf => {
                let skip = if this == PayloadType::Skf { 4 } else { 0 };
                if body.len() < skip {
                    return Err(WireError::Truncated {
                        what: "SKF payload",
                        need: skip,
                        have: body.len(),
                    });
                }
                r.expect_empty("after the Encrypted payload")?;
                return Ok(Some(EncryptedSpan {
                    payload_type: this,
                    inner_next_payload: np.into(),
                    header_start,
                    body: body_start + skip..body_start + body.len(),
                }));
            }
            _ => this = np.into(),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ike_enums::*;
    use crate::wire::ike_payloads::*;
    use proptest::prelude::*;

    /// An IKE_SA_INIT request as strongSwan sends it for
    /// `aes128-sha1-modp2048` behind a NAT, laid out by hand from RFC 7296:
    /// SA (one IKE proposal), KE (group 14, 256 octets), Nonce (32 octets),
    /// NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP (SHA-1, 20
    /// octets each). Built by `ike_sa_init_bytes`, checked byte by byte at
    /// the fixed offsets below.
    fn ike_sa_init_bytes() -> Vec<u8> {
        let mut v = Vec::new();
        // Header: SPIi, SPIr = 0, Next Payload SA (33), version 2.0,
        // IKE_SA_INIT (34), flags I (0x08), message ID 0, length (patched).
        v.extend_from_slice(&[0x8f, 0x3c, 0x6a, 0x1e, 0x22, 0x51, 0x9d, 0x04]);
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
        // SA: next KE (34), length 48.
        v.extend_from_slice(&[34, 0, 0, 48]);
        v.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x2c, 0x01, 0x01, 0x00, 0x04, //
            0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x0c, 0x80, 0x0e, 0x00, 0x80, //
            0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x02, //
            0x03, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x02, //
            0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x0e,
        ]);
        // KE: next Nonce (40), length 8 + 256, group 14.
        v.extend_from_slice(&[40, 0, 0x01, 0x08, 0x00, 0x0e, 0x00, 0x00]);
        v.extend((0..256u32).map(|i| (i * 7 + 3) as u8));
        // Nonce: next Notify (41), length 4 + 32.
        v.extend_from_slice(&[41, 0, 0, 36]);
        v.extend((0..32u8).map(|i| i ^ 0x5a));
        // Notify NAT_DETECTION_SOURCE_IP: next Notify, length 8 + 20.
        v.extend_from_slice(&[41, 0, 0, 28, 0, 0, 0x40, 0x04]);
        v.extend_from_slice(&[0x11; 20]);
        // Notify NAT_DETECTION_DESTINATION_IP: last, length 28.
        v.extend_from_slice(&[0, 0, 0, 28, 0, 0, 0x40, 0x05]);
        v.extend_from_slice(&[0x22; 20]);
        let len = v.len() as u32;
        v[24..28].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn ike_sa_init_repr() -> Message {
        Message {
            header: HeaderRepr {
                spi_i: 0x8f3c_6a1e_2251_9d04,
                spi_r: 0,
                exchange_type: ExchangeType::IkeSaInit,
                flags: Flags {
                    initiator: true,
                    response: false,
                    version: false,
                },
                message_id: 0,
            },
            payloads: vec![
                Payload::Sa(SaPayload {
                    proposals: vec![Proposal {
                        number: 1,
                        protocol: ProtocolId::Ike,
                        spi: vec![],
                        transforms: vec![
                            Transform::with_key_length(TransformId::Encr(EncrId::AesCbc), 128),
                            Transform::new(TransformId::Prf(PrfId::HmacSha1)),
                            Transform::new(TransformId::Integ(IntegId::HmacSha1_96)),
                            Transform::new(TransformId::Dh(DhGroup::Modp2048)),
                        ],
                    }],
                }),
                Payload::Ke(KePayload {
                    group: DhGroup::Modp2048,
                    data: (0..256u32).map(|i| (i * 7 + 3) as u8).collect(),
                }),
                Payload::Nonce((0..32u8).map(|i| i ^ 0x5a).collect()),
                Payload::Notify(NotifyPayload::new(
                    NotifyType::NatDetectionSourceIp,
                    vec![0x11; 20],
                )),
                Payload::Notify(NotifyPayload::new(
                    NotifyType::NatDetectionDestinationIp,
                    vec![0x22; 20],
                )),
            ],
        }
    }

    #[test]
    fn test_ike_sa_init_layout() {
        let b = ike_sa_init_bytes();
        assert_eq!(b.len(), 28 + 48 + 264 + 36 + 28 + 28);
        assert_eq!(&b[24..28], &[0, 0, 0x01, 0xb0]); // 432
    }

    #[test]
    fn test_parse() {
        let b = ike_sa_init_bytes();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m, ike_sa_init_repr());
        assert_eq!(
            m.notify(NotifyType::NatDetectionDestinationIp)
                .unwrap()
                .data,
            [0x22; 20]
        );
        assert!(m.notify(NotifyType::Cookie).is_none());
        assert!(m.encrypted().is_none());

        let p = IkePacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.spi_i(), 0x8f3c_6a1e_2251_9d04);
        assert_eq!(p.spi_r(), 0);
        assert_eq!(p.next_payload(), PayloadType::Sa);
        assert_eq!((p.major_version(), p.minor_version()), (2, 0));
        assert_eq!(p.exchange_type(), ExchangeType::IkeSaInit);
        assert_eq!(p.message_id(), 0);
        assert_eq!(p.length(), 432);
        assert_eq!(p.payloads().len(), 432 - 28);
    }

    #[test]
    fn test_emit() {
        let m = ike_sa_init_repr();
        let mut out = vec![];
        m.emit(&mut out).unwrap();
        assert_eq!(out, ike_sa_init_bytes());
        assert_eq!(m.buffer_len(), out.len());
        // Appends after what is already there.
        let mut out = vec![1, 2, 3];
        m.emit(&mut out).unwrap();
        assert_eq!(&out[3..], &ike_sa_init_bytes()[..]);
        assert_eq!(m.to_bytes().unwrap(), ike_sa_init_bytes());
    }

    #[test]
    fn test_check_len() {
        let b = ike_sa_init_bytes();
        for n in 0..b.len() {
            assert!(Message::parse(&b[..n]).is_err(), "prefix {n}");
        }
        assert!(matches!(
            IkePacket::new_checked(&b[..27]),
            Err(WireError::Truncated { .. })
        ));
        // Length below the header.
        let mut c = b.clone();
        c[24..28].copy_from_slice(&27u32.to_be_bytes());
        assert!(matches!(
            Message::parse(&c),
            Err(WireError::BadLength { .. })
        ));
        // Length shorter than the datagram.
        let mut c = b.clone();
        c.push(0);
        let e = Message::parse(&c).unwrap_err();
        assert!(matches!(e, WireError::BadLength { .. }));
        assert_eq!(e.notify_type(), Some(NotifyType::InvalidSyntax));
        // ... which the view allows (stream framing).
        assert!(IkePacket::new_checked(&c[..]).is_ok());
        // Length past the datagram.
        let mut c = b.clone();
        c[24..28].copy_from_slice(&433u32.to_be_bytes());
        assert!(matches!(
            Message::parse(&c),
            Err(WireError::BadLength { .. })
        ));
        assert!(IkePacket::new_checked(&c[..]).is_err());
    }

    #[test]
    fn test_version() {
        let mut b = ike_sa_init_bytes();
        b[17] = 0x10; // IKEv1
        assert_eq!(
            Message::parse(&b),
            Err(WireError::BadVersion { major: 1, minor: 0 })
        );
        b[17] = 0x30;
        let e = Message::parse(&b).unwrap_err();
        assert_eq!(e.notify_type(), Some(NotifyType::InvalidMajorVersion));
        // The minor version is ignored; emit sends 2.0.
        b[17] = 0x27;
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.to_bytes().unwrap(), ike_sa_init_bytes());
    }

    #[test]
    fn test_flags() {
        for b in 0..=255u8 {
            let f = Flags::from_octet(b);
            assert_eq!(f.to_octet(), b & 0x38);
        }
        let f = Flags {
            initiator: false,
            response: true,
            version: false,
        };
        assert_eq!(f.to_octet(), 0x20);
        let f = Flags {
            initiator: true,
            response: true,
            version: true,
        };
        assert_eq!(f.to_octet(), 0x38);
    }

    #[test]
    fn test_unsupported_critical() {
        // Append a critical payload of type 99 after the last Notify.
        let mut b = ike_sa_init_bytes();
        let last_notify = b.len() - 28;
        b[last_notify] = 99;
        b.extend_from_slice(&[0, 0x80, 0, 5, 0xee]);
        let len = b.len() as u32;
        b[24..28].copy_from_slice(&len.to_be_bytes());
        let e = Message::parse(&b).unwrap_err();
        assert_eq!(e, WireError::UnsupportedCritical(PayloadType::Unknown(99)));
        assert_eq!(
            e.notify_type(),
            Some(NotifyType::UnsupportedCriticalPayload)
        );
        // Not critical: kept raw, and emitted as it was.
        let i = b.len() - 4;
        b[i] = 0;
        let m = Message::parse(&b).unwrap();
        assert_eq!(
            m.payloads.last(),
            Some(&Payload::Raw(RawPayload {
                payload_type: PayloadType::Unknown(99),
                critical: false,
                body: vec![0xee],
            }))
        );
        assert_eq!(m.to_bytes().unwrap(), b);
    }

    /// An IKE_AUTH request as it leaves the wire: header, then SK with an
    /// inner first payload IDi, a 16-octet IV, 48 octets of ciphertext and a
    /// 12-octet ICV (AES-CBC with HMAC-SHA1-96).
    fn ike_auth_bytes() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0x8f3c_6a1e_2251_9d04u64.to_be_bytes());
        v.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        v.extend_from_slice(&[46, 0x20, 35, 0x08, 0, 0, 0, 1]);
        v.extend_from_slice(&(28u32 + 4 + 16 + 48 + 12).to_be_bytes());
        v.extend_from_slice(&[35, 0, 0, 4 + 16 + 48 + 12]);
        v.extend_from_slice(&[0xa0; 16]);
        v.extend_from_slice(&[0xc0; 48]);
        v.extend_from_slice(&[0x1c; 12]);
        v
    }

    #[test]
    fn test_encrypted() {
        let b = ike_auth_bytes();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.header.exchange_type, ExchangeType::IkeAuth);
        assert_eq!(m.header.message_id, 1);
        let sk = m.encrypted().unwrap();
        assert_eq!(sk.next_payload, PayloadType::IdI);
        let crate::wire::CipherParts {
            iv,
            ciphertext: ct,
            icv,
        } = sk.split(16, 12).unwrap();
        assert_eq!(
            (iv, ct, icv),
            (&[0xa0; 16][..], &[0xc0; 48][..], &[0x1c; 12][..])
        );
        assert_eq!(m.to_bytes().unwrap(), b);

        let span = encrypted_span(&b).unwrap().unwrap();
        assert_eq!(span.payload_type, PayloadType::Sk);
        assert_eq!(span.inner_next_payload, PayloadType::IdI);
        assert_eq!(span.header_start, 28);
        assert_eq!(span.body, 32..b.len());
        assert_eq!(&b[span.body.clone()], &sk.data[..]);
        assert_eq!(encrypted_span(&ike_sa_init_bytes()).unwrap(), None);

        // Bytes after SK: error.
        let mut c = b.clone();
        c.push(0);
        let len = c.len() as u32;
        c[24..28].copy_from_slice(&len.to_be_bytes());
        assert!(Message::parse(&c).is_err());
        assert!(encrypted_span(&c).is_err());
    }

    #[test]
    fn test_build_encrypted_message() {
        // How the crypto layer builds a protected message: emit the inner
        // chain, pad, encrypt (here: identity), wrap in SK, emit, then fill
        // the ICV over everything before it.
        let inner = vec![
            Payload::IdI(IdPayload::from(&Identity::Ipv4(
                "192.0.2.1".parse().unwrap(),
            ))),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SharedKeyMic,
                data: vec![0x33; 20],
            }),
            Payload::TsI(TsPayload {
                selectors: vec![TrafficSelector::ipv4_any()],
            }),
        ];
        let mut plain = Vec::new();
        let first = emit_payload_chain(&inner, &mut plain).unwrap();
        push_sk_padding(&mut plain, 16).unwrap();
        assert_eq!(plain.len() % 16, 0);
        let sk = EncryptedPayload::from_parts(first, &[9; 16], &plain, &[0; 12]);
        let m = Message {
            header: HeaderRepr {
                spi_i: 1,
                spi_r: 2,
                exchange_type: ExchangeType::IkeAuth,
                flags: Flags {
                    initiator: true,
                    ..Flags::default()
                },
                message_id: 1,
            },
            payloads: vec![Payload::Encrypted(sk)],
        };
        let mut out = m.to_bytes().unwrap();
        let span = encrypted_span(&out).unwrap().unwrap();
        let icv_at = span.body.end - 12;
        out[icv_at..].copy_from_slice(&[0x77; 12]);

        let back = Message::parse(&out).unwrap();
        let sk = back.encrypted().unwrap();
        let crate::wire::CipherParts {
            ciphertext: ct,
            icv,
            ..
        } = sk.split(16, 12).unwrap();
        assert_eq!(icv, &[0x77; 12]);
        let chain = parse_payload_chain(sk.next_payload, strip_sk_padding(ct).unwrap()).unwrap();
        assert_eq!(chain, inner);
    }

    proptest! {
        #[test]
        fn message_round_trips(
            spi_i: u64, spi_r: u64, et: u8, fl: u8, message_id: u32,
            payloads in crate::wire::ike_payloads::arb::chain(),
        ) {
            let m = Message {
                header: HeaderRepr {
                    spi_i,
                    spi_r,
                    exchange_type: et.into(),
                    flags: Flags::from_octet(fl),
                    message_id,
                },
                payloads,
            };
            let b = m.to_bytes().unwrap();
            prop_assert_eq!(b.len(), m.buffer_len());
            let back = Message::parse(&b).unwrap();
            prop_assert_eq!(&back, &m);
            let span = encrypted_span(&b).unwrap();
            prop_assert_eq!(span.is_some(), m.payloads.last().is_some_and(Payload::is_encrypted));
        }

        #[test]
        fn mutated_messages_never_panic(
            payloads in crate::wire::ike_payloads::arb::chain(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let m = Message {
                header: HeaderRepr {
                    spi_i: 1,
                    spi_r: 2,
                    exchange_type: ExchangeType::IkeAuth,
                    flags: Flags::default(),
                    message_id: 3,
                },
                payloads,
            };
            let b = m.to_bytes().unwrap();
            // Every strict prefix fails cleanly.
            prop_assert!(Message::parse(&b[..cut.index(b.len())]).is_err());
            // Random byte changes (Length kept consistent, to reach the
            // payloads) never panic; if they parse, they re-emit.
            let mut c = b.clone();
            for (i, v) in &flips {
                let i = i.index(c.len());
                if !(24..28).contains(&i) {
                    c[i] = *v;
                }
            }
            let _ = encrypted_span(&c);
            if let Ok(m2) = Message::parse(&c) {
                let again = m2.to_bytes().unwrap();
                prop_assert_eq!(Message::parse(&again).unwrap(), m2);
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::parse(&bytes);
            let _ = encrypted_span(&bytes);
            if let Ok(p) = IkePacket::new_checked(&bytes[..]) {
                let _ = (p.spi_i(), p.spi_r(), p.payloads(), p.flags(), p.exchange_type());
            }
        }

        #[test]
        fn parse_never_panics_with_valid_header(
            tail in proptest::collection::vec(any::<u8>(), 0..600),
            np in crate::wire::ike_payloads::arb::payload_type(),
        ) {
            // A well-formed header in front of random payload bytes, to get
            // past the header checks.
            let mut b = ike_sa_init_bytes()[..28].to_vec();
            b[16] = np.into();
            b.extend_from_slice(&tail);
            let len = b.len() as u32;
            b[24..28].copy_from_slice(&len.to_be_bytes());
            let _ = Message::parse(&b);
            let _ = encrypted_span(&b);
        }

        #[test]
        fn truncations_and_flips_never_panic(
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            for b in [ike_sa_init_bytes(), ike_auth_bytes()] {
                let n = cut.index(b.len());
                prop_assert!(Message::parse(&b[..n]).is_err());
                let _ = encrypted_span(&b[..n]);
                let mut c = b.clone();
                c[flip.index(b.len())] ^= 1 << bit;
                let _ = Message::parse(&c);
                let _ = encrypted_span(&c);
            }
        }
    }
}
