//! API keys: `agk_` and 32 random bytes, kept in the keys file only as their SHA-256.
//!
//! A stolen keys file therefore lets nobody in, and a key is shown once, when it is created. The
//! keys are random, so one unsalted SHA-256 is enough: nothing is left to guess offline.
//!
//! The file is reread when it changes so that `auditgraph create-key` takes effect on a running
//! server; a file that no longer loads leaves the keys already loaded in force.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::{AuthError, MAX_PRINCIPAL_LEN, Method, Principal, PrincipalKind, Role};

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
            check_principal(&entry.principal, entry.kind).with_context(|| name.clone())?;
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
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the keys file {}", path.display()))?;
        KeySet::parse(&text).with_context(|| format!("loading the keys file {}", path.display()))
    }

    /// Finds the entry of `token`, comparing its hash with every stored hash whatever matches, so that
    /// the time taken says nothing about which key (if any) is close. Also returns how many
    /// comparisons were made, which is always the number of keys.
    pub(crate) fn find(&self, token: &str) -> (Option<&KeyEntry>, usize) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        let mut comparisons = 0;
        for (position, hash) in self.hashes.iter().enumerate() {
            let equal = hash[..].ct_eq(&digest[..]);
            index.conditional_assign(&(position as u64), equal);
            found |= equal;
            comparisons += 1;
        }
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

/// Refuses principals that could not be audited: empty, too long, or anonymous.
fn check_principal(principal: &str, kind: PrincipalKind) -> anyhow::Result<()> {
    if principal.trim().is_empty() {
        bail!("the principal is empty");
    }
    if principal.chars().count() > MAX_PRINCIPAL_LEN {
        bail!("the principal is longer than {MAX_PRINCIPAL_LEN} characters");
    }
    if principal.chars().any(char::is_control) {
        bail!("the principal contains control characters");
    }
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
fn encode_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What identifies one version of the keys file: a rewrite changes at least one of them.
type FileVersion = (Option<SystemTime>, u64);

fn file_version(path: &Path) -> std::io::Result<FileVersion> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified().ok(), metadata.len()))
}

/// The keys file of a running server, reread when it changes.
pub(crate) struct KeyStore {
    path: PathBuf,
    interval: Duration,
    state: Mutex<StoreState>,
}

