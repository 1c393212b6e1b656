//! The transparency log: every hashed event becomes a leaf of one append-only Merkle tree
//! (RFC 9162), in a gapless order assigned after commit by one sequencer.
//!
//! - `audit_log_pending`: a trigger queues every stored event that carries a hash, in the
//!   transaction that stores it, whatever path wrote it (API, import, or a statement run by hand);
//!   the sequencer takes the committed ones in queue order.
//! - `audit_log_leaves`: leaf index → event and leaf hash; `audit_log_nodes`: the hash of every
//!   complete (perfect) subtree, so that roots and proofs read O(log n) rows;
//!   `audit_log_checkpoints`: the signed checkpoints published.
//! - Leaves, nodes and checkpoints are append-only: triggers refuse UPDATE and DELETE.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE TABLE audit_log_pending (
    pending_id BIGSERIAL    PRIMARY KEY,
    event_id   UUID         NOT NULL,
    event_date DATE         NOT NULL,
    event_hash VARCHAR(128) NOT NULL
);

CREATE TABLE audit_log_leaves (
    leaf_index BIGINT PRIMARY KEY CHECK (leaf_index >= 0),
    event_id   UUID   NOT NULL,
    event_date DATE   NOT NULL,
    leaf_hash  BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
    UNIQUE (event_id, event_date)
);

CREATE TABLE audit_log_nodes (
    level      SMALLINT NOT NULL CHECK (level BETWEEN 0 AND 63),
    node_index BIGINT   NOT NULL CHECK (node_index >= 0),
    hash       BYTEA    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, node_index)
);

CREATE TABLE audit_log_checkpoints (
    tree_size  BIGINT      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  BYTEA       NOT NULL CHECK (octet_length(root_hash) = 32),
    note       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION auditgraph_log_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log_pending (event_id, event_date, event_hash) VALUES (NEW.event_id, NEW.event_date, NEW.event_hash);
    RETURN NULL;
END $$;

CREATE TRIGGER trg_audit_events_log AFTER INSERT ON audit_events
    FOR EACH ROW WHEN (NEW.event_hash IS NOT NULL) EXECUTE FUNCTION auditgraph_log_enqueue();

CREATE FUNCTION auditgraph_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the transparency log is append-only' USING ERRCODE = '23514';
END $$;

CREATE TRIGGER trg_audit_log_leaves_append_only BEFORE UPDATE OR DELETE ON audit_log_leaves
    FOR EACH ROW EXECUTE FUNCTION auditgraph_log_append_only();
CREATE TRIGGER trg_audit_log_nodes_append_only BEFORE UPDATE OR DELETE ON audit_log_nodes
    FOR EACH ROW EXECUTE FUNCTION auditgraph_log_append_only();
CREATE TRIGGER trg_audit_log_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION auditgraph_log_append_only();
CREATE TRIGGER trg_audit_log_leaves_no_truncate BEFORE TRUNCATE ON audit_log_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION auditgraph_log_append_only();
CREATE TRIGGER trg_audit_log_nodes_no_truncate BEFORE TRUNCATE ON audit_log_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION auditgraph_log_append_only();
CREATE TRIGGER trg_audit_log_checkpoints_no_truncate BEFORE TRUNCATE ON audit_log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION auditgraph_log_append_only();

-- Events hashed before the log existed (imported with their hashes) join it first, oldest first.
INSERT INTO audit_log_pending (event_id, event_date, event_hash)
    SELECT event_id, event_date, event_hash FROM audit_events WHERE event_hash IS NOT NULL
    ORDER BY event_timestamp, event_id;
"#;

const SQLITE_UP: &str = r#"
CREATE TABLE audit_log_pending (
    pending_id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   BLOB    NOT NULL,
    event_date TEXT    NOT NULL,
    event_hash TEXT    NOT NULL
) STRICT;

CREATE TABLE audit_log_leaves (
    leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
    event_id   BLOB    NOT NULL,
    event_date TEXT    NOT NULL,
    leaf_hash  BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    UNIQUE (event_id, event_date)
) STRICT;

CREATE TABLE audit_log_nodes (
    level      INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    node_index INTEGER NOT NULL CHECK (node_index >= 0),
    hash       BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, node_index)
) STRICT;

CREATE TABLE audit_log_checkpoints (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  BLOB    NOT NULL CHECK (length(root_hash) = 32),
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TRIGGER trg_audit_events_log AFTER INSERT ON audit_events WHEN NEW.event_hash IS NOT NULL
BEGIN
    INSERT INTO audit_log_pending (event_id, event_date, event_hash) VALUES (NEW.event_id, NEW.event_date, NEW.event_hash);
END;

CREATE TRIGGER trg_audit_log_leaves_no_update BEFORE UPDATE ON audit_log_leaves
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_leaves_no_delete BEFORE DELETE ON audit_log_leaves
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_nodes_no_update BEFORE UPDATE ON audit_log_nodes
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_nodes_no_delete BEFORE DELETE ON audit_log_nodes
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_checkpoints_no_update BEFORE UPDATE ON audit_log_checkpoints
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_checkpoints_no_delete BEFORE DELETE ON audit_log_checkpoints
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
-- INSERT OR REPLACE deletes without firing delete triggers: refuse a row whose key is taken.
CREATE TRIGGER trg_audit_log_leaves_no_replace BEFORE INSERT ON audit_log_leaves
WHEN EXISTS (SELECT 1 FROM audit_log_leaves WHERE leaf_index = NEW.leaf_index
             OR (event_id = NEW.event_id AND event_date = NEW.event_date))
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_nodes_no_replace BEFORE INSERT ON audit_log_nodes
WHEN EXISTS (SELECT 1 FROM audit_log_nodes WHERE level = NEW.level AND node_index = NEW.node_index)
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER trg_audit_log_checkpoints_no_replace BEFORE INSERT ON audit_log_checkpoints
WHEN EXISTS (SELECT 1 FROM audit_log_checkpoints WHERE tree_size = NEW.tree_size)
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;

-- Events hashed before the log existed (imported with their hashes) join it first, oldest first.
INSERT INTO audit_log_pending (event_id, event_date, event_hash)
    SELECT event_id, event_date, event_hash FROM audit_events WHERE event_hash IS NOT NULL
    ORDER BY event_timestamp, event_id;
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_log ON audit_events;
DROP TRIGGER trg_audit_log_checkpoints_no_truncate ON audit_log_checkpoints;
DROP TRIGGER trg_audit_log_nodes_no_truncate ON audit_log_nodes;
DROP TRIGGER trg_audit_log_leaves_no_truncate ON audit_log_leaves;
DROP TABLE audit_log_checkpoints;
DROP TABLE audit_log_nodes;
DROP TABLE audit_log_leaves;
DROP TABLE audit_log_pending;
DROP FUNCTION auditgraph_log_append_only();
DROP FUNCTION auditgraph_log_enqueue();
"#;

const SQLITE_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_log;
DROP TABLE audit_log_checkpoints;
DROP TABLE audit_log_nodes;
DROP TABLE audit_log_leaves;
DROP TABLE audit_log_pending;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
