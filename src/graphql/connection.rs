//! Relay connections of events.

use std::sync::Arc;

use async_graphql::parser::types::Field;
use async_graphql::{Context, ContextSelectionSet, ErrorExtensions, Object, Positioned, Result, ServerResult, Value};

use super::Loaders;
use super::direct::{Direct, Sink, Stored, resolve_field_now, resolve_list_now};
use super::event::{AuditEvent, EventFields};
use super::loaders::{ChildCountKey, ChildrenUpToKey};
use crate::domain::page::{Beyond, Order};
use crate::domain::{Cursor, EventFilter, EventKey, TreeCursor};
use crate::entity::audit_event::Model;
use crate::service::Service;

/// What a connection lists.
#[derive(Clone, Debug)]
pub(crate) enum Scope {
    /// Events matching a filter, newest first.
    Events(Arc<EventFilter>),
    /// The children of one event, oldest first.
    Children(EventKey),
}

impl Scope {
    fn filter_and_order(&self) -> (Arc<EventFilter>, Order) {
        match self {
            Scope::Events(filter) => (filter.clone(), Order::NewestFirst),
            Scope::Children(parent) => (
                Arc::new(EventFilter {
                    parent_event_id: Some(parent.id),
                    ..EventFilter::default()
                }),
                Order::OldestFirst,
            ),
        }
    }

    /// What is known of one side of a page of this scope.
    fn side(&self, beyond: Beyond) -> Side {
        match (self, beyond) {
            (_, Beyond::Known(known)) => Side::Known(known),
            (Scope::Children(parent), Beyond::ProbeUpTo(cursor)) => Side::ChildrenUpTo(ChildrenUpToKey {
                parent: *parent,
                cursor,
            }),
            (_, probe) => {
                let (filter, order) = self.filter_and_order();
                Side::Events {
                    filter,
                    order,
                    beyond: probe,
                }
            }
        }
    }
}

/// Whether elements exist on one side of a page: known from the page query, or to be checked
/// with one small query when a client asks.
#[derive(Clone, Debug)]
pub(crate) enum Side {
    Known(bool),
    Events {
        filter: Arc<EventFilter>,
        order: Order,
        beyond: Beyond,
    },
    Descendants {
        root: EventKey,
        max_depth: u32,
        cursor: TreeCursor,
    },
    /// Batched across the parents of a level (children pages only page forwards).
    ChildrenUpTo(ChildrenUpToKey),
}

/// A page of audit events, resolved directly: a page whose selection is all stored values (the
/// events' fields, cursors, `pageInfo` known from the page query) is written at once.
pub type AuditEventConnection = Direct<ConnectionFields>;

/// A page of audit events, following the Relay Cursor Connections specification.
pub struct ConnectionFields {
    rows: Vec<Arc<Model>>,
    previous: Beyond,
    next: Beyond,
    scope: Scope,
}

impl AuditEventConnection {
    pub(crate) fn new(rows: Vec<Arc<Model>>, previous: Beyond, next: Beyond, scope: Scope) -> Self {
        Direct(ConnectionFields {
            rows,
            previous,
            next,
            scope,
        })
    }
}

impl ConnectionFields {
    fn edge(model: &Arc<Model>) -> EdgeFields {
        EdgeFields {
            node: AuditEvent::from(model.clone()),
        }
    }

    fn page_info(&self) -> PageInfo {
        PageInfo {
            start_cursor: self.rows.first().map(|m| cursor_of(m).encode()),
            end_cursor: self.rows.last().map(|m| cursor_of(m).encode()),
            previous: self.scope.side(self.previous),
            next: self.scope.side(self.next),
        }
    }
}

impl Stored for ConnectionFields {
    fn stored_object(
        &self,
        name: &str,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
        sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        match name {
            "edges" => resolve_list_now(self.rows.iter().map(Self::edge), ctx, field, sink),
            "nodes" => resolve_list_now(self.rows.iter().map(|m| EventFields(m.clone())), ctx, field, sink),
            "pageInfo" => resolve_field_now(&self.page_info(), ctx, field, sink),
            _ => None,
        }
    }
}

fn cursor_of(model: &Model) -> Cursor {
    Cursor::new(model.event_timestamp, model.event_id)
}

/// An event and the cursor that points at it, resolved directly.
pub type AuditEventEdge = Direct<EdgeFields>;

/// An event and the cursor that points at it.
pub struct EdgeFields {
    node: AuditEvent,
}

impl EdgeFields {
    fn cursor_text(&self) -> String {
        cursor_of(&self.node.0.0).encode()
    }
}

impl Stored for EdgeFields {
    fn stored(&self, name: &str) -> Option<Value> {
        (name == "cursor").then(|| Value::String(self.cursor_text()))
    }

