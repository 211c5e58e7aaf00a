//! The IANA registries of IKEv2 ("Internet Key Exchange Version 2 (IKEv2)
//! Parameters"), as `#[non_exhaustive]` enums with an `Unknown(n)` variant.
//!
//! - Exchange types: RFC 7296 3.1.
//! - Payload types: RFC 7296 3.2 (and later additions).
//! - Transform types and IDs: RFC 7296 3.3.2, 3.3.5 (Key Length attribute).
//! - Security protocol IDs: RFC 7296 3.3.1.
//! - Notify message types: RFC 7296 3.10.1, RFC 4555, RFC 5685 and later.
//! - ID types: RFC 7296 3.5; traffic selector types: RFC 7296 3.13.1;
//!   authentication methods: RFC 7296 3.8, RFC 7427.
//!
//! Conversions from the wire number never produce `Unknown(n)` for a number
//! that has a named variant, so `parse` followed by `emit` is the identity.

/// Defines an IANA number registry as an enum with `From` conversions both
/// ways; unknown numbers land in `Unknown(n)`.
macro_rules! iana_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A number this implementation has no name for.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

iana_enum! {
    /// IKEv2 exchange types (RFC 7296 3.1).
    pub enum ExchangeType: u8 {
        /// IKE_SA_INIT (34).
        IkeSaInit = 34,
        /// IKE_AUTH (35).
        IkeAuth = 35,
        /// CREATE_CHILD_SA (36).
        CreateChildSa = 36,
        /// INFORMATIONAL (37).
        Informational = 37,
        /// IKE_SESSION_RESUME (38, RFC 5723).
        IkeSessionResume = 38,
        /// IKE_INTERMEDIATE (43, RFC 9242).
        IkeIntermediate = 43,
        /// IKE_FOLLOWUP_KE (44, RFC 9370).
        IkeFollowupKe = 44,
    }
}

iana_enum! {
    /// IKEv2 payload types (RFC 7296 3.2), as found in Next Payload fields.
    pub enum PayloadType: u8 {
        /// No Next Payload (0): the end of a chain.
        NoNext = 0,
        /// Security Association (33).
        Sa = 33,
        /// Key Exchange (34).
        Ke = 34,
        /// Identification - Initiator (35).
        IdI = 35,
        /// Identification - Responder (36).
        IdR = 36,
        /// Certificate (37).
        Cert = 37,
        /// Certificate Request (38).
        CertReq = 38,
        /// Authentication (39).
        Auth = 39,
        /// Nonce (40).
        Nonce = 40,
        /// Notify (41).
        Notify = 41,
        /// Delete (42).
        Delete = 42,
        /// Vendor ID (43).
        VendorId = 43,
        /// Traffic Selector - Initiator (44).
        TsI = 44,
        /// Traffic Selector - Responder (45).
        TsR = 45,
        /// Encrypted and Authenticated (46).
        Sk = 46,
        /// Configuration (47).
        Cp = 47,
        /// Extensible Authentication (48).
        Eap = 48,
        /// Generic Secure Password Methods (49, RFC 6467).
        Gspm = 49,
        /// Encrypted and Authenticated Fragment (53, RFC 7383).
        Skf = 53,
    }
}

iana_enum! {
    /// Transform types (RFC 7296 3.3.2).
    pub enum TransformType: u8 {
        /// Encryption Algorithm (ENCR, 1).
        Encr = 1,
        /// Pseudorandom Function (PRF, 2).
        Prf = 2,
        /// Integrity Algorithm (INTEG, 3).
        Integ = 3,
        /// Diffie-Hellman group / Key Exchange Method (D-H, 4).
        Dh = 4,
        /// Extended Sequence Numbers (ESN, 5).
        Esn = 5,
    }
}

