//! The node's database on a real file: sealed secrets, the wrong key, and the
//! take-before-use rule across a crash (reopen), for each scheme's records.

use mpc_node::ecdsa::Ecdsa;
use mpc_node::eddsa::Eddsa;
use mpc_node::engine::Scheme;
use mpc_node::record_id::RecordId;
use mpc_node::storage::{StorageKey, Store, StoreError};
use primitives::DomainId;
use threshold::eddsa::{self, EddsaKeyShare, EddsaPresignature};
use threshold::local::{self, Schedule};
use threshold::{
    generate_triple, keygen, presign, InstanceId, KeyShare, ParticipantId, Participants,
    Presignature, Triple,
};

const TRIPLES: mpc_node::storage::RecordKind = <Ecdsa as Scheme>::TRIPLES;
const PRESIGNATURES: mpc_node::storage::RecordKind = <Ecdsa as Scheme>::PRESIGNATURES;

// Record ids as the tests write them: owner 0, small serials.
const ID_1: RecordId = RecordId::from_u64(1);
const ID_2: RecordId = RecordId::from_u64(2);
const ID_7: RecordId = RecordId::from_u64(7);
const ID_9: RecordId = RecordId::from_u64(9);

fn run<T>(instances: Vec<threshold::Instance<T>>) -> local::Outcome<T> {
    local::run(instances, &Schedule::default())
}

/// Real protocol outputs for party 0 of a 3-party, threshold-2 network.
fn material() -> (KeyShare, Vec<Triple>, Presignature) {
    let parties = Participants::first(3).unwrap();
    let keys: Vec<KeyShare> = run(parties
        .iter()
        .map(|me| keygen(InstanceId([1; 32]), me, parties.clone(), 2).unwrap())
        .collect())
    .all_done()
    .unwrap();
    let mut triples: Vec<Vec<Triple>> = (0..4u8)
        .map(|k| {
            run(parties
                .iter()
                .map(|me| {
                    generate_triple(InstanceId([10 + k; 32]), me, parties.clone(), 2).unwrap()
                })
                .collect())
            .all_done()
            .unwrap()
        })
        .collect();
    let t1 = triples.remove(1);
    let t0 = triples.remove(0);
    let presignatures: Vec<Presignature> = run(parties
        .iter()
        .zip(t0.into_iter().zip(t1))
        .map(|(me, (a, b))| {
            presign(
                InstanceId([4; 32]),
                me,
                parties.clone(),
                &keys[me.0 as usize],
                a,
                b,
            )
            .unwrap()
        })
        .collect())
    .all_done()
    .unwrap();
    let spare: Vec<Triple> = triples
        .into_iter()
        .map(|mut party_triples| party_triples.remove(0))
        .collect();
    (
        keys.into_iter().next().unwrap(),
        spare,
        presignatures.into_iter().next().unwrap(),
    )
}

#[test]
fn secrets_round_trip_sealed_and_the_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let key = StorageKey::generate();
    let (share, _, _) = material();
    let d0 = DomainId(0);
    {
        let store = Store::open(&path, &key).unwrap();
        assert!(store.key_share_at::<KeyShare>(d0, 3).unwrap().is_none());
        store.put_key_share(d0, 3, 7, &share).unwrap();
    }
    let store = Store::open(&path, &key).unwrap();
    assert_eq!(
        store.key_share_at::<KeyShare>(d0, 3).unwrap(),
        Some((7, share.clone()))
    );
    assert_eq!(store.key_share_at::<KeyShare>(d0, 2).unwrap(), None);
    assert_eq!(
        store.key_share_at::<KeyShare>(DomainId(1), 3).unwrap(),
        None
    );
    // A share is replaced only by a later key-event attempt's: the same or an
    // earlier attempt's output is refused.
    for attempt in [7, 6] {
        assert!(matches!(
            store.put_key_share(d0, 3, attempt, &share),
            Err(StoreError::KeyShareExists {
                epoch: 3,
                attempt: 7,
                ..
            })
        ));
    }
    let (other, _, _) = material();
    store.put_key_share(d0, 3, 9, &other).unwrap();
    assert_eq!(
        store.key_share_at::<KeyShare>(d0, 3).unwrap(),
        Some((9, other))
    );
    store.put_key_share(d0, 3, 10, &share).unwrap();

    // Shares per epoch are listed and deleted one by one, per domain.
    store.put_key_share(d0, 1, 2, &share).unwrap();
    store.put_key_share(DomainId(1), 2, 4, &share).unwrap();
    assert_eq!(store.key_share_epochs(d0).unwrap(), vec![1, 3]);
    assert_eq!(store.key_share_epochs(DomainId(1)).unwrap(), vec![2]);
    assert!(store.delete_key_share(d0, 1).unwrap());
    assert!(!store.delete_key_share(d0, 1).unwrap());
    assert_eq!(store.key_share_epochs(d0).unwrap(), vec![3]);
    assert_eq!(store.key_share_at::<KeyShare>(d0, 1).unwrap(), None);
    assert!(store.delete_key_share(DomainId(1), 2).unwrap());
    drop(store);

    // The share's bytes are not in the file in the clear.
    let file = std::fs::read(&path).unwrap();
    let secret = &share.to_bytes()[..];
    assert!(!file.windows(secret.len()).any(|w| w == secret));

    let wrong = StorageKey::generate();
    assert!(matches!(
        Store::open(&path, &wrong),
        Err(StoreError::WrongKey)
    ));
    assert!(StorageKey::from_hex("zz").is_err());
    assert_eq!(
        StorageKey::from_hex(&format!(" {} \n", key.to_hex()))
            .unwrap()
            .to_hex(),
        key.to_hex()
    );
}

