//! A plus-mux echo server and a load-generating client.
//!
//! ```text
//! mux_echo serve --listen ADDR [--for SECONDS]
//! mux_echo bench --connect ADDR --requests N --concurrency C --size B
//! ```
//!
//! The server echoes each body; a body `sleep:MS` is answered after MS milliseconds. A
//! connection that sends garbage is closed; the others go on. The client ends with one line:
//! `requests=100000 concurrency=64 size=64 rps=250000 p50_us=200 p99_us=900 errors=0`.

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use plus_mux::{
    Bytes, Config, Connection, Handler, HandlerError, NoHandler, ServerConfig, async_trait,
};

/// A plus-mux echo server and a load-generating client.
#[derive(Debug, Parser)]
#[command(name = "mux_echo")]
enum Args {
    /// Echo every request; a body `sleep:MS` is answered after MS milliseconds.
    Serve {
        /// The address to listen on.
        #[arg(long)]
        listen: String,
        /// Stop after this many seconds (1 to 86400).
        #[arg(long = "for", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        seconds: Option<u64>,
    },
    /// Send requests and report throughput and latency.
    Bench {
        /// The server's address.
        #[arg(long)]
        connect: String,
        /// Requests to send (1 to 100000000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
        requests: u32,
        /// Requests in flight at once (1 to 100000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        concurrency: u32,
        /// Body size in bytes (0 to 1048576).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
        size: u32,
    },
}

struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        if let Some(ms) = request
            .strip_prefix(b"sleep:")
            .and_then(|ms| std::str::from_utf8(ms).ok()?.parse::<u64>().ok())
        {
            // A peer's number: bounded, like everything that comes from outside.
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        }
        Ok(request)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match args {
        Args::Serve { listen, seconds } => runtime.block_on(serve(listen, seconds)),
        Args::Bench { connect, requests, concurrency, size } => {
            runtime.block_on(bench(connect, requests as usize, concurrency as usize, size as usize))
        }
    }
}

async fn serve(listen: String, seconds: Option<u64>) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("error: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or(listen, |a| a.to_string());
    println!("listening on {addr}");
    // plus-mux's accept loop: a connection cap, and backoff (not a spin) on accept errors such
    // as running out of file descriptors.
    let server = match plus_mux::serve(listener, ServerConfig::default(), Arc::new(Echo)) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => std::future::pending().await,
    }
    server.stop();
    let c = server.counters();
    println!("accepted={} accept_errors={}", c.accepted, c.accept_errors);
    ExitCode::SUCCESS
}

async fn bench(connect: String, requests: usize, concurrency: usize, size: usize) -> ExitCode {
    let stream = match tokio::net::TcpStream::connect(&connect).await {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: cannot connect to {connect}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config { max_in_flight: concurrency.max(1024), ..Config::default() };
    let conn = match Connection::from_tcp(stream, config, Arc::new(NoHandler)) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let body = Bytes::from(vec![b'x'; size]);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (conn, body, next) = (conn.clone(), body.clone(), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                match conn.request(body.clone()).await {
                    Ok(answer) if answer.len() == body.len() => latencies.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = 0;
    for w in workers {
        match w.await {
            Ok((l, e)) => {
                latencies.extend(l);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let rps = (requests as f64 / elapsed.as_secs_f64()).round();
    println!(
        "requests={requests} concurrency={concurrency} size={size} rps={rps} p50_us={} p99_us={} errors={errors}",
        cli::quantile_us(&latencies, 0.50),
        cli::quantile_us(&latencies, 0.99)
    );
    conn.close();
    if errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
