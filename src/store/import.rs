//! Bulk loading of historical events: COPY on PostgreSQL, multi-row INSERTs on SQLite.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Days, NaiveDate, SecondsFormat};
use sea_orm::sqlx;
use sea_orm::{DatabaseBackend, EntityTrait, IntoActiveModel};
use uuid::Uuid;

use super::chain::{ImportedLink, link_imported, lock_sql, read_heads, read_heads_sql, save_heads_sql};
use super::{ChainHead, Store, StoreError, save_heads};
use crate::entity::audit_event::{Entity, Model};

/// A row to import and the input line it came from.
#[derive(Clone, Debug)]
pub struct ImportRow {
    /// 1-based line number in the input.
    pub line: usize,
    /// The event, with its stored id, timestamp and (possibly absent) parent date.
    pub model: Model,
}

/// What one imported batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportedBatch {
    /// Rows written.
    pub inserted: u64,
    /// Rows skipped because their id is stored already (a re-run of an import).
    pub already_present: u64,
    /// Rows written without a parent date although they name a parent (legacy links).
    pub legacy: u64,
    /// Rows that carried a chain link of this server's recipe, verified and kept.
    pub chain_kept: u64,
    /// Rows that carried a hash that could not be verified: kept outside the chain, with the reason.
    pub chain_unverified: u64,
}

/// Why a batch was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line contradicts the store or the rest of the input.
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ImportError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Store(error.into())
    }
}

impl From<sqlx::Error> for ImportError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error))).into())
    }
}

const COLUMNS: &str = "event_id, event_version, event_timestamp, event_date, event_type, event_category, \
    event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, resource_id, resource_name, \
    correlation_id, parent_event_id, parent_event_date, trace_id, span_id, namespace, cluster_id, event_data, \
    event_metadata, severity, duration_ms, error_code, error_message, retention_days, is_sensitive, event_hash, \
    previous_event_hash, hash_algorithm, legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at, submitted_by, chain_seq, hash_key_id, chain_note";

