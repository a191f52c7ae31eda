//! Ollama's `/api/chat` and `/api/generate` requests as engine jobs. A conversation is
//! written in chat completions' shape and goes through the same path as `/v1/chat/completions`
//! ([`routes::chat_job_from_value`]); a raw prompt (or a fill-in-the-middle one) is completed as
//! `/v1/completions` completes it. Fields are read one by one so that each mistake gets a
//! one-line error naming its field.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use wazn_text::ChatFormat;

use crate::completion_prompt;
use crate::error::ApiError;
use crate::generate::{Job, Kind};
use crate::routes;
use crate::structured;
use crate::wire::{self, CompletionRequest};
use crate::AppState;

/// A checked request: what to run and how to answer.
pub(crate) struct Planned {
    /// The model name as the request gave it (answers repeat it).
    pub model: String,
    /// Ollama answers in NDJSON lines unless `stream` is false.
    pub stream: bool,
    /// Whether the reasoning is given as `thinking` (not when `think` is false).
    pub show_thinking: bool,
    /// `None`: an empty prompt or conversation, which only asks for the model to be loaded.
    pub job: Option<Job>,
}

/// Reads a body as a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match wire::parse_body::<Value>(body)? {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

/// A field that must be a string when present (`null` reads as absent).
pub(crate) fn string_field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::invalid_param(
            name,
            format!("{name} must be a string, not {}", kind_of(other)),
        )),
    }
}

pub(crate) fn bool_field(
    object: &Map<String, Value>,
    name: &str,
) -> Result<Option<bool>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::invalid_param(
            name,
            format!("{name} must be true or false, not {}", kind_of(other)),
        )),
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The requested model, which Ollama requires: the served name, alone or with Ollama's
/// default tag `:latest`.
pub(crate) fn requested_model(
    state: &AppState,
    object: &Map<String, Value>,
    field: &str,
) -> Result<String, ApiError> {
    let model = string_field(object, field)?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid_param(field, format!("{field} is required")))?;
    if is_served(state, model) {
        Ok(model.to_string())
    } else {
        Err(ApiError::model_not_found(model, &state.model_id))
    }
}

/// Whether `name` names the served model.
pub(crate) fn is_served(state: &AppState, name: &str) -> bool {
    name == state.model_id || name.strip_suffix(":latest") == Some(state.model_id.as_str())
}

/// The fields both routes share: `stream` (true unless said otherwise), `think`, and the
/// ones this server cannot honour.
struct Shared {
    model: String,
    stream: bool,
    show_thinking: bool,
    /// A harmony model's reasoning effort, from `think: "low" | "medium" | "high"`.
    reasoning_effort: Option<String>,
}

fn shared_fields(state: &AppState, object: &Map<String, Value>) -> Result<Shared, ApiError> {
    let model = requested_model(state, object, "model")?;
    let stream = bool_field(object, "stream")?.unwrap_or(true);
    let harmony = matches!(state.chat_format, Some(ChatFormat::Harmony));
    let reasons = harmony || state.thinks;
    let (asked, effort) = match object.get("think") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Bool(b)) => (Some(*b), None),
        Some(Value::String(level)) if ["low", "medium", "high"].contains(&level.as_str()) => {
            (Some(true), Some(level.clone()))
        }
        Some(other) => {
            return Err(ApiError::invalid_param(
                "think",
                format!("think must be true, false, \"low\", \"medium\" or \"high\", not {other}"),
            ))
        }
    };
    if asked == Some(true) && !reasons {
        return Err(ApiError::invalid_param(
            "think",
            format!("\"{model}\" does not support thinking"),
        ));
    }
    if bool_field(object, "logprobs")? == Some(true) {
        return Err(ApiError::invalid_param(
            "logprobs",
            "logprobs is not supported on the Ollama routes; use /v1/chat/completions or \
             /v1/completions for log-probabilities",
        ));
    }
    // `keep_alive` is accepted and has no effect: the model stays loaded while the server runs.
    Ok(Shared {
        model,
        stream,
        show_thinking: asked != Some(false),
        reasoning_effort: effort.filter(|_| harmony),
    })
}

/// `images` (on a request or a message) cannot be read by a text model.
fn refuse_images(value: Option<&Value>, field: &str) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.is_empty() => Ok(()),
        Some(_) => Err(ApiError::invalid_param(
            field,
            format!("{field}: this server runs text models only; images cannot be read"),
        )),
    }
}

