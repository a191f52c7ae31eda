//! Weight matrices repacked once, at load, into groups of 8 interleaved rows.
//!
//! A matrix product reads every weight row once per call. Rows stored one after another
//! make a SIMD kernel either sum each row horizontally (one dot product at a time) or
//! rearrange a few rows per call into lanes; both cost about as much as reading the
//! weights when a single activation row meets them (a decode step). Repacked, the
//! codes of 8 rows lie side by side, so that a kernel leaves row `j`'s partial sum in
//! vector lane `j` with no rearranging, from one activation row up.
//!
//! Per group of 8 rows and per block index `b` there is one *group block*, as many bytes
//! as the 8 rows' blocks `b`, so a packed matrix is exactly as large as its rows, rounded
//! up to whole groups. Each type's group block is laid out for its kernels (`layouts`):
//! the 8 rows' scales first, then their codes, 4 codes of each row per 32 bytes.
//!
//! Groups follow each other, each its `n_blocks` group blocks in block order. Rows past
//! the last one (the tail of the last group) are zeros. Packing is a bijection on the
//! bits: [`unpack_row`] gives each row's stored bytes back.

mod layouts;
mod placing;

use crate::dtype::DType;
use crate::simd::{packed_kernel, Isa};

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 8;

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

/// The types with a packed layout.
pub const PACKED_TYPES: [DType; 9] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Mxfp4,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Whether `dtype` has a packed layout at all.
pub fn has_packed_layout(dtype: DType) -> bool {
    PACKED_TYPES.contains(&dtype)
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
    let mut out = vec![0u8; packed_len(dtype, n_rows, n_cols)?];
    pack_into(dtype, rows, n_rows, n_cols, &mut out)?;
    Some(out)
}

/// As [`pack`], into `out` (zeroed, [`packed_len`] bytes): for callers that pack several
/// parts of one matrix at once.
pub fn pack_into(
    dtype: DType,
    rows: &[u8],
    n_rows: usize,
    n_cols: usize,
    out: &mut [u8],
) -> Option<()> {
    let row_bytes = dtype.row_bytes(n_cols)?;
    if row_bytes.checked_mul(n_rows)? != rows.len()
        || packed_len(dtype, n_rows, n_cols)? != out.len()
    {
        return None;
    }
    let group_bytes = GROUP_ROWS * row_bytes;
    let n_threads = if out.len() >= PARALLEL_PACK_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    // Whole groups per thread: each thread writes its own part of `out`.
    let groups_per_thread = out.len().div_ceil(group_bytes).div_ceil(n_threads).max(1);
    let parts = out
        .chunks_mut(groups_per_thread * group_bytes)
        .zip(rows.chunks(groups_per_thread * group_bytes));
    if n_threads == 1 {
        for (out, rows) in parts {
            pack_groups(dtype, rows, row_bytes, out);
        }
    } else {
        std::thread::scope(|scope| {
            for (out, rows) in parts {
                scope.spawn(move || pack_groups(dtype, rows, row_bytes, out));
            }
        });
    }
    Some(())
}

/// Packed matrices from this size up are packed by all cores: a model's large matrices
/// are gigabytes in all, packed at load.
const PARALLEL_PACK_BYTES: usize = 4 << 20;

/// Packs whole groups: `rows` (up to 8 rows per group of `out`, the last group possibly
/// short) into `out`.
fn pack_groups(dtype: DType, rows: &[u8], row_bytes: usize, out: &mut [u8]) {
    let block_bytes = dtype.type_size();
    let group_block_bytes = GROUP_ROWS * block_bytes;
    for (group, rows) in out
        .chunks_exact_mut(GROUP_ROWS * row_bytes)
        .zip(rows.chunks(GROUP_ROWS * row_bytes))
    {
        for (j, row) in rows.chunks_exact(row_bytes).enumerate() {
            let blocks = row.chunks_exact(block_bytes);
            for (block, dst) in blocks.zip(group.chunks_exact_mut(group_block_bytes)) {
                placing::place_block(dtype, block, j, dst);
            }
        }
    }
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
    let n_blocks = n_cols / dtype.block_size();
    let (group, j) = (row / GROUP_ROWS, row % GROUP_ROWS);
    let group_start = group * n_blocks * group_block_bytes;
    for (b, block) in out.chunks_exact_mut(block_bytes).enumerate() {
        let src = packed.get(group_start + b * group_block_bytes..)?;
        let fields = layouts::take(dtype, src.get(..group_block_bytes)?, j);
        layouts::encode(dtype, &fields, block);
    }
    Some(())
}

/// Each activation row's per-block scale and sum, the tables the packed kernels read:
/// `[n_x_rows, n_blocks, 2]` f32 for activations of type `partner`:
/// - Q8_0: the scale `d` and the sum of the block's codes (exact), which the kernels of
///   offset codes (Q4_0, Q5_0, MXFP4) subtract once per block;
/// - Q8_1: `d` and the stored `s`;
/// - Q8_K: `d` and 0 (the kernels read the stored 16-code sums of the block).
pub fn activation_scales(partner: DType, x: &[u8], n_cols: usize, n_x_rows: usize) -> Vec<f32> {
    let n_blocks = n_cols / partner.block_size();
    let block_bytes = partner.type_size();
    let mut out = Vec::with_capacity(n_x_rows * n_blocks * 2);
    let f16_at = |block: &[u8], at: usize| {
        half::f16::from_bits(u16::from_le_bytes([block[at], block[at + 1]])).to_f32()
    };
    for block in x.chunks_exact(block_bytes).take(n_x_rows * n_blocks) {
        match partner {
            DType::Q8_1 => {
                out.push(f16_at(block, 0));
                out.push(f16_at(block, 2));
            }
            DType::Q8_K => {
                out.push(f32::from_le_bytes([block[0], block[1], block[2], block[3]]));
                out.push(0.0);
            }
            _ => {
                out.push(f16_at(block, 0));
                let sum: i32 = block[2..].iter().map(|&q| q as i8 as i32).sum();
                out.push(sum as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes: every bit pattern is a block of any packed type.
    fn random_rows(dtype: DType, n_rows: usize, n_cols: usize, seed: &mut u64) -> Vec<u8> {
        let n = n_rows * dtype.row_bytes(n_cols).unwrap();
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn packing_keeps_every_row_and_the_size() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for dtype in PACKED_TYPES {
            let block = dtype.block_size();
            for (n_rows, n_blocks) in [(1, 1), (8, 2), (13, 3), (24, 8), (3, 18)] {
                let n_cols = n_blocks * block;
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

    /// Packing is a bijection: the packed bytes of distinct matrices differ, and every
    /// byte of a full group's blocks is used (no byte of the packed copy is constant).
    #[test]
    fn every_packed_byte_carries_bits() {
        let mut seed = 0x0123_4567_89AB_CDEF;
        for dtype in PACKED_TYPES {
            let n_cols = 2 * dtype.block_size();
            let (mut ored, mut anded) = (vec![0u8; 0], vec![0u8; 0]);
            for _ in 0..64 {
                let rows = random_rows(dtype, 8, n_cols, &mut seed);
                let packed = pack(dtype, &rows, 8, n_cols).unwrap();
                if ored.is_empty() {
                    (ored, anded) = (packed.clone(), packed.clone());
                }
                for ((o, a), p) in ored.iter_mut().zip(anded.iter_mut()).zip(&packed) {
                    *o |= p;
                    *a &= p;
                }
            }
            assert!(ored.iter().all(|&b| b == 0xFF), "{dtype}: a bit never set");
            assert!(anded.iter().all(|&b| b == 0), "{dtype}: a bit never clear");
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
