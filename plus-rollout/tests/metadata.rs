//! Metadata lookups behind a cache: concurrent lookups of one key make one call, and an outage
//! of the source is survived with the last value, said to be stale.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plus_rollout::degrade::metadata::{Fetched, MetadataCache};

#[tokio::test(start_paused = true)]
async fn concurrent_lookups_merge_and_an_outage_is_served_from_the_cache() {
    let cache: Arc<MetadataCache<String, Vec<String>>> = MetadataCache::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let lookup = |cache: Arc<MetadataCache<String, Vec<String>>>,
                  calls: Arc<AtomicUsize>,
                  up: bool| async move {
        cache
            .get("group/api".to_owned(), || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                if up {
                    Ok(vec!["api-01".to_owned(), "api-02".to_owned()])
                } else {
                    Err("CMDB down".to_owned())
                }
            })
            .await
    };
    // Ten lookups at once: one call.
    let answers = futures::future::join_all(
        (0..10).map(|_| lookup(Arc::clone(&cache), Arc::clone(&calls), true)),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for answer in &answers {
        assert_eq!(answer.as_ref().unwrap().value().len(), 2);
    }
    // The source goes down: the last value, stale, with why.
    let stale = lookup(Arc::clone(&cache), Arc::clone(&calls), false).await.unwrap();
    assert!(matches!(&stale, Fetched::Stale(hosts, why) if hosts.len() == 2 && why == "CMDB down"));
    // A key never fetched has nothing to fall back on.
    let missing = cache.get("group/web".to_owned(), || async { Err("CMDB down".to_owned()) }).await;
    assert_eq!(missing, Err("CMDB down".to_owned()));

    // A lookup whose caller gives up mid-way leaves no flight behind: the next one calls.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(10),
        lookup(Arc::clone(&cache), Arc::clone(&calls), true),
    )
    .await;
    assert!(abandoned.is_err());
    let before = calls.load(Ordering::SeqCst);
    let again = lookup(Arc::clone(&cache), Arc::clone(&calls), true).await.unwrap();
    assert!(matches!(again, Fetched::Fresh(_)));
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}
