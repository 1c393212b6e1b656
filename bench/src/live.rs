//! The live workload (`bench serve --only live`): WebSocket subscribers of `auditEventAdded`
//! (`graphql-transport-ws`) on the release server while single events are written through
//! `createAuditEvent`, as in the serving writes.
//!
//! - Latency: 100 subscribers, then writes paced at 1,000 events/s for 10 s by writers sharing one
//!   schedule. For every event, the instant its write was acknowledged (the writer read the
//!   response) and, at every subscriber, the instant its `next` message was read; latency =
//!   delivery − acknowledgement. Each subscriber must receive every written event exactly once,
//!   in log order, and nothing else; otherwise the benchmark fails.
//! - Cost: the closed-loop single-event write throughput of the serving writes (concurrency 4 and
//!   16) with no subscriber, then with 100 subscribers connected and reading, in the same run.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use auditgraph::domain::EventKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use crate::client::Conn;
use crate::cpu::Cpu;
use crate::data::Rng;
use crate::load::{self, Op, Sample};
use crate::ops::{GraphqlCreate, first_event_number};
use crate::report;

/// Options of the live workload.
#[derive(Clone, Debug, clap::Args)]
pub struct LiveOptions {
    /// Subscribers of the live workload, one WebSocket connection and subscription each.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_subscribers: u64,
    /// Events per second the live workload writes while it measures delivery latency; several
    /// (comma-separated) measure it at each.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000.0])]
    pub live_rate: Vec<f64>,
    /// Seconds of paced writing in each run of the live workload.
    #[arg(long, default_value_t = 10.0)]
    pub live_seconds: f64,
}

/// What the live workload needs from the serving benchmark.
pub struct Setup<'a> {
    /// The server.
    pub addr: SocketAddr,
    /// The server's process, for its CPU time.
    pub server_pid: Option<u32>,
    /// Stored events the writes name as parents.
    pub parents: Arc<Vec<EventKey>>,
    /// Runs of each figure.
    pub runs: usize,
    /// Warm-up of each throughput measurement.
    pub warm_up: Duration,
    /// Length of each throughput measurement.
    pub duration: Duration,
    /// The options.
    pub options: &'a LiveOptions,
}

const PROTOCOL: &str = "graphql-transport-ws";
const SUBSCRIPTION: &str = "subscription { auditEventAdded { cursor logIndex event { eventId } } }";
/// Writers sharing the paced schedule, each on its own keep-alive connection: the server's pool
/// size and the highest concurrency of the serving writes, enough for 1,000 events/s while a write
/// takes less than 16 ms. More only lengthen the queue for the pool when the server cannot keep
/// up, where the sequencer and the live feed wait too.
const WRITERS: usize = 16;
/// Concurrencies of the throughput comparison (those of the serving writes beyond 1).
const CONCURRENCIES: [usize; 2] = [4, 16];
/// How long deliveries may trail the last acknowledged write before the missing ones count as
/// missing.
const PATIENCE: Duration = Duration::from_secs(30);
/// The worker number of the writes that position the subscribers (part of their correlation id).
const PROBE_WORKER: usize = 9_999;

type Socket = WebSocketStream<TcpStream>;

/// One `next` message as read by a subscriber.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    at: Instant,
    index: u64,
    id: Uuid,
}

/// What a subscriber has read: deliveries, and any other message (an error ends a subscription).
#[derive(Debug, Default)]
struct Received {
    deliveries: Vec<Delivery>,
    other: Vec<String>,
}

