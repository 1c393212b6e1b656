//! The `peers` group: auditgraph beside PostGraphile serving the same events, the same documents
//! at the same concurrency, in the same run, ours and PostGraphile's figure one after the other
//! within each run.
//!
//! PostGraphile 4 serves no partitioned table, so it reads an unpartitioned copy of the events in
//! the schema `peers` of the bench database, made at the start of the group from the rows our
//! server serves at that moment (no workload writes while the group runs) and dropped at its end.
//! The copy has what PostGraphile needs to expose the same reads, and the indexes that serve them
//! as ours are served: the primary key on `event_id` (unique in the generated data, checked
//! first; ours is `(event_id, event_date)`), the foreign key `parent_event_id → event_id` (through
//! which PostGraphile exposes an event's children), the keyset index of pages newest first, the
//! partial one of root pages, and a children index whose key also holds the children's page order.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use auditgraph::domain::page::Order;
use auditgraph::domain::{EventFilter, PageWindow};
use sea_orm::ConnectionTrait;
use sea_orm::sqlx::Row;
use serde_json::{Value, json};

use super::{Bench, NESTED, PAGE, PAGE_FIELDS, ServeOptions, conns_at, first_id, list_check};
use crate::bare::Bare;
use crate::client::{Conn, graphql_body};
use crate::ops::{Check, GraphqlRead};
use crate::postgraphile::{self, Installed, PostGraphile};
use crate::raw::{Raw, Sql};
use crate::report::{self, Figure};
use crate::shape;

/// The schema of the copy PostGraphile serves.
const SCHEMA: &str = "peers";

/// The deep page read by cursor: the middle one of the default 1,000,000 events.
const DEEP_PAGE: u64 = 10_000;

/// PostGraphile's order of `auditEvents` pages (newest first) and of children pages (oldest
/// first); both end in the primary key, so PostGraphile adds no tie-breaker and allows cursors.
const NEWEST_FIRST: &str = "[EVENT_TIMESTAMP_DESC, EVENT_ID_DESC]";
const OLDEST_FIRST: &str = "[EVENT_TIMESTAMP_ASC, EVENT_ID_ASC]";

/// What the group measured, or why it was skipped.
pub(super) struct Peers {
    figures: Vec<Figure>,
    /// The bare HTTP server's floor beside PostGraphile's (see [`crate::bare`]).
    stack: Vec<Figure>,
    facts: Vec<String>,
    notes: Vec<String>,
    skipped: Option<String>,
}

impl Peers {
    fn skipped(reason: String) -> Self {
        eprintln!("peers skipped: {reason}");
        Self {
            figures: Vec::new(),
            stack: Vec::new(),
            facts: Vec::new(),
            notes: Vec::new(),
            skipped: Some(reason),
        }
    }
}

/// The copy: what it runs, in order.
fn copy_statements() -> [String; 10] {
    [
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {SCHEMA}"),
        format!("CREATE TABLE {SCHEMA}.audit_events (LIKE public.audit_events INCLUDING DEFAULTS)"),
        format!("INSERT INTO {SCHEMA}.audit_events SELECT * FROM public.audit_events"),
        format!("ALTER TABLE {SCHEMA}.audit_events ADD CONSTRAINT audit_events_pkey PRIMARY KEY (event_id)"),
        format!(
            "ALTER TABLE {SCHEMA}.audit_events ADD CONSTRAINT audit_events_parent_fkey \
             FOREIGN KEY (parent_event_id) REFERENCES {SCHEMA}.audit_events (event_id)"
        ),
        format!("CREATE INDEX audit_events_keyset ON {SCHEMA}.audit_events (event_timestamp, event_id)"),
        format!(
            "CREATE INDEX audit_events_roots ON {SCHEMA}.audit_events (event_timestamp, event_id) \
             WHERE parent_event_id IS NULL"
        ),
        format!(
            "CREATE INDEX audit_events_children ON {SCHEMA}.audit_events (parent_event_id, event_timestamp, event_id) \
             WHERE parent_event_id IS NOT NULL"
        ),
        format!("VACUUM ANALYZE {SCHEMA}.audit_events"),
    ]
}

