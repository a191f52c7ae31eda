//! The server on the default model, over real loopback connections: every route,
//! streaming and not, cancellation, prefix caching, concurrency, and bad input.

mod common;

use std::io::Read;
use std::sync::MutexGuard;
use std::time::Duration;

use common::{request, send, Config, TestServer, MODEL_ID};
use serde_json::{json, Value};

/// One server shared by the tests of this file, used by one test at a time so that
/// its metrics can be read exactly.
fn server() -> MutexGuard<'static, TestServer> {
    common::shared_server()
}

fn chat(content: &str, max_tokens: usize) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

fn chat_text(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

#[test]
fn health_models_and_metrics_answer() {
    let s = server();
    let health = s.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let models = s.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL_ID);
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    for name in [
        "wazn_requests_total",
        "wazn_prompt_tokens_total",
        "wazn_generation_tokens_total",
        "wazn_queue_depth",
        "wazn_running_sequences",
        "wazn_kv_blocks_used",
        "wazn_kv_blocks_free",
        "wazn_prefix_cache_hits_total",
        "wazn_time_to_first_token_seconds_bucket",
        "wazn_inter_token_latency_seconds_bucket",
    ] {
        assert!(metrics.text().contains(name), "{name} missing");
    }
    let unknown = s.get("/v1/nothing");
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"]["message"].is_string());
    let wrong_method = s.get("/v1/chat/completions");
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"]["message"].is_string());
}

#[test]
fn chat_streamed_and_whole_give_the_same_answer() {
    let s = server();
    let whole = s.post("/v1/chat/completions", &chat("Name three colors.", 24));
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let usage = &whole["usage"];
    let completion_tokens = usage["completion_tokens"].as_u64().expect("usage");
    assert!((1..=24).contains(&completion_tokens));
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + completion_tokens)
    );
    let finish = whole["choices"][0]["finish_reason"]
        .as_str()
        .expect("finish");
    assert_eq!(finish == "length", completion_tokens == 24);

    let mut body = chat("Name three colors.", 24);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = s.post("/v1/chat/completions", &body);
    assert_eq!(streamed.status, 200);
    assert!(streamed
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let (chunks, done) = streamed.sse();
    assert!(done, "no [DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, chat_text(&whole));
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, vec![&json!(finish)]);
    // The last chunk carries the usage and no choices.
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], whole["usage"]);
    assert!(s.wait_idle());
}

#[test]
fn completions_streamed_and_whole_agree_and_stop_where_asked() {
    let s = server();
    let body = json!({"prompt": "The capital of France is", "max_tokens": 16, "temperature": 0});
    let whole = s.post("/v1/completions", &body).json();
    assert_eq!(whole["object"], "text_completion");
    let text = whole["choices"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(!text.is_empty());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (chunks, done) = s.post("/v1/completions", &streamed).sse();
    assert!(done);
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, text);

    // A stop string taken from the answer itself: the text ends just before it.
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let expected = &text[..text.find(&stop).expect("stop in text")];
    let mut stopped = body.clone();
    stopped["stop"] = json!([stop, "never appears here"]);
    let answer = s.post("/v1/completions", &stopped).json();
    assert_eq!(answer["choices"][0]["text"], expected);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    // max_completion_tokens wins over max_tokens.
    let mut short = body.clone();
    short["max_completion_tokens"] = json!(3);
    let answer = s.post("/v1/completions", &short).json();
    assert_eq!(answer["usage"]["completion_tokens"], 3);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert!(s.wait_idle());
}