/// Sampling and length settings from Ollama's `options`, written into `out` under chat
/// completions' names; returns `repeat_last_n`, which those have no name for. The options that
/// set up a model rather than a request (`num_ctx`, `num_batch`, `num_gpu`, `num_thread`,
/// `use_mmap`, ...) or name samplers wazn does not have (`typical_p`, `mirostat`, ...) are
/// accepted and left without effect, as Ollama leaves options it does not know: the server's
/// own settings decide.
fn sampling_fields(
    state: &AppState,
    options: Option<&Value>,
    out: &mut Map<String, Value>,
) -> Result<Option<usize>, ApiError> {
    let options = match options {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(options)) => options,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "options",
                format!("options must be an object, not {}", kind_of(other)),
            ))
        }
    };
    let number = |name: &str| -> Result<Option<f64>, ApiError> {
        match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(ApiError::invalid_param(
                "options",
                format!("options.{name} must be a number, not {}", kind_of(other)),
            )),
        }
    };
    let integer = |name: &str| -> Result<Option<i64>, ApiError> {
        match options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
            Some(other) => Err(ApiError::invalid_param(
                "options",
                format!("options.{name} must be a whole number, not {other}"),
            )),
        }
    };
    for (ollama, openai) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("min_p", "min_p"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ] {
        if let Some(v) = number(ollama)? {
            out.insert(openai.into(), json!(v));
        }
    }
    if let Some(v) = number("repeat_penalty")? {
        if v <= 0.0 {
            return Err(ApiError::invalid_param(
                "options",
                format!("options.repeat_penalty is {v}; it must be above 0 (1 turns it off)"),
            ));
        }
        out.insert("repetition_penalty".into(), json!(v));
    }
    if let Some(k) = integer("top_k")? {
        out.insert("top_k".into(), json!(k));
    }
    if let Some(seed) = integer("seed")? {
        out.insert("seed".into(), json!(seed));
    }
    // -1: until the end of the turn; -2: until the context is full; both run to either here.
    match integer("num_predict")? {
        None | Some(-1) | Some(-2) => {}
        Some(n) if n >= 1 => {
            // Past the context the answer ends there anyway, as `length`.
            out.insert("max_tokens".into(), json!(n.min(state.n_ctx as i64)));
        }
        Some(n) => {
            return Err(ApiError::invalid_param(
                "options",
                format!("options.num_predict is {n}; it must be at least 1, or -1 (no limit)"),
            ))
        }
    }
    match options.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            out.insert("stop".into(), Value::Array(items.clone()));
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "options",
                "options.stop must be a string or a list of strings",
            ))
        }
    }
    match integer("repeat_last_n")? {
        None => Ok(None),
        Some(-1) => Ok(Some(state.n_ctx)),
        Some(n) if n >= 0 => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid_param(
            "options",
            format!("options.repeat_last_n is {n}; it must be -1 (the context), 0 (off) or more"),
        )),
    }
}

/// `format`: `"json"` for any JSON object, or a JSON schema, as chat completions'
/// `response_format`.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(json!({"type": "json_object"}))),
        Some(Value::Object(schema)) => Ok(Some(json!({
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": schema},
        }))),
        Some(_) => Err(ApiError::invalid_param(
            "format",
            "format must be \"json\" or a JSON schema object",
        )),
    }
}

/// The chat completions fields every conversation carries.
fn generation_fields(
    state: &AppState,
    object: &Map<String, Value>,
    shared: &Shared,
) -> Result<(Map<String, Value>, Option<usize>), ApiError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(state.model_id));
    let repeat_last_n = sampling_fields(state, object.get("options"), &mut out)?;
    if let Some(format) = response_format(object.get("format"))? {
        out.insert("response_format".into(), format);
    }
    if let Some(effort) = &shared.reasoning_effort {
        out.insert("reasoning_effort".into(), json!(effort));
    }
    Ok((out, repeat_last_n))
}

fn with_repeat_last_n(mut job: Job, repeat_last_n: Option<usize>) -> Job {
    if let Some(n) = repeat_last_n {
        job.generation.sampler.repeat_last_n = n;
    }
    job
}

/// `/api/chat`: the conversation, its tools and settings.
pub(crate) async fn chat(state: &Arc<AppState>, body: &[u8]) -> Result<Planned, ApiError> {
    let object = parse_object(body)?;
    let shared = shared_fields(state, &object)?;
    let messages = match object.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| chat_message(i, m))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "messages",
                format!("messages must be a list, not {}", kind_of(other)),
            ))
        }
    };
    let (mut value, repeat_last_n) = generation_fields(state, &object, &shared)?;
    match object.get("tools") {
        None | Some(Value::Null) => {}
        Some(tools @ Value::Array(_)) => {
            value.insert("tools".into(), tools.clone());
        }
        Some(other) => {
            return Err(ApiError::invalid_param(
                "tools",
                format!("tools must be a list, not {}", kind_of(other)),
            ))
        }
    }
    let job = if messages.is_empty() {
        None
    } else {
        value.insert("messages".into(), Value::Array(messages));
        let job = routes::chat_job_from_value(state, &Value::Object(value)).await?;
        Some(with_repeat_last_n(job, repeat_last_n))
    };
    Ok(Planned {
        model: shared.model,
        stream: shared.stream,
        show_thinking: shared.show_thinking,
        job,
    })
}

