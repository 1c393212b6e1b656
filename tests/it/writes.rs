//! createAuditEvent: validation, parent resolution, idempotency.

use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{CREATE, TestApp, event_input, graphql_through};

both_engines!(
    a_parent_child_grandchild_chain_reads_back_with_derived_parent_dates,
    a_client_supplied_parent_event_date_is_ignored,
    an_unknown_parent_is_rejected_and_nothing_is_written,
    validation_errors_name_the_field_and_write_nothing,
    a_retry_with_the_same_event_id_and_content_returns_the_stored_event,
    reusing_an_event_id_with_different_content_is_a_conflict,
    concurrent_retries_of_one_event_id_store_one_event,
    a_child_stamped_slightly_before_its_parent_is_accepted,
    a_child_stamped_days_before_its_parent_is_rejected,
    a_graphql_batch_is_atomic_and_links_parents_within_it,
    a_single_event_with_a_parent_takes_a_fixed_number_of_statements,
    a_parent_this_process_has_not_seen_is_read_and_checked_by_the_write,
    concurrent_single_writes_commit_together_and_a_refused_one_fails_alone,
    a_batch_is_one_statement_below_parents_this_process_has_not_seen,
);

async fn a_parent_child_grandchild_chain_reads_back_with_derived_parent_dates(app: TestApp) {
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let parent = app
        .create(json!({"eventTimestamp": yesterday, "eventType": "gateway.signal.received"}))
        .await;
    let child = app
        .create(
            json!({"parentEventId": parent["eventId"], "eventType": "orchestrator.lifecycle.started",
                       "eventCategory": "orchestration"}),
        )
        .await;
    let grandchild = app
        .create(
            json!({"parentEventId": child["eventId"], "eventType": "workflowexecution.workflow.started",
                       "eventCategory": "workflowexecution"}),
        )
        .await;
    let id = parent["eventId"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().get_version_num(),
        7,
        "server ids are UUIDv7"
    );
    assert_eq!(child["parentEventDate"], parent["eventDate"]);
    assert_eq!(grandchild["parentEventDate"], child["eventDate"]);

    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventId eventType parentEventId parentEventDate \
               children { totalCount edges { node { eventId eventDate parentEventId parentEventDate \
                 children { edges { node { eventId parentEventDate eventType \
                   parent { eventId parent { eventId parent { eventId } } } } } } } } } } }",
            json!({"id": id}),
        )
        .await;
    let root = &data["auditEvent"];
    assert_eq!(root["parentEventId"], Value::Null);
    assert_eq!(root["parentEventDate"], Value::Null);
    assert_eq!(root["children"]["totalCount"], 1);
    let c = &root["children"]["edges"][0]["node"];
    assert_eq!(c["eventId"], child["eventId"]);
    assert_eq!(c["parentEventId"], parent["eventId"]);
    assert_eq!(c["parentEventDate"], parent["eventDate"]);
    let g = &c["children"]["edges"][0]["node"];
    assert_eq!(g["eventId"], grandchild["eventId"]);
    assert_eq!(g["parentEventDate"], c["eventDate"]);
    assert_eq!(g["eventType"], "workflowexecution.workflow.started");
    assert_eq!(g["parent"]["eventId"], child["eventId"]);
    assert_eq!(g["parent"]["parent"]["eventId"], parent["eventId"]);
    assert_eq!(g["parent"]["parent"]["parent"], Value::Null);
}

async fn a_client_supplied_parent_event_date_is_ignored(app: TestApp) {
    let parent = app.create(json!({})).await;
    let child = app
        .create(json!({"parentEventId": parent["eventId"], "parentEventDate": "2001-01-01"}))
        .await;
    assert_eq!(child["parentEventDate"], parent["eventDate"]);
}

async fn an_unknown_parent_is_rejected_and_nothing_is_written(app: TestApp) {
    let missing = uuid::Uuid::now_v7().to_string();
    let error = app
        .error(CREATE, json!({"input": event_input(json!({"parentEventId": missing}))}))
        .await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(error["extensions"]["field"], "parentEventId");
    assert!(error["message"].as_str().unwrap().contains(&missing), "{error}");
    assert_eq!(app.row_count().await, 0);
}

