//! dnsmasq's lease file (`dhcp-leasefile`), one lease per line:
//! `<expiry> <MAC> <IPv4> <hostname|*> <client-id|*>` for DHCPv4, where the
//! expiry is in seconds since the epoch (0: never). DHCPv6 leases follow a
//! `duid <server DUID>` line as `<expiry> <IAID> <IPv6> <hostname|*> <DUID>`.
//! dnsmasq rewrites the file whole; a line that does not parse is skipped
//! (a partly written file is never an error for `wgctl leases`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// When it expires, seconds since the epoch; `None`: never.
    pub expires: Option<u64>,
    /// The client's MAC address (DHCPv4) or IAID (DHCPv6), as dnsmasq wrote it.
    pub mac: String,
    /// The address leased.
    pub address: IpAddr,
    /// The host name the client gave (or its static mapping's), if any.
    pub hostname: Option<String>,
    /// The client identifier (DHCPv4) or DUID (DHCPv6), if any.
    pub client_id: Option<String>,
}

/// `*` is dnsmasq's "none".
fn optional(field: &str) -> Option<String> {
    (field != "*").then(|| field.to_owned())
}

fn parse_line(line: &str) -> Option<Lease> {
    let mut fields = line.split_ascii_whitespace();
    let expiry: u64 = fields.next()?.parse().ok()?;
    let mac = fields.next()?.to_owned();
    let address: IpAddr = fields.next()?.parse().ok()?;
    let hostname = optional(fields.next()?);
    let client_id = fields.next().and_then(optional);
    Some(Lease {
        expires: (expiry != 0).then_some(expiry),
        mac,
        address,
        hostname,
        client_id,
    })
}

/// The leases in the text of a lease file, in file order, skipping the
/// `duid` line and anything malformed.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter(|l| !l.starts_with("duid "))
        .filter_map(parse_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsmasq_lease_lines() {
        let text = "1733390000 52:54:00:12:34:56 172.16.4.20 build-vm 01:52:54:00:12:34:56\n\
                    0 52:54:00:00:00:01 172.16.4.101 * *\n\
                    garbage line\n\
                    1733390000 52:54:00:00:00:02 not-an-ip x *\n\
                    duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:ff\n\
                    1733390100 1234 fd00::10 host6 00:01:00:01:aa\n\
                    1733390000 52:54:00:00:00:03 172.16.4.102 short\n";
        let leases = parse_leases(text);
        assert_eq!(leases.len(), 4, "{leases:#?}");
        assert_eq!(
            leases[0],
            Lease {
                expires: Some(1_733_390_000),
                mac: "52:54:00:12:34:56".into(),
                address: "172.16.4.20".parse().unwrap(),
                hostname: Some("build-vm".into()),
                client_id: Some("01:52:54:00:12:34:56".into()),
            }
        );
        assert_eq!(leases[1].expires, None);
        assert_eq!(leases[1].hostname, None);
        assert_eq!(leases[1].client_id, None);
        assert_eq!(leases[2].address, "fd00::10".parse::<IpAddr>().unwrap());
        // A line without the client-id column still parses.
        assert_eq!(leases[3].hostname.as_deref(), Some("short"));
        assert_eq!(leases[3].client_id, None);
        assert!(parse_leases("").is_empty());
    }
}
