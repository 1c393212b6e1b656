//! Hash chains: linking new events to their correlation's chain inside the write transaction,
//! and reading a chain back for verification.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    Statement, Value,
};

use super::{Store, StoreError};
use crate::domain::chain::ChainHasher;
use crate::entity::audit_event::{Column, Entity, Model};

/// The last link of a correlation's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The correlation.
    pub correlation_id: String,
    /// The position of its last event.
    pub last_seq: i64,
    /// The hash of its last event.
    pub last_hash: String,
}

impl ChainHead {
    /// A head as a statement returns it (`correlation_id`, `last_seq`, `last_hash`).
    pub(crate) fn from_row(row: &sea_orm::QueryResult) -> Result<Self, sea_orm::DbErr> {
        Ok(Self {
            correlation_id: row.try_get("", "correlation_id")?,
            last_seq: row.try_get("", "last_seq")?,
            last_hash: row.try_get("", "last_hash")?,
        })
    }
}

/// The statement that takes the chain locks of `count` correlations (PostgreSQL), bound to the
/// correlation ids in any order (sorted by bytes, the order of the `BTreeSet` they are chunked from).
pub(crate) fn lock_sql(count: usize) -> String {
    super::advisory_locks_sql(count, 1)
}

/// The statement that reads the heads of `count` correlations: on PostgreSQL bound as one text
/// array, elsewhere as `count` texts.
///
/// On PostgreSQL each id is looked up in the primary key on its own (`unnest` joined `LATERAL`;
/// the `LIMIT`, one row for a primary key anyway, keeps the planner from turning the lookups back
/// into a join it may hash), so the statement's text and plan do not depend on how many ids it
/// reads. Neither an `IN` list nor a joined `VALUES` list did: under generic plans an `IN` list of
/// a thousand parameters was planned as a sequential scan testing each row against every
/// parameter (seen importing 5,000 correlations a batch: 2 s a statement once the table held
/// 50,000 heads), and a `VALUES` list of 500 was hash-joined with a sequential scan of the whole
/// table (seen in `bench serve`: 9.8 ms per `createAuditEvents` of 500 with 108,765 heads, against
/// 0.56 ms probing the index).
pub(crate) fn read_heads_sql(backend: DatabaseBackend, count: usize) -> String {
    match backend {
        DatabaseBackend::Postgres => {
            "SELECT h.correlation_id, h.last_seq, h.last_hash FROM unnest($1::text[]) AS wanted(id) \
             CROSS JOIN LATERAL (SELECT * FROM audit_chain_heads h WHERE h.correlation_id = wanted.id LIMIT 1) AS h"
                .to_string()
        }
        _ => format!(
            "SELECT correlation_id, last_seq, last_hash FROM audit_chain_heads WHERE correlation_id IN ({})",
            super::placeholders(backend, 1, count)
        ),
    }
}

/// The statement that records `count` heads, bound as (correlation_id, last_seq, last_hash) each.
pub(crate) fn save_heads_sql(backend: DatabaseBackend, count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|i| match backend {
            DatabaseBackend::Postgres => format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3),
            _ => "(?, ?, ?)".to_string(),
        })
        .collect();
    format!(
        "INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) VALUES {} \
         ON CONFLICT (correlation_id) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash",
        rows.join(", ")
    )
}

