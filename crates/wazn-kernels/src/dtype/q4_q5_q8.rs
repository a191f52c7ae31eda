//! The legacy 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the activation type
//! Q8_1.
//!
//! Layouts (bytes, little-endian; f16 = IEEE half):
//! - Q4_0 (18): `f16 d; u8 qs[16]`               x = d*(q - 8),  q in 0..16
//! - Q4_1 (20): `f16 d; f16 m; u8 qs[16]`        x = d*q + m,    q in 0..16
//! - Q5_0 (22): `f16 d; u32 qh; u8 qs[16]`       x = d*(q - 16), q in 0..32
//! - Q5_1 (24): `f16 d; f16 m; u32 qh; u8 qs[16]` x = d*q + m,   q in 0..32
//! - Q8_0 (34): `f16 d; i8 qs[32]`               x = d*q
//! - Q8_1 (36): `f16 d; f16 s; i8 qs[32]`        x = d*q, and s = d*sum(q) for the dot
//!   products of the offset types
//!
//! 4-bit codes: byte j holds element j in its low nibble and element j+16 in its high nibble.
//! The 5th bit of element j is bit j of `qh`.
//!
//! Every block is first decoded to its scale(s) and integer codes; dequantization scales the
//! codes, and the dot products sum code products as integers and scale once per block.

use super::float::{f16_at, f16_le_bytes};

/// Elements per block.
pub(crate) const QK: usize = 32;

pub(crate) const Q4_0_BYTES: usize = 18;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(super) const Q5_0_BYTES: usize = 22;
pub(super) const Q5_1_BYTES: usize = 24;
pub(crate) const Q8_0_BYTES: usize = 34;
pub(crate) const Q8_1_BYTES: usize = 36;

/// Signed integer codes of one block.
type Codes = [i8; QK];

// ---------------------------------------------------------------------------------------
// Decoding

/// The 4-bit codes of 16 packed bytes, in element order.
fn unpack_nibbles(qs: &[u8]) -> Codes {
    let mut q = [0i8; QK];
    for (j, &byte) in qs.iter().take(QK / 2).enumerate() {
        q[j] = (byte & 0x0F) as i8;
        q[j + QK / 2] = (byte >> 4) as i8;
    }
    q
}

/// Adds the 5th bit of every element (bit j of the little-endian u32 at `qh`) to its code.
fn add_fifth_bits(q: &mut Codes, qh: &[u8]) {
    let bits = match *qh {
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    };
    for (j, code) in q.iter_mut().enumerate() {
        *code |= (((bits >> j) & 1) << 4) as i8;
    }
}

/// The 32 signed bytes starting at `offset`.
fn signed_bytes(block: &[u8], offset: usize) -> Codes {
    let mut q = [0i8; QK];
    for (code, &byte) in q.iter_mut().zip(block.iter().skip(offset)) {
        *code = byte as i8;
    }
    q
}

/// Q4_0 block -> (d, q) with x = d*q, q in -8..8.
fn decode_q4_0(block: &[u8]) -> (f32, Codes) {
    let d = f16_at(block, 0);
    let q = unpack_nibbles(&block[2..]).map(|code| code - 8);
    (d, q)
}

/// Q4_1 block -> (d, m, q) with x = d*q + m, q in 0..16.
fn decode_q4_1(block: &[u8]) -> (f32, f32, Codes) {
    (
        f16_at(block, 0),
        f16_at(block, 2),
        unpack_nibbles(&block[4..]),
    )
}

/// Q5_0 block -> (d, q) with x = d*q, q in -16..16.
fn decode_q5_0(block: &[u8]) -> (f32, Codes) {
    let mut q = unpack_nibbles(&block[6..]);
    add_fifth_bits(&mut q, &block[2..6]);
    (f16_at(block, 0), q.map(|code| code - 16))
}

/// Q5_1 block -> (d, m, q) with x = d*q + m, q in 0..32.
fn decode_q5_1(block: &[u8]) -> (f32, f32, Codes) {
    let mut q = unpack_nibbles(&block[8..]);
    add_fifth_bits(&mut q, &block[4..8]);
    (f16_at(block, 0), f16_at(block, 2), q)
}

/// Q8_0 block -> (d, q) with x = d*q.
fn decode_q8_0(block: &[u8]) -> (f32, Codes) {
    (f16_at(block, 0), signed_bytes(block, 2))
}

/// Q8_1 block -> (d, q) with x = d*q (the stored sum is not needed).
fn decode_q8_1(block: &[u8]) -> (f32, Codes) {
    (f16_at(block, 0), signed_bytes(block, 4))
}

