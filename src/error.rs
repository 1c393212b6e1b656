//! The one error type at the API boundary, and its mapping to GraphQL error codes.

use crate::domain::FieldError;
use crate::domain::page::PageError;
use crate::store::StoreError;

/// Everything a request can fail with. Each variant maps to one `extensions.code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; `errors` name the fields (column names) and what is wrong with them.
    #[error("{}", summary(.errors))]
    BadUserInput { errors: Vec<FieldError> },
    /// A pagination or filter argument is wrong.
    #[error("{message}")]
    BadArgument { argument: String, message: String },
    /// A batch write with no event.
    #[error("a batch must hold at least one event")]
    EmptyBatch,
    /// A batch write with more events than the server takes at once.
    #[error("a batch holds at most {max} events, got {got}")]
    BatchTooLarge { max: usize, got: usize },
    /// The request carries no credentials, or credentials that are not valid. `challenge` is the
    /// `WWW-Authenticate` value REST answers with.
    #[error("{message}")]
    Unauthenticated { message: String, challenge: String },
    /// The caller is known but its role does not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored (an event id reused with other content).
    #[error("{0}")]
    Conflict(String),
    /// A query ran into its time limit and was stopped; the client can ask for less.
    #[error("{0}")]
    Timeout(String),
    /// The database cannot be reached, or the server is saturated (no connection came free in
    /// time). Retryable: the client should try again shortly.
    #[error("{0}")]
    Unavailable(String),
    /// A failure on our side. Logged once with its chain; the client sees a generic message.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

/// `eventType: is required …` for one error; a count and the list for several. Field names are
/// spelled the GraphQL way; REST spells its own.
fn summary(errors: &[FieldError]) -> String {
    let each = |e: &FieldError| match e.index {
        Some(index) => format!("inputs[{index}].{}: {}", camel_case(e.field), e.message),
        None => format!("{}: {}", camel_case(e.field), e.message),
    };
    match errors {
        [one] => each(one),
        many => format!(
            "{} fields failed validation: {}",
            many.len(),
            many.iter().map(each).collect::<Vec<_>>().join("; ")
        ),
    }
}

impl ApiError {
    /// A single field error.
    pub fn field(field: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            errors: vec![FieldError::new(field, reason, message)],
        }
    }

    /// The same error with batch positions removed (for single-event APIs).
    pub fn without_index(self) -> Self {
        match self {
            Self::BadUserInput { errors } => Self::BadUserInput {
                errors: errors.into_iter().map(|e| FieldError { index: None, ..e }).collect(),
            },
            other => other,
        }
    }

    /// A request that reached an API without an authenticated caller (the HTTP layer attaches
    /// one to every request it lets through, so this fails closed).
    pub fn unauthenticated() -> Self {
        let missing = crate::auth::AuthError::Missing;
        Self::Unauthenticated {
            message: missing.to_string(),
            challenge: missing.www_authenticate(),
        }
    }

    /// Wraps an unexpected failure.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// The GraphQL `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } | Self::BadArgument { .. } | Self::EmptyBatch | Self::BatchTooLarge { .. } => {
                "BAD_USER_INPUT"
            }
            Self::Unauthenticated { .. } => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::Timeout(_) => "TIMEOUT",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// What a client is told when the database is out of reach or every connection is busy.
pub const UNAVAILABLE_MESSAGE: &str = "the database is unavailable or the server is saturated; retry shortly \
     (a write may have been committed if the connection was lost at its end: events sent with their own \
     eventId are safe to retry with the same eventId)";

impl From<StoreError> for ApiError {
    /// The one mapping of store failures to what clients see. Store internals (SQL, constraint
    /// names) never reach the client: they are logged, with their chain, where the error is
    /// answered.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Constraint(_) | StoreError::Database(_) | StoreError::Internal(_) => {
                Self::Internal(error.into())
            }
            other => Self::from(&other),
        }
    }
}

impl From<&StoreError> for ApiError {
    /// [`From<StoreError>`] for a borrowed error (GraphQL extensions see errors by reference); an
    /// internal one keeps its chain as text.
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::UnknownParent(field) | StoreError::Invalid(field) => Self::BadUserInput {
                errors: vec![field.clone()],
            },
            StoreError::Conflict(message) => Self::Conflict(message.clone()),
            StoreError::NotFound(message) => Self::NotFound(message.clone()),
            StoreError::Timeout(message) => Self::Timeout(message.clone()),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "the database is out of reach or the pool is exhausted");
                Self::Unavailable(UNAVAILABLE_MESSAGE.into())
            }
            StoreError::Constraint(_) | StoreError::Database(_) | StoreError::Internal(_) => {
                let mut chain = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    chain.push_str(": ");
                    chain.push_str(&cause.to_string());
                    source = cause.source();
                }
                Self::Internal(anyhow::anyhow!(chain))
            }
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::from(StoreError::from(error))
    }
}

impl async_graphql::ErrorExtensions for StoreError {
    fn extend(&self) -> async_graphql::Error {
        ApiError::from(self).extend()
    }
}

impl From<PageError> for ApiError {
    fn from(error: PageError) -> Self {
        Self::BadArgument {
            argument: error.argument.into(),
            message: error.message,
        }
    }
}

