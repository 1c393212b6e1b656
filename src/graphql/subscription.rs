//! The subscription root: events as they are recorded, in commit order, resumable by cursor.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Result, SimpleObject, Subscription};
use chrono::Utc;
use futures_util::Stream;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{AuditEvent, AuditEventFilter, RoleGuard};
use crate::auth::Role;
use crate::domain::LiveCursor;
use crate::domain::filter::MAX_FILTER_TEXT;
use crate::error::ApiError;
use crate::live::tree::TreeRoot;
use crate::live::{Delivery, LiveConnection, LiveError, LiveRefusal, Scope, StartError, TreeScope};
use crate::service::Service;

/// The subscription root.
pub struct SubscriptionRoot;

/// An event just recorded, with the cursor that resumes after it.
#[derive(SimpleObject)]
pub struct AuditEventAdded {
    /// Pass as `after` to subscribe again from just after this event: nothing missed, nothing
    /// repeated.
    cursor: String,
    /// The event's place in commit order: its leaf index in the transparency log (see
    /// `inclusionProof`).
    log_index: u64,
    /// The event.
    event: AuditEvent,
}

impl AuditEventAdded {
    fn new(delivery: Delivery) -> Self {
        Self {
            cursor: delivery.event.cursor().encode(),
            log_index: delivery.event.position,
            event: AuditEvent::from(delivery.event.event),
        }
    }
}

/// An event just added to a watched causality tree, with where it goes in the tree.
#[derive(SimpleObject)]
pub struct CausalityTreeChange {
    #[graphql(flatten)]
    added: AuditEventAdded,
    /// Its depth in the tree: from the tree's root event (0) when watching a correlation, from
    /// the watched event (0) when watching the tree below an event.
    depth: u32,
    /// The event it hangs below in the tree (none for a root).
    parent_event_id: Option<Uuid>,
}

impl CausalityTreeChange {
    fn new(delivery: Delivery) -> Self {
        let placement = delivery.placement;
        Self {
            added: AuditEventAdded::new(delivery),
            depth: placement.map_or(0, |p| p.depth),
            parent_event_id: placement.and_then(|p| p.parent),
        }
    }
}

/// Live events.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every event recorded from now on that matches `filter`, in commit order: the order of the
    /// transparency log, which an event that commits late with an older `eventTimestamp` cannot
    /// upset. Events written through any API and any server process are delivered. With `after`
    /// (the `cursor` of a message received earlier), the events recorded since then are replayed
    /// first and delivery continues live, with none missed and none repeated. A subscription
    /// that falls too far behind ends with the error `SUBSCRIPTION_LAGGED`, whose
    /// `extensions.resumeAfter` is the cursor to resume from. Relative times in the filter
    /// (`since: "1h"`) are resolved when the subscription starts.
    #[graphql(guard = "RoleGuard(Role::Reader)")]
    async fn audit_event_added(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events to deliver; all when omitted.")] filter: Option<AuditEventFilter>,
        #[graphql(desc = "Resume after this cursor (from a message or a `SUBSCRIPTION_LAGGED` error).")] after: Option<
            String,
        >,
    ) -> Result<impl Stream<Item = Result<AuditEventAdded>> + use<>> {
        let filter = filter.unwrap_or_default().resolve(Utc::now()).map_err(|e| e.extend())?;
        let receiver = start(ctx, after, Scope::Filter(Box::new(filter))).await?;
        Ok(deliveries(receiver, AuditEventAdded::new))
    }

    /// Each event added to one causality tree, with its depth and parent so that a view can
    /// insert it in place: the tree of a correlation (`correlationId`) or the tree below an event
    /// (`rootEventId`); give exactly one. Commit order, `after` and errors as in
    /// `auditEventAdded`.
    #[graphql(guard = "RoleGuard(Role::Reader)")]
    async fn causality_tree_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The correlation whose tree to watch.")] correlation_id: Option<String>,
        #[graphql(desc = "The event below which to watch (depth 0).")] root_event_id: Option<Uuid>,
        #[graphql(desc = "Resume after this cursor (from a message or a `SUBSCRIPTION_LAGGED` error).")] after: Option<
            String,
        >,
    ) -> Result<impl Stream<Item = Result<CausalityTreeChange>> + use<>> {
        let root = match (correlation_id, root_event_id) {
            (Some(correlation), None) => {
                if correlation.is_empty() || correlation.contains('\0') || correlation.len() > MAX_FILTER_TEXT {
                    return Err(ApiError::BadArgument {
                        argument: "correlationId".into(),
                        message: format!(
                            "correlationId: must be non-empty, hold no U+0000 and be at most {MAX_FILTER_TEXT} bytes long"
                        ),
                    }
                    .extend());
                }
                TreeRoot::Correlation(correlation)
            }
            (None, Some(id)) => {
                let service = ctx.data::<Service>()?;
                match service
                    .store
                    .find_event(id, crate::store::Columns::keys())
                    .await
                    .map_err(|e| e.extend())?
                {
                    Some(root) => TreeRoot::Below(root.key()),
                    None => return Err(ApiError::NotFound(format!("event {id} does not exist")).extend()),
                }
            }
            _ => {
                return Err(ApiError::BadArgument {
                    argument: "correlationId".into(),
                    message: "give exactly one of correlationId and rootEventId".into(),
                }
                .extend());
            }
        };
        let receiver = start(ctx, after, Scope::Tree(TreeScope::new(root))).await?;
        Ok(deliveries(receiver, CausalityTreeChange::new))
    }
}

