//! Configuration: one struct, from flags and environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthSettings, Role};
use crate::domain::Limits;
use crate::domain::chain::{ChainHasher, ChainKey};
use crate::graphql::QueryLimits;
use crate::store::{ReplicaSettings, StoreOptions};

/// auditgraph: an audit trail for distributed systems, explored as causality trees.
#[derive(Parser, Debug, Clone)]
#[command(name = "auditgraph", version, about)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) and exit.
    ExportSchema,
    /// Load historical events from newline-delimited JSON (the REST field shape), keeping ids and
    /// timestamps; the live timestamp window does not apply.
    Import {
        /// The file to read, or `-` for standard input.
        file: String,
        /// Lines written per transaction.
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Report malformed lines and go on, instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
        /// Who runs the import, recorded as `submitted_by` of every imported event (default: the
        /// operating-system user, from `USER` or `LOGNAME`).
        #[arg(long)]
        operator: Option<String>,
    },
    /// Create an API key, add its hash to the keys file (`--api-keys-file`) and print the key once.
    /// The server picks the key up without a restart.
    CreateKey {
        /// The principal the key authenticates (recorded as `submitted_by` of its writes).
        #[arg(long)]
        principal: String,
        /// What the key may do.
        #[arg(long, value_enum)]
        role: Role,
        /// The key belongs to a person, not a service: its writes always name the person as the
        /// actor.
        #[arg(long)]
        human: bool,
    },
    /// Fill `parent_event_date` of legacy rows from their parents, in short keyset batches
    /// (BR-STORAGE-037). Resumable: run it again after an interruption.
    BackfillParentDates {
        /// Legacy rows per batch (one short transaction each).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Only count what would be filled, orphans and skewed rows; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Undo the fills of earlier runs (all of them, or the one given with --run).
        #[arg(long)]
        rollback: bool,
        /// With --rollback: the run to undo (its id is printed by the run).
        #[arg(long, requires = "rollback")]
        run: Option<uuid::Uuid>,
        /// How many orphan ids to list in the report.
        #[arg(long, default_value_t = 20)]
        list_orphans: usize,
    },
    /// Delete the events whose `retention_days` have passed, leaf-first: never one under a legal
    /// hold, never a parent whose children stay. Whole monthly partitions go at once (PostgreSQL).
    /// One run at a time across every process; an interrupted run is resumed by the next.
    Retention {
        /// Only report what would be deleted and kept, and why; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Expired events examined per batch (one short transaction each).
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Stop after this many batches; the next run resumes where this one stopped.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_batches: Option<u64>,
    },
    /// Check, reading the database only, that every stored event matches its hash chain, that the
    /// transparency log matches the events and that the signed checkpoints match the log. Prints
    /// one line per check and the first inconsistency of each; exits with status 1 when any is found.
    Verify {
        /// The log's verifier key (`<origin>+<hash>+<key>`), or a file holding it (default: the
        /// `.pub` file beside --log-key-file, which the server writes).
        #[arg(long)]
        verifier_key: Option<String>,
        /// Check this export file (from `auditgraph export`; `-` for standard input) instead of
        /// the database: offline, with the verifier key alone.
        export: Option<String>,
    },
    /// Write a signed export of events to a file (default: standard output): the events with their
    /// hash chains, the proof that they are in the log's signed tree, and a manifest signed with
    /// the log's key. `auditgraph verify FILE` checks it without the database; `auditgraph import
    /// FILE` loads it into another auditgraph.
    Export {
        /// Where to write it; `-` for standard output.
        #[arg(long, short, default_value = "-")]
        output: String,
        /// Only this correlation.
        #[arg(long)]
        correlation_id: Option<String>,
        /// Only this event category.
        #[arg(long)]
        event_category: Option<String>,
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        start_time: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events at or before this time (RFC 3339).
        #[arg(long)]
        end_time: Option<chrono::DateTime<chrono::Utc>>,
        /// Who exports, recorded in the signed manifest (default: the operating-system user).
        #[arg(long)]
        operator: Option<String>,
    },
}

