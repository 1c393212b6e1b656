//! Whole causality trees, subtree connections and grouped counts.

use async_graphql::parser::types::Field;
use async_graphql::{ContextSelectionSet, Enum, Object, Positioned, ServerResult, SimpleObject, Value};
use uuid::Uuid;

use super::DEFAULT_PAGE_SIZE;
use super::connection::{PageInfo, Side};
use super::direct::{Direct, Sink, Stored, resolve_field_now, resolve_list_now};
use super::event::{AuditEvent, AuditEventList, EventFields};
use crate::domain::tree::{self, GroupBy};
use crate::domain::{EventKey, PageRequest, PageWindow, TreeCursor};
use crate::error::ApiError;
use crate::store::{Tree, TreeNode};

/// What a `descendants` field asks for, its arguments checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DescendantsPage {
    /// The deepest level to include.
    pub max_depth: u32,
    /// The page size.
    pub window: PageWindow,
    /// The cursor the page starts after.
    pub after: Option<TreeCursor>,
}

impl DescendantsPage {
    /// Checks the arguments of a `descendants` field; the error names the argument at fault.
    pub fn of(max_depth: Option<i32>, first: Option<i32>, after: Option<String>) -> Result<Self, ApiError> {
        let max_depth = tree::bound("maxDepth", max_depth, tree::DEFAULT_MAX_DEPTH, tree::HARD_MAX_DEPTH)?;
        let window = PageRequest {
            first,
            ..PageRequest::default()
        }
        .resolve(DEFAULT_PAGE_SIZE)?;
        let after = after
            .map(|text| TreeCursor::decode(&text))
            .transpose()
            .map_err(|e| ApiError::BadArgument {
                argument: "after".into(),
                message: format!("after is not a valid cursor ({e})"),
            })?;
        Ok(Self {
            max_depth,
            window,
            after,
        })
    }
}

/// An event in a causality tree.
pub struct CausalityTreeNode(pub TreeNode);

/// An event in a causality tree.
#[Object]
impl CausalityTreeNode {
    /// Distance from the root of the tree (roots are at 0).
    async fn depth(&self) -> u32 {
        self.0.depth
    }
    /// The event's parent, as stored; null for an event without one.
    async fn parent_event_id(&self) -> Option<Uuid> {
        self.0.event.parent_event_id
    }
    /// The event itself.
    async fn event(&self) -> AuditEvent {
        AuditEvent::from(self.0.event.clone())
    }
}

/// A causality tree read within bounds.
pub struct CausalityTree {
    pub(crate) tree: Tree,
    pub(crate) max_depth: u32,
    pub(crate) max_nodes: u32,
}

/// A causality tree read within bounds.
#[Object]
impl CausalityTree {
    /// The events of the tree, breadth-first: by depth, then `eventTimestamp`, then `eventId`.
    /// When `truncated`, the deepest level returned may be partial.
    async fn nodes(&self) -> Vec<CausalityTreeNode> {
        self.tree.nodes.iter().cloned().map(CausalityTreeNode).collect()
    }
    /// How many nodes were returned.
    async fn node_count(&self) -> usize {
        self.tree.nodes.len()
    }
    /// Whether `maxDepth` or `maxNodes` left events out.
    async fn truncated(&self) -> bool {
        self.tree.truncated
    }
    /// Events of the tree that name a parent the store does not hold (legacy or imported data).
    async fn missing_parent_event_ids(&self) -> &[Uuid] {
        &self.tree.missing_parent_event_ids
    }
    /// The depth bound that was applied.
    async fn max_depth(&self) -> u32 {
        self.max_depth
    }
    /// The node bound that was applied.
    async fn max_nodes(&self) -> u32 {
        self.max_nodes
    }
}

/// A descendant and its cursor, resolved directly.
pub type AuditEventDescendantEdge = Direct<DescendantEdgeFields>;

/// A descendant and its cursor.
#[derive(Clone)]
pub struct DescendantEdgeFields(pub TreeNode);

impl Stored for DescendantEdgeFields {
    fn stored(&self, name: &str) -> Option<Value> {
        match name {
            "cursor" => Some(Value::String(tree_cursor(&self.0).encode())),
            "depth" => Some(Value::from(self.0.depth)),
            _ => None,
        }
    }

    fn stored_object(
        &self,
        name: &str,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
        sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        (name == "node")
            .then(|| resolve_field_now(&EventFields(self.0.event.clone()), ctx, field, sink))
            .flatten()
    }
}

