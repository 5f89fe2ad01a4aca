//! Early messages: protocol messages for a run that has not started here yet
//! (its invitation is on the way, or still in a queue), held per instance with
//! caps per run, in all, and per sender, and handed to the run when it starts or
//! to the engine that replaces this one.

use super::{Engine, Scheme};
use crate::blame::FailureKind;
use std::collections::BTreeMap;
use std::time::Instant;
use threshold::{InstanceId, ParticipantId};

/// Messages buffered per instance that has not started here yet.
const MAX_EARLY_PER_INSTANCE: usize = 256;
/// Instances with buffered early messages.
const MAX_EARLY_INSTANCES: usize = 1024;
/// Bytes of early messages buffered from one peer. Beyond it the peer is
/// reported over budget (the daemon cuts it off) and its early messages dropped,
/// so it cannot push out the others'. Honest early messages are a run's first
/// round or two, a few 40 KB triple messages per run at most.
const MAX_EARLY_BYTES_PER_PEER: usize = 16 << 20;

/// Messages for a run that has not started here yet, and since when.
pub type EarlyMessages = (Instant, Vec<(ParticipantId, Vec<u8>)>);

impl<S: Scheme> Engine<S> {
    pub(super) fn buffer_early(
        &mut self,
        instance: InstanceId,
        from: ParticipantId,
        message: Vec<u8>,
    ) {
        let held = self.early_bytes.get(&from).copied().unwrap_or(0);
        if held + message.len() > MAX_EARLY_BYTES_PER_PEER {
            for (_, queue) in self.early.values_mut() {
                queue.retain(|(peer, _)| *peer != from);
            }
            self.early.retain(|_, (_, queue)| !queue.is_empty());
            self.early_bytes.remove(&from);
            self.blame(
                from,
                FailureKind::OverBudget,
                format!("{held} bytes of early messages buffered"),
            );
            return;
        }
        if !self.early.contains_key(&instance) && self.early.len() >= MAX_EARLY_INSTANCES {
            return;
        }
        let (_, queue) = self
            .early
            .entry(instance)
            .or_insert_with(|| (self.clock.now(), Vec::new()));
        if queue.len() < MAX_EARLY_PER_INSTANCE {
            *self.early_bytes.entry(from).or_default() += message.len();
            queue.push((from, message));
        }
    }

    /// Recomputes [`Engine::early_bytes`] after early messages were dropped in bulk.
    pub(super) fn recount_early(&mut self) {
        self.early_bytes.clear();
        for (peer, message) in self.early.values().flat_map(|(_, queue)| queue.iter()) {
            *self.early_bytes.entry(*peer).or_default() += message.len();
        }
    }

    pub(super) fn take_early(&mut self) -> BTreeMap<InstanceId, EarlyMessages> {
        self.early_bytes.clear();
        std::mem::take(&mut self.early)
    }

    pub(super) fn adopt_early(&mut self, early: BTreeMap<InstanceId, EarlyMessages>) {
        for (instance, (since, messages)) in early {
            if self.early.len() < MAX_EARLY_INSTANCES {
                self.early.insert(instance, (since, messages));
            }
        }
        self.recount_early();
    }
}
