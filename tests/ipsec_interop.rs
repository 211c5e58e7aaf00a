//! ipieced's own IKEv2/ESP against strongSwan 5.9 configured as the AWS VGW
//! (tests/common/strongswan.rs, kernel-libipsec), in the network-namespace
//! topology of tests/common: ipieced in the gateway namespace behind the home
//! router that masquerades and port-forwards UDP 500, 4500 and 51821 to it,
//! the LAN host 172.16.4.10 behind the gateway, wireguard-go laptops on the
//! internet, one or two VGW namespaces on the internet and the VPC host
//! 10.0.1.10 behind them (tests/common/ipsec.rs: the second VGW reaches the
//! same VPC host over a link of its own, and the VPC host answers through the
//! VGW a request came from).
//!
//! The acceptance points of issue 3 shown here:
//! - ipieced behind the NAT initiates two tunnels (NAT-T, its public address
//!   as IKE ID), the LAN host and a WireGuard laptop reach the VPC host
//!   through tunnel 1, then through tunnel 2 once tunnel 1 is taken down;
//! - the VGW initiates (AWS's startup action "start") and ipieced responds;
//! - the proposal matrix, each case with traffic and the negotiated suite
//!   checked on both sides, and an INVALID_KE_PAYLOAD round each way;
//! - a wrong PSK: AUTHENTICATION_FAILED in log and status, retries with
//!   growing intervals, no crash, and the tunnel comes up once it is fixed;
//! - random, truncated and replayed datagrams to the public 500 and 4500 do
//!   not disturb a tunnel carrying a continuous ping.
//!
//! These tests need root (network namespaces, TUN, nftables) and strongSwan
//! with kernel-libipsec (scripts/test.sh installs it); with
//! `IPIECE_SKIP_NETNS=1` they print a skip line instead when not root.

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use serde_json::Value;
use std::fs;
use std::time::{Duration, Instant};

const PSK1: &str = "ipiece.interop.tun1.0123456789";
const PSK2: &str = "ipiece.interop.tun2.9876543210";
/// ipieced's tunnel names.
const TUN1: &str = "aws-1";
const TUN2: &str = "aws-2";
/// The VGWs' connection (and child) names.
const VGW1_CONN: &str = "aws-vgw-tun1";
const VGW2_CONN: &str = "aws-vgw-tun2";

/// How long a tunnel may take to come up (IKE_SA_INIT + IKE_AUTH, a debug
/// build doing MODP-4096).
const UP_TIMEOUT: Duration = Duration::from_secs(20);

fn ready(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    true
}

/// The topology, its charons and ipieced. Fields drop in declaration order:
/// the charons first (their list-sas is printed when a test fails), the
/// namespaces last (which kill whatever still runs in them).
struct Lab {
    vgw1: Option<Charon>,
    vgw2: Option<Charon>,
    daemon: Option<Daemon>,
    cfg: GwConfig,
    vgw2_ns: Option<Netns>,
    t: Topology,
    t0: Instant,
    test: &'static str,
}

impl Lab {
    /// The topology with `laptops` laptops and the first VGW (and the second
    /// with `two_vgws`), no charon and no ipieced yet; the gateway config
    /// made by `wgctl init --endpoint 203.0.113.2` (so its public address,
    /// the default IKE ID, is the home router's).
    fn new(test: &'static str, laptops: usize, two_vgws: bool) -> Lab {
        let t0 = Instant::now();
        let t = Topology::with_vgw(laptops);
        let vgw2_ns = two_vgws.then(|| add_second_vgw(&t));
        let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
        Lab {
            vgw1: None,
            vgw2: None,
            daemon: None,
            cfg,
            vgw2_ns,
            t,
            t0,
            test,
        }
    }

    /// charon in the first VGW namespace with `conn` loaded.
    fn start_vgw1(&mut self, conn: ConnConf) {
        let c = start_vgw_charon(&self.t, self.t.vgw(), "vgw1");
        c.load(&SwanctlConf::one(conn));
        self.vgw1 = Some(c);
    }

    /// charon in the second VGW namespace with `conn` loaded.
    fn start_vgw2(&mut self, conn: ConnConf) {
        let ns = self.vgw2_ns.as_ref().expect("lab without a second VGW");
        let c = start_vgw_charon(&self.t, ns, "vgw2");
        c.load(&SwanctlConf::one(conn));
        self.vgw2 = Some(c);
    }

    fn vgw1(&self) -> &Charon {
        self.vgw1.as_ref().expect("first VGW's charon not started")
    }

    fn vgw2(&self) -> &Charon {
        self.vgw2.as_ref().expect("second VGW's charon not started")
    }

    fn start_ipieced(&mut self, tunnels: &[TunnelSpec]) {
        write_tunnels(&self.cfg, tunnels);
        self.daemon = Some(start_ipieced_logging(
            &self.t.gw,
            &self.cfg,
            "info,ipiece=debug",
        ));
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("ipieced not started")
    }

    fn status(&self) -> Value {
        self.cfg.status_json(&self.t.gw)
    }

    fn tunnel(&self, name: &str) -> Value {
        tunnel(&self.status(), name).clone()
    }

    fn wgctl(&self, args: &[&str]) -> Out {
        self.cfg.wgctl(&self.t.gw, args)
    }

    fn wait_up(&self, name: &str) -> Value {
        wait_up(&self.cfg, &self.t.gw, self.daemon(), name, UP_TIMEOUT)
    }

    fn wait_tunnel(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_tunnel(
            &self.cfg,
            &self.t.gw,
            self.daemon(),
            name,
            timeout,
            what,
            pred,
        )
    }

    fn daemon_alive(&self) -> bool {
        self.t.gw.running(self.daemon().pid)
    }

    fn done(self) {
        assert!(
            self.daemon
                .as_ref()
                .is_none_or(|d| self.t.gw.running(d.pid)),
            "ipieced exited during the test:\n{}",
            self.daemon
                .as_ref()
                .map(|d| tail(&d.log, 80))
                .unwrap_or_default()
        );
        eprintln!("[{}] passed in {:?}", self.test, self.t0.elapsed());
    }
}

/// The ipieced side's IKE SPIs of a tunnel entry, as charon prints them.
fn ike_spis(t: &Value) -> (String, String) {
    let s = &t["ike_spis"];
    let get = |i: usize| {
        s[i].as_str()
            .unwrap_or_else(|| panic!("tunnel has no ike_spis: {t:#}"))
            .to_string()
    };
    (get(0), get(1))
}

