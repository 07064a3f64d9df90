//! The symmetric peer: either side sends requests and handles the other's, over any byte stream.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll, Waker};

use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc, oneshot, watch};
use tokio::time::{Instant, timeout_at};
use tokio_util::codec::FramedRead;

use crate::config::{Config, ConfigError, HandlerErrorWire};
use crate::counters::Counters;
use crate::error::{CloseReason, HandlerError, RequestError, StartError};
use crate::frame::{Frame, FrameCodec, FrameError, Kind, TRAILER, breaks_go_framing, encode_into};
use crate::pending::{Pending, Waiter};

/// The body prefix of a handler error under [`HandlerErrorWire::Prefixed`]: a NUL byte and
/// `ERR`, then the message in UTF-8.
pub const ERROR_PREFIX: &[u8; 4] = b"\0ERR";

/// Answers the peer's requests.
///
/// # Contract
/// `handle` runs concurrently for many requests (up to
/// [`Config::max_concurrent_handlers`]); while that many run, the connection stops reading.
/// An `Err` is sent back as described by [`HandlerErrorWire`]: the requester is always answered.
/// A panic in `handle` is answered like an error.
///
/// A handler whose future completes on its first poll is run inside the connection's reader
/// (no task is spawned for it); one that awaits gets a task of its own. So do slow synchronous
/// work after an await point (or in `spawn_blocking`), not before the first one, or it holds up
/// reading.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError>;

    /// Receives the response to one of our async requests
    /// ([`Connection::send_async`]). Default: drop it.
    async fn on_orphan_response(&self, response: Bytes) {
        let _ = response;
    }
}

/// A handler that answers every request with an error: for peers that only send requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandler;

#[async_trait]
impl Handler for NoHandler {
    async fn handle(&self, _: Bytes) -> Result<Bytes, HandlerError> {
        Err(HandlerError::new("this peer does not serve requests"))
    }
}

#[derive(Default)]
struct Stats {
    requests_sent: AtomicU64,
    requests_served: AtomicU64,
    timeouts: AtomicU64,
    late_responses: AtomicU64,
    orphans: AtomicU64,
    protocol_errors: AtomicU64,
    handler_errors: AtomicU64,
    oversized_frames: AtomicU64,
    over_budget_frames: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

pub(crate) struct Inner {
    config: Config,
    handler: Arc<dyn Handler>,
    writer: mpsc::Sender<Frame>,
    pending: Mutex<Pending>,
    slots: Arc<Semaphore>,
    handlers: Arc<Semaphore>,
    stats: Stats,
    pub(crate) closed: watch::Sender<Option<CloseReason>>,
    /// Set with `closed`: the reader and the writer look at it once per frame, where polling
    /// the watch each time cost a notification future.
    is_closed: AtomicBool,
    draining: AtomicBool,
    handlers_idle: Notify,
    /// Tells the expiry task that a request came due sooner than it planned to wake.
    expiry: Notify,
    /// Bytes of our answers made and not yet taken by the writer.
    unread: AtomicUsize,
}

impl Inner {
    /// Bytes moved either way: the idle watch looks whether this moved, instead of every frame
    /// reading the clock.
    fn activity(&self) -> u64 {
        self.stats.bytes_in.load(Ordering::Relaxed) + self.stats.bytes_out.load(Ordering::Relaxed)
    }

    /// Wakes `shutdown` when it waits for requests and handlers to finish; nobody else waits,
    /// so the hot path skips the notification otherwise.
    fn note_idle(&self) {
        if self.draining.load(Ordering::Relaxed) {
            self.handlers_idle.notify_waiters();
        }
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.closed.borrow().clone()
    }

