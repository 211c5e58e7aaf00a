//! The rewrites the core does on forwarded packets, on arbitrary bytes:
//! `wire::tcp_mss::clamp_mss` (RFC 9293 3.7.1, checksum by RFC 1624) and
//! `wire::ipv4_frag` (RFC 791 fragmentation, RFC 792/1191 fragmentation
//! needed). None may panic; a clamp changes at most four bytes (the MSS
//! value and the TCP checksum) and never raises the MSS; every fragment fits
//! the MTU; an ICMP error quotes the packet and fits 576 bytes.
#![no_main]

use ipiece::wire::ipv4_frag::{frag_needed, fragment, MIN_MTU};
use ipiece::wire::tcp_mss::{clamp_mss, Clamp};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

fuzz_target!(|input: (u16, u16, &[u8])| {
    let (max, mtu, data) = input;
    let mut p = data.to_vec();
    match clamp_mss(&mut p, max) {
        Clamp::Lowered { from, to } => {
            assert!(to < from && to == max, "raised or wrong MSS");
            let changed = p.iter().zip(data).filter(|(a, b)| a != b).count();
            assert!(changed <= 4, "{changed} bytes changed");
        }
        Clamp::Unchanged(mss) => {
            assert!(mss <= max);
            assert_eq!(p, data, "unchanged but modified");
        }
        Clamp::NotApplicable => assert_eq!(p, data, "not applicable but modified"),
    }
    let mtu = usize::from(mtu).max(MIN_MTU);
    if let Ok(frags) = fragment(data, mtu) {
        if frags.len() > 1 {
            assert!(
                frags.iter().all(|f| f.len() <= mtu),
                "a fragment above the MTU"
            );
        }
    }
    if let Some(icmp) = frag_needed(data, mtu as u16, Ipv4Addr::new(172, 16, 60, 1)) {
        assert!(icmp.len() <= 576 && icmp.len() >= 28 + 20);
        assert_eq!(&icmp[28..], &data[..icmp.len() - 28], "quote");
    }
});
