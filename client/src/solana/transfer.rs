//! `chainsig sol send`: a System transfer from the derived address (which also pays
//! the fee), its message signed by the network in the Ed25519 domain, the signed
//! transaction broadcast and its confirmation awaited.
//!
//! The signing step is a [`MessageSigner`]: the network through the contract in
//! production ([`NetworkSigner`]), anything holding the derived key in tests.

use super::rpc::{SignatureStatus, SolRpc};
use super::{address, describe_lamports, Pubkey};
use crate::eddsa::{self, Ed25519Key};
use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use primitives::ed25519::Ed25519PublicKey;
use primitives::{Ed25519Signature, EddsaPayload};
use serde::Serialize;
use solana_hash::Hash;
use solana_message::Message;
use solana_signature::Signature;
use solana_transaction::Transaction;
use std::time::Duration;

const CHAIN: &str = "Solana";
/// The largest transaction Solana accepts (an IPv6 packet less its headers).
pub const PACKET_DATA_SIZE: usize = 1232;

/// What to send.
#[derive(Clone, Debug)]
pub struct SolSend {
    pub to: Pubkey,
    pub lamports: u64,
}

/// Signs a Solana message (its serialized bytes) with one Ed25519 key.
// Used generically, never as `dyn`, and awaited where it is called: the future
// needs no `Send` bound, which `async fn` in a public trait cannot promise.
#[allow(async_fn_in_trait)]
pub trait MessageSigner {
    /// The key that signs; the transaction is sent from its address.
    fn key(&self) -> &Ed25519PublicKey;

    async fn sign(&self, message: &EddsaPayload, progress: &Progress) -> Result<Ed25519Signature>;
}

/// The MPC network, through the signer contract: the key of the client's account
/// and a path in the Ed25519 domain.
pub struct NetworkSigner<'a> {
    near: &'a Near,
    key: Ed25519Key,
}

impl<'a> NetworkSigner<'a> {
    /// The derived key of `near`'s account and `path` in domain 1, checked against a
    /// local derivation from the contract's root key.
    pub async fn fetch(near: &'a Near, path: &str) -> Result<NetworkSigner<'a>> {
        let key = Ed25519Key::fetch(near, &near.account(), path, eddsa::DOMAIN).await?;
        Ok(NetworkSigner { near, key })
    }
}

impl MessageSigner for NetworkSigner<'_> {
    fn key(&self) -> &Ed25519PublicKey {
        &self.key.key
    }

    async fn sign(&self, message: &EddsaPayload, progress: &Progress) -> Result<Ed25519Signature> {
        self.key.sign(self.near, message.clone(), progress).await
    }
}

/// A transfer ready to sign, and what the node said about the accounts.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub message: Message,
    pub fee: u64,
    /// The sender's and the recipient's balances before.
    pub from_balance: u64,
    pub to_balance: u64,
}

/// A sent transfer and where it landed. Amounts in lamports.
#[derive(Clone, Debug, Serialize)]
pub struct SolSent {
    pub from: String,
    pub to: String,
    pub lamports: u64,
    pub fee: u64,
    pub blockhash: String,
    /// The transaction's id: the sender's signature, base58.
    pub signature: String,
    /// The signed message (the `Eddsa` payload), hex.
    pub message: String,
    /// The wire transaction as sent (`sendTransaction`), base64.
    pub transaction: String,
    pub slot: u64,
    /// `confirmed` or `finalized`; with `err`, the transaction failed.
    pub status: String,
    pub err: Option<serde_json::Value>,
    pub from_balance_before: u64,
    pub from_balance_after: u64,
    pub to_balance_before: u64,
    pub to_balance_after: u64,
}

/// Sends `request` from the Solana address of `near`'s account and `path`, signed
/// by the network; waits up to `limit` for confirmation.
pub async fn send(
    near: &Near,
    rpc: &SolRpc,
    path: &str,
    request: &SolSend,
    limit: Duration,
    progress: &Progress,
) -> Result<SolSent> {
    let signer = NetworkSigner::fetch(near, path).await?;
    send_with(&signer, rpc, request, limit, progress).await
}

