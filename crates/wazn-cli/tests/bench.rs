//! `wazn bench`: a short run on the default model prints llama-bench's JSON fields with the
//! sizes asked for, and bad flags end with one error line. Speed itself is not asserted.

use std::path::PathBuf;
use std::process::Command;

fn wazn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wazn"))
        .args(args)
        .output()
        .expect("run wazn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn default_model() -> Option<PathBuf> {
    wazn_formats::model_cache::default_model_path().filter(|path| path.is_file())
}

#[test]
fn jsonl_has_llama_bench_fields_and_the_sizes_asked_for() {
    let Some(model) = default_model() else {
        eprintln!(
            "skipped: the default model is not in wazn's cache (scripts/fetch-default-model)"
        );
        return;
    };
    let m = model.to_str().expect("utf-8 model path");
    let (code, stdout, stderr) = wazn(&[
        "bench", "-m", m, "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-o", "jsonl",
    ]);
    assert_eq!(code, 0, "wazn bench failed: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "one line per test (pp8, tg4): {stdout}");

    let file_bytes = std::fs::metadata(&model).unwrap().len();
    for (line, (n_prompt, n_gen)) in lines.iter().zip([(8, 0), (0, 4)]) {
        assert_eq!(line["n_prompt"], n_prompt, "{line}");
        assert_eq!(line["n_gen"], n_gen, "{line}");
        assert_eq!(line["n_threads"], 1, "{line}");
        assert_eq!(line["model_filename"], m, "{line}");
        let model_type = line["model_type"].as_str().expect("model_type");
        assert!(model_type.starts_with("llama "), "{line}");
        assert!(model_type.ends_with(" Q4_1"), "{line}");
        // Tensor data is most of the file but not all of it (header, alignment).
        let size = line["model_size"].as_u64().expect("model_size");
        assert!(size > file_bytes / 2 && size < file_bytes, "{line}");
        // SmolLM2-135M: about 135 million parameters, as its name says.
        let n_params = line["model_n_params"].as_u64().expect("model_n_params");
        assert!((100_000_000..200_000_000).contains(&n_params), "{line}");

        let avg_ts = line["avg_ts"].as_f64().expect("avg_ts");
        let avg_ns = line["avg_ns"].as_u64().expect("avg_ns");
        assert!(avg_ts > 0.0 && avg_ns > 0, "{line}");
        assert!(line["stddev_ts"].as_f64().expect("stddev_ts") >= 0.0);
        assert!(line["stddev_ns"].as_u64().is_some(), "{line}");
        let samples = line["samples_ts"].as_array().expect("samples_ts");
        assert_eq!(samples.len(), 1, "-r 1: one sample: {line}");
        // tokens/s and nanoseconds describe the same run.
        let n_tokens = (n_prompt + n_gen) as f64;
        let ts_from_ns = n_tokens * 1e9 / avg_ns as f64;
        assert!((ts_from_ns - avg_ts).abs() <= 1e-6 * avg_ts, "{line}");
        let test_time = line["test_time"].as_str().expect("test_time");
        assert!(test_time.len() == 20 && test_time.ends_with('Z'), "{line}");
    }
    // Generation also reports its share of the bandwidth bound.
    let tg = &lines[1];
    assert!(
        tg["bw_bound_ts"].as_f64().expect("bw_bound_ts") > 0.0,
        "{tg}"
    );
    assert!(tg["weight_bytes_per_token"].as_u64().expect("weight bytes") > 0);
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = wazn(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: expected {needle:?} in {stderr:?}"
    );
}

#[test]
fn bad_flags_give_one_line_errors() {
    // Flags are checked before any model is loaded, so a missing file does not matter.
    let m = "no-such-model.gguf";
    assert_one_line_error(&["bench", "-m", m, "-p", "abc"], "-p: 'abc'");
    assert_one_line_error(&["bench", "-m", m, "-n", "4,x"], "-n: 'x'");
    assert_one_line_error(&["bench", "-m", m, "-t", "0"], "-t: must be at least 1");
    assert_one_line_error(&["bench", "-m", m, "-r", "0"], "-r: must be at least 1");
    assert_one_line_error(&["bench", "-m", m, "-o", "xml"], "'xml'");
    assert_one_line_error(&["bench", "-m", m, "-p", "0", "-n", "0"], "nothing to run");
    assert_one_line_error(
        &["bench", "-m", m, "-p", "1", "-n", "0"],
        "no-such-model.gguf",
    );
}

/// The tiny gpt-oss fixture, written by `scripts/reference/gptoss_tiny.py` as a Hugging
/// Face folder and as llama.cpp's GGUF conversion of the same weights.
fn tiny_gpt_oss(which: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wazn-models/tests/data/gptoss")
        .join(which);
    path.to_str().expect("utf-8 fixture path").to_string()
}

#[test]
fn a_hugging_face_folder_benches_like_its_gguf() {
    let folder = tiny_gpt_oss("hf");
    let gguf = tiny_gpt_oss("tiny.gguf");
    let models = format!("{folder},{gguf}");
    let (code, stdout, stderr) = wazn(&[
        "bench", "-m", &models, "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-o", "jsonl",
    ]);
    assert_eq!(code, 0, "wazn bench failed: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 4, "pp8 and tg4 for each model: {stdout}");
    let (from_folder, from_gguf) = (&lines[0], &lines[2]);
    assert_eq!(from_folder["model_filename"], folder.as_str());
    let model_type = from_folder["model_type"].as_str().expect("model_type");
    assert!(model_type.ends_with(" MXFP4"), "{from_folder}");
    // The same weights: the same number of parameters in both layouts.
    assert_eq!(from_folder["model_n_params"], from_gguf["model_n_params"]);
}

#[test]
fn inspect_reads_a_hugging_face_folder() {
    let (code, stdout, stderr) = wazn(&["inspect", &tiny_gpt_oss("hf"), "--json"]);
    assert_eq!(code, 0, "wazn inspect failed: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["config"]["model_type"], "gpt_oss");
    let tensors = doc["tensors"].as_array().expect("tensors");
    let blocks = tensors
        .iter()
        .find(|t| t["name"] == "model.layers.0.mlp.experts.down_proj_blocks")
        .expect("down_proj_blocks listed");
    assert_eq!(blocks["dtype"], "U8");
}
