//! Record lifecycle in the API: legal holds and retention runs.

use async_graphql::{ComplexObject, Enum, ID, Object, SimpleObject};
use uuid::Uuid;

use super::AuditEvent;
use crate::domain::global_id::GlobalId;
use crate::entity::audit_event::Model;
use crate::store::{self, RunStatus};

/// A legal hold on a correlation: none of its events, those written later included, can be
/// deleted until the hold is released.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct LegalHold {
    /// The correlation held.
    pub correlation_id: String,
    /// Why the hold was placed.
    pub reason: String,
    /// Who placed it (the authenticated principal).
    pub placed_by: String,
    /// When it was placed.
    pub placed_at: super::DateTime,
    /// How many events of the correlation it holds.
    pub events_held: u64,
}

#[ComplexObject]
impl LegalHold {
    /// The hold's global id (`Node`): opaque and stable while the hold is in force.
    pub async fn id(&self) -> ID {
        GlobalId::LegalHold(self.correlation_id.clone()).encode().into()
    }
}

impl From<store::LegalHold> for LegalHold {
    fn from(hold: store::LegalHold) -> Self {
        Self {
            correlation_id: hold.correlation_id,
            reason: hold.reason,
            placed_by: hold.placed_by,
            placed_at: hold.placed_at.into(),
            events_held: hold.events_held,
        }
    }
}

/// A hold placed, and the event that records it.
pub struct LegalHoldPlaced {
    /// The hold.
    pub hold: store::LegalHold,
    /// The event recording the placing.
    pub record: Model,
}

/// A hold placed, and the event that records it.
#[Object]
impl LegalHoldPlaced {
    /// The hold now in force.
    async fn hold(&self) -> LegalHold {
        self.hold.clone().into()
    }

    /// The event of the correlation that records who placed the hold, when and why (it is
    /// held too).
    async fn record(&self) -> AuditEvent {
        AuditEvent::from(self.record.clone())
    }
}

/// A hold released, and the event that records it.
pub struct LegalHoldReleased {
    /// The release.
    pub released: store::ReleasedHold,
    /// The event recording it.
    pub record: Model,
}

/// A hold released, and the event that records it.
#[Object]
impl LegalHoldReleased {
    /// The correlation released.
    async fn correlation_id(&self) -> &str {
        &self.released.correlation_id
    }

    /// How many events the hold covered; their `legalHoldReason` now ends with
    /// `[Released: <reason>]`.
    async fn events_released(&self) -> u64 {
        self.released.events_released
    }

    /// Who released it.
    async fn released_by(&self) -> &str {
        &self.released.released_by
    }

    /// When.
    async fn released_at(&self) -> super::DateTime {
        self.released.released_at.into()
    }

    /// The event of the correlation that records who released the hold, when and why.
    async fn record(&self) -> AuditEvent {
        AuditEvent::from(self.record.clone())
    }
}

/// The state of a retention run.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionRunStatus {
    /// Working now (or its runner stopped; the next run takes it over).
    Running,
    /// Stopped after the batches it was allowed; the next run resumes it.
    Paused,
    /// Done.
    Finished,
    /// Stopped by an error; `error` says which.
    Failed,
}

impl From<RunStatus> for RetentionRunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Running => Self::Running,
            RunStatus::Paused => Self::Paused,
            RunStatus::Finished => Self::Finished,
            RunStatus::Failed => Self::Failed,
        }
    }
}

/// A retention run: what it found and what it deleted.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct RetentionRun {
    /// The run's id; `auditgraph verify` names it for each event it purged.
    pub run_id: Uuid,
    /// Events whose `eventDate` plus `retentionDays` falls before this date were expired.
    pub as_of: super::Date,
    /// Whether the run only reported (nothing deleted).
    pub dry_run: bool,
    /// Its state.
    pub status: RetentionRunStatus,
    /// The host and process that ran it.
    pub runner: String,
    /// When it started.
    pub started_at: super::DateTime,
    /// When it ended.
    pub finished_at: Option<super::DateTime>,
    /// Expired events examined.
    pub rows_scanned: u64,
    /// Events deleted (for a dry run: that would be).
    pub rows_deleted: u64,
    /// Expired events kept because a legal hold covers them.
    pub kept_held: u64,
    /// Expired events kept because a child of theirs is kept.
    pub kept_parent: u64,
    /// Monthly partitions detached and dropped whole.
    pub partitions_dropped: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
}

#[ComplexObject]
impl RetentionRun {
    /// The run's global id (`Node`): opaque and stable. Its own UUID is `runId`.
    pub async fn id(&self) -> ID {
        GlobalId::RetentionRun(self.run_id).encode().into()
    }
}

impl From<store::RetentionRun> for RetentionRun {
    fn from(run: store::RetentionRun) -> Self {
        Self {
            run_id: run.run_id,
            as_of: run.as_of.into(),
            dry_run: run.dry_run,
            status: run.status.into(),
            runner: run.runner,
            started_at: run.started_at.into(),
            finished_at: run.finished_at.map(Into::into),
            rows_scanned: run.counts.rows_scanned,
            rows_deleted: run.counts.rows_deleted,
            kept_held: run.counts.kept_held,
            kept_parent: run.counts.kept_parent,
            partitions_dropped: run.counts.partitions_dropped,
            error: run.error,
        }
    }
}
