//! Creates `audit_events`: the 36 columns of the audit trail, the self-referential parent foreign key,
//! the parent-lookup and keyset indexes, one index per supported filter, and the checks that keep
//! `retention_days` in range and `event_date` equal to the UTC date of `event_timestamp`.
//!
//! PostgreSQL: the table is range-partitioned by `event_date`, one partition per month. The function
//! `auditgraph_ensure_partition(date)` creates the partition holding a day if it is missing; it is
//! called here for the previous, current and next three months, by the server at start-up, and by
//! every writer before it writes into a month it has not seen yet, so no write fails for a missing
//! partition. There is deliberately no DEFAULT partition: rows in it would block the creation of the
//! month partition later.
//!
//! A child's `event_date` is at most one day before its parent's (`chk_child_not_before_parent_day`):
//! clock skew between services is tolerated, but a child cannot predate its cause by days. The
//! bound also lets descendant walks skip every partition older than the day before a parent.
//!
//! SQLite: the same logical table without partitions; foreign keys and WAL are switched on by the
//! connection options of the application.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
CREATE TABLE audit_events (
    event_id             UUID         NOT NULL,
    event_version        VARCHAR(20)  NOT NULL DEFAULT '1.0',
    event_timestamp      TIMESTAMPTZ  NOT NULL,
    event_date           DATE         NOT NULL,
    event_type           VARCHAR(100) NOT NULL,
    event_category       VARCHAR(50)  NOT NULL,
    event_action         VARCHAR(50)  NOT NULL,
    event_outcome        VARCHAR(20)  NOT NULL,
    actor_type           VARCHAR(50)  NOT NULL,
    actor_id             VARCHAR(255) NOT NULL,
    actor_ip             VARCHAR(45),
    resource_type        VARCHAR(100) NOT NULL,
    resource_id          VARCHAR(255) NOT NULL,
    resource_name        VARCHAR(255),
    correlation_id       VARCHAR(255) NOT NULL,
    parent_event_id      UUID,
    parent_event_date    DATE,
    trace_id             VARCHAR(255),
    span_id              VARCHAR(255),
    namespace            VARCHAR(253),
    cluster_id           VARCHAR(255),
    event_data           JSONB        NOT NULL,
    event_metadata       JSONB,
    severity             VARCHAR(20),
    duration_ms          INTEGER,
    error_code           VARCHAR(50),
    error_message        TEXT,
    retention_days       INTEGER      NOT NULL DEFAULT 2555,
    is_sensitive         BOOLEAN      NOT NULL DEFAULT FALSE,
    event_hash           TEXT,
    previous_event_hash  TEXT,
    hash_algorithm       VARCHAR(20)  NOT NULL DEFAULT 'sha256-unkeyed',
    legal_hold           BOOLEAN      NOT NULL DEFAULT FALSE,
    legal_hold_reason    TEXT,
    legal_hold_placed_by TEXT,
    legal_hold_placed_at TIMESTAMPTZ,
    CONSTRAINT audit_events_pkey PRIMARY KEY (event_id, event_date),
    CONSTRAINT chk_retention_days_range CHECK (retention_days BETWEEN 1 AND 2555),
    CONSTRAINT chk_event_date_is_utc_date CHECK (event_date = (event_timestamp AT TIME ZONE 'UTC')::date),
    CONSTRAINT chk_event_outcome CHECK (event_outcome IN ('success', 'failure', 'pending')),
    CONSTRAINT chk_parent_date_needs_parent CHECK (parent_event_id IS NOT NULL OR parent_event_date IS NULL),
    CONSTRAINT chk_duration_ms_non_negative CHECK (duration_ms IS NULL OR duration_ms >= 0),
    CONSTRAINT chk_child_not_before_parent_day CHECK (parent_event_date IS NULL OR event_date >= parent_event_date - 1)
) PARTITION BY RANGE (event_date);

ALTER TABLE audit_events ADD CONSTRAINT fk_audit_events_parent
    FOREIGN KEY (parent_event_id, parent_event_date)
    REFERENCES audit_events (event_id, event_date) ON DELETE RESTRICT;

CREATE INDEX idx_audit_events_parent_lookup ON audit_events (parent_event_id, parent_event_date)
    WHERE parent_event_id IS NOT NULL;
