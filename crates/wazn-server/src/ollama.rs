//! Ollama's native generation routes, `/api/chat` and `/api/generate`, on the same engine as
//! the OpenAI routes: a request becomes a job ([`ollama_request`]), its answer is read piece
//! by piece ([`ChatRun`]) and written as Ollama writes it: NDJSON lines (the default) or one
//! object, the last with `done: true`, why it ended and what it took (durations in
//! nanoseconds). Function calls are given whole, each in a line once complete, with their
//! arguments as an object.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wazn_text::harmony::{ReplyDelta, ReplyToolCall};

use crate::chat_run::{ChatRun, Ending};
use crate::error::{ApiError, OllamaError};
use crate::generate;
use crate::ollama_info::rfc3339;
use crate::ollama_request::{self, Planned};
use crate::routes::body_bytes;
use crate::AppState;

/// Which route a request came through: it names the answer's text `message` or `response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Chat,
    Generate,
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let received = Instant::now();
    let body = body_bytes(body, state.body_limit_bytes)?;
    let planned = ollama_request::chat(&state, &body).await?;
    Ok(answer(state, planned, Route::Chat, received).await?)
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let received = Instant::now();
    let body = body_bytes(body, state.body_limit_bytes)?;
    let planned = ollama_request::generate(&state, &body).await?;
    Ok(answer(state, planned, Route::Generate, received).await?)
}

/// The lines of one answer as it grows.
struct Lines {
    route: Route,
    model: String,
    show_thinking: bool,
    received: Instant,
    /// When the engine was handed the job, and when it gave the first token.
    submitted: Instant,
    first_token_at: Option<Instant>,
    /// Calls begun but not yet given (their arguments may still grow).
    open_calls: Vec<ReplyToolCall>,
    /// Calls given so far.
    n_calls_given: usize,
}

impl Lines {
    fn head(&self) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("model".into(), json!(self.model));
        line.insert("created_at".into(), json!(rfc3339(SystemTime::now())));
        line
    }

    /// A line carrying `content`, `thinking` and `calls` (whichever are not empty).
    fn text_line(&self, content: &str, thinking: &str, calls: &[ReplyToolCall]) -> Value {
        let mut line = self.head();
        let thinking = Some(thinking).filter(|t| self.show_thinking && !t.is_empty());
        match self.route {
            Route::Chat => {
                let mut message = json!({"role": "assistant", "content": content});
                if let Some(thinking) = thinking {
                    message["thinking"] = json!(thinking);
                }
                if !calls.is_empty() {
                    message["tool_calls"] = Value::Array(calls.iter().map(call_json).collect());
                }
                line.insert("message".into(), message);
            }
            Route::Generate => {
                line.insert("response".into(), json!(content));
                if let Some(thinking) = thinking {
                    line.insert("thinking".into(), json!(thinking));
                }
            }
        }
        line.insert("done".into(), json!(false));
        Value::Object(line)
    }

    /// The line of one step's pieces, or `None` when they hold nothing to give yet. A call is
    /// given once the next one begins or the answer ends.
    fn step_line(&mut self, deltas: &[ReplyDelta], ended: bool) -> Option<Value> {
        let (mut content, mut thinking) = (String::new(), String::new());
        for delta in deltas {
            match delta {
                ReplyDelta::Content(text) => content.push_str(text),
                ReplyDelta::Reasoning(text) => thinking.push_str(text),
                ReplyDelta::ToolCallStart { index, name } => {
                    let at = index.saturating_sub(self.n_calls_given);
                    if self.open_calls.len() <= at {
                        self.open_calls.resize_with(at + 1, ReplyToolCall::default);
                    }
                    self.open_calls[at].name = name.clone();
                }
                ReplyDelta::ToolCallArguments { index, arguments } => {
                    let at = index.saturating_sub(self.n_calls_given);
                    if self.open_calls.len() <= at {
                        self.open_calls.resize_with(at + 1, ReplyToolCall::default);
                    }
                    self.open_calls[at].arguments.push_str(arguments);
                }
            }
        }
        let n_complete = if ended {
            self.open_calls.len()
        } else {
            self.open_calls.len().saturating_sub(1)
        };
        let calls: Vec<ReplyToolCall> = self.open_calls.drain(..n_complete).collect();
        self.n_calls_given += calls.len();
        let thinking_shown = self.show_thinking && !thinking.is_empty();
        if content.is_empty() && !thinking_shown && calls.is_empty() {
            return None;
        }
        Some(self.text_line(&content, &thinking, &calls))
    }

    /// The closing line: why the answer ended and what it took. `whole` carries the whole
    /// reply (answers that are not streamed), else the text is empty.
    fn done_line(&self, run: &ChatRun, whole: bool) -> Value {
        let ended_at = Instant::now();
        let mut line = if whole {
            let reply = run.reply();
            let mut line = self.text_line(&reply.content, &reply.reasoning, &reply.tool_calls);
            if let (Route::Chat, Some(message)) = (self.route, line.get_mut("message")) {
                // The whole message is given even when empty.
                message["content"] = json!(reply.content);
            }
            line
        } else {
            self.text_line("", "", &[])
        };
        let first = self.first_token_at.unwrap_or(ended_at);
        // A cancelled answer never gets here: a client that went away reads nothing, and the
        // answers the server's shutdown cuts short end in an error instead.
        let done_reason = match run.ending() {
            Some(ending) if ending.is_truncated() => "length",
            _ => "stop",
        };
        line["done"] = json!(true);
        line["done_reason"] = json!(done_reason);
        line["total_duration"] = nanos(ended_at - self.received);
        // The model is loaded when the server starts; no request waits for it.
        line["load_duration"] = json!(0);
        line["prompt_eval_count"] = json!(run.prompt_tokens);
        line["prompt_eval_duration"] = nanos(first.saturating_duration_since(self.submitted));
        line["eval_count"] = json!(run.completion_tokens);
        line["eval_duration"] = nanos(ended_at.saturating_duration_since(first));
        line
    }

    fn note_tokens(&mut self, run: &ChatRun) {
        if self.first_token_at.is_none() && run.completion_tokens > 0 {
            self.first_token_at = Some(Instant::now());
        }
    }
}

