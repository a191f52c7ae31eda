//! What a model file says about embeddings: `{arch}.pooling_type` in a GGUF, the
//! sentence-transformers modules of a Hugging Face folder, read from the tiny Qwen3
//! embedding model of `scripts/reference/qwen3_embedding_tiny.py` and from edited copies of
//! it; and that folder's base-model tensor names (no `model.` prefix, as the released
//! Qwen3-Embedding files have) read under the names the model class uses.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wazn_formats::{GgufFile, GgufWriter, HfFolder, MetaValue};
use wazn_models::{embedding_support, EmbeddingSupport, ModelSource, Pooling};

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/qwen3_embedding"
    ))
}

fn support(path: &Path) -> Result<EmbeddingSupport, wazn_models::ModelError> {
    embedding_support(&ModelSource::open(path).expect("open"))
}

fn pooled(pooling: Pooling, normalize: bool) -> EmbeddingSupport {
    EmbeddingSupport::Pooled { pooling, normalize }
}

fn unavailable_reason(support: EmbeddingSupport) -> String {
    match support {
        EmbeddingSupport::Unavailable(reason) => reason,
        other => panic!("expected no embedding, got {other:?}"),
    }
}

#[test]
fn both_files_of_the_embedding_model_declare_last_token_pooling() {
    let folder = support(&data_dir().join("hf")).expect("folder");
    assert_eq!(folder, pooled(Pooling::Last, true));
    let gguf = support(&data_dir().join("tiny.gguf")).expect("gguf");
    assert_eq!(gguf, pooled(Pooling::Last, true));
}

#[test]
fn a_base_model_folder_is_read_under_the_model_class_names() {
    let folder = HfFolder::open(data_dir().join("hf")).expect("folder");
    assert!(folder.tensor_names().contains(&"embed_tokens.weight"));
    let by_class = folder.tensor("model.embed_tokens.weight").expect("aliased");
    let stored = folder.tensor("embed_tokens.weight").expect("stored");
    assert_eq!(by_class.data.as_ptr(), stored.data.as_ptr());
    assert!(folder
        .tensor("model.layers.3.self_attn.k_norm.weight")
        .is_some());
    assert!(folder.tensor("model.lm_head.weight").is_none());
    // A folder in the class's own layout gets no second names.
    let qwen3 = HfFolder::open(data_dir().join("../qwen3/hf")).expect("qwen3 folder");
    assert!(qwen3.tensor("model.embed_tokens.weight").is_some());
    assert!(qwen3.tensor("model.model.embed_tokens.weight").is_none());
}

/// A copy of the folder with `edit` applied to it.
fn edited_folder(test: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pooling-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&data_dir().join("hf"), &dir);
    edit(&dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).expect("write");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("parse")
}

/// The folder with its Pooling config's flags replaced by `flags`.
fn with_pooling_config(test: &str, flags: Value) -> PathBuf {
    edited_folder(test, |dir| {
        let path = dir.join("1_Pooling/config.json");
        let mut config = read_json(&path);
        for key in [
            "pooling_mode_cls_token",
            "pooling_mode_mean_tokens",
            "pooling_mode_lasttoken",
        ] {
            config[key] = false.into();
        }
        for (key, value) in flags.as_object().expect("flags") {
            config[key] = value.clone();
        }
        write_json(&path, &config);
    })
}

#[test]
fn the_pooling_module_config_chooses_the_pooling() {
    let cases = [
        (
            "mean",
            json!({"pooling_mode_mean_tokens": true}),
            Pooling::Mean,
        ),
        ("cls", json!({"pooling_mode_cls_token": true}), Pooling::Cls),
        ("named-mean", json!({"pooling_mode": "mean"}), Pooling::Mean),
        (
            "named-last",
            json!({"pooling_mode": "lasttoken"}),
            Pooling::Last,
        ),
    ];
    for (test, flags, pooling) in cases {
        let dir = with_pooling_config(test, flags);
        assert_eq!(support(&dir).expect(test), pooled(pooling, true), "{test}");
    }
    let refused = [
        ("max", json!({"pooling_mode_max_tokens": true}), "max"),
        ("none", json!({}), "no pooling mode"),
        (
            "two",
            json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}),
            "several",
        ),
        ("named-max", json!({"pooling_mode": "max"}), "max"),
        (
            "no-prompt",
            json!({"pooling_mode_lasttoken": true, "include_prompt": false}),
            "include_prompt",
        ),
    ];
    for (test, flags, words) in refused {
        let reason = unavailable_reason(support(&with_pooling_config(test, flags)).expect(test));
        assert!(reason.contains(words), "{test}: {reason}");
    }
    let dir = with_pooling_config("flag-type", json!({"pooling_mode_mean_tokens": "yes"}));
    assert!(support(&dir).is_err(), "a flag that is not a boolean");
}

