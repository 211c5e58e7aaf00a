//! Golden-file tests of the renderer (tests/fixtures/firewall/*.nft; set
//! `IPIECE_BLESS=1` to rewrite them after a deliberate change), the
//! evaluator's first-match semantics, and the `[firewall]` validation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::config::firewall::Zone;
use crate::config::testutil::TempDir;
use crate::config::{generate_private_key, public_key, write_secret_file, Config, ConfigErrors};

const BASE: &str = r#"[gateway]
name = "gw"
public_endpoint = "vpn.example.com"
lan_prefixes = ["172.16.4.0/24"]
tun_name = "ipiece0"

[wireguard]
address = "172.16.60.1/24"
private_key_file = "wg.key"
remote_prefixes = ["10.0.0.0/16", "10.1.0.0/16"]

[[peers]]
name = "alice"
public_key = "ALICE"
address = "172.16.60.2"

[[peers]]
name = "bob"
public_key = "BOB"
address = "172.16.60.3"
"#;

const FULL: &str = r#"
[firewall]
wan_interface = "eth0"
lan_interface = "eth1"
ssh_from = ["192.168.0.0/24"]

[firewall.aliases]
office = ["192.168.0.0/24", "198.51.100.7"]

[[firewall.rules]]
name = "no-db-for-bob"
from = "peer:bob"
to = "aws"
proto = "tcp"
ports = [5432, "6000-6010"]
action = "drop"

[[firewall.rules]]
name = "office-to-gw-web"
from = "office"
to = "gateway"
proto = "tcp"
ports = [443]
action = "accept"
log = true

[[firewall.rules]]
name = "no-ping-lan"
from = "wg"
to = "172.16.4.0/25"
proto = "icmp"
action = "reject"

[[firewall.port_forwards]]
name = "web"
proto = "tcp"
port = 8443
to = "172.16.4.10:443"
from = ["office"]

[[firewall.port_forwards]]
name = "dns"
proto = "udp"
port = 5353
to = "172.16.4.11:53"
"#;

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    base: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        let gw = generate_private_key();
        write_secret_file(&dir.path().join("wg.key"), format!("{gw}\n").as_bytes()).unwrap();
        let base = BASE
            .replace("ALICE", &public_key(&generate_private_key()).to_string())
            .replace("BOB", &public_key(&generate_private_key()).to_string());
        Fixture {
            path: dir.path().join("gateway.toml"),
            _dir: dir,
            base,
        }
    }

    fn parse(&self, firewall: &str) -> Result<Config, ConfigErrors> {
        Config::parse(&self.path, &format!("{}{firewall}", self.base))
    }

    fn policy(&self, firewall: &str) -> Policy {
        Policy::compile(&self.parse(firewall).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The single error of `firewall`, as `line:column: field: message`
    /// with the file name left out.
    fn error(&self, firewall: &str) -> String {
        let e = self.parse(firewall).expect_err("expected an error");
        assert_eq!(e.len(), 1, "{e}");
        let s = e.0[0].to_string();
        s[self.path.to_str().unwrap().len() + 1..].to_owned()
    }
}

fn ifs() -> Interfaces {
    Interfaces {
        wan: "eth0".into(),
        lan: "eth1".into(),
    }
}

fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/firewall")
        .join(name);
    if std::env::var("IPIECE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (IPIECE_BLESS=1 writes it)", path.display()));
    assert_eq!(text, want, "{} differs from the rendering", path.display());
}

#[test]
fn default_policy_renders_as_the_golden_file() {
    let f = Fixture::new();
    golden("default.nft", &f.policy("").render(&ifs()));
}

#[test]
fn rules_aliases_peers_and_forwards_render_as_the_golden_file() {
    let f = Fixture::new();
    golden("full.nft", &f.policy(FULL).render(&ifs()));
}

/// `[lan.dhcp]` and `[dns]` on: DHCP from the LAN interface, DNS from lan
/// and wg, both before the anti-lockout; nothing for the WAN.
const LAN_SERVICES: &str = r#"
[lan]
interface = "eth1"
address = "172.16.4.1/24"

