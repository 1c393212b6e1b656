//! Causality exploration: ancestors, descendants, whole trees, bounds and counts.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::{Engine, TestApp, assert_same_list, row};

both_engines!(
    a_five_thousand_deep_chain_across_a_month_boundary_is_walked_in_single_queries,
    a_ten_thousand_wide_fan_out_pages_and_bounds_cleanly,
    descendant_pages_cross_levels_in_breadth_first_order,
    a_mixed_tree_with_orphans_legacy_links_and_foreign_parents,
    tree_bounds_and_arguments_are_checked,
    counts_are_grouped_over_the_filter,
    a_walk_from_an_event_id_is_one_statement_from_its_newest_copy,
);

fn ids(list: &Value, path: &[&str]) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| path.iter().fold(item, |v, key| &v[*key]).as_str().unwrap().to_string())
        .collect()
}

fn id_strings(rows: &[auditgraph::entity::audit_event::Model]) -> Vec<String> {
    rows.iter().map(|r| r.event_id.to_string()).collect()
}

fn start_of_this_month() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap()
}

async fn a_five_thousand_deep_chain_across_a_month_boundary_is_walked_in_single_queries(app: TestApp) {
    let base = start_of_this_month() - Duration::seconds(2500);
    let mut rows: Vec<auditgraph::entity::audit_event::Model> = Vec::with_capacity(5000);
    for i in 0..5000 {
        let event = row(Uuid::now_v7(), base + Duration::seconds(i), rows.last(), "chain");
        rows.push(event);
    }
    assert_ne!(
        rows[0].event_date.month(),
        rows[4999].event_date.month(),
        "the chain spans two months"
    );
    app.insert_rows(&rows).await;
    let root = rows[0].event_id.to_string();
    let leaf = rows[4999].event_id.to_string();

    let before = app.store.statements_executed();
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { depth root { eventId } ancestors { eventId } } }",
            json!({"id": leaf}),
        )
        .await;
    let statements = app.store.statements_executed() - before;
    assert_eq!(statements, 1, "the event and its ancestors in one recursive statement");
    let event = &data["auditEvent"];
    assert_eq!(event["depth"], 4999);
    assert_eq!(event["root"]["eventId"], root.as_str());
    assert_same_list(
        &ids(&event["ancestors"], &["eventId"]),
        &id_strings(&rows[..4999]),
        "ancestors, root first, parent last",
    );

    let page = "query($id: UUID!, $after: String) { auditEvent(eventId: $id) { descendants(maxDepth: 10000, first: 1000, after: $after) { \
        totalCount edges { depth node { eventId } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let data = app.ok(page, json!({"id": root})).await;
    let first = &data["auditEvent"]["descendants"];
    assert_eq!(first["totalCount"], 4999);
    assert_same_list(
        &ids(&first["edges"], &["node", "eventId"]),
        &id_strings(&rows[1..=1000]),
        "the first page of descendants",
    );
    assert_eq!(first["edges"][999]["depth"], 1000);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    let data = app
        .ok(page, json!({"id": root, "after": first["pageInfo"]["endCursor"]}))
        .await;
    let second = &data["auditEvent"]["descendants"];
    assert_same_list(
        &ids(&second["edges"], &["node", "eventId"]),
        &id_strings(&rows[1001..=2000]),
        "the second page of descendants",
    );
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);

    let tree = "query($root: UUID, $corr: String, $depth: Int, $nodes: Int) { causalityTree(rootEventId: $root, \
        correlationId: $corr, maxDepth: $depth, maxNodes: $nodes) { nodeCount truncated missingParentEventIds \
        nodes { depth parentEventId event { eventId } } } }";
    for vars in [
        json!({"root": root, "depth": 10000, "nodes": 10000}),
        json!({"corr": "chain", "depth": 10000, "nodes": 10000}),
    ] {
        let data = app.ok(tree, vars.clone()).await;
        let t = &data["causalityTree"];
        assert_eq!(t["nodeCount"], 5000, "{vars}");
        assert_eq!(t["truncated"], false, "{vars}");
        assert_eq!(t["missingParentEventIds"], json!([]));
        assert_same_list(
            &ids(&t["nodes"], &["event", "eventId"]),
            &id_strings(&rows),
            "tree nodes",
        );
        assert_eq!(t["nodes"][4321]["depth"], 4321);
        assert_eq!(t["nodes"][4321]["parentEventId"], rows[4320].event_id.to_string());
    }
    let data = app.ok(tree, json!({"root": root, "depth": 100})).await;
    assert_eq!(data["causalityTree"]["nodeCount"], 101);
    assert_eq!(
        data["causalityTree"]["truncated"], true,
        "the depth bound cut the chain"
    );
}

