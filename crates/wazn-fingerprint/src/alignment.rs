//! AWM's alignment of hidden dimensions: the embedding rows of the shared tokens are compared
//! column by column (cosine), and a linear assignment on 1 − |cos| pairs each hidden
//! dimension of one model with one of the other; the sign of the paired cosine undoes a sign
//! flip. A permutation of hidden dimensions moves the columns of every matrix that reads the
//! residual stream, so undoing it on the embedding undoes it everywhere.

use ndarray::Array2;

use crate::error::FingerprintError;
use crate::matrix::{columns_by_columns, Matrix};

/// Which hidden dimensions of A and B correspond, and B's signs.
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    /// A's dimensions that have a partner, increasing.
    pub a_dims: Vec<usize>,
    /// B's dimension paired with each of `a_dims`.
    pub b_dims: Vec<usize>,
    /// ±1: the sign that turns B's dimension into A's.
    pub b_signs: Vec<f32>,
    /// Mean |cos| of the pairs: near 1 for a copy, near 0 for unrelated embeddings.
    pub mean_abs_cosine: f64,
}

impl Alignment {
    pub fn sign_flips(&self) -> usize {
        self.b_signs.iter().filter(|&&s| s < 0.0).count()
    }

    /// A's dimensions in order, unchanged (for a model that keeps all of them).
    pub fn is_all_of_a(&self, n_a: usize) -> bool {
        self.a_dims.len() == n_a
    }

    /// B's `n_b` dimensions in their own order and signs: gathering them changes nothing.
    pub fn is_identity_for_b(&self, n_b: usize) -> bool {
        self.b_dims.len() == n_b
            && self.b_dims.iter().enumerate().all(|(i, &j)| i == j)
            && self.b_signs.iter().all(|&s| s == 1.0)
    }
}

/// Aligns B's hidden dimensions to A's from the embedding rows of the same tokens (`[tokens,
/// n_a]` and `[tokens, n_b]`). Models of different widths keep the narrower one's count.
pub fn align_hidden(
    a: &Matrix,
    b: &Matrix,
    n_threads: usize,
) -> Result<Alignment, FingerprintError> {
    if a.rows != b.rows || a.rows == 0 {
        return Err(FingerprintError::Incomparable(
            "the two models share no embedding rows to align".into(),
        ));
    }
    let cosine = columns_by_columns(&a.normalized_columns(), &b.normalized_columns(), n_threads);
    let size = a.cols.max(b.cols);
    // A square problem: the narrower side is padded with dimensions that cost as much as an
    // uncorrelated pair, so they take what the real ones leave.
    let mut cost = Array2::<f64>::from_elem((size, size), 1.0);
    for i in 0..a.cols {
        for j in 0..b.cols {
            let c = f64::from(cosine.at(i, j));
            if c.is_finite() {
                cost[(i, j)] = 1.0 - c.abs();
            }
        }
    }
    let (row_to_column, _) = lapjv::lapjv(&cost).map_err(|e| {
        FingerprintError::Incomparable(format!("the linear assignment failed: {e}"))
    })?;
    let mut alignment = Alignment {
        a_dims: Vec::new(),
        b_dims: Vec::new(),
        b_signs: Vec::new(),
        mean_abs_cosine: 0.0,
    };
    for (i, &j) in row_to_column.iter().enumerate().take(a.cols) {
        if j >= b.cols {
            continue;
        }
        let c = cosine.at(i, j);
        alignment.a_dims.push(i);
        alignment.b_dims.push(j);
        alignment.b_signs.push(if c < 0.0 { -1.0 } else { 1.0 });
        alignment.mean_abs_cosine += f64::from(c.abs());
    }
    alignment.mean_abs_cosine /= alignment.a_dims.len().max(1) as f64;
    Ok(alignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permuted_and_flipped_copy_is_undone_exactly() {
        let (tokens, n) = (200, 24);
        let mut state = 7u64;
        let data: Vec<f32> = (0..tokens * n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let a = Matrix::from_vec(tokens, n, data).unwrap();
        // B's dimension j is A's dimension perm[j], times sign[j].
        let perm: Vec<usize> = (0..n).map(|j| (j * 7 + 3) % n).collect();
        let sign: Vec<f32> = (0..n)
            .map(|j| if j % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let b = a.gather_columns(&perm, &sign);
        let al = align_hidden(&a, &b, 2).unwrap();
        assert_eq!(al.a_dims, (0..n).collect::<Vec<_>>());
        let restored = b.gather_columns(&al.b_dims, &al.b_signs);
        assert_eq!(restored, a);
        assert!((al.mean_abs_cosine - 1.0).abs() < 1e-5);
    }
}