[lan.dhcp]
range = ["172.16.4.100", "172.16.4.150"]

[dns]
domain = "lab.internal"
"#;

#[test]
fn lan_services_open_dhcp_and_dns_to_lan_and_wg_only_as_the_golden_file() {
    let f = Fixture::new();
    let text = f.policy(LAN_SERVICES).render(&ifs());
    golden("lan-services.nft", &text);
    for l in text
        .lines()
        .filter(|l| l.contains("dport 53") || l.contains("dport 67"))
    {
        assert!(
            !l.contains("\"eth0\""),
            "the WAN reaches a LAN service: {l}"
        );
    }
    assert!(text.contains("iifname \"eth1\" udp dport 67 counter accept comment \"lan: dhcp\""));
    assert!(text.contains("iifname \"ipiece0\" ip saddr 172.16.60.0/24 tcp dport 53 counter accept comment \"wg: dns\""));
    // Without them, neither port is opened.
    let plain = f.policy("").render(&ifs());
    assert!(
        !plain.contains("dport 67") && !plain.contains("dport 53"),
        "{plain}"
    );
    // DNS alone: no DHCP; lan.interface is the firewall's LAN interface.
    let dns_only = f.policy("[lan]\ninterface = \"lan7\"\naddress = \"172.16.4.1/24\"\n[dns]\ndomain = \"lab.internal\"\n");
    assert_eq!(dns_only.lan_interface.as_deref(), Some("lan7"));
    let text = dns_only.render(&ifs());
    assert!(
        !text.contains("dport 67") && text.contains("\"lan: dns\""),
        "{text}"
    );
}

#[test]
fn disabled_firewall_only_removes_the_table() {
    let f = Fixture::new();
    let text = f.policy("[firewall]\nenabled = false\n").render(&ifs());
    golden("disabled.nft", &text);
    assert!(!text.contains("chain"));
}

#[test]
fn the_rule_on_a_line_is_named_by_its_comment() {
    let f = Fixture::new();
    let text = f.policy(FULL).render(&ifs());
    let n = text
        .lines()
        .position(|l| l.contains("rule no-db-for-bob"))
        .unwrap();
    assert_eq!(
        nft::rule_at_line(&text, n + 1).as_deref(),
        Some("rule no-db-for-bob")
    );
    assert_eq!(nft::rule_at_line(&text, 1), None);
    assert_eq!(nft::rule_at_line(&text, 100_000), None);
}

fn tcp(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&40u16.to_be_bytes());
    b[8] = 64;
    b[9] = 6;
    let s: std::net::Ipv4Addr = src.parse().unwrap();
    let d: std::net::Ipv4Addr = dst.parse().unwrap();
    b[12..16].copy_from_slice(&s.octets());
    b[16..20].copy_from_slice(&d.octets());
    b[20..22].copy_from_slice(&40000u16.to_be_bytes());
    b[22..24].copy_from_slice(&dport.to_be_bytes());
    b
}

#[test]
fn first_match_wins_then_the_defaults() {
    let f = Fixture::new();
    let p = f.policy(FULL);
    let info = |s, d, port| PacketInfo::parse(&tcp(s, d, port)).unwrap();
    // bob -> aws 5432 and 6005: the drop rule (index 0).
    for port in [5432, 6005] {
        let d = p.decide(Zone::Wg, Zone::Aws, &info("172.16.60.3", "10.0.1.10", port));
        assert_eq!(
            d,
            Decision {
                rule: Some(0),
                accept: false
            }
        );
    }
    // alice, or bob on another port: the default (wg reaches aws).
    let d = p.decide(Zone::Wg, Zone::Aws, &info("172.16.60.2", "10.0.1.10", 5432));
    assert_eq!(
        d,
        Decision {
            rule: None,
            accept: true
        }
    );
    let d = p.decide(Zone::Wg, Zone::Aws, &info("172.16.60.3", "10.0.1.10", 6011));
    assert_eq!(
        d,
        Decision {
            rule: None,
            accept: true
        }
    );
    // aws -> wg is allowed by default; wg -> wan and aws -> wan are not.
    assert!(
        p.decide(Zone::Aws, Zone::Wg, &info("10.0.1.10", "172.16.60.3", 22))
            .accept
    );
    assert!(
        !p.decide(Zone::Wg, Zone::Wan, &info("172.16.60.3", "8.8.8.8", 53))
            .accept
    );
    assert!(
        !p.decide(Zone::Aws, Zone::Wan, &info("10.0.1.10", "8.8.8.8", 53))
            .accept
    );
    assert!(
        p.decide(Zone::Lan, Zone::Wan, &info("172.16.4.10", "8.8.8.8", 53))
            .accept
    );
    assert!(
        !p.decide(
            Zone::Wan,
            Zone::Lan,
            &info("192.168.1.9", "172.16.4.10", 22)
        )
        .accept
    );
}

