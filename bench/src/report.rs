//! Figures and where they go: statistics, the environment header, the results table and the
//! sections of `BENCHMARKS.md`.

use std::fmt::Write as _;

use anyhow::Context;
use chrono::Utc;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement};

use crate::load::Sample;

/// The median, min and max of some figures.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
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

/// The URL of the database `auditgraph_bench` on the server of `admin_url`.
pub fn bench_database_url(admin_url: &str) -> anyhow::Result<String> {
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .context("admin URL has no database")?;
    Ok(format!("{base}/auditgraph_bench"))
}

/// Drops and creates the database `auditgraph_bench` and returns its URL.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let admin = Database::connect(admin_url).await.context("connecting to PostgreSQL")?;
    admin
        .execute_unprepared("DROP DATABASE IF EXISTS auditgraph_bench WITH (FORCE)")
        .await?;
    admin.execute_unprepared("CREATE DATABASE auditgraph_bench").await?;
    admin.close().await?;
    bench_database_url(admin_url)
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<String>(0)?)
}

/// The header of a section: date, commit, CPU, PostgreSQL version and settings, data.
pub async fn environment(db: &DatabaseConnection, data: &str) -> anyhow::Result<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = crate::cpu::cores().unwrap_or(0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let version = scalar(db, "SELECT version()").await?;
    let settings = scalar(
        db,
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings \
         WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'fsync', 'max_wal_size', 'jit')",
    )
    .await?;
    Ok(format!(
        "- date: {}\n- commit: {commit}\n- CPU: {cpu}, {cores} cores\n- PostgreSQL: {version}\n- settings: {settings}\n\
         - data: {data}\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
    ))
}

/// One line of a results table: our figure and the raw one, over the runs.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured.
    pub label: String,
    /// Unit of both figures.
    pub unit: &'static str,
    /// What the raw figure is.
    pub raw_label: String,
    /// Our figure of each run.
    pub ours: Vec<f64>,
    /// The raw figure of each run.
    pub raw: Vec<f64>,
    /// Failed requests, ours and raw.
    pub failures: u64,
    /// The first failure.
    pub first_failure: Option<String>,
    /// Whether the raw figure is the same work (a ratio is meaningful) or only context.
    pub comparable: bool,
    /// Request latency of each run, ours: (p50, p99) in milliseconds.
    pub ours_latency: Vec<(f64, f64)>,
    /// Request latency of each run, raw: (p50, p99) in milliseconds.
    pub raw_latency: Vec<(f64, f64)>,
    /// CPU microseconds per request of each run, ours: the server, PostgreSQL, the load generator.
    pub ours_cpu: Vec<[f64; 3]>,
    /// CPU microseconds per request of each run, raw: the (idle) server, PostgreSQL, the load generator.
    pub raw_cpu: Vec<[f64; 3]>,
}

impl Figure {
    /// A figure with no runs yet.
    pub fn new(label: impl Into<String>, unit: &'static str, raw_label: &str) -> Self {
        Self {
            label: label.into(),
            unit,
            raw_label: raw_label.into(),
            ours: Vec::new(),
            raw: Vec::new(),
            failures: 0,
            first_failure: None,
            comparable: true,
            ours_latency: Vec::new(),
            raw_latency: Vec::new(),
            ours_cpu: Vec::new(),
            raw_cpu: Vec::new(),
        }
    }

    /// A figure whose raw side is context, not the same work: no ratio is given.
    pub fn context(mut self) -> Self {
        self.comparable = false;
        self
    }

    /// Adds a run: items per second when `items`, successful requests per second otherwise.
    pub fn add(&mut self, run: usize, ours: Sample, raw: Option<Sample>, items: bool) {
        let rate = |s: &Sample| {
            if items {
                s.items_per_second()
            } else {
                s.requests_per_second()
            }
        };
        self.ours.push(rate(&ours));
        self.ours_latency.push((ours.latency_ms(50.0), ours.latency_ms(99.0)));
        self.ours_cpu.extend(ours.cpu_per_request());
        let mut line = format!("  run {run}: {}: {:.0} {}", self.label, rate(&ours), self.unit);
        for sample in std::iter::once(&ours).chain(raw.as_ref()) {
            self.failures += sample.failures;
            if self.first_failure.is_none() {
                self.first_failure.clone_from(&sample.first_failure);
            }
        }
        if let Some(raw) = &raw {
            self.raw.push(rate(raw));
            self.raw_latency.push((raw.latency_ms(50.0), raw.latency_ms(99.0)));
            self.raw_cpu.extend(raw.cpu_per_request());
            let _ = write!(line, ", {} {:.0}", self.raw_label, rate(raw));
        }
        if ours.failures > 0 || raw.as_ref().is_some_and(|r| r.failures > 0) {
            let _ = write!(line, " ({} failures)", self.failures);
        }
        eprintln!("{line}");
    }

