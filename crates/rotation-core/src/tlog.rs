//! The audit log as a transparency log: an RFC 9162 Merkle tree over the
//! audit entries (section 2.1), with inclusion and consistency proofs and
//! their verification.
//!
//! Leaf hash `SHA-256(0x00 || entry)`, interior node `SHA-256(0x01 || left ||
//! right)`, the empty tree's root `SHA-256("")`. The tree of `n` leaves
//! splits at the largest power of two smaller than `n`. Hashing goes
//! through the [`CryptoProvider`] port, so this module stays free of any
//! crypto library.
//!
//! The signed checkpoints over the tree are in [`note`].

use crate::error::{Error, Result};
use crate::ports::CryptoProvider;

pub mod note;

/// A SHA-256 hash in the tree.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`: the hash of a leaf.
pub fn leaf_hash(crypto: &dyn CryptoProvider, entry: &[u8]) -> Hash {
    let mut data = Vec::with_capacity(entry.len() + 1);
    data.push(0x00);
    data.extend_from_slice(entry);
    crypto.sha256(&data)
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(crypto: &dyn CryptoProvider, left: &Hash, right: &Hash) -> Hash {
    let mut data = [0u8; 65];
    data[0] = 0x01;
    data[1..33].copy_from_slice(left);
    data[33..].copy_from_slice(right);
    crypto.sha256(&data)
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root (RFC 9162 MTH) of the tree whose leaf hashes are `leaves`.
pub fn root(crypto: &dyn CryptoProvider, leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => crypto.sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(crypto, &root(crypto, &leaves[..k]), &root(crypto, &leaves[k..]))
        }
    }
}

/// The inclusion proof (RFC 9162 PATH) of leaf `index` in the tree whose
/// leaf hashes are `leaves`, from the leaf upwards.
pub fn inclusion_proof(crypto: &dyn CryptoProvider, leaves: &[Hash], index: u64) -> Result<Vec<Hash>> {
    let n = leaves.len();
    let index = usize::try_from(index).ok().filter(|i| *i < n).ok_or_else(|| {
        Error::invalid_input(format!(
            "leaf index {index} is not in a tree of size {n} (indexes start at 0)"
        ))
    })?;
    let mut proof = Vec::new();
    path(crypto, index, leaves, &mut proof);
    Ok(proof)
}

fn path(crypto: &dyn CryptoProvider, m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(crypto, m, &leaves[..k], out);
        out.push(root(crypto, &leaves[k..]));
    } else {
        path(crypto, m - k, &leaves[k..], out);
        out.push(root(crypto, &leaves[..k]));
    }
}

/// The consistency proof (RFC 9162 PROOF) between the tree of the first
/// `from` leaves and the tree of all `leaves`; `1 <= from <= leaves.len()`
/// (the proof between equal sizes is empty).
pub fn consistency_proof(crypto: &dyn CryptoProvider, leaves: &[Hash], from: u64) -> Result<Vec<Hash>> {
    let n = leaves.len();
    let m = usize::try_from(from)
        .ok()
        .filter(|m| *m >= 1 && *m <= n)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "a consistency proof needs 1 <= from <= to; got from {from}, to {n}"
            ))
        })?;
    let mut proof = Vec::new();
    if m < n {
        subproof(crypto, m, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(crypto: &dyn CryptoProvider, m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(crypto, leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(crypto, m, &leaves[..k], whole, out);
        out.push(root(crypto, &leaves[k..]));
    } else {
        subproof(crypto, m - k, &leaves[k..], false, out);
        out.push(root(crypto, &leaves[..k]));
    }
}

/// Whether `proof` shows that `leaf` (a leaf hash) is at `index` in the
/// tree of `size` leaves whose root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    crypto: &dyn CryptoProvider,
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(crypto, p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(crypto, &r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Whether `proof` shows that the tree of `from` leaves with root
/// `from_root` is a prefix of the tree of `to` leaves with root `to_root`
/// (RFC 9162 section 2.1.4.2; equal sizes need an empty proof and equal roots).
pub fn verify_consistency(
    crypto: &dyn CryptoProvider,
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(crypto, c, &fr);
            sr = node_hash(crypto, c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(crypto, &sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *from_root && sr == *to_root
}

/// The right edge of a tree: the roots of its perfect subtrees, largest
/// first (one per set bit of the size). It grows leaf by leaf in constant
/// memory per leaf and gives the root of the tree at its current size, so
/// a log of any length is hashed in one pass without keeping its leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// A frontier from its parts; the number of subtrees must be the number
    /// of set bits of `size`.
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Result<Self> {
        if subtrees.len() != size.count_ones() as usize {
            return Err(Error::tampered(format!(
                "a tree frontier of size {size} needs {} subtree hashes, not {}",
                size.count_ones(),
                subtrees.len()
            )));
        }
        Ok(Frontier { size, subtrees })
    }

    /// Number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Appends a leaf (its leaf hash).
    pub fn push(&mut self, crypto: &dyn CryptoProvider, leaf: Hash) {
        let mut h = leaf;
        let mut size = self.size;
        // Each trailing set bit of the old size is a perfect subtree of the
        // same height as the one being carried: merge them.
        while size & 1 == 1 {
            let left = self.subtrees.pop().expect("one subtree per set bit");
            h = node_hash(crypto, &left, &h);
            size >>= 1;
        }
        self.subtrees.push(h);
        self.size += 1;
    }

    /// The root of the tree at the current size.
    pub fn root(&self, crypto: &dyn CryptoProvider) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        match iter.next() {
            None => crypto.sha256(&[]),
            Some(last) => iter.fold(*last, |acc, left| node_hash(crypto, left, &acc)),
        }
    }
}
