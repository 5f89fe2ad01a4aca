//! What must hold after every step: checked against what the ledger remembers.

use super::*;

/// What the invariants remember across steps.
#[derive(Default)]
pub(super) struct Ledger {
    /// Stock ids each node ever held, per kind (by table name), and those gone.
    pub(super) held: BTreeMap<(u32, &'static str), BTreeSet<RecordId>>,
    pub(super) gone: BTreeMap<(u32, &'static str), BTreeSet<RecordId>>,
    /// The run that made each triple or presignature id.
    pub(super) made_by: BTreeMap<RecordId, Job>,
    /// The run that consumed each triple or presignature id.
    pub(super) used_by: BTreeMap<RecordId, Job>,
    /// Nonces of all signatures, with the request each answered.
    pub(super) nonces: BTreeMap<Vec<u8>, (RequestId, u64)>,
}

impl<S: Suite> World<S> {
    /// A leader's new run: a record id is made by one run and used by one run.
    pub(super) fn check_launch(&mut self, me: u32, job: &Job) {
        let (made, used): (Vec<RecordId>, Vec<RecordId>) = match job {
            Job::Triple { id } => (vec![*id], vec![]),
            Job::Presign { id, triples } => (vec![*id], triples.clone()),
            Job::Sign { presignature, .. } => (vec![], vec![*presignature]),
            Job::Keygen { .. } | Job::Reshare { .. } => return,
        };
        for id in made {
            if id.owner().0 != me {
                self.fail(format!("node {me} proposed {id}, owned by another"));
            }
            if let Some(earlier) = self.ledger.made_by.insert(id, job.clone()) {
                self.fail(format!(
                    "record id {id} made twice: {earlier:?} and {job:?}"
                ));
            }
        }
        for id in used {
            if let Some(earlier) = self.ledger.used_by.insert(id, job.clone()) {
                self.fail(format!("record {id} used twice: {earlier:?} and {job:?}"));
            }
        }
        self.note(format!("node {me} leads {}", job_text(job)));
    }

    /// The invariants, after every step.
    pub(super) fn check_invariants(&mut self) {
        for i in 0..self.nodes.len() {
            let me = self.nodes[i].id;
            let Some(store) = self.nodes[i].store.clone() else {
                continue;
            };
            // Stock: an id stored at a node once is never stored there again.
            for kind in [S::TRIPLES, S::PRESIGNATURES] {
                let now: BTreeSet<RecordId> = store.record_ids(kind).unwrap().into_iter().collect();
                let key = (me, kind.name);
                let held = std::mem::replace(self.ledger.held.entry(key).or_default(), now.clone());
                let gone = self.ledger.gone.entry(key).or_default();
                let back: Vec<RecordId> = now.intersection(gone).copied().collect();
                gone.extend(held.difference(&now).copied());
                if !back.is_empty() {
                    self.fail(format!(
                        "node {me} stored {back:?} again after they were used"
                    ));
                }
            }
            for engine in [&self.nodes[i].keyer, &self.nodes[i].signer]
                .into_iter()
                .flatten()
            {
                // Acknowledgements only for own ids.
                if let Some(id) = engine
                    .acknowledged_ids()
                    .into_iter()
                    .find(|id| id.owner().0 != me)
                {
                    self.fail(format!(
                        "node {me} recorded an acknowledgement for {id}, not its own"
                    ));
                }
                // No key run without its task, and only the task's attempt.
                for job in engine.running_jobs() {
                    if let Some(attempt) = job.attempt() {
                        if engine.key_task().map(|t| t.attempt()) != Some(attempt) {
                            self.fail(format!("node {me} runs {job:?} without its key task"));
                        }
                    }
                }
            }
            // A stored share of the current attempt ⇔ the node's vote for it.
            if let Some(event) = &self.event {
                if event.participants.contains(ParticipantId(me)) {
                    let stored = store
                        .key_share_at::<S::KeyShare>(S::DOMAIN, event.epoch)
                        .unwrap()
                        .is_some_and(|(a, _)| a == event.attempt);
                    let voted = event.votes.contains_key(&me);
                    if stored != voted {
                        self.fail(format!(
                            "node {me}: share of attempt {} stored {stored}, voted {voted}",
                            event.attempt
                        ));
                    }
                }
            }
        }
    }
}
