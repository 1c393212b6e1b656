//! The server under test: the release binary, started on a free port against the bench database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::client::Conn;

/// The release binary: the one given, or `auditgraph` next to this benchmark, built first when
/// the benchmark runs under cargo so that it is never older than the sources.
pub fn binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.exists(), "no server binary at {}", path.display());
        return Ok(path.to_path_buf());
    }
    let path = std::env::current_exe()?.with_file_name("auditgraph");
    if let Some(cargo) = std::env::var_os("CARGO") {
        eprintln!("building the release server");
        let status = std::process::Command::new(cargo)
            // Both packages, so that features resolve as for this build and nothing is rebuilt twice.
            .args(["build", "--release", "--locked", "-p", "auditgraph", "-p", "bench"])
            .status()
            .context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build of the server failed");
    }
    anyhow::ensure!(
        path.exists(),
        "no server binary at {}; run `cargo build --release` or pass --server",
        path.display()
    );
    Ok(path)
}

/// Starts `command` (running `program`) with its output in the file `log`, to be killed when its
/// handle is dropped.
pub fn spawn_logged(command: &mut Command, program: &Path, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `binary` against `database_url` and waits until `/readyz` answers 200.
    pub async fn start(binary: &Path, database_url: &str) -> anyhow::Result<Self> {
        Self::start_named(binary, database_url, "auditgraph-bench-server", &[]).await
    }

    /// [`Server::start`] with more environment variables, logging to `<name>.log` in the
    /// temporary directory (several servers run side by side).
    pub async fn start_named(
        binary: &Path,
        database_url: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let child = spawn_logged(
            Command::new(binary)
                .arg("serve")
                .env("DATABASE_URL", database_url)
                .env("AUDITGRAPH_LISTEN", addr.to_string())
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied()),
            binary,
            &log,
        )?;
        let mut server = Self { child, addr, log };
        wait_until_ready(&mut server.child, &server.log, "the server", || async move {
            match Conn::connect(addr).await {
                Ok(mut conn) => conn.get_text("/readyz").await.is_ok(),
                Err(_) => false,
            }
        })
        .await?;
        Ok(server)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its peak resident memory so far (`VmHWM` of `/proc/<pid>/status`), in bytes; `None`
    /// where that cannot be read.
    pub fn peak_rss(&self) -> Option<u64> {
        peak_rss(self.pid()?)
    }

    /// Stops the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// The peak resident memory of process `pid` so far (`VmHWM` of `/proc/<pid>/status`), in bytes;
/// `None` where that cannot be read.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` in mebibytes, as the memory figures print them.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last 20 lines of a process's log file.
fn log_tail(log: &Path) -> String {
    tail(&std::fs::read_to_string(log).unwrap_or_default(), 20)
}

/// Waits until the process `child` (named `what`, logging to `log`) answers `{ __typename }` at
/// `addr`, as [`wait_until_ready`] waits.
pub async fn wait_until_graphql_answers(
    child: &mut Child,
    log: &Path,
    what: &str,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let probe = crate::client::graphql_body("{ __typename }", serde_json::json!({}));
    wait_until_ready(child, log, what, || {
        let probe = probe.clone();
        async move {
            match Conn::connect(addr).await {
                Ok(mut conn) => conn.graphql(probe).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

/// Waits until `ready` says the process `child` (named `what`, logging to `log`) answers, for
/// 120 s at most; fails at once, with its log, when it exits first.
pub async fn wait_until_ready<F, R>(child: &mut Child, log: &Path, what: &str, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> R,
    R: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited ({status}) before it was ready:\n{}", log_tail(log));
        }
        if ready().await {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{what} was not ready within 120 s:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
