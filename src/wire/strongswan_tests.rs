//! A real strongSwan 5.9.8 exchange (tests/fixtures/ike/strongswan-5.9.8):
//! every datagram parses, re-emits byte for byte, and the decrypted SK
//! plaintexts parse into the payloads charon logged.

use super::esp::EspPacket;
use super::ike::{encrypted_span, Message, HEADER_LEN};
use super::natt::{classify, Demux};
use super::*;
use std::net::Ipv4Addr;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ike/strongswan-5.9.8/",
            $name
        ))
        .as_slice()
    };
}

const IV_LEN: usize = 16; // AES-CBC
const ICV_LEN: usize = 12; // HMAC-SHA1-96

/// Parses an IKE message and checks that emit gives the same bytes back.
fn parse_exact(bytes: &[u8]) -> Message {
    let m = Message::parse(bytes).unwrap();
    assert_eq!(m.to_bytes().unwrap(), bytes, "re-emit differs");
    assert_eq!(m.buffer_len(), bytes.len());
    m
}

/// Demuxes a port-4500 datagram, parses its IKE message, checks the SK
/// payload against its decrypted plaintext and returns the inner payloads.
fn inner(datagram: &[u8], plaintext: &[u8]) -> (Message, Vec<Payload>) {
    let Demux::Ike(bytes) = classify(datagram).unwrap() else {
        panic!("not IKE");
    };
    let m = parse_exact(bytes);
    assert_eq!(m.payloads.len(), 1);
    let sk = m.encrypted().unwrap();
    let crate::wire::CipherParts {
        iv,
        ciphertext: ct,
        icv,
    } = sk.split(IV_LEN, ICV_LEN).unwrap();
    assert_eq!((iv.len(), icv.len()), (IV_LEN, ICV_LEN));
    assert_eq!(ct.len(), plaintext.len());
    let span = encrypted_span(bytes).unwrap().unwrap();
    assert_eq!(span.header_start, HEADER_LEN);
    assert_eq!(span.inner_next_payload, sk.next_payload);
    assert_eq!(&bytes[span.body.clone()], &sk.data[..]);
    assert_eq!(span.body.end, bytes.len());

    let chain_bytes = strip_sk_padding(plaintext).unwrap();
    let chain = parse_payload_chain(sk.next_payload, chain_bytes).unwrap();
    let mut again = Vec::new();
    assert_eq!(
        emit_payload_chain(&chain, &mut again).unwrap(),
        sk.next_payload
    );
    assert_eq!(again, chain_bytes, "inner re-emit differs");
    (m, chain)
}

fn types(payloads: &[Payload]) -> Vec<PayloadType> {
    payloads.iter().map(Payload::payload_type).collect()
}

fn notify_types(payloads: &[Payload]) -> Vec<NotifyType> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.notify_type),
            _ => None,
        })
        .collect()
}

fn aes128_sha1_modp2048(p: &Proposal) {
    let encr: Vec<_> = p.transforms_of(TransformType::Encr).collect();
    assert_eq!(encr.len(), 1);
    assert_eq!(encr[0].id, TransformId::Encr(EncrId::AesCbc));
    assert_eq!(encr[0].key_length(), Some(128));
    let ids = |t| p.transforms_of(t).map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(
        ids(TransformType::Integ),
        [TransformId::Integ(IntegId::HmacSha1_96)]
    );
}

#[test]
fn ike_sa_init_request() {
    let m = parse_exact(fixture!("01-ike_sa_init-request.udp500.bin"));
    let h = m.header;
    assert_eq!(h.exchange_type, ExchangeType::IkeSaInit);
    assert!(h.flags.initiator && !h.flags.response);
    assert_eq!((h.spi_r, h.message_id), (0, 0));
    assert_ne!(h.spi_i, 0);
    use PayloadType as T;
    assert_eq!(
        types(&m.payloads),
        [
            T::Sa,
            T::Ke,
            T::Nonce,
            T::Notify,
            T::Notify,
            T::Notify,
            T::Notify,
            T::Notify
        ]
    );
    assert_eq!(
        notify_types(&m.payloads),
        [
            NotifyType::NatDetectionSourceIp,
            NotifyType::NatDetectionDestinationIp,
            NotifyType::Ikev2FragmentationSupported,
            NotifyType::SignatureHashAlgorithms,
            NotifyType::RedirectSupported,
        ]
    );
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sa.proposals.len(), 1);
    let p = &sa.proposals[0];
    assert_eq!((p.number, p.protocol, p.spi.len()), (1, ProtocolId::Ike, 0));
    aes128_sha1_modp2048(p);
    let ids = |t| p.transforms_of(t).map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(ids(TransformType::Prf), [TransformId::Prf(PrfId::HmacSha1)]);
    assert_eq!(ids(TransformType::Dh), [TransformId::Dh(DhGroup::Modp2048)]);
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!((ke.group, ke.data.len()), (DhGroup::Modp2048, 256));
    let Payload::Nonce(n) = &m.payloads[2] else {
        panic!()
    };
    assert!((NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&n.len()));
    let natd = m.notify(NotifyType::NatDetectionSourceIp).unwrap();
    assert_eq!(natd.data.len(), 20); // SHA-1
    let sha = m.notify(NotifyType::SignatureHashAlgorithms).unwrap();
    assert!(sha.signature_hash_algorithms().unwrap().contains(&2)); // SHA2-256
}

