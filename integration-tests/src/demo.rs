//! `make demo`: a whole Chain Signatures network on this machine, moving value on a
//! real Ethereum node and a real Solana runtime.
//!
//! Starts the devnet (100 ms blocks), deploys the multichain contract, starts three
//! `mpc-node` processes (threshold 2) that generate the key, and a local anvil (a
//! real Ethereum node). Then the four steps of a chain signature, as
//! `alice.test.near` for path `ethereum-1`:
//! 1. *payload*: an EIP-1559 transfer of 0.1 ETH from alice's derived Ethereum
//!    address (funded from anvil's dev account), hashed as Ethereum signs it;
//! 2. *sign request*: alice calls `sign` with `payload_v2`;
//! 3. *MPC signing*: the nodes sign, the contract verifies and returns it;
//! 4. *relay*: the signed transaction goes to anvil, which executes it.
//!
//! Then the same four steps on Solana (LiteSVM, the Agave runtime, behind a local
//! JSON-RPC endpoint): a System transfer of 0.1 SOL from alice's derived Solana
//! address under path `solana-1`, whose message bytes the network signs with
//! Ed25519 in domain 1 (FROST); the signature is checked with two implementations
//! other than the signer's (ed25519-dalek in the client, ring here) and LiteSVM
//! executes the transaction.
//!
//! Flags: `--json` (one JSON object on stdout), `--keep` (leave the network and anvil
//! running until Ctrl-C, write a near-cli credentials file for alice and print
//! commands that work as printed). The network is [`integration_tests::Cluster`],
//! which the end-to-end tests use too.

use alloy_primitives::{Address, Bytes, U256};
use chainsig::ecdsa::EcdsaKey;
use chainsig::ethereum::{self, EthSend};
use chainsig::solana::{self, MessageSigner, NetworkSigner, Pubkey, SolSend, SolSent};
use chainsig::{Near, Progress};
use integration_tests::foreign::{chainsig_binary, Anvil};
use integration_tests::solana::SolanaRpc;
use integration_tests::{id, mpc_node_binary, verify_ed25519, Cluster, ClusterConfig, NEAR};
use near_crypto::SecretKey;
use primitives::near_key;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const THRESHOLD: usize = 2;
const ALICE: &str = "alice.test.near";
const PATH: &str = "ethereum-1";
const SOLANA_PATH: &str = "solana-1";

struct Args {
    json: bool,
    keep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        json: false,
        keep: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => args.json = true,
            "--keep" => args.keep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// Progress goes to stderr, so `--json` keeps stdout to one object.
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("demo: {}", format!($($arg)*)) };
}

/// What the demo did, as it prints it.
struct Transfer {
    from: Address,
    to: Address,
    payload: [u8; 32],
    signature: primitives::EcdsaSignature,
    signed_in: Duration,
    sent: ethereum::EthSent,
    balances_before: (U256, U256),
    balances_after: (U256, U256),
}

/// The Solana transfer the demo made.
struct SolanaTransfer {
    public_key: String,
    sent: SolSent,
    took: Duration,
}

