//! Peers that refuse, misbehave or go silent: forged and unknown invitations
//! refused, a decline ending the run at once, garbage doing no harm, runs that
//! time out or stall blamed on the silent participant alone, and an honest
//! participant a liar made abort never blamed for it.

use super::harness::*;

for_each_scheme!(
    a_peer_declining_ends_the_run_and_garbage_does_no_harm,
    a_timed_out_run_blames_the_silent_participant_alone,
    a_stalled_run_ends_early_and_blames_the_silent_participant_alone,
    a_message_its_queue_refuses_ends_the_run_at_once,
);

#[tokio::test]
async fn forged_and_unknown_invitations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start::<Ecdsa>(3, 2, dir.path()).await;
    let d = Ecdsa::DOMAIN;

    // Node 2 invites node 1 to sign with a presignature owned by node 0.
    // Ids carry their owner in the top 16 bits: this one is participant 0's.
    let owned_by_0 = RecordId::new(ParticipantId(0), 77);
    let forged = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[1, 2]),
        job: Job::Sign {
            request_id: [1; 32],
            presignature: owned_by_0,
        },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(2),
        &forged.encode(d)
    )));

    // Node 0 invites node 1 to sign a request node 1 has not seen on the chain yet:
    // nothing starts until it has; then node 1 checks the rest (here: it holds no
    // such presignature) and still signs nothing.
    let pending = request::<Ecdsa>("x.near", "p", 2);
    let unknown = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[0, 1]),
        job: Job::Sign {
            request_id: pending.request_id.0,
            presignature: owned_by_0,
        },
    });
    handle(&mut nodes[1].engine, ParticipantId(0), &unknown.encode(d)).unwrap();
    assert_eq!(nodes[1].engine.running(), 0, "deferred, not started");
    assert!(nodes[1].engine.take_awaiting_chain());
    nodes[1].engine.add_request(&pending).unwrap();
    assert_eq!(
        nodes[1].engine.running(),
        0,
        "no presignature 77 here: refused"
    );

    // Triples among the live participants (at least the threshold) are joined;
    // outsiders are refused.
    let partial = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[0, 1]),
        job: Job::Triple {
            id: RecordId::new(ParticipantId(0), 78),
        },
    });
    handle(&mut nodes[1].engine, ParticipantId(0), &partial.encode(d))
        .expect("a triple among two of three, the threshold");
    assert_eq!(nodes[1].engine.running(), 1);
    let outsider = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[0, 1, 9]),
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(0),
        &outsider.encode(d)
    )));

    // A run of another epoch (e.g. from before a resharing) is refused.
    let stale = NodeMessage::Start(Start {
        epoch: 5,
        participants: ids(&[0, 1, 2]),
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(0),
        &stale.encode(d)
    )));

    // Bytes that are no frame.
    for garbage in [&[9u8, 9, 9][..], &[]] {
        assert!(matches!(
            NodeMessage::decode(garbage),
            Err(EngineError::Malformed(_))
        ));
    }
    assert_eq!(
        nodes[1].engine.running(),
        1,
        "nothing started but the triple among two"
    );

    shut_down(&mut nodes).await;
}