/// Q8_1 block -> its stored s = d*sum(q) (f16, computed from the unrounded d).
fn q8_1_sum(block: &[u8]) -> f32 {
    f16_at(block, 2)
}

// ---------------------------------------------------------------------------------------
// Dequantization

/// Dequantizes blocks of `block_bytes` whose elements are x = d*q.
fn to_f32_scaled(
    src: &[u8],
    dst: &mut [f32],
    block_bytes: usize,
    decode: fn(&[u8]) -> (f32, Codes),
) {
    for (block, out) in src.chunks_exact(block_bytes).zip(dst.chunks_exact_mut(QK)) {
        let (d, q) = decode(block);
        for (y, &code) in out.iter_mut().zip(q.iter()) {
            *y = d * code as f32;
        }
    }
}

/// Dequantizes blocks of `block_bytes` whose elements are x = d*q + m.
fn to_f32_offset(
    src: &[u8],
    dst: &mut [f32],
    block_bytes: usize,
    decode: fn(&[u8]) -> (f32, f32, Codes),
) {
    for (block, out) in src.chunks_exact(block_bytes).zip(dst.chunks_exact_mut(QK)) {
        let (d, m, q) = decode(block);
        for (y, &code) in out.iter_mut().zip(q.iter()) {
            *y = d * code as f32 + m;
        }
    }
}

pub(super) fn to_f32_q4_0(src: &[u8], dst: &mut [f32]) {
    to_f32_scaled(src, dst, Q4_0_BYTES, decode_q4_0);
}

pub(super) fn to_f32_q4_1(src: &[u8], dst: &mut [f32]) {
    to_f32_offset(src, dst, Q4_1_BYTES, decode_q4_1);
}

pub(super) fn to_f32_q5_0(src: &[u8], dst: &mut [f32]) {
    to_f32_scaled(src, dst, Q5_0_BYTES, decode_q5_0);
}

pub(super) fn to_f32_q5_1(src: &[u8], dst: &mut [f32]) {
    to_f32_offset(src, dst, Q5_1_BYTES, decode_q5_1);
}

pub(super) fn to_f32_q8_0(src: &[u8], dst: &mut [f32]) {
    to_f32_scaled(src, dst, Q8_0_BYTES, decode_q8_0);
}

pub(super) fn to_f32_q8_1(src: &[u8], dst: &mut [f32]) {
    to_f32_scaled(src, dst, Q8_1_BYTES, decode_q8_1);
}

// ---------------------------------------------------------------------------------------
// Dot products

/// sum_j a[j]*b[j] in integers (at most 32 * 128 * 128 in magnitude: no overflow).
fn int_dot(a: &Codes, b: &Codes) -> i32 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum()
}

/// Dot product of rows whose elements are w = dw*qw and x = dx*qx:
/// sum over blocks of (dw*dx) * sum_j qw[j]*qx[j].
fn dot_scaled(
    n: usize,
    w: &[u8],
    w_block_bytes: usize,
    decode_w: fn(&[u8]) -> (f32, Codes),
    x: &[u8],
    x_block_bytes: usize,
    decode_x: fn(&[u8]) -> (f32, Codes),
) -> f32 {
    let mut sum = 0.0f32;
    let blocks = w
        .chunks_exact(w_block_bytes)
        .zip(x.chunks_exact(x_block_bytes));
    for (w_block, x_block) in blocks.take(n / QK) {
        let (dw, qw) = decode_w(w_block);
        let (dx, qx) = decode_x(x_block);
        sum += (dw * dx) * int_dot(&qw, &qx) as f32;
    }
    sum
}

/// Dot product of an offset-type row (w = dw*qw + m) with a Q8_1 row (x = dx*qx):
/// per block, (dw*dx) * sum_j qw[j]*qx[j] + m*s, where s = dx*sum_j qx[j] is stored in the
/// Q8_1 block.
fn dot_offset_q8_1(
    n: usize,
    w: &[u8],
    w_block_bytes: usize,
    decode_w: fn(&[u8]) -> (f32, f32, Codes),
    x: &[u8],
) -> f32 {
    let mut sum = 0.0f32;
    let blocks = w
        .chunks_exact(w_block_bytes)
        .zip(x.chunks_exact(Q8_1_BYTES));
    for (w_block, x_block) in blocks.take(n / QK) {
        let (dw, m, qw) = decode_w(w_block);
        let (dx, qx) = decode_q8_1(x_block);
        sum += (dw * dx) * int_dot(&qw, &qx) as f32 + m * q8_1_sum(x_block);
    }
    sum
}

pub(super) fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_scaled(n, w, Q4_0_BYTES, decode_q4_0, x, Q8_0_BYTES, decode_q8_0)
}