/// Sends `request` from `signer`'s address: prepare, sign, check the signature
/// here, assemble, broadcast, confirm.
pub async fn send_with<S: MessageSigner>(
    signer: &S,
    rpc: &SolRpc,
    request: &SolSend,
    limit: Duration,
    progress: &Progress,
) -> Result<SolSent> {
    let from = address(signer.key());
    progress.step(format_args!("sending from {from}"));
    let prepared = prepare(rpc, &from, request).await?;
    let message_payload = payload(&prepared.message)?;
    progress.step(format_args!(
        "message: {} to {}, fee {} lamports, blockhash {} ({} bytes)",
        describe_lamports(request.lamports),
        request.to,
        prepared.fee,
        prepared.message.recent_blockhash,
        message_payload.as_bytes().len()
    ));
    let signature = signer.sign(&message_payload, progress).await?;
    // The network's answer is checked before anything leaves this machine (the
    // contract checked it too, but a broadcast cannot be taken back).
    eddsa::verify(signer.key(), message_payload.as_bytes(), &signature)?;
    let transaction = assemble(prepared.message.clone(), &signature)?;
    progress.step(format_args!("broadcasting {}", transaction.signatures[0]));
    let status = relay(rpc, &transaction, limit, progress).await?;
    report(rpc, request, &prepared, &transaction, status).await
}

/// Reads the balances and blockhash and builds the transfer's message, after
/// checking that the sender can pay the amount and the fee, stays rent-exempt (or
/// empties), and that a new recipient gets at least the rent-exempt minimum: the
/// runtime would refuse each of those, after the signature was spent.
pub async fn prepare(rpc: &SolRpc, from: &Pubkey, request: &SolSend) -> Result<Prepared> {
    let from_balance = rpc.balance(from).await?;
    let short = |need: u64| Error::InsufficientFunds {
        chain: CHAIN,
        address: from.to_string(),
        have: describe_lamports(from_balance),
        need: describe_lamports(need),
    };
    if from_balance < request.lamports {
        return Err(short(request.lamports));
    }
    let blockhash = rpc.latest_blockhash().await?;
    let message = transfer_message(from, &request.to, request.lamports, &blockhash);
    let fee = rpc.fee_for_message(&message.serialize()).await?;
    let need = request
        .lamports
        .checked_add(fee)
        .ok_or_else(|| Error::invalid("--lamports", "the amount plus the fee overflows"))?;
    if from_balance < need {
        return Err(short(need));
    }
    let minimum = rpc.rent_exempt_minimum(0).await?;
    let left = from_balance - need;
    if left > 0 && left < minimum {
        return Err(Error::invalid(
            "--lamports",
            format!(
                "the transfer would leave {from} with {}, below the rent-exempt minimum {}; \
                 send {} lamports (all but the fee) or leave at least the minimum",
                describe_lamports(left),
                describe_lamports(minimum),
                from_balance - fee
            ),
        ));
    }
    let to_balance = if request.to == *from {
        from_balance
    } else {
        rpc.balance(&request.to).await?
    };
    if to_balance == 0 && request.lamports < minimum {
        return Err(Error::invalid(
            "--lamports",
            format!(
                "{} does not exist yet, and a transfer that creates an account must bring at \
                 least the rent-exempt minimum, {}",
                request.to,
                describe_lamports(minimum)
            ),
        ));
    }
    Ok(Prepared {
        message,
        fee,
        from_balance,
        to_balance,
    })
}

/// A legacy message with one System transfer; `from` pays the fee and signs.
pub fn transfer_message(from: &Pubkey, to: &Pubkey, lamports: u64, blockhash: &Hash) -> Message {
    let instruction = solana_system_interface::instruction::transfer(from, to, lamports);
    Message::new_with_blockhash(&[instruction], Some(from), blockhash)
}

/// What the network signs: the serialized message itself (Ed25519 hashes it as part
/// of signing; there is no separate digest).
pub fn payload(message: &Message) -> Result<EddsaPayload> {
    EddsaPayload::new(message.serialize()).map_err(|e| Error::invalid("Solana message", e))
}

/// The signed transaction: the one signature the message needs, the fee payer's.
pub fn assemble(message: Message, signature: &Ed25519Signature) -> Result<Transaction> {
    let wanted = usize::from(message.header.num_required_signatures);
    if wanted != 1 {
        return Err(Error::invalid(
            "Solana message",
            format!("it needs {wanted} signatures; chainsig provides the fee payer's only"),
        ));
    }
    Ok(Transaction {
        signatures: vec![Signature::from(signature.0)],
        message,
    })
}

