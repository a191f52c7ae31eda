//! `wazn perplexity`: llama-perplexity's method, flags and base file, so that a figure or a
//! base from either tool can be read next to the other's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use wazn_engine::EngineOptions;
use wazn_eval::logits_file::BaseReader;
use wazn_eval::statistics::ComparisonReport;
use wazn_eval::{perplexity, BaseMode, PerplexityOptions, PerplexityReport};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

use crate::model_path;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// GGUF model file or Hugging Face model folder (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// The text to score (not needed with --kl-divergence: the base holds its tokens).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Tokens per chunk; the second half of each is scored [default: 512, or the base's].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Most tokens computed in one step; chunks are computed batch-size / ctx-size at a time.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Score at most this many chunks (-1 = all).
    #[arg(long = "chunks", default_value_t = -1, allow_hyphen_values = true)]
    pub chunks: i64,
    /// Threads to compute with (default: one per core).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// File of base log-probabilities: written by a run without --kl-divergence, read by one
    /// with it (llama-perplexity's format).
    #[arg(long = "kl-divergence-base", value_name = "BASE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Compare with the base file: KL divergence, Δp, same top token, perplexity ratio.
    #[arg(long = "kl-divergence")]
    pub kl_divergence: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Multiply with f32 activations instead of 8-bit ones.
    #[arg(long = "f32-activations")]
    pub f32_activations: bool,
}

const DEFAULT_N_CTX: usize = 512;

pub fn run(args: PerplexityArgs) -> Result<()> {
    let mode_and_ctx = match (&args.kl_divergence_base, args.kl_divergence) {
        (None, true) => bail!("--kl-divergence needs --kl-divergence-base BASE"),
        (Some(path), true) => {
            let base = BaseReader::open(path)?;
            let n_ctx = base.header().n_ctx;
            if let Some(c) = args.ctx_size.filter(|&c| c != n_ctx) {
                bail!(
                    "{}: the base was computed with a context of {n_ctx} tokens, not {c}; \
                     leave out -c or give -c {n_ctx}",
                    path.display()
                );
            }
            (BaseMode::Compare(base), n_ctx)
        }
        (Some(path), false) => (
            BaseMode::Write(path.clone()),
            args.ctx_size.unwrap_or(DEFAULT_N_CTX),
        ),
        (None, false) => (BaseMode::None, args.ctx_size.unwrap_or(DEFAULT_N_CTX)),
    };
    let (mode, n_ctx) = mode_and_ctx;
    let text = match (&args.file, &mode) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if text.is_empty() {
                bail!("{} is empty", path.display());
            }
            Some(text)
        }
        (None, BaseMode::Compare(_)) => None,
        (None, _) => bail!("give the text to score with -f FILE"),
    };
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }

    let n_threads = args
        .threads
        .unwrap_or_else(wazn_engine::engine::default_threads);
    let path = model_path::resolve(args.model.clone())?;
    let options = EngineOptions {
        // A chunk is a prompt of n_ctx tokens, and a prompt must leave a position free.
        n_ctx: n_ctx + 1,
        n_threads,
        n_batch: args.batch_size,
        model: ModelOptions {
            activations: if args.f32_activations {
                Activations::F32
            } else {
                Activations::Quantized
            },
        },
    };
    let mut engine = crate::load_bar::load_engine(&path, options)?;

    let tokens = match (&text, &mode) {
        (_, BaseMode::Compare(base)) => base.header().tokens.clone(),
        (Some(text), _) => engine
            .tokenizer()
            .encode(text, true, false)
            .context("cannot tokenize the text")?,
        (None, _) => Vec::new(),
    };
    let max_chunks = usize::try_from(args.chunks).ok().filter(|&n| n > 0);
    let options = PerplexityOptions {
        n_ctx,
        max_chunks,
        n_parallel: (args.batch_size / n_ctx).max(1),
        n_threads,
    };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} chunks {msg} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("perplexity");
    let started = Instant::now();
    let report = perplexity(&mut engine, &tokens, &options, mode, &mut |done| {
        bar.set_length(done.n_chunks as u64);
        bar.set_position(done.index as u64);
        bar.set_message(format!("PPL {:.4}", done.ppl));
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&report, seconds))?
        );
    } else {
        print_report(&report, seconds);
    }
    Ok(())
}

