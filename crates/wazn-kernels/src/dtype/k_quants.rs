//! The K-quant super-block types (256 elements): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and the
//! activation type Q8_K. Layouts, decoding, dequantization and the Q8_K quantizer; the dot
//! products are in `k_quants_dot`, the weight quantizers in `k_quants_quantize`.
//!
//! Layouts (bytes, little-endian; f16 = IEEE half):
//! - Q2_K (84):  `u8 scales[16]; u8 qs[64]; f16 d; f16 dmin`
//!   16 sub-blocks of 16: 4-bit scale (low nibble) and 4-bit min (high nibble); 2-bit codes.
//! - Q3_K (110): `u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d`
//!   16 sub-blocks of 16: 6-bit scales stored minus 32; 2 low bits in qs, the 3rd in hmask,
//!   code = low2 - 4 where the hmask bit is clear.
//! - Q4_K (144): `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`
//!   8 sub-blocks of 32: 6-bit scale and min packed in 12 bytes; 4-bit codes.
//! - Q5_K (176): `f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]` (Q4_K + a 5th bit).
//! - Q6_K (210): `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d` (16 sub-blocks of 16; codes
//!   6-bit minus 32).
//! - Q8_K (292): `f32 d; i8 qs[256]; i16 bsums[16]` (bsums[k] = sum of qs[16k..16k+16]).
//!
//! Every weight type decodes to the same shape, [`SuperBlock`]: element i of sub-block j is
//! d*scale[j]*q[i] - dmin*min[j].

use super::float::f16_at;

/// Elements per super-block.
pub(super) const QK_K: usize = 256;

pub(super) const Q2_K_BYTES: usize = 84;
pub(super) const Q3_K_BYTES: usize = 110;
pub(super) const Q4_K_BYTES: usize = 144;
pub(super) const Q5_K_BYTES: usize = 176;
pub(super) const Q6_K_BYTES: usize = 210;
pub(super) const Q8_K_BYTES: usize = 292;

/// Q8_K stores one code sum per 16 elements.
pub(super) const Q8_K_SUMS: usize = QK_K / 16;

/// A weight super-block decoded to integers, with `N_SUB` sub-blocks of `QK_K / N_SUB`
/// elements: element i (in sub-block j = i / (QK_K / N_SUB)) is d*scales[j]*q[i] - dmin*mins[j].
/// Types without mins have dmin = 0 and mins = 0, so the min term is +0.0 and subtracting it
/// changes nothing, bit for bit.
pub(super) struct SuperBlock<const N_SUB: usize> {
    pub d: f32,
    pub dmin: f32,
    pub scales: [i32; N_SUB],
    pub mins: [i32; N_SUB],
    pub q: [i8; QK_K],
}

/// A Q8_K activation super-block: element i is d*q[i]; sums[k] = sum of q[16k..16k+16].
pub(super) struct Q8KBlock {
    pub d: f32,
    pub q: [i8; QK_K],
    pub sums: [i32; Q8_K_SUMS],
}

// ---------------------------------------------------------------------------------------
// Decoding

/// 2-bit fields as used by Q2_K and Q3_K: 64 bytes hold 256 codes; element
/// 128h + 32s + l (h < 2, s < 4, l < 32) is bits 2s..2s+2 of byte 32h + l.
fn unpack_2bit_codes(qs: &[u8]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (i, code) in q.iter_mut().enumerate() {
        let (h, s, l) = (i / 128, (i % 128) / 32, i % 32);
        *code = ((qs[32 * h + l] >> (2 * s)) & 3) as i8;
    }
    q
}

/// 4-bit fields as used by Q4_K and Q5_K: 128 bytes hold 256 codes; in chunk c (64
/// elements), element 64c + l is the low nibble of byte 32c + l and element 64c + 32 + l its
/// high nibble (l < 32).
fn unpack_4bit_codes(qs: &[u8]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (i, code) in q.iter_mut().enumerate() {
        let (c, high, l) = (i / 64, (i % 64) / 32, i % 32);
        *code = ((qs[32 * c + l] >> (4 * high)) & 0x0F) as i8;
    }
    q
}

