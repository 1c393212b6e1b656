//! An append-only Merkle tree hashed as in RFC 9162 §2.1 (the Certificate Transparency tree), so
//! that anyone holding a signed root can check, with standard tooling, that an event is in the log
//! (inclusion proof) and that the log only ever grew (consistency proof).
//!
//! The tree is described by its *perfect* subtrees: level `l`, index `i` is the hash of leaves
//! `[i·2^l, (i+1)·2^l)`, present only once all those leaves exist. These never change after they
//! are complete, so a store can keep them as immutable rows; every root and proof is a fold of a
//! few of them. The planners ([`root_nodes`], [`inclusion_nodes`], [`consistency_nodes`],
//! [`append_nodes`]) name those few nodes up front, so a caller can fetch them in one query and
//! then run the pure computation against what it fetched.

use std::collections::HashMap;
use std::hash::BuildHasher;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; 32];

/// Position of a perfect subtree: `(level, index)`, covering leaves `[index·2^level, (index+1)·2^level)`.
pub type NodeId = (u8, u64);

/// A perfect node and its hash, `(level, index, hash)`: what an append gives the store to insert.
pub type NodeHash = (u8, u64, Hash);

/// The hash of one log entry, `SHA-256(0x00 || data)`: the domain separation byte keeps a leaf from
/// ever being passed off as an interior node (second-preimage protection, RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node, `SHA-256(0x01 || left || right)`, as RFC 9162 §2.1.1 defines it,
/// so that our roots equal those of every other implementation of the standard.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree, `SHA-256("")` (RFC 9162 `MTH({})`), so that a log with no entries
/// still has a well-defined, signable root.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// Where perfect subtree hashes come from (the database, a prefetched map, or memory), so that the
/// proof algorithms stay pure and independent of storage.
pub trait Nodes {
    /// Why a node could not be had (a database error, or a node that was not prefetched).
    type Error;

    /// The hash of the perfect subtree at `level`, `index`.
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// A perfect node that a [`Nodes`] source does not hold: the caller asked outside the tree, or did
/// not prefetch what the planner listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tree node at level {level}, index {index} is not available")]
pub struct MissingNode {
    /// Level of the missing node.
    pub level: u8,
    /// Index of the missing node within its level.
    pub index: u64,
}

/// Why a root, a proof or an append could not be computed, so callers can tell a bad request from a
/// storage failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// An inclusion proof was asked for a leaf the tree does not (yet) hold.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    IndexOutOfRange {
        /// The requested leaf.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("a tree of {old} leaves cannot be a prefix of a tree of {new} leaves")]
    OldLargerThanNew {
        /// The size of the earlier tree.
        old: u64,
        /// The size of the later tree.
        new: u64,
    },
    /// The tree already holds as many leaves as a `u64` size can count.
    #[error("the tree is full")]
    Full,
    /// The node source failed.
    #[error("reading a tree node failed")]
    Nodes(#[source] E),
}

/// The largest power of two strictly below `n`, the split point `k` of RFC 9162 §2.1.1 (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The perfect nodes, left to right, whose fold is the RFC 9162 subtree hash of leaves
/// `[start, end)`. `start` is a multiple of a power of two at least `end - start`, as for every
/// subtree the RFC's recursion reaches, so each node is aligned.
fn range_nodes(start: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let mut at = start;
    let count = end - start;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if count & width != 0 {
            nodes.push((level, at >> level));
            at += width;
        }
    }
    nodes
}

/// The subtree hash of `[start, end)`: its perfect nodes folded from the right.
fn range_hash<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let ids = range_nodes(start, end);
    let mut ids = ids.iter().rev();
    let Some(&(level, index)) = ids.next() else {
        return Ok(empty_root());
    };
    let mut hash = nodes.perfect(level, index)?;
    for &(level, index) in ids {
        hash = node_hash(&nodes.perfect(level, index)?, &hash);
    }
    Ok(hash)
}

