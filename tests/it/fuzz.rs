//! Hostile documents and bodies, generated: deep nesting of every kind, huge lists, random bytes,
//! long strings, NULs, surrogates, random headers. Every one must get a typed answer (a status
//! the API documents, a content type, a JSON body with `data` or `errors`), and the server must
//! stay up. Deterministic (seeded) and bounded: a few hundred requests.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::helpers::{Engine, TestApp, brief};

/// SplitMix64: small, seeded, good enough to vary inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    "...",
    "@skip(if: true)",
    "$v",
    "query",
    "mutation",
    "fragment F on Query",
    "auditEvents",
    "auditEvent",
    "first: 5",
    "filter:",
    "edges",
    "node",
    "eventId",
    "totalCount",
    "\"s\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "1e999",
    "-0",
    "null",
    "true",
    "#c\n",
    "\"\"\"b\"\"\"",
    "createAuditEvent",
    "input:",
    "a:",
    ",",
    "descendants(maxDepth: 10000)",
    "children",
    "__typename",
    "__schema { types { name } }",
    "\u{0}",
    "\u{FEFF}",
];

/// A document built from one hostile recipe.
fn document(rng: &mut Rng) -> String {
    let depth = [2, 63, 64, 65, 500, 5_000, 50_000][rng.below(7)];
    match rng.below(9) {
        0 => format!(
            "{{auditEvents(filter:{}1{}){{totalCount}}}}",
            "{a:".repeat(depth),
            "}".repeat(depth)
        ),
        1 => format!(
            "{{auditEvents(first:{}1{}){{totalCount}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        2 => format!("{}{}", "{a".repeat(depth), "}".repeat(depth)),
        3 => format!("{{a{}}}", "(b:".repeat(depth)),
        4 => format!(
            "query($v: {}Int{}) {{ __typename }}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        5 => format!(
            "{{auditEvents(filter: {{correlationId: \"{}\"}}) {{ totalCount }}}}",
            "x".repeat(depth * 20)
        ),
        6 => format!("{{auditEvents(first: [{}]) {{ totalCount }}}}", "1,".repeat(depth * 2)),
        7 => (0..rng.below(400) + 1)
            .map(|_| rng.pick(TOKENS))
            .collect::<Vec<_>>()
            .join(" "),
        _ => {
            let fragments: String = (0..depth.min(5_000))
                .map(|i| format!("fragment F{i} on Query {{ ...F{} }} ", i + 1))
                .collect();
            format!("{{ ...F0 }} {fragments}")
        }
    }
}

/// A request built from one hostile recipe.
fn request(rng: &mut Rng) -> Request<Body> {
    // Mostly well-declared, so that most bodies reach the GraphQL layer.
    let content_types = [
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/json; charset=utf-16",
        "",
    ];
    let accepts = [
        "",
        "",
        "*/*",
        "application/graphql-response+json",
        "application/graphql-response+json",
        "text/html",
        "application/json;q=0, */*",
    ];
    let accept = rng.pick(&accepts);
    let body: Vec<u8> = match rng.below(6) {
        0 => (0..rng.below(2_000)).map(|_| rng.next() as u8).collect(),
        1 => {
            let depth = [10, 127, 129, 10_000][rng.below(4)];
            format!(
                r#"{{"query": "query($v: JSON) {{ __typename }}", "variables": {{"v": {}1{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()
        }
        2 => json!({"query": document(rng), "variables": {"s": "\u{0}", "n": 1e300}})
            .to_string()
            .into_bytes(),
        3 => format!(r#"[{}]"#, json!({"query": "{ __typename }"}))
            .repeat(rng.below(3) + 1)
            .into_bytes(),
        4 => br#"{"query": "{ __typename }", "operationName": 5, "variables": [1]}"#.to_vec(),
        _ => json!({"query": document(rng)}).to_string().into_bytes(),
    };
    if rng.below(4) == 0 {
        let query: String = document(rng)
            .bytes()
            .take(15_000)
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let mut builder = Request::get(format!("/graphql?query={query}"));
        if !accept.is_empty() {
            builder = builder.header("accept", accept);
        }
        return builder.body(Body::empty()).expect("request");
    }
    let mut builder = Request::post("/graphql");
    let content_type = rng.pick(&content_types);
    if !content_type.is_empty() {
        builder = builder.header("content-type", content_type);
    }
    if !accept.is_empty() {
        builder = builder.header("accept", accept);
    }
    builder.body(Body::from(body)).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_requests_all_get_typed_answers_and_the_server_stays_up() {
    let app = TestApp::new(Engine::Sqlite).await.expect("SQLite");
    let mut rng = Rng(0x005e_eda1_1d17);
    let documented = [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::NOT_ACCEPTABLE,
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for case in 0..600 {
        let (status, content_type, body) = app.exchange(request(&mut rng)).await;
        assert!(
            body.is_object(),
            "case {case}: {status} is not a JSON object: {}",
            brief(&body)
        );
        assert!(documented.contains(&status), "case {case}: {status} {}", brief(&body));
        assert!(
            content_type.starts_with("application/json")
                || content_type.starts_with("application/graphql-response+json"),
            "case {case}: content type {content_type:?}"
        );
        assert!(
            body.get("data").is_some() || body["errors"][0]["message"].is_string(),
            "case {case}: {}",
            brief(&body)
        );
        if let Some(errors) = body["errors"].as_array() {
            for error in errors {
                let message = error["message"].as_str().unwrap_or_default();
                assert!(
                    !message.contains("panicked") && !message.contains("InvalidRequest("),
                    "case {case}: {message}"
                );
            }
        }
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    eprintln!("statuses: {statuses:?}");
    assert!(statuses.len() >= 4, "the recipes reach several outcomes: {statuses:?}");
    let data = app.ok("{ auditEvents { totalCount } }", json!({})).await;
    assert_eq!(data["auditEvents"]["totalCount"], 0, "still serving, nothing written");
}
