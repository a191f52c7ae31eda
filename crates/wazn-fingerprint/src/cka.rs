//! Unbiased linear CKA (Song et al. 2012's unbiased HSIC, as AWM uses it) between two
//! representations of the same samples, computed from the factors of the Gram matrices so
//! that no `n × n` matrix is formed when the features are fewer than the samples.
//!
//! With K the Gram matrix of one side and K̃ that matrix with its diagonal set to zero,
//!
//!   HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))
//!   CKA(K, L)   = HSIC₁(K, L) / √(HSIC₁(K, K) · HSIC₁(L, L))
//!
//! and tr(K̃L̃) = tr(KL) − Σ kᵢlᵢ, 1ᵀK̃L̃1 = (K̃1)·(L̃1). Unlike the biased estimator, its
//! expectation is 0 for independent representations, so unrelated models score near 0.
//!
//! Two kinds of representation occur (the samples are always hidden dimensions):
//! - [`Representation::Columns`]: a projection `W` (`[out, hidden]`) read as X = Wᵀ, one row
//!   per hidden dimension (AWM's Wq and Wk). K = WᵀW, tr(KL) = ‖W_a W_bᵀ‖². Where `out` is
//!   more than half of `hidden` (Wq), K itself is cheaper: each side forms its symmetric
//!   `hidden × hidden` K once (half of `hidden² · out`), and tr(KL) = Σ Kᵢⱼ Lᵢⱼ is a sum, where
//!   W_a W_bᵀ would cost a full `out² · hidden` product on top of the two sides' tr(KK).
//! - [`Representation::Bilinear`]: the attention form M = Pᵀ W (`[hidden, hidden]`), P and W
//!   `[r, hidden]` (AWM's WqWkᵀ with the query heads of a key group summed into P, which is
//!   the same product as repeating the key heads). K = Pᵀ G P with G = W Wᵀ, and
//!   tr(K_a K_b) = tr(Cᵀ G_a C G_b) with C = P_a P_bᵀ; tr(KK) = tr(GHGH) with H = P Pᵀ, one
//!   product GH as HG = (GH)ᵀ.

#[cfg(test)]
use crate::matrix::columns_by_columns;
use crate::matrix::{
    columns_gram, elementwise_dot, multiply, rows_by_rows, self_gram, trace_of_square, Matrix,
};

/// One side of a comparison, prepared once: what its Gram matrix contributes to HSIC.
pub struct Prepared {
    kind: Kind,
    /// Kᵢᵢ.
    diagonal: Vec<f64>,
    /// K̃1: the row sums of K without the diagonal.
    off_diagonal_row_sums: Vec<f64>,
    /// 1ᵀK̃1.
    off_diagonal_total: f64,
    /// tr(KK), for HSIC of the side with itself.
    trace_kk: f64,
}

enum Kind {
    /// W (`[out, hidden]`), for tr(KL) = ‖W_a W_bᵀ‖².
    Columns {
        w: Matrix,
    },
    /// K = WᵀW (`[hidden, hidden]`), for tr(KL) = Σ Kᵢⱼ Lᵢⱼ.
    ColumnsGram {
        k: Matrix,
    },
    Bilinear {
        p: Matrix,
        g: Matrix,
    },
}

/// Whether a projection's side is cheaper as its `hidden × hidden` Gram matrix: forming it
/// costs hidden² · out / 2 per side, against out² · hidden / 2 per side plus out_a · out_b ·
/// hidden for the cross product; the two agree at out = hidden / 2.
fn prefers_columns_gram(w: &Matrix) -> bool {
    2 * w.rows > w.cols
}

/// A representation of `hidden` samples (the columns of the matrices).
pub enum Representation {
    Columns(Matrix),
    Bilinear { p: Matrix, w: Matrix },
}

