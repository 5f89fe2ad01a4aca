//! The id of a stock record (a triple, a presignature, a set of nonce
//! commitments): who owns it, and which of its records it is.
//!
//! The owner is the participant that proposed the record; only the owner consumes
//! it, so two proposers never race for one record. On the wire (borsh) and on
//! disk (storage's table keys, the sealing slot) an id is the `u64` it always
//! was: the owner in the top 16 bits, a serial in the 48 below.

use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use threshold::ParticipantId;

/// Bits of an id below its owner.
const SERIAL_BITS: u32 = 48;
const SERIAL_MASK: u64 = (1 << SERIAL_BITS) - 1;

/// A stock record's id: its owner and a serial (see the module docs).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct RecordId(u64);

impl RecordId {
    /// The id of `owner`'s record `serial` (its low 48 bits: the rest is the
    /// owner's). Participant ids above 65535 do not fit and are refused loudly:
    /// the contract assigns ids one by one, so no network gets near that.
    pub fn new(owner: ParticipantId, serial: u64) -> Self {
        let owner = u16::try_from(owner.0).expect("participant ids fit in 16 bits");
        RecordId((u64::from(owner) << SERIAL_BITS) | (serial & SERIAL_MASK))
    }

    /// The participant that proposed the record and alone may consume it.
    pub fn owner(self) -> ParticipantId {
        ParticipantId((self.0 >> SERIAL_BITS) as u32)
    }

    /// The record's serial among its owner's.
    pub fn serial(self) -> u64 {
        self.0 & SERIAL_MASK
    }

    /// The id as stored and sent: storage's table key and sealing slot.
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// An id as stored and sent (see [`RecordId::to_u64`]).
    pub const fn from_u64(raw: u64) -> Self {
        RecordId(raw)
    }
}

/// `owner:serial`, the serial in hex (12 digits): ids in logs and errors say whose
/// record they are at a glance.
impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:012x}", self.owner().0, self.serial())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_owner_and_serial_in_the_old_u64() {
        let id = RecordId::new(ParticipantId(3), 0xabc);
        assert_eq!(id.owner(), ParticipantId(3));
        assert_eq!(id.serial(), 0xabc);
        assert_eq!(id.to_u64(), (3 << 48) | 0xabc);
        assert_eq!(RecordId::from_u64(id.to_u64()), id);
        // A serial's bits above 48 are the owner's, and never leak into it.
        assert_eq!(
            RecordId::new(ParticipantId(1), u64::MAX).owner(),
            ParticipantId(1)
        );
        assert_eq!(id.to_string(), "3:000000000abc");
    }

    #[test]
    fn borsh_writes_the_bare_u64() {
        let id = RecordId::new(ParticipantId(2), 7);
        assert_eq!(
            borsh::to_vec(&id).unwrap(),
            borsh::to_vec(&id.to_u64()).unwrap()
        );
        assert_eq!(
            borsh::from_slice::<RecordId>(&borsh::to_vec(&id).unwrap()).unwrap(),
            id
        );
    }
}
