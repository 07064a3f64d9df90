//! A tiny HTTP server, the real program `platform --agents N` releases to its agents' hosts.
//!
//! ```text
//! hello_http serve [--port-file FILE] [--port N] [--path P]   serve GET P on 127.0.0.1
//! hello_http probe [--port-file FILE] [--path P]              exit 0 on 200 with this version
//! ```
//!
//! The version is `PLUS_VERSION` (the agent sets it); the port file defaults to
//! `$PLUS_ROOT/port`, so the check finds the server the run started on the same host. `serve`
//! listens on port N (default: a free one), answers `200 ok VERSION` on `/health` and on P,
//! and `404` elsewhere; `probe` asks for P (default `/health`) and passes only when the answer
//! names its own version, so a server left from an older version fails the check.
//! Standard library only: it is small enough to ship as the artifact itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Longest request head read before the connection is answered 400.
const MAX_HEAD: u64 = 8 * 1024;
/// How long one connection may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    if mode != "serve" && mode != "probe" {
        return usage("the mode is `serve` or `probe`");
    }
    let (mut port_file, mut port, mut path) = (None, 0_u16, "/health".to_owned());
    while let Some(option) = args.next() {
        let Some(value) = args.next() else {
            return usage(&format!("{option} needs a value"));
        };
        match option.as_str() {
            "--port-file" => port_file = Some(PathBuf::from(value)),
            "--port" if mode == "serve" => match value.parse() {
                Ok(n) => port = n,
                Err(_) => return usage(&format!("--port {value} is not a port")),
            },
            "--path" if value.starts_with('/') && !value.contains(char::is_whitespace) => {
                path = value;
            }
            "--path" => return usage(&format!("--path {value} is not an absolute URL path")),
            _ => return usage(&format!("unknown option {option}")),
        }
    }
    let port_file = match port_file {
        Some(file) => file,
        None => match std::env::var_os("PLUS_ROOT") {
            Some(root) => PathBuf::from(root).join("port"),
            None => return usage("without --port-file, PLUS_ROOT must name the host's directory"),
        },
    };
    let version = std::env::var("PLUS_VERSION").unwrap_or_else(|_| "unknown".to_owned());
    let result = match mode.as_str() {
        "serve" => serve(&port_file, port, &path, &version),
        _ => probe(&port_file, &path, &version),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hello_http {mode}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "error: {message}\nusage: hello_http serve [--port-file FILE] [--port N] [--path P]\n       hello_http probe [--port-file FILE] [--path P]"
    );
    ExitCode::from(2)
}

/// Binds loopback `port` (0: a free one), publishes it in `port_file` (by rename, so a reader
/// never sees half a number) and answers connections one at a time until killed.
fn serve(port_file: &std::path::Path, port: u16, path: &str, version: &str) -> Result<(), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let partial = port_file.with_extension("partial");
    std::fs::write(&partial, port.to_string())
        .and_then(|()| std::fs::rename(&partial, port_file))
        .map_err(|e| format!("cannot write {}: {e}", port_file.display()))?;
    eprintln!("hello_http {version} on 127.0.0.1:{port}");
    // One bad connection never stops the server.
    for stream in listener.incoming().flatten() {
        let _ = answer(&stream, path, version);
    }
    Ok(())
}

fn answer(stream: &TcpStream, path: &str, version: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.take(MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head, up to the empty line (or the size limit).
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line != "\r\n" && line != "\n" {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some(asked)) if asked == "/health" || asked == path => {
            ("200 OK", format!("ok {version}\n"))
        }
        (Some(_), Some(_)) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("400 Bad Request", "bad request\n".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Asks the server in `port_file` for `path`: passes on `200` naming `version`.
fn probe(port_file: &std::path::Path, path: &str, version: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(port_file)
        .map_err(|e| format!("no server yet ({}: {e})", port_file.display()))?;
    let port: u16 =
        text.trim().parse().map_err(|_| format!("{} holds no port", port_file.display()))?;
    let address = (Ipv4Addr::LOCALHOST, port).into();
    let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    let mut reply = String::new();
    stream
        .take(MAX_HEAD)
        .read_to_string(&mut reply)
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    let status = reply.lines().next().unwrap_or_default();
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body).trim();
    if !status.contains(" 200 ") {
        return Err(format!("127.0.0.1:{port}{path} answered `{status}`"));
    }
    if body != format!("ok {version}") {
        return Err(format!("127.0.0.1:{port} runs `{body}`, not {version}"));
    }
    println!("healthy: 127.0.0.1:{port} {body}");
    Ok(())
}
