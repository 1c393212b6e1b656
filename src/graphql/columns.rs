//! Which columns a selection of `AuditEvent` fields reads (see [`Columns`]).

use async_graphql::{Lookahead, SelectionField};

use crate::entity::audit_event::Column;
use crate::store::Columns;

/// The columns an `AuditEvent` field shows of its own event. Fields that follow the tree
/// (`parent`, `children`, `childCount`, `ancestors`, `depth`, `descendants`) need only the keys,
/// which every read fetches; `root` is handled by [`of_events`].
fn of_field(name: &str) -> &'static [Column] {
    use Column as C;
    match name {
        "eventVersion" => &[C::EventVersion],
        "eventType" => &[C::EventType],
        "eventCategory" => &[C::EventCategory],
        "eventAction" => &[C::EventAction],
        "eventOutcome" => &[C::EventOutcome],
        "actorType" => &[C::ActorType],
        "actorId" => &[C::ActorId],
        "actorIp" => &[C::ActorIp],
        "resourceType" => &[C::ResourceType],
        "resourceId" => &[C::ResourceId],
        "resourceName" => &[C::ResourceName],
        "traceId" => &[C::TraceId],
        "spanId" => &[C::SpanId],
        "namespace" => &[C::Namespace],
        "clusterId" => &[C::ClusterId],
        "eventData" => &[C::EventData],
        "eventMetadata" => &[C::EventMetadata],
        "severity" => &[C::Severity],
        "durationMs" => &[C::DurationMs],
        "errorCode" => &[C::ErrorCode],
        "errorMessage" => &[C::ErrorMessage],
        "retentionDays" => &[C::RetentionDays],
        "isSensitive" => &[C::IsSensitive],
        "eventHash" => &[C::EventHash],
        "previousEventHash" => &[C::PreviousEventHash],
        "hashAlgorithm" => &[C::HashAlgorithm],
        "hashKeyId" => &[C::HashKeyId],
        "chainSeq" => &[C::ChainSeq],
        "chainNote" => &[C::ChainNote],
        "legalHold" => &[C::LegalHold],
        "legalHoldReason" => &[C::LegalHoldReason],
        "legalHoldPlacedBy" => &[C::LegalHoldPlacedBy],
        "legalHoldPlacedAt" => &[C::LegalHoldPlacedAt],
        "submittedBy" => &[C::SubmittedBy],
        _ => &[],
    }
}

/// The columns that the `AuditEvent` selections `events` read of their events: the keys, the
/// columns of the fields selected, and, because `root` may be the event itself, those of `root`'s
/// selection. `event_data` is read as text: the `eventData` field, its one reader here, writes it
/// out as it is when the response is written ahead, and parses it otherwise (see `EventFields`).
pub fn of_events<'a>(events: impl IntoIterator<Item = SelectionField<'a>>) -> Columns {
    let mut columns = Columns::keys();
    for event in events {
        for field in event.selection_set() {
            match field.name() {
                "root" => columns = columns.union(of_events([field])),
                name => columns = columns.union(Columns::of(of_field(name)).data_as_text()),
            }
        }
    }
    columns
}

/// The columns the nodes of a connection read: `edges { node { … } }` and `nodes { … }`.
pub fn of_connection(connection: &Lookahead<'_>) -> Columns {
    let nodes = [connection.field("edges").field("node"), connection.field("nodes")];
    of_events(nodes.iter().flat_map(Lookahead::selection_fields))
}

/// The columns the event being resolved reads (its own selection).
pub fn of_event(event: &Lookahead<'_>) -> Columns {
    of_events(event.selection_fields())
}
