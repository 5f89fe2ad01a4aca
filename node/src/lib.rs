//! The Chain Signatures MPC node (`mpc-node`).
//!
//! Built so far: the peer-to-peer layer ([`p2p`]). The chain watcher, protocol
//! orchestration, storage, HTTP endpoints and the daemon itself follow (issue 5).
#![forbid(unsafe_code)]

pub mod p2p;
