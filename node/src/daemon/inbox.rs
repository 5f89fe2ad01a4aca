//! Peers' messages on their way in and out: proof of life, urgent traffic (signing,
//! key tasks) handled at once, bulk traffic (stock generation) queued, messages for
//! an engine not built yet held until it is; and the engines' outboxes sent.

use super::Node;
use crate::blame::FailureKind;
use crate::engine::NodeMessage;
use crate::p2p::budget::Charge;
use crate::p2p::{Incoming, Network, SendError};
use primitives::{DomainId, RequestId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use threshold::ParticipantId;

/// A decoded message from a peer, for one domain's engines, holding its share of
/// the sender's byte budget (`p2p::budget`) until it is handled or dropped.
struct PeerMessage {
    from: ParticipantId,
    domain: DomainId,
    message: NodeMessage,
    charge: Charge,
}

/// A message no engine could take yet, with when it came.
struct Unrouted {
    since: Instant,
    message: PeerMessage,
}

/// Peer messages not handled yet. No count limits: every message holds its
/// sender's byte budget, so what one peer has here is bounded by its budget.
#[derive(Default)]
pub(super) struct Inbox {
    /// Bulk peer messages (stock generation), one handled per loop turn, per
    /// sender, served in turn: one peer's flood never queues ahead of another's
    /// traffic.
    backlog: BTreeMap<ParticipantId, VecDeque<PeerMessage>>,
    /// The sender whose bulk message was handled last.
    backlog_turn: Option<ParticipantId>,
    /// Messages that came before this node had an engine for them (it saw the
    /// key event or the domain's key later than the sender); tried again whenever
    /// engines are rebuilt, dropped after the protocol timeout.
    unrouted: VecDeque<Unrouted>,
    /// Peers to cut off (over budget somewhere), at the next turn with a network.
    pub(super) to_cut_off: BTreeSet<ParticipantId>,
}

impl Inbox {
    /// Whether bulk messages are waiting for their turn.
    pub(super) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// The next bulk message, of the sender after the one served last.
    fn next_bulk(&mut self) -> Option<PeerMessage> {
        use std::ops::Bound::{Excluded, Unbounded};
        while !self.backlog.is_empty() {
            let after = self
                .backlog_turn
                .and_then(|last| self.backlog.range((Excluded(last), Unbounded)).next());
            let from = after.or(self.backlog.iter().next()).map(|(p, _)| *p)?;
            self.backlog_turn = Some(from);
            let queue = self.backlog.get_mut(&from)?;
            let next = queue.pop_front();
            if queue.is_empty() {
                self.backlog.remove(&from);
            }
            if let Some(message) = next.filter(|m| m.charge.is_current()) {
                return Some(message);
            }
        }
        None
    }

    /// Drops what senders cut off since it came still hold here.
    fn drop_stale(&mut self) {
        for queue in self.backlog.values_mut() {
            queue.retain(|m| m.charge.is_current());
        }
        self.backlog.retain(|_, queue| !queue.is_empty());
        self.unrouted
            .retain(|held| held.message.charge.is_current());
    }
}

impl Node {
    /// Drops held messages older than the protocol timeout, with their charges on
    /// their senders' budgets (engines may not be rebuilt for a long time).
    pub(super) fn expire_unrouted(&mut self, now: Instant) {
        let timeout = self.config.protocol_timeout;
        self.inbox
            .unrouted
            .retain(|held| now.saturating_duration_since(held.since) <= timeout);
    }

    /// Hands the messages held for want of an engine to the engines there are now.
    pub(super) fn route_unrouted(&mut self) {
        let timeout = self.config.protocol_timeout;
        for held in std::mem::take(&mut self.inbox.unrouted) {
            if held.since.elapsed() <= timeout && held.message.charge.is_current() {
                self.route(held.since, held.message);
            }
        }
    }

    /// A message from a peer: proof of life, then handled at once if urgent
    /// (signing, key tasks, heartbeats), else queued behind earlier bulk traffic.
    pub(super) fn on_message(&mut self, incoming: Incoming) {
        let from = incoming.from;
        if !incoming.charge.is_current() {
            return; // queued before its sender was cut off
        }
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
        if let NodeMessage::Answer {
            request_id,
            response,
        } = message
        {
            self.take_shared_answer(from, domain, RequestId(request_id), response);
            return;
        }
        if let NodeMessage::Leading(request_id) | NodeMessage::Passing(request_id) = message {
            self.heard_of_lead(from, RequestId(request_id), &message, Instant::now());
            return;
        }
        if let NodeMessage::StoredTriple(_) | NodeMessage::StoredPresignature(_) = message {
            // A holder confirmed a share of ours: the record may be usable now.
            self.act_soon = true;
        }
        let message = PeerMessage {
            from,
            domain,
            message,
            charge: incoming.charge,
        };
        if message.message.is_urgent() {
            self.handle(message);
        } else {
            self.inbox
                .backlog
                .entry(from)
                .or_default()
                .push_back(message);
        }
    }

    /// Handles one bulk message, of the sender after the one served last.
    pub(super) fn work_backlog(&mut self) {
        if let Some(message) = self.inbox.next_bulk() {
            self.handle(message);
        }
    }

    /// Cuts off the peers found over budget (by the network, or by an engine's
    /// early-message buffer), blames them, and discards what they have queued
    /// here; other peers' messages stay.
    pub(super) fn enforce_budgets(&mut self, network: &Network) {
        let now = Instant::now();
        let cut_by_network = network.take_over_budget();
        for peer in &cut_by_network {
            self.peer_failed(
                *peer,
                FailureKind::OverBudget,
                "sent more than its byte budget",
                now,
            );
            // The network cut it off already.
            self.inbox.to_cut_off.remove(peer);
        }
        if cut_by_network.is_empty() && self.inbox.to_cut_off.is_empty() {
            return;
        }
        for peer in std::mem::take(&mut self.inbox.to_cut_off) {
            network.cut_off(peer);
        }
        self.inbox.drop_stale();
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
            self.inbox.unrouted.push_back(Unrouted { since, message });
            return;
        };
        let PeerMessage {
            from,
            domain,
            message,
            ..
        } = message;
        if let Err(e) = engine.handle_message(from, message) {
            tracing::debug!(peer = from.0, domain = domain.0, error = %e, "ignored a peer message");
        }
    }

    /// Sends what the engines wrote: the one place frames leave the node.
    pub(super) fn send_outboxes(&mut self, network: &Network) {
        let signers = self.signers.values_mut().map(|s| &mut s.engine);
        let mut frames: Vec<(ParticipantId, Vec<u8>)> = signers
            .chain(self.keyers.values_mut())
            .flat_map(|engine| engine.drain_outbox())
            .collect();
        for (domain, word) in std::mem::take(&mut self.announce) {
            let word = word.encode(domain);
            let peers = self.everyone.iter().filter(|p| Some(**p) != self.me);
            frames.extend(peers.map(|peer| (*peer, word.clone())));
        }
        #[cfg(feature = "misbehave")]
        let frames = match self.misbehave.as_mut() {
            Some(m) => m.outgoing(frames),
            None => frames,
        };
        for (to, bytes) in frames {
            let decoded = NodeMessage::decode(&bytes).ok();
            // Stock traffic goes in the peer's bulk queue, behind everything
            // someone waits for (heartbeats, signing, key tasks, confirmations).
            let urgent = decoded.as_ref().is_none_or(|(_, m)| m.is_urgent());
            let queued = if urgent {
                network.send(to, Arc::new(bytes))
            } else {
                network.send_bulk(to, Arc::new(bytes))
            };
            match (queued, decoded) {
                (Ok(()), _) => {}
                (Err(SendError::QueueFull(_)), Some((domain, message))) => {
                    self.message_refused(to, domain, &message)
                }
                (Err(e), _) => {
                    tracing::debug!(peer = to.0, error = %e, "could not queue a message")
                }
            }
        }
    }

    /// A message to `to` found its queue full: the run it belongs to, which
    /// would wait for `to` until the stall rule, ends now.
    fn message_refused(&mut self, to: ParticipantId, domain: DomainId, message: &NodeMessage) {
        let ended = self
            .signers
            .get_mut(&domain)
            .is_some_and(|signer| signer.engine.unsent(to, message));
        if ended {
            tracing::warn!(
                peer = to.0,
                domain = domain.0,
                "the queue to a peer is full: a run with it ended"
            );
        } else {
            tracing::debug!(peer = to.0, "could not queue a message: the queue is full");
        }
    }
}

#[cfg(feature = "misbehave")]
impl Node {
    /// A test build's `flood` misbehaviour: its own connection to one peer at a
    /// time, each in turn, written at full speed (see `misbehave::flood`), once this node holds every
    /// key and no key event is under way (a flooder cut off during one would only
    /// stall the key event, which needs everyone, not test what §8 is about).
    pub(super) fn start_flood(&mut self, cancel: &tokio_util::sync::CancellationToken) {
        let flooding = self.misbehave.as_ref().map(|m| m.behaviour())
            == Some(crate::misbehave::Behaviour::Flood);
        let keyed = self.keyers.is_empty()
            && !self.signers.is_empty()
            && self.signers.values().all(|s| s.engine.has_key());
        let Some(me) = self.me.filter(|_| flooding && keyed && !self.flood_started) else {
            return;
        };
        self.flood_started = true;
        let config = self.network_config(me);
        tokio::spawn(crate::misbehave::flood(
            me,
            self.peers.clone(),
            config.key,
            config.prologue,
            cancel.child_token(),
        ));
    }
}
