//! The `wazn` command line.

mod chat;
mod inspect;
mod model_path;
mod options;
mod run;
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
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Print a GGUF file's metadata and tensor table.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::chat(args),
        Command::Tokenize(args) => tokenize::tokenize(args),
        Command::Inspect(args) => inspect::inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            let causes: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", causes.join(": "));
            ExitCode::FAILURE
        }
    }
}
