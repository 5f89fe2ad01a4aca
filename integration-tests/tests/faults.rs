//! Crashes and restarts at n = 3, t = 2, with real processes killed by SIGKILL:
//! one node down → signing continues; two down → requests fail with the contract's
//! timeout error (and a refund); both back → service resumes. No R ever repeats,
//! so no presignature was used twice across the crashes. A graceful stop (SIGTERM)
//! exits cleanly and the node comes back.

use integration_tests::{request, Cluster, ClusterConfig};
use mpc_node::chain::Chain;
use primitives::SignRequest;
use std::collections::HashSet;
use std::time::Instant;

struct Signed {
    big_rs: HashSet<[u8; 33]>,
    count: u8,
}

impl Signed {
    fn next(&mut self, path: &str) -> SignRequest {
        self.count += 1;
        request([self.count; 32], path)
    }

    async fn sign_ok(&mut self, cluster: &Cluster, user: &Chain, what: &str) {
        let request = self.next(what);
        let started = Instant::now();
        let signature = cluster
            .sign(user, &request, 300)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        cluster.verify(user, &request, &signature).unwrap();
        assert!(
            self.big_rs.insert(
                signature
                    .as_ecdsa()
                    .expect("a secp256k1 answer")
                    .big_r
                    .affine_point
            ),
            "{what}: R repeats, a presignature was used twice"
        );
        eprintln!("{what}: signed in {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_survives_one_crash_fails_cleanly_at_two_and_resumes() {
    let mut config = ClusterConfig::new(3, 2);
    // Yields time out after 5 s, so the failing request ends quickly.
    config.yield_timeout_blocks = 50;
    let mut cluster = Cluster::start(config).await.unwrap();
    let user = cluster.user("carol.test.near", 1).await.unwrap().remove(0);
    let mut signed = Signed {
        big_rs: HashSet::new(),
        count: 0,
    };
    signed.sign_ok(&cluster, &user, "all up").await;

    cluster.kill_node(2);
    for k in 0..4 {
        signed
            .sign_ok(&cluster, &user, &format!("node 2 down, request {k}"))
            .await;
    }

    cluster.kill_node(1);
    let request = signed.next("two down");
    let started = Instant::now();
    let error = cluster
        .sign(&user, &request, 25)
        .await
        .expect_err("one node of three cannot sign at threshold 2");
    assert!(
        error.contains("timed out: the MPC network did not answer in time"),
        "the contract's timeout error, not {error}"
    );
    eprintln!("two down: failed as expected after {:?}", started.elapsed());

    cluster.start_node(1).unwrap();
    cluster.start_node(2).unwrap();
    for k in 0..3 {
        signed
            .sign_ok(&cluster, &user, &format!("restarted, request {k}"))
            .await;
    }

    cluster.stop_node(0).expect("SIGTERM stops node 0 cleanly");
    cluster.start_node(0).unwrap();
    signed
        .sign_ok(&cluster, &user, "node 0 restarted gracefully")
        .await;
    for i in 0..3 {
        assert!(
            !cluster.nodes[i].log().contains("panicked at"),
            "node {i} panicked"
        );
    }
    cluster.shutdown().await;
}
