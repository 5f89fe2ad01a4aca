//! The node's view of, and calls into, the `multichain` contract, over NEAR
//! JSON-RPC with `near-jsonrpc-client`. The same code talks to the devnet and to
//! testnet.

use near_crypto::{InMemorySigner, SecretKey, Signer};
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_jsonrpc_primitives::types::transactions::RpcTransactionError;
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, FunctionCallAction, SignedTransaction, Transaction, TransactionV0,
};
use near_primitives::transaction::{AddKeyAction, CreateAccountAction, TransferAction};
use near_primitives::types::{AccountId, Balance, BlockReference, Finality, Gas};
use near_primitives::views::{
    FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest, TxExecutionStatus,
};
use primitives::{PendingChanges, PendingRequest, RequestId, SignatureResponse};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;
use tokio::sync::Mutex;

/// The block `hash` names, or the final block.
fn block_reference(hash: Option<CryptoHash>) -> BlockReference {
    match hash {
        Some(hash) => BlockReference::BlockId(near_primitives::types::BlockId::Hash(hash)),
        None => BlockReference::Finality(Finality::Final),
    }
}

/// Pending requests fetched per view call.
const PAGE: u32 = 100;
/// How long one RPC call may take before it is given up: longer than the RPC's
/// own wait for a transaction's outcome (10 s in nearcore), so only an RPC that
/// hangs (accepts, then never answers) is cut.
const RPC_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a view may take: a healthy RPC answers one at once.
const RPC_VIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the RPC may take.
const RPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A JSON-RPC answer to a view call, as the RPC sends it.
#[derive(serde::Deserialize)]
struct ViewReply {
    result: Option<CallResult>,
    error: Option<serde_json::Value>,
}

/// The result of a `call_function` query: the bytes the view returned, or (from
/// RPCs that report a failed view this way) its error.
#[derive(serde::Deserialize)]
struct CallResult {
    result: Option<Vec<u8>>,
    error: Option<String>,
    /// The block whose state the view read.
    block_hash: Option<CryptoHash>,
}
/// How long [`Chain::call`] waits for a transaction's outcome: long enough for a
/// `sign` that re-yields a few times at one block a second.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// A function-call action with JSON arguments.
pub fn function_call(method: &str, args: &serde_json::Value, tgas: u64, yocto: u128) -> Action {
    Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: method.to_string(),
        args: serde_json::to_vec(args).expect("JSON args"),
        gas: Gas::from_teragas(tgas),
        deposit: Balance::from_yoctonear(yocto),
    }))
}

fn is_timeout(e: &near_jsonrpc_client::errors::JsonRpcError<RpcTransactionError>) -> bool {
    matches!(
        e.handler_error(),
        Some(RpcTransactionError::TimeoutError(_))
    )
}

fn is_unknown(e: &near_jsonrpc_client::errors::JsonRpcError<RpcTransactionError>) -> bool {
    matches!(
        e.handler_error(),
        Some(RpcTransactionError::UnknownTransaction { .. })
    )
}

#[derive(Debug)]
pub enum ChainError {
    /// The RPC node could not be reached or refused the request.
    Rpc(String),
    /// A view's answer did not parse.
    Decode(String),
    /// A transaction executed and failed; the text is the contract's error.
    Failed(String),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Rpc(e) => write!(f, "NEAR RPC error: {e}"),
            ChainError::Decode(e) => write!(f, "unexpected answer from the contract: {e}"),
            ChainError::Failed(e) => write!(f, "transaction failed: {e}"),
        }
    }
}

impl std::error::Error for ChainError {}

pub use primitives::views::{
    ContractState, DomainKey, KeyEvent, KeyEventId, Participant, ParticipantSet, RunningState,
};

/// One access key of the node's account and its next nonce, once known.
/// Transactions signed with one key are serialised (nonces must increase).
struct KeySlot {
    signer: Signer,
    nonce: Mutex<Option<u64>>,
}

impl KeySlot {
    fn new(account: AccountId, key: SecretKey) -> Self {
        KeySlot {
            signer: InMemorySigner::from_secret_key(account, key),
            nonce: Mutex::new(None),
        }
    }
}

