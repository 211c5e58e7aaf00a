//! IKEv2 payloads (RFC 7296 3.2-3.14) and payload chains.
//!
//! - The generic payload header (3.2): [`PayloadPacket`], and the critical bit
//!   (2.5): a payload of a type this module does not decode is kept raw
//!   ([`RawPayload`]) unless its critical bit is set, which is a parse error
//!   ([`WireError::UnsupportedCritical`]).
//! - Security Association (3.3) with proposals, transforms and transform
//!   attributes (3.3.1, 3.3.2, 3.3.5): [`SaPayload`].
//! - Key Exchange (3.4), Identification (3.5), Authentication (3.8), Nonce
//!   (3.9), Notify (3.10), Delete (3.11), Vendor ID (3.12), Traffic Selectors
//!   (3.13), Encrypted and Authenticated (3.14) and its fragment (RFC 7383
//!   2.5).
//! - Chains: [`parse_payload_chain`] and [`emit_payload_chain`], used for a
//!   whole message and for the plaintext of an SK payload after decryption.
//!
//! Reserved fields are sent as zero and ignored on receipt (RFC 7296 2.5).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ike_enums::*;
use super::{len_u8, patch_u16, Field, Reader, Rest, WireError};

/// Length of the generic payload header (RFC 7296 3.2).
pub const GENERIC_HEADER_LEN: usize = 4;

/// The critical bit in the second octet of the generic payload header.
const CRITICAL: u8 = 0x80;

/// Transform attribute format bit: set for TV (type/value), clear for TLV.
const ATTR_TV: u16 = 0x8000;

/// "Last Substruc" of a proposal that is followed by another one (3.3.1).
const MORE_PROPOSALS: u8 = 2;
/// "Last Substruc" of a transform that is followed by another one (3.3.2).
const MORE_TRANSFORMS: u8 = 3;

/// Smallest nonce a peer may send (RFC 7296 2.10: "at least 128 bits").
pub const NONCE_MIN_LEN: usize = 16;
/// Largest nonce a peer may send (RFC 7296 3.9: "at most 256 octets").
pub const NONCE_MAX_LEN: usize = 256;

mod field {
    use super::{Field, Rest};
    pub const NEXT_PAYLOAD: usize = 0;
    pub const FLAGS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const BODY: Rest = 4..;
}

/// A zero-copy view of one payload: the generic payload header (RFC 7296
/// 3.2) and its body.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PayloadPacket<T> {
    /// Wraps a buffer without checking it: the getters panic if it is
    /// shorter than its header or its length field. Prefer [`Self::new_checked`].
    pub fn new_unchecked(buffer: T) -> Self {
        PayloadPacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`]; nothing panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the header, that the Payload Length is
    /// at least the header's and at most the buffer's.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        if buf.len() < GENERIC_HEADER_LEN {
            return Err(WireError::Truncated {
                what: "generic payload header",
                need: GENERIC_HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = usize::from(self.length());
        if len < GENERIC_HEADER_LEN {
            return Err(WireError::BadLength {
                what: "payload length below the generic header",
                len,
                have: GENERIC_HEADER_LEN,
            });
        }
        if len > buf.len() {
            return Err(WireError::BadLength {
                what: "payload length past the end of the message",
                len,
                have: buf.len(),
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Payload: the type of the payload after this one (for SK, the type
    /// of the first payload inside it).
    pub fn next_payload(&self) -> PayloadType {
        PayloadType::from(self.buffer.as_ref()[field::NEXT_PAYLOAD])
    }

    /// The critical bit.
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & CRITICAL != 0
    }

    /// Payload Length, header included.
    pub fn length(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The body: the bytes after the generic header, up to Payload Length.
    pub fn body(&self) -> &[u8] {
        let end = usize::from(self.length());
        &self.buffer.as_ref()[field::BODY.start..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PayloadPacket<T> {
    /// Sets Next Payload.
    pub fn set_next_payload(&mut self, t: PayloadType) {
        self.buffer.as_mut()[field::NEXT_PAYLOAD] = t.into();
    }

    /// Sets the critical bit and clears the reserved bits.
    pub fn set_critical(&mut self, critical: bool) {
        self.buffer.as_mut()[field::FLAGS] = if critical { CRITICAL } else { 0 };
    }

    /// Sets Payload Length.
    pub fn set_length(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------
// Security Association (3.3)
// ---------------------------------------------------------------------------

/// Security Association payload (RFC 7296 3.3): one or more proposals, in
/// order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    /// The proposals; RFC 7296 requires at least one, numbered from 1.
    pub proposals: Vec<Proposal>,
}

/// Proposal substructure (RFC 7296 3.3.1).
///
/// ```text
/// | Last Substruc |   RESERVED    |         Proposal Length       |
/// | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
/// ~                        SPI (variable)                         ~
/// ~                        <Transforms>                           ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal Num: 1 for the first, then the same or one more.
    pub number: u8,
    /// The protocol being negotiated (IKE, AH, ESP).
    pub protocol: ProtocolId,
    /// The sender's SPI: empty in IKE_SA_INIT, 8 octets when rekeying an IKE
    /// SA, 4 octets for ESP and AH.
    pub spi: Vec<u8>,
    /// The transforms offered.
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// The transforms of one type (all ENCR, all PRF, ...).
    pub fn transforms_of(&self, t: TransformType) -> impl Iterator<Item = &Transform> + '_ {
        self.transforms
            .iter()
            .filter(move |x| x.id.transform_type() == t)
    }

    /// The SPI as a u32 when it is 4 octets long (ESP and AH).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The SPI as a u64 when it is 8 octets long (IKE SA rekey).
    pub fn spi_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.spi.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    }
}

/// Transform substructure (RFC 7296 3.3.2).
///
/// ```text
/// | Last Substruc |   RESERVED    |        Transform Length       |
/// |Transform Type |   RESERVED    |          Transform ID         |
/// ~                      Transform Attributes                     ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// Transform Type and Transform ID together.
    pub id: TransformId,
    /// Attributes (in practice only Key Length).
    pub attributes: Vec<TransformAttribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(id: TransformId) -> Self {
        Transform {
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute (bits), as AES needs.
    pub fn with_key_length(id: TransformId, bits: u16) -> Self {
        Transform {
            id,
            attributes: vec![TransformAttribute::KeyLength(bits)],
        }
    }

    /// The Key Length attribute in bits, if there is one.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            TransformAttribute::KeyLength(k) => Some(*k),
            _ => None,
        })
    }
}

/// A Transform Type with its Transform ID (RFC 7296 3.3.2), typed by its
/// registry.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformId {
    /// Type 1, encryption algorithm.
    Encr(EncrId),
    /// Type 2, pseudorandom function.
    Prf(PrfId),
    /// Type 3, integrity algorithm.
    Integ(IntegId),
    /// Type 4, Diffie-Hellman group.
    Dh(DhGroup),
    /// Type 5, extended sequence numbers.
    Esn(EsnId),
    /// A transform type with no registry here.
    Unknown {
        /// The Transform Type number.
        transform_type: u8,
        /// The Transform ID.
        id: u16,
    },
}

impl TransformId {
    /// Builds the typed form from the two wire numbers.
    pub fn from_parts(transform_type: TransformType, id: u16) -> Self {
        match transform_type {
            TransformType::Encr => TransformId::Encr(id.into()),
            TransformType::Prf => TransformId::Prf(id.into()),
            TransformType::Integ => TransformId::Integ(id.into()),
            TransformType::Dh => TransformId::Dh(id.into()),
            TransformType::Esn => TransformId::Esn(id.into()),
            other => TransformId::Unknown {
                transform_type: other.into(),
                id,
            },
        }
    }

    /// The Transform Type.
    pub fn transform_type(&self) -> TransformType {
        match self {
            TransformId::Encr(_) => TransformType::Encr,
            TransformId::Prf(_) => TransformType::Prf,
            TransformId::Integ(_) => TransformType::Integ,
            TransformId::Dh(_) => TransformType::Dh,
            TransformId::Esn(_) => TransformType::Esn,
            TransformId::Unknown { transform_type, .. } => TransformType::from(*transform_type),
        }
    }

    /// The Transform ID number.
    pub fn id(&self) -> u16 {
        match *self {
            TransformId::Encr(x) => x.into(),
            TransformId::Prf(x) => x.into(),
            TransformId::Integ(x) => x.into(),
            TransformId::Dh(x) => x.into(),
            TransformId::Esn(x) => x.into(),
            TransformId::Unknown { id, .. } => id,
        }
    }
}

/// Data attribute of a transform (RFC 7296 3.3.5).
///
/// ```text
/// |A|       Attribute Type        |    AF=0  Attribute Length     |
/// |                               |    AF=1  Attribute Value      |
/// |                   AF=0  Attribute Value                       |
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformAttribute {
    /// Key Length (type 14, TV format), in bits.
    KeyLength(u16),
    /// Another attribute in TV format (the AF bit set).
    Tv {
        /// Attribute Type, 15 bits.
        attr_type: u16,
        /// The two-octet value.
        value: u16,
    },
    /// An attribute in TLV format (the AF bit clear).
    Tlv {
        /// Attribute Type, 15 bits.
        attr_type: u16,
        /// The value.
        value: Vec<u8>,
    },
}

