//! A `respond` that fails is sent again with the same signature (DESIGN §8): with the
//! nodes' transactions refused for a few seconds (reads still served, so they see
//! the request and sign it), the leader keeps the signature it computed and sends
//! it again with backoff, and shares it with its peers, which check it and hold it
//! instead of signing the request themselves. Once transactions pass, the request
//! is answered, and no node spent a presignature per failed transaction, nor a
//! fallback one of its own. If the leader dies before its answer lands, the nodes
//! holding it send it. A node that gets the answer before it sees the request
//! (it reads the chain late) keeps it, and holds it once it does.

use integration_tests::{request, Cluster, ClusterConfig};
use mpc_node::chain::{Chain, ChainError};
use primitives::SignRequest;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A request made while the chain refuses the nodes' transactions (reads still
/// served), on a stocked (3,2) cluster: the cluster, the caller, the request and
/// its `sign` call under way.
struct Refused {
    cluster: Cluster,
    user: Chain,
    asked: SignRequest,
    waiting: JoinHandle<Result<Vec<u8>, ChainError>>,
}

/// A cluster of `config` (3 nodes), each node with a presignature in stock, and
/// two clients of account `user`: one for the test, one to wait on a `sign` in
/// the background.
async fn stocked(config: ClusterConfig, user: &str) -> (Cluster, Chain, Chain) {
    let cluster = Cluster::start(config).await.unwrap();
    let mut keys = cluster.user(user, 2).await.unwrap();
    let (user, user_in_background) = (keys.remove(0), keys.remove(0));
    for i in 0..3 {
        cluster
            .wait_stock(i, 1, Duration::from_secs(120))
            .await
            .unwrap();
    }
    (cluster, user, user_in_background)
}

async fn request_while_transactions_are_refused(user: &str, payload: u8, path: &str) -> Refused {
    let (cluster, user, user_in_background) = stocked(ClusterConfig::new(3, 2), user).await;
    cluster.rpc_gate.refuse_transactions(true);
    let asked = request([payload; 32], path);
    let args = integration_tests::ArgsShape::Current.args(&asked);
    let waiting = tokio::spawn(async move { user_in_background.call("sign", args, 300, 1).await });
    Refused {
        cluster,
        user,
        asked,
        waiting,
    }
}

