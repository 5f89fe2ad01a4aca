//! Ethereum end to end on real software: a NEAR account's derived address on anvil
//! (a real Ethereum node) is funded, and `chainsig` — the built binary, reading the
//! account's key from near-cli's credentials file — sends ether and calls a contract
//! with transactions the MPC cluster signs through the devnet and the real contract.
//! anvil recovers the sender from our signatures and executes the transactions.

use alloy_primitives::{Address, Bytes, B256, U256};
use chainsig::ethereum::{self, CallRequest, EthSend};
use chainsig::{Near, Progress};
use integration_tests::foreign::{Anvil, Chainsig};
use integration_tests::{id, Cluster, ClusterConfig, NEAR};
use primitives::{address, derivation, near_key, EcdsaPayload, SignatureResponse};
use serde_json::Value;
use std::time::{Duration, Instant};

const PATH: &str = "ethereum-1";

/// A contract that stores its first calldata word in slot 0 and its caller in slot 1.
/// Init code: CODECOPY the 11-byte runtime to memory and RETURN it. Runtime:
/// PUSH1 0 CALLDATALOAD PUSH1 0 SSTORE CALLER PUSH1 1 SSTORE STOP.
const STORE_INIT_CODE: &str = "600b600c600039600b6000f3\
                               6000356000553360015500";

/// A contract whose every call reverts: runtime PUSH1 0 PUSH1 0 REVERT.
const REVERT_INIT_CODE: &str = "6005600c60003960056000f3\
                                60006000fd";

/// `eth send --path PATH --eth-rpc URL` followed by `extra`.
fn eth_send<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["eth", "send", "--path", PATH, "--eth-rpc", url][..],
        extra,
    ]
    .concat()
}

fn ether(text: &str) -> U256 {
    ethereum::parse_amount(&format!("{text}ether")).unwrap()
}

fn field<'a>(json: &'a Value, name: &str) -> &'a str {
    json[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {json}"))
}

