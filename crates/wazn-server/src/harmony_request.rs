//! A chat request for a harmony model (gpt-oss) → its prompt ids, mapped as vLLM maps OpenAI
//! chats for gpt-oss: harmony's system message carries the reasoning effort; `system` and
//! `developer` messages become the developer message's instructions, next to the function
//! tools; an assistant turn's `reasoning_content` is an `analysis` message, its text a `final`
//! answer (a `commentary` preamble when it calls tools), each tool call a `commentary` message
//! to `functions.NAME` in `<|constrain|>json`; a tool result is a message from
//! `functions.NAME` to the assistant.
//!
//! A tool's JSON schema is rendered property by property in the order the client wrote it, so
//! the tools are read a second time from the body's text into [`OrderedJson`] (the request's
//! `serde_json::Value` has lost that order).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use wazn_text::harmony::{
    DeveloperContent, HarmonyRenderer, Message, OrderedJson, ReasoningEffort, RenderConfig, Role,
    SystemContent, ToolDescription,
};
use wazn_text::Tokenizer;

use crate::error::ApiError;
use crate::wire::{self, ChatRequest};

/// The tools of a request body, keys in document order.
#[derive(Deserialize)]
struct OrderedTools {
    #[serde(default)]
    tools: Option<Vec<ToolIn>>,
}

#[derive(Deserialize)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    function: Option<FunctionIn>,
}

#[derive(Deserialize)]
struct FunctionIn {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<OrderedJson>,
}

/// The prompt ids of `request` (whose body is `body`), ending with `<|start|>assistant`;
/// `default_effort` is the reasoning effort when the request gives none.
pub fn prompt_ids(
    tokenizer: &Tokenizer,
    body: &[u8],
    request: &ChatRequest,
    default_effort: ReasoningEffort,
) -> Result<Vec<u32>, ApiError> {
    let messages = conversation(body, request, default_effort, None)?;
    let renderer = HarmonyRenderer::new(tokenizer)
        .map_err(|e| ApiError::internal(format!("cannot render harmony: {e}")))?;
    renderer
        .render_for_completion(&messages, Role::Assistant, RenderConfig::default())
        .map_err(|e| ApiError::bad_request(format!("cannot render the conversation: {e}")))
}

/// `reasoning_effort`: low, medium or high; `default` when absent.
pub fn reasoning_effort(
    value: Option<&str>,
    default: ReasoningEffort,
) -> Result<ReasoningEffort, ApiError> {
    match value {
        None => Ok(default),
        Some("medium") => Ok(ReasoningEffort::Medium),
        Some("low") => Ok(ReasoningEffort::Low),
        Some("high") => Ok(ReasoningEffort::High),
        Some(other) => Err(ApiError::invalid_param(
            "reasoning_effort",
            format!("reasoning_effort is `{other}`; it must be low, medium or high"),
        )),
    }
}

/// The harmony conversation of a request. `start_date` (`YYYY-MM-DD`) is written into the
/// system message when given.
pub(crate) fn conversation(
    body: &[u8],
    request: &ChatRequest,
    default_effort: ReasoningEffort,
    start_date: Option<String>,
) -> Result<Vec<Message>, ApiError> {
    let effort = reasoning_effort(request.reasoning_effort.as_deref(), default_effort)?;
    let system = SystemContent {
        reasoning_effort: Some(effort),
        conversation_start_date: start_date,
        ..SystemContent::default()
    };
    let mut out = vec![Message::system(system)];

    let mut instructions = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        if m.role == "system" || m.role == "developer" {
            instructions.push(wire::message_text(i, &m.content)?);
        }
    }
    let tools_off = request.tool_choice.as_ref().and_then(Value::as_str) == Some("none");
    let tools = if tools_off {
        Vec::new()
    } else {
        function_tools(body)?
    };
    if !instructions.is_empty() || !tools.is_empty() {
        let mut developer = DeveloperContent {
            instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
            tools: None,
        };
        if !tools.is_empty() {
            developer = developer.with_function_tools(tools);
        }
        out.push(Message::developer(developer));
    }

    // Tool call id → function name, to name the results.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in request.messages.iter().enumerate() {
        match wire::check_role(i, &m.role)? {
            "system" => {}
            "user" => out.push(Message::text(
                Role::User,
                wire::message_text(i, &m.content)?,
            )),
            "assistant" => {
                if let Some(reasoning) = m.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
                    out.push(Message::text(Role::Assistant, reasoning).with_channel("analysis"));
                }
                let text = wire::message_text(i, &m.content)?;
                let calls = m.tool_calls.as_deref().unwrap_or_default();
                if calls.is_empty() {
                    if !text.is_empty() || m.reasoning_content.is_none() {
                        out.push(Message::text(Role::Assistant, text).with_channel("final"));
                    }
                    continue;
                }
                if !text.is_empty() {
                    out.push(Message::text(Role::Assistant, text).with_channel("commentary"));
                }
                for call in calls {
                    if let Some(id) = &call.id {
                        call_names.insert(id.clone(), call.function.name.clone());
                    }
                    out.push(
                        Message::text(Role::Assistant, call.function.arguments.as_str())
                            .with_channel("commentary")
                            .with_recipient(format!("functions.{}", call.function.name))
                            .with_content_type("<|constrain|>json"),
                    );
                }
            }
            _ => {
                let name = m
                    .name
                    .clone()
                    .or_else(|| {
                        m.tool_call_id
                            .as_ref()
                            .and_then(|id| call_names.get(id).cloned())
                    })
                    .ok_or_else(|| {
                        ApiError::invalid_param(
                            "messages",
                            format!(
                                "messages[{i}] is a tool result without `name` and its `tool_call_id` names no earlier tool call"
                            ),
                        )
                    })?;
                out.push(Message::tool_result(
                    format!("functions.{name}"),
                    wire::message_text(i, &m.content)?,
                ));
            }
        }
    }
    Ok(out)
}

