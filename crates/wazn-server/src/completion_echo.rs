//! A text completion's prompts as its answer shows them with `echo`: each prompt's text
//! goes in front of its choices' text and, with `logprobs`, its tokens' scores in front of
//! theirs. The scores are computed once per prompt, by its first choice (the engine's
//! prompt scoring, in the same pass that computes the prompt for generation); the other
//! choices of the prompt show the same ones.

use wazn_engine::{PromptScoring, PromptTokenScore};

use crate::completion_prompt::Prompt;
use crate::completions_logprobs::Row;

/// One prompt of an answer.
pub struct EchoedPrompt {
    pub prompt: Prompt,
    /// The scores of its tokens from the second on, in prompt order.
    scores: Vec<PromptTokenScore>,
    /// Scores are still to come from the prompt's first choice.
    pub waiting: bool,
}

impl EchoedPrompt {
    /// `scored`: the prompt's first choice scores it.
    pub fn new(prompt: Prompt, scored: bool) -> EchoedPrompt {
        EchoedPrompt {
            waiting: scored && prompt.ids.len() > 1,
            prompt,
            scores: Vec::new(),
        }
    }

    /// Takes scores the first choice handed over.
    pub fn add(&mut self, scores: &[PromptTokenScore]) {
        self.scores.extend_from_slice(scores);
        if self.scores.len() + 1 >= self.prompt.ids.len() {
            self.waiting = false;
        }
    }

    /// The first choice ended: no more scores come, whether or not all did.
    pub fn close(&mut self) {
        self.waiting = false;
    }

    /// Each prompt token with its score (none for the first).
    pub fn rows(&self) -> Vec<Row<'_>> {
        self.prompt
            .ids
            .iter()
            .enumerate()
            .map(|(pos, &token)| {
                let score = pos
                    .checked_sub(1)
                    .and_then(|i| self.scores.get(i))
                    .filter(|s| s.pos == pos)
                    .or_else(|| self.scores.iter().find(|s| s.pos == pos));
                Row {
                    token,
                    logprob: score.map(|s| s.logprob),
                    top: score.map(|s| s.top_logprobs.as_slice()).unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// What the first choice of a prompt asks the engine for: every prompt token from the
/// second on, with `top_logprobs` alternatives each.
pub fn scoring(top_logprobs: usize) -> PromptScoring {
    PromptScoring {
        from: 1,
        top_logprobs,
        raw_logits: false,
    }
}
