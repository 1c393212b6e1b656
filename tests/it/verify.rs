//! `auditgraph verify`: an untouched database checks out, and each way of tampering with it around
//! the triggers is found by the check that can see it, naming the event, leaf or checkpoint.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use auditgraph::domain::chain::ChainHasher;
use auditgraph::domain::checkpoint::{Checkpoint, SignerKey, VerifierKey};
use auditgraph::domain::merkle::{self, Hash, MemoryTree, NodeId};
use auditgraph::entity::audit_event::{Column, Model};
use auditgraph::ops::log::{LogSigner, Publisher};
use auditgraph::ops::verify::{self, VerifyReport};
use auditgraph::store::event_leaf;
use sea_orm::{DatabaseBackend, IdenStatic, Iterable};
use serde_json::json;

use crate::both_engines;
use crate::helpers::{TestApp, as_attacker, id_literal};

both_engines!(
    an_untouched_database_checks_out_and_the_command_exits_zero,
    an_edited_field_is_found_in_its_chain,
    a_deleted_event_is_missing_from_its_chain_and_from_its_leaf,
    a_row_inserted_around_the_triggers_is_not_in_the_log,
    a_chain_rewritten_with_recomputed_hashes_disagrees_with_the_log_and_the_command_exits_one,
    a_rewritten_chain_with_rewritten_leaves_and_nodes_disagrees_with_the_signed_roots,
    a_checkpoint_signed_by_another_key_is_refused,
    events_hashed_before_the_log_existed_join_it_and_a_publisher_refuses_a_rewritten_log,
    a_rewritten_subtree_node_is_found,
    an_event_without_a_hash_stored_after_hash_chains_began_is_found,
);

/// Two checkpoints over nine events in two correlations, and a tenth event still pending.
const A: &str = "rr-verify-a";
const B: &str = "rr-verify-b";
const LATE: &str = "rr-verify-late";

/// The app's log, written through the API, sequenced and signed at sizes 7 and 9; returns the
/// log's verifier key and the ids written, by correlation, in write order.
async fn logged(app: &TestApp) -> (VerifierKey, HashMap<&'static str, Vec<String>>) {
    let key_file = app.keys.path().join("log.key");
    let signer = LogSigner::load_or_create(&key_file, "auditgraph.local/log").unwrap();
    let publisher = Publisher::new(app.store.clone(), Arc::new(signer));
    let mut ids: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut write = async |correlation: &'static str, count: usize| {
        for n in 0..count {
            let event = app
                .create(json!({"correlationId": correlation, "eventData": {"n": n}}))
                .await;
            ids.entry(correlation)
                .or_default()
                .push(event["eventId"].as_str().unwrap().to_string());
        }
    };
    write(A, 4).await;
    write(B, 5).await;
    assert_eq!(publisher.sequence_all().await.unwrap(), 9);
    let key = SignerKey::parse(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
    sign(app, &key, 7).await;
    sign(app, &key, 9).await;
    write(LATE, 1).await;
    let verifier = verify::verifier_key(None, &key_file).unwrap();
    (verifier, ids)
}

/// Stores a checkpoint of the first `size` stored leaves signed by `key`. Signed from the leaves,
/// as the publisher signs from the nodes, so that these tests rest only on what verify reads.
async fn sign(app: &TestApp, key: &SignerKey, size: u64) {
    let leaves = app.store.log_leaves(0, size).await.unwrap();
    assert_eq!(leaves.len() as u64, size);
    let mut tree = MemoryTree::new();
    for leaf in &leaves {
        tree.push(leaf.hash);
    }
    let checkpoint = Checkpoint::new("auditgraph.local/log", size, tree.root()).unwrap();
    let note = key.sign_checkpoint(&checkpoint).unwrap();
    app.store.save_checkpoint(size, &tree.root(), &note).await.unwrap();
}

async fn verified(app: &TestApp, verifier: &VerifierKey) -> VerifyReport {
    verify::run(&app.store, Some(verifier)).await.unwrap()
}

