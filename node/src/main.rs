//! `mpc-node`: the Chain Signatures MPC node.
//!
//! ```text
//! mpc-node init  --home DIR --account ID --account-key ed25519:... --contract ID \
//!                --rpc-url URL --p2p-addr HOST:PORT
//! mpc-node start --home DIR
//! ```

use clap::{Parser, Subcommand};
use mpc_node::chain::Chain;
use mpc_node::daemon::{run, NodeConfig};
use mpc_node::p2p::noise::StaticKey;
use mpc_node::storage::{StorageKey, Store};
use near_crypto::SecretKey;
use near_primitives::types::AccountId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "mpc-node",
    version,
    about = "The Chain Signatures MPC node: watches the multichain contract, runs the threshold \
             protocols with the other participants, and answers signature requests.",
    long_about = None
)]
struct Cli {
    /// The node's directory: config.toml, keys and database.
    #[arg(
        long,
        global = true,
        default_value = ".mpc-node",
        env = "MPC_NODE_HOME"
    )]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new node's keys and config; prints the candidate entry to register
    /// on the contract (for `init` or `join`).
    Init {
        /// The node's NEAR account, which votes and responds.
        #[arg(long)]
        account: AccountId,
        /// That account's secret key (`ed25519:...`), for signing its transactions.
        #[arg(long, env = "MPC_NODE_ACCOUNT_KEY")]
        account_key: String,
        /// The multichain contract's account.
        #[arg(long)]
        contract: AccountId,
        /// NEAR JSON-RPC endpoint.
        #[arg(long, default_value = "http://127.0.0.1:3030")]
        rpc_url: String,
        /// Where peers reach this node (host:port); it also listens there.
        #[arg(long)]
        p2p_addr: String,
    },
    /// Runs the node until SIGTERM or Ctrl-C.
    Start {
        /// Overrides `rpc_url` from config.toml.
        #[arg(long)]
        rpc_url: Option<String>,
    },
}

/// config.toml. Secrets live in files beside it (`p2p_key`, `storage_key`); the
/// storage key can instead come from `MPC_NODE_STORAGE_KEY`.
#[derive(Serialize, Deserialize)]
struct Config {
    account: AccountId,
    account_key: String,
    contract: AccountId,
    rpc_url: String,
    p2p_addr: String,
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_triples")]
    triple_target: usize,
    #[serde(default = "default_presignatures")]
    presignature_target: usize,
    #[serde(default = "default_timeout")]
    protocol_timeout_secs: u64,
}

fn default_poll_ms() -> u64 {
    500
}
fn default_triples() -> usize {
    4
}
fn default_presignatures() -> usize {
    2
}
fn default_timeout() -> u64 {
    60
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn init(home: &Path, config: Config) -> Result<(), String> {
    config
        .account_key
        .parse::<SecretKey>()
        .map_err(|e| format!("--account-key: {e}"))?;
    if home.join("config.toml").exists() {
        return Err(format!(
            "{} already has a config.toml; refusing to overwrite a node",
            home.display()
        ));
    }
    std::fs::create_dir_all(home).map_err(|e| format!("creating {}: {e}", home.display()))?;
    let p2p = StaticKey::generate();
    let (private, public) = p2p.to_parts();
    let write = |name: &str, text: String| {
        write_secret(&home.join(name), &text).map_err(|e| format!("writing {name}: {e}"))
    };
    write(
        "p2p_key",
        format!("{}{}\n", hex::encode(private), hex::encode(public)),
    )?;
    write(
        "storage_key",
        format!("{}\n", StorageKey::generate().to_hex()),
    )?;
    write(
        "config.toml",
        toml::to_string(&config).expect("config serialises"),
    )?;
    let sign_pk = config
        .account_key
        .parse::<SecretKey>()
        .expect("checked")
        .public_key()
        .to_string();
    let candidate = serde_json::json!({
        "account_id": config.account,
        "url": config.p2p_addr,
        "cipher_pk": public.to_vec(),
        "sign_pk": sign_pk,
    });
    println!("{candidate}");
    Ok(())
}

fn read_p2p_key(home: &Path) -> Result<StaticKey, String> {
    let text = std::fs::read_to_string(home.join("p2p_key"))
        .map_err(|e| format!("reading p2p_key: {e}"))?;
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| "p2p_key must be 128 hex digits".to_string())?;
    Ok(StaticKey::from_parts(
        bytes[..32].try_into().expect("32"),
        bytes[32..].try_into().expect("32"),
    ))
}

async fn start(home: &Path, rpc_override: Option<String>) -> Result<(), String> {
    let text = std::fs::read_to_string(home.join("config.toml")).map_err(|e| {
        format!(
            "reading {}/config.toml (run `mpc-node init` first): {e}",
            home.display()
        )
    })?;
    let config: Config = toml::from_str(&text).map_err(|e| format!("config.toml: {e}"))?;
    let storage_key = match std::env::var("MPC_NODE_STORAGE_KEY") {
        Ok(hex) => StorageKey::from_hex(&hex),
        Err(_) => StorageKey::from_hex(
            &std::fs::read_to_string(home.join("storage_key"))
                .map_err(|e| format!("reading storage_key: {e}"))?,
        ),
    }
    .map_err(|e| e.to_string())?;
    let store = Store::open(&home.join("node.redb"), &storage_key).map_err(|e| e.to_string())?;
    let account_key: SecretKey = config
        .account_key
        .parse()
        .map_err(|e| format!("account_key: {e}"))?;
    let rpc_url = rpc_override.unwrap_or(config.rpc_url);
    let listen = tokio::net::lookup_host(&config.p2p_addr)
        .await
        .map_err(|e| format!("p2p_addr {}: {e}", config.p2p_addr))?
        .next()
        .ok_or_else(|| format!("p2p_addr {} resolves to nothing", config.p2p_addr))?;
    let node = NodeConfig {
        account: config.account.clone(),
        chain: Arc::new(Chain::new(
            &rpc_url,
            config.contract.clone(),
            config.account.clone(),
            account_key,
        )),
        store: Arc::new(store),
        p2p_key: read_p2p_key(home)?,
        listen,
        network_name: config.contract.to_string(),
        poll_interval: Duration::from_millis(config.poll_interval_ms),
        triple_target: config.triple_target,
        presignature_target: config.presignature_target,
        protocol_timeout: Duration::from_secs(config.protocol_timeout_secs),
    };
    tracing::info!(account = %config.account, contract = %config.contract, %rpc_url, p2p = %listen, "starting");
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    let signals = tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        stopper.cancel();
    });
    let result = run(node, cancel.clone())
        .await
        .map_err(|e| format!("p2p listener: {e}"));
    signals.abort();
    result
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            account,
            account_key,
            contract,
            rpc_url,
            p2p_addr,
        } => init(
            &cli.home,
            Config {
                account,
                account_key,
                contract,
                rpc_url,
                p2p_addr,
                poll_interval_ms: default_poll_ms(),
                triple_target: default_triples(),
                presignature_target: default_presignatures(),
                protocol_timeout_secs: default_timeout(),
            },
        ),
        Command::Start { rpc_url } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(start(&cli.home, rpc_url)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("mpc-node: {why}");
            ExitCode::FAILURE
        }
    }
}
