//! Signed exports (`auditgraph export`, `GET /api/v1/audit/export?format=ndjson`) and their
//! offline check (`auditgraph verify EXPORT`), which needs the log's verifier key and nothing
//! else: no database, no server.
//!
//! An export is newline-delimited JSON, written and read as a stream:
//!
//! 1. a header: `{"auditgraph_export": "header", "format", "origin", "exported_at",
//!    "exported_by", "filters", "tree_size", "checkpoint"}`, where `checkpoint` is the log's
//!    signed checkpoint (a C2SP signed note) that the export proves its events against;
//! 2. the events, in the log's order, each in the REST field shape with its chain fields
//!    (`chain_seq`, `event_hash`, `previous_event_hash`, …) and its `leaf_index`; between them
//!    `{"auditgraph_export": "node", "level", "index", "hash"}` lines: the perfect subtrees of
//!    the log that hold no exported event, so that the exported leaves and these nodes together
//!    give the checkpoint's root; then the events that carry no hash (stored before hash
//!    chains), with `leaf_index` null;
//! 3. a manifest, signed with the log's key (Ed25519, as a signed note): `{"auditgraph_export":
//!    "manifest", "note"}`; the note's text is one JSON object with the counts, the filters, the
//!    checkpoint's size and root, and the SHA-256 of every line before it.
//!
//! Event lines are what `auditgraph import` reads (it skips the others): importing a whole
//! export into an empty database reproduces every hash.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::Progress;
use super::log::Publisher;
use crate::domain::chain::{ChainHasher, hex};
use crate::domain::checkpoint::{self, VerifierKey};
use crate::domain::merkle::{CompactRange, Hash, covering_nodes};
use crate::domain::wire::{rest_event, timestamp_text};
use crate::entity::audit_event::Model;
use crate::store::{ExportFilter, Store, event_leaf};

/// The format named in every export.
pub const FORMAT: &str = "auditgraph-export/1";
/// The member that marks an export's own lines (header, nodes, manifest).
pub const TAG: &str = "auditgraph_export";
/// Leaves read per round (a full export), and events per round (one correlation's).
const CHUNK: u64 = 10_000;

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Events written.
    pub events: u64,
    /// Of those, events in the log (with their leaf).
    pub logged: u64,
    /// Events without a hash, outside the log.
    pub unlogged: u64,
    /// Subtree nodes written.
    pub nodes: u64,
    /// The size of the log's tree the export proves against.
    pub tree_size: u64,
    /// The SHA-256 of the lines before the manifest.
    pub sha256: String,
}

impl std::fmt::Display for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "export finished: {} events ({} with their leaf in the log's tree of {}, {} stored before hash chains), \
             {} subtree nodes, manifest signed (sha256 {})",
            self.events, self.logged, self.tree_size, self.unlogged, self.nodes, self.sha256
        )
    }
}

/// Writes lines to `lines`, hashing them.
struct Writer {
    lines: mpsc::Sender<Vec<u8>>,
    sha: Sha256,
}

impl Writer {
    async fn line(&mut self, value: &Value) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(value).context("writing a line")?;
        bytes.push(b'\n');
        self.sha.update(&bytes);
        self.lines
            .send(bytes)
            .await
            .map_err(|_| anyhow::anyhow!("the export's reader went away"))
    }
}

/// An event line: the REST shape and its leaf.
fn event_line(model: &Model, leaf: Option<u64>) -> Value {
    let mut event = rest_event(model);
    if let Value::Object(o) = &mut event {
        o.insert("leaf_index".into(), json!(leaf));
    }
    event
}

