//! SA proposals: swanctl's proposal syntax, conversion from and to transforms,
//! and the responder's choice (RFC 7296 sections 2.7 and 3.3).
//!
//! A proposal string is algorithm keywords joined by `-`
//! (`aes128-sha256-modp2048`), several proposals separated by `,`. Keywords
//! follow strongSwan's `proposal_keywords`: `aes128`, `aes256`, `aes128gcm16`,
//! `aes256gcm16` (with the aliases `aes`, `aesNNNgcm128`, `aesNNNgcm`);
//! `sha1`, `sha256`, `sha384`, `sha512` (`sha`, `sha2_NNN`); `prfsha1` to
//! `prfsha512`; `modp1024` ... `modp8192`, `ecp256`, `ecp384`, `ecp521`,
//! `modp1024s160`, `modp2048s224`, `modp2048s256`; for ESP `modpnone`,
//! `esn` and `noesn`. Several algorithms of one kind make a proposal offer
//! each of them (`aes128-aes256-sha1-sha256-modp2048-ecp256`).
//!
//! The checks are strongSwan's (`check_proposal`): an IKE proposal without a
//! PRF takes the PRFs matching its integrity algorithms; a proposal whose
//! ciphers are all AEAD drops integrity algorithms; AEAD and classic ciphers
//! cannot share a proposal; an IKE proposal needs a DH group; an ESP proposal
//! without `esn` means `noesn`; a DH group in an ESP proposal asks for PFS
//! when rekeying, `modpnone` making PFS optional. Unlike strongSwan, a classic
//! cipher without an integrity algorithm is refused for ESP too.

use core::fmt;

use super::crypto::{DhGroup, Encr, Integ, Prf};

/// The protocol a proposal is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The IKE SA itself (Protocol ID 1).
    Ike,
    /// An ESP CHILD_SA (Protocol ID 3).
    Esp,
}

impl Protocol {
    /// The Protocol ID of RFC 7296 section 3.3.1.
    pub const fn protocol_id(self) -> u8 {
        match self {
            Protocol::Ike => 1,
            Protocol::Esp => 3,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Ike => "IKE",
            Protocol::Esp => "ESP",
        })
    }
}

/// Transform type 5: extended sequence numbers (RFC 7296 section 3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Esn {
    /// No Extended Sequence Numbers (0): `noesn`.
    No,
    /// Extended Sequence Numbers (1): `esn`.
    Yes,
}

impl Esn {
    /// IANA transform ID.
    pub const fn transform_id(self) -> u16 {
        match self {
            Esn::No => 0,
            Esn::Yes => 1,
        }
    }

    /// The swanctl keyword.
    pub const fn name(self) -> &'static str {
        match self {
            Esn::No => "noesn",
            Esn::Yes => "esn",
        }
    }
}

/// Transform types of RFC 7296 section 3.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransformType {
    /// Encryption Algorithm (ENCR), 1.
    Encr,
    /// Pseudorandom Function (PRF), 2.
    Prf,
    /// Integrity Algorithm (INTEG), 3.
    Integ,
    /// Diffie-Hellman Group (D-H), 4.
    Dh,
    /// Extended Sequence Numbers (ESN), 5.
    Esn,
}

impl TransformType {
    /// The type number on the wire.
    pub const fn number(self) -> u8 {
        match self {
            TransformType::Encr => 1,
            TransformType::Prf => 2,
            TransformType::Integ => 3,
            TransformType::Dh => 4,
            TransformType::Esn => 5,
        }
    }

    /// The type for a wire number, if it is one of the five.
    pub fn from_number(n: u8) -> Option<TransformType> {
        Some(match n {
            1 => TransformType::Encr,
            2 => TransformType::Prf,
            3 => TransformType::Integ,
            4 => TransformType::Dh,
            5 => TransformType::Esn,
            _ => return None,
        })
    }
}

/// One transform as carried in an SA payload: type, ID and the Key Length
/// attribute (RFC 7296 sections 3.3.2 and 3.3.5). The bridge between the
/// codec's types and [`Proposal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform type.
    pub kind: TransformType,
    /// Transform ID.
    pub id: u16,
    /// Key Length attribute, in bits, when present.
    pub key_bits: Option<u16>,
}

impl Transform {
    fn new(kind: TransformType, id: u16) -> Transform {
        Transform {
            kind,
            id,
            key_bits: None,
        }
    }
}

/// One proposal: the acceptable algorithms of each transform type, in order
/// of preference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// IKE or ESP.
    pub protocol: Protocol,
    /// Encryption algorithms; all AEAD or all classic.
    pub encr: Vec<Encr>,
    /// Integrity algorithms; empty when the ciphers are AEAD.
    pub integ: Vec<Integ>,
    /// PRFs (IKE only).
    pub prf: Vec<Prf>,
    /// Diffie-Hellman groups: mandatory for IKE, the PFS groups for ESP.
    pub dh: Vec<DhGroup>,
    /// ESP: "no PFS" (the D-H transform NONE, `modpnone`) is acceptable too.
    /// Always false when `dh` is empty (no PFS at all) and for IKE.
    pub dh_none: bool,
    /// Extended sequence numbers (ESP only; `[No]` unless `esn` was given).
    pub esn: Vec<Esn>,
}

