//! The HTTP surface: the axum router, GraphQL over HTTP, GraphiQL and health.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, Role};
use crate::error::ApiError;
use crate::graphql::AuditSchema;
use crate::metrics::Source;
use crate::service::Service;

pub mod assets;
pub mod consistency;
pub mod documents;
pub mod explorer;
pub mod graphql;
pub mod problem;
pub mod rest;
pub mod sse;
pub mod ws;

/// The items of a weighted list header (`Accept`, `Accept-Encoding`): each name, trimmed (compare
/// it without regard to case), with its `q` weight (1 when absent, 0 when unreadable). `None` when
/// the header is absent or blank. Nothing is copied: it is read on every GraphQL request.
pub fn weighted_items(headers: &HeaderMap, name: HeaderName) -> Option<impl Iterator<Item = (&str, f32)>> {
    let values = headers.get_all(name);
    let texts = || values.iter().filter_map(|v| v.to_str().ok());
    if texts().all(|v| v.trim().is_empty()) {
        return None;
    }
    let items = texts().flat_map(|v| v.split(',')).map(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let weight = parts
            .find_map(|parameter| {
                let (key, value) = parameter.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        (name, weight)
    });
    Some(items)
}

/// What the handlers share. axum gives every handler and middleware of every request a clone of
/// it, so a clone is one reference count, not one per metric and pool.
#[derive(Clone)]
pub struct HttpState(Arc<HttpShared>);

impl HttpState {
    /// Shares `shared` with the handlers.
    pub fn new(shared: HttpShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for HttpState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

/// What [`HttpState`] holds.
pub struct HttpShared {
    /// The GraphQL schema, wired to the store.
    pub schema: AuditSchema,
    /// The application's operations, shared with the GraphQL resolvers.
    pub ctx: Service,
    /// Who is calling.
    pub auth: Authenticator,
    /// The role `/metrics` needs, wherever it is served (open when `None`).
    pub metrics_role: Option<Role>,
    /// Whether GraphQL introspection is answered.
    pub introspection: bool,
    /// Largest WebSocket message, in bytes (the body limit).
    pub ws_message_limit: usize,
    /// Recently parsed GraphQL documents.
    pub documents: documents::Documents,
}

/// Options of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Whether `/graphiql` is served.
    pub graphiql: bool,
    /// Whether the explorer is served at `/`, and from where.
    pub explorer: Option<explorer::ExplorerFiles>,
    /// Whether `/metrics` is served here (not when it has a listener of its own, see
    /// [`metrics_router`]).
    pub metrics: bool,
}

/// The router with every route and layer.
pub fn router(state: HttpState, options: HttpOptions) -> Router {
    let mut routes = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/audit/events", get(rest::query_events).post(rest::create_event))
        .route("/api/v1/audit/events/batch", post(rest::create_batch))
        .route("/api/v1/audit/verify-chain", post(rest::verify_chain))
        .route(
            "/api/v1/audit/legal-hold",
            get(rest::list_legal_holds).post(rest::place_legal_hold),
        )
        .route("/api/v1/audit/export", get(rest::export))
        .route(
            "/api/v1/audit/legal-hold/{correlation_id}",
            axum::routing::delete(rest::release_legal_hold),
        );
    if options.graphiql {
        routes = routes
            .route("/graphiql", get(assets::graphiql_page))
            .route("/graphiql/assets/{name}", get(assets::graphiql_asset));
    }
    let explorer = options.explorer.clone().map(|files| {
        Router::new()
            .route("/", get(explorer::page))
            .route("/explorer/{name}", get(explorer::file))
            .with_state(files)
    });
    if options.metrics {
        routes = routes.route("/metrics", get(metrics));
    }
    let authenticated = middleware::from_fn_with_state((state.clone(), MetricsHere(options.metrics)), authenticate);
    let mut app = routes.with_state(state);
    // The explorer's files hold no data: `authenticate` lets them through, as it does health.
    if let Some(explorer) = explorer {
        app = app.merge(explorer);
    }
    // Two stacks, each outermost first: each `Router::layer` boxes every route again, and every
    // request pays for each box. The timeout answers with an empty body of the type it wraps,
    // which the body limit's is not: the limit is a stack of its own.
    app.layer(
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(options.body_limit_bytes))
            // The one body limit is ours (axum's extractors would add their own 2 MiB one).
            .layer(DefaultBodyLimit::disable()),
    )
    .layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(middleware::from_fn(typed_bare_errors))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                options.request_timeout,
            ))
            .layer(authenticated),
    )
}

