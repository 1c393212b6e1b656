//! Test applications on fresh databases, and GraphQL helpers.

use std::sync::atomic::{AtomicU32, Ordering};

use auditgraph::config::Config;
use auditgraph::store::Store;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Where the PostgreSQL server is; the tests create and drop their own databases on it.
pub fn postgres_admin_url() -> String {
    std::env::var("AUDITGRAPH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Whether PostgreSQL tests must run (CI): then an unreachable server fails them.
pub fn postgres_is_required() -> bool {
    std::env::var("AUDITGRAPH_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

/// The database engines under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A migrated database behind the real router.
pub struct TestApp {
    pub store: Store,
    pub router: Router,
    /// The database URL the app runs on.
    pub url: String,
    /// Holds the log signing key of the app.
    pub keys: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
    /// Dropped last: the database goes when the app does, also when the test panics.
    _database: Option<TestDatabase>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);
static CLEANUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Drops the test databases of test processes that are gone (killed before they could clean up).
async fn drop_stale_databases(admin: &sea_orm::DatabaseConnection) {
    let rows = admin
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE 'auditgraph_test_%'",
        ))
        .await
        .unwrap_or_default();
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let pid = name
            .trim_start_matches("auditgraph_test_")
            .split('_')
            .next()
            .unwrap_or("");
        // Only Linux tells whether a process is alive this way; elsewhere nothing is dropped.
        let gone = cfg!(target_os = "linux") && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if gone {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Logs to the test output (shown for failing tests); `RUST_LOG` sets the level, default warn.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
}

/// A PostgreSQL database of one test, dropped when this value is (at the end of the test, or
/// while a failing test unwinds).
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin_url: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // The test's runtime may be the one being dropped, or panicking: use a runtime of its own.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = Database::connect(&admin_url).await.map_err(|e| e.to_string())?;
                admin.execute_unprepared(&statement).await.map_err(|e| e.to_string())?;
                admin.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A fresh, empty PostgreSQL database, or `None` when PostgreSQL is unreachable and not required.
pub async fn fresh_postgres_database() -> Option<TestDatabase> {
    let admin_url = postgres_admin_url();
    let admin = match Database::connect(&admin_url).await {
        Ok(db) => db,
        Err(error) if !postgres_is_required() => {
            eprintln!(
                "PostgreSQL at {admin_url} is unreachable ({error}); skipping this PostgreSQL test. Set AUDITGRAPH_REQUIRE_POSTGRES=1 to make this a failure."
            );
            return None;
        }
        Err(error) => panic!("PostgreSQL at {admin_url} is required but unreachable: {error}"),
    };
    CLEANUP.get_or_init(|| drop_stale_databases(&admin)).await;
    let name = format!(
        "auditgraph_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let url = postgres_url_of(&name, None);
    Some(TestDatabase { url, name, admin_url })
}

/// A name for a PostgreSQL database that does not exist yet and is dropped, should it come to
/// exist, when the value is; `None` when PostgreSQL is unreachable and not required.
pub async fn absent_postgres_database() -> Option<TestDatabase> {
    let database = fresh_postgres_database().await?;
    let admin = Database::connect(&database.admin_url).await.expect("connect");
    admin
        .execute_unprepared(&format!("DROP DATABASE {}", database.name))
        .await
        .expect("drop");
    let _ = admin.close().await;
    Some(database)
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether the test PostgreSQL server has a database of this name.
pub async fn postgres_database_exists(name: &str) -> bool {
    let admin = Database::connect(&postgres_admin_url()).await.expect("connect");
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("query")
        .expect("a row");
    let _ = admin.close().await;
    row.try_get::<i64>("", "n").expect("n") == 1
}

/// The URL of database `name` on the test PostgreSQL server, as `user` when given.
pub fn postgres_url_of(name: &str, user: Option<&str>) -> String {
    let admin_url = postgres_admin_url();
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_string())
        .unwrap_or(admin_url);
    let base = match (user, base.split_once("://"), base.rfind('@')) {
        (Some(user), Some((scheme, _)), Some(at)) => format!("{scheme}://{user}{}", &base[at..]),
        _ => base,
    };
    format!("{base}/{name}")
}

/// A value for a failure message, cut to a readable length.
pub fn brief(value: &impl std::fmt::Display) -> String {
    const MAX: usize = 1_500;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// Asserts that two lists are equal; a failure names the lengths and the first difference
/// instead of printing both lists.
#[track_caller]
pub fn assert_same_list<T: PartialEq + std::fmt::Debug>(actual: &[T], expected: &[T], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, e)| a != e);
    match first {
        Some(i) => panic!(
            "{what}: element {i} differs: {:?} instead of {:?} ({} elements, {} expected)",
            actual[i],
            expected[i],
            actual.len(),
            expected.len()
        ),
        None => panic!(
            "{what}: {} elements instead of {}; the first {} agree",
            actual.len(),
            expected.len(),
            actual.len().min(expected.len())
        ),
    }
}

impl TestApp {
    /// A test app on `engine`, or `None` when PostgreSQL is unavailable and not required.
    pub async fn new(engine: Engine) -> Option<Self> {
        Self::with_config(engine, |_| {}).await
    }

    /// Like [`TestApp::new`], with the configuration adjusted first.
    pub async fn with_config(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        init_tracing();
        let (url, dir, database) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (
                    format!("sqlite://{}", dir.path().join("auditgraph.db").display()),
                    Some(dir),
                    None,
                )
            }
            Engine::Postgres => {
                let database = fresh_postgres_database().await?;
                (database.url.clone(), None, Some(database))
            }
        };
        let mut config = Config::for_database(&url);
        let keys = tempfile::tempdir().expect("temp dir");
        config.log_key_file = keys.path().join("log.key");
        // A loaded machine must not fail a test: no time limit applies unless a test sets one.
        config.statement_timeout_secs = 3_600;
        config.db_wait_timeout_secs = 3_600;
        config.tree_timeout_ms = 3_600_000;
        config.request_timeout_secs = 3_600;
        adjust(&mut config);
        let store = Store::connect(&config.store_options().unwrap()).await.expect("connect");
        store.migrate().await.expect("migrate");
        let router = auditgraph::app(store.clone(), &config).expect("app");
        Some(Self {
            store,
            router,
            url: url.clone(),
            keys,
            _dir: dir,
            _database: database,
        })
    }

    /// The name of the app's PostgreSQL database (none on SQLite).
    pub fn database_name(&self) -> Option<&str> {
        self._database.as_ref().map(TestDatabase::name)
    }

    /// Sends a request through the router; returns the status and the JSON body.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body)
    }

    /// Sends a REST request (a JSON body when given); returns status, content type and JSON body.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        self.exchange(request).await
    }

    /// Sends a request through the router; returns the status, the content type and the body
    /// (JSON, or the text as a JSON string when it is not JSON).
    pub async fn exchange(&self, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let json =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, content_type, json)
    }

    /// POSTs a GraphQL operation; returns the whole response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        graphql_through(self.router.clone(), query, variables).await
    }

    /// POSTs a GraphQL operation; returns the response body as the server wrote it.
    pub async fn graphql_text(&self, query: &str, variables: Value) -> String {
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .body(Body::from(json!({"query": query, "variables": variables}).to_string()))
            .expect("request");
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(
            body.get("errors").is_none(),
            "unexpected errors: {}",
            brief(&body["errors"])
        );
        body["data"].clone()
    }

    /// Runs an operation that must fail; returns its first error.
    pub async fn error(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        body["errors"][0].clone()
    }

    /// Creates an event from `input` (merged over a valid default); returns the created event.
    pub async fn create(&self, input: Value) -> Value {
        let data = self.ok(CREATE, json!({"input": event_input(input)})).await;
        data["createAuditEvent"].clone()
    }

    /// How many rows `audit_events` holds.
    pub async fn row_count(&self) -> i64 {
        let row = self
            .store
            .db()
            .query_one_raw(Statement::from_string(
                self.store.backend(),
                "SELECT COUNT(*) AS n FROM audit_events",
            ))
            .await
            .expect("count")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("n")
    }
}

