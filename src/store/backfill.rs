//! The parent-date backfill (BR-STORAGE-037): completes legacy links in short keyset batches.
//!
//! A legacy row names a parent (`parent_event_id`) without its date. Each batch takes the next
//! `size` legacy rows in `(event_id, event_date)` order through the partial index
//! `idx_audit_events_legacy_links`, sets their parent date from the stored parent in one UPDATE,
//! journals the rows it filled, and commits. Short transactions keep locks brief, so live writes
//! go on; a killed run loses at most one uncommitted batch, and a new run simply continues, since
//! filled rows are no longer legacy.
//!
//! A parent whose date is more than a day after the child's cannot be linked
//! (`chk_child_not_before_parent_day`); such rows are reported as skewed and stay legacy, as do
//! orphans, whose parent is not in the store at all.

use chrono::{Days, NaiveDate};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError};

/// A position in the `(event_id, event_date)` order of legacy rows.
pub type LegacyKey = (Uuid, NaiveDate);

/// What one batch found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillBatch {
    /// Legacy rows examined.
    pub scanned: u64,
    /// Rows whose parent date was set (or, in a dry run, would be).
    pub filled: u64,
    /// Rows whose parent is not in the store.
    pub orphans: Vec<Uuid>,
    /// Rows whose parent exists but is dated more than a day after them.
    pub skewed: Vec<Uuid>,
    /// The last key examined; the next batch starts after it. `None` when nothing was left.
    pub last: Option<LegacyKey>,
}

/// How the parent-link foreign key stands after a backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKeyCheck {
    /// Whether the database holds the constraint as validated for every row.
    pub valid: bool,
    /// Rows naming a parent that the database found missing (always 0 when `valid`).
    pub violations: u64,
    /// Whether this check ran `VALIDATE CONSTRAINT` (a constraint added as NOT VALID).
    pub validated_now: bool,
}

const LEGACY: &str = "parent_event_id IS NOT NULL AND parent_event_date IS NULL";

impl Store {
    /// How many legacy rows (a parent without its date) the store holds.
    pub async fn count_legacy_links(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) AS n FROM audit_events WHERE {LEGACY}");
        let row = self
            .db()
            .query_one_raw(Statement::from_string(self.backend(), sql))
            .await?;
        let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// Processes the next batch of legacy rows after `after`: fills what can be filled (unless
    /// `dry_run`), journals it under `run`, and classifies the rest. One short transaction.
    #[tracing::instrument(skip(self))]
    pub async fn backfill_batch(
        &self,
        run: Uuid,
        after: Option<LegacyKey>,
        size: u64,
        dry_run: bool,
    ) -> Result<BackfillBatch, StoreError> {
        let backend = self.backend();
        let (start, values): (&str, Vec<Value>) = match after {
            Some((id, date)) => ("AND (event_id, event_date) > ($1, $2)", vec![id.into(), date.into()]),
            None => ("", vec![]),
        };
        let write = self.begin_write().await?;
        let txn = &write.txn;
        // The batch: the next `size` legacy keys and the date of each one's parent, if stored.
        let sql = format!(
            "SELECT c.event_id, c.event_date, \
                    (SELECT MAX(p.event_date) FROM audit_events p WHERE p.event_id = c.parent_event_id) AS parent_date \
             FROM audit_events c WHERE {LEGACY} {start} \
             ORDER BY c.event_id, c.event_date LIMIT {size}"
        );
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let mut batch = BackfillBatch {
            scanned: rows.len() as u64,
            ..BackfillBatch::default()
        };
        let mut fills: Vec<(Uuid, NaiveDate, NaiveDate)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get("", "event_id")?;
            let date: NaiveDate = row.try_get("", "event_date")?;
            let parent: Option<NaiveDate> = row.try_get("", "parent_date")?;
            batch.last = Some((id, date));
            match parent {
                None => batch.orphans.push(id),
                Some(parent) if parent > date + Days::new(1) => batch.skewed.push(id),
                Some(parent) => fills.push((id, date, parent)),
            }
        }
        if dry_run || fills.is_empty() {
            batch.filled = if dry_run { fills.len() as u64 } else { 0 };
            return Ok(batch);
        }
        let filled = match backend {
            DatabaseBackend::Postgres => fill_postgres(txn, run, &fills).await?,
            _ => fill_each(txn, run, &fills).await?,
        };
        batch.filled = filled;
        write.txn.commit().await?;
        Ok(batch)
    }

    /// Undoes journaled fills, up to `size` rows per call (all runs, or one), in one short
    /// transaction. Returns how many rows went back to legacy; 0 when the journal is empty.
    #[tracing::instrument(skip(self))]
    pub async fn rollback_backfill_batch(&self, run: Option<Uuid>, size: u64) -> Result<u64, StoreError> {
        let backend = self.backend();
        let (scope, values): (&str, Vec<Value>) = match run {
            Some(run) => ("WHERE run_id = $1", vec![run.into()]),
            None => ("", vec![]),
        };
        let next = format!(
            "SELECT run_id, event_id, event_date FROM audit_backfill_journal {scope} \
             ORDER BY run_id, event_id, event_date LIMIT {size}"
        );
        let write = self.begin_write().await?;
        let txn = &write.txn;
        let reset = format!(
            "UPDATE audit_events SET parent_event_date = NULL \
             WHERE (event_id, event_date) IN (SELECT event_id, event_date FROM ({next}) AS j)"
        );
        let reset = txn
            .execute_raw(Statement::from_sql_and_values(backend, reset, values.clone()))
            .await?;
        let forget = format!(
            "DELETE FROM audit_backfill_journal \
             WHERE (run_id, event_id, event_date) IN (SELECT run_id, event_id, event_date FROM ({next}) AS j)"
        );
        let forgotten = txn
            .execute_raw(Statement::from_sql_and_values(backend, forget, values))
            .await?;
        write.txn.commit().await?;
        tracing::debug!(
            reset = reset.rows_affected(),
            forgotten = forgotten.rows_affected(),
            "rolled back"
        );
        Ok(forgotten.rows_affected())
    }

    /// Checks the parent-link foreign key, validating it first where it was added as NOT VALID
    /// (PostgreSQL); on SQLite, runs `PRAGMA foreign_key_check`.
    pub async fn check_parent_foreign_key(&self) -> Result<ForeignKeyCheck, StoreError> {
        let db = self.db();
        match self.backend() {
            DatabaseBackend::Postgres => {
                let query = "SELECT convalidated FROM pg_constraint \
                             WHERE conname = 'fk_audit_events_parent' AND conrelid = 'audit_events'::regclass";
                let validated = |row: Option<sea_orm::QueryResult>| -> Result<bool, DbErr> {
                    row.map(|r| r.try_get::<bool>("", "convalidated"))
                        .transpose()
                        .map(|v| v.unwrap_or(false))
                };
                let before = validated(
                    db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, query))
                        .await?,
                )?;
                let mut validated_now = false;
                if !before {
                    db.execute_unprepared("ALTER TABLE audit_events VALIDATE CONSTRAINT fk_audit_events_parent")
                        .await?;
                    validated_now = true;
                }
                let after = validated(
                    db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, query))
                        .await?,
                )?;
                Ok(ForeignKeyCheck {
                    valid: after,
                    violations: 0,
                    validated_now,
                })
            }
            backend => {
                let rows = db
                    .query_all_raw(Statement::from_string(
                        backend,
                        "PRAGMA foreign_key_check(audit_events)",
                    ))
                    .await?;
                Ok(ForeignKeyCheck {
                    valid: rows.is_empty(),
                    violations: rows.len() as u64,
                    validated_now: false,
                })
            }
        }
    }
}

