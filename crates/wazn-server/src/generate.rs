//! Running one request's choices through the engine thread and answering them, whole
//! or as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wazn_engine::{
    Constraint, EngineError, Event, EventSink, FinishReason, Request, ServiceEvent, Submission,
    SubmitError,
};
use wazn_text::harmony::{AssistantReply, ReplyAssembler, ReplyDelta};
use wazn_text::tool_calls::ToolFormat;

use crate::error::ApiError;
use crate::harmony_answer;
use crate::text_reply::TextReply;
use crate::wire::Generation;
use crate::AppState;

/// Which API a request came through: it decides the shape of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// A checked request, ready for the engine.
pub struct Job {
    pub kind: Kind,
    pub prompt_ids: Vec<u32>,
    pub generation: Generation,
    /// `Some(k)`: report each token's log-probability and its `k` best alternatives.
    pub logprobs: Option<usize>,
    /// The model writes harmony: a chat answer is read from the generated ids.
    pub harmony: bool,
    /// The model writes its reasoning in `<think>` blocks: `Some(open)`, `open` when the
    /// prompt left a block open. The chat answer's reasoning is then told apart.
    pub think: Option<bool>,
    /// The grammar the output must follow.
    pub constraint: Option<Constraint>,
    /// The chat answer may call functions written in this format.
    pub tool_format: Option<ToolFormat>,
}

