//! dnsmasq's configuration, rendered from the TOML (dnsmasq(8) option names,
//! one per line, as in a `--conf-file`), and the hosts file it reads with
//! `addn-hosts` (re-read on SIGHUP without a restart).
//!
//! Listening: `bind-interfaces` with a `listen-address` for the gateway's
//! LAN address and its WireGuard address only, `except-interface` for the
//! WAN, no DHCP on the TUN. Upstreams only from the file (`no-resolv`), and
//! the gateway's own `/etc/hosts` is not served (`no-hosts`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::lan::{check_dns_label, DhcpConfig, DnsConfig};
use crate::config::Config;

/// Where dnsmasq keeps its files (all under ipieced's state directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `pid-file`.
    pub pid_file: PathBuf,
    /// `dhcp-leasefile`.
    pub lease_file: PathBuf,
    /// `addn-hosts`: the laptops and `[[dns.hosts]]`.
    pub hosts_file: PathBuf,
}

/// What dnsmasq runs with: its configuration file and hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The `--conf-file` text.
    pub conf: String,
    /// The `addn-hosts` text.
    pub hosts: String,
    /// The addresses it listens on (DNS, and DHCP where a range is).
    pub listen: Vec<IpAddr>,
    /// Enabled peers whose name is no DNS name (they get no name).
    pub unnamed_peers: Vec<String>,
}

/// What a new configuration asks of dnsmasq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing changed for dnsmasq.
    None,
    /// Only the hosts file changed (peers or `[[dns.hosts]]`): write it and
    /// send SIGHUP (dnsmasq re-reads it, DHCP and caches stay).
    Hosts,
    /// The configuration changed (DHCP, DNS options, listen addresses):
    /// write both files and restart dnsmasq.
    Restart,
    /// dnsmasq was not wanted and now is.
    Start,
    /// dnsmasq was wanted and no longer is.
    Stop,
}

/// Decides what going from `old` to `new` (`None`: no dnsmasq) requires.
pub fn plan_change(old: Option<&Rendered>, new: Option<&Rendered>) -> Change {
    match (old, new) {
        (None, None) => Change::None,
        (None, Some(_)) => Change::Start,
        (Some(_), None) => Change::Stop,
        (Some(o), Some(n)) if o.conf != n.conf => Change::Restart,
        (Some(o), Some(n)) if o.hosts != n.hosts => Change::Hosts,
        (Some(_), Some(_)) => Change::None,
    }
}

/// dnsmasq's files for `cfg`, or `None` when the file asks for neither DHCP
/// (`[lan.dhcp]`) nor DNS (`[dns]`). `user`: the account dnsmasq drops to;
/// `wan_interface`: the WAN, never listened on.
pub fn render(
    cfg: &Config,
    paths: &Paths,
    user: &str,
    wan_interface: Option<&str>,
) -> Option<Rendered> {
    let dhcp = cfg.lan.as_ref().and_then(|l| l.dhcp.as_ref());
    let dns = cfg.dns.as_ref();
    if dhcp.is_none() && dns.is_none() {
        return None;
    }
    let mut listen = Vec::new();
    if let Some(lan) = &cfg.lan {
        listen.push(IpAddr::V4(lan.address.addr()));
    }
    if dns.is_some() {
        listen.push(cfg.wireguard.address.addr());
    }
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# dnsmasq configuration rendered by ipieced from {}.\n\
         # Do not edit: it is written again on every start and reload.",
        cfg.path.display()
    );
    c.push_str("\n# Processes and files\n");
    let _ = writeln!(c, "user={user}");
    let _ = writeln!(c, "pid-file={}", paths.pid_file.display());
    c.push_str("log-facility=-\n");
    c.push_str("\n# Listen on the LAN and WireGuard addresses only, never on the WAN\n");
    c.push_str("bind-interfaces\n");
    for a in &listen {
        let _ = writeln!(c, "listen-address={a}");
    }
    if let Some(wan) = wan_interface {
        let _ = writeln!(c, "except-interface={wan}");
    }
    let _ = writeln!(c, "no-dhcp-interface={}", cfg.gateway.tun_name);
    render_dns(&mut c, dns, paths);
    if let (Some(lan), Some(dhcp)) = (&cfg.lan, dhcp) {
        render_dhcp(&mut c, lan.address.prefix_len(), dhcp, paths);
    }
    let (hosts, unnamed_peers) = render_hosts(cfg);
    Some(Rendered {
        conf: c,
        hosts,
        listen,
        unnamed_peers,
    })
}

