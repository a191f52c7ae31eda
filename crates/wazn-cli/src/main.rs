//! The `wazn` command line.

mod bench;
mod chat;
mod eval;
mod fingerprint;
mod inspect;
mod load_bar;
mod model_path;
mod options;
mod perplexity;
mod probe;
mod probe_table;
mod quantize;
mod reply_view;
mod run;
mod serve;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wazn",
    version,
    about = "Run open-weight language models on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Complete a prompt and stream the text to stdout.
    Run(run::RunArgs),
    /// Talk with a model in an interactive session.
    Chat(chat::ChatArgs),
    /// Serve the model over an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Print a GGUF file's metadata and tensor table.
    Inspect(inspect::InspectArgs),
    /// Measure prompt and generation speed, as llama.cpp's llama-bench does.
    Bench(bench::BenchArgs),
    /// Perplexity of a text, and KL divergence against a base model's log-probabilities,
    /// as llama.cpp's llama-perplexity computes them.
    Perplexity(perplexity::PerplexityArgs),
    /// Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness scores it.
    Eval(eval::EvalArgs),
    /// Whether a model refuses what it should (HarmBench, XSTest's unsafe prompts) and
    /// answers what it should (XSTest's safe prompts), by domain.
    Probe(probe::ProbeArgs),
    /// Quantize a GGUF model, as llama.cpp's llama-quantize does (same types, same bytes).
    Quantize(quantize::QuantizeArgs),
    /// Which base model a model came from, from its weights: extract a fingerprint,
    /// compare two models, or identify a model among saved fingerprints.
    Fingerprint(fingerprint::FingerprintArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::chat(args),
        Command::Serve(args) => serve::serve(args),
        Command::Tokenize(args) => tokenize::tokenize(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Bench(args) => bench::bench(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Quantize(args) => quantize::quantize(args),
        Command::Probe(args) => probe::run(args),
        Command::Fingerprint(args) => fingerprint::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`wazn inspect M | head -1`): nothing is wrong
        // with the command, so it ends quietly, as other Unix tools do.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: errors that quote their cause in
/// their own message (as the file errors do) do not repeat it.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
