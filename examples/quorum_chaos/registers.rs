//! Clients contending on a few shared keys (gets, one-key range reads, puts, compare-and-sets,
//! one-key transactions, deletes) and on a pair of keys written only together (multi-key
//! sets, compare-and-sets, transactions and deletes; multi-gets and range reads of both),
//! whose every call and return is recorded, per object, for the linearizability check, and
//! written as JSON lines in the simulation's history format (`plus-quorum/tests/sim/mod.rs`).
//!
//! Linearizability is local: a history is linearizable when each object's is, so each is
//! checked on its own against a register. The pair is one register too: both its keys always
//! get the same value, so a read of both that finds them different (a torn transaction, or
//! one key's write lost) is a value no write made, which no linearization explains. An operation that failed in any way other than a
//! failed compare is "unknown": it may have taken effect at any time after it was sent, or
//! never, and its thread is retired (the client goes on as a new thread).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plus_quorum::{
    Bytes, Cluster, Compare, Expect, KeyRange, Range, ReadOp, ReadResult, RemoteNode, StoreError,
    Txn, TxnOp, TxnOpResult, WriteOp, WriteResult,
};
use rand::Rng;

use plus_quorum::testkit::{History, HistoryLine, Model, Verdict};

/// The shared keys.
pub(crate) const KEYS: usize = 8;
/// The pair object: its name (also the prefix of its keys) and its two keys.
pub(crate) const PAIR: &str = "pair/";
const PAIR_KEYS: [&str; 2] = ["pair/a", "pair/b"];

/// The register value of the pair from its two keys' values: the common value, or, when they
/// differ, a value no write ever makes.
fn joined(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (a, b) if a == b => a,
        (a, b) => Some(format!("torn: {a:?} / {b:?}")),
    }
}

fn pair_bytes(value: &str) -> Vec<(String, Bytes)> {
    PAIR_KEYS.iter().map(|k| ((*k).to_owned(), Bytes::from(value.to_owned()))).collect()
}

