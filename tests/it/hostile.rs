//! Hostile and malformed requests: GraphQL over HTTP exactly, every refusal typed, and no request
//! that can crash or hang the server.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::both_engines;
use crate::helpers::{Engine, TestApp, brief};

both_engines!(
    deeply_nested_literals_are_refused_and_the_server_keeps_serving,
    posts_that_are_not_json_are_refused_and_write_nothing,
);

/// The status, content type and body of one request through the router.
async fn exchange(app: &TestApp, request: Request<Body>) -> (StatusCode, String, Value) {
    app.exchange(request).await
}

fn post(body: impl Into<Body>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/graphql");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.into()).expect("request")
}

fn post_json(body: &Value, accept: Option<&str>) -> Request<Body> {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(accept) = accept {
        headers.push(("accept", accept));
    }
    post(body.to_string(), &headers)
}

fn get(query: &str) -> Request<Body> {
    Request::get(format!("/graphql?query={}", crate::helpers::url_encode(query)))
        .body(Body::empty())
        .expect("request")
}

/// Asserts a GraphQL-shaped refusal: JSON, one error with a code, no data, no Rust debug text.
#[track_caller]
fn assert_refusal(status: StatusCode, content_type: &str, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{}", brief(body));
    assert!(
        content_type.starts_with("application/json") || content_type.starts_with("application/graphql-response+json"),
        "typed: {content_type}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], code, "{}", brief(body));
    assert!(body.get("data").is_none(), "no data: {}", brief(body));
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    for debug in ["InvalidRequest(", "Error(", "untagged enum", "BatchRequest"] {
        assert!(!message.contains(debug), "no Rust debug text: {message}");
    }
}

async fn deeply_nested_literals_are_refused_and_the_server_keeps_serving(app: TestApp) {
    let object = format!(
        "{{auditEvents(filter:{}1{}){{totalCount}}}}",
        "{a:".repeat(1_500),
        "}".repeat(1_500)
    );
    let list = format!(
        "{{auditEvents(first:{}1{}){{totalCount}}}}",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    let huge = format!("{{a(b:{})}}", "[".repeat(1_000_000));
    let selections = format!("{}{}", "{a".repeat(5_000), "}".repeat(5_000));
    let names = format!("{{ {} }}", "f ".repeat(200_000));
    for document in [&object, &list, &huge, &selections, &names] {
        let (status, content_type, body) = exchange(&app, post_json(&json!({"query": document}), None)).await;
        assert_refusal(status, &content_type, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
        if document.len() < 100_000 {
            let (status, content_type, body) = exchange(&app, get(document)).await;
            assert_refusal(status, &content_type, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
        }
    }
    // Fragments that each spread the next twice: 63 selections written, 2^31 once expanded.
    let fan: String = (0..30)
        .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1))
        .collect();
    let fan = format!("{{ ...F0 }} {fan} fragment F30 on Query {{ __typename }}");
    let body = app.graphql(&fan, json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expands"),
        "{}",
        brief(&body)
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(body.get("data").is_none());
    // A fragment that spreads itself below a field: expanding it never ends, so it is refused
    // before anything expands it (it once overflowed the stack and ended the process).
    let cycle = "query { auditEvents(first: 1) { nodes { ...F } } } \
                 fragment F on AuditEvent { parent { ...G } } fragment G on AuditEvent { eventId parent { ...F } }";
    for request in [post_json(&json!({"query": cycle}), None), get(cycle)] {
        let (status, content_type, body) = exchange(&app, request).await;
        // A request error, answered as `application/json` asks: status 200.
        assert_refusal(status, &content_type, &body, StatusCode::OK, "BAD_REQUEST");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("spreads itself"),
            "{}",
            brief(&body)
        );
    }
    // A body of 3 MiB is within the 5 MiB limit (no hidden smaller one); its document may not
    // exceed 1 MiB.
    let inputs: Vec<Value> = (0..20)
        .map(|_| crate::helpers::event_input(json!({"eventData": {"blob": "x".repeat(150_000)}})))
        .collect();
    let large = json!({"query": "mutation($i: [AuditEventInput!]!) { createAuditEvents(inputs: $i) { eventId } }",
        "variables": {"i": inputs}});
    let (status, _, body) = exchange(&app, post_json(&large, None)).await;
    assert_eq!(status, StatusCode::OK, "{}", brief(&body));
    assert_eq!(
        body["data"]["createAuditEvents"].as_array().map(Vec::len),
        Some(20),
        "{}",
        brief(&body)
    );
    let long = json!({"query": format!("{{ auditEvents {{ totalCount }} }} # {}", "x".repeat(2 << 20))});
    let (status, content_type, body) = exchange(&app, post_json(&long, None)).await;
    assert_refusal(status, &content_type, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    // Nesting inside strings and comments is text, not structure.
    let quoted = format!(
        "{{auditEvents(filter:{{correlationId:\"{}\"}}){{totalCount}}}} # {}",
        "[".repeat(500),
        "{".repeat(500)
    );
    let data = app.ok(&quoted, json!({})).await;
    assert_eq!(data["auditEvents"]["totalCount"], 0);
}

async fn posts_that_are_not_json_are_refused_and_write_nothing(app: TestApp) {
    let mutation = json!({"query": "mutation { createAuditEvent(input: {eventType: \"x.y\", eventCategory: \"x\", \
        eventAction: \"y\", eventOutcome: \"success\", correlationId: \"csrf\", eventData: {}}) { eventId } }"})
    .to_string();
    for content_type in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type.map(|c| ("content-type", c)).into_iter().collect();
        let (status, got, body) = exchange(&app, post(mutation.clone(), &headers)).await;
        assert_refusal(status, &got, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "BAD_REQUEST");
    }
    assert_eq!(app.row_count().await, 0, "no cross-site write got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_graphql_shaped_errors() {
    let app = TestApp::new(Engine::Sqlite).await.unwrap();
    for body in [
        "",
        "{",
        "null",
        "42",
        "\"query\"",
        r#"{"query": 5}"#,
        r#"{"query": "{ __typename }", "variables": "x"}"#,
    ] {
        let (status, content_type, json) =
            exchange(&app, post(body.to_string(), &[("content-type", "application/json")])).await;
        assert_refusal(status, &content_type, &json, StatusCode::BAD_REQUEST, "BAD_REQUEST");
        assert!(
            json["errors"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with("the body is not a GraphQL request"),
            "{body}: {}",
            brief(&json)
        );
    }
    let (status, content_type, json) = exchange(
        &app,
        post(
            r#"[{"query": "{ __typename }"}]"#,
            &[("content-type", "application/json")],
        ),
    )
    .await;
    assert_refusal(status, &content_type, &json, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(json["errors"][0]["message"].as_str().unwrap().contains("batched"));
    let (status, content_type, json) = exchange(
        &app,
        Request::get("/graphql?query=%7B__typename%7D&variables=%7Bnot-json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_refusal(status, &content_type, &json, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_response_media_type_is_honoured_as_graphql_over_http_asks() {
    let app = TestApp::new(Engine::Sqlite).await.unwrap();
    const GRAPHQL: &str = "application/graphql-response+json";

    // A document that does not parse, or does not validate: 400 with that media type, no data.
    for query in [
        "{ auditEvents {",
        "{ noSuchField }",
        "query($x: Int!) { auditEvents(first: $x) { totalCount } }",
    ] {
        let (status, content_type, body) = exchange(&app, post_json(&json!({"query": query}), Some(GRAPHQL))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {}", brief(&body));
        assert!(content_type.starts_with(GRAPHQL), "{content_type}");
        assert!(body.get("data").is_none(), "{query}: {}", brief(&body));
        assert!(body["errors"][0]["message"].is_string());
        // The same with application/json: 200, still no data.
        let (status, content_type, body) =
            exchange(&app, post_json(&json!({"query": query}), Some("application/json"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert!(body.get("data").is_none(), "{query}: {}", brief(&body));
    }

    // A valid request: 200 in the media type asked for; */* and no Accept get application/json.
    let query = json!({"query": "{ auditEvents { totalCount } }"});
    let (status, content_type, body) = exchange(&app, post_json(&query, Some(GRAPHQL))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with(GRAPHQL));
    assert_eq!(body["data"]["auditEvents"]["totalCount"], 0);
    for accept in [Some("*/*"), None, Some("application/json, text/plain")] {
        let (status, content_type, _) = exchange(&app, post_json(&query, accept)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json", "{accept:?}");
    }
    let (status, content_type, body) = exchange(&app, post_json(&query, Some("text/html"))).await;
    assert_refusal(status, &content_type, &body, StatusCode::NOT_ACCEPTABLE, "BAD_REQUEST");

    // Mutations over GET: 405 naming POST, GraphQL-shaped.
    let response = app
        .router
        .clone()
        .oneshot(get("mutation { __typename }"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    // Other methods: 405 too, typed.
    let (status, content_type, body) = exchange(&app, Request::delete("/graphql").body(Body::empty()).unwrap()).await;
    assert_refusal(
        status,
        &content_type,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "BAD_REQUEST",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_a_typed_413() {
    let app = TestApp::with_config(Engine::Sqlite, |c| c.body_limit_bytes = 1_000)
        .await
        .unwrap();
    let big = json!({"query": format!("{{ __typename }} # {}", "x".repeat(2_000))});
    let (status, content_type, body) = exchange(&app, post_json(&big, None)).await;
    assert_refusal(
        status,
        &content_type,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "BAD_REQUEST",
    );
}

both_engines!(
    nul_characters_are_field_errors_on_both_engines,
    a_leap_second_is_stored_as_acknowledged_and_retries_stay_idempotent,
    rest_offsets_beyond_the_limit_are_field_errors,
    event_data_filters_match_strings_numbers_and_booleans_alike,
);

async fn nul_characters_are_field_errors_on_both_engines(app: TestApp) {
    use crate::helpers::{CREATE, event_input, rest_event};
    let cases = [
        (json!({"correlationId": "a\u{0}b"}), "correlationId"),
        (json!({"eventType": "x\u{0}"}), "eventType"),
        (json!({"actorId": "\u{0}"}), "actorId"),
        (json!({"eventData": {"k": ["ok", "a\u{0}"]}}), "eventData"),
        (json!({"eventData": {"a\u{0}key": 1}}), "eventData"),
    ];
    for (overrides, field) in cases {
        let error = app
            .error(CREATE, json!({"input": event_input(overrides.clone())}))
            .await;
        assert_eq!(
            error["extensions"]["code"],
            "BAD_USER_INPUT",
            "{overrides}: {}",
            brief(&error)
        );
        assert_eq!(error["extensions"]["field"], field, "{overrides}: {}", brief(&error));
        assert!(
            error["message"].as_str().unwrap().contains("U+0000"),
            "{}",
            brief(&error)
        );
    }
    let error = app
        .error(
            CREATE,
            json!({"input": event_input(json!({"eventData": {"k": ["ok", "a\u{0}"]}}))}),
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("/k/1"),
        "names where: {}",
        brief(&error)
    );
    // The same written as a GraphQL string literal.
    let literal = "mutation { createAuditEvent(input: {eventType: \"a.b\", eventCategory: \"a\", eventAction: \"b\", \
        eventOutcome: \"success\", correlationId: \"a\\u0000b\", eventData: {}}) { eventId } }";
    let error = app.error(literal, json!({})).await;
    assert_eq!(error["extensions"]["field"], "correlationId", "{}", brief(&error));

    let tree = "query($c: String) { causalityTree(correlationId: $c) { nodeCount } }";
    let error = app.error(tree, json!({"c": "a\u{0}b"})).await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{}", brief(&error));
    let filter = "query($c: String) { auditEvents(filter: {correlationId: $c}) { totalCount } }";
    let error = app.error(filter, json!({"c": "x".repeat(1_001)})).await;
    assert!(
        error["message"].as_str().unwrap().contains("at most 1000"),
        "{}",
        brief(&error)
    );
    let error = app.error(filter, json!({"c": "a\u{0}b"})).await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{}", brief(&error));
    assert!(
        error["message"].as_str().unwrap().contains("filter.correlationId"),
        "{}",
        brief(&error)
    );

    let (status, _, body) = app
        .rest("GET", "/api/v1/audit/events?correlation_id=a%00b", None, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", brief(&body));
    assert!(body["field_errors"]["correlation_id"].is_string(), "{}", brief(&body));
    let (status, _, body) = app
        .rest("GET", "/api/v1/audit/events?detail_key=k&detail_value=%00", None, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", brief(&body));
    let event = rest_event(json!({"event_data": {"k": "\u{0}"}}));
    let (status, _, body) = app.rest("POST", "/api/v1/audit/events", Some(event), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", brief(&body));
    assert!(body["field_errors"]["event_data"].is_string(), "{}", brief(&body));
    assert_eq!(app.row_count().await, 0);
}

async fn a_leap_second_is_stored_as_acknowledged_and_retries_stay_idempotent(app: TestApp) {
    use chrono::{Duration, Timelike, Utc};
    let earlier = Utc::now() - Duration::hours(3);
    // The last minute of an hour three hours ago, and the last minute of yesterday (a new date).
    let midnight = (Utc::now() - Duration::days(1)).date_naive();
    for (leap, stored, date) in [
        (
            format!("{}T{:02}:59:60Z", earlier.date_naive(), earlier.hour()),
            format!("{}T{:02}:59:59.999999+00:00", earlier.date_naive(), earlier.hour()),
            earlier.date_naive(),
        ),
        (
            format!("{midnight}T23:59:60.5Z"),
            format!("{midnight}T23:59:59.999999+00:00"),
            midnight,
        ),
    ] {
        let id = uuid::Uuid::now_v7().to_string();
        let input = json!({"eventId": id, "eventTimestamp": leap});
        let created = app.create(input.clone()).await;
        assert_eq!(created["eventTimestamp"], stored.as_str(), "{leap}");
        assert_eq!(created["eventDate"], date.to_string(), "{leap}");
        let read = app
            .ok(
                "query($id: UUID!) { auditEvent(eventId: $id) { eventTimestamp eventDate } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            read["auditEvent"]["eventTimestamp"],
            stored.as_str(),
            "what is acknowledged is stored"
        );
        let again = app.create(input).await;
        assert_eq!(
            again["eventTimestamp"],
            stored.as_str(),
            "the retry is idempotent, not a conflict"
        );
    }
    assert_eq!(app.row_count().await, 2);
    // No writer can store a date that disagrees with its timestamp, not even through SQL.
    use sea_orm::ConnectionTrait;
    let sql = match app.store.backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "UPDATE audit_events SET event_timestamp = event_timestamp + interval '1 day'"
        }
        _ => "UPDATE audit_events SET event_timestamp = replace(event_timestamp, ':59.999999', ':60')",
    };
    assert!(app.store.db().execute_unprepared(sql).await.is_err(), "{sql}");
}

async fn rest_offsets_beyond_the_limit_are_field_errors(app: TestApp) {
    for offset in ["9223372036854775808", "18446744073709551616", "1000000001", "-1", "x"] {
        let (status, content_type, body) = app
            .rest("GET", &format!("/api/v1/audit/events?offset={offset}"), None, &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{offset}: {}", brief(&body));
        assert!(content_type.starts_with("application/problem+json"));
        assert!(body["field_errors"]["offset"].is_string(), "{offset}: {}", brief(&body));
    }
    let (status, _, body) = app
        .rest("GET", "/api/v1/audit/events?offset=1000000000", None, &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{}", brief(&body));
    assert_eq!(body["data"], json!([]));
}

async fn event_data_filters_match_strings_numbers_and_booleans_alike(app: TestApp) {
    let data = json!({"n": 5, "b": true, "f": false, "s": "5", "r": 1.5, "o": {"x": 1}, "a": [1], "z": null,
        "tiny": 1e-7, "big": 1e16});
    app.create(json!({"eventData": data})).await;
    for (key, value, want) in [
        ("n", "5", 1),
        ("n", "5.0", 1),
        ("n", "6", 0),
        ("tiny", "1e-7", 1),
        ("tiny", "0.0000001", 1),
        ("big", "10000000000000000", 1),
        ("s", "5.0", 0),
        ("b", "true", 1),
        ("b", "1", 0),
        ("f", "false", 1),
        ("s", "5", 1),
        ("r", "1.5", 1),
        ("o", "{\"x\":1}", 0),
        ("a", "[1]", 0),
        ("z", "null", 0),
        ("missing", "5", 0),
    ] {
        let value_encoded: String = value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, _, body) = app
            .rest(
                "GET",
                &format!("/api/v1/audit/events?detail_key={key}&detail_value={value_encoded}"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}", brief(&body));
        assert_eq!(body["pagination"]["total"], want, "{key} = {value}");
    }
}

both_engines!(lone_surrogates_are_refused_before_any_engine_sees_them);

async fn lone_surrogates_are_refused_before_any_engine_sees_them(app: TestApp) {
    let literal = "mutation { createAuditEvent(input: {eventType: \"a.b\", eventCategory: \"a\", eventAction: \"b\", \
        eventOutcome: \"success\", correlationId: \"a\\ud800b\", eventData: {k: \"\\udc00\"}}) { eventId correlationId } }";
    let body = app.graphql(literal, json!({})).await;
    assert!(body["errors"][0]["message"].is_string(), "{}", brief(&body));
    assert!(body.get("data").is_none(), "refused before execution: {}", brief(&body));
    let raw = r#"{"query": "mutation($i: AuditEventInput!) { createAuditEvent(input: $i) { eventId } }", "variables": {"i": {"eventType": "a.b", "eventCategory": "a", "eventAction": "b", "eventOutcome": "success", "correlationId": "a\ud800b", "eventData": {}}}}"#;
    let (status, content_type, body) = exchange(&app, post(raw, &[("content-type", "application/json")])).await;
    assert_refusal(status, &content_type, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let raw = r#"{"version": "1.0", "event_type": "a.b", "event_category": "a", "event_action": "b", "event_outcome": "success", "correlation_id": "a\ud800b", "event_data": {}}"#;
    let response = app
        .router
        .clone()
        .oneshot(
            Request::post("/api/v1/audit/events")
                .header("content-type", "application/json")
                .body(Body::from(raw))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "a typed refusal"
    );
    assert_eq!(app.row_count().await, 0, "the engines never see them");
}

both_engines!(
    alias_amplification_is_refused_by_counting_database_work,
    a_heavy_request_does_not_starve_other_clients,
);

/// A root with `width` children, each with `width` children: 1 + width + width² events.
async fn bushy_tree(app: &TestApp, width: usize) -> String {
    use chrono::{Duration, Utc};
    let base = Utc::now() - Duration::hours(2);
    let root = crate::helpers::row(uuid::Uuid::now_v7(), base, None, "amplify");
    let mut rows = vec![root.clone()];
    let mut tick = 0;
    for _ in 0..width {
        tick += 1;
        let child = crate::helpers::row(
            uuid::Uuid::now_v7(),
            base + Duration::milliseconds(tick),
            Some(&root),
            "amplify",
        );
        rows.push(child.clone());
        for _ in 0..width {
            tick += 1;
            rows.push(crate::helpers::row(
                uuid::Uuid::now_v7(),
                base + Duration::milliseconds(tick),
                Some(&child),
                "amplify",
            ));
        }
    }
    app.insert_rows(&rows).await;
    root.event_id.to_string()
}

async fn alias_amplification_is_refused_by_counting_database_work(app: TestApp) {
    let root = bushy_tree(&app, 10).await;
    let walks = |n: usize| -> String {
        let aliases: String = (0..n)
            .map(|i| {
                format!("w{i}: auditEvent(eventId: \"{root}\") {{ descendants(maxDepth: 10000) {{ totalCount }} }} ")
            })
            .collect();
        format!("{{ {aliases} }}")
    };
    let counts = |n: usize| -> String {
        let aliases: String = (0..n)
            .map(|i| format!("c{i}: auditEvents(first: 1) {{ totalCount }} "))
            .collect();
        format!("{{ {aliases} }}")
    };
    for (query, why) in [
        (walks(200), "root fields"),
        (walks(30), "complex"),
        (counts(1_000), "selections"),
        (counts(300), "root fields"),
    ] {
        let body = app.graphql(&query, json!({})).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(why), "{why}: {}", brief(&body));
        assert!(
            body.get("data").is_none(),
            "refused before any statement: {}",
            brief(&body)
        );
    }
    // Within the budget the same work is done, and answered right.
    let body = app.graphql(&walks(10), json!({})).await;
    assert!(body.get("errors").is_none(), "{}", brief(&body));
    assert_eq!(body["data"]["w9"]["descendants"]["totalCount"], 110);
}

async fn a_heavy_request_does_not_starve_other_clients(app: TestApp) {
    let root = bushy_tree(&app, 30).await;
    let aliases: String = (0..20)
        .map(|i| {
            format!(
                "w{i}: auditEvent(eventId: \"{root}\") {{ descendants(maxDepth: 10000, first: 100) {{ totalCount }} }} "
            )
        })
        .collect();
    let heavy = format!("{{ {aliases} }}");
    let light = "{ auditEvents(first: 1, filter: {rootsOnly: true}) { edges { node { eventId } } } }";
    let (heavy_body, light_bodies) = tokio::join!(app.graphql(&heavy, json!({})), async {
        let mut bodies = Vec::new();
        for _ in 0..20 {
            bodies.push(app.graphql(light, json!({})).await);
        }
        bodies
    });
    assert!(heavy_body.get("errors").is_none(), "{}", brief(&heavy_body));
    // Walks nested in walks, under several root fields: no permit is held across a subtree.
    let nested: String = (0..3)
        .map(|i| {
            format!(
                "n{i}: auditEvent(eventId: \"{root}\") {{ descendants(first: 2) {{ edges {{ node {{ \
                 descendants(first: 2) {{ edges {{ node {{ descendants(first: 1) {{ totalCount }} }} }} }} }} }} }} }} "
            )
        })
        .collect();
    let body = app.graphql(&format!("{{ {nested} }}"), json!({})).await;
    assert!(body.get("errors").is_none(), "{}", brief(&body));
    assert_eq!(heavy_body["data"]["w19"]["descendants"]["totalCount"], 930);
    for body in light_bodies {
        assert!(
            body.get("errors").is_none(),
            "other clients are served: {}",
            brief(&body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_a_typed_retryable_refusal() {
    use sea_orm::TransactionTrait;
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(app) = TestApp::with_config(engine, |c| {
            c.db_max_connections = 1;
            c.db_wait_timeout_secs = 1;
        })
        .await
        else {
            continue;
        };
        let held = app.store.db().begin().await.expect("the only connection");
        let body = app.graphql("{ auditEvents { totalCount } }", json!({})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UNAVAILABLE",
            "{engine:?}: {}",
            brief(&body)
        );
        let (status, _, problem) = app.rest("GET", "/api/v1/audit/events", None, &[]).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{engine:?}: {}",
            brief(&problem)
        );
        held.rollback().await.expect("release");
        let data = app.ok("{ auditEvents { totalCount } }", json!({})).await;
        assert_eq!(data["auditEvents"]["totalCount"], 0);
    }
}
