//! What a peer can hold: frames in progress against a shared memory budget, frames that stall,
//! frames over the size limit, connections over the cap, and an accept loop whose listener
//! fails. In paused (simulated) time over in-memory streams.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use plus_mux::{
    Accept, CloseReason, Config, Connection, ERROR_PREFIX, Frame, FrameCodec, Handler,
    HandlerError, Kind, MemoryBudget, NoHandler, Peer, ServerConfig, serve,
};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio_util::codec::Framed;

struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        Ok(request)
    }
}

fn raw(config: &Config) -> (Connection, Framed<DuplexStream, FrameCodec>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let conn = Connection::new(a, config.clone(), Arc::new(Echo)).unwrap();
    (conn, Framed::new(b, FrameCodec::new(1 << 20)))
}

/// A request header declaring `len` body bytes, then `sent` of them.
fn partial_request(identity: u32, len: u32, sent: usize) -> Vec<u8> {
    let mut bytes = b"REQ".to_vec();
    bytes.extend_from_slice(&identity.to_be_bytes());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.resize(bytes.len() + sent, b'x');
    bytes
}

/// The error message of an error response, or a panic.
fn error_message(frame: &Frame) -> String {
    assert_eq!(frame.kind, Kind::Response);
    let body = frame.body.strip_prefix(ERROR_PREFIX).expect("an error response");
    String::from_utf8(body.to_vec()).unwrap()
}

#[test]
fn the_defaults_reap_stalled_peers_and_share_one_budget() {
    let config = Config::default();
    assert_eq!(config.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.frame_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.memory_budget, MemoryBudget::global());
    let bad = Config { max_body: 2 << 20, memory_budget: MemoryBudget::new(1 << 20), ..config };
    assert!(bad.validate().is_err(), "a body the budget can never hold is refused");
}

/// Stalled frames hold their declared size from the shared budget, a frame the budget cannot
/// hold is refused with the reason, and the frame timeout gives everything back.
#[tokio::test(start_paused = true)]
async fn frames_in_progress_are_bounded_by_a_shared_budget_and_reaped_when_stalled() {
    let budget = MemoryBudget::new(1 << 20);
    let config = Config {
        max_body: 512 << 10,
        memory_budget: budget.clone(),
        frame_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    };
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let (conn, mut peer) = raw(&config);
        peer.get_mut().write_all(&partial_request(1, 400_000, 100_000)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        stalled.push((conn, peer));
    }
    assert_eq!(budget.available(), (1 << 20) - 800_000, "each stalled frame holds its size");

    let (conn, mut peer) = raw(&config);
    peer.get_mut().write_all(&partial_request(7, 400_000, 10)).await.unwrap();
    let answer = peer.next().await.unwrap().unwrap();
    assert_eq!(answer.identity, 7);
    assert!(error_message(&answer).contains("memory budget"), "{}", error_message(&answer));
    assert!(peer.next().await.is_none(), "then the connection closes");
    assert!(matches!(conn.closed().await, CloseReason::OverBudget(_)));
    assert_eq!(conn.counters().over_budget_frames, 1);

    // The stalled frames are reaped within 1.25 frame timeouts, and their bytes come back.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    for (conn, _) in &stalled {
        assert_eq!(conn.close_reason(), Some(CloseReason::FrameTimeout));
    }
    assert_eq!(budget.available(), 1 << 20);
}

