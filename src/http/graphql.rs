//! GraphQL over HTTP, as the GraphQL-over-HTTP specification (stage-2 draft) asks:
//!
//! - POST only with `Content-Type: application/json` (415 otherwise: a web page cannot send that
//!   cross-site without a CORS preflight, so no other site can write events through a browser);
//!   GET only for queries (405 for a mutation).
//! - `Accept: application/graphql-response+json` gets that media type, with 400 for a document
//!   that does not parse or validate; `application/json`, `*/*` or no `Accept` get
//!   `application/json` and 200 for every GraphQL response; anything else 406.
//! - A request that fails before execution has no `data` entry.
//! - Every refusal of the transport (malformed body, batch, nesting, media types, size, time) is a
//!   GraphQL-shaped JSON error with `extensions.code`, never a bare status.
//!
//! Documents are scanned for bracket nesting before they are parsed: the parser recurses into
//! nested values without a limit, and a few kilobytes of `[[[[…` would overflow the stack.

use std::time::Instant;

use async_graphql::parser::types::OperationType;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::HttpState;
use crate::auth::Principal;
use crate::graphql::WriteAhead;
use crate::graphql::order::ResponseOrder;
use crate::graphql::{chosen_operation, prepare_request};
use crate::metrics::Source;
use crate::store::Wanted;

/// The media type of GraphQL responses (GraphQL over HTTP).
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The deepest bracket nesting (`{`, `[`, `(`) a document may have. Selection sets are also
/// limited by the query depth; input values by their own validation (event data nests at most
/// 10 deep), so 64 leaves room for every valid request.
pub const MAX_DOCUMENT_NESTING: usize = 64;

/// The most tokens (names, numbers, strings, brackets) a document may hold, counted before it is
/// parsed: parsing a document of a few megabytes of tokens would cost far more memory than its
/// size before any other limit could see it. Large inputs belong in variables.
pub const MAX_DOCUMENT_TOKENS: usize = 50_000;

/// The longest GraphQL document (the `query` text) accepted. Bodies may be larger (variables carry
/// batches of events); a document's text is parsed into a tree several times its size.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The code of every refusal by the transport (the HTTP status says which).
pub const BAD_REQUEST: &str = "BAD_REQUEST";

/// How the response is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: request errors get 400.
    GraphqlResponse,
    /// `application/json`: every GraphQL response gets 200.
    Json,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        match self {
            Media::GraphqlResponse => HeaderValue::from_static("application/graphql-response+json; charset=utf-8"),
            Media::Json => HeaderValue::from_static("application/json"),
        }
    }
}

/// Whether the media range `media` (from `Accept`) takes `application/json`.
pub fn is_json_range(media: &str) -> bool {
    ["application/json", "application/*", "*/*"]
        .iter()
        .any(|json| media.eq_ignore_ascii_case(json))
}

/// Chooses the response media type from `Accept`; `None` when the client takes neither.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(ranges) = super::weighted_items(headers, header::ACCEPT) else {
        return Some(Media::Json);
    };
    let mut graphql = 0.0_f32;
    let mut json = 0.0_f32;
    for (media, weight) in ranges {
        if media.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON) {
            graphql = graphql.max(weight);
        } else if is_json_range(media) {
            json = json.max(weight);
        }
    }
    if graphql > 0.0 && graphql >= json {
        Some(Media::GraphqlResponse)
    } else if json > 0.0 {
        Some(Media::Json)
    } else {
        None
    }
}

/// A GraphQL-shaped error response of the transport.
pub fn refusal(status: StatusCode, code: &str, message: impl Into<String>, media: Media) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        errors: [Error<'a>; 1],
    }
    #[derive(Serialize)]
    struct Error<'a> {
        message: String,
        extensions: Extensions<'a>,
    }
    #[derive(Serialize)]
    struct Extensions<'a> {
        code: &'a str,
    }
    let body = Body {
        errors: [Error {
            message: message.into(),
            extensions: Extensions { code },
        }],
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, media.content_type())], bytes).into_response()
}

