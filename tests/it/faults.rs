//! Faults of the database, through a TCP proxy in front of PostgreSQL that the test controls:
//! connections reset or silent. Refusals are fast, typed and retryable; what was acknowledged is
//! stored, what was refused is not; the server recovers without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::helpers::{CREATE, Engine, TestApp, brief, event_input, postgres_admin_url, rest_event};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Bytes flow both ways.
    Forward,
    /// Every connection, open or new, is reset.
    Reset,
    /// Connections stay open, but nothing gets through (a network partition).
    Silent,
}

/// A TCP proxy to PostgreSQL whose behaviour the test switches.
struct Proxy {
    addr: std::net::SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.mode.send(Mode::Reset);
    }
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (mode, _) = watch::channel(Mode::Forward);
        let mode = Arc::new(mode);
        let modes = mode.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, upstream.clone(), modes.subscribe()));
            }
        });
        Self { addr, mode, accept }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn connection(mut client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Reset => return reset(client),
        Mode::Silent => return hold(client, mode).await,
        Mode::Forward => {}
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return reset(client);
    };
    let changed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
        now = mode.wait_for(|m| *m != Mode::Forward) => now.ok().map(|m| *m),
    };
    match changed {
        Some(Mode::Silent) => hold(client, mode).await,
        _ => reset(client),
    }
}

/// Drops the connection with a reset (zero linger: no graceful close, and no blocking on drop).
fn reset(client: TcpStream) {
    if let Ok(client) = client.into_std() {
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    }
}

/// Reads and discards until the mode changes, then resets.
async fn hold(mut client: TcpStream, mut mode: watch::Receiver<Mode>) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0_u8; 4096];
    loop {
        tokio::select! {
            read = client.read(&mut buffer) => if matches!(read, Ok(0) | Err(_)) { return },
            _ = mode.changed() => return reset(client),
        }
    }
}

async fn readyz(app: &TestApp) -> StatusCode {
    let request = Request::get("/readyz").body(Body::empty()).expect("request");
    app.router.clone().oneshot(request).await.expect("answers").status()
}

/// Polls until `/readyz` says 200 (bounded: a server that does not recover fails the test).
async fn until_ready(app: &TestApp) {
    let started = Instant::now();
    while readyz(app).await != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(120), "no recovery within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_with_id(app: &TestApp, id: &str) -> Value {
    app.graphql(CREATE, json!({"input": event_input(json!({"eventId": id}))}))
        .await
}