/// Lets the nodes' transactions through again: the request is answered with a
/// signature that verifies.
async fn answered_once_transactions_pass(
    cluster: &Cluster,
    user: &Chain,
    asked: &SignRequest,
    waiting: JoinHandle<Result<Vec<u8>, ChainError>>,
) {
    cluster.rpc_gate.refuse_transactions(false);
    let answer = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("answered once transactions pass")
        .unwrap()
        .expect("sign succeeds");
    let signature = serde_json::from_slice(&answer).unwrap();
    cluster.verify(user, asked, &signature).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_respond_is_sent_again_not_signed_again() {
    let Refused {
        cluster,
        user,
        asked,
        waiting,
    } = request_while_transactions_are_refused("erin.test.near", 0x61, "through-an-outage").await;
    // Long past both fallbacks' turns (1 s grace each), which the shared answer
    // skips, and long enough for several sends to fail.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let refused = cluster.rpc_gate.refused();
    let failures = cluster
        .metric_total("mpc_respond_failures_total")
        .await
        .unwrap();
    let led = cluster
        .metric_total("mpc_sign_runs_led_total")
        .await
        .unwrap();
    eprintln!("during the outage: {refused} transactions refused, {failures} responds failed, {led} signing runs led");
    assert!(
        refused >= 3 && failures >= 3,
        "refused {refused}, failed {failures}"
    );
    assert_eq!(
        led, 1,
        "one signing run, however often respond fails ({failures} failures): the \
         others hold the leader's answer rather than sign as fallbacks"
    );
    let held = cluster
        .metric_total("mpc_answers_held_total")
        .await
        .unwrap();
    assert_eq!(held, 2, "the co-signer and the third node hold the answer");

    answered_once_transactions_pass(&cluster, &user, &asked, waiting).await;
    let led_after = cluster
        .metric_total("mpc_sign_runs_led_total")
        .await
        .unwrap();
    assert_eq!(
        led_after, led,
        "no signing run after the outage: the kept signature landed"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_whose_leader_died_is_sent_by_the_nodes_holding_it() {
    let Refused {
        mut cluster,
        user,
        asked,
        waiting,
    } = request_while_transactions_are_refused("frank.test.near", 0x62, "leader-dies").await;
    // Signed, and the answer held by both other nodes.
    let held = cluster
        .settled_metric_total("mpc_answers_held_total", 2, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(held, 2, "both other nodes hold the answer");
    let mut leader = None;
    for i in 0..3 {
        if cluster
            .node_metric(i, "mpc_sign_runs_led_total")
            .await
            .unwrap()
            >= 1.0
        {
            assert!(leader.replace(i).is_none(), "one leader");
        }
    }
    let leader = leader.expect("a node led the request");
    // It dies with its answer unsent: the contract never got it.
    cluster.kill_node(leader);
    // Long past every fallback's turn (1 s grace each) and the holders' first
    // sends, all refused.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let failures = cluster
        .metric_total("mpc_respond_failures_total")
        .await
        .unwrap();
    assert!(
        failures >= 1,
        "the holders tried to send it: {failures} failures"
    );

    answered_once_transactions_pass(&cluster, &user, &asked, waiting).await;
    let landed = cluster
        .settled_metric_total("mpc_signatures_total", 1, Duration::from_secs(10))
        .await
        .unwrap();
    let led = cluster
        .metric_total("mpc_sign_runs_led_total")
        .await
        .unwrap();
    assert_eq!(landed, 1, "a holder's send landed the dead leader's answer");
    assert_eq!(led, 0, "no survivor signed the request again");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_shared_before_the_request_is_seen_is_held_once_it_is() {
    let mut config = ClusterConfig::new(3, 2);
    config.rpc_gate_per_node = true;
    let (cluster, user, user_in_background) = stocked(config, "grace.test.near").await;
    // Node 2 reads the chain late (here: not at all for a while), the way a node
    // behind a slow RPC does; nobody's transactions land meanwhile, so the
    // request stays pending.
    let late = 2;
    for gate in &cluster.node_rpc_gates {
        gate.refuse_transactions(true);
    }
    cluster.node_rpc_gates[late].set_unreachable(true);
    let asked = request([0x63; 32], "seen-late");
    let args = integration_tests::ArgsShape::Current.args(&asked);
    let waiting = tokio::spawn(async move { user_in_background.call("sign", args, 300, 1).await });
    let held = cluster
        .settled_metric_total("mpc_answers_held_total", 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        held, 1,
        "the co-signer holds the answer; node 2 has not seen the request"
    );
    let metric = |name| cluster.node_metric(late, name);
    assert_eq!(metric("mpc_requests_seen_total").await.unwrap(), 0.0);

    // Node 2 sees the request: it holds the answer it was given before, and so
    // does not lead the request when its turn comes (1 s grace per place), nor
    // does anybody else. (The others may have led it more than once before:
    // a run with node 2 waited for it to see the request.) Without the kept
    // answer, node 2 led the request again, more than once.
    let led_before = cluster
        .metric_total("mpc_sign_runs_led_total")
        .await
        .unwrap();
    cluster.node_rpc_gates[late].set_unreachable(false);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(metric("mpc_requests_seen_total").await.unwrap(), 1.0);
    assert_eq!(
        metric("mpc_sign_runs_led_total").await.unwrap(),
        0.0,
        "node 2 did not sign the request again"
    );
    assert_eq!(
        cluster
            .metric_total("mpc_sign_runs_led_total")
            .await
            .unwrap(),
        led_before,
        "no signing run once node 2 saw the request"
    );
    assert_eq!(
        metric("mpc_answers_held_total").await.unwrap(),
        1.0,
        "node 2 took the answer kept for the request"
    );

    for gate in &cluster.node_rpc_gates {
        gate.refuse_transactions(false);
    }
    answered_once_transactions_pass(&cluster, &user, &asked, waiting).await;
    cluster.shutdown().await;
}