/// The mutation used by [`TestApp::create`].
pub const CREATE: &str = "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { \
    eventId eventTimestamp eventDate eventType eventCategory correlationId parentEventId parentEventDate \
    actorType actorId resourceType resourceId eventData retentionDays } }";

/// A valid event input with `overrides` merged in.
pub fn event_input(overrides: Value) -> Value {
    let mut input = json!({
        "eventType": "gateway.signal.received",
        "eventCategory": "gateway",
        "eventAction": "received",
        "eventOutcome": "success",
        "correlationId": "rr-2026-001",
        "eventData": {"signal": "HighCPU"}
    });
    if let (Some(base), Value::Object(extra)) = (input.as_object_mut(), overrides) {
        base.extend(extra);
    }
    input
}

/// Writes a test once and runs it on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::{Engine, TestApp};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    let app = TestApp::new(Engine::Sqlite).await.expect("SQLite is always available");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    if let Some(app) = TestApp::new(Engine::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )*
    };
}

/// POSTs a GraphQL operation through `router` (an app's, or another server process's on the same
/// database); returns the whole response body, which must come with status 200.
pub async fn graphql_through(router: Router, query: &str, variables: Value) -> Value {
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(json!({"query": query, "variables": variables}).to_string()))
        .expect("request");
    let response = router.oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    assert_eq!(status, StatusCode::OK, "GraphQL answered {status}: {}", brief(&body));
    body
}

