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

use crate::completion_echo::{self, EchoedPrompt};
use crate::completion_prompt::Prompt;
use crate::completions_logprobs::{self, Row, Segment};
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
    /// One prompt (chats), or several (completions): `generation.n` choices each, one prompt
    /// after the other.
    pub prompts: Vec<Prompt>,
    /// Completions: each choice's text (and log-probabilities) starts with its prompt's.
    pub echo: bool,
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

/// Checks the prompts against the context, submits the `n` choices of each and answers.
pub async fn run(state: Arc<AppState>, job: Job) -> Result<Response, ApiError> {
    let rx = submit(&state, &job)?;
    let answer = Answer::new(&state, &job);
    if job.generation.stream {
        stream(state, answer, rx).await
    } else {
        collect(state, answer, rx).await
    }
}

/// Checks the prompts against the context and hands the `n` choices of each to the engine;
/// their events arrive tagged with the choice's index (`n` per prompt, prompt after prompt).
pub(crate) fn submit(state: &AppState, job: &Job) -> Result<Events, ApiError> {
    check_prompts(state, job)?;
    let g = &job.generation;
    // With echo and logprobs, each prompt's first choice scores the prompt's tokens.
    let scoring = job.logprobs.filter(|_| job.echo);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut submissions = Vec::with_capacity(job.prompts.len() * g.n);
    for (p, prompt) in job.prompts.iter().enumerate() {
        for choice in 0..g.n {
            let mut sampler = g.sampler.clone();
            sampler.seed = sampler.seed.wrapping_add(choice as u64);
            let request = Request {
                prompt_ids: prompt.ids.clone(),
                sampler,
                max_tokens: g.max_tokens.unwrap_or(usize::MAX),
                stop: g.stop.clone(),
                top_logprobs: job.logprobs.map_or(0, |k| k.max(1)),
                ignore_eos: g.ignore_eos,
                constraint: job.constraint.clone(),
                prompt_scoring: scoring
                    .filter(|_| choice == 0)
                    .map(completion_echo::scoring),
                embedding: None,
            };
            submissions.push(Submission {
                request,
                sink: Box::new(ChannelSink {
                    index: p * g.n + choice,
                    tx: tx.clone(),
                }),
            });
        }
    }
    drop(tx);
    state.engine.submit(submissions).map_err(|e| match e {
        SubmitError::QueueFull { .. } => ApiError::busy(e.to_string()),
        SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })?;
    Ok(rx)
}

/// Each prompt has tokens and leaves room in the context; all the choices fit in the server's
/// queue at once.
fn check_prompts(state: &AppState, job: &Job) -> Result<(), ApiError> {
    let several = job.prompts.len() > 1;
    for (i, prompt) in job.prompts.iter().enumerate() {
        let name = if several {
            format!("prompt[{i}]")
        } else {
            "the prompt".to_string()
        };
        let n_prompt = prompt.ids.len();
        if n_prompt == 0 {
            return Err(ApiError::invalid_param(
                "prompt",
                format!("{name} is empty"),
            ));
        }
        if n_prompt >= state.n_ctx {
            return Err(ApiError::bad_request(format!(
                "{name} is {n_prompt} tokens but the context holds {} (including the answer); \
                 shorten the prompt or start the server with a larger --ctx-size",
                state.n_ctx
            )));
        }
    }
    let n_sequences = job.prompts.len() * job.generation.n;
    if n_sequences > state.max_sequences {
        return Err(ApiError::invalid_param(
            if several { "prompt" } else { "n" },
            format!(
                "{} prompts of {} choices each make {n_sequences} sequences; this server takes \
                 at most {} at once (--max-concurrent plus --max-queued)",
                job.prompts.len(),
                job.generation.n,
                state.max_sequences
            ),
        ));
    }
    Ok(())
}

