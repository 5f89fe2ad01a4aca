//! Byte budgets per peer (DESIGN §8: memory is bounded by bytes, per peer; a peer
//! over budget is cut off and penalised, never everyone).
//!
//! Every message a peer sends us is charged to that peer from the moment its
//! connection reads it until whoever holds it last lets it go: the network's
//! receive queue, then the daemon's backlog of bulk traffic or its frames held for
//! an engine not built yet. A [`Charge`] travels with the message and gives its
//! bytes back when dropped, so no holder has to remember to. A message that would
//! take its peer over [`Ledger::limit`] is refused, and the network cuts that peer
//! off: its connection is dropped and every charge it still holds turns stale
//! ([`Charge::is_current`]), which tells the holders to discard those messages.
//! Other peers' budgets are untouched, so they keep flowing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use threshold::ParticipantId;

/// What each message costs beyond its bytes: the bookkeeping around it (queue
/// slots, headers), and it makes a flood of tiny messages count.
pub const MESSAGE_OVERHEAD: usize = 128;

#[derive(Debug, Default)]
struct Account {
    /// Bytes charged and not given back yet.
    held: usize,
    /// Bumped on every cut-off: charges made before it are stale.
    generation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    limit: usize,
    accounts: Mutex<HashMap<ParticipantId, Account>>,
}

/// The byte budgets of every peer, shared by the network and the daemon.
#[derive(Clone, Debug)]
pub struct Ledger(Arc<Inner>);

/// A message that would take its peer over budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    pub peer: ParticipantId,
    /// Bytes the peer already held.
    pub held: usize,
    /// What the refused message would have added.
    pub wanted: usize,
    pub limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "participant {} holds {} bytes in our buffers; {} more would exceed its budget of {}",
            self.peer.0, self.held, self.wanted, self.limit
        )
    }
}

impl Ledger {
    /// A ledger allowing each peer `limit` bytes at a time.
    pub fn new(limit: usize) -> Self {
        Ledger(Arc::new(Inner {
            limit,
            ..Inner::default()
        }))
    }

    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Charges `bytes` (plus [`MESSAGE_OVERHEAD`]) to `peer`, or refuses if that
    /// would take it over the limit.
    pub fn charge(&self, peer: ParticipantId, bytes: usize) -> Result<Charge, OverBudget> {
        let wanted = bytes.saturating_add(MESSAGE_OVERHEAD);
        let mut accounts = self.0.accounts.lock().expect("ledger lock");
        let account = accounts.entry(peer).or_default();
        if account.held.saturating_add(wanted) > self.0.limit {
            return Err(OverBudget {
                peer,
                held: account.held,
                wanted,
                limit: self.0.limit,
            });
        }
        account.held += wanted;
        Ok(Charge {
            ledger: self.0.clone(),
            peer,
            bytes: wanted,
            generation: account.generation,
        })
    }

    /// Bytes `peer` holds now.
    pub fn held(&self, peer: ParticipantId) -> usize {
        let accounts = self.0.accounts.lock().expect("ledger lock");
        accounts.get(&peer).map_or(0, |a| a.held)
    }

    /// Makes every charge of `peer` stale. The bytes come back as the holders
    /// drop the stale messages.
    pub fn cut_off(&self, peer: ParticipantId) {
        let mut accounts = self.0.accounts.lock().expect("ledger lock");
        accounts.entry(peer).or_default().generation += 1;
    }
}

/// Bytes charged to a peer for one message it sent; given back when dropped.
pub struct Charge {
    ledger: Arc<Inner>,
    peer: ParticipantId,
    bytes: usize,
    generation: u64,
}

impl Charge {
    pub fn peer(&self) -> ParticipantId {
        self.peer
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// False once its peer has been cut off: the message should be discarded.
    pub fn is_current(&self) -> bool {
        let accounts = self.ledger.accounts.lock().expect("ledger lock");
        accounts.get(&self.peer).map_or(0, |a| a.generation) == self.generation
    }
}

impl std::fmt::Debug for Charge {
    // Not the ledger: every peer's account would show in each message's debug text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("peer", &self.peer.0)
            .field("bytes", &self.bytes)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Ok(mut accounts) = self.ledger.accounts.lock() {
            if let Some(account) = accounts.get_mut(&self.peer) {
                account.held = account.held.saturating_sub(self.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_per_peer_and_given_back_on_drop() {
        let ledger = Ledger::new(1000);
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let first = ledger.charge(a, 600).unwrap();
        assert_eq!(ledger.held(a), 600 + MESSAGE_OVERHEAD);
        let refused = ledger.charge(a, 600).unwrap_err();
        assert_eq!(refused.held, 600 + MESSAGE_OVERHEAD);
        // Another peer is not affected by the first one's debt.
        let other = ledger.charge(b, 800).unwrap();
        drop(first);
        assert_eq!(ledger.held(a), 0);
        assert!(ledger.charge(a, 600).is_ok());
        assert_eq!(other.bytes(), 800 + MESSAGE_OVERHEAD);
    }

    #[test]
    fn a_cut_off_makes_only_that_peers_charges_stale() {
        let ledger = Ledger::new(1 << 20);
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let old = ledger.charge(a, 10).unwrap();
        let other = ledger.charge(b, 10).unwrap();
        ledger.cut_off(a);
        assert!(!old.is_current());
        assert!(other.is_current());
        assert!(ledger.charge(a, 10).unwrap().is_current());
        // Stale charges still hold their bytes until dropped: memory is memory.
        assert_eq!(ledger.held(a), 10 + MESSAGE_OVERHEAD);
        drop(old);
        assert_eq!(ledger.held(a), 0);
    }
}
