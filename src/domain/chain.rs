//! The hash chain of a correlation: each event's hash covers its content, its position in the
//! correlation (`chain_seq`, in the order events were written, not by timestamp) and the hash of
//! the event before it. A late or clock-skewed event therefore extends its chain instead of
//! breaking it, and editing, removing or reordering an event breaks every link after it.
//!
//! The recipe, so that anyone can recompute a hash in a few lines of another language:
//!
//! 1. Build a JSON object with exactly the members of [`HASHED_FIELDS`], named as there, taken
//!    from the stored event: text as strings; `chain_seq`, `duration_ms`, `retention_days` as
//!    numbers; `is_sensitive` as a boolean; `event_data` and `event_metadata` as the JSON stored;
//!    `event_timestamp` as RFC 3339 UTC with exactly six fractional digits and `Z`
//!    (`2026-12-05T23:47:34.123456Z`); ids as lowercase hyphenated UUIDs; absent values as `null`.
//! 2. Serialize it with the JSON Canonicalization Scheme (RFC 8785).
//! 3. `event_hash` = lowercase hex of SHA-256 of those bytes (`hash_algorithm` = `sha256-unkeyed`),
//!    or of HMAC-SHA256 with the configured key (`hmac-sha256`, the key named by `hash_key_id`).
//!
//! `previous_event_hash` is the `event_hash` of the event at `chain_seq - 1` of the same
//! correlation, `null` for the first. Columns the product may still change (`parent_event_date`,
//! completed by the backfill; the legal-hold columns) and derived ones (`event_date`) are not hashed.

use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::entity::audit_event::Model;

/// `hash_algorithm` of an unkeyed chain.
pub const UNKEYED: &str = "sha256-unkeyed";
/// `hash_algorithm` of a keyed chain (HMAC-SHA256).
pub const KEYED: &str = "hmac-sha256";

/// The members of the hashed document, in the order the recipe lists them (the canonical form
/// sorts them).
pub const HASHED_FIELDS: [&str; 32] = [
    "chain_seq",
    "previous_event_hash",
    "event_id",
    "event_version",
    "event_timestamp",
    "event_type",
    "event_category",
    "event_action",
    "event_outcome",
    "actor_type",
    "actor_id",
    "actor_ip",
    "resource_type",
    "resource_id",
    "resource_name",
    "correlation_id",
    "parent_event_id",
    "trace_id",
    "span_id",
    "namespace",
    "cluster_id",
    "event_data",
    "event_metadata",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "retention_days",
    "is_sensitive",
    "submitted_by",
    "hash_algorithm",
    "hash_key_id",
];

/// A key for keyed chains: HMAC-SHA256, recorded on each event by its id (never the key).
#[derive(Clone)]
pub struct ChainKey {
    /// The name recorded in `hash_key_id`.
    pub id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ChainKey {
    /// A key with its id; at least 32 bytes, so that it is not guessable.
    pub fn new(id: impl Into<String>, secret: Vec<u8>) -> Result<Self, String> {
        let id = id.into();
        if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the hash key id must be 1 to 64 characters without spaces".into());
        }
        if secret.len() < 32 {
            return Err(format!(
                "the hash key must hold at least 32 bytes, got {}",
                secret.len()
            ));
        }
        Ok(Self { id, secret })
    }
}

/// How events are hashed: unkeyed, or with a key.
#[derive(Clone, Debug, Default)]
pub struct ChainHasher {
    key: Option<ChainKey>,
}

impl ChainHasher {
    /// Hashing with `key` (keyed) or without (unkeyed).
    pub fn new(key: Option<ChainKey>) -> Self {
        Self { key }
    }

    /// The `hash_algorithm` and `hash_key_id` new events get.
    pub fn labels(&self) -> (&'static str, Option<String>) {
        match &self.key {
            Some(key) => (KEYED, Some(key.id.clone())),
            None => (UNKEYED, None),
        }
    }

    /// Makes `model` the next link after `previous` (`None` for the first event of its
    /// correlation): sets its position, the previous hash, the algorithm labels and its hash.
    pub fn link(&self, model: &mut Model, previous: Option<(i64, &str)>) {
        let (algorithm, key_id) = self.labels();
        model.chain_seq = Some(previous.map_or(1, |(seq, _)| seq + 1));
        model.previous_event_hash = previous.map(|(_, hash)| hash.to_string());
        model.hash_algorithm = algorithm.to_string();
        model.hash_key_id = key_id;
        model.event_hash = self.hash(model).ok();
    }

