//! The server over a real TCP port: health, GraphQL over GET and POST, GraphiQL, graceful shutdown.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::helpers::{RunningServer, brief, http_exchange as http, http_get as get, http_post as post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_over_tcp_and_shuts_down_gracefully() {
    let mut server = RunningServer::start().await;
    let addr = server.addr;

    let (status, body) = http(addr, &get("/healthz")).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok");

    let create = r#"{"query":"mutation { createAuditEvent(input: {eventType: \"gateway.signal.received\", eventCategory: \"gateway\", eventAction: \"received\", eventOutcome: \"success\", correlationId: \"rr-tcp\", eventData: {}}) { eventId } }"}"#;
    let (status, body) = http(addr, &post("/graphql", create)).await;
    assert!(status.contains("200"), "{status} {}", brief(&body));
    assert!(body.contains("eventId"), "{}", brief(&body));

    let (status, body) = http(addr, &get("/graphql?query=%7BauditEvents%7BtotalCount%7D%7D")).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(r#""totalCount":1"#), "{}", brief(&body));

    let (status, _) = http(addr, &get("/graphql?query=mutation%7B__typename%7D")).await;
    assert!(status.contains("405"), "a mutation over GET is refused: {status}");

    let (status, body) = http(addr, &get("/graphiql")).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("/graphql"), "GraphiQL points at the endpoint");

    // Bounded so that a hang fails, and long enough that a loaded machine does not.
    let result = tokio::time::timeout(Duration::from_secs(120), server.stop())
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
    let (mut child, _) = crate::helpers::start_binary(dir.path(), None, std::process::Stdio::null()).await;
    assert!(
        dir.path().join("auditgraph.db").exists(),
        "the default database is auditgraph.db in the working directory"
    );

    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exit = None;
    for _ in 0..1_200 {
        if let Some(status) = child.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exit else {
        panic!("the server did not stop within 120 s of SIGTERM");
    };
    assert!(
        status.success(),
        "the server exits with success after SIGTERM: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_and_its_files_come_from_the_binary_under_a_same_origin_policy() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = crate::helpers::TestApp::new(crate::helpers::Engine::Sqlite)
        .await
        .unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        app.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };

    let page = get("/graphiql", &[]).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{}",
        brief(&html)
    );
    for file in ["graphiql.js", "graphiql.css", "favicon.svg"] {
        assert!(
            html.contains(&format!("/graphiql/assets/{file}")),
            "the page loads {file}"
        );
    }

    // Compressed for browsers, plain for clients that do not take gzip, revalidated by ETag.
    let gzipped = get("/graphiql/assets/graphiql.js", &[("accept-encoding", "gzip, br")])
        .await
        .unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(
        gzipped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(gzipped.headers()["content-security-policy"].to_str().is_ok());
    let etag = gzipped.headers()["etag"].to_str().unwrap().to_string();
    let compressed = gzipped.into_body().collect().await.unwrap().to_bytes();
    let plain = get("/graphiql/assets/graphiql.js", &[]).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.into_body().collect().await.unwrap().to_bytes();
    assert!(
        plain.len() > 2 * compressed.len(),
        "{} vs {}",
        plain.len(),
        compressed.len()
    );
    assert!(
        !String::from_utf8_lossy(&plain).contains("unpkg.com"),
        "the bundle names no CDN"
    );
    let again = get(
        "/graphiql/assets/graphiql.js",
        &[("if-none-match", &etag), ("accept-encoding", "gzip")],
    )
    .await
    .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // The decompressed file is another representation, with a tag of its own.
    let other = get("/graphiql/assets/graphiql.js", &[("if-none-match", &etag)])
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_ne!(other.headers()["etag"].to_str().unwrap(), etag);

    let licences = get("/graphiql/assets/LICENSES.txt", &[]).await.unwrap();
    assert_eq!(licences.status(), StatusCode::OK);
    let text = licences.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("graphiql@5."));

    let missing = get("/graphiql/assets/../../etc/passwd", &[]).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = get("/graphiql/assets/nothing.js", &[]).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_is_served_at_the_root_under_a_policy_without_inline_code() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = crate::helpers::TestApp::new(crate::helpers::Engine::Sqlite)
        .await
        .unwrap();
    let get = |path: &str, etag: Option<&str>| {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        app.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let page = get("/", None).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for file in ["/explorer/explorer.js", "/explorer/explorer.css"] {
        assert!(html.contains(file), "the page loads {file}");
    }
    // Every module the entry imports is served, as JavaScript, and revalidated by its ETag.
    for module in [
        "explorer.js",
        "api.js",
        "documents.js",
        "live.js",
        "tree.js",
        "timeline.js",
        "detail.js",
        "search.js",
    ] {
        let file = get(&format!("/explorer/{module}"), None).await.unwrap();
        assert_eq!(file.status(), StatusCode::OK, "{module}");
        assert_eq!(file.headers()["content-type"], "text/javascript; charset=utf-8");
        let etag = file.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(
            get(&format!("/explorer/{module}"), Some(&etag)).await.unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
    }
    assert_eq!(
        get("/explorer/other.js", None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/explorer/index.html", None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // It can be switched off.
    let off = crate::helpers::TestApp::with_config(crate::helpers::Engine::Sqlite, |c| c.explorer = false)
        .await
        .unwrap();
    let response = off
        .router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
