//! Query root.

use async_graphql::{Context, ErrorExtensions, Object, Result};
use chrono::Utc;
use uuid::Uuid;

use super::connection::{AuditEventConnection, Scope};
use super::prefetch;
use super::{AppContext, AuditEvent, AuditEventFilter, DEFAULT_PAGE_SIZE, page_cost};
use crate::domain::PageRequest;
use crate::domain::page::Order;
use crate::error::ApiError;

/// Reading the audit trail.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// One event by id; null when there is none.
    async fn audit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event id.")] event_id: Uuid,
    ) -> Result<Option<AuditEvent>> {
        let app = ctx.data::<AppContext>()?;
        let Some(event) = app.store.find_event(event_id).await.map_err(|e| e.extend())? else {
            return Ok(None);
        };
        prefetch::below_event(ctx, &event).await?;
        Ok(Some(AuditEvent(event)))
    }

    /// Events matching a filter, newest first (`eventTimestamp`, then `eventId`, descending), as a
    /// Relay connection with keyset pagination: pages stay stable while new events arrive. Page
    /// forwards with `first`/`after` or backwards with `last`/`before`; not both sizes at once.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events to list; all when omitted.")] filter: Option<AuditEventFilter>,
        #[graphql(desc = "Page size from the start, 0 to 1000 (default 50).")] first: Option<i32>,
        #[graphql(desc = "Return events after this cursor (older ones).")] after: Option<String>,
        #[graphql(desc = "Page size from the end, 0 to 1000.")] last: Option<i32>,
        #[graphql(desc = "Return events before this cursor (newer ones).")] before: Option<String>,
    ) -> Result<AuditEventConnection> {
        let app = ctx.data::<AppContext>()?;
        let window = PageRequest {
            first,
            after,
            last,
            before,
        }
        .resolve(DEFAULT_PAGE_SIZE)
        .map_err(|e| ApiError::from(e).extend())?;
        let filter = filter.unwrap_or_default().resolve(Utc::now()).map_err(|e| e.extend())?;
        let rows = app
            .store
            .list_events(&filter, &window, Order::NewestFirst)
            .await
            .map_err(|e| e.extend())?;
        let (rows, previous, next) = window.finish(rows);
        prefetch::below_connection(ctx, &rows).await?;
        Ok(AuditEventConnection::new(
            rows,
            previous,
            next,
            Scope::Events(Box::new(filter)),
        ))
    }
}
