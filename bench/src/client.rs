//! A keep-alive HTTP/1.1 connection to the server under test, one per load worker.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One HTTP connection; reconnects if the server closed it.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when either side closes the connection; a later request reconnects.
            let _ = connection.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.is_closed() {
            *self = Self::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Posts a GraphQL request body and returns its `data`; an `errors` entry is a failure.
    pub async fn graphql(&mut self, body: Bytes) -> anyhow::Result<Value> {
        let (status, bytes) = self.send(Method::POST, "/graphql", body).await?;
        let mut response: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)))?;
        if let Some(errors) = response.get("errors") {
            anyhow::bail!("GraphQL errors (HTTP {status}): {errors}");
        }
        anyhow::ensure!(status == StatusCode::OK, "HTTP {status}");
        Ok(response["data"].take())
    }

    /// `GET path`, expecting 200 and a JSON body.
    pub async fn get_json(&mut self, path: &str) -> anyhow::Result<Value> {
        let (status, bytes) = self.send(Method::GET, path, Bytes::new()).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// `GET path` as text, expecting 200.
    pub async fn get_text(&mut self, path: &str) -> anyhow::Result<String> {
        let (status, bytes) = self.send(Method::GET, path, Bytes::new()).await?;
        anyhow::ensure!(status == StatusCode::OK, "HTTP {status}");
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A GraphQL request body.
pub fn graphql_body(query: &str, variables: Value) -> Bytes {
    Bytes::from(serde_json::json!({"query": query, "variables": variables}).to_string())
}
