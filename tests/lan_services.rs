//! The LAN services (issue 12, item 1) against real software in network
//! namespaces: ipieced runs dnsmasq, DHCP clients are busybox's udhcpc, the
//! laptops are wireguard-go configured from `wgctl add-peer`'s files, names
//! are looked up with `dig`, the VPC's resolver stand-in is a second dnsmasq
//! behind strongSwan as the AWS VGW.
//!
//! The gateway's LAN is a bridge `brlan` (172.16.4.1/24) in the gateway
//! namespace: the topology's LAN host hangs on it, and so does each DHCP
//! client namespace this file adds.
//!
//! Acceptance points shown here:
//! - a DHCP client gets an address in the range, the gateway as router and
//!   DNS server and the domain; a static mapping gets its fixed address;
//!   both are listed by `wgctl leases`; their names resolve from a laptop
//!   through the gateway;
//! - a laptop resolves another laptop as `<peer>.vpn.<domain>`; a laptop
//!   added, disabled or enabled later is named or unnamed without a
//!   restart of dnsmasq (same PID);
//! - a `[[dns.forward]]` domain is answered by a resolver in the VPC,
//!   through the IPsec tunnel;
//! - the WAN gets no DNS and no DHCP answer, and dnsmasq listens on the LAN
//!   and WireGuard addresses only;
//! - a DHCP option change restarts dnsmasq (a peer change does not);
//! - dnsmasq killed: restarted, the restart and the reason in `wgctl status`
//!   (text and JSON);
//! - dnsmasq missing: ipieced refuses to start and names the package, and
//!   `wgctl check` warns.
//!
//! They need root, busybox, dnsmasq and dig (scripts/test.sh installs them).

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The local domain of the tests.
const DOMAIN: &str = "lab.internal";
/// The static mapping's MAC, address and name.
const FIXED_MAC: &str = "52:54:00:00:00:0a";
const FIXED_ADDR: &str = "172.16.4.20";
const FIXED_NAME: &str = "build-vm";
/// The host name the dynamic client sends.
const DYN_NAME: &str = "team-vm";
/// The gateway's LAN address.
const GW_LAN: &str = "172.16.4.1";
/// The VPC resolver stand-in's record.
const VPC_RECORD: (&str, &str) = ("db.ec2.internal", "10.0.1.20");

/// How long DHCP, DNS and restarts may take on a loaded machine.
const SLOW: Duration = Duration::from_secs(30);

fn ready(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    for (prog, pkg) in [
        ("busybox", "busybox"),
        ("dnsmasq", "dnsmasq-base"),
        ("dig", "bind9-dnsutils"),
    ] {
        let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(prog).exists());
        assert!(found, "{test}: {prog} is missing (apt-get install {pkg})");
    }
    true
}

/// The `[lan]`, `[lan.dhcp]` and `[dns]` tables of these tests, with
/// `extra` appended (forwards).
fn lan_tables(extra: &str) -> String {
    format!(
        "\n[lan]\ninterface = \"brlan\"\naddress = \"{GW_LAN}/24\"\n\n\
         [lan.dhcp]\nrange = [\"172.16.4.100\", \"172.16.4.150\"]\nlease_time = 600\n\n\
         [[lan.dhcp.static]]\nmac = \"{FIXED_MAC}\"\naddress = \"{FIXED_ADDR}\"\nhostname = \"{FIXED_NAME}\"\n\n\
         [dns]\ndomain = \"{DOMAIN}\"\n\n\
         [[dns.hosts]]\nname = \"nas\"\naddress = \"172.16.4.5\"\n{extra}"
    )
}

/// The topology with the gateway's LAN on a bridge, ipieced configured with
/// the LAN services and started. Fields drop in order: ipieced's namespace
/// goes with the topology.
struct Lab {
    /// The VGW's charon, when the test runs one (dropped first).
    charon: Option<Charon>,
    cfg: GwConfig,
    daemon: Daemon,
    /// DHCP clients on the LAN bridge.
    clients: Vec<Netns>,
    t: Topology,
    /// Holds dnsmasq's state directory `state` (this parent must be
    /// traversable by the dnsmasq user: 0755).
    state: TempDir,
}