async fn a_ten_thousand_wide_fan_out_pages_and_bounds_cleanly(app: TestApp) {
    let base = Utc::now() - Duration::hours(3);
    let root = row(Uuid::now_v7(), base, None, "fan");
    let mut rows = vec![root.clone()];
    for i in 0..10_000 {
        rows.push(row(
            Uuid::now_v7(),
            base + Duration::milliseconds(i + 1),
            Some(&root),
            "fan",
        ));
    }
    app.insert_rows(&rows).await;
    let root_id = root.event_id.to_string();

    let page = "query($id: UUID!, $after: String) { auditEvent(eventId: $id) { childCount \
        children(first: 1000, after: $after) { totalCount edges { node { eventId } } pageInfo { hasNextPage endCursor } } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.ok(page, json!({"id": root_id, "after": after})).await;
        let event = &data["auditEvent"];
        assert_eq!(event["childCount"], 10_000);
        assert_eq!(event["children"]["totalCount"], 10_000);
        seen.extend(ids(&event["children"]["edges"], &["node", "eventId"]));
        if event["children"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = event["children"]["pageInfo"]["endCursor"].clone();
    }
    assert_same_list(&seen, &id_strings(&rows[1..]), "every child once, oldest first");

    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { descendants(first: 3) { totalCount edges { depth } } } }",
            json!({"id": root_id}),
        )
        .await;
    assert_eq!(data["auditEvent"]["descendants"]["totalCount"], 10_000);
    assert_eq!(data["auditEvent"]["descendants"]["edges"][2]["depth"], 1);

    let tree = "query($root: UUID, $depth: Int, $nodes: Int) { causalityTree(rootEventId: $root, maxDepth: $depth, \
        maxNodes: $nodes) { nodeCount truncated maxNodes maxDepth } }";
    let cases = [
        (json!({"root": root_id}), 1000, true),
        (json!({"root": root_id, "nodes": 10000}), 10_000, true),
        (json!({"root": root_id, "depth": 1, "nodes": 10000}), 10_000, true),
    ];
    for (vars, count, truncated) in cases {
        let data = app.ok(tree, vars.clone()).await;
        assert_eq!(data["causalityTree"]["nodeCount"], count, "{vars}");
        assert_eq!(data["causalityTree"]["truncated"], truncated, "{vars}");
    }
    let data = app.ok(tree, json!({"root": rows[77].event_id})).await;
    assert_eq!(data["causalityTree"]["nodeCount"], 1);
    assert_eq!(data["causalityTree"]["truncated"], false);

    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { depth root { eventId } ancestors { eventId } } }",
            json!({"id": rows[5000].event_id}),
        )
        .await;
    assert_eq!(data["auditEvent"]["depth"], 1);
    assert_eq!(data["auditEvent"]["root"]["eventId"], root_id.as_str());
}

