//! Long-context RoPE frequency schedules: YaRN (gpt-oss) and Llama 3's, computed as
//! Hugging Face transformers computes them (`modeling_rope_utils.py`).

use std::f64::consts::PI;

/// The base angle per position of each of the `n_rot / 2` pairs: `theta^(-2i/n_rot)`.
fn base_inv_freq(theta: f64, n_rot: usize) -> Vec<f64> {
    (0..n_rot / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / n_rot as f64))
        .collect()
}

/// YaRN parameters (`rope_type: "yarn"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// Context extension factor (gpt-oss: 32).
    pub factor: f64,
    /// Context length of pre-training (gpt-oss: 4096).
    pub original_context: f64,
    /// Rotations per original context above which a pair keeps its frequency.
    pub beta_fast: f64,
    /// Rotations per original context below which a pair is fully interpolated.
    pub beta_slow: f64,
    /// Whether the ramp's bounds are rounded outwards to whole dims (gpt-oss: false).
    pub truncate: bool,
    /// Multiplies cos and sin; None for the default `0.1 ln(factor) + 1`.
    pub attention_factor: Option<f64>,
}

impl Yarn {
    /// The per-pair angles and the factor on cos and sin, for heads of `n_rot` rotated dims.
    pub fn inv_freq(&self, theta: f64, n_rot: usize) -> (Vec<f32>, f32) {
        let dim = n_rot as f64;
        // The (fractional) dim index whose pair turns `rotations` times over the
        // original context.
        let correction_dim = |rotations: f64| {
            dim * (self.original_context / (rotations * 2.0 * PI)).ln() / (2.0 * theta.ln())
        };
        let (mut low, mut high) = (
            correction_dim(self.beta_fast),
            correction_dim(self.beta_slow),
        );
        if self.truncate {
            low = low.floor();
            high = high.ceil();
        }
        let low = low.max(0.0);
        let mut high = high.min(dim - 1.0);
        if low == high {
            high += 0.001; // as the reference does, to avoid dividing by zero
        }
        let inv_freq = base_inv_freq(theta, n_rot)
            .into_iter()
            .enumerate()
            .map(|(i, extrapolated)| {
                let interpolated = extrapolated / self.factor;
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                // Pairs below `low` turn fast enough to keep their frequency.
                let keep = 1.0 - ramp;
                (interpolated * (1.0 - keep) + extrapolated * keep) as f32
            })
            .collect();
        let scale = self.attention_factor.unwrap_or(if self.factor <= 1.0 {
            1.0
        } else {
            0.1 * self.factor.ln() + 1.0
        });
        (inv_freq, scale as f32)
    }
}

/// Llama 3's schedule (`rope_type: "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_context: f64,
}

impl Llama3Scaling {
    /// Short wavelengths keep their frequency, long ones are divided by `factor`, and
    /// those between are blended.
    pub fn inv_freq(&self, theta: f64, n_rot: usize) -> Vec<f32> {
        let low_freq_wavelen = self.original_context / self.low_freq_factor;
        let high_freq_wavelen = self.original_context / self.high_freq_factor;
        base_inv_freq(theta, n_rot)
            .into_iter()
            .map(|inv| {
                let wavelen = 2.0 * PI / inv;
                let out = if wavelen < high_freq_wavelen {
                    inv
                } else if wavelen > low_freq_wavelen {
                    inv / self.factor
                } else {
                    let smooth = (self.original_context / wavelen - self.low_freq_factor)
                        / (self.high_freq_factor - self.low_freq_factor);
                    (1.0 - smooth) * inv / self.factor + smooth * inv
                };
                out as f32
            })
            .collect()
    }
}

/// Plain RoPE angles, as f32.
pub fn plain_inv_freq(theta: f64, n_rot: usize) -> Vec<f32> {
    base_inv_freq(theta, n_rot)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt_oss_yarn_matches_the_published_bounds() {
        // The fact sheet: low 8.0928, high 17.3980, attention factor 1.346574.
        let yarn = Yarn {
            factor: 32.0,
            original_context: 4096.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            truncate: false,
            attention_factor: None,
        };
        let (inv, scale) = yarn.inv_freq(150000.0, 64);
        assert!((scale - 1.346574).abs() < 1e-6);
        let base = plain_inv_freq(150000.0, 64);
        // Pairs 0..=8 keep their frequency; 18.. are divided by 32; 9..=17 blend.
        for i in 0..=8 {
            assert_eq!(inv[i], base[i], "pair {i}");
        }
        for i in 18..32 {
            assert!(
                (inv[i] - base[i] / 32.0).abs() <= 1e-6 * base[i],
                "pair {i}"
            );
        }
        let ramp = (12.0 - 8.0928) / (17.3980 - 8.0928);
        let want = base[12] as f64 / 32.0 * ramp + base[12] as f64 * (1.0 - ramp);
        assert!((inv[12] as f64 - want).abs() < 1e-4 * want);
    }

    #[test]
    fn llama3_keeps_short_and_divides_long_wavelengths() {
        let s = Llama3Scaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192.0,
        };
        let inv = s.inv_freq(500000.0, 128);
        let base = plain_inv_freq(500000.0, 128);
        let kept = (0..64).filter(|&i| inv[i] == base[i]).count();
        let divided = (0..64)
            .filter(|&i| (inv[i] - base[i] / 8.0).abs() <= 1e-7 * base[i])
            .count();
        // The fact sheet: 29 pairs kept, 29 divided, 6 blended for d = 128.
        assert_eq!((kept, divided), (29, 29));
    }
}
