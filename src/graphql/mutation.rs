//! Mutation root: thin adapters over [`Service`].

use async_graphql::{Context, ErrorExtensions, Object, Result};

use super::{AuditEvent, AuditEventInput, caller};
use crate::domain::EventInput;
use crate::metrics::Source;
use crate::service::Service;

/// Writing the audit trail.
pub struct MutationRoot;

/// Writing the audit trail.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Records one event. It is durable once this returns. Needs the role `writer`. Validation
    /// failures are `BAD_USER_INPUT` errors naming the field; a `parentEventId` that does not exist
    /// is rejected and nothing is written. A human caller is recorded as the actor whatever the
    /// input says; a service may name the actor it acts for. `submittedBy` records the caller.
    async fn create_audit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event to record.")] input: AuditEventInput,
    ) -> Result<AuditEvent> {
        let service = ctx.data::<Service>()?;
        let caller = caller(ctx)?;
        service
            .create_event(caller, Ok(EventInput::from(input)), Source::Graphql)
            .await
            .map(AuditEvent::from)
            .map_err(|e| e.extend())
    }

    /// Records up to 500 events (configurable) atomically: all of them or none. Needs the role
    /// `writer`. Every event is validated before anything is written; errors give the event's
    /// `index` and the field. A `parentEventId` may name an earlier event of the same batch.
    /// Returns the events as stored, in the order given.
    async fn create_audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The events to record, parents before their children.")] inputs: Vec<AuditEventInput>,
    ) -> Result<Vec<AuditEvent>> {
        let service = ctx.data::<Service>()?;
        let caller = caller(ctx)?;
        let submissions = inputs.into_iter().map(|input| Ok(EventInput::from(input))).collect();
        let stored = service
            .create_events(caller, submissions, Source::Graphql)
            .await
            .map_err(|e| e.extend())?;
        Ok(stored.into_iter().map(AuditEvent::from).collect())
    }
}
