//! Benchmarks of auditgraph next to raw PostgreSQL doing the same work, on the same machine, in
//! the same run (SPEC §9). Figures go to `BENCHMARKS.md`.
//!
//! `cargo run -p bench --release -- all` prepares fresh databases, generates the data, starts the
//! release server and runs every workload; `serve` and `history` run one group.

mod bare;
mod client;
mod cpu;
mod data;
mod history;
mod live;
mod load;
mod ops;
mod postgraphile;
mod raw;
mod report;
mod scale;
mod server;
mod serving;
mod shape;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "auditgraph benchmarks beside raw PostgreSQL")]
struct Cli {
    /// A PostgreSQL database the benchmark may use to create and drop `auditgraph_bench`.
    #[arg(
        long,
        env = "AUDITGRAPH_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,
    /// How many times each workload runs (the median is reported, with min and max).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Where the results are written.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: String,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Every workload: `serve`, then `history`.
    All {
        #[command(flatten)]
        serve: serving::ServeOptions,
        /// Events of the history workload.
        #[arg(long, default_value_t = 1_000_000)]
        history_events: u64,
    },
    /// The server workloads: writes, page reads, the nested query, tree walks and the floor,
    /// through the release server beside raw PostgreSQL; the same reads beside PostGraphile; and
    /// live delivery to WebSocket subscribers.
    Serve(serving::ServeOptions),
    /// The capacity of one primary: ingest with hash chains and reads, through one and two
    /// server processes, with the CPU each process takes.
    Scale(scale::ScaleOptions),
    /// Import N legacy events, then backfill their parent dates, beside the one-shot UPDATE … FROM.
    History {
        /// Events to generate (a quarter roots, the rest children naming them without a date).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// A bare HTTP server answering every request with the floor's bytes, which the `peers`
    /// group starts beside PostGraphile; it serves until killed.
    #[command(hide = true)]
    Bare {
        /// The address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runs = usize::try_from(cli.runs)?;
    let mut sections = Vec::new();
    match &cli.workload {
        Workload::All { serve, history_events } => {
            sections.extend(serving::run(&cli.admin_url, runs, serve).await?);
            for section in &sections {
                report::write_section(&cli.output, section)?;
            }
            sections.push(history::run(&cli.admin_url, runs, *history_events).await?);
        }
        Workload::Serve(options) => sections.extend(serving::run(&cli.admin_url, runs, options).await?),
        Workload::History { events } => sections.push(history::run(&cli.admin_url, runs, *events).await?),
        Workload::Scale(options) => sections.push(scale::run(&cli.admin_url, runs, options).await?),
        Workload::Bare { listen } => return bare::run(*listen).await,
    }
    for section in &sections {
        print!("{section}");
        report::write_section(&cli.output, section)?;
    }
    Ok(())
}
