//! Signing end to end: key generation then a burst of signatures, each led by
//! another node and checked as a user would against the derived key; ECDSA's
//! triples, presignature and signature over the network; a presignature never
//! used twice across a restart; every frame delivered twice.

use super::harness::*;

for_each_scheme!(
    keygen_then_a_burst_of_signatures,
    a_presignature_is_never_used_twice_across_a_restart,
    every_frame_delivered_twice_changes_nothing,
);

/// A frame as [`exchange_twice`] delivered it: sender, recipient, bytes.
type Delivered = (ParticipantId, usize, Vec<u8>);

/// [`exchange`], but every frame is handed to its recipient twice in a row, and
/// kept in `delivered`. Both copies must be taken without complaint.
fn exchange_twice<S: Suite>(nodes: &mut [Node<S>], delivered: &mut Vec<Delivered>) {
    loop {
        let mut moved = 0;
        for i in 0..nodes.len() {
            moved += settle(&mut nodes[i]);
            let from = ParticipantId(nodes[i].me);
            for (to, frame) in nodes[i].engine.drain_outbox() {
                moved += 1;
                let to = to.0 as usize;
                for copy in ["first", "second"] {
                    handle(&mut nodes[to].engine, from, &frame)
                        .unwrap_or_else(|e| panic!("node {to}, {copy} copy from {}: {e}", from.0));
                }
                delivered.push((from, to, frame));
            }
            let events = nodes[i].engine.drain_events();
            nodes[i].events.extend(events);
        }
        if moved == 0 {
            return;
        }
    }
}

