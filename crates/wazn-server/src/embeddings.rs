//! Embedding inputs through the engine, for every API that embeds (OpenAI's
//! `/v1/embeddings`, Ollama's `/api/embed`): each input is tokenized as the model's file
//! says (Qwen3-Embedding's tokenizer appends the token its last-token pooling reads), its
//! prompt is computed by the engine beside whatever else runs, without sampling, and its
//! pooled final hidden state comes back and its cache is freed. The vectors are made unit
//! length, as llama.cpp's and vLLM's servers make pooled embeddings by default (Ollama's older
//! `/api/embeddings` alone gives them as pooled), and may be shortened Matryoshka-style
//! (truncated, then unit length again).

use tokio::sync::mpsc;
use wazn_engine::{EmbeddingSupport, EventSink, Request, ServiceEvent, Submission, SubmitError};

use crate::error::ApiError;
use crate::generate::rejected;
use crate::AppState;

/// Most inputs one request may embed (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// One input to embed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbeddingInput {
    /// Tokenized with the model's special tokens (BOS, or the EOS an embedding model
    /// appends) and with control-token texts read as their tokens.
    Text(String),
    /// Embedded as given.
    Ids(Vec<u32>),
}

/// How [`embed`] shapes its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Keeps that many leading values of each vector (at most the model's width).
    pub dimensions: Option<usize>,
    /// An input past the context is cut to the context (Ollama's default), keeping the
    /// special tokens the model puts at its ends, instead of being refused.
    pub truncate: bool,
    /// The vectors are made unit length; otherwise they are the pooled states as they are.
    pub normalize: bool,
}

impl EmbedOptions {
    /// Unit-length vectors of every input whole, `dimensions` long when given.
    pub fn unit(dimensions: Option<usize>) -> EmbedOptions {
        EmbedOptions {
            dimensions,
            truncate: false,
            normalize: true,
        }
    }
}

/// The vectors of a request's inputs, in input order.
#[derive(Clone, Debug)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all the inputs together (after any truncation).
    pub prompt_tokens: usize,
}

/// How the served model pools, and how wide its vectors are; a 400 naming `model` when it
/// does not embed.
pub fn embedding_model(state: &AppState) -> Result<(wazn_engine::Pooling, usize), ApiError> {
    let pooling = match &state.embedding {
        EmbeddingSupport::Pooled { pooling, .. } => *pooling,
        EmbeddingSupport::Unavailable(reason) => {
            return Err(ApiError::invalid_param(
                "model",
                format!(
                    "the model {} does not embed: {reason}. Serve an embedding model (a GGUF \
                     with a pooling_type, or a sentence-transformers folder)",
                    state.model_id
                ),
            ))
        }
    };
    let width = state.embedding_width.ok_or_else(|| {
        ApiError::internal("the embedding model does not say how wide its vectors are")
    })?;
    Ok((pooling, width))
}

/// Embeds `inputs` with the served model. Errors are named after OpenAI's fields (`input`,
/// `model`, `dimensions`).
pub async fn embed(
    state: &AppState,
    inputs: &[EmbeddingInput],
    options: EmbedOptions,
) -> Result<Embeddings, ApiError> {
    let (pooling, width) = embedding_model(state)?;
    let dimensions = options.dimensions;
    if let Some(d) = dimensions {
        if d == 0 || d > width {
            return Err(ApiError::invalid_param(
                "dimensions",
                format!("dimensions is {d}; this model's vectors have 1 to {width} dimensions"),
            ));
        }
    }
    if inputs.is_empty() {
        return Err(ApiError::invalid_param(
            "input",
            "input is an empty list; give at least one input",
        ));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "input has {} items; at most {MAX_INPUTS} are embedded at once",
                inputs.len()
            ),
        ));
    }
    let prompts = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| prompt_ids(state, i, inputs.len(), input, options.truncate))
        .collect::<Result<Vec<_>, _>>()?;
    let prompt_tokens = prompts.iter().map(Vec::len).sum();
    // A batch the size of the engine's running set at a time: a long list neither fills
    // the queue that other requests wait in nor is refused for being longer than it.
    let chunk = state.engine.options().max_running.max(1);
    let mut vectors = Vec::with_capacity(prompts.len());
    for batch in prompts.chunks(chunk) {
        vectors.extend(embed_batch(state, batch, pooling).await?);
    }
    for vector in &mut vectors {
        if let Some(d) = dimensions {
            vector.truncate(d);
        }
        check_finite(vector)?;
        if options.normalize {
            normalize(vector);
        }
    }
    Ok(Embeddings {
        vectors,
        prompt_tokens,
    })
}

