//! `auditgraph verify`: an offline audit of a database, for whoever must trust the records without
//! trusting the server that wrote them. It reads and never writes (no migration, no sequencing, no
//! publishing), so it can run against a copy or a replica, and it checks three things that each
//! catch what the others cannot:
//!
//! - **chains**: every correlation's events against their hashes, links, recorded head and logged
//!   leaves. An edit, a removal or an insertion breaks a chain; a chain rewritten with recomputed
//!   hashes still differs from the leaves the log recorded.
//! - **the log against the events**: the leaves are gapless, each names a stored event whose hash
//!   it commits to, and every hashed event is in the log or waiting for it. A row inserted around
//!   the triggers is in no queue, so it shows here.
//! - **checkpoints**: each signed checkpoint opens with the log's verifier key and its root is the
//!   root of the leaves as stored. Rewriting events, chains and leaves together still cannot
//!   reproduce a root someone signed earlier. All roots come from one tree rebuilt from the stored
//!   leaves, so successive checkpoints that match it are consistent with each other by
//!   construction: no consistency proof is needed on top.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use anyhow::Context;
use chrono::NaiveDate;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::chain::{self, ChainBreak, ChainReport, hex};
use crate::domain::checkpoint::{self, VerifierKey};
use crate::domain::merkle::{Hash, MemoryTree};
use crate::store::{LogLeaf, Purged, Store, StoreOptions, StoredCheckpoint, event_leaf};

/// Correlations read per round: their events are held in memory together.
const CORRELATIONS_PER_PAGE: u64 = 500;
/// Leaves read per round.
const LEAVES_PER_PAGE: u64 = 10_000;

/// What the chains showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainsCheck {
    /// Correlations checked (with events, or with only a recorded head).
    pub correlations: u64,
    /// Chained events whose hash, link, position and logged leaf all check out.
    pub verified: u64,
    /// Events stored before hash chains (or imported with a hash that stands outside the chain).
    pub unchained: u64,
    /// Events retention runs deleted, as they recorded them (not breaks).
    pub purged: u64,
    /// The runs that deleted them.
    pub purged_by: BTreeSet<Uuid>,
    /// Breaks found.
    pub broken: u64,
    /// The first break, in words.
    pub first: Option<String>,
}

/// What the log showed when walked against the events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogCheck {
    /// Leaves stored.
    pub leaves: u64,
    /// Leaves whose event is stored and has the hash the leaf commits to.
    pub matched: u64,
    /// Leaves whose event a retention run deleted, recording the hash the leaf commits to.
    pub purged: u64,
    /// Events waiting for the sequencer.
    pub pending: u64,
    /// Inconsistencies found.
    pub problems: u64,
    /// The first inconsistency, in words.
    pub first: Option<String>,
}

/// What the signed checkpoints showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointsCheck {
    /// Checkpoints stored.
    pub checkpoints: u64,
    /// Whether signatures were checked (a verifier key was given).
    pub signatures_checked: bool,
    /// Checkpoints whose signature verified, by the right origin, over the stored size and root.
    pub signatures_valid: u64,
    /// The largest size up to which every checkpoint's root is the root of the stored leaves.
    pub roots_match_up_to: u64,
    /// Checkpoints with something wrong.
    pub problems: u64,
    /// The first inconsistency, in words.
    pub first: Option<String>,
}

/// The outcome of `auditgraph verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Hash chains.
    pub chains: ChainsCheck,
    /// The log against the events.
    pub log: LogCheck,
    /// Signed checkpoints against the log.
    pub checkpoints: CheckpointsCheck,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems() == 0
    }

    /// Every inconsistency found, over all checks.
    pub fn problems(&self) -> u64 {
        self.chains.broken + self.log.problems + self.checkpoints.problems
    }

    /// The last line: everything checks out, or how many problems were found. The CLI returns the
    /// latter as its error, so that the exit status and the message agree.
    pub fn verdict(&self) -> String {
        match self.problems() {
            0 => "verify: everything checks out".to_string(),
            1 => "verify: 1 problem found".to_string(),
            n => format!("verify: {n} problems found"),
        }
    }

    /// One line per check with its counts, then the first inconsistency of each failing check.
    pub fn details(&self) -> Details<'_> {
        Details(self)
    }
}

/// The report without its verdict; see [`VerifyReport::details`].
pub struct Details<'a>(&'a VerifyReport);

