//! RFC 7807 problem details: the error format of the REST API (kubernaut-compatible).

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::FieldError;
use crate::error::ApiError;

const TYPE_BASE: &str = "https://kubernaut.ai/problems/";
/// The detail of every 5xx problem: internals stay in the logs.
pub const INTERNAL_DETAIL: &str = "An internal error occurred. Check server logs for details.";

/// An `application/problem+json` response (boxed: it travels in `Err` variants).
#[derive(Debug)]
pub struct Problem(Box<Body>, Option<HeaderValue>);

#[derive(Debug, Serialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_errors: Option<BTreeMap<String, String>>,
}

impl Problem {
    /// A problem of the given status, type slug and title.
    pub fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self(
            Box::new(Body {
                kind: format!("{TYPE_BASE}{slug}"),
                title,
                status: status.as_u16(),
                detail: detail.into(),
                instance: None,
                field_errors: None,
            }),
            None,
        )
    }

    /// A 400 validation problem naming one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation-error",
            "Validation Error",
            format!("{field}: {message}"),
        )
        .with_fields([(field.to_string(), message)])
    }

    /// The same problem with field errors.
    pub fn with_fields(mut self, fields: impl IntoIterator<Item = (String, String)>) -> Self {
        self.0.field_errors = Some(fields.into_iter().collect());
        self
    }

    /// The same problem with the request path as `instance`.
    pub fn at(mut self, path: &str) -> Self {
        self.0.instance = Some(path.to_string());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(error: crate::store::StoreError) -> Self {
        Self::from(ApiError::from(error))
    }
}

/// The REST spelling of a column name: the request field `version` holds `event_version`.
pub fn rest_field(error: &FieldError) -> String {
    let field = if error.field == "event_version" {
        "version"
    } else {
        error.field
    };
    match error.index {
        Some(index) => format!("events[{index}].{field}"),
        None => field.to_string(),
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadUserInput { errors } => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", rest_field(e), e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::new(StatusCode::BAD_REQUEST, "validation-error", "Validation Error", detail)
                    .with_fields(errors.iter().map(|e| (rest_field(e), e.message.clone())))
            }
            ApiError::BadArgument { argument, message } => Problem::invalid(&argument, message),
            ApiError::EmptyBatch => Problem::invalid("body", "batch cannot be empty"),
            ApiError::BatchTooLarge { max, got } => Problem::new(
                StatusCode::BAD_REQUEST,
                "batch-size-exceeded",
                "Batch Size Exceeded",
                format!("a batch holds at most {max} events, got {got}"),
            ),
            ApiError::Unauthenticated { message, challenge } => {
                let mut problem = Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", message);
                // A challenge that cannot be a header value still gets the bare scheme.
                problem.1 =
                    Some(HeaderValue::from_str(&challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer")));
                problem
            }
            ApiError::Forbidden(detail) => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail),
            ApiError::NotFound(detail) => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not Found", detail),
            ApiError::Conflict(detail) => Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail),
            ApiError::Timeout(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service Unavailable",
                detail,
            ),
            ApiError::Unavailable(detail) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service Unavailable",
                detail,
            ),
            ApiError::Internal(inner) => {
                tracing::error!(error = ?inner, "internal error while serving a REST request");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-error",
                    "Internal Server Error",
                    INTERNAL_DETAIL,
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retryable = self.0.kind.ends_with("/unavailable");
        let challenge = self.1;
        let mut response = (status, axum::Json(self.0)).into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Unavailable is worth retrying: say when.
        if retryable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Gives bare error responses of the REST routes (413 from the body limit, 404 and 405 from the
/// router, 408 from the timeout) a problem body.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (slug, title, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            "Payload Too Large",
            "the request body is larger than the server accepts".to_string(),
        ),
        StatusCode::NOT_FOUND => ("not-found", "Not Found", "no such resource".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "Method Not Allowed",
            "method not allowed here".to_string(),
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "Request Timeout", "the request took too long".to_string()),
        s if s.is_server_error() => ("internal-error", "Internal Server Error", INTERNAL_DETAIL.to_string()),
        _ => (
            "bad-request",
            "Bad Request",
            "the request could not be processed".to_string(),
        ),
    };
    Problem::new(status, slug, title, detail).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status_and_type() {
        let cases = [
            (
                ApiError::field("event_type", "required", "is required"),
                400,
                "validation-error",
            ),
            (
                ApiError::BadArgument {
                    argument: "limit".into(),
                    message: "x".into(),
                },
                400,
                "validation-error",
            ),
            (ApiError::NotFound("x".into()), 404, "not-found"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::Timeout("x".into()), 503, "service-unavailable"),
            (ApiError::EmptyBatch, 400, "validation-error"),
            (ApiError::BatchTooLarge { max: 1, got: 2 }, 400, "batch-size-exceeded"),
            (
                ApiError::Unauthenticated {
                    message: "x".into(),
                    challenge: "Bearer realm=\"auditgraph\"".into(),
                },
                401,
                "unauthorized",
            ),
            (ApiError::Forbidden("x".into()), 403, "forbidden"),
            (
                ApiError::internal(anyhow::anyhow!("password=secret")),
                500,
                "internal-error",
            ),
        ];
        for (error, status, slug) in cases {
            let problem = Problem::from(error);
            assert_eq!(problem.0.status, status);
            assert_eq!(problem.0.kind, format!("{TYPE_BASE}{slug}"));
        }
    }

    #[test]
    fn validation_problems_name_fields_the_rest_way() {
        let error = ApiError::BadUserInput {
            errors: vec![
                FieldError::new("event_version", "required", "is required").at(2),
                FieldError::new("parent_event_id", "unknown_parent", "parent event x does not exist"),
            ],
        };
        let problem = Problem::from(error);
        let fields = problem.0.field_errors.clone().unwrap();
        assert_eq!(fields["events[2].version"], "is required");
        assert!(
            problem
                .0
                .detail
                .contains("parent_event_id: parent event x does not exist")
        );
    }

    #[test]
    fn internal_problems_hide_their_cause() {
        let problem = Problem::from(ApiError::internal(anyhow::anyhow!(
            "relation audit_events does not exist"
        )));
        assert_eq!(problem.0.detail, INTERNAL_DETAIL);
    }
}
