//! `wazn quantize` end to end on the default model: Q4_1 -> F16 -> Q8_0 keeps the metadata,
//! puts every matrix in Q8_0 close to its F16 values, and the result runs; bad input ends
//! with one line that names the problem.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, wazn};
use wazn_formats::{GgmlType, GgufFile, MetaValue};
use wazn_kernels::dtype::{dequantize_row, DType};

fn scratch_dir() -> PathBuf {
    common::scratch_dir("quantize")
}

fn default_model() -> PathBuf {
    common::default_model().expect("the default model is missing: run scripts/fetch-default-model")
}

fn quantize(args: &[&str]) {
    let (code, _, stderr) = wazn(&[&["quantize"], args].concat());
    assert_eq!(code, 0, "wazn quantize {args:?}: {stderr}");
}

fn values(file: &GgufFile, name: &str) -> Vec<f32> {
    let (info, data) = file.tensor_bytes(name).unwrap();
    let dtype = DType::from_ggml_id(info.ggml_type.id()).unwrap();
    let mut out = vec![0f32; info.n_elements() as usize];
    dequantize_row(dtype, data, &mut out).unwrap();
    out
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn q4_1_to_f16_to_q8_0_keeps_the_model() {
    let model = default_model();
    let dir = scratch_dir();
    let f16 = dir.join("e2e-f16.gguf");
    let q8 = dir.join("e2e-q8_0.gguf");
    quantize(&[
        "--allow-requantize",
        path_str(&model),
        path_str(&f16),
        "F16",
    ]);
    quantize(&["-t", "2", path_str(&f16), path_str(&q8), "q8_0"]);

    let (f16_file, q8_file) = (GgufFile::open(&f16).unwrap(), GgufFile::open(&q8).unwrap());
    // The metadata is the input's, but for the file type.
    for (key, value) in f16_file.metadata().iter() {
        let expected = match key {
            "general.file_type" => MetaValue::U32(7),
            _ => value.clone(),
        };
        assert_eq!(q8_file.metadata().get(key), Some(&expected), "{key}");
    }
    assert_eq!(q8_file.metadata().len(), f16_file.metadata().len());

    assert_eq!(q8_file.tensors().len(), f16_file.tensors().len());
    for t in q8_file.tensors() {
        let source = f16_file.tensor(&t.name).unwrap();
        assert_eq!(t.dims, source.dims, "{}", t.name);
        if source.dims.len() == 1 {
            assert_eq!(t.ggml_type, GgmlType::F32, "{} stays as it is", t.name);
            continue;
        }
        assert_eq!(t.ggml_type, GgmlType::Q8_0, "{}", t.name);
        // Q8_0 rounds each value to the nearest step d = amax / 127 of its block (half a
        // step), and d itself to f16 (at most 127 steps times 2^-11 of d more).
        let (want, got) = (values(&f16_file, &t.name), values(&q8_file, &t.name));
        for (block_want, block_got) in want.chunks(32).zip(got.chunks(32)) {
            let amax = block_want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (w, g) in block_want.iter().zip(block_got) {
                assert!(
                    (w - g).abs() <= amax / 127.0 * 0.57 + 1e-6,
                    "{}: {g} for {w} (block max {amax})",
                    t.name
                );
            }
        }
    }

    let (code, stdout, stderr) = wazn(&[
        "run",
        "-m",
        path_str(&q8),
        "--temp",
        "0",
        "-n",
        "8",
        "The capital of France is",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.trim().is_empty(), "no text: {stderr}");
    for path in [f16, q8] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn bad_input_is_one_line() {
    let model = default_model();
    let m = path_str(&model);
    let dir = scratch_dir();
    let out = dir.join("bad-out.gguf");
    let o = path_str(&out);
    assert_fails_with(
        &["quantize", m, o, "Q9_K"],
        "unknown quantization type \"Q9_K\"",
    );
    assert_fails_with(&["quantize", m, o, "IQ2_XXS"], "does not write yet");
    assert_fails_with(&["quantize", m, o, "Q8_0"], "--allow-requantize");
    let missing = dir.join("no-such-model.gguf");
    assert_fails_with(
        &["quantize", path_str(&missing), o, "Q8_0"],
        "no-such-model.gguf",
    );
    assert_fails_with(&["quantize", m, m, "Q8_0"], "same file");
    assert_fails_with(
        &["quantize", "--output-tensor-type", "q9", m, o, "Q8_0"],
        "invalid ggml type",
    );
    let no_dir = dir.join("no-such-dir").join("out.gguf");
    assert_fails_with(
        &[
            "quantize",
            "--allow-requantize",
            m,
            path_str(&no_dir),
            "Q8_0",
        ],
        "no-such-dir",
    );
    assert_fails_with(&["quantize", path_str(&dir), o, "Q8_0"], "is a folder");
    // A file cut short in its header (untrusted input) is refused, not read past its end.
    let truncated = dir.join("truncated.gguf");
    let head = std::fs::read(&model).unwrap()[..100_000].to_vec();
    std::fs::write(&truncated, head).unwrap();
    assert_fails_with(&["quantize", path_str(&truncated), o, "Q8_0"], "truncated");
    assert!(!out.exists(), "a failed run leaves no output");
    let (_, _, stderr) = wazn(&["quantize", path_str(&missing), o, "Q8_0"]);
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the cause is said once: {stderr}"
    );
}
