//! Independently initialised models of a given shape, made here from a seed: the null
//! distribution's "unrelated models". Values are N(0, 0.02²), as Hugging Face initialises
//! Llama's linear layers and embeddings (the scale does not matter: every statistic here is
//! invariant to it). A layer is generated when asked for, from (seed, layer, matrix), so a
//! random model costs no memory and the same seed always gives the same weights.

use crate::error::FingerprintError;
use crate::matrix::Matrix;
use crate::sketch::{mix, TokenSketch};
use crate::source::{AttentionLayer, ModelFacts, WeightSource};

const INIT_STD: f32 = 0.02;

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
        let data = (0..rows * cols)
            .map(|_| generator.next() * INIT_STD)
            .collect();
        Matrix { rows, cols, data }
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
        Ok(AttentionLayer {
            wq: self.matrix(self.facts.q_rows(), self.facts.n_embd, stream),
            wk: self.matrix(self.facts.k_rows(), self.facts.n_embd, stream + 1),
        })
    }
}

/// Standard normal values: splitmix64 for uniform bits, Box–Muller for the shape.
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal {
            state: seed,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        // 53 random bits in (0, 1].
        ((mix(self.state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let radius = (-2.0 * u.ln()).sqrt();
        let angle = std::f64::consts::TAU * v;
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
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
        assert_eq!(again.next() as f64, values[0]);
    }
}
