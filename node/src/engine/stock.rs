//! Stock: the triples and presignatures this node proposes (ids it owns, made
//! among a rotating subset of live participants), which of its own records are
//! usable (every live holder confirmed storing its share), picking triples for a
//! presignature, counting and topping up stock, and retiring records elsewhere.

use super::instance::Output;
use super::{Engine, EngineError, Job, NodeMessage, RecordId, Scheme};
use crate::storage::{RecordKind, Stocked, StoreError};
use rand::RngCore;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use threshold::{ParticipantId, Participants};

/// Who takes part in the triple and presignature runs a node proposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockSubset {
    /// Exactly `threshold` live participants, the proposer and a rotating window
    /// of the others (see [`Engine::stock_subset`]).
    #[default]
    Threshold,
    /// Every live participant.
    All,
}

impl StockSubset {
    pub fn as_str(&self) -> &'static str {
        match self {
            StockSubset::Threshold => "threshold",
            StockSubset::All => "all",
        }
    }
}

impl fmt::Display for StockSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StockSubset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threshold" => Ok(StockSubset::Threshold),
            "all" => Ok(StockSubset::All),
            other => Err(format!("unknown stock subset `{other}` (threshold or all)")),
        }
    }
}

/// A node's stock of one domain: its own records it can use now or soon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockCount {
    pub triples: usize,
    pub presignatures: usize,
}

/// How much stock to keep, and how many of its own generation runs a node may
/// have under way at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockTargets {
    pub triples: usize,
    pub presignatures: usize,
    pub max_concurrent: usize,
}

/// Triples for one presignature: their ids and their common live holders.
struct PickedTriples {
    ids: Vec<RecordId>,
    holders: Vec<ParticipantId>,
}

/// One of this node's own records it may use, with the live holders it would be
/// used among.
pub(super) struct UsableRecord {
    pub(super) id: RecordId,
    pub(super) holders: Vec<ParticipantId>,
}

impl<S: Scheme> Engine<S> {
    /// A new id owned by this node: its participant id, then 48 random bits.
    fn fresh_id(&mut self) -> RecordId {
        RecordId::new(self.me, self.rng.next_u64())
    }

