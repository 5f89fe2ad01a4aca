//! A node that misbehaves on purpose, for tests of DESIGN §8 (one bad node must
//! not stop the network). Compiled only with the `misbehave` cargo feature, which
//! no default or release build enables; chosen at start by the environment
//! variable `MPC_MISBEHAVE`:
//!
//! - `decline`: declines every invitation to a stock or signing run (it still
//!   leads runs of its own);
//! - `silent`: sends heartbeats and nothing else, so the others think it live and
//!   invite it to runs that then wait on it;
//! - `garbage`: sends the first message of every stock or signing run as it
//!   should, then garbage in place of the protocol messages that follow;
//! - `flood`: behaves, and once it holds every key (no key event under way) opens
//!   its own connection to one peer and writes to it at full loopback speed:
//!   mostly valid-looking stock messages of runs that do not exist (each a fresh
//!   instance, 60 KB, which the receiver must hold until it gives up on them), and
//!   every 16th frame garbage. Cut off, it floods the next peer at once (one
//!   victim at a time, each in turn);
//! - `wrong`: sends the first message of every stock or signing run as it should,
//!   then well-formed, authenticated protocol messages with the wrong content in
//!   place of the ones that follow, in turn: its first message of the run again
//!   (a stale round), the right message with its body altered, and the message
//!   under the header of another of its runs with that peer (or, if none, under
//!   another protocol kind);
//! - `replay`: takes part honestly, and besides sends old frames it sent before
//!   again, later: to their first recipient, to another peer, re-addressed into a
//!   run under way (an old body under a current header), and old invitations;
//! - `withhold`: honest in stock and signing, but in key generation and
//!   resharing holds back each protocol message to a peer until its next one to
//!   that peer, so its last message of a run reaches nobody but one peer (another
//!   one each run): that peer finishes and stores a share of an attempt that can
//!   never complete, the others wait.
//!
//! Key-event traffic (key generation, resharing) is left alone but by `withhold`:
//! without a key the network would not exist, and what the tests measure is
//! signing under load.
//! Everything happens where frames leave the node and where they come in, so the
//! engine itself is the honest one.

use crate::engine::NodeMessage;
use primitives::DomainId;
use rand::RngCore;
use std::collections::{HashMap, HashSet, VecDeque};
use threshold::wire::{Header, ProtocolKind, HEADER_LEN};
use threshold::ParticipantId;

/// The variable that picks a behaviour.
pub const ENV: &str = "MPC_MISBEHAVE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Decline,
    Silent,
    Garbage,
    Flood,
    Wrong,
    Replay,
    Withhold,
}

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decline" => Ok(Behaviour::Decline),
            "silent" => Ok(Behaviour::Silent),
            "garbage" => Ok(Behaviour::Garbage),
            "flood" => Ok(Behaviour::Flood),
            "wrong" => Ok(Behaviour::Wrong),
            "replay" => Ok(Behaviour::Replay),
            "withhold" => Ok(Behaviour::Withhold),
            other => Err(format!(
                "unknown {ENV} behaviour `{other}` \
                 (decline, silent, garbage, flood, wrong, replay or withhold)"
            )),
        }
    }
}

/// (instance, recipient) pairs whose first message went out, kept at most (then forgotten
/// all at once: a few more honest first messages do not matter).
const MAX_TRACKED: usize = 1 << 14;

pub struct Misbehave {
    behaviour: Behaviour,
    /// Replies this node makes up itself (declines), to send with the engines' frames.
    replies: Vec<(ParticipantId, Vec<u8>)>,
    /// (protocol instance, recipient) pairs whose first message went out.
    started: HashSet<([u8; 32], u32)>,
    /// What `wrong`, `replay` and `withhold` remember (see [`Memory`]).
    memory: Memory,
}

/// Old frames `replay` keeps to send again.
const MAX_HISTORY: usize = 1024;
/// Frames sent since a frame went out before `replay` sends it again.
const REPLAY_AGE: usize = 64;
/// `replay` sends an old frame with every this many protocol messages.
const REPLAY_EVERY: u64 = 3;

