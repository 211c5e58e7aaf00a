//! Self-test of the strongSwan harness (tests/common/strongswan.rs) that the
//! ipieced-versus-strongSwan IPsec tests build on: two charons in the test
//! topology, before ipieced takes the customer gateway's place.
//!
//! - "customer gateway" charon in the gw namespace, behind the home router
//!   that masquerades and port-forwards UDP 500 and 4500 to it; its IKE ID is
//!   the router's public address, as AWS requires;
//! - "AWS VGW" charon in the vgw namespace with the AWS-like config of
//!   shared/reference/strongswan-vgw (default proposal sets, lifetimes, DPD,
//!   replay window, 0.0.0.0/0 selectors, the LAN prefix routed into ipsec0
//!   and charon's own routes kept out of the way), the VPC host behind it.
//!
//! The first test has the customer side propose LAN <-> VPC selectors, which
//! the VGW narrows its 0.0.0.0/0 to; the second is route-based on both sides
//! (0.0.0.0/0 <-> 0.0.0.0/0, AWS's and ipieced's default), where charon's
//! own `default dev ipsec0` route would loop traffic if it were used.
//!
//! These tests need root (network namespaces, TUN, nftables) and strongSwan
//! with kernel-libipsec (scripts/test.sh installs it); with
//! `IPIECE_SKIP_NETNS=1` they print a skip line instead when not root.

mod common;

use common::strongswan::*;
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PSK: &str = "ipiece.harness.psk.0123456789";
/// The VGW's connection (and child) name, as AWS names tunnels.
const VGW_CONN: &str = "aws-vgw-tun1";
/// The customer gateway's connection (and child) name.
const CGW_CONN: &str = "aws";

fn ready(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    true
}

/// The VGW tunnel: AWS defaults, the customer gateway known by the home
/// router's public address.
fn vgw_conn() -> ConnConf {
    ConnConf::aws_vgw(VGW_CONN, VGW_WAN, NAT_WAN, PSK)
}

/// Selectors as the customer side sees them: (local, remote).
type Ts = (&'static str, &'static str);
/// Policy-based: the LAN to the VPC.
const LAN_TO_VPC: Ts = (LAN_CIDR, VPC_CIDR);
/// Route-based: everything both ways.
const ANY_TO_ANY: Ts = ("0.0.0.0/0", "0.0.0.0/0");

/// The customer gateway: its private address, the public one as IKE ID.
fn cgw_conn(ts: Ts) -> ConnConf {
    ConnConf::customer_gateway(CGW_CONN, GW_ETH0, NAT_WAN, VGW_WAN, PSK, &[ts.0], &[ts.1])
}

/// charon as the VGW: AWS-like liveness, the LAN routed into ipsec0.
fn start_vgw(t: &Topology) -> Charon {
    Charon::start(
        t.vgw(),
        &t.dir.join("charon-vgw"),
        "vgw",
        &CharonConf::aws_vgw(&[LAN_CIDR]),
    )
}

/// charon as the customer gateway: forwarding on (ipieced would turn it
/// on), the VPC routed into ipsec0.
fn start_cgw(t: &Topology) -> Charon {
    t.gw.sysctl("net.ipv4.ip_forward", "1");
    Charon::start(
        &t.gw,
        &t.dir.join("charon-cgw"),
        "cgw",
        &CharonConf::new(&[VPC_CIDR]),
    )
}