#[test]
fn taken_records_are_gone_for_good_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let key = StorageKey::generate();
    let (_, mut triples, presignature) = material();
    let expected_r = presignature.big_r;
    {
        let store = Store::open(&path, &key).unwrap();
        store
            .add_record(PRESIGNATURES, ID_7, 0, &presignature)
            .unwrap();
        store
            .add_record(TRIPLES, ID_1, 0, &triples.remove(0))
            .unwrap();
        assert_eq!(store.record_ids(PRESIGNATURES).unwrap(), vec![ID_7]);
        assert_eq!(store.record_ids(TRIPLES).unwrap(), vec![ID_1]);

        let taken = store
            .take_record::<Presignature>(PRESIGNATURES, ID_7)
            .unwrap()
            .expect("stored");
        assert_eq!(taken.1.big_r, expected_r);
        // The process dies here, before using it: nothing else is written.
    }
    let store = Store::open(&path, &key).unwrap();
    assert_eq!(
        store
            .take_record::<Presignature>(PRESIGNATURES, ID_7)
            .unwrap()
            .map(|(_, p)| p.big_r),
        None,
        "never handed out twice"
    );
    assert!(store.record_ids(PRESIGNATURES).unwrap().is_empty());
    // Its id is retired: storing something under it again is refused.
    assert!(matches!(
        store.add_record(PRESIGNATURES, ID_7, 0, &presignature),
        Err(StoreError::DuplicateId {
            kind: "presignature",
            id: ID_7
        })
    ));
    assert!(matches!(
        store.add_record(TRIPLES, ID_1, 0, &triples[0]),
        Err(StoreError::DuplicateId {
            kind: "triple",
            id: ID_1
        })
    ));
    let (epoch, triple) = store
        .take_record::<Triple>(TRIPLES, ID_1)
        .unwrap()
        .expect("still stored");
    assert_eq!((epoch, triple.threshold), (0, 2));
    assert!(store
        .take_record::<Triple>(TRIPLES, ID_1)
        .unwrap()
        .is_none());
}

#[test]
fn records_taken_together_are_retired_in_one_commit_that_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let key = StorageKey::generate();
    let (_, triples, _) = material();
    {
        let store = Store::open(&path, &key).unwrap();
        store.add_record(TRIPLES, ID_1, 3, &triples[0]).unwrap();
        store.add_record(TRIPLES, ID_2, 3, &triples[1]).unwrap();
        let taken = store
            .take_records::<Triple>(TRIPLES, &[ID_2, ID_9, ID_1])
            .unwrap();
        // In the order asked, the id never stored answered with None.
        let answers: Vec<Option<(u64, usize)>> = taken
            .into_iter()
            .map(|record| record.map(|(epoch, t)| (epoch, t.threshold)))
            .collect();
        assert_eq!(answers, vec![Some((3, 2)), None, Some((3, 2))]);
        // The process dies here: nothing else is written.
    }
    let store = Store::open(&path, &key).unwrap();
    assert!(store.record_ids(TRIPLES).unwrap().is_empty());
    for (id, triple) in [(ID_1, &triples[0]), (ID_2, &triples[1])] {
        assert!(
            matches!(
                store.add_record(TRIPLES, id, 3, triple),
                Err(StoreError::DuplicateId { kind: "triple", id: refused }) if refused == id
            ),
            "{id} was retired"
        );
    }
    // Asking for an id that was not there retired nothing (the store knows ids,
    // not contents: any record can go under it).
    store.add_record(TRIPLES, ID_9, 3, &triples[0]).unwrap();
    assert_eq!(store.record_ids(TRIPLES).unwrap(), vec![ID_9]);
}

