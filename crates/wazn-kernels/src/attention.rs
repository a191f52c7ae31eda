//! Causal self-attention of one query row over the keys and values cached for its
//! sequence, with grouped-query heads. The cache is read where it lies, block by
//! block, so a step never copies a sequence's history.

use crate::ops::softmax;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Multiplies `q·k` before the softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
}

/// The keys and values of one sequence in one layer, in blocks of `block_size`
/// positions: block `b` holds positions `b·block_size ..`, each block's keys and
/// values `[block_size, n_kv_head, head_dim]` (the last block may be shorter).
#[derive(Clone, Copy, Debug)]
pub struct KvBlocks<'a> {
    pub block_size: usize,
    pub keys: &'a [&'a [f32]],
    pub values: &'a [&'a [f32]],
}

impl<'a> KvBlocks<'a> {
    /// Row `pos` (`kv_width` values) of `blocks`.
    #[inline]
    fn row(&self, blocks: &'a [&'a [f32]], pos: usize, kv_width: usize) -> &'a [f32] {
        let block = blocks[pos / self.block_size];
        &block[(pos % self.block_size) * kv_width..][..kv_width]
    }
}

/// `out[h] = Σ_j softmax_j(scale · q[h]·k[j, g(h)]) · v[j, g(h)]` over the first
/// `n_keys` cached positions, where query head `h` reads key/value head
/// `g(h) = h / (n_head / n_kv_head)`.
///
/// `q`: `[n_head, head_dim]`; `out`: `[n_head, head_dim]`; `scores` is scratch,
/// grown to `n_keys`.
pub fn attend(
    shape: &AttentionShape,
    q: &[f32],
    kv: &KvBlocks<'_>,
    n_keys: usize,
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
    scores.resize(n_keys, 0.0);
    for h in 0..n_head {
        let kv_offset = (h / group) * head_dim;
        let q_head = &q[h * head_dim..(h + 1) * head_dim];
        for (j, score) in scores.iter_mut().enumerate() {
            let k = &kv.row(kv.keys, j, kv_width)[kv_offset..kv_offset + head_dim];
            *score = q_head.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        softmax(scores);
        let out_head = &mut out[h * head_dim..(h + 1) * head_dim];
        out_head.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let v = &kv.row(kv.values, j, kv_width)[kv_offset..kv_offset + head_dim];
            for (o, &x) in out_head.iter_mut().zip(v) {
                *o += p * x;
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
        attend(shape, q, &kv, n_keys, out, &mut Vec::new());
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
        attend(&shape, &q, &kv, n_keys, &mut blocked, &mut Vec::new());
        assert_eq!(whole, blocked);
    }
}
