//! The IKEv2 codec on arbitrary bytes (RFC 7296 3): `wire::Message::parse`
//! must never panic, and what it accepts must emit, parse back to the same
//! message and emit the same bytes again. The same for a bare payload chain
//! (what an SK payload decrypts to), whose first payload type is the first
//! input byte, and for `encrypted_span`, which the IKE SA runs on every
//! protected message before decrypting it.
#![no_main]

use ipiece::wire::{
    emit_payload_chain, encrypted_span, parse_payload_chain, HeaderRepr, IkePacket, Message,
    PayloadType,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Whole messages.
    if let Ok(msg) = Message::parse(data) {
        let bytes = msg
            .to_bytes()
            .unwrap_or_else(|e| panic!("parsed message does not emit ({e}): {msg:?}"));
        assert_eq!(
            bytes.len(),
            msg.buffer_len(),
            "buffer_len disagrees with emit"
        );
        let again = Message::parse(&bytes)
            .unwrap_or_else(|e| panic!("emitted message does not parse ({e}): {msg:?}"));
        assert_eq!(again, msg, "parse(emit(m)) != m");
        assert_eq!(again.to_bytes().unwrap(), bytes, "emit is not stable");
    }
    if let Ok(p) = IkePacket::new_checked(data) {
        let _ = HeaderRepr::parse(&p);
        let _ = (
            p.spi_i(),
            p.spi_r(),
            p.message_id(),
            p.length(),
            p.payloads().len(),
        );
    }
    let _ = encrypted_span(data);

    // Bare payload chains (the plaintext of an SK payload).
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(chain) = parse_payload_chain(PayloadType::from(first), rest) {
            let mut out = Vec::new();
            let t = emit_payload_chain(&chain, &mut out)
                .unwrap_or_else(|e| panic!("parsed chain does not emit ({e}): {chain:?}"));
            let again = parse_payload_chain(t, &out)
                .unwrap_or_else(|e| panic!("emitted chain does not parse ({e}): {chain:?}"));
            assert_eq!(again, chain, "chain: parse(emit(c)) != c");
        }
    }
});
