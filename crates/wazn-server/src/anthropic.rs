//! Anthropic's Messages API over the same engine as chat completions: `POST /v1/messages`,
//! whole or streamed as server-sent events with event names, and `POST
//! /v1/messages/count_tokens`. The request is read into a chat completions body
//! ([`anthropic_request`]), made into the same job (template or harmony, tool formats,
//! grammars, reasoning readers), and its answer read piece by piece ([`ChatRun`]) into content
//! blocks ([`ContentBlocks`]). Errors are in Anthropic's shape, before the stream as a status,
//! after it began as an `error` event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::anthropic_blocks::ContentBlocks;
use crate::anthropic_request::{self, Purpose};
use crate::chat_run::{ChatRun, Ending};
use crate::error::{AnthropicError, ApiError};
use crate::routes;
use crate::AppState;

/// How often a stream with nothing else to say sends a `ping` event.
const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let body = routes::body_bytes(body, state.body_limit_bytes)?;
    let mut request = anthropic_request::read(&body, Purpose::Answer)?;
    // Clients written for Anthropic's models ask for more than a local context holds (Claude
    // Code: 32,000 tokens). The answer is bounded by the context instead and, if it gets
    // there, ends with `model_context_window_exceeded`, as Anthropic's API does.
    if let Some(max_tokens) = request.chat.get_mut("max_tokens") {
        if max_tokens.as_u64().is_some_and(|n| n > state.n_ctx as u64) {
            *max_tokens = json!(state.n_ctx);
        }
    }
    let job = routes::chat_job_from_value(&state, &request.chat).await?;
    let message = MessageHead::new(&state);
    // Started before answering, so that a request the engine refuses is a plain error.
    let run = ChatRun::start(Arc::clone(&state), job).await?;
    if request.stream {
        Ok(stream(run, message))
    } else {
        whole(run, message).await
    }
}

/// `POST /v1/messages/count_tokens`: the prompt's length as `/v1/messages` would count it.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let body = routes::body_bytes(body, state.body_limit_bytes)?;
    let request = anthropic_request::read(&body, Purpose::CountTokens)?;
    let job = routes::chat_job_from_value(&state, &request.chat).await?;
    let input_tokens = job.prompts.first().map_or(0, |p| p.ids.len());
    Ok(Json(json!({ "input_tokens": input_tokens })).into_response())
}

/// What names an answer: its id and the model.
struct MessageHead {
    id: String,
    model: String,
}

impl MessageHead {
    /// The id joins the server's start time to a counter, so that ids (and the `tool_use` ids
    /// made from them, which a client keeps in its conversation) do not repeat after a restart.
    fn new(state: &AppState) -> MessageHead {
        MessageHead {
            id: format!("msg_{}{:06}", state.created, state.next_request_id()),
            model: state.model_id.clone(),
        }
    }

    /// `toolu_<message>` then the call's place in the answer.
    fn tool_id_prefix(&self) -> String {
        format!("toolu_{}", self.id.trim_start_matches("msg_"))
    }

    /// The message object; `stop` is `None` while the answer runs.
    fn to_json(
        &self,
        content: Value,
        stop: Option<&Stop>,
        input_tokens: usize,
        output_tokens: usize,
    ) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop.map(|s| s.reason),
            "stop_sequence": stop.and_then(|s| s.sequence.clone()),
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        })
    }
}

/// `stop_reason` and `stop_sequence`.
struct Stop {
    reason: &'static str,
    sequence: Option<String>,
}

impl Stop {
    /// Why the answer ended, in the Messages API's words; an answer that called tools and ended
    /// by itself waits for their results.
    fn of(ending: Option<&Ending>, called_tools: bool) -> Result<Stop, ApiError> {
        let reason = |reason| Stop {
            reason,
            sequence: None,
        };
        match ending {
            Some(Ending::EndOfTurn) if called_tools => Ok(reason("tool_use")),
            Some(Ending::EndOfTurn) => Ok(reason("end_turn")),
            Some(Ending::StopString(s)) => Ok(Stop {
                reason: "stop_sequence",
                sequence: Some(s.clone()),
            }),
            Some(Ending::MaxTokens) => Ok(reason("max_tokens")),
            Some(Ending::ContextFull) => Ok(reason("model_context_window_exceeded")),
            Some(Ending::Cancelled) => Err(ApiError::unavailable(
                "the answer was cancelled: the server is stopping",
            )),
            None => Err(ApiError::internal("the answer ended without a reason")),
        }
    }
}

/// Reads the whole answer and gives it as one message.
async fn whole(mut run: ChatRun, message: MessageHead) -> Result<Response, AnthropicError> {
    let mut blocks = ContentBlocks::new(message.tool_id_prefix());
    while let Some(deltas) = run.next().await? {
        for delta in deltas {
            blocks.push(delta);
        }
    }
    blocks.finish();
    let stop = Stop::of(run.ending(), blocks.has_tool_use())?;
    let body = message.to_json(
        blocks.to_json(),
        Some(&stop),
        run.prompt_tokens,
        run.completion_tokens,
    );
    Ok(Json(body).into_response())
}

/// One server-sent event, named after its `type`.
fn sse_event(data: &Value) -> Result<SseEvent, Infallible> {
    let name = data["type"].as_str().unwrap_or("message");
    Ok(SseEvent::default().event(name).data(data.to_string()))
}

/// Streams the answer: `message_start`, a `ping`, the content blocks' events, `message_delta`
/// (why it stopped, the tokens written) and `message_stop`. A failure once the stream has begun
/// is an `error` event, and the stream ends there.
fn stream(mut run: ChatRun, message: MessageHead) -> Response {
    let (out, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let started = json!({
            "type": "message_start",
            "message": message.to_json(json!([]), None, run.prompt_tokens, 0),
        });
        for event in [started, json!({"type": "ping"})] {
            if out.send(sse_event(&event)).await.is_err() {
                return;
            }
        }
        let mut blocks = ContentBlocks::new(message.tool_id_prefix());
        loop {
            let next = tokio::select! {
                next = run.next() => next,
                // The client went away: dropping `run` cancels the sequence.
                _ = out.closed() => return,
            };
            let events: Vec<Value> = match next {
                Ok(Some(deltas)) => deltas.into_iter().flat_map(|d| blocks.push(d)).collect(),
                Ok(None) => break,
                Err(err) => {
                    let _ = out.send(sse_event(&AnthropicError(err).to_json())).await;
                    return;
                }
            };
            for event in &events {
                if out.send(sse_event(event)).await.is_err() {
                    return;
                }
            }
        }
        let mut events = blocks.finish();
        match Stop::of(run.ending(), blocks.has_tool_use()) {
            Ok(stop) => {
                events.push(json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop.reason, "stop_sequence": stop.sequence},
                    "usage": {"output_tokens": run.completion_tokens},
                }));
                events.push(json!({"type": "message_stop"}));
            }
            Err(err) => events.push(AnthropicError(err).to_json()),
        }
        for event in &events {
            if out.send(sse_event(event)).await.is_err() {
                return;
            }
        }
    });
    // While a long prompt is read no content event comes for minutes. Anthropic's API sends
    // `ping` events meanwhile, and its clients time out a stream that carries no events
    // (comments do not count), so the keep-alive is a real `ping` event.
    let ping = SseEvent::default().event("ping").data(r#"{"type":"ping"}"#);
    Sse::new(ReceiverStream::new(out_rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE_INTERVAL).event(ping))
        .into_response()
}