/// The active CHILD SA's (spi_in, spi_out) of a tunnel entry.
fn child_spis(t: &Value) -> (String, String) {
    let c = active_child(t).unwrap_or_else(|| panic!("tunnel has no active CHILD SA: {t:#}"));
    (
        c["spi_in"].as_str().unwrap().to_string(),
        c["spi_out"].as_str().unwrap().to_string(),
    )
}

/// charon's IKE SA that is the same SA as ipieced's tunnel entry (same IKE
/// SPIs), established with an installed CHILD SA, within `timeout`.
fn charon_sa_of(c: &Charon, t: &Value, timeout: Duration) -> IkeSa {
    let (spi_i, spi_r) = ike_spis(t);
    c.wait_sa(
        timeout,
        &format!("with SPIs {spi_i}_i {spi_r}_r, up"),
        |sa| sa.is_up() && sa.initiator_spi == spi_i && sa.responder_spi == spi_r,
    )
}

/// Both ends agree on the CHILD SA: ipieced's inbound SPI is charon's
/// outbound one and the other way round; ESP is in UDP.
fn assert_same_child(t: &Value, sa: &IkeSa) {
    let (ours_in, ours_out) = child_spis(t);
    let c = sa
        .installed_child()
        .unwrap_or_else(|| panic!("charon has no installed CHILD SA: {sa:#?}"));
    assert_eq!(
        (ours_in.as_str(), ours_out.as_str()),
        (c.spi_out.as_str(), c.spi_in.as_str()),
        "CHILD SA SPIs differ between ipieced ({t:#}) and charon ({sa:#?})"
    );
    assert!(
        c.encap,
        "charon's CHILD SA is not UDP-encapsulated: {sa:#?}"
    );
}

/// The gateway is behind the home router: NAT-T on both sides, IKE on
/// 4500, charon sees the router's public address and the gateway's public
/// address as its IKE ID.
fn assert_nat_t_with_public_id(t: &Value, sa: &IkeSa) {
    let both = format!("ipieced: {t:#}\ncharon: {sa:#?}");
    assert_eq!(
        t["nat_t"].as_bool(),
        Some(true),
        "ipieced: no NAT-T. {both}"
    );
    assert_eq!(
        t["local_behind_nat"].as_bool(),
        Some(true),
        "ipieced does not see that it is behind the home router's NAT. {both}"
    );
    let remote: std::net::SocketAddr = t["remote"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("tunnel remote is not an address: {both}"));
    assert_eq!(remote.port(), 4500, "ipieced does not talk to 4500. {both}");
    assert_eq!(
        sa.remote_host, NAT_WAN,
        "charon should see the home router's public address. {both}"
    );
    assert_ne!(sa.remote_host, GW_ETH0, "{both}");
    assert!(
        sa.nat_remote && sa.local_port == 4500,
        "charon should have detected the NAT in front of ipieced and moved to 4500. {both}"
    );
    assert_eq!(
        sa.remote_id, NAT_WAN,
        "the gateway's IKE ID should be its public address (gateway.public_address), not {GW_ETH0}. {both}"
    );
}

/// `ns` reaches `dst`: a first answer within 5 s, then `n` echo requests
/// 100 ms apart all answered (within 10 s: see [`PingSeqs`]).
fn ping_n(ns: &Netns, dst: &str, n: u32, what: &str) {
    assert!(
        ns.ping_until(dst, Duration::from_secs(5)),
        "{what}: {dst} never answered"
    );
    let p = ping_seqs(ns, dst, n, 100, 10);
    assert!(
        p.missing(n).is_empty(),
        "{what}: echo requests {:?} of 1..={n} got no answer ({p:?})",
        p.missing(n)
    );
}

/// Packet counters of the active CHILD SA: (packets_in, packets_out).
fn pkts(t: &Value) -> (u64, u64) {
    (
        child_counter(t, "packets_in"),
        child_counter(t, "packets_out"),
    )
}

// ------------------------------------------------------------------ test 1 --

