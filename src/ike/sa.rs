//! The IKE SA state machine, initiator and responder, sans-IO (RFC 7296).
//!
//! One [`IkeSa`] per tunnel. It reads no clock and touches no socket
//! (quinn-proto's pattern): the caller passes datagrams and `now` in, and
//! takes datagrams, events and the next deadline out, in this order after
//! every input:
//!
//! 1. [`IkeSa::handle_datagram`] for each IKE message received (the port-4500
//!    non-ESP marker already stripped), [`IkeSa::handle_timeout`] when the
//!    deadline of [`IkeSa::poll_timeout`] passes, or a command
//!    ([`IkeSa::rekey_child`], [`IkeSa::rekey_ike`], [`IkeSa::delete`]);
//! 2. [`IkeSa::poll_transmit`] until `None`, sending each [`Transmit`];
//! 3. [`IkeSa::poll_event`] until `None`;
//! 4. [`IkeSa::poll_timeout`] to re-arm the one timer.
//!
//! The exchanges, each in `exchange/` with strongSwan's task names in mind:
//! IKE_SA_INIT with NAT detection and cookies (RFC 7296 1.2, 2.6, 2.23),
//! IKE_AUTH with a pre-shared key and the first CHILD_SA (1.2, 2.15, 2.9),
//! CREATE_CHILD_SA to rekey CHILD_SAs and the IKE SA (1.3, 2.8, 2.18) with
//! the collisions of 2.8.1 and 2.8.2, INFORMATIONAL for liveness and
//! DELETE (1.4, 1.4.1, 2.4).
//!
//! Message IDs (2.2): each side numbers its own requests from 0, with a
//! window of one outstanding request ("an IKE endpoint MUST NOT exceed the
//! peer's stated window size for transmitted IKE requests"; the default is
//! 1). Requests are retransmitted with exponential backoff until answered
//! (2.1: "retransmission times MUST increase exponentially"), and a
//! retransmitted request is answered with the very same response (2.1:
//! "the responder MUST retransmit the response" without reprocessing).
//!
//! An IKE SA rekeyed by CREATE_CHILD_SA lives on in the same `IkeSa` with
//! new SPIs (check [`IkeSa::matches`] when routing datagrams): the old SA
//! stays able to answer until it is deleted, and the CHILD_SAs move to the
//! new one (2.18).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use super::child::ChildSaParams;
use super::config::IkeConfig;
use super::crypto::{DhKeyPair, IkeCipher, SecretBytes};
use super::keys::IkeSaKeys;
use super::message::{self, OpenError};
use super::natd::NatState;
use super::proposal::{IkeSuite, Proposal};
use crate::wire::{
    natt, ExchangeType, Flags, HeaderRepr, Identity, IkePacket, NotifyPayload, NotifyType, Payload,
    TrafficSelector,
};

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// An IKE message. On port 4500 the shell puts the four-octet non-ESP
    /// marker in front ([`Transmit::datagram`] does it).
    Ike {
        /// Our address and port to send from (500 or 4500).
        local: SocketAddr,
        /// Where to send it.
        remote: SocketAddr,
        /// The IKE message, from the IKE header on.
        message: Vec<u8>,
    },
    /// A NAT-keepalive: one octet 0xFF on port 4500 (RFC 3948 2.3).
    NatKeepalive {
        /// Our address (port 4500).
        local: SocketAddr,
        /// The peer.
        remote: SocketAddr,
    },
}

impl Transmit {
    /// The local address to send from.
    pub fn local(&self) -> SocketAddr {
        match self {
            Transmit::Ike { local, .. } | Transmit::NatKeepalive { local, .. } => *local,
        }
    }

    /// The destination.
    pub fn remote(&self) -> SocketAddr {
        match self {
            Transmit::Ike { remote, .. } | Transmit::NatKeepalive { remote, .. } => *remote,
        }
    }

    /// The UDP payload: the IKE message (behind the non-ESP marker when
    /// sent from port 4500), or the keepalive octet.
    pub fn datagram(&self) -> Vec<u8> {
        match self {
            Transmit::Ike { local, message, .. } if local.port() == natt::NATT_PORT => {
                natt::ike_datagram(message)
            }
            Transmit::Ike { message, .. } => message.clone(),
            Transmit::NatKeepalive { .. } => natt::KEEPALIVE.to_vec(),
        }
    }
}

/// A protocol error, with the Notify type that carries it on the wire
/// (quinn-proto's `TransportError { code, reason }`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{notify:?}: {reason}")]
pub struct ProtocolError {
    /// The Notify type (RFC 7296 3.10.1) sent or received.
    pub notify: NotifyType,
    /// What happened, for the log.
    pub reason: String,
}

impl ProtocolError {
    pub(crate) fn new(notify: NotifyType, reason: impl Into<String>) -> Self {
        ProtocolError {
            notify,
            reason: reason.into(),
        }
    }
}

/// An IKE_SA_INIT request [`IkeSa::accept`] refused: no SA was created; send
/// `reply` if there is one (a stateless error response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IKE_SA_INIT refused: {error}")]
pub struct Rejected {
    /// Why.
    pub error: ProtocolError,
    /// The error response to send, if any (RFC 7296 2.21.1).
    pub reply: Option<Transmit>,
}

/// Why an authentication failed (RFC 7296 2.15, 2.21.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The peer presented another identity than the one configured.
    IdMismatch {
        /// The identity we expected.
        expected: Identity,
        /// The identity received (`None`: an ID type we do not decode).
        received: Option<Identity>,
    },
    /// The AUTH payload did not verify: the pre-shared keys differ.
    BadPsk {
        /// The identity the peer claimed.
        peer: Option<Identity>,
    },
    /// The peer uses another authentication method than PSK.
    UnsupportedMethod(u8),
    /// The peer answered AUTHENTICATION_FAILED: it refused our identity or
    /// our AUTH (wrong PSK or ID on one side).
    RejectedByPeer,
    /// IDi/IDr or AUTH is missing.
    Missing,
}

/// Why a CHILD_SA went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildDownReason {
    /// Replaced by a rekeyed CHILD_SA (make-before-break: the new one was
    /// announced first).
    Rekeyed,
    /// A redundant SA of a rekey collision (RFC 7296 2.8.1).
    Redundant,
    /// The peer deleted it.
    DeletedByPeer,
    /// We deleted it.
    DeletedLocally,
    /// Its hard lifetime ran out.
    Expired,
    /// The IKE SA went away.
    IkeClosed,
}