/// Writes an export of the events `filter` selects, line by line, to `lines` (a bounded channel:
/// the export goes as fast as its reader, in memory that does not grow with it). The log is
/// sequenced and a checkpoint published first, so that every event committed before has its leaf.
pub async fn export(
    store: &Store,
    log: &Publisher,
    filter: &ExportFilter,
    exported_by: &str,
    lines: mpsc::Sender<Vec<u8>>,
    show_progress: bool,
) -> anyhow::Result<Exported> {
    log.sequence_all_now().await.context("sequencing the log")?;
    let checkpoint = log.publish().await.context("publishing a checkpoint")?;
    let tree_size = checkpoint.as_ref().map_or(0, |c| c.tree_size);
    let total = store.export_count(filter).await.context("counting the events")?;
    let mut progress = show_progress.then(|| Progress::new(Some(total), false, "events exported", 100_000));
    let exported_at = Utc::now();
    let mut out = Writer {
        lines,
        sha: Sha256::new(),
    };
    let mut done = Exported {
        tree_size,
        ..Exported::default()
    };
    // What the header says and the signed manifest repeats.
    let about = json!({
        "format": FORMAT,
        "origin": log.signer().origin(),
        "exported_at": timestamp_text(exported_at),
        "exported_by": exported_by,
        "filters": filter,
        "tree_size": tree_size,
    });
    let mut header = about.clone();
    header[TAG] = json!("header");
    header["checkpoint"] = json!(checkpoint.as_ref().map(|c| c.note.clone()));
    out.line(&header).await?;
    let mut at = 0_u64;
    let mut from = 0_u64;
    while from < tree_size {
        let (page, next) = match &filter.correlation_id {
            Some(_) => {
                let page = store.export_logged(filter, from, tree_size, Some(CHUNK)).await?;
                let next = match page.last() {
                    Some((last, _)) if page.len() as u64 == CHUNK => last + 1,
                    _ => tree_size,
                };
                (page, next)
            }
            None => {
                let to = from.saturating_add(CHUNK).min(tree_size);
                (store.export_logged(filter, from, to, None).await?, to)
            }
        };
        // The nodes between this page's events, read at once.
        let mut gaps = Vec::new();
        let mut cursor = at;
        for (leaf, _) in &page {
            gaps.push(covering_nodes(cursor, *leaf));
            cursor = leaf + 1;
        }
        let wanted: Vec<_> = gaps.iter().flatten().copied().collect();
        let hashes = store.log_nodes(&wanted).await?;
        for ((leaf, model), gap) in page.iter().zip(gaps) {
            write_nodes(&mut out, &hashes, &gap, &mut done).await?;
            out.line(&event_line(model, Some(*leaf))).await?;
            done.events += 1;
            done.logged += 1;
            at = leaf + 1;
        }
        if let Some(progress) = &mut progress {
            progress.update(done.events, done.events);
        }
        from = next;
    }
    let tail = covering_nodes(at, tree_size);
    let hashes = store.log_nodes(&tail).await?;
    write_nodes(&mut out, &hashes, &tail, &mut done).await?;
    let mut after = None;
    loop {
        let page = store.export_unlogged(filter, after, CHUNK).await?;
        for model in &page {
            out.line(&event_line(model, None)).await?;
            done.events += 1;
            done.unlogged += 1;
        }
        if let Some(progress) = &mut progress {
            progress.update(done.events, done.events);
        }
        match page.last() {
            Some(last) if page.len() as u64 == CHUNK => after = Some((last.event_timestamp, last.event_id)),
            _ => break,
        }
    }
    if let Some(progress) = &progress {
        progress.finish();
    }
    done.sha256 = hex(&out.sha.clone().finalize());
    let mut manifest = about;
    manifest["root"] = json!(checkpoint.as_ref().map(|c| hex(&c.root_hash)));
    manifest["events"] = json!(done.events);
    manifest["logged_events"] = json!(done.logged);
    manifest["unlogged_events"] = json!(done.unlogged);
    manifest["nodes"] = json!(done.nodes);
    manifest["sha256"] = json!(done.sha256);
    let note = log.signer().sign_note(&format!("{manifest}\n"))?;
    out.line(&json!({TAG: "manifest", "note": note})).await?;
    Ok(done)
}

async fn write_nodes(
    out: &mut Writer,
    hashes: &HashMap<(u8, u64), Hash>,
    nodes: &[(u8, u64)],
    done: &mut Exported,
) -> anyhow::Result<()> {
    for id in nodes {
        let hash = hashes
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("the log's node (level {}, index {}) is missing", id.0, id.1))?;
        out.line(&json!({TAG: "node", "level": id.0, "index": id.1, "hash": hex(hash)}))
            .await?;
        done.nodes += 1;
    }
    Ok(())
}

