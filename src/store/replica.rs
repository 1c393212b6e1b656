//! Read replicas: PostgreSQL streaming standbys that answer queries, so that reads scale past one
//! primary while writes, and everything that must be current, stay on it.
//!
//! - **Routing.** A query without a consistency token goes to a replica that is up and no
//!   further behind than the lag allowed, taken in turn; with none such, to the primary.
//! - **Read-your-writes.** Every write answers a consistency token: the primary's WAL position
//!   after its commit. A read that carries it goes to a replica only once that replica has
//!   replayed past it (waiting at most the read wait), else to the primary. A replica that has
//!   replayed a position holds every transaction committed before it.
//! - **Health.** A watcher reads each replica's replay position every check interval, and the
//!   primary's WAL position. Lag is measured in bytes (how much WAL the replica has not replayed)
//!   and in seconds (how long ago the primary first held WAL the replica has not replayed), so
//!   that an idle primary does not look like a lagging replica. A replica that does not answer, or
//!   is not in recovery (a promoted standby, or the primary named by mistake), is skipped until
//!   it answers again as a standby.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

use super::{Store, StoreError};

/// How reads are spread over replicas.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// The replicas' URLs (`postgres://…`); none means every read goes to the primary.
    pub urls: Vec<String>,
    /// A replica further behind than this gets no reads without a token.
    pub max_lag: Duration,
    /// How long a read carrying a token waits for a replica to replay past it before the
    /// primary answers it.
    pub read_wait: Duration,
    /// How often each replica's replay position and the primary's WAL position are read.
    pub check_interval: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            max_lag: Duration::from_secs(5),
            read_wait: Duration::from_millis(100),
            check_interval: Duration::from_secs(1),
        }
    }
}

/// A position in PostgreSQL's write-ahead log (`pg_lsn`), written as PostgreSQL writes it:
/// two hexadecimal halves, `16/B374D848`. Consistency tokens are positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || format!("`{text}` is not a consistency token (a WAL position such as 16/B374D848)");
        let (high, low) = text.trim().split_once('/').ok_or_else(wrong)?;
        let half = |part: &str| {
            (!part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        match (half(high), half(low)) {
            (Some(high), Some(low)) => Ok(Lsn((high << 32) | low)),
            _ => Err(wrong()),
        }
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What a read needs of the data it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// What a fresh replica holds, and at least every write up to the token when there is one.
    AtLeast(Option<Lsn>),
    /// The primary's data.
    Current,
}

/// Where a read was sent, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The primary: no replicas are configured, none is up and fresh enough, or none had
    /// replayed the token in time.
    Primary(PrimaryReason),
    /// The replica of this name (`host:port/database`).
    Replica(String),
}

/// Why the primary answered a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryReason {
    /// No replicas are configured.
    NoReplicas,
    /// Every replica is down, not a standby, or further behind than the lag allowed.
    NoneAvailable,
    /// The read carried a token that no replica replayed within the read wait.
    BehindToken,
    /// The read must see the primary's data (it asks where the commit order stands now).
    MustBeCurrent,
}

impl ReadFrom {
    /// The label of `db_reads_total{target}` and of the `Auditgraph-Read-From` header.
    pub fn target(&self) -> &'static str {
        match self {
            ReadFrom::Primary(_) => "primary",
            ReadFrom::Replica(_) => "replica",
        }
    }

    fn reason(&self, token: bool) -> &'static str {
        match (self, token) {
            (ReadFrom::Replica(_), false) => "fresh",
            (ReadFrom::Replica(_), true) => "caught_up",
            (ReadFrom::Primary(PrimaryReason::NoReplicas), _) => "no_replicas",
            (ReadFrom::Primary(PrimaryReason::NoneAvailable), _) => "none_available",
            (ReadFrom::Primary(PrimaryReason::BehindToken), _) => "behind_token",
            (ReadFrom::Primary(PrimaryReason::MustBeCurrent), _) => "must_be_current",
        }
    }
}

/// One replica: its pools and what the watcher last saw of it.
pub(crate) struct Replica {
    /// `host:port/database`, for metrics and logs (no credentials).
    pub(crate) name: String,
    pub(crate) db: super::hot::ReadPool,
    /// Sessions with the tree timeout, for the recursive walks.
    pub(crate) trees: super::hot::ReadPool,
    /// The WAL position it had replayed when last asked.
    replayed: AtomicU64,
    /// Whether it answered the last check as a standby.
    up: AtomicBool,
    /// Its lag when last checked, in microseconds.
    lag_us: AtomicU64,
    /// Whether a read waiting for a token is asking it for its position now.
    probing: AtomicBool,
}

