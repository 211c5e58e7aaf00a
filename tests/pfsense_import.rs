//! `wgctl import pfsense` on the fixtures of `tests/fixtures/pfsense/`
//! (issue 12, item 2):
//!
//! - each fixture imports into a file `wgctl check` accepts, its keys in
//!   0600 files, no secret printed, and the report lists what did not map;
//! - `--dry-run` prints the diff and leaves every file byte-identical;
//! - an import over a peer or tunnel of the same name or key, and over a
//!   gateway key laptops already use, is refused unless `--replace`;
//! - malformed XML: the error names line and column, nothing is written;
//!   a foreign document is refused;
//! - live, in network namespaces: laptops configured with the fixture's
//!   keys (`test-keys.txt`) complete a handshake with ipieced (wireguard-go)
//!   and ping the gateway; the disabled peer gets no session; the imported
//!   tunnels come up against strongSwan as the AWS VGW and the LAN host
//!   reaches the VPC host through them.

mod common;

use common::ipsec::*;
use common::strongswan::*;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a tunnel may take to come up (a loaded debug build).
const UP_TIMEOUT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pfsense")
        .join(name)
}

/// One line of `test-keys.txt`.
#[derive(Debug, Clone)]
struct TestKey {
    fixture: String,
    role: String,
    name: String,
    private: String,
    public: String,
}

fn test_keys() -> Vec<TestKey> {
    fs::read_to_string(fixture("test-keys.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            TestKey {
                fixture: f[0].into(),
                role: f[1].into(),
                name: f[2].into(),
                private: f[3].into(),
                public: f[4].into(),
            }
        })
        .collect()
}

fn gateway_key(fixture_name: &str) -> TestKey {
    test_keys()
        .into_iter()
        .find(|k| k.fixture == fixture_name && k.role == "gateway")
        .unwrap()
}

/// The secrets of the fixtures: none may ever be printed.
fn secrets() -> Vec<String> {
    let mut v: Vec<String> = [
        "vgw.psk.one.2500",
        "legacy.partner.key",
        "vgw.psk.two.2600",
        "mobile.user.secret",
        "vgw.psk.one.2720",
        "vgw.psk.two.2720",
        "6kUoMvUI/pPXwCb7QkRae3T/qj7lJg5Od9D0IL9yH1A=",
        "qNGjU1x4wpPhRP+iW4lWoSGyjpSxk4tsVZayE8wxphI=",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(test_keys().into_iter().map(|k| k.private));
    v
}

fn assert_no_secret(out: &Out, what: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for s in secrets() {
        assert!(!all.contains(&s), "{what}: a secret was printed:\n{all}");
    }
}

/// A config made by `wgctl init --endpoint 203.0.113.2` in `dir`.
fn fresh(dir: &Path) -> GwConfig {
    GwConfig::init(dir, NAT_WAN)
}

fn import(cfg: &GwConfig, xml: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["import", "pfsense", xml.to_str().unwrap()];
    args.extend_from_slice(extra);
    wgctl_at(&cfg.path, &args)
}

/// Every regular file below `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if !e.path().to_string_lossy().ends_with(".lock") {
                out.insert(
                    e.path(),
                    (fs::read(e.path()).unwrap(), m.permissions().mode() & 0o7777),
                );
            }
        }
    }
    out
}

