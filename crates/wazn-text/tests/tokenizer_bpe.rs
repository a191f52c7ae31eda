//! A hand-made byte-level vocabulary (tests/data/tiny_bpe.json) where Llama 3's ignore_merges and
//! a token stored as plain text instead of the byte alphabet change the ids, against HF
//! `tokenizers` as transformers converts such a GGUF.

mod common;

use std::collections::BTreeMap;

use common::read_fixture;
use serde::Deserialize;
use wazn_text::{Tokenizer, TokenizerSpec};

#[derive(Deserialize)]
struct Fixture {
    tokens: Vec<String>,
    token_types: Vec<i32>,
    merges: Vec<String>,
    texts: Vec<String>,
    by_pre: BTreeMap<String, Expected>,
}

#[derive(Deserialize)]
struct Expected {
    ids: Vec<Vec<u32>>,
    ids_parse_special: Vec<Vec<u32>>,
}

#[test]
fn ids_match_hf_with_and_without_ignore_merges() {
    let fx: Fixture = read_fixture("tiny_bpe.json");
    assert_eq!(fx.by_pre.len(), 2);
    // The two pre-tokenizers disagree somewhere, so ignore_merges is really exercised.
    assert_ne!(fx.by_pre["llama-bpe"].ids, fx.by_pre["gpt2"].ids);
    for (pre, expected) in &fx.by_pre {
        let tok = Tokenizer::from_spec(TokenizerSpec {
            model: "gpt2".into(),
            pre: Some(pre.clone()),
            tokens: fx.tokens.clone(),
            token_types: Some(fx.token_types.clone()),
            merges: Some(fx.merges.clone()),
            ..TokenizerSpec::default()
        })
        .unwrap();
        for (i, text) in fx.texts.iter().enumerate() {
            assert_eq!(
                tok.encode(text, false, false).unwrap(),
                expected.ids[i],
                "{pre} {text:?}"
            );
            let parsed = tok.encode(text, false, true).unwrap();
            assert_eq!(
                parsed, expected.ids_parse_special[i],
                "{pre} {text:?} parse_special"
            );
        }
    }
}

/// A token stored as plain text stands for its UTF-8 bytes; its stored text is kept.
#[test]
fn plain_text_tokens_keep_their_text_and_bytes() {
    let fx: Fixture = read_fixture("tiny_bpe.json");
    let id = fx.tokens.iter().position(|t| t == "\u{20ac}").unwrap() as u32;
    let tok = Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2".into(),
        tokens: fx.tokens.clone(),
        token_types: Some(fx.token_types.clone()),
        merges: Some(fx.merges.clone()),
        ..TokenizerSpec::default()
    })
    .unwrap();
    assert_eq!(tok.token_text(id), Some("\u{20ac}"));
    assert_eq!(tok.token_bytes(id), Some("\u{20ac}".as_bytes().to_vec()));
    assert_eq!(tok.decode(&[id], false).unwrap(), "\u{20ac}");
}
