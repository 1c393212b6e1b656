//! Writing events.

use std::collections::{BTreeSet, HashMap};

use chrono::{Days, NaiveDate};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, SqlErr, Statement,
};
use tracing::Instrument;
use uuid::Uuid;

use super::{Store, StoreError, save_heads};
use crate::domain::{FieldError, NewEvent};
use crate::entity::audit_event::{Column, Entity, Model};

/// The row a new event becomes, given its parent's date.
pub(crate) fn to_model(new: NewEvent, parent_event_date: Option<NaiveDate>) -> Model {
    Model {
        event_id: new.event_id,
        event_version: new.event_version,
        event_timestamp: new.event_timestamp,
        event_date: new.event_date,
        event_type: new.event_type,
        event_category: new.event_category,
        event_action: new.event_action,
        event_outcome: new.event_outcome,
        actor_type: new.actor_type,
        actor_id: new.actor_id,
        actor_ip: new.actor_ip,
        resource_type: new.resource_type,
        resource_id: new.resource_id,
        resource_name: new.resource_name,
        correlation_id: new.correlation_id,
        parent_event_id: new.parent_event_id,
        parent_event_date,
        trace_id: new.trace_id,
        span_id: new.span_id,
        namespace: new.namespace,
        cluster_id: new.cluster_id,
        event_data: new.event_data,
        event_metadata: new.event_metadata,
        severity: new.severity,
        duration_ms: new.duration_ms,
        error_code: new.error_code,
        error_message: new.error_message,
        retention_days: new.retention_days,
        is_sensitive: new.is_sensitive,
        event_hash: None,
        previous_event_hash: None,
        hash_algorithm: "sha256-unkeyed".into(),
        legal_hold: false,
        legal_hold_reason: None,
        legal_hold_placed_by: None,
        legal_hold_placed_at: None,
        submitted_by: new.submitted_by,
        chain_seq: None,
        hash_key_id: None,
        chain_note: None,
        event_data_text: None,
    }
}

/// Inserts `rows` inside the write transaction `txn` with multi-row INSERTs.
pub(super) async fn insert_rows(txn: &DatabaseTransaction, rows: &[Model]) -> Result<(), StoreError> {
    for chunk in rows.chunks(rows_per_insert(txn.get_database_backend())) {
        Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
            .exec_without_returning(txn)
            .await
            .map_err(write_error)?;
    }
    Ok(())
}

/// Whether a retry carries the same content as the stored event. Columns the server derives or
/// manages (dates, hashes, legal hold) are not the client's content; the timestamp counts only when
/// the client supplied it.
fn same_content(new: &NewEvent, stored: &Model) -> bool {
    let mut candidate = to_model(new.clone(), stored.parent_event_date);
    if !new.client_supplied_timestamp {
        candidate.event_timestamp = stored.event_timestamp;
        candidate.event_date = stored.event_date;
    }
    candidate.event_hash.clone_from(&stored.event_hash);
    candidate.previous_event_hash.clone_from(&stored.previous_event_hash);
    candidate.hash_algorithm.clone_from(&stored.hash_algorithm);
    candidate.legal_hold = stored.legal_hold;
    candidate.legal_hold_reason.clone_from(&stored.legal_hold_reason);
    candidate.legal_hold_placed_by.clone_from(&stored.legal_hold_placed_by);
    candidate.legal_hold_placed_at = stored.legal_hold_placed_at;
    // Who sends a retry is not part of the event: the first submission's principal stays.
    candidate.submitted_by.clone_from(&stored.submitted_by);
    candidate.chain_seq = stored.chain_seq;
    candidate.hash_key_id.clone_from(&stored.hash_key_id);
    candidate.chain_note.clone_from(&stored.chain_note);
    &candidate == stored
}

/// Rows per multi-row INSERT: the bind-parameter limit (65,535 on PostgreSQL, 32,766 on SQLite)
/// divided by the 40 columns, with room to spare.
fn rows_per_insert(backend: DatabaseBackend) -> usize {
    match backend {
        DatabaseBackend::Postgres => 1_500,
        _ => 800,
    }
}

fn bad(index: usize, field: &'static str, reason: &'static str, message: String) -> StoreError {
    StoreError::Invalid(FieldError::new(field, reason, message).at(index))
}

/// A failed INSERT as the client should see it.
pub(super) fn write_error(err: DbErr) -> StoreError {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => StoreError::UnknownParent(FieldError::new(
            "parent_event_id",
            "unknown_parent",
            "a parent event disappeared while the events were written",
        )),
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            StoreError::Conflict("an event of the batch was written concurrently with the same id".into())
        }
        _ if is_constraint_violation(&err) => StoreError::Constraint(err.to_string()),
        _ => err.into(),
    }
}

