//! NEAR JSON-RPC: request parsing, method dispatch and NEAR's error shapes, using
//! the `near-jsonrpc-primitives` and `near-primitives` view types so that real
//! clients work unchanged.

use crate::chain::{Block, Chain, TxState};
use crate::node::Shared;
use crate::runtime::ViewError;
use near_jsonrpc_primitives::errors::RpcError;
use near_jsonrpc_primitives::message::{self, Message};
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError, RpcQueryResponse};
use near_primitives::account::Account;
use near_primitives::hash::CryptoHash;
use near_primitives::state_record::StateRecord;
use near_primitives::types::{AccountId, Balance, BlockId, BlockReference};
use near_primitives::views::{
    AccessKeyInfoView, AccessKeyList, BlockHeaderView, BlockView, CallResult, ChunkHeaderView,
    ChunkView, ContractCodeView, QueryRequest, StateItem, TxExecutionStatus, ViewStateResult,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use tx::{decode_tx, signed_tx_param, tx_error, tx_status_params, wait_tx};

mod tx;

/// Answers one HTTP request body with a JSON-RPC response body.
pub async fn handle_body(shared: &Arc<Shared>, body: &[u8]) -> Vec<u8> {
    let reply = match message::from_slice(body) {
        Ok(Message::Request(request)) => {
            match dispatch(shared, &request.method, request.params.clone()).await {
                Ok(value) => request.reply(value),
                Err(error) => request.error(error),
            }
        }
        Ok(_) => Message::error(RpcError::parse_error(
            "JSON RPC Request format was expected".to_owned(),
        )),
        Err(broken) => broken.reply(),
    };
    reply.into()
}

fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::parse_error(format!("Failed parsing args: {e}")))
}

fn to_value<T: serde::Serialize>(value: T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| RpcError::serialization_error(e.to_string()))
}

/// Positional (`[a, b]`) or named parameters, as nearcore accepts for old methods.
fn first_param(params: &Value) -> Option<&Value> {
    match params {
        Value::Array(items) => items.first(),
        _ => None,
    }
}

async fn dispatch(shared: &Arc<Shared>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        "status" => status(shared),
        "health" => Ok(Value::Null),
        "block" => block(shared, params),
        "chunk" => chunk(shared, params),
        "gas_price" => gas_price(shared, params),
        "EXPERIMENTAL_protocol_config" => protocol_config(shared, params),
        "query" => query(shared, params),
        "broadcast_tx_async" => {
            let tx = signed_tx_param(&params)?;
            let hash = shared.submit(tx).map_err(tx_error)?;
            to_value(hash)
        }
        "broadcast_tx_commit" => {
            let tx = signed_tx_param(&params)?;
            let hash = shared.submit(tx).map_err(tx_error)?;
            let response = wait_tx(shared, hash, TxExecutionStatus::Executed).await?;
            let outcome = response
                .final_execution_outcome
                .expect("executed responses carry the outcome");
            to_value(outcome.into_outcome())
        }
        "send_tx" => {
            #[derive(serde::Deserialize)]
            struct SendTx {
                signed_tx_base64: String,
                #[serde(default)]
                wait_until: TxExecutionStatus,
            }
            let request: SendTx = parse(params)?;
            let tx = decode_tx(&request.signed_tx_base64)?;
            let hash = shared.submit(tx).map_err(tx_error)?;
            to_value(wait_tx(shared, hash, request.wait_until).await?)
        }
        "tx" | "tx_status" | "EXPERIMENTAL_tx_status" => {
            let (hash, wait_until) = tx_status_params(params)?;
            to_value(wait_tx(shared, hash, wait_until).await?)
        }
        "sandbox_patch_state" => {
            #[derive(serde::Deserialize)]
            struct Patch {
                records: Vec<StateRecord>,
            }
            let patch: Patch = parse(params)?;
            shared.with_chain(|chain| patch_state(chain, patch.records))?;
            Ok(json!({}))
        }
        "sandbox_fast_forward" => {
            #[derive(serde::Deserialize)]
            struct FastForward {
                delta_height: u64,
            }
            let request: FastForward = parse(params)?;
            shared.fast_forward(request.delta_height).await.map_err(|e| {
                RpcError::from(
                    near_jsonrpc_primitives::types::sandbox::RpcSandboxFastForwardError::InternalError {
                        error_message: e.to_string(),
                    },
                )
            })?;
            Ok(json!({}))
        }
        other => Err(RpcError::method_not_found(other.to_owned())),
    }
}

