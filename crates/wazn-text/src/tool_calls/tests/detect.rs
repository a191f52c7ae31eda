//! Choosing the format from a chat template and a vocabulary. Template fragments are quoted
//! from the templates in llama.cpp's models/templates/.

use super::super::ToolFormat;
use super::byte_vocab;

use ToolFormat::{Hermes, Llama3Json, Mistral};

/// Qwen-Qwen2.5-7B-Instruct.jinja (and Qwen-Qwen3-0.6B.jinja).
const QWEN: &str = r#"{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}"#;
/// NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja (a Llama 3.1 vocabulary).
const HERMES_3: &str = r#"{{- "For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:
" }}
{{- "<tool_call>
" }}"#;
/// meta-llama-Llama-3.1-8B-Instruct.jinja.
const LLAMA_3_1: &str = r#"{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}"#;
/// meta-llama-Llama-3.2-3B-Instruct.jinja (no <|python_tag|> in it).
const LLAMA_3_2: &str = r#"{{- "<|start_header_id|>user<|end_header_id|>\n\n" -}}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}"#;
/// mistralai-Mistral-Nemo-Instruct-2407.jinja.
const MISTRAL_NEMO: &str = r#"        {{- "[TOOL_CALLS][" }}"#;
/// mistralai-Ministral-3-14B-Reasoning-2512.jinja.
const MINISTRAL_3: &str = r#"                {{- '[TOOL_CALLS]' }}
                {{- name + '[ARGS]' + arguments }}"#;
/// A ChatML template that says nothing of tools (SmolLM2's).
const CHATML: &str = r#"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"#;

#[test]
fn the_template_tells_first() {
    let llama_vocab = byte_vocab(&["<|python_tag|>", "<|eot_id|>", "<|start_header_id|>"]);
    let plain = byte_vocab(&[]);
    assert_eq!(ToolFormat::detect(Some(QWEN), &plain.tokenizer), Hermes);
    // A Hermes fine-tune of Llama 3.1 keeps <|python_tag|> in its vocabulary.
    assert_eq!(
        ToolFormat::detect(Some(HERMES_3), &llama_vocab.tokenizer),
        Hermes
    );
    assert_eq!(
        ToolFormat::detect(Some(LLAMA_3_1), &plain.tokenizer),
        Llama3Json
    );
    assert_eq!(
        ToolFormat::detect(Some(LLAMA_3_2), &plain.tokenizer),
        Llama3Json
    );
    assert_eq!(
        ToolFormat::detect(Some(MISTRAL_NEMO), &plain.tokenizer),
        Mistral
    );
    assert_eq!(
        ToolFormat::detect(Some(MINISTRAL_3), &plain.tokenizer),
        Mistral
    );
}

#[test]
fn the_vocabulary_tells_when_the_template_does_not() {
    let cases = [
        (vec!["[INST]", "[TOOL_CALLS]"], Mistral),
        (vec!["<|im_start|>", "<tool_call>", "</tool_call>"], Hermes),
        (vec!["<|python_tag|>", "<|eom_id|>"], Llama3Json),
        (vec!["<|im_start|>", "<|im_end|>"], Hermes),
    ];
    for (specials, want) in cases {
        let vocab = byte_vocab(&specials);
        assert_eq!(
            ToolFormat::detect(None, &vocab.tokenizer),
            want,
            "{specials:?}"
        );
        assert_eq!(
            ToolFormat::detect(Some(CHATML), &vocab.tokenizer),
            want,
            "{specials:?}"
        );
    }
}

#[test]
fn trigger_tokens_are_single_tokens_of_the_vocabulary() {
    let vocab = byte_vocab(&["<tool_call>", "<|python_tag|>", "[TOOL_CALLS]"]);
    assert_eq!(Hermes.trigger_token(&vocab.tokenizer), Some(257));
    assert_eq!(Llama3Json.trigger_token(&vocab.tokenizer), Some(258));
    assert_eq!(Mistral.trigger_token(&vocab.tokenizer), Some(259));
    let plain = byte_vocab(&[]);
    for format in ToolFormat::ALL {
        assert_eq!(format.trigger_token(&plain.tokenizer), None);
    }
}

#[test]
fn names_round_trip() {
    for format in ToolFormat::ALL {
        assert_eq!(ToolFormat::from_name(format.name()), Some(format));
    }
    assert_eq!(ToolFormat::from_name("llama3_json"), Some(Llama3Json));
    assert_eq!(ToolFormat::from_name("qwen"), None);
}
