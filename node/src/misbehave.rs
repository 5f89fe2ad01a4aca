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
//!   its own connection to one peer (the lowest other id) and writes to it at
//!   full loopback speed: mostly
//!   valid-looking stock messages of runs that do not exist (each a fresh
//!   instance, 60 KB, which the receiver must hold until it gives up on them), and
//!   every 16th frame garbage. Reconnects at once when cut off.
//!
//! Key-event traffic (key generation, resharing) is left alone: without a key the
//! network would not exist, and what the tests measure is signing under load.
//! Everything happens where frames leave the node and where they come in, so the
//! engine itself is the honest one.

use crate::engine::NodeMessage;
use primitives::DomainId;
use rand::RngCore;
use std::collections::HashSet;
use threshold::ParticipantId;

/// The variable that picks a behaviour.
pub const ENV: &str = "MPC_MISBEHAVE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Decline,
    Silent,
    Garbage,
    Flood,
}

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decline" => Ok(Behaviour::Decline),
            "silent" => Ok(Behaviour::Silent),
            "garbage" => Ok(Behaviour::Garbage),
            "flood" => Ok(Behaviour::Flood),
            other => Err(format!(
                "unknown {ENV} behaviour `{other}` (decline, silent, garbage or flood)"
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

/// The `flood` behaviour's connection: dials the lowest other participant with
/// this node's own key (so the victim knows exactly who it is) and writes frames
/// until `cancel`; when the victim cuts it off it dials again at once.
pub async fn flood(
    me: ParticipantId,
    peers: crate::p2p::Peers,
    key: crate::p2p::noise::StaticKey,
    prologue: Vec<u8>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut sent: u64 = 0;
    let mut connections: u64 = 0;
    while !cancel.is_cancelled() {
        let target = peers.ids().into_iter().filter(|p| *p != me).min();
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
