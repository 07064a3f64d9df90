//! The platform's own store: the embedded plus-quorum cluster (a node in each controller
//! replica, over plus-mux on loopback, reached with the run's key only), or an etcd the team
//! already runs (`--store etcd`, built with the `etcd` feature). Both give the controllers the
//! same `KvClient`, so elections, locks and the saved rollouts are the same code on either.
//! Every key of a run is under `platform/RUN/` (a `Namespaced` client), so runs sharing one
//! etcd never see each other's deployment, releases or locks.

use std::time::{Duration, Instant};

use plus_quorum::compare;
use plus_quorum::testing::loopback_addrs;

use crate::controller::{self, Controller, Store};

/// The run's namespace in the store: `platform/` and a random run id.
fn run_prefix() -> String {
    format!("platform/{:08x}/", rand::random::<u32>())
}

/// `store` with its keys under `prefix`.
fn namespaced(store: Store, prefix: &str) -> Store {
    std::sync::Arc::new(plus_quorum::Namespaced::new(store, prefix))
}

/// The replicas and a client for the platform's own writes.
pub(crate) struct Opened {
    pub replicas: Vec<Controller>,
    pub store: Store,
    /// Where the store is, for the output.
    pub described: String,
}

/// The embedded store: three nodes at least, one in each of `controllers` replicas.
pub(crate) async fn embedded(controllers: u64) -> Result<Opened, String> {
    let members: Vec<u64> = (1..=controllers.max(3)).collect();
    let addrs = loopback_addrs(&members).await.map_err(|e| e.to_string())?;
    let security = controller::run_security()?;
    let prefix = run_prefix();
    let mut replicas = Vec::new();
    for &id in &members {
        let store = namespaced(controller::client(&addrs, &security), &prefix);
        replicas.push(Controller::start(id, &addrs, &security, store).await?);
    }
    let mut listed: Vec<&String> = addrs.values().collect();
    listed.sort();
    let described = format!(
        "quorum    {} nodes over plus-mux on {}",
        members.len(),
        listed.into_iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let store = namespaced(controller::client(&addrs, &security), &prefix);
    Ok(Opened { replicas, store, described })
}

/// etcd at `endpoints`: `controllers` replicas, each with a client of its own.
#[cfg(feature = "etcd")]
pub(crate) async fn etcd(endpoints: &[String], controllers: u64) -> Result<Opened, String> {
    let connect = || async {
        plus_quorum::EtcdClient::connect(endpoints, Duration::from_secs(5))
            .await
            .map(|client| std::sync::Arc::new(client) as Store)
            .map_err(|e| format!("cannot reach etcd at {}: {e}", endpoints.join(",")))
    };
    let prefix = run_prefix();
    let mut replicas = Vec::new();
    for id in 1..=controllers {
        replicas.push(Controller::on(id, namespaced(connect().await?, &prefix)));
    }
    let described =
        format!("etcd      at {}, this run's keys under {prefix}", endpoints.join(", "));
    Ok(Opened { replicas, store: namespaced(connect().await?, &prefix), described })
}

/// Whether the store's live replicas hold the same state: the embedded nodes compared entry
/// by entry, or etcd's members by the hash of their keys at one revision (`etcdctl endpoint
/// hashkv`); each tried for up to 5 s while they catch up.
pub(crate) async fn replicas_agree(
    replicas: &[Controller],
    #[allow(unused_variables)] etcd_endpoints: &[String],
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        #[cfg(feature = "etcd")]
        if !etcd_endpoints.is_empty() {
            if etcd_members_agree(etcd_endpoints).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let live: Vec<&Controller> = replicas.iter().filter(|r| !r.is_killed()).collect();
        let mut inspections = Vec::new();
        for node in live.iter().filter_map(|r| r.node.as_ref()) {
            if let Ok(r) = node.handle.inspect().await {
                inspections.push(r);
            }
        }
        if inspections.len() == live.len() && compare(&inspections).identical() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Every etcd member's hash of its keys at the first one's current revision, all equal.
#[cfg(feature = "etcd")]
#[expect(
    clippy::redundant_closure_for_method_calls,
    reason = "etcd-client's header type cannot be named here: the examples reach it through plus-quorum"
)]
async fn etcd_members_agree(endpoints: &[String]) -> bool {
    let mut hashes = Vec::new();
    let mut revision = None;
    for endpoint in endpoints {
        let Ok(client) =
            plus_quorum::EtcdClient::connect(&[endpoint], Duration::from_secs(2)).await
        else {
            return false;
        };
        let mut inner = client.inner().clone();
        let at = match revision {
            Some(at) => at,
            None => match inner.status().await {
                Ok(status) => *revision.insert(status.header().map_or(0, |h| h.revision())),
                Err(_) => return false,
            },
        };
        match inner.hash_kv(at).await {
            Ok(answer) => hashes.push(answer.hash()),
            Err(_) => return false,
        }
    }
    hashes.windows(2).all(|pair| pair[0] == pair[1])
}