#[test]
fn n_choices_logprobs_and_sampling_settings() {
    let s = server();
    let mut body = chat("Say something.", 6);
    body["n"] = json!(3);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let answer = s.post("/v1/chat/completions", &body).json();
    let choices = answer["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    // Greedy choices are the same; each chosen token is its distribution's best.
    for choice in choices {
        assert_eq!(choice["message"], choices[0]["message"]);
        let content = choice["logprobs"]["content"].as_array().expect("logprobs");
        assert_eq!(content.len(), 6);
        for entry in content {
            let top = entry["top_logprobs"].as_array().expect("top");
            assert_eq!(top.len(), 3);
            let lp: Vec<f64> = top.iter().filter_map(|t| t["logprob"].as_f64()).collect();
            assert!(lp.windows(2).all(|w| w[0] >= w[1]) && lp[0] <= 0.0);
            assert_eq!(entry["token"], top[0]["token"]);
            let chosen = entry["logprob"].as_f64().expect("logprob");
            assert!((chosen - lp[0]).abs() < 1e-4);
        }
    }
    assert_eq!(answer["usage"]["completion_tokens"], 18);

    // A seed replays a sampled answer; the other settings are accepted.
    let mut sampled = chat("Tell me a story.", 12);
    sampled["temperature"] = json!(1.0);
    sampled["top_p"] = json!(0.9);
    sampled["top_k"] = json!(40);
    sampled["min_p"] = json!(0.05);
    sampled["seed"] = json!(1234);
    sampled["presence_penalty"] = json!(0.5);
    sampled["frequency_penalty"] = json!(0.5);
    sampled["logit_bias"] = json!({"42": -100});
    let a = s.post("/v1/chat/completions", &sampled);
    assert_eq!(a.status, 200, "{}", a.text());
    let b = s.post("/v1/chat/completions", &sampled).json();
    assert_eq!(chat_text(&a.json()), chat_text(&b));

    // logit_bias bans the greedy first token.
    let plain = s
        .post(
            "/v1/completions",
            &json!({"prompt": "One, two,", "max_tokens": 1, "temperature": 0, "logprobs": 1}),
        )
        .json();
    let first = plain["choices"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    let top = &plain["choices"][0]["logprobs"]["top_logprobs"][0];
    assert!(top.get(first.as_str()).is_some());
    let ids = s
        .state
        .tokenizer
        .encode(&first, false, false)
        .expect("encode");
    let mut biased = json!({"prompt": "One, two,", "max_tokens": 1, "temperature": 0});
    biased["logit_bias"] = json!({ ids[0].to_string(): -100 });
    let other = s.post("/v1/completions", &biased).json();
    assert_ne!(other["choices"][0]["text"], json!(first));
    assert!(s.wait_idle());
}

#[test]
fn a_client_that_goes_away_mid_stream_gives_its_blocks_back() {
    let s = server();
    let mut body = chat("Write a long essay about the sea.", 400);
    body["stream"] = json!(true);
    body["ignore_eos"] = json!(true);
    let mut stream = send(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    );
    // Read until a few tokens have come, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("data: ").count() < 4 {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(s.metric("wazn_kv_blocks_used") > 0.0);
    let generated_before = s.metric("wazn_generation_tokens_total");
    drop(stream);
    assert!(s.wait_idle(), "blocks not returned after the client left");
    // The sequence stopped well before its 400 tokens.
    std::thread::sleep(Duration::from_millis(200));
    let generated = s.metric("wazn_generation_tokens_total") - generated_before;
    assert!(
        generated < 100.0,
        "{generated} tokens generated after hang-up"
    );
}

#[test]
fn a_repeated_prompt_is_served_from_the_prefix_cache() {
    let s = server();
    let system = "You are a careful assistant. You answer in one short sentence, \
                  and you never repeat the question. ";
    let body = json!({
        "messages": [
            {"role": "system", "content": system.repeat(3)},
            {"role": "user", "content": "What color is the sky?"}
        ],
        "max_tokens": 8,
        "temperature": 0,
    });
    let hits_before = s.metric("wazn_prefix_cache_hits_total");
    let first = s.post("/v1/chat/completions", &body).json();
    let n_prompt = first["usage"]["prompt_tokens"].as_u64().expect("usage") as f64;
    let hits_first = s.metric("wazn_prefix_cache_hits_total") - hits_before;
    let second = s.post("/v1/chat/completions", &body).json();
    let hits_second = s.metric("wazn_prefix_cache_hits_total") - hits_before - hits_first;
    // Every full block of the prompt but the one holding its last token is reused.
    let block = wazn_engine::KV_BLOCK_SIZE as f64;
    assert_eq!(hits_second, ((n_prompt - 1.0) / block).floor() * block);
    assert!(hits_second > hits_first);
    assert_eq!(chat_text(&first), chat_text(&second));
    assert!(s.wait_idle());
}

#[test]
fn concurrent_requests_each_get_their_own_answer() {
    let s = server();
    let prompts = [
        "What is 2 + 2?",
        "Name a fruit.",
        "Write a haiku about rain.",
        "Who wrote Hamlet?",
    ];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| chat_text(&s.post("/v1/chat/completions", &chat(p, 16)).json()))
        .collect();
    let addr = s.addr;
    let steps_before = s.metric("wazn_engine_steps_total");
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let body = chat(p, 16).to_string();
                scope.spawn(move || {
                    let r = request(addr, "POST", "/v1/chat/completions", &[], body.as_bytes());
                    chat_text(&r.json())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(alone, together);
    // Batched: fewer steps than the 4 x (1 prompt step + 16 tokens) of running alone.
    let steps = s.metric("wazn_engine_steps_total") - steps_before;
    assert!(
        steps < 4.0 * 17.0,
        "{steps} steps: requests were not batched"
    );
    assert!(s.wait_idle());
}

#[test]
fn bad_requests_get_a_4xx_with_a_message_and_leave_the_server_up() {
    let s = server();
    let user = json!([{"role": "user", "content": "hi"}]);
    let long_prompt = "hello ".repeat(common::N_CTX + 10);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/v1/chat/completions", b"{not json".to_vec(), 400),
        ("/v1/chat/completions", b"[1, 2]".to_vec(), 400),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "max_tokens": "ten"})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": user})
                .to_string()
                .into_bytes(),
            404,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "wizard", "content": "hi"}]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "max_tokens": -5})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "max_tokens": 1u64 << 40})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "n": 100000})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "temperature": 7})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "top_p": 0})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "logit_bias": {"x": 1}})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": user, "logprobs": true, "top_logprobs": 99})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": long_prompt}]})
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": long_prompt}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 2, 999999]}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": [["a"], ["b"]]}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": 5}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            json!({"prompt": ""}).to_string().into_bytes(),
            400,
        ),
        (
            "/v1/completions",
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        (
            "/v1/completions",
            vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1],
            413,
        ),
    ];
    for (path, body, status) in cases {
        let r = request(s.addr, "POST", path, &[], &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert_eq!(r.status, status, "{shown}: {}", r.text());
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(!message.is_empty(), "{shown}: no message");
        assert_eq!(s.get("/health").status, 200, "server down after {shown}");
    }
    let r = request(
        s.addr,
        "POST",
        "/v1/completions",
        &[],
        json!({"prompt": "hello ".repeat(common::N_CTX + 10)})
            .to_string()
            .as_bytes(),
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("context")));
    // The streaming path refuses the same way, before any event.
    let mut body = json!({"prompt": [1, 2, 3], "max_tokens": 2, "stream": true});
    body["prompt"] = json!(vec![1; common::N_CTX]);
    assert_eq!(s.post("/v1/completions", &body).status, 400);
    assert!(s.wait_idle());
}