/// The statement that reads the heads of these correlations.
fn heads_statement(backend: DatabaseBackend, correlations: &[&str]) -> Statement {
    let sql = read_heads_sql(backend, correlations.len());
    let owned = correlations.iter().map(|c| c.to_string());
    let values: Vec<Value> = match backend {
        DatabaseBackend::Postgres => vec![owned.collect::<Vec<String>>().into()],
        _ => owned.map(Value::from).collect(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

impl super::Store {
    /// The statement that reads the chain heads of these correlations (public so that tests can
    /// EXPLAIN it).
    pub fn heads_statement(&self, correlations: &[&str]) -> Statement {
        heads_statement(self.backend(), correlations)
    }
}

/// The heads of these correlations, as stored.
pub(crate) async fn read_heads(
    db: &impl ConnectionTrait,
    correlations: &BTreeSet<&str>,
) -> Result<BTreeMap<String, ChainHead>, StoreError> {
    let backend = db.get_database_backend();
    let mut heads = BTreeMap::new();
    let ids: Vec<&str> = correlations.iter().copied().collect();
    for chunk in ids.chunks(1_000) {
        for row in db.query_all_raw(heads_statement(backend, chunk)).await? {
            let head = ChainHead::from_row(&row)?;
            heads.insert(head.correlation_id.clone(), head);
        }
    }
    Ok(heads)
}

/// Makes `model` the next link of its correlation's chain and moves the head.
pub(crate) fn extend(hasher: &ChainHasher, heads: &mut BTreeMap<String, ChainHead>, model: &mut Model) {
    let previous = heads
        .get(&model.correlation_id)
        .map(|h| (h.last_seq, h.last_hash.clone()));
    hasher.link(model, previous.as_ref().map(|(seq, hash)| (*seq, hash.as_str())));
    advance(heads, model);
}

fn advance(heads: &mut BTreeMap<String, ChainHead>, model: &Model) {
    let head = ChainHead {
        correlation_id: model.correlation_id.clone(),
        last_seq: model.chain_seq.unwrap_or(1),
        last_hash: model.event_hash.clone().unwrap_or_default(),
    };
    heads.insert(head.correlation_id.clone(), head);
}

/// A correlation's chain as stored: its events, those retention runs deleted, its head.
#[derive(Clone, Debug)]
pub struct StoredChain {
    /// The stored events, in chain order.
    pub events: Vec<Model>,
    /// The events retention runs deleted, as they recorded them.
    pub purged: Vec<super::Purged>,
    /// The chain's recorded head.
    pub head: Option<ChainHead>,
}

/// What happened to the chain link an imported event carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportedLink {
    /// It carried no hash: it was linked like a live write.
    Chained,
    /// It carried a link of this server's recipe that continues its chain: kept, verified.
    Kept,
    /// It carried a hash that cannot be verified here (another recipe, or a link that does not
    /// continue the chain): the hash is kept as it came, outside the chain, with the reason.
    Unverified,
}

/// Links an imported event: keeps and verifies a carried link of this recipe (with the submitter
/// it carries, which the hash covers; `chain_note` names the operator), keeps a carried hash that
/// does not verify apart from the chain (`chain_note` says why), and chains the others as
/// submitted by `operator`.
pub(crate) fn link_imported(
    hasher: &ChainHasher,
    heads: &mut BTreeMap<String, ChainHead>,
    model: &mut Model,
    operator: &str,
) -> ImportedLink {
    let Some(carried) = model.event_hash.clone() else {
        model.submitted_by = Some(operator.to_string());
        extend(hasher, heads, model);
        return ImportedLink::Chained;
    };
    let head = heads.get(&model.correlation_id);
    let expected_seq = head.map_or(1, |h| h.last_seq + 1);
    let expected_previous = head.map(|h| h.last_hash.clone());
    let reason = if model.chain_seq.is_none() {
        Some("it carries no chain position (another system's recipe)".to_string())
    } else if model.chain_seq != Some(expected_seq) {
        Some(format!(
            "it claims chain position {}, but its chain continues at {expected_seq}",
            model.chain_seq.unwrap_or_default()
        ))
    } else if model.previous_event_hash != expected_previous {
        Some("its previous_event_hash is not the hash its chain ends with".to_string())
    } else {
        match hasher.hash(model) {
            Ok(hash) if hash == carried => None,
            Ok(_) => Some("its content does not match its hash".to_string()),
            Err(reason) => Some(reason),
        }
    };
    match reason {
        None => {
            advance(heads, model);
            model.chain_note = Some(format!("imported by {operator}; its chain link was verified on import"));
            ImportedLink::Kept
        }
        Some(reason) => {
            model.chain_seq = None;
            model.submitted_by = Some(operator.to_string());
            model.chain_note = Some(format!(
                "imported by {operator} with a hash this server cannot verify: {reason}"
            ));
            ImportedLink::Unverified
        }
    }
}

/// Records the new heads of the chains a batch extended.
pub(crate) async fn save_heads(txn: &DatabaseTransaction, heads: &[ChainHead]) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    for chunk in heads.chunks(500) {
        let sql = save_heads_sql(backend, chunk.len());
        let values = chunk.iter().flat_map(|h| {
            [
                Value::from(h.correlation_id.clone()),
                Value::from(h.last_seq),
                Value::from(h.last_hash.clone()),
            ]
        });
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

impl Store {
    /// Makes `models` (in batch order) the next links of their correlations' chains, inside the
    /// write transaction `txn`, and returns the chains' new heads (to be saved after the rows).
    ///
    /// On PostgreSQL a transaction-scoped advisory lock per correlation, taken in sorted order,
    /// serialises the writers of one correlation (across connections and server processes) until
    /// commit, also for a correlation that has no head yet; writers of other correlations take
    /// other locks and never wait. SQLite has one writer at a time already.
    pub(crate) async fn link_chains(
        &self,
        txn: &DatabaseTransaction,
        models: &mut [&mut Model],
    ) -> Result<Vec<ChainHead>, StoreError> {
        if models.is_empty() {
            return Ok(Vec::new());
        }
        let owned: BTreeSet<String> = models.iter().map(|m| m.correlation_id.clone()).collect();
        let correlations: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
        if self.backend() == DatabaseBackend::Postgres {
            let ids: Vec<&str> = correlations.iter().copied().collect();
            for chunk in ids.chunks(1_000) {
                let stmt = Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    lock_sql(chunk.len()),
                    chunk.iter().map(|c| Value::from(c.to_string())),
                );
                txn.execute_raw(stmt).await?;
            }
        }
        let mut heads = read_heads(txn, &correlations).await?;
        for model in models.iter_mut() {
            extend(&self.inner.hasher, &mut heads, model);
        }
        Ok(correlations.iter().filter_map(|c| heads.remove(*c)).collect())
    }

    /// Every stored event of a correlation and its head, read in one snapshot (a write that
    /// commits between the two reads would otherwise look like a removed tail).
    pub async fn chain_of(&self, correlation_id: &str) -> Result<(Vec<Model>, Option<ChainHead>), StoreError> {
        let chain = self.stored_chain(correlation_id).await?;
        Ok((chain.events, chain.head))
    }

    /// Every stored event of a correlation, the events retention runs deleted from it, and its
    /// head, read in one snapshot (a purge that commits between the reads would otherwise look
    /// like events removed without a record).
    pub async fn stored_chain(&self, correlation_id: &str) -> Result<StoredChain, StoreError> {
        use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
        let (isolation, access) = match self.backend() {
            DatabaseBackend::Postgres => (Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)),
            _ => (None, None),
        };
        let txn = self.db().begin_with_config(isolation, access).await?;
        let events = Entity::find()
            .filter(Column::CorrelationId.eq(correlation_id))
            .order_by_asc(Column::ChainSeq)
            .order_by_asc(Column::EventId)
            .all(&txn)
            .await?;
        let mut heads = read_heads(&txn, &BTreeSet::from([correlation_id])).await?;
        let mut purged = super::lifecycle::purged_in(&txn, &[correlation_id.to_string()]).await?;
        txn.commit().await?;
        Ok(StoredChain {
            events,
            purged: purged.remove(correlation_id).unwrap_or_default(),
            head: heads.remove(correlation_id),
        })
    }

    /// The hasher new events are linked with (and chains verified with).
    pub fn hasher(&self) -> &crate::domain::chain::ChainHasher {
        &self.inner.hasher
    }
}
