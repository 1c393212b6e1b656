//! The GraphQL API: schema root, types, loaders and limits.

mod chain;
mod columns;
mod connection;
mod direct;
mod event;
mod input;
pub mod json;
mod lifecycle;
pub mod limits;
mod loaders;
mod log;
mod mutation;
mod node;
pub mod order;
mod prefetch;
mod query;
mod scalars;
mod subscription;
mod tree;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_graphql::Schema;
use async_graphql::dataloader::{DataLoader, HashMapCache};

pub use chain::{ChainBreak, ChainBreakKind, ChainVerification};
pub use connection::{AuditEventConnection, AuditEventEdge, PageInfo};
pub use direct::WriteAhead;
pub use event::{AuditEvent, AuditEventList};
pub use input::{AuditEventFilter, AuditEventInput};
pub use lifecycle::{LegalHold, LegalHoldPlaced, LegalHoldReleased, RetentionRun, RetentionRunStatus};
pub use log::{ConsistencyProof, InclusionProof, LogCheckpoint};
pub use mutation::MutationRoot;
pub use node::Node;
pub use query::QueryRoot;
pub use scalars::{Date, DateTime, Json};
pub use subscription::{AuditEventAdded, CausalityTreeChange, SubscriptionRoot};
pub use tree::{
    AuditEventCount, AuditEventDescendantConnection, AuditEventDescendantEdge, AuditEventGroupBy, CausalityTree,
    CausalityTreeNode,
};

use crate::auth::{Principal, Role};
use crate::entity::audit_event::Model;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::{Store, TreeNode};

/// The auditgraph schema.
pub type AuditSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Limits on what a single GraphQL operation may ask for.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    /// Deepest selection set allowed.
    pub max_depth: usize,
    /// Largest complexity allowed; list fields multiply their children by the page size.
    pub max_complexity: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_complexity: 250_000,
        }
    }
}

/// Complexity of a field that runs a statement of its own (a page, a count, a lookup): the cost
/// model counts database work, so a request's complexity limit also bounds its statements.
pub const STATEMENT_COST: usize = 1_000;

/// Complexity of a recursive walk (descendants, their count, a causality tree).
pub const WALK_COST: usize = 5_000;

/// Complexity of a field answered by a batched statement per nesting level (however many events
/// the level holds), or by a probe that often needs no statement at all.
pub const BATCHED_COST: usize = 10;

/// Page size when a client gives neither `first` nor `last`.
pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// The complexity of a paginated field: the page size times what each element costs.
pub fn page_cost(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first
        .or(last)
        .map_or(DEFAULT_PAGE_SIZE as usize, |n| n.clamp(0, 1000) as usize);
    1 + size.max(1) * child_complexity
}

fn builder(limits: QueryLimits) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_directives(8)
}

/// The schema wired to a store: what the server and the tests run. Every request must go through
/// [`prepare_request`] to get its dataloaders.
pub fn build_schema(ctx: Service, limits: QueryLimits, introspection: bool) -> AuditSchema {
    let builder = builder(limits).data(ctx);
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// Loaders cache per request: what one request loaded never leaks into another, and a level of a
/// tree fetched ahead of time (see `prefetch`) is served from the cache.
type Loader<T> = DataLoader<T, HashMapCache>;

fn loader<T>(inner: T, cache: bool) -> Loader<T>
where
    T: Send + Sync + 'static,
{
    let loader = DataLoader::with_cache(inner, tokio::spawn, HashMapCache::default()).max_batch_size(500);
    loader.enable_all_cache(cache);
    loader
}

/// What was fetched ahead of the resolvers (see `prefetch`), by the key the field that will ask
/// for it computes.
struct Kept<K, V>(Mutex<HashMap<K, V, foldhash::fast::RandomState>>);

impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> Kept<K, V> {
    fn keep(&self, entries: impl IntoIterator<Item = (K, V)>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend(entries);
    }

    fn get(&self, key: &K) -> Option<V> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }
}

/// The dataloaders of one request, each made when a resolver first needs it: most requests (a
/// page, a write) need none.
pub struct Loaders {
    store: Store,
    cache: bool,
    parent: OnceLock<Loader<loaders::ParentLoader>>,
    children: OnceLock<Loader<loaders::ChildrenLoader>>,
    child_counts: OnceLock<Loader<loaders::ChildCountLoader>>,
    ancestors: OnceLock<Loader<loaders::AncestorsLoader>>,
    children_up_to: OnceLock<Loader<loaders::ChildrenUpToLoader>>,
    /// Pages of children fetched ahead of the resolvers, by the key their `children` field asks
    /// for.
    prefetched_children: Kept<loaders::ChildrenKey, Vec<Arc<Model>>>,
    /// Pages of descendants read with the event they start from (see `prefetch::event_by_id`),
    /// by the key their `descendants` field asks for.
    prefetched_descendants: Kept<loaders::DescendantsKey, Vec<TreeNode>>,
}

impl Loaders {
    fn new(store: &Store, cache: bool) -> Self {
        Self {
            store: store.clone(),
            cache,
            parent: OnceLock::new(),
            children: OnceLock::new(),
            child_counts: OnceLock::new(),
            ancestors: OnceLock::new(),
            children_up_to: OnceLock::new(),
            prefetched_children: Kept::default(),
            prefetched_descendants: Kept::default(),
        }
    }

    /// Whether what is fetched ahead is kept for the resolvers: not in a live operation, which
    /// reads afresh.
    pub fn caches(&self) -> bool {
        self.cache
    }

