//! Two models, one number per layer: AWM's unbiased CKA of Wq, Wk and the attention form
//! WqWkᵀ after the hidden dimensions of B are put in A's order. The summary score is the mean
//! WqWkᵀ similarity over the paired layers (the statistic AWM's z-score uses).
//!
//! Layers pair by index when the depths agree; when they differ (layers dropped), each layer
//! of the shallower model is paired with one of the deeper in order, the pairing that
//! maximises the total WqWkᵀ similarity (a monotone alignment by dynamic programming).

use serde::Serialize;

use crate::alignment::{align_hidden, Alignment};
use crate::cka::{unbiased_cka, Prepared, Representation};
use crate::error::FingerprintError;
use crate::huref::{compare_invariants, InvariantScore};
use crate::matrix::Matrix;
use crate::sketch::shared_rows;
use crate::source::{AttentionLayer, ModelFacts, WeightSource};

/// Fewer shared tokens than this cannot align hidden dimensions.
pub const MIN_SHARED_TOKENS: usize = 64;

/// Reports how far a long computation has got.
pub trait Progress: Sync {
    fn stage(&self, _what: &str, _done: usize, _total: usize) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The similarities of one pair of layers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerSimilarity {
    /// Layer of A.
    pub a: usize,
    /// Layer of B.
    pub b: usize,
    pub wq: f64,
    pub wk: f64,
    pub wq_wk: f64,
    /// The plain cosine of the two Wq as stored (no alignment), where the shapes agree.
    pub parameter_cosine: Option<f64>,
}

/// What a comparison of two models measured.
#[derive(Clone, Debug)]
pub struct PairScore {
    pub per_layer: Vec<LayerSimilarity>,
    /// Mean WqWkᵀ similarity.
    pub score: f64,
    pub mean_wq: f64,
    pub mean_wk: f64,
    /// Mean plain parameter cosine of Wq, where every paired layer has the same shape.
    pub cosine_baseline: Option<f64>,
    pub shared_tokens: usize,
    pub alignment: Alignment,
    /// HuRef's invariant terms compared, where both sides have them.
    pub invariants: Option<InvariantScore>,
}

/// A comparison's result, or why there is none.
#[derive(Clone, Debug)]
pub enum PairOutcome {
    Scored(PairScore),
    /// Too few tokens in common to align the hidden dimensions.
    NoSharedVocabulary {
        shared_tokens: usize,
    },
}

/// Compares A and B. `layers` restricts a same-depth comparison to those layers of A (the
/// null's random pairs use it); `None` compares every layer.
pub fn score_pair(
    a: &dyn WeightSource,
    b: &dyn WeightSource,
    layers: Option<&[usize]>,
    n_threads: usize,
    progress: &dyn Progress,
) -> Result<PairOutcome, FingerprintError> {
    let (sketch_a, sketch_b) = (a.sketch()?, b.sketch()?);
    let shared = shared_rows(&sketch_a.hashes, &sketch_b.hashes);
    if shared.len() < MIN_SHARED_TOKENS {
        return Ok(PairOutcome::NoSharedVocabulary {
            shared_tokens: shared.len(),
        });
    }
    let rows_a = pick_rows(&sketch_a.rows, shared.iter().map(|p| p.0));
    let rows_b = pick_rows(&sketch_b.rows, shared.iter().map(|p| p.1));
    progress.stage("aligning hidden dimensions", 0, 1);
    let alignment = align_hidden(&rows_a, &rows_b, n_threads)?;
    let mut score = score_aligned(a, b, &alignment, layers, Detail::Full, n_threads, progress)?;
    score.shared_tokens = shared.len();
    progress.stage("invariant terms", 0, 1);
    if let (Some(ia), Some(ib)) = (a.invariants(&sketch_a)?, b.invariants(&sketch_b)?) {
        let pairs: Vec<(usize, usize)> = score.per_layer.iter().map(|l| (l.a, l.b)).collect();
        score.invariants = compare_invariants(&ia, &ib, &pairs);
    }
    Ok(PairOutcome::Scored(score))
}

/// How much of a comparison to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Wq, Wk and WqWkᵀ per layer, and the parameter cosine.
    Full,
    /// WqWkᵀ only (the score); the other fields are NaN. The null's random pairs need no more.
    ScoreOnly,
}

