//! The filter shared by every listing of events.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Which events a listing covers. Every set field must match; `None` means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    pub event_type: Option<String>,
    /// Matches event types that start with this text (`gateway.` matches `gateway.signal.received`).
    pub event_type_prefix: Option<String>,
    pub event_category: Option<String>,
    pub event_action: Option<String>,
    pub event_outcome: Option<String>,
    pub severity: Option<String>,
    pub correlation_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub namespace: Option<String>,
    pub cluster_id: Option<String>,
    pub parent_event_id: Option<Uuid>,
    /// Only events without a parent.
    pub roots_only: bool,
    /// Inclusive lower bound on `event_timestamp`.
    pub since: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `event_timestamp`.
    pub until: Option<DateTime<Utc>>,
    /// `event_data` holds this top-level key with this value (compared as text).
    pub data_equals: Option<(String, String)>,
}

/// Whether `key` may name an `event_data` field in a filter: letters, digits and underscores.
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
