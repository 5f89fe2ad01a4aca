//! The few Ethereum JSON-RPC methods the client needs, over plain HTTP (reqwest);
//! quantities and hashes are decoded by alloy's types.

use crate::error::{Error, Result};
use crate::json_rpc::{CallError, JsonRpc, RpcError};
use alloy_primitives::{Address, Bytes, B256, U128, U256, U64};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

const CHAIN: &str = "Ethereum";
const RECEIPT_POLL: Duration = Duration::from_millis(250);

/// A client of one Ethereum JSON-RPC endpoint.
pub struct EthRpc {
    rpc: JsonRpc,
}

/// What `eth_getTransactionReceipt` says about a mined transaction.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: U64,
    /// 1: executed; 0: reverted.
    pub status: U64,
    pub gas_used: U64,
    pub effective_gas_price: U128,
    pub contract_address: Option<Address>,
}

impl Receipt {
    pub fn succeeded(&self) -> bool {
        self.status == U64::from(1)
    }

    /// What the sender paid for gas, in wei.
    pub fn fee(&self) -> U256 {
        U256::from(self.gas_used) * U256::from(self.effective_gas_price)
    }
}

/// A call as `eth_estimateGas` and `eth_call` take it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<U256>,
    #[serde(rename = "input", skip_serializing_if = "Option::is_none")]
    pub data: Option<Bytes>,
}

/// A refusal as Ethereum nodes word it (revert data, when there is some).
fn describe(error: &RpcError) -> String {
    match &error.data {
        Some(data) if !data.is_null() => {
            format!("{} (code {}), data {data}", error.message, error.code)
        }
        _ => format!("{} (code {})", error.message, error.code),
    }
}

impl EthRpc {
    pub fn new(url: &str) -> EthRpc {
        EthRpc {
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

    pub async fn chain_id(&self) -> Result<u64> {
        let id: U64 = self.call("eth_chainId", json!([])).await?;
        Ok(id.to())
    }

    /// The next nonce of `address`, counting transactions still in the pool.
    pub async fn nonce(&self, address: Address) -> Result<u64> {
        let nonce: U64 = self
            .call("eth_getTransactionCount", json!([address, "pending"]))
            .await?;
        Ok(nonce.to())
    }

    pub async fn balance(&self, address: Address) -> Result<U256> {
        self.call("eth_getBalance", json!([address, "latest"]))
            .await
    }

    /// The base fee of the latest block.
    pub async fn base_fee(&self) -> Result<u128> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Block {
            base_fee_per_gas: Option<U128>,
        }
        let block: Block = self
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        block.base_fee_per_gas.map(|fee| fee.to()).ok_or_else(|| {
            self.rpc.error(
                "eth_getBlockByNumber",
                "the latest block has no base fee: the chain does not speak EIP-1559",
            )
        })
    }

    pub async fn max_priority_fee(&self) -> Result<u128> {
        let fee: U128 = self.call("eth_maxPriorityFeePerGas", json!([])).await?;
        Ok(fee.to())
    }

    pub async fn estimate_gas(&self, call: &CallRequest) -> Result<u64> {
        let gas: U64 = self.call("eth_estimateGas", json!([call])).await?;
        Ok(gas.to())
    }

    /// Sends a signed transaction; the node's refusal is [`Error::BroadcastRejected`].
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256> {
        let raw = format!("0x{}", hex::encode(raw));
        match self
            .rpc
            .try_call("eth_sendRawTransaction", json!([raw]))
            .await
        {
            Ok(hash) => Ok(hash),
            Err(CallError::Refused(reason)) => Err(Error::BroadcastRejected {
                chain: CHAIN,
                reason,
            }),
            Err(CallError::Transport(reason)) => {
                Err(self.rpc.error("eth_sendRawTransaction", reason))
            }
        }
    }

    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>> {
        self.call("eth_getTransactionReceipt", json!([hash])).await
    }

    /// Polls for `hash`'s receipt until `limit` has passed.
    pub async fn wait_for_receipt(&self, hash: B256, limit: Duration) -> Result<Receipt> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(receipt) = self.receipt(hash).await? {
                return Ok(receipt);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ReceiptTimeout {
                    hash: hash.to_string(),
                    seconds: limit.as_secs(),
                });
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
    }

    pub async fn storage_at(&self, address: Address, slot: U256) -> Result<B256> {
        self.call("eth_getStorageAt", json!([address, slot, "latest"]))
            .await
    }

    pub async fn call_contract(&self, call: &CallRequest) -> Result<Bytes> {
        self.call("eth_call", json!([call, "latest"])).await
    }
}
