//! AVX2 + FMA + F16C tiled kernels for Q8_0 · Q8_0 and Q4_1 · Q8_1.
//!
//! Block types: the weight rows of a call are first rearranged, 8 rows at a time, so
//! that each 32-byte vector holds 4 consecutive codes of each of the 8 rows (row `j` in
//! i32 lane `j`). A product step then broadcasts 4 codes of one activation row to all
//! lanes, and `maddubs` + `madd` leave in lane `j` row `j`'s partial dot product:
//! after the 8 steps of a block, every lane holds its pair's exact integer block sum,
//! with no horizontal reduction. The block's scales are applied to the 8 lanes at once
//! with the scalar reference's products and sums in its order (plain multiplies and
//! adds, never fused), so every lane equals the reference's `vec_dot` bit for bit.
//! The rearranged rows are a per-call copy of a few KiB (the weights in memory stay as
//! stored); each is used for every activation row of the call.
//!
//! The safe entry points are handed out only after AVX2, FMA and F16C were detected at
//! run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, pointers) by the same row and
// column counters, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::dtype::{Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK};

/// Weight rows per group of the block kernels (one i32 lane each).
const GROUP: usize = 8;
/// Activation rows per tile of the block kernels.
const NR_BLOCK: usize = 4;
/// Bytes of one rearranged block of a group: 8 steps × 8 rows × 4 codes.
const GROUP_BLOCK_BYTES: usize = GROUP * QK;

/// `out[r, o] = value` for `out`: `[_, stride]` (nothing past its end).
#[inline]
fn put(out: &mut [f32], stride: usize, r: usize, o: usize, value: f32) {
    if let Some(slot) = out.get_mut(r * stride + o) {
        *slot = value;
    }
}

/// `bits` widened from f16, 8 at a time by the F16C unit (exact either way).
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_f16(bits: &[u16]) -> Vec<f32> {
    let mut out = vec![0.0f32; bits.len()];
    let mut dst = out.chunks_exact_mut(8);
    let mut src = bits.chunks_exact(8);
    for (d, s) in (&mut dst).zip(&mut src) {
        // SAFETY: `s` is 8 readable u16 and `d` 8 writable f32; no alignment needed.
        unsafe {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast()));
            _mm256_storeu_ps(d.as_mut_ptr(), v);
        }
    }
    for (d, &s) in dst.into_remainder().iter_mut().zip(src.remainder()) {
        *d = half::f16::from_bits(s).to_f32();
    }
    out
}

/// Per group of 8 weight rows and block, the f16 at `offset` of each row's block,
/// widened: `[n_groups, n_blocks, GROUP]`, rows past `n_rows` as 0.
#[target_feature(enable = "avx2,fma,f16c")]
fn group_scales(
    w: &[u8],
    n_rows: usize,
    n_blocks: usize,
    block_bytes: usize,
    offset: usize,
) -> Vec<f32> {
    let row_bytes = n_blocks * block_bytes;
    let mut bits = vec![0u16; n_rows.div_ceil(GROUP) * n_blocks * GROUP];
    for (o, row) in w.chunks_exact(row_bytes).take(n_rows).enumerate() {
        let first = (o / GROUP) * n_blocks * GROUP + o % GROUP;
        for b in 0..n_blocks {
            let at = b * block_bytes + offset;
            bits[first + b * GROUP] = u16::from_le_bytes([row[at], row[at + 1]]);
        }
    }
    widen_f16(&bits)
}

/// Which block layout a call multiplies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockPair {
    Q8_0Q8_0,
    Q4_1Q8_1,
}

impl BlockPair {
    fn w_block_bytes(self) -> usize {
        match self {
            BlockPair::Q8_0Q8_0 => Q8_0_BYTES,
            BlockPair::Q4_1Q8_1 => Q4_1_BYTES,
        }
    }

    fn x_block_bytes(self) -> usize {
        match self {
            BlockPair::Q8_0Q8_0 => Q8_0_BYTES,
            BlockPair::Q4_1Q8_1 => Q8_1_BYTES,
        }
    }

