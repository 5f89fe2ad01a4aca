//! Receipts: the unit of execution between blocks, as on NEAR.
//!
//! A transaction becomes one action receipt; executing a receipt may create more
//! (cross-contract calls, callbacks, refunds) and data receipts that carry a
//! function's result to the callbacks waiting on it.

use borsh::{BorshDeserialize, BorshSerialize};
use near_crypto::PublicKey;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::Action;
use near_primitives::types::AccountId;

/// The predecessor of refund receipts: they cost no gas and cannot be refunded again.
pub const SYSTEM_ACCOUNT: &str = "system";

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    pub id: CryptoHash,
    pub predecessor: AccountId,
    pub receiver: AccountId,
    pub body: ReceiptBody,
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum ReceiptBody {
    Action(ActionReceipt),
    Data(DataReceipt),
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct ActionReceipt {
    /// The account that signed the originating transaction: pays for gas, gets gas refunds.
    pub signer: AccountId,
    pub signer_public_key: PublicKey,
    /// The price (yoctoNEAR per gas) at which the gas was bought.
    pub gas_price: u128,
    /// Where this receipt's result goes (callbacks waiting on it).
    pub output_data_receivers: Vec<DataReceiver>,
    /// Results this receipt waits for before it runs.
    pub input_data_ids: Vec<CryptoHash>,
    pub actions: Vec<Action>,
    /// Who gets deposit refunds when this receipt fails (the predecessor unless set).
    pub refund_to: Option<AccountId>,
    /// Whether this is a NEP-519 yield callback (its single input comes from a resume
    /// or a timeout).
    pub is_yield: bool,
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct DataReceiver {
    pub data_id: CryptoHash,
    pub receiver: AccountId,
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct DataReceipt {
    pub data_id: CryptoHash,
    /// `None` delivers a failed promise result.
    pub data: Option<Vec<u8>>,
}

impl Receipt {
    pub fn is_refund(&self) -> bool {
        self.predecessor.as_str() == SYSTEM_ACCOUNT
    }

    /// A refund of `amount` to `receiver`, from the system account, free of gas.
    pub fn refund(
        id: CryptoHash,
        receiver: AccountId,
        amount: u128,
        signer_key: PublicKey,
    ) -> Receipt {
        Receipt {
            id,
            predecessor: SYSTEM_ACCOUNT.parse().expect("valid account id"),
            receiver: receiver.clone(),
            body: ReceiptBody::Action(ActionReceipt {
                signer: receiver,
                signer_public_key: signer_key,
                gas_price: 0,
                output_data_receivers: Vec::new(),
                input_data_ids: Vec::new(),
                actions: vec![Action::Transfer(
                    near_primitives::transaction::TransferAction {
                        deposit: near_primitives::types::Balance::from_yoctonear(amount),
                    },
                )],
                refund_to: None,
                is_yield: false,
            }),
        }
    }
}

/// A deterministic id for the `index`-th receipt created while executing `parent`.
pub fn child_id(parent: &CryptoHash, block_hash: &CryptoHash, index: usize) -> CryptoHash {
    let mut bytes = Vec::with_capacity(72);
    bytes.extend_from_slice(parent.as_bytes());
    bytes.extend_from_slice(block_hash.as_bytes());
    bytes.extend_from_slice(&(index as u64).to_le_bytes());
    CryptoHash::hash_bytes(&bytes)
}
