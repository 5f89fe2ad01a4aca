//! A whole Chain Signatures network on this machine, for the demo, the
//! end-to-end tests and the end-to-end benchmark: the devnet (in this process),
//! the multichain contract (the real wasm), and `mpc-node` processes (the real
//! binary, configured by `mpc-node init`, talking over loopback sockets).
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use integration_tests::{Cluster, ClusterConfig};
//! let cluster = Cluster::start(ClusterConfig::new(3, 2)).await?;
//! let alice = cluster.user("alice.test.near", 1).await?.remove(0);
//! let request = integration_tests::request([7; 32], "ethereum-1");
//! let signature = cluster.sign(&alice, &request, 300).await?;
//! cluster.verify(&alice, &request, &signature)?;
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

use devnet::{Devnet, DevnetConfig};
use k256::AffinePoint;
use mpc_node::chain::{Chain, ContractState};
use near_crypto::SecretKey;
use near_primitives::transaction::{Action, DeployContractAction};
use near_primitives::types::AccountId;
use primitives::ed25519::Ed25519PublicKey;
use primitives::{near_key, DomainConfig, DomainId, SignatureScheme};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod artifacts;
pub mod foreign;
pub mod load;
pub mod netproxy;
mod observe;
pub mod rpc_gate;
pub mod solana;
mod users;

pub(crate) use artifacts::{install_tool, workspace_root};
pub use artifacts::{misbehaving_node_binary, mpc_node_binary, multichain_wasm, workspace_binary};
pub use users::{eddsa_request, request, verify_ed25519, ArgsShape, ED25519_DOMAIN};

pub const NEAR: u128 = 10u128.pow(24);

/// The contract's account on every cluster.
pub const CONTRACT: &str = "signer.test.near";

pub fn id(s: &str) -> AccountId {
    s.parse().expect("a valid account id")
}

/// The shape of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub threshold: usize,
    /// The domains `init` creates, in id order (default: 0 secp256k1, 1 Ed25519).
    pub domains: Vec<SignatureScheme>,
    pub block_time: Duration,
    /// Blocks until an unanswered yield times out (NEAR: 200).
    pub yield_timeout_blocks: u64,
    /// Settings written into every node's config.toml (key = TOML value).
    pub node_settings: Vec<(String, String)>,
    /// Nodes that misbehave on purpose: (node index, `MPC_MISBEHAVE` value). They
    /// run [`misbehaving_node_binary`], built with mpc-node's `misbehave` feature.
    pub misbehave: Vec<(usize, String)>,
    /// Put a loopback proxy in front of each node's p2p listener (its registered
    /// address), so a test can partition a node ([`Cluster::partition_node`]).
    pub p2p_proxies: bool,
    /// Give each node a gate of its own ([`Cluster::node_rpc_gates`]) in front of
    /// the devnet's RPC, in place of the shared [`Cluster::rpc_gate`], so a test
    /// can cut one node off the chain.
    pub rpc_gate_per_node: bool,
    /// Where node homes and logs go; removed on shutdown unless `keep_dir`.
    pub workdir: PathBuf,
    pub keep_dir: bool,
}

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