/// The ids of input `i` of `n`, checked against the vocabulary and the context (and cut to
/// it when `truncate`).
fn prompt_ids(
    state: &AppState,
    i: usize,
    n: usize,
    input: &EmbeddingInput,
    truncate: bool,
) -> Result<Vec<u32>, ApiError> {
    let name = if n > 1 {
        format!("input[{i}]")
    } else {
        "input".to_string()
    };
    let ids = match input {
        EmbeddingInput::Text(text) if text.is_empty() => {
            return Err(ApiError::invalid_param(
                "input",
                format!("{name} is an empty string"),
            ))
        }
        EmbeddingInput::Text(text) => state.tokenizer.encode(text, true, true).map_err(|e| {
            ApiError::invalid_param("input", format!("cannot tokenize {name}: {e}"))
        })?,
        EmbeddingInput::Ids(ids) => {
            let n_vocab = state.n_vocab.min(state.tokenizer.vocab_size());
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(ApiError::invalid_param(
                    "input",
                    format!("{name}: token {bad} is outside the vocabulary (0..{n_vocab})"),
                ));
            }
            ids.clone()
        }
    };
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            "input",
            format!("{name} has no tokens"),
        ));
    }
    if ids.len() > state.n_ctx && truncate {
        let (lead, tail) = match input {
            EmbeddingInput::Text(_) => (
                usize::from(state.tokenizer.adds_bos()),
                usize::from(state.tokenizer.adds_eos()),
            ),
            EmbeddingInput::Ids(_) => (0, 0),
        };
        return cut_to_context(ids, state.n_ctx, lead, tail).ok_or_else(|| {
            ApiError::invalid_param(
                "input",
                format!(
                    "{name} cannot be cut to the context: {} tokens hold nothing of it beside \
                     the model's special tokens",
                    state.n_ctx
                ),
            )
        });
    }
    if ids.len() > state.n_ctx {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "{name} is {} tokens but the context holds {}; shorten it or start the server \
                 with a larger --ctx-size",
                ids.len(),
                state.n_ctx
            ),
        ));
    }
    Ok(ids)
}

/// The first `n_ctx` tokens of `ids`, but with its last `tail` tokens (the EOS the model
/// appends, which last-token pooling reads) kept at the end; the `lead` tokens in front (BOS)
/// are kept by keeping the start. `None` when the context holds no token of the text itself.
fn cut_to_context(ids: Vec<u32>, n_ctx: usize, lead: usize, tail: usize) -> Option<Vec<u32>> {
    if ids.len() <= n_ctx {
        return Some(ids);
    }
    if n_ctx <= lead + tail {
        return None;
    }
    let mut cut = ids[..n_ctx - tail].to_vec();
    cut.extend_from_slice(&ids[ids.len() - tail..]);
    Some(cut)
}

/// Where the events of one input go, tagged with its place in the batch.
struct Sink {
    index: usize,
    tx: mpsc::UnboundedSender<(usize, ServiceEvent)>,
}

impl EventSink for Sink {
    fn send(&mut self, event: ServiceEvent) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The pooled vectors of `prompts`, computed together by the engine.
async fn embed_batch(
    state: &AppState,
    prompts: &[Vec<u32>],
    pooling: wazn_engine::Pooling,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let submissions = prompts
        .iter()
        .enumerate()
        .map(|(index, ids)| Submission {
            request: Request::embedding(ids.clone(), pooling),
            sink: Box::new(Sink {
                index,
                tx: tx.clone(),
            }),
        })
        .collect();
    drop(tx);
    state.engine.submit(submissions).map_err(|e| match e {
        SubmitError::QueueFull { .. } => ApiError::busy(e.to_string()),
        SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })?;
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; prompts.len()];
    let mut n_left = prompts.len();
    while n_left > 0 {
        match rx.recv().await {
            Some((_, ServiceEvent::Rejected(err))) => return Err(rejected(err)),
            Some((_, ServiceEvent::Started)) => {}
            Some((index, ServiceEvent::Event(event))) => {
                let Some(finish) = event.finished else {
                    continue;
                };
                let vector = event.embedding.ok_or_else(|| {
                    ApiError::unavailable(format!(
                        "the input ended ({}) before it was embedded",
                        finish.as_str()
                    ))
                })?;
                if let Some(slot) = vectors.get_mut(index).filter(|slot| slot.is_none()) {
                    *slot = Some(vector);
                    n_left -= 1;
                }
            }
            None => return Err(ApiError::unavailable("the engine stopped")),
        }
    }
    Ok(vectors.into_iter().flatten().collect())
}

/// A vector with an infinity or a NaN, which JSON cannot carry, is a server error.
fn check_finite(vector: &[f32]) -> Result<(), ApiError> {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>();
    if norm.is_finite() {
        Ok(())
    } else {
        Err(ApiError::internal(
            "the model's hidden state is not finite; the weights may be broken",
        ))
    }
}

/// Scales a finite `vector` to unit length (a zero vector stays zero, as llama.cpp leaves
/// it).
fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_is_made_unit_length_and_a_zero_one_stays_zero() {
        let mut v = vec![3.0, 0.0, -4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.0, -0.8]);
        let mut zero = vec![0.0; 4];
        normalize(&mut zero);
        assert_eq!(zero, [0.0; 4]);
        assert!(check_finite(&[3.0, -4.0]).is_ok());
        assert!(check_finite(&[f32::NAN, 1.0]).is_err());
        assert!(check_finite(&[f32::INFINITY]).is_err());
        assert!(check_finite(&[f32::MAX, f32::MAX]).is_ok());
    }

    #[test]
    fn a_long_input_is_cut_to_the_context_keeping_its_special_ends() {
        let ids: Vec<u32> = (0..10).collect();
        // BOS in front and EOS at the end: the start and the last token stay.
        assert_eq!(
            cut_to_context(ids.clone(), 5, 1, 1),
            Some(vec![0, 1, 2, 3, 9])
        );
        // Only an appended EOS (Qwen3-Embedding): it stays last.
        assert_eq!(cut_to_context(ids.clone(), 4, 0, 1), Some(vec![0, 1, 2, 9]));
        // Nothing added (token ids): the first tokens.
        assert_eq!(cut_to_context(ids.clone(), 3, 0, 0), Some(vec![0, 1, 2]));
        // What fits is left as it is.
        assert_eq!(cut_to_context(ids.clone(), 10, 1, 1), Some(ids.clone()));
        // A context of only the special tokens holds none of the text.
        assert_eq!(cut_to_context(ids.clone(), 2, 1, 1), None);
        assert_eq!(cut_to_context(ids, 1, 0, 1), None);
    }
}
