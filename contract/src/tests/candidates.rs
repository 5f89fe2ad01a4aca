//! Unit tests: candidates.

use super::*;

#[test]
fn p2p_keys_must_be_unique() {
    let mut contract = running();
    let fresh = candidate(NEWCOMER, 3);
    as_caller(NEWCOMER, 0);
    // A participant's cipher_pk, or its sign_pk.
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(fresh.url.clone(), [0; 32], fresh.sign_pk.clone())
    });
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(
            fresh.url.clone(),
            fresh.cipher_pk,
            candidate(NODES[1], 1).sign_pk,
        )
    });
    contract.join(fresh.url.clone(), fresh.cipher_pk, fresh.sign_pk.clone());
    // A candidate's keys.
    let other = candidate("other.near", 4);
    as_caller("other.near", 0);
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(other.url.clone(), fresh.cipher_pk, other.sign_pk.clone())
    });
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(other.url.clone(), other.cipher_pk, fresh.sign_pk.clone())
    });
    contract.join(other.url.clone(), other.cipher_pk, other.sign_pk.clone());
    // A candidate may join again with its own keys (to update its url).
    as_caller(NEWCOMER, 0);
    contract.join("https://moved:3000".into(), fresh.cipher_pk, fresh.sign_pk);
    let state = running_state(&contract);
    assert_eq!(state.candidates.len(), 2);
    assert_eq!(
        state.candidates[&account(NEWCOMER)].info.url,
        "https://moved:3000"
    );
}

#[test]
fn candidates_expire() {
    let mut contract = running_with(Config {
        candidate_expiry_blocks: 10,
        ..Config::default()
    });
    let info = candidate(NEWCOMER, 3);
    at_block(NEWCOMER, START);
    contract.join(info.url.clone(), info.cipher_pk, info.sign_pk.clone());
    assert_eq!(
        running_state(&contract).candidates[&account(NEWCOMER)].joined_at,
        START
    );
    at_block(NODES[0], START + 9);
    assert!(!contract.vote_join(account(NEWCOMER)));
    at_block(NODES[1], START + 10);
    assert_refused(
        Error::CandidateExpired {
            account: account(NEWCOMER),
        },
        || contract.vote_join(account(NEWCOMER)),
    );
    assert_eq!(contract.state().name(), "Running");

    // An expired candidate holds no p2p keys: another account may register them,
    // and the join purges the expired candidate.
    at_block("other.near", START + 10);
    contract.join(
        "https://other:3000".into(),
        info.cipher_pk,
        info.sign_pk.clone(),
    );
    let state = running_state(&contract);
    assert_eq!(
        state.candidates.keys().cloned().collect::<Vec<_>>(),
        vec![account("other.near")]
    );
    at_block(NODES[1], START + 10);
    assert_refused(
        Error::NotACandidate {
            account: account(NEWCOMER),
        },
        || contract.vote_join(account(NEWCOMER)),
    );
}

#[test]
fn candidates_are_bounded_until_they_expire() {
    let mut contract = running_with(Config {
        candidate_expiry_blocks: 10,
        ..Config::default()
    });
    let join = |contract: &mut MpcContract, name: &str, index: u8, url: &str| {
        let info = candidate(name, index);
        contract.join(url.into(), info.cipher_pk, info.sign_pk);
    };
    for i in 0..32u8 {
        let name = format!("candidate{i}.near");
        at_block(&name, START);
        join(&mut contract, &name, 100 + i, "u");
    }
    at_block("candidate0.near", START + 5);
    join(&mut contract, "candidate0.near", 100, "https://updated");
    let state = running_state(&contract);
    assert_eq!(state.candidates.len(), 32);
    assert_eq!(
        state.candidates[&account("candidate0.near")].info.url,
        "https://updated",
        "re-joining updates"
    );
    assert_eq!(
        state.candidates[&account("candidate0.near")].joined_at,
        START + 5
    );
    at_block("candidate32.near", START + 9);
    assert_refused(Error::TooManyCandidates { max: 32 }, || {
        join(&mut contract, "candidate32.near", 132, "u")
    });

    // Once they expire, a join purges them and the cap frees up.
    at_block("candidate32.near", START + 10);
    join(&mut contract, "candidate32.near", 132, "u");
    let names: Vec<AccountId> = running_state(&contract).candidates.into_keys().collect();
    assert_eq!(
        names,
        vec![account("candidate0.near"), account("candidate32.near")],
        "only the candidate that re-joined later is left"
    );
}