/// The log index and event id of a `next` message of `auditEventAdded`; `None` for any other
/// message. Read without parsing the whole JSON, to take as little of the shared CPUs as possible.
fn next_of(text: &str) -> Option<(u64, Uuid)> {
    if !text.contains(r#""type":"next""#) {
        return None;
    }
    let after = text.split_once(r#""logIndex":"#)?.1;
    let digits = after
        .find(|c: char| !c.is_ascii_digit())
        .map_or(after, |end| &after[..end]);
    let id = text.split_once(r#""eventId":""#)?.1.get(..36)?;
    Some((digits.parse().ok()?, Uuid::parse_str(id).ok()?))
}

async fn send(ws: &mut Socket, message: Value) -> anyhow::Result<()> {
    ws.send(Message::text(message.to_string())).await?;
    Ok(())
}

/// Reads the next protocol message, which must be of type `kind`.
async fn expect(ws: &mut Socket, kind: &str) -> anyhow::Result<()> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .with_context(|| format!("no {kind} within 10 s"))?
            .with_context(|| format!("the server closed the connection before {kind}"))??;
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text)?;
                anyhow::ensure!(value["type"] == kind, "{text} where {kind} was expected");
                return Ok(());
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => anyhow::bail!("{other:?} where {kind} was expected"),
        }
    }
}

/// One WebSocket connection with one running `auditEventAdded` subscription, read by a task of
/// its own that records every message as it arrives.
struct Subscriber {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    received: Arc<Mutex<Received>>,
}

/// Counters shared by the subscribers of one measurement.
#[derive(Default)]
struct Counts {
    /// Deliveries read by all subscribers.
    delivered: AtomicU64,
    /// Messages other than deliveries read after subscribing (an ended subscription).
    other: AtomicU64,
}

impl Subscriber {
    async fn open(addr: SocketAddr, counts: Arc<Counts>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut request = format!("ws://{addr}/graphql").into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(PROTOCOL));
        let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .context("the WebSocket handshake")?;
        anyhow::ensure!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .is_some_and(|p| p == PROTOCOL),
            "the server did not agree to {PROTOCOL}"
        );
        send(&mut ws, json!({"type": "connection_init"})).await?;
        expect(&mut ws, "connection_ack").await?;
        send(
            &mut ws,
            json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}),
        )
        .await?;
        // The server handles a connection's messages in order, so its pong says it has taken
        // the subscribe (the subscription itself starts in a task of its own: see `position`).
        send(&mut ws, json!({"type": "ping"})).await?;
        expect(&mut ws, "pong").await?;
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(read(ws, received.clone(), counts, stopped));
        Ok(Self { stop, task, received })
    }
}

/// Records every message of `ws` with the instant it was read, until told to stop; then
/// completes the subscription and closes the connection.
async fn read(mut ws: Socket, received: Arc<Mutex<Received>>, counts: Arc<Counts>, mut stop: oneshot::Receiver<()>) {
    let other = |text: String| {
        counts.other.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut received) = received.lock() {
            received.other.push(text);
        }
    };
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut stop => break,
            message = ws.next() => message,
        };
        let at = Instant::now();
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Some((index, id)) = next_of(&text) {
                    if let Ok(mut received) = received.lock() {
                        received.deliveries.push(Delivery { at, index, id });
                    }
                    counts.delivered.fetch_add(1, Ordering::AcqRel);
                } else if text.contains(r#""type":"ping""#) {
                    let _ = send(&mut ws, json!({"type": "pong"})).await;
                } else {
                    other(text.to_string());
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_))) => other("a binary message".into()),
            Some(Ok(Message::Close(frame))) => {
                other(format!("the server closed the connection: {frame:?}"));
                return;
            }
            Some(Err(error)) => {
                other(format!("the connection failed: {error}"));
                return;
            }
            None => {
                other("the connection ended".into());
                return;
            }
        }
    }
    let _ = send(&mut ws, json!({"id": "1", "type": "complete"})).await;
    let _ = ws.close(None).await;
    // Reads to the server's close frame, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
}

/// The subscribers of one measurement.
struct Subscribers {
    each: Vec<Subscriber>,
    counts: Arc<Counts>,
}

impl Subscribers {
    /// Opens `n` subscribers and waits until each subscription follows the log (see `position`).
    async fn open(addr: SocketAddr, n: u64, probe: &mut GraphqlCreate) -> anyhow::Result<Self> {
        let counts = Arc::new(Counts::default());
        let mut each = Vec::new();
        for _ in 0..n {
            each.push(Subscriber::open(addr, counts.clone()).await?);
        }
        let subscribers = Self { each, counts };
        subscribers.position(probe).await?;
        Ok(subscribers)
    }

