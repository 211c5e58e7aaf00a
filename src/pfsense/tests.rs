//! The mapping of each fixture of `tests/fixtures/pfsense/` (see its
//! README for how they were checked against pfSense's source).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::*;
use crate::config::firewall::{FirewallAction, FirewallProto};

const F250: &str = include_str!("../../tests/fixtures/pfsense/pfsense-2.5.0.xml");
const F260: &str = include_str!("../../tests/fixtures/pfsense/pfsense-2.6.0.xml");
const F272: &str = include_str!("../../tests/fixtures/pfsense/pfsense-2.7.2.xml");
const MALFORMED: &str = include_str!("../../tests/fixtures/pfsense/malformed.xml");
const FOREIGN: &str = include_str!("../../tests/fixtures/pfsense/foreign.xml");

fn plan(text: &str) -> ImportPlan {
    parse(Path::new("config.xml"), text, &ParseOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn key(s: &str) -> Key {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The not-mapped entry whose `what` contains `needle`.
fn skipped<'a>(p: &'a ImportPlan, needle: &str) -> &'a ReportItem {
    p.report
        .not_mapped
        .iter()
        .find(|i| i.what.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "nothing about {needle:?} in the not-mapped report:\n{}",
                p.report
                    .not_mapped
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

fn noted<'a>(p: &'a ImportPlan, what: &str, why: &str) -> &'a ReportItem {
    p.report
        .notes
        .iter()
        .find(|i| i.what.contains(what) && i.why.contains(why))
        .unwrap_or_else(|| panic!("no note {what:?} / {why:?} in {:#?}", p.report.notes))
}

fn rule<'a>(p: &'a ImportPlan, name: &str) -> &'a Rule {
    p.rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name}: {:#?}", p.rules))
}

