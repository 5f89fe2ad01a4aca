//! Key events as the contract's numbered attempts: resharing with a join, a
//! leave and a threshold change that keeps the public key; a new attempt voids the
//! old one's runs and its share replaces the older one; a node that stored its
//! share for an attempt takes no further part in it; a peer that withholds its
//! last keygen message is blamed even when the attempt ends first, and a key run
//! that failed here is not run again in its attempt.

use super::harness::*;

for_each_scheme!(
    resharing_with_a_join_a_leave_and_a_threshold_change_keeps_the_key,
    a_new_attempt_voids_the_old_attempts_runs_and_its_share_replaces_the_older_one,
    a_node_that_stored_its_share_refuses_the_attempt_again_and_runs_the_next,
    an_ended_attempt_blames_the_peer_that_withheld_its_last_key_message,
    a_key_run_that_failed_here_is_not_run_again_in_its_attempt,
);

/// Epoch 0: nodes 0..3 hold the key with threshold 2. Epoch 1: node 0 leaves,
/// nodes 3 and 4 join, threshold 3. The public key stays; the new set signs.
async fn resharing_with_a_join_a_leave_and_a_threshold_change_keeps_the_key<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(5, dir.path()).await;
    let old = Participants::first(3).unwrap();

    // Epoch 0: nodes 0..3 generate the key in the contract's attempt 0; two of them
    // propose, one run happens.
    for node in nodes.iter_mut().take(3) {
        node.engine = key_engine(node, generate::<S>(0));
    }
    nodes[0].engine.propose_key_task().unwrap();
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "keygen at three nodes", |n| {
        stored_keys(n, 0, 0).len() == 3
    })
    .await;
    let keys = stored_keys(&nodes, 0, 0);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    let public_key = keys[0].clone();
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key.clone()))),
        "each share is stored with the attempt that made it"
    );
    assert_eq!(share_of(&nodes[3], 0), None, "node 3 took no part");

    // Epoch 1 in the contract's attempt 1 (attempt ids count on across key
    // events). As in the daemon, the key engines start without a key; the old
    // holders that stay read their epoch-0 shares as the resharing input.
    let new = participants(&[1, 2, 3, 4]);
    let task = KeyTask::Reshare {
        epoch: 1,
        domain: S::DOMAIN,
        old_participants: old.clone(),
        old_threshold: 2,
        public_key: public_key.clone(),
        attempt: 1,
    };
    for node in nodes.iter_mut().skip(1) {
        node.engine = engine::<S>(node.me, 1, &new, 3, &node.store, &node.steps, None);
        node.engine.set_key_task(Some(task.clone()));
        let held = node.engine.load_reshare_input(0, 0).unwrap();
        assert_eq!(held, node.me < 3, "node {}", node.me);
        assert!(!node.engine.resume_finished_key_task().unwrap());
    }
    // A newcomer proposes first: with ECDSA it may; a scheme that needs facts
    // about the old key waits for an old holder's invitation.
    assert!(nodes[3].engine.propose_key_task().unwrap());
    let newcomer_runs = nodes[3].engine.running();
    assert_eq!(newcomer_runs, usize::from(!S::RESHARE_NEEDS_FACTS));
    // An old holder proposes; its invitation carries the facts newcomers need.
    assert!(nodes[1].engine.propose_key_task().unwrap());
    let frames = nodes[1].engine.drain_outbox();
    let starts: Vec<(ParticipantId, Job)> = frames
        .iter()
        .filter_map(|(to, bytes)| match NodeMessage::decode(bytes).unwrap() {
            (_, NodeMessage::Start(start)) => Some((*to, start.job)),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts.iter().map(|(to, _)| to.0).collect::<Vec<_>>(),
        vec![2, 3, 4],
        "invites the new set only"
    );
    for (_, job) in &starts {
        let Job::Reshare {
            facts,
            public_key: key,
            ..
        } = job
        else {
            panic!("a resharing run: {job:?}")
        };
        assert_eq!(*key, public_key);
        assert_eq!(!facts.is_empty(), S::RESHARE_NEEDS_FACTS, "{facts:?}");
    }
    send(&nodes[1], frames);
    pump(&mut nodes, "resharing at four nodes", |n| {
        stored_keys(n, 1, 1).len() == 4
    })
    .await;
    assert!(
        stored_keys(&nodes, 1, 1).iter().all(|k| *k == public_key),
        "resharing keeps the public key"
    );
    for node in &nodes[1..] {
        assert_eq!(share_of(node, 1), Some((1, public_key.clone())));
        assert!(node.engine.has_key());
    }
    assert_eq!(share_of(&nodes[0], 1), None, "node 0 left");
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key.clone()))),
        "the old epoch's shares stay until the node retires them"
    );

    // The new set signs: newcomer 4 leads with old holder 2 and newcomer 3 (the
    // new threshold), from a presignature of their own.
    let signers = participants(&[2, 3, 4]);
    for node in nodes.iter_mut().skip(1) {
        let key = node
            .store
            .key_share_at::<S::KeyShare>(S::DOMAIN, 1)
            .unwrap()
            .map(|(_, share)| share);
        node.engine = engine::<S>(node.me, 1, &new, 3, &node.store, &node.steps, key);
    }
    let presignature = stock_presignature(&mut nodes, 4, &signers).await;
    for node in &nodes {
        assert_eq!(
            presignature_ids(node) == vec![presignature],
            signers.contains(ParticipantId(node.me)),
            "node {}",
            node.me
        );
    }
    let request = request::<S>("erin.near", "bitcoin-1", 0x44);
    for node in nodes.iter_mut().skip(1) {
        node.engine.add_request(&request).unwrap();
    }
    nodes[4]
        .engine
        .propose_sign(request.request_id, &signers)
        .unwrap()
        .expect("a presignature");
    pump(&mut nodes, "a signature at three signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 3
    })
    .await;
    for node in &nodes[2..] {
        let [(id, leader, response)] = signed(node)[..] else {
            panic!("node {} signed once", node.me)
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, node.me == 4);
        S::verify(
            &public_key,
            "erin.near",
            "bitcoin-1",
            &request.payload,
            response,
        )
        .unwrap();
    }

    shut_down(&mut nodes).await;
}

