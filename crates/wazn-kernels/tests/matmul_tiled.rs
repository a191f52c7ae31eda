//! Matrix products (whatever kernel the CPU's SIMD level picks: register tiles, four-row
//! kernels or one `vec_dot` per pair) against the scalar reference of the dtype table,
//! over random shapes: weight row counts that are not a multiple of any tile, 1..=13
//! activation rows and counts past one task's chunk, block counts that are not a
//! multiple of 4, and 1, 2 and 3 threads.
//!
//! Block types: bit for bit the scalar `vec_dot` of each weight row with the activation
//! row quantized by the scalar quantizer (the SIMD quantizers equal it bit for bit).
//! Float weights (F16): the same exact products summed in another order, so within
//! 2·γ_k·Σ|w_i·x_i| of the scalar sum, γ_k = k·u / (1 - k·u) for k = n_cols + 3
//! roundings along any path (Higham, "Accuracy and Stability of Numerical Algorithms",
//! §4.2).

mod test_rng;

use test_rng::Rng;

use wazn_kernels::{matmul, Activations, DType, ThreadPool, WeightMatrix};

/// Random values with a scale per 32 spanning 1e-4 .. 1e2 (varied f16 block scales).
fn random_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        let scale = 10f32.powi(rng.below(7) as i32 - 4);
        for _ in 0..32 {
            values.push(rng.unit() * scale);
        }
    }
    values.truncate(n);
    values
}

/// One random case: a product by [`matmul`] checked against the scalar reference.
fn check_case(
    pool: &ThreadPool,
    dtype: DType,
    n_rows: usize,
    n_cols: usize,
    n_x: usize,
    rng: &mut Rng,
) {
    let scalar = dtype.scalar_traits();
    let row_bytes = dtype.row_bytes(n_cols).expect("whole blocks");
    let quantize = scalar.from_f32.expect("a quantizable weight type");
    let mut w_bytes = vec![0u8; n_rows * row_bytes];
    for dst in w_bytes.chunks_exact_mut(row_bytes) {
        quantize(&random_values(rng, n_cols), dst);
    }
    let w = WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).expect("shape");
    let x = random_values(rng, n_x * n_cols);
    let mut out = vec![f32::NAN; n_x * n_rows];
    matmul(
        pool,
        &w,
        &x,
        n_x,
        &mut out,
        &mut Vec::new(),
        Activations::Quantized,
    );

    let partner = scalar.vec_dot_type;
    let partner_bytes = partner.row_bytes(n_cols).expect("whole blocks");
    let quantize_x = partner
        .scalar_traits()
        .from_f32
        .expect("a partner quantizer");
    let mut x_row = vec![0u8; partner_bytes];
    let is_float = matches!(dtype, DType::F16 | DType::F32 | DType::BF16);
    for r in 0..n_x {
        let xr = &x[r * n_cols..(r + 1) * n_cols];
        quantize_x(xr, &mut x_row);
        for o in 0..n_rows {
            let w_row = &w_bytes[o * row_bytes..(o + 1) * row_bytes];
            let want = (scalar.vec_dot)(n_cols, w_row, &x_row);
            let got = out[r * n_rows + o];
            let case = format!("{dtype} {n_rows}x{n_cols}, {n_x} rows, ({r},{o})");
            if is_float {
                let mut w_f32 = vec![0.0f32; n_cols];
                (scalar.to_f32)(w_row, &mut w_f32);
                let magnitude: f64 = w_f32
                    .iter()
                    .zip(xr)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let k = (n_cols + 3) as f64;
                let u = f32::EPSILON as f64 / 2.0;
                let bound = 2.0 * (k * u / (1.0 - k * u)) * magnitude;
                assert!(
                    (got as f64 - want as f64).abs() <= bound,
                    "{case}: {got} vs {want} (bound {bound})"
                );
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{case}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn products_match_the_scalar_reference_over_random_shapes() {
    let mut rng = Rng(0x005E_ED0F_7A11);
    for n_threads in [1, 2, 3] {
        let pool = ThreadPool::new(n_threads).expect("thread pool");
        for dtype in [DType::Q8_0, DType::Q4_1, DType::Q4_0, DType::F16] {
            for _ in 0..6 {
                let n_rows = 1 + rng.below(70);
                let n_blocks = 1 + rng.below(20);
                let n_cols = match dtype {
                    // Float rows need not be whole 8-wide steps.
                    DType::F16 => 32 * n_blocks - rng.below(8),
                    _ => 32 * n_blocks,
                };
                let n_x = 1 + rng.below(13);
                check_case(&pool, dtype, n_rows, n_cols, n_x, &mut rng);
            }
            // Past one task's chunk of activation rows, with a ragged last chunk.
            check_case(&pool, dtype, 37, 96, 64 + 5, &mut rng);
        }
    }
}

#[test]
fn every_ragged_tile_shape_matches_the_scalar_reference() {
    // Every remainder of weight rows (mod 4) and of activation rows (1..=13).
    let mut rng = Rng(0xB10C_5EED);
    let pool = ThreadPool::new(2).expect("thread pool");
    for dtype in [DType::Q8_0, DType::Q4_1, DType::F16] {
        for n_rows in [1, 2, 3, 4, 5, 6, 7, 17, 18, 19] {
            for n_x in 1..=13 {
                check_case(&pool, dtype, n_rows, 160, n_x, &mut rng);
            }
        }
    }
}
