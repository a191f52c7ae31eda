//! Chat templates against transformers' `apply_chat_template` / Jinja2 renderer
//! (tests/data/*chat_template*.json, written by tests/gen_text_fixtures.py): byte equality.

mod common;

use common::{read_fixture, smollm2_file, smollm2_tokenizer};
use serde::Deserialize;
use wazn_text::{ChatMessage, ChatTemplate, TextError};

#[derive(Deserialize)]
struct SmolFixture {
    cases: Vec<SmolCase>,
}

#[derive(Deserialize)]
struct SmolCase {
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    expected: String,
}

#[derive(Deserialize)]
struct Constructs {
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    cases: Vec<ConstructCase>,
    raise: Raise,
}

#[derive(Deserialize)]
struct ConstructCase {
    name: String,
    template: String,
    add_generation_prompt: bool,
    expected: String,
}

#[derive(Deserialize)]
struct Raise {
    template: String,
    messages: Vec<ChatMessage>,
    message: String,
    ok_messages: Vec<ChatMessage>,
    ok_expected: String,
}

#[test]
fn smollm2_template_renders_as_transformers() {
    let fx: SmolFixture = read_fixture("smollm2_chat_template.json");
    let template = ChatTemplate::from_metadata(smollm2_file().metadata(), smollm2_tokenizer())
        .unwrap()
        .expect("SmolLM2 has a chat template");
    assert!(fx.cases.len() >= 10);
    for case in &fx.cases {
        let rendered = template
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(
            rendered, case.expected,
            "{:?} add_generation_prompt={}",
            case.messages, case.add_generation_prompt
        );
    }
}

#[test]
fn jinja_constructs_render_as_transformers() {
    let fx: Constructs = read_fixture("chat_template_constructs.json");
    let mut failures = Vec::new();
    for case in &fx.cases {
        let template = ChatTemplate::new(&case.template, &fx.bos_token, &fx.eos_token)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        match template.render(&fx.messages, case.add_generation_prompt) {
            Ok(rendered) if rendered == case.expected => {}
            Ok(rendered) => failures.push(format!(
                "{} (gen={}):\n got: {rendered:?}\nwant: {:?}",
                case.name, case.add_generation_prompt, case.expected
            )),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn raise_exception_becomes_an_error_with_the_templates_message() {
    let fx: Constructs = read_fixture("chat_template_constructs.json");
    let template = ChatTemplate::new(&fx.raise.template, &fx.bos_token, &fx.eos_token).unwrap();
    match template.render(&fx.raise.messages, false) {
        Err(TextError::TemplateRaised(message)) => assert_eq!(message, fx.raise.message),
        other => panic!("expected the template's exception, got {other:?}"),
    }
    assert_eq!(
        template.render(&fx.raise.ok_messages, false).unwrap(),
        fx.raise.ok_expected
    );
}

/// strftime_now reads the clock: compared with `date -u` taken just before and after.
#[test]
fn strftime_now_gives_todays_utc_date() {
    let date = || {
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %A %b"])
            .output();
        out.ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(before) = date() else {
        eprintln!("no `date` command here; skipped");
        return;
    };
    let template = ChatTemplate::new("{{ strftime_now('%Y-%m-%d %A %b') }}", "", "").unwrap();
    let rendered = template.render(&[], false).unwrap();
    let after = date().unwrap_or_default();
    assert!(
        rendered == before || rendered == after,
        "{rendered} vs {before}/{after}"
    );
}

/// The render error of `source` (a hostile template), which must come.
fn render_error(source: &str) -> String {
    let template = ChatTemplate::new(source, "", "").unwrap();
    match template.render(&[ChatMessage::new("user", "hi")], true) {
        Err(TextError::TemplateRender(message)) => message,
        other => panic!("{source}: expected a render error, got {other:?}"),
    }
}

/// Templates are code from a model file: loops without end, output without end and huge
/// `tojson` indents end in an error instead of a hang, a memory blow-up or an abort.
#[test]
fn hostile_templates_end_in_errors() {
    let endless =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    assert!(render_error(endless).contains("budget"));
    // Strings doubled thirty times (1 GiB) by each operator that joins strings: stopped by
    // the budget's bytes before they grow past it.
    for doubling in [
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s * 2 %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = '%s%s' | format(ns.s, ns.s) %}{% endfor %}",
        "{% macro d(s, n) %}{% if n > 0 %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x', 30) }}",
    ] {
        let message = render_error(doubling);
        assert!(message.contains("budget"), "{doubling}: {message}");
    }
    let huge = "{% for i in range(300) %}{{ 'x' * 100000 }}{% endfor %}";
    assert!(render_error(huge).contains("exceeds"));
    let indented = "{{ messages | tojson(indent=1000000000000) }}";
    assert!(render_error(indented).contains("indent"));
    let wide = "{{ messages | tojson(indent='x' * 1000) }}";
    assert!(render_error(wide).contains("indent"));
    // What real templates use still renders.
    let template = ChatTemplate::new("{{ messages | tojson(indent=4) }}", "", "").unwrap();
    let rendered = template
        .render(&[ChatMessage::new("user", "hi")], false)
        .unwrap();
    assert!(
        rendered.contains("\n        \"role\": \"user\""),
        "{rendered}"
    );
}
