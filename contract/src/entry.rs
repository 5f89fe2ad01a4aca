//! The exported methods: what near-sdk's `#[near]` on an `impl` would generate,
//! written out so that arguments are read and results written through
//! [`crate::json`] rather than `serde_json` (see there for why: far less wasm, and
//! every receipt pays for loading the code).
//!
//! Each export does what the generated one did, in the same order and with the same
//! texts: a private method refuses other callers, a method that is neither payable
//! nor a view refuses a deposit, arguments are read (unknown fields are ignored), an
//! init refuses an initialised account, then the contract is loaded (or is the
//! `NotInitialized` default), the method runs, its result is returned as JSON and a
//! changing method writes the state back.
//!
//! The exports are compiled on every target so that the native build checks and
//! tests them (`tests/entry.rs`), but only the wasm build exports them.

use crate::config::Config;
use crate::json::{self, Json};
use crate::sorted::SortedMap;
use crate::state::{CandidateInfo, DomainKey, KeyEventId};
use crate::update::ProposeUpdateArgs;
use crate::MpcContract;
use near_sdk::serde::de::DeserializeOwned;
use near_sdk::serde::{Deserialize, Serialize};
use near_sdk::state::ContractState;
use near_sdk::{env, AccountId, PublicKey};
use primitives::{DomainConfig, DomainId, EcdsaPayload, RequestId, SignRequestArgs};

/// The method's JSON arguments as `T` (a struct of the parameters).
fn args<T: DeserializeOwned>() -> T {
    T::deserialize(input()).unwrap_or_else(|e| bad_args(e))
}

/// The most JSON argument bytes a method reads: far above the largest real ones (a
/// 1232-byte Eddsa payload in hex, `init`'s candidates for tens of nodes), and a
/// bound on what the parser's tree can cost.
pub(crate) const MAX_ARGS: usize = 64 * 1024;

/// The method's JSON arguments, parsed.
fn input() -> Json {
    let input = env::input()
        .unwrap_or_else(|| env::panic_str("Expected input since method has arguments."));
    if input.len() > MAX_ARGS {
        env::panic_str(&format!(
            "the arguments are {} bytes; at most {MAX_ARGS} are accepted",
            input.len()
        ));
    }
    json::parse(&input).unwrap_or_else(|e| bad_args(e))
}

fn bad_args(error: json::Error) -> ! {
    env::panic_str(&format!(
        "Failed to deserialize input from JSON. Error: `{error}`"
    ))
}

fn returns<T: Serialize + ?Sized>(value: &T) {
    env::value_return(json::to_vec(value));
}

fn refuse_deposit(message: &str) {
    if !env::attached_deposit().is_zero() {
        env::panic_str(message);
    }
}

fn require_private(message: &str) {
    if env::current_account_id() != env::predecessor_account_id() {
        env::panic_str(message);
    }
}

fn refuse_initialized() {
    if MpcContract::state_exists() {
        env::panic_str("The contract has already been initialized");
    }
}

fn load() -> MpcContract {
    MpcContract::state_read().unwrap_or_default()
}

fn save(contract: &MpcContract) {
    contract.state_write();
}

/// Declares the exported functions: `extern "C"` and `#[no_mangle]` on wasm, plain
/// functions natively (for the unit tests, which catch their panics).
macro_rules! export {
    ($(fn $name:ident() $body:block)*) => {$(
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() {
            env::setup_panic_hook();
            $body
        }

        #[cfg(not(target_arch = "wasm32"))]
        pub fn $name() {
            $body
        }
    )*};
}

