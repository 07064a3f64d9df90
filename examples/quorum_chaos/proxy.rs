//! A fault-injecting TCP proxy on every peer link: node `from` reaches node `to` through its
//! own listener for the pair, so the harness can cut one direction of one link (a one-way
//! partition), every link of a node (isolating it), and heal them. Cutting a link closes its
//! open connections and refuses new ones until it heals; what was in flight is lost, as on a
//! network that drops everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use plus_quorum::NodeId;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// One direction of one peer link: what `from` sends to `to`.
#[derive(Default)]
struct Link {
    cut: AtomicBool,
    open: Mutex<Vec<AbortHandle>>,
}

impl Link {
    fn close_all(&self) {
        for connection in self.open.lock().expect("link lock").drain(..) {
            connection.abort();
        }
    }
}

/// The proxies of every ordered pair of nodes; dropping it stops them all.
pub(crate) struct Proxies {
    links: HashMap<(NodeId, NodeId), Arc<Link>>,
    addrs: HashMap<(NodeId, NodeId), String>,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
        for link in self.links.values() {
            link.close_all();
        }
    }
}

impl Proxies {
    /// A proxy on 127.0.0.1 for every ordered pair of the nodes at `targets` (their real
    /// listening addresses).
    pub(crate) async fn start(targets: &HashMap<NodeId, String>) -> std::io::Result<Self> {
        let mut proxies =
            Self { links: HashMap::new(), addrs: HashMap::new(), listeners: Vec::new() };
        for &from in targets.keys() {
            for (&to, target) in targets {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                proxies.addrs.insert((from, to), listener.local_addr()?.to_string());
                let link = Arc::new(Link::default());
                proxies.links.insert((from, to), Arc::clone(&link));
                proxies.listeners.push(tokio::spawn(serve(listener, target.clone(), link)));
            }
        }
        Ok(proxies)
    }

    /// Proxies for what a node added while the faults run sends to each of `targets`. What
    /// the others send it goes to the address it was added with, unproxied: a membership
    /// change carries one address for everyone.
    pub(crate) async fn add_sender(
        &mut self,
        new: NodeId,
        targets: &HashMap<NodeId, String>,
    ) -> std::io::Result<()> {
        for (&to, target) in targets.iter().filter(|&(&to, _)| to != new) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            self.addrs.insert((new, to), listener.local_addr()?.to_string());
            let link = Arc::new(Link::default());
            self.links.insert((new, to), Arc::clone(&link));
            self.listeners.push(tokio::spawn(serve(listener, target.clone(), link)));
        }
        Ok(())
    }

    /// The member list node `of` is given: itself at its real address, every peer behind the
    /// proxy of their link (or at its own address, for a link no proxy was made for).
    pub(crate) fn peers_of(&self, of: NodeId, targets: &HashMap<NodeId, String>) -> String {
        let mut ids: Vec<NodeId> = targets.keys().copied().collect();
        ids.sort_unstable();
        ids.iter()
            .map(|&id| {
                let addr = if id == of {
                    &targets[&id]
                } else {
                    self.addrs.get(&(of, id)).unwrap_or(&targets[&id])
                };
                format!("{id}={addr}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts what `from` sends to `to`.
    pub(crate) fn cut(&self, from: NodeId, to: NodeId) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.cut.store(true, Ordering::SeqCst);
            link.close_all();
        }
    }

    /// Cuts every link to and from `node`.
    pub(crate) fn isolate(&self, node: NodeId) {
        let pairs: Vec<(NodeId, NodeId)> =
            self.links.keys().copied().filter(|&(a, b)| a == node || b == node).collect();
        for (from, to) in pairs {
            self.cut(from, to);
        }
    }

    /// Every link works again.
    pub(crate) fn heal(&self) {
        for link in self.links.values() {
            link.cut.store(false, Ordering::SeqCst);
        }
    }
}

async fn serve(listener: TcpListener, target: String, link: Arc<Link>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of descriptors, say: wait for some to free instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        if link.cut.load(Ordering::SeqCst) {
            continue; // dropped: the peer sees its connection close
        }
        let target = target.clone();
        let task = tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
        let mut open = link.open.lock().expect("link lock");
        open.retain(|connection| !connection.is_finished());
        open.push(task.abort_handle());
        // A cut that came while this connection was being set up must close it too.
        if link.cut.load(Ordering::SeqCst) {
            task.abort();
        }
    }
}
