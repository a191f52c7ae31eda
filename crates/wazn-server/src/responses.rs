//! OpenAI's Responses API (`POST /v1/responses`), the API Codex and the newer SDK calls speak.
//! A request's `instructions` and `input` items (messages, function calls and their outputs,
//! reasoning) are written as a chat completions conversation and run as one; the reply comes
//! back as `reasoning`, `message` and `function_call` items, whole or as typed stream events.
//! `previous_response_id` goes on from a conversation kept in memory ([`ResponseStore`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wazn_text::harmony::AssistantReply;

use crate::chat_run::{ChatRun, Ending};
use crate::error::ApiError;
use crate::response_store::ResponseStore;
use crate::responses_output::OutputBuilder;
use crate::routes::{body_bytes, chat_job_from_value, check_model_name};
use crate::wire;
use crate::AppState;

/// The fields of a Responses request wazn reads; the others (`include`, `metadata`,
/// `truncation`, `service_tier`, `prompt_cache_key`, `user`, …) are accepted and left.
#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    text: Option<TextConfig>,
    reasoning: Option<ReasoningConfig>,
    max_output_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    store: Option<bool>,
    previous_response_id: Option<String>,
    #[serde(default)]
    background: bool,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct TextConfig {
    format: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ReasoningConfig {
    effort: Option<String>,
}

/// What the answer repeats of its request.
struct Echo {
    instructions: Option<String>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    text_format: Value,
    effort: Option<String>,
    max_output_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    previous_response_id: Option<String>,
    store: bool,
    metadata: Value,
}

pub async fn create_response(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: ResponsesRequest = wire::parse_body(&body)?;
    check_model_name(&state, request.model.as_deref())?;
    if request.background {
        return Err(ApiError::invalid_param(
            "background",
            "background responses are not supported; leave background out or false",
        ));
    }
    let input = request
        .input
        .as_ref()
        .ok_or_else(|| ApiError::invalid_param("input", "input is required"))?;
    let mut conversation = match &request.previous_response_id {
        Some(id) => {
            state
                .responses
                .get(id)
                .ok_or_else(|| {
                    let mut err = ApiError::invalid_param(
                        "previous_response_id",
                        format!(
                            "previous response `{id}` is not kept by this server (it keeps \
                             recent responses in memory, and only those made with store)"
                        ),
                    );
                    err.status = axum::http::StatusCode::NOT_FOUND;
                    err
                })?
                .messages
        }
        None => Vec::new(),
    };
    conversation.extend(input_messages(input)?);
    let tools = function_tools(&request.tools)?;
    let chat = chat_body(&request, &conversation, &tools)?;
    let job = chat_job_from_value(&state, &chat).await?;
    let echo = Echo {
        instructions: request.instructions.clone(),
        tools: request
            .tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
            .cloned()
            .collect(),
        tool_choice: request.tool_choice.clone().unwrap_or(json!("auto")),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        text_format: request
            .text
            .as_ref()
            .and_then(|t| t.format.clone())
            .unwrap_or(json!({"type": "text"})),
        effort: request.reasoning.as_ref().and_then(|r| r.effort.clone()),
        max_output_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        previous_response_id: request.previous_response_id.clone(),
        store: request.store.unwrap_or(true),
        metadata: request.metadata.clone().unwrap_or(json!({})),
    };
    let run = ChatRun::start(Arc::clone(&state), job).await?;
    let answer = Answer {
        id: format!("resp_{:x}{:04x}", unix_seconds(), state.next_request_id()),
        created_at: unix_seconds(),
        model: state.model_id.clone(),
        echo,
        conversation,
    };
    if request.stream {
        Ok(stream(state, answer, run))
    } else {
        whole(state, answer, run).await
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The request as a chat completions body.
fn chat_body(
    request: &ResponsesRequest,
    conversation: &[Value],
    tools: &[Value],
) -> Result<Value, ApiError> {
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(instructions) = request.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(json!({ "role": "system", "content": instructions }));
    }
    messages.extend(conversation.iter().cloned());
    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(model) = &request.model {
        chat.insert("model".into(), json!(model));
    }
    if !tools.is_empty() {
        chat.insert("tools".into(), json!(tools));
        if let Some(choice) = &request.tool_choice {
            chat.insert("tool_choice".into(), chat_tool_choice(choice)?);
        }
    }
    if let Some(parallel) = request.parallel_tool_calls {
        chat.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if let Some(format) = request.text.as_ref().and_then(|t| t.format.as_ref()) {
        if let Some(response_format) = response_format(format)? {
            chat.insert("response_format".into(), response_format);
        }
    }
    if let Some(effort) = request.reasoning.as_ref().and_then(|r| r.effort.as_deref()) {
        // Harmony knows three efforts; the lighter names of the API ask for the least.
        let effort = match effort {
            "minimal" | "none" => "low",
            "xhigh" => "high",
            other => other,
        };
        chat.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(max) = request.max_output_tokens {
        if max < 1 {
            return Err(ApiError::invalid_param(
                "max_output_tokens",
                format!("max_output_tokens is {max}; it must be at least 1"),
            ));
        }
        chat.insert("max_tokens".into(), json!(max));
    }
    if let Some(t) = request.temperature {
        chat.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        chat.insert("top_p".into(), json!(p));
    }
    Ok(Value::Object(chat))
}

/// The function tools in chat completions' shape. Tools of other types (web search, file
/// search, shells, custom tools) are for the platform to run; wazn has none of them, so they
/// are left out with a warning rather than refused, as clients such as Codex send them anyway.
fn function_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid_param("tools", format!("tools[{i}].name is required"))
                })?;
                let mut function = json!({ "name": name });
                for key in ["description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function[key] = v.clone();
                    }
                }
                out.push(json!({ "type": "function", "function": function }));
            }
            Some(other) => {
                tracing::warn!(tool = other, "a tool of a type wazn cannot run is left out");
            }
            None => {
                return Err(ApiError::invalid_param(
                    "tools",
                    format!("tools[{i}].type is required"),
                ))
            }
        }
    }
    Ok(out)
}

