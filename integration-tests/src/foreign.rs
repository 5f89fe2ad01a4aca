//! Foreign chains for the end-to-end tests of the `chainsig` client: anvil (a real
//! Ethereum node, installed from the npm registry by `scripts/install-anvil.sh`),
//! the `chainsig` binary run as a user would, with near-cli credentials, against a
//! [`Cluster`], and a stand-in Esplora server on loopback (Bitcoin's consensus checks
//! are Bitcoin Core's, in the tests themselves).

use crate::Cluster;
use alloy_primitives::{Address, Bytes, B256, U256};
use chainsig::ethereum::{EthRpc, Receipt};
use near_crypto::SecretKey;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The anvil binary of the pinned npm package, installed on first use
/// (`scripts/install-anvil.sh`, idempotent).
pub fn anvil_binary() -> Result<PathBuf, String> {
    static INSTALLED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| crate::install_tool("install-anvil.sh"))
        .clone()
}

/// anvil's first dev account: funded with 10,000 ETH and unlocked, so
/// `eth_sendTransaction` from it needs no key here.
pub const ANVIL_DEV_ACCOUNT: Address = Address::new([
    0xf3, 0x9f, 0xd6, 0xe5, 0x1a, 0xad, 0x88, 0xf6, 0xf4, 0xce, 0x6a, 0xb8, 0x82, 0x72, 0x79, 0xcf,
    0xff, 0xb9, 0x22, 0x66,
]);

/// An anvil process on a free loopback port, killed on drop.
pub struct Anvil {
    child: Child,
    pub url: String,
    pub rpc: EthRpc,
}