fn wei(json: &Value, name: &str) -> U256 {
    field(json, name).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainsig_sends_ether_and_calls_a_contract_from_a_derived_address_on_anvil() {
    let started = Instant::now();
    let (cluster, anvil) = tokio::join!(Cluster::start(ClusterConfig::new(3, 2)), Anvil::start());
    let (cluster, anvil) = (cluster.unwrap(), anvil.unwrap());
    eprintln!("cluster and anvil up in {:?}", started.elapsed());
    let alice = "alice.test.near";
    let alice_key = cluster
        .root
        .create_account(&id(alice), 10 * NEAR, vec![])
        .await
        .unwrap();
    let cli = Chainsig::for_account(&cluster, alice, &alice_key).unwrap();

    // The address, as chainsig reports it and as derived here from the root key.
    let shown = cli
        .json(&["address", "--chain", "ethereum", "--path", PATH])
        .await
        .unwrap();
    let derived = derivation::derive_public_key_for(&cluster.public_key(), alice, PATH).unwrap();
    let expected = address::to_checksum_string(&address::ethereum_address(&derived));
    assert_eq!(field(&shown, "address"), expected);
    let from: Address = expected.parse().unwrap();

    anvil
        .send_from_dev(Some(from), ether("1"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(anvil.balance(from).await, ether("1"));

    // A transfer, through the binary.
    let to = Address::repeat_byte(0x0b);
    let t = Instant::now();
    let to_text = to.to_string();
    let sent = cli
        .json(&eth_send(
            &anvil.url,
            &["--to", &to_text, "--value", "0.25ether"],
        ))
        .await
        .unwrap();
    eprintln!(
        "eth send (sign + relay + receipt) took {:?}: {sent}",
        t.elapsed()
    );
    assert_eq!(sent["status"], 1, "{sent}");
    assert_eq!(sent["gas_used"], 21_000);
    assert_eq!(sent["nonce"], 0);
    assert_eq!(field(&sent, "from"), expected);
    let fee = wei(&sent, "fee_wei");
    assert_eq!(
        fee,
        U256::from(21_000u64) * wei(&sent, "effective_gas_price")
    );
    assert_eq!(anvil.balance(to).await, ether("0.25"));
    assert_eq!(anvil.balance(from).await, ether("1") - ether("0.25") - fee);
    // anvil recovered the sender from our signature: the derived address.
    let hash: B256 = field(&sent, "hash").parse().unwrap();
    let mined: Value = anvil
        .rpc
        .call("eth_getTransactionByHash", serde_json::json!([hash]))
        .await
        .unwrap();
    assert_eq!(
        mined["from"].as_str().unwrap().to_lowercase(),
        expected.to_lowercase()
    );
    assert_eq!(mined["type"], "0x2", "an EIP-1559 transaction");

    // A contract call, through the library: the contract sees the derived address
    // as its caller.
    let contract = anvil
        .deploy(STORE_INIT_CODE.parse::<Bytes>().unwrap())
        .await
        .unwrap();
    let near = Near::connect(
        cluster.devnet.rpc_url(),
        cluster.contract.clone(),
        id(alice),
        alice_key.clone(),
    );
    let word = B256::repeat_byte(0x5a);
    let call = EthSend {
        to: contract,
        data: Bytes::copy_from_slice(word.as_slice()),
        ..Default::default()
    };
    let called = ethereum::send(
        &near,
        &anvil.rpc,
        PATH,
        &call,
        Duration::from_secs(30),
        &Progress::quiet(),
    )
    .await
    .unwrap();
    assert_eq!(called.status, 1);
    assert_eq!(called.nonce, 1);
    eprintln!(
        "contract call: gas used {}, fee {} wei",
        called.gas_used, called.fee_wei
    );
    let slot = |n: u64| anvil.rpc.storage_at(contract, U256::from(n));
    assert_eq!(slot(0).await.unwrap(), word);
    assert_eq!(slot(1).await.unwrap(), from.into_word());

    // A personal message, checked by the EVM's own ecrecover (precompile 0x01).
    let signed = cli
        .json(&[
            "eth",
            "sign-message",
            "--path",
            PATH,
            "--message",
            "hello anvil",
        ])
        .await
        .unwrap();
    let signature: Bytes = field(&signed, "signature").parse().unwrap();
    let hash: B256 = field(&signed, "message_hash").parse().unwrap();
    let mut input = hash.to_vec();
    input.extend_from_slice(&U256::from(signature[64]).to_be_bytes::<32>());
    input.extend_from_slice(&signature[..64]);
    let recovered = anvil
        .rpc
        .call_contract(&CallRequest {
            to: Some(Address::with_last_byte(1)),
            data: Some(input.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(Address::from_word(B256::from_slice(&recovered)), from);

    // Any payload through `chainsig sign`, checked here against the derived key.
    let payload = [0x42u8; 32];
    let answer = cli
        .json(&[
            "sign",
            "--domain",
            "0",
            "--path",
            PATH,
            "--payload",
            &hex::encode(payload),
        ])
        .await
        .unwrap();
    assert_eq!(
        answer["derived_public_key"],
        near_key::to_near_string(&derived)
    );
    let response: SignatureResponse = serde_json::from_value(answer["signature"].clone()).unwrap();
    let ecdsa = response.as_ecdsa().expect("a secp256k1 answer");
    ecdsa
        .verify(&EcdsaPayload::new(payload).unwrap(), &derived)
        .unwrap();

    // A call that reverts is mined (the fee is paid), reported, and fails the command.
    let reverter = anvil
        .deploy(REVERT_INIT_CODE.parse::<Bytes>().unwrap())
        .await
        .unwrap();
    let reverter = reverter.to_string();
    let reverted = cli
        .run(&eth_send(
            &anvil.url,
            &["--to", &reverter, "--gas-limit", "50000", "--json"],
        ))
        .await;
    assert!(!reverted.success);
    let report: Value = serde_json::from_str(&reverted.stdout).unwrap();
    assert_eq!(report["status"], 0, "{report}");
    assert!(
        reverted.stderr.contains("but reverted (status 0)"),
        "{}",
        reverted.stderr
    );

    // Clear refusals: not enough ether (nothing is signed), no NEAR key, and a
    // transaction the node rejects (a fee cap below the base fee).
    let broke = cli
        .run(&eth_send(
            &anvil.url,
            &["--to", &to_text, "--value", "100ether"],
        ))
        .await;
    assert!(!broke.success);
    assert!(
        broke.stderr.contains(&format!(
            "error: insufficient funds on Ethereum: {expected} has"
        )),
        "{}",
        broke.stderr
    );
    let stranger = cli
        .run(
            &[
                &["--account", "bob.test.near"][..],
                &eth_send(&anvil.url, &["--to", &to_text]),
            ]
            .concat(),
        )
        .await;
    assert!(
        stranger
            .stderr
            .contains("error: no NEAR key for bob.test.near"),
        "{}",
        stranger.stderr
    );
    let cheap = cli
        .run(&eth_send(
            &anvil.url,
            &[
                "--to",
                &to_text,
                "--value",
                "1gwei",
                "--gas-limit",
                "21000",
                "--max-fee-per-gas",
                "1wei",
                "--max-priority-fee-per-gas",
                "1wei",
            ],
        ))
        .await;
    assert!(!cheap.success);
    assert!(
        cheap
            .stderr
            .contains("error: Ethereum rejected the transaction:"),
        "{}",
        cheap.stderr
    );
    eprintln!(
        "rejected as: {}",
        cheap.stderr.lines().last().unwrap_or_default()
    );
    assert_eq!(
        anvil.rpc.nonce(from).await.unwrap(),
        3,
        "the transfer, the call and the revert were mined; nothing else"
    );

    cluster.shutdown().await;
    eprintln!("whole test: {:?}", started.elapsed());
}
