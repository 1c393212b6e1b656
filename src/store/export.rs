//! Reading events for an export, in the transparency log's order.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

use super::{Store, StoreError, signed, statement};
use crate::entity::audit_event::Model;

/// Which events an export holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportFilter {
    /// Only this correlation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only this category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_category: Option<String>,
    /// Only events at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// Only events at or before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
}

impl ExportFilter {
    /// The filter's conditions on the row `e`, with placeholders from `$first`, and their values.
    fn conditions(&self, first: usize) -> (String, Vec<Value>) {
        let mut sql = String::new();
        let mut values: Vec<Value> = Vec::new();
        let mut add = |condition: &str, value: Value| {
            let n = first + values.len();
            sql.push_str(&format!(" AND {}", condition.replace('#', &format!("${n}"))));
            values.push(value);
        };
        if let Some(c) = &self.correlation_id {
            add("e.correlation_id = #", c.clone().into());
        }
        if let Some(c) = &self.event_category {
            add("e.event_category = #", c.clone().into());
        }
        if let Some(t) = self.start_time {
            add("e.event_timestamp >= #", t.into());
        }
        if let Some(t) = self.end_time {
            add("e.event_timestamp <= #", t.into());
        }
        (sql, values)
    }
}

/// Rows of `e.*` with a leading `leaf_index`, as events with their leaves.
fn logged(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<(u64, Model)>, StoreError> {
    rows.iter()
        .map(|row| {
            let index: i64 = row.try_get("", "leaf_index")?;
            Ok((u64::try_from(index).unwrap_or(0), Model::from_query_result(row, "")?))
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .map_err(StoreError::from)
}

impl Store {
    /// The events matching `filter` whose leaves lie in `from..to`, in leaf order; the first
    /// `limit` of them when given (one correlation's events are found by its index and read a
    /// page at a time; a whole log is read in ranges of leaves).
    pub async fn export_logged(
        &self,
        filter: &ExportFilter,
        from: u64,
        to: u64,
        limit: Option<u64>,
    ) -> Result<Vec<(u64, Model)>, StoreError> {
        let mut values: Vec<Value> = vec![signed(from).into(), signed(to).into()];
        let limit_clause = match limit {
            Some(limit) => {
                values.push(signed(limit).into());
                " LIMIT $3"
            }
            None => "",
        };
        let (conditions, filter_values) = filter.conditions(values.len() + 1);
        values.extend(filter_values);
        let sql = format!(
            "SELECT l.leaf_index AS leaf_index, e.* FROM audit_log_leaves l \
             JOIN audit_events e ON e.event_id = l.event_id AND e.event_date = l.event_date \
             WHERE l.leaf_index >= $1 AND l.leaf_index < $2{conditions} ORDER BY l.leaf_index{limit_clause}"
        );
        logged(self.db().query_all_raw(statement(self.backend(), &sql, values)).await?)
    }

    /// The next `limit` events of `filter` that carry no hash (stored before hash chains, so not
    /// in the log), after `after` in (timestamp, id) order.
    pub async fn export_unlogged(
        &self,
        filter: &ExportFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Model>, StoreError> {
        let mut values: Vec<Value> = vec![signed(limit).into()];
        let keyset = match after {
            Some((t, id)) => {
                values.push(t.into());
                values.push(id.into());
                " AND (e.event_timestamp, e.event_id) > ($2, $3)"
            }
            None => "",
        };
        let (conditions, filter_values) = filter.conditions(values.len() + 1);
        values.extend(filter_values);
        let sql = format!(
            "SELECT e.* FROM audit_events e WHERE e.event_hash IS NULL{keyset}{conditions} \
             ORDER BY e.event_timestamp, e.event_id LIMIT $1"
        );
        let rows = self.db().query_all_raw(statement(self.backend(), &sql, values)).await?;
        rows.iter()
            .map(|row| Model::from_query_result(row, ""))
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// How many events match `filter` (for REST's limit and a progress bar).
    pub async fn export_count(&self, filter: &ExportFilter) -> Result<u64, StoreError> {
        let (conditions, values) = filter.conditions(1);
        let sql = format!("SELECT count(*) AS n FROM audit_events e WHERE TRUE{conditions}");
        let row = self.db().query_one_raw(statement(self.backend(), &sql, values)).await?;
        let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