#[test]
fn ipieced_behind_nat_initiates_to_strongswan_vgw_with_nat_t_and_lan_and_laptop_reach_vpc() {
    let test =
        "ipieced_behind_nat_initiates_to_strongswan_vgw_with_nat_t_and_lan_and_laptop_reach_vpc";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(test, 1, true);
    lab.start_vgw1(ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1));
    lab.start_vgw2(ConnConf::aws_vgw(VGW2_CONN, VGW2_WAN, NAT_WAN, PSK2));
    // ipieced's default proposals and IKE ID: nothing but the AWS values.
    lab.start_ipieced(&[
        TunnelSpec::new(TUN1, VGW_WAN, PSK1).priority(100),
        TunnelSpec::new(TUN2, VGW2_WAN, PSK2).priority(200),
    ]);

    let t1 = lab.wait_up(TUN1);
    let t2 = lab.wait_up(TUN2);
    let sa1 = charon_sa_of(lab.vgw1(), &t1, Duration::from_secs(10));
    let sa2 = charon_sa_of(lab.vgw2(), &t2, Duration::from_secs(10));
    for (t, sa) in [(&t1, &sa1), (&t2, &sa2)] {
        assert!(!sa.initiator, "ipieced should have initiated: {sa:#?}");
        assert_nat_t_with_public_id(t, sa);
        assert_same_child(t, sa);
    }
    assert_eq!(sa1.local_host, VGW_WAN);
    assert_eq!(sa2.local_host, VGW2_WAN);
    let st = lab.status();
    assert_eq!(
        (
            tunnel(&st, TUN1)["carrying"].as_bool(),
            tunnel(&st, TUN2)["carrying"].as_bool()
        ),
        (Some(true), Some(false)),
        "priority 100 should carry, 200 stand by: {st:#}"
    );

    // LAN host -> VPC host through tunnel 1.
    let (in1, out1) = pkts(&lab.tunnel(TUN1));
    let (_, out2) = pkts(&lab.tunnel(TUN2));
    ping_n(&lab.t.lan, VPC_HOST, 5, "LAN host -> VPC host via aws-1");
    let (in1b, out1b) = pkts(&lab.tunnel(TUN1));
    assert!(
        in1b >= in1 + 5 && out1b >= out1 + 5,
        "aws-1 ESP counters did not grow by the 5 pings: in {in1}->{in1b}, out {out1}->{out1b}"
    );
    assert_eq!(
        pkts(&lab.tunnel(TUN2)).1,
        out2,
        "aws-2 sent packets while aws-1 carries"
    );
    let c1 = charon_sa_of(lab.vgw1(), &t1, Duration::from_secs(5));
    let cc = c1.installed_child().unwrap();
    assert!(
        cc.packets_in >= 5 && cc.packets_out >= 5,
        "VGW 1's CHILD SA did not see the pings: {cc:#?}"
    );

    // A laptop configured from `wgctl add-peer`'s file reaches the VPC host
    // through the gateway and tunnel 1.
    let conf = lab.cfg.add_peer(&lab.t.gw, "alice", &[]);
    let client = ClientConf::load(&conf);
    assert!(
        client.peer("AllowedIPs").contains(&VPC_CIDR),
        "the client file does not route the VPC:\n{}",
        client.text
    );
    let wg = start_wg_client(&lab.t.laptops[0], &conf, &lab.t.dir.path);
    let lap = &lab.t.laptops[0];
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(10)),
        "laptop never reached the gateway through WireGuard"
    );
    let (in1, out1) = pkts(&lab.tunnel(TUN1));
    ping_n(lap, VPC_HOST, 5, "WireGuard laptop -> VPC host via aws-1");
    let (in1b, out1b) = pkts(&lab.tunnel(TUN1));
    assert!(
        in1b >= in1 + 5 && out1b >= out1 + 5,
        "aws-1 ESP counters did not grow by the laptop's 5 pings: in {in1}->{in1b}, out {out1}->{out1b}"
    );
    // and the VPC host sees the laptop's own tunnel address
    ping_n(
        lab.t.vpc(),
        &wg.address(),
        3,
        "VPC host -> WireGuard laptop via aws-1",
    );

    // Tunnel 1 down: tunnel 2 carries, the same pings work.
    let out = lab.wgctl(&["tunnel", "down", TUN1]);
    assert!(out.ok(), "wgctl tunnel down {TUN1}: {out}");
    lab.wait_tunnel(TUN1, Duration::from_secs(5), "admin_down", |t| {
        state(t) == "admin_down" && t["carrying"].as_bool() == Some(false)
    });
    let t2 = lab.wait_tunnel(TUN2, Duration::from_secs(5), "carrying", |t| {
        state(t) == "up" && t["carrying"].as_bool() == Some(true)
    });
    assert!(
        lab.vgw1().wait_no_sas(Duration::from_secs(10)),
        "VGW 1 keeps its SA after `wgctl tunnel down {TUN1}` (no Delete?): {:#?}",
        lab.vgw1().list_sas()
    );
    let (in2, out2) = pkts(&t2);
    ping_n(lap, VPC_HOST, 5, "WireGuard laptop -> VPC host via aws-2");
    ping_n(&lab.t.lan, VPC_HOST, 5, "LAN host -> VPC host via aws-2");
    let t2b = lab.tunnel(TUN2);
    let (in2b, out2b) = pkts(&t2b);
    assert!(
        in2b >= in2 + 10 && out2b >= out2 + 10,
        "aws-2 ESP counters did not grow by the 10 pings: in {in2}->{in2b}, out {out2}->{out2b}: {t2b:#}"
    );
    let c2 = charon_sa_of(lab.vgw2(), &t2b, Duration::from_secs(5));
    let cc = c2.installed_child().unwrap();
    assert!(
        cc.packets_in >= 10 && cc.packets_out >= 10,
        "VGW 2's CHILD SA did not see the pings: {cc:#?}"
    );
    assert_eq!(
        lab.tunnel(TUN1)["children"].as_array().map(Vec::len),
        Some(0),
        "aws-1 is down but lists CHILD SAs"
    );

    // Tunnel 1 back up: with the better priority it carries again.
    let out = lab.wgctl(&["tunnel", "up", TUN1]);
    assert!(out.ok(), "wgctl tunnel up {TUN1}: {out}");
    let t1 = lab.wait_tunnel(TUN1, UP_TIMEOUT, "up and carrying", |t| {
        state(t) == "up" && t["carrying"].as_bool() == Some(true)
    });
    charon_sa_of(lab.vgw1(), &t1, Duration::from_secs(10));
    let (in1, out1) = pkts(&t1);
    ping_n(
        lap,
        VPC_HOST,
        3,
        "WireGuard laptop -> VPC host via aws-1 again",
    );
    let (in1b, out1b) = pkts(&lab.tunnel(TUN1));
    assert!(
        in1b >= in1 + 3 && out1b >= out1 + 3,
        "aws-1 did not carry again after `tunnel up`: in {in1}->{in1b}, out {out1}->{out1b}"
    );
    lab.done();
}

// ------------------------------------------------------------------ test 2 --

#[test]
fn strongswan_vgw_initiates_and_ipieced_responds() {
    let test = "strongswan_vgw_initiates_and_ipieced_responds";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(test, 0, false);
    lab.start_ipieced(&[TunnelSpec::new(TUN1, VGW_WAN, PSK1).start_action("wait")]);
    // ipieced waits: nothing is sent, nothing comes up on its own.
    let t = lab.tunnel(TUN1);
    assert_eq!(state(&t), "down", "a waiting tunnel: {t:#}");

    // The VGW initiates as soon as its config is loaded (AWS "start"), to
    // the home router's public address: only the port forwarding lets it in.
    lab.start_vgw1(
        ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1).start_action(StartAction::Start),
    );
    let v = lab.vgw1().wait_established(UP_TIMEOUT);
    assert!(v.initiator, "the VGW should have initiated: {v:#?}");
    let t = lab.wait_up(TUN1);
    let sa = charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));
    assert_eq!(sa.remote_host, NAT_WAN, "{sa:#?}");
    assert_eq!(
        sa.remote_id, NAT_WAN,
        "ipieced as responder should present its public address as IKE ID: {sa:#?}"
    );
    assert_eq!(t["nat_t"].as_bool(), Some(true), "{t:#}");
    assert_same_child(&t, &sa);

    let (i0, o0) = pkts(&t);
    ping_n(lab.t.vpc(), LAN_HOST, 5, "VPC host -> LAN host");
    ping_n(&lab.t.lan, VPC_HOST, 5, "LAN host -> VPC host");
    let (i1, o1) = pkts(&lab.tunnel(TUN1));
    assert!(
        i1 >= i0 + 10 && o1 >= o0 + 10,
        "ESP counters did not grow by the 10 pings each way: in {i0}->{i1}, out {o0}->{o1}"
    );
    lab.done();
}

// ------------------------------------------------------------------ test 3 --

