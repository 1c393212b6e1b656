//! Group commit of single-event writes, and batches written the same way.
//!
//! Each `createAuditEvent` (or REST `POST` of one event) joins a queue; a committer takes what has
//! queued while the previous groups were being committed and writes it together, so concurrent
//! writers share statements and one commit instead of paying each their own. Every request is
//! answered on its own: with its stored event once the group's commit is durable, or with its own
//! error. An event that cannot be written (an unknown parent, a date before its parent's) is
//! answered at once and left out of the group; a group the database refuses as a whole is written
//! again one event at a time, so that only the event at fault fails.
//!
//! On PostgreSQL a group is written without a transaction of its own, in one autocommitted
//! statement: the events are linked to their chains here, from the heads this process moved
//! last, and the statement inserts them and moves each head only if it is still the head the
//! links were computed from (compare and set). A chain this process has not seen is taken to
//! start with the group. The date of a parent this process has not seen is taken from the
//! parent's id when that is a UUIDv7 (the date it was made on, which the foreign key checks, as
//! it checks any parent's date, and the statement that no later copy of a legacy id exists), else
//! read inside the statement. If another writer moved a head meanwhile, or a parent turns out
//! unknown, on another date or later than its child allows, the statement fails or undoes itself
//! (`auditgraph_chain_moved()`, SQLSTATE 40001), and the group is linked again after one
//! statement has read the parents' dates and the chains' heads, so that each event at fault gets
//! its own error. The statement takes its chains' advisory locks before it moves their heads, as
//! the batch and import paths do before they read them, so those paths always read a head no
//! group is moving. Writers of different correlations never wait for each other. On SQLite,
//! which has one writer at a time, a group is one transaction.
//!
//! A batch whose ids the server chose is written by the same statement on PostgreSQL, all or
//! none (`Store::write_batch_lockless`); one with an event at fault goes through the
//! transactional path of `store/write.rs` instead, which names that event.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use chrono::{Days, NaiveDate};
use sea_orm::sqlx::postgres::PgArguments;
use sea_orm::sqlx::types::Json;
use sea_orm::sqlx::{Arguments, Postgres};
use sea_orm::{DatabaseBackend, DbErr, Statement, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::chain::{self, ChainHead};
use super::write::{insert_rows, newest_date_of, parent_dates, to_model, write_error};
use super::{Inner, PgStatement, Store, StoreError};
use crate::domain::{FieldError, NewEvent};
use crate::entity::audit_event::Model;

/// Most events one group writes.
const MAX_GROUP: usize = 256;
/// Chain heads and event dates remembered, each (at most twice as many are held). A head is
/// about 250 bytes with its map entry; under the benchmark, whose writes each start a chain, the
/// server's peak resident memory was 121.1 MiB with 50,000 of each and 105.6 MiB with this many.
/// A chain moved longer ago costs its next write a refused statement and a read.
const REMEMBERED: usize = 8_192;
/// Groups being committed at once. A group goes out while another is in flight only when it is
/// full ([`MAX_GROUP`]): otherwise it waits for the groups in flight, taking in the writes that
/// queue meanwhile, so the groups grow with the load and each statement and commit is shared by
/// more writers. With two groups in flight whatever their size, single writes on 2 cores took
/// 23% more of the server's and PostgreSQL's CPU per write at concurrency 16 (507 against 411 µs)
/// and were no faster there; at 4 their throughput differed by less than the noise. A second
/// group keeps a database with cores to spare busy when more than a full group is waiting.
const GROUPS_IN_FLIGHT: u32 = 2;
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

/// The queue of single-event writes, and what the lockless path remembers of earlier groups.
/// Dropping it (with the store) ends the committer.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    /// Chain heads this process moved last (PostgreSQL); a head another process moved since
    /// makes the compare-and-set fail, and is then read again.
    heads: Mutex<Recent<String, ChainHead>>,
    /// Dates of events this process wrote or resolved as parents. An event's date never changes.
    dates: Mutex<Recent<Uuid, NaiveDate>>,
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
        let group = Self {
            queue,
            heads: Mutex::new(Recent::new(REMEMBERED)),
            dates: Mutex::new(Recent::new(REMEMBERED)),
        };
        (group, receiver)
    }

    fn head(&self, correlation: &str) -> Option<ChainHead> {
        lock(&self.heads).get(correlation).cloned()
    }

    fn parent_date(&self, parent: &Uuid) -> Option<NaiveDate> {
        lock(&self.dates).get(parent).copied()
    }

    /// Remembers the heads a written group moved and the dates of its events and their parents.
    fn remember(&self, plan: &GroupPlan) {
        let mut heads = lock(&self.heads);
        for head in &plan.heads {
            heads.insert(head.correlation_id.clone(), head.clone());
        }
        drop(heads);
        let mut dates = lock(&self.dates);
        for row in &plan.rows {
            dates.insert(row.event_id, row.event_date);
            if let (Some(parent), Some(date)) = (row.parent_event_id, row.parent_event_date) {
                dates.insert(parent, date);
            }
        }
    }

    /// Forgets the heads of a group whose chains moved meanwhile.
    fn forget_heads(&self, plan: &GroupPlan) {
        let mut heads = lock(&self.heads);
        for correlation in plan.before.keys() {
            heads.remove(correlation);
        }
    }
}

