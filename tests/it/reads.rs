//! auditEvent and the filters of auditEvents.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, TestApp, postgres_admin_url, postgres_url_of};

both_engines!(
    an_event_is_read_back_with_every_column,
    an_unknown_event_id_reads_as_null,
    each_filter_selects_exactly_the_matching_events,
    malformed_time_bounds_are_client_errors,
    responses_list_fields_in_the_order_the_query_asks,
    event_data_reads_back_as_written_through_every_read,
);

const IDS: &str = "query($filter: AuditEventFilter) { auditEvents(filter: $filter, first: 1000) { \
    totalCount edges { node { eventType } } } }";

async fn types(app: &TestApp, filter: Value) -> Vec<String> {
    let data = app.ok(IDS, json!({"filter": filter})).await;
    let conn = &data["auditEvents"];
    let mut types: Vec<String> = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["eventType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        conn["totalCount"],
        types.len(),
        "totalCount agrees with the edges for {filter}"
    );
    types.sort();
    types
}

async fn an_event_is_read_back_with_every_column(app: TestApp) {
    let ts = (Utc::now() - Duration::minutes(3)).to_rfc3339();
    let created = app
        .create(json!({
            "eventVersion": "1.1", "eventTimestamp": ts, "actorType": "user", "actorId": "alice@example.com",
            "actorIp": "2001:db8::1", "resourceType": "pod", "resourceId": "web-1", "resourceName": "web",
            "traceId": "t-1", "spanId": "s-1", "namespace": "prod", "clusterId": "eu-1",
            "eventData": {"nested": {"list": [1, 2.5, "x", null, false]}}, "eventMetadata": {"source": "test"},
            "severity": "warning", "durationMs": 42, "errorCode": "E42", "errorMessage": "boom",
            "retentionDays": 30, "isSensitive": true
        }))
        .await;
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventId eventVersion eventTimestamp eventDate \
             eventType eventCategory eventAction eventOutcome actorType actorId actorIp resourceType resourceId \
             resourceName correlationId parentEventId parentEventDate traceId spanId namespace clusterId \
             eventData eventMetadata severity durationMs errorCode errorMessage retentionDays isSensitive \
             eventHash previousEventHash hashAlgorithm legalHold legalHoldReason legalHoldPlacedBy legalHoldPlacedAt \
             childCount parent { eventId } } }",
            json!({"id": created["eventId"]}),
        )
        .await;
    let e = &data["auditEvent"];
    let expected = json!({
        "eventId": created["eventId"], "eventVersion": "1.1", "eventTimestamp": created["eventTimestamp"],
        "eventDate": created["eventDate"], "eventType": "gateway.signal.received", "eventCategory": "gateway",
        "eventAction": "received", "eventOutcome": "success", "actorType": "user", "actorId": "alice@example.com",
        "actorIp": "2001:db8::1", "resourceType": "pod", "resourceId": "web-1", "resourceName": "web",
        "correlationId": "rr-2026-001", "parentEventId": null, "parentEventDate": null, "traceId": "t-1",
        "spanId": "s-1", "namespace": "prod", "clusterId": "eu-1",
        "eventData": {"nested": {"list": [1, 2.5, "x", null, false]}}, "eventMetadata": {"source": "test"},
        "severity": "warning", "durationMs": 42, "errorCode": "E42", "errorMessage": "boom", "retentionDays": 30,
        "isSensitive": true, "eventHash": e["eventHash"], "previousEventHash": null, "hashAlgorithm": "sha256-unkeyed",
        "legalHold": false, "legalHoldReason": null, "legalHoldPlacedBy": null, "legalHoldPlacedAt": null,
        "childCount": 0, "parent": null
    });
    let hash = e["eventHash"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "the first event of its chain carries a SHA-256 hash: {hash}"
    );
    assert_eq!(e, &expected);
    let stored: chrono::DateTime<Utc> = e["eventTimestamp"].as_str().unwrap().parse().unwrap();
    let sent: chrono::DateTime<Utc> = ts.parse().unwrap();
    assert_eq!(
        stored.timestamp_micros(),
        sent.timestamp_micros(),
        "microsecond precision is kept"
    );
}

