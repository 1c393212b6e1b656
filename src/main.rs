use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator. Answering a request allocates and frees many small
/// values (a string per field, a map per object, a buffer per row): with glibc's allocator that
/// was about a quarter of the server's CPU on a page of events, and glibc kept the memory of large
/// requests in its heaps after they were freed (the resident memory grew from 25 MiB to 140 MiB
/// under abuse and stayed there). mimalloc's thread-local free lists are cheaper, and it returns
/// freed pages to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
