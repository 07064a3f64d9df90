//! What the TLS and pre-shared-key tests share.

use std::sync::atomic::{AtomicUsize, Ordering};

use plus_mux::{Bytes, Handler, HandlerError};

/// Echoes, and counts every request it is asked to handle.
#[derive(Default)]
pub(crate) struct Counting(pub(crate) AtomicUsize);

impl Counting {
    /// How many requests it handled.
    pub(crate) fn handled(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[plus_mux::async_trait]
impl Handler for Counting {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(request)
    }
}
