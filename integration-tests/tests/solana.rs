//! Solana on real software: the client's build → sign → assemble → relay path for a
//! NEAR account's derived Ed25519 address, executed by LiteSVM (the Agave SVM:
//! signature verification, fees, the System program) behind the JSON-RPC endpoint
//! of scripts/solana-rpc.mjs.
//!
//! End to end: `chainsig sol send` (the built binary, with the account's key in
//! near-cli's credentials file) has the MPC network sign the transfer in domain 1
//! through the devnet and the real contract, and LiteSVM executes it.
//!
//! The other tests drive the same path with a signature from a root secret the
//! test knows, with the tweak added as the nodes add it to their shares
//! ([`LocalEd25519Root`]), to reach cases the network would never produce
//! (tampered and foreign signatures); the derived key is checked against
//! primitives' derivation, which the contract uses.

use chainsig::solana::{self, MessageSigner, Pubkey, SolSend};
use chainsig::{Error, Progress};
use integration_tests::foreign::Chainsig;
use integration_tests::solana::{LocalEd25519Root, LocalEd25519Signer, SolanaRpc};
use integration_tests::{id, Cluster, ClusterConfig, NEAR};
use primitives::ed25519::Ed25519PublicKey;
use primitives::{Ed25519Signature, EddsaPayload};
use std::time::Duration;

const SOL: u64 = solana::LAMPORTS_PER_SOL;
const ALICE: &str = "alice.test.near";
const PATH: &str = "solana-1";
const CONFIRM: Duration = Duration::from_secs(10);

