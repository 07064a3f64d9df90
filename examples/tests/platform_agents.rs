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
    /// `platform --no-progress --agents-root ROOT ARGS`, its output piped.
    fn command(args: &[&str], root: &Path) -> Command {
        let mut command = Command::new(common::example("platform"));
        command
            .args(["--no-progress", "--agents-root"])
            .arg(root)
            .args(args)
            // Not under cargo: the agent and hello_http are the ones cargo test built.
            .env_remove("CARGO")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(args: &[&str], root: &Path) -> Output {
        Platform(Some(Self::command(args, root).spawn().unwrap())).finish()
    }

    /// Waits for the platform to end (at most 120 s) and takes its output.
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(120);
        let child = self.0.as_mut().unwrap();
        while matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "the platform did not finish within 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.0.take().unwrap().wait_with_output().unwrap()
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

/// Another local process tries to be one of the platform's agents while the release runs:
/// without the run's key it gets no connection at all; with it (the same user can read it),
/// a heartbeat naming a registered agent is refused, and the real agent still does the work.
#[test]
fn a_local_process_cannot_take_over_a_registered_agent() {
    use std::io::BufRead;
    let root = work_dir("impostor");
    let mut child =
        Platform::command(&["--agents", "2"], &root).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let platform = Platform(Some(child));
    let mut lines = std::io::BufReader::new(stdout).lines();
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.strip_prefix("agents ")?;
            rest.split(" on ").nth(1)?.split(", ").next().map(str::to_owned)
        })
        .expect("the platform says where its agents connect");
    // The platform prints its next line once every agent has registered.
    let after_registration = lines.next();
    assert!(after_registration.is_some(), "the platform stopped before its agents registered");
    let key = std::fs::read_to_string(root.join("agents.key")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refusals = runtime.block_on(async {
        use plus_mux::{Connection, Connector, NoHandler, Psk};
        use std::sync::Arc;
        // A key of its own: the handshake fails, nothing is read from it.
        let guess = Psk::new(b"a key this process made up itself".to_vec()).unwrap();
        assert!(guess.connector(&address).connect().await.is_err(), "a stranger connected");
        // The run's key, and a heartbeat naming a registered agent.
        let psk = Psk::new(key.trim().as_bytes().to_vec()).unwrap();
        let stream = psk.connector(&address).connect().await.unwrap();
        let config = plus_mux::Config { heartbeat: None, ..plus_mux::Config::default() };
        let impostor = Connection::new(stream, config, Arc::new(NoHandler)).unwrap();
        // An agent from before the protocol had versions is told why it is refused.
        let unversioned = br#"{"agent":"hello-00","load":0.0,"versions":[]}"#;
        let old = impostor.request_with_timeout(&unversioned[..], Duration::from_secs(5)).await;
        // So is one of version 1, which would start a program without its configuration.
        let v1 = br#"{"protocol":1,"agent":"hello-00","load":0.0,"versions":[]}"#;
        let v1 = impostor.request_with_timeout(&v1[..], Duration::from_secs(5)).await;
        assert!(v1.unwrap_err().to_string().contains("version 1, this side speaks 2"));
        let beat = format!(
            r#"{{"protocol":{},"agent":"hello-00","load":0.0,"versions":[]}}"#,
            plus_rollout::agent::protocol::PROTOCOL_VERSION
        );
        let answer = impostor.request_with_timeout(beat.into_bytes(), Duration::from_secs(5)).await;
        impostor.close();
        (old.map(|_| ()).unwrap_err().to_string(), answer.map(|_| ()).unwrap_err().to_string())
    });
    let (old, refusals) = refusals;
    assert!(old.contains("speaks agent protocol version 0, this side speaks 2"), "{old}");
    assert!(refusals.contains("registered on another connection"), "{refusals}");
    // Read to the end: the platform's output must have somewhere to go.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut platform = platform;
    let status = platform.0.take().unwrap().wait().unwrap();
    let last = rest.last().cloned().unwrap_or_default();
    assert!(status.success(), "the run failed: {}", rest.join("\n"));
    assert!(last.ends_with(" agents=2 lost_agents=0"), "{last}");
    for i in 0..2 {
        let host = root.join(format!("hello-0{i}"));
        assert!(host.join("port").exists(), "{} was not deployed by its agent", host.display());
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The platform and its agents over mutual TLS instead of the run's key, with certificates
/// made by `quorum_certs`.
#[test]
fn the_platform_and_its_agents_can_use_mutual_tls() {
    let root = work_dir("tls");
    let certs = root.with_extension("certs");
    let _ = std::fs::remove_dir_all(&certs);
    let made = Command::new(common::example("quorum_certs"))
        .arg("--out")
        .arg(&certs)
        .args(["--nodes", "1"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let file = |name: &str| certs.join(name).display().to_string();
    let (cert, key, ca) = (file("node-1.pem"), file("node-1.key"), file("ca.pem"));
    let args = [
        "--agents",
        "2",
        "--agents-tls-cert",
        &cert,
        "--agents-tls-key",
        &key,
        "--agents-tls-ca",
        &ca,
    ];
    let output = Platform::run(&args, &root);
    let line = last_line(&output);
    assert!(output.status.success(), "{line}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(line.ends_with(" agents=2 lost_agents=0"), "{line}");
    assert!(!root.join("agents.key").exists(), "no key was made: TLS was used");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&certs);
}

/// An agent on a host of its own: the platform listens (`--agents-listen`) for the agents it
/// is told of and starts none; the agent, started here as an operator would on their host,
/// connects with the key the platform wrote, registers, and gets `hello` released to it.
#[test]
fn an_agent_started_on_its_own_host_joins_a_platform_that_listens() {
    let root = work_dir("listen");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let args = ["--agents-listen", &address, "--agent-hosts", "web-own"];
    let platform = Platform(Some(Platform::command(&args, &root).spawn().unwrap()));
    // The platform writes its key before it listens; the operator copies it to the host.
    let key = root.join("agents.key");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !key.exists() || TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "the platform never listened on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let agent = Platform(Some(
        Command::new(common::example("agent"))
            .args(["--connect", &address, "--id", "web-own", "--heartbeat-ms", "200"])
            .arg("--root")
            .arg(root.join("own-host"))
            .arg("--psk-file")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let output = platform.finish();
    // The agent outlives the run on its host; the test stops it (Drop kills it).
    drop(agent);
    let _ = std::fs::remove_dir_all(&root);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.contains("agents    waiting on"), "{out}");
    assert!(last_line(&output).ends_with(" agents=1 lost_agents=0"), "{}", last_line(&output));
    assert!(out.lines().any(|l| l.starts_with("hello") && l.contains("deployed")), "{out}");
}
