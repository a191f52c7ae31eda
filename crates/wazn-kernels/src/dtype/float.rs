//! Plain floating-point rows: F32, F16 (IEEE half) and BF16, one element per block.
//!
//! Conversions to f32 are exact; an F16 signalling NaN comes back quiet (as with x86 F16C
//! conversions). Conversions from f32 round to nearest, ties to even (as numpy and ggml
//! do); NaNs stay NaN and are made quiet. Dot products take exact f32
//! activations and accumulate in f32, in element order.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// The f16 stored little-endian at `bytes[offset..offset + 2]`, widened to f32.
///
/// Callers pass whole blocks, so the two bytes are always there; a short slice reads as 0.0
/// rather than panicking.
pub(super) fn f16_at(bytes: &[u8], offset: usize) -> f32 {
    match bytes.get(offset..offset + 2) {
        Some(&[lo, hi]) => f16::from_le_bytes([lo, hi]).to_f32(),
        _ => 0.0,
    }
}

/// `value` rounded to f16, as little-endian bytes.
pub(super) fn f16_le_bytes(value: f32) -> [u8; 2] {
    f16::from_f32(value).to_le_bytes()
}

fn f32_from_le(bytes: &[u8]) -> f32 {
    match *bytes {
        [b0, b1, b2, b3] => f32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0.0,
    }
}

fn f16_from_le(bytes: &[u8]) -> f32 {
    f16_at(bytes, 0)
}

/// BF16 is the top half of an f32: widening is a shift that keeps every bit, NaN payloads
/// included (as ggml and numpy do; `half` would set the quiet bit of signalling NaNs).
fn bf16_from_le(bytes: &[u8]) -> f32 {
    match *bytes {
        [lo, hi] => f32::from_bits((u16::from_le_bytes([lo, hi]) as u32) << 16),
        _ => 0.0,
    }
}

pub(super) fn to_f32_f32(src: &[u8], dst: &mut [f32]) {
    for (bytes, out) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *out = f32_from_le(bytes);
    }
}

pub(super) fn to_f32_f16(src: &[u8], dst: &mut [f32]) {
    // Through a small buffer of halves: `half` converts a slice with F16C where the CPU has
    // it (several times faster than one value at a time, and the same values).
    const RUN: usize = 256;
    let mut halves = [f16::ZERO; RUN];
    for (bytes, out) in src.chunks(2 * RUN).zip(dst.chunks_mut(RUN)) {
        let n = (bytes.len() / 2).min(out.len());
        for (half, b) in halves.iter_mut().zip(bytes.chunks_exact(2)) {
            *half = f16::from_le_bytes([b[0], b[1]]);
        }
        halves[..n].convert_to_f32_slice(&mut out[..n]);
    }
}

pub(super) fn to_f32_bf16(src: &[u8], dst: &mut [f32]) {
    for (bytes, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *out = bf16_from_le(bytes);
    }
}

pub(super) fn from_f32_f32(src: &[f32], dst: &mut [u8]) {
    for (value, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
        out.copy_from_slice(&value.to_le_bytes());
    }
}

pub(super) fn from_f32_f16(src: &[f32], dst: &mut [u8]) {
    for (value, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&f16_le_bytes(*value));
    }
}

pub(super) fn from_f32_bf16(src: &[f32], dst: &mut [u8]) {
    for (value, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&bf16::from_f32(*value).to_le_bytes());
    }
}

/// sum_i w[i]*x[i] over `n` elements, `w` stored `w_bytes` bytes per element and decoded by
/// `decode`, `x` f32.
fn dot_with_f32(n: usize, w: &[u8], w_bytes: usize, decode: fn(&[u8]) -> f32, x: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (w_elem, x_elem) in w.chunks_exact(w_bytes).zip(x.chunks_exact(4)).take(n) {
        sum += decode(w_elem) * f32_from_le(x_elem);
    }
    sum
}

pub(super) fn vec_dot_f32_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_with_f32(n, w, 4, f32_from_le, x)
}

pub(super) fn vec_dot_f16_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_with_f32(n, w, 2, f16_from_le, x)
}

pub(super) fn vec_dot_bf16_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_with_f32(n, w, 2, bf16_from_le, x)
}