/// Compares A and B with B's hidden dimensions already aligned to A's (`shared_tokens` is
/// left 0 for the caller to fill in).
pub fn score_aligned(
    a: &dyn WeightSource,
    b: &dyn WeightSource,
    alignment: &Alignment,
    layers: Option<&[usize]>,
    detail: Detail,
    n_threads: usize,
    progress: &dyn Progress,
) -> Result<PairScore, FingerprintError> {
    let pairs = layer_pairs(a, b, alignment, layers, n_threads, progress)?;
    let mut per_layer = Vec::with_capacity(pairs.len());
    for (done, &(i, j)) in pairs.iter().enumerate() {
        progress.stage("comparing layers", done, pairs.len());
        let (la, lb) = both_layers(a, i, b, j, n_threads)?;
        let parameter_cosine =
            (detail == Detail::Full && la.wq.rows == lb.wq.rows && la.wq.cols == lb.wq.cols)
                .then(|| cosine(&la.wq.data, &lb.wq.data));
        let (la, lb) = (aligned_a(la, alignment), aligned_b(lb, alignment));
        let qk_a = Prepared::new(attention_form(&la, a.facts()), n_threads);
        let qk_b = Prepared::new(attention_form(&lb, b.facts()), n_threads);
        let wq_wk = unbiased_cka(&qk_a, &qk_b, n_threads);
        drop((qk_a, qk_b));
        let (wq, wk) = match detail {
            Detail::Full => (
                columns_cka(la.wq, lb.wq, n_threads),
                columns_cka(la.wk, lb.wk, n_threads),
            ),
            Detail::ScoreOnly => (f64::NAN, f64::NAN),
        };
        per_layer.push(LayerSimilarity {
            a: i,
            b: j,
            wq,
            wk,
            wq_wk,
            parameter_cosine,
        });
    }
    progress.stage("comparing layers", pairs.len(), pairs.len());
    let mean = |f: fn(&LayerSimilarity) -> f64| {
        per_layer.iter().map(f).sum::<f64>() / per_layer.len().max(1) as f64
    };
    let cosines: Option<Vec<f64>> = per_layer.iter().map(|l| l.parameter_cosine).collect();
    Ok(PairScore {
        score: mean(|l| l.wq_wk),
        mean_wq: mean(|l| l.wq),
        mean_wk: mean(|l| l.wk),
        cosine_baseline: cosines.map(|c| c.iter().sum::<f64>() / c.len().max(1) as f64),
        per_layer,
        shared_tokens: 0,
        alignment: alignment.clone(),
        invariants: None,
    })
}

/// Layer `i` of A and layer `j` of B, read (dequantized) side by side where there are threads.
fn both_layers(
    a: &dyn WeightSource,
    i: usize,
    b: &dyn WeightSource,
    j: usize,
    n_threads: usize,
) -> Result<(AttentionLayer, AttentionLayer), FingerprintError> {
    if n_threads < 2 {
        return Ok((a.layer(i)?, b.layer(j)?));
    }
    let (la, lb) = std::thread::scope(|scope| {
        let la = scope.spawn(|| a.layer(i));
        let lb = b.layer(j);
        (la.join(), lb)
    });
    let la = la.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    Ok((la?, lb?))
}

/// Unbiased CKA of two projections with the hidden dimensions as samples.
fn columns_cka(x: Matrix, y: Matrix, n_threads: usize) -> f64 {
    let x = Prepared::new(Representation::Columns(x), n_threads);
    let y = Prepared::new(Representation::Columns(y), n_threads);
    unbiased_cka(&x, &y, n_threads)
}

/// The rows `indices` of `m`.
fn pick_rows(m: &Matrix, indices: impl Iterator<Item = usize>) -> Matrix {
    let mut data = Vec::new();
    let mut rows = 0;
    for i in indices {
        data.extend_from_slice(m.row(i));
        rows += 1;
    }
    Matrix {
        rows,
        cols: m.cols,
        data,
    }
}

/// A's layer over its aligned hidden dimensions (itself, uncopied, where it keeps all).
fn aligned_a(a: AttentionLayer, alignment: &Alignment) -> AttentionLayer {
    if alignment.is_all_of_a(a.wq.cols) {
        a
    } else {
        a.gathered(&alignment.a_dims, &vec![1.0; alignment.a_dims.len()])
    }
}

/// B's layer in A's order with B's signs undone (itself, uncopied, where that changes
/// nothing, as in the null's pairs).
fn aligned_b(b: AttentionLayer, alignment: &Alignment) -> AttentionLayer {
    if alignment.is_identity_for_b(b.wq.cols) {
        b
    } else {
        b.gathered(&alignment.b_dims, &alignment.b_signs)
    }
}

/// WqWkᵀ of a layer as a representation for CKA.
pub fn attention_form(layer: &AttentionLayer, facts: &ModelFacts) -> Representation {
    let (p, w) = attention_factors(layer, facts);
    Representation::Bilinear { p, w }
}