fn render_dns(c: &mut String, dns: Option<&DnsConfig>, paths: &Paths) {
    c.push_str("\n# DNS\n");
    c.push_str("no-resolv\nno-hosts\n");
    let _ = writeln!(c, "addn-hosts={}", paths.hosts_file.display());
    let Some(dns) = dns else {
        c.push_str("port=0\n");
        return;
    };
    c.push_str("domain-needed\nbogus-priv\nexpand-hosts\ncache-size=1000\n");
    let _ = writeln!(c, "domain={}", dns.domain);
    let _ = writeln!(c, "local=/{}/", dns.domain);
    for f in &dns.forwards {
        for s in &f.servers {
            let _ = writeln!(c, "server=/{}/{s}", f.domain);
        }
    }
    for s in &dns.upstream {
        let _ = writeln!(c, "server={s}");
    }
}

fn render_dhcp(c: &mut String, prefix_len: u8, dhcp: &DhcpConfig, paths: &Paths) {
    c.push_str("\n# DHCP\n");
    let mask = ipnet::Ipv4Net::new(dhcp.range.0, prefix_len)
        .map(|n| n.netmask())
        .unwrap_or(std::net::Ipv4Addr::BROADCAST);
    let _ = writeln!(
        c,
        "dhcp-range={},{},{mask},{}",
        dhcp.range.0,
        dhcp.range.1,
        dhcp.lease_time.as_secs()
    );
    let _ = writeln!(c, "dhcp-leasefile={}", paths.lease_file.display());
    c.push_str("dhcp-authoritative\n");
    let _ = writeln!(c, "dhcp-option=option:router,{}", dhcp.router);
    // Without data the option is not sent at all (dnsmasq would otherwise
    // name itself whenever it serves DNS).
    let list: Vec<String> = dhcp.dns_servers.iter().map(|a| format!(",{a}")).collect();
    let _ = writeln!(c, "dhcp-option=option:dns-server{}", list.concat());
    for s in &dhcp.statics {
        match &s.hostname {
            Some(h) => {
                let _ = writeln!(c, "dhcp-host={},{},{h}", s.mac, s.address);
            }
            None => {
                let _ = writeln!(c, "dhcp-host={},{}", s.mac, s.address);
            }
        }
    }
}

/// A peer's name as a DNS name (lower case), if it is one.
fn peer_dns_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    lower
        .split('.')
        .all(|l| check_dns_label(l).is_ok())
        .then_some(lower)
}