async fn a_new_attempt_voids_the_old_attempts_runs_and_its_share_replaces_the_older_one<
    S: Suite,
>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;

    // Attempt 3 completes at every node; say a vote never landed, so the contract
    // moves on to attempt 4 all the same.
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(3)));
    }
    nodes[0].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 3 at three nodes", |n| {
        stored_keys(n, 0, 3).len() == 3
    })
    .await;
    let first = stored_keys(&nodes, 0, 3)[0].clone();
    assert!(nodes
        .iter()
        .all(|n| share_of(n, 0) == Some((3, first.clone()))));

    // Every node starts attempt 4 (same engine: a new attempt is a new task), but
    // before any of its messages arrive the contract moves on to attempt 5 (a
    // participant reported attempt 4 failed).
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(4)));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 1, "attempt 4 under way");
    }
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(5)));
        assert_eq!(node.engine.running(), 0, "attempt 4's run is void");
    }

    // A Start for any attempt but the current one is refused: one that is over, and
    // one the contract has not begun (a proposer cannot pick the attempt).
    for attempt in [3, 4, 6] {
        assert!(
            is_refused(handle(
                &mut nodes[1].engine,
                ParticipantId(0),
                &keygen_start::<S>(attempt)
            )),
            "attempt {attempt}"
        );
    }
    let reshare = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[0, 1, 2]),
        job: Job::Reshare {
            epoch: 0,
            domain: S::DOMAIN.0,
            old_participants: ids(&[0, 1, 2]),
            old_threshold: 2,
            public_key: first.clone(),
            facts: Vec::new(),
            attempt: 5,
        },
    });
    assert!(
        is_refused(handle(
            &mut nodes[1].engine,
            ParticipantId(0),
            &reshare.encode(S::DOMAIN)
        )),
        "attempt 5 is a keygen, not a resharing"
    );
    assert_eq!(nodes[1].engine.running(), 0, "nothing started");
    // Key tasks are settled by attempts: no declines go out (what is queued is
    // node 1's own attempt 4, sent on as it would have been).
    let frames = nodes[1].engine.drain_outbox();
    assert!(frames.iter().all(|(_, frame)| !matches!(
        NodeMessage::decode(frame).unwrap().1,
        NodeMessage::Decline { .. }
    )));
    send(&nodes[1], frames);

    // Attempt 5 runs; attempt 4's messages still in flight are refused on arrival.
    nodes[2].engine.propose_key_task().unwrap();
    pump_with(&mut nodes, "attempt 5 at three nodes", true, |n| {
        stored_keys(n, 0, 5).len() == 3
    })
    .await;
    for node in &nodes {
        // Messages from one peer arrive in order, and attempt 5 needed every peer's:
        // each peer's invitation to attempt 4 came first and was refused.
        assert_eq!(
            node.refused.len(),
            2,
            "node {}: {:?}",
            node.me,
            node.refused
        );
        assert!(
            node.refused
                .iter()
                .all(|(_, why)| why.contains("attempt 4")),
            "node {}: {:?}",
            node.me,
            node.refused
        );
    }
    assert!(
        stored_keys(&nodes, 0, 4).is_empty(),
        "attempt 4 stored nothing"
    );
    let keys = stored_keys(&nodes, 0, 5);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    assert_ne!(keys[0], first, "a fresh key");
    assert!(
        nodes
            .iter()
            .all(|n| share_of(n, 0) == Some((5, keys[0].clone()))),
        "attempt 5's share replaced attempt 3's"
    );

    shut_down(&mut nodes).await;
}

