//! The HTTP endpoints in process: a gateway watch whose history is gone says so on its last
//! line instead of skipping changes; with pre-shared keys the probes answer and the gateway
//! refuses everyone.
#![cfg(all(feature = "http", feature = "psk"))]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use plus_quorum::testing::loopback_addrs;
use plus_quorum::{Config, HttpEndpoints, MemStorage, MuxConfig, MuxNode, Security, serve_http};

/// `method path` with `body` over plain HTTP/1.1, read to the end: status and body.
fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

async fn node(security: Security, watch_history: usize) -> (MuxNode, String) {
    let addrs = loopback_addrs(&[1, 9]).await.unwrap();
    let http_addr = addrs[&9].clone();
    let addrs: HashMap<u64, String> = [(1, addrs[&1].clone())].into();
    let config = {
        let mut config = Config::new(1, vec![1]);
        config.watch_history = watch_history;
        config
    };
    let node =
        MuxNode::start_secured(config, MemStorage::new(), &addrs, MuxConfig::default(), &security)
            .await
            .unwrap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let listener = tokio::net::TcpListener::bind(&http_addr).await.unwrap();
    let endpoints = HttpEndpoints::new(node.handle.clone(), metrics, addrs).secured(security);
    drop(serve_http(listener, endpoints).unwrap());
    (node, http_addr)
}

async fn until_leader(node: &MuxNode) {
    for _ in 0..100 {
        if node.handle.status().await.is_ok_and(|s| s.leader.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader");
}

#[tokio::test]
async fn a_watch_past_the_history_ends_saying_it_was_compacted() {
    let (node, http) = node(Security::Plain, 5).await;
    until_leader(&node).await;
    for i in 0..20 {
        let body = format!(r#"{{"key": "w/{i}", "value": "{i}"}}"#);
        let (code, said) = tokio::task::spawn_blocking({
            let http = http.clone();
            move || call(&http, "POST", "/v3/kv/put", &body)
        })
        .await
        .unwrap();
        assert_eq!(code, 200, "{said}");
    }
    let (code, said) = tokio::task::spawn_blocking(move || {
        call(&http, "GET", "/v3/watch?key=w/&prefix=true&rev=1", "")
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let last = said.lines().rfind(|l| l.starts_with('{')).unwrap_or_default().to_owned();
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["compacted"], true, "{said}");
    assert!(last["oldest"].as_u64().unwrap() > 1, "{said}");
    assert!(!said.contains("\"type\""), "no event was sent before the gap was named: {said}");
    node.stop().await;
}

#[tokio::test]
async fn with_keys_the_probes_answer_and_the_gateway_refuses() {
    let key = plus_mux::Psk::named("node", b"a-node-key-0123456789abcdef012345".to_vec()).unwrap();
    let security = Security::Psk { own: key.clone(), accept: vec![key] };
    let (node, http) = node(security, 100).await;
    until_leader(&node).await;
    let (health, range) = tokio::task::spawn_blocking(move || {
        (call(&http, "GET", "/health", ""), call(&http, "POST", "/v3/kv/range", r#"{"key": "a"}"#))
    })
    .await
    .unwrap();
    assert_eq!(health.0, 200, "{}", health.1);
    assert_eq!(range.0, 403, "{}", range.1);
    assert!(range.1.contains("needs mutual TLS"), "{}", range.1);
    node.stop().await;
}
