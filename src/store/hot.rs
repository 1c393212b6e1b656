//! Reads, and the statements of group-committed writes, on the connection used last.
//!
//! The pool hands out its idle connections oldest first, so a server running one statement at a
//! time goes round every connection it has ever opened: each statement lands on a PostgreSQL
//! backend whose caches have gone cold since its last turn. Measured on a page of 50 events, one
//! request at a time, PostgreSQL spent 680–705 µs of CPU per page going round 16 connections and
//! 450–485 µs on 2. The pool also checks every connection with a round trip when it comes back.
//!
//! A [`ReadPool`] keeps a few connections out of the pool between statements and lends the one
//! put back last: at low concurrency the same few backends answer every read, and a connection
//! that answered a moment ago goes out again without the round trip. Only statements that run
//! outside a transaction go through it: reads, and the autocommitted statements of write groups
//! and batches (`store/group.rs`). Transactions take their connection from the pool.
//!
//! - A kept connection is one the pool counts as lent. None is kept while the pool has no idle
//!   connection left: a read or a write may be waiting for one, and would wait for as long as the
//!   connections stayed kept. Those already kept when writes then fill the pool stay kept until
//!   the next read; at most a quarter of the pool is kept (`store::kept_for_reads`).
//! - Only statements that completed put a connection back. One dropped mid-statement, or whose
//!   statement failed, goes back to the pool, which checks it.
//! - A connection kept for [`super::PING_AFTER_IDLE`] or longer is not lent unchecked: it goes
//!   back to the pool too, and the read takes one from the pool as before.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::TryStreamExt;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Postgres};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, QueryResult, RuntimeErr, Statement,
};
use sea_query_sqlx::SqlxValues;
use sqlx::IntoArguments;
use sqlx::postgres::PgArguments;

/// A PostgreSQL statement with its arguments bound: arrays with NULL elements among them, which
/// sea-query's values cannot carry.
pub struct PgStatement {
    /// The text, with `$n` placeholders.
    pub sql: String,
    /// The arguments, encoded.
    pub args: PgArguments,
}

