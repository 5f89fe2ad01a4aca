//! A running devnet: the chain behind a lock, a block producer task and the
//! JSON-RPC server task, with graceful shutdown.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let devnet = devnet::Devnet::start(devnet::DevnetConfig::for_tests()).await?;
//! println!("RPC at {}, root {}", devnet.rpc_url(), devnet.root_account());
//! devnet.shutdown().await?;
//! # Ok(()) }
//! ```

use crate::chain::{Chain, Genesis};
use crate::rpc;
use bytes_body::full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use near_crypto::{KeyType, PublicKey, SecretKey};
use near_parameters::{RuntimeConfig, RuntimeConfigStore};
use near_primitives::errors::InvalidTxError;
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body accepted (a transaction deploying a 4 MiB contract fits).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How to run a devnet.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Where JSON-RPC listens; port 0 picks a free one.
    pub rpc_addr: SocketAddr,
    pub block_time: Duration,
    pub genesis: Genesis,
    /// The root account's full-access secret key.
    pub root_secret_key: SecretKey,
    /// Where the chain is saved on shutdown and restored from on start.
    pub state_file: Option<PathBuf>,
}

impl DevnetConfig {
    /// A fresh chain with root account `test.near` holding 10^9 NEAR and a new key.
    pub fn new(rpc_addr: SocketAddr, block_time: Duration) -> DevnetConfig {
        let root_secret_key = SecretKey::from_random(KeyType::ED25519);
        DevnetConfig {
            rpc_addr,
            block_time,
            genesis: Genesis {
                chain_id: "localnet".to_string(),
                root_account: "test.near".parse().expect("valid account id"),
                root_public_key: root_secret_key.public_key(),
                root_balance: 1_000_000_000 * 10u128.pow(24),
                accounts: Vec::new(),
                gas_price: 100_000_000,
                yield_timeout_blocks: 200,
                genesis_time_ns: now_ns(),
            },
            root_secret_key,
            state_file: None,
        }
    }

    /// 127.0.0.1 on a free port with 50 ms blocks: for tests.
    pub fn for_tests() -> DevnetConfig {
        DevnetConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Duration::from_millis(50),
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// The latest protocol config of nearcore (what mainnet runs or will run).
pub fn latest_runtime_config() -> Arc<RuntimeConfig> {
    RuntimeConfigStore::new(None)
        .get_config(near_primitives::version::PROTOCOL_VERSION)
        .clone()
}

/// State shared by the RPC handlers and the block producer.
pub struct Shared {
    chain: Mutex<Chain>,
    heads: watch::Sender<u64>,
    /// Serialises block production (the producer task and `sandbox_fast_forward`).
    producing: tokio::sync::Mutex<()>,
    shutdown: watch::Receiver<bool>,
    pub started: Instant,
    pub rpc_addr: SocketAddr,
    pub validator_account: AccountId,
    pub validator_key: PublicKey,
}

impl Shared {
    /// Runs `f` with the chain locked.
    pub fn with_chain<T, E>(&self, f: impl FnOnce(&mut Chain) -> Result<T, E>) -> Result<T, E> {
        let mut chain = self
            .chain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut chain)
    }

    pub fn submit(
        &self,
        tx: near_primitives::transaction::SignedTransaction,
    ) -> Result<CryptoHash, InvalidTxError> {
        self.with_chain(|chain| chain.submit(tx))
    }

    /// A receiver that changes with every new block, and closes on shutdown.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.heads.subscribe()
    }