/// The 6-bit (scale, min) pairs of the 8 sub-blocks of Q4_K and Q5_K, packed in 12 bytes:
/// bytes 0..4 hold scales 0..4 in their low 6 bits, bytes 4..8 mins 0..4 likewise; scales
/// and mins 4..8 take their low 4 bits from the nibbles of bytes 8..12 and their top 2 bits
/// from the top 2 bits of bytes 0..4 (scales) and 4..8 (mins).
pub(super) fn unpack_scales_mins_k4(packed: &[u8]) -> ([i32; 8], [i32; 8]) {
    let mut scales = [0i32; 8];
    let mut mins = [0i32; 8];
    for j in 0..8 {
        let (scale, min) = if j < 4 {
            (packed[j] & 63, packed[j + 4] & 63)
        } else {
            (
                (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
                (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
            )
        };
        scales[j] = scale as i32;
        mins[j] = min as i32;
    }
    (scales, mins)
}

/// Q2_K: scale = low nibble, min = high nibble of scales[j].
pub(super) fn decode_q2_k(block: &[u8]) -> SuperBlock<16> {
    let packed = &block[0..16];
    SuperBlock {
        d: f16_at(block, 80),
        dmin: f16_at(block, 82),
        scales: std::array::from_fn(|j| (packed[j] & 0x0F) as i32),
        mins: std::array::from_fn(|j| (packed[j] >> 4) as i32),
        q: unpack_2bit_codes(&block[16..80]),
    }
}

/// Scale j of a Q3_K block from its 12 packed bytes: 16 6-bit scales stored plus 32; the
/// low 4 bits of scale j are the low nibble of byte j (j < 8) or the high nibble of byte
/// j - 8; its top 2 bits are bits 2(j/4)..2(j/4)+2 of byte 8 + j%4.
pub(super) fn unpack_q3_k_scale(packed: &[u8], j: usize) -> i32 {
    let low = if j < 8 {
        packed[j] & 0x0F
    } else {
        packed[j - 8] >> 4
    };
    let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

pub(super) fn decode_q3_k(block: &[u8]) -> SuperBlock<16> {
    let hmask = &block[0..32];
    let packed = &block[96..108];
    let scales = std::array::from_fn(|j| unpack_q3_k_scale(packed, j));
    let mut q = unpack_2bit_codes(&block[32..96]);
    // The 3rd bit of element 128h + 32s + l is bit 4h + s of hmask[l]; where it is clear the
    // code is lowered by 4.
    for (i, code) in q.iter_mut().enumerate() {
        let (h, s, l) = (i / 128, (i % 128) / 32, i % 32);
        if (hmask[l] >> (4 * h + s)) & 1 == 0 {
            *code -= 4;
        }
    }
    SuperBlock {
        d: f16_at(block, 108),
        dmin: 0.0,
        scales,
        mins: [0; 16],
        q,
    }
}

pub(super) fn decode_q4_k(block: &[u8]) -> SuperBlock<8> {
    let (scales, mins) = unpack_scales_mins_k4(&block[4..16]);
    SuperBlock {
        d: f16_at(block, 0),
        dmin: f16_at(block, 2),
        scales,
        mins,
        q: unpack_4bit_codes(&block[16..144]),
    }
}

/// Q5_K: Q4_K plus a 5th bit: element i adds 16 if bit i/32 of qh[i % 32] is set.
pub(super) fn decode_q5_k(block: &[u8]) -> SuperBlock<8> {
    let (scales, mins) = unpack_scales_mins_k4(&block[4..16]);
    let qh = &block[16..48];
    let mut q = unpack_4bit_codes(&block[48..176]);
    for (i, code) in q.iter_mut().enumerate() {
        *code |= (((qh[i % 32] >> (i / 32)) & 1) << 4) as i8;
    }
    SuperBlock {
        d: f16_at(block, 0),
        dmin: f16_at(block, 2),
        scales,
        mins,
        q,
    }
}

/// Q6_K: two halves of 128 elements, each using 64 bytes of ql and 32 of qh. In half h,
/// element 128h + 32k + l (k < 4, l < 32) takes its low 4 bits from byte l (k even) or
/// l + 32 (k odd) of the half's ql — low nibble for k < 2, high for k >= 2 — and its top 2
/// bits from bits 2k..2k+2 of the half's qh[l]; codes are stored plus 32.
pub(super) fn decode_q6_k(block: &[u8]) -> SuperBlock<16> {
    let ql = &block[0..128];
    let qh = &block[128..192];
    let mut q = [0i8; QK_K];
    for (i, code) in q.iter_mut().enumerate() {
        let (h, k, l) = (i / 128, (i % 128) / 32, i % 32);
        let low_byte = ql[64 * h + 32 * (k % 2) + l];
        let low = (low_byte >> (4 * (k / 2))) & 0x0F;
        let high = (qh[32 * h + l] >> (2 * k)) & 3;
        *code = (low | (high << 4)) as i8 - 32;
    }
    SuperBlock {
        d: f16_at(block, 208),
        dmin: 0.0,
        scales: std::array::from_fn(|j| block[192 + j] as i8 as i32),
        mins: [0; 16],
        q,
    }
}

fn f32_at(block: &[u8], offset: usize) -> f32 {
    match block.get(offset..offset + 4) {
        Some(&[b0, b1, b2, b3]) => f32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0.0,
    }
}

pub(super) fn decode_q8_k(block: &[u8]) -> Q8KBlock {
    Q8KBlock {
        d: f32_at(block, 0),
        q: std::array::from_fn(|i| block[4 + i] as i8),
        sums: std::array::from_fn(|k| {
            i16::from_le_bytes([block[260 + 2 * k], block[261 + 2 * k]]) as i32
        }),
    }
}

/// Q8_K read as a weight: one sub-block with scale 1 and no min.
pub(super) fn decode_q8_k_as_weight(block: &[u8]) -> SuperBlock<1> {
    let Q8KBlock { d, q, .. } = decode_q8_k(block);
    SuperBlock {
        d,
        dmin: 0.0,
        scales: [1],
        mins: [0],
        q,
    }
}

// ---------------------------------------------------------------------------------------
// Dequantization

/// Dequantizes super-blocks of `block_bytes`: x = (d*scale[j])*q - dmin*min[j], the two
/// products rounded to f32 first, as ggml does.
fn to_f32_super_blocks<const N_SUB: usize>(
    src: &[u8],
    dst: &mut [f32],
    block_bytes: usize,
    decode: fn(&[u8]) -> SuperBlock<N_SUB>,
) {
    let sub_len = QK_K / N_SUB;
    for (block, out) in src
        .chunks_exact(block_bytes)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let sb = decode(block);
        let subs = out
            .chunks_exact_mut(sub_len)
            .zip(sb.q.chunks_exact(sub_len));
        for (j, (out_sub, q_sub)) in subs.enumerate() {
            let scale = sb.d * sb.scales[j] as f32;
            let min = sb.dmin * sb.mins[j] as f32;
            for (y, &code) in out_sub.iter_mut().zip(q_sub) {
                *y = scale * code as f32 - min;
            }
        }
    }
}

pub(super) fn to_f32_q2_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q2_K_BYTES, decode_q2_k);
}

