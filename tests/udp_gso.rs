//! UDP segmentation offload in the shell (`dataplane::udp::send_run`) with
//! the kernel of a namespace of its own: a run of equal datagrams (the last
//! shorter) leaves in one system call and arrives as the same datagrams, in
//! order; a run the kernel refuses to segment (a segment above the
//! device's MTU) goes out datagram by datagram, and nothing is lost.

mod common;

use common::Netns;
use ipiece::dataplane::udp::send_run;
use ipiece::output::{SendQueue, UdpPort, GSO_MAX_SEGMENTS};
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::Duration;

/// Sends `datagrams` from `tx` to `dst` as queued runs; returns the
/// system calls, the drops and the GSO segment limit afterwards.
fn send_all(tx: StdUdp, dst: SocketAddr, datagrams: &[Vec<u8>]) -> (usize, u64, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        tx.set_nonblocking(true).unwrap();
        let tx = tokio::net::UdpSocket::from_std(tx).unwrap();
        tx.writable().await.unwrap();
        let mut q = SendQueue::default();
        for d in datagrams {
            q.push(UdpPort::NatT, dst, d);
        }
        let (mut calls, mut drops, mut gso) = (0, 0, GSO_MAX_SEGMENTS);
        for run in q.runs(GSO_MAX_SEGMENTS) {
            calls += send_run(&tx, &run, &mut gso, &mut drops);
        }
        (calls, drops, gso)
    })
}

/// Reads `n` datagrams (bounded by a timeout each).
fn receive(rx: &StdUdp, n: usize) -> Vec<Vec<u8>> {
    rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 65536];
    (0..n)
        .map_while(|_| {
            rx.recv_from(&mut buf)
                .ok()
                .map(|(len, _)| buf[..len].to_vec())
        })
        .collect()
}

fn datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (i * 7 + j) as u8).collect())
        .collect()
}

#[test]
fn a_run_leaves_in_one_send_and_arrives_as_the_same_datagrams_in_order() {
    let ns = Netns::new("gso");
    ns.ip("link set lo up");
    let rx = ns.udp_socket("127.0.0.1:0");
    let tx = ns.udp_socket("127.0.0.1:0");
    let dst = rx.local_addr().unwrap();
    let mut sizes = vec![1400; 20];
    sizes.push(300);
    let sent = datagrams(&sizes);
    let (calls, drops, gso) = send_all(tx, dst, &sent);
    assert_eq!(
        (calls, drops, gso),
        (1, 0, GSO_MAX_SEGMENTS),
        "21 datagrams in one send"
    );
    assert_eq!(receive(&rx, sent.len()), sent);
}

#[test]
fn a_run_the_kernel_refuses_to_segment_goes_out_one_by_one() {
    let ns = Netns::new("gsoref");
    ns.ip("link set lo mtu 1500");
    ns.ip("link set lo up");
    let rx = ns.udp_socket("127.0.0.1:0");
    let tx = ns.udp_socket("127.0.0.1:0");
    let dst = rx.local_addr().unwrap();
    // Segments above the MTU: the kernel refuses GSO (EINVAL) but sends
    // each one alone, fragmented.
    let sent = datagrams(&[2000, 2000, 2000, 1000]);
    let (calls, drops, gso) = send_all(tx, dst, &sent);
    assert_eq!(
        (calls, drops, gso),
        (1 + 4, 0, GSO_MAX_SEGMENTS),
        "refused once, then one send per datagram; GSO stays on for other runs"
    );
    assert_eq!(receive(&rx, sent.len()), sent);
}
