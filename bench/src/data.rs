//! Deterministic data: the same seed in the same month generates the same events, byte for byte.
//!
//! The server workloads read a year of events (the twelve months before the current one, so one
//! monthly partition each) made of causality trees of several shapes, shuffled in time:
//! deep chains, wide fan-outs, bushy trees, and small trees (a root, three children, two
//! grandchildren each) that fill the rest.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use auditgraph::domain::EventKey;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

/// A deterministic 64-bit mix (SplitMix64's finaliser).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A seeded generator (SplitMix64): small, fast and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self(mix(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A time-ordered (version 7) UUID for an event at `at`, as the server generates them: ids
    /// of events close in time share index pages, which real workloads rely on.
    pub fn uuid_at(&mut self, at: DateTime<Utc>) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        random[8..].copy_from_slice(&self.next_u64().to_be_bytes()[..2]);
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

/// The first instant of the current month (UTC); data lies in the twelve months before it.
pub fn this_month() -> anyhow::Result<DateTime<Utc>> {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .context("the first of this month")
}

/// How the trees of the data set are shaped.
#[derive(Clone, Copy, Debug)]
pub struct Shapes {
    /// Chains: each event the only child of the one before.
    pub chains: u64,
    /// Events per chain.
    pub chain_length: u64,
    /// Fan-outs: one root with many children.
    pub fans: u64,
    /// Children per fan-out root.
    pub fan_width: u64,
    /// Bushy trees: every event has `bush_branching` children down to `bush_depth`.
    pub bushes: u64,
    /// Children per event of a bushy tree.
    pub bush_branching: u64,
    /// Levels below the root of a bushy tree.
    pub bush_depth: u32,
}

impl Default for Shapes {
    fn default() -> Self {
        Self {
            chains: 20,
            chain_length: 1_000,
            fans: 20,
            fan_width: 5_000,
            bushes: 30,
            bush_branching: 4,
            bush_depth: 6,
        }
    }
}

impl Shapes {
    fn bush_size(&self) -> u64 {
        (0..=self.bush_depth).map(|d| self.bush_branching.pow(d)).sum()
    }

    fn fixed_events(&self) -> u64 {
        self.chains * self.chain_length + self.fans * (1 + self.fan_width) + self.bushes * self.bush_size()
    }
}

/// One tree of the data set, as the workloads need it.
#[derive(Clone, Copy, Debug)]
pub struct Tree {
    /// The root.
    pub root: EventKey,
    /// The deepest event (the last of a chain, the last of a bushy tree's deepest level).
    pub leaf: EventKey,
    /// Events below the root.
    pub descendants: u64,
    /// Levels below the root.
    pub depth: u64,
}

/// What was generated.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Events written.
    pub events: u64,
    /// The chains.
    pub chains: Vec<Tree>,
    /// The fan-outs.
    pub fans: Vec<Tree>,
    /// The bushy trees.
    pub bushes: Vec<Tree>,
    /// How many small trees fill the rest.
    pub small_trees: u64,
    /// Roots of small trees: the parents new events name in the write workloads.
    pub parents: Vec<EventKey>,
}

