//! A snapshot transfer cut half-way resumes where it stopped, over real TCP: the leader's link
//! to a new node goes through a proxy that cuts the first connection after 12 MiB, in the middle
//! of a 30 MiB snapshot; the leader sends the same snapshot again, asks the node what it holds,
//! and sends only the rest. Before, every cut started the transfer over with a newer state.
#![cfg(all(feature = "mux", feature = "testing"))]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plus_quorum::testing::{incompressible, loopback_addrs};
use plus_quorum::{Cluster, Config, MemStorage, MuxConfig, MuxNode, RemoteNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw: whether it cut a connection, and the bytes it forwarded towards the
/// node after that.
#[derive(Default)]
struct Seen {
    cut: AtomicBool,
    after_cut: AtomicUsize,
}

/// Forwards connections to `to`; the first one is cut once `cut_after` bytes have gone through
/// towards `to`, the later ones pass whole. Returns its address, and what it saw.
async fn cutting_proxy(to: String, cut_after: usize) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let flag = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(&to).await else { continue };
            let after_cut = flag.cut.load(Ordering::SeqCst);
            let budget = if after_cut { usize::MAX } else { cut_after };
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = in_read.read(&mut buf).await {
                    if n == 0 || out_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if after_cut {
                        flag.after_cut.fetch_add(n, Ordering::SeqCst);
                    }
                    if sent >= budget && !flag.cut.swap(true, Ordering::SeqCst) {
                        break;
                    }
                }
                back.abort();
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_snapshot_transfer_cut_half_way_resumes_where_it_stopped() {
    let ids = [1u64, 2, 3];
    let addrs = loopback_addrs(&ids).await.unwrap();
    let config = |id: u64| {
        let mut config = Config::new(id, ids.to_vec());
        config.snapshot_threshold = 5;
        // Node 3 is not there while the state is written: the log goes, it needs a snapshot.
        config.catch_up_log_bytes = 0;
        config
    };
    let (proxy, seen) = cutting_proxy(addrs[&3].clone(), 12 << 20).await;
    // Nodes 1 and 2 reach node 3 through the proxy.
    let mut via_proxy = addrs.clone();
    via_proxy.insert(3, proxy);
    let mut nodes = Vec::new();
    for id in [1, 2] {
        let node = MuxNode::start(config(id), MemStorage::new(), &via_proxy, MuxConfig::default());
        nodes.push(node.await.unwrap());
    }
    let remotes: Vec<RemoteNode> = [1, 2]
        .iter()
        .map(|id| RemoteNode::connect(*id, &addrs[id], &MuxConfig::default()).unwrap())
        .collect();
    let mut cluster = Cluster::new(remotes);
    cluster.deadline = Duration::from_secs(20);
    for i in 0..30 {
        cluster.set(&format!("bulk/{i:02}"), incompressible(1 << 20, i + 1)).await.unwrap();
    }
    let last = cluster.set("last", "x").await.unwrap();

    let three = MuxNode::start(config(3), MemStorage::new(), &addrs, MuxConfig::default());
    nodes.push(three.await.unwrap());
    let caught_up = async {
        loop {
            let status = nodes[2].handle.status().await.unwrap();
            if status.applied >= last {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let in_time = tokio::time::timeout(Duration::from_secs(60), caught_up).await;
    let resumed: HashMap<usize, u64> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.transport().resumed_transfer_bytes()))
        .collect();
    let value = nodes[2].handle.local_get("bulk/29").await;
    for node in &nodes {
        node.stop().await;
    }
    assert!(in_time.is_ok(), "node 3 did not catch up within 60 s");
    assert!(seen.cut.load(Ordering::SeqCst), "the proxy cut the transfer");
    // 30 MiB that no compressor shrinks went in 12 MiB before the cut: resumed, the rest is
    // about 18 MiB; started over, it would be 30 MiB again.
    let after_cut = seen.after_cut.load(Ordering::SeqCst);
    assert!(after_cut < 26 << 20, "{after_cut} bytes after the cut: the transfer started over");
    let resumed: u64 = resumed.values().sum();
    assert!(resumed >= 8 << 20, "the leader says only {resumed} bytes were not sent again");
    assert_eq!(value.unwrap().unwrap().value, incompressible(1 << 20, 30));
}
