//! The capacity of one primary: how many events per second it ingests with hash chains on, how
//! many reads per second it answers, through one and through two server processes, and which
//! process uses the cores meanwhile (what saturates first).
//!
//! Writes go to 1,000 correlations chosen at random, so every event extends a chain that other
//! writers extend too. Reads are pages of 50 events, newest first, and single events by id,
//! over what the writes stored. Each client connection is bound to one server, in turn.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::client::{Conn, graphql_body};
use crate::cpu::Cpu;
use crate::data::Rng;
use crate::load::{self, Op, Sample};
use crate::report;
use crate::server::{self, Server};

/// Options of `scale`.
#[derive(clap::Args, Clone, Debug)]
pub struct ScaleOptions {
    /// Seconds each measurement lasts (after a warm-up of a third of that).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// The server binary; by default the release build next to this benchmark, built first.
    #[arg(long)]
    pub server: Option<std::path::PathBuf>,
}

/// Correlations the writes extend.
const CORRELATIONS: u64 = 1_000;

/// Writes of `batch` events (1: `createAuditEvent`) to random correlations.
struct Ingest {
    conn: Conn,
    batch: usize,
    rng: Rng,
}

const CREATE_ONE: &str = "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { chainSeq } }";
const CREATE_MANY: &str = "mutation($inputs: [AuditEventInput!]!) { createAuditEvents(inputs: $inputs) { chainSeq } }";

impl Op for Ingest {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let inputs: Vec<Value> = (0..self.batch)
            .map(|_| {
                let correlation = self.rng.below(CORRELATIONS);
                json!({
                    "eventType": "bench.scale.write", "eventCategory": "gateway", "eventAction": "write",
                    "eventOutcome": "success", "actorType": "service", "actorId": "bench-writer",
                    "correlationId": format!("scale-{correlation}"),
                    "eventData": {"signal_name": "HighCPU", "pod": format!("pod-{}", correlation % 97)},
                })
            })
            .collect();
        let (body, field) = if self.batch == 1 {
            (
                graphql_body(CREATE_ONE, json!({"input": inputs[0]})),
                "createAuditEvent",
            )
        } else {
            (
                graphql_body(CREATE_MANY, json!({"inputs": inputs})),
                "createAuditEvents",
            )
        };
        let data = self.conn.graphql(body).await?;
        let written = match &data[field] {
            Value::Array(events) => events.iter().filter(|e| e["chainSeq"].as_u64().is_some()).count(),
            event if event["chainSeq"].as_u64().is_some() => 1,
            _ => 0,
        };
        anyhow::ensure!(
            written == self.batch,
            "{written} of {} events chained: {data}",
            self.batch
        );
        Ok(written as u64)
    }
}

/// Reads: a page of 50 events, or one event by id, in turn with the ids given.
struct Read {
    conn: Conn,
    page: Bytes,
    ids: Arc<Vec<String>>,
    rng: Rng,
    by_id: bool,
}

const PAGE: &str = "{ auditEvents(first: 50) { edges { node { eventId eventType eventTimestamp correlationId \
    chainSeq actorId eventData } } } }";
const ONE: &str =
    "query($id: UUID!) { auditEvent(eventId: $id) { eventId eventType correlationId chainSeq eventData } }";

