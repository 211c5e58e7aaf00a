//! strongSwan (charon 5.9 + swanctl) in the test namespaces: the "AWS VGW"
//! stand-in of shared/reference/strongswan-vgw/ and a customer-gateway peer.
//!
//! One charon per namespace, each in its own directory (`<dir>/`):
//! - `strongswan.conf`: selected with `STRONGSWAN_CONF`; its own VICI socket
//!   (`<dir>/charon.vici`) and file log (`<dir>/charon.log`, which also gets
//!   charon's stdout and stderr and is printed when a test fails);
//! - `run/`: bind-mounted over `/run` inside the `ip netns exec` mount
//!   namespace, so charon's fixed pid file `/var/run/charon.pid` does not
//!   collide with another instance;
//! - `swanctl.conf`: generated from [`SwanctlConf`] and loaded with
//!   `swanctl --load-all` (`SWANCTL_DIR=<dir>`, so nothing under
//!   /etc/swanctl is read).
//!
//! The kernels here have XFRM but no ESP, so the data plane is charon's
//! kernel-libipsec plugin (userspace ESP on a TUN `ipsec0`), loaded before
//! kernel-netlink. kernel-libipsec always wants UDP encapsulation, so a
//! charon here fakes its NAT_DETECTION hashes: its peer always sees "remote
//! host is behind NAT" and ESP always runs in UDP 4500.
//!
//! Routes: with AWS's 0.0.0.0/0 selectors the route charon installs for the
//! CHILD SA, `default dev ipsec0` in table 220, loops decrypted packets back
//! into the tunnel. `install_routes = no` (as reference/strongswan-vgw says)
//! is not enough: only kernel-netlink's XFRM code reads it, kernel-libipsec
//! installs its routes regardless (checked with 5.9.8). So the rule of table
//! 220 is moved behind the main table ([`ROUTING_TABLE_PRIO`]), where its
//! routes never match, and the prefixes served through the tunnel are routed
//! into `ipsec0` in main explicitly ([`CharonConf::routes`]), as AWS routes
//! its static routes.
//!
//! charon is started with [`Netns::spawn`], so the namespace guard knows it
//! and kills it at teardown whatever happens; [`Charon::stop`] (also run by
//! `Drop`) stops it earlier by PID (TERM, then KILL after a bounded wait),
//! checking the PID still names the process it started. `swanctl` talks to
//! the VICI socket by path, from the root namespace.

use super::{run_cmd, signal, tail, wait_until, Netns, Out};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The charon daemon (Debian's strongswan-charon).
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// The kernel-libipsec plugin (Debian's libcharon-extra-plugins).
pub const KERNEL_LIBIPSEC: &str = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so";
/// The TUN device kernel-libipsec creates in charon's namespace.
pub const IPSEC_TUN: &str = "ipsec0";

/// charon's plugins: kernel-libipsec before kernel-netlink (which still
/// provides addresses and routes), OpenSSL crypto, VICI for swanctl.
pub const CHARON_PLUGINS: &str = "random nonce openssl aesni aes sha1 sha2 hmac gcm gmp pem \
     pkcs1 x509 pubkey kdf kernel-libipsec kernel-netlink socket-default vici";
/// The table kernel-libipsec's own routes go to (strongSwan's default).
pub const ROUTING_TABLE: u32 = 220;
/// The priority of that table's `ip rule`: after main (32766) and default
/// (32767), so the routes charon installs there are never used.
pub const ROUTING_TABLE_PRIO: u32 = 40000;
/// swanctl's plugins (it reads the same strongswan.conf).
const SWANCTL_PLUGINS: &str = "random openssl pem pkcs1 pkcs8 x509 pubkey";

/// AWS's default phase 1 proposals (reference/strongswan-vgw/swanctl.conf):
/// the classic one first, then AES128|256 x SHA1|SHA2 x DH 2, 14-24, then the
/// GCM variants.
pub const AWS_IKE_PROPOSALS: &[&str] = &[
    "aes128-sha1-modp2048",
    "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256",
    "aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-prfsha512-modp1024-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256",
];
/// AWS's default phase 2 proposals (PFS groups 2, 5, 14-24).
pub const AWS_ESP_PROPOSALS: &[&str] = &[
    "aes128-sha1-modp2048",
    "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp1536-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256",
    "aes128gcm16-aes256gcm16-modp1024-modp1536-modp2048-modp3072-modp4096-modp6144-modp8192-ecp256-ecp384-ecp521-modp1024s160-modp2048s224-modp2048s256",
];

/// Whether strongSwan can run here: `swanctl`, charon and kernel-libipsec
/// (scripts/test.sh installs them). `Err` names what is missing.
pub fn available() -> Result<(), String> {
    let mut missing = Vec::new();
    let swanctl = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("swanctl").is_file()))
        .unwrap_or(false);
    if !swanctl {
        missing.push("swanctl (strongswan-swanctl)");
    }
    if !Path::new(CHARON).is_file() {
        missing.push("/usr/lib/ipsec/charon (strongswan-charon)");
    }
    if !Path::new(KERNEL_LIBIPSEC).is_file() {
        missing.push("the kernel-libipsec plugin (libcharon-extra-plugins)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "strongSwan missing: {}; scripts/test.sh installs it",
            missing.join(", ")
        ))
    }
}

