//! HuRef's invariant terms (Zeng et al., NeurIPS 2024, "HuRef: HUman-REadable Fingerprint for
//! Large Language Models"), a second measure beside AWM's that needs no alignment at all.
//!
//! Over the embeddings X (one row per token) of a set of tokens, a layer's attention gives
//!
//!   M_a = X (Σ_h Wq_hᵀ Wk_h) Xᵀ     and     M_b = X (Σ_h Wo_h Wv_h)ᵀ Xᵀ,
//!
//! token-by-token matrices that any orthogonal change of the hidden dimensions (a permutation,
//! sign flips, a rotation) leaves exactly as they were, as it does any reordering of the heads
//! or of the dimensions within them. Two models are compared by the cosine of their terms over
//! the tokens they share, each term double-centred and without its diagonal first (see
//! [`centred_off_diagonal`]). HuRef feeds the terms of the last layers to an image encoder;
//! the cosine of the terms themselves is the statistic underneath it.
//!
//! Each model's terms are taken over the first [`INVARIANT_TOKENS`] tokens of its sketch
//! (lowest string hashes), so a `.wfp` can store them and two models meet on the tokens of
//! that set they both have. Embedding rows are scaled to unit length first, as the layer's
//! input norm would; the norm's gains are in Wq, Wk and Wv already. The feed-forward term is
//! left out: a mixture of experts has no single one.

use serde::Serialize;

use crate::compare::{attention_factors, cosine};
use crate::error::FingerprintError;
use crate::matrix::{rows_by_rows, Matrix};
use crate::sketch::{shared_rows, TokenSketch};
use crate::source::WeightSource;

/// Tokens the terms are taken over.
pub const INVARIANT_TOKENS: usize = 256;
/// Layers, counted from the last, whose terms are kept (as HuRef uses the last layers).
pub const INVARIANT_LAYERS: usize = 2;
/// Fewer shared tokens than this give no comparison.
const MIN_SHARED: usize = 32;

/// One layer's terms, `[tokens, tokens]` each.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInvariants {
    pub layer: usize,
    pub attention: Matrix,
    /// None where the source has no single value/output pair (latent attention).
    pub value_output: Option<Matrix>,
}

/// A model's invariant terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Invariants {
    /// The tokens' string hashes, increasing.
    pub hashes: Vec<u64>,
    pub layers: Vec<LayerInvariants>,
}

/// A layer's value projection and its output projection with the query heads of each key
/// group summed, both `[n_kv_head · head_dim, n_embd]`: Σ_h Wo_h Wv_h = Ōᵀ V.
pub struct ValueOutput {
    pub value: Matrix,
    pub output_summed: Matrix,
}

