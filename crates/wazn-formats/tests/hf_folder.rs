//! Hugging Face folders against what the python `safetensors` package reads from the same files
//! (tests/gen_hf_folders.py), and malformed folders and headers written here byte by byte.

mod common;

use std::path::{Path, PathBuf};

use common::{data_path, load_json};
use serde_json::{json, Value};
use wazn_formats::{FormatError, HfFolder, SafeDtype, SafetensorsFile};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_against_facts(folder: &HfFolder, facts: &Value) {
    let facts = facts.as_object().unwrap();
    let mut want: Vec<&str> = facts.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(folder.tensor_names(), want);
    for (name, fact) in facts {
        let view = folder.tensor(name).unwrap();
        assert_eq!(view.name, name);
        assert_eq!(view.dtype.name(), fact["dtype"].as_str().unwrap(), "{name}");
        let shape: Vec<u64> = serde_json::from_value(fact["shape"].clone()).unwrap();
        assert_eq!(view.shape, shape.as_slice(), "{name}");
        assert_eq!(hex(view.data), fact["hex"].as_str().unwrap(), "{name}");
        let file = folder.tensor_file(name).unwrap().file_name().unwrap();
        assert_eq!(file.to_str(), fact["file"].as_str(), "{name}");
    }
}

#[test]
fn single_file_folder_matches_python_safetensors() {
    let folder = HfFolder::open(data_path("hf_single")).unwrap();
    assert_eq!(folder.model_type(), Some("gpt_oss"));
    assert_eq!(folder.config()["hidden_size"], 8);
    let eos = &folder.generation_config().unwrap()["eos_token_id"];
    assert_eq!(eos, &serde_json::json!([200002, 199999, 200012]));
    check_against_facts(&folder, &load_json("hf_folders_facts.json")["hf_single"]);
    assert!(folder.tensor("no.such.tensor").is_none());
}

#[test]
fn sharded_folder_matches_python_safetensors() {
    let folder = HfFolder::open(data_path("hf_sharded")).unwrap();
    assert_eq!(folder.model_type(), Some("llama"));
    assert_eq!(folder.shards().len(), 2);
    assert!(folder.generation_config().is_none());
    check_against_facts(&folder, &load_json("hf_folders_facts.json")["hf_sharded"]);
}

#[test]
fn mxfp4_pair_is_found_and_checked() {
    let folder = HfFolder::open(data_path("hf_single")).unwrap();
    let pair = folder
        .mxfp4("model.layers.0.mlp.experts.gate_up_proj")
        .unwrap()
        .unwrap();
    assert_eq!(pair.blocks.shape, &[2, 6, 3, 16]);
    assert_eq!(pair.scales.shape, &[2, 6, 3]);
    assert_eq!(pair.logical_shape(), vec![2, 6, 96]);
    assert!(folder
        .mxfp4("model.layers.0.mlp.experts.down_proj")
        .unwrap()
        .is_none());
}

/// A scratch folder, emptied first, unique to the test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wazn-hf-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file with `header` as its JSON (padded with spaces to 8 bytes) and `data`.
fn safetensors_bytes(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut json = header.to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

fn write_folder(dir: &Path, header: &Value, data: &[u8]) {
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(header, data),
    )
    .unwrap();
}

fn open_err(dir: &Path) -> String {
    HfFolder::open(dir).unwrap_err().to_string()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "{msg:?} should mention {part:?}");
    }
}

#[test]
fn folder_without_config_is_an_error() {
    let dir = scratch("no-config");
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(&json!({}), &[]),
    )
    .unwrap();
    assert_mentions(&open_err(&dir), &["config.json", "is missing"]);
}

#[test]
fn folder_without_weights_is_an_error() {
    let dir = scratch("no-weights");
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    assert_mentions(
        &open_err(&dir),
        &["model.safetensors", "model.safetensors.index.json"],
    );
}

#[test]
fn invalid_config_json_is_an_error() {
    let dir = scratch("bad-config");
    write_folder(&dir, &json!({}), &[]);
    std::fs::write(dir.join("config.json"), "{\"model_type\": ").unwrap();
    assert_mentions(&open_err(&dir), &["config.json", "not valid JSON"]);
    std::fs::write(dir.join("config.json"), "[1, 2]").unwrap();
    assert_mentions(&open_err(&dir), &["config.json", "not a JSON object"]);
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    std::fs::write(dir.join("generation_config.json"), "{,}").unwrap();
    assert_mentions(
        &open_err(&dir),
        &["generation_config.json", "not valid JSON"],
    );
}

