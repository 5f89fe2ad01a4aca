//! What a node needs to run.

use crate::chain::Chain;
use crate::metrics::Metrics;
use crate::p2p::noise::StaticKey;
use crate::storage::Store;
use near_primitives::types::AccountId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a node needs to run. [`NodeConfig::new`] fills in the defaults of
/// [`crate::tuning::Tuning`].
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
    pub metrics: Arc<Metrics>,
}

impl NodeConfig {
    pub fn new(
        account: AccountId,
        chain: Arc<Chain>,
        store: Arc<Store>,
        p2p_key: StaticKey,
        listen: SocketAddr,
        network_name: &str,
    ) -> Self {
        let metrics = Metrics::new(account.as_str());
        let mut config = NodeConfig {
            account,
            chain,
            store,
            p2p_key,
            listen,
            network_name: network_name.to_string(),
            poll_interval: Duration::ZERO,
            triple_target: 0,
            presignature_target: 0,
            max_concurrent_generations: 0,
            protocol_timeout: Duration::ZERO,
            heartbeat: Duration::ZERO,
            live_window: Duration::ZERO,
            leader_grace: Duration::ZERO,
            stock_subset: crate::engine::StockSubset::default(),
            metrics,
        };
        // The defaults live in one place: `Tuning::default`.
        crate::tuning::Tuning::default().apply(&mut config);
        config
    }
}
