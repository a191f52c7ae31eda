//! MXFP4 (OCP microscaling FP4), the type of gpt-oss's expert weights.
//!
//! Layout (17 bytes per 32 elements, ggml's `block_mxfp4`): `u8 e; u8 qs[16]`.
//! - `e` is an E8M0 exponent: the block's scale is 2^(e - 127).
//! - `qs[j]` holds element j in its low nibble and element j + 16 in its high nibble, each a
//!   4-bit E2M1 code (bit 3 = sign): 0, .5, 1, 1.5, 2, 3, 4, 6, then the same negated.
//!
//! As in ggml, the codes are read through the doubled table [`KVALUES`] (small integers)
//! with the scale halved: x = KVALUES[code] * 2^(e - 128) = E2M1[code] * 2^(e - 127).
//! The integers let the dot product with Q8_0 activations sum code products exactly, as
//! the Q4_0 kernel does. Code 8 (-0) reads as +0, as in ggml and gguf-py.
//!
//! HF / OpenAI safetensors hold the same numbers in two tensors: `*_blocks`, 16 bytes per
//! block with element 2b in the low nibble of byte b and element 2b + 1 in its high nibble,
//! and `*_scales`, one `e` per block. [`mxfp4_blocks_from_hf`] writes them as ggml blocks.

use super::float::f16_at;
use super::DTypeError;

/// Elements per block.
pub(crate) const QK_MXFP4: usize = 32;
/// Bytes per ggml block: the exponent byte, then 16 bytes of codes.
pub(crate) const MXFP4_BYTES: usize = 17;
/// Bytes of codes per block in the HF `*_blocks` tensor.
pub const MXFP4_HF_BLOCK_BYTES: usize = 16;

/// Q8_0 (the dot partner): `f16 d; i8 qs[32]`.
const Q8_0_BYTES: usize = 34;

/// The E2M1 values doubled, indexed by 4-bit code.
pub(crate) const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// 2^(e - 128): half the block scale, the factor of the doubled codes. e = 0 and 1 give
/// the f32 subnormals 2^-128 and 2^-127; e = 255 (NaN in the OCP spec) gives 2^127, as
/// ggml reads it.
pub(crate) fn e8m0_half_scale(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits((e as u32 - 1) << 23)
    }
}

/// One block -> (2^(e - 128), doubled codes in element order).
fn decode(block: &[u8]) -> (f32, [i8; QK_MXFP4]) {
    let mut q = [0i8; QK_MXFP4];
    let Some((&e, qs)) = block.split_first() else {
        return (0.0, q);
    };
    for (j, &byte) in qs.iter().take(QK_MXFP4 / 2).enumerate() {
        q[j] = KVALUES[(byte & 0x0F) as usize];
        q[j + QK_MXFP4 / 2] = KVALUES[(byte >> 4) as usize];
    }
    (e8m0_half_scale(e), q)
}

pub(super) fn to_f32_mxfp4(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src
        .chunks_exact(MXFP4_BYTES)
        .zip(dst.chunks_exact_mut(QK_MXFP4))
    {
        let (d, q) = decode(block);
        for (y, &code) in out.iter_mut().zip(q.iter()) {
            *y = code as f32 * d;
        }
    }
}

/// MXFP4 · Q8_0: per block (dx·dw)·Σ kw·qx, with kw the doubled codes and dw = 2^(e - 128).
pub(super) fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    let blocks = w.chunks_exact(MXFP4_BYTES).zip(x.chunks_exact(Q8_0_BYTES));
    for (w_block, x_block) in blocks.take(n / QK_MXFP4) {
        let (dw, kw) = decode(w_block);
        let dx = f16_at(x_block, 0);
        let isum: i32 = kw
            .iter()
            .zip(&x_block[2..])
            .map(|(&k, &q)| k as i32 * q as i8 as i32)
            .sum();
        sum += (dx * dw) * isum as f32;
    }
    sum
}

// ---------------------------------------------------------------------------------------
// Quantization (as ggml's quantize_row_mxfp4_ref and gguf-py's MXFP4.quantize_blocks)