    /// The hash `model` should carry, recomputed from its stored content. Fails when the event
    /// was hashed with a key this hasher does not hold.
    pub fn hash(&self, model: &Model) -> Result<String, String> {
        let bytes = canonical(model);
        match (model.hash_algorithm.as_str(), &self.key) {
            (UNKEYED, _) => Ok(hex(&Sha256::digest(&bytes))),
            (KEYED, Some(key)) if model.hash_key_id.as_deref() == Some(key.id.as_str()) => {
                let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key.secret)
                    .map_err(|_| "the hash key cannot key HMAC".to_string())?;
                mac.update(&bytes);
                Ok(hex(&mac.finalize().into_bytes()))
            }
            (KEYED, _) => Err(format!(
                "the event is hashed with key {:?}, which this server does not hold",
                model.hash_key_id.as_deref().unwrap_or("")
            )),
            (other, _) => Err(format!("unknown hash algorithm {other:?}")),
        }
    }
}

/// The RFC 8785 canonical bytes of the hashed members of `model`: [`hashed_document`]
/// canonicalized, byte for byte (unit-tested against `serde_json_canonicalizer` on it), written
/// straight from the event. The members' names are ASCII and fixed, so their sorted order is
/// `SORTED_MEMBERS`; text is escaped as RFC 8785 and `serde_json` both escape it (only `"`,
/// `\` and control characters); numbers and the stored JSON documents go through
/// `serde_json_canonicalizer`. Building the document and canonicalizing it as a whole was most
/// of the work of writing a batch: a map, a key and a value buffer per member, each key parsed
/// back as JSON to be sorted.
pub fn canonical(model: &Model) -> Vec<u8> {
    debug_assert!(
        model.event_data_text.is_none(),
        "a row read for GraphQL output is never hashed"
    );
    let mut out = Vec::with_capacity(768);
    out.push(b'{');
    for (at, (name, write)) in SORTED_MEMBERS.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write(model, &mut out);
    }
    out.push(b'}');
    out
}

/// A hashed member: its name, and how its canonical value is written.
type Member = (&'static str, fn(&Model, &mut Vec<u8>));

/// The members of [`HASHED_FIELDS`] in canonical order (by name; all ASCII, so UTF-16 order is
/// byte order).
const SORTED_MEMBERS: [Member; 32] = [
    ("actor_id", |m, out| text(out, &m.actor_id)),
    ("actor_ip", |m, out| optional_text(out, m.actor_ip.as_deref())),
    ("actor_type", |m, out| text(out, &m.actor_type)),
    ("chain_seq", |m, out| jcs(out, &m.chain_seq)),
    ("cluster_id", |m, out| optional_text(out, m.cluster_id.as_deref())),
    ("correlation_id", |m, out| text(out, &m.correlation_id)),
    ("duration_ms", |m, out| jcs(out, &m.duration_ms)),
    ("error_code", |m, out| optional_text(out, m.error_code.as_deref())),
    ("error_message", |m, out| optional_text(out, m.error_message.as_deref())),
    ("event_action", |m, out| text(out, &m.event_action)),
    ("event_category", |m, out| text(out, &m.event_category)),
    ("event_data", |m, out| jcs(out, &m.event_data)),
    ("event_id", |m, out| write_uuid(out, &m.event_id)),
    ("event_metadata", |m, out| jcs(out, &m.event_metadata)),
    ("event_outcome", |m, out| text(out, &m.event_outcome)),
    ("event_timestamp", |m, out| {
        text(
            out,
            &m.event_timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
    }),
    ("event_type", |m, out| text(out, &m.event_type)),
    ("event_version", |m, out| text(out, &m.event_version)),
    ("hash_algorithm", |m, out| text(out, &m.hash_algorithm)),
    ("hash_key_id", |m, out| optional_text(out, m.hash_key_id.as_deref())),
    ("is_sensitive", |m, out| jcs(out, &m.is_sensitive)),
    ("namespace", |m, out| optional_text(out, m.namespace.as_deref())),
    ("parent_event_id", |m, out| match &m.parent_event_id {
        Some(id) => write_uuid(out, id),
        None => out.extend_from_slice(b"null"),
    }),
    ("previous_event_hash", |m, out| {
        optional_text(out, m.previous_event_hash.as_deref());
    }),
    ("resource_id", |m, out| text(out, &m.resource_id)),
    ("resource_name", |m, out| optional_text(out, m.resource_name.as_deref())),
    ("resource_type", |m, out| text(out, &m.resource_type)),
    ("retention_days", |m, out| jcs(out, &m.retention_days)),
    ("severity", |m, out| optional_text(out, m.severity.as_deref())),
    ("span_id", |m, out| optional_text(out, m.span_id.as_deref())),
    ("submitted_by", |m, out| optional_text(out, m.submitted_by.as_deref())),
    ("trace_id", |m, out| optional_text(out, m.trace_id.as_deref())),
];

/// A JSON string, escaped as RFC 8785 escapes it.
fn text(out: &mut Vec<u8>, value: &str) {
    // Writing a string to a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn optional_text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => text(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `id` as a JSON string, lowercase and hyphenated (it needs no escaping): as the chain's
/// recipe and the GraphQL `UUID` scalar both write it.
pub(crate) fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buffer = uuid::Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buffer).as_bytes());
    out.push(b'"');
}