/// Why a proposal string was refused. Each names the offending token or
/// proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The list or one of its proposals is empty, or a token is (`aes128--sha1`).
    #[error("empty {0} proposal or algorithm in '{1}'")]
    Empty(Protocol, String),
    /// A token is no algorithm keyword at all.
    #[error("unknown algorithm '{token}' in {protocol} proposal '{proposal}'")]
    Unknown {
        /// The token.
        token: String,
        /// The protocol.
        protocol: Protocol,
        /// The proposal it appeared in.
        proposal: String,
    },
    /// A token names an algorithm strongSwan knows but ipiece does not implement.
    #[error("algorithm '{token}' in {protocol} proposal '{proposal}' is not supported (supported: aes128, aes256, aes128gcm16, aes256gcm16, sha1, sha256, sha384, sha512, prfsha1..prfsha512, modp1024..modp8192, ecp256, ecp384, ecp521, modp1024s160, modp2048s224, modp2048s256)")]
    Unsupported {
        /// The token.
        token: String,
        /// The protocol.
        protocol: Protocol,
        /// The proposal it appeared in.
        proposal: String,
    },
    /// A keyword of the other protocol (`esn` in IKE, `prfsha256` in ESP).
    #[error("'{token}' is not valid in an {protocol} proposal ('{proposal}')")]
    WrongProtocol {
        /// The token.
        token: String,
        /// The protocol.
        protocol: Protocol,
        /// The proposal it appeared in.
        proposal: String,
    },
    /// A mandatory transform type is missing.
    #[error("{protocol} proposal '{proposal}' has no {missing}")]
    Missing {
        /// What is missing, in words.
        missing: &'static str,
        /// The protocol.
        protocol: Protocol,
        /// The proposal.
        proposal: String,
    },
    /// AEAD and classic ciphers in one proposal.
    #[error("{protocol} proposal '{proposal}' mixes the AEAD cipher '{aead}' with the classic cipher '{classic}': put them in separate proposals")]
    MixedAead {
        /// The AEAD cipher.
        aead: Encr,
        /// The classic cipher.
        classic: Encr,
        /// The protocol.
        protocol: Protocol,
        /// The proposal.
        proposal: String,
    },
}

/// What one token means.
enum Token {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    DhNone,
    Esn(Esn),
}

