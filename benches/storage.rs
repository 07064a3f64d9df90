//! FileStorage: 64 entries made durable in one append (what group commit gives the driver)
//! beside one append, and so one fsync, per entry.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use plus_quorum::{Entry, FileStorage, Payload, Storage, WriteOp};

const ENTRIES: u64 = 64;

fn entry(index: u64) -> Entry {
    Entry {
        term: 1,
        index,
        payload: Payload::Write(WriteOp::Set {
            key: format!("key-{index}"),
            value: Bytes::from(vec![b'v'; 256]),
        }),
    }
}

fn file_storage(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("plus-bench-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut storage = FileStorage::open(&dir).unwrap();
    let mut next = 1;
    let mut group = c.benchmark_group("quorum_file_storage_64_entries");
    group.sample_size(20);
    group.bench_function("one_fsync_per_entry", |b| {
        b.iter(|| {
            for _ in 0..ENTRIES {
                storage.append(&[entry(next)]).unwrap();
                next += 1;
            }
        });
    });
    group.bench_function("group_commit", |b| {
        b.iter(|| {
            let batch: Vec<Entry> = (next..next + ENTRIES).map(entry).collect();
            storage.append(&batch).unwrap();
            next += ENTRIES;
        });
    });
    group.finish();
    drop(storage);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, file_storage);
criterion_main!(benches);
