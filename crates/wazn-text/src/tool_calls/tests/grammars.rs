//! The grammars, compiled and run by llguidance: they take the recorded outputs of the parser
//! tests (given as the tokens a model of that vocabulary would write) and refuse wrong ones.

use super::super::{ToolChoice, ToolFormat, ToolSpec};
use super::{byte_vocab, special_functions, tool, ByteVocab};
use crate::TextError;

use ToolFormat::{Hermes, Llama3Json, Mistral};

const QWEN_CALL: &str =
    "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>";
const QWEN_CALL_OPT: &str = "<tool_call>\n{\"name\": \"special_function_with_opt\", \"arguments\": {\"arg1\": 1, \"arg2\": 2}}\n</tool_call>";

fn forced(format: ToolFormat, vocab: &ByteVocab, choice: &ToolChoice, parallel: bool) -> String {
    format
        .forced_grammar(&special_functions(), choice, parallel, &vocab.tokenizer)
        .expect("grammar")
}

fn triggered(format: ToolFormat, vocab: &ByteVocab, parallel: bool) -> String {
    format
        .triggered_grammar(&special_functions(), parallel, &vocab.tokenizer)
        .expect("grammar")
}

#[test]
fn hermes_forced_grammar() {
    let vocab = byte_vocab(&["<tool_call>", "</tool_call>", "<|im_end|>"]);
    let one = forced(Hermes, &vocab, &ToolChoice::Required, false);
    // The tags are written as their tokens.
    assert!(one.contains("<[257]>") && one.contains("<[258]>"), "{one}");
    // llama.cpp tests/test-chat.cpp: Qwen 2.5 / Hermes 3 layout, and Hermes 2 Pro's.
    assert!(vocab.accepts(&one, QWEN_CALL));
    assert!(vocab.accepts(
        &one,
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}</tool_call>"
    ));
    assert!(vocab.accepts(&one, QWEN_CALL_OPT));
    // Wrong: an unknown tool, arguments against the schema, a missing required argument, extra
    // keys, text before the call, a second call when only one is allowed.
    for wrong in [
        "<tool_call>\n{\"name\": \"other_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": \"one\"}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}, \"id\": 3}\n</tool_call>",
        "<tool_call>\n{\"arguments\": {\"arg1\": 1}, \"name\": \"special_function\"}\n</tool_call>",
        &format!("Sure.{QWEN_CALL}"),
        &format!("{QWEN_CALL}\n{QWEN_CALL}"),
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n",
    ] {
        assert!(!vocab.accepts(&one, wrong), "{wrong}");
    }
    // The tags must be the tokens, not their characters.
    let spelled = vocab.tokens(QWEN_CALL);
    assert_eq!(spelled[0], 257);

    let many = forced(Hermes, &vocab, &ToolChoice::Required, true);
    assert!(vocab.accepts(&many, &format!("{QWEN_CALL}\n{QWEN_CALL_OPT}")));
    assert!(vocab.accepts(&many, &format!("{QWEN_CALL}{QWEN_CALL}{QWEN_CALL}")));

    let named = forced(
        Hermes,
        &vocab,
        &ToolChoice::Named("special_function_with_opt".to_string()),
        true,
    );
    assert!(vocab.accepts(&named, QWEN_CALL_OPT));
    assert!(!vocab.accepts(&named, QWEN_CALL));
}

#[test]
fn hermes_triggered_grammar_covers_what_follows_the_tag() {
    let vocab = byte_vocab(&["<tool_call>", "</tool_call>"]);
    let one = triggered(Hermes, &vocab, false);
    let after_tag = &QWEN_CALL["<tool_call>".len()..];
    assert!(vocab.accepts(&one, after_tag));
    assert!(!vocab.accepts(&one, QWEN_CALL));
    assert!(!vocab.accepts(&one, &format!("{after_tag}\n{QWEN_CALL}")));
    let many = triggered(Hermes, &vocab, true);
    assert!(vocab.accepts(&many, &format!("{after_tag}\n{QWEN_CALL_OPT}")));
}

