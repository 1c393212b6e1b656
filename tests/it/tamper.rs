//! Tamper evidence: every write path links events into their correlation's chain in write order,
//! concurrent writers never fork a chain, stored rows cannot be changed or deleted, and an
//! attacker who goes around the triggers is found by `verifyChain` at the event they touched.

use axum::http::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseBackend};
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{TestApp, as_attacker, brief, event_input, id_literal, rest_event};

both_engines!(
    every_write_path_extends_the_chain_in_write_order,
    concurrent_writers_of_one_correlation_never_fork_its_chain,
    stored_events_cannot_be_changed_except_a_legacy_parent_date_and_the_legal_hold,
    tampering_around_the_triggers_is_found_at_the_event_it_touched,
);

const VERIFY: &str = "query($c: String!) { verifyChain(correlationId: $c) { correlationId valid totalEvents \
    verifiedEvents unchainedEvents firstBreak { eventId position kind } breaks { eventId position kind message \
    expectedHash actualHash previousHash } } }";
const BATCH: &str = "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { eventId } }";

async fn verify(app: &TestApp, correlation: &str) -> Value {
    app.ok(VERIFY, json!({"c": correlation})).await["verifyChain"].clone()
}

/// The stored chain of a correlation: (event id, position, hash, previous hash), in chain order.
async fn chain(app: &TestApp, correlation: &str) -> Vec<(String, i64, String, Option<String>)> {
    let (events, head) = app.store.chain_of(correlation).await.unwrap();
    let chain: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.event_id.to_string(),
                e.chain_seq.unwrap(),
                e.event_hash.clone().unwrap(),
                e.previous_event_hash.clone(),
            )
        })
        .collect();
    let head = head.unwrap();
    assert_eq!(head.last_seq, chain.len() as i64, "the head records the chain's length");
    assert_eq!(Some(&head.last_hash), chain.last().map(|c| &c.2), "and its last hash");
    chain
}

