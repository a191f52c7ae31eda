//! Weight matrices repacked once, at load, into groups of 8 interleaved rows.
//!
//! A matrix product reads every weight row once per call. Rows stored one after another
//! make a SIMD kernel either sum each row horizontally (one dot product at a time) or
//! rearrange a few rows per call into lanes; both cost about as much as reading the
//! weights when a single activation row meets them (a decode step). Repacked, the
//! codes of 8 rows lie side by side, so that a kernel leaves row `j`'s partial sum in
//! vector lane `j` with no rearranging, from one activation row up.
//!
//! Layout, per group of 8 rows and per block index `b` (a *group block*, as many bytes
//! as the 8 rows' blocks `b`, so a packed matrix is exactly as large as its rows,
//! rounded up to whole groups):
//! - Q8_0 (272 bytes): the 8 rows' f16 scales `d` (16 bytes), then 8 steps of 32 bytes:
//!   step `s` holds codes `4s .. 4s + 4` of row 0, then of row 1, … of row 7.
//! - Q4_1 (160 bytes): the 8 scales `d` (16 bytes), the 8 offsets `m` (16 bytes), then 4
//!   pairs of steps of 32 bytes: in pair `p`, row `j`'s 4 bytes hold codes
//!   `8p .. 8p + 4` in their low nibbles and codes `8p + 4 .. 8p + 8` in their high ones.
//!
//! Groups follow each other, each its `n_blocks` group blocks in block order. Rows past
//! the last one (the tail of the last group) are zeros. Packing is a byte permutation:
//! [`unpack_row`] gives each row's stored bytes back.

use crate::dtype::DType;
use crate::simd::{packed_kernel, Isa};

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 8;

/// Values per block of the packed types.
const BLOCK: usize = 32;

/// How the rows of a weight matrix lie in its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Row after row, as stored in GGUF.
    #[default]
    Rows,
    /// Groups of 8 rows interleaved block by block (this module).
    Interleaved8,
}

/// Whether matrices of `dtype` are worth packing on this CPU: the SIMD level in use has
/// a kernel for the packed layout.
pub fn worth_packing(dtype: DType) -> bool {
    packed_kernel(Isa::best(), dtype).is_some()
}

/// Whether `dtype` has a packed layout at all.
pub fn has_packed_layout(dtype: DType) -> bool {
    matches!(dtype, DType::Q8_0 | DType::Q4_1)
}

/// Bytes of an `[n_rows, n_cols]` matrix of `dtype` once packed: whole groups of rows.
pub fn packed_len(dtype: DType, n_rows: usize, n_cols: usize) -> Option<usize> {
    if !has_packed_layout(dtype) {
        return None;
    }
    dtype
        .row_bytes(n_cols)?
        .checked_mul(n_rows.div_ceil(GROUP_ROWS) * GROUP_ROWS)
}

/// `rows` (`n_rows` rows of `n_cols` values of `dtype`, as stored) packed, or `None`
/// when `dtype` has no packed layout or `rows` does not hold that shape.
pub fn pack(dtype: DType, rows: &[u8], n_rows: usize, n_cols: usize) -> Option<Vec<u8>> {
    let row_bytes = dtype.row_bytes(n_cols)?;
    if row_bytes.checked_mul(n_rows)? != rows.len() {
        return None;
    }
    let mut out = vec![0u8; packed_len(dtype, n_rows, n_cols)?];
    let block_bytes = dtype.type_size();
    let group_block_bytes = GROUP_ROWS * block_bytes;
    let n_blocks = n_cols / BLOCK;
    for (o, row) in rows.chunks_exact(row_bytes).enumerate() {
        let (group, j) = (o / GROUP_ROWS, o % GROUP_ROWS);
        let group_start = group * n_blocks * group_block_bytes;
        for (b, block) in row.chunks_exact(block_bytes).enumerate() {
            let dst = &mut out[group_start + b * group_block_bytes..][..group_block_bytes];
            place_block(dtype, block, j, dst);
        }
    }
    Some(out)
}