/// Why the IKE SA ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a Delete for the IKE SA.
    DeletedByPeer,
    /// [`IkeSa::delete`] was called.
    DeletedLocally,
    /// No answer within the DPD timeout or the retransmission schedule.
    PeerUnresponsive,
    /// Authentication failed (see the [`Event::AuthFailed`] before it).
    AuthFailed,
    /// No common proposal (see the [`Event::NoProposalChosen`] before it).
    NoProposalChosen,
    /// The hard lifetime ran out before a rekey succeeded.
    Expired,
    /// A responder's half-open SA saw no IKE_AUTH in time.
    HalfOpenTimeout,
    /// Another protocol error.
    Protocol(ProtocolError),
}

/// What happened, for the gateway core.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// IKE_AUTH completed: the IKE SA is up.
    Established {
        /// The IKE SA's SPIs.
        spi_i: u64,
        /// The IKE SA's SPIs.
        spi_r: u64,
        /// Its algorithms.
        suite: IkeSuite,
        /// Our identity.
        local_id: Identity,
        /// The peer's (authenticated) identity.
        remote_id: Identity,
        /// NAT detection's findings.
        nat: NatState,
        /// Our address.
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// A new CHILD_SA to install (inbound and outbound).
    ChildUp(ChildSaParams),
    /// A CHILD_SA was rekeyed: install `new`; keep receiving on `old` until
    /// its [`Event::ChildDown`] (make-before-break). The initiator of the
    /// exchange sends on `new` at once (the peer installed it before it
    /// answered); the responder only once the peer shows it has it, by
    /// deleting `old` or sending on `new` (strongSwan does the same), since
    /// its first packets could overtake the answer.
    ChildRekeyed {
        /// `(spi_in, spi_out)` of the SA being replaced.
        old: (u32, u32),
        /// The replacement.
        new: ChildSaParams,
        /// We started the exchange (false: we answered the peer's).
        initiator: bool,
    },
    /// A CHILD_SA is gone: remove both ESP SAs.
    ChildDown {
        /// Its inbound SPI.
        spi_in: u32,
        /// Its outbound SPI.
        spi_out: u32,
        /// Why.
        reason: ChildDownReason,
    },
    /// The IKE SA was rekeyed: datagrams now carry these SPIs.
    IkeRekeyed {
        /// New initiator SPI.
        spi_i: u64,
        /// New responder SPI.
        spi_r: u64,
        /// The new SA's algorithms.
        suite: IkeSuite,
    },
    /// Authentication failed, on our side or the peer's.
    AuthFailed {
        /// What failed.
        reason: AuthFailure,
    },
    /// No proposal in common (IKE or ESP).
    NoProposalChosen {
        /// IKE or ESP.
        protocol: super::proposal::Protocol,
        /// What the initiator offered (swanctl syntax).
        offered: String,
        /// What the responder allows (ours, or "(peer's)" when the peer
        /// refused).
        configured: String,
    },
    /// A CHILD_SA could not be created or rekeyed; the IKE SA stays.
    ChildFailed(ProtocolError),
    /// The peer answered a liveness check.
    DpdAnswered,
    /// The peer's address or port changed (NAT rebinding); ESP in UDP must
    /// follow.
    PeerAddressChanged {
        /// The previous address.
        old: SocketAddr,
        /// The new one.
        new: SocketAddr,
    },
    /// The IKE SA is gone, with all its CHILD_SAs (each announced by a
    /// [`Event::ChildDown`] first).
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// The phase of an IKE SA, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeState {
    /// IKE_SA_INIT sent or received.
    Connecting,
    /// IKE_AUTH sent or awaited.
    Authenticating,
    /// Up.
    Established,
    /// Gone.
    Closed,
}

/// One CHILD_SA in [`IkeSaStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Algorithms.
    pub suite: super::proposal::EspSuite,
    /// When it was installed.
    pub established_at: Instant,
    /// False once replaced by a rekey or being deleted.
    pub active: bool,
}

/// A snapshot for `wgctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaStatus {
    /// Phase.
    pub state: IkeState,
    /// Current initiator SPI.
    pub spi_i: u64,
    /// Current responder SPI.
    pub spi_r: u64,
    /// True when we are the (current) IKE SA's original initiator.
    pub initiator: bool,
    /// Negotiated algorithms.
    pub suite: Option<IkeSuite>,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// NAT detection.
    pub nat: NatState,
    /// The peer's authenticated identity.
    pub remote_id: Option<Identity>,
    /// CHILD_SAs.
    pub children: Vec<ChildStatus>,
    /// When IKE_AUTH completed.
    pub established_at: Option<Instant>,
    /// The last IKE or CHILD rekey.
    pub last_rekey: Option<Instant>,
    /// The last answered liveness check.
    pub last_dpd_answer: Option<Instant>,
}

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

/// The keys of one IKE SA.
pub(super) struct CoreKeys {
    pub(super) suite: IkeSuite,
    pub(super) sk_d: SecretBytes,
    pub(super) sk_pi: SecretBytes,
    pub(super) sk_pr: SecretBytes,
    /// Seals our messages (SK_ei/SK_ai when we are the SA's initiator).
    pub(super) out: IkeCipher,
    /// Opens the peer's.
    pub(super) inn: IkeCipher,
}

impl CoreKeys {
    pub(super) fn new(
        suite: IkeSuite,
        keys: IkeSaKeys,
        we_initiator: bool,
    ) -> Result<CoreKeys, ProtocolError> {
        let mk = |e: &SecretBytes, a: &SecretBytes| {
            IkeCipher::new(suite.encr, suite.integ, e.expose(), a.expose())
                .map_err(|e| ProtocolError::new(NotifyType::NoProposalChosen, e.to_string()))
        };
        let ci = mk(&keys.sk_ei, &keys.sk_ai)?;
        let cr = mk(&keys.sk_er, &keys.sk_ar)?;
        let (out, inn) = if we_initiator { (ci, cr) } else { (cr, ci) };
        Ok(CoreKeys {
            suite,
            sk_d: keys.sk_d,
            sk_pi: keys.sk_pi,
            sk_pr: keys.sk_pr,
            out,
            inn,
        })
    }
}

/// What an IKE SA is to the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CoreKind {
    /// The SA in use.
    Current,
    /// Replaced by a rekey; waits for a Delete (ours or the peer's).
    Retiring,
    /// Created by the peer's rekey request while ours was outstanding
    /// (RFC 7296 2.8.2): kept until our own exchange completes. Holds the
    /// nonces of the peer's exchange (its Ni, our Nr).
    PeerCollision { ni: Vec<u8>, nr: Vec<u8> },
    /// The loser of a collision: deleted by its creator.
    Redundant,
}