/// Any other value (numbers, booleans, `null`, stored JSON documents), canonicalized by
/// `serde_json_canonicalizer`.
fn jcs<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing these cannot fail: every key is a string and every number finite.
    let _ = serde_json_canonicalizer::to_writer(value, out);
}

/// The document the recipe describes, before canonicalization.
pub fn hashed_document(m: &Model) -> Value {
    let mut o = Map::new();
    let mut put = |key: &str, value: Value| {
        o.insert(key.to_string(), value);
    };
    put("chain_seq", json!(m.chain_seq));
    put("previous_event_hash", json!(m.previous_event_hash));
    put("event_id", json!(m.event_id.hyphenated().to_string()));
    put("event_version", json!(m.event_version));
    put(
        "event_timestamp",
        json!(m.event_timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    );
    put("event_type", json!(m.event_type));
    put("event_category", json!(m.event_category));
    put("event_action", json!(m.event_action));
    put("event_outcome", json!(m.event_outcome));
    put("actor_type", json!(m.actor_type));
    put("actor_id", json!(m.actor_id));
    put("actor_ip", json!(m.actor_ip));
    put("resource_type", json!(m.resource_type));
    put("resource_id", json!(m.resource_id));
    put("resource_name", json!(m.resource_name));
    put("correlation_id", json!(m.correlation_id));
    put(
        "parent_event_id",
        json!(m.parent_event_id.map(|id| id.hyphenated().to_string())),
    );
    put("trace_id", json!(m.trace_id));
    put("span_id", json!(m.span_id));
    put("namespace", json!(m.namespace));
    put("cluster_id", json!(m.cluster_id));
    put("event_data", m.event_data.clone());
    put("event_metadata", m.event_metadata.clone().unwrap_or(Value::Null));
    put("severity", json!(m.severity));
    put("duration_ms", json!(m.duration_ms));
    put("error_code", json!(m.error_code));
    put("error_message", json!(m.error_message));
    put("retention_days", json!(m.retention_days));
    put("is_sensitive", json!(m.is_sensitive));
    put("submitted_by", json!(m.submitted_by));
    put("hash_algorithm", json!(m.hash_algorithm));
    put("hash_key_id", json!(m.hash_key_id));
    Value::Object(o)
}

/// Lowercase hex, the spelling of every hash the chain and the log show.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The kinds of break a chain can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakKind {
    /// The event's content no longer matches its hash: it was changed after it was written.
    ContentChanged,
    /// Its `previous_event_hash` is not the hash of the event before it.
    LinkBroken,
    /// Positions before it are missing: events were removed.
    MissingEvents,
    /// Two events claim one position: one was inserted.
    DuplicatePosition,
    /// The chain's recorded head is past its last stored event, or names another hash: its last
    /// events were removed or replaced.
    MissingTail,
    /// The hash cannot be recomputed here (a key this server does not hold, an unknown algorithm).
    Unverifiable,
    /// The event's hash is not the one the transparency log recorded for it: the event and its
    /// chain were rewritten with recomputed hashes.
    LogMismatch,
    /// An unkeyed hash follows keyed ones: someone without the key extended the chain.
    KeyDowngrade,
    /// A retention run is recorded as deleting the event before its retention passed.
    PurgedUnexpired,
}

impl BreakKind {
    /// The snake_case name used in REST answers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentChanged => "content_changed",
            Self::LinkBroken => "link_broken",
            Self::MissingEvents => "missing_events",
            Self::DuplicatePosition => "duplicate_position",
            Self::MissingTail => "missing_tail",
            Self::Unverifiable => "unverifiable",
            Self::LogMismatch => "log_mismatch",
            Self::KeyDowngrade => "key_downgrade",
            Self::PurgedUnexpired => "purged_unexpired",
        }
    }
}

/// What is wrong at one place of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The event where the chain breaks (the first one after a gap when events are missing).
    pub event_id: uuid::Uuid,
    /// Its stored position.
    pub position: Option<i64>,
    /// What kind of break.
    pub kind: BreakKind,
    /// What the check found, in words.
    pub message: String,
    /// The hash the event should carry (recomputed), when known.
    pub expected_hash: Option<String>,
    /// The hash it carries.
    pub actual_hash: Option<String>,
    /// The previous hash it carries.
    pub previous_hash: Option<String>,
}

/// The outcome of checking one correlation's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Events of the correlation that are part of the chain.
    pub chained: u64,
    /// Of those, the ones whose hash, link and position all check out.
    pub verified: u64,
    /// Events written before hash chains existed (no position, no hash): not verifiable.
    pub unchained: u64,
    /// Events of the chain that retention runs deleted, as they recorded them.
    pub purged: u64,
    /// The runs that deleted them.
    pub purged_by: std::collections::BTreeSet<uuid::Uuid>,
    /// Every break found, in chain order.
    pub breaks: Vec<ChainBreak>,
}

