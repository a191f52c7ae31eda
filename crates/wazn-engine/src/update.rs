//! The update half of a step: every sequence that got logits picks its next token,
//! its log-probabilities and its text, and learns whether it ends there.
//!
//! Sequences are independent of each other (each has its own sampler and random
//! stream), so with several of them the work is spread over the engine's thread pool,
//! whose threads are idle between forward passes. The order in which they run does not
//! change any sequence's result, and events come back in the order of the sequences.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use wazn_kernels::ThreadPool;
use wazn_text::Tokenizer;

use crate::constraint::Verdict;
use crate::engine::Event;
use crate::sampler::top_logprobs;
use crate::sequence::{FinishReason, Sequence};

/// Time one sequence's update took, by part.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UpdateTimes {
    pub sample: Duration,
    pub logprobs: Duration,
    pub text: Duration,
    pub mask: Duration,
}

impl UpdateTimes {
    fn add(&mut self, other: &UpdateTimes) {
        self.sample += other.sample;
        self.logprobs += other.logprobs;
        self.text += other.text;
        self.mask += other.mask;
    }
}

/// One sequence to update and its row of logits [n_vocab] (used as scratch).
pub(crate) struct Job<'a> {
    pub seq: &'a mut Sequence,
    pub logits: &'a mut [f32],
}

/// A job and, once it has run, its event and times.
type Cell<'a> = (Job<'a>, Option<(Vec<Event>, UpdateTimes)>);

/// Updates every job's sequence from its logits; returns the events in job order and
/// the time of each part, summed over the jobs.
pub(crate) fn update_all(
    jobs: Vec<Job<'_>>,
    tokenizer: &Tokenizer,
    n_ctx: usize,
    pool: &ThreadPool,
) -> (Vec<Event>, UpdateTimes) {
    let mut times = UpdateTimes::default();
    if jobs.len() < 2 || pool.n_threads() < 2 {
        let events = jobs
            .into_iter()
            .flat_map(|job| {
                let (events, t) = update_sequence(job.seq, tokenizer, job.logits, n_ctx);
                times.add(&t);
                events
            })
            .collect();
        return (events, times);
    }
    // Each task locks only its own cell, so the locks are never contended; they only
    // hand each task its sequence mutably.
    let cells: Vec<Mutex<Cell<'_>>> = jobs
        .into_iter()
        .map(|job| Mutex::new((job, None)))
        .collect();
    pool.run(cells.len(), &|i| {
        let mut cell = cells[i].lock().unwrap_or_else(PoisonError::into_inner);
        let (job, out) = &mut *cell;
        *out = Some(update_sequence(job.seq, tokenizer, job.logits, n_ctx));
    });
    let events = cells
        .into_iter()
        .filter_map(|cell| cell.into_inner().unwrap_or_else(PoisonError::into_inner).1)
        .flat_map(|(events, t)| {
            times.add(&t);
            events
        })
        .collect();
    (events, times)
}

