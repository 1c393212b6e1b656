//! The JSON wire shape of an event shared by the REST API, the import and the export: kubernaut's
//! field names (`version`, `event_type`, …), read field by field so that every type error names
//! its field.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::entity::audit_event::Model;

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

/// A timestamp as the REST API writes it: RFC 3339, UTC, with as many fractional digits as it has.
pub fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An event in the REST shape: the column names, with `version` for `event_version`,
/// `event_date` as a date and `parent_event_date` as a date-time. Optional text columns that are
/// not nullable in the contract are omitted when empty.
pub fn rest_event(m: &Model) -> Value {
    debug_assert!(m.event_data_text.is_none(), "REST reads every column as a value");
    let mut o = Map::new();
    let mut put = |key: &str, value: Value| {
        o.insert(key.to_string(), value);
    };
    put("event_id", json!(m.event_id));
    put("version", json!(m.event_version));
    put("event_timestamp", json!(timestamp_text(m.event_timestamp)));
    put("event_date", json!(m.event_date.format("%Y-%m-%d").to_string()));
    put("event_type", json!(m.event_type));
    put("event_category", json!(m.event_category));
    put("event_action", json!(m.event_action));
    put("event_outcome", json!(m.event_outcome));
    put("actor_type", json!(m.actor_type));
    put("actor_id", json!(m.actor_id));
    if let Some(ip) = &m.actor_ip {
        put("actor_ip", json!(ip));
    }
    put("resource_type", json!(m.resource_type));
    put("resource_id", json!(m.resource_id));
    if let Some(name) = &m.resource_name {
        put("resource_name", json!(name));
    }
    put("correlation_id", json!(m.correlation_id));
    put("parent_event_id", json!(m.parent_event_id));
    put(
        "parent_event_date",
        json!(
            m.parent_event_date
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| timestamp_text(d.and_utc()))
        ),
    );
    if let Some(trace) = &m.trace_id {
        put("trace_id", json!(trace));
    }
    if let Some(span) = &m.span_id {
        put("span_id", json!(span));
    }
    put("namespace", json!(m.namespace));
    put("cluster_id", json!(m.cluster_id));
    put("event_data", m.event_data.clone());
    if let Some(meta) = &m.event_metadata {
        put("event_metadata", meta.clone());
    }
    put("severity", json!(m.severity));
    put("duration_ms", json!(m.duration_ms));
    put("error_code", json!(m.error_code));
    put("error_message", json!(m.error_message));
    put("retention_days", json!(m.retention_days));
    put("is_sensitive", json!(m.is_sensitive));
    put("event_hash", json!(m.event_hash));
    put("previous_event_hash", json!(m.previous_event_hash));
    put("hash_algorithm", json!(m.hash_algorithm));
    put("legal_hold", json!(m.legal_hold));
    put("legal_hold_reason", json!(m.legal_hold_reason));
    put("legal_hold_placed_by", json!(m.legal_hold_placed_by));
    put(
        "legal_hold_placed_at",
        json!(m.legal_hold_placed_at.map(timestamp_text)),
    );
    put("submitted_by", json!(m.submitted_by));
    put("chain_seq", json!(m.chain_seq));
    put("hash_key_id", json!(m.hash_key_id));
    put("chain_note", json!(m.chain_note));
    Value::Object(o)
}
