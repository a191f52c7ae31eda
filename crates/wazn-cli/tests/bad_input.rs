//! Bad input to the `wazn` binary: each case ends with a non-zero exit and one line
//! on stderr that names the problem, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_fails_with, default_model, wazn};
use wazn_formats::{GgmlType, GgufWriter, MetaValue};

fn scratch_dir() -> PathBuf {
    common::scratch_dir("bad_input")
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn for_every_command(path: &Path, needle: &str) {
    let p = path.to_str().unwrap();
    assert_fails_with(&["inspect", p], needle);
    assert_fails_with(&["run", "-m", p, "hello"], needle);
    assert_fails_with(&["tokenize", "-m", p, "hello"], needle);
}

#[test]
fn a_missing_file() {
    for_every_command(
        &scratch_dir().join("no-such-model.gguf"),
        "no-such-model.gguf",
    );
}

#[test]
fn a_missing_default_model_says_how_to_fetch_it() {
    assert_fails_with(&["run", "hello"], "scripts/fetch-default-model");
}

#[test]
fn a_file_that_is_not_gguf() {
    let path = write("not-gguf.gguf", b"this is a text file, not a model\n");
    for_every_command(&path, "not a GGUF");
}

#[test]
fn an_empty_file() {
    let path = write("empty.gguf", b"");
    for_every_command(&path, "empty.gguf");
}

#[test]
fn a_truncated_file() {
    let bytes = GgufWriter::new()
        .metadata("general.architecture", "llama")
        .metadata("some.text", "x".repeat(200).as_str())
        .to_bytes()
        .unwrap();
    let path = write("truncated.gguf", &bytes[..bytes.len() - 50]);
    for_every_command(&path, "truncated");
}

#[test]
fn a_tensor_that_runs_past_the_end() {
    let bytes = GgufWriter::new()
        .metadata("general.architecture", "llama")
        .tensor(
            "big.weight",
            GgmlType::F32,
            &[64, 64],
            vec![0u8; 64 * 64 * 4],
        )
        .to_bytes()
        .unwrap();
    let path = write("short-tensor.gguf", &bytes[..bytes.len() - 1000]);
    for_every_command(&path, "big.weight");
}

#[test]
fn an_absurd_metadata_length() {
    // Header, then one key whose string value claims 2^60 bytes.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensors
    bytes.extend_from_slice(&1u64.to_le_bytes()); // metadata
    let key = b"general.name";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&8u32.to_le_bytes()); // string
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    bytes.extend_from_slice(b"tiny");
    let path = write("absurd-length.gguf", &bytes);
    for_every_command(&path, "general.name");
}

#[test]
fn an_unknown_dtype() {
    let mut bytes = GgufWriter::new()
        .metadata("general.architecture", "llama")
        .tensor("odd.weight", GgmlType::F32, &[32], vec![0u8; 128])
        .to_bytes()
        .unwrap();
    // Patch the type id (the u32 after the name, n_dims and one dim) to 99.
    let name_at = bytes.windows(10).position(|w| w == b"odd.weight").unwrap();
    let type_at = name_at + 10 + 4 + 8;
    assert_eq!(bytes[type_at..type_at + 4], 0u32.to_le_bytes());
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let path = write("unknown-dtype.gguf", &bytes);
    for_every_command(&path, "99");
}

#[test]
fn an_unsupported_architecture() {
    let bytes = GgufWriter::new()
        .metadata("general.architecture", "mamba")
        .metadata("general.alignment", MetaValue::U32(32))
        .to_bytes()
        .unwrap();
    let path = write("mamba.gguf", &bytes);
    let p = path.to_str().unwrap();
    assert_fails_with(
        &["run", "-m", p, "hello"],
        "unsupported architecture 'mamba'",
    );
    // inspect reads any architecture.
    let (code, stdout, _) = wazn(&["inspect", p]);
    assert_eq!(code, 0);
    assert!(stdout.contains("mamba"));
}

