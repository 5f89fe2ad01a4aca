//! The protocol state in a storage slot of its own, read on first use and written
//! back only when a call changed it.
//!
//! The contract's root (config, counters, collection prefixes) is read and written
//! by every call. The protocol state (participants, keys, key events, votes) is far
//! larger and changes only on governance calls, so keeping it in the root would
//! make every `sign` and every yield callback pay for rewriting it.

use crate::state::ProtocolContractState;
use borsh::io::{Read, Result as IoResult, Write};
use near_sdk::borsh::{self, BorshDeserialize, BorshSerialize};
use near_sdk::env;
use std::cell::OnceCell;
use std::ops::{Deref, DerefMut};

/// The storage key of the protocol state.
const KEY: &[u8] = b"protocol";

pub struct ProtocolSlot {
    value: OnceCell<ProtocolContractState>,
    /// Changed by this call: written back when the root is.
    dirty: bool,
}

impl ProtocolSlot {
    /// A new state, to be stored with the root.
    pub fn new(state: ProtocolContractState) -> Self {
        ProtocolSlot {
            value: OnceCell::from(state),
            dirty: true,
        }
    }

    /// What an account without state shows: `NotInitialized`, never stored.
    pub fn not_initialized() -> Self {
        ProtocolSlot {
            value: OnceCell::from(ProtocolContractState::NotInitialized),
            dirty: false,
        }
    }

    fn load() -> ProtocolContractState {
        env::storage_read(KEY)
            .and_then(|bytes| ProtocolContractState::try_from_slice(&bytes).ok())
            .unwrap_or_else(|| env::panic_str("the protocol state is missing or corrupt"))
    }
}

impl Deref for ProtocolSlot {
    type Target = ProtocolContractState;

    fn deref(&self) -> &ProtocolContractState {
        self.value.get_or_init(Self::load)
    }
}

impl DerefMut for ProtocolSlot {
    fn deref_mut(&mut self) -> &mut ProtocolContractState {
        self.value.get_or_init(Self::load);
        self.dirty = true;
        self.value
            .get_mut()
            .unwrap_or_else(|| env::panic_str("loaded above"))
    }
}

/// Takes no bytes of the root: writing the root writes the slot, if changed.
impl BorshSerialize for ProtocolSlot {
    fn serialize<W: Write>(&self, _root: &mut W) -> IoResult<()> {
        if let (true, Some(state)) = (self.dirty, self.value.get()) {
            env::storage_write(KEY, &borsh::to_vec(state)?);
        }
        Ok(())
    }
}

impl BorshDeserialize for ProtocolSlot {
    fn deserialize_reader<R: Read>(_root: &mut R) -> IoResult<Self> {
        Ok(ProtocolSlot {
            value: OnceCell::new(),
            dirty: false,
        })
    }
}
