//! `chainsig`: addresses on Ethereum, Bitcoin and Solana for a NEAR account, and
//! transactions there signed by the Chain Signatures MPC network.

use alloy_primitives::{Address, Bytes, U256};
use chainsig::address::{address, ForeignChain};
use chainsig::bitcoin::{self as btc, BtcSend, Inputs, Payment, Utxo};
use chainsig::config::{first, ConfigFile, NearOptions, NearSettings, MAINNET};
use chainsig::ethereum::{self as eth, EthRpc, EthSend};
use chainsig::solana::{self as sol, SolRpc, SolSend};
use chainsig::{sign, Error, Near, Progress, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use primitives::DomainId;
use serde::Serialize;
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const ABOUT: &str = "Use one NEAR account's keys on Ethereum, Bitcoin and Solana.";

const LONG_ABOUT: &str = "\
Use one NEAR account's keys on Ethereum, Bitcoin and Solana.

A NEAR account controls one key per path on the Chain Signatures signer contract
(v1.signer on mainnet, v1.signer-prod.testnet on testnet). chainsig shows the
addresses of those keys, builds transactions for them, has the MPC network sign
them through the contract's `sign` method (1 yoctoNEAR and 300 Tgas per signature,
paid by your NEAR account), checks each signature against the key, and relays the
signed transaction to the target chain.

Results go to stdout (text, or one JSON object with --json); progress goes to stderr.

The NEAR key that signs is --near-key (or CHAINSIG_NEAR_KEY): a secret key
`ed25519:…` or the path of a near-cli credentials file. Without it chainsig reads
~/.near-credentials/<near network>/<account>.json, where near-cli keeps keys.

Settings come from flags (and their environment variables), then the config file
(--config, default ~/.config/chainsig/config.toml), whose keys are: near_network,
near_rpc, contract, account, near_key, credentials_dir, eth_rpc, esplora,
bitcoin_network, sol_rpc.";

const EXAMPLES: &str = "\
Examples:
  chainsig address --chain ethereum --account you.testnet --path ethereum-1
  chainsig --account you.testnet eth send --path ethereum-1 --eth-rpc https://sepolia.example \\
      --to 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf --value 0.01ether
  chainsig --account you.testnet btc send --path bitcoin-1 --network testnet \\
      --esplora https://esplora.example/testnet/api --to tb1q…:15000 \\
      --broadcast https://esplora.example/testnet/api
  chainsig --account you.testnet sol send --path solana-1 --rpc devnet \
      --to 9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM --lamports 1000000
  chainsig --account you.testnet sign --domain 0 --path my-chain-1 --payload <64 hex digits>";

#[derive(Parser)]
#[command(name = "chainsig", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
// A flag given twice keeps the last value, so scripts can override what they set.
#[command(args_override_self = true)]
struct Cli {
    #[command(flatten)]
    near: NearArgs,

    /// Print one JSON object on stdout instead of text (errors too: {"error": "…"}).
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
#[command(next_help_heading = "NEAR and settings")]
struct NearArgs {
    /// NEAR network. testnet and mainnet come with a public RPC and the deployed
    /// signer contract; any other name (e.g. localnet) needs --near-rpc and
    /// --contract. Also the folder of near-cli credentials. [default: testnet]
    #[arg(
        long,
        global = true,
        env = "CHAINSIG_NEAR_NETWORK",
        value_name = "NAME"
    )]
    near_network: Option<String>,

    /// NEAR JSON-RPC address.
    #[arg(long, global = true, env = "CHAINSIG_NEAR_RPC", value_name = "URL")]
    near_rpc: Option<String>,

    /// The signer contract's account.
    #[arg(long, global = true, env = "CHAINSIG_CONTRACT", value_name = "ACCOUNT")]
    contract: Option<String>,

    /// The NEAR account that signs (and, for `address`, whose keys are shown).
    #[arg(long, global = true, env = "CHAINSIG_ACCOUNT", value_name = "ACCOUNT")]
    account: Option<String>,

    /// The NEAR secret key (`ed25519:…`) or a near-cli credentials file.
    #[arg(
        long,
        global = true,
        env = "CHAINSIG_NEAR_KEY",
        value_name = "KEY|FILE",
        hide_env_values = true
    )]
    near_key: Option<String>,

    /// Where near-cli keeps credentials. [default: ~/.near-credentials]
    #[arg(long, global = true, value_name = "DIR")]
    credentials_dir: Option<PathBuf>,

    /// The config file. [default: ~/.config/chainsig/config.toml, if present]
    #[arg(long, global = true, env = "CHAINSIG_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// The address an account controls on Ethereum, Bitcoin or Solana under a path.
    /// Reads the contract's derived key (domain 0, or 1 for Solana) and checks it
    /// against a local derivation from the contract's root key. Needs no NEAR key.
    Address(AddressArgs),
    /// Ethereum: send a transaction or sign a message with the derived key.
    #[command(subcommand)]
    Eth(EthCommand),
    /// Bitcoin: spend P2WPKH outputs of the derived address.
    #[command(subcommand)]
    Btc(BtcCommand),
    /// Solana: transfer SOL from the derived address (Ed25519, domain 1).
    #[command(subcommand)]
    Sol(SolCommand),
    /// Sign any payload in any domain, for chains without a command here. Prints
    /// the contract's answer after checking it against the derived key.
    Sign(SignArgs),
}

