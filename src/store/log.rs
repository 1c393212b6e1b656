//! The transparency log's storage: the sequencer's rounds, perfect-subtree nodes, leaves and
//! signed checkpoints.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError, placeholders};
use crate::domain::EventKey;
use crate::domain::merkle::{self, Hash, NodeId};
use crate::entity::audit_event::Model;

/// The advisory lock of the sequencer (PostgreSQL): one process sequences at a time.
const SEQUENCER_LOCK: i64 = 0x6175_6469_746c_6f67; // "auditlog"

/// The PostgreSQL notification channel on which the sequencer announces the log's new size.
pub const LOG_CHANNEL: &str = "auditgraph_log";

/// Entries that leave the log's queue between two vacuums of its table (PostgreSQL).
pub const VACUUM_QUEUE_EVERY: u64 = 10_000;

/// One leaf of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLeaf {
    /// Its position in the log, from 0.
    pub index: u64,
    /// The event it stands for.
    pub event_id: Uuid,
    /// That event's date (its key with the id).
    pub event_date: NaiveDate,
    /// `SHA-256(0x00 || event_hash as UTF-8)`.
    pub hash: Hash,
}

/// A checkpoint as stored: the signed note and what it commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Leaves the tree held.
    pub tree_size: u64,
    /// Its root hash.
    pub root_hash: Hash,
    /// The signed note (C2SP checkpoint body and signature lines).
    pub note: String,
    /// When it was published.
    pub created_at: DateTime<Utc>,
}

/// The leaf hash of a stored event: its `event_hash` text as the leaf data.
pub fn event_leaf(event_hash: &str) -> Hash {
    merkle::leaf_hash(event_hash.as_bytes())
}

fn hash_of(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    Hash::try_from(bytes.as_slice()).map_err(|_| StoreError::Internal("a stored log hash is not 32 bytes".into()))
}