    fn write_stored(&self, name: &str, out: &mut Vec<u8>) -> bool {
        if name != "cursor" {
            return false;
        }
        // URL-safe base64 needs no escaping.
        out.push(b'"');
        cursor_of(&self.node.0.0).encode_into(out);
        out.push(b'"');
        true
    }

    fn stored_object(
        &self,
        name: &str,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
        sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        (name == "node")
            .then(|| resolve_field_now(&self.node.0, ctx, field, sink))
            .flatten()
    }
}

/// An event and the cursor that points at it.
#[Object(name = "AuditEventEdge")]
impl EdgeFields {
    /// Opaque cursor of this edge; pass it as `after` or `before` to page from here.
    async fn cursor(&self) -> String {
        self.cursor_text()
    }
    /// The event.
    async fn node(&self) -> &AuditEvent {
        &self.node
    }
}

/// A page of audit events, following the Relay Cursor Connections specification.
#[Object(name = "AuditEventConnection")]
impl ConnectionFields {
    /// The events of this page with their cursors.
    async fn edges(&self) -> Vec<AuditEventEdge> {
        self.rows.iter().map(|m| Direct(Self::edge(m))).collect()
    }

    /// The events of this page, without cursors.
    async fn nodes(&self) -> Vec<AuditEvent> {
        self.rows.iter().cloned().map(AuditEvent::from).collect()
    }

    /// Where this page lies in the whole list.
    #[graphql(name = "pageInfo")]
    async fn page_info_field(&self) -> PageInfo {
        self.page_info()
    }

    /// How many events the whole list holds, ignoring `first`, `last`, `after` and `before`.
    /// Costs one counting query (batched across parents for `children`).
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        match &self.scope {
            Scope::Events(filter) => {
                let app = ctx.data::<Service>()?;
                app.store.count_events(filter).await.map_err(|e| e.extend())
            }
            Scope::Children(parent) => {
                let loader = ctx.data::<Loaders>()?.child_counts();
                let count = loader.load_one(ChildCountKey(*parent)).await.map_err(|e| e.extend())?;
                Ok(count.unwrap_or(0))
            }
        }
    }
}

/// Relay page information.
pub struct PageInfo {
    pub(crate) start_cursor: Option<String>,
    pub(crate) end_cursor: Option<String>,
    pub(crate) previous: Side,
    pub(crate) next: Side,
}

impl PageInfo {
    async fn decide(&self, ctx: &Context<'_>, side: &Side) -> Result<bool> {
        let result = match side {
            Side::Known(known) => return Ok(*known),
            Side::Events { filter, order, beyond } => {
                let app = ctx.data::<Service>()?;
                app.store.exists_beyond(filter, *beyond, *order).await
            }
            Side::Descendants {
                root,
                max_depth,
                cursor,
            } => {
                let app = ctx.data::<Service>()?;
                app.store.descendants_up_to(*root, *max_depth, *cursor).await
            }
            Side::ChildrenUpTo(key) => {
                let loader = ctx.data::<Loaders>()?.children_up_to();
                let found = loader.load_one(*key).await.map_err(|e| e.extend())?;
                return Ok(found.unwrap_or(false));
            }
        };
        result.map_err(|e| e.extend())
    }
}

impl Stored for PageInfo {
    fn stored(&self, name: &str) -> Option<Value> {
        let known = |side: &Side| match side {
            Side::Known(known) => Some(Value::Boolean(*known)),
            _ => None,
        };
        let cursor = |cursor: &Option<String>| cursor.clone().map_or(Value::Null, Value::String);
        match name {
            "hasPreviousPage" => known(&self.previous),
            "hasNextPage" => known(&self.next),
            "startCursor" => Some(cursor(&self.start_cursor)),
            "endCursor" => Some(cursor(&self.end_cursor)),
            _ => None,
        }
    }
}

/// Relay page information.
#[Object]
impl PageInfo {
    /// Whether elements exist before this page. With `last`, decided by the page itself; with
    /// `after`, by checking for elements at or before that cursor (one small query, only when asked).
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn has_previous_page(&self, ctx: &Context<'_>) -> Result<bool> {
        self.decide(ctx, &self.previous).await
    }

    /// Whether elements exist after this page. With `first`, decided by the page itself; with
    /// `before`, by checking for elements at or after that cursor (one small query, only when asked).
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn has_next_page(&self, ctx: &Context<'_>) -> Result<bool> {
        self.decide(ctx, &self.next).await
    }

    /// The cursor of the first edge of this page; null when the page is empty.
    async fn start_cursor(&self) -> Option<&str> {
        self.start_cursor.as_deref()
    }

    /// The cursor of the last edge of this page; null when the page is empty.
    async fn end_cursor(&self) -> Option<&str> {
        self.end_cursor.as_deref()
    }
}
