//! GraphQL over WebSocket: the `graphql-transport-ws` protocol of the graphql-ws library, at
//! `GET /graphql` with `Upgrade: websocket`.
//!
//! Close codes, as the protocol defines them:
//!
//! | code | when |
//! |------|------|
//! | 4400 | a message that is not JSON, not a protocol message, or binary |
//! | 4401 | `subscribe` before `connection_ack`; or credentials missing or not valid |
//! | 4403 | authenticated, but without the role `reader` |
//! | 4406 | the client did not offer the `graphql-transport-ws` subprotocol |
//! | 4408 | no `connection_init` within `AUDITGRAPH_LIVE_INIT_TIMEOUT_MS` |
//! | 4409 | `subscribe` with the id of an operation still running |
//! | 4429 | a second `connection_init` |
//! | 4500 | the server failed while handling the connection |
//! | 1001 | the server is shutting down (each subscription first ends with its cursor) |
//! | 1013 | the client did not read a message within `AUDITGRAPH_LIVE_SEND_TIMEOUT_MS` |
//!
//! Credentials come from the upgrade request's headers (as over HTTP) or from the
//! `connection_init` payload (`{"Authorization": "Bearer …"}`, any case, or the same inside
//! `"headers"`), which browsers need: they cannot set headers on a WebSocket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::HttpState;
use crate::auth::{Principal, Role};
use crate::graphql::prepare_stream;
use crate::live::{LiveConnection, LiveRefusal, Transport};
use crate::metrics::Source;

/// The subprotocol.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// A close of the protocol: its code and reason (at most 123 bytes, as close frames allow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// Why.
    pub reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason: String = reason.into();
        if reason.len() > 123 {
            let mut end = 120;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        Self { code, reason }
    }

    /// 4400: a message the protocol does not allow.
    pub fn bad_message(why: impl std::fmt::Display) -> Self {
        Self::new(4400, format!("Invalid message received: {why}"))
    }

    /// 4500: the server failed.
    pub fn internal() -> Self {
        Self::new(4500, "Internal server error")
    }
}

/// A message from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Map<String, Value>>,
    },
    Ping {
        #[serde(default)]
        payload: Option<serde_json::Map<String, Value>>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<serde_json::Map<String, Value>>,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

/// What a `subscribe` runs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribePayload {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    extensions: Option<serde_json::Map<String, Value>>,
}

/// Parses a client message; the error says what is wrong with it.
fn parse(text: &str) -> Result<ClientMessage, Close> {
    let message: ClientMessage = serde_json::from_str(text).map_err(Close::bad_message)?;
    match &message {
        ClientMessage::Subscribe { id, .. } | ClientMessage::Complete { id } if id.is_empty() => {
            Err(Close::bad_message("`id` must be a non-empty string"))
        }
        ClientMessage::Subscribe { payload, .. }
            if payload
                .variables
                .as_ref()
                .is_some_and(|v| !(v.is_object() || v.is_null())) =>
        {
            Err(Close::bad_message("`payload.variables` must be an object"))
        }
        _ => Ok(message),
    }
}

/// The credentials in a `connection_init` payload: `Authorization` (any case), at the top or
/// inside `headers`, with or without the `Bearer` scheme.
fn token_in(payload: &serde_json::Map<String, Value>) -> Result<Option<String>, String> {
    let find = |map: &serde_json::Map<String, Value>| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.clone())
    };
    let value = find(payload).or_else(|| payload.get("headers").and_then(Value::as_object).and_then(find));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let text = text.trim();
            let token = match text.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                Some(_) => return Err("the Authorization scheme is not supported: use Bearer".into()),
                None => text,
            };
            Ok(Some(token.to_string()))
        }
        Some(_) => Err("Authorization in connection_init must be a string".into()),
    }
}