/// Starts following the log for a subscription of this connection.
async fn start(
    ctx: &Context<'_>,
    after: Option<String>,
    scope: Scope,
) -> Result<mpsc::Receiver<std::result::Result<Delivery, LiveError>>> {
    let connection = ctx
        .data_opt::<Arc<LiveConnection>>()
        .ok_or_else(|| refusal(&LiveRefusal::NotStreaming))?;
    let from = after.map(|text| LiveCursor::decode(&text)).transpose().map_err(|e| {
        ApiError::BadArgument {
            argument: "after".into(),
            message: format!("after: {e} (use the `cursor` of a subscription message)"),
        }
        .extend()
    })?;
    let permit = connection.subscription().map_err(|r| refusal(&r))?;
    let from = connection.live().start(from).await.map_err(|e| match e {
        StartError::Ahead { .. } => ApiError::BadArgument {
            argument: "after".into(),
            message: e.to_string(),
        }
        .extend(),
        StartError::Store(error) => ApiError::from(error).extend(),
    })?;
    Ok(connection.live().follow(permit, from, scope))
}

/// The deliveries as a stream of messages; it ends after an error.
fn deliveries<T>(
    receiver: mpsc::Receiver<std::result::Result<Delivery, LiveError>>,
    wrap: fn(Delivery) -> T,
) -> impl Stream<Item = Result<T>> {
    futures_util::stream::unfold(receiver, move |mut receiver| async move {
        let item = receiver.recv().await?;
        Some((item.map(wrap).map_err(|e| ended(&e)), receiver))
    })
}

/// A limit's refusal: `TOO_MANY_SUBSCRIPTIONS` and the like, or `BAD_REQUEST` for a transport
/// that cannot stream.
pub fn refusal(refusal: &LiveRefusal) -> async_graphql::Error {
    let code = match refusal {
        LiveRefusal::NotStreaming => "BAD_REQUEST".to_string(),
        other => other.reason().to_ascii_uppercase(),
    };
    async_graphql::Error::new(refusal.to_string()).extend_with(|_, ext| ext.set("code", code))
}

/// The error that ends a subscription, with the cursor to resume from.
fn ended(error: &LiveError) -> async_graphql::Error {
    if let LiveError::Store { error: inner, .. } = error {
        tracing::warn!(error = %inner, "a subscription ended: the database failed");
    }
    let resume = error.resume().encode();
    async_graphql::Error::new(error.to_string()).extend_with(|_, ext| {
        ext.set("code", error.code());
        ext.set("resumeAfter", resume);
    })
}
