//! The kernel side: the TUN device carrying the gateway address, the routes
//! that send the served prefixes into it, and IP forwarding.
//!
//! Routes are installed with iproute2 (`ip route replace ... dev TUN proto
//! static`), which every appliance image carries; the TUN itself is created
//! by `tun-rs`. Everything is undone on exit: routes are deleted and the TUN
//! disappears when its file descriptor closes.

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::io;
use std::process::Command;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Packets the kernel may queue towards the daemon on the TUN.
pub const TUN_TX_QUEUE_LEN: u32 = 4096;

/// Creates the TUN `name` with `address` (the gateway address and the
/// WireGuard subnet's length, which also installs the connected route) and
/// `mtu`, and brings it up.
///
/// The TUN is opened with offload (`IFF_VNET_HDR`, TSO and, on Linux 6.2+,
/// USO): the kernel hands over TCP and UDP super-packets of up to 64 KiB
/// that the shell splits, and takes coalesced ones back, so one system call
/// carries dozens of packets. A kernel that refuses it gets a TUN without
/// offload, with one log line.
pub fn create_tun(name: &str, address: IpNet, mtu: u16) -> io::Result<AsyncDevice> {
    match build_tun(name, address, mtu, true) {
        Ok(dev) => {
            tracing::info!(tun = name, udp = dev.udp_gso(), "TUN offload on: TCP segmentation and receive coalescing (and UDP where the kernel has it)");
            Ok(dev)
        }
        Err(e) => {
            tracing::warn!(tun = name, error = %e, "TUN offload refused by the kernel: one system call per packet");
            build_tun(name, address, mtu, false)
        }
    }
}

fn build_tun(name: &str, address: IpNet, mtu: u16, offload: bool) -> io::Result<AsyncDevice> {
    // The kernel queues packets for the TUN until ipieced reads them; the
    // default 500 overflows under bursts from the LAN (measured by
    // scripts/bench.sh: TCP retransmits equal to the TUN's drops).
    let b = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(offload)
        .tx_queue_len(TUN_TX_QUEUE_LEN);
    let b = match address {
        IpNet::V4(a) => b.ipv4(a.addr(), a.prefix_len(), None),
        IpNet::V6(a) => b.ipv6(a.addr(), a.prefix_len()),
    };
    let dev = b.build_async()?;
    if address.addr().is_ipv4() {
        // An IPv4-only tunnel: no IPv6 link-local address, no router
        // solicitations for the peers to drop.
        let knob = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
        let _ = std::fs::write(knob, "1\n");
    }
    Ok(dev)
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The routes ipieced owns on its TUN.
#[derive(Debug)]
pub struct Routes {
    dev: String,
    installed: BTreeSet<IpNet>,
}

impl Routes {
    /// No routes yet on `dev`.
    pub fn new(dev: &str) -> Routes {
        Routes {
            dev: dev.to_string(),
            installed: BTreeSet::new(),
        }
    }

    /// Makes the installed set equal `wanted`: adds the missing, deletes
    /// those no longer wanted. Every failure is returned, none is fatal to
    /// the others.
    pub fn sync(&mut self, wanted: &[IpNet]) -> Vec<io::Error> {
        let wanted: BTreeSet<IpNet> = wanted.iter().map(|n| n.trunc()).collect();
        let mut errors = Vec::new();
        for gone in self
            .installed
            .difference(&wanted)
            .copied()
            .collect::<Vec<_>>()
        {
            match ip(&["route", "del", &gone.to_string(), "dev", &self.dev]) {
                Ok(()) => {
                    tracing::info!(prefix = %gone, dev = %self.dev, "route removed");
                }
                Err(e) => errors.push(e),
            }
            self.installed.remove(&gone);
        }
        for new in wanted
            .difference(&self.installed)
            .copied()
            .collect::<Vec<_>>()
        {
            let p = new.to_string();
            match ip(&["route", "replace", &p, "dev", &self.dev, "proto", "static"]) {
                Ok(()) => {
                    tracing::info!(prefix = %new, dev = %self.dev, "route installed");
                    self.installed.insert(new);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Deletes every route installed.
    pub fn clear(&mut self) -> Vec<io::Error> {
        self.sync(&[])
    }
}

impl Drop for Routes {
    fn drop(&mut self) {
        for e in self.clear() {
            tracing::warn!(error = %e, "route cleanup");
        }
    }
}

/// Turns on IPv4 forwarding in this network namespace (a gateway forwards
/// between the TUN and the LAN); says whether it was off.
pub fn enable_ipv4_forwarding() -> io::Result<bool> {
    const P: &str = "/proc/sys/net/ipv4/ip_forward";
    let was = std::fs::read_to_string(P)?;
    if was.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(P, "1\n")?;
    Ok(true)
}
