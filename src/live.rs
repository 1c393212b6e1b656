//! Live delivery of new events to subscribers, in commit order, on every server process.
//!
//! The order is the transparency log's: the sequencer gives committed events consecutive leaf
//! indexes, one round at a time under a lock, so no leaf becomes visible before a lower one, and
//! every event written by any path through any process gets one. A subscription is a position in
//! that order, its cursor: the next leaf index it is owed. Timestamps cannot give that promise (an
//! event may commit late with an older `eventTimestamp`); the log's order can.
//!
//! One feed per process reads each new leaf's event once and broadcasts it to the process's
//! subscriptions through a bounded ring. The feed wakes when this process's sequencer grew the
//! log, when PostgreSQL notifies that another process did (`LISTEN`), and once a second in case a
//! notification was lost. A subscription first replays from the database what it missed, then
//! follows the ring; a hole between the two (it subscribed while the feed skipped ahead) is filled
//! from the database, and what the ring repeats is skipped, so nothing is missed or sent twice.
//! A subscription that falls a whole ring behind ends with an error carrying its cursor: a slow
//! consumer never grows memory.

pub mod tree;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::{EventFilter, LiveCursor};
use crate::entity::audit_event::Model;
use crate::metrics::Metrics;
use crate::ops::log::LogSignals;
use crate::store::{Store, StoreError};

pub use tree::{Placement, TreeScope};

/// Events read from the database at a time, by the feed and by replays.
const PAGE: u64 = 500;

/// How often the feed looks at the log without having been woken.
const POLL: Duration = Duration::from_secs(1);

/// Limits of live delivery; the main configuration flattens these flags in.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveSettings {
    /// Events a subscription may fall behind the newest before it is ended with the cursor to
    /// resume from: the length of the process's shared ring, which holds that many recent events
    /// in memory while anyone subscribes.
    #[arg(long = "live-buffer", env = "AUDITGRAPH_LIVE_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000), global = true)]
    pub buffer: u64,

    /// Most live connections (WebSocket and server-sent events) the server holds at once.
    #[arg(
        long = "live-max-connections",
        env = "AUDITGRAPH_LIVE_MAX_CONNECTIONS",
        default_value_t = 1_000,
        global = true
    )]
    pub max_connections: u64,

    /// Most subscriptions running on the server at once.
    #[arg(
        long = "live-max-subscriptions",
        env = "AUDITGRAPH_LIVE_MAX_SUBSCRIPTIONS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_subscriptions: u64,

    /// Most subscriptions running on one connection at once.
    #[arg(
        long = "live-max-subscriptions-per-connection",
        env = "AUDITGRAPH_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100,
        global = true
    )]
    pub max_per_connection: u64,

    /// Origins (`https://ui.example.com`, comma-separated) whose pages may open a WebSocket besides
    /// the server's own; a page of any other origin is refused.
    #[arg(
        long = "live-allowed-origins",
        env = "AUDITGRAPH_LIVE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_origins: Vec<String>,

    /// How long a WebSocket client has to send `connection_init`, in milliseconds.
    #[arg(long = "live-init-timeout-ms", env = "AUDITGRAPH_LIVE_INIT_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub init_timeout_ms: u64,

    /// How long a message may wait for a WebSocket client that does not read before the
    /// connection is closed (code 1013), in milliseconds.
    #[arg(long = "live-send-timeout-ms", env = "AUDITGRAPH_LIVE_SEND_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub send_timeout_ms: u64,
}

/// How a live connection is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, `graphql-transport-ws`.
    WebSocket,
    /// Server-sent events.
    ServerSentEvents,
}

impl Transport {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::ServerSentEvents => "sse",
        }
    }
}

/// One event at its place in the log.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    /// Its leaf index.
    pub position: u64,
    /// The event as stored.
    pub event: Arc<Model>,
}

impl LiveEvent {
    /// The cursor that resumes after this event.
    pub fn cursor(&self) -> LiveCursor {
        LiveCursor(self.position + 1)
    }
}