iana_enum! {
    /// Transform type 1: encryption algorithm IDs (RFC 7296 3.3.2, RFC 4106, RFC 7634).
    pub enum EncrId: u16 {
        /// ENCR_DES_IV64 (1).
        DesIv64 = 1,
        /// ENCR_DES (2).
        Des = 2,
        /// ENCR_3DES (3).
        TripleDes = 3,
        /// ENCR_RC5 (4).
        Rc5 = 4,
        /// ENCR_IDEA (5).
        Idea = 5,
        /// ENCR_CAST (6).
        Cast = 6,
        /// ENCR_BLOWFISH (7).
        Blowfish = 7,
        /// ENCR_3IDEA (8).
        TripleIdea = 8,
        /// ENCR_DES_IV32 (9).
        DesIv32 = 9,
        /// ENCR_NULL (11).
        Null = 11,
        /// ENCR_AES_CBC (12): key length attribute required.
        AesCbc = 12,
        /// ENCR_AES_CTR (13).
        AesCtr = 13,
        /// ENCR_AES_CCM_8 (14).
        AesCcm8 = 14,
        /// ENCR_AES_CCM_12 (15).
        AesCcm12 = 15,
        /// ENCR_AES_CCM_16 (16).
        AesCcm16 = 16,
        /// ENCR_AES_GCM_8 (18).
        AesGcm8 = 18,
        /// ENCR_AES_GCM_12 (19).
        AesGcm12 = 19,
        /// ENCR_AES_GCM_16 (20): 16-octet ICV, key length attribute required.
        AesGcm16 = 20,
        /// ENCR_NULL_AUTH_AES_GMAC (21).
        NullAuthAesGmac = 21,
        /// ENCR_CAMELLIA_CBC (23).
        CamelliaCbc = 23,
        /// ENCR_CAMELLIA_CTR (24).
        CamelliaCtr = 24,
        /// ENCR_CAMELLIA_CCM_8 (25).
        CamelliaCcm8 = 25,
        /// ENCR_CAMELLIA_CCM_12 (26).
        CamelliaCcm12 = 26,
        /// ENCR_CAMELLIA_CCM_16 (27).
        CamelliaCcm16 = 27,
        /// ENCR_CHACHA20_POLY1305 (28, RFC 7634).
        ChaCha20Poly1305 = 28,
    }
}

iana_enum! {
    /// Transform type 2: pseudorandom function IDs (RFC 7296 3.3.2, RFC 4868).
    pub enum PrfId: u16 {
        /// PRF_HMAC_MD5 (1).
        HmacMd5 = 1,
        /// PRF_HMAC_SHA1 (2).
        HmacSha1 = 2,
        /// PRF_HMAC_TIGER (3).
        HmacTiger = 3,
        /// PRF_AES128_XCBC (4).
        Aes128Xcbc = 4,
        /// PRF_HMAC_SHA2_256 (5).
        HmacSha2_256 = 5,
        /// PRF_HMAC_SHA2_384 (6).
        HmacSha2_384 = 6,
        /// PRF_HMAC_SHA2_512 (7).
        HmacSha2_512 = 7,
        /// PRF_AES128_CMAC (8).
        Aes128Cmac = 8,
    }
}

iana_enum! {
    /// Transform type 3: integrity algorithm IDs (RFC 7296 3.3.2, RFC 4868).
    pub enum IntegId: u16 {
        /// NONE (0): with combined-mode (AEAD) ciphers.
        None = 0,
        /// AUTH_HMAC_MD5_96 (1).
        HmacMd5_96 = 1,
        /// AUTH_HMAC_SHA1_96 (2).
        HmacSha1_96 = 2,
        /// AUTH_DES_MAC (3).
        DesMac = 3,
        /// AUTH_KPDK_MD5 (4).
        KpdkMd5 = 4,
        /// AUTH_AES_XCBC_96 (5).
        AesXcbc96 = 5,
        /// AUTH_HMAC_MD5_128 (6).
        HmacMd5_128 = 6,
        /// AUTH_HMAC_SHA1_160 (7).
        HmacSha1_160 = 7,
        /// AUTH_AES_CMAC_96 (8).
        AesCmac96 = 8,
        /// AUTH_AES_128_GMAC (9).
        Aes128Gmac = 9,
        /// AUTH_AES_192_GMAC (10).
        Aes192Gmac = 10,
        /// AUTH_AES_256_GMAC (11).
        Aes256Gmac = 11,
        /// AUTH_HMAC_SHA2_256_128 (12).
        HmacSha2_256_128 = 12,
        /// AUTH_HMAC_SHA2_384_192 (13).
        HmacSha2_384_192 = 13,
        /// AUTH_HMAC_SHA2_512_256 (14).
        HmacSha2_512_256 = 14,
    }
}