fn fresh_address() -> Pubkey {
    Pubkey::new_from_array(rand::random())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainsig_sol_send_is_signed_by_the_network_and_executes_in_litesvm() {
    let (cluster, solana) =
        tokio::join!(Cluster::start(ClusterConfig::new(3, 2)), SolanaRpc::start());
    let (cluster, solana) = (cluster.unwrap(), solana.unwrap());
    let alice_key = cluster
        .root
        .create_account(&id(ALICE), 10 * NEAR, vec![])
        .await
        .unwrap();
    let cli = Chainsig::for_account(&cluster, ALICE, &alice_key).unwrap();

    // The address chainsig shows: the contract's derived key, as derived here.
    let shown = cli
        .json(&["address", "--chain", "solana", "--path", PATH])
        .await
        .unwrap();
    let expected = cluster
        .ed25519_public_key()
        .derive_for(ALICE, PATH)
        .solana_address();
    assert_eq!(shown["address"], expected.as_str(), "{shown}");
    let from: Pubkey = expected.parse().unwrap();
    solana.fund(&from, 2 * SOL).await.unwrap();

    let to = fresh_address();
    let (to_text, amount) = (to.to_string(), (SOL / 4).to_string());
    let sent = cli
        .json(&[
            "sol",
            "send",
            "--path",
            PATH,
            "--rpc",
            &solana.url,
            "--to",
            &to_text,
            "--lamports",
            &amount,
        ])
        .await
        .unwrap();
    eprintln!("sent: {sent}");
    assert_eq!(sent["err"], serde_json::Value::Null, "{sent}");
    assert_eq!(sent["from"], expected.as_str());
    let fee = sent["fee"].as_u64().unwrap();
    assert_eq!(fee, 5000);
    assert_eq!(
        solana.balance(&from).await.unwrap(),
        2 * SOL - SOL / 4 - fee
    );
    assert_eq!(solana.balance(&to).await.unwrap(), SOL / 4);
    // The transaction's id is the network's signature over the signed message.
    let signature: solana::Signature = sent["signature"].as_str().unwrap().parse().unwrap();
    let message = hex::decode(sent["message"].as_str().unwrap()).unwrap();
    integration_tests::verify_ed25519(
        &cluster.ed25519_public_key().derive_for(ALICE, PATH),
        &message,
        &<[u8; 64]>::from(signature),
    )
    .unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_transfer_signed_for_the_derived_address_executes_in_litesvm() {
    let solana = SolanaRpc::start().await.unwrap();
    let root = LocalEd25519Root::random();
    let signer = root.signer(ALICE, PATH);
    let from = signer.address();
    // The address chainsig shows is the base58 of primitives' derived key.
    assert_eq!(
        from.to_string(),
        root.public_key().derive_for(ALICE, PATH).solana_address()
    );
    solana.fund(&from, 2 * SOL).await.unwrap();

    let to = fresh_address();
    let request = SolSend {
        to,
        lamports: SOL / 4,
    };
    let sent = solana::send_with(&signer, &solana.rpc, &request, CONFIRM, &Progress::stderr())
        .await
        .unwrap();
    eprintln!("sent: {}", serde_json::to_string_pretty(&sent).unwrap());

    assert_eq!(sent.err, None);
    assert_eq!(sent.status, "finalized");
    assert_eq!(sent.from, from.to_string());
    // One signature at LiteSVM's (and mainnet's) 5000 lamports per signature.
    assert_eq!(sent.fee, 5000);
    // The balances moved by the amount and the fee, as reported and as read now.
    assert_eq!(sent.from_balance_before, 2 * SOL);
    assert_eq!(sent.from_balance_after, 2 * SOL - SOL / 4 - sent.fee);
    assert_eq!(
        (sent.to_balance_before, sent.to_balance_after),
        (0, SOL / 4)
    );
    assert_eq!(
        solana.balance(&from).await.unwrap(),
        sent.from_balance_after
    );
    assert_eq!(solana.balance(&to).await.unwrap(), SOL / 4);

    // The transaction's id is the derived key's signature over the message that
    // was signed (the Eddsa payload).
    let signature: solana::Signature = sent.signature.parse().unwrap();
    let message = hex::decode(&sent.message).unwrap();
    chainsig::eddsa::verify(
        signer.key(),
        &message,
        &Ed25519Signature(<[u8; 64]>::from(signature)),
    )
    .unwrap();
    let status = solana
        .rpc
        .signature_status(&signature)
        .await
        .unwrap()
        .expect("the node knows the transaction");
    assert_eq!(status.err, None);

    // Again, to the now existing account: a new blockhash is not needed, a new
    // message is (the amount differs), and the runtime takes it.
    let again = solana::send_with(
        &signer,
        &solana.rpc,
        &SolSend { to, lamports: 1000 },
        CONFIRM,
        &Progress::quiet(),
    )
    .await
    .unwrap();
    assert_eq!(again.err, None);
    assert_eq!(solana.balance(&to).await.unwrap(), SOL / 4 + 1000);
    assert_eq!(
        solana.balance(&from).await.unwrap(),
        sent.from_balance_after - 1000 - again.fee
    );
}

/// What `send_with` does up to the broadcast, by hand, so a test can spoil the
/// signature first: the prepared message, its payload and the derived key's
/// signature.
async fn signed_transfer(
    solana: &SolanaRpc,
    signer: &LocalEd25519Signer,
    request: &SolSend,
) -> (solana::Prepared, EddsaPayload, Ed25519Signature) {
    let prepared = solana::prepare(&solana.rpc, &signer.address(), request)
        .await
        .unwrap();
    let payload = solana::payload(&prepared.message).unwrap();
    let signature = signer.sign_bytes(payload.as_bytes());
    (prepared, payload, signature)
}

#[tokio::test]
async fn litesvm_refuses_a_tampered_or_foreign_signature_and_nothing_moves() {
    let solana = SolanaRpc::start().await.unwrap();
    let root = LocalEd25519Root::random();
    let signer = root.signer(ALICE, PATH);
    let from = signer.address();
    solana.fund(&from, SOL).await.unwrap();
    let to = fresh_address();
    let request = SolSend {
        to,
        lamports: SOL / 2,
    };
    let (prepared, payload, good) = signed_transfer(&solana, &signer, &request).await;

    let mut flipped = good;
    flipped.0[40] ^= 0x01; // a bit of S
    let other_account = root
        .signer("bob.test.near", PATH)
        .sign_bytes(payload.as_bytes());
    let other_message = {
        let (_, _, signature) = signed_transfer(
            &solana,
            &signer,
            &SolSend {
                to,
                lamports: SOL / 2 + 1,
            },
        )
        .await;
        signature
    };
    for (what, bad) in [
        ("a flipped bit", flipped),
        ("another account's key", other_account),
        ("a signature over another amount", other_message),
    ] {
        let transaction = solana::assemble(prepared.message.clone(), &bad).unwrap();
        let error = solana::relay(&solana.rpc, &transaction, CONFIRM, &Progress::quiet())
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, Error::BroadcastRejected { .. })
                && text.contains("signature verification failure"),
            "{what}: {text}"
        );
        assert_eq!(solana.balance(&from).await.unwrap(), SOL, "{what}");
        assert_eq!(solana.balance(&to).await.unwrap(), 0, "{what}");
    }

    // The same message with the right signature goes through: the refusals were
    // the signatures', nothing else.
    let transaction = solana::assemble(prepared.message, &good).unwrap();
    let status = solana::relay(&solana.rpc, &transaction, CONFIRM, &Progress::quiet())
        .await
        .unwrap();
    assert_eq!(status.err, None);
    assert_eq!(solana.balance(&to).await.unwrap(), SOL / 2);
    assert_eq!(
        solana.balance(&from).await.unwrap(),
        SOL - SOL / 2 - prepared.fee
    );
}