async fn validation_errors_name_the_field_and_write_nothing(app: TestApp) {
    let too_deep = (0..11).fold(json!(1), |inner, _| json!({ "n": inner }));
    let cases = [
        (json!({"eventType": ""}), "eventType"),
        (json!({"eventType": "x".repeat(101)}), "eventType"),
        (json!({"eventCategory": "Gateway"}), "eventCategory"),
        (json!({"eventAction": ""}), "eventAction"),
        (json!({"eventOutcome": "done"}), "eventOutcome"),
        (json!({"correlationId": ""}), "correlationId"),
        (json!({"correlationId": "c".repeat(256)}), "correlationId"),
        (json!({"eventData": [1, 2, 3]}), "eventData"),
        (json!({"eventData": too_deep}), "eventData"),
        (json!({"eventData": {"blob": "x".repeat(300 * 1024)}}), "eventData"),
        (json!({"eventMetadata": "text"}), "eventMetadata"),
        (json!({"retentionDays": 0}), "retentionDays"),
        (json!({"retentionDays": 2556}), "retentionDays"),
        (json!({"durationMs": -5}), "durationMs"),
        (json!({"actorIp": "1".repeat(46)}), "actorIp"),
        (json!({"namespace": "n".repeat(254)}), "namespace"),
        (json!({"severity": "s".repeat(21)}), "severity"),
        (
            json!({"eventTimestamp": (chrono::Utc::now() + chrono::Duration::minutes(61)).to_rfc3339()}),
            "eventTimestamp",
        ),
        (
            json!({"eventTimestamp": (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339()}),
            "eventTimestamp",
        ),
    ];
    for (overrides, field) in cases {
        let error = app
            .error(CREATE, json!({"input": event_input(overrides.clone())}))
            .await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{overrides}: {error}");
        assert_eq!(error["extensions"]["field"], field, "{overrides}: {error}");
        assert!(error["message"].as_str().unwrap().starts_with(field), "{error}");
    }
    assert_eq!(app.row_count().await, 0);
}

async fn a_retry_with_the_same_event_id_and_content_returns_the_stored_event(app: TestApp) {
    let id = uuid::Uuid::new_v4().to_string();
    let first = app
        .create(json!({"eventId": id, "eventData": {"a": 1, "b": [true, null]}}))
        .await;
    // No timestamp given: the retry is not compared on it, and gets the stored one back.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let retry = app
        .create(json!({"eventId": id, "eventData": {"b": [true, null], "a": 1}}))
        .await;
    assert_eq!(retry, first);
    assert_eq!(first["eventId"], id.as_str());
    assert_eq!(app.row_count().await, 1);

    let ts = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let other = uuid::Uuid::new_v4().to_string();
    let with_ts = app.create(json!({"eventId": other, "eventTimestamp": ts})).await;
    assert_eq!(
        app.create(json!({"eventId": other, "eventTimestamp": ts})).await,
        with_ts
    );
    assert_eq!(app.row_count().await, 2);
}

async fn reusing_an_event_id_with_different_content_is_a_conflict(app: TestApp) {
    let id = uuid::Uuid::new_v4().to_string();
    app.create(json!({"eventId": id})).await;
    let error = app
        .error(
            CREATE,
            json!({"input": event_input(json!({"eventId": id, "eventOutcome": "failure"}))}),
        )
        .await;
    assert_eq!(error["extensions"]["code"], "CONFLICT", "{error}");
    let ts = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let error = app
        .error(
            CREATE,
            json!({"input": event_input(json!({"eventId": id, "eventTimestamp": ts}))}),
        )
        .await;
    assert_eq!(
        error["extensions"]["code"], "CONFLICT",
        "a different timestamp (another day) is other content: {error}"
    );
    assert_eq!(app.row_count().await, 1);
}

async fn concurrent_retries_of_one_event_id_store_one_event(app: TestApp) {
    let id = uuid::Uuid::new_v4().to_string();
    let ts = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            let (id, ts) = (id.clone(), ts.clone());
            tokio::spawn(async move { app.create(json!({"eventId": id, "eventTimestamp": ts})).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.row_count().await, 1);
}

async fn a_child_stamped_slightly_before_its_parent_is_accepted(app: TestApp) {
    let now = chrono::Utc::now();
    let parent = app.create(json!({"eventTimestamp": now.to_rfc3339()})).await;
    let child = app
        .create(json!({"parentEventId": parent["eventId"],
                       "eventTimestamp": (now - chrono::Duration::seconds(2)).to_rfc3339()}))
        .await;
    assert_eq!(child["parentEventId"], parent["eventId"]);
}

async fn a_child_stamped_days_before_its_parent_is_rejected(app: TestApp) {
    let now = chrono::Utc::now();
    let parent = app.create(json!({"eventTimestamp": now.to_rfc3339()})).await;
    let early = (now - chrono::Duration::days(3)).to_rfc3339();
    let error = app
        .error(
            CREATE,
            json!({"input": event_input(json!({"parentEventId": parent["eventId"], "eventTimestamp": early}))}),
        )
        .await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert_eq!(error["extensions"]["field"], "eventTimestamp", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("before its parent"),
        "{error}"
    );
    assert_eq!(app.row_count().await, 1);
}

const BATCH: &str = "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { \
    eventId eventDate parentEventId parentEventDate correlationId } }";

async fn a_graphql_batch_is_atomic_and_links_parents_within_it(app: TestApp) {
    let root = uuid::Uuid::new_v4().to_string();
    let child = uuid::Uuid::new_v4().to_string();
    let inputs = json!([
        event_input(json!({"eventId": root, "correlationId": "rr-gb"})),
        event_input(json!({"eventId": child, "parentEventId": root, "correlationId": "rr-gb"})),
        event_input(json!({"parentEventId": child, "correlationId": "rr-gb"})),
    ]);
    let data = app.ok(BATCH, json!({"inputs": inputs})).await;
    let stored = data["createAuditEvents"].as_array().unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["eventId"], root.as_str());
    assert_eq!(stored[1]["parentEventDate"], stored[0]["eventDate"]);
    assert_eq!(stored[2]["parentEventId"], child.as_str());
    assert_eq!(app.row_count().await, 3);

    // Every item is validated first; errors carry the index; nothing is written.
    let bad = json!([
        event_input(json!({})),
        event_input(json!({"eventOutcome": "nope"})),
        event_input(json!({})),
        event_input(json!({"eventType": ""})),
    ]);
    let body = app.graphql(BATCH, json!({"inputs": bad})).await;
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(error["extensions"]["index"], 1);
    assert_eq!(error["extensions"]["field"], "eventOutcome");
    assert_eq!(error["extensions"]["fieldErrors"][1]["index"], 3, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("inputs[3].eventType"),
        "{error}"
    );

    let later = json!([
        event_input(json!({"parentEventId": root})),
        event_input(json!({"parentEventId": uuid::Uuid::now_v7()})),
    ]);
    let error = app.error(BATCH, json!({"inputs": later})).await;
    assert_eq!(error["extensions"]["index"], 1, "{error}");
    assert_eq!(error["extensions"]["field"], "parentEventId");
    let forward = uuid::Uuid::new_v4().to_string();
    let order = json!([
        event_input(json!({"parentEventId": forward})),
        event_input(json!({"eventId": forward})),
    ]);
    let error = app.error(BATCH, json!({"inputs": order})).await;
    assert!(error["message"].as_str().unwrap().contains("later"), "{error}");
    let error = app.error(BATCH, json!({"inputs": []})).await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(app.row_count().await, 3, "failed batches wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_insert_statement_is_split_and_stays_atomic() {
    use crate::helpers::Engine;
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(app) = TestApp::with_config(engine, |c| c.max_batch_size = 4000).await else {
            continue;
        };
        // 40 columns × 4,000 rows is far beyond both engines' bind-parameter limits. Ids the
        // client chose take the transactional path, which splits the rows into several INSERTs;
        // on PostgreSQL ids the server chooses go in one statement of one array per column.
        let inputs: Vec<_> = (0..4000)
            .map(|i| {
                event_input(
                    json!({"correlationId": format!("rr-big-{}", i % 7), "eventId": uuid::Uuid::now_v7().to_string()}),
                )
            })
            .collect();
        let data = app.ok(BATCH, json!({"inputs": inputs})).await;
        assert_eq!(data["createAuditEvents"].as_array().unwrap().len(), 4000);
        let inputs: Vec<_> = (0..4000)
            .map(|i| event_input(json!({"correlationId": format!("rr-big-{}", i % 7)})))
            .collect();
        let data = app.ok(BATCH, json!({"inputs": inputs})).await;
        assert_eq!(data["createAuditEvents"].as_array().unwrap().len(), 4000);
        assert_eq!(app.row_count().await, 8000);
        for c in 0..7 {
            let report = verify_chain(&app, &format!("rr-big-{c}")).await;
            assert_eq!(report["valid"], true, "rr-big-{c}: {report}");
        }
        let mut inputs: Vec<_> = (0..4000).map(|_| event_input(json!({}))).collect();
        inputs[3999] = event_input(json!({"parentEventId": uuid::Uuid::now_v7()}));
        let error = app.error(BATCH, json!({"inputs": inputs})).await;
        assert_eq!(error["extensions"]["index"], 3999);
        assert_eq!(
            app.row_count().await,
            8000,
            "on {engine:?} the failed batch left nothing behind"
        );
    }
}

/// The common write (one event, server-chosen id) takes a fixed number of statements, whatever
/// the size of the store: on PostgreSQL one, which reads the parent's date if this process has
/// not seen it, inserts the row and moves the chain's head.
async fn a_single_event_with_a_parent_takes_a_fixed_number_of_statements(app: TestApp) {
    // The fewest statements of three writes (the sequencer runs statements of its own meanwhile).
    async fn fewest(app: &TestApp, input: impl Fn(usize) -> Value) -> u64 {
        let mut fewest = u64::MAX;
        for n in 0..3 {
            let before = app.store.statements_executed();
            app.create(input(n)).await;
            fewest = fewest.min(app.store.statements_executed() - before);
        }
        fewest
    }
    let parent = app.create(json!({"correlationId": "fixed"})).await;
    // A child of an event this process wrote, in a chain it moved last: one statement.
    let known = fewest(
        &app,
        |_| json!({"correlationId": "fixed", "parentEventId": parent["eventId"]}),
    )
    .await;
    // Children of events stored by another process (this one has not seen them), each in a new
    // chain.
    async fn fewest_below_strangers(app: &TestApp, id: fn() -> uuid::Uuid, chain: &str) -> u64 {
        let strangers: Vec<_> = (0..3)
            .map(|_| crate::helpers::row(id(), chrono::Utc::now(), None, chain))
            .collect();
        crate::helpers::insert_rows(&app.store, &strangers).await;
        fewest(
            app,
            |n| json!({"correlationId": format!("{chain}-{n}"), "parentEventId": strangers[n].event_id.to_string()}),
        )
        .await
    }
    // The write takes the parent's date from its UUIDv7 id (the foreign key checks it).
    let unseen = fewest_below_strangers(&app, uuid::Uuid::now_v7, "fresh").await;
    // Parents whose ids tell no date (UUIDv4): the write reads it, in the same statement.
    let read = fewest_below_strangers(&app, uuid::Uuid::new_v4, "dateless").await;
    if app.store.backend() == sea_orm::DatabaseBackend::Postgres {
        assert_eq!(
            read, 1,
            "a write of a new chain below a parent whose id tells no date took {read} statements"
        );
        assert_eq!(
            known, 1,
            "a write beside what this process knows took {known} statements"
        );
        assert_eq!(
            unseen, 1,
            "a write of a new chain below an unseen parent took {unseen} statements"
        );
    }
    let child = app
        .create(json!({"correlationId": "fixed", "parentEventId": parent["eventId"]}))
        .await;
    assert_eq!(child["parentEventDate"], parent["eventDate"]);
    let stored = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { parent { eventId } parentEventDate } }",
            json!({"id": child["eventId"]}),
        )
        .await;
    assert_eq!(stored["auditEvent"]["parent"]["eventId"], parent["eventId"]);
    assert_eq!(stored["auditEvent"]["parentEventDate"], parent["eventDate"]);
}