/// `POST /graphql` (server-sent events with `Accept: text/event-stream`).
pub async fn post(State(state): State<HttpState>, mut request: Request) -> Response {
    // Taken, not copied: this runs for every GraphQL request.
    let caller = request.extensions_mut().remove::<Principal>();
    let headers = std::mem::take(request.headers_mut());
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let events = super::sse::preference(&headers);
    let Some(media) = negotiate(&headers).or((events != super::sse::Preference::No).then_some(Media::Json)) else {
        return not_acceptable();
    };
    if !is_json(&headers) {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_REQUEST,
            "POST /graphql takes a JSON body with `Content-Type: application/json`",
            media,
        );
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return refusal(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            "batched requests are not supported: send one operation per request",
            media,
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!("the body is not a GraphQL request: {error}"),
                media,
            );
        }
    };
    let mut request = request;
    let stream = match events {
        super::sse::Preference::Always => true,
        super::sse::Preference::ForSubscriptions => {
            screen(&state, &mut request).is_ok_and(|operation| operation == Some(OperationType::Subscription))
        }
        super::sse::Preference::No => false,
    };
    if stream {
        return super::sse::stream(state, request, caller);
    }
    execute(&state, request, caller, media, Operations::Any, &headers).await
}

/// `GET /graphql`: queries only, or a WebSocket (`graphql-transport-ws`).
pub async fn get(
    State(state): State<HttpState>,
    caller: Option<Extension<Principal>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    if super::ws::is_upgrade(&axum::http::Method::GET, &headers) {
        return match upgrade {
            Ok(upgrade) => super::ws::upgrade(state, upgrade, &headers, caller.map(|Extension(c)| c)),
            Err(rejection) => refusal(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!("the WebSocket upgrade is not valid: {rejection}"),
                Media::Json,
            ),
        };
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(error) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!("the query string is not a GraphQL request: {error}"),
                media,
            );
        }
    };
    let caller = caller.map(|Extension(caller)| caller);
    execute(&state, request, caller, media, Operations::QueriesOnly, &headers).await
}

fn not_acceptable() -> Response {
    refusal(
        StatusCode::NOT_ACCEPTABLE,
        BAD_REQUEST,
        "the server answers GraphQL with application/graphql-response+json or application/json",
        Media::Json,
    )
}

/// Whether the body is declared as JSON (`application/json`, with at most a UTF-8 charset).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|parameter| {
            parameter.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("charset")
                    && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
        })
}

/// Which operations a transport runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operations {
    /// POST: queries and mutations.
    Any,
    /// GET: queries only (a mutation gets 405).
    QueriesOnly,
}

/// The status of a request error (a document refused before execution) in `media`.
fn request_error_status(media: Media) -> StatusCode {
    match media {
        Media::GraphqlResponse => StatusCode::BAD_REQUEST,
        Media::Json => StatusCode::OK,
    }
}

/// Why a document longer than [`MAX_DOCUMENT_BYTES`], nested deeper than
/// [`MAX_DOCUMENT_NESTING`] or holding more than [`MAX_DOCUMENT_TOKENS`] tokens is refused.
fn too_deep(query: &str) -> Option<String> {
    let refuse = Some;
    if query.len() > MAX_DOCUMENT_BYTES {
        return refuse(format!(
            "the document is {} bytes long; at most {MAX_DOCUMENT_BYTES} are allowed (pass large inputs as variables)",
            query.len()
        ));
    }
    let shape = shape(query, MAX_DOCUMENT_NESTING);
    if shape.deepest > MAX_DOCUMENT_NESTING {
        return refuse(format!(
            "the document nests brackets more than {MAX_DOCUMENT_NESTING} levels deep"
        ));
    }
    if shape.tokens > MAX_DOCUMENT_TOKENS {
        return refuse(format!(
            "the document holds more than {MAX_DOCUMENT_TOKENS} tokens; pass large inputs as variables"
        ));
    }
    None
}

/// How deep `{`, `[` and `(` nest in a GraphQL document, outside strings and comments; stops
/// counting once past `limit`.
pub fn nesting_depth(query: &str, limit: usize) -> usize {
    shape(query, limit).deepest
}

/// What a document looks like before it is parsed.
struct Shape {
    /// The deepest bracket nesting (counting stops past the limit).
    deepest: usize,
    /// How many tokens it holds (names, numbers, strings, brackets).
    tokens: usize,
}

