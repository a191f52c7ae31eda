//! A dense row-major f32 matrix and the few products the statistics need, on matrixmultiply's
//! SIMD kernels, split over threads by rows of the output.

use std::thread;

/// `rows × cols` values, row after row.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// `data` as a `rows × cols` matrix, if the length agrees.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Option<Matrix> {
        (rows.checked_mul(cols)? == data.len()).then_some(Matrix { rows, cols, data })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// The columns `columns` in that order, each multiplied by its sign: how the hidden
    /// dimensions of one model are put in the order (and orientation) of another's.
    pub fn gather_columns(&self, columns: &[usize], signs: &[f32]) -> Matrix {
        let mut out = Matrix::zeros(self.rows, columns.len());
        for (dst, src) in out
            .data
            .chunks_exact_mut(columns.len().max(1))
            .zip(self.data.chunks_exact(self.cols.max(1)))
        {
            for ((d, &c), &s) in dst.iter_mut().zip(columns).zip(signs) {
                *d = src[c] * s;
            }
        }
        out
    }

    /// Every column divided by its Euclidean norm (a zero column stays zero).
    pub fn normalized_columns(&self) -> Matrix {
        let mut norms = vec![0f64; self.cols];
        for row in self.data.chunks_exact(self.cols.max(1)) {
            for (n, &v) in norms.iter_mut().zip(row) {
                *n += f64::from(v) * f64::from(v);
            }
        }
        let inverse: Vec<f32> = norms
            .iter()
            .map(|&n| {
                if n > 0.0 {
                    (1.0 / n.sqrt()) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mut out = self.clone();
        for row in out.data.chunks_exact_mut(self.cols.max(1)) {
            for (v, &s) in row.iter_mut().zip(&inverse) {
                *v *= s;
            }
        }
        out
    }

    /// Sum of squares, in f64.
    pub fn frobenius2(&self) -> f64 {
        self.data.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
    }

    /// `self · v` for a vector of `cols` values, in f64.
    pub fn times_vector(&self, v: &[f64]) -> Vec<f64> {
        self.data
            .chunks_exact(self.cols.max(1))
            .map(|row| row.iter().zip(v).map(|(&a, &b)| f64::from(a) * b).sum())
            .take(self.rows)
            .collect()
    }

    /// `selfᵀ · v` for a vector of `rows` values, in f64.
    pub fn transposed_times_vector(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0f64; self.cols];
        for (row, &s) in self.data.chunks_exact(self.cols.max(1)).zip(v) {
            for (o, &a) in out.iter_mut().zip(row) {
                *o += f64::from(a) * s;
            }
        }
        out
    }
}

/// A matrix operand as matrixmultiply reads it: a pointer-free view with strides, so a
/// transpose costs nothing.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    fn plain(m: &'a Matrix) -> Operand<'a> {
        Operand {
            data: &m.data,
            rows: m.rows,
            cols: m.cols,
            row_stride: m.cols,
            col_stride: 1,
        }
    }

    fn transposed(m: &'a Matrix) -> Operand<'a> {
        Operand {
            data: &m.data,
            rows: m.cols,
            cols: m.rows,
            row_stride: 1,
            col_stride: m.cols,
        }
    }

    /// Rows `start..end` of this operand.
    fn rows_range(self, start: usize, end: usize) -> Operand<'a> {
        let offset = start * self.row_stride;
        Operand {
            data: self.data.get(offset..).unwrap_or(&[]),
            rows: end - start,
            ..self
        }
    }

    /// Whether every element the strides reach lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
        last < self.data.len()
    }
}

/// `a · b` (`a`: m×k, `b`: k×n) into a new m×n matrix, rows of the output split over
/// `n_threads` threads.
fn product(a: Operand<'_>, b: Operand<'_>, n_threads: usize) -> Matrix {
    assert_eq!(a.cols, b.rows, "inner dimensions of a product");
    let (m, n) = (a.rows, b.cols);
    let mut out = Matrix::zeros(m, n);
    if m == 0 || n == 0 {
        return out;
    }
    // Each thread takes a band of rows; a band under 64 rows is not worth a thread.
    let n_bands = n_threads.clamp(1, m.div_ceil(64).max(1));
    let band_rows = m.div_ceil(n_bands);
    thread::scope(|scope| {
        for (band, c) in out.data.chunks_mut(band_rows * n).enumerate() {
            let start = band * band_rows;
            let rows = c.len() / n;
            let a_band = a.rows_range(start, start + rows);
            scope.spawn(move || gemm_into(a_band, b, c, n));
        }
    });
    out
}

