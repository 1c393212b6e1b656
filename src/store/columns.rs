//! Column projection: reads fetch only the columns a request uses.
//!
//! A read names the [`Columns`] it needs; its statement selects only those, in declaration order,
//! so that the database neither reads nor sends, and the server neither decodes nor copies, what
//! nobody asked for (above all `event_data`). The columns not read keep their type's default in
//! the [`Model`]: a row read with fewer than [`Columns::ALL`] is only to be shown through the
//! columns it was read with.
//!
//! A read whose `event_data` is only written out again as JSON (a GraphQL response) can take it
//! as the text the database sends ([`Columns::data_as_text`]): parsing it into a tree of values
//! and writing that tree out again was a fifth of the server's instructions for a page of events
//! showing `eventData`.

use chrono::NaiveDate;
use sea_orm::sqlx;
use sea_orm::{DbErr, Iterable, QueryResult, QuerySelect, Select};

use crate::entity::audit_event::{Column, Entity, Model};

/// A set of `audit_events` columns (a bit per column, in declaration order), and how
/// `event_data` is read when it is one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Columns {
    set: u64,
    /// `event_data` is kept as the JSON text the database sent (`Model::event_data_text`),
    /// not parsed. Only ever set with `event_data` in the set.
    data_as_text: bool,
}

impl Columns {
    /// Every column, `event_data` parsed.
    pub const ALL: Self = Self::from_set(u64::MAX);

    const fn from_set(set: u64) -> Self {
        Self {
            set,
            data_as_text: false,
        }
    }

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

    /// Exactly these columns (`event_data`, if named, parsed).
    pub fn of(columns: &[Column]) -> Self {
        columns.iter().fold(Self::from_set(0), |set, c| set.with(*c))
    }

    /// This set and `column`.
    pub fn with(self, column: Column) -> Self {
        Self {
            set: self.set | bit(column),
            ..self
        }
    }

    /// This set, with `event_data` (when it is in the set) kept as the JSON text the database
    /// sent, in `Model::event_data_text`, and never parsed: for rows whose `event_data` is only
    /// written out again as JSON.
    pub fn data_as_text(self) -> Self {
        Self {
            data_as_text: self.contains(Column::EventData),
            ..self
        }
    }

    /// This set and `other`. `event_data` stays text only if no side wants it parsed.
    pub fn union(self, other: Self) -> Self {
        let wants_parsed = |c: Self| c.contains(Column::EventData) && !c.data_as_text;
        let set = self.set | other.set;
        Self {
            set,
            data_as_text: !wants_parsed(self)
                && !wants_parsed(other)
                && Self::from_set(set).contains(Column::EventData),
        }
    }

    /// Whether the set holds `column`.
    pub fn contains(self, column: Column) -> bool {
        self.set & bit(column) != 0
    }

    /// Whether rows read with this set serve a read of `other`: every column of `other`, and
    /// `event_data` parsed when `other` wants it parsed.
    pub fn covers(self, other: Self) -> bool {
        self.set & other.set == other.set
            && !(other.contains(Column::EventData) && !other.data_as_text && self.data_as_text)
    }

    /// Whether the set holds every column.
    pub fn is_all(self) -> bool {
        Column::iter().all(|c| self.contains(c))
    }

    /// `select` (of whole rows) reading only these columns, in declaration order.
    pub(crate) fn project(self, select: Select<Entity>) -> Select<Entity> {
        if self.is_all() {
            return select;
        }
        Column::iter()
            .filter(|column| self.contains(*column))
            .fold(select.select_only(), |select, column| select.column(column))
    }