#[test]
fn pfsense_2_5_0_builtin_wireguard_with_base64_keys_and_an_ikev1_entry() {
    let p = plan(F250);
    assert_eq!(p.version.as_deref(), Some("21.4"));
    let wg = p.wireguard.as_ref().expect("the WireGuard tunnel");
    assert_eq!(wg.name, "wg0");
    assert_eq!(wg.listen_port, Some(51821));
    assert_eq!(wg.address, net("172.16.60.1/24"));
    assert_eq!(
        wg.private_key,
        key("aPJByNXKI22GT9d3yT5WhgU1Q/gUVB4B9jz75JYVlUY=")
    );
    noted(&p, "WireGuard tunnel wg0: private key", "base64-encoded");
    assert_eq!(p.peers.len(), 2);
    let alice = &p.peers[0];
    assert_eq!(alice.name, "alice-laptop");
    assert_eq!(
        alice.public_key,
        key("Y1XKefIFqOZP2Nxg4v+esMY/oCP6jnFDfVHKSVMSBk0=")
    );
    assert_eq!(alice.address, "172.16.60.10".parse::<IpAddr>().unwrap());
    assert_eq!(
        alice.psk,
        Some(key("6kUoMvUI/pPXwCb7QkRae3T/qj7lJg5Od9D0IL9yH1A="))
    );
    assert_eq!(alice.keepalive, Some(25));
    assert!(alice.enabled, "2.5.0 has no per-peer switch: enabled");
    let bob = &p.peers[1];
    assert_eq!((bob.name.as_str(), bob.psk), ("bob", None));
    // bob's second allowed IP is a network behind him: reported.
    let item = skipped(&p, "allowed IP 192.168.77.0/24");
    assert!(item.why.contains("site-to-site"), "{item}");

    assert_eq!(p.tunnels.len(), 1, "the IKEv1 phase 1 is not a tunnel");
    let t = &p.tunnels[0];
    assert_eq!(t.name, "AWS-VGW");
    assert_eq!(t.remote_address, Ipv4Addr::new(203, 0, 113, 130));
    assert_eq!(t.psk.expose(), b"vgw.psk.one.2500");
    assert_eq!(
        (t.local_id.as_deref(), t.remote_id.as_deref()),
        (None, None)
    );
    assert_eq!(
        t.ike_proposals.as_deref(),
        Some("aes128-sha256-modp2048,aes128gcm16-prfsha256-ecp256")
    );
    assert_eq!(
        t.esp_proposals.as_deref(),
        Some("aes128-sha256-modp2048,aes128gcm16-modp2048")
    );
    assert_eq!(
        (t.ike_lifetime, t.child_lifetime),
        (None, None),
        "pfSense's 28800/3600 are ipiece's defaults"
    );
    assert_eq!((t.dpd_interval, t.dpd_timeout), (Some(10), Some(60)));
    assert_eq!(t.local_ts, Some(vec![net("172.16.4.0/24")]));
    assert_eq!(t.remote_ts, Some(vec![net("10.0.0.0/16")]));
    assert_eq!(t.start_action, StartAction::Initiate);
    assert!(t.enabled);
    let v1 = skipped(&p, "Partner (IKEv1)");
    assert!(
        v1.why.contains("IKEv1") && v1.why.contains("not supported"),
        "{v1}"
    );
    skipped(&p, "\"Partner LAN\"");
    assert_eq!(
        p.remote_prefixes,
        vec![net("10.0.0.0/16")],
        "not the IKEv1 partner's"
    );
    assert_eq!(p.lan_prefixes, vec![net("172.16.4.0/24")]);
    assert_eq!(p.wan_address, Some(Ipv4Addr::new(192, 168, 1, 2)));

    let lan = p.lan.as_ref().unwrap();
    assert_eq!(lan.address, "172.16.4.1/24".parse().unwrap());
    let dhcp = lan.dhcp.as_ref().unwrap();
    assert_eq!(
        dhcp.range,
        (
            Ipv4Addr::new(172, 16, 4, 100),
            Ipv4Addr::new(172, 16, 4, 150)
        )
    );
    assert_eq!(dhcp.lease_time, Some(7200));
    assert_eq!(dhcp.statics.len(), 2);
    assert_eq!(dhcp.statics[1].mac, "00:50:56:aa:bb:02", "MACs lower-cased");
    assert_eq!(dhcp.statics[0].hostname.as_deref(), Some("build01"));
    assert_eq!((dhcp.router, dhcp.dns_servers.clone()), (None, vec![]));

    assert_eq!(p.port_forwards.len(), 1);
    let f = &p.port_forwards[0];
    assert_eq!(
        (f.name.as_str(), f.proto, f.port, f.to.to_string()),
        (
            "Intranet-web",
            FirewallProto::Tcp,
            8443,
            "172.16.4.10:443".into()
        )
    );
    assert!(f.from.is_empty());
    noted(
        &p,
        "NAT Intranet web",
        "implied by the imported port forward",
    );
    noted(&p, "Default allow LAN to any rule", "default policy");
    skipped(&p, "Default allow LAN IPv6 to any rule");
    assert_eq!(p.rules.len(), 1, "{:#?}", p.rules);
    let r = rule(&p, "No-VPC-databases-from-the-LAN");
    assert_eq!(
        (
            r.from.as_str(),
            r.to.as_str(),
            r.proto,
            r.ports.clone(),
            r.action,
            r.log
        ),
        (
            "lan",
            "10.0.5.0/24",
            FirewallProto::Tcp,
            vec![(5432, 5432)],
            FirewallAction::Drop,
            true
        )
    );
    skipped(&p, "<system>");
    skipped(&p, "interfaces/wan");
    skipped(&p, "dhcpd/lan/numberoptions");
    assert!(
        !p.report
            .not_mapped
            .iter()
            .any(|i| i.what.contains("openvpn") || i.what.contains("revision")),
        "an empty <openvpn/> and the revision are nothing to report: {:#?}",
        p.report.not_mapped
    );
}

