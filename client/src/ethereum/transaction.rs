//! `chainsig eth send`: an EIP-1559 transaction from the derived address, its signing
//! hash signed by the network, the signed transaction broadcast and its receipt
//! awaited.

use super::rpc::{CallRequest, EthRpc, Receipt};
use super::{address, checksummed, describe_wei};
use crate::ecdsa::{self, EcdsaKey};
use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use alloy_consensus::{SignableTransaction, Signed, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use primitives::EcdsaSignature;
use serde::Serialize;
use std::time::Duration;

/// What to send. Fees and the gas limit left unset are asked of the node.
#[derive(Clone, Debug, Default)]
pub struct EthSend {
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
    pub gas_limit: Option<u64>,
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
}

/// A sent transaction and what its receipt says. Amounts in wei are decimal text
/// (JSON numbers lose precision past 2⁵³).
#[derive(Clone, Debug, Serialize)]
pub struct EthSent {
    pub from: String,
    pub to: String,
    pub value_wei: String,
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_limit: u64,
    pub max_fee_per_gas: String,
    pub max_priority_fee_per_gas: String,
    pub hash: B256,
    pub raw_transaction: String,
    pub block_number: u64,
    /// 1: executed; 0: reverted.
    pub status: u64,
    pub gas_used: u64,
    pub effective_gas_price: String,
    pub fee_wei: String,
}

/// Sends `request` from the address of `near`'s account and `path`; waits up to
/// `receipt_limit` for the receipt.
pub async fn send(
    near: &Near,
    rpc: &EthRpc,
    path: &str,
    request: &EthSend,
    receipt_limit: Duration,
    progress: &Progress,
) -> Result<EthSent> {
    let key = EcdsaKey::fetch(near, &near.account(), path, ecdsa::DOMAIN).await?;
    let from = address(&key);
    progress.step(format_args!("sending from {}", checksummed(&from)));
    let tx = prepare(rpc, from, request).await?;
    progress.step(format_args!(
        "transaction: chain {}, nonce {}, gas limit {}, max fee {} wei/gas (priority {})",
        tx.chain_id, tx.nonce, tx.gas_limit, tx.max_fee_per_gas, tx.max_priority_fee_per_gas
    ));
    let signature = key.sign(near, payload(&tx), progress).await?;
    let signed = assemble(tx, &signature)?;
    progress.step(format_args!("broadcasting {}", signed.hash()));
    relay(rpc, signed, from, receipt_limit, progress).await
}

/// What the network signs for `tx`: the keccak-256 of its EIP-1559 signing bytes.
pub fn payload(tx: &TxEip1559) -> [u8; 32] {
    tx.signature_hash().0
}

/// Broadcasts a signed transaction and waits up to `receipt_limit` for its receipt.
pub async fn relay(
    rpc: &EthRpc,
    signed: Signed<TxEip1559>,
    from: Address,
    receipt_limit: Duration,
    progress: &Progress,
) -> Result<EthSent> {
    let raw = signed.encoded_2718();
    let hash = rpc.send_raw_transaction(&raw).await?;
    if hash != *signed.hash() {
        return Err(Error::ForeignRpc {
            chain: "Ethereum",
            method: "eth_sendRawTransaction".into(),
            reason: format!("the node names it {hash}, not {}", signed.hash()),
        });
    }
    progress.step("waiting for the receipt");
    let receipt = rpc.wait_for_receipt(hash, receipt_limit).await?;
    Ok(report(&signed, from, raw, &receipt))
}

/// Fills in chain id, nonce, fees and gas limit from the node, after checking that
/// `from` can pay for the value and the worst-case fee.
pub async fn prepare(rpc: &EthRpc, from: Address, request: &EthSend) -> Result<TxEip1559> {
    let balance = rpc.balance(from).await?;
    let short = |need: U256| Error::InsufficientFunds {
        chain: "Ethereum",
        address: checksummed(&from),
        have: describe_wei(balance),
        need: describe_wei(need),
    };
    if balance < request.value {
        return Err(short(request.value));
    }
    let (max_fee_per_gas, max_priority_fee_per_gas) = fees(rpc, request).await?;
    let gas_limit = match request.gas_limit {
        Some(limit) => limit,
        None => rpc.estimate_gas(&call_of(from, request)).await?,
    };
    let need = request.value + U256::from(gas_limit) * U256::from(max_fee_per_gas);
    if balance < need {
        return Err(short(need));
    }
    Ok(TxEip1559 {
        chain_id: rpc.chain_id().await?,
        nonce: rpc.nonce(from).await?,
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        to: TxKind::Call(request.to),
        value: request.value,
        access_list: Default::default(),
        input: request.data.clone(),
    })
}

/// The fee caps: as given, or the node's suggested tip and twice the latest base
/// fee plus the tip (room for the base fee to rise for a few blocks, as wallets do).
async fn fees(rpc: &EthRpc, request: &EthSend) -> Result<(u128, u128)> {
    let tip = match request.max_priority_fee_per_gas {
        Some(tip) => tip,
        None => rpc.max_priority_fee().await?,
    };
    let max_fee = match request.max_fee_per_gas {
        Some(max) => max,
        None => rpc.base_fee().await?.saturating_mul(2).saturating_add(tip),
    };
    let tip = match request.max_priority_fee_per_gas {
        // A suggested tip above a given cap would only be refused: lower it.
        None => tip.min(max_fee),
        Some(tip) if tip > max_fee => {
            return Err(Error::invalid(
                "fees",
                format!("the priority fee {tip} exceeds the max fee {max_fee} (wei per gas)"),
            ))
        }
        Some(tip) => tip,
    };
    Ok((max_fee, tip))
}

fn call_of(from: Address, request: &EthSend) -> CallRequest {
    CallRequest {
        from: Some(from),
        to: Some(request.to),
        value: Some(request.value),
        data: (!request.data.is_empty()).then(|| request.data.clone()),
    }
}

/// The signed transaction: r = x(big_r), s, yParity = recovery id.
pub fn assemble(tx: TxEip1559, signature: &EcdsaSignature) -> Result<Signed<TxEip1559>> {
    Ok(tx.into_signed(to_alloy(signature)?))
}

/// The network's signature in alloy's form.
pub fn to_alloy(signature: &EcdsaSignature) -> Result<Signature> {
    let rs = ecdsa::compact(signature)?;
    Ok(Signature::new(
        U256::from_be_slice(&rs[..32]),
        U256::from_be_slice(&rs[32..]),
        signature.recovery_id == 1,
    ))
}

fn report(signed: &Signed<TxEip1559>, from: Address, raw: Vec<u8>, receipt: &Receipt) -> EthSent {
    let tx = signed.tx();
    EthSent {
        from: checksummed(&from),
        to: tx.to.to().map(checksummed).unwrap_or_default(),
        value_wei: tx.value.to_string(),
        chain_id: tx.chain_id,
        nonce: tx.nonce,
        gas_limit: tx.gas_limit,
        max_fee_per_gas: tx.max_fee_per_gas.to_string(),
        max_priority_fee_per_gas: tx.max_priority_fee_per_gas.to_string(),
        hash: *signed.hash(),
        raw_transaction: format!("0x{}", hex::encode(raw)),
        block_number: receipt.block_number.to(),
        status: receipt.status.to(),
        gas_used: receipt.gas_used.to(),
        effective_gas_price: receipt.effective_gas_price.to_string(),
        fee_wei: receipt.fee().to_string(),
    }
}

impl std::fmt::Display for EthSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = if self.status == 1 {
            "success"
        } else {
            "REVERTED"
        };
        writeln!(f, "transaction:  {}", self.hash)?;
        writeln!(
            f,
            "status:       {} ({outcome}) in block {}",
            self.status, self.block_number
        )?;
        writeln!(f, "from:         {} (nonce {})", self.from, self.nonce)?;
        writeln!(f, "to:           {}", self.to)?;
        writeln!(f, "value:        {} wei", self.value_wei)?;
        writeln!(f, "gas used:     {} of {}", self.gas_used, self.gas_limit)?;
        write!(
            f,
            "fee:          {} wei ({} wei/gas)",
            self.fee_wei, self.effective_gas_price
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::testing::LocalKey;
    use alloy_consensus::TxEnvelope;
    use alloy_eips::eip2718::Decodable2718;
    use alloy_primitives::keccak256;

    fn transfer() -> TxEip1559 {
        TxEip1559 {
            chain_id: 31337,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(0xde)),
            value: U256::from(123_456_789u64),
            access_list: Default::default(),
            input: Bytes::new(),
        }
    }

    #[test]
    fn signed_transactions_decode_and_recover_to_the_derived_address() {
        for seed in 1..=8 {
            let local = LocalKey::new(seed);
            let tx = transfer();
            let hash = tx.signature_hash();
            assert_eq!(tx.encoded_for_signing()[0], 2, "type byte, then RLP");

            let signature = local.sign(hash.0);
            let signed = assemble(tx.clone(), &signature).unwrap();
            let raw = signed.encoded_2718();
            assert_eq!(raw[0], 2, "an EIP-1559 envelope");
            assert_eq!(keccak256(&raw), *signed.hash());

            let decoded = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
            let TxEnvelope::Eip1559(decoded) = decoded else {
                panic!("decoded as another type");
            };
            assert_eq!(decoded.tx(), &tx);
            assert_eq!(decoded.signature().v(), signature.recovery_id == 1);
            // Recover the sender from the decoded signature, as a node does.
            let sig = decoded.signature();
            let mut rs = [0u8; 64];
            rs[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
            rs[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
            let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(
                &decoded.signature_hash().0,
                &k256::ecdsa::Signature::from_slice(&rs).unwrap(),
                k256::ecdsa::RecoveryId::new(sig.v(), false),
            )
            .unwrap();
            assert_eq!(recovered.as_affine(), &local.key.point);
        }
    }
}
