//! What can go wrong. A bad message aborts its protocol instance with one of these;
//! nothing here panics the process.

use crate::participants::ParticipantId;
use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The parameters cannot start a protocol (threshold above the participant count,
    /// a participant list without us, mismatched triples, ...).
    BadParameters(String),
    /// A message from someone who is not a participant of the instance (or from us).
    WrongParticipant(ParticipantId),
    /// A message for another protocol or instance than the one it was given to.
    WrongInstance,
    /// A message for an instance that has already finished or failed.
    WrongRound,
    /// Bytes that are not a message of our wire format.
    MalformedMessage(String),
    /// A wire or storage format version this code does not know.
    UnsupportedVersion(u8),
    /// A check of the protocol failed: a participant sent inconsistent or garbage
    /// data, or the output did not verify. The instance is aborted.
    VerificationFailed(String),
    /// Stored bytes that do not decode to a valid record.
    CorruptRecord(String),
    /// A check failed that names who is to blame: `culprit` sent an invalid share,
    /// proof or payload. The instance is aborted; the caller may penalise `culprit`.
    Misbehaved {
        culprit: ParticipantId,
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadParameters(why) => write!(f, "bad protocol parameters: {why}"),
            Error::WrongParticipant(p) => {
                write!(
                    f,
                    "message from participant {} who is not part of this instance",
                    p.0
                )
            }
            Error::WrongInstance => f.write_str("message belongs to another protocol instance"),
            Error::WrongRound => f.write_str("message arrived after the instance finished"),
            Error::MalformedMessage(why) => write!(f, "malformed message: {why}"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Error::VerificationFailed(why) => write!(f, "protocol aborted: {why}"),
            Error::CorruptRecord(why) => write!(f, "corrupt stored record: {why}"),
            Error::Misbehaved { culprit, reason } => {
                write!(f, "protocol aborted: participant {} {reason}", culprit.0)
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<cait_sith::protocol::InitializationError> for Error {
    fn from(e: cait_sith::protocol::InitializationError) -> Self {
        Error::BadParameters(e.to_string())
    }
}

impl From<cait_sith::protocol::ProtocolError> for Error {
    fn from(e: cait_sith::protocol::ProtocolError) -> Self {
        Error::VerificationFailed(e.to_string())
    }
}