impl fmt::Display for Details<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let VerifyReport {
            chains,
            log,
            checkpoints,
        } = self.0;
        write!(
            f,
            "chains: {} correlations, {} events verified, {} unchained (stored before hash chains), {} broken",
            chains.correlations, chains.verified, chains.unchained, chains.broken
        )?;
        if chains.purged > 0 {
            let runs: Vec<String> = chains.purged_by.iter().map(Uuid::to_string).collect();
            write!(
                f,
                "; {} events purged by retention (run {}): their positions hold, their hashes recorded",
                chains.purged,
                runs.join(", run ")
            )?;
        }
        write!(
            f,
            "\nlog: {} leaves match their events, {} pending",
            log.matched, log.pending
        )?;
        if log.purged > 0 {
            write!(
                f,
                ", {} leaves of purged events match the hashes their runs recorded",
                log.purged
            )?;
        }
        if log.problems > 0 {
            write!(
                f,
                ", {} of {} leaves stored, {} inconsistent",
                log.matched, log.leaves, log.problems
            )?;
        }
        write!(f, "\ncheckpoints: ")?;
        if checkpoints.checkpoints == 0 {
            write!(f, "none published yet")?;
        } else {
            if !checkpoints.signatures_checked {
                write!(f, "signatures not checked (no verifier key)")?;
            } else if checkpoints.signatures_valid == checkpoints.checkpoints {
                write!(f, "{} signatures valid", checkpoints.signatures_valid)?;
            } else {
                write!(
                    f,
                    "{} of {} signatures valid",
                    checkpoints.signatures_valid, checkpoints.checkpoints
                )?;
            }
            write!(
                f,
                ", roots match the events up to tree size {}; being roots of one rebuilt tree, \
                 the matching checkpoints are consistent with each other",
                checkpoints.roots_match_up_to
            )?;
            if checkpoints.problems > 0 {
                write!(f, ", {} inconsistent", checkpoints.problems)?;
            }
        }
        for (check, first) in [
            ("chains", &chains.first),
            ("log", &log.first),
            ("checkpoints", &checkpoints.first),
        ] {
            if let Some(first) = first {
                write!(f, "\n{check}: first problem: {first}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.details(), self.verdict())
    }
}

/// The verifier key to check checkpoints with: `given` (key text, or a file holding it), or the
/// `.pub` file the server wrote beside its signing key. A missing key is an error rather than a
/// silently skipped check, since the signatures are what ties the log to its publisher.
pub fn verifier_key(given: Option<&str>, log_key_file: &Path) -> anyhow::Result<VerifierKey> {
    let (text, source) = match given {
        Some(value) if Path::new(value).is_file() => (
            std::fs::read_to_string(value).with_context(|| format!("reading the verifier key file {value}"))?,
            format!("the file {value}"),
        ),
        Some(value) => (value.to_string(), "--verifier-key".to_string()),
        None => {
            let path = crate::ops::log::public_path(log_key_file);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading the log's verifier key {} (give it with --verifier-key)",
                    path.display()
                )
            })?;
            (text, format!("the file {}", path.display()))
        }
    };
    VerifierKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("the verifier key in {source} is not valid: {e}"))
}

/// Connects for reading only: never creates a database (a missing SQLite file or PostgreSQL
/// database is an error, not an empty log that verifies).
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        create_database: false,
        ..config.store_options()?
    };
    if let Some(path) = sqlite_file(&options.database_url)
        && !path.exists()
    {
        anyhow::bail!("the SQLite database {} does not exist", path.display());
    }
    Store::connect(&options).await
}

/// The file of a `sqlite:` URL, unless it names an in-memory database.
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Checks the chains, the log and the checkpoints of `store`; signatures only when `verifier` is
/// given. Errors are failures to read; what does not check out is in the report.
pub async fn run(store: &Store, verifier: Option<&VerifierKey>) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    // Read before the events and leaves, so that an event the sequencer moves on meanwhile is
    // still seen as pending or, later, as a leaf.
    let pending = store.pending_log_events().await.context("reading the log's queue")?;
    report.log.pending = pending.len() as u64;
    let unlogged = check_chains(store, &pending, &mut report.chains)
        .await
        .context("checking the hash chains")?;
    let (unhashed, baseline) = store
        .unhashed_events()
        .await
        .context("counting events without a hash")?;
    if let Some(baseline) = baseline
        && unhashed > baseline
    {
        report.chains.broken += unhashed - baseline;
        report.chains.first.get_or_insert(format!(
            "{} events without a hash were stored after hash chains began ({baseline} were older): \
             inserted around the triggers",
            unhashed - baseline
        ));
    }
    let checkpoints = store.checkpoints().await.context("reading the checkpoints")?;
    let roots = check_leaves(store, &checkpoints, &mut report.log)
        .await
        .context("checking the log's leaves")?;
    check_unlogged(store, unlogged, &mut report.log)
        .await
        .context("checking events missing from the log")?;
    check_checkpoints(&checkpoints, &roots, verifier, &mut report.checkpoints);
    Ok(report)
}