/// A signer that cannot join declines, and the proposer ends the run at once (not
/// at the timeout). Frames that are garbage, or messages a peer may not send, are
/// refused and change nothing: the engines sign afterwards as before.
async fn a_peer_declining_ends_the_run_and_garbage_does_no_harm<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();
    let d = S::DOMAIN;

    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![presignature])
        .map(|n| n.me as usize)
        .expect("a second holder");
    let outsider = 3 - holder;

    // Garbage: no frame, another version, a cut frame, an unreadable message.
    let good = NodeMessage::Ping.encode(d);
    let mut other_version = good.clone();
    other_version[0] ^= 0xff;
    let mut bad_body = NodeMessage::StoredPresignature(presignature).encode(d);
    bad_body.truncate(bad_body.len() - 3);
    for garbage in [
        vec![],
        vec![9, 9, 9],
        other_version,
        good[..5].to_vec(),
        bad_body,
    ] {
        assert!(
            matches!(
                handle(&mut nodes[holder].engine, ParticipantId(0), &garbage),
                Err(EngineError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
    handle(&mut nodes[holder].engine, ParticipantId(0), &good).unwrap();
    // A protocol message that is no protocol message: refused, and blamed on its
    // sender (the frames above never reach an engine; the daemon blames those).
    nodes[holder].engine.drain_peer_reports();
    assert!(handle(
        &mut nodes[holder].engine,
        ParticipantId(0),
        &NodeMessage::Protocol(vec![0xde, 0xad, 0xbe, 0xef]).encode(d)
    )
    .is_err());
    assert!(
        matches!(
            &nodes[holder].engine.drain_peer_reports()[..],
            [PeerReport::Failure {
                peer: ParticipantId(0),
                kind: FailureKind::Malformed,
                ..
            }]
        ),
        "garbage is blamed on its sender"
    );
    // Only the owner retires a record: the outsider cannot make the holder drop
    // node 0's presignature.
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::RetirePresignature(presignature).encode(d)
    )));
    // Confirmations of records that are not ours are ignored.
    handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::StoredPresignature(presignature).encode(d),
    )
    .unwrap();
    // So are confirmations of ids of ours that no run of ours made: a peer
    // cannot fill the owner's table of confirmations with made-up ids.
    let confirmations = nodes[0].engine.acknowledged_ids();
    for serial in 1_000..1_100 {
        let made_up = RecordId::new(ParticipantId(0), serial);
        for ack in [
            NodeMessage::StoredTriple(made_up),
            NodeMessage::StoredPresignature(made_up),
        ] {
            handle(
                &mut nodes[0].engine,
                ParticipantId(outsider as u32),
                &ack.encode(d),
            )
            .unwrap();
        }
    }
    assert_eq!(nodes[0].engine.acknowledged_ids(), confirmations);
    // An invitation to sign with a presignature its sender does not own.
    let forged = NodeMessage::Start(Start {
        epoch: 0,
        participants: ids(&[holder as u32, outsider as u32]),
        job: Job::Sign {
            request_id: [7; 32],
            presignature,
        },
    });
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &forged.encode(d)
    )));
    // A decline of a run the sender is not in, or that is not ours, is ignored.
    handle(
        &mut nodes[0].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::Decline {
            job: Job::Sign {
                request_id: [7; 32],
                presignature,
            },
            reason: "spam\n".repeat(1000),
        }
        .encode(d),
    )
    .unwrap();
    for node in &mut nodes {
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        node.events.extend(node.engine.drain_events());
    }
    assert!(nodes.iter().all(|n| n
        .events
        .iter()
        .all(|e| !matches!(e, Event::Failed { .. } | Event::Signed { .. }))));
    assert_eq!(
        presignature_ids(&nodes[holder]),
        vec![presignature],
        "nothing was retired"
    );
    // The garbage went to the holder's outbox as nothing but declines to the
    // forger: send what it has.
    let replies = nodes[holder].engine.drain_outbox();
    assert!(
        replies.iter().all(|(to, _)| to.0 as usize == outsider),
        "{replies:?}"
    );
    send(&nodes[holder], replies);

    // The engines work as before: a signature with the presignature.
    let request = request::<S>("frank.near", "solana-2", 0x66);
    add_request_everywhere(&mut nodes, &request);
    lead_and_sign(
        &mut nodes,
        &request,
        &all,
        presignature,
        2,
        "a signature after the garbage",
    )
    .await;
    for node in &nodes {
        for (_, _, response) in signed(node) {
            S::verify(&root, "frank.near", "solana-2", &request.payload, response).unwrap();
        }
    }

    // Now a holder that lost its share (say it was retired there) declines the
    // next signature, and the proposer ends the run at once.
    let second = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![second])
        .map(|n| n.me as usize)
        .expect("a second holder");
    assert!(nodes[holder]
        .store
        .retire_record(S::PRESIGNATURES, second)
        .unwrap());
    let next = super::harness::request::<S>("grace.near", "solana-3", 0x77);
    for node in nodes.iter_mut() {
        node.engine.add_request(&next).unwrap();
        node.events.clear();
    }
    let started = Instant::now();
    assert_eq!(
        nodes[0].engine.propose_sign(next.request_id, &all).unwrap(),
        Some(second)
    );
    assert_eq!(nodes[0].engine.running(), 1);
    pump_with(&mut nodes, "the proposer hears the decline", true, |n| {
        count(n, |e| matches!(e, Event::Failed { .. })) == 1
    })
    .await;
    let [(from, why)] = &nodes[holder].refused[..] else {
        panic!("the holder refused once: {:?}", nodes[holder].refused)
    };
    assert_eq!(*from, 0);
    assert!(why.contains("not available"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended long before the timeout"
    );
    let Some(Event::Failed { job, reason }) = nodes[0].events.first() else {
        panic!("the proposer's run failed: {:?}", nodes[0].events)
    };
    assert_eq!(
        *job,
        Job::Sign {
            request_id: next.request_id.0,
            presignature: second,
        }
    );
    assert!(
        reason.contains(&format!("participant {holder} declined"))
            && reason.contains("not available"),
        "{reason}"
    );
    assert_eq!(nodes[0].engine.running(), 0);
    assert_eq!(count(&nodes, |e| matches!(e, Event::Signed { .. })), 0);
    // The decline is blamed on the holder, and on nobody else; the signature
    // before it counted as a success with its co-signer.
    let reports = nodes[0].engine.drain_peer_reports();
    let failures: Vec<(ParticipantId, FailureKind, &str)> = reports
        .iter()
        .filter_map(|r| match r {
            PeerReport::Failure { peer, kind, detail } => Some((*peer, *kind, detail.as_str())),
            PeerReport::Success { .. } => None,
        })
        .collect();
    assert!(
        matches!(&failures[..], [(p, FailureKind::Decline, why)] if p.0 as usize == holder && why.contains("not available")),
        "{reports:?}"
    );
    assert!(reports
        .iter()
        .any(|r| matches!(r, PeerReport::Success { .. })));

    shut_down(&mut nodes).await;
}

