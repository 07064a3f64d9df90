//! `FileStorage` under SIGKILL, with real processes: a child appends (and now and then saves
//! its term and a snapshot) and prints what each call acknowledged; the test kills it at a
//! random moment, opens the directory itself, and checks that every acknowledged append is
//! there and the log takes new appends. Then again, on the same directory, many times, with
//! segments small enough that kills land while segments are started and deleted.
#![cfg(all(unix, feature = "file-storage"))]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plus_quorum::{Entry, FileStorage, HardState, KvState, Payload, Snapshot, Storage, WriteOp};
use rand::{Rng, SeedableRng};

/// The child's directory, in the environment: its presence makes `crash_child` the child.
const CHILD_DIR: &str = "PLUS_CRASH_CHILD_DIR";
const ROUNDS: usize = 60;
/// Small segments, so that kills land in segment rolls and in compactions deleting segments.
const SEGMENT: u64 = 4096;

/// What entry `index` holds: the test knows every acknowledged entry's content.
fn entry(index: u64) -> Entry {
    let value = "x".repeat((index % 700) as usize);
    Entry {
        term: 1 + index / 100,
        index,
        payload: Payload::Write(WriteOp::Set {
            key: format!("key-{index}"),
            value: Bytes::from(value),
        }),
    }
}

/// The last index stored (snapshot or log), after checking every stored entry's content.
fn recover(storage: &mut FileStorage) -> (u64, Option<u64>) {
    let Some(recovered) = storage.recover().expect("the directory recovers after a kill") else {
        return (0, None);
    };
    let base = recovered.snapshot.as_ref().map_or(0, |s| s.last_index);
    let mut last = base;
    for e in &recovered.entries {
        // Entries a snapshot covers may stay in the log (the node skips them).
        if e.index <= base {
            assert_eq!(*e, entry(e.index), "entry {} is what was appended", e.index);
            continue;
        }
        assert_eq!(e.index, last + 1, "entries follow each other");
        assert_eq!(*e, entry(e.index), "entry {} is what was appended", e.index);
        last = e.index;
    }
    (last, recovered.snapshot.map(|s| s.last_index))
}

/// The child: appends for ever (until killed), printing `acked N` after each append of entries
/// up to N returned, `snapshot N` after a snapshot up to N was saved.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let mut storage = FileStorage::open(PathBuf::from(dir)).unwrap().with_segment_bytes(SEGMENT);
    let (mut last, snapshot) = recover(&mut storage);
    let mut snapshot = snapshot.unwrap_or(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(last);
    let mut out = std::io::stdout().lock();
    loop {
        let count = rng.random_range(1..=8);
        let batch: Vec<Entry> = (last + 1..=last + count).map(entry).collect();
        storage.append(&batch).unwrap();
        last += count;
        writeln!(out, "acked {last}").unwrap();
        out.flush().unwrap();
        if rng.random_bool(0.05) {
            let state = HardState { term: 1 + last / 100, voted_for: Some(1), recovering: false };
            storage.save_hard_state(&state).unwrap();
        }
        // Like a node's, snapshots only move forward.
        let upto = last.saturating_sub(rng.random_range(0..10));
        if rng.random_bool(0.02) && upto > snapshot {
            snapshot = upto;
            let snapshot = Snapshot {
                last_index: upto,
                last_term: entry(upto).term,
                state: KvState::default(),
                membership: None,
            };
            storage.save_snapshot(&snapshot).unwrap();
            writeln!(out, "snapshot {upto}").unwrap();
            out.flush().unwrap();
        }
    }
}

fn run_child_until_killed(dir: &Path, after: Duration) -> (u64, u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_ack, acked_once) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut acked, mut snapshot) = (0, 0);
        for line in BufReader::new(stdout).lines() {
            // A line cut by the kill has no newline and does not parse: not acknowledged.
            let Ok(line) = line else { break };
            let mut words = line.split(' ');
            match (words.next(), words.next().and_then(|n| n.parse::<u64>().ok())) {
                (Some("acked"), Some(n)) => {
                    acked = n;
                    let _ = first_ack.send(());
                }
                (Some("snapshot"), Some(n)) => snapshot = n,
                _ => {}
            }
        }
        (acked, snapshot)
    });
    // Once the child is appending, nobody else may open its directory.
    if acked_once.recv_timeout(Duration::from_secs(20)).is_ok() {
        let refused = FileStorage::open(dir).unwrap_err();
        assert_eq!(refused.kind(), plus_quorum::StorageErrorKind::Locked, "{refused}");
    }
    std::thread::sleep(after);
    // SIGKILL: no destructor, no flush, no goodbye.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let dir = std::env::temp_dir().join(format!("plus-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let (mut acked_total, mut empty_rounds) = (0, 0);
    let mut highest_acked = 0;
    for round in 0..ROUNDS {
        let after = Duration::from_millis(rng.random_range(5..60));
        let (acked, snapshot) = run_child_until_killed(&dir, after);
        empty_rounds += usize::from(acked <= highest_acked);
        highest_acked = highest_acked.max(acked);
        let mut storage = FileStorage::open(&dir).unwrap().with_segment_bytes(SEGMENT);
        let (last, recovered_snapshot) = recover(&mut storage);
        assert!(
            last >= highest_acked,
            "round {round}: {highest_acked} acknowledged, only {last} recovered"
        );
        if snapshot > 0 {
            assert!(recovered_snapshot.is_some_and(|s| s >= snapshot), "round {round}: snapshot");
        }
        // The log takes new appends where it ends.
        storage.append(&[entry(last + 1)]).unwrap();
        highest_acked = last + 1;
        acked_total = last + 1;
        drop(storage);
    }
    println!(
        "{ROUNDS} kills, {acked_total} entries acknowledged, {empty_rounds} rounds without a new \
         acknowledgement, {:?}",
        started.elapsed()
    );
    assert!(acked_total > ROUNDS as u64 * 2, "the children did append");
    std::fs::remove_dir_all(&dir).unwrap();
}