#[test]
fn hermes_tags_outside_the_vocabulary_are_written_as_text() {
    let vocab = byte_vocab(&[]);
    assert_eq!(Hermes.trigger_token(&vocab.tokenizer), None);
    let one = forced(Hermes, &vocab, &ToolChoice::Required, false);
    assert!(one.contains(r#""<tool_call>""#), "{one}");
    assert!(vocab.accepts(&one, QWEN_CALL));
}

#[test]
fn llama3_grammars() {
    let vocab = byte_vocab(&["<|python_tag|>", "<|eom_id|>", "<|eot_id|>"]);
    assert_eq!(Llama3Json.trigger_token(&vocab.tokenizer), Some(257));
    let call = r#"{"name": "special_function", "parameters": {"arg1": 1}}"#;
    let call_opt = r#"{"name": "special_function_with_opt", "parameters": {"arg1": 1, "arg2": 2}}"#;
    let one = forced(Llama3Json, &vocab, &ToolChoice::Required, false);
    assert!(vocab.accepts(&one, call));
    // Compact JSON is fine too.
    assert!(vocab.accepts(
        &one,
        r#"{"name":"special_function","parameters":{"arg1":1}}"#
    ));
    for wrong in [
        r#"{"name": "special_function", "arguments": {"arg1": 1}}"#,
        r#"{"name": "special_function", "parameters": {"arg1": 1.5}}"#,
        r#"<|python_tag|>{"name": "special_function", "parameters": {"arg1": 1}}"#,
        &format!("{call}; {call}"),
    ] {
        assert!(!vocab.accepts(&one, wrong), "{wrong}");
    }
    // vLLM's separators between parallel calls.
    let many = forced(Llama3Json, &vocab, &ToolChoice::Required, true);
    assert!(vocab.accepts(&many, &format!("{call}; {call_opt}")));
    assert!(vocab.accepts(&many, &format!("{call};{call_opt};\n{call}")));
    // After <|python_tag|>: the same JSON.
    let after_tag = triggered(Llama3Json, &vocab, false);
    assert!(vocab.accepts(&after_tag, call));
    assert!(!vocab.accepts(&after_tag, "brave_search.call(query=\"x\")"));
}

#[test]
fn mistral_v3_grammar_writes_a_list() {
    let vocab = byte_vocab(&["[INST]", "[/INST]", "[TOOL_CALLS]"]);
    assert_eq!(Mistral.trigger_token(&vocab.tokenizer), Some(259));
    let one = forced(Mistral, &vocab, &ToolChoice::Required, false);
    // llama.cpp tests/test-chat.cpp, Mistral-Nemo block; vLLM's pre-v11 outputs (no id).
    let nemo = r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]"#;
    assert!(vocab.accepts(&one, nemo));
    assert!(vocab.accepts(
        &one,
        r#"[TOOL_CALLS] [{"name": "special_function", "arguments": {"arg1": 1}}]"#
    ));
    for wrong in [
        r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "12345"}]"#,
        r#"[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}}]"#,
        r#"[TOOL_CALLS]special_function[ARGS]{"arg1": 1}"#,
        r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}}, {"name": "special_function", "arguments": {"arg1": 2}}]"#,
    ] {
        assert!(!vocab.accepts(&one, wrong), "{wrong}");
    }
    let many = forced(Mistral, &vocab, &ToolChoice::Required, true);
    assert!(vocab.accepts(
        &many,
        r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}}, {"name": "special_function_with_opt", "arguments": {"arg1": 1, "arg2": 2}}]"#
    ));
    let after_tag = triggered(Mistral, &vocab, false);
    assert!(vocab.accepts(&after_tag, &nemo["[TOOL_CALLS]".len()..]));
}

