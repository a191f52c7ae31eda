//! Tokenizer and chat format from a model's files.
//!
//! Two small folders written by HF `tokenizers` (tests/data/hf_folders, from
//! tests/gen_hf_folder_fixtures.py: a byte-level BPE and a SentencePiece-style BPE with byte
//! fallback) must give `tokenizers`' own ids, with and without special tokens, and its decodes.
//!
//! A Hugging Face folder is also made from the default model: its `tokenizer.json` is the pipeline
//! wazn builds from the GGUF (serialized by HF `tokenizers`), next to a `tokenizer_config.json`
//! and `generation_config.json` written as transformers writes them. The tokenizer read back
//! must give HF's ids for the corpus of tests/data/smollm2_tokenizer.json (written by HF
//! `tokenizers` from the same model), the same bytes for every token, the same BOS/EOS rule and
//! end-of-generation set, and the same chat prompt. This checks the folder loader (vocabulary
//! by id, special tokens, byte alphabet, config files), not a tokenizer.json that HF wrote
//! itself for another model.

mod common;

use std::path::PathBuf;

use common::{read_fixture, smollm2_file, smollm2_tokenizer};
use serde::Deserialize;
use serde_json::json;
use wazn_formats::Metadata;
use wazn_text::harmony::ReasoningEffort;
use wazn_text::{o200k_ids, ChatFormat, ChatMessage, ModelText};

#[derive(Deserialize)]
struct Fixture {
    bos_id: u32,
    eos_id: u32,
    corpus: Vec<CorpusItem>,
    special_parsed: Vec<SpecialItem>,
}

#[derive(Deserialize)]
struct CorpusItem {
    text: String,
    ids: Vec<u32>,
    ids_add_special: Vec<u32>,
}

#[derive(Deserialize)]
struct SpecialItem {
    text: String,
    ids: Vec<u32>,
}

fn temp_folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wazn-text-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_json(dir: &std::path::Path, name: &str, value: &serde_json::Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn smollm2_folder() -> PathBuf {
    let dir = temp_folder("smollm2");
    let gguf = smollm2_tokenizer();
    let pipeline = gguf.to_tokenizer_json().expect("an HF pipeline").unwrap();
    std::fs::write(dir.join("tokenizer.json"), pipeline).unwrap();
    let md = smollm2_file().metadata();
    let template = md.get_str("tokenizer.chat_template").unwrap().unwrap();
    write_json(&dir, "config.json", &json!({ "model_type": "llama" }));
    write_json(
        &dir,
        "tokenizer_config.json",
        &json!({
            "add_bos_token": false,
            "bos_token": { "content": "<|im_start|>", "special": true },
            "eos_token": "<|im_end|>",
            "chat_template": template,
        }),
    );
    write_json(
        &dir,
        "generation_config.json",
        &json!({ "eos_token_id": [2, 0] }),
    );
    dir
}

#[test]
fn hf_folder_tokenizer_matches_hf_ids_and_the_gguf_tokenizer() {
    let fx: Fixture = read_fixture("smollm2_tokenizer.json");
    let dir = smollm2_folder();
    let text = ModelText::from_hf_folder(&dir).unwrap();
    let tok = &text.tokenizer;
    let gguf = smollm2_tokenizer();

    for item in &fx.corpus {
        assert_eq!(
            tok.encode(&item.text, false, false).unwrap(),
            item.ids,
            "{:?}",
            item.text
        );
        assert_eq!(
            tok.encode(&item.text, true, false).unwrap(),
            item.ids_add_special,
            "{:?}",
            item.text
        );
        assert_eq!(tok.decode(&item.ids, false).unwrap(), item.text);
    }
    for item in &fx.special_parsed {
        assert_eq!(
            tok.encode(&item.text, false, true).unwrap(),
            item.ids,
            "{:?}",
            item.text
        );
    }
    assert_eq!(tok.vocab_size(), gguf.vocab_size());
    for id in 0..gguf.vocab_size() as u32 {
        assert_eq!(tok.token_bytes(id), gguf.token_bytes(id), "token {id}");
        assert_eq!(tok.is_special(id), gguf.is_special(id), "token {id}");
    }
    assert_eq!(tok.bos_id(), Some(fx.bos_id));
    assert_eq!(tok.eos_id(), Some(fx.eos_id));
    assert_eq!(tok.adds_bos(), gguf.adds_bos());
    // generation_config.json's ids and the EOS; the GGUF's set comes from its EOS and the
    // end-of-turn spellings, the same two tokens for this model.
    assert_eq!(tok.eog_ids(), &[0, 2]);
    assert_eq!(tok.eog_ids(), gguf.eog_ids());

    let Some(ChatFormat::Template(_)) = &text.chat_format else {
        panic!("the folder's chat template was not read");
    };
    let from_gguf = ModelText::from_gguf_metadata(smollm2_file().metadata()).unwrap();
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi <|im_end|> there"),
    ];
    let effort = ReasoningEffort::Medium;
    let a = text.chat_format.as_ref().unwrap();
    let b = from_gguf.chat_format.as_ref().unwrap();
    assert_eq!(
        a.render_chat(tok, &messages, effort).unwrap(),
        b.render_chat(&from_gguf.tokenizer, &messages, effort)
            .unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Deserialize)]