impl SaPayload {
    /// Parses the body of an SA payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let mut proposals = Vec::new();
        loop {
            let last = r.u8("proposal header")?;
            let _reserved = r.u8("proposal header")?;
            let len = usize::from(r.u16("proposal header")?);
            if len < 8 {
                return Err(WireError::BadLength {
                    what: "proposal length below its header",
                    len,
                    have: 8,
                });
            }
            let mut p = r.sub(len - 4, "proposal")?;
            proposals.push(Proposal::parse_rest(&mut p)?);
            match last {
                0 => break,
                MORE_PROPOSALS => continue,
                _ => {
                    return Err(WireError::Malformed {
                        what: "proposal",
                        why: "Last Substruc is neither 0 nor 2",
                    })
                }
            }
        }
        r.expect_empty("SA payload after the last proposal")?;
        Ok(SaPayload { proposals })
    }

    /// Length of the body [`Self::emit_body`] writes.
    pub fn body_len(&self) -> usize {
        self.proposals.iter().map(Proposal::buffer_len).sum()
    }

    /// Appends the body of the SA payload.
    pub fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            p.emit(i + 1 < n, out)?;
        }
        Ok(())
    }
}

impl Proposal {
    fn parse_rest(p: &mut Reader<'_>) -> Result<Self, WireError> {
        let number = p.u8("proposal")?;
        let protocol = ProtocolId::from(p.u8("proposal")?);
        let spi_size = usize::from(p.u8("proposal")?);
        let num_transforms = usize::from(p.u8("proposal")?);
        let spi = p.take(spi_size, "proposal SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(num_transforms.min(p.left() / 8));
        for i in 0..num_transforms {
            let last = p.u8("transform header")?;
            let _reserved = p.u8("transform header")?;
            let len = usize::from(p.u16("transform header")?);
            if len < 8 {
                return Err(WireError::BadLength {
                    what: "transform length below its header",
                    len,
                    have: 8,
                });
            }
            let mut t = p.sub(len - 4, "transform")?;
            let ttype = TransformType::from(t.u8("transform")?);
            let _reserved = t.u8("transform")?;
            let id = TransformId::from_parts(ttype, t.u16("transform")?);
            let attributes = parse_attributes(&mut t)?;
            let want_last = if i + 1 == num_transforms {
                0
            } else {
                MORE_TRANSFORMS
            };
            if last != want_last {
                return Err(WireError::Malformed {
                    what: "transform",
                    why: "Last Substruc disagrees with Num Transforms",
                });
            }
            transforms.push(Transform { id, attributes });
        }
        p.expect_empty("proposal after its transforms")?;
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    /// Length of this proposal on the wire.
    pub fn buffer_len(&self) -> usize {
        8 + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    fn emit(&self, more: bool, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.extend_from_slice(&[if more { MORE_PROPOSALS } else { 0 }, 0, 0, 0]);
        out.push(self.number);
        out.push(self.protocol.into());
        out.push(len_u8(self.spi.len(), "proposal SPI")?);
        out.push(len_u8(self.transforms.len(), "proposal transforms")?);
        out.extend_from_slice(&self.spi);
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(i + 1 < n, out)?;
        }
        let len = out.len() - start;
        patch_u16(out, start + 2, len, "proposal")
    }
}

fn parse_attributes(r: &mut Reader<'_>) -> Result<Vec<TransformAttribute>, WireError> {
    let mut attrs = Vec::new();
    while !r.is_empty() {
        let t = r.u16("transform attribute")?;
        if t & ATTR_TV != 0 {
            let attr_type = t & !ATTR_TV;
            let value = r.u16("transform attribute")?;
            attrs.push(match TransformAttributeType::from(attr_type) {
                TransformAttributeType::KeyLength => TransformAttribute::KeyLength(value),
                _ => TransformAttribute::Tv { attr_type, value },
            });
        } else {
            let len = usize::from(r.u16("transform attribute")?);
            let value = r.take(len, "transform attribute value")?.to_vec();
            attrs.push(TransformAttribute::Tlv {
                attr_type: t,
                value,
            });
        }
    }
    Ok(attrs)
}

impl TransformAttribute {
    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TransformAttribute::KeyLength(_) | TransformAttribute::Tv { .. } => 4,
            TransformAttribute::Tlv { value, .. } => 4 + value.len(),
        }
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            TransformAttribute::KeyLength(v) => {
                out.extend_from_slice(&(ATTR_TV | 14).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            TransformAttribute::Tv { attr_type, value } => {
                out.extend_from_slice(&(ATTR_TV | attr_type).to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            TransformAttribute::Tlv { attr_type, value } => {
                out.extend_from_slice(&(attr_type & !ATTR_TV).to_be_bytes());
                let start = out.len();
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(value);
                patch_u16(out, start, value.len(), "transform attribute")?;
            }
        }
        Ok(())
    }
}

impl Transform {
    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        8 + self
            .attributes
            .iter()
            .map(TransformAttribute::buffer_len)
            .sum::<usize>()
    }

    fn emit(&self, more: bool, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        out.extend_from_slice(&[if more { MORE_TRANSFORMS } else { 0 }, 0, 0, 0]);
        out.push(self.id.transform_type().into());
        out.push(0);
        out.extend_from_slice(&self.id.id().to_be_bytes());
        for a in &self.attributes {
            a.emit(out)?;
        }
        let len = out.len() - start;
        patch_u16(out, start + 2, len, "transform")
    }
}

// ---------------------------------------------------------------------------
// KE (3.4), ID (3.5), AUTH (3.8)
// ---------------------------------------------------------------------------

/// Key Exchange payload (RFC 7296 3.4).
///
/// ```text
/// |   Diffie-Hellman Group Num    |           RESERVED            |
/// ~                       Key Exchange Data                       ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KePayload {
    /// The group of the public value.
    pub group: DhGroup,
    /// The public value.
    pub data: Vec<u8>,
}

impl KePayload {
    /// Parses the body of a KE payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let group = DhGroup::from(r.u16("KE payload")?);
        let _reserved = r.u16("KE payload")?;
        Ok(KePayload {
            group,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u16::from(self.group).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.data);
    }
}

/// Identification payload, IDi or IDr (RFC 7296 3.5).
///
/// ```text
/// |   ID Type     |                 RESERVED                      |
/// ~                   Identification Data                         ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPayload {
    /// The ID Type.
    pub id_type: IdType,
    /// The identification data, as sent.
    pub data: Vec<u8>,
}

/// A typed identity for the ID types a gateway uses (RFC 7296 3.5).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_FQDN.
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Rfc822(String),
    /// ID_KEY_ID.
    KeyId(Vec<u8>),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "{a}"),
            Identity::Ipv6(a) => write!(f, "{a}"),
            Identity::Fqdn(s) => write!(f, "{s}"),
            Identity::Rfc822(s) => write!(f, "{s}"),
            Identity::KeyId(k) => write!(f, "keyid:{}", hex::encode(k)),
        }
    }
}

impl From<&Identity> for IdPayload {
    fn from(id: &Identity) -> Self {
        let (id_type, data) = match id {
            Identity::Ipv4(a) => (IdType::Ipv4Addr, a.octets().to_vec()),
            Identity::Ipv6(a) => (IdType::Ipv6Addr, a.octets().to_vec()),
            Identity::Fqdn(s) => (IdType::Fqdn, s.as_bytes().to_vec()),
            Identity::Rfc822(s) => (IdType::Rfc822Addr, s.as_bytes().to_vec()),
            Identity::KeyId(k) => (IdType::KeyId, k.clone()),
        };
        IdPayload { id_type, data }
    }
}

impl IdPayload {
    /// Parses the body of an IDi or IDr payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let id_type = IdType::from(r.u8("ID payload")?);
        let _reserved = r.take(3, "ID payload")?;
        Ok(IdPayload {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    /// The typed identity, or `None` for other ID types and for data that
    /// does not fit its type (wrong address length, non-UTF-8 name).
    pub fn identity(&self) -> Option<Identity> {
        match self.id_type {
            IdType::Ipv4Addr => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| Identity::Ipv4(a.into())),
            IdType::Ipv6Addr => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| Identity::Ipv6(a.into())),
            IdType::Fqdn => String::from_utf8(self.data.clone())
                .ok()
                .map(Identity::Fqdn),
            IdType::Rfc822Addr => String::from_utf8(self.data.clone())
                .ok()
                .map(Identity::Rfc822),
            IdType::KeyId => Some(Identity::KeyId(self.data.clone())),
            _ => None,
        }
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        out.push(self.id_type.into());
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.data);
    }

    /// The body as bytes: `RestOfInitIDPayload` / `RestOfRespIDPayload`, the
    /// input of `MACedIDForI` / `MACedIDForR` in the AUTH computation (RFC
    /// 7296 2.15).
    pub fn to_body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.body_len());
        self.emit_body(&mut v);
        v
    }
}

