//! The dtype table: for every element type wazn reads or computes in, its ggml id, block
//! layout, and the scalar reference kernels a matrix product needs (dequantize, quantize from
//! f32, and the dot product with the type activations are quantized to).
//!
//! Block layouts and ids follow ggml (`ggml-common.h`, `ggml.h`), so GGUF tensors are used
//! in place. All multi-byte fields are little-endian, whatever the target.
//!
//! Every kernel here is the plain scalar reference: it is written for clarity, and faster
//! (SIMD) versions are tested against it.

mod float;
mod k_quants;
mod k_quants_dot;
mod k_quants_fit;
mod k_quants_quantize;
mod mxfp4;
mod q4_q5_q8;

use std::fmt;
use std::sync::OnceLock;

use crate::simd::Isa;

pub use mxfp4::{mxfp4_blocks_from_hf, MXFP4_HF_BLOCK_BYTES};

// Block layouts the SIMD kernels read.
#[cfg(target_arch = "x86_64")]
pub(crate) use mxfp4::{e8m0_half_scale, KVALUES, MXFP4_BYTES};
#[cfg(target_arch = "x86_64")]
pub(crate) use q4_q5_q8::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK};

/// An element type of a tensor row, named and numbered as in ggml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    /// OCP microscaling FP4 (gpt-oss expert weights).
    Mxfp4,
}

impl DType {
    /// Every type, in declaration order (the order of the trait table).
    pub const ALL: [DType; 16] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q8_1,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::Q8_K,
        DType::Mxfp4,
    ];

    /// The type with this `ggml_type` id, or None for ids wazn does not support.
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|dtype| dtype.ggml_id() == id)
    }

    /// The `ggml_type` id (as stored in GGUF tensor infos).
    pub fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q8_1 => 9,
            DType::Q2_K => 10,
            DType::Q3_K => 11,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::Q8_K => 15,
            DType::BF16 => 30,
            DType::Mxfp4 => 39,
        }
    }

    /// The ggml name of the type ("Q4_1", "BF16", ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q8_1 => "Q8_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_K => "Q8_K",
            DType::Mxfp4 => "MXFP4",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 | DType::Q8_1 => {
                q4_q5_q8::QK
            }
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q8_K => {
                k_quants::QK_K
            }
            DType::Mxfp4 => mxfp4::QK_MXFP4,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => q4_q5_q8::Q4_0_BYTES,
            DType::Q4_1 => q4_q5_q8::Q4_1_BYTES,
            DType::Q5_0 => q4_q5_q8::Q5_0_BYTES,
            DType::Q5_1 => q4_q5_q8::Q5_1_BYTES,
            DType::Q8_0 => q4_q5_q8::Q8_0_BYTES,
            DType::Q8_1 => q4_q5_q8::Q8_1_BYTES,
            DType::Q2_K => k_quants::Q2_K_BYTES,
            DType::Q3_K => k_quants::Q3_K_BYTES,
            DType::Q4_K => k_quants::Q4_K_BYTES,
            DType::Q5_K => k_quants::Q5_K_BYTES,
            DType::Q6_K => k_quants::Q6_K_BYTES,
            DType::Q8_K => k_quants::Q8_K_BYTES,
            DType::Mxfp4 => mxfp4::MXFP4_BYTES,
        }
    }

    /// Bytes of a row of `n_elements`; None if `n_elements` is not a whole number of blocks
    /// (or the size overflows usize).
    pub fn row_bytes(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }

    /// This type's row of the trait table, with the fastest kernels this CPU runs
    /// ([`Isa::best`]).
    pub fn traits(self) -> &'static TypeTraits {
        // The tables are in declaration order (checked by the tests), so the discriminant
        // is the index.
        &table_for(Isa::best())[self as usize]
    }

    /// This type's row of the scalar reference table (the oracle for the SIMD kernels).
    pub fn scalar_traits(self) -> &'static TypeTraits {
        &SCALAR_TRAITS[self as usize]
    }

    /// This type's row of the table for instruction-set level `isa`, or None if this CPU
    /// cannot run it.
    pub fn traits_for(self, isa: Isa) -> Option<&'static TypeTraits> {
        isa.is_available().then(|| &table_for(isa)[self as usize])
    }

    /// The type activations are quantized to before `vec_dot` with a row of this type.
    pub fn vec_dot_type(self) -> DType {
        self.traits().vec_dot_type
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dequantizes whole blocks: `src.len() == row_bytes(dst.len())`.
pub type ToF32Fn = fn(src: &[u8], dst: &mut [f32]);
/// Quantizes whole blocks from f32: `dst.len() == row_bytes(src.len())`.
pub type FromF32Fn = fn(src: &[f32], dst: &mut [u8]);
/// `Σ_i w[i]·x[i]` over `n` elements of a weight row `w` and an activation row `x`.
pub type VecDotFn = fn(n: usize, w: &[u8], x: &[u8]) -> f32;
/// `vec_dot` of one weight row with four activation rows at once (each weight block is
/// loaded once for the four): element r is `vec_dot(n, w, xs[r])`.
pub type VecDotX4Fn = fn(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4];

/// One row of the per-dtype table: everything a matmul needs to know about a type.
///
/// The kernels take whole blocks and never panic on mismatched lengths: they stop at the
/// shorter of their operands. The checked entry points ([`dequantize_row`], [`quantize_row`],
/// [`vec_dot_row`]) reject mismatched lengths with an error instead.
#[derive(Clone, Copy)]
pub struct TypeTraits {
    pub dtype: DType,
    /// Dequantize whole blocks: src.len() == row_bytes(dst.len()).
    pub to_f32: ToF32Fn,
    /// Quantize from f32 (whole blocks): dst.len() == row_bytes(src.len()); None for a type
    /// wazn cannot quantize to (every type has a quantizer today). The weight quantizers
    /// write ggml's reference bytes (`quantize_row_*_ref`, without importance matrix).
    pub from_f32: Option<FromF32Fn>,
    /// Dot product of one row of this type (n elements) with one row of `vec_dot_type`
    /// (n elements): `Σ_i w[i]·x[i]` in f32.
    pub vec_dot: VecDotFn,
    /// The type activations are quantized to before `vec_dot`, as in ggml: Q4_0/Q5_0/Q8_0/
    /// MXFP4 -> Q8_0, Q4_1/Q5_1 -> Q8_1, K-quants -> Q8_K. F32, F16 and BF16 weights take F32
    /// activations (exact), and Q8_1 / Q8_K pair with themselves.
    pub vec_dot_type: DType,
    /// `vec_dot` with four activation rows at once, where a SIMD level has one (None in
    /// the scalar table: four `vec_dot` calls do the same).
    pub vec_dot_x4: Option<VecDotX4Fn>,
}

/// The trait table of `isa` (built once): the scalar table with the entries `isa` has
/// kernels for replaced. The caller has checked that `isa` is available.
fn table_for(isa: Isa) -> &'static [TypeTraits; 16] {
    static TABLES: [OnceLock<[TypeTraits; 16]>; Isa::ALL.len()] =
        [const { OnceLock::new() }; Isa::ALL.len()];
    let index = Isa::ALL.iter().position(|&i| i == isa).unwrap_or(0);
    TABLES[index].get_or_init(|| {
        let mut table = SCALAR_TRAITS;
        if isa.is_available() {
            crate::simd::specialize(isa, &mut table);
        }
        table
    })
}