// ------------------------------------------------------------ swanctl.conf --

/// CHILD_SA `start_action`: what charon does with the child when the config
/// is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for the peer to initiate (AWS "add", the default).
    None,
    /// Initiate at load (AWS "start": the VGW initiates).
    Start,
    /// Install a trap policy and initiate on the first packet.
    Trap,
}

impl StartAction {
    fn as_str(self) -> &'static str {
        match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        }
    }
}

/// One `children { NAME { ... } }` entry. Durations in seconds; `None` leaves
/// strongSwan's default.
#[derive(Debug, Clone)]
pub struct ChildConf {
    /// Child config name (what `initiate(child)` takes).
    pub name: String,
    /// `mode` (tunnel).
    pub mode: String,
    /// `local_ts`.
    pub local_ts: Vec<String>,
    /// `remote_ts`.
    pub remote_ts: Vec<String>,
    /// `esp_proposals`, in preference order.
    pub esp_proposals: Vec<String>,
    /// `life_time`.
    pub life_time: Option<u64>,
    /// `rekey_time`.
    pub rekey_time: Option<u64>,
    /// `rand_time`.
    pub rand_time: Option<u64>,
    /// `replay_window` (packets).
    pub replay_window: Option<u32>,
    /// `dpd_action` (clear, trap, restart).
    pub dpd_action: Option<String>,
    /// `close_action`.
    pub close_action: Option<String>,
    /// `start_action`.
    pub start_action: StartAction,
}

impl ChildConf {
    /// A tunnel-mode child with these selectors and ESP proposals, everything
    /// else strongSwan's defaults, waiting for the peer.
    pub fn new(name: &str, local_ts: &[&str], remote_ts: &[&str], esp: &[&str]) -> ChildConf {
        ChildConf {
            name: name.to_string(),
            mode: "tunnel".into(),
            local_ts: strings(local_ts),
            remote_ts: strings(remote_ts),
            esp_proposals: strings(esp),
            life_time: None,
            rekey_time: None,
            rand_time: None,
            replay_window: None,
            dpd_action: None,
            close_action: None,
            start_action: StartAction::None,
        }
    }
}

