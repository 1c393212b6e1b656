//! Identity and access through the real router: every authentication mode × role × operation × API
//! (GraphQL POST, GraphQL GET, REST), refused credentials of every kind, the trusted-proxy rule,
//! authorship, and the switches for `/metrics`, GraphiQL and introspection. A refused write never
//! leaves a row.

use std::net::SocketAddr;
use std::path::PathBuf;

use auditgraph::auth::{AuthMode, PrincipalKind, Role, create_key};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{Engine, TestApp, brief, event_input, rest_event, url_encode};

const SECRET: &str = "access-tests-shared-secret-0123456789abcdef";
const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "auditgraph";
/// Inside the trusted proxy range of [`secured`].
const PROXY: &str = "10.1.2.3:40000";

/// An app with API keys, JWTs and a trusted proxy all on, and a key per role.
struct Secured {
    app: TestApp,
    keys: Vec<(Role, String)>,
    _dir: tempfile::TempDir,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

async fn secured(engine: Engine) -> Option<Secured> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keys.json");
    let mut keys = Vec::new();
    for role in [Role::Reader, Role::Writer, Role::Admin] {
        let created = create_key(&path, &format!("svc-{}", role.as_str()), role, PrincipalKind::Service).unwrap();
        keys.push((role, created.key));
    }
    let app = TestApp::with_config(engine, |c| {
        c.auth.modes = vec![AuthMode::ApiKeys, AuthMode::Jwt, AuthMode::Proxy];
        c.auth.api_keys_file = path.clone();
        c.auth.jwt_secret = Some(SECRET.parse().unwrap());
        c.auth.jwt_jwks_file = Some(fixture("jwks.json"));
        c.auth.jwt_issuer = Some(ISSUER.into());
        c.auth.jwt_audience = vec![AUDIENCE.into()];
        c.auth.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.auth.proxy_group_roles = ["auditors=reader", "sre=writer", "secops=admin"]
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
    })
    .await?;
    Some(Secured { app, keys, _dir: dir })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for `sub`, with `role` when given.
fn claims(sub: &str, role: Option<Role>) -> Value {
    let mut claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()});
    if let Some(role) = role {
        claims["role"] = json!(role.as_str());
    }
    claims
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn hs256_with_key(claims: &Value, key: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", encode(&json!({"alg": "none", "typ": "JWT"})), encode(claims))
}

