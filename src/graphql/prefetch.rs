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

use uuid::Uuid;

use super::loaders::{AncestorsKey, ChildCountKey, ChildrenKey, ChildrenUpToKey, DescendantsKey};
use super::tree::DescendantsPage;
use super::{DEFAULT_PAGE_SIZE, Loaders};
use crate::domain::{EventKey, PageRequest, PageWindow};
use crate::entity::audit_event::Model;
use crate::service::Service;
use crate::store::{AncestorPath, Columns};

/// The selections that apply to the nodes of a connection: `edges { node { … } }` and `nodes { … }`.
fn node_selections(connection: Lookahead<'_>) -> [Lookahead<'_>; 2] {
    [connection.field("edges").field("node"), connection.field("nodes")]
}

/// Whether nodes ask for their child count, directly or through `children { totalCount }`.
fn wants_counts(node: &Lookahead<'_>) -> bool {
    node.field("childCount").exists() || node.field("children").field("totalCount").exists()
}

/// The paging arguments a field was given.
#[derive(Default)]
struct PageArguments {
    first: Option<i32>,
    after: Option<String>,
    max_depth: Option<i32>,
}

/// The arguments of `field`, of which it takes those `allowed` (among `first`, `after` and
/// `maxDepth`); `None` when one is not of its type or not allowed (the resolver then reports the
/// error).
fn page_arguments(field: &SelectionField<'_>, allowed: &[&str]) -> Option<PageArguments> {
    let mut found = PageArguments::default();
    for (name, value) in field.arguments().ok()? {
        if !allowed.contains(&name.as_str()) {
            return None;
        }
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("first", Value::Number(n)) => found.first = Some(i32::try_from(n.as_i64()?).ok()?),
            ("maxDepth", Value::Number(n)) => found.max_depth = Some(i32::try_from(n.as_i64()?).ok()?),
            ("after", Value::String(s)) => found.after = Some(s),
            _ => return None,
        }
    }
    Some(found)
}

/// The page a `children` field asks for; `None` when its arguments are invalid (the resolver
/// then reports the error).
pub(super) fn window_of(field: &SelectionField<'_>) -> Option<PageWindow> {
    let PageArguments { first, after, .. } = page_arguments(field, &["first", "after"])?;
    PageRequest {
        first,
        after,
        ..PageRequest::default()
    }
    .resolve(DEFAULT_PAGE_SIZE)
    .ok()
}

/// Whether `@skip` and `@include` on `field` let it through. A field whose directives cannot be
/// read counts as included: fetching ahead for it is then at worst wasted.
fn included(field: &SelectionField<'_>) -> bool {
    let Ok(directives) = field.directives() else {
        return true;
    };
    directives.iter().all(|directive| {
        let condition = directive
            .arguments
            .iter()
            .find(|(name, _)| name.node == "if")
            .map(|(_, value)| value.node == Value::Boolean(true));
        super::order::lets_through(directive.name.node.as_str(), condition)
    })
}

/// Prefetches below the nodes of the connection field being resolved in `ctx`.
pub async fn below_connection(ctx: &Context<'_>, nodes: &[Arc<Model>]) -> Result<()> {
    let keys: Vec<EventKey> = nodes.iter().map(|m| m.key()).collect();
    let work = node_selections(ctx.look_ahead())
        .into_iter()
        .map(|n| (n, keys.clone()))
        .collect();
    prefetch(ctx, work, false).await
}

/// The page a `descendants` field asks for; `None` when its arguments are invalid (the
/// resolver then reports the error).
fn descendants_page_of(field: &SelectionField<'_>) -> Option<DescendantsPage> {
    let PageArguments {
        first,
        after,
        max_depth,
    } = page_arguments(field, &["maxDepth", "first", "after"])?;
    DescendantsPage::of(max_depth, first, after).ok()
}

