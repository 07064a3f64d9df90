//! The symmetric peer over in-memory streams, mostly in paused (simulated) time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use plus_mux::{
    CloseReason, Config, Connection, Frame, FrameCodec, Handler, HandlerError, HandlerErrorWire,
    Kind, NoHandler, ReconnectConfig, ReconnectingClient, RequestError, TcpConnector,
    WhileDisconnected,
};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio_util::codec::{Encoder, Framed};

/// Echoes; `sleep:MS` answers after MS milliseconds; `fail` fails; `panic` panics.
#[derive(Default)]
struct Echo {
    orphans: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(ms) = text.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        match text.as_str() {
            "fail" => Err(HandlerError::new("no such thing")),
            "panic" => panic!("handler bug"),
            _ => Ok(request),
        }
    }

    async fn on_orphan_response(&self, _: Bytes) {
        self.orphans.fetch_add(1, Ordering::SeqCst);
    }
}

fn pair(config: Config) -> (Connection, Connection, Arc<Echo>, Arc<Echo>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ha, hb) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let left = Connection::new(a, config.clone(), Arc::clone(&ha) as Arc<dyn Handler>).unwrap();
    let right = Connection::new(b, config, Arc::clone(&hb) as Arc<dyn Handler>).unwrap();
    (left, right, ha, hb)
}