#[test]
fn the_module_list_decides_whether_and_how_the_folder_embeds() {
    let modules = |test: &str, list: Value| {
        edited_folder(test, |dir| write_json(&dir.join("modules.json"), &list))
    };
    let transformer = json!({"idx": 0, "name": "0", "path": "",
        "type": "sentence_transformers.models.Transformer"});
    let pooling = json!({"idx": 1, "name": "1", "path": "1_Pooling",
        "type": "sentence_transformers.models.Pooling"});
    let dense = json!({"idx": 2, "name": "2", "path": "2_Dense",
        "type": "sentence_transformers.models.Dense"});
    let unnormalized = modules("no-normalize", json!([transformer, pooling]));
    assert_eq!(
        support(&unnormalized).expect("ok"),
        pooled(Pooling::Last, false)
    );
    let reason = unavailable_reason(
        support(&modules("dense", json!([transformer, pooling, dense]))).expect("ok"),
    );
    assert!(reason.contains("Dense"), "{reason}");
    let reason =
        unavailable_reason(support(&modules("no-pooling", json!([transformer]))).expect("ok"));
    assert!(reason.contains("no Pooling"), "{reason}");
    let outside = json!([transformer, {"idx": 1, "name": "1", "path": "../1_Pooling",
        "type": "sentence_transformers.models.Pooling"}]);
    assert!(support(&modules("outside", outside)).is_err());
    assert!(support(&modules("not-a-list", json!({"modules": []}))).is_err());
    let gone = edited_folder("no-modules", |dir| {
        std::fs::remove_file(dir.join("modules.json")).expect("remove")
    });
    let reason = unavailable_reason(support(&gone).expect("ok"));
    assert!(reason.contains("modules.json"), "{reason}");
}

/// `tiny.gguf` with `qwen3.pooling_type` set to `value` (or left out).
fn gguf_with_pooling(test: &str, value: Option<MetaValue>) -> PathBuf {
    let file = GgufFile::open(data_dir().join("tiny.gguf")).expect("gguf");
    let mut writer = GgufWriter::new();
    for (key, v) in file.metadata().iter() {
        if key != "qwen3.pooling_type" {
            writer = writer.metadata(key, v.clone());
        }
    }
    if let Some(value) = value {
        writer = writer.metadata("qwen3.pooling_type", value);
    }
    for info in file.tensors() {
        writer = writer.tensor(
            info.name.as_str(),
            info.ggml_type,
            &info.dims,
            file.tensor_data(info),
        );
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pooling-{test}.gguf"));
    writer.write_file(&path).expect("write");
    path
}

#[test]
fn the_gguf_pooling_type_follows_llama_cpp_numbering() {
    for (value, pooling) in [(1, Pooling::Mean), (2, Pooling::Cls), (3, Pooling::Last)] {
        let path = gguf_with_pooling(&format!("type-{value}"), Some(MetaValue::U32(value)));
        assert_eq!(
            support(&path).expect("ok"),
            pooled(pooling, true),
            "{value}"
        );
    }
    for (test, value, words) in [
        ("absent", None, "no qwen3.pooling_type"),
        (
            "unspecified",
            Some(MetaValue::I32(-1)),
            "no qwen3.pooling_type",
        ),
        ("none", Some(MetaValue::U32(0)), "per token"),
        ("rank", Some(MetaValue::U32(4)), "reranker"),
    ] {
        let reason = unavailable_reason(support(&gguf_with_pooling(test, value)).expect(test));
        assert!(reason.contains(words), "{test}: {reason}");
    }
    assert!(support(&gguf_with_pooling("bad", Some(MetaValue::U32(9)))).is_err());
}