/// The columns each `ancestors`, `root` and `depth` field of `node` (each alias) asks for,
/// without repeats; empty when none is selected. One statement reads their union, and each is fed
/// what it asks for.
fn ancestor_columns(node: &Lookahead<'_>) -> Vec<Columns> {
    let mut wanted: Vec<Columns> = ["ancestors", "root"]
        .into_iter()
        .flat_map(|name| node.field(name).selection_fields())
        .filter(included)
        .map(|field| super::columns::of_events([field]))
        .collect();
    if node.field("depth").exists() {
        wanted.push(Columns::keys());
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Feeds the ancestor paths of `paths` to the loader, once for each set of columns `wanted`.
async fn feed_ancestors(loaders: &Loaders, paths: &[(EventKey, Arc<AncestorPath>)], wanted: &[Columns]) {
    for columns in wanted {
        let fed = paths.iter().map(|(event, path)| {
            (
                AncestorsKey {
                    event: *event,
                    columns: *columns,
                },
                path.clone(),
            )
        });
        loaders.ancestors().feed_many(fed).await;
    }
}

/// The event with this id, read with `columns` (the newest copy, as
/// [`crate::store::Store::find_event`] gives it), with what its selection asks for below it
/// fetched ahead. A walk it asks for, the first included `descendants` field with valid arguments
/// or else its `ancestors`, `root` and `depth`, is read in the same statement as the event
/// itself: a walk from `auditEvent(eventId)` then costs one statement, not a lookup and then the
/// walk. Every row of that statement has the same columns, so this is done only when the walk
/// reads every column the event shows (as when the event shows nothing but the walk); an event
/// that shows more (its `eventData`, say) is read on its own, so that the walk's rows do not all
/// carry what only it shows. A walk read with the event that fails fails `auditEvent` itself (the
/// error's path then ends there).
pub async fn event_by_id(ctx: &Context<'_>, id: Uuid, columns: Columns) -> Result<Option<Model>> {
    let app = ctx.data::<Service>()?;
    let loaders = ctx.data::<Loaders>()?;
    let node = ctx.look_ahead();
    let descendants = node
        .field("descendants")
        .selection_fields()
        .into_iter()
        .filter(included)
        .find_map(|field| {
            let page = descendants_page_of(&field)?;
            let page_columns = super::columns::of_connection(&Lookahead::from(field));
            page_columns.covers(columns).then_some((page, page_columns))
        });
    let wanted = ancestor_columns(&node);
    let walked = wanted.iter().fold(Columns::keys(), |all, c| all.union(*c));
    let (event, ancestors_fed) = match descendants {
        Some((page, page_columns)) if loaders.caches() => {
            let found = app
                .store
                .event_and_descendants(id, page.max_depth, page.after, page.window.fetch(), page_columns)
                .await
                .map_err(|e| e.extend())?;
            let Some((event, nodes)) = found else { return Ok(None) };
            let key = DescendantsKey {
                root: event.key(),
                page,
                columns: page_columns,
            };
            loaders.keep_descendants(key, nodes);
            (event, false)
        }
        _ if !wanted.is_empty() && walked.covers(columns) && loaders.caches() => {
            let found = app
                .store
                .event_and_ancestors(id, walked)
                .await
                .map_err(|e| e.extend())?;
            let Some((event, path)) = found else { return Ok(None) };
            feed_ancestors(loaders, &[(event.key(), Arc::new(path))], &wanted).await;
            (event, true)
        }
        _ => match app.store.find_event(id, columns).await.map_err(|e| e.extend())? {
            Some(event) => (event, false),
            None => return Ok(None),
        },
    };
    prefetch(ctx, vec![(node, vec![event.key()])], ancestors_fed).await?;
    Ok(Some(event))
}

/// Works through (node selection, parents) pairs level by level: one statement per `children`
/// field per level, one per requested count; the first pair's ancestors not when they were
/// `fed` already.
async fn prefetch<'a>(
    ctx: &'a Context<'_>,
    mut work: Vec<(Lookahead<'a>, Vec<EventKey>)>,
    mut fed: bool,
) -> Result<()> {
    let app = ctx.data::<Service>()?;
    let loaders = ctx.data::<Loaders>()?;
    while let Some((node, parents)) = work.pop() {
        let ancestors_fed = std::mem::take(&mut fed);
        if parents.is_empty() || !node.exists() {
            continue;
        }
        let wanted = ancestor_columns(&node);
        if let Some(union) = wanted.iter().copied().reduce(Columns::union)
            && !ancestors_fed
        {
            let found: HashMap<EventKey, Arc<AncestorPath>> = app
                .store
                .ancestors(&parents, union)
                .await
                .map_err(|e| e.extend())?
                .into_iter()
                .map(|(event, path)| (event, Arc::new(path)))
                .collect();
            let paths: Vec<(EventKey, Arc<AncestorPath>)> = parents
                .iter()
                .map(|p| (*p, found.get(p).cloned().unwrap_or_default()))
                .collect();
            feed_ancestors(loaders, &paths, &wanted).await;
        }
        if wants_counts(&node) {
            let found = app.store.child_counts(&parents).await.map_err(|e| e.extend())?;
            let fed = parents
                .iter()
                .map(|p| (ChildCountKey(*p), found.get(p).copied().unwrap_or(0)));
            loaders.child_counts().feed_many(fed).await;
        }
        for field in node.field("children").selection_fields().into_iter().filter(included) {
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
