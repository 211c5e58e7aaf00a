//! Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18, 2.8.2,
//! 2.25.2; strongSwan's `ike_rekey` task).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {SA, Ni, KEi}  -->
//!                              <--  HDR, SK {SA, Nr, KEr}
//! ```
//!
//! The SA payloads carry the new 8-octet SPIs; "SKEYSEED = prf(SK_d (old),
//! g^ir (new) | Ni | Nr)" and the new keys come from prf+ with the new SPIs
//! (2.18). The new IKE SA's original initiator is the rekey's initiator;
//! its Message IDs start at 0. "The old IKE SA ... its CHILD_SAs ... are
//! transferred to the new IKE SA", and the rekey's initiator deletes the
//! old one.
//!
//! Collision (2.8.2): "If a peer receives a request to rekey an IKE SA that
//! it is currently rekeying, it SHOULD reply as usual": two new IKE SAs
//! exist, "the SA created with the lowest of the four nonces used in the
//! two exchanges SHOULD be closed by the endpoint that created it", and the
//! node that initiated the surviving SA deletes the old one.

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::crypto::DhGroup;
use crate::ike::keys::{rekey_skeyseed, IkeSaKeys};
use crate::ike::message::{self, crypto_group, wire_group, PayloadsExt};
use crate::ike::proposal::{self, select_ike, IkeSuite, Protocol};
use crate::ike::sa::{
    CloseReason, CoreKeys, CoreKind, Event, IkeRekeyReq, IkeSa, Req, SaCore, Task, MAX_RETRIES,
};
use crate::wire::{
    ExchangeType, HeaderRepr, KePayload, NotifyPayload, NotifyType, Payload, SaPayload,
};

use super::child::lowest_is_ours;

impl IkeSa {
    /// Starts an IKE SA rekey on the current IKE SA.
    pub(in crate::ike) fn start_ike_rekey(&mut self, now: Instant) {
        let group = self
            .current()
            .keys
            .as_ref()
            .map(|k| k.suite.dh)
            .unwrap_or(DhGroup::Modp2048);
        self.send_ike_rekey(now, group, 0);
    }