impl Lab {
    fn new(t: Topology, extra: &str, before_start: impl FnOnce(&GwConfig)) -> Lab {
        bridge_the_lan(&t);
        let cfg = GwConfig::init(&t.dir.join("gw"), NAT_WAN);
        toml_set_str(&cfg.path, "firewall", "lan_interface", "brlan");
        let mut text = fs::read_to_string(&cfg.path).unwrap();
        text.push_str(&lan_tables(extra));
        fs::write(&cfg.path, text).unwrap();
        before_start(&cfg);
        let out = wgctl_at(&cfg.path, &["check"]);
        assert!(out.ok(), "wgctl check: {out}");
        let state = TempDir::new("lanstate");
        fs::set_permissions(&state.path, fs::Permissions::from_mode(0o755)).unwrap();
        let daemon = start_ipieced_env(
            &t.gw,
            &cfg,
            &[("IPIECE_STATE_DIR", state.join("state").to_str().unwrap())],
        );
        let lab = Lab {
            charon: None,
            cfg,
            daemon,
            clients: Vec::new(),
            t,
            state,
        };
        lab.wait_dnsmasq_running(None);
        lab
    }

    fn status(&self) -> Value {
        self.cfg.status_json(&self.t.gw)
    }

    /// Waits until status shows dnsmasq running (with a PID other than
    /// `not`); returns its `.lan`.
    fn wait_dnsmasq_running(&self, not: Option<u64>) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(SLOW, Duration::from_millis(200), || {
            last = self.status()["lan"].clone();
            last["state"] == "running"
                && last["pid"].as_u64().is_some()
                && last["pid"].as_u64() != not
        });
        assert!(
            ok,
            "dnsmasq not running (other than pid {not:?}): {last:#}\n{}",
            tail(&self.daemon.log, 60)
        );
        last
    }

    /// Adds a DHCP client namespace on the LAN bridge (its eth0 with `mac`
    /// when given); returns its index in `clients`.
    fn add_client(&mut self, role: &str, mac: Option<&str>) -> usize {
        let ns = Netns::new(role);
        let port = format!("lanc{}", self.clients.len());
        self.t.gw.veth(&port, &ns, "eth0");
        self.t.gw.ip(&format!("link set {port} master brlan"));
        if let Some(m) = mac {
            ns.ip("link set eth0 down");
            ns.ip(&format!("link set eth0 address {m}"));
            ns.ip("link set eth0 up");
        }
        self.clients.push(ns);
        self.clients.len() - 1
    }
}

/// Moves the gateway's LAN address from `lan0` to a bridge `brlan` with
/// `lan0` as a port, so that more LAN hosts can join.
fn bridge_the_lan(t: &Topology) {
    // A fixed MAC: a bridge otherwise takes its lowest port's, and a port
    // added later could change it under the LAN hosts' ARP caches.
    t.gw.ip("link add brlan address 02:00:ac:10:04:01 type bridge");
    t.gw.ip("link set brlan up");
    t.gw.ip(&format!("addr del {GW_LAN}/24 dev lan0"));
    t.gw.ip("link set lan0 master brlan");
    t.gw.ip(&format!("addr add {GW_LAN}/24 dev brlan"));
}

/// What udhcpc's script saw on `bound`.
#[derive(Debug, Default)]
struct Lease {
    ip: String,
    mask: String,
    router: String,
    dns: String,
    domain: String,
}

