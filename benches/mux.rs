//! plus-mux beside yamux (one stream per request) and a plain TCP request/response loop, on
//! loopback, one group per workload so each reads as a ratio; and plus-mux over mutual TLS
//! beside itself over plain TCP (the price of TLS on one connection).
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use plus_mux::Connector as _;
use plus_mux::certs::Ca;
use plus_mux::{
    Config, Connection, Handler, HandlerError, NoHandler, Server, ServerConfig, Tls, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::ProcessCpu;

struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        Ok(request)
    }
}

// ---- plus-mux --------------------------------------------------------------------------------

async fn mux_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let conn = Connection::from_tcp(s, Config::default(), Arc::new(Echo)).unwrap();
            tokio::spawn(async move { conn.closed().await });
        }
    });
    addr
}

async fn mux_client(addr: SocketAddr) -> Connection {
    let s = TcpStream::connect(addr).await.unwrap();
    Connection::from_tcp(
        s,
        Config { max_in_flight: 4096, ..Config::default() },
        Arc::new(NoHandler),
    )
    .unwrap()
}

async fn mux_round(conn: &Connection, body: &Bytes, requests: usize, concurrency: usize) {
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (conn, body) = (conn.clone(), body.clone());
        let mine = requests / concurrency + usize::from(w < requests % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                let answer = conn.request(body.clone()).await.unwrap();
                assert_eq!(answer.len(), body.len());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

// ---- plain TCP: length-prefixed echo, pipelined --------------------------------------------

async fn tcp_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (r, w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                let mut w = tokio::io::BufWriter::new(w);
                let mut body = Vec::new();
                loop {
                    let Ok(len) = r.read_u32().await else { return };
                    body.resize(len as usize, 0);
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    w.write_u32(len).await.unwrap();
                    w.write_all(&body).await.unwrap();
                    // Flush when no more requests are already buffered: pipelining-friendly.
                    if r.buffer().is_empty() && w.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `concurrency` requests written in one write, then their answers parsed out of one buffer
/// (a read call per batch of answers, not two per answer): the pipelined floor. At concurrency
/// 1 it is a ping-pong, one request per round trip, and the report says so.
async fn tcp_round(stream: &mut TcpStream, body: &[u8], requests: usize, concurrency: usize) {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let mut batch = Vec::new();
    let mut inbox = bytes::BytesMut::with_capacity(4096);
    let mut done = 0;
    while done < requests {
        let n = concurrency.min(requests - done);
        batch.clear();
        for _ in 0..n {
            batch.extend_from_slice(&frame);
        }
        stream.write_all(&batch).await.unwrap();
        let mut answered = 0;
        while answered < n {
            while inbox.len() >= 4 {
                let len = u32::from_be_bytes(inbox[..4].try_into().unwrap()) as usize;
                if inbox.len() < 4 + len {
                    break;
                }
                assert_eq!(len, body.len());
                bytes::Buf::advance(&mut inbox, 4 + len);
                answered += 1;
            }
            if answered < n {
                assert!(stream.read_buf(&mut inbox).await.unwrap() > 0, "server closed");
            }
        }
        done += n;
    }
}

// ---- yamux: one stream per request ------------------------------------------------------------

type YamuxConn = yamux::Connection<Compat<TcpStream>>;

/// Drives a yamux connection: opens outbound streams on request and polls for inbound ones.
async fn yamux_drive(
    mut conn: YamuxConn,
    mut opens: Option<mpsc::UnboundedReceiver<oneshot::Sender<yamux::Stream>>>,
    serve: bool,
) {
    let mut waiting: VecDeque<oneshot::Sender<yamux::Stream>> = VecDeque::new();
    futures::future::poll_fn(|cx| {
        loop {
            let mut progressed = false;
            if let Some(rx) = opens.as_mut() {
                while let Poll::Ready(Some(tx)) = rx.poll_recv(cx) {
                    waiting.push_back(tx);
                }
            }
            while !waiting.is_empty() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        let _ = waiting.pop_front().unwrap().send(stream);
                        progressed = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(mut stream))) => {
                    progressed = true;
                    if serve {
                        tokio::spawn(async move {
                            let mut len = [0u8; 4];
                            stream.read_exact(&mut len).await.unwrap();
                            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                            stream.read_exact(&mut body).await.unwrap();
                            stream.write_all(&len).await.unwrap();
                            stream.write_all(&body).await.unwrap();
                            stream.close().await.unwrap();
                        });
                    }
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => {}
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
}

fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    cfg.set_max_num_streams(4096);
    cfg
}

async fn yamux_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            let conn = yamux::Connection::new(s.compat(), yamux_config(), yamux::Mode::Server);
            tokio::spawn(yamux_drive(conn, None, true));
        }
    });
    addr
}

async fn yamux_client(addr: SocketAddr) -> mpsc::UnboundedSender<oneshot::Sender<yamux::Stream>> {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let conn = yamux::Connection::new(s.compat(), yamux_config(), yamux::Mode::Client);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(yamux_drive(conn, Some(rx), false));
    tx
}

async fn yamux_request(opens: &mpsc::UnboundedSender<oneshot::Sender<yamux::Stream>>, body: &[u8]) {
    let (tx, rx) = oneshot::channel();
    opens.send(tx).unwrap();
    let mut stream = rx.await.unwrap();
    stream.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).await.unwrap();
    stream.close().await.unwrap();
}

