//! Ollama's `POST /api/embed` and `POST /api/embeddings` over real loopback connections, on
//! the tiny Qwen3 embedding model: the same vectors as `/v1/embeddings` (unit length on
//! `/api/embed`, as pooled on `/api/embeddings`) and as sentence-transformers', shortened,
//! a long input cut to the context (keeping the EOS that last-token pooling reads) or refused,
//! bad input in Ollama's error shape, the routes counted; and a language model that cannot
//! embed.

mod common;

use common::embedding::{check_vector, floats, reference, server, texts, MODEL};
use common::{request, TestServer, MODEL_ID, N_CTX};
use serde_json::{json, Value};

/// Checks that two vectors hold the same values (up to the last bits of a float).
fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: width");
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-6, "{what}: the vectors differ by {diff}");
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

fn api_embed(s: &TestServer, body: Value) -> Value {
    let answer = s.post("/api/embed", &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// The vectors of an `/api/embed` answer, its fields checked.
fn ollama_vectors(answer: &Value) -> Vec<Vec<f32>> {
    let mut keys: Vec<&str> = answer
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "embeddings",
            "load_duration",
            "model",
            "prompt_eval_count",
            "total_duration"
        ]
    );
    assert!(answer["total_duration"].as_u64().is_some_and(|d| d > 0));
    assert_eq!(answer["load_duration"], 0);
    answer["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(floats)
        .collect()
}

/// The float vectors `/v1/embeddings` gives for `input`.
fn openai_vectors(s: &TestServer, input: Value) -> Vec<Vec<f32>> {
    let answer = s.post(
        "/v1/embeddings",
        &json!({"input": input, "encoding_format": "float"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|item| floats(&item["embedding"]))
        .collect()
}

/// The count of answers with `status` on `route` in `/metrics`, 0 when none.
fn answered(s: &TestServer, route: &str, status: u16) -> f64 {
    let line = format!("wazn_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    s.get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn api_embed_is_the_v1_answer_and_sentence_transformers_vectors() {
    let reference = reference();
    let texts = texts(&reference);
    let s = server();
    let input: Vec<&str> = texts.iter().filter_map(|i| i.text.as_deref()).collect();
    let before = answered(&s, "/api/embed", 200);
    let answer = api_embed(&s, json!({"model": MODEL, "input": input}));
    assert_eq!(answer["model"], MODEL);
    let got = ollama_vectors(&answer);
    assert_eq!(got.len(), texts.len());
    let openai = openai_vectors(&s, json!(input));
    for (i, (got, want)) in got.iter().zip(&texts).enumerate() {
        check_vector(&format!("input {i}"), got, &want.embedding);
        assert_same(&format!("input {i} against /v1"), got, &openai[i]);
    }
    let n_tokens: usize = texts.iter().map(|i| i.input_ids.len()).sum();
    assert_eq!(answer["prompt_eval_count"], n_tokens);
    assert_eq!(answered(&s, "/api/embed", 200), before + 1.0);
    // One string, under Ollama's default tag, which the answer repeats.
    let tagged = format!("{MODEL}:latest");
    let answer = api_embed(&s, json!({"model": tagged, "input": input[1]}));
    assert_eq!(answer["model"], tagged.as_str());
    check_vector(
        "one string",
        &ollama_vectors(&answer)[0],
        &texts[1].embedding,
    );
    assert!(
        s.wait_idle(),
        "the embeddings did not give their cache back"
    );
}

#[test]
fn dimensions_keep_the_leading_values_made_unit_length_again() {
    let reference = reference();
    let texts = texts(&reference);
    let s = server();
    let input: Vec<&str> = texts.iter().filter_map(|i| i.text.as_deref()).collect();
    let d = reference.truncate_dim;
    let answer = api_embed(&s, json!({"model": MODEL, "input": input, "dimensions": d}));
    for (i, (got, want)) in ollama_vectors(&answer).iter().zip(&texts).enumerate() {
        let want = want.embedding_16.as_deref().expect("a shortened reference");
        check_vector(&format!("input {i}, {d} dimensions"), got, want);
    }
    // As Ollama: 0, the model's width or more keep every dimension.
    let full = reference.hidden_size;
    for all in [0, full, full + 1] {
        let answer = api_embed(
            &s,
            json!({"model": MODEL, "input": input[0], "dimensions": all}),
        );
        check_vector(
            &format!("dimensions {all}"),
            &ollama_vectors(&answer)[0],
            &texts[0].embedding,
        );
    }
}

#[test]
fn a_long_input_is_cut_to_the_context_unless_truncate_is_false() {
    let s = server();
    let text = "hello world ".repeat(N_CTX);
    let tokens = |add_special: bool| -> Vec<u32> {
        let answer = s.post(
            "/tokenize",
            &json!({"prompt": text, "add_special_tokens": add_special}),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_u64().expect("an id") as u32)
            .collect()
    };
    let (with_eos, body) = (tokens(true), tokens(false));
    assert!(body.len() > N_CTX, "the text is {} tokens", body.len());
    // The model appends one token (EOS) and puts none in front.
    assert_eq!(with_eos.len(), body.len() + 1);
    assert_eq!(with_eos[..body.len()], body[..]);
    let mut cut = body[..N_CTX - 1].to_vec();
    cut.extend(with_eos.last());
    let want = openai_vectors(&s, json!(cut));
    for truncate in [json!(true), json!(null)] {
        let answer = api_embed(
            &s,
            json!({"model": MODEL, "input": [text, "hello"], "truncate": truncate}),
        );
        let got = ollama_vectors(&answer);
        assert_same(&format!("truncate {truncate}"), &got[0], &want[0]);
        let short = openai_vectors(&s, json!("hello"));
        assert_same("the short input beside it", &got[1], &short[0]);
        let n_short = tokens_of(&s, "hello");
        assert_eq!(answer["prompt_eval_count"], N_CTX + n_short);
    }
    // Cut to its first tokens without the EOS, the vector is another one.
    let without_eos = openai_vectors(&s, json!(body[..N_CTX].to_vec()));
    let diff = want[0]
        .iter()
        .zip(&without_eos[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-3, "the EOS changes nothing ({diff})");
    let answer = s.post(
        "/api/embed",
        &json!({"model": MODEL, "input": text, "truncate": false}),
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.json()["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("context"), "{error}");
    assert!(s.wait_idle(), "a refused input left blocks held");
}

fn tokens_of(s: &TestServer, text: &str) -> usize {
    let answer = s.post("/tokenize", &json!({"prompt": text}));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["count"].as_u64().expect("a count") as usize
}

#[test]
fn api_embeddings_gives_the_pooled_vector_as_it_is() {
    let reference = reference();
    let text = texts(&reference)[2].text.clone().unwrap_or_default();
    let s = server();
    let before = answered(&s, "/api/embeddings", 200);
    let answer = s.post("/api/embeddings", &json!({"model": MODEL, "prompt": text}));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    let raw = floats(&answer["embedding"]);
    let n = norm(&raw);
    assert!((n - 1.0).abs() > 1e-2, "the pooled vector is unit length");
    let unit: Vec<f32> = raw.iter().map(|&x| (f64::from(x) / n) as f32).collect();
    let api_embed = ollama_vectors(&api_embed(&s, json!({"model": MODEL, "input": text})));
    assert_same("/api/embeddings made unit length", &unit, &api_embed[0]);
    assert_eq!(answered(&s, "/api/embeddings", 200), before + 1.0);
}

#[test]
fn an_empty_input_embeds_nothing() {
    let s = server();
    for input in [json!(""), json!([]), json!(null)] {
        let answer = api_embed(&s, json!({"model": MODEL, "input": input}));
        assert_eq!(answer["embeddings"], json!([]), "{input}");
        assert_eq!(answer["prompt_eval_count"], 0, "{input}");
    }
    let answer = api_embed(&s, json!({"model": MODEL}));
    assert_eq!(answer["embeddings"], json!([]));
    let answer = s.post("/api/embeddings", &json!({"model": MODEL, "prompt": ""}));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"embedding": []}));
}

#[test]
fn bad_input_is_a_4xx_in_ollamas_shape_and_the_cache_stays_free() {
    let s = server();
    let m = MODEL;
    let long = "hello world ".repeat(N_CTX);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/api/embed", b"{not json".to_vec(), 400),
        ("/api/embed", b"[\"a\"]".to_vec(), 400),
        (
            "/api/embed",
            json!({"input": "a"}).to_string().into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": 7, "input": "a"}).to_string().into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": "a"})
                .to_string()
                .into_bytes(),
            404,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": 7}).to_string().into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": {"text": "a"}})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": ["a", 1]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": [[1, 2]]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": ["a", ""]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": "a", "truncate": "yes"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": "a", "dimensions": -1})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": "a", "dimensions": 2.5})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": "a", "dimensions": "16"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": "a", "options": [1]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": long, "truncate": false})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            json!({"model": m, "input": vec!["a"; 2049]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embed",
            vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1],
            413,
        ),
        ("/api/embeddings", b"{not json".to_vec(), 400),
        (
            "/api/embeddings",
            json!({"prompt": "a"}).to_string().into_bytes(),
            400,
        ),
        (
            "/api/embeddings",
            json!({"model": "nomic-embed-text", "prompt": "a"})
                .to_string()
                .into_bytes(),
            404,
        ),
        (
            "/api/embeddings",
            json!({"model": m, "prompt": ["a"]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embeddings",
            json!({"model": m, "prompt": "a", "options": "fast"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/api/embeddings",
            json!({"model": m, "prompt": long}).to_string().into_bytes(),
            400,
        ),
    ];
    for (path, body, status) in cases {
        let r = request(s.addr, "POST", path, &[], &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        assert_eq!(r.status, status, "{path} {shown}: {}", r.text());
        // Ollama's shape: one `error` string and nothing else.
        let answer = r.json();
        let error = answer["error"].as_str().unwrap_or("");
        assert!(!error.is_empty(), "{path} {shown}: {answer}");
        assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    }
    for path in ["/api/embed", "/api/embeddings"] {
        let r = s.get(path);
        assert_eq!(r.status, 405, "{path}: {}", r.text());
        assert_eq!(r.header("allow"), Some("POST"), "{path}");
        assert!(r.json()["error"].is_string(), "{path}");
    }
    assert!(answered(&s, "/api/embed", 400) >= 15.0);
    assert!(answered(&s, "/api/embeddings", 400) >= 4.0);
    // The server still embeds, and nothing was left holding the cache.
    let answer = api_embed(&s, json!({"model": m, "input": "a"}));
    assert_eq!(ollama_vectors(&answer)[0].len(), reference().hidden_size);
    assert!(s.wait_idle(), "a refused request left blocks held");
    assert_eq!(s.metric("wazn_kv_blocks_used"), 0.0);
}

#[test]
fn show_names_the_embedding_capability() {
    let s = server();
    let shown = s.post("/api/show", &json!({"model": MODEL}));
    assert_eq!(shown.status, 200, "{}", shown.text());
    let capabilities = shown.json()["capabilities"].clone();
    assert!(
        capabilities
            .as_array()
            .is_some_and(|c| c.contains(&json!("embedding"))),
        "{capabilities}"
    );
}

#[test]
fn a_language_model_cannot_embed() {
    let s = common::shared_server();
    let shown = s.post("/api/show", &json!({"model": MODEL_ID})).json();
    assert!(
        !shown["capabilities"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("embedding"))),
        "{shown}"
    );
    for (path, body) in [
        ("/api/embed", json!({"model": MODEL_ID, "input": "hello"})),
        (
            "/api/embed",
            json!({"model": MODEL_ID, "input": ["a", "b"]}),
        ),
        // Even with nothing to embed, the model is named as one that cannot.
        ("/api/embed", json!({"model": MODEL_ID, "input": ""})),
        (
            "/api/embeddings",
            json!({"model": MODEL_ID, "prompt": "hello"}),
        ),
    ] {
        let answer = s.post(path, &body);
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.text());
        let answer = answer.json();
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("does not embed"), "{error}");
        assert_eq!(answer.as_object().map(|o| o.len()), Some(1), "{answer}");
    }
    // Chat goes on as before.
    let answer = s.post(
        "/api/chat",
        &json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}],
                "stream": false, "options": {"num_predict": 2}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(s.wait_idle());
}