#[test]
fn pfsense_2_6_0_package_schema_disabled_peer_two_phase2_mobile_and_aliases() {
    let p = plan(F260);
    let wg = p.wireguard.as_ref().unwrap();
    assert_eq!(wg.name, "tun_wg0");
    assert_eq!(
        wg.private_key,
        key("0Ge8buiOWZhLbGWrPjSeg0hZY3bJDVKcIwfnyqOjOXk=")
    );
    assert_eq!(wg.mtu, Some(1420));
    assert!(
        !p.report
            .notes
            .iter()
            .any(|n| n.why.contains("base64-encoded")),
        "plain keys"
    );
    let names: Vec<&str> = p.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["carol-MacBook", "dave-old", "erin"]);
    assert!(p.peers[0].enabled && !p.peers[1].enabled && p.peers[2].enabled);
    noted(&p, "WireGuard peer dave-old", "imported disabled");
    assert_eq!(
        p.peers[0].psk,
        Some(key("qNGjU1x4wpPhRP+iW4lWoSGyjpSxk4tsVZayE8wxphI="))
    );
    assert_eq!(p.peers[1].keepalive, None);
    noted(
        &p,
        "WireGuard peer erin: endpoint 198.51.100.99",
        "never dials",
    );

    assert_eq!(p.tunnels.len(), 1, "the mobile phase 1 is not a tunnel");
    let t = &p.tunnels[0];
    assert_eq!(t.name, "VPC-tunnel");
    assert_eq!(t.local_id.as_deref(), Some("203.0.113.2"));
    assert_eq!(t.remote_id.as_deref(), Some("203.0.113.130"));
    // prf-algorithm counts only with prfselect_enable (pfSense does the same).
    assert_eq!(t.ike_proposals.as_deref(), Some("aes256-sha256-modp2048"));
    skipped(&p, "\"VPC tunnel\" (ikeid 1): encryption algorithm");
    // aes256gcm (ICV 128), then AES "auto": 256, 192 (reported), 128.
    assert_eq!(
        t.esp_proposals.as_deref(),
        Some("aes256gcm16-modp2048,aes256-sha256-modp2048,aes128-sha256-modp2048")
    );
    let aes192 = skipped(&p, "\"LAN to VPC\" (ikeid 1): algorithm");
    assert!(aes192.why.contains("AES-192"), "{aes192}");
    assert_eq!(
        t.local_ts,
        Some(vec![net("172.16.4.0/24"), net("172.16.60.0/24")])
    );
    assert_eq!(t.remote_ts, Some(vec![net("10.0.0.0/16")]));
    assert_eq!((t.dpd_interval, t.dpd_timeout), (Some(10), Some(30)));
    noted(&p, "\"VPC tunnel\"", "2 phase 2 entries");
    // The mobile section: phase 1, its phase 2, the client settings, the key.
    assert!(skipped(&p, "\"Mobile clients\"").why.contains("mobile"));
    skipped(&p, "\"Mobile phase 2\"");
    skipped(&p, "ipsec/client");
    skipped(&p, "ipsec/mobilekey road.user");
    noted(&p, "dhcpd/lan", "off");

    assert_eq!(
        p.aliases,
        vec![
            (
                "office".to_owned(),
                vec![net("198.51.100.0/24"), net("192.0.2.7/32")]
            ),
            (
                "dbservers".to_owned(),
                vec![net("10.0.5.10/32"), net("10.0.5.11/32")]
            ),
        ]
    );
    noted(&p, "alias dbports (port)", "written into the rules");
    assert!(skipped(&p, "alias blocklist (urltable)")
        .why
        .contains("urltable"));
    assert!(skipped(&p, "alias buildhost (host)")
        .why
        .contains("host names"));

    let r = rule(&p, "LAN-no-direct-database-access");
    assert_eq!(
        (r.from.as_str(), r.to.as_str(), r.ports.clone(), r.action),
        (
            "lan",
            "dbservers",
            vec![(5432, 5432), (6000, 6010)],
            FirewallAction::Reject
        )
    );
    let smtp: Vec<&Rule> = p
        .rules
        .iter()
        .filter(|r| r.name.starts_with("No-SMTP-out"))
        .collect();
    assert_eq!(smtp.len(), 8, "any destination x tcp/udp: {smtp:#?}");
    assert!(smtp
        .iter()
        .all(|r| r.from == "lan" && r.ports == [(25, 25)] && r.to != "lan"));
    rule(&p, "No-SMTP-out-wan-udp");
    skipped(&p, "Block the URL table");
    let wg_rule = rule(&p, "WireGuard");
    assert_eq!(
        (wg_rule.from.as_str(), wg_rule.to.as_str(), wg_rule.proto),
        ("wan", "gateway", FirewallProto::Udp)
    );
    skipped(&p, "Temporary allow-all (disabled)");

    let fwd: Vec<&PortForward> = p.port_forwards.iter().collect();
    assert_eq!(fwd.len(), 2, "{fwd:#?}");
    assert_eq!(fwd[0].name, "SSH-to-build01-tcp");
    assert_eq!(fwd[1].proto, FirewallProto::Udp);
    assert_eq!(fwd[0].from, vec!["office".to_owned()]);
    assert_eq!(fwd[0].to.to_string(), "172.16.4.20:22");
    assert!(skipped(&p, "RTP range").why.contains("range"));
    skipped(&p, "nat/outbound (hybrid)");
    skipped(&p, "LAN via WAN");
}

