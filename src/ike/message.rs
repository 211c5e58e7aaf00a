//! Adapters between the codecs of [`crate::wire`] and the algorithm layer:
//! SA payload proposals to and from [`Proposal`], and the Encrypted (SK)
//! payload of RFC 7296 section 3.14 sealed and opened with an [`IkeCipher`].

use rand_core::CryptoRngCore;

use super::crypto::{CryptoError, DhGroup, IkeCipher};
use super::proposal::{self, Proposal, Protocol};
use crate::wire::{
    self, encrypted_span, parse_payload_chain, EncryptedPayload, HeaderRepr, Message,
    NotifyPayload, NotifyType, Payload, ProtocolId, TransformId, WireError,
};

/// The wire Diffie-Hellman group number of an algorithm-layer group.
pub fn wire_group(g: DhGroup) -> wire::DhGroup {
    wire::DhGroup::from(g.transform_id())
}

/// The algorithm-layer group of a wire group number, if supported.
pub fn crypto_group(g: wire::DhGroup) -> Option<DhGroup> {
    DhGroup::from_transform(u16::from(g))
}

/// A received proposal in the algorithm layer's terms, with its Proposal Num
/// and SPI. Transforms ipiece does not implement are dropped (they cannot be
/// chosen anyway). `None` for another protocol.
pub fn from_wire(p: &wire::Proposal, protocol: Protocol) -> Option<Proposal> {
    if u8::from(p.protocol) != protocol.protocol_id() {
        return None;
    }
    let transforms = p.transforms.iter().filter_map(|t| {
        let kind = proposal::TransformType::from_number(u8::from(t.id.transform_type()))?;
        Some(proposal::Transform {
            kind,
            id: t.id.id(),
            key_bits: t.key_length(),
        })
    });
    Some(Proposal::from_transforms(protocol, transforms).0)
}

/// A proposal for an SA payload, numbered `number`, with `spi`.
pub fn to_wire(p: &Proposal, number: u8, spi: Vec<u8>) -> wire::Proposal {
    let transforms = p
        .to_transforms()
        .into_iter()
        .map(|t| {
            let id = TransformId::from_parts(wire::TransformType::from(t.kind.number()), t.id);
            match t.key_bits {
                Some(bits) => wire::Transform::with_key_length(id, bits),
                None => wire::Transform::new(id),
            }
        })
        .collect();
    wire::Proposal {
        number,
        protocol: ProtocolId::from(p.protocol.protocol_id()),
        spi,
        transforms,
    }
}

/// An SA payload offering `proposals`, numbered from 1, each with `spi`.
pub fn sa_payload(proposals: &[Proposal], spi: &[u8]) -> Payload {
    Payload::Sa(wire::SaPayload {
        proposals: proposals
            .iter()
            .enumerate()
            .map(|(i, p)| to_wire(p, u8::try_from(i + 1).unwrap_or(u8::MAX), spi.to_vec()))
            .collect(),
    })
}

