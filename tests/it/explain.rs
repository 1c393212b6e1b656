//! Query plans on partitioned PostgreSQL with 100,000 events over several monthly partitions:
//! pages of children are read through the children index (BR-STORAGE-036), each no further than
//! it needs, and ancestor and descendant walks prune partitions.

use auditgraph::domain::{EventKey, PageWindow};
use auditgraph::store::{Columns, WalkStart};
use chrono::{Datelike, Months, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Engine, TestApp};

/// 25,000 roots with three children each, one root every six minutes over about 104 days, and a
/// chain of 60 events one day apart: 100,060 events in five or six monthly partitions.
const SEED: &str = "
INSERT INTO audit_events (event_id, event_timestamp, event_date, event_type, event_category, event_action,
    event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, event_data)
SELECT md5('root' || i)::uuid, ts, (ts AT TIME ZONE 'UTC')::date, 'plan.root', 'plan', 'root', 'success',
    'service', 'plan', 'plan', 'r' || i, 'corr-' || i, '{}'::jsonb
FROM (SELECT i, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '100 days'
             + i * interval '6 minutes' AS ts
      FROM generate_series(1, 25000) AS i) AS roots;

INSERT INTO audit_events (event_id, event_timestamp, event_date, event_type, event_category, event_action,
    event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, event_data,
    parent_event_id, parent_event_date)
SELECT md5('child' || i || '-' || j)::uuid, ts + j * interval '1 second',
    ((ts + j * interval '1 second') AT TIME ZONE 'UTC')::date, 'plan.child', 'plan', 'child', 'success',
    'service', 'plan', 'plan', 'r' || i, 'corr-' || i, '{}'::jsonb, md5('root' || i)::uuid,
    (ts AT TIME ZONE 'UTC')::date
FROM (SELECT i, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '100 days'
             + i * interval '6 minutes' AS ts
      FROM generate_series(1, 25000) AS i) AS roots, generate_series(1, 3) AS j;

INSERT INTO audit_events (event_id, event_timestamp, event_date, event_type, event_category, event_action,
    event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, event_data,
    parent_event_id, parent_event_date)
SELECT md5('chain' || k)::uuid, ts, (ts AT TIME ZONE 'UTC')::date, 'plan.chain', 'plan', 'chain', 'success',
    'service', 'plan', 'plan', 'chain', 'chain', '{}'::jsonb,
    CASE WHEN k > 1 THEN md5('chain' || (k - 1))::uuid END,
    CASE WHEN k > 1 THEN ((ts - interval '1 day') AT TIME ZONE 'UTC')::date END
FROM (SELECT k, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '61 days'
             + k * interval '1 day' AS ts
      FROM generate_series(1, 60) AS k) AS chain
ORDER BY k;

ANALYZE audit_events;
";