/// Which of the account's keys.
#[derive(Args)]
struct KeyPath {
    /// The derivation path: a NEAR account has one key per path (e.g. ethereum-1);
    /// the same account and path always give the same key and address.
    #[arg(long)]
    path: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChainName {
    Ethereum,
    Bitcoin,
    Solana,
}

#[derive(Args)]
struct AddressArgs {
    #[arg(long, value_enum)]
    chain: ChainName,

    #[command(flatten)]
    key: KeyPath,

    /// Bitcoin network: mainnet, testnet, testnet4, signet or regtest.
    /// [default: mainnet with NEAR mainnet, else testnet]
    #[arg(long, value_parser = btc::parse_network)]
    network: Option<::bitcoin::Network>,
}

#[derive(Subcommand)]
enum EthCommand {
    /// Send an EIP-1559 transaction from the derived address: nonce, fees and chain
    /// id come from the Ethereum node; the transaction's signing hash is signed by
    /// the network; the signed transaction is broadcast and its receipt awaited.
    Send(EthSendArgs),
    /// Sign a personal message (EIP-191, as personal_sign) with the derived key.
    SignMessage(EthMessageArgs),
}

#[derive(Args)]
struct EthRpcArgs {
    /// Ethereum JSON-RPC address (or `eth_rpc` in the config file).
    #[arg(long, env = "CHAINSIG_ETH_RPC", value_name = "URL")]
    eth_rpc: Option<String>,
}

#[derive(Args)]
struct EthSendArgs {
    #[command(flatten)]
    key: KeyPath,

    /// Recipient address (a mixed-case address must carry a valid EIP-55 checksum).
    #[arg(long, value_name = "ADDRESS", value_parser = eth::parse_address)]
    to: Address,

    /// Amount: wei (1000) or with a unit (0.1ether, 20gwei).
    #[arg(long, value_name = "AMOUNT", default_value = "0", value_parser = eth::parse_amount)]
    value: U256,

    /// Call data, hex.
    #[arg(long, value_name = "HEX", default_value = "0x")]
    data: Bytes,

    /// Gas limit. [default: the node's estimate]
    #[arg(long, value_name = "GAS")]
    gas_limit: Option<u64>,

    /// Max fee per gas: wei or with a unit. [default: 2 × base fee + priority fee]
    #[arg(long, value_name = "AMOUNT", value_parser = eth::parse_fee)]
    max_fee_per_gas: Option<u128>,

    /// Max priority fee per gas. [default: eth_maxPriorityFeePerGas]
    #[arg(long, value_name = "AMOUNT", value_parser = eth::parse_fee)]
    max_priority_fee_per_gas: Option<u128>,

    /// Seconds to wait for the receipt once broadcast.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    timeout: u64,

    #[command(flatten)]
    rpc: EthRpcArgs,
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "what")]
struct EthMessage {
    /// The message as text.
    #[arg(long, group = "what")]
    message: Option<String>,
    /// The message as hex bytes.
    #[arg(long, value_name = "HEX", group = "what")]
    message_hex: Option<Bytes>,
}

#[derive(Args)]
struct EthMessageArgs {
    #[command(flatten)]
    key: KeyPath,
    #[command(flatten)]
    message: EthMessage,
}

#[derive(Subcommand)]
enum BtcCommand {
    /// Spend P2WPKH outputs of the derived address: one signature request per
    /// input over its BIP-143 sighash; prints the signed transaction and, with
    /// --broadcast, sends it.
    Send(BtcSendArgs),
}

#[derive(Args)]
struct BtcSendArgs {
    #[command(flatten)]
    key: KeyPath,

    /// Bitcoin network: mainnet, testnet, testnet4, signet or regtest.
    /// [default: mainnet with NEAR mainnet, else testnet]
    #[arg(long, value_parser = btc::parse_network)]
    network: Option<::bitcoin::Network>,

