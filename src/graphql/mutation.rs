//! Mutation root.

use async_graphql::{Context, ErrorExtensions, Object, Result};
use chrono::Utc;

use super::{AppContext, AuditEvent, AuditEventInput};
use crate::domain::EventInput;
use crate::error::ApiError;

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
            .map_err(|errors| ApiError::BadUserInput { errors }.extend())?;
        let stored = app.store.create_event(new).await.map_err(|e| e.extend())?;
        Ok(AuditEvent(stored))
    }
}