    /// A subscription starts following the log in a task of its own, from the log's size when
    /// that task first reads it, so an event sequenced just after the pong could still precede
    /// it. Writes probe events until every subscriber has received the same one; nothing is in
    /// flight then, and the probes' deliveries are forgotten.
    async fn position(&self, probe: &mut GraphqlCreate) -> anyhow::Result<()> {
        for _ in 0..20 {
            let id: Uuid = probe.write().await?.first().context("no probe id")?.parse()?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(2) {
                let got = |s: &Subscriber| {
                    s.received
                        .lock()
                        .is_ok_and(|r| r.deliveries.last().is_some_and(|d| d.id == id))
                };
                if self.each.iter().all(got) {
                    anyhow::ensure!(
                        self.counts.other.load(Ordering::Acquire) == 0,
                        "a subscription ended while starting: {:?}",
                        self.each
                            .iter()
                            .find_map(|s| s.received.lock().ok().and_then(|r| r.other.first().cloned()))
                    );
                    for subscriber in &self.each {
                        if let Ok(mut received) = subscriber.received.lock() {
                            received.deliveries.clear();
                        }
                    }
                    self.counts.delivered.store(0, Ordering::Release);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let first = self.each.first().and_then(|s| {
            s.received
                .lock()
                .ok()
                .map(|r| format!("{} deliveries, other messages {:?}", r.deliveries.len(), r.other))
        });
        anyhow::bail!(
            "the subscribers did not all receive a probe event within 20 attempts; the first subscriber read {}",
            first.unwrap_or_default()
        )
    }

    /// Waits until the subscribers have read `total` deliveries between them; returns how long
    /// that took, or `None` after `PATIENCE` or when a subscription ended.
    async fn wait_for(&self, total: u64) -> Option<Duration> {
        let started = Instant::now();
        loop {
            if self.counts.delivered.load(Ordering::Acquire) >= total {
                return Some(started.elapsed());
            }
            if started.elapsed() > PATIENCE || self.counts.other.load(Ordering::Acquire) > 0 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Completes each subscription, closes its connection, and returns what each read.
    async fn close(self) -> anyhow::Result<Vec<Received>> {
        let mut all = Vec::with_capacity(self.each.len());
        for subscriber in self.each {
            let _ = subscriber.stop.send(());
            subscriber.task.await?;
            let received = std::mem::take(&mut *subscriber.received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
            all.push(received);
        }
        Ok(all)
    }
}

/// What is wrong with what one subscriber read, given the events it was owed (`expected`, when
/// known by id) or their number: deliveries missing, repeated, out of log order, unexpected, or
/// other messages.
fn problems(received: &Received, expected: Option<&HashMap<Uuid, Instant>>, owed: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = HashSet::with_capacity(received.deliveries.len());
    let (mut repeated, mut unexpected, mut disorder) = (0u64, 0u64, 0u64);
    for (i, delivery) in received.deliveries.iter().enumerate() {
        if !seen.insert(delivery.id) {
            repeated += 1;
        }
        if expected.is_some_and(|e| !e.contains_key(&delivery.id)) {
            unexpected += 1;
        }
        // Only this benchmark writes meanwhile, so the log indexes follow one another.
        if i > 0 && delivery.index != received.deliveries[i - 1].index + 1 {
            disorder += 1;
        }
    }
    let distinct = seen.len() as u64 - unexpected.min(seen.len() as u64);
    if distinct < owed {
        problems.push(format!("{} of {owed} events missing", owed - distinct));
    }
    if repeated > 0 {
        problems.push(format!("{repeated} delivered twice"));
    }
    if unexpected > 0 {
        problems.push(format!("{unexpected} events not written by the benchmark"));
    }
    if disorder > 0 {
        problems.push(format!("{disorder} log indexes not following the one before"));
    }
    if let Some(first) = received.other.first() {
        problems.push(format!("{} other messages, first: {first}", received.other.len()));
    }
    problems
}

/// Problems of all subscribers, summed up: how many subscribers had problems and the first one.
fn summary(all: &[Received], expected: Option<&HashMap<Uuid, Instant>>, owed: u64) -> Option<String> {
    let failed: Vec<(usize, Vec<String>)> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (i, problems(r, expected, owed)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let (first, problems) = failed.first()?;
    Some(format!(
        "{} of {} subscribers did not receive every event exactly once in log order; subscriber {first}: {}",
        failed.len(),
        all.len(),
        problems.join("; ")
    ))
}

/// The nearest-rank percentile `p` (0–1) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// CPU milliseconds per written event, by process.
#[derive(Clone, Copy, Debug, Default)]
struct PerEvent {
    server: f64,
    postgres: f64,
    bench: f64,
}

impl PerEvent {
    fn of(used: &Cpu, events: u64) -> Self {
        let per = |seconds: f64| seconds * 1_000.0 / (events.max(1) as f64);
        Self {
            server: per(used.server),
            postgres: per(used.postgres),
            bench: per(used.bench),
        }
    }
}

/// One acknowledged write of the paced schedule.
struct Acked {
    id: Uuid,
    sent: Instant,
    acked: Instant,
}

/// The figures of one latency run.
struct LatencyRun {
    p50: f64,
    p99: f64,
    max: f64,
    rate: f64,
    write_p50: f64,
    write_p99: f64,
    deliveries: u64,
    early: u64,
    failures: u64,
    first_failure: Option<String>,
    /// Share of the cores other processes used meanwhile.
    others: f64,
}

/// Writes `rate` events/s for `seconds` with `WRITERS` writers sharing one schedule: event k is
/// due `k / rate` s after the start and goes out as soon as a writer is free from then on; none
/// goes out after `seconds`, so a server that cannot keep up writes fewer. Returns the
/// acknowledged writes, the failures, and the time from the start to the last acknowledgement.
async fn paced(
    setup: &Setup<'_>,
    run: usize,
    rate: f64,
) -> anyhow::Result<(Vec<Acked>, u64, Option<String>, Duration)> {
    let seconds = setup.options.live_seconds;
    let total = (rate * seconds).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let first = first_event_number();
    let mut writers = Vec::with_capacity(WRITERS);
    for worker in 0..WRITERS {
        writers.push(GraphqlCreate {
            conn: Conn::connect(setup.addr).await?,
            batch: 1,
            parents: setup.parents.clone(),
            rng: Rng::new((run as u64) << 32 ^ 0x11fe ^ worker as u64),
            worker,
            n: first,
        });
    }
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let (mut failures, mut first_failure) = (0u64, None);
                loop {
                    let k = next.fetch_add(1, Ordering::AcqRel);
                    if k >= total || Instant::now() >= end {
                        break;
                    }
                    tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / rate)).into()).await;
                    let sent = Instant::now();
                    match writer.write().await {
                        Ok(ids) => {
                            let at = Instant::now();
                            for id in ids {
                                match id.parse() {
                                    Ok(id) => acked.push(Acked { id, sent, acked: at }),
                                    Err(error) => {
                                        failures += 1;
                                        first_failure.get_or_insert_with(|| format!("event id {id}: {error}"));
                                    }
                                }
                            }
                        }
                        Err(error) => {
                            failures += 1;
                            first_failure.get_or_insert_with(|| format!("{error:#}"));
                        }
                    }
                }
                (acked, failures, first_failure)
            })
        })
        .collect();
    let (mut all, mut failures, mut first_failure) = (Vec::new(), 0, None);
    for task in tasks {
        let (acked, failed, first) = task.await?;
        all.extend(acked);
        failures += failed;
        if first_failure.is_none() {
            first_failure = first;
        }
    }
    let last = all.iter().map(|a| a.acked).max().unwrap_or(start);
    Ok((all, failures, first_failure, last.saturating_duration_since(start)))
}