#[test]
fn mistral_v11_grammar_writes_name_then_args() {
    let vocab = byte_vocab(&["[TOOL_CALLS]", "[ARGS]"]);
    let one = forced(Mistral, &vocab, &ToolChoice::Required, false);
    // llama.cpp tests/test-chat.cpp, Ministral-3 and Devstral blocks.
    assert!(vocab.accepts(&one, r#"[TOOL_CALLS]special_function[ARGS]{"arg1":1}"#));
    for wrong in [
        r#"[TOOL_CALLS]special_function[ARGS]{"arg2":1}"#,
        r#"[TOOL_CALLS]special_function_with_opt[ARGS]{"arg2":1}"#,
        r#"[TOOL_CALLS]add[ARGS]{"arg1":1}"#,
        r#"[TOOL_CALLS]special_function{"arg1":1}"#,
        r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}}]"#,
    ] {
        assert!(!vocab.accepts(&one, wrong), "{wrong}");
    }
    let two = r#"[TOOL_CALLS]special_function[ARGS]{"arg1": 1}[TOOL_CALLS]special_function_with_opt[ARGS]{"arg1": 1, "arg2": 2}"#;
    assert!(!vocab.accepts(&one, two));
    assert!(vocab.accepts(&forced(Mistral, &vocab, &ToolChoice::Required, true), two));
    let after_tag = triggered(Mistral, &vocab, true);
    assert!(vocab.accepts(&after_tag, &two["[TOOL_CALLS]".len()..]));
    let named = forced(
        Mistral,
        &vocab,
        &ToolChoice::Named("special_function".to_string()),
        false,
    );
    assert!(vocab.accepts(&named, r#"[TOOL_CALLS]special_function[ARGS]{"arg1":1}"#));
    assert!(!vocab.accepts(
        &named,
        r#"[TOOL_CALLS]special_function_with_opt[ARGS]{"arg1":1}"#
    ));
}

#[test]
fn mistral_small_3_2_grammar_allows_a_call_id() {
    let vocab = byte_vocab(&["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"]);
    let many = forced(Mistral, &vocab, &ToolChoice::Required, true);
    // llama.cpp tests/test-chat.cpp, Mistral-Small-3.2-24B-Instruct-2506 block.
    assert!(vocab.accepts(
        &many,
        r#"[TOOL_CALLS]special_function[CALL_ID]000000001[ARGS]{"arg1": 1}[TOOL_CALLS]special_function_with_opt[CALL_ID]000000002[ARGS]{"arg1": 1, "arg2": 2}"#
    ));
    assert!(vocab.accepts(&many, r#"[TOOL_CALLS]special_function[ARGS]{"arg1": 1}"#));
    assert!(!vocab.accepts(
        &many,
        r#"[TOOL_CALLS]special_function[CALL_ID]0001[ARGS]{"arg1": 1}"#
    ));
}

#[test]
fn schemas_are_embedded_whatever_they_hold() {
    let vocab = byte_vocab(&["<tool_call>", "</tool_call>"]);
    let tools = vec![
        // No schema, an empty one: any object.
        tool("no_schema", "null"),
        tool("empty_schema", "{}"),
        // A description full of what could break grammar text.
        tool(
            "odd.text-tool_2",
            r#"{"type": "object", "description": "quotes \" braces {}} slashes / \\ %json <[1]> newline\n", "properties": {"q": {"type": "string", "enum": ["a\"}", "b"]}}, "required": ["q"]}"#,
        ),
        // No "type": taken as an object schema.
        tool("untyped", r#"{"properties": {"n": {"type": "integer"}}}"#),
    ];
    let grammar = Hermes
        .forced_grammar(&tools, &ToolChoice::Required, true, &vocab.tokenizer)
        .expect("grammar");
    let call = |name: &str, args: &str| {
        format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>")
    };
    assert!(vocab.accepts(
        &grammar,
        &call("no_schema", r#"{"anything": [1, {"x": null}]}"#)
    ));
    assert!(vocab.accepts(&grammar, &call("empty_schema", "{}")));
    assert!(vocab.accepts(&grammar, &call("odd.text-tool_2", r#"{"q": "a\"}"}"#)));
    assert!(!vocab.accepts(&grammar, &call("odd.text-tool_2", r#"{"q": "c"}"#)));
    assert!(vocab.accepts(&grammar, &call("untyped", r#"{"n": 3}"#)));
    assert!(!vocab.accepts(&grammar, &call("untyped", "[3]")));
    assert!(!vocab.accepts(&grammar, &call("no_schema", "3")));
}

#[test]
fn bad_tools_are_refused() {
    let vocab = byte_vocab(&[]);
    let grammar = |tools: &[ToolSpec], choice: &ToolChoice| {
        Hermes.forced_grammar(tools, choice, false, &vocab.tokenizer)
    };
    for name in [
        "",
        "get weather",
        "a\"b",
        "x<[1]>",
        "naïve",
        &"n".repeat(65),
        "f\n",
    ] {
        let err = grammar(&[tool(name, "{}")], &ToolChoice::Required).unwrap_err();
        assert!(matches!(err, TextError::BadToolName(_)), "{name:?}: {err}");
    }
    assert!(grammar(&[tool(&"n".repeat(64), "{}")], &ToolChoice::Required).is_ok());
    let tools = special_functions();
    let err = grammar(&tools, &ToolChoice::Named("missing".to_string())).unwrap_err();
    assert!(matches!(err, TextError::Tools(_)), "{err}");
    let err = grammar(&[], &ToolChoice::Required).unwrap_err();
    assert!(matches!(err, TextError::Tools(_)), "{err}");
    let err = grammar(&[tool("f", r#""a string""#)], &ToolChoice::Required).unwrap_err();
    assert!(matches!(err, TextError::Tools(_)), "{err}");
    for format in ToolFormat::ALL {
        assert!(format
            .triggered_grammar(&[], true, &vocab.tokenizer)
            .is_err());
    }
}
