//! A dense row-major f32 matrix and the few products the statistics need, on matrixmultiply's
//! cache-blocked SIMD kernels (AVX-512, AVX2 or SSE, chosen at run time), split over threads by
//! rows of the output. Symmetric products (Gram matrices) compute their upper half only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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
            data: crate::pages::zeroed(rows * cols),
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

/// Rows of the output per band of a product: each band packs all of B again, so a band
/// should be many micro-kernel rows tall.
const MIN_BAND_ROWS: usize = 512;

/// `a · b` (`a`: m×k, `b`: k×n) into a new m×n matrix, bands of output rows taken by
/// `n_threads` threads as each finishes its last (so a thread the OS holds back takes fewer).
fn product(a: Operand<'_>, b: Operand<'_>, n_threads: usize) -> Matrix {
    assert_eq!(a.cols, b.rows, "inner dimensions of a product");
    let (m, n) = (a.rows, b.cols);
    let mut out = Matrix::zeros(m, n);
    if m == 0 || n == 0 {
        return out;
    }
    let band_rows = m.div_ceil(2 * n_threads.max(1)).max(MIN_BAND_ROWS).min(m);
    let bands: Vec<Mutex<&mut [f32]>> =
        out.data.chunks_mut(band_rows * n).map(Mutex::new).collect();
    for_each_block(bands.len(), n_threads, |band| {
        let Ok(mut c) = bands[band].lock() else {
            return;
        };
        let start = band * band_rows;
        let rows = c.len() / n;
        gemm_into(a.rows_range(start, start + rows), b, &mut c, n);
    });
    drop(bands);
    out
}

/// Calls `f(block)` for every block `0..n_blocks`, over `n_threads` threads that each take
/// the next block not yet taken.
fn for_each_block(n_blocks: usize, n_threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    let work = || loop {
        let block = next.fetch_add(1, Ordering::Relaxed);
        if block >= n_blocks {
            break;
        }
        f(block);
    };
    let n_threads = n_threads.clamp(1, n_blocks.max(1));
    thread::scope(|scope| {
        for _ in 1..n_threads {
            scope.spawn(work);
        }
        work();
    });
}

/// `c = a · b` for one band, `c` row-major with `n` columns.
fn gemm_into(a: Operand<'_>, b: Operand<'_>, c: &mut [f32], n: usize) {
    assert_eq!(b.cols, n, "output width");
    assert_eq!(c.len(), a.rows * n, "output size");
    // SAFETY: `c` holds exactly the `a.rows × n` values written, and is borrowed mutably.
    unsafe { gemm_strided(a, b, c.as_mut_ptr(), n) }
}

/// Rows per block of a Gram matrix: large enough for the SIMD kernels, small enough that the
/// triangle below the diagonal (skipped) is most of what it could skip.
const GRAM_BLOCK: usize = 256;

/// `x · xᵀ` for the operand `x` (`n × k`): each block of rows computes only the columns from
/// its own first row on (the diagonal block and what lies to its right), writing straight
/// into the output, and the lower triangle is then mirrored from the upper. Half the work of
/// a full product.
fn gram(x: Operand<'_>, n_threads: usize) -> Matrix {
    let n = x.rows;
    let mut out = Matrix::zeros(n, n);
    if n == 0 {
        return out;
    }
    let xt = Operand {
        rows: x.cols,
        cols: x.rows,
        row_stride: x.col_stride,
        col_stride: x.row_stride,
        ..x
    };
    let n_blocks = n.div_ceil(GRAM_BLOCK);
    let shared = SharedRows(out.data.as_mut_ptr());
    // Blocks in order: the first, with the most columns, go first, so the threads finish
    // together.
    for_each_block(n_blocks, n_threads, |block| {
        let start = block * GRAM_BLOCK;
        let end = (start + GRAM_BLOCK).min(n);
        let rows = x.rows_range(start, end);
        let columns = Operand {
            data: xt.data.get(start * xt.col_stride..).unwrap_or(&[]),
            cols: n - start,
            ..xt
        };
        // SAFETY: the rows start..end of the output belong to this block alone (each block
        // is taken once), and the `(end − start) × (n − start)` values from (start, start)
        // with row stride n lie inside it.
        unsafe { gemm_strided(rows, columns, shared.at(start * n + start), n) };
    });
    mirror_upper(&mut out);
    out
}

/// The output of [`gram`], shared by threads that write disjoint rows.
struct SharedRows(*mut f32);
// SAFETY: `gram` gives each row block to one call only.
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// The pointer `offset` values in.
    ///
    /// # Safety
    /// `offset` lies inside the output.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's promise.
        unsafe { self.0.add(offset) }
    }
}

