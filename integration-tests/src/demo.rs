//! `make demo`: a whole Chain Signatures network on this machine, end to end.
//!
//! Starts the devnet (100 ms blocks), deploys the multichain contract, starts three
//! `mpc-node` processes (threshold 2) that generate the key, then signs a payload as
//! `alice.test.near` for path `ethereum-1` and prints the signature, the derived key,
//! the Ethereum address and a verification verdict.
//!
//! Flags: `--json` (one JSON object on stdout), `--keep` (leave the network running
//! until Ctrl-C and print how to use it). The network itself is
//! [`integration_tests::Cluster`], which the end-to-end tests use too.

use integration_tests::{mpc_node_binary, request, Cluster, ClusterConfig};
use primitives::{address, near_key};
use sha3::{Digest, Keccak256};
use std::process::ExitCode;
use std::time::Instant;

const NODES: usize = 3;
const THRESHOLD: usize = 2;

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

async fn demo(args: &Args) -> Result<(), String> {
    mpc_node_binary()?;
    let mut config = ClusterConfig::new(NODES, THRESHOLD);
    config.keep_dir = args.keep;
    step!("starting the devnet (nearcore's VM, 100 ms blocks), creating {NODES} node accounts and homes (mpc-node init)");
    step!("deploying the multichain contract (threshold {THRESHOLD} of {NODES}), starting {NODES} mpc-node processes (logs in {})", config.workdir.display());
    step!("waiting for distributed key generation and the nodes' votes");
    let started = Instant::now();
    let cluster = Cluster::start(config).await?;
    let public_key = near_key::to_near_string(&cluster.public_key());
    step!(
        "key generated, contract Running after {:.1} s: {public_key}",
        started.elapsed().as_secs_f64()
    );

    let predecessor = "alice.test.near";
    let path = "ethereum-1";
    let alice = cluster.user(predecessor, 1).await?.remove(0);
    // The 32-byte digest a foreign chain would sign (Keccak-256, as Ethereum hashes).
    let digest: [u8; 32] =
        Keccak256::digest(b"Chain Signatures demo: 0.1 ETH to 0x060f1...").into();
    let request = request(digest, path);
    step!("{predecessor} calls sign({{payload_v2: {{Ecdsa: …}}, path: \"{path}\", domain_id: 0}}) with 1 yoctoNEAR and 300 Tgas");
    let asked = Instant::now();
    let signature = cluster.sign(&alice, &request, 300).await?;
    let latency = asked.elapsed();
    let verdict = cluster.verify(&alice, &request, &signature);
    let derived =
        primitives::derivation::derive_public_key_for(&cluster.public_key(), predecessor, path)
            .map_err(|e| e.to_string())?;
    let verified = verdict.is_ok();
    let eth = address::to_checksum_string(&address::ethereum_address(&derived));
    let derived_text = near_key::to_near_string(&derived);
    let payload = request.payload.clone();
    if args.json {
        let out = serde_json::json!({
            "public_key": public_key,
            "predecessor": predecessor,
            "path": path,
            "payload": hex::encode(payload.as_bytes()),
            "signature": signature,
            "derived_public_key": derived_text,
            "ethereum_address": eth,
            "verified": verified,
            "latency_ms": latency.as_millis() as u64,
        });
        println!("{out}");
    } else {
        println!();
        println!("root public key     {public_key}");
        println!("signer              {predecessor}, path {path}");
        println!("payload             {}", hex::encode(payload.as_bytes()));
        println!(
            "signature           {}",
            serde_json::to_string(&signature).expect("json")
        );
        println!("derived public key  {derived_text}");
        println!("Ethereum address    {eth}");
        match &verdict {
            Ok(_) => {
                println!("verified            yes: the signature is valid for the derived key")
            }
            Err(why) => println!("verified            NO: {why}"),
        }
        println!("answered in         {:.2} s", latency.as_secs_f64());
    }
    if args.keep {
        let rpc = cluster.devnet.rpc_url();
        let contract = &cluster.contract;
        eprintln!();
        eprintln!(
            "The network keeps running (Ctrl-C stops it). Node homes and logs: {}",
            cluster.config.workdir.display()
        );
        for (i, node) in cluster.nodes.iter().enumerate() {
            eprintln!(
                "  node {i}: {}  http://{}/state  /metrics  /health",
                node.account, node.http_addr
            );
        }
        eprintln!("With near-cli-rs (RPC {rpc}, contract {contract}, root account test.near):");
        eprintln!("  near contract call-function as-read-only {contract} state json-args '{{}}' network-config custom ...");
        eprintln!("  near contract call-function as-transaction {contract} sign json-args '{{\"request\":{{\"payload_v2\":{{\"Ecdsa\":\"<64 hex digits>\"}},\"path\":\"ethereum-1\",\"domain_id\":0}}}}' prepaid-gas '300 Tgas' attached-deposit '1 yoctoNEAR' ...");
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    }
    cluster.shutdown().await;
    verdict.map(|_| ())
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
