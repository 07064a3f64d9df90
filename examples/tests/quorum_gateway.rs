//! The JSON gateway on real `quorum_node` processes, called with `curl` as a Go or Python
//! service would: the README's own `curl` lines run as written (against a follower too, which
//! forwards to the leader), and over HTTPS each client certificate may do what its role
//! allows and no more; without a certificate, nothing.
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Processes, example, quorum_ctl, tls_args};
use plus_quorum::NodeId;
use plus_quorum::testing::loopback_addrs;
use serde_json::Value;

/// The `curl` lines of the README's gateway example, in order.
fn readme_curl_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme.split("## Operating the store").nth(1).expect("the README's section");
    let block = section
        .split("```sh")
        .find(|block| block.contains("HTTP=http://"))
        .and_then(|block| block.split("```").next())
        .expect("the gateway's code block");
    block.lines().filter(|l| l.starts_with("curl ")).map(str::to_owned).collect()
}

/// Runs `line` with `HTTP` set, as a shell would; the exit code and what it printed.
fn run_curl(line: &str, http: &str) -> (Option<i32>, String) {
    let out = Command::new("sh").args(["-c", line]).env("HTTP", http).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Three nodes with HTTP endpoints; `extra` for each node's own arguments.
async fn start(
    nodes: &mut Processes,
    extra: impl Fn(NodeId) -> Vec<String>,
) -> (HashMap<NodeId, String>, HashMap<NodeId, String>) {
    let mut ports = loopback_addrs(&[1, 2, 3, 4, 5, 6]).await.unwrap();
    let http: HashMap<NodeId, String> =
        [1, 2, 3].into_iter().map(|id| (id, ports.remove(&(id + 3)).unwrap())).collect();
    let addrs = ports;
    for id in [1, 2, 3] {
        let mut args = vec!["--http-listen".to_owned(), http[&id].clone()];
        args.extend(extra(id));
        nodes.start(id, &addrs, &args);
    }
    (addrs, http)
}

/// Waits until `probe` answers with a body (the cluster elected and the endpoint is up).
fn wait_for(what: &str, mut probe: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(body) = probe() {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_curl_examples_run_against_a_follower_and_the_leader() {
    let mut nodes = Processes::new("quorum-gateway");
    let (addrs, http) = start(&mut nodes, |_| Vec::new()).await;
    let endpoints = common::peers(&addrs);
    let lines = readme_curl_lines();
    assert_eq!(lines.len(), 8, "the README's gateway example changed: {lines:?}");
    for id in [2, 1] {
        let base = format!("http://{}", http[&id]);
        wait_for("health", || {
            let (code, body) = run_curl(&format!("curl -sf {base}/health"), &base);
            (code == Some(0)).then_some(body)
        });
        let outputs: Vec<(Option<i32>, String)> =
            lines.iter().map(|line| run_curl(line, &base)).collect();
        let ok = |i: usize| {
            assert_eq!(outputs[i].0, Some(0), "{}: {}", lines[i], outputs[i].1);
            json(&outputs[i].1)
        };
        assert!(ok(0)["version"].as_u64().is_some());
        let range = ok(1);
        assert_eq!(
            (range["count"].as_u64(), range["kvs"][0]["value"].as_str()),
            (Some(1), Some("2.0"))
        );
        assert_eq!(ok(2)["succeeded"], true, "the compare on 2.0 held");
        assert_eq!(ok(3)["succeeded"], true, "the text transaction's compare on 2.1 held");
        let lease = ok(4)["id"].as_u64().unwrap();
        // The lease calls the README leaves out, in the same style.
        for (path, check) in [
            ("keepalive", "ttl_ms"),
            ("timetolive", "remaining_ms"),
            ("list", "leases"),
            ("revoke", "revoked"),
        ] {
            let line = format!("curl -sf $HTTP/v3/lease/{path} -d '{{\"id\": {lease}}}'");
            let (code, said) = run_curl(&line, &base);
            assert_eq!(code, Some(0), "{line}: {said}");
            assert!(json(&said).get(check).is_some(), "{line}: {said}");
        }
        let line = format!(
            "curl -s -o /dev/null -w '%{{http_code}}' $HTTP/v3/lease/keepalive -d '{{\"id\": {lease}}}'"
        );
        assert_eq!(run_curl(&line, &base).1, "404", "a revoked lease is not found");
        assert_eq!(ok(5)["deleted"], 1);
        // The watch from revision 1 runs until curl's --max-time (exit 28) and shows every
        // change, the deletion too.
        let (code, watched) = &outputs[6];
        assert!(matches!(code, Some(0 | 28)), "{code:?} {watched}");
        let events: Vec<Value> =
            watched.lines().map(json).filter(|e| e.get("type").is_some()).collect();
        let seen: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                (e["type"].as_str().unwrap().to_owned(), e["key"].as_str().unwrap().to_owned())
            })
            .collect();
        for expected in [("PUT", "app/version"), ("PUT", "app/state"), ("DELETE", "app/state")] {
            assert!(
                seen.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} in {seen:?}"
            );
        }
        assert_eq!(ok(7)["healthy"], true);
    }
    // What curl sees of a refusal: a status and a JSON body that says why.
    let base = format!("http://{}", http[&1]);
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("{base}/v3/kv/put"), "-d", r#"{"key": "k"}"#])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.ends_with("\n400") && said.contains("`value` or `value_base64`"), "{said}");
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("{base}/v3/kv/range"),
            "-d",
            r#"{"key": "app/", "revision": 999999999}"#,
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.ends_with("\n400") && said.contains("past the latest committed revision"),
        "{said}"
    );
    // No alarm is raised on a healthy cluster; `disarm` has nothing to clear.
    let alarms = quorum_ctl(&endpoints, 10, &[] as &[String], &["alarm", "list"]);
    assert!(alarms.status.success() && alarms.stdout.is_empty(), "{alarms:?}");
    let disarm = quorum_ctl(&endpoints, 10, &[] as &[String], &["alarm", "disarm"]);
    assert!(disarm.status.success(), "{disarm:?}");
}

