//! `auditgraph import FILE`: loads newline-delimited JSON events in the REST field shape.

use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Progress;
use crate::domain::wire::{Fields, parse_event};
use crate::domain::{FieldError, Limits};
use crate::store::{ImportError, ImportRow, Store, to_model};

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// A file path, or `-` for standard input.
    pub source: String,
    /// Lines per transaction.
    pub batch_size: usize,
    /// Report malformed lines and go on instead of stopping.
    pub skip_invalid: bool,
    /// Who runs the import: recorded as `submitted_by` of the events it writes, except those whose
    /// carried chain link verifies (their original submitter is part of what the hash covers; the
    /// operator goes in their `chain_note`).
    pub operator: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportSummary {
    /// Non-empty lines read.
    pub lines: u64,
    /// Events written.
    pub imported: u64,
    /// Events whose id was stored already.
    pub already_present: u64,
    /// Events written with a parent but no parent date.
    pub legacy: u64,
    /// Lines reported and skipped (only with `skip_invalid`).
    pub skipped: u64,
    /// Events that carried a chain link of this server's recipe, verified and kept.
    pub chain_kept: u64,
    /// Events that carried a hash that could not be verified: kept outside the chain (see their
    /// `chain_note`).
    pub chain_unverified: u64,
    /// Seconds the import took.
    pub seconds: f64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.imported as f64 / self.seconds
        } else {
            0.0
        };
        write!(
            f,
            "import finished: {} lines read, {} events imported ({} legacy links without a parent date), \
             {} already present, {} skipped, in {:.1} s ({:.0} events/s); hash chains: {} carried links verified \
             and kept, {} carried hashes not verifiable (kept outside the chain), the rest chained on import",
            self.lines,
            self.imported,
            self.legacy,
            self.already_present,
            self.skipped,
            self.seconds,
            rate,
            self.chain_kept,
            self.chain_unverified
        )
    }
}

/// Field errors in the input's spelling (`version` holds `event_version`).
fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                if e.field == "event_version" { "version" } else { e.field },
                e.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads an optional date or date-time, as its UTC date.
fn parent_date(fields: &mut Fields<'_>) -> Result<Option<NaiveDate>, String> {
    let Some(text) = fields.string("parent_event_date", "parent_event_date") else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(t.with_timezone(&Utc).date_naive()));
    }
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| "parent_event_date: must be a date or an RFC 3339 date-time".to_string())
}

/// One line as a row to import: ids, timestamps and hashes are kept; the live timestamp window
/// does not apply. Without `event_id`, an id is derived from the timestamp (UUIDv7).
pub fn parse_line(line: usize, text: &str, now: DateTime<Utc>) -> Result<ImportRow, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let mut input = parse_event(&value).map_err(|e| describe(&e))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut fields = Fields::new(object);
    let parent_date = parent_date(&mut fields)?;
    let event_hash = fields.string("event_hash", "event_hash");
    let previous_event_hash = fields.string("previous_event_hash", "previous_event_hash");
    let hash_algorithm = fields.string("hash_algorithm", "hash_algorithm");
    let hash_key_id = fields.string("hash_key_id", "hash_key_id");
    let submitted_by = fields.string("submitted_by", "submitted_by");
    let chain_seq = match fields.get("chain_seq") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .filter(|seq| *seq > 0)
                .ok_or("chain_seq: must be a positive integer")?,
        ),
    };
    if !fields.errors.is_empty() {
        return Err(describe(&fields.errors));
    }
    if input.event_id.is_none()
        && let Some(ts) = input.event_timestamp
    {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, ts.timestamp() as u64, ts.timestamp_subsec_nanos());
        input.event_id = Some(Uuid::new_v7(ts));
    }
    let new = input.validate(&Limits::history(), now).map_err(|e| describe(&e))?;
    let parent_date = parent_date.filter(|_| new.parent_event_id.is_some());
    let mut model = to_model(new, parent_date);
    model.event_hash = event_hash;
    model.previous_event_hash = previous_event_hash;
    model.chain_seq = chain_seq;
    model.hash_key_id = hash_key_id;
    // Kept only with a chain link that verifies (the hash covers it); the import records its
    // operator otherwise.
    model.submitted_by = submitted_by;
    if let Some(algorithm) = hash_algorithm {
        if algorithm.chars().count() > 20 {
            return Err("hash_algorithm: is longer than 20 characters".into());
        }
        model.hash_algorithm = algorithm;
    }
    Ok(ImportRow { line, model })
}

/// Whether a line is an export's own (header, node, manifest), which an import skips: an
/// export's event lines are import lines.
fn is_export_line(text: &str) -> bool {
    text.contains(super::export::TAG)
        && serde_json::from_str::<serde_json::Map<String, Value>>(text)
            .is_ok_and(|object| super::export::is_export_line(&object))
}

/// Runs an import, batch by batch, each batch in its own transaction.
pub async fn run(store: &Store, options: &ImportOptions) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let (reader, total): (Box<dyn Read>, Option<u64>) = if options.source == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&options.source).with_context(|| format!("opening {}", options.source))?;
        let length = file.metadata().map(|m| m.len()).ok();
        (Box::new(file), length)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut progress = Progress::new(total, true, "events imported", 10_000);
    let mut summary = ImportSummary::default();
    let mut batch: Vec<ImportRow> = Vec::with_capacity(options.batch_size);
    let mut bytes = 0u64;
    let mut line_no = 0usize;
    let mut text = String::new();
    let now = Utc::now();
    loop {
        text.clear();
        let read = reader.read_line(&mut text).context("reading the input")?;
        bytes += read as u64;
        if read > 0 {
            line_no += 1;
            let trimmed = text.trim();
            if !trimmed.is_empty() && !is_export_line(trimmed) {
                summary.lines += 1;
                match parse_line(line_no, trimmed, now) {
                    Ok(row) => batch.push(row),
                    Err(message) if options.skip_invalid => {
                        tracing::warn!(line = line_no, "skipped: {message}");
                        summary.skipped += 1;
                    }
                    Err(message) => {
                        progress.finish();
                        anyhow::bail!(
                            "line {line_no}: {message}\nthe import stopped; the {} valid lines of this batch were not \
                             written ({} events imported before it). Fix the line and run the import again: stored \
                             events are skipped.",
                            batch.len(),
                            summary.imported
                        );
                    }
                }
            }
        }
        if batch.len() >= options.batch_size || (read == 0 && !batch.is_empty()) {
            let rows = std::mem::take(&mut batch);
            match store.import_rows(rows, &options.operator).await {
                Ok(done) => {
                    summary.imported += done.inserted;
                    summary.already_present += done.already_present;
                    summary.legacy += done.legacy;
                    summary.chain_kept += done.chain_kept;
                    summary.chain_unverified += done.chain_unverified;
                }
                Err(ImportError::Line { line, message }) => {
                    progress.finish();
                    anyhow::bail!(
                        "line {line}: {message}\nthe import stopped; nothing of this batch was written \
                         ({} events imported before it).",
                        summary.imported
                    );
                }
                Err(ImportError::Store(error)) => {
                    progress.finish();
                    return Err(anyhow::anyhow!("{error:?}").context("writing a batch"));
                }
            }
            progress.update(bytes, summary.imported);
        }
        if read == 0 {
            break;
        }
    }
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