    /// The select list of these columns of the table aliased `alias`, in declaration order, for
    /// hand-written statements.
    pub(crate) fn select_list(self, alias: &str) -> String {
        Column::iter()
            .filter(|column| self.contains(*column))
            .map(|column| format!("{alias}.{}", sea_orm::IdenStatic::as_str(&column)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Decodes a row whose first columns are the event's, in declaration order (as every statement
/// built with [`Columns::project`] or [`Columns::select_list`] returns them), by position: the
/// rows of large reads are decoded without looking each column up by name. The row holds
/// `columns` and only those, first; the others keep their type's default.
pub(crate) fn decode(row: &QueryResult, columns: Columns) -> Result<Model, DbErr> {
    let mut index = 0;
    let mut event_data_text = None;
    // A column read (by `get`, or the decoder named) when the set holds it, else its default.
    macro_rules! field {
        ($column:ident) => {
            field!($column, get)
        };
        ($column:ident, $decode:expr) => {
            if columns.contains(Column::$column) {
                index += 1;
                $decode(row, index - 1)?
            } else {
                Default::default()
            }
        };
    }
    Ok(Model {
        event_id: field!(EventId),
        event_version: field!(EventVersion),
        event_timestamp: field!(EventTimestamp),
        event_date: field!(EventDate, |row, index| date(row, index)?
            .ok_or_else(|| DbErr::Type(format!("column {index}: event_date is null")))),
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
        parent_event_date: field!(ParentEventDate, date),
        trace_id: field!(TraceId),
        span_id: field!(SpanId),
        namespace: field!(Namespace),
        cluster_id: field!(ClusterId),
        event_data: if columns.data_as_text {
            index += 1;
            event_data_text = Some(json_text(row, index - 1)?);
            sea_orm::JsonValue::Null
        } else {
            field!(EventData)
        },
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
        event_data_text,
    })
}

/// The date at `index`, or `None` for NULL. PostgreSQL's binary form (days since 2000-01-01) is
/// read here: `sqlx`'s decoding (a date built for 2000-01-01, then a checked addition of a
/// duration) took 290 instructions a date, two dates per row.
fn date(row: &QueryResult, index: usize) -> Result<Option<NaiveDate>, DbErr> {
    use sqlx::postgres::PgValueFormat;
    use sqlx::{Row, ValueRef};
    let Some(pg) = row.try_as_pg_row() else {
        return row.try_get_by_index(index);
    };
    let error = |e: String| DbErr::Type(format!("column {index}: {e}"));
    let value = pg.try_get_raw(index).map_err(|e| error(e.to_string()))?;
    if value.is_null() {
        return Ok(None);
    }
    if value.format() != PgValueFormat::Binary {
        return get(row, index);
    }
    let days = value
        .as_bytes()
        .ok()
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| error("not a date in binary form".into()))?;
    date_of_days(days)
        .map(Some)
        .ok_or_else(|| error(format!("date {days} days from 2000-01-01 is out of range")))
}

/// The date `days` days from 2000-01-01 (PostgreSQL's binary form of a date).
fn date_of_days(days: i32) -> Option<NaiveDate> {
    /// `NaiveDate::num_days_from_ce` of 2000-01-01.
    const EPOCH_FROM_CE: i32 = 730_120;
    days.checked_add(EPOCH_FROM_CE)
        .and_then(NaiveDate::from_num_days_from_ce_opt)
}

/// The JSON document at `index` as the text the database sent: PostgreSQL's `jsonb` without its
/// version byte, which PostgreSQL wrote from a document it parsed (so it is JSON, and not checked
/// again); SQLite's text as it was stored, checked to be JSON.
fn json_text(row: &QueryResult, index: usize) -> Result<String, DbErr> {
    use sqlx::postgres::PgValueFormat;
    use sqlx::{Row, TypeInfo, ValueRef};
    let error = |e: sqlx::error::BoxDynError| DbErr::Type(format!("column {index}: {e}"));
    let Some(pg) = row.try_as_pg_row() else {
        let text: String = row.try_get_by_index(index)?;
        serde_json::from_str::<&serde_json::value::RawValue>(&text).map_err(|e| error(e.into()))?;
        return Ok(text);
    };
    let value = pg.try_get_raw(index).map_err(|e| error(e.into()))?;
    let mut bytes = value.as_bytes().map_err(error)?;
    if value.format() == PgValueFormat::Binary && value.type_info().name() == "JSONB" {
        match bytes.split_first() {
            Some((1, text)) => bytes = text,
            _ => return Err(error("not a jsonb document of version 1".into())),
        }
    }
    Ok(std::str::from_utf8(bytes).map_err(|e| error(e.into()))?.to_owned())
}

/// The value at `index`. PostgreSQL rows are read through sqlx directly: sea-orm reads a nullable
/// column by first failing to read it as non-null, and formats an error message for every NULL.
fn get<T>(row: &QueryResult, index: usize) -> Result<T, DbErr>
where
    T: sea_orm::TryGetable + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    match row.try_as_pg_row() {
        // Unchecked: the statement selected this column at this position, so its type is known
        // (the checks against the row description were a tenth of decoding). A NULL where the
        // field is not optional is still refused.
        Some(pg) => sqlx::Row::try_get_unchecked(pg, index).map_err(|e| DbErr::Type(format!("column {index}: {e}"))),
        None => row.try_get_by_index(index),
    }
}

fn bit(column: Column) -> u64 {
    1 << (column as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DatabaseBackend, EntityTrait};

    #[test]
    fn sets_hold_what_they_were_given() {
        let keys = Columns::keys();
        assert!(keys.contains(Column::EventId) && keys.contains(Column::ParentEventDate));
        assert!(!keys.contains(Column::EventData));
        let more = keys.with(Column::EventData);
        assert!(more.contains(Column::EventData) && !more.is_all());
        assert!(Columns::ALL.is_all());
        assert_eq!(keys.union(Columns::of(&[Column::EventData])), more);
        assert!(more.covers(keys) && more.covers(more) && !keys.covers(more));
        assert!(Columns::ALL.covers(more));
    }

    #[test]
    fn dates_are_counted_from_the_first_day_of_2000() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(date_of_days(0), day(2000, 1, 1));
        assert_eq!(date_of_days(-1), day(1999, 12, 31));
        assert_eq!(date_of_days(59), day(2000, 2, 29));
        assert_eq!(date_of_days(9_838), day(2026, 12, 8));
        assert_eq!(date_of_days(-730_119), day(1, 1, 1));
        assert_eq!(date_of_days(i32::MAX), None, "PostgreSQL's infinity");
        assert_eq!(date_of_days(i32::MIN), None, "PostgreSQL's -infinity");
    }

    #[test]
    fn event_data_stays_text_only_when_no_reader_wants_it_parsed() {
        let text = Columns::of(&[Column::EventData]).data_as_text();
        let parsed = Columns::of(&[Column::EventData]);
        assert!(text.data_as_text && !parsed.data_as_text);
        assert!(
            !Columns::keys().data_as_text().data_as_text,
            "no event_data, nothing to read as text"
        );
        assert!(Columns::keys().union(text).data_as_text);
        assert!(text.union(Columns::keys()).with(Column::EventType).data_as_text);
        assert!(!text.union(parsed).data_as_text && !parsed.union(text).data_as_text);
        assert!(!Columns::ALL.union(text).data_as_text);
        // Rows with the text serve readers of the text, not readers of the value; parsed rows
        // serve both.
        assert!(text.covers(text) && !text.covers(parsed));
        assert!(parsed.covers(text) && Columns::ALL.covers(text) && Columns::ALL.covers(parsed));
        assert!(text.union(Columns::keys()).covers(Columns::keys()));
    }

    #[test]
    fn only_the_columns_read_are_selected_in_declaration_order() {
        let select = Columns::keys().with(Column::EventType).project(Entity::find());
        let sql = sea_orm::QueryTrait::build(&select, DatabaseBackend::Postgres).sql;
        let list = &sql[..sql.find(" FROM ").unwrap()];
        let named: Vec<&str> = list
            .split(", ")
            .map(|c| c.rsplit('.').next().unwrap().trim_matches('"'))
            .collect();
        assert_eq!(
            named,
            [
                "event_id",
                "event_timestamp",
                "event_date",
                "event_type",
                "correlation_id",
                "parent_event_id",
                "parent_event_date"
            ],
            "{sql}"
        );
        assert_eq!(
            Columns::keys().with(Column::EventData).select_list("e"),
            "e.event_id, e.event_timestamp, e.event_date, e.correlation_id, e.parent_event_id, e.parent_event_date, e.event_data"
        );
        let all = sea_orm::QueryTrait::build(&Columns::ALL.project(Entity::find()), DatabaseBackend::Postgres).sql;
        assert!(all.contains("\"audit_events\".\"event_data\""), "{all}");
    }
}