    /// Whether the devnet is shutting down (waiting requests give up).
    pub fn shutting_down(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Produces one block (on a blocking thread: contracts run in it).
    pub async fn produce_block(self: &Arc<Self>) -> io::Result<u64> {
        let _turn = self.producing.lock().await;
        let shared = self.clone();
        let height = tokio::task::spawn_blocking(move || {
            shared.with_chain(|chain| Ok::<_, io::Error>(chain.produce_block(now_ns()).height))
        })
        .await
        .map_err(|e| io::Error::other(format!("block production panicked: {e}")))??;
        self.heads.send_replace(height);
        Ok(height)
    }

    /// Produces `delta` blocks at once (sandbox_fast_forward).
    pub async fn fast_forward(self: &Arc<Self>, delta: u64) -> io::Result<()> {
        for _ in 0..delta {
            self.produce_block().await?;
        }
        Ok(())
    }
}

/// A devnet running in this process. Dropping it without [`Devnet::shutdown`] stops
/// the tasks too, but without saving the state.
pub struct Devnet {
    shared: Arc<Shared>,
    rpc_url: String,
    root_account: AccountId,
    root_secret_key: SecretKey,
    state_file: Option<PathBuf>,
    block_time: Duration,
    stop: watch::Sender<bool>,
    producer: Option<JoinHandle<io::Result<()>>>,
    server: Option<JoinHandle<io::Result<()>>>,
    /// The chain, serialised, while [`Devnet::pause`]d.
    paused: Option<Vec<u8>>,
}

impl Devnet {
    /// Starts the block producer and the RPC server; returns once the server listens.
    pub async fn start(config: DevnetConfig) -> io::Result<Devnet> {
        let runtime_config = latest_runtime_config();
        let chain = match &config.state_file {
            Some(path) if path.exists() => {
                let bytes = std::fs::read(path)?;
                restore(&bytes, runtime_config).map_err(|e| {
                    io::Error::other(format!(
                        "cannot read the saved chain {}: {e}. Delete it (or run `devnet init` in a new --home) to start a fresh chain",
                        path.display()
                    ))
                })?
            }
            _ => Chain::new(&config.genesis, runtime_config),
        };
        let validator_key = config.root_secret_key.public_key();
        let running = Running::launch(
            chain,
            config.rpc_addr,
            config.block_time,
            config.genesis.root_account.clone(),
            validator_key,
        )
        .await?;
        Ok(Devnet {
            rpc_url: format!("http://{}", running.shared.rpc_addr),
            shared: running.shared,
            root_account: config.genesis.root_account,
            root_secret_key: config.root_secret_key,
            state_file: config.state_file,
            block_time: config.block_time,
            stop: running.stop,
            producer: Some(running.producer),
            server: Some(running.server),
            paused: None,
        })
    }

    /// Stops block production and the RPC server, as [`Devnet::shutdown`] does, and
    /// keeps the chain serialised as a state file holds it: until [`Devnet::resume`],
    /// clients find nothing listening. For tests of a devnet restart.
    pub async fn pause(&mut self) -> io::Result<()> {
        if self.paused.is_some() {
            return Ok(());
        }
        let stopped = self.stop_tasks().await;
        let bytes = self
            .shared
            .with_chain(|chain| borsh::to_vec(&*chain))
            .map_err(io::Error::other)?;
        self.paused = Some(bytes);
        stopped
    }

    /// Starts a paused devnet again on the same address, from the chain [`Devnet::pause`]
    /// serialised (so nothing survives that a restart from the state file would lose).
    pub async fn resume(&mut self) -> io::Result<()> {
        let Some(bytes) = self.paused.take() else {
            return Ok(());
        };
        let chain = restore(&bytes, latest_runtime_config()).map_err(io::Error::other)?;
        let running = Running::launch(
            chain,
            self.shared.rpc_addr,
            self.block_time,
            self.shared.validator_account.clone(),
            self.shared.validator_key.clone(),
        )
        .await?;
        self.shared = running.shared;
        self.stop = running.stop;
        self.producer = Some(running.producer);
        self.server = Some(running.server);
        Ok(())
    }

    /// Signals shutdown and waits for the producer and the server; reports a task
    /// that failed.
    async fn stop_tasks(&mut self) -> io::Result<()> {
        self.stop.send_replace(true);
        let mut result = Ok(());
        for task in [self.producer.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let outcome = task
                .await
                .map_err(|e| io::Error::other(format!("a devnet task panicked: {e}")))
                .and_then(|r| r);
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }

    /// `http://host:port` of the JSON-RPC server.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    pub fn root_account(&self) -> &AccountId {
        &self.root_account
    }

