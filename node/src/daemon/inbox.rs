//! Peers' messages on their way in: proof of life, urgent traffic (signing, key
//! tasks) handled at once, bulk traffic (stock generation) queued, and messages for
//! an engine not built yet held until it is.

use super::Node;
use crate::blame::FailureKind;
use crate::engine::NodeMessage;
use crate::p2p::Incoming;
use primitives::DomainId;
use std::time::Instant;
use threshold::ParticipantId;

/// Bulk messages held at most; beyond it generation runs lose messages and time out.
pub(super) const MAX_BACKLOG: usize = 1 << 16;

/// Messages held while this node has no engine for them yet (it has not seen the
/// key event, or the domain's key, that the sender has).
pub(super) const MAX_UNROUTED: usize = 4096;

impl Node {
    /// Hands the messages held for want of an engine to the engines there are now.
    pub(super) fn route_unrouted(&mut self) {
        let timeout = self.config.protocol_timeout;
        for (since, from, domain, message) in std::mem::take(&mut self.unrouted) {
            if since.elapsed() <= timeout {
                self.route(since, from, domain, message);
            }
        }
    }

    /// A message from a peer: proof of life, then handled at once if urgent
    /// (signing, key tasks, heartbeats), else queued behind earlier bulk traffic.
    pub(super) fn on_message(&mut self, incoming: Incoming) {
        let from = incoming.from;
        self.last_heard.insert(from, Instant::now());
        let (domain, message) = match NodeMessage::decode(&incoming.message) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::debug!(peer = from.0, error = %e, "ignored a peer message");
                // The transport authenticated the sender: these bytes are its own.
                self.peer_failed(from, FailureKind::Malformed, &e.to_string(), Instant::now());
                return;
            }
        };
        if message == NodeMessage::Ping {
            return;
        }
        #[cfg(feature = "misbehave")]
        let Some(message) = (match self.misbehave.as_mut() {
            Some(m) => m.incoming(from, domain, message),
            None => Some(message),
        }) else {
            return;
        };
        if message.is_urgent() {
            self.handle(from, domain, message);
        } else if self.backlog.len() < MAX_BACKLOG {
            self.backlog.push_back((from, domain, message));
        } else {
            tracing::warn!(peer = from.0, "backlog full; dropped a generation message");
        }
    }

    pub(super) fn work_backlog(&mut self) {
        if let Some((from, domain, message)) = self.backlog.pop_front() {
            self.handle(from, domain, message);
        }
    }

    /// Routes a message to its domain's engine: key-task traffic to the key engine,
    /// everything else to the signing engine.
    pub(super) fn handle(&mut self, from: ParticipantId, domain: DomainId, message: NodeMessage) {
        self.route(Instant::now(), from, domain, message);
    }

    /// [`Node::handle`] for a message that came at `since`: one for an engine this
    /// node does not have yet is held (see `Node::unrouted`).
    pub(super) fn route(
        &mut self,
        since: Instant,
        from: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) {
        let engine = if message.is_key_event() {
            self.keyers.get_mut(&domain)
        } else {
            self.signers.get_mut(&domain).map(|s| &mut s.engine)
        };
        let Some(engine) = engine else {
            if self.unrouted.len() < MAX_UNROUTED {
                self.unrouted.push_back((since, from, domain, message));
            }
            return;
        };
        if let Err(e) = engine.handle_message(from, message) {
            tracing::debug!(peer = from.0, domain = domain.0, error = %e, "ignored a peer message");
        }
    }
}
