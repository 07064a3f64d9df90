//! A watch on the writers' keys through every fault, and its check: each acknowledged put
//! arrives exactly once, at the revision its write returned, in revision order, and nothing
//! arrives that no writer sent. The watcher resumes on another node when its node dies or is
//! cut off ([`plus_quorum::Watcher`]); a gap or a duplicate across such a move is what this
//! finds.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use plus_quorum::{Change, ClientError, Cluster, KeyRange, RemoteNode, StoreError};
use tokio::sync::watch;

/// What the watcher received.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Every event: revision, key, and the value put (`None`: a delete).
    pub events: Vec<(u64, String, Option<String>)>,
    /// Where the watch is known to be current.
    pub progress: u64,
    /// Errors that ended a poll, with when (the watcher polls again after each).
    pub errors: Vec<String>,
    /// The watch fell behind the history the nodes keep: it cannot go on without a gap.
    pub compacted: Option<String>,
}

/// Watches `prefix` from the first revision until `stop` holds a revision the watch has
/// reached (or `stop` is dropped).
pub(crate) async fn watch(
    store: Cluster<RemoteNode>,
    prefix: &str,
    mut stop: watch::Receiver<Option<u64>>,
) -> Received {
    let mut watcher = store.watch(KeyRange::Prefix(prefix.to_owned()), 1);
    let mut received = Received::default();
    loop {
        if let Some(until) = *stop.borrow_and_update()
            && received.progress >= until
        {
            return received;
        }
        let batch = tokio::select! {
            batch = watcher.next() => batch,
            changed = stop.changed() => {
                if changed.is_err() {
                    return received;
                }
                continue;
            }
        };
        match batch {
            Ok(batch) => {
                for event in batch.events {
                    let value = match event.change {
                        Change::Put(v) => Some(String::from_utf8_lossy(&v.value).into_owned()),
                        Change::Delete => None,
                    };
                    received.events.push((event.revision, event.key, value));
                }
                received.progress = received.progress.max(batch.progress);
            }
            Err(StoreError::Client(ClientError::Compacted { .. })) => {
                received.compacted = Some(format!(
                    "the watch fell behind the nodes' history at revision {}",
                    watcher.next_revision()
                ));
                return received;
            }
            Err(err) => {
                received.errors.push(err.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until `received` reports progress to `until`, at most `patience`.
pub(crate) async fn settle(stop: &watch::Sender<Option<u64>>, until: u64, patience: Duration) {
    let _ = stop.send(Some(until));
    let deadline = Instant::now() + patience;
    while !stop.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What writer `w` puts at its `n`th key, `chaos/W/N`: a value no other write makes, so the
/// history can tell which write a read saw.
pub(crate) fn writer_value(w: u64, n: u64) -> String {
    format!("w{w}-{n}")
}

/// What a writer put at `key` (`chaos/W/N`), if it is a writer's key.
fn sent_at(key: &str) -> Option<String> {
    let mut parts = key.strip_prefix("chaos/")?.split('/');
    let (w, n) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(writer_value(w, n))
}

/// Checks what the watcher received against the acknowledged puts `(key, value, revision)`:
/// the first problem found, if any.
pub(crate) fn check(received: &Received, acked: &[(String, String, u64)]) -> Result<(), String> {
    if let Some(why) = &received.compacted {
        return Err(why.clone());
    }
    let mut last = 0;
    let mut seen: HashSet<(u64, &str)> = HashSet::new();
    let mut at: HashMap<(u64, &str), Option<&str>> = HashMap::new();
    for (revision, key, value) in &received.events {
        if *revision < last {
            return Err(format!("revision {revision} ({key}) arrived after revision {last}"));
        }
        last = *revision;
        if !seen.insert((*revision, key)) {
            return Err(format!("{key} at revision {revision} arrived twice"));
        }
        // A writer's key `chaos/W/N` only ever holds `wW-N`, or its large form: anything else
        // nobody wrote.
        let sent = sent_at(key).unwrap_or_default();
        if let Some(v) =
            value.as_deref().filter(|v| sent.is_empty() || !crate::loads::sent_for(&sent, v))
        {
            let start: String = v.chars().take(40).collect();
            return Err(format!(
                "{key} at revision {revision} holds {start:?}... ({} bytes), which no writer sent",
                v.len()
            ));
        }
        at.insert((*revision, key), value.as_deref());
    }
    for (key, value, revision) in acked {
        if *revision > received.progress {
            return Err(format!(
                "the watch reached revision {} only, short of the acknowledged put of {key} at {revision}",
                received.progress
            ));
        }
        match at.get(&(*revision, key.as_str())) {
            Some(Some(v)) if v == value => {}
            Some(other) => {
                return Err(format!(
                    "{key} at revision {revision} arrived as {other:?}, not {value}"
                ));
            }
            None => {
                return Err(format!(
                    "the acknowledged put of {key} at revision {revision} never arrived"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: u64, key: &str) -> (u64, String, Option<String>) {
        (revision, key.to_owned(), sent_at(key))
    }

    #[test]
    fn gaps_duplicates_disorder_and_phantoms_are_refused() {
        let acked = vec![("chaos/0/1".to_owned(), "w0-1".to_owned(), 5)];
        let mut received = Received {
            events: vec![put(5, "chaos/0/1"), put(7, "chaos/1/1")],
            progress: 9,
            ..Received::default()
        };
        assert_eq!(check(&received, &acked), Ok(()));
        received.events.push(put(7, "chaos/1/1"));
        assert!(check(&received, &acked).unwrap_err().contains("twice"));
        received.events = vec![put(7, "chaos/1/1"), put(5, "chaos/0/1")];
        assert!(check(&received, &acked).unwrap_err().contains("after revision 7"));
        received.events = vec![put(7, "chaos/1/1")];
        assert!(check(&received, &acked).unwrap_err().contains("never arrived"));
        received.events = vec![put(5, "chaos/0/1"), (6, "chaos/2/3".to_owned(), Some("v4".into()))];
        assert!(check(&received, &acked).unwrap_err().contains("no writer sent"));
        received.events = vec![put(5, "chaos/0/1")];
        received.progress = 4;
        assert!(check(&received, &acked).unwrap_err().contains("short of"));
    }
}
