//! Microseconds per [`Sampler::sample`] call on vocabulary-sized rows, for the settings an
//! OpenAI client sends and for llama.cpp's defaults.
//!
//! Run: `cargo run --release -p wazn-engine --example sample_bench -- [LOGITS] [REPS]
//! [ONLY]`, where `ONLY` keeps the settings whose name starts with it.
//! `LOGITS` is an optional file of little-endian f32 rows of 49 152 logits each (for
//! instance a model's logits dumped during generation); without it the rows are a
//! synthetic bell-shaped spread with a few leading tokens. Also prints a digest of the
//! tokens drawn, so two builds can be checked to pick the same ones.

use std::error::Error;
use std::time::Instant;

use wazn_engine::sampler::{Rng, Sampler, SamplerParams};

const N_VOCAB: usize = 49_152;

fn synthetic_rows() -> Vec<Vec<f32>> {
    let mut rng = Rng::from_seed(7);
    (0..8)
        .map(|r| {
            let mut row: Vec<f32> = (0..N_VOCAB)
                .map(|_| {
                    let u: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
                    (u * 4.0) as f32
                })
                .collect();
            for k in 0..(4 + r) {
                row[(k * 7919 + r * 13) % N_VOCAB] = 12.0 - k as f32 * 0.7;
            }
            row
        })
        .collect()
}

fn load_rows(path: &str) -> Result<Vec<Vec<f32>>, Box<dyn Error>> {
    let bytes = std::fs::read(path)?;
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(floats.chunks_exact(N_VOCAB).map(<[f32]>::to_vec).collect())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows = match args.get(1).filter(|a| a.as_str() != "-") {
        Some(path) => load_rows(path)?,
        None => synthetic_rows(),
    };
    let reps: usize = args.get(2).map_or(Ok(200), |r| r.parse())?;
    if rows.is_empty() {
        return Err("no rows of 49152 logits in the file".into());
    }
    let settings = [
        (
            "openai t=0.8 top_p=0.95",
            SamplerParams {
                temperature: 0.8,
                top_k: 0,
                top_p: 0.95,
                min_p: 0.0,
                ..SamplerParams::default()
            },
        ),
        ("llama.cpp defaults", SamplerParams::default()),
        (
            "t=1 min_p=0.05",
            SamplerParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.05,
                ..SamplerParams::default()
            },
        ),
        (
            "t=0.7 top_p=0.9 penalties",
            SamplerParams {
                temperature: 0.7,
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
                repeat_penalty: 1.1,
                presence_penalty: 0.2,
                frequency_penalty: 0.1,
                ..SamplerParams::default()
            },
        ),
        ("greedy", SamplerParams::greedy()),
    ];
    let history: Vec<u32> = (0..64u32).map(|i| (i * 769) % N_VOCAB as u32).collect();
    let mut scratch = vec![0.0f32; N_VOCAB];
    let only = args.get(3);
    for (name, params) in settings {
        if only.is_some_and(|o| !name.starts_with(o.as_str())) {
            continue;
        }
        let mut sampler = Sampler::new(params)?;
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        let start = Instant::now();
        for i in 0..reps {
            let row = &rows[i % rows.len()];
            scratch.copy_from_slice(row);
            let token = sampler.sample(&mut scratch, &history);
            digest = (digest ^ u64::from(token)).wrapping_mul(0x100_0000_01b3);
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!("{name:<28} {us:>9.1} µs/sample  digest {digest:016x}");
    }
    Ok(())
}