/// One `connections { NAME { ... } }` entry plus its PSK (rendered as
/// `secrets { ike-NAME { id-1 = local_id  id-2 = remote_id  secret = ... } }`).
/// Durations in seconds; `None` leaves strongSwan's default.
#[derive(Debug, Clone)]
pub struct ConnConf {
    /// Connection name (what `terminate_ike` takes, the IKE SA's name).
    pub name: String,
    /// IKE version (2; 0 accepts both as responder).
    pub version: u8,
    /// `local_addrs`.
    pub local_addrs: Vec<String>,
    /// `remote_addrs` (`%any` to accept any peer as responder).
    pub remote_addrs: Vec<String>,
    /// `local.id` (AWS: the VGW's outside address; the customer gateway's
    /// public address).
    pub local_id: String,
    /// `remote.id`.
    pub remote_id: String,
    /// The pre-shared key (8-64 of `[A-Za-z0-9._]` at AWS).
    pub psk: String,
    /// IKE `proposals`, in preference order.
    pub proposals: Vec<String>,
    /// `rekey_time` (IKE).
    pub rekey_time: Option<u64>,
    /// `over_time`.
    pub over_time: Option<u64>,
    /// `rand_time`.
    pub rand_time: Option<u64>,
    /// `reauth_time`.
    pub reauth_time: Option<u64>,
    /// `dpd_delay`.
    pub dpd_delay: Option<u64>,
    /// `dpd_timeout` (IKEv1 only; IKEv2 liveness is charon's retransmit
    /// settings, [`CharonConf`]).
    pub dpd_timeout: Option<u64>,
    /// `encap = yes` forces UDP encapsulation (fakes NAT detection).
    pub encap: bool,
    /// `mobike` (off, like AWS).
    pub mobike: bool,
    /// `fragmentation`.
    pub fragmentation: Option<String>,
    /// `unique`.
    pub unique: Option<String>,
    /// `keyingtries` (0 = forever).
    pub keyingtries: Option<u32>,
    /// The CHILD_SA configs.
    pub children: Vec<ChildConf>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl ConnConf {
    /// One AWS VGW tunnel with AWS's defaults (reference/strongswan-vgw/
    /// swanctl.conf): the full default proposal sets, IKE lifetime 28800 s
    /// (rekey 28530 s, over 270 s, rand 270 s), CHILD lifetime 3600 s (rekey
    /// 3330 s, rand 270 s), DPD every 10 s with action clear, replay window
    /// 1024, MOBIKE off, `unique = replace`, route-based selectors 0.0.0.0/0
    /// on both sides, `start_action = none` (the customer gateway initiates;
    /// set the child's `start_action` to [`StartAction::Start`] for AWS's
    /// "start"). The IDs are the addresses: `vgw_addr` and the customer
    /// gateway's public address `cgw_addr`. The child has the connection's
    /// name.
    pub fn aws_vgw(name: &str, vgw_addr: &str, cgw_addr: &str, psk: &str) -> ConnConf {
        let mut child = ChildConf::new(name, &["0.0.0.0/0"], &["0.0.0.0/0"], AWS_ESP_PROPOSALS);
        child.life_time = Some(3600);
        child.rekey_time = Some(3330);
        child.rand_time = Some(270);
        child.replay_window = Some(1024);
        child.dpd_action = Some("clear".into());
        child.close_action = Some("none".into());
        ConnConf {
            name: name.to_string(),
            version: 2,
            local_addrs: vec![vgw_addr.to_string()],
            remote_addrs: vec![cgw_addr.to_string()],
            local_id: vgw_addr.to_string(),
            remote_id: cgw_addr.to_string(),
            psk: psk.to_string(),
            proposals: strings(AWS_IKE_PROPOSALS),
            rekey_time: Some(28530),
            over_time: Some(270),
            rand_time: Some(270),
            reauth_time: None,
            dpd_delay: Some(10),
            dpd_timeout: Some(30),
            encap: false,
            mobike: false,
            fragmentation: Some("yes".into()),
            unique: Some("replace".into()),
            keyingtries: None,
            children: vec![child],
        }
    }

    /// A customer gateway as AWS's sample config sets one up: IKE
    /// aes128-sha1-modp2048, ESP aes128gcm16-modp2048, DPD every 10 s, MOBIKE
    /// off, waiting for the peer (call [`Charon::initiate`], or set the
    /// child's `start_action`). `local_addr` is its own (private) address,
    /// `public_id` the address AWS knows it by (its IKE ID), `vgw_addr` the
    /// VGW's outside address (also the VGW's ID). One child with the
    /// connection's name and these selectors.
    pub fn customer_gateway(
        name: &str,
        local_addr: &str,
        public_id: &str,
        vgw_addr: &str,
        psk: &str,
        local_ts: &[&str],
        remote_ts: &[&str],
    ) -> ConnConf {
        ConnConf {
            name: name.to_string(),
            version: 2,
            local_addrs: vec![local_addr.to_string()],
            remote_addrs: vec![vgw_addr.to_string()],
            local_id: public_id.to_string(),
            remote_id: vgw_addr.to_string(),
            psk: psk.to_string(),
            proposals: strings(&["aes128-sha1-modp2048"]),
            rekey_time: None,
            over_time: None,
            rand_time: None,
            reauth_time: None,
            dpd_delay: Some(10),
            dpd_timeout: None,
            encap: false,
            mobike: false,
            fragmentation: None,
            unique: None,
            keyingtries: None,
            children: vec![ChildConf::new(
                name,
                local_ts,
                remote_ts,
                &["aes128gcm16-modp2048"],
            )],
        }
    }

    /// The first child (panics if there is none).
    pub fn child(&mut self) -> &mut ChildConf {
        self.children
            .first_mut()
            .expect("connection without children")
    }

    /// Sets the first child's `start_action`.
    pub fn start_action(mut self, a: StartAction) -> ConnConf {
        self.child().start_action = a;
        self
    }

    /// Replaces the IKE proposals.
    pub fn ike_proposals(mut self, p: &[&str]) -> ConnConf {
        self.proposals = strings(p);
        self
    }

    /// Replaces the first child's ESP proposals.
    pub fn esp_proposals(mut self, p: &[&str]) -> ConnConf {
        self.child().esp_proposals = strings(p);
        self
    }

    /// Replaces the first child's selectors.
    pub fn traffic_selectors(mut self, local_ts: &[&str], remote_ts: &[&str]) -> ConnConf {
        let c = self.child();
        c.local_ts = strings(local_ts);
        c.remote_ts = strings(remote_ts);
        self
    }

    fn render(&self, out: &mut String) {
        let secs = |out: &mut String, indent: &str, key: &str, v: Option<u64>| {
            if let Some(v) = v {
                let _ = writeln!(out, "{indent}{key} = {v}s");
            }
        };
        let _ = writeln!(out, "  {} {{", self.name);
        let _ = writeln!(out, "    version = {}", self.version);
        let _ = writeln!(out, "    local_addrs = {}", self.local_addrs.join(","));
        let _ = writeln!(out, "    remote_addrs = {}", self.remote_addrs.join(","));
        let _ = writeln!(out, "    proposals = {}", self.proposals.join(","));
        secs(out, "    ", "rekey_time", self.rekey_time);
        secs(out, "    ", "over_time", self.over_time);
        secs(out, "    ", "rand_time", self.rand_time);
        secs(out, "    ", "reauth_time", self.reauth_time);
        secs(out, "    ", "dpd_delay", self.dpd_delay);
        secs(out, "    ", "dpd_timeout", self.dpd_timeout);
        let yn = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(out, "    encap = {}", yn(self.encap));
        let _ = writeln!(out, "    mobike = {}", yn(self.mobike));
        if let Some(f) = &self.fragmentation {
            let _ = writeln!(out, "    fragmentation = {f}");
        }
        if let Some(u) = &self.unique {
            let _ = writeln!(out, "    unique = {u}");
        }
        if let Some(k) = self.keyingtries {
            let _ = writeln!(out, "    keyingtries = {k}");
        }
        let _ = writeln!(
            out,
            "    local {{\n      auth = psk\n      id = {}\n    }}",
            self.local_id
        );
        let _ = writeln!(
            out,
            "    remote {{\n      auth = psk\n      id = {}\n    }}",
            self.remote_id
        );
        let _ = writeln!(out, "    children {{");
        for c in &self.children {
            let _ = writeln!(out, "      {} {{", c.name);
            let _ = writeln!(out, "        mode = {}", c.mode);
            let _ = writeln!(out, "        local_ts = {}", c.local_ts.join(","));
            let _ = writeln!(out, "        remote_ts = {}", c.remote_ts.join(","));
            let _ = writeln!(out, "        esp_proposals = {}", c.esp_proposals.join(","));
            secs(out, "        ", "life_time", c.life_time);
            secs(out, "        ", "rekey_time", c.rekey_time);
            secs(out, "        ", "rand_time", c.rand_time);
            if let Some(w) = c.replay_window {
                let _ = writeln!(out, "        replay_window = {w}");
            }
            if let Some(a) = &c.dpd_action {
                let _ = writeln!(out, "        dpd_action = {a}");
            }
            if let Some(a) = &c.close_action {
                let _ = writeln!(out, "        close_action = {a}");
            }
            let _ = writeln!(out, "        start_action = {}", c.start_action.as_str());
            let _ = writeln!(out, "      }}");
        }
        let _ = writeln!(out, "    }}\n  }}");
    }
}

/// A whole swanctl.conf: connections and their PSKs.
#[derive(Debug, Clone, Default)]
pub struct SwanctlConf {
    /// The connections, each with its own secret.
    pub conns: Vec<ConnConf>,
}

impl SwanctlConf {
    /// A file with one connection.
    pub fn one(conn: ConnConf) -> SwanctlConf {
        SwanctlConf { conns: vec![conn] }
    }

