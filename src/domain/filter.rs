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

/// The longest text a column filter may hold: no stored column value is longer (255 is the
/// widest), so a longer filter could only match nothing after shipping it to the database.
pub const MAX_FILTER_TEXT: usize = 1_000;

impl EventFilter {
    /// The first text field that cannot be compared on every engine (it holds U+0000) or is
    /// longer than anything stored, by its column name, with what is wrong.
    pub fn text_problem(&self) -> Option<(&'static str, String)> {
        let (key, value) = match &self.data_equals {
            Some((key, value)) => (Some(key), Some(value)),
            None => (None, None),
        };
        [
            ("event_type", self.event_type.as_ref(), MAX_FILTER_TEXT),
            ("event_type_prefix", self.event_type_prefix.as_ref(), MAX_FILTER_TEXT),
            ("event_category", self.event_category.as_ref(), MAX_FILTER_TEXT),
            ("event_action", self.event_action.as_ref(), MAX_FILTER_TEXT),
            ("event_outcome", self.event_outcome.as_ref(), MAX_FILTER_TEXT),
            ("severity", self.severity.as_ref(), MAX_FILTER_TEXT),
            ("correlation_id", self.correlation_id.as_ref(), MAX_FILTER_TEXT),
            ("actor_type", self.actor_type.as_ref(), MAX_FILTER_TEXT),
            ("actor_id", self.actor_id.as_ref(), MAX_FILTER_TEXT),
            ("resource_type", self.resource_type.as_ref(), MAX_FILTER_TEXT),
            ("resource_id", self.resource_id.as_ref(), MAX_FILTER_TEXT),
            ("namespace", self.namespace.as_ref(), MAX_FILTER_TEXT),
            ("cluster_id", self.cluster_id.as_ref(), MAX_FILTER_TEXT),
            ("detail_key", key, MAX_FILTER_TEXT),
            ("detail_value", value, crate::domain::event::MAX_JSON_BYTES),
        ]
        .into_iter()
        .find_map(|(name, value, max)| {
            let value = value?;
            if value.contains('\0') {
                Some((name, crate::domain::event::NUL_MESSAGE.to_string()))
            } else if value.len() > max {
                Some((
                    name,
                    format!("is {} bytes long; at most {max} are allowed", value.len()),
                ))
            } else {
                None
            }
        })
    }
}

impl EventFilter {
    /// Whether a stored event passes the filter: the same rules as the filter's SQL form (which
    /// listings use), for events that are in memory already (live subscriptions).
    pub fn matches(&self, event: &crate::entity::audit_event::Model) -> bool {
        let text = |wanted: &Option<String>, value: &str| wanted.as_ref().is_none_or(|w| w == value);
        let optional =
            |wanted: &Option<String>, value: &Option<String>| wanted.as_ref().is_none_or(|w| value.as_ref() == Some(w));
        text(&self.event_type, &event.event_type)
            && text(&self.event_category, &event.event_category)
            && text(&self.event_action, &event.event_action)
            && text(&self.event_outcome, &event.event_outcome)
            && optional(&self.severity, &event.severity)
            && text(&self.correlation_id, &event.correlation_id)
            && text(&self.actor_type, &event.actor_type)
            && text(&self.actor_id, &event.actor_id)
            && text(&self.resource_type, &event.resource_type)
            && text(&self.resource_id, &event.resource_id)
            && optional(&self.namespace, &event.namespace)
            && optional(&self.cluster_id, &event.cluster_id)
            && self
                .event_type_prefix
                .as_ref()
                .is_none_or(|prefix| event.event_type.starts_with(prefix.as_str()))
            && self.parent_event_id.is_none_or(|p| event.parent_event_id == Some(p))
            && (!self.roots_only || event.parent_event_id.is_none())
            && self.since.is_none_or(|since| event.event_timestamp >= since)
            && self.until.is_none_or(|until| event.event_timestamp <= until)
            && self
                .data_equals
                .as_ref()
                .is_none_or(|(key, value)| data_equals(&event.event_data, key, value))
    }
}

/// The in-memory form of the `event_data` condition: a top-level string or boolean whose text
/// equals the value, or a number equal to it as a number; objects, arrays and null never match.
fn data_equals(data: &serde_json::Value, key: &str, value: &str) -> bool {
    match data.get(key) {
        Some(serde_json::Value::String(s)) => s == value,
        Some(serde_json::Value::Bool(b)) => (if *b { "true" } else { "false" }) == value,
        Some(serde_json::Value::Number(n)) => match (n.as_f64(), value.parse::<f64>()) {
            (Some(stored), Ok(wanted)) => wanted.is_finite() && stored == wanted,
            _ => false,
        },
        _ => false,
    }
}

/// Whether `key` may name an `event_data` field in a filter: letters, digits and underscores.
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