iana_enum! {
    /// Transform type 4: Diffie-Hellman group (key exchange method) IDs
    /// (RFC 7296 3.3.2, RFC 3526, RFC 5114, RFC 5903, RFC 8031).
    pub enum DhGroup: u16 {
        /// NONE (0): no PFS in CREATE_CHILD_SA proposals.
        None = 0,
        /// 768-bit MODP (1).
        Modp768 = 1,
        /// 1024-bit MODP (2).
        Modp1024 = 2,
        /// 1536-bit MODP (5).
        Modp1536 = 5,
        /// 2048-bit MODP (14).
        Modp2048 = 14,
        /// 3072-bit MODP (15).
        Modp3072 = 15,
        /// 4096-bit MODP (16).
        Modp4096 = 16,
        /// 6144-bit MODP (17).
        Modp6144 = 17,
        /// 8192-bit MODP (18).
        Modp8192 = 18,
        /// 256-bit random ECP (NIST P-256, 19).
        Ecp256 = 19,
        /// 384-bit random ECP (NIST P-384, 20).
        Ecp384 = 20,
        /// 521-bit random ECP (NIST P-521, 21).
        Ecp521 = 21,
        /// 1024-bit MODP with 160-bit prime order subgroup (22).
        Modp1024s160 = 22,
        /// 2048-bit MODP with 224-bit prime order subgroup (23).
        Modp2048s224 = 23,
        /// 2048-bit MODP with 256-bit prime order subgroup (24).
        Modp2048s256 = 24,
        /// 192-bit random ECP (25).
        Ecp192 = 25,
        /// 224-bit random ECP (26).
        Ecp224 = 26,
        /// brainpoolP224r1 (27).
        Brainpool224 = 27,
        /// brainpoolP256r1 (28).
        Brainpool256 = 28,
        /// brainpoolP384r1 (29).
        Brainpool384 = 29,
        /// brainpoolP512r1 (30).
        Brainpool512 = 30,
        /// Curve25519 (31).
        Curve25519 = 31,
        /// Curve448 (32).
        Curve448 = 32,
    }
}

iana_enum! {
    /// Transform type 5: extended sequence numbers (RFC 7296 3.3.2).
    pub enum EsnId: u16 {
        /// No Extended Sequence Numbers (0).
        NoEsn = 0,
        /// Extended Sequence Numbers (1).
        Esn = 1,
    }
}

iana_enum! {
    /// Transform attribute types (RFC 7296 3.3.5). The attribute-format bit
    /// (AF) is not part of the number.
    pub enum TransformAttributeType: u16 {
        /// Key Length in bits (14), always in TV format.
        KeyLength = 14,
    }
}

iana_enum! {
    /// Security protocol identifiers (RFC 7296 3.3.1), in proposals, Notify
    /// and Delete payloads.
    pub enum ProtocolId: u8 {
        /// 0: no protocol (a Notify about the IKE SA or no SA, with no SPI).
        Unspecified = 0,
        /// IKE (1).
        Ike = 1,
        /// AH (2).
        Ah = 2,
        /// ESP (3).
        Esp = 3,
    }
}