/// A request the engine would not run is the client's to fix; a failed step is ours.
pub(crate) fn rejected(err: EngineError) -> ApiError {
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
pub(crate) enum Reply {
    /// From a harmony model's ids.
    Harmony(ReplyAssembler),
    /// From a template model's text (thinking models, function calls).
    Text(TextReply),
}

impl Reply {
    /// The reader of a chat job's answer, when it is more than text.
    pub(crate) fn of(job: &Job) -> Option<Reply> {
        match job.kind {
            Kind::Completion => None,
            Kind::Chat if job.harmony => Some(Reply::Harmony(ReplyAssembler::new())),
            Kind::Chat if job.think.is_some() || job.tool_format.is_some() => {
                Some(Reply::Text(TextReply::new(job.think, job.tool_format)))
            }
            Kind::Chat => None,
        }
    }

    /// The pieces of the reply that `token` (whose text is `text`) completes.
    pub(crate) fn push(
        &mut self,
        state: &AppState,
        token: Option<u32>,
        text: &str,
    ) -> Vec<ReplyDelta> {
        match self {
            Reply::Harmony(assembler) => token
                .map(|t| assembler.push(&state.tokenizer, t))
                .unwrap_or_default(),
            Reply::Text(reply) => reply.push(text),
        }
    }

    pub(crate) fn reply(&self) -> &AssistantReply {
        match self {
            Reply::Harmony(assembler) => assembler.reply(),
            Reply::Text(text) => text.reply(),
        }
    }

    pub(crate) fn finish(&mut self) -> Vec<ReplyDelta> {
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
    /// Streamed completions: characters of text sent so far.
    sent_chars: usize,
    /// Streamed completions with echo: the prompt was sent.
    echoed: bool,
    /// Streamed completions with echo: events held until the prompt's scores are in.
    pending: Vec<Event>,
}

/// The state of a whole answer, and how to write it.
struct Answer {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    /// `n` choices each, one prompt after the other.
    prompts: Vec<EchoedPrompt>,
    /// Choices per prompt.
    n: usize,
    echo: bool,
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
            prompts: job
                .prompts
                .iter()
                .map(|p| EchoedPrompt::new(p.clone(), job.echo && job.logprobs.is_some()))
                .collect(),
            n: job.generation.n,
            echo: job.echo,
            logprobs: job.logprobs,
            include_usage: job.generation.include_usage,
            started: Instant::now(),
            choices: (0..job.prompts.len() * job.generation.n)
                .map(|_| Choice {
                    reply: Reply::of(job),
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
        if let Some(prompt) = self.prompts.get_mut(index / self.n.max(1)) {
            if !event.prompt_scores.is_empty() {
                prompt.add(&event.prompt_scores);
            }
            if event.finished.is_some() && index.is_multiple_of(self.n.max(1)) {
                prompt.close();
            }
        }
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
        }
        choice.text.push_str(&event.text);
        if let Some(reply) = &mut choice.reply {
            deltas.extend(reply.push(state, event.token, &event.text));
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

    /// Each prompt counts once, whatever its number of choices (as vLLM counts).
    fn usage(&self) -> Value {
        let prompt: usize = self.prompts.iter().map(|p| p.prompt.ids.len()).sum();
        let completion: usize = self.choices.iter().map(|c| c.n_tokens).sum();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        })
    }

    /// The prompt of choice `index`.
    fn prompt_of(&self, index: usize) -> Option<&EchoedPrompt> {
        self.prompts.get(index / self.n.max(1))
    }

    /// A completion's log-probabilities: of `prompt`'s tokens when echoed, then of the
    /// `generated` ones (whose text is `text`); offsets count on from `start` characters.
    fn completion_logprobs(
        &self,
        state: &AppState,
        prompt: Option<&EchoedPrompt>,
        generated: &[TokenLogprob],
        text: &str,
        start: usize,
    ) -> Value {
        let Some(k) = self.logprobs else {
            return Value::Null;
        };
        let mut segments = Vec::with_capacity(2);
        if let Some(prompt) = prompt {
            segments.push(Segment {
                rows: prompt.rows(),
                text: &prompt.prompt.text,
            });
        }
        segments.push(Segment {
            rows: generated
                .iter()
                .map(|e| Row {
                    token: e.token,
                    logprob: Some(e.logprob),
                    top: &e.top,
                })
                .collect(),
            text,
        });
        completions_logprobs::legacy_json(&state.tokenizer, k, &segments, start)
    }

    /// A chat's log-probabilities of `entries`.
    fn chat_logprobs(&self, state: &AppState, entries: &[TokenLogprob]) -> Value {
        if self.logprobs.is_none() {
            return Value::Null;
        }
        let piece = |id: u32| state.tokenizer.token_bytes(id).unwrap_or_default();
        let text = |id: u32| String::from_utf8_lossy(&piece(id)).into_owned();
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

    /// The whole answer once every choice has ended.
    fn whole(&self, state: &AppState) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
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
                        "logprobs": self.chat_logprobs(state, &c.logprobs),
                        "finish_reason": finish,
                    }),
                    Kind::Completion => {
                        let prompt = self.prompt_of(index).filter(|_| self.echo);
                        let text = match prompt {
                            Some(p) => format!("{}{}", p.prompt.text, c.text),
                            None => c.text.clone(),
                        };
                        let logprobs =
                            self.completion_logprobs(state, prompt, &c.logprobs, &c.text, 0);
                        json!({
                            "index": index,
                            "text": text,
                            "logprobs": logprobs,
                            "finish_reason": finish,
                        })
                    }
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
        // A choice whose echoed prompt still waits for its scores (computed by the prompt's
        // first choice) holds its events until they are in.
        let waits = self.echo
            && !index.is_multiple_of(self.n.max(1))
            && self.prompt_of(index).is_some_and(|p| p.waiting);
        if let Some(choice) = self.choices.get_mut(index).filter(|_| waits) {
            choice.pending.push(event.clone());
            return Vec::new();
        }
        let before = self.choices.get(index).map_or(0, |c| c.logprobs.len());
        let deltas = self.update(state, index, event);
        let Some(choice) = self.choices.get(index) else {
            return Vec::new();
        };
        let new_logprobs = &choice.logprobs[before.min(choice.logprobs.len())..];
        let mut chunks = Vec::new();
        let first = !choice.started;
        let has_content = !event.text.is_empty() || !new_logprobs.is_empty();
        let logprobs = match self.kind {
            Kind::Chat => self.chat_logprobs(state, new_logprobs),
            Kind::Completion => Value::Null,
        };
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
                // With echo, the first chunk carries the prompt, once its scores are in.
                let prompt = self
                    .prompt_of(index)
                    .filter(|p| self.echo && !choice.echoed && !p.waiting);
                if has_content || event.finished.is_some() || prompt.is_some() {
                    let text = match prompt {
                        Some(p) => format!("{}{}", p.prompt.text, event.text),
                        None => event.text.clone(),
                    };
                    let start = if prompt.is_some() {
                        0
                    } else {
                        choice.sent_chars
                    };
                    let logprobs =
                        self.completion_logprobs(state, prompt, new_logprobs, &event.text, start);
                    chunks.push(self.chunk(vec![json!({
                        "index": index,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": event.finished.map(|f| finish_reason(Some(f))),
                    })]));
                    let echoed = prompt.is_some();
                    if let Some(choice) = self.choices.get_mut(index) {
                        choice.sent_chars += text.chars().count();
                        choice.echoed |= echoed;
                    }
                }
            }
        }
        if let Some(choice) = self.choices.get_mut(index) {
            choice.started = true;
        }
        chunks
    }

    /// The chunks of events held for prompts whose scores are now in.
    fn released_chunks(&mut self, state: &AppState) -> Vec<Value> {
        let mut chunks = Vec::new();
        for index in 0..self.choices.len() {
            let ready = self.prompt_of(index).is_some_and(|p| !p.waiting);
            if ready && !self.choices[index].pending.is_empty() {
                let pending = std::mem::take(&mut self.choices[index].pending);
                for event in &pending {
                    chunks.extend(self.event_chunks(state, index, event));
                }
            }
        }
        chunks
    }
}

