//! Code and config updates, applied when a threshold of participants votes for them.

use crate::config::Config;
use crate::sorted::SortedSet;
use near_sdk::{near, AccountId, NearToken};

/// The borsh-encoded argument of `propose_update`: new wasm code, a new config, or both.
#[near(serializers = [borsh])]
#[derive(Clone, Debug, Default)]
pub struct ProposeUpdateArgs {
    pub code: Option<Vec<u8>>,
    pub config: Option<Config>,
}

#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct UpdateProposal {
    pub proposer: AccountId,
    pub code: Option<Vec<u8>>,
    pub config: Option<Config>,
    pub deposit: NearToken,
    pub votes: SortedSet<AccountId>,
}

/// A proposal as the `proposed_updates` view shows it (the code by size and hash).
#[near(serializers = [json])]
#[derive(Clone, Debug)]
pub struct UpdateView {
    pub id: u64,
    pub proposer: AccountId,
    pub code_len: Option<u64>,
    /// SHA-256 of the proposed code, hex, so voters can compare it with a build.
    pub code_sha256: Option<String>,
    pub config: Option<Config>,
    pub votes: SortedSet<AccountId>,
}

impl UpdateProposal {
    pub fn view(&self, id: u64) -> UpdateView {
        UpdateView {
            id,
            proposer: self.proposer.clone(),
            code_len: self.code.as_ref().map(|c| c.len() as u64),
            code_sha256: self
                .code
                .as_ref()
                .map(|c| hex::encode(near_sdk::env::sha256(c))),
            config: self.config.clone(),
            votes: self.votes.clone(),
        }
    }
}