/// One key's state, as a sequential object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Register(Option<String>);

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(String),
    Get,
    /// A range read of the key's own prefix: the shared keys are `reg/0` to `reg/7`, so it
    /// holds that key alone.
    Range,
    Cas {
        expect: String,
        new: String,
    },
    /// A transaction: if the value is `expect`, set `new`, else read the value.
    TxnCas {
        expect: String,
        new: String,
    },
    Delete,
    /// Compare-and-delete: if the value is `expect`, delete it.
    Cad {
        expect: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ret {
    Done,
    Value(Option<String>),
    Swapped(bool),
    /// Whether the transaction's `then` ran, and otherwise the value its `else` read.
    Txn(bool, Option<String>),
}

impl Model for Register {
    type Op = Op;
    type Ret = Ret;

    fn step(&mut self, op: &Op) -> Ret {
        match op {
            Op::Put(value) => {
                self.0 = Some(value.clone());
                Ret::Done
            }
            Op::Get | Op::Range => Ret::Value(self.0.clone()),
            Op::TxnCas { expect, new } if self.0.as_deref() == Some(expect.as_str()) => {
                self.0 = Some(new.clone());
                Ret::Txn(true, None)
            }
            Op::TxnCas { .. } => Ret::Txn(false, self.0.clone()),
            Op::Cas { expect, new } if self.0.as_deref() == Some(expect.as_str()) => {
                self.0 = Some(new.clone());
                Ret::Swapped(true)
            }
            Op::Cas { .. } => Ret::Swapped(false),
            Op::Cad { expect } if self.0.as_deref() == Some(expect.as_str()) => {
                self.0 = None;
                Ret::Swapped(true)
            }
            Op::Cad { .. } => Ret::Swapped(false),
            Op::Delete => {
                self.0 = None;
                Ret::Done
            }
        }
    }
}

/// Every key's history, and the file's lines.
pub(crate) struct Recorder {
    started: Instant,
    histories: Mutex<BTreeMap<String, History<Register>>>,
    lines: Mutex<Vec<String>>,
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            histories: Mutex::default(),
            lines: Mutex::default(),
        })
    }

    fn line(
        &self,
        client: usize,
        thread: u64,
        event: &'static str,
        op: Option<serde_json::Value>,
        result: Option<serde_json::Value>,
    ) {
        let t_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let line = HistoryLine { t_ms, client, thread, event, op, result };
        let json = serde_json::to_string(&line).expect("a history line is JSON");
        self.lines.lock().expect("lines lock").push(json);
    }

    /// Records the call of `op` on `key` (sent as `wire`).
    fn invoke(&self, client: usize, thread: u64, key: &str, op: &Op, wire: serde_json::Value) {
        {
            let mut histories = self.histories.lock().expect("histories lock");
            let history = histories.entry(key.to_owned()).or_default();
            history.invoke(thread, op.clone()).expect("one operation in flight per thread");
        }
        self.line(client, thread, "invoke", Some(wire), None);
    }

    /// Records how the call on `key` by `thread` returned: `ret` (with the store's `json`, and
    /// whether it `applied`), or an error that leaves it unknown.
    fn returned(
        &self,
        client: usize,
        thread: u64,
        key: &str,
        answer: Result<(Ret, serde_json::Value, bool), &StoreError>,
    ) {
        let mut histories = self.histories.lock().expect("histories lock");
        let history = histories.get_mut(key).expect("invoked before");
        match answer {
            Ok((ret, json, applied)) => {
                history.ret(thread, ret).expect("in flight");
                drop(histories);
                self.line(client, thread, if applied { "ok" } else { "fail" }, None, Some(json));
            }
            Err(err) => {
                history.abandon(thread);
                drop(histories);
                let why = serde_json::Value::String(err.to_string());
                self.line(client, thread, "unknown", None, Some(why));
            }
        }
    }

    /// Puts `value` at `key`, recorded as a register's put; the version it was acknowledged
    /// with. For the writers, whose keys are each written once.
    pub(crate) async fn put(
        &self,
        store: &Cluster<RemoteNode>,
        (client, thread): (usize, u64),
        key: &str,
        value: String,
    ) -> Result<u64, StoreError> {
        let wire = WriteOp::Set { key: key.to_owned(), value: Bytes::from(value.clone()) };
        let op = Op::Put(value);
        self.invoke(client, thread, key, &op, serde_json::to_value(&wire).expect("JSON"));
        let answer = store.write(wire).await;
        match &answer {
            Ok(result @ WriteResult::Applied { version }) => {
                let json = serde_json::to_value(result).expect("a result is JSON");
                self.returned(client, thread, key, Ok((Ret::Done, json, true)));
                Ok(*version)
            }
            Ok(other) => {
                let err = StoreError::Backend(format!("a put answered {other:?}").into());
                self.returned(client, thread, key, Err(&err));
                Err(err)
            }
            Err(err) => {
                self.returned(client, thread, key, Err(err));
                Err(err.clone())
            }
        }
    }

    /// Reads `keys` in one linearizable multi-get, recorded as a get of each (every one's call
    /// and return are the multi-get's): what each holds.
    pub(crate) async fn get_all(
        &self,
        store: &Cluster<RemoteNode>,
        client: usize,
        first_thread: u64,
        keys: &[String],
    ) -> Result<Vec<Option<plus_quorum::Versioned>>, StoreError> {
        let threads = (first_thread..).take(keys.len());
        for (key, thread) in keys.iter().zip(threads.clone()) {
            let wire = serde_json::to_value(ReadOp::Get(key.clone())).expect("JSON");
            self.invoke(client, thread, key, &Op::Get, wire);
        }
        let answer = store.read(ReadOp::MultiGet(keys.to_vec())).await;
        let found = match &answer {
            Ok(ReadResult::Values(values)) if values.len() == keys.len() => Ok(values.clone()),
            Ok(other) => Err(StoreError::Backend(format!("a multi-get answered {other:?}").into())),
            Err(err) => Err(err.clone()),
        };
        for ((key, thread), index) in keys.iter().zip(threads).zip(0..) {
            let answer = found.as_ref().map(|values| {
                let one = ReadResult::Value(values[index].clone());
                let json = serde_json::to_value(&one).expect("a result is JSON");
                (Ret::Value(read_value(key, &one)), json, true)
            });
            self.returned(client, thread, key, answer);
        }
        found
    }

    /// Runs `op` on `key` through `store`, recording its call and its return; whether it
    /// returned (anything else retires the thread).
    pub(crate) async fn run(
        &self,
        store: &Cluster<RemoteNode>,
        client: usize,
        thread: u64,
        key: &str,
        op: Op,
    ) -> bool {
        let wire = if key == PAIR { pair_wire(&op) } else { register_wire(key, &op) };
        let op_json = match &wire {
            Ok(write) => serde_json::to_value(write),
            Err(read) => serde_json::to_value(read),
        }
        .expect("an operation is JSON");
        self.invoke(client, thread, key, &op, op_json);
        let answer: Result<(Ret, serde_json::Value, bool), StoreError> = match wire {
            Ok(write) => store.write(write).await.map(|result| {
                let json = serde_json::to_value(&result).expect("a result is JSON");
                let ret = write_ret(&op, &result);
                let applied = !matches!(result, WriteResult::CompareFailed { .. });
                (ret, json, applied)
            }),
            Err(read) => store.read(read).await.map(|result| {
                let json = serde_json::to_value(&result).expect("a result is JSON");
                (Ret::Value(read_value(key, &result)), json, true)
            }),
        };
        match answer {
            Ok(answer) => {
                self.returned(client, thread, key, Ok(answer));
                true
            }
            Err(err) => {
                self.returned(client, thread, key, Err(&err));
                false
            }
        }
    }

    /// The histories in a file [`Recorder::write`] wrote (or the simulation did, for the
    /// operations a register models: set, get, compare-and-set on a value, delete).
    pub(crate) fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let recorder = Self {
            started: Instant::now(),
            histories: Mutex::default(),
            lines: Mutex::new(text.lines().map(str::to_owned).collect()),
        };
        let mut keys: BTreeMap<u64, String> = BTreeMap::new();
        let mut ops: BTreeMap<u64, Op> = BTreeMap::new();
        let mut histories = recorder.histories.lock().expect("histories lock");
        for (number, line) in text.lines().enumerate() {
            let at = || format!("{}:{}", path.display(), number + 1);
            let json: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
            let thread = json["thread"].as_u64().ok_or_else(|| format!("{}: no thread", at()))?;
            match json["event"].as_str() {
                Some("invoke") => {
                    let (key, op) =
                        register_op(&json["op"]).map_err(|e| format!("{}: {e}", at()))?;
                    let history = histories.entry(key.clone()).or_default();
                    history.invoke(thread, op.clone()).map_err(|e| format!("{}: {e}", at()))?;
                    keys.insert(thread, key);
                    ops.insert(thread, op);
                }
                Some(event @ ("ok" | "fail" | "unknown" | "refused")) => {
                    let key = keys
                        .remove(&thread)
                        .ok_or_else(|| format!("{}: nothing in flight", at()))?;
                    let op = ops.remove(&thread).expect("kept with its key");
                    let history = histories.get_mut(&key).expect("invoked");
                    match event {
                        "unknown" => history.abandon(thread),
                        "refused" => {
                            history.cancel(thread).map_err(|e| format!("{}: {e}", at()))?;
                        }
                        _ => {
                            let ret = register_ret(&key, &op, event, &json["result"])
                                .map_err(|e| format!("{}: {e}", at()))?;
                            history.ret(thread, ret).map_err(|e| format!("{}: {e}", at()))?;
                        }
                    }
                }
                other => return Err(format!("{}: unknown event {other:?}", at())),
            }
        }
        drop(histories);
        Ok(recorder)
    }

    /// Writes the history file.
    pub(crate) fn write(&self, path: &std::path::Path) -> Result<(), String> {
        let mut text = self.lines.lock().expect("lines lock").join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// How many recorded operations returned (`ok`, a failed compare among them as `failed`)
    /// and how many are unknown: `(ok, failed, unknown)`.
    pub(crate) fn outcomes(&self) -> (u64, u64, u64) {
        let (mut ok, mut failed, mut unknown) = (0, 0, 0);
        for line in self.lines.lock().expect("lines lock").iter() {
            if line.contains("\"event\":\"ok\"") {
                ok += 1;
            } else if line.contains("\"event\":\"fail\"") {
                failed += 1;
            } else if line.contains("\"event\":\"unknown\"") {
                unknown += 1;
            }
        }
        (ok, failed, unknown)
    }

    /// How many operations were recorded.
    pub(crate) fn operations(&self) -> usize {
        self.histories.lock().expect("histories lock").values().map(History::len).sum()
    }

    /// Checks every key's history; the first key that is not linearizable (or could not be
    /// decided within `budget`), if any. First, what the register model leaves out: every
    /// value the store returned (a read's, a failed compare's) was written by some client, and
    /// at the version its write was acknowledged with.
    pub(crate) fn check(&self, budget: Duration) -> Result<(), String> {
        check_values_and_versions(&self.lines.lock().expect("lines lock"))?;
        let histories = self.histories.lock().expect("histories lock");
        let seen: HashSet<String> = self
            .lines
            .lock()
            .expect("lines lock")
            .iter()
            .filter(|line| line.contains("\"event\":\"ok\""))
            .flat_map(|line| {
                // Values the store returned: every `value` byte array in a read's result.
                let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                values_in(&parsed["result"])
            })
            .collect();
        for (key, history) in histories.iter() {
            let unseen = |op: &Op| match op {
                Op::Put(value) | Op::Cas { new: value, .. } | Op::TxnCas { new: value, .. } => {
                    !seen.contains(value)
                }
                Op::Get | Op::Range | Op::Delete | Op::Cad { .. } => false,
            };
            match history.check_lazily(&Register::default(), budget, unseen) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => return Err(format!("key {key}: not linearizable")),
                Verdict::Undecided { explored } => {
                    return Err(format!("key {key}: undecided after {explored} configurations"));
                }
            }
        }
        Ok(())
    }
}