/// The scalar reference table, in the order of [`DType::ALL`].
static SCALAR_TRAITS: [TypeTraits; 16] = [
    TypeTraits {
        dtype: DType::F32,
        to_f32: float::to_f32_f32,
        from_f32: Some(float::from_f32_f32),
        vec_dot: float::vec_dot_f32_f32,
        vec_dot_type: DType::F32,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::F16,
        to_f32: float::to_f32_f16,
        from_f32: Some(float::from_f32_f16),
        vec_dot: float::vec_dot_f16_f32,
        vec_dot_type: DType::F32,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::BF16,
        to_f32: float::to_f32_bf16,
        from_f32: Some(float::from_f32_bf16),
        vec_dot: float::vec_dot_bf16_f32,
        vec_dot_type: DType::F32,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q4_0,
        to_f32: q4_q5_q8::to_f32_q4_0,
        from_f32: Some(q4_q5_q8::from_f32_q4_0),
        vec_dot: q4_q5_q8::vec_dot_q4_0_q8_0,
        vec_dot_type: DType::Q8_0,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q4_1,
        to_f32: q4_q5_q8::to_f32_q4_1,
        from_f32: Some(q4_q5_q8::from_f32_q4_1),
        vec_dot: q4_q5_q8::vec_dot_q4_1_q8_1,
        vec_dot_type: DType::Q8_1,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q5_0,
        to_f32: q4_q5_q8::to_f32_q5_0,
        from_f32: Some(q4_q5_q8::from_f32_q5_0),
        vec_dot: q4_q5_q8::vec_dot_q5_0_q8_0,
        vec_dot_type: DType::Q8_0,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q5_1,
        to_f32: q4_q5_q8::to_f32_q5_1,
        from_f32: Some(q4_q5_q8::from_f32_q5_1),
        vec_dot: q4_q5_q8::vec_dot_q5_1_q8_1,
        vec_dot_type: DType::Q8_1,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q8_0,
        to_f32: q4_q5_q8::to_f32_q8_0,
        from_f32: Some(q4_q5_q8::from_f32_q8_0),
        vec_dot: q4_q5_q8::vec_dot_q8_0_q8_0,
        vec_dot_type: DType::Q8_0,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q8_1,
        to_f32: q4_q5_q8::to_f32_q8_1,
        from_f32: Some(q4_q5_q8::from_f32_q8_1),
        vec_dot: q4_q5_q8::vec_dot_q8_1_q8_1,
        vec_dot_type: DType::Q8_1,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q2_K,
        to_f32: k_quants::to_f32_q2_k,
        from_f32: Some(k_quants_quantize::from_f32_q2_k),
        vec_dot: k_quants_dot::vec_dot_q2_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q3_K,
        to_f32: k_quants::to_f32_q3_k,
        from_f32: Some(k_quants_quantize::from_f32_q3_k),
        vec_dot: k_quants_dot::vec_dot_q3_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q4_K,
        to_f32: k_quants::to_f32_q4_k,
        from_f32: Some(k_quants_quantize::from_f32_q4_k),
        vec_dot: k_quants_dot::vec_dot_q4_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q5_K,
        to_f32: k_quants::to_f32_q5_k,
        from_f32: Some(k_quants_quantize::from_f32_q5_k),
        vec_dot: k_quants_dot::vec_dot_q5_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q6_K,
        to_f32: k_quants::to_f32_q6_k,
        from_f32: Some(k_quants_quantize::from_f32_q6_k),
        vec_dot: k_quants_dot::vec_dot_q6_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Q8_K,
        to_f32: k_quants::to_f32_q8_k,
        from_f32: Some(k_quants::from_f32_q8_k),
        vec_dot: k_quants_dot::vec_dot_q8_k_q8_k,
        vec_dot_type: DType::Q8_K,
        vec_dot_x4: None,
    },
    TypeTraits {
        dtype: DType::Mxfp4,
        to_f32: mxfp4::to_f32_mxfp4,
        from_f32: Some(mxfp4::from_f32_mxfp4),
        vec_dot: mxfp4::vec_dot_mxfp4_q8_0,
        vec_dot_type: DType::Q8_0,
        vec_dot_x4: None,
    },
];

