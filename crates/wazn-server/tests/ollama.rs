//! Ollama's native API over real loopback connections: `/api/chat` and `/api/generate` give
//! what `/v1/chat/completions` and `/v1/completions` give for the same request, whole and as
//! NDJSON lines; `num_predict`, `format`, an empty prompt; thinking, tool calls and a tool
//! result's round trip on a scripted ChatML model; tags, show, ps and version; model
//! management refused; and bad input answered `{"error": ...}` with a 4xx, leaving no
//! sequence or KV block behind.

mod common;

use std::io::Read;
use std::sync::MutexGuard;
use std::time::Duration;

use common::{request, scripted, send, Config, TestServer, MODEL_ID};
use serde_json::{json, Value};
use wazn_server::model_facts::FileFacts;

fn server() -> MutexGuard<'static, TestServer> {
    let s = common::shared_server();
    // As `wazn serve` does: the facts of the model's file, for show and tags.
    let facts = FileFacts::read(&common::default_model_path()).expect("read the model's facts");
    s.state.model_facts.set_file(facts);
    s
}

/// The JSON of each NDJSON line of an answer.
fn lines(r: &common::Response) -> Vec<Value> {
    assert_eq!(
        r.header("content-type"),
        Some("application/x-ndjson"),
        "{}",
        r.text()
    );
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn post_ok(s: &TestServer, path: &str, body: &Value) -> Value {
    let r = s.post(path, body);
    assert_eq!(r.status, 200, "{path} {body}: {}", r.text());
    r.json()
}

/// The streamed lines' text put together (`message.content` or `response`), and the last line.
fn streamed(s: &TestServer, path: &str, body: &Value, key: &str) -> (String, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let r = s.post(path, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = lines(&r);
    let (last, rest) = lines.split_last().expect("at least one line");
    let mut text = String::new();
    for line in rest {
        assert_eq!(line["done"], false, "{line}");
        assert_eq!(line["model"], body["model"]);
        let piece = match key {
            "content" => &line["message"]["content"],
            _ => &line[key],
        };
        text.push_str(piece.as_str().unwrap_or_default());
    }
    assert_eq!(last["done"], true, "{last}");
    (text, last.clone())
}

fn check_counts(done: &Value) {
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(done[key].is_u64(), "{key} in {done}");
    }
    assert!(done["prompt_eval_count"].as_u64() > Some(0), "{done}");
    assert!(done["total_duration"].as_u64() >= done["eval_duration"].as_u64());
    assert!(done["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 30));
}

#[test]
fn chat_answers_as_chat_completions_do_whole_and_streamed() {
    let s = server();
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colors."}
    ]);
    let openai = post_ok(
        &s,
        "/v1/chat/completions",
        &json!({"model": MODEL_ID, "messages": messages, "max_tokens": 24, "temperature": 0}),
    );
    let body = json!({"model": MODEL_ID, "messages": messages, "stream": false,
                      "options": {"temperature": 0, "num_predict": 24}});
    let whole = post_ok(&s, "/api/chat", &body);
    let content = whole["message"]["content"].as_str().expect("content");
    assert_eq!(content, openai["choices"][0]["message"]["content"]);
    assert!(!content.is_empty());
    assert_eq!(whole["message"]["role"], "assistant");
    assert_eq!(whole["model"], MODEL_ID);
    assert_eq!(whole["done"], true);
    assert_eq!(
        whole["done_reason"], openai["choices"][0]["finish_reason"],
        "{whole}"
    );
    assert_eq!(
        whole["eval_count"], openai["usage"]["completion_tokens"],
        "{whole}"
    );
    assert_eq!(whole["prompt_eval_count"], openai["usage"]["prompt_tokens"]);
    check_counts(&whole);

    let (text, done) = streamed(&s, "/api/chat", &body, "content");
    assert_eq!(text, content);
    assert_eq!(done["done_reason"], whole["done_reason"]);
    assert_eq!(done["eval_count"], whole["eval_count"]);
    assert_eq!(done["message"]["content"], "");
    check_counts(&done);

    // Ollama streams unless told not to; `:latest` names the same model.
    let mut default = body.clone();
    default.as_object_mut().unwrap().remove("stream");
    default["model"] = json!(format!("{MODEL_ID}:latest"));
    let r = s.post("/api/chat", &default);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(lines(&r).len() > 2);
    assert!(s.wait_idle());
}

#[test]
fn generate_answers_as_completions_and_chat_do() {
    let s = server();
    let prompt = "The river rose through the night, and by morning";
    let completion = post_ok(
        &s,
        "/v1/completions",
        &json!({"model": MODEL_ID, "prompt": prompt, "max_tokens": 16, "temperature": 0}),
    );
    let body = json!({"model": MODEL_ID, "prompt": prompt, "raw": true, "stream": false,
                      "options": {"temperature": 0, "num_predict": 16}});
    let whole = post_ok(&s, "/api/generate", &body);
    let response = whole["response"].as_str().expect("response");
    assert_eq!(response, completion["choices"][0]["text"]);
    assert_eq!(whole["done_reason"], "length", "{whole}");
    assert_eq!(whole["eval_count"], 16);
    check_counts(&whole);
    let (text, done) = streamed(&s, "/api/generate", &body, "response");
    assert_eq!(text, response);
    assert_eq!(done["done_reason"], "length");
    assert_eq!(done["response"], "");

    // Not raw: the prompt is the user's message in the chat template, after `system`.
    let chat = post_ok(
        &s,
        "/v1/chat/completions",
        &json!({"model": MODEL_ID, "max_tokens": 20, "temperature": 0, "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What color is the sky?"}
        ]}),
    );
    let templated = post_ok(
        &s,
        "/api/generate",
        &json!({"model": MODEL_ID, "prompt": "What color is the sky?",
                "system": "Answer in one word.", "stream": false,
                "options": {"temperature": 0, "num_predict": 20}}),
    );
    assert_eq!(
        templated["response"],
        chat["choices"][0]["message"]["content"]
    );
    assert_eq!(
        templated["prompt_eval_count"],
        chat["usage"]["prompt_tokens"]
    );
    assert!(s.wait_idle());
}