/// A router serving only `/metrics`, for a listener of its own (a port that only the monitoring
/// network reaches); the metrics role applies there too.
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            (state.clone(), MetricsHere(true)),
            authenticate,
        ))
        .with_state(state)
        .layer(TraceLayer::new_for_http())
}

/// Whether the router that authenticates serves `/metrics` (it may have a listener of its own,
/// where the main router answers 404 as for any other unknown path).
#[derive(Clone, Copy)]
struct MetricsHere(bool);

/// Authenticates every request to the APIs (and to `/metrics` when it needs a role) and attaches
/// the caller to it; refuses, with the API's own error shape, a request whose credentials are
/// missing or not valid. Static pages and health probes need no identity: they hold no data.
/// A successful REST write answers its consistency token
/// ([`consistency::after_rest_write`]).
async fn authenticate(
    State((state, MetricsHere(metrics_here))): State<(HttpState, MetricsHere)>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let rest = path.starts_with("/api/");
    let write = rest && request.method() != Method::GET && request.method() != Method::HEAD;
    let metrics = metrics_here && path == "/metrics";
    let metrics_role = state.metrics_role.filter(|_| metrics);
    if !(rest || path == "/graphql" || metrics_role.is_some()) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let source = match (rest, metrics) {
        (true, _) => Source::Rest,
        (_, true) => Source::Metrics,
        _ => Source::Graphql,
    };
    let principal = match state.auth.authenticate(request.headers(), peer) {
        Ok(principal) => principal,
        // A browser cannot set headers on a WebSocket: its credentials come in `connection_init`.
        Err(crate::auth::AuthError::Missing)
            if path == "/graphql" && ws::is_upgrade(request.method(), request.headers()) =>
        {
            return next.run(request).await;
        }
        Err(error) => {
            tracing::info!(%error, path = %path, peer = ?peer, "request refused: not authenticated");
            state.ctx.metrics.auth_refused(source, "unauthenticated");
            let refused = ApiError::Unauthenticated {
                message: error.to_string(),
                challenge: error.www_authenticate(),
            };
            return refuse(&path, request.headers(), refused);
        }
    };
    if let Some(role) = metrics_role
        && let Err(refused) = state.ctx.authorize(&principal, role)
    {
        state.ctx.metrics.auth_refused(source, "forbidden");
        return refuse(&path, request.headers(), refused);
    }
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    // A REST refusal for the role is a 403 of its own; GraphQL counts its own (several fields of
    // one request may be refused).
    if rest && response.status() == StatusCode::FORBIDDEN {
        state.ctx.metrics.auth_refused(source, "forbidden");
    }
    if write {
        return consistency::after_rest_write(&state.ctx, response).await;
    }
    response
}

/// An authentication or authorization refusal in the shape of the API asked.
fn refuse(path: &str, headers: &HeaderMap, refused: ApiError) -> Response {
    if path.starts_with("/api/") {
        return problem::Problem::from(refused).at(path).into_response();
    }
    let (status, challenge) = match &refused {
        ApiError::Unauthenticated { challenge, .. } => (StatusCode::UNAUTHORIZED, Some(challenge.clone())),
        _ => (StatusCode::FORBIDDEN, None),
    };
    let media = graphql::negotiate(headers).unwrap_or(graphql::Media::Json);
    let mut response = graphql::refusal(status, refused.code(), refused.to_string(), media);
    if let Some(value) = challenge.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Responses that the framework produces bare (413, 404, 405, 408) get the body of their API:
/// a problem for REST, GraphQL-shaped errors for `/graphql`.
async fn typed_bare_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let rest = path.starts_with("/api/");
    let graphql = (path == "/graphql").then(|| graphql::negotiate(request.headers()).unwrap_or(graphql::Media::Json));
    let response = next.run(request).await;
    if rest {
        problem::problem_for_bare_errors(response).await
    } else if let Some(media) = graphql {
        graphql::shape_bare_error(response, media)
    } else {
        response
    }
}

/// Liveness: the process serves HTTP. Database health belongs to readiness.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers, within 800 ms (a probe must not hang on a database that
/// does not answer).
async fn readyz(State(state): State<HttpState>) -> Response {
    let ping = tokio::time::timeout(Duration::from_millis(800), state.ctx.store.ping()).await;
    match ping.unwrap_or_else(|_| Err(sea_orm::DbErr::Custom("no answer within 800 ms".into()))) {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready", "database": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.ctx.metrics.render(state.ctx.store.pool_state()),
    )
        .into_response()
}