iana_enum! {
    /// Notify message types (RFC 7296 3.10.1, and the registry's later
    /// additions). 1-16383 are errors, 16384 and above are status.
    pub enum NotifyType: u16 {
        /// UNSUPPORTED_CRITICAL_PAYLOAD (1): data is the one-octet payload type.
        UnsupportedCriticalPayload = 1,
        /// INVALID_IKE_SPI (4).
        InvalidIkeSpi = 4,
        /// INVALID_MAJOR_VERSION (5).
        InvalidMajorVersion = 5,
        /// INVALID_SYNTAX (7).
        InvalidSyntax = 7,
        /// INVALID_MESSAGE_ID (9): data is the four-octet message ID.
        InvalidMessageId = 9,
        /// INVALID_SPI (11): data is the SPI.
        InvalidSpi = 11,
        /// NO_PROPOSAL_CHOSEN (14).
        NoProposalChosen = 14,
        /// INVALID_KE_PAYLOAD (17): data is the two-octet accepted DH group.
        InvalidKePayload = 17,
        /// AUTHENTICATION_FAILED (24).
        AuthenticationFailed = 24,
        /// SINGLE_PAIR_REQUIRED (34).
        SinglePairRequired = 34,
        /// NO_ADDITIONAL_SAS (35).
        NoAdditionalSas = 35,
        /// INTERNAL_ADDRESS_FAILURE (36).
        InternalAddressFailure = 36,
        /// FAILED_CP_REQUIRED (37).
        FailedCpRequired = 37,
        /// TS_UNACCEPTABLE (38).
        TsUnacceptable = 38,
        /// INVALID_SELECTORS (39).
        InvalidSelectors = 39,
        /// UNACCEPTABLE_ADDRESSES (40, RFC 4555).
        UnacceptableAddresses = 40,
        /// UNEXPECTED_NAT_DETECTED (41, RFC 4555).
        UnexpectedNatDetected = 41,
        /// USE_ASSIGNED_HoA (42, RFC 5026).
        UseAssignedHoa = 42,
        /// TEMPORARY_FAILURE (43).
        TemporaryFailure = 43,
        /// CHILD_SA_NOT_FOUND (44).
        ChildSaNotFound = 44,
        /// INVALID_GROUP_ID (45, RFC 9838).
        InvalidGroupId = 45,
        /// AUTHORIZATION_FAILED (46, RFC 9838).
        AuthorizationFailed = 46,
        /// STATE_NOT_FOUND (47, RFC 9370).
        StateNotFound = 47,
        /// INITIAL_CONTACT (16384).
        InitialContact = 16384,
        /// SET_WINDOW_SIZE (16385).
        SetWindowSize = 16385,
        /// ADDITIONAL_TS_POSSIBLE (16386).
        AdditionalTsPossible = 16386,
        /// IPCOMP_SUPPORTED (16387).
        IpcompSupported = 16387,
        /// NAT_DETECTION_SOURCE_IP (16388).
        NatDetectionSourceIp = 16388,
        /// NAT_DETECTION_DESTINATION_IP (16389).
        NatDetectionDestinationIp = 16389,
        /// COOKIE (16390).
        Cookie = 16390,
        /// USE_TRANSPORT_MODE (16391).
        UseTransportMode = 16391,
        /// HTTP_CERT_LOOKUP_SUPPORTED (16392).
        HttpCertLookupSupported = 16392,
        /// REKEY_SA (16393).
        RekeySa = 16393,
        /// ESP_TFC_PADDING_NOT_SUPPORTED (16394).
        EspTfcPaddingNotSupported = 16394,
        /// NON_FIRST_FRAGMENTS_ALSO (16395).
        NonFirstFragmentsAlso = 16395,
        /// MOBIKE_SUPPORTED (16396, RFC 4555).
        MobikeSupported = 16396,
        /// ADDITIONAL_IP4_ADDRESS (16397, RFC 4555).
        AdditionalIp4Address = 16397,
        /// ADDITIONAL_IP6_ADDRESS (16398, RFC 4555).
        AdditionalIp6Address = 16398,
        /// NO_ADDITIONAL_ADDRESSES (16399, RFC 4555).
        NoAdditionalAddresses = 16399,
        /// UPDATE_SA_ADDRESSES (16400, RFC 4555).
        UpdateSaAddresses = 16400,
        /// COOKIE2 (16401, RFC 4555).
        Cookie2 = 16401,
        /// NO_NATS_ALLOWED (16402, RFC 4555).
        NoNatsAllowed = 16402,
        /// AUTH_LIFETIME (16403, RFC 4478).
        AuthLifetime = 16403,
        /// MULTIPLE_AUTH_SUPPORTED (16404, RFC 4739).
        MultipleAuthSupported = 16404,
        /// ANOTHER_AUTH_FOLLOWS (16405, RFC 4739).
        AnotherAuthFollows = 16405,
        /// REDIRECT_SUPPORTED (16406, RFC 5685).
        RedirectSupported = 16406,
        /// REDIRECT (16407, RFC 5685).
        Redirect = 16407,
        /// REDIRECTED_FROM (16408, RFC 5685).
        RedirectedFrom = 16408,
        /// TICKET_LT_OPAQUE (16409, RFC 5723).
        TicketLtOpaque = 16409,
        /// TICKET_REQUEST (16410, RFC 5723).
        TicketRequest = 16410,
        /// TICKET_ACK (16411, RFC 5723).
        TicketAck = 16411,
        /// TICKET_NACK (16412, RFC 5723).
        TicketNack = 16412,
        /// TICKET_OPAQUE (16413, RFC 5723).
        TicketOpaque = 16413,
        /// LINK_ID (16414, RFC 5739).
        LinkId = 16414,
        /// USE_WESP_MODE (16415, RFC 5840).
        UseWespMode = 16415,
        /// ROHC_SUPPORTED (16416, RFC 5857).
        RohcSupported = 16416,
        /// EAP_ONLY_AUTHENTICATION (16417, RFC 5998).
        EapOnlyAuthentication = 16417,
        /// CHILDLESS_IKEV2_SUPPORTED (16418, RFC 6023).
        ChildlessIkev2Supported = 16418,
        /// QUICK_CRASH_DETECTION (16419, RFC 6290).
        QuickCrashDetection = 16419,
        /// IKEV2_MESSAGE_ID_SYNC_SUPPORTED (16420, RFC 6311).
        Ikev2MessageIdSyncSupported = 16420,
        /// IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED (16421, RFC 6311).
        IpsecReplayCounterSyncSupported = 16421,
        /// IKEV2_MESSAGE_ID_SYNC (16422, RFC 6311).
        Ikev2MessageIdSync = 16422,
        /// IPSEC_REPLAY_COUNTER_SYNC (16423, RFC 6311).
        IpsecReplayCounterSync = 16423,
        /// SECURE_PASSWORD_METHODS (16424, RFC 6467).
        SecurePasswordMethods = 16424,
        /// PSK_PERSIST (16425, RFC 6631).
        PskPersist = 16425,
        /// PSK_CONFIRM (16426, RFC 6631).
        PskConfirm = 16426,
        /// ERX_SUPPORTED (16427, RFC 6867).
        ErxSupported = 16427,
        /// IFOM_CAPABILITY (16428).
        IfomCapability = 16428,
        /// SENDER_REQUEST_ID (16429).
        SenderRequestId = 16429,
        /// IKEV2_FRAGMENTATION_SUPPORTED (16430, RFC 7383).
        Ikev2FragmentationSupported = 16430,
        /// SIGNATURE_HASH_ALGORITHMS (16431, RFC 7427): data is a list of
        /// two-octet hash algorithm numbers.
        SignatureHashAlgorithms = 16431,
        /// CLONE_IKE_SA_SUPPORTED (16432, RFC 7791).
        CloneIkeSaSupported = 16432,
        /// CLONE_IKE_SA (16433, RFC 7791).
        CloneIkeSa = 16433,
        /// PUZZLE (16434, RFC 8019).
        Puzzle = 16434,
        /// USE_PPK (16435, RFC 8784).
        UsePpk = 16435,
        /// PPK_IDENTITY (16436, RFC 8784).
        PpkIdentity = 16436,
        /// NO_PPK_AUTH (16437, RFC 8784).
        NoPpkAuth = 16437,
        /// INTERMEDIATE_EXCHANGE_SUPPORTED (16438, RFC 9242).
        IntermediateExchangeSupported = 16438,
        /// IP4_ALLOWED (16439, RFC 8983).
        Ip4Allowed = 16439,
        /// IP6_ALLOWED (16440, RFC 8983).
        Ip6Allowed = 16440,
        /// ADDITIONAL_KEY_EXCHANGE (16441, RFC 9370).
        AdditionalKeyExchange = 16441,
        /// USE_AGGFRAG (16442, RFC 9347).
        UseAggfrag = 16442,
    }
}

