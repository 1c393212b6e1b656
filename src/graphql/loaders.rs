//! Dataloaders: one per key type, one statement per batch.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{Cursor, EventKey, PageWindow};
use crate::entity::audit_event::Model;
use crate::error::ApiError;
use crate::store::{Columns, Store};

/// An event by primary key, with the columns to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventColumnsKey {
    /// The event.
    pub event: EventKey,
    /// Its columns to read.
    pub columns: Columns,
}

/// A page of an event's descendants, with the columns to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DescendantsKey {
    /// The event whose descendants these are.
    pub root: EventKey,
    /// The page asked for.
    pub page: super::tree::DescendantsPage,
    /// The descendants' columns to read.
    pub columns: Columns,
}

/// Loads events by primary key (parents); keys asking for the same columns share one statement.
pub struct ParentLoader(pub Store);

impl async_graphql::dataloader::Loader<EventColumnsKey> for ParentLoader {
    type Value = Arc<Model>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[EventColumnsKey]) -> Result<HashMap<EventColumnsKey, Arc<Model>>, Self::Error> {
        let mut by_columns: HashMap<Columns, Vec<EventKey>> = HashMap::new();
        for key in keys {
            by_columns.entry(key.columns).or_default().push(key.event);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (columns, events) in by_columns {
            let found = self
                .0
                .events_by_keys(&events, columns)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            out.extend(
                found
                    .into_iter()
                    .map(|(event, model)| (EventColumnsKey { event, columns }, Arc::new(model))),
            );
        }
        Ok(out)
    }
}

/// A page of one parent's children.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChildrenKey {
    /// The parent.
    pub parent: EventKey,
    /// The page asked for.
    pub window: PageWindow,
    /// The children's columns to read.
    pub columns: Columns,
}

/// Loads pages of children; keys asking for the same window and columns share one statement.
pub struct ChildrenLoader(pub Store);

impl async_graphql::dataloader::Loader<ChildrenKey> for ChildrenLoader {
    type Value = Vec<Arc<Model>>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[ChildrenKey]) -> Result<HashMap<ChildrenKey, Vec<Arc<Model>>>, Self::Error> {
        let mut by_window: HashMap<(PageWindow, Columns), Vec<EventKey>> = HashMap::new();
        for key in keys {
            by_window.entry((key.window, key.columns)).or_default().push(key.parent);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for ((window, columns), parents) in by_window {
            let mut pages = self
                .0
                .children_pages(&parents, &window, columns)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            for parent in parents {
                out.insert(
                    ChildrenKey {
                        parent,
                        window,
                        columns,
                    },
                    pages.remove(&parent).unwrap_or_default(),
                );
            }
        }
        Ok(out)
    }
}

/// The number of children of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChildCountKey(pub EventKey);

/// Loads child counts.
pub struct ChildCountLoader(pub Store);

impl async_graphql::dataloader::Loader<ChildCountKey> for ChildCountLoader {
    type Value = u64;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[ChildCountKey]) -> Result<HashMap<ChildCountKey, u64>, Self::Error> {
        let parents: Vec<EventKey> = keys.iter().map(|k| k.0).collect();
        let counts = self.0.child_counts(&parents).await.map_err(|e| Arc::new(e.into()))?;
        Ok(parents
            .into_iter()
            .map(|p| (ChildCountKey(p), counts.get(&p).copied().unwrap_or(0)))
            .collect())
    }
}

/// The ancestors of an event, root first, with the columns to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AncestorsKey {
    /// The event whose ancestors are wanted.
    pub event: EventKey,
    /// The ancestors' columns to read.
    pub columns: Columns,
}

/// Loads ancestor paths: one recursive statement for all the events of a batch that ask for the
/// same columns.
pub struct AncestorsLoader(pub Store);

impl async_graphql::dataloader::Loader<AncestorsKey> for AncestorsLoader {
    type Value = Arc<Vec<Arc<Model>>>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[AncestorsKey]) -> Result<HashMap<AncestorsKey, Self::Value>, Self::Error> {
        let mut by_columns: HashMap<Columns, Vec<EventKey>> = HashMap::new();
        for key in keys {
            by_columns.entry(key.columns).or_default().push(key.event);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (columns, events) in by_columns {
            let mut found = self
                .0
                .ancestors(&events, columns)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            out.extend(events.into_iter().map(|event| {
                let path = Arc::new(found.remove(&event).unwrap_or_default());
                (AncestorsKey { event, columns }, path)
            }));
        }
        Ok(out)
    }
}

/// Whether a parent has children at or before a cursor (oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChildrenUpToKey {
    /// The parent.
    pub parent: EventKey,
    /// The `after` cursor of a children page.
    pub cursor: Cursor,
}

/// Loads `hasPreviousPage` of children pages; keys with the same cursor share one statement.
pub struct ChildrenUpToLoader(pub Store);

impl async_graphql::dataloader::Loader<ChildrenUpToKey> for ChildrenUpToLoader {
    type Value = bool;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[ChildrenUpToKey]) -> Result<HashMap<ChildrenUpToKey, bool>, Self::Error> {
        let mut by_cursor: HashMap<Cursor, Vec<EventKey>> = HashMap::new();
        for key in keys {
            by_cursor.entry(key.cursor).or_default().push(key.parent);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (cursor, parents) in by_cursor {
            let found = self
                .0
                .children_up_to(&parents, cursor)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            for parent in parents {
                out.insert(ChildrenUpToKey { parent, cursor }, found.contains(&parent));
            }
        }
        Ok(out)
    }
}

/// Rows as the GraphQL objects share them: each event read once, never copied.
pub fn shared(rows: Vec<Model>) -> Vec<Arc<Model>> {
    rows.into_iter().map(Arc::new).collect()
}