struct StoreState {
    keys: Arc<KeySet>,
    /// The version last read, loaded or not, so that a broken file is read (and reported) once.
    version: Option<FileVersion>,
    checked: Instant,
    /// Whether the file's metadata could not be read last time, so the warning is logged once.
    unreadable: bool,
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
        let version = match file_version(path) {
            Ok(version) => version,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                "the API keys file {} does not exist: create a key with \
                 `auditgraph create-key --principal NAME --role ROLE` (or set AUDITGRAPH_API_KEYS_FILE)",
                path.display()
            ),
            Err(error) => {
                return Err(error).with_context(|| format!("reading the API keys file {}", path.display()));
            }
        };
        let keys = KeySet::load(path)?;
        if keys.len() == 0 {
            tracing::warn!(file = %path.display(), "the API keys file holds no keys yet; no API key is accepted");
        }
        Ok(KeyStore {
            path: path.to_owned(),
            interval,
            state: Mutex::new(StoreState {
                keys: Arc::new(keys),
                version: Some(version),
                checked: Instant::now(),
                unreadable: false,
            }),
        })
    }

    /// The keys in force, rereading the file first if it changed and was not checked recently.
    fn current(&self) -> Arc<KeySet> {
        // A panic elsewhere while holding the lock leaves the state consistent: every field is
        // replaced whole.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() < self.interval {
            return Arc::clone(&state.keys);
        }
        state.checked = Instant::now();
        match file_version(&self.path) {
            Err(error) => {
                if !state.unreadable {
                    tracing::warn!(file = %self.path.display(), %error, "cannot check the API keys file; keeping the keys loaded");
                    state.unreadable = true;
                }
            }
            Ok(version) => {
                state.unreadable = false;
                if state.version != Some(version) {
                    state.version = Some(version);
                    match KeySet::load(&self.path) {
                        Ok(keys) => {
                            tracing::info!(file = %self.path.display(), keys = keys.len(), "API keys reloaded");
                            state.keys = Arc::new(keys);
                        }
                        Err(error) => tracing::warn!(
                            file = %self.path.display(),
                            error = format!("{error:#}"),
                            "the changed API keys file does not load; keeping the keys loaded before"
                        ),
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
            (Some(entry), _) => Ok(Principal {
                name: entry.principal.clone(),
                kind: entry.kind,
                role: Some(entry.role),
                method: Method::ApiKey,
            }),
            (None, _) => Err(AuthError::invalid("the API key is not valid")),
        }
    }
}

/// Creates an API key for `principal` and appends its hash to the keys file at `path`, creating the
/// file if missing. The file is replaced atomically (readers see the old or the new version, never
/// half of one) and is readable by its owner only, so create keys as the user the server runs as.
/// Two runs at the same instant may each append to the version they read, losing one key: run
/// them one after the other.
pub fn create_key(path: &Path, principal: &str, role: Role, kind: PrincipalKind) -> anyhow::Result<CreatedKey> {
    check_principal(principal, kind).context("cannot create the API key")?;
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
        let id = encode_hex(&random_bytes::<4>()?);
        if file.keys.iter().all(|entry| entry.id != id) {
            break id;
        }
    };
    file.keys.push(KeyEntry {
        id: id.clone(),
        principal: principal.to_owned(),
        role,
        kind,
        sha256: encode_hex(&Sha256::digest(key.as_bytes())),
        created_at: chrono::Utc::now(),
    });
    let mut text = serde_json::to_string_pretty(&file).context("serialising the keys file")?;
    text.push('\n');
    write_atomically(path, text.as_bytes()).with_context(|| format!("writing the keys file {}", path.display()))?;
    Ok(CreatedKey { id, key })
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    // Without its `std` feature getrandom's error is no `std::error::Error`, so it is formatted here.
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("reading random bytes from the operating system: {error}"))?;
    Ok(bytes)
}

/// Writes a file through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("the path names no file")?.to_string_lossy();
    let temporary = directory.join(format!(".{name}.{}.tmp", encode_hex(&random_bytes::<6>()?)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&temporary)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("through {}", temporary.display()))
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
            "sha256": encode_hex(&Sha256::digest(key.as_bytes())),
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
        let (first, count) = set.find("agk_first");
        assert_eq!((first.map(|e| e.principal.as_str()), count), (Some("svc-0"), 3));
        let (last, count) = set.find("agk_last");
        assert_eq!((last.map(|e| e.principal.as_str()), count), (Some("svc-2"), 3));
        let (absent, count) = set.find("agk_absent");
        assert_eq!((absent, count), (None, 3));
    }

    #[test]
    fn a_key_differing_in_its_last_character_is_refused() {
        let set = set_of(&["agk_abcdef"]);
        assert!(set.find("agk_abcdef").0.is_some());
        assert!(set.find("agk_abcdeg").0.is_none());
        assert!(set.find("agk_abcde").0.is_none());
    }

    #[test]
    fn an_empty_key_set_finds_nothing_after_no_comparison() {
        assert_eq!(KeySet::default().find("agk_x"), (None, 0));
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
        assert!(text.contains(&encode_hex(&Sha256::digest(created.key.as_bytes()))));
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
        assert_eq!(set.find(&first.key).0.map(|e| e.principal.as_str()), Some("alice"));
        assert_eq!(set.find(&second.key).0.map(|e| e.role), Some(Role::Admin));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
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

    #[test]
    fn a_key_created_while_running_is_accepted_and_a_broken_rewrite_keeps_the_old_keys() {
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
        std::fs::write(&path, "{\"keys\": [oops").unwrap();
        assert_eq!(store.authenticate(&first.key).unwrap().name, "alice");
        assert_eq!(
            store.authenticate("agk_unknown"),
            Err(AuthError::invalid("the API key is not valid"))
        );
    }
}
