//! The parsers on recorded model outputs. Each output names the file it was taken from; the
//! expected calls are those the source expects, except where a comment says how we differ.

use super::super::{ToolCall, ToolDelta, ToolFormat};

/// Runs `chunks` through a parser: the answer text and the calls.
fn parse(format: ToolFormat, chunks: &[&str]) -> (String, Vec<ToolCall>) {
    let mut parser = format.parser();
    let mut deltas: Vec<ToolDelta> = chunks.iter().flat_map(|c| parser.push(c)).collect();
    deltas.extend(parser.finish());
    check_well_formed(&deltas);
    ToolDelta::collect(deltas)
}

/// Calls are numbered from 0 in order, and each one's arguments follow its start.
fn check_well_formed(deltas: &[ToolDelta]) {
    let mut next = 0;
    let mut open: Option<usize> = None;
    for delta in deltas {
        match delta {
            ToolDelta::Call { index, .. } => {
                assert_eq!(*index, next, "{deltas:?}");
                open = Some(*index);
                next += 1;
            }
            ToolDelta::Arguments { index, .. } => assert_eq!(Some(*index), open, "{deltas:?}"),
            ToolDelta::Content(text) => assert!(!text.is_empty(), "{deltas:?}"),
        }
    }
}

/// Parses `text` whole, checks it gives `content` and `calls` (name, arguments), and checks that
/// character by character and every cut in two give the same.
fn check(format: ToolFormat, text: &str, content: &str, calls: &[(&str, &str)]) {
    let whole = parse(format, &[text]);
    let want_calls: Vec<ToolCall> = calls
        .iter()
        .map(|(name, arguments)| ToolCall {
            name: name.to_string(),
            arguments: arguments.to_string(),
        })
        .collect();
    assert_eq!(whole, (content.to_string(), want_calls), "{text:?}");

    let chars: Vec<String> = text.chars().map(String::from).collect();
    let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(parse(format, &chars), whole, "char by char: {text:?}");
    for (cut, _) in text.char_indices() {
        assert_eq!(
            parse(format, &[&text[..cut], &text[cut..]]),
            whole,
            "cut at {cut}: {text:?}"
        );
    }
}

use ToolFormat::{Hermes, Llama3Json, Mistral};

