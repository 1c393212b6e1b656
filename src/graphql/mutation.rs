//! Mutation root.

use async_graphql::{Context, ErrorExtensions, Object, Result};
use std::time::Instant;

use chrono::Utc;

use super::{AppContext, AuditEvent, AuditEventInput};
use crate::domain::EventInput;
use crate::error::ApiError;
use crate::metrics::Source;

/// Counts a write refused for its content (unknown parent, …) and turns it into a GraphQL error.
fn failed(app: &AppContext, error: ApiError) -> async_graphql::Error {
    app.metrics.refused(Source::Graphql, &error);
    error.extend()
}

/// Writing the audit trail.
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Records one event. It is durable once this returns. Validation failures are
    /// `BAD_USER_INPUT` errors naming the field; a `parentEventId` that does not exist is rejected
    /// and nothing is written.
    async fn create_audit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event to record.")] input: AuditEventInput,
    ) -> Result<AuditEvent> {
        let app = ctx.data::<AppContext>()?;
        let new = EventInput::from(input)
            .validate(&app.limits, Utc::now())
            .map_err(|errors| failed(app, ApiError::BadUserInput { errors }))?;
        let started = Instant::now();
        let stored = app.store.create_event(new).await.map_err(|e| failed(app, e))?;
        app.metrics.written(Source::Graphql, 1, started.elapsed().as_secs_f64());
        Ok(AuditEvent(stored))
    }

    /// Records up to 500 events (configurable) atomically: all of them or none. Every event is
    /// validated before anything is written; errors give the event's `index` and the field. A
    /// `parentEventId` may name an earlier event of the same batch. Returns the events as stored,
    /// in the order given.
    async fn create_audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The events to record, parents before their children.")] inputs: Vec<AuditEventInput>,
    ) -> Result<Vec<AuditEvent>> {
        let app = ctx.data::<AppContext>()?;
        if inputs.is_empty() {
            return Err(ApiError::BadArgument {
                argument: "inputs".into(),
                message: "inputs must not be empty".into(),
            }
            .extend());
        }
        if inputs.len() > app.max_batch_size {
            return Err(ApiError::BadArgument {
                argument: "inputs".into(),
                message: format!(
                    "a batch holds at most {} events, got {}",
                    app.max_batch_size,
                    inputs.len()
                ),
            }
            .extend());
        }
        let now = Utc::now();
        let mut batch = Vec::with_capacity(inputs.len());
        let mut errors = Vec::new();
        for (index, input) in inputs.into_iter().enumerate() {
            match EventInput::from(input).validate(&app.limits, now) {
                Ok(event) => batch.push(event),
                Err(found) => errors.extend(found.into_iter().map(|e| e.at(index))),
            }
        }
        if !errors.is_empty() {
            return Err(failed(app, ApiError::BadUserInput { errors }));
        }
        let started = Instant::now();
        let count = batch.len();
        let stored = app.store.create_events(batch).await.map_err(|e| failed(app, e))?;
        app.metrics
            .written(Source::Graphql, count, started.elapsed().as_secs_f64());
        Ok(stored.into_iter().map(AuditEvent).collect())
    }
}
