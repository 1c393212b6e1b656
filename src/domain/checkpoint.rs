//! Signed checkpoints of the log's Merkle tree in the C2SP formats (`tlog-checkpoint` inside a
//! `signed-note`, Ed25519 keys encoded as in `golang.org/x/mod/sumdb/note`), so that auditors and
//! witnesses can check our tree heads with existing transparency-log tooling.
//!
//! A checkpoint body is `<origin>\n<tree size>\n<base64 root>\n`; the signed note is that text, a
//! blank line, then one `— <key name> <base64(key hash || signature)>` line per signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The algorithm byte of Ed25519 keys in the note key encodings.
const ALG_ED25519: u8 = 0x01;
/// The prefix of every signature line (U+2014 EM DASH, then a space).
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// More signature lines than this make a note malformed, bounding the work spent on one note.
const MAX_SIGNATURES: usize = 100;

/// Why a checkpoint, a key or a signed note was refused, so callers can tell bad input from a
/// signature that does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint body is not `<origin>\n<size>\n<root>\n`.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
    /// The signed note does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Note(&'static str),
    /// A key text does not follow the note key encoding, or its key hash does not match.
    #[error("malformed key: {0}")]
    Key(&'static str),
    /// A signature line by the expected key does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    /// No signature line is by the expected key.
    #[error("the note is not signed by {0}")]
    Unsigned(String),
    /// The system could not provide randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Randomness(getrandom::Error),
}

/// A tree head: which log, how many leaves, and the RFC 9162 root of those leaves. Signing it
/// commits the log to that exact history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log (C2SP: a schema-less URL), so a signature cannot be replayed for another log.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// A checkpoint whose origin can be written on one line, so its body parses back to itself.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        check_origin(&origin)?;
        Ok(Self { origin, size, root })
    }

    /// The C2SP `tlog-checkpoint` text, the exact bytes that get signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Reads a checkpoint body. Only canonical bodies are accepted (decimal size without leading
    /// zeros, padded standard base64 of 32 bytes), and no extension lines: this log writes none, and
    /// a body that does not re-encode to itself could hide a second meaning.
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let Some(lines) = body.strip_suffix('\n') else {
            return Err(CheckpointError::Checkpoint("the body does not end with a newline"));
        };
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root), None) = (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Checkpoint("the body is not exactly three lines"));
        };
        check_origin(origin)?;
        let canonical =
            !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or(CheckpointError::Checkpoint(
                "the tree size is not a canonical decimal number",
            ))?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or(CheckpointError::Checkpoint("the root is not the base64 of 32 bytes"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty() || origin.chars().any(char::is_control) {
        return Err(CheckpointError::Checkpoint(
            "the origin is empty or has control characters",
        ));
    }
    Ok(())
}

/// Key names as the note format allows them: non-empty, no Unicode space, no `+` (the separator of
/// the key encodings).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The 4-byte key hash that names a key in signature lines: the first bytes of
/// SHA-256(name || "\n" || 0x01 || public key).
fn key_hash(name: &str, public: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Decodes `<hash hex>+<base64(0x01 || 32 bytes)>`, the common tail of both key encodings.
fn key_material(hash: &str, key: &str) -> Result<(u32, [u8; 32]), CheckpointError> {
    let hash = (hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(hash, 16).ok())
        .flatten()
        .ok_or(CheckpointError::Key("the key hash is not 8 hex digits"))?;
    let bytes = STANDARD
        .decode(key)
        .map_err(|_| CheckpointError::Key("the key is not standard base64"))?;
    match bytes.split_first() {
        Some((&ALG_ED25519, key)) => {
            let key = <[u8; 32]>::try_from(key).map_err(|_| CheckpointError::Key("the Ed25519 key is not 32 bytes"))?;
            Ok((hash, key))
        }
        Some(_) => Err(CheckpointError::Key("the key algorithm is not Ed25519")),
        None => Err(CheckpointError::Key("the key is empty")),
    }
}

/// The public half of a log's signing key, in the text form auditors configure
/// (`<name>+<hash hex>+<base64(0x01 || public key)>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    hash: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Reads a verifier key text, checking its key hash so a mistyped key is caught on load.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::Key("a verifier key is <name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(CheckpointError::Key("the key name is empty or has a space or a plus"));
        }
        let (hash, key) = key_material(hash, key)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| CheckpointError::Key("not an Ed25519 public key"))?;
        if key_hash(name, &key) != hash {
            return Err(CheckpointError::Key("the key hash does not match the name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            hash,
            key,
        })
    }

    /// The verifier key text, to publish for auditors.
    pub fn text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.hash, STANDARD.encode(key))
    }

    /// The key name, which signature lines repeat.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash, which tells apart keys of the same name in signature lines.
    pub fn hash(&self) -> u32 {
        self.hash
    }
}