fn shape(query: &str, limit: usize) -> Shape {
    let bytes = query.as_bytes();
    let (mut depth, mut deepest, mut i, mut tokens) = (0_usize, 0_usize, 0_usize, 0_usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                tokens += 1;
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                tokens += 1;
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return Shape { deepest, tokens };
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                tokens += 1;
                while i + 1 < bytes.len() && (bytes[i + 1] == b'_' || bytes[i + 1].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            b'0'..=b'9' | b'-' => {
                // A number, with its fraction and exponent.
                tokens += 1;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || matches!(bytes[i + 1], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Shape { deepest, tokens }
}

/// What is refused before execution, whatever the transport: a document too long, too deep or
/// with too many tokens, what the query limits refuse, and introspection when it is off. Returns
/// the operation's type when the document parses (a document that does not parse is reported by
/// the execution, the usual way); the document is parsed once here and reused by the schema.
pub fn screen(state: &HttpState, request: &mut async_graphql::Request) -> Result<Option<OperationType>, Refused> {
    if let Some(reason) = too_deep(&request.query) {
        return Err(Refused::Transport(reason));
    }
    state.documents.prepare(request);
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return Ok(None);
    };
    if let Some(reason) = crate::graphql::limits::document_refusal(document) {
        return Err(Refused::Document(reason));
    }
    // Without this the schema would answer `__schema` with a bare null.
    if !state.introspection && crate::graphql::limits::uses_introspection(document) {
        return Err(Refused::Document(
            "introspection is switched off on this server (AUDITGRAPH_INTROSPECTION)".into(),
        ));
    }
    Ok(chosen_operation(document, operation_name.as_deref()).map(|op| op.node.ty))
}

/// Why [`screen`] refused a request.
#[derive(Debug)]
pub enum Refused {
    /// Before parsing: the text itself (always 400 over HTTP).
    Transport(String),
    /// The parsed document (a request error: 400 or 200 by media type).
    Document(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Transport(reason) | Refused::Document(reason) => f.write_str(reason),
        }
    }
}

/// Runs a request and writes its response in `media`.
async fn execute(
    state: &HttpState,
    mut request: async_graphql::Request,
    caller: Option<Principal>,
    media: Media,
    operations: Operations,
    headers: &HeaderMap,
) -> Response {
    let operation = match screen(state, &mut request) {
        Ok(operation) => operation,
        Err(Refused::Transport(reason)) => return refusal(StatusCode::BAD_REQUEST, BAD_REQUEST, reason, media),
        Err(Refused::Document(reason)) => return refusal(request_error_status(media), BAD_REQUEST, reason, media),
    };
    {
        if operation == Some(OperationType::Subscription) {
            return refusal(
                request_error_status(media),
                BAD_REQUEST,
                crate::live::LiveRefusal::NotStreaming.to_string(),
                media,
            );
        }
        if operations == Operations::QueriesOnly && operation == Some(OperationType::Mutation) {
            let mut response = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                BAD_REQUEST,
                "mutations are only accepted over POST",
                media,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    let started = Instant::now();
    // Queries may be answered by a replica; mutations, documents that do not parse, and queries
    // of `liveCursor` (whose promise, that data read after it misses nothing a subscription from
    // it does not deliver, needs the primary's data) by the primary. Without replicas a token is
    // not even read.
    let replicas = state.ctx.store.has_replicas();
    let routed = if replicas && operation == Some(OperationType::Query) {
        let token =
            super::consistency::requested(headers, request.extensions.0.get(super::consistency::TOKEN_EXTENSION));
        let token = match token {
            Ok(token) => token,
            Err(refused) => return refusal(request_error_status(media), BAD_REQUEST, refused.to_string(), media),
        };
        let operation_name = request.operation_name.clone();
        let current = request.parsed_query().is_ok_and(|document| {
            crate::graphql::selects_root_field(document, operation_name.as_deref(), "liveCursor")
        });
        let wanted = if current {
            Wanted::Current
        } else {
            Wanted::AtLeast(token)
        };
        Some(super::consistency::reading(&state.ctx, wanted).await)
    } else {
        None
    };
    let order = ResponseOrder::of(&mut request);
    // Data is inserted in place: the request is large, and each `Request::data` moves it.
    let mut request = match &routed {
        Some((service, _)) => {
            let mut request = prepare_request(request, &service.store);
            request.data.insert(service.clone());
            request
        }
        None => prepare_request(request, &state.ctx.store),
    };
    if let Some(caller) = caller {
        request.data.insert(caller);
    }
    // The response is written below by `json`, so what can be is written ahead.
    if !crate::graphql::order::repeats_keys(&mut request) {
        request.data.insert(WriteAhead);
    }
    let mut response = state.schema.execute(request).await;
    if let Some((service, _)) = &routed
        && response.errors.iter().any(|e| {
            e.extensions.as_ref().and_then(|x| x.get("code")) == Some(&async_graphql::Value::from("UNAVAILABLE"))
        })
    {
        service.store.replica_failed();
    }
    let written = operation == Some(OperationType::Mutation) && response.data != async_graphql::Value::Null;
    let token = if written && replicas {
        super::consistency::token_for(&state.ctx, Instant::now()).await
    } else {
        None
    };
    if let Some(token) = token {
        response.extensions.insert(
            super::consistency::TOKEN_EXTENSION.to_string(),
            async_graphql::Value::from(token.to_string()),
        );
    }
    if let Some(order) = &order {
        order.apply(&mut response);
    }
    if response
        .errors
        .iter()
        .any(|e| e.extensions.as_ref().and_then(|x| x.get("code")) == Some(&async_graphql::Value::from("FORBIDDEN")))
    {
        state.ctx.metrics.auth_refused(Source::Graphql, "forbidden");
    }
    state
        .ctx
        .metrics
        .queried(Source::Graphql, started.elapsed().as_secs_f64());
    // Errors before execution (parse, validation, limits) carry no path, and leave no data.
    let request_error =
        response.data == async_graphql::Value::Null && response.errors.iter().all(|e| e.path.is_empty());
    let request_error = request_error && !response.errors.is_empty();
    let body = if request_error {
        #[derive(Serialize)]
        struct Errors<'a> {
            errors: &'a [async_graphql::ServerError],
        }
        serde_json::to_vec(&Errors {
            errors: &response.errors,
        })
    } else {
        crate::graphql::json::response_bytes(&response)
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a GraphQL response could not be written");
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
                media,
            );
        }
    };
    let status = if request_error {
        request_error_status(media)
    } else {
        StatusCode::OK
    };
    let mut answer = (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response();
    super::consistency::mark(answer.headers_mut(), token, routed.as_ref().map(|(_, from)| from));
    answer
}

/// The GraphQL-shaped form of errors the framework answers bare on `/graphql` (413 from the body
/// limit, 408 from the request timeout, 405 for other methods).
pub fn shape_bare_error(response: Response, media: Media) -> Response {
    let status = response.status();
    let bare = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !bare || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (BAD_REQUEST, "the request body is larger than the server accepts"),
        StatusCode::REQUEST_TIMEOUT => ("TIMEOUT", "the request took longer than the server allows"),
        StatusCode::METHOD_NOT_ALLOWED => (BAD_REQUEST, "/graphql takes GET (queries) and POST"),
        s if s.is_server_error() => ("INTERNAL_SERVER_ERROR", "internal server error"),
        _ => (BAD_REQUEST, "the request could not be processed"),
    };
    let mut shaped = refusal(status, code, message, media);
    if let Some(allow) = response.headers().get(header::ALLOW) {
        shaped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        assert_eq!(nesting_depth("{ a { b } }", 64), 2);
        assert_eq!(nesting_depth("{ a(f: {x: [[1]]}) }", 64), 5);
        assert_eq!(nesting_depth(r#"{ a(s: "{{{{[[[") }"#, 64), 2);
        assert_eq!(nesting_depth(r#"{ a(s: "\"{{{{") }"#, 64), 2);
        assert_eq!(nesting_depth("{ a(s: \"\"\"{{{ \\\"\"\" {{{\"\"\") }", 64), 2);
        assert_eq!(nesting_depth("# {{{{{\n{ a }", 64), 1);
        assert_eq!(nesting_depth(&"[".repeat(100_000), 64), 65, "stops past the limit");
        assert_eq!(nesting_depth("}}}{", 64), 1, "stray closers do not go below zero");
    }

    #[test]
    fn tokens_are_counted_outside_comments() {
        // { a ( first 10 ) { b_c d2 } } → brackets 3, names 4, a number
        assert_eq!(shape("{ a(first: 10) { b_c d2 } }", 64).tokens, 8);
        // { a ( s "x y z" n 1e10 m -2.5E-3 ) }
        assert_eq!(shape("{ a(s: \"x y z\", n: 1e10, m: -2.5E-3) }", 64).tokens, 9);
        assert_eq!(shape("# a b c\n{ a }", 64).tokens, 2);
    }

    #[test]
    fn accept_chooses_the_media_type() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            negotiate(&headers)
        };
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(with("application/graphql-response+json"), Some(Media::GraphqlResponse));
        assert_eq!(
            with("application/graphql-response+json, application/json;q=0.9"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            with("application/json, application/graphql-response+json;q=0.5"),
            Some(Media::Json)
        );
        assert_eq!(with("*/*"), Some(Media::Json));
        assert_eq!(with("text/html"), None);
        assert_eq!(with("application/json;q=0"), None);
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=UTF-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("application/json; charset=latin1"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