#[test]
fn missing_shard_and_unheld_tensor_are_errors() {
    let dir = scratch("shards");
    write_folder(
        &dir,
        &json!({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}),
        &[0; 4],
    );
    let index = json!({"weight_map": {"a": "model.safetensors", "b": "model-2.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_mentions(
        &open_err(&dir),
        &["model-2.safetensors", "is missing", "\"b\""],
    );

    let index = json!({"weight_map": {"a": "model.safetensors", "c": "model.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_mentions(
        &open_err(&dir),
        &["index.json", "\"c\"", "model.safetensors"],
    );

    let index = json!({"weight_map": {"a": "../model.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_mentions(&open_err(&dir), &["not a file name in the folder"]);
}

/// Each malformed header is refused with an error naming the file and the problem.
#[test]
fn malformed_headers_are_errors() {
    let f32_entry =
        |start: u64, end: u64| json!({"dtype": "F32", "shape": [2], "data_offsets": [start, end]});
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "too short",
            vec![1, 2, 3],
            &["fewer than the 8-byte header length"],
        ),
        (
            "length past the end",
            {
                let mut b = 1_000u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            &["header length 1000 runs past the end of the file (10 bytes)"],
        ),
        (
            "not JSON",
            {
                let mut b = 4u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{\"a\"");
                b
            },
            &["not valid JSON"],
        ),
        (
            "unknown dtype",
            safetensors_bytes(
                &json!({"w": {"dtype": "F3", "shape": [1], "data_offsets": [0, 1]}}),
                &[0],
            ),
            &["\"w\"", "unknown safetensors dtype \"F3\""],
        ),
        (
            "out of bounds",
            safetensors_bytes(&json!({"w": f32_entry(0, 8)}), &[0; 4]),
            &["\"w\"", "runs past the end of the file"],
        ),
        (
            "size mismatch",
            safetensors_bytes(&json!({"w": f32_entry(0, 12)}), &[0; 12]),
            &["\"w\"", "needs 8 bytes", "span 12"],
        ),
        (
            "overlap",
            safetensors_bytes(
                &json!({"w": f32_entry(0, 8), "v": f32_entry(4, 12)}),
                &[0; 12],
            ),
            &["\"v\"", "overlaps tensor \"w\""],
        ),
        (
            "unaligned",
            safetensors_bytes(
                &json!({"b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "w": f32_entry(2, 10)}),
                &[0; 10],
            ),
            &["\"w\"", "not a multiple of the alignment 4"],
        ),
        (
            "bad offsets",
            safetensors_bytes(
                &json!({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8]}}),
                &[0; 8],
            ),
            &["\"w\"", "data_offsets is not [start, end]"],
        ),
        (
            "overflowing shape",
            safetensors_bytes(
                &json!({"w": {"dtype": "F32", "shape": [u64::MAX, 2], "data_offsets": [0, 8]}}),
                &[0; 8],
            ),
            &["\"w\"", "overflows"],
        ),
    ];
    let dir = scratch("headers");
    for (label, bytes, parts) in cases {
        let path = dir.join(format!("{}.safetensors", label.replace(' ', "_")));
        std::fs::write(&path, &bytes).unwrap();
        let err = SafetensorsFile::open(&path).unwrap_err();
        assert!(matches!(err, FormatError::InFile { .. }), "{label}: {err}");
        let msg = err.to_string();
        assert_mentions(&msg, &[path.file_name().unwrap().to_str().unwrap()]);
        assert_mentions(&msg, parts);
    }
}

#[test]
fn mxfp4_blocks_without_scales_is_an_error() {
    let dir = scratch("mxfp4");
    let header = json!({
        "e.gate_up_proj_blocks": {"dtype": "U8", "shape": [1, 1, 16], "data_offsets": [0, 16]},
        "e.down_proj_blocks": {"dtype": "U8", "shape": [1, 2, 16], "data_offsets": [16, 48]},
        "e.down_proj_scales": {"dtype": "U8", "shape": [1, 1], "data_offsets": [48, 49]},
        "e.up_blocks": {"dtype": "F16", "shape": [1, 1, 16], "data_offsets": [50, 82]},
        "e.up_scales": {"dtype": "U8", "shape": [1, 1], "data_offsets": [82, 83]},
    });
    write_folder(&dir, &header, &[0; 83]);
    let folder = HfFolder::open(&dir).unwrap();
    let msg = folder.mxfp4("e.gate_up_proj").unwrap_err().to_string();
    assert_mentions(
        &msg,
        &["model.safetensors", "e.gate_up_proj_scales", "is missing"],
    );
    let msg = folder.mxfp4("e.down_proj").unwrap_err().to_string();
    assert_mentions(&msg, &["e.down_proj_blocks", "[1, 2, 16]", "[1, 1]"]);
    let msg = folder.mxfp4("e.up").unwrap_err().to_string();
    assert_mentions(&msg, &["e.up_blocks", "F16"]);
    assert_eq!(folder.tensor("e.up_blocks").unwrap().dtype, SafeDtype::F16);
}
