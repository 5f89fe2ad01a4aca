//! Peers' messages on their way in and out: proof of life, urgent traffic (signing,
//! key tasks) handled at once, bulk traffic (stock generation) queued, messages for
//! an engine not built yet held until it is; and the engines' outboxes sent.

use super::Node;
use crate::blame::FailureKind;
use crate::engine::NodeMessage;
use crate::p2p::{Incoming, Network};
use primitives::DomainId;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use threshold::ParticipantId;

/// Bulk messages held at most; beyond it generation runs lose messages and time out.
const MAX_BACKLOG: usize = 1 << 16;

/// Messages held while this node has no engine for them yet (it has not seen the
/// key event, or the domain's key, that the sender has).
const MAX_UNROUTED: usize = 4096;

/// A decoded message from a peer, for one domain's engines.
struct PeerMessage {
    from: ParticipantId,
    domain: DomainId,
    message: NodeMessage,
}

/// A message no engine could take yet, with when it came.
struct Unrouted {
    since: Instant,
    message: PeerMessage,
}

/// Peer messages not handled yet.
#[derive(Default)]
pub(super) struct Inbox {
    /// Bulk peer messages (stock generation), one handled per loop turn.
    backlog: VecDeque<PeerMessage>,
    /// Messages that came before this node had an engine for them (it saw the
    /// key event or the domain's key later than the sender); tried again whenever
    /// engines are rebuilt, dropped after the protocol timeout.
    unrouted: VecDeque<Unrouted>,
}

impl Inbox {
    /// Whether bulk messages are waiting for their turn.
    pub(super) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }
}

impl Node {
    /// Hands the messages held for want of an engine to the engines there are now.
    pub(super) fn route_unrouted(&mut self) {
        let timeout = self.config.protocol_timeout;
        for held in std::mem::take(&mut self.inbox.unrouted) {
            if held.since.elapsed() <= timeout {
                self.route(held.since, held.message);
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
        let message = PeerMessage {
            from,
            domain,
            message,
        };
        if message.message.is_urgent() {
            self.handle(message);
        } else if self.inbox.backlog.len() < MAX_BACKLOG {
            self.inbox.backlog.push_back(message);
        } else {
            tracing::warn!(peer = from.0, "backlog full; dropped a generation message");
        }
    }

    /// Handles the oldest bulk message, if any.
    pub(super) fn work_backlog(&mut self) {
        if let Some(message) = self.inbox.backlog.pop_front() {
            self.handle(message);
        }
    }

    /// Routes a message to its domain's engine: key-task traffic to the key engine,
    /// everything else to the signing engine.
    fn handle(&mut self, message: PeerMessage) {
        self.route(Instant::now(), message);
    }

    /// [`Node::handle`] for a message that came at `since`: one for an engine this
    /// node does not have yet is held (see `Inbox::unrouted`).
    fn route(&mut self, since: Instant, message: PeerMessage) {
        let engine = if message.message.is_key_event() {
            self.keyers.get_mut(&message.domain)
        } else {
            self.signers.get_mut(&message.domain).map(|s| &mut s.engine)
        };
        let Some(engine) = engine else {
            if self.inbox.unrouted.len() < MAX_UNROUTED {
                self.inbox.unrouted.push_back(Unrouted { since, message });
            }
            return;
        };
        let PeerMessage {
            from,
            domain,
            message,
        } = message;
        if let Err(e) = engine.handle_message(from, message) {
            tracing::debug!(peer = from.0, domain = domain.0, error = %e, "ignored a peer message");
        }
    }

    /// Sends what the engines wrote: the one place frames leave the node.
    pub(super) fn send_outboxes(&mut self, network: &Network) {
        let signers = self.signers.values_mut().map(|s| &mut s.engine);
        let frames: Vec<(ParticipantId, Vec<u8>)> = signers
            .chain(self.keyers.values_mut())
            .flat_map(|engine| engine.drain_outbox())
            .collect();
        #[cfg(feature = "misbehave")]
        let frames = match self.misbehave.as_mut() {
            Some(m) => m.outgoing(frames),
            None => frames,
        };
        for (to, bytes) in frames {
            if let Err(e) = network.send(to, Arc::new(bytes)) {
                tracing::debug!(peer = to.0, error = %e, "could not queue a message");
            }
        }
    }
}
