//! Types and checks shared by the `multichain` contract, the MPC node and clients.
//!
//! Everything here compiles for `wasm32-unknown-unknown` (the contract) and for the
//! host (nodes, devnet, clients), so the contract and the nodes can never disagree on
//! a format or a derivation.
//!
//! - [`derivation`]: the per-(caller, path) tweak ε and the derived public key
//!   `root + ε·G`, bit-compatible with the deployed NEAR MPC network.
//! - [`ed25519`]: the same for Ed25519 domains (tweak read little-endian mod ℓ),
//!   NEAR's `ed25519:` key text and Solana addresses.
//! - [`domain`]: domains `{id, scheme}` ([`DomainId`], [`SignatureScheme`]).
//! - [`near_key`]: NEAR's `secp256k1:<base58>` public key strings.
//! - [`request`]: what `sign` takes ([`SignRequestArgs`] in three shapes, resolved
//!   to a [`SignRequest`] with a scheme-tagged [`Payload`]) and what the contract
//!   shows nodes ([`RequestId`], [`PendingRequest`]).
//! - [`response`]: the signature the network returns, tagged by scheme
//!   ([`SignatureResponse`]): ECDSA low-s normalisation, recovery id, verification.
//! - `views` (feature `views`, native): the contract's `state` view as nodes read it.
//!
//! ```
//! use primitives::{derivation, near_key};
//!
//! let root = near_key::parse_secp256k1(
//!     "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya",
//! ).unwrap();
//! let derived = derivation::derive_public_key_for(&root, "alice.near", "ethereum-1").unwrap();
//! assert!(near_key::to_near_string(&derived).starts_with("secp256k1:"));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod address;
pub mod derivation;
pub mod domain;
pub mod ed25519;
mod hex_array;
pub mod near_key;
pub mod recover;
pub mod request;
pub mod response;
#[cfg(feature = "views")]
pub mod views;

pub use derivation::Tweak;
pub use domain::{DomainConfig, DomainId, SignatureScheme};
pub use request::{
    EcdsaPayload, EddsaPayload, Payload, PendingChange, PendingChanges, PendingRequest, RequestId,
    SignRequest, SignRequestArgs,
};
pub use response::{
    EcdsaSignature, Ed25519Signature, SerializableAffinePoint, SerializableScalar,
    SignatureResponse,
};

/// Re-exported so that users of these types name the same curve implementations.
pub use curve25519_dalek;
pub use k256;
