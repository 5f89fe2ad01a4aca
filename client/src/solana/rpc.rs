//! The few Solana JSON-RPC methods the client needs, over plain HTTP (reqwest).
//! Addresses, hashes and signatures are parsed by Solana's own types.

use crate::error::{Error, Result};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use solana_hash::Hash;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CHAIN: &str = "Solana";
/// One request's bound; the confirmation wait has its own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const STATUS_POLL: Duration = Duration::from_millis(400);
/// The commitment the client reads and waits for: voted on by a supermajority, so
/// it survives all but a catastrophic fork, and reached in about a second.
pub const COMMITMENT: &str = "confirmed";

/// A client of one Solana JSON-RPC endpoint.
pub struct SolRpc {
    http: reqwest::Client,
    url: String,
    next_id: AtomicU64,
}

/// What `getSignatureStatuses` says about a transaction the node has seen.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignatureStatus {
    pub slot: u64,
    /// `None`: rooted (finalized).
    pub confirmations: Option<u64>,
    /// The transaction's error, if it failed (its fee was still paid).
    pub err: Option<Value>,
    /// `processed`, `confirmed` or `finalized`.
    pub confirmation_status: Option<String>,
}

impl SignatureStatus {
    /// Whether it reached [`COMMITMENT`] (or was rooted).
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.confirmation_status.as_deref(),
            Some("confirmed" | "finalized")
        ) || (self.confirmation_status.is_none() && self.confirmations.is_none())
    }
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)?;
        // A failed preflight carries the program logs: the line that says why.
        if let Some(logs) = self
            .data
            .as_ref()
            .and_then(|d| d.get("logs"))
            .and_then(Value::as_array)
        {
            let lines: Vec<&str> = logs.iter().filter_map(Value::as_str).collect();
            if !lines.is_empty() {
                write!(f, "; logs: {}", lines.join(" | "))?;
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// Most answers wrap their value with the slot it was read at.
#[derive(Deserialize)]
struct WithContext<T> {
    value: T,
}

/// Why a call failed: the node's own refusal, or anything between us and it.
enum CallError {
    Refused(String),
    Transport(String),
}

impl SolRpc {
    pub fn new(url: &str) -> SolRpc {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client with a timeout");
        SolRpc {
            http,
            url: url.to_string(),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method`; a refusal by the node and a transport failure are both
    /// [`Error::ForeignRpc`].
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T> {
        self.try_call(method, params).await.map_err(|e| {
            let reason = match e {
                CallError::Refused(text) | CallError::Transport(text) => text,
            };
            rpc_error(method, reason)
        })
    }

    async fn try_call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| CallError::Transport(format!("{} unreachable: {e}", self.url)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let parsed: RpcResponse = serde_json::from_str(&text)
            .map_err(|_| CallError::Transport(format!("HTTP {status}: {}", clip(&text))))?;
        if let Some(error) = parsed.error {
            return Err(CallError::Refused(error.to_string()));
        }
        serde_json::from_value(parsed.result.unwrap_or(Value::Null))
            .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))
    }

    /// The latest blockhash, which a transaction must name to be accepted (for
    /// about 150 blocks, a minute or so).
    pub async fn latest_blockhash(&self) -> Result<Hash> {
        #[derive(Deserialize)]
        struct Latest {
            blockhash: String,
        }
        let latest: WithContext<Latest> = self
            .call("getLatestBlockhash", json!([{ "commitment": COMMITMENT }]))
            .await?;
        latest.value.blockhash.parse().map_err(|e| {
            rpc_error(
                "getLatestBlockhash",
                format!("`{}` is not a hash: {e}", latest.value.blockhash),
            )
        })
    }

    /// Lamports held by `address` (0 for an account that does not exist).
    pub async fn balance(&self, address: &Pubkey) -> Result<u64> {
        let balance: WithContext<u64> = self
            .call(
                "getBalance",
                json!([address.to_string(), { "commitment": COMMITMENT }]),
            )
            .await?;
        Ok(balance.value)
    }

    /// The least balance an account with `data_len` bytes of data may hold (below
    /// it, and above 0, the runtime refuses the transaction that leaves it so).
    pub async fn rent_exempt_minimum(&self, data_len: u64) -> Result<u64> {
        self.call("getMinimumBalanceForRentExemption", json!([data_len]))
            .await
    }

    /// The fee the network charges for `message` (its serialized bytes).
    pub async fn fee_for_message(&self, message: &[u8]) -> Result<u64> {
        let fee: WithContext<Option<u64>> = self
            .call(
                "getFeeForMessage",
                json!([base64(message), { "commitment": COMMITMENT }]),
            )
            .await?;
        fee.value.ok_or_else(|| {
            rpc_error(
                "getFeeForMessage",
                "no fee: the node no longer knows the message's blockhash",
            )
        })
    }

    /// Sends a signed transaction (its wire bytes); the node's refusal (a failed
    /// preflight, a bad signature) is [`Error::BroadcastRejected`].
    pub async fn send_transaction(&self, wire: &[u8]) -> Result<Signature> {
        let params = json!([base64(wire), {
            "encoding": "base64",
            "preflightCommitment": COMMITMENT,
        }]);
        let text: String = match self.try_call("sendTransaction", params).await {
            Ok(text) => text,
            Err(CallError::Refused(reason)) => {
                return Err(Error::BroadcastRejected {
                    chain: CHAIN,
                    reason,
                })
            }
            Err(CallError::Transport(reason)) => return Err(rpc_error("sendTransaction", reason)),
        };
        text.parse().map_err(|e| {
            rpc_error(
                "sendTransaction",
                format!("`{text}` is not a signature: {e}"),
            )
        })
    }

    /// The status of `signature`, or `None` while the node has not seen it.
    pub async fn signature_status(&self, signature: &Signature) -> Result<Option<SignatureStatus>> {
        let statuses: WithContext<Vec<Option<SignatureStatus>>> = self
            .call(
                "getSignatureStatuses",
                json!([[signature.to_string()], { "searchTransactionHistory": false }]),
            )
            .await?;
        Ok(statuses.value.into_iter().next().flatten())
    }

    /// Polls until `signature` is confirmed (or failed) or `limit` has passed.
    pub async fn wait_for_confirmation(
        &self,
        signature: &Signature,
        limit: Duration,
    ) -> Result<SignatureStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.signature_status(signature).await? {
                if status.is_confirmed() || status.err.is_some() {
                    return Ok(status);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ConfirmationTimeout {
                    chain: CHAIN,
                    id: signature.to_string(),
                    seconds: limit.as_secs(),
                });
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// Asks the node for `lamports` of free SOL (devnet, testnet and local
    /// validators; mainnet refuses).
    pub async fn request_airdrop(&self, to: &Pubkey, lamports: u64) -> Result<Signature> {
        let text: String = self
            .call("requestAirdrop", json!([to.to_string(), lamports]))
            .await?;
        text.parse().map_err(|e| {
            rpc_error(
                "requestAirdrop",
                format!("`{text}` is not a signature: {e}"),
            )
        })
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn rpc_error(method: &str, reason: impl ToString) -> Error {
    Error::ForeignRpc {
        chain: CHAIN,
        method: method.to_string(),
        reason: reason.to_string(),
    }
}

/// The start of an unexpected body, enough to recognise it.
fn clip(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_count_as_confirmed_from_confirmed_on() {
        let status = |level: Option<&str>, confirmations: Option<u64>| SignatureStatus {
            slot: 9,
            confirmations,
            err: None,
            confirmation_status: level.map(String::from),
        };
        assert!(!status(Some("processed"), Some(0)).is_confirmed());
        assert!(status(Some("confirmed"), Some(3)).is_confirmed());
        assert!(status(Some("finalized"), None).is_confirmed());
        // Old nodes leave out confirmationStatus; no count means rooted.
        assert!(status(None, None).is_confirmed());
        assert!(!status(None, Some(1)).is_confirmed());
    }

    #[test]
    fn a_failed_preflight_shows_its_logs() {
        let error: RpcError = serde_json::from_value(json!({
            "code": -32002,
            "message": "Transaction simulation failed: Error processing Instruction 0",
            "data": { "logs": ["Program 11111111111111111111111111111111 invoke [1]", "Transfer: insufficient lamports 5, need 10"] }
        }))
        .unwrap();
        let text = error.to_string();
        assert!(
            text.contains("(code -32002)") && text.ends_with("need 10"),
            "{text}"
        );
    }
}