/// The stored bytes of row `row` of a packed `[_, n_cols]` matrix, written to `out`
/// (one row of `dtype`); `None` when the row is not in `packed` or `out` is not one row.
pub fn unpack_row(
    dtype: DType,
    packed: &[u8],
    n_cols: usize,
    row: usize,
    out: &mut [u8],
) -> Option<()> {
    let row_bytes = dtype.row_bytes(n_cols)?;
    if !has_packed_layout(dtype) || out.len() != row_bytes {
        return None;
    }
    let block_bytes = dtype.type_size();
    let group_block_bytes = GROUP_ROWS * block_bytes;
    let n_blocks = n_cols / BLOCK;
    let (group, j) = (row / GROUP_ROWS, row % GROUP_ROWS);
    let group_start = group * n_blocks * group_block_bytes;
    for (b, block) in out.chunks_exact_mut(block_bytes).enumerate() {
        let src = packed.get(group_start + b * group_block_bytes..)?;
        take_block(dtype, src.get(..group_block_bytes)?, j, block);
    }
    Some(())
}

/// Each activation row's per-block scale `d` and, for Q8_1, its sum `s`, widened from
/// f16: `[n_x_rows, n_blocks, 2]` (`s` = 0 for Q8_0), the tables the packed kernels read.
pub fn activation_scales(partner: DType, x: &[u8], n_cols: usize, n_x_rows: usize) -> Vec<f32> {
    let n_blocks = n_cols / BLOCK;
    let block_bytes = partner.type_size();
    let has_sum = partner == DType::Q8_1;
    let mut out = Vec::with_capacity(n_x_rows * n_blocks * 2);
    let f16_at = |block: &[u8], at: usize| {
        half::f16::from_bits(u16::from_le_bytes([block[at], block[at + 1]])).to_f32()
    };
    for block in x.chunks_exact(block_bytes).take(n_x_rows * n_blocks) {
        out.push(f16_at(block, 0));
        out.push(if has_sum { f16_at(block, 2) } else { 0.0 });
    }
    out
}

/// Code `k` (0..32) of a Q4_1 block's 16 packed bytes: low nibbles hold 0..16.
fn q4_1_code(qs: &[u8], k: usize) -> u8 {
    if k < 16 {
        qs[k] & 0x0F
    } else {
        qs[k - 16] >> 4
    }
}

/// Writes one stored block of row `j` of a group into the group block `dst`.
fn place_block(dtype: DType, block: &[u8], j: usize, dst: &mut [u8]) {
    match dtype {
        DType::Q8_0 => {
            dst[2 * j..2 * j + 2].copy_from_slice(&block[..2]);
            for (k, &code) in block[2..].iter().enumerate() {
                dst[16 + (k / 4) * 32 + j * 4 + k % 4] = code;
            }
        }
        DType::Q4_1 => {
            dst[2 * j..2 * j + 2].copy_from_slice(&block[..2]);
            dst[16 + 2 * j..16 + 2 * j + 2].copy_from_slice(&block[2..4]);
            let qs = &block[4..];
            for p in 0..4 {
                for i in 0..4 {
                    let low = q4_1_code(qs, 8 * p + i);
                    let high = q4_1_code(qs, 8 * p + 4 + i);
                    dst[32 + p * 32 + j * 4 + i] = low | (high << 4);
                }
            }
        }
        _ => {}
    }
}

