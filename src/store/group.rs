//! Group commit of single-event writes.
//!
//! Each `createAuditEvent` (or REST `POST` of one event) joins a queue; a committer takes what has
//! queued while the previous groups were being committed and writes it together, so concurrent
//! writers share statements and one commit instead of paying each their own. Every request is
//! answered on its own: with its stored event once the group's commit is durable, or with its own
//! error. An event that cannot be written (an unknown parent, a date before its parent's) is
//! answered at once and left out of the group; a group the database refuses as a whole is written
//! again one event at a time, so that only the event at fault fails.
//!
//! On PostgreSQL a group is written without a transaction of its own: one statement reads the
//! parents' dates and the chains' heads, the events are linked to their chains here, and one
//! autocommitted statement inserts them and moves each head only if it is still the head the
//! links were computed from (compare and set); if another writer moved a head meanwhile, the
//! statement undoes itself (`auditgraph_chain_moved()`, SQLSTATE 40001) and the group is linked
//! again. The statement takes its chains' advisory locks before it moves their heads, as the batch
//! and import paths do before they read them, so those paths always read a head no group is
//! moving. Writers of different correlations never wait for each other. On SQLite, which has one writer at a time, a group is
//! one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use chrono::{Days, NaiveDate};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, IntoActiveModel, QueryTrait, Statement, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::chain::{self, ChainHead};
use super::write::{parent_dates, to_model, write_error};
use super::{Inner, Store, StoreError};
use crate::domain::{FieldError, NewEvent};
use crate::entity::audit_event::{Entity, Model};

/// Most events one group writes.
const MAX_GROUP: usize = 256;
/// Groups being committed at once. Two keep the database busy: while one group waits for its
/// commit to reach the disk, the next one is read and linked.
const GROUPS_IN_FLIGHT: usize = 2;
/// Times a group is linked again after another writer moved one of its chains, before each of
/// its events is written alone through the locking path.
const RELINKS: usize = 5;

/// The answer to one queued write.
type Reply = oneshot::Sender<Result<Model, StoreError>>;

/// A queued single-event write.
pub(super) struct Pending {
    event: NewEvent,
    reply: Reply,
}

/// The queue of single-event writes. Dropping it (with the store) ends the committer.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the committer of the store behind `inner`; it holds the store only while a group is
    /// being written, so the store can be dropped and then the committer ends.
    pub(super) fn start(inner: Weak<Inner>, receiver: mpsc::UnboundedReceiver<Pending>) {
        tokio::spawn(commit_groups(inner, receiver));
    }

    /// A queue and the receiving end its committer takes.
    pub(super) fn channel() -> (Self, mpsc::UnboundedReceiver<Pending>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        (Self { queue }, receiver)
    }
}

async fn commit_groups(inner: Weak<Inner>, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        tokio::spawn(async move {
            store.commit_group(group).await;
            drop(slot);
        });
    }
}