/// Makes the copy PostGraphile serves; returns its rows.
async fn copy(bench: &Bench, raw: &mut Raw) -> anyhow::Result<u64> {
    eprintln!("copying the events into the schema {SCHEMA} (unpartitioned, for PostGraphile)");
    let db = bench.store.db();
    for statement in copy_statements() {
        if statement.contains("PRIMARY KEY") {
            // The primary key would fail on a repeated id too, but not say which.
            let repeated = raw
                .fetch(&Sql::plain(format!(
                    "SELECT event_id::text AS id, COUNT(*) AS n FROM {SCHEMA}.audit_events \
                     GROUP BY event_id HAVING COUNT(*) > 1 LIMIT 1"
                )))
                .await?;
            if let Some(row) = repeated.first() {
                let (id, n): (String, i64) = (row.try_get("id")?, row.try_get("n")?);
                anyhow::bail!("event id {id} is stored {n} times; PostGraphile's copy needs unique event ids");
            }
        }
        db.execute_unprepared(&statement)
            .await
            .with_context(|| format!("copying the events for PostGraphile: {statement}"))?;
    }
    db.execute_unprepared("CHECKPOINT").await?;
    let rows = raw
        .fetch(&Sql::plain(format!("SELECT COUNT(*) AS n FROM {SCHEMA}.audit_events")))
        .await?;
    let n: i64 = rows.first().context("no count")?.try_get("n")?;
    Ok(u64::try_from(n)?)
}

