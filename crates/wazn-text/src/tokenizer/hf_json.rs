//! Tokenizers from a Hugging Face `tokenizer.json`.
//!
//! The file holds a whole `tokenizers` pipeline (normalizer, pre-tokenizer, model), so encoding
//! runs it as written. What wazn adds on top comes from the file too: the vocabulary by id,
//! which tokens are special (its `added_tokens`), and the bytes each token stands for, read in
//! GPT-2's byte alphabet when the pipeline is byte-level and as SentencePiece pieces (`▁` for a
//! space, `<0xNN>` for a byte) otherwise. BOS, EOS and the end-of-generation set come from the
//! folder's `tokenizer_config.json` and `generation_config.json` (see `crate::model_text`).

use std::str::FromStr;

use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;

use super::bpe::ByteAlphabet;
use super::{Encoder, Family, TokenType, Tokenizer};
use crate::TextError;

const SPACE_MARK: char = '\u{2581}';

/// The most tokens a `tokenizer.json` may have: 16 times the largest vocabularies in use
/// (Gemma 3's 262,144), so that a file claiming a huge id sizes no huge table.
const MAX_TOKENS: u32 = 1 << 22;

/// The special-token settings of a folder, by token text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HfSpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `add_bos_token`; when absent, whatever the file's post-processor does.
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// Ids that end a generation besides the EOS (`generation_config.json`'s `eos_token_id`).
    pub eog_ids: Vec<u32>,
}

impl Tokenizer {
    /// The tokenizer in the text of a `tokenizer.json`, with the folder's special tokens.
    pub fn from_tokenizer_json(
        json: &str,
        special: &HfSpecialTokens,
    ) -> Result<Tokenizer, TextError> {
        let pipeline: Value = serde_json::from_str(json)
            .map_err(|e| TextError::Build(format!("tokenizer.json is not valid JSON: {e}")))?;
        let hf = HfTokenizer::from_str(json)
            .map_err(|e| TextError::Build(format!("tokenizer.json: {e}")))?;
        // The ids may have holes, so the vocabulary is as long as its highest id, not as
        // its count of tokens (what `get_vocab_size` gives): every id encoding can produce
        // must have a row.
        let Some(highest_id) = hf.get_vocab(true).into_values().max() else {
            return Err(TextError::EmptyVocabulary);
        };
        if highest_id >= MAX_TOKENS {
            return Err(TextError::Build(format!(
                "tokenizer.json has token id {highest_id}; at most {MAX_TOKENS} tokens are supported"
            )));
        }
        let n_tokens = highest_id as usize + 1;
        let added = hf.get_added_tokens_decoder();
        let byte_level = mentions_type(&pipeline["pre_tokenizer"], "ByteLevel")
            || mentions_type(&pipeline["decoder"], "ByteLevel");
        let alphabet = ByteAlphabet::new();

        let mut tokens = Vec::with_capacity(n_tokens);
        let mut types = Vec::with_capacity(n_tokens);
        let mut pieces = Vec::with_capacity(n_tokens);
        for id in 0..n_tokens as u32 {
            let Some(text) = hf.id_to_token(id) else {
                // A hole in the ids: no text, never produced by encoding.
                tokens.push(String::new());
                types.push(TokenType::Unused);
                pieces.push(Vec::new());
                continue;
            };
            let (ty, bytes) = match added.get(&id) {
                Some(token) if token.special => (TokenType::Control, text.as_bytes().to_vec()),
                Some(_) => (TokenType::UserDefined, text.as_bytes().to_vec()),
                None if byte_level => (
                    TokenType::Normal,
                    alphabet
                        .to_bytes(&text)
                        .unwrap_or_else(|| text.as_bytes().to_vec()),
                ),
                None => match parse_byte_token(&text) {
                    Some(byte) => (TokenType::Byte, vec![byte]),
                    None => (
                        TokenType::Normal,
                        text.replace(SPACE_MARK, " ").into_bytes(),
                    ),
                },
            };
            tokens.push(text);
            types.push(ty);
            pieces.push(bytes);
        }

        let id_of = |what: &str, text: &Option<String>| -> Result<Option<u32>, TextError> {
            match text {
                None => Ok(None),
                Some(text) => hf.token_to_id(text).map(Some).ok_or_else(|| {
                    TextError::Build(format!(
                        "the {what} {text:?} of tokenizer_config.json is not in tokenizer.json"
                    ))
                }),
            }
        };
        let bos_id = id_of("bos_token", &special.bos_token)?;
        let config_eos_id = id_of("eos_token", &special.eos_token)?;
        // Without add_eos_token, EOS is added when the file's post-processor ends every
        // encoding with a special token (Qwen3-Embedding's `<|endoftext|>`, which its
        // last-token pooling reads). That token is then the EOS, as llama.cpp's converter
        // makes it, and the configured EOS still ends a generation.
        check_post_processor(&pipeline["post_processor"], n_tokens)?;
        let post_eos = match special.add_eos {
            Some(_) => None,
            None => appended_special(&hf, |id| added.get(&id).is_some_and(|t| t.special)),
        };
        let eos_id = post_eos.or(config_eos_id);
        if let Some(&bad) = special.eog_ids.iter().find(|&&id| id as usize >= n_tokens) {
            return Err(TextError::SpecialIdOutOfRange {
                key: "generation_config.json eos_token_id",
                id: bad,
                n_tokens,
            });
        }
        // Without add_bos_token, BOS is added when the file's post-processor adds it.
        let post_adds_bos = bos_id.is_some_and(|bos| {
            hf.encode_fast("a", true)
                .is_ok_and(|e| e.get_ids().first() == Some(&bos))
        });
        let mut eog_ids: Vec<u32> = special
            .eog_ids
            .iter()
            .copied()
            .chain(eos_id)
            .chain(config_eos_id)
            .collect();
        eog_ids.sort_unstable();
        eog_ids.dedup();

        // SentencePiece pipelines put a space in front of the text and their decoder takes it
        // off again.
        let strip_leading_space = !byte_level
            && (mentions_type(&pipeline["decoder"], "Strip")
                || mentions_type(&pipeline["decoder"], "Metaspace"));
        let mut text_only = hf.clone();
        text_only.set_encode_special_tokens(true);
        // HF folders name no fill-in-the-middle ids: they are found by their texts.
        let fim = super::fim::find([None; 3], &tokens);
        Ok(Tokenizer {
            family: if byte_level {
                Family::Gpt2
            } else {
                Family::Llama
            },
            tokens,
            types,
            pieces,
            encoder: Encoder::Hf {
                parses_special: Box::new(hf),
                text_only: Box::new(text_only),
            },
            bos_id,
            eos_id,
            add_bos: special.add_bos.unwrap_or(post_adds_bos),
            add_eos: special.add_eos.unwrap_or(post_eos.is_some()),
            eog_ids,
            strip_leading_space,
            fim,
        })
    }

