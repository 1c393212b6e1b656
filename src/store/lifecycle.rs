//! Legal holds and retention: the rows behind them and the statements that move them. What a
//! retention run decides is in `ops::retention`; the database refuses anything else (see the
//! migration `record_lifecycle`).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, QueryResult, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError, signed, statement};
use crate::domain::NewEvent;
use crate::entity::audit_event::Model;

/// A legal hold on a correlation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegalHold {
    /// The correlation held.
    pub correlation_id: String,
    /// Why it was placed.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
    /// How many events of the correlation it holds now.
    pub events_held: u64,
}

/// A released hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedHold {
    /// The correlation released.
    pub correlation_id: String,
    /// How many events the hold covered.
    pub events_released: u64,
    /// Who released it.
    pub released_by: String,
    /// When.
    pub released_at: DateTime<Utc>,
}

/// An event a retention run deleted, as recorded when it was deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    /// The event's id.
    pub event_id: Uuid,
    /// Its date.
    pub event_date: NaiveDate,
    /// Its correlation.
    pub correlation_id: String,
    /// Its place in the correlation's chain.
    pub chain_seq: Option<i64>,
    /// Its hash.
    pub event_hash: Option<String>,
    /// Its retention.
    pub retention_days: i32,
    /// The run that deleted it.
    pub run_id: Uuid,
    /// The date that run judged expiry by.
    pub run_as_of: NaiveDate,
}

impl Purged {
    /// The link of the chain it was, for verification.
    pub fn link(&self) -> crate::domain::chain::PurgedLink {
        crate::domain::chain::PurgedLink {
            event_id: self.event_id,
            position: self.chain_seq,
            event_hash: self.event_hash.clone(),
            run_id: self.run_id,
            was_due: self.was_due(),
        }
    }

    /// Whether its retention had passed by its run's date (the database refuses anything else).
    pub fn was_due(&self) -> bool {
        self.event_date
            .checked_add_days(chrono::Days::new(u64::try_from(self.retention_days).unwrap_or(0)))
            .is_some_and(|expiry| expiry < self.run_as_of)
    }

    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            event_id: row.try_get("", "event_id")?,
            event_date: row.try_get("", "event_date")?,
            correlation_id: row.try_get("", "correlation_id")?,
            chain_seq: row.try_get("", "chain_seq")?,
            event_hash: row.try_get("", "event_hash")?,
            retention_days: row.try_get("", "retention_days")?,
            run_id: row.try_get("", "run_id")?,
            run_as_of: row.try_get("", "as_of")?,
        })
    }
}

/// The state of a retention run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Working now (or its runner died; a later run takes it over once its heartbeat is stale).
    Running,
    /// Stopped after the work it was allowed; the next run resumes it.
    Paused,
    /// Done.
    Finished,
    /// Stopped by an error; the next run starts afresh.
    Failed,
}

impl RunStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "paused" => Self::Paused,
            "finished" => Self::Finished,
            _ => Self::Failed,
        }
    }
}

/// What a retention run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Expired events examined.
    pub rows_scanned: u64,
    /// Events deleted (row by row or with their partition).
    pub rows_deleted: u64,
    /// Expired events kept because a legal hold covers them.
    pub kept_held: u64,
    /// Expired events kept because one of their children (or a descendant) is kept.
    pub kept_parent: u64,
    /// Partitions detached and dropped whole.
    pub partitions_dropped: Vec<String>,
}

/// A retention run as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRun {
    /// Its id.
    pub run_id: Uuid,
    /// Events whose `event_date + retention_days` is before this date are expired.
    pub as_of: NaiveDate,
    /// Whether it only reported.
    pub dry_run: bool,
    /// Its state.
    pub status: RunStatus,
    /// Who runs it (host and process).
    pub runner: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When its runner last reported progress.
    pub heartbeat_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it found and did.
    pub counts: RunCounts,
    /// Why it failed.
    pub error: Option<String>,
}

impl RetentionRun {
    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        let count =
            |name: &str| -> Result<u64, DbErr> { Ok(u64::try_from(row.try_get::<i64>("", name)?).unwrap_or(0)) };
        let dropped: String = row.try_get("", "partitions_dropped")?;
        Ok(Self {
            run_id: row.try_get("", "run_id")?,
            as_of: row.try_get("", "as_of")?,
            dry_run: row.try_get("", "dry_run")?,
            status: RunStatus::parse(&row.try_get::<String>("", "status")?),
            runner: row.try_get("", "runner")?,
            started_at: row.try_get("", "started_at")?,
            heartbeat_at: row.try_get("", "heartbeat_at")?,
            finished_at: row.try_get("", "finished_at")?,
            counts: RunCounts {
                rows_scanned: count("rows_scanned")?,
                rows_deleted: count("rows_deleted")?,
                kept_held: count("kept_held")?,
                kept_parent: count("kept_parent")?,
                partitions_dropped: dropped
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
            },
            error: row.try_get("", "error")?,
        })
    }
}

