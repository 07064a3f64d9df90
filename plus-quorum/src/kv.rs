//! The replicated state machine: a sorted map of versioned values.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::glob::glob_match;
use crate::types::{Expect, ReadOp, ReadResult, Versioned, WriteOp, WriteResult};

/// The key-value map every replica applies the log to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    map: BTreeMap<String, Versioned>,
}

fn matches(current: Option<&Versioned>, expect: &Expect) -> bool {
    match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Version(v), Some(c)) => c.version == *v,
        (Expect::Value(v), Some(c)) => c.value == *v,
        _ => false,
    }
}

impl KvState {
    /// Applies a committed write at log index `index` (the version of what it writes).
    pub(crate) fn apply(&mut self, op: &WriteOp, index: u64) -> WriteResult {
        let applied = WriteResult::Applied { version: index };
        let check = |map: &BTreeMap<String, Versioned>,
                     checks: &mut dyn Iterator<Item = (&String, &Expect)>| {
            for (key, expect) in checks {
                if !matches(map.get(key), expect) {
                    return Some(WriteResult::CompareFailed {
                        key: key.clone(),
                        current: map.get(key).cloned(),
                    });
                }
            }
            None
        };
        let set = |map: &mut BTreeMap<String, Versioned>, key: &String, value: &Bytes| {
            map.insert(key.clone(), Versioned { value: value.clone(), version: index });
        };
        match op {
            WriteOp::Set { key, value } => set(&mut self.map, key, value),
            WriteOp::Delete { key } => {
                self.map.remove(key);
            }
            WriteOp::CompareAndSet { key, expect, value } => {
                if let Some(failed) = check(&self.map, &mut std::iter::once((key, expect))) {
                    return failed;
                }
                set(&mut self.map, key, value);
            }
            WriteOp::CompareAndDelete { key, expect } => {
                if let Some(failed) = check(&self.map, &mut std::iter::once((key, expect))) {
                    return failed;
                }
                self.map.remove(key);
            }
            WriteOp::MultiSet(pairs) => {
                for (key, value) in pairs {
                    set(&mut self.map, key, value);
                }
            }
            WriteOp::MultiDelete(keys) => {
                for key in keys {
                    self.map.remove(key);
                }
            }
            WriteOp::MultiCompareAndSet(items) => {
                if let Some(failed) = check(&self.map, &mut items.iter().map(|(k, e, _)| (k, e))) {
                    return failed;
                }
                for (key, _, value) in items {
                    set(&mut self.map, key, value);
                }
            }
            WriteOp::MultiCompareAndDelete(items) => {
                if let Some(failed) = check(&self.map, &mut items.iter().map(|(k, e)| (k, e))) {
                    return failed;
                }
                for (key, _) in items {
                    self.map.remove(key);
                }
            }
        }
        applied
    }

    /// Answers a read from this state.
    pub(crate) fn read(&self, op: &ReadOp) -> ReadResult {
        match op {
            ReadOp::Get(key) => ReadResult::Value(self.map.get(key).cloned()),
            ReadOp::MultiGet(keys) => {
                ReadResult::Values(keys.iter().map(|k| self.map.get(k).cloned()).collect())
            }
            ReadOp::Keys(pattern) => ReadResult::Keys(
                self.map.keys().filter(|k| glob_match(pattern, k)).cloned().collect(),
            ),
            ReadOp::Len => ReadResult::Len(self.map.len()),
        }
    }

    /// One key, as this replica has it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Versioned> {
        self.map.get(key)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key with its value, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Versioned)> {
        self.map.iter()
    }

    /// SHA-256 over every key, version and value in key order (each length-prefixed): equal
    /// maps have equal digests on every machine.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (key, v) in &self.map {
            h.update((key.len() as u64).to_be_bytes());
            h.update(key.as_bytes());
            h.update(v.version.to_be_bytes());
            h.update((v.value.len() as u64).to_be_bytes());
            h.update(&v.value);
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn multi_cas_is_all_or_nothing_and_names_the_key() {
        let mut kv = KvState::default();
        kv.apply(&WriteOp::MultiSet(vec![("a".into(), b("1")), ("b".into(), b("2"))]), 1);
        let result = kv.apply(
            &WriteOp::MultiCompareAndSet(vec![
                ("a".into(), Expect::Version(1), b("10")),
                ("b".into(), Expect::Value(b("nope")), b("20")),
            ]),
            2,
        );
        assert_eq!(
            result,
            WriteResult::CompareFailed {
                key: "b".into(),
                current: Some(Versioned { value: b("2"), version: 1 })
            }
        );
        assert_eq!(kv.get("a").unwrap().value, b("1"), "nothing applied");
        let ok = kv.apply(
            &WriteOp::MultiCompareAndDelete(vec![
                ("a".into(), Expect::Version(1)),
                ("c".into(), Expect::Absent),
            ]),
            3,
        );
        assert_eq!(ok, WriteResult::Applied { version: 3 });
        assert!(kv.get("a").is_none());
        kv.apply(&WriteOp::Set { key: "a".into(), value: b("again") }, 4);
        assert_eq!(kv.get("a").unwrap().version, 4, "versions keep growing across a delete");
        assert_eq!(
            kv.read(&ReadOp::Keys("?".into())),
            ReadResult::Keys(vec!["a".into(), "b".into()])
        );
    }
}