/// A response sent, kept for retransmitted requests (RFC 7296 2.1).
pub(super) struct Cached {
    pub(super) msg_id: u32,
    pub(super) request: Vec<u8>,
    pub(super) response: Vec<u8>,
}

/// One IKE SA's message-ID and crypto state.
pub(super) struct SaCore {
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) we_initiator: bool,
    pub(super) keys: Option<CoreKeys>,
    /// Message ID of our next request.
    pub(super) next_msg_id: u32,
    /// Message ID the peer's next request must carry.
    pub(super) peer_next_id: u32,
    pub(super) cached: Option<Cached>,
    pub(super) pending: Option<Pending>,
    pub(super) kind: CoreKind,
    /// When a non-current SA is dropped even without a Delete.
    pub(super) expire_at: Option<Instant>,
}

impl SaCore {
    pub(super) fn new(spi_i: u64, spi_r: u64, we_initiator: bool, kind: CoreKind) -> SaCore {
        SaCore {
            spi_i,
            spi_r,
            we_initiator,
            keys: None,
            next_msg_id: 0,
            peer_next_id: 0,
            cached: None,
            pending: None,
            kind,
            expire_at: None,
        }
    }

    pub(super) fn header(
        &self,
        exchange_type: ExchangeType,
        response: bool,
        id: u32,
    ) -> HeaderRepr {
        HeaderRepr {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange_type,
            flags: Flags {
                initiator: self.we_initiator,
                response,
                version: false,
            },
            message_id: id,
        }
    }
}

/// Our outstanding request.
pub(super) struct Pending {
    pub(super) msg_id: u32,
    pub(super) message: Vec<u8>,
    pub(super) sends: u32,
    pub(super) first_sent: Instant,
    pub(super) next_at: Instant,
    pub(super) req: Req,
}

/// What our outstanding request is for.
pub(super) enum Req {
    Init,
    Auth(AuthReq),
    CreateChild(ChildReq),
    RekeyIke(IkeRekeyReq),
    DeleteChild(Vec<u32>),
    DeleteIke,
    Dpd,
}

pub(super) struct AuthReq {
    pub(super) spi_in: u32,
    pub(super) tsi: Vec<TrafficSelector>,
    pub(super) tsr: Vec<TrafficSelector>,
}

pub(super) struct ChildReq {
    /// The CHILD_SA being rekeyed (its inbound SPI), or `None` for a new one.
    pub(super) old_spi_in: Option<u32>,
    pub(super) spi_in: u32,
    pub(super) ni: Vec<u8>,
    pub(super) dh: Option<DhKeyPair>,
    pub(super) ke_retries: u8,
}

pub(super) struct IkeRekeyReq {
    pub(super) spi: u64,
    pub(super) ni: Vec<u8>,
    pub(super) dh: DhKeyPair,
    pub(super) ke_retries: u8,
}

/// Work waiting for the request window (one request at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Task {
    RekeyChild(u32),
    CreateChild,
    RekeyIke,
    DeleteChild(Vec<u32>, ChildDownReason),
    DeleteIke,
    Dpd,
}

/// IKE_SA_INIT data that IKE_AUTH still needs.
pub(super) struct InitData {
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// RealMessage1: our request as last sent (initiator) or the peer's.
    pub(super) request: Vec<u8>,
    /// RealMessage2.
    pub(super) response: Vec<u8>,
    pub(super) dh: Option<DhKeyPair>,
    pub(super) cookie: Option<Vec<u8>>,
    pub(super) retries: u8,
    /// An error notify answered our request. It is not authenticated, so
    /// the attempt goes on until the retransmissions run out, and fails
    /// with this only then (RFC 7296 2.21.1).
    pub(super) refused: Option<InitRefusal>,
}

/// An unauthenticated refusal of our IKE_SA_INIT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InitRefusal {
    /// N(NO_PROPOSAL_CHOSEN).
    NoProposalChosen,
    /// Another error notify (or an INVALID_KE_PAYLOAD we cannot follow).
    Protocol(ProtocolError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    InitSent,
    AuthSent,
    AwaitAuth,
    Established,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChildState {
    Installed,
    Rekeying,
    /// Replaced; the survivor's initiator deletes it.
    Rekeyed,
    /// A Delete for it is outstanding (or queued).
    Deleting(ChildDownReason),
}

/// The nonces of a peer's rekey of a CHILD_SA we were rekeying too.
pub(super) struct ChildCollision {
    pub(super) new_spi_in: u32,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
}

pub(super) struct Child {
    pub(super) params: ChildSaParams,
    pub(super) state: ChildState,
    pub(super) established: Instant,
    pub(super) rekey_at: Option<Instant>,
    pub(super) expire_at: Instant,
    pub(super) collision: Option<ChildCollision>,
}

/// One IKE SA with its CHILD_SAs: the state machine of a tunnel.
pub struct IkeSa {
    pub(super) cfg: Arc<IkeConfig>,
    pub(super) rng: Box<dyn CryptoRngCore + Send>,
    pub(super) phase: Phase,
    pub(super) init: Option<InitData>,
    /// The IKE SAs of this tunnel: one `Current`, and during a rekey the
    /// old one and collision leftovers.
    pub(super) cores: Vec<SaCore>,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) nat: NatState,
    pub(super) remote_id: Option<Identity>,
    pub(super) children: Vec<Child>,
    pub(super) tasks: VecDeque<Task>,
    pub(super) tasks_not_before: Option<Instant>,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    pub(super) last_recv: Instant,
    pub(super) next_keepalive: Option<Instant>,
    pub(super) ike_rekey_at: Option<Instant>,
    pub(super) ike_expire_at: Option<Instant>,
    pub(super) half_open_deadline: Option<Instant>,
    pub(super) established_at: Option<Instant>,
    pub(super) last_rekey: Option<Instant>,
    pub(super) last_dpd_answer: Option<Instant>,
    /// Set by a failure that must end in this close reason once a Delete
    /// for the IKE SA completes.
    pub(super) close_reason: Option<CloseReason>,
}

impl std::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSa")
            .field("phase", &self.phase)
            .field("spi_i", &format_args!("{:016x}", self.spi_i()))
            .field("spi_r", &format_args!("{:016x}", self.spi_r()))
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

