//! IKE identities as written in `gateway.toml` (`local_id`, `remote_id`), in
//! strongSwan's syntax (its "Identity Parsing" rules), so that a value copied
//! from a `swanctl.conf` means the same thing here:
//!
//! | written | identity |
//! |---|---|
//! | `203.0.113.7`, `2001:db8::7` | ID_IPV4_ADDR, ID_IPV6_ADDR |
//! | `vpn.example.com`, `@vpn.example.com` | ID_FQDN (`@` forces FQDN, e.g. `@192.0.2.1`) |
//! | `ops@example.com`, `@@ops@example.com` | ID_RFC822_ADDR |
//! | `@#0a0b0c`, `keyid:#0a0b0c` | ID_KEY_ID, hex-encoded |
//! | `keyid:text` | ID_KEY_ID, the bytes of `text` |
//! | `ipv4:`, `ipv6:`, `fqdn:`/`dns:`, `rfc822:`/`email:`/`userfqdn:` + value | that type (a `#hex` value is decoded) |
//!
//! Refused: identities that match anything (`%any`, `*`, `0.0.0.0`, `::`, the
//! empty string), distinguished names and the other ASN.1 or subnet types
//! (ipiece authenticates with PSKs only), and a value with a `:` that is not
//! an IPv6 address (strongSwan would silently make it a KEY_ID; an explicit
//! `keyid:` says so).

use std::net::IpAddr;

use crate::wire::Identity;

/// Longest FQDN, RFC 822 or key-ID identity accepted, in bytes.
const MAX_ID_LEN: usize = 255;

/// Parses an identity in strongSwan syntax (see the module documentation).
/// The error says why, without repeating the input.
pub fn parse_identity(s: &str) -> Result<Identity, String> {
    if matches!(s, "" | "%any" | "%any6" | "*" | "0.0.0.0" | "::") {
        return Err(
            "this matches any identity; give a specific one (an IP address, a host name, keyid:#hex)"
                .to_owned(),
        );
    }
    if let Some((prefix, rest)) = s.split_once(':') {
        if let Some(id) = typed(prefix, rest) {
            return id;
        }
    }
    if s.contains('=') {
        return Err(
            "distinguished names are for certificates; ipiece authenticates with pre-shared keys only"
                .to_owned(),
        );
    }
    if let Some(hex) = s.strip_prefix("@#") {
        return key_id(&decode_hex(hex)?);
    }
    if let Some(mail) = s.strip_prefix("@@") {
        return rfc822(mail.as_bytes());
    }
    if let Some(host) = s.strip_prefix('@') {
        return fqdn(host.as_bytes());
    }
    if s.contains('@') {
        return rfc822(s.as_bytes());
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => return Ok(Identity::Ipv4(a)),
        Ok(IpAddr::V6(a)) => return Ok(Identity::Ipv6(a)),
        Err(_) => {}
    }
    if s.contains(':') {
        return Err(
            "not an IPv6 address (write keyid:... for a KEY_ID, or @name for an FQDN)".to_owned(),
        );
    }
    if s.contains('/') || (s.contains('-') && s.split('-').all(|p| p.parse::<IpAddr>().is_ok())) {
        return Err("subnet and range identities are not supported".to_owned());
    }
    fqdn(s.as_bytes())
}

/// An identity with an explicit type prefix (`keyid:#0a0b`); `None` when the
/// prefix is no type strongSwan knows (then `s` is parsed as a whole: an IPv6
/// address has colons too).
fn typed(prefix: &str, rest: &str) -> Option<Result<Identity, String>> {
    let value = || -> Result<Vec<u8>, String> {
        match rest.strip_prefix('#') {
            Some(hex) => decode_hex(hex),
            None => Ok(rest.as_bytes().to_vec()),
        }
    };
    Some(match prefix {
        "ipv4" => rest
            .parse()
            .map(Identity::Ipv4)
            .map_err(|_| "the value after ipv4: is not an IPv4 address".to_owned()),
        "ipv6" => rest
            .parse()
            .map(Identity::Ipv6)
            .map_err(|_| "the value after ipv6: is not an IPv6 address".to_owned()),
        "fqdn" | "dns" => value().and_then(|v| fqdn(&v)),
        "rfc822" | "email" | "userfqdn" => value().and_then(|v| rfc822(&v)),
        "keyid" => value().and_then(|v| key_id(&v)),
        "asn1dn" | "asn1gn" | "xmppaddr" | "ipv4net" | "ipv6net" | "ipv4range" | "ipv6range" => {
            Err(format!(
                "{prefix}: identities are not supported (use an IP address, an FQDN, an RFC 822 address or a key ID)"
            ))
        }
        _ => return None,
    })
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let hex = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .unwrap_or(hex);
    hex::decode(hex)
        .map_err(|_| "the key ID after # must be an even number of hexadecimal digits".to_owned())
}

fn key_id(bytes: &[u8]) -> Result<Identity, String> {
    if bytes.is_empty() || bytes.len() > MAX_ID_LEN {
        return Err(format!("a key ID must be 1 to {MAX_ID_LEN} bytes long"));
    }
    Ok(Identity::KeyId(bytes.to_vec()))
}

/// An FQDN identity: 1 to 255 characters of `A-Z a-z 0-9 . - _`.
fn fqdn(bytes: &[u8]) -> Result<Identity, String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    match std::str::from_utf8(bytes) {
        Ok(s) if ok => Ok(Identity::Fqdn(s.to_owned())),
        _ => Err(format!(
            "an FQDN identity must be 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . - _"
        )),
    }
}

