//! The sans-IO cores' output port: where the gateway core
//! ([`crate::gateway`]), the WireGuard peers ([`crate::wg`]) and the IPsec
//! tunnels ([`crate::ipsec`]) put what they send. It sits below all three so
//! that none of them imports another only for its output type; the shell
//! (`dataplane/run.rs`) implements [`Io`] on the sockets and the TUN.

use std::net::SocketAddr;

/// The largest ESP-in-UDP datagram (outer IP header included) the tunnels
/// send: the internet's usual MTU, which AWS's tunnel MTU table assumes.
pub const OUTER_MTU: usize = 1500;

/// The gateway's UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPort {
    /// WireGuard (`wireguard.listen_port`, 51821 by default).
    WireGuard,
    /// IKE (500).
    Ike,
    /// NAT-T: IKE behind the non-ESP marker, and ESP in UDP (4500).
    NatT,
}

/// Where the cores' output goes. Implementations must not block: a router
/// drops what it cannot send.
pub trait Io {
    /// Sends a UDP datagram from one of the gateway's ports.
    fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, datagram: &[u8]);
    /// Writes an IP packet to the TUN (towards the kernel and the LAN).
    fn write_tun(&mut self, packet: &[u8]);
}

/// The most datagrams one UDP GSO send carries (the kernel's
/// `UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// The most payload bytes one UDP send carries (65535 less the IPv4 and UDP
/// headers).
pub const GSO_MAX_BYTES: usize = 65_507;

/// One datagram in a [`SendQueue`].
#[derive(Debug, Clone, Copy)]
struct Queued {
    port: UdpPort,
    dst: SocketAddr,
    len: usize,
}

/// Datagrams the cores sent during one wake-up of the event loop, kept in
/// order in one buffer so that the shell can hand runs of them to the
/// kernel in one system call each (UDP generic segmentation offload,
/// `UDP_SEGMENT`: datagrams from one port to one destination, all of one
/// size but the last, which may be shorter).
#[derive(Debug, Default)]
pub struct SendQueue {
    data: Vec<u8>,
    items: Vec<Queued>,
}

/// Consecutive queued datagrams that can leave in one send: `count`
/// datagrams of `segment` bytes (the last one may be shorter) from `port` to
/// `dst`, back to back in `bytes`.
#[derive(Debug, PartialEq, Eq)]
pub struct Run<'a> {
    /// The port they leave from.
    pub port: UdpPort,
    /// Their destination.
    pub dst: SocketAddr,
    /// The size of each datagram but the last.
    pub segment: usize,
    /// How many datagrams.
    pub count: usize,
    /// The datagrams, back to back.
    pub bytes: &'a [u8],
}

impl SendQueue {
    /// Queues a datagram (its bytes are copied).
    pub fn push(&mut self, port: UdpPort, dst: SocketAddr, datagram: &[u8]) {
        self.data.extend_from_slice(datagram);
        self.items.push(Queued {
            port,
            dst,
            len: datagram.len(),
        });
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Empties the queue, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// The queue in order, cut into runs of at most `max_segments`
    /// datagrams (1: every datagram on its own, when GSO is off).
    pub fn runs(&self, max_segments: usize) -> Runs<'_> {
        Runs {
            q: self,
            next: 0,
            offset: 0,
            max: max_segments.clamp(1, GSO_MAX_SEGMENTS),
        }
    }
}

/// The iterator of [`SendQueue::runs`].
#[derive(Debug)]
pub struct Runs<'a> {
    q: &'a SendQueue,
    next: usize,
    offset: usize,
    max: usize,
}

impl<'a> Iterator for Runs<'a> {
    type Item = Run<'a>;