    /// The 32 codes of the weight block at `block`, one byte each in element order:
    /// Q8_0's i8 codes as stored, Q4_1's 4-bit codes unpacked (low nibbles are
    /// elements 0..16). Zeros for a slice shorter than a block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn codes(self, block: &[u8]) -> __m256i {
        match self {
            BlockPair::Q8_0Q8_0 => match block.get(2..2 + QK) {
                // SAFETY: `stored` is 32 readable bytes; loadu has no alignment need.
                Some(stored) => unsafe { _mm256_loadu_si256(stored.as_ptr().cast()) },
                None => _mm256_setzero_si256(),
            },
            BlockPair::Q4_1Q8_1 => match block.get(4..4 + QK / 2) {
                Some(packed) => {
                    // SAFETY: `packed` is 16 readable bytes.
                    let packed = unsafe { _mm_loadu_si128(packed.as_ptr().cast()) };
                    let both = _mm256_broadcastsi128_si256(packed);
                    let halves = _mm256_blend_epi32::<0xF0>(both, _mm256_srli_epi16::<4>(both));
                    _mm256_and_si256(halves, _mm256_set1_epi8(0x0F))
                }
                None => _mm256_setzero_si256(),
            },
        }
    }
}

/// 8 rows of 8 i32 lanes transposed: lane `j` of `out[i]` is lane `i` of `rows[j]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(rows: &[__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = [
        _mm256_unpacklo_epi32(rows[0], rows[1]),
        _mm256_unpackhi_epi32(rows[0], rows[1]),
        _mm256_unpacklo_epi32(rows[2], rows[3]),
        _mm256_unpackhi_epi32(rows[2], rows[3]),
        _mm256_unpacklo_epi32(rows[4], rows[5]),
        _mm256_unpackhi_epi32(rows[4], rows[5]),
        _mm256_unpacklo_epi32(rows[6], rows[7]),
        _mm256_unpackhi_epi32(rows[6], rows[7]),
    ];
    // u[k]: lanes k (low half) and k + 4 (high half) of rows 0..4, then of rows 4..8.
    let u: [__m256i; 8] = [
        _mm256_unpacklo_epi64(t[0], t[2]),
        _mm256_unpackhi_epi64(t[0], t[2]),
        _mm256_unpacklo_epi64(t[1], t[3]),
        _mm256_unpackhi_epi64(t[1], t[3]),
        _mm256_unpacklo_epi64(t[4], t[6]),
        _mm256_unpackhi_epi64(t[4], t[6]),
        _mm256_unpacklo_epi64(t[5], t[7]),
        _mm256_unpackhi_epi64(t[5], t[7]),
    ];
    [
        _mm256_permute2x128_si256::<0x20>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x20>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x20>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x20>(u[3], u[7]),
        _mm256_permute2x128_si256::<0x31>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x31>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x31>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x31>(u[3], u[7]),
    ]
}

