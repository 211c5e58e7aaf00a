//! Known answers from a real strongSwan 5.9.8 exchange
//! (`tests/fixtures/ike/strongswan-5.9.8`: IKE `aes128-sha1-modp2048`, ESP
//! `aes128-sha1`, PSK, keys from charon's `ike = 4` log). Checks that key
//! derivation, SK payload decryption, PSK AUTH and ESP agree byte for byte
//! with another implementation.

use super::crypto::{DhGroup, Encr, EspCipher, IkeCipher, Integ, Prf};
use super::keys::{psk_auth, signed_octets, skeyseed, verify_psk_auth, ChildSaKeys, IkeSaKeys};
use super::proposal::{EspSuite, IkeSuite};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/ike/strongswan-5.9.8/", $name))
    };
}

const INIT_REQ: &[u8] = fixture!("01-ike_sa_init-request.udp500.bin");
const INIT_RSP: &[u8] = fixture!("02-ike_sa_init-response.udp500.bin");
const KEYS_TXT: &str = include_str!("../../tests/fixtures/ike/strongswan-5.9.8/keys.txt");
const PSK: &[u8] = b"capture-only-psk-0123456789";

/// (message with its non-ESP marker, decrypted inner payloads with padding, sent by the initiator)
const SK_MESSAGES: [(&[u8], &[u8], bool); 8] = [
    (
        fixture!("03-ike_auth-request.udp4500.bin"),
        fixture!("03-ike_auth-request.udp4500.plaintext.bin"),
        true,
    ),
    (
        fixture!("04-ike_auth-response.udp4500.bin"),
        fixture!("04-ike_auth-response.udp4500.plaintext.bin"),
        false,
    ),
    (
        fixture!("07-create_child_sa-request.udp4500.bin"),
        fixture!("07-create_child_sa-request.udp4500.plaintext.bin"),
        true,
    ),
    (
        fixture!("08-create_child_sa-response.udp4500.bin"),
        fixture!("08-create_child_sa-response.udp4500.plaintext.bin"),
        false,
    ),
    (
        fixture!("09-informational-delete_child-request.udp4500.bin"),
        fixture!("09-informational-delete_child-request.udp4500.plaintext.bin"),
        true,
    ),
    (
        fixture!("10-informational-delete_child-response.udp4500.bin"),
        fixture!("10-informational-delete_child-response.udp4500.plaintext.bin"),
        false,
    ),
    (
        fixture!("11-informational-delete_ike-request.udp4500.bin"),
        fixture!("11-informational-delete_ike-request.udp4500.plaintext.bin"),
        true,
    ),
    (
        fixture!("12-informational-delete_ike-response.udp4500.bin"),
        fixture!("12-informational-delete_ike-response.udp4500.plaintext.bin"),
        false,
    ),
];

const PAYLOAD_ID_I: u8 = 35;
const PAYLOAD_ID_R: u8 = 36;
const PAYLOAD_AUTH: u8 = 39;
const PAYLOAD_NONCE: u8 = 40;

/// The payloads of a chain starting with type `first`: (type, body without
/// the generic header). Test fixtures only: trusts the lengths.
fn payloads(mut next: u8, mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while next != 0 && data.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        out.push((next, &data[4..len]));
        next = data[0];
        data = &data[len..];
    }
    out
}