/// A hashed event that has no leaf and was not waiting for one when the check read the queue.
struct Unlogged {
    event_id: Uuid,
    event_date: NaiveDate,
    correlation_id: String,
}

/// Walks the correlations in keyset order, a page at a time; returns the hashed events found in
/// neither the log nor its queue.
async fn check_chains(
    store: &Store,
    pending: &HashSet<(Uuid, NaiveDate)>,
    check: &mut ChainsCheck,
) -> anyhow::Result<Vec<Unlogged>> {
    let hasher = store.hasher();
    let mut unlogged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .correlations_after(after.as_deref(), CORRELATIONS_PER_PAGE)
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        let mut events = store.events_of_correlations(&page).await?;
        let heads = store.chain_heads_of(&page).await?;
        let hashed: Vec<Uuid> = events
            .values()
            .flatten()
            .filter(|e| e.event_hash.is_some())
            .map(|e| e.event_id)
            .collect();
        let logged = store.log_leaves_of(&hashed).await?;
        // Read after the events: an event purged meanwhile is then seen stored, purged, or both.
        let mut purged = store.purged_of_correlations(&page).await?;
        for correlation in &page {
            let events = events.remove(correlation).unwrap_or_default();
            let purged = links(purged.remove(correlation));
            let head = heads.get(correlation).map(|h| (h.last_seq, h.last_hash.as_str()));
            let result = chain::verify(hasher, &events, &purged, head, &logged, event_leaf);
            record_chain(check, correlation, &result);
            unlogged.extend(
                events
                    .iter()
                    .filter(|e| e.event_hash.is_some())
                    .filter(|e| !logged.contains_key(&e.event_id) && !pending.contains(&(e.event_id, e.event_date)))
                    .map(|e| Unlogged {
                        event_id: e.event_id,
                        event_date: e.event_date,
                        correlation_id: e.correlation_id.clone(),
                    }),
            );
        }
        if (page.len() as u64) < CORRELATIONS_PER_PAGE {
            break;
        }
        after = Some(last);
    }
    // A head whose correlation has no event left at all: the whole chain was purged, or removed.
    let orphans = store.orphan_chain_heads().await?;
    let ids: Vec<String> = orphans.iter().map(|h| h.correlation_id.clone()).collect();
    let mut purged = store.purged_of_correlations(&ids).await?;
    for head in orphans {
        let result = chain::verify(
            hasher,
            &[],
            &links(purged.remove(&head.correlation_id)),
            Some((head.last_seq, &head.last_hash)),
            &HashMap::new(),
            event_leaf,
        );
        record_chain(check, &head.correlation_id, &result);
    }
    Ok(unlogged)
}

/// Purge records as chain links.
fn links(purged: Option<Vec<Purged>>) -> Vec<chain::PurgedLink> {
    purged.unwrap_or_default().iter().map(Purged::link).collect()
}

fn record_chain(check: &mut ChainsCheck, correlation: &str, result: &ChainReport) {
    check.correlations += 1;
    check.purged += result.purged;
    check.purged_by.extend(result.purged_by.iter().copied());
    check.verified += result.verified;
    check.unchained += result.unchained;
    check.broken += result.breaks.len() as u64;
    if check.first.is_none()
        && let Some(first) = result.breaks.first()
    {
        check.first = Some(describe_break(correlation, first));
    }
}