impl Op for Read {
    async fn once(&mut self) -> anyhow::Result<u64> {
        if self.by_id {
            let id = &self.ids[self.rng.below(self.ids.len() as u64) as usize];
            let data = self.conn.graphql(graphql_body(ONE, json!({"id": id}))).await?;
            anyhow::ensure!(data["auditEvent"]["eventId"] == id.as_str(), "not found: {data}");
            Ok(1)
        } else {
            let data = self.conn.graphql(self.page.clone()).await?;
            let n = data["auditEvents"]["edges"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(n == 50, "{n} events in a page of 50");
            Ok(1)
        }
    }
}

/// One measured figure: a workload at a concurrency through some servers, over the runs.
struct Row {
    workload: String,
    processes: usize,
    unit: &'static str,
    rates: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    failures: u64,
    first_failure: Option<String>,
    cpu: Vec<Cpu>,
}

impl Row {
    fn add(&mut self, sample: &Sample, items: bool, cpu: Cpu) {
        self.rates.push(if items {
            sample.items_per_second()
        } else {
            sample.requests_per_second()
        });
        self.p50.push(sample.latency_ms(50.0));
        self.p99.push(sample.latency_ms(99.0));
        self.failures += sample.failures;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&sample.first_failure);
        }
        self.cpu.push(cpu);
    }

    /// The median share of the machine's cores each kind of process used.
    fn shares(&self) -> (f64, f64, f64, f64) {
        let cores = crate::cpu::cores().unwrap_or(1) as f64;
        let share = |f: &dyn Fn(&Cpu) -> f64| {
            let values: Vec<f64> = self
                .cpu
                .iter()
                .map(|c| f(c) / (c.seconds * cores).max(f64::EPSILON))
                .collect();
            report::stats(&values).0 * 100.0
        };
        (
            share(&|c| c.server),
            share(&|c| c.postgres),
            share(&|c| c.bench),
            share(&|c| c.others() * c.seconds * cores),
        )
    }
}

/// Runs the workloads through one server process, then two, and returns the section.
pub async fn run(admin_url: &str, runs: usize, options: &ScaleOptions) -> anyhow::Result<String> {
    let binary = server::binary(options.server.as_deref())?;
    let url = report::fresh_database(admin_url).await?;
    let seconds = Duration::from_secs_f64(options.seconds);
    let warm_up = seconds / 3;
    let mut rows: Vec<Row> = Vec::new();
    let key = std::env::temp_dir().join("auditgraph-bench-scale-log.key");
    let _ = std::fs::remove_file(&key);
    let key_text = key.to_string_lossy().to_string();
    let env = [("AUDITGRAPH_LOG_KEY_FILE", key_text.as_str())];
    let mut ids: Vec<String> = Vec::new();
    for processes in [1_usize, 2] {
        let mut servers = Vec::new();
        for n in 0..processes {
            servers.push(Server::start_named(&binary, &url, &format!("auditgraph-bench-scale-{n}"), &env).await?);
        }
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let pids: Vec<u32> = servers.iter().filter_map(Server::pid).collect();
        let timing = Timing {
            runs,
            warm_up,
            seconds,
            pids: &pids,
        };
        let workloads: [(&str, usize, usize); 4] = [
            ("createAuditEvent", 1, 16),
            ("createAuditEvent", 1, 64),
            ("createAuditEvents of 100", 100, 4),
            ("createAuditEvents of 500", 500, 4),
        ];
        for (name, batch, concurrency) in workloads {
            let mut row = new_row(format!("{name}, {concurrency} clients"), processes, "events/s");
            measure_row(&mut row, &timing, true, async |run| {
                let mut workers = Vec::new();
                for w in 0..concurrency {
                    workers.push(Ingest {
                        conn: Conn::connect(addrs[w % addrs.len()]).await?,
                        batch,
                        rng: Rng::new((processes * 1_000 + run * 100 + w) as u64),
                    });
                }
                Ok(workers)
            })
            .await?;
            rows.push(row);
        }
        if ids.is_empty() {
            ids = recent_ids(addrs[0]).await?;
        }
        let ids = Arc::new(ids.clone());
        for (name, by_id, concurrency) in [("a page of 50 events", false, 16), ("one event by id", true, 16)] {
            let mut row = new_row(format!("{name}, {concurrency} clients"), processes, "requests/s");
            measure_row(&mut row, &timing, false, async |run| {
                let mut workers = Vec::new();
                for w in 0..concurrency {
                    workers.push(Read {
                        conn: Conn::connect(addrs[w % addrs.len()]).await?,
                        page: graphql_body(PAGE, json!({})),
                        ids: ids.clone(),
                        rng: Rng::new((run * 100 + w) as u64),
                        by_id,
                    });
                }
                Ok(workers)
            })
            .await?;
            rows.push(row);
        }
        let peaks: Vec<String> = servers
            .iter()
            .map(|s| {
                s.peak_rss()
                    .map_or("?".into(), |b| format!("{:.1} MiB", crate::server::mib(b)))
            })
            .collect();
        eprintln!("peak RSS of the server processes: {}", peaks.join(", "));
        for server in servers {
            server.stop().await?;
        }
    }
    let db = sea_orm::Database::connect(url.as_str())
        .await
        .context("connecting to the bench database")?;
    let header = report::environment(
        &db,
        "written by the workloads themselves: events to 1,000 correlations (every write extends a hash chain)",
    )
    .await?;
    Ok(section(&header, &rows, runs, options.seconds))
}