fn toml_of(cfg: &GwConfig) -> toml::Table {
    fs::read_to_string(&cfg.path).unwrap().parse().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

// ------------------------------------------------------------ file tests --

#[test]
fn each_fixture_imports_into_a_file_that_validates_with_a_report_of_what_did_not_map() {
    let cases: [(&str, &[&str], usize, usize); 3] = [
        (
            "pfsense-2.5.0.xml",
            &[
                "Partner (IKEv1)\" (ikeid 2): IKEv1",
                "\"Partner LAN\"",
                "allowed IP 192.168.77.0/24",
                "Default allow LAN IPv6",
                "<system>",
            ],
            2,
            1,
        ),
        (
            "pfsense-2.6.0.xml",
            &[
                "\"Mobile clients\" (ikeid 2): the mobile-client phase 1 is ignored",
                "ipsec/client",
                "alias blocklist (urltable)",
                "chacha20poly1305",
                "RTP range",
                "nat/outbound (hybrid)",
            ],
            3,
            1,
        ),
        (
            "pfsense-2.7.2.xml",
            &[
                "WireGuard tunnel tun_wg1",
                "\"Guests out\" on opt1",
                "\"Floating block\"",
                "<openvpn>",
                "installedpackages/haproxy",
                "AES-192",
            ],
            2,
            2,
        ),
    ];
    let dir = TempDir::new("pfsense-import");
    for (name, reported, peers, tunnels) in cases {
        let cfg = fresh(&dir.join(name));
        let out = import(&cfg, &fixture(name), &[]);
        assert!(out.ok(), "{name}: {out}");
        assert_no_secret(&out, name);
        let check = wgctl_at(&cfg.path, &["check"]);
        assert!(
            check.ok(),
            "{name}: the imported file does not validate: {check}\n{}",
            fs::read_to_string(&cfg.path).unwrap()
        );
        let report = out
            .stdout
            .split_once("\nnot imported (")
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("{name}: no report of what was not imported: {out}"));
        for r in reported {
            assert!(
                report.contains(r),
                "{name}: the report misses {r:?}:\n{report}"
            );
        }
        let doc = toml_of(&cfg);
        assert_eq!(
            doc["peers"].as_array().map(Vec::len),
            Some(peers),
            "{name}: {doc:#?}"
        );
        assert_eq!(
            doc["ipsec"]["tunnels"].as_array().map(Vec::len),
            Some(tunnels),
            "{name}"
        );
        // The gateway's key is the pfSense tunnel's, mode 0600; every PSK
        // file is 0600.
        let gw = gateway_key(name);
        let key_file = cfg.dir.join("wg.key");
        assert_eq!(
            fs::read_to_string(&key_file).unwrap().trim(),
            gw.private,
            "{name}"
        );
        assert_eq!(mode(&key_file), 0o600);
        for t in doc["ipsec"]["tunnels"].as_array().unwrap() {
            let f = cfg.dir.join(t["psk_file"].as_str().unwrap());
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        for p in doc["peers"].as_array().unwrap() {
            if let Some(f) = p.get("psk_file").and_then(|v| v.as_str()) {
                let f = cfg.dir.join(f);
                assert_eq!(mode(&f), 0o600, "{}", f.display());
                let k = fs::read_to_string(&f).unwrap();
                assert_eq!(k.trim().len(), 44, "{}: not a key", f.display());
            }
        }
    }
}

#[test]
fn the_disabled_peer_stays_disabled_and_the_phase2_networks_become_selectors() {
    let dir = TempDir::new("pfsense-import");
    let cfg = fresh(&dir.join("c"));
    let out = import(&cfg, &fixture("pfsense-2.6.0.xml"), &[]);
    assert!(out.ok(), "{out}");
    let doc = toml_of(&cfg);
    let dave = doc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("dave-old"))
        .expect("dave-old imported");
    assert_eq!(dave["enabled"].as_bool(), Some(false));
    let list = wgctl_at(&cfg.path, &["list-peers"]);
    assert!(list.ok(), "{list}");
    let t = &doc["ipsec"]["tunnels"][0];
    let ts = |k: &str| -> Vec<String> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ts("local_ts"), ["172.16.4.0/24", "172.16.60.0/24"]);
    assert_eq!(ts("remote_ts"), ["10.0.0.0/16"]);
    // The PSK file holds the pfSense key, never shown.
    let psk = fs::read_to_string(cfg.dir.join("ipsec/VPC-tunnel.psk")).unwrap();
    assert_eq!(psk.trim(), "vgw.psk.two.2600");
}

