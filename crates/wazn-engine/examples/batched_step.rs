//! Where the time of a batched decode step goes, for 1, 4, 8 and 16 sequences decoded
//! together, greedy and sampled (temperature 0.8, top-p 0.95 and nothing else, as an
//! OpenAI client asks).
//!
//! Run: `cargo run --release -p wazn-engine --example batched_step -- [MODEL] [THREADS]
//! [TOKENS] [COUNTS]` (defaults: the default model, 2 threads, 64 tokens per sequence,
//! counts "1,4,8,16"). Every sequence gets its own prompt; the first step (the prompts,
//! computed together, and the first token of each) is left out, so the figures are
//! those of decode steps only. Prints milliseconds per step of each part and its share
//! of the step. Then a 400-token prompt arrives while 8 sequences decode, with prompt
//! chunks of 512, 64 and 16 rows next to the decodes: the longest step (the worst gap
//! the decoding streams see) against the new request's time to first token.

use std::error::Error;
use std::path::PathBuf;

use wazn_engine::{Engine, EngineOptions, Request, SamplerParams, StepProfile};

const TOPICS: [&str; 16] = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "Describe a walk through a busy market in the early morning.",
    "Give advice to someone learning to play the piano as an adult.",
    "Tell the history of the bicycle in a few paragraphs.",
    "Write a letter from a sailor to his family back home.",
    "Explain why the sky is blue to a curious child.",
    "Describe the life cycle of a butterfly in detail.",
    "Write a recipe for a simple vegetable soup and explain each step.",
    "Describe a city on Mars one hundred years from now.",
    "Explain how bees make honey and why it matters to farmers.",
    "Write a dialogue between a teacher and a student about rivers.",
    "Describe the sounds of a forest during a thunderstorm.",
    "Explain how a train timetable is planned for a large city.",
    "Write a poem about the first snow of winter, then explain it.",
    "Tell the story of a robot that learns to paint.",
];

/// What an OpenAI client sends: temperature and top-p, no top-k or min-p.
fn openai_sampled(seed: u64) -> SamplerParams {
    SamplerParams {
        temperature: 0.8,
        top_k: 0,
        top_p: 0.95,
        min_p: 0.0,
        seed,
        ..SamplerParams::default()
    }
}

