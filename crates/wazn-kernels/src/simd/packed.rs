//! Kernels for weight matrices in the packed layout of [`crate::packed`]: a group of 8
//! interleaved weight rows against a few activation rows at a time, row `j`'s sums in
//! vector lane `j`, straight from the packed bytes (no per-call rearranging).
//!
//! Results, per (weight row, activation row) pair: bit for bit the scalar `vec_dot` of
//! the row as stored (exact integer block sums, then the reference's f32 arithmetic per
//! block in the reference's order, one lane per pair).

use super::Isa;
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_tiles;

/// `out[r · n_groups · 8 + o] = Σ_i w[o, i] · x[r, i]` for the `n_groups · 8` rows of
/// `w` and `r < n_x_rows`.
///
/// `w`: `n_groups` packed groups of `n_cols` columns; `x`: `n_x_rows` contiguous rows
/// of the dot partner type; `x_scales`: those rows' `[n_blocks, 2]` tables of
/// [`crate::packed::activation_scales`]; `out`: `[n_x_rows, n_groups · 8]`. Rows that do
/// not fit short slices get no results.
pub(crate) type PackedFn = fn(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
);

/// The packed-layout kernel of `isa` for weights of `dtype`, if it has one and this CPU
/// runs `isa`.
pub(crate) fn kernel(isa: Isa, dtype: DType) -> Option<PackedFn> {
    match isa {
        Isa::Scalar => None,
        Isa::Avx2 if isa.is_available() => avx2_kernel(dtype),
        Isa::Avx512 if isa.is_available() => avx512_kernel(dtype),
        Isa::Avx2 | Isa::Avx512 => None,
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernel(dtype: DType) -> Option<PackedFn> {
    x86_avx2::kernel(dtype).or_else(|| x86_avx2_kquants::kernel(dtype))
}

#[cfg(target_arch = "x86_64")]
fn avx512_kernel(dtype: DType) -> Option<PackedFn> {
    x86_avx512::kernel(dtype).or_else(|| x86_avx512_kquants::kernel(dtype))
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_kernel(_dtype: DType) -> Option<PackedFn> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_kernel(_dtype: DType) -> Option<PackedFn> {
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::packed::{activation_scales, pack, GROUP_ROWS, PACKED_TYPES};
    use crate::simd::gemm::tests::values;

    /// Byte offsets of a block's f16 scales (MXFP4: its exponent byte is 0).
    fn scale_offsets(dtype: DType) -> &'static [usize] {
        match dtype {
            DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
            DType::Q6_K => &[208],
            DType::Mxfp4 => &[],
            _ => &[0],
        }
    }

    /// `n_rows` weight rows of `dtype`: random bytes (every code and packed sub-block
    /// scale) with ordinary f16 block scales (or exponents near 1), so that no product
    /// overflows to a NaN whose bits could differ.
    pub(crate) fn weight_rows(
        dtype: DType,
        n_rows: usize,
        n_cols: usize,
        seed: &mut u64,
    ) -> Vec<u8> {
        let row_bytes = dtype.row_bytes(n_cols).unwrap();
        let mut rows: Vec<u8> = values(seed, n_rows * row_bytes)
            .iter()
            .map(|v| (v.to_bits() >> 7) as u8)
            .collect();
        let scales = values(seed, rows.len() / dtype.type_size() * 2);
        for (b, block) in rows.chunks_exact_mut(dtype.type_size()).enumerate() {
            if dtype == DType::Mxfp4 {
                block[0] = 116 + (b % 8) as u8;
            }
            for (k, &at) in scale_offsets(dtype).iter().enumerate() {
                let v = half::f16::from_f32(scales[2 * b + k] * 0.01);
                block[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        rows
    }

    /// Every packed kernel of every level this CPU runs, called directly on packed rows,
    /// against the scalar `vec_dot` of the rows as stored: bit for bit.
    #[test]
    fn packed_kernels_match_the_scalar_dot_products() {
        let mut seed = 0x5EED_0FBA_5E00_u64;
        for isa in Isa::available() {
            for dtype in PACKED_TYPES {
                let Some(run) = kernel(isa, dtype) else {
                    continue;
                };
                println!("{isa:?} {dtype}");
                let scalar = dtype.scalar_traits();
                let partner = scalar.vec_dot_type;
                let block = dtype.block_size();
                let shapes = [(1, 1, 1), (8, 2, 1), (13, 3, 5), (19, 5, 4), (16, 2, 9)];
                for (n_w, n_blocks, n_x) in shapes {
                    let n_cols = n_blocks * block;
                    let (w_row, x_row) = (
                        dtype.row_bytes(n_cols).unwrap(),
                        partner.row_bytes(n_cols).unwrap(),
                    );
                    let w = weight_rows(dtype, n_w, n_cols, &mut seed);
                    let mut x = vec![0u8; n_x * x_row];
                    for row in x.chunks_exact_mut(x_row) {
                        let src = values(&mut seed, n_cols);
                        (partner.scalar_traits().from_f32.unwrap())(&src, row);
                    }
                    let packed = pack(dtype, &w, n_w, n_cols).unwrap();
                    let n_groups = n_w.div_ceil(GROUP_ROWS);
                    let scales = activation_scales(partner, &x, n_cols, n_x);
                    let width = n_groups * GROUP_ROWS;
                    let mut got = vec![f32::NAN; n_x * width];
                    run(n_cols, &packed, n_groups, &x, n_x, &scales, &mut got);
                    for r in 0..n_x {
                        for o in 0..width {
                            let value = got[r * width + o];
                            let want = match w.get(o * w_row..(o + 1) * w_row) {
                                Some(wr) => (scalar.vec_dot)(n_cols, wr, &x[r * x_row..][..x_row]),
                                // Padding rows of the last group are zeros.
                                None => 0.0,
                            };
                            assert_eq!(
                                value.to_bits(),
                                want.to_bits(),
                                "{isa:?} {dtype} {n_w}x{n_cols} ({r},{o}): {value} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