    /// A payment, ADDRESS:SATOSHIS (repeat for several).
    #[arg(long, required = true, value_name = "ADDRESS:SATOSHIS")]
    to: Vec<String>,

    /// An output of the derived address to spend, TXID:VOUT:SATOSHIS (repeat; all
    /// are spent).
    #[arg(long, value_name = "TXID:VOUT:SATOSHIS", conflicts_with = "esplora")]
    utxo: Vec<Utxo>,

    /// An Esplora API (…/api) to list the address's outputs from (largest first,
    /// as many as needed) and, without --fee-rate, to estimate the fee.
    #[arg(long, value_name = "URL")]
    esplora: Option<String>,

    /// Fee rate in satoshis per vbyte.
    #[arg(long, value_name = "SAT/VB")]
    fee_rate: Option<u64>,

    /// Where change goes. [default: back to the derived address]
    #[arg(long, value_name = "ADDRESS")]
    change: Option<String>,

    /// An Esplora API to broadcast the signed transaction through (POST /tx).
    #[arg(long, value_name = "URL")]
    broadcast: Option<String>,
}

#[derive(Subcommand)]
enum SolCommand {
    /// Transfer lamports from the derived address, which also pays the fee: the
    /// blockhash and balances come from the Solana RPC; the message (one System
    /// transfer) is signed by the network in the Ed25519 domain; the signed
    /// transaction is sent and its confirmation awaited.
    Send(SolSendArgs),
}

#[derive(Args)]
struct SolSendArgs {
    #[command(flatten)]
    key: KeyPath,

    /// Recipient address (base58).
    #[arg(long, value_name = "ADDRESS", value_parser = sol::parse_address)]
    to: sol::Pubkey,

    /// Amount in lamports (10^9 lamports = 1 SOL).
    #[arg(long, value_name = "N")]
    lamports: u64,

    /// Solana JSON-RPC: a URL or mainnet-beta, devnet, testnet, localhost (or
    /// `sol_rpc` in the config file). [default: mainnet-beta with NEAR mainnet,
    /// devnet with testnet]
    #[arg(
        long,
        visible_alias = "sol-rpc",
        env = "CHAINSIG_SOL_RPC",
        value_name = "URL|CLUSTER"
    )]
    rpc: Option<String>,

    /// Seconds to wait for confirmation once sent.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
}

#[derive(Args)]
struct SignArgs {
    /// The domain: 0 is secp256k1 (sign a 32-byte hash), 1 is Ed25519 by
    /// convention (sign the message, 32 to 1232 bytes).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    domain: u64,

    /// What to sign, hex.
    #[arg(long, value_name = "HEX")]
    payload: Bytes,

    #[command(flatten)]
    key: KeyPath,
}

/// Everything a command needs besides its own arguments.
struct Context {
    near: NearSettings,
    file: ConfigFile,
    progress: Progress,
}

impl Context {
    fn signer(&self) -> Result<Near> {
        Near::from_settings(&self.near)
    }

