//! Every way a call can be refused, with its text. The texts are part of the
//! contract's API: clients and nodes match on them, so change them only with a
//! version bump.

use crate::state::KeyEventId;
use core::fmt;
use near_sdk::{env, AccountId, Gas, NearToken};
use primitives::{DomainId, SignatureScheme};

#[derive(Debug)]
pub enum Error {
    // --- sign ---
    NotReady {
        state: &'static str,
    },
    SignArgsShape,
    SignArgsMissing,
    SignArgs(primitives::request::SignArgsError),
    UnknownDomain {
        domain: DomainId,
    },
    DomainWithoutKey {
        domain: DomainId,
    },
    PayloadScheme {
        domain: DomainId,
        scheme: SignatureScheme,
        got: &'static str,
    },
    PathTooLong {
        len: usize,
        max: u32,
    },
    Deposit {
        required: NearToken,
        got: NearToken,
    },
    Gas {
        required: Gas,
        got: Gas,
    },
    TooManyDuplicates {
        max: u32,
    },
    Busy {
        pending: u32,
    },
    CallerBusy {
        max: u32,
    },
    TweakOutOfRange,

    // --- respond ---
    NotAParticipant {
        account: AccountId,
    },
    UnknownRequest,
    AlreadyAnswered,
    BadSignature(primitives::response::ResponseError),
    ResponseScheme {
        domain: DomainId,
        scheme: SignatureScheme,
        got: SignatureScheme,
    },

    // --- governance ---
    InitByOther,
    CandidateKeyMismatch {
        key: AccountId,
        account_id: AccountId,
    },
    NoCandidates,
    BadThreshold {
        threshold: usize,
        participants: usize,
    },
    WrongState {
        expected: &'static str,
        actual: &'static str,
    },
    NotACandidate {
        account: AccountId,
    },
    AlreadyParticipant {
        account: AccountId,
    },
    CandidateField {
        what: &'static str,
        max: usize,
    },
    TooManyCandidates {
        max: usize,
    },
    KeyNotOfScheme {
        scheme: SignatureScheme,
    },
    WrongKeyEvent {
        expected: KeyEventId,
        got: KeyEventId,
    },
    AttemptOver {
        got: u64,
        current: u64,
    },
    NotInKeyEvent {
        account: AccountId,
    },
    NoKeyEvent,
    NothingToFallBackTo,
    NoDomains,
    DomainIdOrder {
        expected: DomainId,
        got: DomainId,
    },
    P2pKeyInUse,
    CandidateExpired {
        account: AccountId,
    },
    WouldBreakThreshold {
        left: usize,
        threshold: usize,
    },

