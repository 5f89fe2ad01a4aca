//! `make demo`: a whole Chain Signatures network on this machine, end to end.
//!
//! Starts the devnet (100 ms blocks), deploys the multichain contract, starts three
//! `mpc-node` processes (threshold 2) that generate the key, then signs a payload as
//! `alice.test.near` for path `ethereum-1` and prints the signature, the derived key,
//! the Ethereum address and a verification verdict.
//!
//! Flags: `--json` (one JSON object on stdout), `--keep` (leave the network running
//! until Ctrl-C and print how to use it), `--mpc-node PATH` (the node binary; default:
//! next to this one).

use devnet::{Devnet, DevnetConfig};
use mpc_node::chain::{Chain, ContractState};
use near_crypto::SecretKey;
use near_primitives::transaction::{Action, DeployContractAction};
use near_primitives::types::AccountId;
use primitives::{address, derivation, near_key, Payload, SignRequest, SignatureResponse};
use sha3::{Digest, Keccak256};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const NEAR: u128 = 10u128.pow(24);
const NODES: usize = 3;
const THRESHOLD: usize = 2;

struct Args {
    json: bool,
    keep: bool,
    mpc_node: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        json: false,
        keep: false,
        mpc_node: std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mpc-node"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => args.json = true,
            "--keep" => args.keep = true,
            "--mpc-node" => args.mpc_node = it.next().ok_or("--mpc-node needs a path")?.into(),
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

fn id(s: &str) -> AccountId {
    s.parse().expect("a valid account id")
}

async fn create_account(
    parent: &Chain,
    name: &str,
    extra: Vec<Action>,
) -> Result<SecretKey, String> {
    parent
        .create_account(&id(name), 100 * NEAR, extra)
        .await
        .map_err(|e| format!("creating {name}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    /// Stops the node processes (SIGTERM first, for a clean shutdown).
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.0 {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn demo(args: &Args) -> Result<(), String> {
    if !args.mpc_node.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build -p mpc-node` (make demo does)",
            args.mpc_node.display()
        ));
    }
    let workdir =
        std::env::temp_dir().join(format!("chain-signatures-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;

    step!("starting the devnet (nearcore's VM, 100 ms blocks)");
    let config = DevnetConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Duration::from_millis(100),
    );
    let devnet = Devnet::start(config)
        .await
        .map_err(|e| format!("devnet: {e}"))?;
    let rpc = devnet.rpc_url().to_string();
    let contract = id("signer.test.near");
    let root = Chain::new(
        &rpc,
        contract.clone(),
        devnet.root_account().clone(),
        devnet.root_secret_key().clone(),
    );

    step!("creating {NODES} node accounts and their homes (mpc-node init)");
    let mut candidates = serde_json::Map::new();
    let mut homes = Vec::new();
    for i in 0..NODES {
        let name = format!("node{i}.test.near");
        let key = create_account(&root, &name, vec![]).await?;
        let home = workdir.join(format!("node{i}"));
        let output = Command::new(&args.mpc_node)
            .args([
                "--home",
                &home.to_string_lossy(),
                "init",
                "--account",
                &name,
                "--contract",
                contract.as_str(),
            ])
            .args([
                "--rpc-url",
                &rpc,
                "--p2p-addr",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .env("MPC_NODE_ACCOUNT_KEY", key.to_string())
            .output()
            .map_err(|e| format!("running mpc-node init: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mpc-node init: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let candidate: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("mpc-node init output: {e}"))?;
        candidates.insert(name, candidate);
        homes.push(home);
    }

    step!("deploying the multichain contract to {contract} (threshold {THRESHOLD} of {NODES})");
    let wasm = std::fs::read("target/near/multichain.wasm")
        .map_err(|e| format!("target/near/multichain.wasm: {e} (run `make contract`)"))?;
    let contract_key = create_account(
        &root,
        contract.as_str(),
        vec![Action::DeployContract(DeployContractAction { code: wasm })],
    )
    .await?;
    let as_contract = Chain::new(&rpc, contract.clone(), contract.clone(), contract_key);
    let init_args = serde_json::json!({ "threshold": THRESHOLD, "candidates": candidates });
    as_contract
        .call("init", init_args, 100, 0)
        .await
        .map_err(|e| format!("init: {e}"))?;

    step!(
        "starting {NODES} mpc-node processes (logs in {})",
        workdir.display()
    );
    let mut nodes = Nodes(Vec::new());
    for (i, home) in homes.iter().enumerate() {
        let log = std::fs::File::create(workdir.join(format!("node{i}.log")))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&args.mpc_node)
            .args(["--home", &home.to_string_lossy(), "start"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting mpc-node: {e}"))?;
        nodes.0.push(child);
    }

    step!("waiting for distributed key generation and the nodes' votes");
    let started = Instant::now();
    let public_key = loop {
        if let Ok(ContractState::Running { public_key, .. }) = root.state().await {
            break public_key;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "no key after 120 s; see the node logs in {}",
                workdir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    step!(
        "key generated in {:.1} s: {public_key}",
        started.elapsed().as_secs_f64()
    );

    let predecessor = "alice.test.near";
    let path = "ethereum-1";
    let alice_key = create_account(&root, predecessor, vec![]).await?;
    let alice = Chain::new(&rpc, contract.clone(), id(predecessor), alice_key);
    // The 32-byte digest a foreign chain would sign (Keccak-256, as Ethereum hashes).
    let digest: [u8; 32] =
        Keccak256::digest(b"Chain Signatures demo: 0.1 ETH to 0x060f1...").into();
    let payload = Payload::new(digest).map_err(|e| e.to_string())?;
    let request = SignRequest {
        payload,
        path: path.into(),
        key_version: 0,
    };
    step!("{predecessor} calls sign(payload, \"{path}\") with 1 yoctoNEAR and 300 Tgas");
    let asked = Instant::now();
    let answer = alice
        .call("sign", serde_json::json!({ "request": request }), 300, 1)
        .await
        .map_err(|e| format!("sign: {e}"))?;
    let latency = asked.elapsed();
    let signature: SignatureResponse =
        serde_json::from_slice(&answer).map_err(|e| format!("the answer: {e}"))?;

    let root_point = near_key::parse_secp256k1(&public_key).map_err(|e| e.to_string())?;
    let derived = derivation::derive_public_key_for(&root_point, predecessor, path)
        .map_err(|e| e.to_string())?;
    let verified = signature.verify(&payload, &derived).is_ok();
    let eth = address::to_checksum_string(&address::ethereum_address(&derived));
    let derived_text = near_key::to_near_string(&derived);
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
        println!(
            "verified            {}",
            if verified {
                "yes: the signature is valid for the derived key"
            } else {
                "NO"
            }
        );
        println!("answered in         {:.2} s", latency.as_secs_f64());
    }
    if args.keep {
        eprintln!();
        eprintln!("The network keeps running (Ctrl-C stops it). With near-cli-rs:");
        eprintln!("  RPC: {rpc}   contract: {contract}   root account: test.near");
        eprintln!("  near contract call-function as-read-only {contract} state json-args '{{}}' network-config custom ...");
        eprintln!("  near contract call-function as-transaction {contract} sign json-args '{{\"payload\":[1,2,...32 bytes],\"path\":\"ethereum-1\"}}' prepaid-gas '300 Tgas' attached-deposit '1 yoctoNEAR' ...");
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    }
    drop(nodes);
    devnet.shutdown().await.map_err(|e| e.to_string())?;
    if verified {
        Ok(())
    } else {
        Err("the signature did not verify".into())
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("error: {why}");
            }
            eprintln!("usage: demo [--json] [--keep] [--mpc-node PATH]");
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