/// One case of the proposal matrix: what ipieced is configured with and
/// what both sides must report.
struct Case {
    ike: &'static str,
    esp: &'static str,
    /// charon's IKE SA: encr, key size, integ, prf, dh.
    ike_charon: (
        &'static str,
        u32,
        Option<&'static str>,
        &'static str,
        &'static str,
    ),
    /// charon's CHILD SA: encr, key size, integ.
    esp_charon: (&'static str, u32, Option<&'static str>),
    /// ipieced's `ike_suite` and CHILD SA `suite` (the first CHILD SA has
    /// no PFS group: it is keyed from the IKE SA).
    ipieced: (&'static str, &'static str),
}

const MATRIX: &[Case] = &[
    Case {
        ike: "aes128-sha1-modp2048",
        esp: "aes128-sha1-modp2048",
        ike_charon: (
            "AES_CBC",
            128,
            Some("HMAC_SHA1_96"),
            "PRF_HMAC_SHA1",
            "MODP_2048",
        ),
        esp_charon: ("AES_CBC", 128, Some("HMAC_SHA1_96")),
        ipieced: ("aes128-sha1-modp2048", "aes128-sha1"),
    },
    Case {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
        ike_charon: (
            "AES_CBC",
            256,
            Some("HMAC_SHA2_256_128"),
            "PRF_HMAC_SHA2_256",
            "MODP_2048",
        ),
        esp_charon: ("AES_CBC", 256, Some("HMAC_SHA2_256_128")),
        ipieced: ("aes256-sha256-modp2048", "aes256-sha256"),
    },
    Case {
        ike: "aes128-sha256-ecp256",
        esp: "aes128-sha256-ecp256",
        ike_charon: (
            "AES_CBC",
            128,
            Some("HMAC_SHA2_256_128"),
            "PRF_HMAC_SHA2_256",
            "ECP_256",
        ),
        esp_charon: ("AES_CBC", 128, Some("HMAC_SHA2_256_128")),
        ipieced: ("aes128-sha256-ecp256", "aes128-sha256"),
    },
    Case {
        ike: "aes128gcm16-prfsha256-ecp256",
        esp: "aes128gcm16-ecp256",
        ike_charon: ("AES_GCM_16", 128, None, "PRF_HMAC_SHA2_256", "ECP_256"),
        esp_charon: ("AES_GCM_16", 128, None),
        ipieced: ("aes128gcm16-prfsha256-ecp256", "aes128gcm16"),
    },
    Case {
        ike: "aes256gcm16-prfsha384-ecp384",
        esp: "aes256gcm16-ecp384",
        ike_charon: ("AES_GCM_16", 256, None, "PRF_HMAC_SHA2_384", "ECP_384"),
        esp_charon: ("AES_GCM_16", 256, None),
        ipieced: ("aes256gcm16-prfsha384-ecp384", "aes256gcm16"),
    },
    Case {
        ike: "aes256-sha512-modp4096",
        esp: "aes256-sha512-modp4096",
        ike_charon: (
            "AES_CBC",
            256,
            Some("HMAC_SHA2_512_256"),
            "PRF_HMAC_SHA2_512",
            "MODP_4096",
        ),
        esp_charon: ("AES_CBC", 256, Some("HMAC_SHA2_512_256")),
        ipieced: ("aes256-sha512-modp4096", "aes256-sha512"),
    },
];

/// Checks one established case on both sides and sends traffic through it.
/// Returns an error text instead of panicking, so that the loop can name
/// the case.
fn check_case(lab: &Lab, case: &Case, t: &Value) -> Result<(), String> {
    let sa = charon_sa_of(lab.vgw1(), t, Duration::from_secs(10));
    let both = format!("ipieced: {t:#}\ncharon: {sa:#?}");
    let (encr, ks, integ, prf, dh) = case.ike_charon;
    let got = (
        sa.encr_alg.as_str(),
        sa.encr_keysize.unwrap_or(0),
        sa.integ_alg.as_deref(),
        sa.prf_alg.as_str(),
        sa.dh_group.as_str(),
    );
    if got != (encr, ks, integ, prf, dh) {
        return Err(format!(
            "charon's IKE SA: {got:?}, expected {:?}\n{both}",
            case.ike_charon
        ));
    }
    let c = sa
        .installed_child()
        .ok_or(format!("no CHILD SA at charon\n{both}"))?;
    let got = (
        c.encr_alg.as_str(),
        c.encr_keysize.unwrap_or(0),
        c.integ_alg.as_deref(),
    );
    if got != case.esp_charon {
        return Err(format!(
            "charon's CHILD SA: {got:?}, expected {:?}\n{both}",
            case.esp_charon
        ));
    }
    let ike_suite = t["ike_suite"].as_str().unwrap_or("<none>");
    let child_suite = active_child(t)
        .and_then(|c| c["suite"].as_str())
        .unwrap_or("<none>");
    if (ike_suite, child_suite) != case.ipieced {
        return Err(format!(
            "ipieced reports ike_suite {ike_suite:?} and CHILD suite {child_suite:?}, expected {:?}\n{both}",
            case.ipieced
        ));
    }
    assert_same_child(t, &sa);
    let (i0, o0) = pkts(t);
    if !lab.t.lan.ping_until(VPC_HOST, Duration::from_secs(5)) {
        return Err(format!("LAN host -> VPC host: no answer\n{both}"));
    }
    let p = ping_seqs(&lab.t.lan, VPC_HOST, 3, 100, 10);
    if !p.missing(3).is_empty() {
        return Err(format!(
            "LAN host -> VPC host: no answer to {:?} ({p:?})\n{both}",
            p.missing(3)
        ));
    }
    let t2 = lab.tunnel(TUN1);
    let (i1, o1) = pkts(&t2);
    if child_spis(&t2) != child_spis(t) || i1 < i0 + 3 || o1 < o0 + 3 {
        return Err(format!(
            "the pings did not go through this CHILD SA: in {i0}->{i1}, out {o0}->{o1}\nbefore: {t:#}\nafter: {t2:#}"
        ));
    }
    let sa2 = charon_sa_of(lab.vgw1(), t, Duration::from_secs(5));
    let c2 = sa2.installed_child().unwrap();
    if c2.packets_in < 3 || c2.packets_out < 3 {
        return Err(format!(
            "charon's CHILD SA did not count the pings: {c2:#?}"
        ));
    }
    Ok(())
}

