//! The historical import and the parent-date backfill (BR-STORAGE-037).

use std::io::Write;

use auditgraph::ops::backfill::{self, BackfillOptions};
use auditgraph::ops::import::{self, ImportOptions};
use auditgraph::store::Columns;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::{Engine, TestApp, brief};

both_engines!(
    an_import_keeps_ids_and_timestamps_and_stores_legacy_links,
    imported_history_keeps_the_chain_links_it_can_verify_and_sets_the_others_apart,
    a_malformed_line_stops_the_import_and_writes_nothing_of_its_batch,
    the_backfill_completes_links_reports_orphans_and_is_idempotent,
    the_backfill_resumes_after_an_interruption_and_can_be_rolled_back,
    the_backfill_runs_next_to_live_writes,
);

fn line(id: Uuid, ts: &str, parent: Option<Uuid>, correlation: &str) -> Value {
    let mut event = json!({
        "event_id": id, "version": "1.0", "event_type": "gateway.signal.received", "event_timestamp": ts,
        "event_category": "gateway", "event_action": "received", "event_outcome": "success",
        "correlation_id": correlation, "event_data": {"imported": true},
    });
    if let Some(parent) = parent {
        event["parent_event_id"] = json!(parent);
    }
    event
}

fn write_file(lines: &[Value], extra: &[&str]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
    for raw in extra {
        writeln!(file, "{raw}").unwrap();
    }
    file
}

async fn import_file(
    app: &TestApp,
    file: &tempfile::NamedTempFile,
    batch_size: usize,
    skip_invalid: bool,
) -> anyhow::Result<import::ImportSummary> {
    let options = ImportOptions {
        source: file.path().display().to_string(),
        batch_size,
        skip_invalid,
        operator: "test-operator".into(),
    };
    import::run(&app.store, &options).await
}

/// 40 roots from two years ago, each with a child that names it without a parent date (legacy),
/// one child with its parent date, and an orphan whose parent was never exported.
fn history() -> (Vec<Value>, Vec<Uuid>, Uuid) {
    let mut lines = Vec::new();
    let mut children = Vec::new();
    for i in 0..40 {
        let root = Uuid::new_v4();
        let ts = format!("2024-03-31T23:{:02}:00Z", i);
        lines.push(line(root, &ts, None, &format!("rr-h{i}")));
        let child = Uuid::new_v4();
        let child_ts = format!("2024-04-01T00:{:02}:30Z", i);
        lines.push(line(child, &child_ts, Some(root), &format!("rr-h{i}")));
        children.push(child);
    }
    let dated = Uuid::new_v4();
    let mut with_date = line(
        dated,
        "2024-04-02T10:00:00Z",
        Some(lines[0]["event_id"].as_str().unwrap().parse().unwrap()),
        "rr-h0",
    );
    with_date["parent_event_date"] = json!("2024-03-31T23:00:00Z");
    lines.push(with_date);
    let orphan = Uuid::new_v4();
    lines.push(line(orphan, "2024-04-03T10:00:00Z", Some(Uuid::new_v4()), "rr-orphan"));
    (lines, children, orphan)
}

async fn an_import_keeps_ids_and_timestamps_and_stores_legacy_links(app: TestApp) {
    let (lines, children, _) = history();
    let file = write_file(&lines, &[""]);
    let summary = import_file(&app, &file, 7, false).await.unwrap();
    assert_eq!(summary.lines, 82);
    assert_eq!(summary.imported, 82);
    assert_eq!(
        summary.legacy, 41,
        "40 children and the orphan name a parent without its date"
    );
    assert_eq!(app.row_count().await, 82);
    let child = app.store.find_event(children[3], Columns::ALL).await.unwrap().unwrap();
    assert_eq!(
        child.event_timestamp.to_rfc3339(),
        "2024-04-01T00:03:30+00:00",
        "timestamps are kept, however old"
    );
    assert_eq!(child.parent_event_date, None);
    assert!(child.parent_event_id.is_some());
    assert_eq!(
        child.submitted_by.as_deref(),
        Some("test-operator"),
        "imported history records the operator who imported it"
    );
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 41);

    let again = import_file(&app, &file, 50, false).await.unwrap();
    assert_eq!(
        (again.imported, again.already_present),
        (0, 82),
        "a re-run skips what is stored"
    );
    assert_eq!(app.row_count().await, 82);
}

