//! Where the time of the engine's steps goes, summed over steps: the model's forward
//! pass against everything around it (scheduling, sampling, log-probabilities, text,
//! bookkeeping). Reading the clock a few times per step costs well under a
//! microsecond, so the engine always keeps these figures.

use std::time::Duration;

/// Time of the engine's steps, split by part, summed since the last reset.
///
/// The `sample`, `logprobs`, `text` and `mask` parts are summed over sequences: when several
/// sequences are updated in parallel they may add up to more than `update`, the wall
/// time of the whole update phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepProfile {
    /// Steps that computed at least one row.
    pub n_steps: usize,
    /// Rows computed (prompt and generated tokens).
    pub n_rows: usize,
    /// Sequences that got a new token.
    pub n_sampled: usize,
    /// Choosing the rows of each step (prefix cache look-up included).
    pub schedule: Duration,
    /// The model's forward pass.
    pub forward: Duration,
    /// Wall time of the update phase: every sequence's sampling, log-probabilities,
    /// text and end checks.
    pub update: Duration,
    /// Picking tokens from the logits, summed over sequences.
    pub sample: Duration,
    /// Log-probabilities asked for, summed over sequences.
    pub logprobs: Duration,
    /// Detokenization and stop strings, summed over sequences.
    pub text: Duration,
    /// Grammar masks and forced tokens of constrained sequences, summed over sequences.
    pub mask: Duration,
    /// The rest of the step: advancing sequences, registering cache blocks, retiring
    /// finished sequences.
    pub bookkeeping: Duration,
}

impl StepProfile {
    /// Wall time of the steps, all parts together.
    pub fn total(&self) -> Duration {
        self.schedule + self.forward + self.update + self.bookkeeping
    }

    /// Adds the figures of `other`.
    pub fn add(&mut self, other: &StepProfile) {
        self.n_steps += other.n_steps;
        self.n_rows += other.n_rows;
        self.n_sampled += other.n_sampled;
        self.schedule += other.schedule;
        self.forward += other.forward;
        self.update += other.update;
        self.sample += other.sample;
        self.logprobs += other.logprobs;
        self.text += other.text;
        self.mask += other.mask;
        self.bookkeeping += other.bookkeeping;
    }
}
