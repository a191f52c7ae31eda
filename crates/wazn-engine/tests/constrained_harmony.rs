//! Harmony grammars (gpt-oss) over the o200k_harmony vocabulary: replies rendered by wazn's
//! harmony renderer (checked elsewhere against openai-harmony) are allowed token by token and
//! complete, reasoning included; a call to another tool, arguments outside the schema, or a
//! final answer that is not JSON are not.

use serde_json::json;
use wazn_engine::{Constraint, GrammarCompiler, GrammarSpec, Verdict};
use wazn_text::harmony::grammar::{final_json_grammar, forced_call_grammar};
use wazn_text::harmony::{HarmonyRenderer, Message, RenderConfig, Role};
use wazn_text::tool_calls::{ToolChoice, ToolSpec};
use wazn_text::{o200k_ids, Tokenizer};

/// The ids the model writes for `messages` after the prompt's `<|start|>assistant`, without
/// the final end token (`<|return|>`, `<|call|>`), which the engine leaves to the model.
fn reply_ids(tok: &Tokenizer, messages: &[Message]) -> Vec<u32> {
    let renderer = HarmonyRenderer::new(tok).unwrap();
    let config = RenderConfig {
        auto_drop_analysis: false,
    };
    let mut ids = renderer.render_for_training(messages, config).unwrap();
    let n_prefix = 1 + tok.encode("assistant", false, false).unwrap().len();
    assert_eq!(ids[0], o200k_ids::START);
    ids.drain(..n_prefix);
    let last = ids.pop().unwrap();
    assert!([o200k_ids::RETURN, o200k_ids::CALL, o200k_ids::END].contains(&last));
    ids
}

/// Whether the constraint allows every id in turn and is then complete (the engine ends
/// the reply there) or lets the model end it.
fn follows(mut c: Constraint, ids: &[u32], n_vocab: usize) -> bool {
    for (i, &id) in ids.iter().enumerate() {
        let mut logits = vec![0.0f32; n_vocab];
        if !c.mask(&mut logits) || !logits[id as usize].is_finite() {
            return false;
        }
        match c.accept(id) {
            Verdict::Rejected => return false,
            Verdict::Complete => return i + 1 == ids.len(),
            Verdict::Continue => {}
        }
    }
    let mut logits = vec![0.0f32; n_vocab];
    c.mask(&mut logits)
        && [o200k_ids::RETURN, o200k_ids::CALL]
            .iter()
            .any(|&end| logits[end as usize].is_finite())
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "add".into(),
            parameters: json!({"type": "object", "properties": {"a": {"type": "integer"}},
                "required": ["a"], "additionalProperties": false}),
        },
    ]
}

#[test]
fn harmony_replies_follow_their_grammars() {
    let tok = std::sync::Arc::new(Tokenizer::o200k_harmony().unwrap());
    let compiler = GrammarCompiler::new(tok.clone()).unwrap();
    let n_vocab = tok.vocab_size();
    let analysis = Message::text(Role::Assistant, "The user wants the weather.\nCall it.")
        .with_channel("analysis");
    let call = |name: &str, args: &str| {
        Message::text(Role::Assistant, args)
            .with_channel("commentary")
            .with_recipient(format!("functions.{name}"))
            .with_content_type("<|constrain|>json")
    };
    let compile = |lark: String| compiler.compile(&GrammarSpec::Lark(lark)).unwrap();

    let required = forced_call_grammar(&tools(), &ToolChoice::Required).unwrap();
    let named = forced_call_grammar(&tools(), &ToolChoice::Named("add".into())).unwrap();
    let weather = reply_ids(
        &tok,
        &[
            analysis.clone(),
            call("get_weather", r#"{"city": "Paris"}"#),
        ],
    );
    let no_reasoning = reply_ids(&tok, &[call("add", r#"{"a": 2}"#)]);
    assert!(follows(compile(required.clone()), &weather, n_vocab));
    assert!(follows(compile(required.clone()), &no_reasoning, n_vocab));
    assert!(follows(compile(named.clone()), &no_reasoning, n_vocab));
    assert!(
        !follows(compile(named), &weather, n_vocab),
        "another tool than the named one"
    );
    let bad_args = reply_ids(&tok, &[call("add", r#"{"a": "two"}"#)]);
    assert!(!follows(compile(required.clone()), &bad_args, n_vocab));
    let final_text = reply_ids(
        &tok,
        &[
            analysis.clone(),
            Message::text(Role::Assistant, "Sunny.").with_channel("final"),
        ],
    );
    assert!(
        !follows(compile(required), &final_text, n_vocab),
        "an answer instead of a call"
    );

    let schema = json!({"type": "object", "properties": {"sky": {"enum": ["sunny", "grey"]}},
        "required": ["sky"]});
    let json_answer = final_json_grammar(&schema).unwrap();
    let good = reply_ids(
        &tok,
        &[
            analysis.clone(),
            Message::text(Role::Assistant, r#"{"sky": "sunny"}"#).with_channel("final"),
        ],
    );
    assert!(follows(compile(json_answer.clone()), &good, n_vocab));
    assert!(!follows(compile(json_answer), &final_text, n_vocab));
}