    /// The swanctl.conf text.
    pub fn render(&self) -> String {
        let mut s = String::from("# generated by tests/common/strongswan.rs\nconnections {\n");
        for c in &self.conns {
            c.render(&mut s);
        }
        s.push_str("}\nsecrets {\n");
        for c in &self.conns {
            assert!(
                !c.psk.contains('"') && !c.psk.contains('\\') && !c.psk.contains('\n'),
                "PSK of {} must not contain quotes, backslashes or newlines",
                c.name
            );
            let _ = writeln!(
                s,
                "  ike-{} {{\n    id-1 = {}\n    id-2 = {}\n    secret = \"{}\"\n  }}",
                c.name, c.local_id, c.remote_id, c.psk
            );
        }
        s.push_str("}\n");
        s
    }
}

// --------------------------------------------------------- strongswan.conf --

/// Daemon-wide settings of one charon (its strongswan.conf).
#[derive(Debug, Clone)]
pub struct CharonConf {
    /// Prefixes routed into `ipsec0` (main table) once charon runs: what
    /// the tunnel serves towards the peer. charon's own per-policy routes
    /// stay in table 220 behind main ([`ROUTING_TABLE_PRIO`]).
    pub routes: Vec<String>,
    /// `retransmit_timeout`, `retransmit_base`, `retransmit_tries`; `None`
    /// keeps strongSwan's (4 s, 1.8, 5: about 165 s before giving up).
    pub retransmit: Option<(f64, f64, u32)>,
    /// filelog `default` level (-1..4); 1 is strongSwan's default.
    pub log_level: i8,
    /// Extra lines inside `charon { }`.
    pub extra: String,
}

impl CharonConf {
    /// strongSwan's defaults, routing `routes` into `ipsec0`.
    pub fn new(routes: &[&str]) -> CharonConf {
        CharonConf {
            routes: strings(routes),
            retransmit: None,
            log_level: 1,
            extra: String::new(),
        }
    }

    /// Like the AWS VGW (reference/strongswan-vgw/strongswan.conf): IKEv2
    /// retransmits 2 s x 1.4^n, 5 tries, so an unanswered peer is declared
    /// dead after about 32.7 s (AWS's DPD timeout 30 s).
    pub fn aws_vgw(routes: &[&str]) -> CharonConf {
        CharonConf {
            retransmit: Some((2.0, 1.4, 5)),
            ..CharonConf::new(routes)
        }
    }

