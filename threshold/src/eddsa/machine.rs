//! The round-based state machine under each EdDSA protocol, and its adapter to
//! [`crate::Instance`].
//!
//! A payload (after our 34-byte header) is one round-number byte and the round's
//! body. The inbox keeps at most one message per (round, sender), so messages for a
//! later round that arrive early wait for their turn; the same message again is
//! ignored (a transport may send again what it is not sure arrived); anything
//! else (an unknown round, another message for a round, an oversized body) names
//! its sender in an [`Error::Misbehaved`] and aborts the instance at the next poke.

use crate::error::Error;
use crate::instance::Driver;
use crate::participants::ParticipantId;
use cait_sith::protocol::{Action, Participant};
use std::collections::{BTreeMap, VecDeque};

/// No EdDSA message body is anywhere near this (the largest is a DKG commitment:
/// 32 bytes per threshold unit plus 64).
const MAX_BODY: usize = 256 * 1024;

/// Messages received so far, by round and sender.
pub(crate) struct Inbox {
    /// Who sends us a message in each round (round r at index r − 1).
    senders: Vec<Vec<ParticipantId>>,
    got: BTreeMap<(u8, ParticipantId), Vec<u8>>,
}

impl Inbox {
    /// Every other participant sends one message in each of `rounds` rounds.
    pub(crate) fn new(rounds: u8, others: Vec<ParticipantId>) -> Self {
        Self::per_round(vec![others; usize::from(rounds)])
    }

    /// Only `senders[r − 1]` send a message in round r (resharing: only dealers
    /// deal); a message from anyone else for that round names its sender.
    pub(crate) fn per_round(senders: Vec<Vec<ParticipantId>>) -> Self {
        debug_assert!(senders.len() < usize::from(u8::MAX));
        Inbox {
            senders,
            got: BTreeMap::new(),
        }
    }

    fn senders(&self, round: u8) -> &[ParticipantId] {
        usize::from(round)
            .checked_sub(1)
            .and_then(|r| self.senders.get(r))
            .map_or(&[], Vec::as_slice)
    }

    fn put(&mut self, from: ParticipantId, data: Vec<u8>) -> Result<(), Error> {
        let blame = |reason: String| Error::Misbehaved {
            culprit: from,
            reason,
        };
        let Some((&round, body)) = data.split_first() else {
            return Err(blame("sent an empty payload".into()));
        };
        if round == 0 || usize::from(round) > self.senders.len() {
            return Err(blame(format!("sent a message for unknown round {round}")));
        }
        if !self.senders(round).contains(&from) {
            return Err(blame(format!(
                "sent a round-{round} message but has no part in that round"
            )));
        }
        if body.len() > MAX_BODY {
            return Err(blame(format!("sent a {}-byte message", body.len())));
        }
        match self.got.get(&(round, from)) {
            // The same bytes again are the transport's repeat (a batch resent on
            // a new connection), not a second message.
            Some(first) if first.as_slice() == body => Ok(()),
            Some(_) => Err(blame(format!("sent two different round-{round} messages"))),
            None => {
                self.got.insert((round, from), body.to_vec());
                Ok(())
            }
        }
    }

    /// Whether every other participant's message for `round` is in.
    pub(crate) fn complete(&self, round: u8) -> bool {
        self.senders(round)
            .iter()
            .all(|p| self.got.contains_key(&(round, *p)))
    }

    /// Takes the messages of `round` (call after [`Inbox::complete`]).
    pub(crate) fn take(&mut self, round: u8) -> BTreeMap<ParticipantId, Vec<u8>> {
        let senders = self.senders(round).to_vec();
        senders
            .into_iter()
            .filter_map(|p| self.got.remove(&(round, p)).map(|body| (p, body)))
            .collect()
    }

    /// The confirmation round: every digest received in `round` must equal ours,
    /// else somebody equivocated (`what` names what the digests cover).
    pub(crate) fn confirm(&mut self, round: u8, ours: &[u8], what: &str) -> Result<(), Error> {
        for (from, theirs) in self.take(round) {
            if theirs != ours {
                return Err(Error::VerificationFailed(format!(
                    "participant {} received other {what} than we did",
                    from.0
                )));
            }
        }
        Ok(())
    }
}

/// A message a machine wants sent (its body, without the round byte).
pub(crate) enum Out {
    All(u8, Vec<u8>),
    To(ParticipantId, u8, Vec<u8>),
}

pub(crate) enum Progress<T> {
    Wait,
    Send(Vec<Out>),
    Done(T),
}

/// One party's side of one EdDSA protocol: called whenever something may have
/// changed; moves on when its round's messages are all in.
pub(crate) trait Machine: Send {
    type Output: Send;
    fn advance(&mut self, inbox: &mut Inbox) -> Result<Progress<Self::Output>, Error>;
}

/// Adapts a [`Machine`] to the [`Driver`] under [`crate::Instance`].
pub(crate) struct Driven<M: Machine> {
    machine: M,
    inbox: Inbox,
    outbox: VecDeque<Action<M::Output>>,
    failed: Option<Error>,
}

impl<M: Machine> Driven<M> {
    pub(crate) fn new(machine: M, inbox: Inbox) -> Self {
        Driven {
            machine,
            inbox,
            outbox: VecDeque::new(),
            failed: None,
        }
    }
}

fn framed(round: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(round);
    out.extend(body);
    out
}

impl<M: Machine> Driver<M::Output> for Driven<M> {
    fn poke(&mut self) -> Result<Action<M::Output>, Error> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        loop {
            if let Some(action) = self.outbox.pop_front() {
                return Ok(action);
            }
            match self.machine.advance(&mut self.inbox)? {
                Progress::Wait => return Ok(Action::Wait),
                Progress::Done(output) => return Ok(Action::Return(output)),
                Progress::Send(outs) => {
                    for out in outs {
                        self.outbox.push_back(match out {
                            Out::All(round, body) => Action::SendMany(framed(round, body)),
                            Out::To(to, round, body) => {
                                Action::SendPrivate(to.into(), framed(round, body))
                            }
                        });
                    }
                }
            }
        }
    }

    fn message(&mut self, from: Participant, data: Vec<u8>) {
        if self.failed.is_none() {
            if let Err(e) = self.inbox.put(from.into(), data) {
                self.failed = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_again_is_ignored_and_another_names_its_sender() {
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let mut inbox = Inbox::new(2, vec![a, b]);
        inbox.put(a, vec![1, 7, 7]).expect("a's round-1 message");
        inbox.put(a, vec![1, 7, 7]).expect("the same bytes again");
        assert!(!inbox.complete(1), "a repeat is not b's message");
        match inbox.put(a, vec![1, 7, 8]) {
            Err(Error::Misbehaved { culprit, reason }) => {
                assert_eq!(culprit, a);
                assert!(reason.contains("two different round-1"), "{reason}");
            }
            other => panic!("another round-1 message from a: {other:?}"),
        }
        inbox.put(b, vec![1, 9]).expect("b's round-1 message");
        assert!(inbox.complete(1));
        let round = inbox.take(1);
        assert_eq!(round.get(&a), Some(&vec![7, 7]), "the first, kept once");
        assert_eq!(round.get(&b), Some(&vec![9]));
    }
}
