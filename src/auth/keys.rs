//! API keys: `agk_` and 32 random bytes, kept in the keys file only as their SHA-256.
//!
//! A stolen keys file therefore lets nobody in, and a key is shown once, when it is created. The
//! keys are random, so one unsalted SHA-256 is enough: nothing is left to guess offline.
//!
//! The file is reread when its content changes so that `auditgraph create-key`, and the removal of
//! an entry, take effect on a running server. A file that disappears, cannot be read or no longer
//! loads leaves no key in force: keeping the old keys would keep a revoked key working for as long
//! as the file stays broken.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::{AuthError, Method, Principal, PrincipalKind, Role, check_principal};
use crate::domain::chain::hex;

/// What every API key starts with, so that a leaked key is recognisable (secret scanners, logs).
const KEY_PREFIX: &str = "agk_";

/// How often, at most, a request checks whether the keys file changed.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A key just created: the only moment the key itself exists outside the caller's hands.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedKey {
    /// The entry's id in the keys file, for revoking it later.
    pub id: String,
    /// The key to give to the client: `agk_` and 43 base64url characters.
    pub key: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The keys file as stored. Unknown fields are refused: a field added later (an expiry, say) must
/// not be silently ignored by a server too old to enforce it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

/// One key of the keys file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    /// Short random id naming the entry in listings and error messages.
    pub(crate) id: String,
    /// Who holds the key.
    pub(crate) principal: String,
    /// The role the key grants.
    pub(crate) role: Role,
    /// Whether the holder is a person or a program.
    pub(crate) kind: PrincipalKind,
    /// SHA-256 of the key, lowercase hex.
    pub(crate) sha256: String,
    /// When the key was created.
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
}

/// The keys of one version of the file, checked and with their hashes decoded.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    entries: Vec<KeyEntry>,
    hashes: Vec<[u8; 32]>,
}

impl KeySet {
    /// Parses and checks a keys file; errors name the entry at fault.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let file: KeysFile =
            serde_json::from_str(text).context("the keys file is not valid JSON of the expected shape")?;
        let mut set = KeySet::default();
        let mut ids = HashSet::new();
        for (position, entry) in file.keys.into_iter().enumerate() {
            let name = format!("entry {} (id {:?})", position + 1, entry.id);
            if entry.id.trim().is_empty() {
                bail!("{name} has an empty id");
            }
            if !ids.insert(entry.id.clone()) {
                bail!("{name} repeats the id of an earlier entry");
            }
            check_holder(&entry.principal, entry.kind).with_context(|| name.clone())?;
            let hash = decode_hash(&entry.sha256).with_context(|| format!("{name} has an invalid sha256"))?;
            if set.hashes.contains(&hash) {
                bail!("{name} has the same sha256 as an earlier entry");
            }
            set.hashes.push(hash);
            set.entries.push(entry);
        }
        Ok(set)
    }

    /// Reads and checks a keys file.
    #[cfg(test)]
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the keys file {}", path.display()))?;
        KeySet::parse(&text).with_context(|| format!("loading the keys file {}", path.display()))
    }

    /// Finds the entry of `token`, comparing its hash with every stored hash whatever matches, so that
    /// the time taken says nothing about which key (if any) is close.
    pub(crate) fn find(&self, token: &str) -> Option<&KeyEntry> {
        self.lookup(token).0
    }

    /// [`KeySet::find`], also returning how many constant-time comparisons were made, counted where
    /// they are made, so that a test can tell that no match cuts the scan short.
    fn lookup(&self, token: &str) -> (Option<&KeyEntry>, usize) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut comparisons = 0;
        let mut compare = |hash: &[u8; 32]| {
            comparisons += 1;
            hash[..].ct_eq(&digest[..])
        };
        // A fold over every hash, with no early exit: the position of the match is selected, not
        // branched to.
        let (found, index) =
            self.hashes
                .iter()
                .zip(0u64..)
                .fold((Choice::from(0), 0u64), |(found, index), (hash, position)| {
                    let equal = compare(hash);
                    (found | equal, u64::conditional_select(&index, &position, equal))
                });
        let entry = if bool::from(found) {
            usize::try_from(index).ok().and_then(|index| self.entries.get(index))
        } else {
            None
        };
        (entry, comparisons)
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Refuses keys whose holder could not be audited: a principal [`check_principal`] refuses, or
/// the anonymous kind, which stands for the absence of authentication.
fn check_holder(principal: &str, kind: PrincipalKind) -> anyhow::Result<()> {
    check_principal(principal).map_err(anyhow::Error::msg)?;
    if kind == PrincipalKind::Anonymous {
        bail!("an API key belongs to a human or a service, not to anonymous");
    }
    Ok(())
}