async fn commit_groups(inner: Weak<Inner>, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT as usize));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut group = vec![first];
        take_queued(&mut receiver, &mut group);
        if group.len() < MAX_GROUP {
            wait_for_groups_in_flight(&slots, &mut receiver, &mut group).await;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner, reading: None };
        tokio::spawn(async move {
            store.commit_group(group).await;
            drop(slot);
        });
    }
}

/// Adds the writes queued now to `group`, up to [`MAX_GROUP`].
fn take_queued(receiver: &mut mpsc::UnboundedReceiver<Pending>, group: &mut Vec<Pending>) {
    while group.len() < MAX_GROUP {
        match receiver.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
}

/// Waits until no other group is in flight (the committer holds `group`'s own slot), adding the
/// writes that queue meanwhile to `group`; returns at once when it becomes full.
async fn wait_for_groups_in_flight(
    slots: &Semaphore,
    receiver: &mut mpsc::UnboundedReceiver<Pending>,
    group: &mut Vec<Pending>,
) {
    let others = slots.acquire_many(GROUPS_IN_FLIGHT - 1);
    tokio::pin!(others);
    loop {
        tokio::select! {
            biased;
            // The permits go back at once: they only say that the others have finished.
            _ = &mut others => break,
            next = receiver.recv() => match next {
                Some(next) => {
                    group.push(next);
                    take_queued(receiver, group);
                    if group.len() == MAX_GROUP {
                        return;
                    }
                }
                // The store is gone, and with it every writer: the committer ends.
                None => return,
            },
        }
    }
    take_queued(receiver, group);
}

impl Store {
    /// Writes one validated event and returns it as stored; durable when this returns. Events
    /// with a server-chosen id are committed in groups with concurrent writes (see the module
    /// documentation); an event whose id the client chose goes alone through the batch path,
    /// which makes its retries idempotent.
    pub async fn create_event(&self, event: NewEvent) -> Result<Model, StoreError> {
        if event.client_supplied_id {
            return self.write_alone(event).await;
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
        if let Err(err) = self.ensure_partitions(&events).await {
            return events.iter().map(|_| Err(copy_error(&err))).collect();
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
                let others: Vec<_> = events.iter().skip(1).map(|_| Err(copy_error(&error))).collect();
                std::iter::once(Err(error)).chain(others).collect()
            }
        }
    }

    /// PostgreSQL: reads, links, and writes with one autocommitted compare-and-set statement;
    /// links again when a chain moved, and after [`RELINKS`] tries writes through the locking path.
    async fn write_group_lockless(&self, events: Vec<NewEvent>) -> Result<Vec<Result<Model, StoreError>>, Refused> {
        let mut trust_cache = true;
        for _ in 0..RELINKS {
            let plan = match self.resolve_lockless(&events, trust_cache).await {
                // Trusting the cache, the parents it does not hold are read by the statement.
                Ok((known, heads)) => self.link(&events, &known, heads, trust_cache),
                Err(error) => return Err(Refused { events, error }),
            };
            if plan.rows.is_empty() {
                return Ok(plan.finish());
            }
            match self.compare_and_set(plan).await {
                Attempt::Written(plan) => return Ok(plan.finish()),
                Attempt::Moved => trust_cache = false,
                Attempt::Failed(error) => return Err(Refused { events, error }),
            }
        }
        tracing::debug!("chains kept moving under a group; writing its events through the locking path");
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.write_alone(event).await);
        }
        Ok(results)
    }

    /// Writes one event through the batch path (its own transaction, chain locks held).
    async fn write_alone(&self, event: NewEvent) -> Result<Model, StoreError> {
        self.ensure_partitions(std::slice::from_ref(&event)).await?;
        let mut stored = self.write_locked(vec![event]).await?;
        stored
            .pop()
            .ok_or_else(|| StoreError::Internal("a one-event write stored nothing".into()))
    }

    /// PostgreSQL: a batch of events whose ids the server chose, written all or none like a group:
    /// in one autocommitted compare-and-set statement, from the heads this process moved last
    /// and the parents' dates it knows, guesses from their ids or reads in the statement (see the
    /// module documentation). Its events cannot name each other as parents: their ids are not
    /// known before this answers. `Ok(None)` when the batch must go through the transactional
    /// path: an event at fault (which that path names, with its index) or chains that kept moving.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub(super) async fn write_batch_lockless(&self, events: &[NewEvent]) -> Result<Option<Vec<Model>>, StoreError> {
        let mut trust_cache = true;
        for _ in 0..RELINKS {
            let (known, heads) = self.resolve_lockless(events, trust_cache).await?;
            let plan = self.link(events, &known, heads, trust_cache);
            if plan.results.iter().any(|slot| matches!(slot, Slot::Failed(_))) {
                return Ok(None);
            }
            match self.compare_and_set(plan).await {
                Attempt::Written(plan) => return plan.finish().into_iter().collect::<Result<Vec<_>, _>>().map(Some),
                Attempt::Moved => trust_cache = false,
                // Refused before anything was written: the transactional path names the event.
                Attempt::Failed(error) if is_about_a_row(&error) => {
                    tracing::debug!(%error, "a batch was refused; writing it in a transaction to find the event at fault");
                    return Ok(None);
                }
                Attempt::Failed(error) => return Err(error),
            }
        }
        tracing::debug!("chains kept moving under a batch; writing it through the locking path");
        Ok(None)
    }

    /// Sends the compare-and-set statement of `plan` (on the connection used last,
    /// `store/hot.rs`) and remembers what it wrote.
    async fn compare_and_set(&self, mut plan: GroupPlan) -> Attempt {
        let statement = match compare_and_set_statement(&plan) {
            Ok(statement) => statement,
            Err(error) => return Attempt::Failed(error),
        };
        match self.inner.db.query_bound(statement).await {
            Ok(rows) => {
                // The rows are committed: an answer that cannot carry what the database added is
                // still the answer, not an error that a retry would write again.
                if let Err(error) = apply_returned(rows.first(), &mut plan.rows) {
                    tracing::error!(%error, "written rows' returned holds or parent dates could not be read");
                }
                self.inner.group.remember(&plan);
                Attempt::Written(plan)
            }
            // A guessed parent date the foreign key refused is read before the rows are linked
            // again, like a head that moved.
            Err(err) if is_chain_moved(&err) || (!plan.guessed.is_empty() && is_foreign_key_violation(&err)) => {
                tracing::debug!(
                    "a chain moved or a parent was not as assumed while rows were linked; linking them again"
                );
                self.inner.group.forget_heads(&plan);
                Attempt::Moved
            }
            Err(err) => Attempt::Failed(write_error(err)),
        }
    }

    /// The statement a write of these events sends PostgreSQL when this process has seen neither
    /// their parents nor their chains: the compare-and-set that writes the rows (each linked to
    /// its chain as if the chain started with it, its parent's date taken from the parent's
    /// UUIDv7 id or else read by the statement) and moves the heads. The benchmark runs it raw
    /// beside the server's own writes, as the database's share of the same work.
    pub fn write_statement(&self, events: Vec<NewEvent>) -> Result<PgStatement, StoreError> {
        let plan = self.link(&events, &HashMap::new(), BTreeMap::new(), true);
        compare_and_set_statement(&plan)
    }

    /// SQLite: the group in one transaction, behind the write gate.
    async fn write_group_in_transaction(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Result<Model, StoreError>>, Refused> {
        let attempt = async {
            let write = self.begin_write().await?;
            let known = parent_dates(&write.txn, distinct_parents(&events, |_| true)).await?;
            let owned = distinct_correlations(&events);
            let heads = chain::read_heads(&write.txn, &owned.iter().map(String::as_str).collect()).await?;
            let mut plan = self.link(&events, &known, heads, false);
            let mut rows: Vec<&mut Model> = plan.rows.iter_mut().collect();
            super::lifecycle::apply_holds(&write.txn, &mut rows).await?;
            insert_rows(&write.txn, &plan.rows).await?;
            chain::save_heads(&write.txn, &plan.heads).await?;
            write.txn.commit().await?;
            Ok::<_, StoreError>(plan)
        };
        match attempt.await {
            Ok(plan) => Ok(plan.finish()),
            Err(error) => Err(Refused { events, error }),
        }
    }

    /// PostgreSQL: the parents' dates and the chains' heads. Trusting the cache, only what this
    /// process wrote and read before, with nothing read now: a chain it has not seen is taken to
    /// start with the group, and the parents whose dates it does not hold are left to the
    /// compare-and-set, which finds out when either assumption is wrong. Otherwise, the chains'
    /// heads and the parents' dates it does not hold, in one statement.
    async fn resolve_lockless(
        &self,
        events: &[NewEvent],
        trust_cache: bool,
    ) -> Result<(HashMap<Uuid, NaiveDate>, BTreeMap<String, ChainHead>), StoreError> {
        let group = &self.inner.group;
        let mut known = HashMap::new();
        let parents = distinct_parents(events, |parent| match group.parent_date(parent) {
            Some(date) => {
                known.insert(*parent, date);
                false
            }
            None => true,
        });
        let mut heads = BTreeMap::new();
        let mut unseen = Vec::new();
        for correlation in distinct_correlations(events) {
            match group.head(&correlation).filter(|_| trust_cache) {
                Some(head) => {
                    heads.insert(correlation, head);
                }
                None => unseen.push(correlation),
            }
        }
        if trust_cache {
            return Ok((known, heads));
        }
        let (dates, read) = read_parents_and_heads(&self.inner.db, &parents, &unseen).await?;
        known.extend(dates);
        heads.extend(read);
        Ok((known, heads))
    }

    /// Leaves out (with their error) the events that cannot be written, and links the others to
    /// their chains, whose heads before the group are `heads`. With `read_unknown`, an event whose
    /// parent's date `known` lacks goes in without it, for the compare-and-set to read; otherwise
    /// its parent is unknown.
    fn link(
        &self,
        events: &[NewEvent],
        known: &HashMap<Uuid, NaiveDate>,
        mut heads: BTreeMap<String, ChainHead>,
        read_unknown: bool,
    ) -> GroupPlan {
        let mut results = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        let mut guessed = BTreeMap::new();
        for event in events {
            let parent_date = match event.parent_event_id {
                Some(parent) if read_unknown && !known.contains_key(&parent) => {
                    // The date the parent's id was made on, when it was made with one (UUIDv7)
                    // and the event may follow it; else the statement reads it.
                    let guess = date_of_id(&parent).filter(|date| event.event_date >= *date - Days::new(1));
                    if let Some(date) = guess {
                        guessed.insert(parent, date);
                    }
                    Ok(guess)
                }
                _ => parent_date_of(event, known),
            };
            match parent_date {
                Ok(parent_date) => {
                    results.push(Slot::Row(rows.len()));
                    rows.push(to_model(event.clone(), parent_date));
                }
                Err(error) => results.push(Slot::Failed(error)),
            }
        }
        let owned: BTreeSet<String> = rows.iter().map(|m| m.correlation_id.clone()).collect();
        let before: BTreeMap<String, i64> = owned
            .iter()
            .map(|c| (c.clone(), heads.get(c).map_or(0, |h| h.last_seq)))
            .collect();
        for row in &mut rows {
            chain::extend(self.hasher(), &mut heads, row);
        }
        let heads: Vec<ChainHead> = owned.iter().filter_map(|c| heads.remove(c)).collect();
        GroupPlan {
            results,
            rows,
            guessed,
            heads,
            before,
        }
    }
}