/// The nonce length we send: 32 octets, at least half the key size of every
/// PRF we offer (RFC 7296 2.10).
pub(super) const NONCE_LEN: usize = 32;
/// How many INVALID_KE_PAYLOAD or COOKIE rounds an exchange may take.
pub(super) const MAX_RETRIES: u8 = 3;

impl IkeSa {
    // -----------------------------------------------------------------------
    // Public API
    // -----------------------------------------------------------------------

    /// Starts an IKE SA as initiator: the IKE_SA_INIT request is ready in
    /// [`IkeSa::poll_transmit`]. `local` is the address (port 500) we send
    /// from, `remote` the peer's (port 500).
    pub fn initiate(
        cfg: Arc<IkeConfig>,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: impl CryptoRngCore + Send + 'static,
    ) -> IkeSa {
        let mut sa = IkeSa::blank(cfg, local, remote, now, Box::new(rng));
        sa.start_init(now);
        sa
    }

    /// Creates a responder IKE SA from an IKE_SA_INIT request received on
    /// `local` from `remote` (after the shell checked cookies with a
    /// [`super::CookieJar`] if it wants them). On success the response is
    /// ready in [`IkeSa::poll_transmit`]; a refusal may carry a stateless
    /// error response (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD) to send.
    pub fn accept(
        cfg: Arc<IkeConfig>,
        local: SocketAddr,
        remote: SocketAddr,
        first_datagram: &[u8],
        now: Instant,
        rng: impl CryptoRngCore + Send + 'static,
    ) -> Result<IkeSa, Rejected> {
        let mut sa = IkeSa::blank(cfg, local, remote, now, Box::new(rng));
        sa.respond_init(first_datagram, now)?;
        Ok(sa)
    }

    fn blank(
        cfg: Arc<IkeConfig>,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: Box<dyn CryptoRngCore + Send>,
    ) -> IkeSa {
        IkeSa {
            cfg,
            rng,
            phase: Phase::InitSent,
            init: None,
            cores: Vec::new(),
            local,
            remote,
            nat: NatState::default(),
            remote_id: None,
            children: Vec::new(),
            tasks: VecDeque::new(),
            tasks_not_before: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_recv: now,
            next_keepalive: None,
            ike_rekey_at: None,
            ike_expire_at: None,
            half_open_deadline: None,
            established_at: None,
            last_rekey: None,
            last_dpd_answer: None,
            close_reason: None,
        }
    }