fn nanos(d: Duration) -> Value {
    json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A call as Ollama gives it: arguments as an object. Arguments that are not a JSON object
/// (a model that broke its format) are given as the text it wrote.
fn call_json(call: &ReplyToolCall) -> Value {
    let arguments = serde_json::from_str::<Value>(&call.arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            if call.arguments.trim().is_empty() {
                json!({})
            } else {
                json!(call.arguments)
            }
        });
    json!({"function": {"name": call.name, "arguments": arguments}})
}

/// Runs the job and answers, whole or as NDJSON lines.
async fn answer(
    state: Arc<AppState>,
    planned: Planned,
    route: Route,
    received: Instant,
) -> Result<Response, ApiError> {
    let Planned {
        model,
        stream,
        show_thinking,
        job,
    } = planned;
    let mut lines = Lines {
        route,
        model,
        show_thinking,
        received,
        submitted: Instant::now(),
        first_token_at: None,
        open_calls: Vec::new(),
        n_calls_given: 0,
    };
    let Some(job) = job else {
        // An empty prompt asks Ollama to load the model; here it is loaded already.
        let mut line = lines.text_line("", "", &[]);
        line["done"] = json!(true);
        line["done_reason"] = json!("load");
        return Ok(if stream {
            ndjson_of_lines(vec![line])
        } else {
            Json(line).into_response()
        });
    };
    // A request the engine refuses is a plain error, before any line.
    let mut run = ChatRun::start(state, job).await?;
    if !stream {
        while run.next().await?.is_some() {
            lines.note_tokens(&run);
        }
        if run.ending() == Some(&Ending::Cancelled) {
            return Err(generate::cut_short());
        }
        return Ok(Json(lines.done_line(&run, true)).into_response());
    }
    let (out, out_rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = run.next() => next,
                // The client went away: dropping `run` cancels the sequence.
                _ = out.closed() => return,
            };
            let line = match next {
                // Ollama has no done reason for this: the stream ends in an error line, which
                // its clients raise.
                Ok(Some(_)) if run.ending() == Some(&Ending::Cancelled) => {
                    Some(json!({"error": generate::cut_short().message}))
                }
                Ok(Some(deltas)) => {
                    lines.note_tokens(&run);
                    lines.step_line(&deltas, run.ending().is_some())
                }
                Ok(None) => break,
                Err(err) => Some(json!({"error": err.message})),
            };
            let failed = line.as_ref().is_some_and(|l| l.get("error").is_some());
            if let Some(line) = line {
                if out.send(Ok(ndjson_line(&line))).await.is_err() || failed {
                    return;
                }
            }
        }
        let _ = out
            .send(Ok(ndjson_line(&lines.done_line(&run, false))))
            .await;
    });
    Ok(ndjson_response(Body::from_stream(ReceiverStream::new(
        out_rx,
    ))))
}

fn ndjson_line(line: &Value) -> Bytes {
    let mut text = line.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn ndjson_of_lines(lines: Vec<Value>) -> Response {
    let text: Vec<u8> = lines.iter().flat_map(|l| ndjson_line(l).to_vec()).collect();
    ndjson_response(Body::from(text))
}

fn ndjson_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}
