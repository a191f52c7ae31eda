//! The reference quantizers from f32 of the K-quant weight types Q2_K, Q3_K, Q4_K, Q5_K
//! and Q6_K: ggml's quantize_row_q*_K_ref (no importance matrix), byte for byte. These are
//! what llama-quantize writes for tensors it has no imatrix for.
//!
//! Every type works in two passes. The first fits each sub-block on its own (the searches
//! in `k_quants_fit`) and quantizes the sub-block scales (and mins) against the block's
//! largest; the second recomputes every code against the scale as stored (f16 d times the
//! quantized sub-block scale), so the codes match what dequantization will use. A
//! sub-block whose stored scale is 0 keeps its first-pass codes, as in ggml.
//!
//! Layouts are in `k_quants`.

use super::k_quants::{
    unpack_q3_k_scale, unpack_scales_mins_k4, Q2_K_BYTES, Q3_K_BYTES, Q4_K_BYTES, Q5_K_BYTES,
    Q6_K_BYTES, QK_K,
};
use super::k_quants_fit::{
    f16_bits_to_f32, fit_scale_and_min, fit_symmetric_scale, fit_symmetric_scale_by_moves,
    ggml_f16_bits, nearest_int, ScaleMinSearch, GROUP_MAX_EPS,
};

fn put_f16(block: &mut [u8], offset: usize, bits: u16) {
    block[offset..offset + 2].copy_from_slice(&bits.to_le_bytes());
}

/// Packs 256 codes of 2 bits into 64 bytes, the layout `k_quants` unpacks: element
/// 128h + 32s + l goes to bits 2s..2s+2 of byte 32h + l.
fn pack_2bit_codes(codes: &[u8; QK_K], qs: &mut [u8]) {
    for (half_codes, half_qs) in codes.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, byte) in half_qs.iter_mut().enumerate() {
            *byte = half_codes[l]
                | (half_codes[l + 32] << 2)
                | (half_codes[l + 64] << 4)
                | (half_codes[l + 96] << 6);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Q2_K

/// Sub-block scales and mins are 4-bit multiples of d = max_scale / 15 and
/// dmin = max_min / 15; each sub-block of 16 is fitted with codes 0..3 weighted by |x|.
pub(super) fn from_f32_q2_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q2_K_BYTES)) {
        quantize_block_q2_k(x, block);
    }
}

fn quantize_block_q2_k(x: &[f32], block: &mut [u8]) {
    const LEVELS: f32 = 15.0;
    let search = ScaleMinSearch {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for (j, (group, group_codes)) in groups.enumerate() {
        let mut weights = [0.0f32; 16];
        for (w, &v) in weights.iter_mut().zip(group) {
            *w = v.abs();
        }
        let (scale, min) = fit_scale_and_min(&search, group, &weights, group_codes);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    // Low nibble: the scale, high nibble: the min. Out-of-range codes wrap into the byte as
    // C's stores do.
    let mut packed = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = LEVELS / max_scale;
        for (byte, &scale) in packed.iter_mut().zip(&scales) {
            *byte = nearest_int(iscale * scale) as u8;
        }
        ggml_f16_bits(max_scale / LEVELS)
    } else {
        ggml_f16_bits(0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = LEVELS / max_min;
        for (byte, &min) in packed.iter_mut().zip(&mins) {
            *byte |= (nearest_int(iscale * min) << 4) as u8;
        }
        ggml_f16_bits(max_min / LEVELS)
    } else {
        ggml_f16_bits(0.0)
    };

    let (d_f32, dmin_f32) = (f16_bits_to_f32(d), f16_bits_to_f32(dmin));
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for ((group, group_codes), &byte) in groups.zip(&packed) {
        let scale = d_f32 * (byte & 0x0F) as f32;
        if scale == 0.0 {
            continue;
        }
        let min = dmin_f32 * (byte >> 4) as f32;
        for (code, &v) in group_codes.iter_mut().zip(group) {
            *code = nearest_int((v + min) / scale).clamp(0, 3) as u8;
        }
    }

    block[0..16].copy_from_slice(&packed);
    pack_2bit_codes(&codes, &mut block[16..80]);
    put_f16(block, 80, d);
    put_f16(block, 82, dmin);
}

// ---------------------------------------------------------------------------------------
// Q3_K

/// Sub-block scales are 6-bit signed multiples of d = -max_scale / 32 (max_scale: the
/// sub-block scale of largest magnitude); each sub-block of 16 is fitted with codes -4..3.
pub(super) fn from_f32_q3_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q3_K_BYTES)) {
        quantize_block_q3_k(x, block);
    }
}