/// Every setting of auditgraph. Each flag can also be given as the environment variable shown.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Database to use: `sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://auditgraph.db", global = true)]
    pub database_url: String,

    /// PostgreSQL read replicas (streaming standbys of DATABASE_URL), comma-separated: queries go
    /// to them, writes and whatever must be current to the primary. A read that carries a write's
    /// consistency token goes to a replica only once it has replayed that write.
    #[arg(long, env = "AUDITGRAPH_READ_DATABASE_URL", value_delimiter = ',', global = true)]
    pub read_database_url: Vec<String>,

    /// A replica further behind the primary than this, in seconds, gets no reads (unless it has
    /// replayed the token a read carries).
    #[arg(long, env = "AUDITGRAPH_REPLICA_MAX_LAG_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub replica_max_lag_secs: u64,

    /// How long a read carrying a consistency token waits for a replica to replay it before the
    /// primary answers it, in milliseconds.
    #[arg(long, env = "AUDITGRAPH_READ_WAIT_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000), global = true)]
    pub read_wait_ms: u64,

    /// How often the replicas' replay positions and lag are checked, in milliseconds.
    #[arg(long, env = "AUDITGRAPH_REPLICA_CHECK_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(50..), global = true)]
    pub replica_check_ms: u64,

    /// Address to listen on. Keep it on loopback unless access is controlled in front of it.
    #[arg(long, env = "AUDITGRAPH_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Do not apply pending migrations when the server starts, nor create a missing PostgreSQL database.
    #[arg(long, env = "AUDITGRAPH_NO_MIGRATE", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,

    /// Size of the database connection pool.
    #[arg(long, env = "AUDITGRAPH_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub db_max_connections: u32,

    /// Longest a request waits for a database connection, in seconds; then it is refused as
    /// UNAVAILABLE (retryable). Also how long a SQLite writer waits for another process's lock,
    /// at least 10 s.
    #[arg(long, env = "AUDITGRAPH_DB_WAIT_TIMEOUT_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub db_wait_timeout_secs: u64,

    /// Longest a single SQL statement may run, in seconds (PostgreSQL).
    #[arg(long, env = "AUDITGRAPH_STATEMENT_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub statement_timeout_secs: u64,

    /// Longest a recursive tree query (ancestors, descendants, trees) may run, in milliseconds (PostgreSQL).
    #[arg(long, env = "AUDITGRAPH_TREE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub tree_timeout_ms: u64,

    /// Longest an HTTP request may take, in seconds.
    #[arg(long, env = "AUDITGRAPH_REQUEST_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub request_timeout_secs: u64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "AUDITGRAPH_BODY_LIMIT_BYTES", default_value_t = 5 * 1024 * 1024, global = true)]
    pub body_limit_bytes: usize,

    /// How many months of partitions beyond the current one to keep ready (PostgreSQL).
    #[arg(long, env = "AUDITGRAPH_PARTITION_LOOKAHEAD_MONTHS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=120), global = true)]
    pub partition_lookahead_months: u32,

    /// How far ahead of the server clock an event timestamp may be, in minutes.
    #[arg(
        long,
        env = "AUDITGRAPH_MAX_FUTURE_SKEW_MINUTES",
        default_value_t = 60,
        global = true
    )]
    pub max_future_skew_minutes: u32,

    /// How old a live-written event timestamp may be, in days.
    #[arg(long, env = "AUDITGRAPH_MAX_EVENT_AGE_DAYS", default_value_t = 7, global = true)]
    pub max_event_age_days: u32,

    /// Comma-separated list of the only event categories accepted; any lowercase identifier when unset.
    #[arg(long, env = "AUDITGRAPH_ALLOWED_CATEGORIES", value_delimiter = ',', global = true)]
    pub allowed_categories: Option<Vec<String>>,

    /// Most events in one batch write (GraphQL `createAuditEvents`, REST `/events/batch`); 0 means the default, 500.
    #[arg(long, env = "AUDITGRAPH_MAX_BATCH_SIZE", default_value_t = 500, global = true)]
    pub max_batch_size: usize,

    /// Deepest GraphQL selection set accepted.
    #[arg(long, env = "AUDITGRAPH_MAX_QUERY_DEPTH", default_value_t = 16, global = true)]
    pub max_query_depth: usize,

    /// Serve GraphiQL at `/graphiql` (the page holds no data; its queries are authenticated like
    /// any other).
    #[arg(long, env = "AUDITGRAPH_GRAPHIQL", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub graphiql: bool,

    /// Serve the causality explorer at `/` (the page holds no data; its queries are authenticated
    /// like any other).
    #[arg(long, env = "AUDITGRAPH_EXPLORER", default_value_t = true, action = clap::ArgAction::Set, global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub explorer: bool,

    /// Serve the explorer's files from this directory, read at each request, instead of from the
    /// binary: for changing the page without rebuilding the server.
    #[arg(long, env = "AUDITGRAPH_EXPLORER_DIR", global = true)]
    pub explorer_dir: Option<std::path::PathBuf>,

    /// Answer GraphQL introspection (`__schema`, `__type`); GraphiQL's documentation needs it.
    #[arg(long, env = "AUDITGRAPH_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    pub introspection: bool,

    /// Serve `/metrics` only to callers holding this role (default: to anyone who reaches the port).
    #[arg(long, env = "AUDITGRAPH_METRICS_ROLE", value_enum, global = true)]
    pub metrics_role: Option<Role>,

    /// Serve `/metrics` on this address instead of the main one (for example a port that only the
    /// monitoring network reaches); it is then absent from the main listener.
    #[arg(long, env = "AUDITGRAPH_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Hash events with HMAC-SHA256 and the key in this file (at least 32 bytes) instead of plain
    /// SHA-256, so that nobody without the key can recompute a chain. Events record the key's id.
    #[arg(long, env = "AUDITGRAPH_HASH_KEY_FILE", global = true)]
    pub hash_key_file: Option<std::path::PathBuf>,

    /// The id recorded with keyed hashes (`hash_key_id`), to tell keys apart when one is replaced.
    #[arg(long, env = "AUDITGRAPH_HASH_KEY_ID", default_value = "default", global = true)]
    pub hash_key_id: String,

    /// The Ed25519 key that signs the transparency log's checkpoints (a note signer key). Created
    /// on first start when missing, with its verifier key beside it (`<file>.pub`).
    #[arg(
        long,
        env = "AUDITGRAPH_LOG_KEY_FILE",
        default_value = "auditgraph-log.key",
        global = true
    )]
    pub log_key_file: std::path::PathBuf,

    /// The origin line of the log's checkpoints (and the name of a key created on first start).
    #[arg(
        long,
        env = "AUDITGRAPH_LOG_ORIGIN",
        default_value = "auditgraph.local/log",
        global = true
    )]
    pub log_origin: String,

    /// How often the sequencer gives committed events their place in the transparency log, in
    /// milliseconds.
    #[arg(long, env = "AUDITGRAPH_SEQUENCE_INTERVAL_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..), global = true)]
    pub sequence_interval_ms: u64,

    /// How often a signed checkpoint is published when the log has grown, in seconds.
    #[arg(long, env = "AUDITGRAPH_CHECKPOINT_INTERVAL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub checkpoint_interval_secs: u64,

    /// Run retention in the server every this many minutes (off when unset). Any number of
    /// server processes may have it on: one runs at a time.
    #[arg(long, env = "AUDITGRAPH_RETENTION_INTERVAL_MINUTES", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub retention_interval_minutes: Option<u64>,

    /// Authentication.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Live subscriptions.
    #[command(flatten)]
    pub live: crate::live::LiveSettings,

    /// Largest GraphQL query complexity accepted; paginated fields multiply by their page size.
    #[arg(
        long,
        env = "AUDITGRAPH_MAX_QUERY_COMPLEXITY",
        default_value_t = 250_000,
        global = true
    )]
    pub max_query_complexity: usize,
}