async fn a_node_that_stored_its_share_refuses_the_attempt_again_and_runs_the_next<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    key_engines_for_attempt(&mut nodes, 7);
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 7 at three nodes", |n| {
        stored_keys(n, 0, 7).len() == 3
    })
    .await;
    let key7 = stored_keys(&nodes, 0, 7)[0].clone();

    // Done with attempt 7: another run of it (a peer proposing it anew) is refused,
    // and proposing it starts nothing.
    for node in nodes.iter_mut() {
        let peer = ParticipantId((node.me + 1) % 3);
        match handle(&mut node.engine, peer, &keygen_start::<S>(7)) {
            Err(EngineError::Refused(why)) => assert!(why.contains("finished"), "{why}"),
            other => panic!("node {}: expected a refusal, got {other:?}", node.me),
        }
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 0);
    }

    // The same after a restart: a node that finds its attempt-7 share in storage
    // resumes as finished, reports the share again (so its vote can be repeated),
    // and refuses attempt 7.
    for node in nodes.iter_mut() {
        assert_eq!(share_of(node, 0), Some((7, key7.clone())));
        node.engine = key_engine(node, generate::<S>(7));
        assert!(node.engine.resume_finished_key_task().unwrap());
        assert!(node.engine.has_key());
        assert_eq!(
            node.engine.drain_events(),
            vec![Event::KeyShareStored {
                domain: S::DOMAIN,
                epoch: 0,
                attempt: 7,
                public_key: key7.clone(),
            }]
        );
        let peer = ParticipantId((node.me + 2) % 3);
        assert!(is_refused(handle(
            &mut node.engine,
            peer,
            &keygen_start::<S>(7)
        )));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
    }

    // The contract moves on to attempt 8 (say a vote never landed): fresh engines
    // for it run (the attempt-7 share is not theirs to resume), and each share of
    // attempt 8 replaces the one of attempt 7.
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(8));
        assert!(!node.engine.resume_finished_key_task().unwrap());
        assert!(node.engine.propose_key_task().unwrap());
    }
    pump(&mut nodes, "attempt 8 at three nodes", |n| {
        stored_keys(n, 0, 8).len() == 3
    })
    .await;
    let key8 = stored_keys(&nodes, 0, 8)[0].clone();
    assert_ne!(key8, key7);
    assert!(nodes
        .iter()
        .all(|n| share_of(n, 0) == Some((8, key8.clone()))));

    shut_down(&mut nodes).await;
}

/// A Start of keygen attempt `attempt` among nodes 0..3, as any of them proposes it.
fn keygen_start<S: Suite>(attempt: u64) -> Vec<u8> {
    NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[0, 1, 2]),
        job: Job::Keygen {
            epoch: 0,
            domain: S::DOMAIN.0,
            attempt,
        },
    })
    .encode(S::DOMAIN)
}

/// Moves every frame as [`exchange`] does, except that `withholder`'s protocol
/// messages to `victim` go out one behind (each held until its next one), as
/// mpc-node's test-only `withhold` does: its last message reaches the others but
/// never `victim`.
fn exchange_withholding<S: Suite>(nodes: &mut [Node<S>], withholder: usize, victim: usize) {
    let mut held: Option<Vec<u8>> = None;
    loop {
        let mut moved = 0;
        for i in 0..nodes.len() {
            moved += settle(&mut nodes[i]);
            let sender = ParticipantId(nodes[i].me);
            for (to, frame) in nodes[i].engine.drain_outbox() {
                moved += 1;
                let protocol = matches!(
                    NodeMessage::decode(&frame).unwrap().1,
                    NodeMessage::Protocol(_)
                );
                let frame = if i == withholder && to.0 as usize == victim && protocol {
                    match held.replace(frame) {
                        Some(previous) => previous,
                        None => continue,
                    }
                } else {
                    frame
                };
                handle(&mut nodes[to.0 as usize].engine, sender, &frame).unwrap();
            }
            let events = nodes[i].engine.drain_events();
            nodes[i].events.extend(events);
        }
        if moved == 0 {
            return;
        }
    }
}