/// What a subscription delivers: an event and, for tree subscriptions, where it goes.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event.
    pub event: LiveEvent,
    /// Its depth and parent in the watched tree (tree subscriptions only).
    pub placement: Option<Placement>,
}

/// Why a subscription ended early; each carries the cursor to resume from.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// It fell a whole ring behind the newest event.
    #[error(
        "the subscription fell more than {buffer} events behind the newest and was ended; subscribe again \
         with `after` set to the cursor in this error to resume without a gap"
    )]
    Lagged {
        /// The ring's length.
        buffer: u64,
        /// Where to resume.
        resume: LiveCursor,
    },
    /// The database failed.
    #[error(
        "the subscription could not read the database; subscribe again with `after` set to the cursor in this error"
    )]
    Store {
        /// What failed.
        #[source]
        error: StoreError,
        /// Where to resume.
        resume: LiveCursor,
    },
    /// The server is shutting down.
    #[error(
        "the server is shutting down; subscribe again (to another instance) with `after` set to the cursor in this error"
    )]
    ShuttingDown {
        /// Where to resume.
        resume: LiveCursor,
    },
}

impl LiveError {
    /// Where to resume.
    pub fn resume(&self) -> LiveCursor {
        match self {
            LiveError::Lagged { resume, .. } | LiveError::Store { resume, .. } | LiveError::ShuttingDown { resume } => {
                *resume
            }
        }
    }

    /// The `extensions.code` clients see.
    pub fn code(&self) -> &'static str {
        match self {
            LiveError::Lagged { .. } => "SUBSCRIPTION_LAGGED",
            LiveError::Store {
                error: StoreError::Unavailable(_) | StoreError::Timeout(_),
                ..
            } => "UNAVAILABLE",
            LiveError::Store { .. } => "INTERNAL_SERVER_ERROR",
            LiveError::ShuttingDown { .. } => "SHUTTING_DOWN",
        }
    }
}

/// Why a connection or a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveRefusal {
    /// The server holds as many connections as it may.
    #[error("the server holds {0} live connections, its limit (AUDITGRAPH_LIVE_MAX_CONNECTIONS); retry later")]
    TooManyConnections(u64),
    /// The server runs as many subscriptions as it may.
    #[error("the server runs {0} subscriptions, its limit (AUDITGRAPH_LIVE_MAX_SUBSCRIPTIONS); retry later")]
    TooManySubscriptions(u64),
    /// This connection runs as many subscriptions as it may.
    #[error(
        "this connection runs {0} subscriptions, the most one connection may \
         (AUDITGRAPH_LIVE_MAX_SUBSCRIPTIONS_PER_CONNECTION); complete one or open another connection"
    )]
    TooManyOnConnection(u64),
    /// The server is shutting down.
    #[error("the server is shutting down; subscribe on another instance")]
    ShuttingDown,
    /// The subscription came through a transport that cannot stream.
    #[error(
        "subscriptions are streamed: open a WebSocket to /graphql (protocol graphql-transport-ws) or POST \
         with `Accept: text/event-stream`"
    )]
    NotStreaming,
}

impl LiveRefusal {
    /// The metrics label and `extensions.code` suffix.
    pub fn reason(&self) -> &'static str {
        match self {
            LiveRefusal::TooManyConnections(_) => "too_many_connections",
            LiveRefusal::TooManySubscriptions(_) => "too_many_subscriptions",
            LiveRefusal::TooManyOnConnection(_) => "too_many_on_connection",
            LiveRefusal::ShuttingDown => "shutting_down",
            LiveRefusal::NotStreaming => "not_streaming",
        }
    }
}

/// Live delivery for one process. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("position", &self.inner.position.load(Ordering::Relaxed))
            .field("connections", &self.inner.connections.load(Ordering::Relaxed))
            .field("subscriptions", &self.inner.subscriptions.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    sender: broadcast::Sender<LiveEvent>,
    /// The next leaf index the feed reads.
    position: AtomicU64,
    signals: Arc<LogSignals>,
    settings: LiveSettings,
    metrics: Metrics,
    connections: AtomicUsize,
    subscriptions: AtomicUsize,
    closing: watch::Sender<bool>,
}

