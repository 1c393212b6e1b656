//! auditEvents against the Relay Cursor Connections specification, over the whole argument matrix.

use chrono::{Duration, DurationRound, Utc};
use serde_json::{Value, json};

use crate::both_engines;
use crate::helpers::TestApp;

both_engines!(
    every_combination_of_first_after_last_before_follows_the_relay_spec,
    paging_forwards_then_backwards_visits_every_event_once,
    bad_page_arguments_are_client_errors,
);

const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String) { \
    auditEvents(first: $first, after: $after, last: $last, before: $before) { \
      totalCount edges { cursor node { eventId } } \
      pageInfo { hasPreviousPage hasNextPage startCursor endCursor } } }";

/// Seven events whose timestamps exercise the ordering: whole seconds, milliseconds,
/// microseconds, and two pairs of equal timestamps (ordered by id). Returns (id, cursor) newest first.
async fn seed(app: &TestApp) -> Vec<(String, String)> {
    let base = (Utc::now() - Duration::hours(1))
        .duration_trunc(Duration::seconds(1))
        .unwrap();
    let offsets_us = [0, 500_000, 500_001, 1_000_000, 1_000_000, 2_000_000, 2_000_000];
    for us in offsets_us {
        let ts = base + Duration::microseconds(us);
        app.create(json!({"eventTimestamp": ts.to_rfc3339()})).await;
    }
    let data = app.ok(PAGE, json!({"first": 100})).await;
    let edges = data["auditEvents"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 7);
    edges
        .iter()
        .map(|e| {
            (
                e["node"]["eventId"].as_str().unwrap().to_string(),
                e["cursor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The page the Relay specification prescribes, over `all` (presentation order).
fn expected(
    all: &[(String, String)],
    first: Option<usize>,
    after: Option<usize>,
    last: Option<usize>,
    before: Option<usize>,
) -> (Vec<String>, bool, bool) {
    // ApplyCursorsToEdges
    let start = after.map_or(0, |a| a + 1);
    let end = before.unwrap_or(all.len()).max(start);
    let edges: Vec<String> = all[start.min(all.len())..end]
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    // A request without sizes takes the default page from the start (or the end with only `before`).
    let (first, last) = match (first, last) {
        (None, None) if before.is_some() && after.is_none() => (None, Some(50)),
        (None, None) => (Some(50), None),
        other => other,
    };
    let mut page = edges.clone();
    if let Some(f) = first {
        page.truncate(f);
    }
    if let Some(l) = last {
        page = page[page.len().saturating_sub(l)..].to_vec();
    }
    let has_previous = match (last, after) {
        (Some(l), _) => edges.len() > l,
        (None, Some(_)) => true, // the `after` element itself precedes the page
        (None, None) => false,
    };
    let has_next = match (first, before) {
        (Some(f), _) => edges.len() > f,
        (None, Some(_)) => true, // the `before` element itself follows the page
        (None, None) => false,
    };
    (page, has_previous, has_next)
}

async fn every_combination_of_first_after_last_before_follows_the_relay_spec(app: TestApp) {
    let all = seed(&app).await;
    let sizes = [None, Some(0), Some(1), Some(3), Some(7), Some(8)];
    let positions: Vec<Option<usize>> = std::iter::once(None).chain((0..all.len()).map(Some)).collect();
    let mut checked = 0;
    for first in sizes {
        for last in sizes {
            if first.is_some() && last.is_some() {
                continue;
            }
            for after in &positions {
                for before in &positions {
                    let vars = json!({
                        "first": first, "last": last,
                        "after": after.map(|i| all[i].1.clone()),
                        "before": before.map(|i| all[i].1.clone()),
                    });
                    let data = app.ok(PAGE, vars.clone()).await;
                    let conn = &data["auditEvents"];
                    let ids: Vec<String> = conn["edges"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["node"]["eventId"].as_str().unwrap().to_string())
                        .collect();
                    let (want, prev, next) = expected(&all, first, *after, last, *before);
                    assert_eq!(ids, want, "edges for {vars}");
                    assert_eq!(conn["pageInfo"]["hasPreviousPage"], prev, "hasPreviousPage for {vars}");
                    assert_eq!(conn["pageInfo"]["hasNextPage"], next, "hasNextPage for {vars}");
                    assert_eq!(conn["totalCount"], 7);
                    let edges = conn["edges"].as_array().unwrap();
                    let start = edges.first().map_or(Value::Null, |e| e["cursor"].clone());
                    let end = edges.last().map_or(Value::Null, |e| e["cursor"].clone());
                    assert_eq!(conn["pageInfo"]["startCursor"], start);
                    assert_eq!(conn["pageInfo"]["endCursor"], end);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 11 * 8 * 8);
}

async fn paging_forwards_then_backwards_visits_every_event_once(app: TestApp) {
    let all = seed(&app).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = app.ok(PAGE, json!({"first": 2, "after": after})).await;
        let conn = &data["auditEvents"];
        seen.extend(
            conn["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["eventId"].as_str().unwrap().to_string()),
        );
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    assert_eq!(seen, all.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());

    let mut back = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let data = app.ok(PAGE, json!({"last": 3, "before": before})).await;
        let conn = &data["auditEvents"];
        let mut page: Vec<String> = conn["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["eventId"].as_str().unwrap().to_string())
            .collect();
        page.extend(back);
        back = page;
        if conn["pageInfo"]["hasPreviousPage"] != true {
            break;
        }
        before = conn["pageInfo"]["startCursor"].as_str().map(String::from);
    }
    assert_eq!(back, seen);
}

async fn bad_page_arguments_are_client_errors(app: TestApp) {
    app.create(json!({})).await;
    let cases = [
        (json!({"first": 1, "last": 1}), "last"),
        (json!({"first": 1001}), "first"),
        (json!({"last": 1001}), "last"),
        (json!({"first": -1}), "first"),
        (json!({"after": "not-a-cursor"}), "after"),
        (json!({"before": "AQID"}), "before"),
        (json!({"after": ""}), "after"),
    ];
    for (vars, argument) in cases {
        let error = app.error(PAGE, vars.clone()).await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{vars}: {error}");
        assert_eq!(error["extensions"]["argument"], argument, "{vars}: {error}");
    }
    let data = app.ok(PAGE, json!({"first": 1000})).await;
    assert_eq!(data["auditEvents"]["edges"].as_array().unwrap().len(), 1);
}