/// Parents stored by another process: the write finds their dates (on PostgreSQL from a UUIDv7
/// id, checked by the foreign key, or read by the statement or before it), answers with them,
/// takes the newest of an id stored on two days, and refuses a child dated days before its parent
/// or naming a parent that does not exist, alone among concurrent writes that go in.
async fn a_parent_this_process_has_not_seen_is_read_and_checked_by_the_write(app: TestApp) {
    let now = chrono::Utc::now();
    let yesterday = now - chrono::Duration::days(1);
    // Ids made now, dated yesterday (the date an id tells is wrong for them), and one whose id
    // was made yesterday.
    let made_yesterday =
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(yesterday.timestamp_millis()).unwrap(), &[7; 10])
            .into_uuid();
    let ids = [
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        made_yesterday,
        uuid::Uuid::new_v4(),
    ];
    let mut strangers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| crate::helpers::row(*id, yesterday, None, &format!("stranger-{n}")))
        .collect();
    // An id made now, stored five days ago: a child four days old cannot follow the date its id
    // tells, so the date is read.
    let five_days_ago = now - chrono::Duration::days(5);
    strangers.push(crate::helpers::row(
        uuid::Uuid::now_v7(),
        five_days_ago,
        None,
        "stranger-4",
    ));
    // Legacy data holding one id on two days, the id made on the older one: the parent is the
    // newer.
    let made_five_days_ago =
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(five_days_ago.timestamp_millis()).unwrap(), &[5; 10])
            .into_uuid();
    strangers.push(crate::helpers::row(
        made_five_days_ago,
        five_days_ago,
        None,
        "stranger-5",
    ));
    strangers.push(crate::helpers::row(made_five_days_ago, yesterday, None, "stranger-5"));
    crate::helpers::insert_rows(&app.store, &strangers).await;
    let before = app.row_count().await;
    let missing = uuid::Uuid::now_v7().to_string();
    let early = (yesterday - chrono::Duration::days(3)).to_rfc3339();
    // Concurrent writes, so that some share a group: good children of each stranger, one dated
    // days before its parent, one naming a parent that does not exist.
    let inputs = [
        json!({"correlationId": "unseen-a", "parentEventId": strangers[0].event_id.to_string()}),
        json!({"correlationId": "unseen-b", "parentEventId": strangers[1].event_id.to_string(), "eventTimestamp": early}),
        json!({"correlationId": "unseen-c", "parentEventId": missing}),
        json!({"correlationId": "unseen-d", "parentEventId": strangers[2].event_id.to_string()}),
        json!({"correlationId": "unseen-e", "parentEventId": strangers[1].event_id.to_string()}),
        json!({"correlationId": "unseen-f", "parentEventId": strangers[3].event_id.to_string()}),
        json!({"correlationId": "unseen-g", "parentEventId": strangers[4].event_id.to_string(),
               "eventTimestamp": (now - chrono::Duration::days(4)).to_rfc3339()}),
        json!({"correlationId": "unseen-h", "parentEventId": made_five_days_ago.to_string()}),
    ];
    let answers = futures_util::future::join_all(
        inputs
            .iter()
            .map(|input| app.graphql(CREATE, json!({"input": event_input(input.clone())}))),
    )
    .await;
    let created = |at: usize| answers[at]["data"]["createAuditEvent"].clone();
    let error = |at: usize| answers[at]["errors"][0].clone();
    let accepted = [
        (0, &strangers[0]),
        (3, &strangers[2]),
        (4, &strangers[1]),
        (5, &strangers[3]),
        (6, &strangers[4]),
        (7, &strangers[6]),
    ];
    for (at, parent) in accepted {
        assert!(answers[at].get("errors").is_none(), "{at}: {}", answers[at]);
        assert_eq!(created(at)["parentEventId"], parent.event_id.to_string());
        assert_eq!(created(at)["parentEventDate"], parent.event_date.to_string(), "{at}");
    }
    assert_eq!(error(1)["extensions"]["code"], "BAD_USER_INPUT", "{}", answers[1]);
    assert_eq!(error(1)["extensions"]["field"], "eventTimestamp", "{}", answers[1]);
    assert!(
        error(1)["message"].as_str().unwrap().contains("before its parent"),
        "{}",
        answers[1]
    );
    assert_eq!(error(2)["extensions"]["code"], "BAD_USER_INPUT", "{}", answers[2]);
    assert_eq!(error(2)["extensions"]["field"], "parentEventId", "{}", answers[2]);
    assert!(
        error(2)["message"].as_str().unwrap().contains(&missing),
        "{}",
        answers[2]
    );
    assert_eq!(
        app.row_count().await - before,
        accepted.len() as i64,
        "exactly the accepted events are stored"
    );
    let stored = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { parent { eventId } parentEventDate } }",
            json!({"id": created(0)["eventId"]}),
        )
        .await;
    assert_eq!(
        stored["auditEvent"]["parent"]["eventId"],
        strangers[0].event_id.to_string()
    );
    assert_eq!(
        stored["auditEvent"]["parentEventDate"],
        strangers[0].event_date.to_string()
    );
}