#[test]
fn the_lan_address_dhcp_range_and_static_mappings_become_lan_and_lan_dhcp() {
    let dir = TempDir::new("pfsense-lan");
    let cfg = fresh(&dir.join("c"));
    let out = import(&cfg, &fixture("pfsense-2.5.0.xml"), &[]);
    assert!(out.ok(), "{out}");
    let doc = toml_of(&cfg);
    assert_eq!(doc["lan"]["address"].as_str(), Some("172.16.4.1/24"));
    let dhcp = &doc["lan"]["dhcp"];
    assert_eq!(
        dhcp["range"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["172.16.4.100", "172.16.4.150"]
    );
    assert_eq!(dhcp["lease_time"].as_integer(), Some(7200));
    let statics: Vec<(String, String, String)> = dhcp["static"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["mac"].as_str().unwrap().to_owned(),
                s["address"].as_str().unwrap().to_owned(),
                s["hostname"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statics,
        [
            (
                "00:50:56:aa:bb:01".to_owned(),
                "172.16.4.20".to_owned(),
                "build01".to_owned()
            ),
            (
                "00:50:56:aa:bb:02".to_owned(),
                "172.16.4.21".to_owned(),
                "db01".to_owned()
            ),
        ]
    );
    // The 2.7 fixture's DNS server option; the 2.6 one's DHCP is off: [lan] only.
    let cfg = fresh(&dir.join("c27"));
    assert!(import(&cfg, &fixture("pfsense-2.7.2.xml"), &[]).ok());
    let doc = toml_of(&cfg);
    assert_eq!(
        doc["lan"]["dhcp"]["dns_servers"]
            .as_array()
            .map(|a| a.len()),
        Some(1)
    );
    let cfg = fresh(&dir.join("c26"));
    assert!(import(&cfg, &fixture("pfsense-2.6.0.xml"), &[]).ok());
    let doc = toml_of(&cfg);
    assert_eq!(doc["lan"]["address"].as_str(), Some("172.16.4.1/24"));
    assert!(
        doc["lan"].get("dhcp").is_none(),
        "DHCP is off in that pfSense"
    );
    // Another LAN address in the file: refused unless --replace.
    let cfg = fresh(&dir.join("other"));
    let mut text = fs::read_to_string(&cfg.path).unwrap();
    text.push_str("\n[lan]\naddress = \"172.16.4.254/24\"\n");
    fs::write(&cfg.path, text).unwrap();
    assert!(wgctl_at(&cfg.path, &["check"]).ok());
    let out = import(&cfg, &fixture("pfsense-2.5.0.xml"), &[]);
    assert!(
        !out.ok() && out.stderr.contains("lan.address is 172.16.4.254/24"),
        "{out}"
    );
    let out = import(&cfg, &fixture("pfsense-2.5.0.xml"), &["--replace"]);
    assert!(out.ok(), "{out}");
    assert_eq!(
        toml_of(&cfg)["lan"]["address"].as_str(),
        Some("172.16.4.1/24")
    );
}

#[test]
fn dry_run_prints_the_diff_and_writes_nothing() {
    let dir = TempDir::new("pfsense-dry");
    for name in [
        "pfsense-2.5.0.xml",
        "pfsense-2.6.0.xml",
        "pfsense-2.7.2.xml",
    ] {
        let cfg = fresh(&dir.join(name));
        let before = snapshot(&cfg.dir);
        let out = import(&cfg, &fixture(name), &["--dry-run"]);
        assert!(out.ok(), "{name}: {out}");
        assert_no_secret(&out, name);
        assert!(out.stdout.contains("nothing was written"), "{name}: {out}");
        assert!(
            out.stdout.contains("\n+[[peers]]\n"),
            "{name}: no diff: {out}"
        );
        assert!(
            out.stdout.contains("\n+[[ipsec.tunnels]]\n"),
            "{name}: {out}"
        );
        assert!(
            out.stdout.contains("not imported ("),
            "{name}: no report: {out}"
        );
        let after = snapshot(&cfg.dir);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "{name}: --dry-run created or removed files"
        );
        assert!(before == after, "{name}: --dry-run changed a file");
    }
}

#[test]
fn an_import_over_existing_peers_tunnels_or_key_is_refused_unless_replace() {
    let dir = TempDir::new("pfsense-replace");
    let xml = fixture("pfsense-2.6.0.xml");

    // The same import twice: the second is refused and writes nothing.
    let cfg = fresh(&dir.join("twice"));
    assert!(import(&cfg, &xml, &[]).ok());
    let before = snapshot(&cfg.dir);
    let out = import(&cfg, &xml, &[]);
    assert!(!out.ok(), "a second import went through: {out}");
    for m in [
        "--replace",
        "peer `carol-MacBook` exists",
        "tunnel `VPC-tunnel` exists",
        "`SSH-to-build01-tcp` exists",
    ] {
        assert!(out.stderr.contains(m), "{m:?} missing: {out}");
    }
    assert!(
        before == snapshot(&cfg.dir),
        "a refused import changed files"
    );
    let out = import(&cfg, &xml, &["--replace"]);
    assert!(out.ok(), "{out}");
    assert!(wgctl_at(&cfg.path, &["check"]).ok());
    let doc = toml_of(&cfg);
    assert_eq!(doc["peers"].as_array().unwrap().len(), 3, "no duplicates");
    assert_eq!(doc["ipsec"]["tunnels"].as_array().unwrap().len(), 1);

    // A peer of another name with an imported peer's key, a tunnel to the
    // imported tunnel's peer, and a gateway key laptops already use.
    let cfg = fresh(&dir.join("other"));
    let carol = "Y1XKefIFqOZP2Nxg4v+esMY/oCP6jnFDfVHKSVMSBk0=";
    let add = wgctl_at(
        &cfg.path,
        &[
            "add-peer",
            "laptop-x",
            "--public-key",
            carol,
            "--ip",
            "172.16.60.50",
        ],
    );
    assert!(add.ok(), "{add}");
    write_tunnels(
        &cfg,
        &[TunnelSpec::new("aws-1", "203.0.113.130", "old.key.12345")],
    );
    let old_key = fs::read(cfg.dir.join("wg.key")).unwrap();
    let before = snapshot(&cfg.dir);
    let out = import(&cfg, &xml, &[]);
    assert!(!out.ok(), "{out}");
    for m in [
        "peer `laptop-x` has the public key of imported peer `carol-MacBook`",
        "tunnel `aws-1` has remote_address 203.0.113.130",
        "the gateway's WireGuard key",
    ] {
        assert!(out.stderr.contains(m), "{m:?} missing: {out}");
    }
    assert_no_secret(&out, "refusal");
    assert!(
        before == snapshot(&cfg.dir),
        "a refused import changed files"
    );
    let out = import(&cfg, &xml, &["--replace"]);
    assert!(out.ok(), "{out}");
    assert!(wgctl_at(&cfg.path, &["check"]).ok());
    let doc = toml_of(&cfg);
    let names: Vec<&str> = doc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["carol-MacBook", "dave-old", "erin"],
        "laptop-x replaced"
    );
    let tunnels = doc["ipsec"]["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    assert_eq!(tunnels[0]["name"].as_str(), Some("VPC-tunnel"));
    assert_ne!(fs::read(cfg.dir.join("wg.key")).unwrap(), old_key);
}

#[test]
fn malformed_or_foreign_xml_is_refused_with_its_position_and_nothing_is_written() {
    let dir = TempDir::new("pfsense-bad");
    let cfg = fresh(&dir.join("c"));
    let before = snapshot(&cfg.dir);
    let bad = fixture("malformed.xml");
    let out = import(&cfg, &bad, &[]);
    assert!(!out.ok(), "{out}");
    let want = format!("{}:13:3: not a well-formed XML document", bad.display());
    assert!(out.stderr.contains(&want), "{want:?} missing: {out}");
    assert!(out.stderr.contains("nothing was written"), "{out}");
    let out = import(&cfg, &bad, &["--dry-run"]);
    assert!(!out.ok() && out.stderr.contains(&want), "{out}");
    let foreign = fixture("foreign.xml");
    let out = import(&cfg, &foreign, &[]);
    assert!(!out.ok(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}:2:1: the root element is <opnsense>",
            foreign.display()
        )),
        "{out}"
    );
    assert!(
        before == snapshot(&cfg.dir),
        "a refused import changed files"
    );
}