impl ChainReport {
    /// Whether nothing is wrong.
    pub fn valid(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// An event of the chain that a retention run deleted, as the run recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgedLink {
    /// The event.
    pub event_id: uuid::Uuid,
    /// Its position.
    pub position: Option<i64>,
    /// Its hash.
    pub event_hash: Option<String>,
    /// The run that deleted it.
    pub run_id: uuid::Uuid,
    /// Whether its retention had passed by the run's date.
    pub was_due: bool,
}

/// Checks a correlation's events (in any order) against their hashes, their links, the chain's
/// recorded head (`head`: last position and hash, when the correlation has one) and the leaf
/// hashes the transparency log recorded for them (`logged`, by event; events not sequenced yet
/// are absent). `leaf` computes an event's leaf hash from its `event_hash`.
///
/// `purged` are the events retention runs deleted: a position one of them held is not a gap,
/// and the event after it links to its recorded hash. A removed event without such a record,
/// or one removed before its retention passed, is a break.
pub fn verify(
    hasher: &ChainHasher,
    events: &[Model],
    purged: &[PurgedLink],
    head: Option<(i64, &str)>,
    logged: &std::collections::HashMap<uuid::Uuid, [u8; 32]>,
    leaf: impl Fn(&str) -> [u8; 32],
) -> ChainReport {
    let mut chained: Vec<&Model> = events.iter().filter(|m| m.chain_seq.is_some()).collect();
    chained.sort_by_key(|m| (m.chain_seq, m.event_id));
    let by_position: std::collections::BTreeMap<i64, &PurgedLink> =
        purged.iter().filter_map(|p| p.position.map(|at| (at, p))).collect();
    let mut report = ChainReport {
        chained: chained.len() as u64,
        verified: 0,
        unchained: (events.len() - chained.len()) as u64,
        purged: purged.len() as u64,
        purged_by: purged.iter().map(|p| p.run_id).collect(),
        breaks: Vec::new(),
    };
    for gone in purged.iter().filter(|p| !p.was_due) {
        report.breaks.push(ChainBreak {
            event_id: gone.event_id,
            position: gone.position,
            kind: BreakKind::PurgedUnexpired,
            message: format!(
                "retention run {} deleted it, but its retention had not passed by the run's date",
                gone.run_id
            ),
            expected_hash: None,
            actual_hash: gone.event_hash.clone(),
            previous_hash: None,
        });
    }
    // An event outside the chain is either older than hash chains (no hash, no leaf) or imported
    // with a hash that could not be verified (a note saying so, its hash logged as it came). One
    // with a logged hash but no such note, or whose hash no longer matches its leaf, was taken out
    // of its chain.
    for event in events.iter().filter(|m| m.chain_seq.is_none()) {
        let Some(logged) = logged.get(&event.event_id) else {
            continue;
        };
        let matches = event.event_hash.as_deref().is_some_and(|hash| leaf(hash) == *logged);
        if !matches || event.chain_note.is_none() {
            report.breaks.push(ChainBreak {
                event_id: event.event_id,
                position: None,
                kind: BreakKind::LogMismatch,
                message:
                    "the transparency log recorded this event, but it no longer has its place or hash in the chain"
                        .into(),
                expected_hash: None,
                actual_hash: event.event_hash.clone(),
                previous_hash: event.previous_event_hash.clone(),
            });
        }
    }
    // The position and hash of the last link seen, stored or purged.
    let mut previous: Option<&Model> = None;
    let mut last_link: Option<(i64, Option<&str>)> = None;
    let mut expected_position = 1_i64;
    for event in chained {
        let position = event.chain_seq.unwrap_or_default();
        // Positions skipped since the last stored event: those retention runs deleted are no gap.
        let mut missing = 0;
        if position > expected_position {
            let purged_between = by_position.range(expected_position..position).count() as i64;
            missing = position - expected_position - purged_between;
            if missing == 0 {
                let gone = by_position.get(&(position - 1)).copied();
                last_link = Some((position - 1, gone.and_then(|g| g.event_hash.as_deref())));
                expected_position = position;
            }
        }
        let mut broken = false;
        let mut record = |kind: BreakKind, message: String, expected: Option<String>| {
            broken = true;
            report.breaks.push(ChainBreak {
                event_id: event.event_id,
                position: event.chain_seq,
                kind,
                message,
                expected_hash: expected,
                actual_hash: event.event_hash.clone(),
                previous_hash: event.previous_event_hash.clone(),
            });
        };
        if previous.is_some_and(|p| p.chain_seq == event.chain_seq) {
            record(
                BreakKind::DuplicatePosition,
                format!("a second event claims position {position}: one of them was inserted"),
                None,
            );
        } else if position != expected_position {
            record(
                BreakKind::MissingEvents,
                format!(
                    "{missing} of positions {expected_position} to {} are missing and no retention run deleted them: \
                     events were removed before this one",
                    position - 1
                ),
                None,
            );
        }
        let expected_previous = last_link.and_then(|(_, hash)| hash.map(str::to_string));
        if event.previous_event_hash != expected_previous && position == expected_position {
            record(
                BreakKind::LinkBroken,
                "its previous_event_hash is not the hash of the event before it".into(),
                expected_previous,
            );
        }
        match hasher.hash(event) {
            Ok(hash) if Some(&hash) == event.event_hash.as_ref() => {}
            Ok(hash) => record(
                BreakKind::ContentChanged,
                "its stored content no longer matches its hash: the event was changed after it was written".into(),
                Some(hash),
            ),
            Err(reason) => record(BreakKind::Unverifiable, reason, None),
        }
        if event.hash_algorithm != KEYED && previous.is_some_and(|p| p.hash_algorithm == KEYED) {
            record(
                BreakKind::KeyDowngrade,
                "its hash is unkeyed although the events before it are keyed: it was added without the key".into(),
                None,
            );
        }
        if let (Some(logged), Some(hash)) = (logged.get(&event.event_id), event.event_hash.as_deref())
            && leaf(hash) != *logged
        {
            record(
                BreakKind::LogMismatch,
                "its hash differs from the one the transparency log recorded: it was rewritten, chain and all".into(),
                None,
            );
        }
        if !broken {
            report.verified += 1;
        }
        expected_position = position + 1;
        previous = Some(event);
        last_link = Some((position, event.event_hash.as_deref()));
    }
    // Purged positions after the last stored event.
    while let Some(gone) = by_position.get(&expected_position) {
        last_link = Some((expected_position, gone.event_hash.as_deref()));
        expected_position += 1;
    }
    if head.is_none()
        && let Some((position, hash)) = last_link
    {
        report.breaks.push(ChainBreak {
            event_id: previous.map(|p| p.event_id).unwrap_or_default(),
            position: Some(position),
            kind: BreakKind::MissingTail,
            message: "the chain's recorded head is gone: it was removed, perhaps with the last events".into(),
            expected_hash: None,
            actual_hash: hash.map(str::to_string),
            previous_hash: None,
        });
    }
    if let Some((last, last_hash)) = head {
        let (tail, tail_hash) = last_link.unwrap_or((0, None));
        if last != tail || tail_hash != Some(last_hash) {
            report.breaks.push(ChainBreak {
                event_id: previous.map(|p| p.event_id).unwrap_or_default(),
                position: previous.and_then(|p| p.chain_seq),
                kind: BreakKind::MissingTail,
                message: format!(
                    "the chain was recorded up to position {last}, but its stored and purged events end at position {tail}: \
                     the last events were removed or replaced"
                ),
                expected_hash: Some(last_hash.to_string()),
                actual_hash: tail_hash.map(str::to_string),
                previous_hash: None,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(n: u8) -> Model {
        let timestamp =
            chrono::Utc.with_ymd_and_hms(2026, 12, 5, 23, 47, 34).unwrap() + chrono::Duration::microseconds(123_456);
        Model {
            event_id: uuid::Uuid::from_u128(u128::from(n)),
            event_version: "1.0".into(),
            event_timestamp: timestamp,
            event_date: timestamp.date_naive(),
            event_type: "gateway.signal.received".into(),
            event_category: "gateway".into(),
            event_action: "received".into(),
            event_outcome: "success".into(),
            actor_type: "service".into(),
            actor_id: "gateway-service".into(),
            actor_ip: None,
            resource_type: "signal".into(),
            resource_id: "HighCPU".into(),
            resource_name: None,
            correlation_id: "rr-2026-001".into(),
            parent_event_id: None,
            parent_event_date: None,
            trace_id: None,
            span_id: None,
            namespace: None,
            cluster_id: None,
            event_data: json!({"b": 1.0, "a": "é", "n": 10_u64}),
            event_metadata: None,
            severity: None,
            duration_ms: Some(12),
            error_code: None,
            error_message: None,
            retention_days: 2555,
            is_sensitive: false,
            event_hash: None,
            previous_event_hash: None,
            hash_algorithm: UNKEYED.into(),
            legal_hold: false,
            legal_hold_reason: None,
            legal_hold_placed_by: None,
            legal_hold_placed_at: None,
            submitted_by: Some("svc-writer".into()),
            chain_seq: None,
            hash_key_id: None,
            chain_note: None,
            event_data_text: None,
        }
    }

    fn chain(hasher: &ChainHasher, n: u8) -> Vec<Model> {
        let mut out: Vec<Model> = Vec::new();
        for i in 1..=n {
            let mut m = event(i);
            let previous = out
                .last()
                .map(|p| (p.chain_seq.unwrap(), p.event_hash.clone().unwrap()));
            hasher.link(&mut m, previous.as_ref().map(|(s, h)| (*s, h.as_str())));
            out.push(m);
        }
        out
    }

    use std::collections::HashMap;

    fn no_leaf(_: &str) -> [u8; 32] {
        [0; 32]
    }

    fn head(events: &[Model]) -> Option<(i64, &str)> {
        events
            .last()
            .map(|m| (m.chain_seq.unwrap(), m.event_hash.as_deref().unwrap()))
    }

    /// The canonical text of the test event, as RFC 8785 writes it (members sorted by UTF-16 code
    /// units, no whitespace, `1.0` as `1`).
    const CANONICAL: &str = r#"{"actor_id":"gateway-service","actor_ip":null,"actor_type":"service","chain_seq":1,"cluster_id":null,"correlation_id":"rr-2026-001","duration_ms":12,"error_code":null,"error_message":null,"event_action":"received","event_category":"gateway","event_data":{"a":"é","b":1,"n":10},"event_id":"00000000-0000-0000-0000-000000000001","event_metadata":null,"event_outcome":"success","event_timestamp":"2026-12-05T23:47:34.123456Z","event_type":"gateway.signal.received","event_version":"1.0","hash_algorithm":"sha256-unkeyed","hash_key_id":null,"is_sensitive":false,"namespace":null,"parent_event_id":null,"previous_event_hash":null,"resource_id":"HighCPU","resource_name":null,"resource_type":"signal","retention_days":2555,"severity":null,"span_id":null,"submitted_by":"svc-writer","trace_id":null}"#;

    #[test]
    fn the_canonical_form_written_from_the_event_is_the_documents_canonical_form() {
        let mut names: Vec<&str> = SORTED_MEMBERS.iter().map(|(name, _)| *name).collect();
        let mut fields = HASHED_FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(names, fields, "the members are the recipe's, sorted");
        names.dedup();
        assert_eq!(names.len(), HASHED_FIELDS.len());
        let texts = [
            "",
            "plain",
            "quote \" backslash \\ slash / tab \t newline \n cr \r bell \u{7} nul \u{0} unit \u{1f} del \u{7f}",
            "é ü 東京 \u{2028} \u{2029} 😀 \u{feff}",
            "\u{8}\u{c}<script>&amp;",
        ];
        let documents = [
            json!(null),
            json!({}),
            json!({"b": 1.0, "a": "é", "n": 10_u64, "big": 1e21, "small": 1e-7, "neg": -0.0, "x": 123.456}),
            json!({"\u{20ac}": 1, "\r": 2, "\u{1f600}": 3, "\u{fb33}": 4, "nested": [{"z": true, "a": [null, 2.5e-3]}]}),
            json!([1, "two", {"three": 3}]),
            json!("a string"),
            json!(9_007_199_254_740_993_i64),
        ];
        let mut n = 0u8;
        for text in texts {
            for document in &documents {
                n = n.wrapping_add(1);
                let mut m = event(n);
                m.event_type = format!("t.{text}");
                m.actor_id = text.to_string();
                m.error_message = (n.is_multiple_of(2)).then(|| text.to_string());
                m.resource_name = (n.is_multiple_of(3)).then(|| format!("{text}{text}"));
                m.event_data = document.clone();
                m.event_metadata = (n % 2 == 1).then(|| document.clone());
                m.parent_event_id = (n.is_multiple_of(2)).then(|| uuid::Uuid::from_u128(u128::from(n) << 64 | 0xabc));
                m.chain_seq = if n.is_multiple_of(4) {
                    None
                } else {
                    Some(i64::from(n) * 1_000_003)
                };
                m.duration_ms = (!n.is_multiple_of(3)).then_some(i32::from(n) - 100);
                m.retention_days = i32::from(n) * 7;
                m.is_sensitive = n.is_multiple_of(2);
                m.previous_event_hash = (!n.is_multiple_of(5)).then(|| "ab".repeat(32));
                m.hash_key_id = (n % 3 == 1).then(|| "key-1".into());
                let expected = serde_json_canonicalizer::to_vec(&hashed_document(&m)).unwrap();
                assert_eq!(
                    String::from_utf8(canonical(&m)).unwrap(),
                    String::from_utf8(expected).unwrap(),
                    "text {text:?}, document {document}"
                );
            }
        }
    }

    #[test]
    fn the_canonical_form_sorts_members_and_writes_numbers_as_ecmascript_does() {
        let mut m = event(1);
        m.chain_seq = Some(1);
        assert_eq!(String::from_utf8(canonical(&m)).unwrap(), CANONICAL);
        assert_eq!(hashed_document(&m).as_object().unwrap().len(), HASHED_FIELDS.len());
        for field in HASHED_FIELDS {
            assert!(CANONICAL.contains(&format!("\"{field}\":")), "{field} is hashed");
        }
    }

    #[test]
    fn the_recipe_gives_the_hash_another_language_computes() {
        let mut m = event(1);
        ChainHasher::default().link(&mut m, None);
        // Computed apart from this code, in Python:
        // hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        //     .encode()).hexdigest() == sha256 of CANONICAL
        assert_eq!(
            m.event_hash.as_deref(),
            Some("4d2728c117dbc0022d11a0f92ea8f516570e4ae508c5e0e91d2e5d7c4c31ac59")
        );
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let hasher = ChainHasher::default();
        let events = chain(&hasher, 5);
        let report = verify(&hasher, &events, &[], head(&events), &HashMap::new(), no_leaf);
        assert!(report.valid(), "{:?}", report.breaks);
        assert_eq!((report.chained, report.verified, report.unchained), (5, 5, 0));
    }

    #[test]
    fn a_changed_field_is_found_at_its_event() {
        let hasher = ChainHasher::default();
        let mut events = chain(&hasher, 5);
        events[2].event_outcome = "failure".into();
        let report = verify(&hasher, &events, &[], head(&events), &HashMap::new(), no_leaf);
        assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].kind, BreakKind::ContentChanged);
        assert_eq!(report.breaks[0].event_id, events[2].event_id);
        assert_eq!(report.verified, 4);
    }

    #[test]
    fn a_removed_event_a_removed_tail_and_an_inserted_event_are_found() {
        let hasher = ChainHasher::default();
        let events = chain(&hasher, 5);
        let (first_head, _) = head(&events).unwrap();
        let last_hash = events[4].event_hash.clone().unwrap();

        let mut gap = events.clone();
        gap.remove(2);
        let report = verify(
            &hasher,
            &gap,
            &[],
            Some((first_head, &last_hash)),
            &HashMap::new(),
            no_leaf,
        );
        assert_eq!(report.breaks[0].kind, BreakKind::MissingEvents, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].event_id, events[3].event_id);

        let mut tail = events.clone();
        tail.pop();
        let report = verify(
            &hasher,
            &tail,
            &[],
            Some((first_head, &last_hash)),
            &HashMap::new(),
            no_leaf,
        );
        assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].kind, BreakKind::MissingTail);

        let mut forged = events.clone();
        let mut intruder = event(99);
        hasher.link(&mut intruder, Some((2, events[1].event_hash.as_deref().unwrap())));
        forged.push(intruder);
        let report = verify(
            &hasher,
            &forged,
            &[],
            Some((first_head, &last_hash)),
            &HashMap::new(),
            no_leaf,
        );
        assert!(
            report.breaks.iter().any(|b| b.kind == BreakKind::DuplicatePosition),
            "{:?}",
            report.breaks
        );
    }

