//! A Hugging Face `tokenizer.json`, read by the `tokenizers` crate and then by wazn.

use wazn_text::{HfSpecialTokens, Tokenizer};

/// Texts every tokenizer that loads must encode: ASCII, Arabic, CJK, an emoji, a lone
/// combining mark, control-token spellings, and a long run of one character.
const TEXTS: [&str; 6] = [
    "Hello, world! 123 don't",
    "وزن: وزن النموذج 中文 😀\u{301}",
    "<s>[INST] hi [/INST]</s><|im_start|>user\n<|endoftext|>",
    "\t\n \u{a0}\u{2581}Ġ\u{0}",
    "x",
    "",
];

/// Builds a tokenizer from an arbitrary `tokenizer.json`. One that builds must give, for every
/// text above, ids inside its vocabulary that decode without error, with and without the
/// special tokens; and every id of the vocabulary must have bytes and a decoding.
pub fn tokenizer_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let special = HfSpecialTokens {
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        add_bos: None,
        add_eos: None,
        eog_ids: vec![2],
    };
    let Ok(tokenizer) = Tokenizer::from_tokenizer_json(json, &special) else {
        return;
    };
    let n_vocab = tokenizer.vocab_size();
    assert!(n_vocab > 0);
    for text in TEXTS {
        for (add_special, parse_special) in [(false, false), (true, true)] {
            let Ok(ids) = tokenizer.encode(text, add_special, parse_special) else {
                continue;
            };
            assert!(ids.iter().all(|&id| (id as usize) < n_vocab), "{ids:?}");
            tokenizer.decode(&ids, false).expect("ids it made decode");
            tokenizer.decode(&ids, true).expect("ids it made decode");
        }
    }
    for id in 0..n_vocab.min(1 << 16) as u32 {
        assert!(tokenizer.token_bytes(id).is_some(), "id {id}");
        std::hint::black_box((tokenizer.token_text(id), tokenizer.is_special(id)));
    }
    for &id in tokenizer.eog_ids() {
        assert!((id as usize) < n_vocab, "end-of-generation id {id}");
    }
}
