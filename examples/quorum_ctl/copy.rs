//! `copy PREFIX --to-etcd ENDPOINTS`: every key under a prefix copied to etcd, to move a
//! platform from the embedded store to an etcd it already runs (stop the controllers first:
//! the keys are read page by page, not at one revision).

use plus_quorum::{Bytes, KeyRange, KvClient, Range, Txn, TxnOp};

/// Keys read at a time, and written in one transaction (etcd takes 128 operations in one).
const PAGE: usize = 100;

/// Copies every key under `prefix` from `from` to `to`, leaving out the keys on a lease (locks,
/// elections, sessions: they belong to processes of the old store). How many were copied and
/// how many left out.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) async fn copy_prefix(
    from: &dyn KvClient,
    to: &dyn KvClient,
    prefix: &str,
) -> Result<(usize, usize), String> {
    let (mut copied, mut leased) = (0, 0);
    let mut after: Option<String> = None;
    loop {
        let keys = match (&after, prefix_end(prefix)) {
            (None, _) => KeyRange::Prefix(prefix.to_owned()),
            (Some(last), Some(end)) => KeyRange::Between { start: format!("{last}\0"), end },
            (Some(last), None) => {
                KeyRange::Between { start: format!("{last}\0"), end: char::MAX.to_string() }
            }
        };
        let page = from
            .range(Range { keys, ..Range::prefix("") }.limit(PAGE))
            .await
            .map_err(|e| format!("cannot read the keys under {prefix:?}: {e}"))?;
        let Some((last, _)) = page.kvs.last() else { break };
        after = Some(last.clone());
        let mut sets = Vec::new();
        for (key, versioned) in page.kvs {
            if versioned.lease.is_some() {
                leased += 1;
                continue;
            }
            sets.push(TxnOp::Set { key, value: Bytes::clone(&versioned.value), lease: None });
        }
        copied += sets.len();
        if !sets.is_empty() {
            let txn = Txn { when: Vec::new(), then: sets, otherwise: Vec::new() };
            to.txn(txn).await.map_err(|e| format!("cannot write the copies: {e}"))?;
        }
        if !page.more {
            break;
        }
    }
    Ok((copied, leased))
}

/// The first key past every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `copy PREFIX --to-etcd ENDPOINTS`.
#[cfg(feature = "etcd")]
pub(crate) async fn to_etcd(
    from: &dyn KvClient,
    prefix: &str,
    endpoints: &[String],
    out: crate::Output,
) -> Result<bool, String> {
    use crate::Output;
    use serde_json::json;
    let etcd = plus_quorum::EtcdClient::connect(endpoints, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| format!("cannot reach etcd at {}: {e}", endpoints.join(",")))?;
    let (copied, leased) = copy_prefix(from, &etcd, prefix).await?;
    match out {
        Output::Json => println!("{}", json!({"copied": copied, "left_out_on_leases": leased})),
        Output::Simple | Output::Table => {
            println!("copied {copied} keys under {prefix:?} to etcd; {leased} on leases left out");
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn the_end_of_a_prefix_is_past_all_its_keys() {
        assert_eq!(prefix_end("platform/").as_deref(), Some("platform0"));
        assert_eq!(prefix_end("a"), Some("b".to_owned()));
        assert_eq!(prefix_end(""), None);
    }
}
