//! The node program's library part: the data directory's identity and the start it leads to,
//! and a whole run stopped by its future, handing leadership over.
#![cfg(feature = "program")]

use std::collections::HashMap;

use plus_quorum::testing::loopback_addrs;
use plus_quorum::{
    Config, DataDir, DataDirError, MuxConfig, NodeProgram, Security, Start, StartMode, run_node,
};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("plus-program-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_start_follows_from_the_mode_and_whether_the_directory_was_used() {
    let cases = [
        (StartMode::New, false, Start::Bootstrap),
        (StartMode::New, true, Start::Rejoin),
        (StartMode::Rejoin, false, Start::Rejoin),
        (StartMode::Join, false, Start::Join),
        (StartMode::Join, true, Start::Rejoin),
        (StartMode::ForceNewCluster, true, Start::ForceNewCluster),
    ];
    for (mode, existed, start) in cases {
        assert_eq!(mode.start(existed), start, "{mode:?} existed={existed}");
    }
}

#[test]
fn a_directory_is_stamped_once_and_refused_to_another_node() {
    let dir = temp_dir("stamp");
    let (first, storage) = DataDir::open(&dir, "c", 1).unwrap();
    assert!(!first.existed);
    // Locked while held: a second process (here, a second open) is refused.
    assert!(matches!(DataDir::open(&dir, "c", 1), Err(DataDirError::Storage(_))));
    first.stamp().unwrap();
    drop(storage);
    let (again, storage) = DataDir::open(&dir, "c", 1).unwrap();
    assert!(again.existed, "stamped: the next start is a restart");
    drop(storage);
    let other = DataDir::open(&dir, "c", 2).unwrap_err();
    assert!(matches!(other, DataDirError::OtherNode { .. }), "{other}");
    assert!(other.to_string().contains("belongs to another node"), "{other}");
    // A log without its stamp is nobody's.
    std::fs::remove_file(dir.join("identity")).unwrap();
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    std::fs::write(dir.join("wal").join("00000001.log"), b"x").unwrap();
    let nobody = DataDir::open(&dir, "c", 1).unwrap_err();
    assert!(matches!(nobody, DataDirError::LogWithoutIdentity { id: 1, .. }), "{nobody}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_node_runs_until_told_to_stop_and_a_lone_leader_has_no_one_to_hand_over_to() {
    let dir = temp_dir("run");
    let addrs: HashMap<u64, String> = loopback_addrs(&[1]).await.unwrap();
    let program = NodeProgram {
        config: Config::new(1, vec![1]),
        addrs,
        security: Security::Plain,
        mux: MuxConfig::default(),
        data: Some(dir.clone()),
        cluster: "test".into(),
        mode: StartMode::New,
    };
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let mut seen = None;
    let run = run_node(program, |_, start| seen = Some(start), async {
        let _ = told.await;
    });
    let stopper = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let _ = tell.send(());
    };
    let (stopped, ()) = tokio::join!(run, stopper);
    let stopped = stopped.unwrap();
    assert_eq!(seen, Some(Start::Bootstrap));
    assert_eq!(stopped.handed_to, None);
    assert!(std::fs::read_to_string(dir.join("identity")).unwrap().contains("node=1"));
    let _ = std::fs::remove_dir_all(&dir);
}
