//! Every way a call can be refused, with its text. The texts are part of the
//! contract's API: clients and nodes match on them, so change them only with a
//! version bump.

use core::fmt;
use near_sdk::{env, AccountId, Gas, NearToken};

#[derive(Debug)]
pub enum Error {
    // --- sign ---
    NotReady {
        state: &'static str,
    },
    SignArgsShape,
    SignArgsMissing,
    PathTooLong {
        len: usize,
        max: u32,
    },
    KeyVersion {
        got: u32,
        latest: u32,
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
    TweakOutOfRange,

    // --- respond ---
    NotAParticipant {
        account: AccountId,
    },
    UnknownRequest,
    AlreadyAnswered,
    BadSignature(primitives::response::ResponseError),

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
    VotedOtherKey,
    KeyMismatch,
    NotSecp256k1Key,
    WouldBreakThreshold {
        left: usize,
        threshold: usize,
    },
    WrongEpoch {
        expected: u64,
        got: u64,
    },
    NotANewParticipant {
        account: AccountId,
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
                "pass either `request` ({\"request\": {\"payload\", \"path\", \"key_version\"}}) or `payload` and `path`, not both",
            ),
            SignArgsMissing => f.write_str(
                "sign needs `payload` and `path`: {\"payload\": [32 bytes] or \"<hex>\", \"path\": \"ethereum-1\"}",
            ),
            PathTooLong { len, max } => {
                write!(f, "path is {len} bytes long; at most {max} bytes are allowed")
            }
            KeyVersion { got, latest } => write!(
                f,
                "key version {got} is not supported: the latest key version is {latest}"
            ),
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
                "threshold {threshold} is invalid for {participants} participants: it must be at least 1 and at most the number of participants"
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
            VotedOtherKey => f.write_str("you have already voted for a different public key"),
            KeyMismatch => f.write_str(
                "the contract is already Running with a different public key than the one voted for",
            ),
            NotSecp256k1Key => f.write_str("the public key must be a valid secp256k1 key"),
            WouldBreakThreshold { left, threshold } => write!(
                f,
                "removing this participant would leave {left} participants, fewer than the threshold {threshold}"
            ),
            WrongEpoch { expected, got } => {
                write!(f, "resharing finishes epoch {expected}, not {got}")
            }
            NotANewParticipant { account } => write!(
                f,
                "{account} is not a participant of the epoch being reshared to"
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
                "cannot migrate from contract state version {found}: this code knows versions up to {}",
                crate::STATE_VERSION
            ),
        }
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