#[test]
fn num_predict_stop_and_an_empty_prompt() {
    let s = server();
    let body = json!({"model": MODEL_ID, "prompt": "Count: one, two,", "raw": true,
                      "stream": false, "options": {"temperature": 0, "num_predict": 3}});
    let short = post_ok(&s, "/api/generate", &body);
    assert_eq!(short["done_reason"], "length");
    assert_eq!(short["eval_count"], 3);

    // A stop string ends the answer before it, as `stop`.
    let longer = post_ok(
        &s,
        "/api/generate",
        &json!({"model": MODEL_ID, "prompt": "Count: one, two,", "raw": true, "stream": false,
                "options": {"temperature": 0, "num_predict": 12}}),
    );
    let text = longer["response"].as_str().unwrap();
    let stop: String = text.chars().skip(3).take(2).collect();
    assert!(!stop.is_empty(), "{text}");
    let stopped = post_ok(
        &s,
        "/api/generate",
        &json!({"model": MODEL_ID, "prompt": "Count: one, two,", "raw": true, "stream": false,
                "options": {"temperature": 0, "num_predict": 12, "stop": [stop.clone()]}}),
    );
    assert_eq!(stopped["done_reason"], "stop", "{stopped}");
    let cut = &text[..text.find(&stop).unwrap()];
    assert_eq!(stopped["response"], cut);

    // An empty prompt or conversation loads the model (here: it is loaded).
    for (path, body) in [
        ("/api/generate", json!({"model": MODEL_ID, "stream": false})),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": [], "stream": false}),
        ),
    ] {
        let loaded = post_ok(&s, path, &body);
        assert_eq!(loaded["done"], true, "{loaded}");
        assert_eq!(loaded["done_reason"], "load", "{loaded}");
    }
    let r = s.post("/api/generate", &json!({"model": MODEL_ID, "prompt": ""}));
    assert_eq!(lines(&r).len(), 1);
    assert!(s.wait_idle());
}

#[test]
fn format_json_and_a_schema_give_json() {
    let s = server();
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150}
    }, "required": ["name", "age"], "additionalProperties": false});
    let r = post_ok(
        &s,
        "/api/chat",
        &json!({"model": MODEL_ID, "stream": false, "format": schema,
                "messages": [{"role": "user", "content": "Describe a person as JSON."}],
                "options": {"temperature": 0, "num_predict": 100}}),
    );
    assert_eq!(r["done_reason"], "stop", "{r}");
    let content = r["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}"));
    assert!(v["name"].is_string() && v["age"].is_u64(), "{content}");

    let r = post_ok(
        &s,
        "/api/generate",
        &json!({"model": MODEL_ID, "stream": false, "format": "json",
                "prompt": "Give a JSON object with a name.",
                "options": {"temperature": 0, "num_predict": 200}}),
    );
    let text = r["response"].as_str().unwrap();
    if r["done_reason"] == "stop" {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(v.is_object(), "{text}");
    } else {
        // Cut short: still the start of an object.
        assert!(text.trim_start().starts_with('{'), "{text}");
    }
    assert!(s.wait_idle());
}