/// Appends one CSV field: NULL as an empty unquoted field, everything else quoted.
fn field(out: &mut String, value: Option<&str>) {
    if let Some(text) = value {
        out.push('"');
        for c in text.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push(',');
}

/// One row in the CSV that `COPY … FROM STDIN (FORMAT csv)` reads, columns as in [`COLUMNS`].
fn csv_row(out: &mut String, m: &Model) {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let text = |s: &Option<String>| s.clone();
    let values: [Option<String>; 40] = [
        Some(m.event_id.to_string()),
        Some(m.event_version.clone()),
        Some(ts(m.event_timestamp)),
        Some(m.event_date.to_string()),
        Some(m.event_type.clone()),
        Some(m.event_category.clone()),
        Some(m.event_action.clone()),
        Some(m.event_outcome.clone()),
        Some(m.actor_type.clone()),
        Some(m.actor_id.clone()),
        text(&m.actor_ip),
        Some(m.resource_type.clone()),
        Some(m.resource_id.clone()),
        text(&m.resource_name),
        Some(m.correlation_id.clone()),
        m.parent_event_id.map(|id| id.to_string()),
        m.parent_event_date.map(|d| d.to_string()),
        text(&m.trace_id),
        text(&m.span_id),
        text(&m.namespace),
        text(&m.cluster_id),
        Some(m.event_data.to_string()),
        m.event_metadata.as_ref().map(|v| v.to_string()),
        text(&m.severity),
        m.duration_ms.map(|d| d.to_string()),
        text(&m.error_code),
        text(&m.error_message),
        Some(m.retention_days.to_string()),
        Some(m.is_sensitive.to_string()),
        text(&m.event_hash),
        text(&m.previous_event_hash),
        Some(m.hash_algorithm.clone()),
        Some(m.legal_hold.to_string()),
        text(&m.legal_hold_reason),
        text(&m.legal_hold_placed_by),
        m.legal_hold_placed_at.map(ts),
        text(&m.submitted_by),
        m.chain_seq.map(|seq| seq.to_string()),
        text(&m.hash_key_id),
        text(&m.chain_note),
    ];
    for value in &values {
        field(out, value.as_deref());
    }
    out.pop();
    out.push('\n');
}

/// Counts what happened to an imported row's chain link.
fn count_link(batch: &mut ImportedBatch, link: ImportedLink) {
    match link {
        ImportedLink::Kept => batch.chain_kept += 1,
        ImportedLink::Unverified => batch.chain_unverified += 1,
        ImportedLink::Chained => {}
    }
}

impl Store {
    /// Imports one batch of historical rows in one transaction: all of them or none.
    ///
    /// Rows whose id is stored already are skipped, so a stopped import can simply be run again.
    /// A row with a parent date must have its parent in the store or earlier in the batch, and
    /// may be at most a day older than it; a row that names a parent without a date is kept as a
    /// legacy link for `backfill-parent-dates`.
    #[tracing::instrument(skip_all, fields(rows = rows.len()))]
    pub async fn import_rows(&self, rows: Vec<ImportRow>, operator: &str) -> Result<ImportedBatch, ImportError> {
        let months: BTreeSet<NaiveDate> = rows.iter().map(|r| r.model.event_date).collect();
        for day in months {
            self.ensure_partition(day).await?;
        }
        let mut seen: HashMap<Uuid, usize> = HashMap::new();
        for row in &rows {
            if let Some(first) = seen.insert(row.model.event_id, row.line) {
                return Err(ImportError::Line {
                    line: row.line,
                    message: format!("event_id {} repeats line {first}", row.model.event_id),
                });
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.model.event_id).collect();
        let present: HashSet<(Uuid, NaiveDate)> = self.keys_of(&ids).await?.into_iter().collect();
        let present_ids: HashSet<Uuid> = present.iter().map(|(id, _)| *id).collect();
        let wanted_parents: Vec<Uuid> = rows
            .iter()
            .filter(|r| r.model.parent_event_date.is_some())
            .filter_map(|r| r.model.parent_event_id)
            .filter(|p| !seen.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut parents: HashSet<(Uuid, NaiveDate)> = self.keys_of(&wanted_parents).await?.into_iter().collect();
        let mut batch = ImportedBatch::default();
        let mut fresh = Vec::with_capacity(rows.len());
        for row in rows {
            let m = &row.model;
            parents.insert((m.event_id, m.event_date));
            if present_ids.contains(&m.event_id) {
                batch.already_present += 1;
                continue;
            }
            if let (Some(parent), Some(date)) = (m.parent_event_id, m.parent_event_date) {
                if !parents.contains(&(parent, date)) {
                    return Err(ImportError::Line {
                        line: row.line,
                        message: format!(
                            "parent {parent} of {date} is neither stored nor earlier in the input; \
                             leave out parent_event_date to import the link as a legacy one"
                        ),
                    });
                }
                if m.event_date < date - Days::new(1) {
                    return Err(ImportError::Line {
                        line: row.line,
                        message: format!("event_timestamp is more than a day before its parent's date ({date})"),
                    });
                }
            } else if m.parent_event_id.is_some() {
                batch.legacy += 1;
            }
            fresh.push(row.model);
        }
        batch.inserted = fresh.len() as u64;
        if fresh.is_empty() {
            return Ok(batch);
        }
        match self.backend() {
            DatabaseBackend::Postgres => self.copy_rows(&mut fresh, &mut batch, operator).await?,
            _ => {
                let write = self.begin_write().await?;
                let correlations: BTreeSet<&str> = fresh.iter().map(|m| m.correlation_id.as_str()).collect();
                let mut heads = read_heads(&write.txn, &correlations).await?;
                let touched: Vec<String> = correlations.into_iter().map(str::to_string).collect();
                for model in &mut fresh {
                    count_link(&mut batch, link_imported(self.hasher(), &mut heads, model, operator));
                }
                for chunk in fresh.chunks(800) {
                    Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                        .exec_without_returning(&write.txn)
                        .await?;
                }
                let heads: Vec<ChainHead> = touched.iter().filter_map(|c| heads.remove(c)).collect();
                save_heads(&write.txn, &heads).await?;
                write.txn.commit().await?;
            }
        }
        Ok(batch)
    }

    /// Links rows to their chains and streams them into `audit_events` with `COPY … FROM STDIN`,
    /// in one transaction that holds the chains' locks until it commits.
    async fn copy_rows(
        &self,
        rows: &mut [Model],
        batch: &mut ImportedBatch,
        operator: &str,
    ) -> Result<(), ImportError> {
        let pool = self.db().get_postgres_connection_pool();
        let mut txn = pool.begin().await?;
        let correlations: Vec<String> = rows
            .iter()
            .map(|m| m.correlation_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut heads = BTreeMap::new();
        for chunk in correlations.chunks(1_000) {
            let mut lock = sqlx::query(sqlx::AssertSqlSafe(lock_sql(chunk.len())));
            for c in chunk {
                lock = lock.bind(c);
            }
            lock.execute(&mut *txn).await?;
            let read = sqlx::query_as::<_, (String, i64, String)>(sqlx::AssertSqlSafe(read_heads_sql(
                DatabaseBackend::Postgres,
                chunk.len(),
            )))
            .bind(chunk);
            for (correlation_id, last_seq, last_hash) in read.fetch_all(&mut *txn).await? {
                heads.insert(
                    correlation_id.clone(),
                    ChainHead {
                        correlation_id,
                        last_seq,
                        last_hash,
                    },
                );
            }
        }
        for model in rows.iter_mut() {
            count_link(batch, link_imported(self.hasher(), &mut heads, model, operator));
        }
        let mut copy = txn
            .copy_in_raw(&format!("COPY audit_events ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"))
            .await?;
        let mut buffer = String::with_capacity(64 * 1024);
        for chunk in rows.chunks(1_000) {
            buffer.clear();
            for row in chunk {
                csv_row(&mut buffer, row);
            }
            copy.send(buffer.as_bytes()).await?;
        }
        copy.finish().await?;
        let heads: Vec<ChainHead> = correlations.iter().filter_map(|c| heads.remove(c)).collect();
        for chunk in heads.chunks(500) {
            let mut save = sqlx::query(sqlx::AssertSqlSafe(save_heads_sql(
                DatabaseBackend::Postgres,
                chunk.len(),
            )));
            for head in chunk {
                save = save
                    .bind(&head.correlation_id)
                    .bind(head.last_seq)
                    .bind(&head.last_hash);
            }
            save.execute(&mut *txn).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let ts = chrono::DateTime::parse_from_rfc3339("2025-03-01T10:00:00.5Z")
            .unwrap()
            .to_utc();
        Model {
            event_id: Uuid::nil(),
            event_version: "1.0".into(),
            event_timestamp: ts,
            event_date: ts.date_naive(),
            event_type: r#"a"b"#.into(),
            event_category: "c".into(),
            event_action: "".into(),
            event_outcome: "success".into(),
            actor_type: "service".into(),
            actor_id: "x".into(),
            actor_ip: None,
            resource_type: "r".into(),
            resource_id: "line\nbreak".into(),
            resource_name: None,
            correlation_id: "k".into(),
            parent_event_id: None,
            parent_event_date: None,
            trace_id: None,
            span_id: None,
            namespace: None,
            cluster_id: None,
            event_data: serde_json::json!({"q": "\""}),
            event_metadata: None,
            severity: None,
            duration_ms: Some(5),
            error_code: None,
            error_message: None,
            retention_days: 30,
            is_sensitive: false,
            event_hash: None,
            previous_event_hash: None,
            hash_algorithm: "sha256-unkeyed".into(),
            legal_hold: false,
            legal_hold_reason: None,
            legal_hold_placed_by: None,
            legal_hold_placed_at: None,
            submitted_by: Some("operator".into()),
            chain_seq: None,
            hash_key_id: None,
            chain_note: None,
            event_data_text: None,
        }
    }

    #[test]
    fn csv_rows_quote_text_and_leave_nulls_empty() {
        let mut row = String::new();
        csv_row(&mut row, &model());
        assert!(row.starts_with(
            r#""00000000-0000-0000-0000-000000000000","1.0","2025-03-01T10:00:00.500000Z","2025-03-01","#
        ));
        assert!(
            row.contains(r#","a""b","c","","success","#),
            "quotes are doubled, empty text is not NULL: {row}"
        );
        assert!(row.contains(r#""{""q"":""\""""}""#), "JSON is quoted text: {row}");
        assert!(row.contains(r#""x",,"r""#), "NULL is an empty field: {row}");
        assert!(row.ends_with(",\"false\",,,,\"operator\",,,\n"), "{row}");
        assert_eq!(
            row.matches('\n').count(),
            2,
            "the embedded newline stays inside its quotes"
        );
    }
}