/// The leaf ranges whose subtree hashes make up RFC 9162 `PATH(index, D[0:size])`, in proof order
/// (nearest the leaf first). Requires `index < size`.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The leaf ranges whose subtree hashes make up RFC 9162 `PROOF(old, D[0:new])`, in proof order.
/// Empty when `old == 0`, `old >= new`.
fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old == 0 || old >= new {
        return ranges;
    }
    let (mut lo, mut hi) = (0, new);
    let mut whole = true;
    loop {
        let (m, n) = (old - lo, hi - lo);
        if m == n {
            if !whole {
                ranges.push((lo, hi));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
}

fn nodes_of(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    ranges
        .iter()
        .flat_map(|&(start, end)| range_nodes(start, end))
        .collect()
}

fn hashes_of<N: Nodes>(nodes: &N, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, ProofError<N::Error>> {
    ranges
        .iter()
        .map(|&(start, end)| range_hash(nodes, start, end).map_err(ProofError::Nodes))
        .collect()
}

/// The perfect nodes whose fold is the root of a tree of `size` leaves (one per set bit of `size`,
/// largest first), so a caller can fetch exactly those before calling [`root`].
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// The perfect nodes [`inclusion_proof`] reads for leaf `index` of a tree of `size` leaves, so a
/// caller can fetch them in one query first. Empty when `index >= size` (there is no proof).
pub fn inclusion_nodes(index: u64, size: u64) -> Vec<NodeId> {
    if index >= size {
        return Vec::new();
    }
    nodes_of(&inclusion_ranges(index, size))
}

/// The perfect nodes [`consistency_proof`] reads between trees of `old` and `new` leaves, so a
/// caller can fetch them in one query first. Empty when the proof is empty or cannot exist.
pub fn consistency_nodes(old: u64, new: u64) -> Vec<NodeId> {
    nodes_of(&consistency_ranges(old, new))
}

/// The existing perfect nodes [`append`] reads to add leaf number `size`: the left sibling at each
/// level while the new node is a right child.
pub fn append_nodes(size: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let (mut level, mut index) = (0u8, size);
    while index & 1 == 1 {
        nodes.push((level, index - 1));
        level += 1;
        index >>= 1;
    }
    nodes
}

/// The RFC 9162 root (`MTH`) of the first `size` leaves, the value a checkpoint signs.
pub fn root<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, ProofError<N::Error>> {
    range_hash(nodes, 0, size).map_err(ProofError::Nodes)
}

/// The RFC 9162 inclusion proof (`PATH`) of leaf `index` in the tree of `size` leaves, nearest the
/// leaf first, so a client holding that tree's root can check the entry is in the log.
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<N::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    hashes_of(nodes, &inclusion_ranges(index, size))
}

/// The RFC 9162 consistency proof (`PROOF`/`SUBPROOF`) that the tree of `old` leaves is a prefix of
/// the tree of `new` leaves, so a client can check the log was only appended to. It is empty when
/// `old == new` and when `old == 0`: every tree extends the empty one, so there is nothing to prove.
pub fn consistency_proof<N: Nodes>(nodes: &N, old: u64, new: u64) -> Result<Vec<Hash>, ProofError<N::Error>> {
    if old > new {
        return Err(ProofError::OldLargerThanNew { old, new });
    }
    hashes_of(nodes, &consistency_ranges(old, new))
}

/// Checks an inclusion proof as RFC 9162 §2.1.3.2 describes: `leaf` (a [`leaf_hash`]) is entry
/// `index` of the tree of `size` leaves whose root is `root`. Needs nothing from the log, so clients
/// verify offline.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && hash == *root
}

/// Checks a consistency proof as RFC 9162 §2.1.4.2 describes: the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`. Equal sizes need an
/// empty proof and equal roots; `old == 0` needs an empty proof and the empty root as `old_root`
/// (any tree extends the empty tree, so `new_root` is not constrained by the proof).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == 0 {
        return proof.is_empty() && *old_root == empty_root() && (new != 0 || new_root == old_root);
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let seed = old.is_power_of_two().then_some(old_root);
    let mut path = seed.into_iter().chain(proof);
    let Some(first) = path.next() else {
        return false;
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (*first, *first);
    for node in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            old_hash = node_hash(node, &old_hash);
            new_hash = node_hash(node, &new_hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, node);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && old_hash == *old_root && new_hash == *new_root
}

/// Appends leaf number `size` (0-based) to a tree of `size` leaves: returns the perfect nodes that
/// become complete, `(level, index, hash)` from the leaf itself (level 0) up through each parent
/// while the index is odd, so a store inserts them together with the entry. Reads only the nodes
/// [`append_nodes`] lists.
pub fn append<N: Nodes>(nodes: &N, size: u64, leaf: Hash) -> Result<Vec<NodeHash>, ProofError<N::Error>> {
    if size == u64::MAX {
        return Err(ProofError::Full);
    }
    let mut created = vec![(0, size, leaf)];
    let (mut level, mut index, mut hash) = (0u8, size, leaf);
    while index & 1 == 1 {
        let left = nodes.perfect(level, index - 1).map_err(ProofError::Nodes)?;
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        created.push((level, index, hash));
    }
    Ok(created)
}

/// A prefetched set of nodes (from [`root_nodes`], [`inclusion_nodes`], … and one query) is a node
/// source in its own right.
impl<S: BuildHasher> Nodes for HashMap<NodeId, Hash, S> {
    type Error = MissingNode;

    fn perfect(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.get(&(level, index)).copied().ok_or(MissingNode { level, index })
    }
}

/// A whole tree in memory, every perfect node kept, for tests and for verifying an exported log
/// offline without a database.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect node at level `l`, index `i`.
    levels: Vec<Vec<Hash>>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]), completing the perfect nodes above it.
    pub fn push(&mut self, leaf: Hash) {
        let (mut level, mut index, mut hash) = (0usize, self.size, leaf);
        loop {
            if level == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                break;
            };
            // The row holds exactly `index` nodes, so its last one is the left sibling.
            let left = if index & 1 == 1 { row.last().copied() } else { None };
            row.push(hash);
            let Some(left) = left else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
        }
        self.size += 1;
    }

    /// How many leaves the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the whole tree (the empty root when it has no leaves).
    pub fn root(&self) -> Hash {
        // The rightmost node of each level whose bit is set in `size` is one of the root's
        // perfect nodes; fold them from the smallest (rightmost) up.
        let mut root: Option<Hash> = None;
        for (level, row) in self.levels.iter().enumerate() {
            if (self.size >> level) & 1 == 1
                && let Some(node) = row.last()
            {
                root = Some(match root {
                    None => *node,
                    Some(right) => node_hash(node, &right),
                });
            }
        }
        root.unwrap_or_else(empty_root)
    }
}

