use integration_tests::{request, Cluster, ClusterConfig};
use std::time::{Duration, Instant};
#[tokio::main]
async fn main() {
    let mut config = ClusterConfig::new(3, 2);
    config.keep_dir = true;
    let cluster = Cluster::start(config).await.unwrap();
    let user = cluster.user("u.test.near", 1).await.unwrap().remove(0);
    for i in 0..3 {
        cluster
            .wait_stock(i, 2, Duration::from_secs(100))
            .await
            .unwrap();
    }
    for k in 0..5u8 {
        let t = Instant::now();
        let r = request([k + 1; 32], "p");
        cluster.sign(&user, &r, 300).await.unwrap();
        eprintln!(
            "{:?} sign {k} took {:?}",
            std::time::SystemTime::now(),
            t.elapsed()
        );
    }
    eprintln!("logs {}", cluster.config.workdir.display());
    cluster.shutdown().await;
}
