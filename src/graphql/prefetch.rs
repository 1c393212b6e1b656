//! Fetching the nested `children` of a tree one level at a time, ahead of the resolvers.
//!
//! Dataloaders batch the keys that arrive within a short delay, so how many statements a nested
//! query costs would depend on timing. Instead, the resolver of a top-level connection looks ahead
//! at the selection, fetches each nested level of `children` for all parents of that level in one
//! statement, and feeds the per-request loaders; the `children`, `totalCount` and `childCount`
//! resolvers then find their pages in the cache (as do `hasPreviousPage` of pages after a cursor,
//! and `ancestors`, `root` and `depth`). A query nested d levels deep costs d+1 statements
//! (plus one per requested count), whatever the fan-out. Anything not prefetched (for example a
//! `children` reached through `parent`) still goes through the loaders.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Lookahead, Result, SelectionField, Value};

use super::loaders::{AncestorsKey, ChildCountKey, ChildrenKey, ChildrenUpToKey};
use super::{DEFAULT_PAGE_SIZE, Loaders};
use crate::domain::{EventKey, PageRequest, PageWindow};
use crate::entity::audit_event::Model;
use crate::service::Service;
use crate::store::Columns;

/// The selections that apply to the nodes of a connection: `edges { node { … } }` and `nodes { … }`.
fn node_selections(connection: Lookahead<'_>) -> [Lookahead<'_>; 2] {
    [connection.field("edges").field("node"), connection.field("nodes")]
}

/// Whether nodes ask for their child count, directly or through `children { totalCount }`.
fn wants_counts(node: &Lookahead<'_>) -> bool {
    node.field("childCount").exists() || node.field("children").field("totalCount").exists()
}

/// The page a `children` field asks for; `None` when its arguments are invalid (the resolver
/// then reports the error).
pub(super) fn window_of(field: &SelectionField<'_>) -> Option<PageWindow> {
    let arguments = field.arguments().ok()?;
    let mut request = PageRequest::default();
    for (name, value) in arguments {
        match (name.as_str(), value) {
            ("first", Value::Number(n)) => request.first = Some(i32::try_from(n.as_i64()?).ok()?),
            ("after", Value::String(s)) => request.after = Some(s),
            ("first" | "after", Value::Null) => {}
            _ => return None,
        }
    }
    request.resolve(DEFAULT_PAGE_SIZE).ok()
}

/// Prefetches below the nodes of the connection field being resolved in `ctx`.
pub async fn below_connection(ctx: &Context<'_>, nodes: &[Arc<Model>]) -> Result<()> {
    let keys: Vec<EventKey> = nodes.iter().map(|m| m.key()).collect();
    let work = node_selections(ctx.look_ahead())
        .into_iter()
        .map(|n| (n, keys.clone()))
        .collect();
    prefetch(ctx, work).await
}

/// Prefetches below the single event being resolved in `ctx`.
pub async fn below_event(ctx: &Context<'_>, node: &Model) -> Result<()> {
    prefetch(ctx, vec![(ctx.look_ahead(), vec![node.key()])]).await
}

/// Works through (node selection, parents) pairs level by level: one statement per `children`
/// field per level, one per requested count.
async fn prefetch<'a>(ctx: &'a Context<'_>, mut work: Vec<(Lookahead<'a>, Vec<EventKey>)>) -> Result<()> {
    let app = ctx.data::<Service>()?;
    let loaders = ctx.data::<Loaders>()?;
    while let Some((node, parents)) = work.pop() {
        if parents.is_empty() || !node.exists() {
            continue;
        }
        // Each `ancestors`, `root` and `depth` field (each alias) asks for its own columns; one
        // statement reads them all, and each is fed what it asks for.
        let mut wanted: Vec<Columns> = ["ancestors", "root"]
            .into_iter()
            .flat_map(|name| node.field(name).selection_fields())
            .map(|field| super::columns::of_events([field]))
            .collect();
        if node.field("depth").exists() {
            wanted.push(Columns::keys());
        }
        if let Some(union) = wanted.iter().copied().reduce(Columns::union) {
            wanted.sort_unstable();
            wanted.dedup();
            let found: HashMap<EventKey, Arc<Vec<Arc<Model>>>> = app
                .store
                .ancestors(&parents, union)
                .await
                .map_err(|e| e.extend())?
                .into_iter()
                .map(|(event, path)| (event, Arc::new(path)))
                .collect();
            let paths: Vec<(EventKey, Arc<Vec<Arc<Model>>>)> = parents
                .iter()
                .map(|p| (*p, found.get(p).cloned().unwrap_or_default()))
                .collect();
            for columns in wanted {
                let fed = paths
                    .iter()
                    .map(|(event, path)| (AncestorsKey { event: *event, columns }, path.clone()));
                loaders.ancestors().feed_many(fed).await;
            }
        }
        if wants_counts(&node) {
            let found = app.store.child_counts(&parents).await.map_err(|e| e.extend())?;
            let fed = parents
                .iter()
                .map(|p| (ChildCountKey(*p), found.get(p).copied().unwrap_or(0)));
            loaders.child_counts().feed_many(fed).await;
        }
        for field in node.field("children").selection_fields() {
            let Some(window) = window_of(&field) else { continue };
            let columns = super::columns::of_connection(&Lookahead::from(field));
            let mut pages = app
                .store
                .children_pages(&parents, &window, columns)
                .await
                .map_err(|e| e.extend())?;
            let mut next = Vec::new();
            let mut kept = Vec::with_capacity(parents.len());
            for parent in &parents {
                let rows = pages.remove(parent).unwrap_or_default();
                next.extend(rows.iter().take(window.limit as usize).map(|m| m.key()));
                kept.push((
                    ChildrenKey {
                        parent: *parent,
                        window,
                        columns,
                    },
                    rows,
                ));
            }
            loaders.keep_children(kept);
            if let Some(cursor) = window.after
                && Lookahead::from(field)
                    .field("pageInfo")
                    .field("hasPreviousPage")
                    .exists()
            {
                let found = app
                    .store
                    .children_up_to(&parents, cursor)
                    .await
                    .map_err(|e| e.extend())?;
                let fed = parents
                    .iter()
                    .map(|p| (ChildrenUpToKey { parent: *p, cursor }, found.contains(p)));
                loaders.children_up_to().feed_many(fed).await;
            }
            for below in node_selections(Lookahead::from(field)) {
                work.push((below, next.clone()));
            }
        }
    }
    Ok(())
}
