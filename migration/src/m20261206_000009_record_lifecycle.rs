//! Legal holds and retention.
//!
//! - `audit_legal_holds`: the correlations under a hold now (placing and releasing are recorded
//!   as audit events of the correlation itself). Every event of a held correlation carries the
//!   hold in its `legal_hold*` columns, those written later too: a trigger sets them as the event
//!   is stored, whatever path stores it.
//! - `audit_retention_runs`: every retention run, with what it found and did; at most one is
//!   unfinished at a time, and the next run resumes it.
//! - `audit_purged`: one row per event a retention run deleted (its key, chain position, hash and
//!   retention, the run), so that chains and the transparency log still verify and show where
//!   purged events were. Append-only.
//! - Deleting an event is refused unless the deleting transaction holds a grant of a retention
//!   run (`audit_purge_grant`, a row visible to that transaction only), the event's retention has
//!   passed by the run's date, and it is under no legal hold; the foreign key keeps every parent
//!   whose dated children remain (a run also keeps the parents of legacy links, which the key
//!   cannot see). The delete trigger writes the event's `audit_purged` row.
//! - An index on the day each event expires, for the runs to find expired events without
//!   reading the others; and one on the events without a hash (stored before hash chains), which
//!   exports list after the logged ones.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const REFUSED_DELETE: &str = "audit events cannot be deleted: only a retention run removes events, and only those whose retention has passed and that are under no legal hold";
const NOT_EXPIRED: &str = "audit events cannot be deleted before their retention_days have passed";
const HELD: &str = "Cannot delete audit event with legal hold";

fn postgres_up() -> String {
    format!(
        r#"
CREATE TABLE audit_legal_holds (
    correlation_id VARCHAR(255) PRIMARY KEY,
    reason         TEXT         NOT NULL,
    placed_by      TEXT         NOT NULL,
    placed_at      TIMESTAMPTZ  NOT NULL
);

CREATE TABLE audit_retention_runs (
    run_id             UUID        PRIMARY KEY,
    as_of              DATE        NOT NULL,
    dry_run            BOOLEAN     NOT NULL,
    status             VARCHAR(16) NOT NULL CHECK (status IN ('running', 'paused', 'finished', 'failed')),
    runner             TEXT        NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    heartbeat_at       TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    rows_scanned       BIGINT      NOT NULL DEFAULT 0,
    rows_deleted       BIGINT      NOT NULL DEFAULT 0,
    kept_held          BIGINT      NOT NULL DEFAULT 0,
    kept_parent        BIGINT      NOT NULL DEFAULT 0,
    partitions_dropped TEXT        NOT NULL DEFAULT '',
    error              TEXT
);
-- One unfinished run at a time, across every server process.
CREATE UNIQUE INDEX ux_audit_retention_runs_unfinished ON audit_retention_runs ((TRUE))
    WHERE status IN ('running', 'paused');

CREATE TABLE audit_purge_grant (
    run_id     UUID   NOT NULL REFERENCES audit_retention_runs (run_id),
    granted_in BIGINT NOT NULL DEFAULT txid_current()
);

CREATE TABLE audit_purged (
    event_id        UUID         NOT NULL,
    event_date      DATE         NOT NULL,
    correlation_id  VARCHAR(255) NOT NULL,
    parent_event_id UUID,
    chain_seq       BIGINT,
    event_hash      VARCHAR(128),
    retention_days  INTEGER      NOT NULL,
    run_id          UUID         NOT NULL REFERENCES audit_retention_runs (run_id),
    purged_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, event_date)
);
CREATE INDEX idx_audit_purged_correlation ON audit_purged (correlation_id, chain_seq);

CREATE FUNCTION auditgraph_purged_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the record of purged events is append-only' USING ERRCODE = '23514';
END $$;
CREATE TRIGGER trg_audit_purged_append_only BEFORE UPDATE OR DELETE ON audit_purged
    FOR EACH ROW EXECUTE FUNCTION auditgraph_purged_append_only();
CREATE TRIGGER trg_audit_purged_no_truncate BEFORE TRUNCATE ON audit_purged
    FOR EACH STATEMENT EXECUTE FUNCTION auditgraph_purged_append_only();

CREATE INDEX idx_audit_events_expiry ON audit_events ((event_date + retention_days), event_date, event_id);
CREATE INDEX idx_audit_events_unhashed ON audit_events (event_timestamp, event_id) WHERE event_hash IS NULL;

-- A new event of a held correlation is held too. Writers take the correlation's chain lock
-- before their rows go in (the batch and import paths before the statement, a single write's
-- statement before it inserts), and placing a hold takes it too: either the hold is committed
-- before the row is checked (each check reads the newest committed rows), or the event is
-- committed before the hold marks the correlation's events.
CREATE FUNCTION auditgraph_hold_new_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hold audit_legal_holds%ROWTYPE;
BEGIN
    SELECT * INTO hold FROM audit_legal_holds WHERE correlation_id = NEW.correlation_id;
    IF FOUND THEN
        NEW.legal_hold := TRUE;
        NEW.legal_hold_reason := hold.reason;
        NEW.legal_hold_placed_by := hold.placed_by;
        NEW.legal_hold_placed_at := hold.placed_at;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trg_audit_events_held BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditgraph_hold_new_event();

CREATE FUNCTION auditgraph_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run  UUID;
    upto DATE;
BEGIN
    SELECT g.run_id, LEAST(r.as_of, CURRENT_DATE) INTO run, upto
        FROM audit_purge_grant g JOIN audit_retention_runs r ON r.run_id = g.run_id
        WHERE g.granted_in = txid_current() LIMIT 1;
    IF run IS NULL THEN
        RAISE EXCEPTION '{REFUSED_DELETE}' USING ERRCODE = '23514';
    END IF;
    IF OLD.legal_hold OR EXISTS (SELECT 1 FROM audit_legal_holds WHERE correlation_id = OLD.correlation_id) THEN
        RAISE EXCEPTION '{HELD}: event_id=%, correlation_id=%', OLD.event_id, OLD.correlation_id
            USING ERRCODE = '23503',
                  HINT = 'Release legal hold before deletion via DELETE /api/v1/audit/legal-hold/{{correlation_id}}';
    END IF;
    IF OLD.event_date + OLD.retention_days >= upto THEN
        RAISE EXCEPTION '{NOT_EXPIRED}: event_id=%', OLD.event_id USING ERRCODE = '23514';
    END IF;
    INSERT INTO audit_purged (event_id, event_date, correlation_id, parent_event_id, chain_seq, event_hash, retention_days, run_id)
        VALUES (OLD.event_id, OLD.event_date, OLD.correlation_id, OLD.parent_event_id, OLD.chain_seq, OLD.event_hash, OLD.retention_days, run);
    RETURN OLD;
END $$;
DROP TRIGGER trg_audit_events_no_delete ON audit_events;
CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditgraph_guard_delete();
"#
    )
}

