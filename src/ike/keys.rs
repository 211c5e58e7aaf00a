//! IKEv2 key derivation (RFC 7296 sections 2.13 to 2.18) and PSK authentication
//! (section 2.15).
//!
//! ```text
//! prf+ (K,S) = T1 | T2 | T3 | T4 | ...          T1 = prf (K, S | 0x01)
//!                                               Tn = prf (K, Tn-1 | S | n)    (2.13)
//! SKEYSEED = prf(Ni | Nr, g^ir)                                               (2.14)
//! {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//!          = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//! KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)                                 (2.17)
//! SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)    rekeyed IKE SA          (2.18)
//! AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)       (2.15)
//! ```
//!
//! Every derived key is a [`SecretBytes`]: zeroized on drop, redacted in `Debug`.

use subtle::ConstantTimeEq;

use super::crypto::{Encr, Integ, Prf, SecretBytes};
use super::proposal::{EspSuite, IkeSuite};

/// Errors of key derivation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// prf+ can produce at most 255 blocks (RFC 7296 section 2.13).
    #[error("prf+ with {prf} can produce at most {max} bytes, {wanted} requested")]
    TooLong {
        /// The PRF.
        prf: Prf,
        /// The most prf+ can produce with it.
        max: usize,
        /// What was asked for.
        wanted: usize,
    },
    /// An integrity algorithm was given with an AEAD cipher, or none with CBC.
    #[error("{encr}: an integrity algorithm is needed with CBC and not allowed with AEAD")]
    IntegrityMismatch {
        /// The encryption algorithm.
        encr: Encr,
    },
}

/// prf+ of RFC 7296 section 2.13: `len` bytes of
/// `prf(K, S | 0x01) | prf(K, T1 | S | 0x02) | ...`. At most 255 iterations.
pub fn prf_plus(prf: Prf, key: &[u8], seed: &[u8], len: usize) -> Result<SecretBytes, KeyError> {
    let max = 255 * prf.output_len();
    if len > max {
        return Err(KeyError::TooLong {
            prf,
            max,
            wanted: len,
        });
    }
    let mut out = Vec::with_capacity(len + prf.output_len());
    let mut previous = SecretBytes::default();
    let mut counter: u8 = 1;
    while out.len() < len {
        let block = prf.compute(key, &[previous.expose(), seed, &[counter]]);
        out.extend_from_slice(block.expose());
        previous = block;
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(SecretBytes::new(out))
}

/// SKEYSEED of a new IKE SA: `prf(Ni | Nr, g^ir)` (RFC 7296 section 2.14).
/// `g_ir` is the shared secret as [`super::crypto::DhKeyPair::shared_secret`]
/// returns it (modulus-length, or the ECP x coordinate).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> SecretBytes {
    let mut key = zeroize::Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.compute(&key, &[g_ir])
}

/// SKEYSEED of an IKE SA rekeyed by CREATE_CHILD_SA:
/// `prf(SK_d (old), g^ir (new) | Ni | Nr)` (RFC 7296 section 2.18). `old_prf` is
/// the PRF of the existing IKE SA ("it is the old IKE SA's PRF that is used to
/// generate SKEYSEED"); the new SA's keys then come from
/// [`IkeSaKeys::derive`] with the new SA's PRF, SPIs and these nonces.
pub fn rekey_skeyseed(
    old_prf: Prf,
    old_sk_d: &[u8],
    g_ir_new: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> SecretBytes {
    old_prf.compute(old_sk_d, &[g_ir_new, ni, nr])
}

/// The algorithms that fix the lengths of an IKE SA's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeKeyLengths {
    /// Length of SK_d, SK_pi, SK_pr: the PRF's preferred key length.
    pub prf: usize,
    /// Length of SK_ai, SK_ar (0 with an AEAD cipher).
    pub integ: usize,
    /// Length of SK_ei, SK_er, including the GCM salt.
    pub encr: usize,
}

impl IkeKeyLengths {
    /// Lengths for a negotiated suite (`integ` is `None` exactly for AEAD).
    pub fn new(prf: Prf, encr: Encr, integ: Option<Integ>) -> Result<IkeKeyLengths, KeyError> {
        if encr.is_aead() == integ.is_some() {
            return Err(KeyError::IntegrityMismatch { encr });
        }
        Ok(IkeKeyLengths {
            prf: prf.key_len(),
            integ: integ.map_or(0, Integ::key_len),
            encr: encr.keymat_len(),
        })
    }

