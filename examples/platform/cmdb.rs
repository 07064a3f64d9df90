//! The simulated CMDB the platform asks for each application's servers, behind a metadata
//! cache (`plus_rollout::degrade::metadata`): concurrent lookups of one application make one
//! call, and while the CMDB is down a release gets the last answer it gave, marked stale, and
//! goes on ("as long as the package exists, service can be restored").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plus_core::{AppCode, HostId};
use plus_rollout::GroupHost;
use plus_rollout::degrade::metadata::{Fetched, MetadataCache};

use crate::agents::AgentHosts;

/// The CMDB and its cache.
pub(crate) struct Cmdb {
    hosts_per_app: usize,
    agents: Option<Arc<AgentHosts>>,
    down: AtomicBool,
    /// Calls that reached the CMDB.
    calls: AtomicUsize,
    /// Lookups answered from the cache because the CMDB was down.
    stale: AtomicUsize,
    cache: Arc<MetadataCache<AppCode, Vec<GroupHost>>>,
}

impl Cmdb {
    pub(crate) fn new(hosts_per_app: usize, agents: Option<Arc<AgentHosts>>) -> Self {
        Self {
            hosts_per_app,
            agents,
            down: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            stale: AtomicUsize::new(0),
            cache: MetadataCache::new(),
        }
    }

    /// An outage of the CMDB from now on (`--degrade metadata`).
    pub(crate) fn fail(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Lookups answered from the cache while the CMDB was down.
    pub(crate) fn stale_lookups(&self) -> usize {
        self.stale.load(Ordering::SeqCst)
    }

    /// `app`'s servers: from the CMDB, or, while it is down, the last answer it gave.
    pub(crate) async fn group(&self, app: &AppCode) -> Result<Vec<GroupHost>, String> {
        let fetch = || async {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // A CMDB answers in a few milliseconds; one that is down, after its timeout.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if self.down.load(Ordering::SeqCst) {
                return Err("the CMDB does not answer".to_owned());
            }
            Ok(self.servers(app))
        };
        match self.cache.get(app.clone(), fetch).await? {
            Fetched::Fresh(group) => Ok(group),
            Fetched::Stale(group, why) => {
                self.stale.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(%app, %why, hosts = group.len(), "degraded: the servers of the last CMDB answer");
                Ok(group)
            }
        }
    }

    /// What the CMDB knows of `app`: the agents' hosts for the application they run, else
    /// simulated hosts.
    fn servers(&self, app: &AppCode) -> Vec<GroupHost> {
        match self.agents.as_ref().map(|agents| agents.hosts_of(app)) {
            Some(hosts) if !hosts.is_empty() => {
                hosts.into_iter().map(GroupHost::in_service).collect()
            }
            _ => (0..self.hosts_per_app)
                .map(|i| {
                    GroupHost::in_service(
                        HostId::new(format!("{app}-{i:02}")).expect("valid host id"),
                    )
                })
                .collect(),
        }
    }
}
