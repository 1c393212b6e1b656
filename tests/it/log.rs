//! The transparency log through the API: every event becomes a leaf in a gapless order, signed
//! checkpoints open with the published verifier key, and inclusion and consistency proofs check
//! against them with the RFC 9162 verifiers; several sequencers on one database never disagree.

use std::collections::HashSet;

use auditgraph::domain::checkpoint::{VerifierKey, open};
use auditgraph::domain::merkle::{Hash, verify_consistency, verify_inclusion};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::{Engine, TestApp, brief, event_input};

both_engines!(
    checkpoints_and_proofs_check_against_each_other,
    a_rewritten_chain_disagrees_with_the_log,
    a_checkpoint_stored_twice_keeps_the_first,
);

const CHECKPOINT: &str = "{ logCheckpoint { treeSize rootHash note verifierKey createdAt } }";
const INCLUSION: &str = "query($id: UUID!, $size: Int) { inclusionProof(eventId: $id, treeSize: $size) { eventId \
    leafIndex leafHash treeSize hashes rootHash } }";
const CONSISTENCY: &str = "query($from: Int!, $to: Int) { consistencyProof(fromSize: $from, toSize: $to) { fromSize \
    toSize fromRoot toRoot hashes } }";

fn hash(text: &Value) -> Hash {
    STANDARD.decode(text.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(list: &Value) -> Vec<Hash> {
    list.as_array().unwrap().iter().map(hash).collect()
}

async fn checkpoint(app: &TestApp) -> Value {
    app.ok(CHECKPOINT, json!({})).await["logCheckpoint"].clone()
}

async fn checkpoints_and_proofs_check_against_each_other(app: TestApp) {
    assert_eq!(checkpoint(&app).await, Value::Null, "an empty log has no checkpoint");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create(json!({"correlationId": format!("rr-log-{}", i % 2)})).await["eventId"].clone());
    }
    let first = checkpoint(&app).await;
    assert_eq!(first["treeSize"], 5, "{}", brief(&first));
    let key = VerifierKey::parse(first["verifierKey"].as_str().unwrap()).unwrap();
    let opened = open(first["note"].as_str().unwrap(), &key).expect("the note opens with the verifier key");
    assert_eq!(opened.size, 5);
    assert_eq!(opened.root, hash(&first["rootHash"]));
    assert_eq!(opened.origin, "auditgraph.local/log");

    let data = app
        .ok(
            "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { eventId } }",
            json!({"inputs": (0..6).map(|_| event_input(json!({"correlationId": "rr-log-batch"}))).collect::<Vec<_>>()}),
        )
        .await;
    ids.extend(
        data["createAuditEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["eventId"].clone()),
    );
    let second = checkpoint(&app).await;
    assert_eq!(second["treeSize"], 11);
    let root = hash(&second["rootHash"]);

    // Every event is one leaf, at a distinct index, provable in the newest tree.
    let mut indexes = HashSet::new();
    for id in &ids {
        let proof = app.ok(INCLUSION, json!({"id": id})).await["inclusionProof"].clone();
        assert_eq!(proof["treeSize"], 11);
        let index = proof["leafIndex"].as_u64().unwrap();
        assert!(indexes.insert(index), "leaf {index} given twice");
        assert!(
            verify_inclusion(&hash(&proof["leafHash"]), index, 11, &hashes(&proof["hashes"]), &root),
            "{}",
            brief(&proof)
        );
        assert_eq!(hash(&proof["rootHash"]), root);
    }
    assert_eq!(indexes, (0..11).collect(), "gapless from 0");
    // The first events are provable in the first checkpoint's tree too.
    let proof = app.ok(INCLUSION, json!({"id": ids[0], "size": 5})).await["inclusionProof"].clone();
    assert!(verify_inclusion(
        &hash(&proof["leafHash"]),
        proof["leafIndex"].as_u64().unwrap(),
        5,
        &hashes(&proof["hashes"]),
        &opened.root
    ));

    let proof = app.ok(CONSISTENCY, json!({"from": 5})).await["consistencyProof"].clone();
    assert_eq!(
        (proof["fromSize"].as_u64(), proof["toSize"].as_u64()),
        (Some(5), Some(11))
    );
    assert!(verify_consistency(
        5,
        11,
        &opened.root,
        &root,
        &hashes(&proof["hashes"])
    ));
    assert!(!verify_consistency(
        5,
        11,
        &root,
        &opened.root,
        &hashes(&proof["hashes"])
    ));

    for (query, variables, argument) in [
        (INCLUSION, json!({"id": ids[10], "size": 5}), "treeSize"),
        (CONSISTENCY, json!({"from": 0}), "fromSize"),
        (CONSISTENCY, json!({"from": 12}), "fromSize"),
    ] {
        let error = app.error(query, variables).await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{}", brief(&error));
        assert_eq!(error["extensions"]["argument"], argument);
    }
    let error = app.error(INCLUSION, json!({"id": uuid::Uuid::now_v7()})).await;
    assert_eq!(error["extensions"]["code"], "NOT_FOUND");
}

async fn a_rewritten_chain_disagrees_with_the_log(app: TestApp) {
    use sea_orm::{ConnectionTrait, DatabaseBackend};
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create(json!({"correlationId": "rr-rewritten"})).await);
    }
    checkpoint(&app).await;
    // The attacker changes the second event and recomputes its hash and every one after it, and
    // the head: a chain that checks out by itself.
    let (mut events, _) = app.store.chain_of("rr-rewritten").await.unwrap();
    events[1].event_outcome = "failure".into();
    let hasher = auditgraph::domain::chain::ChainHasher::default();
    for i in 1..3 {
        let previous = (
            events[i - 1].chain_seq.unwrap(),
            events[i - 1].event_hash.clone().unwrap(),
        );
        hasher.link(&mut events[i], Some((previous.0, &previous.1)));
    }
    let literal = |id: uuid::Uuid| match app.store.backend() {
        DatabaseBackend::Postgres => format!("'{id}'"),
        _ => format!("X'{}'", id.simple()),
    };
    let mut statements = Vec::new();
    for event in &events[1..] {
        statements.push(format!(
            "UPDATE audit_events SET event_outcome = '{}', event_hash = '{}', previous_event_hash = '{}' WHERE event_id = {}",
            event.event_outcome,
            event.event_hash.as_deref().unwrap(),
            event.previous_event_hash.as_deref().unwrap(),
            literal(event.event_id)
        ));
    }
    statements.push(format!(
        "UPDATE audit_chain_heads SET last_hash = '{}' WHERE correlation_id = 'rr-rewritten'",
        events[2].event_hash.as_deref().unwrap()
    ));
    let db = app.store.db();
    match app.store.backend() {
        DatabaseBackend::Postgres => {
            statements.insert(0, "SET session_replication_role = replica".into());
            statements.push("SET session_replication_role = origin".into());
            let pool = db.get_postgres_connection_pool();
            let mut connection = pool.acquire().await.unwrap();
            for sql in statements {
                sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql))
                    .execute(&mut *connection)
                    .await
                    .unwrap();
            }
        }
        _ => {
            db.execute_unprepared("DROP TRIGGER trg_audit_events_immutable")
                .await
                .unwrap();
            for sql in statements {
                db.execute_unprepared(&sql).await.unwrap();
            }
        }
    }
    let report = app
        .ok(
            "{ verifyChain(correlationId: \"rr-rewritten\") { valid breaks { eventId kind } } }",
            json!({}),
        )
        .await["verifyChain"]
        .clone();
    assert_eq!(report["valid"], false, "{}", brief(&report));
    let breaks = report["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 2, "{}", brief(&report));
    assert!(breaks.iter().all(|b| b["kind"] == "LOG_MISMATCH"), "{}", brief(&report));
    assert_eq!(breaks[0]["eventId"], created[1]["eventId"]);
}