    /// Total bytes taken from prf+.
    pub fn total(&self) -> usize {
        3 * self.prf + 2 * self.integ + 2 * self.encr
    }
}

/// The seven secrets of an IKE SA (RFC 7296 section 2.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeSaKeys {
    /// SK_d: derives CHILD_SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: SecretBytes,
    /// SK_ai: integrity key of messages from the original initiator.
    pub sk_ai: SecretBytes,
    /// SK_ar: integrity key of messages from the original responder.
    pub sk_ar: SecretBytes,
    /// SK_ei: encryption key (with GCM salt) of the original initiator's messages.
    pub sk_ei: SecretBytes,
    /// SK_er: encryption key (with GCM salt) of the original responder's messages.
    pub sk_er: SecretBytes,
    /// SK_pi: key for the initiator's MACed ID in AUTH.
    pub sk_pi: SecretBytes,
    /// SK_pr: key for the responder's MACed ID in AUTH.
    pub sk_pr: SecretBytes,
}

impl IkeSaKeys {
    /// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
    /// prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)` (RFC 7296 section 2.14); SPIs
    /// are the 8-octet IKE SPIs as on the wire.
    pub fn derive(
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, KeyError> {
        let prf = suite.prf;
        let lengths = IkeKeyLengths::new(prf, suite.encr, suite.integ)?;
        let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        seed.extend_from_slice(&spi_i.to_be_bytes());
        seed.extend_from_slice(&spi_r.to_be_bytes());
        let stream = prf_plus(prf, skeyseed, &seed, lengths.total())?;
        let mut take = Splitter::new(stream.expose());
        Ok(IkeSaKeys {
            sk_d: take.next(lengths.prf),
            sk_ai: take.next(lengths.integ),
            sk_ar: take.next(lengths.integ),
            sk_ei: take.next(lengths.encr),
            sk_er: take.next(lengths.encr),
            sk_pi: take.next(lengths.prf),
            sk_pr: take.next(lengths.prf),
        })
    }
}

/// Keying material of one CHILD_SA (an ESP SA pair), RFC 7296 section 2.17.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSaKeys {
    /// Encryption key (with GCM salt) for traffic from initiator to responder.
    pub encr_i: SecretBytes,
    /// Integrity key for traffic from initiator to responder (empty for AEAD).
    pub integ_i: SecretBytes,
    /// Encryption key (with GCM salt) for traffic from responder to initiator.
    pub encr_r: SecretBytes,
    /// Integrity key for traffic from responder to initiator (empty for AEAD).
    pub integ_r: SecretBytes,
}

impl ChildSaKeys {
    /// `KEYMAT = prf+(SK_d, Ni | Nr)`, or `prf+(SK_d, g^ir (new) | Ni | Nr)`
    /// with PFS. "All keys for SAs carrying data from the initiator to the
    /// responder are taken before SAs going from the responder to the
    /// initiator", and within each ESP SA the encryption key comes before the
    /// integrity key (RFC 7296 section 2.17). The nonces are those of the
    /// CREATE_CHILD_SA exchange, or of IKE_SA_INIT for the CHILD_SA set up by
    /// IKE_AUTH.
    /// `prf` and `sk_d` are the IKE SA's.
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        suite: &EspSuite,
        g_ir_new: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaKeys, KeyError> {
        let (encr, integ) = (suite.encr, suite.integ);
        if encr.is_aead() == integ.is_some() {
            return Err(KeyError::IntegrityMismatch { encr });
        }
        let encr_len = encr.keymat_len();
        let integ_len = integ.map_or(0, Integ::key_len);
        let g = g_ir_new.unwrap_or(&[]);
        let mut seed = zeroize::Zeroizing::new(Vec::with_capacity(g.len() + ni.len() + nr.len()));
        seed.extend_from_slice(g);
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        let stream = prf_plus(prf, sk_d, &seed, 2 * (encr_len + integ_len))?;
        let mut take = Splitter::new(stream.expose());
        Ok(ChildSaKeys {
            encr_i: take.next(encr_len),
            integ_i: take.next(integ_len),
            encr_r: take.next(encr_len),
            integ_r: take.next(integ_len),
        })
    }
}

