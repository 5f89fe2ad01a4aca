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
//!   should, then garbage in place of the protocol messages that follow.
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
}

impl std::str::FromStr for Behaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decline" => Ok(Behaviour::Decline),
            "silent" => Ok(Behaviour::Silent),
            "garbage" => Ok(Behaviour::Garbage),
            other => Err(format!(
                "unknown {ENV} behaviour `{other}` (decline, silent or garbage)"
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
                Behaviour::Decline => out.push((to, frame)),
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
