//! Bitcoin end to end: `chainsig btc send` (the built binary) spends two P2WPKH
//! outputs of a NEAR account's derived address, one MPC signature per input through
//! the devnet and the real contract, and every input is validated by Bitcoin Core's
//! consensus code (libbitcoinconsensus 26, the `bitcoinconsensus` crate). Consensus
//! validation is per input, against the spent output's script and amount, so the
//! funding transaction is built here and never mined. A stand-in Esplora server
//! serves outputs and fee estimates and takes (or refuses) the broadcast.

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use integration_tests::foreign::{Chainsig, EsploraState, FakeEsplora};
use integration_tests::{id, Cluster, ClusterConfig, NEAR};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use primitives::derivation;
use serde_json::{json, Value};
use std::time::Instant;

const PATH: &str = "bitcoin-1";

/// The derived key's regtest P2WPKH address, computed here from the root key.
fn derived_address(cluster: &Cluster, account: &str) -> Address {
    let key = derivation::derive_public_key_for(&cluster.public_key(), account, PATH).unwrap();
    let compressed =
        CompressedPublicKey::from_slice(key.to_encoded_point(true).as_bytes()).unwrap();
    Address::p2wpkh(&compressed, Network::Regtest)
}

/// A transaction paying `amounts` to `script`, spending an output nobody checks.
fn funding(script: &ScriptBuf, amounts: &[u64]) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([0x11; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: amounts
            .iter()
            .map(|&sats| TxOut {
                value: Amount::from_sat(sats),
                script_pubkey: script.clone(),
            })
            .collect(),
    }
}

/// Bitcoin Core's verdict on input `index` of `tx` spending `amount` locked by
/// `script` (P2SH, DERSIG, NULLDUMMY, CLTV, CSV and WITNESS rules).
fn consensus_ok(tx: &Transaction, index: usize, script: &ScriptBuf, amount: u64) -> bool {
    bitcoinconsensus::verify(script.as_bytes(), amount, &serialize(tx), None, index).is_ok()
}

fn raw_tx(json: &Value) -> Transaction {
    let hex = json["raw_transaction"].as_str().expect("a raw transaction");
    deserialize(&hex::decode(hex).unwrap()).unwrap()
}