    /// Closes once: fails every pending request with `reason` at once and stops the tasks.
    /// Counts an answer of `bytes` as waiting for the peer to read it; false (and the
    /// connection closed) when that puts more than `max_unread_bytes` waiting.
    fn hold_unread(&self, bytes: usize) -> bool {
        let waiting = self.unread.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if waiting > self.config.max_unread_bytes {
            self.close(&CloseReason::SlowReader(waiting));
            return false;
        }
        true
    }

    fn close(&self, reason: &CloseReason) {
        let mut first = false;
        self.closed.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(reason.clone());
                first = true;
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        self.is_closed.store(true, Ordering::Release);
        self.log_close(reason);
        self.slots.close();
        let entries = self.pending.lock().expect("pending lock").drain();
        for entry in entries {
            if let Waiter::Sync(tx) = entry.waiter {
                let _ = tx.send(Err(RequestError::Lost(reason.clone())));
            }
        }
    }

    /// One line per closed connection, louder when the close was not a normal one.
    fn log_close(&self, reason: &CloseReason) {
        let c = self.counters();
        macro_rules! closed {
            ($level:ident) => {
                tracing::$level!(
                    %reason,
                    requests_sent = c.requests_sent,
                    requests_served = c.requests_served,
                    bytes_in = c.bytes_in,
                    bytes_out = c.bytes_out,
                    pending = c.pending,
                    "plus-mux connection closed"
                )
            };
        }
        match reason {
            CloseReason::Local | CloseReason::PeerClosed => closed!(debug),
            CloseReason::IdleTimeout
            | CloseReason::HeartbeatTimeout
            | CloseReason::FrameTimeout => {
                closed!(info);
            }
            CloseReason::Protocol(_)
            | CloseReason::Io(_)
            | CloseReason::OverBudget(_)
            | CloseReason::SlowReader(_) => {
                closed!(warn);
            }
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        let s = &self.stats;
        Counters {
            requests_sent: s.requests_sent.load(Ordering::Relaxed),
            requests_served: s.requests_served.load(Ordering::Relaxed),
            in_flight: self.handlers_running() as u64,
            pending: self.pending_len() as u64,
            timeouts: s.timeouts.load(Ordering::Relaxed),
            late_responses: s.late_responses.load(Ordering::Relaxed),
            orphans: s.orphans.load(Ordering::Relaxed),
            protocol_errors: s.protocol_errors.load(Ordering::Relaxed),
            handler_errors: s.handler_errors.load(Ordering::Relaxed),
            oversized_frames: s.oversized_frames.load(Ordering::Relaxed),
            over_budget_frames: s.over_budget_frames.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
        }
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().expect("pending lock").len()
    }

    /// Waits (until `deadline` at most) for the writer to take every queued frame, so the last
    /// responses go out before the stream closes.
    async fn flushed(&self, deadline: Instant) {
        let _ = timeout_at(deadline, async {
            while self.writer.capacity() < self.config.write_queue {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    fn handlers_running(&self) -> usize {
        self.config.max_concurrent_handlers - self.handlers.available_permits()
    }
}

/// One end of a multiplexed connection. Cheap to clone; every clone is the same connection.
///
/// Both ends are equal: each sends requests ([`Connection::request`],
/// [`Connection::send_async`]) and answers the other's through its [`Handler`]. The connection
/// closes on a protocol error, an I/O error, the peer closing, the idle timeout, a missed
/// heartbeat, [`Connection::close`] or [`Connection::shutdown`]; closing fails every pending
/// request at once with [`RequestError::Closed`].
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.inner.close_reason())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts a connection over `stream` on the current tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`Config::validate`].
    pub fn new<S>(stream: S, config: Config, handler: Arc<dyn Handler>) -> Result<Self, ConfigError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        config.validate()?;
        let (writer, queue) = mpsc::channel(config.write_queue);
        let (closed, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            handlers: Arc::new(Semaphore::new(config.max_concurrent_handlers)),
            pending: Mutex::new(Pending::new(config.go_compatible)),
            config,
            handler,
            writer,
            stats: Stats::default(),
            closed,
            is_closed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            handlers_idle: Notify::new(),
            unread: AtomicUsize::new(0),
            expiry: Notify::new(),
        });
        spawn_io(&inner, stream, queue);
        tokio::spawn(expire_loop(Arc::clone(&inner)));
        if let Some(idle) = inner.config.idle_timeout {
            tokio::spawn(idle_watch(Arc::downgrade(&inner), idle));
        }
        if let Some(every) = inner.config.heartbeat {
            tokio::spawn(heartbeat(Arc::downgrade(&inner), every));
        }
        #[cfg(feature = "metrics")]
        {
            let weak = Arc::downgrade(&inner);
            let read = move || weak.upgrade().map(|c| (c.counters(), c.close_reason().is_some()));
            tokio::spawn(crate::metrics::report(read, inner.closed.subscribe()));
        }
        tracing::debug!("plus-mux connection opened");
        Ok(Self { inner })
    }