#[test]
fn tags_show_ps_and_version_describe_the_served_model() {
    let s = server();
    let version = s.get("/api/version").json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let tags = s.get("/api/tags").json();
    let models = tags["models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    let model = &models[0];
    assert_eq!(model["name"], MODEL_ID);
    assert_eq!(model["model"], MODEL_ID);
    let size = std::fs::metadata(common::default_model_path())
        .unwrap()
        .len();
    assert_eq!(model["size"], size);
    assert!(model["digest"].as_str().is_some_and(|d| d.len() == 16));
    assert!(model["modified_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let details = &model["details"];
    assert_eq!(details["format"], "gguf");
    assert_eq!(details["family"], "llama");
    assert_eq!(details["families"], json!(["llama"]));
    assert_eq!(details["quantization_level"], "Q4_1");
    let size = details["parameter_size"].as_str().unwrap();
    assert!(size.ends_with('M') && size.starts_with("13"), "{size}");

    let ps = s.get("/api/ps").json();
    let running = &ps["models"][0];
    assert_eq!(running["name"], MODEL_ID);
    assert_eq!(running["size_vram"], 0);
    assert_eq!(running["context_length"], common::N_CTX);
    assert!(running["expires_at"].as_str().is_some());

    for body in [
        json!({"model": MODEL_ID}),
        json!({"name": format!("{MODEL_ID}:latest")}),
    ] {
        let show = post_ok(&s, "/api/show", &body);
        assert!(show["template"].as_str().unwrap().contains("<|im_start|>"));
        assert_eq!(show["parameters"], format!("num_ctx {}", common::N_CTX));
        assert_eq!(show["details"], *details);
        let info = &show["model_info"];
        assert_eq!(info["general.architecture"], "llama");
        assert_eq!(info["llama.context_length"], 8192);
        assert_eq!(info["llama.embedding_length"], 576);
        assert_eq!(info["llama.block_count"], 30);
        assert!(info["general.parameter_count"].as_u64() > Some(100_000_000));
        // The vocabulary is too long to show; the template is given on its own.
        assert!(info["tokenizer.ggml.tokens"].is_null());
        assert!(info.get("tokenizer.chat_template").is_none());
        // SmolLM2 has no call format's tokens, does not reason, and has no FIM tokens.
        let capabilities = show["capabilities"].as_array().unwrap();
        assert!(capabilities.contains(&json!("completion")));
        assert!(!capabilities.contains(&json!("thinking")));
        assert!(!capabilities.contains(&json!("tools")));
        assert!(!capabilities.contains(&json!("insert")));
    }
    let r = s.post("/api/show", &json!({"model": "llama3.2"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("llama3.2"));
}

#[test]
fn model_management_is_refused_and_unknown_routes_are_404() {
    let s = server();
    for (method, path) in [
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
    ] {
        let r = request(s.addr, method, path, &[], br#"{"model": "llama3.2"}"#);
        assert_eq!(r.status, 501, "{path}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            message.contains("does not download") && message.contains(MODEL_ID),
            "{message}"
        );
    }
    let r = s.post("/api/nothing", &json!({}));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[test]
fn bad_input_is_a_4xx_in_ollamas_shape_and_leaves_nothing_running() {
    let s = server();
    let user = json!([{"role": "user", "content": "hi"}]);
    let m = MODEL_ID;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/api/chat", b"{not json".to_vec(), 400),
        ("/api/generate", b"[1, 2]".to_vec(), 400),
        ("/api/generate", b"{\"prompt\": \"\xff\"}".to_vec(), 400),
        ("/api/chat", json!({"messages": user}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": 7, "prompt": "hi"}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": "llama3.2", "messages": user}).to_string().into_bytes(), 404),
        ("/api/generate", json!({"model": "llama3.2", "prompt": "hi"}).to_string().into_bytes(), 404),
        ("/api/chat", json!({"model": m, "messages": "hi"}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"content": "hi"}]}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"role": "wizard", "content": "hi"}]}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"role": "user", "content": 5}]}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "images": ["aGk="]}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}]}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": user, "tools": "all"}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": user, "tools": [{"type": "function"}]}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": 5}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "stream": "yes"}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": [1]}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"temperature": "hot"}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"temperature": 9}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"num_predict": 0}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"num_predict": 1.5}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"top_p": 0}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"repeat_penalty": 0}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"repeat_last_n": -5}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "options": {"stop": [1]}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "format": "xml"}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "format": {"type": "nonsense"}}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "think": true}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "think": "max"}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "template": "{{ .Prompt }}"}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "context": [1, 2, 3]}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hi", "suffix": "end"}).to_string().into_bytes(), 400),
        ("/api/generate", json!({"model": m, "prompt": "hello ".repeat(common::N_CTX + 10), "raw": true}).to_string().into_bytes(), 400),
        ("/api/chat", json!({"model": m, "messages": [{"role": "user", "content": "hello ".repeat(common::N_CTX + 10)}]}).to_string().into_bytes(), 400),
        ("/api/show", json!({}).to_string().into_bytes(), 400),
        ("/api/show", json!({"model": ["x"]}).to_string().into_bytes(), 400),
        ("/api/generate", vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1], 413),
        ("/api/chat", vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1], 413),
        ("/api/show", vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1], 413),
        ("/api/show", b"{\"model\": ".to_vec(), 400),
        ("/api/show", b"[\"model\"]".to_vec(), 400),
        ("/api/tags", Vec::new(), 405),
        ("/api/version", Vec::new(), 405),
        ("/api/ps", Vec::new(), 405),
    ];
    for (path, body, status) in cases {
        let r = request(s.addr, "POST", path, &[], &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        assert_eq!(r.status, status, "{path} {shown}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(!error.is_empty(), "{path} {shown}: {}", r.text());
        assert_eq!(s.get("/health").status, 200, "server down after {shown}");
    }
    // The wrong method is named; `Allow` gives the right one.
    for path in ["/api/chat", "/api/generate", "/api/show"] {
        let r = s.get(path);
        assert_eq!(r.status, 405, "{path}: {}", r.text());
        assert_eq!(r.header("allow"), Some("POST"), "{path}");
        let error = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(error.contains("GET") && error.contains(path), "{error}");
    }
    // A refused streamed request is a plain error too, before any line.
    let r = s.post(
        "/api/generate",
        &json!({"model": m, "prompt": "hello ".repeat(common::N_CTX + 10), "raw": true}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("context")));
    assert!(s.wait_idle());
    assert_eq!(s.metric("wazn_kv_blocks_used"), 0.0);
}

#[test]
fn a_client_that_goes_away_mid_stream_gives_its_blocks_back() {
    let s = server();
    // Greedy counting goes on well past a few lines (Ollama has no `ignore_eos`).
    let body = json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5,", "raw": true,
                      "options": {"num_predict": 400, "temperature": 0}});
    let generated_before = s.metric("wazn_generation_tokens_total");
    let mut stream = send(
        s.addr,
        "POST",
        "/api/generate",
        &[],
        body.to_string().as_bytes(),
    );
    // Read until a few lines have come, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen)
        .matches("\"done\":false")
        .count()
        < 4
    {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("\"done\":true"));
    assert!(s.metric("wazn_kv_blocks_used") > 0.0);
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
fn shutdown_ends_a_stream_with_an_error_line() {
    let mut s = TestServer::start(Config::default());
    let body = json!({"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5,", "raw": true,
                      "options": {"num_predict": 400, "temperature": 0}});
    let mut stream = send(
        s.addr,
        "POST",
        "/api/generate",
        &[],
        body.to_string().as_bytes(),
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"done\":false") {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(s.shutdown(), "the server did not stop cleanly");
    let _ = stream.read_to_end(&mut seen);
    let text = String::from_utf8_lossy(&seen);
    // Ollama has no done reason for an answer cut short: an error line ends it, no done line.
    // The lines of JSON, between the chunk sizes of the raw answer.
    let last = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_default();
    assert!(
        last.contains("\"error\"") && last.contains("cut short"),
        "{text}"
    );
    assert!(!text.contains("\"done\":true"), "{text}");
}

#[test]
fn an_api_key_guards_the_ollama_routes_in_their_shape() {
    let s = TestServer::start(Config {
        api_key: Some("k3y".into()),
        ..Config::default()
    });
    for path in ["/api/tags", "/api/version", "/api/ps"] {
        let r = s.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.json()["error"].is_string(), "{}", r.text());
        let r = request(s.addr, "GET", path, &[("Authorization", "Bearer k3y")], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
}

// -- a scripted ChatML model: thinking, tool calls and a tool result's round trip --

/// A ChatML template that ends the prompt after the assistant's header.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                      {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

#[test]
fn thinking_is_given_apart_whole_and_streamed() {
    let (s, _) = scripted::start(CHATML, "<think>\nTwo and two.\n</think>\n\nIt is 4.");
    let body = json!({"model": "scripted", "stream": false,
                      "messages": [{"role": "user", "content": "2 + 2?"}]});
    let whole = post_ok(&s, "/api/chat", &body);
    assert_eq!(
        whole["message"],
        json!({"role": "assistant", "content": "\n\nIt is 4.", "thinking": "\nTwo and two.\n"})
    );
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let r = s.post("/api/chat", &streamed_body);
    let (mut content, mut thinking) = (String::new(), String::new());
    for line in lines(&r) {
        content.push_str(line["message"]["content"].as_str().unwrap_or_default());
        thinking.push_str(line["message"]["thinking"].as_str().unwrap_or_default());
    }
    assert_eq!(content, "\n\nIt is 4.");
    assert_eq!(thinking, "\nTwo and two.\n");

    // `think: false` leaves the reasoning out.
    let mut quiet = body.clone();
    quiet["think"] = json!(false);
    let answer = post_ok(&s, "/api/chat", &quiet);
    assert!(answer["message"].get("thinking").is_none(), "{answer}");
    assert_eq!(answer["message"]["content"], "\n\nIt is 4.");

    // Generate (through the template) gives it beside the response.
    let generated = post_ok(
        &s,
        "/api/generate",
        &json!({"model": "scripted", "prompt": "2 + 2?", "stream": false, "think": true}),
    );
    assert_eq!(generated["thinking"], "\nTwo and two.\n");
    assert_eq!(generated["response"], "\n\nIt is 4.");

    let show = post_ok(&s, "/api/show", &json!({"model": "scripted"}));
    let capabilities = show["capabilities"].as_array().unwrap();
    for c in ["completion", "thinking", "tools", "insert"] {
        assert!(capabilities.contains(&json!(c)), "{c}: {show}");
    }
    // The engine's facts stand in for a file's.
    assert_eq!(show["model_info"]["general.architecture"], "qwen3");
    assert_eq!(show["model_info"]["qwen3.context_length"], 4096);
}

const CALL_REPLY: &str = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}
        }, "required": ["city", "unit"]}
    }}])
}

