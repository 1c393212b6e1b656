//! auditgraph: an audit-trail service for distributed systems, with a GraphQL API for exploring
//! causality trees.
//!
//! The library builds everything; `main.rs` only parses the command line and calls [`run`]. Tests
//! build the same router with [`app`].

pub mod auth;
pub mod config;
pub mod domain;
pub mod entity;
pub mod error;
pub mod graphql;
pub mod http;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod service;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use axum::Router;

use auth::Authenticator;
use config::{Cli, Command, Config};
use graphql::build_schema;
use http::{HttpOptions, HttpShared, HttpState};
use metrics::Metrics;
use service::Service;
use store::{Store, redact};

/// Runs the subcommand the command line asks for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let options = store::StoreOptions {
                create_database: true,
                ..config.store_options()?
            };
            let store = Store::connect(&options).await?;
            store.migrate().await?;
            tracing::info!(database = %redact(&config.database_url), "migrations applied");
            Ok(())
        }
        Command::ExportSchema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Import {
            file,
            batch_size,
            skip_invalid,
            operator,
        } => {
            let store = migrated_store(&config).await?;
            let operator = operator
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .filter(|name| !name.trim().is_empty())
                .context("name the operator who runs the import with --operator (USER is not set)")?;
            auth::check_principal(&operator)
                .map_err(|reason| anyhow::anyhow!("--operator cannot be recorded as submitted_by: {reason}"))?;
            let options = ops::import::ImportOptions {
                source: file,
                batch_size: usize::try_from(batch_size).unwrap_or(5_000),
                skip_invalid,
                operator,
            };
            let summary = ops::import::run(&store, &options).await?;
            report(&summary);
            Ok(())
        }
        Command::CreateKey { principal, role, human } => {
            let kind = if human {
                auth::PrincipalKind::Human
            } else {
                auth::PrincipalKind::Service
            };
            let path = &config.auth.api_keys_file;
            let created = auth::keys::create_key(path, &principal, role, kind)?;
            report(&format!(
                "created key {} for {principal} ({}) in {}; it is shown only now:\n{}",
                created.id,
                role.as_str(),
                path.display(),
                created.key
            ));
            Ok(())
        }
        Command::BackfillParentDates {
            batch_size,
            dry_run,
            rollback,
            run,
            list_orphans,
        } => {
            let store = migrated_store(&config).await?;
            if rollback {
                let rows = ops::backfill::rollback(&store, run, batch_size).await?;
                report(&format!("rollback finished: {rows} rows are legacy links again"));
                return Ok(());
            }
            let options = ops::backfill::BackfillOptions {
                batch_size,
                dry_run,
                list_orphans,
            };
            let summary = ops::backfill::run(&store, &options).await?;
            report(&summary);
            match &summary.foreign_key {
                Some(fk) if !fk.valid => anyhow::bail!("the parent foreign key is not valid"),
                _ => Ok(()),
            }
        }
        Command::Retention {
            dry_run,
            batch_size,
            max_batches,
        } => {
            let store = migrated_store(&config).await?;
            let options = ops::retention::RetentionOptions {
                batch_size,
                max_batches,
                dry_run,
                progress: true,
            };
            let outcome = ops::retention::run(&store, &options, &ops::retention::runner_name()).await?;
            report(&outcome);
            match outcome {
                ops::retention::Outcome::Busy(_) => anyhow::bail!("another retention run is in progress"),
                _ => Ok(()),
            }
        }
        Command::Verify {
            verifier_key,
            export: Some(file),
        } => {
            let verifier = ops::verify::verifier_key(verifier_key.as_deref(), &config.log_key_file)?;
            let hasher = config.store_options()?.hasher;
            let checked = tokio::task::spawn_blocking(move || {
                let input: Box<dyn std::io::BufRead> = if file == "-" {
                    Box::new(std::io::BufReader::new(std::io::stdin()))
                } else {
                    let opened = std::fs::File::open(&file).with_context(|| format!("opening {file}"))?;
                    Box::new(std::io::BufReader::with_capacity(1 << 20, opened))
                };
                ops::export::verify_input(input, &verifier, &hasher)
            })
            .await
            .context("checking the export")??;
            report(&checked.to_string().trim_end());
            if !checked.ok() {
                anyhow::bail!(checked.verdict());
            }
            report(&checked.verdict());
            Ok(())
        }
        Command::Export {
            output,
            correlation_id,
            event_category,
            start_time,
            end_time,
            operator,
        } => {
            let store = migrated_store(&config).await?;
            let signer = log_signer(&store, &config).await?;
            let log = ops::log::Publisher::new(store.clone(), std::sync::Arc::new(signer));
            let exported_by = operator
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .filter(|name| !name.trim().is_empty())
                .context("name who exports with --operator (USER is not set)")?;
            let filter = store::ExportFilter {
                correlation_id,
                event_category,
                start_time,
                end_time,
            };
            let (lines, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
            let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                use std::io::Write;
                let mut out: Box<dyn Write> = if output == "-" {
                    Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
                } else {
                    let file = std::fs::File::create(&output).with_context(|| format!("creating {output}"))?;
                    Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
                };
                while let Some(line) = received.blocking_recv() {
                    out.write_all(&line).context("writing the export")?;
                }
                out.flush().context("writing the export")
            });
            let exported = ops::export::export(&store, &log, &filter, &exported_by, lines, true).await;
            writer.await.context("writing the export")??;
            let exported = exported?;
            tracing::info!("{exported}");
            eprintln!("{exported}");
            Ok(())
        }
        Command::Verify {
            verifier_key,
            export: None,
        } => {
            let verifier = ops::verify::verifier_key(verifier_key.as_deref(), &config.log_key_file)?;
            let store = ops::verify::connect(&config).await?;
            let verified = ops::verify::run(&store, Some(&verifier)).await?;
            report(&verified.details());
            if !verified.ok() {
                anyhow::bail!(verified.verdict());
            }
            report(&verified.verdict());
            Ok(())
        }
    }
}

