//! Read replicas against real streaming standbys: routing, read-your-writes with the consistency
//! token, lag, and replicas that stop and come back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::helpers::{
    CREATE, RunningServer, event_input, header_of, http_exchange, http_exchange_with_head, http_get, http_post,
};

/// One GraphQL request over the real port, with a consistency token when given; returns the
/// response's header lines and body.
async fn graphql(addr: std::net::SocketAddr, query: &str, variables: Value, token: Option<&str>) -> (String, Value) {
    let body = json!({"query": query, "variables": variables}).to_string();
    let token = token.map_or(String::new(), |t| format!("auditgraph-consistency-token: {t}\r\n"));
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{token}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, head, body) = http_exchange_with_head(addr, &request).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    (head, serde_json::from_str(&body).expect("a JSON body"))
}

/// A metric's value on `/metrics` (the first line starting with `series`).
async fn metric(addr: std::net::SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = http_exchange(addr, &http_get("/metrics")).await;
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Waits (at most 20 s) until `condition` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const EVENT: &str = "query($id: UUID!) { auditEvent(eventId: $id) { eventId correlationId } }";

/// Writes an event through a mutation; returns its id and the token the write answered.
async fn write(addr: std::net::SocketAddr, correlation: &str) -> (String, String) {
    let (head, body) = graphql(
        addr,
        CREATE,
        json!({"input": event_input(json!({"correlationId": correlation}))}),
        None,
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let token = header_of(&head, "auditgraph-consistency-token").expect("a write answers a token");
    assert_eq!(
        body["extensions"]["consistencyToken"], token,
        "the header and the extension carry the same token"
    );
    assert_eq!(
        header_of(&head, "auditgraph-read-from"),
        None,
        "a mutation is not routed"
    );
    let id = body["data"]["createAuditEvent"]["eventId"]
        .as_str()
        .unwrap()
        .to_string();
    (id, token)
}

/// Reads the event back with `token`; returns which database answered and whether it was there.
async fn read(addr: std::net::SocketAddr, id: &str, token: Option<&str>) -> (String, bool) {
    let (head, body) = graphql(addr, EVENT, json!({"id": id}), token).await;
    assert!(body.get("errors").is_none(), "{body}");
    let from = header_of(&head, "auditgraph-read-from").expect("a routed read says where it went");
    (from, !body["data"]["auditEvent"].is_null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_streaming_replicas_with_read_your_writes_lag_and_failover_on_postgres() {
    crate::helpers::init_tracing();
    let Some(primary) = Cluster::primary() else {
        return;
    };
    primary.psql("postgres", "CREATE DATABASE audit");
    let standbys = [primary.standby(), primary.standby()];
    let names = standbys.each_ref().map(|s| format!("127.0.0.1:{}/audit", s.port));
    let server = RunningServer::start_with(|config| {
        config.database_url = primary.url("audit");
        config.read_database_url = standbys.iter().map(|s| s.url("audit")).collect();
        config.replica_check_ms = 100;
        config.read_wait_ms = 2_000;
        config.replica_max_lag_secs = 1;
    })
    .await;
    let addr = server.addr;
    let up = names.each_ref().map(|n| format!("db_replica_up{{replica=\"{n}\"}}"));
    let served = names
        .each_ref()
        .map(|n| format!("db_replica_reads_total{{replica=\"{n}\"}}"));
    for up in &up {
        until("the replicas are up", || async { metric(addr, up).await == Some(1.0) }).await;
    }

    // Routing: queries to the replicas in turn (once they have replayed the schema the server
    // migrated), writes to the primary with a token.
    let (id, _) = write(addr, "replica-1").await;
    until("the replicas have replayed the schema", || async {
        read(addr, &id, None).await.0 == "replica"
    })
    .await;
    for _ in 0..4 {
        let (from, _) = read(addr, &id, None).await;
        assert_eq!(from, "replica", "a query without a token goes to a fresh replica");
    }
    for served in &served {
        let reads = metric(addr, served).await;
        assert!(
            reads.is_some_and(|n| n >= 2.0),
            "{served}: reads are spread over the replicas: {reads:?}"
        );
    }
    let (status, head, body) = http_exchange_with_head(addr, &http_get("/api/v1/audit/events?limit=5")).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(header_of(&head, "auditgraph-read-from").as_deref(), Some("replica"));
    let rest = rest_write(addr, "replica-rest").await;
    assert!(rest.contains('/'), "a REST write answers a token too: {rest}");
    // A view reads `liveCursor` before its data: both must come from the primary.
    let (head, body) = graphql(
        addr,
        "{ liveCursor auditEvents(first: 1) { totalCount } }",
        json!({}),
        None,
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(header_of(&head, "auditgraph-read-from").as_deref(), Some("primary"));
    let fragment = "query { ...Now } fragment Now on Query { liveCursor }";
    let (head, _) = graphql(addr, fragment, json!({}), None).await;
    assert_eq!(header_of(&head, "auditgraph-read-from").as_deref(), Some("primary"));

    // A token no replica can reach (as anyone may send) costs that read the wait and goes to the
    // primary, and takes no replica out of the rotation.
    let (from, _) = read(addr, &id, Some("FFFFFFFF/FFFFFFFF")).await;
    assert_eq!(from, "primary");
    let (from, _) = read(addr, &id, None).await;
    assert_eq!(from, "replica", "the replicas are still in the rotation");
    for up in &up {
        assert_eq!(metric(addr, up).await, Some(1.0));
    }

    // Read-your-writes: every read carrying its write's token finds the write.
    for round in 0..20 {
        let (id, token) = write(addr, &format!("ryw-{round}")).await;
        let (_, found) = read(addr, &id, Some(&token)).await;
        assert!(found, "round {round}: the read with the write's token found it");
    }

    // The bounded wait: replay paused on both, resumed 200 ms after the write; the read waits.
    let pause = |s: &Cluster| s.psql("audit", "SELECT pg_wal_replay_pause()");
    standbys.iter().for_each(|s| {
        pause(s);
    });
    let (id, token) = write(addr, "paused-briefly").await;
    let resume = tokio::spawn({
        let ports = standbys.each_ref().map(|s| s.port);
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ports.into_iter().for_each(resume_replay);
        }
    });
    let (from, found) = read(addr, &id, Some(&token)).await;
    resume.await.unwrap();
    assert!(found);
    assert_eq!(from, "replica", "a replica replayed the write within the read wait");

    // Paused for longer than the read wait: the primary answers the token's read; once the
    // replicas are further behind than the lag allowed, tokenless reads go to the primary too.
    standbys.iter().for_each(|s| {
        pause(s);
    });
    let (id, token) = write(addr, "paused-long").await;
    let (from, found) = read(addr, &id, Some(&token)).await;
    assert!(found, "the primary has the write");
    assert_eq!(from, "primary", "no replica replayed the token within the read wait");
    let lag = names
        .each_ref()
        .map(|n| format!("db_replica_lag_seconds{{replica=\"{n}\"}}"));
    for lag in &lag {
        until("the lag passes the second allowed", || async {
            metric(addr, lag).await.is_some_and(|seconds| seconds > 1.2)
        })
        .await;
    }
    let bytes = metric(addr, &format!("db_replica_lag_bytes{{replica=\"{}\"}}", names[0])).await;
    assert!(bytes.is_some_and(|b| b > 0.0), "lag in bytes: {bytes:?}");
    let (from, _) = read(addr, &id, None).await;
    assert_eq!(from, "primary", "replicas behind the lag allowed get no reads");
    let behind = metric(addr, "db_reads_total{reason=\"behind_token\",target=\"primary\"}").await;
    assert!(behind.is_some_and(|n| n >= 1.0), "counted: {behind:?}");
    standbys.iter().for_each(|s| {
        s.psql("audit", "SELECT pg_wal_replay_resume()");
    });
    until("the replicas catch up", || async {
        read(addr, &id, None).await.0 == "replica"
    })
    .await;
    let (from, found) = read(addr, &id, Some(&token)).await;
    assert_eq!((from.as_str(), found), ("replica", true));
    for lag in &lag {
        until("no lag once caught up", || async {
            metric(addr, lag).await == Some(0.0)
        })
        .await;
    }

    // One replica stops mid-test: the other answers the reads. At most one read, already on its
    // way to the stopped one, is refused, typed and retryable.
    standbys[0].kill();
    let before = metric(addr, &served[1]).await.unwrap_or_default();
    let failed = reads_after_a_stop(addr, "replica").await;
    assert!(failed <= 1, "{failed} reads failed after a replica stopped");
    until("the stopped replica is seen down", || async {
        metric(addr, &up[0]).await == Some(0.0)
    })
    .await;
    let after = metric(addr, &served[1]).await.unwrap_or_default();
    assert!(
        after >= before + 19.0,
        "the other replica answered them: {before} then {after}"
    );

    // The other stops too: the primary answers.
    standbys[1].kill();
    let failed = reads_after_a_stop(addr, "primary").await;
    assert!(failed <= 1, "{failed} reads failed after the last replica stopped");
    until("the last replica is seen down", || async {
        metric(addr, &up[1]).await == Some(0.0)
    })
    .await;
    let (status, head, _) = http_exchange_with_head(addr, &http_get("/api/v1/audit/events?limit=5")).await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(header_of(&head, "auditgraph-read-from").as_deref(), Some("primary"));

    // One comes back: reads return to it once it has caught up.
    standbys[0].start();
    until("the replica is up again", || async {
        metric(addr, &up[0]).await == Some(1.0)
    })
    .await;
    let (id, token) = write(addr, "back").await;
    let (_, found) = read(addr, &id, Some(&token)).await;
    assert!(found);
    until("reads return to the replica", || async {
        read(addr, &id, None).await.0 == "replica"
    })
    .await;
}

/// Writes and reads back with the token 20 times after a replica stopped: each read is answered
/// from `expected`, except refusals (`UNAVAILABLE`) of reads that were on their way to the stopped
/// replica; returns how many.
async fn reads_after_a_stop(addr: std::net::SocketAddr, expected: &str) -> usize {
    let mut failed = 0;
    for round in 0..20 {
        let (id, token) = write(addr, &format!("after-a-stop-{round}")).await;
        let (head, body) = graphql(addr, EVENT, json!({"id": id}), Some(&token)).await;
        if body.get("errors").is_some() {
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{body}");
            failed += 1;
            continue;
        }
        assert_eq!(header_of(&head, "auditgraph-read-from").as_deref(), Some(expected));
        assert!(!body["data"]["auditEvent"].is_null());
    }
    failed
}

/// A REST write; returns the token it answered.
async fn rest_write(addr: std::net::SocketAddr, correlation: &str) -> String {
    let body = crate::helpers::rest_event(json!({"correlation_id": correlation})).to_string();
    let (status, head, body) = http_exchange_with_head(addr, &http_post("/api/v1/audit/events", &body)).await;
    assert!(status.contains(" 201 "), "{status}: {body}");
    header_of(&head, "auditgraph-consistency-token").expect("a REST write answers a token")
}

/// Resumes WAL replay on the standby listening on `port` (from a task: psql through the
/// cluster's own programs would need the cluster itself).
fn resume_replay(port: u16) {
    let status = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "audit",
            "-XAtq",
        ])
        .args(["-c", "SELECT pg_wal_replay_resume()"])
        .status()
        .expect("psql");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_is_not_one_is_refused_naming_where_it_was_on_postgres() {
    let Some(primary) = Cluster::primary() else {
        return;
    };
    primary.psql("postgres", "CREATE DATABASE audit");
    // The primary named as its own replica: it is not a standby, so it gets no reads.
    let server = RunningServer::start_with(|config| {
        config.database_url = primary.url("audit");
        config.read_database_url = vec![primary.url("audit")];
        config.replica_check_ms = 100;
    })
    .await;
    let addr = server.addr;
    let (id, token) = write(addr, "not-a-standby").await;
    let (from, found) = read(addr, &id, Some(&token)).await;
    assert_eq!(
        (from.as_str(), found),
        ("primary", true),
        "a server not in recovery gets no reads"
    );

    let (_, body) = graphql(addr, EVENT, json!({"id": id}), Some("yesterday")).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("auditgraph-consistency-token: `yesterday` is not a consistency token"),
        "{body}"
    );
    let request = json!({"query": EVENT, "variables": {"id": id}, "extensions": {"consistencyToken": 42}}).to_string();
    let (_, body) = http_exchange(addr, &http_post("/graphql", &request)).await;
    assert!(body.contains("extensions.consistencyToken: must be a string"), "{body}");
    let request = "GET /api/v1/audit/events HTTP/1.1\r\nhost: localhost\r\nauditgraph-consistency-token: 1/2/3\r\nconnection: close\r\n\r\n";
    let (status, body) = http_exchange(addr, request).await;
    assert!(status.contains(" 400 "), "{status}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert!(
        problem["field_errors"]["auditgraph-consistency-token"]
            .as_str()
            .is_some_and(|m| m.contains("not a consistency token")),
        "{problem}"
    );
}

#[tokio::test]
async fn read_replicas_need_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        auditgraph::config::Config::for_database(&format!("sqlite://{}", dir.path().join("a.db").display()));
    config.read_database_url = vec!["postgres://postgres@127.0.0.1:5432/test".into()];
    let error = auditgraph::store::Store::connect(&config.store_options().unwrap())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("read replicas (AUDITGRAPH_READ_DATABASE_URL) need PostgreSQL"),
        "{error}"
    );
}