#[test]
fn hermes_outputs_from_llama_cpp() {
    // llama.cpp tests/test-chat.cpp, NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use block.
    let call =
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}</tool_call>";
    check(Hermes, call, "", &[("special_function", r#"{"arg1": 1}"#)]);
    check(
        Hermes,
        &format!("Hello, world!\nWhat's up?{call}"),
        "Hello, world!\nWhat's up?",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
    // Same file, "MiMo-VL / Hermes 3 / Qwen 2.5" block.
    check(
        Hermes,
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        "",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
    // Same file, Reka-Edge block (Qwen layout): two calls, a newline between them.
    check(
        Hermes,
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"special_function_with_opt\", \"arguments\": {\"arg1\": 1, \"arg2\": 2}}\n</tool_call>",
        "",
        &[
            ("special_function", r#"{"arg1": 1}"#),
            ("special_function_with_opt", r#"{"arg1": 1, "arg2": 2}"#),
        ],
    );
    // Same file, Reka-Edge block: text, a newline, then the call (the newline goes with the call).
    check(
        Hermes,
        "Hello, world!\nWhat's up?\n<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        "Hello, world!\nWhat's up?",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
}

#[test]
fn hermes_outputs_from_vllm() {
    // vLLM tests/tool_parsers/test_hermes_tool_parser.py (Qwen3 tokenizer).
    let final_answer =
        "<tool_call>\n{\"name\": \"final_answer\", \"arguments\": {\"trigger\": true}}";
    check(
        Hermes,
        &format!("{final_answer}\n</tool_call>"),
        "",
        &[("final_answer", r#"{"trigger": true}"#)],
    );
    // ..._tool_call_until_eos: the output ends inside the block; the call still counts.
    check(
        Hermes,
        final_answer,
        "",
        &[("final_answer", r#"{"trigger": true}"#)],
    );
    // ..._tool_call_invalid_json: no call, the text is given back.
    let broken = "<tool_call>\n{\"name\": \"final_answer\", \"arguments\": {\"trigger\": true}";
    check(Hermes, broken, broken, &[]);
    // ..._serialized_arguments: arguments written as a JSON string are decoded once.
    check(
        Hermes,
        "<tool_call>\n{\"name\": \"get_db_config\", \"arguments\": \"{\\\"param\\\": \\\"max_connections\\\"}\"}\n</tool_call>",
        "",
        &[("get_db_config", r#"{"param": "max_connections"}"#)],
    );
    // ..._bare_string_arguments: a string holding no object stays a JSON string.
    check(
        Hermes,
        "<tool_call>\n{\"name\": \"do_thing\", \"arguments\": \"hello\"}\n</tool_call>",
        "",
        &[("do_thing", r#""hello""#)],
    );
    // ..._multiple_tool_calls_with_stream_interval.
    check(
        Hermes,
        "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"cats\"}}</tool_call>\
         <tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"dogs\"}}</tool_call>",
        "",
        &[
            ("search", r#"{"q": "cats"}"#),
            ("search", r#"{"q": "dogs"}"#),
        ],
    );
    // ..._content_then_tool_call_with_stream_interval.
    check(
        Hermes,
        "Sure, let me check the weather.<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"NYC\"}}</tool_call>",
        "Sure, let me check the weather.",
        &[("get_weather", r#"{"city": "NYC"}"#)],
    );
    // ..._just_forward_text.
    let text = "This is some prior text that has nothing to do with tool calling.";
    check(Hermes, text, text, &[]);
}

#[test]
fn hermes_text_that_only_looks_like_a_tag_is_text() {
    check(
        Hermes,
        "a <tool_ and <tool_cal",
        "a <tool_ and <tool_cal",
        &[],
    );
    check(
        Hermes,
        "<tool_call>not json</tool_call> ok",
        "<tool_call>not json</tool_call> ok",
        &[],
    );
    check(Hermes, "é<tool_call>", "é<tool_call>", &[]);
}

#[test]
fn llama3_outputs_from_vllm() {
    // vLLM tests/tool_parsers/test_llama3_json_tool_parser.py (Llama-3.2-1B-Instruct tokenizer).
    check(
        Llama3Json,
        r#"{"name": "searchTool", "parameters": {"query": "test query", "limit": 10}}"#,
        "",
        &[("searchTool", r#"{"query": "test query", "limit": 10}"#)],
    );
    check(
        Llama3Json,
        r#"{"name": "searchTool", "arguments": {"query": "test"}}"#,
        "",
        &[("searchTool", r#"{"query": "test"}"#)],
    );
    let text = "This is just some text without any tool calls";
    check(Llama3Json, text, text, &[]);
    for not_a_call in [
        r#"{"name": "invalidTool", "parameters": {invalid json}"#,
        r#"{"parameters": {}}"#,
        r#"{"name": "toolWithoutParams"}"#,
    ] {
        check(Llama3Json, not_a_call, not_a_call, &[]);
    }
    let three = [
        ("searchTool", r#"{"query": "test1"}"#),
        ("getOpenIncidentsTool", "{}"),
        ("searchTool", r#"{"query": "test2"}"#),
    ];
    check(
        Llama3Json,
        r#"{"name": "searchTool", "parameters": {"query": "test1"}}; {"name": "getOpenIncidentsTool", "parameters": {}}; {"name": "searchTool", "parameters": {"query": "test2"}}"#,
        "",
        &three,
    );
    check(
        Llama3Json,
        r#"{"name": "searchTool", "parameters": {"query": "test1"}} ; {"name": "getOpenIncidentsTool", "parameters": {}} ; {"name": "searchTool", "parameters": {"query": "test2"}}"#,
        "",
        &three,
    );
    check(
        Llama3Json,
        r#"{"name": "complexTool", "parameters": {"level1": {"level2": {"level3": {"level4": {"value": "deep"}}}}}}"#,
        "",
        &[(
            "complexTool",
            r#"{"level1": {"level2": {"level3": {"level4": {"value": "deep"}}}}}"#,
        )],
    );
    check(
        Llama3Json,
        r#"{"name": "searchTool", "parameters": {"query": "test {value} [complex]","nested": {"inner": "more {brackets}"}}}"#,
        "",
        &[(
            "searchTool",
            r#"{"query": "test {value} [complex]","nested": {"inner": "more {brackets}"}}"#,
        )],
    );
    check(
        Llama3Json,
        r#"{"name": "parserTool", "parameters": {"text": "He said \"Hello {world}\""}}"#,
        "",
        &[("parserTool", r#"{"text": "He said \"Hello {world}\""}"#)],
    );
    // ..._brace_in_trailing_text: the text after the call is kept as answer text (vLLM drops it).
    check(
        Llama3Json,
        r#"{"name": "searchTool", "parameters": {"query": "test"}} I used {searchTool} for this."#,
        "I used {searchTool} for this.",
        &[("searchTool", r#"{"query": "test"}"#)],
    );
    // ..._streaming_parallel_separators.
    for separator in ["; ", ";", ";\n", "\n"] {
        check(
            Llama3Json,
            &format!(
                r#"{{"name": "searchTool", "parameters": {{"query": "test1"}}}}{separator}{{"name": "getOpenIncidentsTool", "parameters": {{}}}}"#
            ),
            "",
            &[
                ("searchTool", r#"{"query": "test1"}"#),
                ("getOpenIncidentsTool", "{}"),
            ],
        );
    }
    // ..._multiple_json_with_surrounding_text: vLLM's whole-text parser finds calls anywhere;
    // like its streaming parser and llama.cpp, we take a call only at the start or after
    // <|python_tag|>, so this is answer text.
    let surrounded = r#"Here are the results: {"name": "searchTool", "parameters": {"query": "test1"}} Would you like to know more?"#;
    check(Llama3Json, surrounded, surrounded, &[]);
}

#[test]
fn llama3_outputs_after_the_python_tag() {
    // sglang sgl-router/tests/tool_parser_llama.rs, test_llama_real_world_output ("actual
    // output from Llama 3.2").
    check(
        Llama3Json,
        "I'll search for that information for you.\n\n<|python_tag|>{\"name\": \"web_search\", \"arguments\": {\"query\": \"Llama 3.2 model capabilities\", \"num_results\": 5, \"search_type\": \"recent\"}}",
        "I'll search for that information for you.",
        &[(
            "web_search",
            r#"{"query": "Llama 3.2 model capabilities", "num_results": 5, "search_type": "recent"}"#,
        )],
    );
    // Same file, test_llama_with_text_before and test_llama_invalid_json_after_tag.
    check(
        Llama3Json,
        r#"Let me help you with that. <|python_tag|>{"name": "get_time", "arguments": {"timezone": "UTC"}}"#,
        "Let me help you with that.",
        &[("get_time", r#"{"timezone": "UTC"}"#)],
    );
    let invalid = r#"<|python_tag|>{"name": invalid}"#;
    check(Llama3Json, invalid, invalid, &[]);
    // Llama 3.1's built-in tools write Python after the tag: not a JSON call, kept as text.
    let builtin = "<|python_tag|>brave_search.call(query=\"weather london\")";
    check(Llama3Json, builtin, builtin, &[]);
    // The template's own rendering of a call (llama.cpp models/templates/
    // meta-llama-Llama-3.1-8B-Instruct.jinja writes '{"name": "' + name + '", "parameters": ' ...).
    check(
        Llama3Json,
        "<|python_tag|>{\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
        "",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
    check(
        Llama3Json,
        r#"{"type": "function", "name": "special_function", "parameters": {"arg1": 1}}"#,
        "",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
}

#[test]
fn llama3_json_answers_are_text() {
    let answer = "  {\"city\": \"Paris\"}\nThat is all.";
    check(Llama3Json, answer, answer, &[]);
    check(Llama3Json, "<|python_ta", "<|python_ta", &[]);
    check(Llama3Json, "   ", "   ", &[]);
}

#[test]
fn mistral_v3_outputs_from_vllm() {
    // vLLM tests/tool_parsers/test_mistral_tool_parser.py, pre-v11 tokenizer
    // (Mistral-7B-Instruct-v0.3).
    check(
        Mistral,
        r#"[TOOL_CALLS][{"name": "add", "arguments":{"a": 3.5, "b": 4}}]"#,
        "",
        &[("add", r#"{"a": 3.5, "b": 4}"#)],
    );
    let weather = r#"{"city": "San Francisco", "state": "CA", "unit": "celsius"}"#;
    check(
        Mistral,
        r#"[TOOL_CALLS] [{"arguments":{"city": "San Francisco", "state": "CA", "unit": "celsius"}, "name": "get_current_weather"}]"#,
        "",
        &[("get_current_weather", weather)],
    );
    check(
        Mistral,
        r#"[TOOL_CALLS] [{"arguments":{"name": "John Doe"}, "name": "get_age"}]"#,
        "",
        &[("get_age", r#"{"name": "John Doe"}"#)],
    );
    check(
        Mistral,
        r#"[TOOL_CALLS] [{"name": "add", "arguments": {"a": 3.5, "b": 4}}, {"name": "get_current_weather", "arguments":{"city": "San Francisco", "state": "CA", "unit": "celsius"}}]"#,
        "",
        &[
            ("add", r#"{"a": 3.5, "b": 4}"#),
            ("get_current_weather", weather),
        ],
    );
    check(
        Mistral,
        r#"Hello[TOOL_CALLS] [{"name": "add", "arguments":{"a": 1, "b": 2}}]"#,
        "Hello",
        &[("add", r#"{"a": 1, "b": 2}"#)],
    );
    // The streaming test expects the trailing text as content, the whole-text one drops it.
    check(
        Mistral,
        "[TOOL_CALLS] [{\"name\": \"get_current_weather\", \"arguments\":{\"city\": \"Dallas\", \"state\": \"TX\", \"unit\": \"fahrenheit\"}}]\nextra trailing data",
        "extra trailing data",
        &[(
            "get_current_weather",
            r#"{"city": "Dallas", "state": "TX", "unit": "fahrenheit"}"#,
        )],
    );
    check(
        Mistral,
        r#"[TOOL_CALLS]  [ {"name":"add" , "arguments" : {"a": 3, "b": 4} } ]"#,
        "",
        &[("add", r#"{"a": 3, "b": 4}"#)],
    );
    let not_json = "[TOOL_CALLS] not json at all";
    check(Mistral, not_json, not_json, &[]);
    // llama.cpp tests/test-chat.cpp, mistralai-Mistral-Nemo-Instruct-2407 block (with an id).
    check(
        Mistral,
        r#"[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]"#,
        "",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
}

#[test]
fn mistral_v11_outputs() {
    // llama.cpp tests/test-chat.cpp: Ministral-3-14B-Reasoning-2512, Devstral and Mistral Small
    // 3.2 blocks.
    check(
        Mistral,
        r#"[TOOL_CALLS]special_function[ARGS]{"arg1":1}"#,
        "",
        &[("special_function", r#"{"arg1":1}"#)],
    );
    check(
        Mistral,
        r#"[TOOL_CALLS]special_function[ARGS]{"arg1": 1}[TOOL_CALLS]special_function_with_opt[ARGS]{"arg1": 1, "arg2": 2}"#,
        "",
        &[
            ("special_function", r#"{"arg1": 1}"#),
            ("special_function_with_opt", r#"{"arg1": 1, "arg2": 2}"#),
        ],
    );
    check(
        Mistral,
        "Hello, world!\nWhat's up?[TOOL_CALLS]special_function[ARGS]{\"arg1\": 1}",
        "Hello, world!\nWhat's up?",
        &[("special_function", r#"{"arg1": 1}"#)],
    );
    check(
        Mistral,
        r#"[TOOL_CALLS]special_function[CALL_ID]000000001[ARGS]{"arg1": 1}[TOOL_CALLS]special_function_with_opt[CALL_ID]000000002[ARGS]{"arg1": 1, "arg2": 2}"#,
        "",
        &[
            ("special_function", r#"{"arg1": 1}"#),
            ("special_function_with_opt", r#"{"arg1": 1, "arg2": 2}"#),
        ],
    );
    // vLLM tests/tool_parsers/test_mistral_tool_parser.py, v11 tokenizer (Mistral Small 3.2),
    // whose detokenized text has no [ARGS].
    check(
        Mistral,
        r#"[TOOL_CALLS]add{"a": 3.5, "b": 4}[TOOL_CALLS]multiply{"a": 3, "b": 6}"#,
        "",
        &[
            ("add", r#"{"a": 3.5, "b": 4}"#),
            ("multiply", r#"{"a": 3, "b": 6}"#),
        ],
    );
    check(
        Mistral,
        r#"bla[TOOL_CALLS]add_this_and_that{"a": 3.5, "b": 4}"#,
        "bla",
        &[("add_this_and_that", r#"{"a": 3.5, "b": 4}"#)],
    );
    check(
        Mistral,
        r#"hi{hi[TOOL_CALLS]bash{"command": "print(\"hello world!\")\nre.compile(r'{}')"}"#,
        "hi{hi",
        &[(
            "bash",
            r#"{"command": "print(\"hello world!\")\nre.compile(r'{}')"}"#,
        )],
    );
    // ..._v11_without_args_skipped: a name with no arguments makes no call (vLLM drops the
    // text; we give it back).
    check(
        Mistral,
        "[TOOL_CALLS]toolname_no_args",
        "[TOOL_CALLS]toolname_no_args",
        &[],
    );
}

#[test]
fn mistral_broken_calls_give_their_text_back_and_later_calls_still_count() {
    check(
        Mistral,
        r#"[TOOL_CALLS]bad name[ARGS]{}[TOOL_CALLS]ok[ARGS]{"x": 1}"#,
        "[TOOL_CALLS]bad name[ARGS]{}",
        &[("ok", r#"{"x": 1}"#)],
    );
    check(
        Mistral,
        "[TOOL_CALLS]f[ARGS]{\"a\": [1}",
        "[TOOL_CALLS]f[ARGS]{\"a\": [1}",
        &[],
    );
    check(Mistral, "[TOOL_CALL", "[TOOL_CALL", &[]);
}

/// Random mixes of markers and JSON pieces: no panic, and cutting the text anywhere changes
/// nothing; without calls, the text comes back unchanged.
#[test]
fn random_text_parses_the_same_however_it_is_cut() {
    const PIECES: &[&str] = &[
        "<tool_call>",
        "</tool_call>",
        "<|python_tag|>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "[CALL_ID]",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        ":",
        ",",
        ";",
        " ",
        "\n",
        "name",
        "\"name\": \"f\"",
        "\"arguments\": {}",
        "\"parameters\": {\"a\": 1}",
        "é",
        "x",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound
    };
    for _ in 0..300 {
        let n = 1 + next(24);
        let text: String = (0..n).map(|_| PIECES[next(PIECES.len())]).collect();
        for format in ToolFormat::ALL {
            let whole = parse(format, &[&text]);
            if whole.1.is_empty() {
                assert_eq!(whole.0, text, "{format:?} {text:?}");
            }
            let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            for _ in 0..4 {
                let (a, b) = (cuts[next(cuts.len())], cuts[next(cuts.len())]);
                let (a, b) = (a.min(b), a.max(b));
                let pieces = [&text[..a], &text[a..b], &text[b..]];
                assert_eq!(parse(format, &pieces), whole, "{format:?} {text:?} {a} {b}");
            }
        }
    }
}

#[test]
fn numbers_past_f64_are_read_as_written() {
    // Valid JSON that a grammar lets a model write, though no f64 holds it.
    let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 359e918, \"y\": -1e-999}}\n</tool_call>";
    check(
        ToolFormat::Hermes,
        text,
        "",
        &[("f", r#"{"x": 359e918, "y": -1e-999}"#)],
    );
}
