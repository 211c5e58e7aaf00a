//! NAT detection (RFC 7296 section 2.23).
//!
//! "The data associated with these Notify types is the SHA-1 digest of the
//! SPIs (in the order they appear in the header), IP address, and port from
//! which this packet was sent." The NAT_DETECTION_SOURCE_IP hash covers the
//! sender's address and port as the sender sees them, the
//! NAT_DETECTION_DESTINATION_IP hash the receiver's. A receiver that cannot
//! reproduce the source hash from the packet's outer source knows the sender
//! is behind a NAT; one that cannot reproduce the destination hash from its
//! own address knows it is.

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

/// `SHA-1(SPIi | SPIr | IP | port)` (RFC 7296 section 2.23).
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}

/// What NAT detection found, from our side's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatState {
    /// The peer's NAT_DETECTION_DESTINATION_IP did not match our address: a
    /// NAT rewrites our packets, so we send the keepalives (RFC 3948 2.3).
    pub local_behind_nat: bool,
    /// The peer's NAT_DETECTION_SOURCE_IP did not match where its packet came
    /// from: the peer is behind a NAT (or forces encapsulation).
    pub remote_behind_nat: bool,
    /// ESP travels in UDP on port 4500 (a NAT either side, or forced).
    pub encap: bool,
}

/// Compares the peer's hashes with the addresses seen on the packet:
/// returns `(local_behind_nat, remote_behind_nat)`, or `None` when the peer
/// sent no NAT detection notifies (it does not support NAT-T).
pub fn detect(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    source_hashes: &[&[u8]],
    destination_hashes: &[&[u8]],
) -> Option<(bool, bool)> {
    if source_hashes.is_empty() && destination_hashes.is_empty() {
        return None;
    }
    let src = nat_hash(spi_i, spi_r, remote);
    let dst = nat_hash(spi_i, spi_r, local);
    let remote_nat = !source_hashes.contains(&src.as_slice());
    let local_nat = !destination_hashes.contains(&dst.as_slice());
    Some((local_nat, remote_nat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_input() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        let h = nat_hash(1, 2, a);
        assert_ne!(h, nat_hash(1, 2, b));
        assert_ne!(h, nat_hash(1, 3, a));
        assert_ne!(h, nat_hash(2, 2, a));
        let l: SocketAddr = "10.0.0.1:500".parse().unwrap();
        let r: SocketAddr = "203.0.113.1:500".parse().unwrap();
        let s = nat_hash(1, 0, r);
        let d = nat_hash(1, 0, l);
        assert_eq!(detect(1, 0, l, r, &[&s], &[&d]), Some((false, false)));
        assert_eq!(detect(1, 0, l, r, &[&d], &[&d]), Some((false, true)));
        assert_eq!(detect(1, 0, l, r, &[&s], &[&s]), Some((true, false)));
        assert_eq!(detect(1, 0, l, r, &[], &[]), None);
    }
}