/// A log's signing key (`PRIVATE+KEY+<name>+<hash hex>+<base64(0x01 || seed)>`). Its `Debug` shows
/// only the name and key hash, so the secret never reaches a log line.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    hash: u32,
    key: SigningKey,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("hash", &format_args!("{:08x}", self.hash))
            .finish()
    }
}

impl SignerKey {
    /// Makes a new key named `name` from system randomness: returns the key, its signer text (to keep
    /// secret) and its verifier text (to publish).
    pub fn generate(name: &str) -> Result<(Self, String, String), CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::Key("the key name is empty or has a space or a plus"));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(CheckpointError::Randomness)?;
        let key = SigningKey::from_bytes(&seed);
        let mut encoded = vec![ALG_ED25519];
        encoded.extend_from_slice(&seed);
        seed.fill(0);
        let hash = key_hash(name, &key.verifying_key());
        let signer_text = format!("PRIVATE+KEY+{name}+{hash:08x}+{}", STANDARD.encode(&encoded));
        encoded.fill(0);
        let signer = Self {
            name: name.to_owned(),
            hash,
            key,
        };
        let verifier_text = signer.verifier().text();
        Ok((signer, signer_text, verifier_text))
    }

    /// Reads a signer key text, checking the key hash against the public key derived from the seed.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hash), Some(key)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::Key("a signer key is PRIVATE+KEY+<name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(CheckpointError::Key("the key name is empty or has a space or a plus"));
        }
        let (hash, mut seed) = key_material(hash, key)?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        if key_hash(name, &key.verifying_key()) != hash {
            return Err(CheckpointError::Key("the key hash does not match the name and key"));
        }
        Ok(Self {
            name: name.to_owned(),
            hash,
            key,
        })
    }

    /// The key name, which signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, to publish or to check our own notes.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            hash: self.hash,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (for a checkpoint, its [`Checkpoint::body`]) and returns the whole signed
    /// note. Refuses text the note format cannot carry: not ending in a newline, or with control
    /// characters other than newlines.
    pub fn sign(&self, text: &str) -> Result<String, CheckpointError> {
        check_note_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.hash.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }

    /// Signs a checkpoint: its body, as a signed note.
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        self.sign(&checkpoint.body())
    }
}

fn check_note_text(text: &str) -> Result<(), CheckpointError> {
    if !text.ends_with('\n') {
        return Err(CheckpointError::Note("the text does not end with a newline"));
    }
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(CheckpointError::Note("the text has control characters"));
    }
    Ok(())
}