impl Prepared {
    pub fn new(representation: Representation, n_threads: usize) -> Prepared {
        match representation {
            Representation::Columns(w) => {
                let mut diagonal = vec![0f64; w.cols];
                for row in w.data.chunks_exact(w.cols.max(1)) {
                    for (d, &v) in diagonal.iter_mut().zip(row) {
                        *d += f64::from(v) * f64::from(v);
                    }
                }
                let row_sums: Vec<f64> = w
                    .data
                    .chunks_exact(w.cols.max(1))
                    .map(|r| r.iter().map(|&v| f64::from(v)).sum())
                    .collect();
                let k_ones = w.transposed_times_vector(&row_sums);
                if prefers_columns_gram(&w) {
                    let k = columns_gram(&w, n_threads);
                    drop(w);
                    let trace_kk = elementwise_dot(&k, &k);
                    Prepared::from_parts(Kind::ColumnsGram { k }, diagonal, k_ones, trace_kk)
                } else {
                    let trace_kk = self_gram(&w, n_threads).frobenius2();
                    Prepared::from_parts(Kind::Columns { w }, diagonal, k_ones, trace_kk)
                }
            }
            Representation::Bilinear { p, w } => {
                let g = self_gram(&w, n_threads);
                // Kᵢᵢ = pᵢᵀ G pᵢ for the columns pᵢ of P.
                let gp = multiply(&g, &p, n_threads);
                let mut diagonal = vec![0f64; p.cols];
                for (p_row, gp_row) in p
                    .data
                    .chunks_exact(p.cols.max(1))
                    .zip(gp.data.chunks_exact(p.cols.max(1)))
                {
                    for ((d, &a), &b) in diagonal.iter_mut().zip(p_row).zip(gp_row) {
                        *d += f64::from(a) * f64::from(b);
                    }
                }
                // K1 = Pᵀ G (P1).
                let p_ones: Vec<f64> = p
                    .data
                    .chunks_exact(p.cols.max(1))
                    .map(|r| r.iter().map(|&v| f64::from(v)).sum())
                    .collect();
                let g_p_ones = g.times_vector(&p_ones);
                let k_ones = p.transposed_times_vector(&g_p_ones);
                let h = self_gram(&p, n_threads);
                let trace_kk = trace_of_square(&multiply(&g, &h, n_threads));
                Prepared::from_parts(Kind::Bilinear { p, g }, diagonal, k_ones, trace_kk)
            }
        }
    }

    fn from_parts(kind: Kind, diagonal: Vec<f64>, k_ones: Vec<f64>, trace_kk: f64) -> Prepared {
        let off_diagonal_row_sums: Vec<f64> =
            k_ones.iter().zip(&diagonal).map(|(s, d)| s - d).collect();
        let off_diagonal_total = off_diagonal_row_sums.iter().sum();
        Prepared {
            kind,
            diagonal,
            off_diagonal_row_sums,
            off_diagonal_total,
            trace_kk,
        }
    }

    /// The number of samples (hidden dimensions).
    pub fn n_samples(&self) -> usize {
        self.diagonal.len()
    }
}

/// tr(Cᵀ G_a C G_b) = Σᵢⱼ (G_a C)ᵢⱼ (C G_b)ᵢⱼ, both G symmetric.
fn bilinear_trace(g_a: &Matrix, c: &Matrix, g_b: &Matrix, n_threads: usize) -> f64 {
    let left = multiply(g_a, c, n_threads);
    let right = multiply(c, g_b, n_threads);
    elementwise_dot(&left, &right)
}

/// tr(K_a K_b) of two prepared sides of the same kind and sample count.
fn cross_trace(a: &Prepared, b: &Prepared, n_threads: usize) -> f64 {
    match (&a.kind, &b.kind) {
        (Kind::Columns { w: wa }, Kind::Columns { w: wb }) => {
            rows_by_rows(wa, wb, n_threads).frobenius2()
        }
        (Kind::ColumnsGram { k: ka }, Kind::ColumnsGram { k: kb }) => elementwise_dot(ka, kb),
        // tr(K WᵀW) = Σ over the rows w of W of wᵀ K w = Σ (W K) ∘ W.
        (Kind::ColumnsGram { k }, Kind::Columns { w })
        | (Kind::Columns { w }, Kind::ColumnsGram { k }) => {
            elementwise_dot(&multiply(w, k, n_threads), w)
        }
        (Kind::Bilinear { p: pa, g: ga }, Kind::Bilinear { p: pb, g: gb }) => {
            let c = rows_by_rows(pa, pb, n_threads);
            bilinear_trace(ga, &c, gb, n_threads)
        }
        // Sides of different kinds are never compared; 0 reads as "no similarity".
        _ => 0.0,
    }
}

/// Unbiased HSIC from tr(KL) and the two sides' summaries (same n ≥ 4).
fn hsic(trace_kl: f64, a: &Prepared, b: &Prepared) -> f64 {
    let n = a.n_samples() as f64;
    let diagonal_products: f64 = a.diagonal.iter().zip(&b.diagonal).map(|(x, y)| x * y).sum();
    let row_sum_products: f64 = a
        .off_diagonal_row_sums
        .iter()
        .zip(&b.off_diagonal_row_sums)
        .map(|(x, y)| x * y)
        .sum();
    let trace_off = trace_kl - diagonal_products;
    (trace_off + a.off_diagonal_total * b.off_diagonal_total / ((n - 1.0) * (n - 2.0))
        - 2.0 / (n - 2.0) * row_sum_products)
        / (n * (n - 3.0))
}