/// Values are unique per write (`cCLIENT-N`): every value returned must be one a client wrote,
/// and, when its write was acknowledged, at the version the acknowledgement gave.
fn check_values_and_versions(lines: &[String]) -> Result<(), String> {
    let mut in_flight: BTreeMap<u64, Op> = BTreeMap::new();
    let mut written: HashSet<String> = HashSet::new();
    let mut acked: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    let mut returned: Vec<(usize, String, u64)> = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        let json: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("history line {}: {e}", number + 1))?;
        let Some(thread) = json["thread"].as_u64() else { continue };
        match json["event"].as_str() {
            Some("invoke") => {
                if let Ok((_, op)) = register_op(&json["op"]) {
                    if let Op::Put(v) | Op::Cas { new: v, .. } | Op::TxnCas { new: v, .. } = &op {
                        written.insert(v.clone());
                    }
                    in_flight.insert(thread, op);
                }
            }
            Some(event) => {
                let op = in_flight.remove(&thread);
                if !matches!(event, "ok" | "fail") {
                    continue;
                }
                let result = &json["result"];
                if let (
                    Some(Op::Put(v) | Op::Cas { new: v, .. } | Op::TxnCas { new: v, .. }),
                    Some(version),
                ) = (&op, acked_version(result))
                {
                    acked.entry(v.clone()).or_default().insert(version);
                }
                returned
                    .extend(versioned_in(result).into_iter().map(|(v, at)| (number + 1, v, at)));
            }
            None => {}
        }
    }
    for (line, value, version) in returned {
        if !written.contains(&value) {
            return Err(format!(
                "history line {line}: the store returned {value:?}, which no client wrote"
            ));
        }
        if let Some(at) = acked.get(&value)
            && !at.contains(&version)
        {
            return Err(format!(
                "history line {line}: {value:?} at version {version}, but its write was acknowledged at {at:?}"
            ));
        }
    }
    Ok(())
}