#[test]
fn evaluator_counts_tracks_replies_and_keeps_counters_across_reloads() {
    let f = Fixture::new();
    let mut e = Evaluator::new();
    // No policy yet: everything passes.
    assert!(e.allow(Zone::Wg, Zone::Aws, &tcp("172.16.60.3", "10.0.1.10", 5432)));
    let p = Arc::new(f.policy(FULL));
    e.set_policy(p.clone());
    e.tick(std::time::Instant::now());
    assert!(!e.allow(Zone::Wg, Zone::Aws, &tcp("172.16.60.3", "10.0.1.10", 5432)));
    assert!(!e.allow(Zone::Wg, Zone::Aws, &tcp("172.16.60.3", "10.0.1.10", 5432)));
    assert!(e.allow(Zone::Wg, Zone::Aws, &tcp("172.16.60.2", "10.0.1.10", 5432)));
    let c = e.counters();
    assert_eq!(c[0].name, "rule no-db-for-bob");
    assert_eq!((c[0].packets, c[0].bytes), (2, 80));
    // A rule dropping aws -> wg does not cut the replies of an accepted
    // connection (the kernel's ct state established).
    let deny_back = "[[firewall.rules]]\nname = \"no-vpc-to-wg\"\nfrom = \"aws\"\nto = \"wg\"\naction = \"drop\"\n";
    let mut reply = tcp("10.0.1.10", "172.16.60.2", 40000);
    reply[20..22].copy_from_slice(&5432u16.to_be_bytes());
    e.set_policy(Arc::new(f.policy(&format!("{FULL}{deny_back}"))));
    assert_eq!(e.counters()[0].packets, 2, "counter kept across the reload");
    assert!(e.allow(Zone::Aws, Zone::Wg, &reply));
    assert!(!e.allow(Zone::Aws, Zone::Wg, &tcp("10.0.1.10", "172.16.60.2", 22)));
    // Disabled: everything passes.
    e.set_policy(Arc::new(f.policy("[firewall]\nenabled = false\n")));
    assert!(e.allow(Zone::Wg, Zone::Aws, &tcp("172.16.60.3", "10.0.1.10", 5432)));
}

#[test]
fn interfaces_are_found_from_the_routes() {
    let json = r#"[{"dst":"default","gateway":"192.168.1.1","dev":"eth0","flags":[]},
        {"dst":"172.16.4.0/24","dev":"lan0","protocol":"kernel","scope":"link","prefsrc":"172.16.4.1","flags":[]},
        {"dst":"192.168.1.0/24","dev":"eth0","protocol":"kernel","scope":"link","flags":[]}]"#;
    let lan: Vec<ipnet::IpNet> = vec!["172.16.4.0/24".parse().unwrap()];
    assert_eq!(
        interfaces_from_routes(json, &lan),
        (Some("eth0".into()), Some("lan0".into()))
    );
    assert_eq!(interfaces_from_routes("[]", &lan), (None, None));
    assert_eq!(interfaces_from_routes("not json", &lan), (None, None));
}

