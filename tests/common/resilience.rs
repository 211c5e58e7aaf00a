//! Helpers of tests/ipsec_resilience.rs (included there with `#[path]`, so
//! tests/common/mod.rs needs no change): `[[ipsec.tunnels]]` tables for the
//! gateway config, tunnel status, ipieced's and charon's log lines with their
//! times, a ping with a time stamp per reply, crashing a charon, and a second
//! "AWS VGW" next to the first.
#![allow(dead_code)]

use crate::common::strongswan::Charon;
use crate::common::*;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The second VGW's outside address ([`add_second_vgw`]): on its own link
/// of the internet router, like a second AWS tunnel endpoint.
pub const VGW2_WAN: &str = "192.0.2.130";
/// The first VGW's address on the VPC side ([`Topology::add_vgw`]).
pub const VGW1_VPC: &str = "10.0.0.1";
/// The second VGW's address on the VPC side.
pub const VGW2_VPC: &str = "10.0.0.2";

// ------------------------------------------------------------ gateway config --

/// One `[[ipsec.tunnels]]` table. Durations in seconds; `None` keeps
/// ipieced's default.
#[derive(Debug, Clone)]
pub struct TunnelConf {
    /// `name`.
    pub name: String,
    /// `remote_address`.
    pub remote: String,
    /// The PSK (written to `<config dir>/ipsec/<name>.psk`, mode 0600).
    pub psk: String,
    /// `ike_proposals`.
    pub ike_proposals: Option<String>,
    /// `esp_proposals`.
    pub esp_proposals: Option<String>,
    /// `ike_lifetime`.
    pub ike_lifetime: Option<u64>,
    /// `child_lifetime`.
    pub child_lifetime: Option<u64>,
    /// `rekey_margin`.
    pub rekey_margin: Option<u64>,
    /// `rekey_fuzz` (percent).
    pub rekey_fuzz: Option<u64>,
    /// `dpd_interval`.
    pub dpd_interval: Option<u64>,
    /// `dpd_timeout`.
    pub dpd_timeout: Option<u64>,
    /// `priority`.
    pub priority: Option<u32>,
    /// `start_action` (`initiate` or `wait`).
    pub start_action: Option<String>,
}

impl TunnelConf {
    /// A tunnel to `remote` with ipieced's defaults.
    pub fn new(name: &str, remote: &str, psk: &str) -> TunnelConf {
        TunnelConf {
            name: name.into(),
            remote: remote.into(),
            psk: psk.into(),
            ike_proposals: None,
            esp_proposals: None,
            ike_lifetime: None,
            child_lifetime: None,
            rekey_margin: None,
            rekey_fuzz: None,
            dpd_interval: None,
            dpd_timeout: None,
            priority: None,
            start_action: None,
        }
    }

    fn render(&self, psk_file: &Path) -> String {
        let mut s = format!(
            "\n[[ipsec.tunnels]]\nname = \"{}\"\nremote_address = \"{}\"\npsk_file = \"{}\"\n",
            self.name,
            self.remote,
            psk_file.display()
        );
        let mut str_key = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("{k} = \"{v}\"\n"));
            }
        };
        str_key("ike_proposals", &self.ike_proposals);
        str_key("esp_proposals", &self.esp_proposals);
        str_key("start_action", &self.start_action);
        for (k, v) in [
            ("ike_lifetime", self.ike_lifetime),
            ("child_lifetime", self.child_lifetime),
            ("rekey_margin", self.rekey_margin),
            ("rekey_fuzz", self.rekey_fuzz),
            ("dpd_interval", self.dpd_interval),
            ("dpd_timeout", self.dpd_timeout),
            ("priority", self.priority.map(u64::from)),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    }
}

/// Appends the tunnels to the gateway config (PSK files 0600 beside it) and
/// checks the result with `wgctl check`.
pub fn add_tunnels(cfg: &GwConfig, tunnels: &[TunnelConf]) {
    let dir = cfg.dir.join("ipsec");
    fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for t in tunnels {
        let psk_file = dir.join(format!("{}.psk", t.name));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&psk_file)
            .unwrap();
        writeln!(f, "{}", t.psk).unwrap();
        text.push_str(&t.render(&psk_file));
    }
    let mut f = fs::OpenOptions::new().append(true).open(&cfg.path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let out = wgctl_at(&cfg.path, &["check"]);
    assert!(out.ok(), "wgctl check of the tunnels:\n{text}\n{out}");
}