    pub fn root_secret_key(&self) -> &SecretKey {
        &self.root_secret_key
    }

    /// The current block height.
    pub fn height(&self) -> u64 {
        *self.shared.heads.borrow()
    }

    /// Stops block production and the server (waiting for requests in flight), then
    /// saves the chain if a state file is configured. Reports a task that failed.
    pub async fn shutdown(mut self) -> io::Result<()> {
        let result = self.stop_tasks().await;
        if let Some(path) = &self.state_file {
            let bytes = match self.paused.take() {
                Some(bytes) => bytes,
                None => self
                    .shared
                    .with_chain(|chain| borsh::to_vec(&*chain))
                    .map_err(io::Error::other)?,
            };
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)?;
        }
        result
    }
}

/// A chain read back from its serialised form, with the runtime attached.
fn restore(bytes: &[u8], runtime_config: Arc<RuntimeConfig>) -> Result<Chain, String> {
    let mut chain: Chain = borsh::from_slice(bytes).map_err(|e| e.to_string())?;
    chain.attach_runtime(runtime_config);
    Ok(chain)
}

/// The tasks of a serving devnet, as [`Running::launch`] starts them.
struct Running {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    producer: JoinHandle<io::Result<()>>,
    server: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Listens on `rpc_addr` and starts producing blocks of `chain`.
    async fn launch(
        chain: Chain,
        rpc_addr: SocketAddr,
        block_time: Duration,
        validator_account: AccountId,
        validator_key: PublicKey,
    ) -> io::Result<Running> {
        let listener = TcpListener::bind(rpc_addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {rpc_addr}: {e}")))?;
        let rpc_addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let head = chain.head().height;
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
            heads: watch::channel(head).0,
            producing: tokio::sync::Mutex::new(()),
            shutdown: shutdown.clone(),
            started: Instant::now(),
            rpc_addr,
            validator_account,
            validator_key,
        });
        let producer = tokio::spawn(produce_blocks(shared.clone(), block_time, shutdown.clone()));
        let server = tokio::spawn(serve(listener, shared.clone(), shutdown));
        Ok(Running {
            shared,
            stop,
            producer,
            server,
        })
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for task in [self.producer.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

async fn produce_blocks(
    shared: Arc<Shared>,
    block_time: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut ticks = tokio::time::interval(block_time);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => { shared.produce_block().await?; }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    // A connection that failed before we saw it (e.g. reset) is not our
                    // problem; keep serving.
                    Err(_) => continue,
                };
                // Small JSON-RPC answers must not wait for delayed ACKs (Nagle).
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut stop = shutdown.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        result = connection.as_mut() => result,
                        _ = stop.changed() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    }
                });
            }
            // Connection errors (clients hanging up) end only that connection.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<http_body_util::Full<bytes_body::Bytes>>, hyper::Error> {
    use http_body_util::BodyExt;
    let is_status = request.method() == Method::GET && request.uri().path() == "/status";
    if is_status {
        let body = rpc::handle_body(
            &shared,
            br#"{"jsonrpc":"2.0","id":"status","method":"status","params":[]}"#,
        )
        .await;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return Ok(json_response(
            StatusCode::OK,
            serde_json::to_vec(&value["result"]).unwrap_or_default(),
        ));
    }
    if request.method() != Method::POST {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            b"{\"error\":\"POST a JSON-RPC request to /\"}".to_vec(),
        ));
    }
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES);
    let body = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{{\"error\":\"request body over {MAX_BODY_BYTES} bytes\"}}").into_bytes(),
            ))
        }
    };
    Ok(json_response(
        StatusCode::OK,
        rpc::handle_body(&shared, &body).await,
    ))
}

fn json_response(
    status: StatusCode,
    body: Vec<u8>,
) -> Response<http_body_util::Full<bytes_body::Bytes>> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

mod bytes_body {
    pub use hyper::body::Bytes;

    pub fn full(body: Vec<u8>) -> http_body_util::Full<Bytes> {
        http_body_util::Full::new(Bytes::from(body))
    }
}
