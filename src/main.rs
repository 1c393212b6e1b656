use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