/// The root of a tree computed from its leaves and perfect subtrees given in order, left to right,
/// holding only one node per level: an exported part of the log (its events' leaves, and the
/// subtrees between them) checks against a signed root in memory that does not grow with it.
#[derive(Clone, Debug, Default)]
pub struct CompactRange {
    /// Leaves covered so far.
    size: u64,
    /// The perfect nodes whose sizes add up to `size`, largest first (level, hash).
    stack: Vec<(u8, Hash)>,
}

impl CompactRange {
    /// An empty range, starting at leaf 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves covered so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the perfect subtree `(level, index)` (a leaf hash at level 0), which must start
    /// where the range ends.
    pub fn push(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), String> {
        let width = 1_u64
            .checked_shl(u32::from(level))
            .filter(|_| level < 63)
            .ok_or_else(|| format!("level {level} is out of range"))?;
        let start = index
            .checked_mul(width)
            .ok_or_else(|| format!("node (level {level}, index {index}) is out of range"))?;
        if start != self.size {
            return Err(format!(
                "node (level {level}, index {index}) covers leaves from {start}, but the range ends at leaf {}",
                self.size
            ));
        }
        let (mut level, mut hash) = (level, hash);
        // `size` is a multiple of the node's width: a node of the same level on the stack is its
        // left sibling.
        while let Some(&(top, left)) = self.stack.last() {
            if top != level {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            level += 1;
        }
        self.stack.push((level, hash));
        self.size = start + width;
        Ok(())
    }

    /// The root of the tree of the leaves covered (RFC 9162).
    pub fn root(&self) -> Hash {
        let mut root: Option<Hash> = None;
        for (_, node) in self.stack.iter().rev() {
            root = Some(match root {
                None => *node,
                Some(right) => node_hash(node, &right),
            });
        }
        root.unwrap_or_else(empty_root)
    }
}

/// The perfect subtrees that cover leaves `from..to` exactly, left to right, each as large as its
/// place allows: the nodes an export gives for the leaves it leaves out.
pub fn covering_nodes(from: u64, to: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    let mut at = from;
    while at < to {
        let mut level = 0_u8;
        while level < 62 {
            let wider = 1_u64 << (level + 1);
            if !at.is_multiple_of(wider) || at + wider > to {
                break;
            }
            level += 1;
        }
        nodes.push((level, at >> level));
        at += 1_u64 << level;
    }
    nodes
}

impl Nodes for MemoryTree {
    type Error = MissingNode;

