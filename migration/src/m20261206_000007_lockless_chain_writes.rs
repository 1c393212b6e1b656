//! Single events are written by one autocommitted statement that moves their chains' heads only
//! when each head is still the one their hashes were computed from (compare and set). When a head
//! moved meanwhile, the statement must undo its own rows: `auditgraph_chain_moved()` aborts it
//! with SQLSTATE 40001 (`serialization_failure`), which the writer answers by reading the heads
//! again and retrying. SQLite has one writer at a time and needs nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE FUNCTION auditgraph_chain_moved() RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'a hash chain moved while events were written to it; read its head again'
        USING ERRCODE = '40001';
END
$$;
"#;

const POSTGRES_DOWN: &str = "DROP FUNCTION auditgraph_chain_moved();";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_UP, "").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_DOWN, "").await
    }
}
