//! Pages in a real browser: headless Chromium, driven over the DevTools protocol, against the
//! real server on a real port. Every request the page and its workers make is recorded, so the
//! tests can prove that nothing leaves the server's origin.
//!
//! Chromium is found at `AUDITGRAPH_TEST_CHROMIUM`, `/usr/bin/chromium` or on `PATH`. Without it
//! these tests print a warning and pass without running, unless `AUDITGRAPH_REQUIRE_BROWSER=1`
//! is set (as CI does), which makes them fail instead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{RunningServer, brief, http_exchange, http_post};

/// The longest any single wait may take: a hang fails, a slow machine does not.
const PATIENCE: Duration = Duration::from_secs(120);

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("AUDITGRAPH_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let candidates = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ];
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(found);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.exists())
    })
}

fn browser_required() -> bool {
    std::env::var("AUDITGRAPH_REQUIRE_BROWSER").is_ok_and(|v| v == "1" || v == "true")
}

/// A headless Chromium of one test, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    endpoint: String,
}

/// The last lines Chromium wrote, for a failure message.
type Log = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

impl Browser {
    /// Starts Chromium, or returns `None` when it is missing and not required.
    fn start() -> Option<Self> {
        let Some(binary) = chromium() else {
            assert!(
                !browser_required(),
                "Chromium is required (AUDITGRAPH_REQUIRE_BROWSER) but not installed: apt-get install chromium"
            );
            eprintln!(
                "Chromium is not installed; skipping this browser test. Set AUDITGRAPH_REQUIRE_BROWSER=1 to make this a failure."
            );
            return None;
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1400,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        let log = Log::default();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(endpoint) = line.strip_prefix("DevTools listening on ") {
                    let _ = sender.send(endpoint.trim().to_string());
                }
                let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
                if lines.len() == 20 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let endpoint = receiver.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            let lines = log.lock().unwrap_or_else(|p| p.into_inner());
            panic!(
                "Chromium did not announce its DevTools endpoint within {PATIENCE:?}; it wrote:\n{}",
                lines.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        });
        Some(Self {
            child,
            _profile: profile,
            endpoint,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request the browser made (or tried to make).
#[derive(Clone)]
struct Seen {
    url: String,
    failure: Option<String>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // data: URLs carry whole fonts; their start says enough.
        let url: String = self.url.chars().take(120).collect();
        write!(f, "{url}")?;
        if let Some(failure) = &self.failure {
            write!(f, " (failed: {failure})")?;
        }
        Ok(())
    }
}

/// A DevTools protocol session on one page, with the requests of the page and its workers.
struct Page {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Every request, in order; keyed by session and request id for their outcome.
    requests: Vec<Seen>,
    request_index: HashMap<(String, String), usize>,
    console: Vec<String>,
}

impl Page {
    async fn open(browser: &Browser) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(browser.endpoint.as_str())
            .await
            .expect("connect to DevTools");
        let mut page = Self {
            socket,
            session: String::new(),
            next_id: 0,
            requests: Vec::new(),
            request_index: HashMap::new(),
            console: Vec::new(),
        };
        let target = page
            .call_on(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = page
            .call_on(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"].as_str().expect("sessionId").to_string();
        for method in ["Network.enable", "Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(method, json!({})).await;
        }
        // Workers start paused until their requests are recorded too (see `record`).
        page.call(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
        )
        .await;
        page
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params).await
    }

    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send to DevTools");
        self.next_id
    }

    /// Sends a command and waits for its answer, recording the events that arrive meanwhile.
    async fn call_on(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within {PATIENCE:?}"))
                .expect("DevTools connection open")
                .expect("DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if value["id"] == json!(id) {
                assert!(value.get("error").is_none(), "{method} failed: {}", brief(&value));
                return value["result"].clone();
            }
            self.record(&value).await;
        }
    }

    /// Keeps what the tests look at: requests, failures, console messages and logs.
    async fn record(&mut self, event: &Value) {
        let params = &event["params"];
        let key = (
            event["sessionId"].as_str().unwrap_or_default().to_string(),
            params["requestId"].as_str().unwrap_or_default().to_string(),
        );
        match event["method"].as_str().unwrap_or_default() {
            "Network.requestWillBeSent" => {
                let url = params["request"]["url"].as_str().unwrap_or_default().to_string();
                self.request_index.insert(key, self.requests.len());
                self.requests.push(Seen { url, failure: None });
            }
            "Network.webSocketCreated" => {
                let url = params["url"].as_str().unwrap_or_default().to_string();
                self.request_index.insert(key, self.requests.len());
                self.requests.push(Seen { url, failure: None });
            }
            "Network.loadingFailed" => {
                if let Some(seen) = self.request_index.get(&key).and_then(|&i| self.requests.get_mut(i)) {
                    let reason = params["blockedReason"]
                        .as_str()
                        .or(params["errorText"].as_str())
                        .unwrap_or("failed");
                    seen.failure = Some(reason.to_string());
                }
            }
            "Runtime.consoleAPICalled" => {
                let text: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map_or_else(|| a["description"].to_string(), str::to_string)
                    })
                    .collect();
                self.console.push(format!(
                    "console.{}: {}",
                    params["type"].as_str().unwrap_or("log"),
                    text.join(" ")
                ));
            }
            "Runtime.exceptionThrown" => {
                self.console.push(format!(
                    "exception: {}",
                    params["exceptionDetails"]["exception"]["description"]
                ));
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                self.console.push(format!(
                    "log.{}: {}",
                    entry["level"].as_str().unwrap_or_default(),
                    entry["text"].as_str().unwrap_or_default()
                ));
            }
            "Target.attachedToTarget" => {
                // A worker: record its requests as well, then let it run.
                if let Some(worker) = params["sessionId"].as_str() {
                    let worker = worker.to_string();
                    self.send(Some(&worker), "Network.enable", json!({})).await;
                    self.send(Some(&worker), "Runtime.runIfWaitingForDebugger", json!({}))
                        .await;
                }
            }
            _ => {}
        }
    }

    /// Evaluates a JavaScript expression in the page; returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {}",
            brief(&result)
        );
        result["result"]["value"].clone()
    }

    /// Waits until the page or a worker has requested a URL ending in `suffix`.
    async fn wait_for_request(&mut self, suffix: &str) {
        let started = Instant::now();
        while !self.requests.iter().any(|r| r.url.ends_with(suffix)) {
            assert!(
                started.elapsed() < PATIENCE,
                "{suffix} was not requested within {PATIENCE:?}: {:?}",
                self.requests
            );
            self.eval("0").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `expression` is truthy; fails with `what` after [`PATIENCE`].
    async fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what} did not happen within {PATIENCE:?}; console: {}",
                brief(&self.console.join("\n"))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// POSTs a GraphQL operation to the running server.
async fn post_graphql(addr: std::net::SocketAddr, query: &str) -> Value {
    let body = json!({"query": query}).to_string();
    let (status, body) = http_exchange(addr, &http_post("/graphql", &body)).await;
    assert!(status.contains(" 200 "), "{status}: {}", brief(&body));
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON: {}", brief(&body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_and_a_subscription_in_a_real_browser_without_leaving_the_servers_origin() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let server = RunningServer::start().await;
    let addr = server.addr;
    let created = post_graphql(
        addr,
        r#"mutation { createAuditEvent(input: {eventType: "browser.check.done", eventCategory: "browser",
            eventAction: "done", eventOutcome: "success", correlationId: "rr-browser", eventData: {}}) { eventId } }"#,
    )
    .await;
    assert!(
        created["data"]["createAuditEvent"]["eventId"].is_string(),
        "{}",
        brief(&created)
    );

    let mut page = Page::open(&browser).await;
    let query = "{ auditEvents(first: 5) { totalCount edges { node { eventType correlationId } } } }";
    let encoded = crate::helpers::url_encode(query);
    let origin = format!("http://{addr}");
    page.call(
        "Page.navigate",
        json!({"url": format!("{origin}/graphiql?query={encoded}")}),
    )
    .await;

    // The editor is up when its run button is there and the schema has been loaded into it.
    page.wait_for(
        "!!document.querySelector('.graphiql-execute-button')",
        "GraphiQL showing its run button",
    )
    .await;
    page.wait_for(
        "document.querySelector('.graphiql-query-editor')?.innerText.replace(/\\u00a0/g, ' ').includes('auditEvents')",
        "the query from the address in the editor",
    )
    .await;
    page.eval("document.querySelector('.graphiql-execute-button').click()")
        .await;
    let result = page
        .wait_for(
            "(() => { const t = document.querySelector('.result-window')?.innerText.replace(/\\u00a0/g, ' ') ?? ''; \
             return t.includes('browser.check.done') ? t : ''; })()",
            "the result of the query in the response pane",
        )
        .await;
    let result = result.as_str().unwrap_or_default();
    assert!(result.contains("\"totalCount\": 1"), "{}", brief(&result));
    assert!(result.contains("rr-browser"), "{}", brief(&result));

    // The editor starts its workers when it first needs them.
    for worker in ["editor.worker.js", "json.worker.js", "graphql.worker.js"] {
        page.wait_for_request(worker).await;
    }

    // A subscription: GraphiQL opens a WebSocket to /graphql and shows each event as it comes.
    let subscription = "subscription { auditEventAdded { event { eventType correlationId } } }";
    page.call(
        "Page.navigate",
        json!({"url": format!("{origin}/graphiql?query={}", crate::helpers::url_encode(subscription))}),
    )
    .await;
    page.wait_for(
        "document.querySelector('.graphiql-query-editor')?.innerText.includes('auditEventAdded') \
         && !!document.querySelector('.graphiql-execute-button')",
        "the subscription from the address in the editor",
    )
    .await;
    page.eval("document.querySelector('.graphiql-execute-button').click()")
        .await;
    let started = Instant::now();
    loop {
        let (_, metrics) = http_exchange(addr, &crate::helpers::http_get("/metrics")).await;
        if metrics.contains("live_subscriptions 1") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "GraphiQL did not subscribe: {}",
            brief(&page.console.join("\n"))
        );
        page.eval("0").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    post_graphql(
        addr,
        r#"mutation { createAuditEvent(input: {eventType: "browser.live.seen", eventCategory: "browser",
            eventAction: "seen", eventOutcome: "success", correlationId: "rr-live", eventData: {}}) { eventId } }"#,
    )
    .await;
    page.wait_for(
        "document.querySelector('.result-window')?.innerText.includes('browser.live.seen')",
        "the subscribed event in the response pane",
    )
    .await;

    // Every request of the page and its workers went to the server itself, and none failed.
    let requests = page.requests.clone();
    assert!(
        requests.iter().any(|r| r.url.ends_with("/graphql")),
        "the query went to /graphql: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.url == format!("ws://{addr}/graphql")),
        "the subscription opened a WebSocket to /graphql: {requests:?}"
    );
    page.assert_own_origin_only(addr);
}

