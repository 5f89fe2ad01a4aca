//! The contract as the world plays it: the running set, key events and their
//! attempts, votes, requests and their answers, and the scenario's steps.

use super::*;

pub(super) struct RunningSet {
    pub(super) epoch: u64,
    pub(super) participants: Participants,
    pub(super) threshold: usize,
    pub(super) attempt: u64,
    pub(super) public_key: String,
}

pub(super) struct KeyEvent {
    pub(super) epoch: u64,
    pub(super) participants: Participants,
    pub(super) threshold: usize,
    /// The key being reshared (old participants, old threshold, public key), or
    /// `None` for keygen.
    pub(super) old: Option<(Participants, usize, String)>,
    pub(super) attempt: u64,
    pub(super) started: u64,
    pub(super) votes: BTreeMap<u32, String>,
}

impl KeyEvent {
    pub(super) fn task(&self, domain: DomainId) -> KeyTask {
        match &self.old {
            None => KeyTask::Generate {
                epoch: self.epoch,
                domain,
                attempt: self.attempt,
            },
            Some((old_participants, old_threshold, public_key)) => KeyTask::Reshare {
                epoch: self.epoch,
                domain,
                old_participants: old_participants.clone(),
                old_threshold: *old_threshold,
                public_key: public_key.clone(),
                attempt: self.attempt,
            },
        }
    }
}

pub(super) struct Request {
    pub(super) pending: PendingRequest,
    /// Simulated time it showed up on chain.
    pub(super) since: u64,
    pub(super) answered: bool,
}

impl<S: Suite> World<S> {
    /// The key shares of a running network made before the run, stored as the
    /// contract's attempt 0 of epoch 0.
    pub(super) fn key_outside(&mut self, set: Participants, threshold: usize) {
        let shares: Vec<S::KeyShare> = local::run(
            set.iter()
                .map(|me| S::keygen(InstanceId([7; 32]), me, set.clone(), threshold).unwrap())
                .collect(),
            &Schedule {
                shuffle_seed: Some(self.seed),
                ..Schedule::default()
            },
        )
        .all_done()
        .unwrap();
        let public_key = S::public_key_text(&shares[0]);
        for (p, share) in set.iter().zip(&shares) {
            let store = self.nodes[p.0 as usize].store.as_ref().unwrap();
            store.put_key_share(S::DOMAIN, 0, 0, share).unwrap();
        }
        self.next_epoch = 1;
        self.next_attempt = 1;
        self.complete(RunningSet {
            epoch: 0,
            participants: set,
            threshold,
            attempt: 0,
            public_key,
        });
    }

