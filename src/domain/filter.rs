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

impl EventFilter {
    /// The first text field that cannot be compared on every engine (it holds U+0000), by its
    /// column name.
    pub fn unstorable_text(&self) -> Option<&'static str> {
        let (key, value) = match &self.data_equals {
            Some((key, value)) => (Some(key), Some(value)),
            None => (None, None),
        };
        [
            ("event_type", self.event_type.as_ref()),
            ("event_type_prefix", self.event_type_prefix.as_ref()),
            ("event_category", self.event_category.as_ref()),
            ("event_action", self.event_action.as_ref()),
            ("event_outcome", self.event_outcome.as_ref()),
            ("severity", self.severity.as_ref()),
            ("correlation_id", self.correlation_id.as_ref()),
            ("actor_type", self.actor_type.as_ref()),
            ("actor_id", self.actor_id.as_ref()),
            ("resource_type", self.resource_type.as_ref()),
            ("resource_id", self.resource_id.as_ref()),
            ("namespace", self.namespace.as_ref()),
            ("cluster_id", self.cluster_id.as_ref()),
            ("detail_key", key),
            ("detail_value", value),
        ]
        .into_iter()
        .find_map(|(name, value)| value.is_some_and(|v| v.contains('\0')).then_some(name))
    }
}

/// Whether `key` may name an `event_data` field in a filter: letters, digits and underscores.
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
