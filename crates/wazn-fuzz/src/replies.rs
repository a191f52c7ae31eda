//! What a model writes, read back: harmony (gpt-oss), the tool-call formats of the other
//! families, and `<think>` blocks. A model's output is as untrusted as its file: a fine-tune
//! can write anything.

use std::sync::OnceLock;

use wazn_text::harmony::{AssistantReply, ReplyAssembler, StreamParser};
use wazn_text::think::{ThinkPiece, ThinkSplitter};
use wazn_text::tool_calls::{ToolDelta, ToolFormat};
use wazn_text::Tokenizer;

/// The pieces a harmony reply is made of, each one or more o200k_harmony ids: the control
/// tokens, then the words between them.
const HARMONY_WORDS: [&str; 18] = [
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|return|>",
    "<|call|>",
    "assistant",
    "analysis",
    "final",
    "commentary",
    " to=functions.get_weather",
    " to=browser.search",
    "json",
    "{\"city\": \"Paris\"}",
    "Hello",
    " \u{645}\u{631}\u{62d}\u{628}\u{627}",
    "functions.",
];

/// Feeds ids to harmony's stream parser and to the reply assembler the server uses. Each input
/// byte below the number of words picks a word; any other byte and the next two make an
/// arbitrary id (out of the vocabulary too). The deltas the assembler hands out, applied in
/// order, must give the reply it ends with (all but its `malformed` mark, which no delta
/// carries), and nothing may panic.
pub fn harmony_reply(data: &[u8]) {
    let (tokenizer, words) = harmony();
    let ids = harmony_ids(data, words);
    let mut parser = StreamParser::new(None);
    for &id in &ids {
        if parser.push(tokenizer, id).is_err() {
            break;
        }
        std::hint::black_box((parser.last_delta(), parser.current_channel()));
    }
    let _ = parser.finish();
    std::hint::black_box(parser.messages().len());

    let mut assembler = ReplyAssembler::new();
    let mut streamed = AssistantReply::default();
    for &id in &ids {
        for delta in assembler.push(tokenizer, id) {
            streamed.apply(&delta);
        }
    }
    for delta in assembler.finish() {
        streamed.apply(&delta);
    }
    streamed.malformed = assembler.reply().malformed;
    assert_eq!(&streamed, assembler.reply());
}

fn harmony() -> &'static (Tokenizer, Vec<Vec<u32>>) {
    static HARMONY: OnceLock<(Tokenizer, Vec<Vec<u32>>)> = OnceLock::new();
    HARMONY.get_or_init(|| {
        let tokenizer = Tokenizer::o200k_harmony().expect("o200k_harmony");
        let words = HARMONY_WORDS
            .iter()
            .map(|w| tokenizer.encode(w, false, true).expect("a harmony word"))
            .collect();
        (tokenizer, words)
    })
}

fn harmony_ids(data: &[u8], words: &[Vec<u32>]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut bytes = data.iter().copied();
    while let Some(b) = bytes.next() {
        match words.get(usize::from(b)) {
            Some(word) => ids.extend_from_slice(word),
            None => {
                let hi = u32::from(bytes.next().unwrap_or(0));
                let lo = u32::from(bytes.next().unwrap_or(0));
                // Up to 256 × 65536: beyond the 201,088 ids of the vocabulary too.
                ids.push(u32::from(b) << 16 | hi << 8 | lo);
            }
        }
    }
    ids
}

/// Reads arbitrary text as each tool-call format would, and splits it at `<think>` tags. The
/// first byte seeds where the text is cut into streamed pieces; the rest is the text. For each
/// format, what comes out streamed must equal what comes out of the whole text (as the parsers
/// promise), and calls must be numbered 0, 1, 2… in order. The same holds for the think
/// splitter.
pub fn tool_calls(data: &[u8]) {
    let Some((&seed, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let pieces = cut(&text, seed);
    for format in [
        ToolFormat::Hermes,
        ToolFormat::Llama3Json,
        ToolFormat::Mistral,
    ] {
        let mut whole = format.parser();
        let mut whole_deltas = whole.push(&text);
        whole_deltas.extend(whole.finish());
        let mut streamed = format.parser();
        let mut streamed_deltas = Vec::new();
        for piece in &pieces {
            streamed_deltas.extend(streamed.push(piece));
        }
        streamed_deltas.extend(streamed.finish());
        assert_calls_numbered(&streamed_deltas);
        assert_eq!(
            ToolDelta::collect(streamed_deltas),
            ToolDelta::collect(whole_deltas),
            "{format:?}: streamed in {pieces:?}"
        );
    }
    for in_reasoning in [false, true] {
        let mut whole = ThinkSplitter::new(in_reasoning);
        let mut whole_pieces = whole.push(&text);
        whole_pieces.extend(whole.finish());
        let mut streamed = ThinkSplitter::new(in_reasoning);
        let mut streamed_pieces = Vec::new();
        for piece in &pieces {
            streamed_pieces.extend(streamed.push(piece));
        }
        streamed_pieces.extend(streamed.finish());
        assert_eq!(
            joined(&streamed_pieces),
            joined(&whole_pieces),
            "think blocks, streamed in {pieces:?}"
        );
    }
}

/// `text` cut at char boundaries into pieces of 1 to 8 chars, the lengths drawn from `seed`.
fn cut(text: &str, seed: u8) -> Vec<String> {
    let mut state = u32::from(seed) | 0x100;
    let mut pieces = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        // A small linear congruential generator: any spread of lengths will do.
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (state >> 16) as usize % 8;
        pieces.push(chars.by_ref().take(len).collect());
    }
    pieces
}

fn assert_calls_numbered(deltas: &[ToolDelta]) {
    let mut next = 0;
    for delta in deltas {
        match delta {
            ToolDelta::Call { index, .. } => {
                assert_eq!(*index, next, "calls out of order: {deltas:?}");
                next += 1;
            }
            ToolDelta::Arguments { index, .. } => {
                assert!(*index < next, "arguments before their call: {deltas:?}")
            }
            ToolDelta::Content(_) => {}
        }
    }
}

/// The reasoning and the answer that `pieces` make up.
fn joined(pieces: &[ThinkPiece]) -> (String, String) {
    let mut reasoning = String::new();
    let mut content = String::new();
    for piece in pieces {
        match piece {
            ThinkPiece::Reasoning(text) => reasoning.push_str(text),
            ThinkPiece::Content(text) => content.push_str(text),
        }
    }
    (reasoning, content)
}