    #[test]
    fn reordering_two_events_breaks_the_links() {
        let hasher = ChainHasher::default();
        let mut events = chain(&hasher, 4);
        let (a, b) = (events[1].chain_seq, events[2].chain_seq);
        events[1].chain_seq = b;
        events[2].chain_seq = a;
        let report = verify(&hasher, &events, &[], head(&events), &HashMap::new(), no_leaf);
        assert!(!report.valid());
        assert!(
            report.breaks.iter().all(|b| b.kind != BreakKind::MissingEvents),
            "{:?}",
            report.breaks
        );
    }

    #[test]
    fn a_keyed_chain_needs_its_key_to_verify_and_cannot_be_rewritten_without_it() {
        let key = ChainKey::new("k1", vec![7; 32]).unwrap();
        let keyed = ChainHasher::new(Some(key));
        let events = chain(&keyed, 3);
        assert_eq!(events[0].hash_algorithm, KEYED);
        assert_eq!(events[0].hash_key_id.as_deref(), Some("k1"));
        assert!(verify(&keyed, &events, &[], head(&events), &HashMap::new(), no_leaf).valid());
        // Recomputed without the key, every hash differs: a forger cannot rebuild the chain.
        let report = verify(
            &ChainHasher::default(),
            &events,
            &[],
            head(&events),
            &HashMap::new(),
            no_leaf,
        );
        assert!(
            report.breaks.iter().all(|b| b.kind == BreakKind::Unverifiable),
            "{:?}",
            report.breaks
        );
        let other = ChainHasher::new(Some(ChainKey::new("k1", vec![8; 32]).unwrap()));
        assert!(!verify(&other, &events, &[], head(&events), &HashMap::new(), no_leaf).valid());
        assert!(ChainKey::new("k2", vec![1; 31]).is_err(), "short keys are refused");
    }

