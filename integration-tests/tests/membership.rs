//! Membership changes through the contract, with node processes doing the
//! resharing: a fourth node joins (`join`, `vote_join`) and the network reshares
//! to it, keeping the public key. While the newcomer is still down the resharing
//! cannot complete (every new participant must vote), and the old set keeps
//! answering requests. The newcomer then starts, the resharing completes, and the
//! newcomer signs (with two old nodes down, it must). A node leaves (`vote_leave`)
//! likewise, and the rest sign without it. Both domains (secp256k1 and Ed25519)
//! are reshared every time, and both sign after each change.

use integration_tests::{eddsa_request, request, Cluster, ClusterConfig, ED25519_DOMAIN};
use mpc_node::chain::{Chain, ContractState};
use std::time::Duration;

fn node_client(cluster: &Cluster, i: usize) -> Chain {
    let node = &cluster.nodes[i];
    cluster.client(node.account.as_str(), node.account_key.clone())
}

fn participants(state: &ContractState) -> Vec<String> {
    match state {
        ContractState::Running(running) => running
            .participants
            .participants
            .keys()
            .map(|a| a.to_string())
            .collect(),
        other => panic!("not Running: {other:?}"),
    }
}

fn epoch(state: &ContractState) -> u64 {
    match state {
        ContractState::Running(running) => running.epoch,
        other => panic!("not Running: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_then_one_leaves_with_resharing_and_the_key_stays() {
    let mut cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let public_key = cluster.public_key();
    let ed25519_key = cluster.ed25519_public_key();
    let user = cluster.user("dave.test.near", 1).await.unwrap().remove(0);

    // The newcomer: account and home; its process starts later.
    let newcomer = cluster.new_node("node3.test.near").await.unwrap();
    let candidate = cluster.nodes[newcomer].candidate.clone();
    node_client(&cluster, newcomer)
        .call(
            "join",
            serde_json::json!({
                "url": candidate["url"],
                "cipher_pk": candidate["cipher_pk"],
                "sign_pk": candidate["sign_pk"],
            }),
            100,
            0,
        )
        .await
        .expect("join");
    for voter in [0, 1] {
        node_client(&cluster, voter)
            .call(
                "vote_join",
                serde_json::json!({ "candidate": "node3.test.near" }),
                100,
                0,
            )
            .await
            .expect("vote_join");
    }
    // Resharing waits for the newcomer's vote; meanwhile the old set signs.
    let state = node_client(&cluster, 0).state().await.unwrap();
    assert!(
        matches!(state, ContractState::Resharing { .. }),
        "{state:?}"
    );
    for (i, payload) in [[0x21; 32], [0x22; 32]].into_iter().enumerate() {
        let during = request(payload, &format!("during-resharing-{i}"));
        let signature = cluster
            .sign(&user, &during, 300)
            .await
            .expect("the old set signs while the contract is Resharing");
        cluster.verify(&user, &during, &signature).unwrap();
    }
    let state = node_client(&cluster, 0).state().await.unwrap();
    assert!(
        matches!(state, ContractState::Resharing { .. }),
        "the requests were answered while Resharing: {state:?}"
    );
    cluster.start_node(newcomer).unwrap();
    let state = cluster
        .wait_running(Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(epoch(&state), 1);
    assert_eq!(participants(&state).len(), 4);
    assert_eq!(cluster.public_key(), public_key, "resharing keeps the key");
    assert_eq!(
        cluster.ed25519_public_key(),
        ed25519_key,
        "and the Ed25519 key"
    );

    // With nodes 0 and 1 down, only node 2 and the newcomer can sign (t = 2).
    cluster.kill_node(0);
    cluster.kill_node(1);
    let joined = [
        request([0x31; 32], "after-join"),
        eddsa_request(vec![0x31; 180], "after-join"),
    ];
    for request in &joined {
        let signature = cluster
            .sign(&user, request, 300)
            .await
            .expect("node 2 and the newcomer sign");
        cluster.verify(&user, request, &signature).unwrap();
    }

    // Node 0 leaves: the others vote it out and reshare among themselves.
    cluster.start_node(0).unwrap();
    cluster.start_node(1).unwrap();
    for voter in [1, 2] {
        node_client(&cluster, voter)
            .call(
                "vote_leave",
                serde_json::json!({ "kick": "node0.test.near" }),
                100,
                0,
            )
            .await
            .expect("vote_leave");
    }
    // Resharing must finish before the state reads Running with epoch 2.
    let state = loop {
        let state = cluster
            .wait_running(Duration::from_secs(120))
            .await
            .unwrap();
        if epoch(&state) == 2 {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        participants(&state),
        ["node1.test.near", "node2.test.near", "node3.test.near"]
    );
    assert_eq!(cluster.public_key(), public_key, "resharing keeps the key");
    assert_eq!(
        cluster.ed25519_public_key(),
        ed25519_key,
        "and the Ed25519 key"
    );
    // The leaver sees epoch 2 too (and deletes its shares) before it is killed.
    for _ in 0..100 {
        let state = cluster.node_state(0).await.unwrap();
        if state["epoch"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill_node(0);
    let left = [
        request([0x32; 32], "after-leave"),
        eddsa_request(vec![0x32; 1232], "after-leave"),
    ];
    for request in &left {
        let signature = cluster
            .sign(&user, request, 300)
            .await
            .expect("the three remaining nodes sign");
        cluster.verify(&user, request, &signature).unwrap();
    }

    // Epoch 2 is final: the nodes keep only its shares; the shares of epochs 0
    // and 1 are gone from their disks, the leaver's too.
    for i in 0..4 {
        if i != 0 {
            cluster.stop_node(i).unwrap();
        }
        let expected: &[u64] = if i == 0 { &[] } else { &[2] };
        for domain in [primitives::DomainId(0), ED25519_DOMAIN] {
            let epochs = cluster.stored_share_epochs(i, domain);
            assert_eq!(
                epochs, expected,
                "node {i} keeps only the final epoch's share of domain {domain}"
            );
        }
    }
    cluster.shutdown().await;
}
