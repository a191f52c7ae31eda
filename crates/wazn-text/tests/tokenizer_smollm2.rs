//! SmolLM2's byte-level BPE tokenizer, built from its GGUF, against HF `tokenizers` as
//! transformers builds it from the same file (tests/data/smollm2_tokenizer.json, written by
//! tests/gen_text_fixtures.py).

mod common;

use common::{first_difference, read_fixture, smollm2_file, smollm2_tokenizer};
use serde::Deserialize;
use wazn_text::{Tokenizer, TokenizerSpec};

#[derive(Deserialize)]
struct Fixture {
    pre: String,
    bos_id: u32,
    bos_token: String,
    eos_id: u32,
    eos_token: String,
    vocab_size: usize,
    special_ids: Vec<u32>,
    eog_ids: Vec<u32>,
    corpus: Vec<CorpusItem>,
    special_parsed: Vec<SpecialItem>,
    pre_variants: std::collections::BTreeMap<String, Vec<Vec<u32>>>,
}

#[derive(Deserialize)]
struct CorpusItem {
    text: String,
    ids: Vec<u32>,
    ids_add_special: Vec<u32>,
    tokens: Vec<String>,
    decoded: String,
}

#[derive(Deserialize)]
struct SpecialItem {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn fixture() -> Fixture {
    read_fixture("smollm2_tokenizer.json")
}

#[test]
fn corpus_ids_match_hf_with_special_strings_as_text() {
    let fx = fixture();
    let tok = smollm2_tokenizer();
    assert_eq!(fx.pre, "smollm");
    assert!(
        fx.corpus.len() >= 80,
        "corpus has {} items",
        fx.corpus.len()
    );
    let mut failures = Vec::new();
    for item in &fx.corpus {
        let ids = tok.encode(&item.text, false, false).expect("encodes");
        if ids != item.ids {
            failures.push(format!(
                "{:?}: {}",
                item.text,
                first_difference(&ids, &item.ids)
            ));
        }
        let with_special = tok.encode(&item.text, true, false).expect("encodes");
        if with_special != item.ids_add_special {
            failures.push(format!(
                "{:?} with add_special: {with_special:?}",
                item.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_decodes_and_token_texts_match_hf() {
    let fx = fixture();
    let tok = smollm2_tokenizer();
    for item in &fx.corpus {
        assert_eq!(
            tok.decode(&item.ids, false).unwrap(),
            item.decoded,
            "{:?}",
            item.text
        );
        // Byte-level BPE loses nothing: the decoded text is the text.
        assert_eq!(item.decoded, item.text);
        let texts: Vec<&str> = item
            .ids
            .iter()
            .map(|&id| tok.token_text(id).unwrap())
            .collect();
        assert_eq!(texts, item.tokens, "{:?}", item.text);
        let bytes: Vec<u8> = item
            .ids
            .iter()
            .flat_map(|&id| tok.token_bytes(id).unwrap())
            .collect();
        assert_eq!(bytes, item.text.as_bytes(), "{:?}", item.text);
    }
}

#[test]
fn special_strings_parse_as_tokens_on_request() {
    let fx = fixture();
    let tok = smollm2_tokenizer();
    for item in &fx.special_parsed {
        let ids = tok.encode(&item.text, false, true).unwrap();
        assert_eq!(
            ids,
            item.ids,
            "{:?}: {}",
            item.text,
            first_difference(&ids, &item.ids)
        );
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            item.decoded,
            "{:?}",
            item.text
        );
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            item.decoded_skip_special,
            "{:?}",
            item.text
        );
    }
    // The corpus's typed special strings really differ between the two modes.
    let typed = "<|im_start|>user\nHello<|im_end|>\n";
    assert_ne!(
        tok.encode(typed, false, true).unwrap(),
        tok.encode(typed, false, false).unwrap()
    );
}

#[test]
fn special_ids_and_flags_match_hf() {
    let fx = fixture();
    let tok = smollm2_tokenizer();
    assert_eq!(tok.vocab_size(), fx.vocab_size);
    assert_eq!(tok.bos_id(), Some(fx.bos_id));
    assert_eq!(tok.eos_id(), Some(fx.eos_id));
    assert_eq!(tok.token_text(fx.bos_id), Some(fx.bos_token.as_str()));
    assert_eq!(tok.token_text(fx.eos_id), Some(fx.eos_token.as_str()));
    assert_eq!(tok.eog_ids(), fx.eog_ids.as_slice());
    let special: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&id| tok.is_special(id))
        .collect();
    assert_eq!(special, fx.special_ids);
    // tokenizer.ggml.add_bos_token is false in this file.
    assert!(!tok.adds_bos());
    assert_eq!(tok.token_text(fx.vocab_size as u32), None);
    assert_eq!(tok.token_bytes(fx.vocab_size as u32), None);
}

/// The same vocabulary under other `tokenizer.ggml.pre` values, against transformers' split
/// for each (ignore_merges on for the Llama 3 family, as llama.cpp runs it).
#[test]
fn other_pre_tokenizers_match_hf() {
    let fx = fixture();
    assert_eq!(fx.pre_variants.len(), 4);
    for (pre, expected) in &fx.pre_variants {
        let mut spec = TokenizerSpec::from_gguf_metadata(smollm2_file().metadata()).unwrap();
        spec.pre = Some(pre.clone());
        let tok = Tokenizer::from_spec(spec).unwrap();
        assert_eq!(expected.len(), fx.corpus.len());
        for (item, want) in fx.corpus.iter().zip(expected) {
            let ids = tok.encode(&item.text, false, false).unwrap();
            assert_eq!(
                &ids,
                want,
                "pre {pre}, {:?}: {}",
                item.text,
                first_difference(&ids, want)
            );
        }
    }
}

/// The digit split is what sets "smollm" apart from plain GPT-2 on this text.
#[test]
fn smollm_and_gpt2_splits_differ_where_llama_cpp_says() {
    let fx = fixture();
    let default = &fx.pre_variants["default"];
    let at = fx.corpus.iter().position(|c| c.text == "a  2").unwrap();
    assert_ne!(fx.corpus[at].ids, default[at]);
}
