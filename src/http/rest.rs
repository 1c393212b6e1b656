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
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::problem::Problem;
use super::{HttpState, consistency};
use crate::auth::{Principal, Role};
use crate::domain::event::to_micros;
use crate::domain::filter::is_data_key;
use crate::domain::page::Order;
use crate::domain::time::parse_time_bound;
use crate::domain::wire::{parse_event, rest_event, timestamp_text};
use crate::domain::{Cursor, EventFilter, PageWindow};
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
    headers: HeaderMap,
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
    let token = if state.ctx.store.has_replicas() {
        consistency::requested(&headers, None).map_err(|e| consistency::bad_token(e).at(PATH))?
    } else {
        None
    };
    let (store, from) = state.ctx.store.for_reading(crate::store::Wanted::AtLeast(token)).await;
    let result = list_page(&store, &filter, limit, offset, cursor).await;
    if matches!(&result, Err(crate::store::StoreError::Unavailable(_))) {
        store.replica_failed();
    }
    let (total, rows, has_more) = result.map_err(|e| Problem::from(e).at(PATH))?;
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
    let mut response = Json(body).into_response();
    if state.ctx.store.has_replicas() {
        consistency::mark(response.headers_mut(), None, Some(&from));
    }
    Ok(response)
}

/// A page of the listing: the total, the rows, and whether more follow.
async fn list_page(
    store: &crate::store::Store,
    filter: &EventFilter,
    limit: u64,
    offset: u64,
    cursor: Option<Cursor>,
) -> Result<(u64, Vec<crate::entity::audit_event::Model>, bool), crate::store::StoreError> {
    let total = store.count_events(filter).await?;
    let (rows, has_more) = match cursor {
        Some(after) => {
            let window = PageWindow::forward(limit, Some(after));
            let mut rows = store
                .list_events(filter, &window, Order::NewestFirst, Columns::ALL)
                .await?;
            let more = rows.len() as u64 > limit;
            rows.truncate(limit as usize);
            (rows, more)
        }
        None => {
            let rows = store.list_events_at_offset(filter, offset, limit).await?;
            let more = offset + (rows.len() as u64) < total;
            (rows, more)
        }
    };
    Ok((total, rows, has_more))
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

/// Most events REST's JSON export document holds (kubernaut's limit); larger exports stream as
/// `format=ndjson`.
const MAX_DOCUMENT_EVENTS: u64 = 10_000;

/// A boolean query parameter (`true`/`false`, default false).
fn flag(params: &HashMap<String, String>, name: &str) -> Result<bool, Problem> {
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Problem::invalid(name, "must be true or false")),
    }
}

