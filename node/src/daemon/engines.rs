//! The engines per domain: which ones the contract calls for (a signing engine per
//! domain of the running set with a key, a key engine per domain of the key event's
//! current attempt), and building and dropping them as that changes.

use super::epoch::{ids_of, to_participants};
use super::Node;
use crate::chain::{KeyEvent, RunningState};
use crate::engine::{for_domain, Clock, DomainEngine, EngineSetup, KeyLoad, KeyTask};
use primitives::{DomainId, SignatureScheme};
use std::collections::BTreeMap;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

/// What a domain's signing engine was built for: the running set and the
/// attempt its key shares come from. A change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SignerKey {
    pub(super) scheme: SignatureScheme,
    pub(super) epoch: u64,
    pub(super) participants: Vec<ParticipantId>,
    pub(super) threshold: usize,
    /// The key-event attempt of the running set's shares of the domain.
    pub(super) key_attempt: u64,
}

/// The signing engine of one domain with a key.
pub(super) struct Signer {
    pub(super) engine: Box<dyn DomainEngine>,
    pub(super) key: SignerKey,
}

/// What the key engines were built for: one attempt of the contract's key event,
/// with the task of each domain it covers (one for keygen, every domain for a
/// resharing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeyerKey {
    pub(super) participants: Vec<ParticipantId>,
    pub(super) threshold: usize,
    pub(super) tasks: Vec<(SignatureScheme, KeyTask)>,
}

impl KeyerKey {
    pub(super) fn resharing(&self) -> bool {
        matches!(self.tasks.first(), Some((_, KeyTask::Reshare { .. })))
    }
}

/// The participant set of `ids`, if it is a valid set that includes `me` (an engine
/// is built only for a set this node belongs to).
fn set_with(ids: &[ParticipantId], me: ParticipantId) -> Option<Participants> {
    Participants::new(ids.iter().copied())
        .ok()
        .filter(|set| set.contains(me))
}

impl Node {
    /// The key tasks of the contract's key event: keygen of its domain, or the
    /// resharing of every domain of the running set.
    pub(super) fn key_tasks(
        &mut self,
        event: &KeyEvent,
        running: Option<&RunningState>,
    ) -> Option<KeyerKey> {
        let tasks = match (event.domain, running) {
            (Some(domain), _) => vec![(
                domain.scheme,
                KeyTask::Generate {
                    epoch: event.epoch,
                    domain: domain.id,
                    attempt: event.attempt,
                },
            )],
            (None, Some(previous)) => {
                let old = to_participants(&previous.participants)?;
                previous
                    .domains
                    .iter()
                    .map(|key| {
                        let task = KeyTask::Reshare {
                            epoch: event.epoch,
                            domain: key.id,
                            old_participants: old.clone(),
                            old_threshold: previous.threshold,
                            public_key: key.public_key.clone(),
                            attempt: event.attempt,
                        };
                        (key.scheme, task)
                    })
                    .collect()
            }
            (None, None) => {
                tracing::error!(epoch = event.epoch, "a resharing without a running set");
                return None;
            }
        };
        Some(KeyerKey {
            participants: ids_of(&event.participants),
            threshold: event.threshold,
            tasks,
        })
    }

    /// The signing engines for the running set, one per domain with a key, each
    /// with this node's share of the running epoch's key if it holds the one from
    /// the attempt the contract names. Engines whose domain and set are unchanged
    /// are kept. Returns whether any engine was built.
    pub(super) fn rebuild_signers(
        &mut self,
        me: ParticipantId,
        keys: BTreeMap<DomainId, SignerKey>,
    ) -> bool {
        let mut old = std::mem::take(&mut self.signers);
        let mut rebuilt = false;
        for (domain, key) in keys {
            match old.remove(&domain) {
                Some(signer) if signer.key == key => {
                    self.signers.insert(domain, signer);
                }
                previous => {
                    rebuilt = true;
                    if let Some(signer) = self.build_signer(me, domain, key, previous) {
                        self.signers.insert(domain, signer);
                    }
                }
            }
        }
        for domain in old.keys() {
            self.requests.retain(|_, t| t.domain != *domain);
        }
        rebuilt
    }

