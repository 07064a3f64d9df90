//! `platform --agents N` as a user runs it: real agent processes on 127.0.0.1 receive the
//! `hello_http` program over their connections, start it and check it over HTTP; one agent
//! killed mid-release fails its host by liveness and brakes the release; and nothing the run
//! started outlives it.
#![cfg(unix)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The platform process, killed if the test ends before it does (its agents then see their
/// standard input close and stop with their programs).
struct Platform(Option<Child>);

impl Platform {
    fn run(args: &[&str], root: &Path) -> Output {
        let child = Command::new(common::example("platform"))
            .args(["--no-progress", "--agents-root"])
            .arg(root)
            .args(args)
            // Not under cargo: the agent and hello_http are the ones cargo test built.
            .env_remove("CARGO")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut platform = Platform(Some(child));
        let deadline = Instant::now() + Duration::from_secs(120);
        let child = platform.0.as_mut().unwrap();
        while matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "the platform did not finish within 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        platform.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn work_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("plus-platform-agents-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_owned()
}

/// Whether the server a host's agent started still answers: it must not, once the platform
/// has exited.
fn server_answers(host: &Path) -> bool {
    let Ok(port) = std::fs::read_to_string(host.join("port")) else { return false };
    let port: u16 = port.trim().parse().unwrap();
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[test]
fn the_platform_releases_a_real_server_to_its_agents_and_stops_them() {
    let root = work_dir("release");
    let output = Platform::run(&["--agents", "3"], &root);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = last_line(&output);
    assert!(
        output.status.success(),
        "{line}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(line.contains("apps=7 deployed=7 failed=0"), "{line}");
    assert!(line.ends_with(" agents=3 lost_agents=0"), "{line}");
    for i in 0..3 {
        let host = root.join(format!("hello-0{i}"));
        // The real program was sent, installed and started: the link names the version and
        // the server it started wrote its port.
        assert_eq!(
            std::fs::read_link(host.join("current")).unwrap(),
            Path::new("versions/2026.11.1")
        );
        assert!(host.join("port").exists(), "{} has no port file", host.display());
        assert!(!server_answers(&host), "the server of {} outlived the platform", host.display());
        let log = std::fs::read_to_string(root.join(format!("hello-0{i}.log"))).unwrap();
        assert!(log.contains("stopped"), "the agent did not stop cleanly:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_agent_killed_mid_release_fails_its_host_and_brakes_the_release() {
    let root = work_dir("kill");
    let output = Platform::run(&["--agents", "3", "--kill-agent-after-ms", "0"], &root);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = last_line(&output);
    assert_eq!(output.status.code(), Some(1), "a failed application fails the run:\n{stdout}");
    assert!(line.contains("failed=1") && line.contains("braked=1"), "{line}");
    assert!(line.ends_with(" agents=3 lost_agents=1"), "{line}");
    assert!(stdout.contains("kill      agent hello-00"), "{stdout}");
    assert!(stdout.contains("agent     hello-00 lost: no heartbeat"), "{stdout}");
    let hello = stdout.lines().find(|l| l.starts_with("hello ")).unwrap();
    assert!(hello.contains("FAILED: release braked"), "{hello}");
    for i in 0..3 {
        assert!(!server_answers(&root.join(format!("hello-0{i}"))), "a server outlived the run");
    }
    let _ = std::fs::remove_dir_all(&root);
}