/// Whether a request is a WebSocket opening handshake: a GET with `Upgrade: websocket`,
/// `Connection: upgrade` and a `Sec-WebSocket-Key`.
pub fn is_upgrade(method: &axum::http::Method, headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    method == axum::http::Method::GET
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Whether a browser page of another origin opened the socket: its `Origin` names a host other
/// than the one addressed (`Host`) and not among `allowed`. WebSockets are not subject to CORS,
/// so without this check any site could read the audit trail with a user's cookie-based
/// credentials (a trusted proxy's session). Clients that are not browsers send no `Origin`.
pub fn foreign_origin(headers: &HeaderMap, allowed: &[String]) -> Option<String> {
    let origin = headers
        .get(header::ORIGIN)?
        .to_str()
        .unwrap_or("?")
        .trim()
        .to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host == host => None,
        _ => Some(origin),
    }
}

/// Answers an upgrade request: refused (403) from a page of another origin, refused (503) when
/// the server holds as many live connections as it may, else upgraded and served.
pub fn upgrade(
    state: HttpState,
    upgrade: WebSocketUpgrade,
    headers: &HeaderMap,
    caller: Option<Principal>,
) -> Response {
    if let Some(origin) = foreign_origin(headers, &state.ctx.live.settings().allowed_origins) {
        state.ctx.metrics.live_refused("foreign_origin");
        return super::graphql::refusal(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "a WebSocket opened by a page of {origin} is refused: only pages of this server, or origins \
                 listed in AUDITGRAPH_LIVE_ALLOWED_ORIGINS, may open one"
            ),
            super::graphql::Media::Json,
        );
    }
    let connection = match state.ctx.live.connect(Transport::WebSocket) {
        Ok(connection) => connection,
        Err(refused) => return too_many(&refused),
    };
    let limit = state.ws_message_limit;
    let upgrade = upgrade
        .protocols([PROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit);
    let agreed = upgrade.selected_protocol().is_some();
    upgrade.on_upgrade(move |socket| serve(state, socket, agreed, caller, connection))
}

/// The refusal of a live connection over the server's limit: 503 with `Retry-After`.
pub fn too_many(refused: &LiveRefusal) -> Response {
    let mut response = super::graphql::refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        &refused.reason().to_ascii_uppercase(),
        refused.to_string(),
        super::graphql::Media::Json,
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    response
}

/// Serves one upgraded connection until either side closes it.
pub async fn serve(
    state: HttpState,
    socket: WebSocket,
    protocol_agreed: bool,
    caller: Option<Principal>,
    connection: LiveConnection,
) {
    let settings = state.ctx.live.settings().clone();
    let (sink, mut stream) = socket.split();
    let (out, queue) = mpsc::channel::<Message>(16);
    let mut writer = tokio::spawn(write(sink, queue, Duration::from_millis(settings.send_timeout_ms)));
    let mut connection = Connection {
        state,
        out,
        caller,
        token: None,
        live: Arc::new(connection),
        initialised: false,
        acknowledged: false,
        operations: Arc::new(Mutex::new(HashMap::new())),
        generation: 0,
        internal: None,
    };
    let (internal, mut failed) = mpsc::channel::<()>(1);
    connection.internal = Some(internal);
    if !protocol_agreed {
        connection
            .close(Close::new(
                4406,
                format!("Subprotocol not acceptable: offer {PROTOCOL}"),
            ))
            .await;
        let _ = writer.await;
        return;
    }
    let init_deadline = tokio::time::sleep(Duration::from_millis(settings.init_timeout_ms));
    tokio::pin!(init_deadline);
    // Pings keep idle connections open through proxies, and find dead peers: a write that
    // cannot complete ends the connection.
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let closed = connection.live.live().closed();
    tokio::pin!(closed);
    let close = loop {
        tokio::select! {
            () = &mut init_deadline, if !connection.initialised => {
                break Some(Close::new(4408, "Connection initialisation timeout"));
            }
            _ = failed.recv() => break Some(Close::internal()),
            () = &mut closed => {
                // Each subscription ends with its cursor first (its follower sees the same
                // signal); then the connection closes.
                connection.drain(Duration::from_secs(2)).await;
                break Some(Close::new(1001, "the server is shutting down; reconnect and resume from your last cursor"));
            }
            _ = &mut writer => break None,
            _ = keepalive.tick() => {
                let _ = connection.out.try_send(Message::Ping(Default::default()));
            }
            received = stream.next() => {
                let text = match received {
                    // A frame over the size limit is refused before it is read.
                    Some(Err(error)) if error.to_string().contains("Space limit exceeded") => {
                        break Some(Close::new(1009, format!("the message is larger than the {} bytes this server accepts", connection.state.ws_message_limit)));
                    }
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => break Some(Close::bad_message("binary messages are not part of the protocol")),
                    Some(Ok(Message::Text(text))) => text,
                };
                match parse(text.as_str()) {
                    Ok(message) => {
                        if let Err(close) = connection.handle(message).await {
                            break Some(close);
                        }
                    }
                    Err(close) => break Some(close),
                }
            }
        }
    };
    connection.stop_all();
    if let Some(close) = close {
        connection.close(close).await;
    }
    drop(connection);
    if !writer.is_finished() {
        let _ = writer.await;
    }
}

