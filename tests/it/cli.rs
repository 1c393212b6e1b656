//! The binary as a new user meets it: a missing PostgreSQL database, errors on one line, a quiet
//! start, and test databases that do not outlive their tests.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{
    Engine, TestApp, absent_postgres_database, fresh_postgres_database, postgres_admin_url, postgres_database_exists,
    postgres_url_of, start_binary, start_binary_with,
};

/// Runs the binary to completion (at most two minutes: a hang fails, a slow machine does not).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditgraph"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the binary");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("auditgraph {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The lines a clean start must never log.
fn assert_quiet(log: &str) {
    for noise in ["NOTICE", "already exists", "skipping", "WARN", "ERROR"] {
        assert!(!log.contains(noise), "the log mentions {noise:?}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_postgres_database_is_created_and_the_log_says_so() {
    let Some(database) = absent_postgres_database().await else {
        return;
    };
    let url = database.url.clone();
    let first = tokio::task::spawn_blocking(move || run(&["migrate"], &[("DATABASE_URL", &url)]))
        .await
        .unwrap();
    let log = stderr(&first);
    assert!(first.status.success(), "{log}");
    assert!(log.contains("the database did not exist; created it"), "{log}");
    assert!(log.contains(database.name()), "the log names the database: {log}");
    assert_quiet(&log);
    assert!(postgres_database_exists(database.name()).await);

    let url = database.url.clone();
    let again = tokio::task::spawn_blocking(move || run(&["migrate"], &[("DATABASE_URL", &url)]))
        .await
        .unwrap();
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    assert!(!log.contains("created it"), "{log}");
    assert_quiet(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_on_postgres_without_a_notice() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start_binary(dir.path(), Some(&database.url), Stdio::piped()).await;
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || {
        let mut stderr = child.0.stderr.take().expect("stderr");
        let mut log = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut log).expect("read the log");
        (child.0.wait().expect("exit"), log)
    })
    .await
    .unwrap();
    let output = Output {
        status: output.0,
        stdout: Vec::new(),
        stderr: output.1,
    };
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("auditgraph serving"), "{log}");
    assert_quiet(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_user_may_not_create_is_named_in_one_line_without_a_backtrace() {
    let Some(database) = absent_postgres_database().await else {
        return;
    };
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(postgres_admin_url()).await.unwrap();
    admin
        .execute_unprepared(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditgraph_test_nocreate') \
             THEN CREATE ROLE auditgraph_test_nocreate LOGIN NOCREATEDB; END IF; END $$",
        )
        .await
        .unwrap();
    let url = postgres_url_of(database.name(), Some("auditgraph_test_nocreate"));
    let output =
        tokio::task::spawn_blocking(move || run(&["serve"], &[("DATABASE_URL", &url), ("RUST_BACKTRACE", "1")]))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {log}");
    assert!(lines[0].starts_with("error: PostgreSQL database"), "{log}");
    assert!(lines[0].contains(database.name()), "names the database: {log}");
    assert!(lines[0].contains("may not create databases"), "says why: {log}");
    assert!(lines[0].contains("createdb"), "says what to do: {log}");
    assert!(!postgres_database_exists(database.name()).await);
    admin
        .execute_unprepared("DROP ROLE IF EXISTS auditgraph_test_nocreate")
        .await
        .unwrap();
    let _ = admin.close().await;
}

#[test]
fn every_cli_error_is_one_short_line_whatever_rust_backtrace_says() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "postgres://postgres@127.0.0.1:1/auditgraph".to_string(),
        format!("sqlite://{}/missing-dir/auditgraph.db", dir.path().display()),
        "mysql://localhost/auditgraph".to_string(),
    ];
    for url in &cases {
        let output = run(&["migrate"], &[("DATABASE_URL", url), ("RUST_BACKTRACE", "full")]);
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{url}: {log}");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{url}: one line: {log}");
        assert!(lines[0].starts_with("error: "), "{url}: {log}");
        assert!(lines[0].len() < 400, "{url}: short: {log}");
        assert!(!log.contains("backtrace"), "{url}: {log}");
    }
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    for value in ["1", "true", "yes", "on", "0", "false", "no", "off"] {
        let output = run(&["export-schema"], &[("AUDITGRAPH_NO_MIGRATE", value)]);
        assert!(output.status.success(), "{value}: {}", stderr(&output));
    }
    let output = run(&["export-schema"], &[("AUDITGRAPH_NO_MIGRATE", "maybe")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn a_malformed_option_is_one_line_too() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 3] = [
        (&["serve"], &[("AUDITGRAPH_LISTEN", "not-an-address")]),
        (&["--db-max-connections", "0"], &[]),
        (&["no-such-command"], &[]),
    ];
    for (args, env) in cases {
        let output = run(args, env);
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {log}");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {log}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {log}");
        assert!(lines[0].contains("--help"), "{args:?}: says where to look: {log}");
    }
    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("AUDITGRAPH_LISTEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_databases_are_dropped_when_their_test_ends_even_by_a_panic() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let name = database.name().to_string();
    assert!(postgres_database_exists(&name).await);
    drop(database);
    assert!(!postgres_database_exists(&name).await, "dropped with its guard");

    let (sender, receiver) = std::sync::mpsc::channel();
    let failing_test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let app = TestApp::new(Engine::Postgres).await.unwrap();
            app.create(serde_json::json!({})).await;
            sender.send(app.database_name().unwrap().to_string()).unwrap();
            panic!("a test failing on purpose, with its app alive");
        });
    });
    assert!(failing_test.join().is_err(), "the test thread panicked");
    let name = receiver.recv().unwrap();
    assert!(!postgres_database_exists(&name).await, "dropped while the test unwound");
}