fn rs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_der(&std::fs::read(fixture("rsa-private.der")).unwrap());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// How a request proves who it is.
#[derive(Clone, Debug)]
enum Credential {
    None,
    Bearer(String),
    /// Identity headers, from this peer address.
    Proxy {
        user: String,
        groups: String,
        peer: Option<SocketAddr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    GraphqlPost,
    GraphqlGet,
    Rest,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Operation {
    Read,
    Write,
}

const READ: &str = "{ auditEvents(first: 1) { totalCount } }";
const WRITE: &str =
    "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { eventId actorType actorId submittedBy } }";

fn request(api: Api, operation: Operation, credential: &Credential, actor: &str) -> Request<Body> {
    let (method, uri, body) = match (api, operation) {
        (Api::GraphqlPost, Operation::Read) => ("POST", "/graphql".to_string(), Some(json!({"query": READ}))),
        (Api::GraphqlPost, Operation::Write) => (
            "POST",
            "/graphql".to_string(),
            Some(
                json!({"query": WRITE, "variables": {"input": event_input(json!({"actorType": "service", "actorId": actor}))}}),
            ),
        ),
        (Api::GraphqlGet, _) => ("GET", format!("/graphql?query={}", url_encode(READ)), None),
        (Api::Rest, Operation::Read) => ("GET", "/api/v1/audit/events?limit=10".to_string(), None),
        (Api::Rest, Operation::Write) => (
            "POST",
            "/api/v1/audit/events".to_string(),
            Some(rest_event(json!({"actor_type": "service", "actor_id": actor}))),
        ),
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let mut peer_address = None;
    match credential {
        Credential::None => {}
        Credential::Bearer(token) => builder = builder.header("authorization", format!("Bearer {token}")),
        Credential::Proxy { user, groups, peer } => {
            builder = builder
                .header("x-auth-request-user", user.as_str())
                .header("x-auth-request-groups", groups.as_str());
            peer_address = *peer;
        }
    }
    let mut request = builder
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    if let Some(peer) = peer_address {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    request
}

/// What a request got: status, `WWW-Authenticate`, body.
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        body,
    }
}

/// The outcome the rules promise.
#[derive(Debug, PartialEq)]
enum Outcome {
    Allowed,
    Unauthenticated,
    Forbidden,
}

/// What an answer says, checked against the shape of its API.
fn outcome(api: Api, answer: &Answer) -> Outcome {
    let code = answer.body["errors"][0]["extensions"]["code"].as_str();
    match api {
        Api::Rest => match answer.status {
            StatusCode::OK | StatusCode::CREATED => Outcome::Allowed,
            StatusCode::UNAUTHORIZED => {
                assert_eq!(answer.body["type"], "https://kubernaut.ai/problems/unauthorized");
                assert!(answer.challenge.as_deref().unwrap().starts_with("Bearer realm="));
                Outcome::Unauthenticated
            }
            StatusCode::FORBIDDEN => {
                assert_eq!(answer.body["type"], "https://kubernaut.ai/problems/forbidden");
                assert_eq!(answer.body["status"], 403);
                Outcome::Forbidden
            }
            other => panic!("REST answered {other}: {}", brief(&answer.body)),
        },
        _ => match (answer.status, code) {
            (StatusCode::OK, None) => Outcome::Allowed,
            (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED")) => {
                assert!(answer.challenge.is_some(), "a 401 names its challenge");
                assert!(answer.body.get("data").is_none(), "nothing ran");
                Outcome::Unauthenticated
            }
            (StatusCode::OK, Some("FORBIDDEN")) => {
                assert!(
                    answer.body["errors"][0]["message"]
                        .as_str()
                        .unwrap()
                        .contains("needs the role")
                );
                Outcome::Forbidden
            }
            (status, code) => panic!("GraphQL answered {status} {code:?}: {}", brief(&answer.body)),
        },
    }
}

/// Every mode × role × operation × API, and the row count after each.
async fn the_whole_matrix_holds(engine: Engine) {
    let Some(secured) = secured(engine).await else {
        return;
    };
    let app = &secured.app;
    let proxy_peer = Some(PROXY.parse().unwrap());
    let mut callers: Vec<(String, Option<Role>, Credential, &str)> = Vec::new();
    for (role, key) in &secured.keys {
        callers.push((
            format!("key {role}"),
            Some(*role),
            Credential::Bearer(key.clone()),
            "svc",
        ));
    }
    let groups = [
        (None, "visitors"),
        (Some(Role::Reader), "auditors"),
        (Some(Role::Writer), "sre"),
        (Some(Role::Admin), "secops,visitors"),
    ];
    for (role, group) in groups {
        callers.push((
            format!("jwt {role:?}"),
            role,
            Credential::Bearer(hs256(&claims("alice@example.com", role), SECRET)),
            "human",
        ));
        callers.push((
            format!("proxy {role:?}"),
            role,
            Credential::Proxy {
                user: "bob@example.com".into(),
                groups: group.into(),
                peer: proxy_peer,
            },
            "human",
        ));
    }
    callers.push(("nobody".into(), None, Credential::None, "none"));
    let mut rows = app.row_count().await;
    for (name, role, credential, kind) in &callers {
        for api in [Api::GraphqlPost, Api::GraphqlGet, Api::Rest] {
            for operation in [Operation::Read, Operation::Write] {
                if api == Api::GraphqlGet && operation == Operation::Write {
                    continue; // GET never writes (405 whoever asks)
                }
                let needed = if operation == Operation::Read {
                    Role::Reader
                } else {
                    Role::Writer
                };
                let expected = match (kind, role) {
                    (&"none", _) => Outcome::Unauthenticated,
                    (_, Some(held)) if *held >= needed => Outcome::Allowed,
                    _ => Outcome::Forbidden,
                };
                let answer = send(app, request(api, operation, credential, "payments-service")).await;
                let got = outcome(api, &answer);
                assert_eq!(got, expected, "{name} {api:?} {operation:?}: {}", brief(&answer.body));
                let after = app.row_count().await;
                if operation == Operation::Write && got == Outcome::Allowed {
                    assert_eq!(after, rows + 1, "{name} {api:?} wrote one row");
                    if api == Api::GraphqlPost {
                        let event = &answer.body["data"]["createAuditEvent"];
                        let principal = match credential {
                            Credential::Bearer(_) if *kind == "svc" => format!("svc-{}", role.unwrap().as_str()),
                            Credential::Proxy { .. } => "bob@example.com".into(),
                            _ => "alice@example.com".into(),
                        };
                        assert_eq!(event["submittedBy"], principal.as_str(), "{name}");
                        if *kind == "human" {
                            assert_eq!(event["actorType"], "user", "{name}: a human is the actor");
                            assert_eq!(event["actorId"], principal.as_str(), "{name}");
                        } else {
                            assert_eq!(
                                event["actorId"], "payments-service",
                                "{name}: a service names its actor"
                            );
                        }
                    }
                } else {
                    assert_eq!(
                        after, rows,
                        "{name} {api:?} {operation:?} was refused and wrote nothing"
                    );
                }
                rows = after;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_matrix_holds_on_sqlite() {
    the_whole_matrix_holds(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_matrix_holds_on_postgres() {
    the_whole_matrix_holds(Engine::Postgres).await;
}

/// Each refused token says why, in the body and in `WWW-Authenticate`, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_tokens_are_refused_with_their_reason() {
    let secured = secured(Engine::Sqlite).await.unwrap();
    let app = &secured.app;
    let writer = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("mallory@example.com", Some(Role::Admin));
        f(&mut c);
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs256(&writer(&|c| c["exp"] = json!(now() - 3600)), SECRET),
            "expired",
        ),
        (
            "not yet valid",
            hs256(&writer(&|c| c["nbf"] = json!(now() + 3600)), SECRET),
            "not valid yet",
        ),
        (
            "wrong audience",
            hs256(&writer(&|c| c["aud"] = json!("another-service")), SECRET),
            "audience",
        ),
        (
            "wrong issuer",
            hs256(&writer(&|c| c["iss"] = json!("https://evil.example")), SECRET),
            "issuer",
        ),
        (
            "forged signature",
            hs256(&writer(&|_| {}), "another-secret-of-at-least-thirty-two-bytes"),
            "signature",
        ),
        ("an unknown API key", "agk_not-a-key-anybody-created".into(), "key"),
        (
            "no expiry",
            hs256(
                &writer(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                SECRET,
            ),
            "exp",
        ),
        ("alg none", unsigned(&writer(&|_| {})), "token"),
        (
            "HS256 keyed with the RSA public key",
            hs256_with_key(&writer(&|_| {}), &std::fs::read(fixture("rsa-public.pem")).unwrap()),
            "algorithm",
        ),
    ];
    for (what, token, reason) in cases {
        for api in [Api::GraphqlPost, Api::Rest] {
            let answer = send(
                app,
                request(api, Operation::Write, &Credential::Bearer(token.clone()), "x"),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{what} {api:?}: {}",
                brief(&answer.body)
            );
            let challenge = answer.challenge.unwrap();
            assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
            let message = match api {
                Api::Rest => answer.body["detail"].as_str().unwrap().to_string(),
                _ => answer.body["errors"][0]["message"].as_str().unwrap().to_string(),
            };
            assert!(message.contains(reason), "{what}: {message}");
            assert!(!message.contains(&token), "the token is never echoed");
        }
    }
    // A token signed with the RSA key of the JWKS is taken.
    let token = rs256(&claims("carol@example.com", Some(Role::Reader)));
    let answer = send(
        app,
        request(Api::Rest, Operation::Read, &Credential::Bearer(token), "x"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", brief(&answer.body));
    assert_eq!(app.row_count().await, 0);
}

/// The identity header counts only from a trusted proxy; the `system:serviceaccount:` prefix is
/// no way around that, and from the proxy it makes a service that may name its actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_count_only_from_a_trusted_proxy() {
    let secured = secured(Engine::Sqlite).await.unwrap();
    let app = &secured.app;
    let account = "system:serviceaccount:kubernaut-system:gateway";
    for user in ["alice@example.com", account, "system:serviceaccount:"] {
        for peer in [
            None,
            Some("192.168.1.5:1234".parse().unwrap()),
            Some("127.0.0.1:5555".parse().unwrap()),
        ] {
            for api in [Api::GraphqlPost, Api::Rest] {
                let credential = Credential::Proxy {
                    user: user.into(),
                    groups: "secops".into(),
                    peer,
                };
                let answer = send(app, request(api, Operation::Write, &credential, "anyone")).await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{user} from {peer:?} over {api:?}: {}",
                    brief(&answer.body)
                );
                assert!(answer.challenge.unwrap().contains("invalid_request"));
            }
        }
    }
    assert_eq!(
        app.row_count().await,
        0,
        "nothing from an untrusted address was written"
    );

    let from_proxy = Credential::Proxy {
        user: account.into(),
        groups: "sre".into(),
        peer: Some(PROXY.parse().unwrap()),
    };
    let answer = send(
        app,
        request(
            Api::GraphqlPost,
            Operation::Write,
            &from_proxy,
            "remediation-orchestrator",
        ),
    )
    .await;
    let event = &answer.body["data"]["createAuditEvent"];
    assert_eq!(event["submittedBy"], account, "{}", brief(&answer.body));
    assert_eq!(
        event["actorId"], "remediation-orchestrator",
        "a service account names its actor"
    );

    // Over REST a human from the proxy becomes the actor whatever the body claims.
    let human = Credential::Proxy {
        user: "alice@example.com".into(),
        groups: "sre".into(),
        peer: Some(PROXY.parse().unwrap()),
    };
    let answer = send(app, request(Api::Rest, Operation::Write, &human, "someone-else")).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", brief(&answer.body));

    // Over REST the stored events show the same authorship.
    let answer = send(app, request(Api::Rest, Operation::Read, &from_proxy, "x")).await;
    let events = answer.body["data"].as_array().unwrap();
    let authorship: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["submitted_by"].as_str().unwrap(),
                e["actor_type"].as_str().unwrap(),
                e["actor_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        authorship.contains(&(account, "service", "remediation-orchestrator")),
        "{authorship:?}"
    );
    assert!(
        authorship.contains(&("alice@example.com", "user", "alice@example.com")),
        "{authorship:?}"
    );
}

/// Without authentication (the embedded default) every caller is `anonymous`, recorded as such; an
/// identity header is still refused, never trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_writes_are_anonymous_and_identity_headers_are_refused() {
    let app = TestApp::new(Engine::Sqlite).await.unwrap();
    let answer = send(
        &app,
        request(
            Api::GraphqlPost,
            Operation::Write,
            &Credential::None,
            "payments-service",
        ),
    )
    .await;
    let event = &answer.body["data"]["createAuditEvent"];
    assert_eq!(event["submittedBy"], "anonymous", "{}", brief(&answer.body));
    assert_eq!(event["actorId"], "payments-service");

    let forged = Credential::Proxy {
        user: "admin@example.com".into(),
        groups: "secops".into(),
        peer: Some("127.0.0.1:1".parse().unwrap()),
    };
    for api in [Api::GraphqlPost, Api::Rest] {
        let answer = send(&app, request(api, Operation::Write, &forged, "x")).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{api:?}: {}",
            brief(&answer.body)
        );
    }
    assert_eq!(app.row_count().await, 1);
}

async fn get(app: &TestApp, path: &str, credential: &Credential) -> Answer {
    let mut builder = Request::get(path);
    if let Credential::Bearer(token) = credential {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    send(app, builder.body(Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_role_or_move_to_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let reader = create_key(&path, "grafana", Role::Reader, PrincipalKind::Service)
        .unwrap()
        .key;
    let admin = create_key(&path, "prometheus", Role::Admin, PrincipalKind::Service)
        .unwrap()
        .key;
    let app = TestApp::with_config(Engine::Sqlite, |c| {
        c.auth.modes = vec![AuthMode::ApiKeys];
        c.auth.api_keys_file = path.clone();
        c.metrics_role = Some(Role::Admin);
    })
    .await
    .unwrap();
    assert_eq!(
        get(&app, "/metrics", &Credential::None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/metrics", &Credential::Bearer(reader)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&app, "/metrics", &Credential::Bearer(admin)).await.status,
        StatusCode::OK
    );
    // Health probes and the GraphiQL page hold no data and need no identity.
    for path in ["/healthz", "/readyz", "/graphiql"] {
        assert_eq!(
            get(&app, path, &Credential::None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }

    let elsewhere = TestApp::with_config(Engine::Sqlite, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    assert_eq!(
        get(&elsewhere, "/metrics", &Credential::None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_and_introspection_can_each_be_switched_off() {
    let app = TestApp::with_config(Engine::Sqlite, |c| {
        c.graphiql = false;
        c.introspection = false;
    })
    .await
    .unwrap();
    assert_eq!(
        get(&app, "/graphiql", &Credential::None).await.status,
        StatusCode::NOT_FOUND
    );
    for document in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"AuditEvent\") { name } }",
        "query { ...F } fragment F on Query { __schema { types { name } } }",
    ] {
        let body = app.graphql(document, json!({})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "BAD_REQUEST",
            "{document}: {}",
            brief(&body)
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("introspection is switched off")
        );
        assert!(body.get("data").is_none());
    }
    let data = app.ok("{ __typename }", json!({})).await;
    assert_eq!(data["__typename"], "Query");
    let data = app.ok("{ auditEvents(first: 1) { totalCount } }", json!({})).await;
    assert_eq!(data["auditEvents"]["totalCount"], 0, "queries still run");
}

/// `/metrics` on a listener of its own answers there and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener_are_served_there_only() {
    use crate::helpers::{http_exchange, http_get};
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        auditgraph::config::Config::for_database(&format!("sqlite://{}", dir.path().join("m.db").display()));
    config.log_key_file = dir.path().join("log.key");
    let metrics_addr = free_address();
    config.metrics_listen = Some(metrics_addr);
    let served = Served::start(config).await;
    let addr = served.addr;
    let (status, body) = http_exchange(metrics_addr, &http_get("/metrics")).await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("db_pool_connections"), "{body}");
    let (status, _) = http_exchange(addr, &http_get("/metrics")).await;
    assert!(status.contains(" 404 "), "the main listener has no /metrics: {status}");
    let (status, _) = http_exchange(metrics_addr, &http_get("/graphql?query=%7B__typename%7D")).await;
    assert!(
        status.contains(" 404 "),
        "the metrics listener serves nothing else: {status}"
    );
    served.stop().await;
}

/// A service token names the actor it acts for; a person's API key cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_name_their_actor_and_people_are_their_own_actor_in_every_mode() {
    let secured = secured(Engine::Sqlite).await.unwrap();
    let app = &secured.app;
    let mut service = claims("payments-gateway", Some(Role::Writer));
    service["principal_type"] = json!("service");
    let token = hs256(&service, SECRET);
    let answer = send(
        app,
        request(
            Api::GraphqlPost,
            Operation::Write,
            &Credential::Bearer(token),
            "alice@example.com",
        ),
    )
    .await;
    let event = &answer.body["data"]["createAuditEvent"];
    assert_eq!(event["submittedBy"], "payments-gateway", "{}", brief(&answer.body));
    assert_eq!(event["actorId"], "alice@example.com", "a service may act for someone");

    // An explicit human claim wins over a service-account-looking subject.
    let mut human = claims("system:serviceaccount:ns:looks-like-a-service", Some(Role::Writer));
    human["principal_type"] = json!("human");
    let answer = send(
        app,
        request(
            Api::GraphqlPost,
            Operation::Write,
            &Credential::Bearer(hs256(&human, SECRET)),
            "someone-else",
        ),
    )
    .await;
    let event = &answer.body["data"]["createAuditEvent"];
    assert_eq!(event["actorType"], "user", "{}", brief(&answer.body));
    assert_eq!(event["actorId"], "system:serviceaccount:ns:looks-like-a-service");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let key = create_key(&path, "dana@example.com", Role::Writer, PrincipalKind::Human)
        .unwrap()
        .key;
    let people = TestApp::with_config(Engine::Sqlite, |c| {
        c.auth.modes = vec![AuthMode::ApiKeys];
        c.auth.api_keys_file = path.clone();
    })
    .await
    .unwrap();
    let answer = send(
        &people,
        request(Api::Rest, Operation::Write, &Credential::Bearer(key.clone()), "root"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", brief(&answer.body));
    let answer = send(
        &people,
        request(Api::Rest, Operation::Read, &Credential::Bearer(key), "x"),
    )
    .await;
    assert_eq!(answer.body["data"][0]["actor_type"], "user");
    assert_eq!(answer.body["data"][0]["actor_id"], "dana@example.com");
    assert_eq!(answer.body["data"][0]["submitted_by"], "dana@example.com");
}

/// A client cannot slip a group past the proxy in a second groups header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_groups_header_is_refused() {
    let secured = secured(Engine::Sqlite).await.unwrap();
    let mut request = Request::post("/api/v1/audit/events")
        .header("content-type", "application/json")
        .header("x-auth-request-user", "eve@example.com")
        .header("x-auth-request-groups", "visitors")
        .header("x-auth-request-groups", "secops")
        .body(Body::from(rest_event(json!({})).to_string()))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(PROXY.parse::<SocketAddr>().unwrap()));
    let answer = send(&secured.app, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", brief(&answer.body));
    assert_eq!(secured.app.row_count().await, 0);
}

/// `auth_refusals_total` counts requests: one GraphQL request refused on two fields counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_once_per_request() {
    let secured = secured(Engine::Sqlite).await.unwrap();
    let app = &secured.app;
    let reader = Credential::Bearer(secured.keys[0].1.clone());
    let refusals = |text: &str, source: &str, reason: &str| -> u64 {
        let (reason, source) = (format!("reason=\"{reason}\""), format!("source=\"{source}\""));
        text.lines()
            .filter(|line| line.starts_with("auth_refusals_total{"))
            .find(|line| line.contains(&reason) && line.contains(&source))
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let metrics = || async {
        let answer = app
            .router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let Credential::Bearer(token) = &reader else {
        unreachable!()
    };
    let two = json!({
        "query": "mutation($input: AuditEventInput!) { a: createAuditEvent(input: $input) { eventId } b: createAuditEvent(input: $input) { eventId } }",
        "variables": {"input": event_input(json!({}))},
    });
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(two.to_string()))
        .unwrap();
    let answer = send(app, request).await;
    let codes: Vec<&Value> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["extensions"]["code"])
        .collect();
    assert_eq!(
        codes,
        [&json!("FORBIDDEN"), &json!("FORBIDDEN")],
        "{}",
        brief(&answer.body)
    );
    let text = metrics().await;
    assert_eq!(refusals(&text, "graphql", "forbidden"), 1, "{text}");

    send(app, request_with(Api::Rest, Operation::Write, &reader)).await;
    send(app, request_with(Api::Rest, Operation::Read, &Credential::None)).await;
    let text = metrics().await;
    assert_eq!(refusals(&text, "rest", "forbidden"), 1, "{text}");
    assert_eq!(refusals(&text, "rest", "unauthenticated"), 1, "{text}");
    assert_eq!(app.row_count().await, 0);
}

fn request_with(api: Api, operation: Operation, credential: &Credential) -> Request<Body> {
    request(api, operation, credential, "svc")
}

/// On its own listener `/metrics` still needs its role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_role_holds_on_the_metrics_listener_too() {
    use crate::helpers::{http_exchange, http_get};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let admin = create_key(&path, "prometheus", Role::Admin, PrincipalKind::Service)
        .unwrap()
        .key;
    let mut config =
        auditgraph::config::Config::for_database(&format!("sqlite://{}", dir.path().join("m.db").display()));
    config.log_key_file = dir.path().join("log.key");
    let metrics_addr = free_address();
    config.metrics_listen = Some(metrics_addr);
    config.metrics_role = Some(Role::Admin);
    config.auth.modes = vec![AuthMode::ApiKeys];
    config.auth.api_keys_file = path;
    let served = Served::start(config).await;
    let (status, _) = http_exchange(metrics_addr, &http_get("/metrics")).await;
    assert!(status.contains(" 401 "), "{status}");
    let with_key = format!(
        "GET /metrics HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {admin}\r\nconnection: close\r\n\r\n"
    );
    let (status, body) = http_exchange(metrics_addr, &with_key).await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("auth_refusals_total"), "{body}");
    // The main listener has no /metrics: an unknown path there, with or without a key, and not
    // a refusal of the metrics role.
    let (status, _) = http_exchange(served.addr, &http_get("/metrics")).await;
    assert!(status.contains(" 404 "), "{status}");
    let (status, _) = http_exchange(served.addr, &with_key).await;
    assert!(status.contains(" 404 "), "{status}");
    served.stop().await;
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .unwrap()
}

/// The real server on `config` and a free loopback port, once ready.
struct Served {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    async fn start(config: auditgraph::config::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(auditgraph::serve_on(listener, config, async {
            let _ = stopped.await;
        }));
        let started = std::time::Instant::now();
        while !crate::helpers::ready(addr).await {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "not ready");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self { addr, stop, server }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// Identity comes before routes and limits: a caller without credentials learns neither which
/// API paths exist nor how large a body may be; an authenticated one gets 404 and 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_routes_and_the_body_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keys.json");
    let writer = create_key(&path, "svc-writer", Role::Writer, PrincipalKind::Service).unwrap();
    let app = TestApp::with_config(Engine::Sqlite, |c| {
        c.auth.modes = vec![AuthMode::ApiKeys];
        c.auth.api_keys_file = path.clone();
        c.body_limit_bytes = 1_000;
    })
    .await
    .unwrap();
    let large = rest_event(json!({"eventData": {"padding": "x".repeat(5_000)}})).to_string();
    let cases = [
        ("POST", "/api/v1/audit/events", large.clone()),
        ("GET", "/api/v1/audit/no-such-path", String::new()),
        (
            "POST",
            "/graphql",
            format!(
                "{{\"query\": \"{{ __typename }}\", \"pad\": \"{}\"}}",
                "x".repeat(5_000)
            ),
        ),
    ];
    for (method, uri, body) in &cases {
        let request = |key: Option<&str>| {
            let mut builder = Request::builder()
                .method(*method)
                .uri(*uri)
                .header("content-type", "application/json")
                .header("content-length", body.len());
            if let Some(key) = key {
                builder = builder.header("authorization", format!("Bearer {key}"));
            }
            builder.body(Body::from(body.clone())).unwrap()
        };
        let anonymous = send(&app, request(None)).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}: {}",
            brief(&anonymous.body)
        );
        assert!(
            anonymous.challenge.is_some(),
            "{method} {uri}: a challenge names the scheme"
        );
        let known = send(&app, request(Some(&writer.key))).await;
        let expected = if body.len() > 1_000 {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(known.status, expected, "{method} {uri}: {}", brief(&known.body));
    }
    assert_eq!(app.row_count().await, 0);
}