/// WqWkᵀ of a layer as factors P and W with PᵀW the form: the query heads that share a key
/// head summed (the same product as repeating the key heads, as grouped-query attention
/// does), and Wk. A latent attention layer carries its P already.
pub fn attention_factors(layer: &AttentionLayer, facts: &ModelFacts) -> (Matrix, Matrix) {
    if let Some(p) = &layer.form_query {
        return (p.clone(), layer.wk.clone());
    }
    let group = facts.n_head / facts.n_kv_head.max(1);
    let head_rows = facts.head_dim * layer.wq.cols;
    let mut p = Matrix::zeros(layer.wk.rows, layer.wq.cols);
    for (kv_head, out) in p.data.chunks_exact_mut(head_rows.max(1)).enumerate() {
        for q_head in kv_head * group..(kv_head + 1) * group {
            let rows = layer
                .wq
                .data
                .get(q_head * head_rows..(q_head + 1) * head_rows)
                .unwrap_or(&[]);
            for (o, &v) in out.iter_mut().zip(rows) {
                *o += v;
            }
        }
    }
    (p, layer.wk.clone())
}

/// Which layer of A meets which layer of B.
fn layer_pairs(
    a: &dyn WeightSource,
    b: &dyn WeightSource,
    alignment: &Alignment,
    layers: Option<&[usize]>,
    n_threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<(usize, usize)>, FingerprintError> {
    let (n_a, n_b) = (a.facts().n_layer, b.facts().n_layer);
    if n_a == n_b {
        return Ok(match layers {
            Some(chosen) => chosen
                .iter()
                .filter(|&&l| l < n_a)
                .map(|&l| (l, l))
                .collect(),
            None => (0..n_a).map(|l| (l, l)).collect(),
        });
    }
    // Every layer's attention form, then the similarity of every pair.
    let mut forms_a = Vec::with_capacity(n_a);
    let mut forms_b = Vec::with_capacity(n_b);
    for i in 0..n_a.max(n_b) {
        progress.stage("matching layers", i, n_a.max(n_b));
        if i < n_a {
            let la = aligned_a(a.layer(i)?, alignment);
            forms_a.push(Prepared::new(attention_form(&la, a.facts()), n_threads));
        }
        if i < n_b {
            let lb = aligned_b(b.layer(i)?, alignment);
            forms_b.push(Prepared::new(attention_form(&lb, b.facts()), n_threads));
        }
    }
    let similarity: Vec<Vec<f64>> = forms_a
        .iter()
        .map(|fa| {
            forms_b
                .iter()
                .map(|fb| unbiased_cka(fa, fb, n_threads))
                .collect()
        })
        .collect();
    Ok(monotone_matching(&similarity))
}

/// The in-order pairing of all rows (or all columns, whichever are fewer) of `similarity`
/// with the largest total.
pub fn monotone_matching(similarity: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let n_a = similarity.len();
    let n_b = similarity.first().map_or(0, Vec::len);
    let transposed = n_a > n_b;
    let (short, long) = if transposed { (n_b, n_a) } else { (n_a, n_b) };
    let s = |i: usize, j: usize| {
        if transposed {
            similarity[j][i]
        } else {
            similarity[i][j]
        }
    };
    // best[i][j]: the best total for the first i short layers within the first j long ones.
    let mut best = vec![vec![f64::NEG_INFINITY; long + 1]; short + 1];
    best[0].iter_mut().for_each(|v| *v = 0.0);
    for i in 1..=short {
        for j in i..=long {
            best[i][j] = best[i][j - 1].max(best[i - 1][j - 1] + s(i - 1, j - 1));
        }
    }
    let mut pairs = Vec::with_capacity(short);
    let (mut i, mut j) = (short, long);
    while i > 0 {
        if j > i && best[i][j] == best[i][j - 1] {
            j -= 1;
        } else {
            pairs.push((i - 1, j - 1));
            i -= 1;
            j -= 1;
        }
    }
    pairs.reverse();
    if transposed {
        pairs.iter().map(|&(i, j)| (j, i)).collect()
    } else {
        pairs
    }
}

/// Cosine of two vectors of the same length, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let d = (aa * bb).sqrt();
    if d > 0.0 {
        ab / d
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_layer_is_skipped_in_order() {
        // B is A without its layer 2: the diagonal of the matching bends around it.
        let n_a = 6;
        let kept = [0usize, 1, 3, 4, 5];
        let similarity: Vec<Vec<f64>> = (0..n_a)
            .map(|i| {
                kept.iter()
                    .map(|&k| if k == i { 0.9 } else { 0.1 })
                    .collect()
            })
            .collect();
        let pairs = monotone_matching(&similarity);
        assert_eq!(pairs, vec![(0, 0), (1, 1), (3, 2), (4, 3), (5, 4)]);
        let transposed: Vec<Vec<f64>> = (0..kept.len())
            .map(|j| (0..n_a).map(|i| similarity[i][j]).collect())
            .collect();
        let pairs_t = monotone_matching(&transposed);
        assert_eq!(pairs_t, vec![(0, 0), (1, 1), (2, 3), (3, 4), (4, 5)]);
    }
}
