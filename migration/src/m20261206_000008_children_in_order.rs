//! The parent-lookup index also orders each parent's children (`event_timestamp`, `event_id`):
//! a page of children then reads only its own rows from the index, instead of every child of the
//! parent sorted to keep the first few (an event with 5,000 children paid for all of them on each
//! page). It serves every lookup the old index served, which it replaces.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX idx_audit_events_children ON audit_events (parent_event_id, parent_event_date, event_timestamp, event_id)
    WHERE parent_event_id IS NOT NULL;
DROP INDEX idx_audit_events_parent_lookup;
"#;

const DOWN: &str = r#"
CREATE INDEX idx_audit_events_parent_lookup ON audit_events (parent_event_id, parent_event_date)
    WHERE parent_event_id IS NOT NULL;
DROP INDEX idx_audit_events_children;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, UP, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, DOWN, DOWN).await
    }
}
