//! The requests the workloads repeat: through the server (GraphQL, REST) and straight to
//! PostgreSQL. Every response is checked; a wrong answer is a failure like an error.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use auditgraph::domain::{EventInput, EventKey, Limits, PageWindow};
use auditgraph::store::Store;
use chrono::Utc;
use hyper::body::Bytes;
use sea_orm::sqlx::Row;
use sea_orm::sqlx::postgres::PgRow;
use serde_json::{Value, json};

use crate::client::{Conn, graphql_body};
use crate::data::Rng;
use crate::load::Op;
use crate::raw::{Arg, Raw, Sql};

/// How a response's body is checked: returns the items it holds, or why it is wrong.
pub type Check = Arc<dyn Fn(&[u8]) -> anyhow::Result<u64> + Send + Sync>;

/// The same GraphQL requests again and again (in turn when there are several).
pub struct GraphqlRead {
    /// The connection.
    pub conn: Conn,
    /// Request bodies, sent in turn.
    pub bodies: Arc<Vec<Bytes>>,
    /// Checks of the `data` of each body's response, in the same order.
    pub checks: Arc<Vec<Check>>,
    /// Requests sent.
    pub sent: usize,
}

impl Op for GraphqlRead {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let at = self.sent % self.bodies.len();
        self.sent += 1;
        let body = self.conn.graphql_bytes(self.bodies[at].clone()).await?;
        (self.checks[at])(&body)
    }
}

/// The same REST `GET` again and again.
pub struct RestRead {
    /// The connection.
    pub conn: Conn,
    /// Path and query.
    pub path: String,
    /// Check of the JSON response.
    pub check: Check,
}

impl Op for RestRead {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let body = self.conn.get_bytes(&self.path).await?;
        (self.check)(&body)
    }
}

/// Raw statements run one after the other as one request (in turn when there are several groups).
pub struct RawRead {
    /// The connection.
    pub raw: Raw,
    /// Groups of statements with the row count each must return.
    pub groups: Arc<Vec<Vec<(Sql, usize)>>>,
    /// Requests sent.
    pub sent: usize,
}

impl Op for RawRead {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let at = self.sent % self.groups.len();
        self.sent += 1;
        let mut items = 0;
        for (sql, expected) in &self.groups[at] {
            let rows = self.raw.fetch(sql).await?.len();
            anyhow::ensure!(rows == *expected, "{rows} rows where {expected} were expected");
            items += rows as u64;
        }
        Ok(items)
    }
}

/// The nested query's three statements straight to PostgreSQL: a page of roots, then one
/// statement per level for the children of all events of the level above, each page limited
/// per parent. The SQL is the server's own (built by its store).
pub struct RawNested {
    /// The connection.
    pub raw: Raw,
    /// Builds the statements.
    pub store: Store,
    /// The roots statement.
    pub roots: Sql,
    /// The columns read of each event.
    pub columns: auditgraph::store::Columns,
    /// Children per parent and level.
    pub children: u64,
    /// Levels below the roots.
    pub levels: usize,
}

fn key(row: &PgRow, id: &str, date: &str) -> anyhow::Result<EventKey> {
    Ok(EventKey {
        id: row.try_get(id)?,
        date: row.try_get(date)?,
    })
}

