//! A SentencePiece ("llama") tokenizer from a GGUF: a small BPE model trained with sentencepiece
//! and written by the gguf package (tests/data/tiny_spm.gguf), against sentencepiece's own ids.

mod common;

use common::{first_difference, read_fixture, tiny_spm_tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    vocab_size: usize,
    bos_id: u32,
    eos_id: u32,
    tool_id: u32,
    cases: Vec<Case>,
    split_cases: Vec<SplitCase>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    ids_with_bos: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct SplitCase {
    text: String,
    parse_special: bool,
    ids: Vec<u32>,
}

#[test]
fn ids_match_sentencepiece() {
    let fx: Fixture = read_fixture("tiny_spm.json");
    let tok = tiny_spm_tokenizer();
    assert_eq!(tok.vocab_size(), fx.vocab_size);
    for case in &fx.cases {
        let ids = tok.encode(&case.text, false, false).unwrap();
        assert_eq!(
            ids,
            case.ids,
            "{:?}: {}",
            case.text,
            first_difference(&ids, &case.ids)
        );
    }
}

/// The file has no add_bos_token key: a SentencePiece vocabulary then gets BOS (llama.cpp).
#[test]
fn bos_is_added_by_default() {
    let fx: Fixture = read_fixture("tiny_spm.json");
    let tok = tiny_spm_tokenizer();
    assert_eq!(tok.bos_id(), Some(fx.bos_id));
    assert_eq!(tok.eos_id(), Some(fx.eos_id));
    assert!(tok.adds_bos());
    for case in &fx.cases {
        assert_eq!(
            tok.encode(&case.text, true, false).unwrap(),
            case.ids_with_bos,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn decode_matches_sentencepiece() {
    let fx: Fixture = read_fixture("tiny_spm.json");
    let tok = tiny_spm_tokenizer();
    for case in &fx.cases {
        assert_eq!(
            tok.decode(&case.ids, false).unwrap(),
            case.decoded,
            "{:?}",
            case.text
        );
        // BOS is a control token: skipped on request, and then the text is the same.
        assert_eq!(
            tok.decode(&case.ids_with_bos, true).unwrap(),
            case.decoded,
            "{:?}",
            case.text
        );
    }
}

/// Control tokens (on request) and user-defined tokens (always) split the text, and each stretch
/// after one gets its own space prefix, as llama.cpp encodes it.
#[test]
fn special_and_user_defined_tokens_split_the_text() {
    let fx: Fixture = read_fixture("tiny_spm.json");
    let tok = tiny_spm_tokenizer();
    for case in &fx.split_cases {
        let ids = tok.encode(&case.text, false, case.parse_special).unwrap();
        assert_eq!(
            ids,
            case.ids,
            "{:?}: {}",
            case.text,
            first_difference(&ids, &case.ids)
        );
    }
    // User-defined tokens are not special: decoding keeps them even when skipping specials.
    assert!(!tok.is_special(fx.tool_id));
    assert_eq!(tok.decode(&[fx.tool_id], true).unwrap(), "<tool>");
    // "<s>" typed as text stays text without parse_special.
    let typed = tok.encode("<s> typed as text", false, false).unwrap();
    assert!(!typed.contains(&fx.bos_id));
}

#[test]
fn byte_tokens_stand_for_their_byte() {
    let tok = tiny_spm_tokenizer();
    let mut n_byte_tokens = 0;
    for id in 0..tok.vocab_size() as u32 {
        let text = tok.token_text(id).unwrap();
        if let Some(hex) = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>')) {
            let byte = u8::from_str_radix(hex, 16).unwrap();
            assert_eq!(tok.token_bytes(id), Some(vec![byte]), "{text}");
            n_byte_tokens += 1;
        }
    }
    assert_eq!(n_byte_tokens, 256);
}
