//! Hash chains and rows that cannot be changed.
//!
//! - `chain_seq`: an event's position in its correlation's chain, in write order; `hash_key_id`:
//!   the key of a keyed hash; `chain_note`: why an imported event's carried hash stands outside
//!   the chain. Rows older than this keep NULL (nothing was hashed then).
//! - `audit_chain_heads`: the last position and hash of each correlation's chain. Writers to one
//!   correlation serialise on its row; writers to different correlations never wait for each
//!   other. It also records how long a chain is, so that removing its last events shows.
//! - Triggers refuse every UPDATE of a stored event except the two the product performs:
//!   completing a legacy link's `parent_event_date` (the backfill, NULL → date, and its rollback,
//!   date → NULL) and the legal-hold columns; and every DELETE. On SQLite this also covers a shell
//!   that runs with foreign keys off, where a parent could otherwise be deleted under its children.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns that never change once an event is stored.
const FROZEN: [&str; 35] = [
    "event_id",
    "event_version",
    "event_timestamp",
    "event_date",
    "event_type",
    "event_category",
    "event_action",
    "event_outcome",
    "actor_type",
    "actor_id",
    "actor_ip",
    "resource_type",
    "resource_id",
    "resource_name",
    "correlation_id",
    "parent_event_id",
    "trace_id",
    "span_id",
    "namespace",
    "cluster_id",
    "event_data",
    "event_metadata",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "retention_days",
    "is_sensitive",
    "event_hash",
    "previous_event_hash",
    "hash_algorithm",
    "submitted_by",
    "chain_seq",
    "hash_key_id",
    "chain_note",
];

const REFUSED_UPDATE: &str = "audit events cannot be changed: only a legacy parent_event_date may be completed (backfill) or cleared (its rollback), and the legal-hold columns set";
const REFUSED_DELETE: &str = "audit events cannot be deleted";

/// The condition under which an UPDATE is refused, in the engine's null-safe comparison.
fn changed(distinct: &str) -> String {
    let mut terms: Vec<String> = FROZEN.iter().map(|c| format!("NEW.{c} {distinct} OLD.{c}")).collect();
    // The parent date may only be completed or cleared, never moved.
    terms.push(format!(
        "(NEW.parent_event_date IS NOT NULL AND OLD.parent_event_date IS NOT NULL AND NEW.parent_event_date {distinct} OLD.parent_event_date)"
    ));
    terms.join("\n        OR ")
}

fn postgres_up() -> String {
    format!(
        r#"
ALTER TABLE audit_events ADD COLUMN chain_seq BIGINT, ADD COLUMN hash_key_id VARCHAR(64), ADD COLUMN chain_note TEXT;
CREATE INDEX idx_audit_events_chain ON audit_events (correlation_id, chain_seq) WHERE chain_seq IS NOT NULL;

CREATE TABLE audit_chain_heads (
    correlation_id VARCHAR(255) PRIMARY KEY,
    last_seq       BIGINT       NOT NULL CHECK (last_seq > 0),
    last_hash      VARCHAR(128) NOT NULL
);

-- How many events carried no hash when hash chains began: every event stored since has one, so
-- more of them later were inserted around the triggers.
CREATE TABLE audit_chain_baseline (
    unhashed_events BIGINT      NOT NULL CHECK (unhashed_events >= 0),
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO audit_chain_baseline (unhashed_events) SELECT COUNT(*) FROM audit_events WHERE event_hash IS NULL;

CREATE FUNCTION auditgraph_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {condition} THEN
        RAISE EXCEPTION '{REFUSED_UPDATE}' USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION auditgraph_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{REFUSED_DELETE}' USING ERRCODE = '23514';
END $$;

CREATE TRIGGER trg_audit_events_immutable BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditgraph_refuse_update();
CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditgraph_refuse_delete();
CREATE TRIGGER trg_audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION auditgraph_refuse_delete();
"#,
        condition = changed("IS DISTINCT FROM")
    )
}

fn sqlite_up() -> String {
    format!(
        r#"
ALTER TABLE audit_events ADD COLUMN chain_seq INTEGER;
ALTER TABLE audit_events ADD COLUMN hash_key_id TEXT CHECK (hash_key_id IS NULL OR length(hash_key_id) <= 64);
ALTER TABLE audit_events ADD COLUMN chain_note TEXT;
CREATE INDEX idx_audit_events_chain ON audit_events (correlation_id, chain_seq) WHERE chain_seq IS NOT NULL;

CREATE TABLE audit_chain_heads (
    correlation_id TEXT    PRIMARY KEY,
    last_seq       INTEGER NOT NULL CHECK (last_seq > 0),
    last_hash      TEXT    NOT NULL
) STRICT;

-- How many events carried no hash when hash chains began: every event stored since has one, so
-- more of them later were inserted around the triggers.
CREATE TABLE audit_chain_baseline (
    unhashed_events INTEGER NOT NULL CHECK (unhashed_events >= 0),
    recorded_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
INSERT INTO audit_chain_baseline (unhashed_events) SELECT COUNT(*) FROM audit_events WHERE event_hash IS NULL;

CREATE TRIGGER trg_audit_events_immutable BEFORE UPDATE ON audit_events
WHEN {condition}
BEGIN
    SELECT RAISE(ABORT, '{REFUSED_UPDATE}');
END;

CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, '{REFUSED_DELETE}');
END;

-- INSERT OR REPLACE deletes the stored row without firing delete triggers: refuse a taken key.
CREATE TRIGGER trg_audit_events_no_replace BEFORE INSERT ON audit_events
WHEN EXISTS (SELECT 1 FROM audit_events WHERE event_id = NEW.event_id AND event_date = NEW.event_date)
BEGIN
    SELECT RAISE(ABORT, '{REFUSED_DELETE}');
END;
"#,
        condition = changed("IS NOT")
    )
}

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_no_truncate ON audit_events;
DROP TRIGGER trg_audit_events_no_delete ON audit_events;
DROP TRIGGER trg_audit_events_immutable ON audit_events;
DROP FUNCTION auditgraph_refuse_delete();
DROP FUNCTION auditgraph_refuse_update();
DROP TABLE audit_chain_baseline;
DROP TABLE audit_chain_heads;
DROP INDEX idx_audit_events_chain;
ALTER TABLE audit_events DROP COLUMN chain_note, DROP COLUMN hash_key_id, DROP COLUMN chain_seq;
"#;

const SQLITE_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_no_replace;
DROP TRIGGER trg_audit_events_no_delete;
DROP TRIGGER trg_audit_events_immutable;
DROP TABLE audit_chain_baseline;
DROP TABLE audit_chain_heads;
DROP INDEX idx_audit_events_chain;
ALTER TABLE audit_events DROP COLUMN chain_note;
ALTER TABLE audit_events DROP COLUMN hash_key_id;
ALTER TABLE audit_events DROP COLUMN chain_seq;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, &postgres_up(), &sqlite_up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