impl Inner {
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }
}

impl Live {
    /// Live delivery over `store`, woken by `signals` (and, on PostgreSQL, by notifications once
    /// [`Live::run`] runs).
    pub fn new(store: Store, signals: Arc<LogSignals>, settings: LiveSettings, metrics: Metrics) -> Self {
        let capacity = usize::try_from(settings.buffer).unwrap_or(1024).max(16);
        let (sender, _) = broadcast::channel(capacity);
        let (closing, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                store,
                sender,
                position: AtomicU64::new(0),
                signals,
                settings,
                metrics,
                connections: AtomicUsize::new(0),
                subscriptions: AtomicUsize::new(0),
                closing,
            }),
        }
    }

    /// The limits in force.
    pub fn settings(&self) -> &LiveSettings {
        &self.inner.settings
    }

    /// Asks the sequencer to run now when anyone in this process is watching: called after each
    /// write, so that subscribers see it without waiting for the sequencer's tick.
    pub fn written(&self) {
        if self.inner.subscriptions.load(Ordering::Relaxed) > 0 {
            self.inner.signals.sequence.notify_one();
        }
    }

    /// Ends every subscription (each with its cursor) and refuses new ones: the server is
    /// shutting down.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Completes once [`Live::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.closed()
    }

    /// Waits until every live connection has ended, for at most `limit`; says whether they did.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let started = tokio::time::Instant::now();
        while self.inner.connections.load(Ordering::Acquire) > 0 {
            if started.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Opens a live connection, within the server's limit.
    pub fn connect(&self, transport: Transport) -> Result<LiveConnection, LiveRefusal> {
        let max = self.inner.settings.max_connections;
        let admitted = self
            .inner
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as usize).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.inner
                .metrics
                .live_refused(LiveRefusal::TooManyConnections(max).reason());
            return Err(LiveRefusal::TooManyConnections(max));
        }
        self.inner.metrics.live_connections(transport.label(), 1);
        Ok(LiveConnection {
            live: self.clone(),
            transport,
        })
    }

    /// Where a subscription starts: just after `after` (refused when that is past the log's
    /// end: a cursor of another database, or forged), or at the log's end when `None`.
    pub async fn start(&self, after: Option<LiveCursor>) -> Result<LiveCursor, StartError> {
        let size = self.inner.store.log_size().await?;
        match after {
            None => Ok(LiveCursor(size)),
            Some(cursor) if cursor.0 <= size => Ok(cursor),
            Some(cursor) => Err(StartError::Ahead { cursor, size }),
        }
    }

    /// Follows the log from `from` (see [`Live::start`]), delivering what `scope` admits. The
    /// stream ends after an error; its buffer holds a few deliveries, the rest waits in the
    /// shared ring or the database.
    pub fn follow(
        &self,
        permit: SubscriptionPermit,
        from: LiveCursor,
        scope: Scope,
    ) -> mpsc::Receiver<Result<Delivery, LiveError>> {
        let (tx, rx) = mpsc::channel(4);
        let follower = Follower {
            inner: self.inner.clone(),
            scope,
            tx,
            _permit: permit,
        };
        tokio::spawn(follower.run(from));
        rx
    }

    /// The feed: wakes when the log grows and broadcasts each new event once. Runs until the
    /// task is aborted; on PostgreSQL it also listens for other processes' sequencers.
    pub async fn run(self) {
        let _listening = (self.inner.store.backend() == sea_orm::DatabaseBackend::Postgres).then(|| {
            AbortOnDrop(tokio::spawn(listen(
                self.inner.store.clone(),
                self.inner.signals.clone(),
            )))
        });
        // Only new events are broadcast: history is replayed by each subscription.
        match self.inner.store.log_size().await {
            Ok(size) => {
                self.inner.position.fetch_max(size, Ordering::AcqRel);
            }
            Err(error) => tracing::warn!(%error, "the live feed could not read the log; it retries"),
        }
        loop {
            tokio::select! {
                () = self.inner.signals.grown.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            if let Err(error) = self.catch_up().await {
                tracing::warn!(%error, "the live feed could not read the log; it retries");
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Broadcasts every leaf past the feed's position.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        if inner.sender.receiver_count() == 0 {
            // Nobody listens: nothing to read, only the place to resume from. The size is read
            // before the second look, so a subscriber that joins after it replays up to at
            // least that size from the database: the feed skips nothing anyone is owed.
            let size = inner.store.log_size().await?;
            if inner.sender.receiver_count() == 0 {
                inner.position.fetch_max(size, Ordering::AcqRel);
                return Ok(());
            }
        }
        loop {
            let from = inner.position.load(Ordering::Acquire);
            let (events, next) = inner.store.log_events(from, PAGE).await?;
            if next == from {
                return Ok(());
            }
            for (position, event) in events {
                // No receiver left is not an error: the next round notices.
                let _ = inner.sender.send(LiveEvent {
                    position,
                    event: Arc::new(event),
                });
            }
            inner.position.store(next, Ordering::Release);
        }
    }
}

/// Aborts a task when dropped: the listener stops with the feed.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a subscription cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cursor lies past the log's end.
    #[error("after: the cursor is at position {}, past the end of the log ({size}); it comes from another database or was altered", .cursor.0)]
    Ahead {
        /// The cursor given.
        cursor: LiveCursor,
        /// The log's size.
        size: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Wakes the feed on the sequencer's notifications from every process; reconnects when the
/// listening connection is lost (the feed's poll covers the gap).
async fn listen(store: Store, signals: Arc<LogSignals>) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let pool = store.db().get_postgres_connection_pool();
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot open the connection that listens for new log leaves; retrying");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(crate::store::LOG_CHANNEL).await {
            tracing::warn!(%error, "cannot LISTEN for new log leaves; retrying");
            tokio::time::sleep(POLL).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(_) => signals.grown.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, "the connection listening for new log leaves failed; reconnecting");
                    signals.grown.notify_one();
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a subscription admits.
#[derive(Debug)]
pub enum Scope {
    /// Events matching a filter.
    Filter(Box<EventFilter>),
    /// Events added to a causality tree, placed in it.
    Tree(TreeScope),
}

/// A live connection: counted against the server's limit while it lives. How many operations
/// one connection runs at once is bounded where they run (a WebSocket's operations; an event
/// stream runs one).
#[derive(Debug)]
pub struct LiveConnection {
    live: Live,
    transport: Transport,
}

impl LiveConnection {
    /// The live delivery this connection belongs to.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Takes a subscription slot of the server.
    pub fn subscription(&self) -> Result<SubscriptionPermit, LiveRefusal> {
        let inner = &self.live.inner;
        let refuse = |refusal: LiveRefusal| {
            inner.metrics.live_refused(refusal.reason());
            Err(refusal)
        };
        if *inner.closing.borrow() {
            return refuse(LiveRefusal::ShuttingDown);
        }
        let max = inner.settings.max_subscriptions;
        if inner
            .subscriptions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as usize).then_some(n + 1)
            })
            .is_err()
        {
            return refuse(LiveRefusal::TooManySubscriptions(max));
        }
        inner.metrics.live_subscriptions(1);
        Ok(SubscriptionPermit {
            live: self.live.clone(),
        })
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.live.inner.connections.fetch_sub(1, Ordering::AcqRel);
        self.live.inner.metrics.live_connections(self.transport.label(), -1);
    }
}

