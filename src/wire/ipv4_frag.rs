//! What a router does with an IPv4 packet too big for the next hop:
//! fragment it (RFC 791 2.3 and 3.2, "An Example Fragmentation Procedure";
//! RFC 1812 4.2.2.7) or, when the Don't Fragment flag is set, answer with an
//! ICMP Destination Unreachable, "fragmentation needed and DF set" (RFC 792)
//! carrying the next-hop MTU (RFC 1191 4), under the rules of RFC 1812
//! 4.3.2.7 on when not to send an ICMP error.
//!
//! Pure functions over byte slices; they never panic on any input.

use std::net::Ipv4Addr;

/// IPv4 header fields (RFC 791 3.1).
mod field {
    use crate::wire::Field;
    /// Type of service.
    pub const TOS: usize = 1;
    /// Total length.
    pub const TOTAL_LEN: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits, in 8-byte units).
    pub const FRAG: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC: Field = 12..16;
    /// Destination address.
    pub const DST: Field = 16..20;
    /// Where the options start.
    pub const OPTIONS: usize = 20;
}

/// Don't Fragment.
const DF: u16 = 0x4000;
/// More Fragments.
const MF: u16 = 0x2000;
/// The fragment offset bits.
const OFFSET: u16 = 0x1fff;
/// IP protocol number of ICMP.
const PROTO_ICMP: u8 = 1;
/// ICMP Destination Unreachable (RFC 792).
const ICMP_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set".
const CODE_FRAG_NEEDED: u8 = 4;
/// An ICMP error quotes as much of the packet as fits in 576 bytes
/// (RFC 1812 4.3.2.3).
const ICMP_ERROR_MAX: usize = 576;
/// The smallest MTU every IPv4 link must carry (RFC 791: 68 bytes).
pub const MIN_MTU: usize = 68;

/// Why a packet cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// Not a well-formed IPv4 packet (version, header or total length).
    #[error("not a well-formed IPv4 packet")]
    Malformed,
    /// The Don't Fragment flag is set: the sender must be told instead.
    #[error("Don't Fragment is set")]
    DontFragment,
    /// The MTU leaves no room for 8 bytes of data after the header.
    #[error("MTU {0} is too small to fragment into")]
    MtuTooSmall(usize),
}

/// What a packet needs to pass a hop of a given MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// It fits (or is not IPv4: left to the caller).
    Fits,
    /// It is too big and may be fragmented.
    Fragment,
    /// It is too big and has Don't Fragment set.
    DontFragment,
}

/// The IPv4 header length and total length of `packet`, when well formed.
fn lengths(packet: &[u8]) -> Option<(usize, usize)> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes(
        packet.get(field::TOTAL_LEN)?.try_into().ok()?,
    ));
    (ihl >= field::OPTIONS && total >= ihl && total <= packet.len()).then_some((ihl, total))
}

fn frag_word(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[6], packet[7]])
}

/// Whether `packet` fits `mtu`, and if not, what to do with it. Only IPv4
/// packets that are too big are reported; anything else "fits".
pub fn fit(packet: &[u8], mtu: usize) -> Fit {
    match lengths(packet) {
        Some((_, total)) if total > mtu => {
            if frag_word(packet) & DF != 0 {
                Fit::DontFragment
            } else {
                Fit::Fragment
            }
        }
        _ => Fit::Fits,
    }
}

/// The options a non-first fragment carries: those with the "copied" flag
/// (RFC 791 3.1, option type bit 0), padded with End of Option List to a
/// multiple of 4 bytes.
fn copied_options(options: &[u8]) -> Result<Vec<u8>, FragError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*options.get(i + 1).ok_or(FragError::Malformed)?);
                if len < 2 || i + len > options.len() {
                    return Err(FragError::Malformed);
                }
                if kind & 0x80 != 0 {
                    out.extend_from_slice(&options[i..i + len]);
                }
                i += len;
            }
        }
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    Ok(out)
}