#[test]
fn pfsense_2_7_2_vti_tunnels_to_aws_and_rules_on_every_tab() {
    let p = plan(F272);
    assert_eq!(p.version.as_deref(), Some("23.3"));
    let wg = p.wireguard.as_ref().unwrap();
    assert_eq!(wg.name, "tun_wg0", "the tunnel with peers");
    skipped(&p, "WireGuard tunnel tun_wg1");
    skipped(&p, "address fd00:60::1/64");
    skipped(&p, "WireGuard peer orphan");
    assert_eq!(p.peers.len(), 2);
    assert_eq!(p.peers[0].keepalive, Some(15));

    assert_eq!(p.tunnels.len(), 2);
    let (t1, t2) = (&p.tunnels[0], &p.tunnels[1]);
    assert_eq!(t1.name, "AWS-vpn-0a1b-tunnel-1");
    assert_eq!(t2.remote_address, Ipv4Addr::new(192, 0, 2, 130));
    assert_eq!(t1.inside_cidr, Some("169.254.10.0/30".parse().unwrap()));
    assert_eq!(t2.inside_cidr, Some("169.254.11.0/30".parse().unwrap()));
    assert_eq!(
        (t1.local_ts.clone(), t1.remote_ts.clone()),
        (None, None),
        "VTI is route-based"
    );
    assert_eq!(
        t1.ike_proposals.as_deref(),
        Some("aes128gcm16-prfsha256-ecp256")
    );
    assert_eq!(
        t2.ike_proposals.as_deref(),
        Some("aes128gcm16-prfsha256-ecp384")
    );
    assert!(skipped(&p, "tunnel 1\" (ikeid 1): encryption algorithm")
        .why
        .contains("AES-192"));
    assert_eq!(
        t1.esp_proposals.as_deref(),
        Some("aes128gcm16-ecp256,aes256gcm16-ecp256"),
        "aes256gcm auto: the 128-bit ICV only"
    );
    assert!(skipped(&p, "\"AWS tunnel 1 VTI\" (ikeid 1): algorithm")
        .why
        .contains("ICV"));
    assert_eq!((t1.dpd_interval, t1.dpd_timeout), (Some(10), Some(40)));
    noted(&p, "tunnel 1\"", "static routes through it");
    noted(
        &p,
        "static route 10.0.0.0/16 via AWS1_VTIV4",
        "through an IPsec VTI",
    );
    skipped(&p, "static route 192.168.50.0/24 via WAN_GW");
    assert_eq!(p.remote_prefixes, vec![net("10.0.0.0/16")]);

    let ssh = rule(&p, "SSH-from-the-office");
    assert_eq!(
        (
            ssh.from.as_str(),
            ssh.to.as_str(),
            ssh.ports.clone(),
            ssh.log
        ),
        ("198.51.100.0/24", "gateway", vec![(22, 22)], true)
    );
    let grace = rule(&p, "grace-no-VPC-databases");
    assert_eq!(
        grace.from, "peer:grace",
        "a laptop's address is that laptop"
    );
    let icmp = rule(&p, "VPC-may-ping-the-LAN");
    assert_eq!(
        (
            icmp.from.as_str(),
            icmp.to.as_str(),
            icmp.proto,
            icmp.action
        ),
        ("aws", "lan", FirewallProto::Icmp, FirewallAction::Accept)
    );
    assert!(skipped(&p, "Guests out").why.contains("opt1"));
    assert!(skipped(&p, "Floating block").why.contains("floating"));
    assert!(skipped(&p, "RDP in working hours")
        .why
        .contains("schedule `workhours`"));
    skipped(&p, "Guest portal");
    skipped(&p, "dhcpd/opt1");
    let dhcp = p.lan.as_ref().unwrap().dhcp.as_ref().unwrap();
    assert_eq!(dhcp.dns_servers, [Ipv4Addr::new(172, 16, 4, 1)]);
    assert_eq!(dhcp.lease_time, Some(3600));
    skipped(&p, "interfaces/opt1");
    skipped(&p, "<openvpn>");
    skipped(&p, "<unbound>");
    skipped(&p, "installedpackages/haproxy");
    skipped(&p, "ipsec/logging");
}

#[test]
fn every_report_item_names_a_line_of_the_xml() {
    for (name, text) in [("2.5.0", F250), ("2.6.0", F260), ("2.7.2", F272)] {
        let p = plan(text);
        let lines = text.lines().count() as u32;
        for i in p.report.not_mapped.iter().chain(&p.report.notes) {
            assert!(i.line >= 1 && i.line <= lines, "{name}: {i}");
        }
    }
}

