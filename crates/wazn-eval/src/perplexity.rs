//! Perplexity and KL divergence, with llama-perplexity's method: the text's tokens are
//! cut into chunks of n_ctx, each chunk's first token is replaced by BOS (when the model
//! adds one), and only the second half of each chunk is scored, so that every scored
//! token has at least n_ctx/2 tokens of context.
//!
//! Chunks go through the engine as prompts that ask for their own scores, several at a
//! time (as many as the batch holds), and each step's scored rows are reduced as they
//! come: the logits of a row are dropped once its numbers are taken, so memory is that of
//! the rows in flight, never of the whole text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wazn_engine::{Engine, PromptScoring, Request, SamplerParams};

use crate::logits_file::{scored_rows_per_chunk, BaseHeader, BaseReader, BaseRow, BaseWriter};
use crate::parallel::parallel_map;
use crate::statistics::{
    compare_with_base, ComparisonReport, ComparisonSums, NllSums, TokenComparison,
};
use crate::EvalError;

/// What to do with the scored rows besides perplexity.
pub enum BaseMode {
    /// Perplexity only.
    None,
    /// Write every scored row's log-probabilities to a base file.
    Write(PathBuf),
    /// Compare every scored row with a base file (its tokens and n_ctx are the run's).
    Compare(BaseReader),
}

pub struct PerplexityOptions {
    pub n_ctx: usize,
    /// Most chunks to score (`None`: all the text holds).
    pub max_chunks: Option<usize>,
    /// Chunks computed together (llama-perplexity: batch size / n_ctx).
    pub n_parallel: usize,
    /// Threads that reduce the logits between steps.
    pub n_threads: usize,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct PerplexityReport {
    pub n_ctx: usize,
    pub n_chunks: usize,
    /// Tokens scored.
    pub n_tokens: usize,
    pub ppl: f64,
    pub ppl_se: f64,
    /// Present when compared with a base.
    pub comparison: Option<ComparisonReport>,
}

/// Progress after each chunk, in chunk order.
pub struct ChunkDone {
    pub index: usize,
    pub n_chunks: usize,
    /// Perplexity over the chunks done so far.
    pub ppl: f64,
    /// The comparison so far, when comparing.
    pub comparison: Option<ComparisonReport>,
}

/// Checks a tokenized text and tells how many chunks it gives.
pub fn count_chunks(
    n_tokens: usize,
    n_ctx: usize,
    max_chunks: Option<usize>,
) -> Result<usize, EvalError> {
    if n_ctx < 4 {
        return Err(EvalError::Invalid(format!(
            "a context of {n_ctx} tokens leaves nothing to score; use -c 4 or more"
        )));
    }
    if n_tokens < 2 * n_ctx {
        return Err(EvalError::Invalid(format!(
            "the text is {n_tokens} tokens; perplexity with a context of {n_ctx} needs at \
             least {} (two chunks)",
            2 * n_ctx
        )));
    }
    let n_chunks = n_tokens / n_ctx;
    Ok(max_chunks.map_or(n_chunks, |m| m.clamp(1, n_chunks)))
}

/// Scores `tokens` (the whole text, tokenized with the model's BOS rule) chunk by chunk.
pub fn perplexity(
    engine: &mut Engine,
    tokens: &[u32],
    options: &PerplexityOptions,
    mut mode: BaseMode,
    on_chunk: &mut dyn FnMut(&ChunkDone),
) -> Result<PerplexityReport, EvalError> {
    let n_ctx = options.n_ctx;
    let n_vocab = engine.model().info().n_vocab;
    let n_chunks = match &mode {
        BaseMode::Compare(base) => {
            let header = base.header();
            if header.n_vocab != n_vocab {
                return Err(EvalError::Invalid(format!(
                    "the base was computed over a vocabulary of {} tokens, this model has {n_vocab}",
                    header.n_vocab
                )));
            }
            if header.n_ctx != n_ctx {
                return Err(EvalError::Invalid(format!(
                    "the base was computed with a context of {} tokens, not {n_ctx}",
                    header.n_ctx
                )));
            }
            options
                .max_chunks
                .map_or(header.n_chunk, |m| m.clamp(1, header.n_chunk))
        }
        _ => count_chunks(tokens.len(), n_ctx, options.max_chunks)?,
    };
    let tokens = &tokens[..n_chunks * n_ctx];
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(EvalError::Invalid(format!(
            "token {bad} is outside the model's vocabulary of {n_vocab}"
        )));
    }
    let mut writer = match &mode {
        BaseMode::Write(path) => Some(BaseWriter::create(
            path,
            BaseHeader {
                n_ctx,
                n_vocab,
                n_chunk: n_chunks,
                tokens: tokens.to_vec(),
            },
        )?),
        _ => None,
    };

    let bos = engine
        .tokenizer()
        .adds_bos()
        .then(|| engine.tokenizer().bos_id())
        .flatten();
    let first = n_ctx / 2;
    let rows_per_chunk = scored_rows_per_chunk(n_ctx);
    let n_parallel = options.n_parallel.max(1);