/// `event_type` → `eventType`: the GraphQL spelling of a column name.
pub fn camel_case(column: &str) -> String {
    let mut out = String::with_capacity(column.len());
    let mut upper = false;
    for c in column.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl async_graphql::ErrorExtensions for ApiError {
    /// The GraphQL form of the error: message, `code`, and for bad input the field (camelCase) and
    /// the list of field errors. Internal errors are logged here, once, with their chain.
    fn extend(&self) -> async_graphql::Error {
        if let ApiError::Internal(inner) = self {
            tracing::error!(error = ?inner, "internal error while serving a GraphQL request");
        }
        let code = self.code();
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            match self {
                ApiError::BadUserInput { errors } => {
                    if let Some(first) = errors.first() {
                        ext.set("field", camel_case(first.field));
                        if let Some(index) = first.index {
                            ext.set("index", index);
                        }
                    }
                    let list: Vec<async_graphql::Value> = errors
                        .iter()
                        .map(|e| {
                            let mut map = async_graphql::indexmap::IndexMap::new();
                            map.insert(
                                async_graphql::Name::new("field"),
                                async_graphql::Value::from(camel_case(e.field)),
                            );
                            map.insert(
                                async_graphql::Name::new("message"),
                                async_graphql::Value::from(e.message.clone()),
                            );
                            if let Some(index) = e.index {
                                map.insert(async_graphql::Name::new("index"), async_graphql::Value::from(index));
                            }
                            async_graphql::Value::Object(map)
                        })
                        .collect();
                    ext.set("fieldErrors", list);
                }
                ApiError::BadArgument { argument, .. } => {
                    ext.set("field", argument.clone());
                    ext.set("argument", argument.clone());
                }
                ApiError::EmptyBatch | ApiError::BatchTooLarge { .. } => {
                    ext.set("field", "inputs");
                    ext.set("argument", "inputs");
                }
                _ => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::ErrorExtensions;

    fn gql(error: ApiError) -> async_graphql::ServerError {
        error.extend().into_server_error(async_graphql::Pos::default())
    }

    fn ext(error: &async_graphql::ServerError, key: &str) -> Option<async_graphql::Value> {
        error.extensions.as_ref().and_then(|e| e.get(key).cloned())
    }

    #[test]
    fn each_variant_maps_to_its_code() {
        let cases = [
            (
                ApiError::field("event_type", "required", "event_type is required"),
                "BAD_USER_INPUT",
            ),
            (
                ApiError::BadArgument {
                    argument: "first".into(),
                    message: "x".into(),
                },
                "BAD_USER_INPUT",
            ),
            (ApiError::NotFound("no such event".into()), "NOT_FOUND"),
            (ApiError::Conflict("reused id".into()), "CONFLICT"),
            (ApiError::Timeout("too slow".into()), "TIMEOUT"),
            (ApiError::Unavailable("down".into()), "UNAVAILABLE"),
            (ApiError::EmptyBatch, "BAD_USER_INPUT"),
            (ApiError::BatchTooLarge { max: 2, got: 3 }, "BAD_USER_INPUT"),
            (
                ApiError::Unauthenticated {
                    message: "no".into(),
                    challenge: "Bearer".into(),
                },
                "UNAUTHENTICATED",
            ),
            (ApiError::Forbidden("reader".into()), "FORBIDDEN"),
            (ApiError::internal(anyhow::anyhow!("boom")), "INTERNAL_SERVER_ERROR"),
        ];
        for (error, code) in cases {
            assert_eq!(ext(&gql(error), "code"), Some(async_graphql::Value::from(code)));
        }
    }

    #[test]
    fn bad_input_names_the_field_in_graphql_spelling() {
        let error = gql(ApiError::field(
            "parent_event_id",
            "unknown_parent",
            "parent event does not exist",
        ));
        assert_eq!(ext(&error, "field"), Some(async_graphql::Value::from("parentEventId")));
        assert_eq!(error.message, "parentEventId: parent event does not exist");
    }

    #[test]
    fn internal_errors_do_not_reveal_their_cause() {
        let error = gql(ApiError::internal(anyhow::anyhow!(
            "relation \"audit_events\" does not exist"
        )));
        assert_eq!(error.message, "internal server error");
    }

    #[test]
    fn store_errors_map_to_their_codes_without_revealing_internals() {
        use sea_orm::{ConnAcquireErr, DbErr};
        let field = || FieldError::new("parent_event_id", "unknown_parent", "parent event x does not exist");
        let cases = [
            (StoreError::UnknownParent(field()), "BAD_USER_INPUT"),
            (StoreError::Invalid(field()), "BAD_USER_INPUT"),
            (StoreError::Conflict("reused".into()), "CONFLICT"),
            (StoreError::Timeout("slow".into()), "TIMEOUT"),
            (
                StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
                "UNAVAILABLE",
            ),
            (
                StoreError::Constraint("violates check constraint \"audit_events_x\"".into()),
                "INTERNAL_SERVER_ERROR",
            ),
            (
                StoreError::from(DbErr::Custom("syntax error at SELECT".into())),
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (error, code) in cases {
            let api = ApiError::from(error);
            assert_eq!(api.code(), code);
            if code == "UNAVAILABLE" {
                assert_eq!(api.to_string(), UNAVAILABLE_MESSAGE);
            }
            if code == "INTERNAL_SERVER_ERROR" {
                assert_eq!(gql(api).message, "internal server error");
            }
        }
    }

    #[test]
    fn column_names_become_camel_case() {
        assert_eq!(camel_case("legal_hold_placed_at"), "legalHoldPlacedAt");
        assert_eq!(camel_case("severity"), "severity");
    }
}