/// The udhcpc script: on `bound`, configures the address and default route
/// and records the options in `out`.
fn udhcpc_script(dir: &Path, tag: &str, configure: bool) -> (PathBuf, PathBuf) {
    let script = dir.join(format!("udhcpc-{tag}.sh"));
    let out = dir.join(format!("udhcpc-{tag}.out"));
    let apply = if configure {
        "ip addr flush dev \"$interface\"\n    ip addr add \"$ip/$mask\" dev \"$interface\"\n    \
         [ -n \"$router\" ] && ip route replace default via \"${router%% *}\"\n    "
    } else {
        ""
    };
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    {apply}\
             printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\ndomain=%s\\n' \"$ip\" \"$mask\" \"$router\" \"$dns\" \"$domain\" > {}\n    ;;\nesac\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

/// Runs busybox udhcpc once on `iface` in `ns` (sending `hostname`):
/// `tries` discovers 3 s apart; `None` when no lease came.
fn dhcp(
    ns: &Netns,
    iface: &str,
    dir: &Path,
    hostname: Option<&str>,
    configure: bool,
    tries: u32,
) -> Option<Lease> {
    let (script, out) = udhcpc_script(dir, &ns.name, configure);
    let _ = fs::remove_file(&out);
    let tries = tries.to_string();
    let mut args = vec![
        "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", &tries, "-T", "3", "-s",
    ];
    let script = script.to_str().unwrap().to_owned();
    args.push(&script);
    let opt;
    if let Some(h) = hostname {
        opt = format!("hostname:{h}");
        args.push("-x");
        args.push(&opt);
    }
    let run = ns.exec_t("busybox", &args, Duration::from_secs(90));
    let text = fs::read_to_string(&out).ok()?;
    assert!(run.ok(), "udhcpc wrote a lease but failed: {run}");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    Some(Lease {
        ip: get("ip"),
        mask: get("mask"),
        router: get("router"),
        dns: get("dns"),
        domain: get("domain"),
    })
}

/// `dig +short` of `name` at `server` from `ns`: the answer lines, empty
/// when there is none (NXDOMAIN or no answer at all).
fn dig(ns: &Netns, server: &str, name: &str) -> Vec<String> {
    let at = format!("@{server}");
    let out = ns.exec_t(
        "dig",
        &["+short", "+time=2", "+tries=2", &at, name],
        Duration::from_secs(15),
    );
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

/// Whether `dig` got any DNS answer at all (even NXDOMAIN) from `server`.
fn dns_answers(ns: &Netns, server: &str, name: &str) -> bool {
    let at = format!("@{server}");
    let out = ns.exec_t(
        "dig",
        &["+time=2", "+tries=2", &at, name],
        Duration::from_secs(15),
    );
    out.stdout.contains("status:")
}

/// Waits until `name` resolves to `want` at `server` from `ns`.
fn wait_resolves(ns: &Netns, server: &str, name: &str, want: &str) {
    let mut last = Vec::new();
    let ok = wait_until(SLOW, Duration::from_millis(300), || {
        last = dig(ns, server, name);
        last.iter().any(|a| a == want)
    });
    assert!(
        ok,
        "{name} @{server} from {}: {last:?}, want {want}",
        ns.name
    );
}

#[test]
fn dhcp_clients_get_leases_and_laptops_resolve_lan_hosts_and_each_other() {
    let test = "dhcp_clients_get_leases_and_laptops_resolve_lan_hosts_and_each_other";
    if !ready(test) {
        return;
    }
    let mut lab = Lab::new(Topology::new(2), "", |_| {});
    let dir = lab.t.dir.path.clone();

    // A dynamic client: an address in the range, the gateway as router and
    // DNS server, the domain.
    let d = lab.add_client("dyn", None);
    let lease =
        dhcp(&lab.clients[d], "eth0", &dir, Some(DYN_NAME), true, 15).unwrap_or_else(|| {
            panic!(
                "no DHCP lease for the dynamic client:\n{}",
                tail(&lab.daemon.log, 40)
            )
        });
    let last: u8 = lease.ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        lease.ip.starts_with("172.16.4.") && (100..=150).contains(&last),
        "{lease:?} is not in the range"
    );
    assert_eq!(lease.mask, "24", "{lease:?}");
    assert_eq!(lease.router, GW_LAN, "{lease:?}");
    assert_eq!(lease.dns, GW_LAN, "{lease:?}");
    assert_eq!(lease.domain, DOMAIN, "{lease:?}");
    assert!(lab.clients[d].ping_until(GW_LAN, Duration::from_secs(5)));

    // The static mapping: its fixed address.
    let f = lab.add_client("fixed", Some(FIXED_MAC));
    let fixed = dhcp(&lab.clients[f], "eth0", &dir, None, true, 15).unwrap_or_else(|| {
        panic!(
            "no DHCP lease for the static mapping:\n{}",
            tail(&lab.daemon.log, 40)
        )
    });
    assert_eq!(fixed.ip, FIXED_ADDR, "{fixed:?}");

    // Both in `wgctl leases` (text and JSON) and in status --json.
    let out = lab.cfg.wgctl(&lab.t.gw, &["leases"]);
    assert!(out.ok(), "wgctl leases: {out}");
    for want in [
        lease.ip.as_str(),
        FIXED_ADDR,
        FIXED_MAC,
        DYN_NAME,
        FIXED_NAME,
    ] {
        assert!(
            out.stdout.contains(want),
            "wgctl leases lacks {want}: {out}"
        );
    }
    let out = lab.cfg.wgctl(&lab.t.gw, &["leases", "--json"]);
    let leases: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["address"] == FIXED_ADDR && l["mac"] == FIXED_MAC),
        "{leases:#}"
    );
    let st = lab.status();
    assert_eq!(
        st["lan"]["leases"].as_array().map(Vec::len),
        Some(2),
        "{:#}",
        st["lan"]
    );

    // Laptops from add-peer's files: DNS = the gateway's WireGuard address.
    let alice_conf = lab.cfg.add_peer(&lab.t.gw, "alice", &[]);
    let bob_conf = lab.cfg.add_peer(&lab.t.gw, "bob", &[]);
    let alice_dns = ClientConf::load(&alice_conf).iface("DNS").join(",");
    assert_eq!(
        alice_dns,
        GW_WG_ADDR,
        "alice's client file:\n{}",
        ClientConf::load(&alice_conf).text
    );
    let alice = start_wg_client(&lab.t.laptops[0], &alice_conf, &dir);
    let bob = start_wg_client(&lab.t.laptops[1], &bob_conf, &dir);
    let lap = &lab.t.laptops[0];
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(15)),
        "alice never reached the gateway"
    );
    let pid = lab.status()["lan"]["pid"].as_u64();

    // Through the gateway's DNS from the laptop: the other laptop, the
    // static mapping's and the dynamic client's names, a [[dns.hosts]].
    wait_resolves(
        lap,
        &alice_dns,
        &format!("bob.vpn.{DOMAIN}"),
        &bob.address(),
    );
    wait_resolves(
        lap,
        &alice_dns,
        &format!("alice.vpn.{DOMAIN}"),
        &alice.address(),
    );
    wait_resolves(
        lap,
        &alice_dns,
        &format!("{FIXED_NAME}.{DOMAIN}"),
        FIXED_ADDR,
    );
    wait_resolves(lap, &alice_dns, &format!("{DYN_NAME}.{DOMAIN}"), &lease.ip);
    wait_resolves(lap, &alice_dns, &format!("nas.{DOMAIN}"), "172.16.4.5");
    // and from the LAN, at the gateway's LAN address.
    wait_resolves(
        &lab.clients[d],
        GW_LAN,
        &format!("bob.vpn.{DOMAIN}"),
        &bob.address(),
    );

    // A laptop added later is named at once, removed from DNS when
    // disabled, back when enabled: no dnsmasq restart (same PID).
    lab.cfg.add_peer(&lab.t.gw, "carol", &[]);
    let carol = lab.status()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "carol")
        .map(|p| {
            p["allowed_ips"][0]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .expect("carol in status");
    let carol_name = format!("carol.vpn.{DOMAIN}");
    wait_resolves(lap, &alice_dns, &carol_name, &carol);
    let out = lab.cfg.wgctl(&lab.t.gw, &["disable", "carol"]);
    assert!(out.ok(), "wgctl disable: {out}");
    assert!(
        wait_until(SLOW, Duration::from_millis(300), || dig(
            lap,
            &alice_dns,
            &carol_name
        )
        .is_empty()),
        "disabled carol still resolves"
    );
    let out = lab.cfg.wgctl(&lab.t.gw, &["enable", "carol"]);
    assert!(out.ok(), "wgctl enable: {out}");
    wait_resolves(lap, &alice_dns, &carol_name, &carol);
    let st = lab.status();
    assert_eq!(
        st["lan"]["pid"].as_u64(),
        pid,
        "dnsmasq was restarted for a peer change: {:#}",
        st["lan"]
    );
    assert_eq!(st["lan"]["restarts"].as_u64(), Some(0), "{:#}", st["lan"]);
}

#[test]
fn forwarded_domain_is_answered_by_a_resolver_in_the_vpc_through_the_tunnel() {
    let test = "forwarded_domain_is_answered_by_a_resolver_in_the_vpc_through_the_tunnel";
    if !ready(test) {
        return;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    const PSK: &str = "ipiece.lan.forward.0123456789";
    let t = Topology::with_vgw(1);
    // The resolver stand-in (a Route 53 Resolver inbound endpoint): a
    // dnsmasq of the test's own on the VPC host, knowing one record.
    let vpc_log = t.dir.join("vpc-dnsmasq.log");
    let vpc_pid = t.vpc().spawn(
        "vpc resolver",
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={VPC_HOST}"),
            &format!("--host-record={},{}", VPC_RECORD.0, VPC_RECORD.1),
            &format!("--pid-file={}", t.dir.join("vpc-dnsmasq.pid").display()),
            "--user=root",
            "--log-queries",
            "--log-facility=-",
        ],
        &[],
        &vpc_log,
    );
    let forward =
        format!("\n[[dns.forward]]\ndomain = \"ec2.internal\"\nservers = [\"{VPC_HOST}\"]\n");
    let mut lab = Lab::new(t, &forward, |cfg| {
        write_tunnels(cfg, &[TunnelSpec::new("aws-1", VGW_WAN, PSK)]);
    });
    let charon = start_vgw_charon(&lab.t, lab.t.vgw(), "vgw1");
    charon.load(&SwanctlConf::one(ConnConf::aws_vgw(
        "aws-vgw-tun1",
        VGW_WAN,
        NAT_WAN,
        PSK,
    )));
    lab.charon = Some(charon);
    let up = wait_up(
        &lab.cfg,
        &lab.t.gw,
        &lab.daemon,
        "aws-1",
        Duration::from_secs(40),
    );
    let esp_out = child_counter(&up, "packets_out");

    // A laptop asks the gateway; the gateway asks the VPC resolver through
    // the tunnel (the only way to 10.0.0.0/16 from the gateway).
    let conf = lab.cfg.add_peer(&lab.t.gw, "alice", &[]);
    let dns = ClientConf::load(&conf).iface("DNS").join(",");
    let _wg = start_wg_client(&lab.t.laptops[0], &conf, &lab.t.dir.path);
    let lap = &lab.t.laptops[0];
    assert!(
        lap.ping_until(GW_WG_ADDR, Duration::from_secs(15)),
        "alice never reached the gateway"
    );
    wait_resolves(lap, &dns, VPC_RECORD.0, VPC_RECORD.1);
    // and the LAN host, at the LAN address.
    wait_resolves(&lab.t.lan, GW_LAN, VPC_RECORD.0, VPC_RECORD.1);
    assert!(
        lab.t.vpc().running(vpc_pid),
        "the VPC resolver died:\n{}",
        tail(&vpc_log, 20)
    );
    let log = fs::read_to_string(&vpc_log).unwrap_or_default();
    assert!(
        log.contains(&format!("query[A] {} from {GW_WG_ADDR}", VPC_RECORD.0)),
        "the VPC resolver never saw the gateway's query:\n{log}"
    );
    let now = tunnel(&lab.status(), "aws-1").clone();
    assert!(
        child_counter(&now, "packets_out") > esp_out,
        "no ESP packet left through aws-1 for the query: {now:#}"
    );
    // A name outside the forwarded domain is not asked there (no upstream:
    // no answer).
    assert!(dig(lap, &dns, "db.example.com").is_empty());
}

#[test]
fn the_wan_gets_no_dns_or_dhcp_answer_and_dnsmasq_listens_inside_only() {
    let test = "the_wan_gets_no_dns_or_dhcp_answer_and_dnsmasq_listens_inside_only";
    if !ready(test) {
        return;
    }
    let lab = Lab::new(Topology::new(0), "", |_| {});
    let dir = lab.t.dir.path.clone();
    // The home router is the WAN side: route the inside through the gateway
    // there, then ask every address of the gateway.
    lab.t
        .nat
        .ip(&format!("route add 172.16.4.0/24 via {GW_ETH0}"));
    lab.t
        .nat
        .ip(&format!("route add 172.16.60.0/24 via {GW_ETH0}"));
    // The LAN host gets answers (the service runs) ...
    assert!(
        wait_until(SLOW, Duration::from_millis(300), || dns_answers(
            &lab.t.lan,
            GW_LAN,
            &format!("nas.{DOMAIN}")
        )),
        "the LAN gets no DNS answer"
    );
    // ... the WAN none, at any of them.
    for server in [GW_ETH0, GW_LAN, GW_WG_ADDR] {
        assert!(
            !dns_answers(&lab.t.nat, server, &format!("nas.{DOMAIN}")),
            "the WAN got a DNS answer from {server}"
        );
    }
    // No DHCP offer on the WAN link (udhcpc on the router's side of it).
    assert!(
        dhcp(&lab.t.nat, "lan", &dir, None, false, 3).is_none(),
        "a DHCP client on the WAN got a lease from the gateway"
    );
    // dnsmasq's DNS sockets: the LAN and WireGuard addresses only.
    let out = lab.t.gw.exec("ss", &["-Hlnu", "sport = :53"]);
    let mut local: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    local.sort();
    assert_eq!(
        local,
        [format!("{GW_LAN}:53"), format!("{GW_WG_ADDR}:53")],
        "{out}"
    );
    let out = lab.t.gw.exec("ss", &["-Hlnt", "sport = :53"]);
    assert!(
        !out.stdout.contains("0.0.0.0:53") && !out.stdout.contains(GW_ETH0),
        "{out}"
    );
}

#[test]
fn dnsmasq_restarts_on_option_changes_and_after_a_kill_and_stops_with_ipieced() {
    let test = "dnsmasq_restarts_on_option_changes_and_after_a_kill_and_stops_with_ipieced";
    if !ready(test) {
        return;
    }
    let lab = Lab::new(Topology::new(0), "", |_| {});
    let started = lab.status()["lan"]["pid"].as_u64().expect("dnsmasq pid");
    wait_until(SLOW, Duration::from_millis(300), || {
        dns_answers(&lab.t.lan, GW_LAN, &format!("nas.{DOMAIN}"))
    });

    // A DHCP option changed: dnsmasq restarted with it (a new PID), which is
    // no failure.
    let text = fs::read_to_string(&lab.cfg.path).unwrap();
    fs::write(
        &lab.cfg.path,
        text.replace("lease_time = 600", "lease_time = 900"),
    )
    .unwrap();
    reload(&lab.cfg, &lab.t.gw);
    let lan = lab.wait_dnsmasq_running(Some(started));
    assert_eq!(lan["restarts"].as_u64(), Some(0), "{lan:#}");
    let conf = fs::read_to_string(lab.state.join("state/dnsmasq.conf")).unwrap();
    assert!(
        conf.contains("dhcp-range=172.16.4.100,172.16.4.150,255.255.255.0,900\n"),
        "{conf}"
    );
    wait_resolves(&lab.t.lan, GW_LAN, &format!("nas.{DOMAIN}"), "172.16.4.5");

    // Killed: started again, the restart and the reason in status.
    let first = lan["pid"].as_u64().unwrap();
    assert!(signal(first as u32, 9), "kill -9 {first}");
    let lan = lab.wait_dnsmasq_running(Some(first));
    assert!(lan["restarts"].as_u64() >= Some(1), "{lan:#}");
    let why = lan["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("SIGKILL") || why.contains("signal: 9"),
        "{lan:#}"
    );
    wait_resolves(&lab.t.lan, GW_LAN, &format!("nas.{DOMAIN}"), "172.16.4.5");
    let out = lab.cfg.wgctl(&lab.t.gw, &["status"]);
    assert!(out.ok(), "{out}");
    assert!(
        out.stdout.contains("lan services (dnsmasq")
            && out.stdout.contains("restarts 1")
            && out.stdout.contains("last error: dnsmasq exited"),
        "wgctl status does not show the restart: {out}"
    );
    // Stopped with ipieced.
    let second = lan["pid"].as_u64().unwrap() as u32;
    assert!(signal(lab.daemon.pid, 15));
    assert!(
        lab.t.gw.wait_exit(lab.daemon.pid, SLOW).is_some(),
        "ipieced did not stop"
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            !Path::new(&format!("/proc/{second}")).exists()
        }),
        "dnsmasq {second} outlived ipieced"
    );
}

