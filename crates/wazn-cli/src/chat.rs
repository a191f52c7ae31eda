//! `wazn chat`: an interactive conversation with line editing and history.
//! `/reset` starts over, `/exit` (or Ctrl-D) leaves; Ctrl-C stops the answer being
//! written, not the program.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use wazn_engine::{Engine, FinishReason, Request};
use wazn_text::harmony::ReasoningEffort;
use wazn_text::ChatMessage;

use crate::options::{
    max_tokens, reasoning_effort, tokenize_chat, ModelArgs, Reasoning, SamplingArgs,
};
use crate::reply_view::ReplyView;
use crate::run::print_timings;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Reasoning effort of a harmony model (gpt-oss); an error for other models
    /// [default: medium].
    #[arg(long, value_enum)]
    pub reasoning: Option<Reasoning>,
    /// Most tokens in one answer (-1 = until the end of generation or of the context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_hyphen_values = true)]
    pub n_predict: i64,
    /// Print the timing line after each answer.
    #[arg(long)]
    pub timings: bool,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let mut engine = args.model.load()?;
    if engine.chat_format().is_none() {
        anyhow::bail!("this model has no chat template (tokenizer.chat_template); use `wazn run`");
    }
    let effort = reasoning_effort(&engine, args.reasoning)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut editor = DefaultEditor::new().context("cannot open the terminal for line editing")?;
    let opening: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    let mut messages = opening.clone();
    eprintln!("wazn chat: /reset starts over, /exit leaves, Ctrl-C stops an answer.");

    loop {
        let line = match editor.readline("> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err.into()),
        };
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = opening.clone();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        let _ = editor.add_history_entry(input);
        messages.push(ChatMessage::new("user", input));
        interrupted.store(false, Ordering::SeqCst);
        match answer(&mut engine, &messages, effort, &args, &interrupted) {
            Ok(reply) => messages.push(ChatMessage::new("assistant", &reply)),
            Err(err) => {
                // The turn failed (for example, the conversation outgrew the context):
                // say so and keep the conversation as it was.
                messages.pop();
                eprintln!("error: {err:#}");
            }
        }
    }
    Ok(())
}

/// Generates and prints one answer; returns the text to keep in the conversation (for a
/// harmony model its final answer: earlier turns' reasoning is dropped, as harmony does).
fn answer(
    engine: &mut Engine,
    messages: &[ChatMessage],
    effort: ReasoningEffort,
    args: &ChatArgs,
    interrupted: &AtomicBool,
) -> Result<String> {
    let prompt_ids = tokenize_chat(engine, messages, effort)?;
    let harmony = engine.chat_format().is_some_and(|f| f.is_harmony());
    engine.reset_stats();
    let seq_id = engine.add_request(Request::new(
        prompt_ids,
        args.sampling.params(),
        max_tokens(args.n_predict),
    ))?;
    let mut view = ReplyView::new(harmony, true);
    while engine.has_work() {
        if interrupted.swap(false, Ordering::SeqCst) {
            engine.cancel(seq_id);
            break;
        }
        for event in engine.step()? {
            view.on_event(engine.tokenizer(), &event)?;
            if event.finished == Some(FinishReason::ContextFull) {
                eprint!("\n(the context is full; /reset to start over)");
            }
        }
    }
    view.end()?;
    if args.timings {
        print_timings(engine);
    }
    Ok(view.answer())
}
