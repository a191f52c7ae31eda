//! Log-probabilities of a prompt's own tokens: what perplexity, KL divergence, multiple-
//! choice scoring and OpenAI's `echo` with `logprobs` all read.
//!
//! A request that asks for them has its prompt rows from `from - 1` on return logits
//! (the row at position p predicts the token at p + 1), and every such row becomes a
//! [`PromptTokenScore`] in the step that computed it. Scores are handed over once: a
//! sequence computed again after preemption does not repeat them, and the prefix cache
//! serves only the positions before the first row that must be computed.

use std::sync::Mutex;

use wazn_kernels::ThreadPool;
use wazn_models::SeqId;

use crate::engine::Event;
use crate::sampler::top_logprobs;

/// Which prompt tokens to score, and what to hand over for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptScoring {
    /// The first prompt position whose token is scored; 0 is read as 1 (the first token
    /// has no context to be predicted from).
    pub from: usize,
    /// Best-k `(id, logprob)` alternatives for each scored token (0 = none).
    pub top_logprobs: usize,
    /// Hand over the raw logits [n_vocab] of the row that predicted each scored token
    /// (for statistics over the whole distribution: KL divergence).
    pub raw_logits: bool,
}

impl PromptScoring {
    /// Every prompt token from the second on, with its log-probability only.
    pub fn all() -> Self {
        PromptScoring {
            from: 1,
            top_logprobs: 0,
            raw_logits: false,
        }
    }

    /// The first position scored.
    pub(crate) fn first_position(&self) -> usize {
        self.from.max(1)
    }
}

/// One prompt token as the model predicted it from the tokens before it.
#[derive(Clone, Debug)]
pub struct PromptTokenScore {
    /// Its position in the prompt.
    pub pos: usize,
    pub token: u32,
    /// `log p(token | prompt[..pos])`.
    pub logprob: f32,
    /// Whether it is the most likely token there (ties count), as lm-evaluation-harness's
    /// `is_greedy` asks.
    pub is_greedy: bool,
    /// Best-k `(id, logprob)` there, best first, when asked for.
    pub top_logprobs: Vec<(u32, f32)>,
    /// The raw logits there, when asked for.
    pub logits: Option<Vec<f32>>,
}

/// A computed row that predicts a prompt token.
pub(crate) struct ScoringRow<'a> {
    pub seq_id: SeqId,
    /// Position of the token it predicts.
    pub pos: usize,
    pub token: u32,
    pub top_logprobs: usize,
    pub raw_logits: bool,
    pub logits: &'a [f32],
}

/// Scores every row (in parallel over the pool) and groups the scores of one sequence,
/// in row order, into one event.
pub(crate) fn score_rows(rows: Vec<ScoringRow<'_>>, pool: &ThreadPool) -> Vec<Event> {
    let scores: Vec<Mutex<Option<PromptTokenScore>>> =
        rows.iter().map(|_| Mutex::new(None)).collect();
    pool.run(rows.len(), &|i| {
        let score = score_row(&rows[i]);
        if let Ok(mut slot) = scores[i].lock() {
            *slot = Some(score);
        }
    });
    let mut events: Vec<Event> = Vec::new();
    for (row, slot) in rows.iter().zip(scores) {
        let score = match slot.into_inner() {
            Ok(Some(score)) => score,
            // Only a panicking task leaves a slot empty, and the pool re-raises that.
            _ => score_row(row),
        };
        match events.last_mut() {
            Some(event) if event.seq_id == row.seq_id => event.prompt_scores.push(score),
            _ => events.push(Event {
                seq_id: row.seq_id,
                token: None,
                text: String::new(),
                top_logprobs: Vec::new(),
                logprob: None,
                finished: None,
                stop_string: None,
                prompt_scores: vec![score],
                embedding: None,
            }),
        }
    }
    events
}

fn score_row(row: &ScoringRow<'_>) -> PromptTokenScore {
    let logits = row.logits;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let own = logits
        .get(row.token as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let log_norm = if max.is_finite() {
        // f32 exponentials summed in f64: as precise as the logits, and cheap.
        let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
        f64::from(max) + sum.ln()
    } else {
        f64::from(max)
    };
    let top = top_logprobs(logits, row.top_logprobs);
    // The same number as in the alternatives when the token is among them.
    let logprob = top
        .iter()
        .find(|&&(id, _)| id == row.token)
        .map_or((f64::from(own) - log_norm) as f32, |&(_, lp)| lp);
    PromptTokenScore {
        pos: row.pos,
        token: row.token,
        logprob,
        is_greedy: own >= max,
        top_logprobs: top,
        logits: row.raw_logits.then(|| logits.to_vec()),
    }
}
