//! Mutation root: thin adapters over [`Service`].

use async_graphql::{Context, ErrorExtensions, Object, Result};

use super::{AuditEvent, AuditEventInput, AuditEventList, LegalHoldPlaced, LegalHoldReleased, caller};
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
    ) -> Result<AuditEventList> {
        let service = ctx.data::<Service>()?;
        let caller = caller(ctx)?;
        let submissions = inputs.into_iter().map(|input| Ok(EventInput::from(input))).collect();
        let stored = service
            .create_events(caller, submissions, Source::Graphql)
            .await
            .map_err(|e| e.extend())?;
        Ok(AuditEventList::from(stored))
    }

    /// Places a legal hold on a correlation (kubernaut's `POST /api/v1/audit/legal-hold`): none
    /// of its events, including those written to it later, can be deleted, by retention or by
    /// anyone, until the hold is released. The placing is recorded as an event of the correlation
    /// (`legal_hold.placed`, category `compliance`, the caller as actor, the reason in
    /// `eventData`), held like the others. Needs the role `admin`. `NOT_FOUND` when the
    /// correlation has no events; `CONFLICT` when it is held already.
    async fn place_legal_hold(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The correlation to hold.")] correlation_id: String,
        #[graphql(desc = "Why, for the record (for example a case number); 1 to 1,000 characters.")] reason: String,
    ) -> Result<LegalHoldPlaced> {
        let service = ctx.data::<Service>()?;
        let caller = caller(ctx)?;
        let (hold, record) = service
            .place_legal_hold(caller, &correlation_id, &reason)
            .await
            .map_err(|e| e.extend())?;
        Ok(LegalHoldPlaced { hold, record })
    }

    /// Releases the legal hold of a correlation (kubernaut's `DELETE
    /// /api/v1/audit/legal-hold/{correlation_id}`). Its events keep the hold's reason with
    /// `[Released: <reason>]` appended, and retention may delete them again once expired. The
    /// release is recorded as an event of the correlation (`legal_hold.released`). Needs the
    /// role `admin`. `NOT_FOUND` when the correlation is under no hold.
    async fn release_legal_hold(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The correlation to release.")] correlation_id: String,
        #[graphql(desc = "Why, for the record; 1 to 1,000 characters.")] reason: String,
    ) -> Result<LegalHoldReleased> {
        let service = ctx.data::<Service>()?;
        let caller = caller(ctx)?;
        let (released, record) = service
            .release_legal_hold(caller, &correlation_id, &reason)
            .await
            .map_err(|e| e.extend())?;
        Ok(LegalHoldReleased { released, record })
    }
}