thread_local! {
    /// Each thread's buffer for the rearranged weight rows of a call (reused, so that a
    /// call neither allocates nor clears it).
    static REARRANGED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The codes of `n_rows` weight rows rearranged by groups of 8 rows into `out`:
/// `[n_groups, n_blocks, 8 steps, 8 rows, 4 codes]`, rows past `n_rows` as 0. Every
/// byte of `out[..n_groups · n_blocks · 256]` is written; `out` grows as needed.
#[target_feature(enable = "avx2,fma,f16c")]
fn rearrange(pair: BlockPair, w: &[u8], n_rows: usize, n_blocks: usize, out: &mut Vec<u8>) {
    let block_bytes = pair.w_block_bytes();
    let row_bytes = n_blocks * block_bytes;
    let n_groups = n_rows.div_ceil(GROUP);
    let len = n_groups * n_blocks * GROUP_BLOCK_BYTES;
    if out.len() < len {
        out.resize(len, 0);
    }
    let mut dst_blocks = out[..len].chunks_exact_mut(GROUP_BLOCK_BYTES);
    for group in 0..n_groups {
        for b in 0..n_blocks {
            let mut rows = [_mm256_setzero_si256(); GROUP];
            for (j, row) in rows.iter_mut().enumerate() {
                let o = group * GROUP + j;
                if o < n_rows {
                    let at = o * row_bytes + b * block_bytes;
                    *row = pair.codes(w.get(at..at + block_bytes).unwrap_or(&[]));
                }
            }
            let Some(dst) = dst_blocks.next() else {
                return;
            };
            for (step, v) in transpose8(&rows).iter().enumerate() {
                // SAFETY: `dst` is 256 writable bytes: 8 steps of 32.
                unsafe { _mm256_storeu_si256(dst[step * 32..].as_mut_ptr().cast(), *v) };
            }
        }
    }
}

/// Pointers to one tile: a group of 8 rearranged weight rows and up to 4 activation
/// rows, with their scale tables.
struct BlockTile {
    /// The group's rearranged codes `[n_blocks, 256]`.
    w: *const u8,
    /// The group's weight scales (and offsets, for Q4_1) `[n_blocks, 8]`.
    w_d: *const f32,
    w_m: *const f32,
    /// The activation rows, as stored (whole blocks).
    x: [*const u8; NR_BLOCK],
    /// Each activation row's scales and sums, `[n_blocks, 2]` as
    /// [`crate::packed::activation_scales`] makes them: `x_d[r]` the scales,
    /// `x_s[r] = x_d[r] + 1` the sums (Q8_1; zeros for Q8_0, never read).
    x_d: [*const f32; NR_BLOCK],
    x_s: [*const f32; NR_BLOCK],
}

/// One group of 8 weight rows · N activation rows: `out[r]` lane `j` is
/// `vec_dot(w[j], x[r])`.
///
/// # Safety
/// `t.w` points to `n_blocks · 256` bytes, `t.w_d` (and `t.w_m` for Q4_1) to
/// `n_blocks · 8` f32, and for r < N `t.x[r]` to `n_blocks` whole blocks of the
/// partner type, `t.x_d[r]` (and `t.x_s[r]` for Q4_1) to `n_blocks` f32 at stride 2.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_blocks<const Q4_1: bool, const N: usize>(
    n_blocks: usize,
    t: &BlockTile,
) -> [__m256; NR_BLOCK] {
    let ones = _mm256_set1_epi16(1);
    let (x_block, x_codes, x_stride) = if Q4_1 {
        (Q8_1_BYTES, 4, 2)
    } else {
        (Q8_0_BYTES, 2, 2)
    };
    let mut acc = [_mm256_setzero_ps(); NR_BLOCK];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): block b of each table and row is in
        // bounds (caller).
        let w_block = unsafe { t.w.add(b * GROUP_BLOCK_BYTES) };
        let mut isum = [_mm256_setzero_si256(); NR_BLOCK];
        if Q4_1 {
            // u8 codes 0..=15 against i8 codes: a maddubs lane is at most 2·15·127, so
            // the 8 steps of a block add up in i16 (≤ 30480) before one widening.
            let mut sum16 = [_mm256_setzero_si256(); NR_BLOCK];
            for step in 0..GROUP {
                let wv = unsafe { _mm256_loadu_si256(w_block.add(step * 32).cast()) };
                for r in 0..N {
                    let four = unsafe { t.x[r].add(b * x_block + x_codes + step * 4) };
                    let xv = _mm256_set1_epi32(unsafe { four.cast::<i32>().read_unaligned() });
                    sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(wv, xv));
                }
            }
            for r in 0..N {
                isum[r] = _mm256_madd_epi16(sum16[r], ones);
            }
        } else {
            // Sign trick: |w| · (x · sign(w)); no activation code is -128. A maddubs
            // lane may reach 2·127·127, so each step widens to i32 at once.
            for step in 0..GROUP {
                let wv = unsafe { _mm256_loadu_si256(w_block.add(step * 32).cast()) };
                let abs_w = _mm256_sign_epi8(wv, wv);
                for r in 0..N {
                    let four = unsafe { t.x[r].add(b * x_block + x_codes + step * 4) };
                    let xv = _mm256_set1_epi32(unsafe { four.cast::<i32>().read_unaligned() });
                    let products = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(xv, wv));
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(products, ones));
                }
            }
        }
        let dw = unsafe { _mm256_loadu_ps(t.w_d.add(b * GROUP)) };
        let m = if Q4_1 {
            unsafe { _mm256_loadu_ps(t.w_m.add(b * GROUP)) }
        } else {
            _mm256_setzero_ps()
        };
        for r in 0..N {
            let dx = _mm256_set1_ps(unsafe { *t.x_d[r].add(b * x_stride) });
            // The reference: sum += (dw·dx)·isum (+ m·s for Q4_1).
            let scaled = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum[r]));
            let term = if Q4_1 {
                let s = _mm256_set1_ps(unsafe { *t.x_s[r].add(b * x_stride) });
                _mm256_add_ps(scaled, _mm256_mul_ps(m, s))
            } else {
                scaled
            };
            acc[r] = _mm256_add_ps(acc[r], term);
        }
    }
    acc
}