#[test]
fn ike_sa_init_response() {
    let req = Message::parse(fixture!("01-ike_sa_init-request.udp500.bin")).unwrap();
    let m = parse_exact(fixture!("02-ike_sa_init-response.udp500.bin"));
    let h = m.header;
    assert!(h.flags.response && !h.flags.initiator);
    assert_eq!(h.spi_i, req.header.spi_i);
    assert_ne!(h.spi_r, 0);
    assert_eq!(
        notify_types(&m.payloads),
        [
            NotifyType::NatDetectionSourceIp,
            NotifyType::NatDetectionDestinationIp,
            NotifyType::Ikev2FragmentationSupported,
            NotifyType::SignatureHashAlgorithms,
            NotifyType::ChildlessIkev2Supported,
            NotifyType::MultipleAuthSupported,
        ]
    );
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!()
    };
    aes128_sha1_modp2048(&sa.proposals[0]);
}

#[test]
fn ike_auth() {
    let (m, req) = inner(
        fixture!("03-ike_auth-request.udp4500.bin"),
        fixture!("03-ike_auth-request.udp4500.plaintext.bin"),
    );
    assert_eq!(m.header.exchange_type, ExchangeType::IkeAuth);
    assert_eq!(m.header.message_id, 1);
    use PayloadType as T;
    assert_eq!(
        types(&req),
        [
            T::IdI,
            T::Notify,
            T::IdR,
            T::Auth,
            T::Sa,
            T::TsI,
            T::TsR,
            T::Notify,
            T::Notify,
            T::Notify
        ]
    );
    assert_eq!(
        notify_types(&req),
        [
            NotifyType::InitialContact,
            NotifyType::MultipleAuthSupported,
            NotifyType::EapOnlyAuthentication,
            NotifyType::Ikev2MessageIdSyncSupported,
        ]
    );
    let Payload::IdI(idi) = &req[0] else { panic!() };
    assert_eq!(
        idi.identity(),
        Some(Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    let Payload::IdR(idr) = &req[2] else { panic!() };
    assert_eq!(
        idr.identity(),
        Some(Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 2)))
    );
    let Payload::Auth(auth) = &req[3] else {
        panic!()
    };
    assert_eq!(
        (auth.method, auth.data.len()),
        (AuthMethod::SharedKeyMic, 20)
    );
    let Payload::Sa(sa) = &req[4] else { panic!() };
    let p = &sa.proposals[0];
    assert_eq!(p.protocol, ProtocolId::Esp);
    assert!(p.spi_u32().is_some());
    aes128_sha1_modp2048(p);
    let esn: Vec<_> = p.transforms_of(TransformType::Esn).map(|t| t.id).collect();
    assert!(esn.contains(&TransformId::Esn(EsnId::NoEsn)));
    for ts in [&req[5], &req[6]] {
        let (Payload::TsI(t) | Payload::TsR(t)) = ts else {
            panic!()
        };
        assert_eq!(t.selectors, [TrafficSelector::ipv4_any()]);
    }

    let (m, resp) = inner(
        fixture!("04-ike_auth-response.udp4500.bin"),
        fixture!("04-ike_auth-response.udp4500.plaintext.bin"),
    );
    assert!(m.header.flags.response);
    assert_eq!(types(&resp), [T::IdR, T::Auth, T::Sa, T::TsI, T::TsR]);
    let Payload::Sa(sa) = &resp[2] else { panic!() };
    // charon: "CHILD_SA cap{1} established with SPIs 664446c5_i 5e87a68a_o".
    assert_eq!(sa.proposals[0].spi_u32(), Some(0x5e87_a68a));
    let Payload::Sa(sa) = &req[4] else { panic!() };
    assert_eq!(sa.proposals[0].spi_u32(), Some(0x6644_46c5));
}

#[test]
fn esp_in_udp() {
    for (bytes, seq) in [
        (fixture!("05-esp-seq1.udp4500.bin"), 1),
        (fixture!("06-esp-seq2.udp4500.bin"), 2),
    ] {
        let Demux::Esp(p) = classify(bytes).unwrap() else {
            panic!("not ESP")
        };
        assert_eq!(p.spi(), 0x5e87_a68a);
        assert_eq!(p.sequence_number(), seq);
        let crate::wire::CipherParts { ciphertext: ct, .. } = p.split(IV_LEN, ICV_LEN).unwrap();
        assert_eq!(ct.len() % 16, 0);
        let h = EspHeader::parse(&EspPacket::new_checked(bytes).unwrap()).unwrap();
        assert_eq!(h.sequence_number, seq);
    }
}