impl Replica {
    /// Up, at most `max_lag` behind, and past `floor` (the schema the server was started on).
    fn usable(&self, max_lag: Duration, floor: u64) -> bool {
        self.up.load(Ordering::Acquire)
            && Duration::from_micros(self.lag_us.load(Ordering::Relaxed)) <= max_lag
            && self.replayed.load(Ordering::Acquire) >= floor
    }

    fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
    }

    /// Reads its replay position within `wait`.
    async fn probe(&self, wait: Duration) -> Probe {
        let stmt = Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed",
        );
        let row = match tokio::time::timeout(wait, self.db.query_one_raw(stmt)).await {
            Ok(Ok(Some(row))) => row,
            Ok(Ok(None)) => return Probe::Failed,
            Err(_) => return Probe::Slow,
            Ok(Err(error)) => {
                tracing::debug!(replica = %self.name, %error, "the replica did not answer");
                return Probe::Failed;
            }
        };
        let standby: bool = row.try_get("", "standby").unwrap_or(false);
        let replayed: Option<String> = row.try_get("", "replayed").ok().flatten();
        if !standby {
            if self.up.load(Ordering::Relaxed) {
                tracing::warn!(replica = %self.name, "the read replica is not in recovery (promoted, or not a standby); no reads go to it");
            }
            return Probe::Failed;
        }
        match replayed.and_then(|text| text.parse::<Lsn>().ok()) {
            Some(position) => {
                self.replayed.fetch_max(position.0, Ordering::AcqRel);
                Probe::At(position)
            }
            None => Probe::Failed,
        }
    }
}

/// What asking a replica for its replay position gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// It answered, as a standby, with this position.
    At(Lsn),
    /// It did not answer in time (busy, or far away): not a reason to take it out.
    Slow,
    /// It failed to answer, or answered as a server that is not in recovery.
    Failed,
}

/// How long a read waiting for a token lets one question to a replica take; the question outlives
/// the read when the read stops waiting first.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The replicas of a store, the watcher's samples of the primary, and their metrics.
pub(crate) struct Replicas {
    list: Vec<Arc<Replica>>,
    settings: ReplicaSettings,
    /// The next replica to try, so that reads are spread over them in turn.
    next: AtomicUsize,
    /// The primary's WAL position each time it was seen to move, oldest first (bounded).
    samples: std::sync::Mutex<VecDeque<(Instant, u64)>>,
    /// The last position handed out as a token, and when it was asked for.
    token: tokio::sync::Mutex<Option<(Instant, Lsn)>>,
    /// Woken each time a replica answered (or failed to answer) a read waiting for a token.
    probed: Arc<tokio::sync::Notify>,
    /// The primary's WAL position once the server had migrated and prepared its partitions: a
    /// replica that has not replayed that far may lack tables or columns the queries need, so it
    /// gets no reads (and every token is raised to it).
    floor: AtomicU64,
    up: IntGaugeVec,
    lag_seconds: GaugeVec,
    lag_bytes: IntGaugeVec,
    reads: IntCounterVec,
    replica_reads: IntCounterVec,
}

/// Samples of the primary's WAL position kept to measure lag in seconds.
const SAMPLES: usize = 4096;

impl Replicas {
    pub(crate) fn new(list: Vec<Arc<Replica>>, settings: ReplicaSettings) -> anyhow::Result<Self> {
        let up = IntGaugeVec::new(
            Opts::new(
                "db_replica_up",
                "1 when the read replica answered its last check as a standby, else 0",
            ),
            &["replica"],
        )?;
        let lag_seconds = GaugeVec::new(
            Opts::new(
                "db_replica_lag_seconds",
                "How long ago the primary first held WAL the read replica has not replayed yet (0 when caught up)",
            ),
            &["replica"],
        )?;
        let lag_bytes = IntGaugeVec::new(
            Opts::new(
                "db_replica_lag_bytes",
                "Bytes of WAL the read replica has not replayed yet",
            ),
            &["replica"],
        )?;
        let reads = IntCounterVec::new(
            Opts::new(
                "db_reads_total",
                "Read requests by the database that answered them (primary or replica) and why",
            ),
            &["target", "reason"],
        )?;
        let replica_reads = IntCounterVec::new(
            Opts::new("db_replica_reads_total", "Read requests sent to each read replica"),
            &["replica"],
        )?;
        for replica in &list {
            up.with_label_values(&[replica.name.as_str()]).set(0);
            replica_reads.with_label_values(&[replica.name.as_str()]);
        }
        Ok(Self {
            list,
            settings,
            next: AtomicUsize::new(0),
            samples: std::sync::Mutex::new(VecDeque::new()),
            token: tokio::sync::Mutex::new(None),
            probed: Arc::new(tokio::sync::Notify::new()),
            floor: AtomicU64::new(0),
            up,
            lag_seconds,
            lag_bytes,
            reads,
            replica_reads,
        })
    }

