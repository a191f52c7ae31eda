//! `POST /v1/embeddings` over real loopback connections, serving the tiny Qwen3 embedding
//! model of `scripts/reference/qwen3_embedding_tiny.py` (last-token pooling, `<|endoftext|>`
//! appended): vectors against sentence-transformers' as floats and as base64, shortened,
//! from token ids, several inputs and several clients at once, bad input, the cache given
//! back; and a language model (the default one) that cannot embed.

mod common;

use base64::Engine as _;
use common::embedding::{check_vector, floats, reference, server, texts, MODEL};
use common::TestServer;
use serde_json::{json, Value};

/// The vectors of an answer, checked to be in input order.
fn vectors(answer: &Value) -> Vec<Vec<f32>> {
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], MODEL);
    let data = answer["data"].as_array().expect("data");
    data.iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            floats(&item["embedding"])
        })
        .collect()
}

fn embed(s: &TestServer, body: Value) -> Value {
    let answer = s.post("/v1/embeddings", &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[test]
fn a_batch_of_texts_matches_sentence_transformers() {
    let reference = reference();
    let texts = texts(&reference);
    let s = server();
    let input: Vec<&str> = texts.iter().filter_map(|i| i.text.as_deref()).collect();
    let answer = embed(&s, json!({"model": MODEL, "input": input}));
    let got = vectors(&answer);
    assert_eq!(got.len(), texts.len());
    for (i, (got, want)) in got.iter().zip(&texts).enumerate() {
        check_vector(&format!("input {i}"), got, &want.embedding);
    }
    let n_tokens: usize = texts.iter().map(|i| i.input_ids.len()).sum();
    assert_eq!(answer["usage"]["prompt_tokens"], n_tokens);
    assert_eq!(answer["usage"]["total_tokens"], n_tokens);
    assert!(
        s.wait_idle(),
        "the embeddings did not give their cache back"
    );
}

#[test]
fn base64_holds_the_same_little_endian_floats() {
    let reference = reference();
    let input = &texts(&reference)[1];
    let s = server();
    let text = input.text.as_deref().unwrap_or_default();
    let answer = embed(
        &s,
        json!({"model": MODEL, "input": text, "encoding_format": "base64"}),
    );
    let encoded = answer["data"][0]["embedding"].as_str().expect("a string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    assert_eq!(bytes.len(), 4 * reference.hidden_size);
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    check_vector("base64", &got, &input.embedding);
    let plain = vectors(&embed(
        &s,
        json!({"input": text, "encoding_format": "float"}),
    ));
    // The floats are written as their shortest decimals, which read back exactly.
    let diff = got
        .iter()
        .zip(&plain[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-6, "base64 and float answers differ by {diff}");
}

#[test]
fn dimensions_truncate_then_normalise() {
    let reference = reference();
    let texts = texts(&reference);
    let s = server();
    let input: Vec<&str> = texts.iter().filter_map(|i| i.text.as_deref()).collect();
    let d = reference.truncate_dim;
    let got = vectors(&embed(&s, json!({"input": input, "dimensions": d})));
    for (i, (got, want)) in got.iter().zip(&texts).enumerate() {
        let want = want.embedding_16.as_deref().expect("a shortened reference");
        check_vector(&format!("input {i}, {d} dimensions"), got, want);
    }
    let full = reference.hidden_size;
    let got = vectors(&embed(&s, json!({"input": input[0], "dimensions": full})));
    check_vector("all dimensions", &got[0], &texts[0].embedding);
    for bad in [
        json!(0),
        json!(full + 1),
        json!(-3),
        json!("16"),
        json!(2.5),
    ] {
        let answer = s.post("/v1/embeddings", &json!({"input": "a", "dimensions": bad}));
        assert_eq!(answer.status, 400, "dimensions {bad}: {}", answer.text());
        assert_eq!(answer.json()["error"]["param"], "dimensions", "{bad}");
    }
}

#[test]
fn token_ids_are_embedded_as_given() {
    let reference = reference();
    let s = server();
    let by_ids = reference
        .inputs
        .iter()
        .find(|i| i.text.is_none())
        .expect("an input given as ids");
    let got = vectors(&embed(&s, json!({"input": by_ids.input_ids})));
    check_vector("ids", &got[0], &by_ids.embedding);
    let answer = embed(
        &s,
        json!({"input": [reference.inputs[0].input_ids, by_ids.input_ids]}),
    );
    let got = vectors(&answer);
    check_vector("ids of a text", &got[0], &reference.inputs[0].embedding);
    check_vector("ids", &got[1], &by_ids.embedding);
    let n_tokens = reference.inputs[0].input_ids.len() + by_ids.input_ids.len();
    assert_eq!(answer["usage"]["prompt_tokens"], n_tokens);
}

#[test]
fn several_clients_at_once_each_get_their_own_vectors() {
    let reference = reference();
    let texts = texts(&reference);
    let s = server();
    let addr = s.addr;
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .iter()
            .map(|input| {
                let body = json!({"input": input.text}).to_string();
                scope.spawn(move || {
                    common::request(addr, "POST", "/v1/embeddings", &[], body.as_bytes())
                })
            })
            .collect();
        for (i, (handle, input)) in handles.into_iter().zip(&texts).enumerate() {
            let answer = handle.join().expect("client thread");
            assert_eq!(answer.status, 200, "{}", answer.text());
            check_vector(
                &format!("client {i}"),
                &vectors(&answer.json())[0],
                &input.embedding,
            );
        }
    });
    assert!(
        s.wait_idle(),
        "the embeddings did not give their cache back"
    );
}

#[test]
fn bad_input_gets_a_4xx_in_openai_shape_and_the_cache_stays_free() {
    let s = server();
    let too_long: Vec<u32> = (0..common::N_CTX as u32 + 1).map(|i| i % 300).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"model": MODEL}), 400, "input"),
        (json!({"input": null}), 400, "input"),
        (json!({"input": []}), 400, "input"),
        (json!({"input": ""}), 400, "input"),
        (json!({"input": ["a", ""]}), 400, "input"),
        (json!({"input": [[]]}), 400, "input"),
        (json!({"input": ["a", 1]}), 400, "input"),
        (json!({"input": [[1, 2], "a"]}), 400, "input"),
        (json!({"input": [1, -2]}), 400, "input"),
        (json!({"input": {"text": "a"}}), 400, "input"),
        (json!({"input": 12}), 400, "input"),
        (json!({"input": [100000]}), 400, "input"),
        (json!({"input": too_long}), 400, "input"),
        (
            json!({"input": "a", "encoding_format": "hex"}),
            400,
            "encoding_format",
        ),
        (
            json!({"input": "a", "model": "text-embedding-3-small"}),
            404,
            "model",
        ),
    ];
    for (body, status, param) in cases {
        let answer = s.post("/v1/embeddings", &body);
        assert_eq!(answer.status, status, "{body}: {}", answer.text());
        let error = &answer.json()["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}: {error}"
        );
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"], param, "{body}");
    }
    let answer = s.post("/v1/embeddings", &json!({"input": too_long}));
    let message = answer.json()["error"]["message"].to_string();
    assert!(message.contains("context"), "{message}");
    let answer = common::request(s.addr, "POST", "/v1/embeddings", &[], b"{not json");
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error"]["message"].is_string());
    // The server still embeds, and nothing was left holding the cache.
    let got = vectors(&embed(&s, json!({"input": "a"})));
    assert_eq!(got[0].len(), reference().hidden_size);
    assert!(s.wait_idle(), "a refused request left blocks held");
    assert_eq!(s.metric("wazn_kv_blocks_used"), 0.0);
}

#[test]
fn a_language_model_cannot_embed() {
    let s = common::shared_server();
    let answer = s.post(
        "/v1/embeddings",
        &json!({"model": common::MODEL_ID, "input": "hello"}),
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = &answer.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], "model");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("does not embed"), "{message}");
    // Chat goes on as before.
    let answer = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(s.wait_idle());
}
