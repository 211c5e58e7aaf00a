//! The TUN with offload (`IFF_VNET_HDR`), as wireguard-go does it, on
//! tun-rs: a read may return a TCP or UDP super-packet of up to 64 KiB
//! that tun-rs splits into the packets the core handles one by one
//! ([`TunIn`]); the packets the core writes during one wake-up are queued
//! and written together, TCP and UDP segments of one flow coalesced back
//! into super-packets by tun-rs's GRO table ([`TunOut`]). Without offload
//! (the kernel refused it) both fall back to one packet per system call.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Largest packet or super-packet on the TUN.
const MAX_PACKET: usize = 65535;
/// Headroom before each queued packet for the virtio header tun-rs writes.
const HEADROOM: usize = VIRTIO_NET_HDR_LEN + 6;

/// Buffers for reading the TUN: the raw read (virtio header and
/// super-packet) and the packets it is split into.
pub struct TunIn {
    raw: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    n: usize,
}

impl TunIn {
    /// Buffers for a TUN of `mtu`.
    pub fn new(mtu: u16) -> TunIn {
        // Segments of a super-packet fit the MTU; a packet read without
        // offload lands in the first buffer and may be as large as any.
        let seg = usize::from(mtu).max(1280) + 256;
        let mut bufs = vec![vec![0u8; seg]; IDEAL_BATCH_SIZE];
        bufs[0] = vec![0u8; MAX_PACKET + 1];
        TunIn {
            raw: vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET + 1],
            bufs,
            sizes: vec![0; IDEAL_BATCH_SIZE],
            n: 0,
        }
    }

    /// Waits for the next read: the number of packets it gave.
    pub async fn recv(&mut self, tun: &AsyncDevice) -> io::Result<usize> {
        self.n = 0;
        let n = tun
            .recv_multiple(&mut self.raw, &mut self.bufs, &mut self.sizes, 0)
            .await?;
        self.n = n;
        Ok(n)
    }

    /// The next read if one is ready (`WouldBlock` if not).
    pub fn try_recv(&mut self, tun: &AsyncDevice) -> io::Result<usize> {
        self.n = 0;
        let n = tun.try_recv_multiple(&mut self.raw, &mut self.bufs, &mut self.sizes, 0)?;
        self.n = n;
        Ok(n)
    }

    /// Packet `i` of the last read.
    pub fn packet(&mut self, i: usize) -> &mut [u8] {
        let len = self.sizes[i];
        &mut self.bufs[i][..len]
    }
}

/// Packets for the TUN, queued during one wake-up.
pub struct TunOut {
    bufs: Vec<Vec<u8>>,
    used: usize,
    gro: GROTable,
}

impl Default for TunOut {
    fn default() -> TunOut {
        TunOut {
            bufs: Vec::new(),
            used: 0,
            gro: GROTable::new(),
        }
    }
}

impl TunOut {
    /// Queues a packet (copied after the headroom).
    pub fn push(&mut self, packet: &[u8]) {
        if self.used == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(HEADROOM + 2048));
        }
        let b = &mut self.bufs[self.used];
        b.clear();
        b.resize(HEADROOM, 0);
        b.extend_from_slice(packet);
        self.used += 1;
    }

    /// Packets queued.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Writes the queued packets without waiting: coalesced with offload,
    /// one by one without. What the TUN cannot take now is dropped and
    /// counted in `drops`, as a router does.
    pub fn flush(&mut self, tun: &AsyncDevice, drops: &mut u64) {
        if self.used == 0 {
            return;
        }
        let used = std::mem::take(&mut self.used);
        if !tun.tcp_gso() {
            for b in &self.bufs[..used] {
                if tun.try_send(&b[HEADROOM..]).is_err() {
                    *drops += 1;
                }
            }
            return;
        }
        // tun-rs offers the coalescing write as a future only: poll it once;
        // a TUN that is not writable at once drops the rest, as try_send.
        // Outside tokio's cooperative budget: once the loop's task has used
        // it up, every I/O future answers Pending until the task yields, and
        // this one would drop a whole batch that the TUN could take.
        let fut = tokio::task::unconstrained(tun.send_multiple(
            &mut self.gro,
            &mut self.bufs[..used],
            HEADROOM,
        ));
        let mut fut = pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "TUN write");
                *drops += 1;
            }
            Poll::Pending => *drops += used as u64,
        }
    }
}
