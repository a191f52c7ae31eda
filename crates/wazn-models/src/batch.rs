//! The unit of work of a forward pass: rows of (sequence, position, token) from any
//! number of sequences, in one step.

/// Identifies a sequence in the KV cache.
pub type SeqId = u32;

/// One token of one sequence to run through the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRow {
    pub seq_id: SeqId,
    /// Position of the token in its sequence; rows of one sequence come in order and
    /// continue where its cache ends.
    pub pos: usize,
    pub token: u32,
    /// Whether the caller needs this row's logits (the last row of a prompt chunk, a
    /// decode step); other rows only fill the cache.
    pub wants_logits: bool,
    /// Whether the caller needs this row's final hidden state (the rows an embedding
    /// pools); see [`crate::Model::forward_outputs`].
    pub wants_hidden: bool,
}

/// The rows of one forward pass.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub rows: Vec<BatchRow>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The rows for `tokens` of sequence `seq_id` starting at position `start`,
    /// asking for the logits of the last one only.
    pub fn for_sequence(seq_id: SeqId, start: usize, tokens: &[u32]) -> Self {
        let mut batch = Batch::new();
        batch.push_tokens(seq_id, start, tokens, false);
        if let Some(last) = batch.rows.last_mut() {
            last.wants_logits = true;
        }
        batch
    }

    /// Appends rows for `tokens` at consecutive positions from `start`.
    pub fn push_tokens(&mut self, seq_id: SeqId, start: usize, tokens: &[u32], wants_logits: bool) {
        self.rows
            .extend(tokens.iter().enumerate().map(|(i, &token)| BatchRow {
                seq_id,
                pos: start + i,
                token,
                wants_logits,
                wants_hidden: false,
            }));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn n_logit_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.wants_logits).count()
    }

    pub fn n_hidden_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.wants_hidden).count()
    }
}

/// Logits of the rows of a batch that asked for them: `[n_rows, n_vocab]`.
#[derive(Clone, Debug)]
pub struct Logits {
    pub n_vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.n_vocab.max(1)
    }

    /// Logits of the `i`-th row that asked for them, in batch order.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_vocab..(i + 1) * self.n_vocab]
    }
}

/// Final hidden states of the rows of a batch that asked for them: `[n_rows, n_embd]`,
/// after the model's final norm and before its output projection (what transformers
/// calls `last_hidden_state`, and sentence embeddings pool).
#[derive(Clone, Debug, Default)]
pub struct HiddenStates {
    pub n_embd: usize,
    pub data: Vec<f32>,
}

impl HiddenStates {
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.n_embd.max(1)
    }

    /// The hidden state of the `i`-th row that asked for one, in batch order.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_embd..(i + 1) * self.n_embd]
    }
}

/// Everything a forward pass hands back.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub logits: Logits,
    pub hidden: HiddenStates,
}