/// A stock run among three stalls because one of them is silent (down from the
/// start: it never saw the invitation). At the timeout the proposer blames the
/// silent one, and only it: the honest third participant sent all it could; that
/// one, a joiner, blames nobody but a proposer.
async fn a_timed_out_run_blames_the_silent_participant_alone<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = stall_a_run_on_a_silent_participant::<S>(dir.path()).await;
    assert_eq!(nodes[0].engine.running(), 1);
    assert_eq!(nodes[1].engine.running(), 1);
    let after_timeout = Instant::now() + Duration::from_secs(21);
    // Node 1 joined on node 0's invitation: it blames only the proposer (node 0
    // could have invited it alone), so it lets the run go unjudged.
    nodes[1].engine.expire(after_timeout);
    assert!(nodes[1].engine.drain_peer_reports().is_empty());
    let failed = nodes[1].engine.drain_events();
    assert!(
        matches!(&failed[..], [Event::Failed { reason, .. }] if reason == "timed out"),
        "{failed:?}"
    );
    for node in nodes[..1].iter_mut() {
        node.engine.expire(after_timeout);
        assert_run_failed_on_participant_2(node, "waiting on participant 2");
    }
    shut_down(&mut nodes).await;
}

/// As above, but the proposer judges the run as soon as it has taken no message
/// for a quarter of the timeout (20 s here) and the silent one sent nothing for as
/// long: it does not hold its slot until the timeout.
async fn a_stalled_run_ends_early_and_blames_the_silent_participant_alone<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = stall_a_run_on_a_silent_participant::<S>(dir.path()).await;
    let now = Instant::now();
    // The joiner does not end it early: it blames no one but the proposer.
    nodes[1].engine.expire(now + Duration::from_secs(4));
    nodes[1].engine.expire(now + Duration::from_secs(10));
    assert_eq!(nodes[1].engine.running(), 1);
    assert!(nodes[1].engine.drain_peer_reports().is_empty());
    for node in nodes[..1].iter_mut() {
        // Not yet: the run took its last message just now.
        node.engine.expire(now + Duration::from_secs(4));
        assert_eq!(node.engine.running(), 1, "node {}", node.me);
        assert!(node.engine.drain_peer_reports().is_empty());
        node.engine.expire(now + Duration::from_secs(10));
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        assert_run_failed_on_participant_2(node, "stalled waiting on participant 2");
    }
    shut_down(&mut nodes).await;
}