/// Copies the upper triangle of a square matrix onto the lower, tile by tile so both sides
/// stay in cache.
fn mirror_upper(m: &mut Matrix) {
    const TILE: usize = 64;
    let n = m.rows;
    for bi in (0..n).step_by(TILE) {
        for bj in (0..=bi).step_by(TILE) {
            for i in bi..(bi + TILE).min(n) {
                for j in bj..(bj + TILE).min(i) {
                    m.data[i * n + j] = m.data[j * n + i];
                }
            }
        }
    }
}

/// `c = a · b`, `c` row-major with row stride `ldc`.
///
/// # Safety
/// `c` is valid for writes of `a.rows` rows of `b.cols` values at stride `ldc`, and nothing
/// else reads or writes them meanwhile.
unsafe fn gemm_strided(a: Operand<'_>, b: Operand<'_>, c: *mut f32, ldc: usize) {
    assert!(
        a.in_bounds() && b.in_bounds(),
        "operand strides past its data"
    );
    assert_eq!(a.cols, b.rows, "inner dimensions of a product");
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        for i in 0..a.rows {
            // SAFETY: row i of the output, the caller's promise.
            unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, b.cols) };
        }
        return;
    }
    // SAFETY: the operands' elements lie inside their slices (checked above); the output's
    // are the caller's promise.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            0.0,
            c,
            ldc as isize,
            1,
        );
    }
}

/// `a · aᵀ`: the inner products of the rows of `a` with each other.
pub fn self_gram(a: &Matrix, n_threads: usize) -> Matrix {
    gram(Operand::plain(a), n_threads)
}

/// `aᵀ · a`: the inner products of the columns of `a` with each other.
pub fn columns_gram(a: &Matrix, n_threads: usize) -> Matrix {
    gram(Operand::transposed(a), n_threads)
}

/// Σᵢⱼ aᵢⱼ bᵢⱼ in f64 (tr(aᵀb)), for matrices of the same shape.
pub fn elementwise_dot(a: &Matrix, b: &Matrix) -> f64 {
    assert_eq!(
        (a.rows, a.cols),
        (b.rows, b.cols),
        "shapes of a dot product"
    );
    // f32 products summed in short f32 runs, the runs in f64: the error of an f32 sum of 64
    // terms is far below the f32 rounding the products already carry.
    a.data
        .chunks(64)
        .zip(b.data.chunks(64))
        .map(|(x, y)| f64::from(x.iter().zip(y).map(|(&p, &q)| p * q).sum::<f32>()))
        .sum()
}

/// Σᵢⱼ aᵢⱼ aⱼᵢ in f64 (tr(a a)), for a square matrix.
pub fn trace_of_square(a: &Matrix) -> f64 {
    assert_eq!(a.rows, a.cols, "a square matrix");
    let n = a.rows;
    let mut total = 0f64;
    for i in 0..n {
        let row = a.row(i);
        let mut s = 0f64;
        for (j, &v) in row.iter().enumerate() {
            s += f64::from(v) * f64::from(a.data[j * n + i]);
        }
        total += s;
    }
    total
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
    fn gram_matrices_and_their_sums_agree_with_the_definition() {
        let a = filled(600, 21, 3);
        let want = naive(&transpose(&a), &a);
        for threads in [1, 2, 3] {
            let got = columns_gram(&a, threads);
            for (g, w) in got.data.iter().zip(&want.data) {
                assert!((g - w).abs() < 1e-2, "{g} vs {w}");
            }
        }
        let b = filled(21, 21, 5);
        let dot: f64 = (0..21 * 21)
            .map(|i| f64::from(b.data[i]) * f64::from(want.data[i]))
            .sum();
        let got = elementwise_dot(&b, &want);
        assert!(
            (got - dot).abs() < 1e-6 * dot.abs().max(1.0),
            "{got} vs {dot}"
        );
        let square = naive(&b, &b);
        let trace: f64 = (0..21).map(|i| f64::from(square.at(i, i))).sum();
        let got = trace_of_square(&b);
        assert!((got - trace).abs() < 1e-3, "{got} vs {trace}");
    }

    #[test]
    fn gathering_columns_permutes_and_flips() {
        let m = Matrix::from_vec(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let g = m.gather_columns(&[2, 0], &[1.0, -1.0]);
        assert_eq!(g.data, vec![3.0, -1.0, 6.0, -4.0]);
    }
}