    fn render(&self, dir: &Path) -> String {
        let mut s = String::from(
            "# generated by tests/common/strongswan.rs; one charon per namespace\ncharon {\n",
        );
        s.push_str("  port = 500\n  port_nat_t = 4500\n");
        s.push_str("  install_routes = no\n  install_virtual_ip = no\n");
        // kernel-libipsec installs a route per outbound policy whatever
        // install_routes says (only kernel-netlink's XFRM code reads it):
        // `default dev ipsec0` for 0.0.0.0/0 selectors. Its table's rule is
        // put behind main's (32766), so those routes never match and the
        // explicit routes in main decide.
        let _ = writeln!(
            s,
            "  routing_table = {ROUTING_TABLE}\n  routing_table_prio = {ROUTING_TABLE_PRIO}"
        );
        s.push_str("  load_modular = no\n");
        let _ = writeln!(s, "  load = {CHARON_PLUGINS}");
        if let Some((t, b, n)) = self.retransmit {
            let _ = writeln!(
                s,
                "  retransmit_timeout = {t:.1}\n  retransmit_base = {b:.1}\n  retransmit_tries = {n}"
            );
        }
        let _ = writeln!(
            s,
            "  plugins {{\n    vici {{\n      socket = unix://{}\n    }}\n  }}",
            dir.join("charon.vici").display()
        );
        let _ = writeln!(
            s,
            "  filelog {{\n    test {{\n      path = {}\n      time_format = %T\n      \
             default = {}\n      ike_name = yes\n      flush_line = yes\n      append = yes\n    }}\n  }}",
            dir.join("charon.log").display(),
            self.log_level
        );
        // no syslog: everything goes to the file log
        s.push_str("  syslog {\n    daemon {\n      default = -1\n    }\n  }\n");
        s.push_str(&self.extra);
        s.push_str("}\n");
        let _ = writeln!(s, "swanctl {{\n  load = {SWANCTL_PLUGINS}\n}}");
        s
    }
}

// ------------------------------------------------------------------ charon --

/// A charon daemon running in a test namespace.
pub struct Charon {
    /// Label for messages (e.g. "vgw").
    pub label: String,
    /// The namespace's name.
    pub ns: String,
    /// charon's PID (`ip netns exec` and `sh` exec it).
    pub pid: u32,
    /// Its directory.
    pub dir: PathBuf,
    /// `<dir>/strongswan.conf`.
    pub strongswan_conf: PathBuf,
    /// `<dir>/swanctl.conf` (written by [`Charon::write_conf`]).
    pub swanctl_conf: PathBuf,
    /// `<dir>/charon.vici`.
    pub vici: PathBuf,
    /// `<dir>/charon.log`: file log plus stdout and stderr.
    pub log: PathBuf,
    /// /proc start time of `pid`, to never signal a recycled PID.
    starttime: u64,
    stopped: bool,
}

/// State and start time of a process from /proc/<pid>/stat.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, start))
}

