//! CREATE_CHILD_SA for CHILD_SAs: creation and rekeying (RFC 7296 1.3.1,
//! 1.3.3, 2.8, 2.8.1, 2.17, 2.25.1; strongSwan's `child_create` and
//! `child_rekey` tasks).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
//!                              <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//! ```
//!
//! "The SA being rekeyed is identified by the SPI field in the Notify
//! payload; this is the SPI the exchange initiator would expect in inbound
//! ESP or AH packets" (1.3.3). With a D-H group in the ESP proposal the
//! exchange carries KE payloads (PFS) and "KEYMAT = prf+(SK_d, g^ir (new) |
//! Ni | Nr)" (2.17).
//!
//! Make-before-break (2.8): the new CHILD_SA is announced
//! ([`crate::ike::Event::ChildRekeyed`]) before the old one is deleted;
//! "the initiator of the rekeying exchange ... SHOULD delete the old SA
//! after the new one is established".
//!
//! Collisions (2.8.1): when both ends rekey the same CHILD_SA, both
//! exchanges complete, and "the SA created with the lowest of the four
//! nonces used in the two exchanges SHOULD be closed by the endpoint that
//! created it", "lowest" meaning an octet-by-octet comparison in which a
//! nonce that ends first is the lower one (Rust's slice ordering). "The node
//! that initiated the surviving rekeyed SA should delete the replaced SA
//! after the new one is established."

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::child::split_keys;
use crate::ike::crypto::DhGroup;
use crate::ike::keys::ChildSaKeys;
use crate::ike::message::{self, crypto_group, wire_group, PayloadsExt};
use crate::ike::proposal::Protocol;
use crate::ike::sa::{
    ChildCollision, ChildDownReason, ChildReq, ChildState, Event, IkeSa, ProtocolError, Req, Task,
    MAX_RETRIES,
};
use crate::wire::{
    DeletePayload, ExchangeType, HeaderRepr, KePayload, NotifyPayload, NotifyType, Payload,
    ProtocolId, TsPayload,
};

/// The lowest of the nonces of a collision is in our exchange
/// (RFC 7296 2.8.1).
pub(in crate::ike) fn lowest_is_ours(ours: [&[u8]; 2], theirs: [&[u8]; 2]) -> bool {
    let our_min = ours[0].min(ours[1]);
    let their_min = theirs[0].min(theirs[1]);
    our_min < their_min
}

impl IkeSa {
    /// The PFS group for a CHILD_SA rekey: the first group of the first
    /// ESP proposal, if any (none: no PFS).
    fn pfs_group(&self) -> Option<DhGroup> {
        self.cfg
            .esp_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
    }

    /// Starts CREATE_CHILD_SA: a rekey of the CHILD_SA with inbound SPI
    /// `old`, or a new CHILD_SA.
    pub(in crate::ike) fn start_child_rekey(&mut self, now: Instant, old: Option<u32>) {
        if let Some(old) = old {
            match self.children.iter_mut().find(|c| c.params.spi_in == old) {
                Some(c) if c.state == ChildState::Installed => c.state = ChildState::Rekeying,
                _ => return,
            }
        }
        let group = self.pfs_group();
        self.send_child_request(now, old, group, 0);
    }