async fn every_write_path_extends_the_chain_in_write_order(app: TestApp) {
    let c = "rr-chain-paths";
    let mut written = Vec::new();
    let first = app
        .create(json!({"correlationId": c, "eventId": "0193a000-0000-7000-8000-000000000001"}))
        .await;
    written.push(first["eventId"].as_str().unwrap().to_string());
    let batch = app
        .ok(
            BATCH,
            json!({"inputs": [
                event_input(json!({"correlationId": c})),
                event_input(json!({"correlationId": "rr-chain-other"})),
                event_input(json!({"correlationId": c})),
            ]}),
        )
        .await;
    written.push(batch["createAuditEvents"][0]["eventId"].as_str().unwrap().to_string());
    written.push(batch["createAuditEvents"][2]["eventId"].as_str().unwrap().to_string());
    let (status, _, body) = app
        .rest(
            "POST",
            "/api/v1/audit/events",
            Some(rest_event(json!({"correlation_id": c}))),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    written.push(body["event_id"].as_str().unwrap().to_string());
    let (status, _, body) = app
        .rest(
            "POST",
            "/api/v1/audit/events/batch",
            Some(json!([rest_event(json!({"correlation_id": c}))])),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
    written.push(body["event_ids"][0].as_str().unwrap().to_string());
    // A late event, stamped three days ago, comes last in the chain: write order, not time order.
    let late = chrono::Utc::now() - chrono::Duration::days(3);
    let late = app
        .create(json!({"correlationId": c, "eventTimestamp": late.to_rfc3339()}))
        .await;
    written.push(late["eventId"].as_str().unwrap().to_string());
    // An idempotent retry returns the stored event and leaves the chain as it was.
    app.create(json!({"correlationId": c, "eventId": "0193a000-0000-7000-8000-000000000001"}))
        .await;

    let stored = chain(&app, c).await;
    let ids: Vec<&String> = stored.iter().map(|s| &s.0).collect();
    assert_eq!(ids, written.iter().collect::<Vec<_>>(), "chain order is write order");
    for (i, link) in stored.iter().enumerate() {
        assert_eq!(link.1, i as i64 + 1);
        assert_eq!(
            link.3.as_ref(),
            i.checked_sub(1).map(|p| &stored[p].2),
            "each links to the one before"
        );
    }
    let report = verify(&app, c).await;
    assert_eq!(report["valid"], true, "{}", brief(&report));
    assert_eq!(report["totalEvents"], 6);
    assert_eq!(report["verifiedEvents"], 6);
    assert_eq!(verify(&app, "rr-chain-other").await["totalEvents"], 1);

    let (status, _, body) = app
        .rest(
            "POST",
            "/api/v1/audit/verify-chain",
            Some(json!({"correlation_id": c})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["correlation_id"], c);
    assert_eq!(body["is_valid"], true);
    assert_eq!(body["total_events"], 6);
    assert_eq!(body["verified_events"], 6);
    assert_eq!(body["tampered_events"], json!([]));
    assert!(body["verification_time"].is_string() && body["message"].is_string());
    let (status, _, body) = app
        .rest("POST", "/api/v1/audit/verify-chain", Some(json!({})), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["field_errors"]["correlation_id"].is_string(), "{}", brief(&body));
}

async fn concurrent_writers_of_one_correlation_never_fork_its_chain(app: TestApp) {
    // A second application on the same database stands for a second server process.
    let second = auditgraph::app(
        auditgraph::store::Store::connect(&auditgraph::store::StoreOptions {
            max_connections: 4,
            ..app_options(&app)
        })
        .await
        .unwrap(),
        &auditgraph::config::Config {
            log_key_file: app.keys.path().join("log.key"),
            ..auditgraph::config::Config::for_database("sqlite://unused")
        },
    )
    .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let router = if writer % 2 == 0 {
            app.router.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let correlation = if n % 2 == 0 { "rr-contended" } else { "rr-quiet" };
                let batch = json!({"query": BATCH, "variables": {"inputs": [
                    event_input(json!({"correlationId": correlation})),
                    event_input(json!({"correlationId": format!("rr-own-{writer}")})),
                ]}});
                let body = post(&router, batch).await;
                assert!(body.get("errors").is_none(), "{body}");
                // A single event too: single writes are committed in groups, without the batch's
                // chain lock until they move the head.
                let single = json!({"query": crate::helpers::CREATE, "variables": {
                    "input": event_input(json!({"correlationId": "rr-contended"}))
                }});
                let body = post(&router, single).await;
                assert!(body.get("errors").is_none(), "{body}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (correlation, events) in [("rr-contended", 120), ("rr-quiet", 40), ("rr-own-3", 10)] {
        let stored = chain(&app, correlation).await;
        assert_eq!(stored.len(), events, "{correlation}");
        let report = verify(&app, correlation).await;
        assert_eq!(report["valid"], true, "{correlation}: {}", brief(&report));
        assert_eq!(report["verifiedEvents"], events);
    }
}

/// POSTs a GraphQL request to `router`; returns the response body, after checking the status.
async fn post(router: &axum::Router, body: Value) -> Value {
    let request = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(router.clone(), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The store options of `app`'s database, for a second connection pool on it.
fn app_options(app: &TestApp) -> auditgraph::store::StoreOptions {
    auditgraph::config::Config::for_database(&app.url)
        .store_options()
        .unwrap()
}

async fn stored_events_cannot_be_changed_except_a_legacy_parent_date_and_the_legal_hold(app: TestApp) {
    let parent = app.create(json!({"correlationId": "rr-frozen"})).await;
    let child = app
        .create(json!({"correlationId": "rr-frozen", "parentEventId": parent["eventId"]}))
        .await;
    let db = app.store.db();
    let id = child["eventId"].as_str().unwrap();
    let run = |sql: String| async move { db.execute_unprepared(&sql).await };
    let text_id = match app.store.backend() {
        DatabaseBackend::Postgres => format!("'{id}'"),
        _ => format!("X'{}'", id.replace('-', "")),
    };
    for change in [
        "event_type = 'forged.type'",
        "event_data = '{}'",
        "actor_id = 'someone-else'",
        "correlation_id = 'rr-elsewhere'",
        "event_hash = 'ff'",
        "chain_seq = 9",
        "submitted_by = 'nobody'",
        "parent_event_date = '2001-01-01'",
    ] {
        let error = run(format!("UPDATE audit_events SET {change} WHERE event_id = {text_id}"))
            .await
            .expect_err(change);
        assert!(
            error.to_string().contains("audit events cannot be changed"),
            "{change}: {error}"
        );
    }
    // The product's own changes stay possible: clearing and completing a parent date (the
    // backfill's rollback and the backfill), and the legal hold.
    for allowed in [
        "parent_event_date = NULL".to_string(),
        format!("parent_event_date = '{}'", parent["eventDate"].as_str().unwrap()),
        "legal_hold = true, legal_hold_reason = 'litigation', legal_hold_placed_by = 'counsel'".to_string(),
    ] {
        run(format!("UPDATE audit_events SET {allowed} WHERE event_id = {text_id}"))
            .await
            .unwrap_or_else(|e| panic!("{allowed}: {e}"));
    }
    assert_eq!(verify(&app, "rr-frozen").await["valid"], true);
}

async fn tampering_around_the_triggers_is_found_at_the_event_it_touched(app: TestApp) {
    let mut chains = std::collections::HashMap::new();
    for case in ["edited", "removed", "truncated", "reordered", "forged"] {
        let mut ids = Vec::new();
        for _ in 0..5 {
            let event = app.create(json!({"correlationId": format!("rr-{case}")})).await;
            ids.push(event["eventId"].as_str().unwrap().to_string());
        }
        assert_eq!(verify(&app, &format!("rr-{case}")).await["valid"], true);
        chains.insert(case, ids);
    }
    let at = |case: &str, i: usize| id_literal(&app, &chains[case][i]);
    let forged_id = uuid::Uuid::now_v7().to_string();
    let forged_literal = id_literal(&app, &forged_id);
    let copy_columns = "event_version, event_timestamp, event_date, event_type, event_category, event_action, \
        event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, event_data, retention_days, \
        is_sensitive, event_hash, previous_event_hash, hash_algorithm, legal_hold, submitted_by, chain_seq";
    as_attacker(
        &app,
        &[
            format!(
                "UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = {}",
                at("edited", 2)
            ),
            format!("DELETE FROM audit_events WHERE event_id = {}", at("removed", 2)),
            format!("DELETE FROM audit_events WHERE event_id = {}", at("truncated", 4)),
            format!(
                "UPDATE audit_events SET chain_seq = 99 WHERE event_id = {}",
                at("reordered", 1)
            ),
            format!(
                "UPDATE audit_events SET chain_seq = 2 WHERE event_id = {}",
                at("reordered", 2)
            ),
            format!(
                "UPDATE audit_events SET chain_seq = 3 WHERE event_id = {}",
                at("reordered", 1)
            ),
            format!(
                "INSERT INTO audit_events (event_id, {copy_columns}) SELECT {forged_literal}, {copy_columns} \
                 FROM audit_events WHERE event_id = {}",
                at("forged", 2)
            ),
        ],
    )
    .await;

    let expect = |case: &'static str, index: usize, kind: &'static str| (case, index, kind);
    for (case, index, kind) in [
        expect("edited", 2, "CONTENT_CHANGED"),
        expect("removed", 3, "MISSING_EVENTS"),
        expect("truncated", 3, "MISSING_TAIL"),
        expect("reordered", 2, "LINK_BROKEN"),
    ] {
        let report = verify(&app, &format!("rr-{case}")).await;
        assert_eq!(report["valid"], false, "{case}: {}", brief(&report));
        assert_eq!(report["firstBreak"]["kind"], kind, "{case}: {}", brief(&report));
        assert_eq!(
            report["firstBreak"]["eventId"],
            chains[case][index].as_str(),
            "{case}: {}",
            brief(&report)
        );
    }
    let report = verify(&app, "rr-forged").await;
    assert_eq!(report["valid"], false);
    let kinds: Vec<&Value> = report["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["kind"])
        .collect();
    assert!(kinds.contains(&&json!("DUPLICATE_POSITION")), "{}", brief(&report));

    // REST reports the same, with kubernaut's shape.
    let (status, _, body) = app
        .rest(
            "POST",
            "/api/v1/audit/verify-chain",
            Some(json!({"correlation_id": "rr-edited"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_valid"], false);
    let tampered = &body["tampered_events"][0];
    assert_eq!(tampered["event_id"], chains["edited"][2].as_str());
    assert!(tampered["event_timestamp"].is_string());
    assert_ne!(tampered["expected_hash"], tampered["actual_hash"]);
    assert!(
        tampered["message"].as_str().unwrap().contains("changed"),
        "{}",
        brief(&body)
    );
}