/// What [`seed_explorer`] stored.
struct Seeded {
    fanout_root: String,
    fanout_children: Vec<String>,
    chain: Vec<String>,
    incident: Vec<String>,
    orphan: String,
}

/// Trees for the explorer: a 5,000-event fan-out, a 1,000-deep chain, and a small incident with
/// outcomes, durations, a child stamped before its parent and an event whose parent is missing.
async fn seed_explorer(url: &str) -> Seeded {
    use auditgraph::entity::audit_event::Model;
    use chrono::{Duration as Span, Utc};
    use uuid::Uuid;
    let store =
        auditgraph::store::Store::connect(&auditgraph::config::Config::for_database(url).store_options().unwrap())
            .await
            .unwrap();
    let at = Utc::now() - Span::minutes(30);
    let mut rows: Vec<Model> = Vec::new();
    let node = |ms: i64, parent: Option<&Model>, correlation: &str, kind: &str, outcome: &str, duration: i32| {
        let mut row = crate::helpers::row(Uuid::now_v7(), at + Span::milliseconds(ms), parent, correlation);
        row.event_type = kind.into();
        row.event_outcome = outcome.into();
        row.duration_ms = Some(duration);
        row.event_data = json!({"step": kind, "ms": ms});
        row
    };
    let root = node(0, None, "fanout", "fanout.job.started", "success", 6_000);
    rows.push(root.clone());
    for i in 0..5_000 {
        rows.push(node(1 + i, Some(&root), "fanout", "fanout.task.done", "success", 3));
    }
    let mut parent = node(0, None, "chain", "chain.link.made", "success", 1);
    rows.push(parent.clone());
    for i in 1..1_000 {
        let link = node(i, Some(&parent), "chain", "chain.link.made", "success", 1);
        rows.push(link.clone());
        parent = link;
    }
    let signal = node(0, None, "incident", "gateway.signal.received", "success", 2_000);
    let workflow = node(
        100,
        Some(&signal),
        "incident",
        "remediation.workflow.started",
        "failure",
        1_500,
    );
    let notified = node(-50, Some(&signal), "incident", "notification.sent", "pending", 10);
    let step = node(
        300,
        Some(&workflow),
        "incident",
        "remediation.step.done",
        "success",
        2_500,
    );
    let mut orphan = node(400, None, "incident", "legacy.import.row", "success", 5);
    orphan.parent_event_id = Some(Uuid::now_v7());
    let incident = [signal, workflow, notified, step, orphan.clone()];
    rows.extend(incident.iter().cloned());
    crate::helpers::insert_rows(&store, &rows).await;
    let id = |m: &Model| m.event_id.to_string();
    Seeded {
        fanout_root: id(&root),
        fanout_children: rows[1..5_001].iter().map(id).collect(),
        chain: rows[5_001..6_001].iter().map(id).collect(),
        incident: incident.iter().map(id).collect(),
        orphan: id(&orphan),
    }
}