    pub(crate) fn replica(name: String, db: super::hot::ReadPool, trees: super::hot::ReadPool) -> Arc<Replica> {
        Arc::new(Replica {
            name,
            db,
            trees,
            replayed: AtomicU64::new(0),
            up: AtomicBool::new(false),
            lag_us: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.up.clone()),
            Box::new(self.lag_seconds.clone()),
            Box::new(self.lag_bytes.clone()),
            Box::new(self.reads.clone()),
            Box::new(self.replica_reads.clone()),
        ]
    }

    /// The usable replicas from the next one in turn.
    fn in_turn(&self) -> impl Iterator<Item = &Arc<Replica>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.list.len();
        (0..n).map(move |i| &self.list[(start + i) % n])
    }

    /// Where a read goes, waiting for a replica to reach `token` at most the read wait.
    async fn route(&self, token: Option<Lsn>) -> (Option<Arc<Replica>>, ReadFrom) {
        let floor = self.floor.load(Ordering::Acquire);
        let Some(token) = token else {
            return match self.in_turn().find(|r| r.usable(self.settings.max_lag, floor)) {
                Some(replica) => (Some(replica.clone()), ReadFrom::Replica(replica.name.clone())),
                None => (None, ReadFrom::Primary(PrimaryReason::NoneAvailable)),
            };
        };
        let token = token.max(Lsn(floor));
        let reached = |replica: &Replica| {
            replica.up.load(Ordering::Acquire) && replica.replayed.load(Ordering::Acquire) >= token.0
        };
        if let Some(replica) = self.in_turn().find(|r| reached(r)) {
            return (Some(replica.clone()), ReadFrom::Replica(replica.name.clone()));
        }
        if !self.list.iter().any(|r| r.up.load(Ordering::Acquire)) {
            return (None, ReadFrom::Primary(PrimaryReason::NoneAvailable));
        }
        match self.wait_for(token, reached).await {
            Some(replica) => {
                let name = replica.name.clone();
                (Some(replica), ReadFrom::Replica(name))
            }
            None => (None, ReadFrom::Primary(PrimaryReason::BehindToken)),
        }
    }

    /// Asks the replicas that are up for their position until one has `reached` the token, at
    /// most the read wait. Each question runs in a task of its own, so that a replica that died
    /// (whose pool retries its connection until the acquire timeout) holds no answer of the
    /// others; one whose answer fails (not one that is merely slow) is taken out of the rotation
    /// until its next check.
    async fn wait_for(&self, token: Lsn, reached: impl Fn(&Replica) -> bool) -> Option<Arc<Replica>> {
        let deadline = Instant::now() + self.settings.read_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let answered = self.probed.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            for replica in self.list.iter().filter(|r| r.up.load(Ordering::Acquire)) {
                if replica.probing.swap(true, Ordering::AcqRel) {
                    continue;
                }
                let (replica, probed) = (replica.clone(), self.probed.clone());
                tokio::spawn(async move {
                    if replica.probe(PROBE_TIMEOUT).await == Probe::Failed {
                        replica.mark_down();
                    }
                    replica.probing.store(false, Ordering::Release);
                    probed.notify_waiters();
                });
            }
            let _ = tokio::time::timeout(left, answered).await;
            if let Some(replica) = self.in_turn().find(|r| reached(r)) {
                return Some(replica.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.list.iter().any(|r| r.up.load(Ordering::Acquire)) {
                tracing::debug!(%token, "no replica replayed the token within the read wait");
                return None;
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// Records a new sample of the primary's position.
    fn sample(&self, at: Instant, position: Lsn) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.back().is_none_or(|&(_, last)| last < position.0) {
            samples.push_back((at, position.0));
            while samples.len() > SAMPLES {
                samples.pop_front();
            }
        }
    }

    /// How long ago the primary first held WAL past `replayed`: zero when the replica has
    /// everything the primary was last seen to hold.
    fn lag_of(&self, replayed: u64, now: Instant) -> Duration {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .find(|&&(_, position)| position > replayed)
            .map_or(Duration::ZERO, |&(at, _)| now.saturating_duration_since(at))
    }
}

impl Store {
    /// Whether reads may go to replicas.
    pub fn has_replicas(&self) -> bool {
        self.inner.replicas.is_some()
    }

    /// The store to answer a read with: its queries go to a replica that is fresh enough, or has
    /// replayed the token the read carries (waiting at most the read wait); else, and for a read
    /// that must be current, to the primary. Writes through the returned store still go to the
    /// primary.
    pub async fn for_reading(&self, wanted: Wanted) -> (Store, ReadFrom) {
        let Some(replicas) = &self.inner.replicas else {
            return (self.clone(), ReadFrom::Primary(PrimaryReason::NoReplicas));
        };
        let (replica, from, token) = match wanted {
            Wanted::Current => (None, ReadFrom::Primary(PrimaryReason::MustBeCurrent), false),
            Wanted::AtLeast(token) => {
                let (replica, from) = replicas.route(token).await;
                (replica, from, token.is_some())
            }
        };
        replicas
            .reads
            .with_label_values(&[from.target(), from.reason(token)])
            .inc();
        if let ReadFrom::Replica(name) = &from {
            replicas.replica_reads.with_label_values(&[name.as_str()]).inc();
        }
        let store = Store {
            inner: self.inner.clone(),
            reading: replica,
        };
        (store, from)
    }

    /// Records the primary's WAL position now as the floor replicas must have replayed before they
    /// get reads: call it once the schema is migrated and the partitions are ready.
    pub async fn settle_replicas(&self) -> Result<(), StoreError> {
        let Some(replicas) = &self.inner.replicas else {
            return Ok(());
        };
        let position = self.wal_position().await?;
        replicas.floor.fetch_max(position.0, Ordering::AcqRel);
        tracing::debug!(%position, "replicas get reads once they have replayed the schema");
        Ok(())
    }

    /// Where this store's reads go: the replica's name, or `None` for the primary.
    pub fn reading_from(&self) -> Option<&str> {
        self.reading.as_deref().map(|replica| replica.name.as_str())
    }

    /// Tells the store that a read on its replica failed for want of the database: the replica
    /// gets no more reads until its next check finds it answering.
    pub fn replica_failed(&self) {
        if let Some(replica) = &self.reading
            && replica.up.swap(false, Ordering::AcqRel)
        {
            tracing::warn!(replica = %replica.name, "a read on the replica failed; sending reads elsewhere until it answers again");
        }
    }

    /// The pool that answers this store's reads.
    pub(crate) fn reader(&self) -> &DatabaseConnection {
        self.read_pool()
    }

    /// The pool that answers this store's reads, lending the connection put back last.
    pub(crate) fn read_pool(&self) -> &super::hot::ReadPool {
        match &self.reading {
            Some(replica) => &replica.db,
            None => &self.inner.db,
        }
    }

    /// The pool that answers this store's recursive walks (PostgreSQL).
    pub(crate) fn tree_reader(&self) -> Option<&super::hot::ReadPool> {
        match &self.reading {
            Some(replica) => Some(&replica.trees),
            None => self.inner.trees.as_ref(),
        }
    }

    /// A consistency token for writes that committed before `committed`: the primary's WAL
    /// position now, which a replica must have replayed to hold them. Concurrent callers share
    /// one question to the primary when it was asked after their commits.
    pub async fn consistency_token(&self, committed: Instant) -> Result<Lsn, StoreError> {
        let replicas = self.inner.replicas.as_ref();
        let mut last = match replicas {
            Some(replicas) => Some(replicas.token.lock().await),
            None => None,
        };
        if let Some(Some((asked, token))) = last.as_deref()
            && *asked > committed
        {
            return Ok(*token);
        }
        let asked = Instant::now();
        let token = self.wal_position().await?;
        if let Some(last) = last.as_deref_mut() {
            *last = Some((asked, token));
        }
        Ok(token)
    }

    /// The primary's current WAL write position (PostgreSQL): past every commit that has returned
    /// (with `synchronous_commit` on, the default).
    async fn wal_position(&self) -> Result<Lsn, StoreError> {
        let stmt = Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text AS position",
        );
        let row = self
            .inner
            .db
            .query_one_raw(stmt)
            .await?
            .ok_or_else(|| StoreError::Internal("the WAL position query returned no row".into()))?;
        let text: String = row.try_get("", "position").map_err(StoreError::from)?;
        text.parse().map_err(StoreError::Internal)
    }

    /// The replicas' metrics, for [`crate::metrics::Metrics`] (none without replicas).
    pub fn replica_collectors(&self) -> Vec<Box<dyn Collector>> {
        self.inner.replicas.as_ref().map(|r| r.collectors()).unwrap_or_default()
    }

    /// Checks every replica once: its replay position, whether it is a standby, its lag.
    pub async fn check_replicas(&self) {
        let Some(replicas) = &self.inner.replicas else {
            return;
        };
        let wait = replicas.settings.check_interval.max(Duration::from_secs(1));
        match tokio::time::timeout(wait, self.wal_position()).await {
            Ok(Ok(position)) => replicas.sample(Instant::now(), position),
            Ok(Err(error)) => tracing::debug!(%error, "could not read the primary's WAL position"),
            Err(_) => tracing::debug!("the primary's WAL position took longer than {wait:?}"),
        }
        let primary = {
            let samples = replicas.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.back().map(|&(_, position)| position)
        };
        let probes = futures_util::future::join_all(replicas.list.iter().map(|replica| replica.probe(wait))).await;
        for (replica, probe) in replicas.list.iter().zip(probes) {
            let name = replica.name.as_str();
            let was_up = replica.up.load(Ordering::Acquire);
            match probe {
                Probe::At(position) => {
                    let lag = replicas.lag_of(position.0, Instant::now());
                    replica
                        .lag_us
                        .store(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    replica.up.store(true, Ordering::Release);
                    let behind = primary.map_or(0, |p| p.saturating_sub(position.0));
                    replicas
                        .lag_bytes
                        .with_label_values(&[name])
                        .set(i64::try_from(behind).unwrap_or(i64::MAX));
                    replicas.lag_seconds.with_label_values(&[name]).set(lag.as_secs_f64());
                    replicas.up.with_label_values(&[name]).set(1);
                    if !was_up {
                        tracing::info!(replica = %name, replayed = %position, "the read replica answers; reads may go to it");
                    }
                }
                Probe::Slow | Probe::Failed => {
                    replica.mark_down();
                    replicas.up.with_label_values(&[name]).set(0);
                    if was_up {
                        tracing::warn!(replica = %name, "the read replica does not answer as a standby; reads go elsewhere");
                    }
                }
            }
        }
    }

    /// Checks the replicas every check interval, for as long as the server runs.
    pub async fn watch_replicas(self) {
        let Some(interval) = self.inner.replicas.as_ref().map(|r| r.settings.check_interval) else {
            return;
        };
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check_replicas().await;
        }
    }
}

/// `host:port/database` of a PostgreSQL URL, without credentials.
pub(crate) fn replica_name(url: &str) -> String {
    use sea_orm::sqlx::postgres::PgConnectOptions;
    match url.parse::<PgConnectOptions>() {
        Ok(options) => format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        ),
        Err(_) => super::redact(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_write_as_postgresql_writes_them() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn((0x16 << 32) | 0xB374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert!("0/1".parse::<Lsn>().unwrap() < "1/0".parse::<Lsn>().unwrap());
        for wrong in ["", "16", "/1", "1/", "x/1", "1/2/3", "100000000/0", "-1/0", "1 /0"] {
            let error = wrong.parse::<Lsn>().unwrap_err();
            assert!(error.contains("consistency token"), "{wrong}: {error}");
        }
    }

    fn replicas_with_samples(samples: &[(u64, u64)], now: Instant) -> Replicas {
        let replicas = Replicas::new(Vec::new(), ReplicaSettings::default()).unwrap();
        for &(seconds_ago, position) in samples {
            replicas.sample(now - Duration::from_secs(seconds_ago), Lsn(position));
        }
        replicas
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let now = Instant::now();
        let replicas = replicas_with_samples(&[(30, 100), (20, 200), (10, 300)], now);
        assert_eq!(replicas.lag_of(300, now), Duration::ZERO, "caught up");
        assert_eq!(replicas.lag_of(350, now), Duration::ZERO, "past the last sample");
        assert_eq!(replicas.lag_of(250, now), Duration::from_secs(10));
        assert_eq!(replicas.lag_of(150, now), Duration::from_secs(20));
        assert_eq!(replicas.lag_of(0, now), Duration::from_secs(30));
    }

    #[test]
    fn an_idle_primary_adds_no_samples_and_no_lag() {
        let now = Instant::now();
        let replicas = replicas_with_samples(&[(60, 100), (50, 100), (40, 100)], now);
        assert_eq!(
            replicas.samples.lock().unwrap().len(),
            1,
            "an unchanged position is one sample"
        );
        assert_eq!(replicas.lag_of(100, now), Duration::ZERO);
    }

    #[test]
    fn replicas_are_named_without_credentials() {
        assert_eq!(
            replica_name("postgres://app:secret@db-2.internal:5433/audit"),
            "db-2.internal:5433/audit"
        );
    }
}
