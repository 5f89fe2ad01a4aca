//! A steady load of sign requests that survives outages, and the accounting of what
//! became of each, for the outage tests and the soak.
//!
//! Unlike [`Cluster::sign`], a request here is a transaction signed locally, so its
//! hash is known before it is sent: if the RPC goes away while the caller waits,
//! the caller asks again until the chain gives the final outcome, and a request
//! whose broadcast failed is looked up rather than guessed at. Every request ends
//! as answered (a signature that verifies), timed out (the contract's error, its
//! deposit refunded), or never received by the chain.
//!
//! The load alternates domain 0 (secp256k1) and domain 1 (Ed25519) and two gas
//! budgets: *patient* requests attach enough gas for the contract to wait again
//! several times, *impatient* ones only one yield window, so an outage longer than
//! the window makes some of them time out.

use crate::{eddsa_request, request, ArgsShape, Cluster};
use mpc_node::chain::function_call;
use near_crypto::{InMemorySigner, SecretKey, Signer};
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_jsonrpc_primitives::types::transactions::{RpcTransactionError, TransactionInfo};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{SignedTransaction, Transaction, TransactionV0};
use near_primitives::types::{AccountId, BlockReference, Finality};
use near_primitives::views::{
    FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest, TxExecutionStatus,
};
use primitives::{SignRequest, SignatureResponse};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Gas of a patient request: the contract waits again while it lasts (NEAR's 300).
pub const PATIENT_TGAS: u64 = 300;
/// Gas of an impatient request: the contract's minimum, enough for a window or
/// two (the callback's share of the unused gas may pay for one more wait), then
/// the timeout and a refund.
pub const IMPATIENT_TGAS: u64 = 20;
/// How long a transaction the chain never shows is looked for (while the RPC
/// answers) before it counts as never received.
const UNKNOWN_FOR: Duration = Duration::from_secs(20);
/// The longest a caller waits for one outcome, outages included.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// What became of a request.
#[derive(Debug)]
pub enum Fate {
    /// The contract returned this signature.
    Answered(SignatureResponse),
    /// The contract's timeout error; `refunded` if its `signature_timed_out` event
    /// says the deposit went back.
    TimedOut { refunded: bool },
    /// Any other failure of the transaction.
    Failed(String),
    /// The chain never had the transaction (its broadcast failed: `why`).
    NeverReceived { why: String },
    /// No final outcome within [`GIVE_UP_AFTER`].
    Unresolved(String),
}

/// One request and its fate.
#[derive(Debug)]
pub struct Outcome {
    pub index: usize,
    pub request: SignRequest,
    pub tgas: u64,
    /// The caller's account.
    pub account: AccountId,
    pub sent_at: Instant,
    pub took: Duration,
    pub fate: Fate,
    /// yoctoNEAR burnt by the transaction and every receipt it caused.
    pub burnt: u128,
    /// yoctoNEAR of deposit the contract kept (1 for an answer, 0 otherwise).
    pub kept: u128,
}

/// One access key of a load account; one request in flight at a time.
pub struct Caller {
    rpc: JsonRpcClient,
    contract: AccountId,
    signer: Signer,
    nonce: Option<u64>,
}

impl Caller {
    fn new(cluster: &Cluster, account: &AccountId, key: SecretKey) -> Caller {
        let url = cluster.devnet.rpc_url();
        Caller {
            rpc: JsonRpcClient::connect(url),
            contract: cluster.contract.clone(),
            signer: InMemorySigner::from_secret_key(account.clone(), key),
            nonce: None,
        }
    }

    pub fn account(&self) -> AccountId {
        self.signer.get_account_id()
    }

    /// Sends `request` with `tgas` and 1 yoctoNEAR and follows it to its fate.
    async fn sign(&mut self, index: usize, request: SignRequest, tgas: u64) -> Outcome {
        let sent_at = Instant::now();
        let account = self.account();
        let mut outcome = Outcome {
            index,
            request,
            tgas,
            account,
            sent_at,
            took: Duration::ZERO,
            fate: Fate::Unresolved(String::new()),
            burnt: 0,
            kept: 0,
        };
        let args = ArgsShape::Current.args(&outcome.request);
        let (hash, broadcast_error) = match self.broadcast(&args, tgas).await {
            Ok(sent) => sent,
            Err(why) => {
                outcome.fate = Fate::NeverReceived { why };
                outcome.took = sent_at.elapsed();
                return outcome;
            }
        };
        match self.final_outcome(hash, broadcast_error).await {
            Ok(final_outcome) => {
                outcome.burnt = burnt(&final_outcome);
                outcome.fate = fate(&final_outcome);
                if matches!(outcome.fate, Fate::Answered(_)) {
                    outcome.kept = 1;
                }
            }
            Err(fate) => outcome.fate = fate,
        }
        outcome.took = sent_at.elapsed();
        outcome
    }

    /// Signs and broadcasts the `sign` transaction. Returns its hash and, if the
    /// broadcast failed, why (the chain may have it anyway); an error if it could
    /// not even be built (no block hash or nonce from the RPC).
    async fn broadcast(
        &mut self,
        args: &serde_json::Value,
        tgas: u64,
    ) -> Result<(CryptoHash, Option<String>), String> {
        let nonce = match self.nonce {
            Some(nonce) => nonce + 1,
            None => self.access_key_nonce().await? + 1,
        };
        let block = self
            .rpc
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .map_err(|e| format!("block: {e}"))?;
        let transaction = Transaction::V0(TransactionV0 {
            signer_id: self.account(),
            public_key: self.signer.public_key(),
            nonce,
            receiver_id: self.contract.clone(),
            block_hash: block.header.hash,
            actions: vec![function_call("sign", args, tgas, 1)],
        });
        // Whatever the broadcast's fate, the next transaction takes a higher nonce.
        self.nonce = Some(nonce);
        let (hash, _) = transaction.get_hash_and_size();
        let signed = SignedTransaction::new(self.signer.sign(hash.as_ref()), transaction);
        let sent = self
            .rpc
            .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
                signed_transaction: signed,
            })
            .await;
        Ok((hash, sent.err().map(|e| e.to_string())))
    }

    async fn access_key_nonce(&self) -> Result<u64, String> {
        let response = self
            .rpc
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: self.account(),
                    public_key: self.signer.public_key(),
                },
            })
            .await
            .map_err(|e| format!("view_access_key: {e}"))?;
        match response.kind {
            QueryResponseKind::AccessKey(key) => Ok(key.nonce),
            other => Err(format!("view_access_key: {other:?}")),
        }
    }

    /// Asks for the transaction's final outcome until the chain gives it, through
    /// RPC errors and outages.
    async fn final_outcome(
        &self,
        hash: CryptoHash,
        broadcast_error: Option<String>,
    ) -> Result<FinalExecutionOutcomeView, Fate> {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        let mut unknown_since: Option<Instant> = None;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let status = self
                .rpc
                .call(methods::tx::RpcTransactionStatusRequest {
                    transaction_info: TransactionInfo::TransactionId {
                        tx_hash: hash,
                        sender_account_id: self.account(),
                    },
                    wait_until: TxExecutionStatus::Final,
                })
                .await;
            match status {
                Ok(response) => {
                    if let Some(outcome) = response.final_execution_outcome {
                        return Ok(outcome.into_outcome());
                    }
                    unknown_since = None;
                }
                Err(e) => {
                    let unknown = matches!(
                        e.handler_error(),
                        Some(RpcTransactionError::UnknownTransaction { .. })
                    );
                    if unknown {
                        let since = *unknown_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > UNKNOWN_FOR {
                            return Err(Fate::NeverReceived {
                                why: broadcast_error
                                    .unwrap_or_else(|| "the broadcast succeeded".into()),
                            });
                        }
                    } else {
                        // The RPC is away (or timed out waiting): not evidence
                        // either way.
                        unknown_since = None;
                    }
                    last_error = e.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Fate::Unresolved(last_error))
    }
}