    /// Starts a connection over a TCP stream, with `TCP_NODELAY` and the configured keepalive.
    ///
    /// # Errors
    /// [`StartError`] when the config is invalid or the socket options cannot be set.
    pub fn from_tcp(
        stream: tokio::net::TcpStream,
        config: Config,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, StartError> {
        stream.set_nodelay(true)?;
        if let Some(idle) = config.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(idle);
            socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        }
        Ok(Self::new(stream, config, handler)?)
    }

    /// Sends `body` and waits for the response, up to [`Config::request_timeout`].
    ///
    /// Dropping the returned future withdraws the request from the pending table.
    ///
    /// # Errors
    /// [`RequestError`]: timeout, no slot, closed, shutting down, the peer's handler error, or a
    /// body above the limit.
    pub async fn request(&self, body: impl Into<Bytes>) -> Result<Bytes, RequestError> {
        self.request_with_timeout(body, self.inner.config.request_timeout).await
    }

    /// [`Connection::request`] with its own timeout.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn request_with_timeout(
        &self,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let body = body.into();
        let deadline = Instant::now() + timeout;
        let (rx, guard) = self.start(body, deadline, true).await?;
        let rx = rx.expect("sync requests have a receiver");
        // The expiry task answers with `Timeout` at the deadline; whoever answered took the
        // entry out of the table, so the guard has nothing left to remove.
        let result = match rx.await {
            Ok(result) => result,
            Err(_) => {
                Err(RequestError::Lost(self.inner.close_reason().unwrap_or(CloseReason::Local)))
            }
        };
        guard.disarm();
        match result {
            Ok(body)
                if self.inner.config.handler_errors == HandlerErrorWire::Prefixed
                    && body.starts_with(ERROR_PREFIX) =>
            {
                Err(RequestError::Remote(
                    String::from_utf8_lossy(&body[ERROR_PREFIX.len()..]).into_owned(),
                ))
            }
            other => other,
        }
    }

    /// Sends `body` without waiting: returns once it is queued. The response goes to the
    /// handler's [`Handler::on_orphan_response`]; the identity stays reserved for
    /// [`Config::async_response_timeout`].
    ///
    /// # Errors
    /// As [`Connection::request`], except timeouts of the response.
    pub async fn send_async(&self, body: impl Into<Bytes>) -> Result<(), RequestError> {
        let now = Instant::now();
        let queued_by = now + self.inner.config.request_timeout;
        let expires = now + self.inner.config.async_response_timeout;
        let (_, guard) = self.start(body.into(), (queued_by, expires), false).await?;
        // Queued: the entry now waits for its response or its expiry in the table.
        guard.disarm();
        Ok(())
    }

