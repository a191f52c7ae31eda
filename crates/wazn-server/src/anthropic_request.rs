//! A request of Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) read into
//! the chat completions body the rest of the server knows, so that a conversation is rendered,
//! constrained and parsed the same way whichever API it came through.
//!
//! The mapping: `system` becomes a system message; a user turn's `text` blocks its text (blocks
//! joined by a newline) and each `tool_result` block a `tool` message answering the call
//! `tool_use_id` names (ids pass through unchanged); an assistant turn's `text` blocks its
//! content, its `thinking` blocks its `reasoning_content` (templates and harmony show the model
//! its own earlier reasoning where they do so for chat completions), its `tool_use` blocks its
//! `tool_calls` with `arguments` the JSON text of `input`. `redacted_thinking` is Anthropic's
//! encrypted reasoning, which no open model can read: it is dropped. Custom tools become
//! function tools with `input_schema` as their `parameters`; tools of Anthropic's own types
//! (web search, bash, the text editor, …) are run by Anthropic or named by schemas wazn does not
//! have, so they are left out with a warning rather than refused, and the conversation goes on
//! with the others.
//!
//! Every field is checked here, by name, so that a mistake is a one-line 400 that says which
//! field (a typed parse would only say which type it expected).

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::wire;

/// What a request is for: an answer needs `max_tokens` and reads the sampling settings; a
/// token count reads the conversation alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Answer,
    CountTokens,
}

/// A checked Messages request.
#[derive(Debug)]
pub struct MessagesRequest {
    /// The same request as a chat completions body.
    pub chat: Value,
    /// The answer is streamed as server-sent events.
    pub stream: bool,
}

/// Reads a Messages request body (UTF-8 JSON object) for `purpose`.
pub fn read(body: &[u8], purpose: Purpose) -> Result<MessagesRequest, ApiError> {
    let request: Map<String, Value> = wire::parse_body(body)?;
    let mut chat = Map::new();
    let model = field(&request, "model").ok_or_else(|| missing("model"))?;
    chat.insert("model".into(), json!(string(model, "model", "model")?));

    let mut messages = Vec::new();
    if let Some(system) = field(&request, "system") {
        let text = text_of(system, "system", "system")?;
        // An empty system prompt is no system prompt.
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = field(&request, "messages").ok_or_else(|| missing("messages"))?;
    let turns = turns
        .as_array()
        .ok_or_else(|| ApiError::invalid_param("messages", "messages must be a list of turns"))?;
    if turns.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages is empty; give at least one user turn",
        ));
    }
    for (i, turn) in turns.iter().enumerate() {
        read_turn(i, turn, &mut messages)?;
    }
    chat.insert("messages".into(), Value::Array(messages));

    if let Some(tools) = field(&request, "tools") {
        chat.insert("tools".into(), Value::Array(function_tools(tools)?));
    }
    if let Some(choice) = field(&request, "tool_choice") {
        let (choice, parallel) = tool_choice(choice)?;
        chat.insert("tool_choice".into(), choice);
        if let Some(parallel) = parallel {
            chat.insert("parallel_tool_calls".into(), json!(parallel));
        }
    }
    if let Some(thinking) = field(&request, "thinking") {
        check_thinking(thinking)?;
    }
    if let Some(config) = field(&request, "output_config") {
        output_config(config, &mut chat)?;
    }
    // The other fields (`metadata`, `service_tier`, `speed`, `cache_control`, `container`,
    // `inference_geo`, …) steer Anthropic's platform: its accounts, capacity, prompt cache
    // billing and sandboxes. They mean nothing to a local server: accepted and ignored.

    let mut stream = false;
    if purpose == Purpose::Answer {
        let max_tokens = field(&request, "max_tokens").ok_or_else(|| missing("max_tokens"))?;
        let max_tokens = integer(max_tokens, "max_tokens", "max_tokens")?;
        if max_tokens < 1 {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!("max_tokens is {max_tokens}; it must be at least 1"),
            ));
        }
        chat.insert("max_tokens".into(), json!(max_tokens));
        if let Some(t) = field(&request, "temperature") {
            let t = number(t, "temperature")?;
            if !(0.0..=1.0).contains(&t) {
                return Err(ApiError::invalid_param(
                    "temperature",
                    format!("temperature is {t}; it must be between 0 and 1"),
                ));
            }
            chat.insert("temperature".into(), json!(t));
        }
        if let Some(p) = field(&request, "top_p") {
            chat.insert("top_p".into(), json!(number(p, "top_p")?));
        }
        if let Some(k) = field(&request, "top_k") {
            chat.insert("top_k".into(), json!(integer(k, "top_k", "top_k")?));
        }
        if let Some(stops) = field(&request, "stop_sequences") {
            chat.insert("stop".into(), Value::Array(stop_sequences(stops)?));
        }
        if let Some(s) = field(&request, "stream") {
            stream = s
                .as_bool()
                .ok_or_else(|| ApiError::invalid_param("stream", "stream must be true or false"))?;
        }
    }
    Ok(MessagesRequest {
        chat: Value::Object(chat),
        stream,
    })
}

