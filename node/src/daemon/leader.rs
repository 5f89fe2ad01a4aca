//! Who leads a request. Every node ranks the participants for each request by
//! [`leader_order`]. The first *live* one leads at once; the k-th live one also
//! leads once the request has waited `k ×`
//! [`NodeConfig::leader_grace`](super::NodeConfig::leader_grace), which replaces a
//! leader that is up but failing. A second answer is refused by the contract, so
//! at worst a fallback costs one wasted presignature.
//!
//! A node whose turn came but that has no usable presignature for the request
//! passes it on at once ([`NodeMessage::Passing`]): a live node whose betters
//! (the live nodes ranked above it) all passed leads at once too, without
//! waiting for its grace. Presignatures are made among threshold-sized subsets
//! and belong to the node that proposed them, so while stock regenerates (after
//! a burst, or a resharing) some nodes have one and others not; without passing,
//! a request whose first leader had none waited for that node's next one (12
//! blocks at (5,3) in one bench run) while others sat unused. A node that passed
//! takes its turn by time only, once every node below it passed too (or a
//! grace period after its pass): a node below may be leading on its pass, with
//! its word on the way (4 duplicate leads in a burst of 120 at (3,2) without
//! this wait).
//!
//! A node that starts leading a request says so to every peer
//! ([`NodeMessage::Leading`]); while that word is fresh and its sender live, no
//! other node leads the request, whatever its turn. Without it, a burst longer
//! than the grace made every request's fallback leaders sign it too, each answer
//! after the first refused by the contract: a presignature burnt per fallback,
//! when presignatures are what a burst is short of (40 % of them at (3,2) in one
//! bench run). Each peer's word of leading counts once per request, so a peer
//! that says it leads and never signs delays a request by
//! [`HELD_BACK_FOR_GRACES`] grace periods at most. A leader whose run failed and
//! that has no other presignature passes, which ends its hold at once. A peer
//! that passed and leads later (it made a presignature meanwhile, the usual
//! course of a burst) holds the others back like any leader: ignoring that word
//! made fallbacks sign 10 of 125 requests a second time in one bench run. A peer
//! that passes when it could lead only hands the request on sooner.

use super::Node;
use crate::engine::NodeMessage;
use primitives::RequestId;
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};

/// How long a peer's word that it leads a request holds the others back, in
/// grace periods from when the word came.
const HELD_BACK_FOR_GRACES: u32 = 2;

/// Requests not (yet) pending here that one peer's words may open entries for:
/// an honest peer is at most a few blocks ahead of this node's view of the
/// chain, so only a peer making up request ids reaches it, and then it crowds
/// out nobody else's words. Words about requests pending here are always taken
/// (those entries are bounded by the contract's pending requests).
const MAX_UNKNOWN_REQUESTS_PER_PEER: usize = 512;

/// What peers said about leading one request.
#[derive(Clone, Debug)]
pub(super) struct HeardOf {
    /// The peer whose word of leading holds the others back, and when that
    /// came: the latest word taken (see `led`), cleared when its sender passes.
    leading: Option<(ParticipantId, Instant)>,
    /// The peers whose word of leading was taken: one each.
    led: BTreeSet<ParticipantId>,
    /// The peers that passed it on.
    passed: BTreeSet<ParticipantId>,
    /// When the first word came.
    first: Instant,
    /// The peer whose word opened the entry while the request was not pending
    /// here (counted against its [`MAX_UNKNOWN_REQUESTS_PER_PEER`]).
    opened_unknown_by: Option<ParticipantId>,
}

impl HeardOf {
    /// Takes `peer`'s word; returns whether it passed (which may make this
    /// node's turn).
    fn take(&mut self, peer: ParticipantId, word: &NodeMessage, now: Instant) -> bool {
        match word {
            // Once per peer: leading, passing and leading again cannot stretch
            // its hold.
            NodeMessage::Leading(_) => {
                if self.led.insert(peer) {
                    self.leading = Some((peer, now));
                }
                false
            }
            NodeMessage::Passing(_) => {
                self.passed.insert(peer);
                // A leader whose run failed and that has no other presignature
                // passes: it no longer holds anyone back.
                if self.leading.is_some_and(|(leader, _)| leader == peer) {
                    self.leading = None;
                }
                true
            }
            _ => false,
        }
    }
}