impl NotifyType {
    /// True for error types (1-16383, RFC 7296 3.10.1): "An implementation
    /// receiving a Notify payload with one of these types that it does not
    /// recognize in a response MUST assume that the corresponding request has
    /// failed entirely."
    pub fn is_error(self) -> bool {
        let n = u16::from(self);
        (1..16384).contains(&n)
    }
}

iana_enum! {
    /// Identification types (RFC 7296 3.5).
    pub enum IdType: u8 {
        /// ID_IPV4_ADDR (1): a four-octet IPv4 address.
        Ipv4Addr = 1,
        /// ID_FQDN (2): a fully-qualified domain name, no terminator.
        Fqdn = 2,
        /// ID_RFC822_ADDR (3): an email address, no terminator.
        Rfc822Addr = 3,
        /// ID_IPV6_ADDR (5): a sixteen-octet IPv6 address.
        Ipv6Addr = 5,
        /// ID_DER_ASN1_DN (9).
        DerAsn1Dn = 9,
        /// ID_DER_ASN1_GN (10).
        DerAsn1Gn = 10,
        /// ID_KEY_ID (11): opaque octets.
        KeyId = 11,
        /// ID_FC_NAME (12, RFC 4595).
        FcName = 12,
        /// ID_NULL (13, RFC 7619).
        Null = 13,
    }
}