/// The transaction's wire bytes, as `sendTransaction` takes them.
pub fn wire(transaction: &Transaction) -> Result<Vec<u8>> {
    let bytes = bincode::serialize(transaction)
        .map_err(|e| Error::invalid("Solana transaction", e.to_string()))?;
    if bytes.len() > PACKET_DATA_SIZE {
        return Err(Error::invalid(
            "Solana transaction",
            format!(
                "{} bytes, more than Solana's {PACKET_DATA_SIZE}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Broadcasts a signed transaction and waits up to `limit` for its confirmation.
pub async fn relay(
    rpc: &SolRpc,
    transaction: &Transaction,
    limit: Duration,
    progress: &Progress,
) -> Result<SignatureStatus> {
    let bytes = wire(transaction)?;
    let ours = transaction.signatures[0];
    let named = rpc.send_transaction(&bytes).await?;
    if named != ours {
        return Err(Error::ForeignRpc {
            chain: CHAIN,
            method: "sendTransaction".into(),
            reason: format!("the node names it {named}, not {ours}"),
        });
    }
    progress.step("waiting for confirmation");
    rpc.wait_for_confirmation(&ours, limit).await
}

async fn report(
    rpc: &SolRpc,
    request: &SolSend,
    prepared: &Prepared,
    transaction: &Transaction,
    status: SignatureStatus,
) -> Result<SolSent> {
    let from = transaction.message.account_keys[0];
    let from_balance_after = rpc.balance(&from).await?;
    let to_balance_after = rpc.balance(&request.to).await?;
    let bytes = wire(transaction)?;
    Ok(SolSent {
        from: from.to_string(),
        to: request.to.to_string(),
        lamports: request.lamports,
        fee: prepared.fee,
        blockhash: transaction.message.recent_blockhash.to_string(),
        signature: transaction.signatures[0].to_string(),
        message: hex::encode(transaction.message.serialize()),
        transaction: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
        slot: status.slot,
        status: status
            .confirmation_status
            .unwrap_or_else(|| "finalized".into()),
        err: status.err,
        from_balance_before: prepared.from_balance,
        from_balance_after,
        to_balance_before: prepared.to_balance,
        to_balance_after,
    })
}

impl std::fmt::Display for SolSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.err {
            None => "success".to_string(),
            Some(err) => format!("FAILED: {err}"),
        };
        writeln!(f, "signature:    {}", self.signature)?;
        writeln!(
            f,
            "status:       {} ({outcome}) in slot {}",
            self.status, self.slot
        )?;
        writeln!(f, "from:         {}", self.from)?;
        writeln!(f, "to:           {}", self.to)?;
        writeln!(f, "amount:       {}", describe_lamports(self.lamports))?;
        writeln!(f, "fee:          {} lamports", self.fee)?;
        writeln!(
            f,
            "from balance: {} -> {}",
            describe_lamports(self.from_balance_before),
            describe_lamports(self.from_balance_after)
        )?;
        write!(
            f,
            "to balance:   {} -> {}",
            describe_lamports(self.to_balance_before),
            describe_lamports(self.to_balance_after)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn the_wire_transaction_carries_the_signed_message_and_decodes_with_solanas_types() {
        let secret = SigningKey::from_bytes(&[9; 32]);
        let key = Ed25519PublicKey::from_bytes(secret.verifying_key().to_bytes()).unwrap();
        let from = address(&key);
        let to = Pubkey::new_from_array([7; 32]);
        let blockhash = Hash::new_from_array([3; 32]);
        let message = transfer_message(&from, &to, 1_234_567, &blockhash);

        // One signer (the fee payer, first), the recipient writable, the System
        // program read-only: Solana's layout for a transfer.
        assert_eq!(message.header.num_required_signatures, 1);
        assert_eq!(message.header.num_readonly_unsigned_accounts, 1);
        assert_eq!(message.account_keys[0], from);
        assert_eq!(message.account_keys[1], to);
        assert_eq!(
            message.account_keys[2],
            solana_system_interface::program::ID
        );

        let payload = payload(&message).unwrap();
        assert_eq!(payload.as_bytes(), message.serialize().as_slice());
        let signature = Ed25519Signature(secret.sign(payload.as_bytes()).to_bytes());
        eddsa::verify(&key, payload.as_bytes(), &signature).unwrap();

        let transaction = assemble(message.clone(), &signature).unwrap();
        let bytes = wire(&transaction).unwrap();
        // A short-vec count of 1, the signature, then the message as signed.
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..65], &signature.0);
        assert_eq!(&bytes[65..], payload.as_bytes());
        let decoded: Transaction = bincode::deserialize(&bytes).unwrap();
        assert_eq!(decoded, transaction);
        assert_eq!(decoded.message.recent_blockhash, blockhash);
        assert!(decoded.is_signed());
    }

    #[test]
    fn messages_that_need_other_signers_are_refused() {
        let from = Pubkey::new_from_array([1; 32]);
        let other = Pubkey::new_from_array([2; 32]);
        // `other` transfers too, so it must sign as well.
        let message = Message::new_with_blockhash(
            &[
                solana_system_interface::instruction::transfer(&from, &other, 1),
                solana_system_interface::instruction::transfer(&other, &from, 1),
            ],
            Some(&from),
            &Hash::new_from_array([0; 32]),
        );
        let text = assemble(message, &Ed25519Signature([0; 64]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("needs 2 signatures"), "{text}");
    }
}