#[test]
fn create_child_sa_rekey() {
    let (m, req) = inner(
        fixture!("07-create_child_sa-request.udp4500.bin"),
        fixture!("07-create_child_sa-request.udp4500.plaintext.bin"),
    );
    assert_eq!(m.header.exchange_type, ExchangeType::CreateChildSa);
    use PayloadType as T;
    assert_eq!(
        types(&req),
        [T::Notify, T::Sa, T::Nonce, T::Ke, T::TsI, T::TsR]
    );
    let rekey = find_notify(&req, NotifyType::RekeySa).unwrap();
    assert_eq!(rekey.protocol, ProtocolId::Esp);
    assert_eq!(rekey.spi_u32(), Some(0x6644_46c5));
    let Payload::Ke(ke) = &req[3] else { panic!() };
    assert_eq!(ke.group, DhGroup::Modp2048);
    let Payload::Sa(sa) = &req[1] else { panic!() };
    assert_eq!(sa.proposals[0].spi_u32(), Some(0x4fad_8540));

    let (_, resp) = inner(
        fixture!("08-create_child_sa-response.udp4500.bin"),
        fixture!("08-create_child_sa-response.udp4500.plaintext.bin"),
    );
    assert_eq!(types(&resp), [T::Sa, T::Nonce, T::Ke, T::TsI, T::TsR]);
    let Payload::Sa(sa) = &resp[0] else { panic!() };
    assert_eq!(sa.proposals[0].spi_u32(), Some(0x18e9_d4ff));
}

#[test]
fn informational_deletes() {
    let (m, req) = inner(
        fixture!("09-informational-delete_child-request.udp4500.bin"),
        fixture!("09-informational-delete_child-request.udp4500.plaintext.bin"),
    );
    assert_eq!(m.header.exchange_type, ExchangeType::Informational);
    assert_eq!(
        req,
        [Payload::Delete(DeletePayload::child(
            ProtocolId::Esp,
            &[0x6644_46c5]
        ))]
    );
    let (_, resp) = inner(
        fixture!("10-informational-delete_child-response.udp4500.bin"),
        fixture!("10-informational-delete_child-response.udp4500.plaintext.bin"),
    );
    let Payload::Delete(d) = &resp[0] else {
        panic!()
    };
    assert_eq!(d.spis_u32(), [0x5e87_a68a]);

    let (_, req) = inner(
        fixture!("11-informational-delete_ike-request.udp4500.bin"),
        fixture!("11-informational-delete_ike-request.udp4500.plaintext.bin"),
    );
    assert_eq!(req, [Payload::Delete(DeletePayload::ike())]);
    let (m, resp) = inner(
        fixture!("12-informational-delete_ike-response.udp4500.bin"),
        fixture!("12-informational-delete_ike-response.udp4500.plaintext.bin"),
    );
    assert_eq!(m.encrypted().unwrap().next_payload, PayloadType::NoNext);
    assert!(resp.is_empty());
}

#[test]
fn every_truncation_and_bit_flip_is_handled() {
    let all: [&[u8]; 12] = [
        fixture!("01-ike_sa_init-request.udp500.bin"),
        fixture!("02-ike_sa_init-response.udp500.bin"),
        fixture!("03-ike_auth-request.udp4500.bin"),
        fixture!("04-ike_auth-response.udp4500.bin"),
        fixture!("05-esp-seq1.udp4500.bin"),
        fixture!("06-esp-seq2.udp4500.bin"),
        fixture!("07-create_child_sa-request.udp4500.bin"),
        fixture!("08-create_child_sa-response.udp4500.bin"),
        fixture!("03-ike_auth-request.udp4500.plaintext.bin"),
        fixture!("04-ike_auth-response.udp4500.plaintext.bin"),
        fixture!("07-create_child_sa-request.udp4500.plaintext.bin"),
        fixture!("08-create_child_sa-response.udp4500.plaintext.bin"),
    ];
    for b in all {
        for n in 0..b.len() {
            let _ = classify(&b[..n]);
            let _ = Message::parse(&b[..n]);
            let _ = parse_payload_chain(PayloadType::IdI, &b[..n]);
        }
        let mut c = b.to_vec();
        for i in 0..c.len() {
            for bit in 0..8 {
                c[i] ^= 1 << bit;
                let _ = classify(&c);
                let _ = Message::parse(&c);
                let _ = encrypted_span(&c);
                let _ = parse_payload_chain(PayloadType::IdI, &c);
                c[i] ^= 1 << bit;
            }
        }
    }
}