/// Pages that end inside a level, start inside one, or span several: each page walks only down to
/// the level of its last row, and the pages still join up into the whole breadth-first order.
async fn descendant_pages_cross_levels_in_breadth_first_order(app: TestApp) {
    let base = Utc::now() - Duration::hours(2);
    let root = row(Uuid::now_v7(), base, None, "bushy");
    let mut rows = vec![root.clone()];
    let mut expected = Vec::new();
    let mut level = vec![root.clone()];
    for depth in 1..=4 {
        let mut next = Vec::new();
        for (p, parent) in level.iter().enumerate() {
            for b in 0..3 {
                // Later parents' children come first in time, so timestamps alone are not the order.
                let offset = Duration::seconds(depth * 60) - Duration::milliseconds((p * 3 + b) as i64);
                let child = row(Uuid::now_v7(), base + offset, Some(parent), "bushy");
                next.push(child);
            }
        }
        let mut sorted = next.clone();
        sorted.sort_by_key(|c| (c.event_timestamp, c.event_id));
        expected.extend(sorted.iter().map(|c| (depth, c.event_id.to_string())));
        rows.extend(next.iter().cloned());
        level = next;
    }
    app.insert_rows(&rows).await;
    assert_eq!(expected.len(), 3 + 9 + 27 + 81);

    let page = "query($id: UUID!, $after: String, $first: Int, $depth: Int) { auditEvent(eventId: $id) { \
        descendants(first: $first, after: $after, maxDepth: $depth) { edges { depth node { eventId } } \
        pageInfo { hasNextPage endCursor } } } }";
    for (first, max_depth) in [(7, 100), (1, 100), (50, 3), (200, 100)] {
        let want: Vec<(i64, String)> = expected.iter().filter(|(d, _)| *d <= max_depth).cloned().collect();
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let vars = json!({"id": root.event_id, "after": after, "first": first, "depth": max_depth});
            let data = app.ok(page, vars).await;
            let connection = &data["auditEvent"]["descendants"];
            for edge in connection["edges"].as_array().unwrap() {
                seen.push((
                    edge["depth"].as_i64().unwrap(),
                    edge["node"]["eventId"].as_str().unwrap().to_string(),
                ));
            }
            if connection["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = connection["pageInfo"]["endCursor"].clone();
        }
        assert_same_list(&seen, &want, &format!("pages of {first} down to depth {max_depth}"));
    }
}

