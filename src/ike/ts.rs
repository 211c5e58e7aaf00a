//! Traffic selector narrowing (RFC 7296 section 2.9).
//!
//! "To enable the responder to choose the appropriate range in this case,
//! if the initiator has requested the SA due to a data packet, the
//! initiator SHOULD include as the first Traffic Selector in each of TSi
//! and TSr a very specific Traffic Selector including the addresses in the
//! packet triggering the request." and "the responder is allowed to narrow
//! the choices by selecting a subset of the traffic". The responder here
//! answers with the intersection of what was offered and its own policy;
//! an empty intersection is TS_UNACCEPTABLE.

use ipnet::IpNet;

use crate::wire::TrafficSelector;

/// The selectors for a list of prefixes (any protocol, any port).
pub fn from_nets(nets: &[IpNet]) -> Vec<TrafficSelector> {
    nets.iter()
        .map(|n| match n {
            IpNet::V4(n) => TrafficSelector::from_ipv4_net(*n),
            IpNet::V6(n) => TrafficSelector::from_ipv6_net(*n),
        })
        .collect()
}

/// The intersection of two selectors, if not empty.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    fn proto(x: u8, y: u8) -> Option<u8> {
        match (x, y) {
            (0, y) => Some(y),
            (x, 0) => Some(x),
            (x, y) if x == y => Some(x),
            _ => None,
        }
    }
    match (a, b) {
        (
            TrafficSelector::Ipv4 {
                ip_protocol: p1,
                start_port: sp1,
                end_port: ep1,
                start: s1,
                end: e1,
            },
            TrafficSelector::Ipv4 {
                ip_protocol: p2,
                start_port: sp2,
                end_port: ep2,
                start: s2,
                end: e2,
            },
        ) => {
            let (start, end) = ((*s1).max(*s2), (*e1).min(*e2));
            let (sp, ep) = ((*sp1).max(*sp2), (*ep1).min(*ep2));
            (start <= end && sp <= ep).then_some(())?;
            Some(TrafficSelector::Ipv4 {
                ip_protocol: proto(*p1, *p2)?,
                start_port: sp,
                end_port: ep,
                start,
                end,
            })
        }
        (
            TrafficSelector::Ipv6 {
                ip_protocol: p1,
                start_port: sp1,
                end_port: ep1,
                start: s1,
                end: e1,
            },
            TrafficSelector::Ipv6 {
                ip_protocol: p2,
                start_port: sp2,
                end_port: ep2,
                start: s2,
                end: e2,
            },
        ) => {
            let (start, end) = ((*s1).max(*s2), (*e1).min(*e2));
            let (sp, ep) = ((*sp1).max(*sp2), (*ep1).min(*ep2));
            (start <= end && sp <= ep).then_some(())?;
            Some(TrafficSelector::Ipv6 {
                ip_protocol: proto(*p1, *p2)?,
                start_port: sp,
                end_port: ep,
                start,
                end,
            })
        }
        _ => None,
    }
}

/// Every non-empty intersection of an offered list with a configured one,
/// without duplicates.
pub fn narrow(offered: &[TrafficSelector], configured: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for o in offered {
        for c in configured {
            if let Some(x) = intersect(o, c) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// True when `inner` lies inside `outer`.
pub fn contains(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// True when every selector of `narrowed` lies inside one of `offered`: what
/// the initiator checks of the responder's answer.
pub fn is_subset(narrowed: &[TrafficSelector], offered: &[TrafficSelector]) -> bool {
    narrowed
        .iter()
        .all(|n| offered.iter().any(|o| contains(o, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<TrafficSelector> {
        from_nets(&s.iter().map(|x| x.parse().unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn narrowing() {
        let any = nets(&["0.0.0.0/0"]);
        let vpc = nets(&["10.0.0.0/16"]);
        assert_eq!(narrow(&any, &vpc), vpc);
        assert_eq!(narrow(&vpc, &any), vpc);
        assert_eq!(narrow(&any, &any), any);
        assert!(narrow(&vpc, &nets(&["172.16.0.0/12"])).is_empty());
        assert!(narrow(&nets(&["::/0"]), &any).is_empty());
        assert!(is_subset(&vpc, &any));
        assert!(!is_subset(&any, &vpc));
        let tcp = TrafficSelector::Ipv4 {
            ip_protocol: 6,
            start_port: 80,
            end_port: 80,
            start: "10.0.0.1".parse().unwrap(),
            end: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(intersect(&any[0], &tcp), Some(tcp.clone()));
        let udp = TrafficSelector::Ipv4 {
            ip_protocol: 17,
            start_port: 0,
            end_port: 65535,
            start: "0.0.0.0".parse().unwrap(),
            end: "255.255.255.255".parse().unwrap(),
        };
        assert_eq!(intersect(&udp, &tcp), None);
    }
}
