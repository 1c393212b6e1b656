//! The historical workload (`bench history`): `auditgraph import` of legacy events and
//! `backfill-parent-dates`, beside the planning document's one-shot `UPDATE … FROM`.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use auditgraph::config::Config;
use auditgraph::ops::backfill::{self, BackfillOptions};
use auditgraph::ops::import::{self, ImportOptions};
use auditgraph::store::Store;
use chrono::{Duration, Utc};
use sea_orm::ConnectionTrait;

use crate::{data, report};

fn id(kind: u64, n: u64) -> uuid::Uuid {
    let hi = data::mix(kind << 40 ^ n);
    let lo = data::mix(hi ^ 0x5555);
    uuid::Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()).into_uuid()
}

/// Writes `events` events as NDJSON: roots spread over the twelve months before this one, each
/// with three children that name it without a parent date (legacy links).
fn generate(path: &Path, events: u64) -> anyhow::Result<()> {
    let roots = events / 4;
    let start = data::this_month()? - Duration::days(365);
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

fn describe(events: u64) -> String {
    format!(
        "{events} events over 12 monthly partitions ({} roots, {} legacy children)",
        events / 4,
        events / 4 * 3
    )
}

/// The seed's one-shot backfill, verbatim.
const ONE_SHOT: &str = "UPDATE audit_events child
SET parent_event_date = parent.event_date
FROM audit_events parent
WHERE child.parent_event_id = parent.event_id
  AND child.parent_event_date IS NULL";

/// Runs the history workload `runs` times and returns its section for `BENCHMARKS.md`.
pub async fn run(admin_url: &str, runs: usize, events: u64) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join("auditgraph-bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("history-{events}.ndjson"));
    if !file.exists() {
        eprintln!("generating {events} events into {}", file.display());
        generate(&file, events)?;
    }
    let (mut imports, mut backfills, mut one_shots) = (Vec::new(), Vec::new(), Vec::new());
    let mut header = String::new();
    for run in 1..=runs {
        let url = report::fresh_database(admin_url).await?;
        let mut config = Config::for_database(&url);
        // The one-shot UPDATE of a million rows runs for minutes; the server's 30 s guard is not
        // what is measured here.
        config.statement_timeout_secs = 24 * 3600;
        let store = Store::connect(&config.store_options()?).await?;
        store.migrate().await?;
        if header.is_empty() {
            header = report::environment(store.db(), &describe(events)).await?;
        }
        let options = ImportOptions {
            source: file.display().to_string(),
            batch_size: 5_000,
            skip_invalid: false,
            operator: "bench".into(),
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
    let (im, imin, imax) = report::stats(&imports);
    let (bm, bmin, bmax) = report::stats(&backfills);
    let (om, omin, omax) = report::stats(&one_shots);
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
        runs,
    ))
}
