//! `submitted_by`: the authenticated principal that submitted an event, apart from the actor the
//! event names. Rows written before authentication existed keep NULL: nobody can say who sent them.
//! On PostgreSQL the column added to the partitioned table reaches every partition.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = "ALTER TABLE audit_events ADD COLUMN submitted_by VARCHAR(255);";
/// The SQLite table is STRICT: TEXT, with the length PostgreSQL's type enforces as a CHECK.
const SQLITE_UP: &str = "ALTER TABLE audit_events ADD COLUMN submitted_by TEXT \
    CHECK (submitted_by IS NULL OR length(submitted_by) <= 255);";
const DOWN: &str = "ALTER TABLE audit_events DROP COLUMN submitted_by;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, DOWN, DOWN).await
    }
}