/// What checking an export found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportCheck {
    /// The export's origin, time, author and filters, from its signed manifest.
    pub manifest: Option<Value>,
    /// Event lines read.
    pub events: u64,
    /// Events whose hash was recomputed from their content and matched.
    pub hashes_verified: u64,
    /// Events whose hash needs a key this check was not given.
    pub unverifiable: u64,
    /// Events linked to the event before them in the export.
    pub links_verified: u64,
    /// Events whose chain predecessor is not in the export (filtered out, or purged).
    pub links_outside: u64,
    /// Events stored before hash chains: no hash, no leaf.
    pub unchained: u64,
    /// The log's tree size the export proves against.
    pub tree_size: u64,
    /// Whether the exported leaves and nodes give the signed checkpoint's root.
    pub root_matches: bool,
    /// Problems found.
    pub problems: u64,
    /// The first problem, in words.
    pub first: Option<String>,
    /// The events a problem was found at.
    pub broken_events: std::collections::BTreeSet<uuid::Uuid>,
    /// Whether the export carried the proof of its events against the log's signed tree (the
    /// NDJSON format does; REST's JSON document does not).
    pub log_proof: bool,
}

impl ExportCheck {
    /// Whether everything checks out.
    pub fn ok(&self) -> bool {
        self.problems == 0
    }

    fn problem(&mut self, text: String) {
        self.problems += 1;
        self.first.get_or_insert(text);
    }

    /// The last line: the export checks out, or how many problems were found. The CLI returns
    /// the latter as its error, so that the exit status and the message agree.
    pub fn verdict(&self) -> String {
        match self.problems {
            0 => "verify: the export checks out".to_string(),
            1 => "verify: 1 problem found".to_string(),
            n => format!("verify: {n} problems found"),
        }
    }

    fn event_problem(&mut self, id: uuid::Uuid, text: String) {
        self.broken_events.insert(id);
        self.problem(text);
    }
}

impl std::fmt::Display for ExportCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(manifest) = &self.manifest {
            writeln!(
                f,
                "export: origin {}, exported at {} by {}, filters {}",
                manifest["origin"], manifest["exported_at"], manifest["exported_by"], manifest["filters"]
            )?;
        }
        writeln!(
            f,
            "events: {} read, {} hashes recomputed and matched, {} links to the event before verified, \
             {} whose predecessor is outside the export, {} stored before hash chains, {} needing a hash key",
            self.events,
            self.hashes_verified,
            self.links_verified,
            self.links_outside,
            self.unchained,
            self.unverifiable
        )?;
        if self.log_proof {
            writeln!(
                f,
                "log: {} the signed checkpoint's root over {} leaves",
                if self.root_matches {
                    "the exported leaves and nodes give"
                } else {
                    "the exported leaves and nodes do NOT give"
                },
                self.tree_size
            )?;
        } else {
            writeln!(
                f,
                "log: a JSON document carries no proof against the log's tree (export with format=ndjson for one)"
            )?;
        }
        if let Some(first) = &self.first {
            write!(f, "first problem: {first}")?;
        }
        Ok(())
    }
}

/// The running state of a check.
struct Checker<'a> {
    key: &'a VerifierKey,
    hasher: &'a ChainHasher,
    report: ExportCheck,
    sha: Sha256,
    range: CompactRange,
    root: Option<Hash>,
    header_seen: bool,
    manifest_seen: bool,
    /// Each correlation's last chain position and hash seen.
    chains: HashMap<String, (i64, String)>,
    now: DateTime<Utc>,
    /// Whether events carry leaves to prove against the checkpoint (not in the JSON document).
    leaves: bool,
}