/// Checks a signed note and returns its text: at least one signature line must be by `key` and
/// every line by `key` must verify; lines by other keys are skipped (a note may carry witness
/// cosignatures). Useful on its own for notes that are not checkpoints.
pub fn open_note(note: impl AsRef<[u8]>, key: &VerifierKey) -> Result<String, CheckpointError> {
    let note = std::str::from_utf8(note.as_ref()).map_err(|_| CheckpointError::Note("the note is not valid UTF-8"))?;
    if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(CheckpointError::Note("the note has control characters"));
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(CheckpointError::Note(
            "the note has no blank line before its signatures",
        ));
    };
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    let Some(signatures) = signatures.strip_suffix('\n').filter(|s| !s.is_empty()) else {
        return Err(CheckpointError::Note(
            "the signature block is empty or does not end with a newline",
        ));
    };
    let mut verified = false;
    for (count, line) in signatures.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(CheckpointError::Note("too many signatures"));
        }
        let Some((name, encoded)) = line
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
        else {
            return Err(CheckpointError::Note(
                "a signature line is not \u{2014} <name> <signature>",
            ));
        };
        let blob = STANDARD
            .decode(encoded)
            .ok()
            .filter(|b| b.len() >= 5 && valid_name(name));
        let Some(blob) = blob else {
            return Err(CheckpointError::Note(
                "a signature line has a bad name or signature encoding",
            ));
        };
        let hash = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        if name != key.name || hash != key.hash {
            continue;
        }
        let signature = <[u8; 64]>::try_from(&blob[4..]).map(|bytes| Signature::from_bytes(&bytes));
        match signature {
            Ok(signature) if key.key.verify_strict(text.as_bytes(), &signature).is_ok() => verified = true,
            _ => return Err(CheckpointError::BadSignature(key.name.clone())),
        }
    }
    if !verified {
        return Err(CheckpointError::Unsigned(key.name.clone()));
    }
    Ok(text.to_owned())
}