async fn an_unknown_event_id_reads_as_null(app: TestApp) {
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventId } }",
            json!({"id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(data["auditEvent"], Value::Null);
}

async fn each_filter_selects_exactly_the_matching_events(app: TestApp) {
    let now = Utc::now();
    let root = app
        .create(
            json!({"eventType": "gateway.signal.received", "eventTimestamp": (now - Duration::hours(30)).to_rfc3339(),
                       "severity": "info", "namespace": "prod", "clusterId": "eu-1", "correlationId": "rr-a"}),
        )
        .await;
    app.create(
        json!({"eventType": "gateway.crd.created", "eventAction": "created", "parentEventId": root["eventId"],
                      "eventTimestamp": (now - Duration::hours(2)).to_rfc3339(), "correlationId": "rr-a"}),
    )
    .await;
    app.create(
        json!({"eventType": "Gateway.upper", "eventOutcome": "failure", "severity": "error",
                      "actorType": "user", "actorId": "bob", "correlationId": "rr-b"}),
    )
    .await;
    app.create(
        json!({"eventType": "gateway_x.literal", "eventCategory": "workflow", "resourceType": "pod",
                      "resourceId": "web-1", "namespace": "dev", "clusterId": "us-1", "correlationId": "rr-b",
                      "eventOutcome": "pending"}),
    )
    .await;
    app.create(
        json!({"eventType": "gatewayxyz.other", "eventTimestamp": (now - Duration::days(6)).to_rfc3339(),
                      "correlationId": "rr-c"}),
    )
    .await;

    let all = [
        "Gateway.upper",
        "gateway.crd.created",
        "gateway.signal.received",
        "gateway_x.literal",
        "gatewayxyz.other",
    ];
    assert_eq!(types(&app, json!({})).await, all);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"eventType": "gateway.crd.created"}), vec!["gateway.crd.created"]),
        (
            json!({"eventTypePrefix": "gateway."}),
            vec!["gateway.crd.created", "gateway.signal.received"],
        ),
        (json!({"eventTypePrefix": "gateway_"}), vec!["gateway_x.literal"]),
        (json!({"eventTypePrefix": "Gateway"}), vec!["Gateway.upper"]),
        (json!({"eventTypePrefix": "%"}), vec![]),
        (json!({"eventCategory": "workflow"}), vec!["gateway_x.literal"]),
        (json!({"eventAction": "created"}), vec!["gateway.crd.created"]),
        (json!({"eventOutcome": "failure"}), vec!["Gateway.upper"]),
        (json!({"eventOutcome": "pending"}), vec!["gateway_x.literal"]),
        (json!({"severity": "error"}), vec!["Gateway.upper"]),
        (
            json!({"correlationId": "rr-a"}),
            vec!["gateway.crd.created", "gateway.signal.received"],
        ),
        (json!({"actorType": "user"}), vec!["Gateway.upper"]),
        (json!({"actorId": "bob"}), vec!["Gateway.upper"]),
        (
            json!({"actorType": "service", "actorId": "gateway-service"}),
            vec!["gateway.crd.created", "gateway.signal.received", "gatewayxyz.other"],
        ),
        (
            json!({"resourceType": "pod", "resourceId": "web-1"}),
            vec!["gateway_x.literal"],
        ),
        (json!({"namespace": "prod"}), vec!["gateway.signal.received"]),
        (json!({"clusterId": "us-1"}), vec!["gateway_x.literal"]),
        (json!({"parentEventId": root["eventId"]}), vec!["gateway.crd.created"]),
        (
            json!({"rootsOnly": true}),
            vec![
                "Gateway.upper",
                "gateway.signal.received",
                "gateway_x.literal",
                "gatewayxyz.other",
            ],
        ),
        (
            json!({"since": "24h"}),
            vec!["Gateway.upper", "gateway.crd.created", "gateway_x.literal"],
        ),
        (
            json!({"since": "7d", "until": "1d"}),
            vec!["gateway.signal.received", "gatewayxyz.other"],
        ),
        (
            json!({"until": (now - Duration::days(5)).to_rfc3339()}),
            vec!["gatewayxyz.other"],
        ),
        (
            json!({"since": "3h", "until": "1h", "correlationId": "rr-a"}),
            vec!["gateway.crd.created"],
        ),
        (
            json!({"eventTypePrefix": "gateway", "rootsOnly": true, "correlationId": "rr-b"}),
            vec!["gateway_x.literal"],
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(types(&app, filter.clone()).await, want, "filter {filter}");
    }
}

async fn malformed_time_bounds_are_client_errors(app: TestApp) {
    for filter in [
        json!({"since": "yesterday"}),
        json!({"until": "-3d"}),
        json!({"since": ""}),
    ] {
        let error = app.error(IDS, json!({"filter": filter})).await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
        let field = error["extensions"]["field"].as_str().unwrap();
        assert!(field == "filter.since" || field == "filter.until", "{error}");
    }
}

