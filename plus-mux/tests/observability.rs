//! What an operator sees of connections: a log line per close, louder when it was not a normal
//! one, and the counters through the `metrics` facade.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use plus_mux::{Config, Connection, Handler, HandlerError};
use tokio::io::AsyncWriteExt;

struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        Ok(request)
    }
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `body` on a paused current-thread runtime with a log capture and a metrics recorder,
/// returning the log and the series (name, value).
fn observe<F: std::future::Future<Output = ()>>(
    body: impl FnOnce() -> F,
) -> (String, Vec<(String, DebugValue)>) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || sink.clone())
        .finish();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(body());
        });
    });
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    (String::from_utf8(captured.0.lock().unwrap().clone()).unwrap(), series)
}

fn value<'a>(series: &'a [(String, DebugValue)], name: &str) -> &'a DebugValue {
    &series.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}: {series:?}")).1
}

#[test]
fn connections_report_their_traffic_and_say_why_they_closed() {
    let (log, series) = observe(|| async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let left = Connection::new(a, Config::default(), Arc::new(Echo)).unwrap();
        let right = Connection::new(b, Config::default(), Arc::new(Echo)).unwrap();
        for i in 0..5 {
            left.request(format!("ping {i}")).await.unwrap();
        }
        assert_eq!(left.counters().requests_sent, 5);
        assert_eq!(right.counters().requests_served, 5);
        left.close();
        right.closed().await;
        // A peer that sends garbage is a protocol error, and a warning.
        let (c, mut d) = tokio::io::duplex(1 << 16);
        let victim = Connection::new(c, Config::default(), Arc::new(Echo)).unwrap();
        d.write_all(b"XYZ\0\0\0\x01\0\0\0\x01!").await.unwrap();
        victim.closed().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    assert!(
        log.lines().any(|l| l.contains("DEBUG")
            && l.contains("plus-mux connection closed reason=closed locally requests_sent=5")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("plus-mux connection closed reason=protocol error")),
        "{log}"
    );
    assert!(matches!(value(&series, "plus_mux_requests_sent_total"), DebugValue::Counter(5)));
    assert!(matches!(value(&series, "plus_mux_requests_served_total"), DebugValue::Counter(5)));
    assert!(matches!(value(&series, "plus_mux_protocol_errors_total"), DebugValue::Counter(1)));
    assert!(
        matches!(value(&series, "plus_mux_bytes_out_total"), DebugValue::Counter(n) if *n > 0),
        "{series:?}"
    );
    assert!(
        matches!(value(&series, "plus_mux_connections_open"), DebugValue::Gauge(g) if g.0 == 0.0),
        "every connection closed: {series:?}"
    );
}