/// Reads row `j`'s stored block back out of the group block `src`.
fn take_block(dtype: DType, src: &[u8], j: usize, block: &mut [u8]) {
    match dtype {
        DType::Q8_0 => {
            block[..2].copy_from_slice(&src[2 * j..2 * j + 2]);
            for k in 0..BLOCK {
                block[2 + k] = src[16 + (k / 4) * 32 + j * 4 + k % 4];
            }
        }
        DType::Q4_1 => {
            block[..2].copy_from_slice(&src[2 * j..2 * j + 2]);
            block[2..4].copy_from_slice(&src[16 + 2 * j..16 + 2 * j + 2]);
            let mut codes = [0u8; BLOCK];
            for p in 0..4 {
                for i in 0..4 {
                    let byte = src[32 + p * 32 + j * 4 + i];
                    codes[8 * p + i] = byte & 0x0F;
                    codes[8 * p + 4 + i] = byte >> 4;
                }
            }
            for k in 0..16 {
                block[4 + k] = codes[k] | (codes[k + 16] << 4);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::gemm::tests::values;

    fn random_rows(dtype: DType, n_rows: usize, n_cols: usize, seed: &mut u64) -> Vec<u8> {
        let row_bytes = dtype.row_bytes(n_cols).unwrap();
        let mut rows = vec![0u8; n_rows * row_bytes];
        for row in rows.chunks_exact_mut(row_bytes) {
            (dtype.scalar_traits().from_f32.unwrap())(&values(seed, n_cols), row);
        }
        rows
    }

    #[test]
    fn packing_keeps_every_row_and_the_size() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for dtype in [DType::Q8_0, DType::Q4_1] {
            for (n_rows, n_cols) in [(1, 32), (8, 64), (13, 96), (24, 256), (3, 576)] {
                let rows = random_rows(dtype, n_rows, n_cols, &mut seed);
                let packed = pack(dtype, &rows, n_rows, n_cols).unwrap();
                let row_bytes = dtype.row_bytes(n_cols).unwrap();
                assert_eq!(packed.len(), n_rows.div_ceil(8) * 8 * row_bytes);
                let mut back = vec![0u8; row_bytes];
                for (o, row) in rows.chunks_exact(row_bytes).enumerate() {
                    unpack_row(dtype, &packed, n_cols, o, &mut back).unwrap();
                    assert_eq!(back, row, "{dtype} row {o} of {n_rows}x{n_cols}");
                }
            }
        }
    }

    #[test]
    fn the_layout_is_as_documented() {
        // Row 2 of a Q4_1 group: scale 0x1122, offset 0x3344, code k = k % 16.
        let mut block = vec![0x22, 0x11, 0x44, 0x33];
        block.extend((0..16).map(|k| (k as u8) | ((k as u8) << 4)));
        let mut rows = vec![0u8; 3 * 20];
        rows[40..].copy_from_slice(&block);
        let packed = pack(DType::Q4_1, &rows, 3, 32).unwrap();
        assert_eq!(&packed[4..6], &[0x22, 0x11]);
        assert_eq!(&packed[20..22], &[0x44, 0x33]);
        // Pair 1, row 2: codes 8..12 low, 12..16 high.
        assert_eq!(&packed[32 + 32 + 8..][..4], &[0xC8, 0xD9, 0xEA, 0xFB]);
        // Q8_0 row 1: code k = k; step 3 holds codes 12..16.
        let mut rows = vec![0u8; 2 * 34];
        for k in 0..32 {
            rows[34 + 2 + k] = k as u8;
        }
        let packed = pack(DType::Q8_0, &rows, 2, 32).unwrap();
        assert_eq!(&packed[16 + 3 * 32 + 4..][..4], &[12, 13, 14, 15]);
    }

    #[test]
    fn wrong_shapes_and_types_are_refused() {
        assert!(pack(DType::Q8_0, &[0u8; 33], 1, 32).is_none());
        assert!(pack(DType::Q8_0, &[0u8; 34], 1, 33).is_none());
        assert!(pack(DType::F16, &[0u8; 64], 1, 32).is_none());
        let packed = pack(DType::Q8_0, &[0u8; 34], 1, 32).unwrap();
        assert!(unpack_row(DType::Q8_0, &packed, 32, 8, &mut [0u8; 34]).is_none());
        assert!(unpack_row(DType::Q8_0, &packed, 32, 0, &mut [0u8; 33]).is_none());
    }
}