    #[test]
    fn a_chain_rewritten_with_recomputed_hashes_disagrees_with_the_log() {
        let hasher = ChainHasher::default();
        let events = chain(&hasher, 3);
        let leaf = |hash: &str| -> [u8; 32] { Sha256::digest(hash.as_bytes()).into() };
        let logged: HashMap<uuid::Uuid, [u8; 32]> = events
            .iter()
            .map(|e| (e.event_id, leaf(e.event_hash.as_deref().unwrap())))
            .collect();
        assert!(verify(&hasher, &events, &[], head(&events), &logged, leaf).valid());
        // The attacker edits event 2 and recomputes every hash after it, and the head.
        let mut rewritten = events.clone();
        rewritten[1].event_outcome = "failure".into();
        for i in 1..3 {
            let previous = (
                rewritten[i - 1].chain_seq.unwrap(),
                rewritten[i - 1].event_hash.clone().unwrap(),
            );
            hasher.link(&mut rewritten[i], Some((previous.0, &previous.1)));
        }
        let report = verify(&hasher, &rewritten, &[], head(&rewritten), &HashMap::new(), leaf);
        assert!(report.valid(), "the chain alone cannot tell: {:?}", report.breaks);
        let report = verify(&hasher, &rewritten, &[], head(&rewritten), &logged, leaf);
        assert_eq!(report.breaks.len(), 2, "{:?}", report.breaks);
        assert!(report.breaks.iter().all(|b| b.kind == BreakKind::LogMismatch));
        assert_eq!(report.breaks[0].event_id, events[1].event_id);
    }