/// What claiming the retention runner's place gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A new run.
    Started(RetentionRun),
    /// An unfinished run, taken over (paused, or its runner stopped reporting).
    Resumed(RetentionRun),
    /// Another runner is working on this run now.
    Busy(RetentionRun),
}

/// An expired event a run looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// Its key.
    pub event_id: Uuid,
    /// Its date.
    pub event_date: NaiveDate,
    /// The day after which it may go (`event_date + retention_days`), the scan's order.
    pub expires: NaiveDate,
    /// Whether a legal hold covers it.
    pub held: bool,
    /// Whether stored events name it as their parent.
    pub has_children: bool,
}

/// An event a purge deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Its key.
    pub event_id: Uuid,
    /// Its date.
    pub event_date: NaiveDate,
    /// Its parent, which may have become a leaf: its id, and its date unless the link is a
    /// legacy one.
    pub parent: Option<(Uuid, Option<NaiveDate>)>,
}

const RUN_COLUMNS: &str = "run_id, as_of, dry_run, status, runner, started_at, heartbeat_at, finished_at, rows_scanned, \
     rows_deleted, kept_held, kept_parent, partitions_dropped, error";

/// Expired (by `as_of`, bound as `$1`) in the engine's arithmetic, for the row alias `e`.
fn expired(backend: DatabaseBackend, alias: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("{alias}.event_date + {alias}.retention_days < $1"),
        _ => format!("julianday({alias}.event_date) + {alias}.retention_days < julianday($1)"),
    }
}

/// The day an event expires, in the engine's arithmetic (as the expiry index has it).
fn expiry(backend: DatabaseBackend, alias: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("{alias}.event_date + {alias}.retention_days"),
        _ => format!("julianday({alias}.event_date) + {alias}.retention_days"),
    }
}

/// Whether a legal hold covers the row `alias`.
fn held(alias: &str) -> String {
    format!(
        "({alias}.legal_hold OR EXISTS (SELECT 1 FROM audit_legal_holds h WHERE h.correlation_id = {alias}.correlation_id))"
    )
}

/// Whether stored events name the row `alias` as their parent, legacy links (no parent date)
/// included.
fn has_children(alias: &str) -> String {
    format!("EXISTS (SELECT 1 FROM audit_events c WHERE {})", child_of("c", alias))
}

/// Whether the row `child` names the row `parent` as its parent (a legacy link, without the
/// parent's date, names every event with that id).
fn child_of(child: &str, parent: &str) -> String {
    format!(
        "{child}.parent_event_id = {parent}.event_id \
         AND ({child}.parent_event_date = {parent}.event_date OR {child}.parent_event_date IS NULL)"
    )
}