async fn a_mixed_tree_with_orphans_legacy_links_and_foreign_parents(app: TestApp) {
    let t0 = Utc::now() - Duration::hours(1);
    let at = |s: i64| t0 + Duration::seconds(s);
    let r = row(Uuid::now_v7(), at(0), None, "mixed");
    let a = row(Uuid::now_v7(), at(1), Some(&r), "mixed");
    let b = row(Uuid::now_v7(), at(2), Some(&r), "mixed");
    let a1 = row(Uuid::now_v7(), at(3), Some(&a), "mixed");
    let a2 = row(Uuid::now_v7(), at(4), Some(&a), "mixed");
    let b1 = row(Uuid::now_v7(), at(5), Some(&b), "mixed");
    let a2x = row(Uuid::now_v7(), at(6), Some(&a2), "mixed");
    // Imported without its parent: the parent id is unknown and there is no parent date.
    let mut o = row(Uuid::now_v7(), at(7), None, "mixed");
    o.parent_event_id = Some(Uuid::now_v7());
    let o1 = row(Uuid::now_v7(), at(8), Some(&o), "mixed");
    // A legacy link: the parent exists but the row predates parent dates; it stays a root of the
    // correlation tree until its link is completed.
    let mut l = row(Uuid::now_v7(), at(9), Some(&b), "mixed");
    l.parent_event_date = None;
    let q = row(Uuid::now_v7(), at(-100), None, "other");
    let x = row(Uuid::now_v7(), at(10), Some(&q), "mixed");
    app.insert_rows(&[
        r.clone(),
        a.clone(),
        b.clone(),
        a1.clone(),
        a2.clone(),
        b1.clone(),
        a2x.clone(),
        o.clone(),
        o1.clone(),
        l.clone(),
        q.clone(),
        x.clone(),
    ])
    .await;

    let data = app
        .ok(
            "{ causalityTree(correlationId: \"mixed\") { nodeCount truncated missingParentEventIds \
               nodes { depth parentEventId event { eventId } } } }",
            json!({}),
        )
        .await;
    let t = &data["causalityTree"];
    let expected = [
        (&r, 0),
        (&o, 0),
        (&l, 0),
        (&x, 0),
        (&a, 1),
        (&b, 1),
        (&o1, 1),
        (&a1, 2),
        (&a2, 2),
        (&b1, 2),
        (&a2x, 3),
    ];
    assert_eq!(t["nodeCount"], expected.len());
    assert_eq!(t["truncated"], false);
    for (node, (want, depth)) in t["nodes"].as_array().unwrap().iter().zip(expected) {
        assert_eq!(node["event"]["eventId"], want.event_id.to_string());
        assert_eq!(node["depth"], depth, "depth of {}", want.event_id);
    }
    assert_eq!(
        t["missingParentEventIds"],
        json!([o.event_id.to_string()]),
        "only o's parent is missing"
    );

    let descendants = "query($id: UUID!, $after: String, $depth: Int) { auditEvent(eventId: $id) { \
        descendants(first: 2, after: $after, maxDepth: $depth) { edges { depth node { eventId } } \
        pageInfo { hasNextPage hasPreviousPage endCursor } } } }";
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.ok(descendants, json!({"id": r.event_id, "after": after})).await;
        let conn = data["auditEvent"]["descendants"].clone();
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], !after.is_null());
        pages.push(ids(&conn["edges"], &["node", "eventId"]));
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    let s = |m: &auditgraph::entity::audit_event::Model| m.event_id.to_string();
    assert_eq!(
        pages,
        vec![vec![s(&a), s(&b)], vec![s(&a1), s(&a2)], vec![s(&b1), s(&a2x)]],
        "breadth-first, linked rows only"
    );
    let data = app.ok(descendants, json!({"id": r.event_id, "depth": 1})).await;
    assert_eq!(
        ids(&data["auditEvent"]["descendants"]["edges"], &["node", "eventId"]),
        vec![s(&a), s(&b)]
    );
    assert_eq!(data["auditEvent"]["descendants"]["pageInfo"]["hasNextPage"], false);

    let up = "query($id: UUID!) { auditEvent(eventId: $id) { depth root { eventId } ancestors { eventId } } }";
    let data = app.ok(up, json!({"id": a2x.event_id})).await;
    assert_eq!(
        ids(&data["auditEvent"]["ancestors"], &["eventId"]),
        vec![s(&r), s(&a), s(&a2)]
    );
    assert_eq!(data["auditEvent"]["depth"], 3);
    let data = app.ok(up, json!({"id": o1.event_id})).await;
    assert_eq!(
        data["auditEvent"]["root"]["eventId"],
        s(&o),
        "the walk stops at an event whose parent is missing"
    );
    let data = app.ok(up, json!({"id": r.event_id})).await;
    assert_eq!(data["auditEvent"]["depth"], 0);
    assert_eq!(data["auditEvent"]["root"]["eventId"], s(&r));
    assert_eq!(data["auditEvent"]["ancestors"], json!([]));

    // Ancestors of a whole page come from one recursive statement.
    let before = app.store.statements_executed();
    let data = app
        .ok(
            "{ auditEvents(filter: {correlationId: \"mixed\"}) { edges { node { eventId depth ancestors { eventId } } } } }",
            json!({}),
        )
        .await;
    let statements = app.store.statements_executed() - before;
    assert!(statements <= 3, "a page with ancestors took {statements} statements");
    let by_id = |id: &str| {
        data["auditEvents"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["eventId"] == id)
            .unwrap()["node"]
            .clone()
    };
    assert_eq!(by_id(&s(&a2x))["depth"], 3);
    assert_eq!(by_id(&s(&b1))["depth"], 2);
    assert_eq!(by_id(&s(&x))["depth"], 1, "x's parent lives in another correlation");
}