fn find(list: &[(u8, &'static [u8])], kind: u8) -> &'static [u8] {
    list.iter()
        .find(|(k, _)| *k == kind)
        .expect("payload present")
        .1
}

/// The payloads of an unencrypted IKE message.
fn message_payloads(msg: &'static [u8]) -> Vec<(u8, &'static [u8])> {
    payloads(msg[16], &msg[28..])
}

fn key(name: &str) -> Vec<u8> {
    let line = KEYS_TXT
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .expect("key in keys.txt");
    hex::decode(line.split(" = ").nth(1).unwrap()).unwrap()
}

fn suite() -> IkeSuite {
    IkeSuite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha1_96),
        prf: Prf::HmacSha1,
        dh: DhGroup::Modp2048,
    }
}

fn nonces() -> (&'static [u8], &'static [u8]) {
    (
        find(&message_payloads(INIT_REQ), PAYLOAD_NONCE),
        find(&message_payloads(INIT_RSP), PAYLOAD_NONCE),
    )
}

fn ike_keys() -> IkeSaKeys {
    let (ni, nr) = nonces();
    let spi_i = u64::from_be_bytes(INIT_RSP[0..8].try_into().unwrap());
    let spi_r = u64::from_be_bytes(INIT_RSP[8..16].try_into().unwrap());
    let seed = skeyseed(Prf::HmacSha1, ni, nr, &key("shared_Diffie_Hellman_secret"));
    IkeSaKeys::derive(&suite(), seed.expose(), ni, nr, spi_i, spi_r).unwrap()
}

#[test]
fn key_derivation_matches_charon() {
    let (ni, nr) = nonces();
    assert_eq!(
        key("shared_Diffie_Hellman_secret").len(),
        DhGroup::Modp2048.shared_len()
    );
    let seed = skeyseed(Prf::HmacSha1, ni, nr, &key("shared_Diffie_Hellman_secret"));
    assert_eq!(seed.expose(), key("SKEYSEED"));
    let k = ike_keys();
    for (ours, name) in [
        (&k.sk_d, "Sk_d"),
        (&k.sk_ai, "Sk_ai"),
        (&k.sk_ar, "Sk_ar"),
        (&k.sk_ei, "Sk_ei"),
        (&k.sk_er, "Sk_er"),
        (&k.sk_pi, "Sk_pi"),
        (&k.sk_pr, "Sk_pr"),
    ] {
        assert_eq!(ours.expose(), key(name), "{name}");
    }
}

#[test]
fn sk_payloads_from_charon_open() {
    let k = ike_keys();
    let from_i = IkeCipher::new(
        Encr::AesCbc128,
        Some(Integ::HmacSha1_96),
        k.sk_ei.expose(),
        k.sk_ai.expose(),
    )
    .unwrap();
    let from_r = IkeCipher::new(
        Encr::AesCbc128,
        Some(Integ::HmacSha1_96),
        k.sk_er.expose(),
        k.sk_ar.expose(),
    )
    .unwrap();
    for (i, (datagram, padded, by_initiator)) in SK_MESSAGES.iter().enumerate() {
        assert_eq!(&datagram[..4], &[0; 4], "non-ESP marker");
        let msg = &datagram[4..];
        assert_eq!(msg[16], 46, "first payload is SK");
        let (aad, body) = msg.split_at(28 + 4);
        let cipher = if *by_initiator { &from_i } else { &from_r };
        let inner = cipher.open(aad, body).unwrap();
        let pad = usize::from(*padded.last().unwrap());
        assert_eq!(inner, &padded[..padded.len() - pad - 1], "message {i}");
        assert_eq!(
            body.len(),
            cipher.sealed_len(inner.len()),
            "same padding rule as charon"
        );
        // The other direction's keys do not open it.
        let wrong = if *by_initiator { &from_r } else { &from_i };
        assert!(wrong.open(aad, body).is_err());
    }
}

#[test]
fn psk_auth_matches_charon() {
    let k = ike_keys();
    let (ni, nr) = nonces();
    let (req, req_padded, _) = SK_MESSAGES[0];
    let (rsp, rsp_padded, _) = SK_MESSAGES[1];
    let inner_i = payloads(req[4 + 28], req_padded);
    let inner_r = payloads(rsp[4 + 28], rsp_padded);

    // Initiator: RealMessage1 | NonceRData | prf(SK_pi, IDi').
    let id_i = find(&inner_i, PAYLOAD_ID_I);
    assert_eq!(id_i, [1, 0, 0, 0, 192, 0, 2, 1], "ID_IPV4_ADDR 192.0.2.1");
    let octets = signed_octets(Prf::HmacSha1, INIT_REQ, nr, k.sk_pi.expose(), id_i);
    assert_eq!(octets.len(), 516, "as charon logged");
    let auth_i = find(&inner_i, PAYLOAD_AUTH);
    assert_eq!(auth_i[0], 2, "Shared Key Message Integrity Code");
    assert_eq!(psk_auth(Prf::HmacSha1, PSK, &octets), &auth_i[4..]);
    assert!(verify_psk_auth(Prf::HmacSha1, PSK, &octets, &auth_i[4..]));
    assert!(!verify_psk_auth(
        Prf::HmacSha1,
        b"capture-only-psk-0123456788",
        &octets,
        &auth_i[4..]
    ));

    // Responder: RealMessage2 | NonceIData | prf(SK_pr, IDr').
    let id_r = find(&inner_r, PAYLOAD_ID_R);
    let octets = signed_octets(Prf::HmacSha1, INIT_RSP, ni, k.sk_pr.expose(), id_r);
    assert_eq!(octets.len(), 524, "as charon logged");
    let auth_r = find(&inner_r, PAYLOAD_AUTH);
    assert!(verify_psk_auth(Prf::HmacSha1, PSK, &octets, &auth_r[4..]));
}

#[test]
fn esp_from_charon_opens_with_derived_child_keys() {
    let k = ike_keys();
    let (ni, nr) = nonces();
    let esp = EspSuite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha1_96),
        dh: None,
        esn: false,
    };
    let child = ChildSaKeys::derive(Prf::HmacSha1, k.sk_d.expose(), &esp, None, ni, nr).unwrap();
    // SPI 5e87a68a carries initiator-to-responder traffic.
    let c = EspCipher::new(
        esp.encr,
        esp.integ,
        child.encr_i.expose(),
        child.integ_i.expose(),
    )
    .unwrap();
    for (seq, datagram) in [
        (1u8, &fixture!("05-esp-seq1.udp4500.bin")[..]),
        (2, &fixture!("06-esp-seq2.udp4500.bin")[..]),
    ] {
        let mut packet = datagram.to_vec();
        assert_eq!(&packet[..8], &[0x5e, 0x87, 0xa6, 0x8a, 0, 0, 0, seq]);
        let data = c.open_in_place(&mut packet, None).unwrap();
        let plain = &packet[data];
        let next_header = plain[plain.len() - 1];
        let pad = usize::from(plain[plain.len() - 2]);
        assert_eq!(next_header, 4, "tunnel mode: an IPv4 packet inside");
        let padding = &plain[plain.len() - 2 - pad..plain.len() - 2];
        assert!(
            padding
                .iter()
                .enumerate()
                .all(|(i, b)| usize::from(*b) == i + 1),
            "RFC 4303 default padding"
        );
        let inner = &plain[..plain.len() - 2 - pad];
        assert_eq!(inner[0] >> 4, 4, "IPv4");
        assert_eq!(
            usize::from(u16::from_be_bytes([inner[2], inner[3]])),
            inner.len(),
            "IPv4 total length"
        );
        assert_eq!(inner[9], 1, "ICMP");
    }
    // The responder-to-initiator keys do not verify these packets.
    let r = EspCipher::new(
        esp.encr,
        esp.integ,
        child.encr_r.expose(),
        child.integ_r.expose(),
    )
    .unwrap();
    let mut packet = fixture!("05-esp-seq1.udp4500.bin").to_vec();
    assert!(r.open_in_place(&mut packet, None).is_err());
}
