//! Independently initialised models of a given shape, made here from a seed: the null
//! distribution's "unrelated models". Values are about N(0, 0.02²), as Hugging Face initialises
//! Llama's linear layers and embeddings (the scale does not matter: every statistic here is
//! invariant to it). A layer is generated when asked for, from (seed, layer, matrix), so a
//! random model costs no memory and the same seed always gives the same weights.

use crate::error::FingerprintError;
use crate::matrix::{multiply, Matrix};
use crate::sketch::{mix, TokenSketch};
use crate::source::{AttentionLayer, ModelFacts, WeightSource};

const INIT_STD: f32 = 0.02;
/// Latent layers' form factors draw from streams of their own, so Wq's and Wk's streams (two
/// per layer) stay those of every other architecture.
const FORM_STREAMS: u64 = 1 << 62;

/// A random model with the shapes, and the sketched tokens, of another.
pub struct RandomModel {
    facts: ModelFacts,
    token_hashes: Vec<u64>,
    seed: u64,
}

impl RandomModel {
    /// A model shaped like `facts`, over the tokens `token_hashes`, from `seed`.
    pub fn new(facts: &ModelFacts, token_hashes: Vec<u64>, seed: u64) -> RandomModel {
        let facts = ModelFacts {
            origin: format!("random, seed {seed}"),
            declared: Vec::new(),
            ..facts.clone()
        };
        RandomModel {
            facts,
            token_hashes,
            seed,
        }
    }

    fn matrix(&self, rows: usize, cols: usize, stream: u64) -> Matrix {
        let mut generator = Normal::new(mix(self.seed ^ mix(stream)));
        let mut m = Matrix::zeros(rows, cols);
        for v in &mut m.data {
            *v = generator.next() * INIT_STD;
        }
        m
    }
}

impl WeightSource for RandomModel {
    fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    fn sketch(&self) -> Result<TokenSketch, FingerprintError> {
        Ok(TokenSketch {
            hashes: self.token_hashes.clone(),
            rows: self.matrix(self.token_hashes.len(), self.facts.n_embd, u64::MAX),
        })
    }

    fn layer(&self, index: usize) -> Result<AttentionLayer, FingerprintError> {
        let stream = 2 * index as u64;
        let wq = self.matrix(self.facts.q_rows(), self.facts.n_embd, stream);
        // A latent layer's form factor is a mix of its query projection's rows, as in a real
        // one (so the form has the same low rank), with weights of unit scale.
        let form_query = self.facts.form_rows().map(|rows| {
            let mut weights = self.matrix(rows, wq.rows, FORM_STREAMS + index as u64);
            weights.data.iter_mut().for_each(|v| *v /= INIT_STD);
            multiply(&weights, &wq, 1)
        });
        Ok(AttentionLayer {
            wk: self.matrix(self.facts.k_rows(), self.facts.n_embd, stream + 1),
            wq,
            form_query,
        })
    }
}

/// Standard normal values, near enough: the sum of four 16-bit uniforms from one splitmix64
/// draw, centred and scaled to unit variance (Irwin–Hall). The null's statistics depend on the
/// weights' second moments and independence, not on the tails, and this is several times
/// cheaper than Box–Muller's logarithm and sines (an 8B-shaped layer is 21 million values).
struct Normal {
    state: u64,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal { state: seed }
    }

    fn next(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let bits = mix(self.state);
        let sum =
            (bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48);
        // Four uniforms on [0, 65535]: mean 131070, variance 4 · (65536² − 1) / 12.
        const MEAN: f32 = 131_070.0;
        const INV_SD: f32 = 1.0 / 37_837.23;
        (sum as f32 - MEAN) * INV_SD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_standard_normal_and_seeded() {
        let mut g = Normal::new(1);
        let values: Vec<f64> = (0..100_000).map(|_| f64::from(g.next())).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let mut again = Normal::new(1);
        assert_eq!(f64::from(again.next()), values[0]);
    }
}