fn new_row(workload: String, processes: usize, unit: &'static str) -> Row {
    Row {
        workload,
        processes,
        unit,
        rates: Vec::new(),
        p50: Vec::new(),
        p99: Vec::new(),
        failures: 0,
        first_failure: None,
        cpu: Vec::new(),
    }
}

/// How long and how often each figure is measured, and whose CPU is counted.
struct Timing<'a> {
    runs: usize,
    warm_up: Duration,
    seconds: Duration,
    pids: &'a [u32],
}

/// Measures `row`'s workload `timing.runs` times with the workers `workers_for(run)` makes; counts
/// items (events) or requests.
async fn measure_row<O: Op>(
    row: &mut Row,
    timing: &Timing<'_>,
    items: bool,
    mut workers_for: impl AsyncFnMut(usize) -> anyhow::Result<Vec<O>>,
) -> anyhow::Result<()> {
    for run in 0..timing.runs {
        let workers = workers_for(run).await?;
        let (sample, cpu) = measured(workers, timing.warm_up, timing.seconds, timing.pids).await?;
        let rate = if items {
            sample.items_per_second()
        } else {
            sample.requests_per_second()
        };
        eprintln!("{} through {}: {rate:.0} {}", row.workload, row.processes, row.unit);
        row.add(&sample, items, cpu);
    }
    Ok(())
}

/// Measures `workers` and the CPU the processes used meanwhile.
async fn measured<O: Op>(
    workers: Vec<O>,
    warm_up: Duration,
    seconds: Duration,
    pids: &[u32],
) -> anyhow::Result<(Sample, Cpu)> {
    let (workers, _) = load::measure(workers, Duration::ZERO, warm_up).await?;
    let before = Cpu::now(pids);
    let (_, sample) = load::measure(workers, Duration::ZERO, seconds).await?;
    Ok((sample, Cpu::since(before, pids)))
}

/// Ids of the newest events, for the reads by id.
async fn recent_ids(addr: SocketAddr) -> anyhow::Result<Vec<String>> {
    let mut conn = Conn::connect(addr).await?;
    let data = conn
        .graphql(graphql_body(
            "{ auditEvents(first: 1000) { edges { node { eventId } } } }",
            json!({}),
        ))
        .await?;
    let ids: Vec<String> = data["auditEvents"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["node"]["eventId"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no events to read");
    Ok(ids)
}

fn section(header: &str, rows: &[Row], runs: usize, seconds: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Capacity of one primary (`bench scale`)\n");
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "Each figure is the median of {runs} runs of {seconds} s (min–max beside it), closed-loop clients \
         each on one keep-alive connection, bound to the server processes in turn. CPU is the median share \
         of all the machine's cores over a run: the server processes, PostgreSQL, the benchmark's own \
         clients, and anything else.\n"
    );
    let _ = writeln!(
        out,
        "| workload | server processes | rate | p50 / p99 ms | CPU: servers / PostgreSQL / clients / other | failures |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let (median, min, max) = report::stats(&row.rates);
        let (servers, postgres, bench, other) = row.shares();
        let _ = writeln!(
            out,
            "| {} | {} | {median:.0} {} ({min:.0}–{max:.0}) | {:.1} / {:.1} | {servers:.0}% / {postgres:.0}% / {bench:.0}% / {other:.0}% | {} |",
            row.workload,
            row.processes,
            row.unit,
            report::stats(&row.p50).0,
            report::stats(&row.p99).0,
            row.failures
        );
    }
    let failures: Vec<&String> = rows.iter().filter_map(|r| r.first_failure.as_ref()).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFirst failures: {failures:?}");
    }
    let _ = writeln!(
        out,
        "\nReproduce: `cargo run -p bench --release -- --runs {runs} scale --seconds {seconds}`.\n"
    );
    out
}
