//! Tree queries: ancestors, descendants, whole trees, grouped counts.
//!
//! Each walk is one recursive SQL statement (`WITH RECURSIVE`), never a loop in Rust.
//!
//! Why the statements are shaped as they are, on partitioned PostgreSQL:
//! - Upwards, every step joins on the parent's full key `(event_id, event_date)`. `event_date` is
//!   the partition key, so the start rows are pruned at plan time (constant dates) and each
//!   recursive step is pruned at run time (the join parameters name one partition), instead of
//!   probing every partition's primary key once per ancestor.
//! - Downwards, a child's own `event_date` is not fixed by its parent's key, but it is bounded
//!   below: the schema guarantees it is at most one day before the parent's date
//!   (`chk_child_not_before_parent_day`). Every step states that bound on the partition key
//!   (`c.event_date >= parent date - 1`), so PostgreSQL prunes, at run time, every partition older
//!   than the day before each parent; the partitions left are probed through their share of the
//!   partial parent-lookup index (BR-STORAGE-036), never scanned. Newer partitions cannot be
//!   excluded (a child may come weeks after its cause).
//! - Only complete links (parent date set, enforced by the foreign key) are followed; legacy rows
//!   without a parent date are not linked until `backfill-parent-dates` completes them.
//! - Whole trees are read with an outer `LIMIT` and no `ORDER BY`, so that both engines stop the
//!   recursion as soon as `maxNodes + 1` rows exist (PostgreSQL evaluates a recursive CTE only as
//!   far as its reader fetches; SQLite's queue does the same). The recursion goes one level past
//!   `maxDepth` only to tell whether the depth bound cut the tree. Both engines produce recursive
//!   rows level by level, so the rows kept are the shallowest ones; they are ordered in Rust.
//! - `descendants` pages need a total order `(depth, event_timestamp, event_id)` for their keyset,
//!   so they sort the levels of the subtree down to the one that holds the page's last row (found
//!   by reading the walk only that far); on PostgreSQL the tree timeout ends a level too large to
//!   sort in time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use sea_orm::{
    ColumnTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryResult, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::read::condition;
use super::{Columns, Store, StoreError};
use crate::domain::tree::{ANCESTOR_GUARD, GroupBy, TreeBounds};
use crate::domain::{EventFilter, EventKey, TreeCursor};
use crate::entity::audit_event::{Column, Entity, Model};

/// An event in a tree, with its distance from the tree's root.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeNode {
    /// The event.
    pub event: Arc<Model>,
    /// 0 for a root of the tree.
    pub depth: u32,
}

/// An event's ancestors, root first, parent last.
pub type AncestorPath = Vec<Arc<Model>>;

