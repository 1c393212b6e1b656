//! Prometheus metrics: one registry per application instance, rendered at `/metrics`. A leaf
//! module: it knows no other part of the application, which reports to it.

use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric auditgraph exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `validation_failures_total{source, reason}`: rejected events, by API and reason.
    validation_failures: IntCounterVec,
    /// `events_written_total{source}`: events acknowledged, by API.
    events_written: IntCounterVec,
    /// `write_duration_seconds{source, kind}`: time to write a single event or a batch.
    write_duration: HistogramVec,
    /// `query_duration_seconds{source}`: time to answer REST reads and GraphQL operations.
    query_duration: HistogramVec,
    /// `db_pool_connections{state}`: connections of the pool, sampled at each scrape.
    pool: IntGaugeVec,
    /// `auth_refusals_total{source, reason}`: requests refused as unauthenticated or forbidden.
    auth_refusals: IntCounterVec,
    /// `live_connections{transport}`: open WebSocket and server-sent-event connections.
    live_connections: IntGaugeVec,
    /// `live_subscriptions`: subscriptions running.
    live_subscriptions: prometheus::IntGauge,
    /// `live_events_delivered_total`: events handed to subscriptions.
    live_delivered: prometheus::IntCounter,
    /// `live_refusals_total{reason}`: connections and subscriptions refused by a limit.
    live_refusals: IntCounterVec,
    /// `live_subscriptions_ended_total{code}`: subscriptions ended by the server with an error
    /// (`SUBSCRIPTION_LAGGED` for slow consumers).
    live_ended: IntCounterVec,
    /// `legal_hold_operations_total{operation}`: holds placed and released.
    legal_holds: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Which API a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Graphql,
    Rest,
    /// The `/metrics` endpoint itself (refusals only).
    Metrics,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Graphql => "graphql",
            Source::Rest => "rest",
            Source::Metrics => "metrics",
        }
    }
}

/// The connections of a database pool at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolState {
    /// Connections open.
    pub open: u32,
    /// Connections open and idle.
    pub idle: usize,
    /// The most the pool opens.
    pub max: u32,
}

