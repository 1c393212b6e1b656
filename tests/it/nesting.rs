//! Nested trees through dataloaders, and the limits on what one query may ask for.

use serde_json::json;

use crate::both_engines;
use crate::helpers::{TestApp, brief};

both_engines!(
    fifty_roots_with_children_and_grandchildren_cost_at_most_four_statements,
    children_pages_respect_each_parents_page_size,
    queries_beyond_the_depth_or_complexity_limits_are_rejected,
    every_selection_shows_stored_values_whichever_columns_it_reads,
    nested_levels_written_in_one_pass_match_the_resolvers,
    responses_written_ahead_are_the_bytes_the_value_tree_gives,
);

const TREE: &str = "{ auditEvents(first: 50, filter: {rootsOnly: true}) { totalCount edges { node { eventId \
    children(first: 10) { edges { node { eventId parentEventId \
      children(first: 10) { edges { node { eventId parentEventId } } } } } } } } } }";

async fn fifty_roots_with_children_and_grandchildren_cost_at_most_four_statements(app: TestApp) {
    for r in 0..50 {
        let root = app.create(json!({"correlationId": format!("rr-{r}")})).await;
        for _ in 0..2 {
            let child = app
                .create(json!({"parentEventId": root["eventId"], "correlationId": format!("rr-{r}")}))
                .await;
            for _ in 0..2 {
                app.create(json!({"parentEventId": child["eventId"], "correlationId": format!("rr-{r}")}))
                    .await;
            }
        }
    }
    let before = app.store.statements_executed();
    let data = app.ok(TREE, json!({})).await;
    let statements = app.store.statements_executed() - before;
    assert!(statements <= 4, "the nested query took {statements} SQL statements");

    let roots = data["auditEvents"]["edges"].as_array().unwrap();
    assert_eq!(roots.len(), 50);
    assert_eq!(data["auditEvents"]["totalCount"], 50);
    for root in roots {
        let children = root["node"]["children"]["edges"].as_array().unwrap();
        assert_eq!(children.len(), 2);
        for child in children {
            assert_eq!(child["node"]["parentEventId"], root["node"]["eventId"]);
            let grandchildren = child["node"]["children"]["edges"].as_array().unwrap();
            assert_eq!(grandchildren.len(), 2);
            for g in grandchildren {
                assert_eq!(g["node"]["parentEventId"], child["node"]["eventId"]);
            }
        }
    }
}

