//! What `Engine::load` makes of a path: a GGUF file keeps its chat template; a folder is read
//! as a Hugging Face folder, and one without `config.json` is refused with a message that
//! names it.

mod common;

use common::default_model_path;
use wazn_engine::{ChatFormat, Engine, EngineOptions};

fn options() -> EngineOptions {
    EngineOptions {
        n_ctx: 64,
        n_threads: 1,
        ..EngineOptions::default()
    }
}

#[test]
fn a_gguf_file_keeps_its_chat_template() {
    let engine = Engine::load(&default_model_path(), options()).expect("load the default model");
    assert!(matches!(
        engine.chat_format(),
        Some(ChatFormat::Template(_))
    ));
    assert!(engine.chat_template().is_some());
    assert!(engine.shared_chat_template().is_some());
}

#[test]
fn a_folder_without_config_json_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("wazn-engine-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Engine::load(&dir, options())
        .err()
        .expect("an empty folder is no model");
    let message = err.to_string();
    assert!(message.contains("config.json"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}
