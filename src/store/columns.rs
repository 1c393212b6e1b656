//! Column projection: reads fetch only the columns a request uses.
//!
//! A read names the [`Columns`] it needs; the others are not read from the table but replaced in
//! the statement by a constant of their type (an empty string, zero, `false`, `NULL`, JSON
//! `null`), so that every statement still returns whole rows of [`Model`] while the database
//! neither reads nor sends, and the server neither decodes nor copies, what nobody asked for
//! (above all `event_data`). A row read with fewer than [`Columns::ALL`] is only to be shown
//! through the columns it was read with.

use sea_orm::sea_query::Expr;
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
/// rows of large reads are decoded without looking each column up by name.
pub(crate) fn decode(row: &QueryResult) -> Result<Model, DbErr> {
    Ok(Model {
        event_id: row.try_get_by_index(0)?,
        event_version: row.try_get_by_index(1)?,
        event_timestamp: row.try_get_by_index(2)?,
        event_date: row.try_get_by_index(3)?,
        event_type: row.try_get_by_index(4)?,
        event_category: row.try_get_by_index(5)?,
        event_action: row.try_get_by_index(6)?,
        event_outcome: row.try_get_by_index(7)?,
        actor_type: row.try_get_by_index(8)?,
        actor_id: row.try_get_by_index(9)?,
        actor_ip: row.try_get_by_index(10)?,
        resource_type: row.try_get_by_index(11)?,
        resource_id: row.try_get_by_index(12)?,
        resource_name: row.try_get_by_index(13)?,
        correlation_id: row.try_get_by_index(14)?,
        parent_event_id: row.try_get_by_index(15)?,
        parent_event_date: row.try_get_by_index(16)?,
        trace_id: row.try_get_by_index(17)?,
        span_id: row.try_get_by_index(18)?,
        namespace: row.try_get_by_index(19)?,
        cluster_id: row.try_get_by_index(20)?,
        event_data: row.try_get_by_index(21)?,
        event_metadata: row.try_get_by_index(22)?,
        severity: row.try_get_by_index(23)?,
        duration_ms: row.try_get_by_index(24)?,
        error_code: row.try_get_by_index(25)?,
        error_message: row.try_get_by_index(26)?,
        retention_days: row.try_get_by_index(27)?,
        is_sensitive: row.try_get_by_index(28)?,
        event_hash: row.try_get_by_index(29)?,
        previous_event_hash: row.try_get_by_index(30)?,
        hash_algorithm: row.try_get_by_index(31)?,
        legal_hold: row.try_get_by_index(32)?,
        legal_hold_reason: row.try_get_by_index(33)?,
        legal_hold_placed_by: row.try_get_by_index(34)?,
        legal_hold_placed_at: row.try_get_by_index(35)?,
        submitted_by: row.try_get_by_index(36)?,
        chain_seq: row.try_get_by_index(37)?,
        hash_key_id: row.try_get_by_index(38)?,
        chain_note: row.try_get_by_index(39)?,
    })
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