    #[test]
    fn an_unkeyed_event_after_keyed_ones_and_a_removed_head_are_breaks() {
        let keyed = ChainHasher::new(Some(ChainKey::new("k1", vec![7; 32]).unwrap()));
        let mut events = chain(&keyed, 2);
        let mut forged = event(9);
        let previous = (events[1].chain_seq.unwrap(), events[1].event_hash.clone().unwrap());
        ChainHasher::default().link(&mut forged, Some((previous.0, &previous.1)));
        events.push(forged);
        let report = verify(&keyed, &events, &[], head(&events), &HashMap::new(), no_leaf);
        assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].kind, BreakKind::KeyDowngrade);
        let report = verify(&keyed, &events[..2], &[], None, &HashMap::new(), no_leaf);
        assert_eq!(report.breaks[0].kind, BreakKind::MissingTail, "{:?}", report.breaks);
    }

    #[test]
    fn an_event_taken_out_of_its_chain_still_shows_in_the_log() {
        let hasher = ChainHasher::default();
        let mut events = chain(&hasher, 2);
        let leaf = |hash: &str| -> [u8; 32] { Sha256::digest(hash.as_bytes()).into() };
        let logged: HashMap<uuid::Uuid, [u8; 32]> = events
            .iter()
            .map(|e| (e.event_id, leaf(e.event_hash.as_deref().unwrap())))
            .collect();
        // The attacker removes the last event's position and moves the head back.
        events[1].chain_seq = None;
        let report = verify(&hasher, &events, &[], head(&events[..1]), &logged, leaf);
        assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].kind, BreakKind::LogMismatch);
        assert_eq!(report.breaks[0].event_id, events[1].event_id);
        // An import set apart (a note, its hash logged as it came) is not a break.
        events[1].chain_note = Some("imported with a hash this server cannot verify: test".into());
        assert!(verify(&hasher, &events, &[], head(&events[..1]), &logged, leaf).valid());
    }

    #[test]
    fn events_without_a_position_are_counted_apart() {
        let hasher = ChainHasher::default();
        let mut events = chain(&hasher, 2);
        events.push(event(50));
        let report = verify(&hasher, &events, &[], head(&events[..2]), &HashMap::new(), no_leaf);
        assert!(report.valid(), "{:?}", report.breaks);
        assert_eq!(report.unchained, 1);
    }

    fn purged(m: &Model, due: bool) -> PurgedLink {
        PurgedLink {
            event_id: m.event_id,
            position: m.chain_seq,
            event_hash: m.event_hash.clone(),
            run_id: uuid::Uuid::from_u128(7),
            was_due: due,
        }
    }

    #[test]
    fn purged_positions_are_no_gap_and_unrecorded_removals_still_are() {
        let hasher = ChainHasher::default();
        let events = chain(&hasher, 5);
        // Positions 1, 2 and 4 were purged; 3 and 5 remain and link to the recorded hashes.
        let gone: Vec<PurgedLink> = [0, 1, 3].iter().map(|&i| purged(&events[i], true)).collect();
        let kept = vec![events[2].clone(), events[4].clone()];
        let report = verify(&hasher, &kept, &gone, head(&events), &HashMap::new(), no_leaf);
        assert!(report.valid(), "{:?}", report.breaks);
        assert_eq!((report.verified, report.purged), (2, 3));
        assert_eq!(report.purged_by.len(), 1);
        // The tail purged too, or the whole chain: still whole.
        let all: Vec<PurgedLink> = events.iter().map(|e| purged(e, true)).collect();
        assert!(verify(&hasher, &[], &all, head(&events), &HashMap::new(), no_leaf).valid());
        // Position 4 removed without a record: a gap, named as such.
        let report = verify(&hasher, &kept, &gone[..2], head(&events), &HashMap::new(), no_leaf);
        assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
        assert_eq!(report.breaks[0].kind, BreakKind::MissingEvents);
        assert!(
            report.breaks[0].message.contains("1 of positions 4 to 4"),
            "{}",
            report.breaks[0].message
        );
        // A purge recorded before the event's retention passed is a break of its own.
        let early = vec![
            purged(&events[0], true),
            purged(&events[1], false),
            purged(&events[3], true),
        ];
        let report = verify(&hasher, &kept, &early, head(&events), &HashMap::new(), no_leaf);
        assert_eq!(report.breaks.len(), 1);
        assert_eq!(report.breaks[0].kind, BreakKind::PurgedUnexpired);
        assert_eq!(report.breaks[0].event_id, events[1].event_id);
    }
}