#[test]
fn proposal_matrix_against_strongswan() {
    let test = "proposal_matrix_against_strongswan";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(test, 0, false);
    // The VGW keeps AWS's full default proposal sets: ipieced's single
    // proposal decides.
    lab.start_vgw1(ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1));
    let spec = |c: &Case| TunnelSpec::new(TUN1, VGW_WAN, PSK1).proposals(c.ike, c.esp);
    lab.start_ipieced(&[spec(&MATRIX[0])]);
    let mut failures = Vec::new();
    let mut prev_spis: Option<(String, String)> = None;
    for (k, case) in MATRIX.iter().enumerate() {
        let t_case = Instant::now();
        eprintln!("[{test}] case {}: {} / {}", k + 1, case.ike, case.esp);
        if k > 0 {
            // Same topology, same charon: the changed tunnel is deleted and
            // started again with the new proposals.
            write_tunnels(&lab.cfg, &[spec(case)]);
            let out = reload(&lab.cfg, &lab.t.gw);
            assert!(
                out.stdout.contains(TUN1),
                "case {}: `wgctl reload` did not restart {TUN1}: {out}",
                case.ike
            );
        }
        let prev = prev_spis.clone();
        let t = lab.wait_tunnel(
            TUN1,
            UP_TIMEOUT,
            &format!("up with the {} SA", case.ike),
            |t| {
                state(t) == "up"
                    && active_child(t).is_some()
                    && t["ike_spis"].is_array()
                    && prev.as_ref() != Some(&ike_spis(t))
            },
        );
        prev_spis = Some(ike_spis(&t));
        match check_case(&lab, case, &t) {
            Ok(()) => eprintln!(
                "[{test}] {} / {}: ok in {:?}",
                case.ike,
                case.esp,
                t_case.elapsed()
            ),
            Err(e) => {
                eprintln!("[{test}] {} / {}: FAILED: {e}", case.ike, case.esp);
                failures.push(format!("{} / {}: {e}", case.ike, case.esp));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} proposal cases failed:\n{}",
        failures.len(),
        MATRIX.len(),
        failures.join("\n\n")
    );
    lab.done();
}

#[test]
fn invalid_ke_payload_round_in_each_direction() {
    let test = "invalid_ke_payload_round_in_each_direction";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(test, 0, false);
    // (a) ipieced initiates, its KE for its first proposal's group (P-256),
    // while the VGW only accepts MODP-2048: the VGW answers
    // INVALID_KE_PAYLOAD and ipieced starts again with MODP-2048.
    let vgw_modp = ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1)
        .ike_proposals(&["aes128-sha256-modp2048"]);
    lab.start_vgw1(vgw_modp);
    lab.start_ipieced(&[TunnelSpec::new(TUN1, VGW_WAN, PSK1).proposals(
        "aes128-sha256-ecp256,aes128-sha256-modp2048",
        "aes128-sha256",
    )]);
    let t = lab.wait_up(TUN1);
    let sa = charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));
    let log = lab.vgw1().log_text();
    assert!(
        log.contains("DH group ECP_256 unacceptable, requesting MODP_2048")
            && log.contains("generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]"),
        "(a) charon did not answer ipieced's P-256 KE with INVALID_KE_PAYLOAD:\n{log}"
    );
    assert!(!sa.initiator, "(a) ipieced initiated: {sa:#?}");
    assert_eq!(sa.dh_group, "MODP_2048", "(a) charon's IKE SA: {sa:#?}");
    assert_eq!(
        t["ike_suite"].as_str(),
        Some("aes128-sha256-modp2048"),
        "(a) ipieced's IKE SA: {t:#}"
    );
    assert!(
        lab.daemon().log_text().contains("INVALID_KE"),
        "(a) ipieced's log does not mention the INVALID_KE_PAYLOAD it got:\n{}",
        tail(&lab.daemon().log, 60)
    );
    ping_n(&lab.t.lan, VPC_HOST, 3, "(a) LAN host -> VPC host");

    // (b) the VGW initiates with a P-256 KE, ipieced only accepts
    // MODP-2048: ipieced answers INVALID_KE_PAYLOAD and charon starts again.
    write_tunnels(
        &lab.cfg,
        &[TunnelSpec::new(TUN1, VGW_WAN, PSK1)
            .proposals("aes128-sha256-modp2048", "aes128-sha256")
            .start_action("wait")],
    );
    reload(&lab.cfg, &lab.t.gw);
    assert!(
        lab.vgw1().wait_no_sas(Duration::from_secs(10)),
        "(b) the SA of (a) was not deleted on reload: {:#?}",
        lab.vgw1().list_sas()
    );
    let from = lab.vgw1().log_text().len();
    lab.vgw1().load(&SwanctlConf::one(
        ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1)
            .ike_proposals(&["aes128-sha256-ecp256", "aes128-sha256-modp2048"]),
    ));
    let out = lab.vgw1().initiate(VGW1_CONN);
    assert!(
        out.ok(),
        "(b) charon's initiate failed: {out}\n--- ipieced ---\n{}",
        tail(&lab.daemon().log, 40)
    );
    let t = lab.wait_up(TUN1);
    let sa = charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));
    let full = lab.vgw1().log_text();
    let log = since(&full, from);
    assert!(
        log.contains("parsed IKE_SA_INIT response 0 [ N(INVAL_KE) ]")
            && log.contains("peer didn't accept DH group ECP_256, it requested MODP_2048"),
        "(b) charon did not receive INVALID_KE_PAYLOAD(MODP_2048) from ipieced:\n{log}"
    );
    assert!(sa.initiator, "(b) charon initiated: {sa:#?}");
    assert_eq!(sa.dh_group, "MODP_2048", "(b) charon's IKE SA: {sa:#?}");
    assert_eq!(
        t["ike_suite"].as_str(),
        Some("aes128-sha256-modp2048"),
        "(b) ipieced's IKE SA: {t:#}"
    );
    ping_n(&lab.t.lan, VPC_HOST, 3, "(b) LAN host -> VPC host");
    lab.done();
}

// ------------------------------------------------------------------ test 4 --