/// One turn of `messages` as chat messages (a user turn with tool results gives several).
fn read_turn(i: usize, turn: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let turn = turn
        .as_object()
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at} must be an object")))?;
    let role = field(turn, "role")
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at}.role is missing")))?;
    let role = string(role, "messages", &format!("{at}.role"))?;
    let content = field(turn, "content")
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at}.content is missing")))?;
    match role {
        "user" => user_turn(&at, content, out),
        "assistant" => assistant_turn(&at, content, out),
        // Claude Code sends instructions as system turns among the others; they stay where
        // they were sent, and the chat template places them.
        "system" => {
            let text = text_of(content, "messages", &format!("{at}.content"))?;
            if !text.is_empty() {
                out.push(json!({"role": "system", "content": text}));
            }
            Ok(())
        }
        other => Err(ApiError::invalid_param(
            "messages",
            format!("{at}.role is `{other}`; it must be user, assistant or system"),
        )),
    }
}

/// A user turn: its text, and a `tool` message per `tool_result` block, in the order written.
fn user_turn(at: &str, content: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    if let Value::String(text) = content {
        out.push(json!({"role": "user", "content": text}));
        return Ok(());
    }
    let mut texts: Vec<&str> = Vec::new();
    for (j, block) in blocks(at, content)?.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let (kind, block) = block_kind(&at, block)?;
        match kind {
            "text" => texts.push(block_text(&at, block)?),
            "tool_result" => {
                if !texts.is_empty() {
                    out.push(json!({"role": "user", "content": texts.join("\n")}));
                    texts.clear();
                }
                out.push(tool_result(&at, block)?);
            }
            "image" | "document" => return Err(not_text(&at, kind)),
            other => {
                return Err(ApiError::invalid_param(
                    "messages",
                    format!(
                        "{at} is a `{other}` block; a user turn takes text and tool_result blocks"
                    ),
                ))
            }
        }
    }
    if !texts.is_empty() {
        out.push(json!({"role": "user", "content": texts.join("\n")}));
    }
    Ok(())
}

