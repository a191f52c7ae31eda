//! The engine loop: schedule → execute → update, over any number of sequences.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wazn_kernels::ThreadPool;
use wazn_models::kv_cache::{KvUsage, KV_BLOCK_SIZE};
use wazn_models::{EmbeddingSupport, KvCache, Model, ModelError, ModelOptions, SeqId};
use wazn_text::{ChatFormat, ChatTemplate, ModelText, Tokenizer};

use crate::embedding;
use crate::error::EngineError;
use crate::profile::StepProfile;
use crate::prompt_scoring::{score_rows, PromptTokenScore, ScoringRow};
use crate::sampler::Sampler;
use crate::scheduler::{schedule, Budget, DEFAULT_PREFILL_ROWS_WITH_DECODES};
use crate::sequence::{FinishReason, Request, Sequence};
use crate::source;
use crate::update::{update_all, Job};

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
    /// The stop string that ended the sequence (its text is not in `text`), when one did.
    pub stop_string: Option<String>,
    /// Scores of prompt tokens computed in this step, in prompt order, for a request that
    /// asked for them ([`crate::PromptScoring`]); such an event has no token.
    pub prompt_scores: Vec<PromptTokenScore>,
    /// An embedding request's pooled vector (`[n_embd]`, as pooled: not normalised), on
    /// the event that ends it.
    pub embedding: Option<Vec<f32>>,
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
    chat_format: Option<ChatFormat>,
    pool: ThreadPool,
    kv: KvCache,
    options: EngineOptions,
    sequences: Vec<Sequence>,
    next_seq_id: SeqId,
    /// Blocks the KV cache may hold (`usize::MAX`: no limit).
    max_kv_blocks: usize,
    stats: GenerationStats,
    profile: StepProfile,
    /// Prompt rows a step takes at most next to decoding sequences.
    prefill_rows_with_decodes: usize,
    /// Whether the model file makes this an embedding model, and its pooling.
    embedding: EmbeddingSupport,
}

impl Engine {
    /// Opens a model, a GGUF file or a Hugging Face folder, and prepares its weights,
    /// tokenizer and chat format (gpt-oss: o200k_harmony and harmony).
    pub fn load(path: &Path, options: EngineOptions) -> Result<Engine, EngineError> {
        let source::LoadedModel {
            model,
            text,
            embedding,
        } = source::open(path, &options.model)?;
        let mut engine = Engine::with_model(model, text, options)?;
        engine.set_embedding_support(embedding);
        Ok(engine)
    }