/// Runs the real binary's `verify` on the app's database and key; returns its exit code, standard
/// output and standard error.
async fn verify_command(app: &TestApp) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"));
    command
        .arg("verify")
        .env("DATABASE_URL", &app.url)
        .env("AUDITGRAPH_LOG_KEY_FILE", app.keys.path().join("log.key"))
        .env_remove("AUDITGRAPH_HASH_KEY_FILE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn bytes_literal(app: &TestApp, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match app.store.backend() {
        DatabaseBackend::Postgres => format!("'\\x{hex}'::bytea"),
        _ => format!("X'{hex}'"),
    }
}

/// Edits the second event of `correlation` and recomputes its chain from there, head included,
/// as anyone who knows the published recipe can; returns the chain as rewritten.
async fn rewrite_chain(app: &TestApp, correlation: &str) -> Vec<Model> {
    let (mut events, _) = app.store.chain_of(correlation).await.unwrap();
    events[1].event_outcome = "failure".into();
    let hasher = ChainHasher::default();
    let mut statements = Vec::new();
    for i in 1..events.len() {
        let previous = (
            events[i - 1].chain_seq.unwrap(),
            events[i - 1].event_hash.clone().unwrap(),
        );
        hasher.link(&mut events[i], Some((previous.0, &previous.1)));
        statements.push(format!(
            "UPDATE audit_events SET event_outcome = '{}', event_hash = '{}', previous_event_hash = '{}' \
             WHERE event_id = {}",
            events[i].event_outcome,
            events[i].event_hash.as_deref().unwrap(),
            previous.1,
            id_literal(app, events[i].event_id)
        ));
    }
    let last = events.last().unwrap();
    statements.push(format!(
        "UPDATE audit_chain_heads SET last_hash = '{}' WHERE correlation_id = '{correlation}'",
        last.event_hash.as_deref().unwrap()
    ));
    as_attacker(app, &statements).await;
    events
}

async fn an_untouched_database_checks_out_and_the_command_exits_zero(app: TestApp) {
    let (verifier, _) = logged(&app).await;
    let report = verified(&app, &verifier).await;
    assert!(report.ok(), "{report}");
    assert_eq!(
        (
            report.chains.correlations,
            report.chains.verified,
            report.chains.unchained
        ),
        (3, 10, 0)
    );
    assert_eq!((report.log.leaves, report.log.matched, report.log.pending), (9, 9, 1));
    assert_eq!(
        (
            report.checkpoints.checkpoints,
            report.checkpoints.signatures_valid,
            report.checkpoints.roots_match_up_to
        ),
        (2, 2, 9)
    );

    let (code, stdout, stderr) = verify_command(&app).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "chains: 3 correlations, 10 events verified, 0 unchained (stored before hash chains), 0 broken"
    );
    assert_eq!(lines[1], "log: 9 leaves match their events, 1 pending");
    assert!(
        lines[2].starts_with("checkpoints: 2 signatures valid, roots match the events up to tree size 9"),
        "{stdout}"
    );
    assert_eq!(lines[3], "verify: everything checks out");
    assert_eq!(lines.len(), 4, "{stdout}");
}

async fn an_edited_field_is_found_in_its_chain(app: TestApp) {
    let (verifier, ids) = logged(&app).await;
    as_attacker(
        &app,
        &[format!(
            "UPDATE audit_events SET event_outcome = 'failure' WHERE event_id = {}",
            id_literal(&app, &ids[A][1])
        )],
    )
    .await;
    let report = verified(&app, &verifier).await;
    assert_eq!(report.chains.broken, 1, "{report}");
    let first = report.chains.first.as_deref().unwrap();
    assert!(first.starts_with(&format!("event {} ", ids[A][1])), "{first}");
    assert!(first.contains("content_changed"), "{first}");
    // The hash itself was not touched, so the log still agrees with it.
    assert_eq!((report.log.problems, report.checkpoints.problems), (0, 0), "{report}");
    assert_eq!(report.verdict(), "verify: 1 problem found");
}

