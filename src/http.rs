//! The HTTP surface: the axum router, GraphQL over HTTP, GraphiQL and health.

use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::graphql::{AppContext, AuditSchema, prepare_request};
use crate::metrics::Source;

pub mod assets;
pub mod problem;
pub mod rest;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The GraphQL schema, wired to the store.
    pub schema: AuditSchema,
    /// The store, limits and metrics, shared with the GraphQL resolvers.
    pub ctx: AppContext,
}

/// Options of the HTTP layer.
#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
}

/// The router with every route and layer.
pub fn router(state: HttpState, options: HttpOptions) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphiql", get(assets::graphiql_page))
        .route("/graphiql/assets/{name}", get(assets::graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/audit/events", get(rest::query_events).post(rest::create_event))
        .route("/api/v1/audit/events/batch", post(rest::create_batch))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(options.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .layer(middleware::from_fn(rest_errors_as_problems))
        .layer(TraceLayer::new_for_http())
}

/// REST responses that the framework produces bare (413, 404, 405, 408) get a problem body.
async fn rest_errors_as_problems(request: Request, next: Next) -> Response {
    let rest = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if rest {
        problem::problem_for_bare_errors(response).await
    } else {
        response
    }
}

async fn graphql_post(State(state): State<HttpState>, request: GraphQLRequest) -> GraphQLResponse {
    let started = std::time::Instant::now();
    let request = prepare_request(request.into_inner(), &state.ctx.store);
    let response = state.schema.execute(request).await;
    state
        .ctx
        .metrics
        .queried(Source::Graphql, started.elapsed().as_secs_f64());
    response.into()
}

/// GET runs queries only: a mutation over GET is refused with 405, as GraphQL over HTTP requires.
async fn graphql_get(State(state): State<HttpState>, request: GraphQLRequest) -> Response {
    let request = request.into_inner();
    if is_mutation(&request) {
        let body = serde_json::json!({
            "errors": [{
                "message": "mutations are only accepted over POST",
                "extensions": {"code": "BAD_REQUEST"}
            }]
        });
        return (StatusCode::METHOD_NOT_ALLOWED, [("allow", "POST")], axum::Json(body)).into_response();
    }
    let request = prepare_request(request, &state.ctx.store);
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    crate::graphql::chosen_operation(&document, request.operation_name.as_deref())
        .is_some_and(|op| op.node.ty == OperationType::Mutation)
}

/// Liveness: the process serves HTTP. Database health belongs to readiness.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
async fn readyz(State(state): State<HttpState>) -> Response {
    match state.ctx.store.ping().await {
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
        state.ctx.metrics.render(),
    )
        .into_response()
}