fn lookup(token: &str) -> Option<Token> {
    Some(match token {
        "aes" | "aes128" => Token::Encr(Encr::AesCbc128),
        "aes256" => Token::Encr(Encr::AesCbc256),
        "aes128gcm16" | "aes128gcm128" | "aes128gcm" => Token::Encr(Encr::AesGcm16_128),
        "aes256gcm16" | "aes256gcm128" | "aes256gcm" => Token::Encr(Encr::AesGcm16_256),
        "sha" | "sha1" => Token::Integ(Integ::HmacSha1_96),
        "sha256" | "sha2_256" => Token::Integ(Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integ(Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integ(Integ::HmacSha512_256),
        "prfsha1" => Token::Prf(Prf::HmacSha1),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "modpnone" => Token::DhNone,
        "esn" => Token::Esn(Esn::Yes),
        "noesn" => Token::Esn(Esn::No),
        other => Token::Dh(DhGroup::ALL.into_iter().find(|g| g.name() == other)?),
    })
}

/// Keywords strongSwan accepts that ipiece does not implement, for a clearer
/// error than "unknown".
fn known_unsupported(token: &str) -> bool {
    const PREFIXES: [&str; 12] = [
        "aes192",
        "aes128gcm",
        "aes256gcm",
        "aes128ccm",
        "aes256ccm",
        "aes128ctr",
        "aes256ctr",
        "aes128gmac",
        "aes256gmac",
        "camellia",
        "chacha20",
        "3des",
    ];
    const WORDS: [&str; 30] = [
        "null",
        "des",
        "cast128",
        "blowfish",
        "twofish",
        "serpent",
        "md5",
        "md5_128",
        "sha1_160",
        "sha256_96",
        "sha2_256_96",
        "aesxcbc",
        "aescmac",
        "prfmd5",
        "prfaesxcbc",
        "prfaescmac",
        "prfcamelliaxcbc",
        "modp768",
        "modpnull",
        "modpcustom",
        "ecp192",
        "ecp224",
        "ecp224bp",
        "ecp256bp",
        "ecp384bp",
        "ecp512bp",
        "curve25519",
        "x25519",
        "curve448",
        "default",
    ];
    WORDS.contains(&token)
        || PREFIXES.iter().any(|p| token.starts_with(p))
        || token.starts_with("ke")
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Proposal {
    fn empty(protocol: Protocol) -> Proposal {
        Proposal {
            protocol,
            encr: Vec::new(),
            integ: Vec::new(),
            prf: Vec::new(),
            dh: Vec::new(),
            dh_none: false,
            esn: Vec::new(),
        }
    }

    /// Parses one proposal (`aes128-sha256-modp2048`). Keywords are
    /// case-insensitive.
    pub fn parse(protocol: Protocol, text: &str) -> Result<Proposal, ProposalError> {
        let text = text.trim();
        let mut p = Proposal::empty(protocol);
        if text.is_empty() {
            return Err(ProposalError::Empty(protocol, text.to_string()));
        }
        for raw in text.split('-') {
            let token = raw.trim().to_ascii_lowercase();
            if token.is_empty() {
                return Err(ProposalError::Empty(protocol, text.to_string()));
            }
            let wrong = || ProposalError::WrongProtocol {
                token: token.clone(),
                protocol,
                proposal: text.to_string(),
            };
            match lookup(&token) {
                Some(Token::Encr(e)) => push_unique(&mut p.encr, e),
                Some(Token::Integ(i)) => push_unique(&mut p.integ, i),
                Some(Token::Prf(f)) => match protocol {
                    Protocol::Ike => push_unique(&mut p.prf, f),
                    Protocol::Esp => return Err(wrong()),
                },
                Some(Token::Dh(g)) => push_unique(&mut p.dh, g),
                Some(Token::DhNone) => match protocol {
                    Protocol::Esp => p.dh_none = true,
                    Protocol::Ike => return Err(wrong()),
                },
                Some(Token::Esn(e)) => match protocol {
                    Protocol::Esp => push_unique(&mut p.esn, e),
                    Protocol::Ike => return Err(wrong()),
                },
                None if known_unsupported(&token) => {
                    return Err(ProposalError::Unsupported {
                        token,
                        protocol,
                        proposal: text.to_string(),
                    })
                }
                None => {
                    return Err(ProposalError::Unknown {
                        token,
                        protocol,
                        proposal: text.to_string(),
                    })
                }
            }
        }
        p.normalize(text)
    }

    /// Applies strongSwan's `check_proposal` rules (see the module docs).
    fn normalize(mut self, text: &str) -> Result<Proposal, ProposalError> {
        let protocol = self.protocol;
        let missing = |missing| ProposalError::Missing {
            missing,
            protocol,
            proposal: text.to_string(),
        };
        let aead = self.encr.iter().copied().find(|e| e.is_aead());
        let classic = self.encr.iter().copied().find(|e| !e.is_aead());
        if protocol == Protocol::Ike && self.prf.is_empty() {
            for integ in &self.integ {
                push_unique(&mut self.prf, integ.implied_prf());
            }
        }
        match (aead, classic) {
            (None, None) => return Err(missing("encryption algorithm")),
            (Some(aead), Some(classic)) => {
                return Err(ProposalError::MixedAead {
                    aead,
                    classic,
                    protocol,
                    proposal: text.to_string(),
                })
            }
            (Some(_), None) => self.integ.clear(),
            (None, Some(_)) => {
                if self.integ.is_empty() {
                    return Err(missing(
                        "integrity algorithm (needed with a non-AEAD cipher)",
                    ));
                }
            }
        }
        match protocol {
            Protocol::Ike => {
                if self.prf.is_empty() {
                    return Err(missing("PRF (an AEAD proposal needs one, e.g. prfsha256)"));
                }
                if self.dh.is_empty() {
                    return Err(missing("Diffie-Hellman group"));
                }
                self.dh_none = false;
            }
            Protocol::Esp => {
                if self.esn.is_empty() {
                    self.esn.push(Esn::No);
                }
                if self.dh.is_empty() {
                    self.dh_none = false;
                }
            }
        }
        Ok(self)
    }

    /// Parses a comma-separated list of proposals
    /// (`aes128-sha256-modp2048,aes256gcm16-prfsha384-ecp384`).
    pub fn parse_list(protocol: Protocol, text: &str) -> Result<Vec<Proposal>, ProposalError> {
        text.split(',')
            .map(|p| Proposal::parse(protocol, p))
            .collect()
    }

    /// The PRFs an IKE proposal without `prf...` keywords implies.
    fn implied_prfs(&self) -> Vec<Prf> {
        let mut prfs = Vec::new();
        for integ in &self.integ {
            push_unique(&mut prfs, integ.implied_prf());
        }
        prfs
    }

    /// Builds a proposal from the transforms of a received SA payload
    /// proposal. Transforms ipiece does not implement are returned apart (for
    /// the log), as are unknown types; NONE integrity (ID 0) is dropped and
    /// NONE Diffie-Hellman (ID 0) sets [`Proposal::dh_none`]. No defaults are
    /// filled in: a received ESP proposal without ESN transforms has an empty
    /// `esn` list.
    pub fn from_transforms<I>(protocol: Protocol, transforms: I) -> (Proposal, Vec<Transform>)
    where
        I: IntoIterator<Item = Transform>,
    {
        let mut p = Proposal::empty(protocol);
        let mut unsupported = Vec::new();
        for t in transforms {
            let known = match t.kind {
                TransformType::Encr => {
                    Encr::from_transform(t.id, t.key_bits).map(|e| push_unique(&mut p.encr, e))
                }
                TransformType::Integ if t.id == 0 => Some(()),
                TransformType::Integ => {
                    Integ::from_transform(t.id).map(|i| push_unique(&mut p.integ, i))
                }
                TransformType::Prf => Prf::from_transform(t.id).map(|f| push_unique(&mut p.prf, f)),
                TransformType::Dh if t.id == 0 => {
                    p.dh_none = true;
                    Some(())
                }
                TransformType::Dh => {
                    DhGroup::from_transform(t.id).map(|g| push_unique(&mut p.dh, g))
                }
                TransformType::Esn => {
                    let esn = match t.id {
                        0 => Some(Esn::No),
                        1 => Some(Esn::Yes),
                        _ => None,
                    };
                    esn.map(|e| push_unique(&mut p.esn, e))
                }
            };
            if known.is_none() {
                unsupported.push(t);
            }
        }
        if p.dh.is_empty() {
            p.dh_none = false;
        }
        (p, unsupported)
    }

    /// The transforms of this proposal for an SA payload, by type in the
    /// order ENCR, PRF, INTEG, D-H, ESN and by preference within a type.
    pub fn to_transforms(&self) -> Vec<Transform> {
        let mut out = Vec::new();
        for e in &self.encr {
            out.push(Transform {
                kind: TransformType::Encr,
                id: e.transform_id(),
                key_bits: Some(e.key_bits()),
            });
        }
        if self.protocol == Protocol::Ike {
            out.extend(
                self.prf
                    .iter()
                    .map(|f| Transform::new(TransformType::Prf, f.transform_id())),
            );
        }
        out.extend(
            self.integ
                .iter()
                .map(|i| Transform::new(TransformType::Integ, i.transform_id())),
        );
        out.extend(
            self.dh
                .iter()
                .map(|g| Transform::new(TransformType::Dh, g.transform_id())),
        );
        if self.dh_none {
            out.push(Transform::new(TransformType::Dh, 0));
        }
        if self.protocol == Protocol::Esp {
            out.extend(
                self.esn
                    .iter()
                    .map(|e| Transform::new(TransformType::Esn, e.transform_id())),
            );
        }
        out
    }

    /// The same proposal without Diffie-Hellman groups: what goes in the SA
    /// payload of IKE_AUTH, where the first CHILD_SA has no KE payload of its
    /// own (RFC 7296 section 1.2).
    pub fn without_dh(&self) -> Proposal {
        let mut p = self.clone();
        p.dh.clear();
        p.dh_none = false;
        p
    }

    /// True when the proposal holds exactly one transform of each type the
    /// protocol uses, as a responder's answer must (RFC 7296 section 3.3).
    pub fn is_single_choice(&self) -> bool {
        let one = |n: usize| n == 1;
        let integ_ok = match self.encr.first() {
            Some(e) if e.is_aead() => self.integ.is_empty(),
            _ => one(self.integ.len()),
        };
        match self.protocol {
            Protocol::Ike => {
                one(self.encr.len()) && integ_ok && one(self.prf.len()) && one(self.dh.len())
            }
            Protocol::Esp => {
                one(self.encr.len())
                    && integ_ok
                    && self.dh.len() + usize::from(self.dh_none) <= 1
                    && self.esn.len() <= 1
            }
        }
    }
}

impl fmt::Display for Proposal {
    /// swanctl syntax; parsing the output gives back the same proposal. The
    /// PRFs of an IKE proposal are omitted when they are the ones its
    /// integrity algorithms imply, `noesn` when it is the only ESN choice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<&'static str> = Vec::new();
        words.extend(self.encr.iter().map(|e| e.name()));
        words.extend(self.integ.iter().map(|i| i.name()));
        if self.protocol == Protocol::Ike
            && (self.prf != self.implied_prfs() || self.prf.is_empty())
        {
            words.extend(self.prf.iter().map(|p| p.name()));
        }
        words.extend(self.dh.iter().map(|g| g.name()));
        if self.dh_none {
            words.push("modpnone");
        }
        if self.protocol == Protocol::Esp && self.esn != [Esn::No] {
            words.extend(self.esn.iter().map(|e| e.name()));
        }
        f.write_str(&words.join("-"))
    }
}

/// Formats a proposal list as swanctl does (comma-separated).
pub fn display_list(proposals: &[Proposal]) -> String {
    proposals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The algorithms of an established IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    /// Encryption of SK payloads.
    pub encr: Encr,
    /// Integrity of SK payloads (none with AEAD).
    pub integ: Option<Integ>,
    /// The PRF.
    pub prf: Prf,
    /// The Diffie-Hellman group.
    pub dh: DhGroup,
}

impl IkeSuite {
    /// The suite as a one-choice proposal (for the responder's SA payload).
    pub fn to_proposal(&self) -> Proposal {
        Proposal {
            protocol: Protocol::Ike,
            encr: vec![self.encr],
            integ: self.integ.into_iter().collect(),
            prf: vec![self.prf],
            dh: vec![self.dh],
            dh_none: false,
            esn: Vec::new(),
        }
    }
}

impl fmt::Display for IkeSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_proposal().fmt(f)
    }
}