/// Two server processes sequence the same database while writers write through both: every
/// event gets exactly one leaf, and the indexes have no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sequencers_on_one_database_give_every_event_one_leaf_without_gaps() {
    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    let second = auditgraph::store::Store::connect(
        &auditgraph::config::Config::for_database(&app.url)
            .store_options()
            .unwrap(),
    )
    .await
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sequencers = Vec::new();
    for store in [app.store.clone(), second] {
        let stop = stop.clone();
        sequencers.push(tokio::spawn(async move {
            let mut added = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                added += store.sequence_pending(7).await.unwrap();
                tokio::task::yield_now().await;
            }
            added
        }));
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let router = app.router.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..15 {
                let body = json!({"query": "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { eventId } }",
                    "variables": {"input": event_input(json!({"correlationId": format!("rr-seq-{w}")}))}});
                let request = axum::http::Request::post("/graphql")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap();
                let response = tower::ServiceExt::oneshot(router.clone(), request).await.unwrap();
                assert_eq!(response.status(), axum::http::StatusCode::OK);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let started = std::time::Instant::now();
    while app.store.log_pending().await.unwrap() > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120) && sequencers.iter().all(|s| !s.is_finished()),
            "the sequencers stopped before the queue emptied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for sequencer in sequencers {
        total += sequencer.await.unwrap();
    }
    assert_eq!(total, 60);
    let leaves = app.store.log_leaves(0, 1_000).await.unwrap();
    assert_eq!(leaves.len(), 60);
    let indexes: Vec<u64> = leaves.iter().map(|l| l.index).collect();
    assert_eq!(indexes, (0..60).collect::<Vec<_>>());
    let events: HashSet<uuid::Uuid> = leaves.iter().map(|l| l.event_id).collect();
    assert_eq!(events.len(), 60, "no event was sequenced twice");
}

