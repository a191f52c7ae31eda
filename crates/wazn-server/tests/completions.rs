//! `/v1/completions` beyond one string prompt, on the default model: `echo` with
//! `logprobs` (the prompt's own log-probabilities, as lm-evaluation-harness reads them),
//! token-id prompts, several prompts in one request, fill-in-the-middle `suffix`, and the
//! 400s of bad prompts.

mod common;

use std::sync::MutexGuard;

use common::{default_model_path, scripted, TestServer, N_CTX};
use serde_json::{json, Value};
use wazn_engine::{Engine, EngineOptions, PromptScoring, Request, SamplerParams};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

fn server() -> MutexGuard<'static, TestServer> {
    common::shared_server()
}

const TEXT: &str = "The river rose through the night, and by morning the old stone bridge \
    was under water. Farmers moved their animals to the hills.";

fn ids_of(s: &TestServer, text: &str) -> Vec<u32> {
    s.state.tokenizer.encode(text, true, true).expect("encode")
}

fn post_ok(s: &TestServer, body: &Value) -> Value {
    let r = s.post("/v1/completions", body);
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    r.json()
}

fn floats(v: &Value) -> Vec<Option<f64>> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(Value::as_f64)
        .collect()
}

/// Each prompt token's log-probability as the engine's own prompt scoring gives it, on an
/// engine set up as the test server's.
fn engine_scores(ids: &[u32]) -> Vec<f32> {
    let options = EngineOptions {
        n_ctx: N_CTX,
        n_threads: 2,
        n_batch: 512,
        model: ModelOptions {
            activations: Activations::Quantized,
        },
    };
    let mut engine = Engine::load(&default_model_path(), options).expect("load the model");
    let mut request = Request::new(ids.to_vec(), SamplerParams::greedy(), 0);
    request.prompt_scoring = Some(PromptScoring::all());
    engine.add_request(request).expect("add");
    let mut scores = Vec::new();
    while engine.has_work() {
        for event in engine.step().expect("step") {
            scores.extend(event.prompt_scores);
        }
    }
    scores.iter().map(|s| s.logprob).collect()
}

#[test]
fn echo_gives_the_prompts_log_probabilities_as_the_engine_scores_them() {
    let s = server();
    let ids = ids_of(&s, TEXT);
    let before = s.metric("wazn_prompt_tokens_total");
    let body = json!({"prompt": TEXT, "echo": true, "logprobs": 1, "max_tokens": 0});
    let answer = post_ok(&s, &body);
    // The prompt is computed once.
    assert_eq!(
        s.metric("wazn_prompt_tokens_total") - before,
        ids.len() as f64
    );
    let choice = &answer["choices"][0];
    assert_eq!(
        choice["text"], TEXT,
        "max_tokens 0 answers the prompt alone"
    );
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(answer["usage"]["prompt_tokens"], ids.len());
    assert_eq!(answer["usage"]["completion_tokens"], 0);

    let logprobs = &choice["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tokens.concat(),
        TEXT,
        "each prompt token, decoded on its own"
    );
    let token_logprobs = floats(&logprobs["token_logprobs"]);
    let top = logprobs["top_logprobs"].as_array().unwrap();
    assert_eq!(token_logprobs.len(), ids.len());
    assert_eq!(top.len(), ids.len());
    assert_eq!(token_logprobs[0], None, "the first token has no context");
    assert!(top[0].is_null());

    let expected = engine_scores(&ids);
    assert_eq!(expected.len(), ids.len() - 1);
    for (pos, want) in (1..ids.len()).zip(&expected) {
        let got = token_logprobs[pos].expect("a log-probability");
        assert!(
            (got - f64::from(*want)).abs() < 1e-4,
            "{pos}: {got} vs {want}"
        );
        // The chosen token and the best one, as lm-eval reads them: the token is greedy
        // exactly when its log-probability is the best of its alternatives.
        let alternatives = top[pos].as_object().expect("alternatives");
        assert!((1..=2).contains(&alternatives.len()));
        assert_eq!(alternatives[tokens[pos]].as_f64(), Some(got));
        let best = alternatives
            .values()
            .filter_map(Value::as_f64)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(got <= best);
    }

    // Offsets are where each token starts in the text.
    let offsets = logprobs["text_offset"].as_array().unwrap();
    let mut at = 0;
    for (token, offset) in tokens.iter().zip(offsets) {
        assert_eq!(offset, at);
        at += token.chars().count();
    }
    assert!(s.wait_idle());
}

