//! The kubernaut-compatible REST API, mirroring the behaviours kubernaut's own tests check.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, TestApp, brief, rest_event};

both_engines!(
    a_single_event_is_created_with_kubernaut_defaults,
    an_identity_header_from_an_untrusted_client_is_refused_and_writes_nothing,
    an_unknown_parent_gives_400_mentioning_the_parent_and_writes_nothing,
    malformed_requests_get_problems_naming_the_field,
    batches_are_atomic_and_resolve_parents_inside_the_batch,
    seventy_five_events_read_as_pages_of_fifty_and_twenty_five,
    query_filters_and_their_validation,
    cursors_walk_every_event_once,
    cursor_paging_is_stable_while_events_are_inserted,
    metrics_count_writes_and_validation_failures,
);

const EVENTS: &str = "/api/v1/audit/events";
const BATCH: &str = "/api/v1/audit/events/batch";

/// Checks an event against the contract's `AuditEvent`: the required request fields, with
/// non-nullable fields never null.
fn assert_conforms(event: &Value) {
    for key in [
        "version",
        "event_type",
        "event_timestamp",
        "event_category",
        "event_action",
        "event_outcome",
        "correlation_id",
    ] {
        assert!(event[key].is_string(), "{key} must be a string in {event}");
    }
    assert!(event["event_data"].is_object());
    uuid::Uuid::parse_str(event["event_id"].as_str().unwrap()).unwrap();
    chrono::DateTime::parse_from_rfc3339(event["event_timestamp"].as_str().unwrap()).unwrap();
    chrono::NaiveDate::parse_from_str(event["event_date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    for key in ["actor_type", "actor_id", "actor_ip", "resource_type", "resource_id"] {
        assert!(
            !event.get(key).is_some_and(Value::is_null),
            "{key} is not nullable: {event}"
        );
    }
    if let Some(date) = event["parent_event_date"].as_str() {
        chrono::DateTime::parse_from_rfc3339(date).unwrap();
    }
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, _, body) = app.rest("GET", &format!("{EVENTS}?{query}"), None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{query}: {}", brief(&body));
    body
}

async fn a_single_event_is_created_with_kubernaut_defaults(app: TestApp) {
    let (status, content_type, body) = app.rest("POST", EVENTS, Some(rest_event(json!({}))), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    assert!(content_type.starts_with("application/json"));
    assert_eq!(body["message"], "Audit event created successfully");
    let id = body["event_id"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&id).unwrap();
    app.rest(
        "POST",
        EVENTS,
        Some(rest_event(json!({"event_outcome": "failure"}))),
        &[],
    )
    .await;

    let page = list(&app, "correlation_id=rr-2026-001").await;
    assert_eq!(
        page["pagination"],
        json!({"limit": 50, "offset": 0, "total": 2, "has_more": false, "next_cursor": null})
    );
    let event = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_conforms(&event);
    assert_eq!(event["actor_id"], "gateway-service");
    assert_eq!(event["actor_type"], "service");
    assert_eq!(event["resource_type"], "gateway");
    assert_eq!(event["resource_id"], "rr-2026-001");
    assert_eq!(event["version"], "1.0");
    assert_eq!(event["retention_days"], 2555);
    assert_eq!(event["event_data"]["signal_name"], "HighCPU");
    assert_eq!(event["event_timestamp"], body["event_timestamp"]);
}

/// The proxy identity header is trusted only from a configured proxy (see `access.rs` for that
/// path); from any other client it is refused, never silently taken for the actor.
async fn an_identity_header_from_an_untrusted_client_is_refused_and_writes_nothing(app: TestApp) {
    let claimed = json!({"actor_type": "service", "actor_id": "someone-else", "correlation_id": "rr-actor"});
    for user in ["alice@example.com", "system:serviceaccount:ns:gw"] {
        let (status, content_type, body) = app
            .rest(
                "POST",
                EVENTS,
                Some(rest_event(claimed.clone())),
                &[("x-auth-request-user", user)],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}: {}", brief(&body));
        assert_eq!(content_type, "application/problem+json");
        assert!(
            body["detail"].as_str().unwrap().contains("trusted proxy"),
            "{}",
            brief(&body)
        );
    }
    assert_eq!(app.row_count().await, 0);
}

async fn an_unknown_parent_gives_400_mentioning_the_parent_and_writes_nothing(app: TestApp) {
    let missing = uuid::Uuid::now_v7().to_string();
    let event = rest_event(json!({"parent_event_id": missing, "parent_event_date": "2026-01-01T00:00:00Z"}));
    let (status, content_type, body) = app.rest("POST", EVENTS, Some(event), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["type"], "https://kubernaut.ai/problems/validation-error");
    assert!(body["detail"].as_str().unwrap().contains("parent"), "{}", brief(&body));
    assert!(body["field_errors"]["parent_event_id"].is_string());
    assert_eq!(app.row_count().await, 0);

    // A known parent: the client's parent_event_date is ignored and derived from the parent.
    let (_, _, parent) = app
        .rest("POST", EVENTS, Some(rest_event(json!({"correlation_id": "rr-p"}))), &[])
        .await;
    let child = rest_event(json!({"correlation_id": "rr-p", "parent_event_id": parent["event_id"],
                                  "parent_event_date": "1999-01-01T00:00:00Z"}));
    let (status, _, _) = app.rest("POST", EVENTS, Some(child), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let page = list(&app, "correlation_id=rr-p").await;
    let child = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| !e["parent_event_id"].is_null())
        .unwrap()
        .clone();
    let parent_row = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["parent_event_id"].is_null())
        .unwrap()
        .clone();
    assert_eq!(
        child["parent_event_date"],
        format!("{}T00:00:00Z", parent_row["event_date"].as_str().unwrap())
    );
}

async fn malformed_requests_get_problems_naming_the_field(app: TestApp) {
    let mut missing = rest_event(json!({}));
    missing.as_object_mut().unwrap().remove("version");
    missing.as_object_mut().unwrap().remove("event_data");
    let (status, content_type, body) = app.rest("POST", EVENTS, Some(missing), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["field_errors"]["version"], "is required", "{}", brief(&body));
    assert_eq!(body["field_errors"]["event_data"], "is required", "{}", brief(&body));
    assert_eq!(body["status"], 400);
    assert_eq!(body["title"], "Validation Error");

    let cases = [
        (json!({"event_type": 42}), "event_type"),
        (json!({"event_timestamp": "yesterday"}), "event_timestamp"),
        (json!({"event_outcome": "maybe"}), "event_outcome"),
        (json!({"event_category": "Not Lower"}), "event_category"),
        (json!({"parent_event_id": "not-a-uuid"}), "parent_event_id"),
        (json!({"duration_ms": "slow"}), "duration_ms"),
        (json!({"retention_days": 9999}), "retention_days"),
        (json!({"event_data": "text"}), "event_data"),
        (json!({"actor_ip": "x".repeat(46)}), "actor_ip"),
        (json!({"version": "v".repeat(21)}), "version"),
    ];
    for (overrides, field) in cases {
        let (status, _, body) = app.rest("POST", EVENTS, Some(rest_event(overrides.clone())), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{overrides}");
        assert!(body["field_errors"][field].is_string(), "{overrides}: {}", brief(&body));
    }

    let request = axum::http::Request::post(EVENTS)
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "https://kubernaut.ai/problems/invalid_request");
    let request = axum::http::Request::post(EVENTS)
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let (status, _) = app.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.row_count().await, 0);
}