/// The state of the behaviours that play with messages they sent before.
#[derive(Default)]
struct Memory {
    /// Protocol messages handed out so far (turns the variants).
    count: u64,
    /// `wrong`: the first message of each (instance, recipient) pair.
    first: HashMap<([u8; 32], u32), Vec<u8>>,
    /// `wrong`: per recipient, the header of the last stock or signing run it was
    /// sent a message of.
    last_header: HashMap<u32, [u8; HEADER_LEN]>,
    /// `replay`: frames sent (recipient, domain, message), oldest first.
    history: VecDeque<(ParticipantId, DomainId, NodeMessage)>,
    /// `withhold`: per (instance, recipient), the key-event frame held back.
    held: HashMap<([u8; 32], u32), Vec<u8>>,
    /// `withhold`: the key-event runs seen, each with the peer that gets its last
    /// message (turning, so every peer is left waiting in some runs).
    lucky: HashMap<[u8; 32], usize>,
}

impl Misbehave {
    /// The behaviour `MPC_MISBEHAVE` names, if any.
    pub fn from_env() -> Result<Option<Misbehave>, String> {
        let Ok(value) = std::env::var(ENV) else {
            return Ok(None);
        };
        if value.is_empty() {
            return Ok(None);
        }
        let behaviour: Behaviour = value.parse()?;
        Ok(Some(Misbehave {
            behaviour,
            replies: Vec::new(),
            started: HashSet::new(),
            memory: Memory::default(),
        }))
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// An incoming message: returns it if the engine should see it, else `None`
    /// (a decline went into the replies instead).
    pub fn incoming(
        &mut self,
        from: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) -> Option<NodeMessage> {
        match (self.behaviour, message) {
            (Behaviour::Decline, NodeMessage::Start(start)) if start.job.attempt().is_none() => {
                let decline = NodeMessage::Decline {
                    job: start.job,
                    reason: "this node declines everything (test misbehaviour)".into(),
                };
                self.replies.push((from, decline.encode(domain)));
                None
            }
            (_, message) => Some(message),
        }
    }

    /// Frames about to leave the node, as this behaviour would send them.
    pub fn outgoing(
        &mut self,
        frames: Vec<(ParticipantId, Vec<u8>)>,
    ) -> Vec<(ParticipantId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.replies);
        for (to, frame) in frames {
            let Ok((domain, message)) = NodeMessage::decode(&frame) else {
                continue;
            };
            if self.behaviour == Behaviour::Withhold {
                out.extend(self.withhold(to, frame, &message));
                continue;
            }
            if message.is_key_event() || message == NodeMessage::Ping {
                out.push((to, frame));
                continue;
            }
            match self.behaviour {
                Behaviour::Decline | Behaviour::Flood => out.push((to, frame)),
                Behaviour::Silent => {}
                Behaviour::Garbage => {
                    out.push((to, self.garble(to, domain, message).unwrap_or(frame)));
                }
                Behaviour::Wrong => {
                    out.push((to, self.wrong(to, domain, message).unwrap_or(frame)));
                }
                Behaviour::Replay => {
                    out.extend(self.replay(to, domain, message));
                    out.push((to, frame));
                }
                // Handled above, with the key-event traffic it is about.
                Behaviour::Withhold => out.push((to, frame)),
            }
        }
        out
    }

    /// Garbage in place of a protocol message that is not its run's first.
    fn garble(
        &mut self,
        to: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) -> Option<Vec<u8>> {
        let NodeMessage::Protocol(bytes) = message else {
            return None;
        };
        let (header, _) = threshold::wire::Header::decode(&bytes).ok()?;
        if self.started.len() >= MAX_TRACKED {
            self.started.clear();
        }
        if self.started.insert((header.instance.0, to.0)) {
            return None; // the run's first message to `to`: honest, so the run gets going
        }
        let mut garbage = vec![0u8; bytes.len()];
        rand::rngs::OsRng.fill_bytes(&mut garbage);
        // A format version nobody speaks: the header cannot decode by chance.
        garbage[0] = 0xff;
        Some(NodeMessage::Protocol(garbage).encode(domain))
    }
}

