//! Dot products of K-quant weight rows with Q8_K activation rows.
//!
//! Per super-block, with w[i] = dw*scale[j]*qw[i] - dmin*min[j] and x[i] = dx*qx[i]:
//!
//!   sum_i w[i]*x[i] = (dx*dw) * sum_j scale[j] * (sum_{i in j} qw[i]*qx[i])
//!                   - (dx*dmin) * sum_j min[j] * (sum_{i in j} qx[i])
//!
//! Both inner sums are integers; the second comes from the Q8_K block's stored code sums
//! (one per 16 elements), so the mins cost nothing per element.

use super::k_quants::{
    decode_q2_k, decode_q3_k, decode_q4_k, decode_q5_k, decode_q6_k, decode_q8_k,
    decode_q8_k_as_weight, SuperBlock, Q2_K_BYTES, Q3_K_BYTES, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
    Q8_K_BYTES, Q8_K_SUMS, QK_K,
};

/// sum_i a[i]*b[i] in integers.
fn int_dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// The dot product of `n` elements of a weight row (super-blocks of `w_block_bytes`,
/// decoded by `decode_w` into `N_SUB` sub-blocks) with a Q8_K row.
fn dot_super_blocks<const N_SUB: usize>(
    n: usize,
    w: &[u8],
    w_block_bytes: usize,
    decode_w: fn(&[u8]) -> SuperBlock<N_SUB>,
    x: &[u8],
) -> f32 {
    let sub_len = QK_K / N_SUB;
    // Q8_K code sums per weight sub-block (1 for 16-element sub-blocks, 2 for 32).
    let sums_per_sub = Q8_K_SUMS / N_SUB;
    let mut sum = 0.0f32;
    let blocks = w
        .chunks_exact(w_block_bytes)
        .zip(x.chunks_exact(Q8_K_BYTES));
    for (w_block, x_block) in blocks.take(n / QK_K) {
        let wb = decode_w(w_block);
        let xb = decode_q8_k(x_block);

        // Largest for Q6_K: |scaled| <= 16 sub-blocks * 128 * (16 * 32 * 128) < 2^28, so
        // i32 does not overflow.
        let mut scaled = 0i32;
        let subs = wb.q.chunks_exact(sub_len).zip(xb.q.chunks_exact(sub_len));
        for (j, (qw, qx)) in subs.enumerate() {
            scaled += wb.scales[j] * int_dot(qw, qx);
        }

        // Zero for types without mins.
        let mut mins = 0i32;
        for (j, qx_sums) in xb.sums.chunks_exact(sums_per_sub).enumerate() {
            mins += wb.mins[j] * qx_sums.iter().sum::<i32>();
        }

        sum += (xb.d * wb.d) * scaled as f32 - (xb.d * wb.dmin) * mins as f32;
    }
    sum
}

pub(super) fn vec_dot_q2_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q2_K_BYTES, decode_q2_k, x)
}

pub(super) fn vec_dot_q3_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q3_K_BYTES, decode_q3_k, x)
}

pub(super) fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q4_K_BYTES, decode_q4_k, x)
}

pub(super) fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q5_K_BYTES, decode_q5_k, x)
}

pub(super) fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q6_K_BYTES, decode_q6_k, x)
}

pub(super) fn vec_dot_q8_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_super_blocks(n, w, Q8_K_BYTES, decode_q8_k_as_weight, x)
}
