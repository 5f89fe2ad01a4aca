//! The built wasm, checked the way nearcore checks a deployment: NEAR VM
//! preparation (validation against the protocol's wasm features, gas and stack
//! instrumentation) with the latest protocol config, plus the exported methods.
//!
//! The test builds the wasm itself through `scripts/build-contract.sh` (a no-op when
//! it is up to date), so `cargo test` alone is enough.

use near_parameters::vm::VMKind;
use near_parameters::RuntimeConfigStore;
use near_primitives_core::version::PROTOCOL_VERSION;
use std::path::PathBuf;
use std::process::Command;

const METHODS: &[&str] = &[
    "init",
    "init_running",
    "sign",
    "respond",
    "resolve_signature",
    "fail_timed_out",
    "public_key",
    "derived_public_key",
    "latest_key_version",
    "state",
    "config",
    "version",
    "experimental_signature_deposit",
    "pending_requests",
    "pending_request",
    "proposed_updates",
    "vote_pk",
    "join",
    "vote_join",
    "vote_leave",
    "vote_reshared",
    "propose_update",
    "vote_update",
    "migrate",
];

fn built_wasm() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(root.join("scripts/build-contract.sh"))
        .arg("multichain")
        .status()
        .expect("scripts/build-contract.sh should start");
    assert!(
        status.success(),
        "scripts/build-contract.sh failed (its output is above)"
    );
    std::fs::read(root.join("target/near/multichain.wasm"))
        .expect("the build writes target/near/multichain.wasm")
}

/// Reads an unsigned LEB128 number at `*at`.
fn leb(bytes: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// The names of the exported functions, from the module's export section.
fn exported_functions(wasm: &[u8]) -> Vec<String> {
    assert_eq!(&wasm[..8], b"\0asm\x01\0\0\0", "not a wasm v1 module");
    let mut at = 8;
    let mut names = Vec::new();
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(wasm, &mut at);
        let end = at + size;
        if id == 7 {
            let count = leb(wasm, &mut at);
            for _ in 0..count {
                let len = leb(wasm, &mut at);
                let name = String::from_utf8(wasm[at..at + len].to_vec()).unwrap();
                at += len;
                let kind = wasm[at];
                at += 1;
                leb(wasm, &mut at);
                if kind == 0 {
                    names.push(name);
                }
            }
        }
        at = end;
    }
    names
}

#[test]
fn wasm_passes_near_vm_preparation_and_exports_every_method() {
    let wasm = built_wasm();
    let store = RuntimeConfigStore::new(None);
    let config = &store.get_config(PROTOCOL_VERSION).wasm_config;
    near_vm_runner::prepare::prepare_contract(&wasm, config, VMKind::Wasmtime).unwrap_or_else(
        |e| panic!("the NEAR VM (protocol {PROTOCOL_VERSION}) rejects the contract: {e:?}"),
    );

    let exports = exported_functions(&wasm);
    for method in METHODS {
        assert!(
            exports.iter().any(|e| e == method),
            "`{method}` is not exported; exports: {exports:?}"
        );
    }
    eprintln!(
        "multichain.wasm: {} bytes, protocol {PROTOCOL_VERSION}",
        wasm.len()
    );
}

#[test]
fn preparation_rejects_what_the_protocol_forbids() {
    // A check that can fail: a module using a SIMD instruction (v128.const; drop),
    // which the NEAR VM does not support, must be rejected by the same call.
    let simd: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // one function of type 0
        0x05, 0x03, 0x01, 0x00, 0x01, // memory 1 page
        0x07, 0x08, 0x01, 0x04, b'm', b'a', b'i', b'n', 0x00, 0x00, // export "main"
        0x0a, 0x17, 0x01, 0x15, 0x00, // code: one body, no locals
        0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
        0x1a, 0x0b, // drop, end
    ];
    let store = RuntimeConfigStore::new(None);
    let config = &store.get_config(PROTOCOL_VERSION).wasm_config;
    let refusal = near_vm_runner::prepare::prepare_contract(simd, config, VMKind::Wasmtime)
        .expect_err("SIMD must be refused");
    eprintln!("SIMD module refused: {refusal:?}");

    // The same module with an empty body is accepted, so the refusal above is the SIMD.
    let mut plain = simd[..simd.len() - 25].to_vec();
    plain.extend_from_slice(&[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]);
    near_vm_runner::prepare::prepare_contract(&plain, config, VMKind::Wasmtime)
        .expect("a minimal module passes preparation");
}