/// Decodes 64 hex digits.
fn decode_hash(hex: &str) -> anyhow::Result<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("expected 64 hex digits");
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).context("expected 64 hex digits")?;
        *byte = u8::from_str_radix(pair, 16).context("expected 64 hex digits")?;
    }
    Ok(hash)
}

/// Lowercase hex of some bytes.
/// What the store saw of the keys file at its last look, so that each change is loaded and
/// reported once, not at every request.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The file held content of this SHA-256 (whether it loaded or not). The content is compared,
    /// not the modification time and length, which a rewrite in the same second to the same length
    /// (a role changed from reader to writer) would leave as they were.
    Content([u8; 32]),
    /// The file could not be read, for this reason.
    Unreadable(std::io::ErrorKind),
}

/// The keys file's content and whether others than its owner may write it.
struct FileContent {
    bytes: Vec<u8>,
    writable_by_others: bool,
}

fn read_file(path: &Path) -> std::io::Result<FileContent> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    #[cfg(unix)]
    let writable_by_others = {
        use std::os::unix::fs::PermissionsExt;
        file.metadata()?.permissions().mode() & 0o022 != 0
    };
    #[cfg(not(unix))]
    let writable_by_others = false;
    Ok(FileContent {
        bytes,
        writable_by_others,
    })
}

/// Parses the keys file's content.
fn parse_bytes(bytes: &[u8]) -> anyhow::Result<KeySet> {
    let text = std::str::from_utf8(bytes).context("the keys file is not UTF-8")?;
    KeySet::parse(text)
}

/// The keys file of a running server, reread when its content changes.
pub(crate) struct KeyStore {
    path: PathBuf,
    interval: Duration,
    state: Mutex<StoreState>,
}

struct StoreState {
    keys: Arc<KeySet>,
    seen: Seen,
    checked: Instant,
    /// Whether the warning about a file others may write was logged: it is logged once.
    warned_writable: bool,
}

impl StoreState {
    /// Warns, once, when the file may be written by others than its owner.
    fn check_permissions(&mut self, path: &Path, content: &FileContent) {
        if content.writable_by_others && !self.warned_writable {
            self.warned_writable = true;
            tracing::warn!(
                file = %path.display(),
                "the API keys file is writable by its group or by others: anyone who can write it can add \
                 an admin key (chmod go-w it)"
            );
        }
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts the keys loaded without rereading the file: formatting has no side effects.
        let keys = self.state.lock().unwrap_or_else(PoisonError::into_inner).keys.len();
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .field("keys", &keys)
            .finish()
    }
}

impl KeyStore {
    /// Loads the keys file, which must exist.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        KeyStore::open_with_interval(path, RELOAD_INTERVAL)
    }

    fn open_with_interval(path: &Path, interval: Duration) -> anyhow::Result<Self> {
        let content = match read_file(path) {
            Ok(content) => content,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "the API keys file {} does not exist: create a key with \
                 `auditgraph create-key --principal NAME --role ROLE` (or set AUDITGRAPH_API_KEYS_FILE)",
                path.display()
            ),
            Err(error) => {
                return Err(error).with_context(|| format!("reading the API keys file {}", path.display()));
            }
        };
        let keys = parse_bytes(&content.bytes).with_context(|| format!("loading the keys file {}", path.display()))?;
        if keys.len() == 0 {
            tracing::warn!(file = %path.display(), "the API keys file holds no keys yet; no API key is accepted");
        }
        let mut state = StoreState {
            keys: Arc::new(keys),
            seen: Seen::Content(Sha256::digest(&content.bytes).into()),
            checked: Instant::now(),
            warned_writable: false,
        };
        state.check_permissions(path, &content);
        Ok(KeyStore {
            path: path.to_owned(),
            interval,
            state: Mutex::new(state),
        })
    }

    /// The keys in force, rereading the file first if it was not checked recently. Whatever goes
    /// wrong leaves no key in force, so that removing a key from the file always revokes it.
    fn current(&self) -> Arc<KeySet> {
        // A panic elsewhere while holding the lock leaves the state consistent: every field is
        // replaced whole.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() < self.interval {
            return Arc::clone(&state.keys);
        }
        state.checked = Instant::now();
        let file = self.path.display();
        match read_file(&self.path) {
            Err(error) => {
                state.keys = Arc::new(KeySet::default());
                let seen = Seen::Unreadable(error.kind());
                if state.seen != seen {
                    state.seen = seen;
                    tracing::error!(%file, %error, "cannot read the API keys file; no API key is accepted until it can be");
                }
            }
            Ok(content) => {
                let seen = Seen::Content(Sha256::digest(&content.bytes).into());
                if state.seen != seen {
                    state.seen = seen;
                    state.check_permissions(&self.path, &content);
                    match parse_bytes(&content.bytes) {
                        Ok(keys) => {
                            tracing::info!(%file, keys = keys.len(), "API keys reloaded");
                            state.keys = Arc::new(keys);
                        }
                        Err(error) => {
                            state.keys = Arc::new(KeySet::default());
                            tracing::error!(
                                %file,
                                error = format!("{error:#}"),
                                "the changed API keys file does not load; no API key is accepted until it does"
                            );
                        }
                    }
                }
            }
        }
        Arc::clone(&state.keys)
    }

    /// Authenticates an API key.
    pub(crate) fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let keys = self.current();
        match keys.find(token) {
            Some(entry) => Ok(Principal {
                name: entry.principal.clone(),
                kind: entry.kind,
                role: Some(entry.role),
                method: Method::ApiKey,
            }),
            None => Err(AuthError::invalid("the API key is not valid")),
        }
    }
}

