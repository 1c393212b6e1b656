//! Query root.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Object, Result};
use chrono::Utc;
use uuid::Uuid;

use super::connection::{AuditEventConnection, Scope};
use super::prefetch;
use super::{
    AuditEvent, AuditEventCount, AuditEventFilter, AuditEventGroupBy, CausalityTree, DEFAULT_PAGE_SIZE, RoleGuard,
    page_cost,
};
use crate::auth::Role;
use crate::domain::PageRequest;
use crate::domain::filter::MAX_FILTER_TEXT;
use crate::domain::page::Order;
use crate::domain::tree::{self, TreeBounds};
use crate::error::ApiError;
use crate::service::Service;
use crate::store::Columns;

/// Reading the audit trail.
pub struct QueryRoot;

/// Reading the audit trail: events, causality trees, counts, and the proofs of tamper evidence.
#[Object(name = "Query")]
impl QueryRoot {
    /// One event by id; null when there is none.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn audit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event id.")] event_id: Uuid,
    ) -> Result<Option<AuditEvent>> {
        let _turn = super::limits::root_turn(ctx).await;
        // Only the columns its selection shows (the keys always): a walk from it needs no more.
        let columns = super::columns::of_event(&ctx.look_ahead());
        Ok(prefetch::event_by_id(ctx, event_id, columns)
            .await?
            .map(AuditEvent::from))
    }

    /// Refetches any object by its global id (`id` of a `Node`): an event, a legal hold, a retention
    /// run. Null when it no longer exists (a purged event, a released hold). Needs the role
    /// `reader`.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A global id, as a `Node`'s `id` gave it.")] id: async_graphql::ID,
    ) -> Result<Option<super::Node>> {
        let _turn = super::limits::root_turn(ctx).await;
        Ok(super::node::resolve(ctx, "id", &[id]).await?.pop().flatten())
    }

    /// Refetches objects by their global ids, in the order given, null for one that no longer
    /// exists; at most 1000. Events are read with one statement for all of them, holds and runs
    /// with one each. Needs the role `reader`.
    #[graphql(
        complexity = "super::STATEMENT_COST + ids.len().max(1) * child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Global ids, as `Node`s' `id` gave them.")] ids: Vec<async_graphql::ID>,
    ) -> Result<Vec<Option<super::Node>>> {
        let _turn = super::limits::root_turn(ctx).await;
        super::node::resolve(ctx, "ids", &ids).await
    }

    /// Events matching a filter, newest first (`eventTimestamp`, then `eventId`, descending), as a
    /// Relay connection with keyset pagination: pages stay stable while new events arrive. Page
    /// forwards with `first`/`after` or backwards with `last`/`before`; not both sizes at once.
    #[graphql(
        complexity = "super::STATEMENT_COST + page_cost(first, last, child_complexity)",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events to list; all when omitted.")] filter: Option<AuditEventFilter>,
        #[graphql(desc = "Page size from the start, 0 to 1000 (default 50).")] first: Option<i32>,
        #[graphql(desc = "Return events after this cursor (older ones).")] after: Option<String>,
        #[graphql(desc = "Page size from the end, 0 to 1000.")] last: Option<i32>,
        #[graphql(desc = "Return events before this cursor (newer ones).")] before: Option<String>,
    ) -> Result<AuditEventConnection> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
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
            .list_events(
                &filter,
                &window,
                Order::NewestFirst,
                super::columns::of_connection(&ctx.look_ahead()),
            )
            .await
            .map_err(|e| e.extend())?;
        let (rows, previous, next) = window.finish(super::loaders::shared(rows));
        prefetch::below_connection(ctx, &rows).await?;
        Ok(AuditEventConnection::new(
            rows,
            previous,
            next,
            Scope::Events(Arc::new(filter)),
        ))
    }

    /// The causality tree of a correlation id or below one event, in one request: nodes with
    /// their depth and parent, breadth-first, bounded by `maxDepth` (default 100, at most 10000)
    /// and `maxNodes` (default 1000, at most 10000). Give exactly one of `correlationId` and
    /// `rootEventId`. For a correlation, an event whose parent is not part of it is a root.
    #[graphql(
        complexity = "super::WALK_COST + max_nodes.unwrap_or(tree::DEFAULT_MAX_NODES as i32).clamp(1, tree::HARD_MAX_NODES as i32) as usize * child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn causality_tree(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The correlation whose events to arrange.")] correlation_id: Option<String>,
        #[graphql(desc = "The event at the top of the tree (depth 0).")] root_event_id: Option<Uuid>,
        #[graphql(desc = "Deepest level returned, 1 to 10000 (default 100).")] max_depth: Option<i32>,
        #[graphql(desc = "Most nodes returned, 1 to 10000 (default 1000).")] max_nodes: Option<i32>,
    ) -> Result<CausalityTree> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let bounds = TreeBounds {
            max_depth: tree::bound("maxDepth", max_depth, tree::DEFAULT_MAX_DEPTH, tree::HARD_MAX_DEPTH)
                .map_err(|e| ApiError::from(e).extend())?,
            max_nodes: tree::bound("maxNodes", max_nodes, tree::DEFAULT_MAX_NODES, tree::HARD_MAX_NODES)
                .map_err(|e| ApiError::from(e).extend())?,
        };
        let tree = match (correlation_id, root_event_id) {
            (Some(correlation), None) if correlation.contains('\0') || correlation.len() > MAX_FILTER_TEXT => {
                Err(ApiError::BadArgument {
                    argument: "correlationId".into(),
                    message: format!(
                        "correlationId: {} and at most {MAX_FILTER_TEXT} bytes long",
                        crate::domain::event::NUL_MESSAGE
                    ),
                })
            }
            (Some(correlation), None) => app
                .store
                .tree_of_correlation(&correlation, bounds)
                .await
                .map_err(ApiError::from),
            (None, Some(id)) => match app
                .store
                .find_event(id, Columns::keys())
                .await
                .map_err(|e| e.extend())?
            {
                Some(root) => app
                    .store
                    .tree_of_event(root.key(), bounds)
                    .await
                    .map_err(ApiError::from),
                None => Err(ApiError::NotFound(format!("event {id} does not exist"))),
            },
            _ => Err(ApiError::BadArgument {
                argument: "correlationId".into(),
                message: "give exactly one of correlationId and rootEventId".into(),
            }),
        }
        .map_err(|e| e.extend())?;
        Ok(CausalityTree {
            tree,
            max_depth: bounds.max_depth,
            max_nodes: bounds.max_nodes,
        })
    }

    /// How many events match a filter, grouped by category, type, outcome or severity, largest
    /// group first.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn audit_event_counts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events to count; all when omitted.")] filter: Option<AuditEventFilter>,
        #[graphql(desc = "What to group by.")] group_by: AuditEventGroupBy,
    ) -> Result<Vec<AuditEventCount>> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let filter = filter.unwrap_or_default().resolve(Utc::now()).map_err(|e| e.extend())?;
        let counts = app
            .store
            .count_by(&filter, group_by.into())
            .await
            .map_err(|e| e.extend())?;
        Ok(counts
            .into_iter()
            .map(|(key, count)| AuditEventCount { key, count })
            .collect())
    }

    /// Checks the hash chain of a correlation: recomputes every event's hash from its stored
    /// content, follows every link and position, and compares the end with the chain's recorded
    /// head. Reports every break (an edited, removed, inserted or reordered event) with the event
    /// where it shows. Needs the role `reader`.
    #[graphql(
        complexity = "super::WALK_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn verify_chain(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The correlation whose chain to check.")] correlation_id: String,
    ) -> Result<super::ChainVerification> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        app.verify_chain(caller, &correlation_id)
            .await
            .map(super::ChainVerification)
            .map_err(|e| e.extend())
    }

    /// The legal holds in force, by correlation. Needs the role `reader`.
    #[graphql(complexity = "super::STATEMENT_COST", guard = "RoleGuard(Role::Reader)")]
    async fn legal_holds(&self, ctx: &Context<'_>) -> Result<Vec<super::LegalHold>> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        let holds = app.legal_holds(caller).await.map_err(|e| e.extend())?;
        Ok(holds.into_iter().map(super::LegalHold::from).collect())
    }

    /// The retention runs recorded (`auditgraph retention`, or the server's schedule), newest
    /// first: what each found, deleted and kept, and why. Needs the role `reader`.
    #[graphql(complexity = "super::STATEMENT_COST", guard = "RoleGuard(Role::Reader)")]
    async fn retention_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many runs, newest first; 1 to 100.", default = 20)] first: i32,
    ) -> Result<Vec<super::RetentionRun>> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        let Some(limit) = u64::try_from(first).ok().filter(|n| (1..=100).contains(n)) else {
            return Err(crate::error::ApiError::BadArgument {
                argument: "first".into(),
                message: format!("must be between 1 and 100, got {first}"),
            }
            .extend());
        };
        let runs = app.retention_runs(caller, limit).await.map_err(|e| e.extend())?;
        Ok(runs.into_iter().map(super::RetentionRun::from).collect())
    }

    /// Where the commit order stands now: every event committed before this call lies before
    /// the cursor, every later one after it. Pass it as `after` to a subscription to receive
    /// exactly the events recorded from now on, however late the subscription starts; read it
    /// before the data a view shows, and the view misses nothing. Needs the role `reader`.
    #[graphql(complexity = "super::STATEMENT_COST", guard = "RoleGuard(Role::Reader)")]
    async fn live_cursor(&self, ctx: &Context<'_>) -> Result<String> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        let cursor = app.live_cursor(caller).await.map_err(|e| e.extend())?;
        Ok(cursor.encode())
    }

    /// The newest signed checkpoint of the transparency log, after the events committed so far
    /// are sequenced. Null while the log is empty. Needs the role `reader`.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn log_checkpoint(&self, ctx: &Context<'_>) -> Result<Option<super::LogCheckpoint>> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        let stored = app.latest_checkpoint(caller).await.map_err(|e| e.extend())?;
        Ok(stored.map(|stored| super::LogCheckpoint {
            stored,
            verifier_key: app.log.verifier().to_string(),
        }))
    }

    /// The proof that an event is in the transparency log: its leaf and the audit path to the root
    /// of the tree of `treeSize` leaves (default: the newest checkpoint's). Needs `reader`.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn inclusion_proof(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event to prove.")] event_id: Uuid,
        #[graphql(desc = "The size of the tree to prove it in (default: the newest checkpoint's).")] tree_size: Option<
            u64,
        >,
    ) -> Result<super::InclusionProof> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        app.inclusion_proof(caller, event_id, tree_size)
            .await
            .map(super::InclusionProof::from)
            .map_err(|e| e.extend())
    }

    /// The proof that the tree of `fromSize` leaves is a prefix of the tree of `toSize` leaves
    /// (default: the newest checkpoint's): the log was only appended to. Needs `reader`.
    #[graphql(
        complexity = "super::STATEMENT_COST + child_complexity",
        guard = "RoleGuard(Role::Reader)"
    )]
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The older tree's size (at least 1).")] from_size: u64,
        #[graphql(desc = "The newer tree's size (default: the newest checkpoint's).")] to_size: Option<u64>,
    ) -> Result<super::ConsistencyProof> {
        let _turn = super::limits::root_turn(ctx).await;
        let app = ctx.data::<Service>()?;
        let caller = super::caller(ctx)?;
        app.consistency_proof(caller, from_size, to_size)
            .await
            .map(super::ConsistencyProof::from)
            .map_err(|e| e.extend())
    }
}