async fn tree_bounds_and_arguments_are_checked(app: TestApp) {
    let root = app.create(json!({})).await;
    let tree = "query($root: UUID, $corr: String, $depth: Int, $nodes: Int) { causalityTree(rootEventId: $root, \
        correlationId: $corr, maxDepth: $depth, maxNodes: $nodes) { nodeCount } }";
    let cases = [
        (
            json!({"root": root["eventId"], "depth": 0}),
            "BAD_USER_INPUT",
            "maxDepth",
        ),
        (
            json!({"root": root["eventId"], "depth": 10001}),
            "BAD_USER_INPUT",
            "maxDepth",
        ),
        (
            json!({"root": root["eventId"], "nodes": 0}),
            "BAD_USER_INPUT",
            "maxNodes",
        ),
        (
            json!({"root": root["eventId"], "nodes": 10001}),
            "BAD_USER_INPUT",
            "maxNodes",
        ),
        (
            json!({"root": root["eventId"], "corr": "rr-2026-001"}),
            "BAD_USER_INPUT",
            "correlationId",
        ),
        (json!({}), "BAD_USER_INPUT", "correlationId"),
    ];
    for (vars, code, field) in cases {
        let error = app.error(tree, vars.clone()).await;
        assert_eq!(error["extensions"]["code"], code, "{vars}: {error}");
        assert_eq!(error["extensions"]["field"], field, "{vars}: {error}");
    }
    let error = app.error(tree, json!({"root": Uuid::now_v7()})).await;
    assert_eq!(error["extensions"]["code"], "NOT_FOUND");

    let descendants = "query($id: UUID!, $depth: Int, $after: String) { auditEvent(eventId: $id) { \
        descendants(maxDepth: $depth, after: $after) { totalCount } } }";
    let error = app.error(descendants, json!({"id": root["eventId"], "depth": 0})).await;
    assert_eq!(error["extensions"]["field"], "maxDepth");
    let list_cursor =
        app.ok("{ auditEvents { edges { cursor } } }", json!({})).await["auditEvents"]["edges"][0]["cursor"].clone();
    let error = app
        .error(descendants, json!({"id": root["eventId"], "after": list_cursor}))
        .await;
    assert_eq!(
        error["extensions"]["field"], "after",
        "a listing cursor is not a descendants cursor: {error}"
    );

    let data = app.ok(tree, json!({"corr": "no-such-correlation"})).await;
    assert_eq!(data["causalityTree"]["nodeCount"], 0);
}

