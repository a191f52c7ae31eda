//! The searches behind ggml's K-quant reference quantizers: for a group of 16 or 32 values,
//! the integer codes and the scale (and min) that reproduce them best. Each is ggml's
//! helper of the same purpose (named in its doc), repeated operation for operation: the
//! searches compare float errors, so a sum taken in another order, a product regrouped or
//! a fused multiply-add would pick another scale on some groups and change the bytes.
//! Integers enter products as f32 at the point where C converts them.

use half::f16;

/// Groups whose largest magnitude is below this are all zero (ggml's GROUP_MAX_EPS).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// The largest group a search takes (Q4_K and Q5_K sub-blocks).
const MAX_GROUP: usize = 32;

/// ggml's nearest_int: adding 1.5 * 2^23 leaves round-half-even(value) in the low mantissa
/// bits. For |value| < 2^22 that is exact rounding; beyond it (and for NaN) the result is
/// what the bit trick gives, as in release builds of ggml, where its range assert is off.
pub(super) fn nearest_int(value: f32) -> i32 {
    let biased = value + 12_582_912.0;
    (biased.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml's fp32 -> fp16 conversion (ggml_compute_fp32_to_fp16), as bits. It rounds to
/// nearest even like any IEEE conversion; written out so that NaN comes out as ggml writes
/// it (0x7E00 with the sign), which no library promises.
pub(super) fn ggml_f16_bits(value: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let scaled = (value.abs() * scale_to_inf) * scale_to_zero;

    let bits = value.to_bits();
    let doubled = bits.wrapping_add(bits);
    let sign = bits & 0x8000_0000;
    let bias = (doubled & 0xFF00_0000).max(0x7100_0000);
    // Adding a power of two at the value's exponent (at least the f16 subnormal one) rounds
    // the mantissa to f16 precision in the float unit.
    let rounded = (f32::from_bits((bias >> 1) + 0x0780_0000) + scaled).to_bits();
    let exponent_bits = (rounded >> 13) & 0x7C00;
    let mantissa_bits = rounded & 0x0FFF;
    let magnitude = if doubled > 0xFF00_0000 {
        0x7E00
    } else {
        exponent_bits + mantissa_bits
    };
    ((sign >> 16) | magnitude) as u16
}

/// The f32 value of f16 `bits` (exact).
pub(super) fn f16_bits_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// The element of largest magnitude (the first of equals) and that magnitude; (0, 0) for
/// an empty group.
fn signed_abs_max(x: &[f32]) -> (f32, f32) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// ggml's make_qx_quants with rmse_type 1 and no importance weights: codes in
/// [-nmax, nmax) for a scale without offset, chosen among the 19 inverse scales
/// -(nmax + 0.1 k) / max (k = -9..9) by the x²-weighted least-squares fit. Writes the
/// codes plus nmax into `codes` and returns the fitted scale; a group below
/// [`GROUP_MAX_EPS`] gets zero codes (not nmax) and scale 0.
pub(super) fn fit_symmetric_scale(nmax: i32, x: &[f32], codes: &mut [u8]) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let code_of = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Σ w·x·l and Σ w·l² with w = x².
    let sums = |iscale: f32| {
        let mut sum_xl = 0.0f32;
        let mut sum_l2 = 0.0f32;
        for &v in x {
            let l = code_of(iscale, v) as f32;
            let w = v * v;
            sum_xl += w * v * l;
            sum_l2 += w * l * l;
        }
        (sum_xl, sum_l2)
    };
    let store = |iscale: f32, codes: &mut [u8]| {
        for (code, &v) in codes.iter_mut().zip(x) {
            *code = (nmax + code_of(iscale, v)) as u8;
        }
    };

    let iscale = -(nmax as f32) / max;
    store(iscale, codes);
    let (sum_xl, sum_l2) = sums(iscale);
    let mut scale = if sum_l2 != 0.0 { sum_xl / sum_l2 } else { 0.0 };
    let mut best = scale * sum_xl;
    for step in (-9..=9).filter(|&step| step != 0) {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sum_xl, sum_l2) = sums(iscale);
        if sum_l2 > 0.0 && sum_xl * sum_xl > best * sum_l2 {
            store(iscale, codes);
            scale = sum_xl / sum_l2;
            best = scale * sum_xl;
        }
    }
    scale
}

