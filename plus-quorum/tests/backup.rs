//! Online backup and restore, in process over real TCP with file storage: a backup taken while
//! writes go on holds every write acknowledged at or before its revision; a new cluster restored
//! from it on wiped directories serves them; a second backup while one is being fetched is
//! refused as busy; a restore never writes over data.
#![cfg(feature = "program")]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plus_quorum::testing::loopback_addrs;
use plus_quorum::{
    Cluster, Config, DataDir, MuxConfig, MuxNode, RemoteNode, RestoreError, StoreError,
    read_backup_file, restore_data_dir, verify_backup_file,
};

const IDS: [u64; 3] = [1, 2, 3];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plus-backup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Three nodes on `root/N`, each a directory opened as `quorum_node` opens it.
async fn start(root: &Path, cluster: &str) -> (Vec<MuxNode>, HashMap<u64, String>) {
    let addrs = loopback_addrs(&IDS).await.unwrap();
    let mut nodes = Vec::new();
    for id in IDS {
        let (opened, storage) = DataDir::open(&root.join(id.to_string()), cluster, id).unwrap();
        let start = plus_quorum::StartMode::New.start(opened.existed);
        let config = {
            let mut config = Config::new(id, IDS.to_vec());
            config.start = start;
            config
        };
        nodes.push(MuxNode::start(config, storage, &addrs, MuxConfig::default()).await.unwrap());
        if !opened.existed {
            opened.stamp().unwrap();
        }
    }
    (nodes, addrs)
}

fn client(addrs: &HashMap<u64, String>) -> Cluster<RemoteNode> {
    let nodes = IDS
        .iter()
        .map(|id| RemoteNode::connect(*id, &addrs[id], &MuxConfig::default()).unwrap())
        .collect();
    let mut cluster = Cluster::new(nodes);
    cluster.deadline = Duration::from_secs(10);
    cluster
}

async fn stop(nodes: Vec<MuxNode>) {
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_backup_under_writes_restores_into_a_new_cluster_with_every_write_before_it() {
    let old = temp_dir("old");
    let (nodes, addrs) = start(&old, "first").await;
    let cluster = Arc::new(client(&addrs));
    for i in 0..200 {
        cluster.set(&format!("before/{i:03}"), vec![b'x'; 512]).await.unwrap();
    }
    // Writes go on while the backup is taken and fetched: each acknowledged one is recorded
    // with the version (revision) it got.
    let stop_writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (cluster, stop_writing) = (Arc::clone(&cluster), Arc::clone(&stop_writing));
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            let mut i = 0u64;
            while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("during/{i:05}");
                if let Ok(version) = cluster.set(&key, i.to_string()).await {
                    acked.insert(key, (version, i.to_string()));
                }
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let file = old.join("backup.db");
    let mut out = Vec::new();
    let header = cluster.save_backup(&mut out).await.unwrap();
    std::fs::write(&file, out).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let before: Vec<_> = acked.iter().filter(|(_, (v, _))| *v <= header.revision).collect();
    let after = acked.len() - before.len();
    assert!(
        !before.is_empty() && after > 0,
        "writes on both sides of the backup: {} / {after}",
        before.len()
    );
    assert_eq!(verify_backup_file(&file).unwrap(), header);

    // The whole cluster is lost.
    stop(nodes).await;
    let (read, snapshot) = read_backup_file(&file).unwrap();
    assert_eq!(read, header);
    let new = temp_dir("new");
    for id in IDS {
        restore_data_dir(&snapshot, &new.join(id.to_string()), "second", id, &IDS).unwrap();
    }
    std::fs::remove_dir_all(&old).unwrap();
    let (nodes, addrs) = start(&new, "second").await;
    let cluster = client(&addrs);
    for i in 0..200 {
        let found = cluster.get(&format!("before/{i:03}")).await.unwrap();
        assert_eq!(found.map(|v| v.value.len()), Some(512), "before/{i:03}");
    }
    for (key, (version, value)) in before {
        let found = cluster.get(key).await.unwrap().unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!((found.version, &found.value[..]), (*version, value.as_bytes()), "{key}");
    }
    assert_eq!(cluster.len().await.unwrap() as u64, header.keys);
    // Revisions go on from the backup's.
    let next = cluster.set("after-restore", "1").await.unwrap();
    assert!(next > header.revision, "{next} after {}", header.revision);
    stop(nodes).await;
    let _ = std::fs::remove_dir_all(&new);
}

/// A writer that takes a few bytes and then blocks: a fetch that stalls half-way.
struct Stalled(usize);

impl tokio::io::AsyncWrite for Stalled {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.0 == 0 {
            return std::task::Poll::Pending;
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        std::task::Poll::Ready(Ok(n))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn one_backup_at_a_time_is_held_and_a_restore_never_writes_over_data() {
    let root = temp_dir("busy");
    let (nodes, addrs) = start(&root, "c").await;
    let cluster = client(&addrs);
    // More than one 4 MiB piece, so the first fetch is still going when the second asks.
    for i in 0..6 {
        let op = plus_quorum::WriteOp::MultiSet(
            (0..100).map(|j| (format!("k/{i}/{j:03}"), vec![b'v'; 10_000].into())).collect(),
        );
        cluster.write(op).await.unwrap();
    }
    let first = tokio::spawn({
        let cluster = client(&addrs);
        async move { cluster.save_backup(&mut Stalled(1024)).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = cluster.save_backup(&mut tokio::io::sink()).await.unwrap_err();
    assert!(matches!(second, StoreError::Busy(_)), "{second}");
    assert!(second.to_string().contains("another backup"), "{second}");
    first.abort();

    let (_, snapshot) = {
        let file = root.join("b.db");
        let mut out = Vec::new();
        // The stalled one is let go once its fetcher is gone (or idle): until then, busy.
        let header = loop {
            out.clear();
            match cluster.save_backup(&mut out).await {
                Ok(header) => break header,
                Err(StoreError::Busy(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(other) => panic!("{other}"),
            }
        };
        assert_eq!(header.keys, 600);
        std::fs::write(&file, out).unwrap();
        read_backup_file(&file).unwrap()
    };
    let used = root.join("1");
    let err = restore_data_dir(&snapshot, &used, "c", 1, &IDS).unwrap_err();
    assert!(matches!(err, RestoreError::NotEmpty { .. }), "{err}");
    let err = restore_data_dir(&snapshot, &root.join("9"), "c", 9, &IDS).unwrap_err();
    assert!(matches!(err, RestoreError::NotAVoter { id: 9, .. }), "{err}");
    stop(nodes).await;
    let _ = std::fs::remove_dir_all(&root);
}