/// An event row for bulk set-up, bypassing the API (large trees would take too long to write one
/// request at a time).
pub fn row(
    id: uuid::Uuid,
    timestamp: chrono::DateTime<chrono::Utc>,
    parent: Option<&auditgraph::entity::audit_event::Model>,
    correlation_id: &str,
) -> auditgraph::entity::audit_event::Model {
    // Stored timestamps have microsecond precision, as the write path guarantees.
    let timestamp = auditgraph::domain::event::to_micros(timestamp);
    auditgraph::entity::audit_event::Model {
        event_id: id,
        event_version: "1.0".into(),
        event_timestamp: timestamp,
        event_date: timestamp.date_naive(),
        event_type: "test.tree.node".into(),
        event_category: "test".into(),
        event_action: "node".into(),
        event_outcome: "success".into(),
        actor_type: "service".into(),
        actor_id: "test-service".into(),
        actor_ip: None,
        resource_type: "test".into(),
        resource_id: correlation_id.into(),
        resource_name: None,
        correlation_id: correlation_id.into(),
        parent_event_id: parent.map(|p| p.event_id),
        parent_event_date: parent.map(|p| p.event_date),
        trace_id: None,
        span_id: None,
        namespace: None,
        cluster_id: None,
        event_data: json!({}),
        event_metadata: None,
        severity: None,
        duration_ms: None,
        error_code: None,
        error_message: None,
        retention_days: 2555,
        is_sensitive: false,
        event_hash: None,
        previous_event_hash: None,
        hash_algorithm: "sha256-unkeyed".into(),
        legal_hold: false,
        legal_hold_reason: None,
        legal_hold_placed_by: None,
        legal_hold_placed_at: None,
        submitted_by: None,
        chain_seq: None,
        hash_key_id: None,
        chain_note: None,
        event_data_text: None,
    }
}

impl TestApp {
    /// Inserts rows in multi-row statements, parents before children, creating partitions first.
    pub async fn insert_rows(&self, rows: &[auditgraph::entity::audit_event::Model]) {
        insert_rows(&self.store, rows).await;
    }
}

/// [`TestApp::insert_rows`] on any store.
pub async fn insert_rows(store: &Store, rows: &[auditgraph::entity::audit_event::Model]) {
    use sea_orm::{EntityTrait, IntoActiveModel};
    let days: std::collections::BTreeSet<_> = rows.iter().map(|r| r.event_date).collect();
    for day in days {
        store.ensure_partition(day).await.expect("partition");
    }
    for chunk in rows.chunks(500) {
        let models = chunk.iter().cloned().map(IntoActiveModel::into_active_model);
        auditgraph::entity::audit_event::Entity::insert_many(models)
            .exec_without_returning(store.db())
            .await
            .expect("bulk insert");
    }
}

/// A valid kubernaut-style REST event with `overrides` merged in.
pub fn rest_event(overrides: Value) -> Value {
    let mut event = json!({
        "version": "1.0",
        "event_type": "gateway.signal.received",
        "event_timestamp": (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339(),
        "event_category": "gateway",
        "event_action": "received",
        "event_outcome": "success",
        "correlation_id": "rr-2026-001",
        "event_data": {"signal_type": "prometheus", "signal_name": "HighCPU", "namespace": "prod",
                       "fingerprint": "fp-1", "event_type": "gateway.signal.received"}
    });
    if let (Some(base), Value::Object(extra)) = (event.as_object_mut(), overrides) {
        base.extend(extra);
    }
    event
}

/// A child process of a test, killed if the test ends before it does.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The real binary, started in `dir` on a free loopback port (on `database_url`, or the default
/// SQLite file when `None`, with `RUST_LOG=info`), once it answers `/readyz`. Bounded: a server
/// that exits or is not ready within 120 s fails the test.
pub async fn start_binary(
    dir: &std::path::Path,
    database_url: Option<&str>,
    stderr: std::process::Stdio,
) -> (ChildGuard, std::net::SocketAddr) {
    start_binary_with(dir, database_url, stderr, &[]).await
}

/// [`start_binary`] with more environment variables.
pub async fn start_binary_with(
    dir: &std::path::Path,
    database_url: Option<&str>,
    stderr: std::process::Stdio,
    env: &[(&str, &str)],
) -> (ChildGuard, std::net::SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        // The allocator's settings are the server's own unless a test sets them.
        .env_remove("MIMALLOC_PURGE_DELAY")
        .env_remove("MIMALLOC_ALLOW_THP")
        .env("AUDITGRAPH_LISTEN", addr.to_string())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.envs(env.iter().copied());
    let mut child = ChildGuard(command.spawn().expect("start the binary"));
    let started = std::time::Instant::now();
    while !ready(addr).await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the server was not ready on {addr} within 120 s"
        );
        assert!(child.0.try_wait().expect("wait").is_none(), "the server exited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (child, addr)
}

/// Sends one raw HTTP/1.1 request (with `connection: close`) to `addr`; returns the status line and
/// the body.
pub async fn http_exchange(addr: std::net::SocketAddr, request: &str) -> (String, String) {
    let (status, _, body) = http_exchange_with_head(addr, request).await;
    (status, body)
}

/// Like [`http_exchange`], also returning the response's header lines.
pub async fn http_exchange_with_head(addr: std::net::SocketAddr, request: &str) -> (String, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let (status, head) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), head.to_string(), body.to_string())
}