impl Dataset {
    /// One line for the results header.
    pub fn describe(&self, shapes: &Shapes, seed: u64) -> String {
        format!(
            "{} events over 12 monthly partitions (seed {seed}): {} chains of {}, {} fan-outs of 1 + {}, \
             {} bushy trees of {} ({} children per event, {} levels), {} small trees of 10 and single events",
            self.events,
            shapes.chains,
            shapes.chain_length,
            shapes.fans,
            shapes.fan_width,
            shapes.bushes,
            shapes.bush_size(),
            shapes.bush_branching,
            shapes.bush_depth,
            self.small_trees,
        )
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Chain,
    Fan,
    Bush,
    Small,
    Single,
}

const CATEGORIES: [&str; 6] = [
    "gateway",
    "orchestration",
    "workflow",
    "analysis",
    "execution",
    "notification",
];

struct Writer<W: Write> {
    out: W,
    rng: Rng,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Writes one event in the REST field shape and returns its key.
    fn event(
        &mut self,
        at: DateTime<Utc>,
        kind: &str,
        tree: usize,
        parent: Option<EventKey>,
    ) -> anyhow::Result<EventKey> {
        let id = self.rng.uuid_at(at);
        let n = self.written;
        let mut event = json!({
            "event_id": id,
            "version": "1.0",
            "event_type": format!("bench.{kind}"),
            "event_timestamp": at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "event_category": CATEGORIES[(n % 6) as usize],
            "event_action": kind,
            "event_outcome": if n.is_multiple_of(17) { "failure" } else { "success" },
            "actor_type": "service",
            "actor_id": format!("svc-{}", n % 20),
            "resource_type": "Pod",
            "resource_id": format!("pod-{}", n % 1_000),
            "namespace": if n.is_multiple_of(3) { "staging" } else { "prod" },
            "correlation_id": format!("tree-{tree}"),
            "event_data": {"tree": tree, "n": n, "signal_name": "HighCPU", "replicas": n % 7},
        });
        if let Some(parent) = parent {
            event["parent_event_id"] = json!(parent.id);
            event["parent_event_date"] = json!(parent.date.to_string());
        }
        serde_json::to_writer(&mut self.out, &event)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(EventKey {
            id,
            date: at.date_naive(),
        })
    }
}

/// Writes `events` events as NDJSON to `path` and returns what the workloads need to know of them.
pub fn generate(path: &Path, events: u64, shapes: &Shapes, seed: u64) -> anyhow::Result<Dataset> {
    let fixed = shapes.fixed_events();
    anyhow::ensure!(
        events >= fixed,
        "{events} events cannot hold the fixed trees ({fixed} events); ask for more"
    );
    let small = (events - fixed) / 10;
    let singles = (events - fixed) % 10;
    let mut plan: Vec<(u64, Shape)> = Vec::new();
    let mut rng = Rng::new(seed);
    let mut add = |count: u64, shape: Shape| {
        for _ in 0..count {
            plan.push((rng.next_u64(), shape));
        }
    };
    add(shapes.chains, Shape::Chain);
    add(shapes.fans, Shape::Fan);
    add(shapes.bushes, Shape::Bush);
    add(small, Shape::Small);
    add(singles, Shape::Single);
    plan.sort_by_key(|(key, _)| *key);

    // 360 days of tree starts leave a margin for the longest tree (a chain: one event a minute)
    // to end before this month.
    let start = this_month()? - Duration::days(365);
    let spacing_ms = Duration::days(360).num_milliseconds() / plan.len().max(1) as i64;
    let mut writer = Writer {
        out: BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?),
        rng: Rng::new(seed ^ 0xDA7A),
        written: 0,
    };
    let mut data = Dataset {
        small_trees: small,
        ..Dataset::default()
    };
    for (tree, (_, shape)) in plan.into_iter().enumerate() {
        let at = start + Duration::milliseconds(spacing_ms * tree as i64);
        match shape {
            Shape::Chain => {
                let root = writer.event(at, "chain", tree, None)?;
                let mut last = root;
                for step in 1..shapes.chain_length {
                    last = writer.event(at + Duration::minutes(step as i64), "chain", tree, Some(last))?;
                }
                data.chains.push(Tree {
                    root,
                    leaf: last,
                    descendants: shapes.chain_length - 1,
                    depth: shapes.chain_length - 1,
                });
            }
            Shape::Fan => {
                let root = writer.event(at, "fan", tree, None)?;
                let mut leaf = root;
                for child in 0..shapes.fan_width {
                    let key = writer.event(at + Duration::milliseconds(1 + child as i64), "fan", tree, Some(root))?;
                    if child == 0 {
                        leaf = key;
                    }
                }
                data.fans.push(Tree {
                    root,
                    leaf,
                    descendants: shapes.fan_width,
                    depth: 1,
                });
            }
            Shape::Bush => {
                let root = writer.event(at, "bush", tree, None)?;
                let mut level = vec![root];
                for depth in 1..=shapes.bush_depth {
                    let mut next = Vec::with_capacity(level.len() * shapes.bush_branching as usize);
                    for (p, parent) in level.iter().enumerate() {
                        for b in 0..shapes.bush_branching {
                            let offset = Duration::minutes(i64::from(depth))
                                + Duration::milliseconds((p as u64 * shapes.bush_branching + b) as i64);
                            next.push(writer.event(at + offset, "bush", tree, Some(*parent))?);
                        }
                    }
                    level = next;
                }
                data.bushes.push(Tree {
                    root,
                    leaf: *level.last().context("a bushy tree without leaves")?,
                    descendants: shapes.bush_size() - 1,
                    depth: u64::from(shapes.bush_depth),
                });
            }
            Shape::Small => {
                let root = writer.event(at, "small", tree, None)?;
                for c in 0..3 {
                    let child_at = at + Duration::seconds(30 * (c + 1));
                    let child = writer.event(child_at, "small", tree, Some(root))?;
                    for g in 0..2 {
                        writer.event(child_at + Duration::seconds(5 * (g + 1)), "small", tree, Some(child))?;
                    }
                }
                data.parents.push(root);
            }
            Shape::Single => {
                writer.event(at, "single", tree, None)?;
            }
        }
    }
    writer.out.flush()?;
    data.events = writer.written;
    anyhow::ensure!(data.events == events, "generated {} events, not {events}", data.events);
    Ok(data)
}