async fn children_pages_respect_each_parents_page_size(app: TestApp) {
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    let mut parents = Vec::new();
    for (p, fanout) in [5, 1, 0].into_iter().enumerate() {
        let parent = app.create(json!({"correlationId": format!("p-{p}")})).await;
        let mut kids = Vec::new();
        for k in 0..fanout {
            let ts = base + chrono::Duration::seconds(k);
            let kid = app
                .create(json!({"parentEventId": parent["eventId"], "eventTimestamp": ts.to_rfc3339()}))
                .await;
            kids.push(kid["eventId"].as_str().unwrap().to_string());
        }
        parents.push((parent, kids));
    }
    let query = "query($after: String) { auditEvents(filter: {rootsOnly: true}) { edges { node { correlationId \
        childCount children(first: 2, after: $after) { totalCount edges { cursor node { eventId } } \
        pageInfo { hasNextPage hasPreviousPage endCursor } } } } } }";
    let data = app.ok(query, json!({})).await;
    let by_corr = |data: &serde_json::Value, corr: &str| {
        data["auditEvents"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["correlationId"] == corr)
            .unwrap()["node"]
            .clone()
    };
    let ids = |node: &serde_json::Value| -> Vec<String> {
        node["children"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["eventId"].as_str().unwrap().to_string())
            .collect()
    };
    let big = by_corr(&data, "p-0");
    assert_eq!(ids(&big), parents[0].1[..2], "oldest children first, two of five");
    assert_eq!(big["childCount"], 5);
    assert_eq!(big["children"]["totalCount"], 5);
    assert_eq!(big["children"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(big["children"]["pageInfo"]["hasPreviousPage"], false);
    let one = by_corr(&data, "p-1");
    assert_eq!(ids(&one), parents[1].1);
    assert_eq!(one["children"]["pageInfo"]["hasNextPage"], false);
    let none = by_corr(&data, "p-2");
    assert!(ids(&none).is_empty());
    assert_eq!(none["childCount"], 0);

    // The next page of the big parent, from its end cursor.
    let after = big["children"]["pageInfo"]["endCursor"].clone();
    let data = app.ok(query, json!({"after": after})).await;
    let big = by_corr(&data, "p-0");
    assert_eq!(ids(&big), parents[0].1[2..4]);
    assert_eq!(big["children"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(big["children"]["pageInfo"]["hasPreviousPage"], true);
}

async fn queries_beyond_the_depth_or_complexity_limits_are_rejected(app: TestApp) {
    app.create(json!({})).await;
    let mut deep = String::from("eventId");
    for _ in 0..20 {
        deep = format!("parent {{ {deep} }}");
    }
    let body = app
        .graphql(
            &format!("{{ auditEvents(first: 1) {{ edges {{ node {{ {deep} }} }} }} }}"),
            json!({}),
        )
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("nested too deep"), "{}", brief(&body));
    assert!(body.get("data").is_none_or(|d| d.is_null()), "{}", brief(&body));

    let wide = "{ auditEvents(first: 1000) { edges { node { children(first: 1000) { edges { node { \
                children(first: 1000) { edges { node { eventId } } } } } } } } } }";
    let body = app.graphql(wide, json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("complex"), "{}", brief(&body));

    // The same shape with modest page sizes is fine.
    let modest = wide.replace("1000", "10");
    app.ok(&modest, json!({})).await;
}

/// Reads fetch only the columns their selection shows; whatever the selection, through whichever
/// path (a page, `children` under two aliases, `parent`, `root` of a root), each field shows the
/// stored value, never a column left unread.
async fn every_selection_shows_stored_values_whichever_columns_it_reads(app: TestApp) {
    let root = app
        .create(json!({"correlationId": "proj", "actorId": "root-actor", "eventData": {"who": "root"}}))
        .await;
    let child = app
        .create(
            json!({"correlationId": "proj", "parentEventId": root["eventId"], "actorId": "child-actor",
            "eventData": {"who": "child"}}),
        )
        .await;
    let query = "query($root: UUID!, $child: UUID!) {
        page: auditEvents(filter: {correlationId: \"proj\"}) { nodes { eventId root { actorId eventData } } }
        slim: auditEvents(filter: {correlationId: \"proj\"}) { edges { node { eventId } } }
        top: auditEvent(eventId: $root) {
          ids: children { nodes { eventId } }
          full: children { nodes { eventId actorId eventData retentionDays hashAlgorithm eventHash chainSeq } }
        }
        low: auditEvent(eventId: $child) { parent { actorId eventData ... on AuditEvent { chainSeq } }
          depth ids: ancestors { eventId } ancestors { actorId eventData } root { actorId eventData } }
        walk: auditEvent(eventId: $root) { slim: descendants { nodes { eventId } }
          descendants { edges { depth node { actorId eventData } } } }
      }";
    let data = app
        .ok(query, json!({"root": root["eventId"], "child": child["eventId"]}))
        .await;
    let page = data["page"]["nodes"].as_array().unwrap();
    assert_eq!(page.len(), 2, "{}", brief(&data));
    for node in page {
        assert_eq!(node["root"]["actorId"], "root-actor", "{}", brief(&data));
        assert_eq!(node["root"]["eventData"], json!({"who": "root"}), "{}", brief(&data));
    }
    assert_eq!(data["slim"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(data["top"]["ids"]["nodes"][0]["eventId"], child["eventId"]);
    let full = &data["top"]["full"]["nodes"][0];
    assert_eq!(full["actorId"], "child-actor", "{}", brief(&data));
    assert_eq!(full["eventData"], json!({"who": "child"}));
    assert_eq!(full["retentionDays"], child["retentionDays"]);
    assert_eq!(full["hashAlgorithm"], "sha256-unkeyed");
    assert_eq!(full["chainSeq"], 2);
    assert_eq!(full["eventHash"].as_str().map(str::len), Some(64));
    let parent = &data["low"]["parent"];
    assert_eq!(parent["actorId"], "root-actor", "{}", brief(&data));
    assert_eq!(parent["eventData"], json!({"who": "root"}));
    assert_eq!(parent["chainSeq"], 1);
    let low = &data["low"];
    assert_eq!(low["depth"], 1);
    assert_eq!(low["ids"][0]["eventId"], root["eventId"]);
    assert_eq!(low["ancestors"][0]["actorId"], "root-actor", "{}", brief(&data));
    assert_eq!(low["ancestors"][0]["eventData"], json!({"who": "root"}));
    assert_eq!(low["root"]["actorId"], "root-actor");
    assert_eq!(low["root"]["eventData"], json!({"who": "root"}));
    let walk = &data["walk"];
    assert_eq!(walk["slim"]["nodes"][0]["eventId"], child["eventId"]);
    assert_eq!(walk["descendants"]["edges"][0]["depth"], 1);
    assert_eq!(
        walk["descendants"]["edges"][0]["node"]["actorId"],
        "child-actor",
        "{}",
        brief(&data)
    );
    assert_eq!(
        walk["descendants"]["edges"][0]["node"]["eventData"],
        json!({"who": "child"})
    );
}

/// Removes every `childCount` key, at any depth.
fn without_child_counts(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("childCount");
            map.values_mut().for_each(without_child_counts);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_child_counts),
        _ => {}
    }
}

/// A nested query whose levels are all stored values is written in one pass from the pages
/// fetched ahead; the same query with `childCount` on every event goes through the resolvers.
/// Both answers agree, aliases, cursors and page information included.
async fn nested_levels_written_in_one_pass_match_the_resolvers(app: TestApp) {
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    for r in 0..3 {
        let root = app.create(json!({"correlationId": format!("one-{r}")})).await;
        for c in 0..3 {
            let ts = base + chrono::Duration::seconds(r * 10 + c);
            let child = app
                .create(json!({"parentEventId": root["eventId"], "eventTimestamp": ts.to_rfc3339()}))
                .await;
            for g in 0..c {
                let ts = base + chrono::Duration::seconds(r * 10 + c + g + 1);
                app.create(json!({"parentEventId": child["eventId"], "eventTimestamp": ts.to_rfc3339()}))
                    .await;
            }
        }
    }
    let query = |extra: &str| {
        format!(
            "{{ auditEvents(first: 10, filter: {{rootsOnly: true}}) {{ edges {{ cursor node {{ eventId {extra} \
               two: children(first: 2) {{ edges {{ cursor node {{ eventId parentEventId {extra} \
                 children(first: 1) {{ nodes {{ eventId {extra} }} pageInfo {{ hasNextPage endCursor }} }} }} }} \
                 pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} \
               children {{ nodes {{ __typename eventType }} }} }} }} }} }}"
        )
    };
    let before = app.store.statements_executed();
    let direct = app.ok(&query(""), json!({})).await;
    let statements = app.store.statements_executed() - before;
    assert!(statements <= 5, "the nested query took {statements} SQL statements");
    let mut resolved = app.ok(&query("childCount"), json!({})).await;
    assert_eq!(resolved["auditEvents"]["edges"][0]["node"]["childCount"], 3);
    without_child_counts(&mut resolved);
    assert_eq!(direct, resolved);

    let roots = direct["auditEvents"]["edges"].as_array().unwrap();
    assert_eq!(roots.len(), 3, "{}", brief(&direct));
    for root in roots {
        let two = root["node"]["two"]["edges"].as_array().unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(root["node"]["two"]["pageInfo"]["hasNextPage"], true);
        assert_eq!(root["node"]["children"]["nodes"].as_array().unwrap().len(), 3);
        assert_eq!(two[0]["node"]["children"]["nodes"].as_array().unwrap().len(), 0);
        assert_eq!(two[1]["node"]["children"]["nodes"].as_array().unwrap().len(), 1);
        assert_eq!(two[1]["node"]["children"]["pageInfo"]["hasNextPage"], false);
    }
}

/// What is resolved at once is written as JSON straight from the events; a query that selects a
/// key twice in one selection set is answered through the value tree instead (two values of a key
/// are merged). Both give the same text, escapes, numbers, nulls and key order included.
async fn responses_written_ahead_are_the_bytes_the_value_tree_gives(app: TestApp) {
    let data = json!({"tab": "a\tb", "quote": "say \"hi\"", "n": [1, -2.5, 0.1, null, true], "ü": {"deep": []}});
    let root = app
        .create(json!({"correlationId": "ahead", "eventData": data, "actorIp": null}))
        .await;
    for c in 0..3 {
        let child = app
            .create(json!({"parentEventId": root["eventId"], "correlationId": "ahead", "eventData": {"c": c}}))
            .await;
        app.create(json!({"parentEventId": child["eventId"], "correlationId": "ahead"}))
            .await;
    }
    let fields = "eventId eventType eventTimestamp eventDate eventData parentEventId actorIp chainSeq legalHold \
                  retentionDays severity";
    let query = |again: &str| {
        format!(
            "{{ auditEvents(first: 10, filter: {{correlationId: \"ahead\"}}) {{ edges {{ cursor node {{ {fields} {again} \
               children(first: 2) {{ nodes {{ {fields} }} pageInfo {{ hasNextPage endCursor }} }} }} }} \
               pageInfo {{ hasNextPage endCursor }} }} \
               auditEvent(eventId: \"{}\") {{ __typename descendants(first: 5) {{ edges {{ cursor depth node {{ {fields} }} }} \
               pageInfo {{ hasNextPage }} }} }} }}",
            root["eventId"].as_str().unwrap()
        )
    };
    let ahead = app.graphql_text(&query(""), json!({})).await;
    let merged = app.graphql_text(&query("eventId"), json!({})).await;
    assert_eq!(ahead, merged);
    assert!(!ahead.contains("\"errors\""), "{ahead}");
    assert!(ahead.contains(r#""tab":"a\tb""#), "{ahead}");
    let body: serde_json::Value = serde_json::from_str(&ahead).unwrap();
    let edges = body["data"]["auditEvents"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 7, "{}", brief(&body));
    let written = edges.iter().find(|e| e["node"]["eventId"] == root["eventId"]).unwrap();
    assert_eq!(written["node"]["eventData"], data);
    assert_eq!(written["node"]["actorIp"], serde_json::Value::Null);
    assert_eq!(written["node"]["children"]["nodes"].as_array().unwrap().len(), 2);
    let descendants = body["data"]["auditEvent"]["descendants"]["edges"].as_array().unwrap();
    assert_eq!(descendants.len(), 5, "{}", brief(&body));
}