/// Both ends of one IKE SA agree on SPIs and algorithms, the tunnel uses
/// NAT-T on UDP 4500 with the customer side behind NAT, and the CHILD SA
/// carries the customer's selectors `ts` (the VGW's 0.0.0.0/0 narrowed to
/// them).
fn assert_same_sa_over_nat_t(cgw: &IkeSa, vgw: &IkeSa, ts: Ts) {
    let both = format!("customer gateway: {cgw:#?}\nVGW: {vgw:#?}");
    assert_eq!(cgw.state, "ESTABLISHED", "{both}");
    assert_eq!(vgw.state, "ESTABLISHED", "{both}");
    assert_ne!(
        cgw.initiator, vgw.initiator,
        "exactly one initiator: {both}"
    );
    assert_eq!(
        (cgw.initiator_spi.as_str(), cgw.responder_spi.as_str()),
        (vgw.initiator_spi.as_str(), vgw.responder_spi.as_str()),
        "IKE SPIs differ: {both}"
    );
    // NAT-T: the customer side knows it is behind NAT, the VGW sees the
    // router's public address; both moved IKE to 4500.
    assert!(cgw.nat_local && cgw.nat_t(), "customer side NAT-T: {both}");
    assert!(vgw.nat_remote && vgw.nat_t(), "VGW side NAT-T: {both}");
    assert_eq!(
        (cgw.local_host.as_str(), cgw.remote_host.as_str()),
        (GW_ETH0, VGW_WAN),
        "{both}"
    );
    assert_eq!(
        (vgw.local_host.as_str(), vgw.remote_host.as_str()),
        (VGW_WAN, NAT_WAN),
        "{both}"
    );
    // AWS identifies the customer gateway by its public address.
    assert_eq!(
        (cgw.local_id.as_str(), vgw.remote_id.as_str()),
        (NAT_WAN, NAT_WAN),
        "{both}"
    );
    assert_eq!(
        (cgw.remote_id.as_str(), vgw.local_id.as_str()),
        (VGW_WAN, VGW_WAN),
        "{both}"
    );
    // The customer side offers only aes128-sha1-modp2048 / aes128gcm16.
    for sa in [cgw, vgw] {
        assert_eq!(sa.encr_alg, "AES_CBC", "{both}");
        assert_eq!(sa.encr_keysize, Some(128), "{both}");
        assert_eq!(sa.integ_alg.as_deref(), Some("HMAC_SHA1_96"), "{both}");
        assert_eq!(sa.prf_alg, "PRF_HMAC_SHA1", "{both}");
        assert_eq!(sa.dh_group, "MODP_2048", "{both}");
    }
    let cc = cgw.installed_child().expect("customer CHILD SA");
    let vc = vgw.installed_child().expect("VGW CHILD SA");
    for c in [cc, vc] {
        assert_eq!(
            (c.mode.as_str(), c.protocol.as_str()),
            ("TUNNEL", "ESP"),
            "{both}"
        );
        assert!(c.encap, "ESP not in UDP: {both}");
        assert_eq!(c.encr_alg, "AES_GCM_16", "{both}");
        assert_eq!(c.encr_keysize, Some(128), "{both}");
        assert_eq!(c.integ_alg, None, "AEAD has no integrity algorithm: {both}");
    }
    assert!(!cc.spi_in.is_empty() && !cc.spi_out.is_empty(), "{both}");
    assert_eq!(cc.spi_in, vc.spi_out, "{both}");
    assert_eq!(cc.spi_out, vc.spi_in, "{both}");
    let (local, remote) = (vec![ts.0.to_string()], vec![ts.1.to_string()]);
    assert_eq!((&cc.local_ts, &cc.remote_ts), (&local, &remote), "{both}");
    assert_eq!((&vc.local_ts, &vc.remote_ts), (&remote, &local), "{both}");
}

/// Pings `dst` from `ns` 5 times; all must come back.
fn ping5(ns: &Netns, dst: &str, what: &str) {
    assert!(
        ns.ping_until(dst, Duration::from_secs(5)),
        "{what}: {dst} never answered"
    );
    let p = ns.ping(dst, 5, 200, 2);
    assert_eq!(p.received, 5, "{what}: {p:?}");
}

/// What must be gone once the test's guards are dropped.
struct Leftovers {
    namespaces: Vec<String>,
    pids: Vec<(u32, String)>,
    sockets: Vec<PathBuf>,
}

impl Leftovers {
    fn of(t: &Topology, charons: &[&Charon]) -> Leftovers {
        let mut namespaces: Vec<String> = [&t.inet, &t.nat, &t.gw, &t.lan, t.vgw(), t.vpc()]
            .iter()
            .map(|n| n.name.clone())
            .collect();
        namespaces.extend(t.laptops.iter().map(|n| n.name.clone()));
        Leftovers {
            namespaces,
            pids: charons.iter().map(|c| (c.pid, cmdline_of(c.pid))).collect(),
            sockets: charons.iter().map(|c| c.vici.clone()).collect(),
        }
    }