/// Peers' words about leading, per request, with what each peer opened for
/// requests unknown here counted.
#[derive(Debug, Default)]
pub(super) struct WordsHeard {
    by_request: BTreeMap<RequestId, HeardOf>,
    unknown_opened: BTreeMap<ParticipantId, usize>,
}

impl WordsHeard {
    pub(super) fn get(&self, request_id: &RequestId) -> Option<&HeardOf> {
        self.by_request.get(request_id)
    }

    /// The entry `peer`'s word about `request_id` goes in, opened if need be;
    /// `None` if the peer has opened its share of entries for unknown requests.
    fn entry(
        &mut self,
        peer: ParticipantId,
        request_id: RequestId,
        known: bool,
        now: Instant,
    ) -> Option<&mut HeardOf> {
        if !self.by_request.contains_key(&request_id) {
            let opened_unknown_by = if known {
                None
            } else {
                let opened = self.unknown_opened.entry(peer).or_default();
                if *opened >= MAX_UNKNOWN_REQUESTS_PER_PEER {
                    return None;
                }
                *opened += 1;
                Some(peer)
            };
            self.by_request.insert(
                request_id,
                HeardOf {
                    leading: None,
                    led: BTreeSet::new(),
                    passed: BTreeSet::new(),
                    first: now,
                    opened_unknown_by,
                },
            );
        }
        self.by_request.get_mut(&request_id)
    }

    /// Entries opened for requests unknown then and pending here now count
    /// against their opener no more (an honest peer ahead of this node's view of
    /// the chain in a long burst would run out of room otherwise).
    fn now_known(&mut self, known: impl Fn(&RequestId) -> bool) {
        for (id, heard) in self.by_request.iter_mut() {
            let Some(peer) = heard.opened_unknown_by.filter(|_| known(id)) else {
                continue;
            };
            heard.opened_unknown_by = None;
            if let Some(opened) = self.unknown_opened.get_mut(&peer) {
                *opened = opened.saturating_sub(1);
            }
        }
        self.unknown_opened.retain(|_, opened| *opened > 0);
    }

    /// Keeps the entries `keep` says to, giving back what dropped ones opened.
    fn retain(&mut self, mut keep: impl FnMut(&RequestId, &HeardOf) -> bool) {
        let unknown_opened = &mut self.unknown_opened;
        self.by_request.retain(|id, heard| {
            let kept = keep(id, heard);
            if let (false, Some(peer)) = (kept, heard.opened_unknown_by) {
                if let Some(opened) = unknown_opened.get_mut(&peer) {
                    *opened = opened.saturating_sub(1);
                }
            }
            kept
        });
        unknown_opened.retain(|_, opened| *opened > 0);
    }
}

/// Whether another live node's fresh word that it leads the request holds this
/// node back from leading it.
fn held_back(
    heard: Option<&HeardOf>,
    me: ParticipantId,
    live: &Participants,
    hold: Duration,
    now: Instant,
) -> bool {
    heard.and_then(|h| h.leading).is_some_and(|(peer, at)| {
        peer != me && live.contains(peer) && now.saturating_duration_since(at) < hold
    })
}

/// A request whose turn came to this node, in the order it is taken up: this
/// node's rank among its live leaders, then by [`Pick`].
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    rank: usize,
    pick: Pick,
    request_id: RequestId,
}

/// Which requests of one rank go first. A node takes those it ranks first in
/// oldest first; those it leads in another's place (the better ones passed, or
/// their grace ran out) newest first, from the other end of the queue the
/// better-ranked node is working through, so the two meet on one request at
/// most rather than both taking the same oldest one while their words that they
/// lead it are on the way (each such collision burns a presignature).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Pick {
    Oldest(Instant),
    Newest(std::cmp::Reverse<Instant>),
}