/// yoctoNEAR burnt by a transaction and all its receipts.
fn burnt(outcome: &FinalExecutionOutcomeView) -> u128 {
    std::iter::once(&outcome.transaction_outcome)
        .chain(&outcome.receipts_outcome)
        .map(|o| o.outcome.tokens_burnt.as_yoctonear())
        .sum()
}

fn fate(outcome: &FinalExecutionOutcomeView) -> Fate {
    match &outcome.status {
        FinalExecutionStatus::SuccessValue(bytes) => match serde_json::from_slice(bytes) {
            Ok(signature) => Fate::Answered(signature),
            Err(e) => Fate::Failed(format!("the answer of sign: {e}")),
        },
        FinalExecutionStatus::Failure(failure) => {
            let text = failure.to_string();
            if text.contains("timed out: the MPC network did not answer in time") {
                let refunded = outcome.receipts_outcome.iter().any(|r| {
                    r.outcome.logs.iter().any(|log| {
                        log.contains(r#""event":"signature_timed_out""#)
                            && log.contains(r#""refunded":"1""#)
                    })
                });
                Fate::TimedOut { refunded }
            } else {
                Fate::Failed(text)
            }
        }
        other => Fate::Failed(format!("{other:?}")),
    }
}

/// The liquid balance of `account`, in yoctoNEAR.
pub async fn balance(cluster: &Cluster, account: &AccountId) -> Result<u128, String> {
    let rpc = JsonRpcClient::connect(cluster.devnet.rpc_url());
    let response = rpc
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccount {
                account_id: account.clone(),
            },
        })
        .await
        .map_err(|e| format!("view_account {account}: {e}"))?;
    match response.kind {
        QueryResponseKind::ViewAccount(view) => Ok(view.amount.as_yoctonear()),
        other => Err(format!("view_account {account}: {other:?}")),
    }
}