/// `auditEvent(eventId)` reads the event and the walk below or above it in one statement, from
/// the copy of the id the lookup alone gives (the newest, should legacy data hold it twice).
async fn a_walk_from_an_event_id_is_one_statement_from_its_newest_copy(app: TestApp) {
    let now = Utc::now();
    let (older, newer) = (now - Duration::days(5), now - Duration::days(1));
    let id = Uuid::now_v7();
    let grandparent = row(Uuid::now_v7(), newer - Duration::hours(2), None, "two-days");
    let old_copy = row(id, older, None, "two-days");
    let new_copy = row(id, newer, Some(&grandparent), "two-days");
    let child_of_old = row(Uuid::now_v7(), older + Duration::hours(1), Some(&old_copy), "two-days");
    let first = row(
        Uuid::now_v7(),
        newer + Duration::minutes(1),
        Some(&new_copy),
        "two-days",
    );
    let second = row(
        Uuid::now_v7(),
        newer + Duration::minutes(2),
        Some(&new_copy),
        "two-days",
    );
    let below_first = row(Uuid::now_v7(), newer + Duration::minutes(3), Some(&first), "two-days");
    app.insert_rows(&[
        grandparent.clone(),
        old_copy,
        new_copy.clone(),
        child_of_old,
        first.clone(),
        second.clone(),
        below_first.clone(),
    ])
    .await;
    let counted = |query: &'static str, vars: Value| {
        let app = &app;
        async move {
            let before = app.store.statements_executed();
            let data = app.ok(query, vars).await;
            (data, app.store.statements_executed() - before)
        }
    };

    let page = "query($id: UUID!, $first: Int, $after: String) { auditEvent(eventId: $id) { eventId eventDate \
        descendants(first: $first, after: $after) { edges { depth node { eventId eventType } } \
        pageInfo { hasNextPage endCursor } } } }";
    let (data, statements) = counted(page, json!({"id": id})).await;
    assert_eq!(statements, 1, "the event and its descendants in one statement");
    let event = &data["auditEvent"];
    assert_eq!(event["eventDate"], new_copy.event_date.to_string(), "the newest copy");
    assert_eq!(
        event["descendants"]["edges"],
        json!([
            {"depth": 1, "node": {"eventId": first.event_id, "eventType": "test.tree.node"}},
            {"depth": 1, "node": {"eventId": second.event_id, "eventType": "test.tree.node"}},
            {"depth": 2, "node": {"eventId": below_first.event_id, "eventType": "test.tree.node"}},
        ]),
        "the newest copy's descendants, not the older copy's child"
    );
    assert_eq!(event["descendants"]["pageInfo"]["hasNextPage"], false);

    let (data, statements) = counted(page, json!({"id": id, "first": 1})).await;
    assert_eq!(statements, 1);
    let cursor = data["auditEvent"]["descendants"]["pageInfo"]["endCursor"].clone();
    assert_eq!(data["auditEvent"]["descendants"]["pageInfo"]["hasNextPage"], true);
    let (data, statements) = counted(page, json!({"id": id, "first": 1, "after": cursor})).await;
    assert_eq!(statements, 1, "a page after a cursor too");
    assert_eq!(
        data["auditEvent"]["descendants"]["edges"][0]["node"]["eventId"],
        second.event_id.to_string()
    );

    let (data, statements) = counted(page, json!({"id": below_first.event_id})).await;
    assert_eq!(statements, 1);
    assert_eq!(data["auditEvent"]["eventId"], below_first.event_id.to_string());
    assert_eq!(data["auditEvent"]["descendants"]["edges"], json!([]), "a leaf");

    let up = "query($id: UUID!) { auditEvent(eventId: $id) { eventDate depth root { eventId } \
        ancestors { eventId eventDate } } }";
    let (data, statements) = counted(up, json!({"id": id})).await;
    assert_eq!(statements, 1, "the event and its ancestors in one statement");
    assert_eq!(
        data["auditEvent"],
        json!({
            "eventDate": new_copy.event_date.to_string(),
            "depth": 1,
            "root": {"eventId": grandparent.event_id},
            "ancestors": [{"eventId": grandparent.event_id, "eventDate": grandparent.event_date.to_string()}],
        })
    );
    let (data, _) = counted(up, json!({"id": below_first.event_id})).await;
    assert_eq!(data["auditEvent"]["depth"], 3);
    assert_same_list(
        &ids(&data["auditEvent"]["ancestors"], &["eventId"]),
        &id_strings(&[grandparent.clone(), new_copy.clone(), first.clone()]),
        "ancestors, root first, through the newest copy",
    );

    let both = "query($id: UUID!) { auditEvent(eventId: $id) { depth ancestors { eventId } \
        descendants(maxDepth: 1) { edges { node { eventId } } } } }";
    let (data, statements) = counted(both, json!({"id": id})).await;
    assert_eq!(statements, 2, "one walk with the event, the other after it");
    assert_eq!(data["auditEvent"]["depth"], 1);
    assert_eq!(
        data["auditEvent"]["ancestors"],
        json!([{"eventId": grandparent.event_id}])
    );
    assert_eq!(
        data["auditEvent"]["descendants"]["edges"],
        json!([{"node": {"eventId": first.event_id}}, {"node": {"eventId": second.event_id}}])
    );

    for query in [page, up] {
        let (data, statements) = counted(query, json!({"id": Uuid::now_v7()})).await;
        assert_eq!(data["auditEvent"], Value::Null, "an unknown id");
        assert_eq!(statements, 1);
    }

    // An event that shows more than its walk reads is read on its own, so that the walk's rows
    // do not carry it too.
    let wide = "query($id: UUID!) { auditEvent(eventId: $id) { eventData actorId \
        descendants(maxDepth: 1) { nodes { eventId } } } }";
    let (data, statements) = counted(wide, json!({"id": id})).await;
    assert_eq!(statements, 2, "the event, then its walk");
    assert_eq!(data["auditEvent"]["eventData"], json!({}));
    assert_eq!(data["auditEvent"]["actorId"], "test-service");
    assert_eq!(
        data["auditEvent"]["descendants"]["nodes"],
        json!([{"eventId": first.event_id}, {"eventId": second.event_id}])
    );

    // Two pages under aliases: the first is read with the event, the other on its own.
    let aliased = "query($id: UUID!) { auditEvent(eventId: $id) { \
        near: descendants(maxDepth: 1) { nodes { eventId } } \
        all: descendants(first: 2) { nodes { eventId } pageInfo { hasNextPage } } } }";
    let (data, statements) = counted(aliased, json!({"id": id})).await;
    assert_eq!(statements, 2);
    assert_eq!(
        data["auditEvent"]["near"]["nodes"],
        json!([{"eventId": first.event_id}, {"eventId": second.event_id}])
    );
    assert_eq!(
        data["auditEvent"]["all"],
        json!({"nodes": [{"eventId": first.event_id}, {"eventId": second.event_id}], "pageInfo": {"hasNextPage": true}})
    );

    // A walk left out by `@skip` or `@include` is not read.
    let directed = "query($id: UUID!, $on: Boolean!) { auditEvent(eventId: $id) { eventId \
        descendants @include(if: $on) { nodes { eventId } } \
        ancestors @skip(if: true) { eventId } } }";
    let (data, statements) = counted(directed, json!({"id": id, "on": false})).await;
    assert_eq!(statements, 1, "the event alone");
    assert_eq!(data["auditEvent"], json!({"eventId": id}));
    let (data, statements) = counted(directed, json!({"id": id, "on": true})).await;
    assert_eq!(statements, 1, "the event with its descendants");
    assert_eq!(data["auditEvent"]["descendants"]["nodes"].as_array().unwrap().len(), 3);
    assert!(data["auditEvent"].get("ancestors").is_none());
}

