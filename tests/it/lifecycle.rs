//! Record lifecycle: legal holds (GraphQL and kubernaut's REST), retention that purges trees
//! leaf-first and drops whole months, never a held or unexpired event, resumable and beside live
//! writes, and verification that tells a purge from a removal.

use std::io::Write;
use std::sync::Arc;

use auditgraph::auth::keys::create_key;
use auditgraph::auth::{PrincipalKind, Role};
use auditgraph::ops::import::{self, ImportOptions};
use auditgraph::ops::log::{LogSigner, Publisher};
use auditgraph::ops::retention::{self, Outcome, RetentionOptions};
use auditgraph::ops::verify;
use auditgraph::store::{Claim, RunStatus};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::{TestApp, as_attacker, brief, id_literal};

both_engines!(
    a_hold_covers_the_correlation_and_its_later_events_and_is_recorded_in_it,
    legal_holds_over_rest_answer_in_kubernauts_shapes,
    nothing_deletes_a_held_or_unexpired_event,
    retention_purges_trees_leaf_first_and_drops_whole_months,
    a_dry_run_reports_what_the_run_then_does,
    a_paused_run_is_resumed_and_one_runner_works_at_a_time,
    retention_runs_beside_live_writes,
    verify_tells_purged_events_from_removed_ones,
    two_servers_with_a_schedule_run_retention_once_at_a_time,
);

const PLACE: &str = "mutation($c: String!, $r: String!) { placeLegalHold(correlationId: $c, reason: $r) { \
    hold { correlationId reason placedBy placedAt eventsHeld } \
    record { eventId eventType eventCategory actorId correlationId eventData legalHold legalHoldReason } } }";
const RELEASE: &str = "mutation($c: String!, $r: String!) { releaseLegalHold(correlationId: $c, reason: $r) { \
    correlationId eventsReleased releasedBy releasedAt record { eventId eventType legalHold } } }";
const HOLDS: &str = "{ legalHolds { correlationId reason placedBy eventsHeld } }";
const EVENT: &str =
    "query($id: UUID!) { auditEvent(eventId: $id) { legalHold legalHoldReason legalHoldPlacedBy legalHoldPlacedAt } }";
const VERIFY: &str = "query($c: String!) { verifyChain(correlationId: $c) { valid totalEvents verifiedEvents \
    purgedEvents purgedByRuns breaks { kind position message } } }";

async fn event(app: &TestApp, id: &str) -> Value {
    app.ok(EVENT, json!({"id": id})).await["auditEvent"].clone()
}