#[test]
fn secrets_never_show_in_debug_or_the_report() {
    for text in [F250, F260, F272] {
        let p = plan(text);
        let shown = format!("{p:?}{:?}", p.report);
        for secret in [
            "vgw.psk",
            "mobile.user.secret",
            "legacy.partner.key",
            "aPJByNXKI22GT9d3",
            "0Ge8buiOWZhLbGWr",
            "WCTV3HpE",
            "6kUoMvUI",
            "qNGjU1x4",
        ] {
            assert!(
                !shown.contains(secret),
                "{secret} shows in the plan or report"
            );
        }
    }
}

#[test]
fn malformed_xml_is_an_error_with_line_and_column() {
    let e = parse(Path::new("bad.xml"), MALFORMED, &ParseOptions::default()).unwrap_err();
    match &e {
        PfError::Malformed { line, column, .. } => assert_eq!((*line, *column), (13, 3), "{e}"),
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .starts_with("bad.xml:13:3: not a well-formed XML document"),
        "{e}"
    );
}

#[test]
fn a_foreign_document_is_refused_naming_its_root() {
    let e = parse(Path::new("x.xml"), FOREIGN, &ParseOptions::default()).unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(
            e,
            PfError::Foreign {
                line: 2,
                column: 1,
                ..
            }
        ),
        "{s}"
    );
    assert!(s.contains("<opnsense>") && s.contains("OPNsense"), "{s}");
    let aws = "<?xml version=\"1.0\"?>\n<vpn_connection id=\"vpn-1\"/>";
    let s = parse(Path::new("x.xml"), aws, &ParseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(s.contains("wgctl aws import"), "{s}");
}

#[test]
fn a_bad_key_is_located_and_not_quoted() {
    let text = F260.replace(
        "EpCd3iTXK7zDwD/XqwGrDTaXqAwQzpCkvD6V3EtLJmE=",
        "not-a-key-but-a-secret-looking-string",
    );
    let e = parse(Path::new("c.xml"), &text, &ParseOptions::default()).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, PfError::Invalid { .. }), "{s}");
    assert!(
        s.contains("WireGuard peer erin") && s.contains("<publickey>"),
        "{s}"
    );
    assert!(!s.contains("secret-looking"), "{s}");
}

#[test]
fn choosing_another_wireguard_tunnel() {
    let opts = ParseOptions {
        wg_tunnel: Some("tun_wg1".into()),
    };
    let p = parse(Path::new("c.xml"), F272, &opts).unwrap();
    assert_eq!(p.wireguard.unwrap().address, net("172.16.61.1/24"));
    assert!(p.peers.is_empty());
    let opts = ParseOptions {
        wg_tunnel: Some("tun_wg9".into()),
    };
    let s = parse(Path::new("c.xml"), F272, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        s.contains("tun_wg9") && s.contains("tun_wg0, tun_wg1"),
        "{s}"
    );
}

#[test]
fn names_are_sanitized_and_unique() {
    assert_eq!(
        sanitize_name("  carol (MacBook) ", 64).as_deref(),
        Some("carol-MacBook")
    );
    assert_eq!(sanitize_name("***", 64), None);
    assert_eq!(
        sanitize_name("a very long description indeed", 10).as_deref(),
        Some("a-very-lon")
    );
    let taken = vec!["x".to_owned(), "x-2".to_owned()];
    assert_eq!(unique_name("x", &taken, 64), "x-3");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Whatever a config.xml holds (cut anywhere, a character changed
    /// anywhere), reading it returns a plan or an error, never a panic.
    #[test]
    fn reading_never_panics(which in 0usize..3, cut in 0.0f64..1.0, at in 0.0f64..1.0, ch in proptest::char::any()) {
        let text = [F250, F260, F272][which];
        let mut chars: Vec<char> = text.chars().collect();
        let i = ((chars.len() as f64) * at) as usize % chars.len();
        chars[i] = ch;
        let n = ((chars.len() as f64) * cut) as usize;
        let s: String = chars[..n].iter().collect();
        let _ = parse(Path::new("p.xml"), &s, &ParseOptions::default());
        let full: String = chars.iter().collect();
        let _ = parse(Path::new("p.xml"), &full, &ParseOptions::default());
    }
}
