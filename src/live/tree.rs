//! Placing new events in a watched causality tree: whether each belongs to it, at what depth,
//! under which parent.
//!
//! Most new events hang below events seen a moment earlier, so a subscription remembers the depth
//! (or the absence) of every event it has placed, and asks the database (one walk up the
//! ancestors) only for an event whose parent it has not seen: a parent older than the
//! subscription. The memory is bounded; past it, it is forgotten and rebuilt the same way.

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::EventKey;
use crate::entity::audit_event::Model;
use crate::store::{Store, StoreError};

/// Events whose placement a subscription remembers before it starts afresh.
const REMEMBERED: usize = 100_000;

/// Where an event goes in the watched tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its depth: from the tree's root event (0) for a correlation's tree, from the watched
    /// event (0) for the tree below an event.
    pub depth: u32,
    /// Its parent (none for a root).
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
        let mut known = HashMap::new();
        if let TreeRoot::Below(key) = &root {
            known.insert(key.id, Some(0));
        }
        Self { root, known }
    }

    /// Where `event` goes in the tree, or `None` when it is not part of it.
    pub async fn place(&mut self, store: &Store, event: &Model) -> Result<Option<Placement>, StoreError> {
        if let TreeRoot::Correlation(correlation) = &self.root
            && &event.correlation_id != correlation
        {
            return Ok(None);
        }
        if let TreeRoot::Below(root) = &self.root
            && root.id == event.event_id
        {
            return Ok(None);
        }
        let depth = match event.parent_event_id {
            None => match self.root {
                TreeRoot::Correlation(_) => Some(0),
                TreeRoot::Below(_) => None,
            },
            Some(parent) => match self.known.get(&parent) {
                Some(known) => known.map(|d| d + 1),
                None => self.ask(store, event).await?,
            },
        };
        if self.known.len() >= REMEMBERED {
            self.known.clear();
            if let TreeRoot::Below(key) = &self.root {
                self.known.insert(key.id, Some(0));
            }
        }
        self.known.insert(event.event_id, depth);
        Ok(depth.map(|depth| Placement {
            depth,
            parent: event.parent_event_id,
        }))
    }

    /// The depth of an event whose parent is unknown, from its ancestors.
    async fn ask(&mut self, store: &Store, event: &Model) -> Result<Option<u32>, StoreError> {
        let key = event.key();
        let path = store.ancestors(&[key]).await?.remove(&key).unwrap_or_default();
        let depth = match &self.root {
            // Root first: the event's depth is the number of its ancestors.
            TreeRoot::Correlation(_) => Some(u32::try_from(path.len()).unwrap_or(u32::MAX)),
            TreeRoot::Below(root) => path
                .iter()
                .position(|ancestor| ancestor.event_id == root.id && ancestor.event_date == root.date)
                .map(|at| u32::try_from(path.len() - at).unwrap_or(u32::MAX)),
        };
        if let Some(parent) = event.parent_event_id {
            self.known.insert(parent, depth.and_then(|d| d.checked_sub(1)));
        }
        Ok(depth)
    }
}
