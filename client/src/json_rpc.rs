//! A JSON-RPC 2.0 client over plain HTTP (reqwest), shared by the foreign chains'
//! RPC clients: one request's timeout, ids counted per client, and the difference
//! between a node's own refusal and anything between us and it.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One request's bound; waits for receipts or confirmations have their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The error object of a JSON-RPC answer.
#[derive(Deserialize)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default)]
    pub data: Option<Value>,
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// Why a call failed: the node's own refusal, or anything between us and it.
pub(crate) enum CallError {
    Refused(String),
    Transport(String),
}

/// A client of one JSON-RPC endpoint of `chain`.
pub(crate) struct JsonRpc {
    http: reqwest::Client,
    url: String,
    next_id: AtomicU64,
    chain: &'static str,
    /// How this chain's nodes' refusals read best (what their `data` holds).
    describe: fn(&RpcError) -> String,
}

impl JsonRpc {
    pub fn new(chain: &'static str, url: &str, describe: fn(&RpcError) -> String) -> JsonRpc {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a reqwest client with a timeout");
        JsonRpc {
            http,
            url: url.to_string(),
            next_id: AtomicU64::new(1),
            chain,
            describe,
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
            self.error(method, reason)
        })
    }

    /// Calls `method`, telling a refusal by the node from a transport failure.
    pub async fn try_call<T: DeserializeOwned>(
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
            return Err(CallError::Refused((self.describe)(&error)));
        }
        serde_json::from_value(parsed.result.unwrap_or(Value::Null))
            .map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))
    }

    /// The client's error for a failed `method`.
    pub fn error(&self, method: &str, reason: impl ToString) -> Error {
        Error::ForeignRpc {
            chain: self.chain,
            method: method.to_string(),
            reason: reason.to_string(),
        }
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