async fn a_deleted_event_is_missing_from_its_chain_and_from_its_leaf(app: TestApp) {
    let (verifier, ids) = logged(&app).await;
    as_attacker(
        &app,
        &[format!(
            "DELETE FROM audit_events WHERE event_id = {}",
            id_literal(&app, &ids[A][1])
        )],
    )
    .await;
    let report = verified(&app, &verifier).await;
    let chain = report.chains.first.as_deref().unwrap();
    assert!(chain.starts_with(&format!("event {} ", ids[A][2])), "{chain}");
    assert!(chain.contains("missing_events"), "{chain}");
    let log = report.log.first.as_deref().unwrap();
    assert!(
        log.starts_with(&format!("leaf 1 names event {} ", ids[A][1])) && log.contains("not stored"),
        "{log}"
    );
    assert_eq!((report.log.problems, report.log.matched), (1, 8), "{report}");
    assert_eq!(report.checkpoints.problems, 0, "{report}");
}

async fn a_row_inserted_around_the_triggers_is_not_in_the_log(app: TestApp) {
    let (verifier, ids) = logged(&app).await;
    // A forged event in a correlation of its own, with a valid chain of one and its head, so that
    // the chains alone cannot tell it from a real one.
    let (source, _) = app.store.chain_of(A).await.unwrap();
    let mut forged = source[0].clone();
    forged.event_id = uuid::Uuid::now_v7();
    forged.correlation_id = "rr-verify-forged".into();
    ChainHasher::default().link(&mut forged, None);
    let hash = forged.event_hash.clone().unwrap();
    let columns: Vec<&str> = Column::iter()
        .map(|c| c.as_str())
        .filter(|c| *c != "event_id")
        .collect();
    let columns = columns.join(", ");
    as_attacker(
        &app,
        &[
            format!(
                "INSERT INTO audit_events (event_id, {columns}) SELECT {}, {columns} FROM audit_events \
                 WHERE event_id = {}",
                id_literal(&app, forged.event_id),
                id_literal(&app, &ids[A][0])
            ),
            format!(
                "UPDATE audit_events SET correlation_id = '{}', event_hash = '{hash}' WHERE event_id = {}",
                forged.correlation_id,
                id_literal(&app, forged.event_id)
            ),
            format!(
                "INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) VALUES ('{}', 1, '{hash}')",
                forged.correlation_id
            ),
        ],
    )
    .await;
    let report = verified(&app, &verifier).await;
    assert_eq!((report.chains.correlations, report.chains.broken), (4, 0), "{report}");
    assert_eq!(report.log.problems, 1, "{report}");
    let first = report.log.first.as_deref().unwrap();
    assert!(
        first.starts_with(&format!("event {} ", forged.event_id)) && first.contains("is not in the log"),
        "{first}"
    );
    assert_eq!(report.log.pending, 1, "{report}");
}

async fn a_chain_rewritten_with_recomputed_hashes_disagrees_with_the_log_and_the_command_exits_one(app: TestApp) {
    let (verifier, ids) = logged(&app).await;
    rewrite_chain(&app, B).await;
    let report = verified(&app, &verifier).await;
    // Events 2 to 5 of the chain carry new hashes: each differs from its leaf.
    assert_eq!((report.chains.broken, report.log.problems), (4, 4), "{report}");
    let chain = report.chains.first.as_deref().unwrap();
    assert!(
        chain.starts_with(&format!("event {} ", ids[B][1])) && chain.contains("log_mismatch"),
        "{chain}"
    );
    let log = report.log.first.as_deref().unwrap();
    assert!(log.starts_with(&format!("leaf 5 (event {})", ids[B][1])), "{log}");
    assert_eq!(report.checkpoints.problems, 0, "the leaves are intact: {report}");

    let (code, stdout, stderr) = verify_command(&app).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("chains: first problem: event {} ", ids[B][1])),
        "{stdout}"
    );
    assert!(stdout.contains("log: first problem: leaf 5 "), "{stdout}");
    assert!(!stdout.contains("verify:"), "{stdout}");
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some("error: verify: 8 problems found"),
        "{stderr}"
    );
}