impl Anvil {
    /// Starts anvil (chain id 31337, a block per transaction) and waits until it
    /// answers (at most 30 s).
    pub async fn start() -> Result<Anvil, String> {
        let binary = tokio::task::spawn_blocking(anvil_binary)
            .await
            .map_err(|e| e.to_string())??;
        let port = crate::free_port();
        let child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting anvil: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let anvil = Anvil {
            child,
            rpc: EthRpc::new(&url),
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while anvil.rpc.chain_id().await.is_err() {
            if Instant::now() > deadline {
                return Err("anvil did not answer within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(anvil)
    }

    /// A transaction from the dev account (anvil signs it); its receipt.
    pub async fn send_from_dev(
        &self,
        to: Option<Address>,
        value: U256,
        data: Bytes,
    ) -> Result<Receipt, String> {
        let mut tx = json!({ "from": ANVIL_DEV_ACCOUNT, "value": value, "input": data });
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash: B256 = self
            .rpc
            .call("eth_sendTransaction", json!([tx]))
            .await
            .map_err(|e| e.to_string())?;
        let receipt = self
            .rpc
            .wait_for_receipt(hash, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        receipt
            .succeeded()
            .then_some(receipt.clone())
            .ok_or_else(|| format!("dev transaction failed: {receipt:?}"))
    }

    /// Deploys `init_code` from the dev account; the contract's address.
    pub async fn deploy(&self, init_code: Bytes) -> Result<Address, String> {
        let receipt = self.send_from_dev(None, U256::ZERO, init_code).await?;
        receipt
            .contract_address
            .ok_or_else(|| "the deployment has no contract address".into())
    }

    pub async fn balance(&self, address: Address) -> U256 {
        self.rpc.balance(address).await.expect("eth_getBalance")
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `chainsig` binary next to the running test (`target/debug`), built first
/// when run under cargo so it is never stale.
pub fn chainsig_binary() -> Result<PathBuf, String> {
    crate::workspace_binary("chainsig")
}

/// What one `chainsig` run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `chainsig` as a user of a cluster runs it: its own home with near-cli's
/// credentials file for the account, the cluster's RPC and contract as flags, and
/// no other environment.
pub struct Chainsig {
    binary: PathBuf,
    home: PathBuf,
    near_args: Vec<String>,
}

impl Chainsig {
    /// Writes `<home>/.near-credentials/localnet/<account>.json` as near-cli does.
    pub fn for_account(
        cluster: &Cluster,
        account: &str,
        key: &SecretKey,
    ) -> Result<Chainsig, String> {
        let home = cluster
            .config
            .workdir
            .join(format!("chainsig-home-{account}"));
        let credentials = home.join(".near-credentials/localnet");
        std::fs::create_dir_all(&credentials).map_err(|e| e.to_string())?;
        let file = json!({
            "account_id": account,
            "public_key": key.public_key().to_string(),
            "private_key": key.to_string(),
        });
        std::fs::write(
            credentials.join(format!("{account}.json")),
            file.to_string(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Chainsig {
            binary: chainsig_binary()?,
            home,
            near_args: [
                "--near-network",
                "localnet",
                "--near-rpc",
                cluster.devnet.rpc_url(),
                "--contract",
                cluster.contract.as_str(),
                "--account",
                account,
            ]
            .map(String::from)
            .to_vec(),
        })
    }

    /// Runs `chainsig <NEAR flags> <args>` (off the async runtime, which also runs
    /// the devnet the command talks to), killing it after [`CLI_LIMIT`].
    pub async fn run(&self, args: &[&str]) -> CliOutput {
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .env("HOME", &self.home)
            .args(&self.near_args)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || run_bounded(command, CLI_LIMIT))
            .await
            .expect("the chainsig runner")
    }

    /// Runs with `--json` and returns the JSON it printed; fails unless it succeeded.
    pub async fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let output = self.run(&with_json).await;
        if !output.success {
            return Err(format!("chainsig {args:?} failed:\n{}", output.stderr));
        }
        serde_json::from_str(&output.stdout)
            .map_err(|e| format!("chainsig printed no JSON ({e}):\n{}", output.stdout))
    }
}

/// How long one `chainsig` run may take: a signature takes about a second here;
/// a network that never answers would hold `sign` for minutes (300 Tgas of waits).
pub const CLI_LIMIT: Duration = Duration::from_secs(180);

fn run_bounded(mut command: Command, limit: Duration) -> CliOutput {
    let mut child = command.spawn().expect("chainsig starts");
    // Read both pipes on threads, so a full pipe never stalls the child.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let success = loop {
        match child.try_wait().expect("waiting for chainsig") {
            Some(status) => break status.success(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut stderr = stderr.join().unwrap_or_default();
    if Instant::now() > deadline {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    CliOutput {
        success,
        stdout: stdout.join().unwrap_or_default(),
        stderr,
    }
}

/// What the stand-in Esplora server serves and what it was sent.
#[derive(Default)]
pub struct EsploraState {
    /// `GET /address/<address>/utxo`, for any address.
    pub utxos: Value,
    /// `GET /fee-estimates`.
    pub fee_estimates: Value,
    /// When set, `POST /tx` answers 400 with this text (as Esplora relays Bitcoin
    /// Core's refusal).
    pub reject_with: Option<String>,
    /// The bodies of `POST /tx`: raw transactions in hex.
    pub broadcasts: Vec<String>,
}

/// A minimal Esplora API on a loopback port, enough for `chainsig btc send`: the
/// client's HTTP side is real, the answers are the test's.
pub struct FakeEsplora {
    pub url: String,
    pub state: Arc<Mutex<EsploraState>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEsplora {
    pub async fn start(state: EsploraState) -> Result<FakeEsplora, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}/api",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(FakeEsplora { url, state, task })
    }
}

impl Drop for FakeEsplora {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection (`Connection: close`), bounded in size and time.
async fn serve(mut stream: TcpStream, state: Arc<Mutex<EsploraState>>) {
    let Ok(Ok(Some((head, body)))) =
        tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream)).await
    else {
        return;
    };
    let (status, reply) = route(&head, body, &state);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    const LIMIT: usize = 1 << 20;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
                return Ok(Some((head, body)));
            }
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 || buffer.len() > LIMIT {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn route(head: &str, body: String, state: &Mutex<EsploraState>) -> (&'static str, String) {
    let mut state = state.lock().expect("esplora state");
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    match (method, path) {
        ("GET", p) if p.starts_with("/api/address/") && p.ends_with("/utxo") => {
            ("200 OK", state.utxos.to_string())
        }
        ("GET", "/api/fee-estimates") => ("200 OK", state.fee_estimates.to_string()),
        ("POST", "/api/tx") => {
            if let Some(reason) = state.reject_with.clone() {
                return ("400 Bad Request", reason);
            }
            let txid = txid_of(&body);
            state.broadcasts.push(body);
            match txid {
                Some(txid) => ("200 OK", txid),
                None => ("400 Bad Request", "TX decode failed".into()),
            }
        }
        _ => ("404 Not Found", "not found".into()),
    }
}

fn txid_of(raw_hex: &str) -> Option<String> {
    let bytes = hex::decode(raw_hex.trim()).ok()?;
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&bytes).ok()?;
    Some(tx.compute_txid().to_string())
}
