//! The K-quant weight quantizers as a user sees them: dequantize(quantize(x)) stays close
//! to x. Byte equality with ggml is checked in dtype_ggml.rs; this is the sanity check that
//! the bytes also mean what the dequantizer reads.

mod dtype_support;
mod test_rng;

use dtype_support::{dequantize, quantize};
use test_rng::Rng;
use wazn_kernels::dtype::DType;

const WEIGHT_TYPES: [DType; 5] = [
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Roughly normal values (sum of four uniforms) of standard deviation about `scale`.
fn bell_row(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.unit() + rng.unit() + rng.unit() + rng.unit()) * 0.866 * scale)
        .collect()
}

/// sqrt(Σ (y - x)²) / sqrt(Σ x²), in f64.
fn relative_rms_error(x: &[f32], y: &[f32]) -> f64 {
    let err: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let norm: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
    (err / norm).sqrt()
}

/// Relative RMS error allowed for roughly normal rows: about 15% over what the reference
/// quantizers reach (Q2_K 0.29, Q3_K 0.15, Q4_K 0.069, Q5_K 0.035, Q6_K 0.017; Q6_K 0.020
/// where d is an f16 subnormal).
fn error_bound(dtype: DType) -> f64 {
    match dtype {
        DType::Q2_K => 0.33,
        DType::Q3_K => 0.17,
        DType::Q4_K => 0.08,
        DType::Q5_K => 0.04,
        _ => 0.024,
    }
}

#[test]
fn dequantized_rows_stay_close_to_the_input() {
    let mut rng = Rng(0x5eed_4b71);
    let n = 256 * 64;
    for scale in [1e-3f32, 0.02, 1.0, 300.0] {
        let x = bell_row(&mut rng, n, scale);
        for dtype in WEIGHT_TYPES {
            let y = dequantize(dtype, &quantize(dtype, &x), n);
            let error = relative_rms_error(&x, &y);
            assert!(
                error <= error_bound(dtype),
                "{dtype}, scale {scale}: relative RMS error {error:.4} > {}",
                error_bound(dtype)
            );
        }
    }
}

#[test]
fn zero_rows_come_back_zero() {
    let x = vec![0.0f32; 512];
    for dtype in WEIGHT_TYPES {
        let y = dequantize(dtype, &quantize(dtype, &x), x.len());
        assert!(y.iter().all(|&v| v == 0.0), "{dtype}");
    }
}