/// The filters of an export request.
fn export_filter(params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<crate::store::ExportFilter, Problem> {
    let time = |name: &str| {
        params
            .get(name)
            .map(|text| parse_time_bound(text, now).map_err(|message| Problem::invalid(name, message)))
            .transpose()
    };
    let text = |name: &str| {
        params
            .get(name)
            .map(|value| {
                if value.is_empty() || value.len() > 255 || value.contains('\0') {
                    Err(Problem::invalid(name, "must be 1 to 255 bytes without U+0000"))
                } else {
                    Ok(value.clone())
                }
            })
            .transpose()
    };
    let filter = crate::store::ExportFilter {
        correlation_id: text("correlation_id")?,
        event_category: text("event_category")?,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
    };
    if let (Some(start), Some(end)) = (filter.start_time, filter.end_time)
        && start > end
    {
        return Err(Problem::invalid("start_time", "must not be after end_time"));
    }
    Ok(filter)
}

/// `GET /api/v1/audit/export`: a signed export (role `reader`).
///
/// - `format=json` (the default): kubernaut's document, `{export_metadata, events,
///   hash_chain_verification, detached_signature}`, at most 10,000 events (413 beyond), paged
///   with `offset` and `limit` (1 to 10,000, default 1,000). `export_metadata.signature` is a
///   signed note (Ed25519, the log's key) over the document's manifest; `auditgraph verify FILE`
///   checks it.
/// - `format=ndjson`: the whole export as a stream, with the proof of every event against the
///   log's signed tree (see `ops::export`); no size limit.
pub async fn export(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    const PATH: &str = "/api/v1/audit/export";
    const KNOWN: [&str; 9] = [
        "start_time",
        "end_time",
        "correlation_id",
        "event_category",
        "format",
        "include_detached_signature",
        "offset",
        "limit",
        "redact_pii",
    ];
    let service = &state.ctx;
    let caller = authenticated(caller).map_err(|p| p.at(PATH))?;
    service
        .authorize(&caller, Role::Reader)
        .map_err(|e| Problem::from(e).at(PATH))?;
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Problem::invalid(
            unknown,
            format!("is not a parameter of the export; known: {}", KNOWN.join(", ")),
        )
        .at(PATH));
    }
    let now = Utc::now();
    let filter = export_filter(&params, now).map_err(|p| p.at(PATH))?;
    if flag(&params, "redact_pii").map_err(|p| p.at(PATH))? {
        return Err(Problem::invalid(
            "redact_pii",
            "is not supported: an export proves each event by its hash, and a redacted event no longer matches it; \
             export without redaction and redact the copy you hand on",
        )
        .at(PATH));
    }
    let detached = flag(&params, "include_detached_signature").map_err(|p| p.at(PATH))?;
    match params.get("format").map(String::as_str) {
        None | Some("json") => {}
        Some("ndjson") => return Ok(export_stream(&state, &caller, filter)),
        Some(_) => return Err(Problem::invalid("format", "must be json or ndjson").at(PATH)),
    }
    let number = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, Problem> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                Problem::invalid(
                    name,
                    format!("must be an integer from {} to {}", range.start(), range.end()),
                )
            }),
        }
    };
    let limit = number("limit", 1_000, 1..=MAX_DOCUMENT_EVENTS).map_err(|p| p.at(PATH))?;
    let offset = number("offset", 0, 0..=MAX_DOCUMENT_EVENTS).map_err(|p| p.at(PATH))?;
    let total = service
        .store
        .export_count(&filter)
        .await
        .map_err(|e| Problem::from(e).at(PATH))?;
    if total > MAX_DOCUMENT_EVENTS {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "export-too-large",
            "Export Too Large",
            format!(
                "the filters select {total} events, more than the {MAX_DOCUMENT_EVENTS} a JSON export holds: narrow \
                 start_time, end_time, correlation_id or event_category, or ask for format=ndjson, which streams any size"
            ),
        )
        .at(PATH));
    }
    let (lines, _) = crate::ops::export::collect(&service.store, &service.log, &filter, &caller.name)
        .await
        .map_err(|e| Problem::from(ApiError::internal(e)).at(PATH))?;
    let signer = service.log.signer();
    let key = crate::domain::checkpoint::VerifierKey::parse(signer.verifier())
        .map_err(|e| Problem::from(ApiError::internal(anyhow::anyhow!("the log's verifier key: {e}"))).at(PATH))?;
    let joined: Vec<u8> = lines.concat();
    let check = crate::ops::export::verify(joined.as_slice(), &key, service.store.hasher())
        .map_err(|e| Problem::from(ApiError::internal(e)).at(PATH))?;
    let mut events: Vec<Value> = Vec::new();
    for line in &lines {
        let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if event.contains_key(crate::ops::export::TAG) {
            continue;
        }
        // The contract types these members as strings or objects, never null: absent stays absent.
        event.retain(|_, value| !value.is_null());
        let id = event
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<Uuid>().ok());
        let valid = id.is_some_and(|id| !check.broken_events.contains(&id));
        event.insert("hash_chain_valid".into(), json!(valid));
        events.push(Value::Object(event));
    }
    let verified = events.len() as u64;
    let broken = check.broken_events.len() as u64;
    let page: Vec<Value> = events
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let page = Value::Array(page);
    let mut metadata = json!({
        "export_timestamp": timestamp_text(now),
        "export_format": "json",
        "query_filters": query_filters(&filter, offset, limit),
        "total_events": total,
        "signature_algorithm": "Ed25519 (C2SP signed note over the export manifest)",
        "certificate_fingerprint": signer.verifier(),
        "exported_by": caller.name,
    });
    let manifest = crate::ops::export::document_manifest(&metadata, &page)
        .map_err(|e| Problem::from(ApiError::internal(e)).at(PATH))?;
    let signature = signer
        .sign_note(&manifest)
        .map_err(|e| Problem::from(ApiError::internal(e)).at(PATH))?;
    metadata["signature"] = json!(signature);
    let percentage = if verified == 0 {
        100.0
    } else {
        (verified - broken.min(verified)) as f64 * 100.0 / verified as f64
    };
    let mut body = json!({
        "export_metadata": metadata,
        "events": page,
        "hash_chain_verification": {
            "total_events_verified": verified,
            "valid_chain_events": verified - broken.min(verified),
            "broken_chain_events": broken,
            "chain_integrity_percentage": percentage,
            "verification_timestamp": timestamp_text(Utc::now()),
            "tampered_event_ids": check.broken_events,
        },
    });
    if detached {
        body["detached_signature"] = json!(signature);
    }
    Ok(Json(body).into_response())
}

/// The filters of an export as kubernaut's document echoes them: only those given.
fn query_filters(filter: &crate::store::ExportFilter, offset: u64, limit: u64) -> Value {
    let mut filters = Map::new();
    if let Some(c) = &filter.correlation_id {
        filters.insert("correlation_id".into(), json!(c));
    }
    if let Some(c) = &filter.event_category {
        filters.insert("event_category".into(), json!(c));
    }
    if let Some(t) = filter.start_time {
        filters.insert("start_time".into(), json!(timestamp_text(t)));
    }
    if let Some(t) = filter.end_time {
        filters.insert("end_time".into(), json!(timestamp_text(t)));
    }
    filters.insert("offset".into(), json!(offset));
    filters.insert("limit".into(), json!(limit));
    Value::Object(filters)
}

/// The NDJSON export as a streamed response: written as the client reads it.
fn export_stream(state: &HttpState, caller: &Principal, filter: crate::store::ExportFilter) -> Response {
    let (lines, received) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let service = state.ctx.clone();
    let exported_by = caller.name.clone();
    tokio::spawn(async move {
        if let Err(error) =
            crate::ops::export::export(&service.store, &service.log, &filter, &exported_by, lines, false).await
        {
            // The stream ends without its signed manifest, which `verify` reports as cut short.
            tracing::error!(error = format!("{error:#}"), "an export stream failed");
        }
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received
            .recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(Bytes::from(line)), received))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"auditgraph-export.ndjson\"",
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