/// ggml's make_q3_quants with do_rmse: codes in [-nmax, nmax) from the inverse scale
/// -nmax / max, then up to 5 passes that move single codes to where the x²-weighted
/// least-squares scale says, keeping a move when it improves the fit. Writes the codes
/// plus nmax into `codes` and returns the fitted scale; a group below [`GROUP_MAX_EPS`]
/// gets zero codes (not nmax) and scale 0.
pub(super) fn fit_symmetric_scale_by_moves(nmax: i32, x: &[f32], codes: &mut [i8]) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut sum_xl = 0.0f32;
    let mut sum_l2 = 0.0f32;
    for (code, &v) in codes.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *code = l as i8;
        let w = v * v;
        sum_xl += w * v * l as f32;
        sum_l2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (code, &v) in codes.iter_mut().zip(x) {
            let w = v * v;
            let old = *code as f32;
            let mut others_xl = sum_xl - w * v * old;
            if others_xl > 0.0 {
                let mut others_l2 = sum_l2 - w * old * old;
                let new_l = nearest_int(v * others_l2 / others_xl).clamp(-nmax, nmax - 1);
                if new_l != *code as i32 {
                    others_xl += w * v * new_l as f32;
                    others_l2 += w * new_l as f32 * new_l as f32;
                    if others_l2 > 0.0
                        && others_xl * others_xl * sum_l2 > sum_xl * sum_xl * others_l2
                    {
                        *code = new_l as i8;
                        sum_xl = others_xl;
                        sum_l2 = others_l2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for code in codes.iter_mut() {
        *code += nmax as i8;
    }
    if sum_l2 > 0.0 {
        sum_xl / sum_l2
    } else {
        0.0
    }
}

/// The grid a [`fit_scale_and_min`] search walks: codes in [0, nmax], inverse scales
/// (nmax + rmin + rdelta·k) / (max - min) for k = 0..=nstep, errors |diff| (use_mad) or
/// diff².
pub(super) struct ScaleMinSearch {
    pub nmax: i32,
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub use_mad: bool,
}

/// ggml's make_qkx2_quants: codes in [0, nmax] for x ≈ scale·code - the_min, with
/// the_min >= 0 (a group's min is never raised above 0). Starts from the range
/// (min, max) and, for each inverse scale of the grid, solves the weighted least squares
/// for scale and min, keeping the one with the least weighted error. Groups of at most 32.
/// Writes the codes and returns (scale, the_min); a constant group (counting the 0 the min
/// is clamped to) gets zero codes and scale 0.
pub(super) fn fit_scale_and_min(
    search: &ScaleMinSearch,
    x: &[f32],
    weights: &[f32],
    codes: &mut [u8],
) -> (f32, f32) {
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let mut min = x0;
    let mut max = x0;
    let mut sum_w = w0;
    let mut sum_x = sum_w * x0;
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        codes.fill(0);
        return (0.0, -min);
    }
    let nmax = search.nmax;
    let error_of = |diff: f32| {
        if search.use_mad {
            diff.abs()
        } else {
            diff * diff
        }
    };

    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((code, &v), &w) in codes.iter_mut().zip(x).zip(weights) {
        *code = nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
        best_error += w * error_of(scale * *code as f32 + min - v);
    }

    let mut trial = [0u8; MAX_GROUP];
    for step in 0..=search.nstep {
        let iscale = (search.rmin + search.rdelta * step as f32 + nmax as f32) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for ((code, &v), &w) in trial.iter_mut().zip(x).zip(weights) {
            let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
            *code = l as u8;
            let l = l as f32;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut trial_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut trial_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if trial_min > 0.0 {
                trial_min = 0.0;
                trial_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for ((&code, &v), &w) in trial.iter().zip(x).zip(weights) {
                error += w * error_of(trial_scale * code as f32 + trial_min - v);
            }
            if error < best_error {
                for (code, &t) in codes.iter_mut().zip(&trial) {
                    *code = t;
                }
                best_error = error;
                scale = trial_scale;
                min = trial_min;
            }
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_in_range() {
        for v in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.49,
            3.51,
            4_194_303.0,
            -4_194_303.0,
            -0.0,
        ] {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
    }

    #[test]
    fn ggml_f16_conversion_rounds_like_ieee() {
        // Every 251st f32 bit pattern, both signs: normals, subnormals, overflow, infinity.
        for bits in (0..=0x7FFF_FFFFu32)
            .step_by(251)
            .chain([0x7F80_0000, 0x477F_F000])
        {
            for value in [f32::from_bits(bits), -f32::from_bits(bits)] {
                if value.is_nan() {
                    assert_eq!(ggml_f16_bits(value) & 0x7FFF, 0x7E00);
                    continue;
                }
                assert_eq!(
                    ggml_f16_bits(value),
                    f16::from_f32(value).to_bits(),
                    "{value:e}"
                );
            }
        }
    }
}