/// The hosts file: every enabled laptop as `<peer>.<vpn_subdomain>.<domain>`,
/// then `[[dns.hosts]]`; and the enabled peers left out for their names.
fn render_hosts(cfg: &Config) -> (String, Vec<String>) {
    let mut h =
        String::from("# Hosts rendered by ipieced: the enabled laptops and [[dns.hosts]].\n");
    let mut unnamed = Vec::new();
    let Some(dns) = &cfg.dns else {
        return (h, unnamed);
    };
    let zone = dns.vpn_zone();
    for p in cfg.peers.iter().filter(|p| p.enabled) {
        match peer_dns_name(&p.name) {
            Some(n) => {
                let _ = writeln!(h, "{} {n}.{zone}", p.address);
            }
            None => unnamed.push(p.name.clone()),
        }
    }
    for host in &dns.hosts {
        let _ = writeln!(h, "{} {}", host.address, host.name);
    }
    (h, unnamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lan::{DhcpStatic, DnsForward, DnsHost, LanConfig, DEFAULT_VPN_SUBDOMAIN};
    use crate::config::{Key, PeerConfig};
    use std::path::Path;
    use std::time::Duration;

    fn paths() -> Paths {
        Paths {
            pid_file: "/var/lib/ipiece/dnsmasq.pid".into(),
            lease_file: "/var/lib/ipiece/dnsmasq.leases".into(),
            hosts_file: "/var/lib/ipiece/dnsmasq.hosts".into(),
        }
    }

    fn peer(name: &str, addr: &str, enabled: bool) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            public_key: Key([name.len() as u8; 32]),
            address: addr.parse().unwrap(),
            psk_file: None,
            private_key_file: None,
            keepalive: 25,
            endpoint: None,
            dns: vec![],
            enabled,
        }
    }

    /// The seed topology with `[lan]`, `[lan.dhcp]` and `[dns]`.
    fn config() -> Config {
        let dir = crate::config::testutil::TempDir::new();
        let key = dir.path().join("wg.key");
        crate::config::write_secret_file(
            &key,
            crate::config::generate_private_key().to_string().as_bytes(),
        )
        .unwrap();
        let text = format!(
            "[gateway]\nname = \"gw\"\npublic_endpoint = \"vpn.example.com\"\n\
             lan_prefixes = [\"172.16.4.0/24\"]\n\
             [wireguard]\naddress = \"172.16.60.1/24\"\nprivate_key_file = \"{}\"\n",
            key.display()
        );
        let mut c = Config::parse(Path::new("/etc/ipiece/gateway.toml"), &text).unwrap();
        c.lan = Some(LanConfig {
            interface: Some("eth1".into()),
            address: "172.16.4.1/24".parse().unwrap(),
            dhcp: Some(DhcpConfig {
                range: (
                    "172.16.4.100".parse().unwrap(),
                    "172.16.4.150".parse().unwrap(),
                ),
                lease_time: Duration::from_secs(7200),
                router: "172.16.4.1".parse().unwrap(),
                dns_servers: vec!["172.16.4.1".parse().unwrap()],
                statics: vec![
                    DhcpStatic {
                        mac: "52:54:00:12:34:56".parse().unwrap(),
                        address: "172.16.4.20".parse().unwrap(),
                        hostname: Some("build-vm".into()),
                    },
                    DhcpStatic {
                        mac: "52:54:00:12:34:57".parse().unwrap(),
                        address: "172.16.4.21".parse().unwrap(),
                        hostname: None,
                    },
                ],
            }),
        });
        c.dns = Some(DnsConfig {
            domain: "lab.internal".into(),
            upstream: vec!["192.0.2.53".parse().unwrap()],
            vpn_subdomain: DEFAULT_VPN_SUBDOMAIN.into(),
            forwards: vec![DnsForward {
                domain: "ec2.internal".into(),
                servers: vec!["10.0.0.2".parse().unwrap(), "10.0.1.2".parse().unwrap()],
            }],
            hosts: vec![DnsHost {
                name: "nas".into(),
                address: "172.16.4.5".parse().unwrap(),
            }],
        });
        c.peers = vec![
            peer("alice-laptop", "172.16.60.2", true),
            peer("Bob", "172.16.60.3", true),
            peer("carol", "172.16.60.4", false),
            peer("dave_x", "172.16.60.5", true),
        ];
        c
    }

    const GOLDEN_CONF: &str = "\
# dnsmasq configuration rendered by ipieced from /etc/ipiece/gateway.toml.
# Do not edit: it is written again on every start and reload.

# Processes and files
user=dnsmasq
pid-file=/var/lib/ipiece/dnsmasq.pid
log-facility=-

# Listen on the LAN and WireGuard addresses only, never on the WAN
bind-interfaces
listen-address=172.16.4.1
listen-address=172.16.60.1
except-interface=eth0
no-dhcp-interface=ipiece0

# DNS
no-resolv
no-hosts
addn-hosts=/var/lib/ipiece/dnsmasq.hosts
domain-needed
bogus-priv
expand-hosts
cache-size=1000
domain=lab.internal
local=/lab.internal/
server=/ec2.internal/10.0.0.2
server=/ec2.internal/10.0.1.2
server=192.0.2.53

