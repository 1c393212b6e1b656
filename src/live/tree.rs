//! Placing new events in a watched causality tree: whether each belongs to it, at what depth,
//! under which parent, by the rules of the `causalityTree` query: a correlation's tree holds its
//! events, an event whose parent lies in another correlation is one of its roots, and a legacy
//! link without the parent's date (see `backfill-parent-dates`) is no link at all.
//!
//! Most new events hang below events seen a moment earlier, so a subscription remembers the depth
//! (or the absence) of the events it has placed, and asks the database (one walk up the ancestors)
//! only for an event whose parent it has not seen: a parent older than the subscription. The
//! memory is bounded; past it, it is dropped and rebuilt the same way.

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::EventKey;
use crate::entity::audit_event::Model;
use crate::store::{Store, StoreError};

/// Events whose placement a subscription remembers before it starts afresh.
const REMEMBERED: usize = 10_000;

/// Where an event goes in the watched tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its depth: from the tree's root event (0) for a correlation's tree, from the watched
    /// event (0) for the tree below an event.
    pub depth: u32,
    /// Its parent in the tree (none for a root).
    pub parent: Option<Uuid>,
}

/// Which tree a subscription watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeRoot {
    /// The events of one correlation.
    Correlation(String),
    /// The events below one event.
    Below(EventKey),
}

/// A watched tree and what the subscription knows of it.
#[derive(Debug)]
pub struct TreeScope {
    root: TreeRoot,
    /// Depth of each event placed (in the tree's terms), or `None` for one known to be outside.
    known: HashMap<Uuid, Option<u32>>,
}

impl TreeScope {
    /// Watches `root`.
    pub fn new(root: TreeRoot) -> Self {
        let mut scope = Self {
            root,
            known: HashMap::new(),
        };
        scope.forget();
        scope
    }

    /// Drops what the scope remembers (its capacity too), but the watched event.
    fn forget(&mut self) {
        self.known = HashMap::new();
        if let TreeRoot::Below(key) = &self.root {
            self.known.insert(key.id, Some(0));
        }
    }

    /// Where `event` goes in the tree, or `None` when it is not part of it.
    pub async fn place(&mut self, store: &Store, event: &Model) -> Result<Option<Placement>, StoreError> {
        let parent = event.parent_event_id.filter(|_| event.parent_event_date.is_some());
        let placement = match &self.root {
            TreeRoot::Correlation(correlation) => {
                if &event.correlation_id != correlation {
                    return Ok(None);
                }
                // The parent counts when it belongs to the same correlation; remembered events
                // all do.
                match parent {
                    None => Some(Placement { depth: 0, parent: None }),
                    Some(id) => match self.known.get(&id) {
                        Some(Some(depth)) => Some(Placement {
                            depth: depth + 1,
                            parent: Some(id),
                        }),
                        _ => Some(self.ask_in_correlation(store, event, correlation.clone()).await?),
                    },
                }
            }
            TreeRoot::Below(root) => {
                if root.id == event.event_id {
                    return Ok(None);
                }
                let root = *root;
                match parent {
                    None => None,
                    Some(id) => match self.known.get(&id) {
                        Some(known) => known.map(|depth| Placement {
                            depth: depth + 1,
                            parent: Some(id),
                        }),
                        None => self.ask_below(store, event, root).await?,
                    },
                }
            }
        };
        if self.known.len() >= REMEMBERED {
            self.forget();
        }
        self.known.insert(event.event_id, placement.map(|p| p.depth));
        Ok(placement)
    }

    /// The ancestors of an event, root first, along links that have the parent's date.
    async fn ancestors(store: &Store, event: &Model) -> Result<Vec<std::sync::Arc<Model>>, StoreError> {
        let key = event.key();
        Ok(store
            .ancestors(&[key], crate::store::Columns::ALL)
            .await?
            .remove(&key)
            .unwrap_or_default())
    }

    /// The depth of an event in its correlation's tree: how many of its nearest ancestors belong
    /// to the correlation without a break.
    async fn ask_in_correlation(
        &mut self,
        store: &Store,
        event: &Model,
        correlation: String,
    ) -> Result<Placement, StoreError> {
        let path = Self::ancestors(store, event).await?;
        let inside = path
            .iter()
            .rev()
            .take_while(|ancestor| ancestor.correlation_id == correlation)
            .count();
        let depth = u32::try_from(inside).unwrap_or(u32::MAX);
        let parent = path.last().filter(|_| inside > 0).map(|p| p.event_id);
        if let Some(parent) = parent {
            self.known.insert(parent, Some(depth - 1));
        }
        Ok(Placement { depth, parent })
    }

    /// The placement of an event below `root`, from its ancestors.
    async fn ask_below(
        &mut self,
        store: &Store,
        event: &Model,
        root: EventKey,
    ) -> Result<Option<Placement>, StoreError> {
        let path = Self::ancestors(store, event).await?;
        let at = path
            .iter()
            .position(|ancestor| ancestor.event_id == root.id && ancestor.event_date == root.date);
        let depth = at.map(|at| u32::try_from(path.len() - at).unwrap_or(u32::MAX));
        if let Some(parent) = path.last() {
            self.known.insert(parent.event_id, depth.map(|d| d - 1));
        }
        Ok(depth.map(|depth| Placement {
            depth,
            parent: path.last().map(|p| p.event_id),
        }))
    }
}
