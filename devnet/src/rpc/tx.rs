//! The transaction methods: decoding a signed transaction, `tx` status
//! parameters, and waiting until a transaction has come as far as asked.

use super::parse;
use crate::chain::{TxProgress, TxState};
use crate::node::Shared;
use near_jsonrpc_primitives::errors::RpcError;
use near_jsonrpc_primitives::types::transactions::{
    RpcTransactionError, RpcTransactionResponse, TimeoutErrorCause,
};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::AccountId;
use near_primitives::views::TxExecutionStatus;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long `broadcast_tx_commit`, `send_tx` and `tx` wait before a timeout error
/// (nearcore's default polling timeout).
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A signed transaction from its base64 borsh bytes.
pub(super) fn decode_tx(base64: &str) -> Result<SignedTransaction, RpcError> {
    let bytes = near_primitives::serialize::from_base64(base64)
        .map_err(|e| RpcError::parse_error(format!("Failed to decode transaction: {e}")))?;
    borsh::from_slice::<SignedTransaction>(&bytes)
        .map_err(|e| RpcError::parse_error(format!("Failed to decode transaction: {e}")))
}

/// `[base64]` (broadcast_tx_*) or `{"signed_tx_base64": ...}`.
pub(super) fn signed_tx_param(params: &Value) -> Result<SignedTransaction, RpcError> {
    let text = match params {
        Value::Array(items) => items.first().and_then(Value::as_str),
        Value::Object(map) => map.get("signed_tx_base64").and_then(Value::as_str),
        _ => None,
    };
    let text = text.ok_or_else(|| {
        RpcError::parse_error(
            "Failed parsing args: expected [\"<base64 signed transaction>\"]".to_owned(),
        )
    })?;
    decode_tx(text)
}

/// The transaction a `tx` query asks about, and how far to wait for it: by
/// hash and sender, or by the signed transaction itself (legacy arrays too).
pub(super) fn tx_status_params(params: Value) -> Result<(CryptoHash, TxExecutionStatus), RpcError> {
    if let Value::Array(items) = &params {
        // Legacy: [tx_hash, sender_account_id] or [signed_tx_base64].
        return match items.as_slice() {
            [hash, _sender] => Ok((parse(hash.clone())?, TxExecutionStatus::default())),
            [tx] => Ok((
                signed_tx_param(&json!([tx]))?.get_hash(),
                TxExecutionStatus::default(),
            )),
            _ => Err(RpcError::parse_error(
                "Failed parsing args: expected [tx_hash, sender_account_id]".to_owned(),
            )),
        };
    }
    let wait_until: TxExecutionStatus = match params.get("wait_until") {
        Some(value) => parse(value.clone())?,
        None => TxExecutionStatus::default(),
    };
    if params.get("signed_tx_base64").is_some() {
        return Ok((signed_tx_param(&params)?.get_hash(), wait_until));
    }
    #[derive(serde::Deserialize)]
    struct ById {
        tx_hash: CryptoHash,
        #[allow(dead_code)]
        sender_account_id: AccountId,
    }
    let by_id: ById = parse(params)?;
    Ok((by_id.tx_hash, wait_until))
}

/// A transaction the chain refused, in nearcore's error shape.
pub(super) fn tx_error(error: near_primitives::errors::InvalidTxError) -> RpcError {
    RpcTransactionError::InvalidTransaction { context: error }.into()
}

/// Waits until transaction `hash` reaches `wait_until` (or the chain says it never
/// will) and answers like nearcore. At each new head it checks only the
/// transaction's progress; the outcome is built once, when it is answered.
pub(super) async fn wait_tx(
    shared: &Arc<Shared>,
    hash: CryptoHash,
    wait_until: TxExecutionStatus,
) -> Result<RpcTransactionResponse, RpcError> {
    let mut heads = shared.subscribe();
    let mut stopping = shared.shutting_down();
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    loop {
        let settled = shared.with_chain(|chain| {
            let progress = chain.tx_progress(&hash);
            Ok::<_, RpcError>(settles(progress, &wait_until).then(|| chain.tx_state(&hash)))
        })?;
        if let Some(state) = settled {
            // Still waiting for a block: only `wait_until: NONE` settles there.
            return Ok(
                tx_response(&hash, state)?.unwrap_or(RpcTransactionResponse {
                    final_execution_outcome: None,
                    final_execution_status: TxExecutionStatus::None,
                }),
            );
        }
        let changed = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                changed = heads.changed() => changed.is_ok(),
                _ = stopping.changed() => false,
            }
        })
        .await;
        if changed != Ok(true) {
            let state = shared.with_chain(|chain| Ok::<_, RpcError>(chain.tx_state(&hash)))?;
            let cause = match tx_response(&hash, state)? {
                Some(status) => TimeoutErrorCause::Pending {
                    status: Box::new(status),
                },
                None => TimeoutErrorCause::NotObserved,
            };
            return Err(RpcTransactionError::TimeoutError(Some(cause)).into());
        }
    }
}

/// Whether a waiter for `wait_until` is answered now: the transaction is unknown or
/// rejected (an error), or it has come as far as asked.
fn settles(progress: TxProgress, wait_until: &TxExecutionStatus) -> bool {
    match progress {
        TxProgress::Unknown | TxProgress::Rejected => true,
        TxProgress::Pending => *wait_until == TxExecutionStatus::None,
        TxProgress::Included { complete } => {
            complete
                || matches!(
                    wait_until,
                    TxExecutionStatus::None
                        | TxExecutionStatus::Included
                        | TxExecutionStatus::IncludedFinal
                )
        }
    }
}

/// The answer to a `tx` query for a transaction in `state`: an error if the chain
/// never saw it or refused it, `None` while it waits for a block.
fn tx_response(
    hash: &CryptoHash,
    state: Option<TxState>,
) -> Result<Option<RpcTransactionResponse>, RpcError> {
    match state {
        None => Err(RpcTransactionError::UnknownTransaction {
            requested_transaction_hash: *hash,
        }
        .into()),
        Some(TxState::Rejected(error)) => Err(tx_error(error)),
        Some(TxState::Pending) => Ok(None),
        Some(TxState::Included { outcome, complete }) => Ok(Some(RpcTransactionResponse {
            final_execution_outcome: Some(
                near_primitives::views::FinalExecutionOutcomeViewEnum::FinalExecutionOutcome(
                    *outcome,
                ),
            ),
            final_execution_status: if complete {
                TxExecutionStatus::Final
            } else {
                TxExecutionStatus::IncludedFinal
            },
        })),
    }
}