    fn perfect(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
    use serde::Deserialize;

    use super::*;

    const VECTORS: &str = include_str!("../../tests/fixtures/merkle/rfc6962-vectors.json");
    const INCLUSION_PROBES: &str = include_str!("../../tests/fixtures/merkle/inclusion-probes.json");
    const CONSISTENCY_PROBES: &str = include_str!("../../tests/fixtures/merkle/consistency-probes.json");

    #[derive(Deserialize)]
    struct Vectors {
        leaves: Vec<String>,
        nodes: Vec<Vec<String>>,
        roots: Vec<String>,
        inclusion: Vec<InclusionVector>,
        consistency: Vec<ConsistencyVector>,
    }

    #[derive(Deserialize)]
    struct InclusionVector {
        index: u64,
        size: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ConsistencyVector {
        old: u64,
        new: u64,
        proof: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InclusionProbe {
        file: String,
        leaf_idx: u64,
        tree_size: u64,
        root: String,
        leaf_hash: String,
        proof: Option<Vec<String>>,
        want_err: bool,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ConsistencyProbe {
        file: String,
        size1: u64,
        size2: u64,
        root1: String,
        root2: String,
        proof: Option<Vec<String>>,
        want_err: bool,
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hash_hex(text: &str) -> Hash {
        unhex(text).try_into().unwrap()
    }

    /// A probe's base64 value as a hash. Some probes use placeholders of other lengths ("don't care",
    /// empty) where the reference verifier takes byte strings; our API takes 32-byte hashes, so a
    /// placeholder is mapped to one by hashing it, which keeps equal placeholders equal and distinct
    /// from every real hash.
    fn hash_b64(text: &str) -> Hash {
        let bytes = STANDARD.decode(text).unwrap();
        match Hash::try_from(bytes.as_slice()) {
            Ok(hash) => hash,
            Err(_) => Sha256::new()
                .chain_update(b"placeholder ")
                .chain_update(&bytes)
                .finalize()
                .into(),
        }
    }

    fn hashes_b64(texts: &Option<Vec<String>>) -> Vec<Hash> {
        texts.iter().flatten().map(|t| hash_b64(t)).collect()
    }

    fn vectors() -> Vectors {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn vector_tree() -> MemoryTree {
        let mut tree = MemoryTree::new();
        for leaf in vectors().leaves {
            tree.push(leaf_hash(&unhex(&leaf)));
        }
        tree
    }

    fn leaf_data(i: u64) -> Vec<u8> {
        // Varying lengths, deterministic contents.
        let seed = Sha256::digest(i.to_be_bytes());
        seed[..(i % 33) as usize].to_vec()
    }

    fn tree_of(size: u64) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for i in 0..size {
            tree.push(leaf_hash(&leaf_data(i)));
        }
        tree
    }

    fn root_at(tree: &MemoryTree, size: u64) -> Hash {
        root(tree, size).unwrap()
    }

    fn roots_of(tree: &MemoryTree) -> Vec<Hash> {
        (0..=tree.size()).map(|size| root(tree, size).unwrap()).collect()
    }

    fn flip(proof: &[Hash], element: usize, bit: usize) -> Vec<Hash> {
        let mut proof = proof.to_vec();
        proof[element][bit / 8] ^= 1 << (bit % 8);
        proof
    }

    /// A node source that records which nodes were read.
    struct Recording<'a> {
        inner: &'a MemoryTree,
        read: RefCell<Vec<NodeId>>,
    }

    impl<'a> Recording<'a> {
        fn new(inner: &'a MemoryTree) -> Self {
            Self {
                inner,
                read: RefCell::new(Vec::new()),
            }
        }

        fn take(&self) -> Vec<NodeId> {
            std::mem::take(&mut self.read.borrow_mut())
        }
    }

    impl Nodes for Recording<'_> {
        type Error = MissingNode;

        fn perfect(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
            self.read.borrow_mut().push((level, index));
            self.inner.perfect(level, index)
        }
    }

    /// A tree of `2^64 - 1` identical leaves, whose perfect nodes depend only on their level: it
    /// lets proofs at the largest sizes be built and checked without storing anything.
    struct Uniform {
        levels: Vec<Hash>,
    }

    impl Uniform {
        fn new() -> Self {
            let mut levels = vec![leaf_hash(b"same")];
            for l in 0..63 {
                let below = levels[l];
                levels.push(node_hash(&below, &below));
            }
            Self { levels }
        }
    }

    impl Nodes for Uniform {
        type Error = MissingNode;

        fn perfect(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
            let fits = (index as u128 + 1) << level <= u64::MAX as u128;
            match self.levels.get(usize::from(level)) {
                Some(hash) if fits => Ok(*hash),
                _ => Err(MissingNode { level, index }),
            }
        }
    }

    #[test]
    fn the_hashes_follow_rfc_9162() {
        assert_eq!(
            empty_root(),
            hash_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            leaf_hash(b""),
            hash_hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut preimage = vec![0x01];
        preimage.extend_from_slice(&a);
        preimage.extend_from_slice(&b);
        assert_eq!(node_hash(&a, &b), <Hash>::from(Sha256::digest(&preimage)));
    }

    #[test]
    fn the_published_vectors_give_the_published_roots_and_nodes() {
        let vectors = vectors();
        let tree = vector_tree();
        let roots: Vec<Hash> = vectors.roots.iter().map(|r| hash_hex(r)).collect();
        assert_eq!(roots.len(), 9);
        assert_eq!(roots_of(&tree), roots);
        assert_eq!(tree.root(), roots[8]);
        for (level, row) in vectors.nodes.iter().enumerate() {
            for (index, node) in row.iter().enumerate() {
                assert_eq!(tree.perfect(level as u8, index as u64).unwrap(), hash_hex(node));
            }
        }
        for size in 0..=8u64 {
            let mut partial = MemoryTree::new();
            for leaf in &vectors.leaves[..size as usize] {
                partial.push(leaf_hash(&unhex(leaf)));
            }
            assert_eq!(partial.root(), roots[size as usize], "size {size}");
        }
    }

    #[test]
    fn the_published_inclusion_and_consistency_proofs_are_reproduced_and_verify() {
        let vectors = vectors();
        let tree = vector_tree();
        let roots = roots_of(&tree);
        for v in &vectors.inclusion {
            let want: Vec<Hash> = v.proof.iter().map(|h| hash_hex(h)).collect();
            let leaf = tree.perfect(0, v.index).unwrap();
            assert_eq!(
                inclusion_proof(&tree, v.index, v.size).unwrap(),
                want,
                "{} of {}",
                v.index,
                v.size
            );
            assert!(verify_inclusion(&leaf, v.index, v.size, &want, &roots[v.size as usize]));
        }
        assert_eq!(vectors.inclusion.len(), 5);
        for v in &vectors.consistency {
            let want: Vec<Hash> = v.proof.iter().map(|h| hash_hex(h)).collect();
            assert_eq!(
                consistency_proof(&tree, v.old, v.new).unwrap(),
                want,
                "{} to {}",
                v.old,
                v.new
            );
            let (old_root, new_root) = (roots[v.old as usize], roots[v.new as usize]);
            assert!(verify_consistency(v.old, v.new, &old_root, &new_root, &want));
        }
        assert_eq!(vectors.consistency.len(), 5);
    }

    #[test]
    fn every_published_inclusion_probe_is_accepted_or_rejected_as_published() {
        let probes: Vec<InclusionProbe> = serde_json::from_str(INCLUSION_PROBES).unwrap();
        assert!(probes.len() > 90);
        let tree = vector_tree();
        for p in &probes {
            // A leaf hash of another length cannot even be passed to us (the reference refuses it too).
            let leaf = Hash::try_from(STANDARD.decode(&p.leaf_hash).unwrap()).ok();
            let (root, proof) = (hash_b64(&p.root), hashes_b64(&p.proof));
            let accepted = leaf.is_some_and(|leaf| verify_inclusion(&leaf, p.leaf_idx, p.tree_size, &proof, &root));
            assert_eq!(accepted, !p.want_err, "{}", p.file);
            if accepted && p.tree_size <= 8 && root == root_at(&tree, p.tree_size) {
                assert_eq!(
                    inclusion_proof(&tree, p.leaf_idx, p.tree_size).unwrap(),
                    proof,
                    "{}",
                    p.file
                );
            }
        }
    }

    /// The one published probe we answer differently, on purpose: the reference verifier refuses
    /// every consistency check from size 0, while we accept the empty proof from the empty tree (its
    /// root must be the empty root), since every tree extends the empty one.
    const CONSISTENCY_FROM_EMPTY: &str = "testdata/consistency/additional/size1-is-zero-and-size2-is-not-zero.json";

    #[test]
    fn every_published_consistency_probe_is_accepted_or_rejected_as_published_but_the_one_from_empty() {
        let probes: Vec<ConsistencyProbe> = serde_json::from_str(CONSISTENCY_PROBES).unwrap();
        assert!(probes.len() > 90);
        let tree = vector_tree();
        for p in &probes {
            let (old, new, proof) = (hash_b64(&p.root1), hash_b64(&p.root2), hashes_b64(&p.proof));
            let accepted = verify_consistency(p.size1, p.size2, &old, &new, &proof);
            assert_eq!(accepted, !p.want_err || p.file == CONSISTENCY_FROM_EMPTY, "{}", p.file);
            if accepted && p.size2 <= 8 && old == root_at(&tree, p.size1) && new == root_at(&tree, p.size2) {
                assert_eq!(consistency_proof(&tree, p.size1, p.size2).unwrap(), proof, "{}", p.file);
            }
        }
    }

    #[test]
    fn roots_and_proofs_match_an_independent_implementation_for_trees_up_to_200_leaves() {
        let mut theirs = MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
        let mut ours = MemoryTree::new();
        let mut roots = vec![empty_root()];
        for size in 1..=200u64 {
            let data = leaf_data(size * 7919);
            theirs.push(data.clone());
            ours.push(leaf_hash(&data));
            let their_root = theirs.root();
            assert_eq!(their_root.as_bytes().as_slice(), ours.root().as_slice(), "size {size}");
            roots.push(ours.root());

            for index in 0..size {
                let proof = inclusion_proof(&ours, index, size).unwrap();
                let their_proof = theirs.prove_inclusion(index as usize);
                assert_eq!(their_proof.as_bytes(), proof.concat().as_slice(), "{index} of {size}");
                let leaf = theirs.get(index as usize).unwrap();
                let as_theirs = InclusionProof::<sha2::Sha256>::from_digests(proof.iter().map(|h| h.into()));
                assert!(their_root.verify_inclusion(leaf, index, &as_theirs).is_ok());
                assert!(verify_inclusion(&leaf_hash(leaf), index, size, &proof, &ours.root()));
            }

            for old in 1..=size {
                let proof = consistency_proof(&ours, old, size).unwrap();
                let their_proof = theirs.prove_consistency((size - old) as usize);
                assert_eq!(their_proof.as_bytes(), proof.concat().as_slice(), "{old} to {size}");
                let old_root = RootHash::<sha2::Sha256>::new(roots[old as usize].into(), old);
                let as_theirs = ConsistencyProof::<sha2::Sha256>::from_digests(proof.iter().map(|h| h.into()));
                assert!(their_root.verify_consistency(&old_root, &as_theirs).is_ok());
                assert!(verify_consistency(
                    old,
                    size,
                    &roots[old as usize],
                    &ours.root(),
                    &proof
                ));
            }
        }
    }

    #[test]
    fn an_inclusion_proof_of_every_leaf_verifies_and_no_altered_one_does_up_to_64_leaves() {
        let tree = tree_of(65);
        let roots = roots_of(&tree);
        for size in 1..=64u64 {
            let root = roots[size as usize];
            for index in 0..size {
                let leaf = tree.perfect(0, index).unwrap();
                let proof = inclusion_proof(&tree, index, size).unwrap();
                assert!(verify_inclusion(&leaf, index, size, &proof, &root), "{index} of {size}");

                for element in 0..proof.len() {
                    let bit = (element * 37 + index as usize) % 256;
                    assert!(!verify_inclusion(
                        &leaf,
                        index,
                        size,
                        &flip(&proof, element, bit),
                        &root
                    ));
                }
                let mut other_leaf = leaf;
                other_leaf[31] ^= 1;
                assert!(!verify_inclusion(&other_leaf, index, size, &proof, &root));
                let mut other_root = root;
                other_root[0] ^= 0x80;
                assert!(!verify_inclusion(&leaf, index, size, &proof, &other_root));
                if !proof.is_empty() {
                    assert!(!verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root));
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(!verify_inclusion(&leaf, index, size, &longer, &root));
                assert!(!verify_inclusion(&leaf, size, size, &proof, &root));

                for other in (0..size).filter(|&other| other != index) {
                    assert!(
                        !verify_inclusion(&leaf, other, size, &proof, &root),
                        "{index} as {other} of {size}"
                    );
                }
                for other_size in (index + 1..=65).filter(|&s| s != size) {
                    // A proof for another statement must not verify, unless it is that statement's proof too.
                    if inclusion_proof(&tree, index, other_size).unwrap() != proof {
                        let other_root = roots[other_size as usize];
                        assert!(!verify_inclusion(&leaf, index, other_size, &proof, &other_root));
                    }
                }
            }
        }
    }

    #[test]
    fn a_consistency_proof_of_every_pair_of_sizes_verifies_and_no_altered_one_does_up_to_64_leaves() {
        let tree = tree_of(65);
        let roots = roots_of(&tree);
        for new in 0..=64u64 {
            for old in 0..=new {
                let (old_root, new_root) = (roots[old as usize], roots[new as usize]);
                let proof = consistency_proof(&tree, old, new).unwrap();
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    "{old} to {new}"
                );
                assert_eq!(proof.is_empty(), old == 0 || old == new);

                for element in 0..proof.len() {
                    let bit = (element * 53 + old as usize) % 256;
                    let altered = flip(&proof, element, bit);
                    assert!(
                        !verify_consistency(old, new, &old_root, &new_root, &altered),
                        "{old} to {new}"
                    );
                }
                let mut other_old_root = old_root;
                other_old_root[5] ^= 4;
                assert!(!verify_consistency(old, new, &other_old_root, &new_root, &proof));
                if old != 0 {
                    let mut other_new_root = new_root;
                    other_new_root[9] ^= 2;
                    assert!(!verify_consistency(old, new, &old_root, &other_new_root, &proof));
                }
                if old != new {
                    assert!(!verify_consistency(new, old, &new_root, &old_root, &proof));
                    if !proof.is_empty() {
                        assert!(!verify_consistency(old, new, &old_root, &new_root, &proof[1..]));
                    }
                }
                if !proof.is_empty() || old == new {
                    let mut longer = proof.clone();
                    longer.push(new_root);
                    assert!(!verify_consistency(old, new, &old_root, &new_root, &longer));
                }

                let neighbours = [old.wrapping_sub(1), old, old + 1]
                    .into_iter()
                    .flat_map(|o| [new.wrapping_sub(1), new, new + 1].map(move |n| (o, n)))
                    .filter(|&(o, n)| o <= n && n <= 65 && (o, n) != (old, new));
                for (other_old, other_new) in neighbours {
                    // A proof for another statement must not verify, unless it is that statement's proof too.
                    if consistency_proof(&tree, other_old, other_new).unwrap() != proof {
                        let (o, n) = (roots[other_old as usize], roots[other_new as usize]);
                        assert!(
                            !verify_consistency(other_old, other_new, &o, &n, &proof),
                            "{old} to {new} as {other_old} to {other_new}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_planners_name_exactly_the_nodes_that_are_read_and_only_complete_ones() {
        let tree = tree_of(64);
        let reads = Recording::new(&tree);
        let complete = |size: u64, nodes: &[NodeId]| nodes.iter().all(|&(level, index)| (index + 1) << level <= size);
        for size in 0..=64u64 {
            root(&reads, size).unwrap();
            assert_eq!(reads.take(), root_nodes(size).into_iter().rev().collect::<Vec<_>>());
            assert!(complete(size, &root_nodes(size)));
            assert_eq!(root_nodes(size).len() as u32, size.count_ones());

            for index in 0..size {
                inclusion_proof(&reads, index, size).unwrap();
                let mut read = reads.take();
                let mut planned = inclusion_nodes(index, size);
                read.sort_unstable();
                planned.sort_unstable();
                assert_eq!(read, planned, "{index} of {size}");
                assert!(complete(size, &planned));
            }
            assert!(inclusion_nodes(size, size).is_empty());

            for old in 0..=size {
                consistency_proof(&reads, old, size).unwrap();
                let mut read = reads.take();
                let mut planned = consistency_nodes(old, size);
                read.sort_unstable();
                planned.sort_unstable();
                assert_eq!(read, planned, "{old} to {size}");
                assert!(complete(size, &planned));
            }
        }
    }

    #[test]
    fn proofs_computed_from_prefetched_nodes_equal_those_from_the_whole_tree() {
        let tree = tree_of(37);
        let fetch = |ids: Vec<NodeId>| -> HashMap<NodeId, Hash> {
            ids.into_iter()
                .map(|(l, i)| ((l, i), tree.perfect(l, i).unwrap()))
                .collect()
        };
        assert_eq!(root(&fetch(root_nodes(37)), 37).unwrap(), tree.root());
        let map = fetch(inclusion_nodes(20, 37));
        assert_eq!(
            inclusion_proof(&map, 20, 37).unwrap(),
            inclusion_proof(&tree, 20, 37).unwrap()
        );
        let map = fetch(consistency_nodes(13, 37));
        assert_eq!(
            consistency_proof(&map, 13, 37).unwrap(),
            consistency_proof(&tree, 13, 37).unwrap()
        );
        assert_eq!(
            inclusion_proof(&HashMap::<NodeId, Hash>::new(), 0, 2),
            Err(ProofError::Nodes(MissingNode { level: 0, index: 1 }))
        );
    }

    #[test]
    fn appending_a_thousand_leaves_gives_the_roots_of_the_whole_tree() {
        let mut store: HashMap<NodeId, Hash> = HashMap::new();
        let mut tree = MemoryTree::new();
        for size in 0..1000u64 {
            let leaf = leaf_hash(&leaf_data(size));
            let needed = append_nodes(size);
            let prefetched: HashMap<NodeId, Hash> = needed.iter().map(|id| (*id, store[id])).collect();
            let created = append(&prefetched, size, leaf).unwrap();
            assert_eq!(created.len(), needed.len() + 1);
            assert_eq!(created[0], (0, size, leaf));
            for (level, index, hash) in created {
                assert!(
                    store.insert((level, index), hash).is_none(),
                    "({level}, {index}) written twice"
                );
            }
            tree.push(leaf);
            assert_eq!(root(&store, size + 1).unwrap(), tree.root(), "size {}", size + 1);
            assert_eq!(root(&tree, size + 1).unwrap(), tree.root());
        }
        assert_eq!(tree.size(), 1000);
        assert_eq!(store.len(), 1000 * 2 - 1000u64.count_ones() as usize);
    }

    #[test]
    fn edge_cases_are_refused_or_empty() {
        let tree = tree_of(5);
        assert_eq!(MemoryTree::new().root(), empty_root());
        assert_eq!(root(&tree, 0).unwrap(), empty_root());
        assert!(root_nodes(0).is_empty());
        assert_eq!(
            inclusion_proof(&tree, 0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            inclusion_proof(&tree, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            consistency_proof(&tree, 4, 3),
            Err(ProofError::OldLargerThanNew { old: 4, new: 3 })
        );
        assert_eq!(consistency_proof(&tree, 3, 3).unwrap(), Vec::<Hash>::new());
        assert_eq!(consistency_proof(&tree, 0, 5).unwrap(), Vec::<Hash>::new());
        assert!(consistency_nodes(4, 3).is_empty());
        assert_eq!(append(&tree, u64::MAX, leaf_hash(b"")), Err(ProofError::Full));
        assert_eq!(
            root(&tree, 6),
            Err(ProofError::Nodes(MissingNode { level: 1, index: 2 }))
        );

        let empty = empty_root();
        let some = tree.root();
        assert!(!verify_inclusion(&empty, 0, 0, &[], &empty));
        assert!(verify_consistency(0, 0, &empty, &empty, &[]));
        assert!(!verify_consistency(0, 0, &some, &some, &[]));
        assert!(verify_consistency(0, 5, &empty, &some, &[]));
        assert!(!verify_consistency(0, 5, &some, &some, &[]));
        assert!(!verify_consistency(0, 5, &empty, &some, &[some]));
        assert!(verify_consistency(5, 5, &some, &some, &[]));
        assert!(!verify_consistency(5, 5, &some, &some, &[some]));
    }

    #[test]
    fn trees_of_up_to_two_to_the_64_minus_one_leaves_are_planned_and_proven() {
        let uniform = Uniform::new();
        let leaf = uniform.levels[0];
        for size in [
            1u64 << 62,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(root_nodes(size).len() as u32, size.count_ones());
            let tree_root = root(&uniform, size).unwrap();
            for index in [0, 1, size / 2, size - 2, size - 1] {
                let proof = inclusion_proof(&uniform, index, size).unwrap();
                assert!(inclusion_nodes(index, size).len() >= proof.len());
                assert!(proof.len() <= 64);
                assert!(
                    verify_inclusion(&leaf, index, size, &proof, &tree_root),
                    "{index} of {size}"
                );
                assert!(!verify_inclusion(&leaf, index, size, &flip(&proof, 0, 3), &tree_root));
            }
            for old in [1, 2, 3, size / 2 + 1, size - 1, size] {
                let proof = consistency_proof(&uniform, old, size).unwrap();
                let old_root = root(&uniform, old).unwrap();
                assert!(
                    verify_consistency(old, size, &old_root, &tree_root, &proof),
                    "{old} to {size}"
                );
            }
            assert_eq!(append_nodes(size - 1).len(), (size - 1).trailing_ones() as usize);
            let created = append(&uniform, size - 1, leaf).unwrap();
            let top = size.trailing_zeros() as u8;
            assert_eq!(
                created.last().map(|&(level, _, hash)| (level, hash)),
                Some((top, uniform.levels[top as usize]))
            );
        }
        assert_eq!(root_nodes(1 << 63), vec![(63, 0)]);
        assert_eq!(inclusion_nodes((1 << 63) - 1, 1 << 63).len(), 63);
    }

    #[test]
    fn a_compact_range_of_leaves_and_covering_nodes_gives_the_root_of_the_whole_tree() {
        for size in [0_u64, 1, 2, 3, 5, 8, 13, 64, 100] {
            let mut tree = MemoryTree::new();
            for i in 0..size {
                tree.push(leaf_hash(&i.to_le_bytes()));
            }
            // Keep every third leaf and cover the rest with the tree's perfect nodes.
            let mut range = CompactRange::new();
            let mut at = 0;
            for kept in (0..size).filter(|i| i % 3 == 1) {
                for (level, index) in covering_nodes(at, kept) {
                    range.push(level, index, tree.perfect(level, index).unwrap()).unwrap();
                }
                range.push(0, kept, leaf_hash(&kept.to_le_bytes())).unwrap();
                at = kept + 1;
            }
            for (level, index) in covering_nodes(at, size) {
                range.push(level, index, tree.perfect(level, index).unwrap()).unwrap();
            }
            assert_eq!(range.size(), size);
            assert_eq!(range.root(), tree.root(), "size {size}");
        }
        let mut range = CompactRange::new();
        assert!(
            range.push(0, 1, empty_root()).is_err(),
            "a node must start where the range ends"
        );
        assert!(range.push(1, 0, empty_root()).is_ok());
        assert!(range.push(2, 0, empty_root()).is_err());
    }
}