fn index(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// One round of the sequencer: takes up to `limit` committed pending events in queue order,
    /// gives them the next leaf indexes, stores their leaves and the subtree nodes they complete,
    /// and removes them from the queue, all in one transaction. Returns how many leaves it added:
    /// 0 when nothing is pending or another process is sequencing (PostgreSQL: a transaction
    /// advisory lock, so a process that dies releases it and another takes over).
    pub async fn sequence_pending(&self, limit: u64) -> Result<u64, StoreError> {
        self.sequence_round(limit, false).await
    }

    /// [`Store::sequence_pending`], waiting for a round of another process to end rather than
    /// leaving the events to it: once this returns, every event committed before it was called
    /// has its leaf.
    pub async fn sequence_pending_now(&self, limit: u64) -> Result<u64, StoreError> {
        self.sequence_round(limit, true).await
    }

    async fn sequence_round(&self, limit: u64, wait: bool) -> Result<u64, StoreError> {
        let backend = self.backend();
        // An idle log costs one read, not a write transaction (which on SQLite takes the lock).
        // Through the queue's primary key: the rows removed from the queue stay in its table
        // until it is vacuumed, and a sequential scan would read every one of them.
        let any = self
            .db()
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT 1 AS one FROM audit_log_pending ORDER BY pending_id LIMIT 1",
            ))
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let write = self.begin_write().await?;
        let txn = &write.txn;
        if backend == DatabaseBackend::Postgres {
            let lock = if wait {
                "SELECT pg_advisory_xact_lock($1) IS NOT NULL AS locked"
            } else {
                "SELECT pg_try_advisory_xact_lock($1) AS locked"
            };
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(backend, lock, [SEQUENCER_LOCK.into()]))
                .await?;
            let locked: bool = match row {
                Some(row) => row.try_get("", "locked")?,
                None => false,
            };
            if !locked {
                return Ok(0);
            }
        }
        let pending = txn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT pending_id, event_id, event_date, event_hash FROM audit_log_pending \
                     ORDER BY pending_id LIMIT {}",
                    limit.max(1)
                ),
                [],
            ))
            .await?;
        if pending.is_empty() {
            return Ok(0);
        }
        // An event queued twice (a row replaced around the triggers) keeps its first leaf; the
        // second queue entry is dropped, and said, instead of stopping every later round.
        let queued: Vec<Uuid> = pending
            .iter()
            .map(|row| row.try_get::<Uuid>("", "event_id"))
            .collect::<Result<_, _>>()?;
        let mut logged: std::collections::HashSet<(Uuid, NaiveDate)> = std::collections::HashSet::new();
        for chunk in queued.chunks(1_000) {
            let sql = format!(
                "SELECT event_id, event_date FROM audit_log_leaves WHERE event_id IN ({})",
                placeholders(backend, 1, chunk.len())
            );
            let values = chunk.iter().map(|id| Value::from(*id));
            for row in txn
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                logged.insert((row.try_get("", "event_id")?, row.try_get("", "event_date")?));
            }
        }
        let mut size = log_size(txn).await?;
        // The peaks of the tree (its perfect subtrees, left to right) are every node later appends
        // of this round can read: each new parent joins a peak with what the round built.
        let mut nodes = read_nodes(txn, &merkle::root_nodes(size)).await?;
        let mut leaves: Vec<Value> = Vec::new();
        let mut new_nodes: Vec<Value> = Vec::new();
        let mut done: Vec<Value> = Vec::new();
        for row in &pending {
            let pending_id: i64 = row.try_get("", "pending_id")?;
            let event_id: Uuid = row.try_get("", "event_id")?;
            let event_date: NaiveDate = row.try_get("", "event_date")?;
            let event_hash: String = row.try_get("", "event_hash")?;
            done.push(pending_id.into());
            if !logged.insert((event_id, event_date)) {
                tracing::error!(
                    event.id = %event_id,
                    "an event was queued for the transparency log a second time (stored again around the triggers?); \
                     it keeps its first leaf: run `auditgraph verify`"
                );
                continue;
            }
            let leaf = event_leaf(&event_hash);
            let created = merkle::append(&nodes, size, leaf)
                .map_err(|e| StoreError::Internal(format!("appending leaf {size}: {e:?}")))?;
            for (level, node_index, hash) in created {
                nodes.insert((level, node_index), hash);
                new_nodes.extend([i32::from(level).into(), signed(node_index).into(), hash.to_vec().into()]);
            }
            leaves.extend([
                signed(size).into(),
                event_id.into(),
                event_date.into(),
                leaf.to_vec().into(),
            ]);
            size += 1;
        }
        insert_rows(
            txn,
            "audit_log_leaves (leaf_index, event_id, event_date, leaf_hash)",
            4,
            leaves,
        )
        .await?;
        insert_rows(txn, "audit_log_nodes (level, node_index, hash)", 3, new_nodes).await?;
        for chunk in done.chunks(1_000) {
            let sql = format!(
                "DELETE FROM audit_log_pending WHERE pending_id IN ({})",
                placeholders(backend, 1, chunk.len())
            );
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, chunk.to_vec()))
                .await?;
        }
        if backend == DatabaseBackend::Postgres {
            // Wakes the live feeds of every server process on this database (delivered at commit).
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_notify($1, $2)",
                [LOG_CHANNEL.into(), size.to_string().into()],
            ))
            .await?;
        }
        write.txn.commit().await?;
        self.vacuum_queue_after(pending.len() as u64).await;
        Ok(pending.len() as u64)
    }

    /// PostgreSQL: vacuums the log's queue once [`VACUUM_QUEUE_EVERY`] entries have left it
    /// since the last time. Every event passes through the queue, so its table holds mostly rows
    /// removed from it; where autovacuum is off, or slower than the writes, they pile up and each
    /// round reads past them (1.2 million seen under the benchmark, which made the check for an
    /// idle queue take 8 ms). Vacuuming a queue that size took 0.6 s. A failure is only logged:
    /// autovacuum may still do it.
    async fn vacuum_queue_after(&self, removed: u64) {
        if self.backend() != DatabaseBackend::Postgres {
            return;
        }
        let total = self.inner.dequeued.fetch_add(removed, Ordering::Relaxed) + removed;
        if total < VACUUM_QUEUE_EVERY {
            return;
        }
        self.inner.dequeued.store(0, Ordering::Relaxed);
        let vacuum = Statement::from_string(DatabaseBackend::Postgres, "VACUUM audit_log_pending");
        if let Err(error) = self.db().execute_raw(vacuum).await {
            tracing::warn!(%error, "the log's queue could not be vacuumed");
        }
    }

    /// How many leaves the log holds.
    pub async fn log_size(&self) -> Result<u64, StoreError> {
        log_size(self.db()).await
    }

    /// How many events wait for the sequencer.
    pub async fn log_pending(&self) -> Result<u64, StoreError> {
        let row = self
            .db()
            .query_one_raw(Statement::from_string(
                self.backend(),
                "SELECT COUNT(*) AS n FROM audit_log_pending",
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.map_or(0, index))
    }

    /// The stored perfect-subtree hashes among `ids`.
    pub async fn log_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        read_nodes(self.db(), ids).await
    }

    /// The leaf of an event, if it has been sequenced.
    pub async fn log_leaf_of(&self, event_id: Uuid) -> Result<Option<LogLeaf>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_sql_and_values(
                self.backend(),
                format!(
                    "SELECT leaf_index, event_id, event_date, leaf_hash FROM audit_log_leaves WHERE event_id = {}",
                    placeholders(self.backend(), 1, 1)
                ),
                [event_id.into()],
            ))
            .await?;
        rows.first().map(leaf_of).transpose()
    }

    /// The leaf hashes recorded for these events (those sequenced).
    pub async fn log_leaves_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Hash>, StoreError> {
        let backend = self.backend();
        let mut found = HashMap::new();
        for chunk in ids.chunks(1_000) {
            let sql = format!(
                "SELECT leaf_index, event_id, event_date, leaf_hash FROM audit_log_leaves WHERE event_id IN ({})",
                placeholders(backend, 1, chunk.len())
            );
            let values = chunk.iter().map(|id| Value::from(*id));
            for row in self
                .db()
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                let leaf = leaf_of(&row)?;
                found.insert(leaf.event_id, leaf.hash);
            }
        }
        Ok(found)
    }

    /// The events of leaves `[from, from + count)`, in log order, with their leaf indexes, and
    /// the position after the last leaf read (`from` when there was none): two statements, the
    /// leaves and then their events by key.
    pub async fn log_events(&self, from: u64, count: u64) -> Result<(Vec<(u64, Model)>, u64), StoreError> {
        let leaves = self.log_leaves(from, count).await?;
        let Some(last) = leaves.last() else {
            return Ok((Vec::new(), from));
        };
        let next = last.index + 1;
        let keys: Vec<EventKey> = leaves
            .iter()
            .map(|leaf| EventKey {
                id: leaf.event_id,
                date: leaf.event_date,
            })
            .collect();
        let mut events = self.events_by_keys(&keys, super::Columns::ALL).await?;
        let mut found = Vec::with_capacity(leaves.len());
        for (leaf, key) in leaves.iter().zip(keys) {
            // A logged event is never deleted (the triggers refuse it); one missing was removed
            // around them, which `auditgraph verify` reports. Its place is skipped, not waited on.
            match events.remove(&key) {
                Some(event) => found.push((leaf.index, event)),
                None => tracing::error!(
                    leaf = leaf.index,
                    event.id = %leaf.event_id,
                    "a logged event is missing from the events table; run `auditgraph verify`"
                ),
            }
        }
        Ok((found, next))
    }

    /// Leaves `[from, from + count)`, in order.
    pub async fn log_leaves(&self, from: u64, count: u64) -> Result<Vec<LogLeaf>, StoreError> {
        let backend = self.backend();
        let rows = self
            .db()
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT leaf_index, event_id, event_date, leaf_hash FROM audit_log_leaves \
                     WHERE leaf_index >= {} ORDER BY leaf_index LIMIT {}",
                    placeholders(backend, 1, 1),
                    count
                ),
                [signed(from).into()],
            ))
            .await?;
        rows.iter().map(leaf_of).collect()
    }

    /// The newest checkpoint, if any was published.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT tree_size, root_hash, note, created_at FROM audit_log_checkpoints ORDER BY tree_size DESC LIMIT 1",
            ))
            .await?;
        rows.first().map(checkpoint_of).transpose()
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT tree_size, root_hash, note, created_at FROM audit_log_checkpoints ORDER BY tree_size",
            ))
            .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    /// Stores a checkpoint; one of the same size stored already (by another process, or by this
    /// one's publisher meanwhile) stays. The row goes in only where none of its size exists: on
    /// SQLite the trigger that keeps the log append-only refuses a taken key before `ON CONFLICT`
    /// is considered, so a second checkpoint of one size failed the request that asked for it.
    pub async fn save_checkpoint(&self, tree_size: u64, root: &Hash, note: &str) -> Result<(), StoreError> {
        let backend = self.backend();
        let sql = format!(
            "INSERT INTO audit_log_checkpoints (tree_size, root_hash, note) SELECT {} \
             WHERE NOT EXISTS (SELECT 1 FROM audit_log_checkpoints WHERE tree_size = {}) \
             ON CONFLICT (tree_size) DO NOTHING",
            placeholders(backend, 1, 3),
            placeholders(backend, 4, 1)
        );
        let size = signed(tree_size);
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [size.into(), root.to_vec().into(), note.to_string().into(), size.into()],
            ))
            .await?;
        Ok(())
    }
}