    fn send_ike_rekey(&mut self, now: Instant, group: DhGroup, ke_retries: u8) {
        let spi = self.random_spi64();
        let ni = self.nonce();
        let dh = self.dh(group);
        let payloads = [
            message::sa_payload(&self.cfg.ike_proposals, &spi.to_be_bytes()),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KePayload {
                group: wire_group(group),
                data: dh.public_value().to_vec(),
            }),
        ];
        tracing::debug!(new_spi = format_args!("{spi:016x}"), "rekeying the IKE SA");
        let idx = self.current_index();
        self.send_request(
            idx,
            ExchangeType::CreateChildSa,
            &payloads,
            Req::RekeyIke(IkeRekeyReq {
                spi,
                ni,
                dh,
                ke_retries,
            }),
            now,
        );
    }

    /// Builds the new IKE SA's state.
    #[allow(clippy::too_many_arguments)]
    fn new_core(
        &self,
        old_idx: usize,
        suite: IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        we_initiator: bool,
        kind: CoreKind,
    ) -> Option<SaCore> {
        let old = self.cores.get(old_idx)?.keys.as_ref()?;
        let seed = rekey_skeyseed(old.suite.prf, old.sk_d.expose(), g_ir, ni, nr);
        let keys = IkeSaKeys::derive(&suite, seed.expose(), ni, nr, spi_i, spi_r).ok()?;
        let keys = CoreKeys::new(suite, keys, we_initiator).ok()?;
        let mut core = SaCore::new(spi_i, spi_r, we_initiator, kind);
        core.keys = Some(keys);
        Some(core)
    }

    /// Makes core `new` the current IKE SA; the previous current one
    /// becomes `old_kind`.
    fn switch_current(&mut self, now: Instant, new: usize, old_kind: CoreKind) {
        let linger = now + self.cfg.retransmit.total() * 2;
        for (i, c) in self.cores.iter_mut().enumerate() {
            if i == new {
                c.kind = CoreKind::Current;
                c.expire_at = None;
            } else if c.kind == CoreKind::Current {
                c.kind = old_kind.clone();
                c.expire_at = Some(linger);
            }
        }
        let cur = self.current();
        let (spi_i, spi_r) = (cur.spi_i, cur.spi_r);
        let Some(suite) = cur.keys.as_ref().map(|k| k.suite) else {
            return;
        };
        tracing::info!(
            spi_i = format_args!("{spi_i:016x}"),
            spi_r = format_args!("{spi_r:016x}"),
            %suite,
            "IKE SA rekeyed; CHILD_SAs moved to the new SA"
        );
        self.last_rekey = Some(now);
        self.arm_ike_lifetime(now);
        self.emit(Event::IkeRekeyed {
            spi_i,
            spi_r,
            suite,
        });
    }

    /// Responder side of an IKE SA rekey.
    pub(in crate::ike) fn respond_ike_rekey(
        &mut self,
        now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let reply = |sa: &mut IkeSa, n: NotifyPayload| {
            sa.send_response(
                idx,
                ExchangeType::CreateChildSa,
                header.message_id,
                bytes,
                &[Payload::Notify(n)],
                to,
            );
        };
        let own = self.cores[idx].pending.as_ref().map(|p| &p.req);
        let own_rekey = matches!(own, Some(Req::RekeyIke(_)));
        // 2.25.2: "If a peer receives a request to rekey an IKE SA that it
        // is currently trying to close, it SHOULD reply with
        // TEMPORARY_FAILURE"; we do the same while one of our CHILD_SA
        // exchanges is outstanding, or on an SA that is not the current one.
        if matches!(
            own,
            Some(Req::DeleteIke | Req::CreateChild(_) | Req::DeleteChild(_))
        ) || self.cores[idx].kind != CoreKind::Current
            || self.tasks.contains(&Task::DeleteIke)
        {
            reply(
                self,
                NotifyPayload::new(NotifyType::TemporaryFailure, vec![]),
            );
            return;
        }
        let Some(sa) = payloads.sa() else {
            reply(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
            return;
        };
        let wire: Vec<&crate::wire::Proposal> = sa
            .proposals
            .iter()
            .filter(|p| p.spi_u64().is_some_and(|s| s != 0))
            .collect();
        let offered: Vec<proposal::Proposal> = wire
            .iter()
            .filter_map(|w| message::from_wire(w, Protocol::Ike))
            .collect();
        let Some((i, suite)) = select_ike(&offered, &self.cfg.ike_proposals) else {
            let offered = proposal::display_list(&offered);
            let configured = self.ike_list();
            tracing::warn!(remote = %self.remote, %offered, %configured, "IKE rekey: no proposal chosen");
            self.emit(Event::NoProposalChosen {
                protocol: Protocol::Ike,
                offered,
                configured,
            });
            reply(
                self,
                NotifyPayload::new(NotifyType::NoProposalChosen, vec![]),
            );
            return;
        };
        let Some(w) = wire
            .iter()
            .filter(|w| message::from_wire(w, Protocol::Ike).is_some())
            .nth(i)
        else {
            return;
        };
        let (Some(peer_spi), number) = (w.spi_u64(), w.number) else {
            return;
        };
        let (Some(ke), Some(ni)) = (payloads.ke(), payloads.nonce()) else {
            reply(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
            return;
        };
        if !message::nonce_ok(ni) {
            reply(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
            return;
        }
        if crypto_group(ke.group) != Some(suite.dh) {
            reply(self, NotifyPayload::invalid_ke(wire_group(suite.dh)));
            return;
        }
        let dh = self.dh(suite.dh);
        let Ok(g_ir) = dh.shared_secret(&ke.data) else {
            reply(self, NotifyPayload::new(NotifyType::InvalidSyntax, vec![]));
            return;
        };
        let ni = ni.to_vec();
        let nr = self.nonce();
        let our_spi = self.random_spi64();
        let kind = if own_rekey {
            CoreKind::PeerCollision {
                ni: ni.clone(),
                nr: nr.clone(),
            }
        } else {
            CoreKind::Redundant // placeholder until switched to current below
        };
        let Some(core) = self.new_core(
            idx,
            suite,
            g_ir.expose(),
            &ni,
            &nr,
            peer_spi,
            our_spi,
            false,
            kind,
        ) else {
            return;
        };
        let out = [
            Payload::Sa(SaPayload {
                proposals: vec![message::to_wire(
                    &suite.to_proposal(),
                    number,
                    our_spi.to_be_bytes().to_vec(),
                )],
            }),
            Payload::Nonce(nr),
            Payload::Ke(KePayload {
                group: wire_group(suite.dh),
                data: dh.public_value().to_vec(),
            }),
        ];
        // The response goes out under the old SA's keys and Message IDs.
        self.send_response(
            idx,
            ExchangeType::CreateChildSa,
            header.message_id,
            bytes,
            &out,
            to,
        );
        self.cores.push(core);
        let new = self.cores.len() - 1;
        if own_rekey {
            tracing::info!("IKE SA rekey collision: answered the peer's rekey while ours is outstanding (RFC 7296 2.8.2)");
            self.cores[new].expire_at = Some(now + self.cfg.retransmit.total() * 2);
        } else {
            // The initiator of the rekey deletes the old SA.
            self.switch_current(now, new, CoreKind::Retiring);
        }
    }

    /// Our IKE SA rekey was answered.
    pub(in crate::ike) fn process_ike_rekey_response(
        &mut self,
        now: Instant,
        idx: usize,
        req: IkeRekeyReq,
        payloads: &[Payload],
    ) {
        let collision = self
            .cores
            .iter()
            .position(|c| matches!(c.kind, CoreKind::PeerCollision { .. }));
        if let Some(n) = payloads.error_notify() {
            let t = n.notify_type;
            if t == NotifyType::InvalidKePayload {
                if let Some(g) = n.invalid_ke_group().and_then(crypto_group) {
                    let offered = self.cfg.ike_proposals.iter().any(|p| p.dh.contains(&g));
                    if offered && req.ke_retries < MAX_RETRIES && collision.is_none() {
                        self.send_ike_rekey(now, g, req.ke_retries + 1);
                        return;
                    }
                }
            }
            if let Some(c) = collision {
                // Ours failed; the peer's survives (it deletes the old SA).
                self.switch_current(now, c, CoreKind::Retiring);
                return;
            }
            if t == NotifyType::TemporaryFailure {
                tracing::info!("IKE rekey: TEMPORARY_FAILURE: retrying later");
                self.retry_later(now, Task::RekeyIke);
            } else {
                tracing::warn!(notify = ?t, "IKE rekey refused by the peer");
                if t == NotifyType::NoProposalChosen {
                    self.emit(Event::NoProposalChosen {
                        protocol: Protocol::Ike,
                        offered: self.ike_list(),
                        configured: "(peer's)".into(),
                    });
                }
            }
            return;
        }
        let parsed = (|| {
            let sa = payloads.sa()?;
            let [w] = sa.proposals.as_slice() else {
                return None;
            };
            let peer_spi = w.spi_u64().filter(|s| *s != 0)?;
            let chosen = message::from_wire(w, Protocol::Ike)?;
            if !chosen.is_single_choice() {
                return None;
            }
            let (_, suite) = select_ike(&[chosen], &self.cfg.ike_proposals)?;
            let ke = payloads.ke()?;
            let nr = payloads.nonce().filter(|n| message::nonce_ok(n))?;
            if crypto_group(ke.group) != Some(suite.dh) || req.dh.group() != suite.dh {
                return None;
            }
            let g_ir = req.dh.shared_secret(&ke.data).ok()?;
            Some((peer_spi, suite, nr.to_vec(), g_ir))
        })();
        let Some((peer_spi, suite, nr, g_ir)) = parsed else {
            tracing::warn!("IKE rekey: unusable answer");
            if let Some(c) = collision {
                self.switch_current(now, c, CoreKind::Retiring);
            }
            return;
        };
        let Some(core) = self.new_core(
            idx,
            suite,
            g_ir.expose(),
            &req.ni,
            &nr,
            req.spi,
            peer_spi,
            true,
            CoreKind::Redundant,
        ) else {
            return;
        };
        self.cores.push(core);
        let ours = self.cores.len() - 1;
        let old_idx = idx;
        match collision {
            Some(c) => {
                let (pni, pnr) = match &self.cores[c].kind {
                    CoreKind::PeerCollision { ni, nr } => (ni.clone(), nr.clone()),
                    _ => return,
                };
                if lowest_is_ours([&req.ni, &nr], [&pni, &pnr]) {
                    // Ours is redundant: we created it, we delete it. The
                    // peer's survives; the peer deletes the old SA.
                    tracing::info!(
                        "IKE SA rekey collision: ours has the lowest nonce, deleting it"
                    );
                    self.cores[ours].expire_at = Some(now + self.cfg.retransmit.total() * 2);
                    self.switch_current(now, c, CoreKind::Retiring);
                    let d = [Payload::Delete(crate::wire::DeletePayload::ike())];
                    self.send_request(ours, ExchangeType::Informational, &d, Req::DeleteIke, now);
                } else {
                    tracing::info!(
                        "IKE SA rekey collision: the peer's has the lowest nonce; ours survives"
                    );
                    self.cores[c].kind = CoreKind::Redundant;
                    self.switch_current(now, ours, CoreKind::Retiring);
                    let d = [Payload::Delete(crate::wire::DeletePayload::ike())];
                    self.send_request(
                        old_idx,
                        ExchangeType::Informational,
                        &d,
                        Req::DeleteIke,
                        now,
                    );
                }
            }
            None => {
                self.switch_current(now, ours, CoreKind::Retiring);
                let d = [Payload::Delete(crate::wire::DeletePayload::ike())];
                self.send_request(
                    old_idx,
                    ExchangeType::Informational,
                    &d,
                    Req::DeleteIke,
                    now,
                );
            }
        }
    }

    /// Our Delete of an IKE SA was answered: for the current SA the tunnel
    /// is closed; for an old or redundant one, it is simply dropped.
    pub(in crate::ike) fn process_delete_ike_response(&mut self, idx: usize) {
        match self.cores.get(idx).map(|c| c.kind.clone()) {
            Some(CoreKind::Current) => self.close(CloseReason::DeletedLocally),
            Some(_) => {
                self.cores.remove(idx);
            }
            None => {}
        }
    }
}