/// `c = a · b` for one band, `c` row-major with `n` columns.
fn gemm_into(a: Operand<'_>, b: Operand<'_>, c: &mut [f32], n: usize) {
    assert!(
        a.in_bounds() && b.in_bounds(),
        "operand strides past its data"
    );
    assert_eq!(c.len(), a.rows * n, "output size");
    if a.cols == 0 {
        c.fill(0.0);
        return;
    }
    // SAFETY: every element that the dimensions and strides reach lies inside the slices
    // (checked above), and `c` holds exactly `a.rows × n` contiguous values.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rows per block of [`self_gram`]: large enough for the SIMD kernels, small enough that the
/// half it skips is most of the work.
const GRAM_BLOCK: usize = 512;

/// `a · aᵀ`, computing each off-diagonal block once and mirroring it: half the work of
/// [`rows_by_rows`] on the same matrix.
pub fn self_gram(a: &Matrix, n_threads: usize) -> Matrix {
    let n = a.rows;
    let mut out = Matrix::zeros(n, n);
    let n_blocks = n.div_ceil(GRAM_BLOCK);
    let block_rows = |b: usize| {
        let start = b * GRAM_BLOCK;
        let end = (start + GRAM_BLOCK).min(n);
        Matrix {
            rows: end - start,
            cols: a.cols,
            data: a.data[start * a.cols..end * a.cols].to_vec(),
        }
    };
    for bi in 0..n_blocks {
        let rows_i = block_rows(bi);
        for bj in bi..n_blocks {
            let rows_j = block_rows(bj);
            let block = rows_by_rows(&rows_i, &rows_j, n_threads);
            for r in 0..block.rows {
                for c in 0..block.cols {
                    let (i, j) = (bi * GRAM_BLOCK + r, bj * GRAM_BLOCK + c);
                    let v = block.data[r * block.cols + c];
                    out.data[i * n + j] = v;
                    out.data[j * n + i] = v;
                }
            }
        }
    }
    out
}

/// `a · bᵀ`: the inner products of every row of `a` with every row of `b`.
pub fn rows_by_rows(a: &Matrix, b: &Matrix, n_threads: usize) -> Matrix {
    product(Operand::plain(a), Operand::transposed(b), n_threads)
}

/// `aᵀ · b`: the inner products of every column of `a` with every column of `b`.
pub fn columns_by_columns(a: &Matrix, b: &Matrix, n_threads: usize) -> Matrix {
    product(Operand::transposed(a), Operand::plain(b), n_threads)
}

/// `a · b`.
pub fn multiply(a: &Matrix, b: &Matrix, n_threads: usize) -> Matrix {
    product(Operand::plain(a), Operand::plain(b), n_threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Matrix, b: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(a.rows, b.cols);
        for i in 0..a.rows {
            for j in 0..b.cols {
                out.data[i * b.cols + j] = (0..a.cols).map(|k| a.at(i, k) * b.at(k, j)).sum();
            }
        }
        out
    }

    fn transpose(m: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(m.cols, m.rows);
        for i in 0..m.rows {
            for j in 0..m.cols {
                out.data[j * m.rows + i] = m.at(i, j);
            }
        }
        out
    }

    fn filled(rows: usize, cols: usize, seed: usize) -> Matrix {
        let data = (0..rows * cols)
            .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 - 500.0) / 250.0)
            .collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    #[test]
    fn products_agree_with_the_definition_on_any_thread_count() {
        let (a, b) = (filled(300, 17, 1), filled(130, 17, 2));
        let want = naive(&a, &transpose(&b));
        for threads in [1, 2, 5] {
            let got = rows_by_rows(&a, &b, threads);
            for (g, w) in got.data.iter().zip(&want.data) {
                assert!((g - w).abs() < 1e-3, "{g} vs {w}");
            }
        }
        let c = filled(300, 9, 4);
        let want = naive(&transpose(&a), &c);
        let got = columns_by_columns(&a, &c, 2);
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!((g - w).abs() < 1e-2, "{g} vs {w}");
        }
        let got = multiply(&a, &filled(17, 5, 6), 2);
        let want = naive(&a, &filled(17, 5, 6));
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!((g - w).abs() < 1e-3, "{g} vs {w}");
        }
    }

    #[test]
    fn the_self_gram_is_the_product_with_itself() {
        let a = filled(1100, 13, 9);
        let want = rows_by_rows(&a, &a, 1);
        let got = self_gram(&a, 2);
        for (g, w) in got.data.iter().zip(&want.data) {
            assert!((g - w).abs() < 1e-3, "{g} vs {w}");
        }
    }

    #[test]
    fn gathering_columns_permutes_and_flips() {
        let m = Matrix::from_vec(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let g = m.gather_columns(&[2, 0], &[1.0, -1.0]);
        assert_eq!(g.data, vec![3.0, -1.0, 6.0, -4.0]);
    }
}