// -------------------------------------------------------------------- blocks

fn status(shared: &Arc<Shared>) -> Result<Value, RpcError> {
    shared.with_chain(|chain| {
        let head = chain.head();
        let genesis = chain.genesis();
        to_value(json!({
            "version": {"version": env!("CARGO_PKG_VERSION"), "build": "devnet", "commit": "", "rustc_version": ""},
            "chain_id": chain.chain_id(),
            "protocol_version": near_primitives::version::PROTOCOL_VERSION,
            "latest_protocol_version": near_primitives::version::PROTOCOL_VERSION,
            "rpc_addr": shared.rpc_addr.to_string(),
            "validators": [{"account_id": shared.validator_account.to_string()}],
            "sync_info": {
                "latest_block_hash": head.hash,
                "latest_block_height": head.height,
                "latest_state_root": CryptoHash::default(),
                "latest_block_time": rfc3339(head.timestamp_ns),
                "syncing": false,
                "earliest_block_hash": genesis.hash,
                "earliest_block_height": genesis.height,
                "earliest_block_time": rfc3339(genesis.timestamp_ns),
                "epoch_id": CryptoHash::default(),
                "epoch_start_height": 0,
            },
            "validator_account_id": shared.validator_account,
            "validator_public_key": shared.validator_key,
            "node_public_key": shared.validator_key,
            "node_key": null,
            "uptime_sec": shared.started.elapsed().as_secs(),
            "genesis_hash": genesis.hash,
            "detailed_debug_status": null,
        }))
    })
}

/// Nanoseconds since the epoch as RFC 3339 (what nearcore's status shows).
fn rfc3339(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = ns % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn find_block<'a>(chain: &'a Chain, reference: &BlockReference) -> Option<&'a Block> {
    match reference {
        BlockReference::BlockId(BlockId::Height(h)) => chain.block_by_height(*h),
        BlockReference::BlockId(BlockId::Hash(h)) => chain.block_by_hash(h),
        _ => Some(chain.head()),
    }
}

fn block_reference(params: Value) -> Result<BlockReference, RpcError> {
    // nearcore also accepts `[block_id]`.
    if let Some(id) = first_param(&params) {
        return Ok(BlockReference::BlockId(parse(id.clone())?));
    }
    parse(params)
}

fn chunk_hash(block: &Block) -> CryptoHash {
    CryptoHash::hash_bytes(&[block.hash.as_bytes().as_slice(), b"chunk"].concat())
}

fn chunk_header(chain: &Chain, block: &Block) -> ChunkHeaderView {
    ChunkHeaderView {
        chunk_hash: chunk_hash(block),
        prev_block_hash: block.prev_hash,
        height_created: block.height,
        height_included: block.height,
        gas_used: near_primitives::types::Gas::from_gas(block.gas_burnt),
        gas_limit: near_primitives::types::Gas::from_gas(1_000_000_000_000_000),
        balance_burnt: Balance::from_yoctonear(block.tokens_burnt),
        ..default_chunk_header(chain)
    }
}

fn default_chunk_header(_chain: &Chain) -> ChunkHeaderView {
    serde_json::from_value(json!({
        "chunk_hash": CryptoHash::default(),
        "prev_block_hash": CryptoHash::default(),
        "outcome_root": CryptoHash::default(),
        "prev_state_root": CryptoHash::default(),
        "encoded_merkle_root": CryptoHash::default(),
        "encoded_length": 0,
        "height_created": 0,
        "height_included": 0,
        "shard_id": 0,
        "gas_used": 0,
        "gas_limit": 0,
        "rent_paid": "0",
        "validator_reward": "0",
        "balance_burnt": "0",
        "outgoing_receipts_root": CryptoHash::default(),
        "tx_root": CryptoHash::default(),
        "validator_proposals": [],
        "signature": near_crypto::Signature::empty(near_crypto::KeyType::ED25519),
    }))
    .expect("a chunk header view from its JSON form")
}

