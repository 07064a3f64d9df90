//! The reference agent as a real process on 127.0.0.1, driven by this test as its platform:
//! steps on real files and processes, SHA-256 checked, versions kept and rolled back to by a
//! link, heartbeats received, and the agent stopped with the test, also when it fails.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plus_mux::certs::Ca;
use plus_mux::{Bytes, Connection, Handler, HandlerError, async_trait};
use plus_rollout::agent::protocol::{BeatReply, PROTOCOL_VERSION};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn agent_program() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("examples").join("agent");
    assert!(path.exists(), "{} is missing: cargo test builds it with the examples", path.display());
    path
}

/// The agent process: asked to stop (SIGTERM, so it stops the program it started) when the
/// test ends, also when it fails; killed if it has not stopped within 5 s.
struct Stopped(Child);

impl Stopped {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// The platform's side: keeps the agent's heartbeats.
#[derive(Default)]
struct Beats(Mutex<Vec<Value>>);

#[async_trait]
impl Handler for Beats {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        let message: Value =
            serde_json::from_slice(&request).map_err(|e| HandlerError::new(e.to_string()))?;
        // The agent asks for an artifact's bytes: a chunk of the file, raw.
        if let Some(path) = message["fetch"].as_str() {
            let bytes = std::fs::read(path).map_err(|e| HandlerError::new(e.to_string()))?;
            let offset = (message["offset"].as_u64().unwrap() as usize).min(bytes.len());
            let end = (offset + message["len"].as_u64().unwrap() as usize).min(bytes.len());
            return Ok(Bytes::copy_from_slice(&bytes[offset..end]));
        }
        self.0.lock().unwrap().push(message);
        let reply = BeatReply { protocol: PROTOCOL_VERSION };
        Ok(Bytes::from(serde_json::to_vec(&reply).unwrap()))
    }
}

/// A platform of another protocol version: it answers every beat with its own.
struct OtherVersion;

#[async_trait]
impl Handler for OtherVersion {
    async fn handle(&self, _: Bytes) -> Result<Bytes, HandlerError> {
        Ok(Bytes::from(serde_json::to_vec(&BeatReply { protocol: 99 }).unwrap()))
    }
}

