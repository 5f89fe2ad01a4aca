//! A test contract for the devnet: every method exercises one runtime feature
//! through the host functions directly, so a test sees exactly which receipts exist.

use near_sdk::{env, near, AccountId, CryptoHash, Gas, GasWeight, NearToken};

const DATA_ID_KEY: &[u8] = b"yield_data_id";
/// Longest promise result the callbacks read.
const MAX_RESULT: usize = 1024;

#[near(contract_state)]
#[derive(Default)]
pub struct TestContract {}

#[near]
impl TestContract {
    /// Returns `v`.
    pub fn echo(&self, v: u64) -> u64 {
        v
    }

    /// Always fails.
    #[payable]
    pub fn fail(&mut self) {
        env::panic_str("this method always fails")
    }

    /// Calls `first(v=1)` on `a` and `second(v=2)` on `b` in parallel (`promise_and`),
    /// then `collect` here, and returns what `collect` returns.
    pub fn call_both(&self, a: AccountId, first: String, b: AccountId, second: String) {
        let gas = Gas::from_tgas(5);
        let zero = NearToken::from_yoctonear(0);
        let p1 = env::promise_create(a, &first, br#"{"v":1}"#, zero, gas);
        let p2 = env::promise_create(b, &second, br#"{"v":2}"#, zero, gas);
        let both = env::promise_and(&[p1, p2]);
        let callback =
            env::promise_then(both, env::current_account_id(), "collect", b"{}", zero, gas);
        env::promise_return(callback);
    }

    /// The callback of `call_both`: each promise's value, or null for a failure.
    #[private]
    pub fn collect(&self) -> Vec<Option<u64>> {
        (0..env::promise_results_count())
            .map(|i| match env::promise_result_checked(i, MAX_RESULT) {
                Ok(bytes) => near_sdk::serde_json::from_slice(&bytes).ok(),
                Err(_) => None,
            })
            .collect()
    }

    /// Writes `bytes` bytes of data (storage staking needs the balance for them).
    pub fn store(&mut self, bytes: u32) {
        env::storage_write(b"blob", &vec![7u8; bytes as usize]);
    }

    /// Waits (NEP-519) for `resume`; returns what it delivers, or "timeout".
    pub fn wait(&mut self) {
        let promise =
            env::promise_yield_create("on_resume", b"{}", Gas::from_tgas(5), GasWeight(1), 0);
        let data_id = env::read_register(0).expect("the yield writes its data id");
        env::storage_write(DATA_ID_KEY, &data_id);
        env::promise_return(promise);
    }

    /// Delivers `value` to the waiting `wait`; returns whether one was waiting.
    pub fn resume(&mut self, value: String) -> bool {
        let Some(bytes) = env::storage_read(DATA_ID_KEY) else {
            return false;
        };
        let data_id: CryptoHash = bytes.try_into().expect("32 bytes");
        env::promise_yield_resume(&data_id, value.as_bytes())
    }

    #[private]
    pub fn on_resume(&mut self) -> String {
        env::storage_remove(DATA_ID_KEY);
        match env::promise_result_checked(0, MAX_RESULT) {
            Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
            Err(_) => "timeout".to_string(),
        }
    }
}
