//! IKE_SA_INIT (RFC 7296 1.2, 2.6, 2.10, 2.14, 2.23; strongSwan's
//! `ike_init` and `ike_natd` tasks).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SAi1, KEi, Ni,
//!   N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP)  -->
//!                              <--  HDR, SAr1, KEr, Nr, N(NATD_S), N(NATD_D)
//! ```
//!
//! Refusals are stateless responses (2.21.1): `N(NO_PROPOSAL_CHOSEN)`,
//! `N(INVALID_KE_PAYLOAD)` with the group the responder wants (1.3: "the
//! responder MUST reject the request and indicate its preferred
//! Diffie-Hellman group in the INVALID_KE_PAYLOAD Notify payload"), and
//! `N(COOKIE)` (2.6, see [`crate::ike::CookieJar`]). The initiator retries
//! with the group asked for, or with the cookie as the first payload.

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::config::IkeConfig;
use crate::ike::crypto::DhGroup;
use crate::ike::keys::{skeyseed, IkeSaKeys};
use crate::ike::message::{self, crypto_group, wire_group, PayloadsExt};
use crate::ike::natd::{self, nat_hash};
use crate::ike::proposal::{self, select_ike, Protocol};
use crate::ike::sa::{
    CloseReason, CoreKeys, CoreKind, Event, IkeSa, InitData, InitRefusal, Pending, Phase,
    ProtocolError, Rejected, Req, SaCore, Transmit, MAX_RETRIES,
};
use crate::wire::{
    natt::NATT_PORT, ExchangeType, Flags, HeaderRepr, KePayload, Message, NotifyPayload,
    NotifyType, Payload,
};