/// The distinct parents the events name that `wanted` keeps, sorted.
fn distinct_parents(events: &[NewEvent], mut wanted: impl FnMut(&Uuid) -> bool) -> Vec<Uuid> {
    let parents: BTreeSet<Uuid> = events.iter().filter_map(|e| e.parent_event_id).collect();
    parents.into_iter().filter(|p| wanted(p)).collect()
}

/// The distinct correlations of the events, sorted.
fn distinct_correlations(events: &[NewEvent]) -> BTreeSet<String> {
    events.iter().map(|e| e.correlation_id.clone()).collect()
}

/// PostgreSQL: the statement that reads the dates of these parents and the heads of these chains,
/// each list bound as one array (a batch may name any number); `None` when there is nothing to
/// read.
fn parents_and_heads_statement(parents: &[Uuid], correlations: &[String]) -> Option<Statement> {
    let mut parts = Vec::new();
    let mut values: Vec<Value> = Vec::with_capacity(2);
    if !parents.is_empty() {
        values.push(parents.to_vec().into());
        parts.push(format!(
            "SELECT (wanted.n - 1)::int AS n, ({}) AS event_date, NULL::text AS correlation_id, NULL::bigint AS last_seq, \
             NULL::text AS last_hash FROM unnest(${}::uuid[]) WITH ORDINALITY AS wanted(id, n)",
            newest_date_of("wanted.id"),
            values.len()
        ));
    }
    if !correlations.is_empty() {
        values.push(correlations.to_vec().into());
        parts.push(format!(
            "SELECT NULL::int, NULL::date, correlation_id::text, last_seq, last_hash::text FROM audit_chain_heads \
             WHERE correlation_id = ANY(${}::text[])",
            values.len()
        ));
    }
    (!parts.is_empty())
        .then(|| Statement::from_sql_and_values(DatabaseBackend::Postgres, parts.join(" UNION ALL "), values))
}