/// A rule of the database that refuses some rows: validation cannot know it, so such a row
/// reaches a group commit and makes the database refuse the group.
async fn refuse_rows_of_actor(app: &TestApp, actor: &str) {
    use sea_orm::ConnectionTrait;
    let statements: Vec<String> = match app.store.backend() {
        sea_orm::DatabaseBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION test_refuse_actor() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.actor_id = '{actor}' THEN RAISE EXCEPTION 'refused by a rule' USING ERRCODE = '23514'; END IF; \
                 RETURN NEW; END $$"
            ),
            "CREATE TRIGGER test_refuse_actor BEFORE INSERT ON audit_events FOR EACH ROW \
             EXECUTE FUNCTION test_refuse_actor()"
                .to_string(),
        ],
        _ => vec![format!(
            "CREATE TRIGGER test_refuse_actor BEFORE INSERT ON audit_events WHEN NEW.actor_id = '{actor}' \
             BEGIN SELECT RAISE(ABORT, 'refused by a rule'); END"
        )],
    };
    for sql in statements {
        app.store.db().execute_unprepared(&sql).await.expect("rule installed");
    }
}

/// The `db_write_group_events` histogram: (groups committed, groups of one event).
async fn group_counts(app: &TestApp) -> (u64, u64) {
    let (status, _, body) = app.rest("GET", "/metrics", None, &[]).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let text = body.as_str().expect("metrics text").to_string();
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in the metrics")) as u64
    };
    (
        value("db_write_group_events_count "),
        value("db_write_group_events_bucket{le=\"1\"} "),
    )
}