// ------------------------------------------------------------------- status --

/// `.tunnels[]` entry named `name` of `wgctl status --json`.
pub fn tunnel_status(cfg: &GwConfig, ns: &Netns, name: &str) -> serde_json::Value {
    let st = cfg.status_json(ns);
    st["tunnels"]
        .as_array()
        .unwrap_or_else(|| panic!("wgctl status --json has no tunnels array: {st}"))
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .cloned()
        .unwrap_or_else(|| panic!("no tunnel {name:?} in status: {st}"))
}

/// The state string of a tunnel status entry ("up", "down", ...).
pub fn state(t: &serde_json::Value) -> &str {
    t["state"].as_str().unwrap_or("?")
}

/// A counter of the tunnel's `totals` (e.g. "packets_out"): its CHILD SAs,
/// current and removed, added up.
pub fn total(t: &serde_json::Value, key: &str) -> u64 {
    t["totals"][key].as_u64().unwrap_or(0)
}

/// Waits (bounded) until tunnel `name` is up with a CHILD SA; returns its
/// status. Panics with the last status and the daemon's log otherwise.
pub fn wait_tunnel_up(
    cfg: &GwConfig,
    ns: &Netns,
    daemon: &Daemon,
    name: &str,
    timeout: Duration,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let up = wait_until(timeout, Duration::from_millis(100), || {
        last = tunnel_status(cfg, ns, name);
        state(&last) == "up" && !last["children"].as_array().is_none_or(|c| c.is_empty())
    });
    assert!(
        up,
        "tunnel {name} not up within {timeout:?}; last status:\n{last:#}\n--- ipieced log ---\n{}",
        tail(&daemon.log, 60)
    );
    last
}

// --------------------------------------------------------------------- time --

/// Seconds since the Unix epoch, with microseconds.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The time of an ipieced log line (`2026-11-22T06:07:05.177906Z  INFO ...`,
/// tracing-subscriber's UTC RFC 3339 stamp) in seconds since the epoch.
pub fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    Some((days_from_civil(y, mo, da) * 86400 + h * 3600 + mi * 60) as f64 + s)
}

/// The lines of `text` that contain every one of `needles`, with their
/// times (lines without a time stamp are skipped).
pub fn log_lines(text: &str, needles: &[&str]) -> Vec<(f64, String)> {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| Some((log_time(l)?, l.to_string())))
        .collect()
}

// --------------------------------------------------------------------- ping --

/// One echo reply of `ping -D`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    /// icmp_seq.
    pub seq: u32,
    /// Arrival time, seconds since the epoch.
    pub at: f64,
}

/// Starts `ping -D -n -i <interval> -c <count> -w <deadline> <dst>` in `ns`
/// in the background (output to `log`); returns its PID. `-D` stamps every
/// reply with its arrival time, so gaps can be placed in time.
pub fn start_ping(
    ns: &Netns,
    dst: &str,
    interval: f64,
    count: u32,
    deadline_s: u32,
    log: &Path,
) -> u32 {
    let interval = format!("{interval}");
    let count = count.to_string();
    let deadline = deadline_s.to_string();
    ns.spawn(
        &format!("ping {dst}"),
        "ping",
        &[
            "-D", "-n", "-i", &interval, "-c", &count, "-w", &deadline, dst,
        ],
        &[],
        log,
    )
}

/// The replies in `ping -D` output:
/// `[1700000000.123456] 64 bytes from 10.0.1.10: icmp_seq=7 ttl=62 time=0.9 ms`.
pub fn parse_replies(text: &str) -> Vec<Reply> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let at = l
                .strip_prefix('[')?
                .split(']')
                .next()?
                .parse::<f64>()
                .ok()?;
            let seq = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))?
                .parse()
                .ok()?;
            Some(Reply { seq, at })
        })
        .collect()
}

