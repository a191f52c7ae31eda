//! `wazn chat`: an interactive conversation with line editing and history.
//! `/reset` starts over, `/exit` (or Ctrl-D) leaves; Ctrl-C stops the answer being
//! written, not the program. With `--tools`, the model may call functions: each call is
//! shown after the answer, and `/tool TEXT` gives the last call's result back to the model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use serde_json::{json, Value};
use wazn_engine::{Constraint, Engine, FinishReason, GrammarCompiler, GrammarSpec, Request};
use wazn_text::harmony::ReasoningEffort;
use wazn_text::tool_calls::{self, ToolDelta, ToolFormat, ToolSpec};
use wazn_text::{tokenize_rendered, ChatMessage};

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
    /// Function tools the model may call: a JSON file holding OpenAI's `tools` list
    /// (`[{"type": "function", "function": {"name", "description", "parameters"}}]`).
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// How the model writes calls: hermes, llama3_json or mistral [default: told from the
    /// chat template and the vocabulary].
    #[arg(long = "tool-format", value_name = "FORMAT", requires = "tools")]
    pub tool_format: Option<String>,
}

/// The tools of a chat, and what holds the model's calls to them.
struct ChatTools {
    tools: Value,
    format: ToolFormat,
    /// The grammar of a call once the model opens one, when the format has an opening token.
    constraint: Option<Constraint>,
}

impl ChatTools {
    fn load(args: &ChatArgs, engine: &Engine) -> Result<Option<ChatTools>> {
        let Some(path) = &args.tools else {
            return Ok(None);
        };
        if engine.chat_format().is_some_and(|f| f.is_harmony()) {
            anyhow::bail!("--tools is not supported for harmony models (gpt-oss) in `wazn chat` yet; use `wazn serve`");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let tools: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let specs =
            ToolSpec::from_openai_tools(&tools).with_context(|| format!("{}", path.display()))?;
        let format = match &args.tool_format {
            Some(name) => crate::serve::tool_format(name)?,
            None => ToolFormat::detect(
                engine.chat_template().map(|t| t.source()),
                engine.tokenizer(),
            ),
        };
        let constraint = match format.trigger_token(engine.tokenizer()) {
            Some(trigger) => {
                let lark = format.triggered_grammar(&specs, true, engine.tokenizer())?;
                let compiler = GrammarCompiler::new(engine.shared_tokenizer())?;
                Some(compiler.compile_after_token(&GrammarSpec::Lark(lark), trigger)?)
            }
            None => None,
        };
        Ok(Some(ChatTools {
            tools,
            format,
            constraint,
        }))
    }
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let mut engine = args.model.load()?;
    if engine.chat_format().is_none() {
        anyhow::bail!("this model has no chat template (tokenizer.chat_template); use `wazn run`");
    }
    let effort = reasoning_effort(&engine, args.reasoning)?;
    let tools = ChatTools::load(&args, &engine)?;
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
    if tools.is_some() {
        eprintln!("/tool TEXT answers the model's last function call with TEXT.");
    }

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
        match input.strip_prefix("/tool ") {
            Some(result) => match last_call(&messages) {
                Some((id, name)) => {
                    let mut message = ChatMessage::new("tool", result);
                    message.tool_call_id = Some(id);
                    message.name = Some(name);
                    messages.push(message);
                }
                None => {
                    eprintln!("(the model has made no call to answer)");
                    continue;
                }
            },
            None => messages.push(ChatMessage::new("user", input)),
        }
        interrupted.store(false, Ordering::SeqCst);
        match answer(
            &mut engine,
            &messages,
            effort,
            &args,
            tools.as_ref(),
            &interrupted,
        ) {
            Ok(reply) => messages.push(reply),
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

/// The id and function name of the last call the model made, if its last turn made one.
fn last_call(messages: &[ChatMessage]) -> Option<(String, String)> {
    let calls = messages
        .iter()
        .rev()
        .find(|m| m.role == "assistant")?
        .tool_calls
        .as_ref()?;
    let call = calls.last()?;
    Some((
        call.get("id")?.as_str()?.to_string(),
        call.get("function")?.get("name")?.as_str()?.to_string(),
    ))
}

/// Generates and prints one answer; returns the turn to keep in the conversation (for a
/// harmony model its final answer: earlier turns' reasoning is dropped, as harmony does;
/// with tools, the answer's calls).
fn answer(
    engine: &mut Engine,
    messages: &[ChatMessage],
    effort: ReasoningEffort,
    args: &ChatArgs,
    tools: Option<&ChatTools>,
    interrupted: &AtomicBool,
) -> Result<ChatMessage> {
    let prompt_ids = match (tools, engine.chat_template()) {
        (Some(t), Some(template)) => {
            let text = tool_calls::render_with_tools(template, messages, &t.tools, t.format)?;
            tokenize_rendered(engine.tokenizer(), &text)?
        }
        _ => tokenize_chat(engine, messages, effort)?,
    };
    let harmony = engine.chat_format().is_some_and(|f| f.is_harmony());
    engine.reset_stats();
    let mut request = Request::new(
        prompt_ids,
        args.sampling.params(),
        max_tokens(args.n_predict),
    );
    request.constraint = tools.and_then(|t| t.constraint.clone());
    let seq_id = engine.add_request(request)?;
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
    let text = view.answer();
    let Some(tools) = tools else {
        return Ok(ChatMessage::new("assistant", text));
    };
    let mut parser = tools.format.parser();
    let mut deltas = parser.push(&text);
    deltas.extend(parser.finish());
    let (content, calls) = ToolDelta::collect(deltas);
    let mut reply = ChatMessage::new("assistant", content);
    if !calls.is_empty() {
        let n_earlier = messages
            .iter()
            .filter_map(|m| m.tool_calls.as_ref())
            .map(Vec::len)
            .sum::<usize>();
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                eprintln!("[call] {}({})", call.name, call.arguments);
                let arguments = serde_json::from_str::<Value>(&call.arguments)
                    .unwrap_or_else(|_| Value::String(call.arguments.clone()));
                json!({
                    "id": format!("call{}", n_earlier + i),
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                })
            })
            .collect();
        reply.tool_calls = Some(calls);
    }
    Ok(reply)
}