impl Pick {
    fn at(rank: usize, first_seen: Instant) -> Pick {
        match rank {
            0 => Pick::Oldest(first_seen),
            _ => Pick::Newest(std::cmp::Reverse(first_seen)),
        }
    }
}

/// Where this node stands in a request's live leader order: the live nodes
/// ranked above it and below it.
struct Standing<'a> {
    betters: &'a [ParticipantId],
    below: &'a [ParticipantId],
}

/// Whether a request's turn came to this node: by time, one grace period per
/// better after the request was first seen here, or at once when every better
/// passed it on. A node that passed it itself (`passed_for` ago) leads by time
/// only, and only once every node below it passed too, or a grace period after
/// its own pass: a node below may be leading on its pass, and its word that it
/// does may still be on the way.
fn turn_came(
    standing: &Standing<'_>,
    heard: Option<&HeardOf>,
    passed_for: Option<Duration>,
    waited: Duration,
    grace: Duration,
) -> bool {
    let all_passed = |nodes: &[ParticipantId]| {
        nodes
            .iter()
            .all(|p| heard.is_some_and(|h| h.passed.contains(p)))
    };
    let by_time = waited >= grace.saturating_mul(standing.betters.len() as u32);
    match passed_for {
        None => by_time || all_passed(standing.betters),
        Some(since) => by_time && (all_passed(standing.below) || since >= grace),
    }
}

/// The deterministic leader order of a request: participants sorted by a hash of
/// the request id and their id. Every node computes the same order.
pub fn leader_order(request_id: &RequestId, participants: &Participants) -> Vec<ParticipantId> {
    let mut order: Vec<(ParticipantId, [u8; 32])> = participants
        .iter()
        .map(|p| {
            let mut hasher = Sha3_256::new();
            hasher.update(b"chain-signatures leader v1:");
            hasher.update(request_id.0);
            hasher.update(p.0.to_be_bytes());
            (p, hasher.finalize().into())
        })
        .collect();
    order.sort_by_key(|(_, rank)| *rank);
    order.into_iter().map(|(p, _)| p).collect()
}

impl Node {
    /// Leads the pending requests whose turn it is for this node, and passes on
    /// those it has no presignature for. Its best-ranked requests go first (see
    /// [`Pick`] for the order among equals): when several nodes may lead the
    /// same requests (all passed, and the grace ran out), each starts with a
    /// different one rather than all with the same.
    pub(super) fn lead(&mut self, live: &Participants, now: Instant) {
        let mut due = self.requests_due(live, now);
        due.sort();
        // Domains out of usable presignatures this turn.
        let mut exhausted = BTreeSet::new();
        for Due {
            rank, request_id, ..
        } in due
        {
            let Some(tracked) = self.requests.get_mut(&request_id) else {
                continue;
            };
            let Some(signer) = self.signers.get_mut(&tracked.domain) else {
                continue;
            };
            let led = if exhausted.contains(&tracked.domain) {
                Ok(None)
            } else {
                signer.engine.propose_sign(request_id, live)
            };
            let waited = now.duration_since(tracked.first_seen);
            match led {
                Ok(Some(presignature)) => {
                    self.config.metrics.sign_runs_led.inc();
                    tracing::debug!(request = %request_id, %presignature, waited_ms = waited.as_millis() as u64, "leading a request");
                    if rank > 0 && waited >= self.config.leader_grace {
                        tracing::info!(request = %request_id, rank, "leading a request in place of a silent leader");
                    }
                    tracked.led_at = Some(now);
                    let word = NodeMessage::Leading(request_id.0);
                    self.announce.push((tracked.domain, word));
                }
                Ok(None) => {
                    exhausted.insert(tracked.domain);
                    if tracked.passed_at.is_none() {
                        tracked.passed_at = Some(now);
                        self.config.metrics.leads_passed.inc();
                        tracing::debug!(request = %request_id, domain = tracked.domain.0, "no usable presignature: passing the lead on");
                        let word = NodeMessage::Passing(request_id.0);
                        self.announce.push((tracked.domain, word));
                    }
                }
                Err(e) => {
                    tracing::warn!(request = %request_id, error = %e, "cannot lead a request")
                }
            }
        }
    }