    /// The encoding pipeline as a `tokenizer.json` text (`None` for o200k_harmony, which is not
    /// a `tokenizers` pipeline). BOS/EOS settings are not part of it.
    pub fn to_tokenizer_json(&self) -> Option<Result<String, TextError>> {
        match &self.encoder {
            Encoder::Hf { parses_special, .. } => Some(
                parses_special
                    .to_string(false)
                    .map_err(|e| TextError::Build(e.to_string())),
            ),
            Encoder::Tiktoken(_) => None,
        }
    }
}

/// Checks what the `tokenizers` crate takes on trust from a file's post-processor: every
/// special token a template names is defined, with as many token texts as ids, each id in the
/// vocabulary. The crate checks this only when a template is built in code; read from a file,
/// a template naming an undefined token panics on the first encoding with special tokens
/// (`appended_special` makes one), and its ids go into encodings unchecked.
fn check_post_processor(step: &Value, n_tokens: usize) -> Result<(), TextError> {
    let bad =
        |reason: String| TextError::Build(format!("tokenizer.json's post_processor: {reason}"));
    match step["type"].as_str() {
        Some("Sequence") => {
            for inner in step["processors"].as_array().into_iter().flatten() {
                check_post_processor(inner, n_tokens)?;
            }
        }
        Some("TemplateProcessing") => {
            let defined = step["special_tokens"].as_object();
            let pieces = ["single", "pair"]
                .into_iter()
                .flat_map(|key| step[key].as_array().into_iter().flatten());
            for piece in pieces {
                let Some(name) = piece["SpecialToken"]["id"].as_str() else {
                    continue;
                };
                if !defined.is_some_and(|tokens| tokens.contains_key(name)) {
                    return Err(bad(format!(
                        "the template names the special token {name:?}, which special_tokens \
                         does not define"
                    )));
                }
            }
            for (name, token) in defined.into_iter().flatten() {
                let ids = token["ids"].as_array().map_or(&[][..], Vec::as_slice);
                let texts = token["tokens"].as_array().map_or(0, Vec::len);
                if ids.len() != texts {
                    return Err(bad(format!(
                        "the special token {name:?} has {} ids and {texts} token texts",
                        ids.len()
                    )));
                }
                if let Some(id) = ids
                    .iter()
                    .find(|id| id.as_u64().is_none_or(|id| id >= n_tokens as u64))
                {
                    return Err(bad(format!(
                        "the special token {name:?} has id {id}, outside the vocabulary of \
                         {n_tokens} tokens"
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The special token the pipeline's post-processor appends to an encoding, if any.
fn appended_special(hf: &HfTokenizer, is_special: impl Fn(u32) -> bool) -> Option<u32> {
    let with = hf.encode_fast("a", true).ok()?;
    let without = hf.encode_fast("a", false).ok()?;
    let last = *with.get_ids().last()?;
    let appended =
        with.get_ids().len() > without.get_ids().len() && without.get_ids().last() != Some(&last);
    (appended && is_special(last)).then_some(last)
}

/// Whether `value` or anything inside it is an object with `"type": ty` (a pipeline step, or
/// a step of a `Sequence`).
fn mentions_type(value: &Value, ty: &str) -> bool {
    match value {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some(ty)
                || map.values().any(|v| mentions_type(v, ty))
        }
        Value::Array(items) => items.iter().any(|v| mentions_type(v, ty)),
        _ => false,
    }
}

/// `<0xNN>` (two hex digits) → the byte NN.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE whose ids have holes: 3 tokens and one merge, the highest id 9.
    fn with_holes(highest: u32) -> String {
        serde_json::json!({
            "version": "1.0",
            "added_tokens": [],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": false,
                        "trim_offsets": true, "use_regex": false},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 5, "ab": highest},
                      "merges": ["a b"]},
        })
        .to_string()
    }

    #[test]
    fn ids_with_holes_all_have_a_row() {
        let tokenizer = Tokenizer::from_tokenizer_json(&with_holes(9), &HfSpecialTokens::default())
            .expect("a tokenizer with holes in its ids builds");
        assert_eq!(tokenizer.vocab_size(), 10);
        let ids = tokenizer.encode("ab b", false, false).expect("encodes");
        assert_eq!(ids[0], 9);
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
        assert_eq!(tokenizer.decode(&[9, 5], false).expect("decodes"), "abb");
        assert_eq!(tokenizer.token_type(3), Some(TokenType::Unused));
    }

    fn with_template(special_tokens: serde_json::Value) -> String {
        let mut json: serde_json::Value = serde_json::from_str(&with_holes(9)).expect("JSON");
        json["post_processor"] = serde_json::json!({
            "type": "Sequence",
            "processors": [{
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "b", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": special_tokens,
            }],
        });
        json.to_string()
    }

    #[test]
    fn a_template_of_the_post_processor_is_checked_before_it_is_used() {
        let build = |special_tokens| {
            Tokenizer::from_tokenizer_json(
                &with_template(special_tokens),
                &HfSpecialTokens::default(),
            )
        };
        let good = build(serde_json::json!({"b": {"id": "b", "ids": [5], "tokens": ["b"]}}));
        assert!(good.is_ok(), "{:?}", good.err());
        for (special_tokens, says) in [
            (
                serde_json::json!({"b7": {"id": "b", "ids": [5], "tokens": ["b"]}}),
                "does not define",
            ),
            (
                serde_json::json!({"b": {"id": "b", "ids": [5, 0], "tokens": ["b"]}}),
                "2 ids and 1 token texts",
            ),
            (
                serde_json::json!({"b": {"id": "b", "ids": [10], "tokens": ["b"]}}),
                "outside the vocabulary",
            ),
        ] {
            let err = build(special_tokens).expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn a_huge_id_is_refused_before_anything_is_sized() {
        let err =
            Tokenizer::from_tokenizer_json(&with_holes(u32::MAX - 1), &HfSpecialTokens::default())
                .expect_err("refused");
        assert!(err.to_string().contains("at most 4194304 tokens"), "{err}");
    }
}