/// Without authentication the server keeps to loopback: a public address is refused in one line
/// naming the way out, and taking that way out is logged as a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_a_public_address_is_refused_unless_the_operator_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("open.db").display());
    let output = run(&[], &[("AUDITGRAPH_LISTEN", "0.0.0.0:0"), ("DATABASE_URL", &db)]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(
        log.contains("--allow-unauthenticated") && log.contains("AUDITGRAPH_AUTH"),
        "{log}"
    );
    assert_eq!(log.trim().lines().count(), 1, "{log}");
    assert!(
        !dir.path().join("open.db").exists(),
        "refused before touching the database"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .unwrap()
        .port();
    let log_path = dir.path().join("server.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditgraph"));
    command
        .env("DATABASE_URL", &db)
        .env("AUDITGRAPH_LISTEN", format!("0.0.0.0:{port}"))
        .env("AUDITGRAPH_ALLOW_UNAUTHENTICATED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut child = crate::helpers::ChildGuard(command.spawn().unwrap());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while !crate::helpers::ready(addr).await {
        assert!(started.elapsed() < Duration::from_secs(120), "not ready");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "exited: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("WARN") && log.contains("without authentication"), "{log}");
    let _ = child.0.kill();
}

/// `create-key` prints a key once and stores only its hash; a running server takes a key created
/// after it started, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_on_the_command_line_authenticates_without_a_restart() {
    use crate::helpers::{http_exchange, rest_event};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys_text = keys.display().to_string();
    let create = |principal: &str, role: &str| {
        let output = run(
            &["create-key", "--principal", principal, "--role", role],
            &[("AUDITGRAPH_API_KEYS_FILE", &keys_text)],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let printed = String::from_utf8(output.stdout.clone()).unwrap();
        let key = printed.lines().last().unwrap().trim().to_string();
        assert_eq!(printed.matches(&key).count(), 1, "the key is printed once: {printed}");
        assert!(!stderr(&output).contains(&key), "the key never goes to the log");
        key
    };
    let first = create("ci-bot", "writer");
    assert!(first.starts_with("agk_"), "{first}");
    let stored = std::fs::read_to_string(&keys).unwrap();
    assert!(!stored.contains(&first), "the keys file holds no key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let (_child, addr) = start_binary_with(
        dir.path(),
        None,
        Stdio::null(),
        &[
            ("AUDITGRAPH_AUTH", "api-keys"),
            ("AUDITGRAPH_API_KEYS_FILE", &keys_text),
        ],
    )
    .await;
    let post = |key: &str| {
        let body = rest_event(serde_json::json!({})).to_string();
        format!(
            "POST /api/v1/audit/events HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, body) = http_exchange(addr, &post(&first)).await;
    assert!(status.contains(" 201 "), "{status} {body}");
    let (status, _) = http_exchange(addr, &post("agk_unknown")).await;
    assert!(status.contains(" 401 "), "{status}");

    let second = create("nightly-job", "writer");
    let started = Instant::now();
    loop {
        let (status, body) = http_exchange(addr, &post(&second)).await;
        if status.contains(" 201 ") {
            break;
        }
        assert!(status.contains(" 401 "), "{status} {body}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new key was never taken"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server sets its allocator's options before it serves (it starts itself once more with
/// them): freed memory returned 10 ms after it was freed, and no transparent huge pages, which
/// kept 2 MiB resident wherever a few bytes were touched. A value set by the operator is kept.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_returns_freed_memory_soon_and_uses_no_huge_pages() {
    let environment = |pid: u32| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("the server's environment");
        raw.split(|b| *b == 0)
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .filter(|entry| entry.starts_with("MIMALLOC_ALLOW_THP=") || entry.starts_with("MIMALLOC_PURGE_DELAY="))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start_binary(dir.path(), None, Stdio::null()).await;
    let pid = child.0.id();
    let mut set = environment(pid);
    set.sort();
    assert_eq!(set, ["MIMALLOC_ALLOW_THP=0", "MIMALLOC_PURGE_DELAY=10"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // Kernels since 5.0 say whether the process may have huge pages.
    if let Some(line) = status.lines().find(|line| line.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    drop(child);

    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start_binary_with(dir.path(), None, Stdio::null(), &[("MIMALLOC_ALLOW_THP", "1")]).await;
    let mut set = environment(child.0.id());
    set.sort();
    assert_eq!(set, ["MIMALLOC_ALLOW_THP=1", "MIMALLOC_PURGE_DELAY=10"]);
}
