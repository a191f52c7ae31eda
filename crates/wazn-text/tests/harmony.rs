//! Harmony rendering and streaming parsing against OpenAI's `openai-harmony` package
//! (fixture written by gen_harmony_fixtures.py): the same conversations give the same ids,
//! and after every generated token the parser reports the same state, channel, recipient,
//! content type, delta and content, and ends with the same messages.

mod common;

use std::sync::OnceLock;

use common::read_fixture;
use serde::Deserialize;
use serde_json::Value;
use wazn_text::harmony::{
    Conversation, HarmonyRenderer, Message, ParserState, RenderConfig, Role, StreamParser,
};
use wazn_text::Tokenizer;

#[derive(Deserialize)]
struct Fixture {
    stop_tokens: Vec<u32>,
    stop_tokens_for_assistant_actions: Vec<u32>,
    conversations: Vec<ConvCase>,
    generations: Vec<GenCase>,
}

#[derive(Deserialize)]
struct ConvCase {
    name: String,
    conversation: Conversation,
    completion: Vec<u32>,
    completion_keep_analysis: Vec<u32>,
    training: Vec<u32>,
    text: String,
}

#[derive(Deserialize)]
struct GenCase {
    name: String,
    tokens: Vec<u32>,
    steps: Vec<Step>,
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Step {
    token: u32,
    state: String,
    channel: Option<String>,
    recipient: Option<String>,
    content_type: Option<String>,
    delta: Option<String>,
    content: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| read_fixture("harmony_cases.json"))
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::o200k_harmony().expect("o200k_harmony builds"))
}

