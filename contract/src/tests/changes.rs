//! Unit tests: the log of changes to the pending requests (`pending_changes`).

use super::*;
use crate::changes::KEPT;
use primitives::{PendingChange, PendingRequest};
use std::collections::BTreeMap;

/// What a node following the log holds: the list read once, then every change
/// applied in order.
#[derive(Default)]
struct Follower {
    next: u64,
    pending: BTreeMap<RequestId, PendingRequest>,
}

impl Follower {
    /// Reads the log from where it stopped to the end, a page of `limit` at a time.
    fn catch_up(&mut self, contract: &MpcContract, limit: u32) {
        loop {
            let read = contract.pending_changes(self.next, Some(limit));
            let changes = read.changes.expect("a follower that reads often keeps up");
            for change in changes {
                match change {
                    PendingChange::Added(request) => {
                        self.pending.insert(request.request_id, request);
                    }
                    PendingChange::Removed(id) => {
                        self.pending.remove(&id);
                    }
                }
            }
            self.next = read.next;
            if read.next >= read.latest {
                return;
            }
        }
    }

    fn matches(&self, contract: &MpcContract) -> bool {
        let listed: BTreeMap<RequestId, PendingRequest> = contract
            .pending_requests(None, Some(500))
            .into_iter()
            .map(|r| (r.request_id, r))
            .collect();
        listed == self.pending
    }
}

#[test]
fn a_follower_of_the_log_sees_what_the_list_shows() {
    let mut contract = running();
    let mut follower = Follower::default();
    follower.catch_up(&contract, 10);
    assert!(follower.pending.is_empty());

    // New requests, and a duplicate that is no change.
    let first = sign_as(&mut contract, ALICE, &ecdsa_request(1, "a"));
    let second = sign_as(&mut contract, BOB, &ecdsa_request(2, "b"));
    sign_as(&mut contract, ALICE, &ecdsa_request(1, "a"));
    assert_eq!(contract.pending_changes(0, None).latest, 2);
    follower.catch_up(&contract, 1);
    assert!(follower.matches(&contract));
    assert_eq!(follower.pending.len(), 2);

    // Answered with every call resumed (signed and answered in one mocked block).
    as_caller(NODES[2], 1);
    let request = ecdsa_request(3, "c");
    contract.sign(Some(request.clone()), None, None, None);
    let third = request_id(NODES[2], &request);
    contract.respond(third, network_signature(NODES[2], &request, 7));
    assert!(contract.pending.get(&third).is_none());

    // Answered while a call's yield had timed out: out of the nodes' view at once,
    // and the late callback that removes the entry logs nothing more.
    as_caller(NODES[1], 0);
    contract.respond(first, network_signature(ALICE, &ecdsa_request(1, "a"), 8));
    let after_answer = contract.pending_changes(0, None).latest;
    as_caller(CONTRACT, 0);
    for ticket in tickets(&contract, &first) {
        contract.resolve(first, ticket.id, None);
    }
    assert!(contract.pending.get(&first).is_none());
    assert_eq!(contract.pending_changes(0, None).latest, after_answer);

    // Timed out for good.
    testing_env!(context(CONTRACT, 0).prepaid_gas(Gas::from_tgas(11)).build());
    contract.resolve(second, tickets(&contract, &second)[0].id, None);
    assert!(contract.pending.get(&second).is_none());

    // Made again after it timed out: new entropy, which the follower must see.
    testing_env!(context(BOB, 1).random_seed([9; 32]).build());
    contract.sign(Some(ecdsa_request(2, "b")), None, None, None);

    follower.catch_up(&contract, 3);
    assert!(follower.matches(&contract));
    assert_eq!(follower.pending.len(), 1);
    assert_eq!(follower.pending[&second].entropy.0, [9; 32]);
}