/// Runs retention every `interval`, for as long as the server runs. When another process's run
/// is at work, this round is skipped.
async fn run_retention_every(store: Store, interval: Duration) {
    let runner = ops::retention::runner_name();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match ops::retention::run(&store, &ops::retention::RetentionOptions::default(), &runner).await {
            Ok(outcome) => tracing::info!("{outcome}"),
            Err(error) => tracing::error!(%error, "the scheduled retention run failed; the next one resumes it"),
        }
    }
}

/// Prints a command's result on standard output; a closed pipe is not an error.
fn report(result: &dyn std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{result}");
}

/// Connects and applies pending migrations (unless told not to).
async fn migrated_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.store_options()?).await?;
    if !config.no_migrate {
        store.migrate().await?;
    }
    Ok(store)
}

/// The application router on a connected store.
pub fn app(store: Store, config: &Config) -> anyhow::Result<Router> {
    let auth = Authenticator::from_settings(&config.auth)?;
    let signer = ops::log::LogSigner::load_or_create(&config.log_key_file, &config.log_origin)?;
    Ok(routers(store, config, auth, signer)?.0)
}

/// The main router and, when `/metrics` has a listener of its own, the router for it.
fn routers(
    store: Store,
    config: &Config,
    auth: Authenticator,
    signer: ops::log::LogSigner,
) -> anyhow::Result<(Router, Option<Router>, Service)> {
    let mut collectors: Vec<Box<dyn prometheus::core::Collector>> =
        vec![Box::new(store.statement_durations()), Box::new(store.group_sizes())];
    collectors.extend(store.replica_collectors());
    let metrics = Metrics::new(collectors).context("registering metrics")?;
    let log = ops::log::Publisher::new(store.clone(), std::sync::Arc::new(signer));
    let live = live::Live::new(store.clone(), log.signals(), config.live.clone(), metrics.clone());
    let ctx = Service {
        log,
        live,
        store,
        limits: config.limits(),
        max_batch_size: config.batch_limit(),
        metrics,
    };
    let schema = build_schema(ctx.clone(), config.query_limits(), config.introspection);
    let state = HttpState::new(HttpShared {
        schema,
        ctx,
        auth,
        metrics_role: config.metrics_role,
        introspection: config.introspection,
        ws_message_limit: config.body_limit_bytes,
        documents: http::documents::Documents::default(),
    });
    let metrics_router = config.metrics_listen.map(|_| http::metrics_router(state.clone()));
    let service = state.ctx.clone();
    let main = http::router(
        state,
        HttpOptions {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            graphiql: config.graphiql,
            explorer: config.explorer.then(|| http::explorer::ExplorerFiles {
                dir: config.explorer_dir.clone(),
            }),
            metrics: config.metrics_listen.is_none(),
        },
    );
    Ok((main, metrics_router, service))
}

/// Connects, migrates (unless told not to), prepares partitions and serves on `config.listen`
/// until SIGTERM or Ctrl-C, finishing the requests in flight.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    serve_on(listener, config, shutdown_signal()).await
}