/// The algorithms of an established ESP CHILD_SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EspSuite {
    /// Encryption.
    pub encr: Encr,
    /// Integrity (none with AEAD).
    pub integ: Option<Integ>,
    /// The PFS group of this exchange, if any.
    pub dh: Option<DhGroup>,
    /// Whether extended sequence numbers are used.
    pub esn: bool,
}

impl EspSuite {
    /// The suite as a one-choice proposal (for the responder's SA payload).
    pub fn to_proposal(&self) -> Proposal {
        Proposal {
            protocol: Protocol::Esp,
            encr: vec![self.encr],
            integ: self.integ.into_iter().collect(),
            prf: Vec::new(),
            dh: self.dh.into_iter().collect(),
            dh_none: false,
            esn: vec![if self.esn { Esn::Yes } else { Esn::No }],
        }
    }
}

impl fmt::Display for EspSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_proposal().fmt(f)
    }
}

/// The first item of `offered` (in the peer's order) that `configured` also has.
fn first_common<T: Copy + PartialEq>(offered: &[T], configured: &[T]) -> Option<T> {
    offered.iter().copied().find(|o| configured.contains(o))
}

/// Encryption and integrity common to two proposals.
fn match_cipher(offered: &Proposal, configured: &Proposal) -> Option<(Encr, Option<Integ>)> {
    // Take the first common cipher for which the integrity rule can be met.
    offered
        .encr
        .iter()
        .copied()
        .filter(|e| configured.encr.contains(e))
        .find_map(|encr| {
            if encr.is_aead() {
                Some((encr, None))
            } else {
                first_common(&offered.integ, &configured.integ).map(|i| (encr, Some(i)))
            }
        })
}

