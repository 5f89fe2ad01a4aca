//! The Chain Signatures client: what a NEAR account controls on other chains, and
//! transactions there signed by the MPC network.
//!
//! The four steps of a chain signature (DESIGN §1), for each chain:
//! 1. build the foreign transaction and the hash that chain signs
//!    ([`ethereum::transaction`]: an EIP-1559 signing hash; [`bitcoin::spend`]: one
//!    BIP-143 sighash per input; [`solana::transfer`]: the message bytes themselves);
//! 2. call `sign` on the signer contract with it ([`near::Near::sign`]), as the
//!    account whose derived key ([`ecdsa::EcdsaKey`], [`eddsa::Ed25519Key`]) owns
//!    the funds;
//! 3. the MPC network signs and the contract returns the signature, which is checked
//!    here against the derived key before anything is relayed;
//! 4. assemble the signed transaction and broadcast it (Ethereum JSON-RPC,
//!    Esplora, Solana JSON-RPC).
//!
//! The `chainsig` binary is a command line over this library.

pub mod address;
pub mod bitcoin;
pub mod config;
pub mod ecdsa;
pub mod eddsa;
pub mod error;
pub mod ethereum;
mod json_rpc;
pub mod near;
pub mod progress;
pub mod sign;
pub mod solana;

pub use error::{Error, Result};
pub use near::Near;
pub use progress::Progress;