async fn concurrent_single_writes_commit_together_and_a_refused_one_fails_alone(app: TestApp) {
    refuse_rows_of_actor(&app, "refused-by-rule").await;
    let parent = app.create(json!({"correlationId": "gc-parent"})).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let before = app.row_count().await;
    let (groups_before, ones_before) = group_counts(&app).await;
    // 96 writers at once over 4 correlations: every 12th is refused by the database's rule, every
    // 16th names a parent that does not exist, every 3rd names a stored parent.
    let mut tasks = Vec::new();
    for n in 0..96usize {
        let mut input = json!({"correlationId": format!("gc-{}", n % 4), "eventData": {"n": n}});
        if n % 12 == 5 {
            input["actorId"] = json!("refused-by-rule");
        }
        if n % 16 == 7 {
            input["parentEventId"] = json!(unknown);
        } else if n % 3 == 0 {
            input["parentEventId"] = parent["eventId"].clone();
        }
        let router = app.router.clone();
        tasks.push(tokio::spawn(async move {
            let body = graphql_through(router, CREATE, json!({"input": event_input(input)})).await;
            (n, body)
        }));
    }
    let mut written = 0;
    for task in tasks {
        let (n, body) = task.await.unwrap();
        if n % 16 == 7 {
            assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{n}: {body}");
            assert_eq!(body["errors"][0]["extensions"]["field"], "parentEventId", "{n}: {body}");
        } else if n % 12 == 5 {
            assert!(
                body["errors"][0]["extensions"]["code"].is_string(),
                "{n} is refused: {body}"
            );
            assert!(body["data"].is_null(), "{n}: {body}");
        } else {
            assert!(body.get("errors").is_none(), "{n} must be written: {body}");
            assert_eq!(body["data"]["createAuditEvent"]["eventData"]["n"], n);
            written += 1;
        }
    }
    assert_eq!(written, 96 - 8 - 6);
    assert_eq!(
        app.row_count().await - before,
        written,
        "exactly the accepted events are stored"
    );
    let (groups, ones) = group_counts(&app).await;
    assert!(
        groups - groups_before > ones - ones_before,
        "some writes were committed together: {} groups, {} of one event",
        groups - groups_before,
        ones - ones_before
    );
    for c in 0..4 {
        let report = verify_chain(&app, &format!("gc-{c}")).await;
        assert_eq!(report["valid"], true, "gc-{c}: {report}");
    }
}