fn sqlite_up() -> String {
    format!(
        r#"
CREATE TABLE audit_legal_holds (
    correlation_id TEXT PRIMARY KEY CHECK (length(correlation_id) BETWEEN 1 AND 255),
    reason         TEXT NOT NULL,
    placed_by      TEXT NOT NULL,
    placed_at      TEXT NOT NULL
) STRICT;

CREATE TABLE audit_retention_runs (
    run_id             BLOB    PRIMARY KEY CHECK (length(run_id) = 16),
    as_of              TEXT    NOT NULL,
    dry_run            INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    status             TEXT    NOT NULL CHECK (status IN ('running', 'paused', 'finished', 'failed')),
    runner             TEXT    NOT NULL,
    started_at         TEXT    NOT NULL,
    heartbeat_at       TEXT    NOT NULL,
    finished_at        TEXT,
    rows_scanned       INTEGER NOT NULL DEFAULT 0,
    rows_deleted       INTEGER NOT NULL DEFAULT 0,
    kept_held          INTEGER NOT NULL DEFAULT 0,
    kept_parent        INTEGER NOT NULL DEFAULT 0,
    partitions_dropped TEXT    NOT NULL DEFAULT '',
    error              TEXT
) STRICT;
CREATE UNIQUE INDEX ux_audit_retention_runs_unfinished ON audit_retention_runs (status = status)
    WHERE status IN ('running', 'paused');

-- SQLite has one writer at a time and other connections never see uncommitted rows, so a grant
-- is visible only to the transaction that holds it; the run removes it before committing.
CREATE TABLE audit_purge_grant (
    run_id BLOB NOT NULL REFERENCES audit_retention_runs (run_id)
) STRICT;

CREATE TABLE audit_purged (
    event_id        BLOB    NOT NULL,
    event_date      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    parent_event_id BLOB,
    chain_seq       INTEGER,
    event_hash      TEXT,
    retention_days  INTEGER NOT NULL,
    run_id          BLOB    NOT NULL REFERENCES audit_retention_runs (run_id),
    purged_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (event_id, event_date)
) STRICT;
CREATE INDEX idx_audit_purged_correlation ON audit_purged (correlation_id, chain_seq);

CREATE TRIGGER trg_audit_purged_no_update BEFORE UPDATE ON audit_purged
BEGIN SELECT RAISE(ABORT, 'the record of purged events is append-only'); END;
CREATE TRIGGER trg_audit_purged_no_delete BEFORE DELETE ON audit_purged
BEGIN SELECT RAISE(ABORT, 'the record of purged events is append-only'); END;
CREATE TRIGGER trg_audit_purged_no_replace BEFORE INSERT ON audit_purged
WHEN EXISTS (SELECT 1 FROM audit_purged WHERE event_id = NEW.event_id AND event_date = NEW.event_date)
BEGIN SELECT RAISE(ABORT, 'the record of purged events is append-only'); END;

CREATE INDEX idx_audit_events_expiry ON audit_events ((julianday(event_date) + retention_days), event_date, event_id);
CREATE INDEX idx_audit_events_unhashed ON audit_events (event_timestamp, event_id) WHERE event_hash IS NULL;

CREATE TRIGGER trg_audit_events_held AFTER INSERT ON audit_events
WHEN NEW.legal_hold = 0 AND EXISTS (SELECT 1 FROM audit_legal_holds WHERE correlation_id = NEW.correlation_id)
BEGIN
    UPDATE audit_events SET
        legal_hold = 1,
        legal_hold_reason = (SELECT reason FROM audit_legal_holds WHERE correlation_id = NEW.correlation_id),
        legal_hold_placed_by = (SELECT placed_by FROM audit_legal_holds WHERE correlation_id = NEW.correlation_id),
        legal_hold_placed_at = (SELECT placed_at FROM audit_legal_holds WHERE correlation_id = NEW.correlation_id)
    WHERE event_id = NEW.event_id AND event_date = NEW.event_date;
END;

DROP TRIGGER trg_audit_events_no_delete;
CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_grant)
BEGIN
    SELECT RAISE(ABORT, '{REFUSED_DELETE}');
END;
CREATE TRIGGER trg_audit_events_held_no_delete BEFORE DELETE ON audit_events
WHEN EXISTS (SELECT 1 FROM audit_purge_grant)
    AND (OLD.legal_hold = 1 OR EXISTS (SELECT 1 FROM audit_legal_holds WHERE correlation_id = OLD.correlation_id))
BEGIN
    SELECT RAISE(ABORT, '{HELD}; release the legal hold of its correlation first');
END;
CREATE TRIGGER trg_audit_events_unexpired_no_delete BEFORE DELETE ON audit_events
WHEN EXISTS (SELECT 1 FROM audit_purge_grant) AND julianday(OLD.event_date) + OLD.retention_days >= min(
    julianday(date('now')),
    coalesce((SELECT julianday(r.as_of) FROM audit_purge_grant g JOIN audit_retention_runs r ON r.run_id = g.run_id), 0))
BEGIN
    SELECT RAISE(ABORT, '{NOT_EXPIRED}');
END;
CREATE TRIGGER trg_audit_events_purged AFTER DELETE ON audit_events
BEGIN
    INSERT INTO audit_purged (event_id, event_date, correlation_id, parent_event_id, chain_seq, event_hash, retention_days, run_id)
        VALUES (OLD.event_id, OLD.event_date, OLD.correlation_id, OLD.parent_event_id, OLD.chain_seq, OLD.event_hash,
                OLD.retention_days, (SELECT run_id FROM audit_purge_grant LIMIT 1));
END;
"#
    )
}

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_no_delete ON audit_events;
CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION auditgraph_refuse_delete();
DROP FUNCTION auditgraph_guard_delete();
DROP TRIGGER trg_audit_events_held ON audit_events;
DROP FUNCTION auditgraph_hold_new_event();
DROP INDEX idx_audit_events_unhashed;
DROP INDEX idx_audit_events_expiry;
DROP TRIGGER trg_audit_purged_no_truncate ON audit_purged;
DROP TABLE audit_purged;
DROP FUNCTION auditgraph_purged_append_only();
DROP TABLE audit_purge_grant;
DROP TABLE audit_retention_runs;
DROP TABLE audit_legal_holds;
"#;

const SQLITE_DOWN: &str = r#"
DROP TRIGGER trg_audit_events_purged;
DROP TRIGGER trg_audit_events_unexpired_no_delete;
DROP TRIGGER trg_audit_events_held_no_delete;
DROP TRIGGER trg_audit_events_no_delete;
CREATE TRIGGER trg_audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be deleted');
END;
DROP TRIGGER trg_audit_events_held;
DROP INDEX idx_audit_events_unhashed;
DROP INDEX idx_audit_events_expiry;
DROP TABLE audit_purged;
DROP TABLE audit_purge_grant;
DROP TABLE audit_retention_runs;
DROP TABLE audit_legal_holds;
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
