//! Every SQL statement of auditgraph. The only module that talks to the database.

mod backfill;
mod chain;
mod columns;
mod error;
mod export;
mod group;
mod hot;
mod import;
mod lifecycle;
mod log;
mod read;
mod replica;
mod tree;
mod verify;
mod write;

pub use backfill::{BackfillBatch, ForeignKeyCheck, LegacyKey};
pub(crate) use chain::save_heads;
pub use chain::{ChainHead, StoredChain};
pub use columns::Columns;
pub use error::{StoreError, is_unavailable};
pub use export::ExportFilter;
pub use hot::PgStatement;
pub use import::{ImportError, ImportRow, ImportedBatch};
pub use lifecycle::{Claim, Deleted, Expired, LegalHold, Purged, ReleasedHold, RetentionRun, RunCounts, RunStatus};
pub use log::{LOG_CHANNEL, LogLeaf, StoredCheckpoint, VACUUM_QUEUE_EVERY, event_leaf};
pub use replica::{Lsn, PrimaryReason, ReadFrom, ReplicaSettings, Wanted};
pub(crate) use write::to_model;

pub use tree::{AncestorPath, Tree, TreeNode, WalkStart};

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{Datelike, Months, NaiveDate, Utc};
use migration::{Migrator, MigratorTrait};

use crate::domain::chain::ChainHasher;
use crate::metrics::PoolState;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait,
};

/// How the store connects.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path` or `postgres://…`.
    pub database_url: String,
    /// The size of the connection pool.
    pub max_connections: u32,
    /// PostgreSQL `statement_timeout`; ends runaway queries.
    pub statement_timeout: Duration,
    /// PostgreSQL `statement_timeout` of the recursive tree queries.
    pub tree_timeout: Duration,
    /// Create the PostgreSQL database when it does not exist (and the user may).
    pub create_database: bool,
    /// Longest a request waits for a pooled connection (and, at least 10 s, a SQLite writer for
    /// another process's lock).
    pub wait_timeout: Duration,
    /// How new events are hashed into their chains.
    pub hasher: ChainHasher,
    /// Read replicas (PostgreSQL), and how reads are spread over them.
    pub replicas: ReplicaSettings,
}

/// The database, shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// The replica that answers this store's reads; `None` for the primary. Writes always go
    /// to the primary.
    reading: Option<Arc<replica::Replica>>,
}