/// Samples the next token of `seq` from `logits` and decides whether it ends there. A
/// constrained sequence samples among the tokens its grammar allows, then takes the tokens
/// the grammar forces after it (when no log-probabilities are asked for: a forced token has
/// no distribution of its own); each token gets its own event.
fn update_sequence(
    seq: &mut Sequence,
    tokenizer: &Tokenizer,
    logits: &mut [f32],
    n_ctx: usize,
) -> (Vec<Event>, UpdateTimes) {
    let mut times = UpdateTimes::default();
    if seq.max_tokens == 0 {
        // Only the prompt was asked for (its scores): nothing to sample.
        return (vec![seq.end_without_token(FinishReason::Length)], times);
    }
    let started = Instant::now();
    let (top, log_norm) = if seq.top_logprobs > 0 {
        // The sampler reshapes the logits in place; keep the raw logit of every token
        // for the log-probability of the one it picks.
        seq.raw_logits.clear();
        seq.raw_logits.extend_from_slice(logits);
        (
            top_logprobs(logits, seq.top_logprobs),
            Some(log_sum_exp(logits)),
        )
    } else {
        (Vec::new(), None)
    };
    let after_logprobs = Instant::now();
    times.logprobs += after_logprobs - started;

    let grammar_alive = seq.constraint.as_mut().is_none_or(|c| c.mask(logits));
    let after_mask = Instant::now();
    times.mask += after_mask - after_logprobs;
    if !grammar_alive {
        // The grammar allows nothing: end here rather than write what it forbids.
        return (vec![seq.end_without_token(FinishReason::Stop)], times);
    }

    let token = seq.sampler.sample(logits, &seq.tokens);
    let after_sample = Instant::now();
    times.sample += after_sample - after_mask;

    // The same number as in the alternatives when the token is among them.
    let logprob = log_norm.and_then(|norm| {
        top.iter()
            .find(|&&(id, _)| id == token)
            .map(|&(_, lp)| lp)
            .or_else(|| seq.raw_logits.get(token as usize).map(|&l| l - norm))
    });
    let after_logprob = Instant::now();
    times.logprobs += after_logprob - after_sample;

    let verdict = seq
        .constraint
        .as_mut()
        .map_or(Verdict::Continue, |c| c.accept(token));
    let mut events = vec![push_token(
        seq, tokenizer, token, n_ctx, verdict, top, logprob,
    )];
    let after_token = Instant::now();
    times.text += after_token - after_logprob;

    let budget = seq
        .max_tokens
        .saturating_sub(seq.n_generated())
        .min(n_ctx.saturating_sub(seq.tokens.len()));
    let constraint = seq.constraint.as_mut();
    if let Some(constraint) = constraint.filter(|_| seq.finished.is_none() && seq.top_logprobs == 0)
    {
        let forced = constraint.take_forced(budget);
        let complete = constraint.is_complete();
        times.mask += after_token.elapsed();
        let n_forced = forced.len();
        for (i, token) in forced.into_iter().enumerate() {
            let verdict = if complete && i + 1 == n_forced {
                Verdict::Complete
            } else {
                Verdict::Continue
            };
            events.push(push_token(
                seq,
                tokenizer,
                token,
                n_ctx,
                verdict,
                Vec::new(),
                None,
            ));
            if seq.finished.is_some() {
                break;
            }
        }
    }
    (events, times)
}

/// Appends `token` to `seq`, with its text, and decides whether the sequence ends there;
/// `verdict` is the grammar's word on it.
fn push_token(
    seq: &mut Sequence,
    tokenizer: &Tokenizer,
    token: u32,
    n_ctx: usize,
    verdict: Verdict,
    top_logprobs: Vec<(u32, f32)>,
    logprob: Option<f32>,
) -> Event {
    seq.tokens.push(token);
    let is_eog = !seq.ignore_eos && tokenizer.eog_ids().contains(&token);
    let (mut text, stopped) = if is_eog {
        (String::new(), false)
    } else {
        seq.push_text(tokenizer, token)
    };
    let finished = if is_eog || stopped || verdict != Verdict::Continue {
        Some(FinishReason::Stop)
    } else if seq.n_generated() >= seq.max_tokens {
        Some(FinishReason::Length)
    } else if seq.tokens.len() >= n_ctx {
        Some(FinishReason::ContextFull)
    } else {
        None
    };
    if finished.is_some() && !stopped {
        text.push_str(&seq.flush_text());
    }
    seq.finished = finished;
    Event {
        seq_id: seq.id,
        token: Some(token),
        text,
        top_logprobs,
        logprob,
        finished,
        stop_string: seq.stop.matched().filter(|_| stopped).map(str::to_string),
        prompt_scores: Vec::new(),
        embedding: None,
    }
}

/// `log(sum(exp(logits)))`, computed stably.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    max + sum.ln() as f32
}