/// How often an idle connection is pinged.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// One connection's state.
struct Connection {
    state: HttpState,
    out: mpsc::Sender<Message>,
    /// Who the upgrade request authenticated, if anyone, then who `connection_init` did.
    caller: Option<Principal>,
    /// The credentials of `connection_init`, checked again at each `subscribe` (a key revoked
    /// or a token expired since stops counting).
    token: Option<String>,
    live: Arc<LiveConnection>,
    initialised: bool,
    acknowledged: bool,
    /// Running operations by id, with the generation that started them.
    operations: Arc<Mutex<HashMap<String, (u64, AbortHandle)>>>,
    generation: u64,
    /// Told when an operation's task failed.
    internal: Option<mpsc::Sender<()>>,
}

impl Connection {
    async fn send(&self, message: Value) {
        let _ = self.out.send(Message::Text(Utf8Bytes::from(message.to_string()))).await;
    }

    async fn close(&self, close: Close) {
        if close.code == 4500 || close.code == 1013 {
            tracing::warn!(code = close.code, reason = %close.reason, "closing a WebSocket connection");
        } else {
            tracing::debug!(code = close.code, reason = %close.reason, "closing a WebSocket connection");
        }
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code: close.code,
                reason: Utf8Bytes::from(close.reason),
            })))
            .await;
    }

    async fn handle(&mut self, message: ClientMessage) -> Result<(), Close> {
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.initialised {
                    return Err(Close::new(4429, "Too many initialisation requests"));
                }
                self.initialised = true;
                let (principal, token) = self.authenticate(payload.unwrap_or_default())?;
                self.caller = Some(principal);
                self.token = token;
                self.acknowledged = true;
                self.send(json!({"type": "connection_ack"})).await;
                Ok(())
            }
            ClientMessage::Ping { payload } => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = payload {
                    pong["payload"] = Value::Object(payload);
                }
                self.send(pong).await;
                Ok(())
            }
            ClientMessage::Pong { .. } => Ok(()),
            ClientMessage::Subscribe { id, payload } => {
                if !self.acknowledged {
                    return Err(Close::new(4401, "Unauthorized"));
                }
                if let Some(token) = &self.token
                    && let Err(error) = self.state.auth.authenticate_token(token)
                {
                    self.state.ctx.metrics.auth_refused(Source::Graphql, "unauthenticated");
                    return Err(Close::new(4401, format!("Unauthorized: {error}")));
                }
                let running = {
                    let running = self.operations.lock().map_err(|_| Close::internal())?;
                    if running.contains_key(&id) {
                        return Err(Close::new(4409, format!("Subscriber for {id} already exists")));
                    }
                    running.len()
                };
                // Queries and mutations count against the connection's limit too: one socket
                // must not run unbounded work at once.
                let limit = self.state.ctx.live.settings().max_per_connection;
                if running as u64 >= limit {
                    let refused = LiveRefusal::TooManyOnConnection(limit);
                    self.state.ctx.metrics.live_refused(refused.reason());
                    let error = json!([{"message": refused.to_string(), "extensions": {"code": refused.reason().to_ascii_uppercase()}}]);
                    self.send(json!({"id": id, "type": "error", "payload": error})).await;
                    return Ok(());
                }
                self.start(id, payload);
                Ok(())
            }
            ClientMessage::Complete { id } => {
                if let Some((_, task)) = self.operations.lock().map_err(|_| Close::internal())?.remove(&id) {
                    task.abort();
                }
                Ok(())
            }
        }
    }

    /// The caller of the connection: the payload's credentials, else the upgrade request's.
    fn authenticate(&self, payload: serde_json::Map<String, Value>) -> Result<(Principal, Option<String>), Close> {
        let state = &self.state;
        let refuse = |reason: &str, close: Close| {
            state.ctx.metrics.auth_refused(Source::Graphql, reason);
            close
        };
        let (principal, token) = match token_in(&payload) {
            Err(why) => {
                return Err(refuse(
                    "unauthenticated",
                    Close::new(4401, format!("Unauthorized: {why}")),
                ));
            }
            Ok(Some(token)) => (
                state
                    .auth
                    .authenticate_token(&token)
                    .map_err(|e| refuse("unauthenticated", Close::new(4401, format!("Unauthorized: {e}"))))?,
                Some(token),
            ),
            Ok(None) => match &self.caller {
                Some(caller) => (caller.clone(), None),
                None => {
                    return Err(refuse(
                        "unauthenticated",
                        Close::new(
                            4401,
                            "Unauthorized: send {\"Authorization\": \"Bearer <API key or token>\"} in connection_init",
                        ),
                    ));
                }
            },
        };
        if let Err(refused) = state.ctx.authorize(&principal, Role::Reader) {
            return Err(refuse("forbidden", Close::new(4403, format!("Forbidden: {refused}"))));
        }
        Ok((principal, token))
    }

    /// Starts an operation: it streams `next` messages, then `complete`, or one `error`.
    fn start(&mut self, id: String, payload: SubscribePayload) {
        let mut request = async_graphql::Request::new(payload.query);
        request.operation_name = payload.operation_name;
        if let Some(variables) = payload.variables {
            request.variables = async_graphql::Variables::from_json(variables);
        }
        if let Some(extensions) = payload.extensions {
            for (key, value) in extensions {
                if let Ok(value) = async_graphql::Value::from_json(value) {
                    request.extensions.insert(key, value);
                }
            }
        }
        let out = self.out.clone();
        let operations = self.operations.clone();
        self.generation += 1;
        let generation = self.generation;
        let state = self.state.clone();
        let caller = self.caller.clone();
        let live = self.live.clone();
        let task_id = id.clone();
        // The operation is registered before its task can end and unregister it (the lock is
        // held across the spawn); it is unregistered before its last message, so that the
        // client may reuse the id as soon as it sees that message.
        let Ok(mut running) = self.operations.lock() else {
            return;
        };
        let task = tokio::spawn(async move {
            let last = run_operation(&state, request, caller, live, &task_id, &out).await;
            if let Ok(mut running) = operations.lock()
                && running.get(&task_id).is_some_and(|(g, _)| *g == generation)
            {
                running.remove(&task_id);
            }
            if let Some(last) = last {
                let _ = out.send(Message::Text(Utf8Bytes::from(last.to_string()))).await;
            }
        });
        running.insert(id, (generation, task.abort_handle()));
        drop(running);
        // A task that panics fails the connection (4500), not the process.
        if let Some(internal) = self.internal.clone() {
            tokio::spawn(async move {
                if let Err(error) = task.await
                    && error.is_panic()
                {
                    tracing::error!("an operation of a WebSocket connection failed");
                    let _ = internal.send(()).await;
                }
            });
        }
    }

    /// Waits up to `limit` for the running operations to end.
    async fn drain(&self, limit: Duration) {
        let started = tokio::time::Instant::now();
        while started.elapsed() < limit {
            if self.operations.lock().map(|running| running.is_empty()).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop_all(&self) {
        if let Ok(mut running) = self.operations.lock() {
            for (_, (_, task)) in running.drain() {
                task.abort();
            }
        }
    }
}

/// Runs one operation and sends its results; returns its last message (`complete` or `error`),
/// or `None` when the client went away.
async fn run_operation(
    state: &HttpState,
    mut request: async_graphql::Request,
    caller: Option<Principal>,
    live: Arc<LiveConnection>,
    id: &str,
    out: &mpsc::Sender<Message>,
) -> Option<Value> {
    let send = |message: Value| {
        let out = out.clone();
        async move {
            out.send(Message::Text(Utf8Bytes::from(message.to_string())))
                .await
                .is_ok()
        }
    };
    if let Err(reason) = super::graphql::screen(state, &mut request) {
        let error = json!([{"message": reason.to_string(), "extensions": {"code": super::graphql::BAD_REQUEST}}]);
        return Some(json!({"id": id, "type": "error", "payload": error}));
    }
    let order = crate::graphql::order::ResponseOrder::of(&mut request);
    let request = prepare_stream(request, &state.ctx.store, live, caller);
    let mut responses = state.schema.execute_stream(request);
    while let Some(mut response) = responses.next().await {
        if let Some(order) = &order {
            order.apply(&mut response);
        }
        // A response without data is the operation's end: refused before it ran, or a
        // subscription that ended (with the cursor to resume from).
        if response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.is_empty())
        {
            let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            return Some(json!({"id": id, "type": "error", "payload": errors}));
        }
        let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
        if !send(json!({"id": id, "type": "next", "payload": payload})).await {
            return None;
        }
    }
    Some(json!({"id": id, "type": "complete"}))
}

