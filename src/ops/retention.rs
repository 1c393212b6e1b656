//! Retention: deleting events whose `retention_days` have passed, without ever breaking a tree,
//! a hold or a proof.
//!
//! - An event goes when its retention has passed by the run's date, no legal hold covers it,
//!   and none of its children remains: trees are purged leaf-first, and a parent stays while any
//!   child stays (the foreign key would refuse anything else; the run never asks).
//! - On PostgreSQL, a monthly partition whose every row may go, and none of whose rows is the
//!   parent of an event outside it, is detached and dropped whole instead.
//! - The database records every deleted event (`audit_purged`: key, chain position, hash, the
//!   run) as it goes, so chains and the transparency log still verify and `auditgraph verify`
//!   tells a purge from a removal.
//! - One run at a time across every process; a run stopped part-way (by `--max-batches`, or
//!   because its process died) is resumed by the next one. `--dry-run` reports what would go.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use uuid::Uuid;

use super::Progress;
use crate::store::{Claim, RetentionRun, RunCounts, RunStatus, Store, StoreError};

/// How long a run's runner may stay silent before another takes the run over.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// Purges retried when a concurrent write gave a candidate a child (or a hold) meanwhile.
const PURGE_RETRIES: usize = 3;

/// How to run.
#[derive(Clone, Debug)]
pub struct RetentionOptions {
    /// Expired events examined per batch (each batch is one short transaction).
    pub batch_size: u64,
    /// Stop (paused, to be resumed) after this many batches.
    pub max_batches: Option<u64>,
    /// Only report what would go.
    pub dry_run: bool,
    /// Show progress on a terminal.
    pub progress: bool,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            max_batches: None,
            dry_run: false,
            progress: false,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It purged everything it could.
    Finished(RetentionRun),
    /// It stopped after `--max-batches`; the next run resumes it.
    Paused(RetentionRun),
    /// It only reported.
    DryRun(RetentionRun),
    /// Another runner is at work on this run.
    Busy(RetentionRun),
}