async fn batches_are_atomic_and_resolve_parents_inside_the_batch(app: TestApp) {
    let (status, _, body) = app.rest("POST", BATCH, Some(json!(rest_event(json!({})))), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("not a single object"),
        "{}",
        brief(&body)
    );
    let (status, _, body) = app.rest("POST", BATCH, Some(json!([])), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("batch cannot be empty"),
        "{}",
        brief(&body)
    );

    let three: Vec<Value> = (0..3)
        .map(|i| rest_event(json!({"correlation_id": format!("rr-b{i}")})))
        .collect();
    let (status, _, body) = app.rest("POST", BATCH, Some(json!(three)), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    assert_eq!(body["event_ids"].as_array().unwrap().len(), 3);
    assert_eq!(body["message"], "3 audit events created successfully");
    let one = json!([rest_event(json!({"correlation_id": "rr-b-one"}))]);
    let (status, _, body) = app.rest("POST", BATCH, Some(one), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    assert_eq!(body["message"], "1 audit event created successfully");

    // A root, its child and grandchild in one batch; the ids are the client's own.
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let chain = json!([
        rest_event(json!({"event_id": ids[0], "correlation_id": "rr-chain"})),
        rest_event(json!({"event_id": ids[1], "parent_event_id": ids[0], "correlation_id": "rr-chain"})),
        rest_event(json!({"event_id": ids[2], "parent_event_id": ids[1], "correlation_id": "rr-chain"})),
    ]);
    let (status, _, body) = app.rest("POST", BATCH, Some(chain.clone()), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    assert_eq!(body["event_ids"], json!(ids));
    let page = list(&app, "correlation_id=rr-chain").await;
    let linked = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["parent_event_date"].is_string())
        .count();
    assert_eq!(linked, 2);
    // The same batch again is an idempotent retry.
    let (status, _, _) = app.rest("POST", BATCH, Some(chain), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let before = app.row_count().await;
    assert_eq!(before, 7, "three, one and the chain of three");

    // One bad item rejects the whole batch, and the error names its index.
    let mut mixed: Vec<Value> = (0..5).map(|_| rest_event(json!({}))).collect();
    mixed[3]["event_type"] = json!("");
    let (status, _, body) = app.rest("POST", BATCH, Some(json!(mixed)), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["field_errors"]["events[3].event_type"].is_string(),
        "{}",
        brief(&body)
    );
    let mut orphan: Vec<Value> = (0..4).map(|_| rest_event(json!({}))).collect();
    orphan[2]["parent_event_id"] = json!(uuid::Uuid::now_v7());
    let (status, _, body) = app.rest("POST", BATCH, Some(json!(orphan)), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["field_errors"]["events[2].parent_event_id"].is_string(),
        "{}",
        brief(&body)
    );
    assert_eq!(app.row_count().await, before, "a failed batch writes nothing");
}

async fn seventy_five_events_read_as_pages_of_fifty_and_twenty_five(app: TestApp) {
    let events: Vec<Value> = (0..75)
        .map(|_| rest_event(json!({"correlation_id": "rr-75"})))
        .collect();
    let (status, _, _) = app.rest("POST", BATCH, Some(json!(events)), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let first = list(&app, "correlation_id=rr-75").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 50);
    assert_eq!(first["pagination"]["total"], 75);
    assert_eq!(first["pagination"]["has_more"], true);
    assert!(first["pagination"]["next_cursor"].is_string());
    let second = list(&app, "correlation_id=rr-75&offset=50").await;
    assert_eq!(second["data"].as_array().unwrap().len(), 25);
    assert_eq!(second["pagination"]["has_more"], false);
    assert_eq!(second["pagination"]["offset"], 50);
    let all: Vec<&Value> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .collect();
    let ids: HashSet<&str> = all.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 75);
    for pair in all.windows(2) {
        let key = |e: &Value| {
            (
                e["event_timestamp"]
                    .as_str()
                    .unwrap()
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap(),
                e["event_id"].as_str().unwrap().to_string(),
            )
        };
        assert!(key(pair[0]) > key(pair[1]), "newest first, then by id descending");
    }
    for event in all {
        assert_conforms(event);
    }
}

async fn query_filters_and_their_validation(app: TestApp) {
    let now = chrono::Utc::now();
    let events = json!([
        rest_event(
            json!({"event_category": "gateway", "event_outcome": "failure", "severity": "critical",
                          "event_data": {"task_id": "t-1"}})
        ),
        rest_event(json!({"event_category": "gateway", "event_outcome": "failure", "event_data": {"task_id": "t-2"}})),
        rest_event(
            json!({"event_category": "workflow", "event_type": "workflow.catalog.workflow_retrieved",
                          "event_timestamp": (now - chrono::Duration::days(3)).to_rfc3339(), "event_data": {"task_id": "t-1"}})
        ),
    ]);
    app.rest("POST", BATCH, Some(events), &[]).await;
    let total = |body: Value| body["pagination"]["total"].as_u64().unwrap();
    assert_eq!(
        total(list(&app, "event_category=gateway&event_outcome=failure").await),
        2
    );
    assert_eq!(
        total(list(&app, "event_type=workflow.catalog.workflow_retrieved").await),
        1
    );
    assert_eq!(total(list(&app, "severity=critical").await), 1);
    assert_eq!(total(list(&app, "since=24h").await), 2);
    let since = (now - chrono::Duration::days(4)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let until = (now - chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(total(list(&app, &format!("since={since}&until={until}")).await), 1);
    assert_eq!(total(list(&app, "detail_key=task_id&detail_value=t-1").await), 2);
    assert_eq!(
        total(list(&app, "detail_key=task_id&detail_value=t-1&event_category=workflow").await),
        1
    );
    let empty = list(&app, "detail_key=task_id&detail_value=none").await;
    assert_eq!(empty["data"], json!([]));
    assert_eq!(
        empty["pagination"],
        json!({"limit": 50, "offset": 0, "total": 0, "has_more": false, "next_cursor": null})
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("detail_key=task_id", "detail_value"),
        ("detail_value=t-1", "detail_key"),
        ("detail_key=task-id;drop&detail_value=x", "detail_key"),
        ("event_outcome=maybe", "event_outcome"),
        ("since=yesterday", "since"),
        ("cursor=garbage", "cursor"),
    ] {
        let (status, content_type, body) = app.rest("GET", &format!("{EVENTS}?{query}"), None, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(content_type, "application/problem+json");
        assert!(body["field_errors"][field].is_string(), "{query}: {}", brief(&body));
    }
    assert_eq!(list(&app, "limit=1000").await["pagination"]["limit"], 1000);
}

async fn cursors_walk_every_event_once(app: TestApp) {
    let events: Vec<Value> = (0..47)
        .map(|_| rest_event(json!({"correlation_id": "rr-cursor"})))
        .collect();
    app.rest("POST", BATCH, Some(json!(events)), &[]).await;
    let mut seen = Vec::new();
    let mut query = "correlation_id=rr-cursor&limit=20".to_string();
    loop {
        let page = list(&app, &query).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string()),
        );
        assert_eq!(page["pagination"]["total"], 47);
        match page["pagination"]["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(page["pagination"]["has_more"], true);
                query = format!("correlation_id=rr-cursor&limit=20&cursor={cursor}");
            }
            None => {
                assert_eq!(page["pagination"]["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(seen.len(), 47);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 47);
    let (status, _, body) = app
        .rest("GET", &format!("{EVENTS}?offset=0&cursor={}", "AQ"), None, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["field_errors"]["cursor"].is_string(), "{}", brief(&body));
}

async fn cursor_paging_is_stable_while_events_are_inserted(app: TestApp) {
    let seeded: Vec<Value> = (0..200)
        .map(|i| {
            let ts = chrono::Utc::now() - chrono::Duration::minutes(30) + chrono::Duration::milliseconds(i * 7);
            rest_event(json!({"correlation_id": "rr-stable", "event_timestamp": ts.to_rfc3339()}))
        })
        .collect();
    let (_, _, body) = app.rest("POST", BATCH, Some(json!(seeded)), &[]).await;
    let expected: HashSet<String> = body["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();

    let app = std::sync::Arc::new(app);
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                let event = rest_event(json!({"correlation_id": "rr-stable"}));
                let (status, _, _) = app.rest("POST", EVENTS, Some(event), &[]).await;
                assert_eq!(status, StatusCode::CREATED);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut query = "correlation_id=rr-stable&limit=15".to_string();
    let first = list(&app, &query).await;
    // Events written after paging began are newer than the first page; start below them.
    let mut page = first;
    loop {
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string()),
        );
        let Some(cursor) = page["pagination"]["next_cursor"].as_str() else {
            break;
        };
        query = format!("correlation_id=rr-stable&limit=15&cursor={cursor}");
        page = list(&app, &query).await;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no event appears twice");
    assert!(
        expected.is_subset(&unique),
        "every event that existed when paging began is seen: missing {}",
        expected.difference(&unique).count()
    );
    assert_eq!(app.row_count().await, 260);
}

async fn metrics_count_writes_and_validation_failures(app: TestApp) {
    app.rest("POST", EVENTS, Some(rest_event(json!({}))), &[]).await;
    let mut bad = rest_event(json!({}));
    bad.as_object_mut().unwrap().remove("correlation_id");
    app.rest("POST", EVENTS, Some(bad), &[]).await;
    app.graphql("mutation { createAuditEvent(input: {eventType: \"x\", eventCategory: \"gateway\", eventAction: \"a\", eventOutcome: \"nope\", correlationId: \"c\", eventData: {}}) { eventId } }", json!({})).await;
    let (status, content_type, body) = app.rest("GET", "/metrics", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    let text = body.as_str().unwrap();
    for line in [
        "validation_failures_total{reason=\"required\",source=\"rest\"} 1",
        "validation_failures_total{reason=\"invalid_enum\",source=\"graphql\"} 1",
        "events_written_total{source=\"rest\"} 1",
        "write_duration_seconds_count{kind=\"single\",source=\"rest\"} 1",
        "db_pool_connections{state=\"max\"} 16",
    ] {
        assert!(text.contains(line), "/metrics lacks `{line}`:\n{text}");
    }
    assert!(text.contains("db_statement_duration_seconds_count"));
    assert!(text.contains("query_duration_seconds_count{source=\"graphql\"}"));
    let (status, _, body) = app.rest("GET", "/readyz", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_as_a_problem() {
    let app = TestApp::with_config(Engine::Sqlite, |c| c.body_limit_bytes = 1024)
        .await
        .unwrap();
    let big = rest_event(json!({"event_data": {"blob": "x".repeat(4096)}}));
    let (status, content_type, body) = app.rest("POST", EVENTS, Some(big), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 413);
    assert_eq!(app.row_count().await, 0);
}

#[tokio::test]
async fn batch_size_limits_are_enforced_and_zero_means_the_default() {
    let app = TestApp::with_config(Engine::Sqlite, |c| c.max_batch_size = 5)
        .await
        .unwrap();
    let five: Vec<Value> = (0..5).map(|_| rest_event(json!({}))).collect();
    let (status, _, _) = app.rest("POST", BATCH, Some(json!(five)), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "exactly the maximum succeeds");
    let six: Vec<Value> = (0..6).map(|_| rest_event(json!({}))).collect();
    let (status, content_type, body) = app.rest("POST", BATCH, Some(json!(six)), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["type"], "https://kubernaut.ai/problems/batch-size-exceeded");
    assert_eq!(app.row_count().await, 5);

    let app = TestApp::with_config(Engine::Sqlite, |c| c.max_batch_size = 0)
        .await
        .unwrap();
    let many: Vec<Value> = (0..501).map(|_| rest_event(json!({}))).collect();
    let (_, _, body) = app.rest("POST", BATCH, Some(json!(many)), &[]).await;
    assert!(
        body["detail"].as_str().unwrap().contains("at most 500"),
        "{}",
        brief(&body)
    );
}
