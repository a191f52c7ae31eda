//! Loads, reductions and the safe-wrapper macro shared by the AVX2 + FMA + F16C kernels
//! of the sibling modules. Everything here is inlined into callers that carry the same
//! target features; a short slice reads as zeros rather than panicking.

use std::arch::x86_64::*;

/// The sum of the 8 lanes, by a fixed tree.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let quad = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
    let single = _mm_add_ss(quad, _mm_shuffle_ps::<0b01>(quad, quad));
    _mm_cvtss_f32(single)
}

/// The f16 stored little-endian at `bytes[offset..offset + 2]`, widened (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_at(bytes: &[u8], offset: usize) -> f32 {
    let bits = match bytes.get(offset..offset + 2) {
        Some(&[b0, b1]) => u16::from_le_bytes([b0, b1]),
        _ => 0,
    };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The f16 stored little-endian at `bytes[0..2]`, widened.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_first(bytes: &[u8]) -> f32 {
    f16_at(bytes, 0)
}

/// The 8 16-bit floats at `at` (bf16 where `BF16`, else f16), widened (exact): f16 by
/// `vcvtph2ps`, bf16 by a zero-extension and a 16-bit shift (a bf16 is the high half of its
/// f32).
///
/// # Safety
/// `at` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn widen8<const BF16: bool>(at: *const u8) -> __m256 {
    // SAFETY: 16 readable bytes (caller); loadu has no alignment requirement.
    let bits = unsafe { _mm_loadu_si128(at.cast()) };
    if BF16 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(bits)))
    } else {
        _mm256_cvtph_ps(bits)
    }
}

/// One 16-bit float (bf16 where `BF16`, else f16), widened.
pub(super) fn widen1<const BF16: bool>(bits: u16) -> f32 {
    if BF16 {
        half::bf16::from_bits(bits).to_f32()
    } else {
        half::f16::from_bits(bits).to_f32()
    }
}

/// 32 bytes from `bytes[0..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32(bytes: &[u8]) -> __m256i {
    let bytes: &[u8; 32] = bytes
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .unwrap_or(&[0; 32]);
    // SAFETY: `bytes` is exactly 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// 16 bytes from `bytes[0..16]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load16(bytes: &[u8]) -> __m128i {
    let bytes: &[u8; 16] = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .unwrap_or(&[0; 16]);
    // SAFETY: `bytes` is exactly 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

/// 32 bytes from `bytes[offset..offset + 32]` of a fixed-size block. The callers'
/// offsets are constants within the block, so the check folds away.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32_at<const N: usize>(bytes: &[u8; N], offset: usize) -> __m256i {
    load32(bytes.get(offset..).unwrap_or(&[]))
}

/// 16 bytes from `bytes[offset..offset + 16]` of a fixed-size block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load16_at<const N: usize>(bytes: &[u8; N], offset: usize) -> __m128i {
    load16(bytes.get(offset..).unwrap_or(&[]))
}

/// Block `i` (of `N` bytes) of `bytes`, if whole.
#[inline]
pub(super) fn block<const N: usize>(bytes: &[u8], i: usize) -> Option<&[u8; N]> {
    bytes.get(i * N..)?.first_chunk::<N>()
}

/// The 4 block sums of 4 vectors of 8 i32 partial sums, in block order, as i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn block_sums4_vec(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The 4 block sums of 4 vectors of 8 i32 partial sums, in block order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn block_sums4(v: [__m256i; 4]) -> [i32; 4] {
    let sums = block_sums4_vec(v);
    [
        _mm_cvtsi128_si32(sums),
        _mm_extract_epi32::<1>(sums),
        _mm_extract_epi32::<2>(sums),
        _mm_extract_epi32::<3>(sums),
    ]
}

/// The sum of 8 i32 lanes (one block's integer dot product).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn block_sum(v: __m256i) -> i32 {
    let zero = _mm256_setzero_si256();
    block_sums4([v, zero, zero, zero])[0]
}

/// How far ahead of the bytes being read a weight stream is prefetched: a decode step
/// streams the weights from memory once, and one core's hardware prefetcher alone keeps
/// too few cache lines in flight to reach the memory's bandwidth.
const PREFETCH_BYTES: usize = 2048;

/// As [`PREFETCH_BYTES`], for the AVX-512 tiles' prefetches into L2. A Q4_K tile advances
/// each of its two streams by 1152 bytes a block, so 2 KB ahead was less than two blocks;
/// 4 KB ahead made Llama-3.1-8B Q4_K_M decode on Zen 4 about 8 % faster on one thread and
/// 6 % on two, where 8 KB was no better than 2 (BENCHMARKS.md).
const L2_PREFETCH_BYTES: usize = 4096;

/// Prefetches the cache lines `PREFETCH_BYTES` past the `BYTES` bytes at `at` into L1
/// (T0), for the AVX2 tiles, which read one weight stream at a time. A prefetch never
/// faults, so addresses past the end of the data are harmless.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_ahead<const BYTES: usize>(at: *const u8) {
    prefetch_lines::<BYTES, _MM_HINT_T0, PREFETCH_BYTES>(at);
}

/// As [`prefetch_ahead`], [`L2_PREFETCH_BYTES`] ahead into L2 (T1), for the AVX-512
/// tiles, which read two weight streams at once: on Zen 4, lines fetched 2 KB ahead on
/// both into L1 held its miss buffers and evicted what the tile was using, and
/// Llama-3.1-8B Q4_K_M decode went from 2.1 to 3.3 tok/s on one thread with T1
/// (BENCHMARKS.md), where the AVX2 tiles are faster with T0 than with T1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_ahead_to_l2<const BYTES: usize>(at: *const u8) {
    prefetch_lines::<BYTES, _MM_HINT_T1, L2_PREFETCH_BYTES>(at);
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_lines<const BYTES: usize, const HINT: i32, const AHEAD: usize>(at: *const u8) {
    let mut line = 0;
    while line < BYTES {
        let ahead = at.wrapping_add(AHEAD + line).cast::<i8>();
        // A prefetch is a hint: it reads nothing and cannot fault.
        _mm_prefetch::<HINT>(ahead);
        line += 64;
    }
}

/// A safe `pub(crate)` wrapper around a `#[target_feature]` kernel, for the dtype table.
macro_rules! entry {
    ($(#[$doc:meta])* $name:ident => $inner:ident ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the dtype table holds this function only when `Isa::Avx2` was
            // detected at run time (AVX2, FMA and F16C present).
            unsafe { $inner($($arg),*) }
        }
    };
    // A kernel with one const parameter.
    ($(#[$doc:meta])* $name:ident => $inner:ident::<$param:literal>($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the dtype table holds this function only when `Isa::Avx2` was
            // detected at run time (AVX2, FMA and F16C present).
            unsafe { $inner::<$param>($($arg),*) }
        }
    };
}
pub(super) use entry;
