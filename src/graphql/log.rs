//! The transparency log in the API: signed checkpoints and the proofs that check against them.

use async_graphql::{Object, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

use crate::domain::merkle::Hash;
use crate::service::{ConsistencyProof as Consistency, InclusionProof as Inclusion};
use crate::store::StoredCheckpoint;

fn b64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// A signed checkpoint of the transparency log: every event is a leaf of one append-only Merkle
/// tree (RFC 9162), and the checkpoint commits to its size and root, signed with the log's
/// Ed25519 key in the C2SP signed-note checkpoint format, which existing verifiers read.
pub struct LogCheckpoint {
    /// The stored checkpoint.
    pub stored: StoredCheckpoint,
    /// The log's verifier key.
    pub verifier_key: String,
}

/// A signed checkpoint of the transparency log: every event is a leaf of one append-only Merkle
/// tree (RFC 9162), and the checkpoint commits to its size and root, signed with the log's
/// Ed25519 key in the C2SP signed-note checkpoint format, which existing verifiers read.
#[Object]
impl LogCheckpoint {
    /// Leaves the tree held.
    async fn tree_size(&self) -> u64 {
        self.stored.tree_size
    }
    /// The tree's root hash, standard base64 (as in the note).
    async fn root_hash(&self) -> String {
        b64(&self.stored.root_hash)
    }
    /// The signed note: the checkpoint body (origin, size, root), a blank line and the signature
    /// lines. Check it with the verifier key.
    async fn note(&self) -> &str {
        &self.stored.note
    }
    /// The verifier key of the log (`<origin>+<key hash>+<key>`), in the format of Go's
    /// `golang.org/x/mod/sumdb/note`.
    async fn verifier_key(&self) -> &str {
        &self.verifier_key
    }
    /// When the checkpoint was published.
    async fn created_at(&self) -> super::DateTime {
        self.stored.created_at.into()
    }
}

/// The proof that an event is a leaf of a tree: hash the leaf with the audit path to the root.
#[derive(SimpleObject)]
pub struct InclusionProof {
    /// The event.
    pub event_id: Uuid,
    /// Its position in the log, from 0.
    pub leaf_index: u64,
    /// The leaf hash, base64: SHA-256 of 0x00 followed by the event's `eventHash` text.
    pub leaf_hash: String,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path, leaf to root, base64 (RFC 9162 §2.1.3).
    pub hashes: Vec<String>,
    /// The root of that tree, base64.
    pub root_hash: String,
}

impl From<Inclusion> for InclusionProof {
    fn from(p: Inclusion) -> Self {
        Self {
            event_id: p.leaf.event_id,
            leaf_index: p.leaf.index,
            leaf_hash: b64(&p.leaf.hash),
            tree_size: p.tree_size,
            hashes: p.hashes.iter().map(b64).collect(),
            root_hash: b64(&p.root),
        }
    }
}

/// The proof that an older tree is a prefix of a newer one: the log only ever appended.
#[derive(SimpleObject)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub from_size: u64,
    /// The newer tree's size.
    pub to_size: u64,
    /// The older tree's root, base64.
    pub from_root: String,
    /// The newer tree's root, base64.
    pub to_root: String,
    /// The proof, base64 (RFC 9162 §2.1.4).
    pub hashes: Vec<String>,
}

impl From<Consistency> for ConsistencyProof {
    fn from(p: Consistency) -> Self {
        Self {
            from_size: p.from,
            to_size: p.to,
            from_root: b64(&p.from_root),
            to_root: b64(&p.to_root),
            hashes: p.hashes.iter().map(b64).collect(),
        }
    }
}