#[test]
fn bad_firewall_tables_are_located_and_named() {
    let f = Fixture::new();
    let base_lines = BASE.lines().count();
    let at = |l: usize| base_lines + l;
    let cases: &[(&str, String)] = &[
        (
            "[firewall]\nwan_interface = \"eth0\"\nlan_interface = \"eth0\"\n",
            format!("{}:17: firewall.lan_interface: the LAN interface must differ", at(3)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"dmz\"\nto = \"aws\"\naction = \"drop\"\n",
            format!("{}:8: firewall.rules[0].from: `dmz` is not a zone", at(3)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"peer:carol\"\nto = \"aws\"\naction = \"drop\"\n",
            format!("{}:8: firewall.rules[0].from: no peer named `carol`", at(3)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"wg\"\nto = \"aws\"\nproto = \"tcp\"\nports = [70000]\naction = \"drop\"\n",
            format!("{}:10: firewall.rules[0].ports[0]: port must be between 1 and 65535", at(6)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"wg\"\nto = \"aws\"\nproto = \"tcp\"\nports = [\"10-5\"]\naction = \"drop\"\n",
            format!("{}:10: firewall.rules[0].ports[0]: `10-5`: the range is empty", at(6)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"wg\"\nto = \"aws\"\nproto = \"icmp\"\nports = [22]\naction = \"drop\"\n",
            format!("{}:9: firewall.rules[0].ports: ports need proto", at(6)),
        ),
        (
            "[[firewall.rules]]\nname = \"x\"\nfrom = \"wg\"\nto = \"aws\"\naction = \"allow\"\n",
            format!("{}:10: firewall.rules[0].action: `allow` is not an action", at(5)),
        ),
        (
            "[[firewall.port_forwards]]\nname = \"x\"\nproto = \"tcp\"\nport = 80\nto = \"10.0.1.10:80\"\n",
            format!("{}:6: firewall.port_forwards[0].to: 10.0.1.10 is outside gateway.lan_prefixes", at(5)),
        ),
        (
            "[[firewall.port_forwards]]\nname = \"x\"\nproto = \"udp\"\nport = 4500\nto = \"172.16.4.10:4500\"\n",
            format!("{}:8: firewall.port_forwards[0].port: UDP 4500 is one of ipieced's own ports", at(4)),
        ),
        (
            "[firewall.aliases]\nlan = [\"10.9.0.0/16\"]\n",
            format!("{}:1: firewall.aliases.lan: `lan` is a zone's name", at(2)),
        ),
        (
            "[firewall]\nssh_from = [\"192.168.0.1/24\"]\n",
            format!("{}:13: firewall.ssh_from[0]: `192.168.0.1/24` has host bits set", at(2)),
        ),
    ];
    for (text, want) in cases {
        let got = f.error(text);
        assert!(
            got.starts_with(want.as_str()),
            "for:\n{text}\ngot:  {got}\nwant: {want}..."
        );
    }
}

#[test]
fn an_ipv6_wireguard_subnet_renders_per_family_as_the_golden_file() {
    let f = Fixture {
        base: Fixture::new()
            .base
            .replace("\"172.16.60.1/24\"", "\"fd00:60::1/64\"")
            .replace("\"172.16.60.2\"", "\"fd00:60::2\"")
            .replace("\"172.16.60.3\"", "\"fd00:60::3\""),
        ..Fixture::new()
    };
    let text = f.policy(FULL).render(&ifs());
    golden("ipv6-wg.nft", &text);
    // bob (IPv6) can never reach aws (IPv4): the rule renders to nothing.
    assert!(!text.contains("rule no-db-for-bob"), "{text}");
    assert!(text.contains("ip6 saddr fd00:60::/64"), "{text}");
}

#[test]
fn the_kernel_mss_clamp_follows_ipsec_tcp_mss() {
    let f = Fixture::new();
    let text = f.policy("[ipsec]\ntcp_mss = 1300\n").render(&ifs());
    assert!(
        text.contains("tcp option maxseg size set 1300 comment \"mss aws\""),
        "{text}"
    );
    assert!(!text.contains("set 1379"), "{text}");
    // The laptops' clamp stays the WireGuard MTU minus 40.
    assert!(text.contains("tcp option maxseg size set 1380"), "{text}");
}
