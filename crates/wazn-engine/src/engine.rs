//! The engine loop: schedule → execute → update, over any number of sequences.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wazn_formats::GgufFile;
use wazn_kernels::ThreadPool;
use wazn_models::kv_cache::{KvUsage, KV_BLOCK_SIZE};
use wazn_models::{load_model, KvCache, Model, ModelOptions, SeqId};
use wazn_text::{ChatTemplate, Tokenizer};

use crate::error::EngineError;
use crate::sampler::{top_logprobs, Sampler};
use crate::scheduler::schedule;
use crate::sequence::{FinishReason, Request, Sequence};

/// How to run a model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Positions each sequence may hold; 0 takes the model's training context.
    pub n_ctx: usize,
    pub n_threads: usize,
    /// Most rows computed in one step.
    pub n_batch: usize,
    pub model: ModelOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            n_ctx: 4096,
            n_threads: default_threads(),
            n_batch: 512,
            model: ModelOptions::default(),
        }
    }
}

/// The threads a run uses when none are asked for: one per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Something that happened to a sequence in one step.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq_id: SeqId,
    /// The token generated in this step, if any.
    pub token: Option<u32>,
    /// Text that is now safe to show (may be empty while text is held back).
    pub text: String,
    /// Best-k `(id, logprob)` of the distribution the token came from, best first.
    pub top_logprobs: Vec<(u32, f32)>,
    /// Log-probability of `token` in that distribution, when log-probabilities were
    /// asked for.
    pub logprob: Option<f32>,
    pub finished: Option<FinishReason>,
}

/// Time spent on prompt tokens and on generated tokens, as llama.cpp reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationStats {
    pub n_prompt_tokens: usize,
    pub prompt_time: Duration,
    pub n_generated_tokens: usize,
    pub generation_time: Duration,
}

impl GenerationStats {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.n_prompt_tokens, self.prompt_time)
    }

    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.n_generated_tokens, self.generation_time)
    }
}

