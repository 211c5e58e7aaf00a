//! INFORMATIONAL requests from the peer: liveness checks, Delete and
//! notifications (RFC 7296 1.4, 1.4.1, 2.4, 2.21.2; strongSwan's
//! `ike_dpd`, `ike_delete` and `child_delete` tasks).
//!
//! "The recipient of an INFORMATIONAL exchange request MUST send some
//! response ... That response MAY be an empty message. The request message
//! in an INFORMATIONAL exchange MAY also contain no payloads. This is the
//! expected way an endpoint can ask the other endpoint to verify that it is
//! alive." (1.4)
//!
//! Delete (1.4.1): "If an IKE SA is deleted, all CHILD_SAs ... are deleted
//! as well"; for ESP, "the responder ... MUST respond with the Delete
//! payloads for the paired SAs", except for SAs it is itself deleting
//! (2.25.1: "If a peer receives a request to close a Child SA that it is
//! currently trying to close, it SHOULD reply without a Delete payload").

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::sa::{
    AuthFailure, ChildDownReason, ChildState, CloseReason, CoreKind, Event, IkeSa, Phase,
};
use crate::wire::{DeletePayload, ExchangeType, HeaderRepr, NotifyType, Payload, ProtocolId};

impl IkeSa {
    /// An INFORMATIONAL request on IKE SA `idx`.
    pub(in crate::ike) fn process_informational_request(
        &mut self,
        _now: Instant,
        to: (SocketAddr, SocketAddr),
        idx: usize,
        header: HeaderRepr,
        bytes: &[u8],
        payloads: &[Payload],
    ) {
        let deletes: Vec<&DeletePayload> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Delete(d) => Some(d),
                _ => None,
            })
            .collect();
        // Delete of the IKE SA this message came on.
        if deletes.iter().any(|d| d.protocol == ProtocolId::Ike) {
            self.send_response(
                idx,
                ExchangeType::Informational,
                header.message_id,
                bytes,
                &[],
                to,
            );
            if self.cores[idx].kind == CoreKind::Current {
                tracing::info!(remote = %self.remote, "peer deleted the IKE SA");
                self.close(CloseReason::DeletedByPeer);
            } else {
                // An old or redundant SA after a rekey: only it goes.
                self.cores.remove(idx);
            }
            return;
        }
        // The peer refused our authentication after accepting IKE_AUTH's
        // exchange (2.21.2).
        let auth_failed = payloads.iter().any(|p| {
            matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::AuthenticationFailed)
        });
        if auth_failed {
            self.send_response(
                idx,
                ExchangeType::Informational,
                header.message_id,
                bytes,
                &[],
                to,
            );
            tracing::warn!(remote = %self.remote, "peer reports AUTHENTICATION_FAILED: it refused our identity or PSK");
            self.emit(Event::AuthFailed {
                reason: AuthFailure::RejectedByPeer,
            });
            self.close(CloseReason::AuthFailed);
            return;
        }
        // Deletes of CHILD_SAs: the SPIs are the peer's inbound ones, our
        // outbound ones.
        let mut ours = Vec::new();
        let mut gone = Vec::new();
        for d in deletes.iter().filter(|d| d.protocol == ProtocolId::Esp) {
            for spi in d.spis_u32() {
                let Some(c) = self.children.iter().find(|c| c.params.spi_out == spi) else {
                    continue;
                };
                let reason = match c.state {
                    ChildState::Deleting(r) => r,
                    ChildState::Rekeyed => ChildDownReason::Rekeyed,
                    _ => ChildDownReason::DeletedByPeer,
                };
                if !matches!(c.state, ChildState::Deleting(_)) {
                    ours.push(c.params.spi_in);
                }
                gone.push((c.params.spi_in, reason));
            }
        }
        let out = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(DeletePayload::child(
                ProtocolId::Esp,
                &ours,
            ))]
        };
        self.send_response(
            idx,
            ExchangeType::Informational,
            header.message_id,
            bytes,
            &out,
            to,
        );
        for (spi, reason) in gone {
            self.remove_child(spi, reason);
        }
        if self.phase == Phase::Established && self.children.is_empty() {
            tracing::info!("no CHILD_SA left on this IKE SA");
        }
    }
}
