//! Causal self-attention of query rows over the keys and values cached for their
//! sequence, with grouped-query heads, optional sliding windows and per-head sinks.
//! The cache is read where it lies, block by block, so a step never copies a
//! sequence's history.
//!
//! - [`attend_rows`]: the fast path. One pass over the key blocks with an online
//!   softmax (running max, sum and weighted values per query head), all query heads
//!   of a KV head, and a few rows of one sequence, at once so each key and value row
//!   is read once for all of them; spread over the thread pool by (rows, KV head),
//!   and for long single-row decodes also over pieces of the keys (split-KV), whose
//!   partial results are merged.
//! - [`attend_reference`]: the two-pass kernel (scores, softmax, weighted sum), the
//!   oracle the fast path is tested against.
//! - [`attend_latent_rows`]: multi-head latent attention (DeepSeek-V3), every head
//!   over one cached row per position.
//!
//! The cache holds f32 or f16 ([`KvElement`]); scores and sums are always f32.

mod flash;
mod latent;
mod parallel;
mod reference;

pub use flash::attend;
#[doc(hidden)]
pub use flash::BlockKernels;
pub(crate) use flash::{attend_keys_scalar, FlashState, GroupQueries};
pub use latent::{attend_latent_rows, LatentShape};
pub use parallel::{attend_rows, AttendOptions, QueryRow, SplitKv, SPLIT_MIN_PIECE_KEYS};
pub use reference::attend_reference;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::simd::Isa;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Multiplies `q·k` before the softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
}

/// The number type of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvDtype {
    F32,
    /// Half the memory; keys and values are rounded once, when written.
    F16,
}

impl KvDtype {
    /// Bytes of one stored number.
    pub fn size_bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// A number a KV cache stores: `f32` or `half::f16`.
pub trait KvElement: Copy + Default + Send + Sync + 'static + sealed::Sealed {
    const DTYPE: KvDtype;
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
    /// `dst[i] = src[i]` widened to f32 (as many as the shorter holds).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// The block kernels of `isa` for this type (`isa` must be available).
    #[doc(hidden)]
    fn block_kernels(isa: Isa) -> flash::BlockKernels<Self>;
}

impl KvElement for f32 {
    const DTYPE: KvDtype = KvDtype::F32;
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        x
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
    fn block_kernels(isa: Isa) -> flash::BlockKernels<Self> {
        match isa {
            Isa::Scalar => flash::BlockKernels::scalar(),
            Isa::Avx2 | Isa::Avx512 => {
                avx2_kernels_f32().unwrap_or_else(flash::BlockKernels::scalar)
            }
        }
    }
}

impl KvElement for f16 {
    const DTYPE: KvDtype = KvDtype::F16;
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        // half converts whole slices with the CPU's conversion instructions where it
        // has them, far faster than one value at a time.
        let n = src.len().min(dst.len());
        src[..n].convert_to_f32_slice(&mut dst[..n]);
    }
    fn block_kernels(isa: Isa) -> flash::BlockKernels<Self> {
        match isa {
            Isa::Scalar => flash::BlockKernels::scalar(),
            Isa::Avx2 | Isa::Avx512 => {
                avx2_kernels_f16().unwrap_or_else(flash::BlockKernels::scalar)
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernels_f32() -> Option<flash::BlockKernels<f32>> {
    Isa::Avx2
        .is_available()
        .then(crate::simd::x86_avx2_attention::kernels_f32)
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernels_f16() -> Option<flash::BlockKernels<f16>> {
    Isa::Avx2
        .is_available()
        .then(crate::simd::x86_avx2_attention::kernels_f16)
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_kernels_f32() -> Option<flash::BlockKernels<f32>> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_kernels_f16() -> Option<flash::BlockKernels<f16>> {
    None
}

/// The keys and values of one sequence in one layer, in blocks of `block_size`
/// positions: block `b` holds positions `b·block_size ..`, each block's keys and
/// values `[block_size, n_kv_head, head_dim]` (the last block may be shorter; a block
/// no query of the call can see may be empty).
#[derive(Clone, Copy, Debug)]
pub struct KvBlocks<'a, T = f32> {
    pub block_size: usize,
    pub keys: &'a [&'a [T]],
    pub values: &'a [&'a [T]],
}

impl<'a, T> KvBlocks<'a, T> {
    /// Row `pos` (`kv_width` values) of `blocks`.
    #[inline]
    fn row(&self, blocks: &'a [&'a [T]], pos: usize, kv_width: usize) -> &'a [T] {
        let block = blocks[pos / self.block_size];
        &block[(pos % self.block_size) * kv_width..][..kv_width]
    }
}
