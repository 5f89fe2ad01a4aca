//! Blame: who keeps making our protocol runs fail (DESIGN §8).
//!
//! Every failure recorded here is attributed to one peer by its authenticated
//! participant id (the transport tells us who sent what; nobody can blame a peer
//! by naming it): a `Decline` it sent, a run that timed out while waiting on it
//! and nobody else, a protocol check that names it (`threshold::Error::Misbehaved`,
//! e.g. an invalid FROST share), bytes from it that are not a message, more bytes
//! than its budget lets us hold (it is cut off too, see `p2p::budget`). A peer whose
//! failures within [`BlameRules::window`] reach [`BlameRules::limit`] is left out
//! of new stock subsets and of signer and leader choice for
//! [`BlameRules::first_exclusion`], doubled on every repeat up to
//! [`BlameRules::max_exclusion`], then let back. Successful runs with a peer slowly
//! forgive its recent failures, so an honest peer's rare bad luck never adds up.
//!
//! No clock of its own: every call takes `now`, so the rules are deterministic and
//! tested with made-up instants.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};
use threshold::ParticipantId;

/// What a peer did to make a run fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// It declined an invitation to a run this node leads.
    Decline,
    /// A run timed out while waiting on it (and on nobody else).
    Timeout,
    /// A protocol check named it (an invalid share, proof or payload).
    Misbehaved,
    /// It sent bytes that are not a valid message (frame, header, instance).
    Malformed,
    /// It sent more than its byte budget lets us hold, and was cut off.
    OverBudget,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Decline,
        FailureKind::Timeout,
        FailureKind::Misbehaved,
        FailureKind::Malformed,
        FailureKind::OverBudget,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Decline => "decline",
            FailureKind::Timeout => "timeout",
            FailureKind::Misbehaved => "misbehaved",
            FailureKind::Malformed => "malformed",
            FailureKind::OverBudget => "over_budget",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an engine learned about a peer from one run or message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerReport {
    /// A failure attributable to `peer`; `detail` is for the log (peer-supplied
    /// text already passed through `peer_text`).
    Failure {
        peer: ParticipantId,
        kind: FailureKind,
        detail: String,
    },
    /// A run with `peer` among its participants produced its output here.
    Success { peer: ParticipantId },
}

/// When a peer is left out, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlameRules {
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// Failures within the window that get a peer excluded.
    pub limit: usize,
    /// The first exclusion; each later one doubles it.
    pub first_exclusion: Duration,
    /// The longest exclusion. A peer not excluded again for this long after its
    /// last exclusion ended starts over from `first_exclusion`.
    pub max_exclusion: Duration,
    /// Successful runs with a peer that forgive one of its recent failures.
    pub successes_per_pardon: u32,
}

impl Default for BlameRules {
    /// Sized for the protocol timeout (30-60 s): a silent peer's runs all time out
    /// at about the same time, so a window of two minutes sees them together, while
    /// an honest peer under load (an occasional decline of a record it lost in a
    /// restart, a run that timed out because the machine was slow) stays far below
    /// the limit, the more so as its many successful runs forgive.
    fn default() -> Self {
        BlameRules {
            window: Duration::from_secs(120),
            limit: 4,
            first_exclusion: Duration::from_secs(60),
            max_exclusion: Duration::from_secs(30 * 60),
            successes_per_pardon: 4,
        }
    }
}

#[derive(Debug, Default)]
struct PeerRecord {
    /// Failures within the window, oldest first (not counted while excluded).
    recent: VecDeque<Instant>,
    totals: BTreeMap<FailureKind, u64>,
    /// Successes toward the next pardon.
    credit: u32,
    /// Exclusions so far (since the last fresh start): the next lasts
    /// `first_exclusion × 2^strikes`.
    strikes: u32,
    excluded_until: Option<Instant>,
}

/// A peer's record as `/state` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerBlame {
    pub id: u32,
    /// Filled in by the daemon, which knows the accounts.
    pub account_id: String,
    /// Failures by kind since this node started.
    pub failures: BTreeMap<FailureKind, u64>,
    /// Failures that count toward the next exclusion.
    pub recent_failures: usize,
    /// Times it was excluded.
    pub exclusions: u32,
    /// Whether it is left out now.
    pub excluded: bool,
    /// Seconds until it is let back (0 when not excluded).
    pub excluded_for_secs: f64,
}

