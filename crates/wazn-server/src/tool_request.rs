//! Function tools in a chat request for a model with a chat template: the checked `tools`,
//! `tool_choice` and `parallel_tool_calls`, the model's call format, the tools shown to the
//! model (through the template's `tools` variable, or a system message where the template has
//! none), and the grammar that holds its calls to their schemas.

use serde_json::{json, Value};
use wazn_engine::GrammarSpec;
use wazn_text::tool_calls::{ToolChoice, ToolFormat, ToolSpec};
use wazn_text::{ChatMessage, Tokenizer};

use crate::error::ApiError;
use crate::wire::{self, ChatRequest};

/// What a request's tools ask of the model.
#[derive(Debug)]
pub struct ToolPlan {
    pub format: ToolFormat,
    /// `None`: "auto", the model may answer or call.
    pub forced: Option<ToolChoice>,
    pub tools: Vec<ToolSpec>,
    /// The request's `tools` as templates read them.
    pub tools_json: Value,
    pub parallel: bool,
}

/// The grammar of a plan's calls and the token after which it applies, if any.
pub struct ToolGrammar {
    pub spec: GrammarSpec,
    pub after_token: Option<u32>,
}

impl ToolPlan {
    /// The plan of `request`, or `None` when it has no tools or `tool_choice` is "none" (the
    /// tools are then left out of the prompt and the answer is plain text). `format` is the
    /// model's call format.
    pub fn of(request: &ChatRequest, format: ToolFormat) -> Result<Option<ToolPlan>, ApiError> {
        let tools = match &request.tools {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => ToolSpec::from_openai_tools(list)
                .map_err(|e| ApiError::invalid_param("tools", e.to_string()))?,
        };
        let forced = match request.tool_choice.as_ref() {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "none" => return Ok(None),
                "auto" => None,
                "required" => Some(ToolChoice::Required),
                other => {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!(
                        "tool_choice is `{other}`; it must be none, auto, required or a function"
                    ),
                    ))
                }
            },
            Some(choice) => {
                let name = choice
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| choice.get("type").and_then(Value::as_str) == Some("function"))
                    .ok_or_else(|| {
                        ApiError::invalid_param(
                            "tool_choice",
                            "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        )
                    })?;
                if !tools.iter().any(|t| t.name == name) {
                    return Err(ApiError::invalid_param(
                        "tool_choice",
                        format!("tool_choice names `{name}`, which is not one of the tools"),
                    ));
                }
                Some(ToolChoice::Named(name.to_string()))
            }
        };
        if tools.is_empty() {
            return match forced {
                Some(_) => Err(ApiError::invalid_param(
                    "tool_choice",
                    "tool_choice asks for a tool call but no tools are given",
                )),
                None => Ok(None),
            };
        }
        Ok(Some(ToolPlan {
            format,
            forced,
            tools,
            tools_json: request.tools.clone().unwrap_or(Value::Null),
            parallel: request.parallel_tool_calls.unwrap_or(true),
        }))
    }

    /// The grammar of the calls: from the first token when a call is forced (after
    /// `answer_starts_after`, the token that closes a thinking model's reasoning, when the
    /// prompt opened it); under "auto" from the format's trigger token on, when the
    /// vocabulary has one (else the calls are parsed but not constrained).
    pub fn grammar(
        &self,
        tokenizer: &Tokenizer,
        answer_starts_after: Option<u32>,
    ) -> Result<Option<ToolGrammar>, ApiError> {
        let to_api = |e: wazn_text::TextError| ApiError::invalid_param("tools", e.to_string());
        match &self.forced {
            Some(choice) => {
                let lark = self
                    .format
                    .forced_grammar(&self.tools, choice, self.parallel, tokenizer)
                    .map_err(to_api)?;
                Ok(Some(ToolGrammar {
                    spec: GrammarSpec::Lark(lark),
                    after_token: answer_starts_after,
                }))
            }
            None => match self.format.trigger_token(tokenizer) {
                Some(trigger) => {
                    let lark = self
                        .format
                        .triggered_grammar(&self.tools, self.parallel, tokenizer)
                        .map_err(to_api)?;
                    Ok(Some(ToolGrammar {
                        spec: GrammarSpec::Lark(lark),
                        after_token: Some(trigger),
                    }))
                }
                None => Ok(None),
            },
        }
    }
}

/// A chat message as a template reads it, with an assistant turn's reasoning and calls
/// (arguments as an object where they are valid JSON, as vLLM passes them) and a tool result's
/// call id and name.
pub fn chat_message(index: usize, message: &wire::ChatMessageIn) -> Result<ChatMessage, ApiError> {
    let role = wire::check_role(index, &message.role)?;
    let mut out = ChatMessage::new(role, wire::message_text(index, &message.content)?);
    out.reasoning_content = message.reasoning_content.clone().filter(|r| !r.is_empty());
    if let Some(calls) = &message.tool_calls {
        let calls = calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::String(call.function.arguments.clone()));
                let mut entry = json!({
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments},
                });
                if let Some(id) = &call.id {
                    entry["id"] = json!(id);
                }
                entry
            })
            .collect();
        out.tool_calls = Some(calls);
    }
    out.tool_call_id = message.tool_call_id.clone();
    out.name = message.name.clone();
    Ok(out)
}