/// Runs `n_seq` requests of `n_tokens` tokens together; the profile of their decode
/// steps and a digest (FNV-1a) of every sequence's tokens, in request order, so that
/// two builds or two batch sizes can be checked to generate the same tokens.
fn run(
    engine: &mut Engine,
    n_seq: usize,
    n_tokens: usize,
    sampled: bool,
) -> Result<(StepProfile, u64), Box<dyn Error>> {
    let mut ids_of = Vec::new();
    for i in 0..n_seq {
        let prompt = format!("Request {i}. {}", TOPICS[i % TOPICS.len()]);
        let ids = engine.tokenizer().encode(&prompt, true, false)?;
        let sampler = if sampled {
            openai_sampled(i as u64)
        } else {
            SamplerParams::greedy()
        };
        let mut request = Request::new(ids, sampler, n_tokens);
        request.ignore_eos = true;
        ids_of.push(engine.add_request(request)?);
    }
    let mut tokens = vec![Vec::new(); n_seq];
    let mut record = |events: Vec<wazn_engine::Event>| {
        for e in events {
            if let Some(i) = ids_of.iter().position(|&id| id == e.seq_id) {
                tokens[i].extend(e.token);
            }
        }
    };
    record(engine.step()?);
    engine.reset_profile();
    while engine.has_work() {
        record(engine.step()?);
    }
    let digest = tokens
        .iter()
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
            (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok((engine.profile(), digest))
}

/// A long prompt arriving while `n_decoding` sequences decode, with prompt chunks of at
/// most `cap` rows next to the decodes: the longest step the decoding streams wait for
/// (their worst inter-token gap) and the time to the new request's first token.
fn arrival(
    engine: &mut Engine,
    n_decoding: usize,
    prompt_len: usize,
    cap: usize,
) -> Result<(f64, f64, usize), Box<dyn Error>> {
    engine.set_prefill_rows_with_decodes(cap)?;
    for i in 0..n_decoding {
        let prompt = format!("Request {i}. {}", TOPICS[i % TOPICS.len()]);
        let ids = engine.tokenizer().encode(&prompt, true, false)?;
        let mut request = Request::new(ids, SamplerParams::greedy(), 1000);
        request.ignore_eos = true;
        engine.add_request(request)?;
    }
    // Prompts, then a few plain decode steps.
    for _ in 0..4 {
        engine.step()?;
    }
    // A text of its own each time, so the prefix cache holds none of it.
    let text = format!("Variant {cap}. {}", TOPICS.join(" ").repeat(8));
    let mut ids = engine.tokenizer().encode(&text, true, false)?;
    ids.truncate(prompt_len);
    let long_id = engine.add_request(Request::new(ids, SamplerParams::greedy(), 1))?;
    let started = std::time::Instant::now();
    let (mut longest, mut n_steps) = (0.0f64, 0);
    loop {
        let t = std::time::Instant::now();
        let events = engine.step()?;
        longest = longest.max(t.elapsed().as_secs_f64() * 1e3);
        n_steps += 1;
        if events.iter().any(|e| e.seq_id == long_id) {
            break;
        }
    }
    let ttft = started.elapsed().as_secs_f64() * 1e3;
    // End the decoding sequences.
    while engine.n_running() > 0 {
        let ids: Vec<_> = engine.step()?.iter().map(|e| e.seq_id).collect();
        for id in ids {
            engine.cancel(id);
        }
    }
    engine.set_prefill_rows_with_decodes(wazn_engine::DEFAULT_PREFILL_ROWS_WITH_DECODES)?;
    Ok((longest, ttft, n_steps))
}

fn ms_per_step(d: std::time::Duration, n_steps: usize) -> f64 {
    d.as_secs_f64() * 1e3 / n_steps.max(1) as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first() {
        Some(path) => PathBuf::from(path),
        None => wazn_formats::model_cache::default_model_path()
            .ok_or("no model given and neither HOME nor WAZN_CACHE_DIR is set")?,
    };
    let n_threads: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let n_tokens: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let counts: Vec<usize> = args
        .get(3)
        .map_or("1,4,8,16", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let options = EngineOptions {
        n_ctx: 512,
        n_threads,
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(&model, options)?;
    // Warm-up: first-touch page faults of the weights and the cache.
    run(&mut engine, 2, 8, true)?;

    println!(
        "| seqs | sampling | step ms | forward | update (wall) | sample | logprobs | text \
         | schedule | bookkeeping | tok/s | tokens digest |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &n_seq in &counts {
        for sampled in [false, true] {
            let (p, digest) = run(&mut engine, n_seq, n_tokens, sampled)?;
            let step = p.total();
            let share = |d: std::time::Duration| {
                format!(
                    "{:.3} ({:.1}%)",
                    ms_per_step(d, p.n_steps),
                    100.0 * d.as_secs_f64() / step.as_secs_f64().max(1e-12)
                )
            };
            println!(
                "| {n_seq} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {digest:016x} |",
                if sampled { "t0.8 p0.95" } else { "greedy" },
                ms_per_step(step, p.n_steps),
                share(p.forward),
                share(p.update),
                share(p.sample),
                share(p.logprobs),
                share(p.text),
                share(p.schedule),
                share(p.bookkeeping),
                p.n_sampled as f64 / step.as_secs_f64().max(1e-12),
            );
        }
    }
    println!();
    println!("| decoding | prompt | prompt rows per step | longest step ms | TTFT ms | steps |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for cap in [512, 64, 16] {
        let (longest, ttft, n_steps) = arrival(&mut engine, 8, 400, cap)?;
        println!("| 8 | 400 | {cap} | {longest:.1} | {ttft:.0} | {n_steps} |");
    }
    Ok(())
}
