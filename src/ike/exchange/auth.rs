//! IKE_AUTH with a pre-shared key and the first CHILD_SA (RFC 7296 1.2,
//! 2.9, 2.15, 2.17; strongSwan's `ike_auth` and `child_create` tasks).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {IDi, [N(INITIAL_CONTACT)], [IDr,] AUTH, SAi2, TSi, TSr}  -->
//!                              <--  HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
//! ```
//!
//! "AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)"
//! (2.15). A peer whose identity is not the one configured, or whose AUTH
//! does not verify, gets AUTHENTICATION_FAILED (2.21.2: "If the error occurs
//! on the responder, the notification is returned in the protected response
//! ... If the error occurs on the initiator, the notification MAY be
//! returned in a separate INFORMATIONAL exchange").
//!
//! The CHILD_SA's SA payload carries no D-H transform (its keys come from
//! the IKE_SA_INIT nonces, 2.17), and the responder narrows the traffic
//! selectors to the intersection with its policy (2.9).

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::child::{split_keys, ChildSaParams};
use crate::ike::keys::{psk_auth, signed_octets, verify_psk_auth, ChildSaKeys};
use crate::ike::message::{self, PayloadsExt};
use crate::ike::proposal::{self, select_esp, Proposal, Protocol};
use crate::ike::sa::{
    AuthFailure, AuthReq, CloseReason, Event, IkeSa, Phase, ProtocolError, Req, Task,
};
use crate::ike::ts;
use crate::wire::{
    AuthMethod, AuthPayload, ExchangeType, HeaderRepr, IdPayload, NotifyPayload, NotifyType,
    Payload, TsPayload,
};

impl IkeSa {
    /// The configured ESP proposals without D-H: what IKE_AUTH negotiates.
    pub(in crate::ike) fn esp_without_dh(&self) -> Vec<Proposal> {
        self.cfg
            .esp_proposals
            .iter()
            .map(Proposal::without_dh)
            .collect()
    }

    /// Sends the IKE_AUTH request (initiator).
    pub(in crate::ike) fn send_auth(&mut self, now: Instant) {
        let idx = self.current_index();
        let Some(init) = self.init.as_ref() else {
            return;
        };
        let Some(keys) = self.cores[idx].keys.as_ref() else {
            return;
        };
        let prf = keys.suite.prf;
        let idi = IdPayload::from(&self.cfg.local_id);
        let octets = signed_octets(
            prf,
            &init.request,
            &init.nr,
            keys.sk_pi.expose(),
            &idi.to_body(),
        );
        let auth = psk_auth(prf, self.cfg.psk.expose(), &octets);
        let spi_in = self.random_spi32();
        let tsi = ts::from_nets(&self.cfg.local_ts);
        let tsr = ts::from_nets(&self.cfg.remote_ts);
        let mut payloads = vec![Payload::IdI(idi)];
        if self.cfg.initial_contact {
            payloads.push(Payload::Notify(NotifyPayload::new(
                NotifyType::InitialContact,
                Vec::new(),
            )));
        }
        if let Some(r) = &self.cfg.remote_id {
            payloads.push(Payload::IdR(IdPayload::from(r)));
        }
        payloads.push(Payload::Auth(AuthPayload {
            method: AuthMethod::SharedKeyMic,
            data: auth,
        }));
        payloads.push(message::sa_payload(
            &self.esp_without_dh(),
            &spi_in.to_be_bytes(),
        ));
        payloads.push(Payload::TsI(TsPayload {
            selectors: tsi.clone(),
        }));
        payloads.push(Payload::TsR(TsPayload {
            selectors: tsr.clone(),
        }));
        self.send_request(
            idx,
            ExchangeType::IkeAuth,
            &payloads,
            Req::Auth(AuthReq { spi_in, tsi, tsr }),
            now,
        );
    }

