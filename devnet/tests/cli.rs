//! The `devnet` binary with near-sandbox's command line: init, run, restart with the
//! state kept, graceful stop on SIGTERM.

mod common;

use common::*;
use near_crypto::{InMemorySigner, KeyFile};
use near_jsonrpc_client::{methods, JsonRpcClient};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn devnet(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_devnet"));
    command.arg("--home").arg(home);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes the home directory even when the test fails.
struct TempHome(PathBuf);

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops the child if the test fails before it does.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run_until_ready(home: &Path, port: u16) -> (Running, JsonRpcClient) {
    let child = devnet(home)
        .args([
            "run",
            "--rpc-addr",
            &format!("127.0.0.1:{port}"),
            "--block-time-ms",
            "50",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("devnet run starts");
    let running = Running(child);
    let client = JsonRpcClient::connect(format!("http://127.0.0.1:{port}"));
    for _ in 0..200 {
        if client.call(methods::status::RpcStatusRequest).await.is_ok() {
            return (running, client);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("devnet run did not answer status within 5 s");
}

fn stop(mut running: Running) {
    let pid = running.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for _ in 0..200 {
        if let Some(exit) = running.0.try_wait().unwrap() {
            assert!(exit.success(), "devnet exits cleanly on SIGTERM: {exit}");
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("devnet did not stop within 5 s of SIGTERM");
}

#[tokio::test]
async fn init_run_restart_keeps_the_chain() {
    let help = devnet(Path::new(".")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("init") && help.contains("run") && help.contains("test.near"),
        "{help}"
    );

    let home =
        TempHome(std::env::temp_dir().join(format!("devnet-cli-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&home.0);
    assert!(devnet(&home.0)
        .arg("init")
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let again = devnet(&home.0).arg("init").output().unwrap();
    assert!(
        !again.status.success(),
        "a second init refuses to overwrite the key"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let key = KeyFile::from_file(&home.0.join("validator_key.json")).unwrap();
    assert_eq!(key.account_id.as_str(), "test.near");
    let port = free_port();
    let (running, client) = run_until_ready(&home.0, port).await;
    let root = InMemorySigner::from_secret_key(key.account_id.clone(), key.secret_key.clone());
    let net_like = Client { client };
    let bob = id("bob.test.near");
    let tx = net_like.tx(&root, &bob, NEAR).await;
    let outcome = net_like
        .client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: tx,
        })
        .await
        .expect("create bob");
    assert!(matches!(
        outcome.status,
        near_primitives::views::FinalExecutionStatus::SuccessValue(_)
    ));
    let height_before = net_like.height().await;
    stop(running);

    let (running, client) = run_until_ready(&home.0, port).await;
    let net_like = Client { client };
    assert!(
        net_like.height().await >= height_before,
        "the chain continues"
    );
    let bob_view = net_like.account(&bob).await;
    assert_eq!(
        bob_view.amount.as_yoctonear(),
        NEAR,
        "bob survived the restart"
    );
    stop(running);
}

struct Client {
    client: JsonRpcClient,
}

impl Client {
    async fn height(&self) -> u64 {
        let status = self
            .client
            .call(methods::status::RpcStatusRequest)
            .await
            .unwrap();
        status.sync_info.latest_block_height
    }

    async fn account(
        &self,
        account: &near_primitives::types::AccountId,
    ) -> near_primitives::views::AccountView {
        use near_jsonrpc_primitives::types::query::QueryResponseKind;
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: near_primitives::types::BlockReference::Finality(
                    near_primitives::types::Finality::Final,
                ),
                request: near_primitives::views::QueryRequest::ViewAccount {
                    account_id: account.clone(),
                },
            })
            .await
            .expect("view_account");
        match response.kind {
            QueryResponseKind::ViewAccount(view) => view,
            other => panic!("expected an account, got {other:?}"),
        }
    }

    /// Creates `account` with `amount` from `root`.
    async fn tx(
        &self,
        root: &near_crypto::Signer,
        account: &near_primitives::types::AccountId,
        amount: u128,
    ) -> near_primitives::transaction::SignedTransaction {
        use near_jsonrpc_primitives::types::query::QueryResponseKind;
        let key = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: near_primitives::types::BlockReference::Finality(
                    near_primitives::types::Finality::Final,
                ),
                request: near_primitives::views::QueryRequest::ViewAccessKey {
                    account_id: root.get_account_id(),
                    public_key: root.public_key(),
                },
            })
            .await
            .unwrap();
        let QueryResponseKind::AccessKey(key) = key.kind else {
            panic!("an access key")
        };
        let status = self
            .client
            .call(methods::status::RpcStatusRequest)
            .await
            .unwrap();
        sign(
            root,
            key.nonce + 1,
            account,
            status.sync_info.latest_block_hash,
            vec![
                near_primitives::transaction::Action::CreateAccount(
                    near_primitives::transaction::CreateAccountAction {},
                ),
                near_primitives::transaction::Action::Transfer(
                    near_primitives::transaction::TransferAction {
                        deposit: near_primitives::types::Balance::from_yoctonear(amount),
                    },
                ),
            ],
        )
    }
}
