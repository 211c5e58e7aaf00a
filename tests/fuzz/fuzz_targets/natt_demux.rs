//! The UDP 4500 demux (RFC 3948 2.2, 2.3) on arbitrary datagrams:
//! `wire::natt::classify` must never panic, and its answer must agree with
//! the RFC: a keepalive is exactly 0xFF, IKE sits behind four zero octets,
//! ESP has a non-zero SPI. Whatever it hands on is then parsed further, as
//! the daemon does (IKE with `Message::parse`, ESP header fields).
#![no_main]

use ipiece::wire::natt::{classify, encapsulate_ike, Demux, NON_ESP_MARKER};
use ipiece::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        Ok(Demux::Keepalive) => assert_eq!(data, [0xff], "keepalive that is not 0xFF"),
        Ok(Demux::Ike(ike)) => {
            assert!(
                data.starts_with(&NON_ESP_MARKER),
                "IKE without the non-ESP marker"
            );
            assert_eq!(ike, &data[4..], "IKE is not the rest after the marker");
            let _ = Message::parse(ike);
            // Encapsulating it again gives the datagram back.
            let mut out = Vec::new();
            encapsulate_ike(ike, &mut out);
            assert_eq!(out, data);
        }
        Ok(Demux::Esp(esp)) => {
            assert_ne!(esp.spi(), 0, "ESP with SPI 0 (that is the non-ESP marker)");
            assert_eq!(esp.spi().to_be_bytes(), data[..4], "SPI");
            let _ = esp.sequence_number();
            let _ = esp.payload().len();
        }
        Err(_) => {}
    }
});