/// A peer that trickles a frame byte by byte is still bounded by the frame timeout.
#[tokio::test(start_paused = true)]
async fn a_trickled_frame_is_reaped_too() {
    let config = Config { frame_timeout: Some(Duration::from_secs(1)), ..Config::default() };
    let (conn, mut peer) = raw(&config);
    let frame = partial_request(1, 1_000, 1_000);
    for byte in frame.iter().take(500) {
        if conn.close_reason().is_some() {
            break;
        }
        let _ = peer.get_mut().write_all(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(conn.close_reason(), Some(CloseReason::FrameTimeout));
}

/// Whole frames keep a connection busy without tripping the frame timeout.
#[tokio::test(start_paused = true)]
async fn whole_frames_never_trip_the_frame_timeout() {
    let config = Config { frame_timeout: Some(Duration::from_millis(100)), ..Config::default() };
    let (conn, mut peer) = raw(&config);
    for i in 1..=50 {
        peer.send(Frame::request(i, Bytes::from_static(b"ping"))).await.unwrap();
        assert_eq!(peer.next().await.unwrap().unwrap().body, "ping");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(conn.close_reason(), None);
}

/// A request whose header names a body over the limit is answered with the reason, counted,
/// and the connection closes (its body cannot be skipped safely).
#[tokio::test]
async fn a_request_over_the_size_limit_is_answered_with_the_reason() {
    let config = Config { max_body: 1_024, ..Config::default() };
    let (conn, mut peer) = raw(&config);
    peer.get_mut().write_all(&partial_request(42, 1_025, 0)).await.unwrap();
    let answer = peer.next().await.unwrap().unwrap();
    assert_eq!(answer.identity, 42);
    assert!(error_message(&answer).contains("above the limit of 1024"), "{answer:?}");
    assert!(
        matches!(conn.closed().await, CloseReason::Protocol(m) if m.contains("above the limit"))
    );
    assert_eq!(conn.counters().oversized_frames, 1);
}

/// Streams handed out by a test: each accept fails while `failures` is positive, then takes
/// the next queued stream (or waits for one).
#[derive(Clone, Default)]
struct Scripted {
    failures: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    streams: Arc<Mutex<VecDeque<DuplexStream>>>,
}

impl Accept for Scripted {
    type Stream = DuplexStream;

    async fn accept(&mut self) -> std::io::Result<(DuplexStream, Peer)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            // What accept(2) says when the process is out of file descriptors.
            return Err(std::io::Error::from_raw_os_error(24));
        }
        loop {
            if let Some(stream) = self.streams.lock().unwrap().pop_front() {
                return Ok((stream, Peer::default()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Scripted {
    /// Queues a stream for the server and returns a client connection over its other end.
    fn connect(&self) -> Connection {
        let (a, b) = tokio::io::duplex(1 << 16);
        self.streams.lock().unwrap().push_back(a);
        Connection::new(b, Config::default(), Arc::new(NoHandler)).unwrap()
    }
}

/// Accept errors (EMFILE) back off instead of spinning, and the loop recovers when they stop.
#[tokio::test(start_paused = true)]
async fn accept_errors_back_off_and_the_loop_recovers() {
    let acceptor = Scripted::default();
    acceptor.failures.store(1_000_000, Ordering::SeqCst);
    let server = serve(acceptor.clone(), ServerConfig::default(), Arc::new(Echo)).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = acceptor.calls.load(Ordering::SeqCst);
    // 10, 20, ... 640 ms, then 1 s each: about 16 tries in 10 s, where a spin makes millions.
    assert!((5..=30).contains(&calls), "{calls} accept calls in 10 s");
    assert_eq!(server.counters().accept_errors, calls as u64);
    acceptor.failures.store(0, Ordering::SeqCst);
    let client = acceptor.connect();
    assert_eq!(client.request("back").await.unwrap(), "back");
    assert_eq!(server.counters().accepted, 1);
    server.stop();
}

/// At the cap the loop stops accepting until a connection closes.
#[tokio::test(start_paused = true)]
async fn the_connection_cap_holds_new_peers_until_one_leaves() {
    let acceptor = Scripted::default();
    let mut config = ServerConfig::default();
    config.max_connections = 2;
    let server = serve(acceptor.clone(), config, Arc::new(Echo)).unwrap();
    let first = acceptor.connect();
    let second = acceptor.connect();
    assert_eq!(first.request("1").await.unwrap(), "1");
    assert_eq!(second.request("2").await.unwrap(), "2");
    let third = acceptor.connect();
    let waiting = tokio::spawn(async move { third.request("3").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the third peer waits while two are open");
    assert_eq!(server.counters().accepted, 2);
    first.close();
    assert_eq!(waiting.await.unwrap().unwrap(), "3");
    assert_eq!(server.counters().accepted, 3);
    assert_eq!(server.counters().open, 2);
    server.stop();
}

/// A peer that pipelines requests and never reads the answers: once more than
/// `max_unread_bytes` of answers wait for it, the connection closes as a slow reader, instead
/// of this side holding every answer (a store's watcher that stopped reading took its leader
/// to 3 GiB).
#[tokio::test]
async fn a_peer_that_never_reads_its_answers_is_cut_off() {
    let config = Config { max_unread_bytes: 4 << 20, ..Config::default() };
    // A small pipe: the answers cannot all sit in it.
    let (a, b) = tokio::io::duplex(64 << 10);
    let conn = Connection::new(a, config, Arc::new(Echo)).unwrap();
    let (_unread, mut write) = tokio::io::split(b);
    let body = vec![b'x'; 256 << 10];
    let writing = tokio::spawn(async move {
        let mut codec = FrameCodec::new(1 << 20);
        for identity in 1..=64u32 {
            let mut frame = bytes::BytesMut::new();
            tokio_util::codec::Encoder::encode(
                &mut codec,
                Frame::request(identity, body.clone()),
                &mut frame,
            )
            .unwrap();
            if write.write_all(&frame).await.is_err() {
                return identity;
            }
        }
        65
    });
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await.unwrap();
    assert!(matches!(reason, CloseReason::SlowReader(n) if n > 4 << 20), "{reason:?}");
    writing.abort();
}