/// A CHECK, NOT NULL or trigger refusal (PostgreSQL SQLSTATE class 23, SQLite's constraint codes).
fn is_constraint_violation(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::error::ErrorKind;
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else {
        return false;
    };
    match &**e {
        sea_orm::sqlx::Error::Database(db) => {
            matches!(db.kind(), ErrorKind::CheckViolation | ErrorKind::NotNullViolation)
                || db
                    .code()
                    .is_some_and(|code| code.starts_with("23") || code == "19" || code == "1811")
        }
        _ => false,
    }
}

impl Store {
    /// Writes validated events atomically, all or none, and returns them as stored, in order.
    ///
    /// Parents are resolved in one query; a parent may also be an earlier event of the batch. A
    /// client-supplied event id that exists already makes that item idempotent (same content:
    /// the stored event is returned) or a conflict (other content). Errors name the index of the
    /// offending event.
    ///
    /// On PostgreSQL a batch whose ids the server chose is written in one autocommitted
    /// statement (`Store::write_batch_lockless`), in a task of its own: dropping this future (a
    /// cancelled request) cannot stop that statement from committing, so it always runs to its
    /// end and what it moved is remembered. It falls back to the transactional path
    /// (`Store::write_locked`) when an event is at fault, to name it. Other batches, and every
    /// batch on SQLite, are one transaction.
    #[tracing::instrument(skip_all, fields(events = batch.len()))]
    pub async fn create_events(&self, batch: Vec<NewEvent>) -> Result<Vec<Model>, StoreError> {
        self.ensure_partitions(&batch).await?;
        if self.backend() != DatabaseBackend::Postgres || batch.iter().any(|e| e.client_supplied_id) {
            return self.write_locked(batch).await;
        }
        let store = self.clone();
        let (batch, written) = tokio::spawn(
            async move {
                let written = store.write_batch_lockless(&batch).await;
                (batch, written)
            }
            .in_current_span(),
        )
        .await
        .map_err(|e| StoreError::Internal(format!("a batch write stopped: {e}")))?;
        match written? {
            Some(written) => Ok(written),
            None => self.write_locked(batch).await,
        }
    }

    /// Writes validated events, whose partitions exist, in one transaction that holds their
    /// chains' locks, all or none: the path that names the event at fault, and the one for
    /// client-chosen ids, which it makes idempotent. Rows go in with multi-row INSERTs.
    pub(super) async fn write_locked(&self, batch: Vec<NewEvent>) -> Result<Vec<Model>, StoreError> {
        let write = self.begin_write().await?;
        let results = self.write_in(&write.txn, batch).await?;
        write.txn.commit().await?;
        Ok(results)
    }

    /// Makes sure the partitions of the events' months exist.
    pub(super) async fn ensure_partitions(&self, batch: &[NewEvent]) -> Result<(), StoreError> {
        let months: BTreeSet<NaiveDate> = batch.iter().map(|e| e.event_date).collect();
        for day in months {
            self.ensure_partition(day).await?;
        }
        Ok(())
    }

