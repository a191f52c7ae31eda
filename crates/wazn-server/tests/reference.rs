//! Greedy answers of the server against the transformers reference
//! (`crates/wazn-models/tests/data/smollm2_reference.json`), on the same token ids, with
//! f32 activations as the engine's own reference test uses; and again once the prefix
//! cache holds the prompts, which must not change a token.

mod common;

use common::{Config, TestServer};
use serde::Deserialize;
use serde_json::json;
use wazn_kernels::Activations;

#[derive(Deserialize)]
struct Reference {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

#[test]
fn greedy_completions_equal_transformers_with_and_without_cached_prefixes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-models/tests/data/smollm2_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("reference file");
    let reference: Reference = serde_json::from_str(&text).expect("reference JSON");
    let s = TestServer::start(Config {
        activations: Activations::F32,
        ..Config::default()
    });
    // Three prompts (one plain, two chats long enough to fill cache blocks) and the
    // first 16 tokens of each keep the f32 run short.
    let entries: Vec<&Entry> = reference
        .entries
        .iter()
        .filter(|e| ["capital", "chat-simple", "chat-multi"].contains(&e.id.as_str()))
        .collect();
    assert_eq!(entries.len(), 3);
    for round in 0..2 {
        for entry in &entries {
            let greedy_ids = &entry.greedy_ids[..16];
            let body = json!({
                "prompt": entry.prompt_ids,
                "max_tokens": greedy_ids.len(),
                "temperature": 0,
                "ignore_eos": true,
            });
            let answer = s.post("/v1/completions", &body).json();
            let expected = s.state.tokenizer.decode(greedy_ids, false).expect("decode");
            assert_eq!(
                answer["choices"][0]["text"], expected,
                "{} (round {round})",
                entry.id
            );
            assert_eq!(answer["usage"]["completion_tokens"], greedy_ids.len());
        }
    }
    // The second round found every prompt's full blocks cached.
    assert!(s.metric("wazn_prefix_cache_hits_total") > 0.0);
    assert!(s.wait_idle());
}