/// An RFC 822 identity: 1 to 255 printable ASCII characters, no spaces.
fn rfc822(bytes: &[u8]) -> Result<Identity, String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(bytes) {
        Ok(s) if ok => Ok(Identity::Rfc822(s.to_owned())),
        _ => Err(format!(
            "an RFC 822 identity must be 1 to {MAX_ID_LEN} printable ASCII characters without spaces"
        )),
    }
}

/// Formats an identity in strongSwan syntax; [`parse_identity`] gives it back.
/// (`Identity`'s own `Display` writes key IDs as `keyid:<hex>`, which
/// strongSwan would read as text.)
pub fn format_identity(id: &Identity) -> String {
    match id {
        Identity::Ipv4(a) => a.to_string(),
        Identity::Ipv6(a) => a.to_string(),
        Identity::Fqdn(s) => {
            if s.parse::<IpAddr>().is_ok()
                || s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                || parse_identity(s).as_ref() != Ok(id)
            {
                format!("@{s}")
            } else {
                s.clone()
            }
        }
        Identity::Rfc822(s) => {
            if s.contains('@') && !s.starts_with('@') && parse_identity(s).as_ref() == Ok(id) {
                s.clone()
            } else {
                format!("@@{s}")
            }
        }
        Identity::KeyId(k) => format!("@#{}", hex::encode(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ok(s: &str) -> Identity {
        parse_identity(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn strongswan_syntax() {
        let v4 = Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(ok("198.51.100.10"), v4);
        assert_eq!(ok("ipv4:198.51.100.10"), v4);
        let v6 = Identity::Ipv6("2001:db8::7".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ok("2001:db8::7"), v6);
        assert_eq!(ok("ipv6:2001:db8::7"), v6);
        let host = Identity::Fqdn("vpn.example.com".into());
        assert_eq!(ok("vpn.example.com"), host);
        assert_eq!(ok("@vpn.example.com"), host);
        assert_eq!(ok("fqdn:vpn.example.com"), host);
        assert_eq!(ok("dns:vpn.example.com"), host);
        // `@` keeps an address-looking value an FQDN.
        assert_eq!(ok("@192.0.2.1"), Identity::Fqdn("192.0.2.1".into()));
        let mail = Identity::Rfc822("ops@example.com".into());
        assert_eq!(ok("ops@example.com"), mail);
        assert_eq!(ok("@@ops@example.com"), mail);
        assert_eq!(ok("email:ops@example.com"), mail);
        assert_eq!(ok("rfc822:ops@example.com"), mail);
        assert_eq!(ok("userfqdn:ops@example.com"), mail);
        let kid = Identity::KeyId(vec![0x0a, 0x0b, 0xfc]);
        assert_eq!(ok("@#0a0bfc"), kid);
        assert_eq!(ok("@#0A0BFC"), kid);
        assert_eq!(ok("keyid:#0a0bfc"), kid);
        assert_eq!(ok("keyid:#0x0a0bfc"), kid);
        // Without `#`, keyid: takes the text's bytes, as strongSwan does.
        assert_eq!(ok("keyid:cgw-1"), Identity::KeyId(b"cgw-1".to_vec()));
        assert_eq!(ok("fqdn:#6877"), Identity::Fqdn("hw".into()));
    }

    #[test]
    fn refused_identities() {
        for (s, needle) in [
            ("", "matches any identity"),
            ("%any", "matches any identity"),
            ("*", "matches any identity"),
            ("0.0.0.0", "matches any identity"),
            ("::", "matches any identity"),
            ("C=CH, O=strongSwan, CN=gw", "distinguished names"),
            ("asn1dn:#3000", "asn1dn: identities are not supported"),
            ("ipv4net:10.0.0.0/8", "not supported"),
            ("10.0.0.0/8", "subnet and range"),
            ("10.0.0.1-10.0.0.9", "subnet and range"),
            ("@#0a0", "even number of hexadecimal digits"),
            ("@#xyz1", "hexadecimal"),
            ("@#", "key ID must be 1 to 255 bytes"),
            ("keyid:", "key ID must be 1 to 255 bytes"),
            ("ipv4:2001:db8::1", "not an IPv4 address"),
            ("ipv6:10.0.0.1", "not an IPv6 address"),
            ("203.0.113.7:500", "not an IPv6 address"),
            ("vpn example.com", "FQDN identity"),
            ("@", "FQDN identity"),
            ("vpn.exämple.com", "FQDN identity"),
            ("a b@example.com", "RFC 822 identity"),
        ] {
            let e = parse_identity(s).expect_err(s);
            assert!(e.contains(needle), "{s:?}: {e}");
        }
        let long = "a".repeat(256);
        assert!(parse_identity(&long).is_err());
        assert!(parse_identity(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn format_round_trips() {
        for id in [
            Identity::Ipv4(Ipv4Addr::new(198, 51, 100, 10)),
            Identity::Ipv6("2001:db8::7".parse().unwrap()),
            Identity::Fqdn("vpn.example.com".into()),
            Identity::Fqdn("192.0.2.1".into()),
            Identity::Fqdn("2001".into()),
            Identity::Rfc822("ops@example.com".into()),
            Identity::Rfc822("@weird".into()),
            Identity::Rfc822("no-at-sign".into()),
            Identity::KeyId(vec![0, 1, 0xff]),
            Identity::KeyId(b"cgw".to_vec()),
        ] {
            let s = format_identity(&id);
            assert_eq!(parse_identity(&s), Ok(id.clone()), "{s}");
        }
        assert_eq!(
            format_identity(&Identity::Fqdn("vpn.example.com".into())),
            "vpn.example.com"
        );
        assert_eq!(format_identity(&Identity::KeyId(vec![0xab])), "@#ab");
        assert_eq!(
            format_identity(&Identity::Fqdn("192.0.2.1".into())),
            "@192.0.2.1"
        );
    }
}