// ------------------------------------------------------------ live tests --

/// A laptop of the fixture: its name, and whether it must get a session.
struct Laptop {
    name: &'static str,
    enabled: bool,
}

/// One imported tunnel and the VGW that answers it.
struct Vgw {
    tunnel: &'static str,
    second: bool,
    psk: &'static str,
}

/// Imports `name` into a gateway in the topology, starts strongSwan VGWs
/// for `vgws` and ipieced, then checks every tunnel comes up and carries
/// the LAN host's pings to the VPC host, and every laptop gets (or, when
/// disabled, does not get) a WireGuard session with the fixture's keys;
/// with `laptop_to_vpc` (the tunnel's selectors cover the WireGuard subnet)
/// the enabled laptops also reach the VPC host through the tunnel. With
/// `while_running` the import goes into the file of a running ipieced
/// (`wgctl init`, ipieced, then the import), which applies it by a reload.
fn live(
    test: &str,
    name: &str,
    laptops: &[Laptop],
    vgws: &[Vgw],
    laptop_to_vpc: bool,
    while_running: bool,
) {
    if !need_root(test) {
        return;
    }
    if let Err(e) = available() {
        panic!("{test}: {e}");
    }
    let t = Topology::with_vgw(laptops.len());
    let vgw2_ns = vgws.iter().any(|v| v.second).then(|| add_second_vgw(&t));
    let cfg = GwConfig::init(&t.dir.join("etc"), NAT_WAN);
    let mut running = None;
    if while_running {
        running = Some(start_ipieced_logging(&t.gw, &cfg, "info,ipiece=debug"));
        let xml = fixture(name);
        let out = cfg.wgctl(&t.gw, &["import", "pfsense", xml.to_str().unwrap()]);
        assert!(out.ok(), "{name}: {out}");
        assert!(
            out.stderr.contains("ipieced: applied"),
            "{name}: the running ipieced was not told: {out}"
        );
    } else {
        let out = import(&cfg, &fixture(name), &[]);
        assert!(out.ok(), "{name}: {out}");
    }
    let mut charons = Vec::new();
    for v in vgws {
        let (ns, addr, label) = if v.second {
            (vgw2_ns.as_ref().unwrap(), VGW2_WAN, "vgw2")
        } else {
            (t.vgw(), VGW_WAN, "vgw1")
        };
        let c = start_vgw_charon(&t, ns, label);
        c.load(&SwanctlConf::one(ConnConf::aws_vgw(
            label, addr, NAT_WAN, v.psk,
        )));
        charons.push(c);
    }
    let daemon = match running {
        Some(d) => d,
        None => start_ipieced_logging(&t.gw, &cfg, "info,ipiece=debug"),
    };
    for v in vgws {
        let st = wait_up(&cfg, &t.gw, &daemon, v.tunnel, UP_TIMEOUT);
        assert_eq!(state(&st), "up", "{name}: {st:#}");
    }
    assert!(
        t.lan.ping_until(VPC_HOST, Duration::from_secs(10)),
        "{name}: the LAN host does not reach the VPC host through the imported tunnel:\n{}",
        tail(&daemon.log, 60)
    );

    let gw = gateway_key(name);
    let keys = test_keys();
    let doc = toml_of(&cfg);
    for (k, l) in laptops.iter().enumerate() {
        let key = keys
            .iter()
            .find(|x| x.fixture == name && x.name == l.name)
            .unwrap_or_else(|| panic!("no test key for {}", l.name));
        let peer = doc["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(l.name))
            .unwrap_or_else(|| panic!("{name}: peer {} not imported", l.name));
        assert_eq!(peer["public_key"].as_str(), Some(key.public.as_str()));
        let address = peer["address"].as_str().unwrap();
        let psk = peer.get("psk_file").and_then(|f| f.as_str()).map(|f| {
            fs::read_to_string(cfg.dir.join(f))
                .unwrap()
                .trim()
                .to_owned()
        });
        let conf = format!(
            "[Interface]\nPrivateKey = {}\nAddress = {address}/32\n\n[Peer]\nPublicKey = {}\n{}Endpoint = {NAT_WAN}:{WG_PORT}\nAllowedIPs = {}, {LAN_CIDR}, {VPC_CIDR}\nPersistentKeepalive = 5\n",
            key.private,
            gw.public,
            psk.map(|p| format!("PresharedKey = {p}\n")).unwrap_or_default(),
            WG_CIDR,
        );
        let path = t.dir.join(&format!("{}.conf", l.name));
        fs::write(&path, conf).unwrap();
        let lap = &t.laptops[k];
        let client = start_wg_client(lap, &path, &t.dir.path);
        if l.enabled {
            assert!(
                lap.ping_until(GW_WG_ADDR, Duration::from_secs(15)),
                "{name}: laptop {} gets no answer from the gateway through WireGuard:\n{}",
                l.name,
                tail(&daemon.log, 60)
            );
            assert!(
                lap.ping_until(LAN_HOST, Duration::from_secs(5)),
                "{name}: laptop {} does not reach the LAN host",
                l.name
            );
            if laptop_to_vpc {
                assert!(
                    lap.ping_until(VPC_HOST, Duration::from_secs(10)),
                    "{name}: laptop {} does not reach the VPC host through the imported tunnel:\n{}",
                    l.name,
                    tail(&daemon.log, 60)
                );
            }
            let dump = lap.wg_dump(&client.ifname);
            assert!(
                dump.peers[0].latest_handshake > 0,
                "{name}: {}: no handshake: {dump:?}",
                l.name
            );
        } else {
            assert!(
                !lap.ping_until(GW_WG_ADDR, Duration::from_secs(4)),
                "{name}: the disabled peer {} got through",
                l.name
            );
            let dump = lap.wg_dump(&client.ifname);
            assert_eq!(
                dump.peers[0].latest_handshake, 0,
                "{name}: the disabled peer {} completed a handshake",
                l.name
            );
        }
    }
    assert!(
        t.gw.running(daemon.pid),
        "ipieced exited:\n{}",
        tail(&daemon.log, 80)
    );
    drop(charons);
}

#[test]
fn pfsense_2_5_0_laptops_handshake_and_the_tunnel_comes_up() {
    live(
        "pfsense_2_5_0_laptops_handshake_and_the_tunnel_comes_up",
        "pfsense-2.5.0.xml",
        &[
            Laptop {
                name: "alice-laptop",
                enabled: true,
            },
            Laptop {
                name: "bob",
                enabled: true,
            },
        ],
        &[Vgw {
            tunnel: "AWS-VGW",
            second: false,
            psk: "vgw.psk.one.2500",
        }],
        // Its phase 2 covers the LAN only.
        false,
        false,
    );
}

#[test]
fn pfsense_2_6_0_into_a_running_ipieced_laptops_handshake_the_disabled_one_does_not_and_the_tunnel_comes_up(
) {
    live(
        "pfsense_2_6_0_into_a_running_ipieced_laptops_handshake_the_disabled_one_does_not_and_the_tunnel_comes_up",
        "pfsense-2.6.0.xml",
        &[
            Laptop {
                name: "carol-MacBook",
                enabled: true,
            },
            Laptop {
                name: "dave-old",
                enabled: false,
            },
            Laptop {
                name: "erin",
                enabled: true,
            },
        ],
        &[Vgw {
            tunnel: "VPC-tunnel",
            second: false,
            psk: "vgw.psk.two.2600",
        }],
        true,
        // Into the file of a running ipieced: applied by a reload.
        true,
    );
}

#[test]
fn pfsense_2_7_2_laptops_handshake_and_both_aws_tunnels_come_up() {
    live(
        "pfsense_2_7_2_laptops_handshake_and_both_aws_tunnels_come_up",
        "pfsense-2.7.2.xml",
        &[
            Laptop {
                name: "frank",
                enabled: true,
            },
            Laptop {
                name: "grace",
                enabled: true,
            },
        ],
        &[
            Vgw {
                tunnel: "AWS-vpn-0a1b-tunnel-1",
                second: false,
                psk: "vgw.psk.one.2720",
            },
            Vgw {
                tunnel: "AWS-vpn-0a1b-tunnel-2",
                second: true,
                psk: "vgw.psk.two.2720",
            },
        ],
        true,
        false,
    );
}
