//! The SQLite CHECK `event_date = date(event_timestamp)` passes when `date()` cannot read the
//! timestamp (a leap second `…:60`, or any text that is no date): the comparison is NULL, and a
//! CHECK only rejects false. These triggers reject such rows on insert and on update, so no
//! writer can store a date that disagrees with its timestamp. PostgreSQL needs nothing: a
//! `timestamptz` is always a valid instant, and its CHECK is never NULL.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &str = r#"
CREATE TRIGGER trg_audit_events_event_date_insert BEFORE INSERT ON audit_events
WHEN date(NEW.event_timestamp) IS NULL OR date(NEW.event_timestamp) <> NEW.event_date
BEGIN
    SELECT RAISE(ABORT, 'event_date must be the UTC date of a valid event_timestamp');
END;

CREATE TRIGGER trg_audit_events_event_date_update BEFORE UPDATE OF event_timestamp, event_date ON audit_events
WHEN date(NEW.event_timestamp) IS NULL OR date(NEW.event_timestamp) <> NEW.event_date
BEGIN
    SELECT RAISE(ABORT, 'event_date must be the UTC date of a valid event_timestamp');
END;
"#;

const SQLITE_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_event_date_update;
DROP TRIGGER trg_audit_events_event_date_insert;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, "SELECT 1;", SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, "SELECT 1;", SQLITE_DOWN).await
    }
}
