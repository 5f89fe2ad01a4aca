//! Tunables of the contract. Changed only by a threshold of participants through
//! `propose_update` / `vote_update`.

use crate::errors::Error;
use near_sdk::{near, Gas, NearToken};

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The deposit `sign` keeps. At least 1 yoctoNEAR: a deposit can only be attached
    /// with a full-access key, so a dapp holding a function-call key cannot sign
    /// silently on its user's behalf. Anything attached beyond it is refunded.
    pub sign_deposit: NearToken,
    /// The least gas `sign` accepts: its own execution plus one wait for the answer.
    pub min_sign_gas: Gas,
    /// Gas reserved for each run of the yield callback; all gas left over from `sign`
    /// is added to it, which is what pays for re-yielding after a timeout.
    pub yield_callback_gas: Gas,
    /// Gas for the call that fails a timed-out request with a clear error.
    pub timeout_fail_gas: Gas,
    /// Longest accepted derivation path, in bytes.
    pub max_path_len: u32,
    /// How many identical requests may wait for one answer.
    pub max_duplicate_requests: u32,
    /// How many distinct requests may wait at once before `sign` says busy. With
    /// `max_duplicate_requests` and the largest payload this bounds the storage the
    /// contract account keeps for requests (README, "Storage").
    pub max_pending_requests: u32,
    /// How many distinct requests one account may have waiting, so no single caller
    /// can take the whole queue.
    pub max_pending_per_caller: u32,
    /// How long one key-event attempt may take, in blocks, before the next begins.
    pub key_event_timeout_blocks: u64,
    /// How long a `join` request waits for votes, in blocks, before it expires.
    pub candidate_expiry_blocks: u64,
    /// Gas for the `migrate` call that follows a code update.
    pub migrate_gas: Gas,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sign_deposit: NearToken::from_yoctonear(1),
            min_sign_gas: Gas::from_tgas(20),
            yield_callback_gas: Gas::from_tgas(10),
            timeout_fail_gas: Gas::from_tgas(3),
            max_path_len: 1024,
            max_duplicate_requests: 16,
            max_pending_requests: 1024,
            max_pending_per_caller: 128,
            key_event_timeout_blocks: 120,
            candidate_expiry_blocks: 100_000,
            migrate_gas: Gas::from_tgas(100),
        }
    }
}

impl Config {
    /// Rejects configs that would make `sign` unusable or unsafe.
    pub fn validate(&self) -> Result<(), Error> {
        let check = |ok: bool, why: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(Error::BadConfig(why))
            }
        };
        check(
            !self.sign_deposit.is_zero(),
            "sign_deposit must be at least 1 yoctoNEAR",
        )?;
        check(
            self.timeout_fail_gas >= Gas::from_tgas(1),
            "timeout_fail_gas must be at least 1 Tgas",
        )?;
        check(
            self.yield_callback_gas >= self.timeout_fail_gas.saturating_add(Gas::from_tgas(2)),
            "yield_callback_gas must exceed timeout_fail_gas by at least 2 Tgas",
        )?;
        check(
            self.min_sign_gas >= self.yield_callback_gas.saturating_add(Gas::from_tgas(2)),
            "min_sign_gas must exceed yield_callback_gas by at least 2 Tgas",
        )?;
        check(
            self.min_sign_gas <= Gas::from_tgas(300),
            "min_sign_gas must be at most 300 Tgas",
        )?;
        check(self.max_path_len >= 1, "max_path_len must be at least 1")?;
        check(
            self.max_duplicate_requests >= 1,
            "max_duplicate_requests must be at least 1",
        )?;
        check(
            self.max_pending_requests >= 1,
            "max_pending_requests must be at least 1",
        )?;
        check(
            self.max_pending_per_caller >= 1,
            "max_pending_per_caller must be at least 1",
        )?;
        check(
            self.key_event_timeout_blocks >= 5,
            "key_event_timeout_blocks must be at least 5",
        )?;
        check(
            self.candidate_expiry_blocks >= 1,
            "candidate_expiry_blocks must be at least 1",
        )?;
        check(
            self.migrate_gas >= Gas::from_tgas(5),
            "migrate_gas must be at least 5 Tgas",
        )?;
        Ok(())
    }
}