    /// Registers a request and queues its frame. `deadline` bounds the wait for a slot and for
    /// room in the write queue, and is when a request times out; `(queued_by, expires)` for an
    /// async request, whose identity is held until `expires`.
    async fn start(
        &self,
        body: Bytes,
        deadline: impl Into<StartDeadlines>,
        sync: bool,
    ) -> Result<(Option<oneshot::Receiver<Result<Bytes, RequestError>>>, PendingGuard), RequestError>
    {
        let StartDeadlines { queued_by: deadline, expires } = deadline.into();
        let inner = &self.inner;
        if let Some(reason) = inner.close_reason() {
            return Err(RequestError::Closed(reason));
        }
        if inner.draining.load(Ordering::Acquire) {
            return Err(RequestError::ShuttingDown);
        }
        if body.len() > inner.config.max_body {
            return Err(RequestError::BodyTooLarge { len: body.len(), max: inner.config.max_body });
        }
        if inner.config.go_compatible && !go_framable(&body) {
            return Err(RequestError::NotGoFramable { len: body.len() });
        }
        // A free slot and room in the queue are the common case: no timer for them.
        let permit = match Arc::clone(&inner.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => {
                return Err(RequestError::Closed(
                    inner.close_reason().unwrap_or(CloseReason::Local),
                ));
            }
            Err(TryAcquireError::NoPermits) => {
                let slot_deadline = deadline.min(Instant::now() + inner.config.slot_timeout);
                match timeout_at(slot_deadline, Arc::clone(&inner.slots).acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => {
                        return Err(RequestError::Closed(
                            inner.close_reason().unwrap_or(CloseReason::Local),
                        ));
                    }
                    Err(_) => return Err(RequestError::SlotTimeout),
                }
            }
        };
        let (waiter, rx) = if sync {
            let (tx, rx) = oneshot::channel();
            (Waiter::Sync(tx), Some(rx))
        } else {
            (Waiter::Async, None)
        };
        let (identity, generation, sooner) =
            inner.pending.lock().expect("pending lock").insert(waiter, permit, expires);
        if sooner {
            inner.expiry.notify_one();
        }
        inner.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
        let guard = PendingGuard { inner: Arc::clone(inner), identity, generation, armed: true };
        let frame = match inner.writer.try_send(Frame::request(identity, body)) {
            Ok(()) => return Ok((rx, guard)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(RequestError::Closed(
                    inner.close_reason().unwrap_or(CloseReason::Local),
                ));
            }
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
        };
        match timeout_at(deadline, inner.writer.send(frame)).await {
            Ok(Ok(())) => Ok((rx, guard)),
            Ok(Err(_)) => {
                Err(RequestError::Closed(inner.close_reason().unwrap_or(CloseReason::Local)))
            }
            Err(_) => {
                inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(RequestError::Timeout)
            }
        }
    }

    /// The connection's counters now.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.inner.counters()
    }

    /// Why the connection closed, or `None` while it is open.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.close_reason()
    }

    /// Waits until the connection closes, and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.inner.closed.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return CloseReason::Local;
            }
        }
    }

    /// Closes now: pending requests fail with [`CloseReason::Local`].
    pub fn close(&self) {
        self.inner.close(&CloseReason::Local);
    }

    /// Graceful shutdown: takes no new requests, waits up to `grace` for our pending requests
    /// to be answered and the peer's requests being handled to be answered, then closes.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        while self.inner.close_reason().is_none()
            && (self.inner.pending_len() > 0 || self.inner.handlers_running() > 0)
            && Instant::now() < deadline
        {
            let _ = timeout_at(
                deadline.min(Instant::now() + Duration::from_millis(10)),
                self.inner.handlers_idle.notified(),
            )
            .await;
        }
        self.inner.flushed(deadline).await;
        self.inner.close(&CloseReason::Local);
    }
}

/// When a request's frame must be queued by, and when its entry expires.
struct StartDeadlines {
    queued_by: Instant,
    expires: Instant,
}

impl From<Instant> for StartDeadlines {
    fn from(deadline: Instant) -> Self {
        Self { queued_by: deadline, expires: deadline }
    }
}

