//! The inner packet of an opened ESP packet against the CHILD SA's traffic
//! selectors (RFC 4301 5.2, RFC 7296 2.9): `ipsec::Flow::of` reads the
//! addresses, the upper-layer protocol (after IPv6 extension headers) and
//! the ports or ICMP type/code of arbitrary bytes, and `flow_allowed`
//! matches them against arbitrary selectors. Neither may panic; a flow's
//! addresses are the header's, and a packet is allowed by the widest
//! selectors of its version and by nothing of the other version.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipiece::ipsec::{flow_allowed, Flow};
use ipiece::wire::TrafficSelector;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Ts {
    v6: bool,
    ip_protocol: u8,
    start_port: u16,
    end_port: u16,
    start: [u8; 16],
    end: [u8; 16],
}

impl Ts {
    fn selector(&self) -> TrafficSelector {
        if self.v6 {
            TrafficSelector::Ipv6 {
                ip_protocol: self.ip_protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start: Ipv6Addr::from(self.start),
                end: Ipv6Addr::from(self.end),
            }
        } else {
            let a = |b: &[u8; 16]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            TrafficSelector::Ipv4 {
                ip_protocol: self.ip_protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start: a(&self.start),
                end: a(&self.end),
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    src_ts: Vec<Ts>,
    dst_ts: Vec<Ts>,
    packet: Vec<u8>,
}

fn any(v6: bool) -> TrafficSelector {
    Ts {
        v6,
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: [0; 16],
        end: [0xff; 16],
    }
    .selector()
}

fuzz_target!(|input: Input| {
    let src_ts: Vec<TrafficSelector> = input.src_ts.iter().map(Ts::selector).collect();
    let dst_ts: Vec<TrafficSelector> = input.dst_ts.iter().map(Ts::selector).collect();
    let p = &input.packet;
    let Some(flow) = Flow::of(p) else {
        return;
    };
    let _ = flow_allowed(&flow, &src_ts, &dst_ts);
    let v6 = match (flow.src, flow.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            assert_eq!(p[0] >> 4, 4);
            assert_eq!(s.octets(), p[12..16]);
            assert_eq!(d.octets(), p[16..20]);
            false
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            assert_eq!(p[0] >> 4, 6);
            assert_eq!(s.octets(), p[8..24]);
            assert_eq!(d.octets(), p[24..40]);
            true
        }
        _ => panic!("addresses of two versions"),
    };
    assert!(flow_allowed(&flow, &[any(v6)], &[any(v6)]));
    assert!(!flow_allowed(&flow, &[any(!v6)], &[any(!v6)]));
    assert!(!flow_allowed(&flow, &[], &[any(v6)]));
});