/// The terms of `source`'s last layers over the first tokens of `sketch` (the source's own),
/// `value_output(layer)` giving each layer's pair.
pub fn compute_invariants(
    source: &dyn WeightSource,
    sketch: &TokenSketch,
    value_output: impl Fn(usize) -> Result<Option<ValueOutput>, FingerprintError>,
) -> Result<Invariants, FingerprintError> {
    let n = sketch.rows.cols;
    let kept = sketch.hashes.len().min(INVARIANT_TOKENS);
    let rows = sketch.rows.data.get(..kept * n).ok_or_else(|| {
        FingerprintError::BadModel(format!("the sketch holds fewer than {kept} rows"))
    })?;
    let mut x = Matrix {
        rows: kept,
        cols: n,
        data: rows.to_vec(),
    };
    for row in x.data.chunks_exact_mut(n.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let n_layer = source.facts().n_layer;
    let mut layers = Vec::new();
    for layer in n_layer.saturating_sub(INVARIANT_LAYERS)..n_layer {
        let (p, w) = attention_factors(&source.layer(layer)?, source.facts());
        let attention = term(&x, &p, &w);
        let value_output = value_output(layer)?.map(|vo| term(&x, &vo.output_summed, &vo.value));
        layers.push(LayerInvariants {
            layer,
            attention,
            value_output,
        });
    }
    Ok(Invariants {
        hashes: sketch.hashes[..kept].to_vec(),
        layers,
    })
}

/// X Lᵀ R Xᵀ for factors L and R (`[r, n_embd]` each): (X Lᵀ)(X Rᵀ)ᵀ.
fn term(x: &Matrix, left: &Matrix, right: &Matrix) -> Matrix {
    rows_by_rows(&rows_by_rows(x, left, 1), &rows_by_rows(x, right, 1), 1)
}

/// The term's rows and columns `tokens`, double-centred (each row's and column's mean taken
/// out), without the diagonal. A mean direction shared by every embedding row, or an attention
/// form with a trace (every token attending to itself), gives unrelated models terms alike
/// along rows, columns and the diagonal; centring removes that part, as CKA's centring does.
fn centred_off_diagonal(m: &Matrix, tokens: impl Iterator<Item = usize>) -> Vec<f32> {
    let tokens: Vec<usize> = tokens.collect();
    let k = tokens.len();
    let mut sub: Vec<f64> = Vec::with_capacity(k * k);
    for &i in &tokens {
        for &j in &tokens {
            sub.push(f64::from(m.at(i, j)));
        }
    }
    let row_means: Vec<f64> = sub
        .chunks_exact(k.max(1))
        .map(|r| r.iter().sum::<f64>() / k as f64)
        .collect();
    let mut col_means = vec![0f64; k];
    for row in sub.chunks_exact(k.max(1)) {
        for (c, v) in col_means.iter_mut().zip(row) {
            *c += v / k as f64;
        }
    }
    let grand = row_means.iter().sum::<f64>() / k.max(1) as f64;
    let mut out = Vec::with_capacity(k * k.saturating_sub(1));
    for (i, row) in sub.chunks_exact(k.max(1)).enumerate() {
        for (j, v) in row.iter().enumerate() {
            if i != j {
                out.push((v - row_means[i] - col_means[j] + grand) as f32);
            }
        }
    }
    out
}

/// The cosines of one pair of layers' terms.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InvariantLayer {
    pub a: usize,
    pub b: usize,
    pub attention: f64,
    pub value_output: Option<f64>,
}

/// Two models' terms compared.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InvariantScore {
    /// The mean of every cosine below.
    pub score: f64,
    pub shared_tokens: usize,
    pub per_layer: Vec<InvariantLayer>,
}

/// The cosines of A's and B's terms over their shared tokens; None with fewer than 32 tokens
/// in common. Layers meet as `layer_pairs` (AWM's pairing, which knows about dropped layers)
/// pairs them where both sides kept terms for them, or else last with last.
pub fn compare_invariants(
    a: &Invariants,
    b: &Invariants,
    layer_pairs: &[(usize, usize)],
) -> Option<InvariantScore> {
    let shared = shared_rows(&a.hashes, &b.hashes);
    if shared.len() < MIN_SHARED {
        return None;
    }
    let similarity = |ma: &Matrix, mb: &Matrix| {
        cosine(
            &centred_off_diagonal(ma, shared.iter().map(|p| p.0)),
            &centred_off_diagonal(mb, shared.iter().map(|p| p.1)),
        )
    };
    fn find(side: &Invariants, layer: usize) -> Option<&LayerInvariants> {
        side.layers.iter().find(|l| l.layer == layer)
    }
    let mut met: Vec<(&LayerInvariants, &LayerInvariants)> = layer_pairs
        .iter()
        .filter_map(|&(i, j)| Some((find(a, i)?, find(b, j)?)))
        .collect();
    if met.is_empty() {
        met = a.layers.iter().rev().zip(b.layers.iter().rev()).collect();
        met.reverse();
    }
    let per_layer: Vec<InvariantLayer> = met
        .into_iter()
        .map(|(la, lb)| InvariantLayer {
            a: la.layer,
            b: lb.layer,
            attention: similarity(&la.attention, &lb.attention),
            value_output: match (&la.value_output, &lb.value_output) {
                (Some(va), Some(vb)) => Some(similarity(va, vb)),
                _ => None,
            },
        })
        .collect();
    let values: Vec<f64> = per_layer
        .iter()
        .flat_map(|l| std::iter::once(l.attention).chain(l.value_output))
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(InvariantScore {
        score: values.iter().sum::<f64>() / values.len() as f64,
        shared_tokens: shared.len(),
        per_layer,
    })
}
