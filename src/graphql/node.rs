//! Relay's object identification: the `Node` interface, which every object a client may refetch
//! implements with an opaque, stable `id`, and the query root's `node` and `nodes`.

use std::collections::HashMap;

use async_graphql::{Context, ErrorExtensions, ID, Interface, Result};

use super::event::EventFields;
use super::{LegalHold, RetentionRun};
use crate::domain::global_id::GlobalId;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::Columns;

/// An object with a global id: `node(id:)` refetches it, and clients that normalise their cache by
/// id (Relay, Apollo) keep one copy of it.
#[derive(Interface)]
#[graphql(field(
    name = "id",
    ty = "ID",
    desc = "The object's global id: opaque and stable. `node(id:)` refetches the object by it. An event's `eventId` stays its own UUID."
))]
pub enum Node {
    /// An audit event (resolved field by field: `node` is not the path for pages of events).
    AuditEvent(EventFields),
    /// A legal hold.
    LegalHold(LegalHold),
    /// A retention run.
    RetentionRun(RetentionRun),
}

/// Most ids `nodes` takes at once.
pub const MAX_IDS: usize = 1000;

/// The objects `ids` name, in the same order; `None` for one that does not exist (any more). Events
/// are read through the request's loader (one statement for all of them), holds and runs with one
/// statement each.
pub async fn resolve(ctx: &Context<'_>, argument: &str, ids: &[ID]) -> Result<Vec<Option<Node>>> {
    let bad = |message: String| {
        ApiError::BadArgument {
            argument: argument.into(),
            message,
        }
        .extend()
    };
    if ids.len() > MAX_IDS {
        return Err(bad(format!("at most {MAX_IDS} ids at once, got {}", ids.len())));
    }
    let wanted: Vec<GlobalId> = ids
        .iter()
        .map(|id| GlobalId::decode(id.as_str()))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let app = ctx.data::<Service>()?;
    let caller = super::caller(ctx)?;
    let keys: Vec<super::loaders::EventColumnsKey> = wanted
        .iter()
        .filter_map(|id| match id {
            GlobalId::AuditEvent(event) => Some(super::loaders::EventColumnsKey {
                event: *event,
                columns: Columns::ALL,
            }),
            _ => None,
        })
        .collect();
    let events: HashMap<crate::domain::EventKey, _> = if keys.is_empty() {
        HashMap::new()
    } else {
        ctx.data::<super::Loaders>()?
            .parent()
            .load_many(keys)
            .await
            .map_err(|e| e.extend())?
            .into_iter()
            .map(|(key, model)| (key.event, model))
            .collect()
    };
    let holds: HashMap<String, LegalHold> = if wanted.iter().any(|id| matches!(id, GlobalId::LegalHold(_))) {
        app.legal_holds(caller)
            .await
            .map_err(|e| e.extend())?
            .into_iter()
            .map(|hold| (hold.correlation_id.clone(), LegalHold::from(hold)))
            .collect()
    } else {
        HashMap::new()
    };
    let run_ids: Vec<uuid::Uuid> = wanted
        .iter()
        .filter_map(|id| match id {
            GlobalId::RetentionRun(run) => Some(*run),
            _ => None,
        })
        .collect();
    let runs: HashMap<uuid::Uuid, RetentionRun> = if run_ids.is_empty() {
        HashMap::new()
    } else {
        app.retention_runs_by_id(caller, &run_ids)
            .await
            .map_err(|e| e.extend())?
            .into_iter()
            .map(|run| (run.run_id, RetentionRun::from(run)))
            .collect()
    };
    Ok(wanted
        .iter()
        .map(|id| match id {
            GlobalId::AuditEvent(event) => events
                .get(event)
                .map(|model| Node::AuditEvent(EventFields(model.clone()))),
            GlobalId::LegalHold(correlation) => holds.get(correlation).cloned().map(Node::LegalHold),
            GlobalId::RetentionRun(run) => runs.get(run).cloned().map(Node::RetentionRun),
        })
        .collect())
}