#[test]
fn a_prompts_last_score_is_the_log_probability_of_the_same_token_generated() {
    let s = server();
    let ids = ids_of(&s, "One, two, three, four,");
    // The greedy next token, with its log-probability and alternatives, from a plain
    // completion (the generation path, which knows nothing of prompt scoring).
    let plain = post_ok(
        &s,
        &json!({"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 5}),
    );
    let plain_lp = &plain["choices"][0]["logprobs"];
    let generated = plain_lp["tokens"][0].as_str().unwrap().to_string();
    let mut longer = ids.clone();
    longer.extend(
        s.state
            .tokenizer
            .encode(&generated, false, false)
            .expect("encode"),
    );
    assert_eq!(longer.len(), ids.len() + 1, "one token: {generated:?}");

    let echoed = post_ok(
        &s,
        &json!({"prompt": longer, "echo": true, "logprobs": 5, "max_tokens": 0}),
    );
    let echo_lp = &echoed["choices"][0]["logprobs"];
    let last = ids.len();
    assert_eq!(echo_lp["tokens"][last], json!(generated));
    let a = echo_lp["token_logprobs"][last].as_f64().unwrap();
    let b = plain_lp["token_logprobs"][0].as_f64().unwrap();
    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    let echo_top = echo_lp["top_logprobs"][last].as_object().unwrap();
    let plain_top = plain_lp["top_logprobs"][0].as_object().unwrap();
    assert_eq!(echo_top.len(), plain_top.len());
    for (token, lp) in plain_top {
        let other = echo_top[token].as_f64().expect("same alternatives");
        assert!((other - lp.as_f64().unwrap()).abs() < 1e-4, "{token}");
    }
    // A token-id prompt is echoed as its text.
    let text = s.state.tokenizer.decode(&longer, false).unwrap();
    assert_eq!(echoed["choices"][0]["text"], json!(text));
    assert!(s.wait_idle());
}

#[test]
fn echo_with_generation_whole_and_streamed() {
    let s = server();
    let prompt = "Café au lait, 東京, and a list:";
    let n_prompt = ids_of(&s, prompt).len();
    let plain = post_ok(
        &s,
        &json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2, "ignore_eos": true}),
    );
    let generated = plain["choices"][0]["text"].as_str().unwrap().to_string();
    let body = json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2,
        "ignore_eos": true, "echo": true, "n": 2});
    let before = s.metric("wazn_prompt_tokens_total");
    let whole = post_ok(&s, &body);
    assert!(s.metric("wazn_prompt_tokens_total") - before <= 2.0 * n_prompt as f64);
    assert_eq!(
        whole["usage"]["prompt_tokens"], n_prompt,
        "a prompt counts once"
    );
    assert_eq!(whole["usage"]["completion_tokens"], 12);
    let choices = whole["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        let text = choice["text"].as_str().unwrap();
        assert_eq!(
            text,
            format!("{prompt}{generated}"),
            "the prompt, then the answer"
        );
        let lp = &choice["logprobs"];
        let tokens = lp["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), n_prompt + 6);
        // The generated part is what the plain completion reports.
        let tail = floats(&lp["token_logprobs"])[n_prompt..].to_vec();
        let plain_lp = floats(&plain["choices"][0]["logprobs"]["token_logprobs"]);
        for (a, b) in tail.iter().zip(&plain_lp) {
            assert!((a.unwrap() - b.unwrap()).abs() < 1e-4);
        }
        // Offsets in characters of the returned text.
        let chars: Vec<char> = text.chars().collect();
        let offsets = lp["text_offset"].as_array().unwrap();
        for (token, offset) in tokens.iter().zip(offsets) {
            let token = token.as_str().unwrap();
            let at = offset.as_u64().unwrap() as usize;
            if !token.contains('\u{fffd}') {
                let there: String = chars[at..(at + token.chars().count()).min(chars.len())]
                    .iter()
                    .collect();
                assert_eq!(there, token, "offset {at}");
            }
        }
        // The prompt part repeats per choice.
        let first = &choices[0]["logprobs"];
        assert_eq!(lp["tokens"], first["tokens"]);
        assert_eq!(
            floats(&lp["token_logprobs"])[..n_prompt],
            floats(&first["token_logprobs"])[..n_prompt]
        );
    }

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (chunks, done) = s.post("/v1/completions", &streamed).sse();
    assert!(done);
    for (i, choice) in choices.iter().enumerate() {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].as_array().and_then(|c| c.first()))
            .filter(|c| c["index"] == i)
            .collect();
        let text: String = mine.iter().filter_map(|c| c["text"].as_str()).collect();
        assert_eq!(text, choice["text"].as_str().unwrap());
        let logprobs: Vec<Option<f64>> = mine
            .iter()
            .filter(|c| !c["logprobs"].is_null())
            .flat_map(|c| floats(&c["logprobs"]["token_logprobs"]))
            .collect();
        let whole_logprobs = floats(&choice["logprobs"]["token_logprobs"]);
        assert_eq!(logprobs.len(), whole_logprobs.len());
        for (a, b) in logprobs.iter().zip(&whole_logprobs) {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4),
                _ => assert_eq!(a, b),
            }
        }
        let offsets: Vec<Value> = mine
            .iter()
            .filter(|c| !c["logprobs"].is_null())
            .flat_map(|c| c["logprobs"]["text_offset"].as_array().unwrap().clone())
            .collect();
        assert_eq!(offsets.len(), logprobs.len());
        assert_eq!(offsets[0], 0);
    }
    assert!(s.wait_idle());
}

