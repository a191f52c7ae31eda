//! What constrained decoding costs: 8 sequences (chat prompts of the default model's
//! template) decoded together, the same requests without a grammar and with two JSON
//! schemas, greedy.
//!
//! - `free`: no grammar, `ignore_eos`, exactly N tokens each.
//! - `string`: `{"text": <string of at least 4000 characters>}`: after the first few
//!   tokens every step is a free string token, so each step computes a full mask and
//!   nothing is forced. Its time per step against `free` is the mask's overhead.
//! - `record`: an object of eight fixed keys with short values (a form's fields): most of
//!   its tokens are forced by the grammar and come without a forward pass each.
//!
//! Run: `cargo run --release -p wazn-engine --example constrained_overhead -- [MODEL]
//! [THREADS] [TOKENS] [ROUNDS]` (defaults: the default model, 2 threads, 128 tokens, 3
//! rounds). The modes alternate round by round so that all see the same machine. Prints,
//! per mode, decode steps, generated tokens, ms per step (and of it the forward pass and the
//! update: sampling, masks, text), ms per output token (wall time of the decode steps over
//! the tokens they gave) and the mask time (summed over the sequences, which are updated in
//! parallel) over the wall time.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use wazn_engine::{Engine, EngineOptions, GrammarCompiler, GrammarSpec, Request, SamplerParams};
use wazn_text::ChatMessage;

const N_SEQ: usize = 8;

const QUESTIONS: [&str; N_SEQ] = [
    "Describe a lighthouse keeper.",
    "Describe a refrigerator.",
    "Describe a busy market.",
    "Describe a piano teacher.",
    "Describe a bicycle.",
    "Describe a sailor.",
    "Describe a butterfly.",
    "Describe a city on Mars.",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Free,
    String,
    Record,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Free => "free",
            Mode::String => "string",
            Mode::Record => "record",
        }
    }

    fn grammar(self) -> Option<GrammarSpec> {
        match self {
            Mode::Free => None,
            Mode::String => Some(GrammarSpec::JsonSchema(json!({
                "type": "object",
                "properties": {"text": {"type": "string", "minLength": 4000}},
                "required": ["text"],
                "additionalProperties": false
            }))),
            Mode::Record => {
                let keys = [
                    "identifier",
                    "display_name",
                    "occupation",
                    "home_country",
                    "favourite_colour",
                    "years_of_experience",
                    "preferred_language",
                    "contact_preference",
                ];
                let properties: serde_json::Map<String, serde_json::Value> = keys
                    .iter()
                    .map(|k| (k.to_string(), json!({"type": "string", "maxLength": 12})))
                    .collect();
                Some(GrammarSpec::JsonSchema(json!({
                    "type": "object",
                    "properties": properties,
                    "required": keys,
                    "additionalProperties": false
                })))
            }
        }
    }
}

/// Totals of the decode steps of one run (the first step, the prompts, left out).
#[derive(Default)]
struct Totals {
    steps: usize,
    tokens: usize,
    wall: Duration,
    forward: Duration,
    update: Duration,
    mask: Duration,
}

fn run(
    engine: &mut Engine,
    compiler: &GrammarCompiler,
    mode: Mode,
    n_tokens: usize,
    totals: &mut Totals,
) -> Result<(), Box<dyn Error>> {
    let template = engine
        .chat_template()
        .ok_or("the model has no chat template")?;
    let mut prompts = Vec::new();
    for (i, q) in QUESTIONS.iter().enumerate() {
        // A different first line each time, so the prefix cache does not hold the prompt.
        let text = template.render(&[ChatMessage::new("user", format!("{i}. {q}"))], true)?;
        prompts.push(wazn_text::tokenize_rendered(engine.tokenizer(), &text)?);
    }
    for prompt in prompts {
        let mut request = Request::new(prompt, SamplerParams::greedy(), n_tokens);
        request.ignore_eos = mode == Mode::Free;
        if let Some(spec) = mode.grammar() {
            request.constraint = Some(compiler.compile(&spec)?);
        }
        engine.add_request(request)?;
    }
    engine.step()?;
    engine.reset_profile();
    let started = Instant::now();
    while engine.has_work() {
        let events = engine.step()?;
        totals.tokens += events.iter().filter(|e| e.token.is_some()).count();
    }
    totals.wall += started.elapsed();
    let profile = engine.profile();
    totals.steps += profile.n_steps;
    totals.mask += profile.mask;
    totals.forward += profile.forward;
    totals.update += profile.update;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first() {
        Some(path) => PathBuf::from(path),
        None => wazn_formats::model_cache::default_model_path()
            .ok_or("no model given and neither HOME nor WAZN_CACHE_DIR is set")?,
    };
    let n_threads: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let n_tokens: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(128);
    let rounds: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let options = EngineOptions {
        n_ctx: 1024,
        n_threads,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&model, options)?;
    let started = Instant::now();
    let compiler = GrammarCompiler::new(engine.shared_tokenizer())?;
    println!(
        "vocabulary prepared for grammars in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let modes = [Mode::Free, Mode::String, Mode::Record];
    // Warm-up: page faults of the weights and the cache, the grammars' first masks.
    for mode in modes {
        run(&mut engine, &compiler, mode, 16, &mut Totals::default())?;
    }
    let mut totals: Vec<Totals> = modes.iter().map(|_| Totals::default()).collect();
    for _ in 0..rounds {
        for (mode, t) in modes.iter().zip(&mut totals) {
            run(&mut engine, &compiler, *mode, n_tokens, t)?;
        }
    }
    println!(
        "| mode | steps | tokens | ms/step | forward ms/step | update ms/step | ms/token | mask share |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (mode, t) in modes.iter().zip(&totals) {
        let ms = t.wall.as_secs_f64() * 1e3;
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.3} | {:.1} % |",
            mode.name(),
            t.steps,
            t.tokens,
            ms / t.steps.max(1) as f64,
            t.forward.as_secs_f64() * 1e3 / t.steps.max(1) as f64,
            t.update.as_secs_f64() * 1e3 / t.steps.max(1) as f64,
            ms / t.tokens.max(1) as f64,
            100.0 * t.mask.as_secs_f64() / t.wall.as_secs_f64().max(1e-9),
        );
    }
    Ok(())
}