/// A client of one contract, signing as one node account.
///
/// The account's main key signs votes and everything else; `respond` calls go
/// through a pool of extra keys ([`Chain::with_respond_keys`]), one transaction in
/// flight per key, so many answers land in the same block instead of queueing
/// behind one nonce.
pub struct Chain {
    client: JsonRpcClient,
    /// The HTTP client under `client`, for views (see [`Chain::view`]).
    http: reqwest::Client,
    rpc_url: String,
    contract: AccountId,
    main: KeySlot,
    respond_keys: Vec<KeySlot>,
    next_respond_key: std::sync::atomic::AtomicUsize,
}

impl Chain {
    pub fn new(rpc_url: &str, contract: AccountId, account: AccountId, key: SecretKey) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        // Without timeouts, an RPC that accepts a connection and never answers
        // would hold the watcher (or a write) forever.
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(RPC_CONNECT_TIMEOUT)
            .timeout(RPC_CALL_TIMEOUT)
            .build()
            .expect("an HTTP client with timeouts and a header is always valid");
        Chain {
            client: JsonRpcClient::with(http.clone()).connect(rpc_url),
            http,
            rpc_url: rpc_url.to_string(),
            contract,
            main: KeySlot::new(account, key),
            respond_keys: Vec::new(),
            next_respond_key: Default::default(),
        }
    }

    /// Adds keys for `respond` calls. They must be access keys of the account
    /// ([`Chain::add_respond_keys`] adds the missing ones).
    pub fn with_respond_keys(mut self, keys: Vec<SecretKey>) -> Self {
        let account = self.account();
        self.respond_keys = keys
            .into_iter()
            .map(|key| KeySlot::new(account.clone(), key))
            .collect();
        self
    }

    pub fn account(&self) -> AccountId {
        self.main.signer.get_account_id()
    }

    /// The nonce of the account's access key `key`, or `None` if the account has
    /// no such key.
    async fn access_key_nonce(
        &self,
        key: &near_crypto::PublicKey,
    ) -> Result<Option<u64>, ChainError> {
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: self.account(),
                    public_key: key.clone(),
                },
            })
            .await;
        match response {
            Ok(response) => match response.kind {
                QueryResponseKind::AccessKey(key) => Ok(Some(key.nonce)),
                _ => Err(ChainError::Decode(
                    "view_access_key: not an access key".into(),
                )),
            },
            Err(e)
                if matches!(
                    e.handler_error(),
                    Some(
                        near_jsonrpc_primitives::types::query::RpcQueryError::UnknownAccessKey { .. }
                    )
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(ChainError::Rpc(format!("view_access_key: {e}"))),
        }
    }

    /// Registers the respond keys the account lacks, as function-call keys that
    /// may only call `respond` on the contract (signed with the main key, which
    /// must be a full-access key for this). Returns how many were added.
    pub async fn add_respond_keys(&self) -> Result<usize, ChainError> {
        let mut missing = Vec::new();
        for slot in &self.respond_keys {
            let key = slot.signer.public_key();
            if self.access_key_nonce(&key).await?.is_none() {
                missing.push(key);
            }
        }
        let actions: Vec<Action> = missing
            .into_iter()
            .map(|public_key| {
                Action::AddKey(Box::new(AddKeyAction {
                    public_key,
                    access_key: AccessKey {
                        nonce: 0,
                        permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                            allowance: None,
                            receiver_id: self.contract.to_string(),
                            method_names: vec!["respond".to_string()],
                        }),
                    },
                }))
            })
            .collect();
        let added = actions.len();
        if added > 0 {
            let account = self.account();
            self.transact_with(&self.main, &account, actions).await?;
        }
        Ok(added)
    }

    /// A respond key: a free one if any, else the next in turn (waiting for it).
    async fn respond_slot(&self) -> &KeySlot {
        if self.respond_keys.is_empty() {
            return &self.main;
        }
        let start = self
            .next_respond_key
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = self.respond_keys.len();
        (0..count)
            .map(|i| &self.respond_keys[(start + i) % count])
            .find(|slot| slot.nonce.try_lock().is_ok())
            .unwrap_or(&self.respond_keys[start % count])
    }

    /// Calls view `method` with JSON `args` at the final block.
    ///
    /// Sent with the HTTP client itself rather than through `near-jsonrpc-client`,
    /// which reads every answer into a `serde_json::Value` first and then into
    /// its types through serde's buffered `Content`: the view's result is a JSON
    /// array with one number per byte, and reading the pending requests that way
    /// every poll took about 5 % of a node's CPU in a signing burst (perf, (5,3)).
    pub async fn view<T: DeserializeOwned>(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> Result<T, ChainError> {
        let final_block = BlockReference::Finality(Finality::Final);
        Ok(self.view_at(method, args, final_block).await?.0)
    }

    /// [`Chain::view`] at `block`; also returns the hash of the block the RPC
    /// read, when it says.
    async fn view_at<T: DeserializeOwned>(
        &self,
        method: &str,
        args: serde_json::Value,
        block: BlockReference,
    ) -> Result<(T, Option<CryptoHash>), ChainError> {
        let request = methods::query::RpcQueryRequest {
            block_reference: block,
            request: QueryRequest::CallFunction {
                account_id: self.contract.clone(),
                method_name: method.to_string(),
                args: serde_json::to_vec(&args).expect("JSON args").into(),
            },
        };
        let body = methods::to_json(&request)
            .map_err(|e| ChainError::Rpc(format!("view {method}: {e}")))?;
        let reply = self
            .http
            .post(&self.rpc_url)
            .timeout(RPC_VIEW_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| ChainError::Rpc(format!("view {method}: {e}")))?
            .bytes()
            .await
            .map_err(|e| ChainError::Rpc(format!("view {method}: reading the answer: {e}")))?;
        let reply: ViewReply = serde_json::from_slice(&reply)
            .map_err(|e| ChainError::Rpc(format!("view {method}: not a JSON-RPC answer: {e}")))?;
        let (result, block_hash) = match reply {
            ViewReply {
                result:
                    Some(CallResult {
                        result: Some(result),
                        block_hash,
                        ..
                    }),
                ..
            } => (result, block_hash),
            ViewReply {
                result:
                    Some(CallResult {
                        error: Some(error), ..
                    }),
                ..
            } => return Err(ChainError::Rpc(format!("view {method}: {error}"))),
            ViewReply { error, .. } => {
                let error =
                    error.map_or_else(|| "an answer without a result".into(), |e| e.to_string());
                return Err(ChainError::Rpc(format!("view {method}: {error}")));
            }
        };
        let value = serde_json::from_slice(&result)
            .map_err(|e| ChainError::Decode(format!("{method}: {e}")))?;
        Ok((value, block_hash))
    }

    pub async fn state(&self) -> Result<ContractState, ChainError> {
        self.view("state", serde_json::json!({})).await
    }

    /// The contract state at the block `block` names (the final one if `None`).
    pub async fn state_at(&self, block: Option<CryptoHash>) -> Result<ContractState, ChainError> {
        Ok(self
            .view_at("state", serde_json::json!({}), block_reference(block))
            .await?
            .0)
    }

    /// Every request waiting for a signature (in the contract's storage order),
    /// at the final block.
    pub async fn pending_requests(&self) -> Result<Vec<PendingRequest>, ChainError> {
        self.pending_requests_at(None).await
    }

    /// Every request waiting for a signature at the block `at` names (the final
    /// one if `None`).
    ///
    /// Read in pages, every page at the block the first one read: the contract
    /// removes a completed request by moving its last one into the hole, so pages
    /// read at different blocks could miss a request (it moved to a page already
    /// read) or list one twice.
    pub async fn pending_requests_at(
        &self,
        at: Option<CryptoHash>,
    ) -> Result<Vec<PendingRequest>, ChainError> {
        let mut all: Vec<PendingRequest> = Vec::new();
        let mut block = block_reference(at);
        loop {
            let args = serde_json::json!({ "from_index": all.len(), "limit": PAGE });
            let (page, read_at): (Vec<PendingRequest>, _) = self
                .view_at("pending_requests", args, block.clone())
                .await?;
            if let Some(hash) = read_at {
                block = BlockReference::BlockId(near_primitives::types::BlockId::Hash(hash));
            }
            let done = page.len() < PAGE as usize;
            all.extend(page);
            if done {
                // An RPC that did not name its block may have read pages at
                // different ones: drop repeats.
                let mut seen = std::collections::HashSet::new();
                all.retain(|r| seen.insert(r.request_id));
                return Ok(all);
            }
        }
    }

    /// Changes to the pending requests from change number `from` on, at most
    /// `limit`, and the digest of the contract state (the contract's
    /// `pending_changes`, which a reader follows after one
    /// [`Chain::pending_requests`]), read at the final block; also the hash of
    /// that block, when the RPC says.
    pub async fn pending_changes(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<(PendingChanges, Option<CryptoHash>), ChainError> {
        self.view_at(
            "pending_changes",
            serde_json::json!({ "from": from, "limit": limit }),
            BlockReference::Finality(Finality::Final),
        )
        .await
    }

    async fn next_nonce(
        &self,
        signer: &Signer,
        cached: &mut Option<u64>,
    ) -> Result<u64, ChainError> {
        if let Some(nonce) = cached {
            *nonce += 1;
            return Ok(*nonce);
        }
        let key = signer.public_key();
        let nonce = self.access_key_nonce(&key).await?.ok_or_else(|| {
            ChainError::Rpc(format!("{} has no access key {key}", self.account()))
        })?;
        *cached = Some(nonce + 1);
        Ok(nonce + 1)
    }

    /// Calls `method` on the contract and waits for the final outcome. Returns the
    /// JSON result bytes.
    pub async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
        tgas: u64,
        yocto: u128,
    ) -> Result<Vec<u8>, ChainError> {
        let contract = self.contract.clone();
        self.transact(&contract, vec![function_call(method, &args, tgas, yocto)])
            .await
    }

    /// Signs and sends a transaction of `actions` to `receiver` and waits for its
    /// final outcome (polling past RPC timeouts). Returns the result bytes.
    pub async fn transact(
        &self,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Result<Vec<u8>, ChainError> {
        self.transact_with(&self.main, receiver, actions).await
    }

    /// Like [`Chain::call`], but returns the whole final outcome (receipts and the
    /// blocks they ran in), whatever its status.
    pub async fn call_outcome(
        &self,
        method: &str,
        args: serde_json::Value,
        tgas: u64,
        yocto: u128,
    ) -> Result<FinalExecutionOutcomeView, ChainError> {
        let contract = self.contract.clone();
        let actions = vec![function_call(method, &args, tgas, yocto)];
        self.send_and_wait(&self.main, &contract, actions).await
    }

    /// The height of block `hash`.
    pub async fn block_height(&self, hash: CryptoHash) -> Result<u64, ChainError> {
        let block = self
            .client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::BlockId(near_primitives::types::BlockId::Hash(
                    hash,
                )),
            })
            .await
            .map_err(|e| ChainError::Rpc(format!("block: {e}")))?;
        Ok(block.header.height)
    }

    async fn transact_with(
        &self,
        slot: &KeySlot,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Result<Vec<u8>, ChainError> {
        let outcome = self.send_and_wait(slot, receiver, actions).await?;
        match outcome.status {
            FinalExecutionStatus::SuccessValue(value) => Ok(value),
            FinalExecutionStatus::Failure(failure) => Err(ChainError::Failed(failure.to_string())),
            other => Err(ChainError::Failed(format!("{other:?}"))),
        }
    }

    async fn send_and_wait(
        &self,
        slot: &KeySlot,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Result<FinalExecutionOutcomeView, ChainError> {
        let method = match actions.first() {
            Some(Action::FunctionCall(call)) => call.method_name.clone(),
            _ => "transaction".to_string(),
        };
        let method = method.as_str();
        let signer = &slot.signer;
        let mut nonce_slot = slot.nonce.lock().await;
        let nonce = self.next_nonce(signer, &mut nonce_slot).await?;
        let block = self
            .client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .map_err(|e| ChainError::Rpc(format!("block: {e}")))?;
        let transaction = Transaction::V0(TransactionV0 {
            signer_id: signer.get_account_id(),
            public_key: signer.public_key(),
            nonce,
            receiver_id: receiver.clone(),
            block_hash: block.header.hash,
            actions,
        });
        let (hash, _) = transaction.get_hash_and_size();
        let signed = SignedTransaction::new(signer.sign(hash.as_ref()), transaction);
        let sender = signer.get_account_id();
        let sent = self
            .client
            .call(methods::send_tx::RpcSendTransactionRequest {
                signed_transaction: signed,
                wait_until: TxExecutionStatus::Final,
            })
            .await;
        let response = match sent {
            Ok(response) => response,
            // Still executing (a `sign` waits for the network): keep asking.
            Err(e) if is_timeout(&e) => {
                drop(nonce_slot);
                self.wait_for(hash, sender, method).await?
            }
            Err(e) => {
                // The nonce may not have been used: ask the chain again next time.
                *nonce_slot = None;
                return Err(ChainError::Rpc(format!("{method}: {e}")));
            }
        };
        response
            .final_execution_outcome
            .map(|o| o.into_outcome())
            .ok_or_else(|| ChainError::Rpc(format!("{method}: no outcome")))
    }

    /// Polls a sent transaction until it is final (or [`MAX_WAIT`] passes).
    async fn wait_for(
        &self,
        hash: CryptoHash,
        sender: AccountId,
        method: &str,
    ) -> Result<near_jsonrpc_primitives::types::transactions::RpcTransactionResponse, ChainError>
    {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            let status = self
                .client
                .call(methods::tx::RpcTransactionStatusRequest {
                    transaction_info: methods::tx::TransactionInfo::TransactionId {
                        tx_hash: hash,
                        sender_account_id: sender.clone(),
                    },
                    wait_until: TxExecutionStatus::Final,
                })
                .await;
            match status {
                Ok(response) => return Ok(response),
                Err(e)
                    if tokio::time::Instant::now() < deadline
                        && (is_timeout(&e) || is_unknown(&e)) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(ChainError::Rpc(format!(
                        "{method}: waiting for the outcome: {e}"
                    )))
                }
            }
        }
    }

    /// Creates account `name` (a sub-account of this client's account, or any name on
    /// a chain whose root we hold) with `yocto` and a fresh full-access key, plus
    /// `extra` actions in the same transaction. Returns the new key. For tools,
    /// tests and the demo; the node itself never creates accounts.
    pub async fn create_account(
        &self,
        name: &AccountId,
        yocto: u128,
        extra: Vec<Action>,
    ) -> Result<SecretKey, ChainError> {
        let secret = SecretKey::from_random(near_crypto::KeyType::ED25519);
        let mut actions = vec![
            Action::CreateAccount(CreateAccountAction {}),
            Action::Transfer(TransferAction {
                deposit: Balance::from_yoctonear(yocto),
            }),
            Action::AddKey(Box::new(AddKeyAction {
                public_key: secret.public_key(),
                access_key: AccessKey {
                    nonce: 0,
                    permission: AccessKeyPermission::FullAccess,
                },
            })),
        ];
        actions.extend(extra);
        self.transact(name, actions).await?;
        Ok(secret)
    }

    /// Votes for the public key this node's share from the keygen attempt
    /// `key_event` belongs to.
    pub async fn vote_pk(
        &self,
        key_event: &KeyEvent,
        public_key: &str,
    ) -> Result<bool, ChainError> {
        let args = serde_json::json!({ "key_event": key_event.id(), "public_key": public_key });
        let value = self.call("vote_pk", args, 30, 0).await?;
        serde_json::from_slice(&value).map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// Reports this node's shares from the resharing attempt `key_event` stored.
    pub async fn vote_reshared(&self, key_event: &KeyEvent) -> Result<bool, ChainError> {
        let args = serde_json::json!({ "key_event": key_event.id() });
        let value = self.call("vote_reshared", args, 30, 0).await?;
        serde_json::from_slice(&value).map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// Reports that the key-event attempt `key_event` failed here, so the next
    /// attempt starts now rather than at the timeout.
    pub async fn vote_abort_key_event(&self, key_event: &KeyEvent) -> Result<(), ChainError> {
        let args = serde_json::json!({ "key_event": key_event.id() });
        self.call("vote_abort_key_event", args, 30, 0).await?;
        Ok(())
    }

    pub async fn respond(
        &self,
        request_id: &RequestId,
        response: &SignatureResponse,
    ) -> Result<(), ChainError> {
        let args = serde_json::json!({ "request_id": request_id, "response": response });
        let slot = self.respond_slot().await;
        self.transact_with(
            slot,
            &self.contract,
            vec![function_call("respond", &args, 100, 0)],
        )
        .await?;
        Ok(())
    }
}
