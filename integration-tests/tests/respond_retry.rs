//! A `respond` that fails is sent again with the same signature (DESIGN §8): with the
//! nodes' transactions refused for a few seconds (reads still served, so they see
//! the request and sign it), every leader keeps the signature it computed and sends
//! it again with backoff. Once transactions pass, the request is answered, and no
//! node spent a presignature per failed transaction.

use integration_tests::{request, Cluster, ClusterConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_respond_is_sent_again_not_signed_again() {
    let cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let mut keys = cluster.user("erin.test.near", 2).await.unwrap();
    let user = keys.remove(0);
    let user_in_background = keys.remove(0);
    for i in 0..3 {
        cluster
            .wait_stock(i, 1, Duration::from_secs(120))
            .await
            .unwrap();
    }

    cluster.rpc_gate.refuse_transactions(true);
    let asked = request([0x61; 32], "through-an-outage");
    let args = integration_tests::ArgsShape::Current.args(&asked);
    let waiting = tokio::spawn(async move { user_in_background.call("sign", args, 300, 1).await });
    // Long enough for the first leader and both fallbacks (1 s grace each) to sign,
    // and for each to fail several sends.
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
    assert!(
        (1..=3).contains(&led),
        "each leader signs once, however often respond fails: {led} runs for {failures} failures"
    );

    cluster.rpc_gate.refuse_transactions(false);
    let answer = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("answered once transactions pass")
        .unwrap()
        .expect("sign succeeds");
    let signature = serde_json::from_slice(&answer).unwrap();
    cluster.verify(&user, &asked, &signature).unwrap();
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
