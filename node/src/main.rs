//! `mpc-node`: the Chain Signatures MPC node.
//!
//! ```text
//! mpc-node init  --home DIR --account ID --account-key ed25519:... --contract ID \
//!                --rpc-url URL --p2p-addr HOST:PORT [--http-addr HOST:PORT]
//! mpc-node start --home DIR
//! ```
//!
//! `init` writes `config.toml` (every setting, documented by `start --help`), the
//! p2p key, the storage key and the respond keys; `start` runs the daemon.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mpc_node::chain::Chain;
use mpc_node::daemon::{run, NodeConfig};
use mpc_node::http::HttpServer;
use mpc_node::p2p::noise::StaticKey;
use mpc_node::storage::{StorageKey, Store};
use mpc_node::tuning::Tuning;
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
        /// Where to serve /health, /state and /metrics ("" to serve nothing).
        #[arg(long, default_value = "127.0.0.1:3000")]
        http_addr: String,
        /// How many extra access keys to create for `respond` calls (0: respond
        /// with the account key).
        #[arg(long, default_value_t = 8)]
        respond_keys: usize,
    },
    /// Runs the node until SIGTERM or Ctrl-C (then finishes in-flight responds and
    /// stops). Settings come from config.toml; see below.
    Start {
        /// Overrides `rpc_url` from config.toml.
        #[arg(long)]
        rpc_url: Option<String>,
        /// Overrides `http_addr` from config.toml.
        #[arg(long)]
        http_addr: Option<String>,
    },
}

/// What `mpc-node start --help` shows after the flags: config.toml's settings
/// (the tunable ones with their defaults, from [`Tuning`]) and the files beside it.
fn start_help() -> String {
    format!(
        "\
config.toml (written by `init`; edit and restart to change):
  account, account_key              the node's NEAR account and its full-access key
  contract, rpc_url                 the multichain contract and a NEAR JSON-RPC endpoint
  p2p_addr                          host:port peers dial (registered on the contract as `url`)
  http_addr                         host:port for /health, /state, /metrics (\"\" = off)
{}
Every setting is checked at start; a bad value stops the node with the rule it breaks.

Files beside it: p2p_key (X25519 key pair, hex), storage_key (AES-256 key for the
database, hex; or set MPC_NODE_STORAGE_KEY), respond_keys (ed25519 keys, one per
line: added to the account at start as `respond`-only function-call keys),
node.redb (key shares, triples, presignatures).

Logs go to stderr; RUST_LOG=debug shows more.",
        Tuning::help()
    )
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
    #[serde(default)]
    http_addr: String,
    #[serde(default = "Tuning::default", flatten)]
    tuning: Tuning,
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

fn init(home: &Path, config: Config, respond_keys: usize) -> Result<(), String> {
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
    let keys: String = (0..respond_keys)
        .map(|_| {
            format!(
                "{}\n",
                SecretKey::from_random(near_crypto::KeyType::ED25519)
            )
        })
        .collect();
    write("respond_keys", keys)?;
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

fn read_respond_keys(home: &Path) -> Result<Vec<SecretKey>, String> {
    let path = home.join("respond_keys");
    if !path.exists() {
        return Ok(Vec::new());
    }
    std::fs::read_to_string(&path)
        .map_err(|e| format!("reading respond_keys: {e}"))?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim()
                .parse::<SecretKey>()
                .map_err(|e| format!("respond_keys: {e}"))
        })
        .collect()
}

/// The chain client, with the respond keys registered on the account (or without
/// them, and a warning, if that is impossible: e.g. a function-call account key).
async fn connect_chain(
    rpc_url: &str,
    config: &Config,
    account_key: SecretKey,
    respond_keys: Vec<SecretKey>,
) -> Chain {
    let plain = || {
        Chain::new(
            rpc_url,
            config.contract.clone(),
            config.account.clone(),
            account_key.clone(),
        )
    };
    if respond_keys.is_empty() {
        return plain();
    }
    let count = respond_keys.len();
    let chain = plain().with_respond_keys(respond_keys);
    for attempt in 1..=10 {
        match chain.add_respond_keys().await {
            Ok(added) => {
                tracing::info!(keys = count, added, "respond keys ready");
                return chain;
            }
            Err(e) if attempt < 10 => {
                tracing::warn!(error = %e, attempt, "registering respond keys failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot register respond keys; responding with the account key");
            }
        }
    }
    plain()
}

async fn start(
    home: &Path,
    rpc_override: Option<String>,
    http_override: Option<String>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(home.join("config.toml")).map_err(|e| {
        format!(
            "reading {}/config.toml (run `mpc-node init` first): {e}",
            home.display()
        )
    })?;
    let config: Config = toml::from_str(&text).map_err(|e| format!("config.toml: {e}"))?;
    config.tuning.validate().map_err(|e| e.to_string())?;
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
    let rpc_url = rpc_override.unwrap_or(config.rpc_url.clone());
    let http_addr = http_override.unwrap_or(config.http_addr.clone());
    let listen = tokio::net::lookup_host(&config.p2p_addr)
        .await
        .map_err(|e| format!("p2p_addr {}: {e}", config.p2p_addr))?
        .next()
        .ok_or_else(|| format!("p2p_addr {} resolves to nothing", config.p2p_addr))?;
    let chain = connect_chain(&rpc_url, &config, account_key, read_respond_keys(home)?).await;
    let node = NodeConfig::new(
        config.account.clone(),
        Arc::new(chain),
        Arc::new(store),
        read_p2p_key(home)?,
        listen,
        config.contract.as_str(),
        &config.tuning,
    );
    let http = if http_addr.is_empty() {
        None
    } else {
        let addr = tokio::net::lookup_host(&http_addr)
            .await
            .map_err(|e| format!("http_addr {http_addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("http_addr {http_addr} resolves to nothing"))?;
        let stale_after = (node.poll_interval * 20).max(Duration::from_secs(10));
        let server = HttpServer::start(addr, node.metrics.clone(), stale_after)
            .await
            .map_err(|e| format!("http_addr {http_addr}: {e}"))?;
        tracing::info!(addr = %server.local_addr(), "serving /health, /state, /metrics");
        Some(server)
    };
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
    if let Some(http) = http {
        http.shutdown().await;
    }
    tracing::info!("stopped");
    result
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = Cli::command().mut_subcommand("start", |start| start.after_help(start_help()));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Init {
            account,
            account_key,
            contract,
            rpc_url,
            p2p_addr,
            http_addr,
            respond_keys,
        } => init(
            &cli.home,
            Config {
                account,
                account_key,
                contract,
                rpc_url,
                p2p_addr,
                http_addr,
                tuning: Tuning::default(),
            },
            respond_keys,
        ),
        Command::Start { rpc_url, http_addr } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(start(&cli.home, rpc_url, http_addr)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("mpc-node: {why}");
            ExitCode::FAILURE
        }
    }
}