# DHCP
dhcp-range=172.16.4.100,172.16.4.150,255.255.255.0,7200
dhcp-leasefile=/var/lib/ipiece/dnsmasq.leases
dhcp-authoritative
dhcp-option=option:router,172.16.4.1
dhcp-option=option:dns-server,172.16.4.1
dhcp-host=52:54:00:12:34:56,172.16.4.20,build-vm
dhcp-host=52:54:00:12:34:57,172.16.4.21
";

    const GOLDEN_HOSTS: &str = "\
# Hosts rendered by ipieced: the enabled laptops and [[dns.hosts]].
172.16.60.2 alice-laptop.vpn.lab.internal
172.16.60.3 bob.vpn.lab.internal
172.16.4.5 nas
";

    #[test]
    fn golden_conf_and_hosts() {
        let r = render(&config(), &paths(), "dnsmasq", Some("eth0")).unwrap();
        assert_eq!(r.conf, GOLDEN_CONF);
        assert_eq!(r.hosts, GOLDEN_HOSTS);
        assert_eq!(
            r.listen,
            vec![
                "172.16.4.1".parse::<IpAddr>().unwrap(),
                "172.16.60.1".parse().unwrap()
            ]
        );
        // The disabled carol has no name; dave_x is no DNS name.
        assert_eq!(r.unnamed_peers, vec!["dave_x".to_owned()]);
    }

    #[test]
    fn dhcp_only_turns_dns_off_and_listens_on_the_lan_only() {
        let mut c = config();
        c.dns = None;
        c.lan
            .as_mut()
            .unwrap()
            .dhcp
            .as_mut()
            .unwrap()
            .dns_servers
            .clear();
        let r = render(&c, &paths(), "root", None).unwrap();
        assert!(r.conf.contains("\nport=0\n"), "{}", r.conf);
        assert!(!r.conf.contains("listen-address=172.16.60.1"));
        assert!(!r.conf.contains("except-interface"));
        assert!(
            r.conf.contains("\ndhcp-option=option:dns-server\n"),
            "{}",
            r.conf
        );
        assert!(!r.conf.contains("\nserver="));
        assert!(r.conf.contains("user=root\n"));
        assert_eq!(r.listen, vec!["172.16.4.1".parse::<IpAddr>().unwrap()]);
        assert!(!r.hosts.contains("vpn"), "{}", r.hosts);
    }

    #[test]
    fn dns_only_listens_on_the_wireguard_address_without_dhcp() {
        let mut c = config();
        c.lan = None;
        let r = render(&c, &paths(), "dnsmasq", Some("eth0")).unwrap();
        assert_eq!(r.listen, vec!["172.16.60.1".parse::<IpAddr>().unwrap()]);
        assert!(!r.conf.contains("dhcp-range"));
        assert!(!r.conf.contains("port=0"));
        // Neither DHCP nor DNS: no dnsmasq.
        c.dns = None;
        assert_eq!(render(&c, &paths(), "dnsmasq", None), None);
        let mut c = config();
        c.dns = None;
        c.lan.as_mut().unwrap().dhcp = None;
        assert_eq!(render(&c, &paths(), "dnsmasq", None), None);
    }

    #[test]
    fn peer_changes_only_rewrite_the_hosts_file() {
        let base = config();
        let old = render(&base, &paths(), "dnsmasq", Some("eth0"));
        let r = |c: &Config| render(c, &paths(), "dnsmasq", Some("eth0"));
        // Unchanged.
        assert_eq!(plan_change(old.as_ref(), r(&base).as_ref()), Change::None);
        // A peer added, disabled, enabled, removed; a [[dns.hosts]] entry.
        let mut c = base.clone();
        c.peers.push(peer("erin", "172.16.60.6", true));
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        assert!(r(&c)
            .unwrap()
            .hosts
            .contains("172.16.60.6 erin.vpn.lab.internal\n"));
        let mut c = base.clone();
        c.peers[0].enabled = false;
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        let mut c = base.clone();
        c.peers[2].enabled = true;
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        let mut c = base.clone();
        c.peers.remove(1);
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        let mut c = base.clone();
        c.dns.as_mut().unwrap().hosts.clear();
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        // A key change of a peer is nothing to dnsmasq.
        let mut c = base.clone();
        c.peers[0].public_key = Key([99; 32]);
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::None);
    }

    #[test]
    fn dhcp_and_dns_option_changes_restart() {
        let base = config();
        let old = render(&base, &paths(), "dnsmasq", Some("eth0"));
        let r = |c: &Config| render(c, &paths(), "dnsmasq", Some("eth0"));
        let mut c = base.clone();
        c.lan.as_mut().unwrap().dhcp.as_mut().unwrap().lease_time = Duration::from_secs(600);
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Restart);
        let mut c = base.clone();
        c.lan.as_mut().unwrap().dhcp.as_mut().unwrap().statics.pop();
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Restart);
        let mut c = base.clone();
        c.dns.as_mut().unwrap().upstream.clear();
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Restart);
        let mut c = base.clone();
        c.dns.as_mut().unwrap().vpn_subdomain = "laptops".into();
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Hosts);
        let mut c = base.clone();
        c.dns = None;
        c.lan = None;
        assert_eq!(plan_change(old.as_ref(), r(&c).as_ref()), Change::Stop);
        assert_eq!(plan_change(r(&c).as_ref(), old.as_ref()), Change::Start);
        assert_eq!(plan_change(None, None), Change::None);
    }

    #[test]
    fn client_configs_point_at_the_gateway_when_dns_is_on() {
        let mut c = config();
        let want: Vec<IpAddr> = vec!["172.16.60.1".parse().unwrap()];
        assert_eq!(crate::lan::client_dns(&c, &c.peers[0]), want);
        // --dns overrides.
        c.peers[0].dns = vec!["192.0.2.53".parse().unwrap()];
        assert_eq!(crate::lan::client_dns(&c, &c.peers[0]), c.peers[0].dns);
        // Without [dns]: none.
        c.dns = None;
        assert!(crate::lan::client_dns(&c, &c.peers[1]).is_empty());
    }
}