    /// The contract starts a key event (keygen, or resharing `old`).
    pub(super) fn start_event(
        &mut self,
        set: Participants,
        threshold: usize,
        old: Option<(Participants, usize, String)>,
    ) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.event = Some(KeyEvent {
            epoch,
            participants: set,
            threshold,
            old,
            attempt: 0,
            started: 0,
            votes: BTreeMap::new(),
        });
        self.next_attempt_of_event("event starts");
    }

    /// The event's next attempt: new key engines at every live participant.
    pub(super) fn next_attempt_of_event(&mut self, why: &str) {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.report.attempts += 1;
        let now = self.now();
        let event = self.event.as_mut().expect("a key event");
        event.attempt = attempt;
        event.started = now;
        event.votes.clear();
        self.note(format!("contract: attempt {attempt} ({why})"));
        for i in 0..self.nodes.len() {
            self.nodes[i].keyer = None;
            self.build_keyer(i);
        }
    }

    /// As the daemon's `rebuild_keyers`: a key engine for the current attempt if
    /// this node is up and in the new set.
    pub(super) fn build_keyer(&mut self, i: usize) {
        let Some(event) = &self.event else { return };
        let me = ParticipantId(self.nodes[i].id);
        if self.nodes[i].store.is_none() || !event.participants.contains(me) {
            return;
        }
        let (epoch, set, threshold, task) = (
            event.epoch,
            event.participants.clone(),
            event.threshold,
            event.task(S::DOMAIN),
        );
        let old_holder = event
            .old
            .as_ref()
            .is_some_and(|(old, _, _)| old.contains(me));
        let mut engine = self.engine(i, epoch, &set, threshold);
        engine.set_key_task(Some(task));
        if old_holder {
            let running = self.running.as_ref().expect("resharing a running key");
            engine
                .load_reshare_input(running.epoch, running.attempt)
                .unwrap();
        }
        engine.resume_finished_key_task().unwrap();
        self.nodes[i].keyer = Some(engine);
        self.collect(i);
    }

    /// As the daemon's `build_signer`: a signing engine of the running set with
    /// the share of the completed attempt, and the pending requests.
    pub(super) fn build_signer(&mut self, i: usize) {
        let Some(running) = &self.running else { return };
        let me = ParticipantId(self.nodes[i].id);
        if self.nodes[i].store.is_none() || !running.participants.contains(me) {
            return;
        }
        let (epoch, set, threshold, attempt) = (
            running.epoch,
            running.participants.clone(),
            running.threshold,
            running.attempt,
        );
        let mut engine = self.engine(i, epoch, &set, threshold);
        engine.load_key(attempt).unwrap();
        engine.retire_other_epochs().unwrap();
        for request in self.requests.values().filter(|r| !r.answered) {
            engine.add_request(&request.pending).unwrap();
        }
        self.nodes[i].signer = Some(engine);
    }

    /// The contract completes a key event: the new set runs.
    pub(super) fn complete(&mut self, running: RunningSet) {
        self.note(format!(
            "contract: epoch {} running with attempt {}",
            running.epoch, running.attempt
        ));
        self.running = Some(running);
        self.event = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].keyer = None;
            self.nodes[i].signer = None;
            self.build_signer(i);
        }
    }

    pub(super) fn on_event(&mut self, i: usize, event: Event) {
        let me = self.nodes[i].id;
        match event {
            Event::KeyShareStored {
                domain,
                epoch,
                attempt,
                public_key,
            } => {
                // A finished key task implies a stored share of that attempt.
                let store = self.nodes[i].store.as_ref().unwrap();
                let stored = store.key_share_at::<S::KeyShare>(domain, epoch).unwrap();
                match stored {
                    Some((a, share))
                        if a == attempt && S::public_key_text(&share) == public_key => {}
                    other => self.fail(format!(
                        "node {me} reported a share of epoch {epoch} attempt {attempt}, \
                         the store has attempt {:?}",
                        other.map(|(a, _)| a)
                    )),
                }
                self.note(format!("node {me} stored its share (attempt {attempt})"));
                let Some(event) = self.event.as_ref().filter(|e| e.attempt == attempt) else {
                    return; // a vote for an attempt that is over: the contract refuses it
                };
                if event
                    .old
                    .as_ref()
                    .is_some_and(|(_, _, old)| *old != public_key)
                {
                    self.fail(format!("resharing changed the key at node {me}"));
                }
                let event = self.event.as_mut().unwrap();
                event.votes.insert(me, public_key);
                self.settle_event();
            }
            Event::Failed { job, reason } => {
                self.note(format!("node {me} failed {}: {reason}", job_text(&job)));
                if job.attempt().is_some()
                    && self.event.as_ref().map(|e| e.attempt) == job.attempt()
                {
                    // vote_abort_key_event: any participant's report ends the attempt.
                    self.next_attempt_of_event(&format!("node {me} aborted"));
                }
            }
            Event::Signed {
                request_id,
                response,
                leader,
            } => self.on_signed(me, request_id, response, leader),
            Event::TripleStored(_) | Event::PresignatureStored(_) => {
                self.report.stock_stored += 1;
            }
        }
    }

    pub(super) fn on_signed(
        &mut self,
        me: u32,
        request_id: RequestId,
        response: SignatureResponse,
        leader: bool,
    ) {
        let Some(request) = self.requests.get(&request_id) else {
            self.fail(format!("node {me} signed {request_id}, never requested"));
        };
        let running = self
            .running
            .as_ref()
            .expect("signatures need a running key");
        let p = &request.pending;
        if let Err(e) = S::verify(
            &running.public_key,
            &p.predecessor,
            &p.path,
            &p.payload,
            &response,
        ) {
            self.fail(format!(
                "node {me}'s signature for {request_id} does not verify: {e}"
            ));
        }
        if !leader {
            return;
        }
        // One leader per run: its nonce belongs to that run alone.
        let nonce = S::nonce(&response);
        let step = self.step as u64;
        if let Some((other, at)) = self.ledger.nonces.insert(nonce, (request_id, step)) {
            self.fail(format!(
                "nonce of node {me}'s signature for {request_id} repeats that of {other} (step {at})"
            ));
        }
        self.report.signatures += 1;
        self.note(format!("node {me} answered {request_id}"));
        self.requests.get_mut(&request_id).unwrap().answered = true;
        // `respond` landed: every node forgets the request.
        for node in &mut self.nodes {
            if let Some(signer) = &mut node.signer {
                signer.remove_request(&request_id);
            }
        }
    }

    /// The contract completes an attempt every new participant voted for, or
    /// rolls an expired one.
    pub(super) fn settle_event(&mut self) {
        let Some(event) = &self.event else { return };
        if event.votes.len() == event.participants.len() {
            let keys: BTreeSet<&String> = event.votes.values().collect();
            if keys.len() != 1 {
                self.fail(format!(
                    "the shares of attempt {} give different keys: {keys:?}",
                    event.attempt
                ));
            }
            let public_key = keys.into_iter().next().unwrap().clone();
            // Every share of the completed event gives that key (as stored).
            for p in event.participants.iter() {
                if let Some(store) = &self.nodes[p.0 as usize].store {
                    let (a, share) = store
                        .key_share_at::<S::KeyShare>(S::DOMAIN, event.epoch)
                        .unwrap()
                        .expect("voted, so stored");
                    if a != event.attempt || S::public_key_text(&share) != public_key {
                        self.fail(format!("node {}'s stored share differs from its vote", p.0));
                    }
                }
            }
            let resharing = event.old.is_some();
            let running = RunningSet {
                epoch: event.epoch,
                participants: event.participants.clone(),
                threshold: event.threshold,
                attempt: event.attempt,
                public_key,
            };
            self.reshare_done |= resharing;
            self.complete(running);
        } else if self.now() - event.started > ATTEMPT_TIMEOUT.as_nanos() as u64 {
            self.next_attempt_of_event("attempt expired");
        }
    }

    /// The scenario's next phase once the current one completed.
    pub(super) fn advance_scenario(&mut self) {
        if self.event.is_some() || self.running.is_none() {
            return;
        }
        if let (Some((set, threshold)), false) = (self.scenario.reshare.clone(), self.reshare_done)
        {
            let running = self.running.as_ref().unwrap();
            let old = (
                running.participants.clone(),
                running.threshold,
                running.public_key.clone(),
            );
            self.start_event(participants(&set), threshold, Some(old));
            return;
        }
        if !self.requests_issued {
            self.requests_issued = true;
            for k in 0..self.scenario.requests {
                let seed = (k % 250) as u8 + 1;
                let payload = S::payload(seed);
                let predecessor = "alice.near".to_string();
                let path = format!("sim-{k}");
                let request = SignRequest {
                    payload: payload.clone(),
                    path: path.clone(),
                    domain_id: S::DOMAIN,
                };
                let pending = PendingRequest {
                    request_id: RequestId::of(&predecessor, &request),
                    predecessor,
                    payload,
                    path,
                    domain_id: S::DOMAIN,
                    entropy: Entropy(self.rng.gen()),
                    block_height: 1,
                    waiting: 1,
                };
                for node in &mut self.nodes {
                    if let Some(signer) = &mut node.signer {
                        signer.add_request(&pending).unwrap();
                    }
                }
                let since = self.now();
                self.requests.insert(
                    pending.request_id,
                    Request {
                        pending,
                        since,
                        answered: false,
                    },
                );
            }
        }
    }
}
