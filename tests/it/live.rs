//! Live subscriptions through the real server over real sockets: the `graphql-transport-ws`
//! protocol and its close codes, credentials, commit-order delivery with resumption under
//! concurrent writers with skewed clocks, causality-tree changes, every write path, two server
//! processes on one PostgreSQL database, slow consumers, limits, server-sent events and shutdown.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auditgraph::auth::{AuthMode, PrincipalKind, Role, create_key};
use auditgraph::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{ChildGuard, Engine, event_input, fresh_postgres_database, rest_event, start_binary_with};

/// How long any single expected message may take before the test fails (a loaded machine is
/// slow; a missing message is still found).
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The real server in this process on `engine`, with the configuration adjusted.
struct Live {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    url: String,
    dir: tempfile::TempDir,
    _database: Option<crate::helpers::TestDatabase>,
}

impl Live {
    async fn start(engine: Engine, adjust: impl FnOnce(&mut Config, &std::path::Path)) -> Option<Self> {
        crate::helpers::init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, database) = match engine {
            Engine::Sqlite => (format!("sqlite://{}", dir.path().join("live.db").display()), None),
            Engine::Postgres => {
                let database = fresh_postgres_database().await?;
                (database.url.clone(), Some(database))
            }
        };
        let mut config = Config::for_database(&url);
        config.log_key_file = dir.path().join("log.key");
        config.sequence_interval_ms = 50;
        adjust(&mut config, dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(auditgraph::serve_on(listener, config, async {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        while !crate::helpers::ready(addr).await {
            if task.is_finished() {
                panic!("the server stopped: {:?}", task.await);
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the server was not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
            url,
            dir,
            _database: database,
        })
    }

    async fn sqlite() -> Self {
        Self::start(Engine::Sqlite, |_, _| {})
            .await
            .expect("SQLite is always available")
    }

    /// Stops the server gracefully and waits for it.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the server stops")
                .expect("joined")
                .expect("served");
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A POST with a JSON body; returns the status code and the JSON answer.
pub(crate) async fn post(addr: SocketAddr, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let body = body.to_string();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = crate::helpers::http_exchange(addr, &request).await;
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

const CREATE: &str = "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { eventId } }";

/// Writes one event through GraphQL; returns its id.
pub(crate) async fn write(addr: SocketAddr, input: Value, token: Option<&str>) -> String {
    let (status, body) = post(
        addr,
        "/graphql",
        &json!({"query": CREATE, "variables": {"input": input}}),
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["createAuditEvent"]["eventId"]
        .as_str()
        .unwrap_or_else(|| panic!("written: {body}"))
        .to_string()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` client.
pub(crate) struct Ws {
    socket: Socket,
}

impl Ws {
    /// Opens a WebSocket to `/graphql`, offering the protocol unless `protocol` is `None`.
    async fn open(addr: SocketAddr, protocol: Option<&str>, token: Option<&str>) -> Self {
        Self::try_open(addr, protocol, token).await.expect("upgraded")
    }

    async fn try_open(
        addr: SocketAddr,
        protocol: Option<&str>,
        token: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocol.parse().unwrap());
        }
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { socket })
    }

    /// Opens, initialises (with `token` in the payload, when given) and expects the ack.
    pub(crate) async fn ready(addr: SocketAddr, token: Option<&str>) -> Self {
        let mut ws = Self::open(addr, Some("graphql-transport-ws"), None).await;
        let payload = token.map_or(json!({}), |t| json!({"Authorization": format!("Bearer {t}")}));
        ws.send(json!({"type": "connection_init", "payload": payload})).await;
        assert_eq!(ws.recv().await, json!({"type": "connection_ack"}));
        ws
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("sent");
    }

    async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("sent");
    }

    /// The next protocol message.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .expect("a frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Waits for the server's close; returns its code and reason (skipping messages before it).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("the connection failed instead of closing: {error}"),
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The error that ends operation `id`: an `error` message (refused before it ran), or a
    /// `next` without data followed by `complete` (refused or ended while it ran).
    async fn failure(&mut self, id: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["id"], json!(id), "{message}");
        match message["type"].as_str() {
            Some("error") => message["payload"][0].clone(),
            Some("next") => {
                assert_eq!(message["payload"]["data"], Value::Null, "{message}");
                let error = message["payload"]["errors"][0].clone();
                assert_eq!(self.recv().await, json!({"id": id, "type": "complete"}));
                error
            }
            _ => panic!("expected the end of {id}, got {message}"),
        }
    }

    /// The payload of the next `next` message of `id`.
    pub(crate) async fn next(&mut self, id: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["id"], json!(id), "{message}");
        assert_eq!(message["type"], json!("next"), "{message}");
        message["payload"].clone()
    }
}

/// The cursor of the commit order now (`liveCursor`): a subscription from it receives exactly
/// the events written after this call, however late the server starts it.
pub(crate) async fn now(addr: SocketAddr, token: Option<&str>) -> String {
    let (status, body) = post(addr, "/graphql", &json!({"query": "{ liveCursor }"}), token).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["liveCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

pub(crate) const ADDED: &str = "subscription($filter: AuditEventFilter, $after: String) { auditEventAdded(filter: $filter, after: $after) \
    { cursor logIndex event { eventId eventType correlationId eventTimestamp } } }";

pub(crate) fn added(payload: &Value) -> (String, u64, String) {
    let added = &payload["data"]["auditEventAdded"];
    (
        added["cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("{payload}"))
            .to_string(),
        added["logIndex"].as_u64().unwrap(),
        added["event"]["eventId"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_close_code_of_the_protocol_is_the_right_one() {
    let server = Live::start(Engine::Sqlite, |c, _| {
        c.live.init_timeout_ms = 2_000;
        c.live.allowed_origins = vec!["https://ui.example.com".into()];
    })
    .await
    .unwrap();
    let addr = server.addr;

    // 4406: the protocol was not offered.
    let mut ws = Ws::open(addr, None, None).await;
    assert_eq!(ws.closed().await.0, 4406);

    // 4408: no connection_init in time.
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    let (code, reason) = ws.closed().await;
    assert_eq!((code, reason.as_str()), (4408, "Connection initialisation timeout"));

    // 4400: not JSON; not a message; binary; a subscribe without id.
    for bad in [
        Message::text("not json"),
        Message::text(r#"{"type":"hello"}"#),
        Message::binary(b"{}".to_vec()),
        Message::text(r#"{"type":"subscribe","payload":{"query":"{ __typename }"}}"#),
    ] {
        let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
        ws.send_raw(bad.clone()).await;
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4400, "{bad:?}: {reason}");
        assert!(reason.starts_with("Invalid message received"), "{reason}");
    }

    // A message over the size limit ends the connection, and the server serves on.
    // (The client may still be writing when the server closes: it sees 1009 or a reset.)
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    let _ = ws.socket.send(Message::text("x".repeat(6 << 20))).await;
    match tokio::time::timeout(PATIENCE, ws.socket.next())
        .await
        .expect("an end in time")
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009, "{frame:?}"),
        Some(Ok(other)) => panic!("expected the end of the connection, got {other:?}"),
        None | Some(Err(_)) => {}
    }
    let mut ws = Ws::ready(addr, None).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "the server serves on");

    // 4401: subscribe before the acknowledgement.
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    ws.subscribe("1", ADDED, json!({})).await;
    assert_eq!(ws.closed().await, (4401, "Unauthorized".to_string()));

    // 4429: a second connection_init.
    let mut ws = Ws::ready(addr, None).await;
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(
        ws.closed().await,
        (4429, "Too many initialisation requests".to_string())
    );

    // Ping and pong, before and after init, with the payload echoed.
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    ws.send(json!({"type": "ping", "payload": {"at": 1}})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "payload": {"at": 1}}));
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(ws.recv().await["type"], "connection_ack");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
    ws.send(json!({"type": "pong"})).await;

    // 4409: an id still running; a completed id may be used again.
    ws.subscribe("a", ADDED, json!({})).await;
    ws.send(json!({"id": "a", "type": "complete"})).await;
    ws.subscribe("a", ADDED, json!({})).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv().await["type"],
        "pong",
        "a reused id after complete is accepted"
    );
    ws.subscribe("a", ADDED, json!({})).await;
    assert_eq!(ws.closed().await, (4409, "Subscriber for a already exists".to_string()));

    // A query runs too: next, then complete; an invalid document gets one error message.
    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("q", "{ auditEvents { totalCount } }", json!({})).await;
    assert_eq!(ws.next("q").await["data"]["auditEvents"]["totalCount"], 0);
    assert_eq!(ws.recv().await, json!({"id": "q", "type": "complete"}));
    ws.subscribe("v", "subscription { noSuchField }", json!({})).await;
    let error = ws.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert!(
        error["payload"][0]["message"].as_str().unwrap().contains("noSuchField"),
        "{error}"
    );
    ws.subscribe("c", ADDED, json!({"after": "not-a-cursor"})).await;
    let error = ws.failure("c").await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(error["message"].as_str().unwrap().starts_with("after:"), "{error}");
    // A cursor past the end of the log (of another database, or altered) is refused too.
    let ahead = auditgraph::domain::LiveCursor(1_000_000).encode();
    ws.subscribe("c", ADDED, json!({"after": ahead})).await;
    let error = ws.failure("c").await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("past the end of the log"),
        "{error}"
    );
    // The id of an ended operation may be used at once.
    ws.subscribe("c", "{ __typename }", json!({})).await;
    assert_eq!(ws.next("c").await["data"]["__typename"], "Query");
    assert_eq!(ws.recv().await, json!({"id": "c", "type": "complete"}));

    // A page of another origin may not open a socket (no CORS protects WebSockets); the
    // server's own pages and listed origins may.
    let open_from = |origin: &str| {
        let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match open_from("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap()).to_string();
            assert!(body.contains("https://evil.example"), "{body}");
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert!(open_from(&format!("http://{addr}")).await.is_ok());
    assert!(open_from("https://ui.example.com").await.is_ok(), "a listed origin");
}

/// A server with API keys and JWTs; the keys by role, and a token that carries no role.
async fn secured() -> (Live, HashMap<Role, String>, String) {
    let mut keys = HashMap::new();
    let secret = "live-tests-shared-secret-0123456789abcdef";
    let server = Live::start(Engine::Sqlite, |c, dir| {
        let path = dir.join("keys.json");
        for role in [Role::Reader, Role::Writer] {
            let created = create_key(&path, &format!("svc-{}", role.as_str()), role, PrincipalKind::Service).unwrap();
            keys.insert(role, created.key);
        }
        c.auth.modes = vec![AuthMode::ApiKeys, AuthMode::Jwt];
        c.auth.api_keys_file = path;
        c.auth.jwt_secret = Some(secret.parse().unwrap());
        c.auth.jwt_issuer = Some("https://idp.example.test".into());
        c.auth.jwt_audience = vec!["auditgraph".into()];
    })
    .await
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let roleless = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "nobody", "iss": "https://idp.example.test", "aud": "auditgraph", "exp": now + 600, "iat": now}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    (server, keys, roleless)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_take_the_same_credentials_and_roles_as_http() {
    let (server, keys, roleless) = secured().await;
    let addr = server.addr;
    let reader = &keys[&Role::Reader];

    // Credentials in connection_init: missing, wrong, without a role, valid.
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    ws.send(json!({"type": "connection_init"})).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("connection_init"), "{reason}");
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    ws.send(json!({"type": "connection_init", "payload": {"Authorization": "Bearer agk_wrong"}}))
        .await;
    assert_eq!(ws.closed().await.0, 4401);
    let mut ws = Ws::open(addr, Some("graphql-transport-ws"), None).await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {roleless}")}}))
        .await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.starts_with("Forbidden"), "{reason}");
    let mut ws = Ws::ready(addr, Some(reader)).await;
    let from = now(addr, Some(reader)).await;
    ws.subscribe("1", ADDED, json!({"after": from})).await;

    // Credentials on the upgrade request: valid ones need nothing more, wrong ones are refused
    // before the upgrade, as over HTTP.
    let mut by_header = Ws::open(addr, Some("graphql-transport-ws"), Some(reader)).await;
    by_header.send(json!({"type": "connection_init"})).await;
    assert_eq!(by_header.recv().await["type"], "connection_ack");
    by_header.subscribe("h", ADDED, json!({"after": from})).await;
    match Ws::try_open(addr, Some("graphql-transport-ws"), Some("agk_wrong")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }

    // A reader may subscribe but not write over the socket; a writer's event reaches both.
    ws.subscribe("m", CREATE, json!({"input": event_input(json!({}))}))
        .await;
    let refused = ws.failure("m").await;
    assert_eq!(refused["extensions"]["code"], "FORBIDDEN", "{refused}");
    // A POST that only claims to be an upgrade gets no pass around authentication.
    let request = "POST /graphql HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\ncontent-type: application/json\r\n\
                   content-length: 27\r\n\r\n{\"query\":\"{ __typename }\"}";
    let (status, _) = crate::helpers::http_exchange(addr, request).await;
    assert!(status.contains(" 401 "), "{status}");
    let id = write(addr, event_input(json!({})), Some(&keys[&Role::Writer])).await;
    assert_eq!(added(&ws.next("1").await).2, id);
    assert_eq!(added(&by_header.next("h").await).2, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_plain_http_a_subscription_is_refused_with_the_way_to_stream_it() {
    let server = Live::sqlite().await;
    let (status, body) = post(server.addr, "/graphql", &json!({"query": ADDED}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("graphql-transport-ws"),
        "{body}"
    );
}

/// Writers on several tasks, each with its own clock skew, and a subscriber that drops its
/// connection half-way and resumes from its last cursor while the writes go on: every event is
/// received exactly once, in log order, whatever its timestamp.
async fn resumption_under_concurrent_skewed_writers(engine: Engine) {
    let Some(server) = Live::start(engine, |_, _| {}).await else {
        return;
    };
    let addr = server.addr;
    let mut first = Ws::ready(addr, None).await;
    first
        .subscribe(
            "s",
            ADDED,
            json!({"filter": {"correlationId": "skew"}, "after": now(addr, None).await}),
        )
        .await;
    // An event of another correlation must never arrive.
    write(addr, event_input(json!({"correlationId": "other"})), None).await;

    let writers: Vec<_> = [-600_i64, -90, 0, 45]
        .into_iter()
        .enumerate()
        .map(|(writer, skew)| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..15 {
                    let at = chrono::Utc::now() + chrono::Duration::seconds(skew) - chrono::Duration::seconds(n);
                    let input = event_input(json!({
                        "correlationId": "skew",
                        "eventTimestamp": at.to_rfc3339(),
                        "eventData": {"writer": writer, "n": n},
                    }));
                    ids.push(write(addr, input, None).await);
                }
                ids
            })
        })
        .collect();

    // Half-way through, the first connection goes away.
    let mut received: Vec<(u64, String)> = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let (c, index, id) = added(&first.next("s").await);
        received.push((index, id));
        cursor = c;
    }
    drop(first);
    let mut second = Ws::ready(addr, None).await;
    second
        .subscribe(
            "s",
            ADDED,
            json!({"filter": {"correlationId": "skew"}, "after": cursor}),
        )
        .await;
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    while received.len() < written.len() {
        let (_, index, id) = added(&second.next("s").await);
        received.push((index, id));
    }
    // Nothing more: one more event arrives next, not a repeat.
    let last = write(addr, event_input(json!({"correlationId": "skew"})), None).await;
    assert_eq!(added(&second.next("s").await).2, last);

    let ids: Vec<&String> = received.iter().map(|(_, id)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event came twice");
    assert_eq!(
        unique,
        written.iter().collect::<HashSet<_>>(),
        "received exactly the events written"
    );
    assert!(
        received.windows(2).all(|w| w[0].0 < w[1].0),
        "in log order: {:?}",
        received.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_under_concurrent_skewed_writers_on_sqlite() {
    resumption_under_concurrent_skewed_writers(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_under_concurrent_skewed_writers_on_postgres() {
    resumption_under_concurrent_skewed_writers(Engine::Postgres).await;
}

/// A cursor from long ago replays everything after it, then continues live; events that
/// committed late with older timestamps come in commit order.
async fn replay_then_live(engine: Engine) {
    let Some(server) = Live::start(engine, |_, _| {}).await else {
        return;
    };
    let addr = server.addr;
    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("s", ADDED, json!({"after": now(addr, None).await})).await;
    let first = write(addr, event_input(json!({})), None).await;
    let (cursor, index, id) = added(&ws.next("s").await);
    assert_eq!(id, first);
    // Older and older timestamps, committed later and later.
    let mut later = Vec::new();
    for minutes in [10, 20, 30] {
        let at = chrono::Utc::now() - chrono::Duration::minutes(minutes);
        later.push(write(addr, event_input(json!({"eventTimestamp": at.to_rfc3339()})), None).await);
    }
    for expected in &later {
        assert_eq!(&added(&ws.next("s").await).2, expected);
    }
    drop(ws);
    let mut again = Ws::ready(addr, None).await;
    again.subscribe("r", ADDED, json!({"after": cursor})).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let (_, i, id) = added(&again.next("r").await);
        assert!(i > index);
        replayed.push(id);
    }
    assert_eq!(replayed, later, "replayed in commit order, not timestamp order");
    let live = write(addr, event_input(json!({})), None).await;
    assert_eq!(added(&again.next("r").await).2, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_on_sqlite() {
    replay_then_live(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_on_postgres() {
    replay_then_live(Engine::Postgres).await;
}

const TREE: &str = "subscription($c: String, $r: UUID, $after: String) { causalityTreeChanged(correlationId: $c, rootEventId: $r, after: $after) \
    { cursor depth parentEventId event { eventId } } }";

fn change(payload: &Value) -> (String, u64, Option<String>) {
    let change = &payload["data"]["causalityTreeChanged"];
    (
        change["event"]["eventId"]
            .as_str()
            .unwrap_or_else(|| panic!("{payload}"))
            .to_string(),
        change["depth"].as_u64().unwrap(),
        change["parentEventId"].as_str().map(str::to_string),
    )
}

/// Tree changes carry depth and parent, for a correlation and for the tree below an event, also
/// below events older than the subscription; other trees stay silent.
async fn tree_changes_are_placed(engine: Engine) {
    let Some(server) = Live::start(engine, |_, _| {}).await else {
        return;
    };
    let addr = server.addr;
    let root = write(addr, event_input(json!({"correlationId": "tree"})), None).await;
    let child = write(
        addr,
        event_input(json!({"correlationId": "tree", "parentEventId": root})),
        None,
    )
    .await;
    // Both are in the log (which gives subscriptions their start) before anyone subscribes.
    let (_, sequenced) = post(
        addr,
        "/graphql",
        &json!({"query": "{ logCheckpoint { treeSize } }"}),
        None,
    )
    .await;
    assert_eq!(sequenced["data"]["logCheckpoint"]["treeSize"], 2, "{sequenced}");
    let mut by_correlation = Ws::ready(addr, None).await;
    let from = now(addr, None).await;
    by_correlation
        .subscribe("c", TREE, json!({"c": "tree", "after": from}))
        .await;
    let mut below_child = Ws::ready(addr, None).await;
    below_child
        .subscribe("b", TREE, json!({"r": child, "after": from}))
        .await;
    // Give both subscriptions time to start before the writes they must see.
    by_correlation.send(json!({"type": "ping"})).await;
    assert_eq!(by_correlation.recv().await["type"], "pong");

    let elsewhere = write(addr, event_input(json!({"correlationId": "elsewhere"})), None).await;
    // Its parent lies in another correlation: in this correlation's tree it is a root.
    let adopted = write(
        addr,
        event_input(json!({"correlationId": "tree", "parentEventId": elsewhere})),
        None,
    )
    .await;
    let sibling = write(
        addr,
        event_input(json!({"correlationId": "tree", "parentEventId": root})),
        None,
    )
    .await;
    let grandchild = write(
        addr,
        event_input(json!({"correlationId": "tree", "parentEventId": child})),
        None,
    )
    .await;
    let great = write(
        addr,
        event_input(json!({"correlationId": "tree", "parentEventId": grandchild})),
        None,
    )
    .await;
    let new_root = write(addr, event_input(json!({"correlationId": "tree"})), None).await;

    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(change(&by_correlation.next("c").await));
    }
    assert_eq!(
        seen,
        vec![
            (adopted, 0, None),
            (sibling.clone(), 1, Some(root.clone())),
            (grandchild.clone(), 2, Some(child.clone())),
            (great.clone(), 3, Some(grandchild.clone())),
            (new_root, 0, None),
        ]
    );
    assert_eq!(
        change(&below_child.next("b").await),
        (grandchild.clone(), 1, Some(child))
    );
    assert_eq!(change(&below_child.next("b").await), (great, 2, Some(grandchild)));
    // The sibling and the new root are outside the tree below the child: the next message is
    // the next event below it.
    let deeper = write(
        addr,
        event_input(json!({"correlationId": "x", "parentEventId": sibling})),
        None,
    )
    .await;
    let last = write(addr, event_input(json!({"correlationId": "tree"})), None).await;
    let _ = (deeper, last);
    below_child.send(json!({"type": "ping"})).await;
    let next = below_child.recv().await;
    assert_eq!(next["type"], "pong", "nothing else was sent below the child: {next}");

    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("x", TREE, json!({"c": "tree", "r": root})).await;
    assert_eq!(ws.failure("x").await["extensions"]["code"], "BAD_USER_INPUT");
    ws.subscribe("y", TREE, json!({"r": uuid::Uuid::now_v7()})).await;
    assert_eq!(ws.failure("y").await["extensions"]["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_changes_are_placed_on_sqlite() {
    tree_changes_are_placed(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_changes_are_placed_on_postgres() {
    tree_changes_are_placed(Engine::Postgres).await;
}

/// GraphQL, REST, a REST batch, a GraphQL batch and the import command all reach a subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_reaches_subscribers() {
    let server = Live::sqlite().await;
    let addr = server.addr;
    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("s", ADDED, json!({"after": now(addr, None).await})).await;
    let mut expected = vec![write(addr, event_input(json!({"eventType": "path.graphql.single"})), None).await];
    let (status, body) = post(
        addr,
        "/api/v1/audit/events",
        &rest_event(json!({"event_type": "path.rest.single"})),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    expected.push(body["event_id"].as_str().unwrap().to_string());
    let (status, body) = post(
        addr,
        "/api/v1/audit/events/batch",
        &json!([
            rest_event(json!({"event_type": "path.rest.batch"})),
            rest_event(json!({"event_type": "path.rest.batch"}))
        ]),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for id in body["event_ids"].as_array().unwrap() {
        expected.push(id.as_str().unwrap().to_string());
    }
    let (status, body) = post(
        addr,
        "/graphql",
        &json!({
            "query": "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { eventId } }",
            "variables": {"inputs": [event_input(json!({"eventType": "path.graphql.batch"}))]}
        }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expected.push(
        body["data"]["createAuditEvents"][0]["eventId"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let file = server.dir.path().join("import.jsonl");
    let imported = uuid::Uuid::now_v7().to_string();
    std::fs::write(
        &file,
        format!(
            "{}\n",
            rest_event(json!({"event_id": imported, "event_type": "path.import"}))
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"))
        .args(["import", file.to_str().unwrap(), "--operator", "ops"])
        .env("DATABASE_URL", &server.url)
        .env("AUDITGRAPH_LOG_KEY_FILE", server.dir.path().join("log.key"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    expected.push(imported);
    let mut received = Vec::new();
    for _ in 0..expected.len() {
        received.push(added(&ws.next("s").await).2);
    }
    assert_eq!(received, expected);
}

/// Two server processes on one PostgreSQL database: what is written through one reaches a
/// subscriber of the other, through the sequencer's notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_deliver_each_others_events() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let env = [("AUDITGRAPH_LOG_KEY_FILE", key.to_str().unwrap())];
    let (_one, writer): (ChildGuard, SocketAddr) =
        start_binary_with(dir.path(), Some(&database.url), std::process::Stdio::null(), &env).await;
    let (_two, reader) = start_binary_with(dir.path(), Some(&database.url), std::process::Stdio::null(), &env).await;
    let mut ws = Ws::ready(reader, None).await;
    ws.subscribe("s", ADDED, json!({"after": now(reader, None).await}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    let mut delays = Vec::new();
    for _ in 0..5 {
        let id = write(writer, event_input(json!({})), None).await;
        let acknowledged = Instant::now();
        assert_eq!(added(&ws.next("s").await).2, id);
        delays.push(acknowledged.elapsed());
    }
    delays.sort();
    assert!(
        delays[2] < Duration::from_secs(1),
        "the median delivery through the other process took {:?} (all: {delays:?})",
        delays[2]
    );
}

/// A consumer that stops reading falls behind, receives an error carrying its cursor, and
/// resumes from it without a gap; memory stays bounded by the ring.
async fn a_slow_consumer_is_ended_with_its_cursor(engine: Engine) {
    let Some(server) = Live::start(engine, |c, _| {
        c.live.buffer = 16;
        c.live.send_timeout_ms = 120_000;
    })
    .await
    else {
        return;
    };
    let addr = server.addr;
    let mut slow = Ws::ready(addr, None).await;
    let query =
        "subscription($after: String) { auditEventAdded(after: $after) { cursor event { eventId eventData } } }";
    slow.subscribe("s", query, json!({"after": now(addr, None).await}))
        .await;
    slow.send(json!({"type": "ping"})).await;
    assert_eq!(slow.recv().await["type"], "pong");
    // Large events, written in batches, while the consumer does not read.
    let bulk = "x".repeat(60_000);
    let mut written = Vec::new();
    for _ in 0..12 {
        let batch: Vec<Value> = (0..50)
            .map(|_| rest_event(json!({"event_data": {"bulk": bulk}})))
            .collect();
        let (status, body) = post(addr, "/api/v1/audit/events/batch", &json!(batch), None).await;
        assert_eq!(status, 201, "{body}");
        written.extend(
            body["event_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_string()),
        );
    }
    let mut received = Vec::new();
    let resume = loop {
        let message = slow.recv().await;
        match message["type"].as_str() {
            Some("next") if !message["payload"]["data"].is_null() => received.push(
                message["payload"]["data"]["auditEventAdded"]["event"]["eventId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Some("next") if message["payload"]["data"].is_null() => {
                let error = &message["payload"]["errors"][0];
                assert_eq!(error["extensions"]["code"], "SUBSCRIPTION_LAGGED", "{message}");
                assert!(error["message"].as_str().unwrap().contains("16 events"), "{message}");
                assert_eq!(slow.recv().await, json!({"id": "s", "type": "complete"}));
                break error["extensions"]["resumeAfter"].as_str().unwrap().to_string();
            }
            _ => panic!("unexpected {message}"),
        }
    };
    assert!(received.len() < written.len(), "the consumer fell behind");
    let mut again = Ws::ready(addr, None).await;
    again
        .subscribe(
            "r",
            "subscription($after: String) { auditEventAdded(after: $after) { event { eventId } } }",
            json!({"after": resume}),
        )
        .await;
    while received.len() < written.len() {
        let payload = again.next("r").await;
        received.push(
            payload["data"]["auditEventAdded"]["event"]["eventId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(received, written, "resumed without a gap or a repeat");
    let (_, metrics) = crate::helpers::http_exchange(addr, &crate::helpers::http_get("/metrics")).await;
    assert!(
        metrics.contains("live_subscriptions_ended_total{code=\"SUBSCRIPTION_LAGGED\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_ended_with_its_cursor_on_sqlite() {
    a_slow_consumer_is_ended_with_its_cursor(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_ended_with_its_cursor_on_postgres() {
    a_slow_consumer_is_ended_with_its_cursor(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_subscriptions_are_limited_and_counted() {
    let server = Live::start(Engine::Sqlite, |c, _| {
        c.live.max_connections = 2;
        c.live.max_subscriptions = 3;
        c.live.max_per_connection = 2;
    })
    .await
    .unwrap();
    let addr = server.addr;
    let mut one = Ws::ready(addr, None).await;
    let mut two = Ws::ready(addr, None).await;
    match Ws::try_open(addr, Some("graphql-transport-ws"), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "5");
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "TOO_MANY_CONNECTIONS",
                "{body}"
            );
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    one.subscribe("1", ADDED, json!({})).await;
    one.subscribe("2", ADDED, json!({})).await;
    one.subscribe("3", ADDED, json!({})).await;
    let refused = one.recv().await;
    assert_eq!(refused["id"], "3", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "TOO_MANY_ON_CONNECTION",
        "{refused}"
    );
    two.subscribe("1", ADDED, json!({})).await;
    two.subscribe("2", ADDED, json!({})).await;
    let refused = two.failure("2").await;
    assert_eq!(refused["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS", "{refused}");
    let (_, metrics) = crate::helpers::http_exchange(addr, &crate::helpers::http_get("/metrics")).await;
    for line in [
        "live_connections{transport=\"websocket\"} 2",
        "live_subscriptions 3",
        "live_refusals_total{reason=\"too_many_connections\"} 1",
        "live_refusals_total{reason=\"too_many_on_connection\"} 1",
        "live_refusals_total{reason=\"too_many_subscriptions\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Completing one frees its place; closing a connection frees its places.
    one.send(json!({"id": "1", "type": "complete"})).await;
    drop(two);
    let started = Instant::now();
    loop {
        let (_, metrics) = crate::helpers::http_exchange(addr, &crate::helpers::http_get("/metrics")).await;
        if metrics.contains("live_subscriptions 1") && metrics.contains("live_connections{transport=\"websocket\"} 1") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _three = Ws::ready(addr, None).await;
}

/// Server-sent events: a subscription streams `next` events; a query ends with `complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_carry_subscriptions_for_clients_without_websockets() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let server = Live::sqlite().await;
    let addr = server.addr;
    let open = |query: &str| {
        let body = json!({"query": query}).to_string();
        format!(
            "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            open(&format!(
                "subscription {{ auditEventAdded(after: \"{}\") {{ event {{ eventId }} }} }}",
                now(addr, None).await
            ))
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut head = Vec::new();
    loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if line.is_empty() {
            break;
        }
        head.push(line.to_ascii_lowercase());
    }
    assert!(head[0].contains(" 200 "), "{head:?}");
    assert!(head.iter().any(|h| h == "content-type: text/event-stream"), "{head:?}");
    // The subscription has started once the server counts it.
    let started = Instant::now();
    loop {
        let (_, metrics) = crate::helpers::http_exchange(addr, &crate::helpers::http_get("/metrics")).await;
        if metrics.contains("live_subscriptions 1") {
            assert!(metrics.contains("live_connections{transport=\"sse\"} 1"), "{metrics}");
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = write(addr, event_input(json!({})), None).await;
    let mut event = None;
    let mut data = None;
    while data.is_none() {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            event = Some(name.to_string());
        } else if let Some(json) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str::<Value>(json).unwrap());
        }
    }
    assert_eq!(event.as_deref(), Some("next"));
    assert_eq!(data.unwrap()["data"]["auditEventAdded"]["event"]["eventId"], json!(id));

    let (status, body) = crate::helpers::http_exchange(
        addr,
        &open("{ auditEvents { totalCount } }").replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        body.contains("event: next\ndata: {\"data\":{\"auditEvents\":{\"totalCount\":1}}}"),
        "{body}"
    );
    assert!(body.contains("event: complete"), "{body}");

    // A client that takes both gets JSON for a query, and a stream only for a subscription.
    let both = |query: &str| {
        let body = json!({"query": query}).to_string();
        format!(
            "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (_, body) = crate::helpers::http_exchange(addr, &both("{ auditEvents { totalCount } }")).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["data"]["auditEvents"]["totalCount"], 1, "{body}");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(both("subscription { auditEventAdded { cursor } }").as_bytes())
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    assert!(lines.next_line().await.unwrap().unwrap().contains(" 200 "));
    let mut streamed = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.is_empty() {
            break;
        }
        streamed |= line.eq_ignore_ascii_case("content-type: text/event-stream");
    }
    assert!(streamed, "a subscription streams");
}

/// A graceful shutdown ends each subscription with its cursor, closes with 1001, and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_subscriptions_with_their_cursor_and_closes_going_away() {
    let mut server = Live::sqlite().await;
    let addr = server.addr;
    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("s", ADDED, json!({"after": now(addr, None).await})).await;
    let id = write(addr, event_input(json!({})), None).await;
    let (cursor, _, received) = added(&ws.next("s").await);
    assert_eq!(received, id);
    let stopping = tokio::spawn(async move {
        server.stop().await;
        server
    });
    let ended = ws.failure("s").await;
    assert_eq!(ended["extensions"]["code"], "SHUTTING_DOWN", "{ended}");
    assert_eq!(ended["extensions"]["resumeAfter"], json!(cursor), "{ended}");
    assert_eq!(ws.closed().await.0, 1001);
    tokio::time::timeout(PATIENCE, stopping).await.unwrap().unwrap();
}
