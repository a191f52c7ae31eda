//! o200k_harmony against tiktoken's `o200k_harmony` (fixture written by gen_o200k_fixtures.py):
//! ids for a varied corpus with and without special-token parsing, the named special ids, token
//! bytes, decoding back to the text and streaming through the Detokenizer.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::read_fixture;
use serde::Deserialize;
use wazn_text::{o200k_ids, Detokenizer, Tokenizer};

#[derive(Deserialize)]
struct Fixture {
    n_vocab: usize,
    named_specials: BTreeMap<String, u32>,
    cases: Vec<Case>,
    token_bytes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ordinary: Vec<u32>,
    with_special: Vec<u32>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| read_fixture("o200k_harmony_cases.json"))
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::o200k_harmony().expect("o200k_harmony builds"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn encodes_like_tiktoken() {
    let tok = tokenizer();
    for case in &fixture().cases {
        let ordinary = tok.encode(&case.text, true, false).unwrap();
        assert_eq!(ordinary, case.ordinary, "ordinary ids of {:?}", case.text);
        let special = tok.encode(&case.text, true, true).unwrap();
        assert_eq!(special, case.with_special, "special ids of {:?}", case.text);
    }
    // The corpus must exercise special-token parsing at least once.
    assert!(fixture().cases.iter().any(|c| c.ordinary != c.with_special));
}

#[test]
fn vocabulary_and_special_ids_match() {
    let tok = tokenizer();
    let fx = fixture();
    assert_eq!(tok.vocab_size(), fx.n_vocab);
    for (name, &id) in &fx.named_specials {
        assert_eq!(tok.encode(name, false, true).unwrap(), vec![id], "{name}");
        assert_eq!(tok.token_text(id), Some(name.as_str()));
        assert!(tok.is_special(id), "{name} is special");
    }
    for (id, want) in &fx.token_bytes {
        let id: u32 = id.parse().unwrap();
        assert_eq!(hex(&tok.token_bytes(id).unwrap()), *want, "bytes of {id}");
    }
    assert_eq!(fx.named_specials["<|start|>"], o200k_ids::START);
    assert_eq!(fx.named_specials["<|channel|>"], o200k_ids::CHANNEL);
    assert_eq!(fx.named_specials["<|message|>"], o200k_ids::MESSAGE);
    assert_eq!(fx.named_specials["<|constrain|>"], o200k_ids::CONSTRAIN);
    assert_eq!(fx.named_specials["<|end|>"], o200k_ids::END);
    assert_eq!(fx.named_specials["<|return|>"], o200k_ids::RETURN);
    assert_eq!(fx.named_specials["<|call|>"], o200k_ids::CALL);
    assert!(tok.token_bytes(fx.n_vocab as u32).is_none());
    assert_eq!(tok.eog_ids(), &[199_999, 200_002, 200_012]);
    assert!(!tok.is_eog(o200k_ids::END));
    assert!(!tok.adds_bos());
}

#[test]
fn decodes_and_streams_back_to_the_text() {
    let tok = tokenizer();
    for case in &fixture().cases {
        assert_eq!(tok.decode(&case.ordinary, false).unwrap(), case.text);
        assert_eq!(tok.decode(&case.with_special, false).unwrap(), case.text);
        let mut detok = Detokenizer::new(false);
        let mut streamed: String = case
            .ordinary
            .iter()
            .map(|&id| detok.push(tok, id))
            .collect();
        streamed.push_str(&detok.finish());
        assert_eq!(streamed, case.text, "streamed {:?}", case.text);
        // Skipping specials leaves out exactly the special-token strings.
        let skipped = tok.decode(&case.with_special, true).unwrap();
        let plain: Vec<u32> = case
            .with_special
            .iter()
            .copied()
            .filter(|&id| !tok.is_special(id))
            .collect();
        assert_eq!(skipped, tok.decode(&plain, false).unwrap());
    }
}

#[test]
fn out_of_range_id_is_an_error() {
    let err = tokenizer().decode(&[201_088], false).unwrap_err();
    assert!(err.to_string().contains("201088"), "{err}");
}

/// Long runs that make the pre-tokenizer's look-ahead backtrack still encode and decode back.
#[test]
fn long_runs_encode_and_decode_back() {
    let tok = tokenizer();
    let texts = [
        format!("{}a", " ".repeat(100_000)),
        format!("x{}\n", "\t \u{00a0}".repeat(20_000)),
        "!?.,;".repeat(20_000),
        "9".repeat(50_000),
    ];
    for text in &texts {
        let ids = tok.encode(text, false, false).unwrap();
        assert_eq!(&tok.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn tokenizer_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
}
