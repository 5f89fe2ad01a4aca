//! What the chain says about a transaction: how far it has come, and its
//! outcome as the RPC's `tx` reports it, built from the stored receipt outcomes.

use super::{Chain, StoredOutcome};
use near_primitives::errors::{InvalidTxError, TxExecutionError};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{ExecutionOutcomeWithIdAndProof, ExecutionStatus};
use near_primitives::views::{
    ExecutionOutcomeWithIdView, ExecutionStatusView, FinalExecutionOutcomeView,
    FinalExecutionStatus,
};
use std::collections::VecDeque;

/// Where a transaction stands.
pub enum TxState {
    /// Accepted, waiting for the next block.
    Pending,
    /// Refused when its block tried to include it (e.g. a nonce used meanwhile).
    Rejected(InvalidTxError),
    /// Included; `complete` once every receipt of its tree has run.
    Included {
        outcome: Box<FinalExecutionOutcomeView>,
        complete: bool,
    },
}

/// How far a transaction has come, without its outcome: what a waiter checks at
/// every block. Building the outcome's views is most of [`Chain::tx_state`]'s
/// cost, and a `sign` call waits through many blocks for its `respond`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxProgress {
    /// The chain never saw it.
    Unknown,
    /// Accepted, waiting for the next block.
    Pending,
    /// Refused when its block tried to include it.
    Rejected,
    /// Included; `complete` once every receipt of its tree has run.
    Included { complete: bool },
}

impl Chain {
    /// [`Chain::tx_state`] without building its outcome: the same answer, read
    /// from the same records.
    pub fn tx_progress(&self, hash: &CryptoHash) -> TxProgress {
        if self.rejected.contains_key(hash) {
            return TxProgress::Rejected;
        }
        if !self.transactions.contains_key(hash) {
            return if self.pool.iter().any(|t| &t.get_hash() == hash) {
                TxProgress::Pending
            } else {
                TxProgress::Unknown
            };
        }
        let (_, complete) = self.receipt_tree(&self.outcomes[hash]);
        TxProgress::Included { complete }
    }

    /// The outcomes of the receipts under `root` that have run, breadth first,
    /// and whether every receipt of the tree has (none is still to run).
    fn receipt_tree<'a>(&'a self, root: &'a StoredOutcome) -> (Vec<&'a StoredOutcome>, bool) {
        let mut ran = Vec::new();
        let mut complete = true;
        let mut queue: VecDeque<&CryptoHash> = root.outcome.outcome.receipt_ids.iter().collect();
        while let Some(id) = queue.pop_front() {
            match self.outcomes.get(id) {
                Some(stored) => {
                    queue.extend(stored.outcome.outcome.receipt_ids.iter());
                    ran.push(stored);
                }
                None => complete = false,
            }
        }
        (ran, complete)
    }

    /// Where transaction `hash` stands, or `None` if the chain never saw it.
    pub fn tx_state(&self, hash: &CryptoHash) -> Option<TxState> {
        if let Some(error) = self.rejected.get(hash) {
            return Some(TxState::Rejected(error.clone()));
        }
        let Some(tx) = self.transactions.get(hash) else {
            return self
                .pool
                .iter()
                .any(|t| &t.get_hash() == hash)
                .then_some(TxState::Pending);
        };
        let tx_outcome = &self.outcomes[hash];
        let (ran, complete) = self.receipt_tree(tx_outcome);
        let receipts = ran.into_iter().map(view).collect();
        let mut status = FinalExecutionStatus::Started;
        let mut current = &tx_outcome.outcome.outcome;
        loop {
            match &current.status {
                ExecutionStatus::SuccessReceiptId(id) => match self.outcomes.get(id) {
                    Some(next) => current = &next.outcome.outcome,
                    None => break,
                },
                ExecutionStatus::SuccessValue(value) => {
                    status = FinalExecutionStatus::SuccessValue(value.clone());
                    break;
                }
                ExecutionStatus::Failure(error) => {
                    status = FinalExecutionStatus::Failure(error.clone());
                    break;
                }
                ExecutionStatus::Unknown => break,
            }
        }
        Some(TxState::Included {
            outcome: Box::new(FinalExecutionOutcomeView {
                status,
                transaction: tx.clone().into(),
                transaction_outcome: view(tx_outcome),
                receipts_outcome: receipts,
            }),
            complete,
        })
    }

    /// The outcome of one receipt, if it ran.
    pub fn receipt_outcome(&self, id: &CryptoHash) -> Option<ExecutionOutcomeWithIdView> {
        self.outcomes.get(id).map(view)
    }

    /// The first failure in `status`, for error reporting.
    pub fn failure(status: &FinalExecutionStatus) -> Option<&TxExecutionError> {
        match status {
            FinalExecutionStatus::Failure(e) => Some(e),
            _ => None,
        }
    }

    /// Whether a status view reports success.
    pub fn is_success(status: &ExecutionStatusView) -> bool {
        matches!(
            status,
            ExecutionStatusView::SuccessValue(_) | ExecutionStatusView::SuccessReceiptId(_)
        )
    }
}

fn view(stored: &StoredOutcome) -> ExecutionOutcomeWithIdView {
    ExecutionOutcomeWithIdAndProof {
        proof: Vec::new(),
        block_hash: stored.block_hash,
        outcome_with_id: stored.outcome.clone(),
    }
    .into()
}