/// A stateless IKE_SA_INIT error response: `HDR(SPIi, 0), N(type)`.
fn stateless_reply(
    req: &HeaderRepr,
    notify: NotifyPayload,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<Transmit> {
    let msg = Message {
        header: HeaderRepr {
            spi_i: req.spi_i,
            spi_r: 0,
            exchange_type: ExchangeType::IkeSaInit,
            flags: Flags {
                initiator: false,
                response: true,
                version: false,
            },
            message_id: 0,
        },
        payloads: vec![Payload::Notify(notify)],
    };
    msg.to_bytes().ok().map(|message| Transmit::Ike {
        local,
        remote,
        message,
    })
}

fn natd_payloads(
    cfg: &IkeConfig,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    random: [u8; 20],
) -> [Payload; 2] {
    // With force_encap the source hash is one that cannot match, so that
    // the peer sees a NAT and both sides float to port 4500 (strongSwan's
    // `encap = yes`, RFC 7296 2.23 lets either side choose UDP
    // encapsulation).
    let src = if cfg.force_encap {
        random
    } else {
        nat_hash(spi_i, spi_r, local)
    };
    [
        Payload::Notify(NotifyPayload::new(
            NotifyType::NatDetectionSourceIp,
            src.to_vec(),
        )),
        Payload::Notify(NotifyPayload::new(
            NotifyType::NatDetectionDestinationIp,
            nat_hash(spi_i, spi_r, remote).to_vec(),
        )),
    ]
}

fn natd_hashes(payloads: &[Payload]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let s = payloads
        .notifies(NotifyType::NatDetectionSourceIp)
        .into_iter()
        .map(|n| n.data.as_slice())
        .collect();
    let d = payloads
        .notifies(NotifyType::NatDetectionDestinationIp)
        .into_iter()
        .map(|n| n.data.as_slice())
        .collect();
    (s, d)
}

impl IkeSa {
    /// Builds and sends the first IKE_SA_INIT request.
    pub(in crate::ike) fn start_init(&mut self, now: Instant) {
        let spi_i = self.random_spi64();
        let group = self
            .cfg
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .unwrap_or(DhGroup::Modp2048);
        let ni = self.nonce();
        let dh = self.dh(group);
        self.cores
            .push(SaCore::new(spi_i, 0, true, CoreKind::Current));
        self.init = Some(InitData {
            ni,
            nr: Vec::new(),
            request: Vec::new(),
            response: Vec::new(),
            dh: Some(dh),
            cookie: None,
            retries: 0,
            refused: None,
        });
        self.send_init(now);
    }

    /// (Re)sends IKE_SA_INIT with the current DH key pair and cookie, as a
    /// new request with Message ID 0.
    fn send_init(&mut self, now: Instant) {
        let mut random = [0u8; 20];
        self.rng.fill_bytes(&mut random);
        let idx = self.current_index();
        let spi_i = self.cores[idx].spi_i;
        let Some(init) = self.init.as_ref() else {
            return;
        };
        let Some(dh) = init.dh.as_ref() else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = &init.cookie {
            // RFC 7296 2.6: "with a Notify payload of type COOKIE containing
            // the responder-supplied cookie data as the first payload and all
            // other payloads unchanged".
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::Cookie,
                c.clone(),
            )));
        }
        payloads.push(message::sa_payload(&self.cfg.ike_proposals, &[]));
        payloads.push(Payload::Ke(KePayload {
            group: wire_group(dh.group()),
            data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(init.ni.clone()));
        payloads.extend(natd_payloads(
            &self.cfg,
            spi_i,
            0,
            self.local,
            self.remote,
            random,
        ));
        let msg = Message {
            header: self.cores[idx].header(ExchangeType::IkeSaInit, false, 0),
            payloads,
        };
        let Ok(bytes) = msg.to_bytes() else {
            tracing::error!("cannot encode IKE_SA_INIT");
            return;
        };
        if let Some(init) = self.init.as_mut() {
            init.request = bytes.clone();
        }
        let core = &mut self.cores[idx];
        core.next_msg_id = 1;
        core.pending = Some(Pending {
            msg_id: 0,
            message: bytes.clone(),
            sends: 1,
            first_sent: now,
            next_at: now + self.cfg.retransmit.timeout(0),
            req: Req::Init,
        });
        let (l, r) = (self.local, self.remote);
        self.push_ike(l, r, bytes);
    }

    /// An IKE_SA_INIT message for this SA: the initiator's response, or a
    /// responder's retransmitted request.
    pub(in crate::ike) fn handle_init_message(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: HeaderRepr,
        bytes: &[u8],
    ) {
        let idx = self.current_index();
        let Some(core) = self.cores.get(idx) else {
            return;
        };
        if header.message_id != 0 || header.spi_i != core.spi_i {
            return;
        }
        if !header.flags.response {
            // Responder: a retransmitted IKE_SA_INIT request gets the same
            // response (RFC 7296 2.1).
            if let Some(c) = core.cached.as_ref().filter(|c| c.msg_id == 0) {
                if c.request == bytes && self.phase == Phase::AwaitAuth {
                    let r = c.response.clone();
                    self.push_ike(local, remote, r);
                }
            }
            return;
        }
        if self.phase != Phase::InitSent || !header.flags.response || header.flags.initiator {
            return;
        }
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        self.process_init_response(now, local, remote, header, bytes, &msg.payloads);
    }

    fn process_init_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let idx = self.current_index();
        // COOKIE (RFC 7296 2.6).
        if let Some(n) = payloads.notify(NotifyType::Cookie) {
            let Some(init) = self.init.as_mut() else {
                return;
            };
            if init.retries >= MAX_RETRIES || n.data.is_empty() || n.data.len() > 64 {
                return;
            }
            init.retries += 1;
            init.cookie = Some(n.data.clone());
            tracing::info!(%remote, "responder demands a cookie (RFC 7296 2.6): retrying IKE_SA_INIT");
            self.send_init(now);
            return;
        }
        // INVALID_KE_PAYLOAD (RFC 7296 1.3): retry in the group asked for,
        // if we offered it.
        if let Some(n) = payloads.notify(NotifyType::InvalidKePayload) {
            let Some(group) = n.invalid_ke_group().and_then(crypto_group) else {
                return;
            };
            let offered = self.cfg.ike_proposals.iter().any(|p| p.dh.contains(&group));
            let Some(init) = self.init.as_mut() else {
                return;
            };
            let current = init.dh.as_ref().map(|d| d.group());
            if !offered || current == Some(group) || init.retries >= MAX_RETRIES {
                let e = ProtocolError::new(
                    NotifyType::InvalidKePayload,
                    format!("responder wants DH group {group}, which we did not offer"),
                );
                tracing::warn!(%remote, "{e} (unauthenticated: still waiting for another answer)");
                init.refused = Some(InitRefusal::Protocol(e));
                return;
            }
            init.retries += 1;
            tracing::info!(%remote, from = ?current, to = %group, "INVALID_KE_PAYLOAD: retrying IKE_SA_INIT with the responder's DH group");
            let dh = self.dh(group);
            if let Some(init) = self.init.as_mut() {
                init.dh = Some(dh);
            }
            self.send_init(now);
            return;
        }
        if let Some(n) = payloads.error_notify() {
            // RFC 7296 2.21.1: such a notify is not protected, so "an
            // initiator SHOULD continue trying to establish the SA for a
            // while, e.g., until retransmission timeout" before giving up:
            // the request stays outstanding and is retransmitted, and the
            // refusal counts only when no valid answer came by then.
            let t = n.notify_type;
            let refusal = if t == NotifyType::NoProposalChosen {
                tracing::warn!(%remote, offered = %self.ike_list(), "IKE_SA_INIT: peer answered NO_PROPOSAL_CHOSEN (unauthenticated: still waiting for another answer)");
                InitRefusal::NoProposalChosen
            } else {
                let e = ProtocolError::new(t, "error notify in IKE_SA_INIT response");
                tracing::warn!(%remote, "{e} (unauthenticated: still waiting for another answer)");
                InitRefusal::Protocol(e)
            };
            if let Some(init) = self.init.as_mut() {
                init.refused = Some(refusal);
            }
            return;
        }
        if header.spi_r == 0 {
            return;
        }
        // The responder's choice: exactly one proposal, which must be one we
        // offered (RFC 7296 3.3.6 "the responder MUST choose a single
        // suite").
        let Some(sa) = payloads.sa() else { return };
        let [chosen] = sa.proposals.as_slice() else {
            return;
        };
        let Some(chosen) = message::from_wire(chosen, Protocol::Ike) else {
            return;
        };
        if !chosen.is_single_choice() {
            return;
        }
        let Some((_, suite)) = select_ike(&[chosen], &self.cfg.ike_proposals) else {
            return;
        };
        let (Some(ke), Some(nr)) = (payloads.ke(), payloads.nonce()) else {
            return;
        };
        if !message::nonce_ok(nr) || crypto_group(ke.group) != Some(suite.dh) {
            return;
        }
        let Some(init) = self.init.as_mut() else {
            return;
        };
        let Some(dh) = init.dh.as_ref() else { return };
        if dh.group() != suite.dh {
            return;
        }
        let Ok(g_ir) = dh.shared_secret(&ke.data) else {
            tracing::warn!(%remote, "IKE_SA_INIT response: invalid KE public value");
            return;
        };
        let spi_i = header.spi_i;
        let spi_r = header.spi_r;
        let seed = skeyseed(suite.prf, &init.ni, nr, g_ir.expose());
        let Ok(keys) = IkeSaKeys::derive(&suite, seed.expose(), &init.ni, nr, spi_i, spi_r) else {
            return;
        };
        let Ok(keys) = CoreKeys::new(suite, keys, true) else {
            return;
        };
        init.nr = nr.to_vec();
        init.response = bytes.to_vec();
        init.dh = None;
        // NAT detection (RFC 7296 2.23), with the SPIs of the response.
        let (s, d) = natd_hashes(payloads);
        if let Some((local_nat, remote_nat)) = natd::detect(spi_i, spi_r, local, remote, &s, &d) {
            self.nat.local_behind_nat = local_nat;
            self.nat.remote_behind_nat = remote_nat;
            self.nat.encap = local_nat || remote_nat || self.cfg.force_encap;
        }
        let core = &mut self.cores[idx];
        core.spi_r = spi_r;
        core.keys = Some(keys);
        core.pending = None;
        self.last_recv = now;
        // "the initiator MUST ... switch to port 4500" for IKE_AUTH when a
        // NAT is detected (RFC 7296 2.23).
        if self.nat.encap {
            self.local.set_port(NATT_PORT);
            self.remote.set_port(NATT_PORT);
        }
        tracing::debug!(%suite, nat = ?self.nat, "IKE_SA_INIT done");
        self.phase = Phase::AuthSent;
        self.send_auth(now);
    }

    /// Our IKE_SA_INIT request ran out of retransmissions after an error
    /// notify and no valid answer: the refusal stands.
    pub(in crate::ike) fn init_refused(&mut self, refusal: InitRefusal) {
        match refusal {
            InitRefusal::NoProposalChosen => {
                let offered = self.ike_list();
                tracing::warn!(remote = %self.remote, %offered, "IKE_SA_INIT: peer answered NO_PROPOSAL_CHOSEN: none of our IKE proposals is acceptable to it");
                self.emit(Event::NoProposalChosen {
                    protocol: Protocol::Ike,
                    offered,
                    configured: "(peer's)".into(),
                });
                self.close(CloseReason::NoProposalChosen);
            }
            InitRefusal::Protocol(e) => {
                tracing::warn!(remote = %self.remote, "IKE_SA_INIT refused: {e}");
                self.close(CloseReason::Protocol(e));
            }
        }
    }

    /// The responder's side of IKE_SA_INIT, for [`IkeSa::accept`].
    pub(in crate::ike) fn respond_init(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), Rejected> {
        let (local, remote) = (self.local, self.remote);
        let reject = |notify: NotifyType, reason: String, reply: Option<Transmit>| Rejected {
            error: ProtocolError::new(notify, reason),
            reply,
        };
        let msg = Message::parse(bytes).map_err(|e| {
            reject(
                e.notify_type().unwrap_or(NotifyType::InvalidSyntax),
                e.to_string(),
                None,
            )
        })?;
        let h = msg.header;
        if h.exchange_type != ExchangeType::IkeSaInit
            || h.flags.response
            || !h.flags.initiator
            || h.message_id != 0
            || h.spi_r != 0
            || h.spi_i == 0
        {
            return Err(reject(
                NotifyType::InvalidSyntax,
                "not an IKE_SA_INIT request".into(),
                None,
            ));
        }
        let p = &msg.payloads;
        let (Some(sa), Some(ke), Some(ni)) = (p.sa(), p.ke(), p.nonce()) else {
            return Err(reject(
                NotifyType::InvalidSyntax,
                "IKE_SA_INIT request without SA, KE or Nonce".into(),
                None,
            ));
        };
        if !message::nonce_ok(ni) {
            return Err(reject(
                NotifyType::InvalidSyntax,
                format!("nonce of {} octets", ni.len()),
                None,
            ));
        }
        let offered: Vec<proposal::Proposal> = sa
            .proposals
            .iter()
            .filter_map(|w| message::from_wire(w, Protocol::Ike))
            .collect();
        let Some((i, suite)) = select_ike(&offered, &self.cfg.ike_proposals) else {
            let offered = proposal::display_list(&offered);
            let configured = self.ike_list();
            tracing::warn!(%remote, %offered, %configured, "IKE_SA_INIT: no proposal chosen: the peer's IKE proposals match none of ours");
            let reply = stateless_reply(
                &h,
                NotifyPayload::new(NotifyType::NoProposalChosen, Vec::new()),
                local,
                remote,
            );
            return Err(reject(
                NotifyType::NoProposalChosen,
                format!("offered {offered}, configured {configured}"),
                reply,
            ));
        };
        if crypto_group(ke.group) != Some(suite.dh) {
            // RFC 7296 1.3: reject and name the group we want.
            tracing::info!(%remote, offered = ?ke.group, wanted = %suite.dh, "IKE_SA_INIT: KE in another group than the chosen proposal: INVALID_KE_PAYLOAD");
            let reply = stateless_reply(
                &h,
                NotifyPayload::invalid_ke(wire_group(suite.dh)),
                local,
                remote,
            );
            return Err(reject(
                NotifyType::InvalidKePayload,
                format!("KE group {:?}, wanted {}", ke.group, suite.dh),
                reply,
            ));
        }
        let dh = self.dh(suite.dh);
        let g_ir = dh
            .shared_secret(&ke.data)
            .map_err(|e| reject(NotifyType::InvalidSyntax, format!("KE payload: {e}"), None))?;
        let spi_r = self.random_spi64();
        let nr = self.nonce();
        let seed = skeyseed(suite.prf, ni, &nr, g_ir.expose());
        let keys = IkeSaKeys::derive(&suite, seed.expose(), ni, &nr, h.spi_i, spi_r)
            .map_err(|e| reject(NotifyType::NoProposalChosen, e.to_string(), None))?;
        let keys = CoreKeys::new(suite, keys, false).map_err(|e| Rejected {
            error: e,
            reply: None,
        })?;
        // NAT detection on the request (its SPIs: SPIi | 0).
        let (s, d) = natd_hashes(p);
        if let Some((local_nat, remote_nat)) = natd::detect(h.spi_i, 0, local, remote, &s, &d) {
            self.nat.local_behind_nat = local_nat;
            self.nat.remote_behind_nat = remote_nat;
            self.nat.encap = local_nat || remote_nat || self.cfg.force_encap;
        }
        let number = sa.proposals.get(i).map_or(1, |w| w.number);
        let mut random = [0u8; 20];
        self.rng.fill_bytes(&mut random);
        let mut payloads = vec![
            Payload::Sa(crate::wire::SaPayload {
                proposals: vec![message::to_wire(&suite.to_proposal(), number, Vec::new())],
            }),
            Payload::Ke(KePayload {
                group: wire_group(suite.dh),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        if !s.is_empty() || !d.is_empty() {
            payloads.extend(natd_payloads(
                &self.cfg, h.spi_i, spi_r, local, remote, random,
            ));
        }
        let mut core = SaCore::new(h.spi_i, spi_r, false, CoreKind::Current);
        let response = Message {
            header: core.header(ExchangeType::IkeSaInit, true, 0),
            payloads,
        }
        .to_bytes()
        .map_err(|e| reject(NotifyType::InvalidSyntax, e.to_string(), None))?;
        core.keys = Some(keys);
        core.peer_next_id = 1;
        core.cached = Some(crate::ike::sa::Cached {
            msg_id: 0,
            request: bytes.to_vec(),
            response: response.clone(),
        });
        self.cores.push(core);
        self.init = Some(InitData {
            ni: ni.to_vec(),
            nr,
            request: bytes.to_vec(),
            response: response.clone(),
            dh: None,
            cookie: None,
            retries: 0,
            refused: None,
        });
        self.phase = Phase::AwaitAuth;
        self.half_open_deadline = Some(now + self.cfg.retransmit.total());
        tracing::debug!(%remote, %suite, nat = ?self.nat, "IKE_SA_INIT answered");
        self.push_ike(local, remote, response);
        Ok(())
    }
}