/// A `tool_result` block as a `tool` message. A result marked `is_error` is shown to the model
/// as an error, since the chat formats have no flag for it and the model must not read a
/// failure as an answer.
fn tool_result(at: &str, block: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = field(block, "tool_use_id").ok_or_else(|| {
        ApiError::invalid_param("messages", format!("{at}.tool_use_id is missing"))
    })?;
    let id = string(id, "messages", &format!("{at}.tool_use_id"))?;
    let text = match field(block, "content") {
        None => String::new(),
        Some(content) => text_of(content, "messages", &format!("{at}.content"))?,
    };
    let is_error = match field(block, "is_error") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            ApiError::invalid_param("messages", format!("{at}.is_error must be true or false"))
        })?,
    };
    let text = match (is_error, text.is_empty()) {
        (false, _) => text,
        (true, true) => "Error".to_string(),
        (true, false) => format!("Error: {text}"),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// An assistant turn: text, reasoning and calls in one chat message.
fn assistant_turn(at: &str, content: &Value, out: &mut Vec<Value>) -> Result<(), ApiError> {
    if let Value::String(text) = content {
        out.push(json!({"role": "assistant", "content": text}));
        return Ok(());
    }
    let mut texts: Vec<&str> = Vec::new();
    let mut reasoning: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks(at, content)?.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let (kind, block) = block_kind(&at, block)?;
        match kind {
            "text" => texts.push(block_text(&at, block)?),
            "thinking" => {
                let thinking = field(block, "thinking").ok_or_else(|| {
                    ApiError::invalid_param("messages", format!("{at}.thinking is missing"))
                })?;
                reasoning.push(string(thinking, "messages", &format!("{at}.thinking"))?);
            }
            "redacted_thinking" => {}
            "tool_use" => calls.push(tool_use(&at, block)?),
            "image" | "document" => return Err(not_text(&at, kind)),
            other => {
                return Err(ApiError::invalid_param(
                    "messages",
                    format!(
                        "{at} is a `{other}` block; an assistant turn takes text, thinking, \
                         redacted_thinking and tool_use blocks"
                    ),
                ))
            }
        }
    }
    let mut message = json!({"role": "assistant", "content": texts.join("\n")});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning.join("\n"));
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
    Ok(())
}

/// A `tool_use` block as a chat `tool_calls` entry.
fn tool_use(at: &str, block: &Map<String, Value>) -> Result<Value, ApiError> {
    let required = |name: &str| {
        field(block, name)
            .ok_or_else(|| ApiError::invalid_param("messages", format!("{at}.{name} is missing")))
    };
    let id = string(required("id")?, "messages", &format!("{at}.id"))?;
    let name = string(required("name")?, "messages", &format!("{at}.name"))?;
    let input = required("input")?;
    if !input.is_object() {
        return Err(ApiError::invalid_param(
            "messages",
            format!("{at}.input must be an object"),
        ));
    }
    Ok(json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": input.to_string()},
    }))
}