/// Counters of a running load, for progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub timed_out: AtomicU64,
    pub other: AtomicU64,
    /// Ticks at which every caller was busy (no request sent).
    pub all_busy: AtomicU64,
}

impl Progress {
    pub fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let done = get(&self.answered) + get(&self.timed_out) + get(&self.other);
        format!(
            "sent {}, answered {}, timed out {}, other {}, in flight {}",
            get(&self.sent),
            get(&self.answered),
            get(&self.timed_out),
            get(&self.other),
            get(&self.sent).saturating_sub(done)
        )
    }
}

/// A load running in the background: one request every `pace` from a free caller.
pub struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Outcome>>,
    pub progress: Arc<Progress>,
    /// The load accounts with their balances before the first request.
    pub accounts: Vec<(AccountId, u128)>,
}

/// The request the load sends `index`-th: domains alternate, and within each
/// domain the gas alternates between patient and impatient. `seed` keeps payloads
/// of different runs apart.
pub fn nth_request(index: usize, seed: u64, domains: usize) -> (SignRequest, u64) {
    let tgas = if (index / 2) % 2 == 0 {
        PATIENT_TGAS
    } else {
        IMPATIENT_TGAS
    };
    let path = format!("load-{seed}-{index}");
    let mut payload = [0u8; 32];
    // A leading 0x01 keeps the scalar non-zero and below the curve order.
    payload[0] = 0x01;
    payload[8..16].copy_from_slice(&seed.to_be_bytes());
    payload[24..32].copy_from_slice(&(index as u64).to_be_bytes());
    if domains > 1 && index % 2 == 1 {
        (eddsa_request([payload.as_slice(); 2].concat(), &path), tgas)
    } else {
        (request(payload, &path), tgas)
    }
}

impl Load {
    /// Creates `accounts` accounts named `<prefix>-<k>.test.near` with `keys` keys
    /// each and starts sending, one request every `pace` while a caller is free.
    pub async fn start(
        cluster: &Cluster,
        prefix: &str,
        accounts: usize,
        keys: usize,
        pace: Duration,
        seed: u64,
    ) -> Result<Load, String> {
        let mut callers = Vec::new();
        let mut balances = Vec::new();
        for a in 0..accounts {
            let name = format!("{prefix}-{a}.test.near");
            let account = crate::id(&name);
            for key in cluster.user_keys(&name, keys).await? {
                callers.push(Caller::new(cluster, &account, key));
            }
            balances.push((account.clone(), balance(cluster, &account).await?));
        }
        let (free_tx, mut free_rx) = mpsc::unbounded_channel();
        for caller in callers {
            let _ = free_tx.send(caller);
        }
        let (stop, mut stopped) = watch::channel(false);
        let progress = Arc::new(Progress::default());
        let domains = cluster.config.domains.len();
        let p = progress.clone();
        let task = tokio::spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut outcomes = Vec::new();
            let mut ticks = tokio::time::interval(pace);
            let mut index = 0;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                while let Some(Ok(done)) = in_flight.try_join_next() {
                    outcomes.push(done);
                }
                let Ok(mut caller) = free_rx.try_recv() else {
                    p.all_busy.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (request, tgas) = nth_request(index, seed, domains);
                p.sent.fetch_add(1, Ordering::Relaxed);
                let (free_tx, p) = (free_tx.clone(), p.clone());
                in_flight.spawn(async move {
                    let outcome = caller.sign(index, request, tgas).await;
                    let counter = match outcome.fate {
                        Fate::Answered(_) => &p.answered,
                        Fate::TimedOut { .. } => &p.timed_out,
                        _ => &p.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = free_tx.send(caller);
                    (outcome, index)
                });
                index += 1;
            }
            while let Some(done) = in_flight.join_next().await {
                if let Ok(done) = done {
                    outcomes.push(done);
                }
            }
            let mut outcomes: Vec<Outcome> = outcomes.into_iter().map(|(o, _)| o).collect();
            outcomes.sort_by_key(|o| o.index);
            outcomes
        });
        Ok(Load {
            stop,
            task,
            progress,
            accounts: balances,
        })
    }

    /// Stops sending and waits for every request in flight to end.
    pub async fn finish(self) -> (Vec<Outcome>, Vec<(AccountId, u128)>) {
        self.stop.send_replace(true);
        let outcomes = self.task.await.unwrap_or_default();
        (outcomes, self.accounts)
    }
}

