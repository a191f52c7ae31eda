//! Real tool-calling chat templates (Llama 3.1, Qwen3, Mistral Nemo, Hermes 3) rendered with
//! tools, tool calls and tool results, against transformers' chat-template renderer (Jinja2):
//! tests/data/tool_chat_templates.json, written by tests/gen_tool_template_fixtures.py.
//! Byte equality.

mod common;

use common::read_fixture;
use serde::Deserialize;
use wazn_text::{ChatMessage, ChatTemplate};

#[derive(Deserialize)]
struct Fixture {
    templates: Vec<TemplateFixture>,
}

#[derive(Deserialize)]
struct TemplateFixture {
    name: String,
    bos_token: String,
    eos_token: String,
    template: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<ChatMessage>,
    tools: Option<serde_json::Value>,
    add_generation_prompt: bool,
    expected: String,
}

/// Where `got` first departs from `want`, with some text of each around that byte.
fn first_difference(got: &str, want: &str) -> String {
    let at = got
        .bytes()
        .zip(want.bytes())
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let around = |s: &str| {
        let mut start = at.saturating_sub(60);
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 60).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        s[start..end].to_string()
    };
    format!(
        "first difference at byte {at} (got {} bytes, want {}):\n  got: {:?}\n want: {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    )
}

#[test]
fn tool_templates_render_as_transformers() {
    let fx: Fixture = read_fixture("tool_chat_templates.json");
    assert_eq!(fx.templates.len(), 4);
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for t in &fx.templates {
        let template = ChatTemplate::new(&t.template, &t.bos_token, &t.eos_token)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert!(!t.cases.is_empty(), "{}", t.name);
        for case in &t.cases {
            n_cases += 1;
            let rendered = template.render_with_tools(
                &case.messages,
                case.tools.as_ref(),
                case.add_generation_prompt,
            );
            match rendered {
                Ok(text) if text == case.expected => {}
                Ok(text) => failures.push(format!(
                    "{} / {}: {}",
                    t.name,
                    case.name,
                    first_difference(&text, &case.expected)
                )),
                Err(e) => failures.push(format!("{} / {}: error: {e}", t.name, case.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tool_templates_read_tools() {
    let fx: Fixture = read_fixture("tool_chat_templates.json");
    for t in &fx.templates {
        let template = ChatTemplate::new(&t.template, &t.bos_token, &t.eos_token).unwrap();
        assert!(template.reads_tools(), "{}", t.name);
    }
}

/// The render budget grows with the conversation, so an honest request as large as the
/// server's default body limit (1 MiB) renders with every real template: one long message,
/// tens of thousands of short ones (where the instructions per message cost the most),
/// 1 MiB of tool schemas, and thousands of tool-call turns.
#[test]
fn conversations_as_large_as_a_request_body_render() {
    const SIZE: usize = 1 << 20;
    let fixture: Fixture = read_fixture("tool_chat_templates.json");
    for t in &fixture.templates {
        let template = ChatTemplate::new(&t.template, &t.bos_token, &t.eos_token).unwrap();
        let tools = t.cases.iter().find_map(|c| c.tools.clone()).expect("tools");

        let long = vec![ChatMessage::new("user", "lorem ipsum ".repeat(SIZE / 12))];
        // An odd count, so that the last turn is the user's.
        let n_short = (SIZE / json_len(&ChatMessage::new("user", "hi"))) | 1;
        let short: Vec<ChatMessage> = (0..n_short)
            .map(|i| ChatMessage::new(["user", "assistant"][i % 2], "hi"))
            .collect();
        let many_tools: Vec<serde_json::Value> = tools
            .as_array()
            .expect("a tools list")
            .iter()
            .cycle()
            .take(SIZE / json_len(&tools) * 2)
            .cloned()
            .collect();
        let mut turns = vec![ChatMessage::new("user", "The weather in Paris?")];
        let mut turns_len = 0;
        while turns_len < SIZE {
            // Mistral's template wants ids of nine letters and digits.
            let id = format!("call{:05}", turns.len() % 100_000);
            let mut call = ChatMessage::new("assistant", "");
            call.tool_calls = Some(vec![serde_json::json!({
                "id": id,
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": {"location": "Paris"}},
            })]);
            let mut result = ChatMessage::new("tool", "{\"temperature\": 20}");
            result.tool_call_id = Some(id);
            result.name = Some("get_current_weather".into());
            turns_len += json_len(&call) + json_len(&result);
            turns.extend([call, result]);
        }

        let user = [ChatMessage::new("user", "hi")];
        let conversations: [(&str, &[ChatMessage], Option<serde_json::Value>); 4] = [
            ("one long message", &long, None),
            ("short messages", &short, None),
            (
                "tool schemas",
                &user,
                Some(serde_json::Value::Array(many_tools)),
            ),
            ("tool-call turns", &turns, Some(tools.clone())),
        ];
        for (what, messages, tools) in conversations {
            let rendered = template.render_with_tools(messages, tools.as_ref(), true);
            assert!(
                rendered.is_ok(),
                "{} with {what}: {:?}",
                t.name,
                rendered.err()
            );
        }
    }
}

fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).expect("JSON").len()
}