async fn a_malformed_line_stops_the_import_and_writes_nothing_of_its_batch(app: TestApp) {
    let good: Vec<Value> = (0..5)
        .map(|i| line(Uuid::new_v4(), &format!("2025-01-0{}T00:00:00Z", i + 1), None, "rr-m"))
        .collect();
    let file = write_file(
        &good,
        &[
            r#"{"version": "1.0", "event_type": 7}"#,
            &line(Uuid::new_v4(), "2025-02-01T00:00:00Z", None, "rr-m").to_string(),
        ],
    );
    let error = import_file(&app, &file, 100, false).await.unwrap_err().to_string();
    assert!(error.starts_with("line 6:"), "{error}");
    assert!(error.contains("event_type: must be a string"), "{error}");
    assert_eq!(app.row_count().await, 0, "nothing of the failing batch is written");

    let summary = import_file(&app, &file, 100, true).await.unwrap();
    assert_eq!((summary.imported, summary.skipped), (6, 1));
    assert_eq!(app.row_count().await, 6);

    let missing_parent = {
        let mut l = line(Uuid::new_v4(), "2025-03-01T00:00:00Z", Some(Uuid::new_v4()), "rr-m");
        l["parent_event_date"] = json!("2025-02-28");
        l
    };
    let file = write_file(&[missing_parent], &[]);
    let error = import_file(&app, &file, 100, false).await.unwrap_err().to_string();
    assert!(error.starts_with("line 1:") && error.contains("legacy"), "{error}");
}

async fn backfill_all(app: &TestApp, dry_run: bool) -> backfill::BackfillSummary {
    let options = BackfillOptions {
        batch_size: 7,
        dry_run,
        list_orphans: 5,
    };
    backfill::run(&app.store, &options).await.unwrap()
}

async fn the_backfill_completes_links_reports_orphans_and_is_idempotent(app: TestApp) {
    let (lines, children, orphan) = history();
    // A child stamped two days before its parent cannot be linked.
    let late_parent = Uuid::new_v4();
    let early_child = Uuid::new_v4();
    let mut lines = lines;
    lines.push(line(late_parent, "2024-05-10T00:00:00Z", None, "rr-skew"));
    lines.push(line(early_child, "2024-05-08T00:00:00Z", Some(late_parent), "rr-skew"));
    import_file(&app, &write_file(&lines, &[]), 1000, false).await.unwrap();

    let dry = backfill_all(&app, true).await;
    assert_eq!((dry.legacy_before, dry.filled, dry.orphans, dry.skewed), (42, 40, 1, 1));
    assert_eq!(dry.foreign_key, None);
    assert_eq!(
        app.store.count_legacy_links().await.unwrap(),
        42,
        "a dry run writes nothing"
    );

    let first = backfill_all(&app, false).await;
    assert_eq!(
        (first.scanned, first.filled, first.orphans, first.skewed),
        (42, 40, 1, 1)
    );
    assert_eq!(first.orphan_ids, vec![orphan]);
    assert!(first.batches >= 6);
    let fk = first.foreign_key.clone().unwrap();
    assert!(fk.valid && fk.violations == 0, "{fk:?}");
    let report = first.to_string();
    assert!(
        report.contains("orphans (parent not in the store): 1") && report.contains("valid"),
        "{report}"
    );
    let child = app.store.find_event(children[7], Columns::ALL).await.unwrap().unwrap();
    let parent = app
        .store
        .find_event(child.parent_event_id.unwrap(), Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        child.parent_event_date,
        Some(parent.event_date),
        "the parent's date, from another month"
    );
    assert_ne!(child.event_date, parent.event_date);

    let second = backfill_all(&app, false).await;
    assert_eq!(
        second.filled, 0,
        "a complete run done twice updates nothing the second time"
    );
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 2);

    // The completed links are real: the tree query follows them.
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { depth root { eventId } } }",
            json!({"id": children[7]}),
        )
        .await;
    assert_eq!(data["auditEvent"]["depth"], 1);
    assert_eq!(data["auditEvent"]["root"]["eventId"], parent.event_id.to_string());
}

async fn the_backfill_resumes_after_an_interruption_and_can_be_rolled_back(app: TestApp) {
    let (lines, _, _) = history();
    import_file(&app, &write_file(&lines, &[]), 1000, false).await.unwrap();
    // An interrupted run: two batches committed, then the process died.
    let run = Uuid::now_v7();
    let first = app.store.backfill_batch(run, None, 10, false).await.unwrap();
    let second = app.store.backfill_batch(run, first.last, 10, false).await.unwrap();
    let done = first.filled + second.filled;
    assert!(done >= 18, "{first:?} {second:?}");
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 41 - done);

    let resumed = backfill_all(&app, false).await;
    assert_eq!(
        resumed.filled,
        40 - done,
        "the new run continues where the old one stopped"
    );
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 1);

    // Rolling back one run restores exactly its rows; rolling back the rest restores all.
    let undone = backfill::rollback(&app.store, Some(run), 4).await.unwrap();
    assert_eq!(undone, done);
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 1 + done);
    let rest = backfill::rollback(&app.store, None, 4).await.unwrap();
    assert_eq!(rest, 40 - done);
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 41);
    let again = backfill_all(&app, false).await;
    assert_eq!(again.filled, 40);
}