/// Every peer's record on this node.
#[derive(Debug, Default)]
pub struct Blame {
    rules: BlameRules,
    peers: BTreeMap<ParticipantId, PeerRecord>,
}

impl Blame {
    pub fn new(rules: BlameRules) -> Self {
        Blame {
            rules,
            peers: BTreeMap::new(),
        }
    }

    /// Records a failure of `peer`. Returns how long it is now excluded for, if
    /// this failure got it excluded.
    pub fn failure(
        &mut self,
        peer: ParticipantId,
        kind: FailureKind,
        now: Instant,
    ) -> Option<Duration> {
        let rules = self.rules;
        let record = self.peers.entry(peer).or_default();
        *record.totals.entry(kind).or_default() += 1;
        if let Some(until) = record.excluded_until {
            if now < until {
                // Left out already: what it does meanwhile (its own runs, which we
                // still join) must not stretch the sentence beyond its doubling.
                return None;
            }
            if now.saturating_duration_since(until) >= rules.max_exclusion {
                // Behaved for a long time since: start over.
                record.strikes = 0;
            }
        }
        prune(&mut record.recent, rules.window, now);
        record.recent.push_back(now);
        if record.recent.len() < rules.limit {
            return None;
        }
        let doublings = record.strikes.min(16);
        let exclusion = rules
            .first_exclusion
            .saturating_mul(1 << doublings)
            .min(rules.max_exclusion);
        record.strikes = record.strikes.saturating_add(1);
        record.excluded_until = Some(now + exclusion);
        record.recent.clear();
        record.credit = 0;
        Some(exclusion)
    }

    /// Records a successful run with `peer`: every `successes_per_pardon` of them
    /// forgive its oldest recent failure.
    pub fn success(&mut self, peer: ParticipantId, now: Instant) {
        let rules = self.rules;
        let Some(record) = self.peers.get_mut(&peer) else {
            return; // nothing to forgive
        };
        prune(&mut record.recent, rules.window, now);
        if record.recent.is_empty() {
            // Credit is not banked: a long run of successes must not pay for a
            // burst of failures later.
            record.credit = 0;
            return;
        }
        record.credit += 1;
        if record.credit >= rules.successes_per_pardon {
            record.credit = 0;
            record.recent.pop_front();
        }
    }

    pub fn is_excluded(&self, peer: ParticipantId, now: Instant) -> bool {
        self.peers
            .get(&peer)
            .and_then(|r| r.excluded_until)
            .is_some_and(|until| now < until)
    }

    /// The peers left out now.
    pub fn excluded(&self, now: Instant) -> Vec<ParticipantId> {
        self.peers
            .keys()
            .copied()
            .filter(|p| self.is_excluded(*p, now))
            .collect()
    }

    /// Every peer with a failure on record, for `/state` (accounts left empty).
    pub fn report(&self, now: Instant) -> Vec<PeerBlame> {
        self.peers
            .iter()
            .filter(|(_, r)| !r.totals.is_empty())
            .map(|(peer, r)| {
                let left = r
                    .excluded_until
                    .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
                let mut recent = r.recent.clone();
                prune(&mut recent, self.rules.window, now);
                PeerBlame {
                    id: peer.0,
                    account_id: String::new(),
                    failures: r.totals.clone(),
                    recent_failures: recent.len(),
                    exclusions: r.strikes,
                    excluded: !left.is_zero(),
                    excluded_for_secs: left.as_secs_f64(),
                }
            })
            .collect()
    }
}

