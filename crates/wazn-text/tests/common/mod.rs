//! Shared by the integration tests: fixture paths and the default model.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::sync::OnceLock;

use wazn_formats::GgufFile;
use wazn_text::Tokenizer;

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read_fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = data_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// The default model, where scripts/fetch-default-model puts it.
pub fn smollm2_path() -> PathBuf {
    let path = wazn_formats::model_cache::default_model_path().expect("HOME or WAZN_CACHE_DIR");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-default-model",
        path.display()
    );
    path
}

pub fn smollm2_file() -> &'static GgufFile {
    static FILE: OnceLock<GgufFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = smollm2_path();
        GgufFile::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
    })
}

pub fn smollm2_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_gguf_metadata(smollm2_file().metadata()).expect("SmolLM2 tokenizer builds")
    })
}

pub fn tiny_spm_tokenizer() -> Tokenizer {
    let path = data_path("tiny_spm.gguf");
    let file = GgufFile::open(&path).expect("tiny_spm.gguf opens");
    Tokenizer::from_gguf_metadata(file.metadata()).expect("tiny SentencePiece tokenizer builds")
}

/// Where two id lists first differ, for readable failures.
pub fn first_difference(got: &[u32], want: &[u32]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "first difference at {at}: got {:?}, want {:?}",
        &got[at..got.len().min(at + 5)],
        &want[at..want.len().min(at + 5)]
    )
}