/// Every plan node below `node`, depth-first.
fn nodes(node: &Value, out: &mut Vec<Value>) {
    out.push(node.clone());
    for child in node["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

/// The scans of partitions below `node`: (partition, node type, index name, actual loops).
fn scans(node: &Value) -> Vec<(String, String, String, u64)> {
    let mut all = Vec::new();
    nodes(node, &mut all);
    all.iter()
        .filter_map(|n| {
            let relation = n["Relation Name"].as_str()?;
            relation.starts_with("audit_events_").then(|| {
                (
                    relation.to_string(),
                    n["Node Type"].as_str().unwrap_or_default().to_string(),
                    n["Index Name"].as_str().unwrap_or_default().to_string(),
                    n["Actual Loops"].as_u64().unwrap_or(0),
                )
            })
        })
        .collect()
}

/// The recursive union of a walk's plan.
fn recursive_union(plan: &Value) -> Value {
    let mut all = Vec::new();
    nodes(plan, &mut all);
    all.into_iter()
        .find(|n| n["Node Type"] == "Recursive Union")
        .expect("a recursive plan")
}

/// The scans of `plan` of partitions (months) older than the month of `date`.
fn scans_older_than(plan: &Value, date: NaiveDate) -> Vec<(String, String, String, u64)> {
    scans(plan)
        .into_iter()
        .filter(|s| s.0.as_str() < partition_of(date).as_str())
        .collect()
}

/// The rows the partition scans below `node` produced, over all their loops.
fn rows_read(node: &Value) -> f64 {
    let mut all = Vec::new();
    nodes(node, &mut all);
    all.iter()
        .filter(|n| {
            n["Relation Name"]
                .as_str()
                .is_some_and(|r| r.starts_with("audit_events_"))
        })
        .map(|n| n["Actual Rows"].as_f64().unwrap_or(0.0) * n["Actual Loops"].as_f64().unwrap_or(0.0))
        .sum()
}

async fn explain(app: &TestApp, stmt: Statement) -> Value {
    let explained = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", stmt.sql),
        stmt.values.map(|v| v.0).unwrap_or_default(),
    );
    let row = app.store.db().query_one_raw(explained).await.unwrap().unwrap();
    let plan: Value = row.try_get("", "QUERY PLAN").unwrap();
    plan[0]["Plan"].clone()
}

async fn rows_in(app: &TestApp, partition: &str) -> i64 {
    let row = app
        .store
        .db()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT COUNT(*) AS n FROM {partition}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

fn partition_of(date: NaiveDate) -> String {
    format!("audit_events_{:04}_{:02}", date.year(), date.month())
}

async fn key_of(app: &TestApp, seed: &str) -> EventKey {
    let row = app
        .store
        .db()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT event_id, event_date FROM audit_events WHERE event_id = md5('{seed}')::uuid"),
        ))
        .await
        .unwrap()
        .unwrap();
    EventKey {
        id: row.try_get::<Uuid>("", "event_id").unwrap(),
        date: row.try_get("", "event_date").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_children_pages_read_only_their_rows_and_walks_prune_partitions() {
    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    let this_month = Utc::now().date_naive().with_day(1).unwrap();
    for back in 0..=5 {
        app.store
            .ensure_partition(this_month - Months::new(back))
            .await
            .unwrap();
    }
    app.store.db().execute_unprepared(SEED).await.unwrap();
    assert_eq!(app.row_count().await, 100_060);

    // Children of 50 roots from the middle of the range, one to a page: each parent's page is
    // read from the children index on its own, two rows (the page and the one that tells whether
    // more follow) of its three children, and never from a partition older than its day before.
    let mut parents = Vec::new();
    for i in 12_000..12_050 {
        parents.push(key_of(&app, &format!("root{i}")).await);
    }
    let oldest_parent = parents.iter().map(|k| k.date).min().unwrap();
    let plan = explain(
        &app,
        app.store
            .children_pages_statement(&parents, &PageWindow::forward(1, None), Columns::keys()),
    )
    .await;
    let scanned = scans(&plan);
    let mut populated = 0;
    for (partition, node_type, index, loops) in &scanned {
        if partition.as_str() < partition_of(oldest_parent - chrono::Days::new(1)).as_str() {
            assert_eq!(
                *loops, 0,
                "{partition} is older than the day before the oldest parent and must not be read"
            );
        }
        if *loops > 0 && rows_in(&app, partition).await > 0 {
            populated += 1;
            assert!(
                index.contains("parent_event_id_parent_event_date"),
                "children in {partition} must be found through the children index, not a {node_type}"
            );
        }
    }
    assert!(populated >= 2, "the lookup spans populated partitions: {scanned:?}");
    assert_eq!(
        rows_read(&plan),
        100.0,
        "two children of each of the 50 parents: {plan}"
    );

    // Ancestors of the last event of a chain spanning two months: one partition per step.
    let leaf = key_of(&app, "chain60").await;
    let plan = explain(&app, app.store.ancestors_statement(&[leaf], Columns::keys())).await;
    let union = recursive_union(&plan);
    let start = scans(&union["Plans"][0]);
    assert_eq!(
        start.len(),
        1,
        "the start row is read from its own partition only: {start:?}"
    );
    assert_eq!(start[0].0, partition_of(leaf.date));
    let steps = scans(&union["Plans"][1]);
    let visits: u64 = steps.iter().map(|s| s.3).sum();
    assert_eq!(
        visits, 59,
        "each of the 59 steps visits exactly one partition: {steps:?}"
    );
    let touched = steps.iter().filter(|s| s.3 > 0).count();
    assert!(touched <= 3, "the chain spans at most three months: {steps:?}");
    assert!(
        steps.iter().all(|s| s.1 == "Index Scan" || s.3 == 0),
        "steps use the primary key: {steps:?}"
    );

    // The same walk from the leaf's id alone, the leaf looked up by the statement itself: the
    // steps still visit one partition each.
    let plan = explain(&app, app.store.event_and_ancestors_statement(leaf.id, Columns::keys())).await;
    let steps = scans(&recursive_union(&plan)["Plans"][1]);
    let visits: u64 = steps.iter().map(|s| s.3).sum();
    assert_eq!(visits, 59, "from the id, one partition per step too: {steps:?}");

    // Descendants of the chain's first event skip every partition older than its day before.
    let first = key_of(&app, "chain1").await;
    let stmt = app.store.count_descendants_statement(first, 100);
    let older = scans_older_than(&explain(&app, stmt).await, first.date - chrono::Days::new(1));
    assert!(!older.is_empty(), "older partitions exist in the plan");
    assert!(
        older.iter().all(|s| s.3 == 0),
        "older partitions are never executed: {older:?}"
    );
    // A page of them from the id alone, the event looked up by the statement itself: neither
    // the lookup (newest partition first, up to the one holding it) nor the walk reads an
    // older partition.
    let stmt = app
        .store
        .descendants_statement(WalkStart::Id(first.id), 100, None, 101, Columns::keys());
    let older = scans_older_than(&explain(&app, stmt).await, first.date - chrono::Days::new(1));
    assert!(!older.is_empty(), "older partitions exist in the plan");
    assert!(
        older.iter().all(|s| s.3 == 0),
        "from the id, older partitions are never executed: {older:?}"
    );
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { descendants(maxDepth: 100) { totalCount } } }",
            serde_json::json!({"id": first.id}),
        )
        .await;
    assert_eq!(data["auditEvent"]["descendants"]["totalCount"], 59);

    // A page after a cursor in an older month leaves the newer partitions out of the plan.
    let cursor_key = key_of(&app, "root12000").await;
    let row = app
        .store
        .find_event(cursor_key.id, Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    let cursor = auditgraph::domain::Cursor::new(row.event_timestamp, row.event_id);
    let stmt = app.store.list_events_statement(
        &auditgraph::domain::EventFilter::default(),
        &PageWindow::forward(50, Some(cursor)),
        auditgraph::domain::page::Order::NewestFirst,
        Columns::ALL,
    );
    let plan = explain(&app, stmt).await;
    let scanned: Vec<String> = scans(&plan).into_iter().map(|s| s.0).collect();
    let cursor_partition = partition_of(cursor_key.date);
    assert!(
        cursor_partition < partition_of(this_month),
        "the cursor lies in an older month"
    );
    assert!(scanned.contains(&cursor_partition), "{scanned:?}");
    assert!(
        scanned.iter().all(|p| p.as_str() <= cursor_partition.as_str()),
        "no partition newer than the cursor's is planned: {scanned:?}"
    );
}

/// A batch's chain heads are probed in the primary key one by one, however many heads the table
/// holds and however many the batch reads: never a scan of the whole table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_batch_reads_its_chain_heads_through_the_primary_key() {
    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    app.store
        .db()
        .execute_unprepared(
            "INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash) \
             SELECT 'corr-' || k, 1, md5(k::text) FROM generate_series(1, 50000) AS k; \
             ANALYZE audit_chain_heads;",
        )
        .await
        .unwrap();
    for count in [1, 10, 500] {
        let wanted: Vec<String> = (0..count).map(|k| format!("corr-{}", k * 97 + 1)).collect();
        let ids: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let plan = explain(&app, app.store.heads_statement(&ids)).await;
        let mut all = Vec::new();
        nodes(&plan, &mut all);
        let on_heads: Vec<&Value> = all
            .iter()
            .filter(|n| n["Relation Name"] == "audit_chain_heads")
            .collect();
        assert!(!on_heads.is_empty(), "{plan}");
        for node in on_heads {
            assert_eq!(node["Node Type"], "Index Scan", "{count} heads: {plan}");
            assert_eq!(node["Index Name"], "audit_chain_heads_pkey", "{count} heads: {plan}");
        }
        let found: f64 = all
            .iter()
            .filter(|n| n["Relation Name"] == "audit_chain_heads")
            .map(|n| n["Actual Rows"].as_f64().unwrap() * n["Actual Loops"].as_f64().unwrap())
            .sum();
        assert_eq!(found, f64::from(count), "every head asked for is found: {plan}");
    }
}
