//! `submitted_by`: the authenticated principal that submitted an event, apart from the actor the
//! event names. Rows written before authentication existed keep NULL: nobody can say who sent them.
//! On PostgreSQL the column added to the partitioned table reaches every partition.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE audit_events ADD COLUMN submitted_by VARCHAR(255);";
const DOWN: &str = "ALTER TABLE audit_events DROP COLUMN submitted_by;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, UP, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, DOWN, DOWN).await
    }
}