/// Sets the parent dates of a batch in one statement joined with arrays of the keys (each key
/// names its partition, so PostgreSQL prunes to one partition per row), and journals them.
async fn fill_postgres(
    txn: &sea_orm::DatabaseTransaction,
    run: Uuid,
    fills: &[(Uuid, NaiveDate, NaiveDate)],
) -> Result<u64, DbErr> {
    let ids: Vec<Uuid> = fills.iter().map(|f| f.0).collect();
    let dates: Vec<NaiveDate> = fills.iter().map(|f| f.1).collect();
    let parents: Vec<NaiveDate> = fills.iter().map(|f| f.2).collect();
    let update = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "UPDATE audit_events AS c SET parent_event_date = v.parent_date \
         FROM unnest($1::uuid[], $2::date[], $3::date[]) AS v(event_id, event_date, parent_date) \
         WHERE c.event_id = v.event_id AND c.event_date = v.event_date AND c.parent_event_date IS NULL \
         RETURNING c.event_id, c.event_date",
        [ids.into(), dates.into(), parents.into()],
    );
    let filled = txn.query_all_raw(update).await?;
    let ids: Vec<Uuid> = filled
        .iter()
        .map(|r| r.try_get("", "event_id"))
        .collect::<Result<_, _>>()?;
    let dates: Vec<NaiveDate> = filled
        .iter()
        .map(|r| r.try_get("", "event_date"))
        .collect::<Result<_, _>>()?;
    let journal = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "INSERT INTO audit_backfill_journal (run_id, event_id, event_date) \
         SELECT $1, k.event_id, k.event_date FROM unnest($2::uuid[], $3::date[]) AS k(event_id, event_date)",
        [run.into(), ids.into(), dates.into()],
    );
    txn.execute_raw(journal).await?;
    Ok(filled.len() as u64)
}

/// Sets the parent dates of a batch row by row (SQLite runs in-process, so statements are cheap)
/// and journals them.
async fn fill_each(
    txn: &sea_orm::DatabaseTransaction,
    run: Uuid,
    fills: &[(Uuid, NaiveDate, NaiveDate)],
) -> Result<u64, DbErr> {
    let backend = txn.get_database_backend();
    let mut filled = 0;
    for (id, date, parent) in fills {
        let update = Statement::from_sql_and_values(
            backend,
            "UPDATE audit_events SET parent_event_date = $1 \
             WHERE event_id = $2 AND event_date = $3 AND parent_event_date IS NULL",
            [(*parent).into(), (*id).into(), (*date).into()],
        );
        if txn.execute_raw(update).await?.rows_affected() == 1 {
            let journal = Statement::from_sql_and_values(
                backend,
                "INSERT INTO audit_backfill_journal (run_id, event_id, event_date) VALUES ($1, $2, $3)",
                [run.into(), (*id).into(), (*date).into()],
            );
            txn.execute_raw(journal).await?;
            filled += 1;
        }
    }
    Ok(filled)
}
