//! The exported methods (`entry.rs`), called as the runtime calls them: JSON input,
//! state in storage. They must check and read as near-sdk's generated ones did.

use super::*;
use crate::entry;
use near_sdk::state::ContractState;

/// Runs an exported method and expects it to abort with `text`.
fn refused(method: fn(), text: &str) {
    let got = abort_text(method);
    assert!(got.contains(text), "expected `{text}`, got `{got}`");
}

/// A call context with `input` as the method's arguments.
fn calling(predecessor: &str, deposit: u128, input: &str) {
    let mut builder = context(predecessor, deposit);
    builder.context.input = input.as_bytes().into();
    testing_env!(builder.build());
}

#[test]
fn deposits_and_callers_are_checked_before_the_arguments() {
    calling(CONTRACT, 1, "not json");
    refused(entry::init, "Method init doesn't accept deposit");
    calling(ALICE, 0, "not json");
    refused(
        entry::resolve_signature,
        "Method resolve_signature is private",
    );
    calling(ALICE, 0, "not json");
    refused(entry::migrate, "Method migrate is private");
}

#[test]
fn arguments_are_read_with_serde_texts() {
    calling(ALICE, 0, "not json");
    refused(
        entry::public_key,
        "Failed to deserialize input from JSON. Error: `expected ident at line 1 column 2`",
    );
    calling(ALICE, 0, "{\"domain_id\": 0,\n  \"x\": [1,]}");
    refused(
        entry::public_key,
        "Failed to deserialize input from JSON. Error: `trailing comma at line 2 column 11`",
    );
    let hex = "11".repeat(32);
    let null_path =
        format!(r#"{{"request": {{"payload_v2": {{"Ecdsa": "{hex}"}}, "path": null}}}}"#);
    calling(ALICE, 1, &null_path);
    refused(
        entry::sign,
        "Failed to deserialize input from JSON. Error: `invalid type: null, expected a string`",
    );
    calling(ALICE, 0, r#"{"predecessor": "alice.near"}"#);
    refused(
        entry::derived_public_key,
        "Failed to deserialize input from JSON. Error: `missing field `path``",
    );
    calling(NODES[0], 0, r#"{"request_id": "00"}"#);
    refused(
        entry::respond,
        "Failed to deserialize input from JSON. Error: `missing field `response``",
    );
    calling(ALICE, 1, r#"{"payload": [0, 1], "path": "p"}"#);
    refused(
        entry::sign,
        "Failed to deserialize input from JSON. Error: `payload must be 32 bytes, got 2`",
    );
}

#[test]
fn arguments_above_64_kib_are_refused_before_parsing() {
    // Whitespace is valid JSON: only the size refuses it.
    let at_most = format!("{{\"domain_id\": 0}}{}", " ".repeat(entry::MAX_ARGS - 16));
    assert_eq!(at_most.len(), entry::MAX_ARGS);
    calling(ALICE, 0, &at_most);
    let got = abort_text(entry::public_key);
    assert!(
        !got.contains("at most") && !got.contains("deserialize"),
        "{got}"
    );
    calling(ALICE, 0, &format!("{at_most} "));
    refused(
        entry::public_key,
        "the arguments are 65537 bytes; at most 65536 are accepted",
    );
}

#[test]
fn init_stores_the_contract_and_refuses_a_second_time() {
    let args = json!({"threshold": 2, "candidates": candidates(&NODES)}).to_string();
    calling(CONTRACT, 0, &args);
    entry::init();
    let stored = MpcContract::state_read().expect("init stores the state");
    assert_eq!(stored.state().name(), "Initializing");
    calling(CONTRACT, 0, &args);
    refused(entry::init, "The contract has already been initialized");
}

#[test]
fn a_changing_call_writes_the_state_back() {
    let contract = running();
    contract.state_write();
    calling(ALICE, 1, &ecdsa_args_json());
    entry::sign();
    let stored = MpcContract::state_read().unwrap();
    assert_eq!(stored.pending_requests(None, None).len(), 1);
    assert_eq!(find_event("signature_requested")["data"]["path"], "p");
}

/// A current-shape request for a payload of 7s on path `p`.
fn ecdsa_args_json() -> String {
    json!({"request": {"payload_v2": {"Ecdsa": "07".repeat(32)}, "path": "p", "domain_id": 0}})
        .to_string()
}