struct Splitter<'a> {
    rest: &'a [u8],
}

impl<'a> Splitter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Splitter { rest: bytes }
    }

    fn next(&mut self, len: usize) -> SecretBytes {
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        SecretBytes::from_slice(head)
    }
}

/// The pad string of PSK authentication (RFC 7296 section 2.15).
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets an AUTH payload signs (RFC 7296 section 2.15):
///
/// ```text
/// InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
/// MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
/// RestOfInitIDPayload = IDType | RESERVED | InitIDData
/// ```
///
/// and symmetrically for the responder with RealMessage2, NonceIData,
/// SK_pr and IDr. `message` is the whole first message the signer sent
/// (IKE_SA_INIT request for the initiator, response for the responder), from
/// the IKE header on, as sent; `peer_nonce` is the other side's Nonce data;
/// `id_body` is the signer's ID payload without its 4-octet generic header.
pub fn signed_octets(
    prf: Prf,
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.compute(sk_p, &[id_body]);
    let mut out = Vec::with_capacity(message.len() + peer_nonce.len() + maced_id.len());
    out.extend_from_slice(message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(maced_id.expose());
    out
}

/// AUTH data for the shared key method (Auth Method 2):
/// `prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`
/// (RFC 7296 section 2.15). The PRF is the IKE SA's negotiated PRF.
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let padded = prf.compute(psk, &[KEY_PAD]);
    prf.compute(padded.expose(), &[signed_octets])
        .expose()
        .to_vec()
}

