//! TCP MSS clamping on a forwarded IP packet (RFC 9293 3.7.1 and RFC 6691:
//! the Maximum Segment Size option of a SYN; RFC 1624: the incremental
//! update of the TCP checksum).
//!
//! A router in front of a tunnel lowers the MSS that each end announces in
//! its SYN (and SYN-ACK), so that neither sends segments that do not fit the
//! tunnel: the classic cure for stalls through IPsec tunnels, where path MTU
//! discovery often fails. [`clamp_mss`] rewrites the option in place and
//! fixes the checksum by the difference alone, leaving every other byte
//! alone. It never panics: a packet it cannot read (truncated, bad lengths,
//! a later fragment, malformed options) is left as it is.

/// TCP header fields (RFC 9293 3.1), offsets from the start of the header.
mod field {
    use crate::wire::Field;
    /// Data offset (high nibble) and reserved bits.
    pub const DATA_OFFSET: usize = 12;
    /// Control bits (CWR ECE URG ACK PSH RST SYN FIN).
    pub const FLAGS: usize = 13;
    /// Checksum.
    pub const CHECKSUM: Field = 16..18;
    /// Where the options start.
    pub const OPTIONS: usize = 20;
}

/// IPv4 header fields (RFC 791 3.1).
mod ipv4 {
    use crate::wire::Field;
    /// Total length.
    pub const TOTAL_LEN: Field = 2..4;
    /// Flags and fragment offset.
    pub const FRAG: Field = 6..8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Minimum header length.
    pub const HEADER_LEN: usize = 20;
}

/// IPv6 header fields (RFC 8200 3).
mod ipv6 {
    use crate::wire::Field;
    /// Payload length.
    pub const PAYLOAD_LEN: Field = 4..6;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Header length.
    pub const HEADER_LEN: usize = 40;
}

/// IP protocol number of TCP.
const PROTO_TCP: u8 = 6;
/// SYN control bit.
const SYN: u8 = 0x02;
/// TCP option kinds (RFC 9293 3.2).
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
/// Length of the MSS option.
const OPT_MSS_LEN: u8 = 4;

/// What [`clamp_mss`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not a readable TCP SYN with an MSS option: left alone.
    NotApplicable,
    /// The MSS was at most the limit already.
    Unchanged(u16),
    /// The MSS was lowered.
    Lowered {
        /// The MSS the packet carried.
        from: u16,
        /// The MSS it carries now.
        to: u16,
    },
}

/// Lowers the MSS option of a TCP SYN or SYN-ACK in `packet` (IPv4 or IPv6)
/// to at most `max`, and fixes the TCP checksum incrementally
/// (RFC 1624 3, eqn. 3). Anything else is left untouched.
pub fn clamp_mss(packet: &mut [u8], max: u16) -> Clamp {
    match tcp_span(packet) {
        Some(tcp) => clamp_tcp(&mut packet[tcp], max),
        None => Clamp::NotApplicable,
    }
}

/// The range of the TCP header's bytes present in `packet`, when it is the
/// first (or only) fragment of a TCP segment.
fn tcp_span(packet: &[u8]) -> Option<core::ops::Range<usize>> {
    match packet.first()? >> 4 {
        4 => ipv4_tcp_span(packet),
        6 => ipv6_tcp_span(packet),
        _ => None,
    }
}

fn ipv4_tcp_span(packet: &[u8]) -> Option<core::ops::Range<usize>> {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes(
        packet.get(ipv4::TOTAL_LEN)?.try_into().ok()?,
    ));
    if ihl < ipv4::HEADER_LEN || total < ihl || total > packet.len() {
        return None;
    }
    let frag = u16::from_be_bytes(packet.get(ipv4::FRAG)?.try_into().ok()?);
    // Only the first fragment (offset 0) carries the TCP header.
    if frag & 0x1fff != 0 || packet[ipv4::PROTOCOL] != PROTO_TCP {
        return None;
    }
    Some(ihl..total)
}