#[test]
fn wrong_psk_gives_authentication_failed_retries_with_backoff_and_no_crash() {
    let test = "wrong_psk_gives_authentication_failed_retries_with_backoff_and_no_crash";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(test, 0, false);
    lab.start_vgw1(ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1));
    let wrong = "ipiece.interop.WRONG.psk.000";
    let log_from = lab.vgw1().log_text().len();
    // One proposal the VGW takes as it is: one IKE_SA_INIT per attempt.
    lab.start_ipieced(&[
        TunnelSpec::new(TUN1, VGW_WAN, wrong).proposals("aes128-sha256-modp2048", "aes128-sha256")
    ]);

    // Watch charon's log for ipieced's IKE_SA_INIT requests, noting when
    // each attempt shows up, for at most 16 s or until 4 attempts. An
    // attempt is an IKE_SA_INIT request that charon did not answer with
    // INVALID_KE_PAYLOAD (a retry in another group belongs to the same
    // attempt; ipieced's retransmissions of one request would be answered
    // from charon's cache without a new "parsed" line).
    let attempts = |log: &str| {
        log.matches("parsed IKE_SA_INIT request 0")
            .count()
            .saturating_sub(
                log.matches("generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]")
                    .count(),
            )
    };
    let start = Instant::now();
    let mut seen: Vec<Duration> = Vec::new();
    let mut status_error: Option<String> = None;
    wait_until(Duration::from_secs(16), Duration::from_millis(50), || {
        let full = lab.vgw1().log_text();
        let n = attempts(since(&full, log_from));
        while seen.len() < n {
            seen.push(start.elapsed());
        }
        if status_error.is_none() {
            let t = lab.tunnel(TUN1);
            if let Some(e) = t["last_error"].as_str() {
                status_error = Some(e.to_string());
            }
        }
        !lab.daemon_alive() || seen.len() >= 4
    });
    assert!(lab.daemon_alive(), "ipieced died on a wrong PSK");
    let vlog = lab.vgw1().log_text();
    let vlog = since(&vlog, log_from);
    assert!(
        vlog.contains("MAC mismatched") && vlog.contains("N(AUTH_FAILED)"),
        "charon did not refuse ipieced's AUTH with AUTHENTICATION_FAILED:\n{vlog}"
    );
    let dlog = lab.daemon().log_text();
    assert!(
        dlog.contains("AUTHENTICATION_FAILED"),
        "ipieced's log does not name AUTHENTICATION_FAILED:\n{}",
        tail(&lab.daemon().log, 60)
    );
    let t = lab.tunnel(TUN1);
    assert_ne!(state(&t), "up", "up with a wrong PSK?! {t:#}");
    let err = status_error.unwrap_or_default().to_lowercase();
    let now_err = t["last_error"].as_str().unwrap_or("").to_lowercase();
    eprintln!("[{test}] status last_error: first {err:?}, now {now_err:?}");
    for e in [&err, &now_err] {
        assert!(
            e.contains("authentication_failed"),
            "wgctl status last_error should show an authentication failure: first seen {err:?}, now {now_err:?}\n{t:#}"
        );
    }
    // Retries with backoff: at least 3 attempts in the window, each
    // interval clearly longer than the one before.
    assert!(
        seen.len() >= 3,
        "only {} IKE_SA_INIT attempt(s) reached charon in {:?} (at {seen:?}):\n{vlog}",
        seen.len(),
        start.elapsed()
    );
    let intervals: Vec<f64> = seen
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    eprintln!("[{test}] attempts at {seen:?}, intervals {intervals:?}");
    assert!(
        intervals[0] >= 1.0,
        "retried after {:.2} s: no backoff ({seen:?})",
        intervals[0]
    );
    for w in intervals.windows(2) {
        assert!(
            w[1] > w[0] * 1.4,
            "retry intervals do not grow: {intervals:?} (attempts at {seen:?})"
        );
    }

    // The right PSK and a reload: the tunnel comes up, the error is gone.
    write_psk(&lab.cfg, TUN1, PSK1);
    let out = reload(&lab.cfg, &lab.t.gw);
    assert!(
        out.stdout.contains(TUN1),
        "`wgctl reload` after the PSK changed did not restart {TUN1}: {out}"
    );
    let t = lab.wait_up(TUN1);
    assert!(
        t["last_error"].is_null(),
        "last_error kept after the tunnel came up: {t:#}"
    );
    charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));
    ping_n(
        &lab.t.lan,
        VPC_HOST,
        3,
        "LAN host -> VPC host after the PSK fix",
    );
    lab.done();
}

// ------------------------------------------------------------------ test 5 --

/// What a burst of hostile datagrams contained.
#[derive(Debug, Default)]
struct Sent {
    random: usize,
    truncated: usize,
    replayed_other: usize,
    replayed_esp_in: usize,
    forged_esp: usize,
    total: usize,
}

impl Sent {
    fn add(&mut self, o: &Sent) {
        self.random += o.random;
        self.truncated += o.truncated;
        self.replayed_other += o.replayed_other;
        self.replayed_esp_in += o.replayed_esp_in;
        self.forged_esp += o.forged_esp;
        self.total += o.total;
    }
}

/// Sends random, truncated and replayed datagrams from `sock` to the
/// gateway's public 500 and 4500, paced so that no socket buffer overflows.
/// `captured` are the real datagrams seen on the home router's WAN side;
/// `spi_in` is ipieced's inbound SPI (forged ESP with it must fail the ICV).
fn hostile_burst(
    sock: &std::net::UdpSocket,
    rng: &mut Rng,
    captured: &[Datagram],
    spi_in: u32,
) -> Sent {
    let p500: std::net::SocketAddr = format!("{NAT_WAN}:500").parse().unwrap();
    let p4500: std::net::SocketAddr = format!("{NAT_WAN}:4500").parse().unwrap();
    let mut sent = Sent::default();
    let send = |to: std::net::SocketAddr, b: &[u8], sent: &mut Sent| {
        // an unreachable error from an earlier datagram is no failure here
        let _ = sock.send_to(b, to);
        sent.total += 1;
        std::thread::sleep(Duration::from_micros(500));
    };
    // random bytes of random length, to both ports
    for i in 0..200 {
        let mut b = vec![0u8; rng.below(1400) as usize + 1];
        rng.fill(&mut b);
        if i % 4 == 0 {
            // as IKE behind the non-ESP marker on 4500
            let n = b.len().min(4);
            b[..n].fill(0);
        }
        send(if i % 2 == 0 { p500 } else { p4500 }, &b, &mut sent);
        sent.random += 1;
    }
    // NAT keepalives and tiny datagrams
    for b in [&[0xffu8][..], &[0u8][..], &[0, 0, 0, 0][..], &[][..]] {
        send(p4500, b, &mut sent);
        send(p500, b, &mut sent);
    }
    // every captured datagram replayed to the port it was seen on, and
    // truncated at a few random points
    for d in captured {
        let to = if d.dst.port() == 500 || d.src.port() == 500 {
            p500
        } else {
            p4500
        };
        let inbound_esp = d.dst.ip().to_string() == NAT_WAN
            && to == p4500
            && d.payload.len() > 8
            && d.payload[..4] != [0, 0, 0, 0]
            && u32::from_be_bytes(d.payload[..4].try_into().unwrap()) == spi_in;
        for _ in 0..2 {
            send(to, &d.payload, &mut sent);
            if inbound_esp {
                sent.replayed_esp_in += 1;
            } else {
                sent.replayed_other += 1;
            }
        }
        for _ in 0..3 {
            if d.payload.len() > 1 {
                let cut = rng.below(d.payload.len() as u64 - 1) as usize + 1;
                send(to, &d.payload[..cut], &mut sent);
                sent.truncated += 1;
            }
        }
    }
    // ESP with ipieced's real inbound SPI, fresh sequence numbers and a
    // random body: must fail the integrity check
    for k in 0..100u32 {
        let mut b = vec![0u8; 8 + 16 + 64 + rng.below(200) as usize];
        rng.fill(&mut b);
        b[..4].copy_from_slice(&spi_in.to_be_bytes());
        b[4..8].copy_from_slice(&(1_000_000 + k).to_be_bytes());
        send(p4500, &b, &mut sent);
        sent.forged_esp += 1;
    }
    sent
}

