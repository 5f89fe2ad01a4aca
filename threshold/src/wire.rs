//! The wire format of protocol messages, version 1:
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      protocol kind (ECDSA: keygen 1, reshare 2, triple 3, presign 4,
//!             sign 5; EdDSA: keygen 6, presign 7, sign 8, reshare 9)
//! bytes 2..34 instance id (chosen by the orchestrator, the same at every party)
//! bytes 34..  the protocol's own payload: cait-sith's tagged MessagePack for
//!             ECDSA; for EdDSA a round number byte, then fixed-size 32-byte
//!             encodings (see [`crate::eddsa`])
//! ```
//! The sender is not in the message: the authenticated transport says who sent it.

use crate::error::Error;
use serde::{Deserialize, Serialize};

pub const WIRE_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 34;

/// Which protocol a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ProtocolKind {
    Keygen = 1,
    Reshare = 2,
    Triple = 3,
    Presign = 4,
    Sign = 5,
    EddsaKeygen = 6,
    EddsaPresign = 7,
    EddsaSign = 8,
    EddsaReshare = 9,
}

impl ProtocolKind {
    /// Key generation or resharing: runs of a key event.
    pub fn is_key_event(self) -> bool {
        matches!(
            self,
            ProtocolKind::Keygen
                | ProtocolKind::Reshare
                | ProtocolKind::EddsaKeygen
                | ProtocolKind::EddsaReshare
        )
    }

    /// Stock made ahead of requests (triples, presignatures, nonce commitments):
    /// bulk traffic nobody waits for.
    pub fn is_stock(self) -> bool {
        matches!(
            self,
            ProtocolKind::Triple | ProtocolKind::Presign | ProtocolKind::EddsaPresign
        )
    }

    fn from_byte(byte: u8) -> Result<Self, Error> {
        Ok(match byte {
            1 => ProtocolKind::Keygen,
            2 => ProtocolKind::Reshare,
            3 => ProtocolKind::Triple,
            4 => ProtocolKind::Presign,
            5 => ProtocolKind::Sign,
            6 => ProtocolKind::EddsaKeygen,
            7 => ProtocolKind::EddsaPresign,
            8 => ProtocolKind::EddsaSign,
            9 => ProtocolKind::EddsaReshare,
            other => {
                return Err(Error::MalformedMessage(format!(
                    "unknown protocol kind {other}"
                )))
            }
        })
    }
}

/// Names one run of a protocol among all that run at once, e.g. a hash of the
/// epoch and participants for keygen, or of the request id for signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId(pub [u8; 32]);

/// The header of a message, for routing it to its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: ProtocolKind,
    pub instance: InstanceId,
}

impl Header {
    /// Reads the header of `message`, refusing unknown versions and kinds.
    ///
    /// ```
    /// use threshold::wire::{Header, InstanceId, ProtocolKind};
    /// let header = Header { kind: ProtocolKind::Sign, instance: InstanceId([7; 32]) };
    /// let message = header.encode(b"payload");
    /// assert_eq!(Header::decode(&message).unwrap(), (header, &b"payload"[..]));
    /// assert!(Header::decode(&message[..10]).is_err());
    /// ```
    pub fn decode(message: &[u8]) -> Result<(Header, &[u8]), Error> {
        if message.len() < HEADER_LEN {
            return Err(Error::MalformedMessage(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                message.len()
            )));
        }
        if message[0] != WIRE_VERSION {
            return Err(Error::UnsupportedVersion(message[0]));
        }
        let kind = ProtocolKind::from_byte(message[1])?;
        let instance = InstanceId(message[2..HEADER_LEN].try_into().expect("32 bytes"));
        Ok((Header { kind, instance }, &message[HEADER_LEN..]))
    }

    /// The message carrying `payload` for this header's instance.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(WIRE_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.instance.0);
        out.extend_from_slice(payload);
        out
    }
}