    /// Asserts nothing is left (call after dropping the guards).
    fn assert_gone(&self) {
        let list = run("ip", &["netns", "list"]).stdout;
        for ns in &self.namespaces {
            assert!(
                !list
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(ns)),
                "namespace {ns} left behind:\n{list}"
            );
        }
        for (pid, cmd) in &self.pids {
            // the same PID running the same program: our charon survived
            assert!(
                cmdline_of(*pid) != *cmd,
                "charon pid {pid} ({cmd}) still running"
            );
        }
        for s in &self.sockets {
            assert!(!s.exists(), "VICI socket {} left behind", s.display());
        }
    }
}

fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

// ------------------------------------------------------------------ tests --

#[test]
fn customer_gateway_behind_nat_initiates_to_aws_like_vgw_over_nat_t_and_lan_host_pings_vpc_host() {
    let test = "customer_gateway_behind_nat_initiates_to_aws_like_vgw";
    if !ready(test) {
        return;
    }
    let t0 = Instant::now();
    let t = Topology::with_vgw(0);
    let vgw = start_vgw(&t);
    vgw.load(&SwanctlConf::one(vgw_conn()));
    let cgw = start_cgw(&t);
    cgw.load(&SwanctlConf::one(cgw_conn(LAN_TO_VPC)));
    let leftovers = Leftovers::of(&t, &[&vgw, &cgw]);
    assert!(
        cgw.list_sas().is_empty() && vgw.list_sas().is_empty(),
        "SAs before anyone initiated"
    );
    // Routed into ipsec0 but no SA yet: nothing gets through in the clear.
    assert!(
        !t.lan.ping1(VPC_HOST),
        "{VPC_HOST} answered before the tunnel existed"
    );

    let out = cgw.initiate(CGW_CONN);
    assert!(
        out.ok(),
        "customer gateway initiate: {out}\n--- VGW log ---\n{}",
        tail(&vgw.log, 60)
    );
    let c = cgw.wait_established(Duration::from_secs(10));
    let v = vgw.wait_established(Duration::from_secs(10));
    assert!(c.initiator && !v.initiator, "customer side initiated");
    assert_eq!(v.name, VGW_CONN);
    assert_same_sa_over_nat_t(&c, &v, LAN_TO_VPC);

    ping5(&t.lan, VPC_HOST, "LAN host -> VPC host through the tunnel");
    // The pings went through these CHILD SAs (libipsec counts per SA).
    let v2 = vgw.wait_established(Duration::from_secs(5));
    let vc = v2.installed_child().unwrap();
    assert!(
        vc.packets_in >= 5 && vc.packets_out >= 5 && vc.bytes_in > 0,
        "VGW CHILD SA counters after 5+ pings: {vc:#?}"
    );
    let c2 = cgw.wait_established(Duration::from_secs(5));
    let cc = c2.installed_child().unwrap();
    assert!(
        cc.packets_out >= 5 && cc.packets_in >= 5 && cc.bytes_out > 0,
        "customer CHILD SA counters after 5+ pings: {cc:#?}"
    );

    // Tearing the IKE SA down removes it on both sides and stops traffic.
    let out = cgw.terminate_ike(CGW_CONN);
    assert!(out.ok(), "terminate: {out}");
    assert!(
        vgw.wait_no_sas(Duration::from_secs(10)),
        "VGW still lists SAs after the customer deleted its IKE SA: {:#?}",
        vgw.list_sas()
    );
    assert!(cgw.list_sas().is_empty(), "{:#?}", cgw.list_sas());
    assert!(
        !t.lan.ping1(VPC_HOST),
        "{VPC_HOST} answered after the tunnel was deleted"
    );

    // stop() is by PID and bounded; the guards remove the rest.
    let (mut vgw, mut cgw) = (vgw, cgw);
    cgw.stop();
    vgw.stop();
    assert!(!cgw.running() && !vgw.running());
    assert!(!cgw.vici.exists() && !vgw.vici.exists());
    drop(cgw);
    drop(vgw);
    drop(t);
    leftovers.assert_gone();
    eprintln!("[{test}] {:?}", t0.elapsed());
}