/// A sender writes a broken connection's last batch again on the next one, though
/// the peer may have read part of it, so any frame may come twice. Stock and a
/// signature made among a threshold subset with every frame delivered twice, and
/// then every frame once more after the runs ended: nothing is refused, nothing
/// new starts, nobody is blamed but for a late invitation to a finished ECDSA
/// stock run (a replay), and the signature verifies.
async fn every_frame_delivered_twice_changes_nothing<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let signers = participants(&[0, 1]);
    let mut delivered = Vec::new();

    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        nodes[0].engine.propose_triples(&signers).unwrap();
        exchange_twice(&mut nodes, &mut delivered);
    }
    let presignature = nodes[0]
        .engine
        .propose_presignature(&signers)
        .unwrap()
        .expect("the inputs of a presignature");
    exchange_twice(&mut nodes, &mut delivered);
    let request = request::<S>("erin.near", "twice", 0x44);
    add_request_everywhere(&mut nodes, &request);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &signers)
            .unwrap(),
        Some(presignature)
    );
    exchange_twice(&mut nodes, &mut delivered);
    for node in &nodes[..2] {
        let [(id, _, response)] = signed(node)[..] else {
            panic!("node {} signed once: {:?}", node.me, node.events)
        };
        assert_eq!(id, request.request_id);
        S::verify(&root, "erin.near", "twice", &request.payload, response).unwrap();
    }

    // Every frame once more, long after: no run starts again, none is held.
    // An invitation to an ECDSA stock run (several rounds) that finished here
    // cannot be a transport's repeat any more (it would have come before the
    // proposer's last messages): node 1 blames node 0 for each, and for
    // nothing else. The rest is forgiven.
    let (invitations, rest): (Vec<&Delivered>, Vec<&Delivered>) =
        delivered.iter().partition(|(_, _, frame)| {
            matches!(NodeMessage::decode(frame), Ok((_, NodeMessage::Start(_))))
        });
    for (from, to, frame) in invitations {
        handle(&mut nodes[*to].engine, *from, frame).unwrap();
    }
    let replays = nodes[1].engine.drain_peer_reports();
    let blamed: Vec<&PeerReport> = replays
        .iter()
        .filter(|r| matches!(r, PeerReport::Failure { .. }))
        .collect();
    let stock_runs = match S::TRIPLES_PER_PRESIGNATURE {
        0 => 0,
        per => per + 1, // its triples and the presignature
    };
    assert_eq!(blamed.len(), stock_runs, "{replays:?}");
    assert!(blamed.iter().all(|r| matches!(
        r,
        PeerReport::Failure {
            peer: ParticipantId(0),
            kind: FailureKind::Misbehaved,
            ..
        }
    )));
    for (from, to, frame) in rest {
        handle(&mut nodes[*to].engine, *from, frame).unwrap();
    }
    for node in nodes.iter_mut() {
        assert_eq!(settle(node), 0, "node {}: no step to run", node.me);
        assert_eq!(
            node.engine.running(),
            0,
            "node {}: no run under way",
            node.me
        );
        let failed: Vec<&Event> = node
            .events
            .iter()
            .filter(|e| matches!(e, Event::Failed { .. }))
            .collect();
        assert!(failed.is_empty(), "node {}: {failed:?}", node.me);
        let blamed: Vec<PeerReport> = node
            .engine
            .drain_peer_reports()
            .into_iter()
            .filter(|r| !matches!(r, PeerReport::Success { .. }))
            .collect();
        assert!(blamed.is_empty(), "node {}: {blamed:?}", node.me);
    }
    assert!(
        nodes.iter_mut().all(|n| n.engine.drain_outbox().is_empty()),
        "nobody declines or answers a repeat"
    );
    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_presignature_and_signature_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<Ecdsa>(3, 2, dir.path()).await;

    // Node 0 stocks two triples among all three (`StockSubset::All`), then a
    // presignature from them.
    let all = Participants::first(3).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    assert_eq!(nodes[0].engine.propose_triples(&all).unwrap().len(), 1);
    assert_eq!(nodes[0].engine.propose_triples(&all).unwrap().len(), 1);
    pump(&mut nodes, "two triples at three nodes", |n| {
        count(n, |e| matches!(e, Event::TripleStored(_))) == 6
    })
    .await;
    assert!(nodes.iter().all(|n| triple_ids(n).len() == 2));
    pump(&mut nodes, "the holders confirm the triples", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().triples == 2
    })
    .await;
    let presignature = nodes[0]
        .engine
        .propose_presignature(&all)
        .unwrap()
        .expect("two own triples");
    pump(&mut nodes, "a presignature at three nodes", |n| {
        count(n, |e| matches!(e, Event::PresignatureStored(_))) == 3
    })
    .await;
    pump(&mut nodes, "the holders confirm the presignature", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().presignatures == 1
    })
    .await;
    assert!(
        nodes.iter().all(|n| triple_ids(n).is_empty()),
        "the triples are used up"
    );
    assert!(nodes
        .iter()
        .all(|n| presignature_ids(n) == vec![presignature]));

    // A request, as every node sees it on the chain.
    let request = request::<Ecdsa>("alice.near", "ethereum-1", 0x33);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }

    // Node 2 goes down; nodes 0 and 1 (the threshold) sign.
    nodes[2].network.take().unwrap().shutdown().await;
    let signers = participants(&[0, 1]);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &signers)
            .unwrap(),
        Some(presignature)
    );
    pump(&mut nodes, "a signature at both signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for (i, node) in nodes[..2].iter().enumerate() {
        let [(id, leader, response)] = signed(node)[..] else {
            panic!("node {i} signed once")
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, i == 0, "only the proposer leads");
        Ecdsa::verify(
            &root,
            "alice.near",
            "ethereum-1",
            &request.payload,
            response,
        )
        .unwrap();
    }

    // The presignature is gone at the signers: no second signature from it, ever.
    assert!(presignature_ids(&nodes[0]).is_empty());
    assert!(presignature_ids(&nodes[1]).is_empty());
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &signers)
            .unwrap(),
        None
    );

    shut_down(&mut nodes).await;
}