/// A chain break in words: where, what kind, what the check found and which hashes differ.
fn describe_break(correlation: &str, b: &ChainBreak) -> String {
    let place = match b.position {
        Some(position) if !b.event_id.is_nil() => {
            format!(
                "event {} (correlation {correlation:?}, position {position})",
                b.event_id
            )
        }
        _ if !b.event_id.is_nil() => format!("event {} (correlation {correlation:?})", b.event_id),
        _ => format!("correlation {correlation:?}"),
    };
    let mut text = format!("{place}: {}: {}", b.kind.as_str(), b.message);
    match (&b.expected_hash, &b.actual_hash) {
        (Some(expected), Some(actual)) => text.push_str(&format!(" (expected hash {expected}, stored {actual})")),
        (Some(expected), None) => text.push_str(&format!(" (expected hash {expected}, none stored)")),
        _ => {}
    }
    text
}

/// Walks the leaves in index order against the events they name, rebuilding the tree; returns
/// its root at every checkpoint's size that the log reaches.
async fn check_leaves(
    store: &Store,
    checkpoints: &[StoredCheckpoint],
    check: &mut LogCheck,
) -> anyhow::Result<BTreeMap<u64, Hash>> {
    let sizes: BTreeSet<u64> = checkpoints.iter().map(|c| c.tree_size).collect();
    let mut roots = BTreeMap::new();
    let mut tree = MemoryTree::new();
    if sizes.contains(&0) {
        roots.insert(0, tree.root());
    }
    let mut from = 0;
    loop {
        let page = store.log_leaves(from, LEAVES_PER_PAGE).await?;
        let Some(last) = page.last().map(|l| l.index) else {
            break;
        };
        let ids: Vec<Uuid> = page.iter().map(|l| l.event_id).collect();
        let events = store.event_hashes_of(&ids).await?;
        // Read after the events, so that an event purged meanwhile is found in one or the other.
        let gone: Vec<Uuid> = page
            .iter()
            .filter(|l| {
                !events
                    .get(&l.event_id)
                    .is_some_and(|e| e.iter().any(|(d, _)| *d == l.event_date))
            })
            .map(|l| l.event_id)
            .collect();
        let purged = store.purged_of(&gone).await?;
        for leaf in &page {
            check.leaves += 1;
            let problem = if leaf.index != tree.size() {
                Some(format!(
                    "leaf {} is missing: the next stored leaf is {}, so the log has a gap",
                    tree.size(),
                    leaf.index
                ))
            } else if let Some(record) = purged
                .get(&leaf.event_id)
                .and_then(|p| p.iter().find(|p| p.event_date == leaf.event_date))
            {
                purged_leaf_problem(leaf, record)
            } else {
                leaf_problem(leaf, events.get(&leaf.event_id).map(Vec::as_slice).unwrap_or_default())
            };
            let was_purged = purged.contains_key(&leaf.event_id);
            match problem {
                None if was_purged => check.purged += 1,
                None => check.matched += 1,
                Some(problem) => {
                    check.problems += 1;
                    check.first.get_or_insert(problem);
                }
            }
            tree.push(leaf.hash);
            if sizes.contains(&tree.size()) {
                roots.insert(tree.size(), tree.root());
            }
        }
        if (page.len() as u64) < LEAVES_PER_PAGE {
            break;
        }
        from = last + 1;
    }
    check_nodes(store, &tree, check).await?;
    Ok(roots)
}

/// Compares every stored subtree node with the tree rebuilt from the leaves: proofs and the
/// publisher's roots are computed from the stored nodes.
async fn check_nodes(store: &Store, tree: &MemoryTree, check: &mut LogCheck) -> anyhow::Result<()> {
    let size = tree.size();
    for level in 0..64_u8 {
        let count = size >> level;
        if count == 0 {
            break;
        }
        let mut start = 0;
        while start < count {
            let end = (start + LEAVES_PER_PAGE).min(count);
            let ids: Vec<(u8, u64)> = (start..end).map(|index| (level, index)).collect();
            let stored = store.log_nodes(&ids).await?;
            for id in ids {
                let rebuilt = crate::domain::merkle::Nodes::perfect(tree, id.0, id.1).ok();
                if stored.get(&id) != rebuilt.as_ref() {
                    check.problems += 1;
                    check.first.get_or_insert(format!(
                        "subtree node (level {}, index {}) {} the tree rebuilt from the leaves: proofs and \
                         roots computed from it are wrong",
                        id.0,
                        id.1,
                        if stored.contains_key(&id) {
                            "differs from"
                        } else {
                            "is missing from"
                        }
                    ));
                }
            }
            start = end;
        }
    }
    Ok(())
}

