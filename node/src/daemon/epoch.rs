//! Following the contract: each snapshot sets who this node is, its peers, the
//! running set and the key event, prunes key shares of past epochs, rebuilds the
//! engines that changed and tracks the pending requests.

use super::engines::{KeyerKey, SignerKey};
use super::watcher::Snapshot;
use super::Node;
use crate::chain::{ParticipantSet, RunningState};
use crate::metrics::PeerStatus;
use crate::p2p::PeerInfo;
use primitives::DomainId;
use std::collections::BTreeMap;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

/// The ids of a set's participants, in the contract's order.
pub(super) fn ids_of(set: &ParticipantSet) -> Vec<ParticipantId> {
    set.participants
        .values()
        .map(|p| ParticipantId(p.id))
        .collect()
}

/// A set as the engines take it (`None` if the contract's set is not a valid one).
pub(super) fn to_participants(set: &ParticipantSet) -> Option<Participants> {
    Participants::new(ids_of(set)).ok()
}

fn peers_of(sets: &[&ParticipantSet]) -> BTreeMap<ParticipantId, PeerInfo> {
    sets.iter()
        .flat_map(|set| set.participants.values())
        .map(|p| {
            (
                ParticipantId(p.id),
                PeerInfo {
                    address: p.url.clone(),
                    key: p.cipher_pk,
                },
            )
        })
        .collect()
}

impl Node {
    /// A new read of the contract: who is who, the running set and the key event,
    /// shares pruned once per running epoch, engines rebuilt where what they were
    /// built for changed (held messages then tried again), votes settled, requests
    /// tracked.
    pub(super) fn on_snapshot(&mut self, snapshot: &Snapshot) {
        let state = &snapshot.state;
        let running = state.running();
        let key_event = state.key_event();
        let sets: Vec<&ParticipantSet> = running
            .map(|r| &r.participants)
            .into_iter()
            .chain(key_event.map(|e| &e.participants))
            .collect();
        self.peers.replace(peers_of(&sets));
        self.me = sets
            .iter()
            .flat_map(|s| s.participants.values())
            .find(|p| p.account_id == self.config.account)
            .map(|p| ParticipantId(p.id));
        let mut everyone: Vec<ParticipantId> = sets.iter().flat_map(|s| ids_of(s)).collect();
        everyone.sort();
        everyone.dedup();
        self.everyone = everyone;
        self.update_status(snapshot, &sets);
        let running_set = running.and_then(|r| to_participants(&r.participants));
        if running_set != self.running_set {
            // Leader orders rank the running set: rank again.
            let vanished = self.vanished.values_mut().map(|(_, tracked)| tracked);
            for tracked in self.requests.values_mut().chain(vanished) {
                tracked.leader_order = None;
            }
        }
        self.running_set = running_set;
        self.running_threshold = running.map_or(0, |r| r.threshold);
        self.key_event = key_event.cloned();
        let running_epoch = running.map(|r| r.epoch);
        if let Some(epoch) = running_epoch.filter(|e| Some(*e) != self.shares_pruned_for) {
            self.shares_pruned_for = Some(epoch);
            self.forget_old_shares(running, epoch, key_event.is_none());
        }
        let Some(me) = self.me else {
            self.signers.clear();
            self.keyers.clear();
            return;
        };
        let signer_keys: BTreeMap<DomainId, SignerKey> = running
            .map(|r| {
                r.domains
                    .iter()
                    .map(|d| {
                        let key = SignerKey {
                            scheme: d.scheme,
                            epoch: r.epoch,
                            participants: ids_of(&r.participants),
                            threshold: r.threshold,
                            key_attempt: d.attempt,
                        };
                        (d.id, key)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rebuilt = self.rebuild_signers(me, signer_keys);
        let keyer_key = key_event.and_then(|event| self.key_tasks(event, running));
        if keyer_key != self.keyer_key {
            if let Some(previous) = self.keyer_key.take() {
                self.discard_failed_attempt(&previous, running);
            }
            self.rebuild_keyers(me, keyer_key);
            self.route_unrouted();
        } else if rebuilt {
            self.route_unrouted();
        }
        self.settle_votes();
        self.track_requests(&snapshot.pending);
    }

    /// Deletes the key shares the network has moved past: those of epochs before
    /// the running one (its keys are final), and, when no key event is under way,
    /// those of later epochs (left by attempts that never completed). Stolen old
    /// disks then hold no shares of the keys.
    fn forget_old_shares(&self, running: Option<&RunningState>, epoch: u64, no_key_event: bool) {
        let store = &self.config.store;
        for domain in running.iter().flat_map(|r| r.domains.iter()) {
            let epochs = match store.key_share_epochs(domain.id) {
                Ok(epochs) => epochs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list the stored key shares");
                    return;
                }
            };
            let stale = epochs
                .into_iter()
                .filter(|e| *e < epoch || (no_key_event && *e > epoch));
            for old in stale {
                match store.delete_key_share(domain.id, old) {
                    Ok(_) => tracing::info!(
                        domain = domain.id.0,
                        epoch = old,
                        running_epoch = epoch,
                        "deleted a key share of a past epoch"
                    ),
                    Err(e) => {
                        tracing::error!(epoch = old, error = %e, "cannot delete an old key share")
                    }
                }
            }
        }
    }

    /// The key event moved on from the attempt of `previous` (a next attempt, or
    /// the event ended): a share this node stored from that attempt is deleted
    /// unless the running set now signs with it. An attempt that did not complete
    /// never will, so its shares are of no use, and a share kept would be a piece
    /// of a key nobody may use (DESIGN §5: a node discards any share from an
    /// attempt that did not complete).
    fn discard_failed_attempt(&self, previous: &KeyerKey, running: Option<&RunningState>) {
        let store = &self.config.store;
        for (_, task) in &previous.tasks {
            let (domain, epoch, attempt) = (task.domain(), task.epoch(), task.attempt());
            let completed = running.is_some_and(|r| {
                r.epoch == epoch
                    && r.domains
                        .iter()
                        .any(|d| d.id == domain && d.attempt == attempt)
            });
            if completed {
                continue;
            }
            match store.key_share_attempt(domain, epoch) {
                Ok(Some(stored)) if stored == attempt => {
                    match store.delete_key_share(domain, epoch) {
                        Ok(_) => tracing::info!(
                            domain = domain.0,
                            epoch,
                            attempt,
                            "deleted the key share of an attempt that did not complete"
                        ),
                        Err(e) => {
                            tracing::error!(domain = domain.0, epoch, error = %e, "cannot delete a key share")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(domain = domain.0, epoch, error = %e, "cannot read a key share")
                }
            }
        }
    }

    fn update_status(&self, snapshot: &Snapshot, sets: &[&ParticipantSet]) {
        let running = snapshot.state.running();
        let participants: BTreeMap<u32, PeerStatus> = sets
            .iter()
            .flat_map(|s| s.participants.values())
            .map(|p| {
                let status = PeerStatus {
                    id: p.id,
                    account_id: p.account_id.to_string(),
                    url: p.url.clone(),
                    live: self.is_live(ParticipantId(p.id), Instant::now()),
                };
                (p.id, status)
            })
            .collect();
        self.config.metrics.set_status(|status| {
            status.me = self.me.map(|p| p.0);
            status.contract_state = snapshot.state.name().to_string();
            status.epoch = running.map(|r| r.epoch);
            status.threshold = running.map(|r| r.threshold);
            status.key_event_attempt = snapshot.state.key_event().map(|e| e.attempt);
            status.participants = participants.into_values().collect();
            status.pending_requests = snapshot.pending.len();
        });
    }
}