fn prune(recent: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while recent
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) > window)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ParticipantId = ParticipantId(3);
    const Q: ParticipantId = ParticipantId(4);

    fn rules() -> BlameRules {
        BlameRules {
            window: Duration::from_secs(60),
            limit: 3,
            first_exclusion: Duration::from_secs(10),
            max_exclusion: Duration::from_secs(35),
            successes_per_pardon: 2,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_peer_is_excluded_at_the_limit_and_let_back_after() {
        let t0 = Instant::now();
        let mut blame = Blame::new(rules());
        assert_eq!(blame.failure(P, FailureKind::Decline, t0), None);
        assert_eq!(blame.failure(P, FailureKind::Timeout, t0 + secs(1)), None);
        assert!(!blame.is_excluded(P, t0 + secs(1)));
        assert_eq!(
            blame.failure(P, FailureKind::Malformed, t0 + secs(2)),
            Some(secs(10))
        );
        assert!(blame.is_excluded(P, t0 + secs(2)));
        assert!(blame.is_excluded(P, t0 + secs(11)));
        assert_eq!(blame.excluded(t0 + secs(11)), vec![P]);
        assert!(!blame.is_excluded(P, t0 + secs(12)));
        assert!(blame.excluded(t0 + secs(12)).is_empty());
        let report = blame.report(t0 + secs(5));
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].id, 3);
        assert_eq!(report[0].failures[&FailureKind::Decline], 1);
        assert_eq!(report[0].failures[&FailureKind::Timeout], 1);
        assert_eq!(report[0].failures[&FailureKind::Malformed], 1);
        assert!(report[0].excluded);
        assert_eq!(report[0].excluded_for_secs, 7.0);
    }

    #[test]
    fn exclusions_double_on_repeat_up_to_the_cap_and_reset_after_good_behaviour() {
        let t0 = Instant::now();
        let mut blame = Blame::new(rules());
        let mut now = t0;
        let mut sentences = Vec::new();
        for _ in 0..4 {
            blame.failure(P, FailureKind::Timeout, now);
            blame.failure(P, FailureKind::Timeout, now);
            let sentence = blame.failure(P, FailureKind::Timeout, now).unwrap();
            sentences.push(sentence);
            // Failures while excluded are recorded but change nothing.
            assert_eq!(blame.failure(P, FailureKind::Timeout, now + secs(1)), None);
            now += sentence;
        }
        assert_eq!(sentences, vec![secs(10), secs(20), secs(35), secs(35)]);
        assert_eq!(blame.report(now)[0].failures[&FailureKind::Timeout], 16);
        // A long quiet spell (the cap, after the last exclusion ended): from the start.
        now += secs(35);
        blame.failure(P, FailureKind::Timeout, now);
        blame.failure(P, FailureKind::Timeout, now);
        assert_eq!(blame.failure(P, FailureKind::Timeout, now), Some(secs(10)));
    }

    #[test]
    fn old_failures_are_forgotten_and_successes_forgive() {
        let t0 = Instant::now();
        let mut blame = Blame::new(rules());
        blame.failure(P, FailureKind::Decline, t0);
        blame.failure(P, FailureKind::Decline, t0 + secs(1));
        // Past the window, the first two no longer count.
        assert_eq!(blame.failure(P, FailureKind::Decline, t0 + secs(62)), None);
        assert_eq!(blame.report(t0 + secs(62))[0].recent_failures, 1);
        blame.failure(P, FailureKind::Decline, t0 + secs(63));
        // Two successes forgive one failure: the next failure is not the third.
        blame.success(P, t0 + secs(64));
        blame.success(P, t0 + secs(64));
        assert_eq!(blame.report(t0 + secs(64))[0].recent_failures, 1);
        assert_eq!(blame.failure(P, FailureKind::Decline, t0 + secs(65)), None);
        assert!(!blame.is_excluded(P, t0 + secs(65)));
    }

    #[test]
    fn successes_without_failures_are_not_banked() {
        let t0 = Instant::now();
        let mut blame = Blame::new(rules());
        blame.failure(P, FailureKind::Timeout, t0);
        blame.success(P, t0 + secs(61)); // the failure is past the window
        for _ in 0..100 {
            blame.success(P, t0 + secs(61));
        }
        blame.failure(P, FailureKind::Timeout, t0 + secs(62));
        blame.failure(P, FailureKind::Timeout, t0 + secs(62));
        assert!(blame
            .failure(P, FailureKind::Timeout, t0 + secs(62))
            .is_some());
    }

    #[test]
    fn peers_are_judged_apart() {
        let t0 = Instant::now();
        let mut blame = Blame::new(rules());
        for _ in 0..3 {
            blame.failure(P, FailureKind::Misbehaved, t0);
        }
        blame.success(Q, t0);
        assert!(blame.is_excluded(P, t0));
        assert!(!blame.is_excluded(Q, t0));
        // Q never failed: it does not appear in the report at all.
        let report = blame.report(t0);
        assert_eq!(report.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3]);
    }
}
