//! The transparency log's background work: the sequencer, which gives committed events their
//! leaf indexes, and the publisher, which signs checkpoints at an interval.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

use crate::domain::checkpoint::{Checkpoint, SignerKey};
use crate::domain::merkle;
use crate::store::{Store, StoreError, StoredCheckpoint};

/// The key that signs checkpoints, and the log's origin line (the key's name).
pub struct LogSigner {
    key: SignerKey,
    verifier: String,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// Reads the signer key from `path`, or creates one named `origin` there when the file does
    /// not exist (mode 0600), writing its verifier key beside it (`<path>.pub`) for whoever checks
    /// the checkpoints.
    pub fn load_or_create(path: &Path, origin: &str) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the log signing key {}", path.display()))?;
            let key = SignerKey::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("the log signing key in {} is not valid: {e}", path.display()))?;
            let verifier = key.verifier().text();
            let public = public_path(path);
            if !public.exists() {
                std::fs::write(&public, format!("{verifier}\n"))
                    .with_context(|| format!("writing the log verifier key {}", public.display()))?;
            }
            return Ok(Self { key, verifier });
        }
        let (key, signer_text, verifier) = SignerKey::generate(origin)
            .map_err(|e| anyhow::anyhow!("creating a log signing key named {origin:?}: {e}"))?;
        write_private(path, &format!("{signer_text}\n"))?;
        let public = public_path(path);
        std::fs::write(&public, format!("{verifier}\n"))
            .with_context(|| format!("writing the log verifier key {}", public.display()))?;
        tracing::info!(
            key = %path.display(),
            verifier = %verifier,
            "created the transparency log's signing key; give the verifier key to whoever checks checkpoints"
        );
        Ok(Self { key, verifier })
    }

    /// The verifier key (`<origin>+<hash>+<key>`), for clients and `auditgraph verify`.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        self.key.name()
    }

    /// Signs `text` (ending in a newline) as a signed note: how exports sign their manifest.
    pub fn sign_note(&self, text: &str) -> anyhow::Result<String> {
        self.key.sign(text).map_err(|e| anyhow::anyhow!("signing a note: {e}"))
    }
}

/// `<path>.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating the log signing key {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the log signing key {}", path.display()))
}

/// What the sequencer and the live feed tell each other within one process.
#[derive(Debug, Default)]
pub struct LogSignals {
    /// Asks the sequencer to run now rather than at its next tick (events were written while
    /// someone watches).
    pub sequence: Notify,
    /// The log grew: this process sequenced events.
    pub grown: Notify,
}

/// Sequences and publishes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    store: Store,
    signer: Arc<LogSigner>,
    signals: Arc<LogSignals>,
}

impl Publisher {
    /// The key it signs with.
    pub fn signer(&self) -> &LogSigner {
        &self.signer
    }

    /// A publisher for `store`, signing with `signer`.
    pub fn new(store: Store, signer: Arc<LogSigner>) -> Self {
        Self {
            store,
            signer,
            signals: Arc::default(),
        }
    }

    /// The signals between this process's sequencer and its live feed.
    pub fn signals(&self) -> Arc<LogSignals> {
        self.signals.clone()
    }

    /// The verifier key of the log's checkpoints.
    pub fn verifier(&self) -> &str {
        self.signer.verifier()
    }

    /// Sequences every committed pending event; returns how many leaves were added. Another
    /// process's round in progress is left to finish what it took.
    pub async fn sequence_all(&self) -> Result<u64, StoreError> {
        self.sequence(false).await
    }

    /// [`Publisher::sequence_all`], waiting for another process's round instead: every event
    /// committed before the call has its leaf when it returns (a client asking for a checkpoint
    /// sees its own writes in it).
    pub async fn sequence_all_now(&self) -> Result<u64, StoreError> {
        self.sequence(true).await
    }

    /// Sequences rounds of up to [`ROUND`] events until a round finds fewer: the events committed
    /// before the call are then all sequenced (each round reads the queue as it is when it starts).
    /// Stopping at a round that was not full, rather than at an empty one, keeps a steady stream of
    /// writes from holding the sequencer in a loop of tiny rounds (it measured about 230 rounds a
    /// second at 1,000 writes a second, each taking the lock and reading the log's size again).
    async fn sequence(&self, wait: bool) -> Result<u64, StoreError> {
        const ROUND: u64 = 1_000;
        let mut added = 0;
        loop {
            let round = if wait {
                self.store.sequence_pending_now(ROUND).await?
            } else {
                self.store.sequence_pending(ROUND).await?
            };
            added += round;
            if round < ROUND {
                if added > 0 {
                    self.signals.grown.notify_one();
                }
                return Ok(added);
            }
        }
    }

    /// Signs and stores a checkpoint of the tree as it is, when it has grown since the last one.
    /// Returns the newest checkpoint.
    pub async fn publish(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let size = self.store.log_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if latest.as_ref().is_some_and(|c| c.tree_size >= size) || (latest.is_none() && size == 0) {
            return Ok(latest);
        }
        // The new root's nodes and the last checkpoint's, in one read.
        let mut wanted = merkle::root_nodes(size);
        if let Some(last) = &latest {
            wanted.extend(merkle::root_nodes(last.tree_size));
        }
        let nodes = self.store.log_nodes(&wanted).await?;
        let root = merkle::root(&nodes, size).map_err(|e| StoreError::Internal(format!("the log root: {e:?}")))?;
        // Never sign a tree that does not extend the last one signed: that would vouch for a
        // rewritten log.
        if let Some(last) = &latest {
            let old_root = merkle::root(&nodes, last.tree_size)
                .map_err(|e| StoreError::Internal(format!("the log root at {}: {e:?}", last.tree_size)))?;
            if old_root != last.root_hash {
                tracing::error!(
                    tree_size = last.tree_size,
                    "the stored log no longer has the root of its last signed checkpoint; not signing \
                     (run `auditgraph verify`)"
                );
                return Err(StoreError::Internal(format!(
                    "the log no longer matches its checkpoint of size {}",
                    last.tree_size
                )));
            }
        }
        let checkpoint = Checkpoint::new(self.signer.origin(), size, root)
            .map_err(|e| StoreError::Internal(format!("a checkpoint: {e}")))?;
        let note = self
            .signer
            .key
            .sign_checkpoint(&checkpoint)
            .map_err(|e| StoreError::Internal(format!("signing a checkpoint: {e}")))?;
        self.store.save_checkpoint(size, &root, &note).await?;
        tracing::info!(tree_size = size, "published a transparency log checkpoint");
        self.store.latest_checkpoint().await
    }

    /// Sequences every `sequence_every` (and whenever asked through [`LogSignals::sequence`])
    /// and publishes every `publish_every`, until dropped.
    /// Several server processes may run this: one sequences at a time, and a checkpoint of a
    /// size stored already is kept.
    pub async fn run(self, sequence_every: Duration, publish_every: Duration) {
        let mut sequence = tokio::time::interval(sequence_every);
        let mut publish = tokio::time::interval(publish_every);
        sequence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.signals.sequence.notified() => {
                    if let Err(error) = self.sequence_all().await {
                        tracing::warn!(%error, "the transparency log sequencer could not run; it retries");
                    }
                }
                _ = sequence.tick() => {
                    if let Err(error) = self.sequence_all().await {
                        tracing::warn!(%error, "the transparency log sequencer could not run; it retries");
                    }
                }
                _ = publish.tick() => {
                    if let Err(error) = self.publish().await {
                        tracing::warn!(%error, "could not publish a transparency log checkpoint; it retries");
                    }
                }
            }
        }
    }
}