    fn next(&mut self) -> Option<Run<'a>> {
        let first = *self.q.items.get(self.next)?;
        let segment = first.len;
        let mut count = 1;
        let mut total = first.len;
        // Same port, same destination, not longer than the first, not
        // after a shorter one, within the kernel's limits.
        while count < self.max && segment > 0 {
            let Some(it) = self.q.items.get(self.next + count) else {
                break;
            };
            let prev = self.q.items[self.next + count - 1];
            if it.port != first.port
                || it.dst != first.dst
                || it.len > segment
                || it.len == 0
                || prev.len < segment
                || total + it.len > GSO_MAX_BYTES
            {
                break;
            }
            total += it.len;
            count += 1;
        }
        let bytes = &self.q.data[self.offset..self.offset + total];
        self.next += count;
        self.offset += total;
        Some(Run {
            port: first.port,
            dst: first.dst,
            segment,
            count,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// (port, dst, segment, count, total bytes) of each run.
    fn shape(q: &SendQueue, max: usize) -> Vec<(UdpPort, SocketAddr, usize, usize, usize)> {
        q.runs(max)
            .map(|r| (r.port, r.dst, r.segment, r.count, r.bytes.len()))
            .collect()
    }

    #[test]
    fn equal_datagrams_to_one_destination_make_one_run_and_a_short_one_ends_it() {
        let a = addr("198.51.100.10:40000");
        let mut q = SendQueue::default();
        for _ in 0..5 {
            q.push(UdpPort::WireGuard, a, &[7; 1400]);
        }
        q.push(UdpPort::WireGuard, a, &[8; 300]);
        q.push(UdpPort::WireGuard, a, &[9; 1400]);
        assert_eq!(
            shape(&q, 64),
            vec![
                (UdpPort::WireGuard, a, 1400, 6, 5 * 1400 + 300),
                (UdpPort::WireGuard, a, 1400, 1, 1400),
            ]
        );
        // the bytes are the datagrams back to back, in order
        let runs: Vec<Run> = q.runs(64).collect();
        assert_eq!(&runs[0].bytes[7000..], &[8; 300][..]);
        assert_eq!(runs[1].bytes, &[9; 1400][..]);
    }

    #[test]
    fn another_port_destination_or_a_longer_datagram_starts_a_new_run() {
        let a = addr("198.51.100.10:40000");
        let b = addr("198.51.100.11:40000");
        let mut q = SendQueue::default();
        q.push(UdpPort::WireGuard, a, &[1; 100]);
        q.push(UdpPort::WireGuard, b, &[2; 100]);
        q.push(UdpPort::NatT, b, &[3; 100]);
        q.push(UdpPort::NatT, b, &[4; 200]);
        q.push(UdpPort::NatT, b, &[5; 200]);
        assert_eq!(
            shape(&q, 64),
            vec![
                (UdpPort::WireGuard, a, 100, 1, 100),
                (UdpPort::WireGuard, b, 100, 1, 100),
                (UdpPort::NatT, b, 100, 1, 100),
                (UdpPort::NatT, b, 200, 2, 400),
            ]
        );
    }

    #[test]
    fn runs_respect_the_segment_and_byte_limits_and_gso_off_sends_one_by_one() {
        let a = addr("[2001:db8::1]:4500");
        let mut q = SendQueue::default();
        for _ in 0..100 {
            q.push(UdpPort::NatT, a, &[0; 1000]);
        }
        assert_eq!(
            shape(&q, 64),
            vec![
                (UdpPort::NatT, a, 1000, 64, 64_000),
                (UdpPort::NatT, a, 1000, 36, 36_000)
            ]
        );
        assert_eq!(q.runs(1).count(), 100);
        assert!(q.runs(1).all(|r| r.count == 1 && r.bytes.len() == 1000));
        let mut q = SendQueue::default();
        for _ in 0..50 {
            q.push(UdpPort::NatT, a, &[0; 1500]);
        }
        // 43 * 1500 = 64,500 fits in 65,507; 44 does not
        assert_eq!(
            shape(&q, 64),
            vec![
                (UdpPort::NatT, a, 1500, 43, 64_500),
                (UdpPort::NatT, a, 1500, 7, 10_500)
            ]
        );
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.runs(64).count(), 0);
    }
}