/// The IKE suite both proposals allow, taking the peer's preference.
pub fn match_ike(offered: &Proposal, configured: &Proposal) -> Option<IkeSuite> {
    if offered.protocol != Protocol::Ike || configured.protocol != Protocol::Ike {
        return None;
    }
    let (encr, integ) = match_cipher(offered, configured)?;
    Some(IkeSuite {
        encr,
        integ,
        prf: first_common(&offered.prf, &configured.prf)?,
        dh: first_common(&offered.dh, &configured.dh)?,
    })
}

/// The ESP suite both proposals allow, taking the peer's preference. A
/// proposal with no D-H transform, or with NONE, accepts "no PFS"; an empty
/// ESN list counts as "no ESN".
pub fn match_esp(offered: &Proposal, configured: &Proposal) -> Option<EspSuite> {
    if offered.protocol != Protocol::Esp || configured.protocol != Protocol::Esp {
        return None;
    }
    let (encr, integ) = match_cipher(offered, configured)?;
    let dh = match first_common(&offered.dh, &configured.dh) {
        Some(g) => Some(g),
        None => {
            let none_ok = |p: &Proposal| p.dh.is_empty() || p.dh_none;
            if none_ok(offered) && none_ok(configured) {
                None
            } else {
                return None;
            }
        }
    };
    let esn_list = |p: &Proposal| {
        if p.esn.is_empty() {
            vec![Esn::No]
        } else {
            p.esn.clone()
        }
    };
    let esn = first_common(&esn_list(offered), &esn_list(configured))?;
    Some(EspSuite {
        encr,
        integ,
        dh,
        esn: esn == Esn::Yes,
    })
}

/// The responder's choice for an IKE SA (RFC 7296 section 2.7): the first of
/// the initiator's proposals that one of ours accepts, with one transform of
/// each type (the first of the initiator's that we also allow). Returns the
/// index in `offered` (its proposal number is echoed in the answer) and the
/// suite; `None` means NO_PROPOSAL_CHOSEN.
pub fn select_ike(offered: &[Proposal], configured: &[Proposal]) -> Option<(usize, IkeSuite)> {
    offered.iter().enumerate().find_map(|(i, o)| {
        configured
            .iter()
            .find_map(|c| match_ike(o, c))
            .map(|s| (i, s))
    })
}