/// Values from OpenAI's set only. A cancelled sequence never gets here: a client that went
/// away reads nothing, and the answers the server's shutdown cuts short end in
/// [`cut_short`] instead.
fn finish_reason(finish: Option<FinishReason>) -> Value {
    match finish {
        None | Some(FinishReason::Cancelled) => Value::Null,
        Some(FinishReason::Stop) => json!("stop"),
        Some(FinishReason::Length | FinishReason::ContextFull) => json!("length"),
    }
}

/// The error of an answer cut short because the server is stopping.
pub(crate) fn cut_short() -> ApiError {
    ApiError::unavailable("the server is stopping; this answer was cut short")
}

pub(crate) type Events = mpsc::UnboundedReceiver<(usize, ServiceEvent)>;

/// Waits for every choice to end and answers at once.
async fn collect(
    state: Arc<AppState>,
    mut answer: Answer,
    mut rx: Events,
) -> Result<Response, ApiError> {
    while !answer.done() {
        match rx.recv().await {
            Some((_, ServiceEvent::Rejected(err))) => return Err(rejected(err)),
            Some((_, ServiceEvent::Started)) => {}
            Some((_, ServiceEvent::Event(event)))
                if event.finished == Some(FinishReason::Cancelled) =>
            {
                return Err(cut_short());
            }
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
    // A request the engine refuses is still a plain error: wait for its admission (not its
    // first token, which a long prompt delays past clients' patience).
    let first = match rx.recv().await {
        Some((_, ServiceEvent::Rejected(err))) => return Err(rejected(err)),
        Some((_, ServiceEvent::Started)) => None,
        Some((index, ServiceEvent::Event(event))) => Some((index, event)),
        None => return Err(ApiError::unavailable("the engine stopped")),
    };
    let (out, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let mut pending = first;
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
                        Some((_, ServiceEvent::Started)) => continue,
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
            if event.finished == Some(FinishReason::Cancelled) {
                // OpenAI has no finish reason for this: the stream ends in an error event,
                // which the SDKs raise, and then `[DONE]` for clients that wait for it.
                let data = cut_short().to_json().to_string();
                let _ = out.send(Ok(SseEvent::default().data(data))).await;
                let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
                return;
            }
            let mut chunks = answer.event_chunks(&state, index, &event);
            chunks.extend(answer.released_chunks(&state));
            for chunk in chunks {
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
