//! `wazn fingerprint`: which base model a model came from, from its weights (wazn-fingerprint
//! does the work; this prints it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use wazn_fingerprint::{
    null_distribution, open_source, score_pair, verdict, write_wfp, ModelFacts, NullDistribution,
    PairOutcome, PairScore, Progress, Verdict, WeightSource, WfpStorage, DEFAULT_NULL_MODELS,
};

#[derive(Args, Debug)]
pub struct FingerprintArgs {
    #[command(subcommand)]
    pub command: FingerprintCommand,
}

#[derive(Subcommand, Debug)]
pub enum FingerprintCommand {
    /// Write a model's fingerprint (.wfp): its aligned attention matrices, an embedding
    /// sketch, its shapes and declared lineage.
    Extract {
        /// The model: a GGUF file or a Hugging Face folder.
        #[arg(short = 'm', long = "model")]
        model: PathBuf,
        /// Where to write it (default: the model's name with .wfp).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Keep the layer matrices in f16 (twice the size) instead of Q8_0 blocks.
        #[arg(long)]
        f16: bool,
    },
    /// Is B derived from A? Per-layer similarities, a score, its z-score against unrelated
    /// models, and a verdict.
    Compare {
        /// A model (GGUF file or Hugging Face folder) or a .wfp fingerprint.
        a: PathBuf,
        /// Another.
        b: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Models known to be unrelated to A, added to the null distribution.
        #[arg(long = "null", value_name = "M", num_args = 1..)]
        null: Vec<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Rank the fingerprints (.wfp) in a folder by similarity to a model.
    Identify {
        /// A model or a .wfp fingerprint.
        model: PathBuf,
        /// The folder of .wfp files.
        #[arg(long = "db", value_name = "DIR")]
        db: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Random models in the null distribution.
    #[arg(long = "null-models", default_value_t = DEFAULT_NULL_MODELS)]
    pub null_models: usize,
    /// Threads (default: every core).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
}

impl CommonArgs {
    fn n_threads(&self) -> usize {
        self.threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

pub fn run(args: FingerprintArgs) -> Result<()> {
    match args.command {
        FingerprintCommand::Extract { model, output, f16 } => {
            let storage = if f16 {
                WfpStorage::F16
            } else {
                WfpStorage::Q8_0
            };
            extract(&model, output, storage)
        }
        FingerprintCommand::Compare {
            a,
            b,
            json,
            null,
            common,
        } => compare(&a, &b, &null, json, &common),
        FingerprintCommand::Identify {
            model,
            db,
            json,
            common,
        } => identify(&model, &db, json, &common),
    }
}

fn open(path: &Path) -> Result<Box<dyn WeightSource>> {
    open_source(path).with_context(|| format!("{}", path.display()))
}

/// A spinner with a message on stderr, drawn only when stderr is a terminal.
struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    fn new() -> BarProgress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        BarProgress { bar }
    }
}

impl Progress for BarProgress {
    fn stage(&self, what: &str, done: usize, total: usize) {
        self.bar.set_message(format!("{what} {done}/{total}"));
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn extract(model: &Path, output: Option<PathBuf>, storage: WfpStorage) -> Result<()> {
    let start = Instant::now();
    let source = open(model)?;
    let output = output.unwrap_or_else(|| {
        let name = model
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{name}.wfp"))
    });
    let size = {
        let progress = BarProgress::new();
        write_wfp(source.as_ref(), &output, storage, &progress)?
    };
    eprintln!(
        "wrote {} ({:.1} MiB): {} in {:.1} s",
        output.display(),
        size as f64 / (1 << 20) as f64,
        describe(source.facts()),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn describe(f: &ModelFacts) -> String {
    let latent = f.latent.as_ref().map_or(String::new(), |l| {
        format!(
            " (latent: query rank {}, key/value rank {})",
            l.q_rank.map_or("full".to_string(), |r| r.to_string()),
            l.kv_rank
        )
    });
    format!(
        "{}, {} layers × {}, {} query / {} key heads of {}{latent}, vocabulary {}, {}",
        f.architecture, f.n_layer, f.n_embd, f.n_head, f.n_kv_head, f.head_dim, f.n_vocab, f.origin
    )
}

fn declared_text(f: &ModelFacts) -> String {
    if f.declared.is_empty() {
        return "nothing".into();
    }
    f.declared
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn declared_json(f: &ModelFacts) -> Value {
    Value::Object(
        f.declared
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn compare(
    a: &Path,
    b: &Path,
    null_paths: &[PathBuf],
    as_json: bool,
    common: &CommonArgs,
) -> Result<()> {
    let n_threads = common.n_threads();
    let (source_a, source_b) = (open(a)?, open(b)?);
    let unrelated: Vec<Box<dyn WeightSource>> =
        null_paths.iter().map(|p| open(p)).collect::<Result<_>>()?;
    let progress = BarProgress::new();
    let outcome = score_pair(
        source_a.as_ref(),
        source_b.as_ref(),
        None,
        n_threads,
        &progress,
    )?;
    let scored = match outcome {
        PairOutcome::Scored(s) => s,
        PairOutcome::NoSharedVocabulary { shared_tokens } => {
            drop(progress);
            let reason = format!(
                "the models share {shared_tokens} of their sketched tokens: with no shared \
                 vocabulary the hidden dimensions cannot be aligned, so nothing was measured"
            );
            return print_unscored(a, b, source_a.facts(), source_b.facts(), &reason, as_json);
        }
    };
    let unrelated_refs: Vec<&dyn WeightSource> = unrelated.iter().map(|m| m.as_ref()).collect();
    let null_dist = null_distribution(
        &[source_a.as_ref(), source_b.as_ref()],
        common.null_models,
        &unrelated_refs,
        n_threads,
        &progress,
    )?;
    drop(progress);
    let z = null_dist.z(scored.score);
    let v = if null_dist.n < 2 {
        Verdict::Inconclusive
    } else {
        verdict(scored.score, z)
    };
    if as_json {
        let out = json!({
            "a": a.display().to_string(),
            "b": b.display().to_string(),
            "declared": {"a": declared_json(source_a.facts()), "b": declared_json(source_b.facts())},
            "method": METHOD,
            "per_layer": scored.per_layer,
            "score": scored.score,
            "z": z,
            "verdict": v,
            "null": {"n": null_dist.n, "mean": null_dist.mean, "sd": null_dist.sd},
            "mean_wq": scored.mean_wq,
            "mean_wk": scored.mean_wk,
            "cosine_baseline": scored.cosine_baseline,
            "invariants": scored.invariants,
            "shared_tokens": scored.shared_tokens,
            "aligned_dims": scored.alignment.a_dims.len(),
            "sign_flips": scored.alignment.sign_flips(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_table(
        a,
        b,
        source_a.facts(),
        source_b.facts(),
        &scored,
        &null_dist,
        z,
        v,
    );
    Ok(())
}

const METHOD: &str = "AWM: hidden dimensions aligned by a linear assignment on the shared \
                      tokens' embeddings, unbiased CKA of Wq, Wk and WqWkᵀ per layer; score = \
                      mean WqWkᵀ CKA";

fn print_unscored(
    a: &Path,
    b: &Path,
    fa: &ModelFacts,
    fb: &ModelFacts,
    reason: &str,
    as_json: bool,
) -> Result<()> {
    if as_json {
        let out = json!({
            "a": a.display().to_string(),
            "b": b.display().to_string(),
            "declared": {"a": declared_json(fa), "b": declared_json(fb)},
            "method": METHOD,
            "per_layer": [],
            "score": null,
            "z": null,
            "verdict": Verdict::Inconclusive,
            "null": {"n": 0, "mean": null, "sd": null},
            "reason": reason,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("A  {}: {}", a.display(), describe(fa));
        println!("   declared: {}", declared_text(fa));
        println!("B  {}: {}", b.display(), describe(fb));
        println!("   declared: {}", declared_text(fb));
        println!("{reason}");
        println!("verdict: inconclusive");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    a: &Path,
    b: &Path,
    fa: &ModelFacts,
    fb: &ModelFacts,
    s: &PairScore,
    null: &NullDistribution,
    z: f64,
    v: Verdict,
) {
    println!("A  {}: {}", a.display(), describe(fa));
    println!("   declared: {}", declared_text(fa));
    println!("B  {}: {}", b.display(), describe(fb));
    println!("   declared: {}", declared_text(fb));
    println!(
        "shared tokens {}; hidden dimensions aligned {} (mean |cos| {:.3}, {} sign flips)",
        s.shared_tokens,
        s.alignment.a_dims.len(),
        s.alignment.mean_abs_cosine,
        s.alignment.sign_flips()
    );
    println!();
    println!("layer A→B       Wq       Wk    WqWkᵀ  param cos");
    for l in &s.per_layer {
        println!(
            "{:>5}→{:<4} {:>8.4} {:>8.4} {:>8.4}  {}",
            l.a,
            l.b,
            l.wq,
            l.wk,
            l.wq_wk,
            l.parameter_cosine
                .map_or("-".into(), |c| format!("{c:>8.4}"))
        );
    }
    println!();
    println!(
        "score (mean WqWkᵀ unbiased CKA)  {:.4}   (Wq {:.4}, Wk {:.4})",
        s.score, s.mean_wq, s.mean_wk
    );
    println!(
        "null ({} unrelated pairs)         mean {:.4}, sd {:.4}; z = {:.1}",
        null.n, null.mean, null.sd, z
    );
    println!(
        "parameter cosine baseline        {}   (plain cosine of Wq, no alignment)",
        s.cosine_baseline
            .map_or("n/a (shapes differ)".into(), |c| format!("{c:.4}"))
    );
    println!(
        "HuRef invariant terms            {}",
        s.invariants.as_ref().map_or(
            "n/a (a side has none, or under 32 shared tokens)".into(),
            |inv| format!(
                "{:.4}   (cosine over {} shared tokens, layers {}; no alignment needed)",
                inv.score,
                inv.shared_tokens,
                inv.per_layer
                    .iter()
                    .map(|l| format!("{}→{}", l.a, l.b))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        )
    );
    println!("verdict                          {v}");
}

fn identify(model: &Path, db: &Path, as_json: bool, common: &CommonArgs) -> Result<()> {
    let n_threads = common.n_threads();
    let source = open(model)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(db)
        .with_context(|| format!("{}", db.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wfp"))
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Err(anyhow!(
            "{}: no .wfp fingerprints in the folder",
            db.display()
        ));
    }
    let progress = BarProgress::new();
    let null_dist = null_distribution(
        &[source.as_ref()],
        common.null_models,
        &[],
        n_threads,
        &progress,
    )?;
    let mut rows = Vec::new();
    for (i, path) in entries.iter().enumerate() {
        progress.stage(&format!("{}", path.display()), i, entries.len());
        let candidate = open(path)?;
        let (score, z, v) = match score_pair(
            source.as_ref(),
            candidate.as_ref(),
            None,
            n_threads,
            &progress,
        )? {
            PairOutcome::Scored(s) => {
                let z = null_dist.z(s.score);
                (Some(s.score), Some(z), verdict(s.score, z))
            }
            PairOutcome::NoSharedVocabulary { .. } => (None, None, Verdict::Inconclusive),
        };
        rows.push((path.clone(), candidate.facts().clone(), score, z, v));
    }
    drop(progress);
    rows.sort_by(|x, y| {
        y.2.unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&x.2.unwrap_or(f64::NEG_INFINITY))
    });
    if as_json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(p, f, s, z, v)| {
                json!({"fingerprint": p.display().to_string(), "declared": declared_json(f),
                       "score": s, "z": z, "verdict": v})
            })
            .collect();
        let out = json!({"model": model.display().to_string(), "method": METHOD,
                         "null": {"n": null_dist.n, "mean": null_dist.mean, "sd": null_dist.sd}, "ranking": list});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{}: {}", model.display(), describe(source.facts()));
    println!(
        "null ({} random models): mean {:.4}, sd {:.4}",
        null_dist.n, null_dist.mean, null_dist.sd
    );
    println!();
    println!("rank    score        z  verdict       fingerprint");
    for (rank, (p, f, s, z, v)) in rows.iter().enumerate() {
        println!(
            "{:>4} {:>8} {:>8}  {:<13} {}  [{}]",
            rank + 1,
            s.map_or("-".into(), |s| format!("{s:.4}")),
            z.map_or("-".into(), |z| format!("{z:.1}")),
            v.to_string(),
            p.display(),
            declared_text(f)
        );
    }
    Ok(())
}
