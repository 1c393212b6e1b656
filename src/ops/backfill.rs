//! `auditgraph backfill-parent-dates` (BR-STORAGE-037): completes legacy parent links in keyset
//! batches, next to live writes; `--dry-run` only counts; `--rollback` undoes journaled fills.

use std::time::Instant;

use uuid::Uuid;

use super::Progress;
use crate::store::{ForeignKeyCheck, Store};

/// How to backfill.
#[derive(Clone, Debug)]
pub struct BackfillOptions {
    /// Legacy rows per batch (each batch is one short transaction).
    pub batch_size: u64,
    /// Only count what would be filled; write nothing.
    pub dry_run: bool,
    /// How many orphan ids to list in the report.
    pub list_orphans: usize,
}

/// What a backfill did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackfillSummary {
    /// The run's id; its fills are journaled under it.
    pub run_id: Uuid,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Legacy rows at the start.
    pub legacy_before: u64,
    /// Legacy rows examined.
    pub scanned: u64,
    /// Rows filled (or, in a dry run, fillable).
    pub filled: u64,
    /// Rows whose parent is not in the store.
    pub orphans: u64,
    /// The first orphans' ids.
    pub orphan_ids: Vec<Uuid>,
    /// Rows whose parent is dated more than a day after them.
    pub skewed: u64,
    /// Batches run.
    pub batches: u64,
    /// The foreign key after the run (not checked in a dry run).
    pub foreign_key: Option<ForeignKeyCheck>,
    /// Seconds the run took.
    pub seconds: f64,
}

impl std::fmt::Display for BackfillSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.filled as f64 / self.seconds
        } else {
            0.0
        };
        let verb = if self.dry_run { "would fill" } else { "filled" };
        writeln!(
            f,
            "backfill {}{}: {} legacy rows at start, {} scanned in {} batches, {verb} {} ({:.0} rows/s, {:.1} s)",
            self.run_id,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            },
            self.legacy_before,
            self.scanned,
            self.batches,
            self.filled,
            rate,
            self.seconds
        )?;
        writeln!(f, "orphans (parent not in the store): {}", self.orphans)?;
        for id in &self.orphan_ids {
            writeln!(f, "  orphan {id}")?;
        }
        if self.orphans > self.orphan_ids.len() as u64 {
            writeln!(f, "  … and {} more", self.orphans - self.orphan_ids.len() as u64)?;
        }
        writeln!(
            f,
            "skewed (parent dated more than a day after the event, left unlinked): {}",
            self.skewed
        )?;
        match &self.foreign_key {
            Some(fk) if fk.valid => write!(
                f,
                "foreign key fk_audit_events_parent: valid{} — every completed link points at a stored parent",
                if fk.validated_now { " (validated now)" } else { "" }
            ),
            Some(fk) => write!(
                f,
                "foreign key fk_audit_events_parent: NOT valid, {} violations",
                fk.violations
            ),
            None => write!(f, "foreign key: not checked in a dry run"),
        }
    }
}

/// Runs the backfill to the end of the legacy rows.
pub async fn run(store: &Store, options: &BackfillOptions) -> anyhow::Result<BackfillSummary> {
    let started = Instant::now();
    let mut summary = BackfillSummary {
        run_id: Uuid::now_v7(),
        dry_run: options.dry_run,
        legacy_before: store.count_legacy_links().await.map_err(|e| anyhow::anyhow!("{e:?}"))?,
        ..BackfillSummary::default()
    };
    tracing::info!(run = %summary.run_id, legacy = summary.legacy_before, dry_run = options.dry_run, "backfill starts");
    let mut progress = Progress::new(Some(summary.legacy_before), false, "legacy rows scanned", 10_000);
    let mut after = None;
    loop {
        let batch = store
            .backfill_batch(summary.run_id, after, options.batch_size, options.dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if batch.scanned == 0 {
            break;
        }
        summary.batches += 1;
        summary.scanned += batch.scanned;
        summary.filled += batch.filled;
        summary.orphans += batch.orphans.len() as u64;
        summary.skewed += batch.skewed.len() as u64;
        let room = options.list_orphans.saturating_sub(summary.orphan_ids.len());
        summary.orphan_ids.extend(batch.orphans.iter().take(room));
        after = batch.last;
        progress.update(summary.scanned, summary.scanned);
    }
    progress.finish();
    if !options.dry_run {
        summary.foreign_key = Some(
            store
                .check_parent_foreign_key()
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Undoes journaled fills (every run, or one), batch by batch; returns how many rows went back
/// to legacy.
pub async fn rollback(store: &Store, run: Option<Uuid>, batch_size: u64) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let done = store
            .rollback_backfill_batch(run, batch_size)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if done == 0 {
            return Ok(total);
        }
        total += done;
        tracing::info!(rows = total, "rolled back");
    }
}