async fn the_backfill_runs_next_to_live_writes(app: TestApp) {
    let mut lines = Vec::new();
    for i in 0..400 {
        let root = Uuid::new_v4();
        lines.push(line(
            root,
            &format!("2024-06-01T{:02}:{:02}:00Z", i / 60, i % 60),
            None,
            "rr-live",
        ));
        lines.push(line(
            Uuid::new_v4(),
            &format!("2024-06-02T{:02}:{:02}:00Z", i / 60, i % 60),
            Some(root),
            "rr-live",
        ));
    }
    import_file(&app, &write_file(&lines, &[]), 1000, false).await.unwrap();
    let app = std::sync::Arc::new(app);
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut parent: Option<Value> = None;
            for _ in 0..80 {
                let mut input = json!({"correlationId": "rr-live-writes"});
                if let Some(p) = &parent {
                    input["parentEventId"] = p["eventId"].clone();
                }
                parent = Some(app.create(input).await);
            }
        })
    };
    let options = BackfillOptions {
        batch_size: 25,
        dry_run: false,
        list_orphans: 0,
    };
    let summary = backfill::run(&app.store, &options).await.unwrap();
    writer.await.expect("every live write succeeded while the backfill ran");
    assert_eq!(summary.filled, 400);
    assert!(summary.foreign_key.unwrap().valid);
    assert_eq!(app.row_count().await, 880);
    assert_eq!(app.store.count_legacy_links().await.unwrap(), 0);
}

/// History exported from an auditgraph (its REST shape carries the chain) keeps its links when
/// they verify; a hash of another recipe (kubernaut's) is kept apart with the reason; events
/// without a hash are chained on import. The chain then goes on with live writes.
async fn imported_history_keeps_the_chain_links_it_can_verify_and_sets_the_others_apart(app: TestApp) {
    let source = TestApp::new(Engine::Sqlite).await.unwrap();
    for _ in 0..3 {
        source.create(json!({"correlationId": "rr-exported"})).await;
    }
    let (_, _, listed) = source
        .rest(
            "GET",
            "/api/v1/audit/events?correlation_id=rr-exported&limit=10",
            None,
            &[],
        )
        .await;
    let mut exported: Vec<Value> = listed["data"].as_array().unwrap().clone();
    exported.sort_by_key(|e| e["chain_seq"].as_i64());
    assert_eq!(exported.len(), 3, "{}", brief(&listed));
    let mut lines = exported.clone();
    let mut foreign = line(Uuid::now_v7(), "2025-06-01T10:00:00Z", None, "rr-kubernaut");
    foreign["event_hash"] = json!("ab".repeat(32));
    foreign["hash_algorithm"] = json!("sha256-unkeyed");
    lines.push(foreign.clone());
    lines.push(line(Uuid::now_v7(), "2025-06-01T10:00:01Z", None, "rr-plain"));
    let file = write_file(&lines, &[]);
    let summary = import_file(&app, &file, 100, false).await.unwrap();
    assert_eq!(
        (summary.imported, summary.chain_kept, summary.chain_unverified),
        (5, 3, 1),
        "{summary}"
    );

    let verify = |c: &'static str| {
        let app = &app;
        async move {
            app.ok(
                "query($c: String!) { verifyChain(correlationId: $c) { valid totalEvents verifiedEvents unchainedEvents } }",
                json!({"c": c}),
            )
            .await["verifyChain"]
                .clone()
        }
    };
    let report = verify("rr-exported").await;
    assert_eq!(
        (report["valid"].clone(), report["verifiedEvents"].clone()),
        (json!(true), json!(3)),
        "{}",
        brief(&report)
    );
    let kept = app
        .store
        .find_event(exported[1]["event_id"].as_str().unwrap().parse().unwrap(), Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.event_hash.as_deref(),
        exported[1]["event_hash"].as_str(),
        "the carried hash is kept"
    );
    assert_eq!(
        kept.submitted_by.as_deref(),
        Some("anonymous"),
        "with the submitter the hash covers"
    );
    assert!(
        kept.chain_note
            .as_deref()
            .unwrap()
            .contains("imported by test-operator")
    );

    let report = verify("rr-kubernaut").await;
    assert_eq!(
        (report["totalEvents"].clone(), report["unchainedEvents"].clone()),
        (json!(0), json!(1))
    );
    let apart = app
        .store
        .find_event(foreign["event_id"].as_str().unwrap().parse().unwrap(), Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        apart.event_hash.as_deref(),
        Some("ab".repeat(32).as_str()),
        "kept as it came"
    );
    assert_eq!(apart.chain_seq, None);
    assert!(
        apart.chain_note.as_deref().unwrap().contains("cannot verify"),
        "{:?}",
        apart.chain_note
    );
    assert_eq!(apart.submitted_by.as_deref(), Some("test-operator"));

    assert_eq!(verify("rr-plain").await["verifiedEvents"], 1);
    let live = app.create(json!({"correlationId": "rr-exported"})).await;
    let stored = app
        .store
        .find_event(live["eventId"].as_str().unwrap().parse().unwrap(), Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.chain_seq, Some(4), "live writes continue the imported chain");
    assert_eq!(verify("rr-exported").await["verifiedEvents"], 4);
}
