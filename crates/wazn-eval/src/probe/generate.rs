//! The model's answers to a suite: every prompt as a user's message in the model's chat
//! format, all submitted to the engine, which batches them (a window of them in flight
//! at once, so that the cache stays small), each sampled `samples` times.
//!
//! Only the answer is judged. A harmony model's (gpt-oss) `analysis` channel is its
//! reasoning, not something it says to the user: it is kept apart, and the `final`
//! channel is the answer. A template model that reasons between `<think>` tags is split
//! the same way.

use std::collections::VecDeque;

use wazn_engine::{Engine, FinishReason, Request, SamplerParams};
use wazn_text::harmony::{ReasoningEffort, ReplyAssembler, ReplyDelta};
use wazn_text::think::{prompt_opens_thinking, ThinkPiece, ThinkSplitter};
use wazn_text::{tokenize_rendered, ChatFormat, ChatMessage};

use super::ProbeItem;
use crate::EvalError;

pub struct GenerateOptions {
    /// Most tokens of one answer.
    pub max_tokens: usize,
    /// Answers per prompt.
    pub samples: usize,
    /// The sampler of every answer; answer `k` of prompt `i` gets the seed
    /// `seed + i * samples + k`, so that it does not depend on how the engine batched it.
    pub sampler: SamplerParams,
    /// Answers being generated at once.
    pub max_in_flight: usize,
    /// How long a harmony model reasons.
    pub effort: ReasoningEffort,
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Index of its prompt in the suite.
    pub item: usize,
    /// Which of the prompt's samples.
    pub sample: usize,
    /// What the model said to the user: what is judged.
    pub content: String,
    /// Reasoning kept apart (harmony `analysis`, `<think>` blocks).
    pub reasoning: String,
    pub finish: FinishReason,
    pub n_tokens: usize,
}

/// How a chat's answer is taken apart as it streams.
enum Reader {
    // Boxed: an assembler is much larger than a splitter.
    Harmony(Box<ReplyAssembler>),
    Template(ThinkSplitter),
}

struct Pending {
    item: usize,
    sample: usize,
    prompt_ids: Vec<u32>,
    opens_thinking: bool,
}

struct Running {
    seq_id: u32,
    item: usize,
    sample: usize,
    reader: Reader,
    content: String,
    reasoning: String,
    n_tokens: usize,
}

impl Running {
    fn take(&mut self, pieces: Vec<ThinkPiece>) {
        for piece in pieces {
            match piece {
                ThinkPiece::Reasoning(t) => self.reasoning.push_str(&t),
                ThinkPiece::Content(t) => self.content.push_str(&t),
            }
        }
    }
}

/// The token ids of `prompt` as the user's message, and whether the rendered prompt
/// leaves a `<think>` block open for the model.
pub fn chat_prompt(
    engine: &Engine,
    prompt: &str,
    effort: ReasoningEffort,
) -> Result<(Vec<u32>, bool), EvalError> {
    let format = engine.chat_format().ok_or_else(|| {
        EvalError::Invalid(
            "this model has no chat template (tokenizer.chat_template): a probe asks its \
             prompts as a user's messages"
                .into(),
        )
    })?;
    let messages = [ChatMessage::new("user", prompt)];
    let text_error = |e: wazn_text::TextError| EvalError::Invalid(e.to_string());
    match format {
        ChatFormat::Template(template) => {
            let text = template.render(&messages, true).map_err(text_error)?;
            let ids = tokenize_rendered(engine.tokenizer(), &text).map_err(text_error)?;
            Ok((ids, prompt_opens_thinking(&text)))
        }
        ChatFormat::Harmony => {
            let ids = format
                .render_chat(engine.tokenizer(), &messages, effort)
                .map_err(text_error)?;
            Ok((ids, false))
        }
    }
}

/// Generates every answer; `on_answer` is called with the count done as each ends.
/// Answers come back in suite order, then sample order.
pub fn generate(
    engine: &mut Engine,
    items: &[ProbeItem],
    options: &GenerateOptions,
    on_answer: &mut dyn FnMut(usize),
) -> Result<Vec<Answer>, EvalError> {
    let harmony = engine.chat_format().is_some_and(ChatFormat::is_harmony);
    let n_ctx = engine.options().n_ctx;
    let samples = options.samples.max(1);
    let mut queue = VecDeque::new();
    for (index, item) in items.iter().enumerate() {
        let (prompt_ids, opens_thinking) = chat_prompt(engine, &item.prompt, options.effort)?;
        if prompt_ids.len() >= n_ctx {
            return Err(EvalError::Invalid(format!(
                "prompt {}: {} tokens in the chat format, more than the context of {n_ctx} \
                 (raise -c)",
                item.id,
                prompt_ids.len()
            )));
        }
        for sample in 0..samples {
            queue.push_back(Pending {
                item: index,
                sample,
                prompt_ids: prompt_ids.clone(),
                opens_thinking,
            });
        }
    }

    let mut running: Vec<Running> = Vec::new();
    let mut answers = Vec::with_capacity(queue.len());
    loop {
        while running.len() < options.max_in_flight.max(1) {
            let Some(next) = queue.pop_front() else { break };
            let mut sampler = options.sampler.clone();
            sampler.seed = sampler
                .seed
                .wrapping_add((next.item * samples + next.sample) as u64);
            let request = Request::new(next.prompt_ids, sampler, options.max_tokens);
            let seq_id = engine
                .add_request(request)
                .map_err(|e| EvalError::Invalid(format!("prompt {}: {e}", items[next.item].id)))?;
            running.push(Running {
                seq_id,
                item: next.item,
                sample: next.sample,
                reader: if harmony {
                    Reader::Harmony(Box::new(ReplyAssembler::new()))
                } else {
                    Reader::Template(ThinkSplitter::new(next.opens_thinking))
                },
                content: String::new(),
                reasoning: String::new(),
                n_tokens: 0,
            });
        }
        if running.is_empty() {
            break;
        }
        for event in engine.step()? {
            let Some(at) = running.iter().position(|r| r.seq_id == event.seq_id) else {
                continue;
            };
            let run = &mut running[at];
            if event.token.is_some() {
                run.n_tokens += 1;
            }
            let deltas = match &mut run.reader {
                Reader::Harmony(assembler) => {
                    let mut deltas = Vec::new();
                    if let Some(token) = event.token {
                        deltas.extend(assembler.push(engine.tokenizer(), token));
                    }
                    if event.finished.is_some() {
                        deltas.extend(assembler.finish());
                    }
                    deltas
                }
                Reader::Template(splitter) => {
                    let mut pieces = splitter.push(&event.text);
                    if event.finished.is_some() {
                        pieces.extend(splitter.finish());
                    }
                    run.take(pieces);
                    Vec::new()
                }
            };
            for delta in deltas {
                match delta {
                    ReplyDelta::Reasoning(t) => run.reasoning.push_str(&t),
                    ReplyDelta::Content(t) => run.content.push_str(&t),
                    // A tool call is neither an answer nor a refusal; the probe offers no
                    // tools, so a call is a harmony message addressed nowhere useful.
                    ReplyDelta::ToolCallStart { .. } | ReplyDelta::ToolCallArguments { .. } => {}
                }
            }
            if let Some(finish) = event.finished {
                let run = running.swap_remove(at);
                answers.push(Answer {
                    item: run.item,
                    sample: run.sample,
                    content: run.content,
                    reasoning: run.reasoning,
                    finish,
                    n_tokens: run.n_tokens,
                });
                on_answer(answers.len());
            }
        }
    }
    answers.sort_by_key(|a| (a.item, a.sample));
    Ok(answers)
}