async fn yamux_round(
    opens: &mpsc::UnboundedSender<oneshot::Sender<yamux::Stream>>,
    body: &Bytes,
    requests: usize,
    concurrency: usize,
) {
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (opens, body) = (opens.clone(), body.clone());
        let mine = requests / concurrency + usize::from(w < requests % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                yamux_request(&opens, &body).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

// ---- the groups -------------------------------------------------------------------------------

/// One group per workload, named `{prefix}/{size}B_c{concurrency}`; yamux only where asked
/// (the CPU groups leave it out: it is an order of magnitude off either way).
fn workload<M: Measurement>(
    c: &mut Criterion<M>,
    prefix: &str,
    rt: &Runtime,
    (size, concurrency, requests): (usize, usize, usize),
    with_yamux: bool,
) {
    let body = Bytes::from(vec![7u8; size]);
    let (mux, tcp, yamux) = rt.block_on(async {
        let mux = mux_client(mux_server().await).await;
        let tcp = TcpStream::connect(tcp_server().await).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let yamux = yamux_client(yamux_server().await).await;
        (mux, tcp, yamux)
    });
    let mut group = c.benchmark_group(format!("{prefix}/{size}B_c{concurrency}"));
    group.throughput(Throughput::Elements(requests as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    // The floor's client runs as a task on the runtime, as the mux's requesters do: under
    // `block_on` it would pay a thread hand-off per answer that the mux side does not.
    let mut tcp = Some(tcp);
    group.bench_function("plain_tcp_pipelined", |b| {
        b.iter(|| {
            let (mut stream, body) =
                (tcp.take().expect("returned by the last round"), body.clone());
            let round = async move {
                tcp_round(&mut stream, &body, requests, concurrency).await;
                stream
            };
            tcp = Some(rt.block_on(rt.spawn(round)).expect("the floor's round panicked"));
        });
    });
    group.bench_function("plus_mux", |b| {
        b.iter(|| rt.block_on(mux_round(&mux, &body, requests, concurrency)));
    });
    if with_yamux {
        group.bench_function("yamux_stream_per_request", |b| {
            b.iter(|| rt.block_on(yamux_round(&yamux, &body, requests, concurrency)));
        });
    }
    group.finish();
    mux.close();
}

/// Memory per in-flight request: hold 10,000 requests the server never answers.
fn memory_per_request(rt: &Runtime) {
    fn rss_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
    struct Never;
    #[async_trait]
    impl Handler for Never {
        async fn handle(&self, _: Bytes) -> Result<Bytes, HandlerError> {
            std::future::pending().await
        }
    }
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let config = Config { max_in_flight: 20_000, max_concurrent_handlers: 20_000, request_timeout: Duration::from_secs(600), ..Config::default() };
        let _server = Connection::new(a, config.clone(), Arc::new(Never)).unwrap();
        let client = Connection::new(b, config, Arc::new(NoHandler)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = rss_bytes();
        let mut held = Vec::new();
        for _ in 0..10_000 {
            let c = client.clone();
            held.push(tokio::spawn(async move { c.request(Bytes::from_static(b"0123456789abcdef")).await }));
        }
        while client.counters().pending < 10_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = rss_bytes();
        if let (Some(b), Some(a)) = (before, after) {
            println!(
                "mux/memory: 10000 unanswered requests (both ends, one process) cost {} KiB, {} bytes per request",
                a.saturating_sub(b) / 1024,
                a.saturating_sub(b) / 10_000
            );
        }
        for h in held {
            h.abort();
        }
    });
}

/// A server and a client of one mutual-TLS connection, their certificates from one fresh CA.
async fn mux_tls_client() -> (Connection, Server) {
    let ca = Ca::new("bench CA").unwrap();
    let tls = |name: &str| {
        let leaf = ca.leaf(name, &[]).unwrap();
        Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem().as_bytes()).unwrap()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server =
        serve(tls("server").listener(listener), ServerConfig::default(), Arc::new(Echo)).unwrap();
    let stream = tls("client").connector(&addr).connect().await.unwrap();
    let config = Config { max_in_flight: 4096, ..Config::default() };
    (Connection::new(stream, config, Arc::new(NoHandler)).unwrap(), server)
}

/// plus-mux over mutual TLS beside plus-mux over plain TCP, same requests.
fn tls_workload(
    c: &mut Criterion,
    rt: &Runtime,
    (size, concurrency, requests): (usize, usize, usize),
) {
    let body = Bytes::from(vec![7u8; size]);
    let (plain, (tls, server)) =
        rt.block_on(async { (mux_client(mux_server().await).await, mux_tls_client().await) });
    let mut group = c.benchmark_group(format!("mux_tls/{size}B_c{concurrency}"));
    group.throughput(Throughput::Elements(requests as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("plus_mux_plain_tcp", |b| {
        b.iter(|| rt.block_on(mux_round(&plain, &body, requests, concurrency)));
    });
    group.bench_function("plus_mux_mutual_tls", |b| {
        b.iter(|| rt.block_on(mux_round(&tls, &body, requests, concurrency)));
    });
    group.finish();
    plain.close();
    tls.close();
    drop(server);
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    memory_per_request(&rt);
    for size in [64, 1024] {
        for (concurrency, requests) in [(1, 2_000), (64, 20_000), (1024, 20_000)] {
            workload(c, "mux", &rt, (size, concurrency, requests), true);
        }
    }
    workload(c, "mux", &rt, (1 << 20, 1, 20), true);
    for size in [64, 1024] {
        tls_workload(c, &rt, (size, 64, 20_000));
    }
}

/// The pipelined workloads again, measured in CPU time of the process (client and server
/// together): the figure issue 21 asks for beside requests/s.
///
/// One thread runs both ends here, so the figure is the work per request, without the wakes
/// between worker threads and their spinning, which moved two-thread CPU figures by 30%
/// between runs of the same binary.
fn cpu_benches(c: &mut Criterion<ProcessCpu>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for size in [64, 1024] {
        workload(c, "mux_cpu", &rt, (size, 64, 20_000), false);
    }
}

criterion_group!(mux_benches, benches);
criterion_group! {
    name = mux_cpu_benches;
    config = Criterion::default().with_measurement(ProcessCpu);
    targets = cpu_benches
}
criterion_main!(mux_benches, mux_cpu_benches);
