//! A keep-alive HTTP/1.1 connection to the server under test, one per load worker.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// One HTTP connection; reconnects if the server closed it.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    /// The connection's I/O, driven by the task that sends each request rather than by a task of
    /// its own: a second task would add a wake-up of another thread to every request, which the
    /// raw side's connections, read and written by the sending task, do not pay.
    connection: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    /// Whether the connection has ended.
    ended: bool,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self {
            addr,
            sender,
            connection: Box::pin(connection),
            ended: false,
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.ended || self.sender.is_closed() {
            *self = Self::connect(self.addr).await?;
        }
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let sender = &mut self.sender;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        // The connection makes progress only while it is polled, here beside the exchange; it
        // ends only when either side closes it, and a later request then reconnects.
        let ended = tokio::select! {
            biased;
            answered = exchange => return answered,
            ended = self.connection.as_mut() => ended,
        };
        self.ended = true;
        match ended {
            Ok(()) => anyhow::bail!("the server closed the connection before answering"),
            Err(error) => Err(error).context("the connection failed before an answer"),
        }
    }

    /// Posts a GraphQL request body and returns its `data`; an `errors` entry is a failure.
    pub async fn graphql(&mut self, body: Bytes) -> anyhow::Result<Value> {
        crate::shape::data(&self.graphql_bytes(body).await?)
    }

    /// Posts a GraphQL request body and returns the response's body, which must come with
    /// status 200; what it holds is for the caller to check.
    pub async fn graphql_bytes(&mut self, body: Bytes) -> anyhow::Result<Bytes> {
        self.ok(Method::POST, "/graphql", body).await
    }

    /// `GET path`, expecting 200; the body.
    pub async fn get_bytes(&mut self, path: &str) -> anyhow::Result<Bytes> {
        self.ok(Method::GET, path, Bytes::new()).await
    }

    async fn ok(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.send(method, path, body).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(bytes)
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
