//! The SIMD dot products of Q5_0 (· Q8_0) and Q5_1 (· Q8_1) against the scalar reference
//! table, bit for bit, on every SIMD level this CPU runs.
//!
//! Weight blocks are random bytes (every code and 5th-bit pattern) with chosen f16 scales,
//! including the extremes of f16. Activation rows come from the scalar quantizer (values
//! spanning 1e-6 .. 1e4) or are raw random bytes (codes including -128, any stored sum).

mod test_rng;

use test_rng::Rng;

use wazn_kernels::{DType, Isa};

const QK: usize = 32;

/// An f16 as bits: mostly a finite value of ordinary size, sometimes an extreme.
fn random_f16(rng: &mut Rng) -> u16 {
    match rng.below(8) {
        0 => 0x7BFF, // 65504
        1 => 0xFBFF, // -65504
        2 => 0x0001, // the smallest subnormal
        3 => 0x0000,
        // Exponent 1..=29 (2^-14 .. 2^14), random sign and mantissa.
        _ => {
            ((rng.below(2) as u16) << 15)
                | ((1 + rng.below(29) as u16) << 10)
                | rng.below(1024) as u16
        }
    }
}

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
        // d, and for Q5_1 the offset m.
        let n_scales = if dtype == DType::Q5_1 { 2 } else { 1 };
        for k in 0..n_scales {
            block[2 * k..2 * k + 2].copy_from_slice(&random_f16(rng).to_le_bytes());
        }
    }
    row
}

fn random_activations(rng: &mut Rng, partner: DType, n_blocks: usize) -> Vec<u8> {
    let size = partner.type_size();
    let mut row = vec![0u8; n_blocks * size];
    if rng.below(3) == 0 {
        rng.fill(&mut row);
        for block in row.chunks_exact_mut(size) {
            // Finite f16 d (and s for Q8_1).
            let n_scales = if partner == DType::Q8_1 { 2 } else { 1 };
            for k in 0..n_scales {
                block[2 * k..2 * k + 2].copy_from_slice(&random_f16(rng).to_le_bytes());
            }
        }
        return row;
    }
    let mut values = Vec::with_capacity(n_blocks * QK);
    for _ in 0..n_blocks {
        let scale = 10f32.powi(rng.below(11) as i32 - 6);
        values.extend((0..QK).map(|_| rng.unit() * scale));
    }
    let quantize = partner.scalar_traits().from_f32.expect("partner quantizer");
    quantize(&values, &mut row);
    row
}

fn same(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

#[test]
fn q5_simd_dot_products_match_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let levels: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect();
    for isa in levels {
        for dtype in [DType::Q5_0, DType::Q5_1] {
            let fast = dtype.traits_for(isa).expect("available level");
            assert!(
                fast.vec_dot as usize != dtype.scalar_traits().vec_dot as usize,
                "{isa:?} {dtype} still uses the scalar vec_dot"
            );
            let reference = dtype.scalar_traits();
            let partner = reference.vec_dot_type;
            for trial in 0..600 {
                // Ragged: 1..=40 blocks, so every remainder of the groups of 4 occurs.
                let n_blocks = 1 + trial % 40;
                let n = n_blocks * QK;
                let w = random_weights(&mut rng, dtype, n_blocks);
                let xs: Vec<Vec<u8>> = (0..4)
                    .map(|_| random_activations(&mut rng, partner, n_blocks))
                    .collect();
                let offset = 1 + trial % 3;
                let mut w_buf = vec![0u8; offset];
                w_buf.extend_from_slice(&w);
                let w_in = &w_buf[offset..];
                let want: Vec<f32> = xs.iter().map(|x| (reference.vec_dot)(n, &w, x)).collect();
                let got = (fast.vec_dot)(n, w_in, &xs[0]);
                assert!(
                    same(got, want[0]),
                    "{isa:?} {dtype} vec_dot n={n} trial {trial}: {got} vs scalar {}",
                    want[0]
                );
                if let Some(x4) = fast.vec_dot_x4 {
                    let got4 = x4(n, w_in, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                    for r in 0..4 {
                        assert!(
                            same(got4[r], want[r]),
                            "{isa:?} {dtype} vec_dot_x4 row {r} n={n} trial {trial}: {} vs scalar {}",
                            got4[r],
                            want[r]
                        );
                    }
                }
            }
        }
    }
}