/// PostgreSQL: the dates of these parents and the heads of these chains, in one statement.
async fn read_parents_and_heads(
    db: &super::hot::ReadPool,
    parents: &[Uuid],
    correlations: &[String],
) -> Result<(HashMap<Uuid, NaiveDate>, BTreeMap<String, ChainHead>), DbErr> {
    let mut dates = HashMap::new();
    let mut heads = BTreeMap::new();
    let Some(stmt) = parents_and_heads_statement(parents, correlations) else {
        return Ok((dates, heads));
    };
    for row in db.query_all(stmt).await? {
        let n: Option<i32> = row.try_get("", "n")?;
        if let Some(n) = n {
            let date: Option<NaiveDate> = row.try_get("", "event_date")?;
            if let (Some(id), Some(date)) = (usize::try_from(n).ok().and_then(|n| parents.get(n)), date) {
                dates.insert(*id, date);
            }
            continue;
        }
        let head = ChainHead::from_row(&row)?;
        heads.insert(head.correlation_id.clone(), head);
    }
    Ok((dates, heads))
}

/// A group that the database refused as a whole, with the error and its events, to be written
/// again one by one.
struct Refused {
    events: Vec<NewEvent>,
    error: StoreError,
}

/// What one compare-and-set statement came to.
enum Attempt {
    /// Written and committed, with what the database returned applied to the plan's rows.
    Written(GroupPlan),
    /// A head moved or a guessed parent date was wrong: nothing was written; link again.
    Moved,
    /// Refused for another reason, or not sent; nothing was written.
    Failed(StoreError),
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
    /// The parents whose dates are guesses from their ids: the foreign key checks that each is
    /// stored on that date, the statement that it is stored on no later one.
    guessed: BTreeMap<Uuid, NaiveDate>,
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
fn parent_date_of(event: &NewEvent, known: &HashMap<Uuid, NaiveDate>) -> Result<Option<NaiveDate>, StoreError> {
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
/// from the position the links were computed from, or nothing at all. The rows that name a
/// parent without its date read it (see [`inserted_rows`]); a row left out then, like a head that
/// moved, undoes the whole statement.
///
/// Every value goes in an array of one column: the statement has the same text (four variants)
/// and the same parameters (46, or 49 with guessed parent dates) whatever the number of rows, so
/// each connection parses and plans it once, where one placeholder per value made a text per group
/// size, each parsed and planned on every connection, and a batch of 500 rows bound 22,000.
fn compare_and_set_statement(plan: &GroupPlan) -> Result<PgStatement, StoreError> {
    let mut args = PgArguments::default();
    let unread = plan
        .rows
        .iter()
        .any(|m| m.parent_event_id.is_some() && m.parent_event_date.is_none());
    bind_rows(&mut args, &plan.rows)?;
    let oldest = plan.guessed.values().min().copied();
    if let Some(oldest) = oldest {
        bind(&mut args, plan.guessed.keys().collect::<Vec<&Uuid>>())?;
        bind(&mut args, plan.guessed.values().collect::<Vec<&NaiveDate>>())?;
        bind(&mut args, oldest)?;
    }
    bind(
        &mut args,
        plan.heads.iter().map(|h| h.correlation_id.as_str()).collect::<Vec<_>>(),
    )?;
    bind(&mut args, plan.heads.iter().map(|h| h.last_seq).collect::<Vec<_>>())?;
    bind(
        &mut args,
        plan.heads.iter().map(|h| h.last_hash.as_str()).collect::<Vec<_>>(),
    )?;
    let before: Vec<i64> = plan
        .heads
        .iter()
        .map(|h| plan.before.get(&h.correlation_id).copied().unwrap_or(0))
        .collect();
    bind(&mut args, before)?;
    let heads_count = i64::try_from(plan.heads.len()).unwrap_or(i64::MAX);
    let rows_count = i64::try_from(plan.rows.len()).unwrap_or(i64::MAX);
    bind(&mut args, heads_count)?;
    bind(&mut args, rows_count)?;
    let sql = compare_and_set_sql(unread, oldest.is_some()).to_string();
    Ok(PgStatement { sql, args })
}

/// The text of the compare-and-set statement, built once for each of its four forms: whether
/// it reads parents' dates, whether it checks guessed ones. Its parameters are the arrays of
/// [`ROW_COLUMNS`], then the guessed parents' ids and dates and the oldest guess (when it checks
/// them), then the heads' four arrays and the counts of heads and rows, as
/// [`compare_and_set_statement`] binds them.
fn compare_and_set_sql(read_parents: bool, check_guesses: bool) -> &'static str {
    static FORMS: LazyLock<[[String; 2]; 2]> =
        LazyLock::new(|| [false, true].map(|read| [false, true].map(|check| build_compare_and_set_sql(read, check))));
    &FORMS[usize::from(read_parents)][usize::from(check_guesses)]
}

/// Builds the form of the compare-and-set statement that [`compare_and_set_sql`] keeps.
fn build_compare_and_set_sql(read_parents: bool, check_guesses: bool) -> String {
    let insert = inserted_rows(read_parents);
    let mut n = ROW_COLUMNS.len();
    // A guessed parent date must be the parent's newest, as a read one is (legacy data may hold
    // an id on several days). One check for the whole group, whatever its number of guesses, so
    // that it is planned once: the partitions up to the oldest guess are pruned as it starts.
    let mut newest = String::new();
    if check_guesses {
        newest = format!(
            " AND NOT EXISTS (SELECT 1 FROM unnest(${}::uuid[], ${}::date[]) AS guessed(id, date) \
             JOIN audit_events later ON later.event_id = guessed.id AND later.event_date > guessed.date \
             WHERE later.event_date > ${}::date)",
            n + 1,
            n + 2,
            n + 3
        );
        n += 3;
    }
    // The chains' advisory locks (those the batch and import paths hold while they read and move
    // a head, and placing a legal hold takes) are taken before any head moves, in the same order
    // as theirs; the statement holds them until it commits. The main query reads `moved` (and so
    // `locked`) before `written`, so the rows go in, and the hold trigger checks them, with the
    // locks held.
    format!(
        "WITH written AS ({insert} RETURNING event_id, parent_event_id, parent_event_date, legal_hold, legal_hold_reason, \
            legal_hold_placed_by, legal_hold_placed_at), \
         heads(correlation_id, last_seq, last_hash, before) AS \
            (SELECT * FROM unnest(${}::text[], ${}::bigint[], ${}::text[], ${}::bigint[])), \
         locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended(correlation_id, 1)) FROM heads \
            ORDER BY correlation_id COLLATE \"C\"), \
         moved AS (INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) \
            SELECT correlation_id, last_seq, last_hash FROM heads WHERE (SELECT count(*) FROM locked) >= 0 \
            ON CONFLICT (correlation_id) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash \
            WHERE audit_chain_heads.last_seq = (SELECT before FROM heads WHERE heads.correlation_id = excluded.correlation_id) \
            RETURNING 1) \
         SELECT CASE WHEN (SELECT count(*) FROM moved) = ${} AND (SELECT count(*) FROM written) = ${}{newest} \
            THEN (SELECT count(*) FROM written) ELSE auditgraph_chain_moved() END AS written, \
            (SELECT json_agg(json_build_array(event_id, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at)) \
             FROM written WHERE legal_hold)::text AS held, \
            {} AS dated",
        n + 1,
        n + 2,
        n + 3,
        n + 4,
        n + 5,
        n + 6,
        if read_parents {
            "(SELECT json_agg(json_build_array(event_id, parent_event_date)) FROM written \
             WHERE parent_event_id IS NOT NULL)::text"
        } else {
            "NULL::text"
        },
    )
}

/// A column's binder: binds the column of every row as one array.
type Binder = fn(&mut PgArguments, &[Model]) -> Result<(), StoreError>;

/// One entry of [`ROW_COLUMNS`]: the column's name, its array's type, and the binder of the
/// value `$m` gives of each row.
macro_rules! row_column {
    ($name:literal, $kind:literal, |$m:ident| $value:expr) => {
        ($name, $kind, |args, rows| bind(args, column(rows, |$m| $value)))
    };
}

/// Every column of a stored event: its name, the type of its array, and its binder (one entry
/// per column, so that a name cannot drift from the values bound under it).
const ROW_COLUMNS: [(&str, &str, Binder); 40] = [
    row_column!("event_id", "uuid", |m| m.event_id),
    row_column!("event_version", "text", |m| m.event_version.as_str()),
    row_column!("event_timestamp", "timestamptz", |m| m.event_timestamp),
    row_column!("event_date", "date", |m| m.event_date),
    row_column!("event_type", "text", |m| m.event_type.as_str()),
    row_column!("event_category", "text", |m| m.event_category.as_str()),
    row_column!("event_action", "text", |m| m.event_action.as_str()),
    row_column!("event_outcome", "text", |m| m.event_outcome.as_str()),
    row_column!("actor_type", "text", |m| m.actor_type.as_str()),
    row_column!("actor_id", "text", |m| m.actor_id.as_str()),
    row_column!("actor_ip", "text", |m| text(&m.actor_ip)),
    row_column!("resource_type", "text", |m| m.resource_type.as_str()),
    row_column!("resource_id", "text", |m| m.resource_id.as_str()),
    row_column!("resource_name", "text", |m| text(&m.resource_name)),
    row_column!("correlation_id", "text", |m| m.correlation_id.as_str()),
    row_column!("parent_event_id", "uuid", |m| m.parent_event_id),
    row_column!("parent_event_date", "date", |m| m.parent_event_date),
    row_column!("trace_id", "text", |m| text(&m.trace_id)),
    row_column!("span_id", "text", |m| text(&m.span_id)),
    row_column!("namespace", "text", |m| text(&m.namespace)),
    row_column!("cluster_id", "text", |m| text(&m.cluster_id)),
    row_column!("event_data", "jsonb", |m| Json(&m.event_data)),
    row_column!("event_metadata", "jsonb", |m| m.event_metadata.as_ref().map(Json)),
    row_column!("severity", "text", |m| text(&m.severity)),
    row_column!("duration_ms", "int4", |m| m.duration_ms),
    row_column!("error_code", "text", |m| text(&m.error_code)),
    row_column!("error_message", "text", |m| text(&m.error_message)),
    row_column!("retention_days", "int4", |m| m.retention_days),
    row_column!("is_sensitive", "bool", |m| m.is_sensitive),
    row_column!("event_hash", "text", |m| text(&m.event_hash)),
    row_column!("previous_event_hash", "text", |m| text(&m.previous_event_hash)),
    row_column!("hash_algorithm", "text", |m| m.hash_algorithm.as_str()),
    row_column!("legal_hold", "bool", |m| m.legal_hold),
    row_column!("legal_hold_reason", "text", |m| text(&m.legal_hold_reason)),
    row_column!("legal_hold_placed_by", "text", |m| text(&m.legal_hold_placed_by)),
    row_column!("legal_hold_placed_at", "timestamptz", |m| m.legal_hold_placed_at),
    row_column!("submitted_by", "text", |m| text(&m.submitted_by)),
    row_column!("chain_seq", "int8", |m| m.chain_seq),
    row_column!("hash_key_id", "text", |m| text(&m.hash_key_id)),
    row_column!("chain_note", "text", |m| text(&m.chain_note)),
];

/// The INSERT of the rows bound by [`bind_rows`] as parameters `$1` to `$40`, one array per
/// column. With `read_parents`, each row naming a parent without its date takes the parent's
/// newest date (the one [`newest_date_of`] reads), and a row whose parent is unknown, or whose
/// date is more than a day before its parent's, is left out.
fn inserted_rows(read_parents: bool) -> String {
    let names: Vec<&str> = ROW_COLUMNS.iter().map(|(name, _, _)| *name).collect();
    let arrays: Vec<String> = ROW_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, kind, _))| format!("${}::{kind}[]", i + 1))
        .collect();
    let source = format!("unnest({}) AS incoming({})", arrays.join(", "), names.join(", "));
    if !read_parents {
        return format!("INSERT INTO audit_events ({}) SELECT * FROM {source}", names.join(", "));
    }
    let select: Vec<String> = names
        .iter()
        .map(|name| match *name {
            "parent_event_date" => "COALESCE(incoming.parent_event_date, parent.event_date)".to_string(),
            other => format!("incoming.{other}"),
        })
        .collect();
    format!(
        "INSERT INTO audit_events ({}) SELECT {} FROM {source} \
         LEFT JOIN LATERAL (SELECT event_date FROM audit_events WHERE event_id = incoming.parent_event_id \
            AND incoming.parent_event_date IS NULL ORDER BY event_date DESC LIMIT 1) AS parent ON TRUE \
         WHERE incoming.parent_event_id IS NULL \
            OR incoming.event_date >= COALESCE(incoming.parent_event_date, parent.event_date) - 1",
        names.join(", "),
        select.join(", ")
    )
}

