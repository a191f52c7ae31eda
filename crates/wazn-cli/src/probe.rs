//! `wazn probe`: does a model refuse what it should in high-risk domains, and answer what it
//! should elsewhere? Every prompt of a suite goes through the model's chat format, all are
//! generated together, each answer is judged, and the verdicts are counted by domain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use wazn_engine::{Engine, EngineOptions, SamplerParams};
use wazn_eval::probe::completions::{read_answers, WrittenAnswer};
use wazn_eval::probe::generate::{generate, GenerateOptions};
use wazn_eval::probe::model_judge::judge_all;
use wazn_eval::probe::report::{JudgedItem, ProbeReport};
use wazn_eval::probe::suite::SuiteSource;
use wazn_eval::probe::{compare, keyword, sha256_hex, ProbeItem, Verdict};

use crate::model_path;
use crate::options::{max_tokens, reasoning_effort, ModelArgs, Reasoning};
use crate::probe_table::print_report;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompts: xstest, harmbench (test set), harmbench-val, or a JSONL file of
    /// {"id", "prompt", "domain", "expect": "refuse"|"comply", "type"?}.
    #[arg(long, default_value = "xstest")]
    pub suite: String,
    /// How answers are judged: `keyword` (refusal and compliance phrases), or
    /// `model:PATH` (a judge model's log-probabilities of a rubric's answer letters).
    #[arg(long, default_value = "keyword")]
    pub judge: String,
    /// Judge the answers in FILE (CSV with prompt and completion columns, or JSONL written
    /// with -o and --keep-text) instead of generating; people's labels in it are compared
    /// with the judge's.
    #[arg(long = "judge-only", value_name = "FILE", conflicts_with = "compare")]
    pub judge_only: Option<PathBuf>,
    /// Most tokens of one answer.
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 256,
        allow_hyphen_values = true
    )]
    pub n_predict: i64,
    /// Answers per prompt (needs --temp above 0).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Temperature; 0 answers greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Probe only the suite's first N prompts.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Answers generated at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Reasoning effort of a harmony model (gpt-oss).
    #[arg(long, value_enum)]
    pub reasoning: Option<Reasoning>,
    /// An earlier run's --json output (of the same suite and judge, e.g. of the base
    /// model): the change per domain, with exact McNemar p-values on paired prompts.
    #[arg(long, value_name = "RESULTS.json")]
    pub compare: Option<PathBuf>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Write every judged answer to FILE, one JSON object a line.
    #[arg(short = 'o', long = "output", value_name = "RUN.jsonl")]
    pub output: Option<PathBuf>,
    /// Keep the answers' text in the JSON and in -o; without it, answers (which may be
    /// harmful) are named by their sha256 only.
    #[arg(long = "keep-text")]
    pub keep_text: bool,
}

/// A judge, as `--judge` names it.
enum JudgeSpec {
    Keyword,
    Model(PathBuf),
}

