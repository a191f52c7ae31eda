//! Showing the model its tools: through the chat template's `tools` variable, or, for a
//! template that has none, in a system message that lists them and says how to call them in
//! the model's format (the words of Qwen 2.5's template for Hermes calls).

use serde_json::Value;

use super::ToolFormat;
use crate::{ChatMessage, ChatTemplate, TextError};

/// The prompt text of `messages`, ready for the assistant's turn, with `tools` (OpenAI's
/// list of `{"type": "function", "function": {...}}`) shown to the model.
pub fn render_with_tools(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    tools: &Value,
    format: ToolFormat,
) -> Result<String, TextError> {
    if template.reads_tools() {
        return template.render_with_tools(messages, Some(tools), true);
    }
    let mut with_tools = messages.to_vec();
    let described = describe(tools, format);
    match with_tools.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{described}", first.content);
        }
        _ => with_tools.insert(0, ChatMessage::new("system", described)),
    }
    template.render(&with_tools, true)
}

/// The tools, one JSON line each, and how to call them.
fn describe(tools: &Value, format: ToolFormat) -> String {
    let mut text = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for tool in tools.as_array().into_iter().flatten() {
        text.push('\n');
        text.push_str(&tool.to_string());
    }
    text.push_str("\n</tools>\n\n");
    text.push_str(match format {
        ToolFormat::Hermes => {
            "For each function call, return a json object with function name and arguments \
             within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \
             \"arguments\": <args-json-object>}\n</tool_call>"
        }
        ToolFormat::Llama3Json => {
            "To call a function, respond with a JSON object of the form {\"name\": \
             <function-name>, \"parameters\": <args-json-object>} and nothing else."
        }
        ToolFormat::Mistral => {
            "To call functions, respond with [TOOL_CALLS] followed by a JSON list of \
             {\"name\": <function-name>, \"arguments\": <args-json-object>} objects."
        }
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_without_tools_gets_them_in_a_system_message() {
        let template = ChatTemplate::new(
            "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(!template.reads_tools());
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        let user = [ChatMessage::new("user", "hi")];
        let text = render_with_tools(&template, &user, &tools, ToolFormat::Hermes).unwrap();
        assert!(text.starts_with("[system]# Tools"), "{text}");
        assert!(
            text.contains(r#"{"function":{"name":"f","parameters":{}},"type":"function"}"#)
                || text.contains(r#"{"type":"function","function":{"name":"f","parameters":{}}}"#),
            "{text}"
        );
        assert!(text.ends_with("[user]hi\n"), "{text}");
        let with_system = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "hi"),
        ];
        let text = render_with_tools(&template, &with_system, &tools, ToolFormat::Hermes).unwrap();
        assert!(text.starts_with("[system]Be brief.\n\n# Tools"), "{text}");
    }
}
