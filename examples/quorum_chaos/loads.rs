//! Loads a real platform puts beside the checked clients, that must not cost the cluster a
//! write or its linearizability: a client that leaks leases (granted, never kept alive or
//! revoked), and a watcher that pipelines polls from the first revision and never reads the
//! answers (the node must cut it off, not hold its answers). Large values travel with the
//! writers (every tenth put of one writer is 64 KiB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use plus_quorum::{Cluster, KeyRange, NodeId, RemoteNode, WatchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The size of a writer's large values.
pub(crate) const LARGE_VALUE: usize = 64 * 1024;

/// A large value for the put of `small` (`wW-N`): `wW-N:` then hex digits of a stream seeded by
/// `n`, [`LARGE_VALUE`] bytes in all. lz4 finds nothing to repeat in it.
pub(crate) fn large_value(small: &str, n: u64) -> String {
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut value = format!("{small}:");
    while value.len() < LARGE_VALUE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.push_str(&format!("{state:016x}"));
    }
    value
}

/// Whether `value` is what a writer sent for `small` (`vN`): itself, or its large form.
pub(crate) fn sent_for(small: &str, value: &str) -> bool {
    value == small
        || value.strip_prefix(small).and_then(|rest| rest.strip_prefix(':')).is_some_and(|hex| {
            value.len() >= LARGE_VALUE && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// What the loads did.
#[derive(Debug, Default)]
pub(crate) struct Loads {
    /// Leases granted and left to expire.
    pub(crate) leaked: AtomicU64,
    /// Slow watchers whose connection ended (cut off as slow readers, or their node killed).
    pub(crate) slow_watchers_ended: AtomicU64,
    /// Slow watchers started.
    pub(crate) slow_watchers: AtomicU64,
}

/// Grants a short lease every 20 ms until `deadline`, and forgets it.
pub(crate) async fn leak_leases(
    cluster: Cluster<RemoteNode>,
    loads: Arc<Loads>,
    deadline: Instant,
) {
    while Instant::now() < deadline {
        if cluster.grant_lease(Duration::from_secs(2)).await.is_ok() {
            loads.leaked.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Half-way to `deadline` (once the history holds something), opens a connection to the
/// leader (only a leader answers watch polls), pipelines `polls` watch polls from revision 1
/// and reads nothing until the node ends the connection (or `deadline` passes).
pub(crate) async fn slow_watcher(
    cluster: Cluster<RemoteNode>,
    addrs: HashMap<NodeId, String>,
    polls: u32,
    loads: Arc<Loads>,
    deadline: Instant,
) {
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now()) / 2).await;
    let Some(addr) = cluster.leader().await.and_then(|id| addrs.get(&id).cloned()) else {
        return;
    };
    // The nodes may still be starting: try for a few seconds.
    let mut stream = None;
    for _ in 0..50 {
        if let Ok(connected) = tokio::net::TcpStream::connect(&addr).await {
            stream = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(mut stream) = stream else { return };
    loads.slow_watchers.fetch_add(1, Ordering::Relaxed);
    // A restarted leader's history starts at its restart: ask where it starts first.
    let Some(from) = oldest_revision(&mut stream).await else { return };
    let request = WatchRequest { range: KeyRange::Prefix(String::new()), from, max_events: 10_000 };
    let body = plus_quorum::testing::watch_request(request, 0);
    for identity in 2..=polls {
        let frame = request_frame(identity, &body);
        let write = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&frame)).await;
        if !matches!(write, Ok(Ok(()))) {
            break;
        }
    }
    // Unread until the deadline; then drain to see whether the node ended it.
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    let mut buffer = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    if ended == Ok(true) {
        loads.slow_watchers_ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// The request frame carrying `body` as request `identity`.
fn request_frame(identity: u32, body: &[u8]) -> Vec<u8> {
    let mut frame = b"REQ".to_vec();
    frame.extend_from_slice(&identity.to_be_bytes());
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(body);
    frame.extend_from_slice(plus_mux::TRAILER);
    frame
}

/// Polls once from revision 1 and reads the answer: 1 when the history reaches back there,
/// else the oldest revision the node still has (its `Compacted` answer says).
async fn oldest_revision(stream: &mut tokio::net::TcpStream) -> Option<u64> {
    let request = WatchRequest { range: KeyRange::Prefix(String::new()), from: 1, max_events: 1 };
    let body = plus_quorum::testing::watch_request(request, 0);
    stream.write_all(&request_frame(1, &body)).await.ok()?;
    let mut header = [0u8; plus_mux::HEADER_LEN];
    stream.read_exact(&mut header).await.ok()?;
    let len = u32::from_be_bytes([header[7], header[8], header[9], header[10]]) as usize;
    let mut reply = vec![0u8; len + plus_mux::TRAILER.len()];
    stream.read_exact(&mut reply).await.ok()?;
    reply.truncate(len);
    match plus_quorum::testing::reply_error(&reply) {
        Ok(None) => Some(1),
        Ok(Some(plus_quorum::StoreError::Client(plus_quorum::ClientError::Compacted {
            oldest,
            ..
        }))) => Some(oldest),
        _ => None,
    }
}