/// What is wrong with the leaf of an event a retention run deleted: the hash the run recorded
/// must be the one the leaf commits to.
fn purged_leaf_problem(leaf: &LogLeaf, record: &Purged) -> Option<String> {
    let Some(hash) = &record.event_hash else {
        return Some(format!(
            "leaf {} (event {}): retention run {} recorded the event without a hash, but the log recorded one",
            leaf.index, leaf.event_id, record.run_id
        ));
    };
    let expected = event_leaf(hash);
    (expected != leaf.hash).then(|| {
        format!(
            "leaf {} (event {}): retention run {} recorded hash {hash} for the event it deleted, which gives {}, \
             but the log recorded {}: the event was rewritten before it was purged",
            leaf.index,
            leaf.event_id,
            record.run_id,
            hex(&expected),
            hex(&leaf.hash)
        )
    })
}

/// What is wrong with a leaf, given the stored events with its event id (date and hash each).
fn leaf_problem(leaf: &LogLeaf, events: &[(NaiveDate, Option<String>)]) -> Option<String> {
    let Some((_, hash)) = events.iter().find(|(date, _)| *date == leaf.event_date) else {
        let elsewhere = events.first().map_or(String::new(), |(date, _)| {
            format!(" (an event with that id is stored under {date})")
        });
        return Some(format!(
            "leaf {} names event {} of {}, which is not stored: it was deleted after it was logged{elsewhere}",
            leaf.index, leaf.event_id, leaf.event_date
        ));
    };
    let Some(hash) = hash else {
        return Some(format!(
            "leaf {} (event {}): the event carries no hash, but the log recorded one",
            leaf.index, leaf.event_id
        ));
    };
    let expected = event_leaf(hash);
    (expected != leaf.hash).then(|| {
        format!(
            "leaf {} (event {}): the log recorded leaf hash {}, but the event's hash {hash} gives {}: \
             the event was rewritten after it was logged",
            leaf.index,
            leaf.event_id,
            hex(&leaf.hash),
            hex(&expected)
        )
    })
}

/// Reports the hashed events that are in neither the log nor its queue, after a second look at
/// both (the sequencer may have moved one while the chains were read).
async fn check_unlogged(store: &Store, candidates: Vec<Unlogged>, check: &mut LogCheck) -> anyhow::Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let pending = store.pending_log_events().await?;
    let ids: Vec<Uuid> = candidates.iter().map(|c| c.event_id).collect();
    let logged = store.log_leaves_of(&ids).await?;
    for event in candidates {
        if logged.contains_key(&event.event_id) || pending.contains(&(event.event_id, event.event_date)) {
            continue;
        }
        check.problems += 1;
        check.first.get_or_insert_with(|| {
            format!(
                "event {} of {} (correlation {:?}) is not in the log: it has a hash but no leaf and is not \
                 queued for one, so it was inserted around the triggers",
                event.event_id, event.event_date, event.correlation_id
            )
        });
    }
    Ok(())
}

/// Checks each checkpoint's signature (when a key is given), its note against its row, and its
/// root against the rebuilt tree's root at its size.
fn check_checkpoints(
    checkpoints: &[StoredCheckpoint],
    roots: &BTreeMap<u64, Hash>,
    verifier: Option<&VerifierKey>,
    check: &mut CheckpointsCheck,
) {
    check.checkpoints = checkpoints.len() as u64;
    check.signatures_checked = verifier.is_some();
    let mut roots_hold = true;
    for stored in checkpoints {
        let size = stored.tree_size;
        let mut problem = verifier.and_then(|key| signature_problem(stored, key));
        if verifier.is_some() && problem.is_none() {
            check.signatures_valid += 1;
        }
        let root_problem = match roots.get(&size) {
            None => Some(format!(
                "checkpoint of size {size}: the log holds fewer leaves than that, so leaves it signed are gone"
            )),
            Some(root) if *root != stored.root_hash => Some(format!(
                "checkpoint of size {size}: its root {} is not the root {} of the stored leaves: \
                 the log was rewritten after the checkpoint was signed",
                hex(&stored.root_hash),
                hex(root)
            )),
            Some(_) => None,
        };
        if root_problem.is_some() {
            roots_hold = false;
        } else if roots_hold {
            check.roots_match_up_to = size;
        }
        problem = problem.or(root_problem);
        if let Some(problem) = problem {
            check.problems += 1;
            check.first.get_or_insert(problem);
        }
    }
}