/// IPv6: the TCP header directly after the fixed header or after extension
/// headers (RFC 8200 4): hop-by-hop, routing, destination options, and a
/// fragment header with offset 0.
fn ipv6_tcp_span(packet: &[u8]) -> Option<core::ops::Range<usize>> {
    let payload = usize::from(u16::from_be_bytes(
        packet.get(ipv6::PAYLOAD_LEN)?.try_into().ok()?,
    ));
    let end = ipv6::HEADER_LEN.checked_add(payload)?;
    if end > packet.len() {
        return None;
    }
    let mut next = packet[ipv6::NEXT_HEADER];
    let mut at = ipv6::HEADER_LEN;
    // A bounded walk: each extension header is at least 8 bytes.
    for _ in 0..8 {
        match next {
            // An extension header's length may point past the payload.
            PROTO_TCP => return (at <= end).then_some(at..end),
            0 | 43 | 60 => {
                let h = packet.get(at..at.checked_add(2)?.min(end))?;
                if h.len() < 2 {
                    return None;
                }
                next = h[0];
                at = at.checked_add((usize::from(h[1]) + 1) * 8)?;
            }
            44 => {
                let h = packet.get(at..at.checked_add(8)?)?;
                if at + 8 > end || u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return None;
                }
                next = h[0];
                at += 8;
            }
            _ => return None,
        }
    }
    None
}

/// Clamps within a TCP header (and whatever follows it).
fn clamp_tcp(tcp: &mut [u8], max: u16) -> Clamp {
    if tcp.len() < field::OPTIONS || tcp[field::FLAGS] & SYN == 0 {
        return Clamp::NotApplicable;
    }
    let hlen = usize::from(tcp[field::DATA_OFFSET] >> 4) * 4;
    if hlen < field::OPTIONS || hlen > tcp.len() {
        return Clamp::NotApplicable;
    }
    let Some(at) = find_mss(&tcp[field::OPTIONS..hlen]).map(|o| field::OPTIONS + o) else {
        return Clamp::NotApplicable;
    };
    let old = u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    if old <= max {
        return Clamp::Unchanged(old);
    }
    tcp[at..at + 2].copy_from_slice(&max.to_be_bytes());
    let sum = u16::from_be_bytes([tcp[field::CHECKSUM][0], tcp[field::CHECKSUM][1]]);
    // A field at an odd offset adds its bytes swapped to the 16-bit sum
    // (RFC 1071 2(B), byte order independence).
    let (o, n) = if at % 2 == 0 {
        (old, max)
    } else {
        (old.swap_bytes(), max.swap_bytes())
    };
    tcp[field::CHECKSUM].copy_from_slice(&checksum_update(sum, o, n).to_be_bytes());
    Clamp::Lowered { from: old, to: max }
}

