//! What nodes say to each other: a frame names the domain (so each domain's engine
//! gets its own traffic), then a [`NodeMessage`] in borsh.

use super::EngineError;
use crate::record_id::RecordId;
use borsh::{BorshDeserialize, BorshSerialize};
use primitives::{DomainId, SignatureResponse};
use threshold::ParticipantId;

/// Version byte of the node's peer message format (4: `Leading`, `Passing`,
/// `Waiting` and `Abandoned` added; 5: `Answer`; a node refuses frames of any
/// other version, so nodes of different versions do not take each other's
/// messages).
const MESSAGE_VERSION: u8 = 5;

/// A message between the engines of one domain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum NodeMessage {
    /// Join a protocol run.
    Start(Start),
    /// A message of a running protocol (threshold wire format).
    Protocol(Vec<u8>),
    /// A heartbeat: says the sender is up. Peers count who is live from these.
    Ping,
    /// To a proposer: this node will not join `job` (and why), so the proposer
    /// ends the run now instead of at the timeout.
    Decline { job: Job, reason: String },
    /// To the owner: this node has stored its share of triple `id`.
    StoredTriple(RecordId),
    /// To the owner: this node has stored its share of presignature `id`.
    StoredPresignature(RecordId),
    /// From the owner: triple `id` was used without this holder; drop its share.
    RetireTriple(RecordId),
    /// From the owner: presignature `id` was used without this holder; drop it.
    RetirePresignature(RecordId),
    /// To every peer: the sender leads request `0` now (it started signing it).
    /// Handled by the daemon, whose fallback leaders then hold back (see
    /// `daemon/leader.rs`).
    Leading([u8; 32]),
    /// To every peer: request `0`'s turn came to the sender, which has no usable
    /// presignature for it, so the next live node in its leader order may lead it
    /// at once (see `daemon/leader.rs`).
    Passing([u8; 32]),
    /// To the run's other participants: the sender's instance of `job` has taken
    /// every message it got, sent all it could, and waited so for a while. Nobody
    /// counts it behind in that run after this (see `engine/judge.rs`).
    Waiting(Job),
    /// To the run's other participants: the sender's instance of `job` ended
    /// without output (a check failed, a peer declined or went, the run stalled),
    /// so it sends nothing more there; nobody counts it behind after this.
    Abandoned { job: Job, reason: String },
    /// To every peer, from a leader whose run signed request `request_id`: the
    /// answer it sends to the contract. A peer checks it against the request
    /// as it read it on the chain, then holds it: it leads the request no more
    /// and sends the answer itself only if the leader's does not land (see
    /// `daemon/requests.rs`).
    Answer {
        request_id: [u8; 32],
        response: SignatureResponse,
    },
}

impl NodeMessage {
    /// Whether the message should jump the queue: heartbeats and everything of
    /// signing and key tasks, which someone is waiting for, go before the bulk
    /// traffic of stock generation.
    pub fn is_urgent(&self) -> bool {
        match self {
            // A run's notices go in the queue of its traffic, after its messages:
            // an abandon must not overtake the invitation it is about.
            NodeMessage::Start(Start { job, .. })
            | NodeMessage::Waiting(job)
            | NodeMessage::Abandoned { job, .. } => {
                !matches!(job, Job::Triple { .. } | Job::Presign { .. })
            }
            NodeMessage::Protocol(message) => threshold::wire::Header::decode(message)
                // Refused at once, whatever it was.
                .map_or(true, |(header, _)| !header.kind.is_stock()),
            NodeMessage::Ping
            | NodeMessage::Decline { .. }
            | NodeMessage::StoredTriple(_)
            | NodeMessage::StoredPresignature(_)
            | NodeMessage::RetireTriple(_)
            | NodeMessage::RetirePresignature(_)
            | NodeMessage::Leading(_)
            | NodeMessage::Passing(_)
            | NodeMessage::Answer { .. } => true,
        }
    }

    /// Whether the message belongs to a key event's run (keygen, resharing).
    pub fn is_key_event(&self) -> bool {
        match self {
            NodeMessage::Start(start) => start.job.attempt().is_some(),
            NodeMessage::Decline { job, .. }
            | NodeMessage::Waiting(job)
            | NodeMessage::Abandoned { job, .. } => job.attempt().is_some(),
            NodeMessage::Protocol(bytes) => threshold::wire::Header::decode(bytes)
                .is_ok_and(|(header, _)| header.kind.is_key_event()),
            _ => false,
        }
    }