    /// Proposes new triples among the live participants (`live`: those this node
    /// can reach, itself included; at least the threshold) and returns their ids.
    ///
    /// With [`StockSubset::Threshold`] it starts the triples of one presignature
    /// among one subset of exactly `threshold` participants (see
    /// [`Engine::stock_subset`]): a presignature's participants are its triples'
    /// holders, so they are made among the same subset. With [`StockSubset::All`]
    /// it starts one triple among every live participant.
    pub(super) fn propose_triples(
        &mut self,
        live: &Participants,
    ) -> Result<Vec<RecordId>, EngineError> {
        let reachable = self.reachable(live)?;
        let (holders, count) = match self.stock_subset {
            StockSubset::All => (reachable, 1),
            StockSubset::Threshold => (self.stock_subset(&reachable)?, S::TRIPLES_PER_PRESIGNATURE),
        };
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.fresh_id();
            let job = Job::Triple { id };
            let instance = S::generate_triple(
                self.instance_of(&job),
                self.me,
                holders.clone(),
                self.threshold,
            )?;
            self.launch(job, holders.clone(), true, Output::Triple(instance));
            ids.push(id);
        }
        Ok(ids)
    }

    /// The participants of this node's next stock proposal, out of `reachable`
    /// (live participants of this epoch, this node included, at least the
    /// threshold): with [`StockSubset::Threshold`] this node and `threshold - 1`
    /// of the others, a window that rotates over them. With the others in id order
    /// as `o[0..m]` and `k` this node's stock proposals so far, the window is
    /// `o[s], o[s+1], … (mod m)` with `s = (k + my id) mod m`. Consecutive
    /// proposals thus use different subsets whenever more than the threshold are
    /// live, every other participant is in the same share of them, a failed run is
    /// retried by the next proposal among another subset, and proposers start their
    /// windows at different places.
    pub(super) fn stock_subset(
        &mut self,
        reachable: &Participants,
    ) -> Result<Participants, EngineError> {
        if self.stock_subset == StockSubset::All {
            return Ok(reachable.clone());
        }
        let others: Vec<ParticipantId> = reachable.iter().filter(|p| *p != self.me).collect();
        let take = self.threshold.saturating_sub(1);
        let turn = self.stock_proposals;
        self.stock_proposals = self.stock_proposals.wrapping_add(1);
        if others.len() <= take {
            return Ok(reachable.clone());
        }
        let m = others.len() as u64;
        let start = (turn.wrapping_add(u64::from(self.me.0)) % m) as usize;
        let window = (0..take).map(|i| others[(start + i) % others.len()]);
        Ok(Participants::new(std::iter::once(self.me).chain(window))?)
    }

    /// `live` restricted to this epoch's participants, if it includes this node and
    /// reaches the threshold.
    pub(super) fn reachable(&self, live: &Participants) -> Result<Participants, EngineError> {
        let set = Participants::new(live.iter().filter(|p| self.participants.contains(*p)))?;
        if !set.contains(self.me) || set.len() < self.threshold {
            return Err(EngineError::TooFewLive {
                live: set.len(),
                threshold: self.threshold,
            });
        }
        Ok(set)
    }

    /// The holders of a record that are live, if this node is one of them and they
    /// reach the threshold; records of other epochs are never usable.
    pub(super) fn usable(
        &self,
        holders: &[ParticipantId],
        epoch: u64,
        live: &Participants,
    ) -> Option<Vec<ParticipantId>> {
        let set: Vec<ParticipantId> = holders
            .iter()
            .copied()
            .filter(|p| live.contains(*p))
            .collect();
        (epoch == self.epoch && set.contains(&self.me) && set.len() >= self.threshold)
            .then_some(set)
    }

    /// This node's own records of this epoch, with the live holders of each.
    fn own_usable(&self, stock: Vec<Stocked>, live: &Participants) -> Vec<UsableRecord> {
        stock
            .into_iter()
            .filter(|s| s.id.owner() == self.me)
            .filter_map(|s| {
                self.usable(&s.holders.participants, s.holders.epoch, live)
                    .map(|holders| UsableRecord { id: s.id, holders })
            })
            .collect()
    }

    /// Like [`Engine::own_usable`], but only with holders that confirmed storing
    /// their share: a run started before a holder finished its part would be
    /// refused by it. A record waits for every live holder's confirmation, up to
    /// the protocol timeout; after that (a confirmation was lost, or a holder never
    /// finished) it goes ahead with the holders that confirmed.
    pub(super) fn own_confirmed(
        &self,
        stock: Vec<Stocked>,
        live: &Participants,
    ) -> Vec<UsableRecord> {
        self.own_ready(stock, live, false)
    }

    /// [`Engine::own_confirmed`], or (with `pending`) also the records still
    /// waiting for confirmations: what counts as stock.
    fn own_ready(
        &self,
        stock: Vec<Stocked>,
        live: &Participants,
        pending: bool,
    ) -> Vec<UsableRecord> {
        let now = self.clock.now();
        self.own_usable(stock, live)
            .into_iter()
            .filter_map(|usable| match self.acks.get(&usable.id) {
                // Stored before this engine started: taken as held by all.
                None => Some(usable),
                Some((_, acked)) if usable.holders.iter().all(|p| acked.contains(p)) => {
                    Some(usable)
                }
                Some((since, acked)) if now.duration_since(*since) > self.timeout => {
                    let holders: Vec<ParticipantId> = usable
                        .holders
                        .into_iter()
                        .filter(|p| acked.contains(p))
                        .collect();
                    (holders.contains(&self.me) && holders.len() >= self.threshold).then_some(
                        UsableRecord {
                            id: usable.id,
                            holders,
                        },
                    )
                }
                Some(_) if pending => Some(usable),
                Some(_) => None,
            })
            .collect()
    }

    /// `count` of this node's own confirmed triples whose live holders overlap in
    /// at least the threshold, and that overlap (the first such set found).
    fn pick_triples(
        &self,
        live: &Participants,
        count: usize,
    ) -> Result<Option<PickedTriples>, EngineError> {
        let mine = self.own_confirmed(self.store.records(S::TRIPLES)?, live);
        for (i, first) in mine.iter().enumerate() {
            let mut picked = vec![first.id];
            let mut common = first.holders.clone();
            for other in &mine[i + 1..] {
                if picked.len() == count {
                    break;
                }
                let overlap: Vec<ParticipantId> = common
                    .iter()
                    .copied()
                    .filter(|p| other.holders.contains(p))
                    .collect();
                if overlap.len() >= self.threshold {
                    picked.push(other.id);
                    common = overlap;
                }
            }
            if picked.len() == count {
                return Ok(Some(PickedTriples {
                    ids: picked,
                    holders: common,
                }));
            }
        }
        Ok(None)
    }

    /// Proposes a presignature: from this node's own triples whose live holders
    /// overlap in at least the threshold, among that overlap; or, for schemes
    /// without triples, among the next stock subset of live participants.
    pub(super) fn propose_presignature(
        &mut self,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError> {
        let (triples, participants) = if S::TRIPLES_PER_PRESIGNATURE == 0 {
            if self.key.is_none() {
                return Err(EngineError::NoKey);
            }
            let reachable = self.reachable(live)?;
            (Vec::new(), self.stock_subset(&reachable)?)
        } else {
            let Some(picked) = self.pick_triples(live, S::TRIPLES_PER_PRESIGNATURE)? else {
                return Ok(None);
            };
            (picked.ids, Participants::new(picked.holders)?)
        };
        for id in &triples {
            self.retire_elsewhere(
                S::TRIPLES,
                *id,
                &participants,
                NodeMessage::RetireTriple(*id),
            )?;
            self.acks.remove(id);
        }
        let id = self.fresh_id();
        let job = Job::Presign { id, triples };
        let output = self.join_presign(&job, &participants)?;
        self.launch(job, participants, true, output);
        Ok(Some(id))
    }

    /// Tells the holders of record `id` of `kind` outside `users` (the run about to
    /// consume it) to drop their shares, which nobody will ever use.
    pub(super) fn retire_elsewhere(
        &mut self,
        kind: RecordKind,
        id: RecordId,
        users: &Participants,
        retire: NodeMessage,
    ) -> Result<(), EngineError> {
        let Some(record) = self.store.records(kind)?.into_iter().find(|s| s.id == id) else {
            return Ok(());
        };
        for holder in record.holders.participants {
            if !users.contains(holder) && holder != self.me {
                self.send(holder, &retire);
            }
        }
        Ok(())
    }

    /// After storing a share of `id`: the owner records itself as a holder, anyone
    /// else tells the owner.
    pub(super) fn confirm_stored(&mut self, id: RecordId, ack: NodeMessage) {
        if id.owner() == self.me {
            self.acks
                .entry(id)
                .or_insert_with(|| (self.clock.now(), BTreeSet::new()))
                .1
                .insert(self.me);
        } else {
            self.send(id.owner(), &ack);
        }
    }

    /// Triple and presignature runs this node leads that are under way.
    fn running_led_generations(&self) -> StockCount {
        let led = |kind: fn(&Job) -> bool| {
            self.running
                .values()
                .filter(|r| r.leader && kind(&r.job))
                .count()
        };
        StockCount {
            triples: led(|job| matches!(job, Job::Triple { .. })),
            presignatures: led(|job| matches!(job, Job::Presign { .. })),
        }
    }

    pub(super) fn retire_other_epochs(&self) -> Result<usize, StoreError> {
        Ok(self.store.retire_other_epochs(S::TRIPLES, self.epoch)?
            + self
                .store
                .retire_other_epochs(S::PRESIGNATURES, self.epoch)?)
    }

    pub(super) fn set_stock_subset(&mut self, subset: StockSubset) {
        self.stock_subset = subset;
    }

    /// With [`StockSubset::Threshold`] a triple counts only within a group of
    /// [`Scheme::TRIPLES_PER_PRESIGNATURE`] with the same live holders: a triple
    /// whose partner's run failed waits, uncounted, for another such triple.
    pub(super) fn own_stock(&self, live: &Participants) -> Result<StockCount, EngineError> {
        let triples = self.own_ready(self.store.records(S::TRIPLES)?, live, true);
        let per = S::TRIPLES_PER_PRESIGNATURE;
        let triples = match self.stock_subset {
            StockSubset::All => triples.len(),
            StockSubset::Threshold if per == 0 => 0,
            StockSubset::Threshold => {
                let mut by_holders: HashMap<Vec<ParticipantId>, usize> = HashMap::new();
                for UsableRecord { mut holders, .. } in triples {
                    holders.sort_unstable();
                    *by_holders.entry(holders).or_default() += 1;
                }
                by_holders.values().map(|n| n - n % per).sum()
            }
        };
        Ok(StockCount {
            triples,
            presignatures: self
                .own_ready(self.store.records(S::PRESIGNATURES)?, live, true)
                .len(),
        })
    }

    pub(super) fn top_up_stock(
        &mut self,
        live: &Participants,
        stock: StockCount,
        targets: &StockTargets,
    ) {
        let per = S::TRIPLES_PER_PRESIGNATURE;
        let mut running = self.running_led_generations();
        let mut available_triples = stock.triples;
        while running.triples + running.presignatures < targets.max_concurrent {
            let missing = targets
                .presignatures
                .saturating_sub(stock.presignatures + running.presignatures);
            if missing > 0 && available_triples >= per {
                match self.propose_presignature(live) {
                    Ok(Some(_)) => {
                        running.presignatures += 1;
                        available_triples -= per;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot start a presignature"),
                }
            }
            if per == 0 {
                break; // presignatures come from the key alone: nothing else to make
            }
            // The triples of every missing presignature, plus the triple stock itself.
            let wanted = targets.triples.max(per * missing);
            if available_triples + running.triples >= wanted {
                break;
            }
            // One presignature's triples (made among one subset) count as that many
            // runs: the cap may be passed by all but one.
            match self.propose_triples(live) {
                Ok(ids) => running.triples += ids.len(),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start a triple");
                    break;
                }
            }
        }
    }
}
