//! The node's database on a real file: sealed secrets, the wrong key, and the
//! take-before-use rule across a crash (reopen).

use mpc_node::storage::{StorageKey, Store, StoreError};
use primitives::DomainId;
use threshold::local::{self, Schedule};
use threshold::{
    generate_triple, keygen, presign, InstanceId, KeyShare, Participants, Presignature, Triple,
};

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
        assert!(store.key_share_at(d0, 3).unwrap().is_none());
        store.put_key_share(d0, 3, 7, &share).unwrap();
    }
    let store = Store::open(&path, &key).unwrap();
    assert_eq!(store.key_share_at(d0, 3).unwrap(), Some((7, share.clone())));
    assert_eq!(store.key_share_at(d0, 2).unwrap(), None);
    assert_eq!(store.key_share_at(DomainId(1), 3).unwrap(), None);
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
    assert_eq!(store.key_share_at(d0, 3).unwrap(), Some((9, other)));
    store.put_key_share(d0, 3, 10, &share).unwrap();

    // Shares per epoch are listed and deleted one by one, per domain.
    store.put_key_share(d0, 1, 2, &share).unwrap();
    store.put_key_share(DomainId(1), 2, 4, &share).unwrap();
    assert_eq!(store.key_share_epochs(d0).unwrap(), vec![1, 3]);
    assert_eq!(store.key_share_epochs(DomainId(1)).unwrap(), vec![2]);
    assert!(store.delete_key_share(d0, 1).unwrap());
    assert!(!store.delete_key_share(d0, 1).unwrap());
    assert_eq!(store.key_share_epochs(d0).unwrap(), vec![3]);
    assert_eq!(store.key_share_at(d0, 1).unwrap(), None);
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
        store.add_presignature(7, 0, &presignature).unwrap();
        store.add_triple(1, 0, &triples.remove(0)).unwrap();
        assert_eq!(store.presignature_ids().unwrap(), vec![7]);
        assert_eq!(store.triple_ids().unwrap(), vec![1]);

        let taken = store.take_presignature(7).unwrap().expect("stored");
        assert_eq!(taken.1.big_r, expected_r);
        // The process dies here, before using it: nothing else is written.
    }
    let store = Store::open(&path, &key).unwrap();
    assert_eq!(
        store.take_presignature(7).unwrap().map(|(_, p)| p.big_r),
        None,
        "never handed out twice"
    );
    assert!(store.presignature_ids().unwrap().is_empty());
    // Its id is retired: storing something under it again is refused.
    assert!(matches!(
        store.add_presignature(7, 0, &presignature),
        Err(StoreError::DuplicateId {
            kind: "presignature",
            id: 7
        })
    ));
    assert!(matches!(
        store.add_triple(1, 0, &triples[0]),
        Err(StoreError::DuplicateId {
            kind: "triple",
            id: 1
        })
    ));
    let (epoch, triple) = store.take_triple(1).unwrap().expect("still stored");
    assert_eq!((epoch, triple.threshold), (0, 2));
    assert!(store.take_triple(1).unwrap().is_none());
}

#[test]
fn records_are_listed_with_their_holders_and_retired_when_the_epoch_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.redb"), &StorageKey::generate()).unwrap();
    let (_, mut triples, presignature) = material();
    let holders: Vec<u32> = presignature.participants.iter().map(|p| p.0).collect();
    store.add_triple(1, 3, &triples.remove(0)).unwrap();
    store.add_triple(2, 4, &triples.remove(0)).unwrap();
    store.add_presignature(9, 3, &presignature).unwrap();
    let listed = store.presignatures().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, 9);
    assert_eq!(listed[0].holders.epoch, 3);
    assert_eq!(listed[0].holders.participants, holders);

    // Epoch 4 begins: what was made in epoch 3 is retired for good.
    assert_eq!(store.retire_other_epochs(4).unwrap(), 2);
    assert_eq!(store.triple_ids().unwrap(), vec![2]);
    assert!(store.presignature_ids().unwrap().is_empty());
    assert!(matches!(
        store.add_presignature(9, 4, &presignature),
        Err(StoreError::DuplicateId { .. })
    ));
}
