//! Reading events: single lookups, keyset pages, counts and batched relations.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState as FastHash;
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    Statement,
};
use uuid::Uuid;

use super::{Columns, Store, StoreError};
use crate::domain::page::{Beyond, Order};
use crate::domain::{Cursor, EventFilter, EventKey, PageWindow};
use crate::entity::audit_event::{Column, Entity, Model};

/// A strict or inclusive comparison of `(event_timestamp, event_id)` with a cursor.
#[derive(Clone, Copy)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `(event_timestamp, event_id) <cmp> cursor`, written so that both engines use the
/// `(event_timestamp, event_id)` index for the timestamp range.
///
/// The same bound is also stated on `event_date`, which the schema keeps equal to the UTC date of
/// `event_timestamp`: it is the partition key, so PostgreSQL drops the partitions beyond the
/// cursor while planning. Measured on a year of data (`bench serve`), planning the keyset
/// statement over all sixteen partitions took about 4 ms per page and the statement ran in 0.3 ms;
/// with the date bound, a page from the middle of the year plans in about 1 ms.
fn keyset(cursor: &Cursor, cmp: Cmp) -> Condition {
    let ts = cursor.timestamp;
    let id = cursor.id;
    let day = ts.date_naive();
    let (range, strict, tie) = match cmp {
        Cmp::Lt => (
            Column::EventTimestamp.lte(ts),
            Column::EventTimestamp.lt(ts),
            Column::EventId.lt(id),
        ),
        Cmp::Le => (
            Column::EventTimestamp.lte(ts),
            Column::EventTimestamp.lt(ts),
            Column::EventId.lte(id),
        ),
        Cmp::Gt => (
            Column::EventTimestamp.gte(ts),
            Column::EventTimestamp.gt(ts),
            Column::EventId.gt(id),
        ),
        Cmp::Ge => (
            Column::EventTimestamp.gte(ts),
            Column::EventTimestamp.gt(ts),
            Column::EventId.gte(id),
        ),
    };
    let partitions = match cmp {
        Cmp::Lt | Cmp::Le => Column::EventDate.lte(day),
        Cmp::Gt | Cmp::Ge => Column::EventDate.gte(day),
    };
    Condition::all()
        .add(partitions)
        .add(range)
        .add(Condition::any().add(strict).add(tie))
}

