//! Three node loops (in one process, each with its own database, p2p listener on
//! 127.0.0.1 and NEAR account) against the devnet running our contract: key
//! generation and votes, stocking, and a user's `sign` answered end to end.

use devnet::{Devnet, DevnetConfig};
use mpc_node::chain::function_call;
use mpc_node::chain::{Chain, ContractState};
use mpc_node::daemon::{run, NodeConfig};
use mpc_node::p2p::noise::StaticKey;
use mpc_node::storage::{StorageKey, Store};
use near_primitives::transaction::{Action, DeployContractAction};
use primitives::{near_key, Payload, SignRequest, SignatureResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod common;
use common::{create, id, multichain_wasm};

/// A free port on 127.0.0.1 (bound and released; fine for tests).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_generate_the_key_and_answer_a_sign_request() {
    // Node logs (RUST_LOG=info to see them) help when this fails on a loaded machine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let devnet = Devnet::start(DevnetConfig::for_tests()).await.unwrap();
    let contract = id("signer.test.near");
    let root = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        devnet.root_account().clone(),
        devnet.root_secret_key().clone(),
    );
    let dir = tempfile::tempdir().unwrap();

    // Three nodes: NEAR accounts, p2p keys and addresses.
    let names = ["node0.test.near", "node1.test.near", "node2.test.near"];
    let mut nodes = Vec::new();
    for name in names {
        let account_key = create(&root, name, vec![]).await;
        let p2p_key = StaticKey::generate();
        let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        nodes.push((name, account_key, p2p_key, listen));
    }
    let candidates: serde_json::Map<String, serde_json::Value> = nodes
        .iter()
        .map(|(name, _, p2p, listen)| {
            let info = serde_json::json!({
                "account_id": name,
                "url": listen.to_string(),
                "cipher_pk": p2p.public().to_vec(),
                "sign_pk": "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp",
            });
            (name.to_string(), info)
        })
        .collect();
    let contract_key = create(
        &root,
        contract.as_str(),
        vec![Action::DeployContract(DeployContractAction {
            code: multichain_wasm(),
        })],
    )
    .await;
    let as_contract = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        contract.clone(),
        contract_key,
    );
    let init = function_call(
        "init",
        &serde_json::json!({ "threshold": 2, "candidates": candidates }),
        100,
        0,
    );
    as_contract
        .transact(&contract, vec![init])
        .await
        .expect("init");

    // Start the node loops.
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, account_key, p2p_key, listen)) in nodes.into_iter().enumerate() {
        let chain = Chain::new(devnet.rpc_url(), contract.clone(), id(name), account_key);
        let store = Store::open(
            &dir.path().join(format!("{i}.redb")),
            &StorageKey::generate(),
        )
        .unwrap();
        let mut config = NodeConfig::new(
            id(name),
            Arc::new(chain),
            Arc::new(store),
            p2p_key,
            listen,
            contract.as_str(),
        );
        config.poll_interval = Duration::from_millis(100);
        config.triple_target = 2;
        config.presignature_target = 1;
        config.protocol_timeout = Duration::from_secs(30);
        tasks.spawn(run(config, cancel.clone()));
    }

    // Key generation and votes make the contract Running.
    let observer = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("test.near"),
        devnet.root_secret_key().clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let public_key = loop {
        if let ContractState::Running { public_key, .. } = observer.state().await.unwrap() {
            break public_key;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not generate the key in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let root_key = near_key::parse_secp256k1(&public_key).unwrap();

    // A user signs; the nodes answer.
    let alice_key = create(&root, "alice.test.near", vec![]).await;
    let alice = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("alice.test.near"),
        alice_key,
    );
    let request = SignRequest {
        payload: Payload::new([0x5e; 32]).unwrap(),
        path: "ethereum-1".into(),
        key_version: 0,
    };
    let started = Instant::now();
    let returned = tokio::time::timeout(
        Duration::from_secs(240),
        alice.call("sign", serde_json::json!({ "request": request }), 300, 1),
    )
    .await
    .expect("the network answers within the wait")
    .expect("sign returns a signature");
    let response: SignatureResponse = serde_json::from_slice(&returned).unwrap();
    let derived =
        primitives::derivation::derive_public_key_for(&root_key, "alice.test.near", "ethereum-1")
            .unwrap();
    response
        .verify(&request.payload, &derived)
        .expect("a valid signature for alice's derived key");
    eprintln!("sign answered in {:?}", started.elapsed());

    cancel.cancel();
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    devnet.shutdown().await.unwrap();
}
