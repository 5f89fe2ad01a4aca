//! The few Solana JSON-RPC methods the client needs, over plain HTTP (reqwest).
//! Addresses, hashes and signatures are parsed by Solana's own types.

use crate::error::{Error, Result};
use crate::json_rpc::{CallError, JsonRpc, RpcError};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use solana_hash::Hash;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use std::time::Duration;

const CHAIN: &str = "Solana";
const STATUS_POLL: Duration = Duration::from_millis(400);
/// The commitment the client reads and waits for: voted on by a supermajority, so
/// it survives all but a catastrophic fork, and reached in about a second.
pub const COMMITMENT: &str = "confirmed";

/// A client of one Solana JSON-RPC endpoint.
pub struct SolRpc {
    rpc: JsonRpc,
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

/// A refusal as Solana nodes word it: a failed preflight carries the program
/// logs, which say why.
fn describe(error: &RpcError) -> String {
    let mut text = format!("{} (code {})", error.message, error.code);
    if let Some(logs) = error
        .data
        .as_ref()
        .and_then(|d| d.get("logs"))
        .and_then(Value::as_array)
    {
        let lines: Vec<&str> = logs.iter().filter_map(Value::as_str).collect();
        if !lines.is_empty() {
            text.push_str(&format!("; logs: {}", lines.join(" | ")));
        }
    }
    text
}

/// Most answers wrap their value with the slot it was read at.
#[derive(Deserialize)]
struct WithContext<T> {
    value: T,
}

impl SolRpc {
    pub fn new(url: &str) -> SolRpc {
        SolRpc {
            rpc: JsonRpc::new(CHAIN, url, describe),
        }
    }

    pub fn url(&self) -> &str {
        self.rpc.url()
    }

    /// Calls `method`; a refusal by the node and a transport failure are both
    /// [`Error::ForeignRpc`].
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T> {
        self.rpc.call(method, params).await
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
            self.rpc.error(
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
            self.rpc.error(
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
        let text: String = match self.rpc.try_call("sendTransaction", params).await {
            Ok(text) => text,
            Err(CallError::Refused(reason)) => {
                return Err(Error::BroadcastRejected {
                    chain: CHAIN,
                    reason,
                })
            }
            Err(CallError::Transport(reason)) => {
                return Err(self.rpc.error("sendTransaction", reason))
            }
        };
        text.parse().map_err(|e| {
            self.rpc.error(
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
            self.rpc.error(
                "requestAirdrop",
                format!("`{text}` is not a signature: {e}"),
            )
        })
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
        let text = describe(&error);
        assert!(
            text.contains("(code -32002)") && text.ends_with("need 10"),
            "{text}"
        );
    }
}