/// Latency buckets, from half a millisecond to five seconds.
pub const WRITE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// Registers the metrics; `extra` are collectors of other parts (the store's statement
    /// durations).
    pub fn new(extra: Vec<Box<dyn Collector>>) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let validation_failures = IntCounterVec::new(
            Opts::new(
                "validation_failures_total",
                "Events rejected by validation, by API and reason",
            ),
            &["source", "reason"],
        )?;
        let events_written = IntCounterVec::new(
            Opts::new("events_written_total", "Events written and acknowledged, by API"),
            &["source"],
        )?;
        let write_duration = HistogramVec::new(
            HistogramOpts::new(
                "write_duration_seconds",
                "Time to write one event or one batch, by API and kind",
            )
            .buckets(WRITE_BUCKETS.to_vec()),
            &["source", "kind"],
        )?;
        let query_duration = HistogramVec::new(
            HistogramOpts::new(
                "query_duration_seconds",
                "Time to answer a request: REST reads, and every GraphQL operation",
            )
            .buckets(WRITE_BUCKETS.to_vec()),
            &["source"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by state (open, idle, max)",
            ),
            &["state"],
        )?;
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "auth_refusals_total",
                "Requests refused as unauthenticated or forbidden, by API and reason",
            ),
            &["source", "reason"],
        )?;
        let live_connections = IntGaugeVec::new(
            Opts::new(
                "live_connections",
                "Open live connections, by transport (websocket, sse)",
            ),
            &["transport"],
        )?;
        let live_subscriptions = prometheus::IntGauge::new("live_subscriptions", "Subscriptions running")?;
        let live_delivered =
            prometheus::IntCounter::new("live_events_delivered_total", "Events handed to subscriptions")?;
        let live_refusals = IntCounterVec::new(
            Opts::new(
                "live_refusals_total",
                "Live connections and subscriptions refused by a limit, by reason",
            ),
            &["reason"],
        )?;
        let live_ended = IntCounterVec::new(
            Opts::new(
                "live_subscriptions_ended_total",
                "Subscriptions ended by the server with an error, by code (SUBSCRIPTION_LAGGED: a slow consumer)",
            ),
            &["code"],
        )?;
        let legal_holds = IntCounterVec::new(
            Opts::new(
                "legal_hold_operations_total",
                "Legal holds placed and released, by operation (place, release)",
            ),
            &["operation"],
        )?;
        registry.register(Box::new(legal_holds.clone()))?;
        registry.register(Box::new(live_connections.clone()))?;
        registry.register(Box::new(live_subscriptions.clone()))?;
        registry.register(Box::new(live_delivered.clone()))?;
        registry.register(Box::new(live_refusals.clone()))?;
        registry.register(Box::new(live_ended.clone()))?;
        registry.register(Box::new(validation_failures.clone()))?;
        registry.register(Box::new(auth_refusals.clone()))?;
        registry.register(Box::new(events_written.clone()))?;
        registry.register(Box::new(write_duration.clone()))?;
        registry.register(Box::new(query_duration.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        for collector in extra {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            validation_failures,
            events_written,
            write_duration,
            query_duration,
            pool,
            auth_refusals,
            live_connections,
            live_subscriptions,
            live_delivered,
            live_refusals,
            live_ended,
            legal_holds,
        })
    }

    /// A live connection opened (`1`) or closed (`-1`).
    pub fn live_connections(&self, transport: &str, delta: i64) {
        self.live_connections.with_label_values(&[transport]).add(delta);
    }

    /// A subscription started (`1`) or ended (`-1`).
    pub fn live_subscriptions(&self, delta: i64) {
        self.live_subscriptions.add(delta);
    }

    /// An event handed to a subscription.
    pub fn live_delivered(&self) {
        self.live_delivered.inc();
    }

    /// A connection or subscription refused by a limit.
    pub fn live_refused(&self, reason: &str) {
        self.live_refusals.with_label_values(&[reason]).inc();
    }

    /// A legal hold placed (`place`) or released (`release`).
    pub fn legal_hold(&self, operation: &str) {
        self.legal_holds.with_label_values(&[operation]).inc();
    }

    /// A subscription ended by the server with an error.
    pub fn live_ended(&self, code: &str) {
        self.live_ended.with_label_values(&[code]).inc();
    }

    /// Counts one validation failure of a rejected event, by its reason label.
    pub fn validation_failed(&self, source: Source, reason: &str) {
        self.validation_failures
            .with_label_values(&[source.label(), reason])
            .inc();
    }

    /// Counts a request refused for its credentials (`unauthenticated`) or its role (`forbidden`).
    pub fn auth_refused(&self, source: Source, reason: &str) {
        self.auth_refusals.with_label_values(&[source.label(), reason]).inc();
    }

    /// Records an acknowledged write of `events` events.
    pub fn written(&self, source: Source, events: usize, seconds: f64) {
        let kind = if events == 1 { "single" } else { "batch" };
        self.write_duration
            .with_label_values(&[source.label(), kind])
            .observe(seconds);
        self.events_written
            .with_label_values(&[source.label()])
            .inc_by(events as u64);
    }

    /// Records the duration of a read request.
    pub fn queried(&self, source: Source, seconds: f64) {
        self.query_duration
            .with_label_values(&[source.label()])
            .observe(seconds);
    }

    /// The metrics in the Prometheus text format, with the pool as it is now.
    pub fn render(&self, pool: PoolState) -> String {
        self.pool.with_label_values(&["open"]).set(pool.open.into());
        self.pool.with_label_values(&["idle"]).set(pool.idle as i64);
        self.pool.with_label_values(&["max"]).set(pool.max.into());
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