#[test]
fn a_missing_dnsmasq_stops_ipieced_with_the_package_name() {
    let test = "a_missing_dnsmasq_stops_ipieced_with_the_package_name";
    if !ready(test) {
        return;
    }
    let t = Topology::new(0);
    bridge_the_lan(&t);
    let cfg = GwConfig::init(&t.dir.join("gw"), NAT_WAN);
    toml_set_str(&cfg.path, "firewall", "lan_interface", "brlan");
    let mut text = fs::read_to_string(&cfg.path).unwrap();
    text.push_str(&lan_tables(""));
    fs::write(&cfg.path, text).unwrap();
    // `wgctl check` warns (the file itself is valid).
    let check = run_cmd(
        std::process::Command::new(WGCTL)
            .env("IPIECE_DNSMASQ", "/nonexistent/dnsmasq")
            .args(["--config", cfg.path.to_str().unwrap(), "check"]),
        None,
        Duration::from_secs(20),
    );
    assert!(
        check.ok()
            && check.stdout.contains("warning: ipieced will not start")
            && check.stdout.contains("dnsmasq-base"),
        "wgctl check: {check}"
    );
    let log = t.dir.join("ipieced.log");
    let pid = t.gw.spawn(
        "ipieced",
        IPIECED,
        &["--config", cfg.path.to_str().unwrap()],
        &[
            ("IPIECE_DNSMASQ", "/nonexistent/dnsmasq"),
            ("IPIECE_STATE_DIR", t.dir.join("state").to_str().unwrap()),
        ],
        &log,
    );
    let status =
        t.gw.wait_exit(pid, SLOW)
            .expect("ipieced kept running without dnsmasq");
    assert!(!status.success());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("/nonexistent/dnsmasq not found") && text.contains("dnsmasq-base"),
        "{text}"
    );
}

