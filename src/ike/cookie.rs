//! Stateless cookies against half-open SA floods (RFC 7296 section 2.6).
//!
//! "Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)": the
//! responder answers an IKE_SA_INIT request without a valid cookie with
//! `HDR(A,0), N(COOKIE)` and keeps no state; the initiator retries with the
//! cookie as the first payload. The shell keeps one [`CookieJar`] per
//! listening endpoint and asks it before [`super::IkeSa::accept`].

use std::net::{IpAddr, SocketAddr};

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::crypto::SecretBytes;
use super::sa::Transmit;
use crate::wire::{ExchangeType, Flags, HeaderRepr, Message, NotifyPayload, NotifyType, Payload};

/// The responder's cookie secret and policy.
#[derive(Debug)]
pub struct CookieJar {
    version: u32,
    secret: SecretBytes,
    previous: Option<(u32, SecretBytes)>,
    /// Demand cookies when at least this many half-open SAs exist (0: always).
    pub threshold: usize,
}

/// What [`CookieJar::check`] decided about an IKE_SA_INIT request.
#[derive(Debug)]
pub enum CookieCheck {
    /// Go on with [`super::IkeSa::accept`].
    Accept,
    /// Send this `N(COOKIE)` reply and forget the request.
    Demand(Transmit),
    /// Not an IKE_SA_INIT request worth answering.
    Drop,
}

impl CookieJar {
    /// A jar with a fresh secret; cookies are demanded from `threshold`
    /// half-open SAs on (0: always).
    pub fn new(rng: &mut dyn CryptoRngCore, threshold: usize) -> CookieJar {
        let mut s = vec![0u8; 32];
        rng.fill_bytes(&mut s);
        CookieJar {
            version: 1,
            secret: SecretBytes::new(s),
            previous: None,
            threshold,
        }
    }

    /// Replaces the secret, still accepting cookies made with the previous
    /// one ("the responder SHOULD change the value of <secret> frequently").
    pub fn rotate(&mut self, rng: &mut dyn CryptoRngCore) {
        let mut s = vec![0u8; 32];
        rng.fill_bytes(&mut s);
        let old = std::mem::replace(&mut self.secret, SecretBytes::new(s));
        self.previous = Some((self.version, old));
        self.version = self.version.wrapping_add(1);
    }

    fn make(version: u32, secret: &SecretBytes, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(ni);
        match ip {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i.to_be_bytes());
        h.update(secret.expose());
        let mut out = version.to_be_bytes().to_vec();
        out.extend_from_slice(&h.finalize());
        out
    }

    /// Checks an IKE_SA_INIT request received on `local` from `remote` while
    /// `half_open` SAs wait for their IKE_AUTH.
    pub fn check(
        &self,
        half_open: usize,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> CookieCheck {
        let Ok(msg) = Message::parse(datagram) else {
            return CookieCheck::Drop;
        };
        let h = msg.header;
        if h.exchange_type != ExchangeType::IkeSaInit
            || h.flags.response
            || h.message_id != 0
            || h.spi_r != 0
        {
            return CookieCheck::Drop;
        }
        if half_open < self.threshold {
            return CookieCheck::Accept;
        }
        let Some(ni) = msg.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        }) else {
            return CookieCheck::Drop;
        };
        if let Some(Payload::Notify(n)) = msg.payloads.first() {
            if n.notify_type == NotifyType::Cookie && n.data.len() == 36 {
                let version = u32::from_be_bytes([n.data[0], n.data[1], n.data[2], n.data[3]]);
                let secret = if version == self.version {
                    Some(&self.secret)
                } else {
                    self.previous
                        .as_ref()
                        .filter(|(v, _)| *v == version)
                        .map(|(_, s)| s)
                };
                if let Some(secret) = secret {
                    let want = Self::make(version, secret, ni, remote.ip(), h.spi_i);
                    if bool::from(want.ct_eq(&n.data)) {
                        return CookieCheck::Accept;
                    }
                }
            }
        }
        let cookie = Self::make(self.version, &self.secret, ni, remote.ip(), h.spi_i);
        let reply = Message {
            header: HeaderRepr {
                spi_i: h.spi_i,
                spi_r: 0,
                exchange_type: ExchangeType::IkeSaInit,
                flags: Flags {
                    initiator: false,
                    response: true,
                    version: false,
                },
                message_id: 0,
            },
            payloads: vec![Payload::Notify(NotifyPayload::new(
                NotifyType::Cookie,
                cookie,
            ))],
        };
        match reply.to_bytes() {
            Ok(message) => {
                tracing::info!(%remote, half_open, "IKE_SA_INIT without a valid cookie: demanding one (RFC 7296 2.6)");
                CookieCheck::Demand(Transmit::Ike {
                    local,
                    remote,
                    message,
                })
            }
            Err(_) => CookieCheck::Drop,
        }
    }
}