iana_enum! {
    /// Traffic selector types (RFC 7296 3.13.1).
    pub enum TsType: u8 {
        /// TS_IPV4_ADDR_RANGE (7).
        Ipv4AddrRange = 7,
        /// TS_IPV6_ADDR_RANGE (8).
        Ipv6AddrRange = 8,
        /// TS_FC_ADDR_RANGE (9, RFC 4595).
        FcAddrRange = 9,
    }
}

iana_enum! {
    /// Authentication methods (RFC 7296 3.8, RFC 4754, RFC 7427, RFC 7619).
    pub enum AuthMethod: u8 {
        /// RSA Digital Signature (1).
        RsaSig = 1,
        /// Shared Key Message Integrity Code (2): PSK.
        SharedKeyMic = 2,
        /// DSS Digital Signature (3).
        DssSig = 3,
        /// ECDSA with SHA-256 on the P-256 curve (9).
        EcdsaSha256P256 = 9,
        /// ECDSA with SHA-384 on the P-384 curve (10).
        EcdsaSha384P384 = 10,
        /// ECDSA with SHA-512 on the P-521 curve (11).
        EcdsaSha512P521 = 11,
        /// Generic Secure Password Authentication Method (12).
        GenericSecurePassword = 12,
        /// NULL Authentication (13).
        NullAuth = 13,
        /// Digital Signature (14, RFC 7427).
        DigitalSignature = 14,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_the_brief() {
        assert_eq!(u16::from(EncrId::AesCbc), 12);
        assert_eq!(u16::from(EncrId::AesGcm16), 20);
        assert_eq!(u16::from(IntegId::HmacSha1_96), 2);
        assert_eq!(u16::from(IntegId::HmacSha2_256_128), 12);
        assert_eq!(u16::from(IntegId::HmacSha2_384_192), 13);
        assert_eq!(u16::from(IntegId::HmacSha2_512_256), 14);
        assert_eq!(u16::from(PrfId::HmacSha1), 2);
        assert_eq!(u16::from(PrfId::HmacSha2_256), 5);
        assert_eq!(u16::from(PrfId::HmacSha2_384), 6);
        assert_eq!(u16::from(PrfId::HmacSha2_512), 7);
        assert_eq!(u16::from(DhGroup::Modp2048), 14);
        assert_eq!(u16::from(DhGroup::Curve25519), 31);
        assert_eq!(u16::from(NotifyType::NatDetectionSourceIp), 16388);
        assert_eq!(u16::from(NotifyType::NatDetectionDestinationIp), 16389);
        assert_eq!(u8::from(AuthMethod::SharedKeyMic), 2);
        assert_eq!(u8::from(PayloadType::Sk), 46);
        assert_eq!(u8::from(ExchangeType::IkeSaInit), 34);
    }

    #[test]
    fn every_number_round_trips() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(PayloadType::from(n)), n);
            assert_eq!(u8::from(ExchangeType::from(n)), n);
            assert_eq!(u8::from(TransformType::from(n)), n);
            assert_eq!(u8::from(ProtocolId::from(n)), n);
            assert_eq!(u8::from(IdType::from(n)), n);
            assert_eq!(u8::from(TsType::from(n)), n);
            assert_eq!(u8::from(AuthMethod::from(n)), n);
        }
        for n in 0..=u16::MAX {
            assert_eq!(u16::from(NotifyType::from(n)), n);
            assert_eq!(u16::from(EncrId::from(n)), n);
            assert_eq!(u16::from(PrfId::from(n)), n);
            assert_eq!(u16::from(IntegId::from(n)), n);
            assert_eq!(u16::from(DhGroup::from(n)), n);
            assert_eq!(u16::from(EsnId::from(n)), n);
            assert_eq!(u16::from(TransformAttributeType::from(n)), n);
        }
        assert_eq!(NotifyType::from(7), NotifyType::InvalidSyntax);
        assert_eq!(NotifyType::from(9999), NotifyType::Unknown(9999));
    }

    #[test]
    fn notify_error_range() {
        assert!(NotifyType::NoProposalChosen.is_error());
        assert!(NotifyType::Unknown(16383).is_error());
        assert!(!NotifyType::Cookie.is_error());
        assert!(!NotifyType::Unknown(0).is_error());
    }
}
