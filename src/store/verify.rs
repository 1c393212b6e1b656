//! The reads of `auditgraph verify`: correlations a page at a time with their events and heads,
//! chain heads left without events, the log's queue, and the dates and hashes of events named by
//! leaves. They serve that offline audit alone and never write.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement};
use uuid::Uuid;

use super::chain::read_heads;
use super::{ChainHead, Store, StoreError};
use crate::entity::audit_event::{Column, Entity, Model};

/// Ids bound in one `IN (...)`, well below either engine's limit on bound values.
const IDS_PER_QUERY: usize = 1_000;

/// The date and hash (if any) of each stored event, by event id.
type DatedHashes = HashMap<Uuid, Vec<(NaiveDate, Option<String>)>>;

impl Store {
    /// Up to `limit` correlations after `after` (from the first when `None`), in order: the index
    /// on `(correlation_id, …)` gives them without reading the whole table.
    #[tracing::instrument(skip(self))]
    pub async fn correlations_after(&self, after: Option<&str>, limit: u64) -> Result<Vec<String>, StoreError> {
        let mut query = Entity::find()
            .select_only()
            .column(Column::CorrelationId)
            .distinct()
            .order_by_asc(Column::CorrelationId)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(Column::CorrelationId.gt(after));
        }
        Ok(query.into_tuple::<String>().all(self.db()).await?)
    }

    /// Every stored event of these correlations, grouped by correlation, in no particular order.
    #[tracing::instrument(skip_all, fields(correlations = correlations.len()))]
    pub async fn events_of_correlations(
        &self,
        correlations: &[String],
    ) -> Result<HashMap<String, Vec<Model>>, StoreError> {
        let backend = self.backend();
        let mut events: HashMap<String, Vec<Model>> = HashMap::new();
        for chunk in correlations.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT e.* FROM {} JOIN audit_events e ON e.correlation_id = wanted.id",
                super::wanted_ids(backend, chunk.len(), "text")
            );
            let values = chunk.iter().map(|c| sea_orm::Value::from(c.clone()));
            for row in self
                .db()
                .query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                let row = <Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
                events.entry(row.correlation_id.clone()).or_default().push(row);
            }
        }
        Ok(events)
    }

    /// The recorded heads of these correlations, by correlation; one without a head is absent.
    #[tracing::instrument(skip_all, fields(correlations = correlations.len()))]
    pub async fn chain_heads_of(&self, correlations: &[String]) -> Result<HashMap<String, ChainHead>, StoreError> {
        let ids: BTreeSet<&str> = correlations.iter().map(String::as_str).collect();
        Ok(read_heads(self.db(), &ids).await?.into_iter().collect())
    }

    /// The heads whose correlation has no stored event, in correlation order: what is left of a chain
    /// whose events were all removed.
    #[tracing::instrument(skip(self))]
    pub async fn orphan_chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT h.correlation_id, h.last_seq, h.last_hash FROM audit_chain_heads h \
                 WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.correlation_id = h.correlation_id) \
                 ORDER BY h.correlation_id",
            ))
            .await?;
        let mut heads = Vec::with_capacity(rows.len());
        for row in rows {
            heads.push(ChainHead {
                correlation_id: row.try_get("", "correlation_id")?,
                last_seq: row.try_get("", "last_seq")?,
                last_hash: row.try_get("", "last_hash")?,
            });
        }
        Ok(heads)
    }

    /// How many stored events carry no hash, and how many did when hash chains began (`None` when
    /// that was not recorded).
    #[tracing::instrument(skip(self))]
    pub async fn unhashed_events(&self) -> Result<(u64, Option<u64>), StoreError> {
        let backend = self.backend();
        let now = self
            .db()
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS n FROM audit_events WHERE event_hash IS NULL",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let then = self
            .db()
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT MIN(unhashed_events) AS n FROM audit_chain_baseline",
            ))
            .await?
            .map(|row| row.try_get::<Option<i64>>("", "n"))
            .transpose()?
            .flatten();
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok((count(now), then.map(count)))
    }

    /// The id and date of every event waiting for the sequencer.
    #[tracing::instrument(skip(self))]
    pub async fn pending_log_events(&self) -> Result<HashSet<(Uuid, NaiveDate)>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                self.backend(),
                "SELECT event_id, event_date FROM audit_log_pending",
            ))
            .await?;
        let mut pending = HashSet::with_capacity(rows.len());
        for row in rows {
            pending.insert((row.try_get("", "event_id")?, row.try_get("", "event_date")?));
        }
        Ok(pending)
    }

    /// The date and hash of each stored event with one of these ids, by id: more than one when an
    /// id is stored under several dates, none when it is not stored.
    #[tracing::instrument(skip_all, fields(ids = ids.len()))]
    pub async fn event_hashes_of(&self, ids: &[Uuid]) -> Result<DatedHashes, StoreError> {
        let backend = self.backend();
        let mut found = DatedHashes::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT e.event_id, e.event_date, e.event_hash FROM {} JOIN audit_events e ON e.event_id = wanted.id",
                super::wanted_ids(backend, chunk.len(), "uuid")
            );
            let values = chunk.iter().map(|id| sea_orm::Value::from(*id));
            for row in self
                .db()
                .query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                let id: Uuid = row.try_get("", "event_id")?;
                found
                    .entry(id)
                    .or_default()
                    .push((row.try_get("", "event_date")?, row.try_get("", "event_hash")?));
            }
        }
        Ok(found)
    }
}