/// Binds one value to `args`.
fn bind<'q, T: sea_orm::sqlx::Encode<'q, Postgres> + sea_orm::sqlx::Type<Postgres>>(
    args: &mut PgArguments,
    value: T,
) -> Result<(), StoreError> {
    args.add(value)
        .map_err(|e| StoreError::Internal(format!("a value of a write could not be encoded: {e}")))
}

/// Binds the rows as one array per column, in the order of [`ROW_COLUMNS`].
fn bind_rows(args: &mut PgArguments, rows: &[Model]) -> Result<(), StoreError> {
    ROW_COLUMNS.iter().try_for_each(|(_, _, binder)| binder(args, rows))
}

/// One column of every row.
fn column<'a, T>(rows: &'a [Model], value: impl Fn(&'a Model) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref()
}

/// Gives the written rows the parents' dates the statement read and the legal holds the database
/// put on them as they went in (the compare-and-set statement's `dated`: id and parent's date of
/// each row naming a parent, when it read any; `held`: id, reason, placed by, placed at of each
/// held row).
fn apply_returned(row: Option<&sea_orm::QueryResult>, rows: &mut [Model]) -> Result<(), StoreError> {
    let dated: Option<String> = row.map(|r| r.try_get("", "dated")).transpose()?.flatten();
    if let Some(dated) = dated {
        let dated: Vec<(Uuid, Option<NaiveDate>)> = serde_json::from_str(&dated)
            .map_err(|e| StoreError::Internal(format!("the parents' dates of a write could not be read: {e}")))?;
        let dated: HashMap<Uuid, Option<NaiveDate>> = dated.into_iter().collect();
        for model in rows.iter_mut() {
            if let Some(date) = dated.get(&model.event_id) {
                model.parent_event_date = *date;
            }
        }
    }
    let held: Option<String> = row.map(|r| r.try_get("", "held")).transpose()?.flatten();
    let Some(held) = held else {
        return Ok(());
    };
    type Held = (
        Uuid,
        Option<String>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let held: Vec<Held> = serde_json::from_str(&held)
        .map_err(|e| StoreError::Internal(format!("the held rows of a write could not be read: {e}")))?;
    for (id, reason, placed_by, placed_at) in held {
        if let Some(model) = rows.iter_mut().find(|m| m.event_id == id) {
            model.legal_hold = true;
            model.legal_hold_reason = reason;
            model.legal_hold_placed_by = placed_by;
            model.legal_hold_placed_at = placed_at;
        }
    }
    Ok(())
}

/// Whether the compare-and-set statement found a head moved (SQLSTATE 40001).
fn is_chain_moved(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let (DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e))) = err else {
        return false;
    };
    matches!(&**e, sea_orm::sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// Whether a statement broke a foreign key (a parent that is not stored on the date given).
fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)))
}

