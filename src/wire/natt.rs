//! The UDP port 4500 demux of NAT traversal (RFC 3948 2.2, 2.3; RFC 7296
//! 2.23).
//!
//! A datagram on port 4500 is one of:
//! - a NAT-keepalive: one octet, 0xFF (RFC 3948 2.3);
//! - an IKE message behind the four-octet zero non-ESP marker (RFC 3948
//!   2.2, RFC 7296 2.23: "IKE messages sent on port 4500 MUST be prefixed
//!   with four octets of zero");
//! - an ESP packet, whose SPI, in the same first four octets, is never zero
//!   (RFC 3948 2.2).
//!
//! Anything else is invalid. On port 500 IKE comes without the marker.

use super::esp::{EspPacket, HEADER_LEN as ESP_HEADER_LEN};
use super::ike::HEADER_LEN as IKE_HEADER_LEN;
use super::WireError;

/// The IKE port.
pub const IKE_PORT: u16 = 500;
/// The NAT-T port: IKE with the non-ESP marker, ESP in UDP, keepalives.
pub const NATT_PORT: u16 = 4500;

/// The non-ESP marker: four zero octets in front of IKE on port 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT-keepalive payload (RFC 3948 2.3: "a one-octet long payload with
/// the value 0xFF").
pub const KEEPALIVE: [u8; 1] = [0xff];

/// What a datagram received on port 4500 carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demux<'a> {
    /// A NAT-keepalive, to be ignored (it refreshes the NAT mapping).
    Keepalive,
    /// An IKE message, marker removed (at least an IKE header long; parse it
    /// with [`super::Message::parse`]).
    Ike(&'a [u8]),
    /// An ESP packet (header checked, SPI non-zero).
    Esp(EspPacket<&'a [u8]>),
}

/// Classifies a datagram received on UDP port 4500.
pub fn classify(datagram: &[u8]) -> Result<Demux<'_>, WireError> {
    match datagram {
        [] => Err(WireError::Truncated {
            what: "port 4500 datagram",
            need: 1,
            have: 0,
        }),
        [0xff] => Ok(Demux::Keepalive),
        [_] => Err(WireError::Malformed {
            what: "port 4500 datagram",
            why: "a one-octet datagram that is not a NAT-keepalive (0xFF)",
        }),
        [0, 0, 0, 0, ike @ ..] => {
            if ike.len() < IKE_HEADER_LEN {
                return Err(WireError::Truncated {
                    what: "IKE message after the non-ESP marker",
                    need: IKE_HEADER_LEN,
                    have: ike.len(),
                });
            }
            Ok(Demux::Ike(ike))
        }
        _ if datagram.len() < ESP_HEADER_LEN => Err(WireError::Truncated {
            what: "ESP in UDP",
            need: ESP_HEADER_LEN,
            have: datagram.len(),
        }),
        _ => EspPacket::new_checked(datagram).map(Demux::Esp),
    }
}

/// Appends an IKE message for port 4500: the non-ESP marker, then the
/// message.
pub fn encapsulate_ike(ike: &[u8], out: &mut Vec<u8>) {
    out.reserve(NON_ESP_MARKER.len() + ike.len());
    out.extend_from_slice(&NON_ESP_MARKER);
    out.extend_from_slice(ike);
}

/// An IKE message as a new port-4500 datagram.
pub fn ike_datagram(ike: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encapsulate_ike(ike, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal IKE message (header only, no payloads) behind the marker.
    static IKE_ON_4500: [u8; 32] = [
        0, 0, 0, 0, // non-ESP marker
        1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, // SPIs
        0, 0x20, 37, 0x08, 0, 0, 0, 2, 0, 0, 0, 28, // INFORMATIONAL, id 2, len 28
    ];

    static ESP_IN_UDP: [u8; 12] = [0xc0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];

    #[test]
    fn test_classify() {
        assert_eq!(classify(&KEEPALIVE).unwrap(), Demux::Keepalive);
        match classify(&IKE_ON_4500).unwrap() {
            Demux::Ike(m) => {
                let msg = crate::wire::Message::parse(m).unwrap();
                assert_eq!(msg.header.message_id, 2);
                assert!(msg.payloads.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match classify(&ESP_IN_UDP).unwrap() {
            Demux::Esp(p) => {
                assert_eq!(p.spi(), 0xc000_0001);
                assert_eq!(p.sequence_number(), 9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_invalid() {
        assert!(classify(&[]).is_err());
        assert!(classify(&[0x00]).is_err());
        assert!(classify(&[0xfe]).is_err());
        assert!(classify(&[0xff, 0xff]).is_err());
        assert!(classify(&[0, 0, 0]).is_err());
        // Marker but too short for an IKE header.
        assert!(classify(&IKE_ON_4500[..31]).is_err());
        assert!(classify(&NON_ESP_MARKER).is_err());
        // ESP shorter than its header.
        assert!(classify(&ESP_IN_UDP[..7]).is_err());
        assert!(classify(&ESP_IN_UDP[..8]).is_ok());
    }

    #[test]
    fn test_encapsulate() {
        let mut out = vec![];
        encapsulate_ike(&IKE_ON_4500[4..], &mut out);
        assert_eq!(out, IKE_ON_4500);
        assert_eq!(ike_datagram(&IKE_ON_4500[4..]), IKE_ON_4500);
        assert_eq!(classify(&out).unwrap(), Demux::Ike(&IKE_ON_4500[4..]));
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            match classify(&bytes) {
                Ok(Demux::Keepalive) => prop_assert_eq!(&bytes[..], &KEEPALIVE[..]),
                Ok(Demux::Ike(m)) => {
                    prop_assert_eq!(&bytes[..4], &NON_ESP_MARKER[..]);
                    prop_assert_eq!(m, &bytes[4..]);
                    let _ = crate::wire::Message::parse(m);
                }
                Ok(Demux::Esp(p)) => {
                    prop_assert_ne!(p.spi(), 0);
                    prop_assert!(bytes.len() >= 8);
                }
                Err(_) => {}
            }
        }

        #[test]
        fn ike_round_trips(body in proptest::collection::vec(any::<u8>(), 28..100)) {
            let d = ike_datagram(&body);
            prop_assert_eq!(classify(&d).unwrap(), Demux::Ike(&body[..]));
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..=32) {
            let _ = classify(&IKE_ON_4500[..cut]);
            let _ = classify(&ESP_IN_UDP[..cut.min(12)]);
        }
    }
}