    /// Responder: verifies IDi and AUTH, answers with IDr, AUTH and the
    /// CHILD_SA.
    pub(in crate::ike) fn process_auth_request(
        &mut self,
        now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let fail = |sa: &mut IkeSa, reason: AuthFailure| {
            tracing::warn!(remote = %sa.remote, ?reason, "IKE_AUTH: authentication of the initiator failed: answering AUTHENTICATION_FAILED");
            let n = [Payload::Notify(NotifyPayload::new(
                NotifyType::AuthenticationFailed,
                Vec::new(),
            ))];
            sa.send_response(idx, ExchangeType::IkeAuth, header.message_id, bytes, &n, to);
            sa.emit(Event::AuthFailed { reason });
            sa.close(CloseReason::AuthFailed);
        };
        let idi = payloads.iter().find_map(|p| match p {
            Payload::IdI(i) => Some(i),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let (Some(idi), Some(auth)) = (idi, auth) else {
            fail(self, AuthFailure::Missing);
            return;
        };
        let expected = self.expected_remote_id();
        let received = idi.identity();
        if received.as_ref() != Some(&expected) {
            fail(self, AuthFailure::IdMismatch { expected, received });
            return;
        }
        if auth.method != AuthMethod::SharedKeyMic {
            fail(self, AuthFailure::UnsupportedMethod(u8::from(auth.method)));
            return;
        }
        let (Some(init), Some(keys)) = (self.init.as_ref(), self.cores[idx].keys.as_ref()) else {
            return;
        };
        let prf = keys.suite.prf;
        let octets = signed_octets(
            prf,
            &init.request,
            &init.nr,
            keys.sk_pi.expose(),
            &idi.to_body(),
        );
        if !verify_psk_auth(prf, self.cfg.psk.expose(), &octets, &auth.data) {
            fail(self, AuthFailure::BadPsk { peer: received });
            return;
        }
        if let Some(idr) = payloads.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i),
            _ => None,
        }) {
            if idr.identity().as_ref() != Some(&self.cfg.local_id) {
                tracing::info!(wanted = ?idr.identity(), ours = %self.cfg.local_id, "IKE_AUTH: initiator asks for another responder identity; answering with ours");
            }
        }
        // Our AUTH.
        let idr = IdPayload::from(&self.cfg.local_id);
        let octets = signed_octets(
            prf,
            &init.response,
            &init.ni,
            keys.sk_pr.expose(),
            &idr.to_body(),
        );
        let our_auth = psk_auth(prf, self.cfg.psk.expose(), &octets);
        let sk_d = keys.sk_d.clone();
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        let mut out = vec![
            Payload::IdR(idr),
            Payload::Auth(AuthPayload {
                method: AuthMethod::SharedKeyMic,
                data: our_auth,
            }),
        ];
        // The CHILD_SA.
        let child = self.negotiate_child(payloads, &self.esp_without_dh(), "IKE_AUTH");
        let peer_id = received.unwrap_or(expected);
        match child {
            Ok((number, suite, spi_out, tsi, tsr)) => {
                let spi_in = self.random_spi32();
                let Ok(k) = ChildSaKeys::derive(prf, sk_d.expose(), &suite, None, &ni, &nr) else {
                    return;
                };
                let (inbound, outbound) = split_keys(k, false);
                out.push(Payload::Sa(crate::wire::SaPayload {
                    proposals: vec![message::to_wire(
                        &suite.to_proposal(),
                        number,
                        spi_in.to_be_bytes().to_vec(),
                    )],
                }));
                out.push(Payload::TsI(TsPayload {
                    selectors: tsi.clone(),
                }));
                out.push(Payload::TsR(TsPayload {
                    selectors: tsr.clone(),
                }));
                self.send_response(
                    idx,
                    ExchangeType::IkeAuth,
                    header.message_id,
                    bytes,
                    &out,
                    to,
                );
                self.established(now, peer_id);
                let params = self.child_params(spi_in, spi_out, suite, inbound, outbound, tsr, tsi);
                self.announce_child(now, params, None, true);
            }
            Err(e) => {
                out.push(Payload::Notify(NotifyPayload::new(e.notify, Vec::new())));
                self.send_response(
                    idx,
                    ExchangeType::IkeAuth,
                    header.message_id,
                    bytes,
                    &out,
                    to,
                );
                self.established(now, peer_id);
                self.emit(Event::ChildFailed(e));
            }
        }
    }

    /// Initiator: checks the responder's IDr and AUTH and installs the
    /// CHILD_SA.
    pub(in crate::ike) fn process_auth_response(
        &mut self,
        now: Instant,
        req: AuthReq,
        payloads: &[Payload],
    ) {
        if self.phase != Phase::AuthSent {
            return;
        }
        let idr = payloads.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i),
            _ => None,
        });
        let auth = payloads.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let (Some(idr), Some(auth)) = (idr, auth) else {
            let notify = payloads.error_notify().map(|n| n.notify_type);
            if notify == Some(NotifyType::AuthenticationFailed) {
                tracing::warn!(remote = %self.remote, local_id = %self.cfg.local_id, "IKE_AUTH: peer answered AUTHENTICATION_FAILED: it refused our identity or PSK");
                self.emit(Event::AuthFailed {
                    reason: AuthFailure::RejectedByPeer,
                });
                self.close(CloseReason::AuthFailed);
            } else if notify == Some(NotifyType::NoProposalChosen) {
                self.emit(Event::NoProposalChosen {
                    protocol: Protocol::Esp,
                    offered: self.esp_list(true),
                    configured: "(peer's)".into(),
                });
                self.close(CloseReason::NoProposalChosen);
            } else {
                let e = ProtocolError::new(
                    notify.unwrap_or(NotifyType::InvalidSyntax),
                    "IKE_AUTH response without IDr or AUTH",
                );
                tracing::warn!(remote = %self.remote, "{e}");
                self.close(CloseReason::Protocol(e));
            }
            return;
        };
        let expected = self.expected_remote_id();
        let received = idr.identity();
        let idx = self.current_index();
        let (Some(init), Some(keys)) = (self.init.as_ref(), self.cores[idx].keys.as_ref()) else {
            return;
        };
        let prf = keys.suite.prf;
        let reason = if received.as_ref() != Some(&expected) {
            Some(AuthFailure::IdMismatch {
                expected: expected.clone(),
                received: received.clone(),
            })
        } else if auth.method != AuthMethod::SharedKeyMic {
            Some(AuthFailure::UnsupportedMethod(u8::from(auth.method)))
        } else {
            let octets = signed_octets(
                prf,
                &init.response,
                &init.ni,
                keys.sk_pr.expose(),
                &idr.to_body(),
            );
            (!verify_psk_auth(prf, self.cfg.psk.expose(), &octets, &auth.data)).then(|| {
                AuthFailure::BadPsk {
                    peer: received.clone(),
                }
            })
        };
        if let Some(reason) = reason {
            tracing::warn!(remote = %self.remote, ?reason, "IKE_AUTH: authentication of the responder failed");
            self.send_oneshot_notify(NotifyType::AuthenticationFailed);
            self.emit(Event::AuthFailed { reason });
            self.close(CloseReason::AuthFailed);
            return;
        }
        let sk_d = keys.sk_d.clone();
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        self.established(now, received.unwrap_or(expected));
        // The CHILD_SA.
        if let Some(n) = payloads.error_notify() {
            let e = ProtocolError::new(n.notify_type, "first CHILD_SA refused by the responder");
            tracing::warn!(remote = %self.remote, notify = ?n.notify_type, offered = %self.esp_list(true), "IKE_AUTH: peer refused the CHILD_SA; deleting the IKE SA");
            if n.notify_type == NotifyType::NoProposalChosen {
                self.emit(Event::NoProposalChosen {
                    protocol: Protocol::Esp,
                    offered: self.esp_list(true),
                    configured: "(peer's)".into(),
                });
                self.close_reason = Some(CloseReason::NoProposalChosen);
            } else {
                self.close_reason = Some(CloseReason::Protocol(e.clone()));
            }
            self.emit(Event::ChildFailed(e));
            self.queue(Task::DeleteIke);
            return;
        }
        match self.accept_child_answer(payloads, &self.esp_without_dh(), &req.tsi, &req.tsr) {
            Ok((suite, spi_out, tsi, tsr)) => {
                let Ok(k) = ChildSaKeys::derive(prf, sk_d.expose(), &suite, None, &ni, &nr) else {
                    return;
                };
                let (inbound, outbound) = split_keys(k, true);
                let params =
                    self.child_params(req.spi_in, spi_out, suite, inbound, outbound, tsi, tsr);
                self.announce_child(now, params, None, true);
            }
            Err(e) => {
                tracing::warn!(remote = %self.remote, "IKE_AUTH: unusable CHILD_SA answer: {e}");
                self.close_reason = Some(CloseReason::Protocol(e.clone()));
                self.emit(Event::ChildFailed(e));
                self.queue(Task::DeleteIke);
            }
        }
    }

    /// Responder side of a CHILD_SA negotiation (IKE_AUTH or
    /// CREATE_CHILD_SA): the chosen proposal's number, the suite, the
    /// peer's SPI, and the narrowed TSi and TSr.
    #[allow(clippy::type_complexity)]
    pub(in crate::ike) fn negotiate_child(
        &self,
        payloads: &[Payload],
        configured: &[Proposal],
        exchange: &str,
    ) -> Result<
        (
            u8,
            proposal::EspSuite,
            u32,
            Vec<crate::wire::TrafficSelector>,
            Vec<crate::wire::TrafficSelector>,
        ),
        ProtocolError,
    > {
        let sa = payloads
            .sa()
            .ok_or_else(|| ProtocolError::new(NotifyType::InvalidSyntax, "no SA payload"))?;
        let wire: Vec<&crate::wire::Proposal> = sa
            .proposals
            .iter()
            .filter(|p| p.spi_u32().is_some())
            .collect();
        let offered: Vec<Proposal> = wire
            .iter()
            .filter_map(|w| message::from_wire(w, Protocol::Esp))
            .collect();
        let Some((i, suite)) = select_esp(&offered, configured) else {
            let offered = proposal::display_list(&offered);
            let configured = proposal::display_list(configured);
            tracing::warn!(remote = %self.remote, %offered, %configured, "{exchange}: no ESP proposal chosen: the peer's proposals match none of ours");
            return Err(ProtocolError::new(
                NotifyType::NoProposalChosen,
                format!("ESP: offered {offered}, configured {configured}"),
            ));
        };
        // `offered` skipped nothing of another protocol only if every wire
        // proposal was ESP; find the wire proposal matching index i.
        let w = wire
            .iter()
            .filter(|w| message::from_wire(w, Protocol::Esp).is_some())
            .nth(i)
            .ok_or_else(|| ProtocolError::new(NotifyType::InvalidSyntax, "proposal index"))?;
        let spi_out = w
            .spi_u32()
            .ok_or_else(|| ProtocolError::new(NotifyType::InvalidSyntax, "ESP SPI"))?;
        let (tsi, tsr) = payloads
            .ts()
            .ok_or_else(|| ProtocolError::new(NotifyType::TsUnacceptable, "no TSi/TSr"))?;
        let n_tsi = ts::narrow(tsi, &ts::from_nets(&self.cfg.remote_ts));
        let n_tsr = ts::narrow(tsr, &ts::from_nets(&self.cfg.local_ts));
        if n_tsi.is_empty() || n_tsr.is_empty() {
            tracing::warn!(remote = %self.remote, offered_tsi = ?tsi, offered_tsr = ?tsr, local_ts = ?self.cfg.local_ts, remote_ts = ?self.cfg.remote_ts, "{exchange}: traffic selectors do not intersect ours: TS_UNACCEPTABLE");
            return Err(ProtocolError::new(
                NotifyType::TsUnacceptable,
                "traffic selectors do not intersect the configured ones",
            ));
        }
        Ok((w.number, suite, spi_out, n_tsi, n_tsr))
    }

    /// Initiator side: the responder's single proposal must be one we
    /// offered, and its selectors a subset of ours. Returns the suite, the
    /// peer's SPI and the narrowed TSi/TSr.
    #[allow(clippy::type_complexity)]
    pub(in crate::ike) fn accept_child_answer(
        &self,
        payloads: &[Payload],
        offered: &[Proposal],
        our_tsi: &[crate::wire::TrafficSelector],
        our_tsr: &[crate::wire::TrafficSelector],
    ) -> Result<
        (
            proposal::EspSuite,
            u32,
            Vec<crate::wire::TrafficSelector>,
            Vec<crate::wire::TrafficSelector>,
        ),
        ProtocolError,
    > {
        let bad = |why: &str| ProtocolError::new(NotifyType::InvalidSyntax, why.to_string());
        let sa = payloads.sa().ok_or_else(|| bad("no SA payload"))?;
        let [w] = sa.proposals.as_slice() else {
            return Err(bad("the answer must hold exactly one proposal"));
        };
        let spi_out = w.spi_u32().ok_or_else(|| bad("ESP SPI"))?;
        let chosen = message::from_wire(w, Protocol::Esp).ok_or_else(|| bad("not ESP"))?;
        if !chosen.is_single_choice() {
            return Err(bad("more than one transform of a type"));
        }
        let (_, suite) = select_esp(&[chosen], offered).ok_or_else(|| {
            ProtocolError::new(
                NotifyType::NoProposalChosen,
                "the responder chose a proposal we did not offer",
            )
        })?;
        let (tsi, tsr) = payloads
            .ts()
            .ok_or_else(|| ProtocolError::new(NotifyType::TsUnacceptable, "no TSi/TSr"))?;
        if tsi.is_empty()
            || tsr.is_empty()
            || !ts::is_subset(tsi, our_tsi)
            || !ts::is_subset(tsr, our_tsr)
        {
            return Err(ProtocolError::new(
                NotifyType::TsUnacceptable,
                "the responder widened the traffic selectors",
            ));
        }
        Ok((suite, spi_out, tsi.to_vec(), tsr.to_vec()))
    }

    /// Parameters for the ESP layer.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::ike) fn child_params(
        &self,
        spi_in: u32,
        spi_out: u32,
        suite: proposal::EspSuite,
        inbound: crate::ike::child::EspKeys,
        outbound: crate::ike::child::EspKeys,
        local_ts: Vec<crate::wire::TrafficSelector>,
        remote_ts: Vec<crate::wire::TrafficSelector>,
    ) -> ChildSaParams {
        ChildSaParams {
            spi_in,
            spi_out,
            suite,
            inbound,
            outbound,
            local_ts,
            remote_ts,
            esn: suite.esn,
            encap: self.nat.encap || self.local.port() == crate::wire::natt::NATT_PORT,
            local: self.local,
            remote: self.remote,
            lifetime: self.cfg.child_lifetime,
            lifetime_bytes: self.cfg.child_lifetime_bytes,
            replay_window: self.cfg.replay_window,
        }
    }

    /// Installs a CHILD_SA and announces it: `ChildUp`, or `ChildRekeyed`
    /// when it replaces `old` (make-before-break: the new SA first);
    /// `initiator`: we started the exchange.
    pub(in crate::ike) fn announce_child(
        &mut self,
        now: Instant,
        params: ChildSaParams,
        old: Option<(u32, u32)>,
        initiator: bool,
    ) {
        tracing::info!(
            spi_in = format_args!("{:08x}", params.spi_in),
            spi_out = format_args!("{:08x}", params.spi_out),
            suite = %params.suite,
            encap = params.encap,
            rekey_of = ?old.map(|o| format!("{:08x}/{:08x}", o.0, o.1)),
            "CHILD_SA installed"
        );
        self.add_child(now, params.clone());
        match old {
            None => self.emit(Event::ChildUp(params)),
            Some(old) => {
                self.last_rekey = Some(now);
                self.emit(Event::ChildRekeyed {
                    old,
                    new: params,
                    initiator,
                })
            }
        }
    }
}
