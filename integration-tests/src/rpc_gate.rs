//! A loopback HTTP proxy in front of the devnet's JSON-RPC that can refuse
//! transactions while still serving reads: nodes behind it keep seeing requests and
//! signing them, but their `respond` transactions fail until the gate opens again.
//! It handles plain HTTP/1.1 requests with a `Content-Length` (what the JSON-RPC
//! clients send), several per connection.
//!
//! It can also make the RPC unreachable as a network outage would: connections
//! open at that moment are cut, and new ones are accepted but never answered (as
//! when packets are dropped) until the gate is reachable again, when they are
//! closed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// JSON-RPC methods that submit transactions.
const TRANSACTION_METHODS: [&str; 3] = ["send_tx", "broadcast_tx_commit", "broadcast_tx_async"];
/// The largest request or response the gate handles.
const MAX_MESSAGE: usize = 16 << 20;

pub struct RpcGate {
    url: String,
    closed: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    unreachable: watch::Sender<bool>,
    dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcGate {
    /// Starts the gate in front of `upstream` (`http://host:port`), open.
    pub async fn start(upstream: &str) -> std::io::Result<RpcGate> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let closed = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (unreachable, _) = watch::channel(false);
        let dropped = Arc::new(AtomicU64::new(0));
        let (c, r, u, d) = (
            closed.clone(),
            refused.clone(),
            unreachable.clone(),
            dropped.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, closed, refused) = (upstream.clone(), c.clone(), r.clone());
                let (mut outage, dropped) = (u.subscribe(), d.clone());
                tokio::spawn(async move {
                    if *outage.borrow_and_update() {
                        // Accepted, never answered: the client waits as it would
                        // for dropped packets, until the outage ends.
                        dropped.fetch_add(1, Ordering::SeqCst);
                        let _ = outage.wait_for(|down| !*down).await;
                        return;
                    }
                    tokio::select! {
                        _ = serve(client, &upstream, &closed, &refused) => {}
                        _ = outage.wait_for(|down| *down) => {
                            dropped.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Ok(RpcGate {
            url,
            closed,
            refused,
            unreachable,
            dropped,
            task,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refuse (`true`) or pass (`false`) transactions from now on.
    pub fn refuse_transactions(&self, refuse: bool) {
        self.closed.store(refuse, Ordering::SeqCst);
    }

    /// Makes the RPC unreachable (`true`: open connections are cut, new ones hang
    /// unanswered) or reachable again (`false`: the hanging ones are closed).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.send_replace(unreachable);
    }

    /// Connections cut or left unanswered by outages so far.
    pub fn dropped_connections(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// How many transactions were refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RpcGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: each request is forwarded, or refused with a 503 when it
/// submits a transaction while the gate is closed.
async fn serve(
    mut client: TcpStream,
    upstream: &str,
    closed: &AtomicBool,
    refused: &AtomicU64,
) -> std::io::Result<()> {
    let mut server: Option<TcpStream> = None;
    loop {
        let Some(request) = read_message(&mut client).await? else {
            return Ok(());
        };
        if closed.load(Ordering::SeqCst) && submits_transaction(&request) {
            refused.fetch_add(1, Ordering::SeqCst);
            let body = "transactions refused by the test's RPC gate";
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                body.len()
            );
            client.write_all(reply.as_bytes()).await?;
            continue;
        }
        let stream = match server.as_mut() {
            Some(stream) => stream,
            None => server.insert(TcpStream::connect(upstream).await?),
        };
        stream.write_all(&request).await?;
        let Some(response) = read_message(stream).await? else {
            return Ok(());
        };
        client.write_all(&response).await?;
    }
}

fn submits_transaction(request: &[u8]) -> bool {
    let body = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| &request[at + 4..])
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_string))
        .is_some_and(|method| TRANSACTION_METHODS.contains(&method.as_str()))
}

/// Reads one HTTP message (headers, then `Content-Length` bytes of body); `None` at
/// a clean end of the connection.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(at) = message.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        message.extend_from_slice(&chunk[..n]);
        if message.len() > MAX_MESSAGE {
            return Err(std::io::Error::other("message too large"));
        }
    };
    let headers = String::from_utf8_lossy(&message[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_MESSAGE {
        return Err(std::io::Error::other("message too large"));
    }
    while message.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed mid-message"));
        }
        message.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(message))
}