    let mut nll = NllSums::default();
    let mut comparison = ComparisonSums::default();
    // Per chunk, the reductions of its rows as they come (rows of a chunk arrive in
    // order; chunks are folded into the totals in order, so sums do not depend on
    // scheduling).
    let mut pending: BTreeMap<usize, Vec<RowResult>> = BTreeMap::new();
    let mut seq_chunk: Vec<(u32, usize)> = Vec::new();
    let mut next_to_add = 0;
    let mut next_to_fold = 0;

    while next_to_fold < n_chunks {
        while next_to_add < n_chunks && seq_chunk.len() < n_parallel {
            let mut prompt = tokens[next_to_add * n_ctx..(next_to_add + 1) * n_ctx].to_vec();
            if let Some(bos) = bos {
                prompt[0] = bos;
            }
            let mut request = Request::new(prompt, SamplerParams::greedy(), 0);
            request.prompt_scoring = Some(PromptScoring {
                from: first + 1,
                top_logprobs: 0,
                // Perplexity alone needs each token's log-probability, which the engine
                // computes; a base is written from, or compared with, every logit.
                raw_logits: !matches!(mode, BaseMode::None),
            });
            let id = engine.add_request(request)?;
            seq_chunk.push((id, next_to_add));
            pending.insert(next_to_add, Vec::with_capacity(rows_per_chunk));
            next_to_add += 1;
        }
        let events = engine.step()?;
        if events.is_empty() && !engine.has_work() {
            return Err(EvalError::Invalid(
                "the engine stopped before every chunk was scored".into(),
            ));
        }
        // Gather the step's rows with the base rows they are compared with.
        let mut work = Vec::new();
        for event in events {
            let Some(&(_, chunk)) = seq_chunk.iter().find(|(id, _)| *id == event.seq_id) else {
                continue;
            };
            for score in event.prompt_scores {
                let row = score.pos - (first + 1);
                let base = match &mut mode {
                    BaseMode::Compare(reader) => {
                        let mut base_row = BaseRow::default();
                        reader.read_row(chunk, row, &mut base_row)?;
                        Some(base_row)
                    }
                    _ => None,
                };
                work.push((chunk, row, score.token, score.logprob, score.logits, base));
            }
            if event.finished.is_some() {
                seq_chunk.retain(|(id, _)| *id != event.seq_id);
            }
        }
        let writing = writer.is_some();
        let results = parallel_map(
            work,
            options.n_threads,
            |(chunk, row, token, logprob, logits, base)| match logits {
                Some(logits) => reduce_row(chunk, row, token, &logits, base.as_ref(), writing),
                None => Ok(RowResult {
                    chunk,
                    row,
                    nll: -f64::from(logprob),
                    comparison: None,
                    quantized: None,
                }),
            },
        );
        for result in results {
            let result = result?;
            if let (Some(writer), Some(quantized)) = (writer.as_mut(), &result.quantized) {
                writer.write_row(result.chunk, result.row, quantized)?;
            }
            if let Some(rows) = pending.get_mut(&result.chunk) {
                rows.push(result);
            }
        }
        // Fold the chunks that are complete, in order.
        while let Some(rows) = pending.get(&next_to_fold) {
            if rows.len() < rows_per_chunk {
                if seq_chunk.iter().any(|&(_, c)| c == next_to_fold) {
                    break;
                }
                return Err(EvalError::Invalid(format!(
                    "chunk {} ended with {} of its {rows_per_chunk} rows scored",
                    next_to_fold + 1,
                    rows.len()
                )));
            }
            let rows = pending.remove(&next_to_fold).unwrap_or_default();
            for result in &rows {
                nll.add(result.nll);
                if let Some(c) = &result.comparison {
                    comparison.add(c);
                }
            }
            next_to_fold += 1;
            let compared = comparison.report();
            on_chunk(&ChunkDone {
                index: next_to_fold,
                n_chunks,
                ppl: compared.map_or_else(|| nll.ppl(), |c| c.ppl.value),
                comparison: compared,
            });
        }
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }
    let comparison = comparison.report();
    let (ppl, ppl_se) = match &comparison {
        Some(c) => (c.ppl.value, c.ppl.se),
        None => nll.ppl_with_se(),
    };
    Ok(PerplexityReport {
        n_ctx,
        n_chunks,
        n_tokens: nll.count,
        ppl,
        ppl_se,
        comparison,
    })
}

struct RowResult {
    chunk: usize,
    row: usize,
    nll: f64,
    comparison: Option<TokenComparison>,
    quantized: Option<BaseRow>,
}

fn reduce_row(
    chunk: usize,
    row: usize,
    token: u32,
    logits: &[f32],
    base: Option<&BaseRow>,
    write_base: bool,
) -> Result<RowResult, EvalError> {
    if logits.is_empty() || token as usize >= logits.len() {
        return Err(EvalError::Invalid(format!(
            "chunk {}: no logits for scored row {row}",
            chunk + 1
        )));
    }
    let mut result = RowResult {
        chunk,
        row,
        nll: 0.0,
        comparison: None,
        quantized: None,
    };
    if let Some(base) = base {
        let c = compare_with_base(logits, base, token);
        result.nll = c.nll;
        result.comparison = Some(c);
    } else if write_base {
        let mut quantized = BaseRow::default();
        result.nll = BaseRow::quantize(logits, token, &mut quantized);
        result.quantized = Some(quantized);
    }
    Ok(result)
}
