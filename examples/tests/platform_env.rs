//! `platform --env NAME` as a user runs it: the 41 applications of the personal environment
//! `dev-alice` (examples/data/environments) built, then deployed in dependency order to an
//! agent process each, every one with its configuration rendered for the environment beside
//! its artifact and gated on its check; a failed check stops its dependents and leaves the
//! instance running; a controller that takes over finishes the same environment.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// 41 agents and their programs per run on a small machine: one run at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Every secret constant of the example environments: none may be printed.
const SECRETS: [&str; 3] = ["beta-db-secret", "beta-cache-secret", "sandbox-key-beta"];

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plus-platform-env-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn platform(args: &[&str], root: &Path) -> Command {
    let mut command = Command::new(common::example("platform"));
    command
        .args(["--no-progress", "--env", "dev-alice", "--agents-root"])
        .arg(root)
        .args(args)
        .env_remove("CARGO")
        .env_remove("RUST_LOG");
    command
}

fn last_line(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

fn port_of(host: &Path) -> u16 {
    std::fs::read_to_string(host.join("port")).unwrap().trim().parse().unwrap()
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[test]
fn the_platform_brings_up_the_personal_environment_with_its_configuration() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = work_dir("up");
    // Everything logged, the agents' steps with their files included: no secret in any of it.
    let mut command = platform(&[], &root);
    command.env("RUST_LOG", "info");
    let output = common::output_within(command, Duration::from_secs(180), "platform");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = last_line(&stdout);
    assert!(line.ends_with(" env=dev-alice apps=41 rendered=41"), "{line}");
    assert_eq!(common::field(line, "deployed"), 41, "{line}");
    assert_eq!(common::field(line, "failed") + common::field(line, "skipped"), 0, "{line}");
    assert!(line.contains("quorum=identical"), "{line}");
    // Built in parallel, the person's own branches named; deployed in dependency order.
    assert!(stdout.contains("built     41 applications in parallel"), "{stdout}");
    assert!(stdout.contains("built     booking-service branch feature/alice-checkout"), "{stdout}");
    assert!(stdout.contains("payment-service branch alice/refunds (gradle)"), "{stdout}");
    let order: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" deployed ") && l.contains("1/1"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(order.len(), 41, "{stdout}");
    let at = |app: &str| order.iter().position(|a| *a == app).unwrap();
    for (app, dependency) in [
        ("account-service", "mysql"),
        ("account-service", "user-service"),
        ("api-gateway", "booking-service"),
    ] {
        assert!(at(dependency) < at(app), "{app} deployed before {dependency}: {order:?}");
    }
    // The configuration beside the artifact names the ports the dependencies really listen
    // on in this environment, and the application's own.
    let account = root.join("account-service-00");
    let properties = std::fs::read_to_string(
        account.join("current/config/account-service/application.properties"),
    )
    .unwrap();
    let mysql = port_of(&root.join("mysql-00"));
    let users = port_of(&root.join("user-service-00"));
    assert!(
        properties.contains(&format!("db.url=jdbc:mysql://127.0.0.1:{mysql}/account_service")),
        "{properties}"
    );
    assert!(
        properties.contains(&format!("user.service.url=http://127.0.0.1:{users}")),
        "{properties}"
    );
    assert!(properties.contains(&format!("server.port={}", port_of(&account))), "{properties}");
    assert!(properties.contains("logging.level=debug\n"), "dev-alice's own constant: {properties}");
    assert!(
        properties.contains("db.password=beta-db-secret\n"),
        "the secret, for the program: {properties}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(account.join("current/config/account-service/application.properties")), 0o600);
    // Secrets reach the programs' files only: never the output or the agents' logs.
    let mut logs = String::new();
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            std::fs::File::open(entry.path()).unwrap().read_to_string(&mut logs).unwrap();
        }
    }
    assert!(
        logs.contains("step requested") && logs.contains("ConfigFile"),
        "the agents log their steps"
    );
    for secret in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret) && !logs.contains(secret),
            "{secret} shown"
        );
    }
    // Nothing the run started outlives it.
    assert!(!answers(port_of(&root.join("web-frontend-00"))), "a program outlived the platform");
    let _ = std::fs::remove_dir_all(&root);
}

/// The platform of a test, killed if the test ends first (its agents then stop with it).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_failed_check_stops_its_dependents_and_leaves_the_instance_running_for_a_person() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = work_dir("broken");
    let mut command = platform(&["--break-check", "hotel-catalog", "--linger-ms", "4000"], &root);
    let mut running =
        Running(command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let (lines, read) = mpsc::channel();
    let stdout = running.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    let last = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = read.recv_timeout(left).unwrap_or_else(|_| panic!("no last line: {seen:#?}"));
        if line.starts_with("apps=") {
            break line;
        }
        seen.push(line);
    };
    let shown = seen.join("\n");
    assert_eq!(common::field(&last, "failed"), 1, "{last}");
    assert!(common::field(&last, "skipped") >= 5, "its dependents are skipped: {last}");
    assert_eq!(
        common::field(&last, "deployed") + 1 + common::field(&last, "skipped"),
        41,
        "{last}"
    );
    assert!(
        shown.contains("room-inventory") && shown.contains("skipped (requires hotel-catalog)"),
        "{shown}"
    );
    // The report says where to look, and what the check said.
    let host = root.join("hotel-catalog-00");
    let port = port_of(&host);
    assert!(
        shown.contains(&format!("inspect   hotel-catalog left as it is on 127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.contains(&host.display().to_string()), "{shown}");
    assert!(shown.contains("answered `HTTP/1.1 404 Not Found`"), "{shown}");
    // While the platform lingers, the failed instance is still the one that was started:
    // not restarted, not stopped.
    assert!(answers(port), "the failed instance was stopped");
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(10), "the platform did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a failed application fails the run");
    assert!(!answers(port), "the instance outlived the platform");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_controller_that_takes_over_finishes_the_same_environment() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = work_dir("failover");
    let command = platform(&["--controllers", "3", "--kill-leader-after-ms", "1500"], &root);
    let output = common::output_within(command, Duration::from_secs(180), "platform");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = last_line(&stdout);
    assert_eq!(common::field(line, "deployed"), 41, "{line}");
    assert_eq!(common::field(line, "failovers"), 1, "{line}");
    assert!(common::field(line, "max_out_of_traffic") <= common::field(line, "cap"), "{line}");
    assert!(stdout.contains("failover  controller"), "{stdout}");
    let _ = std::fs::remove_dir_all(&root);
}