#[test]
fn a_huge_metadata_array() {
    // 64 MiB of u8 in one array: the parsed array holds them as 64 MiB (a value per element
    // once took 32 times that); inspect shows the head and the count, and a model load
    // stops at what the file lacks, not at the array.
    let bytes = GgufWriter::new()
        .metadata("general.architecture", "llama")
        .metadata("junk.bytes", vec![7u8; 64 << 20])
        .to_bytes()
        .unwrap();
    let path = write("huge-array.gguf", &bytes);
    drop(bytes);
    let p = path.to_str().unwrap();
    let (code, stdout, stderr) = wazn(&["inspect", p]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("junk.bytes"))
        .unwrap_or_else(|| panic!("no junk.bytes in {stdout}"));
    assert!(
        line.ends_with("ARRAY    [7, 7, 7, 7, 7, 7, 7, 7, …] (67108864 items)"),
        "{line}"
    );
    assert_fails_with(
        &["run", "-m", p, "hello"],
        "tensor 'token_embd.weight' is missing",
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_prompt_longer_than_the_context() {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    let prompt = "one two three four five six seven eight nine ten ".repeat(10);
    assert_fails_with(
        &["run", "-m", model.to_str().unwrap(), "-c", "32", &prompt],
        "context holds 32",
    );
}

#[test]
fn bad_sampling_options() {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    let m = model.to_str().unwrap();
    assert_fails_with(&["run", "-m", m, "--top-p", "1.5", "hi"], "top_p");
    assert_fails_with(&["run", "-m", m, "--logprobs", "3", "hi"], "--json");
}

#[test]
fn reasoning_effort_is_for_harmony_models_only() {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    let m = model.to_str().unwrap();
    assert_fails_with(
        &["run", "-m", m, "--chat", "--reasoning", "high", "hi"],
        "--reasoning applies to harmony models",
    );
}

/// A copy of the default model with metadata `key` set to `value`, written as `name`.
fn default_model_with(name: &str, key: &str, value: MetaValue) -> PathBuf {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    let file = wazn_formats::GgufFile::open(&model).unwrap();
    let mut writer = GgufWriter::new();
    for (k, v) in file.metadata().iter().filter(|(k, _)| *k != key) {
        writer = writer.metadata(k, v.clone());
    }
    writer = writer.metadata(key, value);
    for info in file.tensors() {
        writer = writer.tensor(
            &info.name,
            info.ggml_type,
            &info.dims,
            file.tensor_data(info),
        );
    }
    let path = scratch_dir().join(name);
    writer.write_file(&path).unwrap();
    path
}

#[test]
fn an_absurd_layer_count() {
    for (name, count, needle) in [
        ("layers-2e31.gguf", 1u32 << 31, "2147483648 layers"),
        ("layers-0.gguf", 0, "0 layers"),
    ] {
        let path = default_model_with(name, "llama.block_count", MetaValue::U32(count));
        let p = path.to_str().unwrap();
        assert_fails_with(&["run", "-m", p, "hello"], needle);
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn rope_over_no_dimensions() {
    let path = default_model_with(
        "rope-0.gguf",
        "llama.rope.dimension_count",
        MetaValue::U32(0),
    );
    let p = path.to_str().unwrap();
    assert_fails_with(&["run", "-m", p, "hello"], "RoPE over 0 dimensions");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    // The JSON of the default model (its whole vocabulary) is far more than a pipe
    // buffer holds, so the writes meet the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wazn"))
        .args(["inspect", "--json", model.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wazn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for wazn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn bad_grammars() {
    let Some(model) = default_model() else {
        panic!("the default model is missing: run scripts/fetch-default-model");
    };
    let m = model.to_str().unwrap();
    let not_json = write("not-json-schema.json", b"{\"type\": ");
    let bad_type = write(
        "bad-type-schema.json",
        br#"{"type": "object", "properties": {"a": {"type": "no-such-type"}}}"#,
    );
    let bad_lark = write("bad.lark", b"start: missing_rule\n");
    let schema = |p: &Path| p.to_str().unwrap().to_string();
    assert_fails_with(
        &["run", "-m", m, "--json-schema", &schema(&not_json), "hi"],
        "not valid JSON",
    );
    assert_fails_with(
        &["run", "-m", m, "--json-schema", &schema(&bad_type), "hi"],
        "grammar is invalid",
    );
    assert_fails_with(
        &["run", "-m", m, "--grammar", &schema(&bad_lark), "hi"],
        "grammar is invalid",
    );
    assert_fails_with(
        &["run", "-m", m, "--json-schema", "/no/such/file.json", "hi"],
        "cannot read",
    );
}

#[test]
fn serve_with_tls_files_it_cannot_use() {
    let not_pem = write("not-a-certificate.pem", b"hello\n");
    let not_pem = not_pem.to_str().unwrap();
    let missing = scratch_dir().join("no-such-key.pem");
    let missing = missing.to_str().unwrap();
    // Told before the model is looked for: there is none in this test's cache.
    assert_fails_with(
        &[
            "serve",
            "--ssl-cert-file",
            not_pem,
            "--ssl-key-file",
            not_pem,
        ],
        "not-a-certificate.pem",
    );
    let cert = write(
        "cert.pem",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    assert_fails_with(
        &[
            "serve",
            "--ssl-cert-file",
            cert.to_str().unwrap(),
            "--ssl-key-file",
            missing,
        ],
        "no-such-key.pem",
    );
}

#[test]
fn serve_with_an_origin_that_never_matches() {
    assert_fails_with(
        &["serve", "--cors-origin", "https://example.com/"],
        "https://example.com/",
    );
}