impl<'a> Checker<'a> {
    /// A check of an NDJSON stream (`leaves`: its events prove against the checkpoint) or of a
    /// JSON document (no header, no leaves).
    fn new(key: &'a VerifierKey, hasher: &'a ChainHasher, leaves: bool) -> Self {
        Self {
            key,
            hasher,
            report: ExportCheck {
                log_proof: leaves,
                ..ExportCheck::default()
            },
            sha: Sha256::new(),
            range: CompactRange::new(),
            root: None,
            header_seen: !leaves,
            manifest_seen: false,
            chains: HashMap::new(),
            now: Utc::now(),
            leaves,
        }
    }

    fn line(&mut self, number: usize, text: &str) {
        if self.manifest_seen {
            self.report
                .problem(format!("line {number}: lines follow the signed manifest"));
            return;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                self.report.problem(format!("line {number}: not valid JSON ({e})"));
                return;
            }
        };
        match value.get(TAG).and_then(Value::as_str) {
            Some("header") if number == 1 => self.header(&value),
            Some("header") => self.report.problem(format!("line {number}: a second header")),
            Some("node") => self.node(number, &value),
            Some("manifest") => self.manifest(&value),
            Some(other) => self
                .report
                .problem(format!("line {number}: unknown line kind {other:?}")),
            None => self.event(number, text, &value),
        }
        if !self.manifest_seen {
            self.sha.update(text.as_bytes());
            self.sha.update(b"\n");
        }
        if number == 1 && !self.header_seen {
            self.report
                .problem("line 1 is not the export's header: this is not an auditgraph export".into());
        }
    }

    fn header(&mut self, value: &Value) {
        self.header_seen = true;
        if value["format"] != FORMAT {
            self.report
                .problem(format!("the export's format is {}, not {FORMAT}", value["format"]));
        }
        self.report.tree_size = value["tree_size"].as_u64().unwrap_or(0);
        match value["checkpoint"].as_str() {
            None if self.report.tree_size == 0 => {}
            None => self
                .report
                .problem("the header names a tree but carries no checkpoint".into()),
            Some(note) => match checkpoint::open(note, self.key) {
                Ok(checkpoint) if checkpoint.size == self.report.tree_size => self.root = Some(checkpoint.root),
                Ok(checkpoint) => self.report.problem(format!(
                    "the checkpoint is for a tree of {} leaves, the header says {}",
                    checkpoint.size, self.report.tree_size
                )),
                Err(e) => self.report.problem(format!(
                    "the checkpoint does not verify with the log's key {}: {e}",
                    self.key.name()
                )),
            },
        }
    }

    fn node(&mut self, number: usize, value: &Value) {
        let level = value["level"].as_u64().and_then(|l| u8::try_from(l).ok());
        let index = value["index"].as_u64();
        let hash = value["hash"].as_str().and_then(parse_hash);
        let (Some(level), Some(index), Some(hash)) = (level, index, hash) else {
            self.report.problem(format!(
                "line {number}: a node line needs level, index and a 32-byte hex hash"
            ));
            return;
        };
        if let Err(e) = self.range.push(level, index, hash) {
            self.report.problem(format!("line {number}: {e}"));
        }
    }

    fn event(&mut self, number: usize, text: &str, value: &Value) {
        self.report.events += 1;
        let model = match super::import::parse_line(number, text, self.now) {
            Ok(row) => row.model,
            Err(e) => {
                self.report.problem(format!("line {number}: {e}"));
                return;
            }
        };
        let id = model.event_id;
        let Some(hash) = model.event_hash.clone() else {
            self.report.unchained += 1;
            if !value["leaf_index"].is_null() {
                self.report
                    .event_problem(id, format!("event {id}: it has a leaf in the log but no hash"));
            }
            return;
        };
        match self.hasher.hash(&model) {
            Ok(expected) if expected == hash => self.report.hashes_verified += 1,
            Ok(expected) => self.report.event_problem(
                id,
                format!(
                    "event {id}: its content no longer matches its hash (expected {expected}, carries {hash}): \
                 it was changed after it was exported or written"
                ),
            ),
            Err(_) => self.report.unverifiable += 1,
        }
        if let Some(seq) = model.chain_seq {
            let correlation = model.correlation_id.clone();
            match self.chains.get(&correlation) {
                Some((last, last_hash)) if seq == last + 1 => {
                    if model.previous_event_hash.as_deref() == Some(last_hash.as_str()) {
                        self.report.links_verified += 1;
                    } else {
                        self.report.event_problem(id, format!(
                            "event {id} (correlation {correlation:?}, position {seq}): its previous hash is not the hash \
                             of the event before it"
                        ));
                    }
                }
                Some((last, _)) if seq <= *last => self.report.event_problem(
                    id,
                    format!(
                        "event {id} (correlation {correlation:?}): position {seq} comes after position {last}: \
                     events were reordered or inserted"
                    ),
                ),
                _ if seq == 1 => {
                    if model.previous_event_hash.is_none() {
                        self.report.links_verified += 1;
                    } else {
                        self.report.event_problem(
                            id,
                            format!("event {id}: the first event of its chain names a previous hash"),
                        );
                    }
                }
                _ => self.report.links_outside += 1,
            }
            self.chains.insert(correlation, (seq, hash.clone()));
        }
        if !self.leaves {
            return;
        }
        match value["leaf_index"].as_u64() {
            Some(leaf) => {
                if let Err(e) = self.range.push(0, leaf, event_leaf(&hash)) {
                    self.report.event_problem(id, format!("event {id}: {e}"));
                }
            }
            None => self
                .report
                .event_problem(id, format!("event {id}: it has a hash but no leaf in the log")),
        }
    }

    fn manifest(&mut self, value: &Value) {
        self.manifest_seen = true;
        let sha = hex(&self.sha.clone().finalize());
        let Some(note) = value["note"].as_str() else {
            self.report.problem("the manifest line carries no signed note".into());
            return;
        };
        let text = match checkpoint::open_note(note, self.key) {
            Ok(text) => text,
            Err(e) => {
                self.report.problem(format!(
                    "the manifest's signature does not verify with the log's key {}: {e}",
                    self.key.name()
                ));
                return;
            }
        };
        let manifest: Value = match serde_json::from_str(text.trim_end()) {
            Ok(manifest) => manifest,
            Err(e) => {
                self.report.problem(format!("the signed manifest is not JSON: {e}"));
                return;
            }
        };
        if manifest["sha256"] != sha.as_str() {
            self.report.problem(format!(
                "the lines before the manifest hash to {sha}, but the signed manifest says {}: lines were changed, \
                 added or removed",
                manifest["sha256"]
            ));
        }
        if manifest["events"] != self.report.events {
            self.report.problem(format!(
                "the signed manifest counts {} events, the export holds {}",
                manifest["events"], self.report.events
            ));
        }
        if manifest["tree_size"] != self.report.tree_size {
            self.report
                .problem("the signed manifest and the header name different trees".into());
        }
        self.report.manifest = Some(manifest);
    }

    fn finish(mut self) -> ExportCheck {
        if !self.manifest_seen {
            self.report
                .problem("the export ends without its signed manifest: it was cut short".into());
        }
        let size = self.range.size();
        if size != self.report.tree_size {
            self.report.problem(format!(
                "the exported leaves and nodes cover {size} leaves of the log's {}: some are missing",
                self.report.tree_size
            ));
        } else if self.root.is_some_and(|root| root == self.range.root()) || (size == 0 && self.root.is_none()) {
            self.report.root_matches = true;
        } else {
            self.report.problem(
                "the exported leaves and nodes do not give the signed checkpoint's root: events or nodes were changed"
                    .into(),
            );
        }
        self.report
    }
}

fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0_u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// Checks an export read from `input` with the log's verifier key; `hasher` recomputes the
/// events' hashes (it needs the hash key for keyed chains). Reads the input once, holding one
/// entry per correlation. Errors are failures to read; what does not check out is in the report.
pub fn verify(input: impl BufRead, key: &VerifierKey, hasher: &ChainHasher) -> anyhow::Result<ExportCheck> {
    let mut checker = Checker::new(key, hasher, true);
    for (number, line) in input.lines().enumerate() {
        let line = line.context("reading the export")?;
        if line.trim().is_empty() {
            continue;
        }
        checker.line(number + 1, &line);
    }
    Ok(checker.finish())
}

/// Whether a line of an import is one of an export's own lines (header, node, manifest).
pub fn is_export_line(value: &Map<String, Value>) -> bool {
    value.contains_key(TAG)
}

/// An export held in memory: its lines, for REST's JSON document (at most 10,000 events).
pub async fn collect(
    store: &Store,
    log: &Publisher,
    filter: &ExportFilter,
    exported_by: &str,
) -> anyhow::Result<(Vec<Vec<u8>>, Exported)> {
    let (lines, mut received) = mpsc::channel(256);
    let producing = export(store, log, filter, exported_by, lines, false);
    let collecting = async {
        let mut all = Vec::new();
        while let Some(line) = received.recv().await {
            all.push(line);
        }
        all
    };
    let (exported, all) = tokio::join!(producing, collecting);
    Ok((all, exported?))
}