/// The version a write's acknowledgement gives what it wrote, if it wrote.
fn acked_version(result: &serde_json::Value) -> Option<u64> {
    match serde_json::from_value::<WriteResult>(result.clone()).ok()? {
        WriteResult::Applied { version } => Some(version),
        WriteResult::Txn { succeeded: true, version, .. } => Some(version),
        _ => None,
    }
}

/// Every `{value, version}` inside a result's JSON: read values, a failed compare's current.
fn versioned_in(json: &serde_json::Value) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![json];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                if let (Some(serde_json::Value::Array(bytes)), Some(version)) =
                    (map.get("value"), map.get("version").and_then(serde_json::Value::as_u64))
                {
                    let bytes: Vec<u8> = bytes
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    found.push((String::from_utf8_lossy(&bytes).into_owned(), version));
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// A register's operation on `key` as the store's: a write, or (`Err`) a read.
fn register_wire(key: &str, op: &Op) -> Result<WriteOp, ReadOp> {
    match op {
        Op::Put(value) => {
            Ok(WriteOp::Set { key: key.to_owned(), value: Bytes::from(value.clone()) })
        }
        Op::Get => Err(ReadOp::Get(key.to_owned())),
        Op::Range => Err(ReadOp::Range(Range::prefix(key))),
        Op::TxnCas { expect, new } => Ok(WriteOp::Txn(Txn {
            when: vec![Compare::new(key, Expect::Value(Bytes::from(expect.clone())))],
            then: vec![TxnOp::Set {
                key: key.to_owned(),
                value: Bytes::from(new.clone()),
                lease: None,
            }],
            otherwise: vec![TxnOp::Get(key.to_owned())],
        })),
        Op::Cad { expect } => Ok(WriteOp::CompareAndDelete {
            key: key.to_owned(),
            expect: Expect::Value(Bytes::from(expect.clone())),
        }),
        Op::Cas { expect, new } => Ok(WriteOp::CompareAndSet {
            key: key.to_owned(),
            expect: Expect::Value(Bytes::from(expect.clone())),
            value: Bytes::from(new.clone()),
        }),
        Op::Delete => Ok(WriteOp::Delete { key: key.to_owned() }),
    }
}

/// The pair's operation as the store's: every write names both keys at once.
fn pair_wire(op: &Op) -> Result<WriteOp, ReadOp> {
    let expect = |value: &str| Expect::Value(Bytes::from(value.to_owned()));
    match op {
        Op::Put(value) => Ok(WriteOp::MultiSet(pair_bytes(value))),
        Op::Get => Err(ReadOp::MultiGet(PAIR_KEYS.map(str::to_owned).to_vec())),
        Op::Range => Err(ReadOp::Range(Range::prefix(PAIR))),
        Op::Cas { expect: old, new } => Ok(WriteOp::MultiCompareAndSet(
            pair_bytes(new).into_iter().map(|(key, value)| (key, expect(old), value)).collect(),
        )),
        Op::TxnCas { expect: old, new } => Ok(WriteOp::Txn(Txn {
            when: PAIR_KEYS.iter().map(|k| Compare::new(*k, expect(old))).collect(),
            then: pair_bytes(new)
                .into_iter()
                .map(|(key, value)| TxnOp::Set { key, value, lease: None })
                .collect(),
            otherwise: PAIR_KEYS.iter().map(|k| TxnOp::Get((*k).to_owned())).collect(),
        })),
        Op::Delete => Ok(WriteOp::MultiDelete(PAIR_KEYS.map(str::to_owned).to_vec())),
        Op::Cad { expect: old } => Ok(WriteOp::MultiCompareAndDelete(
            PAIR_KEYS.iter().map(|k| ((*k).to_owned(), expect(old))).collect(),
        )),
    }
}

/// Every value (as text) inside a result's JSON.
fn values_in(json: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![json];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(bytes)) = map.get("value") {
                    let bytes: Vec<u8> = bytes
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    found.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// One contending client: random operations on the shared keys until `deadline`.
pub(crate) async fn client(
    store: Cluster<RemoteNode>,
    recorder: Arc<Recorder>,
    client: usize,
    seed: u64,
    deadline: Instant,
) {
    let mut rng = plus_core::seeded_rng(seed);
    let mut generation = 0u64;
    // The shared keys, then the pair.
    let mut last_seen: Vec<Option<String>> = vec![None; KEYS + 1];
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let slot = rng.random_range(0..=KEYS);
        let key = if slot == KEYS { PAIR.to_owned() } else { format!("reg/{slot}") };
        let value = format!("c{client}-{n}");
        let op = match (rng.random_range(0..10), &last_seen[slot]) {
            (0..=2, _) => Op::Get,
            (3, _) => Op::Range,
            (6..=7, Some(expect)) => Op::Cas { expect: expect.clone(), new: value },
            (8, Some(expect)) => Op::TxnCas { expect: expect.clone(), new: value },
            (9, Some(expect)) if rng.random_bool(0.5) => Op::Cad { expect: expect.clone() },
            (9, _) => Op::Delete,
            _ => Op::Put(value),
        };
        if let Op::Put(v) | Op::Cas { new: v, .. } | Op::TxnCas { new: v, .. } = &op {
            last_seen[slot] = Some(v.clone());
        }
        let thread = (client as u64) << 32 | generation;
        if !recorder.run(&store, client, thread, &key, op).await {
            generation += 1;
        }
    }
}

/// Reads every shared key once more after the faults, so that a lost write shows up in the
/// histories as a read no linearization explains.
pub(crate) async fn final_reads(store: &Cluster<RemoteNode>, recorder: &Recorder, client: usize) {
    for slot in 0..=KEYS {
        let thread = (client as u64) << 32 | slot as u64;
        let key = if slot == KEYS { PAIR.to_owned() } else { format!("reg/{slot}") };
        recorder.run(store, client, thread, &key, Op::Get).await;
    }
}

/// A recorded operation as a register's: its key and operation.
fn register_op(json: &serde_json::Value) -> Result<(String, Op), String> {
    if let Ok(write) = serde_json::from_value::<WriteOp>(json.clone()) {
        return match write {
            WriteOp::Set { key, value } => Ok((key, Op::Put(text(&value)))),
            WriteOp::CompareAndSet { key, expect: Expect::Value(expect), value } => {
                Ok((key, Op::Cas { expect: text(&expect), new: text(&value) }))
            }
            WriteOp::Delete { key } => Ok((key, Op::Delete)),
            WriteOp::CompareAndDelete { key, expect: Expect::Value(expect) } => {
                Ok((key, Op::Cad { expect: text(&expect) }))
            }
            WriteOp::MultiCompareAndDelete(items) => {
                let expect = same_expected(items.iter().map(|(k, e)| (k, e)))?;
                Ok((PAIR.to_owned(), Op::Cad { expect }))
            }
            WriteOp::MultiSet(items) => {
                let value = same_value(items.iter().map(|(k, v)| (k, v)))?;
                Ok((PAIR.to_owned(), Op::Put(value)))
            }
            WriteOp::MultiCompareAndSet(items) => {
                let new = same_value(items.iter().map(|(k, _, v)| (k, v)))?;
                let expect = same_expected(items.iter().map(|(k, e, _)| (k, e)))?;
                Ok((PAIR.to_owned(), Op::Cas { expect, new }))
            }
            WriteOp::MultiDelete(keys) if keys == PAIR_KEYS => Ok((PAIR.to_owned(), Op::Delete)),
            WriteOp::Txn(txn) => {
                match (txn.when.as_slice(), txn.then.as_slice(), txn.otherwise.as_slice()) {
                    (
                        [
                            Compare { key: ka, expect: Expect::Value(ea) },
                            Compare { key: kb, expect: Expect::Value(eb) },
                        ],
                        [
                            TxnOp::Set { key: sa, value: va, lease: None },
                            TxnOp::Set { key: sb, value: vb, lease: None },
                        ],
                        [TxnOp::Get(ra), TxnOp::Get(rb)],
                    ) if [ka, kb] == PAIR_KEYS
                        && [sa, sb] == PAIR_KEYS
                        && [ra, rb] == PAIR_KEYS
                        && ea == eb
                        && va == vb =>
                    {
                        Ok((PAIR.to_owned(), Op::TxnCas { expect: text(ea), new: text(va) }))
                    }
                    (
                        [Compare { key, expect: Expect::Value(expect) }],
                        [TxnOp::Set { key: set, value, lease: None }],
                        [TxnOp::Get(read)],
                    ) if set == key && read == key => {
                        Ok((key.clone(), Op::TxnCas { expect: text(expect), new: text(value) }))
                    }
                    _ => Err(format!("not a one-key compare-and-set transaction: {txn:?}")),
                }
            }
            other => Err(format!("not a register operation: {other:?}")),
        };
    }
    match serde_json::from_value::<ReadOp>(json.clone()) {
        Ok(ReadOp::Get(key)) => Ok((key, Op::Get)),
        Ok(ReadOp::MultiGet(keys)) if keys == PAIR_KEYS => Ok((PAIR.to_owned(), Op::Get)),
        Ok(ReadOp::Range(Range {
            keys: KeyRange::Prefix(key),
            limit: None,
            count_only: false,
            revision: None,
        })) => Ok((key, Op::Range)),
        Ok(other) => Err(format!("not a register operation: {other:?}")),
        Err(e) => Err(format!("not an operation: {e}")),
    }
}

/// The one value a pair write gives both keys, or why it is not a pair write.
fn same_value<'a>(items: impl Iterator<Item = (&'a String, &'a Bytes)>) -> Result<String, String> {
    let (keys, values): (Vec<&String>, Vec<&Bytes>) = items.unzip();
    if keys != PAIR_KEYS || values[0] != values[1] {
        return Err(format!("not a write of one value to {PAIR_KEYS:?}: {keys:?}"));
    }
    Ok(text(values[0]))
}

