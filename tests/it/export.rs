//! Signed exports: written by the CLI and by kubernaut's REST endpoint, checked offline with the
//! log's verifier key alone, refused when touched, and imported into an empty database with the
//! same hashes.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;

use auditgraph::domain::checkpoint::VerifierKey;
use auditgraph::ops::export::{self, ExportCheck};
use auditgraph::ops::import::{self, ImportOptions};
use auditgraph::ops::log::{LogSigner, Publisher};
use auditgraph::ops::retention::{self, RetentionOptions};
use auditgraph::ops::verify;
use auditgraph::store::ExportFilter;
use axum::http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::{Engine, TestApp, event_input};

both_engines!(
    an_export_checks_out_offline_and_imports_with_the_same_hashes,
    a_touched_export_is_refused_where_it_was_touched,
    the_rest_export_speaks_kubernauts_document_and_streams_the_proof,
);

const BATCH: &str = "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { eventId } }";

fn publisher(app: &TestApp) -> Publisher {
    let signer = LogSigner::load_or_create(&app.keys.path().join("log.key"), "auditgraph.local/log").unwrap();
    Publisher::new(app.store.clone(), Arc::new(signer))
}

fn verifier(app: &TestApp) -> VerifierKey {
    verify::verifier_key(None, &app.keys.path().join("log.key")).unwrap()
}

