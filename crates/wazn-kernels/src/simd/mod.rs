//! SIMD versions of the dtype table's kernels, and the choice among them at run time.
//!
//! The choice is made once per process from the CPU's features (never from compile-time
//! `cfg(target_feature)` alone, so a default build is fast): [`Isa::best`]. Each level
//! overrides only the entries it has kernels for; the rest stay the scalar reference.

use std::sync::OnceLock;

use crate::dtype::TypeTraits;

pub(crate) use packed::kernel as packed_kernel;

pub(crate) mod gemm;
pub(crate) mod packed;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2_attention;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_mxfp4;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_q5;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_util;

/// An instruction-set level the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust: the reference, used on every CPU.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen 1 and later).
    Avx2,
    /// AVX2's level plus AVX512F, BW, VL and VNNI (Ice Lake, Zen 4 and later): the AVX2
    /// dtype-table and attention kernels, and 512-bit VNNI tiles for every packed type.
    Avx512,
}

impl Isa {
    /// Every level, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// Whether this CPU can run the level's kernels.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => avx2_available(),
            Isa::Avx512 => avx2_available() && avx512_available(),
        }
    }

    /// The level the dtype table uses, chosen once per process: the fastest this CPU
    /// runs, or the one named by the environment variable `WAZN_KERNELS` (`scalar`,
    /// `avx2`, `avx512`) if this CPU runs it, to compare levels on one machine.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let requested = std::env::var("WAZN_KERNELS").ok().and_then(|name| {
                Isa::ALL
                    .into_iter()
                    .find(|isa| isa.name() == name && isa.is_available())
            });
            requested.unwrap_or_else(|| {
                Isa::ALL
                    .into_iter()
                    .rev()
                    .find(|isa| isa.is_available())
                    .unwrap_or(Isa::Scalar)
            })
        })
    }

    /// The levels this CPU runs, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// Reads all of `data` as fast as this CPU's best level reads weights (wide loads, the
/// weight kernels' prefetch), returning a sum of its words so that nothing is skipped:
/// the probe of a machine's read bandwidth, where the kernels' way of reading counts.
pub fn read_stream(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Scalar {
        return x86_avx2::read_stream(data);
    }
    data.chunks_exact(8).fold(0u64, |acc, w| {
        acc.wrapping_add(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]))
    })
}

/// Replaces the entries of `table` (the scalar table) that `isa` has kernels for.
/// The caller has checked that `isa` is available.
pub(crate) fn specialize(isa: Isa, table: &mut [TypeTraits]) {
    for traits in table.iter_mut() {
        match isa {
            Isa::Scalar => {}
            // The dtype table's entries are AVX2 kernels at both levels; the AVX-512
            // kernels are packed-layout ones (`packed::kernel`).
            Isa::Avx2 | Isa::Avx512 => specialize_avx2(traits),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn specialize_avx2(traits: &mut TypeTraits) {
    use crate::dtype::DType;
    use x86_avx2 as k;
    match traits.dtype {
        DType::F32 => traits.vec_dot = k::vec_dot_f32_f32,
        DType::F16 => traits.vec_dot = k::vec_dot_f16_f32,
        DType::BF16 => traits.vec_dot = k::vec_dot_bf16_f32,
        DType::Q4_0 => traits.vec_dot = k::vec_dot_q4_0_q8_0,
        DType::Q4_1 => {
            traits.vec_dot = k::vec_dot_q4_1_q8_1;
            traits.vec_dot_x4 = Some(k::vec_dot_q4_1_q8_1_x4);
        }
        DType::Q8_0 => {
            traits.vec_dot = k::vec_dot_q8_0_q8_0;
            traits.vec_dot_x4 = Some(k::vec_dot_q8_0_q8_0_x4);
            traits.from_f32 = Some(k::quantize_q8_0);
        }
        DType::Q8_1 => traits.from_f32 = Some(k::quantize_q8_1),
        DType::Mxfp4 => {
            traits.vec_dot = x86_avx2_mxfp4::vec_dot_mxfp4_q8_0;
            traits.vec_dot_x4 = Some(x86_avx2_mxfp4::vec_dot_mxfp4_q8_0_x4);
        }
        DType::Q2_K => {
            traits.vec_dot = x86_avx2_kquants::vec_dot_q2_k_q8_k;
            traits.vec_dot_x4 = Some(x86_avx2_kquants::vec_dot_q2_k_q8_k_x4);
        }
        DType::Q3_K => {
            traits.vec_dot = x86_avx2_kquants::vec_dot_q3_k_q8_k;
            traits.vec_dot_x4 = Some(x86_avx2_kquants::vec_dot_q3_k_q8_k_x4);
        }
        DType::Q4_K => {
            traits.vec_dot = x86_avx2_kquants::vec_dot_q4_k_q8_k;
            traits.vec_dot_x4 = Some(x86_avx2_kquants::vec_dot_q4_k_q8_k_x4);
        }
        DType::Q5_K => {
            traits.vec_dot = x86_avx2_kquants::vec_dot_q5_k_q8_k;
            traits.vec_dot_x4 = Some(x86_avx2_kquants::vec_dot_q5_k_q8_k_x4);
        }
        DType::Q6_K => {
            traits.vec_dot = x86_avx2_kquants::vec_dot_q6_k_q8_k;
            traits.vec_dot_x4 = Some(x86_avx2_kquants::vec_dot_q6_k_q8_k_x4);
        }
        DType::Q8_K => traits.from_f32 = Some(x86_avx2_kquants::quantize_q8_k),
        DType::Q5_0 => {
            traits.vec_dot = x86_avx2_q5::vec_dot_q5_0_q8_0;
            traits.vec_dot_x4 = Some(x86_avx2_q5::vec_dot_q5_0_q8_0_x4);
        }
        DType::Q5_1 => {
            traits.vec_dot = x86_avx2_q5::vec_dot_q5_1_q8_1;
            traits.vec_dot_x4 = Some(x86_avx2_q5::vec_dot_q5_1_q8_1_x4);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn specialize_avx2(_traits: &mut TypeTraits) {}

#[cfg(test)]
mod tests;