/// `tool_choice` in chat completions' shape.
fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid_param("tool_choice", "tool_choice.name is required")
            })?;
            Ok(json!({ "type": "function", "function": { "name": name } }))
        }
        _ => Err(ApiError::invalid_param(
            "tool_choice",
            "tool_choice must be none, auto, required or {\"type\": \"function\", \"name\": ...}",
        )),
    }
}

/// `text.format` as chat completions' `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, ApiError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let schema = format.get("schema").ok_or_else(|| {
                ApiError::invalid_param("text.format", "text.format.schema is required")
            })?;
            let mut json_schema = json!({
                "name": format.get("name").cloned().unwrap_or(json!("response")),
                "schema": schema,
            });
            if let Some(strict) = format.get("strict") {
                json_schema["strict"] = strict.clone();
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": json_schema }),
            ))
        }
        _ => Err(ApiError::invalid_param(
            "text.format",
            "text.format.type must be text, json_object or json_schema",
        )),
    }
}

/// `input` as chat completions messages: a string is one user message; items are read in
/// order, an assistant's reasoning, text and function calls joining into one assistant turn.
fn input_messages(input: &Value) -> Result<Vec<Value>, ApiError> {
    let items = match input {
        Value::String(text) => return Ok(vec![json!({ "role": "user", "content": text })]),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "input must be a string or a list of items",
            ))
        }
    };
    let mut messages = Vec::new();
    let mut turn: Option<Map<String, Value>> = None;
    let flush = |turn: &mut Option<Map<String, Value>>, messages: &mut Vec<Value>| {
        if let Some(turn) = turn.take() {
            messages.push(Value::Object(turn));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| -> Result<&Value, ApiError> {
            item.get(name).ok_or_else(|| {
                ApiError::invalid_param("input", format!("input[{i}].{name} is required"))
            })
        };
        let string = |name: &str| -> Result<String, ApiError> {
            field(name)?.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::invalid_param("input", format!("input[{i}].{name} must be a string"))
            })
        };
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = string("role")?;
                let text = content_text(i, field("content")?)?;
                if role == "assistant" {
                    let turn = assistant_turn(&mut turn, &mut messages, false);
                    let old = turn.get("content").and_then(Value::as_str).unwrap_or("");
                    turn.insert("content".into(), json!(format!("{old}{text}")));
                } else {
                    flush(&mut turn, &mut messages);
                    messages.push(json!({ "role": role, "content": text }));
                }
            }
            "reasoning" => {
                let text = reasoning_text(item);
                let turn = assistant_turn(&mut turn, &mut messages, true);
                let old = turn
                    .get("reasoning_content")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                turn.insert("reasoning_content".into(), json!(format!("{old}{text}")));
            }
            "function_call" => {
                let call = json!({
                    "id": string("call_id")?,
                    "type": "function",
                    "function": { "name": string("name")?, "arguments": string("arguments")? },
                });
                let turn = assistant_turn(&mut turn, &mut messages, false);
                match turn.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    Some(calls) => calls.push(call),
                    None => {
                        turn.insert("tool_calls".into(), json!([call]));
                    }
                }
            }
            "function_call_output" => {
                flush(&mut turn, &mut messages);
                let output = match field("output")? {
                    Value::String(s) => s.clone(),
                    parts => content_text(i, parts)?,
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": string("call_id")?,
                    "content": output,
                }));
            }
            other => {
                return Err(ApiError::invalid_param(
                    "input",
                    format!(
                        "input[{i}] is a `{other}` item; this server reads message, reasoning, \
                         function_call and function_call_output items"
                    ),
                ))
            }
        }
    }
    flush(&mut turn, &mut messages);
    Ok(messages)
}