#[test]
fn records_are_listed_with_their_holders_and_retired_when_the_epoch_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.redb"), &StorageKey::generate()).unwrap();
    let (_, mut triples, presignature) = material();
    let holders: Vec<ParticipantId> = presignature.participants.iter().collect();
    store
        .add_record(TRIPLES, ID_1, 3, &triples.remove(0))
        .unwrap();
    store
        .add_record(TRIPLES, ID_2, 4, &triples.remove(0))
        .unwrap();
    store
        .add_record(PRESIGNATURES, ID_9, 3, &presignature)
        .unwrap();
    let listed = store.records(PRESIGNATURES).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, ID_9);
    assert_eq!(listed[0].holders.epoch, 3);
    assert_eq!(listed[0].holders.participants, holders);

    // Epoch 4 begins: what was made in epoch 3 is retired for good.
    assert_eq!(store.retire_other_epochs(TRIPLES, 4).unwrap(), 1);
    assert_eq!(store.retire_other_epochs(PRESIGNATURES, 4).unwrap(), 1);
    assert_eq!(store.record_ids(TRIPLES).unwrap(), vec![ID_2]);
    assert!(store.record_ids(PRESIGNATURES).unwrap().is_empty());
    assert!(matches!(
        store.add_record(PRESIGNATURES, ID_9, 4, &presignature),
        Err(StoreError::DuplicateId { .. })
    ));
}

/// Real EdDSA outputs for party 0 of a 3-party, threshold-2 network: its key share
/// and its nonce commitments of one presignature among all three.
fn eddsa_material() -> (EddsaKeyShare, EddsaPresignature) {
    let parties = Participants::first(3).unwrap();
    let keys: Vec<EddsaKeyShare> = run(parties
        .iter()
        .map(|me| eddsa::keygen(InstanceId([2; 32]), me, parties.clone(), 2).unwrap())
        .collect())
    .all_done()
    .unwrap();
    let presignatures: Vec<EddsaPresignature> = run(parties
        .iter()
        .map(|me| {
            eddsa::presign(
                InstanceId([5; 32]),
                me,
                parties.clone(),
                &keys[me.0 as usize],
            )
            .unwrap()
        })
        .collect())
    .all_done()
    .unwrap();
    (
        keys.into_iter().next().unwrap(),
        presignatures.into_iter().next().unwrap(),
    )
}

#[test]
fn eddsa_shares_and_presignatures_are_sealed_taken_once_and_kept_apart_from_ecdsa() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let key = StorageKey::generate();
    let (share, presignature) = eddsa_material();
    let (_, _, ecdsa_presignature) = material();
    let d1 = DomainId(1);
    let kind = <Eddsa as Scheme>::PRESIGNATURES;
    assert_eq!(<Eddsa as Scheme>::TRIPLES_PER_PRESIGNATURE, 0);
    let commitments = presignature.commitments.clone();
    let holders: Vec<ParticipantId> = presignature.participants.iter().collect();
    {
        let store = Store::open(&path, &key).unwrap();
        store.put_key_share(d1, 0, 4, &share).unwrap();
        assert!(matches!(
            store.put_key_share(d1, 0, 4, &share),
            Err(StoreError::KeyShareExists { attempt: 4, .. })
        ));
        store.add_record(kind, ID_7, 0, &presignature).unwrap();
        // The same id in ECDSA's table is another record.
        store
            .add_record(PRESIGNATURES, ID_7, 0, &ecdsa_presignature)
            .unwrap();
        let listed = store.records(kind).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id, listed[0].holders.epoch), (ID_7, 0));
        assert_eq!(listed[0].holders.participants, holders);

        let (epoch, taken) = store
            .take_record::<EddsaPresignature>(kind, ID_7)
            .unwrap()
            .expect("stored");
        assert_eq!(epoch, 0);
        assert_eq!(taken.commitments, commitments);
        // The process dies here, before signing with it.
    }
    let store = Store::open(&path, &key).unwrap();
    assert_eq!(
        store.key_share_at::<EddsaKeyShare>(d1, 0).unwrap(),
        Some((4, share.clone()))
    );
    assert!(
        store
            .take_record::<EddsaPresignature>(kind, ID_7)
            .unwrap()
            .is_none(),
        "never handed out twice"
    );
    assert!(matches!(
        store.add_record(kind, ID_7, 0, &presignature),
        Err(StoreError::DuplicateId { id: ID_7, .. })
    ));
    // ECDSA's record 7 is untouched by EdDSA's.
    assert_eq!(store.record_ids(PRESIGNATURES).unwrap(), vec![ID_7]);
    assert_eq!(
        store
            .take_record::<Presignature>(PRESIGNATURES, ID_7)
            .unwrap()
            .map(|(_, p)| p.big_r),
        Some(ecdsa_presignature.big_r)
    );
    drop(store);

    // The share's bytes are not in the file in the clear.
    let file = std::fs::read(&path).unwrap();
    let secret = share.to_bytes();
    assert!(!file.windows(secret.len()).any(|w| w == secret));
}