impl From<(Instant, Instant)> for StartDeadlines {
    fn from((queued_by, expires): (Instant, Instant)) -> Self {
        Self { queued_by, expires }
    }
}

/// Removes a request from the pending table when its caller stops waiting before an answer
/// (the future dropped, the frame not queued).
struct PendingGuard {
    inner: Arc<Inner>,
    identity: u32,
    generation: u64,
    armed: bool,
}

impl PendingGuard {
    /// The entry has left the table (answered, expired) or lives on there by design (async):
    /// nothing to remove, and no lock to take.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.remove_if(self.identity, self.generation);
        }
    }
}

/// Fails every request whose deadline has passed, and frees the identities of async requests
/// past theirs: one sleep per connection, reset to the earliest deadline, instead of a timer
/// per request.
async fn expire_loop(inner: Arc<Inner>) {
    let mut closed = inner.closed.subscribe();
    let mut closed = std::pin::pin!(async move {
        let _ = closed.wait_for(Option::is_some).await;
    });
    let far = Duration::from_secs(86_400);
    let sleep = tokio::time::sleep(far);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        let next = inner.pending.lock().expect("pending lock").next_sweep();
        sleep.as_mut().reset(next.unwrap_or_else(|| Instant::now() + far));
        tokio::select! {
            biased;
            () = &mut closed => return,
            () = inner.expiry.notified() => continue,
            () = &mut sleep => {}
        }
        let expired = inner.pending.lock().expect("pending lock").expire(Instant::now());
        for entry in expired {
            if let Waiter::Sync(tx) = entry.waiter {
                inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Err(RequestError::Timeout));
            }
        }
        inner.note_idle();
    }
}

/// Starts the reader and the writer on the two halves of `stream`.
///
/// A TCP stream is split into its owned halves: `tokio::io::split` guards the stream with one
/// lock, so the reader and the writer of a busy connection took turns at every read and write
/// (a tenth of the CPU in the pipelined bench went to that lock and the thread switches after
/// it). Other streams (TLS, in-memory pipes) cannot be read and written at once without it.
fn spawn_io<S>(inner: &Arc<Inner>, stream: S, queue: mpsc::Receiver<Frame>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut stream = Some(stream);
    let any: &mut dyn std::any::Any = &mut stream;
    if let Some(tcp) = any.downcast_mut::<Option<tokio::net::TcpStream>>().and_then(Option::take) {
        let (read, write) = tcp.into_split();
        tokio::spawn(read_loop(Arc::clone(inner), read));
        tokio::spawn(write_loop(Arc::clone(inner), write, queue));
    } else if let Some(stream) = stream {
        let (read, write) = tokio::io::split(stream);
        tokio::spawn(read_loop(Arc::clone(inner), read));
        tokio::spawn(write_loop(Arc::clone(inner), write, queue));
    }
}

