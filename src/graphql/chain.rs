//! Tamper evidence in the API: the result of checking a correlation's hash chain.

use async_graphql::{Enum, Object, SimpleObject};
use uuid::Uuid;

use crate::domain::chain::{BreakKind, ChainBreak as Break};
use crate::service::ChainVerification as Verification;

/// What kind of break a chain shows.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainBreakKind {
    /// The event's stored content no longer matches its hash: it was changed after it was written.
    ContentChanged,
    /// Its `previousEventHash` is not the hash of the event before it.
    LinkBroken,
    /// Positions before it are missing: events were removed.
    MissingEvents,
    /// Two events claim the same position: one of them was inserted.
    DuplicatePosition,
    /// The chain was recorded longer, or ending in another hash, than its stored events: its last
    /// events were removed or replaced.
    MissingTail,
    /// The hash cannot be recomputed by this server (a key it does not hold, an unknown algorithm).
    Unverifiable,
    /// The event's hash differs from the one the transparency log recorded for it: the event and
    /// its chain were rewritten with recomputed hashes.
    LogMismatch,
    /// An unkeyed hash follows keyed ones: someone without the key extended the chain.
    KeyDowngrade,
    /// A retention run is recorded as deleting the event before its retention passed.
    PurgedUnexpired,
}

impl From<BreakKind> for ChainBreakKind {
    fn from(kind: BreakKind) -> Self {
        match kind {
            BreakKind::ContentChanged => Self::ContentChanged,
            BreakKind::LinkBroken => Self::LinkBroken,
            BreakKind::MissingEvents => Self::MissingEvents,
            BreakKind::DuplicatePosition => Self::DuplicatePosition,
            BreakKind::MissingTail => Self::MissingTail,
            BreakKind::Unverifiable => Self::Unverifiable,
            BreakKind::LogMismatch => Self::LogMismatch,
            BreakKind::KeyDowngrade => Self::KeyDowngrade,
            BreakKind::PurgedUnexpired => Self::PurgedUnexpired,
        }
    }
}

/// One place where a chain does not hold.
#[derive(SimpleObject, Clone, Debug)]
pub struct ChainBreak {
    /// The event where the chain breaks (for missing events: the first one after the gap; for a
    /// missing tail: the last one stored).
    pub event_id: Uuid,
    /// The event's stored position in its chain.
    pub position: Option<i64>,
    /// What kind of break.
    pub kind: ChainBreakKind,
    /// What the check found, in words.
    pub message: String,
    /// The hash the event should carry, recomputed from its content (or the head's hash for a
    /// missing tail), when known.
    pub expected_hash: Option<String>,
    /// The hash the event carries.
    pub actual_hash: Option<String>,
    /// The previous hash the event carries.
    pub previous_hash: Option<String>,
}

impl From<&Break> for ChainBreak {
    fn from(b: &Break) -> Self {
        Self {
            event_id: b.event_id,
            position: b.position,
            kind: b.kind.into(),
            message: b.message.clone(),
            expected_hash: b.expected_hash.clone(),
            actual_hash: b.actual_hash.clone(),
            previous_hash: b.previous_hash.clone(),
        }
    }
}

/// The result of checking one correlation's hash chain.
pub struct ChainVerification(pub Verification);

/// The result of checking one correlation's hash chain.
#[Object]
impl ChainVerification {
    /// The correlation checked.
    async fn correlation_id(&self) -> &str {
        &self.0.correlation_id
    }
    /// Whether every hash, link and position checks out and nothing is missing.
    async fn valid(&self) -> bool {
        self.0.report.valid()
    }
    /// Events of the correlation that are part of its chain.
    async fn total_events(&self) -> u64 {
        self.0.report.chained
    }
    /// Of those, the ones whose hash, link and position all check out.
    async fn verified_events(&self) -> u64 {
        self.0.report.verified
    }
    /// Events stored before hash chains existed: they carry no hash and cannot be verified.
    async fn unchained_events(&self) -> u64 {
        self.0.report.unchained
    }
    /// Events of the chain that retention runs deleted once their retention had passed. Their
    /// positions are not gaps: each run recorded the deleted event's hash, and the next event
    /// still links to it.
    async fn purged_events(&self) -> u64 {
        self.0.report.purged
    }
    /// The retention runs that deleted them.
    async fn purged_by_runs(&self) -> Vec<Uuid> {
        self.0.report.purged_by.iter().copied().collect()
    }
    /// The first break in chain order, if any.
    async fn first_break(&self) -> Option<ChainBreak> {
        self.0.report.breaks.first().map(ChainBreak::from)
    }
    /// Every break found, in chain order.
    async fn breaks(&self) -> Vec<ChainBreak> {
        self.0.report.breaks.iter().map(ChainBreak::from).collect()
    }
    /// When the check ran.
    async fn verified_at(&self) -> super::DateTime {
        self.0.verified_at.into()
    }
}