fn per_second(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

pub struct Engine {
    model: Box<dyn Model>,
    tokenizer: Arc<Tokenizer>,
    chat_template: Option<Arc<ChatTemplate>>,
    pool: ThreadPool,
    kv: KvCache,
    options: EngineOptions,
    sequences: Vec<Sequence>,
    next_seq_id: SeqId,
    /// Blocks the KV cache may hold (`usize::MAX`: no limit).
    max_kv_blocks: usize,
    stats: GenerationStats,
}

impl Engine {
    /// Opens a GGUF file and prepares its model, tokenizer and chat template.
    pub fn load(path: &Path, mut options: EngineOptions) -> Result<Engine, EngineError> {
        let file = Arc::new(GgufFile::open(path)?);
        let model = load_model(Arc::clone(&file), &options.model)?;
        let tokenizer = Tokenizer::from_gguf_metadata(file.metadata())?;
        let chat_template = ChatTemplate::from_metadata(file.metadata(), &tokenizer)?;
        if options.n_ctx == 0 {
            options.n_ctx = model.info().n_ctx_train;
        }
        if options.n_batch == 0 {
            return Err(EngineError::InvalidOption(
                "the batch size must be at least 1".into(),
            ));
        }
        let pool = ThreadPool::new(options.n_threads).map_err(|source| EngineError::Threads {
            n_threads: options.n_threads,
            source,
        })?;
        let kv = model.new_kv_cache(options.n_ctx);
        Ok(Engine {
            model,
            tokenizer: Arc::new(tokenizer),
            chat_template: chat_template.map(Arc::new),
            pool,
            kv,
            options,
            sequences: Vec::new(),
            next_seq_id: 0,
            max_kv_blocks: usize::MAX,
            stats: GenerationStats::default(),
        })
    }

    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_deref()
    }

    /// The tokenizer, shared: for a front end that tokenizes while the engine runs on
    /// its own thread.
    pub fn shared_tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.tokenizer)
    }

    /// The chat template, shared (see [`Engine::shared_tokenizer`]).
    pub fn shared_chat_template(&self) -> Option<Arc<ChatTemplate>> {
        self.chat_template.clone()
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn stats(&self) -> GenerationStats {
        self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats = GenerationStats::default();
    }

    /// Queues a request; its sequence starts computing on the next step.
    pub fn add_request(&mut self, request: Request) -> Result<SeqId, EngineError> {
        let n_prompt = request.prompt_ids.len();
        if n_prompt == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        if n_prompt >= self.options.n_ctx {
            return Err(EngineError::PromptTooLong {
                n_prompt,
                n_ctx: self.options.n_ctx,
            });
        }
        let n_vocab = self.model.info().n_vocab;
        if let Some(&bad) = request.prompt_ids.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(wazn_models::ModelError::TokenOutOfRange {
                token: bad,
                n_vocab,
            }
            .into());
        }
        request.sampler.check_vocab(n_vocab)?;
        let n_blocks = (n_prompt + 1).div_ceil(KV_BLOCK_SIZE);
        if n_blocks > self.max_kv_blocks {
            return Err(EngineError::CacheTooSmall {
                n_blocks,
                max_blocks: self.max_kv_blocks,
            });
        }
        let sampler = Sampler::new(request.sampler.clone())?;
        let id = self.next_seq_id;
        self.next_seq_id = self.next_seq_id.wrapping_add(1);
        self.sequences.push(Sequence::new(id, request, sampler));
        Ok(id)
    }

    /// Caps the KV cache at `n_blocks` blocks of [`KV_BLOCK_SIZE`] positions shared by
    /// all sequences (memory is taken as blocks are first used).
    pub fn set_kv_blocks(&mut self, n_blocks: usize) -> Result<(), EngineError> {
        if n_blocks == 0 {
            return Err(EngineError::InvalidOption(
                "the KV cache needs at least 1 block".into(),
            ));
        }
        self.max_kv_blocks = n_blocks;
        self.kv.set_max_blocks(n_blocks);
        Ok(())
    }

    /// How full the KV cache is.
    pub fn kv_usage(&self) -> KvUsage {
        self.kv.usage()
    }

    /// Sequences in the engine that have not ended.
    pub fn n_running(&self) -> usize {
        self.sequences
            .iter()
            .filter(|s| s.finished.is_none())
            .count()
    }

    /// Whether any sequence still has work.
    pub fn has_work(&self) -> bool {
        self.sequences.iter().any(|s| s.finished.is_none())
    }

    /// Ends a sequence now and frees its cache.
    pub fn cancel(&mut self, seq_id: SeqId) {
        if let Some(seq) = self.sequences.iter_mut().find(|s| s.id == seq_id) {
            seq.finished.get_or_insert(FinishReason::Cancelled);
        }
        self.retire_finished();
    }

    /// One step of the loop. Returns what happened to each sequence that produced a
    /// token or ended.
    pub fn step(&mut self) -> Result<Vec<Event>, EngineError> {
        // Schedule: new sequences first take what the prefix cache holds of them.
        for seq in self.sequences.iter_mut().filter(|s| !s.prefix_checked) {
            seq.prefix_checked = true;
            seq.n_computed = self.kv.attach_prefix(seq.id, &seq.tokens[..seq.n_prompt]);
        }
        let mut batch = schedule(&self.sequences, self.options.n_batch, &self.kv);
        while batch.is_empty() && self.has_work() {
            // Out of cache blocks: the youngest sequence gives its blocks back and will
            // compute again later; a sequence alone that cannot grow has filled the cache.
            self.preempt_youngest();
            batch = schedule(&self.sequences, self.options.n_batch, &self.kv);
        }
        if batch.is_empty() {
            let events = self.finish_stuck();
            self.retire_finished();
            return Ok(events);
        }
        let n_prompt_rows = batch
            .rows
            .iter()
            .filter(|r| {
                self.sequences
                    .iter()
                    .any(|s| s.id == r.seq_id && r.pos < s.n_prompt)
            })
            .count();

        // Execute.
        let started = Instant::now();
        let logits = self.model.forward(&batch, &mut self.kv, &self.pool)?;

        // Update: advance every sequence by its rows, and sample where logits came back.
        let mut events = Vec::new();
        let mut logit_row = 0;
        for seq in self.sequences.iter_mut().filter(|s| s.finished.is_none()) {
            let n_rows = batch.rows.iter().filter(|r| r.seq_id == seq.id).count();
            seq.n_computed += n_rows;
            if n_rows > 0 {
                self.kv
                    .register_tokens(seq.id, &seq.tokens[..seq.n_computed]);
            }
            let wants = batch
                .rows
                .iter()
                .any(|r| r.seq_id == seq.id && r.wants_logits);
            if !wants {
                continue;
            }
            let mut row = logits.row(logit_row).to_vec();
            logit_row += 1;
            events.push(update_sequence(
                seq,
                &self.tokenizer,
                &mut row,
                self.options.n_ctx,
            ));
        }

        let elapsed = started.elapsed();
        if n_prompt_rows > 0 {
            self.stats.n_prompt_tokens += n_prompt_rows;
            self.stats.prompt_time += elapsed;
        } else {
            self.stats.n_generated_tokens += events.iter().filter(|e| e.token.is_some()).count();
            self.stats.generation_time += elapsed;
        }
        self.retire_finished();
        Ok(events)
    }

    /// Frees the cache of the youngest running sequence that holds any, so that older
    /// ones can go on; it starts again from its tokens when there is room. With one
    /// sequence left nothing is freed.
    fn preempt_youngest(&mut self) {
        let running: Vec<usize> = (0..self.sequences.len())
            .filter(|&i| self.sequences[i].finished.is_none())
            .collect();
        let victim = running
            .iter()
            .skip(1)
            .rev()
            .find(|&&i| self.kv.n_blocks_held(self.sequences[i].id) > 0);
        match victim {
            Some(&i) => {
                let seq = &mut self.sequences[i];
                self.kv.remove(seq.id);
                seq.n_computed = 0;
                seq.prefix_checked = false;
            }
            None => {
                // Nothing left to free: the oldest sequence cannot grow any further.
                if let Some(&i) = running.first() {
                    let seq = &mut self.sequences[i];
                    seq.finished = Some(FinishReason::ContextFull);
                    seq.stuck = true;
                    self.kv.remove(seq.id);
                }
            }
        }
    }

    /// Final events of the sequences ended because the cache could not hold them.
    fn finish_stuck(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for seq in self.sequences.iter_mut().filter(|s| s.stuck) {
            seq.stuck = false;
            events.push(Event {
                seq_id: seq.id,
                token: None,
                text: seq.flush_text(),
                top_logprobs: Vec::new(),
                logprob: None,
                finished: seq.finished,
            });
        }
        events
    }

    /// Drops finished sequences and frees their cache.
    fn retire_finished(&mut self) {
        let kv = &mut self.kv;
        self.sequences.retain(|s| {
            if s.finished.is_some() {
                kv.remove(s.id);
                false
            } else {
                true
            }
        });
    }
}

