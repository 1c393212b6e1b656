//! Column projection: reads fetch only the columns a request uses.
//!
//! A read names the [`Columns`] it needs; the others are not read from the table but replaced in
//! the statement by a constant of their type (an empty string, zero, `false`, `NULL`, JSON
//! `null`), so that every statement still returns whole rows of [`Model`] while the database
//! neither reads nor sends, and the server neither decodes nor copies, what nobody asked for
//! (above all `event_data`). A row read with fewer than [`Columns::ALL`] is only to be shown
//! through the columns it was read with.

use sea_orm::sea_query::Expr;
use sea_orm::sqlx;
use sea_orm::{DatabaseBackend, DbErr, Iterable, QueryResult, QuerySelect, Select};

use crate::entity::audit_event::{Column, Entity, Model};

/// A set of `audit_events` columns (a bit per column, in declaration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Columns(u64);

impl Columns {
    /// Every column.
    pub const ALL: Self = Self(u64::MAX);

    /// The columns every read fetches whatever is asked: the keys of the event and of its parent,
    /// the cursor's timestamp and the correlation (which places an event in its tree).
    pub fn keys() -> Self {
        Self::of(&[
            Column::EventId,
            Column::EventDate,
            Column::EventTimestamp,
            Column::ParentEventId,
            Column::ParentEventDate,
            Column::CorrelationId,
        ])
    }

    /// Exactly these columns.
    pub fn of(columns: &[Column]) -> Self {
        columns.iter().fold(Self(0), |set, c| set.with(*c))
    }

    /// This set and `column`.
    pub fn with(self, column: Column) -> Self {
        Self(self.0 | bit(column))
    }

    /// This set and `other`.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the set holds `column`.
    pub fn contains(self, column: Column) -> bool {
        self.0 & bit(column) != 0
    }

    /// Whether the set holds every column.
    pub fn is_all(self) -> bool {
        Column::iter().all(|c| self.contains(c))
    }

    /// `select` (of whole rows) reading only these columns; the others become constants.
    pub(crate) fn project(self, select: Select<Entity>, backend: DatabaseBackend) -> Select<Entity> {
        if self.is_all() {
            return select;
        }
        let mut select = select.select_only();
        for column in Column::iter() {
            select = if self.contains(column) {
                select.column(column)
            } else {
                select.expr_as(Expr::cust(placeholder(column, backend)), column_name(column))
            };
        }
        select
    }

