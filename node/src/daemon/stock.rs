//! Stock: every signing engine kept topped up with triples and presignatures,
//! and what it holds reported.

use super::Node;
use crate::engine::{StockCount, StockTargets};
use crate::metrics::Stock;
use primitives::DomainId;
use std::collections::BTreeMap;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

impl Node {
    /// Moves the signing engines on: abandons their runs with peers that went
    /// silent, expires old runs, and tops up the stock of each engine with a key
    /// among the eligible participants. Returns the stock each one had.
    pub(super) fn tend_signers(
        &mut self,
        silent: &[ParticipantId],
        eligible: &Participants,
        now: Instant,
    ) -> BTreeMap<DomainId, StockCount> {
        let targets = StockTargets {
            triples: self.config.triple_target,
            presignatures: self.config.presignature_target,
            max_concurrent: self.config.max_concurrent_generations,
        };
        let mut stocks = BTreeMap::new();
        for (domain, signer) in self.signers.iter_mut() {
            let engine = &mut signer.engine;
            if !silent.is_empty() {
                engine.abandon_runs_with(silent);
            }
            engine.expire(now);
            if !engine.has_key() {
                continue;
            }
            let stock = match engine.own_stock(eligible) {
                Ok(stock) => stock,
                Err(e) => {
                    tracing::error!(domain = domain.0, error = %e, "cannot read the stock");
                    continue;
                }
            };
            engine.top_up_stock(eligible, stock, &targets);
            stocks.insert(*domain, stock);
        }
        stocks
    }

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
