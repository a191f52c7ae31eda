//! Tests of the tool-call formats: parsers on recorded model outputs (each with the file it was
//! taken from), grammars compiled and run by llguidance on the same outputs, and detection.
//!
//! Grammars are run over a vocabulary of the 256 bytes plus a few special tokens, built twice
//! with the same ids: as wazn's [`Tokenizer`] (which the grammar writers read) and as
//! llguidance's token environment (which runs the grammar), so that `<[id]>` in a grammar names
//! the same token in both.

mod detect;
mod grammars;
mod parsers;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use super::ToolSpec;
use crate::{Tokenizer, TokenizerSpec};

/// The end-of-sequence token every test vocabulary ends with.
const EOS: &str = "</s>";

/// A vocabulary of the 256 bytes (ids 0..=255), `<unk>` (256), the given special tokens (from
/// 257), and `</s>` last.
pub(super) struct ByteVocab {
    pub tokenizer: Tokenizer,
    env: TokEnv,
    /// Special tokens' texts and ids, longest text first (for matching in text).
    specials: Vec<(String, u32)>,
    pub eos: u32,
}

pub(super) fn byte_vocab(specials: &[&str]) -> ByteVocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    let mut types = vec![6; 256];
    tokens.push("<unk>".to_string());
    types.push(2);
    for special in specials.iter().chain([&EOS]) {
        tokens.push(special.to_string());
        types.push(3);
    }
    let eos = tokens.len() as u32 - 1;
    let tokenizer = Tokenizer::from_spec(TokenizerSpec {
        model: "llama".into(),
        tokens: tokens.clone(),
        token_types: Some(types),
        unk_id: Some(256),
        eos_id: Some(eos),
        add_space_prefix: Some(false),
        ..TokenizerSpec::default()
    })
    .expect("byte vocabulary builds");

    // llguidance knows special tokens by a 0xFF byte in front of their text.
    let words: Vec<Vec<u8>> = tokens
        .iter()
        .enumerate()
        .map(|(id, text)| match id {
            0..=255 => vec![id as u8],
            _ => [&[TokTrie::SPECIAL_TOKEN_MARKER][..], text.as_bytes()].concat(),
        })
        .collect();
    let info = TokRxInfo {
        vocab_size: words.len() as u32,
        tok_eos: eos,
        tok_bos: None,
        tok_pad: None,
        tok_unk: None,
        tok_end_of_turn: None,
    };
    let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));

    let mut specials: Vec<(String, u32)> = tokens
        .iter()
        .enumerate()
        .skip(257)
        .map(|(id, text)| (text.clone(), id as u32))
        .collect();
    specials.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
    ByteVocab {
        tokenizer,
        env,
        specials,
        eos,
    }
}

impl ByteVocab {
    /// The ids of `text`: a special token wherever its text appears, bytes elsewhere (what a
    /// model of this vocabulary would generate).
    pub fn tokens(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        'outer: while !rest.is_empty() {
            for (special, id) in &self.specials {
                if let Some(after) = rest.strip_prefix(special.as_str()) {
                    ids.push(*id);
                    rest = after;
                    continue 'outer;
                }
            }
            let len = rest.chars().next().map_or(1, char::len_utf8);
            ids.extend(rest.as_bytes()[..len].iter().map(|&b| u32::from(b)));
            rest = &rest[len..];
        }
        ids
    }

    /// A matcher running `grammar`; panics with llguidance's message when it does not compile.
    pub fn matcher(&self, grammar: &str) -> Matcher {
        let mut factory = ParserFactory::new_simple(&self.env).expect("parser factory");
        factory.quiet();
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .unwrap_or_else(|e| panic!("grammar does not compile: {e}\n{grammar}"));
        Matcher::new(Ok(parser))
    }

    /// Whether `grammar` takes `text` as a whole output: every token allowed in turn, and the
    /// end of sequence allowed after the last.
    pub fn accepts(&self, grammar: &str, text: &str) -> bool {
        let mut matcher = self.matcher(grammar);
        for id in self.tokens(text) {
            let allowed = !matcher.is_stopped()
                && matcher.compute_mask().is_ok_and(|mask| mask.is_allowed(id));
            if !allowed {
                return false;
            }
            matcher
                .consume_token(id)
                .expect("an allowed token is taken");
        }
        let mask = matcher.compute_mask_or_eos().expect("mask");
        matcher.is_accepting().expect("accepting") && mask.is_allowed(self.eos)
    }
}

/// A tool from its name and parameters' JSON text.
pub(super) fn tool(name: &str, parameters: &str) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        parameters: serde_json::from_str(parameters).expect("test schema is JSON"),
    }
}

/// llama.cpp's test tools (tests/test-chat.cpp: `special_function_tool`,
/// `special_function_tool_with_optional_param`).
pub(super) fn special_functions() -> Vec<ToolSpec> {
    vec![
        tool(
            "special_function",
            r#"{"type": "object", "properties": {"arg1": {"type": "integer", "description": "The arg."}}, "required": ["arg1"]}"#,
        ),
        tool(
            "special_function_with_opt",
            r#"{"type": "object", "properties": {"arg1": {"type": "integer"}, "arg2": {"type": "integer"}}, "required": ["arg1"]}"#,
        ),
    ]
}
