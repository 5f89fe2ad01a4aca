//! The `mpc-node` binary's command line: a config with a broken setting stops
//! `start` at once with the rule it breaks, before anything is opened or dialled.

use std::process::Command;

#[test]
fn start_refuses_a_setting_that_breaks_its_rule() {
    let home = tempfile::tempdir().unwrap();
    let node = env!("CARGO_BIN_EXE_mpc-node");
    let init = Command::new(node)
        .args(["--home", &home.path().to_string_lossy(), "init"])
        .args(["--account", "node0.test.near", "--contract", "signer.test.near"])
        .args(["--account-key", "ed25519:3D4YudUahN1nawWogh8pAKSj92sUNMdbZGjn7kERKzYoTy8tnFQuwoGUC51DowKqorvkr2pytJSnwuSbsNVfqygr"])
        .args(["--p2p-addr", "127.0.0.1:1", "--respond-keys", "0"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let config = home.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("heartbeat_ms = 250"),
        "init writes every setting:\n{text}"
    );
    std::fs::write(
        &config,
        text.replace("heartbeat_ms = 250", "heartbeat_ms = 0"),
    )
    .unwrap();

    let start = Command::new(node)
        .args(["--home", &home.path().to_string_lossy(), "start"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(!start.status.success());
    assert!(
        stderr.contains("config.toml: heartbeat_ms = 0 is invalid: at least 10 ms"),
        "{stderr}"
    );
}