/// Writes the connection's messages in order; a client that does not read one within
/// `timeout` is disconnected (1013, as far as the close can still be written).
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    timeout: Duration,
) {
    while let Some(message) = queue.recv().await {
        let last = matches!(message, Message::Close(_));
        match tokio::time::timeout(timeout, sink.send(message)).await {
            Ok(Ok(())) if last => break,
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "a WebSocket client did not read for too long; closing its connection"
                );
                let close = Message::Close(Some(CloseFrame {
                    code: 1013,
                    reason: Utf8Bytes::from_static(
                        "the client did not read in time; reconnect and resume from your last cursor",
                    ),
                }));
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_the_protocol_parse_and_others_close_with_4400() {
        assert!(matches!(
            parse(r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit { payload: None })
        ));
        assert!(matches!(
            parse(r#"{"type":"connection_init","payload":{"a":1}}"#),
            Ok(ClientMessage::ConnectionInit { payload: Some(_) })
        ));
        assert!(matches!(
            parse(r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { a }"}}"#),
            Ok(ClientMessage::Subscribe { .. })
        ));
        for bad in [
            "not json",
            "[]",
            r#"{"type":"unknown"}"#,
            r#"{"payload":{}}"#,
            r#"{"type":"connection_init","payload":"text"}"#,
            r#"{"type":"subscribe","payload":{"query":"{ a }"}}"#,
            r#"{"id":"","type":"subscribe","payload":{"query":"{ a }"}}"#,
            r#"{"id":1,"type":"subscribe","payload":{"query":"{ a }"}}"#,
            r#"{"id":"1","type":"subscribe","payload":{}}"#,
            r#"{"id":"1","type":"subscribe","payload":{"query":"{ a }","variables":[1]}}"#,
            r#"{"type":"complete"}"#,
        ] {
            assert_eq!(parse(bad).map(|_| ()).unwrap_err().code, 4400, "{bad}");
        }
    }

    #[test]
    fn credentials_are_found_in_the_init_payload() {
        let payload = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(token_in(&payload(json!({}))), Ok(None));
        assert_eq!(
            token_in(&payload(json!({"Authorization": "Bearer abc"}))),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            token_in(&payload(json!({"authorization": "abc"}))),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            token_in(&payload(json!({"headers": {"AUTHORIZATION": "bearer  abc "}}))),
            Ok(Some("abc".into()))
        );
        assert!(token_in(&payload(json!({"Authorization": "Basic abc"}))).is_err());
        assert!(token_in(&payload(json!({"Authorization": 5}))).is_err());
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let close = Close::new(4400, "é".repeat(200));
        assert!(close.reason.len() <= 123);
        assert!(close.reason.ends_with("..."));
        assert_eq!(Close::internal().code, 4500);
    }
}