impl Charon {
    /// Starts charon in `ns` with its files in `dir` (created; use one
    /// directory per charon, e.g. `<topology dir>/charon-vgw`), waits (15 s)
    /// for its VICI socket to answer and for `ipsec0`, then routes
    /// `conf.routes` into `ipsec0`. No connections yet: [`Charon::load`].
    pub fn start(ns: &Netns, dir: &Path, label: &str, conf: &CharonConf) -> Charon {
        if let Err(e) = available() {
            panic!("{e}");
        }
        let run_dir = dir.join("run");
        fs::create_dir_all(&run_dir).unwrap();
        let strongswan_conf = dir.join("strongswan.conf");
        let vici = dir.join("charon.vici");
        let log = dir.join("charon.log");
        // a restart in the same directory: the old instance is gone
        let _ = fs::remove_file(run_dir.join("charon.pid"));
        let _ = fs::remove_file(&vici);
        fs::write(&strongswan_conf, conf.render(dir)).unwrap();
        ns.remove_at_teardown(&vici);
        // Wait for a previous ipsec0 (restart) to be gone before the new one.
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            !ns.try_ip(&format!("link show {IPSEC_TUN}")).ok()
        });
        let pid = ns.spawn(
            &format!("charon {label}"),
            "sh",
            &[
                "-c",
                "mount --bind \"$1\" /run && exec \"$2\"",
                "sh",
                run_dir.to_str().unwrap(),
                CHARON,
            ],
            &[("STRONGSWAN_CONF", strongswan_conf.to_str().unwrap())],
            &log,
        );
        let starttime = proc_stat(pid).map(|(_, t)| t).unwrap_or(0);
        let mut c = Charon {
            label: label.to_string(),
            ns: ns.name.clone(),
            pid,
            dir: dir.to_path_buf(),
            strongswan_conf,
            swanctl_conf: dir.join("swanctl.conf"),
            vici,
            log,
            starttime,
            stopped: false,
        };
        let mut last = String::new();
        let up = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            if !ns.running(pid) {
                last = "charon exited".into();
                return false;
            }
            if !c.vici.exists() {
                last = "no VICI socket yet".into();
                return false;
            }
            let out = c.swanctl("--stats", &[], Duration::from_secs(5));
            if !out.ok() {
                last = format!("{out}");
                return false;
            }
            if !ns.try_ip(&format!("link show {IPSEC_TUN}")).ok() {
                last = format!("no {IPSEC_TUN} yet");
                return false;
            }
            true
        });
        if !up {
            let msg = format!(
                "charon {label} did not come up in {} (running: {}, last: {last}):\n{}",
                ns.name,
                ns.running(pid),
                tail(&c.log, 80)
            );
            c.stop();
            panic!("{msg}");
        }
        // kernel-libipsec brings ipsec0 up; make sure before routing into it
        ns.ip(&format!("link set {IPSEC_TUN} up"));
        for p in &conf.routes {
            ns.ip(&format!("route replace {p} dev {IPSEC_TUN}"));
        }
        c
    }

    /// Writes `conf` as `<dir>/swanctl.conf` (mode 0600: it holds the PSKs;
    /// not loaded yet).
    pub fn write_conf(&self, conf: &SwanctlConf) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.swanctl_conf)
            .unwrap_or_else(|e| panic!("{}: {e}", self.swanctl_conf.display()));
        f.write_all(conf.render().as_bytes()).unwrap();
    }

    /// `swanctl --load-all` of `<dir>/swanctl.conf`.
    pub fn load_all(&self) -> Out {
        let file = self.swanctl_conf.to_str().unwrap().to_string();
        self.swanctl(
            "--load-all",
            &["--noprompt", "--file", &file],
            Duration::from_secs(20),
        )
    }

    /// [`Charon::write_conf`] and [`Charon::load_all`]; panics (with the
    /// file and the log) if loading fails.
    pub fn load(&self, conf: &SwanctlConf) {
        self.write_conf(conf);
        let out = self.load_all();
        assert!(
            out.ok(),
            "charon {}: swanctl --load-all failed: {out}\n--- swanctl.conf ---\n{}\n--- log ---\n{}",
            self.label,
            conf.render(),
            tail(&self.log, 60)
        );
    }

    /// Runs `swanctl <command> --uri unix://<vici> <args>` (the command must
    /// come first), bounded by `timeout`.
    pub fn swanctl(&self, command: &str, args: &[&str], timeout: Duration) -> Out {
        let mut c = Command::new("swanctl");
        c.arg(command)
            .arg("--uri")
            .arg(format!("unix://{}", self.vici.display()))
            .args(args)
            .env("STRONGSWAN_CONF", &self.strongswan_conf)
            .env("SWANCTL_DIR", &self.dir);
        run_cmd(&mut c, None, timeout)
    }

    /// `swanctl --initiate --child <child>`: returns when the CHILD_SA is up
    /// or failed (charon gives up after its retransmits), at most 30 s.
    pub fn initiate(&self, child: &str) -> Out {
        self.swanctl(
            "--initiate",
            &["--child", child, "--timeout", "25"],
            Duration::from_secs(30),
        )
    }

    /// `swanctl --terminate --ike <ike>`: deletes the IKE SA (and its
    /// children), at most 10 s.
    pub fn terminate_ike(&self, ike: &str) -> Out {
        self.swanctl(
            "--terminate",
            &["--ike", ike, "--timeout", "8"],
            Duration::from_secs(10),
        )
    }

    /// `swanctl --list-sas --raw --noblock`, parsed. Panics if swanctl fails.
    pub fn list_sas(&self) -> Vec<IkeSa> {
        let out = self.list_sas_raw();
        assert!(out.ok(), "charon {}: list-sas: {out}", self.label);
        IkeSa::parse_list(&out.stdout)
            .unwrap_or_else(|e| panic!("charon {}: cannot parse list-sas ({e}): {out}", self.label))
    }

    fn list_sas_raw(&self) -> Out {
        self.swanctl(
            "--list-sas",
            &["--raw", "--noblock"],
            Duration::from_secs(10),
        )
    }

    /// Waits (bounded) until an IKE SA satisfies `pred`; returns it. Panics
    /// with the last list-sas answer and the log otherwise.
    pub fn wait_sa(&self, timeout: Duration, what: &str, pred: impl Fn(&IkeSa) -> bool) -> IkeSa {
        let mut found = None;
        let mut last = String::new();
        let start = Instant::now();
        wait_until(timeout, Duration::from_millis(100), || {
            let out = self.list_sas_raw();
            if !out.ok() {
                last = format!("{out}");
                return false;
            }
            match IkeSa::parse_list(&out.stdout) {
                Ok(sas) => {
                    last = out.stdout.clone();
                    found = sas.into_iter().find(|sa| pred(sa));
                    found.is_some()
                }
                Err(e) => {
                    last = format!("unparsable ({e}): {}", out.stdout);
                    false
                }
            }
        });
        found.unwrap_or_else(|| {
            panic!(
                "charon {} in {}: no IKE SA {what} after {:?}; last list-sas:\n{last}\n--- end of log ---\n{}",
                self.label,
                self.ns,
                start.elapsed(),
                tail(&self.log, 30)
            )
        })
    }

    /// Waits (bounded) for an ESTABLISHED IKE SA with an INSTALLED CHILD SA.
    pub fn wait_established(&self, timeout: Duration) -> IkeSa {
        self.wait_sa(
            timeout,
            "ESTABLISHED with an INSTALLED CHILD_SA",
            IkeSa::is_up,
        )
    }

    /// Waits (bounded) until no IKE SA is left; returns whether it happened.
    pub fn wait_no_sas(&self, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(100), || {
            let out = self.list_sas_raw();
            out.ok()
                && IkeSa::parse_list(&out.stdout)
                    .map(|v| v.is_empty())
                    .unwrap_or(false)
        })
    }

    /// Whether charon still runs (not exited, not a zombie).
    pub fn running(&self) -> bool {
        !self.stopped && self.alive()
    }

    fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((s, t)) if s != 'Z' && t == self.starttime)
    }

    /// Stops charon by PID: SIGTERM, up to 5 s for it to exit, then SIGKILL
    /// (2 s). Removes its VICI socket. Idempotent. The namespace guard reaps
    /// the process.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.alive() {
            signal(self.pid, libc::SIGTERM);
            if !wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                !self.alive()
            }) {
                eprintln!(
                    "[harness] charon {} (pid {}) ignored SIGTERM for 5 s: SIGKILL",
                    self.label, self.pid
                );
                if self.alive() {
                    signal(self.pid, libc::SIGKILL);
                }
                wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                    !self.alive()
                });
            }
        }
        let _ = fs::remove_file(&self.vici);
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.stopped && self.alive() {
            let out = self.list_sas_raw();
            eprintln!(
                "----- charon {} in {}: list-sas at failure -----\n{}",
                self.label, self.ns, out.stdout
            );
        }
        self.stop();
    }
}

// -------------------------------------------------------------- list-sas --

