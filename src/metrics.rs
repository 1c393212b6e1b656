//! Prometheus metrics: one registry per application instance, rendered at `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::domain::FieldError;
use crate::error::ApiError;
use crate::store::Store;

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
    store: Store,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Which API a request came through.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    Graphql,
    Rest,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Graphql => "graphql",
            Source::Rest => "rest",
        }
    }
}

/// Latency buckets, from half a millisecond to five seconds.
pub const WRITE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    /// Registers the metrics, including the store's statement-duration histogram.
    pub fn new(store: Store) -> anyhow::Result<Self> {
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
        registry.register(Box::new(validation_failures.clone()))?;
        registry.register(Box::new(events_written.clone()))?;
        registry.register(Box::new(write_duration.clone()))?;
        registry.register(Box::new(query_duration.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(store.statement_durations()))?;
        Ok(Self {
            registry,
            validation_failures,
            events_written,
            write_duration,
            query_duration,
            pool,
            store,
        })
    }

    /// Counts the validation failures of one rejected request.
    pub fn validation_failed(&self, source: Source, errors: &[FieldError]) {
        for error in errors {
            self.validation_failures
                .with_label_values(&[source.label(), error.reason])
                .inc();
        }
    }

    /// Counts the validation failures inside a refused request, whatever refused it (the
    /// validation of the input or the store, for an unknown parent).
    pub fn refused(&self, source: Source, error: &ApiError) {
        if let ApiError::BadUserInput { errors } = error {
            self.validation_failed(source, errors);
        }
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

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let (open, idle, max) = self.store.pool_state();
        self.pool.with_label_values(&["open"]).set(open as i64);
        self.pool.with_label_values(&["idle"]).set(idle as i64);
        self.pool.with_label_values(&["max"]).set(max as i64);
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