    /// The select list of these columns of the table aliased `alias`, in declaration order, for
    /// hand-written statements.
    pub(crate) fn select_list(self, alias: &str, backend: DatabaseBackend) -> String {
        Column::iter()
            .map(|column| {
                let name = column_name(column);
                if self.contains(column) {
                    format!("{alias}.{name}")
                } else {
                    format!("{} AS {name}", placeholder(column, backend))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Decodes a row whose first columns are the event's, in declaration order (as every statement
/// built with [`Columns::project`] or [`Columns::select_list`] returns them), by position: the
/// rows of large reads are decoded without looking each column up by name. Only `columns` are
/// decoded; the others keep their type's default, the value of their constant in the statement.
pub(crate) fn decode(row: &QueryResult, columns: Columns) -> Result<Model, DbErr> {
    macro_rules! field {
        ($column:ident) => {
            if columns.contains(Column::$column) {
                get(row, Column::$column as usize)?
            } else {
                Default::default()
            }
        };
    }
    Ok(Model {
        event_id: field!(EventId),
        event_version: field!(EventVersion),
        event_timestamp: field!(EventTimestamp),
        event_date: field!(EventDate),
        event_type: field!(EventType),
        event_category: field!(EventCategory),
        event_action: field!(EventAction),
        event_outcome: field!(EventOutcome),
        actor_type: field!(ActorType),
        actor_id: field!(ActorId),
        actor_ip: field!(ActorIp),
        resource_type: field!(ResourceType),
        resource_id: field!(ResourceId),
        resource_name: field!(ResourceName),
        correlation_id: field!(CorrelationId),
        parent_event_id: field!(ParentEventId),
        parent_event_date: field!(ParentEventDate),
        trace_id: field!(TraceId),
        span_id: field!(SpanId),
        namespace: field!(Namespace),
        cluster_id: field!(ClusterId),
        event_data: field!(EventData),
        event_metadata: field!(EventMetadata),
        severity: field!(Severity),
        duration_ms: field!(DurationMs),
        error_code: field!(ErrorCode),
        error_message: field!(ErrorMessage),
        retention_days: field!(RetentionDays),
        is_sensitive: field!(IsSensitive),
        event_hash: field!(EventHash),
        previous_event_hash: field!(PreviousEventHash),
        hash_algorithm: field!(HashAlgorithm),
        legal_hold: field!(LegalHold),
        legal_hold_reason: field!(LegalHoldReason),
        legal_hold_placed_by: field!(LegalHoldPlacedBy),
        legal_hold_placed_at: field!(LegalHoldPlacedAt),
        submitted_by: field!(SubmittedBy),
        chain_seq: field!(ChainSeq),
        hash_key_id: field!(HashKeyId),
        chain_note: field!(ChainNote),
    })
}

/// The value at `index`. PostgreSQL rows are read through sqlx directly: sea-orm reads a nullable
/// column by first failing to read it as non-null, and formats an error message for every NULL.
fn get<T>(row: &QueryResult, index: usize) -> Result<T, DbErr>
where
    T: sea_orm::TryGetable + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    match row.try_as_pg_row() {
        Some(pg) => sqlx::Row::try_get(pg, index).map_err(|e| DbErr::Type(format!("column {index}: {e}"))),
        None => row.try_get_by_index(index),
    }
}

fn bit(column: Column) -> u64 {
    1 << (column as u64)
}

fn column_name(column: Column) -> String {
    sea_orm::IdenStatic::as_str(&column).to_string()
}

/// A constant of the column's type standing for a column that is not read.
fn placeholder(column: Column, backend: DatabaseBackend) -> String {
    use Column as C;
    let postgres = backend == DatabaseBackend::Postgres;
    let sql = match column {
        // Never projected away (see `Columns::keys`); typed constants all the same.
        C::EventId => "'00000000-0000-0000-0000-000000000000'",
        C::EventTimestamp => "'1970-01-01T00:00:00Z'",
        C::EventDate => "'1970-01-01'",
        C::ParentEventId | C::ParentEventDate | C::LegalHoldPlacedAt | C::ChainSeq | C::DurationMs => "NULL",
        C::EventVersion
        | C::EventType
        | C::EventCategory
        | C::EventAction
        | C::EventOutcome
        | C::ActorType
        | C::ActorId
        | C::ResourceType
        | C::ResourceId
        | C::CorrelationId
        | C::HashAlgorithm => "''",
        C::ActorIp
        | C::ResourceName
        | C::TraceId
        | C::SpanId
        | C::Namespace
        | C::ClusterId
        | C::Severity
        | C::ErrorCode
        | C::ErrorMessage
        | C::EventHash
        | C::PreviousEventHash
        | C::LegalHoldReason
        | C::LegalHoldPlacedBy
        | C::SubmittedBy
        | C::HashKeyId
        | C::ChainNote
        | C::EventMetadata => "NULL",
        C::EventData => {
            if postgres {
                "'null'::jsonb"
            } else {
                "'null'"
            }
        }
        C::RetentionDays => {
            if postgres {
                "0::int4"
            } else {
                "0"
            }
        }
        C::IsSensitive | C::LegalHold => "false",
    };
    match (column, postgres) {
        (C::EventId, true) => format!("{sql}::uuid"),
        (C::EventTimestamp, true) => format!("{sql}::timestamptz"),
        (C::EventDate, true) => format!("{sql}::date"),
        (C::ParentEventId, true) => format!("{sql}::uuid"),
        (C::ParentEventDate, true) => format!("{sql}::date"),
        (C::ChainSeq, true) => format!("{sql}::bigint"),
        (C::DurationMs, true) => format!("{sql}::int4"),
        (C::LegalHoldPlacedAt, true) => format!("{sql}::timestamptz"),
        (C::EventMetadata, true) => format!("{sql}::jsonb"),
        (_, true) if sql == "NULL" || sql == "''" => format!("{sql}::text"),
        _ => sql.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::EntityTrait;

    #[test]
    fn sets_hold_what_they_were_given() {
        let keys = Columns::keys();
        assert!(keys.contains(Column::EventId) && keys.contains(Column::ParentEventDate));
        assert!(!keys.contains(Column::EventData));
        let more = keys.with(Column::EventData);
        assert!(more.contains(Column::EventData) && !more.is_all());
        assert!(Columns::ALL.is_all());
        assert_eq!(keys.union(Columns::of(&[Column::EventData])), more);
    }

    #[test]
    fn columns_not_read_become_constants() {
        let select = Columns::keys()
            .with(Column::EventType)
            .project(Entity::find(), DatabaseBackend::Postgres);
        let sql = sea_orm::QueryTrait::build(&select, DatabaseBackend::Postgres).sql;
        assert!(sql.contains("\"event_type\""), "{sql}");
        assert!(sql.contains("'null'::jsonb AS \"event_data\""), "{sql}");
        assert!(!sql.contains("\"audit_events\".\"event_data\""), "{sql}");
        let all = sea_orm::QueryTrait::build(
            &Columns::ALL.project(Entity::find(), DatabaseBackend::Postgres),
            DatabaseBackend::Postgres,
        )
        .sql;
        assert!(all.contains("\"audit_events\".\"event_data\""), "{all}");
    }
}
