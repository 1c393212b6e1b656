//! The JSON wire shape of an event shared by the REST API and the import: kubernaut's field names
//! (`version`, `event_type`, …), read field by field so that every type error names its field.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{EventInput, FieldError};

const REQUIRED: [(&str, &str); 8] = [
    ("version", "event_version"),
    ("event_type", "event_type"),
    ("event_timestamp", "event_timestamp"),
    ("event_category", "event_category"),
    ("event_action", "event_action"),
    ("event_outcome", "event_outcome"),
    ("correlation_id", "correlation_id"),
    ("event_data", "event_data"),
];

/// Reads the fields of one JSON object, recording type errors under their column names.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// The type errors found so far.
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Reads the fields of `object`.
    pub fn new(object: &'a Map<String, Value>) -> Self {
        Self {
            object,
            errors: Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, name: &str, column: &'static str) -> Option<String> {
        match self.get(name) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.errors
                    .push(FieldError::new(column, "invalid_type", "must be a string"));
                None
            }
        }
    }

    fn required_string(&mut self, name: &str, column: &'static str) -> String {
        self.string(name, column).unwrap_or_default()
    }

    fn integer(&mut self, name: &str, column: &'static str) -> Option<i32> {
        let value = self.get(name)?;
        match value.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.errors
                    .push(FieldError::new(column, "invalid_type", "must be a 32-bit integer"));
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, column: &'static str) -> Option<bool> {
        let value = self.get(name)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.errors
                    .push(FieldError::new(column, "invalid_type", "must be true or false"));
                None
            }
        }
    }

    fn uuid(&mut self, name: &str, column: &'static str) -> Option<Uuid> {
        let text = self.string(name, column)?;
        match Uuid::parse_str(&text) {
            Ok(id) => Some(id),
            Err(_) => {
                self.errors
                    .push(FieldError::new(column, "invalid_format", "must be a UUID"));
                None
            }
        }
    }

    pub fn timestamp(&mut self, name: &str, column: &'static str) -> Option<DateTime<Utc>> {
        let text = self.string(name, column)?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.to_utc()),
            Err(_) => {
                self.errors.push(FieldError::new(
                    column,
                    "invalid_format",
                    "must be an RFC 3339 date-time",
                ));
                None
            }
        }
    }
}

/// The event a JSON object in the REST field shape describes. `parent_event_date` and
/// `event_date` are not read here: the server derives them (the import reads the former itself).
pub fn parse_event(value: &Value) -> Result<EventInput, Vec<FieldError>> {
    let Some(object) = value.as_object() else {
        return Err(vec![FieldError::new(
            "event_data",
            "invalid_type",
            "each event must be a JSON object",
        )]);
    };
    let mut f = Fields {
        object,
        errors: Vec::new(),
    };
    for (name, column) in REQUIRED {
        if f.get(name).is_none() {
            f.errors.push(FieldError::new(column, "required", "is required"));
        }
    }
    let input = EventInput {
        event_id: f.uuid("event_id", "event_id"),
        event_version: f.string("version", "event_version"),
        event_timestamp: f.timestamp("event_timestamp", "event_timestamp"),
        event_type: f.required_string("event_type", "event_type"),
        event_category: f.required_string("event_category", "event_category"),
        event_action: f.required_string("event_action", "event_action"),
        event_outcome: f.required_string("event_outcome", "event_outcome"),
        actor_type: f.string("actor_type", "actor_type"),
        actor_id: f.string("actor_id", "actor_id"),
        actor_ip: f.string("actor_ip", "actor_ip"),
        resource_type: f.string("resource_type", "resource_type"),
        resource_id: f.string("resource_id", "resource_id"),
        resource_name: f.string("resource_name", "resource_name"),
        correlation_id: f.required_string("correlation_id", "correlation_id"),
        parent_event_id: f.uuid("parent_event_id", "parent_event_id"),
        trace_id: f.string("trace_id", "trace_id"),
        span_id: f.string("span_id", "span_id"),
        namespace: f.string("namespace", "namespace"),
        cluster_id: f.string("cluster_id", "cluster_id"),
        event_data: f.get("event_data").cloned().unwrap_or_else(|| json!({})),
        event_metadata: f.get("event_metadata").cloned(),
        severity: f.string("severity", "severity"),
        duration_ms: f.integer("duration_ms", "duration_ms"),
        error_code: f.string("error_code", "error_code"),
        error_message: f.string("error_message", "error_message"),
        retention_days: f.integer("retention_days", "retention_days"),
        is_sensitive: f.boolean("is_sensitive", "is_sensitive"),
    };
    if f.errors.is_empty() { Ok(input) } else { Err(f.errors) }
}