#[test]
fn tool_calls_come_whole_with_object_arguments_and_results_go_back_in() {
    let (s, seen) = scripted::start(&scripted::qwen3_template(), CALL_REPLY);
    let body = json!({"model": "scripted", "stream": false, "tools": weather_tools(),
                      "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let whole = post_ok(&s, "/api/chat", &body);
    let call = json!({"function": {"name": "get_weather",
                                   "arguments": {"city": "Paris", "unit": "celsius"}}});
    assert_eq!(whole["message"]["content"], "Let me check.", "{whole}");
    assert_eq!(whole["message"]["tool_calls"], json!([call]), "{whole}");
    assert_eq!(whole["done_reason"], "stop");

    // Streamed: the call comes whole, in one line.
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let r = s.post("/api/chat", &streamed_body);
    let mut content = String::new();
    let mut calls = Vec::new();
    for line in lines(&r) {
        content.push_str(line["message"]["content"].as_str().unwrap_or_default());
        if let Some(list) = line["message"]["tool_calls"].as_array() {
            calls.push(list.clone());
        }
    }
    assert_eq!(content, "Let me check.");
    assert_eq!(calls, vec![vec![call.clone()]]);

    // The call and its result go back; the template renders both into the prompt.
    let round_trip = json!({"model": "scripted", "stream": false, "tools": weather_tools(),
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "thinking": "Ask the tool.", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
        ]},
        {"role": "tool", "tool_name": "get_weather", "content": "18 degrees, sunny"}
    ]});
    post_ok(&s, "/api/chat", &round_trip);
    let tokenizer = scripted::tokenizer();
    let prompts: Vec<String> = seen
        .lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .collect();
    let prompt = prompts
        .iter()
        .find(|p| p.contains("18 degrees"))
        .expect("the round trip's prompt");
    assert!(
        prompt.contains(
            "<|im_start|>assistant\n<think>\nAsk the tool.\n</think>\n\n<tool_call>\n\
             {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n\
             </tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n18 degrees, sunny\n\
             </tool_response><|im_end|>\n<|im_start|>assistant\n"
        ),
        "{prompt}"
    );
}

#[test]
fn a_suffix_fills_in_the_middle_with_the_models_tokens() {
    let (s, seen) = scripted::start(CHATML, "middle");
    let r = post_ok(
        &s,
        "/api/generate",
        &json!({"model": "scripted", "prompt": "def f(", "suffix": "):\n    pass",
                "stream": false}),
    );
    assert_eq!(r["response"], "middle");
    let tokenizer = scripted::tokenizer();
    let prompts: Vec<String> = seen
        .lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .collect();
    assert!(
        prompts
            .iter()
            .any(|p| p == "<fim_prefix>def f(<fim_suffix>):\n    pass<fim_middle>"),
        "{prompts:?}"
    );
}
