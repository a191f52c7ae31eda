//! Constrained decoding on the default model: outputs follow their grammar whatever the
//! model would rather write, batching does not change them, forced tokens are taken
//! without a forward pass each, and a grammar that cannot compile is refused.

mod common;

use common::default_model_path;
use serde_json::{json, Value};
use wazn_engine::{
    Engine, EngineOptions, FinishReason, GrammarCompiler, GrammarError, GrammarSpec, Request,
    SamplerParams, Verdict,
};
use wazn_text::ChatMessage;

fn engine() -> Engine {
    let options = EngineOptions {
        n_ctx: 1024,
        n_threads: 2,
        ..EngineOptions::default()
    };
    Engine::load(&default_model_path(), options).expect("load the default model")
}

fn compiler(engine: &Engine) -> GrammarCompiler {
    GrammarCompiler::new(engine.shared_tokenizer()).expect("a grammar compiler")
}

fn chat_prompt(engine: &Engine, question: &str) -> Vec<u32> {
    let template = engine
        .chat_template()
        .expect("the default model has a chat template");
    let text = template
        .render(&[ChatMessage::new("user", question)], true)
        .unwrap();
    wazn_text::tokenize_rendered(engine.tokenizer(), &text).unwrap()
}

/// What one request produced, and in how many engine steps its tokens came.
struct Output {
    tokens: Vec<u32>,
    text: String,
    finish: FinishReason,
    steps_with_tokens: usize,
}

fn run_all(engine: &mut Engine, requests: Vec<Request>) -> Vec<Output> {
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| engine.add_request(r).unwrap())
        .collect();
    let mut out: Vec<Output> = ids
        .iter()
        .map(|_| Output {
            tokens: Vec::new(),
            text: String::new(),
            finish: FinishReason::Cancelled,
            steps_with_tokens: 0,
        })
        .collect();
    while engine.has_work() {
        let mut touched = vec![false; ids.len()];
        for event in engine.step().unwrap() {
            let i = ids.iter().position(|&id| id == event.seq_id).unwrap();
            out[i].tokens.extend(event.token);
            out[i].text.push_str(&event.text);
            touched[i] |= event.token.is_some();
            if let Some(reason) = event.finished {
                out[i].finish = reason;
            }
        }
        for (o, t) in out.iter_mut().zip(touched) {
            o.steps_with_tokens += usize::from(t);
        }
    }
    out
}

fn constrained(
    prompt: &[u32],
    compiler: &GrammarCompiler,
    spec: GrammarSpec,
    sampler: SamplerParams,
) -> Request {
    let mut request = Request::new(prompt.to_vec(), sampler, 200);
    request.constraint = Some(compiler.compile(&spec).expect("the grammar compiles"));
    request
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pet": {"enum": ["cat", "dog", "none"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3}
        },
        "required": ["name", "age", "pet", "tags"],
        "additionalProperties": false
    })
}

fn check_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 4, "{text}");
    assert!(
        obj["name"].as_str().unwrap().chars().count() <= 20,
        "{text}"
    );
    let age = obj["age"].as_i64().unwrap();
    assert!((0..=120).contains(&age), "{text}");
    assert!(
        ["cat", "dog", "none"].contains(&obj["pet"].as_str().unwrap()),
        "{text}"
    );
    let tags = obj["tags"].as_array().unwrap();
    assert!((1..=3).contains(&tags.len()), "{text}");
}

#[test]
fn json_schema_output_is_valid_greedy_and_sampled_and_batching_changes_nothing() {
    let mut engine = engine();
    let compiler = compiler(&engine);
    let prompt = chat_prompt(&engine, "Describe a person.");
    let spec = GrammarSpec::JsonSchema(person_schema());

    let alone = run_all(
        &mut engine,
        vec![constrained(
            &prompt,
            &compiler,
            spec.clone(),
            SamplerParams::greedy(),
        )],
    );
    check_person(&alone[0].text);
    assert_eq!(alone[0].finish, FinishReason::Stop);

    // Sampled at temperature 1 with different seeds, next to the greedy one.
    let mut requests = vec![constrained(
        &prompt,
        &compiler,
        spec.clone(),
        SamplerParams::greedy(),
    )];
    for seed in 0..5 {
        let sampler = SamplerParams {
            temperature: 1.0,
            seed,
            ..SamplerParams::greedy()
        };
        requests.push(constrained(&prompt, &compiler, spec.clone(), sampler));
    }
    let batched = run_all(&mut engine, requests);
    assert_eq!(
        batched[0].tokens, alone[0].tokens,
        "batching changed the greedy output"
    );
    for out in &batched {
        check_person(&out.text);
        assert_eq!(out.finish, FinishReason::Stop, "{}", out.text);
    }
}