/// Why a protected message could not be opened. All of these but
/// [`OpenError::Plaintext`] mean "drop it silently" (RFC 7296 2.21.2: errors
/// in messages that fail integrity checks are not answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The outer message does not parse.
    #[error("malformed: {0}")]
    Wire(#[from] WireError),
    /// No SK payload where one is required.
    #[error("no Encrypted payload")]
    NotEncrypted,
    /// The SK payload is fragmented (RFC 7383), which we never announce.
    #[error("fragmented (SKF) message")]
    Fragmented,
    /// The ICV or tag did not verify, or the plaintext is malformed.
    #[error("integrity check failed: {0}")]
    Crypto(#[from] CryptoError),
    /// The message authenticated and decrypted, but the payloads inside do
    /// not parse (an unsupported critical payload, a malformed one): a
    /// request gets an error response (RFC 7296 2.5, 2.21.3) with
    /// [`WireError::notify_type`] and [`WireError::notify_data`].
    #[error("authenticated, but its payloads do not parse: {0}")]
    Plaintext(WireError),
}

/// Builds a protected message: `HDR, SK { inner }` (RFC 7296 3.14).
pub fn seal(
    cipher: &mut IkeCipher,
    rng: &mut dyn CryptoRngCore,
    header: HeaderRepr,
    inner: &[Payload],
) -> Result<Vec<u8>, WireError> {
    let mut plain = Vec::new();
    let first = wire::emit_payload_chain(inner, &mut plain)?;
    let sealed_len = cipher.sealed_len(plain.len());
    let outer = Message {
        header,
        payloads: vec![Payload::Encrypted(EncryptedPayload {
            next_payload: first,
            data: vec![0; sealed_len],
        })],
    };
    let mut bytes = outer.to_bytes()?;
    let aad_len = wire::ike::HEADER_LEN + wire::GENERIC_HEADER_LEN;
    let body = cipher.seal(&mut RngRef(rng), &bytes[..aad_len], &plain);
    bytes.truncate(aad_len);
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Verifies and decrypts `HDR, SK { ... }`, returning the inner payloads.
pub fn open(cipher: &IkeCipher, bytes: &[u8]) -> Result<Vec<Payload>, OpenError> {
    let span = encrypted_span(bytes)?.ok_or(OpenError::NotEncrypted)?;
    if span.payload_type != wire::PayloadType::Sk {
        return Err(OpenError::Fragmented);
    }
    let aad = bytes
        .get(..span.body.start)
        .ok_or(OpenError::NotEncrypted)?;
    let body = bytes
        .get(span.body.clone())
        .ok_or(OpenError::NotEncrypted)?;
    let plain = cipher.open(aad, body)?;
    parse_payload_chain(span.inner_next_payload, &plain).map_err(OpenError::Plaintext)
}

/// A `&mut dyn CryptoRngCore` as a sized `RngCore + CryptoRng`, for the
/// generic functions of the algorithm layer.
pub struct RngRef<'a>(pub &'a mut dyn CryptoRngCore);

impl rand_core::RngCore for RngRef<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for RngRef<'_> {}

/// Lookups over a payload list.
pub trait PayloadsExt {
    /// The first SA payload.
    fn sa(&self) -> Option<&wire::SaPayload>;
    /// The first KE payload.
    fn ke(&self) -> Option<&wire::KePayload>;
    /// The first Nonce.
    fn nonce(&self) -> Option<&[u8]>;
    /// The first Notify of a type.
    fn notify(&self, t: NotifyType) -> Option<&NotifyPayload>;
    /// Every Notify of a type.
    fn notifies(&self, t: NotifyType) -> Vec<&NotifyPayload>;
    /// The first error Notify (types below 16384).
    fn error_notify(&self) -> Option<&NotifyPayload>;
    /// TSi and TSr.
    fn ts(&self) -> Option<(&[wire::TrafficSelector], &[wire::TrafficSelector])>;
}

impl PayloadsExt for [Payload] {
    fn sa(&self) -> Option<&wire::SaPayload> {
        self.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
    }
    fn ke(&self) -> Option<&wire::KePayload> {
        self.iter().find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
    }
    fn nonce(&self) -> Option<&[u8]> {
        self.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        })
    }
    fn notify(&self, t: NotifyType) -> Option<&NotifyPayload> {
        wire::find_notify(self, t)
    }
    fn notifies(&self, t: NotifyType) -> Vec<&NotifyPayload> {
        self.iter()
            .filter_map(|p| match p {
                Payload::Notify(n) if n.notify_type == t => Some(n),
                _ => None,
            })
            .collect()
    }
    fn error_notify(&self) -> Option<&NotifyPayload> {
        self.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type.is_error() => Some(n),
            _ => None,
        })
    }
    fn ts(&self) -> Option<(&[wire::TrafficSelector], &[wire::TrafficSelector])> {
        let tsi = self.iter().find_map(|p| match p {
            Payload::TsI(t) => Some(t.selectors.as_slice()),
            _ => None,
        })?;
        let tsr = self.iter().find_map(|p| match p {
            Payload::TsR(t) => Some(t.selectors.as_slice()),
            _ => None,
        })?;
        Some((tsi, tsr))
    }
}

/// The valid nonce lengths (RFC 7296 2.10 and 3.9: 16 to 256 octets).
pub fn nonce_ok(n: &[u8]) -> bool {
    (wire::NONCE_MIN_LEN..=wire::NONCE_MAX_LEN).contains(&n.len())
}
