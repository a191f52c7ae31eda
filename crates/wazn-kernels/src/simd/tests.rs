//! Every SIMD kernel against the scalar reference, on every level this CPU runs.
//!
//! Block dot products (Q4_0, Q4_1, Q8_0): bit for bit. The integer sum of a block is
//! exact in any order, and the kernels do the reference's f32 arithmetic per block in the
//! reference's order.
//!
//! Float dot products (F32, F16, BF16): the SIMD and scalar kernels form the same exact
//! products and differ only in the order in which they add them (32 lanes of fused
//! multiply-adds and a tree at the end, against one running sum). Each order is within
//! γ_k·M of the exact sum, where M is the sum of the terms' magnitudes and k bounds the
//! number of roundings along any path (Higham, "Accuracy and Stability of Numerical
//! Algorithms", §4.2), so the two results differ by at most 2·γ_k·M.
//!
//! Quantizers: bit for bit.

use half::{bf16, f16};

use super::Isa;
use crate::dtype::DType;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Random values with a block-wise scale spanning 1e-6 .. 1e4 (extreme but finite f16
/// scales after quantization).
fn random_values(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(n);
    for _ in 0..n.div_ceil(32) {
        let scale = 10f32.powi(rng.below(11) as i32 - 6);
        for _ in 0..32 {
            values.push(rng.unit() * scale);
        }
    }
    values.truncate(n);
    values
}

/// `bytes` copied to an odd offset of a fresh buffer, so SIMD loads are unaligned.
fn misaligned(bytes: &[u8], offset: usize) -> (Vec<u8>, usize) {
    let mut buffer = vec![0u8; offset];
    buffer.extend_from_slice(bytes);
    (buffer, offset)
}

/// A row of `n` elements of `dtype` made from random values by the scalar quantizer.
/// Weight rows (`is_weight`) of Q8_0 sometimes hold a -128 code, as a file may; activation
/// rows never do (no quantizer writes it).
fn random_row(rng: &mut Rng, dtype: DType, n: usize, is_weight: bool) -> Vec<u8> {
    let quantize = dtype.scalar_traits().from_f32.expect("quantizable type");
    let mut row = vec![0u8; dtype.row_bytes(n).expect("whole blocks")];
    quantize(&random_values(rng, n), &mut row);
    // Q8_0 weight codes may be -128 in a file; the kernels must take it.
    if is_weight && dtype == DType::Q8_0 && rng.below(2) == 0 {
        let block = rng.below(n / 32);
        row[block * 34 + 2 + rng.below(32)] = 0x80;
    }
    row
}

/// M: the sum of the magnitudes of the products a float dot product adds.
fn term_magnitude(dtype: DType, n: usize, w: &[u8], x: &[u8]) -> f64 {
    (0..n)
        .map(|i| {
            let wi = match dtype {
                DType::F32 => {
                    f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]) as f64
                }
                DType::BF16 => bf16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f64(),
                _ => f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f64(),
            };
            let xi =
                f32::from_le_bytes([x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]]) as f64;
            (wi * xi).abs()
        })
        .sum()
}

fn simd_levels() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect()
}

#[test]
fn the_best_level_is_available() {
    assert!(Isa::best().is_available());
    assert!(Isa::Scalar.is_available());
    for dtype in DType::ALL {
        assert!(std::ptr::eq(
            dtype.traits(),
            dtype.traits_for(Isa::best()).unwrap()
        ));
    }
}

#[test]
fn simd_dot_products_match_the_scalar_reference() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for isa in simd_levels() {
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q8_0,
        ] {
            let fast = dtype.traits_for(isa).unwrap();
            let reference = dtype.scalar_traits();
            let partner = dtype.vec_dot_type();
            for trial in 0..200 {
                let n_blocks = 1 + rng.below(64);
                // Float rows also get lengths that are not a multiple of the SIMD width.
                let n = match dtype {
                    DType::F32 | DType::F16 | DType::BF16 => n_blocks * 32 - rng.below(32),
                    _ => n_blocks * 32,
                };
                let w = random_row(&mut rng, dtype, n, true);
                let xs: Vec<Vec<u8>> = (0..4)
                    .map(|_| random_row(&mut rng, partner, n, false))
                    .collect();
                let (w_buf, w_off) = misaligned(&w, 1 + trial % 3);
                let (x_buf, x_off) = misaligned(&xs[0], 1 + trial % 5);
                let (w_in, x_in) = (&w_buf[w_off..], &x_buf[x_off..]);

                // k bounds the roundings on any path of the float sums: one per element
                // added in order, plus the lanes' tree.
                let k = n as f64 + 64.0;
                let gamma = k * f32::EPSILON as f64 / (1.0 - k * f32::EPSILON as f64);
                let exact = !matches!(dtype, DType::F32 | DType::F16 | DType::BF16);
                let check = |got: f32, x: &[u8], what: &str| {
                    let want = (reference.vec_dot)(n, &w, x);
                    if exact {
                        assert!(
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                            "{isa:?} {dtype} {what} n={n}: {got} vs scalar {want}"
                        );
                        return;
                    }
                    let bound = 2.0 * gamma * term_magnitude(dtype, n, &w, x);
                    let diff = (got as f64 - want as f64).abs();
                    assert!(
                        diff <= bound,
                        "{isa:?} {dtype} {what} n={n}: {got} vs scalar {want} (|diff| {diff:e} > {bound:e})"
                    );
                };
                check((fast.vec_dot)(n, w_in, x_in), &xs[0], "vec_dot");
                if let Some(x4) = fast.vec_dot_x4 {
                    let got = x4(n, w_in, [x_in, &xs[1], &xs[2], &xs[3]]);
                    for (r, x) in xs.iter().enumerate() {
                        check(got[r], x, "vec_dot_x4");
                    }
                }
            }
        }
    }
}

#[test]
fn simd_quantizers_match_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for isa in simd_levels() {
        for dtype in [DType::Q8_0, DType::Q8_1] {
            let Some(fast) = dtype.traits_for(isa).unwrap().from_f32 else {
                continue;
            };
            let reference = dtype.scalar_traits().from_f32.unwrap();
            for trial in 0..300 {
                let n = 32 * (1 + rng.below(64));
                let mut src = random_values(&mut rng, n);
                match trial % 6 {
                    // Ties: with max|x| = 127 the scale is 1, so k + 0.5 rounds away from 0.
                    0 => {
                        for (i, v) in src.iter_mut().enumerate() {
                            *v = if i % 32 == 0 {
                                127.0
                            } else {
                                (i % 250) as f32 * 0.5 - 62.5
                            };
                        }
                    }
                    1 => src[..32].fill(0.0),
                    2 => src[rng.below(n)] = f32::NAN,
                    3 => src[rng.below(n)] = f32::INFINITY,
                    4 => src.iter_mut().for_each(|v| *v *= 1e30),
                    _ => {}
                }
                let size = dtype.row_bytes(n).unwrap();
                let mut want = vec![0u8; size];
                reference(&src, &mut want);
                let mut buffer = vec![0u8; size + 3];
                fast(&src[..], &mut buffer[3..]);
                assert_eq!(&buffer[3..], &want[..], "{isa:?} {dtype} trial {trial}");
            }
        }
    }
}