fn estimate(e: wazn_eval::statistics::Estimate) -> Value {
    json!({ "value": e.value, "se": e.se })
}

fn report_json(report: &PerplexityReport, seconds: f64) -> Value {
    let mut out = json!({
        "ppl": report.ppl,
        "ppl_se": report.ppl_se,
        "n_ctx": report.n_ctx,
        "n_chunks": report.n_chunks,
        "n_tokens": report.n_tokens,
        "seconds": seconds,
    });
    if let (Some(c), Some(map)) = (&report.comparison, out.as_object_mut()) {
        map.insert("ppl_base".into(), json!(c.ppl_base.value));
        map.insert("ppl_base_se".into(), json!(c.ppl_base.se));
        map.insert("ln_ppl_ratio".into(), estimate(c.ln_ppl_ratio));
        map.insert("delta_ppl".into(), estimate(c.delta_ppl));
        map.insert("kld".into(), json!(c.kld));
        map.insert("same_top_p".into(), estimate(c.same_top_p));
        map.insert(
            "delta_p".into(),
            json!({ "mean": c.delta_p.mean, "mean_se": c.delta_p.mean_se,
                    "rms": c.delta_p.rms, "rms_se": c.delta_p.rms_se,
                    "max": c.delta_p.max, "median": c.delta_p.median, "min": c.delta_p.min }),
        );
        map.insert("nll_correlation".into(), json!(c.nll_correlation));
    }
    out
}

fn print_report(report: &PerplexityReport, seconds: f64) {
    println!(
        "{} chunks of {} tokens, {} tokens scored in {seconds:.1} s",
        report.n_chunks, report.n_ctx, report.n_tokens
    );
    match &report.comparison {
        None => println!(
            "Final estimate: PPL = {:.4} +/- {:.5}",
            report.ppl, report.ppl_se
        ),
        Some(c) => print_comparison(c),
    }
}

fn print_comparison(c: &ComparisonReport) {
    println!("====== Perplexity statistics ======");
    println!(
        "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
        c.ppl.value, c.ppl.se
    );
    println!(
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        c.ppl_base.value, c.ppl_base.se
    );
    println!(
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * c.nll_correlation
    );
    println!(
        "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
        c.ln_ppl_ratio.value, c.ln_ppl_ratio.se
    );
    println!(
        "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
        c.ppl_ratio.value, c.ppl_ratio.se
    );
    println!(
        "Mean PPL(Q)-PPL(base)         : {:10.6} ± {:10.6}",
        c.delta_ppl.value, c.delta_ppl.se
    );
    println!();
    println!("====== KL divergence statistics ======");
    let k = &c.kld;
    println!("Mean    KLD: {:10.6} ± {:10.6}", k.mean, k.se);
    for (name, value) in [
        ("Maximum KLD", k.max),
        ("99.9%   KLD", k.p99_9),
        ("99.0%   KLD", k.p99),
        ("95.0%   KLD", k.p95),
        ("90.0%   KLD", k.p90),
        ("Median  KLD", k.median),
        ("10.0%   KLD", k.p10),
        (" 5.0%   KLD", k.p5),
        (" 1.0%   KLD", k.p1),
        (" 0.1%   KLD", k.p0_1),
        ("Minimum KLD", k.min),
    ] {
        println!("{name}: {value:10.6}");
    }
    println!();
    println!("====== Token probability statistics ======");
    let p = &c.delta_p;
    println!(
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * p.mean,
        100.0 * p.mean_se
    );
    println!("Maximum Δp: {:6.3}%", 100.0 * p.max);
    println!("Median  Δp: {:6.3}%", 100.0 * p.median);
    println!("Minimum Δp: {:6.3}%", 100.0 * p.min);
    println!(
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * p.rms,
        100.0 * p.rms_se
    );
    println!(
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * c.same_top_p.value,
        100.0 * c.same_top_p.se
    );
}