#[test]
fn several_prompts_token_ids_and_lists_of_them() {
    let s = server();
    let prompts = ["The sky is", "One, two,", "Water boils at"];
    let single: Vec<String> = prompts
        .iter()
        .map(|p| {
            let a = post_ok(&s, &json!({"prompt": p, "max_tokens": 4, "temperature": 0}));
            a["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let n_prompt: usize = prompts.iter().map(|p| ids_of(&s, p).len()).sum();
    let together = post_ok(
        &s,
        &json!({"prompt": prompts, "max_tokens": 4, "temperature": 0, "n": 2}),
    );
    let choices = together["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 6);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i, "prompt-major order");
        assert_eq!(choice["text"], json!(single[i / 2]));
    }
    assert_eq!(together["usage"]["prompt_tokens"], n_prompt);
    assert_eq!(together["usage"]["completion_tokens"], 24);

    // The same as token ids: one list, and a list of lists.
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| ids_of(&s, p)).collect();
    let one = post_ok(
        &s,
        &json!({"prompt": ids[1], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(one["choices"][0]["text"], json!(single[1]));
    let lists = post_ok(
        &s,
        &json!({"prompt": ids, "max_tokens": 4, "temperature": 0, "echo": true, "logprobs": 0}),
    );
    for (i, choice) in lists["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            choice["text"],
            json!(format!("{}{}", prompts[i], single[i]))
        );
        // logprobs 0: each token's own log-probability, alone.
        let top = choice["logprobs"]["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), ids[i].len() + 4);
        assert!(top[1..].iter().all(|t| t.as_object().unwrap().len() == 1));
    }
    // lm-evaluation-harness's loglikelihood request: one token generated, then dropped.
    let lm_eval = post_ok(
        &s,
        &json!({"prompt": [ids[0].clone()], "echo": true, "logprobs": 1, "max_tokens": 1,
            "temperature": 0, "seed": 1234}),
    );
    let lp = &lm_eval["choices"][0]["logprobs"];
    assert_eq!(
        lp["token_logprobs"].as_array().unwrap().len(),
        ids[0].len() + 1
    );
    assert!(s.wait_idle());
}

#[test]
fn bad_prompts_and_settings_are_400s_naming_the_field() {
    let s = server();
    let cases = [
        (json!({"prompt": []}), "prompt"),
        (json!({"prompt": [[]]}), "prompt"),
        (json!({"prompt": [[1, 2], []]}), "prompt"),
        (json!({"prompt": [1, -1]}), "prompt"),
        (json!({"prompt": [1, 2.5]}), "prompt"),
        (json!({"prompt": [1, 99_999_999]}), "prompt"),
        (json!({"prompt": [[1], [2, 99_999_999]]}), "prompt"),
        (json!({"prompt": [[1, 2], "a"]}), "prompt"),
        (json!({"prompt": ["a", 1]}), "prompt"),
        (json!({"prompt": [["a"]]}), "prompt"),
        (json!({"prompt": {"text": "a"}}), "prompt"),
        (json!({"prompt": ["a", ""]}), "prompt"),
        (json!({"prompt": "a", "max_tokens": 0}), "max_tokens"),
        (
            json!({"prompt": "a", "echo": true, "max_tokens": -1}),
            "max_tokens",
        ),
        (json!({"prompt": "a", "logprobs": 21}), "logprobs"),
        (json!({"prompt": "a", "logprobs": -1}), "logprobs"),
        (
            json!({"prompt": "def f(", "suffix": "  return 1"}),
            "suffix",
        ),
        (
            json!({"prompt": "a", "suffix": "b", "echo": true}),
            "suffix",
        ),
        (json!({"prompt": vec!["a"; 40], "n": 16}), "prompt"),
    ];
    for (body, param) in cases {
        let r = s.post("/v1/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let error = &r.json()["error"];
        let message = error["message"].as_str().unwrap_or("");
        assert!(!message.is_empty() && !message.contains('\n'), "{body}");
        assert_eq!(error["param"], param, "{body}: {message}");
    }
    assert!(s.wait_idle());
}

#[test]
fn a_suffix_makes_a_fill_in_the_middle_prompt_where_the_vocabulary_has_one() {
    let (server, seen) = scripted::start("{{ messages }}", "x = 1");
    let tokenizer = scripted::tokenizer();
    let fim = tokenizer
        .fim_tokens()
        .expect("the scripted vocabulary has FIM tokens");
    let body = json!({"prompt": "def f(a", "suffix": "):\n    return a", "max_tokens": 3,
        "temperature": 0});
    let r = server.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["text"], "x =");
    let mut expected = vec![fim.prefix];
    expected.extend(tokenizer.encode("def f(a", false, true).unwrap());
    expected.push(fim.suffix);
    expected.extend(tokenizer.encode("):\n    return a", false, true).unwrap());
    expected.push(fim.middle);
    let seen = seen.lock().unwrap();
    let (n_prompt, tokens) = seen.values().next().expect("one sequence");
    assert_eq!(&tokens[..*n_prompt], expected.as_slice());
}

#[test]
fn the_tokenizer_routes_speak_for_the_servers_tokenizer() {
    let s = server();
    let text = "Hello <|im_start|> wörld";
    let r = s.post(
        "/tokenize",
        &json!({"prompt": text, "add_special_tokens": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let ids = s.state.tokenizer.encode(text, false, true).unwrap();
    assert_eq!(answer["tokens"], json!(ids));
    assert_eq!(answer["count"], ids.len());
    assert_eq!(answer["max_model_len"], N_CTX);
    let back = s.post("/detokenize", &json!({ "tokens": ids })).json();
    assert_eq!(back["prompt"], text);
    let info = s.get("/tokenizer_info").json();
    let eos = s.state.tokenizer.eos_id().unwrap();
    assert_eq!(
        info["eos_token"],
        json!(s.state.tokenizer.token_text(eos).unwrap())
    );
    assert!(info["chat_template"].is_string());
    for (path, body, param) in [
        ("/detokenize", json!({"tokens": [1, -1]}), "tokens"),
        ("/detokenize", json!({"tokens": [99_999_999]}), "tokens"),
        ("/tokenize", json!({"messages": []}), "messages"),
        ("/tokenize", json!({}), "prompt"),
        (
            "/tokenize",
            json!({"prompt": "a", "model": "other"}),
            "model",
        ),
    ] {
        let r = s.post(path, &body);
        assert!(r.status == 400 || r.status == 404, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
}
