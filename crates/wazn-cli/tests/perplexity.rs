//! `wazn perplexity` and `wazn eval` from the command line: the perplexity of the default
//! model on a committed text next to llama-perplexity's figure for the same file and n_ctx
//! (tests/data/llama_perplexity_essay.json in wazn-eval, written by
//! bench/perplexity-vs-llama-cpp), a base file read back by the model that wrote it, and
//! bad input.

mod common;

use std::path::PathBuf;

use common::{assert_fails_with, default_model, scratch_dir, wazn};
use serde_json::Value;

fn eval_data(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-eval/tests/data"
    ))
    .join(name)
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn run_ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = wazn(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

#[test]
fn perplexity_agrees_with_llama_perplexity() {
    let model = default_model().expect("the default model (scripts/fetch-default-model)");
    let model = model.to_str().unwrap();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(eval_data("llama_perplexity_essay.json")).unwrap(),
    )
    .unwrap();
    let essay = eval_data("essay.txt");
    let n_ctx = reference["n_ctx"].as_u64().unwrap().to_string();
    let out = json_of(&run_ok(&[
        "perplexity",
        "-m",
        model,
        "-f",
        essay.to_str().unwrap(),
        "-c",
        &n_ctx,
        "-t",
        "2",
        "--json",
    ]));
    assert_eq!(out["n_chunks"], reference["chunks"]);
    assert_eq!(out["n_tokens"].as_u64(), Some(8 * 63));
    let ppl = out["ppl"].as_f64().unwrap();
    let llama = reference["ppl"].as_f64().unwrap();
    assert!(
        (ppl / llama - 1.0).abs() < 0.005,
        "PPL {ppl} vs llama-perplexity's {llama}: more than 0.5 % apart"
    );

    // A base written by this model, read back by it: the same perplexity, and a KL
    // divergence of nothing but the 16-bit rounding of the stored log-probabilities.
    let base = scratch_dir("perplexity").join("essay-base.bin");
    let base = base.to_str().unwrap();
    let essay = essay.to_str().unwrap();
    run_ok(&[
        "perplexity",
        "-m",
        model,
        "-f",
        essay,
        "-c",
        &n_ctx,
        "-t",
        "2",
        "--kl-divergence-base",
        base,
    ]);
    let out = json_of(&run_ok(&[
        "perplexity",
        "-m",
        model,
        "-t",
        "2",
        "--kl-divergence-base",
        base,
        "--kl-divergence",
        "--json",
    ]));
    assert!(
        (out["ppl"].as_f64().unwrap() / ppl - 1.0).abs() < 1e-4,
        "{out}"
    );
    assert!(
        (out["ppl_base"].as_f64().unwrap() / ppl - 1.0).abs() < 1e-3,
        "{out}"
    );
    assert!(out["kld"]["mean"].as_f64().unwrap() < 1e-4, "{out}");
    assert!(out["same_top_p"]["value"].as_f64().unwrap() > 0.99, "{out}");

    // Bad bases and texts.
    assert_fails_with(
        &[
            "perplexity",
            "-m",
            model,
            "--kl-divergence-base",
            base,
            "--kl-divergence",
            "-c",
            "256",
        ],
        "computed with a context of 128 tokens, not 256",
    );
    let short = scratch_dir("perplexity").join("short.txt");
    std::fs::write(&short, "Only a few words here.").unwrap();
    assert_fails_with(
        &["perplexity", "-m", model, "-f", short.to_str().unwrap()],
        "needs at least 1024 (two chunks)",
    );
}

#[test]
fn bad_perplexity_input() {
    let dir = scratch_dir("perplexity");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    assert_fails_with(&["perplexity", "-f", empty.to_str().unwrap()], "is empty");
    assert_fails_with(
        &["perplexity", "--kl-divergence"],
        "needs --kl-divergence-base",
    );
    assert_fails_with(&["perplexity"], "-f FILE");
    let not_a_base = dir.join("not-a-base.bin");
    std::fs::write(&not_a_base, b"_logits_ but not really").unwrap();
    assert_fails_with(
        &[
            "perplexity",
            "--kl-divergence-base",
            not_a_base.to_str().unwrap(),
            "--kl-divergence",
        ],
        "not-a-base.bin",
    );
    // A well-formed base over another vocabulary (10 tokens).
    if let Some(model) = default_model() {
        let (n_ctx, n_vocab, n_chunk) = (8i32, 10i32, 1i32);
        let mut bytes = b"_logits_".to_vec();
        for n in [n_ctx, n_vocab, n_chunk] {
            bytes.extend(n.to_le_bytes());
        }
        bytes.extend(std::iter::repeat_n(0u8, 4 * 8));
        let row_bytes = 2 * (2 * (n_vocab as usize).div_ceil(2) + 4);
        bytes.extend(std::iter::repeat_n(0u8, 3 * row_bytes));
        let other = dir.join("other-vocab.bin");
        std::fs::write(&other, bytes).unwrap();
        assert_fails_with(
            &[
                "perplexity",
                "-m",
                model.to_str().unwrap(),
                "--kl-divergence-base",
                other.to_str().unwrap(),
                "--kl-divergence",
            ],
            "vocabulary of 10 tokens",
        );
    }
}

#[test]
fn eval_scores_a_task_and_refuses_bad_ones() {
    let model = default_model().expect("the default model (scripts/fetch-default-model)");
    let model = model.to_str().unwrap();
    let task = eval_data("completions.jsonl");
    let out = json_of(&run_ok(&[
        "eval",
        "-m",
        model,
        "--task",
        task.to_str().unwrap(),
        "-t",
        "2",
        "--limit",
        "3",
        "--json",
    ]));
    assert_eq!(out["n"], 3);
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for item in items {
        let lls: Vec<f64> = item["lls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(lls.len(), 4);
        assert!(lls.iter().all(|&ll| ll < 0.0));
        let best = lls.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(lls[item["pred"].as_u64().unwrap() as usize], best);
    }
    assert!(out["acc_norm"]["value"].is_number());

    let dir = scratch_dir("eval");
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n",
    )
    .unwrap();
    assert_fails_with(
        &["eval", "-m", model, "--task", bad.to_str().unwrap()],
        "line 1",
    );
    assert_fails_with(
        &["eval", "-m", model, "--task", "/nonexistent/task.jsonl"],
        "cannot read",
    );
}