/// One Ollama message in chat completions' shape: `thinking` becomes `reasoning_content`,
/// calls' object arguments become JSON text, a tool result's `tool_name` its `name`.
fn chat_message(index: usize, message: &Value) -> Result<Value, ApiError> {
    let at = |what: &str| format!("messages[{index}].{what}");
    let Value::Object(message) = message else {
        return Err(ApiError::invalid_param(
            "messages",
            format!("messages[{index}] must be an object"),
        ));
    };
    let field = |name: &str| -> Result<Option<&str>, ApiError> {
        match message.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_param(
                "messages",
                format!("{} must be a string", at(name)),
            )),
        }
    };
    let role = field("role")?.ok_or_else(|| {
        ApiError::invalid_param("messages", format!("{} is required", at("role")))
    })?;
    refuse_images(message.get("images"), &at("images"))?;
    let mut out = json!({"role": role, "content": field("content")?.unwrap_or_default()});
    if let Some(thinking) = field("thinking")?.filter(|t| !t.is_empty()) {
        out["reasoning_content"] = json!(thinking);
    }
    if let Some(name) = field("tool_name")? {
        out["name"] = json!(name);
    }
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            let calls = calls
                .iter()
                .enumerate()
                .map(|(j, call)| tool_call(&at(&format!("tool_calls[{j}]")), call))
                .collect::<Result<Vec<_>, _>>()?;
            out["tool_calls"] = Value::Array(calls);
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                format!("{} must be a list", at("tool_calls")),
            ))
        }
    }
    Ok(out)
}

/// `{"function": {"name", "arguments": {...}}}` as `{"type": "function", "function":
/// {"name", "arguments": "<JSON text>"}}`.
fn tool_call(at: &str, call: &Value) -> Result<Value, ApiError> {
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid_param("messages", format!("{at}.function.name is required"))
        })?;
    let arguments = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(args @ Value::Object(_)) => args.to_string(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                format!("{at}.function.arguments must be an object"),
            ))
        }
    };
    Ok(json!({"type": "function", "function": {"name": name, "arguments": arguments}}))
}

/// `/api/generate`: a prompt through the chat template as a user message (after `system`), or
/// completed as written (`raw`, a model without a chat template, or a `suffix` to fill in
/// before).
pub(crate) async fn generate(state: &Arc<AppState>, body: &[u8]) -> Result<Planned, ApiError> {
    let object = parse_object(body)?;
    let shared = shared_fields(state, &object)?;
    refuse_images(object.get("images"), "images")?;
    if string_field(&object, "template")?.is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid_param(
            "template",
            "template: this server renders the model's own chat template; use raw to write \
             the whole prompt yourself",
        ));
    }
    match object.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Array(ids)) if ids.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                "context",
                "context is not supported; send the conversation to /api/chat instead",
            ))
        }
    }
    let prompt = string_field(&object, "prompt")?.unwrap_or_default();
    let suffix = string_field(&object, "suffix")?.filter(|s| !s.is_empty());
    let system = string_field(&object, "system")?.filter(|s| !s.is_empty());
    let raw = bool_field(&object, "raw")?.unwrap_or(false);
    let (mut value, repeat_last_n) = generation_fields(state, &object, &shared)?;
    let job = if prompt.is_empty() && suffix.is_none() {
        None
    } else if raw || suffix.is_some() || state.chat_format.is_none() {
        value.insert("prompt".into(), json!(prompt));
        if let Some(suffix) = suffix {
            value.insert("suffix".into(), json!(suffix));
        }
        Some(completion_job(state, &Value::Object(value)).await?)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        value.insert("messages".into(), Value::Array(messages));
        Some(routes::chat_job_from_value(state, &Value::Object(value)).await?)
    };
    Ok(Planned {
        model: shared.model,
        stream: shared.stream,
        show_thinking: shared.show_thinking,
        job: job.map(|job| with_repeat_last_n(job, repeat_last_n)),
    })
}

/// A text completion of `value` (a `/v1/completions` body), built as that route builds it.
async fn completion_job(state: &Arc<AppState>, value: &Value) -> Result<Job, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("cannot write the completion request: {e}")))?;
    let request: CompletionRequest = wire::parse_body(&body)?;
    let generation = request.common.check(state.n_ctx, routes::default_seed())?;
    let suffix = request.suffix.as_deref().filter(|s| !s.is_empty());
    let (prepared, prompt, suffix) = (
        Arc::clone(state),
        request.prompt.clone(),
        suffix.map(str::to_string),
    );
    let prompts = state
        .preparing
        .run(move || completion_prompt::completion_prompts(&prepared, &prompt, suffix.as_deref()))
        .await?;
    let constraint = match structured::requested_grammar(&request.common)? {
        Some(g) => Some(structured::compile(state, g.param, g.spec, None).await?),
        None => None,
    };
    Ok(Job {
        kind: Kind::Completion,
        prompts,
        echo: false,
        generation,
        logprobs: None,
        harmony: false,
        think: None,
        constraint,
        tool_format: None,
    })
}