    /// Keeps pages of children fetched ahead for the `children` fields that will ask for them
    /// (nothing when the loaders do not cache).
    pub fn keep_children(&self, pages: impl IntoIterator<Item = (loaders::ChildrenKey, Vec<Arc<Model>>)>) {
        if self.cache {
            self.prefetched_children.keep(pages);
        }
    }

    /// A page of children fetched ahead, when one was for `key`.
    pub fn prefetched_children(&self, key: &loaders::ChildrenKey) -> Option<Vec<Arc<Model>>> {
        self.prefetched_children.get(key)
    }

    /// Keeps a page of descendants read ahead for the `descendants` field that will ask for it
    /// (nothing when the loaders do not cache).
    pub fn keep_descendants(&self, key: loaders::DescendantsKey, nodes: Vec<TreeNode>) {
        if self.cache {
            self.prefetched_descendants.keep([(key, nodes)]);
        }
    }

    /// A page of descendants read ahead, when one was for `key`.
    pub fn prefetched_descendants(&self, key: &loaders::DescendantsKey) -> Option<Vec<TreeNode>> {
        self.prefetched_descendants.get(key)
    }

    /// The loader in `cell`, made by `make` the first time.
    fn made<'a, T>(&self, cell: &'a OnceLock<Loader<T>>, make: fn(Store) -> T) -> &'a Loader<T>
    where
        T: Send + Sync + 'static,
    {
        cell.get_or_init(|| loader(make(self.store.clone()), self.cache))
    }

    /// Events by key (parents).
    pub fn parent(&self) -> &Loader<loaders::ParentLoader> {
        self.made(&self.parent, loaders::ParentLoader)
    }

    /// Pages of children.
    pub fn children(&self) -> &Loader<loaders::ChildrenLoader> {
        self.made(&self.children, loaders::ChildrenLoader)
    }

    /// Child counts.
    pub fn child_counts(&self) -> &Loader<loaders::ChildCountLoader> {
        self.made(&self.child_counts, loaders::ChildCountLoader)
    }

    /// Ancestor paths.
    pub fn ancestors(&self) -> &Loader<loaders::AncestorsLoader> {
        self.made(&self.ancestors, loaders::AncestorsLoader)
    }

    /// `hasPreviousPage` of children pages after a cursor.
    pub fn children_up_to(&self) -> &Loader<loaders::ChildrenUpToLoader> {
        self.made(&self.children_up_to, loaders::ChildrenUpToLoader)
    }
}

/// Attaches the per-request dataloaders to a request.
pub fn prepare_request(request: async_graphql::Request, store: &Store) -> async_graphql::Request {
    with_loaders(request, store, true)
}

/// Prepares an operation of a live connection: dataloaders that do not cache (a subscription
/// lives for hours, and its messages must see children added since the last one), the
/// connection its subscriptions count against, and the caller.
pub fn prepare_stream(
    request: async_graphql::Request,
    store: &Store,
    connection: std::sync::Arc<crate::live::LiveConnection>,
    caller: Option<Principal>,
) -> async_graphql::Request {
    let request = with_loaders(request, store, false).data(connection);
    match caller {
        Some(caller) => request.data(caller),
        None => request,
    }
}

fn with_loaders(mut request: async_graphql::Request, store: &Store, cache: bool) -> async_graphql::Request {
    request.data.insert(Loaders::new(store, cache));
    request.data.insert(limits::RootTurns::default());
    request
}

/// The operation a request runs: the one named, or the only one.
pub fn chosen_operation<'a>(
    document: &'a async_graphql::parser::types::ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>> {
    match name {
        Some(name) => document
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| op),
        None => document.operations.iter().next().map(|(_, op)| op),
    }
}

/// Whether the operation a request runs selects the root field `name` (directly, or through
/// fragments at the root).
pub fn selects_root_field(
    document: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
    name: &str,
) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn selects(
        document: &async_graphql::parser::types::ExecutableDocument,
        set: &SelectionSet,
        name: &str,
        visited: &mut Vec<String>,
    ) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => field.node.name.node.as_str() == name,
            Selection::InlineFragment(fragment) => selects(document, &fragment.node.selection_set.node, name, visited),
            Selection::FragmentSpread(spread) => {
                let fragment = spread.node.fragment_name.node.as_str();
                if visited.iter().any(|seen| seen == fragment) {
                    return false;
                }
                visited.push(fragment.to_string());
                document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|definition| selects(document, &definition.node.selection_set.node, name, visited))
            }
        })
    }
    chosen_operation(document, operation_name)
        .is_some_and(|operation| selects(document, &operation.node.selection_set.node, name, &mut Vec::new()))
}

/// The authenticated caller of a request, attached by the HTTP layer. A request without one is
/// refused: no path may reach the data without having been authenticated.
pub fn caller<'a>(ctx: &async_graphql::Context<'a>) -> async_graphql::Result<&'a Principal> {
    use async_graphql::ErrorExtensions;
    ctx.data_opt::<Principal>()
        .ok_or_else(|| ApiError::unauthenticated().extend())
}

/// Admits a field only to callers holding at least its role (`FORBIDDEN` otherwise). Every root
/// query field carries `RoleGuard(Role::Reader)`; the mutations check in the service.
pub struct RoleGuard(pub Role);

impl async_graphql::Guard for RoleGuard {
    async fn check(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<()> {
        use async_graphql::ErrorExtensions;
        let caller = caller(ctx)?;
        let service = ctx.data::<Service>()?;
        service.authorize(caller, self.0).map_err(|e| e.extend())
    }
}

/// The SDL of the schema; needs no database.
pub fn sdl() -> String {
    builder(QueryLimits::default()).finish().sdl()
}
