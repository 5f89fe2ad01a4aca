//! The Chain Signatures MPC node (`mpc-node`).
//!
//! The daemon ([`daemon`]) watches the contract through [`chain`], runs the
//! threshold protocols through the [`engine`] with its peers over [`p2p`], keeps
//! its key share and stock in [`storage`], and reports on itself through
//! [`metrics`] and [`http`]. `ARCHITECTURE.md` at the repository root has the map.
#![forbid(unsafe_code)]

pub mod blame;
pub mod chain;
pub mod daemon;
pub mod ecdsa;
pub mod eddsa;
pub mod engine;
pub mod http;
pub mod metrics;
#[cfg(feature = "misbehave")]
pub mod misbehave;
pub mod p2p;
pub mod record_id;
pub mod storage;
pub mod tuning;