#[test]
fn an_api_key_guards_every_route_but_health() {
    let s = TestServer::start(Config {
        api_key: Some("sk-test-key".into()),
        ..Config::default()
    });
    assert_eq!(s.get("/health").status, 200);
    for path in ["/v1/models", "/metrics"] {
        let r = s.get(path);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    }
    let wrong = request(
        s.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let right = request(
        s.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sk-test-key")],
        b"",
    );
    assert_eq!(right.status, 200);
    let chat = request(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        chat("hi", 2).to_string().as_bytes(),
    );
    assert_eq!(chat.status, 401);
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_shutdown_ends_streams() {
    let mut s = TestServer::start(Config {
        max_concurrent: 1,
        max_queued: 0,
        ..Config::default()
    });
    let mut body = chat("Write a long essay about mountains.", 300);
    body["stream"] = json!(true);
    body["ignore_eos"] = json!(true);
    let mut stream = send(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let busy = s.post("/v1/chat/completions", &chat("hi", 2));
    assert_eq!(busy.status, 429, "{}", busy.text());
    assert!(busy.header("retry-after").is_some());
    assert!(busy.json()["error"]["message"].is_string());

    // Shutting down cancels the running stream, which ends in an error event, then [DONE];
    // no finish reason outside OpenAI's set.
    assert!(s.shutdown(), "the server did not stop cleanly");
    let _ = stream.read_to_end(&mut seen);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("data: [DONE]"), "stream did not end: {text}");
    assert!(text.contains("cut short"), "no error event: {text}");
    assert!(!text.contains("\"cancelled\""), "{text}");
}

#[test]
fn a_client_that_goes_away_before_a_whole_answer_cancels_it() {
    let s = server();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true});
    let generated_before = s.metric("wazn_generation_tokens_total");
    let closed_before = closed_by_client(&s);
    let stream = send(
        s.addr,
        "POST",
        "/v1/completions",
        &[],
        body.to_string().as_bytes(),
    );
    // Hang up once the sequence is generating.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.metric("wazn_generation_tokens_total") - generated_before < 3.0 {
        assert!(std::time::Instant::now() < deadline, "no tokens came");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stream);
    assert!(s.wait_idle(), "blocks not returned after the client left");
    let generated = s.metric("wazn_generation_tokens_total") - generated_before;
    assert!(
        generated < 200.0,
        "{generated} tokens generated after hang-up"
    );
    // The request is counted all the same, with nginx's 499.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while closed_by_client(&s) <= closed_before {
        assert!(
            std::time::Instant::now() < deadline,
            "a request ended by its client is not counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Completions requests counted as ended by their client before an answer.
fn closed_by_client(s: &TestServer) -> f64 {
    let text = s.get("/metrics").text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(r#"wazn_requests_total{route="/v1/completions",status="499"} "#)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