impl RawNested {
    /// Runs the statements; returns the events of the tree (roots included).
    pub async fn run(&mut self) -> anyhow::Result<u64> {
        let rows = self.raw.fetch(&self.roots).await?;
        let mut level = rows
            .iter()
            .take(50)
            .map(|row| key(row, "event_id", "event_date"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut total = level.len() as u64;
        let window = PageWindow::forward(self.children, None);
        for _ in 0..self.levels {
            if level.is_empty() {
                break;
            }
            let sql = Sql::of(&self.store.children_pages_statement(&level, &window, self.columns))?;
            let rows = self.raw.fetch(&sql).await?;
            // Each parent's page holds at most `children` + 1 rows; the extra one only tells
            // whether more exist, as on the server.
            let mut next = Vec::new();
            let mut per_parent: HashMap<EventKey, u64> = HashMap::new();
            for row in &rows {
                let seen = per_parent
                    .entry(key(row, "parent_event_id", "parent_event_date")?)
                    .or_default();
                *seen += 1;
                if *seen <= self.children {
                    next.push(key(row, "event_id", "event_date")?);
                }
            }
            total += next.len() as u64;
            level = next;
        }
        Ok(total)
    }
}

impl Op for RawNested {
    async fn once(&mut self) -> anyhow::Result<u64> {
        self.run().await
    }
}

/// The content of the `n`-th written event, shared by the server and raw writers so that both
/// store the same rows.
struct Written {
    resource_id: String,
    correlation_id: String,
    event_data: Value,
    parent: EventKey,
}

/// The first event number of writers starting now. Writers number their events from it, and
/// each event starts a chain of its own (`write-{worker}-{n}`); taken from the clock, a thousand
/// numbers a millisecond (no writer comes near one event a millisecond), so that no two sets of
/// writers, in one run or across runs on a reused database, name the same chain. A chain named
/// again would make the server's first write to it move a head it has not seen, and link again.
pub fn first_event_number() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default() * 1_000
}

fn written(rng: &mut Rng, parents: &[EventKey], worker: usize, n: u64) -> Written {
    Written {
        resource_id: format!("pod-{}", n % 1_000),
        correlation_id: format!("write-{worker}-{n}"),
        event_data: json!({"signal_name": "HighCPU", "n": n, "worker": worker}),
        parent: parents[rng.below(parents.len() as u64) as usize],
    }
}

const CREATE_ONE: &str = "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { eventId } }";
const CREATE_MANY: &str = "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { eventId } }";

/// `createAuditEvent` (one event) or `createAuditEvents` (a batch), each event naming a stored parent.
pub struct GraphqlCreate {
    /// The connection.
    pub conn: Conn,
    /// Events per request; 1 uses `createAuditEvent`.
    pub batch: usize,
    /// Parents to name.
    pub parents: Arc<Vec<EventKey>>,
    /// Picks the parents.
    pub rng: Rng,
    /// Which worker this is (part of the correlation id).
    pub worker: usize,
    /// Events written so far.
    pub n: u64,
}

impl GraphqlCreate {
    /// Sends one request and returns the ids of the events it stored.
    pub async fn write(&mut self) -> anyhow::Result<Vec<String>> {
        let inputs: Vec<Value> = (0..self.batch)
            .map(|_| {
                self.n += 1;
                let w = written(&mut self.rng, &self.parents, self.worker, self.n);
                json!({
                    "eventType": "bench.write", "eventCategory": "gateway", "eventAction": "write",
                    "eventOutcome": "success", "actorType": "service", "actorId": "bench-writer",
                    "resourceType": "Pod", "resourceId": w.resource_id, "correlationId": w.correlation_id,
                    "namespace": "prod", "parentEventId": w.parent.id, "eventData": w.event_data,
                })
            })
            .collect();
        let ids: Vec<String> = if self.batch == 1 {
            let data = self
                .conn
                .graphql(graphql_body(CREATE_ONE, json!({"input": inputs[0]})))
                .await?;
            let id = data["createAuditEvent"]["eventId"]
                .as_str()
                .with_context(|| format!("no event id in {data}"))?;
            vec![id.to_string()]
        } else {
            let data = self
                .conn
                .graphql(graphql_body(CREATE_MANY, json!({"inputs": inputs})))
                .await?;
            data["createAuditEvents"]
                .as_array()
                .map(|events| {
                    events
                        .iter()
                        .filter_map(|e| e["eventId"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        anyhow::ensure!(ids.len() == self.batch, "{} events stored of {}", ids.len(), self.batch);
        Ok(ids)
    }
}

impl Op for GraphqlCreate {
    async fn once(&mut self) -> anyhow::Result<u64> {
        Ok(self.write().await?.len() as u64)
    }
}

/// The columns a written event sets; the others take their defaults, as on the server.
const COLUMNS: &str = "event_id, event_version, event_timestamp, event_date, event_type, event_category, \
    event_action, event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, \
    parent_event_id, parent_event_date, namespace, event_data";
const WIDTH: usize = 17;

/// The multi-row `INSERT` of `rows` events (a single-row INSERT for 1).
pub fn insert_sql(rows: usize) -> String {
    let groups: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=WIDTH).map(|c| format!("${}", r * WIDTH + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!("INSERT INTO audit_events ({COLUMNS}) VALUES {}", groups.join(", "))
}

/// How raw rows go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawWay {
    /// One `INSERT … VALUES (…), (…)` statement.
    Insert,
    /// `COPY … FROM STDIN` in CSV.
    Copy,
    /// The statement the server's store sends for the same single event ([`RawSameWrite`]).
    Same,
}

/// The same events written straight to PostgreSQL, naming the same kind of parent (the foreign
/// key is checked for every row, as for the server's writes).
pub struct RawCreate {
    /// The connection.
    pub raw: Raw,
    /// How the rows go in.
    pub way: RawWay,
    /// Rows per statement.
    pub batch: usize,
    /// The INSERT statement for `batch` rows.
    pub insert: Arc<String>,
    /// Parents to name.
    pub parents: Arc<Vec<EventKey>>,
    /// Picks the parents.
    pub rng: Rng,
    /// Which worker this is.
    pub worker: usize,
    /// Events written so far.
    pub n: u64,
}

fn csv_field(out: &mut String, text: &str) {
    out.push('"');
    out.push_str(&text.replace('"', "\"\""));
    out.push('"');
}

impl Op for RawCreate {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let now = Utc::now();
        let mut args = Vec::with_capacity(self.batch * WIDTH);
        let mut csv = String::new();
        for _ in 0..self.batch {
            self.n += 1;
            let w = written(&mut self.rng, &self.parents, self.worker, self.n);
            // Time-ordered like the server's ids, and not seeded: written ids must not repeat
            // across runs on a reused database.
            let id = uuid::Uuid::now_v7();
            match self.way {
                RawWay::Same => anyhow::bail!("the server's own statement is sent by RawSameWrite"),
                RawWay::Insert => args.extend([
                    Arg::Uuid(id),
                    Arg::Text("1.0".into()),
                    Arg::Time(now),
                    Arg::Date(now.date_naive()),
                    Arg::Text("bench.write".into()),
                    Arg::Text("gateway".into()),
                    Arg::Text("write".into()),
                    Arg::Text("success".into()),
                    Arg::Text("service".into()),
                    Arg::Text("bench-writer".into()),
                    Arg::Text("Pod".into()),
                    Arg::Text(w.resource_id),
                    Arg::Text(w.correlation_id),
                    Arg::Uuid(w.parent.id),
                    Arg::Date(w.parent.date),
                    Arg::Text("prod".into()),
                    Arg::Json(w.event_data),
                ]),
                RawWay::Copy => {
                    csv.push_str(&format!(
                        "{id},1.0,{},{},bench.write,gateway,write,success,service,bench-writer,Pod,{},{},{},{},prod,",
                        now.to_rfc3339(),
                        now.date_naive(),
                        w.resource_id,
                        w.correlation_id,
                        w.parent.id,
                        w.parent.date
                    ));
                    csv_field(&mut csv, &w.event_data.to_string());
                    csv.push('\n');
                }
            }
        }
        let stored = match self.way {
            RawWay::Insert | RawWay::Same => {
                self.raw
                    .execute(&Sql {
                        text: self.insert.to_string(),
                        args,
                    })
                    .await?
            }
            RawWay::Copy => {
                self.raw
                    .copy_in(
                        &format!("COPY audit_events ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"),
                        csv.as_bytes(),
                    )
                    .await?
            }
        };
        anyhow::ensure!(stored == self.batch as u64, "{stored} rows stored of {}", self.batch);
        Ok(stored)
    }
}

/// The same writes as [`GraphqlCreate`] (single events or batches), sent straight to PostgreSQL
/// as the statement the server's store sends for them (`Store::write_statement`): the database's
/// share of a write, with the chain hashes computed here and no HTTP, GraphQL or group commit.
pub struct RawSameWrite {
    /// The connection.
    pub raw: Raw,
    /// Builds the statements (it is not used to run them).
    pub store: Store,
    /// Events per statement.
    pub batch: usize,
    /// Parents to name.
    pub parents: Arc<Vec<EventKey>>,
    /// Picks the parents.
    pub rng: Rng,
    /// Which worker this is.
    pub worker: usize,
    /// Events written so far.
    pub n: u64,
}

impl Op for RawSameWrite {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let mut events = Vec::with_capacity(self.batch);
        for _ in 0..self.batch {
            self.n += 1;
            let w = written(&mut self.rng, &self.parents, self.worker, self.n);
            let input = EventInput {
                event_type: "bench.write".into(),
                event_category: "gateway".into(),
                event_action: "write".into(),
                event_outcome: "success".into(),
                actor_type: Some("service".into()),
                actor_id: Some("bench-writer".into()),
                resource_type: Some("Pod".into()),
                resource_id: Some(w.resource_id),
                correlation_id: w.correlation_id,
                namespace: Some("prod".into()),
                parent_event_id: Some(w.parent.id),
                event_data: w.event_data,
                ..EventInput::default()
            };
            let mut event = input
                .validate(&Limits::default(), Utc::now())
                .map_err(|errors| anyhow::anyhow!("the benchmark's event is invalid: {errors:?}"))?;
            event.submitted_by = Some("anonymous".into());
            events.push(event);
        }
        let rows = self.raw.run(self.store.write_statement(events)?).await?;
        let written: i64 = rows
            .first()
            .context("the compare-and-set returned no row")?
            .try_get("written")?;
        anyhow::ensure!(written == self.batch as i64, "{written} rows written of {}", self.batch);
        Ok(self.batch as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_started_later_name_other_chains_than_earlier_ones() {
        let earlier = first_event_number();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = first_event_number();
        assert!(later >= earlier + 1_000, "{earlier} then {later}");
        let mut rng = Rng::new(1);
        let parents = [EventKey {
            id: uuid::Uuid::nil(),
            date: chrono::NaiveDate::MIN,
        }];
        let first = written(&mut rng, &parents, 0, earlier);
        let next = written(&mut rng, &parents, 0, later);
        assert_ne!(first.correlation_id, next.correlation_id);
    }
}
