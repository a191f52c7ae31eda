//! wazn's quantized files against llama-quantize's, byte for byte, on the default model:
//! data/llama_quantize_hashes.json holds the SHA-256 of llama-quantize's output for each file
//! type and a few flag sets (made by bench/quant-reference-hashes, which says how: default
//! model -> F16 -> TYPE). Here wazn makes the F16 file from the default model itself, then each
//! case from it, and every file must hash the same, header and tensors alike.
//!
//! The K-quant mixes have their own test: it passes once the kernels quantize to Q2_K..Q6_K.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use wazn_formats::{GgmlType, GgufFile};
use wazn_quant::{quantize_file, FileType, MixOptions, NoProgress, QuantizeOptions};

#[derive(Deserialize)]
struct Reference {
    tensors: Vec<String>,
    /// By case: "TYPE" or "TYPE FLAGS...".
    types: BTreeMap<String, CaseReference>,
}

#[derive(Deserialize)]
struct CaseReference {
    file: String,
    header: String,
    /// "TYPE first-16-hex-digits-of-sha256" per tensor, in `Reference::tensors` order.
    tensors: Vec<String>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("data/llama_quantize_hashes.json")).expect("parses")
}

fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("same_bytes");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(file_type: FileType, allow_requantize: bool) -> QuantizeOptions {
    QuantizeOptions {
        mix: MixOptions::new(file_type),
        allow_requantize,
        n_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
    }
}

/// The options of a case: "TYPE" or "TYPE FLAGS...", flags as llama-quantize's.
fn case_options(case: &str) -> QuantizeOptions {
    let mut words = case.split(' ');
    let file_type = FileType::parse(words.next().unwrap()).unwrap();
    let mut options = options(file_type, false);
    while let Some(flag) = words.next() {
        let mut type_arg = || GgmlType::from_name(words.next().unwrap()).unwrap();
        match flag {
            "--pure" => options.mix.pure = true,
            "--output-tensor-type" => options.mix.output_tensor_type = Some(type_arg()),
            "--token-embedding-type" => options.mix.token_embedding_type = Some(type_arg()),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

/// The F16 file wazn makes from the default model (once for all tests).
fn f16_file() -> &'static Path {
    static F16: OnceLock<PathBuf> = OnceLock::new();
    F16.get_or_init(|| {
        let model = wazn_formats::model_cache::default_model_path()
            .filter(|path| path.is_file())
            .expect("the default model is missing: run scripts/fetch-default-model");
        let out = scratch_dir().join("f16.gguf");
        quantize_file(&model, &out, &options(FileType::F16, true), &NoProgress)
            .expect("Q4_1 -> F16");
        out
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Differences between the file at `path` and llama-quantize's output for `case`.
fn differences(path: &Path, case: &str, reference: &Reference) -> Vec<String> {
    let expected = &reference.types[case];
    let file = GgufFile::open(path).unwrap();
    let bytes = file.as_bytes();
    if sha256_hex(bytes) == expected.file {
        return Vec::new();
    }
    let mut differences = Vec::new();
    let header_end = file.header().data_offset as usize;
    if sha256_hex(&bytes[..header_end]) != expected.header {
        differences.push("header (metadata or tensor infos)".to_string());
    }
    for (name, want) in reference.tensors.iter().zip(&expected.tensors) {
        let Ok((info, data)) = file.tensor_bytes(name) else {
            differences.push(format!("{name}: missing"));
            continue;
        };
        let got = format!("{} {}", info.ggml_type, &sha256_hex(data)[..16]);
        if &got != want {
            differences.push(format!("{name}: {got}, llama-quantize {want}"));
        }
    }
    if differences.is_empty() {
        differences.push("padding or layout".to_string());
    }
    differences
}

/// Makes each case from wazn's F16 file and checks it against the reference.
fn check_cases(cases: &[&str]) {
    let f16 = f16_file();
    let reference = reference();
    let mut failures = Vec::new();
    for &case in cases {
        let diff = if case == "F16" {
            differences(f16, case, &reference)
        } else {
            let out = scratch_dir().join(format!("{}.gguf", case.replace(' ', "_")));
            match quantize_file(f16, &out, &case_options(case), &NoProgress) {
                Ok(_) => {
                    let diff = differences(&out, case, &reference);
                    std::fs::remove_file(&out).unwrap();
                    diff
                }
                Err(err) => vec![err.to_string()],
            }
        };
        if !diff.is_empty() {
            failures.push(format!(
                "{case}: {} difference(s), first: {:?}",
                diff.len(),
                &diff[..diff.len().min(3)]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn f16_and_legacy_types_match_llama_quantize() {
    check_cases(&[
        "F16",
        "Q8_0",
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "BF16",
        "F32",
        "MXFP4_MOE",
    ]);
}

#[test]
fn flag_sets_match_llama_quantize() {
    check_cases(&[
        "Q4_0 --pure",
        "Q4_1 --output-tensor-type f16",
        "Q5_0 --token-embedding-type q8_0",
    ]);
}

/// Every K mix: the K-quant tensors from the kernels' quantizers, the rest as above.
#[test]
fn k_quant_mixes_match_llama_quantize() {
    check_cases(&[
        "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
    ]);
}

#[test]
fn the_reference_covers_every_file_type() {
    let reference = reference();
    for t in FileType::ALL {
        assert!(reference.types.contains_key(t.name()), "{t}");
    }
}