/// Four nodes generate the key with the engines (threshold 3), every node stocks a
/// presignature among a threshold subset, then four requests are signed at once,
/// each led by another node; every signature verifies for its derived key.
async fn keygen_then_a_burst_of_signatures<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(4, dir.path()).await;
    let all = Participants::first(4).unwrap();
    let task = KeyTask::Generate {
        epoch: 0,
        domain: S::DOMAIN,
        attempt: 0,
    };
    for node in nodes.iter_mut() {
        node.engine = engine::<S>(node.me, 0, &all, 3, &node.store, &node.steps, None);
        node.engine.set_key_task(Some(task.clone()));
        assert!(!node.engine.has_key());
    }
    // Two propose: one run happens.
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert!(nodes[2].engine.propose_key_task().unwrap());
    pump(&mut nodes, "keygen at four nodes", |n| {
        stored_keys(n, 0, 0).len() == 4
    })
    .await;
    let keys = stored_keys(&nodes, 0, 0);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    let root = keys[0].clone();
    for node in &nodes {
        assert!(node.engine.has_key());
        assert_eq!(share_of(node, 0), Some((0, root.clone())));
    }

    // Every node stocks one presignature (ECDSA: from two triples) among a subset
    // of exactly the threshold, all four at once.
    let per = S::TRIPLES_PER_PRESIGNATURE;
    if per > 0 {
        for node in nodes.iter_mut() {
            assert_eq!(node.engine.propose_triples(&all).unwrap().len(), per);
        }
        pump(&mut nodes, "every node's triples confirmed", |n| {
            n.iter()
                .all(|n| n.engine.own_confirmed_stock(&all).unwrap().triples == per)
        })
        .await;
        assert_eq!(
            count(&nodes, |e| matches!(e, Event::TripleStored(_))),
            4 * per * 3,
            "each triple at exactly the threshold"
        );
    }
    for node in nodes.iter_mut() {
        node.engine
            .propose_presignature(&all)
            .unwrap()
            .expect("the inputs of a presignature");
    }
    pump(&mut nodes, "every node's presignature confirmed", |n| {
        n.iter()
            .all(|n| n.engine.own_confirmed_stock(&all).unwrap().presignatures == 1)
    })
    .await;
    assert_eq!(
        count(&nodes, |e| matches!(e, Event::PresignatureStored(_))),
        4 * 3
    );
    for node in &nodes {
        assert_eq!(
            node.engine.own_stock(&all).unwrap().presignatures,
            1,
            "node {}",
            node.me
        );
    }

    // Four requests, seen by every node; node i leads request i, all at once.
    let requests: Vec<PendingRequest> = (0..4u8)
        .map(|i| request::<S>(&format!("user{i}.near"), &format!("path-{i}"), 0x10 + i))
        .collect();
    for node in nodes.iter_mut() {
        for request in &requests {
            node.engine.add_request(request).unwrap();
        }
    }
    for (node, request) in nodes.iter_mut().zip(&requests) {
        node.engine
            .propose_sign(request.request_id, &all)
            .unwrap()
            .expect("an own presignature");
    }
    pump(&mut nodes, "four signatures at three signers each", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 4 * 3
    })
    .await;
    for (i, request) in requests.iter().enumerate() {
        let mut leaders = Vec::new();
        let mut signers = 0;
        for node in &nodes {
            for (id, leader, response) in signed(node) {
                if id != request.request_id {
                    continue;
                }
                signers += 1;
                if leader {
                    leaders.push(node.me);
                }
                S::verify(
                    &root,
                    &request.predecessor,
                    &request.path,
                    &request.payload,
                    response,
                )
                .unwrap();
            }
        }
        assert_eq!(signers, 3, "request {i}: the threshold signs");
        assert_eq!(leaders, vec![i as u32], "request {i}: its proposer leads");
    }
    // The answer a leader shares with its peers: every node that saw the request
    // takes it (the one that did not sign it too), under no other request; one
    // for a request not seen here cannot be checked.
    let answers: Vec<SignatureResponse> = requests
        .iter()
        .map(|request| {
            nodes
                .iter()
                .flat_map(|n| signed(n))
                .find(|(id, leader, _)| *id == request.request_id && *leader)
                .map(|(_, _, response)| response.clone())
                .expect("a leader's answer")
        })
        .collect();
    for node in &nodes {
        for (i, (request, answer)) in requests.iter().zip(&answers).enumerate() {
            let check = |id| node.engine.check_answer(id, answer);
            assert_eq!(check(&request.request_id), Some(Ok(())));
            let other = &requests[(i + 1) % requests.len()].request_id;
            assert!(matches!(check(other), Some(Err(_))), "request {i}'s answer");
        }
        assert_eq!(
            node.engine
                .check_answer(&RequestId([0xee; 32]), &answers[0]),
            None
        );
    }
    // Every presignature was used once and is gone everywhere.
    for node in nodes.iter_mut() {
        assert!(presignature_ids(node).is_empty(), "node {}", node.me);
        assert_eq!(
            node.engine
                .propose_sign(requests[0].request_id, &all)
                .unwrap(),
            None
        );
    }

    shut_down(&mut nodes).await;
}