#[tokio::test]
async fn both_sides_request_concurrently() {
    let (left, right, _, _) = pair(Config::default());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (l, r) = (left.clone(), right.clone());
        tasks.push(tokio::spawn(async move {
            let a = l.request(format!("from-left-{i}")).await.unwrap();
            let b = r.request(format!("from-right-{i}")).await.unwrap();
            assert_eq!(a, format!("from-left-{i}"));
            assert_eq!(b, format!("from-right-{i}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(left.counters().pending, 0);
    assert_eq!(right.counters().pending, 0);
}

#[tokio::test(start_paused = true)]
async fn timeouts_clean_the_pending_table_and_late_responses_are_counted() {
    let config = Config {
        request_timeout: Duration::from_millis(100),
        max_in_flight: 20_000,
        max_concurrent_handlers: 20_000,
        ..Config::default()
    };
    let (client, _server, _, _) = pair(config);
    let mut tasks = Vec::new();
    for _ in 0..10_000 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { c.request("sleep:200").await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(RequestError::Timeout));
    }
    let counters = client.counters();
    assert_eq!(counters.pending, 0);
    assert_eq!(counters.timeouts, 10_000);
    // The answers arrive after their requests gave up: counted and dropped, not orphans.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counters = client.counters();
    assert_eq!(counters.late_responses, 10_000);
    assert_eq!(counters.orphans, 0);
}

#[tokio::test(start_paused = true)]
async fn each_request_times_out_at_its_own_deadline() {
    // One expiry task serves the connection: a short deadline behind a long one must still
    // fire on time, and the long one must not fire with it.
    let (client, _server, _, _) = pair(Config::default());
    let started = tokio::time::Instant::now();
    let long = {
        let c = client.clone();
        tokio::spawn(
            async move { c.request_with_timeout("sleep:60000", Duration::from_secs(30)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let short = client.request_with_timeout("sleep:60000", Duration::from_millis(100)).await;
    assert_eq!(short, Err(RequestError::Timeout));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited <= Duration::from_millis(110),
        "the short request gave up after {waited:?}"
    );
    assert!(!long.is_finished(), "the long request is still waiting");
    assert_eq!(client.counters().pending, 1);
    assert_eq!(long.await.unwrap(), Err(RequestError::Timeout));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_millis(30_010));
    assert_eq!(client.counters().timeouts, 2);
    assert_eq!(client.counters().pending, 0);
}

#[tokio::test(start_paused = true)]
async fn an_async_request_holds_its_identity_until_its_expiry() {
    let config = Config { async_response_timeout: Duration::from_millis(500), ..Config::default() };
    let (client, _server, _, _) = pair(config);
    client.send_async("sleep:60000").await.unwrap();
    tokio::time::sleep(Duration::from_millis(490)).await;
    assert_eq!(client.counters().pending, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let counters = client.counters();
    assert_eq!(counters.pending, 0, "the identity is free after the async expiry");
    assert_eq!(counters.timeouts, 0, "an async request's expiry is not a timeout");
}

#[tokio::test(start_paused = true)]
async fn peer_close_fails_pending_requests_at_once() {
    let (client, server, _, _) = pair(Config::default());
    let c = client.clone();
    let waiting = tokio::spawn(async move { c.request("sleep:60000").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = tokio::time::Instant::now();
    server.close();
    let result = waiting.await.unwrap();
    assert_eq!(result, Err(RequestError::Lost(CloseReason::PeerClosed)), "it was in flight");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(client.counters().pending, 0);
    assert!(matches!(client.request("x").await, Err(RequestError::Closed(_))));
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_gives_backpressure_not_memory_growth() {
    let config = Config {
        max_concurrent_handlers: 2,
        request_timeout: Duration::from_secs(3600),
        max_in_flight: 100_000,
        write_queue: 16,
        ..Config::default()
    };
    let (a, b) = tokio::io::duplex(4096);
    let server_handler = Arc::new(Echo::default());
    let server =
        Connection::new(a, config.clone(), Arc::clone(&server_handler) as Arc<dyn Handler>)
            .unwrap();
    let client = Connection::new(b, config, Arc::new(NoHandler)).unwrap();
    for _ in 0..1000 {
        let c = client.clone();
        tokio::spawn(async move { c.request("sleep:1000").await });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = server.counters();
    assert!(s.in_flight <= 2, "{s:?}");
    // The server stopped reading: it has taken in about what the pipe and one frame hold.
    assert!(s.bytes_in < 4096 + 1024, "server read {} bytes while full", s.bytes_in);
    assert_eq!(server_handler.peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn handler_errors_and_panics_reach_the_requester() {
    let (client, _server, _, _) = pair(Config::default());
    assert_eq!(client.request("fail").await, Err(RequestError::Remote("no such thing".into())));
    assert_eq!(client.request("panic").await, Err(RequestError::Remote("handler panicked".into())));
    let (go_style, server, _, _) =
        pair(Config { handler_errors: HandlerErrorWire::Empty, ..Config::default() });
    assert_eq!(go_style.request("fail").await, Ok(Bytes::new()));
    assert_eq!(server.counters().handler_errors, 1);
}

#[tokio::test]
async fn async_requests_go_to_the_orphan_hook() {
    let (client, _server, client_handler, _) = pair(Config::default());
    for _ in 0..10 {
        client.send_async("ping").await.unwrap();
    }
    // A sync request after them: frames are answered concurrently, so wait for the count.
    client.request("sync").await.unwrap();
    for _ in 0..100 {
        if client_handler.orphans.load(Ordering::SeqCst) == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client_handler.orphans.load(Ordering::SeqCst), 10);
    assert_eq!(client.counters().orphans, 10);
    assert_eq!(client.counters().late_responses, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_request_removes_it() {
    let (client, _server, _, _) = pair(Config::default());
    let fut = client.request("sleep:10000");
    let _ = tokio::time::timeout(Duration::from_millis(50), fut).await;
    assert_eq!(client.counters().pending, 0);
}

/// A raw peer speaking frames directly, to send what a well-behaved peer never would.
fn raw(config: Config) -> (Connection, Framed<DuplexStream, FrameCodec>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let conn = Connection::new(a, config, Arc::new(Echo::default())).unwrap();
    (conn, Framed::new(b, FrameCodec::default()))
}

#[tokio::test]
async fn identity_855306_and_bodies_with_the_trailer_work() {
    let (_conn, mut peer) = raw(Config::default());
    peer.send(Frame::request(855_306, &b"a\r\r\nb"[..])).await.unwrap();
    let answer = peer.next().await.unwrap().unwrap();
    assert_eq!(
        answer,
        Frame { kind: Kind::Response, identity: 855_306, body: Bytes::from_static(b"a\r\r\nb") }
    );
}

#[tokio::test]
async fn garbage_closes_with_a_protocol_error_and_fails_pending() {
    let (conn, mut peer) = raw(Config::default());
    let c = conn.clone();
    let waiting = tokio::spawn(async move { c.request("hello").await });
    let request = peer.next().await.unwrap().unwrap();
    assert_eq!(request.identity, 1, "each side numbers its requests from 1");
    peer.get_mut().write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    assert!(matches!(waiting.await.unwrap(), Err(RequestError::Lost(CloseReason::Protocol(_)))));
    assert_eq!(conn.counters().protocol_errors, 1);
    assert!(
        matches!(conn.closed().await, CloseReason::Protocol(m) if m.contains("unknown frame type"))
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_closes() {
    let (client, server, _, _) = pair(Config::default());
    let c = client.clone();
    let waiting = tokio::spawn(async move { c.request("sleep:300").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(waiting.await.unwrap().unwrap(), "sleep:300", "the in-flight request was answered");
    assert_eq!(server.close_reason(), Some(CloseReason::Local));
    assert_eq!(server.request("late").await, Err(RequestError::Closed(CloseReason::Local)));
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_heartbeat() {
    let (conn, _peer) =
        raw(Config { idle_timeout: Some(Duration::from_secs(30)), ..Config::default() });
    assert_eq!(conn.closed().await, CloseReason::IdleTimeout);
    // A raw peer never answers heartbeats.
    let (conn, _peer) =
        raw(Config { heartbeat: Some(Duration::from_secs(10)), ..Config::default() });
    assert_eq!(conn.closed().await, CloseReason::HeartbeatTimeout);
    // Two plus peers with heartbeats on keep each other alive through idle periods.
    let config = Config {
        heartbeat: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(25)),
        ..Config::default()
    };
    let (left, right, _, _) = pair(config);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(left.close_reason(), None);
    assert_eq!(right.request("still here").await.unwrap(), "still here");
}

#[tokio::test]
async fn body_limits_apply_both_ways() {
    let config = Config { max_body: 16, ..Config::default() };
    let (client, _server, _, _) = pair(config);
    assert_eq!(
        client.request(vec![0u8; 17]).await,
        Err(RequestError::BodyTooLarge { len: 17, max: 16 })
    );
    let (conn, mut peer) = raw(Config { max_body: 16, ..Config::default() });
    let mut huge = BytesMut::new();
    FrameCodec::default().encode(Frame::request(1, vec![0u8; 1000]), &mut huge).unwrap();
    peer.get_mut().write_all(&huge).await.unwrap();
    assert!(
        matches!(conn.closed().await, CloseReason::Protocol(m) if m.contains("above the limit"))
    );
}

#[tokio::test]
async fn reconnecting_client_comes_back_after_the_server_drops_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_conns = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = Arc::clone(&server_conns);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn =
                Connection::from_tcp(stream, Config::default(), Arc::new(Echo::default())).unwrap();
            accepted.lock().unwrap().push(conn);
        }
    });
    let reconnect = ReconnectConfig {
        initial_backoff: Duration::from_millis(10),
        while_disconnected: WhileDisconnected::Wait(Duration::from_secs(5)),
        ..ReconnectConfig::default()
    };
    let client = ReconnectingClient::new(
        TcpConnector::new(addr.to_string()),
        Config::default(),
        reconnect,
        Arc::new(NoHandler),
    )
    .unwrap();
    assert_eq!(client.request("one").await.unwrap(), "one");
    let first = server_conns.lock().unwrap()[0].clone();
    first.close();
    first.closed().await;
    // The next request waits for the new connection.
    let mut answer = client.request("two").await;
    if matches!(answer, Err(RequestError::Closed(_) | RequestError::Lost(_))) {
        // It raced the old connection's close; the client is reconnecting now.
        answer = client.request("two").await;
    }
    assert_eq!(answer.unwrap(), "two");
    assert_eq!(server_conns.lock().unwrap().len(), 2);
    client.close();
}

#[test]
fn backoff_grows_and_caps() {
    let r = ReconnectConfig::default();
    assert_eq!(r.backoff(1), Duration::from_millis(100));
    assert_eq!(r.backoff(2), Duration::from_millis(200));
    assert_eq!(r.backoff(4), Duration::from_millis(800));
    assert_eq!(r.backoff(30), Duration::from_secs(10));
}

/// By default a request the Go implementation could not frame fails at once with a typed
/// error (it would have been lost to a timeout); between plus peers the check can go.
#[tokio::test(start_paused = true)]
async fn requests_the_go_peer_cannot_frame_fail_at_once_by_default() {
    let (client, _server, _, _) = pair(Config::default());
    let started = tokio::time::Instant::now();
    let trailer_inside = client.request(&b"a\r\r\nb"[..]).await;
    assert_eq!(trailer_inside, Err(RequestError::NotGoFramable { len: 5 }));
    // 855,306 is 00 0D 0D 0A: the length field itself holds the trailer.
    let length_breaks = client.request(vec![0u8; 855_306]).await;
    assert_eq!(length_breaks, Err(RequestError::NotGoFramable { len: 855_306 }));
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once, not after a timeout");
    let (client, _server, _, _) = pair(Config { go_compatible: false, ..Config::default() });
    assert_eq!(client.request(&b"a\r\r\nb"[..]).await.unwrap(), &b"a\r\r\nb"[..]);
}

/// A peer that stops reading but keeps its end open (stuck, not gone): with heartbeats on, it
/// is found out within two heartbeat intervals, and every request waiting on it fails at once
/// rather than at its own deadline.
#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_detected_within_two_heartbeats() {
    let every = Duration::from_secs(2);
    let (a, stuck) = tokio::io::duplex(1 << 12); // the stuck end is held, never read
    let config = Config { heartbeat: Some(every), ..Config::default() };
    let conn = Connection::new(a, config, Arc::new(Echo::default())).unwrap();
    let started = tokio::time::Instant::now();
    // Requests that fill the pipe and then wait: their own timeout is far away.
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let result =
                    conn.request_with_timeout(vec![7u8; 2_000], Duration::from_secs(3600)).await;
                (result, tokio::time::Instant::now())
            })
        })
        .collect();
    assert_eq!(conn.closed().await, CloseReason::HeartbeatTimeout);
    let detected = started.elapsed();
    assert!(detected <= 2 * every, "detected after {detected:?}");
    for task in waiting {
        let (result, at) = task.await.unwrap();
        assert!(
            matches!(
                result,
                Err(RequestError::Lost(CloseReason::HeartbeatTimeout)
                    | RequestError::Closed(CloseReason::HeartbeatTimeout))
            ),
            "{result:?}"
        );
        assert!(at.duration_since(started) <= detected, "failed with the close, not later");
    }
    drop(stuck);
}

/// The same over real TCP on 127.0.0.1: the peer accepts, never reads, keeps the socket open.
#[tokio::test]
async fn a_tcp_peer_that_stops_reading_is_detected_by_the_heartbeat() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let every = Duration::from_millis(200);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let config = Config { heartbeat: Some(every), ..Config::default() };
    let conn = Connection::from_tcp(stream, config, Arc::new(Echo::default())).unwrap();
    let pending = {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.request_with_timeout(vec![1u8; 1 << 20], Duration::from_secs(3600)).await
        })
    };
    // Bounded so that a missed detection fails the test instead of hanging it.
    let reason = tokio::time::timeout(Duration::from_secs(20), conn.closed()).await.unwrap();
    assert_eq!(reason, CloseReason::HeartbeatTimeout);
    let result = tokio::time::timeout(Duration::from_secs(1), pending).await.unwrap().unwrap();
    assert!(result.is_err(), "{result:?}");
    holder.abort();
}

/// With `max_in_flight` requests out, the next one waits for a slot: it goes when an answer
/// frees one, fails with `SlotTimeout` when none frees in time, and with `Closed` at once
/// when the connection closes while it waits.
#[tokio::test(start_paused = true)]
async fn a_request_waits_for_a_free_slot_and_no_longer() {
    let config = Config {
        max_in_flight: 2,
        slot_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let (client, _server, _, _) = pair(config);
    let slow = |ms: u64| {
        let client = client.clone();
        tokio::spawn(async move { client.request(format!("sleep:{ms}")).await })
    };
    let (first, second) = (slow(1_000), slow(5_000));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(client.counters().pending, 2);
    // No slot frees within 500 ms.
    let refused = client.request("late").await;
    assert!(matches!(refused, Err(RequestError::SlotTimeout)), "{refused:?}");
    // The first answer (at 1 s) frees a slot for a request waiting since 600 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.request("next").await })
    };
    assert_eq!(first.await.unwrap().unwrap(), "sleep:1000");
    assert_eq!(waiting.await.unwrap().unwrap(), "next");
    // A request waiting for a slot when the connection closes is told so.
    let third = slow(5_000);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let blocked = {
        let client = client.clone();
        tokio::spawn(async move { client.request("blocked").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    client.close();
    let told = tokio::time::timeout(Duration::from_millis(100), blocked).await;
    assert!(matches!(told, Ok(Ok(Err(RequestError::Closed(_))))), "{told:?}");
    assert!(matches!(second.await.unwrap(), Err(RequestError::Lost(_))));
    assert!(matches!(third.await.unwrap(), Err(RequestError::Lost(_))));
}