    /// The frame of this message for `domain`'s engines.
    pub fn encode(&self, domain: DomainId) -> Vec<u8> {
        let mut out = vec![MESSAGE_VERSION];
        out.extend(domain.0.to_be_bytes());
        BorshSerialize::serialize(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Reads a frame: the domain it is for, and the message.
    pub fn decode(bytes: &[u8]) -> Result<(DomainId, Self), EngineError> {
        let (version, rest) = bytes
            .split_first()
            .ok_or_else(|| EngineError::Malformed("empty message".into()))?;
        if *version != MESSAGE_VERSION {
            return Err(EngineError::Malformed(format!(
                "unknown message version {version}"
            )));
        }
        let (domain, body) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| EngineError::Malformed("no domain".into()))?;
        let message =
            NodeMessage::try_from_slice(body).map_err(|e| EngineError::Malformed(e.to_string()))?;
        Ok((DomainId(u64::from_be_bytes(*domain)), message))
    }
}

/// A proposer's invitation to a protocol run.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Start {
    /// The epoch the run belongs to; nodes in another epoch refuse it.
    pub epoch: u64,
    pub participants: Vec<ParticipantId>,
    pub job: Job,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Job {
    /// Generate `domain`'s key in `epoch`, in the contract's key-event attempt
    /// `attempt`: each attempt is a fresh instance.
    Keygen {
        epoch: u64,
        domain: u64,
        attempt: u64,
    },
    /// Reshare `domain`'s key (`public_key`, as the contract shows it) into
    /// `epoch` in the contract's attempt `attempt`; the new participants are the
    /// run's. `facts`: what newcomers need to know about the old key (see
    /// [`super::Scheme::reshare_facts`]).
    Reshare {
        epoch: u64,
        domain: u64,
        old_participants: Vec<ParticipantId>,
        old_threshold: u32,
        public_key: String,
        facts: Vec<u8>,
        attempt: u64,
    },
    Triple {
        id: RecordId,
    },
    /// A presignature made from the proposer's `triples` (none for schemes
    /// without triples).
    Presign {
        id: RecordId,
        triples: Vec<RecordId>,
    },
    Sign {
        request_id: [u8; 32],
        presignature: RecordId,
    },
}

impl Job {
    /// The key-event attempt of a key job (`None` for stock and signing jobs).
    pub fn attempt(&self) -> Option<u64> {
        match self {
            Job::Keygen { attempt, .. } | Job::Reshare { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }
}

/// The most characters of a peer's text (a `Decline` reason) that reach our logs.
const MAX_PEER_TEXT: usize = 200;

/// A peer's text as it may appear in our logs: control characters (newlines, escape
/// sequences) replaced, and cut to [`MAX_PEER_TEXT`] characters, so a peer can
/// neither forge log lines nor flood them.
pub fn peer_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_PEER_TEXT)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_PEER_TEXT).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_or_flood_log_lines() {
        assert_eq!(peer_text("no stock"), "no stock");
        assert_eq!(
            peer_text("ok\n2026-01-01 INFO forged line\x1b[31m"),
            "ok\u{fffd}2026-01-01 INFO forged line\u{fffd}[31m"
        );
        let long = "x".repeat(10_000);
        let cut = peer_text(&long);
        assert_eq!(cut.chars().count(), MAX_PEER_TEXT + 1);
        assert!(cut.ends_with('…'));
    }

    /// Typed ids changed no byte of the wire (so `MESSAGE_VERSION` stayed): a
    /// participant id is the `u32`, a record id the `u64`, as before.
    #[test]
    fn typed_ids_keep_the_wire_bytes() {
        let (p1, p2) = (ParticipantId(1), ParticipantId(2));
        let (id, triple) = (RecordId::new(p1, 9), RecordId::new(p1, 7));
        let start = Start {
            epoch: 4,
            participants: vec![p1, p2],
            job: Job::Presign {
                id,
                triples: vec![triple],
            },
        };
        // Presign is `Job`'s fourth variant (tag 3), RetireTriple `NodeMessage`'s seventh (6).
        let untyped = (4u64, vec![1u32, 2], 3u8, id.to_u64(), vec![triple.to_u64()]);
        assert_eq!(
            borsh::to_vec(&start).unwrap(),
            borsh::to_vec(&untyped).unwrap()
        );
        assert_eq!(
            borsh::to_vec(&NodeMessage::RetireTriple(id)).unwrap(),
            borsh::to_vec(&(6u8, id.to_u64())).unwrap()
        );
    }

    #[test]
    fn frames_name_their_domain_and_refuse_garbage() {
        let message = NodeMessage::StoredTriple(RecordId::new(ParticipantId(1), 7));
        let frame = message.encode(DomainId(1));
        assert_eq!(NodeMessage::decode(&frame).unwrap(), (DomainId(1), message));
        assert!(NodeMessage::decode(&[]).is_err());
        assert!(NodeMessage::decode(&[2, 0]).is_err());
        assert!(NodeMessage::decode(&frame[..5]).is_err());
        assert!(NodeMessage::decode(&[MESSAGE_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 99]).is_err());
    }
}
