//! Closed-loop load: a number of workers, each repeating its request for a fixed time.

use std::time::{Duration, Instant};

use crate::cpu::Cpu;

/// One kind of request, repeated by a worker. Each call checks its response.
pub trait Op: Send + 'static {
    /// Sends one request and returns how many items it handled (events written, rows read).
    fn once(&mut self) -> impl Future<Output = anyhow::Result<u64>> + Send;
}

/// What a measured period did.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Requests completed, failed ones included.
    pub requests: u64,
    /// Items handled by successful requests.
    pub items: u64,
    /// Requests that failed (an error, a GraphQL `errors` entry, a wrong answer).
    pub failures: u64,
    /// The first failure, to report.
    pub first_failure: Option<String>,
    /// Wall-clock seconds of the period.
    pub seconds: f64,
    /// Milliseconds each successful request took, from sending it to checking its answer.
    pub latencies_ms: Vec<f64>,
    /// The CPU the processes used over the period, when it was measured.
    pub cpu: Option<Cpu>,
}

impl Sample {
    /// Items per second.
    pub fn items_per_second(&self) -> f64 {
        self.items as f64 / self.seconds.max(f64::EPSILON)
    }

    /// Successful requests per second.
    pub fn requests_per_second(&self) -> f64 {
        (self.requests - self.failures) as f64 / self.seconds.max(f64::EPSILON)
    }

    /// CPU microseconds per request (failed ones included) of the server, of PostgreSQL and of
    /// this load generator over the period, when it was measured.
    pub fn cpu_per_request(&self) -> Option<[f64; 3]> {
        let cpu = self.cpu?;
        let per = |seconds: f64| seconds * 1e6 / self.requests.max(1) as f64;
        Some([per(cpu.server), per(cpu.postgres), per(cpu.bench)])
    }

    /// The `p`-th percentile (0 to 100) of the request latencies, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        let at = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[at.min(sorted.len() - 1)]
    }

    fn add(&mut self, other: Sample) {
        self.latencies_ms.extend(other.latencies_ms);
        self.requests += other.requests;
        self.items += other.items;
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

async fn run_for<O: Op>(workers: Vec<O>, duration: Duration) -> anyhow::Result<(Vec<O>, Sample)> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match worker.once().await {
                        Ok(items) => {
                            sample.items += items;
                            sample.latencies_ms.push(sent.elapsed().as_secs_f64() * 1_000.0);
                        }
                        Err(error) => {
                            sample.failures += 1;
                            sample.first_failure.get_or_insert_with(|| format!("{error:#}"));
                        }
                    }
                    sample.requests += 1;
                }
                (worker, sample)
            })
        })
        .collect();
    let mut total = Sample::default();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (worker, sample) = task.await?;
        workers.push(worker);
        total.add(sample);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok((workers, total))
}

/// Warms the workers up for `warm_up` (not counted), then measures them running together for
/// `duration`. Returns the workers for the next run.
pub async fn measure<O: Op>(
    workers: Vec<O>,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<(Vec<O>, Sample)> {
    let (workers, _) = run_for(workers, warm_up).await?;
    run_for(workers, duration).await
}

/// [`measure`], also reading the CPU that the processes `servers`, PostgreSQL and this load
/// generator used over the measured period (not the warm-up).
pub async fn measure_cpu<O: Op>(
    workers: Vec<O>,
    warm_up: Duration,
    duration: Duration,
    servers: &[u32],
) -> anyhow::Result<(Vec<O>, Sample)> {
    let (workers, _) = run_for(workers, warm_up).await?;
    let before = Cpu::now(servers);
    let (workers, mut sample) = run_for(workers, duration).await?;
    sample.cpu = Some(Cpu::since(before, servers));
    Ok((workers, sample))
}