/// The `(event_id, event_date)` pairs as a VALUES list from placeholder `first` on.
fn key_values(backend: DatabaseBackend, first: usize, count: usize) -> String {
    (0..count)
        .map(|i| match backend {
            DatabaseBackend::Postgres => format!("(${}::uuid, ${}::date)", first + 2 * i, first + 2 * i + 1),
            _ => format!("(?{}, ?{})", first + 2 * i, first + 2 * i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_of(row: Option<&QueryResult>, column: &str) -> Result<u64, DbErr> {
    let n: i64 = row.map(|r| r.try_get("", column)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The holds on these correlations, read inside a write transaction that holds their chain locks
/// (so that no hold is placed or released meanwhile), applied to the rows about to be written.
pub(crate) async fn apply_holds(db: &impl ConnectionTrait, rows: &mut [&mut Model]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let correlations: BTreeSet<&str> = rows.iter().map(|m| m.correlation_id.as_str()).collect();
    let mut holds: HashMap<String, (String, String, DateTime<Utc>)> = HashMap::new();
    let ids: Vec<&str> = correlations.into_iter().collect();
    for chunk in ids.chunks(1_000) {
        let sql = format!(
            "SELECT correlation_id, reason, placed_by, placed_at FROM audit_legal_holds WHERE correlation_id IN ({})",
            super::placeholders(backend, 1, chunk.len())
        );
        let values = chunk.iter().map(|c| Value::from(c.to_string()));
        for row in db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            holds.insert(
                row.try_get("", "correlation_id")?,
                (
                    row.try_get("", "reason")?,
                    row.try_get("", "placed_by")?,
                    row.try_get("", "placed_at")?,
                ),
            );
        }
    }
    if holds.is_empty() {
        return Ok(());
    }
    for row in rows.iter_mut() {
        if let Some((reason, placed_by, placed_at)) = holds.get(&row.correlation_id) {
            row.legal_hold = true;
            row.legal_hold_reason = Some(reason.clone());
            row.legal_hold_placed_by = Some(placed_by.clone());
            row.legal_hold_placed_at = Some(*placed_at);
        }
    }
    Ok(())
}

impl Store {
    /// Places a legal hold on a correlation and records `record` (the event saying so) in it, in
    /// one transaction: the correlation's events, the record and those written later are held.
    /// A correlation with no events is `NotFound`; one held already is a `Conflict`.
    pub async fn place_hold(
        &self,
        correlation_id: &str,
        reason: &str,
        placed_by: &str,
        record: NewEvent,
    ) -> Result<(LegalHold, Model), StoreError> {
        let placed_at = record.event_timestamp;
        let write = self.begin_lifecycle(correlation_id, &record).await?;
        let txn = &write.txn;
        let backend = txn.get_database_backend();
        let row = txn
            .query_one_raw(statement(
                backend,
                "SELECT count(*) AS n FROM audit_events WHERE correlation_id = $1",
                [correlation_id.into()],
            ))
            .await?;
        let stored = count_of(row.as_ref(), "n")?;
        if stored == 0 {
            return Err(StoreError::NotFound(format!(
                "correlation {correlation_id:?} has no events to hold"
            )));
        }
        if let Some(hold) = self.hold_of(txn, correlation_id).await? {
            return Err(StoreError::Conflict(format!(
                "correlation {correlation_id:?} is already under a legal hold, placed by {} at {}: {}; release it first to change it",
                hold.placed_by,
                hold.placed_at.to_rfc3339(),
                hold.reason
            )));
        }
        txn.execute_raw(statement(
            backend,
            "INSERT INTO audit_legal_holds (correlation_id, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4)",
            [correlation_id.into(), reason.into(), placed_by.into(), placed_at.into()],
        ))
        .await?;
        txn.execute_raw(statement(
            backend,
            "UPDATE audit_events SET legal_hold = TRUE, legal_hold_reason = $2, legal_hold_placed_by = $3, \
             legal_hold_placed_at = $4 WHERE correlation_id = $1 AND NOT legal_hold",
            [correlation_id.into(), reason.into(), placed_by.into(), placed_at.into()],
        ))
        .await?;
        let record = self.write_in(txn, vec![record]).await?.pop();
        let record = record.ok_or_else(|| StoreError::Internal("the hold's record was not written".into()))?;
        write.txn.commit().await?;
        let hold = LegalHold {
            correlation_id: correlation_id.to_string(),
            reason: reason.to_string(),
            placed_by: placed_by.to_string(),
            placed_at,
            events_held: stored + 1,
        };
        Ok((hold, record))
    }

    /// Releases the legal hold of a correlation and records `record` (the event saying so) in it,
    /// in one transaction. The events keep the hold's reason with `[Released: …]` appended. A
    /// correlation under no hold is `NotFound`.
    pub async fn release_hold(
        &self,
        correlation_id: &str,
        release_reason: &str,
        released_by: &str,
        record: NewEvent,
    ) -> Result<(ReleasedHold, Model), StoreError> {
        let released_at = record.event_timestamp;
        let write = self.begin_lifecycle(correlation_id, &record).await?;
        let txn = &write.txn;
        let backend = txn.get_database_backend();
        if self.hold_of(txn, correlation_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "correlation {correlation_id:?} is under no legal hold"
            )));
        }
        txn.execute_raw(statement(
            backend,
            "DELETE FROM audit_legal_holds WHERE correlation_id = $1",
            [correlation_id.into()],
        ))
        .await?;
        let released = txn
            .execute_raw(statement(
                backend,
                "UPDATE audit_events SET legal_hold = FALSE, \
                 legal_hold_reason = COALESCE(legal_hold_reason, '') || ' [Released: ' || $2 || ']' \
                 WHERE correlation_id = $1 AND legal_hold",
                [correlation_id.into(), release_reason.into()],
            ))
            .await?
            .rows_affected();
        let record = self.write_in(txn, vec![record]).await?.pop();
        let record = record.ok_or_else(|| StoreError::Internal("the release's record was not written".into()))?;
        write.txn.commit().await?;
        let released = ReleasedHold {
            correlation_id: correlation_id.to_string(),
            events_released: released,
            released_by: released_by.to_string(),
            released_at,
        };
        Ok((released, record))
    }

    /// Every legal hold in force, by correlation, with the number of events each holds.
    pub async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        let backend = self.backend();
        let rows = self
            .db()
            .query_all_raw(statement(
                backend,
                "SELECT h.correlation_id, h.reason, h.placed_by, h.placed_at, \
                 (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id) AS events_held \
                 FROM audit_legal_holds h ORDER BY h.correlation_id",
                [],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LegalHold {
                    correlation_id: row.try_get("", "correlation_id")?,
                    reason: row.try_get("", "reason")?,
                    placed_by: row.try_get("", "placed_by")?,
                    placed_at: row.try_get("", "placed_at")?,
                    events_held: u64::try_from(row.try_get::<i64>("", "events_held")?).unwrap_or(0),
                })
            })
            .collect::<Result<_, DbErr>>()
            .map_err(StoreError::from)
    }

    async fn hold_of(&self, txn: &impl ConnectionTrait, correlation_id: &str) -> Result<Option<LegalHold>, DbErr> {
        let row = txn
            .query_one_raw(statement(
                txn.get_database_backend(),
                "SELECT reason, placed_by, placed_at FROM audit_legal_holds WHERE correlation_id = $1",
                [correlation_id.into()],
            ))
            .await?;
        row.map(|row| {
            Ok(LegalHold {
                correlation_id: correlation_id.to_string(),
                reason: row.try_get("", "reason")?,
                placed_by: row.try_get("", "placed_by")?,
                placed_at: row.try_get("", "placed_at")?,
                events_held: 0,
            })
        })
        .transpose()
    }

    /// The write transaction of a hold's placing or release, with the correlation's chain lock
    /// taken (PostgreSQL; SQLite has one writer already) and the record's partition ready.
    async fn begin_lifecycle(&self, correlation_id: &str, record: &NewEvent) -> Result<super::WriteTxn<'_>, DbErr> {
        self.ensure_partition(record.event_date).await?;
        let write = self.begin_write().await?;
        if self.backend() == DatabaseBackend::Postgres {
            write
                .txn
                .execute_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    super::chain::lock_sql(1),
                    [correlation_id.into()],
                ))
                .await?;
        }
        Ok(write)
    }

    /// Starts a retention run judging expiry by `as_of`, or takes over the unfinished one (paused,
    /// or whose runner has not reported for `stale`); `Busy` when another runner is at work.
    pub async fn claim_retention_run(
        &self,
        runner: &str,
        as_of: NaiveDate,
        stale: chrono::Duration,
    ) -> Result<Claim, StoreError> {
        let backend = self.backend();
        let now = Utc::now();
        let unfinished = self
            .db()
            .query_one_raw(statement(
                backend,
                &format!("SELECT {RUN_COLUMNS} FROM audit_retention_runs WHERE status IN ('running', 'paused')"),
                [],
            ))
            .await?
            .map(|row| RetentionRun::from_row(&row))
            .transpose()?;
        if let Some(run) = unfinished {
            let takeable = run.status == RunStatus::Paused || run.heartbeat_at < now - stale;
            if !takeable {
                return Ok(Claim::Busy(run));
            }
            let taken = self
                .db()
                .execute_raw(statement(
                    backend,
                    "UPDATE audit_retention_runs SET status = 'running', runner = $2, heartbeat_at = $3 \
                     WHERE run_id = $1 AND status = $4 AND heartbeat_at = $5",
                    [
                        run.run_id.into(),
                        runner.into(),
                        now.into(),
                        run.status.as_str().into(),
                        run.heartbeat_at.into(),
                    ],
                ))
                .await?
                .rows_affected();
            if taken == 0 {
                return Ok(Claim::Busy(run));
            }
            return Ok(Claim::Resumed(RetentionRun {
                status: RunStatus::Running,
                runner: runner.to_string(),
                heartbeat_at: now,
                ..run
            }));
        }
        let run = RetentionRun {
            run_id: Uuid::now_v7(),
            as_of,
            dry_run: false,
            status: RunStatus::Running,
            runner: runner.to_string(),
            started_at: now,
            heartbeat_at: now,
            finished_at: None,
            counts: RunCounts::default(),
            error: None,
        };
        let inserted = self
            .db()
            .execute_raw(statement(
                backend,
                "INSERT INTO audit_retention_runs (run_id, as_of, dry_run, status, runner, started_at, heartbeat_at) \
                 VALUES ($1, $2, FALSE, 'running', $3, $4, $4)",
                [run.run_id.into(), as_of.into(), runner.into(), now.into()],
            ))
            .await;
        match inserted {
            Ok(_) => Ok(Claim::Started(run)),
            // Another runner inserted its run between the read and the insert.
            Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                Box::pin(self.claim_retention_run(runner, as_of, stale)).await
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Records a dry run: what a run would have done, for the record of runs.
    pub async fn record_dry_run(
        &self,
        runner: &str,
        as_of: NaiveDate,
        counts: &RunCounts,
    ) -> Result<RetentionRun, StoreError> {
        let now = Utc::now();
        let run = RetentionRun {
            run_id: Uuid::now_v7(),
            as_of,
            dry_run: true,
            status: RunStatus::Finished,
            runner: runner.to_string(),
            started_at: now,
            heartbeat_at: now,
            finished_at: Some(now),
            counts: counts.clone(),
            error: None,
        };
        self.db()
            .execute_raw(statement(
                self.backend(),
                "INSERT INTO audit_retention_runs (run_id, as_of, dry_run, status, runner, started_at, heartbeat_at, \
                 finished_at, rows_scanned, rows_deleted, kept_held, kept_parent, partitions_dropped) \
                 VALUES ($1, $2, TRUE, 'finished', $3, $4, $4, $4, $5, $6, $7, $8, $9)",
                [
                    run.run_id.into(),
                    as_of.into(),
                    runner.into(),
                    now.into(),
                    signed(counts.rows_scanned).into(),
                    signed(counts.rows_deleted).into(),
                    signed(counts.kept_held).into(),
                    signed(counts.kept_parent).into(),
                    counts.partitions_dropped.join(",").into(),
                ],
            ))
            .await?;
        Ok(run)
    }

    /// Records a run's progress (and that its runner is alive), or its end when `status` is not
    /// `Running`. Fails when another runner took the run over.
    pub async fn save_retention_run(
        &self,
        run: &RetentionRun,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let finished = matches!(status, RunStatus::Finished | RunStatus::Failed).then_some(now);
        let counts = &run.counts;
        let saved = self
            .db()
            .execute_raw(statement(
                self.backend(),
                "UPDATE audit_retention_runs SET status = $2, heartbeat_at = $3, finished_at = $4, rows_scanned = $5, \
                 rows_deleted = $6, kept_held = $7, kept_parent = $8, partitions_dropped = $9, error = $10 \
                 WHERE run_id = $1 AND runner = $11",
                [
                    run.run_id.into(),
                    status.as_str().into(),
                    now.into(),
                    finished.into(),
                    signed(counts.rows_scanned).into(),
                    signed(counts.rows_deleted).into(),
                    signed(counts.kept_held).into(),
                    signed(counts.kept_parent).into(),
                    counts.partitions_dropped.join(",").into(),
                    error.map(str::to_string).into(),
                    run.runner.clone().into(),
                ],
            ))
            .await?
            .rows_affected();
        if saved == 0 {
            return Err(StoreError::Conflict(format!(
                "retention run {} was taken over by another runner",
                run.run_id
            )));
        }
        Ok(())
    }

    /// The retention runs recorded, newest first.
    pub async fn retention_runs(&self, limit: u64) -> Result<Vec<RetentionRun>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(statement(
                self.backend(),
                &format!(
                    "SELECT {RUN_COLUMNS} FROM audit_retention_runs ORDER BY started_at DESC, run_id DESC LIMIT $1"
                ),
                [signed(limit).into()],
            ))
            .await?;
        rows.iter()
            .map(RetentionRun::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// The retention runs of these ids (those that exist, in no particular order).
    pub async fn retention_runs_by_id(&self, ids: &[Uuid]) -> Result<Vec<RetentionRun>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        let rows = self
            .db()
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM audit_retention_runs JOIN {} ON run_id = wanted.id",
                    super::wanted_ids(backend, ids.len(), "uuid")
                ),
                ids.iter().map(|id| (*id).into()),
            ))
            .await?;
        rows.iter()
            .map(RetentionRun::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// The next `limit` expired events after `after` (in the order of the day they expired),
    /// with whether each is held and whether it has children.
    pub async fn expired_after(
        &self,
        as_of: NaiveDate,
        after: Option<(NaiveDate, NaiveDate, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Expired>, StoreError> {
        let backend = self.backend();
        let key = expiry(backend, "e");
        let (from, values): (String, Vec<Value>) = match after {
            None => (String::new(), vec![as_of.into(), signed(limit).into()]),
            Some((expires, date, id)) => {
                let bound = match backend {
                    DatabaseBackend::Postgres => "$3".to_string(),
                    _ => "julianday($3)".to_string(),
                };
                (
                    format!(" AND ({key}, e.event_date, e.event_id) > ({bound}, $4, $5)"),
                    vec![
                        as_of.into(),
                        signed(limit).into(),
                        expires.into(),
                        date.into(),
                        id.into(),
                    ],
                )
            }
        };
        let expires_text = match backend {
            DatabaseBackend::Postgres => key.clone(),
            _ => format!("date({key})"),
        };
        let sql = format!(
            "SELECT e.event_id, e.event_date, {expires_text} AS expires, {} AS held, {} AS has_children \
             FROM audit_events e WHERE {}{from} ORDER BY {key}, e.event_date, e.event_id LIMIT $2",
            held("e"),
            has_children("e"),
            expired(backend, "e"),
        );
        let rows = self.db().query_all_raw(statement(backend, &sql, values)).await?;
        rows.iter()
            .map(|row| {
                Ok(Expired {
                    event_id: row.try_get("", "event_id")?,
                    event_date: row.try_get("", "event_date")?,
                    expires: row.try_get("", "expires")?,
                    held: row.try_get("", "held")?,
                    has_children: row.try_get("", "has_children")?,
                })
            })
            .collect::<Result<_, DbErr>>()
            .map_err(StoreError::from)
    }

    /// Deletes, for retention run `run`, those of `keys` that are expired by its date, held by
    /// nobody and parents of no stored event, in one transaction. Returns what it deleted; the
    /// database records each in `audit_purged`.
    pub async fn purge(&self, run: &RetentionRun, keys: &[(Uuid, NaiveDate)]) -> Result<Vec<Deleted>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let write = self.begin_write().await?;
        let txn = &write.txn;
        let backend = txn.get_database_backend();
        txn.execute_raw(statement(
            backend,
            "INSERT INTO audit_purge_grant (run_id) VALUES ($1)",
            [run.run_id.into()],
        ))
        .await?;
        let mut deleted = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1_000) {
            let mut values: Vec<Value> = vec![run.as_of.into()];
            for (id, date) in chunk {
                values.push((*id).into());
                values.push((*date).into());
            }
            let sql = format!(
                "DELETE FROM audit_events WHERE (event_id, event_date) IN (VALUES {}) AND {} AND NOT {} AND NOT {} \
                 RETURNING event_id, event_date, parent_event_id, parent_event_date",
                key_values(backend, 2, chunk.len()),
                expired(backend, "audit_events"),
                held("audit_events"),
                has_children("audit_events"),
            );
            for row in txn.query_all_raw(statement(backend, &sql, values)).await? {
                let parent: Option<Uuid> = row.try_get("", "parent_event_id")?;
                let parent_date: Option<NaiveDate> = row.try_get("", "parent_event_date")?;
                deleted.push(Deleted {
                    event_id: row.try_get("", "event_id")?,
                    event_date: row.try_get("", "event_date")?,
                    parent: parent.map(|id| (id, parent_date)),
                });
            }
        }
        txn.execute_raw(statement(backend, "DELETE FROM audit_purge_grant", []))
            .await?;
        write.txn.commit().await?;
        Ok(deleted)
    }

    /// Every stored `(event_id, event_date)` of these ids (legacy data may hold an id on several
    /// days).
    pub async fn keys_of(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, NaiveDate)>, StoreError> {
        let backend = self.backend();
        let mut keys = Vec::new();
        for chunk in ids.chunks(1_000) {
            let sql = format!(
                "SELECT e.event_id, e.event_date FROM {} JOIN audit_events e ON e.event_id = wanted.id",
                super::wanted_ids(backend, chunk.len(), "uuid")
            );
            let values = chunk.iter().map(|id| Value::from(*id));
            for row in self
                .db()
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                keys.push((row.try_get("", "event_id")?, row.try_get("", "event_date")?));
            }
        }
        Ok(keys)
    }

    /// How many expired events are held, and how many unheld ones remain (kept for a child).
    pub async fn expired_kept(&self, as_of: NaiveDate) -> Result<(u64, u64), StoreError> {
        let backend = self.backend();
        let sql = format!(
            "SELECT COALESCE(SUM(CASE WHEN {h} THEN 1 ELSE 0 END), 0) AS held, \
             COALESCE(SUM(CASE WHEN {h} THEN 0 ELSE 1 END), 0) AS unheld FROM audit_events e WHERE {}",
            expired(backend, "e"),
            h = held("e"),
        );
        let row = self
            .db()
            .query_one_raw(statement(backend, &sql, [as_of.into()]))
            .await?;
        Ok((count_of(row.as_ref(), "held")?, count_of(row.as_ref(), "unheld")?))
    }

    /// For a dry run: the expired events, the held ones among them, and the unheld ones that
    /// must stay because a descendant stays (their children are not all purgeable).
    pub async fn expired_census(&self, as_of: NaiveDate) -> Result<(u64, u64, u64), StoreError> {
        let backend = self.backend();
        let (held_count, unheld) = self.expired_kept(as_of).await?;
        let purgeable = |alias: &str| format!("({} AND NOT {})", expired(backend, alias), held(alias));
        let sql = format!(
            "WITH RECURSIVE blocked(event_id, event_date, parent_event_id, parent_event_date) AS ( \
                SELECT e.event_id, e.event_date, e.parent_event_id, e.parent_event_date FROM audit_events e \
                WHERE {pe} AND EXISTS (SELECT 1 FROM audit_events k WHERE {ke} AND NOT {pk}) \
                UNION \
                SELECT p.event_id, p.event_date, p.parent_event_id, p.parent_event_date FROM blocked b \
                JOIN audit_events p ON {bp} \
                WHERE {pp}) \
             SELECT count(*) AS n FROM blocked",
            pe = purgeable("e"),
            pk = purgeable("k"),
            pp = purgeable("p"),
            ke = child_of("k", "e"),
            bp = child_of("b", "p"),
        );
        let row = self
            .db()
            .query_one_raw(statement(backend, &sql, [as_of.into()]))
            .await?;
        let blocked = count_of(row.as_ref(), "n")?;
        Ok((held_count + unheld, held_count, blocked))
    }

    /// The monthly partitions (PostgreSQL) that hold rows and whose every row is purgeable by
    /// `as_of` (expired, under no hold), with their row counts, newest first.
    pub async fn purgeable_partitions(&self, as_of: NaiveDate) -> Result<Vec<(String, NaiveDate, u64)>, StoreError> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for (name, month) in self.partitions().await? {
            let Some(end) = month.checked_add_months(chrono::Months::new(1)) else {
                continue;
            };
            // A row of this month cannot be expired before the month has ended.
            if end >= as_of {
                continue;
            }
            let sql = format!(
                "SELECT count(*) AS n, COALESCE(SUM(CASE WHEN {} AND NOT {} THEN 0 ELSE 1 END), 0) AS kept FROM {} e",
                expired(DatabaseBackend::Postgres, "e"),
                held("e"),
                quote_ident(&name)
            );
            let row = self
                .db()
                .query_one_raw(statement(DatabaseBackend::Postgres, &sql, [as_of.into()]))
                .await?;
            let rows = count_of(row.as_ref(), "n")?;
            if rows > 0 && count_of(row.as_ref(), "kept")? == 0 {
                found.push((name, month, rows));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.1));
        Ok(found)
    }

    /// Every monthly partition of `audit_events` (PostgreSQL), by name and first day.
    async fn partitions(&self) -> Result<Vec<(String, NaiveDate)>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1",
            ))
            .await?;
        let mut partitions = Vec::new();
        for row in rows {
            let name: String = row.try_get("", "name")?;
            let month = name
                .strip_prefix("audit_events_")
                .and_then(|ym| NaiveDate::parse_from_str(&format!("{ym}_01"), "%Y_%m_%d").ok());
            if let Some(month) = month {
                partitions.push((name, month));
            }
        }
        Ok(partitions)
    }

    /// Drops a whole monthly partition for retention run `run` (PostgreSQL) when, with the table
    /// locked, every row of it is still purgeable and no event outside it names one of its rows
    /// as parent. Its rows are recorded in `audit_purged` first. Returns the rows dropped, or
    /// `None` when the partition must be purged row by row instead.
    pub async fn drop_partition(
        &self,
        run: &RetentionRun,
        name: &str,
        month: NaiveDate,
    ) -> Result<Option<u64>, StoreError> {
        let Some(end) = month.checked_add_months(chrono::Months::new(1)) else {
            return Ok(None);
        };
        let write = self.begin_write().await?;
        let txn = &write.txn;
        let pg = DatabaseBackend::Postgres;
        let table = quote_ident(name);
        // Detaching locks the whole table anyway; locking first makes the checks final.
        txn.execute_raw(Statement::from_string(
            pg,
            "LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE",
        ))
        .await?;
        let sql = format!(
            "SELECT count(*) AS n, COALESCE(SUM(CASE WHEN {} AND NOT {} THEN 0 ELSE 1 END), 0) AS kept, \
             COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM audit_events c WHERE {} \
                 AND (c.event_date < $2 OR c.event_date >= $3)) THEN 1 ELSE 0 END), 0) AS referenced \
             FROM {table} e",
            expired(pg, "e"),
            held("e"),
            child_of("c", "e"),
        );
        let row = txn
            .query_one_raw(statement(pg, &sql, [run.as_of.into(), month.into(), end.into()]))
            .await?;
        let rows = count_of(row.as_ref(), "n")?;
        if rows == 0 || count_of(row.as_ref(), "kept")? > 0 || count_of(row.as_ref(), "referenced")? > 0 {
            return Ok(None);
        }
        txn.execute_raw(statement(
            pg,
            &format!(
                "INSERT INTO audit_purged (event_id, event_date, correlation_id, parent_event_id, chain_seq, event_hash, \
                 retention_days, run_id) SELECT event_id, event_date, correlation_id, parent_event_id, chain_seq, \
                 event_hash, retention_days, $1 FROM {table}"
            ),
            [run.run_id.into()],
        ))
        .await?;
        txn.execute_raw(Statement::from_string(
            pg,
            format!("ALTER TABLE audit_events DETACH PARTITION {table}"),
        ))
        .await?;
        txn.execute_raw(Statement::from_string(pg, format!("DROP TABLE {table}")))
            .await?;
        write.txn.commit().await?;
        self.forget_month(month);
        Ok(Some(rows))
    }

    /// The events of these correlations that retention runs deleted, by correlation.
    pub async fn purged_of_correlations(
        &self,
        correlations: &[String],
    ) -> Result<HashMap<String, Vec<Purged>>, StoreError> {
        Ok(purged_in(self.db(), correlations).await?)
    }

    /// The recorded purges of these events, by id.
    pub async fn purged_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<Purged>>, StoreError> {
        let backend = self.backend();
        let mut found: HashMap<Uuid, Vec<Purged>> = HashMap::new();
        for chunk in ids.chunks(1_000) {
            let sql = purged_select(
                &super::wanted_ids(backend, chunk.len(), "uuid"),
                "p.event_id = wanted.id",
            );
            let values = chunk.iter().map(|id| Value::from(*id));
            for row in self
                .db()
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                let purged = Purged::from_row(&row)?;
                found.entry(purged.event_id).or_default().push(purged);
            }
        }
        Ok(found)
    }
}