async fn read_loop<R: AsyncRead + Unpin + Send + 'static>(inner: Arc<Inner>, read: R) {
    let codec = FrameCodec::with_budget(inner.config.max_body, inner.config.memory_budget.clone());
    let mut frames = FramedRead::new(read, codec);
    let mut closed = inner.closed.subscribe();
    let mut closed = std::pin::pin!(async move {
        let _ = closed.wait_for(Option::is_some).await;
    });
    // One timer per connection, reset only when it fires, and no clock read per frame: every
    // quarter of the frame timeout it looks whether bytes of an unfinished frame are buffered
    // and whether a whole frame has arrived since it last looked. A frame in progress is timed
    // from the first look that sees it, so a stalled one is caught within 1.25 frame timeouts.
    let frame_timeout = inner.config.frame_timeout;
    let look_every = frame_timeout.map_or(Duration::MAX, |t| t / 4);
    let mut partial_since: Option<Instant> = None;
    let mut frames_seen = 0u64;
    let mut frames_at_look = 0u64;
    let mut frame_timer = Box::pin(tokio::time::sleep(look_every));
    while !inner.is_closed.load(Ordering::Acquire) {
        let next = tokio::select! {
            biased;
            next = frames.next() => next,
            () = &mut closed => return,
            () = &mut frame_timer, if frame_timeout.is_some() => {
                let now = Instant::now();
                let progressed = frames_seen != frames_at_look;
                frames_at_look = frames_seen;
                if frames.read_buffer().is_empty() || progressed {
                    partial_since = (!frames.read_buffer().is_empty()).then_some(now);
                    frame_timer.as_mut().reset(now + look_every);
                    continue;
                }
                let since = *partial_since.get_or_insert(now);
                let deadline = since + frame_timeout.unwrap_or(Duration::MAX);
                if now >= deadline {
                    return inner.close(&CloseReason::FrameTimeout);
                }
                frame_timer.as_mut().reset(deadline.min(now + look_every));
                continue;
            }
        };
        let frame = match next {
            None => return inner.close(&CloseReason::PeerClosed),
            // A TLS peer gone without its close_notify (a process that exited, as most
            // clients do) between two frames: nothing was cut short, since every frame says
            // its length, so it closed like any other. Cut inside a frame, it stays an error.
            Some(Err(FrameError::Io(err)))
                if err.kind() == std::io::ErrorKind::UnexpectedEof
                    && frames.read_buffer().is_empty() =>
            {
                return inner.close(&CloseReason::PeerClosed);
            }
            Some(Err(err)) => return refuse(&inner, &err).await,
            Some(Ok(frame)) => frame,
        };
        // The frame's bytes stay charged to the budget while its body is in use.
        let charge = frames.decoder_mut().take_charge();
        frames_seen += 1;
        inner.stats.bytes_in.fetch_add(frame.wire_len() as u64, Ordering::Relaxed);
        match frame.kind {
            Kind::Request => {
                if inner.config.heartbeat.is_some() && frame.body.is_empty() {
                    let _ = inner.writer.send(Frame::response(frame.identity, Bytes::new())).await;
                    continue;
                }
                inner.stats.requests_served.fetch_add(1, Ordering::Relaxed);
                // Backpressure: with every handler slot taken, stop reading until one frees.
                let permit = match Arc::clone(&inner.handlers).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => tokio::select! {
                        biased;
                        () = &mut closed => return,
                        permit = Arc::clone(&inner.handlers).acquire_owned() => permit.expect("handler semaphore is never closed"),
                    },
                };
                let handler = Arc::clone(&inner.handler);
                // A panicking handler must still answer, hence catch_unwind.
                let body = frame.body;
                let mut answer = Box::pin(
                    AssertUnwindSafe(async move { handler.handle(body).await }).catch_unwind(),
                );
                // A handler that answers on its first poll is answered here, without a task;
                // the others get a task each. Either way the reader never waits for the writer.
                match answer.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(result) => {
                        let body = answer_body(&inner, result);
                        if !inner.hold_unread(body.len()) {
                            return;
                        }
                        let response = Frame::response(frame.identity, body);
                        if let Err(mpsc::error::TrySendError::Full(response)) =
                            inner.writer.try_send(response)
                        {
                            let task_inner = Arc::clone(&inner);
                            tokio::spawn(async move {
                                let _ = task_inner.writer.send(response).await;
                                drop((permit, charge));
                                task_inner.note_idle();
                            });
                        } else {
                            drop((permit, charge));
                            inner.note_idle();
                        }
                    }
                    Poll::Pending => {
                        let task_inner = Arc::clone(&inner);
                        tokio::spawn(async move {
                            let body = answer_body(&task_inner, answer.await);
                            if task_inner.hold_unread(body.len()) {
                                let response = Frame::response(frame.identity, body);
                                let _ = task_inner.writer.send(response).await;
                            }
                            drop((permit, charge));
                            task_inner.note_idle();
                        });
                    }
                }
            }
            Kind::Response => {
                let entry = inner.pending.lock().expect("pending lock").take(frame.identity);
                match entry.map(|e| e.waiter) {
                    Some(Waiter::Sync(tx)) => {
                        let _ = tx.send(Ok(frame.body));
                    }
                    Some(Waiter::Async) => {
                        inner.stats.orphans.fetch_add(1, Ordering::Relaxed);
                        let handler = Arc::clone(&inner.handler);
                        tokio::spawn(async move { handler.on_orphan_response(frame.body).await });
                    }
                    None => {
                        inner.stats.late_responses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                inner.note_idle();
            }
        }
    }
}

