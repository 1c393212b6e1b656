use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator. Answering a request allocates and frees many small
/// values (a string per field, a map per object, a buffer per row): with glibc's allocator that
/// was about a quarter of the server's CPU on a page of events, and glibc kept the memory of large
/// requests in its heaps after they were freed (the resident memory grew from 25 MiB to 140 MiB
/// under abuse and stayed there). mimalloc's thread-local free lists are cheaper, and it returns
/// freed pages to the system (see [`tune_allocator`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings, read from the environment when it starts (before `main`), so the process
/// starts itself once more with those not set; without unsafe code this is the one way. Set one
/// yourself to choose otherwise.
///
/// - `MIMALLOC_PURGE_DELAY=10`: mimalloc returns freed pages to the system 10 ms after they were
///   freed. With the 1 s default of the mimalloc 3 built here, a burst of large batches took fresh
///   pages while the freed ones waited: the resident memory rose past 100 MiB (106 MiB under the
///   benchmark's writes). At once (0), every request that needed more than the pages in use took
///   them afresh from the kernel and gave them back after: page faults, zeroed pages and
///   unmapping were 14% of the server's CPU on the nested query of 500 events, against 4% with
///   10 ms, and the writes' and live delivery's peak resident memory moved from 56.8 to 59.6 MiB.
/// - `MIMALLOC_ALLOW_THP=0`: mimalloc asks for transparent huge pages on its memory by default,
///   so a 2 MiB page became resident wherever a few bytes of it were touched, and returning a
///   freed part of it returned nothing. Measured with twenty `createAuditEvents` of 500 events
///   one after the other on a million-event database: peak resident memory 61.4 MiB with huge
///   pages (16 MiB of them resident at the end), 36.4 MiB without; 23.0 and 16.3 MiB at start.
#[cfg(unix)]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    const SETTINGS: [(&str, &str); 2] = [("MIMALLOC_PURGE_DELAY", "10"), ("MIMALLOC_ALLOW_THP", "0")];
    // mimalloc reads its variables whatever their case, and the purge delay by its old name too.
    let given: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .map(|name| {
            name.to_ascii_uppercase()
                .replace("MIMALLOC_RESET_DELAY", "MIMALLOC_PURGE_DELAY")
        })
        .collect();
    let unset: Vec<(&str, &str)> = SETTINGS
        .into_iter()
        .filter(|(name, _)| !given.iter().any(|g| g == name))
        .collect();
    if unset.is_empty() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only when it failed; the server then runs with the defaults.
    let _failed = std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .envs(unset)
        .exec();
}

#[cfg(not(unix))]
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