/// Three correlations written through the API (single events, a batch with a parent), a hold,
/// and two expired events purged by retention: the log has leaves whose events are gone.
async fn history(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..3 {
        let root = app
            .create(json!({"correlationId": "rr-x-a", "eventData": {"n": n}}))
            .await;
        ids.push(root["eventId"].as_str().unwrap().to_string());
    }
    let batch = app
        .ok(
            BATCH,
            json!({"inputs": [
                event_input(json!({"correlationId": "rr-x-b"})),
                event_input(json!({"correlationId": "rr-x-b", "parentEventId": ids[0]})),
                event_input(json!({"correlationId": "rr-x-c", "eventCategory": "workflow"})),
            ]}),
        )
        .await;
    for event in batch["createAuditEvents"].as_array().unwrap() {
        ids.push(event["eventId"].as_str().unwrap().to_string());
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (id, ts) in [
        (Uuid::now_v7(), "2024-02-10T10:00:00Z"),
        (Uuid::now_v7(), "2024-02-11T10:00:00Z"),
    ] {
        let line = json!({"event_id": id, "version": "1.0", "event_type": "gateway.signal.received",
            "event_timestamp": ts, "event_category": "gateway", "event_action": "received",
            "event_outcome": "success", "correlation_id": "rr-x-old", "event_data": {}, "retention_days": 30});
        writeln!(file, "{line}").unwrap();
    }
    import::run(
        &app.store,
        &ImportOptions {
            source: file.path().display().to_string(),
            batch_size: 100,
            skip_invalid: false,
            operator: "test".into(),
        },
    )
    .await
    .unwrap();
    // Both old events get their leaves, then go.
    publisher(app).sequence_all().await.unwrap();
    let purged = retention::run(&app.store, &RetentionOptions::default(), "test")
        .await
        .unwrap();
    assert_eq!(purged.run().counts.rows_deleted, 2, "{purged}");
    app.ok(
        "mutation { placeLegalHold(correlationId: \"rr-x-a\", reason: \"audit\") { hold { eventsHeld } } }",
        json!({}),
    )
    .await;
    app.create(json!({"correlationId": "rr-x-a"})).await;
    ids
}

async fn export_lines(app: &TestApp, filter: &ExportFilter) -> Vec<u8> {
    let (lines, exported) = export::collect(&app.store, &publisher(app), filter, "auditor")
        .await
        .unwrap();
    assert_eq!(
        exported.events,
        lines
            .iter()
            .filter(|l| !l.starts_with(b"{\"auditgraph_export\""))
            .count() as u64
    );
    lines.concat()
}

fn check(app: &TestApp, bytes: &[u8]) -> ExportCheck {
    export::verify_input(bytes, &verifier(app), app.store.hasher()).unwrap()
}

async fn an_export_checks_out_offline_and_imports_with_the_same_hashes(app: TestApp) {
    history(&app).await;
    let whole = export_lines(&app, &ExportFilter::default()).await;
    let report = check(&app, &whole);
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, 8, "six written, the hold's record, one after: {report}");
    assert_eq!(report.hashes_verified, 8);
    assert!(report.root_matches && report.log_proof);
    assert_eq!(report.tree_size, 10, "the purged events keep their leaves: {report}");
    assert_eq!(report.links_outside, 0, "every chain starts in the export");
    assert_eq!(report.manifest.as_ref().unwrap()["exported_by"], "auditor");

    // One correlation: its events, proved against the same tree by the nodes between them.
    let one = export_lines(
        &app,
        &ExportFilter {
            correlation_id: Some("rr-x-a".into()),
            ..ExportFilter::default()
        },
    )
    .await;
    let report = check(&app, &one);
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, 5);
    assert!(report.root_matches);

    // Offline: the real binary, with the verifier key file and no database at all.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &whole).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"))
        .args(["verify", file.to_str().unwrap(), "--verifier-key"])
        .arg(app.keys.path().join("log.key.pub"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("absent.db").display()),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verify: the export checks out"), "{stdout}");
    assert!(!dir.path().join("absent.db").exists(), "no database was touched");

    // Into an empty database: the same events with the same hashes, and their chains verify.
    let empty = TestApp::new(match app.store.backend() {
        sea_orm::DatabaseBackend::Postgres => Engine::Postgres,
        _ => Engine::Sqlite,
    })
    .await
    .unwrap();
    let summary = import::run(
        &empty.store,
        &ImportOptions {
            source: file.display().to_string(),
            batch_size: 4,
            skip_invalid: false,
            operator: "restorer".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.imported, 8, "{summary}");
    assert_eq!(summary.chain_kept, 8, "every carried link verified: {summary}");
    for correlation in ["rr-x-a", "rr-x-b", "rr-x-c"] {
        let (source, _) = app.store.chain_of(correlation).await.unwrap();
        let (copy, _) = empty.store.chain_of(correlation).await.unwrap();
        let hashes = |events: &[auditgraph::entity::audit_event::Model]| {
            events
                .iter()
                .map(|e| (e.event_id, e.event_hash.clone(), e.chain_seq))
                .collect::<Vec<_>>()
        };
        assert_eq!(hashes(&copy), hashes(&source), "{correlation}");
        let chain = empty
            .ok(
                "query($c: String!) { verifyChain(correlationId: $c) { valid verifiedEvents } }",
                json!({"c": correlation}),
            )
            .await["verifyChain"]
            .clone();
        assert_eq!(chain["valid"], true, "{correlation}: {chain}");
    }
}

async fn a_touched_export_is_refused_where_it_was_touched(app: TestApp) {
    let ids = history(&app).await;
    let whole = String::from_utf8(export_lines(&app, &ExportFilter::default()).await).unwrap();
    let lines: Vec<&str> = whole.lines().collect();
    let edit = |f: &dyn Fn(Vec<String>) -> Vec<String>| -> ExportCheck {
        let changed = f(lines.iter().map(|l| l.to_string()).collect()).join("\n") + "\n";
        check(&app, changed.as_bytes())
    };
    let event_at = lines.iter().position(|l| l.contains(&ids[1])).unwrap();

    // An edited field: the event's hash no longer matches, nor the manifest's digest.
    let edited = edit(&|mut lines| {
        let mut event: Value = serde_json::from_str(&lines[event_at]).unwrap();
        event["event_data"] = json!({"n": 99});
        lines[event_at] = event.to_string();
        lines
    });
    assert!(!edited.ok());
    assert!(edited.broken_events.contains(&ids[1].parse().unwrap()), "{edited}");
    assert!(edited.to_string().contains("no longer matches its hash"), "{edited}");

    // A removed event: the chain after it and the log's root show it.
    let removed = edit(&|mut lines| {
        lines.remove(event_at);
        lines
    });
    assert!(!removed.ok());
    assert!(!removed.root_matches, "{removed}");

    // Recomputed hashes do not help: the root and the signed manifest still disagree.
    let cut = edit(&|mut lines| {
        lines.pop();
        lines
    });
    assert!(cut.to_string().contains("without its signed manifest"), "{cut}");

    // Another key's export is not this log's.
    let other = tempfile::tempdir().unwrap();
    let stranger = LogSigner::load_or_create(&other.path().join("k"), "auditgraph.local/log").unwrap();
    let key = VerifierKey::parse(stranger.verifier()).unwrap();
    let foreign = export::verify_input(whole.as_bytes(), &key, app.store.hasher()).unwrap();
    assert!(!foreign.ok());
    assert!(foreign.to_string().contains("does not verify"), "{foreign}");
}

async fn the_rest_export_speaks_kubernauts_document_and_streams_the_proof(app: TestApp) {
    history(&app).await;
    let (status, _, document) = app
        .rest(
            "GET",
            "/api/v1/audit/export?correlation_id=rr-x-a&include_detached_signature=true",
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{document}");
    let metadata = &document["export_metadata"];
    for key in [
        "export_timestamp",
        "export_format",
        "query_filters",
        "total_events",
        "signature",
        "signature_algorithm",
        "certificate_fingerprint",
        "exported_by",
    ] {
        assert!(metadata.get(key).is_some(), "export_metadata.{key}: {metadata}");
    }
    assert_eq!(metadata["total_events"], 5);
    assert_eq!(metadata["exported_by"], "anonymous");
    assert_eq!(document["events"].as_array().unwrap().len(), 5);
    assert!(
        document["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["hash_chain_valid"] == true && e["legal_hold"].is_boolean())
    );
    let verification = &document["hash_chain_verification"];
    assert_eq!(verification["total_events_verified"], 5);
    assert_eq!(verification["broken_chain_events"], 0);
    assert_eq!(verification["chain_integrity_percentage"], 100.0);
    assert_eq!(verification["tampered_event_ids"], json!([]));
    assert_eq!(document["detached_signature"], metadata["signature"]);

    // The document checks out offline, and a changed event does not.
    let text = document.to_string();
    let report = check(&app, text.as_bytes());
    assert!(report.ok(), "{report}");
    assert!(!report.log_proof);
    let mut touched = document.clone();
    touched["events"][0]["actor_id"] = json!("someone-else");
    let report = check(&app, touched.to_string().as_bytes());
    assert!(!report.ok());
    assert!(
        report.to_string().contains("signed manifest does not match"),
        "{report}"
    );

    // Paged, and refused with reasons.
    let (_, _, page) = app
        .rest(
            "GET",
            "/api/v1/audit/export?correlation_id=rr-x-a&offset=1&limit=2",
            None,
            &[],
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["events"][0]["event_id"], document["events"][1]["event_id"]);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("format=xml", "format"),
        ("redact_pii=true", "redact_pii"),
        ("start_time=yesterday-ish", "start_time"),
        ("colour=blue", "colour"),
    ] {
        let (status, _, problem) = app
            .rest("GET", &format!("/api/v1/audit/export?{query}"), None, &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{query}: {problem}"
        );
    }

    // The stream: the whole log's proof, verified like a file.
    let (status, content_type, body) = app.rest("GET", "/api/v1/audit/export?format=ndjson", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/x-ndjson");
    let report = check(&app, body.as_str().unwrap().as_bytes());
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, 8);
    assert!(report.root_matches);

    // More than 10,000 events is too large for a document, not for the stream.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for n in 0..10_001 {
        let line = json!({"event_id": Uuid::now_v7(), "version": "1.0", "event_type": "bulk.loaded",
            "event_timestamp": format!("2026-11-01T00:00:{:02}.{:06}Z", n % 60, n), "event_category": "bulk",
            "event_action": "loaded", "event_outcome": "success", "correlation_id": format!("rr-bulk-{}", n % 50),
            "event_data": {}});
        writeln!(file, "{line}").unwrap();
    }
    import::run(
        &app.store,
        &ImportOptions {
            source: file.path().display().to_string(),
            batch_size: 5_000,
            skip_invalid: false,
            operator: "test".into(),
        },
    )
    .await
    .unwrap();
    let (status, _, problem) = app
        .rest("GET", "/api/v1/audit/export?event_category=bulk", None, &[])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("format=ndjson"),
        "{problem}"
    );
    let (status, _, body) = app
        .rest(
            "GET",
            "/api/v1/audit/export?format=ndjson&event_category=bulk",
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let report = check(&app, body.as_str().unwrap().as_bytes());
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, 10_001);
}
