//! Stock: runs among rotating subsets of exactly the threshold (only live
//! participants), and a threshold subset that makes stock and signs with it.

use super::harness::*;

for_each_scheme!(
    stock_runs_use_exactly_threshold_participants_in_rotating_subsets,
    a_threshold_subset_makes_stock_and_signs,
);

async fn stock_runs_use_exactly_threshold_participants_in_rotating_subsets<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start::<S>(4, 2, dir.path()).await;
    let all = Participants::first(4).unwrap();
    let per_proposal = S::TRIPLES_PER_PRESIGNATURE.max(1);

    // The default: one presignature's stock per proposal (ECDSA: a pair of
    // triples, both among the same subset) among exactly the threshold, the
    // proposer included.
    let mut subsets = Vec::new();
    for _ in 0..6 {
        let ids = propose_stock(&mut nodes[0].engine, &all);
        assert_eq!(ids.len(), per_proposal, "one presignature's stock");
        let runs = started_runs(&mut nodes[0]);
        assert_eq!(runs.len(), per_proposal);
        for ((job, participants), id) in runs.iter().zip(&ids) {
            assert_eq!(*job, stock_job::<S>(*id));
            assert_eq!(participants.len(), 2, "exactly the threshold");
            assert!(participants.contains(&0), "the proposer takes part");
        }
        assert!(
            runs.iter().all(|(_, p)| *p == runs[0].1),
            "a presignature's triples among one subset"
        );
        subsets.push(runs[0].1.clone());
    }
    for pair in subsets.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive proposals rotate: {subsets:?}"
        );
    }
    // Every other participant takes its share: the rotation covers them all.
    for other in 1..4 {
        assert_eq!(
            subsets.iter().filter(|s| s.contains(&other)).count(),
            2,
            "{subsets:?}"
        );
    }

    // Only live participants: with node 3 down, node 3 is never picked.
    let live = participants(&[0, 1, 2]);
    for _ in 0..4 {
        propose_stock(&mut nodes[1].engine, &live);
        for (_, participants) in started_runs(&mut nodes[1]) {
            assert_eq!(participants.len(), 2);
            assert!(participants.contains(&1) && !participants.contains(&3));
        }
    }
    // With exactly the threshold live there is one subset: the live ones.
    let two = participants(&[0, 2]);
    for _ in 0..2 {
        propose_stock(&mut nodes[2].engine, &two);
        for (_, participants) in started_runs(&mut nodes[2]) {
            assert_eq!(participants, vec![0, 2]);
        }
    }
    // `all`: one run among every live participant.
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let ids = if S::TRIPLES_PER_PRESIGNATURE > 0 {
        nodes[0].engine.propose_triples(&all).unwrap()
    } else {
        vec![nodes[0].engine.propose_presignature(&all).unwrap().unwrap()]
    };
    assert_eq!(ids.len(), 1);
    assert_eq!(started_runs(&mut nodes[0])[0].1, vec![0, 1, 2, 3]);

    shut_down(&mut nodes).await;
}

async fn a_threshold_subset_makes_stock_and_signs<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();

    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holders: Vec<u32> = nodes
        .iter()
        .filter(|n| presignature_ids(n) == vec![presignature])
        .map(|n| n.me)
        .collect();
    assert_eq!(holders.len(), 2, "exactly the threshold holds it");
    assert!(holders.contains(&0));
    for node in &nodes {
        let held = !presignature_ids(node).is_empty();
        assert_eq!(held, holders.contains(&node.me), "only its holders");
    }
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        let triple_holders = count(&nodes, |e| matches!(e, Event::TripleStored(_)));
        assert_eq!(
            triple_holders,
            2 * S::TRIPLES_PER_PRESIGNATURE,
            "the triples were made among the same two"
        );
    }
    assert_eq!(nodes[0].engine.own_stock(&all).unwrap().presignatures, 1);

    let request = request::<S>("carol.near", "ethereum-7", 0x55);
    add_request_everywhere(&mut nodes, &request);
    lead_and_sign(
        &mut nodes,
        &request,
        &all,
        presignature,
        2,
        "a signature at the holders",
    )
    .await;
    for node in &nodes {
        let signatures = signed(node);
        if !holders.contains(&node.me) {
            assert!(signatures.is_empty(), "node {} is no holder", node.me);
            continue;
        }
        let [(id, leader, response)] = signatures[..] else {
            panic!("node {} did not sign once", node.me)
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, node.me == 0);
        S::verify(
            &root,
            "carol.near",
            "ethereum-7",
            &request.payload,
            response,
        )
        .unwrap();
    }

    // The outsider down: new runs leave it out.
    let outsider = (0..3).find(|p| !holders.contains(p)).unwrap();
    let live = Participants::new(holders.iter().copied().map(ParticipantId)).unwrap();
    let second = stock_presignature(&mut nodes, 0, &live).await;
    assert_ne!(second, presignature);
    assert!(presignature_ids(&nodes[outsider as usize]).is_empty());
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        assert!(nodes[outsider as usize]
            .store
            .record_ids(S::TRIPLES)
            .unwrap()
            .is_empty());
    }
    // A holder down: its presignatures are unusable.
    let other_holder = *holders.iter().find(|p| **p != 0).unwrap();
    let without_it = participants(&[0, outsider]);
    assert_eq!(
        nodes[0]
            .engine
            .own_stock(&without_it)
            .unwrap()
            .presignatures,
        0
    );
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &without_it)
            .unwrap(),
        None,
        "holder {other_holder} is down"
    );

    shut_down(&mut nodes).await;
}

/// The job of stock record `id` as [`propose_stock`] starts it.
fn stock_job<S: Suite>(id: RecordId) -> Job {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        Job::Triple { id }
    } else {
        Job::Presign {
            id,
            triples: Vec::new(),
        }
    }
}

/// The participants of every stock run `node` started (from its `Start`s, drained
/// from its outbox), in order: (job, participants).
fn started_runs<S: Suite>(node: &mut Node<S>) -> Vec<(Job, Vec<u32>)> {
    let mut runs: Vec<(Job, Vec<u32>)> = Vec::new();
    for (_, bytes) in node.engine.drain_outbox() {
        if let Ok((domain, NodeMessage::Start(start))) = NodeMessage::decode(&bytes) {
            assert_eq!(domain, S::DOMAIN);
            if !runs.iter().any(|(job, _)| *job == start.job) {
                let participants = start.participants.iter().map(|p| p.0).collect();
                runs.push((start.job, participants));
            }
        }
    }
    runs
}