/// A causality tree read with bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tree {
    /// The nodes, breadth-first: by depth, then `event_timestamp`, then `event_id`.
    pub nodes: Vec<TreeNode>,
    /// Whether `maxDepth` or `maxNodes` left events out.
    pub truncated: bool,
    /// Events of the tree whose parent is not in the store (legacy or imported data).
    pub missing_parent_event_ids: Vec<Uuid>,
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_timeout(error: &DbErr) -> bool {
    let (DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    matches!(&**e, sea_orm::sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

fn depth_of(row: &QueryResult, column: &str) -> Result<u32, DbErr> {
    let depth: i64 = row.try_get("", column)?;
    Ok(u32::try_from(depth).unwrap_or(u32::MAX))
}

/// An ancestor's row: its distance from the starting event and the event behind its `Arc`
/// (so that sorting and handing the path on move pointers, not large events).
fn hop_of(row: &QueryResult, columns: Columns) -> Result<(u32, Arc<Model>), DbErr> {
    Ok((depth_of(row, "hops")?, Arc::new(super::columns::decode(row, columns)?)))
}

/// Ancestors with their distance, in any order, as a path: root first, parent last.
fn root_first(mut hops: Vec<(u32, Arc<Model>)>) -> AncestorPath {
    hops.sort_by_key(|(hops, _)| std::cmp::Reverse(*hops));
    hops.into_iter().map(|(_, event)| event).collect()
}

/// Rows of a recursive walk with their depth, breadth-first.
fn nodes_of(rows: Vec<QueryResult>, columns: Columns) -> Result<Vec<TreeNode>, DbErr> {
    let mut nodes = rows
        .iter()
        .map(|row| {
            Ok(TreeNode {
                event: Arc::new(super::columns::decode(row, columns)?),
                depth: depth_of(row, "depth")?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    nodes.sort_by(|a, b| {
        (a.depth, a.event.event_timestamp, a.event.event_id).cmp(&(b.depth, b.event.event_timestamp, b.event.event_id))
    });
    Ok(nodes)
}

/// The day before a date expression: the earliest `event_date` a child of it can have
/// (`chk_child_not_before_parent_day`). Comparing the partition key with it lets PostgreSQL skip
/// older partitions, at plan time for constants and at run time inside recursive joins.
fn day_before(backend: DatabaseBackend, date: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => format!("date({date}, '-1 day')"),
        _ => format!("({date} - 1)"),
    }
}

/// Where a walk starts: an event's key, or an id whose newest copy (the event
/// [`Store::find_event`] gives) the walk's statement looks up itself, so that a walk from
/// `auditEvent(eventId)` costs one statement, not a lookup and then the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStart {
    /// The event with this key.
    Key(EventKey),
    /// The newest copy of the event with this id; the statement also returns that event.
    Id(Uuid),
}

impl WalkStart {
    /// The statement's first parameters: the key's two, or the id.
    fn values(self) -> Vec<Value> {
        match self {
            Self::Key(key) => vec![key.id.into(), key.date.into()],
            Self::Id(id) => vec![id.into()],
        }
    }

    /// `start AS (…)`: the newest copy of the id `$1` with its `columns`, the lookup of
    /// [`Store::find_event`], followed by a comma; nothing for a key.
    fn cte(self, columns: Columns) -> String {
        match self {
            Self::Key(_) => String::new(),
            Self::Id(_) => format!(
                "start AS (SELECT {} FROM audit_events s WHERE s.event_id = $1 ORDER BY s.event_date DESC LIMIT 1), ",
                columns.select_list("s")
            ),
        }
    }

    /// The `FROM` and `WHERE` of a walk's first step: the children `c` of the start.
    fn children(self, backend: DatabaseBackend) -> String {
        match self {
            Self::Key(_) => format!(
                "FROM audit_events c WHERE c.parent_event_id = $1 AND c.parent_event_date = $2 AND c.event_date >= {}",
                day_before(backend, "$2")
            ),
            Self::Id(_) => format!(
                "FROM start JOIN audit_events c ON c.parent_event_id = start.event_id \
                 AND c.parent_event_date = start.event_date AND c.event_date >= {}",
                day_before(backend, "start.event_date")
            ),
        }
    }
}

/// The descendants of `start` (depth ≥ 1) down to the level in parameter `$max_depth_param` and
/// below `also`, as a recursive CTE named `name` (without `WITH RECURSIVE`), with their `columns`.
fn descendants_walk(
    backend: DatabaseBackend,
    start: WalkStart,
    name: &str,
    max_depth_param: usize,
    also: &str,
    columns: Columns,
) -> String {
    let list = columns.select_list("c");
    format!(
        "{name} AS ( \
             SELECT {list}, CAST(1 AS BIGINT) AS depth {} \
           UNION ALL \
             SELECT {list}, {name}.depth + 1 FROM {name} \
             JOIN audit_events c ON c.parent_event_id = {name}.event_id AND c.parent_event_date = {name}.event_date \
               AND c.event_date >= {} \
             WHERE {name}.depth < ${max_depth_param}{also} \
         )",
        start.children(backend),
        day_before(backend, &format!("{name}.event_date")),
    )
}

/// The keys of the descendants of `root` (depth ≥ 1) up to `max_depth` levels, as a CTE named
/// `down` (with `WITH RECURSIVE`), and the values of its parameters, to which a statement adds its
/// own.
fn descendants_cte(backend: DatabaseBackend, root: EventKey, max_depth: u32) -> (String, Vec<Value>) {
    let start = WalkStart::Key(root);
    let mut values = start.values();
    values.push(i64::from(max_depth).into());
    let cte = format!(
        "WITH RECURSIVE {}",
        descendants_walk(backend, start, "down", values.len(), "", Columns::keys())
    );
    (cte, values)
}

/// `(depth, event_timestamp, event_id) <op> ($first, $first+1, $first+2)`.
fn tree_keyset(op: &str, first: usize) -> String {
    let strict = op.trim_end_matches('=');
    let (d, t, i) = (first, first + 1, first + 2);
    format!(
        "(depth {strict} ${d} OR (depth = ${d} AND (event_timestamp {strict} ${t} OR (event_timestamp = ${t} AND event_id {op} ${i}))))"
    )
}

fn tree_cursor_values(cursor: &TreeCursor) -> [Value; 3] {
    [
        i64::from(cursor.depth).into(),
        cursor.at.timestamp.into(),
        cursor.at.id.into(),
    ]
}

impl Store {
    /// Runs a recursive statement under the tree timeout (on PostgreSQL, in the tree pool whose
    /// sessions have it as their `statement_timeout`), mapping a cancelled statement to
    /// [`StoreError::Timeout`].
    async fn tree_query(&self, stmt: Statement) -> Result<Vec<QueryResult>, StoreError> {
        let (pool, timed) = self.walks();
        pool.query_all(stmt)
            .await
            .map_err(|error| self.walk_error(error, timed))
    }

    /// [`Store::tree_query`], handing each row to `each` as it arrives (see
    /// [`super::hot::ReadPool::query_each`]): a long walk's rows are decoded while PostgreSQL
    /// still looks for the next ones.
    async fn tree_query_each(
        &self,
        stmt: Statement,
        each: impl FnMut(QueryResult) -> Result<(), DbErr>,
    ) -> Result<(), StoreError> {
        let (pool, timed) = self.walks();
        pool.query_each(stmt, each)
            .await
            .map_err(|error| self.walk_error(error, timed))
    }

    /// The pool that runs recursive walks, and whether its sessions have the tree timeout.
    fn walks(&self) -> (&super::hot::ReadPool, bool) {
        match self.tree_reader() {
            Some(trees) => (trees, true),
            None => (self.read_pool(), false),
        }
    }

    /// A walk's error: [`StoreError::Timeout`] for a statement the tree timeout cancelled.
    fn walk_error(&self, error: DbErr, timed: bool) -> StoreError {
        if timed && is_timeout(&error) {
            let timeout_ms = self.inner.tree_timeout.as_millis().max(1);
            StoreError::Timeout(format!(
                "the tree query took longer than {timeout_ms} ms and was stopped; \
                 ask for a smaller maxDepth or maxNodes, or a narrower subtree"
            ))
        } else {
            error.into()
        }
    }

    /// `WITH RECURSIVE {before}up AS (…) SELECT * FROM up {after}`: the walk up from the rows
    /// `first` selects (the starting events, each with `start_id`, `start_date` and `hops` 0), with
    /// the ancestors' `columns`.
    fn ancestors_walk(before: &str, first: &str, after: &str, columns: Columns) -> String {
        format!(
            "WITH RECURSIVE {before}up AS ( \
                 {first} \
               UNION ALL \
                 SELECT {}, up.start_id, up.start_date, up.hops + 1 FROM up \
                 JOIN audit_events p ON p.event_id = up.parent_event_id AND p.event_date = up.parent_event_date \
                 WHERE up.hops < {ANCESTOR_GUARD} \
             ) SELECT * FROM up {after}",
            columns.select_list("p"),
        )
    }

    /// The statement behind [`Store::ancestors`] (public so that tests can EXPLAIN it and the
    /// benchmark can run the same SQL without the server).
    pub fn ancestors_statement(&self, keys: &[EventKey], columns: Columns) -> Statement {
        let ids: HashSet<Uuid> = keys.iter().map(|k| k.id).collect();
        let dates: HashSet<NaiveDate> = keys.iter().map(|k| k.date).collect();
        let first = format!(
            "SELECT {}, e.event_id AS start_id, e.event_date AS start_date, CAST(0 AS BIGINT) AS hops \
             FROM audit_events e WHERE e.event_id IN ({}) AND e.event_date IN ({})",
            columns.select_list("e"),
            placeholders(1, ids.len()),
            placeholders(1 + ids.len(), dates.len()),
        );
        let sql = Self::ancestors_walk("", &first, "WHERE hops > 0", columns);
        let mut values: Vec<Value> = ids.into_iter().map(Value::from).collect();
        values.extend(dates.into_iter().map(Value::from));
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// The statement behind [`Store::event_and_ancestors`]: the newest copy of the id `$1` (hops
    /// 0) and its ancestors.
    pub fn event_and_ancestors_statement(&self, id: Uuid, columns: Columns) -> Statement {
        let start = WalkStart::Id(id);
        let first = format!(
            "SELECT {}, start.event_id AS start_id, start.event_date AS start_date, CAST(0 AS BIGINT) AS hops \
             FROM start",
            columns.select_list("start"),
        );
        let sql = Self::ancestors_walk(&start.cte(columns), &first, "", columns);
        Statement::from_sql_and_values(self.backend(), sql, start.values())
    }

    /// The event with this id (the newest copy, as [`Store::find_event`] gives it) and its
    /// ancestors, root first (as [`Store::ancestors`] gives them), in one statement; `None` when no
    /// event has the id. Both are read with `columns`.
    #[tracing::instrument(skip(self))]
    pub async fn event_and_ancestors(
        &self,
        id: Uuid,
        columns: Columns,
    ) -> Result<Option<(Model, AncestorPath)>, StoreError> {
        let mut event = None;
        let mut path = Vec::new();
        self.tree_query_each(self.event_and_ancestors_statement(id, columns), |row| {
            match hop_of(&row, columns)? {
                (0, start) => event = Some(Arc::unwrap_or_clone(start)),
                hop => path.push(hop),
            }
            Ok(())
        })
        .await?;
        Ok(event.map(|event| (event, root_first(path))))
    }

    /// The ancestors of each event (their `columns`), root first, in one statement for all of them.
    #[tracing::instrument(skip_all, fields(events = keys.len()))]
    pub async fn ancestors(
        &self,
        keys: &[EventKey],
        columns: Columns,
    ) -> Result<HashMap<EventKey, AncestorPath>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // Each event is decoded as its row arrives.
        let start_of = |row: &QueryResult| -> Result<EventKey, DbErr> {
            Ok(EventKey {
                id: row.try_get("", "start_id")?,
                date: row.try_get("", "start_date")?,
            })
        };
        let mut found: HashMap<EventKey, Vec<(u32, Arc<Model>)>> = HashMap::with_capacity(keys.len());
        let stmt = self.ancestors_statement(keys, columns);
        if let [key] = keys {
            // One walk (the usual case): every row is the key's, as the statement started from it.
            let mut chain = Vec::new();
            self.tree_query_each(stmt, |row| {
                debug_assert_eq!(start_of(&row)?, *key);
                chain.push(hop_of(&row, columns)?);
                Ok(())
            })
            .await?;
            found.insert(*key, chain);
        } else {
            let wanted: HashSet<&EventKey> = keys.iter().collect();
            self.tree_query_each(stmt, |row| {
                let start = start_of(&row)?;
                if wanted.contains(&start) {
                    found.entry(start).or_default().push(hop_of(&row, columns)?);
                }
                Ok(())
            })
            .await?;
        }
        Ok(found.into_iter().map(|(key, chain)| (key, root_first(chain))).collect())
    }

    /// The statement behind [`Store::descendants`] (public so that tests can EXPLAIN it and the
    /// benchmark can run the same SQL without the server). From an id, one more row is the
    /// starting event itself, at depth 0 (none when the id is unknown).
    pub fn descendants_statement(
        &self,
        start: WalkStart,
        max_depth: u32,
        after: Option<TreeCursor>,
        fetch: u64,
        columns: Columns,
    ) -> Statement {
        let mut values = start.values();
        values.push(i64::from(max_depth).into());
        let max_depth_param = values.len();
        let bound = match after {
            Some(cursor) => {
                values.extend(tree_cursor_values(&cursor));
                format!("WHERE {}", tree_keyset(">", max_depth_param + 1))
            }
            None => String::new(),
        };
        // A page needs every level down to the one holding its last row, and no deeper one. Both
        // engines produce a walk's rows level by level and only as far as they are read, so the
        // deepest of the first `fetch` rows after the cursor (`reach`) is that level: reading
        // them stops the first walk early. The second walk stops there and is sorted. Without
        // this, the first page of a 5,000-wide fan-out also walked every grandchild.
        let backend = self.backend();
        let page = format!("SELECT * FROM page {bound} ORDER BY depth, event_timestamp, event_id LIMIT {fetch}");
        let select = match start {
            WalkStart::Key(_) => page,
            WalkStart::Id(_) => format!(
                "SELECT {}, CAST(0 AS BIGINT) AS depth FROM start UNION ALL SELECT * FROM ({page}) AS later",
                columns.select_list("start")
            ),
        };
        let sql = format!(
            "WITH RECURSIVE {}{}, \
             reach AS (SELECT MAX(depth) AS depth FROM (SELECT depth FROM down {bound} LIMIT {fetch}) AS first_rows), \
             {} \
             {select}",
            start.cte(columns),
            descendants_walk(backend, start, "down", max_depth_param, "", Columns::keys()),
            descendants_walk(
                backend,
                start,
                "page",
                max_depth_param,
                " AND page.depth < COALESCE((SELECT depth FROM reach), 0)",
                columns,
            ),
        );
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// A page of the descendants of `root` (their `columns`) up to `max_depth`, breadth-first,
    /// after `after`; `fetch` rows at most (the page size plus one).
    #[tracing::instrument(skip(self))]
    pub async fn descendants(
        &self,
        root: EventKey,
        max_depth: u32,
        after: Option<TreeCursor>,
        fetch: u64,
        columns: Columns,
    ) -> Result<Vec<TreeNode>, StoreError> {
        let rows = self
            .tree_query(self.descendants_statement(WalkStart::Key(root), max_depth, after, fetch, columns))
            .await?;
        Ok(nodes_of(rows, columns)?)
    }

    /// The event with this id (the newest copy, as [`Store::find_event`] gives it) and a page of
    /// its descendants (as [`Store::descendants`] gives it), in one statement; `None` when no
    /// event has the id. Both are read with `columns`.
    #[tracing::instrument(skip(self))]
    pub async fn event_and_descendants(
        &self,
        id: Uuid,
        max_depth: u32,
        after: Option<TreeCursor>,
        fetch: u64,
        columns: Columns,
    ) -> Result<Option<(Model, Vec<TreeNode>)>, StoreError> {
        let rows = self
            .tree_query(self.descendants_statement(WalkStart::Id(id), max_depth, after, fetch, columns))
            .await?;
        let mut nodes = nodes_of(rows, columns)?.into_iter();
        // Sorted by depth (whatever order the statement gave): the starting event (depth 0) comes
        // first when it exists.
        let Some(first) = nodes.next().filter(|n| n.depth == 0) else {
            return Ok(None);
        };
        Ok(Some((Arc::unwrap_or_clone(first.event), nodes.collect())))
    }

    /// Whether descendants of `root` exist at or before `cursor` in breadth-first order.
    #[tracing::instrument(skip(self))]
    pub async fn descendants_up_to(
        &self,
        root: EventKey,
        max_depth: u32,
        cursor: TreeCursor,
    ) -> Result<bool, StoreError> {
        let (cte, mut values) = descendants_cte(self.backend(), root, max_depth);
        let keyset = tree_keyset("<=", values.len() + 1);
        values.extend(tree_cursor_values(&cursor));
        let sql = format!("{cte} SELECT event_id FROM down WHERE {keyset} LIMIT 1");
        let rows = self
            .tree_query(Statement::from_sql_and_values(self.backend(), sql, values))
            .await?;
        Ok(!rows.is_empty())
    }

    /// The statement behind [`Store::count_descendants`] (public so that tests can EXPLAIN it).
    pub fn count_descendants_statement(&self, root: EventKey, max_depth: u32) -> Statement {
        let (cte, values) = descendants_cte(self.backend(), root, max_depth);
        let sql = format!("{cte} SELECT COUNT(*) AS n FROM down");
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// How many descendants `root` has up to `max_depth`.
    #[tracing::instrument(skip(self))]
    pub async fn count_descendants(&self, root: EventKey, max_depth: u32) -> Result<u64, StoreError> {
        let rows = self
            .tree_query(self.count_descendants_statement(root, max_depth))
            .await?;
        let n: i64 = rows.first().map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// The recursive step of a whole-tree walk: the children of the rows of `tree` through
    /// complete links, while `tree.depth <= $depth_param` (one level past the bound, to learn
    /// whether it cut the tree).
    fn tree_step(&self, depth_param: usize, extra: &str) -> String {
        format!(
            "SELECT {}, tree.depth + 1 FROM tree \
             JOIN audit_events c ON c.parent_event_id = tree.event_id AND c.parent_event_date = tree.event_date \
               AND c.event_date >= {} \
             WHERE tree.depth <= ${depth_param}{extra}",
            Columns::ALL.select_list("c"),
            day_before(self.backend(), "tree.event_date")
        )
    }

    /// The tree below one event (the event at depth 0), within `bounds`.
    #[tracing::instrument(skip(self))]
    pub async fn tree_of_event(&self, root: EventKey, bounds: TreeBounds) -> Result<Tree, StoreError> {
        let sql = format!(
            "WITH RECURSIVE tree AS ( \
                 SELECT {}, CAST(0 AS BIGINT) AS depth FROM audit_events e \
                 WHERE e.event_id = $1 AND e.event_date = $2 \
               UNION ALL {} \
             ) SELECT * FROM tree LIMIT {}",
            Columns::ALL.select_list("e"),
            self.tree_step(3, ""),
            u64::from(bounds.max_nodes) + 1
        );
        let values: Vec<Value> = vec![root.id.into(), root.date.into(), i64::from(bounds.max_depth).into()];
        let rows = self
            .tree_query(Statement::from_sql_and_values(self.backend(), sql, values))
            .await?;
        self.finish_tree(nodes_of(rows, Columns::ALL)?, bounds).await
    }

    /// The tree of a correlation id: its events arranged by their links. An event is a root
    /// (depth 0) unless it is linked to a parent of the same correlation; legacy events without
    /// a parent date are roots until their link is completed.
    ///
    /// The correlation is checked on the expanding side (`tree.correlation_id`) and on the output,
    /// not on the children being joined: a condition on `c.correlation_id` invites the planner to
    /// read the whole correlation through its index once per level (seconds for a deep chain)
    /// instead of probing the parent-lookup index. A child of another correlation is produced but
    /// neither expanded nor returned.
    #[tracing::instrument(skip(self))]
    pub async fn tree_of_correlation(&self, correlation_id: &str, bounds: TreeBounds) -> Result<Tree, StoreError> {
        let sql = format!(
            "WITH RECURSIVE tree AS ( \
                 SELECT {}, CAST(0 AS BIGINT) AS depth FROM audit_events e \
                 WHERE e.correlation_id = $1 AND (e.parent_event_date IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM audit_events p \
                     WHERE p.event_id = e.parent_event_id AND p.event_date = e.parent_event_date \
                       AND p.correlation_id = $1)) \
               UNION ALL {} \
             ) SELECT * FROM tree WHERE correlation_id = $1 LIMIT {}",
            Columns::ALL.select_list("e"),
            self.tree_step(2, " AND tree.correlation_id = $1"),
            u64::from(bounds.max_nodes) + 1
        );
        let values: Vec<Value> = vec![correlation_id.into(), i64::from(bounds.max_depth).into()];
        let rows = self
            .tree_query(Statement::from_sql_and_values(self.backend(), sql, values))
            .await?;
        self.finish_tree(nodes_of(rows, Columns::ALL)?, bounds).await
    }

    /// Applies the bounds to the rows of a walk and finds the roots whose parent is missing.
    async fn finish_tree(&self, mut nodes: Vec<TreeNode>, bounds: TreeBounds) -> Result<Tree, StoreError> {
        let before = nodes.len();
        nodes.retain(|n| n.depth <= bounds.max_depth);
        let mut truncated = nodes.len() < before;
        if nodes.len() > bounds.max_nodes as usize {
            nodes.truncate(bounds.max_nodes as usize);
            truncated = true;
        }
        let claimed: Vec<Uuid> = nodes
            .iter()
            .filter(|n| n.depth == 0)
            .filter_map(|n| n.event.parent_event_id)
            .collect();
        let mut missing = Vec::new();
        if !claimed.is_empty() {
            let present: HashSet<Uuid> = Entity::find()
                .select_only()
                .column(Column::EventId)
                .filter(Column::EventId.is_in(claimed.clone()))
                .into_tuple::<Uuid>()
                .all(self.reader())
                .await?
                .into_iter()
                .collect();
            for node in nodes.iter().filter(|n| n.depth == 0) {
                if let Some(parent) = node.event.parent_event_id.filter(|p| !present.contains(p)) {
                    missing.push(node.event.event_id);
                    tracing::debug!(event.id = %node.event.event_id, parent = %parent, "parent missing from the store");
                }
            }
        }
        Ok(Tree {
            nodes,
            truncated,
            missing_parent_event_ids: missing,
        })
    }

    /// Counts of the events matching `filter`, grouped, largest first.
    #[tracing::instrument(skip(self, filter))]
    pub async fn count_by(
        &self,
        filter: &EventFilter,
        group: GroupBy,
    ) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let column = match group {
            GroupBy::Category => Column::EventCategory,
            GroupBy::Type => Column::EventType,
            GroupBy::Outcome => Column::EventOutcome,
            GroupBy::Severity => Column::Severity,
        };
        let rows: Vec<(Option<String>, i64)> = Entity::find()
            .select_only()
            .column(column)
            .column_as(Column::EventId.count(), "n")
            .filter(condition(filter, self.backend()))
            .group_by(column)
            .into_tuple()
            .all(self.reader())
            .await?;
        let mut counts: Vec<(Option<String>, u64)> = rows.into_iter().map(|(k, n)| (k, n.max(0) as u64)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(counts)
    }
}