/// One latency run: subscribers, paced writes, every delivery matched to its write.
async fn latency(setup: &Setup<'_>, run: usize, rate: f64, probe: &mut GraphqlCreate) -> anyhow::Result<LatencyRun> {
    let n = setup.options.live_subscribers;
    let subscribers = Subscribers::open(setup.addr, n, probe).await?;
    let before = Cpu::now(setup.server_pid.as_slice());
    let (acked, failures, first_failure, elapsed) = paced(setup, run, rate).await?;
    let owed = acked.len() as u64;
    let caught_up = subscribers.wait_for(n * owed).await;
    let others = Cpu::since(before, setup.server_pid.as_slice()).others();
    let all = subscribers.close().await?;
    let acks: HashMap<Uuid, Instant> = acked.iter().map(|a| (a.id, a.acked)).collect();
    anyhow::ensure!(acks.len() == acked.len(), "the server returned an event id twice");
    if let Some(problem) = summary(&all, Some(&acks), owed) {
        anyhow::bail!(
            "live run {run}: {problem}{}",
            if caught_up.is_none() {
                format!(" (waited {} s after the last write)", PATIENCE.as_secs())
            } else {
                String::new()
            }
        );
    }
    let mut latencies = Vec::with_capacity((n * owed) as usize);
    let mut early = 0;
    for delivery in all.iter().flat_map(|r| &r.deliveries) {
        let ack = acks[&delivery.id];
        if delivery.at < ack {
            early += 1;
        }
        latencies.push(ms(delivery.at.saturating_duration_since(ack)));
    }
    latencies.sort_by(f64::total_cmp);
    let mut writes: Vec<f64> = acked.iter().map(|a| ms(a.acked - a.sent)).collect();
    writes.sort_by(f64::total_cmp);
    let figures = LatencyRun {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(0.0),
        rate: owed as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        write_p50: percentile(&writes, 0.5),
        write_p99: percentile(&writes, 0.99),
        deliveries: latencies.len() as u64,
        early,
        failures,
        first_failure,
        others,
    };
    eprintln!(
        "  run {run}: delivery latency with {n} subscribers at {:.0} events/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} \
         ms; achieved {:.0} events/s; writes p50 {:.2} ms, p99 {:.2} ms; {} deliveries, {} read before the \
         acknowledgement; {} failed writes; other processes used {:.0}% of the cores",
        rate,
        figures.p50,
        figures.p99,
        figures.max,
        figures.rate,
        figures.write_p50,
        figures.write_p99,
        figures.deliveries,
        figures.early,
        figures.failures,
        figures.others * 100.0
    );
    Ok(figures)
}

