//! `platform --http-listen`: the live page, loaded in headless Chromium (Debian's package)
//! during a real run and again once it is over: applications with their releases' phases,
//! batches, hosts at their step, the cap, analysis verdicts, the rollback and degraded calls.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::example;

/// The platform, killed when the test ends, also when it fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `addr`: the body, if it answered 200.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The page's DOM once its script has drawn it, as headless Chromium renders it.
fn rendered(addr: &str) -> String {
    let profile = std::env::temp_dir().join(format!("plus-live-chromium-{}", std::process::id()));
    let mut chromium = Command::new("chromium");
    chromium
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .args(["--virtual-time-budget=3000", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/"));
    let out = common::output_within(
        chromium,
        Duration::from_secs(60),
        "chromium (Debian's package `chromium`)",
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls the JSON until `ready` says so, within 60 s.
fn until(addr: &str, what: &str, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = get(addr, "/api/state")
            && let Ok(state) = serde_json::from_str::<serde_json::Value>(&body)
            && ready(&state)
        {
            return state;
        }
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rendered row of `app`.
fn row<'a>(dom: &'a str, app: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr id=\"app-{app}\">"))
        .unwrap_or_else(|| panic!("no row for {app}: {dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_watches_the_deployment_in_a_browser() {
    let port = plus_quorum::testing::loopback_addrs(&[1]).await.unwrap().remove(&1).unwrap();
    let _platform = Running(
        Command::new(example("platform"))
            .args(["--analysis", "--degrade", "lb", "--no-progress", "--latency-ms", "40"])
            .args(["--http-listen", &port, "--linger-ms", "30000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // During the run: a release at work, hosts at their steps.
    until(&port, "saw a release running", |s| {
        s["finished"] == false
            && s["apps"].as_array().is_some_and(|apps| {
                apps.iter().any(|a| {
                    a["release"]["phase"].as_str().is_some_and(|p| p.starts_with("running"))
                        && a["release"]["running"].as_array().is_some_and(|r| !r.is_empty())
                })
            })
    });
    let dom = rendered(&port);
    assert!(dom.contains("<h1>Deployment</h1>"), "{dom}");
    assert!(dom.contains("running; pull-out cap 5; 6 applications"), "{dom}");
    assert!(
        dom.contains("running the ") || dom.contains(": precheck") || dom.contains(": install"),
        "a release at work: {dom}"
    );
    // Once it is over: the verdicts, the rollback, the skipped dependent, the calls not made.
    until(&port, "finished", |s| s["finished"] == true);
    let dom = rendered(&port);
    assert!(dom.contains("finished; pull-out cap 5"), "{dom}");
    let api = row(&dom, "api");
    assert!(api.contains("rolled back 11 host(s)"), "{api}");
    assert!(api.contains("before batch 3: check error-rate failed"), "{api}");
    assert!(api.contains("11/11 back"), "{api}");
    assert!(api.contains("batch 2 (5)") && !api.contains("batch 3 ("), "{api}");
    assert!(row(&dom, "gateway").contains("skipped (requires api)"), "{dom}");
    let auth = row(&dom, "auth");
    assert!(
        auth.contains("20/20 ok") && auth.contains("<td>40</td>"),
        "two calls not made per host: {auth}"
    );
}