async fn demo(args: &Args) -> Result<(), String> {
    mpc_node_binary()?;
    chainsig_binary()?;
    let mut config = ClusterConfig::new(NODES, THRESHOLD);
    config.keep_dir = args.keep;
    step!("starting the devnet (nearcore's VM, 100 ms blocks), {NODES} mpc-node processes (threshold {THRESHOLD}; logs in {}), anvil (a local Ethereum node) and LiteSVM (a local Solana runtime)", config.workdir.display());
    step!("deploying the multichain contract; the nodes generate the keys of domain 0 (secp256k1) and domain 1 (Ed25519) and vote them in");
    let started = Instant::now();
    let (cluster, anvil, solana) =
        tokio::join!(Cluster::start(config), Anvil::start(), SolanaRpc::start());
    let (cluster, anvil, solana) = (cluster?, anvil?, solana?);
    let public_key = near_key::to_near_string(&cluster.public_key());
    step!(
        "keys generated, contract Running after {:.1} s: {public_key}, {}",
        started.elapsed().as_secs_f64(),
        cluster.ed25519_public_key().to_near_string()
    );

    let alice_key = cluster
        .root
        .create_account(&id(ALICE), 10 * NEAR, vec![])
        .await
        .map_err(|e| format!("creating {ALICE}: {e}"))?;
    let near = Near::connect(
        cluster.devnet.rpc_url(),
        cluster.contract.clone(),
        id(ALICE),
        alice_key.clone(),
    );
    let transfer = transfer(&near, &anvil).await?;
    let sol = solana_transfer(&near, &solana).await?;
    report(args, &public_key, &transfer, &sol);
    if args.keep {
        keep(&cluster, &anvil, &solana, &alice_key, &transfer)?;
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    }
    cluster.shutdown().await;
    if transfer.sent.status != 1 {
        return Err("the Ethereum transfer reverted".into());
    }
    match &sol.sent.err {
        None => Ok(()),
        Some(err) => Err(format!("the Solana transfer failed: {err}")),
    }
}

/// The four steps: payload, sign request, MPC signing, relay.
async fn transfer(near: &Near, anvil: &Anvil) -> Result<Transfer, String> {
    let quiet = Progress::quiet();
    let key = EcdsaKey::fetch(near, &id(ALICE), PATH, chainsig::ecdsa::DOMAIN)
        .await
        .map_err(|e| e.to_string())?;
    let from = ethereum::address(&key);
    let to = Address::repeat_byte(0x0b);
    step!("{ALICE}'s Ethereum address for path {PATH}: {} (the contract's derived key, checked against a local derivation)", ethereum::checksummed(&from));
    anvil
        .send_from_dev(Some(from), ethereum::parse_amount("1ether")?, Bytes::new())
        .await?;
    let balances_before = (anvil.balance(from).await, anvil.balance(to).await);
    step!("funded it with 1 ETH from anvil's dev account");

    let request = EthSend {
        to,
        value: ethereum::parse_amount("0.1ether")?,
        ..Default::default()
    };
    let tx = ethereum::prepare(&anvil.rpc, from, &request)
        .await
        .map_err(|e| e.to_string())?;
    let payload = ethereum::payload(&tx);
    step!(
        "1. payload: EIP-1559 transfer of 0.1 ETH to {} (chain {}, nonce {}); keccak256 of its signing bytes = {}",
        ethereum::checksummed(&to),
        tx.chain_id,
        tx.nonce,
        hex::encode(payload)
    );
    step!("2. sign request: {ALICE} calls sign({{payload_v2: {{Ecdsa: …}}, path: \"{PATH}\", domain_id: 0}}) with 1 yoctoNEAR and 300 Tgas");
    let asked = Instant::now();
    let signature = key
        .sign(near, payload, &quiet)
        .await
        .map_err(|e| e.to_string())?;
    let signed_in = asked.elapsed();
    step!(
        "3. MPC signing: answered in {:.2} s, verified for the derived key",
        signed_in.as_secs_f64()
    );
    let signed = ethereum::assemble(tx, &signature).map_err(|e| e.to_string())?;
    let sent = ethereum::relay(&anvil.rpc, signed, from, Duration::from_secs(30), &quiet)
        .await
        .map_err(|e| e.to_string())?;
    step!(
        "4. relay: eth_sendRawTransaction {}; receipt status {}, gas used {}",
        sent.hash,
        sent.status,
        sent.gas_used
    );
    let balances_after = (anvil.balance(from).await, anvil.balance(to).await);
    Ok(Transfer {
        from,
        to,
        payload,
        signature,
        signed_in,
        sent,
        balances_before,
        balances_after,
    })
}