/// A value in swanctl's raw VICI dump.
#[derive(Debug, Clone, PartialEq)]
pub enum Vici {
    /// `key=value`.
    Str(String),
    /// `key=[a b c]`.
    List(Vec<String>),
    /// `name { ... }`.
    Section(Vec<(String, Vici)>),
}

impl Vici {
    /// The entries of a section (empty for other values).
    pub fn entries(&self) -> &[(String, Vici)] {
        match self {
            Vici::Section(v) => v,
            _ => &[],
        }
    }
    /// A string value of a section.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries().iter().find_map(|(k, v)| match v {
            Vici::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
    /// A list value of a section (empty if absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.entries()
            .iter()
            .find_map(|(k, v)| match v {
                Vici::List(l) if k == key => Some(l.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
    /// A subsection.
    pub fn section(&self, key: &str) -> Option<&Vici> {
        self.entries().iter().find_map(|(k, v)| match v {
            Vici::Section(_) if k == key => Some(v),
            _ => None,
        })
    }

    /// Parses swanctl's raw output: `label {k=v k=[a b] name {...}}` blocks
    /// (one per message), returned as (label, section) pairs.
    pub fn parse_messages(text: &str) -> Result<Vec<(String, Vici)>, String> {
        let toks = tokenize(text);
        let mut i = 0;
        let mut msgs = Vec::new();
        while i < toks.len() {
            // a label is all words up to "{" ("list-sa event {")
            let mut label = Vec::new();
            while i < toks.len() && toks[i] != "{" {
                label.push(toks[i].clone());
                i += 1;
            }
            if i >= toks.len() {
                if label.is_empty() {
                    break;
                }
                return Err(format!("trailing words {label:?}"));
            }
            i += 1;
            let sec = parse_section(&toks, &mut i)?;
            msgs.push((label.join(" "), sec));
        }
        Ok(msgs)
    }
}

/// Words, `{`, `}`, `[`, `]` and `=` as separate tokens.
fn tokenize(text: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        match ch {
            '{' | '}' | '[' | ']' | '=' => {
                if !cur.is_empty() {
                    toks.push(std::mem::take(&mut cur));
                }
                toks.push(ch.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    toks.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    toks
}

/// Parses section entries after its `{` up to and including its `}`.
fn parse_section(toks: &[String], i: &mut usize) -> Result<Vici, String> {
    let mut entries = Vec::new();
    loop {
        let t = toks.get(*i).ok_or("unterminated section")?;
        if t == "}" {
            *i += 1;
            return Ok(Vici::Section(entries));
        }
        let key = t.clone();
        *i += 1;
        match toks.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                entries.push((key, parse_section(toks, i)?));
            }
            Some("=") => {
                *i += 1;
                match toks.get(*i).map(String::as_str) {
                    Some("[") => {
                        *i += 1;
                        let mut items = Vec::new();
                        loop {
                            let t = toks.get(*i).ok_or("unterminated list")?;
                            *i += 1;
                            if t == "]" {
                                break;
                            }
                            items.push(t.clone());
                        }
                        entries.push((key, Vici::List(items)));
                    }
                    Some(v) if !matches!(v, "{" | "}" | "]" | "=") => {
                        entries.push((key, Vici::Str(v.to_string())));
                        *i += 1;
                    }
                    other => return Err(format!("bad value {other:?} for {key}")),
                }
            }
            other => return Err(format!("expected {{ or = after {key}, got {other:?}")),
        }
    }
}

/// One IKE SA from `swanctl --list-sas --raw`.
#[derive(Debug, Clone)]
pub struct IkeSa {
    /// The connection name.
    pub name: String,
    /// `uniqueid`.
    pub uniqueid: u32,
    /// CREATED, CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
    pub state: String,
    /// Whether this side initiated the IKE SA.
    pub initiator: bool,
    /// Local address and port.
    pub local_host: String,
    /// Local port (4500 with NAT-T).
    pub local_port: u16,
    /// Remote address (the NAT's public address for a peer behind NAT).
    pub remote_host: String,
    /// Remote port.
    pub remote_port: u16,
    /// Local IKE identity.
    pub local_id: String,
    /// Remote IKE identity.
    pub remote_id: String,
    /// IKE SPIs (hex, as printed).
    pub initiator_spi: String,
    /// Responder SPI.
    pub responder_spi: String,
    /// This side is behind NAT (`nat-local`).
    pub nat_local: bool,
    /// The peer is behind NAT (`nat-remote`).
    pub nat_remote: bool,
    /// NAT faked with `encap = yes` (`nat-fake`).
    pub nat_fake: bool,
    /// Any NAT on the path (`nat-any`).
    pub nat_any: bool,
    /// ENCR, e.g. AES_CBC or AES_GCM_16.
    pub encr_alg: String,
    /// Key size in bits.
    pub encr_keysize: Option<u32>,
    /// INTEG (absent with AEAD), e.g. HMAC_SHA1_96.
    pub integ_alg: Option<String>,
    /// PRF, e.g. PRF_HMAC_SHA1.
    pub prf_alg: String,
    /// DH group, e.g. MODP_2048.
    pub dh_group: String,
    /// The CHILD SAs.
    pub children: Vec<ChildSa>,
    /// Every key of the IKE SA section as printed (strings only).
    pub raw: Vec<(String, String)>,
}

/// One CHILD SA of an [`IkeSa`].
#[derive(Debug, Clone)]
pub struct ChildSa {
    /// The child config name.
    pub name: String,
    /// `uniqueid`.
    pub uniqueid: u32,
    /// INSTALLED, REKEYING, REKEYED, DELETING, ...
    pub state: String,
    /// TUNNEL.
    pub mode: String,
    /// ESP.
    pub protocol: String,
    /// ESP in UDP.
    pub encap: bool,
    /// Inbound SPI (hex as printed).
    pub spi_in: String,
    /// Outbound SPI.
    pub spi_out: String,
    /// ENCR.
    pub encr_alg: String,
    /// Key size in bits.
    pub encr_keysize: Option<u32>,
    /// INTEG (absent with AEAD).
    pub integ_alg: Option<String>,
    /// PFS group, if any.
    pub dh_group: Option<String>,
    /// Bytes in.
    pub bytes_in: u64,
    /// Packets in.
    pub packets_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Packets out.
    pub packets_out: u64,
    /// Local selectors.
    pub local_ts: Vec<String>,
    /// Remote selectors.
    pub remote_ts: Vec<String>,
}

fn num<T: std::str::FromStr>(s: &Vici, key: &str) -> Option<T> {
    s.get(key).and_then(|v| v.parse().ok())
}

impl ChildSa {
    fn from_vici(key: &str, s: &Vici) -> ChildSa {
        let st = |k: &str| s.get(k).unwrap_or("").to_string();
        ChildSa {
            name: s.get("name").unwrap_or(key).to_string(),
            uniqueid: num(s, "uniqueid").unwrap_or(0),
            state: st("state"),
            mode: st("mode"),
            protocol: st("protocol"),
            encap: s.get("encap") == Some("yes"),
            spi_in: st("spi-in"),
            spi_out: st("spi-out"),
            encr_alg: st("encr-alg"),
            encr_keysize: num(s, "encr-keysize"),
            integ_alg: s.get("integ-alg").map(str::to_string),
            dh_group: s.get("dh-group").map(str::to_string),
            bytes_in: num(s, "bytes-in").unwrap_or(0),
            packets_in: num(s, "packets-in").unwrap_or(0),
            bytes_out: num(s, "bytes-out").unwrap_or(0),
            packets_out: num(s, "packets-out").unwrap_or(0),
            local_ts: s.list("local-ts"),
            remote_ts: s.list("remote-ts"),
        }
    }
}

impl IkeSa {
    /// Parses `swanctl --list-sas --raw`: one `list-sa event {NAME {...}}`
    /// per IKE SA, then `list-sas reply {}`.
    pub fn parse_list(text: &str) -> Result<Vec<IkeSa>, String> {
        let mut v = Vec::new();
        for (label, msg) in Vici::parse_messages(text)? {
            if label != "list-sa event" {
                continue;
            }
            for (name, sa) in msg.entries() {
                v.push(IkeSa::from_vici(name, sa));
            }
        }
        Ok(v)
    }

    fn from_vici(name: &str, s: &Vici) -> IkeSa {
        let st = |k: &str| s.get(k).unwrap_or("").to_string();
        let yes = |k: &str| s.get(k) == Some("yes");
        IkeSa {
            name: name.to_string(),
            uniqueid: num(s, "uniqueid").unwrap_or(0),
            state: st("state"),
            initiator: yes("initiator"),
            local_host: st("local-host"),
            local_port: num(s, "local-port").unwrap_or(0),
            remote_host: st("remote-host"),
            remote_port: num(s, "remote-port").unwrap_or(0),
            local_id: st("local-id"),
            remote_id: st("remote-id"),
            initiator_spi: st("initiator-spi"),
            responder_spi: st("responder-spi"),
            nat_local: yes("nat-local"),
            nat_remote: yes("nat-remote"),
            nat_fake: yes("nat-fake"),
            nat_any: yes("nat-any"),
            encr_alg: st("encr-alg"),
            encr_keysize: num(s, "encr-keysize"),
            integ_alg: s.get("integ-alg").map(str::to_string),
            prf_alg: st("prf-alg"),
            dh_group: st("dh-group"),
            children: s
                .section("child-sas")
                .map(|c| {
                    c.entries()
                        .iter()
                        .map(|(k, v)| ChildSa::from_vici(k, v))
                        .collect()
                })
                .unwrap_or_default(),
            raw: s
                .entries()
                .iter()
                .filter_map(|(k, v)| match v {
                    Vici::Str(x) => Some((k.clone(), x.clone())),
                    _ => None,
                })
                .collect(),
        }
    }

    /// NAT-T in use: a NAT was detected (or faked) and IKE runs on 4500.
    pub fn nat_t(&self) -> bool {
        (self.nat_any || self.nat_fake) && self.local_port == 4500 && self.remote_port == 4500
    }

    /// ESTABLISHED with at least one INSTALLED CHILD SA.
    pub fn is_up(&self) -> bool {
        self.state == "ESTABLISHED" && self.children.iter().any(|c| c.state == "INSTALLED")
    }

    /// The first INSTALLED CHILD SA.
    pub fn installed_child(&self) -> Option<&ChildSa> {
        self.children.iter().find(|c| c.state == "INSTALLED")
    }
}
