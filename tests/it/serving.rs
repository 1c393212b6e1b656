//! The server over a real TCP port: health, GraphQL over GET and POST, GraphiQL, graceful shutdown.

use std::time::Duration;

use auditgraph::config::Config;

use crate::helpers::brief;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one HTTP/1.1 request and returns the status line and the body.
async fn http(addr: std::net::SocketAddr, request: String) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_over_tcp_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_database(&format!("sqlite://{}", dir.path().join("served.db").display()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(auditgraph::serve_on(listener, config, async {
        let _ = stopped.await;
    }));

    let (status, body) = http(addr, get("/healthz")).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok");

    let create = r#"{"query":"mutation { createAuditEvent(input: {eventType: \"gateway.signal.received\", eventCategory: \"gateway\", eventAction: \"received\", eventOutcome: \"success\", correlationId: \"rr-tcp\", eventData: {}}) { eventId } }"}"#;
    let (status, body) = http(addr, post("/graphql", create)).await;
    assert!(status.contains("200"), "{status} {}", brief(&body));
    assert!(body.contains("eventId"), "{}", brief(&body));

    let (status, body) = http(addr, get("/graphql?query=%7BauditEvents%7BtotalCount%7D%7D")).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(r#""totalCount":1"#), "{}", brief(&body));

    let (status, _) = http(addr, get("/graphql?query=mutation%7B__typename%7D")).await;
    assert!(status.contains("405"), "a mutation over GET is refused: {status}");

    let (status, body) = http(addr, get("/graphiql")).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("/graphql"), "GraphiQL points at the endpoint");

    stop.send(()).unwrap();
    // Bounded so that a hang fails, and long enough that a loaded machine does not.
    let result = tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("stops in time");
    result.unwrap().expect("serve returns Ok after a graceful shutdown");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_defaults_to_a_local_sqlite_file_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditgraph"))
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("AUDITGRAPH_LISTEN", addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..1_200 {
        if TcpStream::connect(addr).await.is_ok() {
            let (status, _) = http(addr, get("/healthz")).await;
            healthy = status.contains("200");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the server did not come up on {addr}");
    assert!(
        dir.path().join("auditgraph.db").exists(),
        "the default database is auditgraph.db in the working directory"
    );

    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exit = None;
    for _ in 0..1_200 {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exit else {
        let _ = child.kill();
        panic!("the server did not stop within 120 s of SIGTERM");
    };
    assert!(
        status.success(),
        "the server exits with success after SIGTERM: {status}"
    );
}
