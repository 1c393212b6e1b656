//! PostGraphile, the GraphQL server the `peers` group measures auditgraph beside: installed from
//! the lock file in `bench/peers/`, started on a free port against one schema of the bench
//! database, and killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use anyhow::Context;
use tokio::process::{Child, Command};

/// The version `bench/peers/package-lock.json` pins.
pub const VERSION: &str = "4.14.1";

/// The options PostGraphile runs with, besides the connection, schema, host and port: reads only
/// (no generated mutations), JSON columns as JSON values (as ours returns them) rather than
/// strings, and no line on the console per query (ours logs warnings only). Everything else is
/// left at its default: Relay connections only, no watch mode, no CORS, one process.
pub const OPTIONS: [&str; 3] = ["--disable-default-mutations", "--dynamic-json", "--disable-query-log"];

/// Session settings of PostGraphile's connections (`PGOPTIONS`): no JIT compilation, as on our
/// server's sessions (JIT made some of PostgreSQL's plans slower there by orders of magnitude).
/// Our sessions' generic plans are not imposed: they save planning over the monthly partitions,
/// which PostGraphile's unpartitioned copy does not have.
pub const PG_OPTIONS: &str = "-c jit=off";

/// The folder of the pinned packages: `bench/peers/`.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// What is installed, for the report.
#[derive(Clone, Debug)]
pub struct Installed {
    /// Node.js's `--version`.
    pub node: String,
    /// PostGraphile's version, from its installed `package.json`.
    pub postgraphile: String,
    /// Whether this run installed the packages (`npm ci`) or found them in place.
    pub installed_now: bool,
}

/// The first line `tool --version` prints.
async fn tool_version(tool: &str) -> anyhow::Result<String> {
    let output = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running `{tool} --version` (is {tool} installed?)"))?;
    anyhow::ensure!(
        output.status.success(),
        "`{tool} --version` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The version in an installed package's `package.json`.
fn package_version(dir: &Path, package: &str) -> anyhow::Result<String> {
    let path = dir.join("node_modules").join(package).join("package.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    json["version"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no version in {}", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `node_modules` holds what the lock file names: npm's record of the last install
/// (`node_modules/.package-lock.json`) is there and not older than the lock file, and PostGraphile
/// is there at the pinned version.
fn up_to_date(dir: &Path) -> bool {
    let (Some(lock), Some(record)) = (
        modified(&dir.join("package-lock.json")),
        modified(&dir.join("node_modules").join(".package-lock.json")),
    ) else {
        return false;
    };
    record >= lock
        && dir.join("node_modules/.bin/postgraphile").exists()
        && package_version(dir, "postgraphile").is_ok_and(|v| v == VERSION)
}

/// Checks Node.js and npm, and runs `npm ci` in `dir` unless `node_modules` already holds the
/// locked packages.
pub async fn install(dir: &Path) -> anyhow::Result<Installed> {
    let node = tool_version("node").await?;
    anyhow::ensure!(
        dir.join("package-lock.json").exists(),
        "no lock file at {}",
        dir.join("package-lock.json").display()
    );
    let installed_now = !up_to_date(dir);
    if installed_now {
        tool_version("npm").await?;
        eprintln!("installing PostGraphile {VERSION} (npm ci in {})", dir.display());
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running npm ci")?;
        anyhow::ensure!(
            output.status.success(),
            "npm ci failed ({}): {}",
            output.status,
            crate::server::tail(&String::from_utf8_lossy(&output.stderr), 10)
        );
    }
    let postgraphile = package_version(dir, "postgraphile")?;
    anyhow::ensure!(
        postgraphile == VERSION,
        "node_modules holds PostGraphile {postgraphile}, not {VERSION}"
    );
    Ok(Installed {
        node,
        postgraphile,
        installed_now,
    })
}

/// A running PostGraphile; killed when dropped.
pub struct PostGraphile {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl PostGraphile {
    /// The command line it is started with, for the report (the port left out).
    pub fn command_line(database_url: &str, schema: &str) -> String {
        format!(
            "NODE_ENV=production PGOPTIONS='{PG_OPTIONS}' node_modules/.bin/postgraphile --connection {database_url} \
             --schema {schema} --host 127.0.0.1 --port <free port> {}",
            OPTIONS.join(" ")
        )
    }

    /// Starts PostGraphile from `dir` on `schema` of `database_url` and waits until it answers
    /// `{ __typename }` (it serves once it has read the schema).
    pub async fn start(dir: &Path, database_url: &str, schema: &str) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::env::temp_dir().join("auditgraph-bench-postgraphile.log");
        let binary = dir.join("node_modules/.bin/postgraphile");
        let child = crate::server::spawn_logged(
            Command::new(&binary)
                .args(["--connection", database_url, "--schema", schema, "--host", "127.0.0.1"])
                .args(["--port", &addr.port().to_string()])
                .args(OPTIONS)
                .current_dir(dir)
                .env("NODE_ENV", "production")
                .env("PGOPTIONS", PG_OPTIONS),
            &binary,
            &log,
        )?;
        let mut peer = Self { child, addr, log };
        crate::server::wait_until_graphql_answers(&mut peer.child, &peer.log, "PostGraphile", addr).await?;
        Ok(peer)
    }

    /// Its peak resident memory so far, in bytes; `None` where that cannot be read.
    pub fn peak_rss(&self) -> Option<u64> {
        crate::server::peak_rss(self.child.id()?)
    }

    /// Stops it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("stopping PostGraphile")?;
        Ok(())
    }
}