    fn build_signer(
        &mut self,
        me: ParticipantId,
        domain: DomainId,
        key: SignerKey,
        previous: Option<Signer>,
    ) -> Option<Signer> {
        let participants = set_with(&key.participants, me)?;
        let mut engine = for_domain(
            key.scheme,
            self.engine_setup(domain, key.epoch, me, participants, key.threshold),
        );
        match engine.load_key(key.key_attempt) {
            Ok(KeyLoad::Loaded) => {
                // Stock made under another epoch's key shares can never be used again.
                match engine.retire_other_epochs() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        domain = domain.0,
                        retired = n,
                        "retired stock of an earlier epoch"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot retire old stock"),
                }
            }
            Ok(KeyLoad::OtherAttempt(stored)) => tracing::error!(
                domain = domain.0,
                epoch = key.epoch,
                stored,
                attempt = key.key_attempt,
                "the key share stored here is from another attempt than the one the \
                 contract completed: this node cannot sign in this domain until a \
                 resharing includes it"
            ),
            Ok(KeyLoad::Missing) => tracing::error!(
                domain = domain.0,
                epoch = key.epoch,
                "this node holds no key share of the domain for the running epoch and \
                 cannot sign in it; it takes part again once a resharing includes it"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key share");
                return None;
            }
        }
        engine.set_stock_subset(self.config.stock_subset);
        // Peers that moved on first may have sent us runs of this set already.
        if let Some(mut previous) = previous {
            engine.adopt_early(previous.engine.take_early());
        }
        if let Some(keyer) = self.keyers.get_mut(&domain) {
            engine.adopt_early(keyer.take_early());
        }
        // The new engine learns the domain's pending requests from this snapshot again.
        self.requests.retain(|_, t| t.domain != domain);
        tracing::info!(domain = domain.0, scheme = ?key.scheme, epoch = key.epoch, me = me.0, "signing engine ready");
        Some(Signer { engine, key })
    }

    /// What a signing or key engine of this node is built with: the node's store,
    /// timeout and step workers, the system clock and a fresh seed.
    fn engine_setup(
        &self,
        domain: DomainId,
        epoch: u64,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> EngineSetup {
        EngineSetup {
            domain,
            epoch,
            me,
            participants,
            threshold,
            store: self.config.store.clone(),
            timeout: self.config.protocol_timeout,
            clock: Clock::system(),
            seed: EngineSetup::os_seed(),
            steps: self.steps.clone(),
        }
    }

    /// The key engines for the key event's current attempt, one per domain (a new
    /// attempt is new engines: runs and shares of the old one are void).
    pub(super) fn rebuild_keyers(&mut self, me: ParticipantId, key: Option<KeyerKey>) {
        let mut old = std::mem::take(&mut self.keyers);
        let now = Instant::now();
        for keyer in old.values_mut() {
            keyer.judge_ended_attempt(now);
            for report in keyer.drain_peer_reports() {
                self.take_peer_report(report, now);
            }
        }
        self.keyer_key = key.clone();
        self.owed_vote = None;
        self.keys_stored.clear();
        let participants = key.as_ref().and_then(|k| set_with(&k.participants, me));
        let (Some(key), Some(participants)) = (key, participants) else {
            for (domain, mut keyer) in old {
                if let Some(signer) = self.signers.get_mut(&domain) {
                    signer.engine.adopt_early(keyer.take_early());
                }
            }
            return;
        };
        for (scheme, task) in &key.tasks {
            let domain = task.domain();
            let mut engine = for_domain(
                *scheme,
                self.engine_setup(
                    domain,
                    task.epoch(),
                    me,
                    participants.clone(),
                    key.threshold,
                ),
            );
            engine.set_key_task(Some(task.clone()));
            if let KeyTask::Reshare {
                old_participants, ..
            } = task
            {
                // Resharing starts from the running epoch's share of the completed attempt.
                let signing = self.signers.get(&domain).map(|s| &s.key);
                if let Some(signing) = signing.filter(|_| old_participants.contains(me)) {
                    match engine.load_reshare_input(signing.epoch, signing.key_attempt) {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            domain = domain.0,
                            "no share of the old key to reshare from"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the key share to reshare")
                        }
                    }
                }
            }
            match engine.resume_finished_key_task() {
                // Restarted after storing this attempt's share: vote again, run nothing.
                Ok(true) => {
                    tracing::info!(domain = domain.0, "this attempt's share is stored already")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the key share"),
            }
            if let Some(mut previous) = old.remove(&domain) {
                engine.adopt_early(previous.take_early());
            }
            tracing::info!(
                domain = domain.0,
                epoch = task.epoch(),
                attempt = task.attempt(),
                me = me.0,
                "key engine ready"
            );
            self.keyers.insert(domain, engine);
        }
    }

    /// Moves the key engines on: expires their runs and proposes the key task
    /// (every participant proposes; the engine makes it one run).
    pub(super) fn run_key_tasks(&mut self, now: Instant) {
        for keyer in self.keyers.values_mut() {
            keyer.expire(now);
            if let Err(e) = keyer.propose_key_task() {
                tracing::debug!(error = %e, "cannot take part in the key task");
            }
        }
    }
}