/// The assistant turn being gathered, or a new one. Reasoning comes first in a turn, so
/// reasoning after text or calls (`starts_turn`) begins the next turn.
fn assistant_turn<'a>(
    turn: &'a mut Option<Map<String, Value>>,
    messages: &mut Vec<Value>,
    starts_turn: bool,
) -> &'a mut Map<String, Value> {
    let ends = turn.as_ref().is_some_and(|t| {
        starts_turn && (t.contains_key("content") || t.contains_key("tool_calls"))
    });
    if ends {
        if let Some(done) = turn.take() {
            messages.push(Value::Object(done));
        }
    }
    turn.get_or_insert_with(|| {
        let mut t = Map::new();
        t.insert("role".into(), json!("assistant"));
        t
    })
}

/// The text of a message's `content`: a string or a list of text parts.
fn content_text(i: usize, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some("refusal") => {
                        text.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some(other) => {
                        return Err(ApiError::invalid_param(
                            "input",
                            format!("input[{i}] has a `{other}` part; this server reads text only"),
                        ))
                    }
                    None => {
                        return Err(ApiError::invalid_param(
                            "input",
                            format!("input[{i}].content has a part without a type"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid_param(
            "input",
            format!("input[{i}].content must be a string or a list of parts"),
        )),
    }
}

/// A reasoning item's text: its `reasoning_text` content, else its summary.
fn reasoning_text(item: &Value) -> String {
    let texts = |key: &str| -> String {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let content = texts("content");
    if content.is_empty() {
        texts("summary")
    } else {
        content
    }
}

/// An answer as it is made.
struct Answer {
    id: String,
    created_at: u64,
    model: String,
    echo: Echo,
    /// The conversation before the answer (kept with it when stored).
    conversation: Vec<Value>,
}

impl Answer {
    /// The response object; `output` and `usage` once there is an end.
    fn json(&self, run: &ChatRun, output: Vec<Value>, reasoning_tokens: usize) -> Value {
        let ending = run.ending();
        let status = match ending {
            None => "in_progress",
            Some(e) if e.is_truncated() => "incomplete",
            Some(Ending::Cancelled) => "cancelled",
            Some(_) => "completed",
        };
        let echo = &self.echo;
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": if status == "incomplete" {
                json!({ "reason": "max_output_tokens" })
            } else {
                Value::Null
            },
            "instructions": echo.instructions,
            "max_output_tokens": echo.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": echo.parallel_tool_calls,
            "previous_response_id": echo.previous_response_id,
            "reasoning": { "effort": echo.effort, "summary": null },
            "store": echo.store,
            "temperature": echo.temperature,
            "text": { "format": echo.text_format },
            "tool_choice": echo.tool_choice,
            "tools": echo.tools,
            "top_p": echo.top_p,
            "truncation": "disabled",
            "metadata": echo.metadata,
            "usage": null,
        });
        if ending.is_some() {
            response["usage"] = json!({
                "input_tokens": run.prompt_tokens,
                "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
                "output_tokens": run.completion_tokens,
                "output_tokens_details": { "reasoning_tokens": reasoning_tokens },
                "total_tokens": run.prompt_tokens + run.completion_tokens,
            });
        }
        response
    }

    /// Keeps the conversation with this answer for a later `previous_response_id`.
    fn store(self, store: &ResponseStore, reply: &AssistantReply) {
        if !self.echo.store {
            return;
        }
        let mut messages = self.conversation;
        let mut turn = json!({ "role": "assistant", "content": reply.content });
        if !reply.reasoning.is_empty() {
            turn["reasoning_content"] = json!(reply.reasoning);
        }
        if !reply.tool_calls.is_empty() {
            turn["tool_calls"] = reply
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    json!({
                        "id": OutputBuilder::call_id(&self.id, i),
                        "type": "function",
                        "function": { "name": call.name, "arguments": call.arguments },
                    })
                })
                .collect();
        }
        messages.push(turn);
        store.insert(self.id, messages);
    }
}

