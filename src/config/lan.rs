//! The `[lan]`, `[lan.dhcp]` and `[dns]` tables of `gateway.toml`, as
//! validated: the gateway's LAN address, the DHCP service on the LAN and the
//! DNS service for the LAN and the laptops. dnsmasq serves both; its
//! configuration is rendered from these types in [`crate::lan`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;

/// Default `lan.dhcp.lease_time` (pfSense's default lease time).
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(7200);
/// Smallest accepted `lan.dhcp.lease_time` (dnsmasq's minimum, two minutes).
pub const MIN_LEASE_TIME: Duration = Duration::from_secs(120);
/// Largest accepted `lan.dhcp.lease_time` (one year).
pub const MAX_LEASE_TIME: Duration = Duration::from_secs(31_536_000);
/// Default `dns.vpn_subdomain`: laptops are `<peer>.vpn.<domain>`.
pub const DEFAULT_VPN_SUBDOMAIN: &str = "vpn";

/// The `[lan]` table: the gateway's side of the on-prem LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanConfig {
    /// The LAN interface (`eth1`); `None`: not named here (the firewall
    /// finds it from the routes). When set it is the firewall's LAN
    /// interface unless `firewall.lan_interface` says otherwise.
    pub interface: Option<String>,
    /// The gateway's LAN address with the LAN's prefix length
    /// (`172.16.4.1/24`); its network lies inside `gateway.lan_prefixes`.
    pub address: Ipv4Net,
    /// `[lan.dhcp]`: the DHCP service, when the file has one.
    pub dhcp: Option<DhcpConfig>,
}

/// The `[lan.dhcp]` table: DHCP for the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The first and last address handed out dynamically (inclusive), both
    /// inside the LAN's network.
    pub range: (Ipv4Addr, Ipv4Addr),
    /// How long a lease lasts.
    pub lease_time: Duration,
    /// The router option (3); default: the gateway's LAN address.
    pub router: Ipv4Addr,
    /// The DNS server option (6); default: the gateway's LAN address when
    /// `[dns]` is on, else none (no option sent).
    pub dns_servers: Vec<Ipv4Addr>,
    /// `[[lan.dhcp.static]]`: fixed addresses by MAC, in file order.
    pub statics: Vec<DhcpStatic>,
}

/// One `[[lan.dhcp.static]]` table: a fixed address for one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpStatic {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// Its fixed address: inside the LAN, outside the dynamic range.
    pub address: Ipv4Addr,
    /// Its host name (one DNS label), registered in DNS under `dns.domain`.
    pub hostname: Option<String>,
}

/// The `[dns]` table: the DNS service for the LAN and the laptops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The local domain (`lab.internal`): DHCP clients, static mappings and
    /// `[[dns.hosts]]` names live under it; it is never asked upstream.
    pub domain: String,
    /// Upstream resolvers for everything else; empty: none (only local names
    /// and the forwarded domains are answered).
    pub upstream: Vec<IpAddr>,
    /// The laptops' subdomain: `<peer>.<vpn_subdomain>.<domain>`.
    pub vpn_subdomain: String,
    /// `[[dns.forward]]`: domains answered by other servers, in file order.
    pub forwards: Vec<DnsForward>,
    /// `[[dns.hosts]]`: fixed names, in file order.
    pub hosts: Vec<DnsHost>,
}

impl DnsConfig {
    /// The laptops' zone: `<vpn_subdomain>.<domain>`.
    pub fn vpn_zone(&self) -> String {
        format!("{}.{}", self.vpn_subdomain, self.domain)
    }
}

/// One `[[dns.forward]]` table: a domain and the servers that answer it
/// (e.g. a VPC's Route 53 Resolver inbound endpoint for `ec2.internal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsForward {
    /// The domain (and its subdomains), without a trailing dot.
    pub domain: String,
    /// The servers, at least one.
    pub servers: Vec<IpAddr>,
}

/// One `[[dns.hosts]]` table: a fixed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    /// A name: one label (completed with `dns.domain`) or a full name.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
}

/// An Ethernet (EUI-48) address, written `52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    /// Six hex pairs separated by `:` (or `-`), either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{}` is not a MAC address such as \"52:54:00:12:34:56\"",
                s.escape_debug()
            )
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    /// Lower-case, colon-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Why `s` is not a DNS name of one or more labels (letters, digits and
/// hyphens, 1-63 each, no hyphen at either end, 253 in all), if it is not.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!(
            "`{}` is not a DNS name: 1 to 253 characters",
            s.escape_debug()
        ));
    }
    for label in s.split('.') {
        check_dns_label(label).map_err(|why| format!("`{}`: {why}", s.escape_debug()))?;
    }
    Ok(())
}

/// Why `s` is not a single DNS label (a host name without a domain), if it
/// is not.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a DNS label: 1 to 63 of A-Z a-z 0-9 and -, no - at either end",
            s.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "52:54:00:AB:cd:0F".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!("52-54-00-ab-cd-0f".parse::<MacAddr>(), Ok(m));
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(check_dns_name("lab.internal").is_ok());
        assert!(check_dns_name("a").is_ok());
        assert!(check_dns_name("").is_err());
        assert!(check_dns_name("lab..internal").is_err());
        assert!(check_dns_name("-lab.internal").is_err());
        assert!(check_dns_name("lab_x.internal").is_err());
        assert!(check_dns_label("build-vm").is_ok());
        assert!(check_dns_label("build.vm").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
    }
}