/// The request's function tools, their parameters in document order.
fn function_tools(body: &[u8]) -> Result<Vec<ToolDescription>, ApiError> {
    let parsed: OrderedTools = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_param("tools", format!("invalid tools: {e}")))?;
    let mut tools = Vec::new();
    for (i, tool) in parsed.tools.unwrap_or_default().into_iter().enumerate() {
        let function = match (tool.kind.as_str(), tool.function) {
            ("function", Some(function)) => function,
            (kind, _) => {
                return Err(ApiError::invalid_param(
                    "tools",
                    format!("tools[{i}] has type `{kind}`; only function tools with a `function` are supported"),
                ))
            }
        };
        tools.push(ToolDescription {
            name: function.name,
            description: function.description.unwrap_or_default(),
            parameters: function.parameters,
        });
    }
    Ok(tools)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_body;

    /// The openai-harmony renderings of crates/wazn-text/tests/data/harmony_cases.json.
    fn fixture_completion(name: &str) -> Vec<u32> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wazn-text/tests/data/harmony_cases.json"
        );
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let case = fixture["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        serde_json::from_value(case["completion"].clone()).unwrap()
    }

    fn render(body: &str, start_date: Option<&str>) -> Result<Vec<u32>, ApiError> {
        let tok = Tokenizer::o200k_harmony().unwrap();
        let request: ChatRequest = parse_body(body.as_bytes())?;
        let messages = conversation(
            body.as_bytes(),
            &request,
            ReasoningEffort::Medium,
            start_date.map(String::from),
        )?;
        Ok(HarmonyRenderer::new(&tok)
            .unwrap()
            .render_for_completion(&messages, Role::Assistant, RenderConfig::default())
            .unwrap())
    }

    #[test]
    fn a_plain_question_renders_as_openai_harmony_does() {
        let body = r#"{"messages": [{"role": "user", "content": "What is 2 + 2?"}]}"#;
        assert_eq!(render(body, None).unwrap(), fixture_completion("simple"));
    }

    /// The request an OpenAI client sends for the fixture's `tools_and_call` conversation:
    /// the schema's keys in the order written (`location` before `format`; sorted, they would
    /// swap and the ids would differ).
    const TOOLS_AND_CALL: &str = r#"{
        "model": "gpt-oss",
        "reasoning_effort": "high",
        "messages": [
            {"role": "system", "content": "Always respond in riddles"},
            {"role": "user", "content": "What is the weather like in SF?"},
            {"role": "assistant", "content": null,
             "reasoning_content": "Need to use function get_current_weather.",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {
                 "name": "get_current_weather",
                 "arguments": "{\"location\": \"San Francisco\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1",
             "content": "{\"sunny\": true, \"temperature\": 20}"}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "get_current_weather",
                "description": "Gets the current weather in the provided location.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
                    },
                    "required": ["location"]
                }}},
            {"type": "function", "function": {"name": "get_time", "description": "Current time"}}
        ]
    }"#;

    #[test]
    fn tools_reasoning_and_a_tool_result_render_as_openai_harmony_does() {
        assert_eq!(
            render(TOOLS_AND_CALL, Some("2025-06-28")).unwrap(),
            fixture_completion("tools_and_call")
        );
        // The tool result found its name through tool_call_id; `name` works as well.
        let named = TOOLS_AND_CALL.replace(
            r#""tool_call_id": "call_1""#,
            r#""name": "get_current_weather""#,
        );
        assert_eq!(
            render(&named, Some("2025-06-28")).unwrap(),
            fixture_completion("tools_and_call")
        );
    }

    #[test]
    fn the_server_default_effort_applies_when_the_request_gives_none() {
        let plain = r#"{"messages": [{"role": "user", "content": "Hi"}]}"#;
        let high =
            r#"{"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "high"}"#;
        let system_of = |body: &str, default| {
            let request: ChatRequest = parse_body(body.as_bytes()).unwrap();
            conversation(body.as_bytes(), &request, default, None).unwrap()[0].clone()
        };
        assert_eq!(
            system_of(plain, ReasoningEffort::High),
            system_of(high, ReasoningEffort::Low)
        );
        assert_ne!(
            system_of(plain, ReasoningEffort::Medium),
            system_of(high, ReasoningEffort::Medium)
        );
    }

    #[test]
    fn bad_harmony_requests_name_the_field() {
        let cases = [
            (
                TOOLS_AND_CALL.replace(r#""high""#, r#""extreme""#),
                "reasoning_effort",
            ),
            (
                TOOLS_AND_CALL.replace(r#""tool_call_id": "call_1""#, r#""tool_call_id": "x""#),
                "messages",
            ),
            (
                TOOLS_AND_CALL.replace(
                    r#"{"type": "function", "function": {"name": "get_time""#,
                    r#"{"type": "web_search", "function": {"name": "get_time""#,
                ),
                "tools",
            ),
        ];
        for (body, param) in cases {
            let err = render(&body, None).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{}", err.message);
        }
    }
}