#[test]
fn an_added_request_gone_by_the_read_is_left_out_and_its_removal_shown() {
    let mut contract = running();
    as_caller(NODES[2], 1);
    let request = ecdsa_request(4, "d");
    contract.sign(Some(request.clone()), None, None, None);
    let id = request_id(NODES[2], &request);
    contract.respond(id, network_signature(NODES[2], &request, 7));
    let read = contract.pending_changes(0, None);
    assert_eq!(read.changes, Some(vec![PendingChange::Removed(id)]));
    assert_eq!((read.next, read.latest), (2, 2));
}

#[test]
fn a_reader_that_fell_behind_is_told_to_read_the_list_again() {
    let mut contract = running_with(Config {
        max_pending_requests: 4096,
        max_pending_per_caller: 4096,
        ..Config::default()
    });
    let total = KEPT + 5;
    for n in 0..total {
        as_caller(NODES[2], 1); // a fresh call: one call's gas would not last
        let request = SignRequestArgs {
            path: format!("p{n}"),
            ..ecdsa_request(1, "")
        };
        contract.sign(Some(request), None, None, None);
    }
    let behind = contract.pending_changes(4, Some(10));
    assert_eq!(behind.changes, None, "change 4 is no longer kept");
    assert_eq!(behind.latest, total);
    let kept = contract.pending_changes(5, Some(10));
    assert_eq!(kept.changes.map(|c| c.len()), Some(10));
    assert_eq!(kept.next, 15);
    // The dropped changes' storage is given back: only the window is stored.
    let prefix = borsh::to_vec(&StorageKey::PendingChanges).unwrap();
    for (number, stored) in [(4u64, false), (5, true), (total - 1, true), (total, false)] {
        let key = [prefix.as_slice(), &number.to_le_bytes()].concat();
        assert_eq!(env::storage_has_key(&key), stored, "change {number}");
    }
}

#[test]
fn a_reader_ahead_of_the_block_keeps_its_place() {
    let mut contract = running();
    sign_as(&mut contract, ALICE, &ecdsa_request(1, "a"));
    let read = contract.pending_changes(7, None);
    assert_eq!(read.changes, Some(vec![]));
    assert_eq!((read.next, read.latest), (7, 1));
    // A page of nothing still says where the log is.
    let empty = contract.pending_changes(0, Some(0));
    assert_eq!(empty.changes, Some(vec![]));
    assert_eq!((empty.next, empty.latest), (0, 1));
}

#[test]
fn the_log_survives_storing_and_loading_the_contract() {
    let mut contract = running();
    sign_as(&mut contract, ALICE, &ecdsa_request(1, "a"));
    env::state_write(&contract);
    let mut loaded: MpcContract = env::state_read().unwrap();
    assert_eq!(loaded.pending_changes(0, None).latest, 1);
    sign_as(&mut loaded, BOB, &ecdsa_request(2, "b"));
    env::state_write(&loaded);
    let again: MpcContract = env::state_read().unwrap();
    let read = again.pending_changes(0, None);
    assert_eq!(read.latest, 2);
    assert_eq!(read.changes.map(|c| c.len()), Some(2));
}

#[test]
fn the_state_digest_changes_exactly_when_the_state_view_does() {
    let digest = |contract: &MpcContract| contract.pending_changes(0, Some(0)).state_digest;
    let contract = initializing(2);
    let at_start = digest(&contract);
    assert_eq!(at_start, digest(&contract));
    assert_eq!(
        at_start,
        env::sha256_array(borsh::to_vec(&contract.state()).unwrap())
    );
    // A request changes the pending log, not the state.
    let mut signing = running();
    let before = digest(&signing);
    sign_as(&mut signing, ALICE, &ecdsa_request(1, "a"));
    assert_eq!(digest(&signing), before);
    // A key event's attempt that times out changes the state with no call at all.
    let state_at_start = contract.state();
    at_block(ALICE, START + TIMEOUT + 1);
    assert_ne!(contract.state(), state_at_start, "the attempt expired");
    assert_ne!(digest(&contract), at_start);
    // A governance call changes it.
    let mut resharing = running();
    let before = digest(&resharing);
    start_join_resharing(&mut resharing);
    assert_ne!(digest(&resharing), before);
}
