//! Several server processes on one PostgreSQL database, one of them killed while all are written
//! to: nothing acknowledged is lost, nothing is stored twice, chains and the transparency log
//! verify, and the subscribers of the survivors see every event.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{event_input, fresh_postgres_database, rest_event, start_binary_with};
use crate::live::{ADDED, PATIENCE, Ws, added, now};

/// One POST that may meet a dead server: `None` when the connection fails or is cut.
async fn try_post(addr: SocketAddr, path: &str, body: &Value) -> Option<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let code = head.split(' ').nth(1)?.parse().ok()?;
        Some((code, serde_json::from_str(body).ok()?))
    };
    tokio::time::timeout(PATIENCE, exchange).await.ok().flatten()
}

const CREATE: &str = "mutation($input: AuditEventInput!) { createAuditEvent(input: $input) { eventId } }";

/// Writes one event through GraphQL: its id when acknowledged, `None` when the server is dead
/// or died during the request, the error when a live server refused it.
async fn create(addr: SocketAddr, input: Value) -> Result<Option<String>, String> {
    let Some((code, body)) = try_post(
        addr,
        "/graphql",
        &json!({"query": CREATE, "variables": {"input": input}}),
    )
    .await
    else {
        return Ok(None);
    };
    match body["data"]["createAuditEvent"]["eventId"].as_str() {
        Some(id) if code == 200 => Ok(Some(id.to_string())),
        _ => Err(body.to_string()),
    }
}

/// What the writers were told.
#[derive(Default)]
struct Acknowledged {
    /// Every acknowledged event id.
    ids: HashSet<String>,
    /// Ids chosen by the client and sent to two servers at once, with how many of the two
    /// acknowledged them.
    twice: HashMap<String, usize>,
    /// Writes refused by a server that answered (not cut off by its death): none are expected.
    refused: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_lose_nothing_when_one_is_killed_mid_write_on_postgres() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 48;
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let env = [
        ("AUDITGRAPH_LOG_KEY_FILE", key.to_str().unwrap()),
        ("AUDITGRAPH_DB_MAX_CONNECTIONS", "8"),
        ("RUST_LOG", "warn"),
    ];
    let null = std::process::Stdio::null;
    let (one, a) = start_binary_with(dir.path(), Some(&database.url), null(), &env).await;
    let (two, b) = start_binary_with(dir.path(), Some(&database.url), null(), &env).await;
    // The one to be killed sequences most often, so that it is likely mid-round when it dies.
    let eager = [env.as_slice(), &[("AUDITGRAPH_SEQUENCE_INTERVAL_MS", "10")]].concat();
    let (mut three, c) = start_binary_with(dir.path(), Some(&database.url), null(), &eager).await;
    let servers = [a, b, c];