/// Node 0 proposes a stock run among three; the daemon finds the queue to
/// participant 2 full and cannot queue the invitation. Participant 2 would never
/// join, and the run would wait for it until the stall rule: it ends at once
/// instead. Node 0 tells participant 1 (not 2: that notice would find the same
/// full queue), reports the run failed and blames nobody (a full queue may be a
/// slow link). A refused message of no running run ends nothing.
async fn a_message_its_queue_refuses_ends_the_run_at_once<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<S>(3, 2, dir.path()).await;
    nodes[0].engine.drain_peer_reports();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    propose_stock(&mut nodes[0].engine, &Participants::first(3).unwrap());
    let runs = nodes[0].engine.running();
    assert!(runs > 0);
    let invitations = outbox_messages(&mut nodes[0].engine);
    let Some(refused) = invitations.iter().find_map(|(to, message)| match message {
        NodeMessage::Start(start) if *to == ParticipantId(2) => Some(start.clone()),
        _ => None,
    }) else {
        panic!("no invitation to participant 2: {invitations:?}");
    };
    let refused = NodeMessage::Start(refused);
    assert!(nodes[0].engine.unsent(ParticipantId(2), &refused));
    assert_eq!(nodes[0].engine.running(), runs - 1, "that run alone ended");
    let NodeMessage::Start(Start { job, .. }) = &refused else {
        unreachable!()
    };
    let notices = outbox_messages(&mut nodes[0].engine);
    assert!(
        matches!(&notices[..], [(ParticipantId(1), NodeMessage::Abandoned { job: ended, .. })] if ended == job),
        "participant 1 alone is told: {notices:?}"
    );
    let failed = nodes[0].engine.drain_events();
    assert!(
        matches!(&failed[..], [Event::Failed { job: ended, reason }]
            if ended == job && reason.contains("the queue to it is full")),
        "{failed:?}"
    );
    assert!(nodes[0].engine.drain_peer_reports().is_empty(), "no blame");
    // Refused again (another of its messages), or a message of no run: nothing ends.
    assert!(!nodes[0].engine.unsent(ParticipantId(2), &refused));
    assert!(!nodes[0].engine.unsent(ParticipantId(2), &NodeMessage::Ping));
    assert_eq!(nodes[0].engine.running(), runs - 1);

    // A protocol message of a run under way is refused the same way.
    let before = nodes[0].engine.running();
    propose_stock(&mut nodes[0].engine, &Participants::first(3).unwrap());
    settle(&mut nodes[0]);
    let Some((_, message)) = outbox_messages(&mut nodes[0].engine)
        .into_iter()
        .find(|(to, m)| *to == ParticipantId(2) && matches!(m, NodeMessage::Protocol(_)))
    else {
        panic!("node 0's first step sent participant 2 nothing");
    };
    let started = nodes[0].engine.running() - before;
    assert!(nodes[0].engine.unsent(ParticipantId(2), &message));
    assert_eq!(nodes[0].engine.running() - before, started - 1);
    assert!(nodes[0].engine.drain_peer_reports().is_empty(), "no blame");
    shut_down(&mut nodes).await;
}