impl Page {
    /// Goes to `url` and waits until the explorer has rendered it with nothing in flight.
    async fn explore(&mut self, url: &str) {
        self.eval("window.explorerReady = false").await;
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(
            "window.explorerReady === true && window.explorerIdle === true",
            &format!("the explorer showing {url}"),
        )
        .await;
    }

    /// Every request of the page and its workers went to the server at `addr` (or was a `data:`
    /// or `blob:` URL), none failed, and nothing broke the policy or threw.
    fn assert_own_origin_only(&self, addr: std::net::SocketAddr) {
        let origin = format!("http://{addr}/");
        for request in &self.requests {
            let own = request.url.starts_with(&origin)
                || request.url == format!("ws://{addr}/graphql")
                || request.url.starts_with("data:")
                || request.url.starts_with("blob:");
            assert!(own, "a request left the server's origin: {request:?}");
            assert!(request.failure.is_none(), "a request failed: {request:?}");
        }
        let violations: Vec<&String> = self
            .console
            .iter()
            .filter(|line| line.contains("Content Security Policy") || line.starts_with("exception"))
            .collect();
        assert!(violations.is_empty(), "the page broke a rule or threw: {violations:?}");
    }

    /// Waits until the explorer is idle again after an action.
    async fn settle(&mut self) {
        self.wait_for("window.explorerIdle === true", "the explorer idle").await;
    }

