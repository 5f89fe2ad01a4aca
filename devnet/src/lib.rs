//! A local NEAR-compatible chain: nearcore's own VM (`near-vm-runner`, Wasmtime)
//! executing contracts, our receipt runtime around it, and NEAR JSON-RPC.
//!
//! Start one in-process with [`Devnet::start`] (tests) or run the `devnet` binary
//! (`devnet --home DIR init`, `devnet --home DIR run`).

pub mod chain;
pub mod ext;
pub mod fees;
pub mod home;
pub mod node;
pub mod receipt;
pub mod rpc;
pub mod runtime;
pub mod store;

pub use chain::Genesis;
pub use node::{Devnet, DevnetConfig};
