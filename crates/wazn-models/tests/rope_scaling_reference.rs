//! wazn's RoPE frequency schedules against transformers' (`modeling_rope_utils.py`),
//! values written by `tests/gen_rope_reference.py`: Llama 3's schedule with Llama
//! 3.1-8B's parameters, and YaRN with gpt-oss's (unrounded correction range) and
//! with the rounded range.

use std::path::Path;

use serde_json::Value;
use wazn_models::rope_scaling::{Llama3Scaling, Yarn};

/// transformers computes the schedules in f32, wazn in f64 rounded to f32.
const MAX_REL_DIFF: f64 = 1e-6;

fn cases() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rope_reference.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn assert_close(name: &str, ours: &[f32], want: &Value) {
    let want = want.as_array().unwrap();
    assert_eq!(ours.len(), want.len(), "{name}");
    for (i, (&a, b)) in ours.iter().zip(want).enumerate() {
        let b = b.as_f64().unwrap();
        let rel = (a as f64 - b).abs() / b.abs();
        assert!(rel <= MAX_REL_DIFF, "{name} pair {i}: {a} vs {b}");
    }
}

#[test]
fn schedules_match_transformers() {
    let cases = cases();
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let p = &case["params"];
        let f = |k: &str| p[k].as_f64().unwrap();
        let head_dim = case["head_dim"].as_u64().unwrap() as usize;
        let theta = case["theta"].as_f64().unwrap();
        let want_scale = case["attention_scaling"].as_f64().unwrap();
        let (inv, scale) = match p["rope_type"].as_str().unwrap() {
            "llama3" => {
                let s = Llama3Scaling {
                    factor: f("factor"),
                    low_freq_factor: f("low_freq_factor"),
                    high_freq_factor: f("high_freq_factor"),
                    original_context: f("original_max_position_embeddings"),
                };
                (s.inv_freq(theta, head_dim), 1.0f32)
            }
            _ => Yarn {
                factor: f("factor"),
                original_context: f("original_max_position_embeddings"),
                beta_fast: f("beta_fast"),
                beta_slow: f("beta_slow"),
                truncate: p["truncate"].as_bool().unwrap(),
                attention_factor: None,
            }
            .inv_freq(theta, head_dim),
        };
        assert_close(name, &inv, &case["inv_freq"]);
        assert!((scale as f64 - want_scale).abs() < 1e-6, "{name}: {scale}");
    }
}