/// The exponent byte for a block whose largest magnitude is `amax`:
/// floor(log2(amax)) - 2 + 127, so that amax / 2^(e - 127) lies in [4, 8) and the top
/// code (6) covers it; 0 for an all-zero block.
///
/// The references take floor of the f32-rounded log2f. Just below a power of two that
/// rounding can reach the next integer (e.g. log2(16 - 2^-20) rounds to 4.0), and the
/// references then choose the larger exponent. Here log2 is evaluated in f64 and then
/// rounded to f32: near an integer, where the floor can change, that is the correctly
/// rounded f32 log2 (the f64 error is far below the distance of any f32 input's log2 from
/// the f32 rounding boundary there), so the exponent does not depend on the platform's
/// log2f. gguf-py (numpy) and ggml (glibc) agree with it on the test vectors.
///
/// Where the references are not defined the exponent saturates: 0 when amax < 2^-125 (they
/// cast a negative float to u8 there; gguf-py wraps around to exponents near 255), and 255
/// for an infinite amax.
fn exponent_for(amax: f32) -> u8 {
    if amax > 0.0 {
        let log2 = ((amax as f64).log2() as f32).floor();
        (log2 - 2.0 + 127.0) as u8
    } else {
        0
    }
}

/// The code whose value (KVALUES[code] * d) is nearest to `x`; the first one on ties
/// (so 0 rather than -0, and the smaller magnitude between two neighbours).
fn nearest_code(x: f32, d: f32) -> u8 {
    let mut best = 0u8;
    let mut best_err = (KVALUES[0] as f32 * d - x).abs();
    for (code, &k) in KVALUES.iter().enumerate().skip(1) {
        let err = (k as f32 * d - x).abs();
        if err < best_err {
            best = code as u8;
            best_err = err;
        }
    }
    best
}

/// Largest |x| of a block. NaNs are skipped, as ggml's reference skips them (gguf-py's
/// max would return NaN and exponent 0).
fn abs_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |acc, &v| if acc < v.abs() { v.abs() } else { acc })
}

pub(super) fn from_f32_mxfp4(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src
        .chunks_exact(QK_MXFP4)
        .zip(dst.chunks_exact_mut(MXFP4_BYTES))
    {
        let e = exponent_for(abs_max(x));
        let d = e8m0_half_scale(e);
        block[0] = e;
        for (j, byte) in block[1..].iter_mut().enumerate() {
            *byte = nearest_code(x[j], d) | (nearest_code(x[j + QK_MXFP4 / 2], d) << 4);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The HF / OpenAI layout

/// Writes the MXFP4 blocks of an HF / OpenAI checkpoint as ggml blocks.
///
/// `blocks` holds n blocks of 16 bytes (byte b: element 2b in the low nibble, 2b + 1 in
/// the high nibble), `scales` the n exponent bytes, and `out` receives n blocks of 17 bytes
/// (`e`, then byte j: element j low, element j + 16 high). The values are unchanged: the
/// scale bias is the same in both layouts.
pub fn mxfp4_blocks_from_hf(
    blocks: &[u8],
    scales: &[u8],
    out: &mut [u8],
) -> Result<(), DTypeError> {
    let n_blocks = scales.len();
    let lengths_agree = blocks.len() == n_blocks.saturating_mul(MXFP4_HF_BLOCK_BYTES)
        && out.len() == n_blocks.saturating_mul(MXFP4_BYTES)
        && n_blocks.checked_mul(MXFP4_BYTES).is_some();
    if !lengths_agree {
        return Err(DTypeError::Mxfp4HfLengths {
            code_bytes: blocks.len(),
            scale_bytes: scales.len(),
            out_bytes: out.len(),
        });
    }
    let hf_blocks = blocks.chunks_exact(MXFP4_HF_BLOCK_BYTES);
    for ((hf, &e), block) in hf_blocks.zip(scales).zip(out.chunks_exact_mut(MXFP4_BYTES)) {
        // Element i of the block is nibble i % 2 of HF byte i / 2.
        let code = |i: usize| (hf[i / 2] >> (4 * (i % 2))) & 0x0F;
        block[0] = e;
        for (j, byte) in block[1..].iter_mut().enumerate() {
            *byte = code(j) | (code(j + QK_MXFP4 / 2) << 4);
        }
    }
    Ok(())
}
