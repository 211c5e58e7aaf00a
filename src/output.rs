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