/// Counts the generated tokens that only added reasoning.
#[derive(Default)]
struct ReasoningTokens(usize);

impl ReasoningTokens {
    fn count(&mut self, deltas: &[wazn_text::harmony::ReplyDelta]) {
        use wazn_text::harmony::ReplyDelta;
        if !deltas.is_empty() && deltas.iter().all(|d| matches!(d, ReplyDelta::Reasoning(_))) {
            self.0 += 1;
        }
    }
}

async fn whole(
    state: Arc<AppState>,
    answer: Answer,
    mut run: ChatRun,
) -> Result<Response, ApiError> {
    let mut builder = OutputBuilder::new(&answer.id);
    let mut reasoning = ReasoningTokens::default();
    while let Some(deltas) = run.next().await? {
        reasoning.count(&deltas);
        for delta in &deltas {
            builder.push(delta);
        }
    }
    let truncated = run.ending().is_some_and(Ending::is_truncated);
    builder.finish(truncated);
    let response = answer.json(&run, builder.output(), reasoning.0);
    answer.store(&state.responses, run.reply());
    Ok(Json(response).into_response())
}

/// Typed server-sent events: `event: <type>` and the event as data, numbered in order.
fn stream(state: Arc<AppState>, answer: Answer, mut run: ChatRun) -> Response {
    let (out, out_rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let mut sequence = 0u64;
        let mut send = |mut event: Value| {
            event["sequence_number"] = json!(sequence);
            sequence += 1;
            let kind = event["type"].as_str().unwrap_or("message").to_string();
            let out = out.clone();
            async move {
                out.send(Ok(SseEvent::default().event(kind).data(event.to_string())))
                    .await
                    .is_ok()
            }
        };
        let opening = answer.json(&run, Vec::new(), 0);
        for kind in ["response.created", "response.in_progress"] {
            if !send(json!({ "type": kind, "response": opening })).await {
                return;
            }
        }
        let mut builder = OutputBuilder::new(&answer.id);
        let mut reasoning = ReasoningTokens::default();
        loop {
            let deltas = tokio::select! {
                next = run.next() => next,
                // The client went away: dropping the run cancels the sequence.
                _ = out.closed() => return,
            };
            let deltas = match deltas {
                Ok(Some(deltas)) => deltas,
                Ok(None) => break,
                Err(err) => {
                    let error = json!({
                        "type": "error",
                        "code": err.code,
                        "message": err.message,
                        "param": err.param,
                    });
                    send(error).await;
                    return;
                }
            };
            reasoning.count(&deltas);
            for delta in &deltas {
                for event in builder.push(delta) {
                    if !send(event).await {
                        return;
                    }
                }
            }
        }
        let truncated = run.ending().is_some_and(Ending::is_truncated);
        for event in builder.finish(truncated) {
            if !send(event).await {
                return;
            }
        }
        let response = answer.json(&run, builder.output(), reasoning.0);
        let kind = if truncated {
            "response.incomplete"
        } else {
            "response.completed"
        };
        answer.store(&state.responses, run.reply());
        send(json!({ "type": kind, "response": response })).await;
    });
    Sse::new(ReceiverStream::new(out_rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_join_into_chat_turns() {
        let input = json!([
            { "role": "user", "content": "Weather in Paris?" },
            { "type": "reasoning", "id": "rs_1", "summary": [],
              "content": [{ "type": "reasoning_text", "text": "Call the tool." }] },
            { "type": "function_call", "call_id": "call_a", "name": "get_weather",
              "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call_output", "call_id": "call_a", "output": "20 C" },
            { "type": "message", "role": "assistant",
              "content": [{ "type": "output_text", "text": "It is 20 C." }] },
            { "type": "message", "role": "developer",
              "content": [{ "type": "input_text", "text": "Be brief." }] },
        ]);
        let messages = input_messages(&input).unwrap();
        assert_eq!(
            messages,
            vec![
                json!({ "role": "user", "content": "Weather in Paris?" }),
                json!({ "role": "assistant", "reasoning_content": "Call the tool.",
                        "tool_calls": [{ "id": "call_a", "type": "function",
                            "function": { "name": "get_weather",
                                          "arguments": "{\"city\":\"Paris\"}" } }] }),
                json!({ "role": "tool", "tool_call_id": "call_a", "content": "20 C" }),
                json!({ "role": "assistant", "content": "It is 20 C." }),
                json!({ "role": "developer", "content": "Be brief." }),
            ]
        );
    }

    #[test]
    fn bad_items_name_their_place() {
        let cases = [
            (json!(7), "input must be a string"),
            (json!([{ "role": "user" }]), "input[0].content is required"),
            (
                json!([{ "role": "user", "content": "a" }, { "type": "function_call", "name": "f" }]),
                "input[1].call_id is required",
            ),
            (
                json!([{ "role": "user", "content": [{ "type": "input_image" }] }]),
                "`input_image` part",
            ),
            (
                json!([{ "type": "item_reference", "id": "x" }]),
                "`item_reference` item",
            ),
        ];
        for (input, want) in cases {
            let err = input_messages(&input).unwrap_err();
            assert!(err.message.contains(want), "{input}: {}", err.message);
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn tools_of_other_types_are_left_out() {
        let tools = [
            json!({ "type": "function", "name": "shell", "description": "Run",
                    "parameters": { "type": "object" }, "strict": false }),
            json!({ "type": "web_search" }),
            json!({ "type": "custom", "name": "apply_patch" }),
        ];
        let out = function_tools(&tools).unwrap();
        assert_eq!(
            out,
            vec![json!({ "type": "function", "function": { "name": "shell",
                "description": "Run", "parameters": { "type": "object" }, "strict": false } })]
        );
        assert!(function_tools(&[json!({ "name": "f" })]).is_err());
    }
}