/// The request's custom tools as function tools; Anthropic's own tool types are left out.
fn function_tools(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ApiError::invalid_param("tools", "tools must be a list of tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| ApiError::invalid_param("tools", format!("{at} must be an object")))?;
        let kind = match field(tool, "type") {
            None => "custom",
            Some(kind) => string(kind, "tools", &format!("{at}.type"))?,
        };
        if kind != "custom" {
            tracing::warn!(
                tool_type = kind,
                "a Messages request names a server tool that wazn cannot run; it is left out"
            );
            continue;
        }
        let name = field(tool, "name")
            .ok_or_else(|| ApiError::invalid_param("tools", format!("{at}.name is missing")))?;
        let name = string(name, "tools", &format!("{at}.name"))?;
        let schema = field(tool, "input_schema").ok_or_else(|| {
            ApiError::invalid_param("tools", format!("{at}.input_schema is missing"))
        })?;
        if !schema.is_object() {
            return Err(ApiError::invalid_param(
                "tools",
                format!("{at}.input_schema must be a JSON schema object"),
            ));
        }
        let mut function = json!({"name": name});
        if let Some(description) = field(tool, "description") {
            let description = string(description, "tools", &format!("{at}.description"))?;
            function["description"] = json!(description);
        }
        function["parameters"] = schema.clone();
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` in chat completions' terms, and `parallel_tool_calls` when the request set
/// `disable_parallel_tool_use`.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    let bad = |message: String| ApiError::invalid_param("tool_choice", message);
    let choice = choice.as_object().ok_or_else(|| {
        bad("tool_choice must be an object such as {\"type\": \"auto\"}".to_string())
    })?;
    let kind = field(choice, "type").ok_or_else(|| bad("tool_choice.type is missing".into()))?;
    let kind = string(kind, "tool_choice", "tool_choice.type")?;
    let chat_choice = match kind {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = field(choice, "name").ok_or_else(|| {
                bad("tool_choice.name is missing; {\"type\": \"tool\"} names the tool".into())
            })?;
            let name = string(name, "tool_choice", "tool_choice.name")?;
            json!({"type": "function", "function": {"name": name}})
        }
        other => {
            return Err(bad(format!(
                "tool_choice.type is `{other}`; it must be auto, any, tool or none"
            )))
        }
    };
    let parallel = match field(choice, "disable_parallel_tool_use") {
        None => None,
        Some(v) => {
            let disable = v.as_bool().ok_or_else(|| {
                bad("tool_choice.disable_parallel_tool_use must be true or false".into())
            })?;
            Some(!disable)
        }
    };
    Ok((chat_choice, parallel))
}

/// Checks `thinking`. wazn runs open models whose reasoning is their own: a model that reasons
/// (in `<think>` blocks, or in harmony's analysis channel) does so whatever this says, and its
/// reasoning comes back as thinking blocks, in full (`display` is not read); a model that does
/// not reason gives none. The budget is not enforced: `max_tokens` bounds the reasoning and the
/// answer together.
fn check_thinking(thinking: &Value) -> Result<(), ApiError> {
    let bad = |message: &str| ApiError::invalid_param("thinking", message);
    let thinking = thinking
        .as_object()
        .ok_or_else(|| bad("thinking must be an object such as {\"type\": \"disabled\"}"))?;
    let kind = field(thinking, "type").ok_or_else(|| bad("thinking.type is missing"))?;
    match string(kind, "thinking", "thinking.type")? {
        "disabled" | "adaptive" | "between_tools" => Ok(()),
        "enabled" => {
            let budget = field(thinking, "budget_tokens")
                .ok_or_else(|| bad("thinking.budget_tokens is missing"))?;
            let budget = integer(budget, "thinking", "thinking.budget_tokens")?;
            if budget < 1 {
                return Err(bad("thinking.budget_tokens must be at least 1"));
            }
            Ok(())
        }
        other => Err(ApiError::invalid_param(
            "thinking",
            format!(
                "thinking.type is `{other}`; it must be enabled, adaptive, between_tools or \
                 disabled"
            ),
        )),
    }
}

/// `output_config` into `chat`: `format`, a JSON schema the answer's text is held to (chat
/// completions' `response_format`, so the same grammar), and `effort`, the reasoning effort of
/// harmony models (the two above `high` read as `high`; other models reason as they do).
fn output_config(config: &Value, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    let bad = |message: String| ApiError::invalid_param("output_config", message);
    let config = config
        .as_object()
        .ok_or_else(|| bad("output_config must be an object".into()))?;
    if let Some(format) = field(config, "format") {
        let format = format.as_object().ok_or_else(|| {
            bad(
                "output_config.format must be an object such as {\"type\": \"json_schema\", \
                 \"schema\": {...}}"
                    .into(),
            )
        })?;
        let kind = field(format, "type")
            .ok_or_else(|| bad("output_config.format.type is missing".into()))?;
        match string(kind, "output_config", "output_config.format.type")? {
            "json_schema" => {}
            other => {
                return Err(bad(format!(
                    "output_config.format.type is `{other}`; it must be json_schema"
                )))
            }
        }
        let schema = field(format, "schema")
            .ok_or_else(|| bad("output_config.format.schema is missing".into()))?;
        if !schema.is_object() {
            return Err(bad(
                "output_config.format.schema must be a JSON schema object".into(),
            ));
        }
        let json_schema = json!({"name": "output", "schema": schema});
        chat.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": json_schema}),
        );
    }
    if let Some(effort) = field(config, "effort") {
        let effort = match string(effort, "output_config", "output_config.effort")? {
            effort @ ("low" | "medium" | "high") => effort,
            "xhigh" | "max" => "high",
            other => {
                return Err(bad(format!(
                    "output_config.effort is `{other}`; it must be low, medium, high, xhigh or \
                     max"
                )))
            }
        };
        chat.insert("reasoning_effort".into(), json!(effort));
    }
    Ok(())
}

/// `stop_sequences`: a list of strings, at most [`wire::MAX_STOP`].
fn stop_sequences(stops: &Value) -> Result<Vec<Value>, ApiError> {
    let bad = |message: String| ApiError::invalid_param("stop_sequences", message);
    let stops = stops
        .as_array()
        .ok_or_else(|| bad("stop_sequences must be a list of strings".into()))?;
    if stops.len() > wire::MAX_STOP {
        return Err(bad(format!(
            "{} stop_sequences given; at most {} are allowed",
            stops.len(),
            wire::MAX_STOP
        )));
    }
    stops
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Value::String(_) => Ok(s.clone()),
            _ => Err(bad(format!("stop_sequences[{i}] must be a string"))),
        })
        .collect()
}

/// The blocks of a turn's `content` when it is not a string.
fn blocks<'a>(at: &str, content: &'a Value) -> Result<&'a Vec<Value>, ApiError> {
    content.as_array().ok_or_else(|| {
        ApiError::invalid_param(
            "messages",
            format!("{at}.content must be a string or a list of content blocks"),
        )
    })
}

/// A content block's `type` and its fields.
fn block_kind<'a>(
    at: &str,
    block: &'a Value,
) -> Result<(&'a str, &'a Map<String, Value>), ApiError> {
    let block = block
        .as_object()
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at} must be an object")))?;
    let kind = field(block, "type")
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at}.type is missing")))?;
    Ok((string(kind, "messages", &format!("{at}.type"))?, block))
}

/// A `text` block's text.
fn block_text<'a>(at: &str, block: &'a Map<String, Value>) -> Result<&'a str, ApiError> {
    let text = field(block, "text")
        .ok_or_else(|| ApiError::invalid_param("messages", format!("{at}.text is missing")))?;
    string(text, "messages", &format!("{at}.text"))
}

/// The text of a string or of a list of text blocks (`system`, a tool result's `content`).
fn text_of(value: &Value, param: &str, at: &str) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(list) => {
            let mut texts = Vec::with_capacity(list.len());
            for (j, block) in list.iter().enumerate() {
                let at = format!("{at}[{j}]");
                let (kind, block) = block_kind(&at, block)
                    .map_err(|e| ApiError::invalid_param(param, e.message))?;
                match kind {
                    "text" => texts.push(
                        block_text(&at, block)
                            .map_err(|e| ApiError::invalid_param(param, e.message))?,
                    ),
                    "image" | "document" => {
                        return Err(ApiError::invalid_param(param, not_text(&at, kind).message))
                    }
                    other => {
                        return Err(ApiError::invalid_param(
                            param,
                            format!("{at} is a `{other}` block; only text blocks are read here"),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::invalid_param(
            param,
            format!("{at} must be a string or a list of text blocks"),
        )),
    }
}

/// The refusal of an image or a document: the models wazn runs read text.
fn not_text(at: &str, kind: &str) -> ApiError {
    ApiError::invalid_param(
        "messages",
        format!("{at} is an `{kind}` block; this server's models read text only"),
    )
}

/// A field's value; absent and `null` are the same.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn missing(name: &str) -> ApiError {
    ApiError::invalid_param(name, format!("{name} is missing; it is required"))
}

/// `value` as a string; `at` names it in the error, `param` is the top-level field.
fn string<'a>(value: &'a Value, param: &str, at: &str) -> Result<&'a str, ApiError> {
    value.as_str().ok_or_else(|| {
        ApiError::invalid_param(
            param,
            format!("{at} must be a string, not {}", kind_of(value)),
        )
    })
}

/// `value` as an integer; one past `i64` counts as the largest, for the range checks to refuse.
fn integer(value: &Value, param: &str, at: &str) -> Result<i64, ApiError> {
    let large = value.as_u64().map(|_| i64::MAX);
    value.as_i64().or(large).ok_or_else(|| {
        ApiError::invalid_param(
            param,
            format!("{at} must be an integer, not {}", kind_of(value)),
        )
    })
}

fn number(value: &Value, name: &str) -> Result<f64, ApiError> {
    value.as_f64().ok_or_else(|| {
        ApiError::invalid_param(
            name,
            format!("{name} must be a number, not {}", kind_of(value)),
        )
    })
}

/// How a JSON value is named in an error.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Value {
        read(body.to_string().as_bytes(), Purpose::Answer)
            .unwrap_or_else(|e| panic!("{}", e.message))
            .chat
    }

    fn refused(body: Value) -> String {
        read(body.to_string().as_bytes(), Purpose::Answer)
            .expect_err("refused")
            .message
    }

    #[test]
    fn a_tool_round_trip_becomes_calls_and_tool_messages() {
        let chat = chat(json!({
            "model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": ""},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather",
                     "input": {"city": "Paris", "days": 2}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": [{"type": "text", "text": "21 C"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "down",
                     "is_error": true},
                    {"type": "text", "text": "And tomorrow?"},
                ]},
            ],
            "tools": [
                {"name": "weather", "description": "d", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search"},
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "metadata": {"user_id": "u"}, "service_tier": "auto",
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "output_config": {"effort": "max"},
        }));
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Checking.", "reasoning_content": "Use the tool.",
                 "tool_calls": [{"id": "toolu_1", "type": "function", "function": {
                     "name": "weather", "arguments": "{\"city\":\"Paris\",\"days\":2}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: down"},
                {"role": "user", "content": "And tomorrow?"},
            ])
        );
        assert_eq!(
            chat["tools"],
            json!([{"type": "function", "function": {
                "name": "weather", "description": "d", "parameters": {"type": "object"}}}])
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["reasoning_effort"], "high");
    }

    #[test]
    fn an_output_format_is_a_response_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let chat = chat(json!({
            "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
            "thinking": {"type": "adaptive", "display": "summarized"},
        }));
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}})
        );
        assert!(chat.get("reasoning_effort").is_none());
    }

    #[test]
    fn mistakes_name_their_field() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (
                json!({"max_tokens": 5, "messages": user}),
                "model is missing",
            ),
            (
                json!({"model": "m", "messages": user}),
                "max_tokens is missing",
            ),
            (
                json!({"model": "m", "max_tokens": "5", "messages": user}),
                "max_tokens must be an integer, not a string",
            ),
            (
                json!({"model": "m", "max_tokens": 0, "messages": user}),
                "max_tokens is 0",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages is empty",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user, "temperature": 1.5}),
                "temperature is 1.5",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role is `tool`",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                    {"type": "image", "source": {}}]}]}),
                "messages[0].content[0] is an `image` block",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "tool_choice": {"type": "tool"}}),
                "tool_choice.name is missing",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "tool_choice": {"type": "sometimes"}}),
                "tool_choice.type is `sometimes`",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "tools": [{"name": "f"}]}),
                "tools[0].input_schema is missing",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]}),
                "messages[0].content[0].input must be an object",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "output_config": {"format": {"type": "json_schema"}}}),
                "output_config.format.schema is missing",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "output_config": {"effort": "extreme"}}),
                "output_config.effort is `extreme`",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": user,
                       "thinking": {"type": "sometimes"}}),
                "thinking.type is `sometimes`",
            ),
        ];
        for (body, expected) in cases {
            let message = refused(body.clone());
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    #[test]
    fn counting_tokens_needs_no_max_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let request = read(body.to_string().as_bytes(), Purpose::CountTokens).unwrap();
        assert_eq!(request.chat["messages"][0]["content"], "hi");
        assert!(request.chat.get("max_tokens").is_none());
    }
}