// Argument structs, one per method that takes arguments (fields as the parameters).

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct InitArgs {
    threshold: usize,
    candidates: SortedMap<AccountId, CandidateInfo>,
    config: Option<Config>,
    domains: Option<Vec<DomainConfig>>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct InitRunningArgs {
    epoch: u64,
    participants: SortedMap<AccountId, CandidateInfo>,
    threshold: usize,
    domains: Vec<DomainKey>,
    config: Option<Config>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct DomainArgs {
    domain_id: Option<DomainId>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct DerivedKeyArgs {
    path: String,
    predecessor: Option<AccountId>,
    domain_id: Option<DomainId>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct PageArgs {
    from_index: Option<u32>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct ChangesArgs {
    from: u64,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct RequestIdArgs {
    request_id: RequestId,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct SignArgs {
    request: Option<SignRequestArgs>,
    payload: Option<EcdsaPayload>,
    path: Option<String>,
    key_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct ResolveArgs {
    request_id: RequestId,
    ticket: u64,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct VotePkArgs {
    key_event: KeyEventId,
    public_key: PublicKey,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct KeyEventArgs {
    key_event: KeyEventId,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct AddDomainsArgs {
    domains: Vec<DomainConfig>,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct JoinArgs {
    url: String,
    #[serde(deserialize_with = "json::bytes32")]
    cipher_pk: [u8; 32],
    sign_pk: PublicKey,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct CandidateArgs {
    candidate: AccountId,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct KickArgs {
    kick: AccountId,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct UpdateIdArgs {
    id: u64,
}

export! {
    // ------------------------------------------------------------ init

    fn init() {
        refuse_deposit("Method init doesn't accept deposit");
        let a: InitArgs = args();
        refuse_initialized();
        save(&MpcContract::init(a.threshold, a.candidates, a.config, a.domains));
    }

    fn init_running() {
        refuse_deposit("Method init_running doesn't accept deposit");
        let a: InitRunningArgs = args();
        refuse_initialized();
        save(&MpcContract::init_running(
            a.epoch,
            a.participants,
            a.threshold,
            a.domains,
            a.config,
        ));
    }

    fn migrate() {
        require_private("Method migrate is private");
        refuse_deposit("Method migrate doesn't accept deposit");
        save(&MpcContract::migrate());
    }

    // ------------------------------------------------------------ views

    fn public_key() {
        let a: DomainArgs = args();
        returns(&load().public_key(a.domain_id));
    }

    fn derived_public_key() {
        let a: DerivedKeyArgs = args();
        returns(&load().derived_public_key(a.path, a.predecessor, a.domain_id));
    }

    fn latest_key_version() {
        returns(&load().latest_key_version());
    }

    fn state() {
        returns(&load().state());
    }

    fn config() {
        returns(load().config());
    }

    fn version() {
        returns(&load().version());
    }

    fn experimental_signature_deposit() {
        returns(&load().experimental_signature_deposit());
    }

    fn pending_requests() {
        let a: PageArgs = args();
        returns(&load().pending_requests(a.from_index, a.limit));
    }

    fn pending_changes() {
        let a: ChangesArgs = args();
        returns(&load().pending_changes(a.from, a.limit));
    }

    fn pending_request() {
        let a: RequestIdArgs = args();
        returns(&load().pending_request(a.request_id));
    }

    fn proposed_updates() {
        returns(&load().proposed_updates());
    }

    // ------------------------------------------------------------ signatures

    fn sign() {
        let a: SignArgs = args();
        let mut contract = load();
        contract.sign(a.request, a.payload, a.path, a.key_version);
        save(&contract);
    }

    fn respond() {
        refuse_deposit("Method respond doesn't accept deposit");
        // `{"request_id", "response"}`; the response is read by hand (see there).
        let mut input = input();
        let response = json::take_member(&mut input, "response")
            .and_then(json::signature_response)
            .unwrap_or_else(|e| bad_args(e));
        let a = RequestIdArgs::deserialize(input).unwrap_or_else(|e| bad_args(e));
        let mut contract = load();
        contract.respond(a.request_id, response);
        save(&contract);
    }

    fn resolve_signature() {
        require_private("Method resolve_signature is private");
        let a: ResolveArgs = args();
        MpcContract::resolve_signature(a.request_id, a.ticket);
    }

    fn fail_timed_out() {
        require_private("Method fail_timed_out is private");
        let a: RequestIdArgs = args();
        load().fail_timed_out(a.request_id);
    }

    // ------------------------------------------------------------ governance

    fn vote_pk() {
        refuse_deposit("Method vote_pk doesn't accept deposit");
        let a: VotePkArgs = args();
        let mut contract = load();
        let result = contract.vote_pk(a.key_event, a.public_key);
        returns(&result);
        save(&contract);
    }

    fn vote_reshared() {
        refuse_deposit("Method vote_reshared doesn't accept deposit");
        let a: KeyEventArgs = args();
        let mut contract = load();
        let result = contract.vote_reshared(a.key_event);
        returns(&result);
        save(&contract);
    }

    fn vote_abort_key_event() {
        refuse_deposit("Method vote_abort_key_event doesn't accept deposit");
        let a: KeyEventArgs = args();
        let mut contract = load();
        contract.vote_abort_key_event(a.key_event);
        save(&contract);
    }

    fn vote_cancel_key_event() {
        refuse_deposit("Method vote_cancel_key_event doesn't accept deposit");
        let mut contract = load();
        let result = contract.vote_cancel_key_event();
        returns(&result);
        save(&contract);
    }

    fn vote_add_domains() {
        refuse_deposit("Method vote_add_domains doesn't accept deposit");
        let a: AddDomainsArgs = args();
        let mut contract = load();
        let result = contract.vote_add_domains(a.domains);
        returns(&result);
        save(&contract);
    }

    fn join() {
        refuse_deposit("Method join doesn't accept deposit");
        let a: JoinArgs = args();
        let mut contract = load();
        contract.join(a.url, a.cipher_pk, a.sign_pk);
        save(&contract);
    }

    fn vote_join() {
        refuse_deposit("Method vote_join doesn't accept deposit");
        let a: CandidateArgs = args();
        let mut contract = load();
        let result = contract.vote_join(a.candidate);
        returns(&result);
        save(&contract);
    }

    fn vote_leave() {
        refuse_deposit("Method vote_leave doesn't accept deposit");
        let a: KickArgs = args();
        let mut contract = load();
        let result = contract.vote_leave(a.kick);
        returns(&result);
        save(&contract);
    }

    fn propose_update() {
        let input = env::input()
            .unwrap_or_else(|| env::panic_str("Expected input since method has arguments."));
        let update: ProposeUpdateArgs = near_sdk::borsh::from_slice(&input).unwrap_or_else(|e| {
            env::panic_str(&format!("Failed to deserialize input from Borsh. Error: `{e}`"))
        });
        let mut contract = load();
        let result = contract.propose_update(update);
        returns(&result);
        save(&contract);
    }

    fn vote_update() {
        refuse_deposit("Method vote_update doesn't accept deposit");
        let a: UpdateIdArgs = args();
        let mut contract = load();
        let result = contract.vote_update(a.id);
        returns(&result);
        save(&contract);
    }
}
