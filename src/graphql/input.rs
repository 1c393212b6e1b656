//! GraphQL input types.

use async_graphql::InputObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::event::to_micros;
use crate::domain::time::parse_time_bound;
use crate::domain::{EventFilter, EventInput};
use crate::error::ApiError;

/// A new audit event. Only the fields marked non-null are required; the server fills in the rest.
#[derive(InputObject, Clone, Debug)]
pub struct AuditEventInput {
    /// Choose the id to make retries idempotent: resending the same event returns the stored one,
    /// reusing the id with other content is a `CONFLICT`. Omitted: the server assigns a UUIDv7.
    pub event_id: Option<Uuid>,
    /// Version of the event schema (default `1.0`, at most 20 characters).
    pub event_version: Option<String>,
    /// When the event happened; default: now. At most 60 minutes ahead of the server clock and at
    /// most 7 days old (both configurable).
    pub event_timestamp: Option<super::DateTime>,
    /// What happened, as `service.domain.action` (1 to 100 characters).
    pub event_type: String,
    /// The emitting service: a lowercase identifier (1 to 50 characters).
    pub event_category: String,
    /// The action performed (1 to 50 characters).
    pub event_action: String,
    /// `success`, `failure` or `pending`.
    pub event_outcome: String,
    /// Kind of actor (default `service`).
    pub actor_type: Option<String>,
    /// Who acted (default `<eventCategory>-service`).
    pub actor_id: Option<String>,
    /// The actor's IP address (at most 45 characters).
    pub actor_ip: Option<String>,
    /// Kind of resource acted upon (default: the category).
    pub resource_type: Option<String>,
    /// Id of the resource (default: the correlation id).
    pub resource_id: Option<String>,
    /// Human-readable name of the resource.
    pub resource_name: Option<String>,
    /// Groups the events of one request across services (1 to 255 characters).
    pub correlation_id: String,
    /// The event that caused this one. It must exist; the server looks up its date.
    pub parent_event_id: Option<Uuid>,
    /// Ignored: the server always derives the parent's date from the stored parent.
    pub parent_event_date: Option<super::Date>,
    /// OpenTelemetry trace id.
    pub trace_id: Option<String>,
    /// OpenTelemetry span id.
    pub span_id: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// The cluster the event comes from.
    pub cluster_id: Option<String>,
    /// The service-specific payload: a JSON object of at most 256 KiB, nested at most 10 deep.
    pub event_data: super::Json,
    /// Free-form metadata: a JSON object with the same limits as `eventData`.
    pub event_metadata: Option<super::Json>,
    /// Severity (for example `info`, `warning`, `error`, `critical`; at most 20 characters).
    pub severity: Option<String>,
    /// How long the operation took, in milliseconds (not negative).
    pub duration_ms: Option<i32>,
    /// Error code of a failed operation.
    pub error_code: Option<String>,
    /// Error message of a failed operation.
    pub error_message: Option<String>,
    /// Days to keep the event, 1 to 2555 (default 2555).
    pub retention_days: Option<i32>,
    /// Whether the event holds sensitive data (default false).
    pub is_sensitive: Option<bool>,
}

impl From<AuditEventInput> for EventInput {
    fn from(input: AuditEventInput) -> Self {
        EventInput {
            event_id: input.event_id,
            event_version: input.event_version,
            event_timestamp: input.event_timestamp.map(|at| at.0),
            event_type: input.event_type,
            event_category: input.event_category,
            event_action: input.event_action,
            event_outcome: input.event_outcome,
            actor_type: input.actor_type,
            actor_id: input.actor_id,
            actor_ip: input.actor_ip,
            resource_type: input.resource_type,
            resource_id: input.resource_id,
            resource_name: input.resource_name,
            correlation_id: input.correlation_id,
            parent_event_id: input.parent_event_id,
            trace_id: input.trace_id,
            span_id: input.span_id,
            namespace: input.namespace,
            cluster_id: input.cluster_id,
            event_data: input.event_data.0,
            event_metadata: input.event_metadata.map(|j| j.0),
            severity: input.severity,
            duration_ms: input.duration_ms,
            error_code: input.error_code,
            error_message: input.error_message,
            retention_days: input.retention_days,
            is_sensitive: input.is_sensitive,
        }
    }
}

/// Which events to list. Every field given must match; omitted fields match anything.
#[derive(InputObject, Clone, Debug, Default)]
pub struct AuditEventFilter {
    /// Exact event type.
    pub event_type: Option<String>,
    /// Event types starting with this text (case-sensitive), for example `gateway.`.
    pub event_type_prefix: Option<String>,
    /// Exact category.
    pub event_category: Option<String>,
    /// Exact action.
    pub event_action: Option<String>,
    /// Exact outcome: `success`, `failure` or `pending`.
    pub event_outcome: Option<String>,
    /// Exact severity.
    pub severity: Option<String>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact actor type.
    pub actor_type: Option<String>,
    /// Exact actor id.
    pub actor_id: Option<String>,
    /// Exact resource type.
    pub resource_type: Option<String>,
    /// Exact resource id.
    pub resource_id: Option<String>,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact cluster id.
    pub cluster_id: Option<String>,
    /// Only the children of this event.
    pub parent_event_id: Option<Uuid>,
    /// Only events without a parent.
    pub roots_only: Option<bool>,
    /// Events at or after this time: RFC 3339, a date, or relative to now such as `30m`, `24h`, `7d`.
    pub since: Option<String>,
    /// Events at or before this time, in the same forms as `since`.
    pub until: Option<String>,
}

impl AuditEventFilter {
    /// The domain filter, with `since` and `until` resolved against `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<EventFilter, ApiError> {
        let bound = |argument: &str, text: Option<String>| {
            text.map(|t| parse_time_bound(&t, now).map(to_micros))
                .transpose()
                .map_err(|message| ApiError::BadArgument {
                    argument: format!("filter.{argument}"),
                    message: format!("filter.{argument}: {message}"),
                })
        };
        let filter = EventFilter {
            since: bound("since", self.since)?,
            until: bound("until", self.until)?,
            event_type: self.event_type,
            event_type_prefix: self.event_type_prefix,
            event_category: self.event_category,
            event_action: self.event_action,
            event_outcome: self.event_outcome,
            severity: self.severity,
            correlation_id: self.correlation_id,
            actor_type: self.actor_type,
            actor_id: self.actor_id,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            namespace: self.namespace,
            cluster_id: self.cluster_id,
            parent_event_id: self.parent_event_id,
            roots_only: self.roots_only.unwrap_or(false),
            data_equals: None,
        };
        match filter.text_problem() {
            Some((field, problem)) => {
                let argument = format!("filter.{}", crate::error::camel_case(field));
                Err(ApiError::BadArgument {
                    message: format!("{argument}: {problem}"),
                    argument,
                })
            }
            None => Ok(filter),
        }
    }
}