    /// An engine around a model made elsewhere (built in code, or a stand-in for tests),
    /// with its tokenizer and chat format.
    pub fn with_model(
        model: Box<dyn Model>,
        text: ModelText,
        mut options: EngineOptions,
    ) -> Result<Engine, EngineError> {
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
            tokenizer: Arc::new(text.tokenizer),
            chat_format: text.chat_format,
            pool,
            kv,
            options,
            sequences: Vec::new(),
            next_seq_id: 0,
            max_kv_blocks: usize::MAX,
            stats: GenerationStats::default(),
            profile: StepProfile::default(),
            prefill_rows_with_decodes: DEFAULT_PREFILL_ROWS_WITH_DECODES,
            embedding: EmbeddingSupport::Unavailable(
                "the model was not loaded from a file that declares a pooling".into(),
            ),
        })
    }

    /// Whether the model is an embedding model (its file declares a pooling) and how it
    /// pools. Any model that hands back its hidden states can still be asked for pooled
    /// vectors ([`Request::embedding`]); this says what its file intends.
    pub fn embedding_support(&self) -> &EmbeddingSupport {
        &self.embedding
    }

    /// Declares how the model embeds (as a model file would); a pooling is refused for a
    /// model that hands back no hidden states.
    pub fn set_embedding_support(&mut self, support: EmbeddingSupport) {
        self.embedding = match support {
            EmbeddingSupport::Pooled { .. } if self.model.hidden_width().is_none() => {
                EmbeddingSupport::Unavailable(format!(
                    "the {} architecture does not hand back its hidden states",
                    self.model.info().architecture
                ))
            }
            support => support,
        };
    }

    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How the model wants chats written; `None`: plain completion only.
    pub fn chat_format(&self) -> Option<&ChatFormat> {
        self.chat_format.as_ref()
    }

    /// The chat template, when the model's chat format is one (not harmony).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_format
            .as_ref()
            .and_then(ChatFormat::template)
            .map(Arc::as_ref)
    }

    /// The tokenizer, shared: for a front end that tokenizes while the engine runs on
    /// its own thread.
    pub fn shared_tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.tokenizer)
    }

    /// The chat template, shared (see [`Engine::shared_tokenizer`]).
    pub fn shared_chat_template(&self) -> Option<Arc<ChatTemplate>> {
        self.chat_format
            .as_ref()
            .and_then(ChatFormat::template)
            .cloned()
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

    /// Where the time of the steps since the last [`Engine::reset_profile`] went.
    pub fn profile(&self) -> StepProfile {
        self.profile
    }

    pub fn reset_profile(&mut self) {
        self.profile = StepProfile::default();
    }

    /// Queues a request; its sequence starts computing on the next step.
    pub fn add_request(&mut self, request: Request) -> Result<SeqId, EngineError> {
        let n_prompt = request.prompt_ids.len();
        if n_prompt == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        // An embedding may fill the context: nothing is generated after its prompt.
        let embeds = request.embedding.is_some();
        if embeds && self.model.hidden_width().is_none() {
            return Err(ModelError::NoHiddenStates.into());
        }
        let n_positions = if embeds { n_prompt } else { n_prompt + 1 };
        if n_positions > self.options.n_ctx {
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
        let n_blocks = n_positions.div_ceil(KV_BLOCK_SIZE);
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

    /// Limits the prompt rows of a step that also decodes other sequences to `n_rows`
    /// (the step's batch size still applies): a smaller chunk keeps the decoding streams'
    /// inter-token latency low while a prompt is computed, a larger one computes the
    /// prompt in fewer steps. A step with no decode takes as many prompt rows as the
    /// batch size allows.
    pub fn set_prefill_rows_with_decodes(&mut self, n_rows: usize) -> Result<(), EngineError> {
        if n_rows == 0 {
            return Err(EngineError::InvalidOption(
                "the prompt rows next to decodes must be at least 1".into(),
            ));
        }
        self.prefill_rows_with_decodes = n_rows;
        Ok(())
    }

    fn budget(&self) -> Budget {
        Budget {
            rows: self.options.n_batch,
            prefill_rows_with_decodes: self.prefill_rows_with_decodes,
        }
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
        let started = Instant::now();
        // Schedule: new sequences first take what the prefix cache holds of them.
        for seq in self.sequences.iter_mut().filter(|s| !s.prefix_checked) {
            seq.prefix_checked = true;
            // A row whose logits are owed as a score, or whose hidden state is pooled, must
            // be computed, not taken from the cache (the cache leaves the last token it is
            // given to compute).
            let n_cacheable = seq.first_owed_row().map_or(seq.n_prompt, |row| row + 1);
            seq.n_computed = self.kv.attach_prefix(seq.id, &seq.tokens[..n_cacheable]);
        }
        let mut batch = schedule(&self.sequences, self.budget(), &self.kv);
        while batch.is_empty() && self.has_work() {
            // Out of cache blocks: the youngest sequence gives its blocks back and will
            // compute again later; a sequence alone that cannot grow has filled the cache.
            self.preempt_youngest();
            batch = schedule(&self.sequences, self.budget(), &self.kv);
        }
        // A sequence that could not grow ends here, whether or not others go on.
        let stuck = self.finish_stuck();
        if batch.is_empty() {
            self.retire_finished();
            return Ok(stuck);
        }
        // Rows come grouped by sequence, in the order of `self.sequences`.
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
        let forward_start = Instant::now();
        let outputs = self
            .model
            .forward_outputs(&batch, &mut self.kv, &self.pool)?;
        let (mut logits, hidden) = (outputs.logits, outputs.hidden);
        let forward_end = Instant::now();

        // Advance every sequence by its rows; rows that predict a prompt token owed as a
        // score are scored, and a sequence whose last row asked for logits samples from
        // them (in place: the logits are not needed afterwards).
        let n_vocab = logits.n_vocab.max(1);
        let mut rows = logits.data.chunks_exact_mut(n_vocab);
        let mut jobs = Vec::with_capacity(self.sequences.len());
        let mut scoring = Vec::new();
        let too_few_rows = || {
            EngineError::StepFailed(
                "the model returned fewer rows of logits than the batch asked for".into(),
            )
        };
        let mut hidden_rows = (0..hidden.n_rows()).map(|i| hidden.row(i));
        let mut embedded = Vec::new();
        let mut batch_rows = batch.rows.as_slice();
        for seq in self.sequences.iter_mut().filter(|s| s.finished.is_none()) {
            let n_rows = batch_rows.iter().take_while(|r| r.seq_id == seq.id).count();
            let (mine, rest) = batch_rows.split_at(n_rows);
            batch_rows = rest;
            if n_rows == 0 {
                continue;
            }
            seq.n_computed += n_rows;
            self.kv
                .register_tokens(seq.id, &seq.tokens[..seq.n_computed]);
            let last_pos = seq.tokens.len() - 1;
            let mut sampling_row = None;
            for r in mine.iter().filter(|r| r.wants_logits) {
                let row = rows.next().ok_or_else(too_few_rows)?;
                if r.pos == last_pos {
                    sampling_row = Some(row);
                } else if let Some(scoring_params) = &seq.prompt_scoring {
                    scoring.push(ScoringRow {
                        seq_id: seq.id,
                        pos: r.pos + 1,
                        token: seq.tokens[r.pos + 1],
                        top_logprobs: scoring_params.top_logprobs,
                        raw_logits: scoring_params.raw_logits,
                        logits: row,
                    });
                    seq.next_scored_pos = r.pos + 2;
                }
            }
            // An embedding that is done frees its cache when it retires below.
            embedded.extend(embedding::pool_rows(seq, mine, &mut hidden_rows)?);
            if let Some(row) = sampling_row {
                jobs.push(Job { seq, logits: row });
            }
        }
        let update_start = Instant::now();
        let mut events = stuck;
        events.extend(score_rows(scoring, &self.pool));
        events.extend(embedded);
        let (sampled, times) = update_all(jobs, &self.tokenizer, self.options.n_ctx, &self.pool);
        events.extend(sampled);
        let update_end = Instant::now();

        let elapsed = update_end - forward_start;
        if n_prompt_rows > 0 {
            self.stats.n_prompt_tokens += n_prompt_rows;
            self.stats.prompt_time += elapsed;
        } else {
            self.stats.n_generated_tokens += events.iter().filter(|e| e.token.is_some()).count();
            self.stats.generation_time += elapsed;
        }
        self.retire_finished();

        let p = &mut self.profile;
        p.n_steps += 1;
        p.n_rows += batch.rows.len();
        p.n_sampled += events.len();
        p.schedule += forward_start - started;
        p.forward += forward_end - forward_start;
        p.update += update_end - update_start;
        p.sample += times.sample;
        p.logprobs += times.logprobs;
        p.text += times.text;
        p.mask += times.mask;
        p.bookkeeping += (update_start - forward_end) + update_end.elapsed();
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
                if let Some(pooler) = &mut seq.pooler {
                    pooler.restart();
                }
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
            let reason = seq.finished.unwrap_or(FinishReason::ContextFull);
            events.push(seq.end_without_token(reason));
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