/// Checks a signed checkpoint: a valid signature by `key` (see [`open_note`]) over a well-formed
/// checkpoint body. Returns the checkpoint, which the caller still compares with its origin and
/// previous tree head.
pub fn open(note: impl AsRef<[u8]>, key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::parse(&open_note(note, key)?)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::domain::merkle::{MemoryTree, leaf_hash};

    const NOTE_VECTORS: &str = include_str!("../../tests/fixtures/merkle/note-vectors.json");

    #[derive(Deserialize)]
    struct NoteVectors {
        peter_verifier: String,
        peter_signer: String,
        peter_hash: String,
        enoch_verifier: String,
        enoch_hash: String,
        bad_verifiers: Vec<String>,
        text: String,
        peter_signature_line: String,
        enoch_signature_line: String,
        tree: TreeVector,
    }

    #[derive(Deserialize)]
    struct TreeVector {
        origin: String,
        size: u64,
        root_of_leaf: String,
        body: String,
    }

    fn vectors() -> NoteVectors {
        serde_json::from_str(NOTE_VECTORS).unwrap()
    }

    fn sample() -> Checkpoint {
        let mut tree = MemoryTree::new();
        for i in 0..11u32 {
            tree.push(leaf_hash(&i.to_be_bytes()));
        }
        Checkpoint::new("audit.example.com/log", tree.size(), tree.root()).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_to_the_same_checkpoint() {
        let (signer, signer_text, verifier_text) = SignerKey::generate("audit.example.com").unwrap();
        assert!(signer_text.starts_with("PRIVATE+KEY+audit.example.com+"));
        assert_eq!(SignerKey::parse(&signer_text).unwrap().verifier(), signer.verifier());
        let verifier = VerifierKey::parse(&verifier_text).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert_eq!(verifier.text(), verifier_text);
        assert_eq!(verifier.name(), "audit.example.com");

        let checkpoint = sample();
        let note = signer.sign_checkpoint(&checkpoint).unwrap();
        assert!(note.starts_with(&format!("{}\n\u{2014} audit.example.com ", checkpoint.body())));
        assert_eq!(open(&note, &verifier).unwrap(), checkpoint);
        assert_eq!(open(note.as_bytes(), &verifier).unwrap(), checkpoint);
        assert_eq!(Checkpoint::parse(&checkpoint.body()).unwrap(), checkpoint);
        assert!(!format!("{signer:?}").contains(&signer_text[signer_text.len() - 20..]));
    }

    #[test]
    fn a_changed_size_root_or_origin_does_not_open() {
        let (signer, _, _) = SignerKey::generate("log").unwrap();
        let checkpoint = sample();
        let note = signer.sign_checkpoint(&checkpoint).unwrap();
        let body = checkpoint.body();
        let signatures = &note[body.len()..];

        let mut changed = Vec::new();
        changed.push(Checkpoint {
            size: checkpoint.size + 1,
            ..checkpoint.clone()
        });
        let mut root = checkpoint.root;
        root[7] ^= 0x10;
        changed.push(Checkpoint {
            root,
            ..checkpoint.clone()
        });
        changed.push(Checkpoint {
            origin: "audit.example.com/other".into(),
            ..checkpoint.clone()
        });
        for other in changed {
            let forged = format!("{}{signatures}", other.body());
            assert_eq!(
                open(&forged, &signer.verifier()),
                Err(CheckpointError::BadSignature("log".into()))
            );
        }
    }

    #[test]
    fn a_signature_by_another_key_does_not_open() {
        let (signer, _, _) = SignerKey::generate("log").unwrap();
        let (other, _, _) = SignerKey::generate("log").unwrap();
        let (witness, _, _) = SignerKey::generate("witness").unwrap();
        let note = other.sign_checkpoint(&sample()).unwrap();
        assert_eq!(
            open(&note, &signer.verifier()),
            Err(CheckpointError::Unsigned("log".into()))
        );
        let note = witness.sign_checkpoint(&sample()).unwrap();
        assert_eq!(
            open(&note, &signer.verifier()),
            Err(CheckpointError::Unsigned("log".into()))
        );

        // Signatures by unknown keys are skipped, so a cosigned note opens with either key.
        let body = sample().body();
        let ours = signer.sign(&body).unwrap();
        let theirs = witness.sign(&body).unwrap();
        let cosigned = format!("{ours}{}", &theirs[body.len() + 1..]);
        assert_eq!(open(&cosigned, &signer.verifier()).unwrap(), sample());
        assert_eq!(open(&cosigned, &witness.verifier()).unwrap(), sample());
    }

    #[test]
    fn malformed_notes_and_bodies_are_refused() {
        let (signer, _, _) = SignerKey::generate("log").unwrap();
        let key = signer.verifier();
        let note = signer.sign_checkpoint(&sample()).unwrap();
        let body = sample().body();

        assert!(matches!(open(note.trim_end(), &key), Err(CheckpointError::Note(_))));
        assert!(matches!(open(&body, &key), Err(CheckpointError::Note(_))));
        assert!(matches!(open(format!("{body}\n"), &key), Err(CheckpointError::Note(_))));
        assert!(matches!(
            open(note.replacen('\u{2014}', "-", 1), &key),
            Err(CheckpointError::Note(_))
        ));
        assert!(matches!(
            open(note.replacen("example", "exa\tmple", 1), &key),
            Err(CheckpointError::Note(_))
        ));
        let mut bytes = note.clone().into_bytes();
        bytes[3] = 0xff;
        assert_eq!(
            open(&bytes, &key),
            Err(CheckpointError::Note("the note is not valid UTF-8"))
        );
        let many = format!("{note}{}", "\u{2014} other AAAAAAAA\n".repeat(MAX_SIGNATURES));
        assert_eq!(open(&many, &key), Err(CheckpointError::Note("too many signatures")));
        assert!(matches!(signer.sign("no newline"), Err(CheckpointError::Note(_))));
        assert!(matches!(signer.sign("bell\u{7}\n"), Err(CheckpointError::Note(_))));

        // A validly signed text that is not a checkpoint body.
        for text in [
            "log\n11\n",
            "log\n011\nAAAA\n",
            "log\n11\nAAAA\n",
            "log\n+11\nAAAA\n",
            "\n1\nAAAA\n",
        ] {
            let signed = signer.sign(text).unwrap();
            assert!(
                matches!(open(&signed, &key), Err(CheckpointError::Checkpoint(_))),
                "{text:?}"
            );
        }
        let extended = format!("{body}extension line\n");
        assert!(matches!(
            open(signer.sign(&extended).unwrap(), &key),
            Err(CheckpointError::Checkpoint(_))
        ));
        assert!(Checkpoint::new("", 1, [0; 32]).is_err());
        assert!(Checkpoint::new("a\nb", 1, [0; 32]).is_err());
        assert_eq!(
            Checkpoint::parse("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
                .unwrap()
                .size,
            0
        );
        assert_eq!(
            Checkpoint::parse(&Checkpoint::new("o", u64::MAX, [9; 32]).unwrap().body())
                .unwrap()
                .size,
            u64::MAX
        );
    }

    #[test]
    fn key_names_and_texts_are_validated() {
        for name in ["", "a b", "a+b", "tab\there", "nbsp\u{a0}"] {
            assert!(SignerKey::generate(name).is_err(), "{name:?}");
        }
        let (signer, signer_text, verifier_text) = SignerKey::generate("log").unwrap();
        assert_eq!(signer.name(), "log");
        for (i, _) in verifier_text.char_indices().skip(1) {
            assert!(VerifierKey::parse(&verifier_text[..i]).is_err());
            assert!(VerifierKey::parse(&verifier_text[i..]).is_err());
        }
        assert!(VerifierKey::parse(&verifier_text.replacen("log", "LOG", 1)).is_err());
        assert!(SignerKey::parse(&signer_text.replacen("log", "lag", 1)).is_err());
        assert!(SignerKey::parse(&signer_text.replacen("PRIVATE", "PUBLIC", 1)).is_err());
        assert!(SignerKey::parse(&verifier_text).is_err());
        assert!(VerifierKey::parse(&signer_text).is_err());
    }

    #[test]
    fn the_sumdb_note_keys_are_read_with_the_same_key_hashes() {
        let v = vectors();
        let peter = VerifierKey::parse(&v.peter_verifier).unwrap();
        assert_eq!(format!("{:08x}", peter.hash()), v.peter_hash);
        assert_eq!(peter.text(), v.peter_verifier);
        let enoch = VerifierKey::parse(&v.enoch_verifier).unwrap();
        assert_eq!(format!("{:08x}", enoch.hash()), v.enoch_hash);
        let signer = SignerKey::parse(&v.peter_signer).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.verifier(), peter);
        for bad in &v.bad_verifiers {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }

        // As the reference tests do: every proper substring, and every byte changed, is refused.
        let bytes = v.peter_verifier.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    let part = String::from_utf8_lossy(&bytes[i..j]);
                    assert!(VerifierKey::parse(&part).is_err(), "{part}");
                }
            }
        }
        for text in [&v.peter_verifier, &v.peter_signer] {
            for i in 0..text.len() {
                let mut changed = text.clone().into_bytes();
                changed[i] += 1;
                let changed = String::from_utf8(changed).unwrap();
                assert!(
                    VerifierKey::parse(&changed).is_err() && SignerKey::parse(&changed).is_err(),
                    "{changed}"
                );
            }
        }
    }

    #[test]
    fn the_sumdb_note_signatures_are_reproduced_and_verified() {
        let v = vectors();
        let signer = SignerKey::parse(&v.peter_signer).unwrap();
        let peter = VerifierKey::parse(&v.peter_verifier).unwrap();
        let enoch = VerifierKey::parse(&v.enoch_verifier).unwrap();
        // Ed25519 is deterministic: the same key and text give the same signature bytes.
        assert_eq!(
            signer.sign(&v.text).unwrap(),
            format!("{}\n{}", v.text, v.peter_signature_line)
        );

        let note = format!("{}\n{}{}", v.text, v.peter_signature_line, v.enoch_signature_line);
        assert_eq!(open_note(&note, &peter).unwrap(), v.text);
        assert_eq!(open_note(&note, &enoch).unwrap(), v.text);
        let only_enoch = format!("{}\n{}", v.text, v.enoch_signature_line);
        assert_eq!(
            open_note(&only_enoch, &peter),
            Err(CheckpointError::Unsigned("PeterNeumann".into()))
        );
        let tampered = note.replacen("problem,", "problem;", 1);
        assert_eq!(
            open_note(&tampered, &peter),
            Err(CheckpointError::BadSignature("PeterNeumann".into()))
        );
        // The text is a note, not a checkpoint.
        assert!(matches!(open(&note, &peter), Err(CheckpointError::Checkpoint(_))));
    }

    #[test]
    fn the_sumdb_tree_note_is_a_checkpoint_body() {
        let tree = vectors().tree;
        let checkpoint = Checkpoint::new(tree.origin, tree.size, leaf_hash(tree.root_of_leaf.as_bytes())).unwrap();
        assert_eq!(checkpoint.body(), tree.body);
        assert_eq!(Checkpoint::parse(&tree.body).unwrap(), checkpoint);
    }
}