/// The value of header `name` in `head` (lines of `name: value`), case-insensitively.
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
    })
}

/// A raw GET request for [`http_exchange`].
pub fn http_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
}

/// A raw POST of a JSON body for [`http_exchange`].
pub fn http_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Whether a server answers `/readyz` on `addr` with 200 (false while it cannot be reached, or
/// drops the connection as it stops).
pub async fn ready(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let mut response = String::new();
    stream.write_all(http_get("/readyz").as_bytes()).await.is_ok()
        && stream.read_to_string(&mut response).await.is_ok()
        && response.lines().next().is_some_and(|status| status.contains(" 200 "))
}

/// The real server, in this process, on a free loopback port and a fresh SQLite file; it stops
/// when dropped.
pub struct RunningServer {
    pub addr: std::net::SocketAddr,
    /// Its database.
    pub url: String,
    pub task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl RunningServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`RunningServer::start`] with the configuration adjusted (another database, say).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("served.db").display());
        let mut config = Config::for_database(&url);
        config.log_key_file = dir.path().join("log.key");
        adjust(&mut config);
        let url = config.database_url.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(auditgraph::serve_on(listener, config, async {
            let _ = stopped.await;
        }));
        // Ready means migrated: a test may write to the database directly from then on.
        let started = std::time::Instant::now();
        loop {
            if task.is_finished() {
                panic!("the server stopped: {:?}", task.await);
            }
            if ready(addr).await {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "the server was not ready within 120 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self {
            addr,
            url,
            task: Some(task),
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// Asks the server to stop gracefully; returns its task.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("stopped once")
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `text` percent-encoded for a query string (letters, digits, `-`, `_`, `.` kept).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `statements` as an attacker with direct database access, around every trigger: on
/// PostgreSQL with `session_replication_role = replica` on a connection of its own, on SQLite
/// after dropping the triggers that guard the events and the log (including the one that queues
/// new events for the log).
pub async fn as_attacker(app: &TestApp, statements: &[String]) {
    match app.store.backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let pool = app.store.db().get_postgres_connection_pool();
            let mut connection = pool.acquire().await.unwrap();
            sea_orm::sqlx::query("SET session_replication_role = replica")
                .execute(&mut *connection)
                .await
                .unwrap();
            for sql in statements {
                sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&mut *connection)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            sea_orm::sqlx::query("SET session_replication_role = origin")
                .execute(&mut *connection)
                .await
                .unwrap();
        }
        _ => {
            let db = app.store.db();
            for trigger in [
                "trg_audit_events_immutable",
                "trg_audit_events_no_delete",
                "trg_audit_events_held_no_delete",
                "trg_audit_events_unexpired_no_delete",
                "trg_audit_events_purged",
                "trg_audit_events_log",
                "trg_audit_log_leaves_no_update",
                "trg_audit_log_leaves_no_delete",
                "trg_audit_log_nodes_no_update",
                "trg_audit_log_nodes_no_delete",
            ] {
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                    .await
                    .unwrap();
            }
            for sql in statements {
                db.execute_unprepared(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}

pub fn id_literal(app: &TestApp, id: impl ToString) -> String {
    let id = id.to_string();
    match app.store.backend() {
        sea_orm::DatabaseBackend::Postgres => format!("'{id}'"),
        _ => format!("X'{}'", id.replace('-', "")),
    }
}
