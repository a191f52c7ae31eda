//! Element-wise and row-wise ops of a transformer layer: RMSNorm, RoPE, softmax,
//! SwiGLU and GeGLU. Scalar and simple: they cost little next to the matrix products.
use crate::pool::{SyncMutPtr, ThreadPool};

/// `Σ a[i] b[i]` with eight independent partial sums (vectorizable).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// RMSNorm of one row: `out = x / sqrt(mean(x²) + eps) * weight`.
/// `x`, `weight` and `out` have the same length.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == weight.len() && x.len() == out.len());
    let sum_squares = sum_squares_f64(x);
    let scale = 1.0 / ((sum_squares / x.len() as f64) as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rms_norm`] of `x` into itself: the same values.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    debug_assert!(x.len() == weight.len());
    let sum_squares = sum_squares_f64(x);
    let scale = 1.0 / ((sum_squares / x.len() as f64) as f32 + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// `Σ x²` in f64. Eight independent partial sums instead of one chain of dependent
/// additions: the compiler keeps them in vector registers, and the f64 sums of a row
/// differ from the one-chain order far below what the f32 result can show.
fn sum_squares_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += (v as f64) * (v as f64);
        }
    }
    let tail_sum: f64 = tail.iter().map(|&v| (v as f64) * (v as f64)).sum();
    acc.iter().sum::<f64>() + tail_sum
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

    /// Number of rotated pairs of a head: the length of [`Rope::angles_into`]'s tables.
    pub fn n_pairs(&self) -> usize {
        self.inv_freq.len()
    }

    /// The cos and sin (times the model's scale) of each rotated pair's angle at
    /// position `pos`: `cos` and `sin` are `[n_pairs]`. One position's table serves
    /// every head of every layer.
    pub fn angles_into(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        debug_assert!(cos.len() == self.inv_freq.len() && sin.len() == self.inv_freq.len());
        for ((c, s), &inv) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
            // The angle is computed in f64 so large positions keep their precision.
            let (sin_f64, cos_f64) = (pos as f64 * inv as f64).sin_cos();
            *c = cos_f64 as f32 * self.cos_sin_scale;
            *s = sin_f64 as f32 * self.cos_sin_scale;
        }
    }

    /// Rotates every head of `x` (`[n_heads, head_dim]`, contiguous) by the angles of
    /// one position, as [`Rope::angles_into`] gives them.
    pub fn apply_angles(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = self.n_rot / 2;
        let n_pairs = self.inv_freq.len().min(cos.len()).min(sin.len());
        let (cos, sin) = (&cos[..n_pairs], &sin[..n_pairs]);
        for head in x.chunks_exact_mut(head_dim) {
            match self.layout {
                RopeLayout::Adjacent => {
                    for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0 * c - x1 * s;
                        pair[1] = x0 * s + x1 * c;
                    }
                }
                RopeLayout::HalfSplit => {
                    let (lo, hi) = head.split_at_mut(half);
                    for (((a, b), &c), &s) in lo.iter_mut().zip(hi.iter_mut()).zip(cos).zip(sin) {
                        let (x0, x1) = (*a, *b);
                        *a = x0 * c - x1 * s;
                        *b = x0 * s + x1 * c;
                    }
                }
            }
        }
    }

    /// Rotates every head of `x` (`[n_heads, head_dim]`, contiguous) for position `pos`.
    /// Computes the angles on every call; a forward pass computes each row's once
    /// ([`Rope::angles_into`]) for all its layers ([`Rope::apply_angles`]).
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let n = self.inv_freq.len();
        let (mut cos, mut sin) = (vec![0.0f32; n], vec![0.0f32; n]);
        self.angles_into(pos, &mut cos, &mut sin);
        self.apply_angles(x, head_dim, &cos, &sin);
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

/// GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`, Gemma's
/// `gelu_pytorch_tanh`): `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
}

/// GeGLU in place: `gate[i] = gelu_tanh(gate[i]) * up[i]`.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}

/// The activation of a gated feed-forward layer: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatedActivation {
    /// SwiGLU (Llama, Qwen, DeepSeek).
    Silu,
    /// GeGLU with tanh-approximate GELU (Gemma).
    GeluTanh,
}

impl GatedActivation {
    /// `gate[i] = act(gate[i]) * up[i]`.
    pub fn apply(self, gate: &mut [f32], up: &[f32]) {
        match self {
            GatedActivation::Silu => swiglu(gate, up),
            GatedActivation::GeluTanh => geglu(gate, up),
        }
    }
}

/// Values per task of [`gated_on`]: a decode step's few thousand stay on the caller.
const GATED_CHUNK: usize = 8192;

/// [`swiglu`] with the values split over `pool`: a prompt's hundreds of thousands of
/// `exp` would otherwise be one thread's. The same values as [`swiglu`].
pub fn swiglu_on(pool: &ThreadPool, gate: &mut [f32], up: &[f32]) {
    gated_on(pool, GatedActivation::Silu, gate, up);
}

/// [`GatedActivation::apply`] with the values split over `pool`; the same values.
pub fn gated_on(pool: &ThreadPool, act: GatedActivation, gate: &mut [f32], up: &[f32]) {
    assert_eq!(
        gate.len(),
        up.len(),
        "gated activation: gate and up lengths"
    );
    let n = gate.len();
    let gate_ptr = SyncMutPtr::new(gate);
    pool.run_chunks(n, GATED_CHUNK, &|start, end| {
        // SAFETY: each task owns gate[start..end], inside the slice.
        let gate = unsafe { gate_ptr.slice_mut(start, end - start) };
        act.apply(gate, &up[start..end]);
    });
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
    fn swiglu_on_a_pool_equals_swiglu() {
        let pool = ThreadPool::new(3).unwrap();
        for n in [0, 5, 8192, 30_001] {
            let gate: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
            let up: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut want = gate.clone();
            swiglu(&mut want, &up);
            let mut got = gate;
            swiglu_on(&pool, &mut got, &up);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn gelu_tanh_matches_known_values() {
        // torch.nn.functional.gelu(x, approximate="tanh") in float64.
        for (x, want) in [
            (-3.0f32, -0.003_637_392_6),
            (-0.5, -0.154_286),
            (0.0, 0.0),
            (1.0, 0.841_192),
            (2.5, 2.484_915_7),
        ] {
            assert!((gelu_tanh(x) - want).abs() < 1e-6, "{x}: {}", gelu_tanh(x));
        }
    }

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