fn block_view(shared: &Shared, chain: &Chain, block: &Block) -> BlockView {
    BlockView {
        author: shared.validator_account.clone(),
        header: BlockHeaderView {
            height: block.height,
            prev_height: block.height.checked_sub(1),
            hash: block.hash,
            prev_hash: block.prev_hash,
            timestamp: block.timestamp_ns,
            timestamp_nanosec: block.timestamp_ns,
            random_value: block.random_value,
            chunk_mask: vec![true],
            chunks_included: 1,
            gas_price: Balance::from_yoctonear(chain.gas_price()),
            block_ordinal: Some(block.height + 1),
            total_supply: Balance::from_yoctonear(0),
            last_final_block: block.hash,
            last_ds_final_block: block.hash,
            latest_protocol_version: near_primitives::version::PROTOCOL_VERSION,
            signature: near_crypto::Signature::empty(near_crypto::KeyType::ED25519),
            ..Default::default()
        },
        chunks: vec![chunk_header(chain, block)],
    }
}

fn unknown_block(reference: impl std::fmt::Debug) -> RpcError {
    RpcError::from(
        near_jsonrpc_primitives::types::blocks::RpcBlockError::UnknownBlock {
            error_message: format!("{reference:?}"),
        },
    )
}

fn block(shared: &Arc<Shared>, params: Value) -> Result<Value, RpcError> {
    let reference = block_reference(params)?;
    shared.with_chain(|chain| {
        let block = find_block(chain, &reference).ok_or_else(|| unknown_block(&reference))?;
        to_value(block_view(shared, chain, block))
    })
}

fn chunk(shared: &Arc<Shared>, params: Value) -> Result<Value, RpcError> {
    let request: near_jsonrpc_primitives::types::chunks::RpcChunkRequest = parse(params)?;
    use near_jsonrpc_primitives::types::chunks::ChunkReference;
    shared.with_chain(|chain| {
        let block = match &request.chunk_reference {
            ChunkReference::BlockShardId { block_id, .. } => {
                find_block(chain, &BlockReference::BlockId(block_id.clone()))
            }
            ChunkReference::ChunkHash { chunk_id } => (0..=chain.head().height)
                .rev()
                .filter_map(|h| chain.block_by_height(h))
                .find(|b| &chunk_hash(b) == chunk_id),
        };
        let block = block.ok_or_else(|| {
            RpcError::from(
                near_jsonrpc_primitives::types::chunks::RpcChunkError::UnknownChunk {
                    chunk_hash: near_primitives::sharding::ChunkHash(CryptoHash::default()),
                },
            )
        })?;
        let transactions = block
            .transactions
            .iter()
            .filter_map(|hash| match chain.tx_state(hash) {
                Some(TxState::Included { outcome, .. }) => Some(outcome.transaction),
                _ => None,
            })
            .collect();
        to_value(ChunkView {
            author: shared.validator_account.clone(),
            header: chunk_header(chain, block),
            transactions,
            receipts: Vec::new(),
        })
    })
}

fn gas_price(shared: &Arc<Shared>, params: Value) -> Result<Value, RpcError> {
    let block_id: Option<BlockId> = match first_param(&params) {
        Some(value) => parse(value.clone())?,
        None if params.is_null() => None,
        None => parse::<Option<BlockId>>(params.get("block_id").cloned().unwrap_or(Value::Null))?,
    };
    shared.with_chain(|chain| {
        if let Some(id) = &block_id {
            find_block(chain, &BlockReference::BlockId(id.clone())).ok_or_else(|| {
                RpcError::from(
                    near_jsonrpc_primitives::types::gas_price::RpcGasPriceError::UnknownBlock {
                        error_message: format!("{id:?}"),
                    },
                )
            })?;
        }
        to_value(json!({ "gas_price": Balance::from_yoctonear(chain.gas_price()) }))
    })
}