/// A running subscription's slot; given back when dropped.
#[derive(Debug)]
pub struct SubscriptionPermit {
    live: Live,
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        self.live.inner.subscriptions.fetch_sub(1, Ordering::AcqRel);
        self.live.inner.metrics.live_subscriptions(-1);
    }
}

/// One subscription's task: replays, then follows the ring.
struct Follower {
    inner: Arc<Inner>,
    scope: Scope,
    tx: mpsc::Sender<Result<Delivery, LiveError>>,
    _permit: SubscriptionPermit,
}

/// Why a follower stops.
enum Stop {
    /// The consumer went away.
    Gone,
    /// It ends with this error.
    Failed(LiveError),
}

impl Follower {
    async fn run(mut self, from: LiveCursor) {
        let mut next = from.0;
        if let Err(Stop::Failed(error)) = self.follow(&mut next).await {
            self.inner.metrics.live_ended(error.code());
            let _ = self.tx.send(Err(error)).await;
        }
    }

    async fn follow(&mut self, next: &mut u64) -> Result<(), Stop> {
        let closed = self.inner.closed();
        tokio::pin!(closed);
        // A long replay runs before joining the ring, which would overflow meanwhile.
        self.replay(next, u64::MAX).await?;
        let mut ring = self.inner.sender.subscribe();
        // What committed between the last read and joining the ring.
        self.replay(next, u64::MAX).await?;
        self.inner.signals.grown.notify_one();
        loop {
            let received = tokio::select! {
                received = ring.recv() => received,
                () = self.tx.closed() => return Err(Stop::Gone),
                () = &mut closed => {
                    return Err(Stop::Failed(LiveError::ShuttingDown { resume: LiveCursor(*next) }));
                }
            };
            match received {
                Ok(event) => {
                    if event.position < *next {
                        continue;
                    }
                    if event.position > *next {
                        self.replay(next, event.position).await?;
                    }
                    *next = event.position + 1;
                    self.offer(event).await?;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Err(Stop::Failed(LiveError::Lagged {
                        buffer: self.inner.settings.buffer,
                        resume: LiveCursor(*next),
                    }));
                }
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
            }
        }
    }

