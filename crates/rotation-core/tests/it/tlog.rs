//! Known answers for the RFC 9162 tree: published Certificate Transparency
//! vectors, and every size 1..=64 against a naive implementation written
//! directly from the RFC's recursive definitions (MTH, PATH, PROOF).

use rotation_core::ports::CryptoProvider;
use rotation_core::tlog::{
    Frontier, Hash, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use rotation_crypto::RingCrypto;

fn unhex(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The Certificate Transparency reference leaves (RFC 6962 test data).
fn ct_entries() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn published_ct_vectors() {
    let c = RingCrypto::new();
    let leaves: Vec<Hash> = ct_entries().iter().map(|e| leaf_hash(&c, e)).collect();
    let mut frontier = Frontier::default();
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(root(&c, &leaves[..n])), *want, "root of size {n}");
        assert_eq!(hex::encode(frontier.root(&c)), *want, "frontier root of size {n}");
        if n < leaves.len() {
            frontier.push(&c, leaves[n]);
        }
    }
    let cases: [(u64, &[&str]); 2] = [
        (
            0,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let root8 = unhex(CT_ROOTS[8]);
    for (index, want) in cases {
        let want: Vec<Hash> = want.iter().map(|h| unhex(h)).collect();
        assert_eq!(
            inclusion_proof(&c, &leaves, index).unwrap(),
            want,
            "inclusion of {index} in 8"
        );
        assert!(verify_inclusion(&c, index, 8, &leaves[index as usize], &want, &root8));
    }
    let want: Vec<Hash> = [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    .iter()
    .map(|h| unhex(h))
    .collect();
    assert_eq!(consistency_proof(&c, &leaves, 2).unwrap(), want);
    assert!(verify_consistency(&c, 2, 8, &unhex(CT_ROOTS[2]), &root8, &want));
}

// --- A naive implementation, written from RFC 9162 section 2.1 ---------

fn sha(c: &RingCrypto, parts: &[&[u8]]) -> Hash {
    c.sha256(&parts.concat())
}

fn k_of(n: usize) -> usize {
    // "the largest power of two smaller than n"
    (0..).map(|i| 1usize << i).take_while(|k| *k < n).last().unwrap()
}

fn mth(c: &RingCrypto, d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => sha(c, &[]),
        1 => sha(c, &[&[0x00], &d[0]]),
        n => {
            let k = k_of(n);
            sha(c, &[&[0x01], &mth(c, &d[..k]), &mth(c, &d[k..])])
        }
    }
}

fn naive_path(c: &RingCrypto, m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = naive_path(c, m, &d[..k]);
        p.push(mth(c, &d[k..]));
        p
    } else {
        let mut p = naive_path(c, m - k, &d[k..]);
        p.push(mth(c, &d[..k]));
        p
    }
}

fn naive_subproof(c: &RingCrypto, m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(c, d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = naive_subproof(c, m, &d[..k], b);
        p.push(mth(c, &d[k..]));
        p
    } else {
        let mut p = naive_subproof(c, m - k, &d[k..], false);
        p.push(mth(c, &d[..k]));
        p
    }
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("entry {i}").repeat(i % 3 + 1).into_bytes())
        .collect()
}

#[test]
fn every_size_to_64_agrees_with_the_rfc_definitions() {
    let c = RingCrypto::new();
    let all = entries(64);
    let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(&c, e)).collect();
    let mut frontier = Frontier::default();
    for n in 1..=64usize {
        frontier.push(&c, leaves[n - 1]);
        let d = &all[..n];
        let want_root = mth(&c, d);
        assert_eq!(root(&c, &leaves[..n]), want_root, "root of size {n}");
        assert_eq!(frontier.root(&c), want_root, "frontier root of size {n}");
        assert_eq!(frontier.subtrees().len(), n.count_ones() as usize);
        for m in 0..n {
            let proof = inclusion_proof(&c, &leaves[..n], m as u64).unwrap();
            assert_eq!(proof, naive_path(&c, m, d), "PATH({m}, D[{n}])");
            assert!(verify_inclusion(&c, m as u64, n as u64, &leaves[m], &proof, &want_root));
            // Anything else is refused: another leaf, index or size, a changed proof.
            let other = (m + 1) % n;
            if other != m {
                assert!(!verify_inclusion(
                    &c,
                    m as u64,
                    n as u64,
                    &leaves[other],
                    &proof,
                    &want_root
                ));
                assert!(!verify_inclusion(
                    &c,
                    other as u64,
                    n as u64,
                    &leaves[m],
                    &proof,
                    &want_root
                ));
            }
            if let Some(first) = proof.first() {
                let mut bad = proof.clone();
                bad[0][0] ^= 1;
                assert!(!verify_inclusion(&c, m as u64, n as u64, &leaves[m], &bad, &want_root));
                assert_ne!(first, &bad[0]);
            }
        }
        for m in 1..=n {
            let proof = consistency_proof(&c, &leaves[..n], m as u64).unwrap();
            let want = if m == n { vec![] } else { naive_subproof(&c, m, d, true) };
            assert_eq!(proof, want, "PROOF({m}, D[{n}])");
            let old_root = mth(&c, &all[..m]);
            assert!(
                verify_consistency(&c, m as u64, n as u64, &old_root, &want_root, &proof),
                "verify {m}->{n}"
            );
            // A different old tree (one entry changed) is not a prefix.
            let mut forked = all[..m].to_vec();
            forked[m - 1].push(b'!');
            assert!(!verify_consistency(
                &c,
                m as u64,
                n as u64,
                &mth(&c, &forked),
                &want_root,
                &proof
            ));
            if let Some(p) = proof.first() {
                let mut bad = proof.clone();
                bad[0] = leaf_hash(&c, p);
                assert!(!verify_consistency(&c, m as u64, n as u64, &old_root, &want_root, &bad));
            }
        }
    }
}

#[test]
fn out_of_range_requests_are_invalid_input() {
    let c = RingCrypto::new();
    let leaves: Vec<Hash> = entries(5).iter().map(|e| leaf_hash(&c, e)).collect();
    assert_eq!(
        inclusion_proof(&c, &leaves, 5).unwrap_err().reason.as_str(),
        "invalid_input"
    );
    assert_eq!(
        consistency_proof(&c, &leaves, 0).unwrap_err().reason.as_str(),
        "invalid_input"
    );
    assert_eq!(
        consistency_proof(&c, &leaves, 6).unwrap_err().reason.as_str(),
        "invalid_input"
    );
    assert!(Frontier::from_parts(3, vec![[0; 32]]).is_err());
}