/// The four steps on Solana: alice's derived address (domain 1) is funded on
/// LiteSVM and sends 0.1 SOL; the network signs the message bytes with Ed25519.
async fn solana_transfer(near: &Near, solana: &SolanaRpc) -> Result<SolanaTransfer, String> {
    let signer = NetworkSigner::fetch(near, SOLANA_PATH)
        .await
        .map_err(|e| e.to_string())?;
    let from = solana::address(signer.key());
    step!("{ALICE}'s Solana address for path {SOLANA_PATH}: {from} (domain 1, Ed25519; the contract's derived key, checked against a local derivation)");
    solana.fund(&from, solana::LAMPORTS_PER_SOL).await?;
    step!("funded it with 1 SOL (an airdrop on LiteSVM)");
    let request = SolSend {
        to: Pubkey::new_from_array([0x0b; 32]),
        lamports: solana::LAMPORTS_PER_SOL / 10,
    };
    step!("1-4. payload: a System transfer of 0.1 SOL to {}, whose message bytes are the Eddsa payload; sign({{payload_v2: {{Eddsa: …}}, path: \"{SOLANA_PATH}\", domain_id: 1}}); the nodes sign with FROST; sendTransaction to LiteSVM", request.to);
    let started = Instant::now();
    let sent = solana::send_with(
        &signer,
        &solana.rpc,
        &request,
        Duration::from_secs(30),
        &Progress::quiet(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    // The client checked the signature with ed25519-dalek; check it with ring too.
    let message = hex::decode(&sent.message).map_err(|e| e.to_string())?;
    let signature: solana::Signature = sent.signature.parse().map_err(|e| format!("{e}"))?;
    verify_ed25519(signer.key(), &message, &<[u8; 64]>::from(signature))?;
    step!(
        "Solana transaction {} {} in {:.2} s; signature verified with ed25519-dalek and ring",
        sent.signature,
        sent.status,
        took.as_secs_f64()
    );
    Ok(SolanaTransfer {
        public_key: signer.key().to_near_string(),
        sent,
        took,
    })
}

fn report(args: &Args, public_key: &str, t: &Transfer, sol: &SolanaTransfer) {
    let eth = |wei: U256| ethereum::describe_wei(wei);
    if args.json {
        let out = serde_json::json!({
            "public_key": public_key,
            "predecessor": ALICE,
            "path": PATH,
            "ethereum_address": ethereum::checksummed(&t.from),
            "to": ethereum::checksummed(&t.to),
            "payload": hex::encode(t.payload),
            "signature": primitives::SignatureResponse::Secp256k1(t.signature.clone()),
            "signed_ms": t.signed_in.as_millis() as u64,
            "transaction": t.sent,
            "balances_before": { "from": t.balances_before.0.to_string(), "to": t.balances_before.1.to_string() },
            "balances_after": { "from": t.balances_after.0.to_string(), "to": t.balances_after.1.to_string() },
            "solana": {
                "path": SOLANA_PATH,
                "derived_public_key": sol.public_key,
                "transfer": sol.sent,
                "took_ms": sol.took.as_millis() as u64,
            },
        });
        println!("{out}");
        return;
    }
    println!();
    println!("root public key     {public_key}");
    println!("signer              {ALICE}, path {PATH}");
    println!("Ethereum address    {}", ethereum::checksummed(&t.from));
    println!("payload             {}", hex::encode(t.payload));
    println!(
        "signature           {}",
        serde_json::to_string(&primitives::SignatureResponse::Secp256k1(
            t.signature.clone()
        ))
        .expect("json")
    );
    println!("transaction         {}", t.sent.hash);
    println!(
        "receipt             status {}, gas used {}, fee {} wei",
        t.sent.status, t.sent.gas_used, t.sent.fee_wei
    );
    println!(
        "balance of {}  {} -> {}",
        ethereum::checksummed(&t.from),
        eth(t.balances_before.0),
        eth(t.balances_after.0)
    );
    println!(
        "balance of {}  {} -> {}",
        ethereum::checksummed(&t.to),
        eth(t.balances_before.1),
        eth(t.balances_after.1)
    );
    println!("signed in           {:.2} s", t.signed_in.as_secs_f64());
    let s = &sol.sent;
    let sol_text = solana::describe_lamports;
    println!();
    println!(
        "Ed25519 (domain 1)  path {SOLANA_PATH}, key {}",
        sol.public_key
    );
    println!("Solana address      {}", s.from);
    println!(
        "payload             {} bytes (the transfer's message)",
        s.message.len() / 2
    );
    println!(
        "transaction         {} ({}, fee {} lamports)",
        s.signature, s.status, s.fee
    );
    println!(
        "balance of {}  {} -> {}",
        s.from,
        sol_text(s.from_balance_before),
        sol_text(s.from_balance_after)
    );
    println!(
        "balance of {}  {} -> {}",
        s.to,
        sol_text(s.to_balance_before),
        sol_text(s.to_balance_after)
    );
    println!("signed and sent in  {:.2} s", sol.took.as_secs_f64());
}

/// `--keep`: how to use the running network, with commands that work as printed.
fn keep(
    cluster: &Cluster,
    anvil: &Anvil,
    solana: &SolanaRpc,
    alice_key: &SecretKey,
    t: &Transfer,
) -> Result<(), String> {
    let home = cluster.config.workdir.join("alice-home");
    let credentials = home.join(".near-credentials/localnet");
    std::fs::create_dir_all(&credentials).map_err(|e| e.to_string())?;
    let file = credentials.join(format!("{ALICE}.json"));
    let entry = serde_json::json!({
        "account_id": ALICE,
        "public_key": alice_key.public_key().to_string(),
        "private_key": alice_key.to_string(),
    });
    std::fs::write(&file, entry.to_string()).map_err(|e| e.to_string())?;
    let chainsig = chainsig_binary()?;
    let (rpc, contract) = (cluster.devnet.rpc_url(), &cluster.contract);
    let common = format!(
        "HOME={} {} --near-network localnet --near-rpc {rpc} --contract {contract} --account {ALICE}",
        home.display(),
        chainsig.display()
    );
    eprintln!();
    eprintln!(
        "The network and anvil keep running (Ctrl-C stops them). Node homes and logs: {}",
        cluster.config.workdir.display()
    );
    for (i, node) in cluster.nodes.iter().enumerate() {
        eprintln!(
            "  node {i}: {}  http://{}/state  /metrics  /health",
            node.account, node.http_addr
        );
    }
    eprintln!(
        "  NEAR RPC {rpc}, contract {contract}; anvil {}; Solana (LiteSVM) {}",
        anvil.url, solana.url
    );
    eprintln!("  {ALICE}'s key, as near-cli keeps it: {}", file.display());
    eprintln!("Try:");
    eprintln!("  {common} address --chain ethereum --path {PATH}");
    eprintln!(
        "  {common} eth send --path {PATH} --eth-rpc {} --to {} --value 0.01ether",
        anvil.url,
        ethereum::checksummed(&t.to)
    );
    eprintln!(
        "  {common} sign --domain 0 --path any-path --payload {}",
        "11".repeat(32)
    );
    eprintln!("  {common} address --chain solana --path {SOLANA_PATH}");
    eprintln!(
        "  {common} sol send --path {SOLANA_PATH} --rpc {} --to {} --lamports 1000000",
        solana.url,
        Pubkey::new_from_array([0x0b; 32])
    );
    eprintln!(
        "  {common} sign --domain 1 --path {SOLANA_PATH} --payload {}",
        "22".repeat(40)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("error: {why}");
            }
            eprintln!("usage: demo [--json] [--keep]");
            return if why.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(demo(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("demo: failed: {why}");
            ExitCode::FAILURE
        }
    }
}