async fn responses_list_fields_in_the_order_the_query_asks(app: TestApp) {
    let parent = app
        .create(json!({"correlationId": "order", "eventType": "a.parent"}))
        .await;
    app.create(json!({"correlationId": "order", "eventType": "b.child", "parentEventId": parent["eventId"]}))
        .await;
    // Fields that wait for the database (totalCount, childCount, hasNextPage) come where they are
    // asked for, before and after fields that do not; aliases and fragments take their first place.
    let query = "query($c: String) { auditEvents(first: 1, filter: {correlationId: $c, rootsOnly: true}) { \
        totalCount pageInfo { hasNextPage hasPreviousPage } edges { node { eventType childCount ...More \
        kids: children(first: 5) { edges { node { eventOutcome eventType } } totalCount } } } } } \
        fragment More on AuditEvent { eventCategory depth }";
    let body = app.graphql_text(query, json!({"c": "order"})).await;
    assert_eq!(
        body,
        concat!(
            r#"{"data":{"auditEvents":{"totalCount":1,"pageInfo":{"hasNextPage":false,"hasPreviousPage":false},"#,
            r#""edges":[{"node":{"eventType":"a.parent","childCount":1,"eventCategory":"gateway","depth":0,"#,
            r#""kids":{"edges":[{"node":{"eventOutcome":"success","eventType":"b.child"}}],"totalCount":1}}}]}}}"#
        )
    );
    let reversed = "query($c: String) { auditEvents(first: 1, filter: {correlationId: $c}) { \
        edges { node { childCount eventType } } pageInfo { hasPreviousPage hasNextPage } totalCount } }";
    let body = app.graphql_text(reversed, json!({"c": "order"})).await;
    assert_eq!(
        body,
        concat!(
            r#"{"data":{"auditEvents":{"edges":[{"node":{"childCount":0,"eventType":"b.child"}}],"#,
            r#""pageInfo":{"hasPreviousPage":false,"hasNextPage":true},"totalCount":2}}}"#
        )
    );
}

/// Reads made one at a time go to the connection used last, not in turn to every connection the
/// pool has opened: the same few PostgreSQL backends answer them, their caches warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_one_at_a_time_reuse_the_connection_used_last() {
    use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, TransactionTrait};

    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    for n in 0..3 {
        app.create(json!({"correlationId": format!("hot-{n}")})).await;
    }
    const PAGE: &str = "{ auditEvents(first: 5) { edges { node { eventId eventType } } } }";
    let name = app.database_name().unwrap().to_string();
    // Many reads at once, each held on its connection by a lock it waits for until all have
    // started: the pool opens a connection for each that finds none idle (reads this fast, let
    // go, could all be answered by two).
    let owner = Database::connect(postgres_url_of(&name, None)).await.unwrap();
    let lock = owner.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let admin = Database::connect(postgres_admin_url()).await.unwrap();
    let waiting =
        format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}' AND wait_event_type = 'Lock'");
    let release = async {
        for _ in 0..3000 {
            let row = admin
                .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, waiting.clone()))
                .await
                .unwrap()
                .unwrap();
            if row.try_get::<i64>("", "n").unwrap() >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        lock.commit().await.unwrap();
    };
    let reads = futures_util::future::join_all((0..16).map(|_| app.ok(PAGE, json!({}))));
    let (answers, ()) = tokio::join!(reads, release);
    owner.close().await.unwrap();
    for data in answers {
        assert_eq!(data["auditEvents"]["edges"].as_array().map(Vec::len), Some(3));
    }
    // Each backend of the test database that last ran a page read, with when it last started a
    // statement (not when it last changed state: a kept connection that went back to the pool is
    // checked there, which changes its state without running anything).
    let page_readers = async || -> Vec<(i32, String)> {
        let sql = format!(
            "SELECT pid, query_start::text AS at FROM pg_stat_activity WHERE datname = '{}' \
             AND query LIKE '%FROM \"audit_events\"%ORDER BY%' ORDER BY pid",
            name
        );
        let rows = admin
            .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
            .await
            .unwrap();
        rows.iter()
            .map(|row| (row.try_get("", "pid").unwrap(), row.try_get("", "at").unwrap()))
            .collect()
    };
    let before = page_readers().await;
    assert!(
        before.len() >= 4,
        "the concurrent reads opened only {} connections: {before:?}",
        before.len()
    );
    for _ in 0..30 {
        app.ok(PAGE, json!({})).await;
    }
    let after = page_readers().await;
    let answered: Vec<_> = after.iter().filter(|backend| !before.contains(backend)).collect();
    assert!(
        !answered.is_empty() && answered.len() <= 2,
        "30 reads one at a time were answered by {} of {} backends: {answered:?}",
        answered.len(),
        after.len()
    );
    admin.close().await.unwrap();
}