impl Outcome {
    /// The run, whatever the outcome.
    pub fn run(&self) -> &RetentionRun {
        match self {
            Self::Finished(run) | Self::Paused(run) | Self::DryRun(run) | Self::Busy(run) => run,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = self.run();
        let c = &run.counts;
        let partitions = if c.partitions_dropped.is_empty() {
            "none".to_string()
        } else {
            c.partitions_dropped.join(", ")
        };
        match self {
            Self::Busy(run) => write!(
                f,
                "retention run {} is in progress on {} (last report {}); nothing done",
                run.run_id,
                run.runner,
                run.heartbeat_at.to_rfc3339()
            ),
            Self::DryRun(_) => write!(
                f,
                "retention dry run {} (as of {}, nothing deleted): {} events expired; would delete {}; \
                 would keep {} under legal hold and {} whose children stay; partitions that would be dropped whole: {partitions}",
                run.run_id, run.as_of, c.rows_scanned, c.rows_deleted, c.kept_held, c.kept_parent
            ),
            Self::Finished(_) | Self::Paused(_) => write!(
                f,
                "retention run {} {} (as of {}): {} expired events examined, {} deleted; kept {} under legal hold \
                 and {} whose children stay; partitions dropped whole: {partitions}{}",
                run.run_id,
                if matches!(self, Self::Paused(_)) {
                    "paused"
                } else {
                    "finished"
                },
                run.as_of,
                c.rows_scanned,
                c.rows_deleted,
                c.kept_held,
                c.kept_parent,
                if matches!(self, Self::Paused(_)) {
                    "; run again to resume it"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Who runs: host and process, recorded with the run.
pub fn runner_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}:{}", std::process::id(), Uuid::now_v7().simple())
}

/// Runs retention as of today (UTC): a dry run, a new run, or the unfinished one resumed.
pub async fn run(store: &Store, options: &RetentionOptions, runner: &str) -> Result<Outcome, StoreError> {
    let today = Utc::now().date_naive();
    if options.dry_run {
        return dry_run(store, today, runner).await;
    }
    let mut run = match store.claim_retention_run(runner, today, STALE_AFTER).await? {
        Claim::Busy(run) => return Ok(Outcome::Busy(run)),
        Claim::Started(run) => {
            tracing::info!(run = %run.run_id, as_of = %run.as_of, "retention run starts");
            run
        }
        Claim::Resumed(run) => {
            tracing::info!(run = %run.run_id, as_of = %run.as_of, deleted = run.counts.rows_deleted, "retention run resumes");
            run
        }
    };
    match purge_all(store, options, &mut run).await {
        Ok(paused) => {
            let status = if paused { RunStatus::Paused } else { RunStatus::Finished };
            if !paused {
                let (held, unheld) = store.expired_kept(run.as_of).await?;
                run.counts.kept_held = held;
                run.counts.kept_parent = unheld;
            }
            store.save_retention_run(&run, status, None).await?;
            run.status = status;
            tracing::info!(run = %run.run_id, deleted = run.counts.rows_deleted, status = status.as_str(), "retention run ends");
            Ok(if paused {
                Outcome::Paused(run)
            } else {
                Outcome::Finished(run)
            })
        }
        Err(error) => {
            tracing::error!(run = %run.run_id, %error, "retention run failed");
            // The failure is what matters; recording it may fail for the same reason.
            let _ = store
                .save_retention_run(&run, RunStatus::Failed, Some(&error.to_string()))
                .await;
            Err(error)
        }
    }
}

/// Reports what a run would do, and records the report.
async fn dry_run(store: &Store, as_of: NaiveDate, runner: &str) -> Result<Outcome, StoreError> {
    let (expired, held, blocked) = store.expired_census(as_of).await?;
    let partitions = store.purgeable_partitions(as_of).await?;
    let counts = RunCounts {
        rows_scanned: expired,
        rows_deleted: expired.saturating_sub(held + blocked),
        kept_held: held,
        kept_parent: blocked,
        partitions_dropped: partitions.into_iter().map(|(name, _, _)| name).collect(),
    };
    Ok(Outcome::DryRun(store.record_dry_run(runner, as_of, &counts).await?))
}

/// Purges until nothing more can go; `Ok(true)` when it stopped at `max_batches` instead.
async fn purge_all(store: &Store, options: &RetentionOptions, run: &mut RetentionRun) -> Result<bool, StoreError> {
    let started = Instant::now();
    let mut progress = options
        .progress
        .then(|| Progress::new(None, false, "expired events deleted", 10_000));
    let mut batches = 0_u64;
    for (name, month, _) in store.purgeable_partitions(run.as_of).await? {
        if let Some(rows) = store.drop_partition(run, &name, month).await? {
            tracing::info!(run = %run.run_id, partition = %name, rows, "partition dropped whole");
            run.counts.rows_deleted += rows;
            run.counts.rows_scanned += rows;
            run.counts.partitions_dropped.push(name);
            store.save_retention_run(run, RunStatus::Running, None).await?;
        }
    }
    let mut after = None;
    loop {
        let page = store.expired_after(run.as_of, after, options.batch_size).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.expires, last.event_date, last.event_id));
        run.counts.rows_scanned += page.len() as u64;
        let leaves: Vec<(Uuid, NaiveDate)> = page
            .iter()
            .filter(|e| !e.held && !e.has_children)
            .map(|e| (e.event_id, e.event_date))
            .collect();
        run.counts.rows_deleted += purge_upwards(store, run, leaves).await?;
        batches += 1;
        store.save_retention_run(run, RunStatus::Running, None).await?;
        if let Some(progress) = &mut progress {
            progress.update(run.counts.rows_deleted, run.counts.rows_deleted);
        }
        if options.max_batches.is_some_and(|max| batches >= max) {
            if let Some(progress) = &progress {
                progress.finish();
            }
            return Ok(true);
        }
        if (page.len() as u64) < options.batch_size {
            break;
        }
    }
    if let Some(progress) = &progress {
        progress.finish();
    }
    tracing::debug!(run = %run.run_id, seconds = started.elapsed().as_secs_f64(), "retention purge done");
    Ok(false)
}

/// Purges `leaves`, then each parent that became a leaf, up the trees; returns how many went.
async fn purge_upwards(store: &Store, run: &RetentionRun, mut keys: Vec<(Uuid, NaiveDate)>) -> Result<u64, StoreError> {
    let mut deleted = 0;
    while !keys.is_empty() {
        let gone = purge_retrying(store, run, &keys).await?;
        deleted += gone.len() as u64;
        let mut parents: BTreeSet<(Uuid, NaiveDate)> = BTreeSet::new();
        let mut legacy: BTreeSet<Uuid> = BTreeSet::new();
        for (id, date) in gone.iter().filter_map(|d| d.parent) {
            match date {
                Some(date) => {
                    parents.insert((id, date));
                }
                None => {
                    legacy.insert(id);
                }
            }
        }
        if !legacy.is_empty() {
            let ids: Vec<Uuid> = legacy.into_iter().collect();
            parents.extend(store.keys_of(&ids).await?);
        }
        keys = parents.into_iter().collect();
    }
    Ok(deleted)
}

/// One purge, tried again when a concurrent write (a new child, a new hold) made the database
/// refuse a row the statement had judged purgeable by an older snapshot.
async fn purge_retrying(
    store: &Store,
    run: &RetentionRun,
    keys: &[(Uuid, NaiveDate)],
) -> Result<Vec<crate::store::Deleted>, StoreError> {
    let mut attempt = 0;
    loop {
        match store.purge(run, keys).await {
            // A serialization failure or a deadlock maps to `Unavailable` (retryable for clients);
            // here it is retried like the foreign key's refusal.
            Err(StoreError::Database(error) | StoreError::Unavailable(error))
                if attempt < PURGE_RETRIES && is_refused_by_a_writer(&error) =>
            {
                attempt += 1;
                tracing::debug!(%error, attempt, "a purge met a concurrent write; trying it again");
            }
            other => return other,
        }
    }
}

/// A foreign-key or hold refusal (SQLSTATE 23503), a serialization failure or a deadlock.
fn is_refused_by_a_writer(error: &sea_orm::DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let (sea_orm::DbErr::Query(RuntimeErr::SqlxError(e)) | sea_orm::DbErr::Exec(RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| matches!(code.as_ref(), "23503" | "40001" | "40P01"))
}
