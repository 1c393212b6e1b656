//! Database migrations for auditgraph.
//!
//! Applied migrations are never edited: a change to the schema is a new file. Each migration carries
//! the DDL for both engines because the PostgreSQL schema (monthly range partitions, PL/pgSQL partition
//! helper) cannot be expressed in the portable schema builder.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_audit_events;
mod m20261128_000002_backfill_support;
mod m20261129_000003_event_date_guard;
mod m20261205_000004_submitted_by;
mod m20261206_000005_hash_chains;
mod m20261206_000006_transparency_log;
mod m20261206_000007_lockless_chain_writes;
mod m20261206_000008_children_in_order;
mod m20261206_000009_record_lifecycle;

/// Runs the script written for the connected engine (PostgreSQL or SQLite).
pub(crate) async fn run_script(manager: &SchemaManager<'_>, postgres: &str, sqlite: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};
    let sql = match manager.get_database_backend() {
        DatabaseBackend::Postgres => postgres,
        DatabaseBackend::Sqlite => sqlite,
        other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
    };
    manager.get_connection().execute_unprepared(sql).await.map(drop)
}

/// The ordered list of auditgraph migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_audit_events::Migration),
            Box::new(m20261128_000002_backfill_support::Migration),
            Box::new(m20261129_000003_event_date_guard::Migration),
            Box::new(m20261205_000004_submitted_by::Migration),
            Box::new(m20261206_000005_hash_chains::Migration),
            Box::new(m20261206_000006_transparency_log::Migration),
            Box::new(m20261206_000007_lockless_chain_writes::Migration),
            Box::new(m20261206_000008_children_in_order::Migration),
            Box::new(m20261206_000009_record_lifecycle::Migration),
        ]
    }
}