/// Flips a bit in the last byte of input `index`'s signature's s.
fn tamper(tx: &Transaction, index: usize) -> Transaction {
    let mut tampered = tx.clone();
    let mut items: Vec<Vec<u8>> = tampered.input[index]
        .witness
        .iter()
        .map(<[u8]>::to_vec)
        .collect();
    let s_end = items[0].len() - 2; // the sighash type byte ends the signature
    items[0][s_end] ^= 1;
    tampered.input[index].witness = Witness::from_slice(&items);
    tampered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainsig_spends_p2wpkh_outputs_that_bitcoin_core_validates() {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let carol = "carol.test.near";
    let key = cluster
        .root
        .create_account(&id(carol), 10 * NEAR, vec![])
        .await
        .unwrap();
    let cli = Chainsig::for_account(&cluster, carol, &key).unwrap();
    let regtest = ["--network", "regtest"];

    let from = derived_address(&cluster, carol);
    let shown = cli
        .json(
            &[
                &["address", "--chain", "bitcoin", "--path", PATH][..],
                &regtest,
            ]
            .concat(),
        )
        .await
        .unwrap();
    assert_eq!(shown["address"], from.to_string());
    let script = from.script_pubkey();

    let fund = funding(&script, &[50_000, 70_000]);
    let txid = fund.compute_txid();
    let dest = derived_address(&cluster, "dave.test.near");

    // Two inputs given on the command line, 100,000 sat out, change back.
    let t = Instant::now();
    let utxo0 = format!("{txid}:0:50000");
    let utxo1 = format!("{txid}:1:70000");
    let to = format!("{dest}:100000");
    let sent = cli
        .json(
            &[
                &[
                    "btc", "send", "--path", PATH, "--utxo", &utxo0, "--utxo", &utxo1,
                ][..],
                &["--to", &to, "--fee-rate", "2"],
                &regtest,
            ]
            .concat(),
        )
        .await
        .unwrap();
    eprintln!(
        "btc send, 2 inputs (2 signatures) took {:?}: {sent}",
        t.elapsed()
    );
    let tx = raw_tx(&sent);
    assert_eq!(tx.compute_txid().to_string(), sent["txid"]);
    assert_eq!(tx.input.len(), 2);
    assert_eq!(tx.input[0].previous_output, OutPoint::new(txid, 0));
    assert_eq!(tx.input[1].previous_output, OutPoint::new(txid, 1));
    assert_eq!(tx.output[0].script_pubkey, dest.script_pubkey());
    assert_eq!(tx.output[0].value.to_sat(), 100_000);
    assert_eq!(tx.output[1].script_pubkey, script, "change goes back");
    let fee = 120_000 - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    assert_eq!(sent["fee_sat"], fee);
    assert!(
        fee >= 2 * tx.vsize() as u64,
        "fee {fee} for {} vbytes",
        tx.vsize()
    );
    eprintln!("fee {fee} sat for {} vbytes", tx.vsize());

    for (index, amount) in [(0, 50_000), (1, 70_000)] {
        assert!(consensus_ok(&tx, index, &script, amount), "input {index}");
        // The sighash commits to the amount: another amount does not verify.
        assert!(!consensus_ok(&tx, index, &script, amount + 1));
    }
    let tampered = tamper(&tx, 1);
    assert!(consensus_ok(&tampered, 0, &script, 50_000));
    assert!(
        !consensus_ok(&tampered, 1, &script, 70_000),
        "a tampered signature fails"
    );

    // Not enough in the inputs: refused before anything is signed.
    let short = cli
        .run(
            &[
                &["btc", "send", "--path", PATH, "--utxo", &utxo0, "--to", &to][..],
                &["--fee-rate", "2"],
                &regtest,
            ]
            .concat(),
        )
        .await;
    assert!(!short.success);
    assert!(
        short.stderr.contains(&format!(
            "error: insufficient funds on Bitcoin: {from} has 50000 sat"
        )),
        "{}",
        short.stderr
    );

    // Inputs and the fee rate from Esplora, the spend broadcast through it: first
    // refused (as Esplora relays Bitcoin Core's reason), then accepted.
    let esplora = FakeEsplora::start(EsploraState {
        utxos: json!([
            { "txid": txid.to_string(), "vout": 0, "value": 50_000, "status": { "confirmed": true } },
            { "txid": txid.to_string(), "vout": 1, "value": 70_000, "status": { "confirmed": false } },
        ]),
        fee_estimates: json!({ "1": 5.2, "6": 1.4, "144": 1.0 }),
        reject_with: Some(
            "sendrawtransaction RPC error: {\"code\":-26,\"message\":\"min relay fee not met\"}".into(),
        ),
        broadcasts: Vec::new(),
    })
    .await
    .unwrap();
    let small = format!("{dest}:30000");
    let args = [
        &["btc", "send", "--path", PATH, "--esplora", &esplora.url][..],
        &["--to", &small, "--broadcast", &esplora.url],
        &regtest,
    ]
    .concat();
    let refused = cli.run(&args).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("error: Bitcoin rejected the transaction: HTTP 400 Bad Request: sendrawtransaction RPC error"),
        "{}",
        refused.stderr
    );
    esplora.state.lock().unwrap().reject_with = None;
    let broadcast = cli.json(&args).await.unwrap();
    let tx = raw_tx(&broadcast);
    assert_eq!(broadcast["broadcast"], broadcast["txid"]);
    let bodies = esplora.state.lock().unwrap().broadcasts.clone();
    assert_eq!(bodies, [broadcast["raw_transaction"].as_str().unwrap()]);
    assert_eq!(tx.input.len(), 1, "the larger output alone pays for it");
    assert_eq!(tx.input[0].previous_output, OutPoint::new(txid, 1));
    assert!(consensus_ok(&tx, 0, &script, 70_000));
    let fee = 70_000 - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
    assert!(fee >= 2 * tx.vsize() as u64, "1.4 sat/vB rounds up to 2");

    cluster.shutdown().await;
    eprintln!("whole test: {:?}", started.elapsed());
}