/// What a load's outcomes add up to, with every check the tests and the soak make.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests the chain received.
    pub sent: usize,
    pub answered: usize,
    pub timed_out_refunded: usize,
    pub timed_out_not_refunded: usize,
    pub failed: Vec<String>,
    pub never_received: usize,
    pub unresolved: usize,
    pub bad_signatures: Vec<String>,
    /// Nonces (ECDSA R, Ed25519 R) seen in more than one answer.
    pub repeated_nonces: usize,
    /// Accounts whose balance does not match what their requests burnt and kept.
    pub balance_mismatches: Vec<String>,
    pub answered_by_domain: BTreeMap<u64, usize>,
    pub latencies: Vec<Duration>,
}

impl Tally {
    /// Checks every outcome (signatures against the derived keys, nonces across
    /// all answers, each account's balance against its requests' costs).
    pub async fn of(
        cluster: &Cluster,
        outcomes: &[Outcome],
        accounts: &[(AccountId, u128)],
    ) -> Tally {
        let mut tally = Tally::default();
        let mut nonces: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut spent: HashMap<&AccountId, u128> = HashMap::new();
        for outcome in outcomes {
            *spent.entry(&outcome.account).or_default() += outcome.burnt + outcome.kept;
            match &outcome.fate {
                Fate::NeverReceived { .. } => {
                    tally.never_received += 1;
                    continue;
                }
                Fate::Answered(signature) => {
                    let user = cluster.client(outcome.account.as_str(), placeholder_key());
                    if let Err(e) = cluster.verify(&user, &outcome.request, signature) {
                        tally
                            .bad_signatures
                            .push(format!("request {}: {e}", outcome.index));
                    }
                    let nonce = match signature {
                        SignatureResponse::Secp256k1(ecdsa) => ecdsa.big_r.affine_point.to_vec(),
                        SignatureResponse::Ed25519 { signature } => signature.0[..32].to_vec(),
                    };
                    *nonces.entry(nonce).or_default() += 1;
                    tally.answered += 1;
                    *tally
                        .answered_by_domain
                        .entry(outcome.request.domain_id.0)
                        .or_default() += 1;
                    tally.latencies.push(outcome.took);
                }
                Fate::TimedOut { refunded: true } => tally.timed_out_refunded += 1,
                Fate::TimedOut { refunded: false } => tally.timed_out_not_refunded += 1,
                Fate::Failed(why) => tally
                    .failed
                    .push(format!("request {}: {why}", outcome.index)),
                Fate::Unresolved(_) => tally.unresolved += 1,
            }
            tally.sent += 1;
        }
        tally.repeated_nonces = nonces.values().filter(|n| **n > 1).count();
        for (account, before) in accounts {
            let expected = before.saturating_sub(spent.get(account).copied().unwrap_or(0));
            match balance(cluster, account).await {
                Ok(after) if after == expected => {}
                Ok(after) => tally.balance_mismatches.push(format!(
                    "{account}: {after} yocto, expected {expected} (off by {})",
                    after as i128 - expected as i128
                )),
                Err(e) => tally.balance_mismatches.push(e),
            }
        }
        tally.latencies.sort();
        tally
    }

    /// Every request the chain received was answered or timed out with its deposit
    /// refunded; no nonce repeats; every signature verifies; balances add up.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let accounted = self.answered + self.timed_out_refunded;
        if accounted != self.sent {
            problems.push(format!(
                "sent {} ≠ answered {} + timed out and refunded {} (not refunded {}, failed {:?}, unresolved {})",
                self.sent,
                self.answered,
                self.timed_out_refunded,
                self.timed_out_not_refunded,
                self.failed,
                self.unresolved
            ));
        }
        if self.repeated_nonces > 0 {
            problems.push(format!(
                "{} nonces repeat: a presignature or nonce was used twice",
                self.repeated_nonces
            ));
        }
        if !self.bad_signatures.is_empty() {
            problems.push(format!("bad signatures: {:?}", self.bad_signatures));
        }
        if !self.balance_mismatches.is_empty() {
            problems.push(format!("balances: {:?}", self.balance_mismatches));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The `q` quantile of answered latencies.
    pub fn latency(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[at - 1]
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "received {}: answered {} (by domain {:?}; p50 {:.1} s, p99 {:.1} s, max {:.1} s), timed out and refunded {}, \
             timed out not refunded {}, failed {}, unresolved {}, never received {}; repeated nonces {}",
            self.sent,
            self.answered,
            self.answered_by_domain,
            self.latency(0.5).as_secs_f64(),
            self.latency(0.99).as_secs_f64(),
            self.latency(1.0).as_secs_f64(),
            self.timed_out_refunded,
            self.timed_out_not_refunded,
            self.failed.len(),
            self.unresolved,
            self.never_received,
            self.repeated_nonces
        )
    }
}

/// [`Cluster::verify`] reads only the client's account; it never signs.
fn placeholder_key() -> SecretKey {
    SecretKey::from_seed(near_crypto::KeyType::ED25519, "verify only")
}