async fn stored(app: &TestApp, id: &str) -> bool {
    let data = app
        .ok(
            "query($id: UUID!) { auditEvent(eventId: $id) { eventId } }",
            json!({"id": id}),
        )
        .await;
    !data["auditEvent"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_resets_or_goes_silent_gets_typed_retryable_refusals_and_recovers() {
    let admin = postgres_admin_url();
    let upstream = admin
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let proxy = Proxy::start(upstream.clone()).await;
    let through = proxy.addr.to_string();
    let Some(app) = TestApp::with_config(Engine::Postgres, |c| {
        c.database_url = c.database_url.replace(&upstream, &through);
        c.db_wait_timeout_secs = 2;
        c.request_timeout_secs = 10;
    })
    .await
    else {
        return;
    };

    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let id = uuid::Uuid::now_v7().to_string();
        let body = create_with_id(&app, &id).await;
        assert!(body.get("errors").is_none(), "{}", brief(&body));
        acknowledged.push(id);
    }

    // Reset: every connection is cut. Refusals are typed and retryable, and come quickly.
    proxy.set(Mode::Reset);
    let mut refused = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let id = uuid::Uuid::now_v7().to_string();
        let started = Instant::now();
        let body = create_with_id(&app, &id).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UNAVAILABLE",
            "{}",
            brief(&body)
        );
        refused.push(id);
    }
    let started = Instant::now();
    let (status, content_type, body) = app
        .rest("POST", "/api/v1/audit/events", Some(rest_event(json!({}))), &[])
        .await;
    slowest = slowest.max(started.elapsed());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", brief(&body));
    assert_eq!(content_type, "application/problem+json");
    let started = Instant::now();
    assert_eq!(readyz(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let readiness = started.elapsed();
    // Hang guards, not speed claims: the refusals take about the pool wait (2 s here).
    assert!(slowest < Duration::from_secs(30), "a refusal took {slowest:?}");
    assert!(readiness < Duration::from_secs(30), "readiness took {readiness:?}");
    eprintln!("reset: slowest refusal {slowest:?}, readiness {readiness:?}");
    let request = Request::post("/api/v1/audit/events")
        .header("content-type", "application/json")
        .body(Body::from(rest_event(json!({})).to_string()))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("answers");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");

    // Back: no restart needed; acknowledged events are there, refused ones are not.
    proxy.set(Mode::Forward);
    until_ready(&app).await;
    for id in &acknowledged {
        assert!(stored(&app, id).await, "acknowledged {id} is stored");
    }
    for id in &refused {
        assert!(!stored(&app, id).await, "refused {id} is not stored");
    }

    // Silent: requests end typed (the request timeout, or no connection in time).
    proxy.set(Mode::Silent);
    let id = uuid::Uuid::now_v7().to_string();
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"query": CREATE, "variables": {"input": event_input(json!({"eventId": id}))}}).to_string(),
        ))
        .expect("request");
    // A pooled connection that hangs ends at the request timeout (408), a new one at the pool wait.
    let (status, body) = app.send(request).await;
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        matches!(
            (status, code.as_str()),
            (StatusCode::OK, "UNAVAILABLE" | "TIMEOUT") | (StatusCode::REQUEST_TIMEOUT, "TIMEOUT")
        ),
        "{status}: {}",
        brief(&body)
    );
    let started = Instant::now();
    assert_eq!(readyz(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let silent_readiness = started.elapsed();
    assert!(
        silent_readiness < Duration::from_secs(30),
        "readiness took {silent_readiness:?}"
    );
    eprintln!("silent: readiness {silent_readiness:?}");

    proxy.set(Mode::Forward);
    until_ready(&app).await;
    assert!(!stored(&app, &id).await, "the write sent into silence was not stored");
    let after = uuid::Uuid::now_v7().to_string();
    let body = create_with_id(&app, &after).await;
    assert!(body.get("errors").is_none(), "writes work again: {}", brief(&body));
    assert_eq!(app.row_count().await, 4);
}

/// Writes batches through a real server process, kills it with SIGKILL while batches are in
/// flight, and checks every batch is whole or absent, and every acknowledged batch whole.
async fn kill_nine_mid_batch(database_url: String, _keep: impl Send) {
    use crate::helpers::{http_exchange, http_post, start_binary};
    const BATCH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_binary(dir.path(), Some(&database_url), std::process::Stdio::null()).await;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (enough, mut enough_rx) = tokio::sync::mpsc::channel::<()>(64);
    let mut writers = Vec::new();
    for writer in 0..4 {
        let acknowledged = acknowledged.clone();
        let enough = enough.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..10_000 {
                let correlation = format!("kill-{writer}-{round}");
                let events: Vec<Value> = (0..BATCH)
                    .map(|_| rest_event(json!({"correlation_id": correlation})))
                    .collect();
                let body = Value::from(events).to_string();
                let request = http_post("/api/v1/audit/events/batch", &body);
                // The exchange panics when the server dies under it; its task keeps that here.
                let exchange = tokio::spawn(async move { http_exchange(addr, &request).await });
                match exchange.await {
                    Ok((status, _)) if status.contains(" 201 ") => {
                        acknowledged.lock().unwrap().push(correlation);
                        let _ = enough.try_send(());
                    }
                    _ => return,
                }
            }
        }));
    }
    // Kill once twelve batches are acknowledged and others are surely in flight.
    for _ in 0..12 {
        enough_rx.recv().await.expect("writers acknowledge batches");
    }
    child.0.kill().expect("SIGKILL");
    let _ = child.0.wait();
    for writer in writers {
        let _ = writer.await;
    }

    let store = auditgraph::store::Store::connect(
        &auditgraph::config::Config::for_database(&database_url)
            .store_options()
            .unwrap(),
    )
    .await
    .expect("reconnect");
    use sea_orm::ConnectionTrait;
    let rows = store
        .db()
        .query_all_raw(sea_orm::Statement::from_string(
            store.backend(),
            "SELECT correlation_id, COUNT(*) AS n FROM audit_events GROUP BY correlation_id",
        ))
        .await
        .expect("counts");
    let counts: std::collections::HashMap<String, i64> = rows
        .iter()
        .map(|row| {
            (
                row.try_get("", "correlation_id").unwrap(),
                row.try_get("", "n").unwrap(),
            )
        })
        .collect();
    for (correlation, count) in &counts {
        assert_eq!(
            *count, BATCH as i64,
            "{correlation} is whole or absent, not {count} events"
        );
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 12);
    for correlation in &acknowledged {
        assert!(counts.contains_key(correlation), "acknowledged {correlation} is stored");
    }
    eprintln!(
        "kill -9: {} batches acknowledged, {} stored (a batch can commit before its answer is sent)",
        acknowledged.len(),
        counts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_batch_leaves_every_batch_whole_or_absent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kill.db").display());
    kill_nine_mid_batch(url, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_batch_leaves_every_batch_whole_or_absent_on_postgres() {
    let Some(database) = crate::helpers::fresh_postgres_database().await else {
        return;
    };
    kill_nine_mid_batch(database.url.clone(), database).await;
}