#[test]
fn hostile_datagrams_to_500_and_4500_do_not_disturb_the_tunnel() {
    let test = "hostile_datagrams_to_500_and_4500_do_not_disturb_the_tunnel";
    if !ready(test) {
        return;
    }
    let mut rng = Rng::new(test);
    let mut lab = Lab::new(test, 1, false);
    lab.start_vgw1(ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1));
    // Capture the real exchange on the home router's WAN side: IKE_SA_INIT
    // on 500, IKE_AUTH and ESP on 4500.
    let cap = Capture::start(&lab.t.nat, "wan", &lab.t.dir.path, "wan");
    lab.start_ipieced(&[TunnelSpec::new(TUN1, VGW_WAN, PSK1)]);
    lab.wait_up(TUN1);
    ping_n(
        &lab.t.lan,
        VPC_HOST,
        5,
        "LAN host -> VPC host before the burst",
    );
    let captured = cap.stop(&lab.t.nat);
    let n_ike = captured
        .iter()
        .filter(|d| d.dst.port() == 500 || d.src.port() == 500)
        .count();
    assert!(
        n_ike >= 2 && captured.len() >= 10,
        "the capture should hold IKE_SA_INIT and ESP datagrams: {} datagrams, {n_ike} on 500",
        captured.len()
    );

    let t = lab.tunnel(TUN1);
    let ike0 = ike_spis(&t);
    let child0 = child_spis(&t);
    let spi_in = u32::from_str_radix(&child0.0, 16).unwrap();
    let c0 = active_child(&t).unwrap()["counters"].clone();
    let sa0 = charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));
    let log_from = lab.daemon().log_text().len();

    // A continuous ping LAN -> VPC while the burst runs.
    let plog = lab.t.dir.join("hostile-ping.log");
    let ppid = lab.t.lan.spawn(
        "ping",
        "ping",
        &["-n", "-i", "0.1", "-w", "8", VPC_HOST],
        &[],
        &plog,
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            fs::read_to_string(&plog)
                .map(|s| s.matches("bytes from").count() >= 3)
                .unwrap_or(false)
        }),
        "background ping got no replies:\n{}",
        tail(&plog, 20)
    );
    // From a host on the internet, and from the VGW's own address on
    // another port (no spoofing: its namespace, an ordinary socket).
    let from_inet = lab.t.laptops[0].udp_socket("0.0.0.0:0");
    let from_vgw = lab.t.vgw().udp_socket(&format!("{VGW_WAN}:40000"));
    // Bursts from both sources, one after the other, until the ping ends.
    let mut s1 = Sent::default();
    let mut s2 = Sent::default();
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = lab.t.lan.wait_exit(ppid, Duration::ZERO) {
            break st;
        }
        assert!(Instant::now() < deadline, "background ping did not finish");
        s1.add(&hostile_burst(&from_inet, &mut rng, &captured, spi_in));
        s2.add(&hostile_burst(&from_vgw, &mut rng, &captured, spi_in));
        rounds += 1;
    };
    eprintln!(
        "[{test}] {rounds} rounds; sent from the internet: {s1:?}; from the VGW's address: {s2:?}"
    );
    // The last half second of requests may have been cut by the deadline.
    let ping = PingSeqs::parse(&fs::read_to_string(&plog).unwrap(), &tail(&plog, 20));
    let judged = ping.transmitted.saturating_sub(5);
    let lost = ping.missing(judged);
    eprintln!(
        "[{test}] ping during the burst: {} sent, {} answered, unanswered among 1..={judged}: {lost:?} ({status})",
        ping.transmitted,
        ping.answered.len()
    );

    assert!(
        lab.daemon_alive(),
        "ipieced died under the hostile datagrams:\n{}",
        tail(&lab.daemon().log, 80)
    );
    assert!(
        judged >= 60 && lost.len() <= 1,
        "the ping lost {lost:?} of 1..={judged} during the burst"
    );
    let t = lab.tunnel(TUN1);
    assert_eq!(state(&t), "up", "{t:#}");
    assert_eq!(
        ike_spis(&t),
        ike0,
        "the IKE SA changed under the burst: {t:#}"
    );
    assert_eq!(
        child_spis(&t),
        child0,
        "the CHILD SA changed under the burst: {t:#}"
    );
    assert_eq!(
        t["children"].as_array().map(Vec::len),
        Some(1),
        "extra CHILD SAs after the burst: {t:#}"
    );
    let c1 = active_child(&t).unwrap()["counters"].clone();
    let delta = |k: &str| json_u64(&c1, k) - json_u64(&c0, k);
    let forged = (s1.forged_esp + s2.forged_esp) as u64;
    let replays = (s1.replayed_esp_in + s2.replayed_esp_in) as u64;
    assert!(
        delta("integrity_failed") >= forged,
        "{forged} forged ESP datagrams with the real SPI, but integrity_failed grew by {}: {c0} -> {c1}",
        delta("integrity_failed")
    );
    assert!(
        replays > 0 && delta("replayed") >= replays,
        "{replays} replayed inbound ESP datagrams, but replayed grew by {}: {c0} -> {c1}",
        delta("replayed")
    );
    assert!(
        delta("packets_in") >= judged as u64 - lost.len() as u64
            && delta("packets_in") <= ping.transmitted as u64,
        "packets_in grew by {} for {} ping replies: garbage was counted as traffic? {c0} -> {c1}",
        delta("packets_in"),
        ping.answered.len()
    );
    // Nothing answers the unknown host (no reflection, no half-open SA).
    let drain = |sock: &std::net::UdpSocket| {
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while let Ok((_, _)) = sock.recv_from(&mut buf) {
            n += 1;
        }
        n
    };
    let answers_inet = drain(&from_inet);
    let answers_vgw = drain(&from_vgw);
    eprintln!(
        "[{test}] datagrams back: to the internet host {answers_inet}, to the VGW's port 40000 {answers_vgw}"
    );
    assert_eq!(
        answers_inet, 0,
        "ipieced answered datagrams from a host no tunnel is configured for"
    );
    let dlog = lab.daemon().log_text();
    assert!(
        since(&dlog, log_from).contains("IKE message from an address no tunnel is configured for"),
        "ipieced's log does not show IKE from the unknown host being dropped:\n{}",
        tail(&lab.daemon().log, 60)
    );
    // charon still has the same SA, and nothing else
    let sas = lab.vgw1().list_sas();
    assert_eq!(sas.len(), 1, "charon's SAs after the burst: {sas:#?}");
    assert_eq!(
        (sas[0].initiator_spi.as_str(), sas[0].responder_spi.as_str()),
        (sa0.initiator_spi.as_str(), sa0.responder_spi.as_str()),
        "charon's IKE SA changed: {sas:#?}"
    );
    ping_n(
        &lab.t.lan,
        VPC_HOST,
        3,
        "LAN host -> VPC host after the burst",
    );
    lab.done();
}