/// Authentication payload (RFC 7296 3.8).
///
/// ```text
/// | Auth Method   |                RESERVED                       |
/// ~                      Authentication Data                      ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPayload {
    /// How the data was computed (2 for a pre-shared key).
    pub method: AuthMethod,
    /// The MIC or signature.
    pub data: Vec<u8>,
}

impl AuthPayload {
    /// Parses the body of an AUTH payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let method = AuthMethod::from(r.u8("AUTH payload")?);
        let _reserved = r.take(3, "AUTH payload")?;
        Ok(AuthPayload {
            method,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        out.push(self.method.into());
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
}

// ---------------------------------------------------------------------------
// Notify (3.10), Delete (3.11)
// ---------------------------------------------------------------------------

/// Notify payload (RFC 7296 3.10).
///
/// ```text
/// |  Protocol ID  |   SPI Size    |      Notify Message Type      |
/// ~                Security Parameter Index (SPI)                 ~
/// ~                       Notification Data                       ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPayload {
    /// The protocol of the SA the notify is about; `Unspecified` (0) when the
    /// SPI is empty.
    pub protocol: ProtocolId,
    /// The SPI of that SA, or empty.
    pub spi: Vec<u8>,
    /// The notify type.
    pub notify_type: NotifyType,
    /// Notification Data.
    pub data: Vec<u8>,
}

impl NotifyPayload {
    /// A notify with no protocol and no SPI (the usual form for the IKE SA).
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        NotifyPayload {
            protocol: ProtocolId::Unspecified,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// INVALID_KE_PAYLOAD carrying the group the responder accepts (RFC 7296
    /// 1.3, 3.10.1).
    pub fn invalid_ke(group: DhGroup) -> Self {
        Self::new(
            NotifyType::InvalidKePayload,
            u16::from(group).to_be_bytes().to_vec(),
        )
    }

    /// For INVALID_KE_PAYLOAD, the group the responder asks for.
    pub fn invalid_ke_group(&self) -> Option<DhGroup> {
        if self.notify_type != NotifyType::InvalidKePayload {
            return None;
        }
        <[u8; 2]>::try_from(self.data.as_slice())
            .ok()
            .map(|b| DhGroup::from(u16::from_be_bytes(b)))
    }

    /// For SIGNATURE_HASH_ALGORITHMS (RFC 7427 4), the two-octet hash
    /// algorithm numbers; `None` for other types or an odd data length.
    pub fn signature_hash_algorithms(&self) -> Option<Vec<u16>> {
        if self.notify_type != NotifyType::SignatureHashAlgorithms || self.data.len() % 2 != 0 {
            return None;
        }
        Some(
            self.data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        )
    }

    /// The SPI as a u32 when it is 4 octets long (ESP and AH; REKEY_SA).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// Parses the body of a Notify payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let protocol = ProtocolId::from(r.u8("Notify payload")?);
        let spi_size = usize::from(r.u8("Notify payload")?);
        let notify_type = NotifyType::from(r.u16("Notify payload")?);
        let spi = r.take(spi_size, "Notify SPI")?.to_vec();
        Ok(NotifyPayload {
            protocol,
            spi,
            notify_type,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self.spi.len() + self.data.len()
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(self.protocol.into());
        out.push(len_u8(self.spi.len(), "Notify SPI")?);
        out.extend_from_slice(&u16::from(self.notify_type).to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

/// Delete payload (RFC 7296 3.11).
///
/// ```text
/// | Protocol ID   |   SPI Size    |          Num of SPIs          |
/// ~               Security Parameter Index(es) (SPI)              ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload {
    /// IKE (with no SPIs: the SA of this message), AH or ESP.
    pub protocol: ProtocolId,
    /// SPI Size: 0 for IKE, 4 for AH and ESP.
    pub spi_size: u8,
    /// The SPIs, each `spi_size` octets: on emit, a longer one is cut and a
    /// shorter one padded with zeros.
    pub spis: Vec<Vec<u8>>,
}

impl DeletePayload {
    /// Deletes the IKE SA the message belongs to.
    pub fn ike() -> Self {
        DeletePayload {
            protocol: ProtocolId::Ike,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletes Child SAs by their inbound SPIs (ESP or AH).
    pub fn child(protocol: ProtocolId, spis: &[u32]) -> Self {
        DeletePayload {
            protocol,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs as u32s (those that are 4 octets long).
    pub fn spis_u32(&self) -> Vec<u32> {
        self.spis
            .iter()
            .filter_map(|s| <[u8; 4]>::try_from(s.as_slice()).ok())
            .map(u32::from_be_bytes)
            .collect()
    }

    /// Parses the body of a Delete payload. The SPIs must fill the body
    /// exactly; SPI Size 0 with a non-zero count is malformed.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let protocol = ProtocolId::from(r.u8("Delete payload")?);
        let spi_size = r.u8("Delete payload")?;
        let num = usize::from(r.u16("Delete payload")?);
        if spi_size == 0 && num != 0 {
            return Err(WireError::Malformed {
                what: "Delete payload",
                why: "SPIs counted but SPI Size is 0",
            });
        }
        let size = usize::from(spi_size);
        if num * size != r.left() {
            return Err(WireError::BadLength {
                what: "Delete payload SPIs",
                len: num * size,
                have: r.left(),
            });
        }
        let mut spis = Vec::with_capacity(num);
        for _ in 0..num {
            spis.push(r.take(size, "Delete SPI")?.to_vec());
        }
        Ok(DeletePayload {
            protocol,
            spi_size,
            spis,
        })
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self.spis.len() * usize::from(self.spi_size)
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let num = u16::try_from(self.spis.len()).map_err(|_| WireError::TooLong {
            what: "Delete SPIs",
            len: self.spis.len(),
            max: u16::MAX as usize,
        })?;
        out.push(self.protocol.into());
        out.push(self.spi_size);
        out.extend_from_slice(&num.to_be_bytes());
        let size = usize::from(self.spi_size);
        for spi in &self.spis {
            let n = spi.len().min(size);
            out.extend_from_slice(spi.get(..n).unwrap_or_default());
            out.resize(out.len() + (size - n), 0);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Traffic Selectors (3.13)
// ---------------------------------------------------------------------------

/// Traffic Selector payload, TSi or TSr (RFC 7296 3.13).
///
/// ```text
/// | Number of TSs |                 RESERVED                      |
/// ~                       <Traffic Selectors>                     ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsPayload {
    /// The selectors (at most 255).
    pub selectors: Vec<TrafficSelector>,
}

/// One traffic selector (RFC 7296 3.13.1).
///
/// ```text
/// |   TS Type     |IP Protocol ID*|       Selector Length         |
/// |           Start Port*         |           End Port*           |
/// ~                         Starting Address*                     ~
/// ~                         Ending Address*                       ~
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE.
    Ipv4 {
        /// IP protocol number, 0 for any.
        ip_protocol: u8,
        /// First port (or ICMP type/code), 0 for any.
        start_port: u16,
        /// Last port, 65535 for any.
        end_port: u16,
        /// First address.
        start: Ipv4Addr,
        /// Last address.
        end: Ipv4Addr,
    },
    /// TS_IPV6_ADDR_RANGE.
    Ipv6 {
        /// IP protocol number, 0 for any.
        ip_protocol: u8,
        /// First port, 0 for any.
        start_port: u16,
        /// Last port, 65535 for any.
        end_port: u16,
        /// First address.
        start: Ipv6Addr,
        /// Last address.
        end: Ipv6Addr,
    },
    /// Another TS type, kept as sent.
    Other {
        /// TS Type (not 7 or 8).
        ts_type: TsType,
        /// The octet after TS Type (IP Protocol ID for address ranges).
        second_octet: u8,
        /// The bytes after Selector Length.
        body: Vec<u8>,
    },
}

const TS_HEADER_LEN: usize = 4;
const TS_IPV4_LEN: usize = 16;
const TS_IPV6_LEN: usize = 40;

impl TrafficSelector {
    /// All of IPv4: 0.0.0.0-255.255.255.255, any protocol, any port (AWS's
    /// route-based default).
    pub fn ipv4_any() -> Self {
        TrafficSelector::Ipv4 {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: Ipv4Addr::UNSPECIFIED,
            end: Ipv4Addr::BROADCAST,
        }
    }

    /// An IPv4 prefix, any protocol and port.
    pub fn from_ipv4_net(net: ipnet::Ipv4Net) -> Self {
        TrafficSelector::Ipv4 {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: net.network(),
            end: net.broadcast(),
        }
    }

    /// An IPv6 prefix, any protocol and port.
    pub fn from_ipv6_net(net: ipnet::Ipv6Net) -> Self {
        TrafficSelector::Ipv6 {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: net.network(),
            end: net.broadcast(),
        }
    }

    /// The TS Type.
    pub fn ts_type(&self) -> TsType {
        match self {
            TrafficSelector::Ipv4 { .. } => TsType::Ipv4AddrRange,
            TrafficSelector::Ipv6 { .. } => TsType::Ipv6AddrRange,
            TrafficSelector::Other { ts_type, .. } => *ts_type,
        }
    }

    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Ipv4 { .. } => TS_IPV4_LEN,
            TrafficSelector::Ipv6 { .. } => TS_IPV6_LEN,
            TrafficSelector::Other { body, .. } => TS_HEADER_LEN + body.len(),
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ts_type = TsType::from(r.u8("traffic selector")?);
        let second_octet = r.u8("traffic selector")?;
        let len = usize::from(r.u16("traffic selector")?);
        let want = match ts_type {
            TsType::Ipv4AddrRange => Some(TS_IPV4_LEN),
            TsType::Ipv6AddrRange => Some(TS_IPV6_LEN),
            _ => None,
        };
        if len < TS_HEADER_LEN || want.is_some_and(|w| w != len) {
            return Err(WireError::BadLength {
                what: "traffic selector length",
                len,
                have: want.unwrap_or(TS_HEADER_LEN),
            });
        }
        let mut b = r.sub(len - TS_HEADER_LEN, "traffic selector")?;
        Ok(match ts_type {
            TsType::Ipv4AddrRange => TrafficSelector::Ipv4 {
                ip_protocol: second_octet,
                start_port: b.u16("traffic selector")?,
                end_port: b.u16("traffic selector")?,
                start: b.array::<4>("traffic selector")?.into(),
                end: b.array::<4>("traffic selector")?.into(),
            },
            TsType::Ipv6AddrRange => TrafficSelector::Ipv6 {
                ip_protocol: second_octet,
                start_port: b.u16("traffic selector")?,
                end_port: b.u16("traffic selector")?,
                start: b.array::<16>("traffic selector")?.into(),
                end: b.array::<16>("traffic selector")?.into(),
            },
            _ => TrafficSelector::Other {
                ts_type,
                second_octet,
                body: b.rest().to_vec(),
            },
        })
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        match self {
            TrafficSelector::Ipv4 {
                ip_protocol,
                start_port,
                end_port,
                start: a,
                end: z,
            } => {
                out.extend_from_slice(&[TsType::Ipv4AddrRange.into(), *ip_protocol, 0, 0]);
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&z.octets());
            }
            TrafficSelector::Ipv6 {
                ip_protocol,
                start_port,
                end_port,
                start: a,
                end: z,
            } => {
                out.extend_from_slice(&[TsType::Ipv6AddrRange.into(), *ip_protocol, 0, 0]);
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&z.octets());
            }
            TrafficSelector::Other {
                ts_type,
                second_octet,
                body,
            } => {
                out.extend_from_slice(&[(*ts_type).into(), *second_octet, 0, 0]);
                out.extend_from_slice(body);
            }
        }
        let len = out.len() - start;
        patch_u16(out, start + 2, len, "traffic selector")
    }
}

impl TsPayload {
    /// Parses the body of a TSi or TSr payload.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let num = usize::from(r.u8("TS payload")?);
        let _reserved = r.take(3, "TS payload")?;
        let mut selectors = Vec::with_capacity(num);
        for _ in 0..num {
            selectors.push(TrafficSelector::parse(&mut r)?);
        }
        r.expect_empty("TS payload after Number of TSs selectors")?;
        Ok(TsPayload { selectors })
    }

    /// Length of the body.
    pub fn body_len(&self) -> usize {
        4 + self
            .selectors
            .iter()
            .map(TrafficSelector::buffer_len)
            .sum::<usize>()
    }

    /// Appends the body.
    pub fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(len_u8(self.selectors.len(), "traffic selectors")?);
        out.extend_from_slice(&[0, 0, 0]);
        for ts in &self.selectors {
            ts.emit(out)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// SK (3.14) and SKF (RFC 7383 2.5)
// ---------------------------------------------------------------------------

/// Encrypted and Authenticated payload, SK (RFC 7296 3.14), still encrypted.
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |                     Initialization Vector                     |
/// ~                    Encrypted IKE Payloads                     ~
/// +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               |             Padding (0-255 octets)            |
/// +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
/// |                                               |  Pad Length   |
/// ~                    Integrity Checksum Data                    ~
/// ```
///
/// "The Encrypted payload, if present in a message, MUST be the last
/// payload in the message": [`emit_payload_chain`] enforces it, and parsing
/// stops the chain there. The crypto layer decrypts `data`, strips the
/// padding ([`strip_sk_padding`]) and parses the rest with
/// [`parse_payload_chain`] starting at `next_payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedPayload {
    /// The type of the first payload inside (the generic header's Next
    /// Payload).
    pub next_payload: PayloadType,
    /// IV, ciphertext and ICV, as on the wire.
    pub data: Vec<u8>,
}

impl EncryptedPayload {
    /// Builds the payload from its parts.
    pub fn from_parts(next_payload: PayloadType, iv: &[u8], ciphertext: &[u8], icv: &[u8]) -> Self {
        let mut data = Vec::with_capacity(iv.len() + ciphertext.len() + icv.len());
        data.extend_from_slice(iv);
        data.extend_from_slice(ciphertext);
        data.extend_from_slice(icv);
        EncryptedPayload { next_payload, data }
    }

    /// Splits `data` into `(iv, ciphertext, icv)` for the negotiated
    /// algorithm's IV and ICV lengths.
    pub fn split(
        &self,
        iv_len: usize,
        icv_len: usize,
    ) -> Result<super::CipherParts<'_>, WireError> {
        super::split_iv_ct_icv(&self.data, iv_len, icv_len)
    }
}

/// Encrypted and Authenticated Fragment payload, SKF (RFC 7383 2.5).
///
/// ```text
/// | Next Payload  |C|  RESERVED   |         Payload Length        |
/// |        Fragment Number        |        Total Fragments        |
/// |                     Initialization Vector                     |
/// ~                      Encrypted content                        ~
/// ~                    Integrity Checksum Data                    ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragmentPayload {
    /// The first inner payload type in fragment 1, `NoNext` in the others.
    pub next_payload: PayloadType,
    /// Fragment Number, from 1.
    pub fragment_number: u16,
    /// Total Fragments, at least Fragment Number.
    pub total_fragments: u16,
    /// IV, ciphertext and ICV.
    pub data: Vec<u8>,
}

impl EncryptedFragmentPayload {
    fn parse(next_payload: PayloadType, body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let fragment_number = r.u16("SKF payload")?;
        let total_fragments = r.u16("SKF payload")?;
        if fragment_number == 0 || fragment_number > total_fragments {
            return Err(WireError::Malformed {
                what: "SKF payload",
                why: "Fragment Number is 0 or above Total Fragments",
            });
        }
        Ok(EncryptedFragmentPayload {
            next_payload,
            fragment_number,
            total_fragments,
            data: r.rest().to_vec(),
        })
    }

    /// Splits `data` into `(iv, ciphertext, icv)`.
    pub fn split(
        &self,
        iv_len: usize,
        icv_len: usize,
    ) -> Result<super::CipherParts<'_>, WireError> {
        super::split_iv_ct_icv(&self.data, iv_len, icv_len)
    }
}

/// Number of padding octets (not counting the Pad Length octet) that make
/// `inner_len + padding + 1` a multiple of `block_size` (RFC 7296 3.14). A
/// block size of 0 or 1 (stream and AEAD counter modes) needs none.
pub fn sk_pad_len(inner_len: usize, block_size: usize) -> usize {
    if block_size <= 1 {
        return 0;
    }
    (block_size - (inner_len + 1) % block_size) % block_size
}

/// Appends the SK padding (zeros) and the Pad Length octet to a plaintext
/// payload chain, ready to encrypt. Returns the padding length. Fails if the
/// block size needs more than 255 octets of padding.
pub fn push_sk_padding(plain: &mut Vec<u8>, block_size: usize) -> Result<u8, WireError> {
    let pad = sk_pad_len(plain.len(), block_size);
    let pad = len_u8(pad, "SK padding")?;
    plain.resize(plain.len() + usize::from(pad), 0);
    plain.push(pad);
    Ok(pad)
}

/// Strips the padding and the Pad Length octet from a decrypted SK payload
/// (RFC 7296 3.14), returning the inner payload chain. The padding contents
/// are not checked ("MAY contain any value").
pub fn strip_sk_padding(plain: &[u8]) -> Result<&[u8], WireError> {
    let (&pad, rest) = plain.split_last().ok_or(WireError::Truncated {
        what: "SK plaintext (Pad Length)",
        need: 1,
        have: 0,
    })?;
    let pad = usize::from(pad);
    if pad > rest.len() {
        return Err(WireError::BadLength {
            what: "SK Pad Length past the plaintext",
            len: pad,
            have: rest.len(),
        });
    }
    Ok(&rest[..rest.len() - pad])
}

// ---------------------------------------------------------------------------
// Raw payloads and the Payload enum
// ---------------------------------------------------------------------------

/// A payload this module does not decode (CERT, CERTREQ, CP, EAP, or a type
/// it does not know), kept as sent. Parsing fails instead when the critical
/// bit is set (RFC 7296 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPayload {
    /// The payload type: must not be one this module decodes, nor `NoNext`.
    pub payload_type: PayloadType,
    /// The critical bit, as sent.
    pub critical: bool,
    /// The body after the generic header.
    pub body: Vec<u8>,
}

/// One IKEv2 payload (RFC 7296 3.2-3.14).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Security Association (33).
    Sa(SaPayload),
    /// Key Exchange (34).
    Ke(KePayload),
    /// Identification - Initiator (35).
    IdI(IdPayload),
    /// Identification - Responder (36).
    IdR(IdPayload),
    /// Authentication (39).
    Auth(AuthPayload),
    /// Nonce (40): the nonce data.
    Nonce(Vec<u8>),
    /// Notify (41).
    Notify(NotifyPayload),
    /// Delete (42).
    Delete(DeletePayload),
    /// Vendor ID (43): the vendor ID data.
    VendorId(Vec<u8>),
    /// Traffic Selector - Initiator (44).
    TsI(TsPayload),
    /// Traffic Selector - Responder (45).
    TsR(TsPayload),
    /// Encrypted and Authenticated (46): always the last payload.
    Encrypted(EncryptedPayload),
    /// Encrypted and Authenticated Fragment (53): always the last payload.
    EncryptedFragment(EncryptedFragmentPayload),
    /// Anything else, kept raw.
    Raw(RawPayload),
}

impl Payload {
    /// The payload type, as it appears in the previous Next Payload field.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::Sa,
            Payload::Ke(_) => PayloadType::Ke,
            Payload::IdI(_) => PayloadType::IdI,
            Payload::IdR(_) => PayloadType::IdR,
            Payload::Auth(_) => PayloadType::Auth,
            Payload::Nonce(_) => PayloadType::Nonce,
            Payload::Notify(_) => PayloadType::Notify,
            Payload::Delete(_) => PayloadType::Delete,
            Payload::VendorId(_) => PayloadType::VendorId,
            Payload::TsI(_) => PayloadType::TsI,
            Payload::TsR(_) => PayloadType::TsR,
            Payload::Encrypted(_) => PayloadType::Sk,
            Payload::EncryptedFragment(_) => PayloadType::Skf,
            Payload::Raw(r) => r.payload_type,
        }
    }

    /// The critical bit to send: set only on raw payloads that had it.
    pub fn critical(&self) -> bool {
        matches!(self, Payload::Raw(r) if r.critical)
    }

    /// True for SK and SKF, which end a chain.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Payload::Encrypted(_) | Payload::EncryptedFragment(_))
    }

    /// Parses one payload body given the fields of its generic header.
    /// `next_payload` matters only for SK and SKF, where it names the first
    /// inner payload.
    pub fn parse(
        payload_type: PayloadType,
        critical: bool,
        next_payload: PayloadType,
        body: &[u8],
    ) -> Result<Self, WireError> {
        Ok(match payload_type {
            PayloadType::Sa => Payload::Sa(SaPayload::parse(body)?),
            PayloadType::Ke => Payload::Ke(KePayload::parse(body)?),
            PayloadType::IdI => Payload::IdI(IdPayload::parse(body)?),
            PayloadType::IdR => Payload::IdR(IdPayload::parse(body)?),
            PayloadType::Auth => Payload::Auth(AuthPayload::parse(body)?),
            PayloadType::Nonce => Payload::Nonce(body.to_vec()),
            PayloadType::Notify => Payload::Notify(NotifyPayload::parse(body)?),
            PayloadType::Delete => Payload::Delete(DeletePayload::parse(body)?),
            PayloadType::VendorId => Payload::VendorId(body.to_vec()),
            PayloadType::TsI => Payload::TsI(TsPayload::parse(body)?),
            PayloadType::TsR => Payload::TsR(TsPayload::parse(body)?),
            PayloadType::Sk => Payload::Encrypted(EncryptedPayload {
                next_payload,
                data: body.to_vec(),
            }),
            PayloadType::Skf => {
                Payload::EncryptedFragment(EncryptedFragmentPayload::parse(next_payload, body)?)
            }
            PayloadType::NoNext => {
                return Err(WireError::Malformed {
                    what: "payload chain",
                    why: "payload type 0",
                })
            }
            other if critical => return Err(WireError::UnsupportedCritical(other)),
            other => Payload::Raw(RawPayload {
                payload_type: other,
                critical,
                body: body.to_vec(),
            }),
        })
    }

    /// Length of the body (without the generic header).
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(p) => p.body_len(),
            Payload::Ke(p) => p.body_len(),
            Payload::IdI(p) | Payload::IdR(p) => p.body_len(),
            Payload::Auth(p) => p.body_len(),
            Payload::Nonce(d) | Payload::VendorId(d) => d.len(),
            Payload::Notify(p) => p.body_len(),
            Payload::Delete(p) => p.body_len(),
            Payload::TsI(p) | Payload::TsR(p) => p.body_len(),
            Payload::Encrypted(p) => p.data.len(),
            Payload::EncryptedFragment(p) => 4 + p.data.len(),
            Payload::Raw(p) => p.body.len(),
        }
    }

    /// Length on the wire, generic header included.
    pub fn buffer_len(&self) -> usize {
        GENERIC_HEADER_LEN + self.body_len()
    }

    /// Appends the body (without the generic header).
    pub fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Payload::Sa(p) => p.emit_body(out)?,
            Payload::Ke(p) => p.emit_body(out),
            Payload::IdI(p) | Payload::IdR(p) => p.emit_body(out),
            Payload::Auth(p) => p.emit_body(out),
            Payload::Nonce(d) | Payload::VendorId(d) => out.extend_from_slice(d),
            Payload::Notify(p) => p.emit_body(out)?,
            Payload::Delete(p) => p.emit_body(out)?,
            Payload::TsI(p) | Payload::TsR(p) => p.emit_body(out)?,
            Payload::Encrypted(p) => out.extend_from_slice(&p.data),
            Payload::EncryptedFragment(p) => {
                out.extend_from_slice(&p.fragment_number.to_be_bytes());
                out.extend_from_slice(&p.total_fragments.to_be_bytes());
                out.extend_from_slice(&p.data);
            }
            Payload::Raw(p) => out.extend_from_slice(&p.body),
        }
        Ok(())
    }

    /// Appends the payload with its generic header; `next` goes into Next
    /// Payload (for SK and SKF, their own inner type is used instead).
    pub fn emit(&self, next: PayloadType, out: &mut Vec<u8>) -> Result<(), WireError> {
        let next = match self {
            Payload::Encrypted(p) => p.next_payload,
            Payload::EncryptedFragment(p) => p.next_payload,
            _ => next,
        };
        let start = out.len();
        out.push(next.into());
        out.push(if self.critical() { CRITICAL } else { 0 });
        out.extend_from_slice(&[0, 0]);
        self.emit_body(out)?;
        let len = out.len() - start;
        patch_u16(out, start + 2, len, "payload")
    }
}

