//! The reader against gguf-py (llama.cpp's Python reader/writer), on the default model and on
//! a small file gguf-py wrote; the writer against gguf-py's byte layout. Reference data comes
//! from tests/gen_gguf_facts.py.

mod common;

use common::{assert_matches_facts, data_path, default_model_path, load_json};
use wazn_formats::{FormatError, GgmlType, GgufFile, GgufHeader, GgufWriter};

/// Rebuilds a parsed file with [`GgufWriter`], same metadata and tensors in the same order.
fn rewrite(file: &GgufFile) -> Vec<u8> {
    let mut w = GgufWriter::new().version(file.version());
    for (key, value) in file.metadata().iter() {
        w = w.metadata(key, value.clone());
    }
    for t in file.tensors() {
        w = w.tensor(&t.name, t.ggml_type, &t.dims, file.tensor_data(t));
    }
    w.to_bytes().expect("a parsed file can be written back")
}

#[test]
fn default_model_matches_gguf_py() {
    let path = default_model_path();
    if !path.exists() {
        eprintln!(
            "note: {} not found (run scripts/fetch-default-model); skipping",
            path.display()
        );
        return;
    }
    let facts = load_json("smollm2_gguf_facts.json");
    let file = GgufFile::open(&path).expect("the default model parses");
    assert_eq!(file.file_size(), facts["file_size"].as_u64().unwrap());
    assert_matches_facts(file.header(), file.as_bytes(), &facts);

    // The typed getters a model loader uses, against the same facts.
    let fact = |key: &str| {
        facts["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("{key} in facts"))
            .clone()
    };
    let m = file.metadata();
    assert_eq!(
        file.architecture().unwrap(),
        fact("general.architecture")["value"].as_str().unwrap()
    );
    assert_eq!(
        m.require_u64("llama.block_count").unwrap(),
        fact("llama.block_count")["value"].as_u64().unwrap()
    );
    assert_eq!(
        m.require_str("tokenizer.ggml.pre").unwrap(),
        fact("tokenizer.ggml.pre")["value"].as_str().unwrap()
    );
    let tokens = m.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    let tokens_fact = fact("tokenizer.ggml.tokens");
    assert_eq!(tokens.len() as u64, tokens_fact["len"].as_u64().unwrap());
    let head: Vec<&str> = tokens_fact["head"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&tokens[..5], &head[..]);
    let token_types = m
        .get_i32_array("tokenizer.ggml.token_type")
        .unwrap()
        .unwrap();
    assert_eq!(token_types.len(), tokens.len());

    // tensor_bytes gives the same view as tensor_data.
    let first = &file.tensors()[0];
    let (info, bytes) = file.tensor_bytes(&first.name).unwrap();
    assert_eq!(info, first);
    assert_eq!(bytes.as_ptr(), file.tensor_data(first).as_ptr());
    assert_eq!(
        bytes.as_ptr() as usize % file.header().alignment as usize,
        0
    );
}

#[test]
fn writer_reproduces_the_default_model_byte_for_byte() {
    let path = default_model_path();
    if !path.exists() {
        eprintln!("note: {} not found; skipping", path.display());
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    assert!(rewrite(&file) == file.as_bytes(), "rewritten file differs");
}

#[test]
fn small_gguf_py_file_matches_its_facts() {
    let facts = load_json("tiny_gguf_py_facts.json");
    let bytes = std::fs::read(data_path("tiny_gguf_py.gguf")).unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    assert_matches_facts(&header, &bytes, &facts);
}

#[test]
fn writer_reproduces_the_gguf_py_file_byte_for_byte() {
    let file = GgufFile::open(data_path("tiny_gguf_py.gguf")).unwrap();
    assert_eq!(rewrite(&file), file.as_bytes());
}

#[test]
fn big_endian_file_from_gguf_py_is_rejected() {
    let bytes = std::fs::read(data_path("tiny_big_endian.gguf")).unwrap();
    let e = GgufHeader::parse(&bytes).unwrap_err();
    assert!(matches!(e, FormatError::BigEndian { version: 3 }), "{e}");
    assert!(e.to_string().contains("big-endian"), "{e}");
}

#[test]
fn type_table_matches_gguf_py() {
    let table = load_json("ggml_type_sizes.json");
    let rows = table.as_array().unwrap();
    for row in rows {
        let id = row["id"].as_u64().unwrap() as u32;
        let name = row["name"].as_str().unwrap();
        let t = GgmlType::from_id(id).unwrap_or_else(|| panic!("type {id} {name} is known"));
        assert_eq!(t.name(), name);
        assert_eq!(
            t.block_size(),
            row["block_size"].as_u64().unwrap(),
            "{name}"
        );
        if t == GgmlType::Q8_1 {
            // gguf-py 0.19 lists 40 bytes (two f32) from before ggml made d and s f16;
            // ggml-common.h asserts sizeof(block_q8_1) == 2 * sizeof(ggml_half) + 32.
            // Should gguf-py be fixed, this fails and the exception goes.
            assert_eq!(row["type_size"].as_u64(), Some(40));
            assert_eq!(t.type_size(), 36);
        } else {
            assert_eq!(t.type_size(), row["type_size"].as_u64().unwrap(), "{name}");
        }
    }
    // Every type we know is in gguf-py's table.
    for t in GgmlType::ALL {
        assert!(
            rows.iter()
                .any(|r| r["id"].as_u64() == Some(u64::from(t.id()))),
            "{t} missing from gguf-py"
        );
    }
}