/// Runs the tiles of a block-type product: activation row tiles outside, groups of
/// weight rows inside (the call's rearranged weight rows stay in L1 while the
/// activations stream).
// The pair, then a kernel's own arguments.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_gemm(
    pair: BlockPair,
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    x_tables: &[f32],
    out: &mut [f32],
) {
    let (w_block, x_block) = (pair.w_block_bytes(), pair.x_block_bytes());
    let n_blocks = n_cols / QK;
    if n_blocks == 0 {
        for r in 0..n_x_rows {
            for o in 0..n_w_rows {
                put(out, n_w_rows, r, o, 0.0);
            }
        }
        return;
    }
    let (w_row, x_row) = (n_blocks * w_block, n_blocks * x_block);
    let n_w = n_w_rows.min(w.len() / w_row);
    let x_width = 2 * n_blocks;
    let n_x = n_x_rows.min(x.len() / x_row).min(x_tables.len() / x_width);
    // The thread's buffer is taken for the call and put back after it.
    let mut codes = REARRANGED.with(|buffer| buffer.take());
    rearrange(pair, w, n_w, n_blocks, &mut codes);
    let w_d = group_scales(w, n_w, n_blocks, w_block, 0);
    // Q4_1's offsets m follow its scales; Q8_0 has none (the pointer then aliases the
    // scales, never read).
    let w_m = match pair {
        BlockPair::Q4_1Q8_1 => group_scales(w, n_w, n_blocks, w_block, 2),
        BlockPair::Q8_0Q8_0 => Vec::new(),
    };
    let w_m = match pair {
        BlockPair::Q4_1Q8_1 => &w_m[..],
        BlockPair::Q8_0Q8_0 => &w_d[..],
    };

    for r0 in (0..n_x).step_by(NR_BLOCK) {
        let nr = (n_x - r0).min(NR_BLOCK);
        // Rows past the last one point at it again and are never read (N = nr).
        let row = |r: usize| r0 + r.min(nr - 1);
        let x_ptrs = [0, 1, 2, 3].map(|r| x[row(r) * x_row..].as_ptr());
        let x_d_ptrs = [0, 1, 2, 3].map(|r| x_tables[row(r) * x_width..].as_ptr());
        let x_s_ptrs = [0, 1, 2, 3].map(|r| x_tables[row(r) * x_width + 1..].as_ptr());
        for group in 0..n_w.div_ceil(GROUP) {
            let table = group * n_blocks * GROUP;
            let t = BlockTile {
                w: codes[group * n_blocks * GROUP_BLOCK_BYTES..].as_ptr(),
                w_d: w_d[table..].as_ptr(),
                w_m: w_m[table..].as_ptr(),
                x: x_ptrs,
                x_d: x_d_ptrs,
                x_s: x_s_ptrs,
            };
            // SAFETY: the group's codes and scale tables hold n_blocks blocks (built
            // for exactly these rows), and every activation pointer starts a whole row
            // of `x` (n_x rows fit it) or its row of a scale table.
            let acc = unsafe {
                match (pair, nr) {
                    (BlockPair::Q8_0Q8_0, 4) => tile_blocks::<false, 4>(n_blocks, &t),
                    (BlockPair::Q8_0Q8_0, 3) => tile_blocks::<false, 3>(n_blocks, &t),
                    (BlockPair::Q8_0Q8_0, 2) => tile_blocks::<false, 2>(n_blocks, &t),
                    (BlockPair::Q8_0Q8_0, _) => tile_blocks::<false, 1>(n_blocks, &t),
                    (BlockPair::Q4_1Q8_1, 4) => tile_blocks::<true, 4>(n_blocks, &t),
                    (BlockPair::Q4_1Q8_1, 3) => tile_blocks::<true, 3>(n_blocks, &t),
                    (BlockPair::Q4_1Q8_1, 2) => tile_blocks::<true, 2>(n_blocks, &t),
                    (BlockPair::Q4_1Q8_1, _) => tile_blocks::<true, 1>(n_blocks, &t),
                }
            };
            let o0 = group * GROUP;
            let mr = (n_w - o0).min(GROUP);
            for (r, lanes) in acc.iter().enumerate().take(nr) {
                let mut sums = [0.0f32; GROUP];
                // SAFETY: `sums` is 8 writable f32.
                unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), *lanes) };
                for (o, &sum) in sums.iter().enumerate().take(mr) {
                    put(out, n_w_rows, r0 + r, o0 + o, sum);
                }
            }
        }
    }
    REARRANGED.with(|buffer| buffer.replace(codes));
}

pub(crate) fn gemm_q8_0_q8_0(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    x_tables: &[f32],
    out: &mut [f32],
) {
    let pair = BlockPair::Q8_0Q8_0;
    // SAFETY: handed out only when AVX2, FMA and F16C were detected at run time.
    unsafe { block_gemm(pair, n_cols, w, n_w_rows, x, n_x_rows, x_tables, out) }
}

pub(crate) fn gemm_q4_1_q8_1(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    x_tables: &[f32],
    out: &mut [f32],
) {
    let pair = BlockPair::Q4_1Q8_1;
    // SAFETY: handed out only when AVX2, FMA and F16C were detected at run time.
    unsafe { block_gemm(pair, n_cols, w, n_w_rows, x, n_x_rows, x_tables, out) }
}
