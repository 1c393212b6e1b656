//! A bare HTTP server: hyper alone, with no router, middleware, GraphQL or database, answering
//! every request with the bytes auditgraph answers `{ __typename }` with, after reading the
//! request's body as a server must. Its cost per request is about the least any server on this
//! HTTP stack pays on this machine: the `peers` group measures it beside PostGraphile, so that
//! the floor's target there is set against what the stack alone reaches.
//!
//! It runs as a process of its own (`bench bare --listen <address>`), with the runtime's default
//! worker threads, as the server under test does. It serves HTTP/1.1 through hyper's own
//! connection; the server under test serves through `axum::serve` (hyper-util's connection that
//! tells HTTP/1.1 from HTTP/2, graceful shutdown, the peer's address), whose cost is part of what
//! the server spends beyond this one.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// The answer to every request: auditgraph's to `{ __typename }`.
pub const ANSWER: &[u8] = br#"{"data":{"__typename":"Query"}}"#;

/// Serves `listener` until the process is killed: each connection in a task of its own, kept
/// alive, with Nagle's algorithm off; each request's body read whole before the answer. A failed
/// accept is logged and the next one tried.
pub async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("accepting a connection: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("turning Nagle's algorithm off: {error}");
        }
        tokio::spawn(async move {
            let answer = service_fn(|request: Request<Incoming>| async move {
                request.into_body().collect().await?;
                Response::builder()
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from_static(ANSWER)))
                    .map_err(anyhow::Error::from)
            });
            // A connection the client dropped ends here; the server goes on.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}

/// The `bare` command: binds `listen` and serves it.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    serve(listener).await;
    Ok(())
}

/// A running bare server, this benchmark's own binary started with `bare`; killed when dropped.
pub struct Bare {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Bare {
    /// Starts it on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a free port")?;
        let log = std::env::temp_dir().join("auditgraph-bench-bare.log");
        let binary = std::env::current_exe().context("finding this benchmark's binary")?;
        let child = crate::server::spawn_logged(
            Command::new(&binary).args(["bare", "--listen", &addr.to_string()]),
            &binary,
            &log,
        )?;
        let mut bare = Self { child, addr, log };
        crate::server::wait_until_graphql_answers(&mut bare.child, &bare.log, "the bare server", addr).await?;
        Ok(bare)
    }

    /// Stops it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("stopping the bare server")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Conn, graphql_body};

    #[tokio::test]
    async fn every_request_is_read_and_answered_with_the_floor_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let mut conn = Conn::connect(addr).await.unwrap();
        for body in [
            graphql_body("{ __typename }", serde_json::json!({})),
            Bytes::from(vec![b'x'; 100_000]),
        ] {
            let (status, answer) = conn.send(hyper::Method::POST, "/graphql", body).await.unwrap();
            assert_eq!(status, hyper::StatusCode::OK);
            assert_eq!(&answer[..], ANSWER);
        }
        server.abort();
    }
}