/// Why a row could not be converted or multiplied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DTypeError {
    #[error(
        "{dtype} row of {n_elements} elements is not a whole number of {block_size}-element blocks"
    )]
    NotWholeBlocks {
        dtype: DType,
        n_elements: usize,
        block_size: usize,
    },
    #[error(
        "{dtype} row of {n_elements} elements needs {expected_bytes} bytes, got {actual_bytes}"
    )]
    WrongByteLength {
        dtype: DType,
        n_elements: usize,
        expected_bytes: usize,
        actual_bytes: usize,
    },
    #[error("wazn cannot quantize to {0}")]
    NoQuantizer(DType),
    #[error(
        "MXFP4 blocks in HF layout: {code_bytes} code bytes, {scale_bytes} scales and {out_bytes} output bytes are not the same number of blocks (16, 1 and 17 bytes each)"
    )]
    Mxfp4HfLengths {
        code_bytes: usize,
        scale_bytes: usize,
        out_bytes: usize,
    },
}

/// The byte length of a row of `n_elements` of `dtype`, checked against `actual_bytes`.
fn check_row(dtype: DType, n_elements: usize, actual_bytes: usize) -> Result<(), DTypeError> {
    let expected_bytes = dtype
        .row_bytes(n_elements)
        .ok_or(DTypeError::NotWholeBlocks {
            dtype,
            n_elements,
            block_size: dtype.block_size(),
        })?;
    if expected_bytes != actual_bytes {
        return Err(DTypeError::WrongByteLength {
            dtype,
            n_elements,
            expected_bytes,
            actual_bytes,
        });
    }
    Ok(())
}

/// Dequantize a row of `dst.len()` elements stored as `dtype` in `src`.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), DTypeError> {
    check_row(dtype, dst.len(), src.len())?;
    (dtype.traits().to_f32)(src, dst);
    Ok(())
}

/// Quantize a row of `src.len()` elements to `dtype` into `dst`.
///
/// Each block's bytes depend on that block's elements alone, and nothing is shared between
/// calls: rows (or any whole-block pieces of one) can be quantized on several threads at
/// once, each into its own part of the output.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), DTypeError> {
    let from_f32 = dtype
        .traits()
        .from_f32
        .ok_or(DTypeError::NoQuantizer(dtype))?;
    check_row(dtype, src.len(), dst.len())?;
    from_f32(src, dst);
    Ok(())
}

/// Dot product of a row `w` of `dtype` with a row `x` of `dtype.vec_dot_type()`, both of
/// `n_elements`, with lengths checked.
pub fn vec_dot_row(dtype: DType, n_elements: usize, w: &[u8], x: &[u8]) -> Result<f32, DTypeError> {
    check_row(dtype, n_elements, w.len())?;
    check_row(dtype.vec_dot_type(), n_elements, x.len())?;
    Ok((dtype.traits().vec_dot)(n_elements, w, x))
}