/// Splits `packet` into fragments of at most `mtu` bytes (RFC 791 3.2).
/// The first keeps the whole header, the others only the copied options;
/// each fragment's data but the last is a multiple of 8 bytes; a packet that
/// is itself a fragment keeps its offset and, on its last piece, its More
/// Fragments flag. A packet that fits comes back as one piece.
pub fn fragment(packet: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, FragError> {
    let (ihl, total) = lengths(packet).ok_or(FragError::Malformed)?;
    let packet = &packet[..total];
    if total <= mtu {
        return Ok(vec![packet.to_vec()]);
    }
    let frag = frag_word(packet);
    if frag & DF != 0 {
        return Err(FragError::DontFragment);
    }
    let first_header = &packet[..ihl];
    let options = copied_options(&packet[field::OPTIONS..ihl])?;
    let later_len = field::OPTIONS + options.len();
    let first_room = mtu.saturating_sub(ihl) & !7;
    let later_room = mtu.saturating_sub(later_len) & !7;
    if first_room == 0 || later_room == 0 {
        return Err(FragError::MtuTooSmall(mtu));
    }
    let data = &packet[ihl..];
    let base = usize::from(frag & OFFSET) * 8;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let room = if pos == 0 { first_room } else { later_room };
        let end = (pos + room).min(data.len());
        let last = end == data.len();
        let offset = (base + pos) / 8;
        if offset > usize::from(OFFSET) {
            return Err(FragError::Malformed);
        }
        let mut flags = frag & !OFFSET & !MF;
        if !last || frag & MF != 0 {
            flags |= MF;
        }
        let mut f = Vec::with_capacity(later_len.max(ihl) + end - pos);
        if pos == 0 {
            f.extend_from_slice(first_header);
        } else {
            f.extend_from_slice(&packet[..field::OPTIONS]);
            f.extend_from_slice(&options);
            f[0] = 0x40 | (later_len / 4) as u8;
        }
        f.extend_from_slice(&data[pos..end]);
        let hl = f.len() - (end - pos);
        let len = f.len() as u16;
        f[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
        f[field::FRAG].copy_from_slice(&(flags | offset as u16).to_be_bytes());
        set_header_checksum(&mut f[..hl]);
        out.push(f);
        pos = end;
    }
    Ok(out)
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn set_header_checksum(header: &mut [u8]) {
    header[field::CHECKSUM].fill(0);
    let c = checksum(header);
    header[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
}

/// Whether an ICMP error may be sent about `packet` (RFC 1812 4.3.2.7): not
/// about an ICMP error, a later fragment, or a packet whose source is not
/// one host (unspecified, loopback, multicast, broadcast, class E).
fn may_answer(packet: &[u8], ihl: usize) -> bool {
    if frag_word(packet) & OFFSET != 0 {
        return false;
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[field::SRC]).unwrap_or([0; 4]));
    if src.is_unspecified()
        || src.is_loopback()
        || src.is_multicast()
        || src.is_broadcast()
        || src.octets()[0] >= 240
    {
        return false;
    }
    if packet[field::PROTOCOL] == PROTO_ICMP {
        // Only queries (echo, timestamp, ...) may draw an error; an
        // unreadable ICMP header is treated as an error message.
        return matches!(packet.get(ihl), Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18));
    }
    true
}

/// The ICMP "fragmentation needed and DF set" for `packet` (RFC 792,
/// RFC 1191 4: the Next-Hop MTU in the low 16 bits of the second word),
/// from `src` to the packet's source, quoting as much of the packet as fits
/// in 576 bytes (RFC 1812 4.3.2.3). `None` when no error may be sent about
/// this packet.
pub fn frag_needed(packet: &[u8], mtu: u16, src: Ipv4Addr) -> Option<Vec<u8>> {
    let (ihl, total) = lengths(packet)?;
    let packet = &packet[..total];
    if !may_answer(packet, ihl) {
        return None;
    }
    let quote = &packet[..total.min(ICMP_ERROR_MAX - 28)];
    let mut out = vec![0u8; 28 + quote.len()];
    out[0] = 0x45;
    // Internetwork control precedence, as ICMP errors go (RFC 1812 4.3.2.5).
    out[field::TOS] = 0xc0;
    let len = out.len() as u16;
    out[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    out[field::IDENT].fill(0);
    out[field::TTL] = 64;
    out[field::PROTOCOL] = PROTO_ICMP;
    out[field::SRC].copy_from_slice(&src.octets());
    out[field::DST].copy_from_slice(&packet[field::SRC]);
    set_header_checksum(&mut out[..20]);
    let icmp = &mut out[20..];
    icmp[0] = ICMP_UNREACHABLE;
    icmp[1] = CODE_FRAG_NEEDED;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::icmp::{self, IcmpPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
    use pnet_packet::Packet;
    use proptest::prelude::*;

    const GW: Ipv4Addr = Ipv4Addr::new(172, 16, 60, 1);

    /// An IPv4 packet with `options`, DF as given, `len` bytes of counting
    /// payload, protocol UDP.
    fn packet(options: &[u8], df: bool, len: usize) -> Vec<u8> {
        let hl = 20 + options.len();
        let mut b = vec![0u8; hl + len];
        {
            let mut p = MutableIpv4Packet::new(&mut b).unwrap();
            p.set_version(4);
            p.set_header_length((hl / 4) as u8);
            p.set_total_length((hl + len) as u16);
            p.set_identification(0xbeef);
            p.set_flags(if df { 2 } else { 0 });
            p.set_ttl(63);
            p.set_next_level_protocol(IpNextHeaderProtocols::Udp);
            p.set_source("172.16.4.10".parse().unwrap());
            p.set_destination("10.0.1.10".parse().unwrap());
        }
        b[20..hl].copy_from_slice(options);
        for (i, x) in b[hl..].iter_mut().enumerate() {
            *x = i as u8;
        }
        let c = ipv4::checksum(&Ipv4Packet::new(&b).unwrap());
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Reassembles fragments (RFC 791's procedure, simplified to in-order
    /// pieces of one datagram) and checks every header on the way.
    fn reassemble(frags: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let mut data = Vec::new();
        let mut first_header = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let p = Ipv4Packet::new(f).unwrap();
            assert_eq!(
                ipv4::checksum(&p),
                p.get_checksum(),
                "fragment {i} header checksum"
            );
            assert_eq!(usize::from(p.get_total_length()), f.len());
            assert_eq!(usize::from(p.get_fragment_offset()) * 8, data.len());
            assert_eq!(p.get_identification(), 0xbeef);
            let last = i == frags.len() - 1;
            assert_eq!(p.get_flags() & 1 != 0, !last, "MF on fragment {i}");
            let hl = usize::from(p.get_header_length()) * 4;
            if i == 0 {
                first_header = f[..hl].to_vec();
            }
            if !last {
                assert_eq!((f.len() - hl) % 8, 0);
            }
            data.extend_from_slice(&f[hl..]);
        }
        (first_header, data)
    }

    #[test]
    fn test_fragment_1500_into_1400() {
        let p = packet(&[], false, 1480);
        assert_eq!(fit(&p, 1400), Fit::Fragment);
        let frags = fragment(&p, 1400).unwrap();
        assert_eq!(
            frags.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1396, 124]
        );
        let (h, data) = reassemble(&frags);
        // the first header is the original but for length, MF and checksum
        for i in (0..20).filter(|i| ![2, 3, 6, 10, 11].contains(i)) {
            assert_eq!(h[i], p[i], "header byte {i}");
        }
        assert_eq!(data, &p[20..]);
    }

    #[test]
    fn test_fragment_copies_only_copied_options() {
        // Record Route (7, not copied) then Security-like option 130 (copied),
        // padded to 12 bytes.
        let opts = [7, 7, 4, 0, 0, 0, 0, 130, 4, 1, 2, 0];
        let p = packet(&opts, false, 100);
        let frags = fragment(&p, 80).unwrap();
        assert_eq!(Ipv4Packet::new(&frags[0]).unwrap().get_header_length(), 8);
        for f in &frags[1..] {
            let q = Ipv4Packet::new(f).unwrap();
            assert_eq!(q.get_header_length(), 6);
            assert_eq!(&f[20..24], &[130, 4, 1, 2]);
        }
        let (_, data) = reassemble(&frags);
        assert_eq!(data, &p[32..]);
    }

    #[test]
    fn test_fragment_of_a_fragment_keeps_offset_and_mf() {
        let mut p = packet(&[], false, 200);
        // a middle fragment at offset 800 with MF
        p[6..8].copy_from_slice(&(MF | 100).to_be_bytes());
        p[10..12].fill(0);
        let c = ipv4::checksum(&Ipv4Packet::new(&p).unwrap());
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let frags = fragment(&p, 100).unwrap();
        for (i, f) in frags.iter().enumerate() {
            let q = Ipv4Packet::new(f).unwrap();
            assert_eq!(
                q.get_flags() & 1,
                1,
                "MF stays on every piece, the last included"
            );
            if i == 0 {
                assert_eq!(q.get_fragment_offset(), 100);
            }
        }
        assert_eq!(frags.iter().map(|f| f.len() - 20).sum::<usize>(), 200);
    }

    #[test]
    fn test_dont_fragment_and_errors() {
        let p = packet(&[], true, 1480);
        assert_eq!(fit(&p, 1400), Fit::DontFragment);
        assert_eq!(fragment(&p, 1400), Err(FragError::DontFragment));
        assert_eq!(fit(&p, 1500), Fit::Fits);
        assert_eq!(fragment(&p, 1500).unwrap(), vec![p.clone()]);
        let p = packet(&[], false, 100);
        assert_eq!(fragment(&p, 27), Err(FragError::MtuTooSmall(27)));
        assert_eq!(fragment(&p[..50], 60), Err(FragError::Malformed));
        assert_eq!(fit(&[0x60, 0, 0, 0], 1), Fit::Fits, "IPv6 is the caller's");
    }

    #[test]
    fn test_frag_needed() {
        let p = packet(&[], true, 1400);
        let e = frag_needed(&p, 1400, GW).unwrap();
        assert_eq!(e.len(), 576);
        let ip = Ipv4Packet::new(&e).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        assert_eq!(ip.get_source(), GW);
        assert_eq!(ip.get_destination(), Ipv4Addr::new(172, 16, 4, 10));
        assert_eq!(ip.get_next_level_protocol(), IpNextHeaderProtocols::Icmp);
        let icmp = IcmpPacket::new(ip.payload()).unwrap();
        assert_eq!(icmp::checksum(&icmp), icmp.get_checksum());
        assert_eq!((icmp.get_icmp_type().0, icmp.get_icmp_code().0), (3, 4));
        assert_eq!(
            &ip.payload()[4..8],
            &[0, 0, 0x05, 0x78],
            "next-hop MTU 1400"
        );
        assert_eq!(&ip.payload()[8..], &p[..548]);
    }

    #[test]
    fn test_no_error_about_errors_fragments_or_odd_sources() {
        let mut p = packet(&[], true, 100);
        p[9] = PROTO_ICMP;
        p[20] = 3; // an ICMP error
        assert_eq!(frag_needed(&p, 1400, GW), None);
        p[20] = 8; // an echo request
        assert!(frag_needed(&p, 1400, GW).is_some());
        let mut q = packet(&[], false, 100);
        q[6..8].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(frag_needed(&q, 1400, GW), None);
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [255, 255, 255, 255],
        ] {
            let mut q = packet(&[], true, 100);
            q[12..16].copy_from_slice(&src);
            assert_eq!(frag_needed(&q, 1400, GW), None, "{src:?}");
        }
        assert_eq!(frag_needed(&[0x45, 0, 0], 1400, GW), None);
    }

    proptest! {
        /// Any payload, options of copied and uncopied kinds, any MTU:
        /// the fragments fit, and reassemble to the original.
        #[test]
        fn fragments_fit_and_reassemble(
            len in 0usize..3000,
            mtu in 68usize..1600,
            copied in any::<bool>(),
        ) {
            let opts: &[u8] = if copied { &[130, 4, 9, 9] } else { &[7, 3, 4, 0] };
            let p = packet(opts, false, len);
            let frags = fragment(&p, mtu).unwrap();
            prop_assert!(frags.iter().all(|f| f.len() <= mtu) || frags == vec![p.clone()]);
            if frags.len() > 1 {
                let (_, data) = reassemble(&frags);
                prop_assert_eq!(&data[..], &p[24..]);
            } else {
                prop_assert_eq!(&frags[0], &p);
            }
        }

        /// Never panics on any bytes.
        #[test]
        fn never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            mtu in 0usize..300,
        ) {
            let _ = fit(&bytes, mtu);
            let _ = fragment(&bytes, mtu);
            let _ = frag_needed(&bytes, mtu as u16, GW);
            let mut b = bytes.clone();
            if !b.is_empty() { b[0] = 0x45 + (b[0] % 11); }
            let _ = fragment(&b, mtu);
            let _ = frag_needed(&b, mtu as u16, GW);
        }
    }
}