/// Creates an API key for `principal` and appends its hash to the keys file at `path`, creating the
/// file if missing. The file is replaced atomically (readers see the old or the new version, never
/// half of one) and is readable by its owner only, so create keys as the user the server runs as.
///
/// Concurrent runs are serialised by an exclusive lock on `<file>.lock` beside the keys file, held
/// from reading the file to renaming the new version into place, so that neither appends to a
/// version the other is replacing and loses its key. The lock file is left in place: removing it
/// would let a run that waits on the removed file and one that creates a new file both proceed.
pub fn create_key(path: &Path, principal: &str, role: Role, kind: PrincipalKind) -> anyhow::Result<CreatedKey> {
    check_holder(principal, kind).context("cannot create the API key")?;
    let lock_path = lock_path(path)?;
    let lock = owner_only_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => {
            // Checked before rewriting, so a broken file is reported instead of being overwritten.
            KeySet::parse(&text).with_context(|| format!("loading the keys file {}", path.display()))?;
            serde_json::from_str::<KeysFile>(&text)
                .with_context(|| format!("reading the keys file {}", path.display()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => KeysFile::default(),
        Err(error) => return Err(error).with_context(|| format!("reading the keys file {}", path.display())),
    };
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    let id = loop {
        let id = hex(&random_bytes::<4>()?);
        if file.keys.iter().all(|entry| entry.id != id) {
            break id;
        }
    };
    file.keys.push(KeyEntry {
        id: id.clone(),
        principal: principal.to_owned(),
        role,
        kind,
        sha256: hex(&Sha256::digest(key.as_bytes())),
        created_at: chrono::Utc::now(),
    });
    let mut text = serde_json::to_string_pretty(&file).context("serialising the keys file")?;
    text.push('\n');
    write_atomically(path, text.as_bytes()).with_context(|| format!("writing the keys file {}", path.display()))?;
    // Dropping the file would release the lock too; unlocking says where the critical part ends.
    lock.unlock()
        .with_context(|| format!("unlocking {}", lock_path.display()))?;
    Ok(CreatedKey { id, key })
}

/// The lock file of a keys file: its name with `.lock` appended, in the same directory.
fn lock_path(path: &Path) -> anyhow::Result<PathBuf> {
    let mut name = path.file_name().context("the keys file path names no file")?.to_owned();
    name.push(".lock");
    Ok(path.with_file_name(name))
}

/// Options creating files readable and writable by their owner only: the keys file names who holds
/// which role.
fn owner_only_options() -> std::fs::OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    // Without its `std` feature getrandom's error is no `std::error::Error`, so it is formatted here.
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("reading random bytes from the operating system: {error}"))?;
    Ok(bytes)
}

