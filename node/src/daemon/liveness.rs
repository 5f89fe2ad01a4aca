//! Liveness and blame: heartbeats to every peer, who is live, and who is left out
//! of new runs because its runs keep failing.
//!
//! Every node sends a heartbeat to every peer; a peer heard from within
//! [`NodeConfig::live_window`](super::NodeConfig::live_window) is live. New
//! triples are made in pairs among a rotating subset of exactly the threshold of
//! live participants (or all of them, see
//! [`NodeConfig::stock_subset`](super::NodeConfig::stock_subset)), a presignature
//! among the live holders of two triples, a signature among the threshold of live
//! holders of a presignature (with subsets: all of them), and runs with a peer
//! that goes silent are abandoned at once instead of at the protocol timeout.

use super::Node;
use crate::blame::{FailureKind, PeerReport};
use crate::engine::NodeMessage;
use crate::p2p::Network;
use primitives::DomainId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

impl Node {
    /// Compares who is live now with the last check: logs who went silent and who
    /// came back, and returns the peers that went silent (their runs are abandoned).
    pub(super) fn notice_silent(&mut self, now: Instant) -> Vec<ParticipantId> {
        let everyone = Participants::new(self.everyone.iter().copied()).ok();
        let live_now: BTreeSet<ParticipantId> = everyone
            .iter()
            .flat_map(|set| set.iter())
            .filter(|p| self.is_live(*p, now))
            .collect();
        let silent: Vec<ParticipantId> = self.was_live.difference(&live_now).copied().collect();
        for peer in &silent {
            tracing::warn!(peer = peer.0, "peer went silent; abandoning its runs");
        }
        for peer in live_now.difference(&self.was_live) {
            if Some(*peer) != self.me {
                tracing::info!(peer = peer.0, "peer is live");
            }
        }
        self.was_live = live_now;
        silent
    }

    pub(super) fn is_live(&self, peer: ParticipantId, now: Instant) -> bool {
        Some(peer) == self.me
            || self
                .last_heard
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) <= self.config.live_window)
    }

    /// The members of `set` this node considers live (itself included).
    pub(super) fn live_of(&self, set: &Participants, now: Instant) -> Option<Participants> {
        Participants::new(set.iter().filter(|p| self.is_live(*p, now))).ok()
    }

    pub(super) fn send_heartbeats(&self, network: &Network) {
        // Without a share of any running key (say it missed the end of a resharing)
        // and outside any key event this node cannot take part; staying silent
        // keeps the others from inviting it.
        let keyless = self.keyers.is_empty()
            && !self.signers.is_empty()
            && self.signers.values().all(|s| !s.engine.has_key());
        if keyless {
            return;
        }
        let ping = Arc::new(NodeMessage::Ping.encode(DomainId::LEGACY_ECDSA));
        for peer in self.everyone.iter().filter(|p| Some(**p) != self.me) {
            // A full queue means the peer is unreachable; the heartbeat is moot.
            let _ = network.send(*peer, ping.clone());
        }
    }

    /// `live` without the peers blame excludes now, unless that leaves fewer than
    /// the threshold: then a suspect peer is better than no service at all.
    pub(super) fn eligible(&self, live: &Participants, now: Instant) -> Participants {
        let kept = live.iter().filter(|p| !self.blame.is_excluded(*p, now));
        match Participants::new(kept) {
            Ok(kept) if kept.len() >= self.running_threshold => kept,
            _ => live.clone(),
        }
    }

    /// Feeds what the engines learned about peers into the blame record.
    pub(super) fn take_peer_reports(&mut self) {
        let now = Instant::now();
        let engines = self
            .signers
            .values_mut()
            .map(|s| &mut s.engine)
            .chain(self.keyers.values_mut());
        let reports: Vec<PeerReport> = engines.flat_map(|e| e.drain_peer_reports()).collect();
        for report in reports {
            self.take_peer_report(report, now);
        }
    }

    /// Feeds one engine report into the blame record.
    pub(super) fn take_peer_report(&mut self, report: PeerReport, now: Instant) {
        match report {
            PeerReport::Failure { peer, kind, detail } => {
                self.peer_failed(peer, kind, &detail, now)
            }
            PeerReport::Success { peer } => self.blame.success(peer, now),
        }
    }

    pub(super) fn peer_failed(
        &mut self,
        peer: ParticipantId,
        kind: FailureKind,
        detail: &str,
        now: Instant,
    ) {
        tracing::debug!(peer = peer.0, %kind, detail, "a run failed because of a peer");
        if kind == FailureKind::OverBudget {
            self.inbox.to_cut_off.insert(peer);
        }
        if let Some(exclusion) = self.blame.failure(peer, kind, now) {
            tracing::warn!(
                peer = peer.0,
                %kind,
                detail,
                exclusion_secs = exclusion.as_secs(),
                "a peer keeps failing our runs: left out of new runs for a while"
            );
        }
    }

    /// Publishes the blame record, with the peers' accounts.
    pub(super) fn report_blame(&self, now: Instant) {
        let mut blamed = self.blame.report(now);
        self.config.metrics.set_status(|status| {
            for entry in blamed.iter_mut() {
                if let Some(peer) = status.participants.iter().find(|p| p.id == entry.id) {
                    entry.account_id = peer.account_id.clone();
                }
            }
            status.blamed = blamed;
        });
    }
}