/// What the liar of [`liar_frames_an_honest_participant`] sends node 1 in place
/// of each of its messages after the first.
#[derive(Clone, Copy, Debug)]
enum Junk {
    /// Too short for cait-sith's own header: dropped unread, so node 1 waits.
    Ignored,
    /// cait-sith's header, then a byte no MessagePack value starts with: node 1's
    /// instance fails on it.
    Fatal,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_participant_a_liar_starves_is_not_blamed() {
    liar_frames_an_honest_participant(Junk::Ignored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_participant_a_liar_makes_abort_is_not_blamed() {
    liar_frames_an_honest_participant(Junk::Fatal).await;
}

/// A liar (node 2) answers the proposer (node 0) as it should but sends the other
/// honest participant (node 1) junk under the run's header after its first
/// message. Node 1 waits, or aborts, and so answers node 0's later rounds no
/// more, while the liar's count toward node 0 is full: by counts alone node 1 is
/// the straggler. It says it waits (even while more junk comes), or abandoned
/// the run, and node 0 blames nobody; an abandoned run ends at the stall.
///
/// ECDSA only: EdDSA's stock and signing runs are one round, whose message every
/// participant sends before it reads any, so nobody can be starved midway.
async fn liar_frames_an_honest_participant(junk: Junk) {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<Ecdsa>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();
    for node in nodes.iter_mut() {
        node.engine.drain_peer_reports();
    }
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let runs = propose_stock(&mut nodes[0].engine, &all).len();
    let mut first_to_1 = std::collections::BTreeSet::new();
    let (broken, last_junk) = exchange_with_liar(&mut nodes, junk, &mut first_to_1, 2, 1);
    assert!(
        broken >= runs,
        "the liar broke {broken} messages of {runs} runs"
    );
    let ended_at_1 = match junk {
        Junk::Ignored => 0,
        Junk::Fatal => runs,
    };
    assert_eq!(nodes[1].engine.running(), runs - ended_at_1, "{junk:?}");
    assert_eq!(nodes[0].engine.running(), runs, "{junk:?}");
    assert_eq!(nodes[2].engine.running(), runs, "{junk:?}");

    // Idle for half the stall limit (5 s of the 20 s timeout): the notices go out.
    let now = Instant::now();
    for node in nodes.iter_mut() {
        node.engine.expire(now); // notes the runs' last progress
    }
    // Junk dropped unread keeps an instance looking busy, as it is taken. Node 0
    // waits on node 1, and node 1 (a joiner) may blame node 0: the liar sends
    // node 0 junk too, which node 0 takes but answers nothing, so node 0 still
    // says it waits. (Fatal junk would end node 0's run.)
    let junk_frame = last_junk.expect("the liar sent junk");
    if let Junk::Ignored = junk {
        handle(&mut nodes[0].engine, ParticipantId(2), &junk_frame).unwrap();
        assert!(settle(&mut nodes[0]) > 0, "node 0 took the junk");
    }
    for node in nodes.iter_mut() {
        node.engine.expire(now + Duration::from_secs(3));
    }
    exchange_with_liar(&mut nodes, junk, &mut first_to_1, 2, 1);
    let (judged_at, reason) = match junk {
        // Stalled, but no straggler: kept until the timeout.
        Junk::Ignored => (Duration::from_secs(21), "timed out".to_string()),
        // Stalled and given up by a participant: ended at once.
        Junk::Fatal => (Duration::from_secs(6), "abandoned by [1]".to_string()),
    };
    for node in nodes.iter_mut() {
        node.engine.expire(now + judged_at);
        assert_eq!(node.engine.running(), 0, "node {} {junk:?}", node.me);
        let reports = node.engine.drain_peer_reports();
        assert!(
            !reports
                .iter()
                .any(|r| matches!(r, PeerReport::Failure { .. })),
            "node {} {junk:?}: {reports:?}",
            node.me
        );
    }
    for i in [0, 2] {
        let failed = nodes[i].engine.drain_events();
        assert!(
            failed.len() == runs
                && failed.iter().all(
                    |e| matches!(e, Event::Failed { reason: why, .. } if why.contains(&reason))
                ),
            "node {i} {junk:?}: {failed:?}"
        );
    }
    shut_down(&mut nodes).await;
}

/// Runs steps and moves frames straight between engines until nothing moves,
/// with node `liar`'s protocol messages to node `victim` made `junk` after each
/// run's first (noted in `first_to_victim`). Returns how many it broke, and the
/// last junk frame.
fn exchange_with_liar(
    nodes: &mut [Node<Ecdsa>],
    junk: Junk,
    first_to_victim: &mut std::collections::BTreeSet<InstanceId>,
    liar: usize,
    victim: u32,
) -> (usize, Option<Vec<u8>>) {
    let mut broken = 0;
    let mut last_junk = None;
    loop {
        let mut moved = 0;
        for i in 0..nodes.len() {
            moved += settle(&mut nodes[i]);
            for (to, mut frame) in nodes[i].engine.drain_outbox() {
                moved += 1;
                if i == liar && to == ParticipantId(victim) {
                    if let Some(bad) = junk_after_first(&frame, junk, first_to_victim) {
                        frame = bad;
                        broken += 1;
                        last_junk = Some(frame.clone());
                    }
                }
                let from = ParticipantId(nodes[i].me);
                handle(&mut nodes[to.0 as usize].engine, from, &frame).unwrap();
            }
            let events = nodes[i].engine.drain_events();
            nodes[i].events.extend(events);
        }
        if moved == 0 {
            return (broken, last_junk);
        }
    }
}

/// In a run of two, a failed check can only be the other participant's doing:
/// node 1 answers node 0's triple runs among the two of them with fatal junk,
/// and node 0 blames node 1 for misbehaving, once per run. Nobody else is blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_in_a_run_of_two_blames_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start::<Ecdsa>(3, 2, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine.drain_peer_reports();
    }
    let pair = participants(&[0, 1]);
    nodes[0].engine.propose_triples(&pair).unwrap();
    let mut first_to_0 = std::collections::BTreeSet::new();
    let (broken, _) = exchange_with_liar(&mut nodes, Junk::Fatal, &mut first_to_0, 1, 0);
    assert!(broken > 0, "node 1 sent junk");
    assert_eq!(nodes[0].engine.running(), 0, "node 0's run failed on it");
    let reports = nodes[0].engine.drain_peer_reports();
    assert!(
        !reports.is_empty()
            && reports.iter().all(|r| matches!(
                r,
                PeerReport::Failure {
                    peer: ParticipantId(1),
                    kind: FailureKind::Misbehaved,
                    ..
                }
            )),
        "{reports:?}"
    );
    for node in &mut nodes[1..] {
        let reports = node.engine.drain_peer_reports();
        assert!(
            !reports
                .iter()
                .any(|r| matches!(r, PeerReport::Failure { .. })),
            "node {}: {reports:?}",
            node.me
        );
    }
    shut_down(&mut nodes).await;
}

/// `frame` with its protocol message's payload made `junk`, unless it is the
/// first of its run (noted in `first`) or not a protocol message.
fn junk_after_first(
    frame: &[u8],
    junk: Junk,
    first: &mut std::collections::BTreeSet<InstanceId>,
) -> Option<Vec<u8>> {
    let (domain, NodeMessage::Protocol(bytes)) = NodeMessage::decode(frame).unwrap() else {
        return None;
    };
    let (header, payload) = threshold::wire::Header::decode(&bytes).unwrap();
    if first.insert(header.instance) {
        return None;
    }
    /// cait-sith's own message header: a channel tag of 20 bytes, a waitpoint of 8.
    const CAIT_SITH_HEADER: usize = 28;
    let body = match junk {
        Junk::Ignored => vec![0],
        Junk::Fatal => [&payload[..CAIT_SITH_HEADER], &[0xc1]].concat(),
    };
    Some(NodeMessage::Protocol(header.encode(&body)).encode(domain))
}

/// Three nodes, the third silent (down from the start: it never sees the
/// invitation); node 0 proposes a stock run among all three, and the two others
/// exchange everything they can (2 s) until the run waits on the silent one.
async fn stall_a_run_on_a_silent_participant<S: Suite>(dir: &std::path::Path) -> Vec<Node<S>> {
    let (mut nodes, _root) = start::<S>(3, 2, dir).await;
    let all = Participants::first(3).unwrap();
    for node in nodes.iter_mut() {
        node.engine.drain_peer_reports();
    }
    nodes[2].network.take().unwrap().shutdown().await;
    nodes[0].engine.set_stock_subset(StockSubset::All);
    propose_stock(&mut nodes[0].engine, &all);
    let quiet = Instant::now() + Duration::from_secs(2);
    pump_with(&mut nodes, "the run stalls", true, |_| {
        Instant::now() >= quiet
    })
    .await;
    nodes
}