/// `eventData` reads back as the document written wherever GraphQL reads it: pages, children,
/// lookups and walks (which read it as the text the database keeps), `node` (which reads the
/// value), and the value path taken when a response key is selected twice (which parses the
/// text).
async fn event_data_reads_back_as_written_through_every_read(app: TestApp) {
    let data = json!({
        "a b": "c, d: e", "quote \"q\" and \\": "line\nbreak\ttab \u{1f}", "é": "ü 😀 \u{2028}",
        "nested": {"list": [1, -2, 2.5, 1.0e3, 0.1, "x, y", null, false, true, [], {}], "empty": ""},
        "z": {"k": [[{"deep": " spaced : , "}]]}
    });
    let root = app
        .create(json!({"eventData": data, "correlationId": "data-text"}))
        .await;
    let child = app
        .create(
            json!({"eventData": {"a b": "c, d: e"}, "correlationId": "data-text", "parentEventId": root["eventId"]}),
        )
        .await;
    let id = json!({"id": root["eventId"]});
    let page = app
        .ok(
            "query { auditEvents(first: 10, filter: {correlationId: \"data-text\"}) { edges { node { eventId eventData } } } }",
            json!({}),
        )
        .await;
    let edges = page["auditEvents"]["edges"].as_array().unwrap();
    let of = |id: &Value| edges.iter().find(|e| &e["node"]["eventId"] == id).unwrap()["node"]["eventData"].clone();
    assert_eq!(of(&root["eventId"]), data, "a page");
    assert_eq!(of(&child["eventId"]), json!({"a b": "c, d: e"}), "a page");

    let lookup = "query($id: UUID!) { auditEvent(eventId: $id) { eventData children(first: 5) { nodes { eventData } } \
                  descendants(first: 5) { edges { node { eventData } } } } }";
    let read = app.ok(lookup, id.clone()).await;
    assert_eq!(read["auditEvent"]["eventData"], data, "a lookup");
    assert_eq!(
        read["auditEvent"]["children"]["nodes"][0]["eventData"],
        json!({"a b": "c, d: e"}),
        "children"
    );
    assert_eq!(
        read["auditEvent"]["descendants"]["edges"][0]["node"]["eventData"],
        json!({"a b": "c, d: e"}),
        "a walk"
    );
    let up = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { ancestors { eventData } root { eventData } } }",
            json!({"id": child["eventId"]}),
        )
        .await;
    assert_eq!(up["auditEvent"]["ancestors"][0]["eventData"], data, "ancestors");
    assert_eq!(up["auditEvent"]["root"]["eventData"], data, "root");

    let node = app
        .ok(
            "query($id: ID!) { node(id: $id) { ... on AuditEvent { eventData } } }",
            json!({"id": read_id(&app, &root["eventId"]).await}),
        )
        .await;
    assert_eq!(node["node"]["eventData"], data, "node");

    // A key selected twice is merged as values: the document is parsed there.
    let twice = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventData eventData } }",
            id.clone(),
        )
        .await;
    assert_eq!(twice["auditEvent"]["eventData"], data, "the value path");

    // Written compact: no space between tokens, the spaces inside strings kept.
    let text = app
        .graphql_text(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventData } }",
            json!({"id": child["eventId"]}),
        )
        .await;
    assert!(text.contains(r#"{"eventData":{"a b":"c, d: e"}}"#), "{text}");
    if app.url.starts_with("postgres") {
        // PostgreSQL keeps members shortest name first: the text it sent is what was written.
        let text = app
            .graphql_text(
                "query { auditEvents(first: 1, filter: {correlationId: \"data-text\", rootsOnly: true}) { nodes { eventData } } }",
                json!({}),
            )
            .await;
        assert!(
            text.contains(r#"{"eventData":{"z":{"k":[[{"deep":" spaced : , "}]]},"é":"#),
            "{text}"
        );
    }
}

/// The global id of the event `event_id`.
async fn read_id(app: &TestApp, event_id: &Value) -> Value {
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { id } }",
            json!({"id": event_id}),
        )
        .await;
    data["auditEvent"]["id"].clone()
}