async fn a_rewritten_chain_with_rewritten_leaves_and_nodes_disagrees_with_the_signed_roots(app: TestApp) {
    let (verifier, _) = logged(&app).await;
    let rewritten = rewrite_chain(&app, B).await;
    let leaves: Vec<String> = rewritten[1..]
        .iter()
        .map(|e| {
            format!(
                "UPDATE audit_log_leaves SET leaf_hash = {} WHERE event_id = {}",
                bytes_literal(&app, &event_leaf(e.event_hash.as_deref().unwrap())),
                id_literal(&app, e.event_id)
            )
        })
        .collect();
    as_attacker(&app, &leaves).await;
    // Every perfect subtree recomputed from the new leaves, so the server's own proofs agree.
    let leaves = app.store.log_leaves(0, 100).await.unwrap();
    let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
    let mut rows = Vec::new();
    for (size, leaf) in leaves.iter().enumerate() {
        for (level, index, hash) in merkle::append(&nodes, size as u64, leaf.hash).unwrap() {
            nodes.insert((level, index), hash);
            rows.push(format!("({level}, {index}, {})", bytes_literal(&app, &hash)));
        }
    }
    as_attacker(
        &app,
        &[
            "DELETE FROM audit_log_nodes".to_string(),
            format!(
                "INSERT INTO audit_log_nodes (level, node_index, hash) VALUES {}",
                rows.join(", ")
            ),
        ],
    )
    .await;

    let report = verified(&app, &verifier).await;
    assert_eq!((report.chains.broken, report.log.problems), (0, 0), "{report}");
    assert_eq!(report.checkpoints.problems, 2, "{report}");
    assert_eq!(report.checkpoints.signatures_valid, 2, "{report}");
    assert_eq!(report.checkpoints.roots_match_up_to, 0, "{report}");
    let first = report.checkpoints.first.as_deref().unwrap();
    assert!(
        first.starts_with("checkpoint of size 7: its root ") && first.contains("is not the root"),
        "{first}"
    );
}

async fn a_checkpoint_signed_by_another_key_is_refused(app: TestApp) {
    let (verifier, _) = logged(&app).await;
    // The right size and root, under the log's name, but not its key.
    let (forger, _, _) = SignerKey::generate("auditgraph.local/log").unwrap();
    sign(&app, &forger, 8).await;

    let report = verified(&app, &verifier).await;
    assert_eq!((report.chains.broken, report.log.problems), (0, 0), "{report}");
    assert_eq!(
        (
            report.checkpoints.checkpoints,
            report.checkpoints.signatures_valid,
            report.checkpoints.roots_match_up_to,
            report.checkpoints.problems
        ),
        (3, 2, 9, 1),
        "{report}"
    );
    let first = report.checkpoints.first.as_deref().unwrap();
    assert!(
        first.starts_with("checkpoint of size 8: its signature does not verify"),
        "{first}"
    );
    assert!(
        report
            .details()
            .to_string()
            .contains("checkpoints: 2 of 3 signatures valid"),
        "{report}"
    );
}

