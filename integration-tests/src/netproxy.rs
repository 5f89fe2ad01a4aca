//! Loopback TCP proxies in front of the nodes' peer-to-peer listeners, so a test can
//! cut one node off from its peers (not from the chain) for a while.
//!
//! With [`ClusterConfig::p2p_proxies`](crate::ClusterConfig), each node registers
//! its proxy's address on the contract, so every peer connection passes through the
//! proxy of the node it goes to. A p2p connection carries messages one way (dialer
//! to listener), so partitioning node P means cutting the connections to P's proxy
//! (peers to P) and the connections P dialed to the other proxies (P to peers).
//! The proxies tell P's dials apart without any help from the node: on Linux, the
//! client end of each accepted connection is a socket in `/proc/net/tcp`, and P's
//! sockets are the ones listed in `/proc/<P's pid>/fd`.
//!
//! During a partition, connections involving P that are open are cut, and new ones
//! are accepted but never forwarded (as when packets are dropped) until it heals,
//! when they are closed; the nodes reconnect by themselves.

use crate::Cluster;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A partition in force: which node is cut off, and its process (whose dials the
/// other proxies recognise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    node: usize,
    pid: u32,
}

/// Every node's proxy and the switch they all watch.
pub struct P2pProxies {
    cut: watch::Sender<Option<Cut>>,
    /// Connections cut or held by partitions so far.
    dropped: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for P2pProxies {
    fn default() -> Self {
        P2pProxies {
            cut: watch::channel(None).0,
            dropped: Arc::default(),
            tasks: Vec::new(),
        }
    }
}

impl Drop for P2pProxies {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl P2pProxies {
    /// Starts the proxy of node `node`, forwarding to `upstream` (its listener);
    /// returns the address peers should dial.
    pub async fn front(&mut self, node: usize, upstream: &str) -> Result<String, String> {
        let upstream: SocketAddr = upstream
            .parse()
            .map_err(|e| format!("p2p address {upstream}: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("p2p proxy: {e}"))?;
        let front = listener.local_addr().map_err(|e| e.to_string())?;
        let (cut, dropped) = (self.cut.clone(), self.dropped.clone());
        self.tasks.push(tokio::spawn(async move {
            while let Ok((client, from)) = listener.accept().await {
                let (cut, dropped) = (cut.subscribe(), dropped.clone());
                tokio::spawn(relay(node, client, from, front, upstream, cut, dropped));
            }
        }));
        Ok(front.to_string())
    }

    pub fn dropped_connections(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Forwards one connection until it ends or a partition involving it starts; while
/// a partition involves it from the start, holds it unanswered until the heal.
async fn relay(
    node: usize,
    mut client: TcpStream,
    from: SocketAddr,
    front: SocketAddr,
    upstream: SocketAddr,
    mut cut: watch::Receiver<Option<Cut>>,
    dropped: Arc<AtomicU64>,
) {
    // The dialer's socket, looked up now while both ends surely exist.
    let dialer_socket = socket_inode(from.port(), front.port());
    let involves = |cut: &Option<Cut>| {
        cut.is_some_and(|c| {
            c.node == node || dialer_socket.is_some_and(|inode| process_has_socket(c.pid, inode))
        })
    };
    if involves(&cut.borrow_and_update()) {
        dropped.fetch_add(1, Ordering::SeqCst);
        let _ = cut.wait_for(Option::is_none).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|c| involves(c)) => {
            dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The inode of the loopback TCP socket whose local port is `local_port` and whose
/// remote port is `remote_port` (IPv4 or IPv6), from `/proc/net/tcp*`.
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |field: &str| {
                    field
                        .rsplit_once(':')
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                };
                let matches =
                    port(fields.get(1)?)? == local_port && port(fields.get(2)?)? == remote_port;
                matches.then(|| fields.get(9)?.parse().ok()).flatten()
            })
        })
}

/// Whether process `pid` holds socket `inode` open.
fn process_has_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
        .unwrap_or(false)
}

impl Cluster {
    /// Cuts node `i` off from its peers (both directions; the chain stays
    /// reachable) until [`Cluster::heal_partition`]. Needs `p2p_proxies`.
    pub fn partition_node(&self, i: usize) -> Result<(), String> {
        let proxies = self
            .p2p_proxies
            .as_ref()
            .ok_or("the cluster was started without p2p_proxies")?;
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(|c| c.id())
            .ok_or_else(|| format!("node {i} is not running"))?;
        proxies.cut.send_replace(Some(Cut { node: i, pid }));
        Ok(())
    }

    /// Peer connections cut or held by partitions so far.
    pub fn p2p_dropped_connections(&self) -> u64 {
        self.p2p_proxies
            .as_ref()
            .map_or(0, P2pProxies::dropped_connections)
    }

    /// Ends a partition: held connections close, and nodes reconnect.
    pub fn heal_partition(&self) {
        if let Some(proxies) = &self.p2p_proxies {
            proxies.cut.send_replace(None);
        }
    }
}
