//! Stock: every signing engine kept topped up with triples and presignatures,
//! and what it holds reported.

use super::Node;
use crate::engine::StockCount;
use crate::metrics::Stock;
use primitives::DomainId;
use std::collections::BTreeMap;

impl Node {
    /// Publishes the stock (as this turn found it) and the runs under way.
    pub(super) fn report_stock(&self, stocks: &BTreeMap<DomainId, StockCount>) {
        let running = self.signers.values().map(|s| s.engine.running()).sum();
        let stock = |count: &StockCount| Stock {
            triples: count.triples,
            presignatures: count.presignatures,
        };
        self.config.metrics.set_status(|status| {
            status.stock = stocks
                .get(&DomainId::LEGACY_ECDSA)
                .map(stock)
                .unwrap_or_default();
            status.stock_by_domain = stocks.iter().map(|(d, c)| (d.0, stock(c))).collect();
            status.running_protocols = running;
        });
    }
}
