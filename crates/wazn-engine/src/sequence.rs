//! One generation request and its state as the engine runs it.

use wazn_models::{Pooling, SeqId};
use wazn_text::{Detokenizer, Tokenizer};

use crate::constraint::Constraint;
use crate::embedding::Pooler;
use crate::prompt_scoring::PromptScoring;
use crate::sampler::{Sampler, SamplerParams};
use crate::stop::StopMatcher;

/// What the caller asks for.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt_ids: Vec<u32>,
    pub sampler: SamplerParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end the generation; the matched text is not returned.
    pub stop: Vec<String>,
    /// Best-k log-probabilities to report for each generated token (0 = none).
    pub top_logprobs: usize,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: bool,
    /// A grammar the output must follow (see [`crate::GrammarCompiler`]).
    pub constraint: Option<Constraint>,
    /// Log-probabilities of the prompt's own tokens (perplexity, scoring, echo).
    pub prompt_scoring: Option<PromptScoring>,
    /// Embed the prompt instead of continuing it: its final hidden states pooled this
    /// way come back as [`crate::Event::embedding`], and nothing is generated.
    pub embedding: Option<Pooling>,
}

impl Request {
    pub fn new(prompt_ids: Vec<u32>, sampler: SamplerParams, max_tokens: usize) -> Self {
        Request {
            prompt_ids,
            sampler,
            max_tokens,
            stop: Vec::new(),
            top_logprobs: 0,
            ignore_eos: false,
            constraint: None,
            prompt_scoring: None,
            embedding: None,
        }
    }

    /// A request for the embedding of `prompt_ids`, pooled as `pooling` says.
    pub fn embedding(prompt_ids: Vec<u32>, pooling: Pooling) -> Self {
        let mut request = Request::new(prompt_ids, SamplerParams::greedy(), 0);
        request.embedding = Some(pooling);
        request
    }
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` generated.
    Length,
    /// The context is full.
    ContextFull,
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContextFull => "context_full",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// A sequence in the engine: every token known so far (prompt, then generated) and
/// how many of them the model has computed.
pub(crate) struct Sequence {
    pub id: SeqId,
    pub tokens: Vec<u32>,
    pub n_prompt: usize,
    pub n_computed: usize,
    /// Whether the prefix cache was asked for this sequence's leading blocks.
    pub prefix_checked: bool,
    /// Ended because the cache could not hold it; its final event is still owed.
    pub stuck: bool,
    pub sampler: Sampler,
    pub max_tokens: usize,
    pub top_logprobs: usize,
    pub ignore_eos: bool,
    pub detokenizer: Detokenizer,
    pub stop: StopMatcher,
    pub constraint: Option<Constraint>,
    pub finished: Option<FinishReason>,
    /// The raw logits of the last step, kept while the sampler reshapes its row, when
    /// log-probabilities are asked for (reused from step to step).
    pub raw_logits: Vec<f32>,
    pub prompt_scoring: Option<PromptScoring>,
    /// The next prompt position whose score is still owed (past the prompt: none).
    pub next_scored_pos: usize,
    /// An embedding request's vector, gathered as its rows are computed.
    pub pooler: Option<Pooler>,
}

impl Sequence {
    pub fn new(id: SeqId, request: Request, sampler: Sampler) -> Self {
        let pooler = request
            .embedding
            .map(|pooling| Pooler::new(pooling, request.prompt_ids.len()));
        Sequence {
            id,
            n_prompt: request.prompt_ids.len(),
            tokens: request.prompt_ids,
            n_computed: 0,
            prefix_checked: false,
            stuck: false,
            sampler,
            max_tokens: request.max_tokens,
            top_logprobs: request.top_logprobs,
            ignore_eos: request.ignore_eos,
            detokenizer: Detokenizer::new(false),
            stop: StopMatcher::new(request.stop),
            constraint: request.constraint,
            finished: None,
            raw_logits: Vec::new(),
            next_scored_pos: request
                .prompt_scoring
                .as_ref()
                .map_or(usize::MAX, PromptScoring::first_position),
            prompt_scoring: request.prompt_scoring,
            pooler,
        }
    }

    /// The first prompt row whose logits are still owed as scores, if any.
    pub fn first_scoring_row(&self) -> Option<usize> {
        (self.next_scored_pos < self.n_prompt).then(|| self.next_scored_pos - 1)
    }

    /// The first prompt row that must be computed rather than taken from the prefix
    /// cache: one whose logits are owed as a score or whose hidden state is pooled.
    pub fn first_owed_row(&self) -> Option<usize> {
        let pooled = self.pooler.as_ref().map(Pooler::first_row);
        match (self.first_scoring_row(), pooled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn n_generated(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }

    /// Tokens known but not yet run through the model.
    pub fn n_pending(&self) -> usize {
        self.tokens.len() - self.n_computed
    }

    /// The text of a newly sampled token, held back where it might be the start of a
    /// stop string or half a UTF-8 character.
    pub fn push_text(&mut self, tokenizer: &Tokenizer, token: u32) -> (String, bool) {
        let piece = self.detokenizer.push(tokenizer, token);
        let out = self.stop.push(&piece);
        (out.emit, out.stopped)
    }

    /// Ends the sequence for `reason` with no new token: the event carries whatever text
    /// was held back.
    pub fn end_without_token(&mut self, reason: FinishReason) -> crate::engine::Event {
        self.finished = Some(reason);
        crate::engine::Event {
            seq_id: self.id,
            token: None,
            text: self.flush_text(),
            top_logprobs: Vec::new(),
            logprob: None,
            finished: Some(reason),
            stop_string: None,
            prompt_scores: Vec::new(),
            embedding: None,
        }
    }

    /// Ends an embedding request with its vector.
    pub fn end_with_embedding(&mut self, vector: Vec<f32>) -> crate::engine::Event {
        let mut event = self.end_without_token(FinishReason::Stop);
        event.embedding = Some(vector);
        event
    }

    /// Whatever text was held back, once the sequence has ended without a stop string.
    pub fn flush_text(&mut self) -> String {
        let rest = std::mem::replace(&mut self.detokenizer, Detokenizer::new(false)).finish();
        let mut out = self.stop.push(&rest).emit;
        out.push_str(&self.stop.finish());
        out
    }
}
