//! Protocol steps off the loop: messages that come while a step is away wait for
//! the next one, and a stock or key run that ends while its step is away leaves no
//! record or share.

use super::harness::*;

for_each_scheme!(
    messages_that_come_while_a_step_is_away_wait_for_the_next_step,
    a_stock_run_that_ends_while_its_last_step_is_away_leaves_no_record,
    a_key_run_voided_while_its_step_is_away_stores_nothing,
);

/// A step is handed to the runner rather than run on the caller's turn; while it
/// is away, the instance's messages wait on it (never a second step of the same
/// instance at once) and go into the next step as soon as it comes back.
async fn messages_that_come_while_a_step_is_away_wait_for_the_next_step<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<S>(2, 2, dir.path()).await;
    let all = Participants::first(2).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let ids = propose_stock(&mut nodes[0].engine, &all);
    assert_eq!(ids.len(), 1, "one run among all");
    assert_eq!(nodes[0].engine.steps_away(), 1);
    assert_eq!(nodes[0].steps.len(), 1, "handed over, not run");
    assert_eq!(route(&mut nodes, 0), 1, "the invitation");
    assert_eq!(nodes[1].engine.running(), 1, "node 1 joined");
    assert_eq!(settle(&mut nodes[1]), 1);
    assert!(route(&mut nodes, 1) > 0, "node 1's first messages");
    assert_eq!(
        nodes[0].steps.len(),
        1,
        "the messages wait for the step away: one step per instance"
    );
    let first = nodes[0].steps.take().pop().unwrap();
    assert!(nodes[0].engine.step_done(first.run()), "taken up");
    assert_eq!(
        nodes[0].steps.len(),
        1,
        "the messages that waited start the next step at once"
    );
    assert_eq!(nodes[0].engine.steps_away(), 1);
    exchange(&mut nodes);
    for node in &nodes {
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        assert!(
            node.store
                .record_ids(stock_kind::<S>())
                .unwrap()
                .contains(&ids[0]),
            "node {} stored the record",
            node.me
        );
        assert_eq!(
            count(std::slice::from_ref(node), |e| matches!(
                e,
                Event::TripleStored(_) | Event::PresignatureStored(_)
            )),
            1,
            "node {}",
            node.me
        );
    }
    shut_down(&mut nodes).await;
}

/// The last step of a stock run stores its record on the worker. If the run ends
/// here meanwhile (a participant went silent, or it timed out), the result that
/// comes back is void: the record is retired (never used, never stored again),
/// nothing is confirmed, and the run is reported failed once.
async fn a_stock_run_that_ends_while_its_last_step_is_away_leaves_no_record<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<S>(2, 2, dir.path()).await;
    let all = Participants::first(2).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let kind = stock_kind::<S>();
    for ending in ["abandoned", "expired"] {
        let id = propose_stock(&mut nodes[0].engine, &all)[0];
        let mut ended = false;
        for _ in 0..100 {
            // Everything moves but node 0's steps, which run one at a time here.
            settle(&mut nodes[1]);
            route(&mut nodes, 1);
            route(&mut nodes, 0);
            let mut steps = nodes[0].steps.take();
            assert!(steps.len() <= 1, "one step per instance");
            let Some(step) = steps.pop() else { continue };
            let done = step.run();
            if nodes[0].store.record_ids(kind).unwrap().contains(&id) {
                // The last step stored the record; the run ends before it is back.
                match ending {
                    "abandoned" => nodes[0].engine.abandon_runs_with(&[ParticipantId(1)]),
                    _ => nodes[0]
                        .engine
                        .expire(Instant::now() + Duration::from_secs(60)),
                }
                assert_eq!(nodes[0].engine.running(), 0);
                assert!(!nodes[0].engine.step_done(done), "{ending}: void");
                ended = true;
                break;
            }
            nodes[0].engine.step_done(done);
        }
        assert!(ended, "{ending}: the run reached its last step");
        assert!(
            !nodes[0].store.record_ids(kind).unwrap().contains(&id),
            "{ending}: the record of the ended run is retired"
        );
        assert!(
            !nodes[0].store.retire_record(kind, id).unwrap(),
            "{ending}: nothing left to retire"
        );
        assert_eq!(nodes[0].engine.steps_away(), 0);
        assert!(nodes[0].steps.is_empty());
        let events = nodes[0].engine.drain_events();
        assert!(
            matches!(&events[..], [Event::Failed { .. }]),
            "{ending}: reported failed once, never stored: {events:?}"
        );
        // Node 1's copy is of no use to anyone: the owner never proposes it.
        exchange(&mut nodes);
        assert_eq!(nodes[0].engine.running(), 0);
    }
    shut_down(&mut nodes).await;
}

/// A key run whose task the contract replaced while its step was away: the step
/// comes back to nothing, and nothing of it is sent or stored.
async fn a_key_run_voided_while_its_step_is_away_stores_nothing<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    key_engines_for_attempt(&mut nodes, 0);
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert_eq!(nodes[0].engine.steps_away(), 1);
    let invitations = nodes[0].engine.drain_outbox();
    assert_eq!(invitations.len(), 2, "the Start to each peer");
    nodes[0].engine.set_key_task(Some(generate::<S>(1)));
    assert_eq!(nodes[0].engine.running(), 0, "attempt 0's run is void");
    let step = nodes[0].steps.take().pop().unwrap();
    assert_eq!(step.tag.kind, mpc_node::engine::StepKind::Key);
    assert!(!nodes[0].engine.step_done(step.run()), "void");
    assert!(nodes[0].engine.drain_outbox().is_empty(), "nothing sent");
    assert!(nodes[0].engine.drain_events().is_empty());
    assert_eq!(nodes[0].engine.steps_away(), 0);
    assert!(nodes[0].steps.is_empty(), "no next step");
    assert_eq!(share_of(&nodes[0], 0), None);
    shut_down(&mut nodes).await;
}

/// Where the stock runs [`propose_stock`] starts store their record.
fn stock_kind<S: Suite>() -> mpc_node::storage::RecordKind {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        S::TRIPLES
    } else {
        S::PRESIGNATURES
    }
}
