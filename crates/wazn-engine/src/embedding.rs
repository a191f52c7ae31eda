//! Embedding requests: a prompt whose final hidden states are pooled into one vector
//! instead of being continued. Such a sequence is scheduled and batched as any other
//! (chunked when its prompt is long); its rows ask the model for their hidden states
//! rather than logits, the pooler gathers the ones it pools as they are computed, and
//! the sequence ends with the vector once its last prompt row is in.
//!
//! The rows pooled are always computed, never taken from the prefix cache: the cache
//! serves only the positions before the first of them (none for mean and first-token
//! pooling), so a vector never depends on what ran before it. An embedding's own full
//! blocks are named in the prefix cache as any prompt's are (their keys and values are
//! those any request with the same tokens computes), and its blocks are given back as
//! soon as its vector is out.

use wazn_models::{BatchRow, Pooling};

use crate::engine::Event;
use crate::error::EngineError;
use crate::sequence::Sequence;

/// Takes in the hidden states of `seq`'s rows of this step (`rows`) that it pools, the next
/// ones of `hidden` (in batch order); once its whole prompt is computed, ends it with its
/// vector. Nothing for a sequence that does not embed.
pub(crate) fn pool_rows<'a>(
    seq: &mut Sequence,
    rows: &[BatchRow],
    hidden: &mut impl Iterator<Item = &'a [f32]>,
) -> Result<Option<Event>, EngineError> {
    let Some(pooler) = &mut seq.pooler else {
        return Ok(None);
    };
    for _ in rows.iter().filter(|r| r.wants_hidden) {
        let row = hidden.next().ok_or_else(|| {
            EngineError::StepFailed(
                "the model returned fewer hidden states than the batch asked for".into(),
            )
        })?;
        pooler.add(row);
    }
    if seq.n_computed < seq.n_prompt {
        return Ok(None);
    }
    let vector = pooler.vector().ok_or_else(|| {
        EngineError::StepFailed(
            "an embedding's prompt was computed without all the rows it pools".into(),
        )
    })?;
    Ok(Some(seq.end_with_embedding(vector)))
}

/// The pooled vector of one sequence, gathered as its rows are computed.
#[derive(Clone, Debug)]
pub(crate) struct Pooler {
    pooling: Pooling,
    n_prompt: usize,
    /// Mean: the sum of the rows so far (in f64, so long prompts lose nothing to
    /// rounding); first and last token: that row.
    sum: Vec<f64>,
    n_rows: usize,
}

impl Pooler {
    pub fn new(pooling: Pooling, n_prompt: usize) -> Self {
        Pooler {
            pooling,
            n_prompt,
            sum: Vec::new(),
            n_rows: 0,
        }
    }

    /// Whether the prompt row at `pos` is pooled.
    pub fn wants(&self, pos: usize) -> bool {
        match self.pooling {
            Pooling::Mean => pos < self.n_prompt,
            Pooling::Cls => pos == 0,
            Pooling::Last => pos + 1 == self.n_prompt,
        }
    }

    /// The first row pooled: the prefix cache may serve only the positions before it.
    pub fn first_row(&self) -> usize {
        match self.pooling {
            Pooling::Mean | Pooling::Cls => 0,
            Pooling::Last => self.n_prompt.saturating_sub(1),
        }
    }

    /// Takes in the final hidden state of a pooled row.
    pub fn add(&mut self, hidden: &[f32]) {
        if self.sum.len() != hidden.len() || self.pooling != Pooling::Mean {
            self.sum.clear();
            self.sum.resize(hidden.len(), 0.0);
            self.n_rows = 0;
        }
        for (s, &h) in self.sum.iter_mut().zip(hidden) {
            *s += f64::from(h);
        }
        self.n_rows += 1;
    }

    /// Forgets the rows taken in: the sequence computes its prompt again.
    pub fn restart(&mut self) {
        self.sum.clear();
        self.n_rows = 0;
    }

    /// The pooled vector, once every row it pools is in; `None` before.
    pub fn vector(&self) -> Option<Vec<f32>> {
        let expected = match self.pooling {
            Pooling::Mean => self.n_prompt,
            Pooling::Cls | Pooling::Last => 1,
        };
        if self.n_rows != expected || self.sum.is_empty() {
            return None;
        }
        let n = self.n_rows as f64;
        Some(self.sum.iter().map(|&s| (s / n) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_averages_every_prompt_row_and_restarts_clean() {
        let mut pooler = Pooler::new(Pooling::Mean, 3);
        assert!((0..3).all(|pos| pooler.wants(pos)));
        assert_eq!(pooler.first_row(), 0);
        pooler.add(&[1.0, 2.0]);
        pooler.add(&[3.0, 4.0]);
        assert_eq!(pooler.vector(), None, "a row is still missing");
        pooler.restart();
        for row in [[1.0, 0.0], [2.0, 3.0], [6.0, 3.0]] {
            pooler.add(&row);
        }
        assert_eq!(pooler.vector(), Some(vec![3.0, 2.0]));
    }

    #[test]
    fn first_and_last_token_pooling_take_one_row() {
        let last = Pooler::new(Pooling::Last, 5);
        assert_eq!((0..5).filter(|&p| last.wants(p)).collect::<Vec<_>>(), [4]);
        assert_eq!(last.first_row(), 4);
        let mut cls = Pooler::new(Pooling::Cls, 5);
        assert_eq!((0..5).filter(|&p| cls.wants(p)).collect::<Vec<_>>(), [0]);
        cls.add(&[0.5, -1.0]);
        // The row computed again after a preemption replaces the first, not adds to it.
        cls.add(&[0.5, -1.0]);
        assert_eq!(cls.vector(), Some(vec![0.5, -1.0]));
    }
}