    // A subscriber on each server that survives, from the start of the log.
    let start = now(a, None).await;
    let mut subscribers = Vec::new();
    for addr in [a, b] {
        let mut ws = Ws::ready(addr, None).await;
        ws.subscribe("all", ADDED, json!({"after": start})).await;
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");
        subscribers.push(ws);
    }

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let acknowledged = acknowledged.clone();
        let progress = progress.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let server = servers[(w + round) % 3];
                let next = servers[(w + round + 1) % 3];
                let mut ids = Vec::new();
                let mut refused = Vec::new();
                let mut outcome = |written: Result<Option<String>, String>| match written {
                    Ok(id) => id,
                    Err(error) => {
                        refused.push(error);
                        None
                    }
                };
                match round % 4 {
                    // One chain written through every server at once.
                    0 => ids.extend(outcome(
                        create(server, event_input(json!({"correlationId": "scale-shared"}))).await,
                    )),
                    // A chain of the writer's own, through changing servers.
                    1 => ids.extend(outcome(
                        create(server, event_input(json!({"correlationId": format!("scale-{w}")}))).await,
                    )),
                    // The same client-chosen id sent to two servers at once: one event.
                    2 => {
                        let id = uuid::Uuid::now_v7().to_string();
                        let input = event_input(json!({
                            "eventId": id,
                            "eventTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            "correlationId": format!("scale-twice-{w}"),
                        }));
                        let (first, second) = tokio::join!(create(server, input.clone()), create(next, input));
                        let answers: Vec<String> = [outcome(first), outcome(second)].into_iter().flatten().collect();
                        for answer in &answers {
                            assert_eq!(answer, &id, "a retry answers the stored event");
                        }
                        if !answers.is_empty() {
                            acknowledged.lock().unwrap().twice.insert(id.clone(), answers.len());
                            ids.push(id);
                        }
                    }
                    // A batch of five in a correlation of its own.
                    _ => {
                        let batch: Vec<Value> = (0..5)
                            .map(|_| rest_event(json!({"correlation_id": format!("scale-batch-{w}-{round}")})))
                            .collect();
                        if let Some((code, body)) =
                            try_post(server, "/api/v1/audit/events/batch", &Value::from(batch)).await
                        {
                            if code == 201 {
                                ids.extend(
                                    body["event_ids"]
                                        .as_array()
                                        .unwrap()
                                        .iter()
                                        .map(|id| id.as_str().unwrap().to_string()),
                                );
                            } else {
                                refused.push(body.to_string());
                            }
                        }
                    }
                }
                let mut acknowledged = acknowledged.lock().unwrap();
                acknowledged.ids.extend(ids);
                acknowledged.refused.extend(refused);
                let _ = progress.send(());
            }
        }));
    }
    drop(progress);

    // Kill the third server once a quarter of the rounds are done, with writes in flight on it.
    for _ in 0..(WRITERS * ROUNDS / 4) {
        progressed.recv().await.expect("writers progress");
    }
    three.0.kill().expect("SIGKILL");
    let _ = three.0.wait();
    for writer in writers {
        writer.await.expect("a writer finished");
    }
    let acknowledged = Arc::try_unwrap(acknowledged).ok().unwrap().into_inner().unwrap();
    assert!(
        acknowledged.refused.is_empty(),
        "live servers refused writes: {:?}",
        acknowledged.refused
    );
    assert!(
        acknowledged.ids.len() > WRITERS * ROUNDS,
        "{} acknowledged",
        acknowledged.ids.len()
    );
    assert!(
        acknowledged.twice.values().any(|&n| n == 2),
        "some client-chosen ids were acknowledged by two servers"
    );

    // What is stored: every acknowledged event, each once.
    let store = auditgraph::store::Store::connect(
        &auditgraph::config::Config::for_database(&database.url)
            .store_options()
            .unwrap(),
    )
    .await
    .unwrap();
    let rows = store
        .db()
        .query_all_raw(sea_orm::Statement::from_string(
            store.backend(),
            "SELECT event_id::text AS id, COUNT(*) AS n FROM audit_events GROUP BY event_id",
        ))
        .await
        .unwrap();
    let mut stored = HashSet::new();
    for row in &rows {
        let id: String = row.try_get("", "id").unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 1, "{id} is stored once");
        stored.insert(id);
    }
    let lost: Vec<_> = acknowledged.ids.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    // The subscribers of both survivors receive every stored event once, in log order, the
    // unacknowledged ones the killed server committed included.
    for (n, ws) in subscribers.iter_mut().enumerate() {
        let mut seen = HashSet::new();
        let mut last: Option<u64> = None;
        while seen.len() < stored.len() {
            let (_, index, id) = added(&ws.next("all").await);
            assert!(
                last.is_none_or(|l| index == l + 1),
                "subscriber {n}: leaf {index} after {last:?}"
            );
            last = Some(index);
            assert!(seen.insert(id.clone()), "subscriber {n} received {id} twice");
            assert!(
                stored.contains(&id),
                "subscriber {n} received {id}, which is not stored"
            );
        }
    }

    // The chains and the log verify.
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"))
        .arg("verify")
        .current_dir(dir.path())
        .env("DATABASE_URL", &database.url)
        .env("AUDITGRAPH_LOG_KEY_FILE", &key)
        .output()
        .expect("auditgraph verify");
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "verify: {report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    eprintln!(
        "three processes, one killed: {} acknowledged, {} stored, {} ids sent to two servers; {}",
        acknowledged.ids.len(),
        stored.len(),
        acknowledged.twice.len(),
        report.lines().last().unwrap_or_default()
    );
    drop((one, two));
}
