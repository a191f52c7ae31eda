//! The two-pass attention kernel: every score of a head, then its softmax, then the
//! weighted sum of the values. Plain and slow; it is the oracle the fast kernel
//! ([`super::attend_rows`]) is tested against.

use std::ops::Range;

use super::{AttentionShape, KvBlocks, KvElement};
use crate::ops::{softmax, softmax_with_sink};

/// `out[h] = Σ_j p_j(h) · v[j, g(h)]` over the cached positions `keys` (a sliding
/// window ends at the query and starts `window - 1` positions before it), where query
/// head `h` reads key/value head `g(h) = h / (n_head / n_kv_head)` and
/// `p_j(h) = softmax_j(scale · q[h]·k[j, g(h)])`. With a learned "sink" logit per query
/// head (`sinks`: `[n_head]`, not scaled) the softmax denominator gains a term with
/// no value: `p_j = exp(s_j) / (Σ_k exp(s_k) + exp(sink))`, so the weights of a head
/// may sum to less than one.
///
/// `q`: `[n_head, head_dim]`; `out`: `[n_head, head_dim]`; `scores` is scratch,
/// grown to `keys.len()`.
pub fn attend_reference<T: KvElement>(
    shape: &AttentionShape,
    q: &[f32],
    kv: &KvBlocks<'_, T>,
    keys: Range<usize>,
    sinks: Option<&[f32]>,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let AttentionShape {
        n_head,
        n_kv_head,
        head_dim,
        scale,
    } = *shape;
    let kv_width = n_kv_head * head_dim;
    let group = n_head / n_kv_head;
    let first_key = keys.start;
    scores.resize(keys.len(), 0.0);
    for h in 0..n_head {
        let kv_offset = (h / group) * head_dim;
        let q_head = &q[h * head_dim..(h + 1) * head_dim];
        for (j, score) in scores.iter_mut().enumerate() {
            let k = &kv.row(kv.keys, first_key + j, kv_width)[kv_offset..kv_offset + head_dim];
            *score = q_head
                .iter()
                .zip(k)
                .map(|(a, b)| a * b.to_f32())
                .sum::<f32>()
                * scale;
        }
        match sinks.and_then(|s| s.get(h)) {
            Some(&sink) => softmax_with_sink(scores, sink),
            None => softmax(scores),
        }
        let out_head = &mut out[h * head_dim..(h + 1) * head_dim];
        out_head.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let v = &kv.row(kv.values, first_key + j, kv_width)[kv_offset..kv_offset + head_dim];
            for (o, &x) in out_head.iter_mut().zip(v) {
                *o += p * x.to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One contiguous block holding every position.
    fn attend_contiguous(
        shape: &AttentionShape,
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        n_keys: usize,
        out: &mut [f32],
    ) {
        let kv = KvBlocks {
            block_size: n_keys,
            keys: &[keys],
            values: &[values],
        };
        attend_reference(shape, q, &kv, 0..n_keys, None, out, &mut Vec::new());
    }

    #[test]
    fn one_key_returns_its_value_and_equal_keys_average() {
        let shape = AttentionShape {
            n_head: 2,
            n_kv_head: 1,
            head_dim: 2,
            scale: 1.0,
        };
        let q = [1.0, 0.0, 0.0, 1.0];
        let mut out = [0.0; 4];
        attend_contiguous(&shape, &q, &[0.5, 0.5], &[3.0, -1.0], 1, &mut out);
        assert_eq!(out, [3.0, -1.0, 3.0, -1.0]);
        attend_contiguous(
            &shape,
            &q,
            &[1.0, 1.0, 1.0, 1.0],
            &[2.0, 0.0, 4.0, 2.0],
            2,
            &mut out,
        );
        assert_eq!(out, [3.0, 1.0, 3.0, 1.0]);
    }

    #[test]
    fn query_heads_read_their_own_kv_group() {
        // Two KV heads; head 0 sees KV head 0, head 1 sees KV head 1.
        let shape = AttentionShape {
            n_head: 2,
            n_kv_head: 2,
            head_dim: 1,
            scale: 1.0,
        };
        let keys = [0.0, 0.0, 0.0, 10.0]; // [pos][kv head]
        let values = [1.0, 5.0, 2.0, 7.0];
        let mut out = [0.0; 2];
        attend_contiguous(&shape, &[1.0, 1.0], &keys, &values, 2, &mut out);
        assert!((out[0] - 1.5).abs() < 1e-6);
        assert!((out[1] - 7.0).abs() < 1e-3);
    }

    #[test]
    fn blocks_give_the_same_result_as_one_contiguous_buffer() {
        let shape = AttentionShape {
            n_head: 4,
            n_kv_head: 2,
            head_dim: 3,
            scale: 0.5,
        };
        let kv_width = 6;
        let n_keys = 11;
        let keys: Vec<f32> = (0..n_keys * kv_width)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let values: Vec<f32> = (0..n_keys * kv_width)
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        let q: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut whole = vec![0.0; 12];
        attend_contiguous(&shape, &q, &keys, &values, n_keys, &mut whole);
        // Blocks of 4 positions; the last one only partly filled (and padded).
        let block_size = 4;
        let mut key_blocks = Vec::new();
        let mut value_blocks = Vec::new();
        for start in (0..n_keys).step_by(block_size) {
            let end = (start + block_size) * kv_width;
            let mut k = keys[start * kv_width..end.min(keys.len())].to_vec();
            let mut v = values[start * kv_width..end.min(values.len())].to_vec();
            k.resize(block_size * kv_width, f32::NAN);
            v.resize(block_size * kv_width, f32::NAN);
            key_blocks.push(k);
            value_blocks.push(v);
        }
        let key_refs: Vec<&[f32]> = key_blocks.iter().map(|b| b.as_slice()).collect();
        let value_refs: Vec<&[f32]> = value_blocks.iter().map(|b| b.as_slice()).collect();
        let kv = KvBlocks {
            block_size,
            keys: &key_refs,
            values: &value_refs,
        };
        let mut blocked = vec![0.0; 12];
        attend_reference(
            &shape,
            &q,
            &kv,
            0..n_keys,
            None,
            &mut blocked,
            &mut Vec::new(),
        );
        assert_eq!(whole, blocked);
    }

    #[test]
    fn a_sink_and_a_window_match_the_explicit_softmax() {
        let shape = AttentionShape {
            n_head: 2,
            n_kv_head: 1,
            head_dim: 2,
            scale: 0.5,
        };
        let keys = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.5];
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let kv = KvBlocks {
            block_size: 4,
            keys: &[&keys],
            values: &[&values],
        };
        let q = [2.0, -1.0, 0.5, 3.0];
        let sinks = [0.3, -2.0];
        let mut out = [0.0; 4];
        attend_reference(
            &shape,
            &q,
            &kv,
            1..4,
            Some(&sinks),
            &mut out,
            &mut Vec::new(),
        );
        for h in 0..2 {
            let s: Vec<f64> = (1..4)
                .map(|j| 0.5 * (q[2 * h] * keys[2 * j] + q[2 * h + 1] * keys[2 * j + 1]) as f64)
                .collect();
            let denom: f64 = s.iter().map(|x| x.exp()).sum::<f64>() + (sinks[h] as f64).exp();
            for d in 0..2 {
                let want: f64 = (1..4)
                    .map(|j| s[j - 1].exp() / denom * values[2 * j + d] as f64)
                    .sum();
                assert!((out[2 * h + d] as f64 - want).abs() < 1e-5, "{h} {d}");
            }
        }
    }
}
