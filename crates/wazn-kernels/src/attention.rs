//! Causal self-attention of one query row over the keys and values cached for its
//! sequence, with grouped-query heads.

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

/// `out[h] = Σ_j softmax_j(scale · q[h]·k[j, g(h)]) · v[j, g(h)]` over the `n_keys`
/// cached positions, where query head `h` reads key/value head `g(h) = h / (n_head / n_kv_head)`.
///
/// `q`: `[n_head, head_dim]`; `keys`, `values`: `[n_keys, n_kv_head, head_dim]`;
/// `out`: `[n_head, head_dim]`; `scores` is scratch, grown to `n_keys`.
pub fn attend(
    shape: &AttentionShape,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
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
    debug_assert!(keys.len() >= n_keys * kv_width && values.len() >= n_keys * kv_width);
    scores.resize(n_keys, 0.0);
    for h in 0..n_head {
        let kv_offset = (h / group) * head_dim;
        let q_head = &q[h * head_dim..(h + 1) * head_dim];
        for (j, score) in scores.iter_mut().enumerate() {
            let k = &keys[j * kv_width + kv_offset..][..head_dim];
            *score = q_head.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        softmax(scores);
        let out_head = &mut out[h * head_dim..(h + 1) * head_dim];
        out_head.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let v = &values[j * kv_width + kv_offset..][..head_dim];
            for (o, &x) in out_head.iter_mut().zip(v) {
                *o += p * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut scores = Vec::new();
        attend(
            &shape,
            &q,
            &[0.5, 0.5],
            &[3.0, -1.0],
            1,
            &mut out,
            &mut scores,
        );
        assert_eq!(out, [3.0, -1.0, 3.0, -1.0]);
        attend(
            &shape,
            &q,
            &[1.0, 1.0, 1.0, 1.0],
            &[2.0, 0.0, 4.0, 2.0],
            2,
            &mut out,
            &mut scores,
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
        attend(
            &shape,
            &[1.0, 1.0],
            &keys,
            &values,
            2,
            &mut out,
            &mut Vec::new(),
        );
        assert!((out[0] - 1.5).abs() < 1e-6);
        assert!((out[1] - 7.0).abs() < 1e-3);
    }
}