/// Samples the next token of `seq` from `logits` and decides whether it ends there.
fn update_sequence(
    seq: &mut Sequence,
    tokenizer: &Tokenizer,
    logits: &mut [f32],
    n_ctx: usize,
) -> Event {
    let (top, log_norm) = if seq.top_logprobs > 0 {
        (
            top_logprobs(logits, seq.top_logprobs),
            Some(log_sum_exp(logits)),
        )
    } else {
        (Vec::new(), None)
    };
    // The sampler reshapes the logits in place; keep the raw logit of every token
    // only when its log-probability is wanted.
    let raw = log_norm.map(|_| logits.to_vec());
    let token = seq.sampler.sample(logits, &seq.tokens);
    // The same number as in the alternatives when the token is among them.
    let logprob = match (raw, log_norm) {
        (Some(raw), Some(norm)) => top
            .iter()
            .find(|&&(id, _)| id == token)
            .map(|&(_, lp)| lp)
            .or_else(|| raw.get(token as usize).map(|&l| l - norm)),
        _ => None,
    };
    seq.tokens.push(token);

    let is_eog = !seq.ignore_eos && tokenizer.eog_ids().contains(&token);
    let (mut text, stopped) = if is_eog {
        (String::new(), false)
    } else {
        seq.push_text(tokenizer, token)
    };
    let finished = if is_eog || stopped {
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
        top_logprobs: top,
        logprob,
        finished,
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
