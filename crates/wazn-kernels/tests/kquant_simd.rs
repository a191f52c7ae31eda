//! The SIMD dot products of the K-quant weight types (Q2_K .. Q6_K) with Q8_K activations,
//! against the scalar reference table, bit for bit, on every SIMD level this CPU runs.
//!
//! Bit for bit holds because, per super-block, both compute the same two integers (exact
//! in any order) and then the same f32 expression in the same block order.
//!
//! Weight blocks are random bytes (every code value, every packed scale) with chosen f16
//! scales, including the extremes of f16 (±65504, the smallest subnormal, zero, negative).
//! Activation rows come from the scalar Q8_K quantizer (values spanning 1e-6 .. 1e4) or are
//! raw random bytes (codes including -128, code sums that need not match the codes), so
//! the kernels are held to the reference on anything a file or a caller can hand them.

mod test_rng;

use test_rng::Rng;

use wazn_kernels::{DType, Isa};

const QK_K: usize = 256;
const Q8_K_BYTES: usize = 292;

const K_TYPES: [DType; 5] = [
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Byte offsets of the f16 scales (d, and dmin where the type has mins) in a super-block.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => unreachable!("not a K-quant weight type"),
    }
}

/// An f16 scale: mostly ordinary, sometimes the extremes of the format.
fn random_f16_scale(rng: &mut Rng) -> u16 {
    let bits: u16 = match rng.below(10) {
        0 => 0x7BFF, // 65504, the largest finite f16
        1 => 0xFBFF, // -65504
        2 => 0x0001, // the smallest subnormal
        3 => 0x0000,
        4 => 0x8000, // -0
        5 => 0x03FF, // the largest subnormal
        _ => {
            let v = rng.unit() * 10f32.powi(rng.below(7) as i32 - 5);
            half_bits(v)
        }
    };
    bits
}

/// `v` (|v| < 65504) as f16 bits, rounded toward zero: any f16 value will do for a scale.
fn half_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xFF) as i32 - 127 + 15;
    let mantissa = bits & 0x7F_FFFF;
    if exponent <= 0 {
        // Subnormal or zero in f16.
        let shift = 14 - exponent;
        if shift > 24 {
            return sign;
        }
        return sign | (((mantissa | 0x80_0000) >> shift) as u16);
    }
    sign | ((exponent as u16) << 10) | ((mantissa >> 13) as u16)
}

