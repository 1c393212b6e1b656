//! Every REST request and response checked against the kubernaut Data Storage OpenAPI document
//! (`tests/fixtures/kubernaut-data-storage-v1.openapi.yaml`), converted to JSON Schema. As the
//! contract allows, `event_data` may be any JSON object: its per-type payload schemas are not
//! enforced.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::helpers::{Engine, TestApp, brief, rest_event};

/// OpenAPI 3.0 schema → JSON Schema: `nullable` becomes a union with null, component references
/// point into `$defs`, and OpenAPI-only keywords go.
fn convert(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                match key.as_str() {
                    "nullable" | "discriminator" | "example" | "xml" | "externalDocs" => {}
                    "$ref" => {
                        let name = v
                            .as_str()
                            .unwrap_or_default()
                            .trim_start_matches("#/components/schemas/");
                        out.insert(key.clone(), json!(format!("#/$defs/{name}")));
                    }
                    _ => {
                        out.insert(key.clone(), convert(v));
                    }
                }
            }
            if map.get("nullable") == Some(&json!(true)) {
                json!({"anyOf": [Value::Object(out), {"type": "null"}]})
            } else {
                Value::Object(out)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(convert).collect()),
        other => other.clone(),
    }
}

struct Contract {
    defs: Value,
    paths: Value,
}

impl Contract {
    fn load() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubernaut-data-storage-v1.openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("the OpenAPI fixture");
        let document: Value = serde_yaml_ng::from_str(&text).expect("OpenAPI YAML");
        let mut defs = convert(&document["components"]["schemas"]);
        defs["AuditEventRequest"]["properties"]["event_data"] = json!({"type": "object"});
        Self {
            defs,
            paths: convert(&document["paths"]),
        }
    }

    /// Checks `instance` against the inline schema of a path's 200 answer.
    fn check_answer(&self, path: &str, method: &str, instance: &Value) {
        let schema = &self.paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path} has a 200 schema");
        let root = json!({"$defs": self.defs, "allOf": [schema]});
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} rejects {}:\n{}",
            brief(instance),
            errors.join("\n")
        );
    }

    fn errors(&self, schema: &str, instance: &Value) -> Vec<String> {
        let root = json!({"$defs": self.defs, "$ref": format!("#/$defs/{schema}")});
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn check(&self, schema: &str, instance: &Value) {
        let errors = self.errors(schema, instance);
        assert!(
            errors.is_empty(),
            "{schema} rejects {}:\n{}",
            brief(instance),
            brief(&errors.join("\n"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_responses_conform_to_the_kubernaut_contract() {
    let contract = Contract::load();
    // The checker itself catches violations.
    let mut wrong = rest_event(json!({"event_category": "not-in-the-enum", "actor_ip": null}));
    wrong.as_object_mut().unwrap().remove("version");
    assert_eq!(
        contract.errors("AuditEventRequest", &wrong).len(),
        3,
        "{:?}",
        contract.errors("AuditEventRequest", &wrong)
    );
    assert!(!contract.errors("RFC7807Problem", &json!({"title": "x"})).is_empty());
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(app) = TestApp::new(engine).await else {
            continue;
        };
        let minimal = rest_event(json!({}));
        let full = rest_event(json!({
            "actor_type": "service", "actor_id": "gateway", "actor_ip": "10.0.0.1", "resource_type": "Signal",
            "resource_id": "fp-1", "namespace": "prod", "cluster_id": "eu-1", "severity": "critical",
            "duration_ms": 12, "error_code": "E1", "error_message": "boom", "retention_days": 30, "is_sensitive": true,
            "parent_event_id": null, "parent_event_date": null,
        }));
        for request in [&minimal, &full] {
            contract.check("AuditEventRequest", request);
        }
        let (status, _, created) = app.rest("POST", "/api/v1/audit/events", Some(full.clone()), &[]).await;
        assert_eq!(status, StatusCode::CREATED);
        contract.check("AuditEventResponse", &created);
        let child = rest_event(
            json!({"parent_event_id": created["event_id"], "parent_event_date": created["event_timestamp"]}),
        );
        contract.check("AuditEventRequest", &child);
        let batch = json!([minimal, child]);
        let (status, _, body) = app.rest("POST", "/api/v1/audit/events/batch", Some(batch), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{}", brief(&body));
        contract.check("BatchAuditEventResponse", &body);

        let (_, _, page) = app.rest("GET", "/api/v1/audit/events?limit=2", None, &[]).await;
        contract.check("AuditEventsQueryResponse", &page);
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        let cursor = page["pagination"]["next_cursor"].as_str().unwrap().to_string();
        let (_, _, next) = app
            .rest(
                "GET",
                &format!("/api/v1/audit/events?limit=2&cursor={cursor}"),
                None,
                &[],
            )
            .await;
        contract.check("AuditEventsQueryResponse", &next);
        for event in page["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(next["data"].as_array().unwrap())
        {
            contract.check("AuditEvent", event);
        }

        let (_, _, held) = app
            .rest(
                "POST",
                "/api/v1/audit/legal-hold",
                Some(json!({"correlation_id": full["correlation_id"], "reason": "investigation"})),
                &[],
            )
            .await;
        contract.check_answer("/api/v1/audit/legal-hold", "post", &held);
        let (_, _, holds) = app.rest("GET", "/api/v1/audit/legal-hold", None, &[]).await;
        contract.check_answer("/api/v1/audit/legal-hold", "get", &holds);
        let (_, _, document) = app
            .rest("GET", "/api/v1/audit/export?include_detached_signature=true", None, &[])
            .await;
        contract.check("AuditExportResponse", &document);
        let (_, _, released) = app
            .rest(
                "DELETE",
                &format!("/api/v1/audit/legal-hold/{}", full["correlation_id"].as_str().unwrap()),
                Some(json!({"release_reason": "closed"})),
                &[],
            )
            .await;
        contract.check_answer("/api/v1/audit/legal-hold/{correlation_id}", "delete", &released);

        let problems = [
            app.rest(
                "POST",
                "/api/v1/audit/events",
                Some(rest_event(json!({"event_outcome": "maybe"}))),
                &[],
            )
            .await,
            app.rest("POST", "/api/v1/audit/events/batch", Some(json!([])), &[])
                .await,
            app.rest("GET", "/api/v1/audit/events?limit=0", None, &[]).await,
            app.rest("GET", "/api/v1/audit/events?cursor=x&offset=1", None, &[])
                .await,
        ];
        for (status, content_type, body) in problems {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(content_type, "application/problem+json");
            contract.check("RFC7807Problem", &body);
        }
    }
}
