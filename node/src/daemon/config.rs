//! What a node needs to run.

use crate::chain::Chain;
use crate::metrics::Metrics;
use crate::p2p::noise::StaticKey;
use crate::storage::Store;
use crate::tuning::Tuning;
use near_primitives::types::AccountId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a node needs to run. [`NodeConfig::new`] fills in the settings from a
/// [`Tuning`] (config.toml's, or its defaults).
pub struct NodeConfig {
    pub account: AccountId,
    pub chain: Arc<Chain>,
    pub store: Arc<Store>,
    pub p2p_key: StaticKey,
    pub listen: SocketAddr,
    /// Names the network in p2p handshakes (the contract account).
    pub network_name: String,
    /// How often the contract is read.
    pub poll_interval: Duration,
    /// Triples and presignatures this node keeps in stock (of its own).
    pub triple_target: usize,
    pub presignature_target: usize,
    /// Generation runs (triples, presignatures) this node leads at once.
    pub max_concurrent_generations: usize,
    /// How long a protocol run may take before it is abandoned.
    pub protocol_timeout: Duration,
    /// How often heartbeats go to every peer.
    pub heartbeat: Duration,
    /// A peer not heard from for this long is treated as down.
    pub live_window: Duration,
    /// How long the k-th live node in a request's leader order waits (times k)
    /// before it leads the request too.
    pub leader_grace: Duration,
    /// Who takes part in the triple and presignature runs this node proposes.
    pub stock_subset: crate::engine::StockSubset,
    /// Bytes of one peer's messages held at a time, inbound and (separately)
    /// outbound bulk (`p2p::budget`).
    pub peer_budget: usize,
    pub metrics: Arc<Metrics>,
}

impl NodeConfig {
    /// A node's config with the settings of `tuning` (whose defaults,
    /// [`Tuning::default`], are the one place defaults are written).
    pub fn new(
        account: AccountId,
        chain: Arc<Chain>,
        store: Arc<Store>,
        p2p_key: StaticKey,
        listen: SocketAddr,
        network_name: &str,
        tuning: &Tuning,
    ) -> Self {
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let metrics = Metrics::new(account.as_str());
        NodeConfig {
            account,
            chain,
            store,
            p2p_key,
            listen,
            network_name: network_name.to_string(),
            poll_interval: Duration::from_millis(tuning.poll_interval_ms),
            triple_target: count(tuning.triple_target),
            presignature_target: count(tuning.presignature_target),
            max_concurrent_generations: count(tuning.max_concurrent_generations),
            protocol_timeout: Duration::from_secs(tuning.protocol_timeout_secs),
            heartbeat: Duration::from_millis(tuning.heartbeat_ms),
            live_window: Duration::from_millis(tuning.live_window_ms),
            leader_grace: Duration::from_millis(tuning.leader_grace_ms),
            stock_subset: tuning.stock_subset,
            peer_budget: count(tuning.peer_buffer_bytes),
            metrics,
        }
    }
}