    /// Presses a key in the page.
    async fn key(&mut self, key: &str) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": key_code(key)}),
            )
            .await;
        }
        self.settle().await;
    }

    /// How many tree rows are in the page (rendered, not loaded).
    async fn rendered_rows(&mut self) -> u64 {
        self.eval("document.querySelectorAll('[data-testid=tree] [data-testid=row]').length")
            .await
            .as_u64()
            .unwrap()
    }

    /// The selected row's event id and depth.
    async fn selected(&mut self) -> (String, u64) {
        let selected = self
            .eval(
                "(() => { const r = document.querySelector('[data-testid=row][aria-selected=true]'); \
                 return r ? [r.dataset.eventId, Number(r.dataset.depth)] : null; })()",
            )
            .await;
        (
            selected[0].as_str().unwrap_or_default().to_string(),
            selected[1].as_u64().unwrap_or(u64::MAX),
        )
    }

    /// Saves a screenshot under `AUDITGRAPH_SCREENSHOTS` (a directory), when that is set.
    async fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let Some(dir) = std::env::var_os("AUDITGRAPH_SCREENSHOTS") else {
            return;
        };
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }
}

fn key_code(key: &str) -> u32 {
    match key {
        "ArrowUp" => 38,
        "ArrowDown" => 40,
        "ArrowLeft" => 37,
        "ArrowRight" => 39,
        "Enter" => 13,
        "Escape" => 27,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_finds_walks_and_follows_trees_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let server = RunningServer::start().await;
    let addr = server.addr;
    let seeded = seed_explorer(&server.url).await;
    let origin = format!("http://{addr}");
    let mut page = Page::open(&browser).await;
    page.viewport(1280, 800, false).await;

    // A correlation's tree: the fan-out's root and the first part of its 5,000 children, of
    // which only what is visible is in the page.
    page.explore(&format!("{origin}/#/correlation/fanout")).await;
    let root = format!("[data-testid=row][data-event-id='{}']", seeded.fanout_root);
    let count = page
        .eval(&format!(
            "document.querySelector(\"{root} [data-testid=child-count]\")?.textContent.trim()"
        ))
        .await;
    assert_eq!(count, json!("5000"), "the root shows its child count");
    // Rows say where they stand among all their siblings, loaded or not (only some are rendered).
    let first_child = format!("[data-testid=row][data-event-id='{}']", seeded.fanout_children[0]);
    assert_eq!(
        page.eval(&format!(
            "[document.querySelector(\"{first_child}\").getAttribute('aria-posinset'), \
             document.querySelector(\"{first_child}\").getAttribute('aria-setsize')]"
        ))
        .await,
        json!(["1", "5000"])
    );
    assert!(page.rendered_rows().await <= 80, "only visible rows are rendered");
    // Collapsed, the tree is its root alone; expanded again, its children are back.
    let toggle = format!("document.querySelector(\"{root} [data-testid=toggle]\").click()");
    page.eval(&toggle).await;
    page.settle().await;
    assert_eq!(
        page.eval(&format!(
            "document.querySelector(\"{root}\").getAttribute('aria-expanded')"
        ))
        .await,
        json!("false")
    );
    assert_eq!(page.rendered_rows().await, 1);
    page.eval(&toggle).await;
    page.settle().await;
    assert!(page.rendered_rows().await > 10, "expanded again");
    // The rest of the fan-out comes page by page, from the row at the end of the loaded part.
    for _ in 0..2 {
        page.eval(
            "(() => { const t = document.querySelector('[data-testid=tree]'); t.scrollTop = t.scrollHeight; })()",
        )
        .await;
        page.wait_for(
            "!!document.querySelector('[data-testid=more] button')",
            "a load-more row at the end",
        )
        .await;
        page.eval("document.querySelector('[data-testid=more] button').click()")
            .await;
        page.settle().await;
    }
    page.eval("(() => { const t = document.querySelector('[data-testid=tree]'); t.scrollTop = t.scrollHeight; })()")
        .await;
    page.settle().await;
    let last = page
        .wait_for(
            "(() => { const rows = [...document.querySelectorAll('[data-testid=tree] [data-testid=row]')]; \
             return rows.length ? rows[rows.length - 1].dataset.eventId : ''; })()",
            "rows at the end of the loaded part",
        )
        .await;
    let position = seeded
        .fanout_children
        .iter()
        .position(|id| json!(id) == last)
        .expect("the last rendered row is a child of the fan-out");
    assert!(
        position >= 1_000,
        "two more pages were loaded (the last row is child {position})"
    );
    assert!(page.rendered_rows().await <= 80, "still only the visible rows");

    // Details of a clicked row, with a link to its parent.
    // A row in the middle of the view, found and clicked in one step (rows come and go as the
    // view renders).
    let clicked = page
        .eval(
            "(() => { const rows = [...document.querySelectorAll('[data-testid=tree] [data-testid=row]')]; \
             const row = rows[Math.floor(rows.length / 2)]; row.click(); return row.dataset.eventId; })()",
        )
        .await;
    let position = seeded
        .fanout_children
        .iter()
        .position(|id| json!(id) == clicked)
        .expect("the clicked row is a child of the fan-out");
    let child = &seeded.fanout_children[position];
    page.settle().await;
    page.wait_for(
        &format!(
            "document.querySelector('[data-testid=detail] [data-field=eventId]')?.textContent.includes('{child}')"
        ),
        "the clicked event's details",
    )
    .await;
    let parent_link = page
        .eval("document.querySelector('[data-testid=link-parent]')?.getAttribute('href')")
        .await;
    assert!(
        parent_link.as_str().unwrap_or_default().ends_with(&seeded.fanout_root),
        "{parent_link}"
    );
    let data = page
        .eval("document.querySelector('[data-testid=event-data]')?.textContent")
        .await;
    assert!(data.as_str().unwrap_or_default().contains("fanout.task.done"), "{data}");
    // The keyboard moves the selection.
    page.key("ArrowUp").await;
    assert_eq!(page.selected().await.0, seeded.fanout_children[position - 1]);

    // A deep link to the end of the 1,000-deep chain reveals and selects it.
    let leaf = seeded.chain.last().unwrap();
    page.explore(&format!("{origin}/#/event/{leaf}")).await;
    assert_eq!(page.selected().await, (leaf.clone(), 999));
    page.wait_for(
        &format!("document.querySelector('[data-testid=detail] [data-field=eventId]')?.textContent.includes('{leaf}')"),
        "the deep-linked event's details",
    )
    .await;
    assert!(
        page.rendered_rows().await <= 80,
        "a deep chain renders only what is visible"
    );
    page.key("ArrowLeft").await;
    assert_eq!(
        page.selected().await,
        (seeded.chain[998].clone(), 998),
        "left goes to the parent"
    );

    // The incident: outcomes, the missing parent, clock skew, the critical path and live events.
    page.explore(&format!("{origin}/#/correlation/incident")).await;
    let orphan = format!("[data-testid=row][data-event-id='{}']", seeded.orphan);
    assert_eq!(
        page.eval(&format!(
            "!!document.querySelector(\"{orphan} [data-testid=missing-parent]\")"
        ))
        .await,
        json!(true),
        "an event whose parent is not stored is marked"
    );
    let skew = page
        .eval("document.querySelector('[data-testid=skew]')?.title ?? ''")
        .await;
    assert!(skew.as_str().unwrap().contains("before its parent"), "{skew}");
    let critical = page
        .eval("[...document.querySelectorAll('[data-testid=row].critical')].map(r => r.dataset.eventId)")
        .await;
    let on_path = [&seeded.incident[0], &seeded.incident[1], &seeded.incident[3]];
    for id in on_path {
        assert!(
            critical.as_array().unwrap().contains(&json!(id)),
            "{id} on the critical path: {critical}"
        );
    }
    assert!(!critical.as_array().unwrap().contains(&json!(seeded.incident[2])));
    assert_eq!(
        page.eval("document.querySelectorAll('[data-testid=tree] [data-testid=bar]').length")
            .await,
        json!(page.rendered_rows().await),
        "a timeline bar per row"
    );
    page.wait_for(
        "document.querySelector('[data-testid=live]')?.textContent.trim() === 'live'",
        "the page subscribed",
    )
    .await;
    page.screenshot("explorer").await;
    let added = post_graphql(
        addr,
        &format!(
            r#"mutation {{ createAuditEvent(input: {{eventType: "remediation.step.retried", eventCategory: "remediation",
                eventAction: "retried", eventOutcome: "success", correlationId: "incident", parentEventId: "{}",
                eventData: {{}}}}) {{ eventId }} }}"#,
            seeded.incident[1]
        ),
    )
    .await;
    let added = added["data"]["createAuditEvent"]["eventId"]
        .as_str()
        .unwrap()
        .to_string();
    page.wait_for(
        &format!("!!document.querySelector(\"[data-testid=row][data-event-id='{added}'][data-depth='2']\")"),
        "the new event in place below its parent",
    )
    .await;

    // Find by event id, from the search box.
    let step = &seeded.incident[3];
    page.eval(&format!(
        "window.explorerReady = false; const f = document.querySelector('form[data-testid=search]'); \
         f.elements.q.value = '{step}'; f.requestSubmit()"
    ))
    .await;
    page.wait_for(
        "window.explorerReady === true && window.explorerIdle === true",
        "the event found by its id",
    )
    .await;
    assert_eq!(page.selected().await, (step.clone(), 2));

    // Search by the filters: the failure, and from the result to its tree.
    page.explore(&format!("{origin}/#/search?eventOutcome=failure")).await;
    let results = page
        .eval("[...document.querySelectorAll('[data-testid=result]')].map(r => r.dataset.eventId)")
        .await;
    assert_eq!(results, json!([seeded.incident[1]]));
    page.eval("window.explorerReady = false; document.querySelector('[data-testid=result]').click()")
        .await;
    page.wait_for(
        "window.explorerReady === true && window.explorerIdle === true",
        "the result's tree",
    )
    .await;
    assert_eq!(page.selected().await.0, seeded.incident[1]);

    // Dark, and at a phone's width nothing overflows sideways.
    page.eval("document.querySelector('[data-testid=theme]').click()").await;
    let theme = page.eval("document.documentElement.dataset.theme").await;
    assert!(theme == json!("dark") || theme == json!("light"), "{theme}");
    if theme == json!("light") {
        page.eval("document.querySelector('[data-testid=theme]').click()").await;
    }
    page.screenshot("explorer-dark").await;
    page.viewport(390, 844, true).await;
    page.explore(&format!("{origin}/#/correlation/incident")).await;
    let overflow = page
        .eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways at a phone's width: {overflow}"
    );
    assert!(page.rendered_rows().await >= 5, "the tree shows at a phone's width");
    page.screenshot("explorer-phone").await;

    // GraphiQL, for the README.
    page.viewport(1280, 800, false).await;
    page.call("Page.navigate", json!({"url": format!("{origin}/graphiql")}))
        .await;
    page.wait_for("!!document.querySelector('.graphiql-execute-button')", "GraphiQL")
        .await;
    page.screenshot("graphiql").await;

    // Everything came from the server itself, and nothing broke the policy or threw.
    page.assert_own_origin_only(addr);
}