/// The payload of a flood's valid-looking frames: as large as a real triple
/// message, so the receiver's buffers fill as fast as the link allows.
const FLOOD_PAYLOAD: usize = 60_000;

/// The `flood` behaviour's connections: dials one other participant at a time
/// with this node's own key (so the victim knows exactly who it is) and writes
/// frames until `cancel`; when that victim cuts it off (or refuses it), it dials
/// the next participant at once, in id order, round and round, so every honest
/// node meets the flood in turn while the flooder's own cost stays that of one
/// connection.
pub async fn flood(
    me: ParticipantId,
    peers: crate::p2p::Peers,
    key: crate::p2p::noise::StaticKey,
    prologue: Vec<u8>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut sent: u64 = 0;
    let mut connections: u64 = 0;
    let mut turn: usize = 0;
    while !cancel.is_cancelled() {
        let others: Vec<ParticipantId> = peers.ids().into_iter().filter(|p| *p != me).collect();
        let target = others.get(turn % others.len().max(1)).copied();
        turn = turn.wrapping_add(1);
        let Some((target, info)) = target.and_then(|p| peers.get(p).map(|info| (p, info))) else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        };
        let connect = async {
            let stream = tokio::net::TcpStream::connect(&info.address).await?;
            crate::p2p::noise::Sender::handshake(stream, &key, &prologue, &info.key).await
        };
        let mut sender = tokio::select! {
            _ = cancel.cancelled() => return,
            connected = connect => match connected {
                Ok(sender) => sender,
                Err(_) => {
                    // Refused (still cut off there): the next peer's turn.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connections += 1;
        tracing::warn!(
            target = target.0,
            connections,
            sent,
            "flooding a peer (test misbehaviour)"
        );
        loop {
            let frame = flood_frame(sent);
            tokio::select! {
                _ = cancel.cancelled() => return,
                written = sender.send(&frame) => if written.is_err() {
                    break;
                },
            }
            sent += 1;
        }
    }
}

/// The `n`-th frame of a flood.
fn flood_frame(n: u64) -> Vec<u8> {
    let mut rng = rand::rngs::OsRng;
    if n % 16 == 15 {
        let mut garbage = vec![0u8; 1024];
        rng.fill_bytes(&mut garbage);
        return garbage;
    }
    let mut instance = [0u8; 32];
    rng.fill_bytes(&mut instance);
    let header = threshold::wire::Header {
        kind: threshold::wire::ProtocolKind::Triple,
        instance: threshold::InstanceId(instance),
    };
    NodeMessage::Protocol(header.encode(&[0u8; FLOOD_PAYLOAD])).encode(DomainId::LEGACY_ECDSA)
}
impl Misbehave {
    /// `wrong`: a well-formed protocol message with the wrong content in place of
    /// one that is not its run's first to `to` (`None`: send the true one).
    fn wrong(
        &mut self,
        to: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) -> Option<Vec<u8>> {
        let NodeMessage::Protocol(bytes) = message else {
            return None;
        };
        let (header, _) = Header::decode(&bytes).ok()?;
        let memory = &mut self.memory;
        if memory.first.len() >= MAX_TRACKED {
            memory.first.clear();
        }
        let pair = (header.instance.0, to.0);
        let previous = memory
            .last_header
            .insert(to.0, bytes[..HEADER_LEN].try_into().ok()?);
        let Some(first) = memory.first.get(&pair) else {
            // The run's first message to `to`: honest, so the run gets going.
            memory.first.insert(pair, bytes);
            return None;
        };
        memory.count += 1;
        let wrong = match memory.count % 3 {
            // A stale round: the run's first message again.
            0 => first.clone(),
            // The right header, a body with altered content (past EdDSA's round
            // byte, so the message still reads as this round's).
            1 => {
                let mut altered = bytes.clone();
                let body = HEADER_LEN + 1..altered.len();
                let middle = body.start + body.len() / 2;
                for byte in altered[middle..].iter_mut().take(8) {
                    *byte ^= 0x5a;
                }
                altered
            }
            // This body in another run with `to` (or under another protocol kind).
            _ => {
                let mut moved = bytes.clone();
                match previous.filter(|h| h[2..] != bytes[2..HEADER_LEN]) {
                    Some(other) => moved[..HEADER_LEN].copy_from_slice(&other),
                    None => {
                        let other = match header.kind {
                            ProtocolKind::Presign => ProtocolKind::Triple,
                            _ => ProtocolKind::Presign,
                        };
                        moved[1] = other as u8;
                    }
                }
                moved
            }
        };
        Some(NodeMessage::Protocol(wrong).encode(domain))
    }

    /// `replay`: remembers what goes to `to`, and with every few protocol
    /// messages returns an old frame to send again besides.
    fn replay(
        &mut self,
        to: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) -> Vec<(ParticipantId, Vec<u8>)> {
        let memory = &mut self.memory;
        let mut out = Vec::new();
        let current_header = match &message {
            NodeMessage::Protocol(bytes) => Header::decode(bytes)
                .ok()
                .map(|_| bytes[..HEADER_LEN].to_vec()),
            _ => None,
        };
        if let Some(header) = current_header {
            memory.count += 1;
            let turn = memory.count / REPLAY_EVERY;
            if memory.count % REPLAY_EVERY == 0 && memory.history.len() > REPLAY_AGE {
                let pick = (turn as usize * 7919) % (memory.history.len() - REPLAY_AGE);
                let (first_to, old_domain, old) = memory.history[pick].clone();
                let replayed = match (turn % 4, &old) {
                    // To its first recipient, as it was.
                    (0, _) | (3, NodeMessage::Start(_)) => (first_to, old.encode(old_domain)),
                    // To another peer, as it was.
                    (1, _) => (to, old.encode(old_domain)),
                    // An old body under the header of a run under way.
                    (2, NodeMessage::Protocol(old_bytes)) if old_bytes.len() > HEADER_LEN => {
                        let mut moved = header.clone();
                        moved.extend_from_slice(&old_bytes[HEADER_LEN..]);
                        (to, NodeMessage::Protocol(moved).encode(domain))
                    }
                    // An old invitation (of a run long over), to its first recipient.
                    _ => match memory
                        .history
                        .iter()
                        .take(memory.history.len() - REPLAY_AGE)
                        .rev()
                        .find(|(_, _, m)| matches!(m, NodeMessage::Start(_)))
                    {
                        Some((invited, start_domain, start)) => {
                            (*invited, start.encode(*start_domain))
                        }
                        None => (first_to, old.encode(old_domain)),
                    },
                };
                out.push(replayed);
            }
        }
        if matches!(message, NodeMessage::Protocol(_) | NodeMessage::Start(_)) {
            if memory.history.len() >= MAX_HISTORY {
                memory.history.pop_front();
            }
            memory.history.push_back((to, domain, message));
        }
        out
    }

    /// `withhold`: key-event protocol messages to a peer go out one behind, so the
    /// last of each run to a peer stays here, except to the run's lucky peer.
    fn withhold(
        &mut self,
        to: ParticipantId,
        frame: Vec<u8>,
        message: &NodeMessage,
    ) -> Vec<(ParticipantId, Vec<u8>)> {
        let NodeMessage::Protocol(bytes) = message else {
            return vec![(to, frame)];
        };
        let Ok((header, _)) = Header::decode(bytes) else {
            return vec![(to, frame)];
        };
        if !header.kind.is_key_event() {
            return vec![(to, frame)];
        }
        let memory = &mut self.memory;
        if memory.held.len() >= MAX_TRACKED {
            memory.held.clear();
            memory.lucky.clear();
        }
        let runs = memory.lucky.len();
        let lucky = *memory.lucky.entry(header.instance.0).or_insert(runs);
        // The peers of a run are not known here; the lucky one is the one whose id
        // comes up at the run's turn among those it sends to, so the same peers
        // see it in turn.
        let lucky_peer = lucky % 3 == (to.0 as usize) % 3;
        if lucky_peer {
            return vec![(to, frame)];
        }
        match memory.held.insert((header.instance.0, to.0), frame) {
            Some(previous) => vec![(to, previous)],
            None => Vec::new(),
        }
    }
}