/// An agent whose platform speaks another protocol version stops at its first heartbeat's
/// answer, saying which versions each side speaks, instead of taking work it may misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_platform_of_another_protocol_version() {
    let root = std::env::temp_dir().join(format!("plus-agent-version-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let child = Command::new(agent_program())
        .args(["--connect", &addr, "--id", "web-99", "--heartbeat-ms", "100", "--insecure"])
        .arg("--root")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut process = Stopped(child);
    let (stream, _) =
        tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let _platform =
        Connection::from_tcp(stream, plus_mux::Config::default(), Arc::new(OtherVersion)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the agent kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(process.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("the platform speaks agent protocol version 99, this side speaks 2"),
        "{err}"
    );
}

async fn step(agent: &Connection, request: Value) -> Value {
    let reply = agent
        .request_with_timeout(serde_json::to_vec(&request).unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    serde_json::from_slice(&reply).unwrap()
}

fn artifact(dir: &Path, version: &str) -> (String, String) {
    let path = dir.join(format!("app-{version}"));
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in check) echo \"healthy $PLUS_VERSION\";; *) exec sleep 30;; esac\n# {version}\n"
    );
    std::fs::write(&path, &script).unwrap();
    (path.to_string_lossy().into_owned(), format!("{:x}", Sha256::digest(script.as_bytes())))
}

fn commands() -> Value {
    json!({"run": ["./artifact"], "check": ["./artifact", "check"], "check_retry": 2, "check_interval_ms": 50})
}

async fn deploy(agent: &Connection, version: &str, path: &str, sha: &str) -> Vec<Value> {
    let mut replies = Vec::new();
    for request in [
        json!({"step": "markdown"}),
        json!({"step": "download", "version": version, "artifact": {"path": path, "sha256": sha}}),
        json!({"step": "install", "version": version}),
        json!({"step": "verify", "version": version, "commands": commands()}),
        json!({"step": "markup"}),
    ] {
        let reply = step(agent, request.clone()).await;
        assert_eq!(reply["ok"], true, "{request} -> {reply}");
        replies.push(reply);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_real_steps_keeps_versions_and_rolls_back_by_link() {
    let work = std::env::temp_dir().join(format!("plus-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let root = work.join("host");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut process = Stopped(
        Command::new(agent_program())
            .args(["--connect", &addr, "--id", "web-01", "--keep", "2", "--heartbeat-ms", "100"])
            // This test is the platform, on plain TCP: what it checks is the steps.
            .arg("--insecure")
            .arg("--root")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (stream, _) =
        tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let beats = Arc::new(Beats::default());
    let config = plus_mux::Config {
        heartbeat: Some(Duration::from_millis(100)),
        ..plus_mux::Config::default()
    };
    let agent =
        Connection::from_tcp(stream, config, Arc::clone(&beats) as Arc<dyn Handler>).unwrap();

    let (v1, sha1) = artifact(&work, "1.0.0");
    let first =
        step(&agent, json!({"step": "precheck", "version": "1.0.0", "commands": commands()})).await;
    assert_eq!((first["ok"].clone(), first["already"].clone()), (json!(true), json!(false)));
    let replies = deploy(&agent, "1.0.0", &v1, &sha1).await;
    assert!(replies[3]["stdout"].as_str().unwrap().contains("healthy 1.0.0"), "{}", replies[3]);
    assert_eq!(std::fs::read_link(root.join("current")).unwrap(), Path::new("versions/1.0.0"));
    assert!(!root.join("out-of-traffic").exists());
    let again =
        step(&agent, json!({"step": "precheck", "version": "1.0.0", "commands": commands()})).await;
    assert_eq!(again["already"], true, "{again}");

    // A wrong checksum and a version that is a path are refused.
    let (v2, sha2) = artifact(&work, "2.0.0");
    let bad = step(
        &agent,
        json!({"step": "download", "version": "2.0.0", "artifact": {"path": v2, "sha256": sha1}}),
    )
    .await;
    assert_eq!(bad["ok"], false);
    assert!(bad["detail"].as_str().unwrap().contains("SHA-256"), "{bad}");
    let missing = step(
        &agent,
        json!({"step": "download", "version": "2.0.0", "artifact": {"path": work.join("none"), "sha256": sha2}}),
    )
    .await;
    assert_eq!(missing["ok"], false, "{missing}");
    // Neither failure left anything behind.
    let left: Vec<_> = std::fs::read_dir(root.join("downloads/2.0.0")).unwrap().collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
    let sneaky = step(&agent, json!({"step": "install", "version": "../../etc"})).await;
    assert_eq!(sneaky["ok"], false, "{sneaky}");

    deploy(&agent, "2.0.0", &v2, &sha2).await;
    // Roll back: 1.0.0 is still kept, so nothing is fetched and current only moves.
    std::fs::remove_file(&v1).unwrap();
    let replies = deploy(&agent, "1.0.0", &v1, &sha1).await;
    assert!(replies[1]["detail"].as_str().unwrap().contains("nothing to fetch"), "{}", replies[1]);
    assert!(replies[2]["detail"].as_str().unwrap().contains("switched"), "{}", replies[2]);
    assert_eq!(std::fs::read_link(root.join("current")).unwrap(), Path::new("versions/1.0.0"));
    // A third version: only two stay, the current one among them.
    let (v3, sha3) = artifact(&work, "3.0.0");
    deploy(&agent, "3.0.0", &v3, &sha3).await;
    let mut kept: Vec<String> = std::fs::read_dir(root.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.contains(&"3.0.0".to_owned()), "{kept:?}");

    // An artifact the platform sends over the agent's own connection, in several chunks.
    let (v4, _) = artifact(&work, "4.0.0");
    let mut big = std::fs::read(&v4).unwrap();
    big.extend(std::iter::repeat_n(b"# padding\n".iter().copied(), 250_000).flatten());
    std::fs::write(&v4, &big).unwrap();
    let sha4 = format!("{:x}", Sha256::digest(&big));
    let fetched = step(
        &agent,
        json!({"step": "download", "version": "4.0.0",
               "artifact": {"path": v4, "sha256": sha4, "from_platform": true}}),
    )
    .await;
    assert_eq!(fetched["ok"], true, "{fetched}");
    assert_eq!(
        std::fs::read(root.join("downloads/4.0.0/artifact")).unwrap(),
        big,
        "the {} bytes arrived whole",
        big.len()
    );

    // A step's own deadline: a check that would take 30 s is cut at 300 ms, its process killed.
    let slow = json!({"run": ["./artifact"], "check": ["sleep", "30"], "check_retry": 0, "check_interval_ms": 10});
    let started = std::time::Instant::now();
    let cut = step(
        &agent,
        json!({"step": "verify", "version": "3.0.0", "commands": slow, "deadline_ms": 300}),
    )
    .await;
    assert_eq!(cut["ok"], false, "{cut}");
    assert!(cut["detail"].as_str().unwrap().contains("timed out after 300ms"), "{cut}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    let beats = beats.0.lock().unwrap().clone();
    assert!(!beats.is_empty(), "the agent sends heartbeats");
    assert!(beats.iter().all(|b| b["agent"] == "web-01"), "{beats:?}");
    agent.close();
    let status = process.stop().expect("the agent stops on SIGTERM");
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&work).unwrap();
}

/// Writes a leaf of `ca` as `name.pem` and `name.key` in `dir`; returns the agent's TLS
/// arguments for it, trusting `trusted` (a PEM file).
fn tls_args(dir: &Path, ca: &Ca, name: &str, trusted: &Path) -> Vec<String> {
    let leaf = ca.leaf(name, &[]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, leaf.cert).unwrap();
    std::fs::write(&key, leaf.key).unwrap();
    [("--tls-cert", &cert), ("--tls-key", &key), ("--tls-ca", &trusted.to_path_buf())]
        .iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
}

fn start_agent(addr: &str, root: &Path, tls: &[String]) -> Stopped {
    Stopped(
        Command::new(agent_program())
            .args(["--connect", addr, "--id", "web-tls", "--heartbeat-ms", "100"])
            .arg("--root")
            .arg(root)
            .args(tls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_agent_works_only_for_a_platform_its_ca_signed() {
    use plus_mux::{Accept, Tls};

    let work = std::env::temp_dir().join(format!("plus-agent-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let ca = Ca::new("platform CA").unwrap();
    let ca_file = work.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let agent_tls = tls_args(&work, &ca, "agent", &ca_file);
    let root = work.join("host");

    // A platform whose certificate another CA signed (it trusts the real CA, so only the
    // agent's check can stop it): the agent never completes a handshake with it, so it can
    // send no step at all.
    let rogue_ca = Ca::new("rogue CA").unwrap();
    let rogue = rogue_ca.leaf("rogue platform", &[]).unwrap();
    let rogue = Tls::from_pem(rogue.cert.as_bytes(), rogue.key.as_bytes(), ca.pem().as_bytes())
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(2));
    let mut rogue_listener =
        rogue.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let rogue_addr = listener_addr(&rogue_listener);
    let mut process = start_agent(&rogue_addr, &root, &agent_tls);
    let reached = tokio::time::timeout(Duration::from_secs(3), rogue_listener.accept()).await;
    assert!(reached.is_err(), "a platform of another CA got a connection to the agent");
    assert!(rogue.refused() >= 1, "the agent tried, and the handshake failed");
    process.stop();

    // The real platform: heartbeats arrive and a step runs.
    let platform = ca.leaf("platform", &[]).unwrap();
    let platform =
        Tls::from_pem(platform.cert.as_bytes(), platform.key.as_bytes(), ca.pem().as_bytes())
            .unwrap();
    let mut listener =
        platform.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener_addr(&listener);
    let _process = start_agent(&addr, &root, &agent_tls);
    precheck_runs(&mut listener).await;
    std::fs::remove_dir_all(&work).unwrap();
}

/// Takes the agent's connection from `listener` as its platform: a precheck step must run.
async fn precheck_runs<A: plus_mux::Accept>(listener: &mut A) {
    let (stream, _) =
        tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let beats = Arc::new(Beats::default()) as Arc<dyn Handler>;
    let agent = Connection::new(stream, plus_mux::Config::default(), beats).unwrap();
    let reply =
        step(&agent, json!({"step": "precheck", "version": "1.0.0", "commands": commands()})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    agent.close();
}

fn listener_addr(listener: &plus_mux::TlsListener) -> String {
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_pre_shared_key_the_agent_works_only_for_a_platform_that_holds_it() {
    use plus_mux::{Accept, Psk};

    let work = std::env::temp_dir().join(format!("plus-agent-psk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let key_file = work.join("agent.key");
    std::fs::write(&key_file, "a key both sides were given, 32b\n").unwrap();
    // A key other users can read is refused: first that, then the key as it should be.
    let refused = std::process::Command::new(agent_program())
        .args(["--connect", "127.0.0.1:1", "--id", "a", "--root"])
        .arg(work.join("unused"))
        .arg("--psk-file")
        .arg(&key_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("chmod 600"), "{stderr}");
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let psk_args = vec!["--psk-file".to_owned(), key_file.display().to_string()];
    let root = work.join("host");

    // A platform with another key: the agent never finishes a handshake with it.
    let rogue = Psk::new(b"a key the rogue made up itself!!".to_vec())
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(2));
    let mut rogue_listener =
        rogue.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let rogue_addr = rogue_listener.local_addr().unwrap().to_string();
    let mut process = start_agent(&rogue_addr, &root, &psk_args);
    let reached = tokio::time::timeout(Duration::from_secs(3), rogue_listener.accept()).await;
    assert!(reached.is_err(), "a platform without the key got a connection to the agent");
    assert!(rogue.refused() >= 1, "the agent tried, and the handshake failed");
    process.stop();

    // The platform with the key (as the agent reads it: no trailing newline).
    let psk = Psk::new(b"a key both sides were given, 32b".to_vec()).unwrap();
    let mut listener = psk.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = listener.local_addr().unwrap().to_string();
    let _process = start_agent(&addr, &root, &psk_args);
    precheck_runs(&mut listener).await;
    std::fs::remove_dir_all(&work).unwrap();
}

/// The agent's peak memory (VmHWM) in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Two downloads of a 64 MiB artifact at once: the agent hashes as it writes, so its memory
/// does not grow with the files (it read each whole to hash it: 128 MiB for these two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_hashed_as_they_are_written_and_bounded_in_memory() {
    let work = std::env::temp_dir().join(format!("plus-agent-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let big = work.join("big");
    let bytes = plus_quorum::testing::incompressible(64 << 20, 1);
    std::fs::write(&big, &bytes).unwrap();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    drop(bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let process = start_agent(&addr, &work.join("host"), &["--insecure".to_owned()]);
    let (stream, _) =
        tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let agent =
        Connection::from_tcp(stream, plus_mux::Config::default(), Arc::new(Beats::default()))
            .unwrap();
    let path = big.to_string_lossy().into_owned();
    let download = |version: &str| {
        step(
            &agent,
            json!({"step": "download", "version": version, "artifact": {"path": path, "sha256": sha}}),
        )
    };
    let (a, b) = tokio::join!(download("1.0.0"), download("2.0.0"));
    assert_eq!((a["ok"].clone(), b["ok"].clone()), (json!(true), json!(true)), "{a} {b}");
    let peak = peak_rss_kib(process.0.id());
    assert!(peak < 48 * 1024, "the agent peaked at {peak} KiB for two 64 MiB downloads");
    agent.close();
    drop(process);
    std::fs::remove_dir_all(&work).unwrap();
}
