//! Every way a chainsig command can fail, each with the sentence a user reads.

use std::path::PathBuf;

/// The one error type of the client library and the `chainsig` binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no NEAR key for {account}: {} does not exist; pass --near-key (a secret key \
         `ed25519:…` or a near-cli credentials file) or set CHAINSIG_NEAR_KEY",
        path.display()
    )]
    NoNearKey { account: String, path: PathBuf },

    #[error("the NEAR key from {origin} is not usable: {reason}")]
    BadNearKey { origin: String, reason: String },

    #[error(
        "no NEAR account given: pass --account (the account that signs, and whose keys \
         `address` shows) or set `account` in the config file"
    )]
    NoAccount,

    #[error("the config file {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    #[error(
        "chainsig has no default {what} for the NEAR network `{network}` (it knows testnet \
         and mainnet): pass --{flag} or set `{key}` in the config file"
    )]
    NoDefault {
        what: &'static str,
        network: String,
        flag: &'static str,
        key: &'static str,
    },

    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },

    #[error("NEAR RPC: {0}")]
    NearRpc(String),

    #[error("the signer contract refused the request: {0}")]
    SignRefused(String),

    #[error("the MPC network did not answer in time (the contract gave up waiting; nothing was charged but gas): {0}")]
    SignTimedOut(String),

    #[error("unexpected answer from the signer contract: {0}")]
    BadAnswer(String),

    #[error(
        "the signature the network returned does not verify for {key}: {reason}; nothing was sent"
    )]
    BadSignature { key: String, reason: String },

    #[error(
        "the contract's derived key {contract} differs from {local}, derived here from its root \
         key: refusing to use either"
    )]
    DerivationMismatch { contract: String, local: String },

    #[error("the derivation of this account and path fails: {0}")]
    Derivation(String),

    #[error(
        "the hash to sign is not a valid secp256k1 payload ({0}); change the transaction \
         (its fee, for example) and try again"
    )]
    UnsignablePayload(String),

    #[error("insufficient funds on {chain}: {address} has {have}, the transaction needs {need}")]
    InsufficientFunds {
        chain: &'static str,
        address: String,
        have: String,
        need: String,
    },

    #[error("{chain} RPC {method}: {reason}")]
    ForeignRpc {
        chain: &'static str,
        method: String,
        reason: String,
    },

    #[error("{chain} rejected the transaction: {reason}")]
    BroadcastRejected { chain: &'static str, reason: String },

    #[error("{hash} was mined in block {block} but reverted (status 0); its fee was paid")]
    Reverted { hash: String, block: u64 },

    #[error("{chain} transaction {id} was included but failed ({reason}); its fee was paid")]
    FailedOnChain {
        chain: &'static str,
        id: String,
        reason: String,
    },

    #[error(
        "{chain} transaction {id} was accepted by the node but is not confirmed after {seconds} s; \
         it may still land (check it later, or raise --timeout)"
    )]
    ConfirmationTimeout {
        chain: &'static str,
        id: String,
        seconds: u64,
    },

    #[error(
        "{hash} was accepted by the Ethereum node but has no receipt after {seconds} s; it may \
         still be mined (check it later, or raise --timeout)"
    )]
    ReceiptTimeout { hash: String, seconds: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::InvalidInput`].
    pub fn invalid(what: &'static str, reason: impl ToString) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.to_string(),
        }
    }
}