/// What is wrong with a checkpoint's note: a signature that does not open with `key`, another
/// origin, or a size and root other than its row's.
fn signature_problem(stored: &StoredCheckpoint, key: &VerifierKey) -> Option<String> {
    let size = stored.tree_size;
    match checkpoint::open(&stored.note, key) {
        Err(error) => Some(format!(
            "checkpoint of size {size}: its signature does not verify with the key {}: {error}",
            key.name()
        )),
        Ok(signed) if signed.origin != key.name() => Some(format!(
            "checkpoint of size {size}: it is signed for the log {:?}, not {:?}",
            signed.origin,
            key.name()
        )),
        Ok(signed) if signed.size != size || signed.root != stored.root_hash => Some(format!(
            "checkpoint of size {size}: its note signs size {} and root {}, but its row says size {size} and root {}",
            signed.size,
            hex(&signed.root),
            hex(&stored.root_hash)
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::BreakKind;
    use crate::domain::checkpoint::{Checkpoint, SignerKey};

    fn leaf(index: u64, hash: &str) -> LogLeaf {
        LogLeaf {
            index,
            event_id: Uuid::from_u128(7),
            event_date: NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
            hash: event_leaf(hash),
        }
    }

    fn stored(signer: &SignerKey, leaves: &[&str]) -> (StoredCheckpoint, BTreeMap<u64, Hash>) {
        let mut tree = MemoryTree::new();
        for hash in leaves {
            tree.push(event_leaf(hash));
        }
        let checkpoint = Checkpoint::new(signer.name(), tree.size(), tree.root()).unwrap();
        let stored = StoredCheckpoint {
            tree_size: tree.size(),
            root_hash: tree.root(),
            note: signer.sign_checkpoint(&checkpoint).unwrap(),
            created_at: chrono::Utc::now(),
        };
        (stored, BTreeMap::from([(tree.size(), tree.root())]))
    }

    #[test]
    fn a_clean_report_says_everything_checks_out_with_its_counts() {
        let report = VerifyReport {
            chains: ChainsCheck {
                correlations: 3,
                verified: 10,
                unchained: 2,
                ..ChainsCheck::default()
            },
            log: LogCheck {
                leaves: 10,
                matched: 10,
                pending: 1,
                ..LogCheck::default()
            },
            checkpoints: CheckpointsCheck {
                checkpoints: 2,
                signatures_checked: true,
                signatures_valid: 2,
                roots_match_up_to: 10,
                ..CheckpointsCheck::default()
            },
        };
        assert!(report.ok());
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "chains: 3 correlations, 10 events verified, 2 unchained (stored before hash chains), 0 broken"
        );
        assert_eq!(lines[1], "log: 10 leaves match their events, 1 pending");
        assert!(
            lines[2].starts_with("checkpoints: 2 signatures valid, roots match the events up to tree size 10"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], "verify: everything checks out");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn a_failing_report_names_the_first_problem_of_each_failing_check_and_counts_them_all() {
        let report = VerifyReport {
            chains: ChainsCheck {
                broken: 2,
                first: Some("event x: content_changed".into()),
                ..ChainsCheck::default()
            },
            log: LogCheck {
                problems: 1,
                first: Some("leaf 3 names event y".into()),
                ..LogCheck::default()
            },
            checkpoints: CheckpointsCheck::default(),
        };
        assert!(!report.ok());
        assert_eq!(report.verdict(), "verify: 3 problems found");
        let details = report.details().to_string();
        assert!(
            details.contains("\nchains: first problem: event x: content_changed"),
            "{details}"
        );
        assert!(
            details.contains("\nlog: first problem: leaf 3 names event y"),
            "{details}"
        );
        assert!(details.contains("checkpoints: none published yet"), "{details}");
        assert!(!details.contains("checkpoints: first problem"), "{details}");
        assert!(!details.contains("verify:"), "the verdict is apart: {details}");
    }

    #[test]
    fn a_leaf_must_name_a_stored_event_whose_hash_it_commits_to() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let other = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(leaf_problem(&leaf(4, "aa"), &[(date, Some("aa".into()))]), None);
        let changed = leaf_problem(&leaf(4, "aa"), &[(date, Some("bb".into()))]).unwrap();
        assert!(changed.starts_with("leaf 4 (event "), "{changed}");
        assert!(changed.contains("rewritten"), "{changed}");
        let missing = leaf_problem(&leaf(4, "aa"), &[]).unwrap();
        assert!(missing.contains("which is not stored"), "{missing}");
        let moved = leaf_problem(&leaf(4, "aa"), &[(other, Some("aa".into()))]).unwrap();
        assert!(moved.contains("stored under 2026-12-07"), "{moved}");
        assert!(
            leaf_problem(&leaf(4, "aa"), &[(date, None)])
                .unwrap()
                .contains("no hash")
        );
    }

    #[test]
    fn checkpoints_are_checked_for_their_signer_their_row_and_the_rebuilt_root() {
        let (signer, _, _) = SignerKey::generate("example.org/log").unwrap();
        let (good, roots) = stored(&signer, &["a", "b", "c"]);
        let key = signer.verifier();

        let mut check = CheckpointsCheck::default();
        check_checkpoints(std::slice::from_ref(&good), &roots, Some(&key), &mut check);
        assert_eq!(
            (check.signatures_valid, check.roots_match_up_to, check.problems),
            (1, 3, 0)
        );

        let (forger, _, _) = SignerKey::generate("example.org/log").unwrap();
        let (forged, _) = stored(&forger, &["a", "b", "c"]);
        let mut check = CheckpointsCheck::default();
        check_checkpoints(&[forged], &roots, Some(&key), &mut check);
        assert_eq!((check.signatures_valid, check.problems), (0, 1));
        assert!(check.first.unwrap().contains("signature does not verify"));

        let (rewritten, _) = stored(&signer, &["a", "x", "c"]);
        let mut check = CheckpointsCheck::default();
        check_checkpoints(&[rewritten], &roots, Some(&key), &mut check);
        assert_eq!(
            (check.signatures_valid, check.roots_match_up_to, check.problems),
            (1, 0, 1)
        );
        assert!(check.first.unwrap().contains("is not the root"));

        let mut check = CheckpointsCheck::default();
        check_checkpoints(&[good], &BTreeMap::new(), None, &mut check);
        assert!(!check.signatures_checked);
        assert!(check.first.unwrap().contains("fewer leaves"));
    }

    #[test]
    fn a_break_is_described_by_its_event_position_and_hashes() {
        let b = ChainBreak {
            event_id: Uuid::from_u128(1),
            position: Some(3),
            kind: BreakKind::ContentChanged,
            message: "changed".into(),
            expected_hash: Some("aa".into()),
            actual_hash: Some("bb".into()),
            previous_hash: None,
        };
        assert_eq!(
            describe_break("rr-1", &b),
            "event 00000000-0000-0000-0000-000000000001 (correlation \"rr-1\", position 3): content_changed: \
             changed (expected hash aa, stored bb)"
        );
        let whole = ChainBreak {
            event_id: Uuid::nil(),
            position: None,
            kind: BreakKind::MissingTail,
            message: "gone".into(),
            expected_hash: Some("aa".into()),
            actual_hash: None,
            previous_hash: None,
        };
        assert_eq!(
            describe_break("rr-2", &whole),
            "correlation \"rr-2\": missing_tail: gone (expected hash aa, none stored)"
        );
    }

    #[test]
    fn a_verifier_key_is_read_from_a_file_or_taken_as_text() {
        let (signer, _, verifier_text) = SignerKey::generate("example.org/log").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("log.key");
        assert!(verifier_key(None, &key_file).is_err(), "no .pub file beside the key");
        std::fs::write(dir.path().join("log.key.pub"), format!("{verifier_text}\n")).unwrap();
        assert_eq!(verifier_key(None, &key_file).unwrap(), signer.verifier());
        assert_eq!(
            verifier_key(Some(&verifier_text), &key_file).unwrap(),
            signer.verifier()
        );
        let file = dir.path().join("other.pub");
        std::fs::write(&file, &verifier_text).unwrap();
        assert_eq!(
            verifier_key(Some(file.to_str().unwrap()), &key_file).unwrap(),
            signer.verifier()
        );
        assert!(verifier_key(Some("not a key"), &key_file).is_err());
    }

    #[test]
    fn only_a_sqlite_file_url_names_a_file() {
        assert_eq!(sqlite_file("sqlite://a/b.db?mode=rwc"), Some(Path::new("a/b.db")));
        assert_eq!(sqlite_file("sqlite:x.db"), Some(Path::new("x.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
