//! The schedule's moves on the world: the clock, frames delivered, dropped,
//! duplicated or delayed, protocol steps run and returned in any order, crashes
//! and restarts, a forged confirmation.

use super::*;

pub(super) struct Envelope {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) bytes: Vec<u8>,
    /// Deliverable from this simulated time (ns) on.
    pub(super) at: u64,
}

impl<S: Suite> World<S> {
    pub(super) fn advance_clock(&mut self, by: Duration) {
        self.time.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        self.note(format!("clock +{}ms", by.as_millis()));
    }

    /// Delivers a pending frame (any deliverable one: reordering), or drops or
    /// duplicates it.
    pub(super) fn deliver(&mut self, faults: Faults) {
        let now = self.now();
        let ready: Vec<usize> = (0..self.pending.len())
            .filter(|k| self.pending[*k].at <= now)
            .collect();
        let k = ready[self.rng.gen_range(0..ready.len())];
        if self.rng.gen_bool(faults.drop) {
            let envelope = self.pending.remove(k);
            self.report.dropped += 1;
            self.note(format!("drop {}→{}", envelope.from, envelope.to));
            return;
        }
        let envelope = if self.rng.gen_bool(faults.duplicate) {
            self.report.duplicated += 1;
            let e = &self.pending[k];
            Envelope {
                from: e.from,
                to: e.to,
                bytes: e.bytes.clone(),
                at: e.at,
            }
        } else {
            self.pending.remove(k)
        };
        self.report.delivered += 1;
        let i = envelope.to as usize;
        let (_, message) = NodeMessage::decode(&envelope.bytes).unwrap();
        self.note(format!(
            "deliver {}→{} {}",
            envelope.from,
            envelope.to,
            message_text(&message)
        ));
        let node = &mut self.nodes[i];
        // As the daemon routes: key-event traffic to the key engine, the rest to
        // the signing engine; a frame for an engine not built here is lost.
        let engine = if message.is_key_event() {
            node.keyer.as_mut()
        } else {
            node.signer.as_mut()
        };
        let Some(engine) = engine else { return };
        if let Err(e) = engine.handle_message(ParticipantId(envelope.from), message) {
            self.note(format!("  refused: {e}"));
        }
        self.collect(i);
    }

    /// The `k`-th queued step of the world (over nodes in order) and its node.
    pub(super) fn pick_step(&mut self, k: usize, of: fn(&SimNode<S>) -> usize) -> (usize, usize) {
        let mut k = k;
        for (i, node) in self.nodes.iter().enumerate() {
            if k < of(node) {
                return (i, k);
            }
            k -= of(node);
        }
        unreachable!("k is below the total")
    }

    /// A worker runs one of the queued steps (any node's, any of them): its
    /// cryptography, and the store write of a finished triple or presignature.
    pub(super) fn run_step(&mut self, total: usize) {
        let pick = self.rng.gen_range(0..total);
        let (i, k) = self.pick_step(pick, |n| n.queued.len());
        let step = self.nodes[i].queued.remove(k);
        self.note(format!(
            "node {} runs a {} step",
            self.nodes[i].id,
            step.tag.kind.name()
        ));
        let done = step.run();
        self.report.steps_run += 1;
        self.nodes[i].ran.push(done);
    }

    /// The loop takes back one step that ran (any of them: completions come back
    /// in any order), as the daemon routes it: to the engine that sent it, or
    /// discarded if that engine is gone.
    pub(super) fn return_step(&mut self, total: usize) {
        let pick = self.rng.gen_range(0..total);
        let (i, k) = self.pick_step(pick, |n| n.ran.len());
        let done = self.nodes[i].ran.remove(k);
        if k > 0 {
            self.report.steps_reordered += 1;
        }
        let me = self.nodes[i].id;
        self.note(format!(
            "node {me} takes back a {} step",
            done.tag.kind.name()
        ));
        let node = &mut self.nodes[i];
        let engine = [&mut node.keyer, &mut node.signer]
            .into_iter()
            .flatten()
            .find(|e| e.serial() == done.tag.engine);
        match engine {
            Some(engine) => {
                if !engine.step_done(done) {
                    self.report.steps_void += 1;
                }
            }
            None => {
                self.report.steps_void += 1;
                done.discard();
            }
        }
        self.collect(i);
    }

    /// The node loses its engines and the frames to and from it; its store stays.
    pub(super) fn crash(&mut self, i: usize) {
        let me = self.nodes[i].id;
        if self.key_run_under_way() {
            self.report.crashes_mid_key += 1;
        }
        self.report.crashes += 1;
        self.note(format!("crash node {me}"));
        let node = &mut self.nodes[i];
        node.keyer = None;
        node.signer = None;
        node.led.clear();
        node.was_live.clear();
        // Steps on workers die with the process; what one stored stays stored.
        drop(node.steps.take());
        node.queued.clear();
        node.ran.clear();
        let store = node.store.take().unwrap();
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "no engine keeps the store open"
        );
        drop(store);
        self.pending.retain(|e| e.from != me && e.to != me);
    }

    /// The node comes back from its store, as the daemon starts: a signing engine
    /// of the running set, a key engine of the current attempt (which reports a
    /// share it stored already, so its vote is repeated).
    pub(super) fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.store = Some(Arc::new(Store::open(&node.path, &node.key).unwrap()));
        let me = node.id;
        self.note(format!("restart node {me}"));
        self.build_signer(i);
        self.build_keyer(i);
    }

    /// A peer acknowledges a record of another owner to a node: it must not count.
    pub(super) fn forge_ack(&mut self) {
        let up = self.up();
        let i = up[self.rng.gen_range(0..up.len())];
        let me = self.nodes[i].id;
        let other =
            (me + 1 + self.rng.gen_range(0..self.nodes.len() as u32 - 1)) % self.nodes.len() as u32;
        let id = RecordId::new(ParticipantId(other), self.rng.gen_range(0..1 << 48));
        let message = if self.rng.gen_bool(0.5) {
            NodeMessage::StoredTriple(id)
        } else {
            NodeMessage::StoredPresignature(id)
        };
        self.report.forged_acks += 1;
        self.note(format!("forged ack to node {me} of {id}"));
        if let Some(signer) = &mut self.nodes[i].signer {
            let _ = signer.handle_message(ParticipantId(other), message);
        }
        self.collect(i);
    }
}
