//! Relay object identification: global ids on events, holds and retention runs; `node` and
//! `nodes` refetch them, in order, batched, with null for what no longer exists.

use auditgraph::ops::retention::{self, RetentionOptions};
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

const NODES: &str = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id \
    ... on AuditEvent { eventId correlationId parent { id eventId } } \
    ... on LegalHold { correlationId reason } \
    ... on RetentionRun { runId dryRun } } }";

async fn objects_are_refetched_by_global_id(app: TestApp) {
    let root = app.create(json!({"correlationId": "node-1"})).await;
    let child = app
        .create(json!({"correlationId": "node-1", "parentEventId": root["eventId"]}))
        .await;
    app.ok(
        "mutation { placeLegalHold(correlationId: \"node-1\", reason: \"case 7\") { hold { correlationId } } }",
        json!({}),
    )
    .await;
    retention::run(
        &app.store,
        &RetentionOptions {
            dry_run: true,
            ..RetentionOptions::default()
        },
        "test-runner",
    )
    .await
    .expect("a dry run");

    let ids = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { id parent { id } } legalHolds { id } \
             retentionRuns { id runId } }",
            json!({"id": child["eventId"]}),
        )
        .await;
    let event_id = ids["auditEvent"]["id"].as_str().unwrap().to_string();
    let root_id = ids["auditEvent"]["parent"]["id"].as_str().unwrap().to_string();
    let hold_id = ids["legalHolds"][0]["id"].as_str().unwrap().to_string();
    let run_id = ids["retentionRuns"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(
        event_id,
        child["eventId"].as_str().unwrap(),
        "the global id is not the event's UUID"
    );
    let again = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { id } }",
            json!({"id": child["eventId"]}),
        )
        .await;
    assert_eq!(again["auditEvent"]["id"], event_id.as_str(), "stable across requests");

    // Events, a hold and a run, in the order asked, with null for an event that does not exist.
    let missing = auditgraph::domain::global_id::GlobalId::AuditEvent(auditgraph::domain::EventKey {
        id: uuid::Uuid::now_v7(),
        date: chrono::Utc::now().date_naive(),
    })
    .encode();
    let before = app.store.statements_executed();
    let nodes = app
        .ok(NODES, json!({"ids": [run_id, event_id, missing, hold_id, root_id]}))
        .await["nodes"]
        .clone();
    let statements = app.store.statements_executed() - before;
    let kinds: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["__typename"].as_str().unwrap_or("null"))
        .collect();
    assert_eq!(kinds, ["RetentionRun", "AuditEvent", "null", "LegalHold", "AuditEvent"]);
    assert_eq!(nodes[0]["runId"], ids["retentionRuns"][0]["runId"]);
    assert_eq!(nodes[0]["dryRun"], true);
    assert_eq!(nodes[1]["eventId"], child["eventId"]);
    assert_eq!(nodes[1]["parent"]["eventId"], root["eventId"]);
    assert_eq!(nodes[2], Value::Null);
    assert_eq!(nodes[3]["correlationId"], "node-1");
    assert_eq!(nodes[3]["reason"], "case 7");
    assert_eq!(nodes[4]["eventId"], root["eventId"]);
    assert!(
        statements <= 4,
        "the events in one statement, the hold and the run in one each, the parent in one: {statements}"
    );

    // `node` alone, and the same object through `nodes`.
    let one = app
        .ok(
            "query($id: ID!) { node(id: $id) { id ... on AuditEvent { eventId } } }",
            json!({"id": event_id}),
        )
        .await;
    assert_eq!(one["node"]["eventId"], child["eventId"]);
    assert_eq!(one["node"]["id"], event_id.as_str());

    // Ids this server did not issue are refused, naming the argument.
    for (query, variables, argument) in [
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({"id": child["eventId"]}),
            "id",
        ),
        (
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({"ids": [event_id, "x"]}),
            "ids",
        ),
    ] {
        let error = app.error(query, variables).await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
        assert_eq!(error["extensions"]["argument"], argument, "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("is not an id this server issued"),
            "{error}"
        );
    }
    let too_many: Vec<String> = (0..1001).map(|_| event_id.clone()).collect();
    let error = app
        .error(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({"ids": too_many}),
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("at most 1000 ids"),
        "{error}"
    );
}

both_engines!(objects_are_refetched_by_global_id);