    /// Bitcoin's network: as given, else the config file's, else the one that goes
    /// with the NEAR network.
    fn bitcoin_network(&self, flag: Option<::bitcoin::Network>) -> Result<::bitcoin::Network> {
        if let Some(network) = flag {
            return Ok(network);
        }
        if let Some(name) = &self.file.bitcoin_network {
            return btc::parse_network(name).map_err(|e| Error::Config {
                path: self.file.path.clone().unwrap_or_default(),
                reason: format!("bitcoin_network: {e}"),
            });
        }
        Ok(if self.near.network == MAINNET.name {
            ::bitcoin::Network::Bitcoin
        } else {
            ::bitcoin::Network::Testnet
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            // A reverted or failed transaction's report is already on stdout.
            if json && !matches!(error, Error::Reverted { .. } | Error::FailedOnChain { .. }) {
                println!("{}", serde_json::json!({ "error": error.to_string() }));
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let file = ConfigFile::load(cli.near.config.as_deref())?;
    let flags = NearOptions {
        network: cli.near.near_network,
        rpc: cli.near.near_rpc,
        contract: cli.near.contract,
        account: cli.near.account,
        near_key: cli.near.near_key,
        credentials_dir: cli.near.credentials_dir,
    };
    let context = Context {
        near: NearSettings::resolve(&flags, &file)?,
        file,
        progress: Progress::stderr(),
    };
    let json = cli.json;
    match cli.command {
        Command::Address(args) => emit(json, &run_address(&context, args).await?),
        Command::Eth(EthCommand::Send(args)) => {
            let sent = run_eth_send(&context, args).await?;
            emit(json, &sent);
            if sent.status != 1 {
                // Reported in full above; the exit status tells scripts it failed.
                return Err(Error::Reverted {
                    hash: sent.hash.to_string(),
                    block: sent.block_number,
                });
            }
        }
        Command::Eth(EthCommand::SignMessage(args)) => {
            emit(json, &run_eth_message(&context, args).await?)
        }
        Command::Btc(BtcCommand::Send(args)) => emit(json, &run_btc_send(&context, args).await?),
        Command::Sol(SolCommand::Send(args)) => {
            let sent = run_sol_send(&context, args).await?;
            emit(json, &sent);
            if let Some(err) = &sent.err {
                // Reported in full above; the exit status tells scripts it failed.
                return Err(Error::FailedOnChain {
                    chain: "Solana",
                    id: sent.signature.clone(),
                    reason: err.to_string(),
                });
            }
        }
        Command::Sign(args) => emit(json, &run_sign(&context, args).await?),
    }
    Ok(())
}

fn emit<T: Serialize + Display>(json: bool, value: &T) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports serialise")
        );
    } else {
        println!("{value}");
    }
}

async fn run_address(
    context: &Context,
    args: AddressArgs,
) -> Result<chainsig::address::AddressReport> {
    let near = Near::read_only(&context.near.rpc, context.near.contract.clone());
    let owner = context.near.signer()?;
    let chain = match args.chain {
        ChainName::Ethereum => ForeignChain::Ethereum,
        ChainName::Bitcoin => ForeignChain::Bitcoin(context.bitcoin_network(args.network)?),
        ChainName::Solana => ForeignChain::Solana,
    };
    address(&near, owner, &args.key.path, chain).await
}

async fn run_eth_send(context: &Context, args: EthSendArgs) -> Result<eth::EthSent> {
    let rpc = eth_rpc(context, &args.rpc)?;
    let near = context.signer()?;
    let request = EthSend {
        to: args.to,
        value: args.value,
        data: args.data,
        gas_limit: args.gas_limit,
        max_fee_per_gas: args.max_fee_per_gas,
        max_priority_fee_per_gas: args.max_priority_fee_per_gas,
    };
    let limit = Duration::from_secs(args.timeout);
    eth::send(
        &near,
        &rpc,
        &args.key.path,
        &request,
        limit,
        &context.progress,
    )
    .await
}

fn eth_rpc(context: &Context, args: &EthRpcArgs) -> Result<EthRpc> {
    let url = first(&args.eth_rpc, &context.file.eth_rpc).ok_or_else(|| {
        Error::invalid(
            "Ethereum RPC",
            "none given: pass --eth-rpc URL, set CHAINSIG_ETH_RPC, or set eth_rpc in the config file",
        )
    })?;
    Ok(EthRpc::new(&url))
}

async fn run_eth_message(context: &Context, args: EthMessageArgs) -> Result<eth::SignedMessage> {
    let message = match (args.message.message, args.message.message_hex) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(bytes)) => bytes.to_vec(),
        (None, None) => unreachable!("clap requires one of --message and --message-hex"),
    };
    let near = context.signer()?;
    eth::sign_message(&near, &args.key.path, &message, &context.progress).await
}

async fn run_btc_send(context: &Context, args: BtcSendArgs) -> Result<btc::BtcSent> {
    let network = context.bitcoin_network(args.network)?;
    let payments = args
        .to
        .iter()
        .map(|text| Payment::parse(text, network))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| Error::invalid("--to", e))?;
    let inputs = match (
        args.utxo.is_empty(),
        first(&args.esplora, &context.file.esplora),
    ) {
        (false, _) => Inputs::Listed(args.utxo),
        (true, Some(url)) => Inputs::Esplora(url),
        (true, None) => {
            return Err(Error::invalid(
                "inputs",
                "give --utxo TXID:VOUT:SATOSHIS (repeatable) or --esplora URL",
            ))
        }
    };
    let fee_rate = args
        .fee_rate
        .map(|rate| {
            ::bitcoin::FeeRate::from_sat_per_vb(rate)
                .ok_or_else(|| Error::invalid("--fee-rate", format!("{rate} sat/vB is absurd")))
        })
        .transpose()?;
    let change = args
        .change
        .map(|text| parse_btc_address(&text, network))
        .transpose()?;
    let request = BtcSend {
        network,
        inputs,
        payments,
        fee_rate,
        change,
        broadcast: args.broadcast,
    };
    let near = context.signer()?;
    btc::send(&near, &args.key.path, &request, &context.progress).await
}

