//! Validation of incoming events (SPEC §3). Field names in errors are column names; each API maps
//! them to its own spelling.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Largest serialised `event_data` / `event_metadata`, in bytes.
pub const MAX_JSON_BYTES: usize = 256 * 1024;
/// Deepest nesting of `event_data` / `event_metadata`.
pub const MAX_JSON_DEPTH: usize = 10;
/// Longest `error_message`, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 64 * 1024;

/// An event as a client submitted it, before validation. Mirrors the writable columns.
#[derive(Clone, Debug, Default)]
pub struct EventInput {
    pub event_id: Option<Uuid>,
    pub event_version: Option<String>,
    pub event_timestamp: Option<DateTime<Utc>>,
    pub event_type: String,
    pub event_category: String,
    pub event_action: String,
    pub event_outcome: String,
    pub actor_type: Option<String>,
    pub actor_id: Option<String>,
    pub actor_ip: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    pub correlation_id: String,
    pub parent_event_id: Option<Uuid>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub namespace: Option<String>,
    pub cluster_id: Option<String>,
    pub event_data: Value,
    pub event_metadata: Option<Value>,
    pub severity: Option<String>,
    pub duration_ms: Option<i32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retention_days: Option<i32>,
    pub is_sensitive: Option<bool>,
}

/// A validated event, ready to be written. The parent's date is resolved by the store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Whether the client chose the id (which makes a retry idempotent).
    pub client_supplied_id: bool,
    pub event_version: String,
    pub event_timestamp: DateTime<Utc>,
    /// Whether the client chose the timestamp (an idempotent retry compares it only then).
    pub client_supplied_timestamp: bool,
    pub event_date: NaiveDate,
    pub event_type: String,
    pub event_category: String,
    pub event_action: String,
    pub event_outcome: String,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_ip: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub correlation_id: String,
    pub parent_event_id: Option<Uuid>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub namespace: Option<String>,
    pub cluster_id: Option<String>,
    pub event_data: Value,
    pub event_metadata: Option<Value>,
    pub severity: Option<String>,
    pub duration_ms: Option<i32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retention_days: i32,
    pub is_sensitive: bool,
    /// The authenticated principal that submits the event; set by the service, not the client.
    pub submitted_by: Option<String>,
}

/// One validation failure: the column it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The column name (`event_type`, `parent_event_id`, …).
    pub field: &'static str,
    /// What is wrong, without the field name (each API prefixes its own spelling of it).
    pub message: String,
    /// A stable, short reason label for metrics (`required`, `too_long`, …).
    pub reason: &'static str,
    /// The position of the event in a batch; `None` for a single event.
    pub index: Option<usize>,
}

impl FieldError {
    pub fn new(field: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            reason,
            message: message.into(),
            index: None,
        }
    }

    /// The same error, about the event at `index` of a batch.
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

/// The configurable parts of validation.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How far ahead of the server clock a timestamp may be.
    pub max_future_skew: Duration,
    /// How old a live-written timestamp may be.
    pub max_age: Duration,
    /// When set, the only categories accepted.
    pub allowed_categories: Option<Vec<String>>,
    /// Whether timestamps must lie in the live window (off for the import of history).
    pub check_timestamp_bounds: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew: Duration::minutes(60),
            max_age: Duration::days(7),
            allowed_categories: None,
            check_timestamp_bounds: true,
        }
    }
}

impl Limits {
    /// The limits of the historical import: any timestamp, any category identifier.
    pub fn history() -> Self {
        Self {
            check_timestamp_bounds: false,
            ..Self::default()
        }
    }
}

/// Truncates a timestamp to the microsecond, the precision both engines store. A leap second
/// (`…:59:60`, which neither engine can store) becomes the last microsecond before the next
/// minute (`…:59.999999`), so that what is acknowledged is what is stored.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let t = if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_999_999).unwrap_or(t)
    } else {
        t
    };
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

/// Why a text cannot be stored: PostgreSQL text and JSON cannot hold U+0000, so neither engine
/// accepts it.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Where a JSON value holds U+0000 in a key or a string, as a JSON pointer.
pub fn json_nul_at(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| json_nul_at(item).map(|at| format!("/{i}{at}"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let escaped = || key.replace('~', "~0").replace('/', "~1");
            if key.contains('\0') {
                Some(format!("/{}", escaped().replace('\0', "\\u0000")))
            } else {
                json_nul_at(item).map(|at| format!("/{}{at}", escaped()))
            }
        }),
        _ => None,
    }
}

fn required(field: &'static str, value: &str, max: usize) -> Option<FieldError> {
    if value.trim().is_empty() {
        Some(FieldError::new(field, "required", "is required and must not be blank"))
    } else {
        too_long(field, value, max)
    }
}

fn too_long(field: &'static str, value: &str, max: usize) -> Option<FieldError> {
    if value.contains('\0') {
        return Some(FieldError::new(field, "invalid_character", NUL_MESSAGE));
    }
    let len = value.chars().count();
    (len > max).then(|| {
        FieldError::new(
            field,
            "too_long",
            format!("is {len} characters long; at most {max} are allowed"),
        )
    })
}

