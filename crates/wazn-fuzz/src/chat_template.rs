//! Chat templates: Jinja source from a model file, run on every request.

use serde_json::json;
use wazn_text::{ChatMessage, ChatTemplate, MAX_RENDERED_BYTES};

/// Compiles and renders an arbitrary template. The input is the template's source, then
/// optionally a NUL byte and a JSON array of messages (a default conversation with a tool
/// call otherwise). Rendering must end, within its fuel, in a prompt of at most
/// [`MAX_RENDERED_BYTES`] or an error: never a panic, a hang or an unbounded allocation.
pub fn chat_template(data: &[u8]) {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let messages = rest
        .and_then(|json| serde_json::from_slice::<Vec<ChatMessage>>(json).ok())
        .unwrap_or_else(conversation);
    let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") else {
        return;
    };
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    }}]);
    for add_generation_prompt in [false, true] {
        if let Ok(prompt) =
            template.render_with_tools(&messages, Some(&tools), add_generation_prompt)
        {
            assert!(prompt.len() <= MAX_RENDERED_BYTES, "{} bytes", prompt.len());
        }
    }
    if let Ok(prompt) = template.render(&messages, true) {
        assert!(prompt.len() <= MAX_RENDERED_BYTES, "{} bytes", prompt.len());
    }
}

/// A system prompt, a question, a tool call, its result and an answer.
fn conversation() -> Vec<ChatMessage> {
    let mut call = ChatMessage::new("assistant", "");
    call.reasoning_content = Some("The user wants the weather.".into());
    call.tool_calls = Some(vec![json!({
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    })]);
    let mut result = ChatMessage::new("tool", "{\"temperature\": 21}");
    result.tool_call_id = Some("call_0".into());
    result.name = Some("get_weather".into());
    vec![
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", "What is the weather in Paris?"),
        call,
        result,
        ChatMessage::new("assistant", "It is 21 °C."),
        ChatMessage::new("user", "Thanks!"),
    ]
}
