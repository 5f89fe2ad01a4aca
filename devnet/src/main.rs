//! `devnet`: a local NEAR chain on nearcore's VM, with near-sandbox's command line.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A local NEAR-compatible chain: nearcore's VM executes the contracts, NEAR
/// JSON-RPC serves clients (near-jsonrpc-client, near-workspaces, near-cli-rs).
///
/// Quick start:
///   devnet --home /tmp/devnet init
///   devnet --home /tmp/devnet run --rpc-addr 127.0.0.1:3030
/// The root account `test.near` (10^9 NEAR) signs with the key in
/// /tmp/devnet/validator_key.json. The chain is saved to /tmp/devnet/data on
/// Ctrl-C and continues from there on the next `run`.
#[derive(Parser)]
#[command(name = "devnet", version, verbatim_doc_comment)]
struct Cli {
    /// The node's directory (genesis.json, config.json, validator_key.json, data/).
    #[arg(long, global = true, default_value = ".near")]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new chain in --home: genesis, config and the root account's key.
    Init {
        #[arg(long, default_value = "localnet")]
        chain_id: String,
        /// Blocks until an unanswered NEP-519 yield times out (NEAR: 200).
        #[arg(long, default_value_t = 200)]
        yield_timeout_blocks: u64,
        /// Accepted for near-sandbox compatibility; ignored.
        #[arg(long, hide = true)]
        account_id: Option<String>,
        #[arg(long, hide = true)]
        test_seed: Option<String>,
        #[arg(long, hide = true)]
        fast: bool,
    },
    /// Run the chain in --home until Ctrl-C or SIGTERM.
    Run {
        /// Where JSON-RPC listens (default: config.json's rpc_addr, 127.0.0.1:3030).
        #[arg(long)]
        rpc_addr: Option<SocketAddr>,
        /// Accepted for near-sandbox compatibility: the devnet has no peers.
        #[arg(long)]
        network_addr: Option<String>,
        /// Time between blocks in milliseconds (default: config.json's, 1000).
        #[arg(long)]
        block_time_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            chain_id,
            yield_timeout_blocks,
            ..
        } => devnet::home::init(&cli.home, &chain_id, yield_timeout_blocks).map(|()| {
            println!(
                "devnet: initialised {} (root account test.near, key in validator_key.json)",
                cli.home.display()
            )
        }),
        Command::Run {
            rpc_addr,
            block_time_ms,
            ..
        } => run(cli.home, rpc_addr, block_time_ms),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devnet: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    home: PathBuf,
    rpc_addr: Option<SocketAddr>,
    block_time_ms: Option<u64>,
) -> std::io::Result<()> {
    let config = devnet::home::load(&home, rpc_addr, block_time_ms)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let devnet = devnet::Devnet::start(config).await?;
        println!(
            "devnet: JSON-RPC at {} (root account {})",
            devnet.rpc_url(),
            devnet.root_account()
        );
        wait_for_signal().await?;
        println!(
            "devnet: stopping, saving the chain to {}",
            devnet::home::state_file(&home).display()
        );
        devnet.shutdown().await
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}