impl Store {
    /// Writes one validated event and returns it as stored; durable when this returns. Events
    /// with a server-chosen id are committed in groups with concurrent writes (see the module
    /// documentation); an event whose id the client chose goes alone through the batch path,
    /// which makes its retries idempotent.
    pub async fn create_event(&self, event: NewEvent) -> Result<Model, StoreError> {
        if event.client_supplied_id {
            let mut stored = self.create_events(vec![event]).await?;
            return stored
                .pop()
                .ok_or_else(|| StoreError::Internal("a one-event write stored nothing".into()));
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .group
            .queue
            .send(Pending { event, reply })
            .map_err(|_| StoreError::Internal("the group committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("the group committer dropped a write".into()))?
    }

    async fn commit_group(&self, group: Vec<Pending>) {
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) = group.into_iter().map(|p| (p.event, p.reply)).unzip();
        tracing::trace!(events = events.len(), "committing a group");
        self.inner.group_sizes.observe(events.len() as f64);
        let results = self.write_group(events).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // A writer that stopped waiting (its request was cancelled) needs no answer.
            let _ = reply.send(result);
        }
    }

    /// Writes independent events; one result each, in order.
    async fn write_group(&self, events: Vec<NewEvent>) -> Vec<Result<Model, StoreError>> {
        let months: BTreeSet<NaiveDate> = events.iter().map(|e| e.event_date).collect();
        for day in months {
            if let Err(err) = self.ensure_partition(day).await {
                let err = StoreError::from(err);
                return events.iter().map(|_| Err(copy_error(&err))).collect();
            }
        }
        let count = events.len();
        let outcome = match self.backend() {
            DatabaseBackend::Postgres => self.write_group_lockless(events).await,
            _ => self.write_group_in_transaction(events).await,
        };
        match outcome {
            Ok(results) => results,
            Err(Refused { events, error }) if events.len() > 1 && is_about_a_row(&error) => {
                tracing::debug!(%error, events = events.len(), "a group was refused; writing its events one by one");
                let mut results = Vec::with_capacity(count);
                for event in events {
                    results.push(
                        Box::pin(self.write_group(vec![event]))
                            .await
                            .pop()
                            .unwrap_or_else(|| Err(StoreError::Internal("a one-event group gave no result".into()))),
                    );
                }
                results
            }
            Err(Refused { events, error }) => {
                let mut results: Vec<_> = events.iter().skip(1).map(|_| Err(copy_error(&error))).collect();
                results.insert(0, Err(error));
                results
            }
        }
    }

    /// PostgreSQL: reads, links, and writes with one autocommitted compare-and-set statement;
    /// links again when a chain moved, and after [`RELINKS`] tries writes through the locking path.
    async fn write_group_lockless(&self, events: Vec<NewEvent>) -> Result<Vec<Result<Model, StoreError>>, Refused> {
        let db = self.db();
        for _ in 0..RELINKS {
            let plan = match self.plan_group(db, &events).await {
                Ok(plan) => plan,
                Err(error) => return Err(Refused { events, error }),
            };
            if plan.rows.is_empty() {
                return Ok(plan.finish());
            }
            match db.query_one_raw(compare_and_set(&plan)).await {
                Ok(_) => return Ok(plan.finish()),
                Err(err) if is_chain_moved(&err) => {
                    tracing::debug!("a chain moved while a group was linked; linking it again");
                }
                Err(err) => {
                    return Err(Refused {
                        events,
                        error: write_error(err),
                    });
                }
            }
        }
        tracing::debug!("chains kept moving under a group; writing its events through the locking path");
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.create_events(vec![event]).await.and_then(|mut stored| {
                stored
                    .pop()
                    .ok_or_else(|| StoreError::Internal("a one-event write stored nothing".into()))
            }));
        }
        Ok(results)
    }

    /// SQLite: the group in one transaction, behind the write gate.
    async fn write_group_in_transaction(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Result<Model, StoreError>>, Refused> {
        let attempt = async {
            let write = self.begin_write().await?;
            let plan = self.plan_group(&write.txn, &events).await?;
            let backend = write.txn.get_database_backend();
            for chunk in plan.rows.chunks(super::write::rows_per_insert(backend)) {
                Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                    .exec_without_returning(&write.txn)
                    .await
                    .map_err(write_error)?;
            }
            chain::save_heads(&write.txn, &plan.heads).await?;
            write.txn.commit().await?;
            Ok::<_, StoreError>(plan)
        };
        match attempt.await {
            Ok(plan) => Ok(plan.finish()),
            Err(error) => Err(Refused { events, error }),
        }
    }

    /// Resolves each event's parent, leaves out (with their error) the events that cannot be
    /// written, and links the others to their chains.
    async fn plan_group(&self, db: &impl ConnectionTrait, events: &[NewEvent]) -> Result<GroupPlan, StoreError> {
        let parents: Vec<uuid::Uuid> = events
            .iter()
            .filter_map(|e| e.parent_event_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let known = parent_dates(db, parents).await?;
        let mut results = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            match parent_date_of(event, &known) {
                Ok(parent_date) => {
                    results.push(Slot::Row(rows.len()));
                    rows.push(to_model(event.clone(), parent_date));
                }
                Err(error) => results.push(Slot::Failed(error)),
            }
        }
        let owned: BTreeSet<String> = rows.iter().map(|m| m.correlation_id.clone()).collect();
        let correlations: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
        let mut heads = chain::read_heads(db, &correlations).await?;
        let before: BTreeMap<String, i64> = owned
            .iter()
            .map(|c| (c.clone(), heads.get(c).map_or(0, |h| h.last_seq)))
            .collect();
        for row in &mut rows {
            chain::extend(self.hasher(), &mut heads, row);
        }
        let heads: Vec<ChainHead> = owned.iter().filter_map(|c| heads.remove(c)).collect();
        Ok(GroupPlan {
            results,
            rows,
            heads,
            before,
        })
    }
}

/// A group that the database refused as a whole, with the error and its events, to be written
/// again one by one.
struct Refused {
    events: Vec<NewEvent>,
    error: StoreError,
}