/// A batch whose ids the server chooses: on PostgreSQL one statement, which takes the dates of
/// parents stored by another process from their UUIDv7 ids or reads them; the parent named by a
/// legacy id held on two days is its newer copy, whichever path writes the batch.
async fn a_batch_is_one_statement_below_parents_this_process_has_not_seen(app: TestApp) {
    let now = chrono::Utc::now();
    let yesterday = now - chrono::Duration::days(1);
    let five_days_ago = now - chrono::Duration::days(5);
    // Per attempt: a parent whose UUIDv7 id was made the day it is stored on, one whose id tells
    // no date, and a legacy id (made five days ago) held on two days.
    let mut strangers = Vec::new();
    for attempt in 0..5u8 {
        let chain = format!("batch-stranger-{attempt}");
        let legacy = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(five_days_ago.timestamp_millis()).unwrap(),
            &[attempt; 10],
        )
        .into_uuid();
        let made_yesterday = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(yesterday.timestamp_millis()).unwrap(),
            &[attempt + 100; 10],
        )
        .into_uuid();
        strangers.push([
            crate::helpers::row(made_yesterday, yesterday, None, &chain),
            crate::helpers::row(uuid::Uuid::new_v4(), yesterday, None, &chain),
            crate::helpers::row(legacy, five_days_ago, None, &chain),
            crate::helpers::row(legacy, yesterday, None, &chain),
        ]);
    }
    let rows: Vec<_> = strangers.iter().flatten().cloned().collect();
    app.insert_rows(&rows).await;

    let mut fewest = u64::MAX;
    for (attempt, parents) in strangers.iter().enumerate() {
        let chain = |n: usize| format!("batch-{attempt}-{n}");
        let child = |n: usize, parent: &auditgraph::entity::audit_event::Model| {
            event_input(json!({"correlationId": chain(n), "parentEventId": parent.event_id.to_string()}))
        };
        let mut inputs = vec![
            child(0, &parents[0]),
            child(1, &parents[1]),
            event_input(json!({"correlationId": chain(0)})),
        ];
        // The legacy parent, through the transactional path (a client-chosen id) and through the
        // statement, which finds the guess from its id wrong and links again; left out of the
        // batches whose statements are counted.
        match attempt {
            0 => {
                inputs.push(child(2, &parents[2]));
                inputs.push(event_input(json!({"eventId": uuid::Uuid::new_v4().to_string()})));
            }
            1 => inputs.push(child(2, &parents[2])),
            _ => {}
        }
        let before = app.store.statements_executed();
        let data = app.ok(BATCH, json!({"inputs": inputs})).await;
        if attempt > 1 {
            fewest = fewest.min(app.store.statements_executed() - before);
        }
        let stored = data["createAuditEvents"].as_array().unwrap();
        assert_eq!(stored.len(), inputs.len());
        assert_eq!(stored[0]["parentEventDate"], parents[0].event_date.to_string());
        assert_eq!(stored[1]["parentEventDate"], parents[1].event_date.to_string());
        assert!(stored[2]["parentEventDate"].is_null());
        if attempt < 2 {
            assert_eq!(
                stored[3]["parentEventDate"],
                parents[3].event_date.to_string(),
                "attempt {attempt}: the newer copy of an id stored on two days"
            );
        }
    }
    if app.store.backend() == sea_orm::DatabaseBackend::Postgres {
        assert_eq!(fewest, 1, "a batch below unseen parents took {fewest} statements");
    }

    // A parent whose id tells no date, stored today, and a child dated three days before it:
    // the error names the child, and nothing of its batch is written.
    let today = crate::helpers::row(uuid::Uuid::new_v4(), now, None, "batch-late-parent");
    app.insert_rows(std::slice::from_ref(&today)).await;
    let before = app.row_count().await;
    let early = (now - chrono::Duration::days(3)).to_rfc3339();
    let inputs = json!([
        event_input(json!({"correlationId": "batch-late-0"})),
        event_input(
            json!({"correlationId": "batch-late-1", "parentEventId": today.event_id.to_string(),
                           "eventTimestamp": early})
        ),
    ]);
    let error = app.error(BATCH, json!({"inputs": inputs})).await;
    assert_eq!(error["extensions"]["index"], 1, "{error}");
    assert_eq!(error["extensions"]["field"], "eventTimestamp", "{error}");
    assert_eq!(app.row_count().await, before, "the refused batch wrote nothing");
}