impl Config {
    /// The defaults, on the given database; for tests and embedding.
    pub fn for_database(database_url: &str) -> Self {
        let mut config = Cli::parse_from(["auditgraph"]).config;
        config.database_url = database_url.to_string();
        config
    }

    /// How to reach the database, and how to hash events (reading the hash key file when one
    /// is configured).
    pub fn store_options(&self) -> anyhow::Result<StoreOptions> {
        let hasher = match &self.hash_key_file {
            None => ChainHasher::default(),
            Some(path) => {
                let mut secret = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading the hash key file {}: {e}", path.display()))?;
                // One line ending is an editor's, not the key's; anything else is key material.
                if secret.last() == Some(&b'\n') {
                    secret.pop();
                    if secret.last() == Some(&b'\r') {
                        secret.pop();
                    }
                }
                let key = ChainKey::new(self.hash_key_id.clone(), secret)
                    .map_err(|e| anyhow::anyhow!("the hash key in {}: {e}", path.display()))?;
                ChainHasher::new(Some(key))
            }
        };
        Ok(StoreOptions {
            database_url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            statement_timeout: Duration::from_secs(self.statement_timeout_secs),
            tree_timeout: Duration::from_millis(self.tree_timeout_ms),
            create_database: !self.no_migrate,
            wait_timeout: Duration::from_secs(self.db_wait_timeout_secs),
            hasher,
            replicas: ReplicaSettings {
                urls: self
                    .read_database_url
                    .iter()
                    .map(|url| url.trim().to_string())
                    .filter(|url| !url.is_empty())
                    .collect(),
                max_lag: Duration::from_secs(self.replica_max_lag_secs),
                read_wait: Duration::from_millis(self.read_wait_ms),
                check_interval: Duration::from_millis(self.replica_check_ms),
            },
        })
    }

    /// The validation limits for writes.
    pub fn limits(&self) -> Limits {
        Limits {
            max_future_skew: chrono::Duration::minutes(self.max_future_skew_minutes.into()),
            max_age: chrono::Duration::days(self.max_event_age_days.into()),
            allowed_categories: self.allowed_categories.clone().filter(|c| !c.is_empty()),
            check_timestamp_bounds: true,
        }
    }

    /// The batch limit in force.
    pub fn batch_limit(&self) -> usize {
        if self.max_batch_size == 0 {
            500
        } else {
            self.max_batch_size
        }
    }

    /// The limits on GraphQL operations.
    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_depth: self.max_query_depth,
            max_complexity: self.max_query_complexity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_come_before_or_after_the_subcommand() {
        let cli = Cli::parse_from(["auditgraph", "migrate", "--database-url", "sqlite://x.db"]);
        assert_eq!(cli.command, Some(Command::Migrate));
        assert_eq!(cli.config.database_url, "sqlite://x.db");
        let cli = Cli::parse_from(["auditgraph", "--allowed-categories", "gateway,workflow"]);
        assert_eq!(cli.command, None);
        assert_eq!(
            cli.config.limits().allowed_categories,
            Some(vec!["gateway".into(), "workflow".into()])
        );
    }
}
