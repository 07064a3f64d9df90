//! The load shape the store benches share.

/// Runs `total` calls of `call` spread over `clients` tasks.
pub(crate) async fn fan_out<F, Fut>(clients: usize, total: usize, call: F)
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mine = total / clients + usize::from(c < total % clients);
        let calls: Vec<Fut> = (0..mine).map(|n| call(c, n)).collect();
        tasks.push(tokio::spawn(async move {
            for f in calls {
                f.await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