/// Checks a peer's PSK AUTH data in constant time.
pub fn verify_psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8], received: &[u8]) -> bool {
    let expected = psk_auth(prf, psk, signed_octets);
    expected.len() == received.len() && bool::from(expected.ct_eq(received))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // Expected values computed once with Python's standard library (hmac,
    // hashlib) by a direct transcription of RFC 7296 sections 2.13 to 2.18
    // and 2.15; no RFC publishes vectors for these.
    const PRFPLUS_SHA256: [u8; 100] = hex!(
        "603421678f61b23b2a314043e3d96801ccf9401a343fdd28ebb2f9ed933f3774"
        "f0e2d0c4265f283e48197f5160ce0a688d342de9cde0bd937e5da7e5b6e03055"
        "159e96c7a8b9dc1acd475452e043152c8a18bc426178e52618a55d72b1f3190b"
        "2237ba8d"
    );
    const PRFPLUS_SHA1: [u8; 61] = hex!(
        "f928d3c942b513d364cde1dfd97e626a09911c6f0c1177ffc8a082330ce7ea24"
        "c623f3cd7f1d74270bc23e7f1bd8b6cd573121973264021bda1185a41f"
    );
    const SKEYSEED_SHA256: [u8; 32] =
        hex!("e8a4367b23750f61327d13ae909f0784719717fbdcee4114435d89ab7d220467");
    const IKE_KEYS_AES128_SHA256: [u8; 192] = hex!(
        "ccb3cd2a1e133af8118cbfe9f93f77df90a6d1b0b52f9f19f9661ef8150ea6b8"
        "2906f4e15ff328773a307b9adc953172b5b55a7b264055b80f95f5a0e7889907"
        "d994fb007fe728ca44e7c22ce8f00e4f107a98981a76e27e7e03f0d383ec155e"
        "db35b1506bf3c7a8b5136c998b5a738bec4603ff6c35cfd1887fe8425be71c71"
        "36319f8ec1ecfa5f14b842853eae0da9d6fc8114600225b87357eea43fb499ea"
        "c113f668bed6bead206aaf07247ae00206d1bd76f861787b51e7fb6b3150926d"
    );
    const IKE_KEYS_AES256GCM_SHA384: [u8; 216] = hex!(
        "8fe68074efcee8c1a65828078d629813fc845501ffe019b9fad3d50d9f36ba00"
        "0a33db223bb1be241e77e9720e6feadea0bd1fe98cb8fb58f7e1bef7761b6e73"
        "39c4864495b00adc523aa38496ce35a027cf30772006137df393e04e98ffea86"
        "aa71b23554b9b3c32416beef0d2a441a6f8b33cafa81aadffe4083004f6efe6e"
        "b2898c4eaac25e478666b5a753757904426b962b5375ba4bd45ebada2e3b55af"
        "acddbb706d7cbea9d462685c6e58842783ee7944abb0a1415332da85d29820ec"
        "8f2a649d489dd614c938270229a1d261fe9e7d76f110e7d3"
    );
    const CHILD_AES128_SHA1: [u8; 72] = hex!(
        "d5006f96ee4ad1dda32197e47b1322e15b6b1d11f0ab6234a4524fce0f26b929"
        "9748e3fecfa0cf0ff683b6dfb8cb990943f5d2d29e70a6ee25ab409d9edd8596"
        "9483d7c28de13a64"
    );
    const CHILD_AES256GCM_PFS: [u8; 72] = hex!(
        "0fdc43cc65ec0d4af0e221a073eeae715668885d251d091e153c64bb88104d21"
        "20aab4f7c8d0a861c4adc40610cf58261985b96d29d3f2b456156d17e4bf6e24"
        "f367f0065e6d8b19"
    );
    const REKEY_SKEYSEED: [u8; 32] =
        hex!("c9c262982a752c0d289c68f63bec1a3bfd3235588171386b08356865abd56f1f");
    const PSK_AUTH: [u8; 32] =
        hex!("147f3b4571c96498c6822fe8a8d1e0651e2b78c053579a4cfed5bbb571b4b0af");

    const NI: [u8; 32] = hex!("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    const NR: [u8; 32] = hex!("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
    const SPI_I: u64 = 0x0102_0304_0506_0708;
    const SPI_R: u64 = 0xa1a2_a3a4_a5a6_a7a8;
    const CHILD_NI: [u8; 32] =
        hex!("c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf");
    const CHILD_NR: [u8; 32] =
        hex!("e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");

    fn g_ir() -> Vec<u8> {
        (0..256u32).map(|i| ((i * 7 + 3) % 256) as u8).collect()
    }

    fn g_ir_child() -> Vec<u8> {
        (0..32u32).map(|i| ((i * 13 + 5) % 256) as u8).collect()
    }

    fn aes128_sha256() -> IkeSuite {
        IkeSuite {
            encr: Encr::AesCbc128,
            integ: Some(Integ::HmacSha256_128),
            prf: Prf::HmacSha256,
            dh: crate::ike::crypto::DhGroup::Modp2048,
        }
    }

    #[test]
    fn prf_plus_vectors() {
        let mut seed = b"prf+ seed for ipiece".to_vec();
        seed.extend(200u8..=255);
        let key: Vec<u8> = (1u8..=32).collect();
        let out = prf_plus(Prf::HmacSha256, &key, &seed, 100).unwrap();
        assert_eq!(out.expose(), &PRFPLUS_SHA256);
        // A shorter request is a prefix of a longer one.
        let short = prf_plus(Prf::HmacSha256, &key, &seed, 33).unwrap();
        assert_eq!(short.expose(), &PRFPLUS_SHA256[..33]);
        let key: Vec<u8> = (0u8..20).collect();
        assert_eq!(
            prf_plus(Prf::HmacSha1, &key, b"abc", 61).unwrap().expose(),
            &PRFPLUS_SHA1
        );
        assert_eq!(prf_plus(Prf::HmacSha1, &key, b"abc", 0).unwrap().len(), 0);
    }

    #[test]
    fn prf_plus_limit() {
        assert_eq!(
            prf_plus(Prf::HmacSha1, b"k", b"s", 255 * 20).unwrap().len(),
            5100
        );
        assert_eq!(
            prf_plus(Prf::HmacSha1, b"k", b"s", 255 * 20 + 1),
            Err(KeyError::TooLong {
                prf: Prf::HmacSha1,
                max: 5100,
                wanted: 5101
            })
        );
    }

    #[test]
    fn ike_sa_keys_cbc() {
        let skeyseed = skeyseed(Prf::HmacSha256, &NI, &NR, &g_ir());
        assert_eq!(skeyseed.expose(), &SKEYSEED_SHA256);
        let keys =
            IkeSaKeys::derive(&aes128_sha256(), skeyseed.expose(), &NI, &NR, SPI_I, SPI_R).unwrap();
        let s = &IKE_KEYS_AES128_SHA256;
        assert_eq!(keys.sk_d.expose(), &s[0..32]);
        assert_eq!(keys.sk_ai.expose(), &s[32..64]);
        assert_eq!(keys.sk_ar.expose(), &s[64..96]);
        assert_eq!(keys.sk_ei.expose(), &s[96..112]);
        assert_eq!(keys.sk_er.expose(), &s[112..128]);
        assert_eq!(keys.sk_pi.expose(), &s[128..160]);
        assert_eq!(keys.sk_pr.expose(), &s[160..192]);
    }

    #[test]
    fn ike_sa_keys_gcm() {
        let suite = IkeSuite {
            encr: Encr::AesGcm16_256,
            integ: None,
            prf: Prf::HmacSha384,
            dh: crate::ike::crypto::DhGroup::Ecp384,
        };
        let skeyseed = skeyseed(Prf::HmacSha384, &NI, &NR, &g_ir());
        let keys = IkeSaKeys::derive(&suite, skeyseed.expose(), &NI, &NR, SPI_I, SPI_R).unwrap();
        let s = &IKE_KEYS_AES256GCM_SHA384;
        assert_eq!(keys.sk_d.expose(), &s[0..48]);
        assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
        assert_eq!(
            keys.sk_ei.expose(),
            &s[48..84],
            "32-byte key then 4-byte salt"
        );
        assert_eq!(keys.sk_er.expose(), &s[84..120]);
        assert_eq!(keys.sk_pi.expose(), &s[120..168]);
        assert_eq!(keys.sk_pr.expose(), &s[168..216]);
        let mismatched = IkeSuite {
            integ: Some(Integ::HmacSha1_96),
            ..suite
        };
        assert_eq!(
            IkeSaKeys::derive(&mismatched, skeyseed.expose(), &NI, &NR, SPI_I, SPI_R),
            Err(KeyError::IntegrityMismatch {
                encr: Encr::AesGcm16_256
            })
        );
    }

    #[test]
    fn key_lengths_for_every_suite() {
        for prf in Prf::ALL {
            for encr in Encr::ALL {
                let integs: Vec<Option<Integ>> = if encr.is_aead() {
                    vec![None]
                } else {
                    Integ::ALL.into_iter().map(Some).collect()
                };
                for integ in integs {
                    let l = IkeKeyLengths::new(prf, encr, integ).unwrap();
                    let suite = IkeSuite {
                        encr,
                        integ,
                        prf,
                        dh: crate::ike::crypto::DhGroup::Modp2048,
                    };
                    let k = IkeSaKeys::derive(&suite, &[1; 32], &NI, &NR, 1, 2).unwrap();
                    assert_eq!(k.sk_d.len(), prf.output_len());
                    assert_eq!(
                        (k.sk_pi.len(), k.sk_pr.len()),
                        (prf.output_len(), prf.output_len())
                    );
                    assert_eq!(k.sk_ai.len(), integ.map_or(0, Integ::key_len));
                    assert_eq!(k.sk_ei.len(), encr.keymat_len());
                    assert_eq!(
                        l.total(),
                        3 * prf.output_len()
                            + 2 * integ.map_or(0, Integ::key_len)
                            + 2 * encr.keymat_len()
                    );
                    // The derived keys fit the ciphers.
                    crate::ike::crypto::IkeCipher::new(
                        encr,
                        integ,
                        k.sk_ei.expose(),
                        k.sk_ai.expose(),
                    )
                    .unwrap();
                    let esp = EspSuite {
                        encr,
                        integ,
                        dh: None,
                        esn: false,
                    };
                    let c =
                        ChildSaKeys::derive(prf, k.sk_d.expose(), &esp, None, &NI, &NR).unwrap();
                    crate::ike::crypto::EspCipher::new(
                        encr,
                        integ,
                        c.encr_i.expose(),
                        c.integ_i.expose(),
                    )
                    .unwrap();
                    crate::ike::crypto::EspCipher::new(
                        encr,
                        integ,
                        c.encr_r.expose(),
                        c.integ_r.expose(),
                    )
                    .unwrap();
                }
            }
        }
    }

    #[test]
    fn child_sa_keymat_without_pfs() {
        let sk_d = &IKE_KEYS_AES128_SHA256[..32];
        let suite = EspSuite {
            encr: Encr::AesCbc128,
            integ: Some(Integ::HmacSha1_96),
            dh: None,
            esn: false,
        };
        let k =
            ChildSaKeys::derive(Prf::HmacSha256, sk_d, &suite, None, &CHILD_NI, &CHILD_NR).unwrap();
        // Initiator-to-responder SA first, encryption key before integrity key.
        let m = &CHILD_AES128_SHA1;
        assert_eq!(k.encr_i.expose(), &m[0..16]);
        assert_eq!(k.integ_i.expose(), &m[16..36]);
        assert_eq!(k.encr_r.expose(), &m[36..52]);
        assert_eq!(k.integ_r.expose(), &m[52..72]);
    }

    #[test]
    fn child_sa_keymat_with_pfs() {
        let sk_d = &IKE_KEYS_AES128_SHA256[..32];
        let suite = EspSuite {
            encr: Encr::AesGcm16_256,
            integ: None,
            dh: Some(crate::ike::crypto::DhGroup::Ecp256),
            esn: true,
        };
        let k = ChildSaKeys::derive(
            Prf::HmacSha256,
            sk_d,
            &suite,
            Some(&g_ir_child()),
            &CHILD_NI,
            &CHILD_NR,
        )
        .unwrap();
        let m = &CHILD_AES256GCM_PFS;
        assert_eq!(k.encr_i.expose(), &m[0..36]);
        assert!(k.integ_i.is_empty());
        assert_eq!(k.encr_r.expose(), &m[36..72]);
        assert!(k.integ_r.is_empty());
    }

    #[test]
    fn rekeyed_ike_sa_skeyseed() {
        let sk_d = &IKE_KEYS_AES128_SHA256[..32];
        let s = rekey_skeyseed(Prf::HmacSha256, sk_d, &g_ir_child(), &CHILD_NI, &CHILD_NR);
        assert_eq!(s.expose(), &REKEY_SKEYSEED);
    }

    #[test]
    fn psk_authentication() {
        let keys = IKE_KEYS_AES128_SHA256;
        let sk_pi = &keys[128..160];
        let message1: Vec<u8> = (0u8..64).collect();
        let id_body = hex!("01000000 cb007105"); // ID_IPV4_ADDR 203.0.113.5
        let octets = signed_octets(Prf::HmacSha256, &message1, &NR, sk_pi, &id_body);
        assert_eq!(octets.len(), 64 + 32 + 32);
        assert_eq!(&octets[..64], &message1[..]);
        assert_eq!(&octets[64..96], &NR);
        let psk = b"0123456789abcdefghijABCDEFGHIJ._";
        let auth = psk_auth(Prf::HmacSha256, psk, &octets);
        assert_eq!(auth, PSK_AUTH);
        assert!(verify_psk_auth(Prf::HmacSha256, psk, &octets, &PSK_AUTH));
        assert!(!verify_psk_auth(
            Prf::HmacSha256,
            b"wrong key",
            &octets,
            &PSK_AUTH
        ));
        assert!(!verify_psk_auth(
            Prf::HmacSha256,
            psk,
            &octets,
            &PSK_AUTH[..31]
        ));
        let mut other_id = id_body;
        other_id[7] = 6;
        let octets2 = signed_octets(Prf::HmacSha256, &message1, &NR, sk_pi, &other_id);
        assert!(!verify_psk_auth(Prf::HmacSha256, psk, &octets2, &PSK_AUTH));
    }

    #[test]
    fn keys_are_redacted_in_debug() {
        let keys = IkeSaKeys::derive(&aes128_sha256(), &[1; 32], &NI, &NR, SPI_I, SPI_R).unwrap();
        let dbg = format!("{keys:?}");
        assert!(
            dbg.contains("sk_d: SecretBytes(<32 bytes redacted>)"),
            "{dbg}"
        );
        assert!(!dbg.contains(&format!("{:?}", keys.sk_d.expose())));
    }
}