async fn log_size(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COALESCE(MAX(leaf_index) + 1, 0) AS n FROM audit_log_leaves",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.map_or(0, index))
}

async fn read_nodes(db: &impl ConnectionTrait, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
    let backend = db.get_database_backend();
    let mut found = HashMap::new();
    for chunk in ids.chunks(500) {
        let pairs: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(backend, 2 * i + 1, 2)))
            .collect();
        let sql = format!(
            "SELECT CAST(level AS INTEGER) AS level, node_index, hash FROM audit_log_nodes \
             WHERE (level, node_index) IN (VALUES {})",
            pairs.join(", ")
        );
        let values = chunk
            .iter()
            .flat_map(|(level, node_index)| [Value::from(i32::from(*level)), Value::from(signed(*node_index))]);
        for row in db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let level: i32 = row.try_get("", "level")?;
            let node_index: i64 = row.try_get("", "node_index")?;
            let hash: Vec<u8> = row.try_get("", "hash")?;
            found.insert(
                (u8::try_from(level).unwrap_or_default(), index(node_index)),
                hash_of(hash)?,
            );
        }
    }
    Ok(found)
}

async fn insert_rows(
    txn: &impl ConnectionTrait,
    table: &str,
    width: usize,
    values: Vec<Value>,
) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    for chunk in values.chunks(width * 500) {
        let rows: Vec<String> = (0..chunk.len() / width)
            .map(|r| format!("({})", placeholders(backend, r * width + 1, width)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let sql = format!("INSERT INTO {table} VALUES {}", rows.join(", "));
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, chunk.to_vec()))
            .await?;
    }
    Ok(())
}

fn leaf_of(row: &sea_orm::QueryResult) -> Result<LogLeaf, StoreError> {
    Ok(LogLeaf {
        index: index(row.try_get("", "leaf_index")?),
        event_id: row.try_get("", "event_id")?,
        event_date: row.try_get("", "event_date")?,
        hash: hash_of(row.try_get("", "leaf_hash")?)?,
    })
}

fn checkpoint_of(row: &sea_orm::QueryResult) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tree_size: index(row.try_get("", "tree_size")?),
        root_hash: hash_of(row.try_get("", "root_hash")?)?,
        note: row.try_get("", "note")?,
        created_at: row.try_get("", "created_at")?,
    })
}