/// Parses a chain of payloads (RFC 7296 3.2) that starts with a payload of
/// type `first` and must fill `bytes` exactly: the payloads of a message
/// after its header, or the plaintext of an SK payload after decryption and
/// [`strip_sk_padding`]. An SK or SKF payload ends the chain (its Next
/// Payload names its inner payload) and must be last.
///
/// Iteration is bounded by the buffer: each payload takes at least 4 bytes.
pub fn parse_payload_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, WireError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    let mut this = first;
    while this != PayloadType::NoNext {
        let [np, flags, l0, l1] = r.array::<4>("generic payload header")?;
        let next = PayloadType::from(np);
        let critical = flags & CRITICAL != 0;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < GENERIC_HEADER_LEN {
            return Err(WireError::BadLength {
                what: "payload length below the generic header",
                len,
                have: GENERIC_HEADER_LEN,
            });
        }
        if len - GENERIC_HEADER_LEN > r.left() {
            return Err(WireError::BadLength {
                what: "payload length past the end of the message",
                len,
                have: GENERIC_HEADER_LEN + r.left(),
            });
        }
        let body = r.take(len - GENERIC_HEADER_LEN, "payload body")?;
        let p = Payload::parse(this, critical, next, body)?;
        let ends = p.is_encrypted();
        out.push(p);
        if ends {
            break;
        }
        this = next;
    }
    r.expect_empty("payload chain")?;
    Ok(out)
}