/// Every event passes through the log's queue: the sequencer vacuums the queue's table as entries
/// leave it, so that removed rows do not pile up where autovacuum is off or behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencer_vacuums_the_queue_it_empties() {
    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    use sea_orm::ConnectionTrait;
    let vacuums = || async {
        let row = app
            .store
            .db()
            .query_one_raw(sea_orm::Statement::from_string(
                app.store.backend(),
                "SELECT vacuum_count AS n FROM pg_stat_user_tables \
                 WHERE relname = 'audit_log_pending'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    let before = vacuums().await;
    // Rows carrying a hash are queued by the database as they go in.
    let count = usize::try_from(auditgraph::store::VACUUM_QUEUE_EVERY).unwrap() + 100;
    let now = chrono::Utc::now();
    let rows: Vec<_> = (0..count)
        .map(|n| {
            let mut row = crate::helpers::row(uuid::Uuid::now_v7(), now, None, &format!("vacuum-{}", n % 50));
            row.event_hash = Some(format!("{n:064x}"));
            row
        })
        .collect();
    app.insert_rows(&rows).await;
    assert_eq!(app.store.log_pending().await.unwrap(), count as u64);
    while app.store.log_pending().await.unwrap() > 0 {
        app.store.sequence_pending_now(1_000).await.unwrap();
    }
    assert_eq!(app.store.log_size().await.unwrap(), count as u64);
    // Statistics reach the view within a second or so.
    let started = std::time::Instant::now();
    while vacuums().await == before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the queue was not vacuumed after {count} entries left it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Two writers of a checkpoint of one size (the publisher and a request asking for one, or two
/// processes): the second leaves the first in place and succeeds, on both engines.
async fn a_checkpoint_stored_twice_keeps_the_first(app: TestApp) {
    let root: Hash = [7; 32];
    app.store.save_checkpoint(5, &root, "first").await.unwrap();
    app.store.save_checkpoint(5, &[8; 32], "second").await.unwrap();
    let stored = app.store.checkpoints().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].note, "first");
}
