//! `AgentPool` and `Agent` in one process, over plain TCP on loopback: two applications each on
//! an agent of its own, released step by step through the pool as a `StepExecutor`; the
//! configuration files land beside the artifact; an agent fetching another application's
//! artifact is refused; a host the pool does not own fails its step at once; an agent that
//! goes away is declared lost and its steps fail without waiting.
#![cfg(all(unix, feature = "agent"))]

use std::path::{Path, PathBuf};
use std::time::Duration;

use plus_core::{AppCode, HostId, Version};
use plus_mux::{ReconnectConfig, ReconnectingClient, TcpConnector};
use plus_rollout::agent::protocol::{Commands, ConfigFile, Fetch};
use plus_rollout::agent::{Agent, AgentApp, AgentConfig, AgentPool, PoolConfig};
use plus_rollout::{Step, StepExecutor, StepOutcome};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plus-pool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn host(name: &str) -> HostId {
    HostId::new(name).unwrap()
}

/// An application whose artifact is a small file and whose program and check are `sleep` and
/// `true` (no shell).
fn app(code: &str, artifact: &Path, files: Vec<ConfigFile>) -> AgentApp {
    std::fs::write(artifact, format!("the {code} artifact")).unwrap();
    let commands = Commands {
        run: vec!["sleep".into(), "30".into()],
        check: vec!["true".into()],
        check_retry: 0,
        check_interval_ms: 10,
    };
    AgentApp::new(AppCode::new(code).unwrap(), commands, artifact.to_owned())
        .unwrap()
        .with_files(files)
}

/// An agent `id` with its host directory under `root`, connected to the pool at `address`;
/// its task ends when `stop` is dropped or sent.
fn agent(
    id: &str,
    root: &Path,
    address: &str,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>, ReconnectingClient) {
    let agent = Agent::new(AgentConfig {
        id: id.to_owned(),
        root: root.join(id),
        keep: 2,
        hook: None,
        heartbeat: Duration::from_millis(100),
        step_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let client = ReconnectingClient::new(
        TcpConnector::new(address),
        agent.mux_config(),
        ReconnectConfig::default(),
        agent.handler(),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let connection = client.clone();
    let task = tokio::spawn(async move {
        let _ = agent
            .run(connection, async {
                let _ = stopped.await;
            })
            .await;
    });
    (task, stop, client)
}

fn config() -> PoolConfig {
    let mut config = PoolConfig::default();
    config.heartbeat = Duration::from_millis(100);
    config.dead_after = Duration::from_millis(600);
    config.registration = Duration::from_secs(10);
    config
}

#[tokio::test]
async fn a_pool_releases_two_applications_each_to_its_own_agent() {
    let root = dir("two-apps");
    let secret = ConfigFile {
        path: "config/api.properties".into(),
        contents: "db.password=hunter2\n".into(),
        secret: true,
    };
    let api = app("api", &root.join("api.bin"), vec![secret]);
    let web = app("web", &root.join("web.bin"), Vec::new());
    let pool = AgentPool::with_apps(
        vec![(api, vec![host("api-00")]), (web, vec![host("web-00")])],
        config(),
    )
    .unwrap();
    assert_eq!(pool.hosts_of(&AppCode::new("web").unwrap()), [host("web-00")]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let _serving = pool.serve(listener);
    let (api_task, _api_stop, api_link) = agent("api-00", &root, &address);
    let (web_task, _web_stop, _) = agent("web-00", &root, &address);
    pool.registered().await.unwrap();

    let version = Version::new("1.0").unwrap();
    for target in [host("api-00"), host("web-00")] {
        for step in Step::ALL {
            let outcome = pool.run(&target, step, &version).await;
            assert_eq!(outcome, StepOutcome::Done, "{step} on {target}");
        }
    }
    // Each host got its own application's artifact, and the API its configuration.
    let installed = |h: &str, file: &str| std::fs::read(root.join(h).join("current").join(file));
    assert_eq!(installed("api-00", "artifact").unwrap(), b"the api artifact");
    assert_eq!(installed("web-00", "artifact").unwrap(), b"the web artifact");
    assert_eq!(installed("api-00", "config/api.properties").unwrap(), b"db.password=hunter2\n");
    assert!(installed("web-00", "config/api.properties").is_err());
    // Already there: a second Precheck says so.
    let again = pool.run(&host("api-00"), Step::Precheck, &version).await;
    assert_eq!(again, StepOutcome::AlreadyOnTarget);

    // The API's agent may not fetch the web application's artifact.
    let web_artifact = root.join("web.bin").to_string_lossy().into_owned();
    let ask = Fetch { fetch: web_artifact, offset: 0, len: 1024 };
    let refused = api_link.request(serde_json::to_vec(&ask).unwrap()).await;
    assert!(
        refused.unwrap_err().to_string().contains("not an artifact of this release"),
        "an agent fetched another application's artifact"
    );

    // A host the pool does not own fails at once.
    let stranger = pool.run(&host("db-00"), Step::Precheck, &version).await;
    assert!(matches!(stranger, StepOutcome::Failed(ref why) if why.contains("not a host")));

    // The web agent goes away: it is declared lost, and its steps fail without waiting for a
    // step deadline.
    web_task.abort();
    pool.declared_dead(&host("web-00")).await;
    assert!(pool.lost().iter().any(|(h, ..)| *h == host("web-00")), "{:?}", pool.lost());
    let started = std::time::Instant::now();
    let lost = pool.run(&host("web-00"), Step::Markdown, &version).await;
    assert!(matches!(lost, StepOutcome::Failed(ref why) if why.contains("lost")), "{lost:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    api_task.abort();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_host_given_for_two_applications_is_refused() {
    let root = dir("twice");
    let one = app("one", &root.join("one.bin"), Vec::new());
    let two = app("two", &root.join("two.bin"), Vec::new());
    let err = AgentPool::with_apps(
        vec![(one.clone(), vec![host("h-00")]), (two, vec![host("h-00")])],
        config(),
    )
    .unwrap_err();
    assert!(err.contains("h-00") && err.contains("one") && err.contains("two"), "{err}");
    let err = AgentPool::with_apps(vec![(one.clone(), vec![]), (one, vec![])], config());
    assert!(err.unwrap_err().contains("twice"));
    let _ = std::fs::remove_dir_all(&root);
}