/// A single-event writer of the throughput comparison that counts the events it stored.
struct Counted {
    create: GraphqlCreate,
    stored: u64,
}

impl Op for Counted {
    async fn once(&mut self) -> anyhow::Result<u64> {
        let stored = self.create.write().await?.len() as u64;
        self.stored += stored;
        Ok(stored)
    }
}

/// The throughput comparison at one concurrency.
struct Cost {
    concurrency: usize,
    without: Vec<f64>,
    with: Vec<f64>,
    failures: u64,
    first_failure: Option<String>,
    /// Seconds the subscribers took to read the last deliveries after the writes stopped.
    catch_up: Vec<f64>,
    /// What went wrong with the deliveries, by run.
    problems: Vec<String>,
    /// CPU per event without subscribers, by run.
    cpu_without: Vec<PerEvent>,
    /// CPU per event with them (until they caught up), by run.
    cpu_with: Vec<PerEvent>,
    /// Share of the cores other processes used meanwhile, by run.
    others: Vec<f64>,
}

impl Cost {
    fn ratio(&self) -> f64 {
        report::stats(&self.with).0 / report::stats(&self.without).0.max(f64::EPSILON)
    }
}

/// Closed-loop single-event writes at `concurrency` for the warm-up and the measurement; the
/// sample and the events stored in all.
async fn writes(setup: &Setup<'_>, concurrency: usize, seed: u64) -> anyhow::Result<(Sample, u64)> {
    let first = first_event_number();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        workers.push(Counted {
            create: GraphqlCreate {
                conn: Conn::connect(setup.addr).await?,
                batch: 1,
                parents: setup.parents.clone(),
                rng: Rng::new(seed ^ worker as u64),
                worker,
                n: first,
            },
            stored: 0,
        });
    }
    let (workers, sample) = load::measure(workers, setup.warm_up, setup.duration).await?;
    Ok((sample, workers.iter().map(|w| w.stored).sum()))
}