/// What each statement is reported to: the store's statement counter and histogram.
pub(crate) type Observe = Arc<dyn Fn(&sea_orm::metric::Info<'_>) + Send + Sync>;

/// Connections kept between reads, the last put back on top, each with when it was put back.
type Kept = Mutex<Vec<(PoolConnection<Postgres>, Instant)>>;

/// A pool whose reads go to the connection put back last (PostgreSQL); dereferences to the
/// pool itself for everything else.
pub(crate) struct ReadPool {
    db: DatabaseConnection,
    /// PostgreSQL: connections kept out of the pool between reads. `None` on SQLite, whose pool
    /// of files is left alone, and when none may be kept.
    kept: Option<Kept>,
    /// At most this many are kept; the others go back to the pool, for writes and transactions.
    keep: usize,
    observe: Observe,
}

impl std::ops::Deref for ReadPool {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl ReadPool {
    /// Reads through `db`, keeping at most `keep` of its connections for them, each statement
    /// reported to `observe` (as the pool itself reports the others).
    pub(crate) fn new(db: DatabaseConnection, keep: usize, observe: Observe) -> Self {
        let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
        let kept = (postgres && keep > 0).then(|| Mutex::new(Vec::new()));
        Self {
            db,
            kept,
            keep,
            observe,
        }
    }

    /// How many connections are kept for reads now (idle, though the pool counts them as lent).
    pub(crate) fn kept(&self) -> usize {
        self.kept
            .as_ref()
            .map_or(0, |kept| kept.lock().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// Runs one statement outside any transaction (a read, or an autocommitted write) and
    /// returns its rows, on the connection put back last when one was put back less than
    /// [`super::PING_AFTER_IDLE`] ago.
    pub(crate) async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut rows = Vec::new();
        self.query_each(stmt, |row| {
            rows.push(row);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Runs `stmt` like [`ReadPool::query_all`] and hands each row to `each` as it arrives, so
    /// that the caller works on the first rows while PostgreSQL still produces the later ones (a
    /// long walk's rows come in bursts as they are found). Stops at the first error, from the
    /// statement or from `each` (a row that does not decode); either is reported to the
    /// statement metrics as a failed statement, whose time includes the work of `each`.
    pub(crate) async fn query_each(
        &self,
        mut stmt: Statement,
        each: impl FnMut(QueryResult) -> Result<(), DbErr>,
    ) -> Result<(), DbErr> {
        if self.kept.is_none() {
            return self.db.query_all_raw(stmt).await?.into_iter().try_for_each(each);
        }
        // Moved out: what the statement is reported with is its text.
        let values = stmt.values.take().unwrap_or_else(|| sea_orm::Values(Vec::new()));
        self.run(&stmt, SqlxValues(values), each).await
    }

    /// Runs a PostgreSQL statement whose arguments are bound already, outside any transaction,
    /// like [`ReadPool::query_all`].
    pub(crate) async fn query_bound(&self, stmt: PgStatement) -> Result<Vec<QueryResult>, DbErr> {
        let reported = Statement::from_string(DatabaseBackend::Postgres, stmt.sql);
        let mut rows = Vec::new();
        self.run(&reported, stmt.args, |row| {
            rows.push(row);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Runs `stmt`'s text with `args` on PostgreSQL, on the connection put back last when one is
    /// kept, and hands each row to `each`.
    async fn run<A: IntoArguments<Postgres>>(
        &self,
        stmt: &Statement,
        args: A,
        mut each: impl FnMut(QueryResult) -> Result<(), DbErr>,
    ) -> Result<(), DbErr> {
        let mut conn = match self.kept.as_ref().and_then(|kept| self.take(kept)) {
            Some(conn) => conn,
            None => self
                .db
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(acquire_error)?,
        };
        let started = Instant::now();
        let outcome = async {
            let mut rows = sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), args).fetch(&mut *conn);
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|error| DbErr::Query(RuntimeErr::SqlxError(error.into())))?
            {
                each(QueryResult::from(row))?;
            }
            Ok(())
        }
        .await;
        (self.observe)(&sea_orm::metric::Info {
            elapsed: started.elapsed(),
            statement: stmt,
            failed: outcome.is_err(),
        });
        // After an error the connection goes back to the pool (dropped), which checks it: sqlx
        // first reads and drops what the statement had still to send.
        if let (Ok(()), Some(kept)) = (&outcome, &self.kept) {
            self.put_back(kept, conn);
        }
        outcome
    }

    /// The connection put back last, if it was put back recently enough to need no check. When
    /// it was not, none of the others was either: all go back to the pool.
    fn take(&self, kept: &Kept) -> Option<PoolConnection<Postgres>> {
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.last().is_some_and(|(_, at)| at.elapsed() < super::PING_AFTER_IDLE) {
            return kept.pop().map(|(conn, _)| conn);
        }
        let stale = std::mem::take(&mut *kept);
        drop(kept);
        // Back to the pool, outside the lock.
        drop(stale);
        None
    }

    /// Keeps `conn` for the next read, unless enough are kept or the pool has none idle to lend:
    /// then someone may be waiting for one (a read, a write), and it goes back to the pool.
    fn put_back(&self, kept: &Kept, conn: PoolConnection<Postgres>) {
        let pool = self.db.get_postgres_connection_pool();
        let exhausted = pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections();
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        if !exhausted && kept.len() < self.keep {
            kept.push((conn, Instant::now()));
        } else {
            drop(kept);
            // Back to the pool.
            drop(conn);
        }
    }
}

/// The error sea-orm gives when the pool cannot lend a connection.
fn acquire_error(error: sqlx::Error) -> DbErr {
    match error {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(other.into())),
    }
}