fn quantize_block_q3_k(x: &[f32], block: &mut [u8]) {
    // Codes plus 4 (0..7).
    let mut codes = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for (j, (group, group_codes)) in groups.enumerate() {
        scales[j] = fit_symmetric_scale_by_moves(4, group, group_codes);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }

    let mut packed = [0u8; 12];
    let d = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &scale) in scales.iter().enumerate() {
            // ggml narrows the rounded value to i8 before clamping it.
            let stored = ((nearest_int(iscale * scale) as i8) as i32).clamp(-32, 31) + 32;
            let stored = stored as u8;
            if j < 8 {
                packed[j] = stored & 0x0F;
            } else {
                packed[j - 8] |= (stored & 0x0F) << 4;
            }
            packed[8 + j % 4] |= (stored >> 4) << (2 * (j / 4));
        }
        ggml_f16_bits(1.0 / iscale)
    } else {
        ggml_f16_bits(0.0)
    };

    let d_f32 = f16_bits_to_f32(d);
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for (j, (group, group_codes)) in groups.enumerate() {
        let scale = d_f32 * unpack_q3_k_scale(&packed, j) as f32;
        if scale == 0.0 {
            continue;
        }
        for (code, &v) in group_codes.iter_mut().zip(group) {
            *code = (nearest_int(v / scale).clamp(-4, 3) + 4) as i8;
        }
    }

    // The 3rd bit of element i goes to bit i / 32 of hmask[i % 32], the low 2 bits to qs.
    let mut hmask = [0u8; 32];
    let mut low_codes = [0u8; QK_K];
    for (i, (&code, low)) in codes.iter().zip(low_codes.iter_mut()).enumerate() {
        let mut code = code as u8;
        if code > 3 {
            hmask[i % 32] |= 1 << (i / 32);
            code -= 4;
        }
        *low = code;
    }
    block[0..32].copy_from_slice(&hmask);
    pack_2bit_codes(&low_codes, &mut block[32..96]);
    block[96..108].copy_from_slice(&packed);
    put_f16(block, 108, d);
}

// ---------------------------------------------------------------------------------------
// Q4_K and Q5_K

/// A Q4_K / Q5_K super-block before its codes are packed.
struct ScaleMinBlock {
    d: u16,
    dmin: u16,
    packed_scales: [u8; 12],
    codes: [u8; QK_K],
}

/// The part Q4_K and Q5_K share: 8 sub-blocks of 32, each fitted with codes 0..nmax and a
/// min, weighted by rms(sub-block) + |x|; scales and mins are 6-bit multiples of
/// d = max_scale / 63 and dmin = max_min / 63.
fn fit_scale_min_block(x: &[f32], search: &ScaleMinSearch) -> ScaleMinBlock {
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    let groups = x.chunks_exact(32).zip(codes.chunks_exact_mut(32));
    for (j, (group, group_codes)) in groups.enumerate() {
        let mut sum_x2 = 0.0f32;
        for &v in group {
            sum_x2 += v * v;
        }
        let rms = (sum_x2 / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for (w, &v) in weights.iter_mut().zip(group) {
            *w = rms + v.abs();
        }
        let (scale, min) = fit_scale_and_min(search, group, &weights, group_codes);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // ggml narrows the rounded value to u8 before capping it at 63.
        let stored_scale = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let stored_min = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = stored_scale;
            packed[j + 4] = stored_min;
        } else {
            packed[j + 4] = (stored_scale & 0x0F) | ((stored_min & 0x0F) << 4);
            packed[j - 4] |= (stored_scale >> 4) << 6;
            packed[j] |= (stored_min >> 4) << 6;
        }
    }
    let d = ggml_f16_bits(max_scale / 63.0);
    let dmin = ggml_f16_bits(max_min / 63.0);

    let (sub_scales, sub_mins) = unpack_scales_mins_k4(&packed);
    let (d_f32, dmin_f32) = (f16_bits_to_f32(d), f16_bits_to_f32(dmin));
    let groups = x.chunks_exact(32).zip(codes.chunks_exact_mut(32));
    for (j, (group, group_codes)) in groups.enumerate() {
        let scale = d_f32 * sub_scales[j] as f32;
        if scale == 0.0 {
            continue;
        }
        let min = dmin_f32 * sub_mins[j] as f32;
        for (code, &v) in group_codes.iter_mut().zip(group) {
            *code = nearest_int((v + min) / scale).clamp(0, search.nmax) as u8;
        }
    }
    ScaleMinBlock {
        d,
        dmin,
        packed_scales: packed,
        codes,
    }
}