#[test]
fn forced_tokens_come_without_a_step_each() {
    let mut engine = engine();
    let compiler = compiler(&engine);
    let prompt = chat_prompt(&engine, "Give me the weather.");
    // Long fixed keys: most of the output is forced by the grammar.
    let schema = json!({
        "type": "object",
        "properties": {
            "temperature_in_degrees_celsius": {"type": "integer"},
            "probability_of_precipitation_percent": {"type": "integer"}
        },
        "required": ["temperature_in_degrees_celsius", "probability_of_precipitation_percent"],
        "additionalProperties": false
    });
    let out = run_all(
        &mut engine,
        vec![constrained(
            &prompt,
            &compiler,
            GrammarSpec::JsonSchema(schema),
            SamplerParams::greedy(),
        )],
    );
    let v: Value = serde_json::from_str(&out[0].text).unwrap();
    assert!(
        v["temperature_in_degrees_celsius"].is_i64(),
        "{}",
        out[0].text
    );
    assert!(
        v["probability_of_precipitation_percent"].is_i64(),
        "{}",
        out[0].text
    );
    assert!(
        out[0].steps_with_tokens * 2 < out[0].tokens.len(),
        "{} tokens in {} steps",
        out[0].tokens.len(),
        out[0].steps_with_tokens
    );
}

#[test]
fn regex_choice_and_lark_outputs_match() {
    let mut engine = engine();
    let compiler = compiler(&engine);
    let prompt = chat_prompt(&engine, "What is your phone number?");
    let specs = [
        GrammarSpec::Regex(r"\d{3}-\d{4}".into()),
        GrammarSpec::Choice(vec!["yes (sure)".into(), "no.".into(), "maybe?".into()]),
        GrammarSpec::Lark("start: \"The answer is \" NUMBER \".\"\nNUMBER: /[0-9]{1,3}/".into()),
        GrammarSpec::JsonObject,
    ];
    let requests = specs
        .iter()
        .map(|s| constrained(&prompt, &compiler, s.clone(), SamplerParams::greedy()))
        .collect();
    let out = run_all(&mut engine, requests);
    let phone = &out[0].text;
    assert!(
        phone.len() == 8
            && phone.chars().enumerate().all(|(i, c)| if i == 3 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "{phone:?}"
    );
    assert!(
        ["yes (sure)", "no.", "maybe?"].contains(&out[1].text.as_str()),
        "{:?}",
        out[1].text
    );
    let lark = out[2]
        .text
        .strip_prefix("The answer is ")
        .and_then(|t| t.strip_suffix('.'));
    assert!(
        lark.is_some_and(|n| n.parse::<u32>().is_ok()),
        "{:?}",
        out[2].text
    );
    let object: Value = serde_json::from_str(&out[3].text).unwrap();
    assert!(object.is_object(), "{}", out[3].text);
    for o in &out {
        assert_eq!(o.finish, FinishReason::Stop, "{:?}", o.text);
    }
}

#[test]
fn a_lazy_constraint_waits_for_its_token() {
    let engine = engine();
    let compiler = compiler(&engine);
    let tokenizer = engine.shared_tokenizer();
    let trigger = tokenizer.encode("{", false, false).unwrap()[0];
    let mut c = compiler
        .compile_after_token(&GrammarSpec::Regex("x+".into()), trigger)
        .unwrap();
    let n_vocab = engine.model().info().n_vocab;
    let a = tokenizer.encode("a", false, false).unwrap()[0];
    let x = tokenizer.encode("x", false, false).unwrap()[0];

    let mask = |c: &mut wazn_engine::Constraint| {
        let mut logits = vec![0.0f32; n_vocab];
        assert!(c.mask(&mut logits));
        logits.iter().filter(|l| l.is_finite()).count()
    };
    assert_eq!(mask(&mut c), n_vocab, "free before the trigger");
    c.accept(a);
    assert_eq!(mask(&mut c), n_vocab, "free after another token");
    c.accept(trigger);
    let allowed = mask(&mut c);
    assert!(
        allowed > 0 && allowed < 100,
        "{allowed} tokens allowed after the trigger"
    );
    assert_eq!(c.accept(x), Verdict::Continue);
}

#[test]
fn invalid_grammars_are_refused() {
    let engine = engine();
    let compiler = compiler(&engine);
    let bad = [
        GrammarSpec::JsonSchema(
            json!({"type": "object", "properties": {"a": {"type": "no-such-type"}}}),
        ),
        GrammarSpec::JsonSchema(json!({"$ref": "#/$defs/missing"})),
        GrammarSpec::JsonSchema(json!(42)),
        GrammarSpec::Regex("(unclosed".into()),
        GrammarSpec::Lark("start: undefined_rule".into()),
        GrammarSpec::Choice(Vec::new()),
    ];
    for spec in bad {
        match compiler.compile(&spec) {
            Err(GrammarError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{spec:?} gave {other:?}"),
        }
    }
    // JSON Schema allows a count written as a whole float.
    let float_count = json!({"type": "string", "maxLength": 2.0});
    assert!(compiler
        .compile(&GrammarSpec::JsonSchema(float_count))
        .is_ok());
}
