//! What the process tests share.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use plus_quorum::NodeId;

/// An example program cargo built beside this test.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let path = target.join("examples").join(name);
    assert!(path.exists(), "{} is missing: cargo test builds it with the examples", path.display());
    path
}

/// Runs `quorum_ctl` against `endpoints` (`ID=HOST:PORT,...`) to its end, bounded by its own
/// `--timeout`, with `options` (TLS files, say) before the operation `op`.
#[allow(dead_code)] // the store's process tests use it, the others do not
pub(crate) fn quorum_ctl(
    endpoints: &str,
    timeout_s: u64,
    options: &[impl AsRef<OsStr>],
    op: &[&str],
) -> Output {
    Command::new(example("quorum_ctl"))
        .args(["--endpoints", endpoints, "--timeout", &timeout_s.to_string()])
        .args(options)
        .args(op)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The node processes and their directory, killed and removed when the test ends.
#[allow(dead_code)] // the store's process tests use it, the others do not
pub(crate) struct Processes {
    children: HashMap<NodeId, Child>,
    /// Where their logs (and whatever a test keeps beside them) go.
    pub(crate) dir: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[allow(dead_code)]
impl Processes {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("plus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { children: HashMap::new(), dir }
    }

    /// Starts node `id` of `addrs` in memory, with `extra` arguments, its log in `dir/ID.log`.
    pub(crate) fn start(&mut self, id: NodeId, addrs: &HashMap<NodeId, String>, extra: &[String]) {
        self.spawn(id, addrs, &["--memory".to_owned()], extra);
    }

    /// [`Processes::start`] with its data in `dir/nodeID`: a restart keeps what it had.
    pub(crate) fn start_durable(
        &mut self,
        id: NodeId,
        addrs: &HashMap<NodeId, String>,
        extra: &[String],
    ) {
        let data = self.dir.join(format!("node{id}")).display().to_string();
        self.spawn(id, addrs, &["--data".to_owned(), data], extra);
    }

    fn spawn(
        &mut self,
        id: NodeId,
        addrs: &HashMap<NodeId, String>,
        storage: &[String],
        extra: &[String],
    ) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{id}.log")))
            .unwrap();
        let child = Command::new(example("quorum_node"))
            .args(["--id", &id.to_string(), "--listen", &addrs[&id], "--peers", &peers(addrs)])
            .args(storage)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(id, child);
    }

    /// The peak memory (VmHWM) of node `id`'s process, in KiB.
    pub(crate) fn peak_rss_kib(&self, id: NodeId) -> u64 {
        let pid = self.children[&id].id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub(crate) fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn log(&self, id: NodeId) -> String {
        std::fs::read_to_string(self.dir.join(format!("{id}.log"))).unwrap_or_default()
    }
}

#[allow(dead_code)]
pub(crate) fn peers(addrs: &HashMap<NodeId, String>) -> String {
    let mut ids: Vec<_> = addrs.keys().copied().collect();
    ids.sort_unstable();
    ids.iter().map(|id| format!("{id}={}", addrs[id])).collect::<Vec<_>>().join(",")
}

/// The leader's id and term, from `quorum_ctl status` (`node ID Leader term=T ...`).
#[allow(dead_code)]
pub(crate) fn leader(endpoints: &str, auth: &[String]) -> Option<(NodeId, u64)> {
    let output = quorum_ctl(endpoints, 10, auth, &["status"]);
    let status = String::from_utf8_lossy(&output.stdout);
    status.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["node", id, "Leader", term, ..] => {
                Some((id.parse().ok()?, term.strip_prefix("term=")?.parse().ok()?))
            }
            _ => None,
        }
    })
}

/// The TLS arguments for `name`'s files in `dir`, as `quorum_certs` wrote them.
#[allow(dead_code)]
pub(crate) fn tls_args(dir: &Path, name: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("{name}.pem")),
        "--tls-key".into(),
        file(format!("{name}.key")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}

/// Runs `command` to its end within `limit`, its output read as it comes (a full pipe never
/// stalls it); killed, and the test failed naming `what`, past the limit.
#[allow(dead_code)]
pub(crate) fn output_within(
    mut command: Command,
    limit: std::time::Duration,
    what: &str,
) -> Output {
    use std::io::Read;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// The number after `key=` on a program's summary line (`apps=6 deployed=6 ...`).
#[allow(dead_code)] // the platform's tests use it
pub(crate) fn field(line: &str, key: &str) -> usize {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line}"))
}