impl Cost {
    /// One run: without subscribers, then with them connected and reading.
    async fn run(&mut self, setup: &Setup<'_>, run: usize, probe: &mut GraphqlCreate) -> anyhow::Result<()> {
        let seed = (run as u64) << 32 ^ 0x11fe_0000 ^ (self.concurrency as u64) << 8;
        let started = Cpu::now(setup.server_pid.as_slice());
        let (without, stored_without) = writes(setup, self.concurrency, seed).await?;
        let used_without = Cpu::since(started, setup.server_pid.as_slice());
        let n = setup.options.live_subscribers;
        let subscribers = Subscribers::open(setup.addr, n, probe).await?;
        let before = Cpu::now(setup.server_pid.as_slice());
        let (with, stored) = writes(setup, self.concurrency, !seed).await?;
        let caught_up = subscribers.wait_for(n * stored).await;
        let used_with = Cpu::since(before, setup.server_pid.as_slice());
        let all = subscribers.close().await?;
        self.cpu_without.push(PerEvent::of(&used_without, stored_without));
        self.cpu_with.push(PerEvent::of(&used_with, stored));
        let others = used_without.others().max(used_with.others());
        self.others.push(others);
        let mut line = format!(
            "  run {run}: `createAuditEvent`, concurrency {}: {:.0} events/s without subscribers, {:.0} with {n}",
            self.concurrency,
            without.requests_per_second(),
            with.requests_per_second()
        );
        match caught_up {
            Some(after) => {
                self.catch_up.push(after.as_secs_f64());
                let _ = write!(line, "; caught up {:.2} s after the last write", after.as_secs_f64());
            }
            None => line.push_str("; the subscribers did not catch up"),
        }
        if let Some(problem) = summary(&all, None, stored) {
            let _ = write!(line, "; {problem}");
            self.problems.push(format!("run {run}: {problem}"));
        }
        for sample in [&without, &with] {
            self.failures += sample.failures;
            if self.first_failure.is_none() {
                self.first_failure.clone_from(&sample.first_failure);
            }
        }
        if self.failures > 0 {
            let _ = write!(line, " ({} failures)", self.failures);
        }
        let (a, b) = (
            self.cpu_without.last().copied().unwrap_or_default(),
            self.cpu_with.last().copied().unwrap_or_default(),
        );
        let _ = write!(
            line,
            "; CPU ms per event without → with: server {:.2} → {:.2}, PostgreSQL {:.2} → {:.2}, benchmark {:.2} → {:.2}; \
             other processes used {:.0}% of the cores",
            a.server,
            b.server,
            a.postgres,
            b.postgres,
            a.bench,
            b.bench,
            others * 100.0
        );
        eprintln!("{line}");
        self.without.push(without.requests_per_second());
        self.with.push(with.requests_per_second());
        Ok(())
    }
}

/// The live workload's figures.
pub struct LiveFigures {
    /// By offered rate, the runs.
    latency: Vec<(f64, Vec<LatencyRun>)>,
    costs: Vec<Cost>,
}

