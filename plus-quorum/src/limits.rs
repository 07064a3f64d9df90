//! How big one request may be, measured the same way everywhere: bytes of keys and values (a
//! small fixed overhead per operation for the rest), and operations per transaction. The
//! node's [`Config`](crate::Config) sets the bounds; a request past one is refused before it
//! reaches the log, so one client cannot make an entry that no follower can take.

use crate::ops::WriteOp;
use crate::txn::{Compare, KeyRange, TxnOp};
use crate::types::Expect;

/// What an operation costs beyond its keys and values: the encoding's tags and numbers.
const PER_OP: usize = 16;

fn expect_bytes(expect: &Expect) -> usize {
    match expect {
        Expect::Value(value) => value.len(),
        _ => 0,
    }
}

fn compare_bytes(compare: &Compare) -> usize {
    compare.key.len() + expect_bytes(&compare.expect) + PER_OP
}

fn txn_op_bytes(op: &TxnOp) -> usize {
    PER_OP
        + match op {
            TxnOp::Set { key, value, .. } => key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get(key) => key.len(),
            TxnOp::Range(range) => match &range.keys {
                KeyRange::Prefix(prefix) => prefix.len(),
                KeyRange::Between { start, end } => start.len() + end.len(),
            },
        }
}

impl WriteOp {
    /// The request's size as the limits count it: its keys and values, plus a small fixed
    /// cost per operation.
    #[must_use]
    pub fn request_bytes(&self) -> usize {
        match self {
            Self::Set { key, value } | Self::SetWithLease { key, value, .. } => {
                key.len() + value.len() + PER_OP
            }
            Self::Delete { key } => key.len() + PER_OP,
            Self::CompareAndSet { key, expect, value } => {
                key.len() + expect_bytes(expect) + value.len() + PER_OP
            }
            Self::CompareAndDelete { key, expect } => key.len() + expect_bytes(expect) + PER_OP,
            Self::MultiSet(kvs) => kvs.iter().map(|(k, v)| k.len() + v.len() + PER_OP).sum(),
            Self::MultiDelete(keys) => keys.iter().map(|k| k.len() + PER_OP).sum(),
            Self::MultiCompareAndSet(ops) => {
                ops.iter().map(|(k, e, v)| k.len() + expect_bytes(e) + v.len() + PER_OP).sum()
            }
            Self::MultiCompareAndDelete(ops) => {
                ops.iter().map(|(k, e)| k.len() + expect_bytes(e) + PER_OP).sum()
            }
            Self::GrantLease { .. } | Self::RevokeLease { .. } | Self::Compact { .. } => PER_OP,
            Self::Txn(txn) => {
                txn.when.iter().map(compare_bytes).sum::<usize>()
                    + txn.then.iter().chain(&txn.otherwise).map(txn_op_bytes).sum::<usize>()
            }
        }
    }

    /// Whether the request may add keys or bytes (everything but deletes, revokes and a
    /// transaction of deletes and reads only): what a store over its quota refuses.
    #[must_use]
    pub fn adds_data(&self) -> bool {
        match self {
            Self::Delete { .. }
            | Self::CompareAndDelete { .. }
            | Self::MultiDelete(_)
            | Self::MultiCompareAndDelete(_)
            | Self::RevokeLease { .. }
            | Self::Compact { .. } => false,
            Self::Txn(txn) => {
                txn.then.iter().chain(&txn.otherwise).any(|op| matches!(op, TxnOp::Set { .. }))
            }
            _ => true,
        }
    }

    /// How many operations the request holds: keys of a multi-key write, or a transaction's
    /// compares and operations of both branches.
    #[must_use]
    pub fn op_count(&self) -> usize {
        match self {
            Self::MultiSet(v) => v.len(),
            Self::MultiDelete(v) => v.len(),
            Self::MultiCompareAndSet(v) => v.len(),
            Self::MultiCompareAndDelete(v) => v.len(),
            Self::Txn(txn) => txn.when.len() + txn.then.len() + txn.otherwise.len(),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::ops::WriteOp;
    use crate::txn::{Compare, Txn, TxnOp};
    use crate::types::Expect;

    #[test]
    fn sizes_count_keys_values_and_operations() {
        let set = WriteOp::Set { key: "k".into(), value: Bytes::from(vec![0; 100]) };
        assert_eq!((set.request_bytes(), set.op_count()), (1 + 100 + 16, 1));
        let multi = WriteOp::MultiSet(vec![("a".into(), Bytes::from("xy")); 3]);
        assert_eq!((multi.request_bytes(), multi.op_count()), (3 * (1 + 2 + 16), 3));
        let txn = WriteOp::Txn(Txn {
            when: vec![Compare::new("c", Expect::Value(Bytes::from("old")))],
            then: vec![TxnOp::Set { key: "t".into(), value: Bytes::from("new"), lease: None }],
            otherwise: vec![TxnOp::Get("g".into())],
        });
        assert_eq!(
            (txn.request_bytes(), txn.op_count()),
            ((1 + 3 + 16) + (1 + 3 + 16) + (1 + 16), 3)
        );
    }
}