    // --- updates ---
    EmptyUpdate,
    UpdateDeposit {
        required: NearToken,
        got: NearToken,
    },
    UnknownUpdate {
        id: u64,
    },
    BadConfig(&'static str),
    StateVersion {
        found: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            NotReady { state } => write!(
                f,
                "the signer is not ready: the contract is {state}; wait until key generation has finished"
            ),
            SignArgsShape => f.write_str(
                "pass either `request` ({\"request\": {\"payload_v2\", \"path\", \"domain_id\"}}) or `payload` and `path`, not both",
            ),
            SignArgsMissing => f.write_str(
                "sign needs a request: {\"request\": {\"payload_v2\": {\"Ecdsa\": \"<hex>\"}, \"path\": \"ethereum-1\", \"domain_id\": 0}}",
            ),
            SignArgs(e) => write!(f, "{e}"),
            UnknownDomain { domain } => write!(f, "there is no domain {domain}"),
            DomainWithoutKey { domain } => write!(
                f,
                "domain {domain} has no key yet: its key generation is under way"
            ),
            PayloadScheme { domain, scheme, got } => write!(
                f,
                "domain {domain} signs with {scheme}: its payload must be `{}`, got `{got}`",
                scheme.payload_kind()
            ),
            PathTooLong { len, max } => {
                write!(f, "path is {len} bytes long; at most {max} bytes are allowed")
            }
            Deposit { required, got } => write!(
                f,
                "sign needs an attached deposit of {} yoctoNEAR, got {} (the deposit proves a full-access key signed the call)",
                required.as_yoctonear(),
                got.as_yoctonear()
            ),
            Gas { required, got } => write!(
                f,
                "sign needs at least {} Tgas attached, got {} Tgas (gas beyond the minimum buys a longer wait for the answer)",
                required.as_tgas(),
                got.as_tgas()
            ),
            TooManyDuplicates { max } => write!(
                f,
                "{max} identical requests are already waiting for this signature; wait for their answer"
            ),
            Busy { pending } => write!(
                f,
                "the signer is busy: {pending} requests are waiting; try again later"
            ),
            CallerBusy { max } => write!(
                f,
                "you already have {max} requests waiting, the most one account may; wait for their answers"
            ),
            TweakOutOfRange => {
                f.write_str(&primitives::derivation::TweakOutOfRange.to_string())
            }
            NotAParticipant { account } => {
                write!(f, "{account} is not a participant of the current epoch")
            }
            UnknownRequest => f.write_str(
                "no pending signature request matches: it was answered, timed out, or never made",
            ),
            AlreadyAnswered => f.write_str("this signature request has already been answered"),
            BadSignature(e) => write!(f, "invalid signature: {e}"),
            ResponseScheme { domain, scheme, got } => write!(
                f,
                "invalid signature: domain {domain} signs with {scheme}, the answer is {got}"
            ),
            InitByOther => {
                f.write_str("init must be called by the contract account itself (deploy and init in one transaction)")
            }
            CandidateKeyMismatch { key, account_id } => write!(
                f,
                "candidate entry {key} has account_id {account_id}: they must match"
            ),
            NoCandidates => f.write_str("init needs at least one candidate"),
            BadThreshold { threshold, participants } => write!(
                f,
                "threshold {threshold} is invalid for {participants} participants: it must be at least 2 and at most the number of participants"
            ),
            WrongState { expected, actual } => {
                write!(f, "this call needs the contract to be {expected}, but it is {actual}")
            }
            NotACandidate { account } => write!(f, "{account} is not a candidate"),
            AlreadyParticipant { account } => write!(f, "{account} is already a participant"),
            CandidateField { what, max } => write!(f, "{what} must be at most {max} bytes"),
            TooManyCandidates { max } => write!(
                f,
                "there are already {max} candidates waiting for votes; try again later"
            ),
            KeyNotOfScheme { scheme } => {
                write!(f, "the public key must be a valid {scheme} key")
            }
            WrongKeyEvent { expected, got } => write!(
                f,
                "the key event under way is epoch {} domain {} attempt {}, not epoch {} domain {}",
                expected.epoch,
                domain_text(expected.domain_id),
                expected.attempt,
                got.epoch,
                domain_text(got.domain_id)
            ),
            AttemptOver { got, current } => write!(
                f,
                "key event attempt {got} is not current: the current attempt is {current}"
            ),
            NotInKeyEvent { account } => {
                write!(f, "{account} is not a participant of the key event under way")
            }
            NoKeyEvent => f.write_str("no key event is under way"),
            NothingToFallBackTo => f.write_str(
                "the first key generation cannot be cancelled: there is no running set to go back to",
            ),
            NoDomains => f.write_str("give at least one domain"),
            DomainIdOrder { expected, got } => write!(
                f,
                "domain ids are assigned in order: the next domain is {expected}, got {got}"
            ),
            P2pKeyInUse => f.write_str(
                "this cipher_pk or sign_pk is already registered by another participant or candidate",
            ),
            CandidateExpired { account } => write!(
                f,
                "the join request of {account} has expired; it must call join again"
            ),
            WouldBreakThreshold { left, threshold } => write!(
                f,
                "removing this participant would leave {left} participants, fewer than the threshold {threshold}"
            ),
            EmptyUpdate => f.write_str("an update must carry new code, a new config, or both"),
            UpdateDeposit { required, got } => write!(
                f,
                "storing this update proposal needs a deposit of {} yoctoNEAR, got {}",
                required.as_yoctonear(),
                got.as_yoctonear()
            ),
            UnknownUpdate { id } => write!(f, "no update proposal with id {id}"),
            BadConfig(why) => write!(f, "invalid config: {why}"),
            StateVersion { found } => write!(
                f,
                "cannot migrate from contract state version {found}: this code reads version {} only",
                crate::STATE_VERSION
            ),
        }
    }
}

fn domain_text(domain: Option<DomainId>) -> String {
    match domain {
        Some(d) => d.to_string(),
        None => "(all, resharing)".into(),
    }
}

/// Aborts the call with the error's text: state changes and promises are rolled back.
pub fn fail(error: Error) -> ! {
    env::panic_str(&error.to_string())
}

/// `Result::unwrap` for contract errors.
pub trait OrFail<T> {
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for Result<T, Error> {
    fn or_fail(self) -> T {
        self.unwrap_or_else(|e| fail(e))
    }
}
