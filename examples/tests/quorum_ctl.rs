//! `quorum_ctl`'s long-running and cluster-wide commands against three real `quorum_node`
//! processes: `watch` prints changes as they happen and says so when its history was
//! compacted away; `compact`; `elect` holds leadership until stopped and a second candidate
//! takes over then; `lease keep-alive` keeps a lease past its TTL; `move-leader`; `member add`,
//! `promote` and `remove` with a fourth process.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Processes, example, leader, peers, quorum_ctl};
use plus_quorum::testing::loopback_addrs;

/// A `quorum_ctl` that runs until stopped, its output lines arriving on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(endpoints: &str, args: &[&str]) -> Self {
        let mut child = Command::new(example("quorum_ctl"))
            .args(["--endpoints", endpoints, "--timeout", "20"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self { child, lines }
    }

    /// Lines until one contains `text`, within 20 s.
    fn until(&self, text: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(line) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("`{text}` never came; saw {seen:?}");
    }

    /// Nothing printed for `quiet`.
    fn silent_for(&self, quiet: Duration) -> bool {
        self.lines.recv_timeout(quiet).is_err()
    }

    /// SIGTERM, as an operator's Ctrl-C would, then the exit status.
    fn stop(self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.exit_within(Duration::from_secs(10), "stop on SIGTERM")
    }

    /// Its exit status once it ends by itself, within 20 s.
    fn ends(self) -> Option<i32> {
        self.exit_within(Duration::from_secs(20), "end by itself")
    }

    fn exit_within(mut self, limit: Duration, what: &str) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("quorum_ctl did not {what} within {limit:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(endpoints: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = quorum_ctl(endpoints, 20, &[] as &[String], args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_compact_elect_keep_alive_move_leader_and_membership() {
    let mut nodes = Processes::new("quorum-ctl");
    let mut addrs = loopback_addrs(&[1, 2, 3, 4]).await.unwrap();
    let fourth = addrs.remove(&4).unwrap();
    for id in [1, 2, 3] {
        nodes.start(id, &addrs, &[]);
    }
    let endpoints = peers(&addrs);
    assert_eq!(ctl(&endpoints, &["put", "app/a", "0"]).0, Some(0), "the cluster elected");

    // watch: each change as it happens.
    let watch = Running::start(&endpoints, &["watch", "app/", "--prefix"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ctl(&endpoints, &["put", "app/a", "1"]).0, Some(0));
    assert_eq!(ctl(&endpoints, &["del", "app/a"]).0, Some(0));
    let seen = watch.until("DELETE app/a");
    assert!(seen.iter().any(|l| l.starts_with("PUT app/a")), "{seen:?}");
    assert_eq!(watch.stop(), Some(0));

    // compact: a watch from before it is told, not silently moved on.
    let (_, put, _) = ctl(&endpoints, &["put", "app/b", "2"]);
    let revision: u64 = put.trim().parse().unwrap();
    let (code, said, err) = ctl(&endpoints, &["compact", &revision.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(said.trim(), format!("compacted revision {revision}"));
    let old = Running::start(&endpoints, &["watch", "app/", "--prefix", "--rev", "1"]);
    let said = old.until("compacted");
    assert!(
        said.iter().any(|l| l.contains(&format!("the oldest still kept is {revision}"))),
        "{said:?}"
    );
    assert_eq!(old.ends(), Some(1));
    // Reads at the compacted revision, from a key on, and limited, still work.
    let (code, at, err) = ctl(&endpoints, &["get", "app/b", "--rev", &revision.to_string()]);
    assert_eq!((code, at.as_str()), (Some(0), "app/b\n2\n"), "{err}");
    assert_eq!(ctl(&endpoints, &["put", "app/c", "3"]).0, Some(0));
    let (_, from, _) =
        ctl(&endpoints, &["get", "app/b", "--from-key", "--keys-only", "--limit", "1"]);
    assert_eq!(from, "app/b\n");
    let (_, keys, _) = ctl(&endpoints, &["keys", "app/*"]);
    assert_eq!(keys, "app/b\napp/c\n");
    let (code, _, err) = ctl(&endpoints, &["get", "app/b", "--rev", &(revision - 2).to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("compacted"), "{err}");
    let (code, _, err) = ctl(&endpoints, &["compact", "999999999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the latest is"), "{err}");

    // elect: one leader at a time; the next takes over when the first stops.
    let first = Running::start(&endpoints, &["elect", "controllers", "replica-a"]);
    first.until("replica-a");
    let second = Running::start(&endpoints, &["elect", "controllers", "replica-b"]);
    assert!(second.silent_for(Duration::from_secs(1)), "two leaders at once");
    assert_eq!(first.stop(), Some(0));
    second.until("replica-b");
    assert_eq!(second.stop(), Some(0));

    // lease keep-alive: a 2 s lease lives on past its TTL while kept alive.
    let (_, lease, _) = ctl(&endpoints, &["lease", "grant", "2"]);
    let lease = lease.trim().to_owned();
    assert_eq!(ctl(&endpoints, &["put", "session/x", "up", "--lease", &lease]).0, Some(0));
    let keeper = Running::start(&endpoints, &["lease", "keep-alive", &lease]);
    keeper.until("kept alive");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ctl(&endpoints, &["get", "session/x"]).1.trim(), "up", "kept past its TTL");
    assert_eq!(keeper.stop(), Some(0));

    // move-leader.
    let (was, _) = leader(&endpoints, &[]).expect("a leader");
    let to = if was == 1 { 2 } else { 1 };
    let (code, said, err) = ctl(&endpoints, &["move-leader", &to.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(said.trim(), format!("node {to} leads"));
    assert_eq!(leader(&endpoints, &[]).map(|(id, _)| id), Some(to));

    // member add, promote (once the new node caught up), remove.
    let (code, _, err) = ctl(&endpoints, &["member", "add", "4", &fourth]);
    assert_eq!(code, Some(0), "{err}");
    let mut all = addrs.clone();
    all.insert(4, fourth);
    nodes.start(4, &all, &["--new-member".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _, err) = ctl(&endpoints, &["member", "promote", "4"]);
        if code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "never promoted: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, listed, _) = ctl(&endpoints, &["--write-out", "json", "member", "list"]);
    let listed: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    let voters =
        listed["members"].as_array().unwrap().iter().filter(|m| m["role"] == "voter").count();
    assert_eq!(voters, 4, "{listed}");
    assert_eq!(ctl(&endpoints, &["member", "remove", "4"]).0, Some(0));
    let (_, listed, _) = ctl(&endpoints, &["--write-out", "table", "member", "list"]);
    assert!(!listed.contains("| 4 "), "{listed}");
    assert!(listed.contains("| 1  ") && listed.contains("voter"), "{listed}");
}