/// Two server processes write batches into the same chains, each linking from the heads it
/// moved last: a head the other moved meanwhile makes the write link again, and every chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_two_processes_into_the_same_chains_link_again_and_verify() {
    let Some(app) = TestApp::new(crate::helpers::Engine::Postgres).await else {
        return;
    };
    let mut config = auditgraph::config::Config::for_database(&app.url);
    config.log_key_file = app.keys.path().join("log.key");
    let second = auditgraph::store::Store::connect(&config.store_options().unwrap())
        .await
        .unwrap();
    let other = auditgraph::app(second, &config).unwrap();
    let inputs = |round: usize| -> Vec<Value> {
        (0..6)
            .map(|n| {
                event_input(
                    json!({"correlationId": format!("shared-{}", n % 2), "eventData": {"round": round, "n": n}}),
                )
            })
            .collect()
    };
    for round in 0..6 {
        let router = if round % 2 == 0 {
            app.router.clone()
        } else {
            other.clone()
        };
        let body = graphql_through(router, BATCH, json!({"inputs": inputs(round)})).await;
        assert!(body.get("errors").is_none(), "round {round}: {body}");
        assert_eq!(body["data"]["createAuditEvents"].as_array().unwrap().len(), 6);
    }
    for c in 0..2 {
        let report = verify_chain(&app, &format!("shared-{c}")).await;
        assert_eq!(report["valid"], true, "shared-{c}: {report}");
        assert_eq!(report["verifiedEvents"], 18, "shared-{c}: {report}");
    }
}

/// `verifyChain` of one correlation: whether it is valid and how many events it verified.
async fn verify_chain(app: &TestApp, correlation_id: &str) -> Value {
    app.ok(
        "query($c: String!) { verifyChain(correlationId: $c) { valid verifiedEvents } }",
        json!({"c": correlation_id}),
    )
    .await["verifyChain"]
        .clone()
}