/// Runs the live workload `setup.runs` times: in each run the throughput comparison first (it
/// also warms the server up), then the latency measurement at each rate.
pub async fn run(setup: &Setup<'_>) -> anyhow::Result<LiveFigures> {
    let rates = &setup.options.live_rate;
    if let Some(rate) = rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        anyhow::bail!("--live-rate {rate}: rates are events per second, above 0");
    }
    let mut probe = GraphqlCreate {
        conn: Conn::connect(setup.addr).await?,
        batch: 1,
        parents: setup.parents.clone(),
        rng: Rng::new(0x11fe),
        worker: PROBE_WORKER,
        n: first_event_number(),
    };
    let mut costs: Vec<Cost> = CONCURRENCIES
        .iter()
        .map(|&concurrency| Cost {
            concurrency,
            without: Vec::new(),
            with: Vec::new(),
            failures: 0,
            first_failure: None,
            catch_up: Vec::new(),
            problems: Vec::new(),
            cpu_without: Vec::new(),
            cpu_with: Vec::new(),
            others: Vec::new(),
        })
        .collect();
    let mut latency: Vec<(f64, Vec<LatencyRun>)> = rates.iter().map(|&rate| (rate, Vec::new())).collect();
    for run in 1..=setup.runs {
        for cost in &mut costs {
            cost.run(setup, run, &mut probe).await?;
        }
        for (rate, runs) in &mut latency {
            runs.push(self::latency(setup, run, *rate, &mut probe).await?);
        }
    }
    Ok(LiveFigures { latency, costs })
}