#[test]
fn aws_like_vgw_with_start_action_start_initiates_through_port_forwarding_nat_route_based_and_both_sides_reach_each_other(
) {
    let test = "aws_like_vgw_with_start_action_start_initiates";
    if !ready(test) {
        return;
    }
    let t0 = Instant::now();
    let t = Topology::with_vgw(0);
    // The customer side waits (start_action none) ...
    let cgw = start_cgw(&t);
    cgw.load(&SwanctlConf::one(cgw_conn(ANY_TO_ANY)));
    // ... and the VGW initiates as soon as its config is loaded (AWS's
    // startup action "start"), to the router's public address: only the
    // port forwarding of 500 and 4500 lets it reach the customer side.
    let vgw = start_vgw(&t);
    vgw.load(&SwanctlConf::one(
        vgw_conn().start_action(StartAction::Start),
    ));
    let leftovers = Leftovers::of(&t, &[&vgw, &cgw]);

    let v = vgw.wait_established(Duration::from_secs(20));
    let c = cgw.wait_established(Duration::from_secs(10));
    assert!(v.initiator && !c.initiator, "VGW side initiated");
    assert_eq!(c.name, CGW_CONN);
    assert_same_sa_over_nat_t(&c, &v, ANY_TO_ANY);

    ping5(t.vpc(), LAN_HOST, "VPC host -> LAN host through the tunnel");
    ping5(&t.lan, VPC_HOST, "LAN host -> VPC host through the tunnel");

    drop(cgw);
    drop(vgw);
    drop(t);
    leftovers.assert_gone();
    eprintln!("[{test}] {:?}", t0.elapsed());
}

#[test]
fn vgw_charon_stopped_and_restarted_in_its_namespace_serves_the_tunnel_again() {
    let test = "vgw_charon_stopped_and_restarted_in_its_namespace";
    if !ready(test) {
        return;
    }
    let t0 = Instant::now();
    let t = Topology::with_vgw(0);
    let mut vgw = start_vgw(&t);
    vgw.load(&SwanctlConf::one(vgw_conn()));
    let cgw = start_cgw(&t);
    cgw.load(&SwanctlConf::one(cgw_conn(LAN_TO_VPC)));
    let out = cgw.initiate(CGW_CONN);
    assert!(out.ok(), "first initiate: {out}");
    let first = vgw.wait_established(Duration::from_secs(10));
    ping5(&t.lan, VPC_HOST, "LAN host -> VPC host, first VGW instance");
    let out = cgw.terminate_ike(CGW_CONN);
    assert!(out.ok(), "terminate: {out}");
    assert!(vgw.wait_no_sas(Duration::from_secs(10)), "VGW kept its SA");

    // Stop by PID: the process, its VICI socket and its ipsec0 go away.
    let old_pid = vgw.pid;
    vgw.stop();
    assert!(!vgw.running(), "charon {old_pid} still runs after stop()");
    assert!(!vgw.vici.exists(), "VICI socket left after stop()");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            !t.vgw().try_ip("link show ipsec0").ok()
        }),
        "ipsec0 outlived its charon"
    );
    drop(vgw);

    // Same namespace, same directory: the pid file, socket and TUN of the
    // first instance do not get in the way, and the routes come back.
    let vgw = start_vgw(&t);
    assert_ne!(vgw.pid, old_pid);
    vgw.load(&SwanctlConf::one(vgw_conn()));
    let out = cgw.initiate(CGW_CONN);
    assert!(out.ok(), "initiate to the restarted VGW: {out}");
    let second = vgw.wait_established(Duration::from_secs(10));
    assert_ne!(
        first.initiator_spi, second.initiator_spi,
        "a new IKE SA after the restart"
    );
    ping5(&t.lan, VPC_HOST, "LAN host -> VPC host, restarted VGW");
    eprintln!("[{test}] {:?}", t0.elapsed());
}

