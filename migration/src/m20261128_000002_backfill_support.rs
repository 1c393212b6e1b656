//! Support for `auditgraph backfill-parent-dates` (BR-STORAGE-037):
//! - a partial index over legacy rows (a parent id without a parent date), which the backfill
//!   walks in keyset order; a row leaves it once its link is complete, so it stays small;
//! - a journal of the rows each run filled, which makes a backfill reversible row by row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE INDEX idx_audit_events_legacy_links ON audit_events (event_id, event_date)
    WHERE parent_event_id IS NOT NULL AND parent_event_date IS NULL;

CREATE TABLE audit_backfill_journal (
    run_id     UUID        NOT NULL,
    event_id   UUID        NOT NULL,
    event_date DATE        NOT NULL,
    filled_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, event_id, event_date)
);
"#;

const SQLITE_UP: &str = r#"
CREATE INDEX idx_audit_events_legacy_links ON audit_events (event_id, event_date)
    WHERE parent_event_id IS NOT NULL AND parent_event_date IS NULL;

CREATE TABLE audit_backfill_journal (
    run_id     BLOB NOT NULL,
    event_id   BLOB NOT NULL,
    event_date TEXT NOT NULL,
    filled_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, event_id, event_date)
) STRICT;
"#;

const DOWN: &str = r#"
DROP TABLE audit_backfill_journal;
DROP INDEX idx_audit_events_legacy_links;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, DOWN, DOWN).await
    }
}