/// The section for `BENCHMARKS.md`.
pub fn section(header: &str, setup: &Setup<'_>, figures: &LiveFigures, reproduce: &str) -> String {
    let options = setup.options;
    let n = options.live_subscribers;
    let runs = setup.runs;
    let mut out = format!("## Live delivery: WebSocket subscribers\n\n{header}");
    let _ = writeln!(
        out,
        "- server: release build, started by the benchmark with `RUST_LOG=warn` and default settings \
         (`AUDITGRAPH_SEQUENCE_INTERVAL_MS=200`, and a sequencer round right after each write while the process \
         has subscribers; `AUDITGRAPH_LIVE_*` defaults); the subscribers and writers run in the benchmark's \
         process on the same 2 cores as the server and PostgreSQL\n\
         - subscribers: {n} WebSocket connections (`graphql-transport-ws`), each running one \
         `{SUBSCRIPTION}` and reading every message as it arrives; a subscriber counts once the server has \
         answered its `connection_init`, taken its `subscribe` (a ping answered), and delivered a first probe event\n\
         - writes: `createAuditEvent` of one event naming a stored parent, as in the serving writes, each writer \
         on its own keep-alive HTTP connection\n\
         - each figure: {runs} runs; median (min–max) of the runs\n"
    );
    let rates: Vec<String> = figures.latency.iter().map(|(rate, _)| format!("{rate}")).collect();
    let seconds = options.live_seconds;
    let _ = writeln!(
        out,
        "### Delivery latency: {n} subscribers, {} events/s\n\n\
         Writes paced at the offered rate for {seconds} s by {WRITERS} writers sharing one schedule (event k is due \
         k ÷ rate s after the start and goes out as soon as a writer is free from then on, so a server that falls \
         behind is not given a rest; nothing is sent after the {seconds} s, so a server that cannot keep up writes \
         fewer events, and the rate achieved is the events acknowledged over the time to the last \
         acknowledgement). Latency is the instant a subscriber read an event's `next` message minus the instant \
         the writer read the response to its write, over every delivery of the run (subscribers × events).\n",
        rates.join(" and ")
    );
    let _ = writeln!(
        out,
        "| offered | {} |\n|---|{}",
        rates
            .iter()
            .map(|r| format!("{r} events/s"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(rates.len())
    );
    let mut row = |label: &str, f: fn(&LatencyRun) -> f64, decimals: usize, unit: &str| {
        let cells: Vec<String> = figures
            .latency
            .iter()
            .map(|(_, runs)| {
                let values: Vec<f64> = runs.iter().map(f).collect();
                format!("{}{unit}", report::spread_with(&values, decimals))
            })
            .collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row("delivery latency p50", |r| r.p50, 2, " ms");
    row("delivery latency p99", |r| r.p99, 2, " ms");
    row("delivery latency max", |r| r.max, 2, " ms");
    row("write rate achieved", |r| r.rate, 0, " events/s");
    row("write latency p50 (request → response)", |r| r.write_p50, 2, " ms");
    row("write latency p99 (request → response)", |r| r.write_p99, 2, " ms");
    row("deliveries checked per run", |r| r.deliveries as f64, 0, "");
    row(
        "deliveries read before the write's response (counted as 0 ms)",
        |r| r.early as f64,
        0,
        "",
    );
    row(
        "CPU used meanwhile by other processes (share of the cores)",
        |r| r.others * 100.0,
        0,
        "%",
    );
    let all = || figures.latency.iter().flat_map(|(_, runs)| runs);
    let failures: u64 = all().map(|r| r.failures).sum();
    let _ = writeln!(
        out,
        "\nEvery run checked that each subscriber received every acknowledged event exactly once, in log order, and \
         nothing else (the benchmark fails otherwise); {failures} writes failed{}.\n",
        all()
            .find_map(|r| r.first_failure.as_deref())
            .map_or(String::new(), |f| format!(" (first: {f})"))
    );
    let _ = writeln!(
        out,
        "### Write throughput with and without {n} subscribers\n\n\
         Closed-loop `createAuditEvent` as in the serving writes ({:.0} s after a {:.1} s warm-up), first with no \
         subscriber, then with {n} subscribers connected and reading every event, in the same run.\n\n\
         | workload | no subscribers | {n} subscribers | ratio | subscribers caught up after | failures |\n\
         |---|---|---|---|---|---|",
        setup.duration.as_secs_f64(),
        setup.warm_up.as_secs_f64()
    );
    for cost in &figures.costs {
        let caught_up = if cost.catch_up.len() == cost.with.len() {
            format!("{} s", report::spread_with(&cost.catch_up, 2))
        } else {
            format!("{} of {} runs", cost.catch_up.len(), cost.with.len())
        };
        let _ = writeln!(
            out,
            "| `createAuditEvent`, concurrency {} | {} events/s | {} | {:.2}× | {caught_up} | {} |",
            cost.concurrency,
            report::spread_with(&cost.without, 0),
            report::spread_with(&cost.with, 0),
            cost.ratio(),
            cost.failures
        );
    }
    if figures.costs.iter().any(|c| c.cpu_with.iter().any(|p| p.server > 0.0)) {
        out.push_str(
            "\nWhere the CPU goes: milliseconds of CPU per written event (warm-up included; with subscribers, until they \
             had read the last event), medians of the runs, without → with subscribers:\n\n\
             | workload | server | PostgreSQL | benchmark (writers and subscribers) | other processes (share of the cores) |\n\
             |---|---|---|---|---|\n",
        );
        for cost in &figures.costs {
            let median =
                |runs: &[PerEvent], f: fn(&PerEvent) -> f64| report::stats(&runs.iter().map(f).collect::<Vec<_>>()).0;
            let pair = |f: fn(&PerEvent) -> f64| {
                format!("{:.2} → {:.2}", median(&cost.cpu_without, f), median(&cost.cpu_with, f))
            };
            let _ = writeln!(
                out,
                "| `createAuditEvent`, concurrency {} | {} | {} | {} | {:.0}% |",
                cost.concurrency,
                pair(|p| p.server),
                pair(|p| p.postgres),
                pair(|p| p.bench),
                report::stats(&cost.others).0 * 100.0
            );
        }
    }
    let problems: Vec<&String> = figures.costs.iter().flat_map(|c| &c.problems).collect();
    if problems.is_empty() {
        out.push_str(
            "\nEach subscriber received every event written during the warm-up and the measurement exactly once, in \
             log order.\n",
        );
    } else {
        out.push_str("\nDeliveries that went wrong:\n\n");
        for problem in problems {
            let _ = writeln!(out, "- {problem}");
        }
    }
    if let Some(first) = figures.costs.iter().find_map(|c| c.first_failure.as_deref()) {
        let _ = writeln!(out, "\nFirst failed write: {first}");
    }
    let _ = writeln!(out, "\nReproduce: `{reproduce}`.");
    out
}