/// A descendant and its cursor.
#[Object(name = "AuditEventDescendantEdge")]
impl DescendantEdgeFields {
    /// Opaque cursor of this edge; pass it as `after` to continue from here.
    async fn cursor(&self) -> String {
        tree_cursor(&self.0).encode()
    }
    /// Distance from the event whose descendants these are (children are at 1).
    async fn depth(&self) -> u32 {
        self.0.depth
    }
    /// The descendant.
    async fn node(&self) -> AuditEvent {
        AuditEvent::from(self.0.event.clone())
    }
}

fn tree_cursor(node: &TreeNode) -> TreeCursor {
    TreeCursor {
        depth: node.depth,
        at: crate::domain::Cursor::new(node.event.event_timestamp, node.event.event_id),
    }
}

/// A page of descendants, resolved directly.
pub type AuditEventDescendantConnection = Direct<DescendantConnectionFields>;

impl AuditEventDescendantConnection {
    /// The page `nodes` (at most the page size) of the descendants of `root` up to `max_depth`,
    /// after `after`; `has_next` when more follow.
    pub(crate) fn new(
        nodes: Vec<TreeNode>,
        has_next: bool,
        after: Option<TreeCursor>,
        root: EventKey,
        max_depth: u32,
    ) -> Self {
        Direct(DescendantConnectionFields {
            nodes,
            has_next,
            after,
            root,
            max_depth,
        })
    }
}

/// A page of descendants, breadth-first, following the Relay Cursor Connections specification.
pub struct DescendantConnectionFields {
    nodes: Vec<TreeNode>,
    has_next: bool,
    after: Option<TreeCursor>,
    root: EventKey,
    max_depth: u32,
}

impl DescendantConnectionFields {
    fn page_info(&self) -> PageInfo {
        PageInfo {
            start_cursor: self.nodes.first().map(|n| tree_cursor(n).encode()),
            end_cursor: self.nodes.last().map(|n| tree_cursor(n).encode()),
            previous: match self.after {
                Some(cursor) => Side::Descendants {
                    root: self.root,
                    max_depth: self.max_depth,
                    cursor,
                },
                None => Side::Known(false),
            },
            next: Side::Known(self.has_next),
        }
    }
}

impl Stored for DescendantConnectionFields {
    fn stored_object(
        &self,
        name: &str,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
        sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        match name {
            "edges" => resolve_list_now(self.nodes.iter().cloned().map(DescendantEdgeFields), ctx, field, sink),
            "nodes" => resolve_list_now(
                self.nodes.iter().map(|n| EventFields(n.event.clone())),
                ctx,
                field,
                sink,
            ),
            "pageInfo" => resolve_field_now(&self.page_info(), ctx, field, sink),
            _ => None,
        }
    }
}

/// A page of descendants, breadth-first, following the Relay Cursor Connections specification.
#[Object(name = "AuditEventDescendantConnection")]
impl DescendantConnectionFields {
    /// The descendants of this page with their depth and cursor.
    async fn edges(&self) -> Vec<AuditEventDescendantEdge> {
        self.nodes
            .iter()
            .cloned()
            .map(|n| Direct(DescendantEdgeFields(n)))
            .collect()
    }
    /// The descendants of this page.
    async fn nodes(&self) -> AuditEventList {
        AuditEventList::from(self.nodes.iter().map(|n| n.event.clone()))
    }
    /// Where this page lies among all descendants up to `maxDepth`.
    #[graphql(name = "pageInfo")]
    async fn page_info_field(&self) -> PageInfo {
        self.page_info()
    }
    /// How many descendants exist up to `maxDepth` (one recursive counting query; its cost is
    /// counted with `descendants`, since a connection's complexity multiplies by its page size).
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn total_count(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<u64> {
        use async_graphql::ErrorExtensions;
        let app = ctx.data::<crate::service::Service>()?;
        app.store
            .count_descendants(self.root, self.max_depth)
            .await
            .map_err(|e| e.extend())
    }
}

/// What to group event counts by.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditEventGroupBy {
    /// `eventCategory`.
    Category,
    /// `eventType`.
    Type,
    /// `eventOutcome`.
    Outcome,
    /// `severity` (events without one are counted under a null key).
    Severity,
}

impl From<AuditEventGroupBy> for GroupBy {
    fn from(group: AuditEventGroupBy) -> Self {
        match group {
            AuditEventGroupBy::Category => GroupBy::Category,
            AuditEventGroupBy::Type => GroupBy::Type,
            AuditEventGroupBy::Outcome => GroupBy::Outcome,
            AuditEventGroupBy::Severity => GroupBy::Severity,
        }
    }
}

/// How many events share one value of the grouping.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEventCount {
    /// The value (null for events without one).
    pub key: Option<String>,
    /// How many events have it.
    pub count: u64,
}