/// nearcore's protocol config view: our runtime config (the latest protocol's) and
/// the genesis parameters a one-validator, one-shard chain has.
fn protocol_config(shared: &Arc<Shared>, params: Value) -> Result<Value, RpcError> {
    let reference: BlockReference = parse(params)?;
    shared.with_chain(|chain| {
        find_block(chain, &reference).ok_or_else(|| {
            RpcError::from(
                near_jsonrpc_primitives::types::config::RpcProtocolConfigError::UnknownBlock {
                    error_message: format!("{reference:?}"),
                },
            )
        })?;
        let config = chain.runtime().config.as_ref().clone();
        let runtime_config = near_parameters::view::RuntimeConfigView::from(config);
        let gas_price = Balance::from_yoctonear(chain.gas_price());
        to_value(json!({
            "protocol_version": near_primitives::version::PROTOCOL_VERSION,
            "genesis_time": rfc3339(chain.genesis().timestamp_ns),
            "chain_id": chain.chain_id(),
            "genesis_height": chain.genesis().height,
            "num_block_producer_seats": 1,
            "dynamic_resharding": false,
            "protocol_upgrade_stake_threshold": [4, 5],
            "epoch_length": 43_200,
            "gas_limit": 1_000_000_000_000_000u64,
            "min_gas_price": gas_price,
            "max_gas_price": gas_price,
            "block_producer_kickout_threshold": 0,
            "chunk_producer_kickout_threshold": 0,
            "chunk_validator_only_kickout_threshold": 0,
            "target_validator_mandates_per_shard": 1,
            "online_min_threshold": [9, 10],
            "online_max_threshold": [99, 100],
            "gas_price_adjustment_rate": [0, 1],
            "runtime_config": runtime_config,
            "transaction_validity_period": crate::chain::TRANSACTION_VALIDITY_BLOCKS,
            "protocol_reward_rate": [0, 1],
            "max_inflation_rate": [0, 1],
            "num_blocks_per_year": 31_536_000,
            "protocol_treasury_account": shared.validator_account,
            "fishermen_threshold": "0",
            "minimum_stake_divisor": 10,
            "max_kickout_stake_perc": 0,
            "minimum_stake_ratio": [1, 6250],
            "shuffle_shard_assignment_for_chunk_producers": false,
            "minimum_validators_per_shard": 1,
            "shard_layout": near_primitives::shard_layout::ShardLayout::single_shard(),
        }))
    })
}

// -------------------------------------------------------------------- query

fn query(shared: &Arc<Shared>, params: Value) -> Result<Value, RpcError> {
    let request: near_jsonrpc_primitives::types::query::RpcQueryRequest = parse(params)?;
    let result = shared.with_chain(|chain| {
        let block = find_block(chain, &request.block_reference).ok_or_else(|| {
            RpcQueryError::UnknownBlock {
                block_reference: request.block_reference.clone(),
            }
        })?;
        let (block_height, block_hash) = (block.height, block.hash);
        let unknown_account = |id: &AccountId| RpcQueryError::UnknownAccount {
            requested_account_id: id.clone(),
            block_height,
            block_hash,
        };
        let kind = match &request.request {
            QueryRequest::ViewAccount { account_id } => {
                let account = chain
                    .store
                    .account(account_id)
                    .ok_or_else(|| unknown_account(account_id))?;
                QueryResponseKind::ViewAccount(account.into())
            }
            QueryRequest::ViewCode { account_id } => {
                let account = chain
                    .store
                    .account(account_id)
                    .ok_or_else(|| unknown_account(account_id))?;
                let code = account.local_contract_hash().and_then(|hash| {
                    chain
                        .store
                        .code_bytes(&hash)
                        .map(|code| (hash, code.clone()))
                });
                let (hash, code) = code.ok_or_else(|| RpcQueryError::NoContractCode {
                    contract_account_id: account_id.clone(),
                    block_height,
                    block_hash,
                })?;
                QueryResponseKind::ViewCode(ContractCodeView { code, hash })
            }
            QueryRequest::ViewState {
                account_id, prefix, ..
            } => {
                chain
                    .store
                    .account(account_id)
                    .ok_or_else(|| unknown_account(account_id))?;
                let prefix: &[u8] = prefix.as_ref();
                let values = chain
                    .store
                    .contract_data(account_id, prefix)
                    .into_iter()
                    .map(|(key, value)| StateItem {
                        key: key.into(),
                        value: value.into(),
                    })
                    .collect();
                QueryResponseKind::ViewState(ViewStateResult {
                    values,
                    proof: Vec::new(),
                    last_key: None,
                })
            }
            QueryRequest::ViewAccessKey {
                account_id,
                public_key,
            } => {
                let key = chain
                    .store
                    .access_key(account_id, public_key)
                    .ok_or_else(|| RpcQueryError::UnknownAccessKey {
                        public_key: public_key.clone(),
                        block_height,
                        block_hash,
                    })?;
                QueryResponseKind::AccessKey(key.into())
            }
            QueryRequest::ViewAccessKeyList { account_id, .. } => {
                chain
                    .store
                    .account(account_id)
                    .ok_or_else(|| unknown_account(account_id))?;
                let keys = chain
                    .store
                    .access_keys(account_id)
                    .into_iter()
                    .map(|(pk, key)| AccessKeyInfoView::new(pk, key.into()))
                    .collect();
                QueryResponseKind::AccessKeyList(AccessKeyList {
                    keys,
                    last_key: None,
                })
            }
            QueryRequest::CallFunction {
                account_id,
                method_name,
                args,
            } => match chain.view_call(account_id, method_name, args.as_ref()) {
                Ok((result, logs)) => QueryResponseKind::CallResult(CallResult { result, logs }),
                Err(ViewError::UnknownAccount) => return Err(unknown_account(account_id)),
                Err(ViewError::NoCode) => {
                    return Err(RpcQueryError::NoContractCode {
                        contract_account_id: account_id.clone(),
                        block_height,
                        block_hash,
                    })
                }
                Err(ViewError::Execution(vm_error, _logs)) => {
                    return Err(RpcQueryError::ContractExecutionError {
                        vm_error: vm_error.clone(),
                        error: near_primitives::errors::FunctionCallError::ExecutionError(vm_error),
                        block_height,
                        block_hash,
                    })
                }
            },
            other => {
                return Err(RpcQueryError::InternalError {
                    error_message: format!("the devnet does not support this query: {other:?}"),
                })
            }
        };
        Ok(RpcQueryResponse {
            kind,
            block_height,
            block_hash,
        })
    });
    // nearcore answers these two errors as results with an `error` field, and clients
    // (near-jsonrpc-client, near-api-js) expect exactly that.
    match result {
        Ok(response) => to_value(response),
        Err(RpcQueryError::ContractExecutionError {
            vm_error,
            block_height,
            block_hash,
            ..
        }) => Ok(json!({
            "error": vm_error, "logs": [], "block_height": block_height, "block_hash": block_hash,
        })),
        Err(RpcQueryError::UnknownAccessKey {
            public_key,
            block_height,
            block_hash,
        }) => Ok(json!({
            "error": format!("access key {public_key} does not exist while viewing"),
            "logs": [], "block_height": block_height, "block_hash": block_hash,
        })),
        Err(error) => Err(error.into()),
    }
}