/// The format named in the manifest of REST's JSON document.
pub const DOCUMENT_FORMAT: &str = "auditgraph-export-json/1";

/// The manifest a JSON document's signature covers: its filters, author, time, count and the
/// SHA-256 of its `events` array in canonical JSON (RFC 8785).
pub fn document_manifest(metadata: &Value, events: &Value) -> anyhow::Result<String> {
    let canonical = serde_json_canonicalizer::to_vec(events).context("canonicalizing the events")?;
    let manifest = json!({
        "format": DOCUMENT_FORMAT,
        "export_timestamp": metadata["export_timestamp"],
        "exported_by": metadata["exported_by"],
        "query_filters": metadata["query_filters"],
        "total_events": metadata["total_events"],
        "events_sha256": hex(&Sha256::digest(&canonical)),
    });
    Ok(format!("{manifest}\n"))
}

/// Checks REST's JSON export document: the signed manifest against the events as they are, and
/// every event's hash and links. (The log proof is in the NDJSON format only.)
pub fn verify_document(document: &Value, key: &VerifierKey, hasher: &ChainHasher) -> anyhow::Result<ExportCheck> {
    let mut checker = Checker::new(key, hasher, false);
    let metadata = &document["export_metadata"];
    let events = &document["events"];
    let expected = document_manifest(metadata, events)?;
    match metadata["signature"]
        .as_str()
        .map(|note| checkpoint::open_note(note, key))
    {
        None => checker.report.problem("the document carries no signature".into()),
        Some(Err(e)) => checker.report.problem(format!(
            "the signature does not verify with the log's key {}: {e}",
            key.name()
        )),
        Some(Ok(signed)) if signed != expected => checker
            .report
            .problem("the signed manifest does not match the document: its events or metadata were changed".into()),
        Some(Ok(signed)) => checker.report.manifest = serde_json::from_str(signed.trim_end()).ok(),
    }
    for (n, event) in events
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let mut event = event.clone();
        if let Value::Object(o) = &mut event {
            o.remove("hash_chain_valid");
        }
        checker.event(n + 1, &event.to_string(), &event);
    }
    checker.report.root_matches = true;
    Ok(checker.report)
}

/// Checks an export in either format: the NDJSON stream ([`verify`]) or REST's JSON document
/// ([`verify_document`]), told apart by the first line.
pub fn verify_input(mut input: impl BufRead, key: &VerifierKey, hasher: &ChainHasher) -> anyhow::Result<ExportCheck> {
    let mut first = String::new();
    while first.trim().is_empty() {
        first.clear();
        if input.read_line(&mut first).context("reading the export")? == 0 {
            anyhow::bail!("the export is empty");
        }
    }
    let is_stream = serde_json::from_str::<Map<String, Value>>(first.trim()).is_ok_and(|o| is_export_line(&o));
    if is_stream {
        return verify(std::io::Cursor::new(first.into_bytes()).chain(input), key, hasher);
    }
    let mut text = first;
    input.read_to_string(&mut text).context("reading the export")?;
    let document: Value = serde_json::from_str(&text)
        .context("the file is neither an auditgraph export stream nor a JSON export document")?;
    if document.get("export_metadata").is_none() {
        anyhow::bail!("the file is neither an auditgraph export stream nor a JSON export document");
    }
    verify_document(&document, key, hasher)
}
