//! Generated harmony ids → an OpenAI-style reply. The ids are the openai-harmony fixture's
//! generations and conversations rendered by the renderer (itself checked against
//! openai-harmony); the expected reply is read off the messages those ids encode.

mod common;

use std::sync::OnceLock;

use common::read_fixture;
use serde::Deserialize;
use wazn_text::harmony::{
    AssistantReply, HarmonyRenderer, Message, RenderConfig, ReplyAssembler, ReplyDelta,
    ReplyToolCall, Role,
};
use wazn_text::{o200k_ids, Tokenizer};

#[derive(Deserialize)]
struct Fixture {
    generations: Vec<GenCase>,
}

#[derive(Deserialize)]
struct GenCase {
    name: String,
    tokens: Vec<u32>,
    messages: Vec<Message>,
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::o200k_harmony().expect("o200k_harmony builds"))
}

/// The reply an OpenAI-compatible server gives for `messages`: analysis as reasoning, final
/// and preambles as content, `functions.*` calls as tool calls.
fn expected_reply(messages: &[Message]) -> AssistantReply {
    let mut reply = AssistantReply::default();
    for m in messages {
        let text = m.text_content();
        match (m.channel.as_deref(), m.recipient.as_deref()) {
            (_, Some(r)) if r.starts_with("functions.") => reply.tool_calls.push(ReplyToolCall {
                name: r["functions.".len()..].to_string(),
                arguments: text,
            }),
            (Some("final"), _) | (Some("commentary"), None) | (None, _) => {
                reply.content.push_str(&text)
            }
            _ => reply.reasoning.push_str(&text),
        }
    }
    reply
}

/// Feeds `ids` one at a time; checks that the pieces, put together, are the reply at every
/// step, and returns the pieces and the reply.
fn assemble(ids: &[u32]) -> (Vec<ReplyDelta>, AssistantReply) {
    let tok = tokenizer();
    let mut assembler = ReplyAssembler::new();
    let mut deltas = Vec::new();
    let mut rebuilt = AssistantReply::default();
    for &id in ids {
        for delta in assembler.push(tok, id) {
            rebuilt.apply(&delta);
            deltas.push(delta);
        }
        // The flag is the assembler's own; the text must come from the pieces alone.
        rebuilt.malformed = assembler.reply().malformed;
        assert_eq!(&rebuilt, assembler.reply());
    }
    for delta in assembler.finish() {
        rebuilt.apply(&delta);
        deltas.push(delta);
    }
    assert_eq!(&rebuilt, assembler.reply());
    (deltas, rebuilt)
}

#[test]
fn openai_harmony_generations_become_replies() {
    let fixture: Fixture = read_fixture("harmony_cases.json");
    assert!(fixture.generations.len() >= 4);
    for case in &fixture.generations {
        let (deltas, reply) = assemble(&case.tokens);
        assert_eq!(reply, expected_reply(&case.messages), "{}", case.name);
        assert!(!reply.malformed, "{}", case.name);
        // Every tool call is announced before its arguments.
        for (i, call) in reply.tool_calls.iter().enumerate() {
            let start = deltas.iter().position(|d| {
                matches!(d, ReplyDelta::ToolCallStart { index, name } if *index == i && name == &call.name)
            });
            let first_args = deltas.iter().position(
                |d| matches!(d, ReplyDelta::ToolCallArguments { index, .. } if *index == i),
            );
            assert!(start.is_some(), "{}: call {i} never starts", case.name);
            assert!(first_args.is_none() || start < first_args, "{}", case.name);
        }
    }
}

/// An assistant turn rendered as the model would generate it after `<|start|>assistant`.
fn generated_ids(messages: &[Message]) -> Vec<u32> {
    let tok = tokenizer();
    let renderer = HarmonyRenderer::new(tok).unwrap();
    let keep = RenderConfig {
        auto_drop_analysis: false,
    };
    let mut ids = renderer.render_for_training(messages, keep).unwrap();
    let mut prefix = vec![o200k_ids::START];
    prefix.extend(tok.encode("assistant", false, false).unwrap());
    assert_eq!(&ids[..prefix.len()], prefix.as_slice());
    ids.drain(..prefix.len());
    ids
}

#[test]
fn rendered_turns_become_replies() {
    let analysis = |t: &str| Message::text(Role::Assistant, t).with_channel("analysis");
    let cases = vec![
        vec![
            analysis("The user asks 2+2. Easy: 4. 🤔 ünïcode"),
            Message::text(Role::Assistant, "2 + 2 = **4**. 你好").with_channel("final"),
        ],
        vec![
            analysis("Need weather for Paris, then time."),
            Message::text(Role::Assistant, r#"{"location": "Paris, FR", "unit": "c"}"#)
                .with_channel("commentary")
                .with_recipient("functions.get_weather")
                .with_content_type("<|constrain|>json"),
        ],
        vec![
            Message::text(Role::Assistant, "Let me look.").with_channel("commentary"),
            Message::text(Role::Assistant, "{}")
                .with_channel("commentary")
                .with_recipient("functions.get_time")
                .with_content_type("<|constrain|>json"),
        ],
    ];
    for messages in &cases {
        let ids = generated_ids(messages);
        let (_, reply) = assemble(&ids);
        assert_eq!(reply, expected_reply(messages));
        assert!(!reply.malformed);
    }
}

#[test]
fn ids_that_break_the_grammar_become_content() {
    let tok = tokenizer();
    // `<|start|>` where the header of the opened assistant message should be.
    let mut ids =
        generated_ids(&[Message::text(Role::Assistant, "Thinking.").with_channel("analysis")]);
    let garbage = tok.encode("plain words <|end|> here", false, true).unwrap();
    ids.push(o200k_ids::START);
    ids.push(o200k_ids::MESSAGE);
    ids.extend(&garbage);
    let (_, reply) = assemble(&ids);
    assert!(reply.malformed);
    assert_eq!(reply.reasoning, "Thinking.");
    // From the first id that broke the grammar on, everything is decoded text.
    let broke_at = ids.len() - garbage.len() - 2;
    let rest = tok.decode(&ids[broke_at + 1..], false).unwrap();
    assert!(reply.content.ends_with(&rest), "{:?}", reply.content);
}