// -------------------------------------------------------------------- sandbox

fn patch_state(chain: &mut Chain, records: Vec<StateRecord>) -> Result<(), RpcError> {
    for record in records {
        match record {
            StateRecord::Account {
                account_id,
                account,
            } => chain.patch_account(&account_id, &account),
            StateRecord::AccessKey {
                account_id,
                public_key,
                access_key,
            } => {
                let public_key = match public_key {
                    near_crypto::PublicKeyHandle::ED25519(key) => {
                        near_crypto::PublicKey::ED25519(key)
                    }
                    near_crypto::PublicKeyHandle::SECP256K1(key) => {
                        near_crypto::PublicKey::SECP256K1(key)
                    }
                    _ => return Err(RpcError::parse_error(
                        "sandbox_patch_state: only ed25519 and secp256k1 access keys are supported"
                            .to_owned(),
                    )),
                };
                chain
                    .store
                    .set_access_key(&account_id, &public_key, &access_key);
            }
            StateRecord::Contract { account_id, code } => {
                let hash = chain.store.put_code(code);
                let mut account: Account = chain.store.account(&account_id).ok_or_else(|| {
                    RpcError::parse_error(format!("sandbox_patch_state: account {account_id} does not exist; patch the Account record first"))
                })?;
                account
                    .set_contract(near_primitives::account::AccountContract::Local(hash))
                    .map_err(|e| RpcError::parse_error(format!("sandbox_patch_state: {e:?}")))?;
                chain.store.set_account(&account_id, &account);
            }
            StateRecord::Data {
                account_id,
                data_key,
                value,
            } => {
                let key: Vec<u8> = data_key.into();
                chain.store.set(
                    crate::store::Key::new(&account_id, crate::store::Column::ContractData, key),
                    value.into(),
                );
            }
            other => {
                return Err(RpcError::parse_error(format!(
                    "sandbox_patch_state: the devnet does not patch {other}"
                )))
            }
        }
    }
    chain.store.commit();
    Ok(())
}