    /// The requests whose turn came to this node, unanswered, not led by it
    /// lately, and not held back by a peer's word that it leads them.
    fn requests_due(&mut self, live: &Participants, now: Instant) -> Vec<Due> {
        let (Some(me), Some(all)) = (self.me, self.running_set.as_ref()) else {
            return Vec::new();
        };
        let retry_after = self.config.protocol_timeout;
        let hold = self.config.leader_grace * HELD_BACK_FOR_GRACES;
        let grace = self.config.leader_grace;
        let mut due = Vec::new();
        for (request_id, tracked) in self.requests.iter_mut() {
            let led_lately = tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after);
            if led_lately || tracked.answer.is_some() {
                continue;
            }
            let heard = self.heard_of.get(request_id);
            if held_back(heard, me, live, hold, now) {
                continue;
            }
            let order: Vec<ParticipantId> = tracked
                .leader_order(request_id, all)
                .iter()
                .copied()
                .filter(|p| live.contains(*p))
                .collect();
            let Some(rank) = order.iter().position(|p| *p == me) else {
                continue;
            };
            let (betters, rest) = order.split_at(rank);
            let standing = Standing {
                betters,
                below: rest.get(1..).unwrap_or_default(),
            };
            let waited = now.duration_since(tracked.first_seen);
            let passed_for = tracked.passed_at.map(|at| now.duration_since(at));
            if turn_came(&standing, heard, passed_for, waited, grace) {
                due.push(Due {
                    rank,
                    pick: Pick::at(rank, tracked.first_seen),
                    request_id: *request_id,
                });
            }
        }
        due
    }

    /// A peer's word about leading `request_id`: that it leads it (its first
    /// such word counts, later ones do not) or that it passed it on. A pass may make this
    /// node's turn, so the node acts at once rather than at the next heartbeat.
    pub(super) fn heard_of_lead(
        &mut self,
        peer: ParticipantId,
        request_id: RequestId,
        word: &NodeMessage,
        now: Instant,
    ) {
        // Kept from the first word on (not renewed by later ones, so words
        // about made-up ids cannot keep their entries alive).
        let known = self.requests.contains_key(&request_id);
        let Some(heard) = self.heard_of.entry(peer, request_id, known, now) else {
            return;
        };
        if heard.take(peer, word, now) {
            self.act_soon = true;
        }
    }

    /// Forgets words about requests no longer pending, once they no longer hold
    /// anyone back (a word may come before the request is seen here).
    pub(super) fn forget_heard_of(&mut self, now: Instant) {
        let hold = self.config.leader_grace * HELD_BACK_FOR_GRACES;
        let requests = &self.requests;
        self.heard_of.now_known(|id| requests.contains_key(id));
        self.heard_of.retain(|id, heard| {
            requests.contains_key(id) || now.saturating_duration_since(heard.first) < hold
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(leading: Option<(u32, Instant)>, passed: &[u32], now: Instant) -> HeardOf {
        HeardOf {
            leading: leading.map(|(peer, at)| (ParticipantId(peer), at)),
            led: leading
                .iter()
                .map(|(peer, _)| ParticipantId(*peer))
                .collect(),
            passed: passed.iter().map(|p| ParticipantId(*p)).collect(),
            first: now,
            opened_unknown_by: None,
        }
    }

    /// Requests this node ranks first go oldest first; those it would lead in
    /// another's place, newest first, rank by rank.
    #[test]
    fn own_requests_go_oldest_first_and_others_newest_first() {
        let t0 = Instant::now();
        let due = |rank: usize, age: u64, tag: u8| Due {
            rank,
            pick: Pick::at(rank, t0 + Duration::from_secs(10 - age)),
            request_id: RequestId([tag; 32]),
        };
        let mut list = [
            due(1, 5, 1),
            due(0, 1, 2),
            due(1, 9, 3),
            due(0, 9, 4),
            due(2, 9, 5),
            due(2, 1, 6),
        ];
        list.sort();
        let order: Vec<u8> = list.iter().map(|d| d.request_id.0[0]).collect();
        assert_eq!(order, vec![4, 2, 1, 3, 6, 5]);
    }

    /// A peer that passed and leads later holds the others back; a peer's
    /// second word of leading does not, nor does a word after its own pass
    /// ended its hold.
    #[test]
    fn each_peer_holds_back_once_even_after_passing() {
        let me = ParticipantId(0);
        let live = Participants::first(3).unwrap();
        let hold = Duration::from_secs(6);
        let t0 = Instant::now();
        let (p1, p2) = (ParticipantId(1), ParticipantId(2));
        let (lead, pass) = (NodeMessage::Leading([7; 32]), NodeMessage::Passing([7; 32]));
        let mut heard = heard(None, &[], t0);
        // Passed with no presignature, then made one and leads: it holds.
        assert!(heard.take(p1, &pass, t0));
        assert!(!held_back(Some(&heard), me, &live, hold, t0));
        assert!(!heard.take(p1, &lead, t0 + Duration::from_secs(1)));
        assert!(held_back(
            Some(&heard),
            me,
            &live,
            hold,
            t0 + Duration::from_secs(6)
        ));
        // Its run failed: it passes, and holds nobody back; leading again
        // counts for nothing.
        heard.take(p1, &pass, t0 + Duration::from_secs(2));
        heard.take(p1, &lead, t0 + Duration::from_secs(3));
        assert!(!held_back(
            Some(&heard),
            me,
            &live,
            hold,
            t0 + Duration::from_secs(3)
        ));
        // Another peer's first word still holds, from when it came.
        heard.take(p2, &lead, t0 + Duration::from_secs(4));
        heard.take(p2, &lead, t0 + Duration::from_secs(9));
        assert!(held_back(
            Some(&heard),
            me,
            &live,
            hold,
            t0 + Duration::from_secs(9)
        ));
        assert!(!held_back(
            Some(&heard),
            me,
            &live,
            hold,
            t0 + Duration::from_secs(10)
        ));
    }

    /// A peer making up request ids fills its own share of entries, not the
    /// others': their words, and words about pending requests, are still taken;
    /// dropped entries give the share back.
    #[test]
    fn a_peer_making_up_requests_crowds_out_only_itself() {
        let (liar, honest) = (ParticipantId(1), ParticipantId(2));
        let now = Instant::now();
        let id = |n: u64| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&n.to_be_bytes());
            RequestId(bytes)
        };
        let mut words = WordsHeard::default();
        for n in 0..MAX_UNKNOWN_REQUESTS_PER_PEER as u64 {
            assert!(words.entry(liar, id(n), false, now).is_some());
        }
        let made_up = id(1 << 40);
        assert!(words.entry(liar, made_up, false, now).is_none());
        // An entry already open takes the liar's later words.
        assert!(words.entry(liar, id(3), false, now).is_some());
        // Another peer's word about an unknown request, and the liar's about a
        // pending one, still open entries.
        assert!(words.entry(honest, id(1 << 41), false, now).is_some());
        assert!(words.entry(liar, id(1 << 42), true, now).is_some());
        assert_eq!(words.by_request.len(), MAX_UNKNOWN_REQUESTS_PER_PEER + 2);
        // Forgetting some of the liar's entries gives their room back, and so
        // does a request it was first to name showing up here.
        words.retain(|request, _| *request != id(0) && *request != id(1));
        assert_eq!(
            words.unknown_opened[&liar],
            MAX_UNKNOWN_REQUESTS_PER_PEER - 2
        );
        words.now_known(|request| *request == id(2));
        assert_eq!(
            words.unknown_opened[&liar],
            MAX_UNKNOWN_REQUESTS_PER_PEER - 3
        );
        assert!(words.entry(liar, made_up, false, now).is_some());
        // Entries of requests now known, or opened for a pending request,
        // count for nothing.
        words.retain(|request, _| *request == id(1 << 42) || *request == id(2));
        assert!(
            words.unknown_opened.is_empty(),
            "{:?}",
            words.unknown_opened
        );
    }

    #[test]
    fn a_fresh_word_from_a_live_peer_holds_back_and_nothing_else_does() {
        let me = ParticipantId(0);
        let live = Participants::first(3).unwrap();
        let hold = Duration::from_secs(6);
        let now = Instant::now();
        let word = |peer: u32, age_ms: u64| {
            heard(Some((peer, now - Duration::from_millis(age_ms))), &[], now)
        };
        assert!(held_back(Some(&word(1, 0)), me, &live, hold, now));
        assert!(held_back(Some(&word(2, 5_999)), me, &live, hold, now));
        // Stale, silent, our own, or no word at all: this node leads on its turn.
        assert!(!held_back(Some(&word(1, 6_000)), me, &live, hold, now));
        assert!(!held_back(Some(&word(7, 0)), me, &live, hold, now));
        assert!(!held_back(Some(&word(0, 0)), me, &live, hold, now));
        assert!(!held_back(None, me, &live, hold, now));
        // A pass is no word of leading.
        assert!(!held_back(
            Some(&heard(None, &[1, 2], now)),
            me,
            &live,
            hold,
            now
        ));
    }

    #[test]
    fn the_turn_comes_by_time_or_once_every_better_passed() {
        let now = Instant::now();
        let grace = Duration::from_secs(3);
        let ms = Duration::from_millis;
        let [p0, p1, p3, p4] = [0, 1, 3, 4].map(ParticipantId);
        // The order is 4, 1, this node, 3, 0.
        let third = Standing {
            betters: &[p4, p1],
            below: &[p3, p0],
        };
        let first = Standing {
            betters: &[],
            below: &[p1, p3],
        };
        // The first in order: at once.
        assert!(turn_came(&first, None, None, ms(0), grace));
        // Third: two grace periods, or both betters passed.
        assert!(!turn_came(&third, None, None, ms(5_999), grace));
        assert!(turn_came(&third, None, None, ms(6_000), grace));
        let one_passed = heard(None, &[4], now);
        assert!(!turn_came(&third, Some(&one_passed), None, ms(10), grace));
        let both_passed = heard(None, &[1, 4], now);
        assert!(turn_came(&third, Some(&both_passed), None, ms(10), grace));
        // Passes of nodes below or outside the order count for nothing.
        let others_passed = heard(None, &[0, 2, 3, 7], now);
        assert!(!turn_came(
            &third,
            Some(&others_passed),
            None,
            ms(10),
            grace
        ));
        // Having passed itself, a node leads by time only, once every node
        // below passed or a grace period after its own pass.
        let passed = Some(ms(10));
        assert!(!turn_came(
            &third,
            Some(&both_passed),
            passed,
            ms(10),
            grace
        ));
        assert!(!turn_came(
            &third,
            Some(&both_passed),
            passed,
            ms(6_000),
            grace
        ));
        let all_passed = heard(None, &[0, 1, 3, 4], now);
        assert!(turn_came(
            &third,
            Some(&all_passed),
            passed,
            ms(6_000),
            grace
        ));
        let long_ago = Some(ms(3_000));
        assert!(turn_came(
            &third,
            Some(&both_passed),
            long_ago,
            ms(6_000),
            grace
        ));
        // The first in order, having passed: not while a node below may be
        // leading on its pass.
        assert!(!turn_came(
            &first,
            Some(&heard(None, &[1], now)),
            passed,
            ms(10),
            grace
        ));
        assert!(turn_came(
            &first,
            Some(&heard(None, &[1, 3], now)),
            passed,
            ms(10),
            grace
        ));
        assert!(turn_came(&first, None, long_ago, ms(3_010), grace));
    }
}
