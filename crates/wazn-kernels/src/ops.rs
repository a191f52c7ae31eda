//! Element-wise and row-wise ops of a transformer layer: RMSNorm, RoPE, softmax,
//! SwiGLU. Scalar and simple: they cost little next to the matrix products.

/// RMSNorm of one row: `out = x / sqrt(mean(x²) + eps) * weight`.
/// `x`, `weight` and `out` have the same length.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == weight.len() && x.len() == out.len());
    let sum_squares: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = 1.0 / ((sum_squares / x.len() as f64) as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Which pairs of a head vector RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: Llama as GGUF stores it (ggml's "normal" mode).
    Adjacent,
    /// Half-split pairs `(x[i], x[i + d/2])`: Hugging Face checkpoints, NeoX, gpt-oss.
    HalfSplit,
}

/// The rotation angles of RoPE for one model: `inv_freq[i]` is the angle per position
/// of pair `i`, already divided by any per-pair frequency factor.
#[derive(Clone, Debug)]
pub struct Rope {
    pub layout: RopeLayout,
    /// Number of leading dimensions of each head that are rotated (`n_rot`).
    pub n_rot: usize,
    inv_freq: Vec<f32>,
    /// Multiplies both cos and sin (YaRN's attention factor; 1 for plain RoPE).
    cos_sin_scale: f32,
}

impl Rope {
    /// `theta^(-2i/n_rot)` for each pair `i`, divided by `freq_factors[i]` when given
    /// (GGUF's `rope_freqs`, which carries Llama 3's long-context scaling).
    pub fn new(layout: RopeLayout, n_rot: usize, theta: f32, freq_factors: Option<&[f32]>) -> Rope {
        let inv_freq = (0..n_rot / 2)
            .map(|i| {
                let base = (theta as f64).powf(-2.0 * i as f64 / n_rot as f64);
                let factor = freq_factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
                (base / factor as f64) as f32
            })
            .collect();
        Rope {
            layout,
            n_rot,
            inv_freq,
            cos_sin_scale: 1.0,
        }
    }

    /// RoPE with explicit per-pair angles (`inv_freq`: `n_rot / 2` values, e.g. from YaRN
    /// or Llama 3 scaling) and a factor that multiplies both cos and sin.
    pub fn from_inv_freq(
        layout: RopeLayout,
        n_rot: usize,
        inv_freq: Vec<f32>,
        cos_sin_scale: f32,
    ) -> Rope {
        debug_assert_eq!(inv_freq.len(), n_rot / 2);
        Rope {
            layout,
            n_rot,
            inv_freq,
            cos_sin_scale,
        }
    }

    /// The angle per position of each rotated pair.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Rotates every head of `x` (`[n_heads, head_dim]`, contiguous) for position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &inv) in self.inv_freq.iter().enumerate() {
                // The angle is computed in f64 so large positions keep their precision.
                let (sin, cos) = (pos as f64 * inv as f64).sin_cos();
                let (sin, cos) = (
                    sin as f32 * self.cos_sin_scale,
                    cos as f32 * self.cos_sin_scale,
                );
                let (a, b) = match self.layout {
                    RopeLayout::Adjacent => (2 * i, 2 * i + 1),
                    RopeLayout::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Softmax in place; a row of all `-inf` becomes all zeros instead of NaNs.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Softmax of `x` with one more logit `sink` in the denominator only: `x[j] =
/// exp(x[j] - m) / (Σ_k exp(x[k] - m) + exp(sink - m))`, `m` the max over both.
pub fn softmax_with_sink(x: &mut [f32], sink: f32) {
    let max = x.iter().copied().fold(sink, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = (sink - max).exp();
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `silu(x) = x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SwiGLU in place: `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// `a[i] += b[i]`.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_a_constant_row_is_the_weight() {
        let x = [3.0f32; 8];
        let w: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let mut out = [0.0f32; 8];
        rms_norm(&x, &w, 0.0, &mut out);
        for (o, w) in out.iter().zip(&w) {
            assert!((o - w).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_layouts_agree_up_to_a_permutation() {
        // Adjacent pairing of x equals half-split pairing of x with its dims de-interleaved.
        let d = 8;
        let x: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
        let deinterleaved: Vec<f32> = (0..d / 2)
            .map(|i| x[2 * i])
            .chain((0..d / 2).map(|i| x[2 * i + 1]))
            .collect();
        let mut a = x.clone();
        Rope::new(RopeLayout::Adjacent, d, 10000.0, None).apply(&mut a, d, 17);
        let mut b = deinterleaved.clone();
        Rope::new(RopeLayout::HalfSplit, d, 10000.0, None).apply(&mut b, d, 17);
        for i in 0..d / 2 {
            assert!((a[2 * i] - b[i]).abs() < 1e-6);
            assert!((a[2 * i + 1] - b[i + d / 2]).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_keeps_norms() {
        let d = 16;
        let x: Vec<f32> = (0..2 * d).map(|i| i as f32 - 7.5).collect();
        let rope = Rope::new(RopeLayout::Adjacent, d, 500000.0, None);
        let mut y = x.clone();
        rope.apply(&mut y, d, 0);
        assert_eq!(x, y);
        rope.apply(&mut y, d, 1234);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x) - norm(&y)).abs() / norm(&x) < 1e-5);
    }

    #[test]
    fn freq_factors_divide_the_angle() {
        let d = 4;
        let plain = Rope::new(RopeLayout::Adjacent, d, 100.0, None);
        let scaled = Rope::new(RopeLayout::Adjacent, d, 100.0, Some(&[2.0, 8.0]));
        let mut a = vec![1.0, 0.0, 1.0, 0.0];
        let mut b = a.clone();
        plain.apply(&mut a, d, 2);
        scaled.apply(&mut b, d, 4);
        // Pair 0: angle 2·1 vs 4·1/2, equal. Pair 1: 2·0.1 vs 4·0.1/8, not equal.
        assert!((a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6);
        assert!((a[3] - b[3]).abs() > 1e-3);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_all_masked() {
        let mut x = vec![1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[2], 0.0);
        let mut masked = vec![f32::NEG_INFINITY; 3];
        softmax(&mut masked);
        assert_eq!(masked, vec![0.0; 3]);
    }
}