pub(super) fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_offset_q8_1(n, w, Q4_1_BYTES, decode_q4_1, x)
}

pub(super) fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_scaled(n, w, Q5_0_BYTES, decode_q5_0, x, Q8_0_BYTES, decode_q8_0)
}

pub(super) fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_offset_q8_1(n, w, Q5_1_BYTES, decode_q5_1, x)
}

pub(super) fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_scaled(n, w, Q8_0_BYTES, decode_q8_0, x, Q8_0_BYTES, decode_q8_0)
}

pub(super) fn vec_dot_q8_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_scaled(n, w, Q8_1_BYTES, decode_q8_1, x, Q8_1_BYTES, decode_q8_1)
}

// ---------------------------------------------------------------------------------------
// Quantization (round to nearest, as ggml's reference quantizers)

/// The element of largest magnitude with its sign (the first one if several tie; +0.0 for a
/// block of zeros, and NaNs never count, as in ggml's scan).
///
/// The largest magnitude first (a max that keeps no element, so no chain of compare-and-
/// select from one element to the next), then the first element that has it: the element
/// the one-pass scan keeps, several times faster.
fn signed_absmax(x: &[f32]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return 0.0;
    }
    x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0)
}

/// 1/d, or 0 for an all-zero block (d == 0), so that every code comes out as the zero point.
fn inverse_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Unsigned `bits`-bit codes with zero point 2^(bits-1): d = max / -2^(bits-1), where max is
/// the signed element of largest magnitude (so it gets code 0), and
/// code = min(2^bits - 1, trunc(x/d + 2^(bits-1) + 0.5)). Returns (d unrounded, codes).
fn quantize_zero_point(x: &[f32], bits: u32) -> (f32, [u8; QK]) {
    let zero_point = (1u32 << (bits - 1)) as f32;
    let code_max = (1i32 << bits) - 1;
    let d = signed_absmax(x) / -zero_point;
    let id = inverse_or_zero(d);
    // x*id + (zero_point + 0.5) in exactly this order: one product, one sum (no fused
    // multiply-add), so the codes match the reference bit for bit.
    let rounding_offset = zero_point + 0.5;
    let mut codes = [0u8; QK];
    for (code, &v) in codes.iter_mut().zip(x) {
        *code = ((v * id + rounding_offset) as i32).clamp(0, code_max) as u8;
    }
    (d, codes)
}

/// Unsigned `bits`-bit codes over [min, max]: d = (max - min) / (2^bits - 1),
/// code = min(2^bits - 1, trunc((x - min)/d + 0.5)). Returns (d unrounded, min, codes).
fn quantize_min_max(x: &[f32], bits: u32) -> (f32, f32, [u8; QK]) {
    let code_max = (1i32 << bits) - 1;
    let (min, max) = min_max(x);
    let d = (max - min) / code_max as f32;
    let id = inverse_or_zero(d);
    let mut codes = [0u8; QK];
    for (code, &v) in codes.iter_mut().zip(x) {
        *code = (((v - min) * id + 0.5) as i32).clamp(0, code_max) as u8;
    }
    (d, min, codes)
}

/// The smallest and largest element as ggml's scan finds them (`if (v < min) min = v`): NaNs
/// never count, and of equal values the first wins, which matters only for the sign of a
/// zero.
///
/// Four running pairs instead of one, so no long chain of dependent compares: min and max
/// are exact, so the lanes give the same values, and a zero's sign is then taken from the
/// first zero in order.
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut mins = [f32::MAX; 4];
    let mut maxs = [-f32::MAX; 4];
    let quads = x.chunks_exact(4);
    let rest = quads.remainder();
    for quad in quads {
        for lane in 0..4 {
            // `v < m ? v : m` is one MINPS on x86, and the four lanes are one register.
            mins[lane] = if quad[lane] < mins[lane] {
                quad[lane]
            } else {
                mins[lane]
            };
            maxs[lane] = if quad[lane] > maxs[lane] {
                quad[lane]
            } else {
                maxs[lane]
            };
        }
    }
    for (lane, &v) in rest.iter().enumerate() {
        mins[lane] = if v < mins[lane] { v } else { mins[lane] };
        maxs[lane] = if v > maxs[lane] { v } else { maxs[lane] };
    }
    let first_zero = || x.iter().copied().find(|&v| v == 0.0).unwrap_or(0.0);
    let mut min = mins
        .into_iter()
        .fold(f32::MAX, |m, v| if v < m { v } else { m });
    let mut max = maxs
        .into_iter()
        .fold(-f32::MAX, |m, v| if v > m { v } else { m });
    if min == 0.0 {
        min = first_zero();
    }
    if max == 0.0 {
        max = first_zero();
    }
    (min, max)
}