/// The raw answer of a real `swanctl --list-sas --raw` (charon 5.9.8,
/// customer side of the first test).
const LIST_SAS_RAW: &str = "list-sa event {aws {uniqueid=1 version=2 state=ESTABLISHED \
local-host=192.168.1.2 local-port=4500 local-id=203.0.113.2 remote-host=203.0.113.130 \
remote-port=4500 remote-id=203.0.113.130 initiator=yes initiator-spi=af6ac2f0007d9a49 \
responder-spi=e7c33332f4306d28 nat-local=yes nat-remote=yes nat-any=yes encr-alg=AES_CBC \
encr-keysize=128 integ-alg=HMAC_SHA1_96 prf-alg=PRF_HMAC_SHA1 dh-group=MODP_2048 established=1 \
rekey-time=13854 child-sas {aws-1 {name=aws uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL \
protocol=ESP encap=yes spi-in=a9e2b6c1 spi-out=fbf93081 encr-alg=AES_GCM_16 encr-keysize=128 \
bytes-in=504 packets-in=6 use-in=0 bytes-out=504 packets-out=6 use-out=0 rekey-time=3278 \
life-time=3959 install-time=1 local-ts=[172.16.4.0/24] remote-ts=[10.0.0.0/16]}}}}
list-sas reply {}
";

#[test]
fn list_sas_raw_output_parses_into_ike_and_child_sa_fields() {
    let sas = IkeSa::parse_list(LIST_SAS_RAW).unwrap();
    assert_eq!(sas.len(), 1, "{sas:#?}");
    let sa = &sas[0];
    assert_eq!(sa.name, "aws");
    assert!(sa.is_up() && sa.initiator && sa.nat_local && sa.nat_t());
    assert_eq!(
        (sa.local_host.as_str(), sa.local_port),
        ("192.168.1.2", 4500)
    );
    assert_eq!(
        (sa.remote_host.as_str(), sa.remote_port),
        ("203.0.113.130", 4500)
    );
    assert_eq!(
        (sa.initiator_spi.as_str(), sa.responder_spi.as_str()),
        ("af6ac2f0007d9a49", "e7c33332f4306d28")
    );
    assert_eq!(
        (
            sa.encr_alg.as_str(),
            sa.encr_keysize,
            sa.integ_alg.as_deref(),
            sa.prf_alg.as_str(),
            sa.dh_group.as_str()
        ),
        (
            "AES_CBC",
            Some(128),
            Some("HMAC_SHA1_96"),
            "PRF_HMAC_SHA1",
            "MODP_2048"
        )
    );
    let c = sa.installed_child().unwrap();
    assert_eq!((c.name.as_str(), c.state.as_str()), ("aws", "INSTALLED"));
    assert_eq!(
        (c.spi_in.as_str(), c.spi_out.as_str()),
        ("a9e2b6c1", "fbf93081")
    );
    assert!(c.encap);
    assert_eq!(
        (c.encr_alg.as_str(), c.integ_alg.as_deref()),
        ("AES_GCM_16", None)
    );
    assert_eq!(
        (c.bytes_in, c.packets_in, c.bytes_out, c.packets_out),
        (504, 6, 504, 6)
    );
    assert_eq!(c.local_ts, vec!["172.16.4.0/24".to_string()]);
    assert_eq!(c.remote_ts, vec!["10.0.0.0/16".to_string()]);
    // no SAs: just the reply
    assert!(IkeSa::parse_list("list-sas reply {}\n").unwrap().is_empty());
    assert!(IkeSa::parse_list("list-sa event {aws {state=").is_err());
}

#[test]
fn generated_swanctl_conf_carries_aws_vgw_defaults() {
    let text = SwanctlConf::one(vgw_conn().start_action(StartAction::Start)).render();
    for line in [
        "local_addrs = 203.0.113.130",
        "remote_addrs = 203.0.113.2",
        "proposals = aes128-sha1-modp2048,aes128-aes256-sha1-sha256-sha384-sha512-modp1024",
        "rekey_time = 28530s",
        "over_time = 270s",
        "dpd_delay = 10s",
        "mobike = no",
        "local_ts = 0.0.0.0/0",
        "remote_ts = 0.0.0.0/0",
        "esp_proposals = aes128-sha1-modp2048,",
        "life_time = 3600s",
        "rekey_time = 3330s",
        "replay_window = 1024",
        "dpd_action = clear",
        "start_action = start",
        "secret = \"ipiece.harness.psk.0123456789\"",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}