/// Appends a chain of payloads, filling every Next Payload and Payload
/// Length; returns the type of the first payload (`NoNext` when empty), for
/// the IKE header or the enclosing SK payload. An SK or SKF payload anywhere
/// but last is an error.
pub fn emit_payload_chain(
    payloads: &[Payload],
    out: &mut Vec<u8>,
) -> Result<PayloadType, WireError> {
    let start = out.len();
    let res = emit_chain_inner(payloads, out);
    if res.is_err() {
        out.truncate(start);
    }
    res
}

fn emit_chain_inner(payloads: &[Payload], out: &mut Vec<u8>) -> Result<PayloadType, WireError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(n) => {
                if p.is_encrypted() {
                    return Err(WireError::Malformed {
                        what: "payload chain",
                        why: "the Encrypted payload must be the last one",
                    });
                }
                n.payload_type()
            }
            None => PayloadType::NoNext,
        };
        p.emit(next, out)?;
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::NoNext, Payload::payload_type))
}

/// Length of a chain on the wire.
pub fn payload_chain_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// The first Notify of a type in a chain.
pub fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&NotifyPayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod arb {
    //! proptest strategies for every payload, producing only canonical
    //! values (those that parse back to themselves).
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..=max)
    }

    pub fn payload_type() -> impl Strategy<Value = PayloadType> {
        any::<u8>().prop_map(PayloadType::from)
    }

    fn attribute() -> impl Strategy<Value = TransformAttribute> {
        prop_oneof![
            any::<u16>().prop_map(TransformAttribute::KeyLength),
            (0u16..0x8000, any::<u16>())
                .prop_filter("not key length", |(t, _)| *t != 14)
                .prop_map(|(attr_type, value)| TransformAttribute::Tv { attr_type, value }),
            (0u16..0x8000, bytes(8))
                .prop_map(|(attr_type, value)| TransformAttribute::Tlv { attr_type, value }),
        ]
    }

    fn transform() -> impl Strategy<Value = Transform> {
        (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| {
            Transform {
                id: TransformId::from_parts(t.into(), id),
                attributes,
            }
        })
    }

    fn proposal() -> impl Strategy<Value = Proposal> {
        (any::<u8>(), any::<u8>(), bytes(8), vec(transform(), 0..6)).prop_map(
            |(number, protocol, spi, transforms)| Proposal {
                number,
                protocol: protocol.into(),
                spi,
                transforms,
            },
        )
    }

    fn ts() -> impl Strategy<Value = TrafficSelector> {
        prop_oneof![
            (
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<[u8; 4]>()
            )
                .prop_map(|(ip_protocol, start_port, end_port, s, e)| {
                    TrafficSelector::Ipv4 {
                        ip_protocol,
                        start_port,
                        end_port,
                        start: s.into(),
                        end: e.into(),
                    }
                }),
            (
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>()
            )
                .prop_map(|(ip_protocol, start_port, end_port, s, e)| {
                    TrafficSelector::Ipv6 {
                        ip_protocol,
                        start_port,
                        end_port,
                        start: s.into(),
                        end: e.into(),
                    }
                }),
            (any::<u8>(), any::<u8>(), bytes(12))
                .prop_filter("not an address range", |(t, _, _)| *t != 7 && *t != 8)
                .prop_map(|(t, second_octet, body)| TrafficSelector::Other {
                    ts_type: t.into(),
                    second_octet,
                    body,
                }),
        ]
    }

    fn delete() -> impl Strategy<Value = DeletePayload> {
        (any::<u8>(), 0u8..9, 0usize..4).prop_flat_map(|(protocol, spi_size, n)| {
            let n = if spi_size == 0 { 0 } else { n };
            vec(vec(any::<u8>(), usize::from(spi_size)), n).prop_map(move |spis| DeletePayload {
                protocol: protocol.into(),
                spi_size,
                spis,
            })
        })
    }

    /// Payload types this module keeps raw.
    fn raw_type() -> impl Strategy<Value = PayloadType> {
        prop_oneof![
            Just(PayloadType::Cert),
            Just(PayloadType::CertReq),
            Just(PayloadType::Cp),
            Just(PayloadType::Eap),
            (1u8..33).prop_map(PayloadType::from),
            (54u8..=255).prop_map(PayloadType::from),
        ]
    }

    /// Any payload but SK and SKF.
    pub fn plain_payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            vec(proposal(), 1..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
            (any::<u16>(), bytes(64)).prop_map(|(g, data)| Payload::Ke(KePayload {
                group: g.into(),
                data
            })),
            (any::<u8>(), bytes(32)).prop_map(|(t, data)| Payload::IdI(IdPayload {
                id_type: t.into(),
                data
            })),
            (any::<u8>(), bytes(32)).prop_map(|(t, data)| Payload::IdR(IdPayload {
                id_type: t.into(),
                data
            })),
            (any::<u8>(), bytes(32)).prop_map(|(m, data)| Payload::Auth(AuthPayload {
                method: m.into(),
                data
            })),
            bytes(64).prop_map(Payload::Nonce),
            (any::<u8>(), bytes(8), any::<u16>(), bytes(32)).prop_map(|(p, spi, t, data)| {
                Payload::Notify(NotifyPayload {
                    protocol: p.into(),
                    spi,
                    notify_type: t.into(),
                    data,
                })
            }),
            delete().prop_map(Payload::Delete),
            bytes(32).prop_map(Payload::VendorId),
            vec(ts(), 0..4).prop_map(|selectors| Payload::TsI(TsPayload { selectors })),
            vec(ts(), 0..4).prop_map(|selectors| Payload::TsR(TsPayload { selectors })),
            (raw_type(), bytes(32)).prop_map(|(payload_type, body)| Payload::Raw(RawPayload {
                payload_type,
                critical: false,
                body
            })),
        ]
    }

    /// SK or SKF.
    pub fn encrypted_payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            (payload_type(), bytes(64)).prop_map(|(next_payload, data)| Payload::Encrypted(
                EncryptedPayload { next_payload, data }
            )),
            (payload_type(), 1u16..8, 0u16..8, bytes(64)).prop_map(
                |(next_payload, n, extra, data)| {
                    Payload::EncryptedFragment(EncryptedFragmentPayload {
                        next_payload,
                        fragment_number: n,
                        total_fragments: n + extra,
                        data,
                    })
                }
            ),
        ]
    }

    /// A valid chain: plain payloads, then maybe one SK or SKF.
    pub fn chain() -> impl Strategy<Value = Vec<Payload>> {
        (
            vec(plain_payload(), 0..6),
            proptest::option::of(encrypted_payload()),
        )
            .prop_map(|(mut v, sk)| {
                v.extend(sk);
                v
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An SA payload body with one IKE proposal: aes128-sha1-modp2048
    /// (ENCR_AES_CBC with Key Length 128, PRF_HMAC_SHA1, AUTH_HMAC_SHA1_96,
    /// MODP 2048), laid out by hand from RFC 7296 3.3.
    static SA_BODY: [u8; 44] = [
        // Proposal: last, reserved, length 44
        0x00, 0x00, 0x00, 0x2c, //
        // Proposal 1, IKE, SPI size 0, 4 transforms
        0x01, 0x01, 0x00, 0x04, //
        // Transform: more, reserved, length 12; ENCR, reserved, AES_CBC(12)
        0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x0c, //
        // Key Length attribute, TV: 0x800e, 128
        0x80, 0x0e, 0x00, 0x80, //
        // Transform: more, length 8; PRF, HMAC_SHA1 (2)
        0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x02, //
        // Transform: more, length 8; INTEG, HMAC_SHA1_96 (2)
        0x03, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x02, //
        // Transform: last, length 8; D-H, MODP 2048 (14)
        0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x0e,
    ];

    fn sa_repr() -> SaPayload {
        SaPayload {
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
        }
    }

    #[test]
    fn test_sa_parse() {
        let sa = SaPayload::parse(&SA_BODY).unwrap();
        assert_eq!(sa, sa_repr());
        let p = &sa.proposals[0];
        assert_eq!(
            p.transforms_of(TransformType::Encr)
                .next()
                .unwrap()
                .key_length(),
            Some(128)
        );
        assert_eq!(p.transforms_of(TransformType::Esn).count(), 0);
    }

    #[test]
    fn test_sa_emit() {
        let mut out = Vec::new();
        sa_repr().emit_body(&mut out).unwrap();
        assert_eq!(out, SA_BODY);
        assert_eq!(sa_repr().body_len(), SA_BODY.len());
    }

    #[test]
    fn test_sa_check_len() {
        for n in 0..SA_BODY.len() {
            assert!(SaPayload::parse(&SA_BODY[..n]).is_err(), "prefix {n}");
        }
        // Proposal length too small.
        let mut b = SA_BODY;
        b[3] = 7;
        assert!(matches!(
            SaPayload::parse(&b),
            Err(WireError::BadLength { .. })
        ));
        // Proposal says "more" but nothing follows.
        let mut b = SA_BODY;
        b[0] = 2;
        assert!(matches!(
            SaPayload::parse(&b),
            Err(WireError::Truncated { .. })
        ));
        // Last transform claims more follow.
        let mut b = SA_BODY;
        b[36] = 3;
        assert!(matches!(
            SaPayload::parse(&b),
            Err(WireError::Malformed { .. })
        ));
        // Num Transforms disagrees.
        let mut b = SA_BODY;
        b[7] = 3;
        assert!(SaPayload::parse(&b).is_err());
        // Trailing bytes after the last proposal.
        let mut v = SA_BODY.to_vec();
        v.push(0);
        assert!(matches!(
            SaPayload::parse(&v),
            Err(WireError::TrailingBytes { .. })
        ));
    }

    /// An ESP proposal with an SPI, two ENCR choices (AES-GCM-16-256 and
    /// AES-GCM-16-128) and ESN none.
    static SA_ESP_BODY: [u8; 44] = [
        0x00, 0x00, 0x00, 0x2c, // last proposal, length 44
        0x01, 0x03, 0x04, 0x03, // #1, ESP, SPI size 4, 3 transforms
        0xc0, 0x01, 0x02, 0x03, // SPI
        0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x14, 0x80, 0x0e, 0x01, 0x00, //
        0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x14, 0x80, 0x0e, 0x00, 0x80, //
        0x00, 0x00, 0x00, 0x08, 0x05, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn test_sa_esp() {
        let sa = SaPayload::parse(&SA_ESP_BODY).unwrap();
        let p = &sa.proposals[0];
        assert_eq!(p.protocol, ProtocolId::Esp);
        assert_eq!(p.spi_u32(), Some(0xc001_0203));
        let keys: Vec<_> = p
            .transforms_of(TransformType::Encr)
            .map(|t| t.key_length())
            .collect();
        assert_eq!(keys, vec![Some(256), Some(128)]);
        assert_eq!(p.transforms[2].id, TransformId::Esn(EsnId::NoEsn));
        let mut out = Vec::new();
        sa.emit_body(&mut out).unwrap();
        assert_eq!(out, SA_ESP_BODY);
    }

    static KE_BODY: [u8; 8] = [0x00, 0x13, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn test_ke() {
        let ke = KePayload::parse(&KE_BODY).unwrap();
        assert_eq!(ke.group, DhGroup::Ecp256);
        assert_eq!(ke.data, [0xde, 0xad, 0xbe, 0xef]);
        let mut out = Vec::new();
        ke.emit_body(&mut out);
        assert_eq!(out, KE_BODY);
        assert!(KePayload::parse(&KE_BODY[..3]).is_err());
    }

    static ID_IPV4_BODY: [u8; 8] = [0x01, 0x00, 0x00, 0x00, 198, 51, 100, 7];
    static ID_FQDN_BODY: [u8; 16] = *b"\x02\0\0\0vgw.aws.test";

    #[test]
    fn test_id() {
        let id = IdPayload::parse(&ID_IPV4_BODY).unwrap();
        assert_eq!(
            id.identity(),
            Some(Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 7)))
        );
        assert_eq!(id.to_body(), ID_IPV4_BODY);
        assert_eq!(
            IdPayload::from(&Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 7))),
            id
        );

        let id = IdPayload::parse(&ID_FQDN_BODY).unwrap();
        assert_eq!(id.identity(), Some(Identity::Fqdn("vgw.aws.test".into())));
        assert_eq!(id.identity().unwrap().to_string(), "vgw.aws.test");
        assert_eq!(id.to_body(), ID_FQDN_BODY);

        let v6 = Identity::Ipv6("2001:db8::1".parse().unwrap());
        let id = IdPayload::from(&v6);
        assert_eq!(id.id_type, IdType::Ipv6Addr);
        assert_eq!(
            IdPayload::parse(&id.to_body()).unwrap().identity(),
            Some(v6)
        );

        let key = Identity::KeyId(vec![1, 2, 3]);
        assert_eq!(IdPayload::from(&key).identity(), Some(key.clone()));
        assert_eq!(key.to_string(), "keyid:010203");
        let mail = Identity::Rfc822("ops@example.test".into());
        assert_eq!(IdPayload::from(&mail).identity(), Some(mail));

        // An IPv4 ID with 3 octets of data is not an identity.
        let bad = IdPayload::parse(&ID_IPV4_BODY[..7]).unwrap();
        assert_eq!(bad.identity(), None);
        assert!(IdPayload::parse(&ID_IPV4_BODY[..3]).is_err());
    }

    static AUTH_BODY: [u8; 8] = [0x02, 0x00, 0x00, 0x00, 1, 2, 3, 4];

    #[test]
    fn test_auth() {
        let a = AuthPayload::parse(&AUTH_BODY).unwrap();
        assert_eq!(a.method, AuthMethod::SharedKeyMic);
        assert_eq!(a.data, [1, 2, 3, 4]);
        let mut out = Vec::new();
        a.emit_body(&mut out);
        assert_eq!(out, AUTH_BODY);
        assert!(AuthPayload::parse(&AUTH_BODY[..2]).is_err());
    }

    /// INVALID_KE_PAYLOAD asking for group 14.
    static NOTIFY_INVALID_KE_BODY: [u8; 6] = [0x00, 0x00, 0x00, 0x11, 0x00, 0x0e];
    /// REKEY_SA for an ESP SPI.
    static NOTIFY_REKEY_BODY: [u8; 8] = [0x03, 0x04, 0x40, 0x09, 0xca, 0xfe, 0xf0, 0x0d];

    #[test]
    fn test_notify() {
        let n = NotifyPayload::parse(&NOTIFY_INVALID_KE_BODY).unwrap();
        assert_eq!(n, NotifyPayload::invalid_ke(DhGroup::Modp2048));
        assert_eq!(n.invalid_ke_group(), Some(DhGroup::Modp2048));
        assert!(n.notify_type.is_error());

        let n = NotifyPayload::parse(&NOTIFY_REKEY_BODY).unwrap();
        assert_eq!(n.notify_type, NotifyType::RekeySa);
        assert_eq!(n.protocol, ProtocolId::Esp);
        assert_eq!(n.spi_u32(), Some(0xcafe_f00d));
        assert!(n.data.is_empty());
        let mut out = Vec::new();
        n.emit_body(&mut out).unwrap();
        assert_eq!(out, NOTIFY_REKEY_BODY);

        // SPI Size larger than what is left.
        assert!(NotifyPayload::parse(&NOTIFY_REKEY_BODY[..7]).is_err());

        let sha = NotifyPayload::new(NotifyType::SignatureHashAlgorithms, vec![0, 2, 0, 3, 0, 4]);
        assert_eq!(sha.signature_hash_algorithms(), Some(vec![2, 3, 4]));
    }

    static DELETE_ESP_BODY: [u8; 12] = [0x03, 0x04, 0x00, 0x02, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
    static DELETE_IKE_BODY: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

    #[test]
    fn test_delete() {
        let d = DeletePayload::parse(&DELETE_ESP_BODY).unwrap();
        assert_eq!(d, DeletePayload::child(ProtocolId::Esp, &[1, 0xffff_fffe]));
        assert_eq!(d.spis_u32(), vec![1, 0xffff_fffe]);
        let mut out = Vec::new();
        d.emit_body(&mut out).unwrap();
        assert_eq!(out, DELETE_ESP_BODY);

        let d = DeletePayload::parse(&DELETE_IKE_BODY).unwrap();
        assert_eq!(d, DeletePayload::ike());

        // Count disagrees with the body.
        assert!(matches!(
            DeletePayload::parse(&DELETE_ESP_BODY[..11]),
            Err(WireError::BadLength { .. })
        ));
        assert!(DeletePayload::parse(&[0x01, 0x00, 0xff, 0xff]).is_err());
        // Odd-sized SPIs are cut or padded to SPI Size on emit.
        let d = DeletePayload {
            protocol: ProtocolId::Esp,
            spi_size: 4,
            spis: vec![vec![1, 2], vec![1, 2, 3, 4, 5]],
        };
        let mut out = Vec::new();
        d.emit_body(&mut out).unwrap();
        assert_eq!(out, [3, 4, 0, 2, 1, 2, 0, 0, 1, 2, 3, 4]);
    }

    /// TSi with 0.0.0.0/0 and 2001:db8::/32 port 443 TCP.
    static TS_BODY: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, // 2 TSs
        0x07, 0x00, 0x00, 0x10, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 255, 255, 255, 255, //
        0x08, 0x06, 0x00, 0x28, 0x01, 0xbb, 0x01, 0xbb, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff,
    ];

    #[test]
    fn test_ts() {
        let ts = TsPayload::parse(&TS_BODY).unwrap();
        assert_eq!(ts.selectors[0], TrafficSelector::ipv4_any());
        assert_eq!(ts.selectors[0].ts_type(), TsType::Ipv4AddrRange);
        assert_eq!(
            ts.selectors[1],
            TrafficSelector::Ipv6 {
                ip_protocol: 6,
                start_port: 443,
                end_port: 443,
                start: "2001:db8::".parse().unwrap(),
                end: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            }
        );
        let mut out = Vec::new();
        ts.emit_body(&mut out).unwrap();
        assert_eq!(out, TS_BODY);
        assert_eq!(ts.body_len(), TS_BODY.len());

        let net: ipnet::Ipv4Net = "10.0.0.0/16".parse().unwrap();
        match TrafficSelector::from_ipv4_net(net) {
            TrafficSelector::Ipv4 { start, end, .. } => {
                assert_eq!(start, Ipv4Addr::new(10, 0, 0, 0));
                assert_eq!(end, Ipv4Addr::new(10, 0, 255, 255));
            }
            other => panic!("{other:?}"),
        }
        let net6: ipnet::Ipv6Net = "2001:db8::/32".parse().unwrap();
        assert_eq!(
            TrafficSelector::from_ipv6_net(net6).buffer_len(),
            TS_IPV6_LEN
        );

        // Count says 3.
        let mut b = TS_BODY;
        b[0] = 3;
        assert!(TsPayload::parse(&b).is_err());
        // Count says 1: trailing selector.
        b[0] = 1;
        assert!(matches!(
            TsPayload::parse(&b),
            Err(WireError::TrailingBytes { .. })
        ));
        // IPv4 selector with the wrong length.
        let mut b = TS_BODY;
        b[7] = 0x14;
        assert!(matches!(
            TsPayload::parse(&b),
            Err(WireError::BadLength { .. })
        ));
        for n in 0..TS_BODY.len() {
            assert!(TsPayload::parse(&TS_BODY[..n]).is_err());
        }
    }

    #[test]
    fn test_sk_padding() {
        assert_eq!(sk_pad_len(0, 16), 15);
        assert_eq!(sk_pad_len(15, 16), 0);
        assert_eq!(sk_pad_len(16, 16), 15);
        assert_eq!(sk_pad_len(17, 16), 14);
        assert_eq!(sk_pad_len(17, 1), 0);
        assert_eq!(sk_pad_len(17, 0), 0);
        let mut v = vec![7u8; 20];
        assert_eq!(push_sk_padding(&mut v, 16).unwrap(), 11);
        assert_eq!(v.len(), 32);
        assert_eq!(strip_sk_padding(&v).unwrap(), &[7u8; 20][..]);
        assert!(strip_sk_padding(&[]).is_err());
        assert!(strip_sk_padding(&[1, 2, 5]).is_err());
        assert_eq!(strip_sk_padding(&[1, 2, 2]).unwrap(), &[] as &[u8]);
        assert!(push_sk_padding(&mut vec![], 1000).is_err());
    }

    #[test]
    fn test_sk_split() {
        let sk = EncryptedPayload::from_parts(PayloadType::IdI, &[1; 16], &[2; 32], &[3; 12]);
        let crate::wire::CipherParts {
            iv,
            ciphertext: ct,
            icv,
        } = sk.split(16, 12).unwrap();
        assert_eq!(
            (iv, ct, icv),
            (&[1u8; 16][..], &[2u8; 32][..], &[3u8; 12][..])
        );
        assert!(sk.split(40, 40).is_err());
    }

    /// Nonce then an unknown non-critical payload (type 200) then a Vendor
    /// ID; and the same with the unknown payload critical.
    static CHAIN: [u8; 20] = [
        200, 0x00, 0x00, 0x08, 1, 2, 3, 4, // Nonce, next 200
        43, 0x00, 0x00, 0x05, 9, // type 200, next Vendor ID
        0, 0x00, 0x00, 0x07, 7, 7, 7, // Vendor ID, last
    ];

    #[test]
    fn test_chain_unknown_and_critical() {
        let chain = parse_payload_chain(PayloadType::Nonce, &CHAIN).unwrap();
        assert_eq!(
            chain,
            vec![
                Payload::Nonce(vec![1, 2, 3, 4]),
                Payload::Raw(RawPayload {
                    payload_type: PayloadType::Unknown(200),
                    critical: false,
                    body: vec![9],
                }),
                Payload::VendorId(vec![7, 7, 7]),
            ]
        );
        let mut out = Vec::new();
        assert_eq!(
            emit_payload_chain(&chain, &mut out).unwrap(),
            PayloadType::Nonce
        );
        assert_eq!(out, CHAIN);
        assert_eq!(payload_chain_len(&chain), CHAIN.len());

        let mut crit = CHAIN;
        crit[9] = 0x80;
        let e = parse_payload_chain(PayloadType::Nonce, &crit).unwrap_err();
        assert_eq!(e, WireError::UnsupportedCritical(PayloadType::Unknown(200)));
        assert_eq!(
            e.notify_type(),
            Some(NotifyType::UnsupportedCriticalPayload)
        );
        assert_eq!(e.notify_data(), vec![200]);
        // The critical bit of a known payload is ignored (RFC 7296 2.5).
        let mut crit = CHAIN;
        crit[1] = 0x80;
        assert!(parse_payload_chain(PayloadType::Nonce, &crit).is_ok());
    }

    #[test]
    fn test_chain_lengths() {
        // Length below 4.
        let mut b = CHAIN;
        b[3] = 3;
        assert!(matches!(
            parse_payload_chain(PayloadType::Nonce, &b),
            Err(WireError::BadLength { .. })
        ));
        // Length past the end.
        let mut b = CHAIN;
        b[19 - 3] = 0x08;
        assert!(matches!(
            parse_payload_chain(PayloadType::Nonce, &b),
            Err(WireError::BadLength { .. })
        ));
        // Chain ends before the buffer.
        assert!(matches!(
            parse_payload_chain(PayloadType::Nonce, &[0, 0, 0, 4, 0]),
            Err(WireError::TrailingBytes { .. })
        ));
        // Chain names a payload the buffer does not have.
        assert!(matches!(
            parse_payload_chain(PayloadType::Nonce, &[41, 0, 0, 4]),
            Err(WireError::Truncated { .. })
        ));
        // Empty chain.
        assert_eq!(
            parse_payload_chain(PayloadType::NoNext, &[]).unwrap(),
            vec![]
        );
    }

    #[test]
    fn test_sk_must_be_last() {
        let sk = Payload::Encrypted(EncryptedPayload {
            next_payload: PayloadType::IdI,
            data: vec![0; 8],
        });
        let mut out = vec![0xaa];
        assert!(emit_payload_chain(&[sk.clone(), Payload::Nonce(vec![1])], &mut out).is_err());
        assert_eq!(out, [0xaa], "output rolled back on error");
        emit_payload_chain(&[Payload::Nonce(vec![1]), sk.clone()], &mut out).unwrap();
        // After SK nothing may follow.
        out.push(0);
        assert!(parse_payload_chain(PayloadType::Nonce, &out[1..]).is_err());
        out.pop();
        let chain = parse_payload_chain(PayloadType::Nonce, &out[1..]).unwrap();
        assert_eq!(chain[1], sk);
    }

    #[test]
    fn test_too_long() {
        let p = Payload::Nonce(vec![0; 70_000]);
        let mut out = Vec::new();
        assert!(matches!(
            emit_payload_chain(&[p], &mut out),
            Err(WireError::TooLong { .. })
        ));
        assert!(out.is_empty());
        let n = NotifyPayload {
            protocol: ProtocolId::Esp,
            spi: vec![0; 300],
            notify_type: NotifyType::RekeySa,
            data: vec![],
        };
        assert!(n.emit_body(&mut out).is_err());
    }

    #[test]
    fn test_payload_packet_view() {
        let p = PayloadPacket::new_checked(&CHAIN[..]).unwrap();
        assert_eq!(p.next_payload(), PayloadType::Unknown(200));
        assert!(!p.critical());
        assert_eq!(p.length(), 8);
        assert_eq!(p.body(), &[1, 2, 3, 4]);
        assert!(PayloadPacket::new_checked(&CHAIN[..3]).is_err());
        assert!(PayloadPacket::new_checked(&CHAIN[..7]).is_err());
        assert!(PayloadPacket::new_checked(&[0u8, 0, 0, 2][..]).is_err());
        let mut buf = [0u8; 6];
        let mut p = PayloadPacket::new_unchecked(&mut buf[..]);
        p.set_next_payload(PayloadType::Notify);
        p.set_critical(true);
        p.set_length(6);
        assert_eq!(buf, [41, 0x80, 0, 6, 0, 0]);
    }

    proptest! {
        #[test]
        fn chain_round_trips(chain in arb::chain()) {
            let mut out = Vec::new();
            let first = emit_payload_chain(&chain, &mut out).unwrap();
            prop_assert_eq!(out.len(), payload_chain_len(&chain));
            let back = parse_payload_chain(first, &out).unwrap();
            prop_assert_eq!(back, chain);
        }

        #[test]
        fn chain_parse_never_panics(first in arb::payload_type(), bytes in arb::bytes(512)) {
            let _ = parse_payload_chain(first, &bytes);
        }

        #[test]
        fn payload_bodies_never_panic(t in arb::payload_type(), c: bool, bytes in arb::bytes(256)) {
            let _ = Payload::parse(t, c, PayloadType::NoNext, &bytes);
        }

        #[test]
        fn chain_truncations_fail_cleanly(chain in arb::chain(), cut in any::<prop::sample::Index>()) {
            let mut out = Vec::new();
            let first = emit_payload_chain(&chain, &mut out).unwrap();
            if !out.is_empty() {
                let n = cut.index(out.len());
                prop_assert!(parse_payload_chain(first, &out[..n]).is_err());
            }
        }
    }
}