    /// Processes one IKE message received on `local` from `remote`. Anything
    /// malformed, unauthenticated, replayed or unexpected is dropped without
    /// a state change (RFC 7296 2.21).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        ike: &[u8],
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        let Ok(packet) = IkePacket::new_checked(ike) else {
            return;
        };
        let Ok(header) = HeaderRepr::parse(&packet) else {
            return;
        };
        if packet.length() as usize != ike.len() {
            return;
        }
        if header.exchange_type == ExchangeType::IkeSaInit {
            self.handle_init_message(now, local, remote, header, ike);
        } else if let Some(idx) = self.core_index(header.spi_i, header.spi_r) {
            self.handle_protected(now, local, remote, idx, header, ike);
        }
        self.run_tasks(now);
    }

    /// Runs the timers that are due: retransmissions, DPD, keepalives,
    /// lifetimes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.timers(now);
        self.run_tasks(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`IkeSa::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let mut t: Vec<Option<Instant>> = vec![
            self.half_open_deadline,
            self.ike_rekey_at,
            self.ike_expire_at,
            self.next_keepalive,
        ];
        for c in &self.cores {
            t.push(c.pending.as_ref().map(|p| self.pending_deadline(p)));
            t.push(c.expire_at);
        }
        for c in &self.children {
            t.push(c.rekey_at);
            t.push(Some(c.expire_at));
        }
        if !self.tasks.is_empty() {
            t.push(self.tasks_not_before);
        }
        t.push(self.dpd_due());
        t.into_iter().flatten().min()
    }

    /// Rekeys the active CHILD_SA now (CREATE_CHILD_SA with REKEY_SA, RFC
    /// 7296 2.8), e.g. when the ESP layer reaches the soft byte lifetime.
    pub fn rekey_child(&mut self, now: Instant) {
        if let Some(spi) = self.active_child().map(|c| c.spi_in) {
            self.queue(Task::RekeyChild(spi));
        }
        self.run_tasks(now);
    }

    /// Rekeys the IKE SA now (RFC 7296 2.18).
    pub fn rekey_ike(&mut self, now: Instant) {
        self.queue(Task::RekeyIke);
        self.run_tasks(now);
    }

    /// Deletes the IKE SA and its CHILD_SAs (RFC 7296 1.4.1); the
    /// [`Event::Closed`] comes with the peer's answer or when it gives up.
    pub fn delete(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Established | Phase::AwaitAuth | Phase::AuthSent
                if self.current().keys.is_some() =>
            {
                self.tasks.retain(|t| *t != Task::DeleteIke);
                self.tasks.push_front(Task::DeleteIke);
                self.tasks_not_before = None;
                if self.phase != Phase::Established {
                    // Nothing to wait for: tell the peer once and go.
                    self.send_oneshot_delete();
                    self.close(CloseReason::DeletedLocally);
                }
                self.run_tasks(now);
            }
            _ => self.close(CloseReason::DeletedLocally),
        }
    }

    /// Deletes the IKE SA at once, for an operator's `tunnel down`, a
    /// reload or a shutdown: a one-shot Delete (RFC 7296 1.4.1) goes out
    /// even while a request of ours is outstanding, without waiting for
    /// the answer, and [`Event::Closed`] follows immediately. So that the
    /// Delete fits the peer's window of one (2.3), the outstanding request
    /// is sent once more just before it: a peer that never saw it takes it
    /// first, one that did answers it from its cache.
    pub fn delete_now(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        let idx = self.current_index();
        let has_keys = self.cores.get(idx).is_some_and(|c| c.keys.is_some());
        if has_keys {
            let pending = self.cores[idx].pending.as_ref();
            let delete_outstanding = pending.is_some_and(|p| matches!(p.req, Req::DeleteIke));
            if let Some(p) = pending {
                let (l, r, m) = (self.local, self.remote, p.message.clone());
                self.push_ike(l, r, m);
            }
            if !delete_outstanding {
                self.send_oneshot_delete();
            }
        }
        self.close(CloseReason::DeletedLocally);
    }

    /// Counts inbound ESP traffic as proof of the peer's liveness, so DPD
    /// only probes an idle tunnel.
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        if now > self.last_recv {
            self.last_recv = now;
        }
    }

    /// The initiator SPI of the current IKE SA.
    pub fn spi_i(&self) -> u64 {
        self.cores
            .iter()
            .find(|c| c.kind == CoreKind::Current)
            .map_or(0, |c| c.spi_i)
    }

    /// The responder SPI of the current IKE SA (0 before IKE_SA_INIT's
    /// response).
    pub fn spi_r(&self) -> u64 {
        self.cores
            .iter()
            .find(|c| c.kind == CoreKind::Current)
            .map_or(0, |c| c.spi_r)
    }

    /// True when a datagram with these SPIs belongs to this tunnel (the
    /// current IKE SA, one being replaced, or a duplicate IKE_SA_INIT
    /// request with a zero responder SPI).
    pub fn matches(&self, spi_i: u64, spi_r: u64) -> bool {
        self.cores
            .iter()
            .any(|c| c.spi_i == spi_i && (c.spi_r == spi_r || spi_r == 0 || c.spi_r == 0))
    }

    /// True once the SA is gone; the shell may drop it.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The CHILD_SA outbound traffic should use: the newest installed one.
    pub fn active_child(&self) -> Option<&ChildSaParams> {
        self.children
            .iter()
            .rev()
            .find(|c| matches!(c.state, ChildState::Installed | ChildState::Rekeying))
            .map(|c| &c.params)
    }

    /// The phase, without building a whole [`IkeSa::status`].
    pub fn state(&self) -> IkeState {
        match self.phase {
            Phase::InitSent => IkeState::Connecting,
            Phase::AuthSent | Phase::AwaitAuth => IkeState::Authenticating,
            Phase::Established => IkeState::Established,
            Phase::Closed => IkeState::Closed,
        }
    }

    /// A snapshot for status output.
    pub fn status(&self) -> IkeSaStatus {
        let cur = self.cores.iter().find(|c| c.kind == CoreKind::Current);
        IkeSaStatus {
            state: self.state(),
            spi_i: cur.map_or(0, |c| c.spi_i),
            spi_r: cur.map_or(0, |c| c.spi_r),
            initiator: cur.is_some_and(|c| c.we_initiator),
            suite: cur.and_then(|c| c.keys.as_ref()).map(|k| k.suite),
            local: self.local,
            remote: self.remote,
            nat: self.nat,
            remote_id: self.remote_id.clone(),
            children: self
                .children
                .iter()
                .map(|c| ChildStatus {
                    spi_in: c.params.spi_in,
                    spi_out: c.params.spi_out,
                    suite: c.params.suite,
                    established_at: c.established,
                    active: matches!(c.state, ChildState::Installed | ChildState::Rekeying),
                })
                .collect(),
            established_at: self.established_at,
            last_rekey: self.last_rekey,
            last_dpd_answer: self.last_dpd_answer,
        }
    }

    // -----------------------------------------------------------------------
    // Plumbing shared by the exchanges
    // -----------------------------------------------------------------------

    pub(super) fn current_index(&self) -> usize {
        self.cores
            .iter()
            .position(|c| c.kind == CoreKind::Current)
            .unwrap_or(0)
    }

    pub(super) fn current(&self) -> &SaCore {
        &self.cores[self.current_index()]
    }

    fn core_index(&self, spi_i: u64, spi_r: u64) -> Option<usize> {
        self.cores
            .iter()
            .position(|c| c.spi_i == spi_i && c.spi_r == spi_r && c.keys.is_some())
    }

    /// A fresh random value for an SPI, never zero.
    pub(super) fn random_spi64(&mut self) -> u64 {
        loop {
            let v = self.rng.next_u64();
            if v != 0 && !self.cores.iter().any(|c| c.spi_i == v || c.spi_r == v) {
                return v;
            }
        }
    }

    /// A fresh inbound ESP SPI: never zero, never 1-255 (reserved by IANA,
    /// RFC 4303 2.1), unique among our CHILD_SAs.
    pub(super) fn random_spi32(&mut self) -> u32 {
        loop {
            let v = self.rng.next_u32();
            if v > 255 && !self.children.iter().any(|c| c.params.spi_in == v) {
                return v;
            }
        }
    }

    pub(super) fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut n);
        n
    }

    pub(super) fn dh(&mut self, group: super::crypto::DhGroup) -> DhKeyPair {
        DhKeyPair::generate(group, &mut message::RngRef(&mut *self.rng))
    }

    pub(super) fn push_ike(&mut self, local: SocketAddr, remote: SocketAddr, message: Vec<u8>) {
        self.transmits.push_back(Transmit::Ike {
            local,
            remote,
            message,
        });
    }

    /// Seals and sends a request on core `idx`, tracking it for
    /// retransmission.
    pub(super) fn send_request(
        &mut self,
        idx: usize,
        exchange: ExchangeType,
        payloads: &[Payload],
        req: Req,
        now: Instant,
    ) {
        let Some(core) = self.cores.get_mut(idx) else {
            return;
        };
        let msg_id = core.next_msg_id;
        let header = core.header(exchange, false, msg_id);
        let Some(keys) = core.keys.as_mut() else {
            return;
        };
        let bytes = match message::seal(&mut keys.out, &mut *self.rng, header, payloads) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an IKE request");
                return;
            }
        };
        core.next_msg_id = msg_id.wrapping_add(1);
        core.pending = Some(Pending {
            msg_id,
            message: bytes.clone(),
            sends: 1,
            first_sent: now,
            next_at: now + self.cfg.retransmit.timeout(0),
            req,
        });
        let (l, r) = (self.local, self.remote);
        self.push_ike(l, r, bytes);
    }

    /// Seals and sends a response to the peer's request `msg_id` on core
    /// `idx`, caching it for retransmitted requests.
    pub(super) fn send_response(
        &mut self,
        idx: usize,
        exchange: ExchangeType,
        msg_id: u32,
        request: &[u8],
        payloads: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) {
        let Some(core) = self.cores.get_mut(idx) else {
            return;
        };
        let header = core.header(exchange, true, msg_id);
        let Some(keys) = core.keys.as_mut() else {
            return;
        };
        let bytes = match message::seal(&mut keys.out, &mut *self.rng, header, payloads) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an IKE response");
                return;
            }
        };
        core.cached = Some(Cached {
            msg_id,
            request: request.to_vec(),
            response: bytes.clone(),
        });
        self.push_ike(to.0, to.1, bytes);
    }

    pub(super) fn queue(&mut self, task: Task) {
        if !self.tasks.contains(&task) {
            self.tasks.push_back(task);
        }
    }

    pub(super) fn emit(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Ends the IKE SA: every CHILD_SA goes down, then `Closed`.
    pub(super) fn close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        for c in std::mem::take(&mut self.children) {
            self.events.push_back(Event::ChildDown {
                spi_in: c.params.spi_in,
                spi_out: c.params.spi_out,
                reason: ChildDownReason::IkeClosed,
            });
        }
        let reason = self.close_reason.take().unwrap_or(reason);
        tracing::info!(
            spi_i = format_args!("{:016x}", self.spi_i()),
            remote = %self.remote,
            ?reason,
            "IKE SA closed"
        );
        self.events.push_back(Event::Closed { reason });
        self.phase = Phase::Closed;
        self.tasks.clear();
        for c in &mut self.cores {
            c.pending = None;
        }
        self.next_keepalive = None;
    }

    /// A Delete for the IKE SA, sent once without waiting for the answer
    /// (before closing on a local failure).
    pub(super) fn send_oneshot_delete(&mut self) {
        let idx = self.current_index();
        let payloads = [Payload::Delete(crate::wire::DeletePayload::ike())];
        let Some(core) = self.cores.get_mut(idx) else {
            return;
        };
        let msg_id = core.next_msg_id;
        let header = core.header(ExchangeType::Informational, false, msg_id);
        let Some(keys) = core.keys.as_mut() else {
            return;
        };
        if let Ok(bytes) = message::seal(&mut keys.out, &mut *self.rng, header, &payloads) {
            core.next_msg_id = msg_id.wrapping_add(1);
            let (l, r) = (self.local, self.remote);
            self.push_ike(l, r, bytes);
        }
    }

    /// An INFORMATIONAL request with one notify, sent once (RFC 7296
    /// 2.21.2: an initiator that refuses the responder's authentication
    /// "MAY" tell it so in a separate INFORMATIONAL exchange).
    pub(super) fn send_oneshot_notify(&mut self, notify: NotifyType) {
        let idx = self.current_index();
        let payloads = [Payload::Notify(NotifyPayload::new(notify, Vec::new()))];
        let Some(core) = self.cores.get_mut(idx) else {
            return;
        };
        let msg_id = core.next_msg_id;
        let header = core.header(ExchangeType::Informational, false, msg_id);
        let Some(keys) = core.keys.as_mut() else {
            return;
        };
        if let Ok(bytes) = message::seal(&mut keys.out, &mut *self.rng, header, &payloads) {
            core.next_msg_id = msg_id.wrapping_add(1);
            let (l, r) = (self.local, self.remote);
            self.push_ike(l, r, bytes);
        }
    }

    /// The identity we require of the peer: the configured one, or its
    /// address.
    pub(super) fn expected_remote_id(&self) -> Identity {
        match &self.cfg.remote_id {
            Some(id) => id.clone(),
            None => match self.remote.ip() {
                IpAddr::V4(a) => Identity::Ipv4(a),
                IpAddr::V6(a) => Identity::Ipv6(a),
            },
        }
    }

    /// Moves to the addresses of an authenticated, in-order message when
    /// the peer is behind a NAT (RFC 7296 2.23: "if a NAT is detected ... the
    /// responder SHOULD update its information to use the address and port
    /// from which the most recent authenticated message came") or while the
    /// SA is being set up (the float to port 4500).
    ///
    /// Once established only a side that is not itself behind the NAT
    /// follows: "A host behind a NAT SHOULD NOT do this type of dynamic
    /// address update ... because it opens a possible DoS attack (such as
    /// allowing an attacker to break the connection with a single packet)"
    /// (2.23).
    pub(super) fn follow_addresses(&mut self, local: SocketAddr, remote: SocketAddr) {
        let setup = self.phase != Phase::Established;
        if !(setup || (self.nat.encap && !self.nat.local_behind_nat)) {
            return;
        }
        if local != self.local {
            self.local = local;
        }
        if remote != self.remote {
            let old = self.remote;
            self.remote = remote;
            if !setup {
                tracing::info!(%old, new = %remote, "peer address changed (NAT rebinding): following it");
                self.events
                    .push_back(Event::PeerAddressChanged { old, new: remote });
                for c in &mut self.children {
                    c.params.remote = remote;
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // Receiving protected messages
    // -----------------------------------------------------------------------

    fn handle_protected(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
    ) {
        let core = &self.cores[idx];
        // "The I bit is used by the recipient to determine which 8 octets of
        // the header contain the recipient's SPI" (RFC 7296 3.1): the peer's
        // messages carry the opposite of ours.
        if header.flags.initiator == core.we_initiator {
            return;
        }
        let Some(keys) = core.keys.as_ref() else {
            return;
        };
        if header.flags.response {
            let Some(p) = core.pending.as_ref() else {
                return;
            };
            if p.msg_id != header.message_id {
                return;
            }
            let payloads = match message::open(&keys.inn, bytes) {
                Ok(p) => p,
                Err(e) => {
                    log_drop(&e, remote);
                    return;
                }
            };
            self.last_recv = now;
            self.follow_addresses(local, remote);
            let Some(pending) = self.cores[idx].pending.take() else {
                return;
            };
            self.handle_response(now, idx, header, pending, payloads);
        } else if header.message_id == core.peer_next_id {
            let payloads = match message::open(&keys.inn, bytes) {
                Ok(p) => p,
                Err(OpenError::Plaintext(e)) => {
                    self.last_recv = now;
                    self.cores[idx].peer_next_id = header.message_id.wrapping_add(1);
                    self.answer_unparsable_request((local, remote), idx, header, bytes, &e);
                    return;
                }
                Err(e) => {
                    log_drop(&e, remote);
                    return;
                }
            };
            self.last_recv = now;
            self.cores[idx].peer_next_id = header.message_id.wrapping_add(1);
            self.follow_addresses(local, remote);
            self.handle_request(now, (local, remote), idx, header, bytes, payloads);
        } else if let Some(cached) = core
            .cached
            .as_ref()
            .filter(|c| c.msg_id == header.message_id)
        {
            // RFC 7296 2.1: a retransmitted request gets the same response,
            // without processing it again. Only an authentic copy of the
            // request we answered qualifies.
            if cached.request == bytes {
                let response = cached.response.clone();
                self.last_recv = now;
                self.push_ike(local, remote, response);
            }
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        idx: usize,
        header: HeaderRepr,
        pending: Pending,
        payloads: Vec<Payload>,
    ) {
        match (header.exchange_type, pending.req) {
            (ExchangeType::IkeAuth, Req::Auth(req)) => {
                self.process_auth_response(now, req, &payloads)
            }
            (ExchangeType::CreateChildSa, Req::CreateChild(req)) => {
                self.process_child_response(now, idx, req, &payloads)
            }
            (ExchangeType::CreateChildSa, Req::RekeyIke(req)) => {
                self.process_ike_rekey_response(now, idx, req, &payloads)
            }
            (ExchangeType::Informational, Req::DeleteChild(spis)) => {
                self.process_delete_child_response(&spis)
            }
            (ExchangeType::Informational, Req::DeleteIke) => self.process_delete_ike_response(idx),
            (ExchangeType::Informational, Req::Dpd) => {
                self.last_dpd_answer = Some(now);
                self.emit(Event::DpdAnswered);
            }
            (_, req) => {
                // The exchange type of the response differs from the
                // request's: not an answer to it. Keep waiting.
                self.cores[idx].pending = Some(Pending { req, ..pending });
            }
        }
    }

    /// An authenticated request whose payloads do not parse: "if a message
    /// contains a payload with the critical bit set that is not
    /// recognized, the whole message MUST be rejected" with
    /// UNSUPPORTED_CRITICAL_PAYLOAD naming its type (RFC 7296 2.5), any
    /// other syntax error with INVALID_SYNTAX (2.21.3, 3.10.1). The message
    /// ID is consumed and the response cached like any other, so that the
    /// peer neither retransmits into a dead SA nor gets a second answer.
    /// An IKE_AUTH that fails so ends the half-open SA (2.21.2).
    fn answer_unparsable_request(
        &mut self,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        e: &crate::wire::WireError,
    ) {
        let notify = e.notify_type().unwrap_or(NotifyType::InvalidSyntax);
        tracing::warn!(remote = %to.1, exchange = ?header.exchange_type, msg_id = header.message_id, error = %e, ?notify, "authenticated IKE request does not parse: answering with an error");
        let n = [Payload::Notify(NotifyPayload::new(notify, e.notify_data()))];
        self.send_response(idx, header.exchange_type, header.message_id, bytes, &n, to);
        if self.phase == Phase::AwaitAuth {
            self.close(CloseReason::Protocol(ProtocolError::new(
                notify,
                format!("IKE_AUTH request does not parse: {e}"),
            )));
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: Vec<Payload>,
    ) {
        match header.exchange_type {
            ExchangeType::IkeAuth if self.phase == Phase::AwaitAuth && header.message_id == 1 => {
                self.process_auth_request(now, to, idx, header, bytes, &payloads)
            }
            ExchangeType::CreateChildSa if self.phase == Phase::Established => {
                self.process_create_child_request(now, to, idx, header, bytes, &payloads)
            }
            ExchangeType::Informational => {
                self.process_informational_request(now, to, idx, header, bytes, &payloads)
            }
            other => {
                // Not an exchange we take in this state: RFC 7296 2.21.2
                // wants an error response to an authenticated request.
                tracing::debug!(exchange = ?other, phase = ?self.phase, "unexpected IKE request");
                let n = [Payload::Notify(NotifyPayload::new(
                    NotifyType::InvalidSyntax,
                    Vec::new(),
                ))];
                self.send_response(idx, other, header.message_id, bytes, &n, to);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Timers and tasks
    // -----------------------------------------------------------------------

    /// When an outstanding request needs attention: its next
    /// retransmission, or the moment the peer is declared dead.
    fn pending_deadline(&self, p: &Pending) -> Instant {
        if self.phase == Phase::Established && !self.cfg.dpd_timeout.is_zero() {
            p.next_at.min(self.dead_at(p))
        } else {
            p.next_at
        }
    }

    /// The peer is dead `dpd_timeout` after the last message heard from it
    /// (AWS's meaning: DPD interval 10 s, timeout 30 s = 30 s of silence),
    /// counted for a request sent long after that from `dpd_interval`
    /// before the request, as if a liveness check had started then.
    fn dead_at(&self, p: &Pending) -> Instant {
        let since = p
            .first_sent
            .checked_sub(self.cfg.dpd_interval)
            .unwrap_or(p.first_sent);
        self.last_recv.max(since) + self.cfg.dpd_timeout
    }

    fn dpd_due(&self) -> Option<Instant> {
        if self.phase != Phase::Established || self.cfg.dpd_interval.is_zero() {
            return None;
        }
        let cur = self.cores.iter().find(|c| c.kind == CoreKind::Current)?;
        if cur.pending.is_some() || self.tasks.contains(&Task::Dpd) {
            return None;
        }
        Some(self.last_recv + self.cfg.dpd_interval)
    }

    fn timers(&mut self, now: Instant) {
        // Retransmissions (RFC 7296 2.1), and giving up.
        let mut failed = Vec::new();
        for (i, core) in self.cores.iter_mut().enumerate() {
            let Some(p) = core.pending.as_mut() else {
                continue;
            };
            let dpd_expired = self.phase == Phase::Established
                && !self.cfg.dpd_timeout.is_zero()
                && now >= {
                    let since = p
                        .first_sent
                        .checked_sub(self.cfg.dpd_interval)
                        .unwrap_or(p.first_sent);
                    self.last_recv.max(since) + self.cfg.dpd_timeout
                };
            if now < p.next_at && !dpd_expired {
                continue;
            }
            let retransmissions = p.sends - 1;
            if retransmissions >= self.cfg.retransmit.tries || dpd_expired {
                failed.push(i);
                continue;
            }
            p.sends += 1;
            p.next_at = now + self.cfg.retransmit.timeout(p.sends - 1);
            tracing::debug!(
                msg_id = p.msg_id,
                sends = p.sends,
                "retransmitting IKE request"
            );
            let (l, r) = (self.local, self.remote);
            self.transmits.push_back(Transmit::Ike {
                local: l,
                remote: r,
                message: p.message.clone(),
            });
        }
        for i in failed.into_iter().rev() {
            let core = &mut self.cores[i];
            let pending = core.pending.take();
            if core.kind == CoreKind::Current {
                if let Some(refusal) = self.init.as_mut().and_then(|i| i.refused.take()) {
                    self.init_refused(refusal);
                    return;
                }
                tracing::warn!(remote = %self.remote, "peer does not answer: IKE SA is dead");
                if matches!(pending.map(|p| p.req), Some(Req::DeleteIke)) {
                    self.close(CloseReason::DeletedLocally);
                } else {
                    self.close(CloseReason::PeerUnresponsive);
                }
                return;
            }
            self.cores.remove(i);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if self.half_open_deadline.is_some_and(|d| now >= d) {
            self.close(CloseReason::HalfOpenTimeout);
            return;
        }
        // Non-current IKE SAs that nobody deleted.
        self.cores
            .retain(|c| c.kind == CoreKind::Current || c.expire_at.is_none_or(|t| now < t));
        // IKE SA lifetime (soft: rekey; hard: gone).
        if self.ike_expire_at.is_some_and(|t| now >= t) {
            tracing::warn!("IKE SA hard lifetime reached without a rekey");
            self.send_oneshot_delete();
            self.close(CloseReason::Expired);
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| now >= t) {
            self.ike_rekey_at = None;
            self.queue(Task::RekeyIke);
        }
        // CHILD_SA lifetimes.
        let mut expired = Vec::new();
        let mut rekey = Vec::new();
        for c in &mut self.children {
            if now >= c.expire_at && !matches!(c.state, ChildState::Deleting(_)) {
                expired.push(c.params.spi_in);
                c.expire_at = now + self.cfg.retransmit.total();
            } else if c.rekey_at.is_some_and(|t| now >= t) {
                c.rekey_at = None;
                if c.state == ChildState::Installed {
                    rekey.push(c.params.spi_in);
                }
            }
        }
        for spi in expired {
            self.queue(Task::DeleteChild(vec![spi], ChildDownReason::Expired));
        }
        for spi in rekey {
            self.queue(Task::RekeyChild(spi));
        }
        // DPD (RFC 7296 1.4: "an empty INFORMATIONAL ... is the expected
        // way an endpoint can ask the other endpoint to verify that it is
        // alive").
        if self.dpd_due().is_some_and(|t| now >= t) && self.tasks.is_empty() {
            self.queue(Task::Dpd);
        }
        // NAT-keepalives (RFC 3948 2.3).
        if let Some(t) = self.next_keepalive {
            if now >= t {
                self.transmits.push_back(Transmit::NatKeepalive {
                    local: self.local,
                    remote: self.remote,
                });
                self.next_keepalive = Some(now + self.cfg.keepalive_interval);
            }
        }
    }

    pub(super) fn run_tasks(&mut self, now: Instant) {
        if self.phase != Phase::Established {
            return;
        }
        if self.tasks_not_before.is_some_and(|t| now < t) {
            return;
        }
        self.tasks_not_before = None;
        while self.phase == Phase::Established && self.current().pending.is_none() {
            let Some(task) = self.tasks.pop_front() else {
                return;
            };
            match task {
                Task::RekeyChild(spi) => self.start_child_rekey(now, Some(spi)),
                Task::CreateChild => self.start_child_rekey(now, None),
                Task::RekeyIke => self.start_ike_rekey(now),
                Task::DeleteChild(spis, reason) => self.start_delete_child(now, spis, reason),
                Task::DeleteIke => {
                    let idx = self.current_index();
                    let d = [Payload::Delete(crate::wire::DeletePayload::ike())];
                    self.send_request(idx, ExchangeType::Informational, &d, Req::DeleteIke, now);
                }
                Task::Dpd => {
                    let idx = self.current_index();
                    self.send_request(idx, ExchangeType::Informational, &[], Req::Dpd, now);
                }
            }
        }
    }

    /// Retries tasks later after TEMPORARY_FAILURE (RFC 7296 2.25: "it MUST
    /// NOT immediately retry the operation").
    pub(super) fn retry_later(&mut self, now: Instant, task: Task) {
        let base = self.cfg.retransmit.initial.max(Duration::from_secs(1));
        let jitter = Duration::from_millis(self.rng.next_u64() % 2000);
        self.tasks_not_before = Some(now + base * 2 + jitter);
        self.tasks.push_back(task);
    }

    /// Schedules the lifetimes of a new IKE SA.
    pub(super) fn arm_ike_lifetime(&mut self, now: Instant) {
        let r = self.rng.next_u64();
        let soft = self.cfg.soft_lifetime(self.cfg.ike_lifetime, r);
        self.ike_rekey_at = Some(now + soft);
        self.ike_expire_at = Some(now + self.cfg.ike_lifetime);
    }

    /// Installs a CHILD_SA with its lifetimes.
    pub(super) fn add_child(&mut self, now: Instant, params: ChildSaParams) {
        let r = self.rng.next_u64();
        let soft = self.cfg.soft_lifetime(self.cfg.child_lifetime, r);
        self.children.push(Child {
            params,
            state: ChildState::Installed,
            established: now,
            rekey_at: Some(now + soft),
            expire_at: now + self.cfg.child_lifetime,
            collision: None,
        });
    }

    /// Marks the SA established and starts its timers.
    pub(super) fn established(&mut self, now: Instant, remote_id: Identity) {
        self.phase = Phase::Established;
        self.half_open_deadline = None;
        self.established_at = Some(now);
        self.remote_id = Some(remote_id.clone());
        self.init = None;
        self.arm_ike_lifetime(now);
        if self.nat.encap && (self.nat.local_behind_nat || self.cfg.force_encap) {
            self.next_keepalive = Some(now + self.cfg.keepalive_interval);
        }
        let cur = self.current();
        let (spi_i, spi_r) = (cur.spi_i, cur.spi_r);
        let suite = match cur.keys.as_ref() {
            Some(k) => k.suite,
            None => return,
        };
        tracing::info!(
            spi_i = format_args!("{spi_i:016x}"),
            spi_r = format_args!("{spi_r:016x}"),
            %suite,
            local = %self.local,
            remote = %self.remote,
            peer = %remote_id,
            nat = ?self.nat,
            "IKE SA established"
        );
        self.emit(Event::Established {
            spi_i,
            spi_r,
            suite,
            local_id: self.cfg.local_id.clone(),
            remote_id,
            nat: self.nat,
            local: self.local,
            remote: self.remote,
        });
    }

    /// The configured IKE proposals, for logs.
    pub(super) fn ike_list(&self) -> String {
        super::proposal::display_list(&self.cfg.ike_proposals)
    }

    /// The configured ESP proposals, for logs.
    pub(super) fn esp_list(&self, without_dh: bool) -> String {
        let list: Vec<Proposal> = if without_dh {
            self.cfg
                .esp_proposals
                .iter()
                .map(Proposal::without_dh)
                .collect()
        } else {
            self.cfg.esp_proposals.clone()
        };
        super::proposal::display_list(&list)
    }
}

fn log_drop(e: &OpenError, remote: SocketAddr) {
    tracing::debug!(%remote, error = %e, "dropping IKE message that does not authenticate");
}