#[test]
fn a_dnsmasq_that_cannot_start_is_retried_with_its_reason_in_status() {
    let test = "a_dnsmasq_that_cannot_start_is_retried_with_its_reason_in_status";
    if !ready(test) {
        return;
    }
    // The LAN address is missing from the LAN interface when ipieced starts:
    // dnsmasq cannot bind it and exits.
    let t = Topology::new(0);
    bridge_the_lan(&t);
    t.gw.ip(&format!("addr del {GW_LAN}/24 dev brlan"));
    let cfg = GwConfig::init(&t.dir.join("gw"), NAT_WAN);
    toml_set_str(&cfg.path, "firewall", "lan_interface", "brlan");
    let mut text = fs::read_to_string(&cfg.path).unwrap();
    text.push_str(&lan_tables(""));
    fs::write(&cfg.path, text).unwrap();
    let state = TempDir::new("lanstate");
    fs::set_permissions(&state.path, fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = start_ipieced_env(
        &t.gw,
        &cfg,
        &[("IPIECE_STATE_DIR", state.join("state").to_str().unwrap())],
    );
    let mut lan = Value::Null;
    let failing = wait_until(SLOW, Duration::from_millis(200), || {
        lan = cfg.status_json(&t.gw)["lan"].clone();
        lan["restarts"].as_u64() >= Some(2)
    });
    assert!(
        failing,
        "no failed starts counted: {lan:#}\n{}",
        tail(&daemon.log, 30)
    );
    let why = lan["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("exit status") && why.contains(GW_LAN),
        "status does not say why dnsmasq failed: {lan:#}"
    );
    // The address back: dnsmasq comes up at its next attempt (backoff).
    t.gw.ip(&format!("addr add {GW_LAN}/24 dev brlan"));
    let up = wait_until(Duration::from_secs(90), Duration::from_millis(300), || {
        lan = cfg.status_json(&t.gw)["lan"].clone();
        lan["state"] == "running"
    });
    assert!(
        up,
        "dnsmasq never came up: {lan:#}\n{}",
        tail(&daemon.log, 30)
    );
    wait_resolves(&t.lan, GW_LAN, &format!("nas.{DOMAIN}"), "172.16.4.5");
}