/// Events of one choice, tagged with the choice's index.
struct ChannelSink {
    index: usize,
    tx: mpsc::UnboundedSender<(usize, ServiceEvent)>,
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: ServiceEvent) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Checks the prompt against the context, submits the `n` choices and answers.
pub async fn run(state: Arc<AppState>, job: Job) -> Result<Response, ApiError> {
    let n_prompt = job.prompt_ids.len();
    if n_prompt == 0 {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    if n_prompt >= state.n_ctx {
        return Err(ApiError::bad_request(format!(
            "the prompt is {n_prompt} tokens but the context holds {} (including the answer); \
             shorten the prompt or start the server with a larger --ctx-size",
            state.n_ctx
        )));
    }
    let g = &job.generation;
    let (tx, rx) = mpsc::unbounded_channel();
    let submissions = (0..g.n)
        .map(|index| {
            let mut sampler = g.sampler.clone();
            sampler.seed = sampler.seed.wrapping_add(index as u64);
            let request = Request {
                prompt_ids: job.prompt_ids.clone(),
                sampler,
                max_tokens: g.max_tokens.unwrap_or(usize::MAX),
                stop: g.stop.clone(),
                top_logprobs: job.logprobs.map_or(0, |k| k.max(1)),
                ignore_eos: g.ignore_eos,
                constraint: job.constraint.clone(),
                prompt_scoring: None,
            };
            Submission {
                request,
                sink: Box::new(ChannelSink {
                    index,
                    tx: tx.clone(),
                }),
            }
        })
        .collect();
    drop(tx);
    state.engine.submit(submissions).map_err(|e| match e {
        SubmitError::QueueFull { .. } => ApiError::busy(e.to_string()),
        SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })?;
    let answer = Answer::new(&state, &job);
    if job.generation.stream {
        stream(state, answer, rx).await
    } else {
        collect(state, answer, rx).await
    }
}

/// A request the engine would not run is the client's to fix; a failed step is ours.
fn rejected(err: EngineError) -> ApiError {
    match err {
        EngineError::StepFailed(_) => ApiError::internal(err.to_string()),
        _ => ApiError::bad_request(err.to_string()),
    }
}

/// A generated token, its log-probability and its best alternatives.
struct TokenLogprob {
    token: u32,
    logprob: f32,
    top: Vec<(u32, f32)>,
}

/// A chat answer read as it is generated: reasoning, text and function calls.
enum Reply {
    /// From a harmony model's ids.
    Harmony(ReplyAssembler),
    /// From a template model's text (thinking models, function calls).
    Text(TextReply),
}

impl Reply {
    fn reply(&self) -> &AssistantReply {
        match self {
            Reply::Harmony(assembler) => assembler.reply(),
            Reply::Text(text) => text.reply(),
        }
    }

    fn finish(&mut self) -> Vec<ReplyDelta> {
        match self {
            Reply::Harmony(assembler) => assembler.finish(),
            Reply::Text(text) => text.finish(),
        }
    }
}

/// One choice as it grows.
#[derive(Default)]
struct Choice {
    text: String,
    n_tokens: usize,
    /// Of each generated token, when asked for.
    logprobs: Vec<TokenLogprob>,
    finish: Option<FinishReason>,
    last_token_at: Option<Instant>,
    started: bool,
    /// Chats that are more than text: the reply read from the output (`text` then only
    /// keeps the raw output).
    reply: Option<Reply>,
}

/// The state of a whole answer, and how to write it.
struct Answer {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    n_prompt: usize,
    logprobs: Option<usize>,
    include_usage: bool,
    started: Instant,
    choices: Vec<Choice>,
}

impl Answer {
    fn new(state: &AppState, job: &Job) -> Answer {
        let prefix = match job.kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Answer {
            kind: job.kind,
            id: format!("{prefix}-{}", state.next_request_id()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: state.model_id.clone(),
            n_prompt: job.prompt_ids.len(),
            logprobs: job.logprobs,
            include_usage: job.generation.include_usage,
            started: Instant::now(),
            choices: (0..job.generation.n)
                .map(|_| Choice {
                    reply: match job.kind {
                        Kind::Completion => None,
                        Kind::Chat if job.harmony => Some(Reply::Harmony(ReplyAssembler::new())),
                        Kind::Chat if job.think.is_some() || job.tool_format.is_some() => {
                            Some(Reply::Text(TextReply::new(job.think, job.tool_format)))
                        }
                        Kind::Chat => None,
                    },
                    ..Choice::default()
                })
                .collect(),
        }
    }

    fn done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    /// Adds an event to its choice, timing it; returns the pieces of the reply (chats that
    /// are more than text) it completed.
    fn update(&mut self, state: &AppState, index: usize, event: &Event) -> Vec<ReplyDelta> {
        let mut deltas = Vec::new();
        let Some(choice) = self.choices.get_mut(index) else {
            return deltas;
        };
        if let Some(token) = event.token {
            let now = Instant::now();
            match choice.last_token_at {
                None => state.metrics.observe_ttft(now - self.started),
                Some(t) => state.metrics.observe_inter_token(now - t),
            }
            choice.last_token_at = Some(now);
            choice.n_tokens += 1;
            if let (Some(k), Some(lp)) = (self.logprobs, event.logprob) {
                let top = event.top_logprobs.iter().take(k).copied().collect();
                choice.logprobs.push(TokenLogprob {
                    token,
                    logprob: lp,
                    top,
                });
            }
            if let Some(Reply::Harmony(assembler)) = &mut choice.reply {
                deltas.extend(assembler.push(&state.tokenizer, token));
            }
        }
        choice.text.push_str(&event.text);
        if let Some(Reply::Text(reply)) = &mut choice.reply {
            deltas.extend(reply.push(&event.text));
        }
        if event.finished.is_some() {
            choice.finish = event.finished;
            if let Some(reply) = &mut choice.reply {
                deltas.extend(reply.finish());
            }
        }
        deltas
    }

    fn tool_call_id(&self, choice: usize, index: usize) -> String {
        harmony_answer::tool_call_id(&self.id, choice, index)
    }

    /// `finish_reason` of a choice: "tool_calls" when its reply called tools.
    fn finish_json(&self, choice: &Choice, finish: Option<FinishReason>) -> Value {
        let reason = finish_reason(finish);
        match &choice.reply {
            Some(reply) => harmony_answer::finish_reason(reply.reply(), reason),
            None => reason,
        }
    }

    fn usage(&self) -> Value {
        let completion: usize = self.choices.iter().map(|c| c.n_tokens).sum();
        json!({
            "prompt_tokens": self.n_prompt,
            "completion_tokens": completion,
            "total_tokens": self.n_prompt + completion,
        })
    }

    /// The log-probabilities of `entries` in the shape of this answer's API.
    fn logprobs_json(&self, state: &AppState, entries: &[TokenLogprob]) -> Value {
        if self.logprobs.is_none() {
            return Value::Null;
        }
        let piece = |id: u32| state.tokenizer.token_bytes(id).unwrap_or_default();
        let text = |id: u32| String::from_utf8_lossy(&piece(id)).into_owned();
        match self.kind {
            Kind::Chat => {
                let content: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        json!({
                            "token": text(e.token),
                            "logprob": e.logprob,
                            "bytes": piece(e.token),
                            "top_logprobs": e.top.iter().map(|(t, l)| json!({
                                "token": text(*t), "logprob": l, "bytes": piece(*t),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({ "content": content })
            }
            Kind::Completion => {
                let tokens: Vec<String> = entries.iter().map(|e| text(e.token)).collect();
                let mut offset = 0;
                let offsets: Vec<usize> = tokens
                    .iter()
                    .map(|t| {
                        let at = offset;
                        offset += t.len();
                        at
                    })
                    .collect();
                json!({
                    "tokens": tokens,
                    "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
                    "top_logprobs": entries.iter().map(|e| {
                        e.top.iter().map(|(t, l)| (text(*t), json!(l))).collect::<serde_json::Map<_, _>>()
                    }).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }

    /// The whole answer once every choice has ended.
    fn whole(&self, state: &AppState) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let logprobs = self.logprobs_json(state, &c.logprobs);
                let finish = self.finish_json(c, c.finish);
                let message = match &c.reply {
                    Some(reply) => {
                        harmony_answer::message_json(reply.reply(), |i| self.tool_call_id(index, i))
                    }
                    None => json!({ "role": "assistant", "content": c.text }),
                };
                match self.kind {
                    Kind::Chat => json!({
                        "index": index,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }),
                    Kind::Completion => json!({
                        "index": index,
                        "text": c.text,
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }),
                }
            })
            .collect();
        json!({
            "id": self.id,
            "object": match self.kind { Kind::Chat => "chat.completion", Kind::Completion => "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        })
    }

    /// A streamed chunk carrying `choices`.
    fn chunk(&self, choices: Vec<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": match self.kind { Kind::Chat => "chat.completion.chunk", Kind::Completion => "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The chunks one event turns into.
    fn event_chunks(&mut self, state: &AppState, index: usize, event: &Event) -> Vec<Value> {
        let before = self.choices.get(index).map_or(0, |c| c.logprobs.len());
        let deltas = self.update(state, index, event);
        let Some(choice) = self.choices.get(index) else {
            return Vec::new();
        };
        let new_logprobs = &choice.logprobs[before.min(choice.logprobs.len())..];
        let mut chunks = Vec::new();
        let first = !choice.started;
        let has_content = !event.text.is_empty() || !new_logprobs.is_empty();
        let logprobs = self.logprobs_json(state, new_logprobs);
        match self.kind {
            Kind::Chat => {
                if first {
                    chunks.push(self.chunk(vec![json!({
                        "index": index,
                        "delta": { "role": "assistant", "content": "" },
                        "logprobs": Value::Null,
                        "finish_reason": Value::Null,
                    })]));
                }
                if choice.reply.is_some() {
                    // One chunk per piece of the reply; the token's log-probabilities ride
                    // on the first (or on an empty delta when the token added no text).
                    let mut logprobs = Some(logprobs).filter(|l| !l.is_null());
                    for delta in &deltas {
                        chunks.push(self.chunk(vec![json!({
                            "index": index,
                            "delta": harmony_answer::delta_json(delta, |i| self.tool_call_id(index, i)),
                            "logprobs": logprobs.take().unwrap_or(Value::Null),
                            "finish_reason": Value::Null,
                        })]));
                    }
                    if let Some(logprobs) = logprobs {
                        chunks.push(self.chunk(vec![json!({
                            "index": index,
                            "delta": {},
                            "logprobs": logprobs,
                            "finish_reason": Value::Null,
                        })]));
                    }
                } else if has_content {
                    chunks.push(self.chunk(vec![json!({
                        "index": index,
                        "delta": { "content": event.text },
                        "logprobs": logprobs,
                        "finish_reason": Value::Null,
                    })]));
                }
                if event.finished.is_some() {
                    chunks.push(self.chunk(vec![json!({
                        "index": index,
                        "delta": {},
                        "logprobs": Value::Null,
                        "finish_reason": self.finish_json(choice, event.finished),
                    })]));
                }
            }
            Kind::Completion => {
                if has_content || event.finished.is_some() {
                    chunks.push(self.chunk(vec![json!({
                        "index": index,
                        "text": event.text,
                        "logprobs": logprobs,
                        "finish_reason": event.finished.map(|f| finish_reason(Some(f))),
                    })]));
                }
            }
        }
        if let Some(choice) = self.choices.get_mut(index) {
            choice.started = true;
        }
        chunks
    }
}

fn finish_reason(finish: Option<FinishReason>) -> Value {
    match finish {
        None => Value::Null,
        Some(FinishReason::Stop) => json!("stop"),
        Some(FinishReason::Length | FinishReason::ContextFull) => json!("length"),
        Some(FinishReason::Cancelled) => json!("cancelled"),
    }
}

type Events = mpsc::UnboundedReceiver<(usize, ServiceEvent)>;

/// Waits for every choice to end and answers at once.
async fn collect(
    state: Arc<AppState>,
    mut answer: Answer,
    mut rx: Events,
) -> Result<Response, ApiError> {
    while !answer.done() {
        match rx.recv().await {
            Some((_, ServiceEvent::Rejected(err))) => return Err(rejected(err)),
            Some((index, ServiceEvent::Event(event))) => {
                answer.update(&state, index, &event);
            }
            None => return Err(ApiError::unavailable("the engine stopped")),
        }
    }
    Ok(Json(answer.whole(&state)).into_response())
}

/// Answers with server-sent events: `data: {chunk}` lines, then `data: [DONE]`.
async fn stream(
    state: Arc<AppState>,
    mut answer: Answer,
    mut rx: Events,
) -> Result<Response, ApiError> {
    // A request the engine refuses is still a plain error: wait for its first word.
    let first = match rx.recv().await {
        Some((_, ServiceEvent::Rejected(err))) => return Err(rejected(err)),
        Some((index, ServiceEvent::Event(event))) => (index, event),
        None => return Err(ApiError::unavailable("the engine stopped")),
    };
    let (out, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let mut pending = Some(first);
        loop {
            let (index, event) = match pending.take() {
                Some(first) => first,
                None => {
                    let next = tokio::select! {
                        next = rx.recv() => next,
                        // The client went away: dropping `rx` cancels the sequences.
                        _ = out.closed() => return,
                    };
                    match next {
                        Some((index, ServiceEvent::Event(event))) => (index, event),
                        Some((_, ServiceEvent::Rejected(err))) => {
                            let data = rejected(err).to_json();
                            let _ = out
                                .send(Ok(SseEvent::default().data(data.to_string())))
                                .await;
                            return;
                        }
                        None => return,
                    }
                }
            };
            for chunk in answer.event_chunks(&state, index, &event) {
                if out
                    .send(Ok(SseEvent::default().data(chunk.to_string())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if answer.done() {
                break;
            }
        }
        if answer.include_usage {
            let mut chunk = answer.chunk(Vec::new());
            chunk["usage"] = answer.usage();
            let _ = out
                .send(Ok(SseEvent::default().data(chunk.to_string())))
                .await;
        }
        let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Ok(Sse::new(ReceiverStream::new(out_rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}