/// Unbiased CKA of two prepared sides over the same samples; 0 where either side has no
/// variance to compare (a zero matrix) or fewer than 4 samples.
pub fn unbiased_cka(a: &Prepared, b: &Prepared, n_threads: usize) -> f64 {
    if a.n_samples() != b.n_samples() || a.n_samples() < 4 {
        return 0.0;
    }
    let ab = hsic(cross_trace(a, b, n_threads), a, b);
    let aa = hsic(a.trace_kk, a, a);
    let bb = hsic(b.trace_kk, b, b);
    let denominator = (aa * bb).sqrt();
    if denominator.is_finite() && denominator > 0.0 && ab.is_finite() {
        ab / denominator
    } else {
        0.0
    }
}

/// The matrices as dense f64 Gram matrices, for the tests: the definition, term by term.
#[cfg(test)]
pub(crate) fn dense_unbiased_cka(k: &[Vec<f64>], l: &[Vec<f64>]) -> f64 {
    let hsic = |k: &[Vec<f64>], l: &[Vec<f64>]| {
        let n = k.len();
        let nf = n as f64;
        let kt = |i: usize, j: usize| if i == j { 0.0 } else { k[i][j] };
        let lt = |i: usize, j: usize| if i == j { 0.0 } else { l[i][j] };
        let mut trace = 0.0;
        let (mut sk, mut sl) = (0.0, 0.0);
        let mut cross = 0.0;
        for i in 0..n {
            let (mut rk, mut rl) = (0.0, 0.0);
            for j in 0..n {
                trace += kt(i, j) * lt(j, i);
                sk += kt(i, j);
                sl += lt(i, j);
                rk += kt(i, j);
                rl += lt(i, j);
            }
            cross += rk * rl;
        }
        (trace + sk * sl / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * cross) / (nf * (nf - 3.0))
    };
    hsic(k, l) / (hsic(k, k) * hsic(l, l)).sqrt()
}

/// The columns of `m` as rows: how a test builds X from W.
#[cfg(test)]
pub(crate) fn gram_of_columns(m: &Matrix) -> Vec<Vec<f64>> {
    let product = columns_by_columns(m, m, 1);
    (0..m.cols)
        .map(|i| (0..m.cols).map(|j| f64::from(product.at(i, j))).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut state = seed;
        let data = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    #[test]
    fn columns_form_matches_the_dense_definition() {
        // Row counts on both sides of hidden / 2 = 6: each side as W or as its Gram matrix,
        // and every mix of the two.
        for (rows_a, rows_b) in [(7, 5), (5, 7), (8, 9), (3, 4)] {
            let a = noise(rows_a, 12, 1);
            let b = noise(rows_b, 12, 2);
            let shared = rows_a.min(rows_b) * 12;
            let mut b_data = b.data.clone();
            for (x, y) in b_data[..shared].iter_mut().zip(&a.data[..shared]) {
                *x += 0.5 * y;
            }
            let b = Matrix::from_vec(rows_b, 12, b_data).unwrap();
            let want = dense_unbiased_cka(&gram_of_columns(&a), &gram_of_columns(&b));
            let pa = Prepared::new(Representation::Columns(a), 1);
            let pb = Prepared::new(Representation::Columns(b), 2);
            let got = unbiased_cka(&pa, &pb, 1);
            assert!(
                (got - want).abs() < 1e-5,
                "{rows_a}, {rows_b}: {got} vs {want}"
            );
            let back = unbiased_cka(&pb, &pa, 2);
            assert!(
                (back - want).abs() < 1e-5,
                "{rows_b}, {rows_a}: {back} vs {want}"
            );
        }
    }

    #[test]
    fn bilinear_form_matches_the_dense_definition() {
        let n = 10;
        let (pa, wa) = (noise(3, n, 3), noise(3, n, 4));
        let (pb, wb) = (noise(4, n, 5), noise(4, n, 6));
        // M = Pᵀ W; its Gram over rows is M Mᵀ.
        let dense = |p: &Matrix, w: &Matrix| {
            let m = columns_by_columns(p, w, 1);
            let k = rows_by_rows(&m, &m, 1);
            (0..n)
                .map(|i| (0..n).map(|j| f64::from(k.at(i, j))).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let want = dense_unbiased_cka(&dense(&pa, &wa), &dense(&pb, &wb));
        let a = Prepared::new(Representation::Bilinear { p: pa, w: wa }, 1);
        let b = Prepared::new(Representation::Bilinear { p: pb, w: wb }, 1);
        let got = unbiased_cka(&a, &b, 1);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!((unbiased_cka(&a, &a, 1) - 1.0).abs() < 1e-6);
    }
}
