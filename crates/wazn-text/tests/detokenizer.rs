//! The incremental detokenizer against `Tokenizer::decode` (itself checked against HF): after
//! every token, the text streamed so far is the decode of the tokens so far, less an unfinished
//! character at the end; at the finish it is the whole decode.

mod common;

use common::{read_fixture, smollm2_tokenizer, tiny_spm_tokenizer};
use serde::Deserialize;
use wazn_text::{Detokenizer, Tokenizer};

#[derive(Deserialize)]
struct SmolFixture {
    corpus: Vec<Item>,
    special_parsed: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct SpmFixture {
    cases: Vec<Item>,
}

/// Streams `ids` and checks every step; returns how many steps held a partial character back.
fn check_stream(tok: &Tokenizer, ids: &[u32], skip_special: bool, label: &str) -> usize {
    let mut detok = Detokenizer::new(skip_special);
    let mut streamed = String::new();
    let mut n_held_back = 0;
    for k in 1..=ids.len() {
        let out = detok.push(tok, ids[k - 1]);
        assert!(
            !out.contains('\u{FFFD}'),
            "{label}: step {k} emitted U+FFFD"
        );
        streamed.push_str(&out);
        let so_far = tok.decode(&ids[..k], skip_special).unwrap();
        // An unfinished character at the end decodes as one U+FFFD; that is what is held back.
        let complete = so_far.strip_suffix('\u{FFFD}').unwrap_or(&so_far);
        if complete.len() < so_far.len() {
            n_held_back += 1;
        }
        assert_eq!(streamed, complete, "{label}: after {k} tokens");
    }
    streamed.push_str(&detok.finish());
    assert_eq!(
        streamed,
        tok.decode(ids, skip_special).unwrap(),
        "{label}: at finish"
    );
    n_held_back
}

#[test]
fn streams_the_smollm2_corpus_as_decode_does() {
    let fx: SmolFixture = read_fixture("smollm2_tokenizer.json");
    let tok = smollm2_tokenizer();
    let mut n_held_back = 0;
    for item in &fx.corpus {
        n_held_back += check_stream(tok, &item.ids, false, &item.text);
    }
    // The corpus has characters spread over several tokens (emoji, CJK), so holding back happened.
    assert!(n_held_back > 0);
    for item in &fx.special_parsed {
        for skip_special in [false, true] {
            check_stream(tok, &item.ids, skip_special, &item.text);
        }
    }
}

/// SentencePiece byte fallback: `<0xE6><0x97><0xA5>` is one character over three tokens, and the
/// leading space of the text is stripped exactly once.
#[test]
fn streams_byte_fallback_tokens() {
    let fx: SpmFixture = read_fixture("tiny_spm.json");
    let tok = tiny_spm_tokenizer();
    let mut n_held_back = 0;
    for item in &fx.cases {
        n_held_back += check_stream(&tok, &item.ids, false, &item.text);
        let mut with_bos = vec![tok.bos_id().unwrap()];
        with_bos.extend(&item.ids);
        check_stream(&tok, &with_bos, true, &item.text);
        check_stream(&tok, &with_bos, false, &item.text);
    }
    assert!(n_held_back >= 2);
}

fn byte_token(tok: &Tokenizer, byte: u8) -> u32 {
    let name = format!("<0x{byte:02X}>");
    (0..tok.vocab_size() as u32)
        .find(|&id| tok.token_text(id) == Some(name.as_str()))
        .unwrap()
}

/// Bytes that can never form a character come out as U+FFFD where decode puts it.
#[test]
fn invalid_bytes_become_replacement_characters() {
    let tok = tiny_spm_tokenizer();
    let lead = byte_token(&tok, 0xE6);
    let letter = tok.encode("a", false, false).unwrap();
    let cases = [
        vec![lead],                               // unfinished at the end
        [vec![lead], letter.clone()].concat(),    // broken by an ASCII letter
        vec![byte_token(&tok, 0xFF), lead, lead], // never valid, then two lone leads
    ];
    for ids in &cases {
        let mut detok = Detokenizer::new(false);
        let mut streamed: String = ids.iter().map(|&id| detok.push(&tok, id)).collect();
        streamed.push_str(&detok.finish());
        let decoded = tok.decode(ids, false).unwrap();
        assert!(decoded.contains('\u{FFFD}'));
        assert_eq!(streamed, decoded, "{ids:?}");
    }
}

#[test]
fn unknown_ids_add_nothing() {
    let tok = smollm2_tokenizer();
    let mut detok = Detokenizer::new(false);
    assert_eq!(detok.push(tok, tok.vocab_size() as u32), "");
    assert_eq!(detok.finish(), "");
}