/// A presignature is taken out of storage before its first use: after a restart
/// (at the proposer and at a signer that joined but never finished) nobody can
/// sign with it again, and the restarted engines still sign with fresh stock.
async fn a_presignature_is_never_used_twice_across_a_restart<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();
    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![presignature])
        .map(|n| n.me as usize)
        .expect("a second holder");
    let request = request::<S>("dave.near", "solana-1", 0x21);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }

    // Node 0 leads; its holder joins (taking its share of the presignature), then
    // both crash before any protocol message is exchanged.
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(presignature)
    );
    let invitation = nodes[0]
        .engine
        .drain_outbox()
        .into_iter()
        .find(|(to, _)| to.0 as usize == holder)
        .map(|(_, frame)| frame)
        .expect("an invitation to the holder");
    handle(&mut nodes[holder].engine, ParticipantId(0), &invitation).unwrap();
    assert_eq!(nodes[holder].engine.running(), 1, "the holder joined");
    let _ = nodes[holder].engine.drain_outbox(); // lost in the crash
    for i in [0, holder] {
        assert!(presignature_ids(&nodes[i]).is_empty(), "taken at node {i}");
    }

    // Restart: fresh engines load their key shares from storage.
    for node in nodes.iter_mut() {
        node.engine = engine::<S>(node.me, 0, &all, 2, &node.store, &node.steps, None);
        assert!(!node.engine.has_key());
        assert_eq!(node.engine.load_key(0).unwrap(), KeyLoad::Loaded);
        assert!(node.engine.has_key());
        node.engine.add_request(&request).unwrap();
        node.events.clear();
    }
    assert_eq!(nodes[0].engine.own_stock(&all).unwrap().presignatures, 0);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        None,
        "the proposer has no presignature left"
    );
    // The same invitation again (a replay, or the proposer's retry from before the
    // crash) is declined: the holder's share is gone.
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(0),
        &invitation
    )));
    assert_eq!(nodes[holder].engine.running(), 0);
    let declines = outbox_messages(&mut nodes[holder].engine);
    assert!(
        matches!(&declines[..], [(ParticipantId(0), NodeMessage::Decline { job: Job::Sign { presignature: p, .. }, .. })] if *p == presignature),
        "{declines:?}"
    );

    // Fresh stock signs the request after the restart.
    let fresh = stock_presignature(&mut nodes, 0, &all).await;
    assert_ne!(fresh, presignature);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(fresh)
    );
    pump(&mut nodes, "a signature with fresh stock", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for node in &nodes {
        for (_, _, response) in signed(node) {
            S::verify(&root, "dave.near", "solana-1", &request.payload, response).unwrap();
        }
    }

    shut_down(&mut nodes).await;
}

fn triple_ids(node: &Node<Ecdsa>) -> Vec<RecordId> {
    node.store.record_ids(Ecdsa::TRIPLES).unwrap()
}