    fn send_child_request(
        &mut self,
        now: Instant,
        old: Option<u32>,
        group: Option<DhGroup>,
        ke_retries: u8,
    ) {
        let spi_in = self.random_spi32();
        let ni = self.nonce();
        let dh = group.map(|g| self.dh(g));
        let (tsi, tsr) = match old.and_then(|o| self.children.iter().find(|c| c.params.spi_in == o))
        {
            Some(c) => (c.params.local_ts.clone(), c.params.remote_ts.clone()),
            None => (
                crate::ike::ts::from_nets(&self.cfg.local_ts),
                crate::ike::ts::from_nets(&self.cfg.remote_ts),
            ),
        };
        let mut payloads = Vec::new();
        if let Some(old) = old {
            payloads.push(Payload::Notify(NotifyPayload {
                protocol: ProtocolId::Esp,
                spi: old.to_be_bytes().to_vec(),
                notify_type: NotifyType::RekeySa,
                data: Vec::new(),
            }));
        }
        payloads.push(message::sa_payload(
            &self.cfg.esp_proposals,
            &spi_in.to_be_bytes(),
        ));
        payloads.push(Payload::Nonce(ni.clone()));
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke(KePayload {
                group: wire_group(dh.group()),
                data: dh.public_value().to_vec(),
            }));
        }
        payloads.push(Payload::TsI(TsPayload { selectors: tsi }));
        payloads.push(Payload::TsR(TsPayload { selectors: tsr }));
        tracing::debug!(rekey = ?old.map(|o| format!("{o:08x}")), pfs = ?group, "CREATE_CHILD_SA request");
        let idx = self.current_index();
        self.send_request(
            idx,
            ExchangeType::CreateChildSa,
            &payloads,
            Req::CreateChild(ChildReq {
                old_spi_in: old,
                spi_in,
                ni,
                dh,
                ke_retries,
            }),
            now,
        );
    }

    /// A CREATE_CHILD_SA request: IKE SA rekey, CHILD_SA rekey or a new
    /// CHILD_SA.
    pub(in crate::ike) fn process_create_child_request(
        &mut self,
        now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let is_ike = payloads.sa().is_some_and(|sa| {
            sa.proposals
                .first()
                .is_some_and(|p| p.protocol == ProtocolId::Ike)
        });
        if is_ike {
            self.respond_ike_rekey(now, to, idx, header, bytes, payloads);
        } else {
            self.respond_child(now, to, idx, header, bytes, payloads);
        }
    }

    fn respond_child(
        &mut self,
        now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let reply_error = |sa: &mut IkeSa, n: NotifyPayload| {
            sa.send_response(
                idx,
                ExchangeType::CreateChildSa,
                header.message_id,
                bytes,
                &[Payload::Notify(n)],
                to,
            );
        };
        // RFC 7296 2.25.2: "If a peer receives a request to rekey a CHILD_SA
        // when it is currently rekeying the IKE SA, it SHOULD reply with
        // TEMPORARY_FAILURE."
        let ike_rekeying = self
            .cores
            .iter()
            .any(|c| matches!(c.pending.as_ref().map(|p| &p.req), Some(Req::RekeyIke(_))));
        if ike_rekeying {
            reply_error(
                self,
                NotifyPayload::new(NotifyType::TemporaryFailure, vec![]),
            );
            return;
        }
        let rekey = payloads.notify(NotifyType::RekeySa).cloned();
        let mut old: Option<(u32, u32)> = None;
        if let Some(n) = &rekey {
            let Some(peer_spi) = n.spi_u32() else {
                reply_error(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
                return;
            };
            // The notify names the peer's inbound SPI: our outbound one.
            match self.children.iter().find(|c| c.params.spi_out == peer_spi) {
                None => {
                    // 2.25: "A CHILD_SA_NOT_FOUND notification SHOULD be sent
                    // when a peer receives a request to rekey a Child SA that
                    // does not exist", the SPI copied from REKEY_SA.
                    let mut nf = NotifyPayload::new(NotifyType::ChildSaNotFound, vec![]);
                    nf.protocol = ProtocolId::Esp;
                    nf.spi = n.spi.clone();
                    reply_error(self, nf);
                    return;
                }
                Some(c) if matches!(c.state, ChildState::Deleting(_) | ChildState::Rekeyed) => {
                    // 2.25.1: "If a peer receives a request to rekey a Child
                    // SA that it is currently trying to close, it SHOULD
                    // reply with TEMPORARY_FAILURE."
                    reply_error(
                        self,
                        NotifyPayload::new(NotifyType::TemporaryFailure, vec![]),
                    );
                    return;
                }
                Some(c) => old = Some((c.params.spi_in, c.params.spi_out)),
            }
        }
        let (number, suite, spi_out, tsi, tsr) = match self.negotiate_child(
            payloads,
            &self.cfg.esp_proposals.clone(),
            "CREATE_CHILD_SA",
        ) {
            Ok(v) => v,
            Err(e) => {
                if e.notify == NotifyType::NoProposalChosen {
                    self.emit(Event::NoProposalChosen {
                        protocol: Protocol::Esp,
                        offered: e.reason.clone(),
                        configured: self.esp_list(false),
                    });
                }
                reply_error(self, NotifyPayload::new(e.notify, vec![]));
                return;
            }
        };
        let Some(ni) = payloads
            .nonce()
            .filter(|n| message::nonce_ok(n))
            .map(<[u8]>::to_vec)
        else {
            reply_error(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
            return;
        };
        // PFS: the KE must be in the chosen group (RFC 7296 1.3: otherwise
        // INVALID_KE_PAYLOAD naming it).
        let mut ke_out = None;
        let mut g_ir = None;
        if let Some(group) = suite.dh {
            match payloads.ke() {
                Some(ke) if crypto_group(ke.group) == Some(group) => {
                    let dh = self.dh(group);
                    match dh.shared_secret(&ke.data) {
                        Ok(s) => g_ir = Some(s),
                        Err(_) => {
                            reply_error(
                                self,
                                NotifyPayload::new(NotifyType::InvalidSyntax, vec![]),
                            );
                            return;
                        }
                    }
                    ke_out = Some(KePayload {
                        group: wire_group(group),
                        data: dh.public_value().to_vec(),
                    });
                }
                _ => {
                    tracing::info!(wanted = %group, "CREATE_CHILD_SA: KE in another group: INVALID_KE_PAYLOAD");
                    reply_error(self, NotifyPayload::invalid_ke(wire_group(group)));
                    return;
                }
            }
        }
        let Some(keys) = self.cores[idx].keys.as_ref() else {
            return;
        };
        let (prf, sk_d) = (keys.suite.prf, keys.sk_d.clone());
        let nr = self.nonce();
        let Ok(k) = ChildSaKeys::derive(
            prf,
            sk_d.expose(),
            &suite,
            g_ir.as_ref().map(|s| s.expose()),
            &ni,
            &nr,
        ) else {
            return;
        };
        let (inbound, outbound) = split_keys(k, false);
        let spi_in = self.random_spi32();
        let mut out = vec![
            Payload::Sa(crate::wire::SaPayload {
                proposals: vec![message::to_wire(
                    &suite.to_proposal(),
                    number,
                    spi_in.to_be_bytes().to_vec(),
                )],
            }),
            Payload::Nonce(nr.clone()),
        ];
        if let Some(ke) = ke_out {
            out.push(Payload::Ke(ke));
        }
        out.push(Payload::TsI(TsPayload {
            selectors: tsi.clone(),
        }));
        out.push(Payload::TsR(TsPayload {
            selectors: tsr.clone(),
        }));
        self.send_response(
            idx,
            ExchangeType::CreateChildSa,
            header.message_id,
            bytes,
            &out,
            to,
        );
        let params = self.child_params(spi_in, spi_out, suite, inbound, outbound, tsr, tsi);
        if let Some((old_in, _)) = old {
            if let Some(c) = self.children.iter_mut().find(|c| c.params.spi_in == old_in) {
                if c.state == ChildState::Rekeying {
                    // A collision (2.8.1, 2.25.1 "reply as usual, and SHOULD
                    // prepare to close redundant SAs later based on the
                    // nonces"): decided when our own exchange completes.
                    c.collision = Some(ChildCollision {
                        new_spi_in: spi_in,
                        ni: ni.clone(),
                        nr: nr.clone(),
                    });
                } else {
                    // The peer deletes the old one.
                    c.state = ChildState::Rekeyed;
                    c.rekey_at = None;
                }
            }
        }
        self.announce_child(now, params, old, false);
    }

    /// Our CREATE_CHILD_SA was answered.
    pub(in crate::ike) fn process_child_response(
        &mut self,
        now: Instant,
        idx: usize,
        req: ChildReq,
        payloads: &[Payload],
    ) {
        let restore = |sa: &mut IkeSa| {
            if let Some(c) = req
                .old_spi_in
                .and_then(|o| sa.children.iter_mut().find(|c| c.params.spi_in == o))
            {
                if c.state == ChildState::Rekeying {
                    c.state = ChildState::Installed;
                }
                c.collision = None;
            }
        };
        if let Some(n) = payloads.error_notify() {
            let t = n.notify_type;
            match t {
                NotifyType::InvalidKePayload => {
                    let group = n.invalid_ke_group().and_then(crypto_group);
                    let offered = group
                        .is_some_and(|g| self.cfg.esp_proposals.iter().any(|p| p.dh.contains(&g)));
                    if let (Some(g), true, true) = (group, offered, req.ke_retries < MAX_RETRIES) {
                        tracing::info!(to = %g, "CREATE_CHILD_SA: INVALID_KE_PAYLOAD: retrying with the peer's group");
                        self.send_child_request(now, req.old_spi_in, Some(g), req.ke_retries + 1);
                        return;
                    }
                }
                NotifyType::TemporaryFailure => {
                    // 2.25: "it MUST NOT immediately retry".
                    restore(self);
                    let task = match req.old_spi_in {
                        Some(o) => Task::RekeyChild(o),
                        None => Task::CreateChild,
                    };
                    tracing::info!("CREATE_CHILD_SA: TEMPORARY_FAILURE: retrying later");
                    self.retry_later(now, task);
                    return;
                }
                NotifyType::ChildSaNotFound => {
                    // 2.25: "SHOULD silently delete the Child SA (if it still
                    // exists) and send a request to create a new Child SA
                    // from scratch".
                    if let Some(o) = req.old_spi_in {
                        self.remove_child(o, ChildDownReason::DeletedByPeer);
                    }
                    self.queue(Task::CreateChild);
                    return;
                }
                NotifyType::NoProposalChosen => {
                    self.emit(Event::NoProposalChosen {
                        protocol: Protocol::Esp,
                        offered: self.esp_list(false),
                        configured: "(peer's)".into(),
                    });
                }
                _ => {}
            }
            tracing::warn!(notify = ?t, "CREATE_CHILD_SA refused by the peer");
            restore(self);
            self.emit(Event::ChildFailed(ProtocolError::new(
                t,
                "CREATE_CHILD_SA refused by the peer",
            )));
            return;
        }
        let (our_tsi, our_tsr) = match req
            .old_spi_in
            .and_then(|o| self.children.iter().find(|c| c.params.spi_in == o))
        {
            Some(c) => (c.params.local_ts.clone(), c.params.remote_ts.clone()),
            None => (
                crate::ike::ts::from_nets(&self.cfg.local_ts),
                crate::ike::ts::from_nets(&self.cfg.remote_ts),
            ),
        };
        let answer = self.accept_child_answer(
            payloads,
            &self.cfg.esp_proposals.clone(),
            &our_tsi,
            &our_tsr,
        );
        let nr = payloads.nonce().filter(|n| message::nonce_ok(n));
        let (Ok((suite, spi_out, tsi, tsr)), Some(nr)) = (answer, nr) else {
            tracing::warn!("CREATE_CHILD_SA: unusable answer");
            restore(self);
            return;
        };
        // PFS shared secret.
        let g_ir = match (suite.dh, &req.dh, payloads.ke()) {
            (None, _, _) => None,
            (Some(g), Some(dh), Some(ke))
                if dh.group() == g && crypto_group(ke.group) == Some(g) =>
            {
                match dh.shared_secret(&ke.data) {
                    Ok(s) => Some(s),
                    Err(_) => {
                        restore(self);
                        return;
                    }
                }
            }
            _ => {
                tracing::warn!("CREATE_CHILD_SA: answer without the KE payload of its group");
                restore(self);
                return;
            }
        };
        let Some(keys) = self.cores[idx].keys.as_ref() else {
            return;
        };
        let (prf, sk_d) = (keys.suite.prf, keys.sk_d.clone());
        let Ok(k) = ChildSaKeys::derive(
            prf,
            sk_d.expose(),
            &suite,
            g_ir.as_ref().map(|s| s.expose()),
            &req.ni,
            nr,
        ) else {
            restore(self);
            return;
        };
        let (inbound, outbound) = split_keys(k, true);
        let params = self.child_params(req.spi_in, spi_out, suite, inbound, outbound, tsi, tsr);
        let old = req.old_spi_in.and_then(|o| {
            self.children
                .iter()
                .find(|c| c.params.spi_in == o)
                .map(|c| (c.params.spi_in, c.params.spi_out))
        });
        self.announce_child(now, params, old, true);
        let Some((old_in, _)) = old else {
            return;
        };
        let collision = self
            .children
            .iter_mut()
            .find(|c| c.params.spi_in == old_in)
            .and_then(|c| {
                c.state = ChildState::Rekeyed;
                c.rekey_at = None;
                c.collision.take()
            });
        match collision {
            None => {
                // No collision: we delete the replaced SA.
                self.tasks
                    .push_front(Task::DeleteChild(vec![old_in], ChildDownReason::Rekeyed));
            }
            Some(col) => {
                if lowest_is_ours([&req.ni, nr], [&col.ni, &col.nr]) {
                    // Our new SA is the redundant one: we created it, we
                    // close it; the peer deletes the old one.
                    tracing::info!(
                        redundant = format_args!("{:08x}", req.spi_in),
                        "CHILD_SA rekey collision: ours has the lowest nonce, deleting it"
                    );
                    self.tasks.push_front(Task::DeleteChild(
                        vec![req.spi_in],
                        ChildDownReason::Redundant,
                    ));
                } else {
                    // The peer's new SA is redundant (it closes it); ours
                    // survives and we delete the replaced SA.
                    tracing::info!(
                        redundant = format_args!("{:08x}", col.new_spi_in),
                        "CHILD_SA rekey collision: the peer's has the lowest nonce"
                    );
                    if let Some(c) = self
                        .children
                        .iter_mut()
                        .find(|c| c.params.spi_in == col.new_spi_in)
                    {
                        c.state = ChildState::Rekeyed;
                        c.rekey_at = None;
                    }
                    self.tasks
                        .push_front(Task::DeleteChild(vec![old_in], ChildDownReason::Rekeyed));
                }
            }
        }
    }

    /// Removes a CHILD_SA and announces it.
    pub(in crate::ike) fn remove_child(&mut self, spi_in: u32, reason: ChildDownReason) {
        if let Some(pos) = self.children.iter().position(|c| c.params.spi_in == spi_in) {
            let c = self.children.remove(pos);
            tracing::info!(
                spi_in = format_args!("{:08x}", c.params.spi_in),
                spi_out = format_args!("{:08x}", c.params.spi_out),
                ?reason,
                "CHILD_SA removed"
            );
            self.emit(Event::ChildDown {
                spi_in: c.params.spi_in,
                spi_out: c.params.spi_out,
                reason,
            });
        }
    }

    /// INFORMATIONAL with a Delete for our inbound SPIs (RFC 7296 1.4.1).
    pub(in crate::ike) fn start_delete_child(
        &mut self,
        now: Instant,
        spis: Vec<u32>,
        reason: ChildDownReason,
    ) {
        let mut live = Vec::new();
        for c in &mut self.children {
            if spis.contains(&c.params.spi_in) && !matches!(c.state, ChildState::Deleting(_)) {
                c.state = ChildState::Deleting(reason);
                c.rekey_at = None;
                live.push(c.params.spi_in);
            }
        }
        if live.is_empty() {
            return;
        }
        let d = [Payload::Delete(DeletePayload::child(
            ProtocolId::Esp,
            &live,
        ))];
        let idx = self.current_index();
        self.send_request(
            idx,
            ExchangeType::Informational,
            &d,
            Req::DeleteChild(live),
            now,
        );
    }

    /// The peer confirmed our Delete: the SAs are gone both ways.
    pub(in crate::ike) fn process_delete_child_response(&mut self, spis: &[u32]) {
        for &spi in spis {
            let reason = match self.children.iter().find(|c| c.params.spi_in == spi) {
                Some(c) => match c.state {
                    ChildState::Deleting(r) => r,
                    _ => ChildDownReason::DeletedLocally,
                },
                None => continue,
            };
            self.remove_child(spi, reason);
        }
    }
}