/// Keygen attempt 0 among three: node 2 withholds its last message of the run
/// from node 0, so nodes 1 and 2 store their shares and node 0 waits on node 2
/// alone. The contract ends the attempt (say node 1's report of another run, or
/// its timeout) before node 0's stall rule fires; the key engine dropped for it
/// judges its run: node 2 is blamed once the run has been quiet long enough
/// (not while it was still taking messages), even though node 2's first message
/// of the next attempt reached node 0 before node 0 saw that attempt begin. Node 1,
/// which finished, blames nobody.
async fn an_ended_attempt_blames_the_peer_that_withheld_its_last_key_message<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    key_engines_for_attempt(&mut nodes, 0);
    assert!(nodes[1].engine.propose_key_task().unwrap());
    exchange_withholding(&mut nodes, 2, 0);
    assert_eq!(stored_keys(&nodes, 0, 0).len(), 2, "nodes 1 and 2 finished");
    assert_eq!(share_of(&nodes[0], 0), None, "node 0 waits on node 2");
    assert_eq!(nodes[0].engine.running(), 1);

    // Just after its last message the run is not judged: a peer may be slow.
    // (The run took that message a second ago, so node 2's message below is
    // newer than the quiet limit when the attempt ends.)
    let took_last = Instant::now() - Duration::from_secs(1);
    nodes[0].engine.expire(took_last);
    nodes[0].engine.judge_ended_attempt(took_last);
    assert!(nodes[0].engine.drain_peer_reports().is_empty());

    // Node 2 saw attempt 1 first and sent node 0 its first message of it, which
    // node 0's engine for attempt 0 holds for the engine to come.
    let mut next = key_engine(&nodes[2], generate::<S>(1));
    assert!(next.propose_key_task().unwrap());
    settle_engine(&mut next, &nodes[2].steps);
    let protocol: Vec<Vec<u8>> = next
        .drain_outbox()
        .into_iter()
        .filter(|(to, _)| to.0 == 0)
        .map(|(_, frame)| frame)
        .filter(|frame| {
            matches!(
                NodeMessage::decode(frame).unwrap().1,
                NodeMessage::Protocol(_)
            )
        })
        .collect();
    assert!(!protocol.is_empty(), "node 2's first message of attempt 1");
    for frame in &protocol {
        handle(&mut nodes[0].engine, ParticipantId(2), frame).unwrap();
    }

    // Attempt 0 ends 3 s after the run's last message, more than half the stall
    // limit (5 s here), and 2 s after node 2's message of attempt 1.
    let ended = took_last + Duration::from_secs(3);
    for node in nodes.iter_mut() {
        node.engine.judge_ended_attempt(ended);
    }
    assert_participant_2_alone_blamed(&mut nodes[0]);
    for node in &mut nodes[1..] {
        let reports = node.engine.drain_peer_reports();
        assert!(
            reports
                .iter()
                .all(|r| matches!(r, PeerReport::Success { .. })),
            "node {}: {reports:?}",
            node.me
        );
    }
    shut_down(&mut nodes).await;
}

/// Node 2 withholds its last keygen message from node 0, whose run stalls and
/// ends (blaming node 2; the daemon then reports the attempt failed). Node 0 runs
/// the attempt no more: proposing it starts nothing and a peer's invitation to it
/// is refused, so no fresh first round of the same instance reaches the peers'
/// runs (it would count there as progress and hide what they wait on).
async fn a_key_run_that_failed_here_is_not_run_again_in_its_attempt<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    key_engines_for_attempt(&mut nodes, 0);
    assert!(nodes[1].engine.propose_key_task().unwrap());
    exchange_withholding(&mut nodes, 2, 0);
    assert_eq!(nodes[0].engine.running(), 1, "node 0 waits on node 2");
    let now = Instant::now();
    nodes[0].engine.expire(now);
    // Past the stall limit (a quarter of the 20 s timeout).
    nodes[0].engine.expire(now + Duration::from_secs(6));
    assert_eq!(nodes[0].engine.running(), 0);
    assert_run_failed_on_participant_2(&mut nodes[0], "stalled waiting on participant 2");
    let told = outbox_messages(&mut nodes[0].engine);
    assert!(
        matches!(
            &told[..],
            [
                (ParticipantId(1), NodeMessage::Abandoned { .. }),
                (ParticipantId(2), NodeMessage::Abandoned { .. })
            ]
        ),
        "the others hear that node 0 gave up: {told:?}"
    );

    assert!(
        nodes[0].engine.propose_key_task().unwrap(),
        "the task stands"
    );
    assert_eq!(nodes[0].engine.running(), 0, "but is not run again here");
    match handle(
        &mut nodes[0].engine,
        ParticipantId(1),
        &keygen_start::<S>(0),
    ) {
        Err(EngineError::Refused(why)) => assert!(why.contains("failed"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(nodes[0].engine.running(), 0);
    assert!(nodes[0].engine.drain_outbox().is_empty(), "nothing sent");
    assert!(nodes[0].steps.is_empty(), "nothing to step");

    // The next attempt is a new task: node 0 runs it.
    nodes[0].engine.set_key_task(Some(generate::<S>(1)));
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert_eq!(nodes[0].engine.running(), 1);
    shut_down(&mut nodes).await;
}
