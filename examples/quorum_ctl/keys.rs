//! `quorum_ctl`'s key commands: get (one key or a range), put, del, txn, watch.

use std::path::Path;

use plus_quorum::{
    Change, ClientError, Cluster, KeyRange, NodeApi, Range, RangeResult, RemoteNode, StoreError,
    Txn, Versioned, WriteOp,
};
use serde_json::{Value, json};

use crate::Output;

/// What `get` reads.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct GetArgs {
    /// The key (with --prefix, the prefix; with --from-key, the first key).
    key: String,
    /// Every key starting with KEY.
    #[arg(long, conflicts_with = "from_key")]
    prefix: bool,
    /// Every key from KEY on.
    #[arg(long)]
    from_key: bool,
    /// At most this many keys (the rest counted, `more` said).
    #[arg(long)]
    limit: Option<usize>,
    /// As the keys were at this revision.
    #[arg(long)]
    rev: Option<u64>,
    /// Keys only, no values.
    #[arg(long, conflicts_with = "count_only")]
    keys_only: bool,
    /// Only how many keys there are.
    #[arg(long)]
    count_only: bool,
}

fn versioned_json(key: &str, v: &Versioned) -> Value {
    json!({
        "key": key,
        "value": String::from_utf8_lossy(&v.value),
        "version": v.version,
        "created": v.created,
        "lease": v.lease,
    })
}

/// `get`: one key, or a range; `Ok(false)` (exit 1) when nothing was found.
pub(crate) async fn get(
    cluster: &Cluster<RemoteNode>,
    args: GetArgs,
    out: Output,
) -> Result<bool, String> {
    let ranged = args.prefix || args.from_key || args.limit.is_some() || args.rev.is_some();
    if !ranged && !args.count_only {
        let Some(found) = cluster.get(&args.key).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        match out {
            Output::Json => println!("{}", versioned_json(&args.key, &found)),
            Output::Simple if args.keys_only => println!("{}", args.key),
            Output::Simple => println!("{}", String::from_utf8_lossy(&found.value)),
            Output::Table => super::table::print(
                &["key", "value", "version", "created", "lease"],
                [kv_row(&args.key, &found)],
                out,
            ),
        }
        return Ok(true);
    }
    let keys = if args.prefix {
        KeyRange::Prefix(args.key.clone())
    } else if args.from_key {
        // Past every key: the largest character there is, a key on its own.
        KeyRange::Between { start: args.key.clone(), end: char::MAX.to_string() }
    } else {
        KeyRange::Between { start: args.key.clone(), end: format!("{}\0", args.key) }
    };
    let result = if args.count_only {
        let range = Range { keys, limit: None, count_only: true, revision: args.rev };
        cluster.range(range).await.map_err(|e| e.to_string())?
    } else {
        range_in_pages(cluster, &keys, args.limit, args.rev).await?
    };
    match out {
        Output::Json => {
            let kvs: Vec<Value> = result.kvs.iter().map(|(k, v)| versioned_json(k, v)).collect();
            println!("{}", json!({"kvs": kvs, "count": result.count, "more": result.more}));
        }
        Output::Simple | Output::Table if args.count_only => println!("{}", result.count),
        Output::Table => super::table::print(
            &["key", "value", "version", "created", "lease"],
            result.kvs.iter().map(|(k, v)| kv_row(k, v)),
            out,
        ),
        Output::Simple => {
            for (key, value) in &result.kvs {
                println!("{key}");
                if !args.keys_only {
                    println!("{}", String::from_utf8_lossy(&value.value));
                }
            }
        }
    }
    Ok(args.count_only || result.count > 0)
}

/// Keys asked for in one page of a range read; halved while an answer would pass the cluster's
/// byte bound for one read.
const PAGE_KEYS: usize = 1_000;

/// The keys of `keys` (at most `limit`), read a page at a time: one read may answer with at
/// most 8 MiB and 100,000 keys (the cluster's bounds), and a prefix holds more. The pages are
/// read one after another; `revision` reads them all as of one revision.
async fn range_in_pages(
    cluster: &Cluster<RemoteNode>,
    keys: &KeyRange,
    limit: Option<usize>,
    revision: Option<u64>,
) -> Result<RangeResult, String> {
    let mut all = RangeResult::default();
    let mut page_keys = PAGE_KEYS;
    let mut next = keys.clone();
    let mut counted = false;
    loop {
        let want = limit.map_or(page_keys, |l| l.saturating_sub(all.kvs.len()).min(page_keys));
        if want == 0 {
            break;
        }
        let range = Range { keys: next.clone(), limit: Some(want), count_only: false, revision };
        let page = match cluster.range(range).await {
            Err(StoreError::Client(ClientError::TooLarge { .. })) if want > 1 => {
                page_keys = want / 2;
                continue;
            }
            Err(e) => return Err(e.to_string()),
            Ok(page) => page,
        };
        if !counted {
            all.count = page.count;
            counted = true;
        }
        all.kvs.extend(page.kvs);
        match all.kvs.last() {
            Some((last, _)) if page.more => next = after(keys, last),
            _ => break,
        }
    }
    all.more = all.count > all.kvs.len();
    Ok(all)
}

/// The keys of `keys` after `last`.
fn after(keys: &KeyRange, last: &str) -> KeyRange {
    let start = format!("{last}\0");
    let end = match keys {
        KeyRange::Between { end, .. } => end.clone(),
        KeyRange::Prefix(prefix) => prefix_end(prefix),
    };
    KeyRange::Between { start, end }
}

/// The first key past every key that starts with `prefix` (its last character that can be
/// raised, raised; past every key for the empty prefix, as `--from-key` reads).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let raised = (u32::from(c) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(raised) = raised {
            chars.push(raised);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
}