    /// Delivers the stored events from `next` up to `until` (exclusive) or the end of the log.
    async fn replay(&mut self, next: &mut u64, until: u64) -> Result<(), Stop> {
        while *next < until {
            // A long replay stops as soon as nobody waits for it.
            if self.tx.is_closed() {
                return Err(Stop::Gone);
            }
            if *self.inner.closing.borrow() {
                return Err(Stop::Failed(LiveError::ShuttingDown {
                    resume: LiveCursor(*next),
                }));
            }
            let count = PAGE.min(until - *next);
            let (events, after) = self.inner.store.log_events(*next, count).await.map_err(|error| {
                Stop::Failed(LiveError::Store {
                    error,
                    resume: LiveCursor(*next),
                })
            })?;
            if after == *next {
                return Ok(());
            }
            for (position, event) in events {
                *next = position + 1;
                self.offer(LiveEvent {
                    position,
                    event: Arc::new(event),
                })
                .await?;
            }
            *next = after;
        }
        Ok(())
    }

    /// Sends an event on when the scope admits it.
    async fn offer(&mut self, event: LiveEvent) -> Result<(), Stop> {
        let placement = match &mut self.scope {
            Scope::Filter(filter) => {
                if !filter.matches(&event.event) {
                    return Ok(());
                }
                None
            }
            Scope::Tree(tree) => match tree.place(&self.inner.store, &event.event).await {
                Ok(Some(placement)) => Some(placement),
                Ok(None) => return Ok(()),
                Err(error) => {
                    return Err(Stop::Failed(LiveError::Store {
                        error,
                        resume: LiveCursor(event.position),
                    }));
                }
            },
        };
        // A consumer that takes nothing for this long is stuck (a client that stopped reading a
        // stream): the subscription ends and gives its place back.
        let timeout = Duration::from_millis(self.inner.settings.send_timeout_ms);
        match tokio::time::timeout(timeout, self.tx.send(Ok(Delivery { event, placement }))).await {
            Ok(Ok(())) => {
                self.inner.metrics.live_delivered();
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => {
                self.inner.metrics.live_ended("STUCK");
                Err(Stop::Gone)
            }
        }
    }
}