/// An IKE_SA_INIT request from the peer's own address (another source port,
/// no spoofing: an ordinary socket in the VGW's namespace) with a fresh
/// initiator SPI: a real IKE_SA_INIT seen on the wire, its SPI changed. It
/// is unauthenticated, so the established IKE SA and its CHILD SA must stay
/// (RFC 7296: state changes only on authenticated messages; a restarted
/// peer's new SA replaces the old one once it has authenticated, with
/// INITIAL_CONTACT), and the ping through the tunnel must go on.
#[test]
fn unauthenticated_ike_sa_init_from_the_vgw_address_does_not_tear_down_the_tunnel() {
    let test = "unauthenticated_ike_sa_init_from_the_vgw_address_does_not_tear_down_the_tunnel";
    if !ready(test) {
        return;
    }
    let mut rng = Rng::new(test);
    let mut lab = Lab::new(test, 0, false);
    lab.start_vgw1(ConnConf::aws_vgw(VGW1_CONN, VGW_WAN, NAT_WAN, PSK1));
    let cap = Capture::start(&lab.t.nat, "wan", &lab.t.dir.path, "wan");
    lab.start_ipieced(&[TunnelSpec::new(TUN1, VGW_WAN, PSK1)]);
    lab.wait_up(TUN1);
    ping_n(&lab.t.lan, VPC_HOST, 3, "LAN host -> VPC host before");
    let captured = cap.stop(&lab.t.nat);
    // ipieced's IKE_SA_INIT request as it left the home router: exchange
    // type 34, flags without the response bit, responder SPI zero.
    let init = captured
        .iter()
        .find(|d| {
            let p = &d.payload;
            d.dst.port() == 500
                && p.len() > 28
                && p[18] == 34
                && p[19] & 0x20 == 0
                && p[8..16] == [0; 8]
        })
        .unwrap_or_else(|| panic!("no IKE_SA_INIT request in the capture: {captured:#?}"))
        .payload
        .clone();
    let t = lab.tunnel(TUN1);
    let ike0 = ike_spis(&t);
    let child0 = child_spis(&t);
    let sa0 = charon_sa_of(lab.vgw1(), &t, Duration::from_secs(5));

    let plog = lab.t.dir.join("init-ping.log");
    let ppid = lab.t.lan.spawn(
        "ping",
        "ping",
        &["-n", "-i", "0.1", "-w", "4", VPC_HOST],
        &[],
        &plog,
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            fs::read_to_string(&plog)
                .map(|s| s.matches("bytes from").count() >= 3)
                .unwrap_or(false)
        }),
        "background ping got no replies:\n{}",
        tail(&plog, 20)
    );
    let sock = lab.t.vgw().udp_socket(&format!("{VGW_WAN}:40001"));
    let mut forged = init.clone();
    let mut spi = [0u8; 8];
    rng.fill(&mut spi);
    spi[0] |= 1;
    forged[..8].copy_from_slice(&spi);
    sock.send_to(&forged, format!("{NAT_WAN}:500")).unwrap();
    let status = lab
        .t
        .lan
        .wait_exit(ppid, Duration::from_secs(15))
        .expect("background ping did not finish");
    let ping = PingSeqs::parse(&fs::read_to_string(&plog).unwrap(), &tail(&plog, 20));
    let judged = ping.transmitted.saturating_sub(5);
    eprintln!("[{test}] ping: {ping:?} ({status})");
    assert!(lab.daemon_alive(), "ipieced died");
    let t = lab.tunnel(TUN1);
    let sas = lab.vgw1().list_sas();
    let gone = ping.missing(judged).len();
    assert!(
        gone <= 1 && ike_spis(&t) == ike0 && child_spis_opt(&t) == Some(child0.clone()),
        "one unauthenticated IKE_SA_INIT (initiator SPI {}) from {VGW_WAN}:40001 disturbed the tunnel: \
         ping lost {gone} of the first {}; IKE SPIs {ike0:?} -> {:?}; CHILD SPIs {child0:?} -> {:?}\n\
         charon's SAs: {sas:#?}\n--- ipieced log ---\n{}",
        hex(&spi),
        judged,
        t["ike_spis"],
        child_spis_opt(&t),
        tail(&lab.daemon().log, 30)
    );
    assert_eq!(
        (sas.len(), sas[0].initiator_spi.as_str()),
        (1, sa0.initiator_spi.as_str()),
        "charon's SA changed: {sas:#?}"
    );
    lab.done();
}

/// [`child_spis`] without panicking when there is no active CHILD SA.
fn child_spis_opt(t: &Value) -> Option<(String, String)> {
    active_child(t).map(|_| child_spis(t))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
