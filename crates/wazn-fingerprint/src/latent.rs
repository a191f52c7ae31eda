//! Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) as a fingerprint reads it.
//!
//! Head h's query is Q_h = U_h · D_q (D_q the query's down projection with its norm's gains,
//! U_h head h's rows of the up projection; or Q_h read straight from a full-rank query
//! projection), and its key is K_h = [B_h · L ; R]: B_h the head's key up projection applied
//! to the latent rows L of the joint down projection (norm gains included), R that
//! projection's RoPE rows, which every head shares. The attention form summed over heads,
//!
//!   Σ_h Q_hᵀ K_h = Pᵀ W,  W = [L ; R],  P = [Σ_h B_hᵀ Q_h,nope ; Σ_h Q_h,rope],
//!
//! has the factors [`Representation::Bilinear`](crate::Representation) takes, with as many
//! rows as W (the latent rank plus the RoPE dimensions), so no per-head matrix of the hidden
//! size is formed. With a down projection, P = C · D_q where C = [Σ_h B_hᵀ U_h,nope ; Σ_h
//! U_h,rope] is small. The per-token norms between the projections are left out: they scale a
//! token's query or key, not the directions the form compares.

use crate::matrix::{multiply, Matrix};
use crate::source::{AttentionLayer, LatentShape};

/// One latent attention layer's projections, the norms' gains applied.
pub(crate) struct LatentWeights {
    /// The query's down projection `[q_rank, n_embd]`, or its full projection
    /// `[n_head · (nope + rope), n_embd]` where `query_up` is None.
    pub query: Matrix,
    /// The query's up projection `[n_head · (nope + rope), q_rank]`.
    pub query_up: Option<Matrix>,
    /// The joint key/value down projection `[kv_rank + rope, n_embd]`.
    pub key_value: Matrix,
    /// Each head's key up projection transposed, heads stacked: `[n_head · kv_rank, nope]`.
    pub key_up_t: Matrix,
}

/// The layer: Wq the query's (down) projection, Wk the joint down projection, and the form's
/// query factor P.
pub(crate) fn latent_layer(w: LatentWeights, shape: &LatentShape, n_head: usize) -> AttentionLayer {
    let head_rows = shape.nope_dim + shape.rope_dim;
    let per_head_query = w.query_up.as_ref().unwrap_or(&w.query);
    let cols = per_head_query.cols;
    let mut c = Matrix::zeros(shape.kv_rank + shape.rope_dim, cols);
    for head in 0..n_head {
        let rows = |start: usize, count: usize| Matrix {
            rows: count,
            cols,
            data: per_head_query.data[start * cols..(start + count) * cols].to_vec(),
        };
        let first = head * head_rows;
        let nope = rows(first, shape.nope_dim);
        let key_up_t = Matrix {
            rows: shape.kv_rank,
            cols: shape.nope_dim,
            data: w.key_up_t.data[head * shape.kv_rank * shape.nope_dim
                ..(head + 1) * shape.kv_rank * shape.nope_dim]
                .to_vec(),
        };
        let latent_part = multiply(&key_up_t, &nope, 1);
        for (out, v) in c.data.iter_mut().zip(&latent_part.data) {
            *out += v;
        }
        let rope =
            &per_head_query.data[(first + shape.nope_dim) * cols..(first + head_rows) * cols];
        for (out, v) in c.data[shape.kv_rank * cols..].iter_mut().zip(rope) {
            *out += v;
        }
    }
    let p = match &w.query_up {
        Some(_) => multiply(&c, &w.query, 1),
        None => c,
    };
    AttentionLayer {
        wq: w.query,
        wk: w.key_value,
        form_query: Some(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(rows: usize, cols: usize, seed: u32) -> Matrix {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data = (0..rows * cols)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        Matrix { rows, cols, data }
    }

    /// Σ_h q_h(x)·k_h(y), each head's query and key formed the long way.
    fn per_head_score(
        w: &LatentWeights,
        shape: &LatentShape,
        n_head: usize,
        x: &[f32],
        y: &[f32],
    ) -> f64 {
        let apply = |m: &Matrix, v: &[f64]| -> Vec<f64> {
            (0..m.rows)
                .map(|r| m.row(r).iter().zip(v).map(|(&a, b)| f64::from(a) * b).sum())
                .collect()
        };
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        let mut q = apply(&w.query, &x);
        if let Some(up) = &w.query_up {
            q = apply(up, &q);
        }
        let kv = apply(&w.key_value, &y);
        let (latent, rope) = kv.split_at(shape.kv_rank);
        let head_rows = shape.nope_dim + shape.rope_dim;
        let mut total = 0.0;
        for h in 0..n_head {
            let qh = &q[h * head_rows..(h + 1) * head_rows];
            for (d, &q_d) in qh[..shape.nope_dim].iter().enumerate() {
                // k_nope[d] = Σ_r B_h[d][r] · latent[r], B_hᵀ stored as key_up_t.
                let k: f64 = latent
                    .iter()
                    .enumerate()
                    .map(|(r, &l)| f64::from(w.key_up_t.at(h * shape.kv_rank + r, d)) * l)
                    .sum();
                total += q_d * k;
            }
            for (d, &k) in rope.iter().enumerate() {
                total += qh[shape.nope_dim + d] * k;
            }
        }
        total
    }

    fn check(q_rank: Option<usize>) {
        let (n_embd, n_head) = (12, 3);
        let shape = LatentShape {
            q_rank,
            kv_rank: 5,
            nope_dim: 4,
            rope_dim: 2,
        };
        let head_rows = shape.nope_dim + shape.rope_dim;
        let weights = || LatentWeights {
            query: filled(q_rank.unwrap_or(n_head * head_rows), n_embd, 1),
            query_up: q_rank.map(|r| filled(n_head * head_rows, r, 2)),
            key_value: filled(shape.kv_rank + shape.rope_dim, n_embd, 3),
            key_up_t: filled(n_head * shape.kv_rank, shape.nope_dim, 4),
        };
        let layer = latent_layer(weights(), &shape, n_head);
        let p = layer
            .form_query
            .as_ref()
            .expect("a latent layer has a form");
        let (x, y) = (filled(1, n_embd, 5).data, filled(1, n_embd, 6).data);
        // xᵀ Pᵀ W y.
        let px: Vec<f64> = (0..p.rows)
            .map(|r| {
                p.row(r)
                    .iter()
                    .zip(&x)
                    .map(|(&a, &b)| f64::from(a * b))
                    .sum()
            })
            .collect();
        let wy: Vec<f64> = (0..layer.wk.rows)
            .map(|r| {
                let row = layer.wk.row(r);
                row.iter().zip(&y).map(|(&a, &b)| f64::from(a * b)).sum()
            })
            .collect();
        let factored: f64 = px.iter().zip(&wy).map(|(a, b)| a * b).sum();
        let direct = per_head_score(&weights(), &shape, n_head, &x, &y);
        assert!(
            (factored - direct).abs() < 1e-4 * direct.abs().max(1.0),
            "{factored} vs {direct}"
        );
    }

    #[test]
    fn the_factored_form_is_the_sum_of_the_heads_scores() {
        check(Some(7));
        check(None);
    }
}