/// A key's row in a table.
fn kv_row(key: &str, value: &plus_quorum::Versioned) -> Vec<String> {
    vec![
        key.to_owned(),
        String::from_utf8_lossy(&value.value).into_owned(),
        value.version.to_string(),
        value.created.to_string(),
        value.lease.map_or_else(|| "-".to_owned(), |l| l.to_string()),
    ]
}

/// `put`: sets a key (on a lease if given); prints its new version.
pub(crate) async fn put(
    cluster: &Cluster<RemoteNode>,
    key: &str,
    value: String,
    lease: Option<u64>,
    out: Output,
) -> Result<bool, String> {
    let version = match lease {
        Some(lease) => cluster.set_with_lease(key, value, lease).await,
        None => cluster.set(key, value).await,
    }
    .map_err(|e| e.to_string())?;
    match out {
        Output::Json => println!("{}", json!({"key": key, "version": version})),
        Output::Simple | Output::Table => println!("{version}"),
    }
    Ok(true)
}

/// Keys deleted in one write at most (the cluster's default `max_txn_ops`).
const DELETE_BATCH: usize = 128;

/// `del`: deletes a key, or every key with a prefix (in writes of at most 128 keys); prints
/// how many were deleted.
pub(crate) async fn del(
    cluster: &Cluster<RemoteNode>,
    key: &str,
    prefix: bool,
    out: Output,
) -> Result<bool, String> {
    let mut deleted = 0usize;
    if prefix {
        loop {
            let page = Range { limit: Some(DELETE_BATCH), ..Range::prefix(key) };
            let found = cluster.range(page).await.map_err(|e| e.to_string())?;
            if found.kvs.is_empty() {
                break;
            }
            let keys: Vec<String> = found.kvs.into_iter().map(|(k, _)| k).collect();
            deleted += keys.len();
            cluster.write(WriteOp::MultiDelete(keys)).await.map_err(|e| e.to_string())?;
        }
    } else {
        let existed = cluster.get(key).await.map_err(|e| e.to_string())?.is_some();
        cluster.delete(key).await.map_err(|e| e.to_string())?;
        deleted = usize::from(existed);
    }
    match out {
        Output::Json => println!("{}", json!({"deleted": deleted})),
        Output::Simple | Output::Table => println!("{deleted}"),
    }
    Ok(true)
}

/// Exit status of a transaction whose compares failed (its `otherwise` branch ran).
pub(crate) const COMPARE_FAILED: u8 = 3;

/// `txn [--file F]`: a transaction in etcdctl's text (compares, a blank line, then-operations, a
/// blank line, else-operations: plus-quorum's `Txn::from_str`) or as JSON (`{"when": [...],
/// "then": [...], "otherwise": [...]}`), from the file or standard input; exit
/// [`COMPARE_FAILED`] when the compares failed.
pub(crate) async fn txn(
    cluster: &Cluster<RemoteNode>,
    file: Option<&Path>,
    out: Output,
) -> Result<bool, String> {
    let (text, from) = match file {
        Some(file) => (
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
            file.display().to_string(),
        ),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            (text, "standard input".to_owned())
        }
    };
    let txn: Txn = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| format!("{from} is not a transaction: {e}"))?
    } else {
        text.parse().map_err(|e| format!("{from}, {e}"))?
    };
    let outcome = cluster.txn(txn).await.map_err(|e| e.to_string())?;
    match out {
        Output::Json => println!(
            "{}",
            json!({
                "succeeded": outcome.succeeded,
                "version": outcome.version,
                "results": outcome.results.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>(),
            })
        ),
        Output::Simple | Output::Table => {
            println!("{}", if outcome.succeeded { "SUCCESS" } else { "FAILURE" });
            for result in &outcome.results {
                println!("{result:?}");
            }
        }
    }
    if !outcome.succeeded {
        std::process::exit(i32::from(COMPARE_FAILED));
    }
    Ok(true)
}

/// `watch`: prints every change of a key or a prefix from a revision on, as it arrives, until
/// interrupted.
pub(crate) async fn watch(
    cluster: &Cluster<RemoteNode>,
    key: &str,
    prefix: bool,
    rev: Option<u64>,
    out: Output,
) -> Result<bool, String> {
    let keys = if prefix {
        KeyRange::Prefix(key.to_owned())
    } else {
        KeyRange::Between { start: key.to_owned(), end: format!("{key}\0") }
    };
    let from = match rev {
        Some(rev) => rev,
        // From the next change on: past what any node has applied.
        None => now_applied(cluster).await + 1,
    };
    let mut watcher = cluster.watch(keys, from);
    let stop = crate::interrupted();
    tokio::pin!(stop);
    loop {
        let batch = tokio::select! {
            () = &mut stop => return Ok(true),
            batch = watcher.next() => batch.map_err(|e| e.to_string())?,
        };
        for event in batch.events {
            let (kind, value) = match &event.change {
                Change::Put(v) => ("PUT", Some(String::from_utf8_lossy(&v.value).into_owned())),
                Change::Delete => ("DELETE", None),
            };
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"revision": event.revision, "type": kind, "key": event.key, "value": value})
                ),
                Output::Simple | Output::Table => {
                    println!("{kind} {} (revision {})", event.key, event.revision);
                    if let Some(value) = value {
                        println!("{value}");
                    }
                }
            }
        }
    }
}

/// The highest index any node that answers has applied.
async fn now_applied(cluster: &Cluster<RemoteNode>) -> u64 {
    let mut applied = 0;
    for node in cluster.handles() {
        if let Ok(status) = node.status().await {
            applied = applied.max(status.applied);
        }
    }
    applied
}
