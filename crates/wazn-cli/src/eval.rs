//! `wazn eval`: multiple-choice accuracy by log-likelihood, scored as
//! lm-evaluation-harness scores it, over a JSONL file of items.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use wazn_eval::multiple_choice::Accuracy;
use wazn_eval::task::parse_task;
use wazn_eval::{evaluate, EvalOptions};

use crate::options::ModelArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL items: {"question", "choices", "answer", "subject"?} (MMLU, WMDP) or
    /// {"context", "endings", "label"} (HellaSwag).
    #[arg(long = "task", value_name = "FILE")]
    pub task: PathBuf,
    /// Solved examples before each item (the task's first items other than itself).
    #[arg(long = "shots", default_value_t = 0)]
    pub shots: usize,
    /// Score only the first N items.
    #[arg(long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// Print one JSON object with every item's log-likelihoods.
    #[arg(long)]
    pub json: bool,
}

/// Prompts in the engine at once: enough to fill its batches, few enough that the cache
/// stays small.
const MAX_IN_FLIGHT: usize = 64;

pub fn run(args: EvalArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.task)
        .with_context(|| format!("cannot read {}", args.task.display()))?;
    let items = parse_task(&text).with_context(|| format!("{}", args.task.display()))?;
    let mut engine = args.model.load()?;
    let n_items = args.limit.map_or(items.len(), |l| l.min(items.len()));
    let bar = ProgressBar::new(n_items as u64);
    bar.set_style(
        ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} items ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let options = EvalOptions {
        n_shots: args.shots,
        limit: args.limit,
        max_in_flight: MAX_IN_FLIGHT,
    };
    let report = evaluate(&mut engine, &items, &options, &mut |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();

    let task = args.task.display().to_string();
    if args.json {
        let mut out = serde_json::to_value(&report)?;
        if let Some(map) = out.as_object_mut() {
            map.insert("task".into(), json!(task));
            map.insert("shots".into(), json!(args.shots));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let show = |a: Accuracy| format!("{:.4} ± {:.4}", a.value, a.se);
    println!("task: {task} ({} items, {} shots)", report.n, args.shots);
    println!("acc:      {}", show(report.acc));
    if let Some(acc_norm) = report.acc_norm {
        println!("acc_norm: {}", show(acc_norm));
    }
    for (subject, score) in &report.by_subject {
        println!("  {subject}: {} ({} items)", show(score.acc), score.n);
    }
    Ok(())
}