fn optional(field: &'static str, value: &Option<String>, max: usize) -> Option<FieldError> {
    value.as_deref().and_then(|v| too_long(field, v, max))
}

fn is_identifier(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_json_object(field: &'static str, value: &Value) -> Option<FieldError> {
    if !value.is_object() {
        return Some(FieldError::new(field, "not_an_object", "must be a JSON object"));
    }
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_JSON_BYTES {
        return Some(FieldError::new(
            field,
            "too_large",
            format!("is {size} bytes; at most {MAX_JSON_BYTES} are allowed"),
        ));
    }
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Some(FieldError::new(
            field,
            "too_deep",
            format!("nests {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"),
        ));
    }
    json_nul_at(value).map(|at| {
        FieldError::new(
            field,
            "invalid_character",
            format!("{NUL_MESSAGE}; found at {}", if at.is_empty() { "/" } else { &at }),
        )
    })
}

impl EventInput {
    /// Validates the input for a live write (timestamp bounds apply), at server time `now`.
    /// Returns every failure, not just the first.
    pub fn validate(self, limits: &Limits, now: DateTime<Utc>) -> Result<NewEvent, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut push = |e: Option<FieldError>| errors.extend(e);

        push(optional("event_version", &self.event_version, 20));
        if matches!(self.event_version.as_deref(), Some(v) if v.trim().is_empty()) {
            push(Some(FieldError::new("event_version", "required", "must not be blank")));
        }
        push(required("event_type", &self.event_type, 100));
        push(required("event_category", &self.event_category, 50));
        if !self.event_category.is_empty() && !is_identifier(&self.event_category) {
            push(Some(FieldError::new(
                "event_category",
                "invalid_format",
                "must be a lowercase identifier: a letter, then letters, digits or underscores",
            )));
        }
        if let Some(allowed) = &limits.allowed_categories
            && is_identifier(&self.event_category)
            && !allowed.iter().any(|c| c == &self.event_category)
        {
            push(Some(FieldError::new(
                "event_category",
                "not_allowed",
                format!("must be one of: {}", allowed.join(", ")),
            )));
        }
        push(required("event_action", &self.event_action, 50));
        if !matches!(self.event_outcome.as_str(), "success" | "failure" | "pending") {
            push(Some(FieldError::new(
                "event_outcome",
                "invalid_enum",
                "must be one of: success, failure, pending",
            )));
        }
        push(optional("actor_type", &self.actor_type, 50));
        push(optional("actor_id", &self.actor_id, 255));
        // The contract allows any text of up to 45 characters (an IPv6 address with zone fits).
        push(optional("actor_ip", &self.actor_ip, 45));
        push(optional("resource_type", &self.resource_type, 100));
        push(optional("resource_id", &self.resource_id, 255));
        push(optional("resource_name", &self.resource_name, 255));
        push(required("correlation_id", &self.correlation_id, 255));
        push(optional("trace_id", &self.trace_id, 255));
        push(optional("span_id", &self.span_id, 255));
        push(optional("namespace", &self.namespace, 253));
        push(optional("cluster_id", &self.cluster_id, 255));
        push(optional("severity", &self.severity, 20));
        push(optional("error_code", &self.error_code, 50));
        push(optional("error_message", &self.error_message, MAX_ERROR_MESSAGE_CHARS));
        push(check_json_object("event_data", &self.event_data));
        if let Some(meta) = &self.event_metadata {
            push(check_json_object("event_metadata", meta));
        }
        if matches!(self.duration_ms, Some(d) if d < 0) {
            push(Some(FieldError::new(
                "duration_ms",
                "out_of_range",
                "must not be negative",
            )));
        }
        if matches!(self.retention_days, Some(d) if !(1..=2555).contains(&d)) {
            push(Some(FieldError::new(
                "retention_days",
                "out_of_range",
                "must be between 1 and 2555",
            )));
        }
        if self.event_id.is_some_and(|id| id.is_nil()) {
            push(Some(FieldError::new(
                "event_id",
                "invalid_format",
                "must not be the nil UUID",
            )));
        }
        if let Some(ts) = self.event_timestamp.filter(|_| limits.check_timestamp_bounds) {
            if ts > now + limits.max_future_skew {
                push(Some(FieldError::new(
                    "event_timestamp",
                    "timestamp_in_future",
                    format!(
                        "is in the future: at most {} minutes ahead of the server clock are allowed",
                        limits.max_future_skew.num_minutes()
                    ),
                )));
            } else if ts < now - limits.max_age {
                push(Some(FieldError::new(
                    "event_timestamp",
                    "timestamp_too_old",
                    format!(
                        "is too old: it must be within {} hours of the server clock (use `auditgraph import` for history)",
                        limits.max_age.num_hours()
                    ),
                )));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let event_timestamp = to_micros(self.event_timestamp.unwrap_or(now));
        let actor_type = self
            .actor_type
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "service".into());
        let actor_id = self
            .actor_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{}-service", self.event_category));
        let resource_type = self
            .resource_type
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.event_category.clone());
        let resource_id = self
            .resource_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.correlation_id.clone());
        Ok(NewEvent {
            event_id: self.event_id.unwrap_or_else(Uuid::now_v7),
            client_supplied_id: self.event_id.is_some(),
            event_version: self.event_version.unwrap_or_else(|| "1.0".into()),
            event_timestamp,
            client_supplied_timestamp: self.event_timestamp.is_some(),
            event_date: event_timestamp.date_naive(),
            event_type: self.event_type,
            event_category: self.event_category,
            event_action: self.event_action,
            event_outcome: self.event_outcome,
            actor_type,
            actor_id,
            actor_ip: self.actor_ip,
            resource_type,
            resource_id,
            resource_name: self.resource_name,
            correlation_id: self.correlation_id,
            parent_event_id: self.parent_event_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            namespace: self.namespace,
            cluster_id: self.cluster_id,
            event_data: self.event_data,
            event_metadata: self.event_metadata,
            severity: self.severity,
            duration_ms: self.duration_ms,
            error_code: self.error_code,
            error_message: self.error_message,
            retention_days: self.retention_days.unwrap_or(2555),
            is_sensitive: self.is_sensitive.unwrap_or(false),
            submitted_by: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> EventInput {
        EventInput {
            event_type: "gateway.signal.received".into(),
            event_category: "gateway".into(),
            event_action: "received".into(),
            event_outcome: "success".into(),
            correlation_id: "rr-2026-001".into(),
            event_data: json!({"signal": "HighCPU"}),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00.123456789Z")
            .unwrap()
            .to_utc()
    }

    fn fields(result: Result<NewEvent, Vec<FieldError>>) -> Vec<&'static str> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_event_gets_server_defaults() {
        let event = valid().validate(&Limits::default(), now()).unwrap();
        assert_eq!(event.event_id.get_version_num(), 7);
        assert!(!event.client_supplied_id);
        assert_eq!(event.event_timestamp.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(event.event_date, NaiveDate::from_ymd_opt(2026, 11, 28).unwrap());
        assert_eq!(event.actor_type, "service");
        assert_eq!(event.actor_id, "gateway-service");
        assert_eq!(event.resource_type, "gateway");
        assert_eq!(event.resource_id, "rr-2026-001");
        assert_eq!(event.retention_days, 2555);
        assert_eq!(event.event_version, "1.0");
    }

    #[test]
    fn the_event_date_is_the_utc_date_of_the_timestamp() {
        let mut input = valid();
        input.event_timestamp = Some(
            DateTime::parse_from_rfc3339("2026-11-28T01:30:00+05:00")
                .unwrap()
                .to_utc(),
        );
        let event = input.validate(&Limits::default(), now()).unwrap();
        assert_eq!(event.event_date, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
    }

    #[test]
    fn every_failure_names_its_field() {
        let input = EventInput {
            event_type: "".into(),
            event_category: "Not-Lower".into(),
            event_action: "x".repeat(51),
            event_outcome: "maybe".into(),
            correlation_id: " ".into(),
            event_data: json!([1, 2]),
            actor_ip: Some("9".repeat(46)),
            retention_days: Some(0),
            duration_ms: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            fields(input.validate(&Limits::default(), now())),
            [
                "event_type",
                "event_category",
                "event_action",
                "event_outcome",
                "actor_ip",
                "correlation_id",
                "event_data",
                "duration_ms",
                "retention_days"
            ]
        );
    }

    #[test]
    fn timestamps_outside_the_live_window_are_rejected() {
        let mut future = valid();
        future.event_timestamp = Some(now() + Duration::minutes(61));
        assert_eq!(fields(future.validate(&Limits::default(), now())), ["event_timestamp"]);
        let mut old = valid();
        old.event_timestamp = Some(now() - Duration::days(8));
        assert_eq!(fields(old.validate(&Limits::default(), now())), ["event_timestamp"]);
        let mut skewed = valid();
        skewed.event_timestamp = Some(now() + Duration::minutes(59));
        assert!(skewed.validate(&Limits::default(), now()).is_ok());
    }

    #[test]
    fn event_data_size_and_depth_are_bounded() {
        let mut deep = json!({"leaf": 1});
        for _ in 0..10 {
            deep = json!({ "n": deep });
        }
        let mut input = valid();
        input.event_data = deep;
        assert_eq!(
            input.validate(&Limits::default(), now()).unwrap_err()[0].reason,
            "too_deep"
        );
        let mut big = valid();
        big.event_data = json!({"blob": "x".repeat(MAX_JSON_BYTES)});
        assert_eq!(
            big.validate(&Limits::default(), now()).unwrap_err()[0].reason,
            "too_large"
        );
    }

    #[test]
    fn a_configured_category_list_is_enforced() {
        let limits = Limits {
            allowed_categories: Some(vec!["workflow".into()]),
            ..Limits::default()
        };
        let errors = valid().validate(&limits, now()).unwrap_err();
        assert_eq!(errors[0].reason, "not_allowed");
        assert!(errors[0].message.contains("workflow"));
    }
}