/// Writes a file through a temporary file in the same directory and a rename, then (on unix) syncs
/// the directory, without which the rename itself may be lost in a crash and the new key with it.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("the path names no file")?.to_string_lossy();
    let temporary = directory.join(format!(".{name}.{}.tmp", hex(&random_bytes::<6>()?)));
    let written = owner_only_options()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("through {}", temporary.display()))?;
    #[cfg(unix)]
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("syncing the directory {}", directory.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, principal: &str, key: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "principal": principal,
            "role": "writer",
            "kind": "service",
            "sha256": hex(&Sha256::digest(key.as_bytes())),
            "created_at": "2026-01-02T03:04:05Z",
        })
    }

    fn set_of(keys: &[&str]) -> KeySet {
        let entries: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| entry(&format!("{i:08x}"), &format!("svc-{i}"), key))
            .collect();
        KeySet::parse(&serde_json::json!({ "keys": entries }).to_string()).unwrap()
    }

    #[test]
    fn every_stored_hash_is_compared_whichever_key_matches() {
        let keys = ["agk_first", "agk_middle", "agk_last"];
        let set = set_of(&keys);
        let (first, count) = set.lookup("agk_first");
        assert_eq!((first.map(|e| e.principal.as_str()), count), (Some("svc-0"), 3));
        let (last, count) = set.lookup("agk_last");
        assert_eq!((last.map(|e| e.principal.as_str()), count), (Some("svc-2"), 3));
        let (absent, count) = set.lookup("agk_absent");
        assert_eq!((absent, count), (None, 3));
    }

    #[test]
    fn a_key_differing_in_its_last_character_is_refused() {
        let set = set_of(&["agk_abcdef"]);
        assert!(set.find("agk_abcdef").is_some());
        assert!(set.find("agk_abcdeg").is_none());
        assert!(set.find("agk_abcde").is_none());
    }

    #[test]
    fn an_empty_key_set_finds_nothing_after_no_comparison() {
        assert_eq!(KeySet::default().lookup("agk_x"), (None, 0));
    }

    #[test]
    fn a_malformed_hash_is_refused_naming_its_entry() {
        let mut bad = entry("0000000a", "svc", "k");
        bad["sha256"] = "abc".into();
        let error = KeySet::parse(&serde_json::json!({ "keys": [bad] }).to_string()).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("entry 1") && message.contains("0000000a") && message.contains("64 hex"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_principal_is_refused_on_load() {
        let text = serde_json::json!({ "keys": [entry("0000000a", " ", "k")] }).to_string();
        assert!(format!("{:#}", KeySet::parse(&text).unwrap_err()).contains("principal is empty"));
    }

    #[test]
    fn a_principal_with_a_nul_a_newline_or_256_bytes_is_refused_on_load() {
        for (principal, reason) in [
            ("svc\0x".to_owned(), "control characters"),
            ("svc\nx".to_owned(), "control characters"),
            ("x".repeat(256), "longer than 255 bytes"),
            ("anonymous".to_owned(), "reserved"),
        ] {
            let text = serde_json::json!({ "keys": [entry("0000000a", &principal, "k")] }).to_string();
            let message = format!("{:#}", KeySet::parse(&text).unwrap_err());
            assert!(message.contains("entry 1") && message.contains(reason), "{message}");
        }
        let text = serde_json::json!({ "keys": [entry("0000000a", &"x".repeat(255), "k")] }).to_string();
        assert!(KeySet::parse(&text).is_ok());
    }

    #[test]
    fn a_key_for_a_principal_with_a_nul_a_newline_or_256_bytes_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        for principal in ["svc\0x", "svc\nx", &"x".repeat(256), "anonymous"] {
            let message = format!(
                "{:#}",
                create_key(&path, principal, Role::Reader, PrincipalKind::Service).unwrap_err()
            );
            assert!(
                message.starts_with("cannot create the API key: the principal"),
                "{message}"
            );
        }
        assert!(!path.exists());
    }

    #[test]
    fn a_repeated_hash_is_refused_on_load() {
        let text =
            serde_json::json!({ "keys": [entry("0000000a", "a", "k"), entry("0000000b", "b", "k")] }).to_string();
        let message = format!("{:#}", KeySet::parse(&text).unwrap_err());
        assert!(
            message.contains("entry 2") && message.contains("same sha256"),
            "{message}"
        );
    }

    #[test]
    fn a_created_key_is_stored_only_as_its_hash_in_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "ci-pipeline", Role::Writer, PrincipalKind::Service).unwrap();
        assert!(
            created.key.starts_with("agk_") && created.key.len() == 4 + 43,
            "{}",
            created.key
        );
        assert!(created.id.len() == 8 && created.id.bytes().all(|b| b.is_ascii_hexdigit()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&created.key));
        assert!(text.contains(&hex(&Sha256::digest(created.key.as_bytes()))));
        assert!(!format!("{created:?}").contains(&created.key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn creating_keys_appends_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let second = create_key(&path, "bob", Role::Admin, PrincipalKind::Human).unwrap();
        let set = KeySet::load(&path).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.find(&first.key).map(|e| e.principal.as_str()), Some("alice"));
        assert_eq!(set.find(&second.key).map(|e| e.role), Some(Role::Admin));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["keys.json", "keys.json.lock"],
            "no temporary file is left behind"
        );
    }

    #[test]
    fn concurrent_creations_lose_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created: Vec<CreatedKey> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    scope.spawn(move || {
                        create_key(path, &format!("svc-{i}"), Role::Writer, PrincipalKind::Service).unwrap()
                    })
                })
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        let set = KeySet::load(&path).unwrap();
        assert_eq!(set.len(), 8);
        for key in &created {
            assert!(set.find(&key.key).is_some(), "{}", key.id);
        }
    }

    #[test]
    fn a_key_for_nobody_or_for_anonymous_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(create_key(&path, "  ", Role::Reader, PrincipalKind::Human).is_err());
        assert!(create_key(&path, "x", Role::Reader, PrincipalKind::Anonymous).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn a_broken_keys_file_is_not_overwritten_by_create_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(create_key(&path, "x", Role::Reader, PrincipalKind::Human).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn a_missing_keys_file_is_refused_with_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let message = format!("{:#}", KeyStore::open(&dir.path().join("absent.json")).unwrap_err());
        assert!(
            message.contains("auditgraph create-key --principal NAME --role ROLE"),
            "{message}"
        );
    }

    /// Writes the keys file the way an operator's editor would, keeping its mode.
    fn rewrite(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    fn without_entry(path: &Path, id: &str) -> String {
        let mut file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        file["keys"].as_array_mut().unwrap().retain(|entry| entry["id"] != id);
        file.to_string()
    }

    #[test]
    fn a_key_created_while_running_is_accepted_and_a_broken_rewrite_leaves_no_key_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::ZERO).unwrap();
        let second = create_key(&path, "deployer", Role::Writer, PrincipalKind::Service).unwrap();
        let principal = store.authenticate(&second.key).unwrap();
        assert_eq!(
            principal,
            Principal {
                name: "deployer".into(),
                kind: PrincipalKind::Service,
                role: Some(Role::Writer),
                method: Method::ApiKey,
            }
        );
        let good = std::fs::read_to_string(&path).unwrap();
        rewrite(&path, "{\"keys\": [oops");
        let refused = Err(AuthError::invalid("the API key is not valid"));
        assert_eq!(store.authenticate(&first.key), refused);
        assert_eq!(store.authenticate(&second.key), refused);
        assert_eq!(store.authenticate("agk_unknown"), refused);
        rewrite(&path, &good);
        assert_eq!(store.authenticate(&first.key).unwrap().name, "alice");
    }

    #[test]
    fn deleting_a_key_from_the_file_revokes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let kept = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let revoked = create_key(&path, "deployer", Role::Admin, PrincipalKind::Service).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::ZERO).unwrap();
        assert!(store.authenticate(&revoked.key).is_ok());
        rewrite(&path, &without_entry(&path, &revoked.id));
        assert_eq!(
            store.authenticate(&revoked.key),
            Err(AuthError::invalid("the API key is not valid"))
        );
        assert_eq!(store.authenticate(&kept.key).unwrap().name, "alice");
    }

    #[test]
    fn a_deleted_or_unreadable_keys_file_leaves_no_key_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::ZERO).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(store.authenticate(&created.key).is_err());
        assert!(
            store.authenticate(&created.key).is_err(),
            "and stays so at the next look"
        );
        // A directory in its place cannot be read as a file.
        std::fs::create_dir(&path).unwrap();
        assert!(store.authenticate(&created.key).is_err());
        std::fs::remove_dir(&path).unwrap();
        rewrite(&path, &good);
        assert_eq!(store.authenticate(&created.key).unwrap().name, "alice");
    }

    #[test]
    fn a_rewrite_keeping_the_length_and_modification_time_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::ZERO).unwrap();
        assert_eq!(store.authenticate(&created.key).unwrap().role, Some(Role::Reader));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let promoted = text.replace("\"reader\"", "\"writer\"");
        assert_eq!(promoted.len(), text.len());
        rewrite(&path, &promoted);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(store.authenticate(&created.key).unwrap().role, Some(Role::Writer));
    }

    #[test]
    fn the_keys_file_is_looked_at_no_more_than_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        let store = KeyStore::open_with_interval(&path, Duration::from_secs(3600)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.authenticate(&created.key).unwrap().name, "alice");
    }

    #[cfg(unix)]
    #[test]
    fn a_keys_file_others_may_write_still_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "alice", Role::Reader, PrincipalKind::Human).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_file(&path).unwrap().writable_by_others);
        let store = KeyStore::open_with_interval(&path, Duration::ZERO).unwrap();
        assert!(store.state.lock().unwrap().warned_writable);
        assert_eq!(store.authenticate(&created.key).unwrap().name, "alice");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!read_file(&path).unwrap().writable_by_others);
    }
}
