//! One party's side of one protocol run, driven by messages in and messages out.
//!
//! ```text
//! loop {
//!     match instance.poke()? {
//!         Step::Send(out) => transport.send(out.to, out.message),
//!         Step::Wait => break,           // until the next message arrives
//!         Step::Done(output) => return output,
//!     }
//! }
//! on message (from, bytes): instance.receive(from, &bytes)?; poke again
//! ```
//! No I/O, no clock: the caller owns the transport and the timeouts.

use crate::error::Error;
use crate::participants::{ParticipantId, Participants};
use crate::wire::{Header, InstanceId, ProtocolKind};
use cait_sith::protocol::{Action, Participant, Protocol};

/// Where an outgoing message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Every other participant of the instance.
    AllOthers,
    /// One participant only; the transport must keep it confidential.
    One(ParticipantId),
}

/// A message to send, already in wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Recipient,
    pub message: Vec<u8>,
}

/// What the instance wants next.
#[derive(Debug)]
pub enum Step<T> {
    Send(Outgoing),
    /// Nothing to do until a message arrives.
    Wait,
    Done(T),
}

/// Erases the concrete protocol type (cait-sith's, or our own for EdDSA) and maps
/// its output to ours.
pub(crate) trait Driver<T>: Send {
    fn poke(&mut self) -> Result<Action<T>, Error>;
    fn message(&mut self, from: Participant, data: Vec<u8>);
}

struct Mapped<P, F> {
    protocol: P,
    finish: Option<F>,
}

impl<T, P, F> Driver<T> for Mapped<P, F>
where
    P: Protocol + Send,
    F: FnOnce(P::Output) -> Result<T, Error> + Send,
{
    fn poke(&mut self) -> Result<Action<T>, Error> {
        Ok(match self.protocol.poke()? {
            Action::Wait => Action::Wait,
            Action::SendMany(m) => Action::SendMany(m),
            Action::SendPrivate(to, m) => Action::SendPrivate(to, m),
            Action::Return(raw) => {
                let finish = self.finish.take().ok_or(Error::WrongRound)?;
                Action::Return(finish(raw)?)
            }
        })
    }

    fn message(&mut self, from: Participant, data: Vec<u8>) {
        self.protocol.message(from, data)
    }
}

/// One party's state in one protocol run. Produced by [`crate::keygen`],
/// [`crate::reshare`], [`crate::generate_triple`], [`crate::presign`] and
/// [`crate::sign`] (ECDSA), and by [`crate::eddsa::keygen`],
/// [`crate::eddsa::reshare`], [`crate::eddsa::presign`] and [`crate::eddsa::sign`]
/// (EdDSA).
pub struct Instance<T> {
    header: Header,
    me: ParticipantId,
    participants: Participants,
    driver: Box<dyn Driver<T>>,
    finished: bool,
    bytes_sent: u64,
    messages_sent: u64,
}

impl<T> Instance<T> {
    pub(crate) fn new<P, F>(
        kind: ProtocolKind,
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        protocol: P,
        finish: F,
    ) -> Self
    where
        P: Protocol + Send + 'static,
        F: FnOnce(P::Output) -> Result<T, Error> + Send + 'static,
        T: 'static,
    {
        Instance {
            header: Header { kind, instance },
            me,
            participants,
            driver: Box::new(Mapped {
                protocol,
                finish: Some(finish),
            }),
            finished: false,
            bytes_sent: 0,
            messages_sent: 0,
        }
    }

    /// An instance around one of our own state machines (the EdDSA protocols).
    pub(crate) fn from_driver(
        kind: ProtocolKind,
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        driver: Box<dyn Driver<T>>,
    ) -> Self {
        Instance {
            header: Header { kind, instance },
            me,
            participants,
            driver,
            finished: false,
            bytes_sent: 0,
            messages_sent: 0,
        }
    }

    /// Advances the protocol: call until it returns [`Step::Wait`] or [`Step::Done`].
    /// After `Done` or an error the instance is finished and refuses further use.
    pub fn poke(&mut self) -> Result<Step<T>, Error> {
        if self.finished {
            return Err(Error::WrongRound);
        }
        let action = self.driver.poke().inspect_err(|_| self.finished = true)?;
        Ok(match action {
            Action::Wait => Step::Wait,
            Action::SendMany(payload) => {
                let message = self.header.encode(&payload);
                let recipients = (self.participants.len() - 1) as u64;
                self.bytes_sent += message.len() as u64 * recipients;
                self.messages_sent += recipients;
                Step::Send(Outgoing {
                    to: Recipient::AllOthers,
                    message,
                })
            }
            Action::SendPrivate(to, payload) => {
                let message = self.header.encode(&payload);
                self.bytes_sent += message.len() as u64;
                self.messages_sent += 1;
                Step::Send(Outgoing {
                    to: Recipient::One(to.into()),
                    message,
                })
            }
            Action::Return(output) => {
                self.finished = true;
                Step::Done(output)
            }
        })
    }

    /// Hands the instance a message `from` another participant. Refuses messages
    /// from outsiders, for other instances, malformed ones, and any after the end.
    pub fn receive(&mut self, from: ParticipantId, message: &[u8]) -> Result<(), Error> {
        if self.finished {
            return Err(Error::WrongRound);
        }
        if from == self.me || !self.participants.contains(from) {
            return Err(Error::WrongParticipant(from));
        }
        let (header, payload) = Header::decode(message)?;
        if header != self.header {
            return Err(Error::WrongInstance);
        }
        self.driver.message(from.into(), payload.to_vec());
        Ok(())
    }

    pub fn header(&self) -> Header {
        self.header
    }

    pub fn me(&self) -> ParticipantId {
        self.me
    }

    pub fn participants(&self) -> &Participants {
        &self.participants
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes handed to the transport so far (a broadcast counts once per recipient).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Messages handed to the transport so far (a broadcast counts once per recipient).
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent
    }
}