/// Closes the connection after a framing error. A request refused for its size or for the
/// memory budget is answered first, with the reason, where the protocol allows it.
async fn refuse(inner: &Inner, err: &FrameError) {
    let request = match err {
        FrameError::Io(_) => None,
        FrameError::BodyTooLarge { kind, identity, .. } => {
            inner.stats.oversized_frames.fetch_add(1, Ordering::Relaxed);
            (*kind == Kind::Request).then_some(*identity)
        }
        FrameError::OverBudget { kind, identity, .. } => {
            inner.stats.over_budget_frames.fetch_add(1, Ordering::Relaxed);
            (*kind == Kind::Request).then_some(*identity)
        }
        _ => {
            inner.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    if let Some(identity) = request {
        let deadline = Instant::now() + Duration::from_secs(1);
        let answer = Frame::response(identity, error_bytes(inner, &err.to_string()));
        if timeout_at(deadline, inner.writer.send(answer)).await.is_ok() {
            inner.flushed(deadline).await;
        }
    }
    inner.close(&CloseReason::from_frame_error(err));
}

type HandlerAnswer = Result<Result<Bytes, HandlerError>, Box<dyn std::any::Any + Send>>;

/// The response body for a handler's answer (an error or a panic becomes an error body).
fn answer_body(inner: &Inner, answer: HandlerAnswer) -> Bytes {
    match answer {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => error_body(inner, &err.0),
        Err(_) => error_body(inner, "handler panicked"),
    }
}

fn error_body(inner: &Inner, message: &str) -> Bytes {
    inner.stats.handler_errors.fetch_add(1, Ordering::Relaxed);
    error_bytes(inner, message)
}

/// An error answer in the configured wire form.
fn error_bytes(inner: &Inner, message: &str) -> Bytes {
    match inner.config.handler_errors {
        HandlerErrorWire::Empty => Bytes::new(),
        HandlerErrorWire::Prefixed => {
            let mut body = BytesMut::with_capacity(ERROR_PREFIX.len() + message.len());
            body.extend_from_slice(ERROR_PREFIX);
            body.extend_from_slice(message.as_bytes());
            body.freeze()
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin + Send + 'static>(
    inner: Arc<Inner>,
    mut write: W,
    mut queue: mpsc::Receiver<Frame>,
) {
    let mut buffer = BytesMut::with_capacity(inner.config.write_batch);
    let mut closed = inner.closed.subscribe();
    let mut closed = std::pin::pin!(async move {
        let _ = closed.wait_for(Option::is_some).await;
    });
    while !inner.is_closed.load(Ordering::Acquire) {
        let first = tokio::select! {
            biased;
            frame = queue.recv() => frame,
            () = &mut closed => None,
        };
        let Some(first) = first else { break };
        // Gather what else is queued into one write.
        let mut next = Some(first);
        while let Some(frame) = next {
            if let Err(err) = encode_into(&frame, &mut buffer) {
                // Bodies are checked against max_body (< 4 GiB) before they are queued.
                unreachable!("queued frame does not encode: {err}");
            }
            if frame.kind == Kind::Response {
                inner.unread.fetch_sub(frame.body.len(), Ordering::AcqRel);
            }
            next =
                if buffer.len() < inner.config.write_batch { queue.try_recv().ok() } else { None };
        }
        let written = buffer.len() as u64;
        if let Err(err) = write.write_all(&buffer).await {
            inner.close(&CloseReason::Io(err.to_string().into()));
            break;
        }
        if let Err(err) = write.flush().await {
            inner.close(&CloseReason::Io(err.to_string().into()));
            break;
        }
        buffer.clear();
        inner.stats.bytes_out.fetch_add(written, Ordering::Relaxed);
    }
    let _ = write.shutdown().await;
}

/// Closes the connection once no whole frame has moved for `idle`: it looks every quarter of
/// `idle` whether bytes moved since the last look, so it closes within 1.25 `idle` of quiet.
async fn idle_watch(inner: std::sync::Weak<Inner>, idle: Duration) {
    let look_every = idle / 4;
    let mut seen = None;
    let mut quiet_since = Instant::now();
    loop {
        let Some(strong) = inner.upgrade() else { return };
        if strong.close_reason().is_some() {
            return;
        }
        let now = Instant::now();
        let activity = strong.activity();
        if seen != Some(activity) {
            seen = Some(activity);
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            strong.close(&CloseReason::IdleTimeout);
            return;
        }
        drop(strong);
        tokio::time::sleep(look_every.min(idle.saturating_sub(now.duration_since(quiet_since))))
            .await;
    }
}

async fn heartbeat(inner: std::sync::Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(strong) = inner.upgrade() else { return };
        if strong.close_reason().is_some() {
            return;
        }
        let connection = Connection { inner: strong };
        match connection.request_with_timeout(Bytes::new(), every).await {
            Ok(_) | Err(RequestError::SlotTimeout | RequestError::ShuttingDown) => {}
            Err(RequestError::Timeout) => {
                connection.inner.close(&CloseReason::HeartbeatTimeout);
                return;
            }
            Err(_) => return,
        }
    }
}

/// Whether the Go implementation, which looks for `\r\r\n` instead of reading the length,
/// frames a request with this body correctly: the first trailer in the length field, the body
/// and the trailer together must be the real one. So neither the length nor the body may hold
/// it, nor may it straddle the length and the body's first bytes (a 13-byte body starting with
/// `\r\n`: length `00 00 00 0D`). It cannot straddle the body's end and the trailer, which
/// starts `\r\r`.
fn go_framable(body: &[u8]) -> bool {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; 6];
    head[..4].copy_from_slice(&len.to_be_bytes());
    let start = body.len().min(2);
    head[4..4 + start].copy_from_slice(&body[..start]);
    let straddles_head = head[..4 + start].windows(TRAILER.len()).any(|w| w == TRAILER);
    // Find each `\n` and look behind it: no searcher to build per body.
    !breaks_go_framing(len)
        && !straddles_head
        && !memchr::memchr_iter(TRAILER[2], body)
            .any(|at| at >= 2 && body[at - 2..at] == TRAILER[..2])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_trailer_across_the_length_and_the_body_or_the_body_and_the_trailer_is_found() {
        let mut across_length = b"\r\n".to_vec();
        across_length.resize(13, b'x');
        assert!(!go_framable(&across_length), "length 00 00 00 0D then \\r\\n");
        assert!(go_framable(b"ends in a carriage return\r"));
        assert!(go_framable(b"plain text"));
    }

    proptest! {
        #[test]
        fn go_framable_finds_the_trailer_wherever_it_is(
            body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..64)
        ) {
            // As the Go reader sees it: the first trailer after the identity is the frame's end.
            let frame: Vec<u8> = (body.len() as u32).to_be_bytes().iter().chain(&body).chain(TRAILER).copied().collect();
            let first = frame.windows(TRAILER.len()).position(|w| w == TRAILER);
            prop_assert_eq!(go_framable(&body), first == Some(frame.len() - TRAILER.len()));
        }
    }
}