/// Packs 256 codes of 4 bits into 128 bytes, the layout `k_quants` unpacks: in chunk c of
/// 64, element 64c + l goes to the low nibble of byte 32c + l, element 64c + 32 + l to its
/// high nibble.
fn pack_4bit_codes(codes: &[u8; QK_K], qs: &mut [u8]) {
    for (chunk_codes, chunk_qs) in codes.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
        for (l, byte) in chunk_qs.iter_mut().enumerate() {
            *byte = (chunk_codes[l] & 0x0F) | ((chunk_codes[l + 32] & 0x0F) << 4);
        }
    }
}

/// Codes 0..15; the search tries inverse scales (15 - 1 + 0.1k) / range, k = 0..20.
pub(super) fn from_f32_q4_k(src: &[f32], dst: &mut [u8]) {
    let search = ScaleMinSearch {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q4_K_BYTES)) {
        let fitted = fit_scale_min_block(x, &search);
        put_f16(block, 0, fitted.d);
        put_f16(block, 2, fitted.dmin);
        block[4..16].copy_from_slice(&fitted.packed_scales);
        pack_4bit_codes(&fitted.codes, &mut block[16..144]);
    }
}

/// Codes 0..31: Q4_K's nibbles plus a 5th bit, bit i / 32 of qh[i % 32]; the search tries
/// inverse scales (31 - 0.5 + 0.1k) / range, k = 0..15.
pub(super) fn from_f32_q5_k(src: &[f32], dst: &mut [u8]) {
    let search = ScaleMinSearch {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q5_K_BYTES)) {
        let fitted = fit_scale_min_block(x, &search);
        put_f16(block, 0, fitted.d);
        put_f16(block, 2, fitted.dmin);
        block[4..16].copy_from_slice(&fitted.packed_scales);
        let mut qh = [0u8; 32];
        for (i, &code) in fitted.codes.iter().enumerate() {
            qh[i % 32] |= ((code >> 4) & 1) << (i / 32);
        }
        block[16..48].copy_from_slice(&qh);
        pack_4bit_codes(&fitted.codes, &mut block[48..176]);
    }
}

// ---------------------------------------------------------------------------------------
// Q6_K

/// Sub-block scales are i8 multiples of d = -max_scale / 128 (max_scale: the sub-block scale
/// of largest magnitude); each sub-block of 16 is fitted with codes -32..31. A block whose
/// sub-block scales are all below [`GROUP_MAX_EPS`] is all zero bytes.
pub(super) fn from_f32_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q6_K_BYTES)) {
        quantize_block_q6_k(x, block);
    }
}

fn quantize_block_q6_k(x: &[f32], block: &mut [u8]) {
    // Codes plus 32 (0..63).
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for (j, (group, group_codes)) in groups.enumerate() {
        scales[j] = fit_symmetric_scale(32, group, group_codes);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        // Zero bytes are d = +0.0 with zero scales.
        block.fill(0);
        return;
    }

    let iscale = -128.0 / max_scale;
    let d = ggml_f16_bits(1.0 / iscale);
    // Capped at 127, then narrowed to i8 as C's store does.
    let stored_scales: [i8; 16] =
        std::array::from_fn(|j| nearest_int(iscale * scales[j]).min(127) as i8);

    let d_f32 = f16_bits_to_f32(d);
    let groups = x.chunks_exact(16).zip(codes.chunks_exact_mut(16));
    for ((group, group_codes), &stored) in groups.zip(&stored_scales) {
        let scale = d_f32 * stored as f32;
        if scale == 0.0 {
            continue;
        }
        for (code, &v) in group_codes.iter_mut().zip(group) {
            *code = (nearest_int(v / scale).clamp(-32, 31) + 32) as u8;
        }
    }

    // In half h of 128, element 128h + 32k + l (k < 4) puts its low nibble in ql byte
    // 64h + 32(k % 2) + l (low nibble for k < 2, high for k >= 2) and its top 2 bits in
    // bits 2k..2k+2 of qh byte 32h + l.
    let (ql, rest) = block.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let halves = codes
        .chunks_exact(128)
        .zip(ql.chunks_exact_mut(64))
        .zip(qh.chunks_exact_mut(32));
    for ((half_codes, half_ql), half_qh) in halves {
        for l in 0..32 {
            let q = [
                half_codes[l],
                half_codes[l + 32],
                half_codes[l + 64],
                half_codes[l + 96],
            ];
            half_ql[l] = (q[0] & 0x0F) | ((q[2] & 0x0F) << 4);
            half_ql[l + 32] = (q[1] & 0x0F) | ((q[3] & 0x0F) << 4);
            half_qh[l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    for (byte, &stored) in rest[..16].iter_mut().zip(&stored_scales) {
        *byte = stored as u8;
    }
    put_f16(block, 208, d);
}
