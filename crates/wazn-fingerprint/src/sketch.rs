//! Which embedding rows a fingerprint keeps, and which two fingerprints share.
//!
//! Rows are matched by token string, not id, so a model whose vocabulary was extended or
//! reordered still meets its base on the tokens they have in common. A fingerprint keeps the
//! rows of the [`SKETCH_TOKENS`] tokens whose string hashes are smallest (a bottom-k sketch):
//! two vocabularies that share most tokens then share most of their sketches, with no
//! coordination between them, and the alignment of hidden dimensions (a 4,096-row sample,
//! as HuRef samples its tokens) costs `k · n²` instead of `vocabulary · n²`.

use crate::matrix::Matrix;

/// Tokens (embedding rows) kept per model.
pub const SKETCH_TOKENS: usize = 4096;

/// The embedding rows of the sketched tokens, in increasing hash order.
#[derive(Clone, Debug)]
pub struct TokenSketch {
    /// [`token_hash`] of each kept token, increasing.
    pub hashes: Vec<u64>,
    /// `[hashes.len(), n_embd]`: the token's embedding row.
    pub rows: Matrix,
}

/// A token string's 64-bit hash: FNV-1a over its UTF-8 bytes, then splitmix64's finalizer so
/// the low and high bits are equally mixed (the reference scripts compute the same).
pub fn token_hash(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in token.as_bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finalizer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of the whole vocabulary in id order: equal for equal vocabularies.
pub fn vocabulary_hash<'a>(tokens: impl Iterator<Item = &'a str>) -> u64 {
    tokens.fold(0x9e37_79b9_7f4a_7c15, |h, t| {
        mix(h ^ token_hash(t)).wrapping_add(1)
    })
}

/// The ids of the tokens a sketch keeps, with their hashes, in increasing hash order. A
/// string that occurs under several ids counts once (its lowest id).
pub fn sketch_ids<'a>(tokens: impl Iterator<Item = (usize, &'a str)>) -> Vec<(u64, usize)> {
    let mut all: Vec<(u64, usize)> = tokens.map(|(id, t)| (token_hash(t), id)).collect();
    all.sort_unstable();
    all.dedup_by_key(|(h, _)| *h);
    all.truncate(SKETCH_TOKENS);
    all
}

/// Index pairs `(i, j)` with `a[i] == b[j]`, for two increasing hash lists.
pub fn shared_rows(a: &[u64], b: &[u64]) -> Vec<(usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push((i, j));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_reference_scripts() {
        // FNV-1a of "" is the offset basis; the finalizer is splitmix64's.
        assert_eq!(token_hash(""), mix(0xcbf2_9ce4_8422_2325));
        assert_ne!(token_hash("a"), token_hash("b"));
    }

    #[test]
    fn sketches_of_overlapping_vocabularies_overlap() {
        let a: Vec<String> = (0..10_000).map(|i| format!("tok{i}")).collect();
        let b: Vec<String> = (0..12_000).map(|i| format!("tok{i}")).collect();
        let sa = sketch_ids(a.iter().map(String::as_str).enumerate());
        let sb = sketch_ids(b.iter().map(String::as_str).enumerate());
        let ha: Vec<u64> = sa.iter().map(|p| p.0).collect();
        let hb: Vec<u64> = sb.iter().map(|p| p.0).collect();
        let shared = shared_rows(&ha, &hb).len();
        assert!(shared > SKETCH_TOKENS * 3 / 4, "{shared}");
    }
}