async fn a_hold_covers_the_correlation_and_its_later_events_and_is_recorded_in_it(app: TestApp) {
    let c = "rr-hold-gql";
    let before = app.create(json!({"correlationId": c})).await["eventId"]
        .as_str()
        .unwrap()
        .to_string();
    let other = app.create(json!({"correlationId": "rr-hold-other"})).await["eventId"]
        .as_str()
        .unwrap()
        .to_string();

    let placed = app
        .ok(PLACE, json!({"c": c, "r": "  Litigation: Case #2026-ABC-123 "}))
        .await["placeLegalHold"]
        .clone();
    let hold = &placed["hold"];
    assert_eq!(hold["correlationId"], c);
    assert_eq!(
        hold["reason"], "Litigation: Case #2026-ABC-123",
        "the reason is trimmed"
    );
    assert_eq!(hold["placedBy"], "anonymous");
    assert_eq!(hold["eventsHeld"], 2, "the event before and the record");
    let record = &placed["record"];
    assert_eq!(record["eventType"], "legal_hold.placed");
    assert_eq!(record["eventCategory"], "compliance");
    assert_eq!(record["correlationId"], c);
    assert_eq!(record["eventData"]["reason"], "Litigation: Case #2026-ABC-123");
    assert_eq!(record["legalHold"], true, "the record is held with the rest");

    let held = event(&app, &before).await;
    assert_eq!(held["legalHold"], true);
    assert_eq!(held["legalHoldReason"], "Litigation: Case #2026-ABC-123");
    assert_eq!(held["legalHoldPlacedBy"], "anonymous");
    assert_eq!(held["legalHoldPlacedAt"], hold["placedAt"]);
    assert_eq!(
        event(&app, &other).await["legalHold"],
        false,
        "other correlations are not held"
    );

    // A later event of the held correlation is held as it is written, by every write path.
    let single = app
        .ok(
            "mutation($i: AuditEventInput!) { createAuditEvent(input: $i) { eventId legalHold legalHoldReason } }",
            json!({"i": crate::helpers::event_input(json!({"correlationId": c}))}),
        )
        .await["createAuditEvent"]
        .clone();
    assert_eq!(single["legalHold"], true, "the write's answer shows the hold: {single}");
    assert_eq!(
        event(&app, single["eventId"].as_str().unwrap()).await["legalHold"],
        true
    );
    let batch = app
        .ok(
            "mutation($i: [AuditEventInput!]!) { createAuditEvents(inputs: $i) { eventId legalHold } }",
            json!({"i": [crate::helpers::event_input(json!({"correlationId": c})),
                         crate::helpers::event_input(json!({"correlationId": "rr-hold-other"}))]}),
        )
        .await["createAuditEvents"]
        .clone();
    assert_eq!(batch[0]["legalHold"], true);
    assert_eq!(batch[1]["legalHold"], false);
    let (status, _, _) = app
        .rest(
            "POST",
            "/api/v1/audit/events",
            Some(
                json!({"version": "1.0", "event_type": "gateway.signal.received", "event_category": "gateway",
                "event_action": "received", "event_outcome": "success", "correlation_id": c,
                "event_timestamp": chrono::Utc::now().to_rfc3339(), "event_data": {}}),
            ),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let holds = app.ok(HOLDS, json!({})).await["legalHolds"].clone();
    assert_eq!(holds.as_array().unwrap().len(), 1);
    assert_eq!(holds[0]["correlationId"], c);
    assert_eq!(holds[0]["eventsHeld"], 5, "{holds}");

    // Placing it again, or on a correlation without events, is refused and says why.
    let again = app.error(PLACE, json!({"c": c, "r": "twice"})).await;
    assert_eq!(again["extensions"]["code"], "CONFLICT", "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("already under a legal hold"),
        "{again}"
    );
    let nothing = app.error(PLACE, json!({"c": "rr-hold-none", "r": "x"})).await;
    assert_eq!(nothing["extensions"]["code"], "NOT_FOUND", "{nothing}");
    let blank = app.error(PLACE, json!({"c": c, "r": "   "})).await;
    assert_eq!(blank["extensions"]["code"], "BAD_USER_INPUT", "{blank}");
    assert_eq!(
        blank["extensions"]["argument"], "reason",
        "the refusal names the argument: {blank}"
    );

    let released = app.ok(RELEASE, json!({"c": c, "r": "Case closed"})).await["releaseLegalHold"].clone();
    assert_eq!(released["correlationId"], c);
    assert_eq!(released["eventsReleased"], 5);
    assert_eq!(released["releasedBy"], "anonymous");
    assert_eq!(released["record"]["eventType"], "legal_hold.released");
    assert_eq!(released["record"]["legalHold"], false);
    let after = event(&app, &before).await;
    assert_eq!(after["legalHold"], false);
    assert_eq!(
        after["legalHoldReason"],
        "Litigation: Case #2026-ABC-123 [Released: Case closed]"
    );
    assert_eq!(app.ok(HOLDS, json!({})).await["legalHolds"], json!([]));
    let not_held = app.error(RELEASE, json!({"c": c, "r": "again"})).await;
    assert_eq!(not_held["extensions"]["code"], "NOT_FOUND", "{not_held}");
    let later = app.create(json!({"correlationId": c})).await["eventId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        event(&app, &later).await["legalHold"],
        false,
        "a released correlation's new events are free"
    );

    // The whole story is in the correlation's chain, which verifies.
    let chain = app.ok(VERIFY, json!({"c": c})).await["verifyChain"].clone();
    assert_eq!(chain["valid"], true, "{chain}");
    assert_eq!(chain["totalEvents"], 7);
}

async fn legal_holds_over_rest_answer_in_kubernauts_shapes(app: TestApp) {
    let c = "rr-hold-rest";
    app.create(json!({"correlationId": c})).await;
    app.create(json!({"correlationId": c})).await;
    let (status, _, placed) = app
        .rest(
            "POST",
            "/api/v1/audit/legal-hold",
            Some(json!({"correlation_id": c, "reason": "SEC investigation case #2025-001"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    assert_eq!(placed["correlation_id"], c);
    assert_eq!(placed["events_affected"], 3);
    assert_eq!(placed["placed_by"], "anonymous");
    assert_eq!(placed["reason"], "SEC investigation case #2025-001");
    assert!(
        chrono::DateTime::parse_from_rfc3339(placed["placed_at"].as_str().unwrap()).is_ok(),
        "{placed}"
    );

    let (status, _, listed) = app.rest("GET", "/api/v1/audit/legal-hold", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["holds"][0]["correlation_id"], c);
    assert_eq!(listed["holds"][0]["events_affected"], 3);
    assert_eq!(listed["holds"][0]["placed_at"], placed["placed_at"]);

    for (body, field) in [
        (json!({"reason": "x"}), "correlation_id"),
        (json!({"correlation_id": c}), "reason"),
        (json!({"correlation_id": "", "reason": "x"}), "correlation_id"),
    ] {
        let (status, content_type, problem) = app.rest("POST", "/api/v1/audit/legal-hold", Some(body), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "names {field}: {problem}"
        );
    }
    let (status, _, problem) = app
        .rest(
            "POST",
            "/api/v1/audit/legal-hold",
            Some(json!({"correlation_id": "rr-none", "reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _, problem) = app
        .rest(
            "POST",
            "/api/v1/audit/legal-hold",
            Some(json!({"correlation_id": c, "reason": "again"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    let path = format!("/api/v1/audit/legal-hold/{c}");
    let (status, _, problem) = app.rest("DELETE", &path, Some(json!({})), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("release_reason"),
        "{problem}"
    );
    let (status, _, released) = app
        .rest("DELETE", &path, Some(json!({"release_reason": "Case closed"})), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["correlation_id"], c);
    assert_eq!(released["events_released"], 3);
    assert_eq!(released["released_by"], "anonymous");
    let (status, _, _) = app
        .rest("DELETE", &path, Some(json!({"release_reason": "Case closed"})), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, listed) = app.rest("GET", "/api/v1/audit/legal-hold", None, &[]).await;
    assert_eq!(listed, json!({"holds": [], "total": 0}));

    // The REST query shows the hold's trace on each event.
    let (_, _, events) = app
        .rest("GET", &format!("/api/v1/audit/events?correlation_id={c}"), None, &[])
        .await;
    let first = &events["data"][0];
    assert_eq!(first["legal_hold"], false, "{first}");
}

/// Deletes rows as a retention run would (inside a grant of run `run`), returning the error.
async fn delete_with_grant(app: &TestApp, run: Uuid, id: &str) -> Result<u64, String> {
    use sea_orm::TransactionTrait;
    let db = app.store.db();
    let backend = db.get_database_backend();
    let txn = db.begin().await.unwrap();
    let run_literal = id_literal(app, run);
    txn.execute_unprepared(&format!(
        "INSERT INTO audit_purge_grant (run_id) VALUES ({run_literal})"
    ))
    .await
    .unwrap();
    let deleted = txn
        .execute_raw(Statement::from_string(
            backend,
            format!("DELETE FROM audit_events WHERE event_id = {}", id_literal(app, id)),
        ))
        .await;
    let _ = txn.rollback().await;
    deleted.map(|r| r.rows_affected()).map_err(|e| e.to_string())
}

async fn nothing_deletes_a_held_or_unexpired_event(app: TestApp) {
    let fresh = app.create(json!({"correlationId": "rr-guard"})).await["eventId"]
        .as_str()
        .unwrap()
        .to_string();
    let old = Uuid::now_v7();
    import_lines(&app, &[line(old, "2024-02-10T10:00:00Z", None, "rr-guard-old", 30)]).await;
    // Without a retention run's grant, nobody deletes anything.
    for id in [&fresh, &old.to_string()] {
        let refused = app
            .store
            .db()
            .execute_unprepared(&format!(
                "DELETE FROM audit_events WHERE event_id = {}",
                id_literal(&app, id)
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("only a retention run removes events"), "{refused}");
    }
    // With one: never an unexpired event, never a held one.
    let run = match app
        .store
        .claim_retention_run("test", chrono::Utc::now().date_naive(), retention::STALE_AFTER)
        .await
        .unwrap()
    {
        Claim::Started(run) => run.run_id,
        other => panic!("{other:?}"),
    };
    let refused = delete_with_grant(&app, run, &fresh).await.unwrap_err();
    assert!(refused.contains("before their retention_days have passed"), "{refused}");
    app.ok(PLACE, json!({"c": "rr-guard-old", "r": "investigation"})).await;
    let refused = delete_with_grant(&app, run, &old.to_string()).await.unwrap_err();
    assert!(
        refused.contains("Cannot delete audit event with legal hold"),
        "{refused}"
    );
    app.ok(RELEASE, json!({"c": "rr-guard-old", "r": "closed"})).await;
    // Released and expired: a run may delete it, and the deletion is recorded.
    assert_eq!(delete_with_grant(&app, run, &old.to_string()).await, Ok(1));
    // Truncation is refused outright (PostgreSQL; SQLite has no TRUNCATE).
    if app.store.backend() == DatabaseBackend::Postgres {
        let refused = app
            .store
            .db()
            .execute_unprepared("TRUNCATE audit_events")
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cannot be deleted"), "{refused}");
    }
    assert_eq!(
        app.row_count().await,
        4,
        "the fresh event, the old one, and the hold's two records"
    );
}

fn line(id: Uuid, ts: &str, parent: Option<Uuid>, correlation: &str, retention_days: i32) -> Value {
    let mut event = json!({
        "event_id": id, "version": "1.0", "event_type": "gateway.signal.received", "event_timestamp": ts,
        "event_category": "gateway", "event_action": "received", "event_outcome": "success",
        "correlation_id": correlation, "event_data": {"imported": true}, "retention_days": retention_days,
    });
    if let Some(parent) = parent {
        event["parent_event_id"] = json!(parent);
    }
    event
}

async fn import_lines(app: &TestApp, lines: &[Value]) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
    let options = ImportOptions {
        source: file.path().display().to_string(),
        batch_size: 1_000,
        skip_invalid: false,
        operator: "test-operator".into(),
    };
    import::run(&app.store, &options).await.expect("import");
}

async fn exists(app: &TestApp, id: Uuid) -> bool {
    let row = app
        .store
        .db()
        .query_one_raw(Statement::from_string(
            app.store.backend(),
            format!(
                "SELECT count(*) AS n FROM audit_events WHERE event_id = {}",
                id_literal(app, id)
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

/// Mixed trees, all from 2024:
/// - `a`: a root, two children and a grandchild, all expired: all go, leaves first;
/// - `b`: an expired root with an expired child and one kept for seven years: the root stays;
/// - `held`: expired, under a legal hold: both stay;
/// - `d`: a parent from January whose only child is from May, both expired: both go (on
///   PostgreSQL as whole partitions, May's first);
/// - and one event written now, kept.
struct Trees {
    a: Vec<Uuid>,
    b_root: Uuid,
    b_expired: Uuid,
    b_kept: Uuid,
    held: Vec<Uuid>,
    d_parent: Uuid,
    d_child: Uuid,
}

async fn plant(app: &TestApp) -> Trees {
    let a: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let (b_root, b_expired, b_kept) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let held: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    let (d_parent, d_child) = (Uuid::now_v7(), Uuid::now_v7());
    import_lines(
        app,
        &[
            line(a[0], "2024-02-10T10:00:00Z", None, "rr-life-a", 30),
            line(a[1], "2024-02-10T10:01:00Z", Some(a[0]), "rr-life-a", 30),
            line(a[2], "2024-02-11T10:00:00Z", Some(a[0]), "rr-life-a", 30),
            line(a[3], "2024-02-12T10:00:00Z", Some(a[2]), "rr-life-a", 30),
            line(b_root, "2024-02-10T11:00:00Z", None, "rr-life-b", 30),
            line(b_expired, "2024-02-10T11:01:00Z", Some(b_root), "rr-life-b", 30),
            line(b_kept, "2024-02-11T11:00:00Z", Some(b_root), "rr-life-b", 2555),
            line(held[0], "2024-02-10T12:00:00Z", None, "rr-life-held", 30),
            line(held[1], "2024-02-10T12:01:00Z", Some(held[0]), "rr-life-held", 30),
            line(d_parent, "2024-01-05T09:00:00Z", None, "rr-life-d", 10),
            line(d_child, "2024-05-01T09:00:00Z", Some(d_parent), "rr-life-d", 10),
        ],
    )
    .await;
    app.create(json!({"correlationId": "rr-life-now"})).await;
    app.ok(PLACE, json!({"c": "rr-life-held", "r": "litigation"})).await;
    Trees {
        a,
        b_root,
        b_expired,
        b_kept,
        held,
        d_parent,
        d_child,
    }
}

async fn run(app: &TestApp, options: RetentionOptions) -> Outcome {
    retention::run(&app.store, &options, "test-runner")
        .await
        .expect("retention run")
}

async fn publisher(app: &TestApp) -> Publisher {
    let signer = LogSigner::load_or_create(&app.keys.path().join("log.key"), "auditgraph.local/log").unwrap();
    Publisher::new(app.store.clone(), Arc::new(signer))
}

async fn retention_purges_trees_leaf_first_and_drops_whole_months(app: TestApp) {
    let trees = plant(&app).await;
    let log = publisher(&app).await;
    log.sequence_all().await.unwrap();
    log.publish().await.unwrap();
    let rows_before = app.row_count().await;

    let outcome = run(&app, RetentionOptions::default()).await;
    let Outcome::Finished(done) = &outcome else {
        panic!("{outcome:?}");
    };
    let counts = &done.counts;
    assert_eq!(
        counts.rows_deleted, 7,
        "a's four, b's expired child, d's two: {outcome}"
    );
    assert_eq!(counts.kept_held, 2, "{outcome}");
    assert_eq!(counts.kept_parent, 1, "b's root stays for its kept child: {outcome}");
    match app.store.backend() {
        // May's partition goes first; then January's, whose only row no longer has a child.
        DatabaseBackend::Postgres => assert_eq!(
            counts.partitions_dropped,
            vec!["audit_events_2024_05".to_string(), "audit_events_2024_01".to_string()]
        ),
        _ => assert!(counts.partitions_dropped.is_empty()),
    }
    assert_eq!(app.row_count().await, rows_before - 7);
    for id in trees
        .a
        .iter()
        .chain([&trees.b_expired, &trees.d_parent, &trees.d_child])
    {
        assert!(!exists(&app, *id).await, "{id} was purged");
    }
    for id in trees.held.iter().chain([&trees.b_root, &trees.b_kept]) {
        assert!(exists(&app, *id).await, "{id} was kept");
    }
    if app.store.backend() == DatabaseBackend::Postgres {
        let table = app
            .store
            .db()
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT to_regclass('audit_events_2024_05') IS NULL AS gone",
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(
            table.try_get::<bool>("", "gone").unwrap(),
            "May's partition was dropped"
        );
    }

    // The run is recorded; a second run finds nothing more to delete.
    let runs = app
        .ok(
            "{ retentionRuns { runId status rowsDeleted keptHeld keptParent partitionsDropped dryRun } }",
            json!({}),
        )
        .await["retentionRuns"]
        .clone();
    assert_eq!(runs[0]["runId"], done.run_id.to_string());
    assert_eq!(runs[0]["status"], "FINISHED");
    assert_eq!(runs[0]["rowsDeleted"], 7);
    let again = run(&app, RetentionOptions::default()).await;
    assert_eq!(again.run().counts.rows_deleted, 0, "{again}");
    assert_eq!(again.run().counts.kept_parent, 1);

    // Every chain still verifies, and says which run purged what.
    for (correlation, verified, purged) in [("rr-life-a", 0, 4), ("rr-life-b", 2, 1), ("rr-life-d", 0, 2)] {
        let chain = app.ok(VERIFY, json!({"c": correlation})).await["verifyChain"].clone();
        assert_eq!(chain["valid"], true, "{correlation}: {chain}");
        assert_eq!(chain["verifiedEvents"], verified, "{correlation}: {chain}");
        assert_eq!(chain["purgedEvents"], purged, "{correlation}: {chain}");
        assert_eq!(chain["purgedByRuns"], json!([done.run_id.to_string()]));
    }
    let (_, _, rest) = app
        .rest(
            "POST",
            "/api/v1/audit/verify-chain",
            Some(json!({"correlation_id": "rr-life-b"})),
            &[],
        )
        .await;
    assert_eq!(rest["is_valid"], true, "{rest}");
    assert_eq!(rest["purged_events"], 1);
    assert!(
        rest["message"].as_str().unwrap().contains("purged by retention run"),
        "{rest}"
    );

    // The whole database checks out offline: the log keeps the purged events' leaves, and they
    // match the hashes the run recorded; the checkpoint signed before the run still holds.
    log.sequence_all().await.unwrap();
    log.publish().await.unwrap();
    let verifier = verify::verifier_key(None, &app.keys.path().join("log.key")).unwrap();
    let report = verify::run(&app.store, Some(&verifier)).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.chains.purged, 7, "{report}");
    assert_eq!(report.log.purged, 7, "{report}");
    assert!(
        report
            .to_string()
            .contains(&format!("purged by retention (run {})", done.run_id)),
        "{report}"
    );
}

async fn a_dry_run_reports_what_the_run_then_does(app: TestApp) {
    plant(&app).await;
    let rows = app.row_count().await;
    let dry = run(
        &app,
        RetentionOptions {
            dry_run: true,
            ..RetentionOptions::default()
        },
    )
    .await;
    let Outcome::DryRun(report) = &dry else {
        panic!("{dry:?}");
    };
    assert_eq!(app.row_count().await, rows, "a dry run deletes nothing");
    assert_eq!(report.counts.rows_scanned, 10, "the expired events: {dry}");
    assert_eq!(report.counts.rows_deleted, 7, "{dry}");
    assert_eq!(report.counts.kept_held, 2);
    assert_eq!(report.counts.kept_parent, 1);
    assert!(report.dry_run);
    let done = run(&app, RetentionOptions::default()).await;
    assert_eq!(done.run().counts.rows_deleted, report.counts.rows_deleted, "{done}");
    let runs = app.ok("{ retentionRuns { dryRun rowsDeleted } }", json!({})).await["retentionRuns"].clone();
    assert_eq!(
        runs,
        json!([{"dryRun": false, "rowsDeleted": 7}, {"dryRun": true, "rowsDeleted": 7}])
    );
}

async fn a_paused_run_is_resumed_and_one_runner_works_at_a_time(app: TestApp) {
    let trees = plant(&app).await;
    let small = RetentionOptions {
        batch_size: 1,
        max_batches: Some(2),
        ..RetentionOptions::default()
    };
    let first = run(&app, small.clone()).await;
    let Outcome::Paused(paused) = &first else {
        panic!("{first:?}");
    };
    assert!(paused.counts.rows_deleted < 7, "{first}");
    assert!(first.to_string().contains("run again to resume it"), "{first}");
    let recorded = app.store.retention_runs(1).await.unwrap();
    assert_eq!(recorded[0].status, RunStatus::Paused);

    // While a runner holds the run and reports, nobody else starts one.
    let held = match app
        .store
        .claim_retention_run(
            "another-runner",
            chrono::Utc::now().date_naive(),
            retention::STALE_AFTER,
        )
        .await
        .unwrap()
    {
        Claim::Resumed(run) => run,
        other => panic!("a paused run is taken over: {other:?}"),
    };
    assert_eq!(held.run_id, paused.run_id);
    let busy = run(&app, RetentionOptions::default()).await;
    assert!(
        matches!(busy, Outcome::Busy(ref r) if r.run_id == paused.run_id),
        "{busy:?}"
    );
    assert!(busy.to_string().contains("in progress on another-runner"), "{busy}");
    // The other runner dies without a word: once its report is stale, the run is taken over.
    let stale = app
        .store
        .claim_retention_run(
            "third-runner",
            chrono::Utc::now().date_naive(),
            chrono::Duration::zero(),
        )
        .await
        .unwrap();
    assert!(
        matches!(stale, Claim::Resumed(ref r) if r.run_id == paused.run_id),
        "{stale:?}"
    );
    app.store
        .save_retention_run(
            &auditgraph::store::RetentionRun {
                runner: "third-runner".into(),
                ..held
            },
            RunStatus::Paused,
            None,
        )
        .await
        .unwrap();

    let rest = run(&app, RetentionOptions::default()).await;
    let Outcome::Finished(finished) = &rest else {
        panic!("{rest:?}");
    };
    assert_eq!(finished.run_id, paused.run_id, "the same run, resumed");
    assert_eq!(finished.counts.rows_deleted, 7, "counted over both parts: {rest}");
    assert!(!exists(&app, trees.d_parent).await && exists(&app, trees.b_root).await);
    assert_eq!(app.store.retention_runs(10).await.unwrap().len(), 1, "one run, not two");
}

async fn retention_runs_beside_live_writes(app: TestApp) {
    // Eighty expired roots, each with an expired child; while the run purges them, writers add
    // children to forty of the roots and write elsewhere.
    let roots: Vec<Uuid> = (0..80).map(|_| Uuid::now_v7()).collect();
    let mut lines = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        lines.push(line(*root, "2024-03-01T10:00:00Z", None, &format!("rr-busy-{i}"), 30));
        lines.push(line(
            Uuid::now_v7(),
            "2024-03-01T10:05:00Z",
            Some(*root),
            &format!("rr-busy-{i}"),
            30,
        ));
    }
    import_lines(&app, &lines).await;
    let adopted: Vec<Uuid> = roots.iter().step_by(2).copied().collect();
    let writers = {
        let router = app.router.clone();
        let adopted = adopted.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for parent in adopted {
                for (input, parent) in [
                    (
                        crate::helpers::event_input(json!({"correlationId": "rr-busy-new", "parentEventId": parent})),
                        Some(parent),
                    ),
                    (
                        crate::helpers::event_input(json!({"correlationId": "rr-busy-elsewhere"})),
                        None,
                    ),
                ] {
                    let body = json!({"query": "mutation($i: AuditEventInput!) { createAuditEvent(input: $i) { eventId } }",
                        "variables": {"i": input}});
                    let request = Request::post("/graphql")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap();
                    let response = tower::ServiceExt::oneshot(router.clone(), request).await.unwrap();
                    let bytes = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let answer: Value = serde_json::from_slice(&bytes).unwrap();
                    // A parent purged before its child arrived refuses the child, by name.
                    match answer["data"]["createAuditEvent"]["eventId"].as_str() {
                        Some(id) => written.push((id.parse::<Uuid>().unwrap(), parent)),
                        None => assert!(
                            brief(&answer).contains("parent"),
                            "a write failed for another reason: {answer}"
                        ),
                    }
                }
            }
            written
        })
    };
    let outcome = run(
        &app,
        RetentionOptions {
            batch_size: 5,
            ..RetentionOptions::default()
        },
    )
    .await;
    let written = writers.await.unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)), "{outcome:?}");
    // Every acknowledged write is stored, and every parent that got a child before it went stays.
    for (id, _) in &written {
        assert!(exists(&app, *id).await, "acknowledged event {id} is stored");
    }
    for root in &roots {
        let kept = exists(&app, *root).await;
        let has_new_child = written.iter().any(|(_, parent)| *parent == Some(*root));
        if has_new_child {
            assert!(kept, "root {root} got a child during the run and stays");
        }
    }
    // What is left goes on the next run, except the parents of the new children.
    let again = run(&app, RetentionOptions::default()).await;
    let adopted_count = written.iter().filter(|(_, p)| p.is_some()).count() as u64;
    assert!(again.run().counts.kept_parent <= adopted_count, "{again}");
    let verifier = {
        let log = publisher(&app).await;
        log.sequence_all().await.unwrap();
        log.publish().await.unwrap();
        verify::verifier_key(None, &app.keys.path().join("log.key")).unwrap()
    };
    let report = verify::run(&app.store, Some(&verifier)).await.unwrap();
    assert!(report.ok(), "{report}");
}

async fn verify_tells_purged_events_from_removed_ones(app: TestApp) {
    let trees = plant(&app).await;
    let log = publisher(&app).await;
    log.sequence_all().await.unwrap();
    let done = run(&app, RetentionOptions::default()).await;
    // Someone removes b's kept child around the triggers: a removal, not a purge.
    as_attacker(
        &app,
        &[format!(
            "DELETE FROM audit_events WHERE event_id = {}",
            id_literal(&app, trees.b_kept)
        )],
    )
    .await;
    let chain = app.ok(VERIFY, json!({"c": "rr-life-b"})).await["verifyChain"].clone();
    assert_eq!(chain["valid"], false, "{chain}");
    assert_eq!(chain["purgedEvents"], 1, "the purge is still accounted for: {chain}");
    assert_eq!(chain["breaks"][0]["kind"], "MISSING_TAIL", "{chain}");
    let verifier = verify::verifier_key(None, &app.keys.path().join("log.key")).unwrap();
    let report = verify::run(&app.store, Some(&verifier)).await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.chains.purged, 7, "{report}");
    assert_eq!(report.log.purged, 7, "{report}");
    assert_eq!(report.log.problems, 1, "only the removed event's leaf: {report}");
    let text = report.to_string();
    assert!(
        text.contains(&trees.b_kept.to_string()),
        "names the removed event: {text}"
    );
    assert!(
        text.contains(&format!("purged by retention (run {})", done.run().run_id)),
        "{text}"
    );
    // The admin role is needed to hold; readers and writers are refused.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let writer = create_key(&path, "svc-writer", Role::Writer, PrincipalKind::Service).unwrap();
    let secured = auditgraph::app(app.store.clone(), &{
        let mut config = auditgraph::config::Config::for_database(&app.url);
        config.log_key_file = app.keys.path().join("log.key");
        config.auth.modes = vec![auditgraph::auth::AuthMode::ApiKeys];
        config.auth.api_keys_file = path.clone();
        config
    })
    .unwrap();
    let request = Request::post("/api/v1/audit/legal-hold")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", writer.key))
        .body(Body::from(
            json!({"correlation_id": "rr-life-b", "reason": "x"}).to_string(),
        ))
        .unwrap();
    let response = tower::ServiceExt::oneshot(secured, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

async fn two_servers_with_a_schedule_run_retention_once_at_a_time(app: TestApp) {
    let trees = plant(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let key = app.keys.path().join("log.key");
    let env = [
        ("AUDITGRAPH_RETENTION_INTERVAL_MINUTES", "1"),
        ("AUDITGRAPH_LOG_KEY_FILE", key.to_str().unwrap()),
    ];
    // Two processes on one database, each with the schedule (which runs at start, then every minute).
    let (_first, _) =
        crate::helpers::start_binary_with(dir.path(), Some(&app.url), std::process::Stdio::null(), &env).await;
    let (_second, _) =
        crate::helpers::start_binary_with(dir.path(), Some(&app.url), std::process::Stdio::null(), &env).await;
    let started = std::time::Instant::now();
    let runs = loop {
        let runs = app.store.retention_runs(10).await.unwrap();
        if runs.iter().any(|r| r.status == RunStatus::Finished) {
            break runs;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no run finished: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let finished: Vec<_> = runs.iter().filter(|r| r.status == RunStatus::Finished).collect();
    // The other server found the run in progress and skipped its round, or ran after it and
    // found nothing left: never two runs at once, and seven events deleted in all.
    let deleted: u64 = finished.iter().map(|r| r.counts.rows_deleted).sum();
    assert_eq!(deleted, 7, "{runs:?}");
    assert!(runs.iter().all(|r| !r.dry_run));
    assert!(!exists(&app, trees.d_parent).await && exists(&app, trees.b_root).await);
}