/// The echo requests that got no reply: runs of missing sequence numbers
/// `(first, last, last reply before, first reply after)`, between the first
/// and the last reply.
pub fn gaps(replies: &[Reply]) -> Vec<(u32, u32, f64, f64)> {
    let mut v: Vec<Reply> = replies.to_vec();
    v.sort_by_key(|r| r.seq);
    v.dedup_by_key(|r| r.seq);
    v.windows(2)
        .filter(|w| w[1].seq > w[0].seq + 1)
        .map(|w| (w[0].seq + 1, w[1].seq - 1, w[0].at, w[1].at))
        .collect()
}

// ------------------------------------------------------------------- charon --

/// Crashes charon: SIGKILL by the PID the harness started it with (so it
/// cannot send a Delete, as a VGW that loses power or its link), then
/// [`Charon::stop`] for the VICI socket. charon on SIGTERM deletes its IKE
/// SAs first (the peer then knows at once), which is not what a dead peer
/// does.
pub fn crash(c: &mut Charon) {
    let cmd = fs::read(format!("/proc/{}/cmdline", c.pid))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // The harness's Netns still holds the child (not reaped), so the PID
    // cannot have been reused: it is our charon, or our sh that execs it.
    assert!(
        cmd.contains("charon"),
        "pid {} is not charon any more ({cmd:?})",
        c.pid
    );
    signal(c.pid, libc::SIGKILL);
    c.stop();
}

// ---------------------------------------------------------- the second VGW --

/// Adds a second "AWS VGW" namespace to a topology built with
/// [`Topology::with_vgw`], and makes the VPC side shared by both:
///
/// ```text
///   inet --i-vgw-- vgw  (wan 203.0.113.130/25, vpc0 10.0.0.1/16) --+
///   inet --i-vgw2- vgw2 (wan 192.0.2.130/24,   vpc0 10.0.0.2/16) --+-- br0 in vpc: 10.0.1.10/16
/// ```
///
/// The VPC host's return path: at AWS both tunnels end on one VGW, which
/// sends the replies back through a tunnel that is up. Two charons are two
/// routers, so here each VGW masquerades what it forwards into the VPC
/// (source 10.0.0.1 or 10.0.0.2) and the VPC host has no route to the LAN
/// at all: a reply can only go back to the VGW the request came through, by
/// conntrack. The return path therefore follows ipieced's choice of tunnel
/// by itself, at the moment ipieced switches, and nothing in the test moves
/// a route: a failover measured here is ipieced's alone.
///
/// Returns the second VGW's namespace.
pub fn add_second_vgw(t: &Topology) -> Netns {
    let vpc = t.vpc();
    let vgw1 = t.vgw();
    // The VPC host's address moves onto a bridge that both VGWs plug into.
    vpc.ip("link add br0 type bridge");
    vpc.ip("link set br0 up");
    vpc.ip(&format!("addr del {VPC_HOST}/16 dev eth0"));
    vpc.ip("link set eth0 master br0");
    vpc.ip(&format!("addr add {VPC_HOST}/16 dev br0"));
    // (deleting the address removed the default route: none is needed)

    let vgw2 = Netns::new("vgw2");
    vgw2.sysctl("net.ipv4.ip_forward", "1");
    vgw2.veth("wan", &t.inet, "i-vgw2");
    t.inet.ip("addr add 192.0.2.1/24 dev i-vgw2");
    vgw2.ip(&format!("addr add {VGW2_WAN}/24 dev wan"));
    vgw2.ip("route add default via 192.0.2.1");
    vgw2.veth("vpc0", vpc, "eth1");
    vpc.ip("link set eth1 master br0");
    vgw2.ip(&format!("addr add {VGW2_VPC}/16 dev vpc0"));

    let nft = format!(
        "table ip iptvgw {{\n\
         chain post {{ type nat hook postrouting priority srcnat; policy accept;\n\
           oifname \"vpc0\" ip saddr {LAN_CIDR} masquerade; }}\n\
         }}\n"
    );
    for ns in [vgw1, &vgw2] {
        ns.exec_input("nft", &["-f", "-"], nft.as_bytes())
            .expect_ok();
    }
    vgw2
}
