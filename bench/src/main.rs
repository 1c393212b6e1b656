//! Benchmarks of auditgraph next to raw PostgreSQL doing the same work, on the same machine, in
//! the same run (SPEC §9). Figures go to `BENCHMARKS.md`.
//!
//! `cargo run -p bench --release -- history` measures the historical import and the parent-date
//! backfill against the one-shot `UPDATE … FROM` of the planning document.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use auditgraph::config::Config;
use auditgraph::ops::backfill::{self, BackfillOptions};
use auditgraph::ops::import::{self, ImportOptions};
use auditgraph::store::Store;
use chrono::{Datelike, Duration, TimeZone, Utc};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement};

#[derive(Parser)]
#[command(about = "auditgraph benchmarks beside raw PostgreSQL")]
struct Cli {
    /// A PostgreSQL database the benchmark may use to create and drop `auditgraph_bench`.
    #[arg(
        long,
        env = "AUDITGRAPH_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,
    /// How many times each workload runs (the median is reported, with min and max).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the results are written.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: String,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Import N legacy events, then backfill their parent dates, beside the one-shot UPDATE … FROM.
    History {
        /// Events to generate (a quarter roots, the rest children naming them without a date).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
}

/// A deterministic 64-bit mix (SplitMix64), so that every run generates the same data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn id(kind: u64, n: u64) -> uuid::Uuid {
    let hi = mix(kind << 40 ^ n);
    let lo = mix(hi ^ 0x5555);
    uuid::Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()).into_uuid()
}

/// Writes `events` events as NDJSON: roots spread over the twelve months before this one, each
/// with three children that name it without a parent date (legacy links).
fn generate(path: &Path, events: u64) -> anyhow::Result<()> {
    let roots = events / 4;
    let now = Utc::now();
    let this_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .context("month")?;
    let start = this_month - Duration::days(365);
    let step = Duration::days(364).num_seconds() / roots.max(1) as i64;
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for r in 0..roots {
        let ts = start + Duration::seconds(step * r as i64);
        let root = id(1, r);
        let event = |id: uuid::Uuid, ts: chrono::DateTime<Utc>, kind: &str, parent: Option<uuid::Uuid>| {
            let mut e = serde_json::json!({
                "event_id": id, "version": "1.0", "event_type": format!("bench.{kind}"),
                "event_timestamp": ts.to_rfc3339(), "event_category": "gateway", "event_action": kind,
                "event_outcome": "success", "correlation_id": format!("rr-{r}"),
                "event_data": {"signal_name": "HighCPU", "namespace": "prod", "sequence": r},
            });
            if let Some(parent) = parent {
                e["parent_event_id"] = serde_json::json!(parent);
            }
            e
        };
        writeln!(out, "{}", event(root, ts, "root", None))?;
        for c in 0..3 {
            let child_ts = ts + Duration::seconds(30 * (c + 1));
            writeln!(out, "{}", event(id(2, r * 3 + c as u64), child_ts, "child", Some(root)))?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let admin = Database::connect(admin_url).await.context("connecting to PostgreSQL")?;
    admin
        .execute_unprepared("DROP DATABASE IF EXISTS auditgraph_bench WITH (FORCE)")
        .await?;
    admin.execute_unprepared("CREATE DATABASE auditgraph_bench").await?;
    admin.close().await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .context("admin URL has no database")?;
    Ok(format!("{base}/auditgraph_bench"))
}

async fn scalar(store: &Store, sql: &str) -> anyhow::Result<String> {
    let row = store
        .db()
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<String>(0)?)
}

/// The median, min and max of some figures.
fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (median, *v.first().unwrap_or(&0.0), *v.last().unwrap_or(&0.0))
}

/// The seed's one-shot backfill, verbatim.
const ONE_SHOT: &str = "UPDATE audit_events child
SET parent_event_date = parent.event_date
FROM audit_events parent
WHERE child.parent_event_id = parent.event_id
  AND child.parent_event_date IS NULL";