pub(super) fn to_f32_q3_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q3_K_BYTES, decode_q3_k);
}

pub(super) fn to_f32_q4_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q4_K_BYTES, decode_q4_k);
}

pub(super) fn to_f32_q5_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q5_K_BYTES, decode_q5_k);
}

pub(super) fn to_f32_q6_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q6_K_BYTES, decode_q6_k);
}

pub(super) fn to_f32_q8_k(src: &[u8], dst: &mut [f32]) {
    to_f32_super_blocks(src, dst, Q8_K_BYTES, decode_q8_k_as_weight);
}

// ---------------------------------------------------------------------------------------
// Q8_K quantization (activations)

/// As ggml's reference: max = the signed element of largest magnitude (first on ties),
/// iscale = -127/max, q = min(127, round_half_even(iscale*x)), d = 1/iscale (f32), and the
/// code sums per 16 elements. An all-zero block gets d = 0 and zero codes.
pub(super) fn from_f32_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q8_K_BYTES)) {
        let mut max = 0.0f32;
        for &v in x {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let mut q = [0i8; QK_K];
        let mut d = 0.0f32;
        if max != 0.0 {
            let iscale = -127.0 / max;
            for (code, &v) in q.iter_mut().zip(x) {
                *code = ((iscale * v).round_ties_even() as i32).clamp(-128, 127) as i8;
            }
            d = 1.0 / iscale;
        }
        block[0..4].copy_from_slice(&d.to_le_bytes());
        for (byte, &code) in block[4..260].iter_mut().zip(q.iter()) {
            *byte = code as u8;
        }
        for (k, sum_bytes) in block[260..292].chunks_exact_mut(2).enumerate() {
            let sum: i32 = q[16 * k..16 * (k + 1)].iter().map(|&c| c as i32).sum();
            // |sum| <= 16 * 128, so it fits i16.
            sum_bytes.copy_from_slice(&(sum as i16).to_le_bytes());
        }
    }
}
