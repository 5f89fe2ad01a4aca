//! What a test reads from a node: its HTTP endpoint's `/state` and `/metrics`,
//! and waits on them.

use crate::Cluster;
use primitives::DomainId;
use std::time::{Duration, Instant};

impl Cluster {
    /// GETs `path` from node `i`'s HTTP endpoint: (status code, body).
    pub async fn http_get(&self, i: usize, path: &str) -> Result<(u16, String), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = &self.nodes[i].http_addr;
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {response:.80}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Node `i`'s `/state`.
    pub async fn node_state(&self, i: usize) -> Result<serde_json::Value, String> {
        let (status, body) = self.http_get(i, "/state").await?;
        if status != 200 {
            return Err(format!("/state answered {status}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("/state: {e}"))
    }

    /// Series `name` (without labels) from node `i`'s `/metrics`.
    pub async fn node_metric(&self, i: usize, name: &str) -> Result<f64, String> {
        let (_, text) = self.http_get(i, "/metrics").await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| format!("{name} missing from node {i}'s /metrics"))
    }

    /// The sum of every series of `name` on node `i`'s `/metrics`, whatever its
    /// labels (e.g. one per kind of run).
    pub async fn node_metric_sum(&self, i: usize, name: &str) -> Result<f64, String> {
        let (_, text) = self.http_get(i, "/metrics").await?;
        let mut total = 0.0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue; // another metric whose name starts with this one
            }
            let value = rest
                .rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<f64>().ok());
            total += value.ok_or_else(|| format!("node {i}: unreadable series {line}"))?;
        }
        Ok(total)
    }

    /// The sum over the running nodes of counter `name` from their `/metrics`.
    pub async fn metric_total(&self, name: &str) -> Result<u64, String> {
        let mut total = 0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                total += self.node_metric(i, name).await? as u64;
            }
        }
        Ok(total)
    }

    /// Waits (up to `limit`) for counter `name` summed over the nodes to reach
    /// `expected`, then returns its value: a respond transaction completes a block
    /// or so after the answer it carried reached the caller.
    pub async fn settled_metric_total(
        &self,
        name: &str,
        expected: u64,
        limit: Duration,
    ) -> Result<u64, String> {
        let deadline = Instant::now() + limit;
        loop {
            let total = self.metric_total(name).await?;
            if total >= expected || Instant::now() > deadline {
                return Ok(total);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until node `i` reports at least `presignatures` usable presignatures
    /// in domain 0.
    pub async fn wait_stock(
        &self,
        i: usize,
        presignatures: u64,
        limit: Duration,
    ) -> Result<(), String> {
        self.wait_stock_in(i, DomainId::LEGACY_ECDSA, presignatures, limit)
            .await
    }

    /// Waits until node `i` reports at least `presignatures` usable presignatures
    /// in `domain`.
    pub async fn wait_stock_in(
        &self,
        i: usize,
        domain: DomainId,
        presignatures: u64,
        limit: Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(state) = self.node_state(i).await {
                let stock = &state["stock_by_domain"][domain.0.to_string()];
                if stock["presignatures"].as_u64() >= Some(presignatures) {
                    return Ok(());
                }
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "node {i} has no {presignatures} presignatures in domain {domain} after {limit:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
