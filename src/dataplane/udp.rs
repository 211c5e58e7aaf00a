//! Sending runs of datagrams in one system call: UDP generic segmentation
//! offload (`UDP_SEGMENT`, Linux 4.18), as wireguard-go and quinn do. The
//! runs come from [`crate::output::SendQueue`] (pure); this is the thin part
//! that talks to the kernel. A kernel or device that refuses segmentation
//! (EIO) turns it off for the rest of the run with one log line; a run the
//! kernel refuses for another reason (a segment above the device's MTU:
//! EINVAL) goes out datagram by datagram, so that nothing is dropped for
//! want of offload.

use crate::output::Run;
use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags, SockaddrStorage};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Whether the kernel offers UDP segmentation offload on `sock` (it knows
/// the option); logged once.
pub fn gso_supported(sock: &UdpSocket) -> bool {
    match getsockopt(sock, sockopt::UdpGsoSegment) {
        Ok(_) => {
            tracing::info!(
                "UDP segmentation offload (GSO) on: runs of datagrams leave in one send"
            );
            true
        }
        Err(e) => {
            tracing::info!(error = %e, "UDP segmentation offload (GSO) unavailable: one send per datagram");
            false
        }
    }
}

/// Sends `run`: in one `sendmsg` with `UDP_SEGMENT` when it holds more
/// than one datagram and `gso_segments` allows it, else one by one. Full
/// buffers drop (and count) what does not fit, as for any router. Returns
/// the system calls made.
pub fn send_run(
    sock: &UdpSocket,
    run: &Run<'_>,
    gso_segments: &mut usize,
    drops: &mut u64,
) -> usize {
    let mut calls = 0;
    if run.count > 1 && *gso_segments > 1 {
        calls += 1;
        match send_segmented(sock, run) {
            Ok(()) => return calls,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *drops += run.count as u64;
                return calls;
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                tracing::warn!(error = %e, "UDP segmentation offload refused by the kernel or the device: turned off, one send per datagram from now on");
                *gso_segments = 1;
            }
            Err(e) => {
                tracing::debug!(error = %e, segment = run.segment, count = run.count, "UDP GSO send refused: sending this run datagram by datagram");
            }
        }
    }
    for d in run.bytes.chunks(run.segment.max(1)) {
        calls += 1;
        if sock.try_send_to(d, run.dst).is_err() {
            *drops += 1;
        }
    }
    calls
}

fn send_segmented(sock: &UdpSocket, run: &Run<'_>) -> io::Result<()> {
    let segment =
        u16::try_from(run.segment).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dst = SockaddrStorage::from(run.dst);
    let iov = [IoSlice::new(run.bytes)];
    let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
    sock.try_io(Interest::WRITABLE, || {
        sendmsg(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&dst))
            .map_err(io::Error::from)
    })?;
    Ok(())
}