async fn run_sol_send(context: &Context, args: SolSendArgs) -> Result<sol::SolSent> {
    let rpc = sol_rpc(context, args.rpc)?;
    let near = context.signer()?;
    let request = SolSend {
        to: args.to,
        lamports: args.lamports,
    };
    let limit = Duration::from_secs(args.timeout);
    sol::send(
        &near,
        &rpc,
        &args.key.path,
        &request,
        limit,
        &context.progress,
    )
    .await
}

/// The flag's, else the config file's, else the cluster of the NEAR network.
fn sol_rpc(context: &Context, flag: Option<String>) -> Result<SolRpc> {
    let text = first(&flag, &context.file.sol_rpc)
        .or_else(|| sol::default_rpc(&context.near.network).map(String::from))
        .ok_or_else(|| Error::NoDefault {
            what: "Solana RPC",
            network: context.near.network.clone(),
            flag: "rpc",
            key: "sol_rpc",
        })?;
    let url = sol::rpc_url(&text).map_err(|e| Error::invalid("Solana RPC", e))?;
    Ok(SolRpc::new(&url))
}

fn parse_btc_address(text: &str, network: ::bitcoin::Network) -> Result<::bitcoin::Address> {
    text.parse::<::bitcoin::Address<_>>()
        .and_then(|a| a.require_network(network))
        .map_err(|e| Error::invalid("--change", format!("`{text}`: {e}")))
}

async fn run_sign(context: &Context, args: SignArgs) -> Result<sign::SignedPayload> {
    let near = context.signer()?;
    sign::sign_payload(
        &near,
        DomainId(args.domain),
        args.payload.to_vec(),
        &args.key.path,
        &context.progress,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "chainsig",
            "address",
            "--chain",
            "bitcoin",
            "--path",
            "bitcoin-1",
            "--account",
            "alice.testnet",
            "--network",
            "regtest",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.near.account.as_deref(), Some("alice.testnet"));
    }

    #[test]
    fn sol_send_takes_a_base58_recipient_and_whole_lamports() {
        let to = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
        let parse = |extra: &[&str]| {
            let mut args = vec!["chainsig", "sol", "send", "--path", "solana-1"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = parse(&["--to", to, "--lamports", "5000", "--sol-rpc", "devnet"]).unwrap();
        let Command::Sol(SolCommand::Send(args)) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(args.to.to_string(), to);
        assert_eq!(args.lamports, 5000);
        assert_eq!(args.rpc.as_deref(), Some("devnet"));
        let bad = parse(&[
            "--to",
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf",
            "--lamports",
            "1",
        ]);
        assert!(bad
            .err()
            .is_some_and(|e| e.to_string().contains("not a Solana address")));
        assert!(parse(&["--to", to, "--lamports", "0.5"]).is_err());
    }

    #[test]
    fn the_solana_rpc_follows_the_near_network_unless_given() {
        let context = |network: &str| Context {
            near: NearSettings::resolve(
                &NearOptions {
                    network: Some(network.into()),
                    rpc: Some("http://127.0.0.1:3030".into()),
                    contract: Some("signer.test.near".into()),
                    ..Default::default()
                },
                &ConfigFile::default(),
            )
            .unwrap(),
            file: ConfigFile::default(),
            progress: Progress::quiet(),
        };
        let url = |context: &Context, flag: Option<&str>| {
            sol_rpc(context, flag.map(String::from)).map(|rpc| rpc.url().to_string())
        };
        assert_eq!(url(&context("testnet"), None).unwrap(), sol::DEVNET);
        assert_eq!(url(&context("mainnet"), None).unwrap(), sol::MAINNET_BETA);
        let text = url(&context("localnet"), None).unwrap_err().to_string();
        assert!(
            text.contains("Solana RPC") && text.contains("--rpc") && text.contains("`sol_rpc`"),
            "{text}"
        );
        let mut local = context("localnet");
        local.file.sol_rpc = Some("http://127.0.0.1:9".into());
        assert_eq!(url(&local, None).unwrap(), "http://127.0.0.1:9");
        assert_eq!(url(&local, Some("localhost")).unwrap(), sol::LOCALHOST);
        assert!(url(&local, Some("devnot")).is_err());
    }

    #[test]
    fn utxos_and_esplora_exclude_each_other() {
        let txid = "ab".repeat(32);
        let both = Cli::try_parse_from([
            "chainsig",
            "btc",
            "send",
            "--path",
            "p",
            "--to",
            "x:1",
            "--utxo",
            &format!("{txid}:0:1000"),
            "--esplora",
            "http://127.0.0.1:1",
        ]);
        assert!(both.is_err());
    }
}