/// `curl` with `name`'s certificate from `dir` (none for `None`): exit code, body, status.
fn curl_tls(
    dir: &Path,
    name: Option<&str>,
    url: &str,
    body: Option<&str>,
) -> (Option<i32>, String) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(dir.join("ca.pem"));
    if let Some(name) = name {
        command.arg("--cert").arg(dir.join(format!("{name}.pem")));
        command.arg("--key").arg(dir.join(format!("{name}.key")));
    }
    if let Some(body) = body {
        command.args(["-d", body]);
    }
    let out = command.arg(url).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_each_certificate_may_do_what_its_role_allows() {
    let mut nodes = Processes::new("quorum-gateway-tls");
    let certs = nodes.dir.join("certs");
    let made = Command::new(example("quorum_certs"))
        .arg("--out")
        .arg(&certs)
        .args(["--nodes", "1,2,3", "--admin", "ops", "--client", "app", "--reader", "dash"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (_, http) = start(&mut nodes, |id| tls_args(&certs, &format!("node-{id}"))).await;
    let url = |path: &str| format!("https://{}{path}", http[&2]);
    let health = wait_for("https health", || {
        let (code, body) = curl_tls(&certs, Some("reader-dash"), &url("/health"), None);
        (code == Some(0) && body.ends_with("\n200")).then_some(body)
    });
    assert!(health.contains("\"healthy\":true"), "{health}");

    let put = r#"{"key": "config/web", "value": "v1"}"#;
    let (_, said) = curl_tls(&certs, Some("client-app"), &url("/v3/kv/put"), Some(put));
    assert!(said.ends_with("\n200"), "a client writes: {said}");
    let (_, said) = curl_tls(&certs, Some("reader-dash"), &url("/v3/kv/put"), Some(put));
    assert!(said.ends_with("\n403") && said.contains("may not make a write"), "{said}");
    let range = r#"{"key": "config/", "prefix": true}"#;
    let (_, said) = curl_tls(&certs, Some("reader-dash"), &url("/v3/kv/range"), Some(range));
    assert!(said.ends_with("\n200") && said.contains("\"value\":\"v1\""), "a reader reads: {said}");
    // Without a certificate the handshake fails: curl gets no HTTP answer at all.
    let (code, said) = curl_tls(&certs, None, &url("/v3/kv/range"), Some(range));
    assert_ne!(code, Some(0), "answered without a certificate: {said}");
    assert!(said.ends_with("\n000"), "{said}");
    // Plain HTTP to the HTTPS endpoint gets nothing either.
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://{}/health", http[&2])])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}