impl JudgeSpec {
    fn parse(text: &str) -> Result<JudgeSpec> {
        match text.split_once(':') {
            None if text == "keyword" => Ok(JudgeSpec::Keyword),
            Some(("model", path)) if !path.is_empty() => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    bail!("the judge model {} does not exist", path.display());
                }
                Ok(JudgeSpec::Model(path))
            }
            _ => bail!("unknown judge {text:?}: expected keyword or model:PATH"),
        }
    }

    /// The name a report carries: a judge model by its file name, so that runs on other
    /// machines compare.
    fn name(&self) -> String {
        match self {
            JudgeSpec::Keyword => "keyword".into(),
            JudgeSpec::Model(path) => format!("model:{}", file_name(path)),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// An answer to judge, from generation or from a file.
struct ToJudge {
    id: String,
    sample: usize,
    prompt: String,
    text: String,
    reasoning: String,
    domain: String,
    kind: Option<String>,
    expect: Option<wazn_eval::probe::Expect>,
    human: Option<Verdict>,
    finish_reason: Option<String>,
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} answers ({{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub fn run(args: ProbeArgs) -> Result<()> {
    let judge = JudgeSpec::parse(&args.judge)?;
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    if args.samples > 1 && args.temp <= 0.0 {
        bail!("--samples above 1 needs --temp above 0: greedy answers are all the same");
    }
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let started = Instant::now();
    let mut earlier = None;
    let (model_name, suite_name, attribution, answers) = match &args.judge_only {
        Some(path) => {
            let answers = read_answers(path)?;
            let name = file_name(path);
            (
                name.clone(),
                name,
                None,
                answers.into_iter().map(from_file).collect(),
            )
        }
        None => {
            let source = SuiteSource::parse(&args.suite)?;
            let mut items = source.load()?;
            if let Some(limit) = args.limit {
                items.truncate(limit);
            }
            earlier = read_earlier(&args, &source.name(), &judge.name())?;
            let path = model_path::resolve(args.model.model.clone())?;
            let answers = generate_answers(&args, &items)?;
            (
                file_name(&path),
                source.name(),
                source.attribution(),
                answers,
            )
        }
    };
    let seconds_generating = started.elapsed().as_secs_f64();

    let verdicts = judge_answers(&judge, &args, &answers)?;
    let items: Vec<JudgedItem> = answers
        .iter()
        .zip(&verdicts)
        .map(|(a, (verdict, probabilities))| JudgedItem {
            id: a.id.clone(),
            sample: a.sample,
            domain: a.domain.clone(),
            kind: a.kind.clone(),
            expect: a.expect,
            verdict: *verdict,
            response_sha256: sha256_hex(&a.text),
            judge_probabilities: *probabilities,
            human: a.human,
            finish_reason: a.finish_reason.clone(),
            text: args.keep_text.then(|| a.text.clone()),
            reasoning: (args.keep_text && !a.reasoning.is_empty()).then(|| a.reasoning.clone()),
        })
        .collect();
    let mut report = ProbeReport::new(model_name, suite_name, judge.name(), items);
    if let Some(earlier) = &earlier {
        report.compare = Some(compare::compare(
            &report.items,
            &report.suite,
            &report.judge,
            earlier,
        )?);
    }
    let seconds = started.elapsed().as_secs_f64();

    if let Some(path) = &args.output {
        write_run(path, &report, &answers)?;
    }
    if args.json {
        let mut out = serde_json::to_value(&report)?;
        if let Some(map) = out.as_object_mut() {
            map.insert(
                "settings".into(),
                json!({
                    "n_predict": args.n_predict,
                    "samples": args.samples,
                    "temp": args.temp,
                    "seed": args.seed,
                    "keep_text": args.keep_text,
                }),
            );
            map.insert("seconds".into(), json!(seconds));
            if let Some(a) = attribution {
                map.insert("suite_source".into(), json!(a));
            }
        }
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&out)?
        )?;
    } else {
        print_report(&report, attribution, seconds_generating, seconds)?;
    }
    Ok(())
}

/// The earlier run of --compare, read and checked before any work.
fn read_earlier(args: &ProbeArgs, suite: &str, judge: &str) -> Result<Option<Value>> {
    let Some(path) = &args.compare else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let earlier: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON run of wazn probe", path.display()))?;
    compare::check_earlier(&earlier, suite, judge).with_context(|| path.display().to_string())?;
    Ok(Some(earlier))
}

fn from_file(a: WrittenAnswer) -> ToJudge {
    ToJudge {
        id: a.id,
        sample: a.sample,
        prompt: a.prompt,
        text: a.text,
        reasoning: String::new(),
        domain: a.domain,
        kind: a.kind,
        expect: a.expect,
        human: a.human,
        finish_reason: None,
    }
}

fn generate_answers(args: &ProbeArgs, items: &[ProbeItem]) -> Result<Vec<ToJudge>> {
    let mut engine = args.model.load()?;
    let effort = reasoning_effort(&engine, args.reasoning)?;
    let options = GenerateOptions {
        max_tokens: max_tokens(args.n_predict),
        samples: args.samples,
        sampler: SamplerParams {
            temperature: args.temp,
            seed: args.seed,
            ..SamplerParams::default()
        },
        max_in_flight: args.parallel,
        effort,
    };
    let progress = bar(items.len() * args.samples, "probe");
    let answers = generate(&mut engine, items, &options, &mut |done| {
        progress.set_position(done as u64)
    })?;
    progress.finish_and_clear();
    Ok(answers
        .into_iter()
        .map(|a| {
            let item = &items[a.item];
            ToJudge {
                id: item.id.clone(),
                sample: a.sample,
                prompt: item.prompt.clone(),
                text: a.content,
                reasoning: a.reasoning,
                domain: item.domain.clone(),
                kind: item.kind.clone(),
                expect: Some(item.expect),
                human: None,
                finish_reason: Some(a.finish.as_str().to_string()),
            }
        })
        .collect())
}

type Judged = (Verdict, Option<[f64; 3]>);

fn judge_answers(judge: &JudgeSpec, args: &ProbeArgs, answers: &[ToJudge]) -> Result<Vec<Judged>> {
    match judge {
        JudgeSpec::Keyword => Ok(answers
            .iter()
            .map(|a| (keyword::judge(&a.text), None))
            .collect()),
        JudgeSpec::Model(path) => {
            let options = EngineOptions {
                n_ctx: args.model.ctx_size,
                n_threads: args
                    .model
                    .threads
                    .unwrap_or_else(wazn_engine::engine::default_threads),
                n_batch: args.model.batch_size,
                ..EngineOptions::default()
            };
            let mut engine = Engine::load(path, options)
                .with_context(|| format!("cannot load the judge model {}", path.display()))?;
            let pairs: Vec<(&str, &str)> = answers
                .iter()
                .map(|a| (a.prompt.as_str(), a.text.as_str()))
                .collect();
            let progress = bar(pairs.len(), "judge");
            let verdicts = judge_all(&mut engine, &pairs, args.parallel, &mut |done| {
                progress.set_position(done as u64)
            })?;
            progress.finish_and_clear();
            Ok(verdicts
                .into_iter()
                .map(|v| (v.verdict, Some(v.probabilities)))
                .collect())
        }
    }
}

/// -o: one judged answer a line, with its prompt, so that the file can be judged again
/// (`--judge-only`, when written with --keep-text).
fn write_run(path: &Path, report: &ProbeReport, answers: &[ToJudge]) -> Result<()> {
    let mut out = String::new();
    for (item, answer) in report.items.iter().zip(answers) {
        let mut line = serde_json::to_value(item)?;
        if let Some(map) = line.as_object_mut() {
            map.insert("prompt".into(), json!(answer.prompt));
        }
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}