/// The events of these correlations that retention runs deleted, by correlation, in chain order.
pub(crate) async fn purged_in(
    db: &impl ConnectionTrait,
    correlations: &[String],
) -> Result<HashMap<String, Vec<Purged>>, DbErr> {
    let backend = db.get_database_backend();
    let mut found: HashMap<String, Vec<Purged>> = HashMap::new();
    for chunk in correlations.chunks(1_000) {
        let sql = format!(
            "{} ORDER BY p.correlation_id, p.chain_seq",
            purged_select(
                &super::wanted_ids(backend, chunk.len(), "text"),
                "p.correlation_id = wanted.id"
            )
        );
        let values = chunk.iter().map(|c| Value::from(c.clone()));
        for row in db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let purged = Purged::from_row(&row)?;
            found.entry(purged.correlation_id.clone()).or_default().push(purged);
        }
    }
    Ok(found)
}

/// The purge records (the columns [`Purged`] reads) of the `wanted` ids matched by `on`.
fn purged_select(wanted: &str, on: &str) -> String {
    format!(
        "SELECT p.event_id, p.event_date, p.correlation_id, p.chain_seq, p.event_hash, p.retention_days, p.run_id, \
         r.as_of FROM {wanted} JOIN audit_purged p ON {on} JOIN audit_retention_runs r ON r.run_id = p.run_id"
    )
}

/// An SQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