async fn history(cli: &Cli, events: u64) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join("auditgraph-bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("history-{events}.ndjson"));
    if !file.exists() {
        eprintln!("generating {events} events into {}", file.display());
        generate(&file, events)?;
    }
    let (mut imports, mut backfills, mut one_shots) = (Vec::new(), Vec::new(), Vec::new());
    let mut header = String::new();
    for run in 1..=cli.runs {
        let url = fresh_database(&cli.admin_url).await?;
        let mut config = Config::for_database(&url);
        // The one-shot UPDATE of a million rows runs for minutes; the server's 30 s guard is not
        // what is measured here.
        config.statement_timeout_secs = 24 * 3600;
        let store = Store::connect(&config.store_options()).await?;
        store.migrate().await?;
        if header.is_empty() {
            header = environment(&store, events).await?;
        }
        let options = ImportOptions {
            source: file.display().to_string(),
            batch_size: 5_000,
            skip_invalid: false,
        };
        let summary = import::run(&store, &options).await?;
        anyhow::ensure!(summary.imported == events, "imported {} of {events}", summary.imported);
        let import_rate = summary.imported as f64 / summary.seconds;
        store.db().execute_unprepared("VACUUM ANALYZE audit_events").await?;

        let options = BackfillOptions {
            batch_size: 10_000,
            dry_run: false,
            list_orphans: 0,
        };
        let filled = backfill::run(&store, &options).await?;
        anyhow::ensure!(filled.filled == events / 4 * 3, "backfill filled {}", filled.filled);
        anyhow::ensure!(
            filled.foreign_key.as_ref().is_some_and(|fk| fk.valid),
            "foreign key not valid"
        );
        let backfill_rate = filled.filled as f64 / filled.seconds;

        // Back to the legacy state, then the seed's one-shot statement on the same rows.
        store
            .db()
            .execute_unprepared("UPDATE audit_events SET parent_event_date = NULL WHERE parent_event_id IS NOT NULL")
            .await?;
        store.db().execute_unprepared("TRUNCATE audit_backfill_journal").await?;
        store.db().execute_unprepared("VACUUM ANALYZE audit_events").await?;
        let started = Instant::now();
        let updated = store.db().execute_unprepared(ONE_SHOT).await?.rows_affected();
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(updated == events / 4 * 3, "one-shot updated {updated}");
        let one_shot_rate = updated as f64 / seconds;
        eprintln!(
            "run {run}: import {import_rate:.0} events/s ({:.1} s), backfill {backfill_rate:.0} rows/s ({:.1} s, {} batches), \
             one-shot UPDATE … FROM {one_shot_rate:.0} rows/s ({seconds:.1} s)",
            summary.seconds, filled.seconds, filled.batches
        );
        imports.push(import_rate);
        backfills.push(backfill_rate);
        one_shots.push(one_shot_rate);
        store.db().clone().close().await.ok();
    }
    let (im, imin, imax) = stats(&imports);
    let (bm, bmin, bmax) = stats(&backfills);
    let (om, omin, omax) = stats(&one_shots);
    Ok(format!(
        "## Historical import and parent-date backfill\n\n{header}\n\
         | workload | median | min | max |\n|---|---|---|---|\n\
         | `auditgraph import` (COPY, batches of 5,000) | {im:.0} events/s | {imin:.0} | {imax:.0} |\n\
         | `backfill-parent-dates` (keyset batches of 10,000, journaled) | {bm:.0} rows/s | {bmin:.0} | {bmax:.0} |\n\
         | one-shot `UPDATE … FROM` of the planning document | {om:.0} rows/s | {omin:.0} | {omax:.0} |\n\n\
         Backfill ÷ one-shot (medians): **{:.2}×**. The batched backfill trades raw speed for short \
         transactions (live writes keep going), resumability, a journal that makes it reversible, and \
         the orphan and skew report; the one-shot statement holds its row locks on all {} rows for its \
         whole run and cannot be resumed.\n\nReproduce: `cargo run -p bench --release -- --runs {} history --events {events}`.\n",
        bm / om,
        events / 4 * 3,
        cli.runs,
    ))
}

async fn environment(store: &Store, events: u64) -> anyhow::Result<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version = scalar(store, "SELECT version()").await?;
    let settings = scalar(
        store,
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings \
         WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'fsync', 'max_wal_size', 'jit')",
    )
    .await?;
    Ok(format!(
        "- date: {}\n- commit: {commit}\n- CPU: {cpu}, {cores} cores\n- PostgreSQL: {version}\n- settings: {settings}\n\
         - data: {events} events over 12 monthly partitions ({} roots, {} legacy children)\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        events / 4,
        events / 4 * 3
    ))
}

/// Replaces (or appends) the section that starts with `## title` in the results file.
fn write_section(path: &str, section: &str) -> anyhow::Result<()> {
    let title = section.lines().next().unwrap_or_default();
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures measured by `bench` (see `bench/README.md`): auditgraph beside raw PostgreSQL doing \
         the same work on the same data in the same run.\n"
            .into()
    });
    let updated = match existing.find(title) {
        Some(start) => {
            let end = existing[start + title.len()..]
                .find("\n## ")
                .map_or(existing.len(), |i| start + title.len() + i + 1);
            format!("{}{}{}", &existing[..start], section, &existing[end..])
        }
        None => format!("{}\n\n{}", existing.trim_end(), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let section = match cli.workload {
        Workload::History { events } => history(&cli, events).await?,
    };
    print!("{section}");
    write_section(&cli.output, &section)?;
    Ok(())
}