/// The comparison selecting elements after (`later == true`) or before a cursor in presentation order.
fn side(order: Order, later: bool, inclusive: bool) -> Cmp {
    let ascending = matches!(order, Order::OldestFirst) == later;
    match (ascending, inclusive) {
        (true, false) => Cmp::Gt,
        (true, true) => Cmp::Ge,
        (false, false) => Cmp::Lt,
        (false, true) => Cmp::Le,
    }
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The SQL form of a filter.
pub(super) fn condition(filter: &EventFilter, backend: DatabaseBackend) -> Condition {
    let mut cond = Condition::all();
    let eq = |cond: Condition, column: Column, value: &Option<String>| match value {
        Some(v) => cond.add(column.eq(v.clone())),
        None => cond,
    };
    cond = eq(cond, Column::EventType, &filter.event_type);
    cond = eq(cond, Column::EventCategory, &filter.event_category);
    cond = eq(cond, Column::EventAction, &filter.event_action);
    cond = eq(cond, Column::EventOutcome, &filter.event_outcome);
    cond = eq(cond, Column::Severity, &filter.severity);
    cond = eq(cond, Column::CorrelationId, &filter.correlation_id);
    cond = eq(cond, Column::ActorType, &filter.actor_type);
    cond = eq(cond, Column::ActorId, &filter.actor_id);
    cond = eq(cond, Column::ResourceType, &filter.resource_type);
    cond = eq(cond, Column::ResourceId, &filter.resource_id);
    cond = eq(cond, Column::Namespace, &filter.namespace);
    cond = eq(cond, Column::ClusterId, &filter.cluster_id);
    if let Some(prefix) = &filter.event_type_prefix {
        // LIKE lets PostgreSQL use the text_pattern_ops index; the substr comparison keeps the
        // match case-sensitive on SQLite, whose LIKE ignores ASCII case.
        cond = cond
            .add(Column::EventType.like(LikeExpr::new(escape_like(prefix)).escape('\\')))
            .add(sea_orm::sea_query::ExprTrait::eq(
                Expr::expr(
                    Func::cust("substr")
                        .arg(Expr::col(Column::EventType))
                        .arg(1)
                        .arg(prefix.chars().count() as i32),
                ),
                prefix.clone(),
            ));
    }
    if let Some(parent) = filter.parent_event_id {
        cond = cond.add(Column::ParentEventId.eq(parent));
    }
    if filter.roots_only {
        cond = cond.add(Column::ParentEventId.is_null());
    }
    if let Some(since) = filter.since {
        cond = cond.add(Column::EventTimestamp.gte(since));
    }
    if let Some(until) = filter.until {
        cond = cond.add(Column::EventTimestamp.lte(until));
    }
    if let Some((key, value)) = &filter.data_equals {
        // A top-level string or boolean whose text equals the value, or a number equal to it as a
        // number (`5`, `5.0` and `5e0` alike: the engines print numbers differently), the same on
        // both engines. Objects, arrays and null never match. The key (letters, digits,
        // underscores) is bound, never spliced.
        let number = value.parse::<f64>().ok().filter(|n| n.is_finite());
        let text = || sea_orm::Value::from(value.clone());
        let key = || sea_orm::Value::from(key.clone());
        let number = || sea_orm::Value::from(number);
        let (sql, values) = match backend {
            DatabaseBackend::Postgres => (
                "(CASE jsonb_typeof(event_data -> $1) WHEN 'string' THEN event_data ->> $1 = $2 \
                 WHEN 'boolean' THEN event_data ->> $1 = $2 \
                 WHEN 'number' THEN (event_data ->> $1)::float8 = $3 ELSE false END)",
                vec![key(), text(), number()],
            ),
            _ => (
                "(CASE json_type(event_data, '$.' || ?) WHEN 'text' THEN event_data ->> ? = ? \
                 WHEN 'true' THEN 'true' = ? WHEN 'false' THEN 'false' = ? \
                 WHEN 'integer' THEN event_data ->> ? = ? WHEN 'real' THEN event_data ->> ? = ? ELSE 0 END)",
                vec![key(), key(), text(), text(), text(), key(), number(), key(), number()],
            ),
        };
        cond = cond.add(Expr::cust_with_values(sql, values));
    }
    cond
}

fn ordered(select: Select<Entity>, ascending: bool) -> Select<Entity> {
    if ascending {
        select
            .order_by_asc(Column::EventTimestamp)
            .order_by_asc(Column::EventId)
    } else {
        select
            .order_by_desc(Column::EventTimestamp)
            .order_by_desc(Column::EventId)
    }
}

/// The page bounds of a window, as a condition.
fn window_condition(window: &PageWindow, order: Order) -> Condition {
    let mut cond = Condition::all();
    if let Some(after) = &window.after {
        cond = cond.add(keyset(after, side(order, true, false)));
    }
    if let Some(before) = &window.before {
        cond = cond.add(keyset(before, side(order, false, false)));
    }
    cond
}

/// The children of any of `parents` (a superset: callers keep the exact pairs). The lower bound on
/// `event_date` holds for every child (`chk_child_not_before_parent_day`) and lets PostgreSQL skip,
/// at plan time, every partition older than the day before the oldest parent; the remaining ones
/// are probed through the partial children index.
fn children_of(parents: &[EventKey]) -> Condition {
    let mut ids: Vec<Uuid> = parents.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut dates: Vec<chrono::NaiveDate> = parents.iter().map(|k| k.date).collect();
    dates.sort_unstable();
    dates.dedup();
    let earliest = dates.first().map(|d| *d - chrono::Days::new(1));
    let mut cond = Condition::all()
        .add(Column::ParentEventId.is_in(ids))
        .add(Column::ParentEventDate.is_in(dates));
    if let Some(earliest) = earliest {
        cond = cond.add(Column::EventDate.gte(earliest));
    }
    cond
}

/// Whether the rows are fetched in ascending `(event_timestamp, event_id)` order.
fn travels_ascending(window: &PageWindow, order: Order) -> bool {
    matches!(order, Order::OldestFirst) != window.from_end
}

impl Store {
    /// The events a select of whole rows returns, decoded by position.
    async fn events_of(
        &self,
        select: Select<Entity>,
        columns: Columns,
        expected: usize,
    ) -> Result<Vec<Model>, sea_orm::DbErr> {
        self.events_in(select.build(self.backend()), columns, expected).await
    }

    /// The events a statement returns (the event's columns first, in declaration order), as
    /// `Model`s or, put there as each is decoded, behind `Arc`s. Each row is decoded as it
    /// arrives, while PostgreSQL still produces the next ones. `expected` is the most rows the
    /// statement can return, when the caller knows it.
    async fn events_in<T: From<Model>>(
        &self,
        stmt: Statement,
        columns: Columns,
        expected: usize,
    ) -> Result<Vec<T>, sea_orm::DbErr> {
        // Sized up front (within reason): an event is large, and each growth of the vector copies
        // every event decoded so far.
        let mut events = Vec::with_capacity(expected.min(1_024));
        self.read_pool()
            .query_each(stmt, |row| {
                events.push(T::from(super::columns::decode(&row, columns)?));
                Ok(())
            })
            .await?;
        Ok(events)
    }

    /// The event with this id (the newest, should legacy data hold the id on several days), with
    /// `columns` read.
    #[tracing::instrument(skip(self))]
    pub async fn find_event(&self, id: Uuid, columns: Columns) -> Result<Option<Model>, StoreError> {
        let select = Entity::find()
            .filter(Column::EventId.eq(id))
            .order_by_desc(Column::EventDate)
            .limit(1);
        Ok(self.events_of(columns.project(select), columns, 1).await?.pop())
    }

    /// The events with these keys (their `columns`), in one statement. Filtering on the dates
    /// lets PostgreSQL prune partitions; the exact pairs are picked afterwards.
    #[tracing::instrument(skip_all, fields(keys = keys.len()))]
    pub async fn events_by_keys(
        &self,
        keys: &[EventKey],
        columns: Columns,
    ) -> Result<HashMap<EventKey, Model>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids: Vec<Uuid> = keys.iter().map(|k| k.id).collect();
        let mut dates: Vec<_> = keys.iter().map(|k| k.date).collect();
        ids.sort_unstable();
        ids.dedup();
        dates.sort_unstable();
        dates.dedup();
        let select = Entity::find()
            .filter(Column::EventId.is_in(ids))
            .filter(Column::EventDate.is_in(dates));
        let rows = self.events_of(columns.project(select), columns, keys.len()).await?;
        let wanted: std::collections::HashSet<&EventKey> = keys.iter().collect();
        Ok(rows
            .into_iter()
            .filter(|m| wanted.contains(&m.key()))
            .map(|m| (m.key(), m))
            .collect())
    }

    fn page_select(&self, filter: &EventFilter, window: &PageWindow, order: Order, columns: Columns) -> Select<Entity> {
        let select = Entity::find()
            .filter(condition(filter, self.backend()))
            .filter(window_condition(window, order));
        let select = ordered(select, travels_ascending(window, order)).limit(window.fetch());
        columns.project(select)
    }

    /// The statement behind [`Store::list_events`] (public so that the benchmark can run the same
    /// SQL without the server).
    pub fn list_events_statement(
        &self,
        filter: &EventFilter,
        window: &PageWindow,
        order: Order,
        columns: Columns,
    ) -> Statement {
        self.page_select(filter, window, order, columns).build(self.backend())
    }

    /// One page of the events matching `filter` (their `columns`), in the direction of travel,
    /// with one extra row when more exist (see [`PageWindow::finish`]).
    #[tracing::instrument(skip_all, fields(limit = window.limit))]
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        window: &PageWindow,
        order: Order,
        columns: Columns,
    ) -> Result<Vec<Model>, StoreError> {
        Ok(self
            .events_of(
                self.page_select(filter, window, order, columns),
                columns,
                usize::try_from(window.fetch()).unwrap_or(usize::MAX),
            )
            .await?)
    }

    fn offset_select(&self, filter: &EventFilter, offset: u64, limit: u64) -> Select<Entity> {
        let select = Entity::find().filter(condition(filter, self.backend()));
        ordered(select, false).offset(offset).limit(limit)
    }

    /// The statement behind [`Store::list_events_at_offset`] (public for the benchmark).
    pub fn list_events_at_offset_statement(&self, filter: &EventFilter, offset: u64, limit: u64) -> Statement {
        self.offset_select(filter, offset, limit).build(self.backend())
    }

    /// One page of the events matching `filter`, newest first, by offset (the REST API's
    /// original pagination; cursors are cheaper for deep pages).
    #[tracing::instrument(skip_all, fields(offset, limit))]
    pub async fn list_events_at_offset(
        &self,
        filter: &EventFilter,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Model>, StoreError> {
        Ok(self.offset_select(filter, offset, limit).all(self.reader()).await?)
    }

    fn count_select(&self, filter: &EventFilter) -> Select<Entity> {
        Entity::find()
            .select_only()
            .column_as(Column::EventId.count(), "n")
            .filter(condition(filter, self.backend()))
    }

    /// The statement behind [`Store::count_events`] (public for the benchmark).
    pub fn count_events_statement(&self, filter: &EventFilter) -> Statement {
        self.count_select(filter).build(self.backend())
    }

    /// How many events match `filter`.
    #[tracing::instrument(skip_all)]
    pub async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let count = self.count_select(filter).into_tuple::<i64>().one(self.reader()).await?;
        Ok(count.unwrap_or(0).max(0) as u64)
    }

    /// Whether events matching `filter` exist beyond one side of a page (Relay's optional check).
    #[tracing::instrument(skip_all)]
    pub async fn exists_beyond(&self, filter: &EventFilter, beyond: Beyond, order: Order) -> Result<bool, StoreError> {
        let bound = match beyond {
            Beyond::Known(known) => return Ok(known),
            Beyond::ProbeFrom(cursor) => keyset(&cursor, side(order, true, true)),
            Beyond::ProbeUpTo(cursor) => keyset(&cursor, side(order, false, true)),
        };
        let found = Entity::find()
            .select_only()
            .column(Column::EventId)
            .filter(condition(filter, self.backend()))
            .filter(bound)
            .limit(1)
            .into_tuple::<Uuid>()
            .one(self.reader())
            .await?;
        Ok(found.is_some())
    }

    /// The statement behind [`Store::children_pages`] (public so that tests can EXPLAIN it).
    /// Children of many parents in one statement, each parent with its own page. On PostgreSQL
    /// each parent's page is read on its own (a lateral join) from the children index, which
    /// holds each parent's children in page order: a page costs its own rows, however many
    /// children the parent has. SQLite numbers each parent's children and keeps the first ones.
    pub fn children_pages_statement(&self, parents: &[EventKey], window: &PageWindow, columns: Columns) -> Statement {
        let order = Order::OldestFirst;
        let ascending = travels_ascending(window, order);
        let direction = if ascending { "ASC" } else { "DESC" };
        let backend = self.backend();
        if backend == DatabaseBackend::Postgres {
            let mut parents: Vec<EventKey> = parents.to_vec();
            parents.sort_unstable();
            parents.dedup();
            let select = Entity::find()
                .filter(Condition::all().add(Expr::cust(
                    "audit_events.parent_event_id = parents.id AND audit_events.parent_event_date = parents.day \
                     AND audit_events.event_date >= parents.day - 1",
                )))
                .filter(window_condition(window, order));
            let inner = ordered(columns.project(select), ascending)
                .limit(window.fetch())
                .build(backend);
            let mut values = inner.values.map(|v| v.0).unwrap_or_default();
            // The parents' rows written into one string (a `format!` per parent was a thirtieth of
            // a nested query's instructions).
            let mut rows = String::with_capacity(parents.len() * 24);
            for parent in &parents {
                if !rows.is_empty() {
                    rows.push_str(", ");
                }
                rows.push_str("($");
                rows.push_str(itoa::Buffer::new().format(values.len() + 1));
                rows.push_str("::uuid, $");
                rows.push_str(itoa::Buffer::new().format(values.len() + 2));
                rows.push_str("::date)");
                values.push(parent.id.into());
                values.push(parent.date.into());
            }
            let sql = format!(
                "SELECT page.* FROM (VALUES {rows}) AS parents(id, day) CROSS JOIN LATERAL ({}) AS page \
                 ORDER BY page.event_timestamp {direction}, page.event_id {direction}",
                inner.sql
            );
            return Statement::from_sql_and_values(backend, sql, values);
        }
        let select = Entity::find()
            .filter(children_of(parents))
            .filter(window_condition(window, order));
        let inner = columns
            .project(select)
            .expr_as(
                Expr::cust(format!(
                    "ROW_NUMBER() OVER (PARTITION BY parent_event_id, parent_event_date \
                     ORDER BY event_timestamp {direction}, event_id {direction})"
                )),
                "page_row",
            )
            .build(backend);
        let sql = format!(
            "SELECT * FROM ({}) AS page WHERE page_row <= {} ORDER BY event_timestamp {direction}, event_id {direction}",
            inner.sql,
            window.fetch()
        );
        Statement {
            sql,
            values: inner.values,
            db_backend: inner.db_backend,
        }
    }

    /// A page of children (their `columns`) for each parent, in one statement, oldest first.
    #[tracing::instrument(skip_all, fields(parents = parents.len(), limit = window.limit))]
    pub async fn children_pages(
        &self,
        parents: &[EventKey],
        window: &PageWindow,
        columns: Columns,
    ) -> Result<HashMap<EventKey, Vec<Arc<Model>>, FastHash>, StoreError> {
        if parents.is_empty() {
            return Ok(HashMap::default());
        }
        let stmt = self.children_pages_statement(parents, window, columns);
        // Behind `Arc`s as they are decoded: grouping them by parent then moves pointers.
        let most = parents
            .len()
            .saturating_mul(usize::try_from(window.fetch()).unwrap_or(usize::MAX));
        let rows: Vec<Arc<Model>> = self.events_in(stmt, columns, most).await?;
        // Keyed by a seeded fast hash: these maps are hashed twice per row, and SipHash was a
        // tenth of a nested query's instructions.
        let wanted: std::collections::HashSet<&EventKey, FastHash> = parents.iter().collect();
        let mut pages: HashMap<EventKey, Vec<Arc<Model>>, FastHash> =
            HashMap::with_capacity_and_hasher(parents.len(), FastHash::default());
        for row in rows {
            if let Some(parent) = row.parent_key().filter(|k| wanted.contains(k)) {
                pages.entry(parent).or_default().push(row);
            }
        }
        Ok(pages)
    }

    /// Which parents have children at or before `cursor` in the children's order (oldest first):
    /// the `hasPreviousPage` of pages that start after `cursor`, for many parents in one statement.
    #[tracing::instrument(skip_all, fields(parents = parents.len()))]
    pub async fn children_up_to(
        &self,
        parents: &[EventKey],
        cursor: Cursor,
    ) -> Result<std::collections::HashSet<EventKey>, StoreError> {
        if parents.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(Uuid, chrono::NaiveDate)> = Entity::find()
            .select_only()
            .column(Column::ParentEventId)
            .column(Column::ParentEventDate)
            .distinct()
            .filter(children_of(parents))
            .filter(keyset(&cursor, side(Order::OldestFirst, false, true)))
            .into_tuple()
            .all(self.reader())
            .await?;
        let wanted: std::collections::HashSet<&EventKey> = parents.iter().collect();
        Ok(rows
            .into_iter()
            .map(|(id, date)| EventKey { id, date })
            .filter(|k| wanted.contains(k))
            .collect())
    }

    /// The number of children of each parent, in one statement.
    #[tracing::instrument(skip_all, fields(parents = parents.len()))]
    pub async fn child_counts(&self, parents: &[EventKey]) -> Result<HashMap<EventKey, u64>, StoreError> {
        if parents.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, chrono::NaiveDate, i64)> = Entity::find()
            .select_only()
            .column(Column::ParentEventId)
            .column(Column::ParentEventDate)
            .column_as(Column::EventId.count(), "children")
            .filter(children_of(parents))
            .group_by(Column::ParentEventId)
            .group_by(Column::ParentEventDate)
            .into_tuple()
            .all(self.reader())
            .await?;
        let wanted: std::collections::HashSet<&EventKey> = parents.iter().collect();
        Ok(rows
            .into_iter()
            .map(|(id, date, n)| (EventKey { id, date }, n.max(0) as u64))
            .filter(|(k, _)| wanted.contains(k))
            .collect())
    }
}