    /// Median of our figure ÷ median of the raw one.
    pub fn ratio(&self) -> Option<f64> {
        let (raw, _, _) = stats(&self.raw);
        (self.comparable && !self.raw.is_empty() && raw > 0.0).then(|| stats(&self.ours).0 / raw)
    }
}

/// The median of some figures with their range: `median (min–max)`, to `decimals` places.
pub fn spread_with(values: &[f64], decimals: usize) -> String {
    let (median, min, max) = stats(values);
    format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

fn spread(values: &[f64]) -> String {
    spread_with(values, 0)
}

/// The results table beside raw PostgreSQL, with the failures listed under it.
pub fn table(figures: &[Figure]) -> String {
    table_beside(figures, "auditgraph", "raw PostgreSQL", Some("raw work"))
}

/// The results table with `ours` and `other` as the titles of the two sides' columns (each
/// figure's own and raw figure) and, when given, a column of that title for what the other side
/// did (each figure's raw label); the failures listed under it.
pub fn table_beside(figures: &[Figure], ours: &str, other: &str, work: Option<&str>) -> String {
    let mut out = match work {
        Some(work) => {
            format!("| workload | {ours} | {other} | {work} | ratio | failures |\n|---|---|---|---|---|---|\n")
        }
        None => format!("| workload | {ours} | {other} | ratio | failures |\n|---|---|---|---|---|\n"),
    };
    for f in figures {
        let raw = if f.raw.is_empty() { "—".into() } else { spread(&f.raw) };
        let ratio = f.ratio().map_or("—".into(), |r| format!("{r:.2}×"));
        let work = if work.is_some() {
            format!(" {} |", f.raw_label)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} {} | {raw} |{work} {ratio} | {} |",
            f.label,
            spread(&f.ours),
            f.unit,
            f.failures
        );
    }
    let failed: Vec<&Figure> = figures.iter().filter(|f| f.failures > 0).collect();
    if failed.is_empty() {
        out.push_str("\nEvery response was checked (no GraphQL `errors`, the expected number of events, the expected first event of each page); none failed.\n");
    } else {
        out.push_str("\nFailures (first of each workload):\n\n");
        for f in failed {
            let _ = writeln!(
                out,
                "- {}: {} failed; first: {}",
                f.label,
                f.failures,
                f.first_failure.as_deref().unwrap_or("?")
            );
        }
    }
    out
}

/// The medians over the runs of each part of the CPU per request (server, PostgreSQL, load
/// generator); `None` when it was not measured.
pub fn cpu_medians(runs: &[[f64; 3]]) -> Option<[f64; 3]> {
    (!runs.is_empty()).then(|| std::array::from_fn(|part| stats(&runs.iter().map(|r| r[part]).collect::<Vec<_>>()).0))
}

/// Where each request's CPU went, on both sides: the server, PostgreSQL and the load generator,
/// in microseconds per request (medians of the runs); figures measured without CPU are left out.
pub fn cpu_table(figures: &[Figure]) -> String {
    let measured: Vec<&Figure> = figures
        .iter()
        .filter(|f| !f.ours_cpu.is_empty() && !f.raw_cpu.is_empty())
        .collect();
    if measured.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "CPU per request in microseconds (from `/proc`, over each measured period, divided by the requests \
         made; medians of the runs). The load generator shares the cores, so its work per request is part of \
         what each side's figure pays:\n\n\
         | workload | auditgraph: server | PostgreSQL | load generator | total | raw: PostgreSQL | load generator | total |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for f in measured {
        let total = |runs: &[[f64; 3]], parts: &[usize]| {
            stats(
                &runs
                    .iter()
                    .map(|r| parts.iter().map(|&p| r[p]).sum())
                    .collect::<Vec<f64>>(),
            )
            .0
        };
        let (Some(ours), Some(raw)) = (cpu_medians(&f.ours_cpu), cpu_medians(&f.raw_cpu)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            f.label,
            ours[0],
            ours[1],
            ours[2],
            total(&f.ours_cpu, &[0, 1, 2]),
            raw[1],
            raw[2],
            total(&f.raw_cpu, &[1, 2]),
        );
    }
    out.push('\n');
    out
}

/// Replaces (or appends) the section that starts with `## title` in the results file.
pub fn write_section(path: &str, section: &str) -> anyhow::Result<()> {
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
            // A blank line between this section and the next, whether the section ends with one or not.
            match &existing[end..] {
                "" => format!("{}{}", &existing[..start], section),
                rest => format!("{}{}\n\n{}", &existing[..start], section.trim_end(), rest),
            }
        }
        None => format!("{}\n\n{}", existing.trim_end(), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