/// The offset of the MSS option's value within `options`, if there is a
/// well-formed one before any malformed option.
fn find_mss(options: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            OPT_END => return None,
            OPT_NOP => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                if kind == OPT_MSS {
                    return (len == usize::from(OPT_MSS_LEN)).then_some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// RFC 1624 3, eqn. 3: `HC' = ~(~HC + ~m + m')` in one's complement.
pub fn checksum_update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

#[cfg(test)]
mod tests {

    /// Found by the `tcp_mss_frag` fuzz target: a routing header whose
    /// length reaches past the payload put the TCP "header" after its end,
    /// and slicing it panicked (a laptop or the VGW could stop the daemon
    /// with one packet).
    #[test]
    fn an_extension_header_longer_than_the_payload_is_no_tcp() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&8u16.to_be_bytes()); // payload: 8 bytes
        p[6] = 43; // routing header
        p[40] = PROTO_TCP; // then TCP...
        p[41] = 1; // ...after 16 bytes of routing header: past the payload
        assert_eq!(clamp_mss(&mut p, 1300), Clamp::NotApplicable);
        // Exactly at the end: an empty TCP header, still nothing to clamp.
        p[41] = 0;
        assert_eq!(clamp_mss(&mut p, 1300), Clamp::NotApplicable);
    }
    use super::*;
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
    use pnet_packet::tcp::{self, MutableTcpPacket, TcpPacket};
    use pnet_packet::{MutablePacket, Packet};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Addr = Ipv4Addr::new(172, 16, 4, 10);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);

    /// An IPv4 TCP segment with `options` (padded to 4 bytes by the caller),
    /// `flags`, `payload`, and correct checksums.
    fn ipv4_tcp(options: &[u8], flags: u8, payload: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let tcp_len = 20 + options.len() + payload.len();
        let mut b = vec![0u8; 20 + tcp_len];
        {
            let mut ip = MutableIpv4Packet::new(&mut b).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((20 + tcp_len) as u16);
            ip.set_ttl(64);
            ip.set_flags(2);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source(SRC);
            ip.set_destination(DST);
            let c = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        {
            let mut t = MutableTcpPacket::new(&mut b[20..]).unwrap();
            t.set_source(40000);
            t.set_destination(5201);
            t.set_sequence(0x1234_5678);
            t.set_data_offset((5 + options.len() / 4) as u8);
            t.set_flags(flags);
            t.set_window(64240);
            t.packet_mut()[20..20 + options.len()].copy_from_slice(options);
            t.packet_mut()[20 + options.len()..].copy_from_slice(payload);
            let c = tcp::ipv4_checksum(&t.to_immutable(), &SRC, &DST);
            t.set_checksum(c);
        }
        b
    }

    /// The checksum recomputed from scratch by pnet equals the one in the
    /// packet.
    fn tcp_checksum_ok(b: &[u8]) -> bool {
        let ip = Ipv4Packet::new(b).unwrap();
        let t = TcpPacket::new(ip.payload()).unwrap();
        tcp::ipv4_checksum(&t, &ip.get_source(), &ip.get_destination()) == t.get_checksum()
    }

    /// Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    static LINUX_SYN_OPTIONS: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 1, 0x2c, 0x5e, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    #[test]
    fn test_clamp_linux_syn() {
        let mut p = ipv4_tcp(&LINUX_SYN_OPTIONS, 0x02, &[]);
        let before = p.clone();
        assert_eq!(
            clamp_mss(&mut p, 1379),
            Clamp::Lowered {
                from: 1460,
                to: 1379
            }
        );
        assert_eq!(&p[42..44], &1379u16.to_be_bytes());
        assert!(tcp_checksum_ok(&p));
        // only the MSS value and the TCP checksum changed
        let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
        assert!(
            changed.iter().all(|i| [36, 37, 42, 43].contains(i)),
            "{changed:?}"
        );
        // the IPv4 header checksum is untouched and still right
        let ip = Ipv4Packet::new(&p).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
    }

    #[test]
    fn test_clamp_syn_ack_and_unchanged() {
        let mut p = ipv4_tcp(&LINUX_SYN_OPTIONS, 0x12, b"");
        assert!(matches!(
            clamp_mss(&mut p, 1380),
            Clamp::Lowered { to: 1380, .. }
        ));
        assert!(tcp_checksum_ok(&p));
        let copy = p.clone();
        assert_eq!(clamp_mss(&mut p, 1400), Clamp::Unchanged(1380));
        assert_eq!(p, copy);
    }

    #[test]
    fn test_not_syn_or_no_mss_is_untouched() {
        // an ACK carrying the same option bytes (not legal, but not ours to judge)
        let mut p = ipv4_tcp(&LINUX_SYN_OPTIONS, 0x10, b"data");
        let copy = p.clone();
        assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable);
        assert_eq!(p, copy);
        // a SYN without an MSS option (the peer assumes 536 anyway)
        let mut p = ipv4_tcp(&[1, 1, 4, 2], 0x02, &[]);
        let copy = p.clone();
        assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable);
        assert_eq!(p, copy);
        // UDP
        let mut p = ipv4_tcp(&LINUX_SYN_OPTIONS, 0x02, &[]);
        p[9] = 17;
        let copy = p.clone();
        assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable);
        assert_eq!(p, copy);
    }

    #[test]
    fn test_odd_offset_mss() {
        // NOP, then MSS at option offset 1 (its value at an odd offset), then
        // NOP padding.
        let mut p = ipv4_tcp(&[1, 2, 4, 0x23, 0x28, 1, 1, 1], 0x02, &[]);
        assert_eq!(
            clamp_mss(&mut p, 1379),
            Clamp::Lowered {
                from: 9000,
                to: 1379
            }
        );
        assert_eq!(&p[43..45], &1379u16.to_be_bytes());
        assert!(tcp_checksum_ok(&p));
    }

    #[test]
    fn test_later_fragment_and_bad_lengths() {
        let orig = ipv4_tcp(&LINUX_SYN_OPTIONS, 0x02, &[]);
        // a later fragment: whatever it carries is not a TCP header
        let mut p = orig.clone();
        p[6..8].copy_from_slice(&0x0003u16.to_be_bytes());
        assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable);
        // the first fragment of a segment (MF set, offset 0) is clamped
        let mut p = orig.clone();
        p[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert!(matches!(clamp_mss(&mut p, 536), Clamp::Lowered { .. }));
        // total length beyond the buffer, IHL below 5, data offset past the end
        for (at, v) in [(2usize, 0xffu8), (0, 0x44), (32, 0xf0)] {
            let mut p = orig.clone();
            p[at] = v;
            let copy = p.clone();
            assert_eq!(
                clamp_mss(&mut p, 536),
                Clamp::NotApplicable,
                "byte {at} = {v}"
            );
            assert_eq!(p, copy);
        }
        // an option length running past the header, zero-length options, MSS of length 3
        for opts in [[8u8, 40, 0, 0], [8, 0, 2, 4], [2, 3, 5, 0]] {
            let mut p = ipv4_tcp(&opts, 0x02, &[]);
            assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable, "{opts:?}");
        }
        // truncated everywhere
        for n in 0..orig.len() {
            let mut p = orig[..n].to_vec();
            assert_eq!(clamp_mss(&mut p, 536), Clamp::NotApplicable);
        }
    }

    fn ipv6_tcp(ext: Option<u8>) -> Vec<u8> {
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let dst: Ipv6Addr = "fd01::10".parse().unwrap();
        let ext_len = if ext.is_some() { 8 } else { 0 };
        let tcp_len = 20 + LINUX_SYN_OPTIONS.len();
        let mut b = vec![0u8; 40 + ext_len + tcp_len];
        {
            let mut ip = MutableIpv6Packet::new(&mut b).unwrap();
            ip.set_version(6);
            ip.set_payload_length((ext_len + tcp_len) as u16);
            ip.set_hop_limit(64);
            ip.set_source(src);
            ip.set_destination(dst);
            match ext {
                Some(e) => {
                    ip.set_next_header(pnet_packet::ip::IpNextHeaderProtocol(e));
                }
                None => ip.set_next_header(IpNextHeaderProtocols::Tcp),
            }
        }
        if ext.is_some() {
            b[40] = PROTO_TCP; // next header; length 0 (8 bytes); a fragment header's offset 0
        }
        {
            let mut t = MutableTcpPacket::new(&mut b[40 + ext_len..]).unwrap();
            t.set_data_offset(10);
            t.set_flags(0x02);
            t.packet_mut()[20..40].copy_from_slice(&LINUX_SYN_OPTIONS);
            let c = tcp::ipv6_checksum(&t.to_immutable(), &src, &dst);
            t.set_checksum(c);
        }
        b
    }

    fn ipv6_checksum_ok(b: &[u8], ext_len: usize) -> bool {
        let ip = Ipv6Packet::new(b).unwrap();
        let t = TcpPacket::new(&b[40 + ext_len..]).unwrap();
        tcp::ipv6_checksum(&t, &ip.get_source(), &ip.get_destination()) == t.get_checksum()
    }

    #[test]
    fn test_ipv6() {
        let mut p = ipv6_tcp(None);
        assert!(matches!(
            clamp_mss(&mut p, 1220),
            Clamp::Lowered { to: 1220, .. }
        ));
        assert!(ipv6_checksum_ok(&p, 0));
        for ext in [0u8, 60, 44] {
            let mut p = ipv6_tcp(Some(ext));
            assert!(
                matches!(clamp_mss(&mut p, 1220), Clamp::Lowered { to: 1220, .. }),
                "after extension header {ext}"
            );
            assert!(ipv6_checksum_ok(&p, 8));
        }
        // a later IPv6 fragment
        let mut p = ipv6_tcp(Some(44));
        p[43] = 0x08;
        assert_eq!(clamp_mss(&mut p, 1220), Clamp::NotApplicable);
    }

    #[test]
    fn test_checksum_update_matches_rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285: HC' = 0x0000
        assert_eq!(checksum_update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    proptest! {
        /// Never panics on random bytes.
        #[test]
        fn never_panics(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
            max in any::<u16>(),
        ) {
            let _ = clamp_mss(&mut bytes, max);
        }

        /// Never panics on a real SYN with random bytes overwritten and a
        /// random length (truncations, bad lengths, odd offsets, fragments).
        #[test]
        fn never_panics_on_damaged_syns(
            edits in proptest::collection::vec((0usize..60, any::<u8>()), 0..6),
            len in 0usize..80,
            v6 in any::<bool>(),
            max in any::<u16>(),
        ) {
            let mut p = if v6 { ipv6_tcp(None) } else { ipv4_tcp(&LINUX_SYN_OPTIONS, 0x02, &[]) };
            for (at, v) in edits {
                if let Some(b) = p.get_mut(at) { *b = v; }
            }
            p.truncate(len);
            let _ = clamp_mss(&mut p, max);
        }

        /// A SYN's MSS option is found wherever it sits among other options:
        /// lowered to the limit when above it, with only the value and the
        /// checksum changed and the checksum right (pnet recomputes it).

        #[test]
        fn random_options_round_trip(
            opts in proptest::collection::vec(any::<u8>(), 0..10usize).prop_map(|mut v| {
                while v.len() % 4 != 0 { v.push(1) }
                v
            }),
            mss in any::<u16>(),
            at in 0usize..4,
            flags in any::<u8>(),
            max in any::<u16>(),
        ) {
            let mut o = vec![1u8; at];
            o.extend([2, 4]);
            o.extend(mss.to_be_bytes());
            o.extend(&opts);
            while o.len() % 4 != 0 { o.push(0) }
            let mut p = ipv4_tcp(&o, flags, b"payload");
            let before = p.clone();
            let r = clamp_mss(&mut p, max);
            prop_assert!(tcp_checksum_ok(&p));
            let value_at = 40 + at + 2;
            if flags & SYN == 0 {
                prop_assert_eq!(r, Clamp::NotApplicable);
                prop_assert_eq!(&p, &before);
            } else if mss > max {
                prop_assert_eq!(r, Clamp::Lowered { from: mss, to: max });
                prop_assert_eq!(&p[value_at..value_at + 2], &max.to_be_bytes());
                for i in 0..p.len() {
                    if ![36, 37, value_at, value_at + 1].contains(&i) {
                        prop_assert_eq!(p[i], before[i]);
                    }
                }
            } else {
                prop_assert_eq!(r, Clamp::Unchanged(mss));
                prop_assert_eq!(&p, &before);
            }
        }
    }
}
