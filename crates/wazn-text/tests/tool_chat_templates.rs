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