async fn counts_are_grouped_over_the_filter(app: TestApp) {
    for (category, outcome, severity) in [
        ("gateway", "success", Some("info")),
        ("gateway", "failure", Some("error")),
        ("gateway", "success", None),
        ("workflow", "success", Some("info")),
    ] {
        app.create(
            json!({"eventCategory": category, "eventOutcome": outcome, "severity": severity,
                          "eventType": format!("{category}.thing.{outcome}")}),
        )
        .await;
    }
    let q = "query($group: AuditEventGroupBy!, $filter: AuditEventFilter) { auditEventCounts(groupBy: $group, filter: $filter) { key count } }";
    let counts = |data: Value| data["auditEventCounts"].clone();
    assert_eq!(
        counts(app.ok(q, json!({"group": "CATEGORY"})).await),
        json!([{"key": "gateway", "count": 3}, {"key": "workflow", "count": 1}])
    );
    assert_eq!(
        counts(
            app.ok(q, json!({"group": "OUTCOME", "filter": {"eventCategory": "gateway"}}))
                .await
        ),
        json!([{"key": "success", "count": 2}, {"key": "failure", "count": 1}])
    );
    assert_eq!(
        counts(app.ok(q, json!({"group": "SEVERITY"})).await),
        json!([{"key": "info", "count": 2}, {"key": null, "count": 1}, {"key": "error", "count": 1}])
    );
    assert_eq!(
        counts(
            app.ok(q, json!({"group": "TYPE", "filter": {"eventTypePrefix": "workflow."}}))
                .await
        ),
        json!([{"key": "workflow.thing.success", "count": 1}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_query_past_its_timeout_ends_cleanly_and_the_server_keeps_serving() {
    let Some(app) = TestApp::with_config(Engine::Postgres, |c| c.tree_timeout_ms = 1).await else {
        return;
    };
    let base = Utc::now() - Duration::hours(2);
    let mut rows: Vec<auditgraph::entity::audit_event::Model> = Vec::with_capacity(5000);
    for i in 0..5000 {
        let event = row(Uuid::now_v7(), base + Duration::milliseconds(i), rows.last(), "slow");
        rows.push(event);
    }
    app.insert_rows(&rows).await;
    let query = "query($id: UUID!) { auditEvent(eventId: $id) { descendants(maxDepth: 10000, first: 1000) { totalCount edges { depth } } } }";
    for _ in 0..3 {
        let error = app.error(query, json!({"id": rows[0].event_id})).await;
        assert_eq!(error["extensions"]["code"], "TIMEOUT", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("maxDepth"),
            "the message says what to do: {error}"
        );
    }
    // The pool's connections came back healthy: ordinary queries and writes still work.
    let data = app.ok("{ auditEvents(first: 1) { totalCount } }", json!({})).await;
    assert_eq!(data["auditEvents"]["totalCount"], 5000);
    app.create(json!({})).await;
}