CREATE INDEX idx_audit_events_keyset ON audit_events (event_timestamp, event_id);
CREATE INDEX idx_audit_events_roots ON audit_events (event_timestamp, event_id) WHERE parent_event_id IS NULL;
CREATE INDEX idx_audit_events_event_type ON audit_events (event_type text_pattern_ops, event_timestamp, event_id);
CREATE INDEX idx_audit_events_category ON audit_events (event_category, event_timestamp, event_id);
CREATE INDEX idx_audit_events_action ON audit_events (event_action, event_timestamp, event_id);
CREATE INDEX idx_audit_events_outcome ON audit_events (event_outcome, event_timestamp, event_id);
CREATE INDEX idx_audit_events_severity ON audit_events (severity, event_timestamp, event_id) WHERE severity IS NOT NULL;
CREATE INDEX idx_audit_events_correlation ON audit_events (correlation_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_actor ON audit_events (actor_type, actor_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_resource ON audit_events (resource_type, resource_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_namespace ON audit_events (namespace, event_timestamp, event_id) WHERE namespace IS NOT NULL;
CREATE INDEX idx_audit_events_cluster ON audit_events (cluster_id, event_timestamp, event_id) WHERE cluster_id IS NOT NULL;

CREATE FUNCTION auditgraph_ensure_partition(day DATE) RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    month_start DATE := date_trunc('month', day)::date;
    month_end   DATE := (date_trunc('month', day) + INTERVAL '1 month')::date;
    part        TEXT := 'audit_events_' || to_char(month_start, 'YYYY_MM');
BEGIN
    IF to_regclass(quote_ident(part)) IS NULL THEN
        -- Serialise creators so that two writers racing into a new month do not both try.
        PERFORM pg_advisory_xact_lock(hashtext('auditgraph_partition_ddl'));
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                           part, month_start, month_end);
        END IF;
    END IF;
    RETURN part;
END
$fn$;

SELECT auditgraph_ensure_partition(
           (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => m))::date)
FROM generate_series(-1, 3) AS m;
"#;

const POSTGRES_DOWN: &str = r#"
DROP TABLE audit_events CASCADE;
DROP FUNCTION auditgraph_ensure_partition(DATE);
"#;

const SQLITE_UP: &str = r#"
CREATE TABLE audit_events (
    event_id             BLOB    NOT NULL CHECK (length(event_id) = 16),
    event_version        TEXT    NOT NULL DEFAULT '1.0' CHECK (length(event_version) <= 20),
    event_timestamp      TEXT    NOT NULL,
    event_date           TEXT    NOT NULL,
    event_type           TEXT    NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    event_category       TEXT    NOT NULL CHECK (length(event_category) BETWEEN 1 AND 50),
    event_action         TEXT    NOT NULL CHECK (length(event_action) BETWEEN 1 AND 50),
    event_outcome        TEXT    NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type           TEXT    NOT NULL CHECK (length(actor_type) <= 50),
    actor_id             TEXT    NOT NULL CHECK (length(actor_id) <= 255),
    actor_ip             TEXT    CHECK (length(actor_ip) <= 45),
    resource_type        TEXT    NOT NULL CHECK (length(resource_type) <= 100),
    resource_id          TEXT    NOT NULL CHECK (length(resource_id) <= 255),
    resource_name        TEXT    CHECK (length(resource_name) <= 255),
    correlation_id       TEXT    NOT NULL CHECK (length(correlation_id) BETWEEN 1 AND 255),
    parent_event_id      BLOB,
    parent_event_date    TEXT,
    trace_id             TEXT    CHECK (length(trace_id) <= 255),
    span_id              TEXT    CHECK (length(span_id) <= 255),
    namespace            TEXT    CHECK (length(namespace) <= 253),
    cluster_id           TEXT    CHECK (length(cluster_id) <= 255),
    event_data           TEXT    NOT NULL CHECK (json_valid(event_data)),
    event_metadata       TEXT    CHECK (event_metadata IS NULL OR json_valid(event_metadata)),
    severity             TEXT    CHECK (length(severity) <= 20),
    duration_ms          INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    error_code           TEXT    CHECK (length(error_code) <= 50),
    error_message        TEXT,
    retention_days       INTEGER NOT NULL DEFAULT 2555,
    is_sensitive         INTEGER NOT NULL DEFAULT 0 CHECK (is_sensitive IN (0, 1)),
    event_hash           TEXT,
    previous_event_hash  TEXT,
    hash_algorithm       TEXT    NOT NULL DEFAULT 'sha256-unkeyed' CHECK (length(hash_algorithm) <= 20),
    legal_hold           INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1)),
    legal_hold_reason    TEXT,
    legal_hold_placed_by TEXT,
    legal_hold_placed_at TEXT,
    CONSTRAINT audit_events_pkey PRIMARY KEY (event_id, event_date),
    CONSTRAINT chk_retention_days_range CHECK (retention_days BETWEEN 1 AND 2555),
    CONSTRAINT chk_event_date_is_utc_date CHECK (event_date = date(event_timestamp)),
    CONSTRAINT chk_parent_date_needs_parent CHECK (parent_event_id IS NOT NULL OR parent_event_date IS NULL),
    CONSTRAINT chk_child_not_before_parent_day CHECK (parent_event_date IS NULL OR event_date >= date(parent_event_date, '-1 day')),
    CONSTRAINT fk_audit_events_parent FOREIGN KEY (parent_event_id, parent_event_date)
        REFERENCES audit_events (event_id, event_date) ON DELETE RESTRICT
) STRICT;

CREATE INDEX idx_audit_events_parent_lookup ON audit_events (parent_event_id, parent_event_date)
    WHERE parent_event_id IS NOT NULL;
CREATE INDEX idx_audit_events_keyset ON audit_events (event_timestamp, event_id);
CREATE INDEX idx_audit_events_roots ON audit_events (event_timestamp, event_id) WHERE parent_event_id IS NULL;
CREATE INDEX idx_audit_events_event_type ON audit_events (event_type, event_timestamp, event_id);
CREATE INDEX idx_audit_events_category ON audit_events (event_category, event_timestamp, event_id);
CREATE INDEX idx_audit_events_action ON audit_events (event_action, event_timestamp, event_id);
CREATE INDEX idx_audit_events_outcome ON audit_events (event_outcome, event_timestamp, event_id);
CREATE INDEX idx_audit_events_severity ON audit_events (severity, event_timestamp, event_id) WHERE severity IS NOT NULL;
CREATE INDEX idx_audit_events_correlation ON audit_events (correlation_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_actor ON audit_events (actor_type, actor_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_resource ON audit_events (resource_type, resource_id, event_timestamp, event_id);
CREATE INDEX idx_audit_events_namespace ON audit_events (namespace, event_timestamp, event_id) WHERE namespace IS NOT NULL;
CREATE INDEX idx_audit_events_cluster ON audit_events (cluster_id, event_timestamp, event_id) WHERE cluster_id IS NOT NULL;
"#;

const SQLITE_DOWN: &str = "DROP TABLE audit_events;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