/// Measures one document on each side at `concurrency`, `runs` times, ours (the server at
/// `ours_at`) first within each run.
async fn beside(
    bench: &Bench,
    ours_at: std::net::SocketAddr,
    peer: &PostGraphile,
    figure: Figure,
    ours: (Value, Check),
    theirs: (Value, Check),
    concurrency: usize,
) -> anyhow::Result<Figure> {
    let workers = |addr, (body, check): (Value, Check)| {
        let bodies = Arc::new(vec![hyper::body::Bytes::from(body.to_string())]);
        let checks = Arc::new(vec![check]);
        async move || {
            let conns = conns_at(addr, concurrency).await?;
            anyhow::Ok(
                conns
                    .into_iter()
                    .map(|conn| GraphqlRead {
                        conn,
                        bodies: bodies.clone(),
                        checks: checks.clone(),
                        sent: 0,
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    bench
        .alternate(figure, workers(ours_at, ours), Some(workers(peer.addr, theirs)))
        .await
}

/// A check of a nested response: `expected` events in all, the first root being `first`.
fn nested_check(roots: &'static str, children: &'static str, expected: u64, first: Option<String>) -> Check {
    Arc::new(move |body: &[u8]| {
        let found = shape::nested(body, roots, children)?;
        anyhow::ensure!(
            found.events == expected,
            "{} events where {expected} were expected",
            found.events
        );
        anyhow::ensure!(
            first.is_none() || found.first == first,
            "the first root is {:?}, not {first:?}",
            found.first
        );
        Ok(found.events)
    })
}

/// The floor: `{ __typename }` on both sides; then, when it runs, the bare server's answer beside
/// PostGraphile's at the same concurrency, into `stack`.
async fn floor(
    bench: &Bench,
    peer: &PostGraphile,
    bare: Option<&Bare>,
    figures: &mut Vec<Figure>,
    stack: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let check: Check = Arc::new(|body: &[u8]| {
        let data = shape::data(body)?;
        anyhow::ensure!(data["__typename"] == "Query", "unexpected {data}");
        Ok(1)
    });
    let body = json!({"query": "{ __typename }"});
    let side = || (body.clone(), check.clone());
    for concurrency in FLOOR_CONCURRENCIES {
        let figure = Figure::new(floor_label(concurrency), "requests/s", "PostGraphile");
        figures.push(beside(bench, bench.addr, peer, figure, side(), side(), concurrency).await?);
        let Some(bare) = bare else {
            continue;
        };
        let figure = Figure::new(bare_label(concurrency), "requests/s", "PostGraphile");
        stack.push(beside(bench, bare.addr, peer, figure, side(), side(), concurrency).await?);
    }
    Ok(())
}

/// The deep page of `events`: [`DEEP_PAGE`] when it has events after it, otherwise the middle
/// page, as [`DEEP_PAGE`] is of the default data set (the cost of PostGraphile's page by cursor
/// grows with the events before it, so a smaller data set is read at the same place).
fn deep_page(events: u64) -> u64 {
    let pages = events / PAGE;
    if pages > DEEP_PAGE { DEEP_PAGE } else { pages / 2 }
}

/// A page of 50 events newest first: page 1, and the deep page by cursor (ours: the cursor of the
/// event before it; PostGraphile's: asked once with `offset`).
async fn pages(
    bench: &Bench,
    peer: &PostGraphile,
    raw: &mut Raw,
    events: u64,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let all = EventFilter::default();
    let deep = deep_page(events);
    let ours_query = format!(
        "query($after: String) {{ auditEvents(first: {PAGE}, after: $after) {{ edges {{ cursor node {{ {PAGE_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let theirs_query = format!(
        "query($after: Cursor) {{ allAuditEvents(first: {PAGE}, after: $after, orderBy: {NEWEST_FIRST}) {{ edges {{ cursor node {{ {PAGE_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let mut conn = Conn::connect(peer.addr).await?;
    let pages = if deep > 1 { vec![1, deep] } else { vec![1] };
    for page in pages {
        let skipped = (page - 1) * PAGE;
        let (ours_after, theirs_after) = if page == 1 {
            (None, None)
        } else {
            let cursor = super::cursor_before(raw, &bench.store, skipped)
                .await?
                .context("no event before the deep page")?;
            let id = cursor.id;
            let query = format!(
                "query($offset: Int!) {{ allAuditEvents(first: 1, offset: $offset, orderBy: {NEWEST_FIRST}) {{ edges {{ cursor node {{ eventId }} }} }} }}"
            );
            let data = conn
                .graphql(graphql_body(&query, json!({"offset": skipped - 1})))
                .await?;
            let edge = &data["allAuditEvents"]["edges"][0];
            let at = edge["node"]["eventId"].as_str();
            anyhow::ensure!(
                at == Some(id.to_string().as_str()),
                "PostGraphile's event at offset {} is {at:?}, ours {id}",
                skipped - 1
            );
            let theirs = edge["cursor"]
                .as_str()
                .with_context(|| format!("no cursor in {data}"))?
                .to_string();
            (Some(cursor), Some(theirs))
        };
        let keyset = Sql::of(&bench.store.list_events_statement(
            &all,
            &PageWindow::forward(PAGE, ours_after),
            Order::NewestFirst,
            super::page_columns(),
        ))?;
        let (rows, first) = first_id(raw, &keyset).await?;
        anyhow::ensure!(rows as u64 == PAGE + 1, "page {page} has {rows} rows");
        let label = if page == 1 {
            "page 1 of 50 events, newest first".to_string()
        } else {
            format!("page {page} of 50 events by cursor")
        };
        let ours = (
            json!({"query": ours_query, "variables": {"after": ours_after.map(|c| c.encode())}}),
            list_check(&["auditEvents", "edges"], PAGE as usize, first.clone()),
        );
        let theirs = (
            json!({"query": theirs_query, "variables": {"after": theirs_after}}),
            list_check(&["allAuditEvents", "edges"], PAGE as usize, first),
        );
        let figure = Figure::new(label, "requests/s", "PostGraphile");
        figures.push(beside(bench, bench.addr, peer, figure, ours, theirs, 1).await?);
    }
    Ok(())
}

/// 50 roots → children(first: 10) → children(first: 10), each event's id and type.
async fn nested(bench: &Bench, peer: &PostGraphile, figures: &mut Vec<Figure>) -> anyhow::Result<()> {
    let mut raw = super::raw_nested(bench).await?;
    let (_, first) = first_id(&mut raw.raw, &raw.roots).await?;
    let expected = raw.run().await?;
    let children = format!("auditEventsByParentEventId(first: 10, orderBy: {OLDEST_FIRST})");
    let theirs = format!(
        "{{ allAuditEvents(first: 50, orderBy: {NEWEST_FIRST}, condition: {{parentEventId: null}}) {{ edges {{ node {{ eventId eventType \
         {children} {{ edges {{ node {{ eventId eventType \
         {children} {{ edges {{ node {{ eventId eventType }} }} }} }} }} }} }} }} }} }}"
    );
    let figure = Figure::new(
        format!("nested query: 50 roots → children(first: 10) → children(first: 10) ({expected} events)"),
        "requests/s",
        "PostGraphile",
    );
    let ours = (
        json!({"query": NESTED}),
        nested_check("auditEvents", "children", expected, first.clone()),
    );
    let theirs = (
        json!({"query": theirs}),
        nested_check("allAuditEvents", "auditEventsByParentEventId", expected, first),
    );
    figures.push(beside(bench, bench.addr, peer, figure, ours, theirs, 1).await?);
    Ok(())
}

/// Installs and starts PostGraphile on a copy of the events and measures both servers; a
/// missing Node.js or npm, a failed install or a PostGraphile that does not start skips the
/// group (the reason goes to the report). `our_pid` is our server's, for its memory.
pub(super) async fn run(bench: &Bench, our_pid: Option<u32>) -> anyhow::Result<Peers> {
    let dir = postgraphile::folder();
    let installed = match postgraphile::install(&dir).await {
        Ok(installed) => installed,
        Err(error) => {
            return Ok(Peers::skipped(format!(
                "PostGraphile could not be installed: {error:#}"
            )));
        }
    };
    let mut raw = Raw::connect(&bench.url).await?;
    let events = copy(bench, &mut raw).await?;
    eprintln!("starting PostGraphile {}", installed.postgraphile);
    let peer = match PostGraphile::start(&dir, &bench.url, SCHEMA).await {
        Ok(peer) => peer,
        Err(error) => {
            drop_copy(bench).await?;
            return Ok(Peers::skipped(format!("PostGraphile did not start: {error:#}")));
        }
    };
    let mut figures = Vec::new();
    let mut stack = Vec::new();
    let mut notes = Vec::new();
    let measured = async {
        // Killed when dropped, should the floor fail; one that does not start leaves the stack
        // unmeasured, said so, and the rest of the group runs.
        let bare = match Bare::start().await {
            Ok(bare) => Some(bare),
            Err(error) => {
                eprintln!("the bare server did not start: {error:#}");
                notes.push(format!(
                    "The bare HTTP server did not start, so the stack alone was not measured: {error:#}"
                ));
                None
            }
        };
        floor(bench, &peer, bare.as_ref(), &mut figures, &mut stack).await?;
        if let Some(bare) = bare {
            bare.stop().await?;
        }
        pages(bench, &peer, &mut raw, events, &mut figures).await?;
        nested(bench, &peer, &mut figures).await
    }
    .await;
    let memory = |who: &str, bytes: Option<u64>| bytes.map(|b| format!("{who}: {:.1} MiB", crate::server::mib(b)));
    let memories: Vec<String> = [
        memory("PostGraphile (node) over this group", peer.peak_rss()),
        memory(
            "auditgraph over the whole benchmark until now",
            our_pid.and_then(crate::server::peak_rss),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    peer.stop().await?;
    drop_copy(bench).await?;
    measured?;
    if !memories.is_empty() {
        notes.push(format!("Peak resident memory (`VmHWM`): {}.", memories.join("; ")));
    }
    let deep = deep_page(events);
    if deep != DEEP_PAGE && deep > 1 {
        notes.push(format!(
            "The data set holds {events} events, too few for page {DEEP_PAGE}, so the deep page is page {deep}: the \
             middle one, as page {DEEP_PAGE} is of the default 1,000,000 events."
        ));
    }
    if deep > 1 {
        notes.push(
            "Pages by cursor: PostGraphile 4 turns `after:` into `event_timestamp < $3 OR (event_timestamp = $3 AND \
             (event_id < $4 OR …))`, with no bound PostgreSQL can use as an index range: the plan reads the \
             `(event_timestamp, event_id)` index backward from the newest event and filters out every event before \
             the cursor (`Rows Removed by Filter` grows with the page), and `hasNextPage` scans again under the \
             same condition (an `EXISTS` in the same statement). Ours adds `event_timestamp <= $1` (and the \
             partition's date) to the same condition: an index range starting at the cursor."
                .to_string(),
        );
    }
    Ok(Peers {
        figures,
        stack,
        facts: facts(&installed, &bench.url, events),
        notes,
        skipped: None,
    })
}

async fn drop_copy(bench: &Bench) -> anyhow::Result<()> {
    bench
        .store
        .db()
        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .context("dropping PostGraphile's copy")?;
    Ok(())
}

/// The lines of the section's header about PostGraphile and its copy of the data.
fn facts(installed: &Installed, url: &str, events: u64) -> Vec<String> {
    vec![
        format!(
            "PostGraphile: {} from the npm registry, pinned by `bench/peers/package-lock.json` and installed by `npm ci` \
             (this run: {}); Node.js {}",
            installed.postgraphile,
            if installed.installed_now {
                "installed"
            } else {
                "already installed"
            },
            installed.node
        ),
        format!(
            "PostGraphile started by the benchmark as `{}`: reads only, JSON columns as JSON values (as ours), no query \
             log; otherwise defaults (Relay connections only, no watch mode, no CORS, one Node.js process, a pool of up \
             to 10 connections, prepared statements). Session settings: PostGraphile's `{}`, ours `{}`",
            PostGraphile::command_line(url, SCHEMA),
            postgraphile::PG_OPTIONS,
            auditgraph::store::POSTGRES_SESSION_SETTINGS
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "PostGraphile's data: PostGraphile 4 serves no partitioned table, so it reads an unpartitioned copy of the \
             same {events} events (every column) in the schema `{SCHEMA}`, made before the group and dropped after it: \
             primary key `event_id`, foreign key `parent_event_id → event_id` (children are the relation \
             `auditEventsByParentEventId`), indexes `(event_timestamp, event_id)`, the same `WHERE parent_event_id IS \
             NULL` for roots, and `(parent_event_id, event_timestamp, event_id) WHERE parent_event_id IS NOT NULL` for \
             children pages; `VACUUM ANALYZE`d. Ours serves the monthly-partitioned table"
        ),
        "server: ours the release build with `RUST_LOG=warn` and default settings (pool of 16 connections); both \
         servers, the bare server and the load generator share the same cores"
            .to_string(),
        format!(
            "documents: the same fields on both sides; pages newest first (PostGraphile: `orderBy: {NEWEST_FIRST}`), \
             children oldest first (`orderBy: {OLDEST_FIRST}`), roots by `condition: {{parentEventId: null}}`"
        ),
    ]
}

/// The section of the peers group.
pub(super) fn section(peers: &Peers, header: &str, runs: usize, seconds: f64, options: &ServeOptions) -> String {
    let mut section = format!("## Serving: auditgraph beside PostGraphile\n\n{header}");
    for fact in &peers.facts {
        let _ = writeln!(section, "- {fact}");
    }
    let _ = writeln!(
        section,
        "- each figure: {runs} runs of {seconds} s after a {:.1} s warm-up; median (min–max) of the runs; ours and \
         PostGraphile's figure alternate within each run, at the same concurrency (one keep-alive connection per \
         worker); ratio = ours ÷ PostGraphile in requests/s\n",
        seconds / 3.0
    );
    if let Some(reason) = &peers.skipped {
        let _ = writeln!(section, "**Skipped**: {reason}");
    } else {
        let theirs = format!("PostGraphile {}", postgraphile::VERSION);
        section.push_str(&report::table_beside(&peers.figures, "auditgraph", &theirs, None));
        section.push('\n');
        for note in &peers.notes {
            let _ = writeln!(section, "{note}\n");
        }
        section.push_str(&targets(&peers.figures));
        if !peers.stack.is_empty() {
            section.push_str(&stack_section(&peers.figures, &peers.stack, &theirs));
        }
    }
    let _ = writeln!(
        section,
        "\nReproduce: `cargo run -p bench --release -- --runs {runs} serve --only peers --events {} --seconds {seconds}`.",
        options.events
    );
    section
}

/// The floor's target (at least this many times PostGraphile's requests/s).
const FLOOR_TARGET: f64 = 2.0;

/// The concurrencies the floor is measured at, ours and the bare server's.
const FLOOR_CONCURRENCIES: [usize; 2] = [1, 4];

/// The label of our floor's figure at `concurrency`.
fn floor_label(concurrency: usize) -> String {
    format!("`{{ __typename }}`, concurrency {concurrency}")
}

/// The label of the bare server's figure at `concurrency`.
fn bare_label(concurrency: usize) -> String {
    format!("fixed answer to `{{ __typename }}`, concurrency {concurrency}")
}

/// The figure labelled `label`.
fn labelled<'a>(figures: &'a [Figure], label: &str) -> Option<&'a Figure> {
    figures.iter().find(|f| f.label == label)
}

/// The bare server's floor beside PostGraphile's, and what it says of the floor's target at each
/// concurrency.
fn stack_section(figures: &[Figure], stack: &[Figure], theirs: &str) -> String {
    let mut out = format!(
        "\n### The HTTP stack alone\n\nA bare HTTP server on the same stack (hyper 1, tokio with its default worker \
         threads, one task per connection, Nagle's algorithm off), with no router, middleware, GraphQL or database: it \
         reads each request's body and answers the bytes ours answers `{{ __typename }}` with. It serves HTTP/1.1 \
         through hyper's own connection, where ours goes through `axum::serve` (hyper-util's connection that tells \
         HTTP/1.1 from HTTP/2, graceful shutdown, the peer's address). Its figure and PostGraphile's alternate within \
         each run, right after ours and PostGraphile's at the same concurrency. What it reaches is about the most any \
         server on this stack reaches on this machine.\n\n{}",
        report::table_beside(stack, "bare server", theirs, None)
    );
    for concurrency in FLOOR_CONCURRENCIES {
        let Some(bare) = labelled(stack, &bare_label(concurrency)) else {
            continue;
        };
        let ours = labelled(figures, &floor_label(concurrency));
        let rates = ours.and_then(|ours| {
            let bare = report::stats(&bare.ours).0;
            (!ours.ours.is_empty() && bare > 0.0).then(|| report::stats(&ours.ours).0 / bare)
        });
        if let Some(line) = stack_bound(ours.and_then(Figure::ratio), bare.ratio(), rates, concurrency) {
            let _ = writeln!(out, "\n{line}");
        }
    }
    out
}

/// What the bare server's ratio to PostGraphile (`bare`) says of the floor's target at
/// `concurrency`, beside ours (`ours`, ours ÷ PostGraphile in the same run; `rates`, our
/// requests/s ÷ the bare server's, each measured beside its own PostGraphile figure).
fn stack_bound(ours: Option<f64>, bare: Option<f64>, rates: Option<f64>, concurrency: usize) -> Option<String> {
    let (ours, bare) = (ours?, bare?);
    let kept = ours / bare;
    let direct = rates.map_or(String::new(), |rates| {
        format!(
            " In requests/s, ours was {:.0}% of the bare server's (each measured beside its own PostGraphile figure).",
            rates * 100.0
        )
    });
    Some(if bare < FLOOR_TARGET {
        format!(
            "- Concurrency {concurrency}: the bare server reached {bare:.2}× PostGraphile, below the target of \
             {FLOOR_TARGET}×: **in this run the target was out of reach for any server on this HTTP stack**, \
             whatever it does per request. Ours reached {ours:.2}×, {:.0}% of the bare server's ratio.{direct}",
            kept * 100.0
        )
    } else {
        format!(
            "- Concurrency {concurrency}: the bare server reached {bare:.2}× PostGraphile; the target of {FLOOR_TARGET}× \
             needs a server to reach {:.0}% of the bare server's ratio. Ours reached {ours:.2}×, {:.0}% of it.{direct}",
            FLOOR_TARGET / bare * 100.0,
            kept * 100.0
        )
    })
}

/// Whether a figure's label names the workload of a target.
type Measures = fn(&str) -> bool;

/// The targets next to what was measured.
fn targets(figures: &[Figure]) -> String {
    let mut out = String::from("### Against the targets\n\n| target | measured | holds |\n|---|---|---|\n");
    let wanted: [(&str, Measures, f64); 5] = [
        (
            "nested query ≥ 1.5× PostGraphile",
            |l| l.starts_with("nested query"),
            1.5,
        ),
        (
            "page of 50 (page 1) ≥ 2× PostGraphile",
            |l| l.starts_with("page 1 "),
            2.0,
        ),
        (
            "page of 50 (deep, by cursor) ≥ 2× PostGraphile",
            |l| l.ends_with("by cursor"),
            2.0,
        ),
        (
            "floor at concurrency 1 ≥ 2× PostGraphile",
            |l| l == floor_label(1),
            FLOOR_TARGET,
        ),
        (
            "floor at concurrency 4 ≥ 2× PostGraphile",
            |l| l == floor_label(4),
            FLOOR_TARGET,
        ),
    ];
    for (target, measures, at_least) in wanted {
        let found = figures.iter().find(|f| measures(&f.label));
        if let Some(ratio) = found.and_then(Figure::ratio) {
            let _ = writeln!(
                out,
                "| {target} | {ratio:.2}× | {} |",
                if ratio >= at_least { "yes" } else { "**no**" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_server_below_the_target_puts_it_out_of_reach() {
        let line = stack_bound(Some(1.66), Some(1.9), Some(0.8), 1).unwrap();
        assert!(
            line.contains("reached 1.90× PostGraphile, below the target of 2×"),
            "{line}"
        );
        assert!(
            line.contains("out of reach for any server on this HTTP stack"),
            "{line}"
        );
        assert!(
            line.contains("Ours reached 1.66×, 87% of the bare server's ratio"),
            "{line}"
        );
        assert!(
            line.contains("In requests/s, ours was 80% of the bare server's"),
            "{line}"
        );
    }

    #[test]
    fn a_bare_server_beyond_the_target_says_how_much_of_its_ratio_a_server_must_reach() {
        let line = stack_bound(Some(1.66), Some(2.5), None, 1).unwrap();
        assert!(
            line.contains("needs a server to reach 80% of the bare server's ratio"),
            "{line}"
        );
        assert!(line.contains("Ours reached 1.66×, 66% of it"), "{line}");
        assert!(!line.contains("out of reach"), "{line}");
        assert!(!line.contains("In requests/s"), "{line}");
    }

    #[test]
    fn no_stack_bound_is_given_without_both_figures() {
        assert!(stack_bound(None, Some(2.5), Some(0.8), 1).is_none());
        assert!(stack_bound(Some(1.66), None, Some(0.8), 4).is_none());
    }
}
