//! The laptop's side: a wg-quick configuration file (`[Interface]` and
//! `[Peer]`, as `wg-quick(8)` reads it) and its QR code for the mobile apps.

use crate::config::Key;
use ipnet::IpNet;
use qrcode::render::unicode;
use qrcode::{EcLevel, QrCode};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Everything a client configuration holds. Secrets are borrowed, never logged.
pub struct ClientConfig<'a> {
    /// A comment naming the peer and the gateway.
    pub comment: String,
    /// The laptop's private key.
    pub private_key: &'a Key,
    /// The laptop's tunnel address (rendered as a /32 or /128).
    pub address: IpAddr,
    /// DNS servers for wg-quick, if any.
    pub dns: &'a [IpAddr],
    /// Tunnel MTU, if set.
    pub mtu: Option<u16>,
    /// The gateway's public key.
    pub server_public_key: &'a Key,
    /// The preshared key, if the peer has one.
    pub preshared_key: Option<&'a Key>,
    /// `host:port` the laptop dials.
    pub endpoint: String,
    /// Prefixes the laptop routes into the tunnel.
    pub allowed_ips: &'a [IpNet],
    /// PersistentKeepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
}

/// Joins the public endpoint with the WireGuard port unless it already has one.
/// IPv6 literals are bracketed.
pub fn endpoint(public_endpoint: &str, port: u16) -> String {
    let e = public_endpoint.trim();
    if e.starts_with('[') {
        if e.contains("]:") {
            return e.to_string();
        }
        return format!("{e}:{port}");
    }
    match e.matches(':').count() {
        0 => format!("{e}:{port}"),
        1 => e.to_string(),
        _ => format!("[{e}]:{port}"),
    }
}

impl ClientConfig<'_> {
    /// Renders the file wg-quick loads unchanged.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}", self.comment);
        s.push_str("[Interface]\n");
        let _ = writeln!(s, "PrivateKey = {}", self.private_key);
        let host_len = if self.address.is_ipv4() { 32 } else { 128 };
        let _ = writeln!(s, "Address = {}/{}", self.address, host_len);
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(s, "DNS = {}", dns.join(", "));
        }
        if let Some(mtu) = self.mtu {
            let _ = writeln!(s, "MTU = {mtu}");
        }
        s.push_str("\n[Peer]\n");
        let _ = writeln!(s, "PublicKey = {}", self.server_public_key);
        if let Some(psk) = self.preshared_key {
            let _ = writeln!(s, "PresharedKey = {psk}");
        }
        let _ = writeln!(s, "Endpoint = {}", self.endpoint);
        let allowed: Vec<String> = self.allowed_ips.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(s, "AllowedIPs = {}", allowed.join(", "));
        if self.persistent_keepalive > 0 {
            let _ = writeln!(s, "PersistentKeepalive = {}", self.persistent_keepalive);
        }
        s
    }
}

/// Renders `text` as a QR code for a terminal (two modules per character
/// cell, dark on light, with the quiet zone), as the WireGuard apps scan it.
pub fn qr_terminal(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)?;
    Ok(code
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    #[test]
    fn renders_the_seed_client() {
        let (k, s, p) = (key(1), key(2), key(3));
        let allowed: Vec<IpNet> = ["172.16.60.0/24", "172.16.4.0/24", "10.0.0.0/16"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let dns = ["172.16.4.1".parse().unwrap()];
        let c = ClientConfig {
            comment: "ipiece peer alice (gateway lab)".into(),
            private_key: &k,
            address: "172.16.60.2".parse().unwrap(),
            dns: &dns,
            mtu: Some(1420),
            server_public_key: &s,
            preshared_key: Some(&p),
            endpoint: endpoint("vpn.example.com", 51821),
            allowed_ips: &allowed,
            persistent_keepalive: 25,
        };
        let want = "# ipiece peer alice (gateway lab)\n\
[Interface]\n\
PrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\
Address = 172.16.60.2/32\n\
DNS = 172.16.4.1\n\
MTU = 1420\n\
\n\
[Peer]\n\
PublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\
PresharedKey = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n\
Endpoint = vpn.example.com:51821\n\
AllowedIPs = 172.16.60.0/24, 172.16.4.0/24, 10.0.0.0/16\n\
PersistentKeepalive = 25\n";
        assert_eq!(c.render(), want);
    }

    #[test]
    fn optional_lines_are_omitted() {
        let (k, s) = (key(1), key(2));
        let allowed: Vec<IpNet> = vec!["172.16.60.0/24".parse().unwrap()];
        let c = ClientConfig {
            comment: "x".into(),
            private_key: &k,
            address: "fd00::2".parse().unwrap(),
            dns: &[],
            mtu: None,
            server_public_key: &s,
            preshared_key: None,
            endpoint: endpoint("2001:db8::1", 51821),
            allowed_ips: &allowed,
            persistent_keepalive: 0,
        };
        let r = c.render();
        assert!(r.contains("Address = fd00::2/128\n"));
        assert!(r.contains("Endpoint = [2001:db8::1]:51821\n"));
        for absent in ["DNS", "MTU", "PresharedKey", "PersistentKeepalive"] {
            assert!(!r.contains(absent), "{absent} in {r}");
        }
    }

    #[test]
    fn endpoint_keeps_an_explicit_port() {
        assert_eq!(endpoint("203.0.113.2", 51821), "203.0.113.2:51821");
        assert_eq!(endpoint("gw.example:4000", 51821), "gw.example:4000");
        assert_eq!(endpoint("[2001:db8::1]:9", 51821), "[2001:db8::1]:9");
        assert_eq!(endpoint("[2001:db8::1]", 51821), "[2001:db8::1]:51821");
    }

    #[test]
    fn qr_code_renders_blocks() {
        let q = qr_terminal("[Interface]\nPrivateKey = x\n").unwrap();
        assert!(q.lines().count() > 10);
        assert!(q.contains('▀') || q.contains('▄') || q.contains('█'));
    }
}