/// Where an event's answer comes from.
enum Slot {
    /// The row at this position of the group's rows.
    Row(usize),
    /// It could not be written.
    Failed(StoreError),
}

/// A linked group, ready to be written.
struct GroupPlan {
    results: Vec<Slot>,
    rows: Vec<Model>,
    /// Each chain's head after the group.
    heads: Vec<ChainHead>,
    /// Each chain's position before the group (0 for a chain that has none yet).
    before: BTreeMap<String, i64>,
}

impl GroupPlan {
    /// Each event's answer, once the rows are written.
    fn finish(self) -> Vec<Result<Model, StoreError>> {
        let mut rows: Vec<Option<Model>> = self.rows.into_iter().map(Some).collect();
        self.results
            .into_iter()
            .map(|slot| match slot {
                Slot::Row(at) => rows
                    .get_mut(at)
                    .and_then(Option::take)
                    .ok_or_else(|| StoreError::Internal(format!("group row {at} missing"))),
                Slot::Failed(error) => Err(error),
            })
            .collect()
    }
}

/// The parent's date of a single event, or why it cannot be written.
fn parent_date_of(event: &NewEvent, known: &HashMap<uuid::Uuid, NaiveDate>) -> Result<Option<NaiveDate>, StoreError> {
    let Some(parent) = event.parent_event_id else {
        return Ok(None);
    };
    let Some(&date) = known.get(&parent) else {
        return Err(StoreError::UnknownParent(FieldError::new(
            "parent_event_id",
            "unknown_parent",
            format!("parent event {parent} does not exist"),
        )));
    };
    if event.event_date < date - Days::new(1) {
        return Err(StoreError::Invalid(FieldError::new(
            "event_timestamp",
            "before_parent",
            format!("is more than a day before its parent's date ({date}); a child cannot predate its cause by days"),
        )));
    }
    Ok(Some(date))
}

/// The statement that writes a planned group (PostgreSQL): the rows, and each chain's head moved
/// from the position the links were computed from, or nothing at all.
fn compare_and_set(plan: &GroupPlan) -> Statement {
    let insert = Entity::insert_many(plan.rows.iter().cloned().map(IntoActiveModel::into_active_model))
        .build(DatabaseBackend::Postgres);
    let mut values: Vec<Value> = insert.values.map(|v| v.0).unwrap_or_default();
    let mut heads = Vec::with_capacity(plan.heads.len());
    for head in &plan.heads {
        let n = values.len();
        heads.push(format!(
            "(${}::text, ${}::bigint, ${}::text, ${}::bigint)",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        ));
        values.push(head.correlation_id.clone().into());
        values.push(head.last_seq.into());
        values.push(head.last_hash.clone().into());
        values.push(plan.before.get(&head.correlation_id).copied().unwrap_or(0).into());
    }
    // The chains' advisory locks (those the batch and import paths hold while they read and move
    // a head) are taken before any head moves, in the same order as theirs; the statement holds
    // them until it commits.
    let sql = format!(
        "WITH written AS ({} RETURNING 1), \
         heads(correlation_id, last_seq, last_hash, before) AS (VALUES {}), \
         locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended(correlation_id, 1)) FROM heads \
            ORDER BY correlation_id COLLATE \"C\"), \
         moved AS (INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) \
            SELECT correlation_id, last_seq, last_hash FROM heads WHERE (SELECT count(*) FROM locked) >= 0 \
            ON CONFLICT (correlation_id) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash \
            WHERE audit_chain_heads.last_seq = (SELECT before FROM heads WHERE heads.correlation_id = excluded.correlation_id) \
            RETURNING 1) \
         SELECT CASE WHEN (SELECT count(*) FROM moved) = {} THEN (SELECT count(*) FROM written) \
            ELSE auditgraph_chain_moved() END AS written",
        insert.sql,
        heads.join(", "),
        plan.heads.len()
    );
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

/// Whether the compare-and-set statement found a head moved (SQLSTATE 40001).
fn is_chain_moved(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else {
        return false;
    };
    matches!(&**e, sea_orm::sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// Whether a refusal may be due to one event of a group (then the others are written without it);
/// an unavailable database or a timeout is everyone's.
fn is_about_a_row(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::UnknownParent(_) | StoreError::Invalid(_) | StoreError::Conflict(_) | StoreError::Constraint(_)
    )
}

/// The same failure for another event of a group that failed before anything was written.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(e) => StoreError::Unavailable(DbErr::Custom(e.to_string())),
        StoreError::Timeout(m) => StoreError::Timeout(m.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}
