//! The request bodies of the OpenAI API as they arrive, and their checks: a body is
//! read as bytes, then UTF-8, then JSON, then the typed request, so that each kind of
//! mistake gets its own one-line 400.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use wazn_engine::SamplerParams;

use crate::error::ApiError;

/// Most choices one request may ask for.
pub const MAX_N: usize = 16;
/// Most stop strings one request may give.
pub const MAX_STOP: usize = 16;
/// Most alternatives per token `top_logprobs` may ask for.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Parses a body: valid UTF-8, valid JSON, an object, then the fields of `T`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// `stop`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The settings shared by chat and text completions.
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StopField>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// OpenAI's output format: `text`, `json_object` or `json_schema`.
    pub response_format: Option<Value>,
    /// vLLM's output constraint: one of `json`, `regex`, `choice`, `grammar`, `json_object`.
    pub structured_outputs: Option<Value>,
    /// vLLM's older names for the same constraints.
    pub guided_json: Option<Value>,
    pub guided_regex: Option<Value>,
    pub guided_choice: Option<Value>,
    pub guided_grammar: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessageIn {
    pub role: String,
    /// A string, a list of `{"type": "text", "text": ...}` parts, or null.
    #[serde(default)]
    pub content: Value,
    /// An assistant turn's reasoning (harmony models; `reasoning` is read the same).
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// An assistant turn's function calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// A tool result: the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// A tool result: the function's name (else found through `tool_call_id`).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionCallIn,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallIn {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<i64>,
    /// Function tools (read again in document order where they are rendered: see
    /// `harmony_request`).
    #[serde(default)]
    pub tools: Option<Value>,
    /// "none" leaves the tools out of the prompt; "auto" lets the model choose; "required" or
    /// `{"type": "function", "function": {"name"}}` makes the answer a call.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether the model may make several calls in one answer (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// low, medium or high (harmony models).
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(flatten)]
    pub common: CommonParams,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// A string, a list of strings, a list of token ids, or a list of lists of them.
    pub prompt: Value,
    /// Alternatives per token to report besides the chosen token (0: the chosen one only).
    pub logprobs: Option<i64>,
    /// The answer's text, and its log-probabilities, start with the prompt's.
    #[serde(default)]
    pub echo: bool,
    /// Fill-in-the-middle: what follows the text to write.
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub common: CommonParams,
}

/// The checked settings of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub sampler: SamplerParams,
    /// `None` runs until an end token or a full context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub ignore_eos: bool,
}

impl CommonParams {
    /// Checks every field; `n_ctx` bounds `max_tokens`, `default_seed` is used when the
    /// request gives none.
    pub fn check(&self, n_ctx: usize, default_seed: u64) -> Result<Generation, ApiError> {
        self.check_with(n_ctx, default_seed, 1)
    }

    /// [`CommonParams::check`] with `max_tokens` allowed down to `least_tokens` (0 where only
    /// the prompt is asked for: completions with `echo`).
    pub fn check_with(
        &self,
        n_ctx: usize,
        default_seed: u64,
        least_tokens: i64,
    ) -> Result<Generation, ApiError> {
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => Some(("max_completion_tokens", v)),
            (None, Some(v)) => Some(("max_tokens", v)),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            Some((name, v)) if v < least_tokens => {
                let with_echo = if least_tokens == 0 {
                    ""
                } else {
                    " (0 only with echo, on /v1/completions)"
                };
                return Err(ApiError::invalid_param(
                    name,
                    format!("{name} is {v}; it must be at least {least_tokens}{with_echo}"),
                ));
            }
            Some((name, v)) if v as u64 > n_ctx as u64 => {
                return Err(ApiError::invalid_param(
                    name,
                    format!("{name} is {v}, more than the context of {n_ctx} tokens"),
                ))
            }
            Some((_, v)) => Some(v as usize),
            None => None,
        };
        let n = match self.n {
            None => 1,
            Some(n) if (1..=MAX_N as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n is {n}; it must be between 1 and {MAX_N}"),
                ))
            }
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid_param(
                "temperature",
                format!("temperature is {temperature}; it must be between 0 and 2"),
            ));
        }
        let top_k = match self.top_k {
            None => 0,
            Some(k) if k <= 0 => 0,
            Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
        };
        let mut logit_bias = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let token: u32 = key.parse().map_err(|_| {
                ApiError::invalid_param(
                    "logit_bias",
                    format!("logit_bias key `{key}` is not a token id"),
                )
            })?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(ApiError::invalid_param(
                    "logit_bias",
                    format!(
                        "logit_bias for token {token} is {bias}; it must be between -100 and 100"
                    ),
                ));
            }
            logit_bias.push((token, bias));
        }
        logit_bias.sort_by_key(|&(token, _)| token);
        let penalty = |name: &str, v: Option<f32>| -> Result<f32, ApiError> {
            match v {
                Some(v) if !(-2.0..=2.0).contains(&v) => Err(ApiError::invalid_param(
                    name,
                    format!("{name} is {v}; it must be between -2 and 2"),
                )),
                Some(v) => Ok(v),
                None => Ok(0.0),
            }
        };
        let sampler = SamplerParams {
            temperature,
            top_k,
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repetition_penalty.unwrap_or(1.0),
            repeat_last_n: 64,
            presence_penalty: penalty("presence_penalty", self.presence_penalty)?,
            frequency_penalty: penalty("frequency_penalty", self.frequency_penalty)?,
            seed: self.seed.map_or(default_seed, |s| s as u64),
            logit_bias,
        };
        sampler
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(list)) => list.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid_param(
                "stop",
                format!(
                    "{} stop strings given; at most {MAX_STOP} are allowed",
                    stop.len()
                ),
            ));
        }
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Generation {
            sampler,
            max_tokens,
            stop,
            n,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            ignore_eos: self.ignore_eos,
        })
    }
}

/// The text of a message's `content`.
pub fn message_text(index: usize, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => {
                        return Err(ApiError::invalid_param(
                            "messages",
                            format!("messages[{index}].content: only text parts are supported"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid_param(
            "messages",
            format!("messages[{index}].content must be a string or a list of text parts"),
        )),
    }
}

/// Roles a chat may use; `developer` is read as `system`.
pub fn check_role(index: usize, role: &str) -> Result<&'static str, ApiError> {
    match role {
        "system" | "developer" => Ok("system"),
        "user" => Ok("user"),
        "assistant" => Ok("assistant"),
        "tool" => Ok("tool"),
        other => Err(ApiError::invalid_param(
            "messages",
            format!(
                "messages[{index}].role is `{other}`; it must be system, developer, user, assistant or tool"
            ),
        )),
    }
}

/// Checks `top_logprobs` / `logprobs` counts.
pub fn check_top_logprobs(name: &str, k: i64) -> Result<usize, ApiError> {
    if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
        Ok(k as usize)
    } else {
        Err(ApiError::invalid_param(
            name,
            format!("{name} is {k}; it must be between 0 and {MAX_TOP_LOGPROBS}"),
        ))
    }
}
