//! Three node loops (in one process, each with its own database, p2p listener on
//! 127.0.0.1 and NEAR account) against the devnet running our contract: key
//! generation in the contract's attempts and every participant's vote, stocking,
//! and a user's `sign` answered end to end.

use devnet::{Devnet, DevnetConfig};
use mpc_node::chain::function_call;
use mpc_node::chain::{Chain, ContractState};
use mpc_node::daemon::{run, NodeConfig};
use mpc_node::p2p::noise::StaticKey;
use mpc_node::storage::{StorageKey, Store};
use mpc_node::tuning::Tuning;
use near_crypto::{KeyType, SecretKey};
use near_primitives::transaction::{Action, DeployContractAction};
use primitives::{near_key, DomainId, EcdsaPayload, Payload, SignRequestArgs, SignatureResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::KeyShare;
use tokio_util::sync::CancellationToken;

mod common;
use common::{create, id, multichain_wasm};

/// `count` distinct free ports on 127.0.0.1: all bound at once, then released
/// (one port bound and released at a time can be handed out again at once).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
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
    for (name, port) in names.into_iter().zip(free_ports(names.len())) {
        let account_key = create(&root, name, vec![]).await;
        let p2p_key = StaticKey::generate();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        nodes.push((name, account_key, p2p_key, listen));
    }
    let candidates: serde_json::Map<String, serde_json::Value> = nodes
        .iter()
        .map(|(name, _, p2p, listen)| {
            let info = serde_json::json!({
                "account_id": name,
                "url": listen.to_string(),
                "cipher_pk": p2p.public().to_vec(),
                // p2p keys must be unique among the candidates.
                "sign_pk": SecretKey::from_seed(KeyType::ED25519, name).public_key().to_string(),
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
    let mut stores = Vec::new();
    for (i, (name, account_key, p2p_key, listen)) in nodes.into_iter().enumerate() {
        let chain = Chain::new(devnet.rpc_url(), contract.clone(), id(name), account_key);
        let store = Arc::new(
            Store::open(
                &dir.path().join(format!("{i}.redb")),
                &StorageKey::generate(),
            )
            .unwrap(),
        );
        stores.push(store.clone());
        let mut config = NodeConfig::new(
            id(name),
            Arc::new(chain),
            store,
            p2p_key,
            listen,
            contract.as_str(),
            &Tuning::default(),
        );
        config.poll_interval = Duration::from_millis(100);
        config.triple_target = 2;
        config.presignature_target = 1;
        config.protocol_timeout = Duration::from_secs(30);
        tasks.spawn(run(config, cancel.clone()));
    }

    // Key generation and every participant's vote make the contract Running.
    let observer = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("test.near"),
        devnet.root_secret_key().clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let running = loop {
        if let ContractState::Running(running) = observer.state().await.unwrap() {
            break running;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not generate the key in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let domain = running.domain(DomainId(0)).expect("domain 0 has its key");
    let root_key = near_key::parse_secp256k1(&domain.public_key).unwrap();
    // Every node holds its share from the attempt the contract completed.
    for (i, store) in stores.iter().enumerate() {
        let (attempt, share) = store
            .key_share_at::<KeyShare>(DomainId(0), running.epoch)
            .unwrap()
            .unwrap_or_else(|| panic!("node {i} stored no share"));
        assert_eq!(attempt, domain.attempt, "node {i}");
        assert_eq!(share.public_key, root_key, "node {i}");
    }

    // A user signs; the nodes answer.
    let alice_key = create(&root, "alice.test.near", vec![]).await;
    let alice = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("alice.test.near"),
        alice_key,
    );
    let payload = EcdsaPayload::new([0x5e; 32]).unwrap();
    let request = SignRequestArgs {
        payload_v2: Some(Payload::Ecdsa(payload)),
        path: "ethereum-1".into(),
        domain_id: Some(DomainId(0)),
        ..Default::default()
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
    let SignatureResponse::Secp256k1(response) = response else {
        panic!("domain 0 answers with a secp256k1 signature, got {response:?}")
    };
    let derived =
        primitives::derivation::derive_public_key_for(&root_key, "alice.test.near", "ethereum-1")
            .unwrap();
    response
        .verify(&payload, &derived)
        .expect("a valid signature for alice's derived key");
    eprintln!("sign answered in {:?}", started.elapsed());

    cancel.cancel();
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    devnet.shutdown().await.unwrap();
}