/// `n_blocks` weight super-blocks of `dtype`: random bytes with chosen f16 scales; some
/// blocks have every code byte at 0x00 or 0xFF (the smallest / largest codes).
fn random_weights(rng: &mut Rng, dtype: DType, n_blocks: usize) -> Vec<u8> {
    let size = dtype.type_size();
    let mut row = vec![0u8; n_blocks * size];
    rng.fill(&mut row);
    for block in row.chunks_exact_mut(size) {
        match rng.below(8) {
            0 => block.fill(0xFF),
            1 => block.fill(0x00),
            _ => {}
        }
        for &offset in scale_offsets(dtype) {
            let bits = random_f16_scale(rng);
            block[offset..offset + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    row
}

/// A Q8_K activation row of `n_blocks` super-blocks: quantized by the scalar reference from
/// values with a per-block magnitude in 1e-6 .. 1e4, or raw random bytes with a finite d,
/// or extreme codes (all 127 or all -128).
fn random_activations(rng: &mut Rng, n_blocks: usize) -> Vec<u8> {
    let mut row = vec![0u8; n_blocks * Q8_K_BYTES];
    match rng.below(4) {
        0 | 1 => {
            let mut values = Vec::with_capacity(n_blocks * QK_K);
            for _ in 0..n_blocks {
                let scale = 10f32.powi(rng.below(11) as i32 - 6);
                values.extend((0..QK_K).map(|_| rng.unit() * scale));
            }
            let quantize = DType::Q8_K
                .scalar_traits()
                .from_f32
                .expect("Q8_K has a quantizer");
            quantize(&values, &mut row);
        }
        2 => {
            rng.fill(&mut row);
            for block in row.chunks_exact_mut(Q8_K_BYTES) {
                let d = rng.unit() * 10f32.powi(rng.below(13) as i32 - 8);
                block[0..4].copy_from_slice(&d.to_le_bytes());
            }
        }
        _ => {
            rng.fill(&mut row);
            for block in row.chunks_exact_mut(Q8_K_BYTES) {
                let code = if rng.below(2) == 0 { 127u8 } else { 0x80 };
                block[4..260].fill(code);
                let d = rng.unit();
                block[0..4].copy_from_slice(&d.to_le_bytes());
            }
        }
    }
    row
}

/// `bytes` placed at an odd offset of a fresh buffer, so vector loads are unaligned.
fn misaligned(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; offset];
    buffer.extend_from_slice(bytes);
    buffer
}

fn same(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

fn simd_levels() -> Vec<Isa> {
    let levels: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect();
    if levels.is_empty() {
        eprintln!("no SIMD level on this CPU: only the scalar table is in use");
    }
    levels
}

#[test]
fn k_quant_simd_tables_have_kernels_of_their_own() {
    for isa in simd_levels() {
        for dtype in K_TYPES {
            let fast = dtype.traits_for(isa).expect("available level");
            assert!(
                fast.vec_dot as usize != dtype.scalar_traits().vec_dot as usize,
                "{isa:?} {dtype} still uses the scalar vec_dot"
            );
            assert!(
                fast.vec_dot_x4.is_some(),
                "{isa:?} {dtype} has no vec_dot_x4"
            );
            assert_eq!(fast.vec_dot_type, DType::Q8_K);
        }
    }
}

#[test]
fn k_quant_simd_dot_products_match_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for isa in simd_levels() {
        for dtype in K_TYPES {
            let fast = dtype.traits_for(isa).expect("available level");
            let reference = dtype.scalar_traits();
            let x4 = fast.vec_dot_x4.expect("K-quant SIMD x4");
            for trial in 0..400 {
                // Ragged rows: 1..=9 super-blocks.
                let n_blocks = 1 + trial % 9;
                let n = n_blocks * QK_K;
                let w = random_weights(&mut rng, dtype, n_blocks);
                let xs: Vec<Vec<u8>> = (0..4)
                    .map(|_| random_activations(&mut rng, n_blocks))
                    .collect();
                let w_buf = misaligned(&w, 1 + trial % 3);
                let w_in = &w_buf[1 + trial % 3..];
                let x_buf = misaligned(&xs[0], 1 + trial % 5);
                let x_in = &x_buf[1 + trial % 5..];

                let want: Vec<f32> = xs.iter().map(|x| (reference.vec_dot)(n, &w, x)).collect();
                let got = (fast.vec_dot)(n, w_in, x_in);
                assert!(
                    same(got, want[0]),
                    "{isa:?} {dtype} vec_dot n={n} trial {trial}: {got} vs scalar {}",
                    want[0]
                );
                let got4 = x4(n, w_in, [x_in, &xs[1], &xs[2], &xs[3]]);
                for r in 0..4 {
                    assert!(
                        same(got4[r], want[r]),
                        "{isa:?} {dtype} vec_dot_x4 row {r} n={n} trial {trial}: {} vs scalar {}",
                        got4[r],
                        want[r]
                    );
                }
                // Fewer super-blocks than the row holds: both stop at n.
                if n_blocks > 1 {
                    let m = (n_blocks - 1) * QK_K;
                    let want = (reference.vec_dot)(m, &w, &xs[1]);
                    let got = (fast.vec_dot)(m, w_in, &xs[1]);
                    assert!(same(got, want), "{isa:?} {dtype} n={m} of {n}");
                }
            }
        }
    }
}

#[test]
fn k_quant_simd_dot_products_are_finite_and_nonzero_on_ordinary_rows() {
    // Guards the comparison above against a reference and a kernel that agree on nothing
    // useful (e.g. both 0): ordinary rows give ordinary, differing results.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for isa in simd_levels() {
        for dtype in K_TYPES {
            let fast = dtype.traits_for(isa).expect("available level");
            let mut w = vec![0u8; 4 * dtype.type_size()];
            rng.fill(&mut w);
            for block in w.chunks_exact_mut(dtype.type_size()) {
                for &offset in scale_offsets(dtype) {
                    block[offset..offset + 2].copy_from_slice(&half_bits(0.01).to_le_bytes());
                }
            }
            let values: Vec<f32> = (0..4 * QK_K).map(|_| rng.unit()).collect();
            let mut x = vec![0u8; 4 * Q8_K_BYTES];
            let quantize = DType::Q8_K.scalar_traits().from_f32.expect("quantizer");
            quantize(&values, &mut x);
            let got = (fast.vec_dot)(4 * QK_K, &w, &x);
            let want = (dtype.scalar_traits().vec_dot)(4 * QK_K, &w, &x);
            assert!(got.is_finite() && got != 0.0, "{isa:?} {dtype}: {got}");
            assert!(same(got, want), "{isa:?} {dtype}: {got} vs {want}");
        }
    }
}

#[test]
fn simd_q8_k_quantizer_matches_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let reference = DType::Q8_K
        .scalar_traits()
        .from_f32
        .expect("Q8_K quantizer");
    for isa in simd_levels() {
        let fast = DType::Q8_K
            .traits_for(isa)
            .expect("available level")
            .from_f32
            .expect("Q8_K quantizer");
        for trial in 0..400 {
            let n_blocks = 1 + trial % 9;
            let n = n_blocks * QK_K;
            let mut src: Vec<f32> = Vec::with_capacity(n);
            for _ in 0..n_blocks {
                let scale = 10f32.powi(rng.below(13) as i32 - 8);
                src.extend((0..QK_K).map(|_| rng.unit() * scale));
            }
            match trial % 10 {
                // Ties: with max|x| = 127 the scale is -1, so k + 0.5 rounds to even.
                0 => {
                    for (i, v) in src.iter_mut().enumerate() {
                        *v = if i % QK_K == 0 {
                            127.0
                        } else {
                            (i % 254) as f32 * 0.5 - 63.5
                        };
                    }
                }
                1 => src[..QK_K].fill(0.0),
                2 => src[rng.below(n)] = f32::NAN,
                3 => src[rng.below(n)] = f32::INFINITY,
                4 => src[rng.below(n)] = f32::NEG_INFINITY,
                5 => src.iter_mut().for_each(|v| *v *= 1e34),
                // A largest magnitude so small that -127/max overflows to infinity.
                6 => {
                    src[..QK_K].fill(0.0);
                    src[rng.below(QK_K)] = 1e-45;
                    src[rng.below(QK_K)] = -1e-45;
                }
                // Equal magnitudes of both signs: the first one sets the sign.
                7 => {
                    let i = rng.below(QK_K / 2);
                    let j = QK_K / 2 + rng.below(QK_K / 2);
                    src[i] = 1e5 * if rng.below(2) == 0 { 1.0 } else { -1.0 };
                    src[j] = -src[i];
                }
                8 => src[..QK_K].fill(-0.0),
                _ => {}
            }
            let size = DType::Q8_K.row_bytes(n).expect("whole blocks");
            let mut want = vec![0u8; size];
            reference(&src, &mut want);
            let mut buffer = vec![0xAAu8; size + 3];
            fast(&src, &mut buffer[3..]);
            assert_eq!(&buffer[3..], &want[..], "{isa:?} trial {trial}");
        }
    }
}
