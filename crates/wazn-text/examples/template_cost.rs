//! What one render of a chat template costs: its time and outcome, for a conversation of
//! one user message of a given size. With `/usr/bin/time -f %M` around it, the peak memory.
//!
//!     cargo run --release -p wazn-text --example template_cost -- TEMPLATE [MESSAGE_BYTES]
//!
//! TEMPLATE is the Jinja source itself, or `@FILE` to read it from a file.

use std::process::ExitCode;
use std::time::Instant;

use wazn_text::template_budget::{render_fuel, BYTES_PER_FUEL};
use wazn_text::{ChatMessage, ChatTemplate};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(template) = args.next() else {
        eprintln!("usage: template_cost TEMPLATE|@FILE [MESSAGE_BYTES]");
        return ExitCode::FAILURE;
    };
    let source = match template.strip_prefix('@') {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => template,
    };
    let message_bytes = match args.next().map(|n| n.parse::<usize>()) {
        None => 2,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("MESSAGE_BYTES: {e}");
            return ExitCode::FAILURE;
        }
    };
    let template = match ChatTemplate::new(&source, "", "") {
        Ok(template) => template,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let messages = [ChatMessage::new("user", "x".repeat(message_bytes))];
    let fuel = render_fuel(&messages, None);
    let started = Instant::now();
    let rendered = template.render(&messages, true);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "budget {fuel} fuel ({} MiB of strings); {seconds:.2} s; {}",
        fuel.saturating_mul(BYTES_PER_FUEL) >> 20,
        match rendered {
            Ok(prompt) => format!("rendered {} bytes", prompt.len()),
            Err(e) => format!("error: {e}"),
        }
    );
    ExitCode::SUCCESS
}