/// [`serve`] on a bound listener, stopping gracefully when `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("reading the listening address")?;
    // Before anything else: an open server on a public address is refused, not started.
    let auth = Authenticator::from_settings(&config.auth)?;
    auth.check_listen(address)?;
    let store = Store::connect(&config.store_options()?).await?;
    if !config.no_migrate {
        store.migrate().await?;
    }
    let signer = log_signer(&store, &config).await?;
    store
        .ensure_partitions_ahead(config.partition_lookahead_months)
        .await
        .context("creating partitions ahead of time")?;
    store
        .settle_replicas()
        .await
        .context("reading the primary's WAL position for the replicas")?;
    let maintenance = tokio::spawn(keep_partitions_ahead(store.clone(), config.partition_lookahead_months));
    let (main, metrics_router, service) = routers(store, &config, auth, signer)?;
    let log = tokio::spawn(service.log.clone().run(
        Duration::from_millis(config.sequence_interval_ms),
        Duration::from_secs(config.checkpoint_interval_secs),
    ));
    let feed = tokio::spawn(service.live.clone().run());
    let replicas = tokio::spawn(service.store.clone().watch_replicas());
    let retention = config.retention_interval_minutes.map(|minutes| {
        tokio::spawn(run_retention_every(
            service.store.clone(),
            Duration::from_secs(minutes * 60),
        ))
    });
    // Live connections would hold a graceful shutdown open for ever: they end first, each
    // subscription with the cursor to resume from.
    let live = service.live.clone();
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        live.close();
        let _ = stopping.send(());
    };
    // Requests in flight get their time; a stream whose client stopped reading does not hold
    // the process for ever.
    let grace = Duration::from_secs(config.request_timeout_secs).max(Duration::from_secs(5));
    let overdue = async move {
        if stopped.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let metrics_server = match (config.metrics_listen, metrics_router) {
        (Some(metrics_address), Some(router)) => {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("binding the metrics address {metrics_address}"))?;
            tracing::info!(listen = %metrics_address, "metrics served at http://{metrics_address}/metrics");
            Some(tokio::spawn(async move {
                let served = axum::serve(
                    metrics_listener,
                    router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the metrics listener stopped");
                }
            }))
        }
        _ => None,
    };
    tracing::info!(
        listen = %address,
        database = %redact(&config.database_url),
        "auditgraph serving the explorer at http://{address}/, GraphQL at http://{address}/graphql and GraphiQL at http://{address}/graphiql"
    );
    // The peer address lets the trusted-proxy rule see who connected. Nagle's algorithm stays on:
    // a response goes out in one write either way, and for live delivery it packs the frames of
    // many events into fewer segments. With it off, 100 subscribers cost the server 28–42% more
    // CPU per event written (`bench serve --only live`).
    let serving = axum::serve(
        listener,
        main.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let served = tokio::select! {
        served = std::future::IntoFuture::into_future(serving) => served.context("serving HTTP"),
        () = overdue => {
            tracing::warn!(?grace, "connections were still open after the shutdown's grace period; stopping without them");
            Ok(())
        }
    };
    // WebSockets live outside the HTTP server's count once upgraded: each ends its subscriptions
    // with their cursors and closes (1001) first.
    if !service.live.wait_idle(Duration::from_secs(5)).await {
        tracing::warn!("WebSocket connections were still open 5 s after the shutdown began; stopping without them");
    }
    maintenance.abort();
    log.abort();
    feed.abort();
    replicas.abort();
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    tracing::info!("auditgraph stopped");
    served
}

/// The log's signing key, read or created. Refuses to start with a key other than the one that
/// signed the published checkpoints (or to create a new one when it is missing): checkpoints by
/// mixed keys would make the log unverifiable.
async fn log_signer(store: &Store, config: &Config) -> anyhow::Result<ops::log::LogSigner> {
    let path = &config.log_key_file;
    let Some(latest) = store
        .latest_checkpoint()
        .await
        .context("reading the log's checkpoints")?
    else {
        return ops::log::LogSigner::load_or_create(path, &config.log_origin);
    };
    if !path.exists() {
        anyhow::bail!(
            "the transparency log has signed checkpoints, but its signing key {} is missing: restore it \
             (a new key would not match the published checkpoints)",
            path.display()
        );
    }
    let signer = ops::log::LogSigner::load_or_create(path, &config.log_origin)?;
    let verifier = domain::checkpoint::VerifierKey::parse(signer.verifier())
        .map_err(|e| anyhow::anyhow!("the log verifier key: {e}"))?;
    domain::checkpoint::open(&latest.note, &verifier).map_err(|e| {
        anyhow::anyhow!(
            "the log signing key {} did not sign the published checkpoint of size {} ({e}): \
             use the key that did",
            path.display(),
            latest.tree_size
        )
    })?;
    Ok(signer)
}

/// Keeps the partitions of the coming months created while the server runs for months.
async fn keep_partitions_ahead(store: Store, months: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(6 * 3600));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(error) = store.ensure_partitions_ahead(months).await {
            tracing::warn!(%error, "could not create partitions ahead; writes still create them on demand");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}