/// The one value a pair compare expects of both keys, or why it is not a pair compare.
fn same_expected<'a>(
    items: impl Iterator<Item = (&'a String, &'a Expect)>,
) -> Result<String, String> {
    let values = items
        .map(|(k, e)| match e {
            Expect::Value(v) => Ok((k, v)),
            other => Err(format!("not a value compare: {other:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    same_value(values.into_iter())
}

/// What a recorded return says, for the register.
fn register_ret(key: &str, op: &Op, event: &str, json: &serde_json::Value) -> Result<Ret, String> {
    Ok(match op {
        Op::Get | Op::Range => match serde_json::from_value::<ReadResult>(json.clone()) {
            Ok(result) => Ret::Value(read_value(key, &result)),
            Err(e) => return Err(format!("a read answered {json}: {e}")),
        },
        Op::Cas { .. } | Op::Cad { .. } => Ret::Swapped(event == "ok"),
        Op::TxnCas { .. } => match serde_json::from_value::<WriteResult>(json.clone()) {
            Ok(result) => write_ret(op, &result),
            Err(e) => return Err(format!("a transaction answered {json}: {e}")),
        },
        Op::Put(_) | Op::Delete => Ret::Done,
    })
}

/// What a write's result says, for the register.
fn write_ret(op: &Op, result: &WriteResult) -> Ret {
    match (op, result) {
        (Op::Cas { .. } | Op::Cad { .. }, WriteResult::CompareFailed { .. }) => Ret::Swapped(false),
        (Op::Cas { .. } | Op::Cad { .. }, _) => Ret::Swapped(true),
        (Op::TxnCas { .. }, WriteResult::Txn { succeeded: true, .. }) => Ret::Txn(true, None),
        (Op::TxnCas { .. }, WriteResult::Txn { results, .. }) => match results.as_slice() {
            [TxnOpResult::Get(found)] => Ret::Txn(false, found.as_ref().map(|v| text(&v.value))),
            [TxnOpResult::Get(a), TxnOpResult::Get(b)] => Ret::Txn(
                false,
                joined(a.as_ref().map(|v| text(&v.value)), b.as_ref().map(|v| text(&v.value))),
            ),
            // Not what this transaction answers: a return no linearization explains.
            _ => Ret::Txn(false, Some(format!("unexpected {results:?}"))),
        },
        _ => Ret::Done,
    }
}

/// The value of the object `key` in a read's result (a get's, a multi-get's, or a range's).
/// A range holding a key it does not cover, or whose count or `more` disagree with its keys,
/// is a value no write made (so no linearization explains it).
fn read_value(key: &str, result: &ReadResult) -> Option<String> {
    if let ReadResult::Range(range) = result {
        let covered: &[&str] = if key == PAIR { &PAIR_KEYS } else { &[key] };
        let stray = range.kvs.iter().any(|(k, _)| !covered.contains(&k.as_str()));
        if stray || range.count != range.kvs.len() || range.more {
            return Some(format!("a malformed range of {key}: {range:?}"));
        }
    }
    let value_of = |wanted: &str| match result {
        ReadResult::Range(range) => {
            range.kvs.iter().find(|(k, _)| k == wanted).map(|(_, v)| text(&v.value))
        }
        ReadResult::Values(found) => PAIR_KEYS
            .iter()
            .position(|k| *k == wanted)
            .and_then(|i| found.get(i).cloned().flatten())
            .map(|v| text(&v.value)),
        ReadResult::Value(found) => found.as_ref().map(|v| text(&v.value)),
        _ => None,
    };
    if key == PAIR { joined(value_of(PAIR_KEYS[0]), value_of(PAIR_KEYS[1])) } else { value_of(key) }
}