    /// The body of [`Store::write_locked`], inside the write transaction `txn` (whose partitions
    /// exist): for operations that record an event together with other changes.
    pub(crate) async fn write_in(
        &self,
        txn: &DatabaseTransaction,
        batch: Vec<NewEvent>,
    ) -> Result<Vec<Model>, StoreError> {
        // Client-chosen ids: serialise writers of the same ids, then find those stored already.
        let mut first_use: HashMap<Uuid, usize> = HashMap::new();
        for (index, event) in batch.iter().enumerate().filter(|(_, e)| e.client_supplied_id) {
            if let Some(earlier) = first_use.insert(event.event_id, index) {
                return Err(bad(
                    index,
                    "event_id",
                    "duplicate_id",
                    format!("repeats the event_id of event {earlier} of the batch"),
                ));
            }
        }
        let mut stored: HashMap<Uuid, Model> = HashMap::new();
        if !first_use.is_empty() {
            let mut ids: Vec<Uuid> = first_use.keys().copied().collect();
            ids.sort_unstable();
            lock_event_ids(txn, &ids).await?;
            for model in Entity::find().filter(Column::EventId.is_in(ids)).all(txn).await? {
                stored.insert(model.event_id, model);
            }
        }

        // Parents: stored ones in one query, earlier events of the batch from the batch itself.
        let position: HashMap<Uuid, usize> = batch.iter().enumerate().map(|(i, e)| (e.event_id, i)).collect();
        let outside: Vec<Uuid> = batch
            .iter()
            .filter_map(|e| e.parent_event_id)
            .filter(|p| !position.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let known = parent_dates(txn, outside).await?;

        let mut results = Vec::with_capacity(batch.len());
        // Positions in `results` of the events this batch writes (the others are stored already).
        let mut fresh = Vec::with_capacity(batch.len());
        for (index, new) in batch.into_iter().enumerate() {
            if let Some(existing) = stored.get(&new.event_id).filter(|_| new.client_supplied_id) {
                if !same_content(&new, existing) {
                    return Err(StoreError::Conflict(format!(
                        "event {index} of the batch: event {} already exists with different content; a retry must resend the same event",
                        existing.event_id
                    )));
                }
                results.push(existing.clone());
                continue;
            }
            let parent_date = match new.parent_event_id {
                None => None,
                Some(parent) => Some(match position.get(&parent) {
                    Some(&at) if at < index => results
                        .get(at)
                        .map(|m: &Model| m.event_date)
                        .ok_or_else(|| StoreError::Internal(format!("batch position {at} missing")))?,
                    Some(&at) => {
                        return Err(bad(
                            index,
                            "parent_event_id",
                            "parent_later_in_batch",
                            format!(
                                "refers to event {at} of the batch, which comes later; list parents before their children"
                            ),
                        ));
                    }
                    None => *known.get(&parent).ok_or_else(|| {
                        StoreError::UnknownParent(
                            FieldError::new(
                                "parent_event_id",
                                "unknown_parent",
                                format!("parent event {parent} does not exist"),
                            )
                            .at(index),
                        )
                    })?,
                }),
            };
            if let Some(parent_date) = parent_date
                && new.event_date < parent_date - Days::new(1)
            {
                return Err(bad(
                    index,
                    "event_timestamp",
                    "before_parent",
                    format!(
                        "is more than a day before its parent's date ({parent_date}); a child cannot predate its cause by days"
                    ),
                ));
            }
            let model = to_model(new, parent_date);
            fresh.push(results.len());
            results.push(model);
        }

        let mut linked: Vec<&mut Model> = results
            .iter_mut()
            .enumerate()
            .filter(|(at, _)| fresh.binary_search(at).is_ok())
            .map(|(_, model)| model)
            .collect();
        let heads = self.link_chains(txn, &mut linked).await?;
        // The chain locks are held: no hold is placed or released on these correlations meanwhile.
        super::lifecycle::apply_holds(txn, &mut linked).await?;
        let rows: Vec<Model> = linked.into_iter().map(|m| m.clone()).collect();
        insert_rows(txn, &rows).await?;
        save_heads(txn, &heads).await?;
        tracing::debug!(written = rows.len(), "events written");
        Ok(results)
    }
}

/// The date of the newest stored event with the id `id` (an SQL expression): a parent's date, the
/// newest where legacy data holds the id on several days. A probe of each partition's primary key.
pub(super) fn newest_date_of(id: &str) -> String {
    format!("SELECT event_date FROM audit_events WHERE event_id = {id} ORDER BY event_date DESC LIMIT 1")
}

/// Serialises writers of the same client-chosen ids (PostgreSQL), locking in sorted order so that
/// overlapping batches cannot deadlock. The primary key includes the date, so the database alone
/// would accept the same id on two different days.
async fn lock_event_ids(txn: &DatabaseTransaction, ids: &[Uuid]) -> Result<(), DbErr> {
    if txn.get_database_backend() != DatabaseBackend::Postgres || ids.is_empty() {
        return Ok(());
    }
    let stmt = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        super::advisory_locks_sql(ids.len(), 0),
        ids.iter().map(|id| id.to_string().into()),
    );
    txn.execute_raw(stmt).await?;
    Ok(())
}

/// The dates of these parent events, in one statement; the newest one where legacy data holds an
/// id on several days.
///
/// Each id is looked up on its own (a correlated `ORDER BY event_date DESC LIMIT 1` on the primary
/// key), never as one `event_id IN (…)`: the parent's partition is unknown, and with an IN list
/// PostgreSQL estimates each partition's share from its statistics, which the partition taking
/// this month's writes rarely has up to date. Seen in `bench serve`: a 100-parent lookup read all
/// 615,837 rows of the current month sequentially (114 ms) instead of probing its index.
pub(super) async fn parent_dates(
    txn: &impl ConnectionTrait,
    parents: Vec<Uuid>,
) -> Result<HashMap<Uuid, NaiveDate>, DbErr> {
    let backend = txn.get_database_backend();
    let mut dates: HashMap<Uuid, NaiveDate> = HashMap::new();
    for chunk in parents.chunks(1_000) {
        let wanted: Vec<String> = (0..chunk.len())
            .map(|i| match backend {
                DatabaseBackend::Postgres => format!("({i}, ${})", i + 1),
                _ => format!("({i}, ?)"),
            })
            .collect();
        let sql = format!(
            "WITH wanted(n, id) AS (VALUES {}) SELECT wanted.n AS n, ({}) AS event_date FROM wanted",
            wanted.join(", "),
            newest_date_of("wanted.id")
        );
        let stmt = Statement::from_sql_and_values(backend, sql, chunk.iter().map(|id| sea_orm::Value::from(*id)));
        for row in txn.query_all_raw(stmt).await? {
            let n: i32 = row.try_get("", "n")?;
            let date: Option<NaiveDate> = row.try_get("", "event_date")?;
            if let (Some(id), Some(date)) = (usize::try_from(n).ok().and_then(|n| chunk.get(n)), date) {
                dates.insert(*id, date);
            }
        }
    }
    Ok(dates)
}