/// The first differing position, with the text around it, for a readable failure.
fn assert_same_ids(got: &[u32], want: &[u32], label: &str) {
    if got == want {
        return;
    }
    let tok = tokenizer();
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    let from = at.saturating_sub(8);
    let show = |ids: &[u32]| {
        let end = (at + 8).min(ids.len());
        tok.decode(&ids[from.min(end)..end], false).unwrap()
    };
    panic!(
        "{label}: ids differ at {at} (len {} vs {}):\n  wazn:    {:?}\n  harmony: {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

#[test]
fn renders_like_openai_harmony() {
    let tok = tokenizer();
    let renderer = HarmonyRenderer::new(tok).unwrap();
    let keep = RenderConfig {
        auto_drop_analysis: false,
    };
    assert_eq!(fixture().conversations.len(), 4);
    for case in &fixture().conversations {
        let messages = &case.conversation.messages;
        let completion = renderer
            .render_for_completion(messages, Role::Assistant, RenderConfig::default())
            .unwrap();
        assert_eq!(
            tok.decode(&completion, false).unwrap(),
            case.text,
            "{}",
            case.name
        );
        assert_same_ids(&completion, &case.completion, &case.name);
        let kept = renderer
            .render_for_completion(messages, Role::Assistant, keep)
            .unwrap();
        assert_same_ids(&kept, &case.completion_keep_analysis, &case.name);
        let training = renderer
            .render_for_training(messages, RenderConfig::default())
            .unwrap();
        assert_same_ids(&training, &case.training, &case.name);
    }
}

#[test]
fn stop_tokens_match() {
    let mut actions = HarmonyRenderer::stop_tokens_for_assistant_actions().to_vec();
    actions.sort_unstable();
    assert_eq!(actions, fixture().stop_tokens_for_assistant_actions);
    let mut all = HarmonyRenderer::stop_tokens().to_vec();
    all.sort_unstable();
    assert_eq!(all, fixture().stop_tokens);
}

fn state_name(state: ParserState) -> &'static str {
    match state {
        ParserState::ExpectStart => "EXPECT_START",
        ParserState::Header => "HEADER",
        ParserState::Content => "CONTENT",
    }
}

#[test]
fn parses_like_openai_harmony() {
    let tok = tokenizer();
    assert!(fixture().generations.len() >= 4);
    for case in &fixture().generations {
        let mut parser = StreamParser::new(Some(Role::Assistant));
        assert_eq!(case.tokens.len(), case.steps.len());
        for (i, step) in case.steps.iter().enumerate() {
            parser.push(tok, step.token).unwrap();
            let at = format!("{} step {i} (token {})", case.name, step.token);
            assert_eq!(state_name(parser.state()), step.state, "{at}");
            assert_eq!(parser.current_channel(), step.channel.as_deref(), "{at}");
            assert_eq!(
                parser.current_recipient(),
                step.recipient.as_deref(),
                "{at}"
            );
            assert_eq!(
                parser.current_content_type(),
                step.content_type.as_deref(),
                "{at}"
            );
            assert_eq!(parser.last_delta(), step.delta.as_deref(), "{at}");
            assert_eq!(parser.current_content(), step.content, "{at}");
        }
        parser.finish().unwrap();
        assert_eq!(parser.messages(), case.messages.as_slice(), "{}", case.name);
    }
    // Some step must hold back part of a character (emoji and CJK span several tokens).
    let held_back = fixture().generations.iter().any(|g| {
        g.steps
            .iter()
            .any(|s| s.state == "CONTENT" && s.delta.is_none() && !s.content.is_empty())
    });
    assert!(
        held_back,
        "the fixture should split a character over tokens"
    );
}

#[test]
fn messages_round_trip_through_render_and_parse() {
    let tok = tokenizer();
    let renderer = HarmonyRenderer::new(tok).unwrap();
    for case in &fixture().generations {
        let mut ids = vec![wazn_text::o200k_ids::START];
        ids.extend(tok.encode("assistant", false, false).unwrap());
        ids.extend(&case.tokens);
        let mut parser = StreamParser::new(None);
        for &id in &ids {
            parser.push(tok, id).unwrap();
        }
        parser.finish().unwrap();
        assert_eq!(parser.messages(), case.messages.as_slice(), "{}", case.name);
        // Rendering the parsed messages gives the ids back (up to the closing token).
        let rendered = renderer
            .render_conversation(
                parser.messages(),
                RenderConfig {
                    auto_drop_analysis: false,
                },
            )
            .unwrap();
        assert_eq!(rendered.len(), ids.len(), "{}", case.name);
        assert_eq!(
            rendered[..ids.len() - 1],
            ids[..ids.len() - 1],
            "{}",
            case.name
        );
    }
}

#[test]
fn malformed_streams_are_errors() {
    let tok = tokenizer();
    let text = |s: &str| tok.encode(s, false, false).unwrap();
    // Content before any <|start|>.
    let mut p = StreamParser::new(None);
    let err = p.push(tok, text("hi")[0]).unwrap_err().to_string();
    assert!(err.contains("<|start|>"), "{err}");
    // A stop token inside a header.
    let mut p = StreamParser::new(Some(Role::Assistant));
    let err = p
        .push(tok, wazn_text::o200k_ids::END)
        .unwrap_err()
        .to_string();
    assert!(err.contains("inside a message header"), "{err}");
    // An unknown single-word role.
    let mut p = StreamParser::new(None);
    p.push(tok, wazn_text::o200k_ids::START).unwrap();
    for id in text("wizard") {
        p.push(tok, id).unwrap();
    }
    let err = p
        .push(tok, wazn_text::o200k_ids::MESSAGE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown role \"wizard\""), "{err}");
    // The stream ending inside a header.
    let mut p = StreamParser::new(Some(Role::Assistant));
    p.push(tok, wazn_text::o200k_ids::CHANNEL).unwrap();
    assert!(p.finish().is_err());
    // A tool message without a tool name cannot be rendered.
    let renderer = HarmonyRenderer::new(tok).unwrap();
    let bad = Message::text(Role::Tool, "out");
    let err = renderer
        .render_conversation(&[bad], RenderConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tool's name"), "{err}");
}

#[test]
fn conversation_json_round_trips() {
    for case in &fixture().conversations {
        // Through text: a serde_json::Value would sort the schema keys.
        let json = serde_json::to_string(&case.conversation).unwrap();
        let back: Conversation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, case.conversation, "{}", case.name);
        let value: Value = serde_json::from_str(&json).unwrap();
        assert!(matches!(value["messages"], Value::Array(_)));
    }
}

/// Every text message of the fixture conversations (user, assistant on each channel, tool
/// calls, tool results) parses back from its own rendering.
#[test]
fn rendered_messages_parse_back() {
    let tok = tokenizer();
    let renderer = HarmonyRenderer::new(tok).unwrap();
    let mut n_checked = 0;
    for case in &fixture().conversations {
        for message in &case.conversation.messages {
            let named_non_tool = message.role != Role::Tool && message.name.is_some();
            if matches!(message.role, Role::System | Role::Developer) || named_non_tool {
                continue;
            }
            let mut ids = Vec::new();
            renderer.render_message(message, false, &mut ids).unwrap();
            let mut parser = StreamParser::new(None);
            for &id in &ids {
                parser.push(tok, id).unwrap();
            }
            assert_eq!(parser.state(), ParserState::ExpectStart);
            assert_eq!(
                parser.messages(),
                std::slice::from_ref(message),
                "{}",
                case.name
            );
            n_checked += 1;
        }
    }
    assert!(n_checked >= 10, "only {n_checked} messages checked");
}
