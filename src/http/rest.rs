//! The kubernaut-compatible REST API: `POST /api/v1/audit/events`, `POST /api/v1/audit/events/batch`
//! and `GET /api/v1/audit/events`, with RFC 7807 errors and cursor pagination (BR-STORAGE-035);
//! `POST /api/v1/audit/verify-chain`; legal holds (`/api/v1/audit/legal-hold`).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::HttpState;
use super::problem::Problem;
use crate::auth::{Principal, Role};
use crate::domain::event::to_micros;
use crate::domain::filter::is_data_key;
use crate::domain::page::Order;
use crate::domain::time::parse_time_bound;
use crate::domain::wire::parse_event;
use crate::domain::{Cursor, EventFilter, PageWindow};
use crate::entity::audit_event::Model;
use crate::error::ApiError;
use crate::metrics::Source;
use crate::store::Columns;

fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported Media Type",
            "the request body must be application/json",
        ))
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid Request",
            "The request body could not be parsed as valid JSON",
        )
    })
}

/// The caller the authentication layer attached; a request without one is refused (fail closed).
fn authenticated(caller: Option<Extension<Principal>>) -> Result<Principal, Problem> {
    caller
        .map(|Extension(caller)| caller)
        .ok_or_else(|| Problem::from(ApiError::unauthenticated()))
}

fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `POST /api/v1/audit/events`: 201 `{event_id, event_timestamp, message}`.
pub async fn create_event(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/events";
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    // The role first: a caller who may not write learns nothing about the body.
    service
        .authorize(&caller, Role::Writer)
        .map_err(|e| Problem::from(e).at(PATH))?;
    require_json(&headers).map_err(|p| p.at(PATH))?;
    let value = parse_body(&body).map_err(|p| p.at(PATH))?;
    let stored = service
        .create_event(&caller, parse_event(&value), Source::Rest)
        .await
        .map_err(|e| Problem::from(e).at(PATH))?;
    let body = json!({
        "event_id": stored.event_id,
        "event_timestamp": timestamp_text(stored.event_timestamp),
        "message": "Audit event created successfully",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /api/v1/audit/events/batch`: a JSON array, written atomically; 201 `{event_ids, message}`.
pub async fn create_batch(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/events/batch";
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    service
        .authorize(&caller, Role::Writer)
        .map_err(|e| Problem::from(e).at(PATH))?;
    require_json(&headers).map_err(|p| p.at(PATH))?;
    let items = match parse_body(&body).map_err(|p| p.at(PATH))? {
        Value::Array(items) => items,
        Value::Object(_) => {
            return Err(Problem::invalid("body", "request body must be a JSON array, not a single object").at(PATH));
        }
        _ => return Err(Problem::invalid("body", "request body must be a JSON array of events").at(PATH)),
    };
    let submissions = items.iter().map(parse_event).collect();
    let stored = service
        .create_events(&caller, submissions, Source::Rest)
        .await
        .map_err(|e| Problem::from(e).at(PATH))?;
    let count = stored.len();
    let ids: Vec<Uuid> = stored.iter().map(|m| m.event_id).collect();
    let noun = if count == 1 { "event" } else { "events" };
    let body = json!({"event_ids": ids, "message": format!("{count} audit {noun} created successfully")});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// An event in the REST shape: the column names, with `version` for `event_version`,
/// `event_date` as a date and `parent_event_date` as a date-time. Optional text columns that are
/// not nullable in the contract are omitted when empty.
pub fn rest_event(m: &Model) -> Value {
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

/// The deepest `offset` accepted; deeper pages are reached with the cursor.
const MAX_OFFSET: u64 = 1_000_000_000;

/// The query parameters of `GET /api/v1/audit/events`, checked.
struct Listing {
    filter: EventFilter,
    limit: u64,
    offset: u64,
    cursor: Option<Cursor>,
}

fn listing(params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Listing, Problem> {
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => 50,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(Problem::invalid("limit", "must be between 1 and 1000")),
        },
    };
    let offset = match params.get("offset") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= MAX_OFFSET => Some(n),
            _ => {
                return Err(Problem::invalid(
                    "offset",
                    format!("must be an integer from 0 to {MAX_OFFSET} (page deeper with the cursor)"),
                ));
            }
        },
    };
    let cursor = match text("cursor") {
        None => None,
        Some(c) => {
            Some(Cursor::decode(&c).map_err(|e| Problem::invalid("cursor", format!("is not a valid cursor ({e})")))?)
        }
    };
    if cursor.is_some() && offset.is_some() {
        return Err(Problem::invalid("cursor", "cannot be used together with offset"));
    }
    if let Some(outcome) = text("event_outcome")
        && !matches!(outcome.as_str(), "success" | "failure" | "pending")
    {
        return Err(Problem::invalid(
            "event_outcome",
            "must be one of: success, failure, pending",
        ));
    }
    let bound = |name: &str| -> Result<Option<DateTime<Utc>>, Problem> {
        text(name)
            .map(|t| {
                parse_time_bound(&t, now)
                    .map(to_micros)
                    .map_err(|m| Problem::invalid(name, m))
            })
            .transpose()
    };
    let data_equals = match (text("detail_key"), params.get("detail_value")) {
        (None, None) => None,
        (Some(key), Some(value)) if is_data_key(&key) => Some((key, value.clone())),
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "detail_key",
                "may hold only letters, digits and underscores",
            ));
        }
        (Some(_), None) => return Err(Problem::invalid("detail_value", "must accompany detail_key")),
        (None, Some(_)) => return Err(Problem::invalid("detail_key", "must accompany detail_value")),
    };
    let filter = EventFilter {
        event_type: text("event_type"),
        event_category: text("event_category"),
        event_outcome: text("event_outcome"),
        severity: text("severity"),
        correlation_id: text("correlation_id"),
        since: bound("since")?,
        until: bound("until")?,
        data_equals,
        ..EventFilter::default()
    };
    if let Some((field, problem)) = filter.text_problem() {
        return Err(Problem::invalid(field, problem));
    }
    Ok(Listing {
        filter,
        limit,
        offset: offset.unwrap_or(0),
        cursor,
    })
}

/// `GET /api/v1/audit/events`: `{data, pagination{limit, offset, total, has_more, next_cursor}}`,
/// newest first (`event_timestamp DESC, event_id DESC`), by offset or by cursor.
pub async fn query_events(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/events";
    let started = Instant::now();
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    state
        .ctx
        .authorize(&caller, Role::Reader)
        .map_err(|e| Problem::from(e).at(PATH))?;
    let Listing {
        filter,
        limit,
        offset,
        cursor,
    } = listing(&params, Utc::now()).map_err(|p| p.at(PATH))?;
    let store = &state.ctx.store;
    let total = store
        .count_events(&filter)
        .await
        .map_err(|e| Problem::from(e).at(PATH))?;
    let (rows, has_more) = match cursor {
        Some(after) => {
            let window = PageWindow::forward(limit, Some(after));
            let mut rows = store
                .list_events(&filter, &window, Order::NewestFirst, Columns::ALL)
                .await
                .map_err(|e| Problem::from(e).at(PATH))?;
            let more = rows.len() as u64 > limit;
            rows.truncate(limit as usize);
            (rows, more)
        }
        None => {
            let rows = store
                .list_events_at_offset(&filter, offset, limit)
                .await
                .map_err(|e| Problem::from(e).at(PATH))?;
            let more = offset + (rows.len() as u64) < total;
            (rows, more)
        }
    };
    let next_cursor = rows
        .last()
        .filter(|_| has_more)
        .map(|m| Cursor::new(m.event_timestamp, m.event_id).encode());
    let body = json!({
        "data": rows.iter().map(rest_event).collect::<Vec<_>>(),
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": total,
            "has_more": has_more,
            "next_cursor": next_cursor,
        },
    });
    state.ctx.metrics.queried(Source::Rest, started.elapsed().as_secs_f64());
    Ok(Json(body).into_response())
}

/// `POST /api/v1/audit/verify-chain` with `{"correlation_id": …}`: kubernaut's answer shape,
/// 200 whether or not tampering is found.
pub async fn verify_chain(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/verify-chain";
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    service
        .authorize(&caller, Role::Reader)
        .map_err(|e| Problem::from(e).at(PATH))?;
    require_json(&headers).map_err(|p| p.at(PATH))?;
    let value = parse_body(&body).map_err(|p| p.at(PATH))?;
    let Some(correlation_id) = value.get("correlation_id").and_then(Value::as_str) else {
        return Err(Problem::invalid("correlation_id", "is required and must be a string").at(PATH));
    };
    let checked = service
        .verify_chain(&caller, correlation_id)
        .await
        .map_err(|e| match e {
            ApiError::BadArgument { message, .. } => Problem::invalid("correlation_id", message),
            other => Problem::from(other),
        })
        .map_err(|p| p.at(PATH))?;
    let report = &checked.report;
    let tampered: Vec<Value> = report
        .breaks
        .iter()
        .map(|b| {
            json!({
                "event_id": b.event_id,
                "event_timestamp": checked.timestamps.get(&b.event_id).map(|t| timestamp_text(*t)),
                "expected_hash": b.expected_hash,
                "actual_hash": b.actual_hash,
                "previous_hash": b.previous_hash,
                "kind": b.kind.as_str(),
                "message": b.message,
            })
        })
        .collect();
    let mut message = if report.valid() {
        format!("hash chain intact: {} events verified", report.verified)
    } else {
        format!(
            "hash chain broken: {} of {} events verified, {} problems found",
            report.verified,
            report.chained,
            report.breaks.len()
        )
    };
    if report.purged > 0 {
        let runs: Vec<String> = report.purged_by.iter().map(Uuid::to_string).collect();
        message.push_str(&format!(
            "; {} events were purged by retention run {} after their retention passed (their hashes are recorded, the chain still links)",
            report.purged,
            runs.join(", ")
        ));
    }
    if report.unchained > 0 {
        message.push_str(&format!(
            "; {} events without a hash (stored before hash chains) were not verified",
            report.unchained
        ));
    }
    let body = json!({
        "correlation_id": checked.correlation_id,
        "is_valid": report.valid(),
        "total_events": report.chained,
        "verified_events": report.verified,
        "purged_events": report.purged,
        "tampered_events": tampered,
        "verification_time": timestamp_text(checked.verified_at),
        "message": message,
    });
    Ok(Json(body).into_response())
}

/// A string member of a JSON body, required.
fn required_text<'a>(value: &'a Value, field: &str) -> Result<&'a str, Problem> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::invalid(field, "is required and must be a string"))
}

/// A refusal of a lifecycle operation in REST terms: arguments are named as the body names them.
fn lifecycle_problem(error: ApiError, fields: &[(&str, &str)]) -> Problem {
    match error {
        ApiError::BadArgument { argument, message } => {
            let field = fields
                .iter()
                .find(|(graphql, _)| *graphql == argument)
                .map_or(argument.as_str(), |(_, rest)| rest);
            Problem::invalid(field, message)
        }
        other => Problem::from(other),
    }
}

/// `POST /api/v1/audit/legal-hold` with `{"correlation_id", "reason"}`: places a hold (role
/// `admin`); kubernaut's answer `{correlation_id, events_affected, placed_by, placed_at, reason}`.
pub async fn place_legal_hold(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/legal-hold";
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    service
        .authorize(&caller, Role::Admin)
        .map_err(|e| Problem::from(e).at(PATH))?;
    require_json(&headers).map_err(|p| p.at(PATH))?;
    let value = parse_body(&body).map_err(|p| p.at(PATH))?;
    let correlation_id = required_text(&value, "correlation_id").map_err(|p| p.at(PATH))?;
    let reason = required_text(&value, "reason").map_err(|p| p.at(PATH))?;
    let (hold, record) = service
        .place_legal_hold(&caller, correlation_id, reason)
        .await
        .map_err(|e| lifecycle_problem(e, &[("correlationId", "correlation_id")]).at(PATH))?;
    Ok(Json(json!({
        "correlation_id": hold.correlation_id,
        "events_affected": hold.events_held,
        "placed_by": hold.placed_by,
        "placed_at": timestamp_text(hold.placed_at),
        "reason": hold.reason,
        "record_event_id": record.event_id,
    }))
    .into_response())
}

/// `GET /api/v1/audit/legal-hold`: the holds in force (role `reader`), as kubernaut lists them:
/// `{holds: [{correlation_id, events_affected, placed_by, placed_at, reason}], total}`.
pub async fn list_legal_holds(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/legal-hold";
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    let holds = state
        .ctx
        .legal_holds(&caller)
        .await
        .map_err(|e| Problem::from(e).at(PATH))?;
    let listed: Vec<Value> = holds
        .iter()
        .map(|hold| {
            json!({
                "correlation_id": hold.correlation_id,
                "events_affected": hold.events_held,
                "placed_by": hold.placed_by,
                "placed_at": timestamp_text(hold.placed_at),
                "reason": hold.reason,
            })
        })
        .collect();
    Ok(Json(json!({ "total": listed.len(), "holds": listed })).into_response())
}

/// `DELETE /api/v1/audit/legal-hold/{correlation_id}` with `{"release_reason"}`: releases a hold
/// (role `admin`); kubernaut's answer `{correlation_id, events_released, released_by, released_at}`.
pub async fn release_legal_hold(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    axum::extract::Path(correlation_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let path = format!("/api/v1/audit/legal-hold/{correlation_id}");
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(&path))?;
    service
        .authorize(&caller, Role::Admin)
        .map_err(|e| Problem::from(e).at(&path))?;
    require_json(&headers).map_err(|p| p.at(&path))?;
    let value = parse_body(&body).map_err(|p| p.at(&path))?;
    let reason = required_text(&value, "release_reason").map_err(|p| p.at(&path))?;
    let (released, record) = service
        .release_legal_hold(&caller, &correlation_id, reason)
        .await
        .map_err(|e| {
            lifecycle_problem(
                e,
                &[("correlationId", "correlation_id"), ("releaseReason", "release_reason")],
            )
            .at(&path)
        })?;
    Ok(Json(json!({
        "correlation_id": released.correlation_id,
        "events_released": released.events_released,
        "released_by": released.released_by,
        "released_at": timestamp_text(released.released_at),
        "record_event_id": record.event_id,
    }))
    .into_response())
}