/// The UTC date a version 7 UUID was made on. The server makes an event's id when it stores it,
/// so for most events this is the date of their timestamp; a guess, which the foreign key checks.
fn date_of_id(id: &Uuid) -> Option<NaiveDate> {
    let (seconds, _) = id.get_timestamp()?.to_unix();
    let date = chrono::DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)?.date_naive();
    (id.get_version_num() == 7).then_some(date)
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

/// The guard of a cache; a poisoned lock still holds a valid cache.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bounded map of recent entries: when the current generation is full, it becomes the old one
/// and the oldest generation is dropped.
struct Recent<K, V> {
    capacity: usize,
    current: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            current: HashMap::new(),
            old: HashMap::new(),
        }
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.current.get(key).or_else(|| self.old.get(key))
    }

    fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.capacity {
            self.old = std::mem::take(&mut self.current);
        }
        self.old.remove(&key);
        self.current.insert(key, value);
    }

    fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.current.remove(key);
        self.old.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventInput, Limits};

    /// A valid event of correlation `corr` below a parent never stored.
    fn child_event() -> NewEvent {
        let input = EventInput {
            event_type: "t.x.y".into(),
            event_category: "c".into(),
            event_action: "a".into(),
            event_outcome: "success".into(),
            correlation_id: "corr".into(),
            parent_event_id: Some(Uuid::now_v7()),
            event_data: serde_json::json!({}),
            ..EventInput::default()
        };
        input.validate(&Limits::default(), chrono::Utc::now()).expect("valid")
    }

    /// `count` queued writes; their answers are not awaited.
    fn queue_writes(queue: &mpsc::UnboundedSender<Pending>, count: usize) {
        for _ in 0..count {
            let (reply, _) = oneshot::channel();
            queue
                .send(Pending {
                    event: child_event(),
                    reply,
                })
                .expect("queued");
        }
    }

    #[tokio::test]
    async fn a_group_waits_for_the_group_in_flight_and_takes_in_the_writes_queued_meanwhile() {
        let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT as usize));
        let (queue, mut receiver) = mpsc::unbounded_channel();
        // Nothing else in flight: the group goes at once.
        let _own = slots.clone().acquire_owned().await.unwrap();
        let mut group = Vec::new();
        wait_for_groups_in_flight(&slots, &mut receiver, &mut group).await;
        assert!(group.is_empty());

        // Another group in flight: this one waits, growing, until the other is committed.
        let in_flight = slots.clone().acquire_owned().await.unwrap();
        queue_writes(&queue, 1);
        let waiting = tokio::spawn(async move {
            let mut group = Vec::new();
            wait_for_groups_in_flight(&slots, &mut receiver, &mut group).await;
            (group.len(), slots, receiver)
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
            queue_writes(&queue, 2);
        }
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "a group that is not full waits for the group in flight"
        );
        drop(in_flight);
        let (taken, slots, mut receiver) = waiting.await.unwrap();
        assert_eq!(taken, 7, "every write queued while it waited");
        assert_eq!(slots.available_permits(), 1, "only its own slot stays taken");

        // A full group goes out beside the one in flight.
        let _in_flight = slots.clone().acquire_owned().await.unwrap();
        queue_writes(&queue, MAX_GROUP + 5);
        let mut group = Vec::new();
        wait_for_groups_in_flight(&slots, &mut receiver, &mut group).await;
        assert_eq!(group.len(), MAX_GROUP);
        assert_eq!(receiver.len(), 5, "the rest waits for the next group");
    }

    #[test]
    fn the_insert_binds_every_column_of_an_event_in_the_entity_order() {
        use sea_orm::{Iden, Iterable};
        let entity: Vec<String> = crate::entity::audit_event::Column::iter()
            .map(|c| c.to_string())
            .collect();
        let bound: Vec<&str> = ROW_COLUMNS.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(bound, entity);
        let event = child_event();
        let rows = [to_model(event.clone(), None), to_model(event, None)];
        let mut args = PgArguments::default();
        bind_rows(&mut args, &rows).expect("bound");
        assert_eq!(args.len(), ROW_COLUMNS.len(), "one array per column, whatever the rows");
        let reading = inserted_rows(true);
        assert!(reading.contains("COALESCE(incoming.parent_event_date, parent.event_date)"));
        assert!(reading.contains("ORDER BY event_date DESC LIMIT 1) AS parent ON TRUE"));
        for sql in [reading, inserted_rows(false)] {
            assert!(sql.contains("$40::text[]) AS incoming(event_id, "), "{sql}");
            assert!(!sql.contains("$41"), "{sql}");
        }
    }

    /// The `$n` placeholders of `sql`, in order of appearance.
    fn placeholders(sql: &str) -> Vec<usize> {
        sql.split('$')
            .skip(1)
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect()
    }

    #[test]
    fn each_form_of_the_compare_and_set_statement_numbers_the_arguments_it_is_bound() {
        let event = child_event();
        let guessed_date = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).expect("a date");
        for (read, check) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut row = to_model(event.clone(), None);
            row.parent_event_date = (!read).then_some(guessed_date);
            let plan = GroupPlan {
                results: Vec::new(),
                guessed: row
                    .parent_event_id
                    .filter(|_| check)
                    .map(|parent| (parent, guessed_date))
                    .into_iter()
                    .collect(),
                rows: vec![row],
                heads: vec![ChainHead {
                    correlation_id: "corr".into(),
                    last_seq: 1,
                    last_hash: "h".into(),
                }],
                before: BTreeMap::new(),
            };
            let statement = compare_and_set_statement(&plan).expect("bound");
            let mut numbers = placeholders(&statement.sql);
            numbers.sort_unstable();
            numbers.dedup();
            // Each group of arguments where it is bound: the guesses right after the rows, then
            // the heads' arrays, then the two counts.
            let n = ROW_COLUMNS.len() + if check { 3 } else { 0 };
            let bound = statement.args.len();
            assert_eq!(bound, n + 6);
            assert_eq!(numbers, (1..=bound).collect::<Vec<_>>(), "read {read}, check {check}");
            assert_eq!(
                statement.sql.contains(&format!(
                    "unnest(${}::uuid[], ${}::date[]) AS guessed(id, date)",
                    n - 2,
                    n - 1
                )),
                check
            );
            assert_eq!(
                statement.sql.contains(&format!("WHERE later.event_date > ${n}::date")),
                check
            );
            assert!(statement.sql.contains(&format!(
                "unnest(${}::text[], ${}::bigint[], ${}::text[], ${}::bigint[])",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            )));
            assert!(statement.sql.contains(&format!(
                "(SELECT count(*) FROM moved) = ${} AND (SELECT count(*) FROM written) = ${}",
                n + 5,
                n + 6
            )));
            assert_eq!(statement.sql.contains("COALESCE(incoming.parent_event_date"), read);
            let kept = compare_and_set_sql(read, check);
            assert_eq!(statement.sql, kept);
            assert!(std::ptr::eq(kept, compare_and_set_sql(read, check)), "built once");
        }
    }

    #[test]
    fn recent_entries_stay_and_old_generations_go() {
        let mut recent = Recent::new(2);
        recent.insert(1, "a");
        recent.insert(2, "b");
        recent.insert(3, "c");
        assert_eq!((recent.get(&1), recent.get(&3)), (Some(&"a"), Some(&"c")));
        recent.insert(4, "d");
        recent.insert(5, "e");
        assert_eq!(recent.get(&1), None, "dropped with its generation");
        assert_eq!(recent.get(&4), Some(&"d"));
        recent.insert(4, "D");
        assert_eq!(recent.get(&4), Some(&"D"));
        recent.remove(&4);
        assert_eq!(recent.get(&4), None);
        assert!(recent.current.len() + recent.old.len() <= 4);
    }
}