struct HfCases {
    folders: std::collections::BTreeMap<String, HfFolderCases>,
}

#[derive(Deserialize)]
struct HfFolderCases {
    vocab_size: usize,
    cases: Vec<HfCase>,
}

#[derive(Deserialize)]
struct HfCase {
    text: String,
    ids: Vec<u32>,
    ids_add_special: Vec<u32>,
    ids_parse_special: Vec<u32>,
    decoded: String,
}

#[test]
fn folders_written_by_hf_tokenizers_give_its_ids() {
    let fx: HfCases = read_fixture("hf_folders/cases.json");
    assert_eq!(fx.folders.len(), 2);
    for (name, folder) in &fx.folders {
        let dir = common::data_path("hf_folders").join(name);
        let text = ModelText::from_hf_folder(&dir).unwrap();
        let tok = &text.tokenizer;
        assert_eq!(tok.vocab_size(), folder.vocab_size, "{name}");
        for case in &folder.cases {
            let at = format!("{name}: {:?}", case.text);
            assert_eq!(
                tok.encode(&case.text, false, false).unwrap(),
                case.ids,
                "{at}"
            );
            assert_eq!(
                tok.encode(&case.text, true, false).unwrap(),
                case.ids_add_special,
                "{at}"
            );
            assert_eq!(
                tok.encode(&case.text, false, true).unwrap(),
                case.ids_parse_special,
                "{at}"
            );
            assert_eq!(tok.decode(&case.ids, false).unwrap(), case.decoded, "{at}");
        }
        match name.as_str() {
            // add_bos_token false; EOS <|im_end|>; generation_config [2, 0].
            "byte_bpe" => {
                assert!(!tok.adds_bos());
                assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
                assert_eq!(tok.eog_ids(), &[0, 2]);
                assert!(matches!(text.chat_format, Some(ChatFormat::Template(_))));
            }
            // No add_bos_token: the post-processor's <s> decides; no chat template.
            _ => {
                assert!(tok.adds_bos());
                assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
                assert_eq!(tok.eog_ids(), &[2]);
                assert!(text.chat_format.is_none());
            }
        }
    }
}

#[test]
fn gguf_model_text_is_unchanged_for_non_harmony_models() {
    let text = ModelText::from_gguf_metadata(smollm2_file().metadata()).unwrap();
    let gguf = smollm2_tokenizer();
    assert_eq!(text.tokenizer.eog_ids(), gguf.eog_ids());
    assert_eq!(text.tokenizer.vocab_size(), gguf.vocab_size());
    assert!(matches!(text.chat_format, Some(ChatFormat::Template(_))));
}

#[test]
fn gpt_oss_gets_o200k_harmony_and_harmony() {
    let mut md = Metadata::new();
    md.insert("general.architecture", "gpt-oss".to_string())
        .unwrap();
    let from_gguf = ModelText::from_gguf_metadata(&md).unwrap();
    let dir = temp_folder("gptoss");
    write_json(&dir, "config.json", &json!({ "model_type": "gpt_oss" }));
    let from_folder = ModelText::from_hf_folder(&dir).unwrap();
    for text in [&from_gguf, &from_folder] {
        assert!(matches!(text.chat_format, Some(ChatFormat::Harmony)));
        // Harmony stops at <|return|> and <|call|>, never at <|end|>.
        assert!(text.tokenizer.is_eog(o200k_ids::RETURN));
        assert!(text.tokenizer.is_eog(o200k_ids::CALL));
        assert!(!text.tokenizer.is_eog(o200k_ids::END));
        assert_eq!(text.tokenizer.vocab_size(), 201_088);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn folder_errors_name_the_problem() {
    let dir = temp_folder("bad");
    let err = ModelText::from_hf_folder(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    write_json(&dir, "config.json", &json!({ "model_type": "llama" }));
    let err = ModelText::from_hf_folder(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    let err = ModelText::from_hf_folder(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