/// Signed 8-bit codes: d = max|x| / 127, q = round(x/d) (halves away from zero).
/// Returns (d unrounded, codes).
fn quantize_8bit(x: &[f32]) -> (f32, Codes) {
    let amax = x.iter().fold(0.0f32, |acc, v| acc.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse_or_zero(d);
    let mut q = [0i8; QK];
    for (code, &v) in q.iter_mut().zip(x) {
        *code = (v * id).round() as i8;
    }
    (d, q)
}

/// Element j's low 4 bits in the low nibble of byte j % 16 (high nibble for j >= 16).
fn pack_nibbles(codes: &[u8; QK], qs: &mut [u8]) {
    for (j, byte) in qs.iter_mut().take(QK / 2).enumerate() {
        *byte = (codes[j] & 0x0F) | ((codes[j + QK / 2] & 0x0F) << 4);
    }
}

/// Element j's 5th bit as bit j of a little-endian u32.
fn pack_fifth_bits(codes: &[u8; QK], qh: &mut [u8]) {
    let mut bits = 0u32;
    for (j, &code) in codes.iter().enumerate() {
        bits |= (((code >> 4) & 1) as u32) << j;
    }
    qh.copy_from_slice(&bits.to_le_bytes());
}

pub(super) fn from_f32_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q4_0_BYTES)) {
        let (d, codes) = quantize_zero_point(x, 4);
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        pack_nibbles(&codes, &mut block[2..18]);
    }
}

pub(super) fn from_f32_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q4_1_BYTES)) {
        let (d, min, codes) = quantize_min_max(x, 4);
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        block[2..4].copy_from_slice(&f16_le_bytes(min));
        pack_nibbles(&codes, &mut block[4..20]);
    }
}

pub(super) fn from_f32_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_0_BYTES)) {
        let (d, codes) = quantize_zero_point(x, 5);
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        pack_fifth_bits(&codes, &mut block[2..6]);
        pack_nibbles(&codes, &mut block[6..22]);
    }
}

pub(super) fn from_f32_q5_1(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_1_BYTES)) {
        let (d, min, codes) = quantize_min_max(x, 5);
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        block[2..4].copy_from_slice(&f16_le_bytes(min));
        pack_fifth_bits(&codes, &mut block[4..8]);
        pack_nibbles(&codes, &mut block[8..24]);
    }
}

pub(super) fn from_f32_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let (d, q) = quantize_8bit(x);
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        for (byte, code) in block[2..].iter_mut().zip(q) {
            *byte = code as u8;
        }
    }
}

pub(super) fn from_f32_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let (d, q) = quantize_8bit(x);
        let code_sum: i32 = q.iter().map(|&code| code as i32).sum();
        block[0..2].copy_from_slice(&f16_le_bytes(d));
        // s uses the unrounded d, as ggml's reference does.
        block[2..4].copy_from_slice(&f16_le_bytes(code_sum as f32 * d));
        for (byte, code) in block[4..].iter_mut().zip(q) {
            *byte = code as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_absmax_is_the_first_element_of_largest_magnitude() {
        assert_eq!(signed_absmax(&[1.0, -3.0, 3.0, 2.0]), -3.0);
        assert_eq!(signed_absmax(&[0.5, 3.0, -3.0]), 3.0);
        // A block of zeros gives +0.0, so d = -0.0 as in ggml.
        assert_eq!(signed_absmax(&[-0.0, 0.0]).to_bits(), 0.0f32.to_bits());
        assert_eq!(signed_absmax(&[f32::NAN, -1.0]), -1.0);
    }

    #[test]
    fn min_max_is_the_sequential_scans_result() {
        assert_eq!(min_max(&[3.0, -1.0, 2.0, 7.0, -4.0, 0.5]), (-4.0, 7.0));
        assert_eq!(min_max(&[f32::NAN, 1.0, f32::NAN, 2.0, 3.0]), (1.0, 3.0));
        // Zeros of both signs: the first in order sets the sign, as in ggml's scan.
        let (min, _) = min_max(&[1.0, 0.0, 2.0, 3.0, -0.0, 4.0]);
        assert_eq!(min.to_bits(), 0.0f32.to_bits());
        let (min, _) = min_max(&[1.0, -0.0, 2.0, 3.0, 0.0, 4.0]);
        assert_eq!(min.to_bits(), (-0.0f32).to_bits());
        let (_, max) = min_max(&[-1.0, -0.0, -2.0, 0.0]);
        assert_eq!(max.to_bits(), (-0.0f32).to_bits());
        assert_eq!(min_max(&[f32::NAN; 4]), (f32::MAX, -f32::MAX));
    }
}