struct Inner {
    db: hot::ReadPool,
    /// PostgreSQL: a small pool whose sessions run with the tree timeout as their
    /// `statement_timeout`, for the recursive walks (one round trip each, no transaction to set
    /// the timeout in).
    trees: Option<hot::ReadPool>,
    /// Timeout of recursive tree queries (PostgreSQL).
    tree_timeout: Duration,
    /// Durations of SQL statements, for `/metrics`.
    statement_durations: prometheus::Histogram,
    /// Events per committed group of single-event writes, for `/metrics`.
    group_sizes: prometheus::Histogram,
    /// Statements executed since start: counted by sea-orm's metric hook, for tests and metrics.
    statements: Arc<AtomicU64>,
    /// First days of the months whose PostgreSQL partition is known to exist.
    known_months: Mutex<HashSet<NaiveDate>>,
    /// SQLite has one writer at a time; taking this before a write transaction keeps a
    /// read-then-write transaction from failing with SQLITE_BUSY when another writer commits.
    write_gate: Option<tokio::sync::Mutex<()>>,
    /// How new events are hashed into their correlation's chain.
    hasher: ChainHasher,
    /// The queue of single-event writes, committed in groups.
    group: group::GroupCommit,
    /// Read replicas, when configured.
    replicas: Option<replica::Replicas>,
    /// Entries the sequencer removed from the log's queue since it last vacuumed it
    /// (PostgreSQL; see `store/log.rs`).
    dequeued: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

impl Store {
    /// Connects to the database named by the URL. SQLite files are created when missing, with
    /// foreign keys on and the WAL journal.
    pub async fn connect(options: &StoreOptions) -> anyhow::Result<Self> {
        let url = &options.database_url;
        let mut connect = ConnectOptions::new(url.clone());
        connect
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.wait_timeout)
            .test_before_acquire_if_idle_for(PING_AFTER_IDLE)
            .sqlx_logging(false);
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        let statement_durations = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("db_statement_duration_seconds", "Time of each SQL statement")
                .buckets(crate::metrics::WRITE_BUCKETS.to_vec()),
        )
        .context("creating the statement histogram")?;
        let group_sizes = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "db_write_group_events",
                "Events per group of concurrent single-event writes committed together",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .context("creating the group size histogram")?;
        let observe: hot::Observe = {
            let durations = statement_durations.clone();
            Arc::new(move |info: &sea_orm::metric::Info<'_>| {
                counter.fetch_add(1, Ordering::Relaxed);
                durations.observe(info.elapsed.as_secs_f64());
                tracing::trace!(
                    target: "auditgraph::sql",
                    sql = %info.statement.sql,
                    elapsed_us = info.elapsed.as_micros() as u64,
                    failed = info.failed,
                    "statement"
                );
            })
        };
        let sqlite = url.starts_with("sqlite:");
        let (db, trees) = if sqlite {
            let wait = options.wait_timeout.max(Duration::from_secs(10));
            connect.map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(true)
                    .foreign_keys(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(wait)
            });
            let mut db = Database::connect(connect)
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            let report = observe.clone();
            db.set_metric_callback(move |info| report(info));
            (hot::ReadPool::new(db, 0, observe.clone()), None)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            ensure_postgres_database(url, options.create_database).await?;
            let (db, trees) = postgres_pools(&connect, options, observe.clone())
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            (db, Some(trees))
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite: or postgres:, got `{}`",
                redact(url)
            );
        };
        let replicas = if options.replicas.urls.is_empty() {
            None
        } else {
            if sqlite {
                anyhow::bail!("read replicas (AUDITGRAPH_READ_DATABASE_URL) need PostgreSQL as DATABASE_URL");
            }
            let mut list = Vec::new();
            for url in &options.replicas.urls {
                if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
                    // Not echoed: a piece cut from a URL by a comma in its password would show it.
                    anyhow::bail!(
                        "AUDITGRAPH_READ_DATABASE_URL must list PostgreSQL replicas (postgres://…), comma-separated; \
                         entry {} is not one (a comma inside a URL must be written %2C)",
                        list.len() + 1
                    );
                }
                // Lazy, and quick to give up: a replica that is down when the server starts, or
                // goes down later, must not hold a read; the watcher finds it when it answers.
                let mut read = ConnectOptions::new(url.clone());
                read.max_connections(options.max_connections)
                    .min_connections(0)
                    .connect_lazy(true)
                    .connect_timeout(Duration::from_secs(1))
                    .acquire_timeout(options.wait_timeout.min(Duration::from_secs(1)))
                    .sqlx_logging(false);
                let (replica, walks) = postgres_pools(&read, options, observe.clone())
                    .await
                    .with_context(|| format!("connecting to the read replica {}", redact(url)))?;
                list.push(replica::Replicas::replica(replica::replica_name(url), replica, walks));
            }
            Some(replica::Replicas::new(list, options.replicas.clone()).context("creating the replica metrics")?)
        };
        let (group, queued) = group::GroupCommit::channel();
        let inner = Arc::new(Inner {
            db,
            trees,
            tree_timeout: options.tree_timeout,
            statement_durations,
            group_sizes,
            statements,
            known_months: Mutex::new(HashSet::new()),
            write_gate: sqlite.then(|| tokio::sync::Mutex::new(())),
            hasher: options.hasher.clone(),
            group,
            replicas,
            dequeued: AtomicU64::new(0),
        });
        group::GroupCommit::start(Arc::downgrade(&inner), queued);
        let store = Self { inner, reading: None };
        // Know at once which replicas answer, rather than a check interval later.
        store.check_replicas().await;
        Ok(store)
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(self.db(), None).await.context("applying migrations")
    }

    /// The connection pool, for migrations and tests.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> DatabaseBackend {
        self.inner.db.get_database_backend()
    }

    /// How many SQL statements this store has executed.
    pub fn statements_executed(&self) -> u64 {
        self.inner.statements.load(Ordering::Relaxed)
    }

    /// The histogram of statement durations (registered by [`crate::metrics::Metrics`]).
    pub fn statement_durations(&self) -> prometheus::Histogram {
        self.inner.statement_durations.clone()
    }

    /// The histogram of events per group commit (registered by [`crate::metrics::Metrics`]).
    pub fn group_sizes(&self) -> prometheus::Histogram {
        self.inner.group_sizes.clone()
    }

    /// The pool's open, idle and maximum connections.
    pub fn pool_state(&self) -> PoolState {
        let db = self.db();
        let (open, idle, max) = match self.backend() {
            DatabaseBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                // Those kept for reads are idle too, though the pool counts them as lent.
                let idle = pool.num_idle() + self.inner.db.kept();
                (pool.size(), idle, pool.options().get_max_connections())
            }
            DatabaseBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle(), pool.options().get_max_connections())
            }
            _ => (0, 0, 0),
        };
        PoolState { open, idle, max }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), sea_orm::DbErr> {
        self.inner.db.ping().await
    }

    /// Creates the partitions of the current month and the `months_ahead` following ones
    /// (PostgreSQL; a no-op on SQLite).
    pub async fn ensure_partitions_ahead(&self, months_ahead: u32) -> Result<(), sea_orm::DbErr> {
        let this_month = month_start(Utc::now().date_naive());
        for m in 0..=months_ahead {
            if let Some(month) = this_month.checked_add_months(Months::new(m)) {
                self.ensure_partition(month).await?;
            }
        }
        Ok(())
    }

    /// Makes sure the partition holding `day` exists, so a write into it cannot fail for want of one.
    /// Runs outside any write transaction: partition DDL takes a strong lock on the parent table,
    /// which must not be held for the length of a write.
    pub async fn ensure_partition(&self, day: NaiveDate) -> Result<(), sea_orm::DbErr> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let month = month_start(day);
        if self.known_months().contains(&month) {
            return Ok(());
        }
        let stmt = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT auditgraph_ensure_partition($1)",
            [month.into()],
        );
        self.inner.db.execute_raw(stmt).await?;
        tracing::debug!(month = %month, "partition ready");
        self.known_months().insert(month);
        Ok(())
    }

    /// Starts a write transaction. On SQLite it holds the process's write gate and begins
    /// IMMEDIATE, so a transaction that reads before it writes never fails with SQLITE_BUSY: other
    /// processes' writers wait for the lock (busy timeout) instead of deadlocking on an upgrade.
    pub(crate) async fn begin_write(&self) -> Result<WriteTxn<'_>, sea_orm::DbErr> {
        let gate = match &self.inner.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        };
        let options = sea_orm::TransactionOptions {
            sqlite_transaction_mode: gate.as_ref().map(|_| sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = self.inner.db.begin_with_options(options).await?;
        Ok(WriteTxn { txn, _gate: gate })
    }

    /// Forgets that the partition of `month` exists (a retention run dropped it): a later write
    /// into that month creates it again.
    pub(crate) fn forget_month(&self, month: NaiveDate) {
        self.known_months().remove(&month_start(month));
    }

    fn known_months(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        // The set only caches; a poisoned lock still holds a valid set.
        self.inner.known_months.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A write transaction and, on SQLite, the write gate it holds until it ends.
pub(crate) struct WriteTxn<'a> {
    /// The transaction; commit it, or drop it to roll back.
    pub txn: sea_orm::DatabaseTransaction,
    _gate: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// `count` bind placeholders numbered from `first`: `$n` on PostgreSQL, `?` on SQLite.
pub(crate) fn placeholders(backend: DatabaseBackend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| match backend {
            DatabaseBackend::Postgres => format!("${i}"),
            _ => "?".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `count` wanted ids (`$1`…) as a table `wanted(id)` to join: generic plans probe the joined
/// table's index for each (on PostgreSQL an `IN` list of parameters was planned as a scan of the
/// whole table). The ids are typed `sql_type` on PostgreSQL.
pub(crate) fn wanted_ids(backend: DatabaseBackend, count: usize, sql_type: &str) -> String {
    let rows: Vec<String> = (1..=count)
        .map(|i| match backend {
            DatabaseBackend::Postgres => format!("(${i}::{sql_type})"),
            _ => format!("(?{i})"),
        })
        .collect();
    format!(
        "(SELECT column1 AS id FROM (VALUES {}) AS v) AS wanted",
        rows.join(", ")
    )
}

/// A statement written with `$n` placeholders, numbered for SQLite as `?n`.
pub(crate) fn statement(
    backend: DatabaseBackend,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => sql.to_string(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A count as the database stores it.
pub(crate) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The statement that takes PostgreSQL transaction advisory locks on `count` text keys, bound in
/// any order. It locks them sorted by bytes (the C collation), so that writers whose key sets
/// overlap cannot deadlock; `seed` keeps kinds of keys apart (0: event ids, 1: correlations).
pub(crate) fn advisory_locks_sql(count: usize, seed: u8) -> String {
    let values: Vec<String> = (1..=count).map(|i| format!("(${i})")).collect();
    format!(
        "SELECT pg_advisory_xact_lock(hashtextextended(key, {seed})) FROM (VALUES {}) AS k(key) \
         ORDER BY key COLLATE \"C\"",
        values.join(", ")
    )
}

/// Settings of every PostgreSQL session the store opens.
///
/// `plan_cache_mode = force_generic_plan`: every statement is prepared once per connection (sqlx
/// caches them) and its plan is reused, with partitions pruned when it starts instead of when it
/// is planned. Planning a statement over the monthly partitions costs about 1.2 ms on this
/// schema (16 partitions, `bench serve`), executing a page or a parent lookup 0.03–0.3 ms;
/// PostgreSQL's default plans each statement anew for its first five executions on every
/// connection and keeps doing so when it estimates a custom plan cheaper, which for these
/// statements it always is by a hair.
pub const POSTGRES_SESSION_SETTINGS: [(&str, &str); 3] = [
    ("jit", "off"),
    ("client_min_messages", "warning"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// A pooled connection idle at least this long is checked with a round trip before it is handed
/// out; one used more recently is not. The pool checks every connection when it comes back, so one
/// idle for less than this answered a moment ago; checking it again on every acquire put a third
/// round trip on each statement's way (the check, the statement, the check on return).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The two PostgreSQL pools of a server (the primary, or a replica) from `base`: one for
/// statements, with the statement timeout, and a smaller one whose sessions carry the tree timeout,
/// for the recursive walks (one round trip each, no transaction to set the timeout in). Every
/// statement of both is `observe`d.
async fn postgres_pools(
    base: &ConnectOptions,
    options: &StoreOptions,
    observe: hot::Observe,
) -> Result<(hot::ReadPool, hot::ReadPool), sea_orm::DbErr> {
    let mut statements = base.clone();
    with_session_settings(&mut statements, options.statement_timeout);
    let mut walks = base.clone();
    let walkers = (options.max_connections / 4).max(2);
    walks.max_connections(walkers);
    with_session_settings(&mut walks, options.tree_timeout);
    let mut walks = Database::connect(walks).await?;
    let mut statements = Database::connect(statements).await?;
    for pool in [&mut walks, &mut statements] {
        let report = observe.clone();
        pool.set_metric_callback(move |info| report(info));
    }
    // Up to a quarter of the statements' pool is kept for reads: the rest is always there for
    // writes and transactions, which take their connections from the pool itself. A pool of fewer
    // than four keeps none. The walks' pool serves only walks, and may keep all of its own.
    let statements = hot::ReadPool::new(statements, kept_for_reads(options.max_connections), observe.clone());
    let walks = hot::ReadPool::new(walks, walkers as usize, observe);
    Ok((statements, walks))
}

/// How many of a statements pool's `max_connections` are kept between reads (see [`hot`]).
fn kept_for_reads(max_connections: u32) -> usize {
    if max_connections < 4 {
        0
    } else {
        (max_connections / 4) as usize
    }
}

/// Applies [`POSTGRES_SESSION_SETTINGS`] and `statement_timeout` to every new connection of a
/// pool, with `SET` statements once it is open rather than as startup parameters: a connection
/// pooler (PgBouncer) refuses the `options` startup parameter, and one told to ignore it would
/// silently drop the statement timeout.
///
/// JIT compilation never pays off for these short statements, and the recursive tree walks, whose
/// estimated cost is high, triggered it: measured on a year of data, the first page of a
/// 5,000-wide fan-out's descendants took 5.2 s with JIT and 21 ms without (`bench serve`).
/// Notices such as "relation … already exists, skipping" from idempotent DDL are noise.
fn with_session_settings(connect: &mut ConnectOptions, statement_timeout: Duration) {
    let mut sql: String = POSTGRES_SESSION_SETTINGS
        .iter()
        .map(|(name, value)| format!("SET {name} = '{value}'; "))
        .collect();
    sql.push_str(&format!(
        "SET statement_timeout = {}",
        statement_timeout.as_millis().max(1)
    ));
    // sqlx asks for `extra_float_digits` at startup, which PgBouncer refuses too; PostgreSQL 12
    // and later print floats exactly by default.
    connect.map_sqlx_postgres_opts(|o| o.extra_float_digits(None));
    connect.map_sqlx_postgres_pool_opts(move |pool| {
        let sql = sql.clone();
        pool.after_connect(move |connection, _| {
            let sql = sql.clone();
            Box::pin(async move {
                sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql))
                    .execute(connection)
                    .await
                    .map(|_| ())
            })
        })
        // A connection's buffers grow to the largest message it sent or received (a batch of
        // 500 events is one message of megabytes) and would keep that size for the connection's
        // life on every connection of the pool: they go back to their initial size when the
        // connection returns to the pool (buffers of that size or less are left as they are).
        .after_release(|connection, _| {
            sea_orm::sqlx::Connection::shrink_buffers(connection);
            Box::pin(async { Ok(true) })
        })
    });
}

/// Makes sure the PostgreSQL database named by `url` exists. A missing one is created when
/// `create` is set and the user has the right to; otherwise the error says what to do. This is a
/// connection of its own, not the pool's first: its error names the cause (connection refused,
/// authentication failed), where the pool's says only that it timed out.
async fn ensure_postgres_database(url: &str, create: bool) -> anyhow::Result<()> {
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};

    let options: PgConnectOptions = url
        .parse()
        .with_context(|| format!("DATABASE_URL `{}` is not a valid PostgreSQL URL", redact(url)))?;
    // The pool does not log statements either; a slow CREATE DATABASE is no warning.
    let options = options.extra_float_digits(None).disable_statement_logging();
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let user = options.get_username().to_string();
    let name = options.get_database().unwrap_or(&user).to_string();
    match options.connect().await {
        Ok(connection) => {
            let _ = connection.close().await;
            return Ok(());
        }
        Err(error) if sqlstate(&error).as_deref() == Some("3D000") => {}
        Err(error) => {
            return Err(anyhow::anyhow!(
                "cannot connect to PostgreSQL database \"{name}\" on {server} as \"{user}\": {error}"
            ));
        }
    }
    let advice = format!(
        "create it (`createdb -h {} -p {} -U {} {}`) or point DATABASE_URL at an existing database",
        shell_word(options.get_host()),
        options.get_port(),
        shell_word(&user),
        shell_word(&name)
    );
    if !create {
        anyhow::bail!("PostgreSQL database \"{name}\" does not exist on {server}; {advice}");
    }
    let mut admin = match options.clone().database("postgres").connect().await {
        Ok(connection) => connection,
        Err(error) => match options.clone().database("template1").connect().await {
            Ok(connection) => connection,
            Err(_) => anyhow::bail!(
                "PostgreSQL database \"{name}\" does not exist on {server}, and user \"{user}\" cannot reach the maintenance database \"postgres\" to create it ({error}); {advice}"
            ),
        },
    };
    // An identifier cannot be a bind parameter; quoting it (quotes doubled) keeps it one name.
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    let created = sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(statement))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match created {
        Ok(_) => {
            tracing::info!(database = %name, server = %server, "the database did not exist; created it");
            Ok(())
        }
        // Another process created it meanwhile (a race on the catalog can also surface as 23505).
        Err(error) if matches!(sqlstate(&error).as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(error) if sqlstate(&error).as_deref() == Some("42501") => anyhow::bail!(
            "PostgreSQL database \"{name}\" does not exist on {server}, and user \"{user}\" may not create databases; {advice}"
        ),
        Err(error) => Err(anyhow::anyhow!(
            "PostgreSQL database \"{name}\" does not exist on {server}, and creating it failed: {error}; {advice}"
        )),
    }
}

/// `word` as one shell word, quoted when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The SQLSTATE of a database error.
fn sqlstate(error: &sea_orm::sqlx::Error) -> Option<String> {
    match error {
        sea_orm::sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keep_at_most_a_quarter_of_the_pool_and_small_pools_none() {
        for (max, kept) in [(1, 0), (2, 0), (3, 0), (4, 1), (7, 1), (16, 4), (1000, 250)] {
            assert_eq!(kept_for_reads(max), kept, "pool of {max}");
        }
        assert!((1..=1000).all(|max| kept_for_reads(max) * 4 <= max as usize));
    }

    #[test]
    fn advice_quotes_only_the_words_that_need_it() {
        assert_eq!(shell_word("auditgraph"), "auditgraph");
        assert_eq!(shell_word("127.0.0.1"), "127.0.0.1");
        assert_eq!(shell_word("audit graph"), "'audit graph'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/audit"),
            "postgres://app:***@db:5432/audit"
        );
        assert_eq!(redact("postgres://app@db/audit"), "postgres://app@db/audit");
        assert_eq!(redact("sqlite://auditgraph.db"), "sqlite://auditgraph.db");
    }
}