/// A signer that must not be reached: the checks before signing should stop
/// the transfer (a signature costs the user a NEAR transaction).
struct MustNotSign(Ed25519PublicKey);

impl MessageSigner for MustNotSign {
    fn key(&self) -> &Ed25519PublicKey {
        &self.0
    }

    async fn sign(&self, _: &EddsaPayload, _: &Progress) -> chainsig::Result<Ed25519Signature> {
        panic!("asked to sign a transfer the checks should have stopped");
    }
}

#[tokio::test]
async fn transfers_the_runtime_would_refuse_stop_before_signing_with_clear_errors() {
    let solana = SolanaRpc::start().await.unwrap();
    let signer = LocalEd25519Root::random().signer(ALICE, PATH);
    let from = signer.address();
    let unsigned = MustNotSign(*signer.key());
    let send = |to: Pubkey, lamports: u64| {
        let rpc = &solana.rpc;
        let unsigned = &unsigned;
        async move {
            solana::send_with(
                unsigned,
                rpc,
                &SolSend { to, lamports },
                CONFIRM,
                &Progress::quiet(),
            )
            .await
            .unwrap_err()
        }
    };

    // Nothing at all on the derived address.
    let error = send(fresh_address(), SOL).await;
    assert!(matches!(error, Error::InsufficientFunds { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("insufficient funds on Solana: {from} has 0 SOL")),
        "{text}"
    );

    // Enough for the amount, not for the fee on top.
    solana.fund(&from, SOL).await.unwrap();
    let text = send(fresh_address(), SOL).await.to_string();
    assert!(
        text.contains("has 1 SOL (1000000000 lamports)")
            && text.contains("needs 1.000005 SOL (1000005000 lamports)"),
        "{text}"
    );

    // A new account must start rent-exempt.
    let minimum = solana.rpc.rent_exempt_minimum(0).await.unwrap();
    let text = send(fresh_address(), minimum - 1).await.to_string();
    assert!(
        text.contains("does not exist yet") && text.contains("rent-exempt minimum"),
        "{text}"
    );

    // The sender may empty itself but not be left with dust.
    let text = send(fresh_address(), SOL - 5000 - 1).await.to_string();
    assert!(
        text.contains("would leave") && text.contains("send 999995000 lamports (all but the fee)"),
        "{text}"
    );

    // Nothing moved.
    assert_eq!(solana.balance(&from).await.unwrap(), SOL);

    // An endpoint that is not there.
    let dead = chainsig::solana::SolRpc::new("http://127.0.0.1:9");
    let error = dead.balance(&from).await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, Error::ForeignRpc { .. }) && text.contains("unreachable"),
        "{text}"
    );
}

#[tokio::test]
async fn the_endpoint_answers_bad_requests_with_json_rpc_errors() {
    let solana = SolanaRpc::start().await.unwrap();
    let refused = |method: &'static str, params: serde_json::Value| {
        let rpc = &solana.rpc;
        async move {
            rpc.call::<serde_json::Value>(method, params)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let text = refused("getBalance", serde_json::json!(["not-an-address"])).await;
    assert!(
        text.contains("not a valid address") && text.contains("-32602"),
        "{text}"
    );
    let text = refused("getProgramAccounts", serde_json::json!([])).await;
    assert!(
        text.contains("Method not found") && text.contains("-32601"),
        "{text}"
    );
    let text = refused(
        "sendTransaction",
        serde_json::json!(["AAAA", { "encoding": "base64" }]),
    )
    .await;
    assert!(text.contains("failed to deserialize"), "{text}");
}