/// A database whose events carried hashes before the log existed (imported history) gets them as
/// the log's first leaves, and verifies; and once a checkpoint is signed, the publisher will not
/// sign a log whose stored tree no longer has that checkpoint's root.
async fn events_hashed_before_the_log_existed_join_it_and_a_publisher_refuses_a_rewritten_log(app: TestApp) {
    use migration::{Migrator, MigratorTrait};
    Migrator::down(app.store.db(), Some(1)).await.unwrap();
    let mut old = crate::helpers::row(uuid::Uuid::now_v7(), chrono::Utc::now(), None, "rr-before-the-log");
    old.event_hash = Some("cd".repeat(32));
    old.chain_note = Some("imported with a hash this server cannot verify: test".into());
    app.insert_rows(&[old.clone()]).await;
    Migrator::up(app.store.db(), None).await.unwrap();

    let signer = Arc::new(LogSigner::load_or_create(&app.keys.path().join("log.key"), "auditgraph.local/log").unwrap());
    let publisher = Publisher::new(app.store.clone(), signer.clone());
    app.create(json!({"correlationId": "rr-after-the-log"})).await;
    assert_eq!(publisher.sequence_all().await.unwrap(), 2);
    let first = app.store.log_leaves(0, 1).await.unwrap();
    assert_eq!(first[0].event_id, old.event_id, "the older event is the first leaf");
    let checkpoint = publisher.publish().await.unwrap().unwrap();
    assert_eq!(checkpoint.tree_size, 2);
    let key = VerifierKey::parse(signer.verifier()).unwrap();
    let report = verified(&app, &key).await;
    assert!(report.ok(), "{report}");

    // The attacker replaces the first leaf's hash and the nodes above it: the next checkpoint is
    // refused rather than signed over the rewritten tree.
    app.create(json!({"correlationId": "rr-after-the-log"})).await;
    let forged = event_leaf(&"ef".repeat(32));
    let mut tree = MemoryTree::new();
    tree.push(forged);
    tree.push(app.store.log_leaves(1, 1).await.unwrap()[0].hash);
    let level_one = tree.root();
    let hex = |h: &Hash| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let bytes = |h: &Hash| match app.store.backend() {
        DatabaseBackend::Postgres => format!("'\\x{}'", hex(h)),
        _ => format!("X'{}'", hex(h)),
    };
    as_attacker(
        &app,
        &[
            format!(
                "UPDATE audit_log_leaves SET leaf_hash = {} WHERE leaf_index = 0",
                bytes(&forged)
            ),
            format!(
                "UPDATE audit_log_nodes SET hash = {} WHERE level = 0 AND node_index = 0",
                bytes(&forged)
            ),
            format!(
                "UPDATE audit_log_nodes SET hash = {} WHERE level = 1 AND node_index = 0",
                bytes(&level_one)
            ),
        ],
    )
    .await;
    publisher.sequence_all().await.unwrap();
    let refused = publisher.publish().await.expect_err("a rewritten log is not signed");
    assert!(
        refused
            .to_string()
            .contains("no longer matches its checkpoint of size 2"),
        "{refused}"
    );
}

/// A node rewritten alone (the leaves untouched) would give proofs that do not verify: the check
/// of the log compares every node with the tree rebuilt from the leaves.
async fn a_rewritten_subtree_node_is_found(app: TestApp) {
    let signer = Arc::new(LogSigner::load_or_create(&app.keys.path().join("log.key"), "auditgraph.local/log").unwrap());
    let publisher = Publisher::new(app.store.clone(), signer.clone());
    for _ in 0..4 {
        app.create(json!({"correlationId": "rr-nodes"})).await;
    }
    publisher.sequence_all().await.unwrap();
    let key = VerifierKey::parse(signer.verifier()).unwrap();
    assert!(verified(&app, &key).await.ok());
    let forged = match app.store.backend() {
        DatabaseBackend::Postgres => format!("'\\x{}'", "ab".repeat(32)),
        _ => format!("X'{}'", "ab".repeat(32)),
    };
    as_attacker(
        &app,
        &[format!(
            "UPDATE audit_log_nodes SET hash = {forged} WHERE level = 1 AND node_index = 1"
        )],
    )
    .await;
    let report = verified(&app, &key).await;
    assert!(!report.ok());
    assert_eq!(report.log.problems, 1, "{report}");
    assert!(
        report
            .log
            .first
            .as_deref()
            .unwrap()
            .contains("subtree node (level 1, index 1)"),
        "{report}"
    );
}

/// Every event stored since hash chains began has a hash; one without, inserted around the
/// triggers, stands out against the count recorded when they began.
async fn an_event_without_a_hash_stored_after_hash_chains_began_is_found(app: TestApp) {
    let key = VerifierKey::parse(
        LogSigner::load_or_create(&app.keys.path().join("log.key"), "auditgraph.local/log")
            .unwrap()
            .verifier(),
    )
    .unwrap();
    app.create(json!({"correlationId": "rr-baseline"})).await;
    assert!(verified(&app, &key).await.ok());
    let unhashed = crate::helpers::row(uuid::Uuid::now_v7(), chrono::Utc::now(), None, "rr-baseline");
    app.insert_rows(&[unhashed]).await;
    let report = verified(&app, &key).await;
    assert!(!report.ok());
    assert!(
        report
            .chains
            .first
            .as_deref()
            .unwrap()
            .contains("1 events without a hash were stored after hash chains began"),
        "{report}"
    );
}