impl ClusterConfig {
    /// `nodes` nodes, threshold `threshold`, 100 ms blocks, nodes tuned for a
    /// fast local network (50 ms polls, 1 s leader grace).
    pub fn new(nodes: usize, threshold: usize) -> Self {
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        ClusterConfig {
            nodes,
            threshold,
            domains: vec![SignatureScheme::Secp256k1, SignatureScheme::Ed25519],
            block_time: Duration::from_millis(100),
            yield_timeout_blocks: 200,
            node_settings: [
                ("poll_interval_ms", "50"),
                ("leader_grace_ms", "1000"),
                ("live_window_ms", "1000"),
                ("protocol_timeout_secs", "30"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            misbehave: Vec::new(),
            p2p_proxies: false,
            rpc_gate_per_node: false,
            workdir: std::env::temp_dir()
                .join(format!("chain-signatures-{}-{n}", std::process::id())),
            keep_dir: false,
        }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.node_settings.retain(|(k, _)| k != key);
        self.node_settings
            .push((key.to_string(), value.to_string()));
        self
    }
}

/// One `mpc-node`: its account, home, addresses and (while running) process.
pub struct NodeProcess {
    pub account: AccountId,
    pub account_key: SecretKey,
    pub home: PathBuf,
    pub http_addr: String,
    /// The entry to register on the contract (`init` candidates, `join`).
    pub candidate: serde_json::Value,
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProcess {
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The node's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How the node ended, if it was started and has exited by itself (a node the
    /// test stopped or killed is not started any more).
    fn died(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

/// A running network: devnet, contract and nodes.
pub struct Cluster {
    pub config: ClusterConfig,
    pub devnet: Devnet,
    /// The root account (`test.near`), which creates every other account.
    pub root: Chain,
    pub contract: AccountId,
    pub nodes: Vec<NodeProcess>,
    /// The nodes reach the devnet's RPC through this gate, which a test can close
    /// to transactions or make unreachable.
    pub rpc_gate: rpc_gate::RpcGate,
    /// With `rpc_gate_per_node`, node i's gate at index i (else empty).
    pub node_rpc_gates: Vec<rpc_gate::RpcGate>,
    /// The p2p proxies, if `p2p_proxies`.
    p2p_proxies: Option<netproxy::P2pProxies>,
    mpc_node: PathBuf,
    /// `mpc-node` with the test-only misbehaviours, if any node uses one.
    misbehaving_node: Option<PathBuf>,
    root_key: Option<AffinePoint>,
    ed25519_root_key: Option<Ed25519PublicKey>,
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999
/// by default). A port from that range, found free with a bind to port 0 and
/// released, can be handed out again by the next such bind (CI once gave a node
/// the same port for HTTP and p2p) or taken as the source port of an outgoing
/// connection before the node binds it, or while the node restarts; the node
/// then stops with "address already in use". Here only our own binds compete.
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A port free to listen on (see [`TEST_PORTS`]), never the same twice in one
/// process; each process starts at its own place in the range, so two test
/// processes side by side seldom even try the same port.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % span));
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(TEST_PORTS.start + offset).expect("TEST_PORTS fit in u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

impl Cluster {
    /// Starts the devnet, creates the node accounts and homes (`mpc-node init`),
    /// deploys and initialises the contract, starts the nodes and waits for key
    /// generation.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, String> {
        let mpc_node = mpc_node_binary()?;
        let misbehaving_node = if config.misbehave.is_empty() {
            None
        } else {
            Some(misbehaving_node_binary()?)
        };
        let wasm = multichain_wasm()?;
        std::fs::create_dir_all(&config.workdir).map_err(|e| e.to_string())?;
        let mut devnet_config = DevnetConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            config.block_time,
        );
        devnet_config.genesis.yield_timeout_blocks = config.yield_timeout_blocks;
        let devnet = Devnet::start(devnet_config)
            .await
            .map_err(|e| format!("devnet: {e}"))?;
        let contract = id(CONTRACT);
        let rpc_gate = rpc_gate::RpcGate::start(devnet.rpc_url())
            .await
            .map_err(|e| format!("the RPC gate: {e}"))?;
        let root = Chain::new(
            devnet.rpc_url(),
            contract.clone(),
            devnet.root_account().clone(),
            devnet.root_secret_key().clone(),
        );
        let mut cluster = Cluster {
            config: config.clone(),
            devnet,
            root,
            contract: contract.clone(),
            nodes: Vec::new(),
            rpc_gate,
            node_rpc_gates: Vec::new(),
            p2p_proxies: config.p2p_proxies.then(Default::default),
            mpc_node,
            misbehaving_node,
            root_key: None,
            ed25519_root_key: None,
        };
        for i in 0..config.nodes {
            cluster.new_node(&format!("node{i}.test.near")).await?;
        }
        let candidates: serde_json::Map<String, serde_json::Value> = cluster
            .nodes
            .iter()
            .map(|n| (n.account.to_string(), n.candidate.clone()))
            .collect();
        let contract_key = cluster
            .root
            .create_account(
                &contract,
                100 * NEAR,
                vec![Action::DeployContract(DeployContractAction { code: wasm })],
            )
            .await
            .map_err(|e| format!("deploying the contract: {e}"))?;
        let as_contract = Chain::new(
            cluster.devnet.rpc_url(),
            contract.clone(),
            contract.clone(),
            contract_key,
        );
        let domains: Vec<DomainConfig> = (0u64..)
            .zip(&config.domains)
            .map(|(id, scheme)| DomainConfig {
                id: DomainId(id),
                scheme: *scheme,
            })
            .collect();
        as_contract
            .call(
                "init",
                serde_json::json!({
                    "threshold": config.threshold,
                    "candidates": candidates,
                    "domains": domains,
                }),
                100,
                0,
            )
            .await
            .map_err(|e| format!("init: {e}"))?;
        for i in 0..cluster.nodes.len() {
            cluster.start_node(i)?;
        }
        cluster.wait_running(Duration::from_secs(120)).await?;
        Ok(cluster)
    }

    /// Creates an account and a home for a new node (not started, not registered).
    /// Returns its index.
    pub async fn new_node(&mut self, account: &str) -> Result<usize, String> {
        let account = id(account);
        let account_key = self
            .root
            .create_account(&account, 100 * NEAR, vec![])
            .await
            .map_err(|e| format!("creating {account}: {e}"))?;
        let index = self.nodes.len();
        let home = self.config.workdir.join(format!("node{index}"));
        let http_addr = format!("127.0.0.1:{}", free_port());
        let p2p_addr = format!("127.0.0.1:{}", free_port());
        let rpc_url = if self.config.rpc_gate_per_node {
            let gate = rpc_gate::RpcGate::start(self.devnet.rpc_url())
                .await
                .map_err(|e| format!("node {index}'s RPC gate: {e}"))?;
            let url = gate.url().to_string();
            self.node_rpc_gates.push(gate);
            url
        } else {
            self.rpc_gate.url().to_string()
        };
        let output = Command::new(&self.mpc_node)
            .args(["--home", &home.to_string_lossy(), "init"])
            .args(["--account", account.as_str(), "--contract", CONTRACT])
            .args(["--rpc-url", &rpc_url])
            .args(["--p2p-addr", &p2p_addr])
            .args(["--http-addr", &http_addr])
            .env("MPC_NODE_ACCOUNT_KEY", account_key.to_string())
            .output()
            .map_err(|e| format!("running mpc-node init: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mpc-node init: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut candidate: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("mpc-node init output: {e}"))?;
        if let Some(proxies) = &mut self.p2p_proxies {
            // Peers dial the proxy; the node listens behind it.
            candidate["url"] = proxies.front(index, &p2p_addr).await?.into();
        }
        self.tune(&home)?;
        let log = self.config.workdir.join(format!("node{index}.log"));
        self.nodes.push(NodeProcess {
            account,
            account_key,
            home,
            http_addr,
            candidate,
            child: None,
            log,
        });
        Ok(index)
    }

    /// Writes the cluster's node settings into a node's config.toml.
    fn tune(&self, home: &Path) -> Result<(), String> {
        let path = home.join("config.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut table: toml::Table = text.parse().map_err(|e| format!("config.toml: {e}"))?;
        for (key, value) in &self.config.node_settings {
            let value: toml::Value = format!("v = {value}")
                .parse::<toml::Table>()
                .map_err(|e| format!("setting {key}: {e}"))?
                .remove("v")
                .expect("parsed above");
            table.insert(key.clone(), value);
        }
        std::fs::write(&path, toml::to_string(&table).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }

    /// Starts (or restarts) node `i`'s process; its log is appended to.
    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        if node.is_running() {
            return Err(format!("node {i} is running already"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| e.to_string())?;
        let misbehave = self.config.misbehave.iter().find(|(j, _)| *j == i);
        let mut command = match (misbehave, &self.misbehaving_node) {
            (Some((_, behaviour)), Some(binary)) => {
                let mut command = Command::new(binary);
                command.env("MPC_MISBEHAVE", behaviour);
                command
            }
            _ => Command::new(&self.mpc_node),
        };
        let child = command
            .args(["--home", &node.home.to_string_lossy(), "start"])
            .env(
                "RUST_LOG",
                std::env::var("NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting mpc-node: {e}"))?;
        node.child = Some(child);
        Ok(())
    }

    /// The epochs for which node `i` holds a share of `domain`'s key, read from its
    /// database (the node must be stopped: the database has one writer).
    pub fn stored_share_epochs(&self, i: usize, domain: primitives::DomainId) -> Vec<u64> {
        use mpc_node::storage::{StorageKey, Store};
        let home = &self.nodes[i].home;
        let key = std::fs::read_to_string(home.join("storage_key")).unwrap();
        let store = Store::open(
            &home.join("node.redb"),
            &StorageKey::from_hex(&key).unwrap(),
        )
        .unwrap();
        store.key_share_epochs(domain).unwrap()
    }

    /// The process ids of the running nodes.
    pub fn node_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id()))
            .collect()
    }

    /// Node `i`'s process id, while it runs.
    pub fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Kills node `i` at once (SIGKILL: a crash, nothing flushed).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `i` gracefully (SIGTERM) and waits up to 15 s for it to exit.
    pub fn stop_node(&mut self, i: usize) -> Result<(), String> {
        let Some(mut child) = self.nodes[i].child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status
                    .success()
                    .then_some(())
                    .ok_or_else(|| format!("node {i} exited with {status}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("node {i} did not stop within 15 s of SIGTERM"))
    }

    /// Fails, with the end of its log, if a node the test started has exited by
    /// itself: waiting on the network then only ends in a timeout that says less.
    pub fn check_none_died(&mut self) -> Result<(), String> {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(status) = node.died() {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "node {i} exited by itself ({status}); the end of its log:\n{}",
                    tail.join("\n")
                ));
            }
        }
        Ok(())
    }

    /// Waits until the contract is Running with a key in every configured domain,
    /// and returns its state.
    pub async fn wait_running(&mut self, limit: Duration) -> Result<ContractState, String> {
        self.wait_running_with_domains(self.config.domains.len(), limit)
            .await
    }

    /// Waits until the contract is Running with keys in at least `domains`
    /// domains, and returns its state.
    pub async fn wait_running_with_domains(
        &mut self,
        domains: usize,
        limit: Duration,
    ) -> Result<ContractState, String> {
        let started = Instant::now();
        loop {
            let state = self.root.state().await;
            if let Ok(ContractState::Running(running)) = &state {
                if running.domains.len() >= domains {
                    for domain in &running.domains {
                        match domain.scheme {
                            SignatureScheme::Secp256k1 if domain.id == DomainId::LEGACY_ECDSA => {
                                let key = near_key::parse_secp256k1(&domain.public_key);
                                self.root_key = Some(key.map_err(|e| e.to_string())?);
                            }
                            SignatureScheme::Ed25519 if domain.id == ED25519_DOMAIN => {
                                let key = Ed25519PublicKey::parse(&domain.public_key);
                                self.ed25519_root_key = Some(key.map_err(|e| e.to_string())?);
                            }
                            _ => {}
                        }
                    }
                    return Ok(ContractState::Running(running.clone()));
                }
            }
            self.check_none_died()?;
            if started.elapsed() > limit {
                return Err(format!(
                    "the contract is not Running after {limit:?} ({state:?}); node logs in {}",
                    self.config.workdir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The contract's root public key of domain 0 (known once Running).
    pub fn public_key(&self) -> AffinePoint {
        self.root_key.expect("the cluster is Running")
    }

    /// The contract's Ed25519 root public key of domain 1 (known once Running).
    pub fn ed25519_public_key(&self) -> Ed25519PublicKey {
        self.ed25519_root_key
            .expect("the cluster is Running with domain 1")
    }

    /// Stops every node (gracefully) and the devnet; removes the work directory
    /// unless asked to keep it. (A cluster dropped without this, e.g. by a failing
    /// test, kills its nodes and keeps the directory with their logs.)
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if let Err(e) = self.stop_node(i) {
                eprintln!("cluster: {e}");
            }
        }
        let Cluster { devnet, config, .. } = self;
        if let Err(e) = devnet.shutdown().await {
            eprintln!("cluster: devnet shutdown: {e}");
        }
        if !config.keep_dir {
            let _ = std::fs::remove_dir_all(&config.workdir);
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
