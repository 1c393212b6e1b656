use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

/// glibc's allocator keeps the memory of large requests (a page of 1,000 events, a body of
/// megabytes) in its heaps after they are freed, and raises its mmap threshold as it goes: under
/// abuse the resident memory of the server grew from 25 MiB to 140 MiB and stayed there. With a
/// fixed mmap threshold and two arenas it returns to its baseline (measured: 42 MiB after the
/// same abuse). Tunables are read at start, so the process re-executes itself once with them;
/// without unsafe code this is the one way. Set `GLIBC_TUNABLES` yourself to choose others.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only when it failed; the server then runs with the defaults.
    let _failed = std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .env(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2",
        )
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = match auditgraph::config::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => error.exit(),
        Err(error) => {
            // One line, like every other error; `--help` has the rest.
            let rendered = error.to_string();
            let first = rendered.lines().next().unwrap_or("error: invalid command line");
            eprintln!("{first} (auditgraph --help lists every option)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match auditgraph::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with the whole chain of causes, whatever RUST_BACKTRACE says.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
