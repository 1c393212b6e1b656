//! Read-your-writes over HTTP, when reads go to replicas (`AUDITGRAPH_READ_DATABASE_URL`).
//!
//! - Every successful write answers the header `Auditgraph-Consistency-Token` (GraphQL
//!   mutations also `extensions.consistencyToken`): the primary's WAL position after its commit.
//! - A read that sends that token back, in the same header or (GraphQL) in the request's
//!   `extensions.consistencyToken`, is answered by a replica only once the replica has replayed
//!   past it, else by the primary. A client keeps the newest token it was given.
//! - Every routed read answers `Auditgraph-Read-From: replica` or `primary`.
//!
//! Without replicas no token is issued (every read is current) and a token sent is not read.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use crate::service::Service;
use crate::store::{Lsn, ReadFrom, Wanted};

/// The header carrying a consistency token, in write answers and in reads.
pub const TOKEN_HEADER: &str = "auditgraph-consistency-token";

/// The header saying which database answered a read: `primary` or `replica`.
pub const READ_FROM_HEADER: &str = "auditgraph-read-from";

/// The key of the token in a GraphQL request's and response's `extensions`.
pub const TOKEN_EXTENSION: &str = "consistencyToken";

/// A token that is not one, and where it was.
#[derive(Debug, PartialEq, Eq)]
pub struct BadToken {
    /// The header, or `extensions.consistencyToken`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for BadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The token a read carries: the header, else `extension` (GraphQL's). A malformed token is
/// refused, saying where it was.
pub fn requested(headers: &HeaderMap, extension: Option<&async_graphql::Value>) -> Result<Option<Lsn>, BadToken> {
    let refuse = |field: &str, message: String| BadToken {
        field: field.to_string(),
        message,
    };
    if let Some(value) = headers.get(TOKEN_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| refuse(TOKEN_HEADER, "the header is not text".into()))?;
        return text.parse().map(Some).map_err(|e| refuse(TOKEN_HEADER, e));
    }
    let field = format!("extensions.{TOKEN_EXTENSION}");
    match extension {
        None | Some(async_graphql::Value::Null) => Ok(None),
        Some(async_graphql::Value::String(text)) => text.parse().map(Some).map_err(|e| refuse(&field, e)),
        Some(_) => Err(refuse(&field, "must be a string (the token a write answered)".into())),
    }
}

/// The service to answer a read with: its store reads from where `wanted` allows.
pub async fn reading(service: &Service, wanted: Wanted) -> (Service, ReadFrom) {
    let (store, from) = service.store.for_reading(wanted).await;
    (
        Service {
            store,
            ..service.clone()
        },
        from,
    )
}

/// The token for writes that committed before `committed`, when replicas are configured; a
/// failure to ask the primary is logged and leaves the answer without a token (the write
/// itself succeeded).
pub async fn token_for(service: &Service, committed: Instant) -> Option<Lsn> {
    if !service.store.has_replicas() {
        return None;
    }
    match service.store.consistency_token(committed).await {
        Ok(token) => Some(token),
        Err(error) => {
            tracing::warn!(%error, "could not read the WAL position for a consistency token");
            None
        }
    }
}

/// Sets the token and read-source headers.
pub fn mark(headers: &mut HeaderMap, token: Option<Lsn>, from: Option<&ReadFrom>) {
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&token.to_string())
    {
        headers.insert(TOKEN_HEADER, value);
    }
    if let Some(from) = from {
        headers.insert(READ_FROM_HEADER, HeaderValue::from_static(from.target()));
    }
}

/// A REST write's answer: when it succeeded, with its token (any method but GET and HEAD under
/// `/api/` is a write).
pub async fn after_rest_write(service: &Service, mut response: Response) -> Response {
    if response.status().is_success() && !response.headers().contains_key(TOKEN_HEADER) {
        let token = token_for(service, Instant::now()).await;
        mark(response.headers_mut(), token, None);
    }
    response
}

/// A refusal of a malformed token, as a REST problem.
pub fn bad_token(refused: BadToken) -> super::problem::Problem {
    super::problem::Problem::invalid(&refused.field, refused.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_comes_before_the_extension_and_bad_tokens_are_named() {
        let mut headers = HeaderMap::new();
        let extension = async_graphql::Value::from("0/2A");
        assert_eq!(requested(&headers, None), Ok(None));
        assert_eq!(requested(&headers, Some(&extension)), Ok(Some(Lsn(0x2A))));
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("1/0"));
        assert_eq!(requested(&headers, Some(&extension)), Ok(Some(Lsn(1 << 32))));
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("yesterday"));
        let error = requested(&headers, None).unwrap_err();
        assert_eq!(error.field, TOKEN_HEADER);
        assert!(
            error.message.contains("`yesterday` is not a consistency token"),
            "{error}"
        );
        let error = requested(&HeaderMap::new(), Some(&async_graphql::Value::from(7))).unwrap_err();
        assert_eq!(error.field, "extensions.consistencyToken");
    }
}