/// The responder's choice for an ESP CHILD_SA, as [`select_ike`].
pub fn select_esp(offered: &[Proposal], configured: &[Proposal]) -> Option<(usize, EspSuite)> {
    offered.iter().enumerate().find_map(|(i, o)| {
        configured
            .iter()
            .find_map(|c| match_esp(o, c))
            .map(|s| (i, s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike(s: &str) -> Proposal {
        Proposal::parse(Protocol::Ike, s).unwrap()
    }

    fn esp(s: &str) -> Proposal {
        Proposal::parse(Protocol::Esp, s).unwrap()
    }

    #[test]
    fn parses_the_interop_matrix() {
        let p = ike("aes128-sha1-modp2048");
        assert_eq!(p.encr, [Encr::AesCbc128]);
        assert_eq!(p.integ, [Integ::HmacSha1_96]);
        assert_eq!(
            p.prf,
            [Prf::HmacSha1],
            "PRF implied by the integrity algorithm"
        );
        assert_eq!(p.dh, [DhGroup::Modp2048]);
        assert!(p.esn.is_empty() && !p.dh_none);

        let p = ike("aes256-sha256-modp2048");
        assert_eq!(
            (p.encr[0], p.integ[0], p.prf[0]),
            (Encr::AesCbc256, Integ::HmacSha256_128, Prf::HmacSha256)
        );

        let p = ike("aes128-sha256-ecp256");
        assert_eq!(p.dh, [DhGroup::Ecp256]);

        let p = ike("aes128gcm16-prfsha256-ecp256");
        assert_eq!(p.encr, [Encr::AesGcm16_128]);
        assert!(p.integ.is_empty());
        assert_eq!(p.prf, [Prf::HmacSha256]);

        let p = ike("aes256gcm16-prfsha384-ecp384");
        assert_eq!(
            (p.encr[0], p.prf[0], p.dh[0]),
            (Encr::AesGcm16_256, Prf::HmacSha384, DhGroup::Ecp384)
        );

        let p = ike("aes256-sha512-modp4096");
        assert_eq!(
            (p.integ[0], p.prf[0], p.dh[0]),
            (Integ::HmacSha512_256, Prf::HmacSha512, DhGroup::Modp4096)
        );
    }

    #[test]
    fn several_algorithms_of_a_kind() {
        let p = ike("aes128-aes256-sha1-sha256-modp2048-ecp256");
        assert_eq!(p.encr, [Encr::AesCbc128, Encr::AesCbc256]);
        assert_eq!(p.integ, [Integ::HmacSha1_96, Integ::HmacSha256_128]);
        assert_eq!(p.prf, [Prf::HmacSha1, Prf::HmacSha256]);
        assert_eq!(p.dh, [DhGroup::Modp2048, DhGroup::Ecp256]);
        assert_eq!(p.to_string(), "aes128-aes256-sha1-sha256-modp2048-ecp256");
        // Duplicates collapse.
        assert_eq!(ike("aes128-aes-sha1-sha-modp2048").encr, [Encr::AesCbc128]);
    }

    #[test]
    fn lists_aliases_and_case() {
        let list = Proposal::parse_list(
            Protocol::Ike,
            "aes128-sha256-modp2048, AES256GCM16-PRFSHA384-ECP384",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            display_list(&list),
            "aes128-sha256-modp2048,aes256gcm16-prfsha384-ecp384"
        );
        assert_eq!(ike("aes-sha-modp1024"), ike("aes128-sha1-modp1024"));
        assert_eq!(
            ike("aes256gcm128-prfsha256-modp2048"),
            ike("aes256gcm16-prfsha256-modp2048")
        );
        assert_eq!(
            ike("aes128gcm-prfsha256-modp2048"),
            ike("aes128gcm16-prfsha256-modp2048")
        );
        assert_eq!(
            ike("aes128-sha2_256-modp2048"),
            ike("aes128-sha256-modp2048")
        );
        assert_eq!(
            ike("aes128-sha1-modp1024s160-modp2048s224-modp2048s256-modp1536-modp3072-modp6144-modp8192-ecp521").dh.len(),
            8
        );
    }

    #[test]
    fn strongswan_aead_rules() {
        // PRFs are implied before integrity algorithms are dropped for AEAD,
        // as strongSwan's check_proposal does.
        let p = ike("aes128gcm16-sha256-ecp256");
        assert!(p.integ.is_empty());
        assert_eq!(p.prf, [Prf::HmacSha256]);
        assert_eq!(p.to_string(), "aes128gcm16-prfsha256-ecp256");
        let p = esp("aes256gcm16-sha256");
        assert!(p.integ.is_empty());
        assert_eq!(p.to_string(), "aes256gcm16");
    }

    #[test]
    fn esp_proposals() {
        let p = esp("aes128-sha1");
        assert!(p.dh.is_empty() && !p.dh_none);
        assert!(p.prf.is_empty());
        assert_eq!(p.esn, [Esn::No]);
        assert_eq!(p.to_string(), "aes128-sha1");

        let p = esp("aes128gcm16-ecp256");
        assert_eq!(p.dh, [DhGroup::Ecp256]);
        assert_eq!(p.to_string(), "aes128gcm16-ecp256");

        let p = esp("aes256-sha256-modp2048-modpnone-esn-noesn");
        assert!(p.dh_none);
        assert_eq!(p.esn, [Esn::Yes, Esn::No]);
        assert_eq!(p.to_string(), "aes256-sha256-modp2048-modpnone-esn-noesn");

        // modpnone alone is "no PFS".
        assert_eq!(esp("aes128-sha1-modpnone"), esp("aes128-sha1"));
    }

    #[test]
    fn display_round_trips() {
        for (protocol, text) in [
            (Protocol::Ike, "aes128-sha1-modp2048"),
            (Protocol::Ike, "aes128-sha1-prfsha256-modp2048"),
            (Protocol::Ike, "aes128-sha256-sha1-prfsha1-modp2048"),
            (
                Protocol::Ike,
                "aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-ecp521",
            ),
            (Protocol::Ike, "aes128-aes256-sha1-sha256-modp2048-ecp256"),
            (Protocol::Esp, "aes128-sha1"),
            (Protocol::Esp, "aes128gcm16-esn"),
            (Protocol::Esp, "aes256-sha512-modp4096-modpnone"),
            (Protocol::Esp, "aes256-sha384-noesn-esn"),
        ] {
            let p = Proposal::parse(protocol, text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(Proposal::parse(protocol, &p.to_string()).unwrap(), p);
        }
    }

    fn err(protocol: Protocol, text: &str) -> ProposalError {
        Proposal::parse_list(protocol, text).unwrap_err()
    }

    #[test]
    fn errors_name_the_bad_token() {
        let e = err(Protocol::Ike, "aes128-sha1-modp2048,aes128-sha1-foo");
        assert!(matches!(&e, ProposalError::Unknown { token, .. } if token == "foo"));
        assert_eq!(
            e.to_string(),
            "unknown algorithm 'foo' in IKE proposal 'aes128-sha1-foo'"
        );

        let e = err(Protocol::Ike, "aes192-sha1-modp2048");
        assert!(matches!(&e, ProposalError::Unsupported { token, .. } if token == "aes192"));
        assert!(e.to_string().starts_with(
            "algorithm 'aes192' in IKE proposal 'aes192-sha1-modp2048' is not supported"
        ));
        for t in [
            "3des",
            "aes128gcm8",
            "aes256ccm16",
            "md5",
            "sha256_96",
            "curve25519",
            "modp768",
            "ecp224",
            "chacha20poly1305",
            "default",
            "ke1_modp2048",
        ] {
            let e = err(Protocol::Ike, &format!("aes128-sha1-modp2048-{t}"));
            assert!(
                matches!(&e, ProposalError::Unsupported { token, .. } if token == t),
                "{t}: {e}"
            );
        }

        let e = err(Protocol::Ike, "aes128-sha1-modp2048-esn");
        assert_eq!(
            e.to_string(),
            "'esn' is not valid in an IKE proposal ('aes128-sha1-modp2048-esn')"
        );
        assert!(matches!(
            err(Protocol::Ike, "aes128-sha1-modp2048-modpnone"),
            ProposalError::WrongProtocol { .. }
        ));
        let e = err(Protocol::Esp, "aes128-sha1-prfsha1");
        assert!(matches!(&e, ProposalError::WrongProtocol { token, .. } if token == "prfsha1"));

        assert_eq!(
            err(Protocol::Ike, "aes128-sha1").to_string(),
            "IKE proposal 'aes128-sha1' has no Diffie-Hellman group"
        );
        assert!(err(Protocol::Ike, "aes128gcm16-ecp256")
            .to_string()
            .contains("has no PRF"));
        assert!(err(Protocol::Esp, "aes128-modp2048")
            .to_string()
            .contains("has no integrity algorithm"));
        assert!(err(Protocol::Ike, "sha1-modp2048")
            .to_string()
            .contains("has no encryption algorithm"));
        let e = err(Protocol::Ike, "aes128-aes128gcm16-sha1-modp2048");
        assert!(matches!(
            e,
            ProposalError::MixedAead {
                aead: Encr::AesGcm16_128,
                classic: Encr::AesCbc128,
                ..
            }
        ));
        assert!(e.to_string().contains("'aes128gcm16'") && e.to_string().contains("'aes128'"));

        assert!(matches!(err(Protocol::Ike, ""), ProposalError::Empty(..)));
        assert!(matches!(
            err(Protocol::Ike, "aes128--sha1-modp2048"),
            ProposalError::Empty(..)
        ));
        assert!(matches!(
            err(Protocol::Esp, "aes128-sha1,,aes256-sha1"),
            ProposalError::Empty(..)
        ));
    }

    #[test]
    fn transforms_round_trip() {
        for p in [
            ike("aes128-aes256-sha1-sha256-modp2048-ecp256"),
            ike("aes256gcm16-prfsha384-ecp384"),
            esp("aes128-sha1-modp2048-modpnone-esn-noesn"),
            esp("aes128gcm16"),
        ] {
            let t = p.to_transforms();
            let (back, unsupported) = Proposal::from_transforms(p.protocol, t);
            assert!(unsupported.is_empty());
            assert_eq!(back, p);
        }
        let t = ike("aes256-sha256-modp2048").to_transforms();
        assert_eq!(
            t,
            [
                Transform {
                    kind: TransformType::Encr,
                    id: 12,
                    key_bits: Some(256)
                },
                Transform::new(TransformType::Prf, 5),
                Transform::new(TransformType::Integ, 12),
                Transform::new(TransformType::Dh, 14),
            ]
        );
        assert_eq!(TransformType::from_number(4), Some(TransformType::Dh));
        assert_eq!(TransformType::from_number(6), None);
        assert_eq!(
            t.iter().map(|t| t.kind.number()).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn unsupported_transforms_are_set_apart() {
        let offered = [
            Transform {
                kind: TransformType::Encr,
                id: 3, // 3DES
                key_bits: None,
            },
            Transform {
                kind: TransformType::Encr,
                id: 12,
                key_bits: Some(192),
            },
            Transform {
                kind: TransformType::Encr,
                id: 20,
                key_bits: Some(128),
            },
            Transform::new(TransformType::Integ, 0), // NONE with AEAD
            Transform::new(TransformType::Dh, 31),   // curve25519
            Transform::new(TransformType::Dh, 0),    // NONE
            Transform::new(TransformType::Dh, 19),
            Transform::new(TransformType::Esn, 1),
        ];
        let (p, unsupported) = Proposal::from_transforms(Protocol::Esp, offered);
        assert_eq!(p.encr, [Encr::AesGcm16_128]);
        assert!(p.integ.is_empty());
        assert_eq!(p.dh, [DhGroup::Ecp256]);
        assert!(p.dh_none);
        assert_eq!(p.esn, [Esn::Yes]);
        assert_eq!(unsupported, [offered[0], offered[1], offered[4]]);
        assert_eq!(p.to_string(), "aes128gcm16-ecp256-modpnone-esn");
    }

    #[test]
    fn responder_takes_the_first_acceptable_offer() {
        let configured = Proposal::parse_list(Protocol::Ike, "aes128-sha1-modp2048").unwrap();
        let offered =
            Proposal::parse_list(Protocol::Ike, "aes256-sha256-ecp256,aes128-sha1-modp2048")
                .unwrap();
        let (i, suite) = select_ike(&offered, &configured).unwrap();
        assert_eq!(i, 1);
        assert_eq!(
            suite,
            IkeSuite {
                encr: Encr::AesCbc128,
                integ: Some(Integ::HmacSha1_96),
                prf: Prf::HmacSha1,
                dh: DhGroup::Modp2048
            }
        );
        assert_eq!(suite.to_string(), "aes128-sha1-modp2048");
        assert!(suite.to_proposal().is_single_choice());

        // Within a proposal, the initiator's order wins.
        let configured =
            Proposal::parse_list(Protocol::Ike, "aes128-aes256-sha1-sha256-modp2048-ecp256")
                .unwrap();
        let offered =
            Proposal::parse_list(Protocol::Ike, "aes256-aes128-sha256-sha1-ecp256-modp2048")
                .unwrap();
        let (i, suite) = select_ike(&offered, &configured).unwrap();
        assert_eq!(i, 0);
        assert_eq!(suite.to_string(), "aes256-sha256-ecp256");

        // The first of the initiator's proposals wins even if ours prefer another.
        let configured = Proposal::parse_list(
            Protocol::Ike,
            "aes256gcm16-prfsha384-ecp384,aes128-sha1-modp2048",
        )
        .unwrap();
        let offered = Proposal::parse_list(
            Protocol::Ike,
            "aes128-sha1-modp2048,aes256gcm16-prfsha384-ecp384",
        )
        .unwrap();
        assert_eq!(
            select_ike(&offered, &configured).unwrap().1.to_string(),
            "aes128-sha1-modp2048"
        );

        // AEAD: no integrity algorithm in the suite.
        let (_, suite) = select_ike(&[ike("aes256gcm16-prfsha384-ecp384")], &configured).unwrap();
        assert_eq!(suite.integ, None);
        assert_eq!(suite.to_string(), "aes256gcm16-prfsha384-ecp384");

        // NO_PROPOSAL_CHOSEN.
        assert_eq!(
            select_ike(&[ike("aes256-sha512-modp4096")], &configured),
            None
        );
        assert_eq!(
            select_ike(&[ike("aes128-sha1-modp4096")], &configured),
            None
        );
        assert_eq!(
            select_ike(&[esp("aes128-sha1")], &[esp("aes128-sha1")]),
            None,
            "protocols must match"
        );
    }

    #[test]
    fn esp_selection_pfs_and_esn() {
        let with_pfs = [esp("aes128-sha256-ecp256")];
        let pfs_optional = [esp("aes128-sha256-ecp256-modpnone")];
        let no_pfs = [esp("aes128-sha256")];

        let (_, s) = select_esp(&with_pfs, &with_pfs).unwrap();
        assert_eq!(s.dh, Some(DhGroup::Ecp256));
        assert_eq!(s.to_string(), "aes128-sha256-ecp256");
        // Peer offers no PFS but we require it.
        assert_eq!(select_esp(&no_pfs, &with_pfs), None);
        // Peer requires PFS, we want none.
        assert_eq!(select_esp(&with_pfs, &no_pfs), None);
        // Optional on one side.
        assert_eq!(select_esp(&no_pfs, &pfs_optional).unwrap().1.dh, None);
        assert_eq!(select_esp(&pfs_optional, &no_pfs).unwrap().1.dh, None);
        assert_eq!(
            select_esp(&pfs_optional, &with_pfs).unwrap().1.dh,
            Some(DhGroup::Ecp256)
        );
        // The first CHILD_SA (IKE_AUTH) carries no KE: match without groups.
        assert_eq!(
            select_esp(&[with_pfs[0].without_dh()], &[with_pfs[0].without_dh()])
                .unwrap()
                .1
                .dh,
            None
        );

        // ESN: only when both sides allow it; an empty received list is "no".
        let esn_only = [esp("aes128-sha256-esn")];
        let either = [esp("aes128-sha256-esn-noesn")];
        assert_eq!(select_esp(&esn_only, &no_pfs), None);
        assert!(select_esp(&either, &esn_only).unwrap().1.esn);
        assert!(!select_esp(&either, &no_pfs).unwrap().1.esn);
        let (received, _) = Proposal::from_transforms(
            Protocol::Esp,
            no_pfs[0]
                .to_transforms()
                .into_iter()
                .filter(|t| t.kind != TransformType::Esn),
        );
        assert!(received.esn.is_empty());
        assert!(!select_esp(&[received], &either).unwrap().1.esn);

        let s = EspSuite {
            encr: Encr::AesGcm16_256,
            integ: None,
            dh: Some(DhGroup::Ecp384),
            esn: true,
        };
        assert_eq!(s.to_string(), "aes256gcm16-ecp384-esn");
        assert!(s.to_proposal().is_single_choice());
    }

    #[test]
    fn single_choice_check() {
        assert!(ike("aes128-sha1-modp2048").is_single_choice());
        assert!(ike("aes128gcm16-prfsha256-ecp256").is_single_choice());
        assert!(!ike("aes128-aes256-sha1-modp2048").is_single_choice());
        assert!(!ike("aes128-sha1-sha256-modp2048").is_single_choice());
        assert!(!ike("aes128-sha1-modp2048-ecp256").is_single_choice());
        assert!(esp("aes128-sha1").is_single_choice());
        assert!(!esp("aes128-sha1-esn-noesn").is_single_choice());
        assert!(!esp("aes128-sha1-modp2048-modpnone").is_single_choice());
    }
}
